/* Unit tests for daemon/pin/cardlogin (the card PIN step's state machine):
 * the probe's answers (tries left, blocked, not needed, unusable, a
 * transport failure), VERIFY's answers (verified, wrong PIN with tries
 * left, blocked, keypad cancelled, transport), the submission rules (a
 * blocked card gets nothing, a busy card, the keypad path), the unblock
 * rate limit (count and window, kept when the card is pulled and put back)
 * and an unblock's end. Time is passed in; no card, no thread. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "daemon/pin/cardlogin.h"
#include "daemon/pin/signer.h"

static struct cardlogin CL;
static struct cardlogin_entry *E;

static void
setup(void)
{
	memset(&CL, 0, sizeof(CL));
	struct pin_params p;
	memset(&p, 0, sizeof(p));
	p.min_len = 4;
	p.max_len = 8;
	p.puk_len = 8;
	p.ref = 0x01;
	E = cardlogin_card_in(&CL, "Reader 1", "cps3", "3B00", &p);
	ck_assert_ptr_nonnull(E);
	E->used = true;
	ck_assert_int_eq(E->state, CARDLOGIN_PROBING);
	ck_assert_str_eq(E->target, "card:Reader 1");
}

static struct pin_result
res(enum pin_status st, int tries)
{
	struct pin_result r;
	memset(&r, 0, sizeof(r));
	r.status = st;
	r.tries_left = tries;
	return r;
}

START_TEST(probe_states)
{
	struct pin_result r = res(PIN_ST_NEEDED, 3);
	ck_assert_int_eq(cardlogin_probe_done(E, 0, &r, 0), CARDLOGIN_EV_REQUIRED);
	ck_assert_int_eq(E->state, CARDLOGIN_REQUIRED);
	ck_assert_int_eq(E->tries_left, 3);
	ck_assert(!E->pinpad);

	r = res(PIN_ST_BLOCKED, 0);
	ck_assert_int_eq(cardlogin_probe_done(E, 0, &r, 0x42330006), CARDLOGIN_EV_BLOCKED);
	ck_assert_int_eq(E->state, CARDLOGIN_BLOCKED);
	ck_assert_int_eq(E->tries_left, 0);
	ck_assert(E->pinpad); /* a keypad was found */

	r = res(PIN_ST_OK, -1);
	ck_assert_int_eq(cardlogin_probe_done(E, 0, &r, 0), CARDLOGIN_EV_NONE);
	ck_assert_int_eq(E->state, CARDLOGIN_NOT_NEEDED);

	r = res(PIN_ST_REF_NOT_FOUND, -1);
	ck_assert_int_eq(cardlogin_probe_done(E, 0, &r, 0), CARDLOGIN_EV_NONE);
	ck_assert_int_eq(E->state, CARDLOGIN_UNUSABLE);
	ck_assert_str_eq(cardlogin_state_name(E->state), "unusable");

	/* the card left during the probe: nothing, its removal ends it */
	E->state = CARDLOGIN_PROBING;
	ck_assert_int_eq(cardlogin_probe_done(E, -ENODEV, &r, 0), CARDLOGIN_EV_NONE);
	ck_assert_int_eq(E->state, CARDLOGIN_PROBING);
	/* a transport failure: PinRequested a little later */
	ck_assert_int_eq(cardlogin_probe_done(E, -EIO, &r, 0), CARDLOGIN_EV_LATER);
}
END_TEST

START_TEST(verify_states)
{
	E->state = CARDLOGIN_CHECKING;
	struct pin_result r = res(PIN_ST_INCORRECT, 2);
	int tries;
	enum cardlogin_event ev;
	ck_assert_int_eq(cardlogin_verify_done(E, 0, &r, &tries, &ev), SIGNER_E_PIN_INCORRECT);
	ck_assert_int_eq(tries, 2);
	ck_assert_int_eq(E->tries_left, 2);
	ck_assert_int_eq(E->state, CARDLOGIN_REQUIRED);
	ck_assert_int_eq(ev, CARDLOGIN_EV_REQUIRED); /* again, with the new count */

	r = res(PIN_ST_OK, -1);
	ck_assert_int_eq(cardlogin_verify_done(E, 0, &r, &tries, &ev), 0);
	ck_assert_int_eq(E->state, CARDLOGIN_VERIFIED);
	ck_assert_int_eq(ev, CARDLOGIN_EV_VERIFIED);
	ck_assert_int_eq(E->tries_left, -1);

	r = res(PIN_ST_BLOCKED, 0);
	ck_assert_int_eq(cardlogin_verify_done(E, 0, &r, &tries, &ev), SIGNER_E_PIN_BLOCKED);
	ck_assert_int_eq(E->state, CARDLOGIN_BLOCKED);
	ck_assert_int_eq(tries, 0);
	ck_assert_int_eq(ev, CARDLOGIN_EV_BLOCKED);

	r = res(PIN_ST_PINPAD_CANCELLED, -1);
	ck_assert_int_eq(cardlogin_verify_done(E, 0, &r, &tries, &ev), SIGNER_E_CANCELLED);
	ck_assert_int_eq(E->state, CARDLOGIN_REQUIRED);
	ck_assert_int_eq(ev, CARDLOGIN_EV_REQUIRED);

	E->state = CARDLOGIN_CHECKING;
	ck_assert_int_eq(cardlogin_verify_done(E, -ENODEV, &r, &tries, &ev), SIGNER_E_NO_TOKEN);
	ck_assert_int_eq(E->state, CARDLOGIN_REQUIRED);
	ck_assert_int_eq(ev, CARDLOGIN_EV_NONE);
	ck_assert_int_eq(cardlogin_verify_done(E, -EIO, &r, &tries, &ev), -EIO);
	/* the card went meanwhile: only the result */
	r = res(PIN_ST_OK, -1);
	ck_assert_int_eq(cardlogin_verify_done(NULL, 0, &r, &tries, &ev), 0);
	ck_assert_int_eq(ev, CARDLOGIN_EV_NONE);
}
END_TEST

