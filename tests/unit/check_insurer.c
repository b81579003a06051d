/* Unit tests for protocol/insurer.c: the batch body (exact keys, deterministic
 * CBOR, limits), one test per rule of "a 200 counts only if ..." (INSURER.md),
 * 4xx bodies, returns, rights, opposition, the status classification, and
 * the backoff's bounds with an injected random source (INSURER_SEED=N to
 * replay the random part). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/cbor.h"
#include "protocol/insurer.h"

#define BID "0f8e7d6c-5b4a-4938-a716-151413121110"
#define ID1 "11111111-1111-4111-8111-111111111111"
#define ID2 "22222222-2222-4222-a222-222222222222"

static const uint8_t sheet1[] = { 0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0, 0x41, 0x00, 0x41, 0x01 };
static const uint8_t sheet2[] = { 0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0, 0x41, 0x02, 0x41, 0x03 };
static const uint8_t cert[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };

static struct insurer_batch
batch2(const uint8_t **sh, size_t *sl, const uint8_t **ce, size_t *cl)
{
	sh[0] = sheet1;
	sl[0] = sizeof(sheet1);
	sh[1] = sheet2;
	sl[1] = sizeof(sheet2);
	ce[0] = cert;
	cl[0] = sizeof(cert);
	return (struct insurer_batch){ BID, "T-0001", "123456789", 1760000000, ce, cl, 1, sh, sl, 2 };
}

START_TEST(test_batch_keys)
{
	const uint8_t *sh[2], *ce[1];
	size_t sl[2], cl[1];
	struct insurer_batch b = batch2(sh, sl, ce, cl);
	uint8_t *out, *out2;
	size_t len, len2;
	struct cbor_doc d = { 0 };
	static const char *keys[] = { "v",       "batch_id", "terminal_id", "practitioner_id",
		                      "created", "x5chain",  "sheets" };

	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), 0);
	ck_assert_int_eq(cbor_decode(out, len, NULL, CBOR_STRICT, &d), 0);
	const struct cbor_item *m = cbor_root(&d);
	ck_assert_int_eq(m->type, CBOR_MAP);
	ck_assert_uint_eq(m->count, 7);
	for (size_t i = 0; i < 7; i++)
		ck_assert_ptr_nonnull(cbor_map_get_text(&d, m, keys[i]));
	ck_assert(cbor_int_eq(cbor_map_get_text(&d, m, "v"), 1));
	ck_assert(cbor_text_eq(cbor_map_get_text(&d, m, "batch_id"), BID));
	ck_assert(cbor_text_eq(cbor_map_get_text(&d, m, "practitioner_id"), "123456789"));
	ck_assert(cbor_int_eq(cbor_map_get_text(&d, m, "created"), 1760000000));
	const struct cbor_item *s = cbor_map_get_text(&d, m, "sheets");
	ck_assert_int_eq(s->type, CBOR_ARRAY);
	ck_assert_uint_eq(s->count, 2);
	const struct cbor_item *s1 = cbor_child(&d, s, 1);
	ck_assert_int_eq(s1->type, CBOR_BYTES);
	ck_assert_mem_eq(s1->ptr, sheet2, sizeof(sheet2));
	const struct cbor_item *x = cbor_map_get_text(&d, m, "x5chain");
	ck_assert_uint_eq(x->count, 1);
	ck_assert_int_eq(cbor_child(&d, x, 0)->type, CBOR_BYTES);
	ck_assert_uint_le(len, INSURER_BATCH_OVERHEAD(2, 1) + sizeof(sheet1) + sizeof(sheet2) +
	                           sizeof(cert) + strlen(BID) + 16);
	/* the same batch gives the same bytes (retries resend them exactly) */
	ck_assert_int_eq(insurer_batch_encode(&b, &out2, &len2), 0);
	ck_assert_uint_eq(len, len2);
	ck_assert_mem_eq(out, out2, len);
	cbor_doc_free(&d);
	free(out);
	free(out2);
}
END_TEST

