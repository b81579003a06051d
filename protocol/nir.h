/* NIR (numéro d'inscription au répertoire, the French social security
 * number) validation and masking.
 *
 * A NIR is 13 characters and a 2-digit key: key = 97 - (N mod 97), N the
 * 13-character number read as an integer, where a Corsican department
 * "2A" counts as 19 and "2B" as 18 (the INSEE rule; DESIGN.md "What is
 * public"). Spaces are not accepted here: callers strip display spacing.
 *
 * Structure checked (positions 1-based):
 *   1      sex: 1 or 2; also 3 and 4, and 7 and 8 (temporary numbers given
 *          while INSEE registration is pending, e.g. to people born
 *          abroad): the key rule is the same for all of them
 *   2-3    year of birth, 2 digits
 *   4-5    month: 01-12, or the INSEE codes for an incomplete civil
 *          status, 20-42 and 50-99 (never 00, 13-19 or 43-49)
 *   6-7    department: 01-99, or 2A / 2B (upper or lower case)
 *   8-13   commune and order number, digits
 *   14-15  key, 01-97, equal to the computed one
 * A department 97/98 followed by a 3-digit commune is the same digits
 * regrouped, so it needs no separate rule.
 *
 * Pure code, no state; thread-safe. Never log a NIR: use nir_mask().
 */
#ifndef VITALED_NIR_H
#define VITALED_NIR_H

#include <stdbool.h>
#include <stddef.h>

#define NIR_LEN 15       /* with the key */
#define NIR_BODY_LEN 13

enum nir_reason {
	NIR_OK = 0,
	NIR_BAD_LENGTH,      /* not 15 characters (or 13 for nir_key) */
	NIR_BAD_CHAR,        /* a character other than a digit where one is due */
	NIR_BAD_SEX,
	NIR_BAD_MONTH,
	NIR_BAD_DEPARTMENT,
	NIR_BAD_KEY,         /* key is not the computed one */
	NIR_MISSING,         /* no NIR at all (for callers' records) */
};

/* Check a 15-character NIR. Returns 0 (NIR_OK in *why) or -EINVAL with the
 * first failing rule in *why (why may be NULL). */
int nir_check(const char *nir, size_t len, enum nir_reason *why);

/* Key of a 13-character body: 1..97, or -EINVAL (with *why set) when the
 * body is not well formed. */
int nir_key(const char *body, size_t len, enum nir_reason *why);

/* Stable name: "nir_ok", "nir_bad_key", ... */
const char *nir_reason_name(enum nir_reason r);

/* A masked form for logs and screens that need only to tell holders
 * apart: the sex digit and birth year kept, every other character '*'
 * ("184************"). Always NUL-terminates out (outlen > 0); returns out.
 * A NULL or too short nir gives "(none)". */
char *nir_mask(const char *nir, size_t len, char *out, size_t outlen);

#endif
