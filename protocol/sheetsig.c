/* The signed form of a care sheet; see sheetsig.h and docs/care-sheet.md.
 *
 * The decoder is the encoder's mirror (protocol/sheet.c sheet_encode): the
 * same keys, the same types. It never trusts the order of what it reads for
 * meaning, but verification re-encodes the decoded sheet and compares the
 * bytes, so a payload with anything the model does not produce (an extra
 * key, an empty evidence map, a non-shortest integer) is refused even when
 * each field on its own would pass.
 */
#include "protocol/sheetsig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/cbor.h"
#include "protocol/holidays.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Limits for the payload: a sheet is a few hundred items at most (32 lines
 * of at most 7 pairs), three levels deep (sheet → lines → line). */
static const struct cbor_limits sheet_limits = { SHEETSIG_CBOR_MAX, 1024, 4 };
static const struct cbor_limits cose_limits = { SHEETSIG_MAX, 64, 4 };

/* ------------------------------------------------------------------ */
/* encoding: the adapter between sheet_encode and protocol/cbor */

static int
e_map(void *ctx, size_t pairs)
{
	(void)pairs; /* cbor_enc counts and sorts when the map closes */
	return cbor_enc_map_begin(ctx);
}

static int
e_map_end(void *ctx)
{
	return cbor_enc_map_end(ctx);
}

static int
e_array(void *ctx, size_t n)
{
	(void)n;
	return cbor_enc_array_begin(ctx);
}

static int
e_array_end(void *ctx)
{
	return cbor_enc_array_end(ctx);
}

static int
e_text(void *ctx, const char *s, size_t len)
{
	return cbor_enc_text(ctx, s, len);
}

static int
e_bytes(void *ctx, const uint8_t *p, size_t len)
{
	return cbor_enc_bytes(ctx, p, len);
}

static int
e_uint(void *ctx, uint64_t v)
{
	return cbor_enc_uint(ctx, v);
}

static int
e_sint(void *ctx, int64_t v)
{
	return cbor_enc_int(ctx, v);
}

static int
e_bool(void *ctx, bool v)
{
	return cbor_enc_bool(ctx, v);
}

static const struct sheet_encoder cbor_adapter = {
	e_map, e_map_end, e_array, e_array_end, e_text, e_bytes, e_uint, e_sint, e_bool,
};

int
sheetsig_encode(const struct sheet *s, uint8_t **out, size_t *len)
{
	struct cbor_enc e;
	*out = NULL;
	*len = 0;
	int r = cbor_enc_init(&e, SHEETSIG_CBOR_MAX);
	if (r < 0)
		return r;
	r = sheet_encode(s, &cbor_adapter, &e);
	if (r == 0)
		r = cbor_enc_take(&e, out, len);
	cbor_enc_free(&e);
	return r;
}

int
sheetsig_sign(const struct sheet *s, int alg, cose_sign_fn sign, void *sign_ctx, uint8_t **out,
              size_t *len)
{
	uint8_t *cbor = NULL;
	size_t clen = 0;
	*out = NULL;
	*len = 0;
	int r = sheetsig_encode(s, &cbor, &clen);
	if (r < 0)
		return r;
	struct cose_sign1_params p = { .alg = alg, .max_size = SHEETSIG_MAX };
	r = cose_sign1_create(&p, cbor, clen, sign, sign_ctx, out, len);
	explicit_bzero(cbor, clen); /* the NIR is in there */
	free(cbor);
	return r;
}

/* ------------------------------------------------------------------ */
/* decoding */

