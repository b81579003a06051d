/* The signed form of a care sheet: the deterministic CBOR of the model
 * (protocol/sheet.h, RFC 8949 §4.2.1) inside a COSE_Sign1 (RFC 9052 §4.2)
 * by the practitioner's key, and the way back: decoding the CBOR into the
 * model and verifying a signed sheet offline (docs/care-sheet.md, "The
 * signed form").
 *
 * Encoding goes through sheet_encode() with protocol/cbor's encoder. The
 * COSE_Sign1 is tagged (18), its protected header is exactly {1: alg}
 * (ES256 -7 or PS256 -37), its unprotected header is empty, and the payload
 * is the sheet's CBOR. Signing goes through a cose_sign_fn, so the key stays
 * wherever the signer keeps it (a card, a token, a file).
 *
 * Decoding is strict: a deterministic CBOR map with exactly the keys of the
 * model and the types of docs/care-sheet.md; every problem is reported, one
 * per field (struct sheet_errors). Verification checks, in order: the
 * COSE_Sign1 shape and algorithm, the signature (when a key is given), the
 * payload's decoding, that encoding the decoded sheet again gives the very
 * same bytes (so nothing outside the model was signed), the model's rules
 * (sheet_validate, with the sheet's own creation time as "now"), and the due
 * date recomputed from the care date (CSS R.161-47) in any of the
 * calendars a department has (metropolitan, Alsace-Moselle, each overseas
 * department's abolition-of-slavery day): the sheet does not say where it
 * was made.
 *
 * Pure code: no I/O, no logging, no state; any thread. Bounded by
 * SHEETSIG_MAX (the signed form) and the CBOR limits below.
 */
#ifndef VITALED_SHEETSIG_H
#define VITALED_SHEETSIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "protocol/cose.h"
#include "protocol/sheet.h"

/* The CBOR of the biggest sheet (32 acts, 2 KiB device answer, 8 KiB
 * credential) is under 14 KiB; the COSE_Sign1 adds the header and a
 * signature of at most 512 bytes. */
#define SHEETSIG_CBOR_MAX (32u * 1024u)
#define SHEETSIG_MAX (SHEETSIG_CBOR_MAX + 1024u)
#define SHEETSIG_VERSION 1

/* Deterministic CBOR of a valid sheet. *out is malloc'd (free it).
 * 0, -EINVAL (s is not encodable), -E2BIG, -ENOMEM. */
int sheetsig_encode(const struct sheet *s, uint8_t **out, size_t *len);

/* Encode s and sign it as a COSE_Sign1 with alg (COSE_ALG_ES256 or
 * COSE_ALG_PS256) through sign(sign_ctx, ...), which runs on the caller's
 * thread and may block. *out is malloc'd (free it). 0, or the encoder's
 * error, or the signer's. */
int sheetsig_sign(const struct sheet *s, int alg, cose_sign_fn sign, void *sign_ctx,
                  uint8_t **out, size_t *len);

/* Decode the CBOR payload of a signed sheet into s (cleared with
 * sheet_init first). Returns 0, or -EBADMSG with one entry per problem in
 * errs (errs may be NULL) when the bytes are not a sheet of this model. */
int sheetsig_decode(const uint8_t *cbor, size_t len, struct sheet *s, struct sheet_errors *errs);

struct sheetsig_report {
	int64_t alg;            /* the protected alg, 0 if none */
	bool signature_checked; /* a key was given and the signature was checked ... */
	bool signature_ok;      /* ... and it verified */
	bool decoded;           /* the payload is a sheet of this model */
	bool canonical;         /* encoding it again gives the same bytes */
	bool valid;             /* sheet_validate found nothing */
	bool due_ok;            /* the due date is the one R.161-47 gives ... */
	bool due_alsace;        /* ... counting the Alsace-Moselle days */
	const char *due_calendar; /* ... in this calendar (holidays_calendar_name), NULL if none */
	struct sheet_errors errs; /* decoding or validation problems */
};

/* Check a signed sheet (the COSE_Sign1 bytes as stored or exported). key
 * may be NULL: everything but the signature is checked. out (may be NULL)
 * gets the decoded sheet. Returns 0 when every check passed, else the
 * first failure: -EPROTO (not a COSE_Sign1 of our shape, or an algorithm
 * other than ES256/PS256), -EKEYREJECTED (the signature does not verify),
 * -EBADMSG (the payload is not a sheet), -EDOM (not canonical), -EINVAL
 * (a rule is broken), -ERANGE (wrong due date); the CBOR decoder's errors
 * for a message that is not well-formed. rep (may be NULL) says which
 * checks passed. */
int sheetsig_verify(const uint8_t *buf, size_t len, EVP_PKEY *key, struct sheet *out,
                    struct sheetsig_report *rep);

/* The payload (the sheet's CBOR) of a COSE_Sign1, pointing into buf; the
 * signature is not checked. 0 or -EPROTO / the decoder's error. */
int sheetsig_payload(const uint8_t *buf, size_t len, const uint8_t **payload, size_t *plen,
                     int64_t *alg);

#endif
