/* The queue's read methods and shared helpers; see sheetread.h. */
#include "daemon/sheets/sheetread.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/holidays.h"
#include "daemon/pin/pinflow.h"
#include "protocol/sheet.h"
#include "protocol/sheetsig.h"
#include "daemon/pin/signer.h"

#define ERR(name) TERMINAL_IFACE "." name

static struct sheetq *g_sq;

/* ISO 8601 UTC with milliseconds of ms since the epoch. */
json_t *
sheetread_iso_ms(int64_t ms)
{
	char buf[64];
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms <= 0 || !gmtime_r(&t, &tm))
		return json_null();
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
	return json_string(buf);
}

json_t *
sheetread_opt_str(const char *s)
{
	return s && s[0] ? json_string(s) : json_null();
}

json_t *
sheetread_meta_json(const struct queue_meta *m)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:I}", "id", m->id,
	                 "state", queue_state_name(m->state), "practitioner_id", m->practitioner,
	                 "care_date", m->care_date, "seq",
	                 m->seq ? json_integer(m->seq) : json_null(), "due_date",
	                 sheetread_opt_str(m->due_date), "created", sheetread_iso_ms(m->created_ms), "updated",
	                 sheetread_iso_ms(m->updated_ms), "closed", sheetread_iso_ms(m->closed_ms), "size",
	                 (json_int_t)m->size, "attempts", (json_int_t)m->attempts, "batch_id",
	                 sheetread_opt_str(m->batch_id), "cursor", (json_int_t)m->cursor);
}


/* A queue or signer error as the API's error. */
int
sheetread_reply_error(struct vl_call *call, int err, const char *reason, const char *id)
{
	const char *why = reason && reason[0] ? reason : strerror(err < 0 ? -err : err);
	switch (err) {
	case -ENOSPC:
		return vl_reply_error(call, ERR("QueueFull"), json_pack("{s:s}", "reason", why));
	case -EIO:
	case -EROFS:
	case -EUCLEAN:
	case -EBUSY:
		return vl_reply_error(call, ERR("IoError"), json_pack("{s:s}", "reason", why));
	case -ENOENT:
		return vl_reply_error(call, ERR("SheetNotFound"), json_pack("{s:s?}", "id", id));
	case -EPERM:
		return vl_reply_error(call, ERR("NotADraft"), json_pack("{s:s?,s:s}", "id", id, "reason", why));
	case SIGNER_E_LOGIN_NEEDED:
		return vl_reply_error(call, ERR("NotLoggedIn"),
		                      json_pack("{s:s,s:s}", "target", PINFLOW_TARGET_PRACTITIONER, "reason",
		                                "the practitioner's PIN is needed: vitalectl pin"));
	case SIGNER_E_NO_TOKEN:
	case SIGNER_E_NO_KEY:
	case SIGNER_E_BAD_ALG:
	case SIGNER_E_CANCELLED:
		return vl_reply_error(call, ERR("SignerUnavailable"), json_pack("{s:s}", "reason", why));
	case -ESHUTDOWN:
		return vl_reply_error(call, ERR("ShuttingDown"), NULL);
	default:
		return vl_reply_error(call, ERR("InternalError"), json_pack("{s:s}", "reason", why));
	}
}

/* ------------------------------------------------------------------ */
/* reads: ListSheets, GetSheet, ExportSheet */

enum rkind { R_LIST, R_GET, R_EXPORT };

struct read {
	struct vl_call *call;
	enum rkind kind;
	char id[SHEET_ID_LEN + 1];
	unsigned states;
	char from[11], to[11], due_before[11], pract[QUEUE_PRACT_MAX + 1];
	int64_t after;
	size_t limit;
	json_t *reply;   /* built on the queue thread */
	int result;
	char reason[QUEUE_REASON_MAX];
};

static void
read_cancel(struct vl_call *call, void *arg)
{
	(void)call;
	((struct read *)arg)->call = NULL;
}

