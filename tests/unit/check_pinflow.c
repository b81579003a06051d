/* Unit tests for daemon/pin/pinflow (the PIN flow's state machine) and the
 * signer's idle-logout rule (signer_idle_next): the rate limit (count and
 * window, and its memory across a target's removal), tries left, the
 * keypad path, a busy target and a duplicate login, shape checks, a target
 * that goes away while a caller waits, the practitioner target's rule.
 * Time is passed in; no loop, no thread, no varlink. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "daemon/pin/pinflow.h"
#include "daemon/pin/signer.h"
#include "lib/secmem.h"

/* a scripted target */
struct fake {
	bool expecting;
	bool pinpad;
	unsigned min_len, max_len;
	const char *reason;
	int submit_rc;        /* returned by submit (0: started) */
	int submits;
	bool got_pin;         /* the last submit had a PIN (else keypad) */
	char pin[SECMEM_PIN_MAX + 1];
	pinflow_done_fn done;
	void *done_arg;
};

static bool
f_expecting(void *arg, bool *pinpad, unsigned *min_len, unsigned *max_len, const char **reason)
{
	struct fake *f = arg;
	*pinpad = f->pinpad;
	*min_len = f->min_len;
	*max_len = f->max_len;
	if (!f->expecting)
		*reason = f->reason;
	return f->expecting;
}

static int
f_submit(void *arg, struct secmem_pin *pin, pinflow_done_fn done, void *done_arg)
{
	struct fake *f = arg;
	f->submits++;
	f->got_pin = pin != NULL;
	f->pin[0] = '\0';
	if (pin)
		snprintf(f->pin, sizeof(f->pin), "%s", secmem_pin_digits(pin));
	secmem_pin_free(pin);
	if (f->submit_rc < 0)
		return f->submit_rc;
	f->done = done;
	f->done_arg = done_arg;
	return 0;
}

static const struct pinflow_target_ops fake_ops = { f_expecting, f_submit };

/* answers */
static int nanswers;
static struct pinflow_answer last;
static char last_target[PINFLOW_TARGET_NAME_MAX];
static void *last_waiter;

static void
on_answer(void *waiter, const struct pinflow_answer *a, void *arg)
{
	nanswers++;
	last = *a;
	snprintf(last_target, sizeof(last_target), "%s", a->target);
	last.target = last_target;
	last_waiter = waiter;
}

static struct pinflow PF;
static struct fake F;
static int W1, W2; /* two waiters' addresses */

static void
setup(void)
{
	pinflow_setup(&PF, on_answer, NULL);
	memset(&F, 0, sizeof(F));
	F.expecting = true;
	F.min_len = 4;
	F.max_len = 8;
	F.reason = "not now";
	nanswers = 0;
	memset(&last, 0, sizeof(last));
	last_waiter = NULL;
	ck_assert_int_eq(pinflow_add(&PF, "card:R1", &fake_ops, &F), 0);
}

/* Submit "1234" at now; the outcome's status. */
static enum pinflow_status
submit_at(uint64_t now, void *waiter)
{
	struct pinflow_outcome o;
	ck_assert_int_eq(pinflow_submit(&PF, "card:R1", "1234", 4, now, waiter, &o), 0);
	return o.status;
}

/* One full attempt at now, answered "wrong PIN". */
static void
wrong_attempt_at(uint64_t now)
{
	ck_assert_int_eq(submit_at(now, &W1), PINFLOW_STARTED);
	F.done(F.done_arg, SIGNER_E_PIN_INCORRECT, 2);
}

START_TEST(rate_limit_count)
{
	uint64_t t0 = 1000000;
	for (int i = 0; i < PINFLOW_RATE_MAX; i++)
		wrong_attempt_at(t0 + (uint64_t)i * 1000);
	ck_assert_int_eq(F.submits, PINFLOW_RATE_MAX);
	struct pinflow_outcome o;
	pinflow_submit(&PF, "card:R1", "1234", 4, t0 + 10000, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_RATE_LIMITED);
	ck_assert_uint_eq(o.retry_after_s, (PINFLOW_RATE_WINDOW_MS - 10000) / 1000);
	ck_assert_int_eq(F.submits, PINFLOW_RATE_MAX); /* the target never saw it */
	/* a refused attempt is not recorded: the oldest still decides */
	pinflow_submit(&PF, "card:R1", "1234", 4, t0 + 20000, &W1, &o);
	ck_assert_uint_eq(o.retry_after_s, (PINFLOW_RATE_WINDOW_MS - 20000) / 1000);
}
END_TEST

