/* Module "queue": care sheets and the durable queue; see sheets.h.
 *
 * Start order: the sealer's worker, the queue and its worker, the state
 * machine (whose work runs on the queue's worker), then the API. Stop in
 * reverse: the API stops taking requests, the queue's worker runs what is
 * queued and delivers every done callback (the batch in flight answers its
 * callers; a batch that would start then gets ShuttingDown), the machine
 * answers what is still pending with ShuttingDown, and the sealer goes
 * last (nothing waits on it any more).
 */
#include "daemon/sheets/sheets.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sheets/api_sheets.h"
#include "daemon/sheets/sheetq.h"
#include "daemon/sheets/sheetseal.h"
#include "lib/clock.h"
#include "lib/log.h"

static struct {
	struct daemon *d;
	struct sheetq *sq;
	struct sheetseal *sealer;
	struct sheetcommit *sc;
	uint64_t purge_timer;
	uint64_t tick_timer;
	bool tick_busy;
} S;

static bool accept_new;

void
sheets_accept_new_queue(bool accept)
{
	accept_new = accept;
}

static int
run_on_queue(void *ctx, sheetq_work_fn work, sheetq_done_fn done, void *arg)
{
	return sheetq_run(ctx, work, done, arg);
}

static uint64_t
mono_us(void *ctx)
{
	(void)ctx;
	return clock_mono_us();
}

/* ------------------------------------------------------------------ */
/* retention */

struct purge {
	size_t purged;
	int result;
	char reason[QUEUE_REASON_MAX];
	int days;
};

static void purge_timer(struct loop *l, void *arg);

static int
purge_work(struct queue *q, void *arg)
{
	struct purge *p = arg;
	struct queue_retention ret = { .finished_days = p->days, .draft_days = p->days };
	p->result = queue_purge(q, &ret, SHEETS_PURGE_CHUNK, &p->purged);
	if (p->result < 0)
		snprintf(p->reason, sizeof(p->reason), "%s", queue_last_error(q));
	return p->purged ? SHEETQ_WROTE : 0;
}

static void
purge_done(void *arg)
{
	struct purge *p = arg;
	if (p->result < 0)
		log_warn("queue: retention purge failed: %s", p->reason);
	else if (p->purged)
		log_info("queue: retention: %zu sheets older than %ld days purged", p->purged,
		         S.d->cfg->retention_days);
	/* a full chunk: more may be waiting; let other work in between */
	uint64_t next = p->result == 0 && p->purged == SHEETS_PURGE_CHUNK ? 0 : SHEETS_PURGE_EVERY_MS;
	free(p);
	if (S.sq && !S.d->stopping)
		S.purge_timer = loop_timer_add(S.d->loop, next, purge_timer, NULL);
}

static void
purge_timer(struct loop *l, void *arg)
{
	(void)l;
	(void)arg;
	S.purge_timer = 0;
	struct purge *p = calloc(1, sizeof(*p));
	if (p)
		p->days = (int)S.d->cfg->retention_days;
	if (!p || sheetq_run(S.sq, purge_work, purge_done, p) < 0)
		free(p);
}

/* ------------------------------------------------------------------ */
/* every second while there is something to do: the high-water mark's lazy
 * write after commits; a read-only queue (the disk was full at start)
 * tries to become writable again. An idle daemon has no tick: it is armed
 * at start and by each commit, and stops when a round finds nothing. */

struct tick {
	bool was_ro, now_ro, pending;
	int result;
	char reason[QUEUE_REASON_MAX];
};

static void tick_timer(struct loop *l, void *arg);

static int
tick_work(struct queue *q, void *arg)
{
	struct tick *t = arg;
	t->was_ro = queue_read_only(q);
	if (t->was_ro)
		t->result = queue_try_writable(q);
	else
		t->result = queue_hwm_flush(q);
	t->now_ro = queue_read_only(q);
	t->pending = t->now_ro || queue_hwm_pending(q);
	if (t->result < 0)
		snprintf(t->reason, sizeof(t->reason), "%s", queue_last_error(q));
	return t->was_ro && !t->now_ro ? SHEETQ_WROTE : 0;
}

static void
tick_arm(void *arg)
{
	(void)arg;
	if (!S.tick_timer && S.sq && !S.d->stopping)
		S.tick_timer = loop_timer_add(S.d->loop, SHEETS_TICK_MS, tick_timer, NULL);
}

