/* Module "queue": care sheets and the durable queue; see sheets.h.
 *
 * The create pipeline, all on the loop thread but the middle step:
 *
 *   CreateSheet ─ parse, card, validate, signer ready? ─> pending list
 *   pending ─(no batch in flight)─> one batch ─> queue thread:
 *        BEGIN IMMEDIATE; per sheet: seq = MAX+1, seal (encode, sign,
 *        AES-GCM), INSERT; COMMIT (one fsync for the whole batch)
 *   batch done ─> reply to each caller with its own result ─> next batch
 *
 * So a create never waits for more than the commit in flight plus its own
 * batch's, and the loop stays free meanwhile. A caller that disconnects
 * while its create is pending loses only the answer: the sheet is stored
 * (or not) exactly as if it had stayed, and a stored sheet is never
 * deleted, which is what "nothing acknowledged is ever lost" needs.
 *
 * Reads (ListSheets, GetSheet, ExportSheet) and the retention purge are
 * jobs in the same FIFO; the reply is built on the queue thread (jansson
 * objects of one call, handed over) and sent from the loop.
 */
#include "daemon/sheets/sheets.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cards/cards.h"
#include "daemon/core/events.h"
#include "protocol/holidays.h"
#include "lib/log.h"
#include "daemon/pin/pinflow.h"
#include "drivers/reader.h"
#include "daemon/cards/readers.h"
#include "daemon/sheets/sheetbuild.h"
#include "daemon/sheets/sheetq.h"
#include "daemon/sheets/sheetread.h"
#include "daemon/sheets/sheetseal.h"
#include "protocol/sheetsig.h"
#include "daemon/pin/signer.h"

#define ERR(name) TERMINAL_IFACE "." name

enum ckind { C_SHEET, C_DRAFT, C_COMPLETE };

/* One create (or draft, or completion) from its call to its answer. */
struct create {
	struct create *next;
	struct vl_call *call;          /* NULL: nobody waits (kiosk) or the caller left */
	enum ckind kind;
	struct sheet *s;               /* owned; wiped when freed */
	json_t *patch;                 /* C_COMPLETE: the till's part, merged on the queue thread */
	struct sheetbuild_ctx ctx;     /* C_COMPLETE: what the daemon fills */
	char terminal[SHEET_TERMINAL_MAX + 1], pract_id[12], struct_id[15];
	int alg;
	struct signer *signer;
	char reader[READER_NAME_MAX];  /* kiosk drafts: for the event */
	uint8_t *draft;                /* C_DRAFT: the payload (the sheet's JSON) */
	size_t draft_len;
	char care[11], due[11], pract[QUEUE_PRACT_MAX + 1];
	int result;
	uint32_t seq;
	struct sheet_errors errs;      /* C_COMPLETE: validation on the queue thread */
	char reason[QUEUE_REASON_MAX];
	uint64_t sign_us;
	/* queue thread: the batch it is in, and its signature made ahead */
	struct batch *batch;
	size_t idx;
	struct sheetseal_task pre;
	bool pre_on;
};

struct batch {
	size_t n;
	struct create *c[SHEETS_BATCH_MAX];
	int rc;
	char reason[QUEUE_REASON_MAX];
	uint64_t sign_us, txn_us;
};

static struct {
	struct daemon *d;
	struct sheetq *sq;
	struct sheetseal *sealer;   /* set at init, read by the queue thread */
	struct create *pend_head, *pend_tail;
	size_t npend;
	bool in_flight;
	uint64_t purge_timer;
	bool purging;
	/* the pipeline's figures since start (QueueStats "pipeline") */
	uint64_t batches, committed, max_batch, sign_us, txn_us;
} S;

static uint64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int64_t
now_s(void)
{
	return (int64_t)time(NULL);
}

/* ------------------------------------------------------------------ */
/* errors */

static int
reply_invalid(struct vl_call *call, const struct sheet_errors *e)
{
	return vl_reply_error(call, ERR("InvalidSheet"), sheetbuild_errors_json(e));
}

static int
reply_invalid1(struct vl_call *call, const char *field, const char *why)
{
	struct sheet_errors e = { .n = 1 };
	snprintf(e.e[0].field, sizeof(e.e[0].field), "%s", field);
	snprintf(e.e[0].msg, sizeof(e.e[0].msg), "%s", why);
	return reply_invalid(call, &e);
}

