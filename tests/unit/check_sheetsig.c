/* Unit tests of protocol/sheetsig: a sheet signed with ES256 and PS256
 * verifies with its key and not with another one, decodes back to the same
 * model, and each kind of bad signed sheet fails with its own error: a bit
 * flipped, an extra header, no tag, an extra or missing key, a payload that
 * decodes but is not the canonical encoding, broken rules, a wrong due
 * date (Alsace-Moselle days recognised). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>

#include "protocol/cbor.h"
#include "protocol/cose.h"
#include "protocol/holidays.h"
#include "protocol/sheetsig.h"

static const char base_json[] =
	"{\"id\": \"0f8e2a4c-1b3d-4e5f-9a7b-8c6d5e4f3a2b\","
	" \"terminal_id\": \"VT-0A1B2C3D4E5F\","
	" \"care_date\": \"2024-03-15\", \"seq\": 7,"
	" \"nir\": \"184127645108946\", \"birth_date\": \"1984-12-01\","
	" \"insurer\": {\"regime\": \"01\", \"caisse\": \"751\", \"centre\": \"0012\"},"
	" \"practitioner_id\": \"801234567\", \"structure_id\": \"751234567\","
	" \"prescriber\": {\"id\": \"10001234567\", \"date\": \"2024-03-01\"},"
	" \"insurance\": \"maladie\","
	" \"acts\": [{\"date\": \"2024-03-15\", \"code\": \"G\", \"coefficient\": 1, \"amount\": 2650},"
	"          {\"date\": \"2024-03-14\", \"code\": \"DEQP003\", \"coefficient\": 0.5, \"amount\": 1000}],"
	" \"totals\": {\"total\": 3650, \"amo\": 2555, \"amc\": 0, \"patient\": 1095},"
	" \"amc\": false, \"tiers_payant\": false,"
	" \"mode\": \"physical\","
	" \"evidence\": {\"card_serial\": \"0123456789\", \"read_at\": 1710499900},"
	" \"created\": 1710500000}";

static void
load(struct sheet *s, const char *json, unsigned flags)
{
	json_error_t je;
	struct sheet_errors e;
	json_t *o = json_loads(json, 0, &je);
	ck_assert_msg(o != NULL, "%s", je.text);
	sheet_init(s);
	ck_assert_int_eq(sheet_from_json(o, s, &e), 0);
	json_decref(o);
	ck_assert_int_eq(sheet_set_due_date(s, flags), 0);
}

static char *
dump(const struct sheet *s)
{
	json_t *o = sheet_to_json(s);
	ck_assert_ptr_nonnull(o);
	char *t = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(o);
	return t;
}

static void
sign(const struct sheet *s, EVP_PKEY *k, int alg, uint8_t **out, size_t *len)
{
	ck_assert_int_eq(sheetsig_sign(s, alg, cose_sign_evp, k, out, len), 0);
}

static void
round_trip(EVP_PKEY *k, EVP_PKEY *other, int alg)
{
	struct sheet s, back;
	struct sheetsig_report rep;
	uint8_t *cose = NULL;
	size_t len = 0;
	load(&s, base_json, 0);
	sign(&s, k, alg, &cose, &len);
	ck_assert_int_eq(sheetsig_verify(cose, len, k, &back, &rep), 0);
	ck_assert(rep.signature_checked && rep.signature_ok && rep.decoded && rep.canonical &&
	          rep.valid && rep.due_ok && !rep.due_alsace);
	ck_assert_int_eq(rep.alg, alg);
	char *a = dump(&s), *b = dump(&back);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	/* without a key: everything but the signature */
	ck_assert_int_eq(sheetsig_verify(cose, len, NULL, NULL, &rep), 0);
	ck_assert(!rep.signature_checked && rep.canonical);
	/* another key */
	ck_assert_int_eq(sheetsig_verify(cose, len, other, NULL, &rep), -EKEYREJECTED);
	ck_assert(rep.signature_checked && !rep.signature_ok);
	/* every single bit flipped in the payload or signature area fails */
	const uint8_t *pl;
	size_t plen;
	ck_assert_int_eq(sheetsig_payload(cose, len, &pl, &plen, NULL), 0);
	size_t off = (size_t)(pl - cose);
	for (size_t i = off; i < len; i += 7) {
		cose[i] ^= 0x10;
		ck_assert_int_ne(sheetsig_verify(cose, len, k, NULL, NULL), 0);
		cose[i] ^= 0x10;
	}
	ck_assert_int_eq(sheetsig_verify(cose, len, k, NULL, NULL), 0);
	free(cose);
}

