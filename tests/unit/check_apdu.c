/* Unit tests for protocol/apdu: encoding of cases 1-4 (short and
 * extended), case detection, status-word names, and the T=0 exchange
 * against scripted transcripts: 61xx chains, 6Cxx, both on GET RESPONSE,
 * and each hostile pattern with its own error (endless 61xx, 6C
 * ping-pong, answer too large, malformed answer, silence, removal). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/apdu.h"
#include "tests/unit/support/fakecard.h"

static void
hexeq(const uint8_t *b, size_t n, const char *want)
{
	uint8_t w[300];
	size_t wn = fakecard_unhex(want, w, sizeof(w));
	ck_assert_uint_eq(n, wn);
	ck_assert_mem_eq(b, w, n);
}

START_TEST(test_build)
{
	uint8_t out[APDU_CMD_MAX];
	size_t n;
	const uint8_t aid[] = { 0xD2, 0x50, 0x00, 0x00, 0x02 };
	struct apdu_cmd c = { .cla = 0x00, .ins = 0xA4, .p1 = 0x04, .p2 = 0x00 };
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	hexeq(out, n, "00A40400");
	ck_assert_int_eq(apdu_case(&c), 1);
	c.ne = 256;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	hexeq(out, n, "00A4040000");
	ck_assert_int_eq(apdu_case(&c), 2);
	c.ne = 0; c.data = aid; c.lc = sizeof(aid);
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	hexeq(out, n, "00A4040005D250000002");
	ck_assert_int_eq(apdu_case(&c), 3);
	c.ne = 0x10;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	hexeq(out, n, "00A4040005D25000000210");
	ck_assert_int_eq(apdu_case(&c), 4);

	/* extended */
	c.extended = true;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	hexeq(out, n, "00A404000000 05 D250000002 0010");
	c.lc = 0; c.data = NULL; c.ne = 65536;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	hexeq(out, n, "00A40400 000000");
	c.ne = 300;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	hexeq(out, n, "00A40400 00012C");
	uint8_t *big = calloc(1, 300);
	c.data = big; c.lc = 300; c.ne = 0;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(n, 4 + 3 + 300);
	ck_assert_uint_eq(out[4], 0x00);
	ck_assert_uint_eq(out[5], 0x01);
	ck_assert_uint_eq(out[6], 0x2C);

	/* errors: too long for short, no room, data missing */
	c.extended = false;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), -EINVAL);
	c.lc = 10; c.ne = 257;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), -EINVAL);
	c.ne = 0;
	ck_assert_int_eq(apdu_build(&c, out, 14, &n), -EMSGSIZE);
	ck_assert_uint_eq(n, 0);
	c.data = NULL;
	ck_assert_int_eq(apdu_build(&c, out, sizeof(out), &n), -EINVAL);
	free(big);
}
END_TEST