/* Whether the practitioner's signer can sign now; answers the call when
 * not (NotLoggedIn asks for the PIN on the event bus too). */
static bool
signer_ready(struct vl_call *call, int *alg, struct signer **out)
{
	struct signer *sg = pinflow_signer();
	const struct signer_status *st = sg ? signer_status(sg) : NULL;
	*out = sg;
	*alg = 0;
	if (!st || st->state == SIGNER_DISABLED) {
		vl_reply_error(call, ERR("SignerUnavailable"),
		               json_pack("{s:s}", "reason",
		                         "no signer is configured ([signer] backend = none): sheets "
		                         "cannot be signed"));
		return false;
	}
	if (st->state == SIGNER_LOCKED || (st->state == SIGNER_READY && !st->logged_in)) {
		pinflow_request(PINFLOW_TARGET_PRACTITIONER, st->tries_left, st->pinpad);
		sheetread_reply_error(call, SIGNER_E_LOGIN_NEEDED, NULL, NULL);
		return false;
	}
	if (st->state != SIGNER_READY || !signer_alg_name(st->cose_alg)) {
		char why[200];
		snprintf(why, sizeof(why), "the signer is %s%s%s", signer_state_name(st->state),
		         st->reason[0] ? ": " : "", st->reason);
		vl_reply_error(call, ERR("SignerUnavailable"), json_pack("{s:s}", "reason", why));
		return false;
	}
	*alg = st->cose_alg;
	return true;
}

/* ------------------------------------------------------------------ */
/* creates */

static struct create *
create_new(enum ckind kind, struct vl_call *call)
{
	struct create *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->s = malloc(sizeof(*c->s));
	if (!c->s) {
		free(c);
		return NULL;
	}
	sheet_init(c->s);
	c->kind = kind;
	c->call = call;
	return c;
}

static void
create_free(struct create *c)
{
	if (!c)
		return;
	if (c->s) {
		explicit_bzero(c->s, sizeof(*c->s));
		free(c->s);
	}
	if (c->draft) {
		explicit_bzero(c->draft, c->draft_len);
		free(c->draft);
	}
	json_decref(c->patch);
	free(c);
}

static void
create_cancel(struct vl_call *call, void *arg)
{
	(void)call;
	struct create *c = arg;
	c->call = NULL; /* the create goes on; only its answer is lost */
}

static void
fill_ctx(struct sheetbuild_ctx *x, char *pract, size_t plen, char *strc, size_t slen)
{
	const char *id = NULL, *structure = NULL, *who = NULL;
	pinflow_practitioner(&id, &structure, &who);
	snprintf(pract, plen, "%s", id ? id : "");
	snprintf(strc, slen, "%s", structure ? structure : "");
	x->terminal_id = S.d->terminal_id;
	x->practitioner_id = pract;
	x->structure_id = strc;
	x->holiday_flags = S.d->cfg->alsace_moselle ? HOLIDAYS_ALSACE_MOSELLE : 0;
	x->now = now_s();
	x->today = sheetbuild_local_day(x->now);
}

static int
rand16(uint8_t rnd[16])
{
	return RAND_bytes(rnd, 16) == 1 ? 0 : -EIO;
}

/* The queue's columns for c (care date, due date, practitioner). */
static void
queue_columns(struct create *c)
{
	holidays_format(c->s->care_date, c->care, sizeof(c->care));
	if (c->s->due_date != SHEET_NO_DATE)
		holidays_format(c->s->due_date, c->due, sizeof(c->due));
	/* a draft may not know its practitioner yet; the queue wants a value */
	snprintf(c->pract, sizeof(c->pract), "%s", c->s->practitioner_id[0] ? c->s->practitioner_id : "-");
}

static int seal(void *arg, const struct queue_put *item, uint32_t seq, uint8_t **payload,
                size_t *len);

