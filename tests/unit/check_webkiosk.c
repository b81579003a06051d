/* The kiosk screen's states from the daemon's events (web/kiosk.c), and
 * what its message may hold: nothing but state, reason, first_name, reset_s. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "web/kiosk.h"

static bool
feed(struct kiosk *k, const char *json)
{
	json_t *e = json_loads(json, 0, NULL);
	ck_assert_ptr_nonnull(e);
	bool r = kiosk_feed(k, e);
	json_decref(e);
	return r;
}

static const char *CARD_READ =
    "{\"type\":\"CardRead\",\"reader\":\"R\",\"summary\":{\"kind\":\"patient\",\"readable\":true,"
    "\"beneficiaries\":[{\"rank\":0,\"nir_masked\":\"280************\",\"surname\":\"DUPONT\","
    "\"given_name\":\"MARIE-CLAIRE ANNE\"}]}}";

START_TEST(test_checkin)
{
	struct kiosk k;
	kiosk_init(&k);
	ck_assert_str_eq(k.state, "idle");
	ck_assert(feed(&k, "{\"type\":\"CardInserted\"}"));
	ck_assert_str_eq(k.state, "reading");
	ck_assert(!feed(&k, CARD_READ)); /* still reading: the draft is not made yet */
	ck_assert(feed(&k, "{\"type\":\"DraftCreated\",\"id\":\"x\"}"));
	ck_assert_str_eq(k.state, "welcome");
	json_t *m = kiosk_message(&k, 8);
	char *s = json_dumps(m, JSON_SORT_KEYS);
	ck_assert_str_eq(s, "{\"first_name\": \"Marie-Claire\", \"reset_s\": 8, \"state\": \"welcome\"}");
	free(s);
	json_decref(m);
	/* the card leaves: the welcome stays for its reset time */
	ck_assert(!feed(&k, "{\"type\":\"CardRemoved\"}"));
	ck_assert_str_eq(k.state, "welcome");
	/* a draft not preceded by a read card has no name */
	ck_assert(feed(&k, "{\"type\":\"CardInserted\"}"));
	feed(&k, "{\"type\":\"DraftCreated\"}");
	m = kiosk_message(&k, 8);
	ck_assert_ptr_null(json_object_get(m, "first_name"));
	json_decref(m);
}
END_TEST

START_TEST(test_phone_and_errors)
{
	struct kiosk k;
	kiosk_init(&k);
	feed(&k, "{\"type\":\"CardInserted\"}");
	ck_assert(feed(&k, "{\"type\":\"CodeEntryRequested\",\"timeout_s\":60}"));
	ck_assert_str_eq(k.state, "code");
	ck_assert(feed(&k, "{\"type\":\"CardError\",\"reason\":\"code_refused\"}"));
	ck_assert_str_eq(k.state, "refused");
	ck_assert_str_eq(k.reason, "code_refused");
	ck_assert(feed(&k, "{\"type\":\"CardError\",\"reason\":\"credential_expired\"}"));
	ck_assert_str_eq(k.state, "expired");
	ck_assert(feed(&k, "{\"type\":\"CardError\",\"reason\":\"opposed\"}"));
	ck_assert_str_eq(k.state, "opposed");
	ck_assert(feed(&k, "{\"type\":\"CardError\",\"reason\":\"card_lost\"}"));
	ck_assert_str_eq(k.state, "error");
	ck_assert(feed(&k, "{\"type\":\"CardError\",\"reason\":\"something new\"}"));
	ck_assert_str_eq(k.state, "refused");
	ck_assert_str_eq(k.reason, "other");
	ck_assert(feed(&k, "{\"type\":\"CardOpposed\",\"reader\":\"R\"}"));
	ck_assert_str_eq(k.state, "opposed");
	/* a Vitale 2 whose serial is on the opposition list */
	feed(&k, "{\"type\":\"CardInserted\"}");
	ck_assert(feed(&k, "{\"type\":\"CardRead\",\"opposed\":true,\"summary\":{\"kind\":\"patient\","
	                   "\"readable\":true,\"opposed\":true,\"beneficiaries\":[{\"given_name\":\"ANNE\"}]}}"));
	ck_assert_str_eq(k.state, "opposed");
	ck_assert_str_eq(k.pending_name, "");
	/* a CPS, an unreadable card */
	ck_assert(feed(&k, "{\"type\":\"CardRead\",\"summary\":{\"kind\":\"practitioner\",\"readable\":false}}"));
	ck_assert_str_eq(k.reason, "not_patient");
	ck_assert(feed(&k, "{\"type\":\"CardRead\",\"summary\":{\"kind\":\"unknown\",\"readable\":false}}"));
	ck_assert_str_eq(k.reason, "unreadable");
	/* a read in progress ends when the card leaves */
	feed(&k, "{\"type\":\"CardInserted\"}");
	ck_assert(feed(&k, "{\"type\":\"CardRemoved\"}"));
	ck_assert_str_eq(k.state, "idle");
	/* not events of the screen */
	ck_assert(!feed(&k, "{\"type\":\"SheetQueued\"}"));
	ck_assert(!feed(&k, "{\"seq\":1}"));
}
END_TEST

START_TEST(test_first_name)
{
	char out[48];
	kiosk_first_name("MARIE-CLAIRE ANNE", out, sizeof(out));
	ck_assert_str_eq(out, "Marie-Claire");
	kiosk_first_name("  JEAN", out, sizeof(out));
	ck_assert_str_eq(out, "Jean");
	kiosk_first_name("Léa", out, sizeof(out));
	ck_assert_str_eq(out, "Léa");
	kiosk_first_name("<script>", out, sizeof(out));
	ck_assert_ptr_null(strpbrk(out, "<>&\""));
	kiosk_first_name(NULL, out, sizeof(out));
	ck_assert_str_eq(out, "");
	kiosk_first_name("ABCDEFGHIJ", out, 4);
	ck_assert_str_eq(out, "Abc");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("webkiosk");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_checkin);
	tcase_add_test(tc, test_phone_and_errors);
	tcase_add_test(tc, test_first_name);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
