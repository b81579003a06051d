/* Module "readers": the card readers, their cards and the card sessions.
 *
 * Opens the reader drivers ([pcsc] enabled), turns their events (worker
 * threads) into loop-thread work with loop_post, keeps one entry per reader
 * and runs one card session per inserted card on a thread of its own:
 *
 *   absent -> present -> identifying -> reading [-> code_entry] -> ready
 *                 \            \            \            \
 *                  +------------+------------+------------+--> error (reason)
 *   a card pulled while its session still runs: removed, then absent.
 *   code_entry: a phone asks its holder for the code (CodeEntryRequested).
 *
 * A session has a deadline ([pcsc] session_timeout_ms; once a phone asks
 * for its code, [digital] code_timeout_s + CARDS_CODE_MARGIN_MS from that
 * moment): when it passes the
 * driver's abort() releases the blocked exchange, the reader goes to error
 * ("the card did not answer ...") and a CardError event goes out, while the
 * loop (and GetStatus) never waited. Events published (events.h):
 * ReaderAdded, ReaderRemoved, CardInserted, CardRead, CardRemoved,
 * CardError (reason: the failure's name when the card reader gives one, e.g.
 * the digital card's §12 names, with detail; else a text),
 * CodeEntryRequested, DriverDown, DriverUp. Methods: ListReaders, GetCard (control).
 * Status: "readers" and "drivers" of GetStatus.
 *
 * Needs the "events" module before it. Loop thread only.
 */
#ifndef VITALED_READERS_H
#define VITALED_READERS_H

#include "daemon.h"

int readers_init(struct daemon *d);
/* Aborts running sessions, stops the drivers; bounded (about 1 s even with
 * a session blocked in a driver that cannot abort). */
void readers_fini(struct daemon *d);

struct card_result;
/* The card read last and still in its reader (in reader, or in any reader
 * when NULL), as GetCard shows it: for whoever builds a care sheet from the
 * current card. Its evidence (struct card_evidence: the digital card's
 * credential and device answer bytes) is there too. NULL when none.
 * *reader_out and *read_at (each may be NULL) get the reader's name and the
 * read time (ISO 8601). Loop thread; the pointers are valid until the loop
 * handles its next event (copy what you keep). */
const struct card_result *readers_current_card(const char *reader, const char **reader_out,
                                               const char **read_at);

#endif
