/* The reader-session state machine; see readers.h.
 *
 * A session is owned by the machine until ops.start takes it, by its
 * thread until readers_session_done gives it back. The machine finds a
 * reader's session by pointer when it ends, and by id when progress comes
 * (progress may arrive after the session ended: an id is never reused, a
 * pointer may be). A reader removed while its session runs stays in the
 * list, marked gone, until that session ends.
 */
#include "daemon/cards/readers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

static const char *const rstate_names[] = { "absent",  "present",    "identifying", "reading",
	                                        "code_entry", "ready", "removed",     "error" };
static const char *const dstate_names[] = { "disabled", "starting", "up", "down" };
static const char *const report_names[] = {
	"ReaderAdded", "ReaderRemoved", "CardInserted", "CardRead", "CardRemoved",
	"CardError",   "CodeEntryRequested", "DriverDown", "DriverUp",
};

static struct {
	struct readers_ops ops;
	struct readers_config cfg;
	struct readers_reader *list;
	uint64_t next_id;
	bool stopping;
} R;

/* The hooks belong to the modules that set them, not to a run. */
static struct {
	readers_card_hook_fn card;
	void *card_arg;
	readers_read_fn read;
	void *read_arg;
	struct {
		readers_card_hook_fn fn;
		void *arg;
	} watch[READERS_WATCH_MAX];
} H;

const char *
readers_state_name(enum readers_state st)
{
	return (unsigned)st < sizeof(rstate_names) / sizeof(rstate_names[0]) ? rstate_names[st] : "?";
}

const char *
readers_drv_state_name(enum readers_drv_state st)
{
	return (unsigned)st < sizeof(dstate_names) / sizeof(dstate_names[0]) ? dstate_names[st] : "?";
}

const char *
readers_report_name(enum readers_report_type t)
{
	return (unsigned)t < sizeof(report_names) / sizeof(report_names[0]) ? report_names[t] : "?";
}

static void session_start(struct readers_reader *r, uint64_t now);
static struct readers_reader *rdr_find(const char *name);

/* ------------------------------------------------------------------ */
/* reports and hooks */

static void
report(const struct readers_report *rep)
{
	if (R.ops.report)
		R.ops.report(R.ops.ctx, rep);
}

/* The events with only the reader and its driver. */
static void
report_plain(enum readers_report_type t, const struct readers_reader *r)
{
	struct readers_report rep = { .type = t, .reader = r->name, .driver = r->drv->ops->name };
	report(&rep);
}

static void
report_error(const struct readers_reader *r, const char *reason, const char *detail,
             const char *profile)
{
	struct readers_report rep = { .type = READERS_REPORT_CARD_ERROR, .reader = r->name,
		                      .driver = r->drv->ops->name, .reason = reason,
		                      .detail = detail, .profile = profile };
	report(&rep);
}

void
readers_set_card_hook(readers_card_hook_fn fn, void *arg)
{
	H.card = fn;
	H.card_arg = arg;
}

void
readers_set_read_hook(readers_read_fn fn, void *arg)
{
	H.read = fn;
	H.read_arg = arg;
}

int
readers_watch_cards(readers_card_hook_fn fn, void *arg)
{
	for (size_t i = 0; i < READERS_WATCH_MAX; i++) {
		if (!H.watch[i].fn) {
			H.watch[i].fn = fn;
			H.watch[i].arg = arg;
			return 0;
		}
	}
	return -ENOSPC;
}

void
readers_unwatch_cards(readers_card_hook_fn fn, void *arg)
{
	for (size_t i = 0; i < READERS_WATCH_MAX; i++)
		if (H.watch[i].fn == fn && H.watch[i].arg == arg)
			H.watch[i].fn = NULL;
}

