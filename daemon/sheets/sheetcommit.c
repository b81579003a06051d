/* The sheet-creation state machine; see sheetcommit.h.
 *
 *   submit ─> pending list ─(no batch in flight)─> one batch ─> ops.run:
 *        BEGIN IMMEDIATE; per sheet: seq = MAX+1, seal (encode, sign,
 *        AES-GCM), INSERT; COMMIT (one fsync for the whole batch)
 *   batch done ─> each request finished with its own result ─> next batch
 *
 * A caller that goes away while its request is pending loses only the
 * answer (the API clears r->caller): the sheet is stored (or not) exactly
 * as if it had stayed, and a stored sheet is never deleted, which is what
 * "nothing acknowledged is ever lost" needs.
 */
#include "daemon/sheets/sheetcommit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/pin/signer.h"
#include "protocol/holidays.h"
#include "protocol/sheetsig.h"

struct sheetcommit_batch {
	size_t n;
	struct sheetcommit_req *c[SHEETCOMMIT_BATCH_MAX];
	int rc;
	char reason[QUEUE_REASON_MAX];
	uint64_t sign_us, txn_us;
};

struct sheetcommit {
	struct sheetcommit_ops ops;
	struct sheetseal *sealer;     /* read by the work functions */
	struct sheetcommit_req *pend_head, *pend_tail;
	size_t npend;
	bool in_flight;
	struct sheetcommit_figures fig;
};

struct sheetcommit_req *
sheetcommit_req_new(enum sheetcommit_kind kind)
{
	struct sheetcommit_req *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->s = malloc(sizeof(*r->s));
	if (!r->s) {
		free(r);
		return NULL;
	}
	sheet_init(r->s);
	r->kind = kind;
	return r;
}

void
sheetcommit_req_free(struct sheetcommit_req *r)
{
	if (!r)
		return;
	if (r->s) {
		explicit_bzero(r->s, sizeof(*r->s));
		free(r->s);
	}
	if (r->draft) {
		explicit_bzero(r->draft, r->draft_len);
		free(r->draft);
	}
	json_decref(r->patch);
	free(r);
}

static void
finish(struct sheetcommit_req *r)
{
	if (r->finished)
		r->finished(r, r->finished_arg);
	sheetcommit_req_free(r);
}

struct sheetcommit *
sheetcommit_new(const struct sheetcommit_ops *ops, struct sheetseal *sealer)
{
	struct sheetcommit *sc = calloc(1, sizeof(*sc));
	if (!sc)
		return NULL;
	sc->ops = *ops;
	sc->sealer = sealer;
	return sc;
}

void
sheetcommit_free(struct sheetcommit *sc)
{
	if (!sc)
		return;
	while (sc->pend_head) {
		struct sheetcommit_req *r = sc->pend_head;
		sc->pend_head = r->next;
		sc->npend--;
		r->result = -ESHUTDOWN;
		finish(r);
	}
	free(sc);
}

void
sheetcommit_figures(const struct sheetcommit *sc, struct sheetcommit_figures *f)
{
	*f = sc->fig;
	f->waiting = sc->npend;
}

int
sheetcommit_draft_prepare(struct sheetcommit_req *r, const uint8_t rnd[16])
{
	if (sheetbuild_finish(r->s, &r->ctx, rnd, true) < 0)
		return -EIO;
	struct sheet_check chk = { .today = r->ctx.today, .now = r->ctx.now, .draft = true };
	if (sheet_validate(r->s, &chk, &r->errs) < 0)
		return -EINVAL;
	json_t *j = sheet_to_json(r->s);
	char *t = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (!t)
		return -ENOMEM;
	r->draft_len = strlen(t);
	r->draft = (uint8_t *)t;
	return 0;
}

static uint64_t
clock_now(const struct sheetcommit_req *r)
{
	return r->sc->ops.now_us(r->sc->ops.ctx);
}

/* The queue's columns for r (care date, due date, practitioner). */
static void
queue_columns(struct sheetcommit_req *r)
{
	holidays_format(r->s->care_date, r->care, sizeof(r->care));
	if (r->s->due_date != SHEET_NO_DATE)
		holidays_format(r->s->due_date, r->due, sizeof(r->due));
	/* a draft may not know its practitioner yet; the queue wants a value */
	snprintf(r->pract, sizeof(r->pract), "%s", r->s->practitioner_id[0] ? r->s->practitioner_id : "-");
}

