/* The online rights check's pure part (daemon/upload/rights.h): what an
 * exchange's outcome means, the copy of the insurer's answer (coverage of
 * the care date), which cards are checked, and how a care sheet takes the
 * checked organisation over the till's (daemon/sheets/sheetbuild.c). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sheets/sheetbuild.h"
#include "daemon/upload/rights.h"
#include "protocol/sheet.h"

#define NIR "280057505612389"
#define ANSWER                                                                              \
	"{\"nir\": \"" NIR "\", \"regime\": \"01\", \"caisse\": \"751\", \"centre\": \"0042\", " \
	"\"rights\": [{\"code\": \"AMO\", \"from\": \"2026-01-01\", \"to\": \"2026-12-31\"}], "    \
	"\"amc\": {\"id\": \"12345678\", \"tiers_payant\": true, \"to\": \"2026-12-31\"}, "       \
	"\"checked\": \"2026-12-05T10:00:00Z\"}"

static struct card_rights
pending(const char *care_date)
{
	struct card_rights cr;
	memset(&cr, 0, sizeof(cr));
	cr.state = CARD_RIGHTS_PENDING;
	snprintf(cr.care_date, sizeof(cr.care_date), "%s", care_date);
	snprintf(cr.asked, sizeof(cr.asked), "2026-12-05T09:59:59.000Z");
	return cr;
}

START_TEST(test_checked)
{
	struct card_rights cr = pending("2026-12-05");
	rights_outcome(&cr, false, UPLOADER_NET_OK, 200, ANSWER, strlen(ANSWER), NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_CHECKED);
	ck_assert_str_eq(cr.regime, "01");
	ck_assert_str_eq(cr.caisse, "751");
	ck_assert_str_eq(cr.centre, "0042");
	ck_assert_str_eq(cr.checked, "2026-12-05T10:00:00Z");
	ck_assert(cr.covered);
	ck_assert(cr.has_amc && cr.amc_tiers_payant);
	ck_assert_str_eq(cr.amc_id, "12345678");
	ck_assert_uint_eq(cr.nrights, 1);
	ck_assert_str_eq(cr.asked, "2026-12-05T09:59:59.000Z"); /* kept */
	ck_assert_str_eq(cr.reason, "");
	ck_assert_str_eq(card_rights_state_name(cr.state), "checked");
	/* a period that does not hold the care date: checked, not covered */
	cr = pending("2027-01-02");
	rights_outcome(&cr, false, UPLOADER_NET_OK, 200, ANSWER, strlen(ANSWER), NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_CHECKED);
	ck_assert(!cr.covered);
	/* the answer is for another NIR: not trusted */
	cr = pending("2026-12-05");
	rights_outcome(&cr, false, UPLOADER_NET_OK, 200, ANSWER, strlen(ANSWER), NULL,
	               "112032A00401721");
	ck_assert_int_eq(cr.state, CARD_RIGHTS_ERROR);
	ck_assert_str_eq(cr.regime, "");
}
END_TEST

START_TEST(test_failures)
{
	struct card_rights cr = pending("2026-12-05");
	rights_outcome(&cr, false, UPLOADER_NET_OFFLINE, 0, NULL, 0, "cannot reach the insurer at h:1",
	               NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_OFFLINE);
	ck_assert_str_eq(cr.reason, "cannot reach the insurer at h:1");
	ck_assert_str_eq(card_rights_state_name(cr.state), "offline");

	const char *nf = "{\"error\": \"unknown\", \"reason\": \"no such beneficiary\"}";
	rights_outcome(&cr, false, UPLOADER_NET_OK, 404, nf, strlen(nf), NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_UNKNOWN);
	ck_assert_str_eq(cr.reason, "no such beneficiary");

	rights_outcome(&cr, false, UPLOADER_NET_OK, 404, "<html>", 6, NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_UNKNOWN);
	ck_assert_str_eq(cr.reason, "the insurer knows no such beneficiary");

	const char *f = "{\"error\": \"fault\", \"reason\": \"x\"}";
	rights_outcome(&cr, false, UPLOADER_NET_OK, 503, f, strlen(f), NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_ERROR);
	ck_assert_str_eq(cr.reason, "the insurer answered HTTP 503 (fault)");

	rights_outcome(&cr, false, UPLOADER_NET_OK, 200, "not json", 8, NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_ERROR);

	rights_outcome(&cr, false, UPLOADER_NET_TLS_SERVER, 0, NULL, 0, "unknown CA: ...", NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_ERROR);
	ck_assert_str_eq(cr.reason, "unknown CA: ...");

	rights_outcome(&cr, false, UPLOADER_NET_TRANSIENT, 0, NULL, 0, "Operation timed out", NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_TIMEOUT);

	/* the budget passed first: timeout, whatever came; nothing of an
	 * earlier answer stays */
	rights_outcome(&cr, false, UPLOADER_NET_OK, 200, ANSWER, strlen(ANSWER), NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_CHECKED);
	rights_outcome(&cr, true, UPLOADER_NET_OK, 200, ANSWER, strlen(ANSWER), NULL, NIR);
	ck_assert_int_eq(cr.state, CARD_RIGHTS_TIMEOUT);
	ck_assert_str_eq(cr.regime, "");
	ck_assert(!cr.has_amc && cr.nrights == 0 && !cr.covered);
	ck_assert_str_eq(card_rights_state_name(cr.state), "timeout");
}
END_TEST

