/* The signer object: a one-thread worker (daemon/core/worker.h) that runs
 * every backend call, and the loop-side state (status, idle logout,
 * presence polling). See signer.h; the backends are drivers/signer_*.c.
 *
 * Threads: the loop thread owns struct signer's loop-side fields (status,
 * timers, login_pending); the worker owns the backend context and its own
 * status copy (wst). They meet only in jobs: run() on the worker, done()
 * on the loop. One exception: a backend with sign_any_thread (the file
 * key) signs on the caller's thread under ctx_lock's read side, and every
 * job and the close hold its write side, so no login, logout or close runs
 * meanwhile (and a signature costs no thread hop). signer_free() frees the
 * worker first: every job still queued then runs without touching the
 * backend (quit) and its done() only frees it, so no callback reaches a
 * freed signer.
 *
 * What must stay true: a PIN handed to signer_login() is freed (wiped) on
 * every path, and a failed login is never retried here — only a new
 * SubmitPin from a person starts another one.
 */
#include "daemon/pin/signer.h"

#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/worker.h"
#include "lib/clock.h"
#include "lib/log.h"

/* How often the token's presence is checked (while a backend can poll).
 * A C_GetSlotInfo is cheap (OpenSC: one SCardGetStatusChange with a zero
 * timeout); SoftHSM has no C_WaitForSlotEvent to block on instead. */
#define SIGNER_POLL_MS 2000u

static const char selftest_prefix[] = "vitaled signer self-test"; /* + NUL + 32 random bytes */

/* ------------------------------------------------------------------ */
/* jobs */

enum job_type { JOB_OPEN, JOB_LOGIN, JOB_LOGOUT, JOB_POLL, JOB_SIGN, JOB_SELFTEST, JOB_STATUS };

struct job {
	enum job_type type;
	struct signer *s;
	void *arg;
	int result;
	struct signer_status st; /* the worker's status after the job */
	bool status_changed;
	bool skipped;            /* signer_free came first: nothing ran */
	/* login */
	struct secmem_pin *pin;
	signer_login_fn login_done;
	/* logout */
	char why[64];
	/* sign */
	int alg;
	const uint8_t *tbs;
	uint8_t *tbs_copy;
	size_t tbs_len;
	uint8_t sig[SIGNER_SIG_MAX];
	size_t sig_len;
	signer_sign_fn sign_done;
	bool sync;
	/* selftest */
	struct signer_selftest *t;
	signer_selftest_fn selftest_done;
	/* the certificate chain, when the backend's changed during the job */
	bool chain_changed;
	struct signer_chain chain;
};

struct signer {
	struct loop *loop;
	const struct config *cfg;
	const struct signer_ops *ops;
	signer_status_fn status_fn;
	void *status_arg;
	struct worker *w;

	/* loop side */
	struct signer_status status;
	bool login_pending;
	bool poll_queued;
	bool poll_again;        /* the watch fired while a poll was queued */
	int watch_fd;           /* the backend's watch_fd on the loop, or -1 */
	bool stopping;          /* signer_free began: done callbacks only free */
	uint64_t poll_timer, idle_timer;
	struct signer_chain chain; /* the backend's, as last read */
	bool chain_known;
	signer_chain_fn chain_fn;
	void *chain_arg;

	/* shared */
	/* ctx and wst: written on the worker under the write lock; read by a
	 * sign_any_thread backend's signature on another thread under the read lock */
	pthread_rwlock_t ctx_lock;
	atomic_bool quit;       /* jobs not yet run skip the backend */
	atomic_uint_fast64_t last_use_ms;

	/* worker side */
	void *ctx;
	struct signer_status wst;
	struct signer_status wst_posted;
	struct signer_chain wchain;
	bool wchain_known;
};

static void schedule_poll(struct signer *s);
static void update_idle_timer(struct signer *s);
static void watch_start(struct signer *s);

static void
job_free(struct job *j)
{
	if (!j)
		return;
	secmem_pin_free(j->pin);
	free(j->tbs_copy);
	if (j->t) {
		free(j->t->pub);
		free(j->t);
	}
	secmem_wipe(j->sig, sizeof(j->sig));
	signer_chain_clear(&j->chain);
	free(j);
}

