/* Workers: a pool of threads that runs blocking jobs and hands each job's
 * done callback to the loop through an eventfd of its own, so that
 * worker_free can deliver what is left synchronously and nothing arrives
 * after it (see worker.h).
 *
 * Invariants (under mu): every job is on exactly one of the lists pending
 * (not started), or running (counted in nrunning), or finished (run()
 * returned, done() not yet called); `outstanding` counts all three. Only
 * the loop thread takes jobs off `finished`.
 */
#include "daemon/core/worker.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct job {
	struct job *next;
	worker_run_fn run;
	worker_done_fn done;
	void *arg;
	/* worker_run_sync: the caller waits on the worker's cond for this */
	bool sync;
	bool sync_done;
};

struct worker {
	struct loop *loop;
	char name[16];
	pthread_mutex_t mu;
	pthread_cond_t cv;       /* work arrived / stopping / a sync job ended */
	struct job *pending, *pending_tail;
	struct job *finished, *finished_tail;
	unsigned nthreads, started, idle, outstanding;
	bool stopping;
	size_t stack;
	int efd;
	pthread_t threads[WORKER_MAX_THREADS];
};

static void
push(struct job **head, struct job **tail, struct job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

static struct job *
pop(struct job **head, struct job **tail)
{
	struct job *j = *head;
	if (j) {
		*head = j->next;
		if (!*head)
			*tail = NULL;
	}
	return j;
}

static void *
thread_main(void *arg)
{
	struct worker *w = arg;
	char tn[16];
	snprintf(tn, sizeof(tn), "vl-%.12s", w->name);
	pthread_setname_np(pthread_self(), tn);
	pthread_mutex_lock(&w->mu);
	for (;;) {
		struct job *j = pop(&w->pending, &w->pending_tail);
		if (!j) {
			if (w->stopping)
				break;
			w->idle++;
			pthread_cond_wait(&w->cv, &w->mu);
			w->idle--;
			continue;
		}
		pthread_mutex_unlock(&w->mu);
		if (j->run)
			j->run(j->arg);
		pthread_mutex_lock(&w->mu);
		if (j->sync) {
			j->sync_done = true;
			pthread_cond_broadcast(&w->cv);
			continue;   /* the waiting caller owns and frees j */
		}
		bool wake = w->finished == NULL;
		push(&w->finished, &w->finished_tail, j);
		if (wake) {
			uint64_t one = 1;
			ssize_t r = write(w->efd, &one, sizeof(one));
			(void)r;   /* EAGAIN: the counter is already non-zero */
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Loop thread: call every finished job's done(), in order. */
static void
deliver(struct worker *w)
{
	LOOP_ASSERT_THREAD(w->loop);
	for (;;) {
		pthread_mutex_lock(&w->mu);
		struct job *j = pop(&w->finished, &w->finished_tail);
		if (j)
			w->outstanding--;
		pthread_mutex_unlock(&w->mu);
		if (!j)
			return;
		if (j->done)
			j->done(j->arg);
		free(j);
	}
}

static void
on_efd(struct loop *l, int fd, short revents, void *arg)
{
	uint64_t n;
	ssize_t r = read(fd, &n, sizeof(n));
	(void)r;
	(void)l;
	(void)revents;
	deliver(arg);
}

int
worker_new(struct loop *l, const char *name, unsigned nthreads, size_t stack_kib,
           struct worker **out)
{
	*out = NULL;
	if (!l || nthreads == 0 || nthreads > WORKER_MAX_THREADS)
		return -EINVAL;
	LOOP_ASSERT_THREAD(l);
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->loop = l;
	snprintf(w->name, sizeof(w->name), "%s", name ? name : "worker");
	w->nthreads = nthreads;
	w->stack = stack_kib * 1024u;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int r = w->efd < 0 ? -errno : loop_add_fd(l, w->efd, POLLIN, on_efd, w);
	if (r < 0) {
		if (w->efd >= 0)
			close(w->efd);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		free(w);
		return r;
	}
	*out = w;
	return 0;
}

/* Under mu: start a thread when every started one is busy. A thread that
 * cannot be started is not fatal while another runs; with none, -errno. */
static int
maybe_start(struct worker *w)
{
	if (w->idle > 0 || w->started >= w->nthreads)
		return 0;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	if (w->stack)
		pthread_attr_setstacksize(&attr, w->stack);
	int e = pthread_create(&w->threads[w->started], &attr, thread_main, w);
	pthread_attr_destroy(&attr);
	if (e)
		return w->started ? 0 : -e;
	w->started++;
	return 0;
}

static int
enqueue(struct worker *w, struct job *j)
{
	pthread_mutex_lock(&w->mu);
	if (w->stopping) {
		pthread_mutex_unlock(&w->mu);
		return -ESHUTDOWN;
	}
	int r = maybe_start(w);
	if (r < 0) {
		pthread_mutex_unlock(&w->mu);
		return r;
	}
	if (!j->sync)
		w->outstanding++;
	push(&w->pending, &w->pending_tail, j);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

int
worker_submit(struct worker *w, worker_run_fn run, worker_done_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct job){ .run = run, .done = done, .arg = arg };
	int r = enqueue(w, j);
	if (r < 0)
		free(j);
	return r;
}

int
worker_run_sync(struct worker *w, worker_run_fn run, void *arg)
{
	assert(!worker_on_thread(w));
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct job){ .run = run, .arg = arg, .sync = true };
	int r = enqueue(w, j);
	if (r < 0) {
		free(j);
		return r;
	}
	pthread_mutex_lock(&w->mu);
	while (!j->sync_done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	free(j);
	return 0;
}

bool
worker_on_thread(const struct worker *w)
{
	if (!w)
		return false;
	/* started only grows, and threads[] below it is written before */
	struct worker *mw = (struct worker *)(uintptr_t)w;
	pthread_mutex_lock(&mw->mu);
	unsigned n = mw->started;
	pthread_mutex_unlock(&mw->mu);
	for (unsigned i = 0; i < n; i++)
		if (pthread_equal(pthread_self(), w->threads[i]))
			return true;
	return false;
}

unsigned
worker_pending(struct worker *w)
{
	pthread_mutex_lock(&w->mu);
	unsigned n = w->outstanding;
	pthread_mutex_unlock(&w->mu);
	return n;
}

void
worker_free(struct worker *w)
{
	if (!w)
		return;
	LOOP_ASSERT_THREAD(w->loop);
	pthread_mutex_lock(&w->mu);
	w->stopping = true;
	pthread_cond_broadcast(&w->cv);
	unsigned n = w->started;
	pthread_mutex_unlock(&w->mu);
	for (unsigned i = 0; i < n; i++)
		pthread_join(w->threads[i], NULL);
	deliver(w);
	assert(w->outstanding == 0);
	loop_del_fd(w->loop, w->efd);
	close(w->efd);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
	free(w);
}
