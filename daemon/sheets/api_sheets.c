/* The sheets' varlink methods, status and kiosk hook; see api_sheets.h. */
#include "daemon/sheets/api_sheets.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cards/cards.h"
#include "daemon/cards/readers.h"
#include "daemon/core/events.h"
#include "daemon/core/metrics.h"
#include "daemon/pin/pinflow.h"
#include "daemon/pin/signer.h"
#include "daemon/core/worker.h"
#include "daemon/sheets/sheetbuild.h"
#include "daemon/sheets/sheetprint.h"
#include "daemon/sheets/sheetread.h"
#include "lib/b64.h"
#include "drivers/reader.h"
#include "lib/log.h"
#include "protocol/holidays.h"

/* The uploader's wake-up after each sheet is queued (api_sheets.h). */
static void (*queued_hook)(void *arg);
static void *queued_hook_arg;
static void (*commit_hook)(void *arg);
static void *commit_hook_arg;

void
api_sheets_set_commit_hook(void (*fn)(void *arg), void *arg)
{
	commit_hook = fn;
	commit_hook_arg = arg;
}

void
api_sheets_set_queued_hook(void (*fn)(void *arg), void *arg)
{
	queued_hook = fn;
	queued_hook_arg = arg;
}

static struct {
	struct daemon *d;
	struct sheetq *sq;        /* NULL once stopped */
	struct sheetcommit *sc;
	struct worker *print;     /* PrintSheet's drawing (sheetprint): off the loop and the queue */
} A;

/* ------------------------------------------------------------------ */
/* errors */

/* Answer call with the API error for err (a queue errno or SIGNER_E_*);
 * reason (may be NULL) is the sentence shown. */
static int
reply_error(struct vl_call *call, int err, const char *reason, const char *id)
{
	const char *why = reason && reason[0] ? reason : strerror(err < 0 ? -err : err);
	switch (err) {
	case -ENOSPC:
		return vl_reply_error(call, VL_ERR("QueueFull"), json_pack("{s:s}", "reason", why));
	case -EIO:
	case -EROFS:
	case -EUCLEAN:
	case -EBUSY:
		return vl_reply_error(call, VL_ERR("IoError"), json_pack("{s:s}", "reason", why));
	case -ENOENT:
		return vl_reply_error(call, VL_ERR("SheetNotFound"), json_pack("{s:s?}", "id", id));
	case -EPERM:
		return vl_reply_error(call, VL_ERR("NotADraft"),
		                      json_pack("{s:s?,s:s}", "id", id, "reason", why));
	case SIGNER_E_LOGIN_NEEDED:
		return vl_reply_error(call, VL_ERR("NotLoggedIn"),
		                      json_pack("{s:s,s:s}", "target", PINFLOW_TARGET_PRACTITIONER, "reason",
		                                "the practitioner's PIN is needed: vitalectl pin"));
	case SIGNER_E_NO_TOKEN:
	case SIGNER_E_NO_KEY:
	case SIGNER_E_BAD_ALG:
	case SIGNER_E_CANCELLED:
		return vl_reply_error(call, VL_ERR("SignerUnavailable"), json_pack("{s:s}", "reason", why));
	case -EKEYREVOKED:
		/* CompleteDraft of a draft made from a card now in opposition */
		return vl_reply_error(call, VL_ERR("CardOpposed"),
		                      json_pack("{s:n,s:s?,s:s}", "reader", "id", id, "reason", why));
	case -ESHUTDOWN:
		return vl_reply_error(call, VL_ERR("ShuttingDown"), NULL);
	default:
		return vl_reply_error(call, VL_ERR("InternalError"), json_pack("{s:s}", "reason", why));
	}
}

