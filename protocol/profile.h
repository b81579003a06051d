/* Declarative card profiles: which cards a profile serves (ATR patterns),
 * how to read them (an APDU script), where the fields are (a TLV map) and
 * whether a PIN step exists. The format is documented in
 * docs/card-profiles.md; conf/profiles/NAME.profile are the built-in ones.
 *
 *   profile.c          the file format: parser, profile sets, matching, the PIN
 *                      step (its commands are built by protocol/pin.c)
 *   profile_read.c     the interpreter: runs a script over an apdu_io
 *   profile_builtin.c  the built-in profile texts (generated from
 *                      conf/profiles by packaging/embed-profiles.sh)
 *
 * Ownership: a struct profile is owned by the set it was added to (or by
 * the caller of profile_parse() until added); sets are built at start-up or
 * reload on the main thread and are read-only afterwards, so any number of
 * session threads may call profile_match()/profile_read() on one set
 * concurrently. A struct profile_result holds identity data: wipe it with
 * profile_result_wipe() when done.
 *
 * Pure code: no I/O (the caller reads profile files and hands the text to
 * profile_set_add_text()), no logging, no global state.
 */
#ifndef VITALED_PROFILE_H
#define VITALED_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/apdu.h"
#include "protocol/atr.h"
#include "protocol/nir.h"
#include "protocol/pin.h"
#include "protocol/tlv.h"

/* Bounds of the format (docs/card-profiles.md "Limits"). */
#define PROFILE_TEXT_MAX_SIZE 65536  /* bytes in one profile file */
#define PROFILE_LINE_MAX 512         /* bytes in one line */
#define PROFILE_NAME_MAX 32          /* name, with the NUL */
#define PROFILE_DESC_MAX 128         /* description and message, with the NUL */
#define PROFILE_SOURCE_MAX 96        /* file name kept for messages */
#define PROFILE_MAX_ATR 16
#define PROFILE_MAX_STEPS 32
#define PROFILE_MAX_MAP 32
#define PROFILE_MAX_EXPECT 8
#define PROFILE_STEP_DATA_MAX 261    /* a short APDU */
#define PROFILE_SET_MAX 32

/* Bounds of the result. */
#define PROFILE_MAX_BENEF 16
#define PROFILE_NAME_VALUE_MAX 64    /* surname, given name (bytes, no NUL) */
#define PROFILE_NATIONALITY_MAX 8
#define PROFILE_SERIAL_MAX 40
#define PROFILE_REASON_MAX 64

enum profile_kind {
	PROFILE_KIND_PATIENT,
	PROFILE_KIND_PRACTITIONER,
	PROFILE_KIND_DIGITAL,
};

/* Who reads the card once the profile matched. */
enum profile_handler {
	PROFILE_HANDLER_SCRIPT,   /* profile_read() runs the [script] */
	PROFILE_HANDLER_DIGITAL,  /* the digital-card protocol code */
	PROFILE_HANDLER_PKCS11,   /* the signer, through PKCS#11 (CPS) */
};

enum profile_op {
	PROFILE_OP_SELECT_AID,    /* 00 A4 04 00 Lc AID */
	PROFILE_OP_SELECT_EF,     /* 00 A4 02 00 02 FID  (EF under the current DF) */
	PROFILE_OP_SELECT_FID,    /* 00 A4 00 00 02 FID  (MF, DF or EF) */
	PROFILE_OP_READ,          /* READ BINARY the current EF in 256-byte steps */
	PROFILE_OP_POINTERS,      /* Vitale 2 pointer-file discovery */
	PROFILE_OP_SEND,          /* one APDU as written */
};

struct profile_sw {
	uint16_t sw, mask;        /* 63Cx: sw 63C0, mask FFF0 */
};

struct profile_step {
	enum profile_op op;
	uint8_t data[PROFILE_STEP_DATA_MAX]; /* AID, FID or APDU */
	size_t data_len;
	bool optional;            /* a refused status skips the dependent steps */
	bool fci;                 /* select: fetch the FCI/FCP (EF size hint) */
	bool le;                  /* select: send Le = 00 (case 4) */
	bool raw;                 /* read/send: data is not BER-TLV, do not map */
	bool map;                 /* send: map the answer */
	uint8_t sfi;              /* read: 1..30, 0 = by offset only */
	size_t max;               /* read: bytes, 0 = the limits' max_file */
	struct profile_sw expect[PROFILE_MAX_EXPECT];
	size_t nexpect;           /* 0 = the defaults */
	unsigned line;
};