static int
batch_work(struct queue *q, void *arg)
{
	struct batch *b = arg;
	struct queue_put items[SHEETS_BATCH_MAX];
	memset(items, 0, sizeof(items));
	for (size_t i = 0; i < b->n; i++) {
		struct create *c = b->c[i];
		c->batch = b;
		c->idx = i;
		items[i] = (struct queue_put){
			.id = c->s->id,
			.practitioner = c->pract,
			.care_date = c->care,
			.due_date = c->kind == C_DRAFT ? NULL : c->due,
			.draft = c->kind == C_DRAFT,
			.payload = c->draft,
			.payload_len = c->draft_len,
			.seal = c->kind == C_DRAFT ? NULL : seal,
			.seal_arg = c,
		};
	}
	uint64_t t0 = now_us();
	b->rc = queue_put_batch(q, items, b->n);
	b->txn_us = now_us() - t0;
	for (size_t i = 0; i < b->n; i++) {
		/* signed ahead for a number the transaction did not give (it failed) */
		if (b->c[i]->pre_on) {
			sheetseal_cancel(S.sealer, &b->c[i]->pre);
			b->c[i]->pre_on = false;
		}
	}
	if (b->rc < 0)
		snprintf(b->reason, sizeof(b->reason), "%s", queue_last_error(q));
	for (size_t i = 0; i < b->n; i++) {
		struct create *c = b->c[i];
		c->result = items[i].result;
		c->seq = items[i].seq;
		b->sign_us += c->sign_us;
		if (c->result < 0 && !c->reason[0])
			snprintf(c->reason, sizeof(c->reason), "%s",
			         b->rc < 0 ? b->reason : queue_last_error(q));
	}
	return b->rc == 0 ? SHEETQ_WROTE : 0;
}

/* Queue thread, inside the write transaction: the first sheet of a
 * practitioner and care date in the batch gets its number; the next ones of
 * the same group will get the next numbers (daemon/sheets/sheetseal.h), so they
 * are signed ahead while this one is inserted. */
static void
sign_ahead(struct create *c, uint32_t seq)
{
	struct batch *b = c->batch;
	if (!b || !S.sealer)
		return;
	uint32_t next = seq;
	for (size_t j = c->idx + 1; j < b->n; j++) {
		struct create *f = b->c[j];
		if (f->kind != C_SHEET || f->pre_on || strcmp(f->pract, c->pract) != 0 ||
		    strcmp(f->care, c->care) != 0)
			continue;
		f->pre = (struct sheetseal_task){ .s = f->s, .seq = ++next, .alg = f->alg,
			                          .signer = f->signer };
		sheetseal_submit(S.sealer, &f->pre);
		f->pre_on = true;
	}
}

/* Queue thread, inside the write transaction: the number is known, sign. */
static int
seal(void *arg, const struct queue_put *item, uint32_t seq, uint8_t **payload, size_t *len)
{
	(void)item;
	struct create *c = arg;
	if (c->pre_on) {
		int r = sheetseal_wait(S.sealer, &c->pre);
		c->pre_on = false;
		if (r == 0 && c->pre.seq == seq) {
			*payload = c->pre.out;
			*len = c->pre.len;
			c->s->seq = seq;
			c->sign_us = c->pre.sign_us;
			return 0;
		}
		/* another number than foreseen (an item before failed): sign again */
		sheetseal_cancel(S.sealer, &c->pre);
	} else {
		sign_ahead(c, seq);
	}
	uint64_t t0 = now_us();
	c->s->seq = seq;
	int r = sheetsig_sign(c->s, c->alg, signer_sign, c->signer, payload, len);
	c->sign_us = now_us() - t0;
	if (r < 0) {
		c->s->seq = 0;
		snprintf(c->reason, sizeof(c->reason), "signing failed: %s",
		         r == SIGNER_E_LOGIN_NEEDED ? "the practitioner is not logged in" : strerror(-r));
	}
	return r;
}

static json_t *
created_json(const struct create *c)
{
	return json_pack("{s:s,s:s,s:o,s:s,s:o,s:s,s:s}", "id", c->s->id, "state",
	                 c->kind == C_DRAFT ? "draft" : "queued", "seq",
	                 c->seq ? json_integer(c->seq) : json_null(), "care_date", c->care,
	                 "due_date", sheetread_opt_str(c->due), "mode",
	                 sheet_mode_name(c->s->mode) ? sheet_mode_name(c->s->mode) : "",
	                 "practitioner_id", c->pract);
}