/* Loop side: apply a status the worker reported. */
static void
apply_status(struct signer *s, const struct signer_status *st)
{
	enum signer_state old = s->status.state;
	bool was_in = s->status.logged_in;
	s->status = *st;
	if (old != st->state || was_in != st->logged_in)
		log_info("signer: %s -> %s%s%s%s", signer_state_name(old), signer_state_name(st->state),
		         st->logged_in ? " (logged in)" : "", st->reason[0] ? ": " : "", st->reason);
	update_idle_timer(s);
	if (s->status_fn)
		s->status_fn(s, &s->status, s->status_arg);
}

/* Loop: a job's done(). */
static void
job_done(void *arg)
{
	struct job *j = arg;
	struct signer *s = j->s;
	if (s->stopping || j->skipped) {
		job_free(j); /* pending callbacks are not called once signer_free began */
		return;
	}
	if (j->type == JOB_POLL)
		s->poll_queued = false;
	if (j->type == JOB_OPEN)
		watch_start(s);
	if (j->type == JOB_LOGIN)
		s->login_pending = false;
	if (j->chain_changed) {
		signer_chain_clear(&s->chain);
		s->chain = j->chain; /* moved */
		memset(&j->chain, 0, sizeof(j->chain));
		s->chain_known = true;
		log_notice("signer: %s", s->chain.n ? "certificate read from the signer"
		                                    : "the signer has no certificate for its key");
	}
	if (j->status_changed || j->type == JOB_LOGIN || j->type == JOB_OPEN)
		apply_status(s, &j->st);
	if (j->chain_changed && s->chain_fn)
		s->chain_fn(s, &s->chain, s->chain_arg);
	switch (j->type) {
	case JOB_LOGIN:
		if (j->login_done)
			j->login_done(j->result, &s->status, j->arg);
		break;
	case JOB_SIGN:
		if (j->sign_done)
			j->sign_done(j->result, j->result == 0 ? j->sig : NULL, j->result == 0 ? j->sig_len : 0,
			             j->arg);
		break;
	case JOB_SELFTEST:
		if (j->selftest_done)
			j->selftest_done(j->t, j->arg);
		break;
	default:
		break;
	}
	if (j->type == JOB_OPEN || j->type == JOB_POLL)
		schedule_poll(s);
	job_free(j);
}

/* Worker: a status-only job (a sync sign that found the token gone). */
static void
post_status(struct signer *s)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->type = JOB_STATUS; /* carries a status, calls nothing */
	j->s = s;
	j->st = s->wst;
	j->status_changed = true;
	s->wst_posted = s->wst;
	if (worker_submit(s->w, NULL, job_done, j) < 0)
		job_free(j);
}

static bool
status_differs(const struct signer_status *a, const struct signer_status *b)
{
	return a->state != b->state || a->logged_in != b->logged_in || a->pinpad != b->pinpad ||
	       a->tries_left != b->tries_left || a->count_low != b->count_low ||
	       a->cose_alg != b->cose_alg || strcmp(a->who, b->who) || strcmp(a->reason, b->reason) ||
	       strcmp(a->token, b->token);
}

static void
run_selftest(struct signer *s, struct job *j)
{
	struct signer_selftest *t = j->t;
	struct signer_status *st = &s->wst;
	t->cose_alg = st->cose_alg;
	memcpy(t->tbs, selftest_prefix, sizeof(selftest_prefix)); /* with its NUL */
	if (RAND_bytes(t->tbs + sizeof(selftest_prefix), 32) != 1) {
		t->result = -EIO;
		return;
	}
	t->tbs_len = sizeof(selftest_prefix) + 32;
	if (!s->ctx || !st->logged_in) {
		t->result = s->ctx ? SIGNER_E_LOGIN_NEEDED : SIGNER_E_NO_TOKEN;
		return;
	}
	uint64_t a = clock_mono_us();
	for (unsigned i = 0; i < t->rounds; i++) {
		t->sig_len = sizeof(t->sig);
		t->result = s->ops->sign(s->ctx, st, st->cose_alg, t->tbs, t->tbs_len, t->sig, &t->sig_len);
		if (t->result < 0)
			return;
	}
	t->elapsed_us = clock_mono_us() - a;
	atomic_store(&s->last_use_ms, clock_mono_ms());
	if (s->ops->public_key(s->ctx, &t->pub, &t->pub_len) == 0)
		t->verified = signer_verify(t->cose_alg, t->pub, t->pub_len, t->tbs, t->tbs_len, t->sig,
		                            t->sig_len) == 0;
}

