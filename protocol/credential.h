/* The digital carte Vitale's credential and device answer: parsing and
 * verification, terminal side (docs/digital-card.md §8-§12).
 *
 * credential_verify() runs the checks of §11 C.2-C.11 on the bytes of a
 * GET CREDENTIAL answer: strict CBOR, the COSE_Sign1 shape, the issuer's
 * certificate path to a configured insurer anchor (RFC 5280 §6 through
 * OpenSSL's X509_STORE), the issuer profile of §10.1 with the purpose OID,
 * the issuer's ES256 signature, every payload field, the device key and the
 * dates. credential_verify_answer() runs §11 A.2-A.8 on the device-signed
 * answer to AUTHENTICATE. Each reports the first failure by its §12 name
 * (enum credential_reason, credential_reason_name()).
 *
 * The reason enum also carries the transport-level names of §12 (no_applet,
 * code_refused, card_lost ...) so that protocol/digital.c reports every
 * outcome of a presentation in one type.
 *
 * Pure code: no I/O (the daemon reads anchor files and hands their bytes
 * in), no logging, time given by the caller. A struct credential_anchors is
 * built once and may then be shared read-only by several threads.
 */
#ifndef VITALED_CREDENTIAL_H
#define VITALED_CREDENTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "protocol/cbor.h"

/* docs/digital-card.md §12, in the order of that table. */
enum credential_reason {
	CREDENTIAL_R_OK = 0,
	CREDENTIAL_R_NO_APPLET,
	CREDENTIAL_R_BAD_VERSION,
	CREDENTIAL_R_CBOR_MALFORMED,
	CREDENTIAL_R_COSE_MALFORMED,
	CREDENTIAL_R_PAYLOAD_INVALID,
	CREDENTIAL_R_ALG_UNSUPPORTED,
	CREDENTIAL_R_UVM_UNSUPPORTED,
	CREDENTIAL_R_CHAIN_UNTRUSTED,
	CREDENTIAL_R_CHAIN_EXPIRED,
	CREDENTIAL_R_ISSUER_PURPOSE,
	CREDENTIAL_R_CREDENTIAL_SIGNATURE,
	CREDENTIAL_R_CREDENTIAL_NOT_YET_VALID,
	CREDENTIAL_R_CREDENTIAL_EXPIRED,
	CREDENTIAL_R_DEVICE_KEY_INVALID,
	CREDENTIAL_R_DEVICE_SIGNATURE,
	CREDENTIAL_R_NONCE_MISMATCH,
	CREDENTIAL_R_CID_MISMATCH,
	CREDENTIAL_R_UV_FALSE,
	CREDENTIAL_R_CODE_REFUSED,
	CREDENTIAL_R_CODE_BLOCKED,
	CREDENTIAL_R_CODE_TIMEOUT,
	CREDENTIAL_R_ANSWER_TOO_LARGE,
	CREDENTIAL_R_STATUS_UNEXPECTED,
	CREDENTIAL_R_CARD_LOST,
	/* The QR form (docs/digital-card.md part 2, §Q.12) */
	CREDENTIAL_R_QR_UNREADABLE,
	CREDENTIAL_R_PRESENTATION_EXPIRED,
	CREDENTIAL_R_REPLAYED,
	CREDENTIAL_R_CHALLENGE_MISMATCH,
	CREDENTIAL_R_CHALLENGE_REQUIRED,
	/* Not in §12: the terminal itself failed (out of memory, OpenSSL
	 * error, bad configuration). Never the phone's fault. */
	CREDENTIAL_R_INTERNAL_ERROR,
	CREDENTIAL_R_COUNT
};

/* The §12 name ("ok" for CREDENTIAL_R_OK, "internal_error"); "unknown" for
 * values out of range. Static storage. */
const char *credential_reason_name(enum credential_reason r);

/* §13 limits */
#define CREDENTIAL_SELECT_MAX 256
#define CREDENTIAL_MAX 8192
#define CREDENTIAL_ANSWER_MAX 1024
#define CREDENTIAL_DEPTH_MAX 8
#define CREDENTIAL_X5CHAIN_MAX 4
#define CREDENTIAL_RIGHTS_MAX 16
#define CREDENTIAL_BENEFICIARIES_MAX 16
#define CREDENTIAL_SKEW_DEFAULT 300
#define CREDENTIAL_NONCE_LEN 32
#define CREDENTIAL_CID_LEN 16
/* §10.2: the test arc. A deployment sets its insurer's OID. */
#define CREDENTIAL_EKU_DEFAULT "2.999.86.1.1"

