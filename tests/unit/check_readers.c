/* Unit tests of daemon/cards/readers.c, the reader-session state machine,
 * driven directly with a fake driver (its abort() counted), a recording
 * report sink and sessions this suite ends itself: what state a reader is
 * in and what is reported, and when, for a good read, a deadline that
 * passes (and the longer one once a phone asks for its code), a card
 * pulled mid-read (plain, or with a named failure), a reader unplugged
 * mid-session, a session that fails, a new card while the old session
 * ends, a mute card, a session that cannot start, and shutdown. The
 * session body (readers_session_run) runs against a fake driver and the
 * placeholder card reader of tests/unit/support.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cards/opposition.h"
#include "daemon/cards/readers.h"
#include "tests/unit/support/placeholder_card.h"

#define TIMEOUT_MS 3000u
#define CODE_S 30u

/* ------------------------------------------------------------------ */
/* fakes */

struct rec {
	enum readers_report_type type;
	char reader[64], reason[128], detail[128], profile[32];
	bool has_profile, has_detail;
	unsigned timeout_s;
	bool readable;
	bool opposed;
};

static struct {
	struct rec reps[64];
	size_t nreps;
	struct readers_session *sess[8];
	size_t nsess;
	int start_rc;
	unsigned aborts;
	char aborted[64];
	unsigned hooks, hook_nulls, read_hooks;
	/* the fake driver's card, for readers_session_run */
	int connect_rc[4];
	size_t nconnect;
	int read_rc[4];       /* transmit result per connect */
	unsigned disconnects;
	uint8_t sw[2];
} F;

static bool
fake_abort(struct reader_driver *d, const char *reader)
{
	(void)d;
	F.aborts++;
	snprintf(F.aborted, sizeof(F.aborted), "%s", reader);
	return true;
}

static struct reader_card *const CARD = (struct reader_card *)(uintptr_t)0x1;

static int
fake_connect(struct reader_driver *d, const char *reader, struct reader_card **out, uint8_t *atr,
             size_t *atr_len)
{
	(void)d;
	(void)reader;
	int rc = F.connect_rc[F.nconnect < 4 ? F.nconnect : 3];
	F.nconnect++;
	if (rc < 0)
		return rc;
	static const uint8_t a[] = { 0x3B, 0x02, 0x14, 0x50 };
	memcpy(atr, a, sizeof(a));
	*atr_len = sizeof(a);
	*out = CARD;
	return 0;
}

static int
fake_transmit(struct reader_card *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
              size_t *rlen)
{
	(void)capdu;
	(void)clen;
	ck_assert_ptr_eq(c, CARD);
	int rc = F.read_rc[(F.nconnect - 1) < 4 ? F.nconnect - 1 : 3];
	if (rc < 0)
		return rc;
	rapdu[0] = F.sw[0];
	rapdu[1] = F.sw[1];
	*rlen = 2;
	return 0;
}

static void
fake_disconnect(struct reader_card *c)
{
	ck_assert_ptr_eq(c, CARD);
	F.disconnects++;
}

static const struct reader_ops fake_ops = {
	.name = "fake",
	.compiled_in = true,
	.connect = fake_connect,
	.transmit = fake_transmit,
	.disconnect = fake_disconnect,
	.abort = fake_abort,
};

static struct readers_driver drv = { .ops = &fake_ops };

static int
ops_start(void *ctx, struct readers_session *s)
{
	(void)ctx;
	if (F.start_rc < 0)
		return F.start_rc;
	ck_assert_uint_lt(F.nsess, 8);
	F.sess[F.nsess++] = s;
	return 0;
}