static json_t *
b64_json(const uint8_t *p, size_t n)
{
	char *buf = malloc(4 * ((n + 2) / 3) + 1);
	if (!buf)
		return NULL;
	EVP_EncodeBlock((unsigned char *)buf, p, (int)n);
	json_t *s = json_string(buf);
	free(buf);
	return s;
}

static int
list_work(struct queue *q, struct read *rd)
{
	struct queue_filter f = {
		.states = rd->states,
		.date_from = rd->from[0] ? rd->from : NULL,
		.date_to = rd->to[0] ? rd->to : NULL,
		.due_before = rd->due_before[0] ? rd->due_before : NULL,
		.practitioner = rd->pract[0] ? rd->pract : NULL,
		.after = rd->after,
	};
	struct queue_meta *m = calloc(rd->limit + 1, sizeof(*m));
	size_t n = 0;
	if (!m)
		return -ENOMEM;
	int r = queue_list(q, &f, m, rd->limit + 1, &n);
	if (r == 0) {
		json_t *arr = json_array();
		for (size_t i = 0; arr && i < n && i < rd->limit; i++)
			json_array_append_new(arr, sheetread_meta_json(&m[i]));
		rd->reply = json_pack("{s:o,s:b}", "sheets", arr, "more", n > rd->limit);
	}
	free(m);
	return r;
}

static int
get_work(struct queue *q, struct read *rd)
{
	struct queue_meta m;
	uint8_t *pl = NULL;
	size_t plen = 0;
	struct sheet *s = NULL;
	int r = queue_get(q, rd->id, &m, &pl, &plen);
	if (r < 0)
		return r;
	if (rd->kind == R_EXPORT) {
		if (m.state == QUEUE_DRAFT) {
			r = -EPERM;
			snprintf(rd->reason, sizeof(rd->reason), "a draft is not signed yet");
		} else {
			rd->reply = json_pack("{s:s,s:o}", "id", m.id, "cose", b64_json(pl, plen));
		}
		goto out;
	}
	json_t *sheet = NULL, *sig = json_null();
	if (m.state == QUEUE_DRAFT) {
		sheet = json_loadb((const char *)pl, plen, 0, NULL);
	} else {
		const uint8_t *cbor;
		size_t clen;
		int64_t alg = 0;
		s = malloc(sizeof(*s));
		if (s && sheetsig_payload(pl, plen, &cbor, &clen, &alg) == 0 &&
		    sheetsig_decode(cbor, clen, s, NULL) == 0)
			sheet = sheet_to_json(s);
		sig = json_pack("{s:s,s:I}", "alg", signer_alg_name((int)alg) ? signer_alg_name((int)alg) : "?",
		                "size", (json_int_t)plen);
	}
	if (!sheet) {
		json_decref(sig);
		r = -EBADMSG;
		snprintf(rd->reason, sizeof(rd->reason), "the stored sheet %s cannot be read back", m.id);
		goto out;
	}
	char reason[QUEUE_REASON_MAX];
	reason[0] = '\0';
	queue_get_reason(q, m.id, reason, sizeof(reason));
	rd->reply = json_pack("{s:o,s:o,s:o,s:o}", "meta", sheetread_meta_json(&m), "sheet", sheet, "signature",
	                      sig, "reason", sheetread_opt_str(reason));
out:
	if (s) {
		explicit_bzero(s, sizeof(*s));
		free(s);
	}
	queue_free_payload(pl, plen);
	return r;
}

static int
read_work(struct queue *q, void *arg)
{
	struct read *rd = arg;
	rd->result = rd->kind == R_LIST ? list_work(q, rd) : get_work(q, rd);
	if (rd->result < 0 && !rd->reason[0])
		snprintf(rd->reason, sizeof(rd->reason), "%s", queue_last_error(q));
	if (rd->result == 0 && !rd->reply)
		rd->result = -ENOMEM;
	return 0;
}

