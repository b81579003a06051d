/* The digital carte Vitale on a card session (cards_digital.c) and the
 * module "digital" that holds its [digital] settings and trust anchors.
 */
#ifndef VITALED_CARDS_DIGITAL_H
#define VITALED_CARDS_DIGITAL_H

#include "daemon/cards/cards.h"

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

/* Module "digital": reads the [digital] trust anchors (PEM files) once; an
 * anchor file missing or unreadable stops start-up with its name. Without
 * any anchor every phone is refused (chain_untrusted, "no trust anchor
 * configured"). Before "readers". Loop thread. */
int cards_digital_init(struct daemon *d);
void cards_digital_fini(struct daemon *d);

#endif