static void
copy(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

static void
ops_report(void *ctx, const struct readers_report *rep)
{
	(void)ctx;
	ck_assert_uint_lt(F.nreps, 64);
	struct rec *r = &F.reps[F.nreps++];
	memset(r, 0, sizeof(*r));
	r->type = rep->type;
	copy(r->reader, sizeof(r->reader), rep->reader);
	copy(r->reason, sizeof(r->reason), rep->reason);
	copy(r->detail, sizeof(r->detail), rep->detail);
	copy(r->profile, sizeof(r->profile), rep->profile);
	r->has_profile = rep->profile != NULL;
	r->has_detail = rep->detail != NULL;
	r->timeout_s = rep->timeout_s;
	if (rep->type == READERS_REPORT_CARD_READ) {
		ck_assert_ptr_nonnull(rep->result);
		r->readable = rep->result->readable;
		r->opposed = rep->result->opposed;
	}
}

static void
ops_time(char *buf, size_t len)
{
	snprintf(buf, len, "2024-05-06T07:08:09Z");
}

static void
card_hook(const struct readers_card_info *ci, void *arg)
{
	(void)arg;
	F.hooks++;
	if (!ci->result)
		F.hook_nulls++;
}

static void
read_hook(const char *reader, const struct card_result *r, void *arg)
{
	(void)reader;
	(void)r;
	(void)arg;
	F.read_hooks++;
}

static void
setup(void)
{
	memset(&F, 0, sizeof(F));
	F.sw[0] = 0x90;
	drv.state = READERS_DRV_UP;
	struct readers_ops ops = { .start = ops_start, .report = ops_report, .time_now = ops_time,
		                   .opposed = opposition_has };
	struct readers_config cfg = { .session_timeout_ms = TIMEOUT_MS, .code_timeout_s = CODE_S,
		                      .card_reader = &placeholder_card_reader };
	readers_begin(&ops, &cfg);
	readers_set_card_hook(card_hook, NULL);
	readers_set_read_hook(read_hook, NULL);
}

static void
teardown(void)
{
	readers_stopping();
	for (size_t i = 0; i < F.nsess; i++)
		if (F.sess[i])
			readers_session_done(F.sess[i], 0);
	readers_end();
	opposition_clear();
}

static void
event(enum reader_event_type t, const char *reader, const char *reason, uint64_t now)
{
	struct reader_event ev = { .type = t, .driver = "fake", .atr = { 0x3B, 0x02, 0x14, 0x50 },
		                   .atr_len = 4 };
	copy(ev.reader, sizeof(ev.reader), reader);
	copy(ev.reason, sizeof(ev.reason), reason);
	readers_driver_event(&drv, &ev, now);
}

static const struct readers_reader *
rdr(const char *name)
{
	for (const struct readers_reader *r = readers_first(); r; r = readers_next(r))
		if (strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

static enum readers_state
state(const char *name)
{
	const struct readers_reader *r = rdr(name);
	ck_assert_ptr_nonnull(r);
	return r->state;
}

/* The last session handed out; the test is its thread now. */
static struct readers_session *
take(size_t i)
{
	ck_assert_uint_gt(F.nsess, i);
	struct readers_session *s = F.sess[i];
	F.sess[i] = NULL;
	return s;
}

/* End session s as its thread would: rc, and a result. */
static void
finish(struct readers_session *s, int rc, bool readable, const char *error, const char *reason,
       uint64_t now)
{
	placeholder_card_reader.identify((const uint8_t *)"\x3B\x02\x14\x50", 4, &s->result);
	s->rc = rc;
	s->result.readable = readable;
	copy(s->result.error, sizeof(s->result.error), error);
	copy(s->result.reason, sizeof(s->result.reason), reason);
	readers_session_done(s, now);
}

static size_t
count(enum readers_report_type t)
{
	size_t n = 0;
	for (size_t i = 0; i < F.nreps; i++)
		n += F.reps[i].type == t;
	return n;
}

static const struct rec *
last(enum readers_report_type t)
{
	for (size_t i = F.nreps; i-- > 0;)
		if (F.reps[i].type == t)
			return &F.reps[i];
	ck_abort_msg("no %s reported", readers_report_name(t));
	return NULL;
}

/* a reader with a card in it, its session running, from now */
static void
inserted(uint64_t now)
{
	event(READER_EV_ADDED, "R1", NULL, now);
	event(READER_EV_CARD_PRESENT, "R1", NULL, now);
}

/* ------------------------------------------------------------------ */

/* A physical card whose serial is on the opposition list: CardRead says
 * opposed, the result keeps it (GetCard, CreateSheet), and a change of
 * the list is followed by the cards still in their readers; a phone (no
 * serial checked) never is. */
static void
read_with_serial(const char *reader, const char *serial, const char *presentation,
                 uint64_t now)
{
	event(READER_EV_ADDED, reader, NULL, now);
	event(READER_EV_CARD_PRESENT, reader, NULL, now);
	struct readers_session *s = take(F.nsess - 1);
	placeholder_card_reader.identify((const uint8_t *)"\x3B\x02\x14\x50", 4, &s->result);
	s->rc = 0;
	s->result.readable = true;
	copy(s->result.presentation, sizeof(s->result.presentation), presentation);
	ck_assert_int_eq(card_result_add_field(&s->result, "serial", serial), 0);
	readers_session_done(s, now + 100);
}

START_TEST(t_opposed)
{
	ck_assert_int_eq(opposition_add("25012345678901234567"), 0);
	read_with_serial("R1", "25012345678901234567", "physical", 1000);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_READ), 1);
	ck_assert(last(READERS_REPORT_CARD_READ)->opposed);
	const struct card_result *c = readers_current_card("R1", NULL, NULL);
	ck_assert_ptr_nonnull(c);
	ck_assert(c->opposed);

	/* another serial in another reader: not opposed */
	read_with_serial("R2", "25012345678901234568", "physical", 2000);
	ck_assert(!last(READERS_REPORT_CARD_READ)->opposed);
	ck_assert(!readers_current_card("R2", NULL, NULL)->opposed);

	/* the list changes while both cards stay in: both follow */
	opposition_remove("25012345678901234567");
	ck_assert_int_eq(opposition_add("25012345678901234568"), 0);
	ck_assert_uint_eq(readers_opposition_changed(), 2);
	ck_assert(!readers_current_card("R1", NULL, NULL)->opposed);
	ck_assert(readers_current_card("R2", NULL, NULL)->opposed);
	ck_assert_uint_eq(readers_opposition_changed(), 0);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_READ), 2); /* no event for a change */

	/* a phone whose fields happen to hold a listed serial: not checked */
	read_with_serial("R3", "25012345678901234568", "digital-nfc", 3000);
	ck_assert(!last(READERS_REPORT_CARD_READ)->opposed);
}
END_TEST

