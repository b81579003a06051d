/* The readers' and cards' API; see api_cards.h. */
#include "daemon/cards/api_cards.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cards/cards_qr.h"
#include "daemon/cards/opposition.h"
#include "daemon/core/daemon.h"
#include "daemon/core/events.h"
#include "daemon/core/metrics.h"
#include "drivers/reader_qr.h"
#include "lib/b64.h"
#include "lib/hex.h"
#include "lib/log.h"

static struct {
	const struct readers_driver *drivers;
	size_t ndrivers;
} A;

/* PresentCode calls waiting for their code's session to end: one per API
 * reader of the qr driver. */
static struct {
	struct vl_call *call;
	char reader[READER_NAME_MAX];
} P[READER_QR_API_READERS];

static void present_answer(const struct readers_report *rep);
static json_t *current_card_json(const struct readers_reader *best);

/* ------------------------------------------------------------------ */
/* card results */

/* base64 (RFC 4648 §4, padded) of a blob as a JSON string; null for none. */
static json_t *
b64_json(const uint8_t *p, size_t len)
{
	if (!p || len == 0 || len > 1u << 20)
		return json_null();
	char *buf = b64_encode_alloc(p, len);
	if (!buf)
		return NULL;
	json_t *s = json_string(buf);
	free(buf);
	return s;
}

static json_t *
evidence_json(const struct card_evidence *e)
{
	char nonce[CARD_NONCE_LEN * 2 + 1];
	hex_encode(e->nonce, sizeof(e->nonce), true, nonce, sizeof(nonce));
	json_t *o = json_pack("{s:b,s:I,s:I,s:s,s:s,s:I}", "holder_verified", e->holder_verified,
	                      "credential_len", (json_int_t)e->credential_len, "device_answer_len",
	                      (json_int_t)e->device_answer_len, "nonce",
	                      e->holder_verified ? nonce : "", "terminal_id", e->terminal_id,
	                      "answer_ts", (json_int_t)e->answer_ts);
	if (!o)
		return NULL;
	json_object_set_new(o, "credential", b64_json(e->credential, e->credential_len));
	json_object_set_new(o, "device_answer", b64_json(e->device_answer, e->device_answer_len));
	return o;
}

static json_t *
beneficiary_json(const struct card_beneficiary *b, enum card_json what)
{
	if (what == CARD_JSON_FULL)
		return json_pack("{s:i,s:s,s:s,s:s?,s:s?,s:b,s:s?}", "rank", b->rank, "surname",
		                 b->surname, "given_name", b->given_name, "birth_date",
		                 b->birth_date[0] ? b->birth_date : NULL, "nir",
		                 b->nir[0] ? b->nir : NULL, "nir_valid", b->nir_valid, "nationality",
		                 b->nationality[0] ? b->nationality : NULL);
	char masked[32];
	card_nir_mask(b->nir[0] ? b->nir : NULL, masked, sizeof(masked));
	json_t *jb = json_pack("{s:i,s:s?}", "rank", b->rank, "nir_masked", b->nir[0] ? masked : NULL);
	if (jb && what == CARD_JSON_SUMMARY_ID) {
		json_object_set_new(jb, "surname", json_string(b->surname));
		json_object_set_new(jb, "given_name", json_string(b->given_name));
	}
	return jb;
}

