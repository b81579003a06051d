/* Unit tests of protocol/sheet: a valid sheet passes; each kind of problem
 * gives exactly one error naming its field; NIR keys (computed here by
 * long division, not by the code under test); JSON round trip; UUIDs; the
 * CBOR field order, checked by walking the bytes a test encoder wrote. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/holidays.h"
#include "protocol/sheet.h"

/* Friday 15 March 2024 */
#define TODAY "2024-03-15"
#define NOW 1710500000LL

static const char base_json[] =
	"{\"id\": \"0f8e2a4c-1b3d-4e5f-9a7b-8c6d5e4f3a2b\","
	" \"terminal_id\": \"VT-0A1B2C3D4E5F\","
	" \"care_date\": \"" TODAY "\","
	" \"nir\": \"184127645108946\","
	" \"insurer\": {\"regime\": \"01\", \"caisse\": \"751\", \"centre\": \"0012\"},"
	" \"practitioner_id\": \"801234567\","
	" \"insurance\": \"maladie\","
	" \"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 1, \"amount\": 2650},"
	"          {\"kind\": \"act\", \"date\": \"2024-03-14\", \"code\": \"DEQP003\", \"coefficient\": 0.5, \"amount\": 1000}],"
	" \"totals\": {\"total\": 3650, \"amo\": 2555, \"amc\": 0, \"patient\": 1095},"
	" \"amc\": false, \"tiers_payant\": false,"
	" \"mode\": \"physical\","
	" \"evidence\": {\"card_serial\": \"0123456789\", \"read_at\": 1710499900},"
	" \"created\": 1710500000}";

static struct sheet_check
check_ctx(void)
{
	struct sheet_check c = { .now = NOW };
	ck_assert_int_eq(holidays_parse(TODAY, &c.today), 0);
	return c;
}

/* Parse base_json with a patch applied (keys of patch replace, null deletes),
 * set the due date, validate. Returns the number of errors; errs holds them. */
static int
run(const char *patch, struct sheet *s, struct sheet_errors *errs, bool draft)
{
	json_error_t je;
	json_t *o = json_loads(base_json, 0, &je);
	ck_assert_msg(o != NULL, "base: %s", je.text);
	if (patch) {
		json_t *p = json_loads(patch, 0, &je);
		ck_assert_msg(p != NULL, "patch %s: %s", patch, je.text);
		const char *k;
		json_t *v;
		json_object_foreach(p, k, v) {
			if (json_is_null(v))
				json_object_del(o, k);
			else
				json_object_set(o, k, v);
		}
		json_decref(p);
	}
	sheet_init(s);
	int r = sheet_from_json(o, s, errs);
	json_decref(o);
	if (r < 0) {
		ck_assert_uint_gt(errs->n, 0);
		return (int)errs->n;
	}
	ck_assert_uint_eq(errs->n, 0);
	if (s->care_date != SHEET_NO_DATE)
		ck_assert_int_eq(sheet_set_due_date(s, 0), 0);
	struct sheet_check c = check_ctx();
	c.draft = draft;
	r = sheet_validate(s, &c, errs);
	ck_assert_int_eq(r < 0, errs->n > 0);
	return (int)errs->n;
}

static void
dump(const struct sheet_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		fprintf(stderr, "  %s: %s\n", e->e[i].field, e->e[i].msg);
}

START_TEST(test_valid)
{
	struct sheet s;
	struct sheet_errors e;
	int n = run(NULL, &s, &e, false);
	if (n)
		dump(&e);
	ck_assert_int_eq(n, 0);
	ck_assert_uint_eq(s.nlines, 2);
	ck_assert_uint_eq(s.lines[1].coef_milli, 500);
	ck_assert_str_eq(s.lines[1].code, "DEQP003");
	ck_assert_int_eq(s.mode, SHEET_MODE_PHYSICAL);
	ck_assert_int_eq(s.insurance, SHEET_INS_MALADIE);
	ck_assert_int_eq(s.insurance, 10);
	char due[16];
	ck_assert_int_eq(holidays_format(s.due_date, due, sizeof(due)), 0);
	ck_assert_str_eq(due, "2024-03-20"); /* Fri + 3 working days: Mon, Tue, Wed */
	/* tiers payant: 8 working days (Easter Monday 1 April 2024 skipped) */
	n = run("{\"tiers_payant\": true}", &s, &e, false);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(holidays_format(s.due_date, due, sizeof(due)), 0);
	ck_assert_str_eq(due, "2024-03-27");
	n = run("{\"care_date\": \"2024-03-28\", \"lines\": [{\"kind\": \"act\", \"date\": \"2024-03-28\", \"code\": \"C\", "
	        "\"coefficient\": 1, \"amount\": 3650}]}",
	        &s, &e, false);
	/* 28 March is after TODAY: the future-date rule, checked below; here the due date */
	ck_assert_int_eq(holidays_format(s.due_date, due, sizeof(due)), 0);
	ck_assert_str_eq(due, "2024-04-03"); /* Fri 29, Tue 2 (Mon 1 is Easter Monday), Wed 3 */
}
END_TEST

struct one_case {
	const char *patch;
	const char *field;
	const char *msg; /* a substring of the message */
};