START_TEST(test_es256_ps256)
{
	EVP_PKEY *ec = EVP_EC_gen("P-256"), *ec2 = EVP_EC_gen("P-256");
	EVP_PKEY *rsa = EVP_RSA_gen(2048), *rsa2 = EVP_RSA_gen(2048);
	ck_assert(ec && ec2 && rsa && rsa2);
	round_trip(ec, ec2, COSE_ALG_ES256);
	round_trip(rsa, rsa2, COSE_ALG_PS256);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ec2);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(rsa2);
}
END_TEST

/* Re-emit the payload's top map with one key replaced (value: raw CBOR,
 * NULL deletes it) or added, then sign that. */
static void
sign_patched(const struct sheet *s, EVP_PKEY *k, const char *key, const uint8_t *raw,
             size_t rawlen, uint8_t **out, size_t *len)
{
	uint8_t *cbor;
	size_t clen;
	struct cbor_doc doc = { 0 };
	struct cbor_enc e;
	ck_assert_int_eq(sheetsig_encode(s, &cbor, &clen), 0);
	ck_assert_int_eq(cbor_decode(cbor, clen, NULL, CBOR_STRICT, &doc), 0);
	cbor_enc_init(&e, 1 << 16);
	cbor_enc_map_begin(&e);
	struct cbor_iter it;
	const struct cbor_item *kk, *v;
	cbor_iter_init(&it, &doc, cbor_root(&doc));
	while ((kk = cbor_iter_next(&it)) && (v = cbor_iter_next(&it))) {
		if (cbor_text_eq(kk, key))
			continue;
		cbor_enc_raw(&e, kk->raw, kk->raw_len);
		cbor_enc_raw(&e, v->raw, v->raw_len);
	}
	if (raw) {
		cbor_enc_textz(&e, key);
		cbor_enc_raw(&e, raw, rawlen);
	}
	cbor_enc_map_end(&e);
	uint8_t *p;
	size_t plen;
	ck_assert_int_eq(cbor_enc_take(&e, &p, &plen), 0);
	struct cose_sign1_params cp = { .alg = COSE_ALG_ES256 };
	ck_assert_int_eq(cose_sign1_create(&cp, p, plen, cose_sign_evp, k, out, len), 0);
	free(p);
	free(cbor);
	cbor_doc_free(&doc);
	cbor_enc_free(&e);
}

