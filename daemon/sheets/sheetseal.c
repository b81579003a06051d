/* The sign-ahead thread of a group-commit batch; see sheetseal.h. */
#include "daemon/sheets/sheetseal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/sheetsig.h"

enum { T_IDLE, T_QUEUED, T_RUNNING, T_DONE };

struct sheetseal {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* work queued / quit */
	pthread_cond_t done_cv; /* a task finished */
	struct sheetseal_task *head, *tail;
	bool quit;
};

static uint64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *
thread_main(void *arg)
{
	struct sheetseal *ss = arg;
	pthread_mutex_lock(&ss->mu);
	for (;;) {
		while (!ss->head && !ss->quit)
			pthread_cond_wait(&ss->cv, &ss->mu);
		if (ss->quit)
			break;
		struct sheetseal_task *t = ss->head;
		ss->head = t->next;
		if (!ss->head)
			ss->tail = NULL;
		t->next = NULL;
		t->state = T_RUNNING;
		pthread_mutex_unlock(&ss->mu);
		uint64_t t0 = now_us();
		t->s->seq = t->seq;
		t->result = sheetsig_sign(t->s, t->alg, signer_sign, t->signer, &t->out, &t->len);
		t->sign_us = now_us() - t0;
		pthread_mutex_lock(&ss->mu);
		t->state = T_DONE;
		pthread_cond_broadcast(&ss->done_cv);
	}
	pthread_mutex_unlock(&ss->mu);
	return NULL;
}

int
sheetseal_start(struct sheetseal **out)
{
	*out = NULL;
	struct sheetseal *ss = calloc(1, sizeof(*ss));
	if (!ss)
		return -ENOMEM;
	pthread_mutex_init(&ss->mu, NULL);
	pthread_cond_init(&ss->cv, NULL);
	pthread_cond_init(&ss->done_cv, NULL);
	int e = pthread_create(&ss->thread, NULL, thread_main, ss);
	if (e != 0) {
		pthread_mutex_destroy(&ss->mu);
		pthread_cond_destroy(&ss->cv);
		pthread_cond_destroy(&ss->done_cv);
		free(ss);
		return -e;
	}
	*out = ss;
	return 0;
}

void
sheetseal_stop(struct sheetseal *ss)
{
	if (!ss)
		return;
	pthread_mutex_lock(&ss->mu);
	ss->quit = true;
	pthread_cond_broadcast(&ss->cv);
	pthread_mutex_unlock(&ss->mu);
	pthread_join(ss->thread, NULL);
	pthread_mutex_destroy(&ss->mu);
	pthread_cond_destroy(&ss->cv);
	pthread_cond_destroy(&ss->done_cv);
	free(ss);
}

void
sheetseal_submit(struct sheetseal *ss, struct sheetseal_task *t)
{
	t->out = NULL;
	t->len = 0;
	t->result = 0;
	t->next = NULL;
	pthread_mutex_lock(&ss->mu);
	t->state = T_QUEUED;
	if (ss->tail)
		ss->tail->next = t;
	else
		ss->head = t;
	ss->tail = t;
	pthread_cond_signal(&ss->cv);
	pthread_mutex_unlock(&ss->mu);
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
sheetseal_cancel(struct sheetseal *ss, struct sheetseal_task *t)
{
	pthread_mutex_lock(&ss->mu);
	if (t->state == T_QUEUED) {
		struct sheetseal_task **pp = &ss->head, *prev = NULL;
		while (*pp && *pp != t) {
			prev = *pp;
			pp = &(*pp)->next;
		}
		if (*pp)
			*pp = t->next;
		if (ss->tail == t)
			ss->tail = prev;
		t->state = T_IDLE;
	}
	while (t->state == T_RUNNING)
		pthread_cond_wait(&ss->done_cv, &ss->mu);
	t->state = T_IDLE;
	pthread_mutex_unlock(&ss->mu);
	if (t->out) {
		explicit_bzero(t->out, t->len);
		free(t->out);
	}
	t->out = NULL;
	t->len = 0;
}
