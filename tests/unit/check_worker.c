/* Unit tests for daemon/core/worker: every done() runs exactly once on the
 * loop's thread, in order on a one-thread worker, all of them by the end of
 * worker_free (the drain), none after; jobs run in parallel on a pool;
 * worker_run_sync waits for its job; a submit after stop is refused. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/core/worker.h"

#define N 200

static struct loop *L;
static int order[N];
static int norder;
static atomic_int ran;
static int done_count[N];
static pthread_t loop_thread;
static int wrong_thread;

struct item {
	int i;
	unsigned sleep_us;
};

static void
run_item(void *arg)
{
	struct item *it = arg;
	if (it->sleep_us)
		usleep(it->sleep_us);
	atomic_fetch_add(&ran, 1);
}

static void
done_item(void *arg)
{
	struct item *it = arg;
	if (!pthread_equal(pthread_self(), loop_thread))
		wrong_thread++;
	done_count[it->i]++;
	order[norder++] = it->i;
}

static void
setup(void)
{
	ck_assert_int_eq(loop_new(&L), 0);
	loop_thread = pthread_self();
	norder = 0;
	wrong_thread = 0;
	atomic_store(&ran, 0);
	memset(done_count, 0, sizeof(done_count));
}

static void
teardown(void)
{
	loop_free(L);
}

START_TEST(serial_order_and_once)
{
	struct worker *w;
	static struct item items[N];
	ck_assert_int_eq(worker_new(L, "t-serial", 1, 0, &w), 0);
	for (int i = 0; i < N; i++) {
		items[i] = (struct item){ i, (unsigned)(i % 7 == 0 ? 200 : 0) };
		ck_assert_int_eq(worker_submit(w, run_item, done_item, &items[i]), 0);
	}
	/* deliver some through the loop, the rest through the drain */
	for (int k = 0; k < 50 && norder < N / 2; k++)
		loop_run_once(L, 20);
	worker_free(w);
	ck_assert_int_eq(atomic_load(&ran), N);
	ck_assert_int_eq(norder, N);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(done_count[i], 1);
		ck_assert_int_eq(order[i], i);
	}
	ck_assert_int_eq(wrong_thread, 0);
}
END_TEST

static atomic_int concurrent, peak;

static void
run_wide(void *arg)
{
	(void)arg;
	int c = atomic_fetch_add(&concurrent, 1) + 1;
	int p = atomic_load(&peak);
	while (c > p && !atomic_compare_exchange_weak(&peak, &p, c))
		;
	usleep(20000);
	atomic_fetch_sub(&concurrent, 1);
}

START_TEST(pool_runs_in_parallel)
{
	struct worker *w;
	static struct item items[8];
	atomic_store(&peak, 0);
	ck_assert_int_eq(worker_new(L, "t-pool", 4, 128, &w), 0);
	for (int i = 0; i < 8; i++) {
		items[i] = (struct item){ i, 0 };
		ck_assert_int_eq(worker_submit(w, run_wide, done_item, &items[i]), 0);
	}
	worker_free(w);
	ck_assert_int_eq(norder, 8);
	ck_assert_int_ge(atomic_load(&peak), 2);
	ck_assert_int_le(atomic_load(&peak), 4);
}
END_TEST

static struct worker *resubmit_w;
static int resubmit_rc = 1;

static void
done_resubmit(void *arg)
{
	done_item(arg);
	static struct item late = { N - 1, 0 };
	resubmit_rc = worker_submit(resubmit_w, run_item, done_item, &late);
}

START_TEST(no_callback_after_free)
{
	static struct item it = { 0, 1000 };
	ck_assert_int_eq(worker_new(L, "t-stop", 1, 0, &resubmit_w), 0);
	ck_assert_int_eq(worker_submit(resubmit_w, run_item, done_resubmit, &it), 0);
	worker_free(resubmit_w);
	/* the done ran in the drain; its submit was refused, so nothing is left */
	ck_assert_int_eq(done_count[0], 1);
	ck_assert_int_eq(resubmit_rc, -ESHUTDOWN);
	ck_assert_int_eq(done_count[N - 1], 0);
	for (int k = 0; k < 3; k++)
		loop_run_once(L, 5);
	ck_assert_int_eq(done_count[N - 1], 0);
}
END_TEST

static void
run_set(void *arg)
{
	usleep(5000);
	*(int *)arg = 42;
}

static void *
sync_thread(void *arg)
{
	struct worker *w = arg;
	static int v;
	v = 0;
	int r = worker_run_sync(w, run_set, &v);
	return (void *)(intptr_t)(r == 0 ? v : -1);
}

START_TEST(run_sync_waits)
{
	struct worker *w;
	ck_assert_int_eq(worker_new(L, "t-sync", 1, 0, &w), 0);
	pthread_t t;
	void *res;
	pthread_create(&t, NULL, sync_thread, w);
	pthread_join(t, &res);
	ck_assert_int_eq((int)(intptr_t)res, 42);
	ck_assert_uint_eq(worker_pending(w), 0);
	worker_free(w);
}
END_TEST

static void *
off_loop(void *arg)
{
	return (void *)(intptr_t)loop_on_thread(arg);
}

START_TEST(loop_thread_known)
{
	ck_assert(loop_on_thread(L));
	pthread_t t;
	void *res;
	pthread_create(&t, NULL, off_loop, L);
	pthread_join(t, &res);
	ck_assert_int_eq((int)(intptr_t)res, 0);
}
END_TEST

static Suite *
worker_suite(void)
{
	Suite *s = suite_create("worker");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, serial_order_and_once);
	tcase_add_test(tc, pool_runs_in_parallel);
	tcase_add_test(tc, no_callback_after_free);
	tcase_add_test(tc, run_sync_waits);
	tcase_add_test(tc, loop_thread_known);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(worker_suite());
	srunner_run_all(sr, CK_NORMAL);
	int nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