START_TEST(test_parse)
{
	uint8_t b[300];
	struct apdu_cmd c;
	size_t n = fakecard_unhex("00B0000000", b, sizeof(b));
	ck_assert_int_eq(apdu_parse(b, n, &c), 0);
	ck_assert_uint_eq(c.ne, 256);
	ck_assert_int_eq(apdu_case(&c), 2);
	n = fakecard_unhex("00A4040005D250000002", b, sizeof(b));
	ck_assert_int_eq(apdu_parse(b, n, &c), 0);
	ck_assert_int_eq(apdu_case(&c), 3);
	ck_assert_ptr_eq(c.data, b + 5);
	n = fakecard_unhex("00A4040005D25000000200", b, sizeof(b));
	ck_assert_int_eq(apdu_parse(b, n, &c), 0);
	ck_assert_int_eq(apdu_case(&c), 4);
	ck_assert_uint_eq(c.ne, 256);
	n = fakecard_unhex("00A4040006D250000002", b, sizeof(b));
	ck_assert_int_eq(apdu_parse(b, n, &c), -EINVAL);
	n = fakecard_unhex("00A4040005D2500000020000", b, sizeof(b));
	ck_assert_int_eq(apdu_parse(b, n, &c), -EINVAL);
	n = fakecard_unhex("00B00000000000", b, sizeof(b));          /* 2E, Ne 65536 */
	ck_assert_int_eq(apdu_parse(b, n, &c), 0);
	ck_assert(c.extended);
	ck_assert_uint_eq(c.ne, 65536);
	n = fakecard_unhex("00A4040000000201020100", b, sizeof(b)); /* 4E */
	ck_assert_int_eq(apdu_parse(b, n, &c), 0);
	ck_assert_uint_eq(c.lc, 2);
	ck_assert_uint_eq(c.ne, 256);
	n = fakecard_unhex("00A404000000000102", b, sizeof(b));     /* Lc 0 extended */
	ck_assert_int_eq(apdu_parse(b, n, &c), -EINVAL);
	n = fakecard_unhex("00A4040000", b, sizeof(b));
	ck_assert_int_eq(apdu_parse(b, n, &c), 0);            /* 2S Ne 256 */
	n = fakecard_unhex("00A404000001", b, sizeof(b));
	ck_assert_int_eq(apdu_parse(b, n, &c), -EINVAL);
	ck_assert_int_eq(apdu_parse(b, 3, &c), -EINVAL);

	/* build(parse(x)) == x for every short form */
	const char *cmds[] = { "00A40400", "00B0000010", "00A4040005D250000002",
	                       "00A4040005D25000000201", "80CA000000" };
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		uint8_t o[300];
		size_t on;
		n = fakecard_unhex(cmds[k], b, sizeof(b));
		ck_assert_int_eq(apdu_parse(b, n, &c), 0);
		ck_assert_int_eq(apdu_build(&c, o, sizeof(o), &on), 0);
		ck_assert_uint_eq(on, n);
		ck_assert_mem_eq(o, b, n);
	}

	const uint8_t *d;
	size_t dl;
	uint16_t sw;
	ck_assert_int_eq(apdu_parse_response((const uint8_t *)"\x41\x90\x00", 3, &d, &dl, &sw), 0);
	ck_assert_uint_eq(dl, 1);
	ck_assert_uint_eq(sw, 0x9000);
	ck_assert_int_eq(apdu_parse_response((const uint8_t *)"\x90", 1, &d, &dl, &sw), -EBADMSG);
}
END_TEST

