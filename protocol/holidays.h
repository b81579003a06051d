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
 * Good Friday and 26 December (art. L3134-13, Bas-Rhin, Haut-Rhin, Moselle);
 * with one of the HOLIDAYS_SLAVERY_* flags also that department's day of
 * the abolition of slavery (art. L3422-2 of the Code du travail and décret
 * n° 83-1003 of 23 November 1983 as amended: Mayotte 27 April, Martinique
 * 22 May, Guadeloupe and Saint-Martin 27 May, Guyane 10 June,
 * Saint-Barthélemy 9 October, La Réunion 20 December).
 * holidays_department_flags() gives the flags of a department number.
 *
 * Pure code: no I/O, no state; any thread.
 */
#ifndef VITALED_HOLIDAYS_H
#define VITALED_HOLIDAYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOLIDAYS_ALSACE_MOSELLE 1u
#define HOLIDAYS_SLAVERY_MAYOTTE (1u << 1)    /* 27 April */
#define HOLIDAYS_SLAVERY_MARTINIQUE (1u << 2) /* 22 May */
#define HOLIDAYS_SLAVERY_GUADELOUPE (1u << 3) /* 27 May: Guadeloupe, Saint-Martin */
#define HOLIDAYS_SLAVERY_GUYANE (1u << 4)     /* 10 June */
#define HOLIDAYS_SLAVERY_STBARTH (1u << 5)    /* 9 October */
#define HOLIDAYS_SLAVERY_REUNION (1u << 6)    /* 20 December */
#define HOLIDAYS_ALL_FLAGS 0x7fu

#define HOLIDAYS_YEAR_MIN 1583
#define HOLIDAYS_YEAR_MAX 9999
#define HOLIDAYS_MAX_PER_YEAR 20

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

/* The flags of a department as the INSEE numbers it: "01".."95" and "2A",
 * "2B" (0, or HOLIDAYS_ALSACE_MOSELLE for 57, 67, 68), "971" Guadeloupe,
 * "972" Martinique, "973" Guyane, "974" La Réunion, "976" Mayotte, "977"
 * Saint-Barthélemy, "978" Saint-Martin. -EINVAL for anything else
 * (Saint-Pierre-et-Miquelon and the Pacific collectivities have other
 * labour codes). */
int holidays_department_flags(const char *department, unsigned *flags);
/* A short name of the calendar flags gives ("metropolitan", "alsace-moselle",
 * "guadeloupe" ...), NULL for a combination no department has. */
const char *holidays_calendar_name(unsigned flags);

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
