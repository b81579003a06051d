/* Fuzz target for protocol/pin: the part 10 feature answer parser, the
 * status word namer, and the builders with fuzz-chosen params and PINs.
 * Invariants checked: a builder that fails leaves *outlen at 0 and its
 * buffer wiped; one that succeeds writes exactly 5 + block_len bytes with
 * the PIN's digits only; a parsed feature list has count <= 256. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/pin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pin_features f;
	if (pin_features_parse(data, size, &f) == 0 && f.count > 256)
		abort();

	if (size >= 2) {
		struct pin_result r;
		for (int c = PIN_CMD_VERIFY; c <= PIN_CMD_PINPAD_VERIFY; c++)
			pin_parse_answer((enum pin_cmd)c, data, size, &r);
	}
	if (size < 8)
		return 0;
	struct pin_params p = {
		.format = (enum pin_format)(data[0] % 3),
		.cla = data[1],
		.ref = data[2],
		.min_len = data[3] & 0x0F,
		.max_len = data[4] & 0x0F,
		.block_len = data[5] & 0x1F,
		.pad = data[6],
		.puk_len = data[7] & 0x1F,
	};
	const char *pin = (const char *)data + 8;
	size_t len = size - 8;
	uint8_t out[PIN_APDU_MAX];
	size_t n = 1;
	int rc = pin_build_verify(&p, pin, len, out, sizeof(out), &n);
	if (rc < 0) {
		if (n != 0)
			abort();
		for (size_t i = 0; i < sizeof(out); i++)
			if (out[i])
				abort();
	} else if (n != 5u + p.block_len || out[1] != 0x20 || out[4] != p.block_len) {
		abort();
	}
	uint8_t st[PIN_VERIFY_STRUCTURE_MAX];
	if (pin_build_verify_structure(&p, &pin_pinpad_default, st, sizeof(st), &n) == 0 &&
	    n > sizeof(st))
		abort();
	size_t half = len / 2;
	rc = pin_build_reset_retry(&p, pin, half, pin + half, len - half, out, sizeof(out), &n);
	if (rc == 0 && n > sizeof(out))
		abort();
	return 0;
}