START_TEST(test_sw_names)
{
	static const struct { uint16_t sw; const char *name; } t[] = {
		{ 0x9000, "ok" }, { 0x6110, "bytes_available" }, { 0x6100, "bytes_available" },
		{ 0x6C10, "wrong_le" }, { 0x6282, "end_of_file" }, { 0x6283, "file_deactivated" },
		{ 0x6700, "wrong_length" }, { 0x6982, "security_not_satisfied" },
		{ 0x6983, "auth_blocked" }, { 0x6984, "reference_unusable" },
		{ 0x6985, "conditions_not_satisfied" }, { 0x6986, "no_current_ef" },
		{ 0x6A82, "file_not_found" }, { 0x6A86, "wrong_p1p2" }, { 0x6A88, "reference_not_found" },
		{ 0x6B00, "wrong_offset" }, { 0x6D00, "ins_not_supported" },
		{ 0x6E00, "cla_not_supported" }, { 0x63C2, "tries_left" }, { 0x63C0, "tries_left" },
		{ 0x6300, "verify_failed" }, { 0x6381, "warning_changed" }, { 0x6F00, "no_diagnosis" },
		{ 0x6A99, "wrong_parameters" }, { 0x1234, "sw_unknown" }, { 0x9001, "sw_unknown" },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		ck_assert_msg(strcmp(apdu_sw_name(t[i].sw), t[i].name) == 0, "%04X: %s, want %s",
		              t[i].sw, apdu_sw_name(t[i].sw), t[i].name);
	ck_assert_str_eq(apdu_sw_text(0x6A82), "file or application not found");
	ck_assert_str_eq(apdu_sw_text(0x1234), "unknown status");
	ck_assert(apdu_sw_ok(0x9000));
	ck_assert(!apdu_sw_ok(0x6282));
	ck_assert_str_eq(apdu_strerror(-ELOOP), "t0_endless_61xx");
	ck_assert_str_eq(apdu_strerror(-EPROTO), "t0_6c_pingpong");
	ck_assert_str_eq(apdu_strerror(-EMSGSIZE), "answer_too_large");
	ck_assert_str_eq(apdu_strerror(-ENODEV), "card_removed");
	ck_assert_str_eq(apdu_strerror(-ETIMEDOUT), "timeout");
	ck_assert_str_eq(apdu_strerror(-EBADMSG), "bad_response");
}
END_TEST

/* Run one exchange of cmd against a transcript; check it was all used. */
static int
run(const struct tx_step *steps, size_t n, const struct apdu_limits *lim, const char *cmd,
    uint8_t *resp, size_t respsz, size_t *rlen, uint16_t *sw, struct apdu_stats *st,
    struct transcript *t)
{
	uint8_t c[300];
	size_t cn = fakecard_unhex(cmd, c, sizeof(c));
	memset(t, 0, sizeof(*t));
	t->steps = steps;
	t->n = n;
	struct apdu_io io = { fakecard_tx_transmit, t };
	memset(st, 0, sizeof(*st));
	return apdu_exchange(&io, lim, st, c, cn, resp, respsz, rlen, sw);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

START_TEST(test_exchange_t0)
{
	uint8_t r[600];
	size_t n;
	uint16_t sw;
	struct apdu_stats st;
	struct transcript t;

	static const struct tx_step plain[] = { { "00B0000004", "01020304 9000", 0 } };
	ck_assert_int_eq(run(plain, N(plain), NULL, "00B0000004", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_uint_eq(sw, 0x9000);
	hexeq(r, n, "01020304");
	ck_assert_uint_eq(st.apdus, 1);
	ck_assert_uint_eq(st.bytes_in, 6);

	/* 61xx chain: data before each 61 is kept */
	static const struct tx_step chain[] = {
		{ "00A4040002A1A2", "6105", 0 },
		{ "00C0000005", "1112131415 6103", 0 },
		{ "00C0000003", "212223 9000", 0 },
	};
	ck_assert_int_eq(run(chain, N(chain), NULL, "00A4040002A1A2", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_int_eq(t.mismatch, 0);
	ck_assert_uint_eq(sw, 0x9000);
	hexeq(r, n, "1112131415212223");
	ck_assert_uint_eq(st.apdus, 3);

	/* 6Cxx: resend with Le = xx */
	static const struct tx_step c6[] = {
		{ "00B0010000", "6C6C", 0 },
		{ "00B001006C", "AABB 9000", 0 },
	};
	ck_assert_int_eq(run(c6, N(c6), NULL, "00B0010000", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_int_eq(t.mismatch, 0);
	hexeq(r, n, "AABB");
	ck_assert_uint_eq(st.apdus, 2);

	/* 6Cxx on GET RESPONSE, then 61 again */
	static const struct tx_step gr6c[] = {
		{ "00A40200022001", "6120", 0 },
		{ "00C0000020", "6C10", 0 },
		{ "00C0000010", "0102 6101", 0 },
		{ "00C0000001", "03 9000", 0 },
	};
	ck_assert_int_eq(run(gr6c, N(gr6c), NULL, "00A40200022001", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_int_eq(t.mismatch, 0);
	hexeq(r, n, "010203");
	ck_assert_uint_eq(st.apdus, 4);

	/* 61 00 means 256 (or more): GET RESPONSE Le 00 */
	static const struct tx_step gr00[] = {
		{ "80CA000000", "6100", 0 },
		{ "00C0000000", "9000", 0 },
	};
	ck_assert_int_eq(run(gr00, N(gr00), NULL, "80CA000000", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_int_eq(t.mismatch, 0);   /* proprietary CLA 80: GET RESPONSE with 00 */

	/* logical channel 1: GET RESPONSE keeps it */
	static const struct tx_step ch1[] = {
		{ "01B0000000", "6102", 0 },
		{ "01C0000002", "AAAA 9000", 0 },
	};
	ck_assert_int_eq(run(ch1, N(ch1), NULL, "01B0000000", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_int_eq(t.mismatch, 0);

	/* a final status other than 9000 is returned with the data */
	static const struct tx_step eof[] = { { "00B0000010", "0102 6282", 0 } };
	ck_assert_int_eq(run(eof, N(eof), NULL, "00B0000010", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_uint_eq(sw, 0x6282);
	ck_assert_uint_eq(n, 2);

	/* 6C on a case 3 command cannot be retried: returned as the status */
	static const struct tx_step c3[] = { { "00A4040002A1A2", "6C10", 0 } };
	ck_assert_int_eq(run(c3, N(c3), NULL, "00A4040002A1A2", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_uint_eq(sw, 0x6C10);
	ck_assert_uint_eq(st.apdus, 1);
}
END_TEST

START_TEST(test_exchange_hostile)
{
	uint8_t r[70000];
	size_t n;
	uint16_t sw;
	struct apdu_stats st;
	struct transcript t;
	struct apdu_limits lim;
	apdu_limits_default(&lim);

	/* endless 61xx (no data): rounds bound it */
	static struct tx_step endless[200];
	for (size_t i = 0; i < N(endless); i++)
		endless[i] = (struct tx_step){ NULL, "6110", 0 };
	ck_assert_int_eq(run(endless, N(endless), &lim, "00A4040002A1A2", r, sizeof(r), &n, &sw,
	                     &st, &t), -ELOOP);
	ck_assert_uint_eq(st.apdus, 1 + lim.max_get_response);
	ck_assert_uint_eq(sw, 0);

	/* endless 61xx with data each time */
	static struct tx_step endless_data[200];
	char d16[2 * 16 + 5];
	memset(d16, 'A', 32);
	memcpy(d16 + 32, "6110", 5);
	for (size_t i = 0; i < N(endless_data); i++)
		endless_data[i] = (struct tx_step){ NULL, d16, 0 };
	ck_assert_int_eq(run(endless_data, N(endless_data), &lim, "00A4040002A1A2", r, sizeof(r),
	                     &n, &sw, &st, &t), -ELOOP);
	ck_assert_uint_eq(n, 16 * (1 + lim.max_get_response));

	/* 6C ping-pong */
	static const struct tx_step pp[] = {
		{ "00B0000000", "6C02", 0 }, { "00B0000002", "6C03", 0 },
		{ "00B0000003", "6C04", 0 }, { "00B0000004", "6C05", 0 },
	};
	ck_assert_int_eq(run(pp, N(pp), &lim, "00B0000000", r, sizeof(r), &n, &sw, &st, &t), -EPROTO);
	ck_assert_int_eq(t.mismatch, 0);
	ck_assert_uint_eq(st.apdus, 1 + lim.max_6c);

	/* answer too large: the limit on gathered bytes */
	lim.max_response = 100;
	static struct tx_step big[10];
	static char d64[2 * 64 + 5];
	memset(d64, 'B', 128);
	memcpy(d64 + 128, "6140", 5);
	for (size_t i = 0; i < N(big); i++)
		big[i] = (struct tx_step){ NULL, d64, 0 };
	ck_assert_int_eq(run(big, N(big), &lim, "80CA000000", r, sizeof(r), &n, &sw, &st, &t),
	                 -EMSGSIZE);
	ck_assert_uint_le(n, 100);
	/* the GET RESPONSE asked only for what the limit leaves (100 - 64) */
	static struct tx_step capped2[2];
	capped2[0] = (struct tx_step){ "80CA000000", d64, 0 };
	capped2[1] = (struct tx_step){ "00C0000024", "9000", 0 };
	ck_assert_int_eq(run(capped2, 2, &lim, "80CA000000", r, sizeof(r), &n, &sw, &st, &t), 0);
	ck_assert_int_eq(t.mismatch, 0);
	ck_assert_uint_eq(n, 64);
	apdu_limits_default(&lim);

	/* the caller's buffer bounds it too: 10 bytes of room + SW */
	static const struct tx_step small[] = {
		{ "80CA000000", "6120", 0 },
		{ "00C000000A", "00010203040506070809 6116", 0 },
	};
	ck_assert_int_eq(run(small, N(small), &lim, "80CA000000", r, 12, &n, &sw, &st, &t), -EMSGSIZE);
	ck_assert_int_eq(t.mismatch, 0);
	ck_assert_uint_eq(n, 10);
	ck_assert_int_eq(run(small, N(small), &lim, "80CA000000", r, 1, &n, &sw, &st, &t), -EMSGSIZE);

	/* malformed: one byte */
	static const struct tx_step one[] = { { NULL, "90", 0 } };
	ck_assert_int_eq(run(one, N(one), &lim, "00B0000000", r, sizeof(r), &n, &sw, &st, &t), -EBADMSG);

	/* silence and removal pass through; data so far is reported */
	static const struct tx_step silent[] = { { NULL, NULL, -ETIMEDOUT } };
	ck_assert_int_eq(run(silent, N(silent), &lim, "00B0000000", r, sizeof(r), &n, &sw, &st, &t),
	                 -ETIMEDOUT);
	static const struct tx_step gone[] = {
		{ "00A4040002A1A2", "0102 6105", 0 }, { "00C0000005", NULL, -ENODEV },
	};
	ck_assert_int_eq(run(gone, N(gone), &lim, "00A4040002A1A2", r, sizeof(r), &n, &sw, &st, &t),
	                 -ENODEV);
	ck_assert_uint_eq(n, 2);
	ck_assert_uint_eq(sw, 0);

	/* a bad command is refused before anything is sent */
	ck_assert_int_eq(run(one, 0, &lim, "00B0", r, sizeof(r), &n, &sw, &st, &t), -EINVAL);
	ck_assert_uint_eq(st.apdus, 0);
}
END_TEST

static int
liar(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	(void)ctx; (void)c; (void)clen;
	r[0] = 0x90;
	r[1] = 0x00;
	*rlen += 10;     /* claims more than the buffer holds */
	return 0;
}

START_TEST(test_exchange_nodata_and_contract)
{
	uint16_t sw;
	struct apdu_stats st = { 0 };
	struct transcript t = { 0 };
	uint8_t c[32];
	size_t cn = fakecard_unhex("00A404000BD250000002564954414C45", c, sizeof(c));

	/* 61xx is success: the FCI is not fetched */
	static const struct tx_step sel[] = { { "00A404000BD250000002564954414C45", "610F", 0 } };
	t.steps = sel;
	t.n = 1;
	struct apdu_io io = { fakecard_tx_transmit, &t };
	ck_assert_int_eq(apdu_exchange_nodata(&io, NULL, &st, c, cn, &sw), 0);
	ck_assert_uint_eq(sw, 0x9000);
	ck_assert_uint_eq(st.apdus, 1);
	/* a refusal is a status, not an error */
	static const struct tx_step nf[] = { { NULL, "6A82", 0 } };
	memset(&t, 0, sizeof(t));
	t.steps = nf;
	t.n = 1;
	ck_assert_int_eq(apdu_exchange_nodata(&io, NULL, &st, c, cn, &sw), 0);
	ck_assert_uint_eq(sw, 0x6A82);
	/* 6C still handled (case 4 command) */
	cn = fakecard_unhex("00A404000BD250000002564954414C4500", c, sizeof(c));
	static const struct tx_step c6[] = {
		{ "00A404000BD250000002564954414C4500", "6C0F", 0 },
		{ "00A404000BD250000002564954414C450F", "610F", 0 },
	};
	memset(&t, 0, sizeof(t));
	t.steps = c6;
	t.n = 2;
	ck_assert_int_eq(apdu_exchange_nodata(&io, NULL, &st, c, cn, &sw), 0);
	ck_assert_int_eq(t.mismatch, 0);
	ck_assert_uint_eq(sw, 0x9000);

	/* a driver that reports more bytes than the buffer: -EIO */
	struct apdu_io bad = { liar, NULL };
	uint8_t r[64];
	size_t n;
	ck_assert_int_eq(apdu_exchange(&bad, NULL, NULL, c, cn, r, sizeof(r), &n, &sw), -EIO);
	ck_assert_int_eq(apdu_exchange(NULL, NULL, NULL, c, cn, r, sizeof(r), &n, &sw), -EINVAL);
	ck_assert_int_eq(apdu_exchange(&bad, NULL, NULL, c, cn, NULL, 5, &n, &sw), -EINVAL);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("apdu");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_build);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_sw_names);
	tcase_add_test(tc, test_exchange_t0);
	tcase_add_test(tc, test_exchange_hostile);
	tcase_add_test(tc, test_exchange_nodata_and_contract);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