/* ------------------------------------------------------------------ */
/* sealing, inside the write transaction (the work's thread) */

/* The first sheet of a practitioner and care date in the batch has its
 * number; the next ones of the same group will get the next numbers
 * (daemon/sheets/sheetseal.h), so they are signed ahead while this one is
 * inserted. */
static void
sign_ahead(struct sheetcommit_req *r, uint32_t seq)
{
	struct sheetcommit_batch *b = r->batch;
	if (!b || !r->sc->sealer)
		return;
	uint32_t next = seq;
	for (size_t j = r->idx + 1; j < b->n; j++) {
		struct sheetcommit_req *f = b->c[j];
		if (f->kind != SHEETCOMMIT_SHEET || f->pre_on || strcmp(f->pract, r->pract) != 0 ||
		    strcmp(f->care, r->care) != 0)
			continue;
		f->pre = (struct sheetseal_task){ .s = f->s, .seq = ++next, .alg = f->alg,
			                          .sign = f->sign, .sign_ctx = f->sign_ctx };
		sheetseal_submit(r->sc->sealer, &f->pre);
		f->pre_on = true;
	}
}

/* The number is known: sign (or take the signature made ahead). */
static int
seal(void *arg, const struct queue_put *item, uint32_t seq, uint8_t **payload, size_t *len)
{
	(void)item;
	struct sheetcommit_req *r = arg;
	struct sheetseal *ss = r->sc->sealer;
	if (r->pre_on) {
		int e = sheetseal_wait(ss, &r->pre);
		r->pre_on = false;
		if (e == 0 && r->pre.seq == seq) {
			*payload = r->pre.out;
			*len = r->pre.len;
			r->s->seq = seq;
			r->sign_us = r->pre.sign_us;
			return 0;
		}
		/* another number than foreseen (an item before failed): sign again */
		struct sheetseal_task *t = &r->pre;
		sheetseal_cancel(ss, &t, 1);
	} else {
		sign_ahead(r, seq);
	}
	uint64_t t0 = clock_now(r);
	r->s->seq = seq;
	int e = sheetsig_sign(r->s, r->alg, r->sign, r->sign_ctx, payload, len);
	r->sign_us = clock_now(r) - t0;
	if (e < 0) {
		r->s->seq = 0;
		snprintf(r->reason, sizeof(r->reason), "signing failed: %s",
		         e == SIGNER_E_LOGIN_NEEDED ? "the practitioner is not logged in" : strerror(-e));
	}
	return e;
}

/* ------------------------------------------------------------------ */
/* group commit */

/* The request's id was known: answer with the sheet it made. */
static void
replay_set(struct sheetcommit_req *r, const struct queue_meta *m)
{
	r->replayed = true;
	r->state = m->state;
	r->seq = m->seq;
	snprintf(r->s->id, sizeof(r->s->id), "%s", m->id);
	snprintf(r->care, sizeof(r->care), "%s", m->care_date);
	snprintf(r->due, sizeof(r->due), "%s", m->due_date);
	snprintf(r->pract, sizeof(r->pract), "%s", m->practitioner);
}

