/* The open insurer interface v1: batch encoding, answer parsers, backoff.
 * See protocol/insurer.h; the wire contract is ../shared/INSURER.md, restated
 * in docs/insurer-api.md (section names below are that page's). Everything
 * here is pure: the daemon's uploader (daemon/upload) does the I/O.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/cbor.h"
#include "protocol/holidays.h"
#include "protocol/insurer.h"

/* ------------------------------------------------------------------------ */
/* POST /v1/batches body */

bool
insurer_uuid_valid(const char *s)
{
	static const char hex[] = "0123456789abcdef";

	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return false;
		} else if (!s[i] || !strchr(hex, s[i])) {
			return false;
		}
	}
	/* version 4, variant 10xx (RFC 9562 §5.4) */
	return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

void
insurer_uuid_format(const uint8_t rnd[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	size_t o = 0;

	memcpy(b, rnd, 16);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

static int
enc_bstr_array(struct cbor_enc *e, const uint8_t *const *p, const size_t *lens, size_t n)
{
	cbor_enc_array_begin(e);
	for (size_t i = 0; i < n; i++)
		cbor_enc_bytes(e, p[i], lens[i]);
	return cbor_enc_array_end(e);
}

int
insurer_batch_encode(const struct insurer_batch *b, uint8_t **out, size_t *len)
{
	struct cbor_enc e;
	int r;

	*out = NULL;
	*len = 0;
	if (!b || !insurer_uuid_valid(b->batch_id) || !b->terminal_id || !b->terminal_id[0] ||
	    !b->practitioner_id || !b->practitioner_id[0] || b->ncerts < 1 ||
	    b->ncerts > INSURER_CERTS_MAX || b->nsheets < 1 ||
	    b->nsheets > INSURER_BATCH_SHEETS_MAX || !b->certs || !b->cert_lens || !b->sheets ||
	    !b->sheet_lens)
		return -EINVAL;
	r = cbor_enc_init(&e, INSURER_BATCH_BYTES_MAX);
	if (r < 0)
		return r;
	/* written in any order: the encoder sorts the keys when the map closes */
	cbor_enc_map_begin(&e);
	cbor_enc_textz(&e, "v");
	cbor_enc_uint(&e, INSURER_VERSION);
	cbor_enc_textz(&e, "batch_id");
	cbor_enc_textz(&e, b->batch_id);
	cbor_enc_textz(&e, "terminal_id");
	cbor_enc_textz(&e, b->terminal_id);
	cbor_enc_textz(&e, "practitioner_id");
	cbor_enc_textz(&e, b->practitioner_id);
	cbor_enc_textz(&e, "created");
	cbor_enc_uint(&e, b->created);
	cbor_enc_textz(&e, "x5chain");
	enc_bstr_array(&e, b->certs, b->cert_lens, b->ncerts);
	cbor_enc_textz(&e, "sheets");
	enc_bstr_array(&e, b->sheets, b->sheet_lens, b->nsheets);
	cbor_enc_map_end(&e);
	r = cbor_enc_take(&e, out, len);
	cbor_enc_free(&e);
	return r;
}

/* ------------------------------------------------------------------------ */
/* JSON helpers */

static json_t *
load(const char *body, size_t len)
{
	json_error_t je;

	if (!body || len == 0 || len > INSURER_ANSWER_MAX)
		return NULL;
	return json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
}

/* Copy a JSON string of at most cap-1 bytes, no NUL inside, printable
 * (bytes below 0x20 refused: these strings reach logs and terminals). */
static int
copy_str(const json_t *v, char *dst, size_t cap, bool allow_empty)
{
	const char *s;
	size_t n;

	dst[0] = '\0';
	if (!json_is_string(v))
		return -EBADMSG;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n >= cap || strlen(s) != n || (!allow_empty && n == 0))
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return -EBADMSG;
	memcpy(dst, s, n + 1);
	return 0;
}

static int
copy_date(const json_t *v, char dst[11])
{
	if (copy_str(v, dst, 11, false) < 0 || !holidays_date_shape(dst))
		return -EBADMSG;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The 200 answer to a batch: "A 200 counts only if ..." */

static int
parse_one_result(const json_t *o, const char *id, struct insurer_result *res)
{
	const json_t *st = json_object_get(o, "status"), *jid = json_object_get(o, "id");
	const json_t *code = json_object_get(o, "code"), *reason = json_object_get(o, "reason");
	const char *s;

	memset(res, 0, sizeof(*res));
	if (!json_is_object(o) || !json_is_string(st))
		return -EBADMSG;
	s = json_string_value(st);
	if (strcmp(s, "accepted") == 0)
		res->status = INSURER_ACCEPTED;
	else if (strcmp(s, "duplicate") == 0)
		res->status = INSURER_DUPLICATE;
	else if (strcmp(s, "rejected") == 0)
		res->status = INSURER_REJECTED;
	else
		return -EBADMSG;
	if (res->status == INSURER_REJECTED) {
		if (copy_str(code, res->code, sizeof(res->code), false) < 0)
			return -EBADMSG;
		if (reason && !json_is_null(reason) &&
		    copy_str(reason, res->reason, sizeof(res->reason), true) < 0)
			return -EBADMSG;
	}
	/* the id is the sheet's, or null when none could be read (then the
	 * code is "malformed"); results are matched by position */
	if (json_is_null(jid))
		return res->status == INSURER_REJECTED && strcmp(res->code, "malformed") == 0
		               ? 0
		               : -EBADMSG;
	if (!json_is_string(jid) || strcmp(json_string_value(jid), id) != 0 ||
	    json_string_length(jid) != strlen(id))
		return -EBADMSG;
	return 0;
}

int
insurer_parse_results(const char *body, size_t len, const char *batch_id,
                      const char *const *ids, size_t n, struct insurer_result *out)
{
	json_t *o, *bid, *results;
	int r = -EBADMSG;

	if (out && n)
		memset(out, 0, n * sizeof(*out));
	if (!batch_id || !ids || !out || n == 0 || n > INSURER_BATCH_SHEETS_MAX)
		return -EINVAL;
	o = load(body, len);
	if (!json_is_object(o))
		goto out;
	bid = json_object_get(o, "batch_id");
	results = json_object_get(o, "results");
	if (!json_is_string(bid) || strcmp(json_string_value(bid), batch_id) != 0 ||
	    !json_is_string(json_object_get(o, "received")) || !json_is_array(results) ||
	    json_array_size(results) != n)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (parse_one_result(json_array_get(results, i), ids[i], &out[i]) < 0)
			goto out;
	r = 0;
out:
	json_decref(o);
	if (r < 0)
		memset(out, 0, n * sizeof(*out));
	return r;
}

int
insurer_parse_error(const char *body, size_t len, char code[INSURER_CODE_MAX + 1],
                    char reason[INSURER_REASON_MAX + 1])
{
	json_t *o = load(body, len);
	const json_t *r;
	int ret = -EBADMSG;

	code[0] = reason[0] = '\0';
	if (!json_is_object(o) || copy_str(json_object_get(o, "error"), code,
	                                   INSURER_CODE_MAX + 1, false) < 0)
		goto out;
	r = json_object_get(o, "reason");
	if (r && json_is_string(r) && copy_str(r, reason, INSURER_REASON_MAX + 1, true) < 0)
		reason[0] = '\0';
	ret = 0;
out:
	json_decref(o);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* GET /v1/returns */

static int
parse_return(const json_t *o, struct insurer_return *it)
{
	const json_t *kind = json_object_get(o, "kind"), *amount;

	memset(it, 0, sizeof(*it));
	if (!json_is_object(o) ||
	    copy_str(json_object_get(o, "sheet_id"), it->sheet_id, sizeof(it->sheet_id), false) < 0 ||
	    copy_date(json_object_get(o, "date"), it->date) < 0 || !json_is_string(kind))
		return -EBADMSG;
	if (strcmp(json_string_value(kind), "paid") == 0) {
		it->kind = INSURER_PAID;
		amount = json_object_get(o, "amount");
		if (!json_is_integer(amount) || json_integer_value(amount) < 0)
			return -EBADMSG;
		it->amount = json_integer_value(amount);
		return 0;
	}
	if (strcmp(json_string_value(kind), "refused") == 0) {
		it->kind = INSURER_REFUSED;
		if (copy_str(json_object_get(o, "code"), it->code, sizeof(it->code), false) < 0)
			return -EBADMSG;
		const json_t *reason = json_object_get(o, "reason");
		if (reason && !json_is_null(reason) &&
		    copy_str(reason, it->reason, sizeof(it->reason), true) < 0)
			return -EBADMSG;
		return 0;
	}
	return -EBADMSG;
}

void
insurer_returns_free(struct insurer_returns *r)
{
	if (!r)
		return;
	free(r->items);
	memset(r, 0, sizeof(*r));
}

int
insurer_parse_returns(const char *body, size_t len, size_t max, struct insurer_returns *out)
{
	json_t *o, *arr;
	size_t n;
	int r = -EBADMSG;

	memset(out, 0, sizeof(*out));
	if (max == 0 || max > INSURER_RETURNS_MAX)
		max = INSURER_RETURNS_MAX;
	o = load(body, len);
	if (!json_is_object(o))
		goto out;
	arr = json_object_get(o, "returns");
	if (!json_is_array(arr) ||
	    copy_str(json_object_get(o, "next"), out->next, sizeof(out->next), true) < 0)
		goto out;
	n = json_array_size(arr);
	if (n > max) {
		r = -E2BIG;
		goto out;
	}
	if (n) {
		out->items = calloc(n, sizeof(*out->items));
		if (!out->items) {
			r = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++)
		if (parse_return(json_array_get(arr, i), &out->items[i]) < 0)
			goto out;
	out->n = n;
	r = 0;
out:
	json_decref(o);
	if (r < 0)
		insurer_returns_free(out);
	return r;
}

/* ------------------------------------------------------------------------ */
/* POST /v1/rights */

static bool
digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

int
insurer_rights_request(const char *nir, const char *birth_date, int birth_rank,
                       const char *care_date, char **out, size_t *len)
{
	json_t *o;
	char *s;

	*out = NULL;
	*len = 0;
	if (!nir || strlen(nir) != 15 || !birth_date || !holidays_date_shape(birth_date) || !care_date ||
	    !holidays_date_shape(care_date) || birth_rank < 1 || birth_rank > 9)
		return -EINVAL;
	o = json_pack("{s:s, s:s, s:i, s:s}", "nir", nir, "birth_date", birth_date, "birth_rank",
	              birth_rank, "care_date", care_date);
	if (!o)
		return -ENOMEM;
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!s)
		return -ENOMEM;
	*out = s;
	*len = strlen(s);
	return 0;
}

static int
parse_rights_list(const json_t *arr, struct insurer_rights *out)
{
	size_t i;
	const json_t *v;

	if (!json_is_array(arr))
		return -EBADMSG;
	if (json_array_size(arr) > INSURER_RIGHTS_MAX)
		return -E2BIG;
	json_array_foreach (arr, i, v) {
		struct insurer_right *rt = &out->rights[i];
		if (!json_is_object(v) ||
		    copy_str(json_object_get(v, "code"), rt->code, sizeof(rt->code), false) < 0 ||
		    copy_date(json_object_get(v, "from"), rt->from) < 0 ||
		    copy_date(json_object_get(v, "to"), rt->to) < 0)
			return -EBADMSG;
	}
	out->nrights = json_array_size(arr);
	return 0;
}

static int
parse_amc(const json_t *amc, struct insurer_rights *out)
{
	const json_t *tp;

	if (!amc)
		return 0;
	tp = json_object_get(amc, "tiers_payant");
	if (!json_is_object(amc) ||
	    copy_str(json_object_get(amc, "id"), out->amc_id, sizeof(out->amc_id), false) < 0 ||
	    !json_is_boolean(tp) || copy_date(json_object_get(amc, "to"), out->amc_to) < 0)
		return -EBADMSG;
	out->amc_tiers_payant = json_is_true(tp);
	out->has_amc = true;
	return 0;
}

int
insurer_parse_rights(const char *body, size_t len, const char *nir, struct insurer_rights *out)
{
	json_t *o;
	char echo[16];
	int r = -EBADMSG;

	memset(out, 0, sizeof(*out));
	o = load(body, len);
	if (!json_is_object(o) || !nir)
		goto out;
	if (copy_str(json_object_get(o, "nir"), echo, sizeof(echo), false) < 0 ||
	    strcmp(echo, nir) != 0 ||
	    copy_str(json_object_get(o, "regime"), out->regime, sizeof(out->regime), false) < 0 ||
	    !digits(out->regime, 2) ||
	    copy_str(json_object_get(o, "caisse"), out->caisse, sizeof(out->caisse), false) < 0 ||
	    !digits(out->caisse, 3) ||
	    copy_str(json_object_get(o, "centre"), out->centre, sizeof(out->centre), false) < 0 ||
	    !digits(out->centre, 4) ||
	    copy_str(json_object_get(o, "checked"), out->checked, sizeof(out->checked), false) < 0)
		goto out;
	r = parse_rights_list(json_object_get(o, "rights"), out);
	if (r == 0)
		r = parse_amc(json_object_get(o, "amc"), out);
out:
	json_decref(o);
	if (r < 0)
		memset(out, 0, sizeof(*out));
	return r;
}

/* ------------------------------------------------------------------------ */
/* GET /v1/opposition */

void
insurer_opposition_free(struct insurer_opposition *o)
{
	if (!o)
		return;
	free(o->added);
	free(o->removed);
	memset(o, 0, sizeof(*o));
}

static int
serial_list(const json_t *arr, char (**out)[INSURER_SERIAL_MAX + 1], size_t *n)
{
	size_t i;
	const json_t *v;

	if (!json_is_array(arr))
		return -EBADMSG;
	if (json_array_size(arr) > INSURER_OPPOSITION_MAX)
		return -E2BIG;
	if (json_array_size(arr) == 0)
		return 0;
	*out = calloc(json_array_size(arr), sizeof(**out));
	if (!*out)
		return -ENOMEM;
	json_array_foreach (arr, i, v)
		if (copy_str(v, (*out)[i], INSURER_SERIAL_MAX + 1, false) < 0)
			return -EBADMSG;
	*n = json_array_size(arr);
	return 0;
}

int
insurer_parse_opposition(const char *body, size_t len, struct insurer_opposition *out)
{
	json_t *o;
	int r = -EBADMSG;

	memset(out, 0, sizeof(*out));
	o = load(body, len);
	if (!json_is_object(o) ||
	    copy_str(json_object_get(o, "next"), out->next, sizeof(out->next), true) < 0)
		goto out;
	r = serial_list(json_object_get(o, "added"), &out->added, &out->nadded);
	if (r == 0)
		r = serial_list(json_object_get(o, "removed"), &out->removed, &out->nremoved);
out:
	json_decref(o);
	if (r < 0)
		insurer_opposition_free(out);
	return r;
}

/* ------------------------------------------------------------------------ */
/* What to do, and when */

enum insurer_action
insurer_classify(long s)
{
	switch (s) {
	case 200:
		return INSURER_ACT_RESULTS;
	case 400:
	case 409:
	case 413:
		return INSURER_ACT_SPLIT;
	case 401:
	case 403:
		return INSURER_ACT_REFUSED;
	default:
		/* 429, 5xx, a timeout or reset (no status) and anything the
		 * contract does not name: the same bytes again, later */
		return INSURER_ACT_TRANSIENT;
	}
}

uint64_t
insurer_backoff_ms(unsigned attempt, unsigned base_s, unsigned cap_s, insurer_rand_fn rnd,
                   void *rnd_arg)
{
	uint64_t base, cap, ceil;

	if (cap_s < 1)
		cap_s = 1;
	if (base_s < 1)
		base_s = 1;
	if (base_s > cap_s)
		base_s = cap_s;
	base = (uint64_t)base_s * 1000;
	cap = (uint64_t)cap_s * 1000;
	if (attempt < 1)
		attempt = 1;
	ceil = base;
	for (unsigned i = 1; i < attempt && ceil < cap; i++)
		ceil *= 2;
	if (ceil > cap)
		ceil = cap;
	if (ceil == base || !rnd)
		return ceil;
	return base + rnd(rnd_arg) % (ceil - base + 1);
}

#define RETRY_AFTER_MAX_S 86400

int
insurer_retry_after_ms(const char *v, time_t now, uint64_t *ms)
{
	struct tm tm;
	const char *end;
	time_t t;

	*ms = 0;
	if (!v)
		return -EINVAL;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v >= '0' && *v <= '9') {
		uint64_t s = 0;
		for (; *v >= '0' && *v <= '9'; v++)
			if (s <= RETRY_AFTER_MAX_S)
				s = s * 10 + (uint64_t)(*v - '0');
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v)
			return -EINVAL;
		*ms = (s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : s) * 1000;
		return 0;
	}
	/* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
	memset(&tm, 0, sizeof(tm));
	end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end)
		return -EINVAL;
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end)
		return -EINVAL;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	if (t > now)
		*ms = (uint64_t)(t - now > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : t - now) * 1000;
	return 0;
}

uint64_t
insurer_next_wait_ms(uint64_t backoff_ms, uint64_t retry_after_ms)
{
	return retry_after_ms > backoff_ms ? retry_after_ms : backoff_ms;
}