START_TEST(test_batch_limits)
{
	const uint8_t *sh[2], *ce[1];
	size_t sl[2], cl[1];
	struct insurer_batch b = batch2(sh, sl, ce, cl);
	uint8_t *out;
	size_t len;

	b.nsheets = 0;
	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), -EINVAL);
	ck_assert_ptr_null(out);
	b.nsheets = 501;
	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), -EINVAL);
	b = batch2(sh, sl, ce, cl);
	b.ncerts = 0;
	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), -EINVAL);
	b = batch2(sh, sl, ce, cl);
	b.batch_id = "0F8E7D6C-5B4A-4938-A716-151413121110"; /* upper case */
	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), -EINVAL);
	b = batch2(sh, sl, ce, cl);
	b.practitioner_id = "";
	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), -EINVAL);

	/* 4 MiB: two sheets of 2 MiB do not fit, one of 4 MiB - 1 KiB does */
	uint8_t *big = calloc(1, 4u << 20);
	b = batch2(sh, sl, ce, cl);
	sh[0] = sh[1] = big;
	sl[0] = sl[1] = 2u << 20;
	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), -E2BIG);
	ck_assert_ptr_null(out);
	b.nsheets = 1;
	sl[0] = (4u << 20) - 1024;
	ck_assert_int_eq(insurer_batch_encode(&b, &out, &len), 0);
	ck_assert_uint_le(len, INSURER_BATCH_BYTES_MAX);
	free(out);
	free(big);
}
END_TEST

START_TEST(test_uuid)
{
	uint8_t r[16];
	char s[37];

	memset(r, 0xff, sizeof(r));
	insurer_uuid_format(r, s);
	ck_assert(insurer_uuid_valid(s));
	ck_assert_str_eq(s, "ffffffff-ffff-4fff-bfff-ffffffffffff");
	memset(r, 0, sizeof(r));
	insurer_uuid_format(r, s);
	ck_assert_str_eq(s, "00000000-0000-4000-8000-000000000000");
	ck_assert(!insurer_uuid_valid("00000000-0000-1000-8000-000000000000"));
	ck_assert(!insurer_uuid_valid("00000000-0000-4000-c000-000000000000"));
	ck_assert(!insurer_uuid_valid("00000000-0000-4000-8000-00000000000"));
	ck_assert(!insurer_uuid_valid(NULL));
}
END_TEST

/* ---- "a 200 counts only if ..." ---- */

static const char *ids2[] = { ID1, ID2 };

static int
res(const char *json, struct insurer_result *out)
{
	return insurer_parse_results(json, strlen(json), BID, ids2, 2, out);
}

#define OK_HEAD "{\"batch_id\":\"" BID "\",\"received\":\"2026-12-05T10:00:00Z\","

START_TEST(test_results_good)
{
	struct insurer_result r[2];

	ck_assert_int_eq(res(OK_HEAD "\"results\":[{\"id\":\"" ID1 "\",\"status\":\"accepted\"},"
	                             "{\"id\":\"" ID2 "\",\"status\":\"rejected\",\"code\":\"signature\","
	                             "\"reason\":\"bad sig\"}],\"extra\":1}",
	                     r),
	                 0);
	ck_assert_int_eq(r[0].status, INSURER_ACCEPTED);
	ck_assert_int_eq(r[1].status, INSURER_REJECTED);
	ck_assert_str_eq(r[1].code, "signature");
	ck_assert_str_eq(r[1].reason, "bad sig");
	ck_assert_int_eq(res(OK_HEAD "\"results\":[{\"id\":\"" ID1 "\",\"status\":\"duplicate\"},"
	                             "{\"id\":null,\"status\":\"rejected\",\"code\":\"malformed\"}]}",
	                     r),
	                 0);
	ck_assert_int_eq(r[0].status, INSURER_DUPLICATE);
	ck_assert_str_eq(r[1].reason, "");
}
END_TEST