START_TEST(test_one_error_each)
{
	static const struct one_case cases[] = {
		{ "{\"nir\": \"184127645108947\"}", "nir", "key" },
		{ "{\"nir\": \"18412764510894\"}", "nir", "15 characters" },
		{ "{\"nir\": \"1841X7645108946\"}", "nir", "key" },
		{ "{\"nir\": null}", "nir", "missing" },
		{ "{\"totals\": {\"total\": 3651, \"amo\": 2555, \"amc\": 0, \"patient\": 1096}}",
		  "totals.total", "add up to 3650" },
		{ "{\"totals\": {\"total\": 3650, \"amo\": 2555, \"amc\": 0, \"patient\": 1000}}",
		  "totals", "not the total" },
		{ "{\"lines\": [], \"totals\": {\"total\": 0, \"amo\": 0, \"amc\": 0, \"patient\": 0}}",
		  "lines", "no lines" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 1, "
		  "\"amount\": -2650}]}",
		  "lines[0].amount", "negative" },
		{ "{\"totals\": {\"total\": 3650, \"amo\": 4000, \"amc\": 0, \"patient\": -350}}",
		  "totals.patient", "negative" },
		{ "{\"care_date\": \"2024-03-16\"}", "care_date", "future" },
		{ "{\"care_date\": \"2021-03-15\", \"lines\": [{\"kind\": \"act\", \"date\": \"2021-03-15\", \"code\": "
		  "\"G\", \"coefficient\": 1, \"amount\": 3650}]}",
		  "care_date", "days old" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"2022-03-15\", \"code\": \"G\", \"coefficient\": 1, "
		  "\"amount\": 3650}]}",
		  "lines[0].date", "days before the care date" },
		{ "{\"evidence\": null}", "evidence", "no patient evidence" },
		{ "{\"evidence\": {\"card_serial\": \"0123456789\"}}", "evidence.read_at", "missing" },
		{ "{\"evidence\": {\"device_answer\": \"AAAA\"}}", "evidence.device_answer", "physical" },
		{ "{\"evidence\": {\"card_serial\": \"0123456789\", \"read_at\": 1710509999}}",
		  "evidence.read_at", "future" },
		{ "{\"mode\": \"digital-nfc\", \"evidence\": {\"device_answer\": \"0oRDoQEmoFgg\"}, "
		  "\"x\": 1}",
		  "x", "unknown field" },
		{ "{\"mode\": \"digital-nfc\"}", "evidence.card_serial", "digital card" },
		{ "{\"mode\": \"digital-qr\", \"evidence\": null}", "evidence", "no patient evidence" },
		{ "{\"mode\": \"degraded\"}", "evidence", "without the card" },
		{ "{\"mode\": \"teleport\"}", "mode", "unknown mode" },
		{ "{\"mode\": null}", "mode", "missing" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"g1\", \"coefficient\": 1, "
		  "\"amount\": 3650}]}",
		  "lines[0].code", "NGAP" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 0, "
		  "\"amount\": 3650}]}",
		  "lines[0].coefficient", "more than 0" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 1.2345, "
		  "\"amount\": 3650}]}",
		  "lines[0].coefficient", "3 decimals" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 1, "
		  "\"amount\": 36.5}]}",
		  "lines[0].amount", "integer" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"2024-03-16\", \"code\": \"G\", \"coefficient\": 1, "
		  "\"amount\": 3650}]}",
		  "lines[0].date", "after the care date" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"2024-02-30\", \"code\": \"G\", \"coefficient\": 1, "
		  "\"amount\": 3650}]}",
		  "lines[0].date", "not a date" },
		{ "{\"lines\": [{\"kind\": \"act\", \"code\": \"G\", \"coefficient\": 1, \"amount\": 3650}]}",
		  "lines[0].date", "missing" },
		{ "{\"lines\": {}}", "lines", "array" },
		{ "{\"insurance\": \"holiday\"}", "insurance", "unknown insurance" },
		{ "{\"insurance\": \"at_mp\"}", "at_date", "missing" },
		{ "{\"at_date\": \"2024-03-01\"}", "at_date", "only for at_mp" },
		{ "{\"totals\": {\"total\": 3650, \"amo\": 2555, \"amc\": 95, \"patient\": 1000}}",
		  "totals.amc", "without an AMC" },
		{ "{\"id\": \"0F8E2A4C-1B3D-4E5F-9A7B-8C6D5E4F3A2B\"}", "id", "UUID" },
		{ "{\"id\": \"0f8e2a4c-1b3d-1e5f-9a7b-8c6d5e4f3a2b\"}", "id", "UUID" },
		{ "{\"insurer\": {\"regime\": \"1\", \"caisse\": \"751\", \"centre\": \"0012\"}}",
		  "insurer.regime", "2 digits" },
		{ "{\"insurer\": {\"caisse\": \"751\", \"centre\": \"0012\"}}", "insurer.regime",
		  "missing" },
		{ "{\"insurer\": {\"regime\": \"01\", \"caisse\": \"751\", \"centre\": \"0012\", "
		  "\"iban\": \"x\"}}",
		  "insurer.iban", "unknown field" },
		{ "{\"practitioner_id\": \"1234\"}", "practitioner_id", "9" },
		{ "{\"structure_id\": \"12\"}", "structure_id", "FINESS" },
		{ "{\"prescriber\": {\"date\": \"2024-03-01\"}}", "prescriber.date", "without a prescriber" },
		{ "{\"prescriber\": {\"id\": \"10001234567\", \"date\": \"2024-03-16\"}}",
		  "prescriber.date", "after the care date" },
		{ "{\"terminal_id\": null}", "terminal_id", "missing" },
		{ "{\"terminal_id\": 12}", "terminal_id", "string" },
		{ "{\"created\": null}", "created", "missing" },
		{ "{\"created\": 1810500000}", "created", "future" },
		{ "{\"amc\": \"yes\"}", "amc", "must be an object" },
		{ "{\"birth_rank\": 12}", "birth_rank", "range" },
		{ "{\"birth_date\": \"1984/12/01\"}", "birth_date", "YYYY-MM-DD" },
		{ "{\"seq\": -1}", "seq", "range" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sheet s;
		struct sheet_errors e;
		int n = run(cases[i].patch, &s, &e, false);
		if (n != 1)
			dump(&e);
		ck_assert_msg(n == 1, "case %zu %s: %d errors", i, cases[i].patch, n);
		ck_assert_msg(strcmp(e.e[0].field, cases[i].field) == 0, "case %zu: field %s, want %s",
		              i, e.e[0].field, cases[i].field);
		ck_assert_msg(strstr(e.e[0].msg, cases[i].msg) != NULL, "case %zu: message '%s'", i,
		              e.e[0].msg);
	}
}
END_TEST

START_TEST(test_many_errors)
{
	struct sheet s;
	struct sheet_errors e;
	/* three independent problems, three errors */
	int n = run("{\"nir\": \"184127645108947\", \"care_date\": \"2024-03-16\", "
	            "\"practitioner_id\": \"12\"}",
	            &s, &e, false);
	ck_assert_int_eq(n, 3);
	/* too many acts is one parse error */
	char buf[8192];
	size_t off = (size_t)snprintf(buf, sizeof(buf), "{\"lines\": null, \"acts\": [");
	for (int i = 0; i < SHEET_MAX_LINES + 1; i++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off,
		                        "%s{\"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 1, "
		                        "\"amount\": 1}",
		                        i ? "," : "");
	snprintf(buf + off, sizeof(buf) - off, "]}");
	n = run(buf, &s, &e, false);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(e.e[0].field, "acts");
	ck_assert_ptr_nonnull(strstr(e.e[0].msg, "too many"));
	/* an empty sheet: many problems, capped */
	sheet_init(&s);
	struct sheet_check c = check_ctx();
	ck_assert_int_eq(sheet_validate(&s, &c, &e), -EINVAL);
	ck_assert_uint_ge(e.n, 10);
	/* not an object */
	json_t *arr = json_array();
	ck_assert_int_eq(sheet_from_json(arr, &s, &e), -EINVAL);
	ck_assert_str_eq(e.e[0].field, "sheet");
	json_decref(arr);
	/* NULL errs still reports failure */
	ck_assert_int_eq(sheet_validate(&s, &c, NULL), -EINVAL);
}
END_TEST

START_TEST(test_drafts)
{
	struct sheet s;
	struct sheet_errors e;
	/* a kiosk check-in: identity, insurer, evidence; no acts, no practitioner */
	int n = run("{\"lines\": null, \"totals\": null, \"practitioner_id\": null, \"insurance\": null}",
	            &s, &e, true);
	if (n)
		dump(&e);
	ck_assert_int_eq(n, 0);
	n = run("{\"lines\": null, \"totals\": null, \"practitioner_id\": null, \"insurance\": null}",
	        &s, &e, false);
	ck_assert_int_eq(n, 3);
	/* a physical card carries no insurer: a draft may lack it, a sheet may not */
	n = run("{\"lines\": null, \"totals\": null, \"insurer\": null}", &s, &e, true);
	ck_assert_int_eq(n, 0);
	n = run("{\"insurer\": null}", &s, &e, false);
	ck_assert_int_eq(n, 3);
	ck_assert_str_eq(e.e[0].field, "insurer.regime");
	/* draft rules still apply to what is there */
	n = run("{\"lines\": null, \"totals\": null, \"nir\": \"184127645108947\"}", &s, &e, true);
	ck_assert_int_eq(n, 1);
	ck_assert_str_eq(e.e[0].field, "nir");
}
END_TEST

/* NIR key by long division over the decimal string, 2A → 19, 2B → 18. */
static int
nir_key(const char *thirteen)
{
	char d[16];
	size_t n = 0;
	for (size_t i = 0; i < 13; i++) {
		if (thirteen[i] == 'A' || thirteen[i] == 'B') {
			d[n - 1] = '1';
			d[n++] = thirteen[i] == 'A' ? '9' : '8';
		} else {
			d[n++] = thirteen[i];
		}
	}
	int rem = 0;
	for (size_t i = 0; i < n; i++)
		rem = (rem * 10 + (d[i] - '0')) % 97;
	return 97 - rem;
}

START_TEST(test_nir)
{
	ck_assert(sheet_nir_valid("184127645108946"));
	ck_assert(sheet_nir_valid("290052A00401266"));
	ck_assert(sheet_nir_valid("290052B00401293"));
	ck_assert(!sheet_nir_valid("2900520A0401266"));
	ck_assert(!sheet_nir_valid("2900512A0401266"));
	ck_assert(!sheet_nir_valid("2900552A0401266"));
	ck_assert(!sheet_nir_valid("184127645108945"));
	ck_assert(!sheet_nir_valid("18412764510894"));
	ck_assert(!sheet_nir_valid("1841276451089460"));
	ck_assert(!sheet_nir_valid("18412764510894a"));
	ck_assert(!sheet_nir_valid(NULL));
	ck_assert(!sheet_nir_valid(""));
	/* many numbers, keys from the independent computation; any other key fails */
	unsigned seed = 12345;
	for (int i = 0; i < 2000; i++) {
		char nir[16];
		for (int j = 0; j < 13; j++) {
			seed = seed * 1103515245u + 12345u;
			nir[j] = (char)('0' + (seed >> 16) % 10);
		}
		/* a well-formed body: sex 1 or 2, month 01..12 (the structure
		 * rules are nir.c's; this loop is about the key) */
		nir[0] = (char)('1' + i % 2);
		nir[3] = (char)('0' + (i % 12 + 1) / 10);
		nir[4] = (char)('0' + (i % 12 + 1) % 10);
		if (nir[5] == '0' && nir[6] == '0')
			nir[6] = '1';
		if (i % 3 == 1) {
			nir[5] = '2';
			nir[6] = i % 2 ? 'A' : 'B';
		}
		int k = nir_key(nir);
		nir[13] = (char)('0' + k / 10);
		nir[14] = (char)('0' + k % 10);
		nir[15] = '\0';
		ck_assert_msg(sheet_nir_valid(nir), "%s", nir);
		k = k == 97 ? 1 : k + 1;
		nir[13] = (char)('0' + k / 10);
		nir[14] = (char)('0' + k % 10);
		ck_assert_msg(!sheet_nir_valid(nir), "%s", nir);
	}
}
END_TEST

START_TEST(test_roundtrip)
{
	struct sheet s, t;
	struct sheet_errors e;
	ck_assert_int_eq(run("{\"prescriber\": {\"id\": \"10001234567\", \"date\": \"2024-03-01\"}, "
	                     "\"structure_id\": \"750000001\", \"birth_date\": \"1984-02-31\", "
	                     "\"birth_rank\": 2, \"seq\": 7}",
	                     &s, &e, false),
	                 0);
	json_t *j1 = sheet_to_json(&s);
	ck_assert_ptr_nonnull(j1);
	sheet_init(&t);
	ck_assert_int_eq(sheet_from_json(j1, &t, &e), 0);
	json_t *j2 = sheet_to_json(&t);
	ck_assert(json_equal(j1, j2));
	ck_assert_uint_eq(t.seq, 7);
	ck_assert_int_eq(t.due_date, s.due_date);
	ck_assert_int_eq(t.prescription_date, s.prescription_date);
	ck_assert_uint_eq(t.lines[1].coef_milli, 500);
	json_decref(j2);
	json_decref(j1);

	/* digital evidence: bytes survive base64 */
	ck_assert_int_eq(run("{\"mode\": \"digital-nfc\", \"evidence\": {\"device_answer\": "
	                     "\"0oRDoQEmoFggAAECAwQ=\"}}",
	                     &s, &e, false),
	                 0);
	ck_assert_uint_eq(s.evidence.device_answer_len, 14);
	ck_assert_int_eq(s.evidence.device_answer[0], 0xd2);
	j1 = sheet_to_json(&s);
	json_t *ev = json_object_get(j1, "evidence");
	ck_assert_str_eq(json_string_value(json_object_get(ev, "device_answer")), "0oRDoQEmoFggAAECAwQ=");
	json_decref(j1);
	/* with the credential, as docs/digital-card.md §11 advises */
	ck_assert_int_eq(run("{\"mode\": \"digital-nfc\", \"evidence\": {\"device_answer\": "
	                     "\"0oRDoQEmoFggAAECAwQ=\", \"credential\": \"0oRDoQEm\"}}",
	                     &s, &e, false),
	                 0);
	ck_assert_uint_eq(s.evidence.credential_len, 6);
	j1 = sheet_to_json(&s);
	sheet_init(&t);
	ck_assert_int_eq(sheet_from_json(j1, &t, &e), 0);
	ck_assert_uint_eq(t.evidence.credential_len, 6);
	ck_assert_int_eq(memcmp(t.evidence.credential, s.evidence.credential, 6), 0);
	json_decref(j1);
	ck_assert_int_eq(run("{\"evidence\": {\"card_serial\": \"0123456789\", \"read_at\": "
	                     "1710499900, \"credential\": \"0oRDoQEm\"}}",
	                     &s, &e, false),
	                 1);
	ck_assert_str_eq(e.e[0].field, "evidence.credential");
	const char *badb64[] = { "0oRDoQEmoFggAAECAwQ", "0oRD oQEm", "0o=D", "====" };
	for (size_t i = 0; i < 4; i++) {
		char patch[128];
		snprintf(patch, sizeof(patch),
		         "{\"mode\": \"digital-nfc\", \"evidence\": {\"device_answer\": \"%s\"}}", badb64[i]);
		ck_assert_int_eq(run(patch, &s, &e, false), 1);
		ck_assert_str_eq(e.e[0].field, "evidence.device_answer");
	}
}
END_TEST

START_TEST(test_uuid)
{
	uint8_t r[16];
	char id[SHEET_ID_LEN + 1];
	memset(r, 0xff, sizeof(r));
	sheet_uuid_v4(r, id);
	ck_assert_str_eq(id, "ffffffff-ffff-4fff-bfff-ffffffffffff");
	memset(r, 0, sizeof(r));
	sheet_uuid_v4(r, id);
	ck_assert_str_eq(id, "00000000-0000-4000-8000-000000000000");
	struct sheet s;
	struct sheet_errors e;
	char patch[96];
	snprintf(patch, sizeof(patch), "{\"id\": \"%s\"}", id);
	ck_assert_int_eq(run(patch, &s, &e, false), 0);
}
END_TEST

/* ------------------------------------------------------------------ */
/* CBOR: a minimal encoder (RFC 8949 §3 heads, shortest form) and a walker
 * that checks every map's keys are in deterministic order. */

struct buf {
	uint8_t b[16384];
	size_t n;
	int fail_after; /* > 0: the n-th call fails */
	int opens, closes;
};

static int
head(struct buf *w, int major, uint64_t v)
{
	if (w->fail_after > 0 && --w->fail_after == 0)
		return -ENOSPC;
	uint8_t mt = (uint8_t)(major << 5);
	uint8_t h[9];
	size_t n;
	if (v < 24) {
		h[0] = mt | (uint8_t)v;
		n = 1;
	} else if (v <= 0xff) {
		h[0] = mt | 24;
		h[1] = (uint8_t)v;
		n = 2;
	} else if (v <= 0xffff) {
		h[0] = mt | 25;
		h[1] = (uint8_t)(v >> 8);
		h[2] = (uint8_t)v;
		n = 3;
	} else if (v <= 0xffffffffu) {
		h[0] = mt | 26;
		for (int i = 0; i < 4; i++)
			h[1 + i] = (uint8_t)(v >> (24 - 8 * i));
		n = 5;
	} else {
		h[0] = mt | 27;
		for (int i = 0; i < 8; i++)
			h[1 + i] = (uint8_t)(v >> (56 - 8 * i));
		n = 9;
	}
	ck_assert_uint_lt(w->n + n, sizeof(w->b));
	memcpy(w->b + w->n, h, n);
	w->n += n;
	return 0;
}

static int
raw(struct buf *w, const void *p, size_t n)
{
	ck_assert_uint_lt(w->n + n, sizeof(w->b));
	memcpy(w->b + w->n, p, n);
	w->n += n;
	return 0;
}

static int e_map(void *c, size_t n) { ((struct buf *)c)->opens++; return head(c, 5, n); }
static int e_end(void *c) { ((struct buf *)c)->closes++; return 0; } /* heads carry the sizes */
static int e_array(void *c, size_t n) { ((struct buf *)c)->opens++; return head(c, 4, n); }
static int e_text(void *c, const char *s, size_t n) { int r = head(c, 3, n); return r ? r : raw(c, s, n); }
static int e_bytes(void *c, const uint8_t *p, size_t n) { int r = head(c, 2, n); return r ? r : raw(c, p, n); }
static int e_uint(void *c, uint64_t v) { return head(c, 0, v); }
static int e_sint(void *c, int64_t v) { return v >= 0 ? head(c, 0, (uint64_t)v) : head(c, 1, (uint64_t)(-1 - v)); }
static int e_bool(void *c, bool v) { return head(c, 7, v ? 21 : 20); }

static const struct sheet_encoder test_enc = { e_map,   e_end,  e_array, e_end, e_text,
	                                       e_bytes, e_uint, e_sint,  e_bool };

struct walk {
	const uint8_t *p;
	size_t n, off;
	int maps;
	uint64_t seq;
	size_t top_pairs;
};

static uint64_t
rd_head(struct walk *w, int *major)
{
	ck_assert_uint_lt(w->off, w->n);
	uint8_t b = w->p[w->off++];
	*major = b >> 5;
	uint8_t ai = b & 31;
	if (ai < 24)
		return ai;
	ck_assert_uint_le(ai, 27);
	size_t len = (size_t)1 << (ai - 24);
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++)
		v = v << 8 | w->p[w->off++];
	/* shortest form (RFC 8949 §4.2.1) */
	ck_assert(v >= (len == 1 ? 24 : len == 2 ? 0x100 : len == 4 ? 0x10000 : 0x100000000ULL));
	return v;
}

