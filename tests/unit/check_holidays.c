/* Unit tests of protocol/holidays against tests/data/holidays_table.h, a
 * table computed independently (Gauss's Easter in Python, checked against
 * published dates): Easter 1900-2199, every holiday and every due date of
 * 2024-2030, with and without the Alsace-Moselle days; and every due date
 * of 2024-2030 in each overseas department against
 * tests/data/holidays_dept_table.h (the décret 83-1003 days typed from the
 * texts, in Python). */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../data/holidays_dept_table.h"
#include "../data/holidays_table.h"
#include "protocol/holidays.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int32_t
from_num(int ymd)
{
	int32_t d = 0;
	ck_assert_int_eq(holidays_from_civil(ymd / 10000, ymd / 100 % 100, ymd % 100, &d), 0);
	return d;
}

static int
to_num(int32_t day)
{
	int y, m, d;
	ck_assert_int_eq(holidays_to_civil(day, &y, &m, &d), 0);
	return y * 10000 + m * 100 + d;
}

START_TEST(test_civil)
{
	int32_t d = -1;
	ck_assert_int_eq(holidays_from_civil(1970, 1, 1, &d), 0);
	ck_assert_int_eq(d, 0);
	ck_assert_int_eq(holidays_weekday(0), 3); /* Thursday */
	ck_assert_int_eq(holidays_from_civil(2000, 3, 1, &d), 0);
	ck_assert_int_eq(d, 11017);
	ck_assert_int_eq(holidays_from_civil(2024, 2, 29, &d), 0);
	ck_assert_int_eq(holidays_from_civil(2023, 2, 29, &d), -EINVAL);
	ck_assert_int_eq(holidays_from_civil(2100, 2, 29, &d), -EINVAL);
	ck_assert_int_eq(holidays_from_civil(2000, 2, 29, &d), 0);
	ck_assert_int_eq(holidays_from_civil(2024, 4, 31, &d), -EINVAL);
	ck_assert_int_eq(holidays_from_civil(2024, 0, 1, &d), -EINVAL);
	ck_assert_int_eq(holidays_from_civil(1582, 12, 31, &d), -ERANGE);
	ck_assert_int_eq(holidays_from_civil(10000, 1, 1, &d), -ERANGE);
	/* round trip over the whole supported range, day by day */
	int32_t lo = 0, hi = 0;
	ck_assert_int_eq(holidays_from_civil(1583, 1, 1, &lo), 0);
	ck_assert_int_eq(holidays_from_civil(9999, 12, 31, &hi), 0);
	/* plain ifs: a Check assertion per day would cost more than the test */
	int py = 1583, pm = 1, pd = 0, pw = holidays_weekday(lo) - 1;
	long bad = 0;
	for (int32_t x = lo; x <= hi; x++) {
		int y, m, dd;
		int32_t back = -1;
		if (holidays_to_civil(x, &y, &m, &dd) != 0 || holidays_from_civil(y, m, dd, &back) != 0 ||
		    back != x)
			bad++;
		/* consecutive: the day after the previous one */
		if (!(dd == pd + 1 || (dd == 1 && (m == pm + 1 || (m == 1 && y == py + 1)))))
			bad++;
		if (holidays_weekday(x) != (pw + 1) % 7)
			bad++;
		py = y, pm = m, pd = dd, pw = holidays_weekday(x);
	}
	ck_assert_int_eq(bad, 0);
	ck_assert_int_eq(py, 9999);
	int y, m, dd;
	ck_assert_int_eq(holidays_to_civil(hi + 1, &y, &m, &dd), -ERANGE);
}
END_TEST