/* Worker: read the key's certificate chain after an open, a login or a
 * poll; a change goes to the loop with the job. Unreadable now (no token):
 * the last chain stands. */
static void
read_chain(struct signer *s, struct job *j)
{
	struct signer_chain c;
	memset(&c, 0, sizeof(c));
	if (!s->ctx || !s->ops->certificate)
		return;
	int r = s->ops->certificate(s->ctx, &c);
	if (r < 0 && r != -ENOENT)
		return;
	if (r < 0)
		signer_chain_clear(&c);
	if (s->wchain_known && signer_chain_equal(&c, &s->wchain)) {
		signer_chain_clear(&c);
		return;
	}
	if (signer_chain_copy(&j->chain, &c) < 0) {
		signer_chain_clear(&c);
		return; /* read again at the next poll */
	}
	signer_chain_clear(&s->wchain);
	s->wchain = c;
	s->wchain_known = true;
	j->chain_changed = true;
}

static void
run_job(struct signer *s, struct job *j)
{
	const struct signer_ops *o = s->ops;
	switch (j->type) {
	case JOB_OPEN:
		j->result = o->open(s->cfg, &s->ctx, &s->wst);
		if (j->result < 0) {
			s->wst.state = SIGNER_ERROR;
			if (!s->wst.reason[0])
				snprintf(s->wst.reason, sizeof(s->wst.reason), "cannot open the %s backend: %s",
				         o->name, strerror(-j->result));
			s->ctx = NULL;
		}
		break;
	case JOB_LOGIN:
		if (!s->ctx)
			j->result = s->wst.state == SIGNER_DISABLED ? SIGNER_E_NOT_EXPECTED : SIGNER_E_NO_TOKEN;
		else
			j->result = o->login(s->ctx, j->pin, &s->wst);
		/* the PIN is gone from here on, whatever happened */
		secmem_pin_free(j->pin);
		j->pin = NULL;
		if (j->result == 0)
			atomic_store(&s->last_use_ms, clock_mono_ms());
		break;
	case JOB_LOGOUT:
		if (s->ctx && s->wst.logged_in)
			j->result = o->logout(s->ctx, &s->wst);
		break;
	case JOB_POLL:
		if (s->ctx && o->poll)
			j->result = o->poll(s->ctx, &s->wst);
		break;
	case JOB_SIGN:
		j->sig_len = sizeof(j->sig);
		if (!s->ctx)
			j->result = SIGNER_E_NO_TOKEN;
		else
			j->result = o->sign(s->ctx, &s->wst, j->alg, j->tbs, j->tbs_len, j->sig, &j->sig_len);
		if (j->result == 0)
			atomic_store(&s->last_use_ms, clock_mono_ms());
		else
			j->sig_len = 0;
		break;
	case JOB_SELFTEST:
		run_selftest(s, j);
		j->result = j->t->result;
		break;
	case JOB_STATUS:
		break;
	}
	if (!j->sync && (j->type == JOB_OPEN || j->type == JOB_POLL ||
	                 (j->type == JOB_LOGIN && j->result == 0)))
		read_chain(s, j);
	j->st = s->wst;
	j->status_changed = status_differs(&s->wst, &s->wst_posted);
	if (j->sync) {
		if (j->status_changed)
			post_status(s);
	} else {
		s->wst_posted = s->wst;
	}
}

/* Overwrite the worker's stack below the job's frame. A login passes
 * the PIN to code we do not control (a PKCS#11 module, OpenSSL's PEM
 * decoder), and some of it copies the PIN into stack buffers that it does
 * not clear: OpenSSL 3.0's PKCS#8 decoder keeps the passphrase in a 1 KiB
 * local array, found there by the gcore canary test; OpenSC builds VERIFY
 * APDUs in stack buffers too. The stack is private
 * to this thread and reused, so wiping the part the login used is enough. */
/* OpenSC's PC/SC transmit alone keeps two 64 KiB APDU buffers on the
 * stack: scrub well past that, on a stack of a known size. */
#define SIGNER_STACK_SCRUB (256u * 1024u)
#define SIGNER_STACK_KIB 2048u

