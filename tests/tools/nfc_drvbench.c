/*
 * nfc_drvbench: time the NFC driver (drivers/reader_nfc.c) through
 * reader_nfc_ops, doing what tests/world/nfc_probe.c does with bare libnfc,
 * for tests/bench/bench_nfc.py: open until the device is ready, until the
 * phone (already in the field) is reported, then connect + SELECT + GET
 * CREDENTIAL with GET RESPONSE chaining (docs/digital-card.md §2.3, §4), first
 * once and then READS times for a median; with -c CONTROL_SOCKET (the
 * emulator's), also tap -> CARD_PRESENT and away -> CARD_ABSENT latencies and
 * the CPU time of idle polling.
 *
 *   nfc_drvbench [-n READS] [-p POLL_MS] [-t TAPS] [-i IDLE_MS] [-c CONTROL] CONNSTRING
 *
 * Output: "timing <what> <ms> ms" lines, then "result=ok" or "result=<why>".
 * Exit 77 when the driver was built without libnfc.
 *
 * Linked against the layer archives (drivers/, lib/) like every tool.
 */
#include "drivers/reader_nfc.h"
#include "drivers/reader.h"
#include "lib/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BENCH_EVQ 64

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct reader_event ev[BENCH_EVQ];
	size_t head, n;
} q = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
bench_cb(const struct reader_event *ev, void *arg)
{
	pthread_mutex_lock(&q.lock);
	if (q.n < BENCH_EVQ)
		q.ev[(q.head + q.n++) % BENCH_EVQ] = *ev;
	pthread_cond_broadcast(&q.cond);
	pthread_mutex_unlock(&q.lock);
}

/* Wait up to ms for an event of type (others are dropped). */
static int
bench_wait(enum reader_event_type type, double ms)
{
	double deadline = bench_now() + ms;
	int found = 0;

	pthread_mutex_lock(&q.lock);
	while (!found) {
		while (q.n > 0 && !found) {
			found = q.ev[q.head].type == type;
			q.head = (q.head + 1) % BENCH_EVQ;
			q.n--;
		}
		if (found || bench_now() >= deadline)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 2000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&q.cond, &q.lock, &ts);
	}
	pthread_mutex_unlock(&q.lock);
	return found;
}

static int
bench_ctl(const char *sock, const char *cmd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[256];
	ssize_t n;
	int fd, r = -1;

	if (strlen(sock) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		snprintf(buf, sizeof(buf), "%s\n", cmd);
		if (write(fd, buf, strlen(buf)) == (ssize_t)strlen(buf) &&
		    (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
			buf[n] = '\0';
			r = strncmp(buf, "ok", 2) == 0 ? 0 : -1;
		}
	}
	close(fd);
	return r;
}

/* SELECT, then GET CREDENTIAL gathered over GET RESPONSE. Returns the
 * credential's length, or -1. */
static long
bench_read(struct reader_card *c)
{
	static const uint8_t sel[] = { 0x00, 0xA4, 0x04, 0x00, 0x09, 0xF0, 0x56, 0x49, 0x54,
		                       0x41, 0x4C, 0x45, 0x44, 0x01, 0x00 };
	uint8_t cmd[5] = { 0x80, 0xCA, 0x00, 0x00, 0x00 };
	uint8_t r[300];
	size_t rn = sizeof(r);
	long total = 0;
	int rounds = 0;

	if (reader_nfc_ops.transmit(c, sel, sizeof(sel), r, &rn) < 0 || rn < 2 ||
	    r[rn - 2] != 0x90)
		return -1;
	for (;;) {
		rn = sizeof(r);
		if (reader_nfc_ops.transmit(c, cmd, sizeof(cmd), r, &rn) < 0 || rn < 2)
			return -1;
		total += (long)rn - 2;
		if (r[rn - 2] != 0x61)
			break;
		if (++rounds > 64)
			return -1;
		cmd[0] = 0x00; cmd[1] = 0xC0; cmd[4] = r[rn - 1];
	}
	return r[rn - 2] == 0x90 && r[rn - 1] == 0x00 ? total : -1;
}

static int
cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_d);
	return v[n / 2];
}

static double
cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

