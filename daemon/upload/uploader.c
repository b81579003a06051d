/* The uploader's state machine (see uploader.h). The rules are those of
 * INSURER.md "Other answers": 200 with the documented JSON is committed;
 * 400/409/413 are never resent as they are (split, or the lone sheet is
 * rejected); 401/403 stop until the cap; everything else is transient and
 * resends the same bytes after an exponential backoff with full jitter,
 * never sooner than Retry-After.
 */
#include "daemon/upload/uploader.h"

#include <stdio.h>
#include <string.h>

static const char *const state_names[] = { "disabled", "idle", "sending", "offline", "error" };

const char *
uploader_state_name(enum uploader_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

void
uploader_init(struct uploader *u, const struct uploader_cfg *c, bool enabled)
{
	memset(u, 0, sizeof(*u));
	u->c = *c;
	u->state = enabled ? UPLOADER_IDLE : UPLOADER_DISABLED;
	u->next_ms = UPLOADER_NEVER;
	snprintf(u->why, sizeof(u->why), "%s", enabled ? "" : "no insurer configured");
}

static void
set_state(struct uploader *u, enum uploader_state s, const char *why)
{
	u->state = s;
	snprintf(u->why, sizeof(u->why), "%s", why ? why : "");
}

static uint64_t
plan(struct uploader *u, uint64_t now, uint64_t delay)
{
	u->next_ms = now + delay;
	return delay;
}

uint64_t
uploader_trigger(struct uploader *u, uint64_t now, enum uploader_trigger t)
{
	switch (u->state) {
	case UPLOADER_DISABLED:
	case UPLOADER_SENDING:
		/* a running round takes every queued sheet before it ends */
		return UPLOADER_NEVER;
	case UPLOADER_IDLE:
		if (t == UPLOADER_T_QUEUED) {
			/* gather: a busy till fills batches; an earlier plan stands */
			if (u->next_ms != UPLOADER_NEVER && u->next_ms <= now + u->c.gather_ms)
				return UPLOADER_NEVER;
			return plan(u, now, u->c.gather_ms);
		}
		return plan(u, now, 0);
	case UPLOADER_OFFLINE:
		if (t == UPLOADER_T_REQUEST || t == UPLOADER_T_NETWORK || t == UPLOADER_T_TIMER)
			return plan(u, now, 0);
		return UPLOADER_NEVER;
	case UPLOADER_ERROR:
		/* the insurer refused us or its certificate is wrong: a network
		 * event changes neither; a person asking may have fixed it */
		if (t == UPLOADER_T_REQUEST || t == UPLOADER_T_TIMER)
			return plan(u, now, 0);
		return UPLOADER_NEVER;
	}
	return UPLOADER_NEVER;
}

void
uploader_round_begin(struct uploader *u, uint64_t now)
{
	(void)now;
	if (u->state == UPLOADER_DISABLED)
		return;
	u->next_ms = UPLOADER_NEVER;
	/* offline/error keep their reason until an answer says otherwise */
	if (u->state == UPLOADER_IDLE)
		set_state(u, UPLOADER_SENDING, "");
	else
		u->state = UPLOADER_SENDING;
}

void
uploader_round_end(struct uploader *u, uint64_t now, int64_t wall_ms, bool reached)
{
	if (u->state == UPLOADER_DISABLED)
		return;
	set_state(u, UPLOADER_IDLE, "");
	u->failures = 0;
	if (reached)
		u->last_success = wall_ms;
	plan(u, now, u->c.interval_ms);
}

void
uploader_local_error(struct uploader *u, uint64_t now, const char *why)
{
	if (u->state == UPLOADER_DISABLED)
		return;
	set_state(u, UPLOADER_ERROR, why);
	plan(u, now, (uint64_t)u->c.backoff_cap_s * 1000);
}

static uint64_t
backoff(struct uploader *u)
{
	u->failures++;
	return insurer_backoff_ms(u->failures, u->c.backoff_base_s, u->c.backoff_cap_s, u->c.rnd,
	                          u->c.rnd_arg);
}

static void
retry(struct uploader *u, uint64_t now, const struct uploader_answer *a, const char *why,
      struct uploader_decision *d)
{
	uint64_t ra = 0;
	d->what = UPLOADER_DO_RETRY;
	d->wait_ms = backoff(u);
	if (a->retry_after && insurer_retry_after_ms(a->retry_after, a->now_real, &ra) == 0)
		d->wait_ms = insurer_next_wait_ms(d->wait_ms, ra);
	plan(u, now, d->wait_ms);
	if (a->net == UPLOADER_NET_OFFLINE) {
		set_state(u, UPLOADER_OFFLINE, why);
	} else {
		u->state = UPLOADER_SENDING;
		snprintf(u->why, sizeof(u->why), "%s; the same batch again in %llu s", why,
		         (unsigned long long)((d->wait_ms + 999) / 1000));
	}
}

static void
stop(struct uploader *u, uint64_t now, const char *why, struct uploader_decision *d)
{
	d->what = UPLOADER_DO_STOP;
	d->wait_ms = (uint64_t)u->c.backoff_cap_s * 1000;
	u->failures++;
	set_state(u, UPLOADER_ERROR, why);
	plan(u, now, d->wait_ms);
}

/* 400 codes that only the batch as a whole can cause (INSURER.md): no
 * sheet is at fault, so splitting down to one sheet and rejecting it would
 * reject good sheets. Those stop the uploader instead, with the code. */
static bool
batch_level_400(const char *code)
{
	static const char *const codes[] = { "created", "terminal_id", "content_type",
		                             "idempotency_key", "version", "batch_id" };
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(code, codes[i]) == 0)
			return true;
	return false;
}

