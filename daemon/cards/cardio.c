/* Module "readers": the machine's inputs from drivers, session jobs and
 * time; see cardio.h.
 *
 * Threads: the drivers' watch threads only copy their event and
 * loop_post() it; session jobs run readers_session_run() on the worker,
 * whose done callback hands the session back. A session's progress
 * ("reading", the phone's code prompt) is posted with loop_post() too, not
 * as a job of the worker: a job would need an idle thread of the pool, and
 * start one more while every thread runs a session. Progress names its
 * session by id, so it may arrive after that session's end (it is then
 * ignored). Everything else is on the loop. At shutdown `up` goes false
 * first: driver events and progress already posted are then dropped, and
 * nothing re-arms the timer.
 */
#include "daemon/cards/cardio.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cards/api_cards.h"
#include "daemon/cards/opposition.h"
#include "daemon/cards/readers.h"
#include "daemon/core/daemon.h"
#include "daemon/core/events.h"
#include "daemon/core/worker.h"
#include "drivers/reader_qr.h"
#include "lib/clock.h"
#include "lib/log.h"

/* How long cardio_fini waits for sessions to end after their abort. */
#define CARDIO_STOP_WAIT_MS 1000u
/* Sessions at once: one per reader that holds a card being read. A
 * terminal has a few readers; a thread is started only when every started
 * one is busy, so the bound costs nothing until it is needed. */
#define CARDIO_THREADS WORKER_MAX_THREADS

static struct {
	struct daemon *d;
	struct loop *loop;    /* for the other threads: kept after fini */
	struct worker *w;
	struct readers_driver drivers[3]; /* pcsc, nfc, qr */
	size_t ndrivers;
	uint64_t timer;
	bool up;
	atomic_uint running;  /* session jobs submitted whose run() has not returned */
} C;

struct msg_event {
	struct readers_driver *drv;
	struct reader_event ev;
};

struct msg_progress {
	uint64_t id;
	bool code;
};

/* ------------------------------------------------------------------ */
/* the deadline timer */

static void on_timer(struct loop *l, void *arg);

/* After every input: one timer for the machine's earliest deadline. */
static void
rearm(void)
{
	if (C.timer)
		loop_timer_cancel(C.d->loop, C.timer);
	C.timer = 0;
	uint64_t next = readers_next_deadline();
	if (!C.up || !next)
		return;
	uint64_t now = loop_now_ms();
	C.timer = loop_timer_add(C.d->loop, next > now ? next - now : 0, on_timer, NULL);
}

static void
on_timer(struct loop *l, void *arg)
{
	(void)l;
	(void)arg;
	C.timer = 0;
	readers_tick(loop_now_ms());
	rearm();
}

/* ------------------------------------------------------------------ */
/* sessions */

/* Worker thread. */
static void
session_run(void *arg)
{
	readers_session_run(arg);
	atomic_fetch_sub(&C.running, 1u);
}

static void
session_done(void *arg)
{
	readers_session_done(arg, loop_now_ms());
	rearm();
}

static int
session_start(void *ctx, struct readers_session *s)
{
	(void)ctx;
	atomic_fetch_add(&C.running, 1u);
	int r = worker_submit(C.w, session_run, session_done, s);
	if (r < 0) {
		atomic_fetch_sub(&C.running, 1u);
		log_err("reader %s: cannot start its session: %s", s->reader, strerror(-r));
	}
	return r;
}

static void
on_progress(void *arg)
{
	struct msg_progress *m = arg;
	if (C.up) {
		readers_session_progress(m->id, m->code, loop_now_ms());
		rearm();
	}
	free(m);
}

/* Session thread (a worker's); never once the session was told to stop
 * (readers_session_run checks), so never after cardio_fini. */
static void
session_progress(void *ctx, uint64_t id, bool code)
{
	(void)ctx;
	struct msg_progress *m = malloc(sizeof(*m));
	if (!m)
		return;
	m->id = id;
	m->code = code;
	if (loop_post_owned(C.loop, on_progress, free, m) < 0)
		free(m);
}

/* ------------------------------------------------------------------ */
/* driver events */

static void
on_event(void *arg)
{
	struct msg_event *m = arg;
	if (C.up) {
		readers_driver_event(m->drv, &m->ev, loop_now_ms());
		rearm();
	}
	free(m);
}

/* A driver's watch thread. */
static void
on_driver_event(const struct reader_event *ev, void *arg)
{
	struct msg_event *m = malloc(sizeof(*m));
	if (!m) {
		log_err("readers: out of memory; %s event lost", ev->driver);
		return;
	}
	m->drv = arg;
	m->ev = *ev;
	if (loop_post_owned(C.loop, on_event, free, m) < 0)
		free(m);
}

/* Start one driver, or record why it is not running: not fatal, the
 * daemon still serves the queue, the API and the other driver. */
