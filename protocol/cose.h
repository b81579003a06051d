/* COSE_Sign1 (RFC 9052 §4.2, §4.4) with ES256 and PS256 (RFC 9053 §2.1,
 * RFC 8230 §2), x5chain (RFC 9360 §2) and EC2 P-256 COSE_Key (RFC 9053
 * §7.1.1), over protocol/cbor.h and OpenSSL 3.
 *
 * Used by the digital card (credential and device answer, see
 * protocol/credential.h) and by care sheets and batches, which the
 * practitioner signs through a cose_sign_fn (PKCS#11 or a key file, written
 * elsewhere). Signatures are always verified over the bytes as received,
 * never over a re-encoding.
 *
 * Pure code, no logging; thread-safe on distinct objects. Errors are
 * negative errno values: the decoder's (see cbor.h) for CBOR that is not
 * well-formed or not deterministic, and
 *   -EPROTO       not a COSE_Sign1 of the expected shape
 *   -ENOTSUP      algorithm unknown, or key not fit for the algorithm
 *   -EKEYREJECTED the signature does not verify
 *   -EINVAL       bad arguments; COSE_Key with a point not on the curve
 *   -ENOMEM, -EIO allocation / OpenSSL failure
 */
#ifndef VITALED_COSE_H
#define VITALED_COSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "protocol/cbor.h"

#define COSE_ALG_ES256 (-7)
#define COSE_ALG_PS256 (-37)

#define COSE_TAG_SIGN1 18
#define COSE_LABEL_ALG 1
#define COSE_LABEL_KID 4
#define COSE_LABEL_X5CHAIN 33

#define COSE_ES256_SIG_LEN 64
#define COSE_SIG_MAX 512      /* RSA-4096 */
#define COSE_X5CHAIN_MAX 8

/* Parse flags */
#define COSE_TAG_REQUIRED 0x1u /* the tag 18 must be there */
#define COSE_UNTAGGED 0x2u     /* the tag 18 must not be there */
/* The narrow data model of docs/digital-card.md §6 for the message and its
 * protected header: no null, no tag but the top tag 18, only integer and
 * text map keys (cbor.h CBOR_NO_NULL ...; refusals are -ENOTSUP). */
#define COSE_NARROW 0x4u

struct cose_bytes {
	const uint8_t *ptr;
	size_t len;
};

/* A parsed COSE_Sign1; every pointer points into the caller's input. */
struct cose_sign1 {
	bool tagged;
	struct cose_bytes protected_hdr; /* the bstr content, exactly as received */
	struct cose_bytes payload;
	struct cose_bytes signature;
	bool alg_present;                /* protected label 1 is there ... */
	bool has_alg;                    /* ... and is an integer: */
	int64_t alg;
	/* A label in both header maps (RFC 9052 §3 forbids it). Only with
	 * COSE_NARROW is it recorded here instead of failing the parse: that
	 * profile ignores unprotected labels it does not use. */
	bool label_conflict;
	uint32_t protected_count;        /* labels in the protected map */
	uint32_t unprotected_count;      /* labels in the unprotected map */
	/* x5chain (label 33, protected first, else unprotected): a bstr gives
	 * one certificate (x5chain_array false), an array of bstr one or more.
	 * A label 33 of another shape (not a bstr, not an array of
	 * 1..COSE_X5CHAIN_MAX non-empty bstr) does not fail the parse: it sets
	 * x5chain_invalid, so that the caller can judge the other headers
	 * first. Whoever uses the chain MUST check has_x5chain and
	 * !x5chain_invalid. */
	bool has_x5chain;
	bool x5chain_invalid;
	bool x5chain_array;
	size_t x5chain_n;
	struct cose_bytes x5chain[COSE_X5CHAIN_MAX];
	/* The decoded outer structure and protected map (internal). */
	struct cbor_doc doc;
	struct cbor_doc prot;
	const struct cbor_item *unprotected; /* item in doc */
};

/* Parse buf as a COSE_Sign1 (RFC 9052 §4.2): [protected bstr (empty or a
 * map), unprotected map, payload bstr, signature bstr], strictly
 * deterministic (RFC 8949 §4.2.1), within lim (NULL: CBOR_LIMITS_DEFAULT).
 * The protected map is decoded with the same rules. Detached payloads (nil)
 * are refused. A label in both header maps (RFC 9052 §3) is -EPROTO unless
 * COSE_NARROW; see x5chain_invalid above. The algorithm is reported, not
 * judged (an alg that is not an integer, e.g. a text name, leaves has_alg
 * false): the caller decides which ones it accepts.
 * out is cleared first; free it with cose_sign1_free (also on failure). */