/* cbor_decode flags for everything the protocol decodes (§6). */
#define CREDENTIAL_CBOR_FLAGS (CBOR_STRICT | CBOR_NO_NULL | CBOR_KEYS_INT_TEXT | CBOR_NO_TAGS)

#define CREDENTIAL_NAME_MAX 100 /* bytes of UTF-8 */
#define CREDENTIAL_CODE_MAX 16

/* ------------------------------------------------------------------------ */
/* Trust anchors (§10.1) */

struct credential_anchors;

int credential_anchors_new(struct credential_anchors **out);
/* Add every certificate of a PEM text (one file's content). -EINVAL when
 * it holds none or one does not parse (nothing is added then). */
int credential_anchors_add_pem(struct credential_anchors *a, const char *pem, size_t len);
/* Add one certificate (the anchors take their own reference). */
int credential_anchors_add_x509(struct credential_anchors *a, X509 *cert);
size_t credential_anchors_count(const struct credential_anchors *a);
void credential_anchors_free(struct credential_anchors *a);

struct credential_policy {
	const struct credential_anchors *anchors; /* none: chain_untrusted */
	const char *issuer_eku; /* dotted OID; NULL: CREDENTIAL_EKU_DEFAULT */
	int64_t now;            /* seconds since the epoch */
	int64_t skew_s;         /* on nbf/exp (§11 C.11); >= 0 */
};

/* ------------------------------------------------------------------------ */
/* The credential (§8) */

struct credential_right {
	char from[11], to[11];            /* YYYY-MM-DD, calendar dates, from <= to */
	char code[CREDENTIAL_CODE_MAX + 1];
};

struct credential_beneficiary {
	unsigned rank;                    /* 1..99, distinct */
	char nir[16];
	char surname[CREDENTIAL_NAME_MAX + 1];
	char given_name[CREDENTIAL_NAME_MAX + 1];
	char birth_date[11];              /* YYYY-MM-DD digits; may be "lunar" */
};

/* Text fields are NUL-terminated copies (C0 controls and DEL refused). */
struct credential {
	uint8_t cid[CREDENTIAL_CID_LEN];
	char nir[16];
	char surname[CREDENTIAL_NAME_MAX + 1];
	char given_name[CREDENTIAL_NAME_MAX + 1];
	char birth_date[11];
	char regime[3], caisse[4], centre[5];
	struct credential_right rights[CREDENTIAL_RIGHTS_MAX];
	size_t nrights;
	struct credential_beneficiary beneficiaries[CREDENTIAL_BENEFICIARIES_MAX];
	size_t nbeneficiaries;
	int64_t nbf, exp;
	EVP_PKEY *dk; /* the device key (owned; freed by credential_clear) */
};

/* Verify a credential (the GET CREDENTIAL answer bytes) per §11 C.2-C.11
 * at pol->now. Returns 0 and fills out (clear it with credential_clear)
 * when it is accepted; -EACCES with *reason set when it is refused;
 * -EINVAL (bad policy), -ENOMEM or -EIO with CREDENTIAL_R_INTERNAL_ERROR.
 * out is cleared first and left clear on failure. Thread-safe. */
int credential_verify(const uint8_t *buf, size_t len, const struct credential_policy *pol,
                      struct credential *out, enum credential_reason *reason);

/* Steps C.7-C.11 alone on a payload (no signature, no chain): for fuzzing
 * and for tests. Never use its result as a verified identity. */
int credential_parse_payload(const uint8_t *payload, size_t len, const struct credential_policy *pol,
                             struct credential *out, enum credential_reason *reason);

/* Free dk and wipe the struct. NULL-safe. */
void credential_clear(struct credential *c);

/* True when a right covers the calendar date today ("YYYY-MM-DD", the
 * caller's local date). Information only (§8: never a reason to refuse). */
bool credential_right_covers(const struct credential *c, const char *today);

/* ------------------------------------------------------------------------ */
/* The device answer (§9) */

struct credential_answer {
	int64_t ts; /* the phone's clock when it signed: recorded, not checked */
};

/* Verify the device answer to AUTHENTICATE per §11 A.2-A.8 against a
 * verified credential and the nonce of the AUTHENTICATE just sent. Same
 * return convention as credential_verify. Thread-safe. */
int credential_verify_answer(const struct credential *cred, const uint8_t *buf, size_t len,
                             const uint8_t nonce[CREDENTIAL_NONCE_LEN],
                             struct credential_answer *out, enum credential_reason *reason);

#endif
