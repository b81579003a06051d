/* The sign-ahead of a group-commit batch; see sheetseal.h.
 *
 * Each task is one job of the sealer's one-thread worker. The job only
 * signs; the task's state (under the sealer's mutex) says whether the
 * queue's thread may take the result. A task cancelled before its job
 * starts is not signed; its job still runs (a worker job cannot be taken
 * back) and only marks it done, so cancel waits at most for the signature
 * in progress. The job never touches the task after marking it done: the
 * waiting thread may free it at once.
 */
#include "daemon/sheets/sheetseal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/worker.h"
#include "lib/clock.h"
#include "protocol/sheetsig.h"

enum { T_IDLE, T_QUEUED, T_RUNNING, T_DONE };

struct sheetseal {
	struct worker *w;
	pthread_mutex_t mu;
	pthread_cond_t done_cv; /* a task finished */
};

struct job {
	struct sheetseal *ss;
	struct sheetseal_task *t;
};

/* Sealer's worker thread. */
static void
job_run(void *arg)
{
	struct job *j = arg;
	struct sheetseal *ss = j->ss;
	struct sheetseal_task *t = j->t;
	free(j);
	pthread_mutex_lock(&ss->mu);
	if (!t->cancelled) {
		t->state = T_RUNNING;
		pthread_mutex_unlock(&ss->mu);
		uint64_t t0 = clock_mono_us();
		t->s->seq = t->seq;
		t->result = sheetsig_sign(t->s, t->alg, t->sign, t->sign_ctx, &t->out, &t->len);
		t->sign_us = clock_mono_us() - t0;
		pthread_mutex_lock(&ss->mu);
	}
	t->state = T_DONE;
	pthread_cond_broadcast(&ss->done_cv);
	pthread_mutex_unlock(&ss->mu);
}

int
sheetseal_start(struct loop *l, struct sheetseal **out)
{
	*out = NULL;
	struct sheetseal *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	/* its thread started now (an empty job), not in the first batch */
	int r = worker_new(l, "seal", 1, 0, &ss->w);
	if (r < 0 || (r = worker_submit(ss->w, NULL, NULL, NULL)) < 0) {
		worker_free(ss->w);
		free(ss);
		return r;
	}
	pthread_mutex_init(&ss->mu, NULL);
	pthread_cond_init(&ss->done_cv, NULL);
	*out = ss;
	return 0;
}

void
sheetseal_stop(struct sheetseal *ss)
{
	if (!ss)
		return;
	worker_free(ss->w);
	pthread_mutex_destroy(&ss->mu);
	pthread_cond_destroy(&ss->done_cv);
	free(ss);
}

int
sheetseal_submit(struct sheetseal *ss, struct sheetseal_task *t)
{
	t->out = NULL;
	t->len = 0;
	t->result = 0;
	t->sign_us = 0;
	t->cancelled = false;
	t->state = T_QUEUED;
	struct job *j = malloc(sizeof(*j));
	int r = j ? 0 : -ENOMEM;
	if (j) {
		*j = (struct job){ .ss = ss, .t = t };
		if ((r = worker_submit(ss->w, job_run, NULL, j)) < 0)
			free(j);
	}
	if (r < 0) {
		pthread_mutex_lock(&ss->mu);
		t->result = r;
		t->state = T_DONE;
		pthread_mutex_unlock(&ss->mu);
	}
	return r;
}

int
sheetseal_wait(struct sheetseal *ss, struct sheetseal_task *t)
{
	pthread_mutex_lock(&ss->mu);
	while (t->state != T_DONE)
		pthread_cond_wait(&ss->done_cv, &ss->mu);
	t->state = T_IDLE;
	pthread_mutex_unlock(&ss->mu);
	return t->result;
}

void
sheetseal_cancel(struct sheetseal *ss, struct sheetseal_task *const *t, size_t n)
{
	pthread_mutex_lock(&ss->mu);
	for (size_t i = 0; i < n; i++)
		t[i]->cancelled = true; /* all first: none starts while an earlier one is waited for */
	for (size_t i = 0; i < n; i++) {
		while (t[i]->state == T_QUEUED || t[i]->state == T_RUNNING)
			pthread_cond_wait(&ss->done_cv, &ss->mu);
		t[i]->state = T_IDLE;
	}
	pthread_mutex_unlock(&ss->mu);
	for (size_t i = 0; i < n; i++) {
		if (t[i]->out) {
			explicit_bzero(t[i]->out, t[i]->len);
			free(t[i]->out);
		}
		t[i]->out = NULL;
		t[i]->len = 0;
	}
}