static void walk_item(struct walk *w, int depth, const char *key);

static void
walk_item(struct walk *w, int depth, const char *key)
{
	int major;
	uint64_t v = rd_head(w, &major);
	ck_assert_int_lt(depth, 6);
	switch (major) {
	case 0:
		if (depth == 1 && key && strcmp(key, "seq") == 0)
			w->seq = v;
		break;
	case 1:
		break;
	case 2:
	case 3:
		w->off += v;
		ck_assert_uint_le(w->off, w->n);
		break;
	case 4:
		for (uint64_t i = 0; i < v; i++)
			walk_item(w, depth + 1, NULL);
		break;
	case 5: {
		w->maps++;
		if (depth == 0)
			w->top_pairs = (size_t)v;
		const uint8_t *prev = NULL;
		size_t prevlen = 0;
		for (uint64_t i = 0; i < v; i++) {
			size_t start = w->off;
			int km;
			uint64_t klen = rd_head(w, &km);
			ck_assert_int_eq(km, 3);
			char k[64];
			ck_assert_uint_lt(klen, sizeof(k));
			memcpy(k, w->p + w->off, klen);
			k[klen] = '\0';
			w->off += klen;
			size_t enclen = w->off - start;
			if (prev) {
				/* encoded key bytes strictly increasing */
				size_t m = prevlen < enclen ? prevlen : enclen;
				int c = memcmp(prev, w->p + start, m);
				ck_assert_msg(c < 0 || (c == 0 && prevlen < enclen), "key %s out of order", k);
			}
			prev = w->p + start;
			prevlen = enclen;
			walk_item(w, depth + 1, k);
		}
		break;
	}
	case 7:
		ck_assert(v == 20 || v == 21);
		break;
	default:
		ck_abort_msg("major type %d", major);
	}
}

