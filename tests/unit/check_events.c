/* Unit tests of the event bus (daemon/core/events.c) through a real varlink
 * server on a temporary socket: WatchEvents needs "more", every watcher
 * gets every event in order, control-only fields reach control watchers
 * only, a watcher that does not read is dropped while a reading one gets
 * everything, and shutdown ends every watch with ShuttingDown. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/core/daemon.h"
#include "daemon/core/events.h"
#include "lib/log.h"

static struct daemon D;
static char dir[64];
static char sock[100];
static int next_is_control;

static void
access_cb(struct vl_peer *peer, void *arg)
{
	(void)arg;
	peer->control = next_is_control != 0;
}

static void
setup(void)
{
	char err[200];
	log_set_level(LOG_LVL_ERR);
	snprintf(dir, sizeof(dir), "/tmp/check_events.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sock, sizeof(sock), "%s/s", dir);
	memset(&D, 0, sizeof(D));
	ck_assert_int_eq(loop_new(&D.loop), 0);
	struct vl_server_opts o = {
		.path = sock, .mode = 0600, .gid = (gid_t)-1, .max_message = 65536,
		.max_output = 65536, .max_clients = 16, .idle_timeout_ms = 5000,
		.vendor = "t", .product = "t", .version = "0", .url = "t",
		.error_prefix = TERMINAL_IFACE, .access = access_cb,
	};
	ck_assert_int_eq(vl_server_new(D.loop, &o, -1, &D.api, err, sizeof(err)), 0);
	vl_server_add_interface(D.api, TERMINAL_IFACE, "interface io.vitaled.Terminal\n");
	ck_assert_int_eq(events_init(&D), 0);
}

static void
teardown(void)
{
	events_fini(&D);
	vl_server_free(D.api);
	loop_free(D.loop);
	rmdir(dir);
}

static void
pump(int rounds)
{
	for (int i = 0; i < rounds; i++)
		loop_run_once(D.loop, 0);
}

static int
client(bool control)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	next_is_control = control;
	pump(3); /* accept with this access */
	return fd;
}

static void
send_msg(int fd, const char *json)
{
	ssize_t n = (ssize_t)strlen(json) + 1;
	ck_assert_int_eq(write(fd, json, (size_t)n), n);
}

/* Read one NUL-terminated message, pumping the loop meanwhile; NULL on EOF. */
struct rbuf {
	char b[1 << 20];
	size_t n;
};

static json_t *
recv_msg(int fd, struct rbuf *rb)
{
	for (int spins = 0; spins < 2000; spins++) {
		char *nul = memchr(rb->b, '\0', rb->n);
		if (nul) {
			size_t len = (size_t)(nul - rb->b);
			json_t *j = json_loadb(rb->b, len, 0, NULL);
			memmove(rb->b, nul + 1, rb->n - len - 1);
			rb->n -= len + 1;
			ck_assert_ptr_nonnull(j);
			return j;
		}
		pump(1);
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 5) > 0) {
			ssize_t r = read(fd, rb->b + rb->n, sizeof(rb->b) - rb->n);
			if (r <= 0)
				return NULL;
			rb->n += (size_t)r;
		}
	}
	ck_abort_msg("no message within the time");
	return NULL;
}

static const char *
ev_type(json_t *m)
{
	return json_string_value(json_object_get(json_object_get(json_object_get(m, "parameters"),
	                                                         "event"),
	                                         "type"));
}

static json_t *
ev_of(json_t *m)
{
	return json_object_get(json_object_get(m, "parameters"), "event");
}

static int
watch(bool control, struct rbuf *rb)
{
	int fd = client(control);
	send_msg(fd, "{\"method\":\"io.vitaled.Terminal.WatchEvents\",\"more\":true}");
	json_t *m = recv_msg(fd, rb);
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(ev_type(m), "Watching");
	ck_assert(json_is_true(json_object_get(m, "continues")));
	json_decref(m);
	return fd;
}

START_TEST(t_needs_more)
{
	struct rbuf *rb = calloc(1, sizeof(*rb));
	int fd = client(false);
	send_msg(fd, "{\"method\":\"io.vitaled.Terminal.WatchEvents\"}");
	json_t *m = recv_msg(fd, rb);
	ck_assert_str_eq(json_string_value(json_object_get(m, "error")),
	                 "org.varlink.service.ExpectedMore");
	ck_assert_uint_eq(events_watchers(), 0);
	json_decref(m);
	close(fd);
	free(rb);
}
END_TEST

