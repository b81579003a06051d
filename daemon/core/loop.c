/* The poll() event loop; see loop.h.
 *
 * Watched fds live in a small array that is copied into a pollfd array when
 * it changes. Callbacks may change the set while we dispatch, so dispatch
 * checks that the slot still holds the same registration (a generation
 * number) before calling it. Timers are few (tens), so a flat array scanned
 * for the earliest deadline beats a heap in code size and is as fast.
 */
#include "daemon/core/loop.h"
#include "lib/clock.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct fd_reg {
	int fd;
	short events;
	loop_fd_cb cb;
	void *arg;
	uint64_t gen;
};

struct timer {
	uint64_t id;
	uint64_t deadline;
	loop_timer_cb cb;
	void *arg;
};

struct post {
	loop_post_cb cb;
	void (*free_arg)(void *arg); /* loop_post_owned: frees arg if never run */
	void *arg;
	struct post *next;
};

struct loop {
	struct fd_reg *fds;
	size_t nfds, capfds;
	uint64_t gen;
	struct timer *timers;
	size_t ntimers, captimers;
	uint64_t next_timer_id;
	int stop;
	int wakefd;
	pthread_mutex_t post_lock;
	struct post *post_head, *post_tail;
	pthread_t owner;   /* the thread that runs the loop (loop_new's, then loop_run's) */
};

bool
loop_on_thread(const struct loop *l)
{
	return l && pthread_equal(pthread_self(), l->owner);
}

uint64_t
loop_now_ms(void)
{
	return clock_mono_ms();
}

int
loop_new(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));
	*out = NULL;
	if (!l)
		return -ENOMEM;
	l->owner = pthread_self();
	l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l->wakefd < 0) {
		int e = errno;
		free(l);
		return -e;
	}
	pthread_mutex_init(&l->post_lock, NULL);
	l->next_timer_id = 1;
	*out = l;
	return 0;
}

void
loop_free(struct loop *l)
{
	if (!l)
		return;
	struct post *p = l->post_head;
	while (p) {
		struct post *n = p->next;
		if (p->free_arg)
			p->free_arg(p->arg);
		free(p);
		p = n;
	}
	close(l->wakefd);
	pthread_mutex_destroy(&l->post_lock);
	free(l->fds);
	free(l->timers);
	free(l);
}

static struct fd_reg *
find_fd(struct loop *l, int fd)
{
	for (size_t i = 0; i < l->nfds; i++)
		if (l->fds[i].fd == fd)
			return &l->fds[i];
	return NULL;
}

int
loop_add_fd(struct loop *l, int fd, short events, loop_fd_cb cb, void *arg)
{
	LOOP_ASSERT_THREAD(l);
	if (fd < 0 || !cb)
		return -EINVAL;
	if (find_fd(l, fd))
		return -EEXIST;
	if (l->nfds == l->capfds) {
		size_t nc = l->capfds ? l->capfds * 2 : 16;
		struct fd_reg *n = realloc(l->fds, nc * sizeof(*n));
		if (!n)
			return -ENOMEM;
		l->fds = n;
		l->capfds = nc;
	}
	l->fds[l->nfds++] = (struct fd_reg){ fd, events, cb, arg, ++l->gen };
	return 0;
}

int
loop_mod_fd(struct loop *l, int fd, short events)
{
	LOOP_ASSERT_THREAD(l);
	struct fd_reg *r = find_fd(l, fd);
	if (!r)
		return -ENOENT;
	r->events = events;
	return 0;
}

void
loop_del_fd(struct loop *l, int fd)
{
	LOOP_ASSERT_THREAD(l);
	for (size_t i = 0; i < l->nfds; i++) {
		if (l->fds[i].fd == fd) {
			l->fds[i] = l->fds[--l->nfds];
			return;
		}
	}
}

uint64_t
loop_timer_add(struct loop *l, uint64_t delay_ms, loop_timer_cb cb, void *arg)
{
	LOOP_ASSERT_THREAD(l);
	if (l->ntimers == l->captimers) {
		size_t nc = l->captimers ? l->captimers * 2 : 16;
		struct timer *n = realloc(l->timers, nc * sizeof(*n));
		if (!n)
			return 0;
		l->timers = n;
		l->captimers = nc;
	}
	uint64_t id = l->next_timer_id++;
	l->timers[l->ntimers++] = (struct timer){ id, loop_now_ms() + delay_ms, cb, arg };
	return id;
}

void
loop_timer_cancel(struct loop *l, uint64_t id)
{
	LOOP_ASSERT_THREAD(l);
	for (size_t i = 0; i < l->ntimers; i++) {
		if (l->timers[i].id == id) {
			memmove(&l->timers[i], &l->timers[i + 1],
			        (l->ntimers - i - 1) * sizeof(l->timers[0]));
			l->ntimers--;
			return;
		}
	}
}

