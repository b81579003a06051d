/* French public holidays and working-day arithmetic, for the due date of a
 * care sheet (DESIGN.md "Care sheets"; CSS R.161-47: a sheet reaches the
 * insurer within 3 working days when the patient paid, 8 under tiers payant).
 *
 * Dates are day numbers: days since 1970-01-01 in the proleptic Gregorian
 * calendar (negative before it). Supported years: 1583..9999; outside them
 * functions return -ERANGE. Working days are Monday to Friday except the
 * public holidays of the Code du travail art. L3133-1: 1 January, Easter
 * Monday, 1 May, 8 May, Ascension Thursday, Whit Monday, 14 July, 15 August,
 * 1 November, 11 November, 25 December; with HOLIDAYS_ALSACE_MOSELLE also
 * Good Friday and 26 December (art. L3134-13, Bas-Rhin, Haut-Rhin, Moselle).
 *
 * Pure code: no I/O, no state; any thread.
 */
#ifndef VITALED_HOLIDAYS_H
#define VITALED_HOLIDAYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOLIDAYS_ALSACE_MOSELLE 1u

#define HOLIDAYS_YEAR_MIN 1583
#define HOLIDAYS_YEAR_MAX 9999
#define HOLIDAYS_MAX_PER_YEAR 13

/* Working days after the care date by which a sheet must reach the insurer. */
#define HOLIDAYS_DUE_PATIENT_PAID 3
#define HOLIDAYS_DUE_TIERS_PAYANT 8

struct holiday {
	int32_t day;       /* day number */
	const char *name;  /* static English-and-French label, e.g. "Easter Monday (lundi de Pâques)" */
};

/* Day number of y-m-d; -EINVAL for an impossible date, -ERANGE outside the
 * supported years. */
int holidays_from_civil(int y, int m, int d, int32_t *day);
/* Calendar date of a day number (always succeeds for supported years;
 * -ERANGE otherwise). */
int holidays_to_civil(int32_t day, int *y, int *m, int *d);
/* 0 = Monday ... 6 = Sunday. */
int holidays_weekday(int32_t day);
/* Parse exactly "YYYY-MM-DD" (nothing before or after). 0 or -EINVAL/-ERANGE. */
int holidays_parse(const char *s, int32_t *day);
/* "YYYY-MM-DD" by shape only (digits and dashes, any values): a birth date
 * on a Vitale card may be a lunar one (e.g. day 31 of February), so the
 * calendar is not checked. */
bool holidays_date_shape(const char *s);
/* Write "YYYY-MM-DD" into out (at least 11 bytes). 0 or -ERANGE/-EINVAL. */
int holidays_format(int32_t day, char *out, size_t outlen);

/* Easter Sunday of year (Gregorian computus, Meeus/Jones/Butcher). */
int holidays_easter(int year, int *month, int *day);

/* The public holidays of year in date order; *n is how many (<= max). */
int holidays_list(int year, unsigned flags, struct holiday *out, size_t max, size_t *n);
/* True if day is a public holiday; *name (may be NULL) gets its label. */
bool holidays_is_holiday(int32_t day, unsigned flags, const char **name);
/* True for Monday..Friday that is not a public holiday. */
bool holidays_is_working_day(int32_t day, unsigned flags);
/* The n-th working day after from (from itself never counts; n = 0 gives
 * from). 0 or -ERANGE. */
int holidays_add_working_days(int32_t from, unsigned n, unsigned flags, int32_t *out);
/* The due date of a sheet with this care date: care date + 3 working days,
 * or + 8 under tiers payant. */
int holidays_due_date(int32_t care_date, bool tiers_payant, unsigned flags, int32_t *out);

#endif
