/* PIN blocks, VERIFY / RESET RETRY COUNTER commands and their answers,
 * and the PC/SC part 10 pinpad structures.
 *
 * Pure code (no I/O, no state): the daemon feeds it a PIN held in locked
 * memory and gets back bytes to send; the card's or the reader's answer
 * comes back here to be named. Every builder checks the PIN (digits only,
 * length within the profile's bounds) before it writes a single byte of
 * it, and wipes its output buffer when it fails half-way, so a malformed
 * PIN never reaches a card and never leaves a partial copy behind.
 *
 * References: ISO/IEC 7816-4 §11.5.6 (VERIFY), §11.5.10 (RESET RETRY
 * COUNTER), §5.6 (status words 63Cx, 6983, 6984 ...); ISO 9564-1 format 2
 * PIN blocks; PC/SC Part 10 v2.02.09 §2.2 (CM_IOCTL_GET_FEATURE_REQUEST
 * and its TLV answer), §2.5.2 (PIN_VERIFY_STRUCTURE).
 *
 * Thread context: any thread; functions only touch their arguments.
 */
#ifndef VITALED_PIN_H
#define VITALED_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PIN_DIGITS_MIN 4   /* no profile may accept shorter PINs */
#define PIN_DIGITS_MAX 12  /* ISO 9564-1 format 2 maximum */
#define PIN_BLOCK_MAX 16   /* bytes of one PIN block (Lc of VERIFY) */
#define PIN_PUK_MAX 16     /* digits of an unblock code */
/* The longest command any builder here writes: header + unblock code + new PIN block. */
#define PIN_APDU_MAX (5 + PIN_PUK_MAX + PIN_BLOCK_MAX)

enum pin_format {
	PIN_FORMAT_ASCII,     /* '1''2''3''4' then pad bytes (CPS: 31 32 33 34 FF FF FF FF) */
	PIN_FORMAT_BCD,       /* 12 34 then pad nibbles (low nibble of pad): 12 34 FF FF ... */
	PIN_FORMAT_ISO9564_2, /* 2L 12 34 FF ...: control nibble 2, length nibble, BCD, F fill */
};

/* What a profile says about one PIN (card profiles, the CPS, tests). */
struct pin_params {
	enum pin_format format;
	uint8_t cla;       /* class byte of VERIFY (00) */
	uint8_t p1;        /* P1 of VERIFY: 00 (§11.5.6: other values RFU); a profile may say otherwise */
	uint8_t ref;       /* P2: the PIN's reference (CPS: 01) */
	uint8_t min_len;   /* digits, >= PIN_DIGITS_MIN */
	uint8_t max_len;   /* digits, <= PIN_DIGITS_MAX and fits the block */
	uint8_t block_len; /* bytes of the PIN block, 1..PIN_BLOCK_MAX */
	uint8_t pad;       /* padding byte (ASCII) or nibble source (BCD: pad & 0x0F) */
	uint8_t puk_len;   /* digits of the unblock code, sent as ASCII without padding; 0: none */
};

/* The CPS-like card of the design: ASCII, FF-padded to 8 bytes, reference
 * 01, 4 to 8 digits, an 8-digit unblock code. */
extern const struct pin_params pin_params_cps;

/* Check that params are consistent (the PIN fits the block in its format).
 * Returns 0 or -EINVAL. */
int pin_params_check(const struct pin_params *p);

/* Check that s is len ASCII digits, min <= len <= max, looking at every
 * byte (no early exit). Returns 0, -EINVAL (a non-digit) or -ERANGE. */
int pin_check_digits(const char *s, size_t len, size_t min, size_t max);

/* Check a candidate PIN against the params: every byte an ASCII digit and
 * the length within [min_len, max_len]. Looks at every byte whatever it
 * finds (no early exit on the first non-digit). Returns 0, -EINVAL (a byte
 * that is not a digit, or bad params) or -ERANGE (too short or too long). */
int pin_check(const struct pin_params *p, const char *pin, size_t len);

/* Write the PIN block alone (block_len bytes) into out. On failure out is
 * wiped. Returns 0, or the pin_check error, or -ENOBUFS if cap < block_len. */
int pin_build_block(const struct pin_params *p, const char *pin, size_t len, uint8_t *out,
                    size_t cap);

/* VERIFY (ISO 7816-4 §11.5.6): CLA 20 P1 ref Lc <PIN block>, case 3.
 * *outlen is cleared first. out should be locked memory: it holds the PIN.
 * Returns 0, -EINVAL/-ERANGE for a malformed PIN or bad params (nothing
 * written), -ENOBUFS when cap is too small. On any failure out is wiped. */