/* Loop: a create is stored (or not); tell its caller and the event bus. */
static void
create_finished(struct create *c)
{
	if (c->result == 0) {
		if (c->kind == C_DRAFT)
			events_publish("DraftCreated",
			               json_pack("{s:s,s:s?,s:s}", "id", c->s->id, "reader",
			                         c->reader[0] ? c->reader : NULL, "care_date", c->care));
		else
			events_publish("SheetQueued", json_pack("{s:s,s:i,s:s,s:s}", "id", c->s->id, "number",
			                                        (int)c->seq, "care_date", c->care,
			                                        "due_date", c->due));
		if (c->call)
			vl_reply(c->call, created_json(c));
		else if (c->kind == C_DRAFT)
			log_info("queue: draft %s made from the card in %s", c->s->id, c->reader);
	} else {
		log_warn("queue: %s %s not stored: %s", c->kind == C_DRAFT ? "draft" : "sheet", c->s->id,
		         c->reason[0] ? c->reason : strerror(-c->result));
		if (c->call)
			sheetread_reply_error(c->call, c->result, c->reason, c->s->id);
	}
	create_free(c);
}

static void flush(void);

static void
batch_done(void *arg)
{
	struct batch *b = arg;
	S.in_flight = false;
	if (b->rc == 0) {
		S.batches++;
		S.txn_us += b->txn_us;
		S.sign_us += b->sign_us;
		if (b->n > S.max_batch)
			S.max_batch = b->n;
		for (size_t i = 0; i < b->n; i++)
			S.committed += b->c[i]->result == 0;
	}
	for (size_t i = 0; i < b->n; i++)
		create_finished(b->c[i]);
	free(b);
	flush();
}

/* Start the next batch when none is in flight. */
static void
flush(void)
{
	if (S.in_flight || !S.pend_head || !S.sq)
		return;
	struct batch *b = calloc(1, sizeof(*b));
	if (!b)
		return; /* retried at the next create or batch end */
	while (S.pend_head && b->n < SHEETS_BATCH_MAX) {
		struct create *c = S.pend_head;
		S.pend_head = c->next;
		c->next = NULL;
		b->c[b->n++] = c;
		S.npend--;
	}
	if (!S.pend_head)
		S.pend_tail = NULL;
	int r = sheetq_run(S.sq, batch_work, batch_done, b);
	if (r < 0) {
		for (size_t i = 0; i < b->n; i++) {
			b->c[i]->result = r;
			create_finished(b->c[i]);
		}
		free(b);
		return;
	}
	S.in_flight = true;
}

static void
submit(struct create *c)
{
	queue_columns(c);
	if (c->call)
		vl_call_set_cancel(c->call, create_cancel, c);
	if (S.pend_tail)
		S.pend_tail->next = c;
	else
		S.pend_head = c;
	S.pend_tail = c;
	S.npend++;
	flush();
}

/* Read the optional reader/beneficiary/degraded parameters and the sheet
 * object; answers InvalidParameter itself. */
struct create_params {
	json_t *sheet;
	const char *reader;
	int beneficiary;
	bool degraded;
};

static bool
get_params(struct vl_call *call, json_t *params, bool need_sheet, bool allow_degraded,
           struct create_params *p)
{
	const char *k;
	json_t *v;
	memset(p, 0, sizeof(*p));
	json_object_foreach(params, k, v) {
		if (!strcmp(k, "sheet") && (json_is_object(v) || (json_is_null(v) && !need_sheet)))
			p->sheet = json_is_object(v) ? v : NULL;
		else if (!strcmp(k, "reader") && (json_is_string(v) || json_is_null(v)))
			p->reader = json_string_value(v);
		else if (!strcmp(k, "beneficiary") && json_is_integer(v) && json_integer_value(v) >= 0 &&
		         json_integer_value(v) < CARD_BENEFICIARIES_MAX)
			p->beneficiary = (int)json_integer_value(v);
		else if (!strcmp(k, "beneficiary") && json_is_null(v))
			;
		else if (!strcmp(k, "degraded") && allow_degraded && (json_is_boolean(v) || json_is_null(v)))
			p->degraded = json_is_true(v);
		else {
			vl_reply_invalid_param(call, k);
			return false;
		}
	}
	if (need_sheet && !p->sheet) {
		vl_reply_invalid_param(call, "sheet");
		return false;
	}
	return true;
}

