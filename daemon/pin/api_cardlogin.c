/* The card PIN step as a daemon module: the readers' card hook, the card
 * sessions on a worker, the pinflow target "card:<reader>", UnblockPin,
 * the events and the "card_pins" part of GetStatus. The rules are
 * cardlogin.c's (the state machine); see cardlogin.h.
 *
 * Sessions ("jobs") run on a worker (daemon/core/worker.h) with one thread
 * per possible card: a job connects to the card, checks that the reader
 * still holds the card that was read (same ATR), runs one cardpin.c
 * operation, disconnects and wipes the PIN; its done() applies the result
 * on the loop. A deadline timer aborts a session that does not end (the
 * driver's abort()). At fini, running sessions are aborted and the worker
 * drained: a VERIFY still waiting is answered ShuttingDown.
 *
 * What must stay true: a PIN (or unblock code) is only ever in a struct
 * secmem_pin owned by exactly one job, and in the locked APDU buffer of
 * cardpin.c; nothing here logs or copies it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cards/cards.h"
#include "daemon/cards/cards_profile.h"
#include "daemon/cards/readers.h"
#include "daemon/core/events.h"
#include "daemon/core/metrics.h"
#include "daemon/core/worker.h"
#include "daemon/pin/cardlogin.h"
#include "daemon/pin/cardpin.h"
#include "daemon/pin/pinflow.h"
#include "lib/clock.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "lib/secmem.h"

#define ABORT_REPEAT_MS 1000u
/* A VERIFY that failed in transport (vpcd answers an empty response when
 * the card vanished mid-exchange, a real reader gives an error before
 * pcscd notices the removal) is answered only after this long: if the
 * card's removal comes meanwhile, the caller gets NoCard instead of a
 * transmission error. pcscd polls presence every 400 ms. */
#define LATE_REPLY_MS 900u

enum job_kind { JOB_PROBE, JOB_VERIFY, JOB_PINPAD, JOB_UNBLOCK };

struct job {
	struct job *next;
	enum job_kind kind;
	/* inputs: set before the job is submitted, read-only for it */
	const struct reader_ops *ops;
	struct reader_driver *drv;
	char reader[READER_NAME_MAX];
	char atr_hex[READER_ATR_MAX * 2 + 1];
	struct pin_params params;
	uint32_t verify_direct;     /* keypad control code, 0: none */
	struct secmem_pin *pin;     /* VERIFY / new PIN: the job wipes it */
	struct secmem_pin *puk;     /* UNBLOCK: the job wipes it */
	/* the loop's side */
	struct cardlogin_entry *e;
	unsigned gen;
	pinflow_done_fn done;       /* VERIFY, PINPAD */
	void *done_arg;
	uint64_t timer;
	unsigned budget_ms;
	bool timed_out;
	/* outputs: the worker's until done() */
	int rc;
	struct pin_result res;
	struct pin_result query;    /* UNBLOCK: the counter after it */
	uint32_t found_direct;      /* PROBE: FEATURE_VERIFY_PIN_DIRECT's code, 0 none */
};

struct late {
	struct late *next;
	uint64_t timer;
	pinflow_done_fn done;
	void *done_arg;
	int result;
	struct cardlogin_entry *e;
	unsigned gen;
};

static struct {
	struct daemon *d;
	struct cardlogin cl;
	struct worker *w;
	struct job *jobs;   /* submitted, done() not yet run */
	struct late *lates; /* transport failures waiting for LATE_REPLY_MS */
	unsigned timeout_ms;
	bool stopping;
} CL;

static const struct pinflow_target_ops card_target_ops;

/* ------------------------------------------------------------------ */
/* events */

static json_t *
ev_base(const struct cardlogin_entry *e)
{
	return json_pack("{s:s,s:s,s:s}", "target", e->target, "reader", e->reader, "profile",
	                 e->profile);
}

