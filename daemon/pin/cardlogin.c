/* The card PIN step as a daemon module; see cardlogin.h.
 *
 * One entry per reader that holds a card with a PIN step. An entry is
 * found by its reader's name and keeps its slot for that reader (so the
 * unblock rate limit survives a card being pulled and put back, as
 * pinflow's does for SubmitPin). Its generation number is bumped whenever
 * the card it stands for goes: a session that ends after that finds a
 * different generation and only cleans up.
 *
 * Sessions ("jobs"): one thread each, which connects to the card, checks
 * that the reader still holds the card that was read (same ATR), runs one
 * cardpin.c operation, disconnects, wipes the PIN, and posts itself to the
 * loop as its very last act. The loop joins it and applies the result.
 * Posting goes through a hub whose lock also says whether the loop still
 * takes work; at fini, running jobs are aborted (the driver's abort()) and
 * joined for up to a second; one that will not end is left to free itself.
 *
 * What must stay true: a PIN (or unblock code) is only ever in a struct
 * secmem_pin owned by exactly one job, and in the locked APDU buffer of
 * cardpin.c; nothing here logs or copies it. A blocked card never gets a
 * PIN: the entry answers PinBlocked at once, and cardpin_verify asks the
 * card again before it sends one.
 */
#include "daemon/pin/cardlogin.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/pin/cardpin.h"
#include "daemon/cards/cards.h"
#include "daemon/core/events.h"
#include "lib/log.h"
#include "protocol/pin.h"
#include "daemon/pin/pinflow.h"
#include "protocol/profile.h"
#include "daemon/cards/readers.h"
#include "lib/secmem.h"
#include "daemon/pin/signer.h"

#define ABORT_REPEAT_MS 1000u
/* A VERIFY that failed in transport (vpcd answers an empty response when
 * the card vanished mid-exchange, a real reader gives an error before
 * pcscd notices the removal) is answered only after this long: if the
 * card's removal comes meanwhile, the caller gets NoCard instead of a
 * transmission error. pcscd polls presence every 400 ms. */
#define LATE_REPLY_MS 900u

enum cl_state {
	CL_PROBING,      /* the first session (features, tries left) runs */
	CL_REQUIRED,     /* a PIN is wanted */
	CL_CHECKING,     /* a VERIFY (or an unblock) runs */
	CL_VERIFIED,     /* the holder proved the PIN since the card went in */
	CL_BLOCKED,      /* the card says blocked: nothing is ever sent again */
	CL_NOT_NEEDED,   /* the card answered 9000 to the query: no PIN wanted now */
	CL_UNUSABLE,     /* the card has no such PIN (6A88, 6D00 ...) */
};
static const char *const cl_state_names[] = { "probing",  "required",     "checking", "verified",
	                                          "blocked",  "not_required", "unusable" };

enum job_kind { JOB_PROBE, JOB_VERIFY, JOB_PINPAD, JOB_UNBLOCK };

struct entry;

struct job {
	struct job *next;
	pthread_t thread;
	enum job_kind kind;
	/* inputs: set before the thread starts, read-only for it */
	const struct reader_ops *ops;
	struct reader_driver *drv;
	char reader[READER_NAME_MAX];
	char atr_hex[READER_ATR_MAX * 2 + 1];
	struct pin_params params;
	uint32_t verify_direct;     /* keypad control code, 0: none */
	struct secmem_pin *pin;     /* VERIFY / new PIN: the thread wipes it */
	struct secmem_pin *puk;     /* UNBLOCK: the thread wipes it */
	/* the loop's side */
	struct entry *e;
	unsigned gen;
	pinflow_done_fn done;       /* VERIFY, PINPAD */
	void *done_arg;
	uint64_t timer;
	unsigned budget_ms;
	bool timed_out;
	/* outputs: the thread's until posted */
	int rc;
	struct pin_result res;
	struct pin_result query;    /* UNBLOCK: the counter after it */
	uint32_t found_direct;      /* PROBE: FEATURE_VERIFY_PIN_DIRECT's code, 0 none */
	bool orphan;                /* under hub.lock: nobody will join; free yourself */
	bool finished;              /* under hub.lock */
};

