/* The card PIN step's state machine; see cardlogin.h. The sessions that
 * talk to the card, the events and the API are api_cardlogin.c's.
 *
 * What must stay true: a blocked card never gets a PIN (the entry answers
 * PinBlocked at once, and cardpin_verify asks the card again before it
 * sends one); nothing here sees a PIN at all.
 */
#include "daemon/pin/cardlogin.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/cards/cards.h"
#include "lib/log.h"

static const char *const state_names[] = { "probing",  "required",     "checking", "verified",
	                                   "blocked",  "not_required", "unusable" };

const char *
cardlogin_state_name(enum cardlogin_state st)
{
	return (unsigned)st < sizeof(state_names) / sizeof(state_names[0]) ? state_names[st] : "?";
}

struct cardlogin_entry *
cardlogin_find(struct cardlogin *cl, const char *reader)
{
	for (size_t i = 0; i < CARDLOGIN_MAX; i++)
		if (cl->entries[i].used && !strcmp(cl->entries[i].reader, reader))
			return &cl->entries[i];
	return NULL;
}

struct cardlogin_entry *
cardlogin_find_target(struct cardlogin *cl, const char *name)
{
	struct cardlogin_entry *e = NULL;
	for (size_t i = 0; i < CARDLOGIN_MAX; i++)
		if (cl->entries[i].used && !strcmp(cl->entries[i].target, name))
			e = &cl->entries[i];
	return e;
}