static void
tick_done(void *arg)
{
	struct tick *t = arg;
	S.tick_busy = false;
	if (t->pending || t->result < 0)
		tick_arm(NULL);
	if (t->was_ro && !t->now_ro)
		log_notice("queue: space is back: the queue is writable again");
	else if (!t->was_ro && t->result < 0)
		log_warn("queue: high-water mark: %s", t->reason);
	free(t);
}

static void
tick_timer(struct loop *l, void *arg)
{
	(void)arg;
	S.tick_timer = 0;
	if (!S.sq || S.d->stopping)
		return;
	struct tick *t = S.tick_busy ? NULL : calloc(1, sizeof(*t));
	if (t) {
		S.tick_busy = true;
		if (sheetq_run(S.sq, tick_work, tick_done, t) < 0) {
			S.tick_busy = false;
			free(t);
			tick_arm(NULL);
		}
	} else {
		tick_arm(NULL);   /* a round still running: look again later */
	}
}

/* ------------------------------------------------------------------ */
/* module */

static void
stop_parts(void)
{
	sheetq_stop(S.sq); /* may finish a batch, whose next one gets ShuttingDown */
	S.sq = NULL;
	sheetcommit_free(S.sc);
	S.sc = NULL;
	sheetseal_stop(S.sealer);
	S.sealer = NULL;
}

struct sheetq *
sheets_queue(void)
{
	return S.sq;
}


int
sheets_init(struct daemon *d)
{
	char err[600];
	memset(&S, 0, sizeof(S));
	S.d = d;
	struct queue_opts o = {
		.dir = d->cfg->state_dir,
		.max_sheets = d->cfg->queue_max_sheets,
		.max_bytes = d->cfg->queue_max_bytes,
		.accept_new = accept_new,
		.allow_readonly = true,
		.defer_quick_check = true, /* on the queue thread, after READY */
	};
	uint64_t t0 = clock_mono_us();
	int r = sheetseal_start(d->loop, &S.sealer);
	if (r < 0) {
		log_err("queue: cannot start the signing worker: %s", strerror(-r));
		return r;
	}
	char notice[1100];
	bool ro = false;
	r = sheetq_start(d->loop, &o, &S.sq, err, sizeof(err));
	if (r < 0) {
		log_err("queue: cannot open the queue in %s: %s (%s)", d->cfg->state_dir, err,
		        queue_error_name(r));
		stop_parts();
		return r;
	}
	sheetq_open_notice(S.sq, notice, sizeof(notice), &ro);
	if (notice[0] && ro)
		log_warn("queue: %s", notice);
	else if (notice[0])
		log_notice("queue: %s", notice);
	struct sheetcommit_ops ops = { .run = run_on_queue, .now_us = mono_us, .ctx = S.sq };
	if (!(S.sc = sheetcommit_new(&ops, S.sealer))) {
		log_err("queue: out of memory");
		stop_parts();
		return -ENOMEM;
	}
	struct queue_stats st;
	sheetq_stats(S.sq, &st);
	log_notice("queue: open in %s: %llu sheets, %llu queued, opened in %llu ms", d->cfg->state_dir,
	           (unsigned long long)st.total,
	           (unsigned long long)(st.count[QUEUE_QUEUED] + st.count[QUEUE_SENDING]),
	           (unsigned long long)((clock_mono_us() - t0) / 1000u));
	if ((r = api_sheets_start(d, S.sq, S.sc)) < 0) {
		log_err("queue: cannot register its methods: %s", strerror(-r));
		api_sheets_stop();
		stop_parts();
		return r;
	}
	S.purge_timer = loop_timer_add(d->loop, SHEETS_PURGE_FIRST_MS, purge_timer, NULL);
	S.tick_timer = loop_timer_add(d->loop, SHEETS_TICK_MS, tick_timer, NULL);
	api_sheets_set_commit_hook(tick_arm, NULL);
	return 0;
}

void
sheets_fini(struct daemon *d)
{
	api_sheets_set_commit_hook(NULL, NULL);
	api_sheets_stop();
	if (S.purge_timer)
		loop_timer_cancel(d->loop, S.purge_timer);
	S.purge_timer = 0;
	if (S.tick_timer)
		loop_timer_cancel(d->loop, S.tick_timer);
	S.tick_timer = 0;
	stop_parts();
}
