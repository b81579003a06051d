/* What a card session found, and the hook that reads a card: the bottom of
 * daemon/cards/, used by the profile reader (cards_profile.c), the digital
 * card (cards_digital.c), the reader sessions (readers.c) and the API
 * (api_cards.c); it calls none of them.
 *
 * The reader sessions know no card: they hand the ATR and a transmit
 * function to the struct card_reader_fn they were given at start-up (the
 * daemon passes card_reader_profiles, cards_profile.h) and get a struct
 * card_result back.
 *
 * A card_result holds identity data (names, birth dates, NIRs): it is wiped
 * with card_result_clear() before its memory is freed or reused, and only
 * card_result_json(..., CARD_JSON_FULL) (api_cards.h) — the control-access
 * GetCard — ever shows a full NIR. Logs and events get the masked form
 * (card_nir_mask).
 *
 * Ownership: a card_result may own heap blobs (the digital card's evidence:
 * the credential and the device-signed answer as received). It starts
 * zeroed (calloc, "= { 0 }"); card_result_clear() wipes and frees them;
 * a plain memcpy of a card_result copies the pointers, so hand a result on
 * with card_result_move() (the source is left zeroed, owning nothing).
 */
#ifndef VITALED_CARDS_H
#define VITALED_CARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drivers/reader.h"

#define CARD_PROFILE_MAX 32
#define CARD_KIND_MAX 16
#define CARD_TEXT_MAX 104 /* the digital card's names: 100 bytes of UTF-8 */
#define CARD_BENEFICIARIES_MAX 8
#define CARD_FIELDS_MAX 16
#define CARD_FIELD_NAME_MAX 32
#define CARD_FIELD_VALUE_MAX 128
#define CARD_ERROR_MAX 128
#define CARD_REASON_MAX 32
#define CARD_NONCE_LEN 32
#define CARD_TERMINAL_ID_MAX 64

struct card_beneficiary {
	int rank;                         /* order on the card, from 0 */
	char surname[CARD_TEXT_MAX];
	char given_name[CARD_TEXT_MAX];
	char birth_date[11];              /* YYYY-MM-DD, "" when unknown */
	char nationality[9];              /* as the card holds it, "" when absent */
	char nir[16];                     /* 13 characters + 2-digit key, "" when absent */
	bool nir_valid;                   /* the key checks (97 - n mod 97, 2A/2B mapped) */
};

/* A card-level datum (start of validity, card serial ...), as text. */
struct card_field {
	char name[CARD_FIELD_NAME_MAX];
	char value[CARD_FIELD_VALUE_MAX];
};

/* The patient's evidence of a digital presentation (docs/digital-card.md
 * §11, last lines): what a care sheet keeps. Blobs owned by the result. */
struct card_evidence {
	bool present;                     /* a digital presentation was accepted */
	bool holder_verified;             /* the holder entered the code (AUTHENTICATE done) */
	uint8_t *credential;              /* the GET CREDENTIAL answer, as received */
	size_t credential_len;
	uint8_t *device_answer;           /* the AUTHENTICATE answer, as received */
	size_t device_answer_len;
	uint8_t nonce[CARD_NONCE_LEN];    /* the terminal's nonce the answer signs */
	char terminal_id[CARD_TERMINAL_ID_MAX + 1];
	int64_t answer_ts;                /* the phone's clock in the answer */
	/* QR form (presentation "digital-qr"): device_answer holds the
	 * presentation; the challenge it signs ("" for a one-way code); nonce
	 * is then all zero (no terminal nonce). */
	char challenge[17];
};

/* The online rights check of a physical card (docs/upload.md "The rights
 * check"): filled by the upload layer through readers_set_rights, shown by
 * GetCard, taken by a care sheet made from the session. Its organisation
 * (regime, caisse, centre) is the insurer's when state is CHECKED. */
#define CARD_RIGHTS_MAX 8
enum card_rights_state {
	CARD_RIGHTS_NONE = 0, /* no check (no insurer configured, not a physical patient card) */
	CARD_RIGHTS_PENDING,  /* asked, no answer yet */
	CARD_RIGHTS_CHECKED,  /* the insurer answered: the fields below are its */
	CARD_RIGHTS_OFFLINE,  /* the insurer could not be reached */
	CARD_RIGHTS_TIMEOUT,  /* no answer within [insurer] rights_timeout_ms */
	CARD_RIGHTS_UNKNOWN,  /* the insurer knows no such beneficiary (404) */
	CARD_RIGHTS_ERROR,    /* any other failure (TLS, 5xx, a bad answer) */
};
struct card_right {
	char code[33];
	char from[11], to[11];
};
struct card_rights {
	enum card_rights_state state;
	char reason[CARD_ERROR_MAX];  /* why, for every state but NONE, PENDING, CHECKED */
	int beneficiary;              /* which beneficiary was checked (index) */
	char asked[40];               /* ISO 8601: when the terminal asked */
	char checked[40];             /* the insurer's time of the check (CHECKED) */
	char care_date[11];           /* the care date asked for */
	char regime[3], caisse[4], centre[5];
	size_t nrights;
	struct card_right rights[CARD_RIGHTS_MAX];
	bool covered;                 /* an AMO period covers care_date */
	bool has_amc;
	char amc_id[33];
	bool amc_tiers_payant;
	char amc_to[11];
};
/* "none", "pending", "checked", "offline", "timeout", "unknown", "error". */
const char *card_rights_state_name(enum card_rights_state st);

