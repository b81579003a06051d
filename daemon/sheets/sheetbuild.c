/* Building a care sheet in the daemon; see sheetbuild.h.
 *
 * The split of who says what is the point of this file: the till never
 * names the patient when a card was read (the card does), never gives the
 * evidence (the card session does), and never sets the ids, dates and
 * numbers the daemon and the queue assign. A degraded sheet is the one
 * case where the till names the patient, and it then carries no evidence
 * and says so in its mode.
 */
#include "daemon/sheets/sheetbuild.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/holidays.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Everything else a till may set is checked by sheet_from_json (unknown
 * keys are errors there). */
static const char *const patient_keys[] = { "nir", "birth_date" };
static const char *const daemon_keys[] = {
	"id", "terminal_id", "seq", "mode", "evidence", "due_date", "created",
	"practitioner_id", "structure_id", "v",
};

static bool
in(const char *k, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(k, list[i]) == 0)
			return true;
	return false;
}

static void
err_add(struct sheet_errors *errs, const char *field, const char *msg)
{
	if (errs->n >= SHEET_MAX_ERRORS) {
		errs->truncated = true;
		return;
	}
	snprintf(errs->e[errs->n].field, sizeof(errs->e[0].field), "%s", field);
	snprintf(errs->e[errs->n].msg, sizeof(errs->e[0].msg), "%s", msg);
	errs->n++;
}

int
sheetbuild_check_keys(json_t *obj, enum sheetbuild_who who, struct sheet_errors *errs)
{
	const char *k;
	json_t *v;
	memset(errs, 0, sizeof(*errs));
	if (!obj)
		return 0;
	if (!json_is_object(obj)) {
		err_add(errs, "sheet", "must be a JSON object");
		return -EINVAL;
	}
	json_object_foreach(obj, k, v) {
		if (in(k, daemon_keys, N(daemon_keys)))
			err_add(errs, k, "set by the daemon, not by the caller");
		else if (in(k, patient_keys, N(patient_keys)) && who != SHEETBUILD_DEGRADED)
			err_add(errs, k, who == SHEETBUILD_COMPLETE ?
			                         "comes from the draft's card" :
			                         "comes from the card (or use degraded: true without a card)");
	}
	return errs->n ? -EINVAL : 0;
}

int
sheetbuild_from_json(json_t *obj, enum sheetbuild_who who, struct sheet *s,
                     struct sheet_errors *errs)
{
	sheet_init(s);
	int r = sheetbuild_check_keys(obj, who, errs);
	if (r < 0 || !obj)
		return r;
	return sheet_from_json(obj, s, errs);
}

/* ------------------------------------------------------------------ */
/* the patient from the card */

static const char *
field(const struct card_result *r, const char *name)
{
	for (size_t i = 0; i < r->nfields && i < CARD_FIELDS_MAX; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			return r->fields[i].value;
	return NULL;
}

int
sheetbuild_card_digital_evidence(const struct card_result *r, const uint8_t **answer,
                                 size_t *answer_len, const uint8_t **credential,
                                 size_t *credential_len)
{
	*answer = *credential = NULL;
	*answer_len = *credential_len = 0;
	/* the phone's session keeps the bytes as received (docs/digital-card.md
	 * §11): the device-signed AUTHENTICATE answer, which proves the holder
	 * entered the code, and the credential, which holds the device key */
	const struct card_evidence *e = &r->evidence;
	if (!e->present || !e->holder_verified || !e->device_answer || !e->device_answer_len)
		return -ENOTSUP;
	*answer = e->device_answer;
	*answer_len = e->device_answer_len;
	*credential = e->credential;
	*credential_len = e->credential ? e->credential_len : 0;
	return 0;
}

/* n ASCII digits (already checked) as a number */
static int
digits(const char *p, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++)
		v = v * 10 + (p[i] - '0');
	return v;
}