static void
publish_required(const struct cardlogin_entry *e)
{
	json_t *f = ev_base(e);
	json_object_set_new(f, "tries_left", e->tries_left >= 0 ? json_integer(e->tries_left)
	                                                        : json_null());
	json_object_set_new(f, "pinpad", json_boolean(e->pinpad));
	events_publish("PinRequested", f);
	if (e->tries_left >= 0)
		log_notice("PIN required for %s (%s, %d tries left)%s", e->target, e->profile,
		           e->tries_left, e->pinpad ? ": type it on the reader's keypad" : "");
	else
		log_notice("PIN required for %s (%s)%s", e->target, e->profile,
		           e->pinpad ? ": type it on the reader's keypad" : "");
}

static void
publish_blocked(const struct cardlogin_entry *e)
{
	events_publish("PinBlocked", ev_base(e));
	log_warn("pin: the PIN of the %s card in %s is blocked; vitaled will not try it again%s",
	         e->profile, e->reader,
	         e->params.puk_len ? " (UnblockPin with the unblock code, or the card's own tools)"
	                           : " (unblock it with the card's own tools)");
}

static void
publish(struct cardlogin_entry *e, enum cardlogin_event ev)
{
	switch (ev) {
	case CARDLOGIN_EV_REQUIRED: publish_required(e); break;
	case CARDLOGIN_EV_BLOCKED: publish_blocked(e); break;
	case CARDLOGIN_EV_VERIFIED:
		events_time_now(e->verified_at, sizeof(e->verified_at));
		events_publish("PinVerified", ev_base(e));
		break;
	case CARDLOGIN_EV_NONE:
	case CARDLOGIN_EV_LATER:
		break;
	}
}

/* The card left (or another took its place): end the target. */
static void
entry_clear(struct cardlogin_entry *e, const char *why)
{
	pinflow_target_remove(e->target); /* a SubmitPin waiting gets NoCard */
	struct vl_call *call = e->unblock_waiter;
	if (call) {
		vl_call_set_cancel(call, NULL, NULL);
		vl_reply_error(call, VL_ERR("NoCard"), json_pack("{s:s}", "reader", e->reader));
	}
	json_t *f = ev_base(e);
	json_object_set_new(f, "reason", json_string(why));
	events_publish("PinCleared", f);
	bool verified = cardlogin_card_out(e);
	log_info("pin: %s ended (%s)%s", e->target, why, verified ? "; no longer verified" : "");
}

/* ------------------------------------------------------------------ */
/* jobs (worker thread) */

static void
job_run(void *arg)
{
	struct job *j = arg;
	struct reader_card *card = NULL;
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len = sizeof(atr);
	char hex[READER_ATR_MAX * 2 + 1];
	int r = j->ops->connect(j->drv, j->reader, &card, atr, &atr_len);
	if (r < 0)
		goto out;
	hex_encode(atr, atr_len, true, hex, sizeof(hex));
	if (strcmp(hex, j->atr_hex) != 0) {
		r = -ENODEV; /* another card went in meanwhile: not the one read */
		goto out;
	}
	switch (j->kind) {
	case JOB_PROBE: {
		struct pin_features f;
		if (cardpin_features(j->ops, card, &f) == 0)
			j->found_direct = pin_feature_code(&f, PIN_FEATURE_VERIFY_PIN_DIRECT);
		r = cardpin_query(j->ops, card, &j->params, &j->res);
		break;
	}
	case JOB_VERIFY:
		r = cardpin_verify(j->ops, card, &j->params, j->pin, &j->res);
		break;
	case JOB_PINPAD: {
		struct pin_features f;
		memset(&f, 0, sizeof(f));
		f.code[PIN_FEATURE_VERIFY_PIN_DIRECT] = j->verify_direct;
		f.count = 1;
		r = cardpin_verify_pinpad(j->ops, card, &j->params, &pin_pinpad_default, &f, &j->res);
		break;
	}
	case JOB_UNBLOCK:
		r = cardpin_unblock(j->ops, card, &j->params, j->puk, j->pin, &j->res);
		if (r == 0 && j->res.status == PIN_ST_OK && cardpin_query(j->ops, card, &j->params,
		                                                            &j->query) < 0)
			j->query.tries_left = -1;
		break;
	}
out:
	if (card)
		j->ops->disconnect(card);
	/* the PIN and the unblock code go now, whatever happened */
	secmem_pin_free(j->pin);
	j->pin = NULL;
	secmem_pin_free(j->puk);
	j->puk = NULL;
	j->rc = r;
}