struct card_result {
	char profile[CARD_PROFILE_MAX];   /* "vitale2", "cps" ... or "unknown" */
	char kind[CARD_KIND_MAX];         /* patient, practitioner, digital, unknown */
	char atr_hex[READER_ATR_MAX * 2 + 1]; /* upper case, no spaces */
	char presentation[16];            /* "physical", "digital-nfc", "digital-qr"; "" before identify */
	bool recognised;                  /* a profile matched the ATR */
	bool readable;                    /* the profile's data was read */
	size_t nbeneficiaries;
	struct card_beneficiary beneficiaries[CARD_BENEFICIARIES_MAX];
	size_t nfields;
	struct card_field fields[CARD_FIELDS_MAX];
	unsigned apdus;                   /* exchanges made (set by the session) */
	char error[CARD_ERROR_MAX];       /* why the read failed; "" when it did not */
	/* A stable name for the failure when the reader has one (the digital
	 * card's §12 names: "code_refused" ...), "" otherwise: CardError's
	 * "reason" then, with error as its "detail". */
	char reason[CARD_REASON_MAX];
	struct card_evidence evidence;    /* digital card only */
	struct card_rights rights;        /* the online rights check (physical cards) */
	/* A physical card whose serial (field "serial") is on the opposition
	 * list (docs/upload.md "The opposition list"): set when it was read,
	 * kept current while it stays in its reader. No sheet is made from it. */
	bool opposed;
};

/* What a card reader function may do with the card. */
struct card_io {
	/* One exchange, as reader_ops.transmit: 0, or -ENODEV (card gone),
	 * -ECONNRESET (reset by someone else: the session starts over),
	 * -ETIMEDOUT (no answer in time, or the session's deadline passed),
	 * -EHOSTDOWN (middleware gone), -EIO. */
	int (*transmit)(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
	                size_t *rlen);
	/* Say that the read proper begins (the reader shows "reading"). */
	void (*reading)(void *ctx);
	/* Say that the card waits for its holder: a phone asks for the personal
	 * code (docs/digital-card.md §4.3, first 63 00). The reader shows
	 * "code_entry", a CodeEntryRequested event goes out, and the session's
	 * deadline becomes [digital] code_timeout_s + CARDS_CODE_MARGIN_MS from
	 * now. May be NULL. Session thread; returns at once. */
	void *ctx;
	/* (after ctx, so that older positional initialisers stay right) */
	void (*code_prompt)(void *ctx);
	/* The text of a scanned QR code (reader_ops.read_code): 0, -E2BIG (the
	 * scanner's line was too long), -ENOSPC, -ENOTSUP (not a scanner).
	 * May be NULL. */
	int (*read_code)(void *ctx, char *buf, size_t *len);
};

struct card_reader_fn {
	const char *name;
	/* Which profile serves this ATR. Pure, no I/O: called on the loop thread
	 * at insertion (for the CardInserted event) and again by the session.
	 * Fills profile, kind, recognised and atr_hex of a cleared out. */
	void (*identify)(const uint8_t *atr, size_t atr_len, struct card_result *out);
	/* Read the card; session thread, blocking. out holds identify's fields.
	 * Returns 0 when the card was handled (out->readable says whether data
	 * was read), or the negative errno of a failed exchange with out->error
	 * set. Must end on -ETIMEDOUT/-ENODEV from io->transmit without more I/O. */
	int (*read)(const struct card_io *io, struct card_result *out);
};

/* Extra time a session gets past [digital] code_timeout_s once a phone asks
 * for its code: the last poll, the chained answer and its verification take
 * milliseconds; 5 s leaves room for a slow contactless reader. */
#define CARDS_CODE_MARGIN_MS 5000u

/* A reason for people for a card I/O error (-ETIMEDOUT, -ENODEV ...). */
const char *card_strerror(int err);

/* Wipe (explicit_bzero) and reset; frees the evidence blobs. r must have
 * started zeroed. */
void card_result_clear(struct card_result *r);

/* dst (cleared first) takes everything of src, blobs included; src is left
 * zeroed and owns nothing. */
void card_result_move(struct card_result *dst, struct card_result *src);

/* The masked form of a beneficiary's NIR, as logs and events show it:
 * the first three characters (the sex digit and birth year; protocol/nir's
 * nir_mask, so an unprintable card byte shows as '?') and twelve '*',
 * whatever the length read from the card; "(none)" for an empty or short
 * one. nir is a card_beneficiary's nir (or NULL). Returns out. */
char *card_nir_mask(const char *nir, char *out, size_t outlen);

/* Whether the card read can back a care sheet (GetCard's can_back_sheet;
 * the rules sheetbuild_patient_from_card applies, for the card as a whole):
 * a readable patient card or phone with at least one beneficiary, and its
 * evidence: a physical card's serial (EF 2F02) and read time (read_at), a
 * phone's device-signed answer after the holder's code. When it cannot,
 * why (whylen bytes, may be NULL) says why in a few words. */
bool card_can_back_sheet(const struct card_result *r, const char *read_at, char *why,
                         size_t whylen);

/* A card-level field's value by name ("serial" ...), NULL when absent. */
const char *card_result_field(const struct card_result *r, const char *name);

/* The serial the opposition list is checked against: a physical card's
 * "serial" field; NULL for a phone, or when the card gave none. */
const char *card_opposition_serial(const struct card_result *r);

/* Add a card-level field (truncated to the bounds); -ENOSPC when full. */
int card_result_add_field(struct card_result *r, const char *name, const char *value);

#endif
