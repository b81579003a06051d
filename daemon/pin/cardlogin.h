/* Card login: the PIN step of card profiles, run on the card in its reader
 * (the practitioner's CPS; any patient profile that declares a [pin]
 * step). This header is the state machine of one card's PIN (plain
 * structs, the time passed in, no JSON, no varlink, no thread); the
 * module that runs it (card sessions on a worker, UnblockPin, events,
 * GetStatus) is daemon/pin/api_cardlogin.c.
 *
 * When the readers module has read a card whose profile has a PIN step
 * (readers_set_card_hook), the module:
 *   - registers the PIN target "card:<reader name>" with pinflow;
 *   - in a short card session of its own asks the reader for its PC/SC
 *     part 10 features (a keypad: FEATURE_VERIFY_PIN_DIRECT) and the card
 *     for its tries left (VERIFY without data: no try is spent);
 *   - publishes PinRequested {target, reader, profile, tries_left, pinpad}
 *     (or PinBlocked when the card says so).
 * SubmitPin(target, pin) then runs VERIFY in another short session
 * (daemon/pin/cardpin.c: query first, a blocked card never gets the PIN; the
 * keypad path when the reader has one) and answers logged_in /
 * PinIncorrect {tries_left} / PinBlocked / NoCard. Events: PinVerified,
 * PinRequested (again, with the new count, after a wrong PIN), PinBlocked,
 * PinCleared (the card left: the target and its verified state end).
 * UnblockPin(target, puk, new_pin?) (control access) sends RESET RETRY
 * COUNTER with the unblock code when the profile gives its length.
 * GetStatus shows "card_pins": each target, its reader, profile and state
 * (probing, required, checking, verified, blocked, not_required, unusable).
 *
 * "verified" is vitaled's record that the holder proved the PIN on this
 * card since it went into the reader. The card's own security state does
 * not outlive a session: the PC/SC driver resets the card when a session
 * ends, so no other application can use a PIN verified here.
 *
 * After "signer" (pinflow) and "readers" in the module list. Loop thread
 * only.
 */
#ifndef VITALED_CARDLOGIN_H
#define VITALED_CARDLOGIN_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/core/daemon.h"
#include "daemon/pin/pinflow.h"
#include "drivers/reader.h"
#include "protocol/pin.h"
#include "protocol/profile.h"

/* Card targets at most (one per reader with a PIN card in it). */
#define CARDLOGIN_MAX 8
/* UnblockPin attempts per target (reader) per window. */
#define CARDLOGIN_UNBLOCK_MAX 3
#define CARDLOGIN_UNBLOCK_WINDOW_MS 600000

enum cardlogin_state {
	CARDLOGIN_PROBING,      /* the first session (features, tries left) runs */
	CARDLOGIN_REQUIRED,     /* a PIN is wanted */
	CARDLOGIN_CHECKING,     /* a VERIFY (or an unblock) runs */
	CARDLOGIN_VERIFIED,     /* the holder proved the PIN since the card went in */
	CARDLOGIN_BLOCKED,      /* the card says blocked: nothing is ever sent again */
	CARDLOGIN_NOT_NEEDED,   /* the card answered 9000 to the query: no PIN wanted now */
	CARDLOGIN_UNUSABLE,     /* the card has no such PIN (6A88, 6D00 ...) */
};
/* "probing", "required", ... as GetStatus shows them. */
const char *cardlogin_state_name(enum cardlogin_state st);

/* What a transition asks the module to publish. */
enum cardlogin_event {
	CARDLOGIN_EV_NONE,
	CARDLOGIN_EV_REQUIRED,  /* PinRequested (with tries_left, pinpad) */
	CARDLOGIN_EV_BLOCKED,   /* PinBlocked */
	CARDLOGIN_EV_VERIFIED,  /* PinVerified (verified_at is set by the module) */
	CARDLOGIN_EV_LATER,     /* the probe failed in transport: PinRequested after a delay */
};

/* One reader's card with a PIN step. The slot stays with its reader (so
 * the unblock rate limit survives the card being pulled and put back, as
 * pinflow's does for SubmitPin); gen is bumped whenever the card it stands
 * for goes, so a session that ends after that finds another generation. */
struct cardlogin_entry {
	bool used;
	char reader[READER_NAME_MAX];
	char target[PINFLOW_TARGET_NAME_MAX];
	char profile[PROFILE_NAME_MAX];
	char atr_hex[READER_ATR_MAX * 2 + 1];
	uint64_t card_seq;
	unsigned gen;
	const struct reader_ops *ops;
	struct reader_driver *drv;
	struct pin_params params;
	enum cardlogin_state state;
	int tries_left;
	bool pinpad;
	uint32_t verify_direct;
	char reason[96];
	char verified_at[40];
	bool session;                 /* a card session runs for this card */
	void *unblock_waiter;         /* the UnblockPin waiting (the module's) */
	uint64_t unblock_at[CARDLOGIN_UNBLOCK_MAX]; /* ring of monotonic ms */
	unsigned unblock_next;
};

