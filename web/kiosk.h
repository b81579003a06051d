/* The kiosk screen's state, made from the daemon's events (pure; unit-tested
 * in tests/unit/check_webkiosk.c).
 *
 * The screen never receives an event: the bridge feeds each one here and
 * sends the page only what this makes: {"state", "first_name"?, "reason"?,
 * "reset_s"}. So no NIR, birth date, surname or right can reach the
 * patient's screen, whatever the daemon's events carry.
 *
 *   idle      "insérez votre carte Vitale ou approchez votre téléphone"
 *   reading   a card or a phone is being read
 *   code      the phone asks its holder for the personal code
 *   welcome   the check-in is recorded (DraftCreated): first_name only
 *   refused   the card or phone was refused (reason: unreadable,
 *             not_patient, code_refused, code_blocked, code_timeout,
 *             untrusted, other)
 *   expired   the card or credential is out of date
 *   opposed   the card is on the insurer's opposition list (CardRead's
 *             opposed, a CardOpposed event or an "opposed" CardError)
 *   error     the check-in could not be recorded (reason: lost, other)
 */
#ifndef VITALED_WEB_KIOSK_H
#define VITALED_WEB_KIOSK_H

#include <jansson.h>
#include <stdbool.h>

struct kiosk {
	char state[16];
	char reason[24];
	char first_name[48];  /* the holder's first given name, once read */
	char pending_name[48];
};

void kiosk_init(struct kiosk *k);
/* Feed one daemon event; true when the screen's state changed (then
 * kiosk_message gives what to send). */
bool kiosk_feed(struct kiosk *k, const json_t *event);
/* The message for the page (a new object). */
json_t *kiosk_message(const struct kiosk *k, long reset_s);
/* The first given name of given_name ("MARIE CLAIRE" -> "Marie"), at most
 * outlen-1 bytes; letters kept, the rest of the word's case lowered. */
void kiosk_first_name(const char *given_name, char *out, size_t outlen);

#endif