START_TEST(t_order_and_fields)
{
	struct rbuf *ra = calloc(1, sizeof(*ra)), *rb = calloc(1, sizeof(*rb));
	int a = watch(true, ra), b = watch(false, rb);
	ck_assert_uint_eq(events_watchers(), 2);
	events_publish("ReaderAdded", json_pack("{s:s}", "reader", "R0"));
	events_publish_ex("CardRead", json_pack("{s:s,s:{s:b}}", "reader", "R0", "summary", "named", 0),
	                  json_pack("{s:{s:b}}", "summary", "named", 1));
	/* a publisher's "seq" field must not replace the bus's own */
	events_publish("CardRemoved", json_pack("{s:i,s:s}", "seq", 99, "type", "Forged"));
	uint64_t last = events_last_seq();
	ck_assert_uint_eq(last, 3);
	static const char *const want[] = { "ReaderAdded", "CardRead", "CardRemoved" };
	for (int who = 0; who < 2; who++) {
		int fd = who ? b : a;
		struct rbuf *r = who ? rb : ra;
		for (int i = 0; i < 3; i++) {
			json_t *m = recv_msg(fd, r);
			json_t *e = ev_of(m);
			ck_assert_str_eq(ev_type(m), want[i]);
			ck_assert_int_eq(json_integer_value(json_object_get(e, "seq")), i + 1);
			ck_assert_ptr_nonnull(json_string_value(json_object_get(e, "time")));
			if (i == 1) {
				ck_assert_str_eq(json_string_value(json_object_get(e, "reader")), "R0");
				bool named = json_is_true(
					json_object_get(json_object_get(e, "summary"), "named"));
				/* control watcher a sees the control fields, b does not */
				ck_assert_int_eq(named, who == 0);
			}
			json_decref(m);
		}
	}
	close(a);
	close(b);
	pump(5);
	ck_assert_uint_eq(events_watchers(), 0);
	free(ra);
	free(rb);
}
END_TEST

START_TEST(t_slow_watcher_dropped)
{
	struct rbuf *rg = calloc(1, sizeof(*rg)), *rl = calloc(1, sizeof(*rl));
	int good = watch(false, rg);
	int lazy = watch(false, rl);
	/* shrink the lazy one's socket buffer so it fills quickly */
	int sz = 4096;
	setsockopt(lazy, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	char pad[1001];
	memset(pad, 'x', 1000);
	pad[1000] = '\0';
	const int n = 3000; /* ~3 MB: far past max_output plus socket buffers */
	int got = 0;
	for (int i = 0; i < n; i++) {
		events_publish("Test", json_pack("{s:i,s:s}", "i", i, "pad", pad));
		pump(1);
		/* the good watcher reads as it goes */
		for (;;) {
			struct pollfd p = { good, POLLIN, 0 };
			if (poll(&p, 1, 0) <= 0)
				break;
			ssize_t r = read(good, rg->b + rg->n, sizeof(rg->b) - rg->n);
			if (r <= 0)
				break;
			rg->n += (size_t)r;
			char *nul;
			while ((nul = memchr(rg->b, '\0', rg->n)) != NULL) {
				size_t len = (size_t)(nul - rg->b);
				json_t *m = json_loadb(rg->b, len, 0, NULL);
				ck_assert_int_eq(json_integer_value(json_object_get(ev_of(m), "i")), got);
				got++;
				json_decref(m);
				memmove(rg->b, nul + 1, rg->n - len - 1);
				rg->n -= len + 1;
			}
		}
	}
	while (got < n) {
		json_t *m = recv_msg(good, rg);
		ck_assert_ptr_nonnull(m);
		ck_assert_int_eq(json_integer_value(json_object_get(ev_of(m), "i")), got);
		got++;
		json_decref(m);
	}
	ck_assert_int_eq(got, n);
	ck_assert_uint_eq(events_watchers(), 1); /* the lazy one was dropped */
	close(good);
	close(lazy);
	free(rg);
	free(rl);
}
END_TEST

START_TEST(t_shutdown_ends_watches)
{
	struct rbuf *r = calloc(1, sizeof(*r));
	int fd = watch(false, r);
	events_fini(&D);
	pump(2);
	json_t *m = recv_msg(fd, r);
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(json_string_value(json_object_get(m, "error")),
	                 TERMINAL_IFACE ".ShuttingDown");
	json_decref(m);
	ck_assert_uint_eq(events_watchers(), 0);
	/* publishing after fini is a no-op */
	events_publish("Late", NULL);
	close(fd);
	free(r);
}
END_TEST

START_TEST(t_time_format)
{
	char t[40];
	events_time_now(t, sizeof(t));
	ck_assert_uint_eq(strlen(t), 24);
	ck_assert(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("bus");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, t_needs_more);
	tcase_add_test(tc, t_order_and_fields);
	tcase_add_test(tc, t_slow_watcher_dropped);
	tcase_add_test(tc, t_shutdown_ends_watches);
	tcase_add_test(tc, t_time_format);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
