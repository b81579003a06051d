/* Module "readers": the card readers, their cards and the card sessions.
 *
 * Opens the reader drivers ([pcsc] enabled), turns their events (worker
 * threads) into loop-thread work with loop_post, keeps one entry per reader
 * and runs one card session per inserted card on a thread of its own:
 *
 *   absent -> present -> identifying -> reading -> ready
 *                 \            \            \
 *                  +------------+------------+--> error (reason)
 *   a card pulled while its session still runs: removed, then absent.
 *
 * A session has a deadline ([pcsc] session_timeout_ms): when it passes the
 * driver's abort() releases the blocked exchange, the reader goes to error
 * ("the card did not answer ...") and a CardError event goes out, while the
 * loop (and GetStatus) never waited. Events published (events.h):
 * ReaderAdded, ReaderRemoved, CardInserted, CardRead, CardRemoved,
 * CardError, DriverDown, DriverUp. Methods: ListReaders, GetCard (control).
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

#endif
