/* PIN flows and the practitioner's signer as a daemon module; see pinflow.h.
 *
 * SubmitPin goes: parameters -> target -> rate limit -> "is a PIN wanted"
 * -> shape check (digits, bounds) -> locked memory -> the target (the
 * signer's worker, or a card session) -> a deferred reply. The JSON string
 * the PIN came in is freed by the varlink layer after the handler returns;
 * jansson's free wipes it (secmem_init), and the socket buffer is wiped by
 * daemon/core/varlink.c. Nothing here copies the PIN anywhere else, and no log
 * line or error carries it.
 */
#include "daemon/pin/pinflow.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cards/cards.h"
#include "daemon/core/events.h"
#include "lib/log.h"
#include "protocol/pin.h"

struct target {
	bool used;
	char name[PINFLOW_TARGET_NAME_MAX];
	const struct pinflow_target_ops *ops;
	void *arg;
	uint64_t attempts[PINFLOW_RATE_MAX]; /* monotonic ms, ring */
	unsigned next;
	struct vl_call *call; /* the SubmitPin waiting for this target */
	bool busy;            /* a check is running (even if its caller left) */
	unsigned gen;         /* bumped on remove: late results are dropped */
};

static struct {
	struct daemon *d;
	struct signer *signer;
	struct target targets[PINFLOW_TARGET_MAX];
	pinflow_event_fn hook;
	void *hook_arg;
	enum signer_state last_state;
	struct vl_call *selftest_call;
} pf;

#define ERR(name) TERMINAL_IFACE "." name

/* ------------------------------------------------------------------ */
/* targets and rate limiting */

static struct target *
target_find(const char *name)
{
	for (size_t i = 0; i < PINFLOW_TARGET_MAX; i++)
		if (pf.targets[i].used && !strcmp(pf.targets[i].name, name))
			return &pf.targets[i];
	return NULL;
}

static bool
is_card_target(const char *name)
{
	return !strncmp(name, PINFLOW_CARD_PREFIX, strlen(PINFLOW_CARD_PREFIX));
}

/* The newest attempt recorded in t (0: none). */
static uint64_t
last_attempt(const struct target *t)
{
	uint64_t m = 0;
	for (size_t i = 0; i < PINFLOW_RATE_MAX; i++)
		if (t->attempts[i] > m)
			m = t->attempts[i];
	return m;
}

int
pinflow_target_add(const char *name, const struct pinflow_target_ops *ops, void *arg)
{
	if (!name || strlen(name) >= sizeof(pf.targets[0].name) || !ops)
		return -EINVAL;
	if (target_find(name))
		return -EEXIST;
	/* a free slot: the one this name had (its attempts still count), else
	 * the free slot whose last attempt is the oldest */
	struct target *t = NULL;
	for (size_t i = 0; i < PINFLOW_TARGET_MAX; i++) {
		struct target *c = &pf.targets[i];
		if (c->used)
			continue;
		if (!strcmp(c->name, name)) {
			t = c;
			break;
		}
		if (!t || last_attempt(c) < last_attempt(t))
			t = c;
	}
	if (!t)
		return -ENOSPC;
	bool same = !strcmp(t->name, name);
	unsigned gen = t->gen;
	if (!same)
		memset(t, 0, sizeof(*t));
	t->gen = gen + 1;
	t->used = true;
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->ops = ops;
	t->arg = arg;
	t->call = NULL;
	t->busy = false;
	return 0;
}

/* NoCard {reader} for a card target ("card:<reader>"). */
static void
reply_no_card(struct vl_call *call, const char *name)
{
	vl_reply_error(call, ERR("NoCard"),
	               json_pack("{s:s}", "reader", name + strlen(PINFLOW_CARD_PREFIX)));
}

void
pinflow_target_remove(const char *name)
{
	struct target *t = target_find(name);
	if (!t)
		return;
	if (t->call) {
		vl_call_set_cancel(t->call, NULL, NULL);
		if (is_card_target(t->name))
			reply_no_card(t->call, t->name);
		else
			vl_reply_error(t->call, ERR("PinNotExpected"),
			               json_pack("{s:s,s:s}", "target", t->name, "reason",
			                         "the token went away"));
	}
	/* name and attempts stay: see pinflow_target_add */
	t->call = NULL;
	t->busy = false;
	t->used = false;
	t->ops = NULL;
	t->arg = NULL;
	t->gen++;
}

