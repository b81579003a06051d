/* Unit tests for protocol/nir: keys computed independently (by hand with
 * Python's integers: 97 - int(body with 2A->19, 2B->18) % 97), structure
 * rules, every named reason, masking. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/nir.h"

/* body, key: computed outside this code base */
static const struct {
	const char *body;
	int key;
} known[] = {
	{ "2550814168025", 38 },  /* the example INSEE and many guides print */
	{ "2800575056123", 89 },
	{ "112032A004017", 21 },  /* Corsica 2A */
	{ "255082A321123", 65 },  /* Corsica 2A */
	{ "269022B123456", 67 },  /* Corsica 2B */
	{ "2151113055123", 30 },
	{ "1840375123456", 90 },
	{ "8991299999999", 2 },   /* temporary number, sex 8 */
	{ "7010199001002", 16 },  /* temporary number, sex 7 */
	{ "1000101001001", 5 },
	{ "2912097501003", 31 },  /* month 20: incomplete civil status */
	{ "3450475001001", 18 },  /* sex 3 */
	{ "1930778120008", 73 },
};

START_TEST(test_known_keys)
{
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		enum nir_reason why = NIR_MISSING;
		int k = nir_key(known[i].body, 13, &why);
		ck_assert_msg(k == known[i].key, "%s: key %d, want %d", known[i].body, k,
		              known[i].key);
		ck_assert_int_eq(why, NIR_OK);

		char full[16];
		snprintf(full, sizeof(full), "%s%02d", known[i].body, known[i].key);
		ck_assert_int_eq(nir_check(full, 15, &why), 0);
		ck_assert_int_eq(why, NIR_OK);

		/* every other key is refused */
		for (int bad = 0; bad <= 99; bad += 7) {
			if (bad == known[i].key)
				continue;
			snprintf(full, sizeof(full), "%s%02d", known[i].body, bad);
			ck_assert_int_eq(nir_check(full, 15, &why), -EINVAL);
			ck_assert_int_eq(why, NIR_BAD_KEY);
			ck_assert_str_eq(nir_reason_name(why), "nir_bad_key");
		}
	}
}
END_TEST

START_TEST(test_corsica_lowercase_and_substitution)
{
	enum nir_reason why;
	/* 2a is the same as 2A; and 2A is not the same number as 19 */
	ck_assert_int_eq(nir_key("112032a004017", 13, &why), 21);
	ck_assert_int_eq(nir_check("112032A00401721", 15, &why), 0);
	/* the body with 19 written out has its own key, which 2A must not take */
	int k19 = nir_key("1120319004017", 13, &why);
	ck_assert_int_eq(k19, 21);  /* same number, same key: the rule itself */
	int k20 = nir_key("1120320004017", 13, &why);
	ck_assert_int_ne(k20, 21);
	/* 2B -> 18 */
	ck_assert_int_eq(nir_key("269022B123456", 13, &why), nir_key("2690218123456", 13, &why));
	ck_assert_int_eq(nir_check("269022B12345667", 15, &why), 0);
}
END_TEST