static void
refused_whole(struct uploader *u, uint64_t now, size_t n, const struct uploader_answer *a,
              struct uploader_decision *d)
{
	char code[INSURER_CODE_MAX + 1], reason[INSURER_REASON_MAX + 1], why[UPLOADER_WHY_MAX];

	if (insurer_parse_error(a->body, a->len, code, reason) < 0)
		snprintf(code, sizeof(code), "http-%ld", a->status);
	if (a->status == 400 && batch_level_400(code)) {
		snprintf(why, sizeof(why), "the insurer refused every batch (400 %s: %.120s)", code,
		         reason);
		stop(u, now, why, d);
		return;
	}
	u->state = UPLOADER_SENDING;
	if (n > 1) {
		d->what = UPLOADER_DO_SPLIT;
		d->wait_ms = 0;
		return;
	}
	d->what = UPLOADER_DO_REJECT;
	d->wait_ms = 0;
	if (a->status == 413)
		snprintf(code, sizeof(code), "too_large");
	snprintf(d->code, sizeof(d->code), "%s", code);
	snprintf(d->reason, sizeof(d->reason), "the insurer refused it alone in a batch (%ld%s%.400s)",
	         a->status, reason[0] ? ": " : "", reason);
}

void
uploader_answer(struct uploader *u, uint64_t now, const char *batch_id, const char *const *ids,
                size_t n, const struct uploader_answer *a, struct insurer_result *results,
                struct uploader_decision *d)
{
	char why[UPLOADER_WHY_MAX];

	memset(d, 0, sizeof(*d));
	switch (a->net) {
	case UPLOADER_NET_OFFLINE:
	case UPLOADER_NET_TRANSIENT:
		retry(u, now, a, a->why ? a->why : "no answer", d);
		return;
	case UPLOADER_NET_TLS_SERVER:
	case UPLOADER_NET_TLS_CLIENT:
	case UPLOADER_NET_LOCAL:
		stop(u, now, a->why ? a->why : "TLS failure", d);
		return;
	case UPLOADER_NET_OK:
		break;
	}
	switch (insurer_classify(a->status)) {
	case INSURER_ACT_RESULTS:
		if (insurer_parse_results(a->body, a->len, batch_id, ids, n, results) == 0) {
			d->what = UPLOADER_DO_COMMIT;
			u->failures = 0;
			set_state(u, UPLOADER_SENDING, "");
			return;
		}
		retry(u, now, a, "the insurer's answer was not the documented JSON", d);
		return;
	case INSURER_ACT_SPLIT:
		refused_whole(u, now, n, a, d);
		return;
	case INSURER_ACT_REFUSED:
		snprintf(why, sizeof(why),
		         "the insurer refused this terminal's client certificate (HTTP %ld)", a->status);
		stop(u, now, why, d);
		return;
	case INSURER_ACT_TRANSIENT:
		snprintf(why, sizeof(why), "the insurer answered HTTP %ld", a->status);
		retry(u, now, a, why, d);
		return;
	}
}