/* ------------------------------------------------------------------ */
/* jobs (loop thread) */

static void job_done(void *arg);

static void
job_deadline(struct loop *l, void *arg)
{
	struct job *j = arg;
	j->timer = 0;
	bool released = j->ops->abort ? j->ops->abort(j->drv, j->reader) : false;
	if (!j->timed_out)
		log_warn("pin: the card in %s did not answer within %u ms; session aborted%s", j->reader,
		         j->budget_ms, released ? "" : " (the driver could not release it yet)");
	j->timed_out = true;
	j->timer = loop_timer_add(l, ABORT_REPEAT_MS, job_deadline, j);
}

static void
job_free(struct job *j)
{
	secmem_pin_free(j->pin);
	secmem_pin_free(j->puk);
	free(j);
}

/* Start kind on e's card; pin/puk are taken (wiped on every path).
 * Returns 0 or a negative errno (nothing started, pin/puk freed). */
static int
job_start(struct cardlogin_entry *e, enum job_kind kind, struct secmem_pin *pin,
          struct secmem_pin *puk, pinflow_done_fn done, void *done_arg)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		secmem_pin_free(pin);
		secmem_pin_free(puk);
		return -ENOMEM;
	}
	j->kind = kind;
	j->ops = e->ops;
	j->drv = e->drv;
	snprintf(j->reader, sizeof(j->reader), "%s", e->reader);
	snprintf(j->atr_hex, sizeof(j->atr_hex), "%s", e->atr_hex);
	j->params = e->params;
	j->verify_direct = e->verify_direct;
	j->pin = pin;
	j->puk = puk;
	j->e = e;
	j->gen = e->gen;
	j->done = done;
	j->done_arg = done_arg;
	j->res.tries_left = -1;
	j->query.tries_left = -1;
	j->budget_ms = CL.timeout_ms;
	if (kind == JOB_PINPAD) /* a person types: the keypad's own time-out, then ours */
		j->budget_ms += (pin_pinpad_default.timeout_s ? pin_pinpad_default.timeout_s : 60u) * 1000u;
	int err = worker_submit(CL.w, job_run, job_done, j);
	if (err < 0) {
		job_free(j);
		return err;
	}
	j->next = CL.jobs;
	CL.jobs = j;
	j->timer = loop_timer_add(CL.d->loop, j->budget_ms, job_deadline, j);
	e->session = true;
	return 0;
}

static void
late_cb(struct loop *l, void *arg)
{
	struct late *lt = arg;
	for (struct late **pp = &CL.lates; *pp; pp = &(*pp)->next) {
		if (*pp == lt) {
			*pp = lt->next;
			break;
		}
	}
	bool live = lt->e->used && lt->e->gen == lt->gen;
	if (live)
		lt->e->state = CARDLOGIN_REQUIRED;
	if (lt->done)
		lt->done(lt->done_arg, lt->result, -1); /* dropped by pinflow if the card went */
	else if (live)
		publish_required(lt->e); /* a probe that failed: the card is still there */
	free(lt);
}

/* Answer a transport failure of a VERIFY (j), or publish PinRequested
 * after a probe's (j NULL), after LATE_REPLY_MS (see there). Returns false
 * when it cannot (then act now). */
static bool
reply_late(struct cardlogin_entry *e, const struct job *j, int result)
{
	struct late *lt = malloc(sizeof(*lt));
	if (!lt)
		return false;
	*lt = (struct late){ CL.lates, 0, j ? j->done : NULL, j ? j->done_arg : NULL, result, e,
		             e->gen };
	lt->timer = loop_timer_add(CL.d->loop, LATE_REPLY_MS, late_cb, lt);
	if (!lt->timer) {
		free(lt);
		return false;
	}
	CL.lates = lt;
	return true;
}