static const char *
card_field(const struct card_result *r, const char *name)
{
	for (size_t i = 0; i < r->nfields && i < CARD_FIELDS_MAX; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			return r->fields[i].value;
	return NULL;
}

json_t *
card_rights_checked_json(const struct card_rights *cr)
{
	json_t *periods = json_array();
	for (size_t i = 0; periods && i < cr->nrights && i < CARD_RIGHTS_MAX; i++)
		json_array_append_new(periods, json_pack("{s:s,s:s,s:s}", "code", cr->rights[i].code,
		                                         "from", cr->rights[i].from, "to",
		                                         cr->rights[i].to));
	json_t *amc = cr->has_amc ? json_pack("{s:s,s:b,s:s?}", "id", cr->amc_id, "tiers_payant",
	                                      cr->amc_tiers_payant, "to",
	                                      cr->amc_to[0] ? cr->amc_to : NULL) :
	                            json_null();
	return json_pack("{s:s,s:s,s:b,s:o,s:o}", "source", "insurer", "checked", cr->checked,
	                 "covered", cr->covered, "periods", periods ? periods : json_array(),
	                 "amc", amc ? amc : json_null());
}

void
card_rights_json(const struct card_result *r, json_t *o)
{
	const struct card_rights *cr = &r->rights;
	if (cr->state == CARD_RIGHTS_NONE)
		return;
	json_t *rc = json_pack("{s:s,s:i,s:s,s:s}", "state", card_rights_state_name(cr->state),
	                       "beneficiary", cr->beneficiary, "asked", cr->asked, "care_date",
	                       cr->care_date);
	if (rc && cr->reason[0])
		json_object_set_new(rc, "reason", json_string(cr->reason));
	json_object_set_new(o, "rights_check", rc ? rc : json_null());
	const char *reg = card_field(r, "regime"), *cai = card_field(r, "caisse"),
	           *cen = card_field(r, "centre");
	json_t *org;
	if (cr->state == CARD_RIGHTS_CHECKED)
		org = json_pack("{s:s,s:s,s:s,s:s,s:s}", "regime", cr->regime, "caisse", cr->caisse,
		                "centre", cr->centre, "source", "insurer", "checked", cr->checked);
	else if (reg && cai && cen)
		org = json_pack("{s:s,s:s,s:s,s:s}", "regime", reg, "caisse", cai, "centre", cen,
		                "source", "card");
	else
		org = json_pack("{s:s}", "source", "till");
	json_object_set_new(o, "organisation", org ? org : json_null());
	if (cr->state == CARD_RIGHTS_CHECKED)
		json_object_set_new(o, "rights", card_rights_checked_json(cr));
}

json_t *
card_result_json(const struct card_result *r, enum card_json what)
{
	json_t *bens = json_array();
	json_t *o = NULL;
	if (!bens)
		return NULL;
	for (size_t i = 0; i < r->nbeneficiaries && i < CARD_BENEFICIARIES_MAX; i++) {
		json_t *jb = beneficiary_json(&r->beneficiaries[i], what);
		if (!jb || json_array_append_new(bens, jb) < 0)
			goto fail;
	}
	o = json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:I,s:s?}", "profile", r->profile, "kind", r->kind,
	              "presentation", r->presentation[0] ? r->presentation : "physical",
	              "atr", r->atr_hex, "recognised", r->recognised, "readable", r->readable,
	              "apdus", (json_int_t)r->apdus, "error", r->error[0] ? r->error : NULL);
	if (!o)
		goto fail;
	json_object_set_new(o, "beneficiaries", bens);
	if (r->reason[0])
		json_object_set_new(o, "reason", json_string(r->reason));
	json_object_set_new(o, "opposed", json_boolean(r->opposed));
	if (what == CARD_JSON_FULL && r->evidence.present) {
		json_t *ev = evidence_json(&r->evidence);
		if (ev && strcmp(r->presentation, "digital-qr") == 0) {
			/* the QR form has no terminal nonce; the challenge instead */
			json_object_set_new(ev, "nonce", json_string(""));
			json_object_set_new(ev, "challenge", json_string(r->evidence.challenge));
		}
		json_object_set_new(o, "evidence", ev);
	}
	if (what == CARD_JSON_FULL) {
		json_t *fields = json_object();
		for (size_t i = 0; fields && i < r->nfields && i < CARD_FIELDS_MAX; i++)
			json_object_set_new(fields, r->fields[i].name, json_string(r->fields[i].value));
		json_object_set_new(o, "fields", fields ? fields : json_null());
		card_rights_json(r, o);
	}
	return o;
fail:
	json_decref(bens);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* readers and events */

static json_t *
reader_json(const struct readers_reader *r, bool detail)
{
	const char *card = r->card && r->result ? r->result->profile : NULL;
	json_t *o = json_pack("{s:s,s:s,s:s,s:s?}", "name", r->name, "driver", r->drv->ops->name,
	                      "state", readers_state_name(r->state), "card", card);
	if (o && detail) {
		char atr[READER_ATR_MAX * 2 + 1];
		hex_encode(r->atr, r->atr_len, true, atr, sizeof(atr));
		json_object_set_new(o, "atr", r->card && r->atr_len ? json_string(atr) : json_null());
		json_object_set_new(o, "reason", r->reason[0] ? json_string(r->reason) : json_null());
		json_object_set_new(o, "contactless", json_boolean(r->contactless));
		json_object_set_new(o, "kind", json_string(r->drv->ops == &reader_qr_ops ? "qr" : "card"));
	}
	return o;
}