struct entry {
	bool used;
	char reader[READER_NAME_MAX];
	char target[PINFLOW_TARGET_NAME_MAX];
	char profile[PROFILE_NAME_MAX];
	char atr_hex[READER_ATR_MAX * 2 + 1];
	uint64_t card_seq;
	unsigned gen;
	const struct reader_ops *ops;
	struct reader_driver *drv;
	struct pin_params params;
	enum cl_state state;
	int tries_left;
	bool pinpad;
	uint32_t verify_direct;
	char reason[96];
	char verified_at[40];
	struct job *job;              /* the running session, or NULL */
	struct vl_call *unblock_call; /* the UnblockPin waiting */
	uint64_t unblock_at[CARDLOGIN_UNBLOCK_MAX]; /* ring of monotonic ms */
	unsigned unblock_next;
};

static struct {
	pthread_mutex_t lock;
	struct loop *loop; /* NULL once fini began */
} hub = { PTHREAD_MUTEX_INITIALIZER, NULL };

static struct {
	struct daemon *d;
	struct entry entries[CARDLOGIN_MAX];
	struct job *jobs;
	struct late *lates; /* transport failures waiting for LATE_REPLY_MS */
	unsigned timeout_ms;
} CL;

#define ERR(name) TERMINAL_IFACE "." name

static const struct pinflow_target_ops card_target_ops;

/* ------------------------------------------------------------------ */
/* events */

static json_t *
ev_base(const struct entry *e)
{
	return json_pack("{s:s,s:s,s:s}", "target", e->target, "reader", e->reader, "profile",
	                 e->profile);
}

static void
publish_required(const struct entry *e)
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
publish_blocked(const struct entry *e)
{
	events_publish("PinBlocked", ev_base(e));
	log_warn("pin: the PIN of the %s card in %s is blocked; vitaled will not try it again%s",
	         e->profile, e->reader,
	         e->params.puk_len ? " (UnblockPin with the unblock code, or the card's own tools)"
	                           : " (unblock it with the card's own tools)");
}

/* ------------------------------------------------------------------ */
/* entries */

static struct entry *
entry_find(const char *reader)
{
	for (size_t i = 0; i < CARDLOGIN_MAX; i++)
		if (CL.entries[i].used && !strcmp(CL.entries[i].reader, reader))
			return &CL.entries[i];
	return NULL;
}

/* A free slot: the one this reader had, else one never used, else any. */
static struct entry *
entry_slot(const char *reader)
{
	struct entry *fresh = NULL, *any = NULL;
	for (size_t i = 0; i < CARDLOGIN_MAX; i++) {
		struct entry *e = &CL.entries[i];
		if (e->used)
			continue;
		if (!strcmp(e->reader, reader))
			return e;
		if (!e->reader[0] && !fresh)
			fresh = e;
		if (!any)
			any = e;
	}
	return fresh ? fresh : any;
}

/* The card left (or another took its place): end the target. */
static void
entry_clear(struct entry *e, const char *why)
{
	bool verified = e->state == CL_VERIFIED;
	pinflow_target_remove(e->target); /* a SubmitPin waiting gets NoCard */
	if (e->unblock_call) {
		vl_call_set_cancel(e->unblock_call, NULL, NULL);
		vl_reply_error(e->unblock_call, ERR("NoCard"), json_pack("{s:s}", "reader", e->reader));
		e->unblock_call = NULL;
	}
	json_t *f = ev_base(e);
	json_object_set_new(f, "reason", json_string(why));
	events_publish("PinCleared", f);
	log_info("pin: %s ended (%s)%s", e->target, why, verified ? "; no longer verified" : "");
	e->used = false;
	e->gen++;
	e->job = NULL; /* a job still running finds another generation */
	e->state = CL_PROBING;
	e->verified_at[0] = '\0';
	/* reader, gen and the unblock attempts stay with the slot */
}

/* ------------------------------------------------------------------ */
/* jobs (session thread) */