#define ACC1 "{\"id\":\"" ID1 "\",\"status\":\"accepted\"}"
#define ACC2 "{\"id\":\"" ID2 "\",\"status\":\"accepted\"}"

START_TEST(test_results_rules)
{
	struct insurer_result r[2];
	static const char *bad[] = {
		/* not JSON, not an object */
		"", "not json", "[1,2]", OK_HEAD "\"results\":[" ACC1 "," ACC2 "]",
		/* another batch_id, none */
		"{\"batch_id\":\"ffffffff-5b4a-4938-a716-151413121110\",\"received\":\"x\",\"results\":[" ACC1 "," ACC2 "]}",
		"{\"received\":\"x\",\"results\":[" ACC1 "," ACC2 "]}",
		/* no received */
		"{\"batch_id\":\"" BID "\",\"results\":[" ACC1 "," ACC2 "]}",
		/* fewer, more results, none */
		OK_HEAD "\"results\":[" ACC1 "]}", OK_HEAD "\"results\":[" ACC1 "," ACC2 "," ACC2 "]}",
		OK_HEAD "\"results\":{}}",
		/* out of the batch's order */
		OK_HEAD "\"results\":[" ACC2 "," ACC1 "]}",
		/* unknown status, missing status */
		OK_HEAD "\"results\":[" ACC1 ",{\"id\":\"" ID2 "\",\"status\":\"ok\"}]}",
		OK_HEAD "\"results\":[" ACC1 ",{\"id\":\"" ID2 "\"}]}",
		/* rejected without a code */
		OK_HEAD "\"results\":[" ACC1 ",{\"id\":\"" ID2 "\",\"status\":\"rejected\"}]}",
		/* null id but not malformed; null id and accepted */
		OK_HEAD "\"results\":[" ACC1 ",{\"id\":null,\"status\":\"rejected\",\"code\":\"signature\"}]}",
		OK_HEAD "\"results\":[" ACC1 ",{\"id\":null,\"status\":\"accepted\"}]}",
		/* missing id */
		OK_HEAD "\"results\":[" ACC1 ",{\"status\":\"accepted\"}]}",
		/* a result that is not an object */
		OK_HEAD "\"results\":[" ACC1 ",\"accepted\"]}",
		/* duplicate keys */
		OK_HEAD "\"results\":[" ACC1 "," ACC2 "],\"results\":[" ACC1 "," ACC2 "]}",
		/* control characters in a code */
		OK_HEAD "\"results\":[" ACC1 ",{\"id\":\"" ID2 "\",\"status\":\"rejected\",\"code\":\"a\\u0001\"}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r[0].status = INSURER_ACCEPTED;
		ck_assert_msg(res(bad[i], r) == -EBADMSG, "case %zu accepted", i);
		ck_assert_int_eq(r[0].status, 0); /* cleared on failure */
	}
	/* an over-long reason */
	char *big = malloc(2048);
	snprintf(big, 2048, OK_HEAD "\"results\":[" ACC1 ",{\"id\":\"" ID2
	                            "\",\"status\":\"rejected\",\"code\":\"x\",\"reason\":\"%0600d\"}]}", 0);
	ck_assert_int_eq(res(big, r), -EBADMSG);
	free(big);
	/* an answer over 1 MiB is refused before parsing */
	ck_assert_int_eq(insurer_parse_results("{}", INSURER_ANSWER_MAX + 1, BID, ids2, 2, r), -EBADMSG);
	ck_assert_int_eq(insurer_parse_results("{}", 2, BID, ids2, 0, r), -EINVAL);
}
END_TEST