START_TEST(t_good_read)
{
	inserted(1000);
	ck_assert_uint_eq(count(READERS_REPORT_READER_ADDED), 1);
	const struct rec *ins = last(READERS_REPORT_CARD_INSERTED);
	ck_assert(ins->has_profile);
	ck_assert_str_eq(ins->profile, "unknown");
	ck_assert_uint_eq(F.nsess, 1);
	ck_assert_int_eq(state("R1"), READERS_IDENTIFYING);
	ck_assert_uint_eq(readers_next_deadline(), 1000 + TIMEOUT_MS);
	ck_assert_ptr_null(readers_current_card(NULL, NULL, NULL));

	struct readers_session *s = take(0);
	ck_assert_str_eq(s->reader, "R1");
	readers_session_progress(s->id, false, 1100);
	ck_assert_int_eq(state("R1"), READERS_READING);
	finish(s, 0, true, NULL, NULL, 1200);
	ck_assert_int_eq(state("R1"), READERS_READY);
	ck_assert_str_eq(rdr("R1")->reason, "");
	ck_assert_uint_eq(count(READERS_REPORT_CARD_READ), 1);
	ck_assert(last(READERS_REPORT_CARD_READ)->readable);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 0);
	ck_assert_uint_eq(F.hooks, 1);
	ck_assert_uint_eq(F.read_hooks, 1);
	ck_assert_uint_eq(readers_next_deadline(), 0);
	/* no deadline left: time passing changes nothing */
	readers_tick(1000 + 10 * TIMEOUT_MS);
	ck_assert_uint_eq(F.aborts, 0);
	ck_assert_int_eq(state("R1"), READERS_READY);

	const char *name, *at;
	ck_assert_ptr_nonnull(readers_current_card("R1", &name, &at));
	ck_assert_str_eq(name, "R1");
	ck_assert_str_eq(at, "2024-05-06T07:08:09Z");
	ck_assert_ptr_null(readers_current_card("R2", NULL, NULL));

	/* progress that comes after its session ended is ignored */
	readers_session_progress(1, true, 1300);
	ck_assert_int_eq(state("R1"), READERS_READY);
	ck_assert_uint_eq(count(READERS_REPORT_CODE_ENTRY), 0);

	event(READER_EV_CARD_ABSENT, "R1", NULL, 1400);
	ck_assert_int_eq(state("R1"), READERS_ABSENT);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_REMOVED), 1);
	ck_assert_uint_eq(F.hook_nulls, 1);
	ck_assert_uint_eq(F.aborts, 0); /* no session to abort */
	ck_assert_ptr_null(readers_current_card(NULL, NULL, NULL));
}
END_TEST

