/* The PIN flow's state machine; see pinflow.h.
 *
 * A submission goes: target -> rate limit -> busy -> "is a PIN wanted"
 * -> shape check (digits, bounds) -> locked memory -> the target (the
 * signer's worker, or a card session) -> the waiter's answer. The PIN the
 * caller passes stays the caller's (api_pin.c's JSON string, wiped by
 * jansson's free: secmem_init); the only copy made here is the locked one
 * handed to the target. No log line carries a PIN.
 */
#include "daemon/pin/pinflow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "protocol/pin.h"

void
pinflow_setup(struct pinflow *pf, pinflow_answer_fn fn, void *arg)
{
	memset(pf, 0, sizeof(*pf));
	pf->answer = fn;
	pf->answer_arg = arg;
}

struct pinflow_target *
pinflow_find(struct pinflow *pf, const char *name)
{
	for (size_t i = 0; i < PINFLOW_TARGET_MAX; i++)
		if (pf->targets[i].used && !strcmp(pf->targets[i].name, name))
			return &pf->targets[i];
	return NULL;
}

bool
pinflow_is_card(const char *name)
{
	return !strncmp(name, PINFLOW_CARD_PREFIX, strlen(PINFLOW_CARD_PREFIX));
}

/* The newest attempt recorded in t (0: none). */
static uint64_t
last_attempt(const struct pinflow_target *t)
{
	uint64_t m = 0;
	for (size_t i = 0; i < PINFLOW_RATE_MAX; i++)
		if (t->attempts[i] > m)
			m = t->attempts[i];
	return m;
}