START_TEST(rate_limit_window)
{
	uint64_t t0 = 500000;
	for (int i = 0; i < PINFLOW_RATE_MAX; i++)
		wrong_attempt_at(t0);
	/* one millisecond before the window ends: still refused, 1 s to wait */
	struct pinflow_outcome o;
	pinflow_submit(&PF, "card:R1", "1234", 4, t0 + PINFLOW_RATE_WINDOW_MS - 1, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_RATE_LIMITED);
	ck_assert_uint_eq(o.retry_after_s, 1);
	ck_assert_uint_eq(pinflow_rate_wait_s(pinflow_find(&PF, "card:R1"),
	                                      t0 + PINFLOW_RATE_WINDOW_MS / 2),
	                  PINFLOW_RATE_WINDOW_MS / 2000);
	/* the window is over: as many attempts again, then refused again */
	for (int i = 0; i < PINFLOW_RATE_MAX; i++)
		wrong_attempt_at(t0 + PINFLOW_RATE_WINDOW_MS);
	ck_assert_int_eq(F.submits, 2 * PINFLOW_RATE_MAX);
	pinflow_submit(&PF, "card:R1", "1234", 4, t0 + PINFLOW_RATE_WINDOW_MS, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_RATE_LIMITED);
	ck_assert_uint_eq(o.retry_after_s, PINFLOW_RATE_WINDOW_MS / 1000);
}
END_TEST

START_TEST(rate_limit_outlives_removal)
{
	for (int i = 0; i < PINFLOW_RATE_MAX; i++)
		wrong_attempt_at(1000);
	pinflow_remove(&PF, "card:R1");
	ck_assert_int_eq(pinflow_add(&PF, "card:R1", &fake_ops, &F), 0);
	ck_assert_int_eq(submit_at(2000, &W1), PINFLOW_RATE_LIMITED);
	/* another name has its own attempts */
	struct fake g = F;
	ck_assert_int_eq(pinflow_add(&PF, "card:R2", &fake_ops, &g), 0);
	struct pinflow_outcome o;
	pinflow_submit(&PF, "card:R2", "1234", 4, 2000, &W2, &o);
	ck_assert_int_eq(o.status, PINFLOW_STARTED);
	ck_assert_int_eq(pinflow_add(&PF, "card:R2", &fake_ops, &g), -EEXIST);
}
END_TEST

START_TEST(tries_left_and_results)
{
	ck_assert_int_eq(submit_at(1, &W1), PINFLOW_STARTED);
	ck_assert(F.got_pin);
	ck_assert_str_eq(F.pin, "1234");
	F.done(F.done_arg, SIGNER_E_PIN_INCORRECT, 2);
	ck_assert_int_eq(nanswers, 1);
	ck_assert_ptr_eq(last_waiter, &W1);
	ck_assert_int_eq(last.result, SIGNER_E_PIN_INCORRECT);
	ck_assert_int_eq(last.tries_left, 2);
	ck_assert_str_eq(last.target, "card:R1");
	ck_assert_uint_eq(last.min_len, 4); /* the target's bounds ride along */
	ck_assert_uint_eq(last.max_len, 8);
	ck_assert_int_eq(submit_at(2, &W2), PINFLOW_STARTED);
	F.done(F.done_arg, 0, -1);
	ck_assert_int_eq(nanswers, 2);
	ck_assert_ptr_eq(last_waiter, &W2);
	ck_assert_int_eq(last.result, 0);
}
END_TEST