void
api_cards_report(void *ctx, const struct readers_report *rep)
{
	(void)ctx;
	const char *type = readers_report_name(rep->type);
	json_t *f;
	if (rep->type == READERS_REPORT_CARD_READ || rep->type == READERS_REPORT_CARD_ERROR)
		present_answer(rep);
	switch (rep->type) {
	case READERS_REPORT_DRIVER_DOWN:
		events_publish(type, json_pack("{s:s,s:s}", "driver", rep->driver, "reason", rep->reason));
		return;
	case READERS_REPORT_DRIVER_UP:
		events_publish(type, json_pack("{s:s}", "driver", rep->driver));
		return;
	case READERS_REPORT_CODE_ENTRY:
		events_publish(type, json_pack("{s:s,s:s,s:s?,s:I}", "reader", rep->reader, "driver",
		                               rep->driver, "profile", rep->profile, "timeout_s",
		                               (json_int_t)rep->timeout_s));
		return;
	default:
		break;
	}
	f = json_pack("{s:s,s:s}", "reader", rep->reader, "driver", rep->driver);
	switch (rep->type) {
	case READERS_REPORT_CARD_INSERTED:
		json_object_set_new(f, "atr", json_string(rep->atr));
		if (strcmp(rep->driver, "qr") == 0)
			json_object_set_new(f, "kind", json_string("qr"));
		json_object_set_new(f, "profile", rep->profile ? json_string(rep->profile) : json_null());
		json_object_set_new(f, "contactless", json_boolean(rep->contactless));
		break;
	case READERS_REPORT_CARD_ERROR:
		metrics_inc(METRICS_CARD_ERRORS, NULL);
		json_object_set_new(f, "reason", json_string(rep->reason));
		if (rep->detail)
			json_object_set_new(f, "detail", json_string(rep->detail));
		if (rep->profile)
			json_object_set_new(f, "profile", json_string(rep->profile));
		break;
	case READERS_REPORT_CARD_READ: {
		metrics_inc(METRICS_CARDS_READ, rep->result->profile);
		json_object_set_new(f, "profile", json_string(rep->result->profile));
		json_object_set_new(f, "opposed", json_boolean(rep->result->opposed));
		json_object_set_new(f, "summary", card_result_json(rep->result, CARD_JSON_SUMMARY));
		json_t *c = json_pack("{s:o}", "summary",
		                      card_result_json(rep->result, CARD_JSON_SUMMARY_ID));
		events_publish_ex(type, f, c);
		return;
	}
	default:
		break;
	}
	events_publish(type, f);
}

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
	for (const struct readers_reader *r = readers_first(); r; r = readers_next(r))
		json_array_append_new(arr, reader_json(r, false));
	json_t *drv = json_object_get(st, "drivers");
	if (!json_is_array(drv)) {
		drv = json_array();
		json_object_set_new(st, "drivers", drv);
	}
	json_object_set_new(st, "opposition",
	                    json_pack("{s:I,s:b}", "serials", (json_int_t)opposition_count(),
	                              "loaded", opposition_loaded()));
	for (size_t i = 0; i < A.ndrivers; i++) {
		const struct readers_driver *dv = &A.drivers[i];
		json_array_append_new(drv, json_pack("{s:s,s:s,s:s?}", "name", dv->ops->name, "state",
		                                     readers_drv_state_name(dv->state), "reason",
		                                     dv->reason[0] ? dv->reason : NULL));
	}
}

/* ------------------------------------------------------------------ */
/* methods */

static int
m_list_readers(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	json_t *arr = json_array();
	if (!arr)
		return -ENOMEM;
	for (const struct readers_reader *r = readers_first(); r; r = readers_next(r))
		json_array_append_new(arr, reader_json(r, true));
	return vl_reply(call, json_pack("{s:o}", "readers", arr));
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
	const struct readers_reader *best = readers_current(name);
	if (!best)
		return vl_reply_error(call, VL_ERR("NoCard"), json_pack("{s:s?}", "reader", name));
	json_t *c = current_card_json(best);
	if (!c)
		return -ENOMEM;
	return vl_reply(call, json_pack("{s:o}", "card", c));
}

/* GetCard's "card": the result and what the reader knows of it. */
static json_t *
current_card_json(const struct readers_reader *best)
{
	json_t *c = card_result_json(best->result, CARD_JSON_FULL);
	if (!c)
		return NULL;
	json_object_set_new(c, "reader", json_string(best->name));
	json_object_set_new(c, "driver", json_string(best->drv->ops->name));
	json_object_set_new(c, "read_at", json_string(best->read_at));
	/* issue 11, 18: say beforehand whether CreateSheet can use this card */
	char why[120];
	bool can = card_can_back_sheet(best->result, best->read_at, why, sizeof(why));
	json_object_set_new(c, "can_back_sheet", json_boolean(can));
	if (!can)
		json_object_set_new(c, "why", json_string(why));
	return c;
}

/* ------------------------------------------------------------------ */
/* the QR form: PresentCode, NewChallenge */

static void
present_cancel(struct vl_call *call, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < READER_QR_API_READERS; i++)
		if (P[i].call == call)
			P[i].call = NULL;
}

