/* Unit tests of the uploader's state machine (daemon/upload/uploader.c):
 * every answer of INSURER.md leads to its decision (commit, the same bytes
 * again, split, reject the lone sheet, stop until the cap), the backoff
 * grows and stays within its bounds, Retry-After is the least wait, and the
 * triggers (queued + gathering, timer, request, network) do what the
 * states allow. Time is passed in; the random source is fixed. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/upload/uploader.h"

#define BID "0f8e7d6c-5b4a-4938-a716-151413121110"
static const char *ids[] = { "11111111-1111-4111-8111-111111111111",
	                     "22222222-2222-4222-a222-222222222222" };

static uint64_t
rnd_max(void *arg)
{
	(void)arg;
	return UINT64_MAX - 1; /* any fixed value: the tests check the bounds */
}

static struct uploader
mk(void)
{
	struct uploader u;
	struct uploader_cfg c = { .backoff_base_s = 2, .backoff_cap_s = 600, .interval_ms = 300000,
		                  .gather_ms = 2000, .rnd = rnd_max };
	uploader_init(&u, &c, true);
	return u;
}

static struct uploader_decision
answer(struct uploader *u, uint64_t now, size_t n, long status, const char *body,
       const char *retry_after)
{
	struct uploader_answer a = { .net = UPLOADER_NET_OK, .status = status, .body = body,
		                     .len = body ? strlen(body) : 0, .retry_after = retry_after,
		                     .now_real = 784111777 };
	struct insurer_result r[2];
	struct uploader_decision d;
	uploader_answer(u, now, BID, ids, n, &a, r, &d);
	return d;
}

START_TEST(test_triggers)
{
	struct uploader u = mk();
	struct uploader_cfg c = { 0 };
	struct uploader off;
	uploader_init(&off, &c, false);
	ck_assert_int_eq(off.state, UPLOADER_DISABLED);
	ck_assert_uint_eq(uploader_trigger(&off, 0, UPLOADER_T_REQUEST), UPLOADER_NEVER);

	/* idle: a queued sheet waits for the gathering delay, and a second
	 * one does not push the plan back */
	ck_assert_uint_eq(uploader_trigger(&u, 1000, UPLOADER_T_QUEUED), 2000);
	ck_assert_uint_eq(u.next_ms, 3000);
	ck_assert_uint_eq(uploader_trigger(&u, 1500, UPLOADER_T_QUEUED), UPLOADER_NEVER);
	ck_assert_uint_eq(u.next_ms, 3000);
	ck_assert_uint_eq(uploader_trigger(&u, 1600, UPLOADER_T_REQUEST), 0);
	/* sending: nothing interrupts a round */
	uploader_round_begin(&u, 1600);
	ck_assert_int_eq(u.state, UPLOADER_SENDING);
	ck_assert_uint_eq(uploader_trigger(&u, 1700, UPLOADER_T_QUEUED), UPLOADER_NEVER);
	ck_assert_uint_eq(uploader_trigger(&u, 1700, UPLOADER_T_NETWORK), UPLOADER_NEVER);
	uploader_round_end(&u, 5000, 1700000000000LL, true);
	ck_assert_int_eq(u.state, UPLOADER_IDLE);
	ck_assert_int_eq(u.last_success, 1700000000000LL);
	ck_assert_uint_eq(u.next_ms, 5000 + 300000);
}
END_TEST

START_TEST(test_offline_then_network)
{
	struct uploader u = mk();
	struct uploader_answer a = { .net = UPLOADER_NET_OFFLINE, .why = "connection refused" };
	struct uploader_decision d;
	struct insurer_result r[2];
	uploader_round_begin(&u, 0);
	uploader_answer(&u, 0, BID, ids, 2, &a, r, &d);
	ck_assert_int_eq(d.what, UPLOADER_DO_RETRY);
	ck_assert_int_eq(u.state, UPLOADER_OFFLINE);
	ck_assert_str_eq(u.why, "connection refused");
	ck_assert_uint_eq(d.wait_ms, 2000); /* first failure: the base */
	/* offline: queued sheets do not wake it, the network does at once */
	ck_assert_uint_eq(uploader_trigger(&u, 100, UPLOADER_T_QUEUED), UPLOADER_NEVER);
	ck_assert_uint_eq(uploader_trigger(&u, 100, UPLOADER_T_NETWORK), 0);
	ck_assert_uint_eq(u.next_ms, 100);
}
END_TEST