static void
read_done(void *arg)
{
	struct read *rd = arg;
	if (rd->call) {
		if (rd->result == 0) {
			vl_reply(rd->call, rd->reply);
			rd->reply = NULL;
		} else if (rd->result == -EPERM && rd->kind == R_EXPORT) {
			vl_reply_error(rd->call, ERR("NotSigned"), json_pack("{s:s}", "id", rd->id));
		} else {
			sheetread_reply_error(rd->call, rd->result, rd->reason, rd->id);
		}
	}
	json_decref(rd->reply);
	free(rd);
}

static int
read_submit(struct vl_call *call, struct read *rd)
{
	rd->call = call;
	int r = g_sq ? sheetq_run(g_sq, read_work, read_done, rd) : -ESHUTDOWN;
	if (r < 0) {
		free(rd);
		return sheetread_reply_error(call, r, NULL, NULL);
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

static int
m_list_sheets(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	struct read *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->kind = R_LIST;
	rd->limit = SHEETS_LIST_DEFAULT;
	const char *k;
	json_t *v;
	json_object_foreach(params, k, v) {
		bool ok = true;
		if (!strcmp(k, "state") && json_is_string(v)) {
			ok = states_param(json_string_value(v), &rd->states);
		} else if (!strcmp(k, "from")) {
			ok = date_param(v, rd->from);
		} else if (!strcmp(k, "to")) {
			ok = date_param(v, rd->to);
		} else if (!strcmp(k, "due_before")) {
			ok = date_param(v, rd->due_before);
		} else if (!strcmp(k, "practitioner_id") && (json_is_string(v) || json_is_null(v))) {
			snprintf(rd->pract, sizeof(rd->pract), "%s", json_is_string(v) ? json_string_value(v) : "");
		} else if (!strcmp(k, "after") && json_is_integer(v) && json_integer_value(v) >= 0) {
			rd->after = json_integer_value(v);
		} else if (!strcmp(k, "limit") && json_is_integer(v) && json_integer_value(v) >= 1 &&
		           json_integer_value(v) <= SHEETS_LIST_MAX) {
			rd->limit = (size_t)json_integer_value(v);
		} else if (!json_is_null(v) || strcmp(k, "state")) {
			ok = false;
		}
		if (!ok) {
			free(rd);
			return vl_reply_invalid_param(call, k);
		}
	}
	return read_submit(call, rd);
}

static int
get_or_export(struct vl_call *call, json_t *params, enum rkind kind)
{
	const char *k;
	json_t *v;
	json_object_foreach(params, k, v) if (strcmp(k, "id"))
		return vl_reply_invalid_param(call, k);
	json_t *id = json_object_get(params, "id");
	if (!json_is_string(id) || json_string_length(id) == 0 ||
	    json_string_length(id) > SHEET_ID_LEN)
		return vl_reply_invalid_param(call, "id");
	struct read *rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->kind = kind;
	snprintf(rd->id, sizeof(rd->id), "%s", json_string_value(id));
	return read_submit(call, rd);
}

static int
m_get_sheet(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	return get_or_export(call, params, R_GET);
}

static int
m_export_sheet(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	return get_or_export(call, params, R_EXPORT);
}

int
sheetread_register(struct daemon *d, struct sheetq *sq)
{
	int r;
	g_sq = sq;
	if ((r = vl_server_add_method(d->api, ERR("ListSheets"), m_list_sheets, NULL, 0)) < 0 ||
	    (r = vl_server_add_method(d->api, ERR("GetSheet"), m_get_sheet, NULL, VL_CONTROL)) < 0 ||
	    (r = vl_server_add_method(d->api, ERR("ExportSheet"), m_export_sheet, NULL, VL_CONTROL)) < 0)
		return r;
	return 0;
}

void
sheetread_stop(void)
{
	g_sq = NULL;
}
