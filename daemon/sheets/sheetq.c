/* The queue's worker; see sheetq.h.
 *
 * A one-thread daemon/core/worker: jobs run in FIFO order with the queue
 * handle on the worker's thread, and each job's done callback runs on the
 * loop thread, exactly once, in order, even at sheetq_stop (worker_free
 * delivers what is left before it returns: a done callback owns its job's
 * memory and may have an API call to answer). The only thing of its own
 * here is the statistics snapshot, written by the worker thread after a
 * job that wrote and read by the loop without waiting.
 */
#include "daemon/sheets/sheetq.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/worker.h"
#include "lib/clock.h"
#include "lib/log.h"

struct sheetq {
	struct worker *w;
	struct queue *q;          /* used on the worker's thread only, once started */
	pthread_mutex_t mu;       /* guards stats and the check's result */
	struct queue_stats stats;
	enum sheetq_check check;
	char check_why[600];
	uint64_t check_ms;
};

struct job {
	struct sheetq *sq;
	sheetq_work_fn work;
	sheetq_done_fn done;
	void *arg;
};

static void
refresh_stats(struct sheetq *sq)
{
	struct queue_stats st;
	if (queue_stats(sq->q, &st) < 0)
		return; /* keep the last good snapshot; the failure is in the queue's last error */
	pthread_mutex_lock(&sq->mu);
	sq->stats = st;
	pthread_mutex_unlock(&sq->mu);
}

/* Worker thread. */
static void
job_run(void *arg)
{
	struct job *j = arg;
	int f = j->work ? j->work(j->sq->q, j->arg) : 0;
	if (f & SHEETQ_WROTE)
		refresh_stats(j->sq);
}

/* Worker thread: the queue's first job, the integrity check queue_open
 * left to it (opts.defer_quick_check), so that the daemon is ready before
 * it has read the whole file; every job queued meanwhile (creates,
 * uploads) waits behind it, so nothing is written to a file not checked. */
static void
check_run(void *arg)
{
	struct sheetq *sq = arg;
	uint64_t t0 = clock_mono_us();
	int r = queue_check(sq->q);
	uint64_t ms = (clock_mono_us() - t0) / 1000u;
	refresh_stats(sq); /* the stored bytes are counted by the check */
	malloc_trim(0);    /* the page cache it filled was released */
	pthread_mutex_lock(&sq->mu);
	sq->check = r < 0 ? SHEETQ_CHECK_FAILED : SHEETQ_CHECK_OK;
	sq->check_ms = ms;
	if (r < 0)
		snprintf(sq->check_why, sizeof(sq->check_why), "%s", queue_damage(sq->q));
	pthread_mutex_unlock(&sq->mu);
}

/* Loop thread. */
static void
check_done(void *arg)
{
	struct sheetq *sq = arg;
	char why[600];
	uint64_t ms;
	if (sheetq_check(sq, why, sizeof(why), &ms) == SHEETQ_CHECK_FAILED)
		log_err("queue: integrity check failed: %s; sheets are kept but no sheet is created "
		        "or sent until the file is restored", why);
	else
		log_info("queue: integrity check (PRAGMA quick_check) passed in %llu ms",
		         (unsigned long long)ms);
}

/* Loop thread. */
static void
job_done(void *arg)
{
	struct job *j = arg;
	if (j->done)
		j->done(j->arg);
	free(j);
}

int
sheetq_start(struct loop *l, const struct queue_opts *o, struct sheetq **out, char *err,
             size_t errlen)
{
	*out = NULL;
	struct sheetq *sq = calloc(1, sizeof(*sq));
	if (!sq) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&sq->mu, NULL);
	int r = queue_open(o, &sq->q, err, errlen);
	if (r < 0)
		goto fail;
	queue_stats(sq->q, &sq->stats);
	/* one thread: the handle has one user at a time (storage/queue.h);
	 * started now (an empty job) rather than at the first request, so the
	 * daemon's threads are all there once it is ready */
	sq->check = SHEETQ_CHECK_RUNNING;
	if ((r = worker_new(l, "queue", 1, 0, &sq->w)) < 0 ||
	    (r = worker_submit(sq->w, check_run, check_done, sq)) < 0) {
		snprintf(err, errlen, "cannot start the queue's worker: %s", strerror(-r));
		worker_free(sq->w);
		goto fail;
	}
	*out = sq;
	return 0;
fail:
	queue_close(sq->q);
	pthread_mutex_destroy(&sq->mu);
	free(sq);
	return r;
}

void
sheetq_stop(struct sheetq *sq)
{
	if (!sq)
		return;
	worker_free(sq->w); /* runs what is queued, then every done callback, here */
	queue_close(sq->q);
	pthread_mutex_destroy(&sq->mu);
	free(sq);
}

int
sheetq_run(struct sheetq *sq, sheetq_work_fn work, sheetq_done_fn done, void *arg)
{
	struct job *j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct job){ .sq = sq, .work = work, .done = done, .arg = arg };
	int r = worker_submit(sq->w, job_run, job_done, j);
	if (r < 0)
		free(j);
	return r;
}

void
sheetq_stats(struct sheetq *sq, struct queue_stats *st)
{
	pthread_mutex_lock(&sq->mu);
	*st = sq->stats;
	pthread_mutex_unlock(&sq->mu);
}

void
sheetq_open_notice(struct sheetq *sq, char *buf, size_t len, bool *read_only)
{
	snprintf(buf, len, "%s", queue_open_notice(sq->q));
	*read_only = queue_read_only(sq->q);
}

enum sheetq_check
sheetq_check(struct sheetq *sq, char *why, size_t len, uint64_t *ms)
{
	pthread_mutex_lock(&sq->mu);
	enum sheetq_check c = sq->check;
	if (why && len)
		snprintf(why, len, "%s", c == SHEETQ_CHECK_FAILED ? sq->check_why : "");
	if (ms)
		*ms = sq->check_ms;
	pthread_mutex_unlock(&sq->mu);
	return c;
}

unsigned
sheetq_pending(struct sheetq *sq)
{
	return worker_pending(sq->w);
}
