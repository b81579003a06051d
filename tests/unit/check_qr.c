/* Unit tests for protocol/qr.c (docs/digital-card.md part 2, the QR form).
 *
 * base45 against RFC 9285's own examples and every malformed shape; the
 * bounded inflate against a bomb, a truncated and a trailing stream; then
 * every vector of tests/data/digital/qr-expected.txt (made by the
 * independent phone side tests/world/phone_qr.py) must give its reason, and
 * the freshness rules (window edges, one-way off, replay, a challenge used
 * up) are probed with a claim callback like the daemon's.
 *
 * Run from the source tree root (make unit does), or set srcdir. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "protocol/credential.h"
#include "protocol/qr.h"
#include "tests/unit/support/digital_data.h"

#define NOW 1767225600 /* tests/data/digital/make_vectors.py */
#define CHALLENGE "482913"

/* ------------------------------------------------------------------ */
/* base45 */

START_TEST(base45_rfc_examples)
{
	static const struct {
		const char *bin, *b45;
	} v[] = {
		/* RFC 9285 §4.3 and §4.4 */
		{ "AB", "BB8" },
		{ "Hello!!", "%69 VD92EX0" },
		{ "base-45", "UJCLQE7W581" },
		{ "ietf!", "QED8WEX0" },
		{ "", "" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char enc[64];
		uint8_t dec[64];
		size_t n;
		ck_assert_int_eq(base45_encode((const uint8_t *)v[i].bin, strlen(v[i].bin), enc,
		                               sizeof(enc)),
		                 0);
		ck_assert_str_eq(enc, v[i].b45);
		ck_assert_int_eq(base45_decode(v[i].b45, strlen(v[i].b45), dec, sizeof(dec), &n), 0);
		ck_assert_uint_eq(n, strlen(v[i].bin));
		ck_assert_int_eq(memcmp(dec, v[i].bin, n), 0);
	}
}
END_TEST

START_TEST(base45_refusals)
{
	uint8_t out[16];
	size_t n = 99;
	/* RFC 9285 §6: "GGW" is 65536, out of range */
	ck_assert_int_eq(base45_decode("GGW", 3, out, sizeof(out), &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
	/* a last pair over 255 */
	ck_assert_int_eq(base45_decode(":Z", 2, out, sizeof(out), &n), -EINVAL);
	/* 3k+1 characters */
	ck_assert_int_eq(base45_decode("BB8B", 4, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(base45_decode("B", 1, out, sizeof(out), &n), -EINVAL);
	/* lower case, NUL and other characters outside the alphabet */
	ck_assert_int_eq(base45_decode("bb8", 3, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(base45_decode("B\0" "8", 3, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(base45_decode("B#8", 3, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(base45_decode("B8\xc3", 3, out, sizeof(out), &n), -EINVAL);
	/* the output bound */
	ck_assert_int_eq(base45_decode("BB8BB8", 6, out, 3, &n), -ENOSPC);
	ck_assert_int_eq(base45_decode("BB8U0", 5, out, 2, &n), -ENOSPC);
	ck_assert_int_eq(base45_decode("BB8U0", 5, out, 3, &n), 0);
	ck_assert_uint_eq(n, 3);
	char small[3];
	ck_assert_int_eq(base45_encode((const uint8_t *)"AB", 2, small, sizeof(small)), -ENOSPC);
	/* every 2-byte value round-trips */
	for (unsigned x = 0; x <= 0xFFFF; x++) {
		uint8_t in[2] = { (uint8_t)(x >> 8), (uint8_t)x }, back[2];
		char enc[4];
		ck_assert_int_eq(base45_encode(in, 2, enc, sizeof(enc)), 0);
		ck_assert_int_eq(base45_decode(enc, 3, back, 2, &n), 0);
		ck_assert_int_eq(memcmp(in, back, 2), 0);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* inflate */

START_TEST(inflate_bounds)
{
	static uint8_t plain[100000], z[200000], out[QR_CBOR_MAX];
	uLongf zlen = sizeof(z);
	size_t n;
	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 7 + i / 300);
	/* fits */
	ck_assert_int_eq(compress2(z, &zlen, plain, 5000, 9), Z_OK);
	ck_assert_int_eq(qr_inflate(z, zlen, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 5000);
	ck_assert_int_eq(memcmp(out, plain, n), 0);
	/* exactly the bound, and one byte over it */
	zlen = sizeof(z);
	ck_assert_int_eq(compress2(z, &zlen, plain, sizeof(out), 9), Z_OK);
	ck_assert_int_eq(qr_inflate(z, zlen, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, sizeof(out));
	zlen = sizeof(z);
	ck_assert_int_eq(compress2(z, &zlen, plain, sizeof(out) + 1, 9), Z_OK);
	ck_assert_int_eq(qr_inflate(z, zlen, out, sizeof(out), &n), -E2BIG);
	ck_assert_uint_eq(n, 0);
	/* a bomb: 100 kB of zeros in a few hundred bytes */
	memset(plain, 0, sizeof(plain));
	zlen = sizeof(z);
	ck_assert_int_eq(compress2(z, &zlen, plain, sizeof(plain), 9), Z_OK);
	ck_assert_uint_lt(zlen, 400);
	ck_assert_int_eq(qr_inflate(z, zlen, out, sizeof(out), &n), -E2BIG);
	/* truncated, trailing byte, corrupt header, raw deflate without zlib's header */
	zlen = sizeof(z);
	ck_assert_int_eq(compress2(z, &zlen, (const uint8_t *)"hello hello hello", 17, 9), Z_OK);
	ck_assert_int_eq(qr_inflate(z, zlen - 1, out, sizeof(out), &n), -EBADMSG);
	z[zlen] = 0;
	ck_assert_int_eq(qr_inflate(z, zlen + 1, out, sizeof(out), &n), -EBADMSG);
	z[0] ^= 0x01;
	ck_assert_int_eq(qr_inflate(z, zlen, out, sizeof(out), &n), -EBADMSG);
	z[0] ^= 0x01;
	ck_assert_int_eq(qr_inflate(z + 2, zlen - 2, out, sizeof(out), &n), -EBADMSG);
	ck_assert_int_eq(qr_inflate(z, 0, out, sizeof(out), &n), -EBADMSG);
	ck_assert_int_eq(qr_inflate(z, zlen, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 17);
}
END_TEST

/* ------------------------------------------------------------------ */
/* the daemon's claim, in small: one open challenge, a replay list */

struct claims {
	char open[QR_CHALLENGE_MAX + 1]; /* "" when used up */
	uint8_t seen[8][32];
	int nseen;
	int calls;
};

static enum credential_reason
claim(void *ctx, const uint8_t h[32], const char *challenge, int64_t ts)
{
	struct claims *c = ctx;
	(void)ts;
	c->calls++;
	for (int i = 0; i < c->nseen; i++)
		if (memcmp(c->seen[i], h, 32) == 0)
			return CREDENTIAL_R_REPLAYED;
	if (challenge && (!c->open[0] || strcmp(challenge, c->open) != 0))
		return CREDENTIAL_R_CHALLENGE_MISMATCH;
	if (challenge)
		c->open[0] = '\0';
	ck_assert_int_lt(c->nseen, 8);
	memcpy(c->seen[c->nseen++], h, 32);
	return CREDENTIAL_R_OK;
}

static struct credential_anchors *
ca_anchors(void)
{
	struct credential_anchors *a;
	size_t len;
	uint8_t *pem = digital_data_load("ca.pem", &len);
	ck_assert_int_eq(credential_anchors_new(&a), 0);
	ck_assert_int_eq(credential_anchors_add_pem(a, (const char *)pem, len), 0);
	free(pem);
	return a;
}

static struct qr_policy
policy(const struct credential_anchors *a, int64_t now, struct claims *c)
{
	struct qr_policy p = { .cred = { .anchors = a, .now = now, .skew_s = 300 },
		               .one_way = true, .window_s = 120, .claim = claim, .claim_ctx = c };
	return p;
}

static enum credential_reason
run(const char *file, const struct qr_policy *p, struct qr_result *res)
{
	size_t len;
	char *text = (char *)digital_data_load(file, &len);
	int rc = qr_verify(text, len, p, res);
	free(text);
	ck_assert_int_eq(rc == 0, res->reason == CREDENTIAL_R_OK);
	if (rc)
		ck_assert_int_eq(rc, -EACCES);
	return res->reason;
}

START_TEST(vectors)
{
	size_t len;
	char *exp = (char *)digital_data_load("qr-expected.txt", &len), *line, *nl;
	struct credential_anchors *a = ca_anchors();
	int n = 0;
	for (line = exp; line && *line; line = nl ? nl + 1 : NULL) {
		char file[128], want[64];
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		ck_assert_int_eq(sscanf(line, "%127s %63s", file, want), 2);
		struct claims c = { .open = CHALLENGE };
		struct qr_policy p = policy(a, NOW + 10, &c);
		struct qr_result res;
		enum credential_reason r = run(file, &p, &res);
		ck_assert_msg(strcmp(credential_reason_name(r), want) == 0, "%s: %s, expected %s", file,
		              credential_reason_name(r), want);
		if (r == CREDENTIAL_R_OK) {
			ck_assert_ptr_nonnull(res.credential_bytes);
			ck_assert_ptr_nonnull(res.presentation_bytes);
			ck_assert_int_eq(res.ts, NOW + 5);
			ck_assert_str_eq(res.cred.surname, "MARTIN");
		} else {
			ck_assert_ptr_null(res.credential_bytes);
			ck_assert_ptr_null(res.presentation_bytes);
		}
		qr_result_clear(&res);
		n++;
	}
	ck_assert_int_ge(n, 20);
	credential_anchors_free(a);
	free(exp);
}
END_TEST

START_TEST(freshness)
{
	struct credential_anchors *a = ca_anchors();
	struct claims c = { .open = CHALLENGE };
	struct qr_result res;
	struct qr_policy p;

	/* a one-way code: ts = NOW + 5, the window 120 s either side */
	p = policy(a, NOW + 5 + 120, &c);
	ck_assert_int_eq(run("qr-good-oneway.txt", &p, &res), CREDENTIAL_R_OK);
	ck_assert_str_eq(res.challenge, "");
	qr_result_clear(&res);
	/* the same code again: replayed */
	ck_assert_int_eq(run("qr-good-oneway.txt", &p, &res), CREDENTIAL_R_REPLAYED);
	qr_result_clear(&res);
	c.nseen = 0;
	p = policy(a, NOW + 5 + 121, &c);
	ck_assert_int_eq(run("qr-good-oneway.txt", &p, &res), CREDENTIAL_R_PRESENTATION_EXPIRED);
	p = policy(a, NOW + 5 - 121, &c);
	ck_assert_int_eq(run("qr-good-oneway.txt", &p, &res), CREDENTIAL_R_PRESENTATION_EXPIRED);
	/* one-way off: the challenge is required */
	p = policy(a, NOW + 5, &c);
	p.one_way = false;
	ck_assert_int_eq(run("qr-good-oneway.txt", &p, &res), CREDENTIAL_R_CHALLENGE_REQUIRED);
	/* ... and a code with a challenge is still fine, whatever its ts */
	p = policy(a, NOW + 5 + 3000, &c);
	p.one_way = false;
	ck_assert_int_eq(run("qr-good-challenge.txt", &p, &res), CREDENTIAL_R_OK);
	ck_assert_str_eq(res.challenge, CHALLENGE);
	qr_result_clear(&res);
	/* replayed before challenge: the first check of the claim */
	ck_assert_int_eq(run("qr-good-challenge.txt", &p, &res), CREDENTIAL_R_REPLAYED);
	/* the challenge was used up: a forgotten replay cache still refuses */
	c.nseen = 0;
	ck_assert_int_eq(run("qr-good-challenge.txt", &p, &res), CREDENTIAL_R_CHALLENGE_MISMATCH);
	/* no claim callback at all: a challenge cannot match */
	p.claim = NULL;
	ck_assert_int_eq(run("qr-good-challenge.txt", &p, &res), CREDENTIAL_R_CHALLENGE_MISMATCH);
	/* a refusal before freshness never reaches the claim */
	c.calls = 0;
	p = policy(a, NOW + 10, &c);
	ck_assert_int_eq(run("qr-no-code.txt", &p, &res), CREDENTIAL_R_UV_FALSE);
	ck_assert_int_eq(run("qr-foreign-issuer.txt", &p, &res), CREDENTIAL_R_CHAIN_UNTRUSTED);
	ck_assert_int_eq(c.calls, 0);
	/* a bad policy */
	p.window_s = -1;
	ck_assert_int_eq(qr_verify("VQ1:", 4, &p, &res), -EINVAL);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_INTERNAL_ERROR);
	credential_anchors_free(a);
}
END_TEST

START_TEST(unreadable_shapes)
{
	struct credential_anchors *a = ca_anchors();
	struct claims c = { .open = CHALLENGE };
	struct qr_policy p = policy(a, NOW + 10, &c);
	struct qr_result res;
	static char big[QR_TEXT_MAX + 2];
	static const struct {
		const char *text;
		enum credential_reason want;
	} v[] = {
		{ "", CREDENTIAL_R_QR_UNREADABLE },
		{ "VQ1", CREDENTIAL_R_QR_UNREADABLE },
		{ "VQ:", CREDENTIAL_R_QR_UNREADABLE },
		{ "vq1:BB8", CREDENTIAL_R_QR_UNREADABLE },
		{ "HC1:BB8", CREDENTIAL_R_QR_UNREADABLE },
		{ "VQ1:", CREDENTIAL_R_QR_UNREADABLE },
		{ "VQ1:BB8", CREDENTIAL_R_QR_UNREADABLE },
		{ "VQ01:BB8", CREDENTIAL_R_BAD_VERSION },
		{ "VQ2:BB8", CREDENTIAL_R_BAD_VERSION },
		{ "VQ12345:BB8", CREDENTIAL_R_QR_UNREADABLE },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		ck_assert_int_eq(qr_verify(v[i].text, strlen(v[i].text), &p, &res), -EACCES);
		ck_assert_msg(res.reason == v[i].want, "%s: %s", v[i].text,
		              credential_reason_name(res.reason));
	}
	/* over the length bound, even when well-formed up to it */
	memcpy(big, "VQ1:", 4);
	memset(big + 4, '0', sizeof(big) - 5);
	ck_assert_int_eq(qr_verify(big, QR_TEXT_MAX + 1, &p, &res), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_QR_UNREADABLE);
	/* the good code with a line terminator left on (the driver strips it) */
	size_t len;
	char *text = (char *)digital_data_load("qr-good-challenge.txt", &len);
	text[len] = '\r';
	ck_assert_int_eq(qr_verify(text, len + 1, &p, &res), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_QR_UNREADABLE);
	/* every cut of the good code is refused with a name, never accepted */
	for (size_t cut = 0; cut < len; cut += 7) {
		ck_assert_int_eq(qr_verify(text, cut, &p, &res), -EACCES);
		ck_assert_int_ne(res.reason, CREDENTIAL_R_INTERNAL_ERROR);
	}
	/* every single-character change in the base45 part: refused, named */
	for (size_t i = 4; i < len; i += 13) {
		char keep = text[i];
		text[i] = keep == 'Z' ? 'Y' : 'Z';
		ck_assert_int_eq(qr_verify(text, len, &p, &res), -EACCES);
		ck_assert_int_ne(res.reason, CREDENTIAL_R_INTERNAL_ERROR);
		ck_assert_int_ne(res.reason, CREDENTIAL_R_OK);
		text[i] = keep;
	}
	free(text);
	credential_anchors_free(a);
}
END_TEST

START_TEST(unpack_and_challenge)
{
	size_t len, cl, pl;
	char *text = (char *)digital_data_load("qr-good-challenge.txt", &len);
	uint8_t *buf;
	const uint8_t *cred, *pres;
	enum credential_reason r;
	ck_assert_int_eq(qr_unpack(text, len, &buf, &cred, &cl, &pres, &pl, &r), 0);
	size_t glen;
	uint8_t *good = digital_data_load("cred-good.cbor", &glen);
	ck_assert_uint_eq(cl, glen);
	ck_assert_int_eq(memcmp(cred, good, glen), 0);
	ck_assert_uint_gt(pl, 64);
	free(buf);
	free(good);
	free(text);

	char ch[8], ch2[8];
	ck_assert_int_eq(qr_challenge_new(ch, sizeof(ch)), 0);
	ck_assert_uint_eq(strlen(ch), 6);
	for (int i = 0; i < 6; i++)
		ck_assert(ch[i] >= '0' && ch[i] <= '9');
	int same = 0;
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(qr_challenge_new(ch2, sizeof(ch2)), 0);
		same += strcmp(ch, ch2) == 0;
	}
	ck_assert_int_lt(same, 3);
	ck_assert_int_eq(qr_challenge_new(ch, 6), -EINVAL);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("qr");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 60);
	tcase_add_test(t, base45_rfc_examples);
	tcase_add_test(t, base45_refusals);
	tcase_add_test(t, inflate_bounds);
	tcase_add_test(t, vectors);
	tcase_add_test(t, freshness);
	tcase_add_test(t, unreadable_shapes);
	tcase_add_test(t, unpack_and_challenge);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
