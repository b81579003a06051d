/* The digital carte Vitale by QR code on a card session (cards_qr.c): the
 * scanned text verified by protocol/qr.c, the challenges the terminal
 * shows, and the replay cache that outlives a restart
 * (docs/digital-card.md part 2).
 */
#ifndef VITALED_CARDS_QR_H
#define VITALED_CARDS_QR_H

#include <stdint.h>

#include "daemon/cards/cards.h"

struct daemon;

#define CARDS_QR_CHALLENGES_MAX 16
#define CARDS_QR_REPLAY_MAX 4096
#define CARDS_QR_REPLAY_FILE "qr-replay"

/* Read the code of a scanner's session (card_reader_fn.read for the
 * pseudo-ATR READER_QR_ATR; the session thread). An accepted code fills out
 * like an NFC presentation (kind digital, presentation "digital-qr", the
 * holder then the beneficiaries, the fields, the evidence: the credential
 * and the presentation as carried, the challenge) and returns 0; a refused
 * one returns -EACCES with out->reason its name (§12, §Q.12). */
int cards_digital_qr_read(const struct card_io *io, struct card_result *out);

/* A new challenge to show (6 digits) and its time-out (seconds since the
 * epoch): it stays open for [digital] qr_challenge_ttl_s or until a code
 * signs it. The oldest open one is dropped past CARDS_QR_CHALLENGES_MAX.
 * 0, -EIO (no randomness), -ENOTSUP (the QR form is off). Loop thread. */
int cards_qr_challenge_new(char out[8], int64_t *expires);

/* Module "qr" (after "digital"): the settings,
 * the replay cache file (<state_dir>/qr-replay, read at start, entries
 * past their time dropped). */
int cards_qr_init(struct daemon *d);
void cards_qr_fini(struct daemon *d);

#endif