START_TEST(test_structure)
{
	enum nir_reason why;
	ck_assert_int_eq(nir_check("28005750561238", 14, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_LENGTH);
	ck_assert_int_eq(nir_check(NULL, 15, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_LENGTH);
	ck_assert_int_eq(nir_key("280057505612", 12, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_LENGTH);

	/* sex digit: 1 2 3 4 7 8 only */
	const char *sexes = "0569";
	for (const char *s = sexes; *s; s++) {
		char b[14] = "2800575056123";
		b[0] = *s;
		ck_assert_int_eq(nir_key(b, 13, &why), -EINVAL);
		ck_assert_int_eq(why, NIR_BAD_SEX);
	}
	/* month: 00, 13-19, 43-49 refused; 01-12, 20-42, 50-99 taken */
	for (int m = 0; m <= 99; m++) {
		char b[14] = "2800575056123";
		b[3] = (char)('0' + m / 10);
		b[4] = (char)('0' + m % 10);
		bool ok = (m >= 1 && m <= 12) || (m >= 20 && m <= 42) || m >= 50;
		int k = nir_key(b, 13, &why);
		ck_assert_msg(ok ? k > 0 : (k == -EINVAL && why == NIR_BAD_MONTH), "month %02d", m);
	}
	/* department */
	ck_assert_int_eq(nir_key("2800500056123", 13, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_DEPARTMENT);
	ck_assert_int_eq(nir_key("280052C056123", 13, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_DEPARTMENT);
	ck_assert_int_eq(nir_key("28005A1056123", 13, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_DEPARTMENT);
	ck_assert_int_eq(nir_key("28005AB056123", 13, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_CHAR);
	/* letters elsewhere */
	ck_assert_int_eq(nir_key("2800575O56123", 13, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_CHAR);
	ck_assert_int_eq(nir_check("28005750561238X", 15, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_CHAR);
	ck_assert_int_eq(nir_check("2800575056123 9", 15, &why), -EINVAL);
	ck_assert_int_eq(why, NIR_BAD_CHAR);
	/* why may be NULL */
	ck_assert_int_eq(nir_check("280057505612389", 15, NULL), 0);
	ck_assert_int_eq(nir_check("280057505612388", 15, NULL), -EINVAL);
	/* names */
	ck_assert_str_eq(nir_reason_name(NIR_OK), "nir_ok");
	ck_assert_str_eq(nir_reason_name(NIR_BAD_MONTH), "nir_bad_month");
	ck_assert_str_eq(nir_reason_name(NIR_MISSING), "nir_missing");
	ck_assert_str_eq(nir_reason_name((enum nir_reason)99), "nir_invalid");
}
END_TEST

START_TEST(test_random_single_digit_errors)
{
	/* a key catches every single wrong digit: 10^k mod 97 != 0 */
	unsigned seed = (unsigned)time(NULL);
	if (getenv("TEST_SEED"))
		seed = (unsigned)strtoul(getenv("TEST_SEED"), NULL, 10);
	printf("check_nir random seed %u (TEST_SEED to replay)\n", seed);
	srand(seed);
	for (int n = 0; n < 2000; n++) {
		char nir[16] = "280057505612389";
		int pos = 7 + rand() % 6;       /* commune/order digits */
		char d = (char)('0' + rand() % 10);
		if (nir[pos] == d)
			continue;
		nir[pos] = d;
		enum nir_reason why;
		ck_assert_int_eq(nir_check(nir, 15, &why), -EINVAL);
		ck_assert_int_eq(why, NIR_BAD_KEY);
	}
}
END_TEST

START_TEST(test_mask)
{
	char out[32];
	ck_assert_str_eq(nir_mask("280057505612389", 15, out, sizeof(out)), "280************");
	ck_assert_str_eq(nir_mask("28", 2, out, sizeof(out)), "(none)");
	ck_assert_str_eq(nir_mask(NULL, 0, out, sizeof(out)), "(none)");
	ck_assert_str_eq(nir_mask("2\n0057505612389", 15, out, sizeof(out)), "2?0************");
	/* truncation keeps the NUL */
	ck_assert_str_eq(nir_mask("280057505612389", 15, out, 5), "280*");
	ck_assert_str_eq(nir_mask("280057505612389", 15, out, 3), "28");
	/* longer input is cut at 15 */
	ck_assert_uint_eq(strlen(nir_mask("280057505612389999", 18, out, sizeof(out))), 15);
	/* nothing of the digits after the year survives */
	nir_mask("280057505612389", 15, out, sizeof(out));
	ck_assert_ptr_null(strpbrk(out + 3, "0123456789"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("nir");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_known_keys);
	tcase_add_test(tc, test_corsica_lowercase_and_substitution);
	tcase_add_test(tc, test_structure);
	tcase_add_test(tc, test_random_single_digit_errors);
	tcase_add_test(tc, test_mask);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