unsigned
loop_timer_count(const struct loop *l)
{
	return (unsigned)l->ntimers;
}

int
loop_post(struct loop *l, loop_post_cb cb, void *arg)
{
	return loop_post_owned(l, cb, NULL, arg);
}

int
loop_post_owned(struct loop *l, loop_post_cb cb, void (*free_arg)(void *arg), void *arg)
{
	struct post *p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cb = cb;
	p->free_arg = free_arg;
	p->arg = arg;
	p->next = NULL;
	pthread_mutex_lock(&l->post_lock);
	if (l->post_tail)
		l->post_tail->next = p;
	else
		l->post_head = p;
	l->post_tail = p;
	pthread_mutex_unlock(&l->post_lock);
	uint64_t one = 1;
	ssize_t w = write(l->wakefd, &one, sizeof(one));
	(void)w; /* EAGAIN means the counter is already non-zero: poll wakes anyway */
	return 0;
}

static void
run_posts(struct loop *l)
{
	uint64_t v;
	ssize_t r = read(l->wakefd, &v, sizeof(v));
	(void)r;
	pthread_mutex_lock(&l->post_lock);
	struct post *p = l->post_head;
	l->post_head = l->post_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);
	while (p) {
		struct post *n = p->next;
		p->cb(p->arg);
		free(p);
		p = n;
	}
}

/* Run due timers in deadline order, then id order. A timer added by a
 * callback with delay 0 runs in the next round, never in this one, so a
 * self-rearming timer cannot starve the fds. */
static void
run_timers(struct loop *l)
{
	uint64_t now = loop_now_ms();
	uint64_t limit = l->next_timer_id;
	for (;;) {
		size_t best = (size_t)-1;
		for (size_t i = 0; i < l->ntimers; i++) {
			struct timer *t = &l->timers[i];
			if (t->deadline > now || t->id >= limit)
				continue;
			if (best == (size_t)-1 || t->deadline < l->timers[best].deadline ||
			    (t->deadline == l->timers[best].deadline && t->id < l->timers[best].id))
				best = i;
		}
		if (best == (size_t)-1)
			return;
		struct timer t = l->timers[best];
		memmove(&l->timers[best], &l->timers[best + 1],
		        (l->ntimers - best - 1) * sizeof(l->timers[0]));
		l->ntimers--;
		t.cb(l, t.arg);
	}
}

static int
next_timeout(struct loop *l, int max_wait_ms)
{
	if (l->ntimers == 0)
		return max_wait_ms;
	uint64_t now = loop_now_ms(), best = UINT64_MAX;
	for (size_t i = 0; i < l->ntimers; i++)
		if (l->timers[i].deadline < best)
			best = l->timers[i].deadline;
	uint64_t d = best > now ? best - now : 0;
	if (max_wait_ms >= 0 && d > (uint64_t)max_wait_ms)
		return max_wait_ms;
	return d > 3600000u ? 3600000 : (int)d;
}

int
loop_run_once(struct loop *l, int max_wait_ms)
{
	l->owner = pthread_self();
	size_t n = l->nfds;
	struct pollfd *pfd = calloc(n + 1, sizeof(*pfd));
	uint64_t *gens = calloc(n + 1, sizeof(*gens));
	int ret = 0;
	if (!pfd || !gens) {
		ret = -ENOMEM;
		goto out;
	}
	pfd[0].fd = l->wakefd;
	pfd[0].events = POLLIN;
	for (size_t i = 0; i < n; i++) {
		pfd[i + 1].fd = l->fds[i].fd;
		pfd[i + 1].events = l->fds[i].events;
		gens[i + 1] = l->fds[i].gen;
	}
	int r = poll(pfd, (nfds_t)(n + 1), next_timeout(l, max_wait_ms));
	if (r < 0) {
		if (errno != EINTR)
			ret = -errno;
		goto out;
	}
	if (pfd[0].revents)
		run_posts(l);
	for (size_t i = 1; i <= n && r > 0; i++) {
		if (!pfd[i].revents)
			continue;
		/* the set may have changed under us: only call a registration
		 * that is still the one we polled */
		struct fd_reg *reg = find_fd(l, pfd[i].fd);
		if (!reg || reg->gen != gens[i])
			continue;
		reg->cb(l, pfd[i].fd, pfd[i].revents, reg->arg);
	}
	run_timers(l);
out:
	free(pfd);
	free(gens);
	return ret;
}

int
loop_run(struct loop *l)
{
	l->stop = 0;
	while (!l->stop) {
		int r = loop_run_once(l, -1);
		if (r < 0)
			return r;
	}
	return 0;
}

void
loop_stop(struct loop *l)
{
	LOOP_ASSERT_THREAD(l);
	l->stop = 1;
}