int
pinflow_add(struct pinflow *pf, const char *name, const struct pinflow_target_ops *ops, void *arg)
{
	if (!name || strlen(name) >= sizeof(pf->targets[0].name) || !ops)
		return -EINVAL;
	if (pinflow_find(pf, name))
		return -EEXIST;
	/* a free slot: the one this name had (its attempts still count), else
	 * the free slot whose last attempt is the oldest */
	struct pinflow_target *t = NULL;
	for (size_t i = 0; i < PINFLOW_TARGET_MAX; i++) {
		struct pinflow_target *c = &pf->targets[i];
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
	t->waiter = NULL;
	t->busy = false;
	return 0;
}

static void
answer(struct pinflow *pf, struct pinflow_target *t, void *waiter, int result, int tries_left)
{
	struct pinflow_answer a = { .target = t->name, .result = result, .tries_left = tries_left,
		                    .min_len = PIN_DIGITS_MIN, .max_len = SECMEM_PIN_MAX };
	if (t->used && t->ops) {
		bool pp;
		const char *rs = NULL;
		t->ops->expecting(t->arg, &pp, &a.min_len, &a.max_len, &rs);
	}
	if (pf->answer)
		pf->answer(waiter, &a, pf->answer_arg);
}

void
pinflow_remove(struct pinflow *pf, const char *name)
{
	struct pinflow_target *t = pinflow_find(pf, name);
	if (!t)
		return;
	void *w = t->waiter;
	/* name and attempts stay: see pinflow_add */
	t->waiter = NULL;
	t->busy = false;
	t->used = false;
	t->ops = NULL;
	t->arg = NULL;
	t->gen++;
	if (w)
		answer(pf, t, w, PINFLOW_E_GONE, -1);
}

void
pinflow_shutdown(struct pinflow *pf)
{
	for (size_t i = 0; i < PINFLOW_TARGET_MAX; i++) {
		struct pinflow_target *t = &pf->targets[i];
		void *w = t->used ? t->waiter : NULL;
		t->waiter = NULL;
		if (w)
			answer(pf, t, w, -ESHUTDOWN, -1);
		t->used = false;
		t->gen++;
	}
}

unsigned
pinflow_rate_wait_s(const struct pinflow_target *t, uint64_t now)
{
	uint64_t oldest = t->attempts[t->next]; /* the slot the next attempt overwrites */
	if (oldest == 0 || now - oldest >= PINFLOW_RATE_WINDOW_MS)
		return 0;
	return (unsigned)((PINFLOW_RATE_WINDOW_MS - (now - oldest) + 999) / 1000);
}

static void
rate_record(struct pinflow_target *t, uint64_t now)
{
	t->attempts[t->next] = now ? now : 1;
	t->next = (t->next + 1) % PINFLOW_RATE_MAX;
}

bool
pinflow_signer_expecting(const struct signer_status *st, bool *pinpad, unsigned *min_len,
                         unsigned *max_len, const char **reason)
{
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

/* ------------------------------------------------------------------ */
/* a check */

struct check {
	struct pinflow *pf;
	struct pinflow_target *t;
	unsigned gen;
};

static void
check_done(void *arg, int result, int tries_left)
{
	struct check *c = arg;
	struct pinflow *pf = c->pf;
	struct pinflow_target *t = c->t;
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
	void *w = t->waiter;
	t->waiter = NULL;
	if (w)
		answer(pf, t, w, result, tries_left);
}

void
pinflow_forget_waiter(struct pinflow *pf, void *waiter)
{
	for (size_t i = 0; i < PINFLOW_TARGET_MAX; i++)
		if (pf->targets[i].waiter == waiter)
			pf->targets[i].waiter = NULL;
}

/* The shape checks and the locked copy: PINFLOW_STARTED with *pin set
 * (NULL for the keypad), or the refusal in out. */
static void
take_pin(const struct pinflow_target *t, const char *pin, size_t pin_len, bool pinpad,
         struct secmem_pin **locked, struct pinflow_outcome *out)
{
	*locked = NULL;
	if (pin && pinpad) {
		out->status = PINFLOW_KEYPAD_ONLY;
		out->reason = "the reader has a keypad: type the PIN there";
		return;
	}
	if (!pin && !pinpad) {
		out->status = PINFLOW_MALFORMED;
		return;
	}
	if (!pin)
		return;
	int r = secmem_pin_new(pin, pin_len, out->min_len, out->max_len, locked);
	if (r == -EINVAL || r == -ERANGE) {
		out->status = PINFLOW_MALFORMED;
	} else if (r < 0) {
		log_err("pin: cannot lock memory for a PIN (%s); raise LimitMEMLOCK", strerror(-r));
		out->status = PINFLOW_NO_MEMORY;
		out->result = r;
	}
}

int
pinflow_submit(struct pinflow *pf, const char *name, const char *pin, size_t pin_len,
               uint64_t now, void *waiter, struct pinflow_outcome *out)
{
	*out = (struct pinflow_outcome){ .status = PINFLOW_STARTED, .min_len = PIN_DIGITS_MIN,
		                         .max_len = SECMEM_PIN_MAX };
	struct pinflow_target *t = pinflow_find(pf, name);
	if (!t) {
		out->status = PINFLOW_NO_TARGET;
		out->reason = "no such PIN target";
		return 0;
	}
	unsigned wait = pinflow_rate_wait_s(t, now);
	if (wait) {
		log_notice("pin: too many attempts for %s; refused for %u s", t->name, wait);
		out->status = PINFLOW_RATE_LIMITED;
		out->retry_after_s = wait;
		out->reason = "too many PIN attempts for this target";
		return 0;
	}
	if (t->busy) {
		out->status = PINFLOW_BUSY;
		out->retry_after_s = 1;
		out->reason = "a PIN for this target is being checked";
		return 0;
	}
	rate_record(t, now);

	bool pinpad = false;
	const char *reason = "no PIN is expected now";
	if (!t->ops->expecting(t->arg, &pinpad, &out->min_len, &out->max_len, &reason)) {
		out->status = PINFLOW_NOT_EXPECTED;
		out->reason = reason;
		return 0;
	}
	struct secmem_pin *locked;
	take_pin(t, pin, pin_len, pinpad, &locked, out);
	if (out->status != PINFLOW_STARTED)
		return 0;
	struct check *c = malloc(sizeof(*c));
	if (!c) {
		secmem_pin_free(locked);
		return -ENOMEM;
	}
	*c = (struct check){ pf, t, t->gen };
	t->busy = true;
	t->waiter = waiter;
	int r = t->ops->submit(t->arg, locked, check_done, c); /* the PIN is the target's now */
	if (r < 0) {
		free(c);
		t->busy = false;
		t->waiter = NULL;
		out->status = PINFLOW_FAILED;
		out->result = r;
	}
	return 0;
}
