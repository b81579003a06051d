/* Base64, RFC 4648 §4: one strict codec for the whole project (the sheet's
 * evidence in JSON, GetCard's credential, exports, vitalectl). */
#include "lib/b64.h"

#include <errno.h>
#include <stdlib.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t
b64_encode(const uint8_t *p, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = alphabet[v >> 18 & 63];
		out[o++] = alphabet[v >> 12 & 63];
		out[o++] = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

char *
b64_encode_alloc(const uint8_t *p, size_t n)
{
	if (n > (SIZE_MAX - 4) / 4 * 3 - 3)
		return NULL;
	char *out = malloc(B64_ENCODED_LEN(n) + 1);
	if (out)
		b64_encode(p, n, out);
	return out;
}

static int
value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
b64_decode(const char *s, size_t slen, uint8_t *out, size_t max, size_t *outlen)
{
	*outlen = 0;
	if (slen % 4)
		return -EINVAL;
	size_t o = 0;
	for (size_t i = 0; i < slen; i += 4) {
		int v[4];
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			if (s[i + j] == '=' && i + 4 == slen && j >= 2) {
				v[j] = 0;
				pad++;
			} else if (pad || (v[j] = value(s[i + j])) < 0) {
				return -EINVAL;
			}
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		int nbytes = 3 - pad;
		if (o + (size_t)nbytes > max)
			return -E2BIG;
		out[o++] = (uint8_t)(w >> 16);
		if (nbytes > 1)
			out[o++] = (uint8_t)(w >> 8);
		if (nbytes > 2)
			out[o++] = (uint8_t)w;
	}
	*outlen = o;
	return 0;
}