START_TEST(test_encode)
{
	struct sheet s;
	struct sheet_errors e;
	ck_assert_int_eq(run("{\"prescriber\": {\"id\": \"10001234567\"}, \"seq\": 300}", &s, &e, false), 0);
	static struct buf w1, w2;
	memset(&w1, 0, sizeof(w1));
	memset(&w2, 0, sizeof(w2));
	ck_assert_int_eq(sheet_encode(&s, &test_enc, &w1), 0);
	ck_assert_int_eq(sheet_encode(&s, &test_enc, &w2), 0);
	ck_assert_uint_eq(w1.n, w2.n);
	ck_assert_int_eq(memcmp(w1.b, w2.b, w1.n), 0);
	struct walk wk = { .p = w1.b, .n = w1.n };
	walk_item(&wk, 0, NULL);
	ck_assert_uint_eq(wk.off, w1.n); /* exactly one item */
	ck_assert_int_eq(w1.opens, 8);  /* 7 maps and the lines array, each closed */
	ck_assert_int_eq(w1.closes, 8);
	ck_assert_uint_eq(wk.seq, 300);
	/* top map + insurer + prescriber + totals + evidence + 2 lines */
	ck_assert_int_eq(wk.maps, 7);
	/* model 2: no "amc" key when no AMC takes part */
	ck_assert_uint_eq(wk.top_pairs, 17);
	/* the first key is "v" (the shortest), value 2 */
	ck_assert_int_eq(w1.b[1], 0x61);
	ck_assert_int_eq(w1.b[2], 'v');
	ck_assert_int_eq(w1.b[3], 0x02);
	/* the same sheet in model 1: "acts" and the "amc" flag, 18 keys */
	s.version = SHEET_VERSION_1;
	static struct buf w3;
	memset(&w3, 0, sizeof(w3));
	ck_assert_int_eq(sheet_encode(&s, &test_enc, &w3), 0);
	struct walk wk3 = { .p = w3.b, .n = w3.n };
	walk_item(&wk3, 0, NULL);
	ck_assert_uint_eq(wk3.top_pairs, 18);
	ck_assert_int_eq(w3.b[3], 0x01);
	ck_assert_ptr_nonnull(memmem(w3.b, w3.n, "\x64" "acts", 5));
	ck_assert_ptr_null(memmem(w3.b, w3.n, "\x64" "kind", 5));
	ck_assert_ptr_nonnull(memmem(w1.b, w1.n, "\x65" "lines", 6));
	/* a medicine line cannot be written in model 1 */
	s.lines[0].kind = SHEET_LINE_MEDICINE;
	memset(&w3, 0, sizeof(w3));
	ck_assert_int_eq(sheet_encode(&s, &test_enc, &w3), -EINVAL);
	s.lines[0].kind = SHEET_LINE_ACT;
	s.version = SHEET_VERSION_2;
	/* an encoder error comes back */
	static struct buf wf;
	memset(&wf, 0, sizeof(wf));
	wf.fail_after = 10;
	ck_assert_int_eq(sheet_encode(&s, &test_enc, &wf), -ENOSPC);
	/* a different sequence number changes the bytes */
	s.seq = 301;
	memset(&w2, 0, sizeof(w2));
	ck_assert_int_eq(sheet_encode(&s, &test_enc, &w2), 0);
	ck_assert(w1.n != w2.n || memcmp(w1.b, w2.b, w1.n) != 0);
}
END_TEST