START_TEST(submit_rules)
{
	bool pp;
	unsigned lo, hi;
	const char *why = NULL;
	/* probing: not yet */
	ck_assert(!cardlogin_expecting(E, &pp, &lo, &hi, &why));
	ck_assert_ptr_nonnull(strstr(why, "PinRequested"));
	ck_assert_int_eq(cardlogin_submit_check(E, true), SIGNER_E_NOT_EXPECTED);
	E->state = CARDLOGIN_REQUIRED;
	ck_assert(cardlogin_expecting(E, &pp, &lo, &hi, &why));
	ck_assert_uint_eq(lo, 4);
	ck_assert_uint_eq(hi, 8);
	ck_assert_int_eq(cardlogin_submit_check(E, true), 0);
	/* no keypad: a PIN is needed */
	ck_assert_int_eq(cardlogin_submit_check(E, false), SIGNER_E_PIN_MALFORMED);
	E->pinpad = true;
	ck_assert_int_eq(cardlogin_submit_check(E, false), 0);
	/* a session runs: busy */
	E->session = true;
	ck_assert_int_eq(cardlogin_submit_check(E, true), SIGNER_E_BUSY);
	E->session = false;
	/* blocked: expected (so that the caller hears PinBlocked), never sent */
	E->state = CARDLOGIN_BLOCKED;
	ck_assert(cardlogin_expecting(E, &pp, &lo, &hi, &why));
	ck_assert_int_eq(cardlogin_submit_check(E, true), SIGNER_E_PIN_BLOCKED);
	E->state = CARDLOGIN_VERIFIED;
	ck_assert(!cardlogin_expecting(E, &pp, &lo, &hi, &why));
	ck_assert_int_eq(cardlogin_submit_check(E, true), SIGNER_E_NOT_EXPECTED);
}
END_TEST

START_TEST(unblock_rate_limit)
{
	unsigned wait;
	uint64_t t0 = 1000000;
	E->state = CARDLOGIN_BLOCKED;
	for (int i = 0; i < CARDLOGIN_UNBLOCK_MAX; i++)
		ck_assert_int_eq(cardlogin_unblock_begin(E, t0 + (uint64_t)i, &wait), CARDLOGIN_UNBLOCK_GO);
	ck_assert_int_eq(cardlogin_unblock_begin(E, t0 + 60000, &wait),
	                 CARDLOGIN_UNBLOCK_RATE_LIMITED);
	ck_assert_uint_eq(wait, (CARDLOGIN_UNBLOCK_WINDOW_MS - 60000) / 1000);
	ck_assert_int_eq(cardlogin_unblock_begin(E, t0 + CARDLOGIN_UNBLOCK_WINDOW_MS - 1, &wait),
	                 CARDLOGIN_UNBLOCK_RATE_LIMITED);
	ck_assert_uint_eq(wait, 1);
	/* pulled and put back: the attempts stay with the reader */
	struct pin_params p = E->params;
	cardlogin_card_out(E);
	ck_assert_ptr_null(cardlogin_find(&CL, "Reader 1"));
	struct cardlogin_entry *e2 = cardlogin_card_in(&CL, "Reader 1", "cps3", "3B00", &p);
	ck_assert_ptr_eq(e2, E);
	e2->used = true;
	e2->state = CARDLOGIN_BLOCKED;
	ck_assert_int_eq(cardlogin_unblock_begin(e2, t0 + 60000, &wait),
	                 CARDLOGIN_UNBLOCK_RATE_LIMITED);
	/* the window is over */
	ck_assert_int_eq(cardlogin_unblock_begin(e2, t0 + CARDLOGIN_UNBLOCK_WINDOW_MS, &wait),
	                 CARDLOGIN_UNBLOCK_GO);
}
END_TEST