static void on_job_done(void *arg);

static void *
job_main(void *arg)
{
	struct job *j = arg;
	struct reader_card *card = NULL;
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len = sizeof(atr);
	char hex[READER_ATR_MAX * 2 + 1];
	int r = j->ops->connect(j->drv, j->reader, &card, atr, &atr_len);
	if (r < 0)
		goto out;
	card_atr_hex(atr, atr_len, hex, sizeof(hex));
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
	pthread_mutex_lock(&hub.lock);
	bool orphan = j->orphan;
	j->finished = true;
	if (!orphan && hub.loop && loop_post(hub.loop, on_job_done, j) < 0)
		log_err("pin: cannot post the end of a card session on %s", j->reader);
	pthread_mutex_unlock(&hub.lock);
	if (orphan) {
		pthread_detach(pthread_self());
		free(j);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* jobs (loop thread) */

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
job_start(struct entry *e, enum job_kind kind, struct secmem_pin *pin, struct secmem_pin *puk,
          pinflow_done_fn done, void *done_arg)
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
	int err = pthread_create(&j->thread, NULL, job_main, j);
	if (err != 0) {
		job_free(j);
		return -err;
	}
	j->next = CL.jobs;
	CL.jobs = j;
	j->timer = loop_timer_add(CL.d->loop, j->budget_ms, job_deadline, j);
	e->job = j;
	return 0;
}

struct late {
	struct late *next;
	uint64_t timer;
	pinflow_done_fn done;
	void *done_arg;
	int result;
	struct entry *e;
	unsigned gen;
};

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
		lt->e->state = CL_REQUIRED;
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
reply_late(struct entry *e, const struct job *j, int result)
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

/* The probe's answer: what the card wants. */
static void
probe_done(struct entry *e, const struct job *j)
{
	e->verify_direct = j->found_direct;
	e->pinpad = j->found_direct != 0;
	e->tries_left = -1;
	if (j->rc < 0) {
		if (j->rc == -ENODEV)
			return; /* the card left; its removal ends the entry */
		/* VERIFY asks again before it sends anything: let the holder try,
		 * unless the card turns out to have left (see LATE_REPLY_MS) */
		log_warn("pin: cannot ask the card in %s for its tries left (%s)", e->reader,
		         card_strerror(j->rc));
		if (!reply_late(e, NULL, 0)) {
			e->state = CL_REQUIRED;
			publish_required(e);
		}
		return;
	}
	switch (j->res.status) {
	case PIN_ST_NEEDED:
		e->state = CL_REQUIRED;
		e->tries_left = j->res.tries_left;
		publish_required(e);
		return;
	case PIN_ST_OK:
		e->state = CL_NOT_NEEDED;
		log_info("pin: the %s card in %s asks for no PIN now (9000 to the query)", e->profile,
		         e->reader);
		return;
	case PIN_ST_BLOCKED:
		e->state = CL_BLOCKED;
		e->tries_left = 0;
		publish_blocked(e);
		return;
	case PIN_ST_REF_NOT_FOUND:
	case PIN_ST_NOT_SUPPORTED:
	case PIN_ST_REF_UNUSABLE:
		e->state = CL_UNUSABLE;
		snprintf(e->reason, sizeof(e->reason), "the card has no usable PIN %02X (it answered %04X)",
		         e->params.ref, j->res.sw);
		log_warn("pin: %s: %s; check the profile's [pin] section", e->target, e->reason);
		return;
	default:
		/* a card that does not do the query (ISO 7816-4 makes it
		 * optional): tries unknown, VERIFY will tell */
		log_info("pin: the card in %s answered %04X to the tries-left query", e->reader, j->res.sw);
		e->state = CL_REQUIRED;
		publish_required(e);
		return;
	}
}

/* A VERIFY's answer: the entry's new state and pinflow's result code. */
static int
verify_done(struct entry *e, const struct job *j, int *tries)
{
	*tries = -1;
	if (j->rc < 0) {
		if (e)
			e->state = CL_REQUIRED;
		switch (j->rc) {
		case -EINVAL:
		case -ERANGE: return SIGNER_E_PIN_MALFORMED;
		case -ENODEV: return SIGNER_E_NO_TOKEN;
		default:
			log_warn("pin: VERIFY on the card in %s failed: %s", j->reader, card_strerror(j->rc));
			return j->rc;
		}
	}
	const struct pin_result *res = &j->res;
	int result;
	enum cl_state st = CL_REQUIRED;
	switch (res->status) {
	case PIN_ST_OK:
		st = CL_VERIFIED;
		result = 0;
		break;
	case PIN_ST_INCORRECT:
	case PIN_ST_NEEDED:
		*tries = res->tries_left;
		result = SIGNER_E_PIN_INCORRECT;
		break;
	case PIN_ST_BLOCKED:
		st = CL_BLOCKED;
		*tries = 0;
		result = SIGNER_E_PIN_BLOCKED;
		break;
	case PIN_ST_PINPAD_TIMEOUT:
	case PIN_ST_PINPAD_CANCELLED:
		result = SIGNER_E_CANCELLED;
		break;
	case PIN_ST_PINPAD_LENGTH:
		result = SIGNER_E_PIN_MALFORMED;
		break;
	default:
		log_warn("pin: the card in %s refused VERIFY: %04X (%s)", j->reader, res->sw,
		         pin_status_name(res->status));
		result = -EPROTO;
		break;
	}
	if (!e)
		return result;
	e->state = st;
	if (result == SIGNER_E_PIN_INCORRECT)
		e->tries_left = *tries;
	if (st == CL_VERIFIED) {
		e->tries_left = -1;
		events_time_now(e->verified_at, sizeof(e->verified_at));
		events_publish("PinVerified", ev_base(e));
		log_notice("pin: %s verified (%s card)", e->target, e->profile);
	} else if (st == CL_BLOCKED) {
		e->tries_left = 0;
		publish_blocked(e);
	} else if (result == SIGNER_E_PIN_INCORRECT || result == SIGNER_E_CANCELLED) {
		publish_required(e); /* still wanted, with the new count */
	}
	return result;
}

static void
unblock_done(struct entry *e, const struct job *j)
{
	struct vl_call *call = e->unblock_call;
	e->unblock_call = NULL;
	e->state = e->tries_left == 0 ? CL_BLOCKED : CL_REQUIRED;
	if (call)
		vl_call_set_cancel(call, NULL, NULL);
	if (j->rc < 0) {
		log_warn("pin: RESET RETRY COUNTER on the card in %s failed: %s", e->reader,
		         card_strerror(j->rc));
		if (!call)
			return;
		if (j->rc == -ENODEV)
			vl_reply_error(call, ERR("NoCard"), json_pack("{s:s}", "reader", e->reader));
		else if (j->rc == -EINVAL || j->rc == -ERANGE)
			vl_reply_error(call, ERR("PinMalformed"),
			               json_pack("{s:s,s:i,s:i}", "target", e->target, "min_len",
			                         (int)e->params.puk_len, "max_len", (int)e->params.puk_len));
		else
			vl_reply_error(call, ERR("InternalError"),
			               json_pack("{s:s}", "reason", card_strerror(j->rc)));
		return;
	}
	switch (j->res.status) {
	case PIN_ST_OK:
		e->state = CL_REQUIRED;
		e->tries_left = j->query.status == PIN_ST_NEEDED ? j->query.tries_left : -1;
		log_notice("pin: %s unblocked with its unblock code", e->target);
		if (call)
			vl_reply(call, json_pack("{s:b,s:o}", "unblocked", 1, "tries_left",
			                         e->tries_left >= 0 ? json_integer(e->tries_left)
			                                            : json_null()));
		publish_required(e);
		return;
	case PIN_ST_INCORRECT:
		log_notice("pin: wrong unblock code for %s", e->target);
		if (call)
			vl_reply_error(call, ERR("PinIncorrect"),
			               json_pack("{s:s,s:o}", "target", e->target, "tries_left",
			                         j->res.tries_left >= 0 ? json_integer(j->res.tries_left)
			                                                : json_null()));
		return;
	case PIN_ST_BLOCKED:
		log_warn("pin: the unblock code of %s is blocked too", e->target);
		if (call)
			vl_reply_error(call, ERR("PinBlocked"), json_pack("{s:s}", "target", e->target));
		return;
	case PIN_ST_WRONG_DATA:
		if (call)
			vl_reply_error(call, ERR("PinMalformed"),
			               json_pack("{s:s,s:i,s:i}", "target", e->target, "min_len",
			                         (int)e->params.min_len, "max_len", (int)e->params.max_len));
		return;
	default:
		log_warn("pin: the card in %s refused RESET RETRY COUNTER: %04X (%s)", e->reader,
		         j->res.sw, pin_status_name(j->res.status));
		if (call)
			vl_reply_error(call, ERR("InternalError"),
			               json_pack("{s:s}", "reason", "the card refused RESET RETRY COUNTER "
			                                            "(its status word is in the log)"));
		return;
	}
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

static void
on_job_done(void *arg)
{
	struct job *j = arg;
	pthread_join(j->thread, NULL);
	job_unlink(j);
	struct entry *e = j->e;
	bool live = e->used && e->gen == j->gen;
	if (live)
		e->job = NULL;
	if (j->timed_out && j->rc == -ETIMEDOUT)
		log_warn("pin: %s: the card session was cut at %u ms", j->reader, j->budget_ms);
	switch (j->kind) {
	case JOB_PROBE:
		if (live)
			probe_done(e, j);
		break;
	case JOB_VERIFY:
	case JOB_PINPAD: {
		int tries;
		int result = verify_done(live ? e : NULL, j, &tries);
		bool transport = j->rc == -EIO || j->rc == -ETIMEDOUT || j->rc == -ECONNRESET;
		if (live && transport && reply_late(e, j, result)) {
			e->state = CL_CHECKING; /* until the late answer */
			break;
		}
		j->done(j->done_arg, result, tries); /* pinflow drops it if the target went */
		break;
	}
	case JOB_UNBLOCK:
		if (live)
			unblock_done(e, j);
		break;
	}
	job_free(j);
}

/* ------------------------------------------------------------------ */
/* the pinflow target */

static bool
t_expecting(void *arg, bool *pinpad, unsigned *min_len, unsigned *max_len, const char **reason)
{
	struct entry *e = arg;
	*pinpad = e->pinpad;
	*min_len = e->params.min_len;
	*max_len = e->params.max_len;
	switch (e->state) {
	case CL_REQUIRED: return true;
	case CL_BLOCKED: return true; /* answered PinBlocked by t_submit; nothing is sent */
	case CL_PROBING: *reason = "the card is being asked for its PIN state: wait for PinRequested"; break;
	case CL_CHECKING: *reason = "a PIN for this card is being checked"; break;
	case CL_VERIFIED: *reason = "the card's PIN is already verified"; break;
	case CL_NOT_NEEDED: *reason = "the card asks for no PIN now"; break;
	case CL_UNUSABLE: *reason = e->reason; break;
	}
	return false;
}

static int
t_submit(void *arg, struct secmem_pin *pin, pinflow_done_fn done, void *done_arg)
{
	struct entry *e = arg;
	if (e->state == CL_BLOCKED) {
		secmem_pin_free(pin);
		log_notice("pin: %s is blocked: the PIN was not sent to the card", e->target);
		return SIGNER_E_PIN_BLOCKED;
	}
	if (e->state != CL_REQUIRED) {
		secmem_pin_free(pin);
		return SIGNER_E_NOT_EXPECTED;
	}
	if (e->job) {
		secmem_pin_free(pin);
		return SIGNER_E_BUSY;
	}
	if (!pin && !e->pinpad)
		return SIGNER_E_PIN_MALFORMED;
	int r = job_start(e, pin ? JOB_VERIFY : JOB_PINPAD, pin, NULL, done, done_arg);
	if (r < 0)
		return r;
	e->state = CL_CHECKING;
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
	struct entry *e = entry_find(ci->reader);
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
	e = entry_slot(ci->reader);
	if (!e) {
		log_err("pin: more than %d readers with PIN cards; %s ignored", CARDLOGIN_MAX, ci->reader);
		return;
	}
	uint64_t ua[CARDLOGIN_UNBLOCK_MAX];
	unsigned un = 0;
	unsigned gen = e->gen;
	bool same = !strcmp(e->reader, ci->reader);
	if (same) {
		memcpy(ua, e->unblock_at, sizeof(ua));
		un = e->unblock_next;
	}
	memset(e, 0, sizeof(*e));
	if (same) {
		memcpy(e->unblock_at, ua, sizeof(ua));
		e->unblock_next = un;
	}
	e->gen = gen + 1;
	snprintf(e->reader, sizeof(e->reader), "%s", ci->reader);
	snprintf(e->target, sizeof(e->target), "%s%s", PINFLOW_CARD_PREFIX, ci->reader);
	snprintf(e->profile, sizeof(e->profile), "%s", p->name);
	snprintf(e->atr_hex, sizeof(e->atr_hex), "%s", ci->result->atr_hex);
	e->card_seq = ci->card_seq;
	e->ops = ci->ops;
	e->drv = ci->driver;
	e->params = params;
	e->state = CL_PROBING;
	e->tries_left = -1;
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
		e->state = CL_REQUIRED; /* VERIFY still asks the card first */
		publish_required(e);
	}
}

/* ------------------------------------------------------------------ */
/* UnblockPin */

static void
unblock_cancel(struct vl_call *call, void *arg)
{
	struct entry *e = arg;
	if (e->unblock_call == call)
		e->unblock_call = NULL; /* the session goes on; its result updates the state */
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
	struct entry *e = NULL;
	for (size_t i = 0; i < CARDLOGIN_MAX; i++)
		if (CL.entries[i].used && !strcmp(CL.entries[i].target, name))
			e = &CL.entries[i];
	if (!e)
		return vl_reply_error(call, ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", name, "reason",
		                                "no card with a PIN step is in that reader"));
	if (!e->params.puk_len)
		return vl_reply_error(call, ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", name, "reason",
		                                "the card's profile has no unblock code (unblock_length)"));
	uint64_t now = loop_now_ms();
	uint64_t oldest = e->unblock_at[e->unblock_next];
	if (oldest && now - oldest < CARDLOGIN_UNBLOCK_WINDOW_MS) {
		unsigned wait = (unsigned)((CARDLOGIN_UNBLOCK_WINDOW_MS - (now - oldest) + 999) / 1000);
		return vl_reply_error(call, ERR("RateLimited"),
		                      json_pack("{s:i,s:s}", "retry_after_s", (int)wait, "reason",
		                                "too many unblock attempts for this card"));
	}
	if (e->job || e->state == CL_CHECKING || e->state == CL_PROBING)
		return vl_reply_error(call, ERR("RateLimited"),
		                      json_pack("{s:i,s:s}", "retry_after_s", 1, "reason",
		                                "the card is busy"));
	if (e->state != CL_REQUIRED && e->state != CL_BLOCKED)
		return vl_reply_error(call, ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", name, "reason",
		                                e->state == CL_VERIFIED ? "the card's PIN is verified"
		                                                        : "the card takes no unblock now"));
	e->unblock_at[e->unblock_next] = now ? now : 1;
	e->unblock_next = (e->unblock_next + 1) % CARDLOGIN_UNBLOCK_MAX;

	/* shapes first: nothing reaches the card unless both are well formed */
	struct secmem_pin *puk = NULL, *np = NULL;
	int r = secmem_pin_new(json_string_value(jk), json_string_length(jk), e->params.puk_len,
	                       e->params.puk_len, &puk);
	if (r == -EINVAL || r == -ERANGE)
		return vl_reply_error(call, ERR("PinMalformed"),
		                      json_pack("{s:s,s:i,s:i}", "target", name, "min_len",
		                                (int)e->params.puk_len, "max_len", (int)e->params.puk_len));
	if (r < 0)
		return vl_reply_error(call, ERR("InternalError"),
		                      json_pack("{s:s}", "reason", "cannot lock memory for the code"));
	if (json_is_string(jn)) {
		r = secmem_pin_new(json_string_value(jn), json_string_length(jn), e->params.min_len,
		                   e->params.max_len, &np);
		if (r < 0) {
			secmem_pin_free(puk);
			if (r == -EINVAL || r == -ERANGE)
				return vl_reply_error(call, ERR("PinMalformed"),
				                      json_pack("{s:s,s:i,s:i}", "target", name, "min_len",
				                                (int)e->params.min_len, "max_len",
				                                (int)e->params.max_len));
			return vl_reply_error(call, ERR("InternalError"),
			                      json_pack("{s:s}", "reason", "cannot lock memory for the PIN"));
		}
	}
	enum cl_state before = e->state;
	r = job_start(e, JOB_UNBLOCK, np, puk, NULL, NULL); /* takes np and puk */
	if (r < 0)
		return vl_reply_error(call, ERR("InternalError"),
		                      json_pack("{s:s}", "reason", strerror(-r)));
	e->tries_left = before == CL_BLOCKED ? 0 : e->tries_left;
	e->state = CL_CHECKING;
	e->unblock_call = call;
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
		const struct entry *e = &CL.entries[i];
		if (!e->used)
			continue;
		json_t *o = ev_base(e);
		json_object_set_new(o, "state", json_string(cl_state_names[e->state]));
		json_object_set_new(o, "verified", json_boolean(e->state == CL_VERIFIED));
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
	if ((r = vl_server_add_method(d->api, TERMINAL_IFACE ".UnblockPin", m_unblock, NULL,
	                              VL_CONTROL)) < 0 ||
	    (r = status_add_provider(status_cb, NULL)) < 0) {
		log_err("pin: cannot register: %s", strerror(-r));
		return r;
	}
	pthread_mutex_lock(&hub.lock);
	hub.loop = d->loop;
	pthread_mutex_unlock(&hub.lock);
	readers_set_card_hook(on_card, NULL);
	return 0;
}

