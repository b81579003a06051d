/* The care-sheet model: JSON in and out, validation, and the field order
 * of the signed CBOR; see sheet.h and docs/care-sheet.md.
 *
 * Parsing (sheet_from_json) checks only shape: known keys, JSON types,
 * lengths that fit the struct, date syntax. Rules (sheet_validate) are
 * checked on the struct, whatever filled it, so data from the card session
 * goes through the same rules as data from the till. Each problem gives
 * one error naming its field; validation never stops at the first one. */
#include "protocol/sheet.h"

#include "protocol/nir.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/b64.h"
#include "protocol/holidays.h"

/* ------------------------------------------------------------------ */
/* errors */

static void __attribute__((format(printf, 3, 4)))
err_add(struct sheet_errors *errs, const char *field, const char *fmt, ...)
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

/* ------------------------------------------------------------------ */
/* names */

static const struct {
	enum sheet_mode m;
	const char *name;
} mode_names[] = {
	{ SHEET_MODE_PHYSICAL, "physical" },
	{ SHEET_MODE_DIGITAL_NFC, "digital-nfc" },
	{ SHEET_MODE_DIGITAL_QR, "digital-qr" },
	{ SHEET_MODE_DEGRADED, "degraded" },
};

static const struct {
	enum sheet_insurance i;
	const char *name;
} insurance_names[] = {
	{ SHEET_INS_MALADIE, "maladie" },
	{ SHEET_INS_MATERNITE, "maternite" },
	{ SHEET_INS_AT_MP, "at_mp" },
	{ SHEET_INS_SMG, "smg" },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

const char *
sheet_mode_name(enum sheet_mode m)
{
	for (size_t i = 0; i < N(mode_names); i++)
		if (mode_names[i].m == m)
			return mode_names[i].name;
	return NULL;
}

int
sheet_mode_parse(const char *name)
{
	for (size_t i = 0; name && i < N(mode_names); i++)
		if (strcmp(name, mode_names[i].name) == 0)
			return (int)mode_names[i].m;
	return -EINVAL;
}

const char *
sheet_insurance_name(enum sheet_insurance ins)
{
	for (size_t i = 0; i < N(insurance_names); i++)
		if (insurance_names[i].i == ins)
			return insurance_names[i].name;
	return NULL;
}

int
sheet_insurance_parse(const char *name)
{
	for (size_t i = 0; name && i < N(insurance_names); i++)
		if (strcmp(name, insurance_names[i].name) == 0)
			return (int)insurance_names[i].i;
	return -EINVAL;
}

static const char *const line_kind_names[] = { "act", "medicine", "device" };
static const char *const pathway_names[] = {
	NULL, "medecin_traitant", "new_medecin_traitant", "substitute", "referred",
	"direct_access", "emergency", "away_from_home", "outside",
};
static const char *const exemption_names[] = { NULL, "ald", "invalidity", "prevention", "other" };

static const char *
name_of(const char *const *names, size_t n, int v)
{
	return v >= 0 && (size_t)v < n ? names[v] : NULL;
}

static int
parse_name(const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; name && i < n; i++)
		if (names[i] && strcmp(name, names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

const char *
sheet_line_kind_name(enum sheet_line_kind k)
{
	return name_of(line_kind_names, N(line_kind_names), (int)k);
}

int
sheet_line_kind_parse(const char *name)
{
	return parse_name(line_kind_names, N(line_kind_names), name);
}

const char *
sheet_pathway_name(enum sheet_pathway p)
{
	return name_of(pathway_names, N(pathway_names), (int)p);
}

int
sheet_pathway_parse(const char *name)
{
	return parse_name(pathway_names, N(pathway_names), name);
}

const char *
sheet_exemption_name(enum sheet_exemption x)
{
	return name_of(exemption_names, N(exemption_names), (int)x);
}

int
sheet_exemption_parse(const char *name)
{
	return parse_name(exemption_names, N(exemption_names), name);
}

/* ------------------------------------------------------------------ */
/* small checks */

static bool
all_digits(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static bool
printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

/* The NIR rule is protocol/nir.c's, the project's one validator. */
bool
sheet_nir_valid(const char *nir)
{
	return nir && nir_check(nir, strlen(nir), NULL) == 0;
}

static bool
uuid_v4_valid(const char *s)
{
	if (strlen(s) != SHEET_ID_LEN)
		return false;
	for (int i = 0; i < SHEET_ID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
}

void
sheet_uuid_v4(const uint8_t rnd[16], char out[SHEET_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	memcpy(b, rnd, 16);
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* RFC 9562 §5.4: version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* variant 10 */
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

/* The pharmacy service codes that carry a digit (the SNDS pharmacy tables:
 * PH1/PH2/PH4/PH7 are the medicine rates, MX1/MX4/MX7 their counterparts
 * for the other pharmacy items); letter-only codes are NGAP-shaped. */
bool
sheet_service_code_valid(const char *c)
{
	static const char *const codes[] = { "PH1", "PH2", "PH4", "PH7", "MX1", "MX4", "MX7" };
	for (size_t i = 0; c && i < N(codes); i++)
		if (strcmp(c, codes[i]) == 0)
			return true;
	return false;
}

/* NGAP letter keys (C, G, AMI, ...: 1 to 5 capitals), a CCAM code
 * (4 capitals, 3 digits, e.g. DEQP003) or a pharmacy service code. */
bool
sheet_act_code_valid(const char *c)
{
	size_t n = strlen(c);
	size_t letters = 0;
	while (letters < n && c[letters] >= 'A' && c[letters] <= 'Z')
		letters++;
	if (letters == n)
		return n >= 1 && n <= 5;
	if (sheet_service_code_valid(c))
		return true;
	return n == 7 && letters == 4 && all_digits(c + 4, 3);
}

/* CIP13: 13 digits, France's medicines under the GS1 prefix 3400, and the
 * EAN-13 check digit (GS1 General Specifications 7.9: weights 1 and 3 from
 * the left, the check digit makes the sum a multiple of 10). */
bool
sheet_cip13_valid(const char *c)
{
	if (!c || !all_digits(c, 13) || strncmp(c, "3400", 4) != 0)
		return false;
	int sum = 0;
	for (int i = 0; i < 12; i++)
		sum += (c[i] - '0') * (i % 2 ? 3 : 1);
	return (10 - sum % 10) % 10 == c[12] - '0';
}

/* LPP (liste des produits et prestations, CSS L165-1): a 7-digit code. */
bool
sheet_lpp_valid(const char *c)
{
	return c && all_digits(c, 7);
}

static bool
upper_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

static bool
id_digits(const char *s, size_t a, size_t b)
{
	return all_digits(s, a) || all_digits(s, b);
}

/* ------------------------------------------------------------------ */
/* JSON in */

void
sheet_init(struct sheet *s)
{
	memset(s, 0, sizeof(*s));
	s->version = SHEET_VERSION;
	s->care_date = SHEET_NO_DATE;
	s->maternity_date = SHEET_NO_DATE;
	s->prescription_date = SHEET_NO_DATE;
	s->at_date = SHEET_NO_DATE;
	s->due_date = SHEET_NO_DATE;
}

static void
field_name(char *out, size_t len, const char *prefix, const char *key)
{
	if (prefix && prefix[0])
		snprintf(out, len, "%s.%s", prefix, key);
	else
		snprintf(out, len, "%s", key);
}

static bool
check_keys(json_t *obj, const char *prefix, const char *const *allowed, size_t nallowed,
           struct sheet_errors *errs)
{
	const char *key;
	json_t *v;
	bool ok = true;
	json_object_foreach(obj, key, v) {
		bool known = false;
		for (size_t i = 0; i < nallowed; i++)
			known |= strcmp(key, allowed[i]) == 0;
		if (!known) {
			char f[40];
			field_name(f, sizeof(f), prefix, key);
			err_add(errs, f, "unknown field");
			ok = false;
		}
	}
	return ok;
}

/* Each get_* returns 1 if the key was there and read, 0 if absent, -1 after
 * recording an error. */
static int
get_str(json_t *obj, const char *prefix, const char *key, char *buf, size_t buflen,
        struct sheet_errors *errs)
{
	json_t *v = json_object_get(obj, key);
	char f[40];
	if (!v)
		return 0;
	field_name(f, sizeof(f), prefix, key);
	if (!json_is_string(v)) {
		err_add(errs, f, "must be a string");
		return -1;
	}
	size_t n = json_string_length(v);
	const char *s = json_string_value(v);
	if (n >= buflen) {
		err_add(errs, f, "too long (at most %zu characters)", buflen - 1);
		return -1;
	}
	if (memchr(s, '\0', n)) {
		err_add(errs, f, "contains a NUL character");
		return -1;
	}
	memcpy(buf, s, n + 1);
	return 1;
}

static int
get_date(json_t *obj, const char *prefix, const char *key, int32_t *out,
         struct sheet_errors *errs)
{
	char buf[16];
	char f[40];
	int r = get_str(obj, prefix, key, buf, sizeof(buf), errs);
	if (r <= 0)
		return r;
	field_name(f, sizeof(f), prefix, key);
	int32_t d;
	if (holidays_parse(buf, &d) < 0) {
		err_add(errs, f, "not a date (YYYY-MM-DD)");
		return -1;
	}
	*out = d;
	return 1;
}

static int
get_int(json_t *obj, const char *prefix, const char *key, int64_t min, int64_t max,
        int64_t *out, struct sheet_errors *errs)
{
	json_t *v = json_object_get(obj, key);
	char f[40];
	if (!v)
		return 0;
	field_name(f, sizeof(f), prefix, key);
	if (!json_is_integer(v)) {
		err_add(errs, f, "must be an integer");
		return -1;
	}
	json_int_t x = json_integer_value(v);
	if (x < min || x > max) {
		err_add(errs, f, "out of range (%lld..%lld)", (long long)min, (long long)max);
		return -1;
	}
	*out = x;
	return 1;
}

static int
get_bool(json_t *obj, const char *key, bool *out, struct sheet_errors *errs)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		err_add(errs, key, "must be true or false");
		return -1;
	}
	*out = json_is_true(v);
	return 1;
}

static json_t *
get_obj(json_t *obj, const char *key, struct sheet_errors *errs, bool *bad)
{
	json_t *v = json_object_get(obj, key);
	if (v && !json_is_object(v)) {
		err_add(errs, key, "must be an object");
		*bad = true;
		return NULL;
	}
	return v;
}

/* Coefficient: a JSON number with at most 3 decimals, > 0 checked later. */
static int
get_coef(json_t *act, const char *prefix, uint32_t *out, struct sheet_errors *errs)
{
	json_t *v = json_object_get(act, "coefficient");
	char f[40];
	if (!v)
		return 0;
	field_name(f, sizeof(f), prefix, "coefficient");
	double x;
	if (json_is_integer(v))
		x = (double)json_integer_value(v);
	else if (json_is_real(v))
		x = json_real_value(v);
	else {
		err_add(errs, f, "must be a number");
		return -1;
	}
	if (!(x >= 0 && x <= SHEET_MAX_COEF_MILLI / 1000.0)) {
		err_add(errs, f, "out of range (0..%u)", SHEET_MAX_COEF_MILLI / 1000);
		return -1;
	}
	double m = x * 1000.0;
	double r = (double)(uint32_t)(m + 0.5);
	double diff = m - r;
	if (diff > 1e-6 || diff < -1e-6) {
		err_add(errs, f, "at most 3 decimals");
		return -1;
	}
	*out = (uint32_t)r;
	return 1;
}

static void
get_b64(json_t *ev, const char *key, uint8_t *buf, size_t max, size_t *len,
        struct sheet_errors *errs)
{
	char f[40];
	json_t *v = json_object_get(ev, key);
	if (!v)
		return;
	field_name(f, sizeof(f), "evidence", key);
	if (!json_is_string(v)) {
		err_add(errs, f, "must be a base64 string");
		return;
	}
	int r = b64_decode(json_string_value(v), json_string_length(v), buf, max, len);
	if (r == -E2BIG)
		err_add(errs, f, "too long (at most %zu bytes)", max);
	else if (r < 0)
		err_add(errs, f, "not base64");
}

/* A line's quantity: 1 to SHEET_MAX_QUANTITY is checked later. */
static void
get_quantity(json_t *l, const char *p, uint32_t *out, struct sheet_errors *errs)
{
	int64_t v;
	if (get_int(l, p, "quantity", 0, UINT32_MAX, &v, errs) > 0)
		*out = (uint32_t)v;
}

/* One line: {"kind": ...} and the keys of its kind ("kind" may be left
 * out in model 1's "acts", where every line is an act). */
static void
parse_line(json_t *a, const char *list, size_t i, struct sheet_line *l, struct sheet_errors *errs)
{
	static const char *const act_keys[] = { "kind", "date", "code", "coefficient", "amount" };
	static const char *const med_keys[] = { "kind", "date", "cip13", "service", "quantity",
		                                "unit_price", "amount" };
	static const char *const dev_keys[] = { "kind", "date", "lpp", "quantity", "unit_price",
		                                "amount" };
	char p[24], f[40], kind[16];
	snprintf(p, sizeof(p), "%s[%zu]", list, i);
	if (!json_is_object(a)) {
		err_add(errs, p, "must be an object");
		return;
	}
	l->kind = SHEET_LINE_ACT;
	int r = get_str(a, p, "kind", kind, sizeof(kind), errs);
	if (r < 0)
		return;
	if (r > 0) {
		int k = sheet_line_kind_parse(kind);
		if (k < 0) {
			field_name(f, sizeof(f), p, "kind");
			err_add(errs, f, "unknown kind (act, medicine, device)");
			return;
		}
		l->kind = (enum sheet_line_kind)k;
	} else if (strcmp(list, "lines") == 0) {
		field_name(f, sizeof(f), p, "kind");
		err_add(errs, f, "missing (act, medicine, device)");
		return;
	}
	get_date(a, p, "date", &l->date, errs);
	get_int(a, p, "amount", INT64_MIN, INT64_MAX, &l->amount, errs);
	switch (l->kind) {
	case SHEET_LINE_ACT:
		check_keys(a, p, act_keys, N(act_keys), errs);
		get_str(a, p, "code", l->code, sizeof(l->code), errs);
		get_coef(a, p, &l->coef_milli, errs);
		break;
	case SHEET_LINE_MEDICINE:
		check_keys(a, p, med_keys, N(med_keys), errs);
		get_str(a, p, "cip13", l->code, sizeof(l->code), errs);
		get_str(a, p, "service", l->service, sizeof(l->service), errs);
		get_quantity(a, p, &l->quantity, errs);
		get_int(a, p, "unit_price", INT64_MIN, INT64_MAX, &l->unit_price, errs);
		break;
	case SHEET_LINE_DEVICE:
		check_keys(a, p, dev_keys, N(dev_keys), errs);
		get_str(a, p, "lpp", l->code, sizeof(l->code), errs);
		get_quantity(a, p, &l->quantity, errs);
		get_int(a, p, "unit_price", INT64_MIN, INT64_MAX, &l->unit_price, errs);
		break;
	}
}

/* "lines" (model 2) or "acts" (model 1's form: acts only, kept for old
 * drafts and tills); not both. */
static void
parse_lines(json_t *obj, struct sheet *s, struct sheet_errors *errs)
{
	json_t *lines = json_object_get(obj, "lines"), *acts = json_object_get(obj, "acts");
	const char *key = lines ? "lines" : "acts";
	json_t *arr = lines ? lines : acts;
	if (lines && acts) {
		err_add(errs, "acts", "give the lines once: \"lines\" (or model 1's \"acts\")");
		return;
	}
	if (!arr)
		return;
	if (!json_is_array(arr)) {
		err_add(errs, key, "must be an array");
	} else if (json_array_size(arr) > SHEET_MAX_LINES) {
		err_add(errs, key, "too many lines (%zu, at most %d)", json_array_size(arr),
		        SHEET_MAX_LINES);
	} else {
		s->nlines = json_array_size(arr);
		for (size_t i = 0; i < s->nlines; i++) {
			s->lines[i] = (struct sheet_line){ .date = SHEET_NO_DATE };
			parse_line(json_array_get(arr, i), key, i, &s->lines[i], errs);
		}
	}
}

/* "amc": true/false (model 1's flag) or {"id": ..., "tiers_payant": ...}. */
static void
parse_amc(json_t *obj, struct sheet *s, struct sheet_errors *errs)
{
	static const char *const amc_keys[] = { "id", "tiers_payant" };
	json_t *v = json_object_get(obj, "amc");
	if (!v)
		return;
	if (json_is_boolean(v)) {
		s->amc = json_is_true(v);
		return;
	}
	if (!json_is_object(v)) {
		err_add(errs, "amc", "must be an object {id, tiers_payant} (or true/false)");
		return;
	}
	s->amc = true;
	check_keys(v, "amc", amc_keys, N(amc_keys), errs);
	get_str(v, "amc", "id", s->amc_id, sizeof(s->amc_id), errs);
	json_t *tp = json_object_get(v, "tiers_payant");
	if (tp && !json_is_boolean(tp))
		err_add(errs, "amc.tiers_payant", "must be true or false");
	else
		s->amc_tiers_payant = json_is_true(tp);
}

/* Model 2's medical context: pathway, exemption, references. */
static void
parse_context(json_t *obj, struct sheet *s, struct sheet_errors *errs)
{
	char buf[32];
	int64_t v;
	if (get_int(obj, NULL, "v", SHEET_VERSION_1, SHEET_VERSION_2, &v, errs) > 0)
		s->version = (uint32_t)v;
	if (get_str(obj, NULL, "pathway", buf, sizeof(buf), errs) > 0) {
		int p = sheet_pathway_parse(buf);
		if (p < 0)
			err_add(errs, "pathway", "unknown care pathway (medecin_traitant, "
			                         "new_medecin_traitant, substitute, referred, direct_access, "
			                         "emergency, away_from_home, outside)");
		else
			s->pathway = (enum sheet_pathway)p;
	}
	get_str(obj, NULL, "referrer_id", s->referrer_id, sizeof(s->referrer_id), errs);
	if (get_str(obj, NULL, "exemption", buf, sizeof(buf), errs) > 0) {
		int x = sheet_exemption_parse(buf);
		if (x < 0)
			err_add(errs, "exemption", "unknown exemption (ald, invalidity, prevention, other)");
		else
			s->exemption = (enum sheet_exemption)x;
	}
	get_str(obj, NULL, "at_number", s->at_number, sizeof(s->at_number), errs);
	get_date(obj, NULL, "maternity_date", &s->maternity_date, errs);
}

int
sheet_from_json(json_t *obj, struct sheet *s, struct sheet_errors *errs)
{
	static const char *const top[] = {
		"id", "terminal_id", "care_date", "seq", "nir", "birth_date", "birth_rank", "insurer",
		"practitioner_id", "structure_id", "prescriber", "insurance", "at_date", "acts",
		"totals", "amc", "tiers_payant", "mode", "evidence", "due_date", "created",
		"v", "lines", "pathway", "referrer_id", "exemption", "at_number", "maternity_date",
	};
	static const char *const ins_keys[] = { "regime", "caisse", "centre" };
	static const char *const pre_keys[] = { "id", "date" };
	static const char *const tot_keys[] = { "total", "amo", "amc", "patient" };
	static const char *const ev_keys[] = { "card_serial", "read_at", "device_answer",
		                               "credential" };
	struct sheet_errors local;
	bool bad = false;
	int64_t v;
	char buf[32];
	if (!errs)
		errs = &local;
	memset(errs, 0, sizeof(*errs));
	if (!json_is_object(obj)) {
		err_add(errs, "sheet", "must be a JSON object");
		return -EINVAL;
	}
	check_keys(obj, NULL, top, N(top), errs);
	get_str(obj, NULL, "id", s->id, sizeof(s->id), errs);
	get_str(obj, NULL, "terminal_id", s->terminal_id, sizeof(s->terminal_id), errs);
	get_date(obj, NULL, "care_date", &s->care_date, errs);
	if (get_int(obj, NULL, "seq", 0, UINT32_MAX, &v, errs) > 0)
		s->seq = (uint32_t)v;
	get_str(obj, NULL, "nir", s->nir, sizeof(s->nir), errs);
	get_str(obj, NULL, "birth_date", s->birth_date, sizeof(s->birth_date), errs);
	if (get_int(obj, NULL, "birth_rank", 0, 9, &v, errs) > 0)
		s->birth_rank = (uint32_t)v;
	json_t *ins = get_obj(obj, "insurer", errs, &bad);
	if (ins) {
		check_keys(ins, "insurer", ins_keys, N(ins_keys), errs);
		get_str(ins, "insurer", "regime", s->regime, sizeof(s->regime), errs);
		get_str(ins, "insurer", "caisse", s->caisse, sizeof(s->caisse), errs);
		get_str(ins, "insurer", "centre", s->centre, sizeof(s->centre), errs);
	}
	get_str(obj, NULL, "practitioner_id", s->practitioner_id, sizeof(s->practitioner_id), errs);
	get_str(obj, NULL, "structure_id", s->structure_id, sizeof(s->structure_id), errs);
	json_t *pre = get_obj(obj, "prescriber", errs, &bad);
	if (pre) {
		check_keys(pre, "prescriber", pre_keys, N(pre_keys), errs);
		get_str(pre, "prescriber", "id", s->prescriber_id, sizeof(s->prescriber_id), errs);
		get_date(pre, "prescriber", "date", &s->prescription_date, errs);
	}
	if (get_str(obj, NULL, "insurance", buf, sizeof(buf), errs) > 0) {
		int i = sheet_insurance_parse(buf);
		if (i < 0)
			err_add(errs, "insurance", "unknown insurance type (maladie, maternite, at_mp, smg)");
		else
			s->insurance = (enum sheet_insurance)i;
	}
	get_date(obj, NULL, "at_date", &s->at_date, errs);
	parse_context(obj, s, errs);
	parse_lines(obj, s, errs);
	json_t *tot = get_obj(obj, "totals", errs, &bad);
	if (tot) {
		check_keys(tot, "totals", tot_keys, N(tot_keys), errs);
		get_int(tot, "totals", "total", INT64_MIN, INT64_MAX, &s->total, errs);
		get_int(tot, "totals", "amo", INT64_MIN, INT64_MAX, &s->amo, errs);
		get_int(tot, "totals", "amc", INT64_MIN, INT64_MAX, &s->amc_amount, errs);
		get_int(tot, "totals", "patient", INT64_MIN, INT64_MAX, &s->patient, errs);
	}
	parse_amc(obj, s, errs);
	get_bool(obj, "tiers_payant", &s->tiers_payant, errs);
	if (get_str(obj, NULL, "mode", buf, sizeof(buf), errs) > 0) {
		int m = sheet_mode_parse(buf);
		if (m < 0)
			err_add(errs, "mode", "unknown mode (physical, digital-nfc, digital-qr, degraded)");
		else
			s->mode = (enum sheet_mode)m;
	}
	json_t *ev = get_obj(obj, "evidence", errs, &bad);
	if (ev) {
		check_keys(ev, "evidence", ev_keys, N(ev_keys), errs);
		get_str(ev, "evidence", "card_serial", s->evidence.card_serial,
		        sizeof(s->evidence.card_serial), errs);
		get_int(ev, "evidence", "read_at", 0, INT64_MAX, &s->evidence.read_at, errs);
		get_b64(ev, "device_answer", s->evidence.device_answer, SHEET_EVIDENCE_MAX,
		        &s->evidence.device_answer_len, errs);
		get_b64(ev, "credential", s->evidence.credential, SHEET_CREDENTIAL_MAX,
		        &s->evidence.credential_len, errs);
	}
	get_date(obj, NULL, "due_date", &s->due_date, errs);
	get_int(obj, NULL, "created", 0, INT64_MAX, &s->created, errs);
	(void)bad; /* a wrong type was reported where it was found */
	return errs->n ? -EINVAL : 0;
}

/* ------------------------------------------------------------------ */
/* JSON out */

static int
set_date(json_t *o, const char *key, int32_t d)
{
	char buf[16];
	if (d == SHEET_NO_DATE || holidays_format(d, buf, sizeof(buf)) < 0)
		return 0;
	return json_object_set_new(o, key, json_string(buf));
}

static int
set_str(json_t *o, const char *key, const char *v)
{
	return v[0] ? json_object_set_new(o, key, json_string(v)) : 0;
}

static int
set_b64(json_t *o, const char *key, const uint8_t *p, size_t n, size_t max)
{
	if (!n)
		return 0;
	if (n > max)
		n = max;
	char *buf = b64_encode_alloc(p, n);
	if (!buf)
		return -1;
	int r = json_object_set_new(o, key, json_string(buf));
	free(buf);
	return r;
}

static json_t *
line_to_json(const struct sheet_line *l)
{
	json_t *ja = json_object();
	int r = 0;
	if (!ja)
		return NULL;
	r |= json_object_set_new(ja, "kind", json_string(sheet_line_kind_name(l->kind) ?
	                                                         sheet_line_kind_name(l->kind) : "?"));
	r |= set_date(ja, "date", l->date);
	switch (l->kind) {
	case SHEET_LINE_MEDICINE:
		r |= set_str(ja, "cip13", l->code);
		r |= set_str(ja, "service", l->service);
		break;
	case SHEET_LINE_DEVICE:
		r |= set_str(ja, "lpp", l->code);
		break;
	default:
		r |= set_str(ja, "code", l->code);
		if (l->coef_milli % 1000 == 0)
			r |= json_object_set_new(ja, "coefficient", json_integer(l->coef_milli / 1000));
		else
			r |= json_object_set_new(ja, "coefficient", json_real(l->coef_milli / 1000.0));
		break;
	}
	if (l->kind != SHEET_LINE_ACT) {
		r |= json_object_set_new(ja, "quantity", json_integer(l->quantity));
		r |= json_object_set_new(ja, "unit_price", json_integer(l->unit_price));
	}
	r |= json_object_set_new(ja, "amount", json_integer(l->amount));
	if (r) {
		json_decref(ja);
		return NULL;
	}
	return ja;
}

json_t *
sheet_to_json(const struct sheet *s)
{
	json_t *o = json_object();
	json_t *lines = json_array();
	if (!o || !lines)
		goto fail;
	int r = 0;
	r |= json_object_set_new(o, "v", json_integer(s->version));
	r |= set_str(o, "id", s->id);
	r |= set_str(o, "terminal_id", s->terminal_id);
	r |= set_date(o, "care_date", s->care_date);
	if (s->seq)
		r |= json_object_set_new(o, "seq", json_integer(s->seq));
	r |= set_str(o, "nir", s->nir);
	r |= set_str(o, "birth_date", s->birth_date);
	if (s->birth_rank)
		r |= json_object_set_new(o, "birth_rank", json_integer(s->birth_rank));
	if (s->regime[0] || s->caisse[0] || s->centre[0]) {
		json_t *ins = json_object();
		if (!ins)
			goto fail;
		r |= json_object_set_new(o, "insurer", ins);
		r |= set_str(ins, "regime", s->regime);
		r |= set_str(ins, "caisse", s->caisse);
		r |= set_str(ins, "centre", s->centre);
	}
	r |= set_str(o, "practitioner_id", s->practitioner_id);
	r |= set_str(o, "structure_id", s->structure_id);
	if (s->prescriber_id[0] || s->prescription_date != SHEET_NO_DATE) {
		json_t *pre = json_object();
		if (!pre)
			goto fail;
		r |= json_object_set_new(o, "prescriber", pre);
		r |= set_str(pre, "id", s->prescriber_id);
		r |= set_date(pre, "date", s->prescription_date);
	}
	if (sheet_insurance_name(s->insurance))
		r |= json_object_set_new(o, "insurance", json_string(sheet_insurance_name(s->insurance)));
	r |= set_date(o, "at_date", s->at_date);
	r |= set_str(o, "at_number", s->at_number);
	r |= set_date(o, "maternity_date", s->maternity_date);
	if (sheet_pathway_name(s->pathway))
		r |= json_object_set_new(o, "pathway", json_string(sheet_pathway_name(s->pathway)));
	r |= set_str(o, "referrer_id", s->referrer_id);
	if (sheet_exemption_name(s->exemption))
		r |= json_object_set_new(o, "exemption", json_string(sheet_exemption_name(s->exemption)));
	for (size_t i = 0; i < s->nlines && i < SHEET_MAX_LINES; i++) {
		json_t *ja = line_to_json(&s->lines[i]);
		if (!ja || json_array_append_new(lines, ja) < 0)
			goto fail;
	}
	r |= json_object_set_new(o, "lines", lines);
	lines = NULL;
	r |= json_object_set_new(o, "totals",
	                         json_pack("{s:I,s:I,s:I,s:I}", "total", (json_int_t)s->total, "amo",
	                                   (json_int_t)s->amo, "amc", (json_int_t)s->amc_amount,
	                                   "patient", (json_int_t)s->patient));
	if (!s->amc || (s->version == SHEET_VERSION_1 && !s->amc_id[0] && !s->amc_tiers_payant))
		r |= json_object_set_new(o, "amc", json_boolean(s->amc));
	else {
		json_t *amc = json_pack("{s:b}", "tiers_payant", s->amc_tiers_payant);
		r |= json_object_set_new(o, "amc", amc);
		if (amc)
			r |= set_str(amc, "id", s->amc_id);
	}
	r |= json_object_set_new(o, "tiers_payant", json_boolean(s->tiers_payant));
	if (sheet_mode_name(s->mode))
		r |= json_object_set_new(o, "mode", json_string(sheet_mode_name(s->mode)));
	const struct sheet_evidence *e = &s->evidence;
	if (e->card_serial[0] || e->read_at || e->device_answer_len || e->credential_len) {
		json_t *ev = json_object();
		if (!ev)
			goto fail;
		r |= json_object_set_new(o, "evidence", ev);
		r |= set_str(ev, "card_serial", e->card_serial);
		if (e->read_at)
			r |= json_object_set_new(ev, "read_at", json_integer(e->read_at));
		r |= set_b64(ev, "device_answer", e->device_answer, e->device_answer_len,
		             SHEET_EVIDENCE_MAX);
		r |= set_b64(ev, "credential", e->credential, e->credential_len, SHEET_CREDENTIAL_MAX);
	}
	r |= set_date(o, "due_date", s->due_date);
	if (s->created)
		r |= json_object_set_new(o, "created", json_integer(s->created));
	if (r)
		goto fail;
	return o;
fail:
	json_decref(lines);
	json_decref(o);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* validation */

/* An act lies within the two years up to the care date. */
static void
check_act_date(int32_t d, int32_t care, const char *field, struct sheet_errors *errs)
{
	if (d > care)
		err_add(errs, field, "after the care date");
	else if (d < care - SHEET_MAX_AGE_DAYS)
		err_add(errs, field, "more than %d days before the care date", SHEET_MAX_AGE_DAYS);
}

/* One line's own rules; its amount into *sum unless it is insane
 * (then *sum_ok = false: the totals are not compared). */
static void
validate_line(const struct sheet *s, size_t i, int64_t *sum, bool *sum_ok,
              struct sheet_errors *errs)
{
	const struct sheet_line *l = &s->lines[i];
	const char *list = s->version == SHEET_VERSION_1 ? "acts" : "lines";
	char f[40];
#define LF(key) (snprintf(f, sizeof(f), "%s[%zu].%s", list, i, key), f)
	if (l->date == SHEET_NO_DATE)
		err_add(errs, LF("date"), "missing");
	else if (s->care_date != SHEET_NO_DATE)
		check_act_date(l->date, s->care_date, LF("date"), errs);
	switch (l->kind) {
	case SHEET_LINE_ACT:
		if (!l->code[0])
			err_add(errs, LF("code"), "missing");
		else if (!sheet_act_code_valid(l->code))
			err_add(errs, LF("code"), "not an NGAP key (1-5 capitals), a CCAM code (AAAA999) "
			                          "or a pharmacy service code (PH1 ... MX7)");
		else if (s->version == SHEET_VERSION_1 && sheet_service_code_valid(l->code))
			err_add(errs, LF("code"), "a service code needs model 2");
		if (l->coef_milli == 0 || l->coef_milli > SHEET_MAX_COEF_MILLI)
			err_add(errs, LF("coefficient"), "must be more than 0 and at most %u",
			        SHEET_MAX_COEF_MILLI / 1000);
		break;
	case SHEET_LINE_MEDICINE:
	case SHEET_LINE_DEVICE:
		if (s->version == SHEET_VERSION_1) {
			err_add(errs, LF("kind"), "model 1 has acts only");
			break;
		}
		if (l->kind == SHEET_LINE_MEDICINE) {
			if (!l->code[0])
				err_add(errs, LF("cip13"), "missing");
			else if (!sheet_cip13_valid(l->code))
				err_add(errs, LF("cip13"), "not a CIP13 (13 digits from 3400, EAN-13 check "
				                           "digit)");
			if (!l->service[0])
				err_add(errs, LF("service"), "missing: the service code of its rate");
			else if (!sheet_service_code_valid(l->service))
				err_add(errs, LF("service"), "not a pharmacy service code (PH1, PH2, PH4, "
				                             "PH7, MX1, MX4, MX7)");
		} else if (!l->code[0]) {
			err_add(errs, LF("lpp"), "missing");
		} else if (!sheet_lpp_valid(l->code)) {
			err_add(errs, LF("lpp"), "not an LPP code (7 digits)");
		}
		if (l->quantity == 0 || l->quantity > SHEET_MAX_QUANTITY) {
			err_add(errs, LF("quantity"), "must be 1 to %u", SHEET_MAX_QUANTITY);
			*sum_ok = false;
		}
		if (l->unit_price < 0 || l->unit_price > SHEET_MAX_AMOUNT) {
			err_add(errs, LF("unit_price"), "must be 0 to %lld cents", SHEET_MAX_AMOUNT);
			*sum_ok = false;
		}
		break;
	default:
		err_add(errs, LF("kind"), "unknown kind");
		*sum_ok = false;
		return;
	}
	if (l->amount < 0) {
		err_add(errs, LF("amount"), "negative amount");
		*sum_ok = false;
	} else if (l->amount > SHEET_MAX_AMOUNT) {
		err_add(errs, LF("amount"), "over %lld cents", SHEET_MAX_AMOUNT);
		*sum_ok = false;
	} else if (l->kind != SHEET_LINE_ACT && *sum_ok &&
	           l->amount != (int64_t)l->quantity * l->unit_price) {
		err_add(errs, LF("amount"), "%lld cents, but %u × %lld = %lld", (long long)l->amount,
		        l->quantity, (long long)l->unit_price, (long long)l->quantity * l->unit_price);
		*sum_ok = false;
	} else {
		*sum += l->amount;
	}
#undef LF
}

static void
validate_lines(const struct sheet *s, const struct sheet_check *c, struct sheet_errors *errs)
{
	const char *list = s->version == SHEET_VERSION_1 ? "acts" : "lines";
	int64_t sum = 0;
	bool sum_ok = true;
	if (s->nlines == 0 && !c->draft)
		err_add(errs, list, s->version == SHEET_VERSION_1 ? "no acts" : "no lines");
	if (s->nlines > SHEET_MAX_LINES) {
		err_add(errs, list, "too many lines (at most %d)", SHEET_MAX_LINES);
		return;
	}
	for (size_t i = 0; i < s->nlines; i++) {
		bool ok = true;
		validate_line(s, i, &sum, &ok, errs);
		sum_ok &= ok;
	}
	if (c->draft && s->nlines == 0)
		return;
	/* totals: only compared when every part is itself sane */
	const struct {
		const char *name;
		int64_t v;
	} parts[] = { { "totals.total", s->total },
		      { "totals.amo", s->amo },
		      { "totals.amc", s->amc_amount },
		      { "totals.patient", s->patient } };
	for (size_t i = 0; i < N(parts); i++) {
		if (parts[i].v < 0) {
			err_add(errs, parts[i].name, "negative amount");
			sum_ok = false;
		} else if (parts[i].v > SHEET_MAX_AMOUNT * SHEET_MAX_LINES) {
			err_add(errs, parts[i].name, "out of range");
			sum_ok = false;
		}
	}
	if (!s->amc && s->amc_amount != 0)
		err_add(errs, "totals.amc", "an AMC part without an AMC");
	if (!sum_ok)
		return;
	if (s->total != sum)
		err_add(errs, "totals.total", "%lld cents, but the %s add up to %lld",
		        (long long)s->total, s->version == SHEET_VERSION_1 ? "acts" : "lines",
		        (long long)sum);
	else if (s->amo + s->amc_amount + s->patient != s->total)
		err_add(errs, "totals", "amo + amc + patient = %lld cents, not the total %lld",
		        (long long)(s->amo + s->amc_amount + s->patient), (long long)s->total);
}

/* What only model 2 carries must be absent from a model 1 sheet. */
static void
validate_v1(const struct sheet *s, struct sheet_errors *errs)
{
	if (s->at_number[0])
		err_add(errs, "at_number", "needs model 2");
	if (s->maternity_date != SHEET_NO_DATE)
		err_add(errs, "maternity_date", "needs model 2");
	if (s->pathway != SHEET_PATHWAY_NONE)
		err_add(errs, "pathway", "needs model 2");
	if (s->referrer_id[0])
		err_add(errs, "referrer_id", "needs model 2");
	if (s->exemption != SHEET_EXEMPT_NONE)
		err_add(errs, "exemption", "needs model 2");
	if (s->amc_id[0] || s->amc_tiers_payant)
		err_add(errs, "amc", "an AMC number or AMC tiers payant needs model 2");
}

/* Model 2's medical context and AMC. */
static void
validate_context(const struct sheet *s, struct sheet_errors *errs)
{
	if (s->at_number[0] && s->insurance != SHEET_INS_AT_MP)
		err_add(errs, "at_number", "only for at_mp");
	else if (s->at_number[0] && (strlen(s->at_number) > SHEET_AT_NUMBER_MAX ||
	                             !upper_digits(s->at_number)))
		err_add(errs, "at_number", "must be 1 to %d capitals or digits", SHEET_AT_NUMBER_MAX);
	if (s->insurance == SHEET_INS_MATERNITE) {
		if (s->maternity_date == SHEET_NO_DATE)
			err_add(errs, "maternity_date", "missing: maternite needs the presumed start of "
			                                "pregnancy");
		else if (s->care_date != SHEET_NO_DATE && s->maternity_date > s->care_date)
			err_add(errs, "maternity_date", "after the care date");
		else if (s->care_date != SHEET_NO_DATE &&
		         s->maternity_date < s->care_date - SHEET_MAX_AGE_DAYS)
			err_add(errs, "maternity_date", "more than %d days before the care date",
			        SHEET_MAX_AGE_DAYS);
	} else if (s->maternity_date != SHEET_NO_DATE) {
		err_add(errs, "maternity_date", "only for maternite");
	}
	if (s->pathway != SHEET_PATHWAY_NONE && !sheet_pathway_name(s->pathway))
		err_add(errs, "pathway", "unknown care pathway");
	if (s->pathway == SHEET_PATHWAY_REFERRED) {
		if (!s->referrer_id[0])
			err_add(errs, "referrer_id", "missing: referred needs the referring médecin "
			                             "traitant's id");
		else if (!id_digits(s->referrer_id, 9, 11))
			err_add(errs, "referrer_id", "must be 9 or 11 digits");
	} else if (s->referrer_id[0]) {
		err_add(errs, "referrer_id", "only for the referred pathway");
	}
	if (s->exemption != SHEET_EXEMPT_NONE && !sheet_exemption_name(s->exemption))
		err_add(errs, "exemption", "unknown exemption");
	else if (s->exemption != SHEET_EXEMPT_NONE && s->insurance != SHEET_INS_NONE &&
	         s->insurance != SHEET_INS_MALADIE)
		err_add(errs, "exemption", "only under maladie (%s already pays in full)",
		        sheet_insurance_name(s->insurance) ? sheet_insurance_name(s->insurance) : "?");
	if (s->amc_id[0] && !s->amc)
		err_add(errs, "amc.id", "an AMC number without an AMC");
	else if (s->amc_id[0] && !id_digits(s->amc_id, 8, 10) && !all_digits(s->amc_id, 9))
		err_add(errs, "amc.id", "must be 8 to 10 digits");
	else if (s->amc_tiers_payant && !s->amc_id[0])
		err_add(errs, "amc.id", "missing: AMC tiers payant needs the AMC's number");
}

static void
validate_evidence(const struct sheet *s, const struct sheet_check *c, struct sheet_errors *errs)
{
	const struct sheet_evidence *e = &s->evidence;
	bool card = e->card_serial[0] || e->read_at;
	bool device = e->device_answer_len > 0;
	bool cred = e->credential_len > 0;
	switch (s->mode) {
	case SHEET_MODE_NONE:
		err_add(errs, "mode", "missing");
		return;
	case SHEET_MODE_PHYSICAL:
		if (device || cred) {
			err_add(errs, device ? "evidence.device_answer" : "evidence.credential",
			        "a physical card has no device answer or credential");
		} else if (!card) {
			err_add(errs, "evidence", "missing: no patient evidence (card serial and read time)");
		} else {
			if (!e->card_serial[0])
				err_add(errs, "evidence.card_serial", "missing");
			else if (!printable(e->card_serial))
				err_add(errs, "evidence.card_serial", "not printable");
			if (!e->read_at)
				err_add(errs, "evidence.read_at", "missing");
			else if (e->read_at > c->now + 300)
				err_add(errs, "evidence.read_at", "in the future");
		}
		return;
	case SHEET_MODE_DIGITAL_NFC:
	case SHEET_MODE_DIGITAL_QR:
		if (card)
			err_add(errs, "evidence.card_serial",
			        "a digital card has no card serial (its evidence is the device answer)");
		else if (!device)
			err_add(errs, "evidence", "missing: no patient evidence (the device-signed answer)");
		else if (e->device_answer_len > SHEET_EVIDENCE_MAX ||
		         e->credential_len > SHEET_CREDENTIAL_MAX)
			err_add(errs, "evidence", "too long");
		return;
	case SHEET_MODE_DEGRADED:
		if (card || device || cred)
			err_add(errs, "evidence", "a degraded sheet is made without the card: no evidence");
		return;
	}
	err_add(errs, "mode", "unknown mode");
}

int
sheet_validate(const struct sheet *s, const struct sheet_check *c, struct sheet_errors *errs)
{
	struct sheet_errors local;
	if (!errs)
		errs = &local;
	memset(errs, 0, sizeof(*errs));
	if (!s->id[0])
		err_add(errs, "id", "missing");
	else if (!uuid_v4_valid(s->id))
		err_add(errs, "id", "not a lower-case UUID v4");
	if (!s->terminal_id[0])
		err_add(errs, "terminal_id", "missing");
	else if (!printable(s->terminal_id))
		err_add(errs, "terminal_id", "not printable");
	if (s->care_date == SHEET_NO_DATE)
		err_add(errs, "care_date", "missing");
	else if (s->care_date > c->today)
		err_add(errs, "care_date", "in the future");
	else if (s->care_date < c->today - SHEET_MAX_AGE_DAYS)
		err_add(errs, "care_date", "more than %d days old", SHEET_MAX_AGE_DAYS);
	if (!s->nir[0])
		err_add(errs, "nir", "missing");
	else if (strlen(s->nir) != 15)
		err_add(errs, "nir", "must be 15 characters (13 and a 2-digit key)");
	else if (!sheet_nir_valid(s->nir))
		err_add(errs, "nir", "bad NIR: the key does not match (or not a NIR)");
	if (s->birth_date[0] && !holidays_date_shape(s->birth_date))
		err_add(errs, "birth_date", "not YYYY-MM-DD");
	if (s->birth_rank > 9)
		err_add(errs, "birth_rank", "must be 1 to 9");
	if (!s->regime[0]) {
		if (!c->draft)
			err_add(errs, "insurer.regime", "missing");
	} else if (!all_digits(s->regime, 2))
		err_add(errs, "insurer.regime", "must be 2 digits");
	if (!s->caisse[0]) {
		if (!c->draft)
			err_add(errs, "insurer.caisse", "missing");
	} else if (!all_digits(s->caisse, 3))
		err_add(errs, "insurer.caisse", "must be 3 digits");
	if (!s->centre[0]) {
		if (!c->draft)
			err_add(errs, "insurer.centre", "missing");
	} else if (!all_digits(s->centre, 4))
		err_add(errs, "insurer.centre", "must be 4 digits");
	if (!s->practitioner_id[0]) {
		if (!c->draft)
			err_add(errs, "practitioner_id", "missing");
	} else if (!id_digits(s->practitioner_id, 9, 11)) {
		err_add(errs, "practitioner_id", "must be 9 (Assurance Maladie) or 11 (RPPS) digits");
	}
	if (s->structure_id[0] && !id_digits(s->structure_id, 9, 14))
		err_add(errs, "structure_id", "must be 9 (FINESS) or 14 (SIRET) digits");
	if (s->prescriber_id[0] && !id_digits(s->prescriber_id, 9, 11))
		err_add(errs, "prescriber.id", "must be 9 or 11 digits");
	if (s->prescription_date != SHEET_NO_DATE) {
		if (!s->prescriber_id[0])
			err_add(errs, "prescriber.date", "a prescription date without a prescriber");
		else if (s->care_date != SHEET_NO_DATE && s->prescription_date > s->care_date)
			err_add(errs, "prescriber.date", "after the care date");
	}
	if (s->insurance == SHEET_INS_NONE) {
		if (!c->draft)
			err_add(errs, "insurance", "missing");
	} else if (!sheet_insurance_name(s->insurance)) {
		err_add(errs, "insurance", "unknown insurance type");
	}
	if (s->insurance == SHEET_INS_AT_MP) {
		if (s->at_date == SHEET_NO_DATE)
			err_add(errs, "at_date", "missing: at_mp needs the date of the accident or disease");
		else if (s->care_date != SHEET_NO_DATE && s->at_date > s->care_date)
			err_add(errs, "at_date", "after the care date");
	} else if (s->at_date != SHEET_NO_DATE) {
		err_add(errs, "at_date", "only for at_mp");
	}
	if (s->version == SHEET_VERSION_1)
		validate_v1(s, errs);
	else if (s->version == SHEET_VERSION_2)
		validate_context(s, errs);
	else
		err_add(errs, "v", "unknown model version %u", s->version);
	validate_lines(s, c, errs);
	validate_evidence(s, c, errs);
	if (!s->created)
		err_add(errs, "created", "missing");
	else if (s->created > c->now + 300)
		err_add(errs, "created", "in the future");
	if (s->due_date == SHEET_NO_DATE) {
		if (!c->draft)
			err_add(errs, "due_date", "missing");
	} else if (s->care_date != SHEET_NO_DATE && s->due_date <= s->care_date) {
		err_add(errs, "due_date", "not after the care date");
	}
	return errs->n ? -EINVAL : 0;
}

int
sheet_set_due_date(struct sheet *s, unsigned holiday_flags)
{
	if (s->care_date == SHEET_NO_DATE)
		return -EINVAL;
	int32_t due;
	int r = holidays_due_date(s->care_date, s->tiers_payant, holiday_flags, &due);
	if (r < 0)
		return r;
	s->due_date = due;
	return 0;
}

/* ------------------------------------------------------------------ */
/* the CBOR field order */

enum fkind { F_TEXT, F_UINT, F_SINT, F_BOOL, F_BYTES, F_DATE, F_MAP, F_LINES };

struct field {
	const char *key;
	enum fkind kind;
	const char *s;
	uint64_t u;
	int64_t i;
	bool b;
	const uint8_t *p;
	size_t n;
	int32_t date;
	struct field *map; /* F_MAP: n fields */
};

/* RFC 8949 §4.2.1: keys sorted by their encoded bytes. For text keys the
 * head carries the length, so a shorter key comes first, then bytewise. */
static bool
key_before(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return la < lb;
	return memcmp(a, b, la) < 0;
}

static void
sort_fields(struct field *f, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct field t = f[i];
		size_t j = i;
		while (j > 0 && key_before(t.key, f[j - 1].key)) {
			f[j] = f[j - 1];
			j--;
		}
		f[j] = t;
	}
}

static int emit_map(const struct sheet *s, const struct sheet_encoder *e, void *ctx,
                    struct field *f, size_t n);

static int
emit_date(const struct sheet_encoder *e, void *ctx, int32_t d)
{
	char buf[16];
	int r = holidays_format(d, buf, sizeof(buf));
	return r < 0 ? r : e->text(ctx, buf, strlen(buf));
}

/* Model 1's acts: {code, date, amount, coef_milli}; model 2's lines add
 * "kind" and, for a medicine or a device, their own keys. */
static int
emit_lines(const struct sheet *s, const struct sheet_encoder *e, void *ctx)
{
	int r = e->array(ctx, s->nlines);
	for (size_t i = 0; r == 0 && i < s->nlines; i++) {
		const struct sheet_line *l = &s->lines[i];
		struct field lf[8];
		size_t n = 0;
		lf[n++] = (struct field){ .key = "date", .kind = F_DATE, .date = l->date };
		lf[n++] = (struct field){ .key = "amount", .kind = F_SINT, .i = l->amount };
		if (s->version != SHEET_VERSION_1)
			lf[n++] = (struct field){ .key = "kind", .kind = F_TEXT,
				                  .s = sheet_line_kind_name(l->kind) };
		switch (l->kind) {
		case SHEET_LINE_ACT:
			lf[n++] = (struct field){ .key = "code", .kind = F_TEXT, .s = l->code };
			lf[n++] = (struct field){ .key = "coef_milli", .kind = F_UINT, .u = l->coef_milli };
			break;
		case SHEET_LINE_MEDICINE:
		case SHEET_LINE_DEVICE:
			if (l->kind == SHEET_LINE_MEDICINE) {
				lf[n++] = (struct field){ .key = "cip13", .kind = F_TEXT, .s = l->code };
				lf[n++] = (struct field){ .key = "service", .kind = F_TEXT, .s = l->service };
			} else {
				lf[n++] = (struct field){ .key = "lpp", .kind = F_TEXT, .s = l->code };
			}
			lf[n++] = (struct field){ .key = "quantity", .kind = F_UINT, .u = l->quantity };
			lf[n++] = (struct field){ .key = "unit_price", .kind = F_SINT, .i = l->unit_price };
			break;
		default:
			return -EINVAL;
		}
		r = emit_map(s, e, ctx, lf, n);
	}
	return r ? r : e->array_end(ctx);
}

static int
emit_map(const struct sheet *s, const struct sheet_encoder *e, void *ctx, struct field *f,
         size_t n)
{
	sort_fields(f, n);
	int r = e->map(ctx, n);
	for (size_t i = 0; r == 0 && i < n; i++) {
		if ((r = e->text(ctx, f[i].key, strlen(f[i].key))) < 0)
			break;
		switch (f[i].kind) {
		case F_TEXT:
			r = e->text(ctx, f[i].s, strlen(f[i].s));
			break;
		case F_UINT:
			r = e->uint(ctx, f[i].u);
			break;
		case F_SINT:
			r = e->sint(ctx, f[i].i);
			break;
		case F_BOOL:
			r = e->boolean(ctx, f[i].b);
			break;
		case F_BYTES:
			r = e->bytes(ctx, f[i].p, f[i].n);
			break;
		case F_DATE:
			r = emit_date(e, ctx, f[i].date);
			break;
		case F_MAP:
			r = emit_map(s, e, ctx, f[i].map, f[i].n);
			break;
		case F_LINES:
			r = emit_lines(s, e, ctx);
			break;
		}
	}
	return r ? r : e->map_end(ctx);
}

#define ADD(...) (f[n++] = (struct field){ __VA_ARGS__ })

/* Model 2's keys (the ones model 1 does not have). */
static size_t
encode_v2_fields(const struct sheet *s, struct field *f, size_t n, struct field *amc)
{
	size_t namc = 0;
	if (s->at_number[0])
		ADD(.key = "at_number", .kind = F_TEXT, .s = s->at_number);
	if (s->maternity_date != SHEET_NO_DATE)
		ADD(.key = "maternity_date", .kind = F_DATE, .date = s->maternity_date);
	if (s->pathway != SHEET_PATHWAY_NONE)
		ADD(.key = "pathway", .kind = F_TEXT, .s = sheet_pathway_name(s->pathway));
	if (s->referrer_id[0])
		ADD(.key = "referrer_id", .kind = F_TEXT, .s = s->referrer_id);
	if (s->exemption != SHEET_EXEMPT_NONE)
		ADD(.key = "exemption", .kind = F_TEXT, .s = sheet_exemption_name(s->exemption));
	if (s->amc) {
		if (s->amc_id[0])
			amc[namc++] = (struct field){ .key = "id", .kind = F_TEXT, .s = s->amc_id };
		amc[namc++] = (struct field){ .key = "tiers_payant", .kind = F_BOOL,
			                      .b = s->amc_tiers_payant };
		ADD(.key = "amc", .kind = F_MAP, .map = amc, .n = namc);
	}
	return n;
}

int
sheet_encode(const struct sheet *s, const struct sheet_encoder *e, void *ctx)
{
	struct field f[40], ins[3], pre[2], tot[4], ev[4], amc[2];
	size_t n = 0, npre = 0, nev = 0;
	bool v1 = s->version == SHEET_VERSION_1;
	if (s->nlines > SHEET_MAX_LINES || s->evidence.device_answer_len > SHEET_EVIDENCE_MAX ||
	    s->evidence.credential_len > SHEET_CREDENTIAL_MAX ||
	    (s->version != SHEET_VERSION_1 && s->version != SHEET_VERSION_2) ||
	    (s->pathway != SHEET_PATHWAY_NONE && !sheet_pathway_name(s->pathway)) ||
	    (s->exemption != SHEET_EXEMPT_NONE && !sheet_exemption_name(s->exemption)))
		return -EINVAL;
	for (size_t i = 0; i < s->nlines; i++)
		if (!sheet_line_kind_name(s->lines[i].kind) ||
		    (v1 && s->lines[i].kind != SHEET_LINE_ACT))
			return -EINVAL;
	ins[0] = (struct field){ .key = "regime", .kind = F_TEXT, .s = s->regime };
	ins[1] = (struct field){ .key = "caisse", .kind = F_TEXT, .s = s->caisse };
	ins[2] = (struct field){ .key = "centre", .kind = F_TEXT, .s = s->centre };
	if (s->prescriber_id[0])
		pre[npre++] = (struct field){ .key = "id", .kind = F_TEXT, .s = s->prescriber_id };
	if (s->prescription_date != SHEET_NO_DATE)
		pre[npre++] = (struct field){ .key = "date", .kind = F_DATE, .date = s->prescription_date };
	tot[0] = (struct field){ .key = "total", .kind = F_SINT, .i = s->total };
	tot[1] = (struct field){ .key = "amo", .kind = F_SINT, .i = s->amo };
	tot[2] = (struct field){ .key = "amc", .kind = F_SINT, .i = s->amc_amount };
	tot[3] = (struct field){ .key = "patient", .kind = F_SINT, .i = s->patient };
	if (s->evidence.card_serial[0])
		ev[nev++] = (struct field){ .key = "card_serial", .kind = F_TEXT,
			                    .s = s->evidence.card_serial };
	if (s->evidence.read_at)
		ev[nev++] = (struct field){ .key = "read_at", .kind = F_UINT,
			                    .u = (uint64_t)s->evidence.read_at };
	if (s->evidence.device_answer_len)
		ev[nev++] = (struct field){ .key = "device_answer", .kind = F_BYTES,
			                    .p = s->evidence.device_answer,
			                    .n = s->evidence.device_answer_len };
	if (s->evidence.credential_len)
		ev[nev++] = (struct field){ .key = "credential", .kind = F_BYTES,
			                    .p = s->evidence.credential, .n = s->evidence.credential_len };

	ADD(.key = "v", .kind = F_UINT, .u = s->version);
	ADD(.key = "id", .kind = F_TEXT, .s = s->id);
	ADD(.key = "terminal_id", .kind = F_TEXT, .s = s->terminal_id);
	ADD(.key = "care_date", .kind = F_DATE, .date = s->care_date);
	ADD(.key = "seq", .kind = F_UINT, .u = s->seq);
	ADD(.key = "nir", .kind = F_TEXT, .s = s->nir);
	if (s->birth_date[0])
		ADD(.key = "birth_date", .kind = F_TEXT, .s = s->birth_date);
	if (s->birth_rank)
		ADD(.key = "birth_rank", .kind = F_UINT, .u = s->birth_rank);
	ADD(.key = "insurer", .kind = F_MAP, .map = ins, .n = 3);
	ADD(.key = "practitioner_id", .kind = F_TEXT, .s = s->practitioner_id);
	if (s->structure_id[0])
		ADD(.key = "structure_id", .kind = F_TEXT, .s = s->structure_id);
	if (npre)
		ADD(.key = "prescriber", .kind = F_MAP, .map = pre, .n = npre);
	ADD(.key = "insurance", .kind = F_UINT, .u = (uint64_t)s->insurance);
	if (s->at_date != SHEET_NO_DATE)
		ADD(.key = "at_date", .kind = F_DATE, .date = s->at_date);
	ADD(.key = v1 ? "acts" : "lines", .kind = F_LINES);
	ADD(.key = "totals", .kind = F_MAP, .map = tot, .n = 4);
	if (v1)
		ADD(.key = "amc", .kind = F_BOOL, .b = s->amc);
	else
		n = encode_v2_fields(s, f, n, amc);
	ADD(.key = "tiers_payant", .kind = F_BOOL, .b = s->tiers_payant);
	ADD(.key = "mode", .kind = F_TEXT, .s = sheet_mode_name(s->mode) ? sheet_mode_name(s->mode) : "");
	if (nev)
		ADD(.key = "evidence", .kind = F_MAP, .map = ev, .n = nev);
	ADD(.key = "due_date", .kind = F_DATE, .date = s->due_date);
	ADD(.key = "created", .kind = F_UINT, .u = (uint64_t)s->created);
	return emit_map(s, e, ctx, f, n);
}
#undef ADD