START_TEST(pinpad_path)
{
	F.pinpad = true;
	/* a PIN typed on the till while the reader has a keypad: refused */
	ck_assert_int_eq(submit_at(1, &W1), PINFLOW_KEYPAD_ONLY);
	ck_assert_int_eq(F.submits, 0);
	/* no PIN: the keypad */
	struct pinflow_outcome o;
	pinflow_submit(&PF, "card:R1", NULL, 0, 2, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_STARTED);
	ck_assert_int_eq(F.submits, 1);
	ck_assert(!F.got_pin);
	F.done(F.done_arg, SIGNER_E_CANCELLED, -1);
	ck_assert_int_eq(last.result, SIGNER_E_CANCELLED);
	/* without a keypad, no PIN is malformed */
	F.pinpad = false;
	pinflow_submit(&PF, "card:R1", NULL, 0, 3, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_MALFORMED);
	ck_assert_uint_eq(o.min_len, 4);
	ck_assert_uint_eq(o.max_len, 8);
	ck_assert_int_eq(F.submits, 1);
}
END_TEST

START_TEST(busy_and_duplicate_login)
{
	ck_assert_int_eq(submit_at(1, &W1), PINFLOW_STARTED);
	struct pinflow_outcome o;
	pinflow_submit(&PF, "card:R1", "5678", 4, 2, &W2, &o);
	ck_assert_int_eq(o.status, PINFLOW_BUSY);
	ck_assert_uint_eq(o.retry_after_s, 1);
	ck_assert_int_eq(F.submits, 1);
	F.done(F.done_arg, SIGNER_E_PIN_INCORRECT, 1);
	ck_assert_ptr_eq(last_waiter, &W1);
	ck_assert_int_eq(submit_at(3, &W2), PINFLOW_STARTED);
	F.done(F.done_arg, 0, -1);
	/* the target itself says a login runs (signer_login's SIGNER_E_BUSY):
	 * refused at once, not busy afterwards */
	F.submit_rc = SIGNER_E_BUSY;
	pinflow_submit(&PF, "card:R1", "1234", 4, 4, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_FAILED);
	ck_assert_int_eq(o.result, SIGNER_E_BUSY);
	F.submit_rc = 0;
	ck_assert_int_eq(submit_at(5, &W1), PINFLOW_STARTED);
}
END_TEST

START_TEST(shape_and_expecting)
{
	struct pinflow_outcome o;
	pinflow_submit(&PF, "card:R1", "12a4", 4, 1, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_MALFORMED);
	pinflow_submit(&PF, "card:R1", "123", 3, 2, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_MALFORMED);
	pinflow_submit(&PF, "card:R1", "123456789", 9, 3, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_MALFORMED);
	ck_assert_int_eq(F.submits, 0);
	F.expecting = false;
	pinflow_submit(&PF, "card:R1", "1234", 4, 4, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_NOT_EXPECTED);
	ck_assert_str_eq(o.reason, "not now");
	pinflow_submit(&PF, "nobody", "1234", 4, 5, &W1, &o);
	ck_assert_int_eq(o.status, PINFLOW_NO_TARGET);
	ck_assert_int_eq(nanswers, 0);
	/* every refusal after the target was found counts as an attempt */
	F.expecting = true;
	ck_assert_int_eq(submit_at(6, &W1), PINFLOW_STARTED); /* the fifth */
	F.done(F.done_arg, SIGNER_E_PIN_INCORRECT, 1);
	ck_assert_int_eq(submit_at(7, &W1), PINFLOW_RATE_LIMITED);
}
END_TEST

START_TEST(target_gone_while_waiting)
{
	ck_assert_int_eq(submit_at(1, &W1), PINFLOW_STARTED);
	pinflow_done_fn done = F.done;
	void *da = F.done_arg;
	pinflow_remove(&PF, "card:R1");
	ck_assert_int_eq(nanswers, 1);
	ck_assert_int_eq(last.result, PINFLOW_E_GONE);
	ck_assert_ptr_eq(last_waiter, &W1);
	done(da, 0, -1); /* the late result is dropped */
	ck_assert_int_eq(nanswers, 1);
	ck_assert_ptr_null(pinflow_find(&PF, "card:R1"));
}
END_TEST