int pin_build_verify(const struct pin_params *p, const char *pin, size_t len, uint8_t *out,
                     size_t cap, size_t *outlen);

/* VERIFY without data (case 1: CLA 20 P1 ref): asks how many tries are left
 * (63Cx) or whether the PIN is already verified (9000). 4 bytes. */
int pin_build_verify_query(const struct pin_params *p, uint8_t *out, size_t cap, size_t *outlen);

/* RESET RETRY COUNTER (ISO 7816-4 §11.5.10), reference p->ref: with a new
 * PIN, P1 = 00 and data = unblock code + new PIN block; without (newpin
 * NULL), P1 = 01 and data = unblock code, the counter is reset and the PIN
 * kept. The unblock code is p->puk_len ASCII digits. Same returns and
 * wiping as pin_build_verify. */
int pin_build_reset_retry(const struct pin_params *p, const char *puk, size_t puklen,
                          const char *newpin, size_t newlen, uint8_t *out, size_t cap,
                          size_t *outlen);

/* ------------------------------------------------------------------ */
/* answers */

/* Which command the status word answers: the same SW means different
 * things (63Cx after a query is "not verified yet, x left", after a VERIFY
 * "wrong, x left"; 6400 from a pinpad reader is its timeout). */
enum pin_cmd {
	PIN_CMD_VERIFY,
	PIN_CMD_QUERY,
	PIN_CMD_RESET_RETRY,
	PIN_CMD_PINPAD_VERIFY, /* the answer of FEATURE_VERIFY_PIN_DIRECT */
};

enum pin_status {
	PIN_ST_OK,             /* 9000 */
	PIN_ST_NEEDED,         /* query: 63Cx with x > 0, not verified yet */
	PIN_ST_INCORRECT,      /* 63Cx with x > 0 (tries_left = x), or 6300 (unknown) */
	PIN_ST_BLOCKED,        /* 6983, or 63C0 (the last try went) */
	PIN_ST_REF_UNUSABLE,   /* 6984: reference data not usable */
	PIN_ST_CONDITIONS,     /* 6985: conditions of use not satisfied */
	PIN_ST_SECURITY,       /* 6982: security status not satisfied */
	PIN_ST_WRONG_DATA,     /* 6A80: incorrect data field (e.g. a bad new PIN block) */
	PIN_ST_BAD_P1P2,       /* 6A86 */
	PIN_ST_REF_NOT_FOUND,  /* 6A88 */
	PIN_ST_WRONG_LENGTH,   /* 6700 */
	PIN_ST_NOT_SUPPORTED,  /* 6D00 / 6E00 */
	PIN_ST_PINPAD_TIMEOUT,   /* 6400 from the reader: nobody typed */
	PIN_ST_PINPAD_CANCELLED, /* 6401: the cancel key */
	PIN_ST_PINPAD_MISMATCH,  /* 6402: the two new PINs differ */
	PIN_ST_PINPAD_LENGTH,    /* 6403: too short or too long for the reader */
	PIN_ST_CARD_ERROR,     /* any other status word */
};

struct pin_result {
	enum pin_status status;
	int tries_left; /* -1 when the answer does not say */
	uint16_t sw;
};

/* Name a status word for the given command. Never fails. */
void pin_parse_sw(enum pin_cmd cmd, uint16_t sw, struct pin_result *r);
/* The same from a response APDU (its last two bytes). -EBADMSG if len < 2
 * (r then says PIN_ST_CARD_ERROR). */
int pin_parse_answer(enum pin_cmd cmd, const uint8_t *rapdu, size_t len, struct pin_result *r);
/* A stable lower-case name ("incorrect", "blocked", ...). */
const char *pin_status_name(enum pin_status st);

/* ------------------------------------------------------------------ */
/* PC/SC part 10 */

/* pcsc-lite's SCARD_CTL_CODE (reader.h): 0x42000000 + code. (Windows'
 * winscard uses CTL_CODE(FILE_DEVICE_SMARTCARD, code, 0, 0) instead.) */
#define PIN_SCARD_CTL_CODE(code) (UINT32_C(0x42000000) + (uint32_t)(code))
/* Part 10 §2.2: the IOCTL every part 10 reader answers with its features. */
#define PIN_CM_IOCTL_GET_FEATURE_REQUEST PIN_SCARD_CTL_CODE(3400)

