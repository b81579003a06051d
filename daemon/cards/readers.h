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

#include <stdint.h>

#include "daemon/cards/cards.h"
#include "daemon/core/daemon.h"
#include "drivers/reader.h"

int readers_init(struct daemon *d);
/* Aborts running sessions, stops the drivers; bounded (about 1 s even with
 * a session blocked in a driver that cannot abort). */
void readers_fini(struct daemon *d);

/* A card's comings and goings, for a module that runs sessions of its own
 * on a card this module has read (daemon/pin/cardlogin.c: the card PIN step). */
struct readers_card_info {
	const char *reader;               /* the reader's name */
	uint64_t card_seq;                /* which insertion in that reader */
	const struct reader_ops *ops;     /* the reader's driver (connect, transmit, control, abort) */
	struct reader_driver *driver;     /* its handle: valid until readers_fini() */
	const struct card_result *result; /* the read's result; NULL: the card left */
};
typedef void (*readers_card_hook_fn)(const struct readers_card_info *ci, void *arg);
/* Set the one card hook (NULL: none). It is called on the loop thread
 * right after each CardRead event (result set) and when that card leaves,
 * is replaced, or its reader goes away (result NULL). ci and what it
 * points to are valid during the call only. */
void readers_set_card_hook(readers_card_hook_fn fn, void *arg);

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

/* Called on the loop thread right after a card was read (and CardRead was
 * published), with the reader's name and the result (valid during the
 * call only): the kiosk's check-in drafts (daemon/sheets/sheets.c). One hook
 * besides the card hook above; NULL removes it. */
typedef void (*readers_read_fn)(const char *reader, const struct card_result *r, void *arg);
void readers_set_read_hook(readers_read_fn fn, void *arg);

#endif
