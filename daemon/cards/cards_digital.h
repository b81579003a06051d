/* The digital carte Vitale on a card session (cards_digital.c) and the
 * module "digital" that holds its [digital] settings and trust anchors.
 */
#ifndef VITALED_CARDS_DIGITAL_H
#define VITALED_CARDS_DIGITAL_H

#include <stdbool.h>

#include "daemon/cards/cards.h"
#include "protocol/credential.h"

struct profile;
struct daemon;

/* Read a phone through the digital-card protocol; the session thread, as
 * card_reader_fn.read (the profile reader calls it for a profile with
 * handler "digital"). An accepted presentation fills out (profile
 * "digital", kind digital, presentation "digital-nfc", holder then
 * beneficiaries, fields, evidence) and returns 0. A refused one returns
 * -EACCES (a transport failure its negative errno) with out->reason the
 * §12 name and out->error "name: what it means". A card without the applet
 * (no_applet) is an unknown contactless card: 0, recognised false. */
int cards_digital_read(const struct profile *p, const struct card_io *io,
                       struct card_result *out);

/* Fill out from a verified credential: kind digital, the presentation
 * ("digital-nfc", "digital-qr"), the holder (rank 0) then the
 * beneficiaries, the fields GetCard shows. The evidence is the caller's. */
void cards_digital_fill(const struct credential *c, bool holder_verified, const char *presentation,
                        struct card_result *out);
/* What a reason means, for people (CardError's detail). Static storage. */
const char *cards_digital_meaning(enum credential_reason why);
/* The credential policy of [digital] (anchors, issuer purpose, skew) at
 * the current time. 0, or -EIO before the module is up. Any thread. */
int cards_digital_policy(struct credential_policy *pol);
/* The terminal id the presentations name. */
const char *cards_digital_terminal_id(void);

/* Module "digital": reads the [digital] trust anchors (PEM files) once; an
 * anchor file missing or unreadable stops start-up with its name. Without
 * any anchor every phone is refused (chain_untrusted, "no trust anchor
 * configured"). Before "readers". Loop thread. */
int cards_digital_init(struct daemon *d);
void cards_digital_fini(struct daemon *d);

#endif
