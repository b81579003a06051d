/* Module "readers": runs the reader-session state machine
 * (daemon/cards/readers.h) in the daemon.
 *
 * Opens the reader drivers ([pcsc] enabled; [nfc] device): each keeps its
 * own watch thread (drivers/reader.h says why) whose events reach the loop
 * through loop_post(). Card sessions are jobs of one daemon/core worker
 * (one job per session, up to WORKER_MAX_THREADS at once: more readers than
 * that reading at the same moment wait their turn); a session's end comes
 * back to the loop as that job's done callback, its progress through
 * loop_post(). One loop timer stands for the machine's earliest deadline. The API (methods,
 * status, events) is daemon/cards/api_cards.c.
 *
 * Needs the "events" module before it (and "profiles", "digital" for the
 * card reader it is given). Loop thread only.
 */
#ifndef VITALED_CARDIO_H
#define VITALED_CARDIO_H

#include "daemon/cards/cards.h"

struct daemon;

/* Start the module with card_reader identifying and reading the cards
 * (card_reader_profiles in the daemon; valid until cardio_fini). 0 or a
 * negative errno. */
int cardio_init(struct daemon *d, const struct card_reader_fn *card_reader);
/* Aborts running sessions, stops the drivers, then the sessions' worker;
 * bounded (about 1 s even with a session blocked in a driver that cannot
 * abort: that session is left behind, logged, and its worker with it). */
void cardio_fini(struct daemon *d);

#endif