int
main(int argc, char **argv)
{
	const char *ctl = NULL, *why = "ok";
	long reads = 200, taps = 10, idle_ms = 5000, poll_ms = 100, len = 0;
	struct reader_driver *d = NULL;
	struct reader_card *c = NULL;
	double t0, t, *v = NULL;
	int opt;

	while ((opt = getopt(argc, argv, "n:p:t:i:c:")) != -1) {
		switch (opt) {
		case 'n': reads = strtol(optarg, NULL, 10); break;
		case 'p': poll_ms = strtol(optarg, NULL, 10); break;
		case 't': taps = strtol(optarg, NULL, 10); break;
		case 'i': idle_ms = strtol(optarg, NULL, 10); break;
		case 'c': ctl = optarg; break;
		default: goto usage;
		}
	}
	if (optind != argc - 1 || reads < 1 || reads > 100000 || taps < 1 || taps > 1000 ||
	    poll_ms < 10 || poll_ms > 10000 || idle_ms < 0 || idle_ms > 600000)
		goto usage;
	if (!reader_nfc_ops.compiled_in) {
		printf("result=skipped (%s)\n", reader_nfc_ops.why());
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_set_level(LOG_LVL_WARNING);
	const char *devs[] = { argv[optind] };
	struct reader_params p = { .devices = devs, .ndevices = 1, .poll_ms = (unsigned)poll_ms,
		                   .backoff_max_ms = 1000 };
	if ((v = calloc((size_t)(reads > taps ? reads : taps), sizeof(*v))) == NULL)
		return 1;

	/* open -> ADDED -> CARD_PRESENT (the phone is in the field already) */
	t0 = bench_now();
	if (reader_nfc_ops.open(&p, bench_cb, NULL, &d) < 0) {
		why = "open_failed";
		goto out;
	}
	if (!bench_wait(READER_EV_ADDED, 5000)) {
		why = "no_device";
		goto out;
	}
	printf("timing open_to_added %.3f ms\n", bench_now() - t0);
	if (!bench_wait(READER_EV_CARD_PRESENT, 5000)) {
		why = "no_target";
		goto out;
	}
	printf("timing open_to_present %.3f ms\n", bench_now() - t0);
	char name[READER_NAME_MAX];
	snprintf(name, sizeof(name), "nfc:%s", argv[optind]);
	t = bench_now();
	if (reader_nfc_ops.connect(d, name, &c, NULL, NULL) < 0 || (len = bench_read(c)) < 0) {
		why = "read_failed";
		goto out;
	}
	printf("timing first_read %.3f ms (connect + SELECT + GET CREDENTIAL, %ld bytes)\n",
	       bench_now() - t, len);
	printf("timing open_to_first_read %.3f ms\n", bench_now() - t0);
	for (long i = 0; i < reads; i++) {
		t = bench_now();
		if (bench_read(c) != len) {
			why = "read_failed";
			goto out;
		}
		v[i] = bench_now() - t;
	}
	printf("timing read %.3f ms (median of %ld)\n", median(v, (size_t)reads), reads);
	reader_nfc_ops.disconnect(c);
	c = NULL;

	if (ctl != NULL) {
		for (long i = 0; i < taps; i++) {
			if (bench_ctl(ctl, "away") < 0 || !bench_wait(READER_EV_CARD_ABSENT, 5000)) {
				why = "no_absent";
				goto out;
			}
			/* tap at a random point of the poll period */
			usleep((useconds_t)(rand() % poll_ms) * 1000);
			t = bench_now();
			if (bench_ctl(ctl, "tap") < 0 || !bench_wait(READER_EV_CARD_PRESENT, 5000)) {
				why = "no_present";
				goto out;
			}
			v[i] = bench_now() - t;
		}
		printf("timing tap_to_present %.3f ms (median of %ld, poll_ms %ld)\n",
		       median(v, (size_t)taps), taps, poll_ms);
		for (long i = 0; i < taps; i++) {
			usleep((useconds_t)(rand() % poll_ms) * 1000);
			t = bench_now();
			if (bench_ctl(ctl, "away") < 0 || !bench_wait(READER_EV_CARD_ABSENT, 5000)) {
				why = "no_absent";
				goto out;
			}
			v[i] = bench_now() - t;
			if (bench_ctl(ctl, "tap") < 0 || !bench_wait(READER_EV_CARD_PRESENT, 5000)) {
				why = "no_present";
				goto out;
			}
		}
		printf("timing away_to_absent %.3f ms (median of %ld, poll_ms %ld)\n",
		       median(v, (size_t)taps), taps, poll_ms);
		if (idle_ms > 0) {
			if (bench_ctl(ctl, "away") < 0 || !bench_wait(READER_EV_CARD_ABSENT, 5000)) {
				why = "no_absent";
				goto out;
			}
			double c0 = cpu_ms();
			usleep((useconds_t)idle_ms * 1000);
			printf("timing idle_cpu %.3f ms (over %ld ms, poll_ms %ld)\n", cpu_ms() - c0,
			       idle_ms, poll_ms);
		}
	}
	t = bench_now();
	reader_nfc_ops.close(d);
	d = NULL;
	printf("timing close %.3f ms\n", bench_now() - t);
out:
	if (c != NULL)
		reader_nfc_ops.disconnect(c);
	if (d != NULL)
		reader_nfc_ops.close(d);
	free(v);
	printf("result=%s\n", why);
	return strcmp(why, "ok") == 0 ? 0 : 1;
usage:
	fprintf(stderr, "usage: nfc_drvbench [-n READS] [-p POLL_MS] [-t TAPS] [-i IDLE_MS] "
	        "[-c CONTROL] CONNSTRING\n");
	return 2;
}