int
readers_set_rights(const char *reader, uint64_t card_seq, const struct card_rights *cr)
{
	struct readers_reader *r = rdr_find(reader);
	if (!r || !r->card || r->card_seq != card_seq || !r->result || r->state != READERS_READY)
		return -ENOENT;
	r->result->rights = *cr;
	return 0;
}

static void
card_hook(const struct readers_reader *r, const struct card_result *res)
{
	struct readers_card_info ci = { r->name, r->card_seq, r->drv->ops, r->drv->h, res };
	if (H.card)
		H.card(&ci, H.card_arg);
	for (size_t i = 0; i < READERS_WATCH_MAX; i++)
		if (H.watch[i].fn)
			H.watch[i].fn(&ci, H.watch[i].arg);
}

/* ------------------------------------------------------------------ */
/* reader list */

static struct readers_reader *
rdr_find(const char *name)
{
	for (struct readers_reader *r = R.list; r; r = r->next)
		if (!r->gone && strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

static void
rdr_set(struct readers_reader *r, enum readers_state st, const char *reason)
{
	if (r->state != st)
		log_info("reader %s: %s -> %s%s%s", r->name, rstate_names[r->state], rstate_names[st],
		         reason ? ": " : "", reason ? reason : "");
	r->state = st;
	snprintf(r->reason, sizeof(r->reason), "%s", reason ? reason : "");
}

static void
rdr_drop_result(struct readers_reader *r)
{
	if (r->result) {
		card_result_clear(r->result);
		free(r->result);
		r->result = NULL;
	}
	r->read_at[0] = '\0';
}

static void
rdr_free(struct readers_reader *r)
{
	rdr_drop_result(r);
	for (struct readers_reader **pp = &R.list; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	free(r);
}

static void
session_free(struct readers_session *s)
{
	card_result_clear(&s->result);
	free(s);
}

const struct readers_reader *
readers_first(void)
{
	const struct readers_reader *r = R.list;
	while (r && r->gone)
		r = r->next;
	return r;
}

const struct readers_reader *
readers_next(const struct readers_reader *r)
{
	for (r = r->next; r && r->gone; r = r->next)
		;
	return r;
}

const struct readers_reader *
readers_current(const char *name)
{
	const struct readers_reader *best = NULL;
	for (const struct readers_reader *r = readers_first(); r; r = readers_next(r)) {
		if (name && strcmp(r->name, name) != 0)
			continue;
		if (r->state != READERS_READY || !r->result)
			continue;
		if (!best || strcmp(r->read_at, best->read_at) > 0)
			best = r;
	}
	return best;
}

const struct card_result *
readers_current_card(const char *reader, const char **reader_out, const char **read_at)
{
	const struct readers_reader *r = readers_current(reader);
	if (reader_out)
		*reader_out = r ? r->name : NULL;
	if (read_at)
		*read_at = r ? r->read_at : NULL;
	return r ? r->result : NULL;
}

size_t
readers_opposition_changed(void)
{
	size_t n = 0;
	for (struct readers_reader *r = R.list; r; r = r->next) {
		if (r->gone || r->state != READERS_READY || !r->result)
			continue;
		const char *serial = card_opposition_serial(r->result);
		bool now = serial && R.ops.opposed && R.ops.opposed(serial);
		if (now != r->result->opposed) {
			r->result->opposed = now;
			log_notice("reader %s: the card read %s the opposition list now", r->name,
			           now ? "is on" : "is no longer on");
			n++;
		}
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* deadlines */

static void
deadline_fire(struct readers_reader *r, uint64_t now)
{
	r->deadline_at = 0;
	if (!r->sess)
		return;
	bool released = r->drv->ops->abort ? r->drv->ops->abort(r->drv->h, r->name) : false;
	if (!r->timed_out) {
		char why[CARD_ERROR_MAX];
		r->timed_out = true;
		snprintf(why, sizeof(why), "the card did not answer within %u ms", r->deadline_ms);
		log_ev(LOG_LVL_WARNING, LOG_ID_SESSION_ABORTED, r->name, NULL,
		       "reader %s: %s; session aborted%s", r->name, why,
		         released ? "" : " (the driver could not release it yet)");
		if (!r->gone && r->card) {
			rdr_set(r, READERS_ERROR, why);
			report_error(r, why, NULL, NULL);
		}
	}
	/* a card connected after the abort is not covered by it: repeat until
	 * the session is over */
	r->deadline_at = now + READERS_ABORT_REPEAT_MS;
}

void
readers_tick(uint64_t now)
{
	for (struct readers_reader *r = R.list; r; r = r->next)
		if (r->deadline_at && r->deadline_at <= now)
			deadline_fire(r, now);
}

uint64_t
readers_next_deadline(void)
{
	uint64_t next = 0;
	for (const struct readers_reader *r = R.list; r; r = r->next)
		if (r->deadline_at && (!next || r->deadline_at < next))
			next = r->deadline_at;
	return next;
}

/* ------------------------------------------------------------------ */
/* session progress */

/* The phone asks its holder for the code: the session may now take the
 * code time-out (docs/digital-card.md §4.3) plus a margin, from now; the
 * generic card deadline would cut the holder off. Only a session that
 * reached this point gets the longer budget: a card, or a phone that is
 * silent before AUTHENTICATE, keeps session_timeout_ms. */
static void
code_entry(struct readers_reader *r, uint64_t now)
{
	if (r->state != READERS_IDENTIFYING && r->state != READERS_READING)
		return;
	rdr_set(r, READERS_CODE_ENTRY, "code to enter on the phone");
	r->deadline_ms = R.cfg.code_timeout_s * 1000u + CARDS_CODE_MARGIN_MS;
	r->deadline_at = now + r->deadline_ms;
	struct readers_report rep = {
		.type = READERS_REPORT_CODE_ENTRY, .reader = r->name, .driver = r->drv->ops->name,
		.profile = r->result ? r->result->profile : NULL, .timeout_s = R.cfg.code_timeout_s,
	};
	report(&rep);
}

void
readers_session_progress(uint64_t id, bool code, uint64_t now)
{
	if (R.stopping)
		return;
	for (struct readers_reader *r = R.list; r; r = r->next) {
		if (!r->sess || r->sess->id != id || r->gone || r->timed_out || !r->card ||
		    r->card_seq != r->session_seq)
			continue;
		if (code)
			code_entry(r, now);
		else if (r->state == READERS_IDENTIFYING)
			rdr_set(r, READERS_READING, NULL);
	}
}

/* ------------------------------------------------------------------ */
/* sessions (their own thread) */

static void
io_reading(void *ctx)
{
	struct readers_session *s = ctx;
	if (s->progress && !atomic_load(&s->stop))
		s->progress(s->progress_ctx, s->id, false);
}

static void
io_code_prompt(void *ctx)
{
	struct readers_session *s = ctx;
	if (s->progress && !atomic_load(&s->stop))
		s->progress(s->progress_ctx, s->id, true);
}

static int
io_transmit(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct readers_session *s = ctx;
	s->apdus++;
	return s->ops->transmit(s->card, capdu, clen, rapdu, rlen);
}

static int
io_read_code(void *ctx, char *buf, size_t *len)
{
	struct readers_session *s = ctx;
	if (!s->ops->read_code)
		return -ENOTSUP;
	return s->ops->read_code(s->card, buf, len);
}

void
readers_session_run(struct readers_session *s)
{
	int r = 0;
	for (int attempt = 0; attempt <= READERS_RESET_RETRIES; attempt++) {
		uint8_t atr[READER_ATR_MAX];
		size_t atr_len = sizeof(atr);
		card_result_clear(&s->result);
		if (atomic_load(&s->stop)) {
			r = -ESHUTDOWN;
			break;
		}
		r = s->ops->connect(s->h, s->reader, &s->card, atr, &atr_len);
		if (r < 0) {
			snprintf(s->result.error, sizeof(s->result.error), "cannot connect to the card: %s",
			         card_strerror(r));
			break;
		}
		s->fn->identify(atr, atr_len, &s->result);
		struct card_io io = { .transmit = io_transmit, .reading = io_reading, .ctx = s,
		                      .code_prompt = io_code_prompt, .read_code = io_read_code };
		r = s->fn->read(&io, &s->result);
		s->ops->disconnect(s->card);
		s->card = NULL;
		if (r != -ECONNRESET)
			break;
		log_info("reader %s: card reset by another application; reading again", s->reader);
	}
	s->rc = r;
	s->result.apdus = s->apdus;
}

/* ------------------------------------------------------------------ */
/* sessions (the machine's thread) */

static void
session_start(struct readers_reader *r, uint64_t now)
{
	struct readers_session *s = calloc(1, sizeof(*s));
	if (!s) {
		rdr_set(r, READERS_ERROR, "out of memory");
		return;
	}
	s->id = ++R.next_id;
	s->ops = r->drv->ops;
	s->h = r->drv->h;
	s->card_seq = r->card_seq;
	s->fn = R.cfg.card_reader;
	s->progress = R.ops.progress;
	s->progress_ctx = R.ops.ctx;
	atomic_init(&s->stop, false);
	snprintf(s->reader, sizeof(s->reader), "%s", r->name);
	if (!R.ops.start || R.ops.start(R.ops.ctx, s) < 0) {
		free(s);
		rdr_set(r, READERS_ERROR, "cannot start a session thread");
		report_error(r, r->reason, NULL, NULL);
		return;
	}
	r->sess = s;
	r->session_seq = r->card_seq;
	r->timed_out = false;
	rdr_set(r, READERS_IDENTIFYING, NULL);
	r->deadline_ms = R.cfg.session_timeout_ms;
	r->deadline_at = now + R.cfg.session_timeout_ms;
}

/* CardError: reason is the failure's name when the reader gave one (with
 * the text as detail), else the text. */
static void
publish_error(struct readers_reader *r, const struct card_result *res, const char *why)
{
	const char *profile = res->profile[0] ? res->profile : NULL;
	if (res->reason[0]) {
		log_ev(LOG_LVL_NOTICE, LOG_ID_CARD_REFUSED, r->name, NULL, "reader %s: %s refused: %s",
		       r->name, profile ? profile : "card", res->reason);
		report_error(r, res->reason, why, profile);
	} else {
		report_error(r, why, NULL, profile);
	}
}

static void
session_read(struct readers_reader *r, struct readers_session *s)
{
	struct card_result *res = calloc(1, sizeof(*res));
	if (!res) {
		rdr_set(r, READERS_ERROR, "out of memory");
		return;
	}
	rdr_drop_result(r);
	card_result_move(res, &s->result);
	r->result = res;
	if (R.ops.time_now)
		R.ops.time_now(r->read_at, sizeof(r->read_at));
	rdr_set(r, READERS_READY, res->readable ? NULL : res->error[0] ? res->error : NULL);
	const char *serial = card_opposition_serial(res);
	res->opposed = serial && R.ops.opposed && R.ops.opposed(serial);
	if (res->opposed)
		log_ev(LOG_LVL_NOTICE, LOG_ID_CARD_OPPOSED, r->name, NULL,
		       "reader %s: this card is in opposition (reported lost, stolen or replaced): "
		       "no sheet will be made from it", r->name);
	if (res->nbeneficiaries > 0) {
		char m[32];
		log_ev(LOG_LVL_NOTICE, LOG_ID_CARD_READ, r->name, NULL,
		       "reader %s: %s read, %zu beneficiaries, holder %s", r->name, res->profile,
		       res->nbeneficiaries, card_nir_mask(res->beneficiaries[0].nir, m, sizeof(m)));
	} else {
		log_ev(LOG_LVL_NOTICE, LOG_ID_CARD_READ, r->name, NULL, "reader %s: card %s (%s), %u APDUs",
		       r->name, res->profile, res->atr_hex, res->apdus);
	}
	struct readers_report rep = { .type = READERS_REPORT_CARD_READ, .reader = r->name,
		                      .driver = r->drv->ops->name, .profile = res->profile,
		                      .result = res };
	report(&rep);
	card_hook(r, r->result);
	if (H.read)
		H.read(r->name, r->result, H.read_arg);
}

/* What a session's end means for a reader that is still there. */
static void
session_end(struct readers_reader *r, struct readers_session *s)
{
	bool same_card = r->card && r->card_seq == s->card_seq;
	/* a failure with a name (the digital card's §12 reasons) is told even
	 * when the card left meanwhile: a phone taken away mid-exchange is
	 * card_lost for the till, not just a removal */
	bool named = s->rc != 0 && s->result.reason[0] != '\0';
	if (same_card && !r->timed_out) {
		if (s->rc == 0) {
			session_read(r, s);
		} else if (s->rc == -ENODEV && !named) {
			/* the card left; its CARD_ABSENT is on the way */
			rdr_set(r, READERS_REMOVED, NULL);
		} else {
			const char *why = s->result.error[0] ? s->result.error : card_strerror(s->rc);
			rdr_set(r, s->rc == -ENODEV ? READERS_REMOVED : READERS_ERROR, why);
			publish_error(r, &s->result, why);
		}
	} else if (!r->card) {
		if (named && !r->timed_out && r->card_seq == s->card_seq)
			publish_error(r, &s->result, s->result.error);
		rdr_set(r, READERS_ABSENT, NULL);
	}
}

void
readers_session_done(struct readers_session *s, uint64_t now)
{
	struct readers_reader *r = R.list;
	while (r && r->sess != s)
		r = r->next;
	if (!r) {
		session_free(s);
		return;
	}
	r->sess = NULL;
	r->deadline_at = 0;
	if (R.stopping) {
		session_free(s);
		return;
	}
	if (r->gone) {
		/* the reader went away under the session (a PN532 unplugged
		 * while the phone waited): its named failure is still news */
		if (s->rc != 0 && s->result.reason[0] && !r->timed_out && r->card_seq == s->card_seq)
			publish_error(r, &s->result, s->result.error);
		rdr_free(r);
		session_free(s);
		return;
	}
	session_end(r, s);
	session_free(s);
	/* a new card went in while the old session finished */
	if (r->card && r->session_seq != r->card_seq && r->state != READERS_ERROR)
		session_start(r, now);
}

/* ------------------------------------------------------------------ */
/* driver events */

static void
card_inserted(struct readers_reader *r, const struct reader_event *ev, uint64_t now)
{
	if (r->card)
		card_hook(r, NULL); /* replaced without an absence seen */
	r->card = true;
	r->card_seq++;
	r->contactless = ev->contactless;
	memcpy(r->atr, ev->atr, ev->atr_len);
	r->atr_len = ev->atr_len;
	rdr_drop_result(r);
	r->result = calloc(1, sizeof(*r->result));
	if (r->result)
		R.cfg.card_reader->identify(r->atr, r->atr_len, r->result);
	rdr_set(r, READERS_PRESENT, NULL);
	struct readers_report rep = {
		.type = READERS_REPORT_CARD_INSERTED, .reader = r->name, .driver = r->drv->ops->name,
		.atr = r->result ? r->result->atr_hex : "",
		.profile = r->result ? r->result->profile : NULL, .contactless = r->contactless,
	};
	report(&rep);
	if (ev->reason[0]) {
		/* pcscd could not power the card (mute, no ATR): nothing to talk to */
		rdr_set(r, READERS_ERROR, ev->reason);
		report_error(r, ev->reason, NULL, NULL);
		r->session_seq = r->card_seq;
		return;
	}
	if (!r->sess)
		session_start(r, now);
	/* else: the session of the previous card is still ending; its end
	 * starts this card's */
}

static void
card_removed(struct readers_reader *r)
{
	if (!r->card)
		return;
	r->card = false;
	rdr_drop_result(r);
	if (r->sess) {
		if (r->drv->ops->abort)
			r->drv->ops->abort(r->drv->h, r->name);
		rdr_set(r, READERS_REMOVED, NULL);
	} else {
		rdr_set(r, READERS_ABSENT, NULL);
	}
	r->atr_len = 0;
	report_plain(READERS_REPORT_CARD_REMOVED, r);
	card_hook(r, NULL);
}

static void
reader_added(struct readers_driver *dv, const char *name)
{
	struct readers_reader *r = calloc(1, sizeof(*r));
	if (!r) {
		log_err("readers: out of memory; reader %s ignored", name);
		return;
	}
	r->drv = dv;
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->state = READERS_ABSENT;
	/* at the tail: lists show readers in the order they came */
	struct readers_reader **pp = &R.list;
	while (*pp)
		pp = &(*pp)->next;
	*pp = r;
	log_ev(LOG_LVL_NOTICE, LOG_ID_READER_ADDED, r->name, NULL, "reader %s (%s) added", r->name,
	       dv->ops->name);
	report_plain(READERS_REPORT_READER_ADDED, r);
}

void
readers_driver_event(struct readers_driver *dv, const struct reader_event *ev, uint64_t now)
{
	if (R.stopping)
		return;
	struct readers_reader *r = ev->reader[0] ? rdr_find(ev->reader) : NULL;
	struct readers_report rep = { .driver = dv->ops->name };

	switch (ev->type) {
	case READER_EV_ADDED:
		if (!r)
			reader_added(dv, ev->reader);
		break;
	case READER_EV_REMOVED:
		if (!r)
			break;
		card_removed(r);
		log_ev(LOG_LVL_NOTICE, LOG_ID_READER_REMOVED, r->name, NULL, "reader %s (%s) removed",
		       r->name, dv->ops->name);
		report_plain(READERS_REPORT_READER_REMOVED, r);
		if (r->sess)
			r->gone = true;
		else
			rdr_free(r);
		break;
	case READER_EV_CARD_PRESENT:
		if (r)
			card_inserted(r, ev, now);
		break;
	case READER_EV_CARD_ABSENT:
		if (r)
			card_removed(r);
		break;
	case READER_EV_DRIVER_DOWN:
		dv->state = READERS_DRV_DOWN;
		snprintf(dv->reason, sizeof(dv->reason), "%s", ev->reason);
		rep.type = READERS_REPORT_DRIVER_DOWN;
		rep.reason = ev->reason;
		report(&rep);
		break;
	case READER_EV_DRIVER_UP:
		dv->state = READERS_DRV_UP;
		dv->reason[0] = '\0';
		rep.type = READERS_REPORT_DRIVER_UP;
		report(&rep);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* set-up and shutdown */

void
readers_begin(const struct readers_ops *ops, const struct readers_config *cfg)
{
	memset(&R, 0, sizeof(R));
	R.ops = *ops;
	R.cfg = *cfg;
}

void
readers_stopping(void)
{
	R.stopping = true;
	for (struct readers_reader *r = R.list; r; r = r->next) {
		if (!r->sess)
			continue;
		atomic_store(&r->sess->stop, true);
		if (r->drv->ops->abort)
			r->drv->ops->abort(r->drv->h, r->name);
	}
}

void
readers_end(void)
{
	while (R.list) {
		struct readers_reader *r = R.list;
		if (r->sess)
			log_warn("reader %s: its session does not end; left behind", r->name);
		rdr_free(r);
	}
	memset(&R, 0, sizeof(R));
	R.stopping = true;
}