/* The EAN-13 check digit as GS1 describes it, from the right: the data
 * digit next to the check digit weighs 3, the next 1, and so on. */
static char
ean13_check(const char *twelve)
{
	int sum = 0;
	for (int i = 11, w = 3; i >= 0; i--, w = 4 - w)
		sum += (twelve[i] - '0') * w;
	return (char)('0' + (10 - sum % 10) % 10);
}

START_TEST(test_codes)
{
	char cip[14];
	/* a CIP13 with its check digit computed here; every wrong check digit fails */
	snprintf(cip, sizeof(cip), "340093595583");
	cip[12] = ean13_check(cip);
	cip[13] = '\0';
	ck_assert_str_eq(cip, "3400935955838"); /* a published CIP13 */
	ck_assert(sheet_cip13_valid(cip));
	for (char d = '0'; d <= '9'; d++) {
		char bad[14];
		memcpy(bad, cip, sizeof(bad));
		bad[12] = d;
		ck_assert(sheet_cip13_valid(bad) == (d == cip[12]));
	}
	/* 1000 more bodies */
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(cip, sizeof(cip), "34009%07u", i * 7919u % 10000000u);
		cip[12] = ean13_check(cip);
		cip[13] = '\0';
		ck_assert_msg(sheet_cip13_valid(cip), "%s", cip);
	}
	ck_assert(!sheet_cip13_valid("3401935955838"));  /* not under 3400 */
	ck_assert(!sheet_cip13_valid("340093595583"));   /* 12 digits */
	ck_assert(!sheet_cip13_valid("34009359558380")); /* 14 */
	ck_assert(!sheet_cip13_valid("340093595583A"));
	ck_assert(sheet_lpp_valid("1101090"));
	ck_assert(!sheet_lpp_valid("110109"));
	ck_assert(!sheet_lpp_valid("11010900"));
	ck_assert(!sheet_lpp_valid("110109A"));
	const char *acts_ok[] = { "C", "G", "AMI", "APCDE", "DEQP003", "PH7", "PH4", "PH1", "PH2",
		                  "MX1", "MX4", "MX7" };
	const char *acts_bad[] = { "", "ABCDEF", "g", "PH3", "PH8", "MX2", "P7", "DEQP03",
		                   "DEQ0003", "PH77" };
	for (size_t i = 0; i < sizeof(acts_ok) / sizeof(acts_ok[0]); i++)
		ck_assert_msg(sheet_act_code_valid(acts_ok[i]), "%s", acts_ok[i]);
	for (size_t i = 0; i < sizeof(acts_bad) / sizeof(acts_bad[0]); i++)
		ck_assert_msg(!sheet_act_code_valid(acts_bad[i]), "%s", acts_bad[i]);
	ck_assert(sheet_service_code_valid("PH7"));
	ck_assert(!sheet_service_code_valid("C"));
}
END_TEST