static void
vitale(struct card_result *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->profile, sizeof(r->profile), "vitale2");
	snprintf(r->kind, sizeof(r->kind), "patient");
	snprintf(r->presentation, sizeof(r->presentation), "physical");
	r->recognised = r->readable = true;
	r->nbeneficiaries = 1;
	snprintf(r->beneficiaries[0].nir, sizeof(r->beneficiaries[0].nir), NIR);
	snprintf(r->beneficiaries[0].birth_date, 11, "1980-05-14");
	card_result_add_field(r, "serial", "25012345678901234567");
}

START_TEST(test_which_cards)
{
	struct card_result r;
	vitale(&r);
	ck_assert(rights_card_wants_check(&r));
	snprintf(r.presentation, sizeof(r.presentation), "digital-nfc");
	ck_assert(!rights_card_wants_check(&r)); /* a phone: its credential says it */
	vitale(&r);
	snprintf(r.kind, sizeof(r.kind), "practitioner");
	ck_assert(!rights_card_wants_check(&r));
	vitale(&r);
	r.readable = false;
	ck_assert(!rights_card_wants_check(&r));
	vitale(&r);
	r.beneficiaries[0].nir[0] = '\0';
	ck_assert(!rights_card_wants_check(&r));
	vitale(&r);
	r.beneficiaries[0].birth_date[0] = '\0';
	ck_assert(!rights_card_wants_check(&r));
	ck_assert(!rights_card_wants_check(NULL));
}
END_TEST

/* The sheet takes the insurer's organisation when checked, else the till's. */
START_TEST(test_sheet_merge)
{
	struct card_result r;
	char why[200];
	static struct sheet s;
	vitale(&r);
	sheet_init(&s);
	snprintf(s.regime, sizeof(s.regime), "01");
	snprintf(s.caisse, sizeof(s.caisse), "751");
	snprintf(s.centre, sizeof(s.centre), "0012"); /* the till's */
	/* no check (or not answered): the till's values */
	r.rights = pending("2026-12-05");
	ck_assert_int_eq(sheetbuild_patient_from_card(&s, &r, "2026-12-05T09:00:00.000Z", 0, why,
	                                              sizeof(why)), 0);
	ck_assert_str_eq(s.centre, "0012");
	rights_outcome(&r.rights, false, UPLOADER_NET_OFFLINE, 0, NULL, 0, "down", NIR);
	ck_assert_int_eq(sheetbuild_patient_from_card(&s, &r, "2026-12-05T09:00:00.000Z", 0, why,
	                                              sizeof(why)), 0);
	ck_assert_str_eq(s.centre, "0012");
	/* checked: the insurer's, over the till's */
	rights_outcome(&r.rights, false, UPLOADER_NET_OK, 200, ANSWER, strlen(ANSWER), NULL, NIR);
	ck_assert_int_eq(sheetbuild_patient_from_card(&s, &r, "2026-12-05T09:00:00.000Z", 0, why,
	                                              sizeof(why)), 0);
	ck_assert_str_eq(s.regime, "01");
	ck_assert_str_eq(s.caisse, "751");
	ck_assert_str_eq(s.centre, "0042");
	/* checked for another beneficiary than the sheet's: not taken */
	r.nbeneficiaries = 2;
	r.beneficiaries[1] = r.beneficiaries[0];
	snprintf(s.centre, sizeof(s.centre), "0012");
	ck_assert_int_eq(sheetbuild_patient_from_card(&s, &r, "2026-12-05T09:00:00.000Z", 1, why,
	                                              sizeof(why)), 0);
	ck_assert_str_eq(s.centre, "0012");
	card_result_clear(&r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("rights");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_checked);
	tcase_add_test(tc, test_failures);
	tcase_add_test(tc, test_which_cards);
	tcase_add_test(tc, test_sheet_merge);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
