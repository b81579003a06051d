/* bench_queue: the durable queue's throughput for `make bench`, each row
 * beside a baseline measured in the same process on the same disk.
 *
 *   bench_queue [DIR]     (default: a fresh directory under /var/tmp, which
 *                          is on disk where /tmp may be a tmpfs)
 *
 * Tools are built without the core library, so this program compiles the
 * storage module's sources in (storage/ depends on nothing else) and the
 * baseline of tests/tools/sqlite_baseline.c. Prints rows
 * "| what | value | baseline | ratio |", medians of 5 interleaved runs. */
#define BASELINE_NO_MAIN
#include "sqlite_baseline.c"

#include "lib/fsutil.h"
#include "storage/queue.h"

#include <ftw.h>

#define RUNS 5

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static double
median(double *v, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return v[n / 2];
}

/* sheets per second through queue_put_batch, batch sheets per call */
static double
queue_run(const char *dir, int n, int batch, int payload)
{
	char sub[4200];
	snprintf(sub, sizeof(sub), "%s/q", dir);
	struct queue_opts o = { .dir = sub };
	struct queue *q = NULL;
	char err[512];
	if (queue_open(&o, &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench_queue: %s\n", err);
		return -1;
	}
	uint8_t *pl = calloc(1, (size_t)payload + 1);
	struct queue_put *items = calloc((size_t)batch, sizeof(*items));
	char(*ids)[40] = calloc((size_t)batch, 40);
	double rate = -1;
	if (!pl || !items || !ids)
		goto out;
	double t0 = baseline_now();
	for (int i = 0; i < n;) {
		int k = 0;
		for (; k < batch && i + k < n; k++) {
			snprintf(ids[k], 40, "sheet-%08d", i + k);
			items[k] = (struct queue_put){ .id = ids[k], .practitioner = "801234567",
				                       .care_date = "2024-03-15", .due_date = "2024-03-20",
				                       .payload = pl, .payload_len = (size_t)payload };
		}
		if (queue_put_batch(q, items, (size_t)k) < 0) {
			fprintf(stderr, "bench_queue: %s\n", queue_last_error(q));
			goto out;
		}
		for (int j = 0; j < k; j++)
			if (items[j].result < 0)
				goto out;
		i += k;
	}
	rate = n / (baseline_now() - t0);
out:
	queue_close(q);
	free(pl);
	free(items);
	free(ids);
	nftw(sub, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return rate;
}

static void
row(const char *what, int batch, int n, const char *dir)
{
	double qv[RUNS], bv[RUNS];
	for (int r = 0; r < RUNS; r++) {
		bv[r] = baseline_run(dir, n, batch, 1024);
		qv[r] = queue_run(dir, n, batch, 1024);
		if (bv[r] < 0 || qv[r] < 0) {
			printf("| %s | failed | | |\n", what);
			return;
		}
	}
	double q = median(qv, RUNS), b = median(bv, RUNS);
	printf("| %s | %.0f sheets/s | %.0f rows/s (raw SQLite, WAL + synchronous=FULL, %d per "
	       "transaction) | %.2f |\n",
	       what, q, b, batch, q / b);
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	char tmpl[] = "/var/tmp/bench_queue.XXXXXX";
	const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
	if (!dir) {
		perror("bench_queue: mkdtemp");
		return 1;
	}
	row("queue_put, 1 KiB sheet, one per transaction", 1, 2000, dir);
	row("queue_put_batch, 1 KiB sheets, 16 per transaction", 16, 8000, dir);
	row("queue_put_batch, 1 KiB sheets, 64 per transaction", 64, 16000, dir);
	if (argc <= 1)
		rmdir(dir);
	return 0;
}