void
cardlogin_fini(struct daemon *d)
{
	(void)d;
	readers_set_card_hook(NULL, NULL);
	pthread_mutex_lock(&hub.lock);
	hub.loop = NULL;
	pthread_mutex_unlock(&hub.lock);
	for (struct job *j = CL.jobs; j; j = j->next)
		if (j->ops->abort)
			j->ops->abort(j->drv, j->reader);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 1;
	while (CL.jobs) {
		struct job *j = CL.jobs;
		job_unlink(j);
		bool joined = pthread_timedjoin_np(j->thread, NULL, &dl) == 0;
		if (!joined) {
			pthread_mutex_lock(&hub.lock);
			j->orphan = !j->finished; /* it may have ended since the join gave up */
			pthread_mutex_unlock(&hub.lock);
			if (!j->orphan)
				joined = pthread_join(j->thread, NULL) == 0;
		}
		if (!joined) {
			log_warn("pin: the card session on %s does not end; left behind", j->reader);
			continue; /* it frees itself */
		}
		if (j->kind == JOB_VERIFY || j->kind == JOB_PINPAD)
			j->done(j->done_arg, -ESHUTDOWN, -1);
		job_free(j);
	}
	while (CL.lates) {
		struct late *lt = CL.lates;
		CL.lates = lt->next;
		loop_timer_cancel(CL.d->loop, lt->timer);
		if (lt->done)
			lt->done(lt->done_arg, -ESHUTDOWN, -1);
		free(lt);
	}
	for (size_t i = 0; i < CARDLOGIN_MAX; i++) {
		struct entry *e = &CL.entries[i];
		if (e->unblock_call) {
			vl_call_set_cancel(e->unblock_call, NULL, NULL);
			vl_reply_error(e->unblock_call, ERR("ShuttingDown"), NULL);
			e->unblock_call = NULL;
		}
		if (e->used)
			pinflow_target_remove(e->target);
		e->used = false;
	}
}
