/* Unit tests of daemon/sheets/sheetprint.c, the paper duplicata: what the
 * 2D code holds (the signed bytes in base64, or the id and the SHA-256 of a
 * known vector), that a page is drawn for a model 1 and a model 2 sheet,
 * that a sheet too big for the code gets its digest, and what is refused.
 * The text and the code as drawn are read back by
 * tests/integration/test_duplicata.py (pdftotext, zbarimg). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sheets/sheetprint.h"
#include "lib/b64.h"

static json_t *
sheet_json(bool v2)
{
	const char *v1 = "{\"id\":\"0b7f3c4e-2a7d-4a51-9a39-6f0f3f0c1d2e\",\"terminal_id\":\"T1\","
	                 "\"care_date\":\"2026-03-02\",\"seq\":7,\"nir\":\"280057505612389\","
	                 "\"birth_date\":\"1980-05-14\",\"birth_rank\":1,"
	                 "\"insurer\":{\"regime\":\"01\",\"caisse\":\"751\",\"centre\":\"0012\"},"
	                 "\"practitioner_id\":\"81000123456\",\"insurance\":\"maladie\","
	                 "\"acts\":[{\"date\":\"2026-03-02\",\"code\":\"C\",\"coefficient\":1,"
	                 "\"amount\":2650}],\"totals\":{\"total\":2650,\"amo\":1855,\"amc\":0,"
	                 "\"patient\":795},\"amc\":false,\"tiers_payant\":false,\"mode\":\"physical\","
	                 "\"due_date\":\"2026-03-12\"}";
	const char *l2 = "{\"id\":\"0b7f3c4e-2a7d-4a51-9a39-6f0f3f0c1d2f\",\"terminal_id\":\"T1\","
	                 "\"care_date\":\"2026-03-02\",\"seq\":8,\"nir\":\"280057505612389\","
	                 "\"practitioner_id\":\"81000123456\",\"insurance\":\"maladie\","
	                 "\"pathway\":\"medecin_traitant\",\"exemption\":\"ald\","
	                 "\"lines\":[{\"kind\":\"medicine\",\"cip13\":\"3400930000014\","
	                 "\"service\":\"PH7\",\"quantity\":2,\"unit_price\":350,\"amount\":700},"
	                 "{\"kind\":\"device\",\"lpp\":\"1234567\",\"quantity\":1,\"unit_price\":1200,"
	                 "\"amount\":1200},{\"kind\":\"act\",\"code\":\"PH4\",\"coefficient\":1.5,"
	                 "\"amount\":100}],\"totals\":{\"total\":2000,\"amo\":1500,\"amc\":500,"
	                 "\"patient\":0},\"amc\":{\"id\":\"12345678\",\"tiers_payant\":true},"
	                 "\"tiers_payant\":true,\"mode\":\"physical\",\"due_date\":\"2026-03-12\"}";
	json_t *j = json_loads(v2 ? l2 : v1, 0, NULL);
	ck_assert_ptr_nonnull(j);
	return j;
}

START_TEST(t_code_text)
{
	const uint8_t abc[] = "abc";
	char *t = NULL;
	ck_assert_int_eq(sheetprint_code_text("ID", abc, 3, true, &t), 0);
	ck_assert_str_eq(t, SHEETPRINT_PREFIX_FULL "YWJj");
	free(t);
	ck_assert_int_eq(sheetprint_code_text("ID", abc, 3, false, &t), 0);
	/* SHA-256("abc"), FIPS 180-2 appendix B.1 */
	ck_assert_str_eq(t, SHEETPRINT_PREFIX_DIGEST "ID:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	free(t);
	ck_assert_int_eq(sheetprint_code_text(NULL, abc, 3, true, &t), -EINVAL);
	ck_assert_int_eq(sheetprint_code_text("ID", abc, 0, true, &t), -EINVAL);
	ck_assert_ptr_null(t);
}
END_TEST

static void
render(json_t *sheet, size_t cose_len, struct sheetprint_out *out)
{
	uint8_t *cose = malloc(cose_len);
	for (size_t i = 0; i < cose_len; i++)
		cose[i] = (uint8_t)(i * 37u + 11u);
	struct sheetprint_in in = { .sheet = sheet, .cose = cose, .cose_len = cose_len,
		                    .state = "queued", .practice_name = "Cabinet",
		                    .practice_address = "1 rue", .printed_at = 1772409600 };
	char err[160] = "";
	int r = sheetprint_pdf(&in, out, err, sizeof(err));
	ck_assert_msg(r == 0, "sheetprint_pdf: %d %s", r, err);
	ck_assert_uint_gt(out->len, 1000);
	ck_assert_uint_le(out->len, SHEETPRINT_MAX);
	ck_assert(memcmp(out->pdf, "%PDF-", 5) == 0);
	ck_assert_uint_eq(strlen(out->sha256), 64);
	free(cose);
}

START_TEST(t_pages)
{
	struct sheetprint_out out;
	json_t *s = sheet_json(false);
	render(s, 500, &out);
	ck_assert(out.full);
	ck_assert_int_ge(out.qr_version, 1);
	ck_assert_int_le(out.qr_version, SHEETPRINT_QR_MAX_VERSION);
	free(out.pdf);
	/* too big for a code a scanner reads: its digest (a small code) */
	render(s, 3000, &out);
	ck_assert(!out.full);
	ck_assert_int_le(out.qr_version, 10);
	free(out.pdf);
	json_decref(s);
	s = sheet_json(true);
	render(s, 500, &out);
	ck_assert(out.full);
	free(out.pdf);
	json_decref(s);
}
END_TEST

/* The practice's name and address come from the configuration: too long
 * for the column, invalid UTF-8, control characters: still one page (cairo
 * would refuse invalid UTF-8 and fail the whole page). */
START_TEST(t_config_text)
{
	char name[200], addr[260];
	memset(name, 'W', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(addr, sizeof(addr), "bad \xff\xfe utf-8 \x01\x1b[31m \xc3\xa9t\xc3\xa9 %s", name + 60);
	json_t *s = sheet_json(false);
	uint8_t cose[64] = { 1 };
	struct sheetprint_in in = { .sheet = s, .cose = cose, .cose_len = sizeof(cose),
		                    .practice_name = name, .practice_address = addr };
	struct sheetprint_out out;
	char err[160] = "";
	ck_assert_msg(sheetprint_pdf(&in, &out, err, sizeof(err)) == 0, "%s", err);
	ck_assert(memcmp(out.pdf, "%PDF-", 5) == 0);
	free(out.pdf);
	json_decref(s);
}
END_TEST

START_TEST(t_refused)
{
	struct sheetprint_out out;
	char err[160];
	const uint8_t b[4] = { 1, 2, 3, 4 };
	json_t *s = json_object();
	struct sheetprint_in in = { .sheet = s, .cose = b, .cose_len = sizeof(b) };
	ck_assert_int_eq(sheetprint_pdf(&in, &out, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_null(out.pdf);
	json_decref(s);
	in.sheet = sheet_json(false);
	in.cose_len = 0;
	ck_assert_int_eq(sheetprint_pdf(&in, &out, err, sizeof(err)), -EINVAL);
	json_decref(in.sheet);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("sheetprint");
	TCase *tc = tcase_create("duplicata");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, t_code_text);
	tcase_add_test(tc, t_pages);
	tcase_add_test(tc, t_config_text);
	tcase_add_test(tc, t_refused);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