static void
job_unlink(struct job *j)
{
	for (struct job **pp = &CL.jobs; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	}
	if (j->timer)
		loop_timer_cancel(CL.d->loop, j->timer);
	j->timer = 0;
}

static void unblock_answer(struct cardlogin_entry *e, const struct job *j);

static void
job_done(void *arg)
{
	struct job *j = arg;
	job_unlink(j);
	if (CL.stopping) {
		if (j->kind == JOB_VERIFY || j->kind == JOB_PINPAD)
			j->done(j->done_arg, -ESHUTDOWN, -1);
		job_free(j);
		return;
	}
	struct cardlogin_entry *e = j->e;
	bool live = e->used && e->gen == j->gen;
	if (live)
		e->session = false;
	if (j->timed_out && j->rc == -ETIMEDOUT)
		log_warn("pin: %s: the card session was cut at %u ms", j->reader, j->budget_ms);
	enum cardlogin_event ev = CARDLOGIN_EV_NONE;
	switch (j->kind) {
	case JOB_PROBE:
		if (!live)
			break;
		ev = cardlogin_probe_done(e, j->rc, &j->res, j->found_direct);
		if (ev == CARDLOGIN_EV_LATER && !reply_late(e, NULL, 0)) {
			e->state = CARDLOGIN_REQUIRED;
			ev = CARDLOGIN_EV_REQUIRED;
		}
		publish(e, ev);
		break;
	case JOB_VERIFY:
	case JOB_PINPAD: {
		int tries;
		int result = cardlogin_verify_done(live ? e : NULL, j->rc, &j->res, &tries, &ev);
		if (live)
			publish(e, ev);
		bool transport = j->rc == -EIO || j->rc == -ETIMEDOUT || j->rc == -ECONNRESET;
		if (live && transport && reply_late(e, j, result)) {
			e->state = CARDLOGIN_CHECKING; /* until the late answer */
			break;
		}
		j->done(j->done_arg, result, tries); /* pinflow drops it if the target went */
		break;
	}
	case JOB_UNBLOCK:
		if (live)
			unblock_answer(e, j);
		break;
	}
	job_free(j);
}

/* ------------------------------------------------------------------ */
/* the pinflow target */

static bool
t_expecting(void *arg, bool *pinpad, unsigned *min_len, unsigned *max_len, const char **reason)
{
	return cardlogin_expecting(arg, pinpad, min_len, max_len, reason);
}

static int
t_submit(void *arg, struct secmem_pin *pin, pinflow_done_fn done, void *done_arg)
{
	struct cardlogin_entry *e = arg;
	int r = cardlogin_submit_check(e, pin != NULL);
	if (r < 0) {
		secmem_pin_free(pin);
		return r;
	}
	r = job_start(e, pin ? JOB_VERIFY : JOB_PINPAD, pin, NULL, done, done_arg);
	if (r < 0)
		return r;
	e->state = CARDLOGIN_CHECKING;
	return 0;
}

static const struct pinflow_target_ops card_target_ops = {
	.expecting = t_expecting,
	.submit = t_submit,
};

/* ------------------------------------------------------------------ */
/* the readers' card hook */