START_TEST(test_bad_sheets)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	struct sheet s;
	struct sheetsig_report rep;
	uint8_t *c = NULL;
	size_t n = 0;
	load(&s, base_json, 0);

	/* an extra key: decoded with "unknown key", refused */
	static const uint8_t one[] = { 0x01 };
	sign_patched(&s, k, "iban", one, sizeof(one), &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EBADMSG);
	ck_assert(rep.signature_ok && !rep.decoded && rep.errs.n == 1);
	free(c);
	/* a missing key */
	sign_patched(&s, k, "due_date", NULL, 0, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EBADMSG);
	ck_assert_str_eq(rep.errs.e[0].field, "due_date");
	free(c);
	/* a wrong type */
	static const uint8_t txt1[] = { 0x61, '7' };
	sign_patched(&s, k, "seq", txt1, sizeof(txt1), &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EBADMSG);
	ck_assert_str_eq(rep.errs.e[0].field, "seq");
	free(c);
	/* decodes, but the model would never write it: an empty evidence map
	 * on a degraded sheet */
	struct sheet d = s;
	d.mode = SHEET_MODE_DEGRADED;
	memset(&d.evidence, 0, sizeof(d.evidence));
	static const uint8_t empty_map[] = { 0xa0 };
	sign_patched(&d, k, "evidence", empty_map, sizeof(empty_map), &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EDOM);
	ck_assert(rep.decoded && !rep.canonical);
	free(c);
	/* the same without the empty map is fine */
	sign(&d, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), 0);
	free(c);

	/* rules: totals that do not add up, signed anyway */
	struct sheet t = s;
	t.total += 1;
	sign(&t, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EINVAL);
	ck_assert(rep.canonical && !rep.valid && rep.errs.n == 1);
	ck_assert_str_eq(rep.errs.e[0].field, "totals.total");
	free(c);
	/* a due date one day off */
	t = s;
	t.due_date += 1;
	sign(&t, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -ERANGE);
	ck_assert(rep.valid && !rep.due_ok);
	free(c);
	/* Alsace-Moselle: care on Friday 20 December 2024, due Friday 27 */
	load(&t, base_json, 0);
	ck_assert_int_eq(holidays_parse("2024-12-20", &t.care_date), 0);
	t.lines[0].date = t.lines[1].date = t.care_date;
	t.prescription_date = t.care_date;
	t.created = 1734700000; /* 2024-12-20T13:06:40Z */
	t.evidence.read_at = t.created - 60;
	ck_assert_int_eq(sheet_set_due_date(&t, HOLIDAYS_ALSACE_MOSELLE), 0);
	char due[11];
	holidays_format(t.due_date, due, sizeof(due));
	ck_assert_str_eq(due, "2024-12-27");
	sign(&t, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), 0);
	ck_assert(rep.due_ok && rep.due_alsace);
	ck_assert_str_eq(rep.due_calendar, "alsace-moselle");
	free(c);
	/* La Réunion: care on Tuesday 17 December 2024, 20 December is a
	 * holiday there: due Monday 23 (metropolitan: Friday 20) */
	load(&t, base_json, 0);
	ck_assert_int_eq(holidays_parse("2024-12-17", &t.care_date), 0);
	t.lines[0].date = t.lines[1].date = t.care_date;
	t.prescription_date = t.care_date;
	t.created = 1734440000;
	t.evidence.read_at = t.created - 60;
	unsigned reunion;
	ck_assert_int_eq(holidays_department_flags("974", &reunion), 0);
	ck_assert_int_eq(sheet_set_due_date(&t, reunion), 0);
	holidays_format(t.due_date, due, sizeof(due));
	ck_assert_str_eq(due, "2024-12-23");
	sign(&t, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), 0);
	ck_assert(rep.due_ok && !rep.due_alsace);
	ck_assert_str_eq(rep.due_calendar, "la-reunion");
	free(c);
	/* a due date no calendar gives: Saturday 21 */
	t.due_date -= 2;
	sign(&t, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -ERANGE);
	ck_assert_ptr_null(rep.due_calendar);
	free(c);

	/* COSE shape: a kid in the unprotected header, no tag */
	uint8_t *cbor;
	size_t clen;
	ck_assert_int_eq(sheetsig_encode(&s, &cbor, &clen), 0);
	static const uint8_t kid[] = { 1, 2, 3 };
	struct cose_sign1_params p = { .alg = COSE_ALG_ES256, .kid = kid, .kid_len = 3 };
	ck_assert_int_eq(cose_sign1_create(&p, cbor, clen, cose_sign_evp, k, &c, &n), 0);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, NULL), -EPROTO);
	free(c);
	struct cose_sign1_params u = { .alg = COSE_ALG_ES256, .untagged = true };
	ck_assert_int_eq(cose_sign1_create(&u, cbor, clen, cose_sign_evp, k, &c, &n), 0);
	ck_assert_int_lt(sheetsig_verify(c, n, k, NULL, NULL), 0);
	free(c);
	free(cbor);
	/* garbage and truncation */
	sign(&s, k, COSE_ALG_ES256, &c, &n);
	for (size_t cut = 0; cut < n; cut += 13)
		ck_assert_int_lt(sheetsig_verify(c, cut, k, NULL, NULL), 0);
	free(c);
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(test_decode_limits)
{
	struct sheet s;
	struct sheet_errors e;
	/* not a map, a null, a float */
	static const uint8_t arr[] = { 0x80 }, nul[] = { 0xf6 }, flt[] = { 0xf9, 0x3c, 0x00 };
	ck_assert_int_eq(sheetsig_decode(arr, sizeof(arr), &s, &e), -EBADMSG);
	ck_assert_int_eq(sheetsig_decode(nul, sizeof(nul), &s, &e), -EBADMSG);
	ck_assert_int_eq(sheetsig_decode(flt, sizeof(flt), &s, &e), -EBADMSG);
	/* 33 acts */
	struct cbor_enc en;
	cbor_enc_init(&en, 1 << 16);
	cbor_enc_map_begin(&en);
	cbor_enc_textz(&en, "acts");
	cbor_enc_array_begin(&en);
	for (int i = 0; i < 33; i++) {
		cbor_enc_map_begin(&en);
		cbor_enc_map_end(&en);
	}
	cbor_enc_array_end(&en);
	cbor_enc_map_end(&en);
	uint8_t *p;
	size_t n;
	ck_assert_int_eq(cbor_enc_take(&en, &p, &n), 0);
	ck_assert_int_eq(sheetsig_decode(p, n, &s, &e), -EBADMSG);
	ck_assert(e.n >= 1);
	bool found = false;
	for (size_t i = 0; i < e.n; i++)
		found |= strcmp(e.e[i].field, "acts") == 0 && strstr(e.e[i].msg, "too many") != NULL;
	ck_assert(found);
	free(p);
	cbor_enc_free(&en);
}
END_TEST