START_TEST(waiter_left)
{
	ck_assert_int_eq(submit_at(1, &W1), PINFLOW_STARTED);
	pinflow_forget_waiter(&PF, &W1);
	F.done(F.done_arg, 0, -1);
	ck_assert_int_eq(nanswers, 0);
	ck_assert_int_eq(submit_at(2, &W2), PINFLOW_STARTED); /* not busy any more */
	pinflow_shutdown(&PF);
	ck_assert_int_eq(nanswers, 1);
	ck_assert_int_eq(last.result, -ESHUTDOWN);
	ck_assert_ptr_eq(last_waiter, &W2);
}
END_TEST

START_TEST(practitioner_rule)
{
	struct signer_status st;
	memset(&st, 0, sizeof(st));
	bool pp;
	unsigned lo, hi;
	const char *why = NULL;
	ck_assert(!pinflow_signer_expecting(NULL, &pp, &lo, &hi, &why));
	ck_assert_str_eq(why, "no signer is configured");
	st.state = SIGNER_LOCKED;
	st.pin_min = 6;
	st.pin_max = 12;
	st.pinpad = true;
	ck_assert(pinflow_signer_expecting(&st, &pp, &lo, &hi, &why));
	ck_assert(pp);
	ck_assert_uint_eq(lo, 6);
	ck_assert_uint_eq(hi, 12);
	st.state = SIGNER_BLOCKED; /* accepted, answered PinBlocked by the backend */
	ck_assert(pinflow_signer_expecting(&st, &pp, &lo, &hi, &why));
	st.state = SIGNER_READY;
	st.needs_pin = true;
	ck_assert(!pinflow_signer_expecting(&st, &pp, &lo, &hi, &why));
	ck_assert_str_eq(why, "already logged in");
	st.needs_pin = false;
	ck_assert(!pinflow_signer_expecting(&st, &pp, &lo, &hi, &why));
	ck_assert_str_eq(why, "this key needs no PIN");
	st.state = SIGNER_NO_TOKEN;
	ck_assert(!pinflow_signer_expecting(&st, &pp, &lo, &hi, &why));
}
END_TEST

START_TEST(idle_logout_rule)
{
	struct signer_status st;
	memset(&st, 0, sizeof(st));
	st.logged_in = true;
	st.needs_pin = true;
	/* 300 s limit: due after 300 s idle, not before */
	ck_assert_uint_eq(signer_idle_next(&st, 300000, 0), 300000);
	ck_assert_uint_eq(signer_idle_next(&st, 300000, 299999), 1);
	ck_assert_uint_eq(signer_idle_next(&st, 300000, 300000), 0);
	ck_assert_uint_eq(signer_idle_next(&st, 300000, 900000), 0);
	/* never: no limit, logged out, or a key without PIN */
	ck_assert_uint_eq(signer_idle_next(&st, 0, 900000), SIGNER_IDLE_NONE);
	st.needs_pin = false;
	ck_assert_uint_eq(signer_idle_next(&st, 300000, 900000), SIGNER_IDLE_NONE);
	st.needs_pin = true;
	st.logged_in = false;
	ck_assert_uint_eq(signer_idle_next(&st, 300000, 900000), SIGNER_IDLE_NONE);
}
END_TEST

static Suite *
pinflow_suite(void)
{
	Suite *s = suite_create("pinflow");
	TCase *tc = tcase_create("flow");
	tcase_add_checked_fixture(tc, setup, NULL);
	tcase_add_test(tc, rate_limit_count);
	tcase_add_test(tc, rate_limit_window);
	tcase_add_test(tc, rate_limit_outlives_removal);
	tcase_add_test(tc, tries_left_and_results);
	tcase_add_test(tc, pinpad_path);
	tcase_add_test(tc, busy_and_duplicate_login);
	tcase_add_test(tc, shape_and_expecting);
	tcase_add_test(tc, target_gone_while_waiting);
	tcase_add_test(tc, waiter_left);
	tcase_add_test(tc, practitioner_rule);
	tcase_add_test(tc, idle_logout_rule);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pinflow_suite());
	srunner_run_all(sr, CK_NORMAL);
	int nf = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nf ? 1 : 0;
}
