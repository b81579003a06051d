/* The readers module; see readers.h.
 *
 * Threads. Driver workers call on_driver_event(), which copies the event
 * and posts it to the loop. Each session thread posts "reading" and
 * "done" messages. Posting goes through one hub whose lock also says
 * whether the loop still takes work: after readers_fini() starts, late
 * events and results are dropped, never posted into a loop being torn down.
 * Everything else (the reader list, states, timers, API) is loop-thread
 * only.
 *
 * A session owns its struct session; the loop owns the reader entry and
 * finds the session by pointer when "done" arrives, joins the thread (it
 * posts "done" as its very last act) and frees it. A reader removed while
 * its session runs stays in the list, marked gone, until that moment. A
 * session that will not end at shutdown (a driver without abort) is left to
 * finish on its own: it then frees itself and touches nothing else.
 */
#include "daemon/cards/readers.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cards/cards.h"
#include "daemon/core/events.h"
#include "lib/log.h"
#include "drivers/reader.h"

#define RESET_RETRIES 2
#define ABORT_REPEAT_MS 1000u

enum rstate {
	RS_ABSENT,
	RS_PRESENT,
	RS_IDENTIFYING,
	RS_READING,
	RS_CODE_ENTRY, /* a phone waits for its holder's code */
	RS_READY,
	RS_REMOVED,
	RS_ERROR
};

static const char *const rstate_names[] = { "absent",     "present", "identifying",
	                                        "reading",    "code_entry", "ready",
	                                        "removed",    "error" };

enum dstate { DS_DISABLED, DS_STARTING, DS_UP, DS_DOWN };
static const char *const dstate_names[] = { "disabled", "starting", "up", "down" };

struct drv {
	const struct reader_ops *ops;
	struct reader_driver *h;
	enum dstate state;
	char reason[128];
};

struct session;

struct rdr {
	struct rdr *next;
	struct drv *drv;
	char name[READER_NAME_MAX];
	enum rstate state;
	char reason[CARD_ERROR_MAX];
	bool card;                 /* the driver says a card is in */
	bool contactless;
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len;
	uint64_t card_seq;         /* bumped at each insertion */
	uint64_t session_seq;      /* card_seq of the last session started */
	struct session *sess;      /* running session, or NULL */
	uint64_t deadline;         /* timer id */
	unsigned deadline_ms;      /* the running session's budget, for messages */
	bool timed_out;            /* this card's session passed its deadline */
	bool gone;                 /* removed by the driver; freed when sess ends */
	struct card_result *result; /* identify's at insertion, the read's once ready */
	char read_at[40];
};

struct session {
	pthread_t thread;
	struct drv *drv;
	char reader[READER_NAME_MAX];
	uint64_t card_seq;
	const struct card_reader_fn *fn;
	struct reader_card *card;  /* session thread only */
	struct card_result result; /* session thread until "done" */
	unsigned apdus;
	int rc;
	bool orphan;               /* under hub.lock: nobody will join; free yourself */
	bool finished;             /* under hub.lock: past its last use of the hub */
};

struct msg_event {
	struct drv *drv;
	struct reader_event ev;
};

struct msg_reading {
	struct session *s;
	bool code;                 /* code_prompt rather than reading */
};

static struct {
	pthread_mutex_t lock;
	struct loop *loop; /* NULL once fini began */
} hub = { PTHREAD_MUTEX_INITIALIZER, NULL };

static struct {
	struct daemon *d;
	struct drv drivers[2]; /* pcsc, nfc */
	size_t ndrivers;
	struct rdr *list;
	unsigned timeout_ms;
	readers_card_hook_fn hook;
	void *hook_arg;
	readers_read_fn read_hook;
	void *read_hook_arg;
} R;

static void session_start(struct rdr *r);

/* ------------------------------------------------------------------ */
/* the card hook (readers.h) */

void
readers_set_card_hook(readers_card_hook_fn fn, void *arg)
{
	R.hook = fn;
	R.hook_arg = arg;
}