static void
on_card(const struct readers_card_info *ci, void *arg)
{
	struct cardlogin_entry *e = cardlogin_find(&CL.cl, ci->reader);
	if (!ci->result) {
		if (e)
			entry_clear(e, "the card left the reader");
		return;
	}
	if (e)
		entry_clear(e, "another card was read in the reader");
	const struct profile *p = ci->result->recognised ? cards_profile_find(ci->result->profile)
	                                                 : NULL;
	if (!p || !p->pin.present)
		return;
	struct pin_params params;
	if (profile_pin_params(&p->pin, &params) < 0) {
		log_err("pin: profile %s: its [pin] step cannot be built", p->name); /* checked at load */
		return;
	}
	e = cardlogin_card_in(&CL.cl, ci->reader, p->name, ci->result->atr_hex, &params);
	if (!e) {
		log_err("pin: more than %d readers with PIN cards; %s ignored", CARDLOGIN_MAX, ci->reader);
		return;
	}
	e->card_seq = ci->card_seq;
	e->ops = ci->ops;
	e->drv = ci->driver;
	int r = pinflow_target_add(e->target, &card_target_ops, e);
	if (r < 0) {
		log_err("pin: cannot add the PIN target %s: %s", e->target, strerror(-r));
		e->gen++;
		return;
	}
	e->used = true;
	r = job_start(e, JOB_PROBE, NULL, NULL, NULL, NULL);
	if (r < 0) {
		log_err("pin: cannot start a card session on %s: %s", e->reader, strerror(-r));
		e->state = CARDLOGIN_REQUIRED; /* VERIFY still asks the card first */
		publish_required(e);
	}
}

/* ------------------------------------------------------------------ */
/* UnblockPin */

static int
reply_malformed(struct vl_call *call, const char *target, unsigned lo, unsigned hi)
{
	return vl_reply_error(call, VL_ERR("PinMalformed"),
	                      json_pack("{s:s,s:i,s:i}", "target", target, "min_len", (int)lo,
	                                "max_len", (int)hi));
}

static void
unblock_answer(struct cardlogin_entry *e, const struct job *j)
{
	struct vl_call *call = e->unblock_waiter;
	e->unblock_waiter = NULL;
	if (call)
		vl_call_set_cancel(call, NULL, NULL);
	enum cardlogin_event ev;
	enum cardlogin_unblock_result u = cardlogin_unblock_done(e, j->rc, &j->res, &j->query, &ev);
	if (call) {
		switch (u) {
		case CARDLOGIN_UNBLOCKED:
			vl_reply(call, json_pack("{s:b,s:o}", "unblocked", 1, "tries_left",
			                         e->tries_left >= 0 ? json_integer(e->tries_left)
			                                            : json_null()));
			break;
		case CARDLOGIN_UNBLOCK_NO_CARD:
			vl_reply_error(call, VL_ERR("NoCard"), json_pack("{s:s}", "reader", e->reader));
			break;
		case CARDLOGIN_UNBLOCK_BAD_CODE_SHAPE:
			reply_malformed(call, e->target, e->params.puk_len, e->params.puk_len);
			break;
		case CARDLOGIN_UNBLOCK_FAILED:
			vl_reply_error(call, VL_ERR("InternalError"),
			               json_pack("{s:s}", "reason", card_strerror(j->rc)));
			break;
		case CARDLOGIN_UNBLOCK_INCORRECT:
			metrics_inc(METRICS_PIN_FAILURES, "unblock");
			vl_reply_error(call, VL_ERR("PinIncorrect"),
			               json_pack("{s:s,s:o}", "target", e->target, "tries_left",
			                         j->res.tries_left >= 0 ? json_integer(j->res.tries_left)
			                                                : json_null()));
			break;
		case CARDLOGIN_UNBLOCK_CODE_BLOCKED:
			vl_reply_error(call, VL_ERR("PinBlocked"), json_pack("{s:s}", "target", e->target));
			break;
		case CARDLOGIN_UNBLOCK_BAD_PIN_SHAPE:
			reply_malformed(call, e->target, e->params.min_len, e->params.max_len);
			break;
		case CARDLOGIN_UNBLOCK_REFUSED:
			vl_reply_error(call, VL_ERR("InternalError"),
			               json_pack("{s:s}", "reason", "the card refused RESET RETRY COUNTER "
			                                            "(its status word is in the log)"));
			break;
		}
	}
	publish(e, ev);
}

static void
unblock_cancel(struct vl_call *call, void *arg)
{
	struct cardlogin_entry *e = arg;
	if (e->unblock_waiter == call)
		e->unblock_waiter = NULL; /* the session goes on; its result updates the state */
}

