/* The practitioner's signer backends: one interface, chosen by name from a
 * const table (STYLE: backends beside the reader backends).
 *
 * A backend (a const struct signer_ops) opens a key store, logs in with a
 * PIN (or through the reader's keypad), signs, logs out, and closes:
 *   "pkcs11"  a PKCS#11 module (OpenSC for the CPS card, SoftHSM in tests),
 *             drivers/signer_pkcs11.c;
 *   "file"    a PEM key file through OpenSSL, for development only,
 *             drivers/signer_file.c;
 *   "none"    no signer (sheets cannot be signed; reading cards still
 *             works), drivers/signer.c with the table.
 *
 * The object that runs them (one worker thread, the loop-side status, the
 * idle logout) is daemon/pin/signer.h; backends know nothing of it.
 *
 * Signatures are what COSE (RFC 9053) wants: ES256 = ECDSA P-256 over
 * SHA-256, raw r||s, 64 bytes; PS256 = RSASSA-PSS, SHA-256, MGF1-SHA-256,
 * salt 32 bytes, as long as the modulus. The hash is computed on the host
 * and the token gets CKM_ECDSA / CKM_RSA_PKCS_PSS (every token that can
 * sign at all has those; the hash-and-sign mechanisms are optional).
 */
#ifndef VITALED_DRIVERS_SIGNER_H
#define VITALED_DRIVERS_SIGNER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "lib/secmem.h"

/* COSE algorithm identifiers (RFC 9053 §2.1, RFC 8230 §2). */
#define SIGNER_ALG_ES256 (-7)
#define SIGNER_ALG_PS256 (-37)
#define SIGNER_SIG_MAX 512 /* RSA 4096 */

/* Results besides 0 and plain errnos, shared by backends and callers. */
#define SIGNER_E_PIN_INCORRECT (-EACCES)    /* wrong PIN; status.tries_left says more */
#define SIGNER_E_PIN_BLOCKED (-EKEYREVOKED) /* blocked: never retried, needs the unblock code */
#define SIGNER_E_PIN_MALFORMED (-EINVAL)    /* the token refused the PIN's length/characters */
#define SIGNER_E_NOT_EXPECTED (-EALREADY)   /* already logged in, or no PIN needed */
#define SIGNER_E_NO_TOKEN (-ENODEV)         /* token/card absent, or the key file unreadable */
#define SIGNER_E_LOGIN_NEEDED (-EKEYEXPIRED) /* sign/selftest before a login */
#define SIGNER_E_NO_KEY (-ENOKEY)           /* the configured key is not on the token */
#define SIGNER_E_CANCELLED (-ECANCELED)     /* the pinpad was cancelled or timed out */
#define SIGNER_E_BAD_ALG (-EPROTONOSUPPORT) /* the key cannot do the asked COSE alg */
#define SIGNER_E_BUSY (-EBUSY)              /* a login is already running */

enum signer_state {
	SIGNER_DISABLED,   /* backend "none" */
	SIGNER_STARTING,   /* the backend is being opened */
	SIGNER_NO_TOKEN,   /* module loaded, no token/card (or key file unreadable) */
	SIGNER_LOCKED,     /* the key is there; a PIN is needed */
	SIGNER_READY,      /* logged in: signs */
	SIGNER_BLOCKED,    /* the PIN is blocked; the unblock code is needed (not in vitaled) */
	SIGNER_ERROR,      /* the backend failed; reason says why */
};

/* What a backend knows. Filled on the worker thread; copied to the loop. */
struct signer_status {
	enum signer_state state;
	bool logged_in;
	bool needs_pin;   /* false: key usable without login (clear key file, token without login) */
	bool pinpad;      /* PIN entered on the reader (CKF_PROTECTED_AUTHENTICATION_PATH) */
	bool count_low;   /* the token says some wrong tries were made (CKF_USER_PIN_COUNT_LOW) */
	int tries_left;   /* -1 unknown */
	int cose_alg;     /* SIGNER_ALG_*, or 0 before the key is known */
	unsigned key_bits;
	unsigned pin_min, pin_max; /* digits the backend accepts */
	char token[65];   /* token label, or the key file's name */
	char who[128];    /* certificate subject CN (the practitioner), or "" */
	char cert_id[65]; /* certificate subject serialNumber (national id), or "" */
	char reason[160]; /* for NO_TOKEN / ERROR; never a secret */
};

/* The signing certificate and its chain, as the backend found them: der[0]
 * is the certificate of the key, then the intermediates that issued it
 * (each by the one after it), DER, malloc'd. n == 0: no certificate. */
#define SIGNER_CHAIN_MAX 8
struct signer_chain {
	size_t n;
	uint8_t *der[SIGNER_CHAIN_MAX];
	size_t len[SIGNER_CHAIN_MAX];
};
void signer_chain_clear(struct signer_chain *c); /* frees, n = 0 */
bool signer_chain_equal(const struct signer_chain *a, const struct signer_chain *b);
/* A deep copy; -ENOMEM (dst left empty). */
int signer_chain_copy(struct signer_chain *dst, const struct signer_chain *src);
/* Order certs (DER, taken: moved into out or freed) into out: the first
 * one whose public key is pub (SPKI DER; NULL: the first given), the most
 * recent notBefore among several, then its issuers found among the others
 * by name and signature. Self-signed roots are left out. Returns 0,
 * -ENOENT (no certificate for the key), -ENOMEM. */