/* The work's thread: one transaction for the whole batch. */
static int
batch_work(struct queue *q, void *arg)
{
	struct sheetcommit_batch *b = arg;
	struct queue_put items[SHEETCOMMIT_BATCH_MAX];
	memset(items, 0, sizeof(items));
	for (size_t i = 0; i < b->n; i++) {
		struct sheetcommit_req *r = b->c[i];
		bool draft = r->kind == SHEETCOMMIT_DRAFT;
		r->batch = b;
		r->idx = i;
		items[i] = (struct queue_put){
			.id = r->s->id,
			.practitioner = r->pract,
			.care_date = r->care,
			.due_date = draft ? NULL : r->due,
			.draft = draft,
			.payload = r->draft,
			.payload_len = r->draft_len,
			.seal = draft ? NULL : seal,
			.seal_arg = r,
			.request_id = r->request_id[0] ? r->request_id : NULL,
		};
	}
	uint64_t t0 = b->n ? clock_now(b->c[0]) : 0;
	b->rc = queue_put_batch(q, items, b->n);
	b->txn_us = b->n ? clock_now(b->c[0]) - t0 : 0;
	/* signed ahead for a number the transaction did not give (it failed) */
	struct sheetseal_task *left[SHEETCOMMIT_BATCH_MAX];
	size_t nleft = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->c[i]->pre_on) {
			left[nleft++] = &b->c[i]->pre;
			b->c[i]->pre_on = false;
		}
	}
	if (nleft)
		sheetseal_cancel(b->c[0]->sc->sealer, left, nleft);
	if (b->rc < 0)
		snprintf(b->reason, sizeof(b->reason), "%s", queue_last_error(q));
	for (size_t i = 0; i < b->n; i++) {
		struct sheetcommit_req *r = b->c[i];
		r->result = items[i].result;
		r->seq = items[i].seq;
		r->state = r->kind == SHEETCOMMIT_DRAFT ? QUEUE_DRAFT : QUEUE_QUEUED;
		if (r->result == 0 && items[i].replayed)
			replay_set(r, &items[i].replay);
		b->sign_us += r->sign_us;
		if (r->result < 0 && !r->reason[0])
			snprintf(r->reason, sizeof(r->reason), "%s",
			         b->rc < 0 ? b->reason : queue_last_error(q));
	}
	return b->rc == 0 ? SHEETQ_WROTE : 0;
}

static void flush(struct sheetcommit *sc);

/* The machine's thread: the batch's transaction ended. */
static void
batch_done(void *arg)
{
	struct sheetcommit_batch *b = arg;
	struct sheetcommit *sc = b->c[0]->sc;
	sc->in_flight = false;
	if (b->rc == 0) {
		sc->fig.batches++;
		sc->fig.txn_us += b->txn_us;
		sc->fig.sign_us += b->sign_us;
		if (b->n > sc->fig.max_batch)
			sc->fig.max_batch = b->n;
		for (size_t i = 0; i < b->n; i++)
			sc->fig.sheets += b->c[i]->result == 0;
	}
	for (size_t i = 0; i < b->n; i++)
		finish(b->c[i]);
	free(b);
	flush(sc);
}

/* Start the next batch when none is in flight. */
static void
flush(struct sheetcommit *sc)
{
	if (sc->in_flight || !sc->pend_head)
		return;
	struct sheetcommit_batch *b = calloc(1, sizeof(*b));
	if (!b)
		return; /* retried at the next submit or batch end */
	while (sc->pend_head && b->n < SHEETCOMMIT_BATCH_MAX) {
		struct sheetcommit_req *r = sc->pend_head;
		sc->pend_head = r->next;
		r->next = NULL;
		b->c[b->n++] = r;
		sc->npend--;
	}
	if (!sc->pend_head)
		sc->pend_tail = NULL;
	int e = sc->ops.run(sc->ops.ctx, batch_work, batch_done, b);
	if (e < 0) {
		for (size_t i = 0; i < b->n; i++) {
			b->c[i]->result = e;
			finish(b->c[i]);
		}
		free(b);
		return;
	}
	sc->in_flight = true;
}

void
sheetcommit_submit(struct sheetcommit *sc, struct sheetcommit_req *r)
{
	r->sc = sc;
	r->next = NULL;
	queue_columns(r);
	if (sc->pend_tail)
		sc->pend_tail->next = r;
	else
		sc->pend_head = r;
	sc->pend_tail = r;
	sc->npend++;
	flush(sc);
}

/* ------------------------------------------------------------------ */
/* CompleteDraft: the draft's JSON, the till's part over it, validated and
 * signed into the queue in one transaction (queue_complete_draft) */

/* The merged sheet, made now by this practitioner on this terminal;
 * 0, -EINVAL with r->errs. */