int
sheetbuild_parse_iso(const char *iso, int64_t *out)
{
	/* YYYY-MM-DDTHH:MM:SS, then optional .fff, then Z */
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	*out = 0;
	if (!iso || strlen(iso) < sizeof(shape) - 1)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(shape) - 1; i++)
		if (shape[i] == 'd' ? (iso[i] < '0' || iso[i] > '9') : iso[i] != shape[i])
			return -EINVAL;
	const char *p = iso + sizeof(shape) - 1;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (strcmp(p, "Z") != 0)
		return -EINVAL;
	struct tm tm = {
		.tm_year = digits(iso, 4) - 1900, .tm_mon = digits(iso + 5, 2) - 1,
		.tm_mday = digits(iso + 8, 2),    .tm_hour = digits(iso + 11, 2),
		.tm_min = digits(iso + 14, 2),    .tm_sec = digits(iso + 17, 2),
	};
	time_t t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*out = (int64_t)t;
	return 0;
}

int
sheetbuild_patient_from_card(struct sheet *s, const struct card_result *r,
                             const char *read_at, int beneficiary, char *why, size_t whylen)
{
	bool patient = strcmp(r->kind, "patient") == 0 || strcmp(r->kind, "digital") == 0;
	if (!patient || !r->readable) {
		snprintf(why, whylen, "the card read last is %s (%s), not a readable patient card",
		         r->profile[0] ? r->profile : "unknown", r->kind[0] ? r->kind : "unknown");
		return -ENOENT;
	}
	if (beneficiary < 0 || (size_t)beneficiary >= r->nbeneficiaries ||
	    beneficiary >= CARD_BENEFICIARIES_MAX) {
		snprintf(why, whylen, "the card has %zu beneficiaries; there is no number %d",
		         r->nbeneficiaries, beneficiary);
		return -ENOENT;
	}
	const struct card_beneficiary *b = &r->beneficiaries[beneficiary];
	snprintf(s->nir, sizeof(s->nir), "%s", b->nir);
	snprintf(s->birth_date, sizeof(s->birth_date), "%s", b->birth_date);
	const char *reg = field(r, "regime"), *cai = field(r, "caisse"), *cen = field(r, "centre");
	const struct card_rights *cr = &r->rights;
	if (cr->state == CARD_RIGHTS_CHECKED && cr->beneficiary == beneficiary && cr->regime[0] &&
	    cr->caisse[0] && cr->centre[0]) {
		/* the insurer's word (the online rights check) over the till's */
		snprintf(s->regime, sizeof(s->regime), "%s", cr->regime);
		snprintf(s->caisse, sizeof(s->caisse), "%s", cr->caisse);
		snprintf(s->centre, sizeof(s->centre), "%s", cr->centre);
	} else if (!s->regime[0] && !s->caisse[0] && !s->centre[0] && reg && cai && cen) {
		snprintf(s->regime, sizeof(s->regime), "%s", reg);
		snprintf(s->caisse, sizeof(s->caisse), "%s", cai);
		snprintf(s->centre, sizeof(s->centre), "%s", cen);
	}
	memset(&s->evidence, 0, sizeof(s->evidence));
	if (strcmp(r->presentation, "digital-nfc") == 0 || strcmp(r->presentation, "digital-qr") == 0) {
		const uint8_t *a, *c;
		size_t alen, clen;
		s->mode = r->presentation[8] == 'q' ? SHEET_MODE_DIGITAL_QR : SHEET_MODE_DIGITAL_NFC;
		if (sheetbuild_card_digital_evidence(r, &a, &alen, &c, &clen) < 0 ||
		    alen > SHEET_EVIDENCE_MAX || clen > SHEET_CREDENTIAL_MAX) {
			snprintf(why, whylen, "this phone's session kept no device-signed answer (of at "
			                      "most %d bytes) to back a sheet", SHEET_EVIDENCE_MAX);
			return -ENOTSUP;
		}
		memcpy(s->evidence.device_answer, a, alen);
		s->evidence.device_answer_len = alen;
		if (clen)
			memcpy(s->evidence.credential, c, clen);
		s->evidence.credential_len = clen;
		return 0;
	}
	s->mode = SHEET_MODE_PHYSICAL;
	const char *serial = field(r, "serial");
	if (!serial || !serial[0]) {
		snprintf(why, whylen, "the card gave no serial number (MF_VITALE EF 2F02)");
		return -ENOTSUP;
	}
	snprintf(s->evidence.card_serial, sizeof(s->evidence.card_serial), "%s", serial);
	if (sheetbuild_parse_iso(read_at, &s->evidence.read_at) < 0) {
		snprintf(why, whylen, "the card session has no read time");
		return -ENOTSUP;
	}
	return 0;
}

