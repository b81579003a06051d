/* Hexadecimal text for bytes: the one encoder the layers above share. */
#include "lib/hex.h"

#include <errno.h>

char *
hex_encode(const uint8_t *p, size_t len, bool upper, char *out, size_t outlen)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	if (!out || outlen == 0)
		return out;
	size_t o = 0;
	for (size_t i = 0; i < len && o + 2 < outlen; i++) {
		out[o++] = digits[p[i] >> 4];
		out[o++] = digits[p[i] & 15];
	}
	out[o] = '\0';
	return out;
}

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
hex_decode(const char *s, size_t slen, uint8_t *out, size_t max)
{
	if (slen % 2)
		return -EINVAL;
	if (slen / 2 > max)
		return -E2BIG;
	for (size_t i = 0; i < slen; i += 2) {
		int hi = nibble(s[i]), lo = nibble(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	return (int)(slen / 2);
}
