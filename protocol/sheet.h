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
 * Two versions of the model (the "v" of the signed CBOR):
 *  - 1: lines are acts only (key "acts"), the AMC is a flag;
 *  - 2 (what new sheets are made in): lines of three kinds (an act, a
 *    medicine by CIP13, a device by LPP code; key "lines"), the care pathway,
 *    the exemption, the maternity and work-accident references, the AMC's
 *    number and its tiers payant.
 * Version 1 sheets are still decoded, validated and re-encoded byte for
 * byte (old queues, old exports); a version 1 sheet cannot hold what only
 * version 2 has (sheet_validate says so).
 *
 * The model is a fixed-size struct (no allocation): a sheet is bounded by
 * SHEET_MAX_LINES lines and SHEET_EVIDENCE_MAX evidence bytes.
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
#define SHEET_VERSION_1 1
#define SHEET_VERSION_2 2
#define SHEET_VERSION SHEET_VERSION_2 /* the model new sheets are made in */
#define SHEET_MAX_LINES 32
#define SHEET_CODE_MAX 13            /* the longest line code: a CIP13 */
#define SHEET_SERVICE_MAX 3          /* a pharmacy service code: PH7 */
#define SHEET_MAX_QUANTITY 9999u
#define SHEET_AT_NUMBER_MAX 15
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

/* The kind of a line. An act is 0, so a zeroed line is an act (model 1
 * has nothing else). */
enum sheet_line_kind {
	SHEET_LINE_ACT = 0,      /* "act": NGAP, CCAM or a service code, × coefficient */
	SHEET_LINE_MEDICINE = 1, /* "medicine": CIP13 × quantity at a unit price, its rate's service code */
	SHEET_LINE_DEVICE = 2,   /* "device": LPP code × quantity at a unit price */
};

/* The care pathway (parcours de soins coordonnés, CSS L162-5-3). */
enum sheet_pathway {
	SHEET_PATHWAY_NONE = 0,
	SHEET_PATHWAY_TREATING,      /* "medecin_traitant": the patient's declared médecin traitant */
	SHEET_PATHWAY_NEW_TREATING,  /* "new_medecin_traitant": being declared, or not yet */
	SHEET_PATHWAY_SUBSTITUTE,    /* "substitute": the médecin traitant's replacement */
	SHEET_PATHWAY_REFERRED,      /* "referred": sent by the médecin traitant (referrer_id) */
	SHEET_PATHWAY_DIRECT_ACCESS, /* "direct_access": the specialties a patient sees directly */
	SHEET_PATHWAY_EMERGENCY,     /* "emergency" */
	SHEET_PATHWAY_AWAY,          /* "away_from_home": away from the usual residence */
	SHEET_PATHWAY_OUTSIDE,       /* "outside": outside the pathway */
};

/* The exemption from the patient's share (ticket modérateur, CSS L160-14). */
enum sheet_exemption {
	SHEET_EXEMPT_NONE = 0,
	SHEET_EXEMPT_ALD,        /* "ald": care for a long-term illness (affection de longue durée) */
	SHEET_EXEMPT_INVALIDITY, /* "invalidity": holder of an invalidity pension */
	SHEET_EXEMPT_PREVENTION, /* "prevention": a prevention act taken in charge in full */
	SHEET_EXEMPT_OTHER,      /* "other": another case of L160-14, the insurer decides */
};

struct sheet_line {
	enum sheet_line_kind kind;
	int32_t date;          /* day number (protocol/holidays.h) */
	/* act: NGAP key (1-5 capitals), CCAM (AAAA999) or a service code (PH7);
	 * medicine: CIP13 (13 digits, EAN-13 check digit); device: LPP (7 digits) */
	char code[SHEET_CODE_MAX + 1];
	char service[SHEET_SERVICE_MAX + 1]; /* medicine: the service code of its rate (PH4) */
	uint32_t coef_milli;   /* act: coefficient × 1000 */
	uint32_t quantity;     /* medicine, device: units */
	int64_t unit_price;    /* medicine, device: cents */
	int64_t amount;        /* cents; medicine, device: quantity × unit_price */
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
	uint32_t version;                      /* SHEET_VERSION_1 or _2 (sheet_init: SHEET_VERSION) */
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
	char at_number[SHEET_AT_NUMBER_MAX + 1]; /* v2, optional, at_mp only: the accident's reference */
	int32_t maternity_date;                /* v2, maternite: presumed start of pregnancy */
	enum sheet_pathway pathway;            /* v2, optional */
	char referrer_id[SHEET_IDENT_MAX + 1]; /* v2: the referring médecin traitant (referred) */
	enum sheet_exemption exemption;        /* v2, optional */
	size_t nlines;
	struct sheet_line lines[SHEET_MAX_LINES];
	int64_t total, amo, amc_amount, patient; /* cents: total = Σ lines = amo + amc + patient */
	bool amc;                              /* a complementary insurer (AMC) takes part */
	char amc_id[SHEET_IDENT_MAX + 1];      /* v2: the AMC's number, 8 to 10 digits */
	bool amc_tiers_payant;                 /* v2: the AMC pays its part to the practitioner */
	bool tiers_payant;                     /* the patient does not advance the compulsory part */
	enum sheet_mode mode;
	struct sheet_evidence evidence;
	int32_t due_date;                      /* SHEET_NO_DATE until sheet_set_due_date */
	int64_t created;                       /* seconds since the epoch; 0 until set */
};

struct sheet_error {
	char field[40];  /* "lines[3].amount", "nir", ... */
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
const char *sheet_line_kind_name(enum sheet_line_kind k);
int sheet_line_kind_parse(const char *name);       /* or -EINVAL */
const char *sheet_pathway_name(enum sheet_pathway p);
int sheet_pathway_parse(const char *name);         /* or -EINVAL */
const char *sheet_exemption_name(enum sheet_exemption x);
int sheet_exemption_parse(const char *name);       /* or -EINVAL */

/* Code shapes (docs/care-sheet.md has their sources). An act's code: an
 * NGAP key (1-5 capitals), a CCAM code (4 capitals, 3 digits) or one of
 * the pharmacy service codes (sheet_service_code_valid). */
bool sheet_act_code_valid(const char *code);
/* PH1 PH2 PH4 PH7 (the medicine's rate) and MX1 MX4 MX7. */
bool sheet_service_code_valid(const char *code);
/* 13 digits, "3400" (France's medicines), the EAN-13 check digit right. */
bool sheet_cip13_valid(const char *code);
/* 7 digits. */
bool sheet_lpp_valid(const char *code);

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