START_TEST(test_error_body)
{
	char code[INSURER_CODE_MAX + 1], reason[INSURER_REASON_MAX + 1];
	const char *j = "{\"error\":\"limit\",\"reason\":\"501 sheets\"}";

	ck_assert_int_eq(insurer_parse_error(j, strlen(j), code, reason), 0);
	ck_assert_str_eq(code, "limit");
	ck_assert_str_eq(reason, "501 sheets");
	j = "{\"error\":\"cbor\"}";
	ck_assert_int_eq(insurer_parse_error(j, strlen(j), code, reason), 0);
	ck_assert_str_eq(reason, "");
	j = "<html>";
	ck_assert_int_eq(insurer_parse_error(j, strlen(j), code, reason), -EBADMSG);
	ck_assert_str_eq(code, "");
}
END_TEST

START_TEST(test_returns)
{
	struct insurer_returns r;
	const char *j = "{\"returns\":[{\"sheet_id\":\"" ID1 "\",\"kind\":\"paid\",\"amount\":2650,"
	                "\"date\":\"2026-12-09\"},{\"sheet_id\":\"" ID2 "\",\"kind\":\"refused\","
	                "\"code\":\"rights\",\"reason\":\"no rights\",\"date\":\"2026-12-10\"}],"
	                "\"next\":\"c2\"}";

	ck_assert_int_eq(insurer_parse_returns(j, strlen(j), 100, &r), 0);
	ck_assert_uint_eq(r.n, 2);
	ck_assert_int_eq(r.items[0].kind, INSURER_PAID);
	ck_assert_int_eq(r.items[0].amount, 2650);
	ck_assert_int_eq(r.items[1].kind, INSURER_REFUSED);
	ck_assert_str_eq(r.items[1].code, "rights");
	ck_assert_str_eq(r.next, "c2");
	insurer_returns_free(&r);
	ck_assert_int_eq(insurer_parse_returns(j, strlen(j), 1, &r), -E2BIG);
	j = "{\"returns\":[],\"next\":\"c2\"}";
	ck_assert_int_eq(insurer_parse_returns(j, strlen(j), 100, &r), 0);
	ck_assert_uint_eq(r.n, 0);
	static const char *bad[] = {
		"{\"returns\":[]}",
		"{\"next\":\"x\"}",
		"{\"returns\":[{\"sheet_id\":\"a\",\"kind\":\"paid\",\"amount\":-1,\"date\":\"2026-12-09\"}],\"next\":\"\"}",
		"{\"returns\":[{\"sheet_id\":\"a\",\"kind\":\"paid\",\"date\":\"2026-12-09\"}],\"next\":\"\"}",
		"{\"returns\":[{\"sheet_id\":\"a\",\"kind\":\"lost\",\"date\":\"2026-12-09\"}],\"next\":\"\"}",
		"{\"returns\":[{\"sheet_id\":\"a\",\"kind\":\"refused\",\"date\":\"2026-12-09\"}],\"next\":\"\"}",
		"{\"returns\":[{\"sheet_id\":\"a\",\"kind\":\"paid\",\"amount\":1,\"date\":\"9 Dec\"}],\"next\":\"\"}",
		"{\"returns\":[{\"kind\":\"paid\",\"amount\":1,\"date\":\"2026-12-09\"}],\"next\":\"\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(insurer_parse_returns(bad[i], strlen(bad[i]), 100, &r) == -EBADMSG,
		              "case %zu", i);
		ck_assert_ptr_null(r.items);
	}
}
END_TEST