START_TEST(t_deadline)
{
	inserted(1000);
	struct readers_session *s = take(0);
	readers_tick(1000 + TIMEOUT_MS - 1);
	ck_assert_uint_eq(F.aborts, 0);
	ck_assert_int_eq(state("R1"), READERS_IDENTIFYING);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 0);

	readers_tick(1000 + TIMEOUT_MS);
	ck_assert_uint_eq(F.aborts, 1);
	ck_assert_str_eq(F.aborted, "R1");
	ck_assert_int_eq(state("R1"), READERS_ERROR);
	ck_assert_str_eq(rdr("R1")->reason, "the card did not answer within 3000 ms");
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 1);
	const struct rec *e = last(READERS_REPORT_CARD_ERROR);
	ck_assert_str_eq(e->reason, "the card did not answer within 3000 ms");
	ck_assert(!e->has_detail && !e->has_profile);

	/* the abort is repeated while the session runs, the error told once */
	ck_assert_uint_eq(readers_next_deadline(), 1000 + TIMEOUT_MS + READERS_ABORT_REPEAT_MS);
	readers_tick(1000 + TIMEOUT_MS + READERS_ABORT_REPEAT_MS - 1);
	ck_assert_uint_eq(F.aborts, 1);
	readers_tick(1000 + TIMEOUT_MS + READERS_ABORT_REPEAT_MS);
	ck_assert_uint_eq(F.aborts, 2);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 1);

	/* the aborted session ends: nothing more is reported, the reader
	 * stays in error with its reason, no deadline left */
	finish(s, -ETIMEDOUT, false, "SELECT MF failed: no answer in time", NULL, 5500);
	ck_assert_int_eq(state("R1"), READERS_ERROR);
	ck_assert_str_eq(rdr("R1")->reason, "the card did not answer within 3000 ms");
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 1);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_READ), 0);
	ck_assert_uint_eq(readers_next_deadline(), 0);
	ck_assert_uint_eq(F.nsess, 1); /* no new session for the same card */
}
END_TEST

START_TEST(t_code_entry)
{
	inserted(1000);
	struct readers_session *s = take(0);
	readers_session_progress(s->id, false, 1100);
	readers_session_progress(s->id, true, 2000);
	ck_assert_int_eq(state("R1"), READERS_CODE_ENTRY);
	ck_assert_uint_eq(count(READERS_REPORT_CODE_ENTRY), 1);
	const struct rec *c = last(READERS_REPORT_CODE_ENTRY);
	ck_assert_uint_eq(c->timeout_s, CODE_S);
	ck_assert_str_eq(c->profile, "unknown");
	/* the longer budget counts from the prompt */
	uint64_t due = 2000 + CODE_S * 1000u + CARDS_CODE_MARGIN_MS;
	ck_assert_uint_eq(readers_next_deadline(), due);
	readers_tick(1000 + TIMEOUT_MS);
	ck_assert_uint_eq(F.aborts, 0);
	ck_assert_int_eq(state("R1"), READERS_CODE_ENTRY);
	/* a second prompt in code_entry changes nothing */
	readers_session_progress(s->id, true, 3000);
	ck_assert_uint_eq(count(READERS_REPORT_CODE_ENTRY), 1);
	ck_assert_uint_eq(readers_next_deadline(), due);
	readers_tick(due);
	ck_assert_uint_eq(F.aborts, 1);
	ck_assert_int_eq(state("R1"), READERS_ERROR);
	char want[96];
	snprintf(want, sizeof(want), "the card did not answer within %u ms",
	         CODE_S * 1000u + CARDS_CODE_MARGIN_MS);
	ck_assert_str_eq(last(READERS_REPORT_CARD_ERROR)->reason, want);
	finish(s, -ETIMEDOUT, false, NULL, "code_timeout", due + 10);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 1);
}
END_TEST

