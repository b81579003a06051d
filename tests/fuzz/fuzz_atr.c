/* libFuzzer target: ATR parsing, hex helpers and pattern matching
 * (protocol/atr). The input is an ATR as bytes; it is also read as
 * pattern text "VALUE\0MASK" and matched against itself. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "protocol/atr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct atr_info info;
	int r = atr_parse(data, size, &info);
	if (r == 0) {
		if (info.hist_len > ATR_MAX_HIST || info.len != size || info.error != ATR_OK)
			__builtin_trap();
		(void)atr_is_iso14443_4(&info);
		(void)atr_offers(&info, 1);
	} else if (info.error == ATR_OK || !atr_error_name(info.error)) {
		__builtin_trap();
	}

	char text[256];
	(void)atr_hex_format(data, size, text, sizeof(text));
	if (strlen(text) >= sizeof(text))
		__builtin_trap();

	/* as text: value, optional mask after a NUL */
	const char *s = (const char *)data;
	const char *nul = memchr(s, '\0', size);
	size_t vlen = nul ? (size_t)(nul - s) : size;
	const char *mask = nul ? nul + 1 : NULL;
	size_t mlen = nul ? size - vlen - 1 : 0;
	struct atr_pattern p;
	if (atr_pattern_parse(s, vlen, mask, mlen, &p) == 0) {
		if (p.len == 0 || p.len > ATR_MAX_LEN)
			__builtin_trap();
		(void)atr_pattern_match(&p, data, size);
		/* a pattern always matches its own value bytes */
		if (!p.prefix && atr_pattern_match(&p, p.value, p.len) == 0)
			__builtin_trap();
	}
	uint8_t out[64];
	size_t n;
	if (atr_hex_parse(s, vlen, out, sizeof(out), &n) == 0 && n > sizeof(out))
		__builtin_trap();
	return 0;
}
