/* The placeholder card reader of the unit suites; see placeholder_card.h. */
#include "tests/unit/support/placeholder_card.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/hex.h"

static void
placeholder_identify(const uint8_t *atr, size_t atr_len, struct card_result *out)
{
	snprintf(out->profile, sizeof(out->profile), "unknown");
	snprintf(out->kind, sizeof(out->kind), "unknown");
	hex_encode(atr, atr_len, true, out->atr_hex, sizeof(out->atr_hex));
	out->recognised = false;
	out->readable = false;
}

static int
placeholder_read(const struct card_io *io, struct card_result *out)
{
	/* ISO 7816-4 §11.2.2 SELECT, P1 = 00 (MF/DF/EF by file identifier),
	 * file 3F00 (the MF): harmless on any ISO card, and an answer is all
	 * we keep */
	static const uint8_t select_mf[] = { 0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00 };
	uint8_t rapdu[258];
	size_t rlen = sizeof(rapdu);
	int r = io->transmit(io->ctx, select_mf, sizeof(select_mf), rapdu, &rlen);
	if (r < 0) {
		snprintf(out->error, sizeof(out->error), "SELECT MF failed: %s", card_strerror(r));
		return r;
	}
	if (rlen < 2) {
		snprintf(out->error, sizeof(out->error), "the card answered a SELECT without a status word");
		return -EIO;
	}
	char sw[8];
	snprintf(sw, sizeof(sw), "%02X%02X", rapdu[rlen - 2], rapdu[rlen - 1]);
	card_result_add_field(out, "probe_sw", sw);
	explicit_bzero(rapdu, sizeof(rapdu));
	return 0;
}

const struct card_reader_fn placeholder_card_reader = {
	.name = "placeholder",
	.identify = placeholder_identify,
	.read = placeholder_read,
};