int cose_sign1_parse(const uint8_t *buf, size_t len, const struct cbor_limits *lim,
                     unsigned flags, struct cose_sign1 *out);
void cose_sign1_free(struct cose_sign1 *msg);

/* The bytes to be signed (RFC 9052 §4.4): the deterministic encoding of
 * ["Signature1", protected, external_aad, payload]. *out is malloc'd (free
 * it). aad may be NULL when aadlen is 0. */
int cose_sig_structure(const uint8_t *prot, size_t protlen, const uint8_t *aad, size_t aadlen,
                       const uint8_t *payload, size_t paylen, uint8_t **out, size_t *outlen);

/* Verify sig over tbs with alg: ES256 needs an EC P-256 key and a 64-byte
 * r||s; PS256 an RSA key of at least 2048 bits and a modulus-sized
 * signature (RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32). 0 when valid. */
int cose_verify_raw(int64_t alg, EVP_PKEY *key, const uint8_t *tbs, size_t tbslen,
                    const uint8_t *sig, size_t siglen);

/* Verify a parsed message with key, using its protected alg (no alg:
 * -EPROTO; an alg that is not a supported integer: -ENOTSUP). 0 when valid. */
int cose_sign1_verify(const struct cose_sign1 *msg, EVP_PKEY *key);

/* The signer: sign tbs for alg and write the COSE signature (ES256: r||s,
 * 64 bytes; PS256: the RSA-PSS signature) to sig; *siglen is the buffer size
 * on entry and the signature length on return. 0 or a negative errno. It is
 * called on the caller's thread; it may block (a PIN pad, a token). */
typedef int (*cose_sign_fn)(void *ctx, int alg, const uint8_t *tbs, size_t len, uint8_t *sig,
                            size_t *siglen);

/* What goes in the headers besides alg. */
struct cose_sign1_params {
	int alg;                              /* COSE_ALG_ES256 or COSE_ALG_PS256 */
	const struct cose_bytes *x5chain;     /* certificates, DER, signer first; may be NULL */
	size_t x5chain_n;
	bool x5chain_array;                   /* array form even for one certificate */
	const uint8_t *kid;                   /* may be NULL */
	size_t kid_len;
	bool untagged;                        /* omit the tag 18 */
	size_t max_size;                      /* output cap; 0: 1 MiB */
};

/* Build a COSE_Sign1: protected {1: alg}, unprotected {4: kid, 33: x5chain}
 * (those given), the payload bytes as given, the signature from sign. *out is
 * malloc'd (free it). */
int cose_sign1_create(const struct cose_sign1_params *p, const uint8_t *payload, size_t paylen,
                      cose_sign_fn sign, void *sign_ctx, uint8_t **out, size_t *outlen);

/* A cose_sign_fn over an in-memory EVP_PKEY (ctx is the EVP_PKEY *): for
 * tests, tools and the file signer. */
int cose_sign_evp(void *ctx, int alg, const uint8_t *tbs, size_t len, uint8_t *sig,
                  size_t *siglen);

/* ECDSA signature conversions between DER (what OpenSSL makes) and the
 * fixed-size r||s of COSE (RFC 9053 §2.1); n is the size of one integer (32
 * for P-256). */
int cose_ecdsa_der_to_raw(const uint8_t *der, size_t derlen, size_t n, uint8_t *raw);
int cose_ecdsa_raw_to_der(const uint8_t *raw, size_t rawlen, uint8_t **der, size_t *derlen);

/* An EC2 P-256 COSE_Key (RFC 9053 §7.1.1) {1: 2, -1: 1, -2: x, -3: y}
 * (exactly these labels, x and y 32 bytes) to a public EVP_PKEY (free with
 * EVP_PKEY_free). -EPROTO for another shape, -EINVAL for a point not on the
 * curve. */
int cose_key_to_evp(const struct cbor_doc *doc, const struct cbor_item *map, EVP_PKEY **out);
/* Write an EC P-256 public key as that COSE_Key. */
int cose_key_from_evp(EVP_PKEY *key, struct cbor_enc *e);

/* True when key is an EC key on P-256. */
bool cose_key_is_p256(EVP_PKEY *key);

#endif