/* A pharmacy's lines: two medicines at two rates, a device, PH7 and PH4
 * acts; 2 × 3.10 + 1 × 12.40 + 3 × 1.55 + 1.02 + 0.50 = 24.77 EUR. */
#define PHARMACY_LINES                                                                          \
	"\"lines\": ["                                                                           \
	"{\"kind\": \"medicine\", \"date\": \"" TODAY "\", \"cip13\": \"3400935955838\", "     \
	"\"service\": \"PH4\", \"quantity\": 2, \"unit_price\": 310, \"amount\": 620},"          \
	"{\"kind\": \"medicine\", \"date\": \"" TODAY "\", \"cip13\": \"3400930000014\", "     \
	"\"service\": \"PH2\", \"quantity\": 1, \"unit_price\": 1240, \"amount\": 1240},"        \
	"{\"kind\": \"device\", \"date\": \"" TODAY "\", \"lpp\": \"1101090\", "                \
	"\"quantity\": 3, \"unit_price\": 155, \"amount\": 465},"                                \
	"{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"PH7\", \"coefficient\": 1, " \
	"\"amount\": 102},"                                                                      \
	"{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"PH4\", \"coefficient\": 1, " \
	"\"amount\": 50}],"                                                                      \
	"\"totals\": {\"total\": 2477, \"amo\": 1500, \"amc\": 977, \"patient\": 0}, "            \
	"\"amc\": {\"id\": \"12345678\", \"tiers_payant\": true}, \"tiers_payant\": true"