START_TEST(test_transient_backoff_grows_to_cap)
{
	struct uploader u = mk();
	uint64_t prev = 0;
	uploader_round_begin(&u, 0);
	for (unsigned i = 1; i <= 20; i++) {
		struct uploader_decision d = answer(&u, 0, 2, 503, "busy", NULL);
		ck_assert_int_eq(d.what, UPLOADER_DO_RETRY);
		uint64_t ceil = 2000ull << (i - 1 > 20 ? 20 : i - 1);
		if (ceil > 600000)
			ceil = 600000;
		ck_assert_uint_ge(d.wait_ms, 2000);
		ck_assert_uint_le(d.wait_ms, ceil);
		prev = d.wait_ms;
	}
	ck_assert_uint_le(prev, 600000);
	ck_assert_int_eq(u.state, UPLOADER_SENDING);
	/* without jitter the wait is the ceiling: 2, 4, 8 ... 512, 600, 600 s */
	struct uploader w = mk();
	w.c.rnd = NULL;
	uploader_round_begin(&w, 0);
	for (unsigned i = 1; i <= 12; i++) {
		uint64_t ceil = 2000ull << (i - 1);
		ck_assert_uint_eq(answer(&w, 0, 2, 500, NULL, NULL).wait_ms, ceil > 600000 ? 600000 : ceil);
	}
	ck_assert_ptr_nonnull(strstr(u.why, "503"));
	/* every transient kind retries the same bytes */
	static const long t[] = { 429, 500, 502, 504, 201, 302, 404 };
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		ck_assert_int_eq(answer(&u, 0, 2, t[i], NULL, NULL).what, UPLOADER_DO_RETRY);
	struct uploader_answer a = { .net = UPLOADER_NET_TRANSIENT, .why = "timeout" };
	struct uploader_decision d;
	struct insurer_result r[2];
	uploader_answer(&u, 0, BID, ids, 2, &a, r, &d);
	ck_assert_int_eq(d.what, UPLOADER_DO_RETRY);
}
END_TEST

START_TEST(test_retry_after_least_wait)
{
	struct uploader u = mk();
	uploader_round_begin(&u, 0);
	struct uploader_decision d = answer(&u, 0, 2, 503, NULL, "30");
	ck_assert_uint_eq(d.wait_ms, 30000);
	ck_assert_uint_eq(u.next_ms, 30000);
	/* an HTTP date, 60 s after now_real */
	d = answer(&u, 0, 2, 429, NULL, "Sun, 06 Nov 1994 08:50:37 GMT");
	ck_assert_uint_eq(d.wait_ms, 60000);
	/* below the backoff: the backoff wins */
	struct uploader v = mk();
	v.failures = 10;
	d = answer(&v, 0, 2, 503, NULL, "1");
	ck_assert_uint_gt(d.wait_ms, 1000);
	/* garbage is ignored */
	d = answer(&v, 0, 2, 503, NULL, "soon");
	ck_assert_int_eq(d.what, UPLOADER_DO_RETRY);
}
END_TEST

START_TEST(test_200_rules)
{
	struct uploader u = mk();
	char ok[512];
	snprintf(ok, sizeof(ok),
	         "{\"batch_id\":\"%s\",\"received\":\"x\",\"results\":[{\"id\":\"%s\",\"status\":"
	         "\"accepted\"},{\"id\":\"%s\",\"status\":\"rejected\",\"code\":\"invalid\"}]}",
	         BID, ids[0], ids[1]);
	uploader_round_begin(&u, 0);
	u.failures = 3;
	struct uploader_answer a = { .net = UPLOADER_NET_OK, .status = 200, .body = ok,
		                     .len = strlen(ok) };
	struct insurer_result r[2];
	struct uploader_decision d;
	uploader_answer(&u, 0, BID, ids, 2, &a, r, &d);
	ck_assert_int_eq(d.what, UPLOADER_DO_COMMIT);
	ck_assert_int_eq(r[1].status, INSURER_REJECTED);
	ck_assert_uint_eq(u.failures, 0);
	/* a 200 that is not the JSON: transient, the same bytes */
	ck_assert_int_eq(answer(&u, 0, 2, 200, "<html>", NULL).what, UPLOADER_DO_RETRY);
	ck_assert_int_eq(answer(&u, 0, 1, 200, ok, NULL).what, UPLOADER_DO_RETRY); /* count */
}
END_TEST

