/* The PIN flows of the daemon: the practitioner's signer as a module, the
 * API methods SubmitPin / GetSigner / SignerSelfTest, the "signer" part
 * of GetStatus, per-target rate limiting, and the hooks through which card
 * sessions add their own PIN targets and publish "PIN required" events.
 *
 * A PIN arrives only through SubmitPin (control access), is checked for
 * shape (digits, the target's bounds) before anything else sees it, moves
 * at once into locked memory (lib/secmem.h) and is wiped when the
 * target is done with it, whatever the outcome. A blocked PIN is reported
 * and never submitted again by the daemon. Attempts per target are limited
 * to PINFLOW_RATE_MAX in PINFLOW_RATE_WINDOW_MS.
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

#include "daemon/core/daemon.h"
#include "lib/secmem.h"
#include "daemon/pin/signer.h"

#define PINFLOW_TARGET_PRACTITIONER "practitioner"
/* Card PIN targets are named "card:<reader name>" (daemon/pin/cardlogin.c);
 * for them "the card went away" is answered NoCard {reader}. */
#define PINFLOW_CARD_PREFIX "card:"
#define PINFLOW_TARGET_MAX 16
#define PINFLOW_TARGET_NAME_MAX 160 /* bytes with the NUL: "card:" + a reader name */
#define PINFLOW_RATE_MAX 5          /* attempts per target ... */
#define PINFLOW_RATE_WINDOW_MS 60000 /* ... per minute */
#define PINFLOW_SELFTEST_MAX 10000  /* rounds of SignerSelfTest */

/* The module (daemon/modules.c): after "api". */
int pinflow_init(struct daemon *d);
void pinflow_fini(struct daemon *d);

/* A PIN target besides the practitioner's signer, e.g. a card session
 * whose profile has a VERIFY step ("card:<reader>"). */
typedef void (*pinflow_done_fn)(void *done_arg, int result, int tries_left);
struct pinflow_target_ops {
	/* Whether a PIN is wanted now; fills the keypad flag and the digit
	 * bounds. When false, *reason says why (static text). */
	bool (*expecting)(void *arg, bool *pinpad, unsigned *min_len, unsigned *max_len,
	                  const char **reason);
	/* Check the PIN (NULL: on the reader's keypad). pin is taken: the
	 * target wipes it (secmem_pin_free) on every path. Return 0 and call
	 * done(done_arg, result, tries_left) exactly once later on the loop
	 * thread (result 0 or SIGNER_E_*), or return a negative errno without
	 * calling done. */
	int (*submit)(void *arg, struct secmem_pin *pin, pinflow_done_fn done, void *done_arg);
};
/* Register name (copied; up to PINFLOW_TARGET_NAME_MAX - 1 bytes).
 * Returns 0, -EINVAL, -EEXIST, -ENOSPC. The rate limit's memory of a name
 * outlives its removal: pulling a card out and putting it back does not
 * give its target fresh attempts. */
int pinflow_target_add(const char *name, const struct pinflow_target_ops *ops, void *arg);
/* Forget name; a SubmitPin still waiting for it is answered at once
 * (NoCard for a card target, else PinNotExpected) and the late result of
 * its check is dropped. */
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
/* The practitioner's ids as described above; each may be NULL. */
void pinflow_practitioner(const char **id, const char **structure, const char **who);

#endif