static uint8_t *
read_data(const char *name, size_t *len)
{
	char path[512];
	const char *src = getenv("srcdir");
	snprintf(path, sizeof(path), "%s/tests/data/sheets/%s", src ? src : ".", name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "%s", path);
	uint8_t *b = malloc(65536);
	*len = fread(b, 1, 65536, f);
	fclose(f);
	return b;
}

/* A model 1 sheet signed by the writer of before model 2 (tests/data/sheets/
 * README): it verifies, decodes as model 1 and encodes back to the same bytes. */
START_TEST(test_v1_fixture)
{
	size_t n, klen;
	uint8_t *c = read_data("v1-es256.cose", &n);
	uint8_t *pem = read_data("v1-es256.pub.pem", &klen);
	BIO *bio = BIO_new_mem_buf(pem, (int)klen);
	EVP_PKEY *k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(k);
	struct sheet back;
	struct sheetsig_report rep;
	ck_assert_int_eq(sheetsig_verify(c, n, k, &back, &rep), 0);
	ck_assert(rep.signature_ok && rep.decoded && rep.canonical && rep.valid && rep.due_ok);
	ck_assert_uint_eq(back.version, SHEET_VERSION_1);
	ck_assert_uint_eq(back.nlines, 2);
	ck_assert_int_eq(back.lines[1].kind, SHEET_LINE_ACT);
	ck_assert_str_eq(back.lines[1].code, "DEQP003");
	const uint8_t *pl;
	size_t plen;
	uint8_t *again;
	size_t alen;
	ck_assert_int_eq(sheetsig_payload(c, n, &pl, &plen, NULL), 0);
	ck_assert_int_eq(sheetsig_encode(&back, &again, &alen), 0);
	ck_assert(alen == plen && memcmp(again, pl, plen) == 0);
	free(again);
	json_t *j = sheet_to_json(&back);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "v")), 1);
	ck_assert(json_is_false(json_object_get(j, "amc")));
	json_decref(j);
	/* one bit off and it does not verify */
	c[n - 5] ^= 1;
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, NULL), -EKEYREJECTED);
	BIO_free(bio);
	EVP_PKEY_free(k);
	free(pem);
	free(c);
}
END_TEST