struct cardlogin {
	struct cardlogin_entry entries[CARDLOGIN_MAX];
};

/* The entry of reader (used), or NULL; the one whose target is name. */
struct cardlogin_entry *cardlogin_find(struct cardlogin *cl, const char *reader);
struct cardlogin_entry *cardlogin_find_target(struct cardlogin *cl, const char *name);
/* A card with a PIN step was read in reader: its entry, reset to PROBING
 * with a new generation (the unblock attempts kept for the same reader),
 * not yet used (the module sets used once the pinflow target exists).
 * NULL when every slot is taken. */
struct cardlogin_entry *cardlogin_card_in(struct cardlogin *cl, const char *reader,
                                          const char *profile, const char *atr_hex,
                                          const struct pin_params *params);
/* The card left: the entry ends (gen bumped; reader and unblock attempts
 * stay with the slot). Returns whether it was verified. */
bool cardlogin_card_out(struct cardlogin_entry *e);

/* The probe session's answer: rc (0 or a reader error), the query's
 * result, the keypad's control code (0: none). */
enum cardlogin_event cardlogin_probe_done(struct cardlogin_entry *e, int rc,
                                          const struct pin_result *res, uint32_t found_direct);
/* A VERIFY's answer, applied to e (NULL: the card went meanwhile, only the
 * result code is wanted): pinflow's result (0, SIGNER_E_*, -EPROTO, a
 * reader error), *tries the tries left (-1 unknown), *ev what to publish. */
int cardlogin_verify_done(struct cardlogin_entry *e, int rc, const struct pin_result *res,
                          int *tries, enum cardlogin_event *ev);

/* The pinflow target's rules: whether a PIN is wanted (see
 * pinflow_target_ops.expecting), and whether a submission may start a
 * VERIFY (0; SIGNER_E_PIN_BLOCKED, SIGNER_E_NOT_EXPECTED, SIGNER_E_BUSY,
 * SIGNER_E_PIN_MALFORMED for no PIN without a keypad). */
bool cardlogin_expecting(const struct cardlogin_entry *e, bool *pinpad, unsigned *min_len,
                         unsigned *max_len, const char **reason);
int cardlogin_submit_check(const struct cardlogin_entry *e, bool has_pin);

/* UnblockPin's checks before anything is sent, at now_ms. */
enum cardlogin_unblock_check {
	CARDLOGIN_UNBLOCK_GO,           /* recorded as an attempt */
	CARDLOGIN_UNBLOCK_NO_PUK,       /* the profile has no unblock code */
	CARDLOGIN_UNBLOCK_RATE_LIMITED, /* *wait_s */
	CARDLOGIN_UNBLOCK_BUSY,         /* a session runs */
	CARDLOGIN_UNBLOCK_NOT_NOW,      /* not REQUIRED nor BLOCKED */
};
enum cardlogin_unblock_check cardlogin_unblock_begin(struct cardlogin_entry *e, uint64_t now_ms,
                                                     unsigned *wait_s);
/* How an unblock ended. */
enum cardlogin_unblock_result {
	CARDLOGIN_UNBLOCKED,            /* e->tries_left: the counter after it */
	CARDLOGIN_UNBLOCK_NO_CARD,
	CARDLOGIN_UNBLOCK_BAD_CODE_SHAPE, /* the unblock code's length (puk_len) */
	CARDLOGIN_UNBLOCK_FAILED,       /* transport or card error: see rc */
	CARDLOGIN_UNBLOCK_INCORRECT,    /* res->tries_left */
	CARDLOGIN_UNBLOCK_CODE_BLOCKED,
	CARDLOGIN_UNBLOCK_BAD_PIN_SHAPE, /* the new PIN's bounds */
	CARDLOGIN_UNBLOCK_REFUSED,      /* the card refused RESET RETRY COUNTER */
};
/* Apply an unblock session's answer (rc, the command's result, the query
 * after it). *ev: PinRequested after a success. */
enum cardlogin_unblock_result cardlogin_unblock_done(struct cardlogin_entry *e, int rc,
                                                     const struct pin_result *res,
                                                     const struct pin_result *query,
                                                     enum cardlogin_event *ev);

/* The module (daemon/pin/api_cardlogin.c). */
int cardlogin_init(struct daemon *d);
/* Aborts the running card sessions and waits for them to end. */
void cardlogin_fini(struct daemon *d);

#endif