static void
card_hook(const struct rdr *r, const struct card_result *res)
{
	if (!R.hook)
		return;
	struct readers_card_info ci = { r->name, r->card_seq, r->drv->ops, r->drv->h, res };
	R.hook(&ci, R.hook_arg);
}

/* ------------------------------------------------------------------ */
/* posting from other threads */

static int
hub_post(loop_post_cb cb, void *arg)
{
	int r = -ESHUTDOWN;
	pthread_mutex_lock(&hub.lock);
	if (hub.loop)
		r = loop_post(hub.loop, cb, arg);
	pthread_mutex_unlock(&hub.lock);
	return r;
}

/* ------------------------------------------------------------------ */
/* reader list */

static struct rdr *
rdr_find(const char *name)
{
	for (struct rdr *r = R.list; r; r = r->next)
		if (!r->gone && strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

static void
rdr_set(struct rdr *r, enum rstate st, const char *reason)
{
	if (r->state != st)
		log_info("reader %s: %s -> %s%s%s", r->name, rstate_names[r->state], rstate_names[st],
		         reason ? ": " : "", reason ? reason : "");
	r->state = st;
	snprintf(r->reason, sizeof(r->reason), "%s", reason ? reason : "");
}

static void
rdr_drop_result(struct rdr *r)
{
	if (r->result) {
		card_result_clear(r->result);
		free(r->result);
		r->result = NULL;
	}
	r->read_at[0] = '\0';
}

static void
rdr_free(struct rdr *r)
{
	if (r->deadline)
		loop_timer_cancel(R.d->loop, r->deadline);
	rdr_drop_result(r);
	for (struct rdr **pp = &R.list; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	free(r);
}

static json_t *
rdr_json(const struct rdr *r, bool detail)
{
	const char *card = r->card && r->result ? r->result->profile : NULL;
	json_t *o = json_pack("{s:s,s:s,s:s,s:s?}", "name", r->name, "driver", r->drv->ops->name,
	                      "state", rstate_names[r->state], "card", card);
	if (o && detail) {
		char atr[READER_ATR_MAX * 2 + 1];
		card_atr_hex(r->atr, r->atr_len, atr, sizeof(atr));
		json_object_set_new(o, "atr", r->card && r->atr_len ? json_string(atr) : json_null());
		json_object_set_new(o, "reason", r->reason[0] ? json_string(r->reason) : json_null());
		json_object_set_new(o, "contactless", json_boolean(r->contactless));
	}
	return o;
}

static json_t *
ev_fields(const struct rdr *r)
{
	return json_pack("{s:s,s:s}", "reader", r->name, "driver", r->drv->ops->name);
}

/* ------------------------------------------------------------------ */
/* deadline */

static void
deadline_cb(struct loop *l, void *arg)
{
	struct rdr *r = arg;
	r->deadline = 0;
	if (!r->sess)
		return;
	bool released = r->drv->ops->abort ? r->drv->ops->abort(r->drv->h, r->name) : false;
	if (!r->timed_out) {
		char why[CARD_ERROR_MAX];
		r->timed_out = true;
		snprintf(why, sizeof(why), "the card did not answer within %u ms", r->deadline_ms);
		log_warn("reader %s: %s; session aborted%s", r->name, why,
		         released ? "" : " (the driver could not release it yet)");
		if (!r->gone && r->card) {
			rdr_set(r, RS_ERROR, why);
			json_t *f = ev_fields(r);
			json_object_set_new(f, "reason", json_string(why));
			events_publish("CardError", f);
		}
	}
	/* a card connected after the abort is not covered by it: repeat until
	 * the session is over */
	r->deadline = loop_timer_add(l, ABORT_REPEAT_MS, deadline_cb, r);
}

/* ------------------------------------------------------------------ */
/* sessions (session thread) */

static void deadline_cb(struct loop *l, void *arg);

/* The phone asks its holder for the code: the session may now take the
 * code time-out (docs/digital-card.md §4.3) plus a margin, from now; the
 * generic card deadline would cut the holder off. Only a session that
 * reached this point gets the longer budget: a card, or a phone that is
 * silent before AUTHENTICATE, keeps [pcsc] session_timeout_ms. */
static void
code_entry(struct rdr *r)
{
	if (r->state != RS_IDENTIFYING && r->state != RS_READING)
		return;
	rdr_set(r, RS_CODE_ENTRY, "code to enter on the phone");
	if (r->deadline)
		loop_timer_cancel(R.d->loop, r->deadline);
	r->deadline_ms = (unsigned)R.d->cfg->code_timeout_s * 1000u + CARDS_CODE_MARGIN_MS;
	r->deadline = loop_timer_add(R.d->loop, r->deadline_ms, deadline_cb, r);
	json_t *f = json_pack("{s:s,s:s,s:s?,s:I}", "reader", r->name, "driver", r->drv->ops->name,
	                      "profile", r->result ? r->result->profile : NULL, "timeout_s",
	                      (json_int_t)R.d->cfg->code_timeout_s);
	events_publish("CodeEntryRequested", f);
}

static void
on_reading(void *arg)
{
	struct msg_reading *m = arg;
	for (struct rdr *r = R.list; r; r = r->next) {
		if (r->sess != m->s || r->gone || r->timed_out || !r->card ||
		    r->card_seq != r->session_seq)
			continue;
		if (m->code)
			code_entry(r);
		else if (r->state == RS_IDENTIFYING)
			rdr_set(r, RS_READING, NULL);
	}
	free(m);
}

static void
post_reading(struct session *s, bool code)
{
	struct msg_reading *m = malloc(sizeof(*m));
	if (!m)
		return;
	m->s = s;
	m->code = code;
	if (hub_post(on_reading, m) < 0)
		free(m);
}

static void
io_reading(void *ctx)
{
	post_reading(ctx, false);
}

static void
io_code_prompt(void *ctx)
{
	post_reading(ctx, true);
}

static int
io_transmit(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct session *s = ctx;
	s->apdus++;
	return s->drv->ops->transmit(s->card, capdu, clen, rapdu, rlen);
}

static void on_session_done(void *arg);

static void *
session_main(void *arg)
{
	struct session *s = arg;
	int r = 0;
	for (int attempt = 0; attempt <= RESET_RETRIES; attempt++) {
		uint8_t atr[READER_ATR_MAX];
		size_t atr_len = sizeof(atr);
		card_result_clear(&s->result);
		r = s->drv->ops->connect(s->drv->h, s->reader, &s->card, atr, &atr_len);
		if (r < 0) {
			snprintf(s->result.error, sizeof(s->result.error), "cannot connect to the card: %s",
			         card_strerror(r));
			break;
		}
		s->fn->identify(atr, atr_len, &s->result);
		struct card_io io = { .transmit = io_transmit, .reading = io_reading, .ctx = s,
		                      .code_prompt = io_code_prompt };
		r = s->fn->read(&io, &s->result);
		s->drv->ops->disconnect(s->card);
		s->card = NULL;
		if (r != -ECONNRESET)
			break;
		log_info("reader %s: card reset by another application; reading again", s->reader);
	}
	s->rc = r;
	s->result.apdus = s->apdus;
	/* last act: hand s to the loop (which joins us), or, once readers_fini
	 * began, leave it to readers_fini, or free it if that gave up on us */
	pthread_mutex_lock(&hub.lock);
	bool orphan = s->orphan;
	s->finished = true;
	if (!orphan && hub.loop && loop_post(hub.loop, on_session_done, s) < 0)
		log_err("reader %s: cannot post the session's end", s->reader);
	pthread_mutex_unlock(&hub.lock);
	if (orphan) {
		pthread_detach(pthread_self());
		card_result_clear(&s->result);
		free(s);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* sessions (loop thread) */

static void
session_start(struct rdr *r)
{
	struct session *s = calloc(1, sizeof(*s));
	if (!s) {
		rdr_set(r, RS_ERROR, "out of memory");
		return;
	}
	s->drv = r->drv;
	s->card_seq = r->card_seq;
	s->fn = cards_reader();
	snprintf(s->reader, sizeof(s->reader), "%s", r->name);
	int e = pthread_create(&s->thread, NULL, session_main, s);
	if (e != 0) {
		free(s);
		rdr_set(r, RS_ERROR, "cannot start a session thread");
		json_t *f = ev_fields(r);
		json_object_set_new(f, "reason", json_string(r->reason));
		events_publish("CardError", f);
		return;
	}
	r->sess = s;
	r->session_seq = r->card_seq;
	r->timed_out = false;
	rdr_set(r, RS_IDENTIFYING, NULL);
	r->deadline_ms = R.timeout_ms;
	r->deadline = loop_timer_add(R.d->loop, R.timeout_ms, deadline_cb, r);
}

static void
publish_read(struct rdr *r)
{
	json_t *f = ev_fields(r);
	json_object_set_new(f, "profile", json_string(r->result->profile));
	json_object_set_new(f, "summary", card_result_json(r->result, CARD_JSON_SUMMARY));
	json_t *c = json_pack("{s:o}", "summary", card_result_json(r->result, CARD_JSON_SUMMARY_ID));
	events_publish_ex("CardRead", f, c);
	card_hook(r, r->result);
}

/* CardError: reason is the failure's name when the reader gave one (with
 * the text as detail), else the text. */
static void
publish_error(struct rdr *r, const struct card_result *res, const char *why)
{
	json_t *f = ev_fields(r);
	if (res->reason[0]) {
		json_object_set_new(f, "reason", json_string(res->reason));
		json_object_set_new(f, "detail", json_string(why));
		log_notice("reader %s: %s refused: %s", r->name, res->profile[0] ? res->profile : "card",
		           res->reason);
	} else {
		json_object_set_new(f, "reason", json_string(why));
	}
	if (res->profile[0])
		json_object_set_new(f, "profile", json_string(res->profile));
	events_publish("CardError", f);
}

static void
on_session_done(void *arg)
{
	struct session *s = arg;
	pthread_join(s->thread, NULL);
	struct rdr *r = R.list;
	while (r && r->sess != s)
		r = r->next;
	if (!r) {
		card_result_clear(&s->result);
		free(s);
		return;
	}
	r->sess = NULL;
	if (r->deadline) {
		loop_timer_cancel(R.d->loop, r->deadline);
		r->deadline = 0;
	}
	if (r->gone) {
		/* the reader went away under the session (a PN532 unplugged
		 * while the phone waited): its named failure is still news */
		if (s->rc != 0 && s->result.reason[0] && !r->timed_out && r->card_seq == s->card_seq)
			publish_error(r, &s->result, s->result.error);
		rdr_free(r);
		card_result_clear(&s->result);
		free(s);
		return;
	}
	bool same_card = r->card && r->card_seq == s->card_seq;
	/* a failure with a name (the digital card's §12 reasons) is told even
	 * when the card left meanwhile: a phone taken away mid-exchange is
	 * card_lost for the till, not just a removal */
	bool named = s->rc != 0 && s->result.reason[0] != '\0';
	if (same_card && !r->timed_out) {
		if (s->rc == 0) {
			struct card_result *res = calloc(1, sizeof(*res));
			if (res) {
				rdr_drop_result(r);
				card_result_move(res, &s->result);
				r->result = res;
				events_time_now(r->read_at, sizeof(r->read_at));
				rdr_set(r, RS_READY, res->readable ? NULL : res->error[0] ? res->error : NULL);
				if (res->nbeneficiaries > 0) {
					char m[32];
					log_notice("reader %s: %s read, %zu beneficiaries, holder %s", r->name,
					           res->profile, res->nbeneficiaries,
					           log_mask_nir(res->beneficiaries[0].nir, m, sizeof(m)));
				} else {
					log_notice("reader %s: card %s (%s), %u APDUs", r->name, res->profile,
					           res->atr_hex, res->apdus);
				}
				publish_read(r);
				if (R.read_hook)
					R.read_hook(r->name, r->result, R.read_hook_arg);
			} else {
				rdr_set(r, RS_ERROR, "out of memory");
			}
		} else if (s->rc == -ENODEV && !named) {
			/* the card left; its CARD_ABSENT is on the way */
			rdr_set(r, RS_REMOVED, NULL);
		} else {
			const char *why = s->result.error[0] ? s->result.error : card_strerror(s->rc);
			rdr_set(r, s->rc == -ENODEV ? RS_REMOVED : RS_ERROR, why);
			publish_error(r, &s->result, why);
		}
	} else if (!r->card) {
		if (named && !r->timed_out && r->card_seq == s->card_seq)
			publish_error(r, &s->result, s->result.error);
		rdr_set(r, RS_ABSENT, NULL);
	}
	card_result_clear(&s->result);
	free(s);
	/* a new card went in while the old session finished */
	if (r->card && r->session_seq != r->card_seq && r->state != RS_ERROR)
		session_start(r);
}

/* ------------------------------------------------------------------ */
/* driver events */

static void
card_inserted(struct rdr *r, const struct reader_event *ev)
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
		cards_reader()->identify(r->atr, r->atr_len, r->result);
	rdr_set(r, RS_PRESENT, NULL);
	json_t *f = ev_fields(r);
	json_object_set_new(f, "atr", json_string(r->result ? r->result->atr_hex : ""));
	json_object_set_new(f, "profile", r->result ? json_string(r->result->profile) : json_null());
	json_object_set_new(f, "contactless", json_boolean(r->contactless));
	events_publish("CardInserted", f);
	if (ev->reason[0]) {
		/* pcscd could not power the card (mute, no ATR): nothing to talk to */
		const char *why = ev->reason;
		rdr_set(r, RS_ERROR, why);
		f = ev_fields(r);
		json_object_set_new(f, "reason", json_string(why));
		events_publish("CardError", f);
		r->session_seq = r->card_seq;
		return;
	}
	if (!r->sess)
		session_start(r);
	/* else: the session of the previous card is still ending; its "done"
	 * starts this card's */
}

static void
card_removed(struct rdr *r)
{
	if (!r->card)
		return;
	r->card = false;
	rdr_drop_result(r);
	if (r->sess) {
		if (r->drv->ops->abort)
			r->drv->ops->abort(r->drv->h, r->name);
		rdr_set(r, RS_REMOVED, NULL);
	} else {
		rdr_set(r, RS_ABSENT, NULL);
	}
	r->atr_len = 0;
	events_publish("CardRemoved", ev_fields(r));
	card_hook(r, NULL);
}

static void
on_event(void *arg)
{
	struct msg_event *m = arg;
	const struct reader_event *ev = &m->ev;
	struct drv *dv = m->drv;
	struct rdr *r = ev->reader[0] ? rdr_find(ev->reader) : NULL;

	switch (ev->type) {
	case READER_EV_ADDED:
		if (r)
			break;
		r = calloc(1, sizeof(*r));
		if (!r) {
			log_err("readers: out of memory; reader %s ignored", ev->reader);
			break;
		}
		r->drv = dv;
		snprintf(r->name, sizeof(r->name), "%s", ev->reader);
		r->state = RS_ABSENT;
		{
			/* at the tail: lists show readers in the order they came */
			struct rdr **pp = &R.list;
			while (*pp)
				pp = &(*pp)->next;
			*pp = r;
		}
		log_notice("reader %s (%s) added", r->name, dv->ops->name);
		events_publish("ReaderAdded", ev_fields(r));
		break;
	case READER_EV_REMOVED:
		if (!r)
			break;
		card_removed(r);
		log_notice("reader %s (%s) removed", r->name, dv->ops->name);
		events_publish("ReaderRemoved", ev_fields(r));
		if (r->sess)
			r->gone = true;
		else
			rdr_free(r);
		break;
	case READER_EV_CARD_PRESENT:
		if (r)
			card_inserted(r, ev);
		break;
	case READER_EV_CARD_ABSENT:
		if (r)
			card_removed(r);
		break;
	case READER_EV_DRIVER_DOWN:
		dv->state = DS_DOWN;
		snprintf(dv->reason, sizeof(dv->reason), "%s", ev->reason);
		events_publish("DriverDown", json_pack("{s:s,s:s}", "driver", dv->ops->name, "reason",
		                                       ev->reason));
		break;
	case READER_EV_DRIVER_UP:
		dv->state = DS_UP;
		dv->reason[0] = '\0';
		events_publish("DriverUp", json_pack("{s:s}", "driver", dv->ops->name));
		break;
	}
	free(m);
}

/* Driver worker thread. */
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
	if (hub_post(on_event, m) < 0)
		free(m);
}

/* ------------------------------------------------------------------ */
/* API and status */

static void
status_cb(struct daemon *d, json_t *st, void *arg)
{
	(void)d;
	(void)arg;
	json_t *arr = json_object_get(st, "readers");
	if (!json_is_array(arr)) {
		arr = json_array();
		json_object_set_new(st, "readers", arr);
	}
	for (struct rdr *r = R.list; r; r = r->next)
		if (!r->gone)
			json_array_append_new(arr, rdr_json(r, false));
	json_t *drv = json_object_get(st, "drivers");
	if (!json_is_array(drv)) {
		drv = json_array();
		json_object_set_new(st, "drivers", drv);
	}
	for (size_t i = 0; i < R.ndrivers; i++) {
		const struct drv *dv = &R.drivers[i];
		json_array_append_new(drv, json_pack("{s:s,s:s,s:s?}", "name", dv->ops->name, "state",
		                                     dstate_names[dv->state], "reason",
		                                     dv->reason[0] ? dv->reason : NULL));
	}
}

static int
m_list_readers(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	json_t *arr = json_array();
	if (!arr)
		return -ENOMEM;
	for (struct rdr *r = R.list; r; r = r->next)
		if (!r->gone)
			json_array_append_new(arr, rdr_json(r, true));
	return vl_reply(call, json_pack("{s:o}", "readers", arr));
}

/* The reader whose card was read last (in reader name, or in any reader). */
static struct rdr *
current_card(const char *name)
{
	struct rdr *best = NULL;
	for (struct rdr *r = R.list; r; r = r->next) {
		if (r->gone || (name && strcmp(r->name, name) != 0))
			continue;
		if (r->state != RS_READY || !r->result)
			continue;
		if (!best || strcmp(r->read_at, best->read_at) > 0)
			best = r;
	}
	return best;
}

const struct card_result *
readers_current_card(const char *reader, const char **reader_out, const char **read_at)
{
	struct rdr *r = current_card(reader);
	if (reader_out)
		*reader_out = r ? r->name : NULL;
	if (read_at)
		*read_at = r ? r->read_at : NULL;
	return r ? r->result : NULL;
}

void
readers_set_read_hook(readers_read_fn fn, void *arg)
{
	R.read_hook = fn;
	R.read_hook_arg = arg;
}

static int
m_get_card(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	const char *name = NULL;
	const char *key;
	json_t *v;
	json_object_foreach(params, key, v) {
		if (strcmp(key, "reader") != 0 || !(json_is_string(v) || json_is_null(v)))
			return vl_reply_invalid_param(call, key);
		name = json_string_value(v);
	}
	struct rdr *best = current_card(name);
	if (!best)
		return vl_reply_error(call, TERMINAL_IFACE ".NoCard",
		                      json_pack("{s:s?}", "reader", name));
	json_t *c = card_result_json(best->result, CARD_JSON_FULL);
	if (!c)
		return -ENOMEM;
	json_object_set_new(c, "reader", json_string(best->name));
	json_object_set_new(c, "driver", json_string(best->drv->ops->name));
	json_object_set_new(c, "read_at", json_string(best->read_at));
	return vl_reply(call, json_pack("{s:o}", "card", c));
}

/* ------------------------------------------------------------------ */
/* init / fini */

/* Start one driver, or record why it is not running: not fatal, the
 * daemon still serves the queue, the API and the other driver. */
static void
driver_start(struct drv *dv, const struct reader_params *p, const char *disabled)
{
	dv->state = DS_DISABLED;
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
	dv->state = DS_STARTING;
	int r = dv->ops->open(p, on_driver_event, dv, &dv->h);
	if (r < 0) {
		log_err("readers: cannot start the %s driver: %s", dv->ops->name, strerror(-r));
		dv->state = DS_DOWN;
		snprintf(dv->reason, sizeof(dv->reason), "cannot start: %s", strerror(-r));
		dv->h = NULL;
	}
}

int
readers_init(struct daemon *d)
{
	int r;
	memset(&R, 0, sizeof(R));
	R.d = d;
	R.timeout_ms = (unsigned)d->cfg->pcsc_session_timeout_ms;
	R.drivers[0].ops = &reader_pcsc_ops;
	R.drivers[1].ops = &reader_nfc_ops;
	R.ndrivers = 2;

	if ((r = vl_server_add_method(d->api, TERMINAL_IFACE ".ListReaders", m_list_readers, NULL,
	                              0)) < 0 ||
	    (r = vl_server_add_method(d->api, TERMINAL_IFACE ".GetCard", m_get_card, NULL,
	                              VL_CONTROL)) < 0 ||
	    (r = status_add_provider(status_cb, NULL)) < 0) {
		log_err("readers: cannot register: %s", strerror(-r));
		return r;
	}
	pthread_mutex_lock(&hub.lock);
	hub.loop = d->loop;
	pthread_mutex_unlock(&hub.lock);

	struct reader_params pp = { .backoff_max_ms = (unsigned)d->cfg->pcsc_backoff_max_ms };
	driver_start(&R.drivers[0], &pp, d->cfg->pcsc_enabled ? NULL : "disabled in the configuration");
	const struct config_list *nd = &d->cfg->nfc_devices;
	struct reader_params np = {
		.devices = (const char *const *)nd->v,
		.ndevices = nd->n,
		.backoff_max_ms = (unsigned)d->cfg->pcsc_backoff_max_ms,
		.poll_ms = (unsigned)d->cfg->nfc_poll_ms,
	};
	driver_start(&R.drivers[1], &np, nd->n ? NULL : "no device configured ([nfc] device)");
	return 0;
}

static bool
join_until(struct session *s, const struct timespec *deadline)
{
	return pthread_timedjoin_np(s->thread, NULL, deadline) == 0;
}

void
readers_fini(struct daemon *d)
{
	(void)d;
	pthread_mutex_lock(&hub.lock);
	hub.loop = NULL;
	pthread_mutex_unlock(&hub.lock);

	for (struct rdr *r = R.list; r; r = r->next)
		if (r->sess && r->drv->ops->abort)
			r->drv->ops->abort(r->drv->h, r->name);
	for (size_t i = 0; i < R.ndrivers; i++) {
		if (R.drivers[i].h)
			R.drivers[i].ops->close(R.drivers[i].h);
		R.drivers[i].h = NULL;
	}
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 1;
	while (R.list) {
		struct rdr *r = R.list;
		struct session *s = r->sess;
		if (s) {
			bool joined = join_until(s, &dl);
			if (!joined) {
				pthread_mutex_lock(&hub.lock);
				/* it may have finished since the join gave up */
				s->orphan = !s->finished;
				pthread_mutex_unlock(&hub.lock);
				if (!s->orphan)
					joined = pthread_join(s->thread, NULL) == 0;
			}
			if (joined) {
				card_result_clear(&s->result);
				free(s);
			} else {
				log_warn("reader %s: its session does not end; left behind", r->name);
			}
			r->sess = NULL;
		}
		rdr_free(r);
	}
}