__attribute__((noinline)) static void
stack_scrub(void)
{
	unsigned char buf[SIGNER_STACK_SCRUB];
	explicit_bzero(buf, sizeof(buf));
	__asm__ volatile("" : : "r"(buf) : "memory");
}

/* Worker: a job's run(). */
static void
job_run(void *arg)
{
	struct job *j = arg;
	struct signer *s = j->s;
	if (atomic_load(&s->quit)) {
		/* stopping: queued logins are dropped (their PINs are wiped by
		 * job_free); a waiting signer_sign gets -ESHUTDOWN */
		j->skipped = true;
		j->result = -ESHUTDOWN;
		secmem_pin_free(j->pin);
		j->pin = NULL;
		return;
	}
	bool secret = j->type == JOB_LOGIN;
	pthread_rwlock_wrlock(&s->ctx_lock);
	run_job(s, j);
	pthread_rwlock_unlock(&s->ctx_lock);
	if (secret)
		stack_scrub();
}

/* Worker (or the loop once the worker is gone): log out and close. */
static void
close_run(void *arg)
{
	struct signer *s = arg;
	pthread_rwlock_wrlock(&s->ctx_lock);
	if (s->ctx) {
		if (s->wst.logged_in) {
			s->ops->logout(s->ctx, &s->wst);
			log_info("signer: logged out (stopping)");
		}
		s->ops->close(s->ctx);
		s->ctx = NULL;
	}
	pthread_rwlock_unlock(&s->ctx_lock);
}

static int
enqueue(struct signer *s, struct job *j)
{
	j->s = s;
	return worker_submit(s->w, job_run, job_done, j);
}

/* ------------------------------------------------------------------ */
/* loop side */

static void
poll_cb(struct loop *l, void *arg)
{
	struct signer *s = arg;
	s->poll_timer = 0;
	if (s->poll_queued || s->stopping)
		return;
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->type = JOB_POLL;
	if (enqueue(s, j) < 0) {
		free(j);
		return;
	}
	s->poll_queued = true;
}

/* The backend's watch descriptor said something changed: poll now (or
 * again right after the poll already queued, which may have looked too
 * early). */
static void
watch_cb(struct loop *l, int fd, short revents, void *arg)
{
	struct signer *s = arg;
	(void)fd;
	(void)revents;
	if (!s->ops->watch_read(s->ctx))
		return;
	if (s->poll_queued) {
		s->poll_again = true;
		return;
	}
	if (s->poll_timer) {
		loop_timer_cancel(l, s->poll_timer);
		s->poll_timer = 0;
	}
	poll_cb(l, s);
}

/* After the open (loop thread; the worker set ctx before this job's done):
 * a backend that can say when to poll replaces the 2 s timer. */
static void
watch_start(struct signer *s)
{
	int fd;
	if (s->watch_fd >= 0 || !s->ctx || !s->ops->poll || !s->ops->watch_fd || !s->ops->watch_read)
		return;
	if ((fd = s->ops->watch_fd(s->ctx)) < 0)
		return;
	if (loop_add_fd(s->loop, fd, POLLIN, watch_cb, s) == 0)
		s->watch_fd = fd;
}

static void
schedule_poll(struct signer *s)
{
	if (s->poll_again && !s->poll_queued && !s->poll_timer) {
		s->poll_again = false;
		poll_cb(s->loop, s);
		return;
	}
	if (s->watch_fd >= 0)
		return; /* the watch says when */
	if (!s->ops->poll || s->poll_timer || s->poll_queued)
		return;
	switch (s->status.state) {
	case SIGNER_NO_TOKEN:
	case SIGNER_LOCKED:
	case SIGNER_READY:
	case SIGNER_BLOCKED:
		s->poll_timer = loop_timer_add(s->loop, SIGNER_POLL_MS, poll_cb, s);
		break;
	default:
		break;
	}
}

uint64_t
signer_idle_next(const struct signer_status *st, uint64_t limit_ms, uint64_t idle_ms)
{
	if (!st->logged_in || !st->needs_pin || limit_ms == 0)
		return SIGNER_IDLE_NONE;
	return idle_ms >= limit_ms ? 0 : limit_ms - idle_ms;
}

