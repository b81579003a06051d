/* French public holidays and working days; see holidays.h.
 *
 * Day numbers use Howard Hinnant's days_from_civil / civil_from_days
 * ("chrono-Compatible Low-Level Date Algorithms"), exact for the
 * proleptic Gregorian calendar. Easter is the anonymous Gregorian
 * algorithm as given by Meeus, "Astronomical Algorithms", ch. 8 (also
 * known as Jones/Butcher); the tests check it against Gauss's method and
 * published dates. */
#include "protocol/holidays.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int32_t
days_from_civil(int y, int m, int d)
{
	y -= m <= 2;
	int era = (y >= 0 ? y : y - 399) / 400;
	int yoe = y - era * 400;
	int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (int32_t)(era * 146097 + doe - 719468);
}

static void
civil_from_days(int32_t z, int *y, int *m, int *d)
{
	z += 719468;
	int32_t era = (z >= 0 ? z : z - 146096) / 146097;
	int32_t doe = z - era * 146097;
	int32_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int32_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int32_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

static bool
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(int y, int m)
{
	static const int n[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && is_leap(y) ? 29 : n[m - 1];
}

int
holidays_from_civil(int y, int m, int d, int32_t *day)
{
	*day = 0;
	if (y < HOLIDAYS_YEAR_MIN || y > HOLIDAYS_YEAR_MAX)
		return -ERANGE;
	if (m < 1 || m > 12 || d < 1 || d > month_days(y, m))
		return -EINVAL;
	*day = days_from_civil(y, m, d);
	return 0;
}

static int32_t day_min(void) { return days_from_civil(HOLIDAYS_YEAR_MIN, 1, 1); }
static int32_t day_max(void) { return days_from_civil(HOLIDAYS_YEAR_MAX, 12, 31); }

int
holidays_to_civil(int32_t day, int *y, int *m, int *d)
{
	*y = *m = *d = 0;
	if (day < day_min() || day > day_max())
		return -ERANGE;
	civil_from_days(day, y, m, d);
	return 0;
}

int
holidays_weekday(int32_t day)
{
	/* 1970-01-01 was a Thursday (3 with Monday = 0) */
	int w = (int)((day % 7 + 7 + 3) % 7);
	return w;
}

bool
holidays_date_shape(const char *s)
{
	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	return true;
}

int
holidays_parse(const char *s, int32_t *day)
{
	*day = 0;
	if (!s)
		return -EINVAL;
	int v[3] = { 0, 0, 0 };
	static const int width[3] = { 4, 2, 2 };
	const char *p = s;
	for (int f = 0; f < 3; f++) {
		for (int i = 0; i < width[f]; i++, p++) {
			if (*p < '0' || *p > '9')
				return -EINVAL;
			v[f] = v[f] * 10 + (*p - '0');
		}
		if (f < 2 && *p++ != '-')
			return -EINVAL;
	}
	if (*p != '\0')
		return -EINVAL;
	return holidays_from_civil(v[0], v[1], v[2], day);
}

int
holidays_format(int32_t day, char *out, size_t outlen)
{
	int y, m, d;
	if (!out || outlen < 11)
		return -EINVAL;
	out[0] = '\0';
	int r = holidays_to_civil(day, &y, &m, &d);
	if (r < 0)
		return r;
	snprintf(out, outlen, "%04d-%02d-%02d", y, m, d);
	return 0;
}

int
holidays_easter(int year, int *month, int *day)
{
	*month = *day = 0;
	if (year < HOLIDAYS_YEAR_MIN || year > HOLIDAYS_YEAR_MAX)
		return -ERANGE;
	int a = year % 19;
	int b = year / 100;
	int c = year % 100;
	int d = b / 4;
	int e = b % 4;
	int f = (b + 8) / 25;
	int g = (b - f + 1) / 3;
	int h = (19 * a + b - d - g + 15) % 30;
	int i = c / 4;
	int k = c % 4;
	int l = (32 + 2 * e + 2 * i - h - k) % 7;
	int m = (a + 11 * h + 22 * l) / 451;
	*month = (h + l - 7 * m + 114) / 31;
	*day = (h + l - 7 * m + 114) % 31 + 1;
	return 0;
}

struct fixed {
	int m, d;
	unsigned only; /* 0: everywhere; else the flag that adds it */
	const char *name;
};

static const struct fixed fixed_days[] = {
	{ 1, 1, 0, "New Year's Day (jour de l'an)" },
	{ 5, 1, 0, "Labour Day (fête du Travail)" },
	{ 5, 8, 0, "Victory in Europe Day (Victoire 1945)" },
	{ 7, 14, 0, "Bastille Day (fête nationale)" },
	{ 8, 15, 0, "Assumption (Assomption)" },
	{ 11, 1, 0, "All Saints' Day (Toussaint)" },
	{ 11, 11, 0, "Armistice Day (Armistice 1918)" },
	{ 12, 25, 0, "Christmas Day (Noël)" },
	{ 12, 26, HOLIDAYS_ALSACE_MOSELLE, "St Stephen's Day (Saint-Étienne, Alsace-Moselle)" },
	/* Code du travail L3422-2, décret 83-1003 */
	{ 4, 27, HOLIDAYS_SLAVERY_MAYOTTE, "Abolition of slavery (Mayotte)" },
	{ 5, 22, HOLIDAYS_SLAVERY_MARTINIQUE, "Abolition of slavery (Martinique)" },
	{ 5, 27, HOLIDAYS_SLAVERY_GUADELOUPE, "Abolition of slavery (Guadeloupe, Saint-Martin)" },
	{ 6, 10, HOLIDAYS_SLAVERY_GUYANE, "Abolition of slavery (Guyane)" },
	{ 10, 9, HOLIDAYS_SLAVERY_STBARTH, "Abolition of slavery (Saint-Barthélemy)" },
	{ 12, 20, HOLIDAYS_SLAVERY_REUNION, "Abolition of slavery (La Réunion)" },
};

struct movable {
	int offset; /* days after Easter Sunday */
	unsigned only;
	const char *name;
};

static const struct movable movable_days[] = {
	{ -2, HOLIDAYS_ALSACE_MOSELLE, "Good Friday (Vendredi saint, Alsace-Moselle)" },
	{ 1, 0, "Easter Monday (lundi de Pâques)" },
	{ 39, 0, "Ascension Day (Ascension)" },
	{ 50, 0, "Whit Monday (lundi de Pentecôte)" },
};

static const struct {
	const char *dept;
	unsigned flags;
	const char *name;
} departments[] = {
	{ "57", HOLIDAYS_ALSACE_MOSELLE, "alsace-moselle" },
	{ "67", HOLIDAYS_ALSACE_MOSELLE, "alsace-moselle" },
	{ "68", HOLIDAYS_ALSACE_MOSELLE, "alsace-moselle" },
	{ "971", HOLIDAYS_SLAVERY_GUADELOUPE, "guadeloupe" },
	{ "972", HOLIDAYS_SLAVERY_MARTINIQUE, "martinique" },
	{ "973", HOLIDAYS_SLAVERY_GUYANE, "guyane" },
	{ "974", HOLIDAYS_SLAVERY_REUNION, "la-reunion" },
	{ "976", HOLIDAYS_SLAVERY_MAYOTTE, "mayotte" },
	{ "977", HOLIDAYS_SLAVERY_STBARTH, "saint-barthelemy" },
	{ "978", HOLIDAYS_SLAVERY_GUADELOUPE, "saint-martin" },
};

int
holidays_department_flags(const char *dep, unsigned *flags)
{
	*flags = 0;
	if (!dep)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(departments) / sizeof(departments[0]); i++) {
		if (strcmp(dep, departments[i].dept) == 0) {
			*flags = departments[i].flags;
			return 0;
		}
	}
	/* metropolitan: 01..95 (no 20, Corsica is 2A and 2B) */
	if (strcmp(dep, "2A") == 0 || strcmp(dep, "2B") == 0)
		return 0;
	if (strlen(dep) == 2 && dep[0] >= '0' && dep[0] <= '9' && dep[1] >= '0' && dep[1] <= '9') {
		int n = (dep[0] - '0') * 10 + (dep[1] - '0');
		if (n >= 1 && n <= 95 && n != 20)
			return 0;
	}
	return -EINVAL;
}

const char *
holidays_calendar_name(unsigned flags)
{
	if (flags == 0)
		return "metropolitan";
	for (size_t i = 0; i < sizeof(departments) / sizeof(departments[0]); i++)
		if (departments[i].flags == flags)
			return flags == HOLIDAYS_SLAVERY_GUADELOUPE ? "guadeloupe-saint-martin" :
			                                               departments[i].name;
	return NULL;
}

int
holidays_list(int year, unsigned flags, struct holiday *out, size_t max, size_t *n)
{
	struct holiday all[HOLIDAYS_MAX_PER_YEAR];
	size_t k = 0;
	int em, ed;
	*n = 0;
	int r = holidays_easter(year, &em, &ed);
	if (r < 0)
		return r;
	int32_t easter = days_from_civil(year, em, ed);
	for (size_t i = 0; i < sizeof(fixed_days) / sizeof(fixed_days[0]); i++)
		if (!fixed_days[i].only || (flags & fixed_days[i].only))
			all[k++] = (struct holiday){ days_from_civil(year, fixed_days[i].m, fixed_days[i].d),
				                     fixed_days[i].name };
	for (size_t i = 0; i < sizeof(movable_days) / sizeof(movable_days[0]); i++)
		if (!movable_days[i].only || (flags & movable_days[i].only))
			all[k++] = (struct holiday){ easter + movable_days[i].offset,
				                     movable_days[i].name };
	/* insertion sort by date; Ascension may fall on 1 or 8 May: both are
	 * kept, one day can carry two names (the first one is reported) */
	for (size_t i = 1; i < k; i++) {
		struct holiday t = all[i];
		size_t j = i;
		while (j > 0 && all[j - 1].day > t.day) {
			all[j] = all[j - 1];
			j--;
		}
		all[j] = t;
	}
	for (size_t i = 0; i < k && i < max; i++)
		out[i] = all[i];
	*n = k < max ? k : max;
	return 0;
}

bool
holidays_is_holiday(int32_t day, unsigned flags, const char **name)
{
	int y, m, d;
	struct holiday h[HOLIDAYS_MAX_PER_YEAR];
	size_t n = 0;
	if (name)
		*name = NULL;
	if (holidays_to_civil(day, &y, &m, &d) < 0 ||
	    holidays_list(y, flags, h, HOLIDAYS_MAX_PER_YEAR, &n) < 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (h[i].day == day) {
			if (name)
				*name = h[i].name;
			return true;
		}
	}
	return false;
}

bool
holidays_is_working_day(int32_t day, unsigned flags)
{
	return holidays_weekday(day) < 5 && !holidays_is_holiday(day, flags, NULL);
}

int
holidays_add_working_days(int32_t from, unsigned n, unsigned flags, int32_t *out)
{
	*out = from;
	if (from < day_min() || from > day_max())
		return -ERANGE;
	if (n > 3650)
		return -ERANGE;
	int32_t day = from;
	while (n > 0) {
		day++;
		if (day > day_max())
			return -ERANGE;
		if (holidays_is_working_day(day, flags))
			n--;
	}
	*out = day;
	return 0;
}

int
holidays_due_date(int32_t care_date, bool tiers_payant, unsigned flags, int32_t *out)
{
	return holidays_add_working_days(
		care_date, tiers_payant ? HOLIDAYS_DUE_TIERS_PAYANT : HOLIDAYS_DUE_PATIENT_PAID, flags,
		out);
}