START_TEST(test_rights)
{
	struct insurer_rights r;
	char *req;
	size_t len;
	const char *j = "{\"nir\":\"284027512345624\",\"regime\":\"01\",\"caisse\":\"751\","
	                "\"centre\":\"0042\",\"rights\":[{\"code\":\"AMO\",\"from\":\"2026-01-01\","
	                "\"to\":\"2026-12-31\"}],\"amc\":{\"id\":\"12345678\",\"tiers_payant\":true,"
	                "\"to\":\"2026-12-31\"},\"checked\":\"2026-12-05T10:00:00Z\"}";

	ck_assert_int_eq(insurer_rights_request("284027512345624", "1984-02-12", 1, "2026-12-05",
	                                        &req, &len),
	                 0);
	ck_assert_str_eq(req, "{\"birth_date\":\"1984-02-12\",\"birth_rank\":1,\"care_date\":"
	                      "\"2026-12-05\",\"nir\":\"284027512345624\"}");
	free(req);
	ck_assert_int_eq(insurer_rights_request("2840275", "1984-02-12", 1, "2026-12-05", &req, &len),
	                 -EINVAL);
	ck_assert_int_eq(insurer_parse_rights(j, strlen(j), "284027512345624", &r), 0);
	ck_assert_str_eq(r.caisse, "751");
	ck_assert_uint_eq(r.nrights, 1);
	ck_assert(r.has_amc && r.amc_tiers_payant);
	ck_assert_int_eq(insurer_parse_rights(j, strlen(j), "184027512345624", &r), -EBADMSG);
	const char *k = "{\"nir\":\"284027512345624\",\"regime\":\"1\",\"caisse\":\"751\","
	                "\"centre\":\"0042\",\"rights\":[],\"checked\":\"x\"}";
	ck_assert_int_eq(insurer_parse_rights(k, strlen(k), "284027512345624", &r), -EBADMSG);
}
END_TEST

START_TEST(test_opposition)
{
	struct insurer_opposition o;
	const char *j = "{\"added\":[\"8A3F00120045\",\"11\"],\"removed\":[\"22\"],\"next\":\"n\"}";

	ck_assert_int_eq(insurer_parse_opposition(j, strlen(j), &o), 0);
	ck_assert_uint_eq(o.nadded, 2);
	ck_assert_str_eq(o.added[0], "8A3F00120045");
	ck_assert_uint_eq(o.nremoved, 1);
	insurer_opposition_free(&o);
	j = "{\"added\":[1],\"removed\":[],\"next\":\"n\"}";
	ck_assert_int_eq(insurer_parse_opposition(j, strlen(j), &o), -EBADMSG);
	ck_assert_ptr_null(o.added);
}
END_TEST

START_TEST(test_classify)
{
	ck_assert_int_eq(insurer_classify(200), INSURER_ACT_RESULTS);
	ck_assert_int_eq(insurer_classify(400), INSURER_ACT_SPLIT);
	ck_assert_int_eq(insurer_classify(409), INSURER_ACT_SPLIT);
	ck_assert_int_eq(insurer_classify(413), INSURER_ACT_SPLIT);
	ck_assert_int_eq(insurer_classify(401), INSURER_ACT_REFUSED);
	ck_assert_int_eq(insurer_classify(403), INSURER_ACT_REFUSED);
	static const long t[] = { 0, 429, 500, 502, 503, 504, 201, 302, 404, 418 };
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		ck_assert_int_eq(insurer_classify(t[i]), INSURER_ACT_TRANSIENT);
}
END_TEST

/* ---- backoff ---- */

static uint64_t
fixed(void *arg)
{
	return *(uint64_t *)arg;
}

