/* The care-sheet model (feuille de soins électronique): its fields, its
 * validation, its JSON form (the local API's) and its field order for the
 * deterministic CBOR encoding that gets signed (DESIGN.md "Care sheets";
 * docs/care-sheet.md has every field and rule).
 *
 * Contents follow the arrêté of 9 April 1998, art. 1 (date, daily sequence
 * number, NIR, insurer organisation, practitioner and structure ids,
 * prescriber, insurance type, acts with date/code/coefficient/amount,
 * totals, AMC flag), plus vitaled's own: sheet id, terminal id, presentation
 * mode, the patient's evidence, due date (CSS R.161-47) and creation time.
 * The official FSE/B2 encoding is not public; this is vitaled's open model.
 *
 * The model is a fixed-size struct (no allocation): a sheet is bounded by
 * SHEET_MAX_ACTS acts and SHEET_EVIDENCE_MAX evidence bytes.
 *
 * Flow in the daemon: sheet_init → sheet_from_json (what the till sent) →
 * fill what the daemon knows (id, terminal, patient from the card session,
 * evidence, created) → sheet_set_due_date → sheet_validate → encode and sign
 * (sheet_encode with the CBOR encoder; the signature is protocol/cose's) →
 * queue_put with the sequence number assigned inside the transaction
 * (the queue's seal callback sets s->seq, then encodes and signs).
 *
 * JSON is parsed with jansson as a data format; no I/O. Pure code, any thread.
 */
#ifndef VITALED_SHEET_H
#define VITALED_SHEET_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHEET_ID_LEN 36
#define SHEET_IDENT_MAX 32 /* longest identifier accepted for checking */
#define SHEET_TERMINAL_MAX 64
#define SHEET_MAX_ACTS 32
#define SHEET_CODE_MAX 7
#define SHEET_SERIAL_MAX 32
#define SHEET_EVIDENCE_MAX 2048      /* the phone's device-signed answer (≤ 1024 by the protocol) */
#define SHEET_CREDENTIAL_MAX 8192    /* the phone's credential, certificates included */
#define SHEET_MAX_AMOUNT 100000000LL /* cents: 1,000,000.00 EUR per act or total */
#define SHEET_MAX_COEF_MILLI 1000000u/* coefficient ≤ 1000.000 */
#define SHEET_MAX_AGE_DAYS 730       /* care and act dates: at most two years old */
#define SHEET_MAX_ERRORS 16
#define SHEET_NO_DATE INT32_MIN      /* an absent optional date */

/* Nature of insurance. The numbers are vitaled's codes in the signed CBOR. */
enum sheet_insurance {
	SHEET_INS_NONE = 0,
	SHEET_INS_MALADIE = 10,   /* "maladie" */
	SHEET_INS_MATERNITE = 30, /* "maternite" */
	SHEET_INS_AT_MP = 41,     /* "at_mp": accident du travail / maladie professionnelle */
	SHEET_INS_SMG = 90,       /* "smg": soins médicaux gratuits */
};

/* How the patient's card was presented. */
enum sheet_mode {
	SHEET_MODE_NONE = 0,
	SHEET_MODE_PHYSICAL,     /* "physical": the chip card in a reader */
	SHEET_MODE_DIGITAL_NFC,  /* "digital-nfc": the phone over NFC, holder verified */
	SHEET_MODE_DIGITAL_QR,   /* "digital-qr": the phone's QR code */
	SHEET_MODE_DEGRADED,     /* "degraded": no card; flagged as such */
};

struct sheet_act {
	int32_t date;          /* day number (protocol/holidays.h) */
	char code[SHEET_CODE_MAX + 1]; /* NGAP key letters (1-5 capitals) or CCAM (AAAA999) */
	uint32_t coef_milli;   /* coefficient × 1000 */
	int64_t amount;        /* cents */
};

struct sheet_evidence {
	/* physical card */
	char card_serial[SHEET_SERIAL_MAX + 1];
	int64_t read_at;       /* seconds since the epoch; 0 = none */
	/* digital card: the device-signed AUTHENTICATE answer, bytes as received */
	uint8_t device_answer[SHEET_EVIDENCE_MAX];
	size_t device_answer_len;
	/* digital card: the credential (COSE_Sign1) as read, optional but
	 * advised (docs/digital-card.md §11: the device key is only in there) */
	uint8_t credential[SHEET_CREDENTIAL_MAX];
	size_t credential_len;
};

