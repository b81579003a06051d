/* The PIN flow: PIN targets, per-target rate limiting, and the path of one
 * PIN from its submission to its target's answer, as a state machine of
 * plain structs with the time passed in (no JSON, no varlink, no loop);
 * daemon/pin/api_pin.c turns SubmitPin into pinflow_submit and its answers
 * into replies, and runs the daemon's one instance.
 *
 * A PIN is checked for shape (digits, the target's bounds) before anything
 * else sees it, moves at once into locked memory (lib/secmem.h) and is
 * wiped when the target is done with it, whatever the outcome. A blocked
 * PIN is reported and never submitted again by the daemon. Attempts per
 * target are limited to PINFLOW_RATE_MAX in PINFLOW_RATE_WINDOW_MS.
 *
 * Practitioner identity (for care sheets): [practitioner] id from the
 * configuration when set, else the serialNumber of the certificate that
 * goes with the key; [practitioner] structure from the configuration
 * only; "who" is the certificate's common name.
 *
 * Everything here runs on the loop thread.
 */
#ifndef VITALED_PINFLOW_H
#define VITALED_PINFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/daemon.h"
#include "daemon/pin/signer.h"
#include "lib/secmem.h"

#define PINFLOW_TARGET_PRACTITIONER "practitioner"
/* Card PIN targets are named "card:<reader name>" (daemon/pin/cardlogin.c);
 * for them "the card went away" is answered NoCard {reader}. */
#define PINFLOW_CARD_PREFIX "card:"
#define PINFLOW_TARGET_MAX 16
#define PINFLOW_TARGET_NAME_MAX 160 /* bytes with the NUL: "card:" + a reader name */
#define PINFLOW_RATE_MAX 5          /* attempts per target ... */
#define PINFLOW_RATE_WINDOW_MS 60000 /* ... per minute */
#define PINFLOW_SELFTEST_MAX 10000  /* rounds of SignerSelfTest */

/* The result given to a waiting caller whose target was removed. */
#define PINFLOW_E_GONE (-EIDRM)

/* A PIN target: the practitioner's signer, or a card session whose
 * profile has a VERIFY step ("card:<reader>"). */
typedef void (*pinflow_done_fn)(void *done_arg, int result, int tries_left);
struct pinflow_target_ops {
	/* Whether a PIN is wanted now; fills the keypad flag and the digit
	 * bounds. When false, *reason says why (static text). */
	bool (*expecting)(void *arg, bool *pinpad, unsigned *min_len, unsigned *max_len,
	                  const char **reason);
	/* Check the PIN (NULL: on the reader's keypad). pin is taken: the
	 * target wipes it (secmem_pin_free) on every path. Return 0 and call
	 * done(done_arg, result, tries_left) exactly once later on the loop
	 * thread (result 0 or SIGNER_E_*), or return a negative errno or
	 * SIGNER_E_* without calling done. */
	int (*submit)(void *arg, struct secmem_pin *pin, pinflow_done_fn done, void *done_arg);
};

/* ------------------------------------------------------------------ */
/* the state machine */

struct pinflow_target {
	bool used;
	char name[PINFLOW_TARGET_NAME_MAX];
	const struct pinflow_target_ops *ops;
	void *arg;
	uint64_t attempts[PINFLOW_RATE_MAX]; /* monotonic ms, ring (0: none) */
	unsigned next;
	void *waiter;         /* the caller waiting for this target's check */
	bool busy;            /* a check is running (even if its caller left) */
	unsigned gen;         /* bumped on remove: late results are dropped */
};

/* How a check ended, for its waiting caller. */
struct pinflow_answer {
	const char *target;   /* the target's name */
	int result;           /* 0, SIGNER_E_*, PINFLOW_E_GONE, -ESHUTDOWN, an errno */
	int tries_left;       /* -1: unknown */
	unsigned min_len, max_len; /* the target's bounds (for SIGNER_E_PIN_MALFORMED) */
};
/* Called on the loop thread once per waiter: its check ended, its target
 * went away, or the flow stops. */
typedef void (*pinflow_answer_fn)(void *waiter, const struct pinflow_answer *a, void *arg);

struct pinflow {
	struct pinflow_target targets[PINFLOW_TARGET_MAX];
	pinflow_answer_fn answer;
	void *answer_arg;
};

/* An empty flow whose waiters are answered through fn. */
void pinflow_setup(struct pinflow *pf, pinflow_answer_fn fn, void *arg);
/* Answer every waiter -ESHUTDOWN and forget every target. */
void pinflow_shutdown(struct pinflow *pf);

/* Register name (copied; up to PINFLOW_TARGET_NAME_MAX - 1 bytes).
 * Returns 0, -EINVAL, -EEXIST, -ENOSPC. The rate limit's memory of a name
 * outlives its removal: pulling a card out and putting it back does not
 * give its target fresh attempts. */