/* The patient from the current card, or NoCard / InvalidSheet. */
static bool
patient_from_card(struct vl_call *call, struct create *c, const struct create_params *p)
{
	const char *rname = NULL, *read_at = NULL;
	const struct card_result *card = readers_current_card(p->reader, &rname, &read_at);
	char why[200];
	if (!card) {
		vl_reply_error(call, ERR("NoCard"),
		               json_pack("{s:s?,s:s}", "reader", p->reader, "reason",
		                         "no card read (use degraded: true to make a sheet without "
		                         "the card)"));
		return false;
	}
	int r = sheetbuild_patient_from_card(c->s, card, read_at, p->beneficiary, why, sizeof(why));
	if (r == -ENOENT) {
		vl_reply_error(call, ERR("NoCard"), json_pack("{s:s?,s:s}", "reader", rname, "reason", why));
		return false;
	}
	if (r < 0) {
		reply_invalid1(call, "evidence", why);
		return false;
	}
	snprintf(c->reader, sizeof(c->reader), "%s", rname ? rname : "");
	return true;
}

static int
m_create_sheet(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	struct create_params p;
	struct sheet_errors errs;
	uint8_t rnd[16];
	if (!get_params(call, params, true, true, &p))
		return 0;
	struct create *c = create_new(C_SHEET, call);
	if (!c)
		return -ENOMEM;
	if (sheetbuild_from_json(p.sheet, p.degraded ? SHEETBUILD_DEGRADED : SHEETBUILD_TILL, c->s,
	                         &errs) < 0) {
		reply_invalid(call, &errs);
		goto done;
	}
	if (p.degraded)
		c->s->mode = SHEET_MODE_DEGRADED;
	else if (!patient_from_card(call, c, &p))
		goto done;
	fill_ctx(&c->ctx, c->pract_id, sizeof(c->pract_id), c->struct_id, sizeof(c->struct_id));
	if (rand16(rnd) < 0) {
		vl_reply_error(call, ERR("InternalError"),
		               json_pack("{s:s}", "reason", "no random bytes for the sheet id"));
		goto done;
	}
	if (sheetbuild_finish(c->s, &c->ctx, rnd, false) < 0) {
		reply_invalid1(call, "care_date", "outside the calendar vitaled knows");
		goto done;
	}
	struct sheet_check chk = { .today = c->ctx.today, .now = c->ctx.now };
	if (sheet_validate(c->s, &chk, &errs) < 0) {
		reply_invalid(call, &errs);
		goto done;
	}
	if (!signer_ready(call, &c->alg, &c->signer))
		goto done;
	submit(c);
	return 0;
done:
	create_free(c);
	return 0;
}

/* A draft: identity and evidence now, the rest when the practitioner
 * completes it. call may be NULL (the kiosk's own drafts). */
static int
draft_prepare(struct create *c)
{
	uint8_t rnd[16];
	fill_ctx(&c->ctx, c->pract_id, sizeof(c->pract_id), c->struct_id, sizeof(c->struct_id));
	if (rand16(rnd) < 0 || sheetbuild_finish(c->s, &c->ctx, rnd, true) < 0)
		return -EIO;
	struct sheet_check chk = { .today = c->ctx.today, .now = c->ctx.now, .draft = true };
	if (sheet_validate(c->s, &chk, &c->errs) < 0)
		return -EINVAL;
	json_t *j = sheet_to_json(c->s);
	char *t = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!t)
		return -ENOMEM;
	c->draft_len = strlen(t);
	c->draft = (uint8_t *)t;
	return 0;
}

static int
m_create_draft(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	struct create_params p;
	if (!get_params(call, params, false, false, &p))
		return 0;
	struct create *c = create_new(C_DRAFT, call);
	if (!c)
		return -ENOMEM;
	if (sheetbuild_from_json(p.sheet, SHEETBUILD_TILL, c->s, &c->errs) < 0) {
		reply_invalid(call, &c->errs);
		goto done;
	}
	if (!patient_from_card(call, c, &p))
		goto done;
	int r = draft_prepare(c);
	if (r == -EINVAL) {
		reply_invalid(call, &c->errs);
		goto done;
	}
	if (r < 0) {
		sheetread_reply_error(call, r, "cannot prepare the draft", NULL);
		goto done;
	}
	submit(c);
	return 0;
done:
	create_free(c);
	return 0;
}