enum profile_field {
	PROFILE_F_SURNAME,
	PROFILE_F_GIVEN_NAME,
	PROFILE_F_BIRTH_DATE,
	PROFILE_F_NATIONALITY,
	PROFILE_F_NIR,
	PROFILE_F_CARD_START,
	PROFILE_F_CARD_END,
	PROFILE_F_CARD_SERIAL,
	PROFILE_F_CARD_CERTIFICATE,
	PROFILE_F_COUNT
};

enum profile_format {
	PROFILE_FMT_TEXT,         /* printable ASCII, trailing spaces dropped */
	PROFILE_FMT_DATE,         /* ASCII YYYYMMDD -> YYYY-MM-DD */
	PROFILE_FMT_NIR,          /* text, then checked (nir.h) */
	PROFILE_FMT_BCD,          /* packed digits, F padding at the end */
	PROFILE_FMT_HEX,          /* any bytes, shown as hex */
	PROFILE_FMT_PRESENT,      /* the object exists */
};

struct profile_map_entry {
	uint32_t path[TLV_PATH_MAX];
	size_t npath;
	enum profile_field field;
	enum profile_format fmt;
	unsigned line;
};

enum profile_pin_format {
	PROFILE_PIN_ASCII,        /* '1' '2' '3' '4' then pad bytes */
	PROFILE_PIN_BCD,          /* 12 34 then the pad's low nibble (12 34 FF ... for pad FF) */
	PROFILE_PIN_ISO9564_2,    /* ISO 9564-1 format 2: 24 12 34 FF ... (8-byte block) */
};

/* The [pin] section. Checked at parse time by pin_params_check() (through
 * profile_pin_params()), so a loaded profile's PIN step always builds. */
struct profile_pin {
	bool present;
	uint8_t cla, p1, p2;      /* VERIFY: CLA 20 P1 P2(reference) */
	unsigned min_len, max_len; /* digits, PIN_DIGITS_MIN..PIN_DIGITS_MAX */
	enum profile_pin_format format;
	uint8_t pad;
	size_t block_len;         /* bytes sent (Lc), 1..PIN_BLOCK_MAX */
	unsigned puk_len;         /* digits of the unblock code; 0: no unblock through vitaled */
};

struct profile {
	char name[PROFILE_NAME_MAX];
	char description[PROFILE_DESC_MAX];
	char message[PROFILE_DESC_MAX];   /* said when readable is false */
	char source[PROFILE_SOURCE_MAX];  /* "vitale2.profile" or "builtin:vitale2" */
	enum profile_kind kind;
	enum profile_handler handler;
	bool contactless;
	bool readable;
	struct atr_pattern atr[PROFILE_MAX_ATR];
	size_t natr;
	bool any_iso14443_4;              /* "atr = iso14443-4" */
	struct profile_step steps[PROFILE_MAX_STEPS];
	size_t nsteps;
	struct profile_map_entry map[PROFILE_MAX_MAP];
	size_t nmap;
	uint32_t record_tag;              /* first tag of the beneficiary paths, 0 = none */
	struct profile_pin pin;
};

/* Parse one profile file's text. source names it in messages ("file:line:
 * message" goes into err, always NUL-terminated when errlen > 0).
 * Returns 0 and a new profile in *out (free with profile_free()), or
 * -EINVAL (syntax or meaning), -EFBIG (text too large), -ENOMEM. */
int profile_parse(const char *text, size_t len, const char *source, struct profile **out,
                  char *err, size_t errlen);
void profile_free(struct profile *p);

const char *profile_kind_name(enum profile_kind k);
const char *profile_handler_name(enum profile_handler h);
const char *profile_field_name(enum profile_field f);

/* ---- sets ---- */

struct profile_set;

/* An empty set, or NULL on allocation failure. */
struct profile_set *profile_set_new(void);
void profile_set_free(struct profile_set *set);
/* Add the built-in profiles (compiled in from conf/profiles). */
int profile_set_add_builtin(struct profile_set *set, char *err, size_t errlen);
/* Parse text and add it; a profile of the same name is replaced (a file
 * in the profile directory overrides the built-in one). Returns 0,
 * -EINVAL/-EFBIG with err set, -ENOSPC (set full) or -ENOMEM. */
int profile_set_add_text(struct profile_set *set, const char *text, size_t len,
                         const char *source, char *err, size_t errlen);
size_t profile_set_count(const struct profile_set *set);
const struct profile *profile_set_get(const struct profile_set *set, size_t i);
const struct profile *profile_set_find(const struct profile_set *set, const char *name);

/* The profile serving this ATR, or NULL ("unknown card": the caller
 * reports it with its ATR; atr_parse() names what is wrong with a broken
 * one). An ATR that does not parse matches nothing. Among several matches
 * the most specific pattern wins (atr_pattern_match()); "iso14443-4" is
 * the least specific of all; ties go to the profile added first. */