static void
idle_cb(struct loop *l, void *arg)
{
	struct signer *s = arg;
	s->idle_timer = 0;
	uint64_t limit = (uint64_t)s->cfg->pin_idle_timeout_s * 1000u;
	uint64_t next = signer_idle_next(&s->status, limit, signer_idle_ms(s));
	if (next == SIGNER_IDLE_NONE)
		return;
	if (next == 0) {
		char why[64];
		snprintf(why, sizeof(why), "idle for %ld s", s->cfg->pin_idle_timeout_s);
		signer_logout(s, why);
		return;
	}
	s->idle_timer = loop_timer_add(s->loop, next, idle_cb, s);
}

static void
update_idle_timer(struct signer *s)
{
	uint64_t limit = (uint64_t)s->cfg->pin_idle_timeout_s * 1000u;
	uint64_t next = signer_idle_next(&s->status, limit, signer_idle_ms(s));
	if (next == SIGNER_IDLE_NONE && s->idle_timer) {
		loop_timer_cancel(s->loop, s->idle_timer);
		s->idle_timer = 0;
	} else if (next != SIGNER_IDLE_NONE && !s->idle_timer) {
		s->idle_timer = loop_timer_add(s->loop, next, idle_cb, s);
	}
}

static void
signer_release(struct signer *s)
{
	signer_chain_clear(&s->chain);
	signer_chain_clear(&s->wchain);
	pthread_rwlock_destroy(&s->ctx_lock);
	free(s);
}

int
signer_new(struct loop *l, const struct config *c, signer_status_fn fn, void *arg,
           struct signer **out)
{
	*out = NULL;
	const struct signer_ops *ops = signer_backend_find(c->signer_backend);
	if (!ops)
		return -ENOENT;
	if (!ops->compiled_in)
		return -ENOTSUP;
	struct signer *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->cfg = c;
	s->ops = ops;
	s->status_fn = fn;
	s->status_arg = arg;
	s->watch_fd = -1;
	s->status.state = SIGNER_STARTING;
	s->status.tries_left = -1;
	s->wst = s->status;
	s->wst_posted = s->status;
	atomic_init(&s->last_use_ms, clock_mono_ms());
	atomic_init(&s->quit, false);
	/* writer first: a stream of signatures must not hold off a logout */
	pthread_rwlockattr_t rwa;
	pthread_rwlockattr_init(&rwa);
	pthread_rwlockattr_setkind_np(&rwa, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->ctx_lock, &rwa);
	pthread_rwlockattr_destroy(&rwa);
	int r = worker_new(l, "signer", 1, SIGNER_STACK_KIB, &s->w);
	if (r < 0) {
		signer_release(s);
		return r;
	}
	struct job *j = calloc(1, sizeof(*j));
	if (!j || (j->type = JOB_OPEN, enqueue(s, j)) < 0) {
		free(j);
		signer_free(s);
		return -ENOMEM;
	}
	*out = s;
	return 0;
}

void
signer_free(struct signer *s)
{
	if (!s)
		return;
	if (s->poll_timer)
		loop_timer_cancel(s->loop, s->poll_timer);
	if (s->idle_timer)
		loop_timer_cancel(s->loop, s->idle_timer);
	s->poll_timer = s->idle_timer = 0;
	if (s->watch_fd >= 0)
		loop_del_fd(s->loop, s->watch_fd); /* the backend's close closes it */
	s->watch_fd = -1;
	s->stopping = true;
	atomic_store(&s->quit, true);
	/* the close runs on the worker after what is queued (which is now
	 * skipped); if it cannot be queued it runs here once the worker is gone */
	bool queued = worker_submit(s->w, close_run, NULL, s) == 0;
	worker_free(s->w);
	s->w = NULL;
	if (!queued)
		close_run(s);
	signer_release(s);
}

const struct signer_status *
signer_status(const struct signer *s)
{
	return &s->status;
}

const struct signer_chain *
signer_chain(const struct signer *s)
{
	return s->chain_known ? &s->chain : NULL;
}

void
signer_set_chain_fn(struct signer *s, signer_chain_fn fn, void *arg)
{
	s->chain_fn = fn;
	s->chain_arg = arg;
}

const char *
signer_backend_name(const struct signer *s)
{
	return s->ops->name;
}

uint64_t
signer_idle_ms(struct signer *s)
{
	uint64_t last = atomic_load(&s->last_use_ms);
	uint64_t now = clock_mono_ms();
	return now > last ? now - last : 0;
}