START_TEST(t_removed_mid_read)
{
	inserted(1000);
	struct readers_session *s = take(0);
	readers_session_progress(s->id, false, 1100);
	event(READER_EV_CARD_ABSENT, "R1", NULL, 1500);
	ck_assert_uint_eq(F.aborts, 1); /* the blocked exchange is released */
	ck_assert_int_eq(state("R1"), READERS_REMOVED);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_REMOVED), 1);
	ck_assert_uint_eq(F.hook_nulls, 1);
	/* late progress of the session of a card that left: ignored */
	readers_session_progress(s->id, true, 1600);
	ck_assert_int_eq(state("R1"), READERS_REMOVED);
	ck_assert_uint_eq(count(READERS_REPORT_CODE_ENTRY), 0);
	finish(s, -ENODEV, false, "the card was removed", NULL, 1700);
	ck_assert_int_eq(state("R1"), READERS_ABSENT);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 0);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_READ), 0);
	ck_assert_uint_eq(readers_next_deadline(), 0);
	ck_assert_uint_eq(F.nsess, 1);
}
END_TEST

/* A phone taken away mid-exchange: its named failure is still told. */
START_TEST(t_removed_named)
{
	inserted(1000);
	struct readers_session *s = take(0);
	event(READER_EV_CARD_ABSENT, "R1", NULL, 1500);
	finish(s, -ENODEV, false, "card_lost: the phone was taken away", "card_lost", 1700);
	ck_assert_int_eq(state("R1"), READERS_ABSENT);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 1);
	const struct rec *e = last(READERS_REPORT_CARD_ERROR);
	ck_assert_str_eq(e->reason, "card_lost");
	ck_assert_str_eq(e->detail, "card_lost: the phone was taken away");
	ck_assert_str_eq(e->profile, "unknown");
}
END_TEST

START_TEST(t_session_errors)
{
	/* a plain failure: the text is the reason */
	inserted(1000);
	finish(take(0), -EIO, false, "SELECT MF failed: transmission error", NULL, 1200);
	ck_assert_int_eq(state("R1"), READERS_ERROR);
	ck_assert_str_eq(rdr("R1")->reason, "SELECT MF failed: transmission error");
	const struct rec *e = last(READERS_REPORT_CARD_ERROR);
	ck_assert_str_eq(e->reason, "SELECT MF failed: transmission error");
	ck_assert(!e->has_detail);
	ck_assert_str_eq(e->profile, "unknown");
	ck_assert_ptr_null(readers_current_card(NULL, NULL, NULL));

	/* without a text: card_strerror's */
	event(READER_EV_CARD_ABSENT, "R1", NULL, 1300);
	event(READER_EV_CARD_PRESENT, "R1", NULL, 1400);
	finish(take(1), -EHOSTDOWN, false, NULL, NULL, 1500);
	ck_assert_str_eq(rdr("R1")->reason, "the reader service (pcscd) went away");

	/* a named refusal (the card is still there): the name, the text as detail */
	event(READER_EV_CARD_ABSENT, "R1", NULL, 1600);
	event(READER_EV_CARD_PRESENT, "R1", NULL, 1700);
	finish(take(2), -EACCES, false, "code_refused: the code was refused", "code_refused", 1800);
	ck_assert_int_eq(state("R1"), READERS_ERROR);
	e = last(READERS_REPORT_CARD_ERROR);
	ck_assert_str_eq(e->reason, "code_refused");
	ck_assert_str_eq(e->detail, "code_refused: the code was refused");
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 3);

	/* read, but not readable: ready, the error as the reader's reason */
	event(READER_EV_CARD_ABSENT, "R1", NULL, 1900);
	event(READER_EV_CARD_PRESENT, "R1", NULL, 2000);
	finish(take(3), 0, false, "recognised, not readable", NULL, 2100);
	ck_assert_int_eq(state("R1"), READERS_READY);
	ck_assert_str_eq(rdr("R1")->reason, "recognised, not readable");
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 3);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_READ), 1);
}
END_TEST

