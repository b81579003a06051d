/* libFuzzer target for protocol/qr.c (docs/digital-card.md part 2).
 *
 * The first byte picks what the rest is:
 *   0  a scanned text, through the whole of qr_verify() against the test CA
 *      (tests/data/digital/ca.pem from the source root) at the vectors'
 *      instant, one-way codes allowed, a claim that accepts challenge
 *      "482913" (the seeds are the vectors of tests/data/digital/qr-*.txt);
 *   1  base45 text alone: decode, and when it decodes, encode must give the
 *      text back (base45 has one encoding per byte string);
 *   2  a zlib stream: the bounded inflate must never write past its bound;
 *   3  bytes that are deflated here, base45-encoded and prefixed, so that
 *      the container's CBOR and the presentation are reached directly.
 * Nothing random may be accepted: every acceptance is checked to carry a
 * credential and a presentation. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "protocol/credential.h"
#include "protocol/qr.h"

#define NOW 1767225600

static struct credential_anchors *anchors;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char pem[8192];
	size_t n = 0;
	FILE *f;

	(void)argc;
	(void)argv;
	if (credential_anchors_new(&anchors))
		abort();
	f = fopen("tests/data/digital/ca.pem", "rb");
	if (f) {
		n = fread(pem, 1, sizeof(pem), f);
		fclose(f);
	}
	if (n)
		(void)credential_anchors_add_pem(anchors, pem, n);
	return 0;
}

static enum credential_reason
claim(void *ctx, const uint8_t h[32], const char *challenge, int64_t ts)
{
	(void)ctx;
	(void)h;
	(void)ts;
	if (challenge && strcmp(challenge, "482913") != 0)
		return CREDENTIAL_R_CHALLENGE_MISMATCH;
	return CREDENTIAL_R_OK;
}

static void
verify(const char *text, size_t len)
{
	struct qr_policy p = { .cred = { .anchors = anchors, .now = NOW + 10, .skew_s = 300 },
		               .one_way = true, .window_s = 120, .claim = claim };
	struct qr_result r;
	int rc = qr_verify(text, len, &p, &r);
	if (rc == 0 && (!r.credential_bytes || !r.presentation_bytes || r.reason != CREDENTIAL_R_OK))
		abort();
	if (rc != 0 && (r.credential_bytes || r.reason == CREDENTIAL_R_OK))
		abort();
	qr_result_clear(&r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[QR_CBOR_MAX + 16];
	static char text[QR_TEXT_MAX + 16];
	size_t n;

	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 4;
	data++;
	size--;
	switch (mode) {
	case 0:
		verify((const char *)data, size);
		break;
	case 1:
		if (base45_decode((const char *)data, size, out, sizeof(out), &n) == 0) {
			char *back = malloc(size + 1);
			if (!back || base45_encode(out, n, back, size + 1) != 0 || memcmp(back, data, size))
				abort();
			free(back);
		}
		break;
	case 2: {
		/* a canary past the bound */
		memset(out + QR_CBOR_MAX, 0xA5, 16);
		int r = qr_inflate(data, size, out, QR_CBOR_MAX, &n);
		if ((r == 0 && n > QR_CBOR_MAX) || out[QR_CBOR_MAX] != 0xA5)
			abort();
		break;
	}
	case 3: {
		static uint8_t z[QR_DEFLATED_MAX + 64];
		uLongf zl = sizeof(z);
		if (size > QR_CBOR_MAX || compress2(z, &zl, data, size, 9) != Z_OK ||
		    zl > QR_DEFLATED_MAX)
			break;
		memcpy(text, QR_PREFIX, 4);
		if (base45_encode(z, zl, text + 4, sizeof(text) - 4) != 0)
			break;
		verify(text, strlen(text));
		break;
	}
	}
	return 0;
}