START_TEST(test_split_and_reject)
{
	struct uploader u = mk();
	uploader_round_begin(&u, 0);
	ck_assert_int_eq(answer(&u, 0, 2, 400, "{\"error\":\"sheets\"}", NULL).what,
	                 UPLOADER_DO_SPLIT);
	ck_assert_int_eq(answer(&u, 0, 2, 409, NULL, NULL).what, UPLOADER_DO_SPLIT);
	ck_assert_int_eq(answer(&u, 0, 2, 413, NULL, NULL).what, UPLOADER_DO_SPLIT);
	struct uploader_decision d = answer(&u, 0, 1, 400, "{\"error\":\"sheets\",\"reason\":\"r\"}",
	                                    NULL);
	ck_assert_int_eq(d.what, UPLOADER_DO_REJECT);
	ck_assert_str_eq(d.code, "sheets");
	ck_assert_ptr_nonnull(strstr(d.reason, "400"));
	d = answer(&u, 0, 1, 413, NULL, NULL);
	ck_assert_int_eq(d.what, UPLOADER_DO_REJECT);
	ck_assert_str_eq(d.code, "too_large");
	d = answer(&u, 0, 1, 400, "not json", NULL);
	ck_assert_str_eq(d.code, "http-400");
	/* a fault of the batch as a whole is not pinned on a sheet */
	d = answer(&u, 0, 2, 400, "{\"error\":\"created\",\"reason\":\"clock\"}", NULL);
	ck_assert_int_eq(d.what, UPLOADER_DO_STOP);
	ck_assert_int_eq(u.state, UPLOADER_ERROR);
	ck_assert_ptr_nonnull(strstr(u.why, "created"));
}
END_TEST

START_TEST(test_refused_stops_at_cap)
{
	static const long st[] = { 401, 403 };
	for (size_t i = 0; i < 2; i++) {
		struct uploader u = mk();
		uploader_round_begin(&u, 1000);
		struct uploader_decision d = answer(&u, 1000, 2, st[i], NULL, NULL);
		ck_assert_int_eq(d.what, UPLOADER_DO_STOP);
		ck_assert_uint_eq(d.wait_ms, 600000);
		ck_assert_uint_eq(u.next_ms, 601000);
		ck_assert_int_eq(u.state, UPLOADER_ERROR);
		ck_assert_ptr_nonnull(strstr(u.why, "client certificate"));
		/* error: neither queued sheets nor the network wake it; a request does */
		ck_assert_uint_eq(uploader_trigger(&u, 2000, UPLOADER_T_QUEUED), UPLOADER_NEVER);
		ck_assert_uint_eq(uploader_trigger(&u, 2000, UPLOADER_T_NETWORK), UPLOADER_NEVER);
		ck_assert_uint_eq(uploader_trigger(&u, 2000, UPLOADER_T_REQUEST), 0);
	}
	static const enum uploader_net nets[] = { UPLOADER_NET_TLS_SERVER, UPLOADER_NET_TLS_CLIENT,
		                                  UPLOADER_NET_LOCAL };
	for (size_t i = 0; i < 3; i++) {
		struct uploader u = mk();
		struct uploader_answer a = { .net = nets[i],
			                     .why = "the insurer's certificate has expired" };
		struct uploader_decision d;
		struct insurer_result r[2];
		uploader_round_begin(&u, 0);
		uploader_answer(&u, 0, BID, ids, 2, &a, r, &d);
		ck_assert_int_eq(d.what, UPLOADER_DO_STOP);
		ck_assert_str_eq(u.why, "the insurer's certificate has expired");
	}
	struct uploader u = mk();
	uploader_local_error(&u, 0, "no signing certificate");
	ck_assert_int_eq(u.state, UPLOADER_ERROR);
	ck_assert_uint_eq(u.next_ms, 600000);
	/* the next round keeps the reason until an answer says otherwise */
	uploader_round_begin(&u, 600000);
	ck_assert_int_eq(u.state, UPLOADER_SENDING);
	ck_assert_str_eq(u.why, "no signing certificate");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("upload");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_triggers);
	tcase_add_test(tc, test_offline_then_network);
	tcase_add_test(tc, test_transient_backoff_grows_to_cap);
	tcase_add_test(tc, test_retry_after_least_wait);
	tcase_add_test(tc, test_200_rules);
	tcase_add_test(tc, test_split_and_reject);
	tcase_add_test(tc, test_refused_stops_at_cap);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
