/* vl_bench: varlink round-trip timing for `make bench`.
 *
 *   vl_bench SOCKET N          N GetStatus round trips to vitaled, one connection
 *   vl_bench --echo N          the same N round trips against a trivial in-process
 *                              echo server (fork) that answers a fixed reply: the
 *                              baseline for what a Unix-socket round trip costs here
 *   vl_bench --rss-baseline S  sleep S seconds (a process linked with the daemon's
 *                              libraries, for an RSS baseline)
 * Prints "<median_us> <p99_us>" on stdout.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char call[] = "{\"method\":\"io.vitaled.Terminal.GetStatus\"}";

static double
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int
round_trips(int fd, int n)
{
	double *t = calloc((size_t)n, sizeof(double));
	char buf[65536];
	if (!t)
		return 1;
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		if (send(fd, call, sizeof(call), 0) != (ssize_t)sizeof(call))
			return 1;
		size_t got = 0;
		for (;;) {
			ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);
			if (r <= 0)
				return 1;
			got += (size_t)r;
			if (memchr(buf, '\0', got))
				break;
			if (got == sizeof(buf))
				return 1;
		}
		t[i] = now_us() - t0;
	}
	qsort(t, (size_t)n, sizeof(double), cmp);
	printf("%.1f %.1f\n", t[n / 2], t[(n * 99) / 100]);
	free(t);
	return 0;
}

static int
echo_server(int fd)
{
	/* answer every NUL-terminated message with a reply of GetStatus's size */
	static char reply[420];
	memset(reply, ' ', sizeof(reply));
	memcpy(reply, "{\"parameters\":{}}", 17);
	reply[sizeof(reply) - 1] = '\0';
	char buf[65536];
	size_t got = 0;
	for (;;) {
		ssize_t r = recv(fd, buf + got, sizeof(buf) - got, 0);
		if (r <= 0)
			return 0;
		got += (size_t)r;
		char *nul;
		while ((nul = memchr(buf, '\0', got))) {
			size_t m = (size_t)(nul - buf) + 1;
			memmove(buf, buf + m, got - m);
			got -= m;
			if (send(fd, reply, sizeof(reply), 0) < 0)
				return 0;
		}
	}
}

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: vl_bench SOCKET|--echo|--rss-baseline N\n");
		return 2;
	}
	int n = (int)strtol(argv[2], NULL, 10);
	if (n <= 0)
		return 2;
	if (!strcmp(argv[1], "--rss-baseline")) {
		sleep((unsigned)n);
		return 0;
	}
	int fd;
	if (!strcmp(argv[1], "--echo")) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
			return 1;
		pid_t pid = fork();
		if (pid == 0) {
			close(sv[0]);
			_exit(echo_server(sv[1]));
		}
		close(sv[1]);
		int r = round_trips(sv[0], n);
		close(sv[0]);
		waitpid(pid, NULL, 0);
		return r;
	}
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(argv[1]) >= sizeof(sa.sun_path))
		return 2;
	memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		return 1;
	}
	int r = round_trips(fd, n);
	close(fd);
	return r;
}