const struct profile *profile_match(const struct profile_set *set, const uint8_t *atr,
                                    size_t len);

/* ---- PIN step ---- */

/* The PIN step as protocol/pin.h parameters: every PIN command of a
 * profile (VERIFY, the tries-left query, the keypad's
 * PIN_VERIFY_STRUCTURE, RESET RETRY COUNTER) is built by pin.c from these.
 * out is cleared first. Returns 0, or -EINVAL (no PIN step, or params
 * pin_params_check() refuses). */
int profile_pin_params(const struct profile_pin *pin, struct pin_params *out);

/* The VERIFY command for a PIN of ASCII digits: CLA 20 P1 P2 Lc block,
 * built by pin_build_verify() with profile_pin_params(). Returns 0,
 * -EINVAL (no PIN step, not digits, length outside min..max) or
 * -EMSGSIZE; on failure out is wiped and *outlen is 0. The caller wipes
 * out (explicit_bzero) after sending it; nothing of the PIN is left
 * anywhere else. */
int profile_pin_apdu(const struct profile_pin *pin, const char *digits, size_t ndigits,
                     uint8_t *out, size_t outsz, size_t *outlen);

/* ---- reading ---- */

struct profile_limits {
	struct apdu_limits apdu;
	size_t max_file;          /* bytes of one EF (a file this big or bigger is refused) */
	size_t max_total;         /* data bytes over the whole read */
	unsigned max_apdus;       /* commands over the whole read */
	unsigned max_depth;       /* TLV nesting */
	unsigned max_pointer_files;
};

#define PROFILE_DEFAULT_MAX_FILE 16384
#define PROFILE_DEFAULT_MAX_TOTAL 131072
#define PROFILE_DEFAULT_MAX_APDUS 256
#define PROFILE_DEFAULT_MAX_POINTER_FILES 32

void profile_limits_default(struct profile_limits *l);

struct profile_beneficiary {
	char surname[PROFILE_NAME_VALUE_MAX + 1];
	char given_name[PROFILE_NAME_VALUE_MAX + 1];
	char birth_date[11];             /* YYYY-MM-DD; 00 for an unknown month/day */
	char nationality[PROFILE_NATIONALITY_MAX + 1];
	char nir[NIR_LEN + 1];
	bool nir_valid;
	const char *nir_reason;          /* nir_reason_name(): "nir_ok", "nir_bad_key", ... */
};

struct profile_card {
	char start_date[11];
	char end_date[11];
	char serial[PROFILE_SERIAL_MAX + 1];
	bool certificate;
};

struct profile_result {
	char profile[PROFILE_NAME_MAX];
	enum profile_kind kind;
	struct profile_beneficiary benef[PROFILE_MAX_BENEF];
	size_t nbenef;
	struct profile_card card;
	unsigned apdus;                  /* commands sent, T=0 rounds included */
	size_t bytes_in;                 /* response bytes, status words included */
	size_t data_bytes;               /* file bytes read */
	unsigned files;                  /* EFs read */
	int err;                         /* 0 or the negative errno returned */
	uint16_t last_sw;                /* the refused status word, if any */
	char reason[PROFILE_REASON_MAX]; /* "" or e.g. "select_failed 6A82" */
};

/* Run p's script on the card behind io, filling res (cleared first; on
 * failure it keeps what was read so far, flagged by err/reason). lim NULL
 * means the defaults. Blocks (transmit does); call from a session thread.
 * Returns 0 or a negative errno, the same as res->err:
 *   driver errors as they come (-ENODEV "card_removed", -ETIMEDOUT
 *   "timeout", ...), apdu_exchange() errors ("t0_endless_61xx", ...),
 *   tlv errors ("tlv_overrun", "tlv_too_deep", ...), -ENOENT for a refused
 *   status word ("select_failed 6A82", "read_failed 6982", ...),
 *   -EOVERFLOW "value_too_large", -EILSEQ "bad_text"/"bad_date"/"bad_bcd",
 *   -E2BIG "too_many_apdus"/"file_too_large"/"read_too_large"/
 *   "too_many_beneficiaries", -EBADMSG "pointer_invalid", -ENODATA
 *   "no_beneficiary", -EOPNOTSUPP "not_readable"/"handler_digital"/
 *   "handler_pkcs11". docs/card-profiles.md lists them all. */
int profile_read(const struct profile *p, const struct apdu_io *io,
                 const struct profile_limits *lim, struct profile_result *res);

/* Clear a result (explicit_bzero: it holds identity data). */
void profile_result_wipe(struct profile_result *res);

/* Built-in profile texts (profile_builtin.c). */
struct profile_text {
	const char *name;   /* file name */
	const char *text;
};
extern const struct profile_text profile_builtin_texts[];

#endif