/* Kiosk mode: every patient card read checks the patient in. */
static void
on_card_read(const char *reader, const struct card_result *r, void *arg)
{
	(void)arg;
	if (strcmp(S.d->cfg->mode, "kiosk") != 0 || !r->readable || r->nbeneficiaries == 0 ||
	    (strcmp(r->kind, "patient") != 0 && strcmp(r->kind, "digital") != 0))
		return;
	struct create *c = create_new(C_DRAFT, NULL);
	if (!c)
		return;
	const char *rname = NULL, *read_at = NULL;
	char why[200];
	const struct card_result *cur = readers_current_card(reader, &rname, &read_at);
	int e = cur ? sheetbuild_patient_from_card(c->s, cur, read_at, 0, why, sizeof(why)) : -ENOENT;
	if (e < 0 || draft_prepare(c) < 0) {
		log_warn("queue: kiosk: no draft for the card in %s: %s", reader,
		         e < 0 ? (cur ? why : "the card is gone") :
		         c->errs.n ? c->errs.e[0].msg : "cannot prepare it");
		create_free(c);
		return;
	}
	snprintf(c->reader, sizeof(c->reader), "%s", reader);
	submit(c);
}

/* ------------------------------------------------------------------ */
/* CompleteDraft: the draft's JSON, the till's part over it, validated and
 * signed into the queue in one transaction (queue_complete_draft) */

static int
complete_work(struct queue *q, void *arg)
{
	struct create *c = arg;
	struct queue_meta m;
	uint8_t *pl = NULL;
	size_t plen = 0;
	json_t *draft = NULL;
	int r = queue_get(q, c->s->id, &m, &pl, &plen);
	if (r < 0) {
		snprintf(c->reason, sizeof(c->reason), "%s", queue_last_error(q));
		goto out;
	}
	if (m.state != QUEUE_DRAFT) {
		r = -EPERM;
		snprintf(c->reason, sizeof(c->reason), "sheet %s is %s, not a draft", m.id,
		         queue_state_name(m.state));
		goto out;
	}
	draft = json_loadb((const char *)pl, plen, 0, NULL);
	if (!json_is_object(draft)) {
		r = -EBADMSG;
		snprintf(c->reason, sizeof(c->reason), "the stored draft is not a sheet");
		goto out;
	}
	json_object_update(draft, c->patch); /* the till's keys replace the draft's */
	char id[SHEET_ID_LEN + 1];
	snprintf(id, sizeof(id), "%s", c->s->id);
	if ((r = sheet_from_json(draft, c->s, &c->errs)) < 0)
		goto out;
	/* the sheet is made now, by this practitioner, on this terminal */
	snprintf(c->s->practitioner_id, sizeof(c->s->practitioner_id), "%s", c->pract_id);
	snprintf(c->s->structure_id, sizeof(c->s->structure_id), "%s", c->struct_id);
	snprintf(c->s->terminal_id, sizeof(c->s->terminal_id), "%s", c->terminal);
	c->s->created = c->ctx.now;
	for (size_t i = 0; i < c->s->nacts && i < SHEET_MAX_ACTS; i++)
		if (c->s->acts[i].date == SHEET_NO_DATE)
			c->s->acts[i].date = c->s->care_date;
	struct sheet_check chk = { .today = c->ctx.today, .now = c->ctx.now };
	if (c->s->care_date == SHEET_NO_DATE || sheet_set_due_date(c->s, c->ctx.holiday_flags) < 0 ||
	    sheet_validate(c->s, &chk, &c->errs) < 0) {
		if (!c->errs.n)
			sheet_validate(c->s, &chk, &c->errs);
		r = -EINVAL;
		goto out;
	}
	queue_columns(c);
	struct queue_put it = { .id = id, .practitioner = c->pract, .care_date = c->care,
		                .due_date = c->due, .seal = seal, .seal_arg = c };
	uint64_t t0 = now_us();
	r = queue_complete_draft(q, &it);
	c->sign_us = now_us() - t0;
	c->seq = it.seq;
	if (r < 0 && !c->reason[0])
		snprintf(c->reason, sizeof(c->reason), "%s", queue_last_error(q));
out:
	json_decref(draft);
	if (pl)
		queue_free_payload(pl, plen);
	c->result = r;
	return r == 0 ? SHEETQ_WROTE : 0;
}

static void
complete_done(void *arg)
{
	struct create *c = arg;
	if (c->result == -EINVAL && c->errs.n) {
		if (c->call)
			reply_invalid(c->call, &c->errs);
		create_free(c);
		return;
	}
	create_finished(c);
}

