/* Module "cardlogin": the PIN step of card profiles, run on the card in its
 * reader (the practitioner's CPS; any patient profile that declares a
 * [pin] step).
 *
 * When the readers module has read a card whose profile has a PIN step
 * (readers_set_card_hook), this module:
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
 * Sessions run on threads of their own (the card blocks), bounded by
 * [pcsc] session_timeout_ms (plus the keypad's time-out for a keypad
 * VERIFY); their results come back to the loop with loop_post. The PIN
 * lives in locked memory (secmem) and is wiped by the session thread
 * right after the exchange, on every path.
 *
 * After "signer" (pinflow) and "readers" in the module list. Loop thread
 * only.
 */
#ifndef VITALED_CARDLOGIN_H
#define VITALED_CARDLOGIN_H

#include "daemon/core/daemon.h"

/* Card targets at most (one per reader with a PIN card in it). */
#define CARDLOGIN_MAX 8
/* UnblockPin attempts per target (reader) per window. */
#define CARDLOGIN_UNBLOCK_MAX 3
#define CARDLOGIN_UNBLOCK_WINDOW_MS 600000

int cardlogin_init(struct daemon *d);
/* Aborts and joins the running card sessions (bounded, about 1 s). */
void cardlogin_fini(struct daemon *d);

#endif