START_TEST(t_new_card_while_ending)
{
	inserted(1000);
	struct readers_session *s = take(0);
	event(READER_EV_CARD_ABSENT, "R1", NULL, 1100);
	event(READER_EV_CARD_PRESENT, "R1", NULL, 1200);
	/* one session per reader: the next waits for this one's end */
	ck_assert_uint_eq(F.nsess, 1);
	ck_assert_int_eq(state("R1"), READERS_PRESENT);
	finish(s, -ENODEV, false, NULL, NULL, 1300);
	ck_assert_uint_eq(F.nsess, 2);
	ck_assert_int_eq(state("R1"), READERS_IDENTIFYING);
	ck_assert_uint_eq(readers_next_deadline(), 1300 + TIMEOUT_MS);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 0);
	finish(take(1), 0, true, NULL, NULL, 1400);
	ck_assert_int_eq(state("R1"), READERS_READY);
}
END_TEST

START_TEST(t_reader_unplugged)
{
	inserted(1000);
	event(READER_EV_ADDED, "R2", NULL, 1000);
	struct readers_session *s = take(0);
	event(READER_EV_REMOVED, "R1", NULL, 1500);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_REMOVED), 1);
	ck_assert_uint_eq(count(READERS_REPORT_READER_REMOVED), 1);
	ck_assert_uint_eq(F.aborts, 1);
	ck_assert_ptr_null(rdr("R1"));          /* not listed any more */
	ck_assert_ptr_nonnull(rdr("R2"));
	/* the same name back while the old session still runs: a new entry */
	event(READER_EV_ADDED, "R1", NULL, 1600);
	ck_assert_int_eq(state("R1"), READERS_ABSENT);
	finish(s, -ENODEV, false, "card_lost: the link failed", "card_lost", 1700);
	ck_assert_uint_eq(count(READERS_REPORT_CARD_ERROR), 1);
	ck_assert_str_eq(last(READERS_REPORT_CARD_ERROR)->reason, "card_lost");
	ck_assert_int_eq(state("R1"), READERS_ABSENT);
	ck_assert_uint_eq(readers_next_deadline(), 0);
	/* a reader without a session goes at once */
	event(READER_EV_REMOVED, "R2", NULL, 1800);
	ck_assert_ptr_null(rdr("R2"));
}
END_TEST

START_TEST(t_mute_and_no_start)
{
	event(READER_EV_ADDED, "R1", NULL, 1000);
	event(READER_EV_CARD_PRESENT, "R1", "the card is mute (no ATR)", 1000);
	ck_assert_uint_eq(F.nsess, 0);
	ck_assert_int_eq(state("R1"), READERS_ERROR);
	ck_assert_str_eq(last(READERS_REPORT_CARD_ERROR)->reason, "the card is mute (no ATR)");
	ck_assert_uint_eq(readers_next_deadline(), 0);

	F.start_rc = -EAGAIN;
	event(READER_EV_ADDED, "R2", NULL, 1000);
	event(READER_EV_CARD_PRESENT, "R2", NULL, 1100);
	ck_assert_int_eq(state("R2"), READERS_ERROR);
	ck_assert_str_eq(rdr("R2")->reason, "cannot start a session thread");
	ck_assert_str_eq(last(READERS_REPORT_CARD_ERROR)->reason, "cannot start a session thread");
	ck_assert_uint_eq(readers_next_deadline(), 0);
}
END_TEST

START_TEST(t_drivers)
{
	struct reader_event ev = { .type = READER_EV_DRIVER_DOWN, .driver = "fake" };
	copy(ev.reason, sizeof(ev.reason), "pcscd went away");
	readers_driver_event(&drv, &ev, 10);
	ck_assert_int_eq(drv.state, READERS_DRV_DOWN);
	ck_assert_str_eq(drv.reason, "pcscd went away");
	ck_assert_str_eq(last(READERS_REPORT_DRIVER_DOWN)->reason, "pcscd went away");
	ev.type = READER_EV_DRIVER_UP;
	readers_driver_event(&drv, &ev, 20);
	ck_assert_int_eq(drv.state, READERS_DRV_UP);
	ck_assert_str_eq(drv.reason, "");
	ck_assert_uint_eq(count(READERS_REPORT_DRIVER_UP), 1);
	ck_assert_str_eq(readers_state_name(READERS_CODE_ENTRY), "code_entry");
	ck_assert_str_eq(readers_report_name(READERS_REPORT_CODE_ENTRY), "CodeEntryRequested");
}
END_TEST