static void
driver_start(struct readers_driver *dv, const struct reader_params *p, const char *disabled)
{
	dv->state = READERS_DRV_DISABLED;
	if (disabled) {
		log_info("readers: %s off: %s", dv->ops->name, disabled);
		snprintf(dv->reason, sizeof(dv->reason), "%s", disabled);
		return;
	}
	if (!dv->ops->compiled_in) {
		const char *why = dv->ops->why ? dv->ops->why() : NULL;
		snprintf(dv->reason, sizeof(dv->reason), "%s", why ? why : "not compiled in");
		log_warn("readers: %s: %s", dv->ops->name, dv->reason);
		return;
	}
	dv->state = READERS_DRV_STARTING;
	int r = dv->ops->open(p, on_driver_event, dv, &dv->h);
	if (r < 0) {
		log_err("readers: cannot start the %s driver: %s", dv->ops->name, strerror(-r));
		dv->state = READERS_DRV_DOWN;
		snprintf(dv->reason, sizeof(dv->reason), "cannot start: %s", strerror(-r));
		dv->h = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* the module */

int
cardio_init(struct daemon *d, const struct card_reader_fn *card_reader)
{
	memset(&C, 0, sizeof(C));
	atomic_init(&C.running, 0u);
	C.d = d;
	C.loop = d->loop;
	C.drivers[0].ops = &reader_pcsc_ops;
	C.drivers[1].ops = &reader_nfc_ops;
	C.drivers[2].ops = &reader_qr_ops;
	C.ndrivers = 3;

	int r = api_cards_start(d, C.drivers, C.ndrivers);
	if (r < 0)
		return r;
	if ((r = worker_new(d->loop, "cards", CARDIO_THREADS, 0, &C.w)) < 0) {
		log_err("readers: cannot make the sessions' worker: %s", strerror(-r));
		return r;
	}
	struct readers_ops ops = {
		.start = session_start,
		.progress = session_progress,
		.report = api_cards_report,
		.time_now = events_time_now,
		.opposed = opposition_has,
	};
	struct readers_config cfg = {
		.session_timeout_ms = (unsigned)d->cfg->pcsc_session_timeout_ms,
		.code_timeout_s = (unsigned)d->cfg->code_timeout_s,
		.card_reader = card_reader,
	};
	readers_begin(&ops, &cfg);
	C.up = true;

	struct reader_params pp = { .backoff_max_ms = (unsigned)d->cfg->pcsc_backoff_max_ms };
	driver_start(&C.drivers[0], &pp, d->cfg->pcsc_enabled ? NULL : "disabled in the configuration");
	const struct config_list *nd = &d->cfg->nfc_devices;
	struct reader_params np = {
		.devices = (const char *const *)nd->v,
		.ndevices = nd->n,
		.backoff_max_ms = (unsigned)d->cfg->pcsc_backoff_max_ms,
		.poll_ms = (unsigned)d->cfg->nfc_poll_ms,
	};
	driver_start(&C.drivers[1], &np, nd->n ? NULL : "no device configured ([nfc] device)");
	/* the scanners, and PresentCode's readers (docs/digital-card.md part 2) */
	const struct config_list *sd = &d->cfg->scanner_devices, *sk = &d->cfg->scanner_keyboards;
	struct reader_params qp = {
		.devices = (const char *const *)sd->v,
		.ndevices = sd->n,
		.keyboards = (const char *const *)sk->v,
		.nkeyboards = sk->n,
		.keymap = d->cfg->scanner_keymap,
		.hold_ms = (unsigned)d->cfg->scanner_hold_s * 1000u,
		.backoff_max_ms = (unsigned)d->cfg->pcsc_backoff_max_ms,
	};
	driver_start(&C.drivers[2], &qp, d->cfg->qr_enabled ? NULL : "[digital] qr = false");
	return 0;
}

/* Wait until every session job has returned from its run(), at most
 * CARDIO_STOP_WAIT_MS. */
static bool
sessions_ended(void)
{
	uint64_t until = clock_mono_ms() + CARDIO_STOP_WAIT_MS;
	while (atomic_load(&C.running) > 0) {
		if (clock_mono_ms() >= until)
			return false;
		struct timespec ts = { 0, 5 * 1000000L };
		nanosleep(&ts, NULL);
	}
	return true;
}

void
cardio_fini(struct daemon *d)
{
	(void)d;
	if (!C.d)
		return;
	C.up = false;
	if (C.timer)
		loop_timer_cancel(C.d->loop, C.timer);
	C.timer = 0;
	readers_stopping();
	for (size_t i = 0; i < C.ndrivers; i++) {
		if (C.drivers[i].h)
			C.drivers[i].ops->close(C.drivers[i].h);
		C.drivers[i].h = NULL;
	}
	/* the worker drains: each session's done callback then only frees
	 * it. A session that will not end (a driver that could only flag its
	 * card) would hold worker_free for good: it is left behind with its
	 * worker, as readers_end() logs. */
	if (sessions_ended())
		worker_free(C.w);
	C.w = NULL;
	readers_end();
	C.d = NULL;
}