struct sheet {
	char id[SHEET_ID_LEN + 1];             /* UUID v4, lower case */
	char terminal_id[SHEET_TERMINAL_MAX + 1];
	int32_t care_date;                     /* the sheet's date (and its sequence day) */
	uint32_t seq;                          /* daily sequence number; 0 until the queue sets it */
	char nir[16];                          /* 13 characters + 2-digit key */
	char birth_date[11];                   /* optional: beneficiary's, "YYYY-MM-DD" as on the card, "" none */
	uint32_t birth_rank;                   /* optional: 1..9, 0 none */
	char regime[3], caisse[4], centre[5];  /* insurer organisation: 2, 3, 4 digits */
	/* Identifiers are held with room to spare so that a wrong length is
	 * refused by sheet_validate with its name, never cut to fit. */
	char practitioner_id[SHEET_IDENT_MAX + 1]; /* 9 (Assurance Maladie) or 11 (RPPS) digits */
	char structure_id[SHEET_IDENT_MAX + 1];    /* optional: 9 (FINESS) or 14 (SIRET) digits, "" none */
	char prescriber_id[SHEET_IDENT_MAX + 1];   /* optional: 9 or 11 digits, "" none */
	int32_t prescription_date;             /* optional, SHEET_NO_DATE none */
	enum sheet_insurance insurance;
	int32_t at_date;                       /* date of the accident/disease: required for at_mp only */
	size_t nacts;
	struct sheet_act acts[SHEET_MAX_ACTS];
	int64_t total, amo, amc_amount, patient; /* cents: total = Σ acts = amo + amc + patient */
	bool amc;                              /* a complementary insurer (AMC) takes part */
	bool tiers_payant;                     /* the patient does not advance the insured part */
	enum sheet_mode mode;
	struct sheet_evidence evidence;
	int32_t due_date;                      /* SHEET_NO_DATE until sheet_set_due_date */
	int64_t created;                       /* seconds since the epoch; 0 until set */
};

struct sheet_error {
	char field[40];  /* "acts[3].amount", "nir", ... */
	char msg[112];
};

struct sheet_errors {
	size_t n;
	bool truncated;  /* more problems than SHEET_MAX_ERRORS */
	struct sheet_error e[SHEET_MAX_ERRORS];
};

/* What validation needs to know about the world. */
struct sheet_check {
	int32_t today;        /* day number of the local date */
	int64_t now;          /* seconds since the epoch */
	bool draft;           /* kiosk draft: acts, totals, insurer and practitioner may be missing */
};

/* Empty sheet: all absent, dates SHEET_NO_DATE. */
void sheet_init(struct sheet *s);

/* Read the JSON object (the API's form; docs/care-sheet.md) into s, which
 * should come from sheet_init. Absent keys leave s as it was; unknown keys,
 * wrong types and malformed values are errors. Returns 0, or -EINVAL with one
 * entry in errs per problem. */
int sheet_from_json(json_t *obj, struct sheet *s, struct sheet_errors *errs);

/* The JSON form of s (all present fields; the evidence bytes in base64).
 * Returns a new reference, or NULL on allocation failure. */
json_t *sheet_to_json(const struct sheet *s);

/* Check every rule; returns 0 or -EINVAL with one entry in errs per problem. */
int sheet_validate(const struct sheet *s, const struct sheet_check *c, struct sheet_errors *errs);

/* Set s->due_date from the care date and tiers payant (3 or 8 working days;
 * flags: HOLIDAYS_ALSACE_MOSELLE). 0 or -EINVAL/-ERANGE. */
int sheet_set_due_date(struct sheet *s, unsigned holiday_flags);

/* Write a version-4 UUID made of the 16 random bytes into out (37 bytes). */
void sheet_uuid_v4(const uint8_t rnd[16], char out[SHEET_ID_LEN + 1]);

/* True for a well-formed NIR with the right key (2A/2B for Corsica). */
bool sheet_nir_valid(const char *nir);

const char *sheet_mode_name(enum sheet_mode m);
int sheet_mode_parse(const char *name);            /* the mode, or -EINVAL */
const char *sheet_insurance_name(enum sheet_insurance i);
int sheet_insurance_parse(const char *name);       /* the enum value (its code), or -EINVAL */

/* The encoder a deterministic CBOR writer provides (protocol/cbor): each
 * call appends one item and returns 0 or a negative errno. A container is
 * opened with its size (pairs or items, for writers that put the head
 * first) and closed with the matching end call (for writers that close
 * containers, such as cbor_enc_map_begin/_end: they may ignore the size).
 * sheet_encode already emits map keys in deterministic order. */
struct sheet_encoder {
	int (*map)(void *ctx, size_t pairs);
	int (*map_end)(void *ctx);
	int (*array)(void *ctx, size_t n);
	int (*array_end)(void *ctx);
	int (*text)(void *ctx, const char *s, size_t len);
	int (*bytes)(void *ctx, const uint8_t *p, size_t len);
	int (*uint)(void *ctx, uint64_t v);
	int (*sint)(void *ctx, int64_t v);  /* any integer, negative or not */
	int (*boolean)(void *ctx, bool v);
};

/* Emit s as one CBOR map with text keys in RFC 8949 §4.2.1 order (shorter
 * key first, then bytewise), absent optional fields left out, dates as
 * "YYYY-MM-DD" text; docs/care-sheet.md has the key table. s must be valid.
 * Returns 0 or the first error of the encoder. */
int sheet_encode(const struct sheet *s, const struct sheet_encoder *enc, void *ctx);

#endif