int pinflow_add(struct pinflow *pf, const char *name, const struct pinflow_target_ops *ops,
                void *arg);
/* Forget name; its waiter is answered PINFLOW_E_GONE at once and the late
 * result of its check is dropped. */
void pinflow_remove(struct pinflow *pf, const char *name);
struct pinflow_target *pinflow_find(struct pinflow *pf, const char *name);
/* Whether name is a card target ("card:..."). */
bool pinflow_is_card(const char *name);

/* What pinflow_submit did. */
enum pinflow_status {
	PINFLOW_STARTED,       /* the target checks it: the answer comes later */
	PINFLOW_NO_TARGET,     /* no such target */
	PINFLOW_RATE_LIMITED,  /* retry_after_s; nothing recorded */
	PINFLOW_BUSY,          /* a check for this target runs */
	PINFLOW_NOT_EXPECTED,  /* reason */
	PINFLOW_KEYPAD_ONLY,   /* a PIN was given; the reader has a keypad */
	PINFLOW_MALFORMED,     /* min_len, max_len */
	PINFLOW_NO_MEMORY,     /* locked memory for the PIN was refused: result */
	PINFLOW_FAILED,        /* the target refused at once: result (SIGNER_E_* / errno) */
};
struct pinflow_outcome {
	enum pinflow_status status;
	int result;
	unsigned retry_after_s;
	const char *reason;    /* static text */
	unsigned min_len, max_len;
};

/* Submit pin (pin_len bytes; NULL: on the reader's keypad) for target
 * name at now_ms (monotonic). Order: target, rate limit, busy, (the
 * attempt is recorded), expecting, shape, locked memory, the target.
 * waiter (non-NULL) is answered later only when out->status is
 * PINFLOW_STARTED. pin stays the caller's. Returns 0, or -ENOMEM (nothing
 * started, nothing recorded past the attempt). */
int pinflow_submit(struct pinflow *pf, const char *name, const char *pin, size_t pin_len,
                   uint64_t now_ms, void *waiter, struct pinflow_outcome *out);
/* The caller waiting as waiter left: its check goes on and its result
 * updates the state only. */
void pinflow_forget_waiter(struct pinflow *pf, void *waiter);
/* 0, or the seconds to wait at now_ms before the next attempt on t. */
unsigned pinflow_rate_wait_s(const struct pinflow_target *t, uint64_t now_ms);

/* The practitioner target's rule: whether the signer in status st (NULL:
 * none configured) wants a PIN, with its keypad flag and bounds. */
bool pinflow_signer_expecting(const struct signer_status *st, bool *pinpad, unsigned *min_len,
                              unsigned *max_len, const char **reason);

/* ------------------------------------------------------------------ */
/* the daemon's instance (daemon/pin/api_pin.c) */

/* The module (daemon/modules.c): after "api". */
int pinflow_init(struct daemon *d);
void pinflow_fini(struct daemon *d);

/* pinflow_add / pinflow_remove on the daemon's flow (card sessions);
 * a SubmitPin still waiting for a removed target is answered at once
 * (NoCard for a card target, else PinNotExpected). */
int pinflow_target_add(const char *name, const struct pinflow_target_ops *ops, void *arg);
void pinflow_target_remove(const char *name);

/* Say that target wants a PIN now (tries_left -1 if unknown). By default
 * this publishes a "PinRequested" event {target, tries_left, pinpad} on
 * the event bus (WatchEvents) and logs it; a hook set with
 * pinflow_set_event_hook replaces both. */
typedef void (*pinflow_event_fn)(const char *target, int tries_left, bool pinpad, void *arg);
void pinflow_set_event_hook(pinflow_event_fn fn, void *arg);
void pinflow_request(const char *target, int tries_left, bool pinpad);

/* The practitioner's signer, or NULL before init / with backend none.
 * Sheets are signed with signer_sign(pinflow_signer(), alg, ...). */
struct signer *pinflow_signer(void);
/* Be told the practitioner's signing certificate chain (der[0] the
 * certificate of the key, then intermediates; n == 0: the signer has a key
 * but no certificate) whenever the signer reads a different one (after its
 * open, a login, a presence poll), and at once when one is known already.
 * For the layers above (the uploader records it with the sheets). Loop
 * thread. Returns 0, -ENOSPC (PINFLOW_CHAIN_WATCH_MAX watchers). */
typedef void (*pinflow_chain_fn)(const uint8_t *const *der, const size_t *len, size_t n,
                                 void *arg);
#define PINFLOW_CHAIN_WATCH_MAX 4
int pinflow_watch_chain(pinflow_chain_fn fn, void *arg);
void pinflow_unwatch_chain(pinflow_chain_fn fn, void *arg);

/* The practitioner's ids as described above; each may be NULL. */
void pinflow_practitioner(const char **id, const char **structure, const char **who);

#endif
