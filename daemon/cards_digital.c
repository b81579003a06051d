/* The digital carte Vitale on a card session: until the digital-card
 * protocol code is wired here, a phone is recognised and reported as not
 * readable by this build. */
#include <errno.h>
#include <stdio.h>

#include "cards.h"

int
cards_digital_read(const struct profile *p, const struct card_io *io, struct card_result *out)
{
	(void)p;
	(void)io;
	snprintf(out->error, sizeof(out->error), "digital card: protocol not in this build");
	return -EOPNOTSUPP;
}