int signer_chain_build(uint8_t **der, const size_t *len, size_t n, const uint8_t *pub,
                       size_t pub_len, struct signer_chain *out);

/* A backend. Every function runs on the signer's worker thread
 * (daemon/pin/signer.c), one at a time; they may block. st is the backend's status, updated in place. */
struct signer_ops {
	const char *name;
	bool compiled_in;
	/* Load the module / read the key file. Returns 0 even when the token
	 * is absent (state NO_TOKEN); negative errno only for a broken set-up. */
	int (*open)(const struct config *c, void **ctx, struct signer_status *st);
	/* Log in with pin (NULL: through the pinpad). The pin stays the
	 * caller's. Returns 0 or SIGNER_E_*. Must never retry on its own. */
	int (*login)(void *ctx, const struct secmem_pin *pin, struct signer_status *st);
	int (*logout)(void *ctx, struct signer_status *st);
	/* Check the token is still there / has come back; may be NULL. */
	int (*poll)(void *ctx, struct signer_status *st);
	/* Sign tbs with the COSE algorithm; *siglen is the buffer size on entry. */
	int (*sign)(void *ctx, struct signer_status *st, int cose_alg, const uint8_t *tbs,
	            size_t len, uint8_t *sig, size_t *siglen);
	/* The public key as SubjectPublicKeyInfo DER (malloc'd), or -ENOENT. */
	int (*public_key)(void *ctx, uint8_t **der, size_t *len);
	void (*close)(void *ctx);
	/* The key's certificate and chain into out (empty on entry). 0 with
	 * out->n >= 1; -ENOENT when the key has none; SIGNER_E_NO_TOKEN or an
	 * errno when it cannot be read now (the last chain known stands). May
	 * be NULL (no certificate ever). Called after open, every login and
	 * every poll (so it must be cheap: a file stat, objects the module
	 * caches). */
	int (*certificate)(void *ctx, struct signer_chain *out);
	/* sign may run on any thread, several at once, while no other op runs
	 * (struct signer holds a read lock for it and a write lock for every
	 * worker call); such a sign must leave st alone. The file backend's
	 * EVP_PKEY signs with a fresh EVP_MD_CTX per call; a PKCS#11 session
	 * stays on the worker. */
	bool sign_any_thread;
	/* Optional (may be NULL): a descriptor, owned by ctx and closed by
	 * close, that becomes readable when a poll could see something new
	 * (the file backend: inotify on its certificate's folder). With one,
	 * the daemon polls when watch_read says so instead of every 2 s, so an
	 * idle daemon does not wake for nothing. -1: none, poll on the timer.
	 * Both run on the daemon's loop thread while worker calls may run:
	 * they must touch only the descriptor and what open set once. */
	int (*watch_fd)(void *ctx);
	/* Read what is pending on watch_fd (non-blocking); true when a poll
	 * is due. */
	bool (*watch_read)(void *ctx);
};

extern const struct signer_ops signer_pkcs11_ops;
extern const struct signer_ops signer_file_ops;
extern const struct signer_ops signer_none_ops;

/* The backend called name, or NULL. */
const struct signer_ops *signer_backend_find(const char *name);
const char *signer_state_name(enum signer_state st);
const char *signer_alg_name(int cose_alg); /* "ES256", "PS256", or NULL */

/* ------------------------------------------------------------------ */
/* helpers shared by backends and tests (pure or OpenSSL-only) */

/* Verify a COSE-form signature with a SubjectPublicKeyInfo DER key
 * (protocol/cose.c does the work). Returns 0 if valid, -EBADMSG if not,
 * SIGNER_E_BAD_ALG when the key cannot do the alg, -EINVAL for a bad key. */
int signer_verify(int cose_alg, const uint8_t *spki, size_t spki_len, const uint8_t *tbs,
                  size_t len, const uint8_t *sig, size_t siglen);

/* What a failed PKCS#11 C_Login means, from its return value and the token
 * flags read right after (PKCS#11 v2.40 §5.7 CK_TOKEN_INFO flags):
 * CKR_PIN_INCORRECT -> SIGNER_E_PIN_INCORRECT with tries_left 1 when
 * CKF_USER_PIN_FINAL_TRY, unknown (-1, count_low) when CKF_USER_PIN_COUNT_LOW,
 * and SIGNER_E_PIN_BLOCKED when CKF_USER_PIN_LOCKED is already set;
 * CKR_PIN_LOCKED -> SIGNER_E_PIN_BLOCKED; CKR_PIN_LEN_RANGE -> malformed;
 * CKR_OK / CKR_USER_ALREADY_LOGGED_IN -> 0; removal codes -> NO_TOKEN. */
struct signer_p11_outcome {
	int result;
	enum signer_state state;
	int tries_left;
	bool count_low;
};
void signer_p11_login_outcome(unsigned long rv, unsigned long token_flags,
                              struct signer_p11_outcome *o);
/* A name for a CK_RV ("CKR_PIN_INCORRECT"), or "CKR_0x%lx"-style into buf. */
const char *signer_p11_rv_name(unsigned long rv, char *buf, size_t len);

#endif