START_TEST(test_pharmacy)
{
	struct sheet s, t;
	struct sheet_errors e;
	int n = run("{" PHARMACY_LINES "}", &s, &e, false);
	if (n)
		dump(&e);
	ck_assert_int_eq(n, 0);
	ck_assert_uint_eq(s.version, 2);
	ck_assert_uint_eq(s.nlines, 5);
	ck_assert_int_eq(s.lines[0].kind, SHEET_LINE_MEDICINE);
	ck_assert_str_eq(s.lines[0].service, "PH4");
	ck_assert_int_eq(s.lines[2].kind, SHEET_LINE_DEVICE);
	ck_assert_str_eq(s.lines[2].code, "1101090");
	ck_assert_str_eq(s.amc_id, "12345678");
	ck_assert(s.amc && s.amc_tiers_payant);
	/* JSON out and back */
	json_t *j1 = sheet_to_json(&s);
	sheet_init(&t);
	ck_assert_int_eq(sheet_from_json(j1, &t, &e), 0);
	json_t *j2 = sheet_to_json(&t);
	ck_assert(json_equal(j1, j2));
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(j1, "lines"), 2),
	                                                   "kind")),
	                 "device");
	json_decref(j1);
	json_decref(j2);
	/* a GP's sheet: médecin traitant, ALD */
	n = run("{\"pathway\": \"medecin_traitant\", \"exemption\": \"ald\"}", &s, &e, false);
	ck_assert_int_eq(n, 0);
	ck_assert_int_eq(s.pathway, SHEET_PATHWAY_TREATING);
	ck_assert_int_eq(s.exemption, SHEET_EXEMPT_ALD);
	n = run("{\"pathway\": \"referred\", \"referrer_id\": \"10001234567\"}", &s, &e, false);
	ck_assert_int_eq(n, 0);
	n = run("{\"insurance\": \"maternite\", \"maternity_date\": \"2023-09-01\"}", &s, &e, false);
	ck_assert_int_eq(n, 0);
	n = run("{\"insurance\": \"at_mp\", \"at_date\": \"2024-03-01\", \"at_number\": \"A12345\"}",
	        &s, &e, false);
	ck_assert_int_eq(n, 0);
	/* model 1's form ("acts", the AMC flag) is still read: a model 2 sheet */
	n = run("{\"lines\": null, \"acts\": [{\"date\": \"" TODAY "\", \"code\": \"G\", "
	        "\"coefficient\": 1, \"amount\": 3650}], \"amc\": false}",
	        &s, &e, false);
	ck_assert_int_eq(n, 0);
	ck_assert_uint_eq(s.version, 2);
	ck_assert_int_eq(s.lines[0].kind, SHEET_LINE_ACT);
}
END_TEST

START_TEST(test_v2_one_error_each)
{
#define MED(extra) "{\"lines\": [{\"kind\": \"medicine\", \"date\": \"" TODAY "\", " extra "}], " \
	"\"totals\": {\"total\": 620, \"amo\": 620, \"amc\": 0, \"patient\": 0}}"
	static const struct one_case cases[] = {
		{ MED("\"cip13\": \"3400935955839\", \"service\": \"PH4\", \"quantity\": 2, "
		      "\"unit_price\": 310, \"amount\": 620"), "lines[0].cip13", "check" },
		{ MED("\"cip13\": \"3500935955836\", \"service\": \"PH4\", \"quantity\": 2, "
		      "\"unit_price\": 310, \"amount\": 620"), "lines[0].cip13", "3400" },
		{ MED("\"service\": \"PH4\", \"quantity\": 2, \"unit_price\": 310, \"amount\": 620"),
		  "lines[0].cip13", "missing" },
		{ MED("\"cip13\": \"3400935955838\", \"service\": \"PH3\", \"quantity\": 2, "
		      "\"unit_price\": 310, \"amount\": 620"), "lines[0].service", "service code" },
		{ MED("\"cip13\": \"3400935955838\", \"quantity\": 2, \"unit_price\": 310, "
		      "\"amount\": 620"), "lines[0].service", "missing" },
		{ MED("\"cip13\": \"3400935955838\", \"service\": \"PH4\", \"quantity\": 0, "
		      "\"unit_price\": 310, \"amount\": 0"), "lines[0].quantity", "1 to" },
		{ MED("\"cip13\": \"3400935955838\", \"service\": \"PH4\", \"quantity\": 2, "
		      "\"unit_price\": 310, \"amount\": 621"), "lines[0].amount", "2 × 310 = 620" },
		{ MED("\"cip13\": \"3400935955838\", \"service\": \"PH4\", \"quantity\": 2, "
		      "\"unit_price\": -310, \"amount\": 620"), "lines[0].unit_price", "0 to" },
		{ MED("\"cip13\": \"3400935955838\", \"service\": \"PH4\", \"quantity\": 2, "
		      "\"unit_price\": 310, \"amount\": 620, \"code\": \"C\""), "lines[0].code",
		  "unknown field" },
		{ "{\"lines\": [{\"kind\": \"device\", \"date\": \"" TODAY "\", \"lpp\": \"110109\", "
		  "\"quantity\": 2, \"unit_price\": 310, \"amount\": 620}], "
		  "\"totals\": {\"total\": 620, \"amo\": 620, \"amc\": 0, \"patient\": 0}}",
		  "lines[0].lpp", "7 digits" },
		{ "{\"lines\": [{\"kind\": \"potion\", \"date\": \"" TODAY "\"}]}", "lines[0].kind",
		  "unknown kind" },
		{ "{\"lines\": [{\"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 1, "
		  "\"amount\": 3650}]}", "lines[0].kind", "missing" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"PH3\", "
		  "\"coefficient\": 1, \"amount\": 3650}]}", "lines[0].code", "service code" },
		{ "{\"acts\": [{\"date\": \"" TODAY "\", \"code\": \"G\", \"coefficient\": 1, "
		  "\"amount\": 3650}]}", "acts", "once" },
		{ "{\"pathway\": \"shortcut\"}", "pathway", "unknown care pathway" },
		{ "{\"pathway\": \"referred\"}", "referrer_id", "missing" },
		{ "{\"pathway\": \"referred\", \"referrer_id\": \"1234\"}", "referrer_id", "9 or 11" },
		{ "{\"pathway\": \"emergency\", \"referrer_id\": \"10001234567\"}", "referrer_id",
		  "only for the referred" },
		{ "{\"exemption\": \"lucky\"}", "exemption", "unknown exemption" },
		{ "{\"exemption\": \"ald\", \"insurance\": \"smg\"}", "exemption", "only under maladie" },
		{ "{\"insurance\": \"maternite\"}", "maternity_date", "missing" },
		{ "{\"insurance\": \"maternite\", \"maternity_date\": \"2024-03-16\"}", "maternity_date",
		  "after the care date" },
		{ "{\"insurance\": \"maternite\", \"maternity_date\": \"2022-03-01\"}", "maternity_date",
		  "days before" },
		{ "{\"maternity_date\": \"2024-01-01\"}", "maternity_date", "only for maternite" },
		{ "{\"at_number\": \"A1\"}", "at_number", "only for at_mp" },
		{ "{\"insurance\": \"at_mp\", \"at_date\": \"2024-03-01\", \"at_number\": \"a-1\"}",
		  "at_number", "capitals or digits" },
		{ "{\"amc\": {\"id\": \"1234\"}}", "amc.id", "8 to 10 digits" },
		{ "{\"amc\": {\"tiers_payant\": true}}", "amc.id", "missing" },
		{ "{\"amc\": {\"id\": \"12345678\", \"bank\": 1}}", "amc.bank", "unknown field" },
		{ "{\"amc\": {\"id\": \"12345678\", \"tiers_payant\": 1}}", "amc.tiers_payant",
		  "true or false" },
		{ "{\"v\": 3}", "v", "range" },
	};
#undef MED
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sheet s;
		struct sheet_errors e;
		int n = run(cases[i].patch, &s, &e, false);
		if (n != 1)
			dump(&e);
		ck_assert_msg(n == 1, "case %zu %s: %d errors", i, cases[i].patch, n);
		ck_assert_msg(strcmp(e.e[0].field, cases[i].field) == 0, "case %zu: field %s, want %s",
		              i, e.e[0].field, cases[i].field);
		ck_assert_msg(strstr(e.e[0].msg, cases[i].msg) != NULL, "case %zu: message '%s'", i,
		              e.e[0].msg);
	}
}
END_TEST

