/* The digital carte Vitale by QR code, terminal side: docs/digital-card.md
 * part 2 ("version 1, QR").
 *
 * A phone shows a QR code whose text is
 *     "VQ1:" base45( zlib( CBOR {"v": 1, "cred": credential, "pres": presentation} ) )
 * where the credential is the same COSE_Sign1 the NFC path reads (§8) and
 * the presentation a COSE_Sign1 made by the credential's device key over
 * {"c"?, "n", "ts", "uv", "cid", "use": "qr", "uvm"} (§Q.5). A counter
 * scanner reads the text; qr_verify() runs every check of §Q.11 in order
 * and names the first failure (enum credential_reason, §12 and §Q.12).
 *
 * Freshness (§Q.7) is partly the caller's: qr_verify() checks the window of
 * a one-way presentation (time only) itself, then asks the caller's claim()
 * to judge the challenge and the replay cache and, when the presentation
 * passes, to record it, atomically (a daemon runs several sessions at
 * once). Pure code otherwise: no I/O, no logging, time given by the caller.
 *
 * base45 (RFC 9285) and the bounded inflate are exported for tests and the
 * fuzz target (tests/fuzz/fuzz_qr.c).
 */
#ifndef VITALED_QR_H
#define VITALED_QR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/credential.h"

#define QR_PREFIX "VQ1:"
/* §Q.3: the longest text accepted: the alphanumeric capacity of a QR code
 * of version 40 at error-correction level M (ISO/IEC 18004 table 7). */
#define QR_TEXT_MAX 3391
/* The deflated CBOR (base45 of QR_TEXT_MAX characters is at most this). */
#define QR_DEFLATED_MAX ((QR_TEXT_MAX / 3) * 2 + 1)
/* §Q.4: the inflated container, at most (credential + presentation + keys). */
#define QR_CBOR_MAX (CREDENTIAL_MAX + CREDENTIAL_ANSWER_MAX + 64)
#define QR_CHALLENGE_MIN 4
#define QR_CHALLENGE_MAX 16
#define QR_PRES_NONCE_LEN 16
#define QR_PRESENTATION "digital-qr"

/* RFC 9285 base45. Decode: 0, -EINVAL (a character outside the alphabet,
 * a length of 3k+1, a group over its range), -ENOSPC (outmax too small).
 * Encode: writes 3 characters per 2 bytes (2 for a last odd byte) and a
 * NUL; 0 or -ENOSPC. */
int base45_decode(const char *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen);
int base45_encode(const uint8_t *in, size_t len, char *out, size_t outmax);

/* Inflate a zlib stream (RFC 1950) of exactly len bytes into at most outmax
 * bytes (zlib's inflate, never more output than that). 0; -E2BIG when the
 * output would exceed outmax; -EBADMSG when the stream is corrupt, truncated
 * or followed by other bytes; -ENOMEM. */
int qr_inflate(const uint8_t *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen);

/* The judgment the caller owns (§Q.7 F.2-F.3), under its own lock:
 * presentation hash h (SHA-256 of the signed payload bytes), the challenge
 * the phone signed (NULL for a one-way presentation) and its ts. Return
 * CREDENTIAL_R_REPLAYED when h is in the replay cache,
 * CREDENTIAL_R_CHALLENGE_MISMATCH when challenge is not one the terminal
 * shows (or it expired), else record h (and use the challenge up) and
 * return CREDENTIAL_R_OK. */
typedef enum credential_reason (*qr_claim_fn)(void *ctx, const uint8_t h[32],
                                              const char *challenge, int64_t ts);

struct qr_policy {
	struct credential_policy cred; /* anchors, issuer purpose, now, skew */
	bool one_way;                  /* [digital] qr_one_way: time-only codes allowed */
	int64_t window_s;              /* [digital] qr_window_s: |now - ts| for those */
	qr_claim_fn claim;             /* NULL: no challenge is open, nothing replayed */
	void *claim_ctx;
};

struct qr_result {
	enum credential_reason reason;
	/* Filled only when accepted: */
	struct credential cred;
	uint8_t *credential_bytes;     /* owned: the credential as carried */
	size_t credential_len;
	uint8_t *presentation_bytes;   /* owned: the presentation as carried */
	size_t presentation_len;
	char challenge[QR_CHALLENGE_MAX + 1]; /* "" for a one-way presentation */
	int64_t ts;                    /* the phone's clock in the presentation */
	uint8_t hash[32];              /* SHA-256 of its payload (the replay key) */
	/* Diagnostics, always safe to log: */
	size_t text_len, deflated_len, cbor_len;
};

/* Run §Q.11 on the scanned text (without its line terminator). 0 when
 * accepted; -EACCES with out->reason when refused; -EINVAL (bad policy),
 * -ENOMEM or -EIO with internal_error. out is cleared first; release it with
 * qr_result_clear() whatever the return. */
int qr_verify(const char *text, size_t len, const struct qr_policy *pol, struct qr_result *out);

/* §Q.2-§Q.5 alone: unpack the text into the container's two byte strings
 * (pointers into *buf, which the caller frees). For tests and fuzzing. */
int qr_unpack(const char *text, size_t len, uint8_t **buf, const uint8_t **cred, size_t *credlen,
              const uint8_t **pres, size_t *preslen, enum credential_reason *reason);

void qr_result_clear(struct qr_result *r);

/* A challenge as the terminal shows it (§Q.7): 6 decimal digits from the
 * CSPRNG into out (at least 7 bytes). 0 or -EIO. */
int qr_challenge_new(char *out, size_t outlen);

#endif