START_TEST(test_parse_format)
{
	int32_t d = 0;
	char buf[16];
	ck_assert_int_eq(holidays_parse("2024-07-14", &d), 0);
	ck_assert_int_eq(to_num(d), 20240714);
	ck_assert_int_eq(holidays_format(d, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "2024-07-14");
	const char *bad[] = { "2024-7-14", "2024-07-14 ", " 2024-07-14", "2024/07/14", "20240714",
		              "2024-02-30", "2024-13-01", "abcd-ef-gh", "", "2024-07-1x" };
	for (size_t i = 0; i < N(bad); i++)
		ck_assert_msg(holidays_parse(bad[i], &d) < 0, "accepted %s", bad[i]);
	ck_assert_int_eq(holidays_parse(NULL, &d), -EINVAL);
	ck_assert_int_eq(holidays_format(0, buf, 10), -EINVAL);
}
END_TEST

START_TEST(test_easter)
{
	for (size_t i = 0; i < N(easter_table); i++) {
		int m, d;
		ck_assert_int_eq(holidays_easter(easter_table[i][0], &m, &d), 0);
		ck_assert_msg(easter_table[i][1] == easter_table[i][0] * 10000 + m * 100 + d,
		              "Easter %d: table %d, got %02d-%02d", easter_table[i][0],
		              easter_table[i][1], m, d);
	}
	int m, d;
	ck_assert_int_eq(holidays_easter(1582, &m, &d), -ERANGE);
	/* the extremes of the Gregorian computus: 22 March and 25 April */
	ck_assert_int_eq(holidays_easter(2285, &m, &d), 0);
	ck_assert(m == 3 && d == 22);
	ck_assert_int_eq(holidays_easter(2038, &m, &d), 0);
	ck_assert(m == 4 && d == 25);
}
END_TEST

START_TEST(test_holidays_2024_2030)
{
	int32_t lo = from_num(20240101), hi = from_num(20301231);
	for (int am = 0; am <= 1; am++) {
		unsigned flags = am ? HOLIDAYS_ALSACE_MOSELLE : 0;
		size_t count = 0;
		for (int32_t x = lo; x <= hi; x++) {
			bool want = false;
			for (size_t i = 0; i < N(holiday_table); i++)
				if (holiday_table[i].date == to_num(x) && (am || !holiday_table[i].alsace_only))
					want = true;
			const char *name = NULL;
			bool got = holidays_is_holiday(x, flags, &name);
			ck_assert_msg(got == want, "%d (alsace %d): got %d want %d", to_num(x), am, got, want);
			ck_assert(got == (name != NULL));
			count += got;
		}
		ck_assert_uint_eq(count, am ? 7 * 13 : 7 * 11);
	}
	struct holiday h[HOLIDAYS_MAX_PER_YEAR];
	size_t n = 0;
	ck_assert_int_eq(holidays_list(2025, 0, h, HOLIDAYS_MAX_PER_YEAR, &n), 0);
	ck_assert_uint_eq(n, 11);
	ck_assert_int_eq(to_num(h[0].day), 20250101);
	ck_assert_int_eq(to_num(h[1].day), 20250421);
	ck_assert_ptr_nonnull(strstr(h[1].name, "Easter Monday"));
	ck_assert_int_eq(to_num(h[4].day), 20250529); /* Ascension */
	ck_assert_int_eq(to_num(h[5].day), 20250609); /* Whit Monday */
	ck_assert_int_eq(to_num(h[10].day), 20251225);
	for (size_t i = 1; i < n; i++)
		ck_assert_int_lt(h[i - 1].day, h[i].day);
	ck_assert_int_eq(holidays_list(2025, HOLIDAYS_ALSACE_MOSELLE, h, 3, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(to_num(h[1].day), 20250418); /* Good Friday */
}
END_TEST

START_TEST(test_due_dates)
{
	for (size_t i = 0; i < N(due_table); i++) {
		int32_t care = from_num(due_table[i][0]), out = 0;
		ck_assert_int_eq(holidays_due_date(care, false, 0, &out), 0);
		ck_assert_msg(to_num(out) == due_table[i][1], "%d +3: %d want %d", due_table[i][0],
		              to_num(out), due_table[i][1]);
		ck_assert_int_eq(holidays_due_date(care, true, 0, &out), 0);
		ck_assert_msg(to_num(out) == due_table[i][2], "%d +8: %d want %d", due_table[i][0],
		              to_num(out), due_table[i][2]);
		ck_assert_int_eq(holidays_due_date(care, false, HOLIDAYS_ALSACE_MOSELLE, &out), 0);
		ck_assert_int_eq(to_num(out), due_table[i][3]);
		ck_assert_int_eq(holidays_due_date(care, true, HOLIDAYS_ALSACE_MOSELLE, &out), 0);
		ck_assert_int_eq(to_num(out), due_table[i][4]);
	}
	ck_assert_uint_eq(N(due_table), 2557);
	/* hand-checked: Thursday 2024-12-19 → Fri 20, Mon 23, Tue 24 (25 Christmas) */
	int32_t out = 0;
	ck_assert_int_eq(holidays_due_date(from_num(20241219), false, 0, &out), 0);
	ck_assert_int_eq(to_num(out), 20241224);
	/* Friday 2024-12-20 in Alsace-Moselle: 25 and 26 December are both off */
	ck_assert_int_eq(holidays_due_date(from_num(20241220), false, HOLIDAYS_ALSACE_MOSELLE, &out), 0);
	ck_assert_int_eq(to_num(out), 20241227); /* Mon 23, Tue 24, Fri 27 */
	ck_assert_int_eq(holidays_add_working_days(from_num(20240101), 0, 0, &out), 0);
	ck_assert_int_eq(to_num(out), 20240101);
	int32_t last = 0;
	ck_assert_int_eq(holidays_from_civil(9999, 12, 31, &last), 0);
	ck_assert_int_eq(holidays_add_working_days(last, 1, 0, &out), -ERANGE);
}
END_TEST

/* Each overseas department, 2024-2030: the department's flags give the
 * table's due dates, and the metropolitan calendar would not (each
 * department's day changes some due date). */
START_TEST(test_overseas_due_dates)
{
	for (size_t k = 0; k < DEPT_TABLE_N; k++) {
		unsigned flags = 0;
		ck_assert_int_eq(holidays_department_flags(dept_table_depts[k], &flags), 0);
		ck_assert_uint_ne(flags, 0);
		size_t differ = 0;
		for (size_t i = 0; i < N(dept_due_table); i++) {
			int32_t care = from_num(dept_due_table[i][0]), out = 0, plain = 0;
			for (int tp = 0; tp < 2; tp++) {
				int want = dept_due_table[i][1 + 2 * k + tp];
				ck_assert_int_eq(holidays_due_date(care, tp, flags, &out), 0);
				ck_assert_msg(to_num(out) == want, "%s %d +%d: %d want %d", dept_table_depts[k],
				              dept_due_table[i][0], tp ? 8 : 3, to_num(out), want);
				ck_assert_int_eq(holidays_due_date(care, tp, 0, &plain), 0);
				differ += plain != out;
			}
		}
		ck_assert_msg(differ > 0, "%s: no due date differs from metropolitan France",
		              dept_table_depts[k]);
	}
}
END_TEST

START_TEST(test_departments)
{
	static const struct {
		const char *dept;
		int r;
		unsigned flags;
	} cases[] = {
		{ "75", 0, 0 },     { "01", 0, 0 },    { "95", 0, 0 },     { "2A", 0, 0 },
		{ "2B", 0, 0 },     { "57", 0, HOLIDAYS_ALSACE_MOSELLE },
		{ "67", 0, HOLIDAYS_ALSACE_MOSELLE },  { "68", 0, HOLIDAYS_ALSACE_MOSELLE },
		{ "971", 0, HOLIDAYS_SLAVERY_GUADELOUPE }, { "978", 0, HOLIDAYS_SLAVERY_GUADELOUPE },
		{ "972", 0, HOLIDAYS_SLAVERY_MARTINIQUE }, { "973", 0, HOLIDAYS_SLAVERY_GUYANE },
		{ "974", 0, HOLIDAYS_SLAVERY_REUNION },    { "976", 0, HOLIDAYS_SLAVERY_MAYOTTE },
		{ "977", 0, HOLIDAYS_SLAVERY_STBARTH },
		{ "20", -EINVAL, 0 }, { "00", -EINVAL, 0 }, { "96", -EINVAL, 0 }, { "975", -EINVAL, 0 },
		{ "979", -EINVAL, 0 }, { "987", -EINVAL, 0 }, { "2C", -EINVAL, 0 }, { "", -EINVAL, 0 },
		{ "9710", -EINVAL, 0 }, { "7", -EINVAL, 0 }, { "2a", -EINVAL, 0 },
	};
	for (size_t i = 0; i < N(cases); i++) {
		unsigned f = 99;
		ck_assert_msg(holidays_department_flags(cases[i].dept, &f) == cases[i].r, "%s",
		              cases[i].dept);
		ck_assert_msg(f == cases[i].flags, "%s: flags %u", cases[i].dept, f);
	}
	unsigned f;
	ck_assert_int_eq(holidays_department_flags(NULL, &f), -EINVAL);
	/* La Réunion 2024: 20 December is a holiday there and only there */
	const char *name = NULL;
	ck_assert(holidays_is_holiday(from_num(20241220), HOLIDAYS_SLAVERY_REUNION, &name));
	ck_assert_ptr_nonnull(strstr(name, "Réunion"));
	ck_assert(!holidays_is_holiday(from_num(20241220), 0, NULL));
	ck_assert(!holidays_is_holiday(from_num(20241220), HOLIDAYS_ALSACE_MOSELLE, NULL));
	/* every flag together: 11 + 2 + 6 days, all listed */
	struct holiday h[HOLIDAYS_MAX_PER_YEAR];
	size_t n;
	ck_assert_int_eq(holidays_list(2025, HOLIDAYS_ALL_FLAGS, h, HOLIDAYS_MAX_PER_YEAR, &n), 0);
	ck_assert_uint_eq(n, 19);
	ck_assert_str_eq(holidays_calendar_name(0), "metropolitan");
	ck_assert_str_eq(holidays_calendar_name(HOLIDAYS_SLAVERY_GUYANE), "guyane");
	ck_assert_ptr_null(holidays_calendar_name(HOLIDAYS_ALL_FLAGS));
}
END_TEST

static Suite *
holidays_suite(void)
{
	Suite *s = suite_create("holidays");
	TCase *tc = tcase_create("holidays");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_civil);
	tcase_add_test(tc, test_parse_format);
	tcase_add_test(tc, test_easter);
	tcase_add_test(tc, test_holidays_2024_2030);
	tcase_add_test(tc, test_due_dates);
	tcase_add_test(tc, test_overseas_due_dates);
	tcase_add_test(tc, test_departments);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(holidays_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