/* A model 1 sheet holds only what model 1 has: each model 2 field in it
 * is one error. */
START_TEST(test_v1_limits)
{
	static const struct one_case cases[] = {
		{ "{\"pathway\": \"emergency\"}", "pathway", "model 2" },
		{ "{\"exemption\": \"ald\"}", "exemption", "model 2" },
		{ "{\"amc\": {\"id\": \"12345678\"}}", "amc", "model 2" },
		{ "{\"lines\": [{\"kind\": \"device\", \"date\": \"" TODAY "\", \"lpp\": \"1101090\", "
		  "\"quantity\": 1, \"unit_price\": 3650, \"amount\": 3650}]}", "acts[0].kind",
		  "acts only" },
		{ "{\"lines\": [{\"kind\": \"act\", \"date\": \"" TODAY "\", \"code\": \"PH7\", "
		  "\"coefficient\": 1, \"amount\": 3650}]}", "acts[0].code", "model 2" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sheet s;
		struct sheet_errors e;
		char patch[512];
		snprintf(patch, sizeof(patch), "%.*s, \"v\": 1}", (int)strlen(cases[i].patch) - 1,
		         cases[i].patch);
		int n = run(patch, &s, &e, false);
		if (n != 1)
			dump(&e);
		ck_assert_msg(n == 1, "case %zu %s: %d errors", i, patch, n);
		ck_assert_msg(strcmp(e.e[0].field, cases[i].field) == 0, "case %zu: field %s, want %s",
		              i, e.e[0].field, cases[i].field);
		ck_assert_msg(strstr(e.e[0].msg, cases[i].msg) != NULL, "case %zu: message '%s'", i,
		              e.e[0].msg);
	}
	/* and a plain model 1 sheet is valid */
	struct sheet s;
	struct sheet_errors e;
	ck_assert_int_eq(run("{\"v\": 1}", &s, &e, false), 0);
	ck_assert_uint_eq(s.version, 1);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(sheet_mode_name(SHEET_MODE_DIGITAL_QR), "digital-qr");
	ck_assert_int_eq(sheet_mode_parse("degraded"), SHEET_MODE_DEGRADED);
	ck_assert_int_eq(sheet_mode_parse("DEGRADED"), -EINVAL);
	ck_assert_ptr_null(sheet_mode_name(SHEET_MODE_NONE));
	ck_assert_int_eq(sheet_insurance_parse("at_mp"), 41);
	ck_assert_str_eq(sheet_insurance_name(SHEET_INS_MATERNITE), "maternite");
	ck_assert_int_eq(sheet_insurance_parse(NULL), -EINVAL);
	ck_assert_int_eq(sheet_line_kind_parse("device"), SHEET_LINE_DEVICE);
	ck_assert_str_eq(sheet_line_kind_name(SHEET_LINE_MEDICINE), "medicine");
	ck_assert_int_eq(sheet_line_kind_parse("Device"), -EINVAL);
	ck_assert_int_eq(sheet_pathway_parse("medecin_traitant"), SHEET_PATHWAY_TREATING);
	ck_assert_int_eq(sheet_pathway_parse(NULL), -EINVAL);
	ck_assert_str_eq(sheet_pathway_name(SHEET_PATHWAY_OUTSIDE), "outside");
	ck_assert_ptr_null(sheet_pathway_name(SHEET_PATHWAY_NONE));
	ck_assert_int_eq(sheet_exemption_parse("ald"), SHEET_EXEMPT_ALD);
	ck_assert_ptr_null(sheet_exemption_name((enum sheet_exemption)99));
}
END_TEST

static Suite *
sheet_suite(void)
{
	Suite *s = suite_create("sheet");
	TCase *tc = tcase_create("sheet");
	tcase_add_test(tc, test_valid);
	tcase_add_test(tc, test_one_error_each);
	tcase_add_test(tc, test_many_errors);
	tcase_add_test(tc, test_drafts);
	tcase_add_test(tc, test_nir);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_uuid);
	tcase_add_test(tc, test_encode);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_codes);
	tcase_add_test(tc, test_pharmacy);
	tcase_add_test(tc, test_v2_one_error_each);
	tcase_add_test(tc, test_v1_limits);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sheet_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