static const char pharmacy_json[] =
	"{\"id\": \"0f8e2a4c-1b3d-4e5f-9a7b-8c6d5e4f3a2b\","
	" \"terminal_id\": \"VT-0A1B2C3D4E5F\","
	" \"care_date\": \"2024-03-15\", \"seq\": 8,"
	" \"nir\": \"184127645108946\","
	" \"insurer\": {\"regime\": \"01\", \"caisse\": \"751\", \"centre\": \"0012\"},"
	" \"practitioner_id\": \"801234567\", \"insurance\": \"maladie\", \"exemption\": \"ald\","
	" \"pathway\": \"referred\", \"referrer_id\": \"10001234567\","
	" \"lines\": [{\"kind\": \"medicine\", \"date\": \"2024-03-15\", \"cip13\": \"3400935955838\","
	"   \"service\": \"PH4\", \"quantity\": 2, \"unit_price\": 310, \"amount\": 620},"
	"  {\"kind\": \"device\", \"date\": \"2024-03-15\", \"lpp\": \"1101090\", \"quantity\": 3,"
	"   \"unit_price\": 155, \"amount\": 465},"
	"  {\"kind\": \"act\", \"date\": \"2024-03-15\", \"code\": \"PH7\", \"coefficient\": 1,"
	"   \"amount\": 102}],"
	" \"totals\": {\"total\": 1187, \"amo\": 900, \"amc\": 287, \"patient\": 0},"
	" \"amc\": {\"id\": \"12345678\", \"tiers_payant\": true}, \"tiers_payant\": true,"
	" \"mode\": \"physical\","
	" \"evidence\": {\"card_serial\": \"0123456789\", \"read_at\": 1710499900},"
	" \"created\": 1710500000}";

START_TEST(test_v2)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	struct sheet s, back;
	struct sheetsig_report rep;
	uint8_t *c = NULL;
	size_t n = 0;
	load(&s, pharmacy_json, 0);
	sign(&s, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, &back, &rep), 0);
	ck_assert(rep.canonical && rep.valid && rep.due_ok);
	char *a = dump(&s), *b = dump(&back);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	ck_assert_uint_eq(back.version, 2);
	ck_assert_str_eq(back.amc_id, "12345678");
	free(c);
	/* "acts" in a model 2 payload */
	static const uint8_t empty_arr[] = { 0x80 };
	sign_patched(&s, k, "acts", empty_arr, sizeof(empty_arr), &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EBADMSG);
	ck_assert_str_eq(rep.errs.e[0].field, "acts");
	free(c);
	/* model 1's AMC flag in a model 2 payload */
	static const uint8_t f_false[] = { 0xf4 };
	sign_patched(&s, k, "amc", f_false, sizeof(f_false), &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EBADMSG);
	ck_assert_str_eq(rep.errs.e[0].field, "amc");
	free(c);
	/* model 1 with model 2's lines */
	static const uint8_t one[] = { 0x01 };
	sign_patched(&s, k, "v", one, sizeof(one), &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EBADMSG);
	free(c);
	/* a model 3 */
	static const uint8_t three[] = { 0x03 };
	sign_patched(&s, k, "v", three, sizeof(three), &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EBADMSG);
	ck_assert_str_eq(rep.errs.e[0].field, "v");
	free(c);
	/* a rule broken and signed anyway: a CIP13 with a wrong check digit */
	struct sheet t = s;
	t.lines[0].code[12] = '9';
	sign(&t, k, COSE_ALG_ES256, &c, &n);
	ck_assert_int_eq(sheetsig_verify(c, n, k, NULL, &rep), -EINVAL);
	ck_assert_str_eq(rep.errs.e[0].field, "lines[0].cip13");
	free(c);
	EVP_PKEY_free(k);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("sheetsig");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_es256_ps256);
	tcase_add_test(tc, test_bad_sheets);
	tcase_add_test(tc, test_decode_limits);
	tcase_add_test(tc, test_v1_fixture);
	tcase_add_test(tc, test_v2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