static int
complete_build(struct sheetcommit_req *r, json_t *draft)
{
	if (json_object_get(r->patch, "lines") || json_object_get(r->patch, "acts")) {
		/* the till's lines replace the draft's, whichever form each has
		 * (a draft stored before model 2 has "acts") */
		json_object_del(draft, "lines");
		json_object_del(draft, "acts");
	}
	json_object_update(draft, r->patch); /* the till's keys replace the draft's */
	int e = sheet_from_json(draft, r->s, &r->errs);
	if (e < 0)
		return e;
	snprintf(r->s->practitioner_id, sizeof(r->s->practitioner_id), "%s", r->pract_id);
	snprintf(r->s->structure_id, sizeof(r->s->structure_id), "%s", r->struct_id);
	snprintf(r->s->terminal_id, sizeof(r->s->terminal_id), "%s", r->terminal);
	r->s->created = r->ctx.now;
	for (size_t i = 0; i < r->s->nlines && i < SHEET_MAX_LINES; i++)
		if (r->s->lines[i].date == SHEET_NO_DATE)
			r->s->lines[i].date = r->s->care_date;
	struct sheet_check chk = { .today = r->ctx.today, .now = r->ctx.now };
	if (r->s->care_date == SHEET_NO_DATE || sheet_set_due_date(r->s, r->ctx.holiday_flags) < 0 ||
	    sheet_validate(r->s, &chk, &r->errs) < 0) {
		if (!r->errs.n)
			sheet_validate(r->s, &chk, &r->errs);
		return -EINVAL;
	}
	return 0;
}

/* The work's thread. */
static int
complete_work(struct queue *q, void *arg)
{
	struct sheetcommit_req *r = arg;
	struct queue_meta m;
	uint8_t *pl = NULL;
	size_t plen = 0;
	json_t *draft = NULL;
	char id[SHEET_ID_LEN + 1];
	int e = queue_get(q, r->s->id, &m, &pl, &plen);
	if (e < 0) {
		snprintf(r->reason, sizeof(r->reason), "%s", queue_last_error(q));
		goto out;
	}
	if (m.state != QUEUE_DRAFT && r->request_id[0] &&
	    !strcmp(m.complete_request_id, r->request_id)) {
		replay_set(r, &m); /* this completion again: its answer was lost */
		goto out;
	}
	if (m.state != QUEUE_DRAFT) {
		e = -EPERM;
		snprintf(r->reason, sizeof(r->reason), "sheet %s is %s, not a draft", m.id,
		         queue_state_name(m.state));
		goto out;
	}
	draft = json_loadb((const char *)pl, plen, 0, NULL);
	if (!json_is_object(draft)) {
		e = -EBADMSG;
		snprintf(r->reason, sizeof(r->reason), "the stored draft is not a sheet");
		goto out;
	}
	snprintf(id, sizeof(id), "%s", r->s->id);
	if ((e = complete_build(r, draft)) < 0)
		goto out;
	/* the card the draft was made from may have been put in opposition
	 * since: the stored list decides (this is the queue's thread) */
	if (r->s->evidence.card_serial[0] && queue_opposed(q, r->s->evidence.card_serial) == 1) {
		e = -EKEYREVOKED;
		snprintf(r->reason, sizeof(r->reason), "%s", SHEETS_OPPOSED_REASON);
		goto out;
	}
	queue_columns(r);
	struct queue_put it = { .id = id, .practitioner = r->pract, .care_date = r->care,
		                .due_date = r->due, .seal = seal, .seal_arg = r,
		                .request_id = r->request_id[0] ? r->request_id : NULL };
	uint64_t t0 = clock_now(r);
	e = queue_complete_draft(q, &it);
	r->sign_us = clock_now(r) - t0;
	r->seq = it.seq;
	r->state = QUEUE_QUEUED;
	if (e == 0 && it.replayed)
		replay_set(r, &it.replay);
	if (e < 0 && !r->reason[0])
		snprintf(r->reason, sizeof(r->reason), "%s", queue_last_error(q));
out:
	json_decref(draft);
	if (pl)
		queue_free_payload(pl, plen);
	r->result = e;
	return e == 0 ? SHEETQ_WROTE : 0;
}

static void
complete_done(void *arg)
{
	finish(arg);
}

int
sheetcommit_complete(struct sheetcommit *sc, struct sheetcommit_req *r)
{
	r->sc = sc;
	return sc->ops.run(sc->ops.ctx, complete_work, complete_done, r);
}
