/* sheet_bench: durable creates per second through vitaled's API.
 *
 *   sheet_bench SOCKET CLIENTS TOTAL PARAMS.json
 *
 * CLIENTS threads, each with its own connection, send CreateSheet with the
 * parameters of PARAMS.json (one JSON object) one after the other until
 * TOTAL creates were answered; each answer must be a queued sheet (an error
 * answer is counted and printed once). A C client so that the client's own
 * cost stays out of the figure. Prints "<creates per second> <errors>
 * <median µs> <p99 µs>" on stdout.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *sock_path;
static char *msg;
static size_t msg_len;
static atomic_int left;
static atomic_int errors;
static double *lat;
static atomic_int nlat;

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

static void *
client(void *arg)
{
	(void)arg;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("sheet_bench: connect");
		exit(1);
	}
	char *buf = malloc(65536);
	while (atomic_fetch_sub(&left, 1) > 0) {
		double t0 = now_us();
		if (send(fd, msg, msg_len, MSG_NOSIGNAL) != (ssize_t)msg_len) {
			perror("sheet_bench: send");
			exit(1);
		}
		size_t got = 0;
		for (;;) {
			ssize_t r = recv(fd, buf + got, 65535 - got, 0);
			if (r <= 0) {
				fprintf(stderr, "sheet_bench: connection closed\n");
				exit(1);
			}
			got += (size_t)r;
			if (memchr(buf, '\0', got))
				break;
			if (got >= 65535) {
				fprintf(stderr, "sheet_bench: reply too long\n");
				exit(1);
			}
		}
		buf[got] = '\0';
		int i = atomic_fetch_add(&nlat, 1);
		lat[i] = now_us() - t0;
		if (strstr(buf, "\"error\"") || !strstr(buf, "\"queued\"")) {
			if (atomic_fetch_add(&errors, 1) == 0)
				fprintf(stderr, "sheet_bench: %s\n", buf);
		}
	}
	free(buf);
	close(fd);
	return NULL;
}

int
main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s SOCKET CLIENTS TOTAL PARAMS.json\n", argv[0]);
		return 2;
	}
	sock_path = argv[1];
	int clients = (int)strtol(argv[2], NULL, 10), total = (int)strtol(argv[3], NULL, 10);
	if (clients < 1 || clients > 256 || total < 1) {
		fprintf(stderr, "sheet_bench: bad numbers\n");
		return 2;
	}
	FILE *f = fopen(argv[4], "r");
	char params[60000];
	size_t n = f ? fread(params, 1, sizeof(params) - 1, f) : 0;
	if (!f || n == 0) {
		fprintf(stderr, "sheet_bench: cannot read %s\n", argv[4]);
		return 2;
	}
	fclose(f);
	params[n] = '\0';
	msg = malloc(n + 128);
	msg_len = (size_t)snprintf(msg, n + 128,
	                           "{\"method\":\"io.vitaled.Terminal.CreateSheet\",\"parameters\":%s}",
	                           params) + 1; /* the NUL ends the message */
	lat = calloc((size_t)total + (size_t)clients, sizeof(double));
	atomic_store(&left, total);
	pthread_t *t = calloc((size_t)clients, sizeof(pthread_t));
	double t0 = now_us();
	for (int i = 0; i < clients; i++)
		pthread_create(&t[i], NULL, client, NULL);
	for (int i = 0; i < clients; i++)
		pthread_join(t[i], NULL);
	double el = (now_us() - t0) / 1e6;
	int m = atomic_load(&nlat);
	qsort(lat, (size_t)m, sizeof(double), cmp);
	printf("%.0f %d %.0f %.0f\n", total / el, atomic_load(&errors), lat[m / 2], lat[(m * 99) / 100]);
	free(lat);
	free(t);
	free(msg);
	return 0;
}
