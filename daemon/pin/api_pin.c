/* The PIN flow as a daemon module: the daemon's one struct pinflow and
 * struct signer, the API methods SubmitPin / GetSigner / SignerSelfTest,
 * the "signer" part of GetStatus, and the PinRequested event. The rules
 * live in pinflow.c (the state machine) and signer.c; this file turns
 * varlink parameters into their structs and their answers into replies.
 *
 * The JSON string a PIN came in is freed by the varlink layer after the
 * handler returns; jansson's free wipes it (secmem_init), and the socket
 * buffer is wiped by daemon/core/varlink.c.
 */
#include <errno.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cards/cards.h"
#include "daemon/core/events.h"
#include "daemon/core/metrics.h"
#include "daemon/pin/pinflow.h"
#include "lib/b64.h"
#include "lib/clock.h"
#include "lib/hex.h"
#include "lib/log.h"

static struct {
	struct daemon *d;
	struct signer *signer;
	struct pinflow flow;
	pinflow_event_fn hook;
	void *hook_arg;
	enum signer_state last_state;
	struct vl_call *selftest_call;
	struct {
		pinflow_chain_fn fn;
		void *arg;
	} chain_watch[PINFLOW_CHAIN_WATCH_MAX];
} pf;

static json_t *
maybe_int(int v)
{
	return v >= 0 ? json_integer(v) : json_null();
}

