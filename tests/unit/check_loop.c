/* Unit tests for daemon/core/loop.c: timer order and cancellation, fds added and
 * removed from callbacks, posts from other threads. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/loop.h"

static char order[64];
static size_t norder;

static void
mark_cb(struct loop *l, void *arg)
{
	order[norder++] = (char)(intptr_t)arg;
}

START_TEST(timers_fire_in_deadline_order)
{
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	norder = 0;
	memset(order, 0, sizeof(order));
	uint64_t t0 = loop_now_ms();
	loop_timer_add(l, 30, mark_cb, (void *)(intptr_t)'c');
	loop_timer_add(l, 10, mark_cb, (void *)(intptr_t)'a');
	loop_timer_add(l, 20, mark_cb, (void *)(intptr_t)'b');
	uint64_t id = loop_timer_add(l, 15, mark_cb, (void *)(intptr_t)'x');
	loop_timer_add(l, 10, mark_cb, (void *)(intptr_t)'A'); /* same deadline: creation order */
	ck_assert_uint_eq(loop_timer_count(l), 5);
	loop_timer_cancel(l, id);
	loop_timer_cancel(l, 99999); /* unknown: ignored */
	ck_assert_uint_eq(loop_timer_count(l), 4);
	while (norder < 4 && loop_now_ms() - t0 < 2000)
		loop_run_once(l, 100);
	ck_assert_str_eq(order, "aAbc");
	ck_assert_uint_ge(loop_now_ms() - t0, 29);
	ck_assert_uint_eq(loop_timer_count(l), 0);
	loop_free(l);
}
END_TEST

static int rearm_count;
static void
rearm_cb(struct loop *l, void *arg)
{
	if (++rearm_count < 1000)
		loop_timer_add(l, 0, rearm_cb, NULL);
}

START_TEST(zero_delay_rearm_does_not_starve)
{
	/* a timer that re-arms itself with delay 0 runs once per round, so one
	 * round returns instead of spinning */
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	rearm_count = 0;
	loop_timer_add(l, 0, rearm_cb, NULL);
	loop_run_once(l, 0);
	ck_assert_int_eq(rearm_count, 1);
	loop_run_once(l, 0);
	ck_assert_int_eq(rearm_count, 2);
	loop_free(l);
}
END_TEST

struct pipe_ctx {
	int fds[2];
	int reads;
	struct loop *l;
};

static void
read_cb(struct loop *l, int fd, short rev, void *arg)
{
	struct pipe_ctx *p = arg;
	char b[16];
	ck_assert(read(fd, b, sizeof(b)) > 0);
	p->reads++;
	loop_del_fd(l, fd); /* removing itself from its own callback is allowed */
}

START_TEST(fd_callbacks)
{
	struct loop *l;
	struct pipe_ctx p = { .reads = 0 };
	ck_assert_int_eq(loop_new(&l), 0);
	ck_assert_int_eq(pipe(p.fds), 0);
	ck_assert_int_eq(loop_add_fd(l, p.fds[0], POLLIN, read_cb, &p), 0);
	ck_assert_int_eq(loop_add_fd(l, p.fds[0], POLLIN, read_cb, &p), -EEXIST);
	ck_assert_int_eq(loop_mod_fd(l, 12345, POLLIN), -ENOENT);
	loop_run_once(l, 0);
	ck_assert_int_eq(p.reads, 0);
	ck_assert_int_eq(write(p.fds[1], "x", 1), 1);
	loop_run_once(l, 100);
	ck_assert_int_eq(p.reads, 1);
	ck_assert_int_eq(write(p.fds[1], "y", 1), 1);
	loop_run_once(l, 20); /* unregistered now: not called */
	ck_assert_int_eq(p.reads, 1);
	close(p.fds[0]);
	close(p.fds[1]);
	loop_free(l);
}
END_TEST

static int posted;
static void
post_cb(void *arg)
{
	posted += (int)(intptr_t)arg;
}

static void *
poster(void *arg)
{
	struct loop *l = arg;
	for (int i = 0; i < 1000; i++)
		loop_post(l, post_cb, (void *)(intptr_t)1);
	return NULL;
}

START_TEST(posts_from_threads)
{
	struct loop *l;
	pthread_t t[4];
	ck_assert_int_eq(loop_new(&l), 0);
	posted = 0;
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, poster, l);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	uint64_t t0 = loop_now_ms();
	while (posted < 4000 && loop_now_ms() - t0 < 2000)
		loop_run_once(l, 100);
	ck_assert_int_eq(posted, 4000);
	loop_free(l);
}
END_TEST

static void
stop_cb(struct loop *l, void *arg)
{
	loop_stop(l);
}

/* A message posted with loop_post_owned that never ran (the loop freed
 * first, as at shutdown) is freed by loop_free; one that ran is not freed
 * twice. (A driver's last event at shutdown leaked: found by make memcheck.) */
static int owned_freed, owned_ran;
static void owned_free(void *arg) { owned_freed++; free(arg); }
static void owned_cb(void *arg) { owned_ran++; free(arg); }

START_TEST(owned_posts_freed_at_loop_free)
{
	struct loop *l = NULL;
	ck_assert_int_eq(loop_new(&l), 0);
	owned_freed = owned_ran = 0;
	ck_assert_int_eq(loop_post_owned(l, owned_cb, owned_free, malloc(16)), 0);
	ck_assert_int_eq(loop_run_once(l, 100), 0);
	ck_assert_int_eq(owned_ran, 1);
	ck_assert_int_eq(owned_freed, 0);
	ck_assert_int_eq(loop_post_owned(l, owned_cb, owned_free, malloc(16)), 0);
	ck_assert_int_eq(loop_post_owned(l, owned_cb, owned_free, malloc(16)), 0);
	ck_assert_int_eq(loop_post(l, owned_cb, NULL), 0); /* not owned: nothing to free */
	loop_free(l);
	ck_assert_int_eq(owned_ran, 1);
	ck_assert_int_eq(owned_freed, 2);
}
END_TEST

START_TEST(run_until_stop)
{
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	loop_timer_add(l, 5, stop_cb, NULL);
	ck_assert_int_eq(loop_run(l), 0);
	ck_assert_uint_eq(loop_timer_count(l), 0);
	loop_free(l);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("loop");
	TCase *t = tcase_create("core");
	tcase_add_test(t, timers_fire_in_deadline_order);
	tcase_add_test(t, zero_delay_rearm_does_not_starve);
	tcase_add_test(t, fd_callbacks);
	tcase_add_test(t, posts_from_threads);
	tcase_add_test(t, run_until_stop);
	tcase_add_test(t, owned_posts_freed_at_loop_free);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