/* 0, or the seconds to wait before the next attempt. */
static unsigned
rate_wait_s(const struct target *t, uint64_t now)
{
	uint64_t oldest = t->attempts[t->next]; /* the slot the next attempt overwrites */
	if (oldest == 0 || now - oldest >= PINFLOW_RATE_WINDOW_MS)
		return 0;
	return (unsigned)((PINFLOW_RATE_WINDOW_MS - (now - oldest) + 999) / 1000);
}

static void
rate_record(struct target *t, uint64_t now)
{
	t->attempts[t->next] = now ? now : 1;
	t->next = (t->next + 1) % PINFLOW_RATE_MAX;
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

/* ------------------------------------------------------------------ */
/* the practitioner target: the signer */

static bool
signer_expecting(void *arg, bool *pinpad, unsigned *min_len, unsigned *max_len,
                 const char **reason)
{
	const struct signer_status *st = pf.signer ? signer_status(pf.signer) : NULL;
	*pinpad = st && st->pinpad;
	*min_len = st && st->pin_min ? st->pin_min : PIN_DIGITS_MIN;
	*max_len = st && st->pin_max ? st->pin_max : SECMEM_PIN_MAX;
	if (!st) {
		*reason = "no signer is configured";
		return false;
	}
	switch (st->state) {
	case SIGNER_LOCKED: return true;
	case SIGNER_BLOCKED: return true; /* answered PinBlocked by the backend, never sent */
	case SIGNER_READY:
		*reason = st->needs_pin ? "already logged in" : "this key needs no PIN";
		return false;
	case SIGNER_NO_TOKEN: *reason = "no token or card is present"; return false;
	case SIGNER_STARTING: *reason = "the signer is starting"; return false;
	case SIGNER_DISABLED: *reason = "no signer is configured"; return false;
	case SIGNER_ERROR: *reason = "the signer is in error; see GetSigner"; return false;
	}
	*reason = "not expected";
	return false;
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
/* SubmitPin */

static json_t *
maybe_int(int v)
{
	return v >= 0 ? json_integer(v) : json_null();
}

/* The answer for result r of a check on t. */
static void
reply_result(struct vl_call *call, struct target *t, int r, int tries_left)
{
	const struct signer_status *st = pf.signer ? signer_status(pf.signer) : NULL;
	bool practitioner = !strcmp(t->name, PINFLOW_TARGET_PRACTITIONER);
	const char *why = practitioner && st && st->reason[0] ? st->reason : NULL;
	switch (r) {
	case 0:
		vl_reply(call, json_pack("{s:b,s:o}", "logged_in", 1, "tries_left", json_null()));
		return;
	case SIGNER_E_PIN_INCORRECT:
		vl_reply_error(call, ERR("PinIncorrect"),
		               json_pack("{s:s,s:o}", "target", t->name, "tries_left", maybe_int(tries_left)));
		return;
	case SIGNER_E_PIN_BLOCKED:
		vl_reply_error(call, ERR("PinBlocked"), json_pack("{s:s}", "target", t->name));
		return;
	case SIGNER_E_PIN_MALFORMED: {
		bool pp;
		unsigned lo, hi;
		const char *rs = NULL;
		t->ops->expecting(t->arg, &pp, &lo, &hi, &rs);
		vl_reply_error(call, ERR("PinMalformed"),
		               json_pack("{s:s,s:i,s:i}", "target", t->name, "min_len", (int)lo, "max_len",
		                         (int)hi));
		return;
	}
	case SIGNER_E_NOT_EXPECTED:
		vl_reply_error(call, ERR("PinNotExpected"),
		               json_pack("{s:s,s:s}", "target", t->name, "reason",
		                         why ? why : "no PIN is expected now"));
		return;
	case SIGNER_E_NO_TOKEN:
		if (is_card_target(t->name)) {
			reply_no_card(call, t->name);
			return;
		}
		vl_reply_error(call, ERR("PinNotExpected"),
		               json_pack("{s:s,s:s}", "target", t->name, "reason",
		                         "the token or card went away"));
		return;
	case SIGNER_E_CANCELLED:
		vl_reply_error(call, ERR("PinEntryCancelled"), json_pack("{s:s}", "target", t->name));
		return;
	case SIGNER_E_NO_KEY:
	case SIGNER_E_BAD_ALG:
		vl_reply_error(call, ERR("SignerUnavailable"),
		               json_pack("{s:s}", "reason", why ? why : "the key cannot be used"));
		return;
	case -ESHUTDOWN:
		vl_reply_error(call, ERR("ShuttingDown"), NULL);
		return;
	case SIGNER_E_BUSY:
		vl_reply_error(call, ERR("RateLimited"),
		               json_pack("{s:i,s:s}", "retry_after_s", 1, "reason",
		                         "a PIN for this target is being checked"));
		return;
	default:
		vl_reply_error(call, ERR("InternalError"),
		               json_pack("{s:s}", "reason",
		                         !is_card_target(t->name) ? strerror(r < 0 ? -r : r)
		                         : r == -EPROTO ? "the card refused the PIN command (its status "
		                                          "word is in the log)"
		                                        : card_strerror(r)));
		return;
	}
}

struct check {
	struct target *t;
	unsigned gen;
};

static void
check_done(void *arg, int result, int tries_left)
{
	struct check *c = arg;
	struct target *t = c->t;
	bool live = t->used && t->gen == c->gen;
	free(c);
	if (!live)
		return;
	t->busy = false;
	if (result == SIGNER_E_PIN_INCORRECT)
		log_notice("pin: wrong PIN for %s%s", t->name,
		           tries_left >= 0 ? "" : " (tries left unknown)");
	else if (result == SIGNER_E_PIN_BLOCKED)
		log_warn("pin: the PIN for %s is blocked; it will not be tried again", t->name);
	else if (result == 0)
		log_notice("pin: %s logged in", t->name);
	if (tries_left >= 0 && result == SIGNER_E_PIN_INCORRECT)
		log_notice("pin: %s has %d tries left", t->name, tries_left);
	struct vl_call *call = t->call;
	t->call = NULL;
	if (call) {
		vl_call_set_cancel(call, NULL, NULL);
		reply_result(call, t, result, tries_left);
	}
}

static void
submit_cancel(struct vl_call *call, void *arg)
{
	struct target *t = arg;
	if (t->call == call)
		t->call = NULL; /* the check goes on; its result updates the state only */
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
	struct target *t = target_find(name);
	if (!t)
		return vl_reply_error(call, ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", name, "reason", "no such PIN target"));
	uint64_t now = loop_now_ms();
	unsigned wait = rate_wait_s(t, now);
	if (wait) {
		log_notice("pin: too many attempts for %s; refused for %u s", t->name, wait);
		return vl_reply_error(call, ERR("RateLimited"),
		                      json_pack("{s:i,s:s}", "retry_after_s", (int)wait, "reason",
		                                "too many PIN attempts for this target"));
	}
	if (t->busy)
		return vl_reply_error(call, ERR("RateLimited"),
		                      json_pack("{s:i,s:s}", "retry_after_s", 1, "reason",
		                                "a PIN for this target is being checked"));
	rate_record(t, now);

	bool pinpad = false;
	unsigned lo = PIN_DIGITS_MIN, hi = SECMEM_PIN_MAX;
	const char *reason = "no PIN is expected now";
	if (!t->ops->expecting(t->arg, &pinpad, &lo, &hi, &reason))
		return vl_reply_error(call, ERR("PinNotExpected"),
		                      json_pack("{s:s,s:s}", "target", t->name, "reason", reason));
	struct secmem_pin *pin = NULL;
	if (json_is_string(jp)) {
		if (pinpad)
			return vl_reply_error(call, ERR("PinNotExpected"),
			                      json_pack("{s:s,s:s}", "target", t->name, "reason",
			                                "the reader has a keypad: type the PIN there"));
		int r = secmem_pin_new(json_string_value(jp), json_string_length(jp), lo, hi, &pin);
		if (r == -EINVAL || r == -ERANGE)
			return vl_reply_error(call, ERR("PinMalformed"),
			                      json_pack("{s:s,s:i,s:i}", "target", t->name, "min_len", (int)lo,
			                                "max_len", (int)hi));
		if (r < 0) {
			log_err("pin: cannot lock memory for a PIN (%s); raise LimitMEMLOCK", strerror(-r));
			return vl_reply_error(call, ERR("InternalError"),
			                      json_pack("{s:s}", "reason", "cannot lock memory for the PIN"));
		}
	} else if (!pinpad) {
		return vl_reply_error(call, ERR("PinMalformed"),
		                      json_pack("{s:s,s:i,s:i}", "target", t->name, "min_len", (int)lo,
		                                "max_len", (int)hi));
	}
	struct check *c = malloc(sizeof(*c));
	if (!c) {
		secmem_pin_free(pin);
		return -ENOMEM;
	}
	c->t = t;
	c->gen = t->gen;
	t->busy = true;
	t->call = call;
	vl_call_set_cancel(call, submit_cancel, t);
	int r = t->ops->submit(t->arg, pin, check_done, c); /* pin is the target's now */
	if (r < 0) {
		free(c);
		t->busy = false;
		t->call = NULL;
		vl_call_set_cancel(call, NULL, NULL);
		reply_result(call, t, r, -1);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* GetSigner, SignerSelfTest, status */

void
pinflow_practitioner(const char **id, const char **structure, const char **who)
{
	const struct config *c = pf.d ? pf.d->cfg : NULL;
	const struct signer_status *st = pf.signer ? signer_status(pf.signer) : NULL;
	*id = c && c->practitioner_id[0] ? c->practitioner_id :
	      st && st->cert_id[0]        ? st->cert_id :
	                                    NULL;
	*structure = c && c->structure_id[0] ? c->structure_id : NULL;
	*who = st && st->who[0] ? st->who : NULL;
}

struct signer *
pinflow_signer(void)
{
	return pf.signer;
}

static json_t *
opt_str(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

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
		"{s:s,s:s,s:b,s:o,s:o,s:o,s:o,s:b,s:o,s:o,s:o,s:o}",
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
		"idle_logout_in_s", idle));
}

static json_t *
b64(const uint8_t *p, size_t n)
{
	size_t cap = 4 * ((n + 2) / 3) + 1;
	unsigned char *out = malloc(cap);
	if (!out)
		return json_null();
	int k = EVP_EncodeBlock(out, p, (int)n);
	json_t *j = json_stringn((const char *)out, k > 0 ? (size_t)k : 0);
	free(out);
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
		struct target *tg = target_find(PINFLOW_TARGET_PRACTITIONER);
		if (t->result == SIGNER_E_LOGIN_NEEDED || t->result == SIGNER_E_NO_TOKEN)
			vl_reply_error(call, ERR("SignerUnavailable"),
			               json_pack("{s:s}", "reason",
			                         t->result == SIGNER_E_LOGIN_NEEDED ? "not logged in: submit the PIN first"
			                                                            : "no token or card is present"));
		else if (tg)
			reply_result(call, tg, t->result, -1);
		else
			vl_reply_error(call, ERR("InternalError"), json_pack("{s:s}", "reason", "self-test failed"));
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
		return vl_reply_error(call, ERR("SignerUnavailable"),
		                      json_pack("{s:s}", "reason", "no signer is configured"));
	if (pf.selftest_call)
		return vl_reply_error(call, ERR("RateLimited"),
		                      json_pack("{s:i,s:s}", "retry_after_s", 1, "reason",
		                                "a self-test is running"));
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
	json_object_set_new(status, "signer",
	                    json_pack("{s:s,s:s,s:b,s:o,s:o}", "backend", d->cfg->signer_backend,
	                              "state", signer_state_name(st ? st->state : SIGNER_DISABLED),
	                              "logged_in", st && st->logged_in, "who", opt_str(who),
	                              "key_alg",
	                              opt_str(st ? signer_alg_name(st->cose_alg) : NULL)));
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
		log_info("signer: backend %s", d->cfg->signer_backend);
	}
	pinflow_target_add(PINFLOW_TARGET_PRACTITIONER, &signer_target_ops, NULL);
	status_add_provider(status_provider, NULL);
	vl_server_add_method(d->api, TERMINAL_IFACE ".SubmitPin", m_submit_pin, d, VL_CONTROL);
	vl_server_add_method(d->api, TERMINAL_IFACE ".GetSigner", m_get_signer, d, 0);
	vl_server_add_method(d->api, TERMINAL_IFACE ".SignerSelfTest", m_selftest, d, VL_CONTROL);
	return 0;
}

void
pinflow_fini(struct daemon *d)
{
	for (size_t i = 0; i < PINFLOW_TARGET_MAX; i++) {
		struct target *t = &pf.targets[i];
		if (t->used && t->call) {
			vl_call_set_cancel(t->call, NULL, NULL);
			vl_reply_error(t->call, ERR("ShuttingDown"), NULL);
			t->call = NULL;
		}
		t->used = false;
		t->gen++;
	}
	if (pf.selftest_call) {
		vl_call_set_cancel(pf.selftest_call, NULL, NULL);
		vl_reply_error(pf.selftest_call, ERR("ShuttingDown"), NULL);
		pf.selftest_call = NULL;
	}
	signer_free(pf.signer); /* logs out */
	pf.signer = NULL;
	pf.hook = NULL;
}