int
sheetbuild_amc_from_rights(struct sheet *s, const struct card_result *r, int beneficiary,
                           int32_t today, struct sheet_errors *errs)
{
	const struct card_rights *cr = &r->rights;
	char msg[112];
	memset(errs, 0, sizeof(*errs));
	if (cr->state != CARD_RIGHTS_CHECKED || cr->beneficiary != beneficiary)
		return 0; /* no data: the till's word */
	if (!cr->has_amc) {
		if (s->amc_tiers_payant)
			err_add(errs, "amc.tiers_payant", "the rights check knows no AMC for this patient");
		return errs->n ? -EINVAL : 0;
	}
	if (s->amc && !s->amc_id[0] && strlen(cr->amc_id) < sizeof(s->amc_id)) {
		snprintf(s->amc_id, sizeof(s->amc_id), "%s", cr->amc_id);
	} else if (s->amc_id[0] && strcmp(s->amc_id, cr->amc_id) != 0) {
		snprintf(msg, sizeof(msg), "the rights check names AMC %.40s, not %.40s", cr->amc_id,
		         s->amc_id);
		err_add(errs, "amc.id", msg);
	}
	if (s->amc_tiers_payant && !cr->amc_tiers_payant)
		err_add(errs, "amc.tiers_payant", "the rights check grants no AMC tiers payant");
	int32_t to, care = s->care_date != SHEET_NO_DATE ? s->care_date : today;
	if (s->amc && cr->amc_to[0] && holidays_parse(cr->amc_to, &to) == 0 && to < care) {
		snprintf(msg, sizeof(msg), "the AMC rights ended on %s", cr->amc_to);
		err_add(errs, "amc", msg);
	}
	return errs->n ? -EINVAL : 0;
}

/* ------------------------------------------------------------------ */
/* what the daemon knows */

unsigned
sheetbuild_holiday_flags(const char *department, bool alsace_moselle)
{
	unsigned flags = 0;
	if (department && department[0] && holidays_department_flags(department, &flags) == 0)
		return flags;
	return alsace_moselle ? HOLIDAYS_ALSACE_MOSELLE : 0;
}

int32_t
sheetbuild_local_day(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	int32_t day = 0;
	if (!localtime_r(&tt, &tm) ||
	    holidays_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, &day) < 0)
		return (int32_t)(t / 86400);
	return day;
}

int
sheetbuild_finish(struct sheet *s, const struct sheetbuild_ctx *c, const uint8_t rnd[16],
                  bool draft)
{
	sheet_uuid_v4(rnd, s->id);
	snprintf(s->terminal_id, sizeof(s->terminal_id), "%s", c->terminal_id ? c->terminal_id : "");
	snprintf(s->practitioner_id, sizeof(s->practitioner_id), "%s",
	         c->practitioner_id ? c->practitioner_id : "");
	snprintf(s->structure_id, sizeof(s->structure_id), "%s",
	         c->structure_id ? c->structure_id : "");
	s->created = c->now;
	s->seq = 0;
	if (s->care_date == SHEET_NO_DATE)
		s->care_date = c->today;
	for (size_t i = 0; i < s->nlines && i < SHEET_MAX_LINES; i++)
		if (s->lines[i].date == SHEET_NO_DATE)
			s->lines[i].date = s->care_date;
	s->due_date = SHEET_NO_DATE;
	if (draft)
		return 0;
	return sheet_set_due_date(s, c->holiday_flags) < 0 ? -EINVAL : 0;
}

json_t *
sheetbuild_errors_json(const struct sheet_errors *e)
{
	json_t *arr = json_array();
	if (!arr)
		return NULL;
	for (size_t i = 0; i < e->n && i < SHEET_MAX_ERRORS; i++)
		json_array_append_new(arr, json_pack("{s:s,s:s}", "field", e->e[i].field, "reason",
		                                     e->e[i].msg));
	return json_pack("{s:s,s:s,s:o,s:b}", "field", e->n ? e->e[0].field : "sheet", "reason",
	                 e->n ? e->e[0].msg : "invalid", "errors", arr, "truncated", e->truncated);
}
