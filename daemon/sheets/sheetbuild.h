/* Building a care sheet in the daemon: what the till sends (the JSON form of
 * docs/care-sheet.md, restricted to what the till may say), the patient
 * and the evidence from the current card session (or the degraded form,
 * without a card), and what only the daemon knows (sheet id, terminal,
 * practitioner, creation time, due date). The result goes through
 * sheet_validate like any sheet.
 *
 * Evidence from the card (DESIGN.md "Care sheets"): a physical card gives
 * its serial (the card field "serial", from MF_VITALE EF 2F02) and the time
 * of the read; a phone gives the device-signed AUTHENTICATE answer and the
 * credential, exactly as received (sheetbuild_card_digital_evidence).
 *
 * Pure functions over their arguments (the card result is the caller's);
 * any thread.
 */
#ifndef VITALED_SHEETBUILD_H
#define VITALED_SHEETBUILD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/cards/cards.h"
#include "protocol/sheet.h"

/* What the daemon fills in. */
struct sheetbuild_ctx {
	const char *terminal_id;
	const char *practitioner_id;  /* NULL or "" when unknown (a draft may lack it) */
	const char *structure_id;     /* NULL or "" */
	unsigned holiday_flags;       /* HOLIDAYS_ALSACE_MOSELLE */
	int64_t now;                  /* seconds since the epoch */
	int32_t today;                /* local date, day number */
};

/* Who may set a key of the sheet's JSON. */
enum sheetbuild_who {
	SHEETBUILD_TILL,      /* a sheet from a card: the till's part only */
	SHEETBUILD_DEGRADED,  /* no card: the till also gives the patient (nir, birth_date) */
	SHEETBUILD_COMPLETE,  /* completing a draft: the till's part, no patient */
};

/* Check that obj (a JSON object) holds only keys `who` may set: one error
 * per other key ("set by the daemon" / "comes from the card"). Returns 0
 * or -EINVAL. */
int sheetbuild_check_keys(json_t *obj, enum sheetbuild_who who, struct sheet_errors *errs);

/* sheet_init, then sheet_from_json(obj) (obj may be NULL: an empty sheet)
 * after sheetbuild_check_keys. 0 or -EINVAL with errs. */
int sheetbuild_from_json(json_t *obj, enum sheetbuild_who who, struct sheet *s,
                         struct sheet_errors *errs);

/* Take the patient and the evidence of beneficiary (index on the card, 0
 * the holder) from a card result read at read_at (ISO 8601 UTC, as the
 * readers give it). The insurer organisation comes from the card when it
 * carries one (the digital credential's regime/caisse/centre) and the sheet
 * has none; the insurer's, over the till's, when the online rights check
 * of that beneficiary answered (r->rights, state CHECKED). Returns 0; -ENOENT when there is no such beneficiary or the
 * card is not a patient's (reason in why); -ENOTSUP when the card cannot
 * give the evidence a sheet needs (why says what is missing). */
int sheetbuild_patient_from_card(struct sheet *s, const struct card_result *r,
                                 const char *read_at, int beneficiary, char *why, size_t whylen);

/* The AMC (complementary insurer) against the online rights check of
 * beneficiary in r, when it answered (r->rights, state CHECKED): the AMC's
 * number is filled from it when the sheet has an AMC without one; a number
 * other than the insurer's, an AMC tiers payant the rights do not grant
 * (or with no AMC known), or AMC rights that ended before the care date
 * (today when the sheet has none yet) are one error each in errs. Without
 * a rights check nothing is changed. 0 or -EINVAL. */
int sheetbuild_amc_from_rights(struct sheet *s, const struct card_result *r, int beneficiary,
                               int32_t today, struct sheet_errors *errs);

/* The digital presentation's evidence in r (struct card_evidence: owned
 * by r, valid as long as r): the device answer and the credential, as
 * received; -ENOTSUP when r has none (not a phone, or the holder did not
 * enter the code). */
int sheetbuild_card_digital_evidence(const struct card_result *r, const uint8_t **answer,
                                     size_t *answer_len, const uint8_t **credential,
                                     size_t *credential_len);

/* Fill what the daemon knows: id (a fresh UUID v4 from rnd), terminal,
 * practitioner and structure (when known), created, the care date when
 * absent (today), an act's date when absent (the care date), and the due
 * date (unless draft). 0 or -EINVAL (a care date the calendar cannot take). */
int sheetbuild_finish(struct sheet *s, const struct sheetbuild_ctx *c, const uint8_t rnd[16],
                      bool draft);

/* The holiday flags the due dates use: the department's ([terminal]
 * department, docs/vitaled.conf.5), else Alsace-Moselle's when the old
 * [queue] alsace_moselle is set, else none (metropolitan France). */
unsigned sheetbuild_holiday_flags(const char *department, bool alsace_moselle);

/* The local calendar day of t (seconds since the epoch). */
int32_t sheetbuild_local_day(int64_t t);

/* Seconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.fff]Z"; -EINVAL. */
int sheetbuild_parse_iso(const char *iso, int64_t *out);

/* {"field": first field, "reason": first message, "errors": [{field,
 * reason} ...]} for an InvalidSheet error; NULL on allocation failure. */
json_t *sheetbuild_errors_json(const struct sheet_errors *e);

#endif