/* The refusals of cardlogin_unblock_begin as replies. */
static int
reply_unblock_check(struct vl_call *call, const struct cardlogin_entry *e, const char *name,
                    enum cardlogin_unblock_check c, unsigned wait)
{
	switch (c) {
	case CARDLOGIN_UNBLOCK_NO_PUK:
		return vl_reply_error(call, VL_ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", name, "reason",
		                                "the card's profile has no unblock code (unblock_length)"));
	case CARDLOGIN_UNBLOCK_RATE_LIMITED:
		return vl_reply_error(call, VL_ERR("RateLimited"),
		                      json_pack("{s:i,s:s}", "retry_after_s", (int)wait, "reason",
		                                "too many unblock attempts for this card"));
	case CARDLOGIN_UNBLOCK_BUSY:
		return vl_reply_error(call, VL_ERR("RateLimited"),
		                      json_pack("{s:i,s:s}", "retry_after_s", 1, "reason",
		                                "the card is busy"));
	case CARDLOGIN_UNBLOCK_NOT_NOW:
		return vl_reply_error(call, VL_ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", name, "reason",
		                                e->state == CARDLOGIN_VERIFIED ? "the card's PIN is verified"
		                                                               : "the card takes no unblock now"));
	case CARDLOGIN_UNBLOCK_GO:
		break;
	}
	return 0;
}

/* The unblock code and the new PIN in locked memory, shapes first: nothing
 * reaches the card unless both are well formed. 0, or replied. */
static int
take_codes(struct vl_call *call, const struct cardlogin_entry *e, const char *name, json_t *jk,
           json_t *jn, struct secmem_pin **puk, struct secmem_pin **np)
{
	*puk = *np = NULL;
	int r = secmem_pin_new(json_string_value(jk), json_string_length(jk), e->params.puk_len,
	                       e->params.puk_len, puk);
	if (r == -EINVAL || r == -ERANGE)
		return reply_malformed(call, name, e->params.puk_len, e->params.puk_len), 1;
	if (r < 0)
		return vl_reply_error(call, VL_ERR("InternalError"),
		                      json_pack("{s:s}", "reason", "cannot lock memory for the code")), 1;
	if (!json_is_string(jn))
		return 0;
	r = secmem_pin_new(json_string_value(jn), json_string_length(jn), e->params.min_len,
	                   e->params.max_len, np);
	if (r < 0) {
		secmem_pin_free(*puk);
		*puk = NULL;
		if (r == -EINVAL || r == -ERANGE)
			return reply_malformed(call, name, e->params.min_len, e->params.max_len), 1;
		return vl_reply_error(call, VL_ERR("InternalError"),
		                      json_pack("{s:s}", "reason", "cannot lock memory for the PIN")), 1;
	}
	return 0;
}

static int
m_unblock(struct vl_call *call, json_t *params, void *arg)
{
	const char *key;
	json_t *v;
	json_object_foreach(params, key, v) {
		if (strcmp(key, "target") && strcmp(key, "puk") && strcmp(key, "new_pin"))
			return vl_reply_invalid_param(call, key);
	}
	json_t *jt = json_object_get(params, "target");
	json_t *jk = json_object_get(params, "puk");
	json_t *jn = json_object_get(params, "new_pin");
	if (!json_is_string(jt))
		return vl_reply_invalid_param(call, "target");
	if (!json_is_string(jk))
		return vl_reply_invalid_param(call, "puk");
	if (jn && !json_is_string(jn) && !json_is_null(jn))
		return vl_reply_invalid_param(call, "new_pin");
	const char *name = json_string_value(jt);
	struct cardlogin_entry *e = cardlogin_find_target(&CL.cl, name);
	if (!e)
		return vl_reply_error(call, VL_ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", name, "reason",
		                                "no card with a PIN step is in that reader"));
	unsigned wait;
	enum cardlogin_unblock_check c = cardlogin_unblock_begin(e, clock_mono_ms(), &wait);
	if (c != CARDLOGIN_UNBLOCK_GO)
		return reply_unblock_check(call, e, name, c, wait);
	struct secmem_pin *puk, *np;
	int r = take_codes(call, e, name, jk, jn, &puk, &np);
	if (r != 0)
		return r < 0 ? r : 0;
	enum cardlogin_state before = e->state;
	r = job_start(e, JOB_UNBLOCK, np, puk, NULL, NULL); /* takes np and puk */
	if (r < 0)
		return vl_reply_error(call, VL_ERR("InternalError"),
		                      json_pack("{s:s}", "reason", strerror(-r)));
	e->tries_left = before == CARDLOGIN_BLOCKED ? 0 : e->tries_left;
	e->state = CARDLOGIN_CHECKING;
	e->unblock_waiter = call;
	vl_call_set_cancel(call, unblock_cancel, e);
	return 0;
}