static int
m_complete_draft(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	json_t *id = json_object_get(params, "id"), *sheet = json_object_get(params, "sheet");
	const char *k;
	json_t *v;
	json_object_foreach(params, k, v) if (strcmp(k, "id") && strcmp(k, "sheet"))
		return vl_reply_invalid_param(call, k);
	if (!json_is_string(id) || json_string_length(id) > SHEET_ID_LEN)
		return vl_reply_invalid_param(call, "id");
	if (!json_is_object(sheet))
		return vl_reply_invalid_param(call, "sheet");
	struct create *c = create_new(C_COMPLETE, call);
	if (!c)
		return -ENOMEM;
	if (sheetbuild_check_keys(sheet, SHEETBUILD_COMPLETE, &c->errs) < 0) {
		reply_invalid(call, &c->errs);
		create_free(c);
		return 0;
	}
	snprintf(c->s->id, sizeof(c->s->id), "%s", json_string_value(id));
	if (!signer_ready(call, &c->alg, &c->signer)) {
		create_free(c);
		return 0;
	}
	fill_ctx(&c->ctx, c->pract_id, sizeof(c->pract_id), c->struct_id, sizeof(c->struct_id));
	snprintf(c->terminal, sizeof(c->terminal), "%s", S.d->terminal_id);
	c->patch = json_deep_copy(sheet);
	int r = c->patch ? sheetq_run(S.sq, complete_work, complete_done, c) : -ENOMEM;
	if (r < 0) {
		sheetread_reply_error(call, r, NULL, NULL);
		create_free(c);
		return 0;
	}
	vl_call_set_cancel(call, create_cancel, c);
	return 0;
}

/* ------------------------------------------------------------------ */
/* statistics and status */

static json_t *
stats_json(bool full)
{
	struct queue_stats st;
	if (!S.sq)
		return json_pack("{s:s,s:i,s:i,s:n,s:n}", "state", "closed", "total", 0, "queued", 0,
		                 "oldest", "next_due");
	sheetq_stats(S.sq, &st);
	json_t *o = json_pack("{s:s,s:I,s:I,s:o,s:o}", "state", "open", "total", (json_int_t)st.total,
	                      "queued", (json_int_t)(st.count[QUEUE_QUEUED] + st.count[QUEUE_SENDING]),
	                      "oldest", sheetread_iso_ms(st.oldest_queued_ms), "next_due", sheetread_opt_str(st.next_due));
	if (!o || !full)
		return o;
	json_t *counts = json_object();
	for (int i = 0; i < QUEUE_NSTATES; i++)
		json_object_set_new(counts, queue_state_name((enum queue_state)i),
		                    json_integer((json_int_t)st.count[i]));
	json_object_set_new(o, "counts", counts);
	json_object_set_new(o, "bytes", json_integer((json_int_t)st.bytes));
	json_object_set_new(o, "max_sheets", json_integer(st.max_sheets));
	json_object_set_new(o, "max_bytes", json_integer(st.max_bytes));
	json_object_set_new(o, "pipeline",
	                    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "batches", (json_int_t)S.batches,
	                              "sheets", (json_int_t)S.committed, "max_batch",
	                              (json_int_t)S.max_batch, "sign_us", (json_int_t)S.sign_us,
	                              "txn_us", (json_int_t)S.txn_us, "waiting",
	                              (json_int_t)S.npend));
	return o;
}

static int
m_queue_stats(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	return vl_reply(call, stats_json(true));
}

static void
status_cb(struct daemon *d, json_t *st, void *arg)
{
	(void)d;
	(void)arg;
	json_object_set_new(st, "queue", stats_json(false));
}

/* ------------------------------------------------------------------ */
/* retention */

struct purge {
	size_t purged;
	int result;
	char reason[QUEUE_REASON_MAX];
};

static void purge_timer(struct loop *l, void *arg);

static int
purge_work(struct queue *q, void *arg)
{
	struct purge *p = arg;
	int days = (int)S.d->cfg->retention_days;
	struct queue_retention ret = { .finished_days = days, .draft_days = days };
	p->result = queue_purge(q, &ret, SHEETS_PURGE_CHUNK, &p->purged);
	if (p->result < 0)
		snprintf(p->reason, sizeof(p->reason), "%s", queue_last_error(q));
	return p->purged ? SHEETQ_WROTE : 0;
}