int
signer_login(struct signer *s, struct secmem_pin *pin, signer_login_fn done, void *arg)
{
	if (s->login_pending) {
		secmem_pin_free(pin);
		return SIGNER_E_BUSY;
	}
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		secmem_pin_free(pin);
		return -ENOMEM;
	}
	j->type = JOB_LOGIN;
	j->pin = pin;
	j->login_done = done;
	j->arg = arg;
	int r = enqueue(s, j);
	if (r < 0) {
		job_free(j);
		return r;
	}
	s->login_pending = true;
	return 0;
}

int
signer_logout(struct signer *s, const char *why)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->type = JOB_LOGOUT;
	snprintf(j->why, sizeof(j->why), "%s", why ? why : "asked");
	if (s->status.logged_in)
		log_notice("signer: logging out (%s)", j->why);
	int r = enqueue(s, j);
	if (r < 0)
		job_free(j);
	return r;
}

/* signer_sign for a sign_any_thread backend: on this thread, under the read
 * lock (no login, logout or close can run meanwhile). The backend does not
 * change the status when it signs, so nothing is posted. */
static int
sign_here(struct signer *s, int cose_alg, const uint8_t *tbs, size_t len, uint8_t *sig,
          size_t cap, size_t *siglen)
{
	uint8_t buf[SIGNER_SIG_MAX];
	size_t bl = sizeof(buf);
	int r;
	pthread_rwlock_rdlock(&s->ctx_lock);
	if (!s->ctx) {
		r = SIGNER_E_NO_TOKEN;
	} else {
		struct signer_status st = s->wst;
		r = s->ops->sign(s->ctx, &st, cose_alg, tbs, len, buf, &bl);
	}
	pthread_rwlock_unlock(&s->ctx_lock);
	if (r == 0) {
		atomic_store(&s->last_use_ms, clock_mono_ms());
		if (bl > cap) {
			r = -ENOBUFS;
		} else {
			memcpy(sig, buf, bl);
			*siglen = bl;
		}
	}
	secmem_wipe(buf, sizeof(buf));
	return r;
}

int
signer_sign(void *ctx, int cose_alg, const uint8_t *tbs, size_t len, uint8_t *sig,
            size_t *siglen)
{
	struct signer *s = ctx;
	size_t cap = *siglen;
	*siglen = 0;
	if (!s || (!tbs && len))
		return -EINVAL;
	bool on_worker = worker_on_thread(s->w);
	if (s->ops->sign_any_thread && !on_worker)
		return sign_here(s, cose_alg, tbs, len, sig, cap, siglen);
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->type = JOB_SIGN;
	j->s = s;
	j->sync = true;
	j->alg = cose_alg;
	j->tbs = tbs;
	j->tbs_len = len;
	int r;
	if (on_worker) {
		/* called from a backend callback on the worker itself: no queue */
		run_job(s, j);
	} else if ((r = worker_run_sync(s->w, job_run, j)) < 0) {
		free(j);
		return r;
	}
	r = j->result;
	if (r == 0) {
		if (j->sig_len > cap) {
			r = -ENOBUFS;
		} else {
			memcpy(sig, j->sig, j->sig_len);
			*siglen = j->sig_len;
		}
	}
	job_free(j);
	return r;
}

int
signer_sign_async(struct signer *s, int cose_alg, const uint8_t *tbs, size_t len,
                  signer_sign_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->type = JOB_SIGN;
	j->alg = cose_alg;
	j->tbs_copy = malloc(len ? len : 1);
	if (!j->tbs_copy) {
		free(j);
		return -ENOMEM;
	}
	if (len)
		memcpy(j->tbs_copy, tbs, len);
	j->tbs = j->tbs_copy;
	j->tbs_len = len;
	j->sign_done = done;
	j->arg = arg;
	int r = enqueue(s, j);
	if (r < 0)
		job_free(j);
	return r;
}

int
signer_selftest(struct signer *s, unsigned rounds, signer_selftest_fn done, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->t = calloc(1, sizeof(*j->t));
	if (!j->t) {
		free(j);
		return -ENOMEM;
	}
	j->type = JOB_SELFTEST;
	j->t->rounds = rounds ? rounds : 1;
	j->selftest_done = done;
	j->arg = arg;
	int r = enqueue(s, j);
	if (r < 0)
		job_free(j);
	return r;
}