static uint64_t
xorshift(void *arg)
{
	uint64_t *s = arg;
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

START_TEST(test_backoff_bounds)
{
	uint64_t v = 0;

	/* the extremes of the random source hit the bounds exactly */
	ck_assert_uint_eq(insurer_backoff_ms(1, 2, 600, fixed, &v), 2000);
	ck_assert_uint_eq(insurer_backoff_ms(4, 2, 600, fixed, &v), 2000);
	v = 16000 - 2000; /* ceiling of attempt 4 is 2 * 2^3 = 16 s */
	ck_assert_uint_eq(insurer_backoff_ms(4, 2, 600, fixed, &v), 16000);
	v = UINT64_MAX;
	ck_assert_uint_le(insurer_backoff_ms(4, 2, 600, fixed, &v), 16000);
	/* the cap holds for any attempt, without overflow */
	v = 598000;
	ck_assert_uint_eq(insurer_backoff_ms(1000, 2, 600, fixed, &v), 600000);
	ck_assert_uint_eq(insurer_backoff_ms(UINT32_MAX, 2, 600, fixed, &v), 600000);
	/* base above cap, zeros */
	ck_assert_uint_eq(insurer_backoff_ms(3, 900, 600, fixed, &v), 600000);
	ck_assert_uint_eq(insurer_backoff_ms(0, 0, 0, fixed, &v), 1000);

	/* random: every value in [base, min(cap, base 2^(n-1))], and the
	 * spread reaches both ends of the range */
	uint64_t seed = getenv("INSURER_SEED") ? strtoull(getenv("INSURER_SEED"), NULL, 10)
	                                       : (uint64_t)time(NULL) | 1;
	printf("check_insurer: INSURER_SEED=%llu\n", (unsigned long long)seed);
	for (unsigned n = 1; n <= 12; n++) {
		uint64_t ceil = 2000ull << (n - 1), lo = UINT64_MAX, hi = 0;
		if (ceil > 600000)
			ceil = 600000;
		for (int i = 0; i < 2000; i++) {
			uint64_t w = insurer_backoff_ms(n, 2, 600, xorshift, &seed);
			ck_assert_uint_ge(w, 2000);
			ck_assert_uint_le(w, ceil);
			lo = w < lo ? w : lo;
			hi = w > hi ? w : hi;
		}
		if (n > 1) {
			ck_assert_uint_lt(lo, 2000 + (ceil - 2000) / 10);
			ck_assert_uint_gt(hi, ceil - (ceil - 2000) / 10);
		}
	}
}
END_TEST

START_TEST(test_retry_after)
{
	uint64_t ms;
	time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */

	ck_assert_int_eq(insurer_retry_after_ms("120", now, &ms), 0);
	ck_assert_uint_eq(ms, 120000);
	ck_assert_int_eq(insurer_retry_after_ms(" 5 ", now, &ms), 0);
	ck_assert_uint_eq(ms, 5000);
	ck_assert_int_eq(insurer_retry_after_ms("99999999999999999999999", now, &ms), 0);
	ck_assert_uint_eq(ms, 86400000);
	ck_assert_int_eq(insurer_retry_after_ms("Sun, 06 Nov 1994 08:50:07 GMT", now, &ms), 0);
	ck_assert_uint_eq(ms, 30000);
	ck_assert_int_eq(insurer_retry_after_ms("Sun, 06 Nov 1994 08:49:00 GMT", now, &ms), 0);
	ck_assert_uint_eq(ms, 0);
	ck_assert_int_eq(insurer_retry_after_ms("-1", now, &ms), -EINVAL);
	ck_assert_int_eq(insurer_retry_after_ms("12s", now, &ms), -EINVAL);
	ck_assert_int_eq(insurer_retry_after_ms("soon", now, &ms), -EINVAL);
	ck_assert_int_eq(insurer_retry_after_ms("Sun, 06 Nov 1994 08:49:37 CET", now, &ms), -EINVAL);
	/* Retry-After is the least wait */
	ck_assert_uint_eq(insurer_next_wait_ms(2000, 30000), 30000);
	ck_assert_uint_eq(insurer_next_wait_ms(40000, 30000), 40000);
	ck_assert_uint_eq(insurer_next_wait_ms(2000, 0), 2000);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("insurer");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_batch_keys);
	tcase_add_test(tc, test_batch_limits);
	tcase_add_test(tc, test_uuid);
	tcase_add_test(tc, test_results_good);
	tcase_add_test(tc, test_results_rules);
	tcase_add_test(tc, test_error_body);
	tcase_add_test(tc, test_returns);
	tcase_add_test(tc, test_rights);
	tcase_add_test(tc, test_opposition);
	tcase_add_test(tc, test_classify);
	tcase_add_test(tc, test_backoff_bounds);
	tcase_add_test(tc, test_retry_after);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
