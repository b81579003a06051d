/* What a card session found, and the hook that reads a card.
 *
 * The reader sessions (readers.c) know no card: they hand the ATR and a
 * transmit function to a struct card_reader_fn and get a struct card_result
 * back. The profile interpreter (protocol/profile: ATR match, APDU script,
 * TLV map) plugs in here; until it does, cards_reader() is a placeholder
 * that reports every card as unknown, with its ATR, and reads nothing.
 *
 * A card_result holds identity data (names, birth dates, NIRs): it is wiped
 * with card_result_clear() before its memory is freed or reused, and only
 * card_result_json(..., CARD_JSON_FULL) — the control-access GetCard — ever
 * shows a full NIR. Logs and events get the masked form (log_mask_nir).
 *
 * Ownership: a card_result may own heap blobs (the digital card's evidence:
 * the credential and the device-signed answer as received). It starts
 * zeroed (calloc, "= { 0 }"); card_result_clear() wipes and frees them;
 * a plain memcpy of a card_result copies the pointers, so hand a result on
 * with card_result_move() (the source is left zeroed, owning nothing).
 */
#ifndef VITALED_CARDS_H
#define VITALED_CARDS_H

#include <jansson.h>
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
};

struct card_result {
	char profile[CARD_PROFILE_MAX];   /* "vitale2", "cps" ... or "unknown" */
	char kind[CARD_KIND_MAX];         /* patient, practitioner, digital, unknown */
	char atr_hex[READER_ATR_MAX * 2 + 1]; /* upper case, no spaces */
	char presentation[16];            /* "physical", "digital-nfc"; "" before identify */
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

/* The card reader function in use (thread-safe, never NULL): the profile
 * reader once the "profiles" module is up, else the placeholder. */
const struct card_reader_fn *cards_reader(void);

/* The profile reader (cards_profile.c): identify = profile_match() over the
 * built-in profiles and [profiles] dir; read = the profile's script. */
extern const struct card_reader_fn card_reader_profiles;
/* Module "profiles": load the profile set (built-in, then [profiles] dir;
 * a broken file stops start-up with file:line). */
struct daemon;
int profiles_init(struct daemon *d);
void profiles_fini(struct daemon *d);
/* True once profiles_init succeeded. */
bool profiles_loaded(void);

struct profile;
/* The loaded profile called name, or NULL. Read-only; valid until
 * profiles_fini (any thread). */
const struct profile *cards_profile_find(const char *name);
/* Read a phone through the digital-card protocol (cards_digital.c); the
 * session thread, as card_reader_fn.read. An accepted presentation fills
 * out (profile "digital", kind digital, presentation "digital-nfc", holder
 * then beneficiaries, fields, evidence) and returns 0. A refused one
 * returns -EACCES (a transport failure its negative errno) with out->reason
 * the §12 name and out->error "name: what it means". A card without the
 * applet (no_applet) is an unknown contactless card: 0, recognised false. */
int cards_digital_read(const struct profile *p, const struct card_io *io,
                       struct card_result *out);

/* Module "digital": reads the [digital] trust anchors (PEM files) once; an
 * anchor file missing or unreadable stops start-up with its name. Without
 * any anchor every phone is refused (chain_untrusted, "no trust anchor
 * configured"). Before "readers". */
int cards_digital_init(struct daemon *d);
void cards_digital_fini(struct daemon *d);

/* Extra time a session gets past [digital] code_timeout_s once a phone asks
 * for its code: the last poll, the chained answer and its verification take
 * milliseconds; 5 s leaves room for a slow contactless reader. */
#define CARDS_CODE_MARGIN_MS 5000u

/* Reports every card as "unknown" with its ATR. Its read sends one SELECT
 * of the MF (00 A4 00 00 02 3F 00), changes nothing on the card and keeps
 * only the status word, as the card field "probe_sw": proof that the card
 * answers, nothing about its holder. */
extern const struct card_reader_fn card_reader_placeholder;

/* A reason for people for a card I/O error (-ETIMEDOUT, -ENODEV ...). */
const char *card_strerror(int err);

/* Wipe (explicit_bzero) and reset; frees the evidence blobs. r must have
 * started zeroed. */
void card_result_clear(struct card_result *r);

/* dst (cleared first) takes everything of src, blobs included; src is left
 * zeroed and owns nothing. */
void card_result_move(struct card_result *dst, struct card_result *src);

/* Hex of an ATR ("3B7513..."); always NUL-terminates. */
void card_atr_hex(const uint8_t *atr, size_t len, char *out, size_t outlen);

/* Add a card-level field (truncated to the bounds); -ENOSPC when full. */
int card_result_add_field(struct card_result *r, const char *name, const char *value);

enum card_json {
	CARD_JSON_SUMMARY,     /* events: no names, masked NIR */
	CARD_JSON_SUMMARY_ID,  /* events for control watchers: names, masked NIR */
	CARD_JSON_FULL,        /* GetCard: everything, full NIR */
};

/* A new JSON object for r (NULL on allocation failure). */
json_t *card_result_json(const struct card_result *r, enum card_json what);

#endif