/* A free slot: the one this reader had, else one never used, else any. */
static struct cardlogin_entry *
entry_slot(struct cardlogin *cl, const char *reader)
{
	struct cardlogin_entry *fresh = NULL, *any = NULL;
	for (size_t i = 0; i < CARDLOGIN_MAX; i++) {
		struct cardlogin_entry *e = &cl->entries[i];
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

struct cardlogin_entry *
cardlogin_card_in(struct cardlogin *cl, const char *reader, const char *profile,
                  const char *atr_hex, const struct pin_params *params)
{
	struct cardlogin_entry *e = entry_slot(cl, reader);
	if (!e)
		return NULL;
	uint64_t ua[CARDLOGIN_UNBLOCK_MAX];
	unsigned un = 0;
	unsigned gen = e->gen;
	bool same = !strcmp(e->reader, reader);
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
	snprintf(e->reader, sizeof(e->reader), "%s", reader);
	snprintf(e->target, sizeof(e->target), "%s%s", PINFLOW_CARD_PREFIX, reader);
	snprintf(e->profile, sizeof(e->profile), "%s", profile);
	snprintf(e->atr_hex, sizeof(e->atr_hex), "%s", atr_hex);
	e->params = *params;
	e->state = CARDLOGIN_PROBING;
	e->tries_left = -1;
	return e;
}

bool
cardlogin_card_out(struct cardlogin_entry *e)
{
	bool verified = e->state == CARDLOGIN_VERIFIED;
	e->used = false;
	e->gen++;
	e->session = false; /* a session still running finds another generation */
	e->unblock_waiter = NULL;
	e->state = CARDLOGIN_PROBING;
	e->verified_at[0] = '\0';
	/* reader, gen and the unblock attempts stay with the slot */
	return verified;
}

enum cardlogin_event
cardlogin_probe_done(struct cardlogin_entry *e, int rc, const struct pin_result *res,
                     uint32_t found_direct)
{
	e->verify_direct = found_direct;
	e->pinpad = found_direct != 0;
	e->tries_left = -1;
	if (rc < 0) {
		if (rc == -ENODEV)
			return CARDLOGIN_EV_NONE; /* the card left; its removal ends the entry */
		/* VERIFY asks again before it sends anything: let the holder try,
		 * unless the card turns out to have left (the module waits a little) */
		log_warn("pin: cannot ask the card in %s for its tries left (%s)", e->reader,
		         card_strerror(rc));
		return CARDLOGIN_EV_LATER;
	}
	switch (res->status) {
	case PIN_ST_NEEDED:
		e->state = CARDLOGIN_REQUIRED;
		e->tries_left = res->tries_left;
		return CARDLOGIN_EV_REQUIRED;
	case PIN_ST_OK:
		e->state = CARDLOGIN_NOT_NEEDED;
		log_info("pin: the %s card in %s asks for no PIN now (9000 to the query)", e->profile,
		         e->reader);
		return CARDLOGIN_EV_NONE;
	case PIN_ST_BLOCKED:
		e->state = CARDLOGIN_BLOCKED;
		e->tries_left = 0;
		return CARDLOGIN_EV_BLOCKED;
	case PIN_ST_REF_NOT_FOUND:
	case PIN_ST_NOT_SUPPORTED:
	case PIN_ST_REF_UNUSABLE:
		e->state = CARDLOGIN_UNUSABLE;
		snprintf(e->reason, sizeof(e->reason), "the card has no usable PIN %02X (it answered %04X)",
		         e->params.ref, res->sw);
		log_warn("pin: %s: %s; check the profile's [pin] section", e->target, e->reason);
		return CARDLOGIN_EV_NONE;
	default:
		/* a card that does not do the query (ISO 7816-4 makes it
		 * optional): tries unknown, VERIFY will tell */
		log_info("pin: the card in %s answered %04X to the tries-left query", e->reader, res->sw);
		e->state = CARDLOGIN_REQUIRED;
		return CARDLOGIN_EV_REQUIRED;
	}
}

/* A VERIFY that did not get the card's answer. */
static int
verify_failed(struct cardlogin_entry *e, int rc, const char *reader)
{
	if (e)
		e->state = CARDLOGIN_REQUIRED;
	switch (rc) {
	case -EINVAL:
	case -ERANGE: return SIGNER_E_PIN_MALFORMED;
	case -ENODEV: return SIGNER_E_NO_TOKEN;
	default:
		log_warn("pin: VERIFY on the card in %s failed: %s", reader, card_strerror(rc));
		return rc;
	}
}

int
cardlogin_verify_done(struct cardlogin_entry *e, int rc, const struct pin_result *res, int *tries,
                      enum cardlogin_event *ev)
{
	*tries = -1;
	*ev = CARDLOGIN_EV_NONE;
	if (rc < 0)
		return verify_failed(e, rc, e ? e->reader : "?");
	int result;
	enum cardlogin_state st = CARDLOGIN_REQUIRED;
	switch (res->status) {
	case PIN_ST_OK:
		st = CARDLOGIN_VERIFIED;
		result = 0;
		break;
	case PIN_ST_INCORRECT:
	case PIN_ST_NEEDED:
		*tries = res->tries_left;
		result = SIGNER_E_PIN_INCORRECT;
		break;
	case PIN_ST_BLOCKED:
		st = CARDLOGIN_BLOCKED;
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
		log_warn("pin: the card in %s refused VERIFY: %04X (%s)", e ? e->reader : "?", res->sw,
		         pin_status_name(res->status));
		result = -EPROTO;
		break;
	}
	if (!e)
		return result;
	e->state = st;
	if (result == SIGNER_E_PIN_INCORRECT)
		e->tries_left = *tries;
	if (st == CARDLOGIN_VERIFIED) {
		e->tries_left = -1;
		log_notice("pin: %s verified (%s card)", e->target, e->profile);
		*ev = CARDLOGIN_EV_VERIFIED;
	} else if (st == CARDLOGIN_BLOCKED) {
		e->tries_left = 0;
		*ev = CARDLOGIN_EV_BLOCKED;
	} else if (result == SIGNER_E_PIN_INCORRECT || result == SIGNER_E_CANCELLED) {
		*ev = CARDLOGIN_EV_REQUIRED; /* still wanted, with the new count */
	}
	return result;
}

bool
cardlogin_expecting(const struct cardlogin_entry *e, bool *pinpad, unsigned *min_len,
                    unsigned *max_len, const char **reason)
{
	*pinpad = e->pinpad;
	*min_len = e->params.min_len;
	*max_len = e->params.max_len;
	switch (e->state) {
	case CARDLOGIN_REQUIRED: return true;
	case CARDLOGIN_BLOCKED: return true; /* answered PinBlocked by the submit; nothing is sent */
	case CARDLOGIN_PROBING: *reason = "the card is being asked for its PIN state: wait for PinRequested"; break;
	case CARDLOGIN_CHECKING: *reason = "a PIN for this card is being checked"; break;
	case CARDLOGIN_VERIFIED: *reason = "the card's PIN is already verified"; break;
	case CARDLOGIN_NOT_NEEDED: *reason = "the card asks for no PIN now"; break;
	case CARDLOGIN_UNUSABLE: *reason = e->reason; break;
	}
	return false;
}

int
cardlogin_submit_check(const struct cardlogin_entry *e, bool has_pin)
{
	if (e->state == CARDLOGIN_BLOCKED) {
		log_notice("pin: %s is blocked: the PIN was not sent to the card", e->target);
		return SIGNER_E_PIN_BLOCKED;
	}
	if (e->state != CARDLOGIN_REQUIRED)
		return SIGNER_E_NOT_EXPECTED;
	if (e->session)
		return SIGNER_E_BUSY;
	if (!has_pin && !e->pinpad)
		return SIGNER_E_PIN_MALFORMED;
	return 0;
}

enum cardlogin_unblock_check
cardlogin_unblock_begin(struct cardlogin_entry *e, uint64_t now, unsigned *wait_s)
{
	*wait_s = 0;
	if (!e->params.puk_len)
		return CARDLOGIN_UNBLOCK_NO_PUK;
	uint64_t oldest = e->unblock_at[e->unblock_next];
	if (oldest && now - oldest < CARDLOGIN_UNBLOCK_WINDOW_MS) {
		*wait_s = (unsigned)((CARDLOGIN_UNBLOCK_WINDOW_MS - (now - oldest) + 999) / 1000);
		return CARDLOGIN_UNBLOCK_RATE_LIMITED;
	}
	if (e->session || e->state == CARDLOGIN_CHECKING || e->state == CARDLOGIN_PROBING)
		return CARDLOGIN_UNBLOCK_BUSY;
	if (e->state != CARDLOGIN_REQUIRED && e->state != CARDLOGIN_BLOCKED)
		return CARDLOGIN_UNBLOCK_NOT_NOW;
	e->unblock_at[e->unblock_next] = now ? now : 1;
	e->unblock_next = (e->unblock_next + 1) % CARDLOGIN_UNBLOCK_MAX;
	return CARDLOGIN_UNBLOCK_GO;
}

enum cardlogin_unblock_result
cardlogin_unblock_done(struct cardlogin_entry *e, int rc, const struct pin_result *res,
                       const struct pin_result *query, enum cardlogin_event *ev)
{
	*ev = CARDLOGIN_EV_NONE;
	e->state = e->tries_left == 0 ? CARDLOGIN_BLOCKED : CARDLOGIN_REQUIRED;
	if (rc < 0) {
		log_warn("pin: RESET RETRY COUNTER on the card in %s failed: %s", e->reader,
		         card_strerror(rc));
		if (rc == -ENODEV)
			return CARDLOGIN_UNBLOCK_NO_CARD;
		if (rc == -EINVAL || rc == -ERANGE)
			return CARDLOGIN_UNBLOCK_BAD_CODE_SHAPE;
		return CARDLOGIN_UNBLOCK_FAILED;
	}
	switch (res->status) {
	case PIN_ST_OK:
		e->state = CARDLOGIN_REQUIRED;
		e->tries_left = query->status == PIN_ST_NEEDED ? query->tries_left : -1;
		log_notice("pin: %s unblocked with its unblock code", e->target);
		*ev = CARDLOGIN_EV_REQUIRED;
		return CARDLOGIN_UNBLOCKED;
	case PIN_ST_INCORRECT:
		log_notice("pin: wrong unblock code for %s", e->target);
		return CARDLOGIN_UNBLOCK_INCORRECT;
	case PIN_ST_BLOCKED:
		log_warn("pin: the unblock code of %s is blocked too", e->target);
		return CARDLOGIN_UNBLOCK_CODE_BLOCKED;
	case PIN_ST_WRONG_DATA:
		return CARDLOGIN_UNBLOCK_BAD_PIN_SHAPE;
	default:
		log_warn("pin: the card in %s refused RESET RETRY COUNTER: %04X (%s)", e->reader,
		         res->sw, pin_status_name(res->status));
		return CARDLOGIN_UNBLOCK_REFUSED;
	}
}