static void
purge_done(void *arg)
{
	struct purge *p = arg;
	S.purging = false;
	if (p->result < 0)
		log_warn("queue: retention purge failed: %s", p->reason);
	else if (p->purged)
		log_info("queue: retention: %zu sheets older than %ld days purged", p->purged,
		         S.d->cfg->retention_days);
	/* a full chunk: more may be waiting; let other work in between */
	uint64_t next = p->result == 0 && p->purged == SHEETS_PURGE_CHUNK ? 0 : SHEETS_PURGE_EVERY_MS;
	free(p);
	if (S.sq && !S.d->stopping)
		S.purge_timer = loop_timer_add(S.d->loop, next, purge_timer, NULL);
}

static void
purge_timer(struct loop *l, void *arg)
{
	(void)l;
	(void)arg;
	S.purge_timer = 0;
	struct purge *p = calloc(1, sizeof(*p));
	if (!p || sheetq_run(S.sq, purge_work, purge_done, p) < 0) {
		free(p);
		return;
	}
	S.purging = true;
}

/* ------------------------------------------------------------------ */
/* module */

int
sheets_init(struct daemon *d)
{
	char err[600];
	memset(&S, 0, sizeof(S));
	S.d = d;
	struct queue_opts o = {
		.dir = d->cfg->state_dir,
		.max_sheets = d->cfg->queue_max_sheets,
		.max_bytes = d->cfg->queue_max_bytes,
	};
	uint64_t t0 = now_us();
	int r = sheetseal_start(&S.sealer);
	if (r < 0) {
		log_err("queue: cannot start the signing thread: %s", strerror(-r));
		return r;
	}
	r = sheetq_start(d->loop, &o, &S.sq, err, sizeof(err));
	if (r < 0) {
		log_err("queue: cannot open the queue in %s: %s (%s)", d->cfg->state_dir, err,
		        queue_error_name(r));
		sheetseal_stop(S.sealer);
		S.sealer = NULL;
		return r;
	}
	struct queue_stats st;
	sheetq_stats(S.sq, &st);
	log_notice("queue: open in %s: %llu sheets, %llu queued, opened in %llu ms", d->cfg->state_dir,
	           (unsigned long long)st.total,
	           (unsigned long long)(st.count[QUEUE_QUEUED] + st.count[QUEUE_SENDING]),
	           (unsigned long long)((now_us() - t0) / 1000u));
	static const struct {
		const char *name;
		vl_method_fn fn;
		unsigned flags;
	} methods[] = {
		{ ERR("CreateSheet"), m_create_sheet, VL_CONTROL },
		{ ERR("CreateDraft"), m_create_draft, VL_CONTROL },
		{ ERR("CompleteDraft"), m_complete_draft, VL_CONTROL },
		{ ERR("QueueStats"), m_queue_stats, 0 },
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if ((r = vl_server_add_method(d->api, methods[i].name, methods[i].fn, NULL,
		                              methods[i].flags)) < 0)
			goto fail;
	if ((r = sheetread_register(d, S.sq)) < 0 || (r = status_add_provider(status_cb, NULL)) < 0)
		goto fail;
	readers_set_read_hook(on_card_read, NULL);
	S.purge_timer = loop_timer_add(d->loop, SHEETS_PURGE_FIRST_MS, purge_timer, NULL);
	return 0;
fail:
	log_err("queue: cannot register its methods: %s", strerror(-r));
	sheetq_stop(S.sq);
	S.sq = NULL;
	sheetseal_stop(S.sealer);
	S.sealer = NULL;
	return r;
}

void
sheets_fini(struct daemon *d)
{
	readers_set_read_hook(NULL, NULL);
	if (S.purge_timer)
		loop_timer_cancel(d->loop, S.purge_timer);
	S.purge_timer = 0;
	/* the batch in flight and every job queued run to the end and answer */
	struct sheetq *sq = S.sq;
	sheetread_stop();
	sheetq_stop(sq); /* may call batch_done → flush, which sees the queue stopping */
	S.sq = NULL;
	while (S.pend_head) {
		struct create *c = S.pend_head;
		S.pend_head = c->next;
		c->result = -ESHUTDOWN;
		create_finished(c);
	}
	S.pend_tail = NULL;
	S.npend = 0;
	sheetseal_stop(S.sealer); /* after the queue thread: nothing waits on it any more */
	S.sealer = NULL;
}