/* Feature tags (part 10 §2.3). */
enum pin_feature_tag {
	PIN_FEATURE_VERIFY_PIN_START = 0x01,
	PIN_FEATURE_VERIFY_PIN_FINISH = 0x02,
	PIN_FEATURE_MODIFY_PIN_START = 0x03,
	PIN_FEATURE_MODIFY_PIN_FINISH = 0x04,
	PIN_FEATURE_GET_KEY_PRESSED = 0x05,
	PIN_FEATURE_VERIFY_PIN_DIRECT = 0x06,
	PIN_FEATURE_MODIFY_PIN_DIRECT = 0x07,
	PIN_FEATURE_MCT_READER_DIRECT = 0x08,
	PIN_FEATURE_MCT_UNIVERSAL = 0x09,
	PIN_FEATURE_IFD_PIN_PROPERTIES = 0x0A,
	PIN_FEATURE_ABORT = 0x0B,
	PIN_FEATURE_SET_SPE_MESSAGE = 0x0C,
	PIN_FEATURE_VERIFY_PIN_DIRECT_APP_ID = 0x0D,
	PIN_FEATURE_MODIFY_PIN_DIRECT_APP_ID = 0x0E,
	PIN_FEATURE_WRITE_DISPLAY = 0x0F,
	PIN_FEATURE_GET_KEY = 0x10,
	PIN_FEATURE_IFD_DISPLAY_PROPERTIES = 0x11,
	PIN_FEATURE_GET_TLV_PROPERTIES = 0x12,
	PIN_FEATURE_CCID_ESC_COMMAND = 0x13,
	PIN_FEATURE_EXECUTE_PACE = 0x20,
};

/* The longest feature answer accepted: one entry per possible tag. */
#define PIN_FEATURES_MAX_LEN (256 * 6)

/* Control codes by tag; 0 = the reader does not offer the feature. */
struct pin_features {
	uint32_t code[256];
	unsigned count;
};

/* Parse the CM_IOCTL_GET_FEATURE_REQUEST answer: a list of
 * tag (1 byte) / length (1 byte, always 4) / control code (4 bytes, big
 * endian) (part 10 §2.2). out is cleared first. An empty answer is valid
 * (no features). Returns 0, or -EBADMSG for a truncated entry, a length
 * other than 4, or an answer longer than PIN_FEATURES_MAX_LEN (out then
 * holds no features). A repeated tag keeps its first code. */
int pin_features_parse(const uint8_t *buf, size_t len, struct pin_features *out);
/* The control code of tag, or 0. */
uint32_t pin_feature_code(const struct pin_features *f, uint8_t tag);

/* What the reader shows and waits for. */
struct pin_pinpad {
	uint8_t timeout_s;  /* bTimerOut: 0 = the reader's default */
	uint8_t timeout2_s; /* bTimerOut2: after the first key */
	uint8_t validation; /* bEntryValidationCondition: 0x02 = the OK key */
	uint8_t messages;   /* bNumberMessage: 0 none, 1 the reader's "enter PIN" */
	uint16_t lang_id;   /* wLangId: 0x040C French (France) */
	uint8_t msg_index;  /* bMsgIndex */
};
extern const struct pin_pinpad pin_pinpad_default;

/* Bytes of PIN_VERIFY_STRUCTURE before abData. */
#define PIN_VERIFY_STRUCTURE_HDR 19
#define PIN_VERIFY_STRUCTURE_MAX (PIN_VERIFY_STRUCTURE_HDR + 5 + PIN_BLOCK_MAX)

/* Build PIN_VERIFY_STRUCTURE (part 10 §2.5.2) for FEATURE_VERIFY_PIN_DIRECT,
 * packed, multi-byte fields little-endian:
 *   0 bTimerOut, 1 bTimerOut2, 2 bmFormatString, 3 bmPINBlockString,
 *   4 bmPINLengthFormat, 5-6 wPINMaxExtraDigit (min << 8 | max),
 *   7 bEntryValidationCondition, 8 bNumberMessage, 9-10 wLangId,
 *   11 bMsgIndex, 12-14 bTeoPrologue (00 00 00), 15-18 ulDataLength,
 *   19.. abData: the VERIFY APDU whose PIN block is a template the reader
 *   fills (pad bytes; format 2: 20 FF ...).
 * The host never sees the PIN on this path. Returns 0, -EINVAL (params),
 * -ENOBUFS. */
int pin_build_verify_structure(const struct pin_params *p, const struct pin_pinpad *pp,
                               uint8_t *out, size_t cap, size_t *outlen);

#endif