static int
reply_invalid(struct vl_call *call, const struct sheet_errors *e)
{
	return vl_reply_error(call, VL_ERR("InvalidSheet"), sheetbuild_errors_json(e));
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
signer_ready(struct vl_call *call, struct sheetcommit_req *r)
{
	struct signer *sg = pinflow_signer();
	const struct signer_status *st = sg ? signer_status(sg) : NULL;
	r->sign = signer_sign;
	r->sign_ctx = sg;
	r->alg = 0;
	if (!st || st->state == SIGNER_DISABLED) {
		vl_reply_error(call, VL_ERR("SignerUnavailable"),
		               json_pack("{s:s}", "reason",
		                         "no signer is configured ([signer] backend = none): sheets "
		                         "cannot be signed"));
		return false;
	}
	if (st->state == SIGNER_LOCKED || (st->state == SIGNER_READY && !st->logged_in)) {
		pinflow_request(PINFLOW_TARGET_PRACTITIONER, st->tries_left, st->pinpad);
		reply_error(call, SIGNER_E_LOGIN_NEEDED, NULL, NULL);
		return false;
	}
	if (st->state != SIGNER_READY || !signer_alg_name(st->cose_alg)) {
		char why[200];
		snprintf(why, sizeof(why), "the signer is %s%s%s", signer_state_name(st->state),
		         st->reason[0] ? ": " : "", st->reason);
		vl_reply_error(call, VL_ERR("SignerUnavailable"), json_pack("{s:s}", "reason", why));
		return false;
	}
	r->alg = st->cose_alg;
	return true;
}

/* ------------------------------------------------------------------ */
/* creates */

static void
create_cancel(struct vl_call *call, void *arg)
{
	(void)call;
	struct sheetcommit_req *r = arg;
	r->caller = NULL; /* the create goes on; only its answer is lost */
}

/* What the daemon fills in, now. */
static void
fill_ctx(struct sheetcommit_req *r)
{
	const char *id = NULL, *structure = NULL, *who = NULL;
	struct sheetbuild_ctx *x = &r->ctx;
	pinflow_practitioner(&id, &structure, &who);
	snprintf(r->pract_id, sizeof(r->pract_id), "%s", id ? id : "");
	snprintf(r->struct_id, sizeof(r->struct_id), "%s", structure ? structure : "");
	snprintf(r->terminal, sizeof(r->terminal), "%s", A.d->terminal_id);
	x->terminal_id = A.d->terminal_id;
	x->practitioner_id = r->pract_id;
	x->structure_id = r->struct_id;
	x->holiday_flags = sheetbuild_holiday_flags(A.d->cfg->department, A.d->cfg->alsace_moselle);
	x->now = (int64_t)time(NULL);
	x->today = sheetbuild_local_day(x->now);
}

static int
rand16(uint8_t rnd[16])
{
	return RAND_bytes(rnd, 16) == 1 ? 0 : -EIO;
}

static json_t *
created_json(const struct sheetcommit_req *r)
{
	return json_pack("{s:s,s:s,s:o,s:s,s:o,s:s,s:s}", "id", r->s->id, "state",
	                 queue_state_name(r->state), "seq",
	                 r->seq ? json_integer(r->seq) : json_null(), "care_date", r->care,
	                 "due_date", sheetread_opt_str(r->due), "mode",
	                 sheet_mode_name(r->s->mode) ? sheet_mode_name(r->s->mode) : "",
	                 "practitioner_id", r->pract);
}

/* A create is stored (or not): tell its caller and the event bus. */
static void
create_finished(struct sheetcommit_req *r, void *arg)
{
	(void)arg;
	struct vl_call *call = r->caller;
	bool draft = r->kind == SHEETCOMMIT_DRAFT;
	if (r->kind == SHEETCOMMIT_COMPLETE && r->result == -EINVAL && r->errs.n) {
		if (call)
			reply_invalid(call, &r->errs);
		return;
	}
	if (r->result == 0 && r->replayed) {
		/* the same request again: the sheet it made, nothing new */
		log_info("queue: request %s again: sheet %s (number %u) already made", r->request_id,
		         r->s->id, r->seq);
		if (call)
			vl_reply(call, created_json(r));
		return;
	}
	if (r->result == 0) {
		if (draft)
			events_publish("DraftCreated",
			               json_pack("{s:s,s:s?,s:s}", "id", r->s->id, "reader",
			                         r->reader[0] ? r->reader : NULL, "care_date", r->care));
		else
			events_publish("SheetQueued", json_pack("{s:s,s:i,s:s,s:s}", "id", r->s->id, "number",
			                                        (int)r->seq, "care_date", r->care,
			                                        "due_date", r->due));
		if (!draft && queued_hook)
			queued_hook(queued_hook_arg);
		if (commit_hook)
			commit_hook(commit_hook_arg);
		if (draft)
			log_ev(LOG_LVL_INFO, LOG_ID_DRAFT_CREATED, r->reader[0] ? r->reader : NULL, r->s->id,
			       "queue: draft %s made%s%s", r->s->id, r->reader[0] ? " from the card in " : "",
			       r->reader);
		else
			log_ev(LOG_LVL_INFO, LOG_ID_SHEET_QUEUED, NULL, r->s->id,
			       "queue: sheet %s (number %u) signed and queued, due %s", r->s->id,
			       (unsigned)r->seq, r->due);
		if (call)
			vl_reply(call, created_json(r));
	} else {
		log_ev(LOG_LVL_WARNING, LOG_ID_SHEET_NOT_STORED, NULL, r->s->id, "queue: %s %s not stored: %s",
		       draft ? "draft" : "sheet", r->s->id, r->reason[0] ? r->reason : strerror(-r->result));
		if (call)
			reply_error(call, r->result, r->reason, r->s->id);
	}
}

static void
submit(struct vl_call *call, struct sheetcommit_req *r)
{
	r->caller = call;
	r->finished = create_finished;
	if (call)
		vl_call_set_cancel(call, create_cancel, r);
	sheetcommit_submit(A.sc, r);
}

/* Read the optional reader/beneficiary/degraded parameters and the sheet
 * object; answers InvalidParameter itself. */
struct create_params {
	json_t *sheet;
	const char *reader;
	int beneficiary;
	bool degraded;
	const char *request_id;
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
		else if (!strcmp(k, "request_id") && json_is_string(v) &&
		         queue_request_id_valid(json_string_value(v)) &&
		         strlen(json_string_value(v)) == json_string_length(v))
			p->request_id = json_string_value(v);
		else if (!strcmp(k, "request_id") && json_is_null(v))
			;
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
patient_from_card(struct vl_call *call, struct sheetcommit_req *r, const struct create_params *p)
{
	const char *rname = NULL, *read_at = NULL;
	const struct card_result *card = readers_current_card(p->reader, &rname, &read_at);
	char why[200];
	if (!card) {
		vl_reply_error(call, VL_ERR("NoCard"),
		               json_pack("{s:s?,s:s}", "reader", p->reader, "reason",
		                         "no card read (use degraded: true to make a sheet without "
		                         "the card)"));
		return false;
	}
	if (card->opposed) {
		log_notice("queue: no sheet from the card in %s: it is in opposition", rname);
		vl_reply_error(call, VL_ERR("CardOpposed"),
		               json_pack("{s:s?,s:n,s:s}", "reader", rname, "id", "reason",
		                         SHEETS_OPPOSED_REASON));
		return false;
	}
	int e = sheetbuild_patient_from_card(r->s, card, read_at, p->beneficiary, why, sizeof(why));
	if (e < 0) {
		/* -ENOENT: not a patient card, no such beneficiary; -ENOTSUP: a
		 * card that cannot back a sheet (no serial in EF 2F02, a phone's
		 * session without its device-signed answer): NoCard with the
		 * reason, as the interface says (issue 11, 18), the same words
		 * GetCard gives in why */
		vl_reply_error(call, VL_ERR("NoCard"),
		               json_pack("{s:s?,s:s}", "reader", rname, "reason", why));
		return false;
	}
	struct sheet_errors amc_errs;
	if (sheetbuild_amc_from_rights(r->s, card, p->beneficiary,
	                               sheetbuild_local_day((int64_t)time(NULL)), &amc_errs) < 0) {
		reply_invalid(call, &amc_errs);
		return false;
	}
	snprintf(r->reader, sizeof(r->reader), "%s", rname ? rname : "");
	return true;
}

/* ------------------------------------------------------------------ */
/* request ids: a create that names one looks it up first (a queue read,
 * behind the commit in flight), so a retry after a lost answer gets the
 * sheet already made even when the card has gone since; the queue checks
 * again inside the insert's transaction (two retries at once). */

static int create_sheet_go(struct vl_call *call, json_t *params);
static int create_draft_go(struct vl_call *call, json_t *params);

struct rid_lookup {
	struct sheetread_req rd;
	json_t *params;
	bool draft;
};

static void
rid_done(void *arg)
{
	struct rid_lookup *l = arg;
	struct vl_call *call = l->rd.caller;
	if (call) {
		vl_call_set_cancel(call, NULL, NULL);
		if (l->rd.result == -ENOENT) {
			(l->draft ? create_draft_go : create_sheet_go)(call, l->params);
		} else if (l->rd.result < 0) {
			reply_error(call, l->rd.result, l->rd.reason, NULL);
		} else {
			json_t *m = json_object_get(l->rd.reply, "meta");
			json_t *mode = json_object_get(json_object_get(l->rd.reply, "sheet"), "mode");
			log_info("queue: request %s again: sheet %s already made",
			         json_string_value(json_object_get(m, "request_id")) ?
			                 json_string_value(json_object_get(m, "request_id")) : "?",
			         json_string_value(json_object_get(m, "id")));
			vl_reply(call, json_pack("{s:O,s:O,s:O,s:O,s:O,s:s,s:O}", "id",
			                         json_object_get(m, "id"), "state",
			                         json_object_get(m, "state"), "seq",
			                         json_object_get(m, "seq"), "care_date",
			                         json_object_get(m, "care_date"), "due_date",
			                         json_object_get(m, "due_date"), "mode",
			                         json_is_string(mode) ? json_string_value(mode) : "",
			                         "practitioner_id", json_object_get(m, "practitioner_id")));
		}
	}
	json_decref(l->rd.reply);
	json_decref(l->params);
	free(l);
}

static void
rid_cancel(struct vl_call *call, void *arg)
{
	(void)call;
	((struct rid_lookup *)arg)->rd.caller = NULL;
}

/* 1 when the lookup was started (it answers), 0 when there is no
 * request id, or the answer already sent. */
static int
rid_lookup(struct vl_call *call, json_t *params, bool draft)
{
	json_t *v = json_object_get(params, "request_id");
	if (!json_is_string(v) || !queue_request_id_valid(json_string_value(v)))
		return 0; /* none, or get_params answers */
	struct rid_lookup *l = calloc(1, sizeof(*l));
	if (!l)
		return 0;
	l->rd.kind = SHEETREAD_GET;
	snprintf(l->rd.request_id, sizeof(l->rd.request_id), "%s", json_string_value(v));
	l->params = json_incref(params);
	l->draft = draft;
	l->rd.caller = call;
	if (!A.sq || sheetq_run(A.sq, sheetread_work, rid_done, l) < 0) {
		json_decref(l->params);
		free(l);
		return 0;
	}
	vl_call_set_cancel(call, rid_cancel, l);
	return 1;
}

static int
m_create_sheet(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	struct create_params p;
	if (!get_params(call, params, true, true, &p))
		return 0;
	if (rid_lookup(call, params, false))
		return 0;
	return create_sheet_go(call, params);
}

static int
create_sheet_go(struct vl_call *call, json_t *params)
{
	struct create_params p;
	struct sheet_errors errs;
	uint8_t rnd[16];
	if (!get_params(call, params, true, true, &p))
		return 0;
	if (!A.sq)
		return reply_error(call, -ESHUTDOWN, NULL, NULL);
	struct sheetcommit_req *r = sheetcommit_req_new(SHEETCOMMIT_SHEET);
	if (!r)
		return -ENOMEM;
	if (p.request_id)
		snprintf(r->request_id, sizeof(r->request_id), "%s", p.request_id);
	if (sheetbuild_from_json(p.sheet, p.degraded ? SHEETBUILD_DEGRADED : SHEETBUILD_TILL, r->s,
	                         &errs) < 0) {
		reply_invalid(call, &errs);
		goto done;
	}
	if (p.degraded)
		r->s->mode = SHEET_MODE_DEGRADED;
	else if (!patient_from_card(call, r, &p))
		goto done;
	fill_ctx(r);
	if (rand16(rnd) < 0) {
		vl_reply_error(call, VL_ERR("InternalError"),
		               json_pack("{s:s}", "reason", "no random bytes for the sheet id"));
		goto done;
	}
	if (sheetbuild_finish(r->s, &r->ctx, rnd, false) < 0) {
		reply_invalid1(call, "care_date", "outside the calendar vitaled knows");
		goto done;
	}
	struct sheet_check chk = { .today = r->ctx.today, .now = r->ctx.now };
	if (sheet_validate(r->s, &chk, &errs) < 0) {
		reply_invalid(call, &errs);
		goto done;
	}
	if (!signer_ready(call, r))
		goto done;
	submit(call, r);
	return 0;
done:
	sheetcommit_req_free(r);
	return 0;
}

/* A draft: identity and evidence now (already in r->s), the rest when the
 * practitioner completes it. */
static int
draft_prepare(struct sheetcommit_req *r)
{
	uint8_t rnd[16];
	fill_ctx(r);
	if (rand16(rnd) < 0)
		return -EIO;
	return sheetcommit_draft_prepare(r, rnd);
}

static int
m_create_draft(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	struct create_params p;
	if (!get_params(call, params, false, false, &p))
		return 0;
	if (rid_lookup(call, params, true))
		return 0;
	return create_draft_go(call, params);
}

static int
create_draft_go(struct vl_call *call, json_t *params)
{
	struct create_params p;
	if (!get_params(call, params, false, false, &p))
		return 0;
	if (!A.sq)
		return reply_error(call, -ESHUTDOWN, NULL, NULL);
	struct sheetcommit_req *r = sheetcommit_req_new(SHEETCOMMIT_DRAFT);
	if (!r)
		return -ENOMEM;
	if (p.request_id)
		snprintf(r->request_id, sizeof(r->request_id), "%s", p.request_id);
	if (sheetbuild_from_json(p.sheet, SHEETBUILD_TILL, r->s, &r->errs) < 0) {
		reply_invalid(call, &r->errs);
		goto done;
	}
	if (!patient_from_card(call, r, &p))
		goto done;
	int e = draft_prepare(r);
	if (e == -EINVAL) {
		reply_invalid(call, &r->errs);
		goto done;
	}
	if (e < 0) {
		reply_error(call, e, "cannot prepare the draft", NULL);
		goto done;
	}
	submit(call, r);
	return 0;
done:
	sheetcommit_req_free(r);
	return 0;
}

/* Kiosk mode: every patient card read checks the patient in. */
static void
on_card_read(const char *reader, const struct card_result *cr, void *arg)
{
	(void)arg;
	if (!A.sq || strcmp(A.d->cfg->mode, "kiosk") != 0 || !cr->readable ||
	    cr->nbeneficiaries == 0 ||
	    (strcmp(cr->kind, "patient") != 0 && strcmp(cr->kind, "digital") != 0))
		return;
	struct sheetcommit_req *r = sheetcommit_req_new(SHEETCOMMIT_DRAFT);
	if (!r)
		return;
	const char *rname = NULL, *read_at = NULL;
	char why[200];
	const struct card_result *cur = readers_current_card(reader, &rname, &read_at);
	if (cur && cur->opposed) {
		log_warn("queue: kiosk: no draft for the card in %s: it is in opposition", reader);
		sheetcommit_req_free(r);
		return;
	}
	int e = cur ? sheetbuild_patient_from_card(r->s, cur, read_at, 0, why, sizeof(why)) : -ENOENT;
	if (e < 0 || draft_prepare(r) < 0) {
		log_warn("queue: kiosk: no draft for the card in %s: %s", reader,
		         e < 0 ? (cur ? why : "the card is gone") :
		         r->errs.n ? r->errs.e[0].msg : "cannot prepare it");
		sheetcommit_req_free(r);
		return;
	}
	snprintf(r->reader, sizeof(r->reader), "%s", reader);
	submit(NULL, r);
}

static int
m_complete_draft(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	json_t *id = json_object_get(params, "id"), *sheet = json_object_get(params, "sheet");
	json_t *rid = json_object_get(params, "request_id");
	const char *k;
	json_t *v;
	json_object_foreach(params, k, v) if (strcmp(k, "id") && strcmp(k, "sheet") &&
	                                      strcmp(k, "request_id"))
		return vl_reply_invalid_param(call, k);
	if (rid && !json_is_null(rid) &&
	    (!json_is_string(rid) || !queue_request_id_valid(json_string_value(rid)) ||
	     strlen(json_string_value(rid)) != json_string_length(rid)))
		return vl_reply_invalid_param(call, "request_id");
	if (!json_is_string(id) || json_string_length(id) > SHEET_ID_LEN)
		return vl_reply_invalid_param(call, "id");
	if (!json_is_object(sheet))
		return vl_reply_invalid_param(call, "sheet");
	if (!A.sq)
		return reply_error(call, -ESHUTDOWN, NULL, NULL);
	struct sheetcommit_req *r = sheetcommit_req_new(SHEETCOMMIT_COMPLETE);
	if (!r)
		return -ENOMEM;
	if (sheetbuild_check_keys(sheet, SHEETBUILD_COMPLETE, &r->errs) < 0) {
		reply_invalid(call, &r->errs);
		sheetcommit_req_free(r);
		return 0;
	}
	snprintf(r->s->id, sizeof(r->s->id), "%s", json_string_value(id));
	if (json_is_string(rid))
		snprintf(r->request_id, sizeof(r->request_id), "%s", json_string_value(rid));
	if (!signer_ready(call, r)) {
		sheetcommit_req_free(r);
		return 0;
	}
	fill_ctx(r);
	r->patch = json_deep_copy(sheet);
	r->caller = call;
	r->finished = create_finished;
	int e = r->patch ? sheetcommit_complete(A.sc, r) : -ENOMEM;
	if (e < 0) {
		reply_error(call, e, NULL, NULL);
		sheetcommit_req_free(r);
		return 0;
	}
	vl_call_set_cancel(call, create_cancel, r);
	return 0;
}

/* ------------------------------------------------------------------ */
/* reads: ListSheets, GetSheet, ExportSheet */

static void
read_cancel(struct vl_call *call, void *arg)
{
	(void)call;
	((struct sheetread_req *)arg)->caller = NULL;
}

static void print_start(struct sheetread_req *rd);

static void
read_done(void *arg)
{
	struct sheetread_req *rd = arg;
	struct vl_call *call = rd->caller;
	if (call && rd->kind == SHEETREAD_PRINT && rd->result == 0) {
		print_start(rd); /* it answers and frees rd */
		return;
	}
	if (call) {
		if (rd->result == 0) {
			vl_reply(call, rd->reply);
			rd->reply = NULL;
		} else if (rd->result == -EPERM &&
		           (rd->kind == SHEETREAD_EXPORT || rd->kind == SHEETREAD_PRINT)) {
			vl_reply_error(call, VL_ERR("NotSigned"), json_pack("{s:s}", "id", rd->id));
		} else {
			reply_error(call, rd->result, rd->reason, rd->id);
		}
	}
	json_decref(rd->reply);
	free(rd->cose);
	free(rd);
}

/* ------------------------------------------------------------------ */
/* PrintSheet: the sheet read on the queue's thread (SHEETREAD_PRINT),
 * drawn on the print worker, answered on the loop */

struct print_job {
	struct sheetread_req *rd;
	struct sheetprint_out out;
	int r;
	char err[160];
	char name[101], address[201], state[16];
	int64_t now;
};

/* The print worker's thread. */
static void
print_run(void *arg)
{
	struct print_job *pj = arg;
	json_t *meta = json_object_get(pj->rd->reply, "meta");
	snprintf(pj->state, sizeof(pj->state), "%s",
	         json_string_value(json_object_get(meta, "state")) ?
	                 json_string_value(json_object_get(meta, "state")) : "");
	struct sheetprint_in in = { .sheet = json_object_get(pj->rd->reply, "sheet"),
		                    .cose = pj->rd->cose, .cose_len = pj->rd->cose_len,
		                    .state = pj->state, .practice_name = pj->name,
		                    .practice_address = pj->address, .printed_at = pj->now };
	pj->r = sheetprint_pdf(&in, &pj->out, pj->err, sizeof(pj->err));
}

static void
print_done(void *arg)
{
	struct print_job *pj = arg;
	struct sheetread_req *rd = pj->rd;
	struct vl_call *call = rd->caller;
	if (call) {
		vl_call_set_cancel(call, NULL, NULL);
		char *b64 = pj->r == 0 ? b64_encode_alloc(pj->out.pdf, pj->out.len) : NULL;
		json_t *id = json_object_get(json_object_get(rd->reply, "meta"), "id");
		if (b64) {
			log_info("queue: duplicata of sheet %s printed (%zu bytes, code %s, QR version %d)",
			         json_string_value(id), pj->out.len, pj->out.full ? "sheet" : "digest",
			         pj->out.qr_version);
			vl_reply(call, json_pack("{s:O,s:s,s:I,s:s,s:s,s:i}", "id", id, "pdf", b64, "size",
			                         (json_int_t)pj->out.len, "code",
			                         pj->out.full ? "sheet" : "digest", "sha256",
			                         pj->out.sha256, "qr_version", pj->out.qr_version));
		} else {
			vl_reply_error(call, VL_ERR("InternalError"),
			               json_pack("{s:s}", "reason",
			                         pj->r < 0 ? pj->err : "out of memory for the duplicata"));
		}
		free(b64);
	}
	free(pj->out.pdf);
	json_decref(rd->reply);
	free(rd->cose);
	free(rd);
	free(pj);
}

static void
print_start(struct sheetread_req *rd)
{
	struct print_job *pj = calloc(1, sizeof(*pj));
	int e = pj && A.print ? 0 : pj ? -ESHUTDOWN : -ENOMEM;
	if (pj) {
		pj->rd = rd;
		snprintf(pj->name, sizeof(pj->name), "%s", A.d->cfg->practice_name ? A.d->cfg->practice_name : "");
		snprintf(pj->address, sizeof(pj->address), "%s",
		         A.d->cfg->practice_address ? A.d->cfg->practice_address : "");
		pj->now = (int64_t)time(NULL);
	}
	if (e == 0)
		e = worker_submit(A.print, print_run, print_done, pj);
	if (e < 0) {
		vl_call_set_cancel(rd->caller, NULL, NULL);
		reply_error(rd->caller, e, NULL, NULL);
		json_decref(rd->reply);
		free(rd->cose);
		free(rd);
		free(pj);
	}
}

static int
read_submit(struct vl_call *call, struct sheetread_req *rd)
{
	rd->caller = call;
	int e = A.sq ? sheetq_run(A.sq, sheetread_work, read_done, rd) : -ESHUTDOWN;
	if (e < 0) {
		free(rd);
		return reply_error(call, e, NULL, NULL);
	}
	vl_call_set_cancel(call, read_cancel, rd);
	return 0;
}

/* One state name, or several separated by commas, into a mask. */
static bool
states_param(const char *list, unsigned *mask)
{
	char name[16];
	while (*list) {
		const char *end = strchr(list, ',');
		size_t n = end ? (size_t)(end - list) : strlen(list);
		if (n == 0 || n >= sizeof(name))
			return false;
		memcpy(name, list, n);
		name[n] = '\0';
		int st = queue_state_parse(name);
		if (st < 0)
			return false;
		*mask |= QUEUE_STATE_BIT(st);
		list += n + (end ? 1 : 0);
	}
	return *mask != 0;
}

/* A YYYY-MM-DD parameter into buf; false when it is not one. */
static bool
date_param(json_t *v, char *buf)
{
	int32_t day;
	if (json_is_null(v))
		return true;
	if (!json_is_string(v) || holidays_parse(json_string_value(v), &day) < 0)
		return false;
	snprintf(buf, 11, "%s", json_string_value(v));
	return true;
}

/* One ListSheets parameter into rd; false when it is not valid. */
static bool
list_param(struct sheetread_req *rd, const char *k, json_t *v)
{
	if (!strcmp(k, "state") && json_is_string(v))
		return states_param(json_string_value(v), &rd->states);
	if (!strcmp(k, "from"))
		return date_param(v, rd->from);
	if (!strcmp(k, "to"))
		return date_param(v, rd->to);
	if (!strcmp(k, "due_before"))
		return date_param(v, rd->due_before);
	if (!strcmp(k, "practitioner_id") && (json_is_string(v) || json_is_null(v))) {
		snprintf(rd->pract, sizeof(rd->pract), "%s", json_is_string(v) ? json_string_value(v) : "");
		return true;
	}
	if (!strcmp(k, "request_id") && json_is_string(v) &&
	    queue_request_id_valid(json_string_value(v)) &&
	    strlen(json_string_value(v)) == json_string_length(v)) {
		snprintf(rd->request_id, sizeof(rd->request_id), "%s", json_string_value(v));
		return true;
	}
	if (!strcmp(k, "after") && json_is_integer(v) && json_integer_value(v) >= 0) {
		rd->after = json_integer_value(v);
		return true;
	}
	if (!strcmp(k, "limit") && json_is_integer(v) && json_integer_value(v) >= 1 &&
	    json_integer_value(v) <= SHEETS_LIST_MAX) {
		rd->limit = (size_t)json_integer_value(v);
		return true;
	}
	return json_is_null(v) && !strcmp(k, "state");
}

static int
m_list_sheets(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	struct sheetread_req *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->kind = SHEETREAD_LIST;
	rd->limit = SHEETS_LIST_DEFAULT;
	const char *k;
	json_t *v;
	json_object_foreach(params, k, v) {
		if (!list_param(rd, k, v)) {
			free(rd);
			return vl_reply_invalid_param(call, k);
		}
	}
	return read_submit(call, rd);
}

static int
get_or_export(struct vl_call *call, json_t *params, enum sheetread_kind kind)
{
	const char *k;
	json_t *v;
	json_object_foreach(params, k, v) if (strcmp(k, "id") && strcmp(k, "request_id"))
		return vl_reply_invalid_param(call, k);
	json_t *id = json_object_get(params, "id"), *rid = json_object_get(params, "request_id");
	bool by_rid = (!id || json_is_null(id)) && json_is_string(rid);
	if (by_rid && (!queue_request_id_valid(json_string_value(rid)) ||
	               strlen(json_string_value(rid)) != json_string_length(rid)))
		return vl_reply_invalid_param(call, "request_id");
	if (rid && !json_is_null(rid) && !by_rid)
		return vl_reply_invalid_param(call, "request_id"); /* one or the other */
	if (!by_rid && (!json_is_string(id) || json_string_length(id) == 0 ||
	                json_string_length(id) > SHEET_ID_LEN))
		return vl_reply_invalid_param(call, "id");
	struct sheetread_req *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->kind = kind;
	if (by_rid)
		snprintf(rd->request_id, sizeof(rd->request_id), "%s", json_string_value(rid));
	else
		snprintf(rd->id, sizeof(rd->id), "%s", json_string_value(id));
	return read_submit(call, rd);
}

static int
m_get_sheet(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	return get_or_export(call, params, SHEETREAD_GET);
}

static int
m_export_sheet(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	return get_or_export(call, params, SHEETREAD_EXPORT);
}

static int
m_print_sheet(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	return get_or_export(call, params, SHEETREAD_PRINT);
}

/* ------------------------------------------------------------------ */
/* statistics and status */

static json_t *
stats_json(bool full)
{
	struct queue_stats st;
	if (!A.sq)
		return json_pack("{s:s,s:i,s:i,s:n,s:n,s:s,s:n}", "state", "closed", "total", 0,
		                 "queued", 0, "oldest", "next_due", "integrity", "checking",
		                 "integrity_error");
	sheetq_stats(A.sq, &st);
	json_t *o = json_pack("{s:s,s:I,s:I,s:o,s:o}", "state", "open", "total", (json_int_t)st.total,
	                      "queued", (json_int_t)(st.count[QUEUE_QUEUED] + st.count[QUEUE_SENDING]),
	                      "oldest", sheetread_iso_ms(st.oldest_queued_ms), "next_due",
	                      sheetread_opt_str(st.next_due));
	char why[600];
	enum sheetq_check ck = sheetq_check(A.sq, why, sizeof(why), NULL);
	if (o) {
		json_object_set_new(o, "integrity",
		                    json_string(ck == SHEETQ_CHECK_RUNNING ? "checking"
		                                : ck == SHEETQ_CHECK_OK    ? "ok"
		                                                           : "failed"));
		json_object_set_new(o, "integrity_error",
		                    ck == SHEETQ_CHECK_FAILED ? json_string(why) : json_null());
	}
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
	struct sheetcommit_figures f;
	sheetcommit_figures(A.sc, &f);
	json_object_set_new(o, "pipeline",
	                    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "batches", (json_int_t)f.batches,
	                              "sheets", (json_int_t)f.sheets, "max_batch",
	                              (json_int_t)f.max_batch, "sign_us", (json_int_t)f.sign_us,
	                              "txn_us", (json_int_t)f.txn_us, "waiting",
	                              (json_int_t)f.waiting));
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

/* vitaled_sheets{state}: the queue's sheets per state (metrics.h). */
static void
metrics_cb(FILE *f, void *arg)
{
	(void)arg;
	if (!A.sq)
		return;
	struct queue_stats st;
	sheetq_stats(A.sq, &st);
	metrics_family(f, "vitaled_sheets", "gauge", "Sheets in the queue, by state.");
	for (int i = 0; i < QUEUE_NSTATES; i++)
		metrics_sample(f, "vitaled_sheets", "state", queue_state_name((enum queue_state)i),
		               (double)st.count[i]);
	metrics_family(f, "vitaled_queue_bytes", "gauge", "Bytes the queue's sheets take.");
	metrics_sample(f, "vitaled_queue_bytes", NULL, NULL, (double)st.bytes);
}

static void
status_cb(struct daemon *d, json_t *st, void *arg)
{
	(void)d;
	(void)arg;
	json_object_set_new(st, "queue", stats_json(false));
}

/* ------------------------------------------------------------------ */

int
api_sheets_start(struct daemon *d, struct sheetq *sq, struct sheetcommit *sc)
{
	static const struct {
		const char *name;
		vl_method_fn fn;
		unsigned flags;
	} methods[] = {
		{ TERMINAL_IFACE ".CreateSheet", m_create_sheet, VL_CONTROL },
		{ TERMINAL_IFACE ".CreateDraft", m_create_draft, VL_CONTROL },
		{ TERMINAL_IFACE ".CompleteDraft", m_complete_draft, VL_CONTROL },
		{ TERMINAL_IFACE ".QueueStats", m_queue_stats, 0 },
		{ TERMINAL_IFACE ".ListSheets", m_list_sheets, 0 },
		{ TERMINAL_IFACE ".GetSheet", m_get_sheet, VL_CONTROL },
		{ TERMINAL_IFACE ".ExportSheet", m_export_sheet, VL_CONTROL },
		{ TERMINAL_IFACE ".PrintSheet", m_print_sheet, VL_CONTROL },
	};
	int r;
	A.d = d;
	A.sq = sq;
	A.sc = sc;
	if ((r = worker_new(d->loop, "print", 1, 0, &A.print)) < 0)
		return r;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if ((r = vl_server_add_method(d->api, methods[i].name, methods[i].fn, NULL,
		                              methods[i].flags)) < 0)
			return r;
	if ((r = status_add_provider(status_cb, NULL)) < 0 ||
	    (r = metrics_add_provider(metrics_cb, NULL)) < 0)
		return r;
	readers_set_read_hook(on_card_read, NULL);
	return 0;
}

void
api_sheets_stop(void)
{
	readers_set_read_hook(NULL, NULL);
	A.sq = NULL;
	/* the drawings under way end and are answered (or dropped) here */
	struct worker *w = A.print;
	A.print = NULL;
	if (w)
		worker_free(w);
}