static void __attribute__((format(printf, 3, 4)))
derr(struct sheet_errors *errs, const char *field, const char *fmt, ...)
{
	if (!errs)
		return;
	if (errs->n >= SHEET_MAX_ERRORS) {
		errs->truncated = true;
		return;
	}
	struct sheet_error *e = &errs->e[errs->n++];
	snprintf(e->field, sizeof(e->field), "%s", field);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

/* A text value into buf (NUL-terminated): it must fit and hold no NUL. */
static bool
d_text(const struct cbor_item *v, const char *field, char *buf, size_t buflen,
         struct sheet_errors *errs)
{
	if (!v || v->type != CBOR_TEXT) {
		derr(errs, field, "must be a text string");
		return false;
	}
	if (v->len >= buflen || memchr(v->ptr, 0, v->len)) {
		derr(errs, field, "too long or holds a NUL");
		return false;
	}
	memcpy(buf, v->ptr, v->len);
	buf[v->len] = '\0';
	return true;
}

static bool
d_date(const struct cbor_item *v, const char *field, int32_t *out, struct sheet_errors *errs)
{
	char buf[16];
	if (!d_text(v, field, buf, sizeof(buf), errs))
		return false;
	if (holidays_parse(buf, out) < 0) {
		derr(errs, field, "not a YYYY-MM-DD date");
		return false;
	}
	return true;
}

static bool
d_u(const struct cbor_item *v, const char *field, uint64_t max, uint64_t *out,
      struct sheet_errors *errs)
{
	if (cbor_get_uint(v, out) < 0 || *out > max) {
		derr(errs, field, "must be an unsigned integer up to %llu", (unsigned long long)max);
		return false;
	}
	return true;
}

static bool
d_i(const struct cbor_item *v, const char *field, int64_t *out, struct sheet_errors *errs)
{
	if (cbor_get_int(v, out) < 0) {
		derr(errs, field, "must be an integer");
		return false;
	}
	return true;
}

static bool
d_b(const struct cbor_item *v, const char *field, bool *out, struct sheet_errors *errs)
{
	if (cbor_get_bool(v, out) < 0) {
		derr(errs, field, "must be a boolean");
		return false;
	}
	return true;
}

static bool
d_bytes(const struct cbor_item *v, const char *field, uint8_t *buf, size_t max, size_t *len,
          struct sheet_errors *errs)
{
	if (!v || v->type != CBOR_BYTES || v->len == 0 || v->len > max) {
		derr(errs, field, "must be a byte string of 1 to %zu bytes", max);
		return false;
	}
	memcpy(buf, v->ptr, v->len);
	*len = v->len;
	return true;
}

/* Walk a map whose keys must all be text in names[]; calls fn for each
 * pair with the key's index. Reports unknown keys and (required mask)
 * missing ones. */
typedef void (*pair_fn)(size_t k, const struct cbor_item *v, const char *field, void *arg,
                        struct sheet_errors *errs);

static uint64_t
walk_map(const struct cbor_doc *doc, const struct cbor_item *map, const char *prefix,
         const char *const *names, size_t nnames, uint64_t required, pair_fn fn, void *arg,
         struct sheet_errors *errs)
{
	char field[40];
	uint64_t seen = 0;
	if (!map || map->type != CBOR_MAP) {
		derr(errs, prefix[0] ? prefix : "sheet", "must be a map");
		return 0;
	}
	struct cbor_iter it;
	const struct cbor_item *k, *v;
	cbor_iter_init(&it, doc, map);
	while ((k = cbor_iter_next(&it)) && (v = cbor_iter_next(&it))) {
		size_t i = nnames;
		if (k->type == CBOR_TEXT)
			for (i = 0; i < nnames; i++)
				if (cbor_text_eq(k, names[i]))
					break;
		if (i == nnames) {
			derr(errs, prefix[0] ? prefix : "sheet", "unknown key");
			continue;
		}
		seen |= 1ull << i;
		snprintf(field, sizeof(field), "%s%s%s", prefix, prefix[0] ? "." : "", names[i]);
		fn(i, v, field, arg, errs);
	}
	for (size_t i = 0; i < nnames; i++) {
		if ((required & (1ull << i)) && !(seen & (1ull << i))) {
			snprintf(field, sizeof(field), "%s%s%s", prefix, prefix[0] ? "." : "", names[i]);
			derr(errs, field, "missing");
		}
	}
	return seen;
}

struct dctx {
	const struct cbor_doc *doc;
	struct sheet *s;
	size_t act;
};

static const char *const k_ins[] = { "regime", "caisse", "centre" };

static void
on_ins(size_t k, const struct cbor_item *v, const char *f, void *arg, struct sheet_errors *e)
{
	struct sheet *s = ((struct dctx *)arg)->s;
	char *dst[] = { s->regime, s->caisse, s->centre };
	size_t len[] = { sizeof(s->regime), sizeof(s->caisse), sizeof(s->centre) };
	d_text(v, f, dst[k], len[k], e);
}

static const char *const k_pre[] = { "id", "date" };

static void
on_pre(size_t k, const struct cbor_item *v, const char *f, void *arg, struct sheet_errors *e)
{
	struct sheet *s = ((struct dctx *)arg)->s;
	if (k == 0)
		d_text(v, f, s->prescriber_id, sizeof(s->prescriber_id), e);
	else
		d_date(v, f, &s->prescription_date, e);
}

static const char *const k_tot[] = { "total", "amo", "amc", "patient" };

static void
on_tot(size_t k, const struct cbor_item *v, const char *f, void *arg, struct sheet_errors *e)
{
	struct sheet *s = ((struct dctx *)arg)->s;
	int64_t *dst[] = { &s->total, &s->amo, &s->amc_amount, &s->patient };
	d_i(v, f, dst[k], e);
}

static const char *const k_ev[] = { "card_serial", "read_at", "device_answer", "credential" };

static void
on_ev(size_t k, const struct cbor_item *v, const char *f, void *arg, struct sheet_errors *e)
{
	struct sheet_evidence *ev = &((struct dctx *)arg)->s->evidence;
	uint64_t u;
	switch (k) {
	case 0: d_text(v, f, ev->card_serial, sizeof(ev->card_serial), e); break;
	case 1:
		if (d_u(v, f, INT64_MAX, &u, e))
			ev->read_at = (int64_t)u;
		break;
	case 2:
		d_bytes(v, f, ev->device_answer, SHEET_EVIDENCE_MAX, &ev->device_answer_len, e);
		break;
	default:
		d_bytes(v, f, ev->credential, SHEET_CREDENTIAL_MAX, &ev->credential_len, e);
		break;
	}
}

/* A line's keys, all kinds together; which ones a line must have is its
 * kind's (lines_check). */
enum { L_DATE, L_CODE, L_COEF, L_AMOUNT, L_KIND, L_CIP13, L_SERVICE, L_QTY, L_PRICE, L_LPP };
static const char *const k_line[] = { "date", "code", "coef_milli", "amount", "kind",
	                              "cip13", "service", "quantity", "unit_price", "lpp" };

static void
on_line(size_t k, const struct cbor_item *v, const char *f, void *arg, struct sheet_errors *e)
{
	struct dctx *d = arg;
	struct sheet_line *l = &d->s->lines[d->act];
	uint64_t u;
	char buf[16];
	switch (k) {
	case L_DATE: d_date(v, f, &l->date, e); break;
	case L_CODE:
	case L_CIP13:
	case L_LPP: d_text(v, f, l->code, sizeof(l->code), e); break;
	case L_COEF:
		if (d_u(v, f, UINT32_MAX, &u, e))
			l->coef_milli = (uint32_t)u;
		break;
	case L_AMOUNT: d_i(v, f, &l->amount, e); break;
	case L_KIND:
		if (d_text(v, f, buf, sizeof(buf), e)) {
			int kind = sheet_line_kind_parse(buf);
			if (kind < 0)
				derr(e, f, "unknown kind");
			else
				l->kind = (enum sheet_line_kind)kind;
		}
		break;
	case L_SERVICE: d_text(v, f, l->service, sizeof(l->service), e); break;
	case L_QTY:
		if (d_u(v, f, UINT32_MAX, &u, e))
			l->quantity = (uint32_t)u;
		break;
	default: d_i(v, f, &l->unit_price, e); break;
	}
}

#define LB(k) (1ull << (k))

/* The keys a line of this kind has, exactly (model 1: no kind). */
static void
line_keys_check(const struct sheet_line *l, uint64_t seen, bool v1, const char *prefix,
                struct sheet_errors *e)
{
	uint64_t want = LB(L_DATE) | LB(L_AMOUNT) | (v1 ? 0 : LB(L_KIND));
	if (l->kind == SHEET_LINE_ACT)
		want |= LB(L_CODE) | LB(L_COEF);
	else if (l->kind == SHEET_LINE_MEDICINE)
		want |= LB(L_CIP13) | LB(L_SERVICE) | LB(L_QTY) | LB(L_PRICE);
	else
		want |= LB(L_LPP) | LB(L_QTY) | LB(L_PRICE);
	for (size_t i = 0; i < N(k_line); i++) {
		char f[40];
		snprintf(f, sizeof(f), "%s.%s", prefix, k_line[i]);
		if ((want & LB(i)) && !(seen & LB(i)))
			derr(e, f, "missing");
		else if (!(want & LB(i)) && (seen & LB(i)))
			derr(e, f, "not a key of this line's kind");
	}
}

static void
get_lines(struct dctx *d, const struct cbor_item *v, const char *key, struct sheet_errors *e)
{
	if (!v || v->type != CBOR_ARRAY) {
		derr(e, key, "must be an array");
		return;
	}
	if (v->count > SHEET_MAX_LINES) {
		derr(e, key, "too many lines (%u, at most %d)", (unsigned)v->count, SHEET_MAX_LINES);
		return;
	}
	bool v1 = strcmp(key, "acts") == 0;
	struct cbor_iter it;
	const struct cbor_item *a;
	cbor_iter_init(&it, d->doc, v);
	for (d->act = 0; (a = cbor_iter_next(&it)); d->act++) {
		char prefix[24];
		snprintf(prefix, sizeof(prefix), "%s[%zu]", key, d->act);
		d->s->lines[d->act] = (struct sheet_line){ .date = SHEET_NO_DATE };
		uint64_t seen = walk_map(d->doc, a, prefix, k_line, N(k_line), 0, on_line, d, e);
		if (a->type == CBOR_MAP)
			line_keys_check(&d->s->lines[d->act], seen, v1, prefix, e);
	}
	d->s->nlines = d->act;
}

static const char *const k_amc[] = { "id", "tiers_payant" };

static void
on_amc(size_t k, const struct cbor_item *v, const char *f, void *arg, struct sheet_errors *e)
{
	struct sheet *s = ((struct dctx *)arg)->s;
	if (k == 0)
		d_text(v, f, s->amc_id, sizeof(s->amc_id), e);
	else
		d_b(v, f, &s->amc_tiers_payant, e);
}

enum {
	K_V, K_ID, K_TERMINAL, K_CARE, K_SEQ, K_NIR, K_BIRTH, K_RANK, K_INSURER, K_PRACT,
	K_STRUCT, K_PRESCRIBER, K_INSURANCE, K_AT, K_ACTS, K_TOTALS, K_AMC, K_TP, K_MODE,
	K_EVIDENCE, K_DUE, K_CREATED,
	/* model 2 */
	K_LINES, K_AT_NUMBER, K_MATERNITY, K_PATHWAY, K_REFERRER, K_EXEMPTION,
};
static const char *const k_top[] = {
	"v", "id", "terminal_id", "care_date", "seq", "nir", "birth_date", "birth_rank",
	"insurer", "practitioner_id", "structure_id", "prescriber", "insurance", "at_date",
	"acts", "totals", "amc", "tiers_payant", "mode", "evidence", "due_date", "created",
	"lines", "at_number", "maternity_date", "pathway", "referrer_id", "exemption",
};
#define BIT(k) (1ull << (k))
/* what both models must have; the rest is checked by version (top_check) */
static const uint64_t top_required =
	BIT(K_V) | BIT(K_ID) | BIT(K_TERMINAL) | BIT(K_CARE) | BIT(K_SEQ) | BIT(K_NIR) |
	BIT(K_INSURER) | BIT(K_PRACT) | BIT(K_INSURANCE) | BIT(K_TOTALS) | BIT(K_TP) |
	BIT(K_MODE) | BIT(K_DUE) | BIT(K_CREATED);
static const uint64_t top_v2_only = BIT(K_LINES) | BIT(K_AT_NUMBER) | BIT(K_MATERNITY) |
	BIT(K_PATHWAY) | BIT(K_REFERRER) | BIT(K_EXEMPTION);

/* Model 1 has "acts" and the "amc" flag and none of model 2's keys; model
 * 2 has "lines" and no "acts". */
static void
top_check(const struct sheet *s, uint64_t seen, struct sheet_errors *e)
{
	if (s->version == SHEET_VERSION_1) {
		if (!(seen & BIT(K_ACTS)))
			derr(e, "acts", "missing");
		if (!(seen & BIT(K_AMC)))
			derr(e, "amc", "missing");
		for (size_t k = 0; k < N(k_top); k++)
			if ((seen & top_v2_only & BIT(k)))
				derr(e, k_top[k], "not a key of model 1");
	} else if (s->version == SHEET_VERSION_2) {
		if (!(seen & BIT(K_LINES)))
			derr(e, "lines", "missing");
		if (seen & BIT(K_ACTS))
			derr(e, "acts", "not a key of model 2 (its lines are \"lines\")");
	}
}

static void
on_top(size_t k, const struct cbor_item *v, const char *f, void *arg, struct sheet_errors *e)
{
	struct dctx *d = arg;
	struct sheet *s = d->s;
	uint64_t u;
	char buf[24];
	switch (k) {
	case K_V:
		if (d_u(v, f, UINT64_MAX, &u, e)) {
			if (u != SHEET_VERSION_1 && u != SHEET_VERSION_2)
				derr(e, f, "model version %llu, this reader knows 1 and 2",
				     (unsigned long long)u);
			else
				s->version = (uint32_t)u;
		}
		break;
	case K_ID: d_text(v, f, s->id, sizeof(s->id), e); break;
	case K_TERMINAL: d_text(v, f, s->terminal_id, sizeof(s->terminal_id), e); break;
	case K_CARE: d_date(v, f, &s->care_date, e); break;
	case K_SEQ:
		if (d_u(v, f, UINT32_MAX, &u, e))
			s->seq = (uint32_t)u;
		break;
	case K_NIR: d_text(v, f, s->nir, sizeof(s->nir), e); break;
	case K_BIRTH: d_text(v, f, s->birth_date, sizeof(s->birth_date), e); break;
	case K_RANK:
		if (d_u(v, f, 9, &u, e))
			s->birth_rank = (uint32_t)u;
		break;
	case K_INSURER: walk_map(d->doc, v, "insurer", k_ins, N(k_ins), 0x7, on_ins, d, e); break;
	case K_PRACT: d_text(v, f, s->practitioner_id, sizeof(s->practitioner_id), e); break;
	case K_STRUCT: d_text(v, f, s->structure_id, sizeof(s->structure_id), e); break;
	case K_PRESCRIBER:
		walk_map(d->doc, v, "prescriber", k_pre, N(k_pre), 0, on_pre, d, e);
		break;
	case K_INSURANCE:
		if (d_u(v, f, 255, &u, e)) {
			if (!sheet_insurance_name((enum sheet_insurance)u))
				derr(e, f, "unknown insurance code %llu", (unsigned long long)u);
			else
				s->insurance = (enum sheet_insurance)u;
		}
		break;
	case K_AT: d_date(v, f, &s->at_date, e); break;
	case K_ACTS: get_lines(d, v, "acts", e); break;
	case K_LINES: get_lines(d, v, "lines", e); break;
	case K_AT_NUMBER: d_text(v, f, s->at_number, sizeof(s->at_number), e); break;
	case K_MATERNITY: d_date(v, f, &s->maternity_date, e); break;
	case K_PATHWAY:
	case K_EXEMPTION:
		if (d_text(v, f, buf, sizeof(buf), e)) {
			int x = k == K_PATHWAY ? sheet_pathway_parse(buf) : sheet_exemption_parse(buf);
			if (x < 0)
				derr(e, f, "unknown %s", k == K_PATHWAY ? "care pathway" : "exemption");
			else if (k == K_PATHWAY)
				s->pathway = (enum sheet_pathway)x;
			else
				s->exemption = (enum sheet_exemption)x;
		}
		break;
	case K_REFERRER: d_text(v, f, s->referrer_id, sizeof(s->referrer_id), e); break;
	case K_TOTALS: walk_map(d->doc, v, "totals", k_tot, N(k_tot), 0xf, on_tot, d, e); break;
	case K_AMC:
		/* model 1: a flag; model 2: the AMC's map, present when one takes part */
		if (v && v->type == CBOR_MAP) {
			s->amc = true;
			walk_map(d->doc, v, "amc", k_amc, N(k_amc), 0x2, on_amc, d, e);
		} else if (s->version == SHEET_VERSION_2) {
			derr(e, f, "model 2: a map {id, tiers_payant}, absent when no AMC");
		} else {
			d_b(v, f, &s->amc, e);
		}
		break;
	case K_TP: d_b(v, f, &s->tiers_payant, e); break;
	case K_MODE:
		if (d_text(v, f, buf, sizeof(buf), e)) {
			int m = sheet_mode_parse(buf);
			if (m < 0)
				derr(e, f, "unknown mode");
			else
				s->mode = (enum sheet_mode)m;
		}
		break;
	case K_EVIDENCE: walk_map(d->doc, v, "evidence", k_ev, N(k_ev), 0, on_ev, d, e); break;
	case K_DUE: d_date(v, f, &s->due_date, e); break;
	case K_CREATED:
		if (d_u(v, f, INT64_MAX, &u, e))
			s->created = (int64_t)u;
		break;
	default: break;
	}
}

int
sheetsig_decode(const uint8_t *cbor, size_t len, struct sheet *s, struct sheet_errors *errs)
{
	struct sheet_errors local;
	struct cbor_doc doc = { 0 };
	if (!errs)
		errs = &local;
	memset(errs, 0, sizeof(*errs));
	sheet_init(s);
	int r = cbor_decode(cbor, len, &sheet_limits, CBOR_STRICT | CBOR_NO_NULL | CBOR_NO_TAGS, &doc);
	if (r < 0) {
		derr(errs, "sheet", "not deterministic CBOR within the limits (%s)",
		     r == -EDOM ? "non-canonical" : r == -E2BIG ? "too big" : r == -ELOOP ? "too deep" :
		     r == -ENOTSUP ? "a null, tag or float" : "not well-formed");
		return -EBADMSG;
	}
	struct dctx d = { &doc, s, 0 };
	s->version = 0; /* the payload's "v" says */
	uint64_t seen = walk_map(&doc, cbor_root(&doc), "", k_top, N(k_top), top_required, on_top,
	                         &d, errs);
	top_check(s, seen, errs);
	cbor_doc_free(&doc);
	return errs->n ? -EBADMSG : 0;
}

/* ------------------------------------------------------------------ */
/* verification */

int
sheetsig_payload(const uint8_t *buf, size_t len, const uint8_t **payload, size_t *plen,
                 int64_t *alg)
{
	struct cose_sign1 m;
	*payload = NULL;
	*plen = 0;
	if (alg)
		*alg = 0;
	int r = cose_sign1_parse(buf, len, &cose_limits, COSE_TAG_REQUIRED, &m);
	if (r == 0) {
		*payload = m.payload.ptr;
		*plen = m.payload.len;
		if (alg)
			*alg = m.has_alg ? m.alg : 0;
	}
	cose_sign1_free(&m);
	return r;
}

/* The UTC day of t, and one more: a care date is a local date, and France's
 * local day (UTC+1/+2, overseas up to +14... and down to -10) may be ahead
 * of the UTC one at the moment of signing. */
static int32_t
day_of(int64_t t)
{
	int64_t d = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
	return (int32_t)d;
}

int
sheetsig_verify(const uint8_t *buf, size_t len, EVP_PKEY *key, struct sheet *out,
                struct sheetsig_report *rep)
{
	struct sheetsig_report local;
	struct cose_sign1 m;
	struct sheet *s = NULL;
	uint8_t *again = NULL;
	size_t alen = 0;
	int r;
	if (!rep)
		rep = &local;
	memset(rep, 0, sizeof(*rep));
	if (out)
		sheet_init(out);
	r = cose_sign1_parse(buf, len, &cose_limits, COSE_TAG_REQUIRED, &m);
	if (r < 0)
		goto out;
	rep->alg = m.has_alg ? m.alg : 0;
	/* our shape: protected {1: alg} only, nothing unprotected */
	if (!m.has_alg || (m.alg != COSE_ALG_ES256 && m.alg != COSE_ALG_PS256) ||
	    m.protected_count != 1 || m.unprotected_count != 0) {
		r = -EPROTO;
		goto out;
	}
	if (key) {
		rep->signature_checked = true;
		r = cose_sign1_verify(&m, key);
		if (r < 0) {
			r = r == -ENOTSUP ? -EPROTO : -EKEYREJECTED;
			goto out;
		}
		rep->signature_ok = true;
	}
	s = malloc(sizeof(*s));
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = sheetsig_decode(m.payload.ptr, m.payload.len, s, &rep->errs)) < 0)
		goto out;
	rep->decoded = true;
	if ((r = sheetsig_encode(s, &again, &alen)) < 0) {
		r = -EDOM;
		goto out;
	}
	rep->canonical = alen == m.payload.len && memcmp(again, m.payload.ptr, alen) == 0;
	struct sheet_check c = { .today = day_of(s->created) + 1, .now = s->created };
	rep->valid = sheet_validate(s, &c, &rep->errs) == 0;
	/* the terminal's department is not in the sheet: any calendar a
	 * department has (metropolitan first) */
	static const unsigned calendars[] = {
		0, HOLIDAYS_ALSACE_MOSELLE, HOLIDAYS_SLAVERY_MAYOTTE, HOLIDAYS_SLAVERY_MARTINIQUE,
		HOLIDAYS_SLAVERY_GUADELOUPE, HOLIDAYS_SLAVERY_GUYANE, HOLIDAYS_SLAVERY_STBARTH,
		HOLIDAYS_SLAVERY_REUNION,
	};
	for (size_t i = 0; s->care_date != SHEET_NO_DATE && i < N(calendars); i++) {
		int32_t due;
		if (holidays_due_date(s->care_date, s->tiers_payant, calendars[i], &due) == 0 &&
		    due == s->due_date) {
			rep->due_ok = true;
			rep->due_alsace = calendars[i] == HOLIDAYS_ALSACE_MOSELLE;
			rep->due_calendar = holidays_calendar_name(calendars[i]);
			break;
		}
	}
	r = !rep->canonical ? -EDOM : !rep->valid ? -EINVAL : !rep->due_ok ? -ERANGE : 0;
	if (out)
		*out = *s;
out:
	if (again) {
		explicit_bzero(again, alen);
		free(again);
	}
	if (s) {
		explicit_bzero(s, sizeof(*s));
		free(s);
	}
	cose_sign1_free(&m);
	return r;
}
