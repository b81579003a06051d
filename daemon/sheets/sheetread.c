/* The queue's read jobs and the JSON of its rows; see sheetread.h. */
#include "daemon/sheets/sheetread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/pin/signer.h"
#include "lib/b64.h"
#include "protocol/cose.h"
#include "protocol/sheetsig.h"

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
	return json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:I,s:o,s:o,s:o,s:o}",
	                 "id", m->id,
	                 "state", queue_state_name(m->state), "practitioner_id", m->practitioner,
	                 "care_date", m->care_date, "seq",
	                 m->seq ? json_integer(m->seq) : json_null(), "due_date",
	                 sheetread_opt_str(m->due_date), "created", sheetread_iso_ms(m->created_ms), "updated",
	                 sheetread_iso_ms(m->updated_ms), "closed", sheetread_iso_ms(m->closed_ms), "size",
	                 (json_int_t)m->size, "attempts", (json_int_t)m->attempts, "batch_id",
	                 sheetread_opt_str(m->batch_id), "cursor", (json_int_t)m->cursor,
	                 /* the insurer's word (rejected, refused), and whether the
	                  * signing certificate is known (else it cannot upload) */
	                 "code", sheetread_opt_str(m->code), "cert_known", json_boolean(m->cert[0]),
	                 /* the client's request ids (CreateSheet/CreateDraft, CompleteDraft) */
	                 "request_id", sheetread_opt_str(m->request_id), "complete_request_id",
	                 sheetread_opt_str(m->complete_request_id));
}


/* ------------------------------------------------------------------ */
/* reads: ListSheets, GetSheet, ExportSheet */

static json_t *
b64_json(const uint8_t *p, size_t n)
{
	char *buf = b64_encode_alloc(p, n);
	if (!buf)
		return NULL;
	json_t *s = json_string(buf);
	free(buf);
	return s;
}

static int
list_work(struct queue *q, struct sheetread_req *rd)
{
	struct queue_filter f = {
		.states = rd->states,
		.date_from = rd->from[0] ? rd->from : NULL,
		.date_to = rd->to[0] ? rd->to : NULL,
		.due_before = rd->due_before[0] ? rd->due_before : NULL,
		.practitioner = rd->pract[0] ? rd->pract : NULL,
		.after = rd->after,
		.request_id = rd->request_id[0] ? rd->request_id : NULL,
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
get_work(struct queue *q, struct sheetread_req *rd)
{
	struct queue_meta m;
	uint8_t *pl = NULL;
	size_t plen = 0;
	struct sheet *s = NULL;
	int r;
	if (!rd->id[0]) {
		/* by the client's request id */
		if ((r = queue_find_request(q, rd->request_id, &m)) < 0)
			return r;
		snprintf(rd->id, sizeof(rd->id), "%s", m.id);
	}
	r = queue_get(q, rd->id, &m, &pl, &plen);
	if (r < 0)
		return r;
	if (rd->kind == SHEETREAD_PRINT && m.state == QUEUE_DRAFT) {
		r = -EPERM;
		snprintf(rd->reason, sizeof(rd->reason), "a draft is not signed yet");
		goto out;
	}
	if (rd->kind == SHEETREAD_PRINT) {
		if (!(rd->cose = malloc(plen ? plen : 1))) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(rd->cose, pl, plen);
		rd->cose_len = plen;
	}
	if (rd->kind == SHEETREAD_EXPORT) {
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
		/* size: the signature's own bytes (64 for ES256, the modulus for
		 * PS256); cose_size: the whole COSE_Sign1 as stored (issue 11, 18:
		 * size used to be the whole message) */
		struct cose_sign1 msg;
		json_int_t sig_size = -1;
		if (cose_sign1_parse(pl, plen, NULL, 0, &msg) == 0)
			sig_size = (json_int_t)msg.signature.len;
		cose_sign1_free(&msg);
		sig = sig_size < 0 ? NULL :
		      json_pack("{s:s,s:I,s:I}", "alg",
		                signer_alg_name((int)alg) ? signer_alg_name((int)alg) : "?", "size",
		                sig_size, "cose_size", (json_int_t)plen);
		if (!sig) {
			json_decref(sheet);
			sheet = NULL;
		}
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

int
sheetread_work(struct queue *q, void *arg)
{
	struct sheetread_req *rd = arg;
	rd->result = rd->kind == SHEETREAD_LIST ? list_work(q, rd) : get_work(q, rd);
	if (rd->result < 0 && !rd->reason[0])
		snprintf(rd->reason, sizeof(rd->reason), "%s", queue_last_error(q));
	if (rd->result == 0 && !rd->reply)
		rd->result = -ENOMEM;
	return 0;
}

