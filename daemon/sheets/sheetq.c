/* The queue's thread; see sheetq.h.
 *
 * Jobs go in a FIFO under a mutex; the thread runs each job's work with the
 * queue handle, moves the job to a "done" list and wakes the loop through an
 * eventfd, whose handler runs the done callbacks in order. An eventfd (not
 * loop_post) so that sheetq_stop can take the done list itself after the
 * thread ended: nothing is left posted into a loop that is being torn down,
 * and every job's done callback runs exactly once (it owns the job's memory
 * and may have an API call to answer).
 */
#include "daemon/sheets/sheetq.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/log.h"

struct job {
	struct job *next;
	sheetq_work_fn work;
	sheetq_done_fn done;
	void *arg;
};

struct sheetq {
	struct loop *loop;
	struct queue *q;        /* the queue thread's, once started */
	int efd;
	pthread_t thread;
	bool started;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail; /* to run */
	struct job *dhead, *dtail; /* done, for the loop */
	unsigned pending;
	bool quit;
	struct queue_stats stats;
};

static void
list_push(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

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

static void *
thread_main(void *arg)
{
	struct sheetq *sq = arg;
	for (;;) {
		pthread_mutex_lock(&sq->mu);
		while (!sq->head && !sq->quit)
			pthread_cond_wait(&sq->cv, &sq->mu);
		struct job *j = sq->head;
		if (j) {
			sq->head = j->next;
			if (!sq->head)
				sq->tail = NULL;
		}
		pthread_mutex_unlock(&sq->mu);
		if (!j)
			break; /* quit, and nothing left to run */
		int f = j->work ? j->work(sq->q, j->arg) : 0;
		if (f & SHEETQ_WROTE)
			refresh_stats(sq);
		pthread_mutex_lock(&sq->mu);
		list_push(&sq->dhead, &sq->dtail, j);
		pthread_mutex_unlock(&sq->mu);
		uint64_t one = 1;
		if (write(sq->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_err("queue: cannot wake the event loop: %s", strerror(errno));
	}
	return NULL;
}

/* Run the done callbacks of finished jobs (loop thread). */
static void
drain(struct sheetq *sq)
{
	pthread_mutex_lock(&sq->mu);
	struct job *j = sq->dhead;
	sq->dhead = sq->dtail = NULL;
	pthread_mutex_unlock(&sq->mu);
	while (j) {
		struct job *next = j->next;
		pthread_mutex_lock(&sq->mu);
		sq->pending--;
		pthread_mutex_unlock(&sq->mu);
		if (j->done)
			j->done(j->arg);
		free(j);
		j = next;
	}
}

static void
efd_cb(struct loop *l, int fd, short revents, void *arg)
{
	(void)l;
	(void)revents;
	uint64_t n;
	while (read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		;
	drain(arg);
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
	sq->loop = l;
	sq->efd = -1;
	pthread_mutex_init(&sq->mu, NULL);
	pthread_cond_init(&sq->cv, NULL);
	int r = queue_open(o, &sq->q, err, errlen);
	if (r < 0)
		goto fail;
	queue_stats(sq->q, &sq->stats);
	sq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sq->efd < 0) {
		r = -errno;
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail;
	}
	if ((r = loop_add_fd(l, sq->efd, POLLIN, efd_cb, sq)) < 0) {
		snprintf(err, errlen, "cannot watch the queue thread's eventfd");
		goto fail;
	}
	int e = pthread_create(&sq->thread, NULL, thread_main, sq);
	if (e != 0) {
		loop_del_fd(l, sq->efd);
		r = -e;
		snprintf(err, errlen, "cannot start the queue thread: %s", strerror(e));
		goto fail;
	}
	sq->started = true;
	*out = sq;
	return 0;
fail:
	if (sq->efd >= 0)
		close(sq->efd);
	queue_close(sq->q);
	pthread_mutex_destroy(&sq->mu);
	pthread_cond_destroy(&sq->cv);
	free(sq);
	return r;
}

void
sheetq_stop(struct sheetq *sq)
{
	if (!sq)
		return;
	pthread_mutex_lock(&sq->mu);
	sq->quit = true;
	pthread_cond_broadcast(&sq->cv);
	pthread_mutex_unlock(&sq->mu);
	if (sq->started)
		pthread_join(sq->thread, NULL);
	loop_del_fd(sq->loop, sq->efd);
	close(sq->efd);
	drain(sq); /* jobs that finished while stopping still get their callback */
	queue_close(sq->q);
	pthread_mutex_destroy(&sq->mu);
	pthread_cond_destroy(&sq->cv);
	free(sq);
}

int
sheetq_run(struct sheetq *sq, sheetq_work_fn work, sheetq_done_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&sq->mu);
	if (sq->quit) {
		pthread_mutex_unlock(&sq->mu);
		free(j);
		return -ESHUTDOWN;
	}
	list_push(&sq->head, &sq->tail, j);
	sq->pending++;
	pthread_cond_signal(&sq->cv);
	pthread_mutex_unlock(&sq->mu);
	return 0;
}

void
sheetq_stats(struct sheetq *sq, struct queue_stats *st)
{
	pthread_mutex_lock(&sq->mu);
	*st = sq->stats;
	pthread_mutex_unlock(&sq->mu);
}

unsigned
sheetq_pending(struct sheetq *sq)
{
	pthread_mutex_lock(&sq->mu);
	unsigned n = sq->pending;
	pthread_mutex_unlock(&sq->mu);
	return n;
}