static json_t *
opt_str(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

/* NoCard {reader} for a card target ("card:<reader>"). */
static int
reply_no_card(struct vl_call *call, const char *name)
{
	return vl_reply_error(call, VL_ERR("NoCard"),
	                      json_pack("{s:s}", "reader", name + strlen(PINFLOW_CARD_PREFIX)));
}

static int
reply_not_expected(struct vl_call *call, const char *target, const char *reason)
{
	return vl_reply_error(call, VL_ERR("PinNotExpected"),
	                      json_pack("{s:s,s:s}", "target", target, "reason", reason));
}

static int
reply_rate_limited(struct vl_call *call, unsigned wait, const char *reason)
{
	return vl_reply_error(call, VL_ERR("RateLimited"),
	                      json_pack("{s:i,s:s}", "retry_after_s", (int)wait, "reason", reason));
}

static int
reply_malformed(struct vl_call *call, const char *target, unsigned lo, unsigned hi)
{
	return vl_reply_error(call, VL_ERR("PinMalformed"),
	                      json_pack("{s:s,s:i,s:i}", "target", target, "min_len", (int)lo,
	                                "max_len", (int)hi));
}

/* The reply for a check's answer a. */
static void
reply_answer(struct vl_call *call, const struct pinflow_answer *a)
{
	const struct signer_status *st = pf.signer ? signer_status(pf.signer) : NULL;
	bool practitioner = !strcmp(a->target, PINFLOW_TARGET_PRACTITIONER);
	bool card = pinflow_is_card(a->target);
	const char *why = practitioner && st && st->reason[0] ? st->reason : NULL;
	int r = a->result;
	switch (r) {
	case 0:
		vl_reply(call, json_pack("{s:b,s:o}", "logged_in", 1, "tries_left", json_null()));
		return;
	case SIGNER_E_PIN_INCORRECT:
		metrics_inc(METRICS_PIN_FAILURES, card ? "card" : "practitioner");
		vl_reply_error(call, VL_ERR("PinIncorrect"),
		               json_pack("{s:s,s:o}", "target", a->target, "tries_left",
		                         maybe_int(a->tries_left)));
		return;
	case SIGNER_E_PIN_BLOCKED:
		vl_reply_error(call, VL_ERR("PinBlocked"), json_pack("{s:s}", "target", a->target));
		return;
	case SIGNER_E_PIN_MALFORMED:
		reply_malformed(call, a->target, a->min_len, a->max_len);
		return;
	case SIGNER_E_NOT_EXPECTED:
		reply_not_expected(call, a->target, why ? why : "no PIN is expected now");
		return;
	case PINFLOW_E_GONE:
		if (card)
			reply_no_card(call, a->target);
		else
			reply_not_expected(call, a->target, "the token went away");
		return;
	case SIGNER_E_NO_TOKEN:
		if (card)
			reply_no_card(call, a->target);
		else
			reply_not_expected(call, a->target, "the token or card went away");
		return;
	case SIGNER_E_CANCELLED:
		vl_reply_error(call, VL_ERR("PinEntryCancelled"), json_pack("{s:s}", "target", a->target));
		return;
	case SIGNER_E_NO_KEY:
	case SIGNER_E_BAD_ALG:
		vl_reply_error(call, VL_ERR("SignerUnavailable"),
		               json_pack("{s:s}", "reason", why ? why : "the key cannot be used"));
		return;
	case -ESHUTDOWN:
		vl_reply_error(call, VL_ERR("ShuttingDown"), NULL);
		return;
	case SIGNER_E_BUSY:
		reply_rate_limited(call, 1, "a PIN for this target is being checked");
		return;
	default:
		vl_reply_error(call, VL_ERR("InternalError"),
		               json_pack("{s:s}", "reason",
		                         !card       ? strerror(r < 0 ? -r : r)
		                         : r == -EPROTO ? "the card refused the PIN command (its status "
		                                          "word is in the log)"
		                                        : card_strerror(r)));
		return;
	}
}

static void
on_answer(void *waiter, const struct pinflow_answer *a, void *arg)
{
	struct vl_call *call = waiter;
	vl_call_set_cancel(call, NULL, NULL);
	reply_answer(call, a);
}

/* ------------------------------------------------------------------ */
/* SubmitPin */

static void
submit_cancel(struct vl_call *call, void *arg)
{
	pinflow_forget_waiter(&pf.flow, call); /* the check goes on */
}

static int
reply_outcome(struct vl_call *call, const char *name, const struct pinflow_outcome *o)
{
	switch (o->status) {
	case PINFLOW_STARTED:
		return 0;
	case PINFLOW_NO_TARGET:
	case PINFLOW_NOT_EXPECTED:
	case PINFLOW_KEYPAD_ONLY:
		return reply_not_expected(call, name, o->reason);
	case PINFLOW_RATE_LIMITED:
	case PINFLOW_BUSY:
		return reply_rate_limited(call, o->retry_after_s, o->reason);
	case PINFLOW_MALFORMED:
		return reply_malformed(call, name, o->min_len, o->max_len);
	case PINFLOW_NO_MEMORY:
		return vl_reply_error(call, VL_ERR("InternalError"),
		                      json_pack("{s:s}", "reason", "cannot lock memory for the PIN"));
	case PINFLOW_FAILED: {
		struct pinflow_answer a = { name, o->result, -1, o->min_len, o->max_len };
		reply_answer(call, &a);
		return 0;
	}
	}
	return -EINVAL;
}

static int
m_submit_pin(struct vl_call *call, json_t *params, void *arg)
{
	const char *key;
	json_t *v;
	json_object_foreach(params, key, v) {
		if (strcmp(key, "target") && strcmp(key, "pin"))
			return vl_reply_invalid_param(call, key);
	}
	json_t *jt = json_object_get(params, "target");
	json_t *jp = json_object_get(params, "pin");
	if (!json_is_string(jt))
		return vl_reply_invalid_param(call, "target");
	if (jp && !json_is_string(jp) && !json_is_null(jp))
		return vl_reply_invalid_param(call, "pin");
	const char *name = json_string_value(jt);
	bool has = json_is_string(jp);
	/* set before: a target that answers at once (it never does today)
	 * would find the cancel hook in place */
	vl_call_set_cancel(call, submit_cancel, NULL);
	struct pinflow_outcome o;
	int r = pinflow_submit(&pf.flow, name, has ? json_string_value(jp) : NULL,
	                       has ? json_string_length(jp) : 0, clock_mono_ms(), call, &o);
	if (r < 0 || o.status != PINFLOW_STARTED)
		vl_call_set_cancel(call, NULL, NULL);
	if (r < 0)
		return r;
	return reply_outcome(call, name, &o);
}

/* ------------------------------------------------------------------ */
/* the practitioner target: the signer */

static bool
signer_expecting(void *arg, bool *pinpad, unsigned *min_len, unsigned *max_len,
                 const char **reason)
{
	return pinflow_signer_expecting(pf.signer ? signer_status(pf.signer) : NULL, pinpad, min_len,
	                                max_len, reason);
}

struct sdone {
	pinflow_done_fn done;
	void *done_arg;
};

static void
signer_login_done(int result, const struct signer_status *st, void *arg)
{
	struct sdone *sd = arg;
	pinflow_done_fn done = sd->done;
	void *da = sd->done_arg;
	free(sd);
	done(da, result, st->tries_left);
}

static int
signer_submit(void *arg, struct secmem_pin *pin, pinflow_done_fn done, void *done_arg)
{
	if (!pf.signer) {
		secmem_pin_free(pin);
		return -ENODEV;
	}
	struct sdone *sd = malloc(sizeof(*sd));
	if (!sd) {
		secmem_pin_free(pin);
		return -ENOMEM;
	}
	sd->done = done;
	sd->done_arg = done_arg;
	int r = signer_login(pf.signer, pin, signer_login_done, sd); /* takes pin */
	if (r < 0)
		free(sd);
	return r;
}

static const struct pinflow_target_ops signer_target_ops = {
	.expecting = signer_expecting,
	.submit = signer_submit,
};

/* ------------------------------------------------------------------ */
/* the instance's entry points (pinflow.h) */

int
pinflow_target_add(const char *name, const struct pinflow_target_ops *ops, void *arg)
{
	return pinflow_add(&pf.flow, name, ops, arg);
}

void
pinflow_target_remove(const char *name)
{
	pinflow_remove(&pf.flow, name);
}

void
pinflow_set_event_hook(pinflow_event_fn fn, void *arg)
{
	pf.hook = fn;
	pf.hook_arg = arg;
}

void
pinflow_request(const char *target, int tries_left, bool pinpad)
{
	if (pf.hook) {
		pf.hook(target, tries_left, pinpad, pf.hook_arg);
		return;
	}
	events_publish("PinRequested", json_pack("{s:s,s:o,s:b}", "target", target, "tries_left",
	                                         tries_left >= 0 ? json_integer(tries_left) : json_null(),
	                                         "pinpad", pinpad));
	if (tries_left >= 0)
		log_notice("PIN required for %s (%d tries left)%s", target, tries_left,
		           pinpad ? ": type it on the reader's keypad" : "");
	else
		log_notice("PIN required for %s%s", target,
		           pinpad ? ": type it on the reader's keypad" : "");
}

/* A CPS certificate's subject serialNumber is the type of identifier
 * followed by the identifier: "8" + the 11-digit RPPS number. The sheet
 * carries the RPPS number itself; anything else is passed as it is (and a
 * wrong length is refused when the sheet is checked, never cut). */
static const char *
cps_national_id(const char *serial)
{
	size_t n = strlen(serial);
	if (n == 12 && serial[0] == '8' && strspn(serial, "0123456789") == 12)
		return serial + 1;
	return serial;
}

void
pinflow_practitioner(const char **id, const char **structure, const char **who)
{
	const struct config *c = pf.d ? pf.d->cfg : NULL;
	const struct signer_status *st = pf.signer ? signer_status(pf.signer) : NULL;
	*id = c && c->practitioner_id[0] ? c->practitioner_id :
	      st && st->cert_id[0]        ? cps_national_id(st->cert_id) :
	                                    NULL;
	*structure = c && c->structure_id[0] ? c->structure_id : NULL;
	*who = st && st->who[0] ? st->who : NULL;
}

static void
chain_call(pinflow_chain_fn fn, void *arg, const struct signer_chain *c)
{
	fn((const uint8_t *const *)c->der, c->len, c->n, arg);
}

int
pinflow_watch_chain(pinflow_chain_fn fn, void *arg)
{
	for (size_t i = 0; i < PINFLOW_CHAIN_WATCH_MAX; i++) {
		if (pf.chain_watch[i].fn)
			continue;
		pf.chain_watch[i].fn = fn;
		pf.chain_watch[i].arg = arg;
		const struct signer_chain *c = pf.signer ? signer_chain(pf.signer) : NULL;
		if (c)
			chain_call(fn, arg, c);
		return 0;
	}
	return -ENOSPC;
}

void
pinflow_unwatch_chain(pinflow_chain_fn fn, void *arg)
{
	for (size_t i = 0; i < PINFLOW_CHAIN_WATCH_MAX; i++)
		if (pf.chain_watch[i].fn == fn && pf.chain_watch[i].arg == arg)
			pf.chain_watch[i].fn = NULL;
}

static void
on_signer_chain(struct signer *s, const struct signer_chain *c, void *arg)
{
	(void)s;
	(void)arg;
	for (size_t i = 0; i < PINFLOW_CHAIN_WATCH_MAX; i++)
		if (pf.chain_watch[i].fn)
			chain_call(pf.chain_watch[i].fn, pf.chain_watch[i].arg, c);
}

/* The signing certificate for GetSigner: null before the signer read it,
 * {present: false} when the key has none. */
static json_t *
certificate_json(void)
{
	const struct signer_chain *c = pf.signer ? signer_chain(pf.signer) : NULL;
	if (!c)
		return json_null();
	if (c->n == 0)
		return json_pack("{s:b}", "present", 0);
	unsigned char md[32];
	char hexd[65], subj[256] = "", until[32] = "";
	const unsigned char *q = c->der[0];
	X509 *x = d2i_X509(NULL, &q, (long)c->len[0]);
	SHA256(c->der[0], c->len[0], md);
	hex_encode(md, sizeof(md), false, hexd, sizeof(hexd));
	if (x) {
		X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
		struct tm tm;
		if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
			strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
		X509_free(x);
	}
	return json_pack("{s:b,s:s,s:s,s:s,s:i}", "present", 1, "subject", subj, "not_after", until,
	                 "sha256", hexd, "chain_length", (int)c->n);
}

struct signer *
pinflow_signer(void)
{
	return pf.signer;
}

/* ------------------------------------------------------------------ */
/* GetSigner, SignerSelfTest, status */

static int
m_get_signer(struct vl_call *call, json_t *params, void *arg)
{
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	struct daemon *d = arg;
	const char *id, *structure, *who;
	pinflow_practitioner(&id, &structure, &who);
	const struct signer_status *st = pf.signer ? signer_status(pf.signer) : NULL;
	json_t *idle = json_null();
	if (st && st->logged_in && st->needs_pin && d->cfg->pin_idle_timeout_s > 0) {
		uint64_t used = signer_idle_ms(pf.signer) / 1000u;
		long left = d->cfg->pin_idle_timeout_s - (long)used;
		idle = json_integer(left > 0 ? left : 0);
	}
	return vl_reply(call, json_pack(
		"{s:s,s:s,s:b,s:o,s:o,s:o,s:o,s:b,s:o,s:o,s:o,s:o,s:o}",
		"backend", d->cfg->signer_backend,
		"state", signer_state_name(st ? st->state : SIGNER_DISABLED),
		"logged_in", st && st->logged_in,
		"who", opt_str(who),
		"practitioner_id", opt_str(id),
		"structure_id", opt_str(structure),
		"key_alg", opt_str(st ? signer_alg_name(st->cose_alg) : NULL),
		"pinpad", st && st->pinpad,
		"tries_left", maybe_int(st ? st->tries_left : -1),
		"token", opt_str(st ? st->token : NULL),
		"reason", opt_str(st ? st->reason : NULL),
		"idle_logout_in_s", idle,
		"certificate", certificate_json()));
}

static json_t *
b64(const uint8_t *p, size_t n)
{
	char *s = b64_encode_alloc(p, n);
	json_t *j = s ? json_string(s) : NULL;
	free(s);
	return j ? j : json_null();
}

static void
selftest_done(const struct signer_selftest *t, void *arg)
{
	struct vl_call *call = pf.selftest_call;
	pf.selftest_call = NULL;
	if (!call)
		return;
	vl_call_set_cancel(call, NULL, NULL);
	if (t->result < 0) {
		struct pinflow_target *tg = pinflow_find(&pf.flow, PINFLOW_TARGET_PRACTITIONER);
		if (t->result == SIGNER_E_LOGIN_NEEDED || t->result == SIGNER_E_NO_TOKEN) {
			vl_reply_error(call, VL_ERR("SignerUnavailable"),
			               json_pack("{s:s}", "reason",
			                         t->result == SIGNER_E_LOGIN_NEEDED ? "not logged in: submit the PIN first"
			                                                            : "no token or card is present"));
		} else if (tg) {
			struct pinflow_answer a = { tg->name, t->result, -1, 0, 0 };
			bool pp;
			const char *rs;
			tg->ops->expecting(tg->arg, &pp, &a.min_len, &a.max_len, &rs);
			reply_answer(call, &a);
		} else {
			vl_reply_error(call, VL_ERR("InternalError"), json_pack("{s:s}", "reason", "self-test failed"));
		}
		return;
	}
	double per_s = t->elapsed_us ? (double)t->rounds * 1e6 / (double)t->elapsed_us : 0.0;
	vl_reply(call, json_pack("{s:s,s:b,s:i,s:I,s:f,s:o,s:o,s:o}", "key_alg",
	                         signer_alg_name(t->cose_alg) ? signer_alg_name(t->cose_alg) : "?",
	                         "verified", t->verified, "rounds", (int)t->rounds, "elapsed_us",
	                         (json_int_t)t->elapsed_us, "signatures_per_s", per_s, "tbs",
	                         b64(t->tbs, t->tbs_len), "signature", b64(t->sig, t->sig_len),
	                         "public_key", t->pub ? b64(t->pub, t->pub_len) : json_null()));
}

static void
selftest_cancel(struct vl_call *call, void *arg)
{
	if (pf.selftest_call == call)
		pf.selftest_call = NULL;
}

static int
m_selftest(struct vl_call *call, json_t *params, void *arg)
{
	const char *key;
	json_t *v;
	json_object_foreach(params, key, v) {
		if (strcmp(key, "rounds"))
			return vl_reply_invalid_param(call, key);
	}
	json_t *jr = json_object_get(params, "rounds");
	json_int_t rounds = 1;
	if (jr && !json_is_null(jr)) {
		if (!json_is_integer(jr) || json_integer_value(jr) < 1 ||
		    json_integer_value(jr) > PINFLOW_SELFTEST_MAX)
			return vl_reply_invalid_param(call, "rounds");
		rounds = json_integer_value(jr);
	}
	if (!pf.signer)
		return vl_reply_error(call, VL_ERR("SignerUnavailable"),
		                      json_pack("{s:s}", "reason", "no signer is configured"));
	if (pf.selftest_call)
		return reply_rate_limited(call, 1, "a self-test is running");
	int r = signer_selftest(pf.signer, (unsigned)rounds, selftest_done, NULL);
	if (r < 0)
		return r;
	pf.selftest_call = call;
	vl_call_set_cancel(call, selftest_cancel, NULL);
	return 0;
}

static void
status_provider(struct daemon *d, json_t *status, void *arg)
{
	const struct signer_status *st = pf.signer ? signer_status(pf.signer) : NULL;
	const char *id, *structure, *who;
	pinflow_practitioner(&id, &structure, &who);
	const struct signer_chain *c = pf.signer ? signer_chain(pf.signer) : NULL;
	json_object_set_new(status, "signer",
	                    json_pack("{s:s,s:s,s:b,s:o,s:o,s:s}", "backend", d->cfg->signer_backend,
	                              "state", signer_state_name(st ? st->state : SIGNER_DISABLED),
	                              "logged_in", st && st->logged_in, "who", opt_str(who),
	                              "key_alg",
	                              opt_str(st ? signer_alg_name(st->cose_alg) : NULL),
	                              "certificate", !c ? "unknown" : c->n ? "present" : "none"));
}

static void
on_signer_status(struct signer *s, const struct signer_status *st, void *arg)
{
	enum signer_state old = pf.last_state;
	pf.last_state = st->state;
	if (st->state == SIGNER_LOCKED && old != SIGNER_LOCKED)
		pinflow_request(PINFLOW_TARGET_PRACTITIONER, st->tries_left, st->pinpad);
	if (st->state == SIGNER_BLOCKED && old != SIGNER_BLOCKED)
		log_warn("signer: the practitioner's PIN is blocked; unblock the card with its unblock "
		         "code (outside vitaled)");
}

/* ------------------------------------------------------------------ */
/* module */

int
pinflow_init(struct daemon *d)
{
	memset(&pf, 0, sizeof(pf));
	pf.d = d;
	pf.last_state = SIGNER_STARTING;
	pinflow_setup(&pf.flow, on_answer, NULL);
	secmem_init();
	void *probe;
	int r = secmem_alloc(1, &probe);
	if (r < 0)
		log_err("pin: cannot lock memory (%s): PIN submission will fail until LimitMEMLOCK "
		        "allows a few pages", strerror(-r));
	else
		secmem_free(probe, 1);

	if (strcmp(d->cfg->signer_backend, "none") != 0) {
		r = signer_new(d->loop, d->cfg, on_signer_status, NULL, &pf.signer);
		if (r < 0) {
			log_err("signer: backend '%s': %s", d->cfg->signer_backend,
			        r == -ENOTSUP ? "not compiled in" : strerror(-r));
			return r;
		}
		signer_set_chain_fn(pf.signer, on_signer_chain, NULL);
		log_info("signer: backend %s", d->cfg->signer_backend);
	}
	pinflow_add(&pf.flow, PINFLOW_TARGET_PRACTITIONER, &signer_target_ops, NULL);
	status_add_provider(status_provider, NULL);
	vl_server_add_method(d->api, TERMINAL_IFACE ".SubmitPin", m_submit_pin, d, VL_CONTROL);
	vl_server_add_method(d->api, TERMINAL_IFACE ".GetSigner", m_get_signer, d, 0);
	vl_server_add_method(d->api, TERMINAL_IFACE ".SignerSelfTest", m_selftest, d, VL_CONTROL);
	return 0;
}

void
pinflow_fini(struct daemon *d)
{
	pinflow_shutdown(&pf.flow); /* waiting SubmitPins: ShuttingDown */
	if (pf.selftest_call) {
		vl_call_set_cancel(pf.selftest_call, NULL, NULL);
		vl_reply_error(pf.selftest_call, VL_ERR("ShuttingDown"), NULL);
		pf.selftest_call = NULL;
	}
	signer_free(pf.signer); /* logs out */
	pf.signer = NULL;
	memset(pf.chain_watch, 0, sizeof(pf.chain_watch));
	pf.hook = NULL;
}