START_TEST(unblock_checks_and_end)
{
	unsigned wait;
	E->state = CARDLOGIN_PROBING;
	ck_assert_int_eq(cardlogin_unblock_begin(E, 1, &wait), CARDLOGIN_UNBLOCK_BUSY);
	E->state = CARDLOGIN_VERIFIED;
	ck_assert_int_eq(cardlogin_unblock_begin(E, 2, &wait), CARDLOGIN_UNBLOCK_NOT_NOW);
	E->state = CARDLOGIN_REQUIRED;
	E->session = true;
	ck_assert_int_eq(cardlogin_unblock_begin(E, 3, &wait), CARDLOGIN_UNBLOCK_BUSY);
	E->session = false;
	E->params.puk_len = 0;
	ck_assert_int_eq(cardlogin_unblock_begin(E, 4, &wait), CARDLOGIN_UNBLOCK_NO_PUK);
	E->params.puk_len = 8;
	/* none of the refusals was an attempt */
	for (int i = 0; i < CARDLOGIN_UNBLOCK_MAX; i++)
		ck_assert_int_eq(cardlogin_unblock_begin(E, 5, &wait), CARDLOGIN_UNBLOCK_GO);

	/* the end: unblocked, the counter read after it */
	E->state = CARDLOGIN_CHECKING;
	E->tries_left = 0;
	struct pin_result r = res(PIN_ST_OK, -1), q = res(PIN_ST_NEEDED, 3);
	enum cardlogin_event ev;
	ck_assert_int_eq(cardlogin_unblock_done(E, 0, &r, &q, &ev), CARDLOGIN_UNBLOCKED);
	ck_assert_int_eq(E->state, CARDLOGIN_REQUIRED);
	ck_assert_int_eq(E->tries_left, 3);
	ck_assert_int_eq(ev, CARDLOGIN_EV_REQUIRED);
	/* a wrong code on a blocked card: still blocked */
	E->tries_left = 0;
	r = res(PIN_ST_INCORRECT, 4);
	ck_assert_int_eq(cardlogin_unblock_done(E, 0, &r, &q, &ev), CARDLOGIN_UNBLOCK_INCORRECT);
	ck_assert_int_eq(E->state, CARDLOGIN_BLOCKED);
	ck_assert_int_eq(ev, CARDLOGIN_EV_NONE);
	ck_assert_int_eq(cardlogin_unblock_done(E, -ENODEV, &r, &q, &ev), CARDLOGIN_UNBLOCK_NO_CARD);
	ck_assert_int_eq(cardlogin_unblock_done(E, -ERANGE, &r, &q, &ev),
	                 CARDLOGIN_UNBLOCK_BAD_CODE_SHAPE);
	r = res(PIN_ST_BLOCKED, 0);
	ck_assert_int_eq(cardlogin_unblock_done(E, 0, &r, &q, &ev), CARDLOGIN_UNBLOCK_CODE_BLOCKED);
}
END_TEST

START_TEST(card_out_and_slots)
{
	E->state = CARDLOGIN_VERIFIED;
	unsigned gen = E->gen;
	ck_assert(cardlogin_card_out(E));
	ck_assert_uint_eq(E->gen, gen + 1); /* a late session finds another generation */
	ck_assert(!E->used);
	ck_assert_int_eq(E->state, CARDLOGIN_PROBING);
	/* every slot taken: refused */
	struct pin_params p = E->params;
	char name[32];
	for (int i = 0; i < CARDLOGIN_MAX; i++) {
		snprintf(name, sizeof(name), "R%d", i);
		struct cardlogin_entry *e = cardlogin_card_in(&CL, name, "cps3", "3B00", &p);
		ck_assert_ptr_nonnull(e);
		e->used = true;
	}
	ck_assert_ptr_null(cardlogin_card_in(&CL, "one too many", "cps3", "3B00", &p));
	ck_assert_ptr_nonnull(cardlogin_find_target(&CL, "card:R3"));
}
END_TEST

static Suite *
cardlogin_suite(void)
{
	Suite *s = suite_create("cardlogin");
	TCase *tc = tcase_create("states");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, probe_states);
	tcase_add_test(tc, verify_states);
	tcase_add_test(tc, submit_rules);
	tcase_add_test(tc, unblock_rate_limit);
	tcase_add_test(tc, unblock_checks_and_end);
	tcase_add_test(tc, card_out_and_slots);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cardlogin_suite());
	srunner_run_all(sr, CK_NORMAL);
	int nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