/* A PresentCode call waits for the end of its code's session. */
static void
present_answer(const struct readers_report *rep)
{
	for (size_t i = 0; i < READER_QR_API_READERS; i++) {
		struct vl_call *call = P[i].call;
		if (!call || !rep->reader || strcmp(P[i].reader, rep->reader) != 0)
			continue;
		P[i].call = NULL;
		vl_call_set_cancel(call, NULL, NULL);
		const struct readers_reader *r = rep->type == READERS_REPORT_CARD_READ
		                                         ? readers_current(rep->reader)
		                                         : NULL;
		json_t *c = r ? current_card_json(r) : NULL;
		if (c)
			vl_reply(call, json_pack("{s:o}", "card", c));
		else
			vl_reply_error(call, VL_ERR("CodeRefused"),
			               json_pack("{s:s,s:s,s:s?}", "reader", rep->reader, "reason",
			                         rep->reason ? rep->reason : "internal_error", "detail",
			                         rep->detail));
	}
}

static struct reader_driver *
qr_driver(void)
{
	for (size_t i = 0; i < A.ndrivers; i++)
		if (A.drivers[i].ops == &reader_qr_ops && A.drivers[i].h)
			return A.drivers[i].h;
	return NULL;
}

static int
m_present_code(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	const char *text = NULL, *name = NULL, *key;
	json_t *v;
	json_object_foreach(params, key, v) {
		if (strcmp(key, "text") == 0 && json_is_string(v))
			text = json_string_value(v);
		else if (strcmp(key, "reader") == 0 && (json_is_string(v) || json_is_null(v)))
			name = json_string_value(v);
		else
			return vl_reply_invalid_param(call, key);
	}
	if (!text || !text[0] || json_string_length(json_object_get(params, "text")) > READER_QR_LINE_MAX)
		return vl_reply_invalid_param(call, "text");
	struct reader_driver *h = qr_driver();
	if (!h)
		return vl_reply_error(call, VL_ERR("QrDisabled"), NULL);
	char rname[READER_NAME_MAX];
	snprintf(rname, sizeof(rname), "PresentCode%s%s", name && name[0] ? ":" : "", name ? name : "");
	size_t slot = READER_QR_API_READERS;
	for (size_t i = 0; i < READER_QR_API_READERS; i++) {
		if (P[i].call && strcmp(P[i].reader, rname) == 0)
			return vl_reply_error(call, VL_ERR("ReaderBusy"), json_pack("{s:s}", "reader", rname));
		if (!P[i].call && slot == READER_QR_API_READERS)
			slot = i;
	}
	int r = reader_qr_present(h, name, text, strlen(text), rname);
	if (r == -EINVAL)
		return vl_reply_invalid_param(call, "reader");
	if (r < 0 || slot == READER_QR_API_READERS)
		return vl_reply_error(call, VL_ERR("ReaderBusy"), json_pack("{s:s}", "reader", rname));
	P[slot].call = call;
	snprintf(P[slot].reader, sizeof(P[slot].reader), "%s", rname);
	vl_call_set_cancel(call, present_cancel, NULL);
	return 0;
}

static int
m_new_challenge(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	char ch[8];
	int64_t until = 0;
	int r = cards_qr_challenge_new(ch, &until);
	if (r == -ENOTSUP)
		return vl_reply_error(call, VL_ERR("QrDisabled"), NULL);
	if (r < 0)
		return vl_reply_error(call, VL_ERR("InternalError"), json_pack("{s:s}", "reason", strerror(-r)));
	int64_t now = (int64_t)time(NULL);
	json_t *o = json_pack("{s:s,s:I,s:I}", "challenge", ch, "expires_in_s",
	                      (json_int_t)(until - now), "expires", (json_int_t)until);
	explicit_bzero(ch, sizeof(ch));
	return vl_reply(call, o);
}

int
api_cards_start(struct daemon *d, const struct readers_driver *drivers, size_t ndrivers)
{
	int r;
	A.drivers = drivers;
	A.ndrivers = ndrivers;
	if ((r = vl_server_add_method(d->api, TERMINAL_IFACE ".ListReaders", m_list_readers, NULL, 0)) < 0 ||
	    (r = vl_server_add_method(d->api, TERMINAL_IFACE ".GetCard", m_get_card, NULL, VL_CONTROL)) < 0 ||
	    (r = vl_server_add_method(d->api, TERMINAL_IFACE ".PresentCode", m_present_code, NULL, VL_CONTROL)) < 0 ||
	    (r = vl_server_add_method(d->api, TERMINAL_IFACE ".NewChallenge", m_new_challenge, NULL, VL_CONTROL)) < 0 ||
	    (r = status_add_provider(status_cb, NULL)) < 0) {
		log_err("readers: cannot register: %s", strerror(-r));
		return r;
	}
	return 0;
}