START_TEST(t_stopping)
{
	inserted(1000);
	struct readers_session *s = take(0);
	size_t n = F.nreps;
	readers_stopping();
	ck_assert_uint_eq(F.aborts, 1);
	ck_assert(atomic_load(&s->stop));
	/* nothing is taken in or told any more */
	event(READER_EV_CARD_ABSENT, "R1", NULL, 1100);
	finish(s, -ETIMEDOUT, false, "x", "card_lost", 1200);
	ck_assert_uint_eq(F.nreps, n);
	ck_assert_uint_eq(F.nsess, 1);
	readers_end();
	ck_assert_ptr_null(readers_first());
}
END_TEST

/* ------------------------------------------------------------------ */
/* the session body */

static void
progress(void *ctx, uint64_t id, bool code)
{
	(void)ctx;
	(void)id;
	(void)code;
}

static struct readers_session *
new_session(void)
{
	struct readers_session *s = calloc(1, sizeof(*s));
	s->ops = &fake_ops;
	s->fn = &placeholder_card_reader;
	s->progress = progress;
	snprintf(s->reader, sizeof(s->reader), "R1");
	return s;
}

START_TEST(t_session_run)
{
	/* a good read: one SELECT, the status word kept */
	struct readers_session *s = new_session();
	F.sw[0] = 0x6A, F.sw[1] = 0x82;
	readers_session_run(s);
	ck_assert_int_eq(s->rc, 0);
	ck_assert_uint_eq(s->result.apdus, 1);
	ck_assert_str_eq(s->result.atr_hex, "3B021450");
	ck_assert_str_eq(s->result.fields[0].value, "6A82");
	ck_assert_uint_eq(F.disconnects, 1);
	card_result_clear(&s->result);
	free(s);

	/* reset by someone else twice: read again; a third time ends it */
	memset(&F, 0, sizeof(F));
	s = new_session();
	F.read_rc[0] = F.read_rc[1] = -ECONNRESET;
	readers_session_run(s);
	ck_assert_int_eq(s->rc, 0);
	ck_assert_uint_eq(F.nconnect, 3);
	ck_assert_uint_eq(s->result.apdus, 3);
	card_result_clear(&s->result);
	free(s);
	memset(&F, 0, sizeof(F));
	s = new_session();
	F.read_rc[0] = F.read_rc[1] = F.read_rc[2] = F.read_rc[3] = -ECONNRESET;
	readers_session_run(s);
	ck_assert_int_eq(s->rc, -ECONNRESET);
	ck_assert_uint_eq(F.nconnect, READERS_RESET_RETRIES + 1);
	ck_assert_uint_eq(F.disconnects, READERS_RESET_RETRIES + 1);
	card_result_clear(&s->result);
	free(s);

	/* no card to connect to */
	memset(&F, 0, sizeof(F));
	s = new_session();
	F.connect_rc[0] = -ENODEV;
	readers_session_run(s);
	ck_assert_int_eq(s->rc, -ENODEV);
	ck_assert_str_eq(s->result.error, "cannot connect to the card: the card was removed");
	ck_assert_uint_eq(F.disconnects, 0);
	card_result_clear(&s->result);
	free(s);

	/* told to stop: never connects */
	memset(&F, 0, sizeof(F));
	s = new_session();
	atomic_store(&s->stop, true);
	readers_session_run(s);
	ck_assert_int_lt(s->rc, 0);
	ck_assert_uint_eq(F.nconnect, 0);
	free(s);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("readers");
	TCase *tc = tcase_create("readers");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, t_good_read);
	tcase_add_test(tc, t_opposed);
	tcase_add_test(tc, t_deadline);
	tcase_add_test(tc, t_code_entry);
	tcase_add_test(tc, t_removed_mid_read);
	tcase_add_test(tc, t_removed_named);
	tcase_add_test(tc, t_session_errors);
	tcase_add_test(tc, t_new_card_while_ending);
	tcase_add_test(tc, t_reader_unplugged);
	tcase_add_test(tc, t_mute_and_no_start);
	tcase_add_test(tc, t_drivers);
	tcase_add_test(tc, t_stopping);
	tcase_add_test(tc, t_session_run);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