/* ------------------------------------------------------------------ */
/* status */

static void
status_cb(struct daemon *d, json_t *st, void *arg)
{
	json_t *arr = json_array();
	if (!arr)
		return;
	for (size_t i = 0; i < CARDLOGIN_MAX; i++) {
		const struct cardlogin_entry *e = &CL.cl.entries[i];
		if (!e->used)
			continue;
		json_t *o = ev_base(e);
		json_object_set_new(o, "state", json_string(cardlogin_state_name(e->state)));
		json_object_set_new(o, "verified", json_boolean(e->state == CARDLOGIN_VERIFIED));
		json_object_set_new(o, "tries_left",
		                    e->tries_left >= 0 ? json_integer(e->tries_left) : json_null());
		json_object_set_new(o, "pinpad", json_boolean(e->pinpad));
		json_object_set_new(o, "verified_at",
		                    e->verified_at[0] ? json_string(e->verified_at) : json_null());
		json_array_append_new(arr, o);
	}
	json_object_set_new(st, "card_pins", arr);
}

/* ------------------------------------------------------------------ */
/* module */

int
cardlogin_init(struct daemon *d)
{
	int r;
	memset(&CL, 0, sizeof(CL));
	CL.d = d;
	CL.timeout_ms = d->cfg->pcsc_session_timeout_ms > 0 ? (unsigned)d->cfg->pcsc_session_timeout_ms
	                                                    : 5000u;
	if ((r = worker_new(d->loop, "cardpin", CARDLOGIN_MAX, 0, &CL.w)) < 0 ||
	    (r = vl_server_add_method(d->api, TERMINAL_IFACE ".UnblockPin", m_unblock, NULL,
	                              VL_CONTROL)) < 0 ||
	    (r = status_add_provider(status_cb, NULL)) < 0) {
		log_err("pin: cannot register: %s", strerror(-r));
		return r;
	}
	readers_set_card_hook(on_card, NULL);
	return 0;
}

void
cardlogin_fini(struct daemon *d)
{
	(void)d;
	readers_set_card_hook(NULL, NULL);
	CL.stopping = true;
	for (struct job *j = CL.jobs; j; j = j->next)
		if (j->ops->abort)
			j->ops->abort(j->drv, j->reader);
	worker_free(CL.w); /* waits for the sessions; their done() answers ShuttingDown */
	CL.w = NULL;
	while (CL.lates) {
		struct late *lt = CL.lates;
		CL.lates = lt->next;
		loop_timer_cancel(CL.d->loop, lt->timer);
		if (lt->done)
			lt->done(lt->done_arg, -ESHUTDOWN, -1);
		free(lt);
	}
	for (size_t i = 0; i < CARDLOGIN_MAX; i++) {
		struct cardlogin_entry *e = &CL.cl.entries[i];
		struct vl_call *call = e->unblock_waiter;
		e->unblock_waiter = NULL;
		if (call) {
			vl_call_set_cancel(call, NULL, NULL);
			vl_reply_error(call, VL_ERR("ShuttingDown"), NULL);
		}
		if (e->used)
			pinflow_target_remove(e->target);
		e->used = false;
	}
}
