/* The practitioner's signer object: the backend of drivers/signer.h run on
 * a worker of its own, the loop-side status, the idle logout and the
 * token's presence polling.
 *
 * struct signer runs every backend call on a one-thread worker
 * (daemon/core/worker.h), because PKCS#11 calls block (a real card takes
 * 100-500 ms to sign, a pinpad waits for a human) and a PKCS#11 session is
 * best used from one thread. Results reach the event loop as the worker's
 * done callbacks; the loop side keeps the last known status.
 */
#ifndef VITALED_SIGNER_H
#define VITALED_SIGNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "daemon/core/loop.h"
#include "drivers/signer.h"
#include "lib/secmem.h"

/* ------------------------------------------------------------------ */
/* the signer object (loop side) */

struct signer;

/* Called on the loop thread whenever the status changes (state, login,
 * token presence). */
typedef void (*signer_status_fn)(struct signer *s, const struct signer_status *st, void *arg);

/* Choose the backend named by c->signer_backend, start the worker, and open
 * the backend there (the status goes from STARTING to the backend's answer
 * through status_fn). Loop thread. Returns 0, -ENOENT for an unknown
 * backend, -ENOTSUP for one not compiled in, or an errno. c must outlive
 * the signer. */
int signer_new(struct loop *l, const struct config *c, signer_status_fn fn, void *arg,
               struct signer **out);
/* Log out, close the backend (on the worker), stop the worker. Pending
 * callbacks are not called; jobs still queued do not reach the backend (a
 * queued PIN is wiped). Loop thread. NULL is ignored. */
void signer_free(struct signer *s);

/* The last status the loop has seen. Loop thread. */
const struct signer_status *signer_status(const struct signer *s);
const char *signer_backend_name(const struct signer *s);

/* The signing certificate and its intermediates as the backend last read
 * them (after the open, every login, every presence poll): n == 0 when the
 * key has none; NULL before the first read. Loop thread. */
const struct signer_chain *signer_chain(const struct signer *s);
/* fn runs on the loop thread whenever that chain changes (not for a token
 * that went away: the last chain stands until one is read again). */
typedef void (*signer_chain_fn)(struct signer *s, const struct signer_chain *c, void *arg);
void signer_set_chain_fn(struct signer *s, signer_chain_fn fn, void *arg);

/* Login (loop thread). pin is taken (wiped and freed by the signer, on
 * every path); NULL asks the pinpad. done runs on the loop thread with 0 or
 * SIGNER_E_* and the status right after the attempt. Returns 0, or
 * SIGNER_E_BUSY while another login runs (pin freed, done not called). */
typedef void (*signer_login_fn)(int result, const struct signer_status *st, void *arg);
int signer_login(struct signer *s, struct secmem_pin *pin, signer_login_fn done, void *arg);
/* Log out now (idle timeout, stop, operator). why goes to the log. */
int signer_logout(struct signer *s, const char *why);
/* Milliseconds since the last login or signature (monotonic). Any thread. */
uint64_t signer_idle_ms(struct signer *s);

/* The idle logout's rule, pure (the signer's timer applies it; tests drive
 * it): with status st, [pin] idle_timeout_s as limit_ms (0: never) and
 * idle_ms since the last login or signature, SIGNER_IDLE_NONE when no
 * logout is due ever (logged out, a key without PIN, no limit), 0 when it
 * is due now, else the milliseconds until it is. Any thread. */
#define SIGNER_IDLE_NONE UINT64_MAX
uint64_t signer_idle_next(const struct signer_status *st, uint64_t limit_ms, uint64_t idle_ms);

/* The COSE signer callback: sign tbs on the worker and wait for it, or, for
 * a backend with sign_any_thread (the file key), on the calling thread
 * under the signer's read lock (no thread hop). Any
 * thread (the loop thread included: it then waits for the token, which is
 * quick for SoftHSM and a file, up to ~0.5 s for a card). ctx is the
 * struct signer. Returns 0 or SIGNER_E_* / errno; *siglen is the buffer
 * size on entry (>= 64 for ES256, the modulus size for PS256). */
int signer_sign(void *ctx, int cose_alg, const uint8_t *tbs, size_t len, uint8_t *sig,
                size_t *siglen);

/* The same without blocking: done runs on the loop thread. tbs is copied. */
typedef void (*signer_sign_fn)(int result, const uint8_t *sig, size_t siglen, void *arg);
int signer_sign_async(struct signer *s, int cose_alg, const uint8_t *tbs, size_t len,
                      signer_sign_fn done, void *arg);

/* A self-test: sign a fresh challenge ("vitaled signer self-test\0" + 32
 * random bytes: never a COSE Sig_structure, which starts with 0x84) rounds
 * times, verify the last signature with the public key, and time it. */
struct signer_selftest {
	int result;           /* 0, or SIGNER_E_* / errno */
	int cose_alg;
	bool verified;        /* the signature checked out with the public key */
	unsigned rounds;
	uint64_t elapsed_us;  /* for the rounds, on the worker */
	uint8_t tbs[64];
	size_t tbs_len;
	uint8_t sig[SIGNER_SIG_MAX];
	size_t sig_len;
	uint8_t *pub;         /* SPKI DER (owned by the struct; freed after the callback) */
	size_t pub_len;
};
typedef void (*signer_selftest_fn)(const struct signer_selftest *t, void *arg);
int signer_selftest(struct signer *s, unsigned rounds, signer_selftest_fn done, void *arg);

#endif
