/* Unit tests of the PC/SC driver's state logic, without pcscd: the driver's
 * source is included so its file-local reader_update() can be fed the
 * SCARD_READERSTATE sequences SCardGetStatusChange returns. The end-to-end
 * behaviour (pcscd, vpcd, kill -9, silent card) is in
 * tests/integration/test_readers.py. */
#include "../../drivers/reader_pcsc.c"

#include <check.h>

static struct reader_event got[16];
static size_t ngot;

static void
collect(const struct reader_event *ev, void *arg)
{
	(void)arg;
	if (ngot < 16)
		got[ngot++] = *ev;
}

static struct reader_driver *
fake_driver(void)
{
	struct reader_driver *d = calloc(1, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->cb = collect;
	d->nreaders = 1;
	snprintf(d->readers[0].name, sizeof(d->readers[0].name), "R");
	d->readers[0].state = SCARD_STATE_UNAWARE;
	ngot = 0;
	return d;
}

static const uint8_t ATR1[] = { 0x3B, 0x75, 0x13, 0x00, 0x00, 0x47, 0x09, 0xEA, 0x90, 0x00 };

static void
feed(struct reader_driver *d, DWORD flags, unsigned counter)
{
	SCARD_READERSTATE s;
	memset(&s, 0, sizeof(s));
	s.szReader = d->readers[0].name;
	s.dwCurrentState = d->readers[0].state;
	s.dwEventState = flags | SCARD_STATE_CHANGED | ((DWORD)counter << 16);
	if (flags & SCARD_STATE_PRESENT) {
		memcpy(s.rgbAtr, ATR1, sizeof(ATR1));
		s.cbAtr = sizeof(ATR1);
	}
	reader_update(d, &d->readers[0], &s);
}

static void
free_driver(struct reader_driver *d)
{
	pthread_mutex_destroy(&d->lock);
	free(d);
}

START_TEST(t_insert_remove)
{
	struct reader_driver *d = fake_driver();
	feed(d, SCARD_STATE_EMPTY, 0);
	ck_assert_uint_eq(ngot, 0);
	feed(d, SCARD_STATE_PRESENT, 1);
	ck_assert_uint_eq(ngot, 1);
	ck_assert_int_eq(got[0].type, READER_EV_CARD_PRESENT);
	ck_assert_uint_eq(got[0].atr_len, sizeof(ATR1));
	ck_assert_mem_eq(got[0].atr, ATR1, sizeof(ATR1));
	ck_assert_str_eq(got[0].reader, "R");
	/* the state fed back is the event state without CHANGED, never UNAWARE */
	ck_assert_uint_eq(d->readers[0].state & SCARD_STATE_CHANGED, 0);
	ck_assert_uint_eq(d->readers[0].state >> 16, 1);
	feed(d, SCARD_STATE_EMPTY, 2);
	ck_assert_uint_eq(ngot, 2);
	ck_assert_int_eq(got[1].type, READER_EV_CARD_ABSENT);
	ck_assert_uint_eq(d->readers[0].atr_len, 0);
	free_driver(d);
}
END_TEST

START_TEST(t_quick_swap_counter)
{
	struct reader_driver *d = fake_driver();
	feed(d, SCARD_STATE_PRESENT, 1);
	ngot = 0;
	/* pulled and put back between two waits: still present, counter +2 */
	feed(d, SCARD_STATE_PRESENT | SCARD_STATE_INUSE, 3);
	ck_assert_uint_eq(ngot, 2);
	ck_assert_int_eq(got[0].type, READER_EV_CARD_ABSENT);
	ck_assert_int_eq(got[1].type, READER_EV_CARD_PRESENT);
	/* only a sharing change: no card event */
	ngot = 0;
	feed(d, SCARD_STATE_PRESENT, 3);
	ck_assert_uint_eq(ngot, 0);
	/* the counter wraps at 16 bits */
	d->readers[0].counter = 0xFFFF;
	feed(d, SCARD_STATE_PRESENT, 1);
	ck_assert_uint_eq(ngot, 2);
	free_driver(d);
}
END_TEST

START_TEST(t_mute_and_gone)
{
	struct reader_driver *d = fake_driver();
	feed(d, SCARD_STATE_PRESENT | SCARD_STATE_MUTE, 1);
	ck_assert_uint_eq(ngot, 1);
	ck_assert_int_eq(got[0].type, READER_EV_CARD_PRESENT);
	ck_assert_str_eq(got[0].reason, "card mute (no ATR)");
	ngot = 0;
	/* the reader vanished: no card event here, the list sync reports it */
	feed(d, SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE, 0);
	ck_assert_uint_eq(ngot, 0);
	free_driver(d);
}
END_TEST

START_TEST(t_errno_map)
{
	ck_assert_int_eq(pcsc_errno(SCARD_S_SUCCESS), 0);
	ck_assert_int_eq(pcsc_errno(SCARD_W_REMOVED_CARD), -ENODEV);
	ck_assert_int_eq(pcsc_errno(SCARD_E_NO_SMARTCARD), -ENODEV);
	ck_assert_int_eq(pcsc_errno(SCARD_W_RESET_CARD), -ECONNRESET);
	ck_assert_int_eq(pcsc_errno(SCARD_E_NO_SERVICE), -EHOSTDOWN);
	ck_assert_int_eq(pcsc_errno(SCARD_E_SERVICE_STOPPED), -EHOSTDOWN);
	ck_assert_int_eq(pcsc_errno(SCARD_F_COMM_ERROR), -EHOSTDOWN);
	ck_assert_int_eq(pcsc_errno(SCARD_E_READER_UNAVAILABLE), -ENODEV);
	ck_assert_int_eq(pcsc_errno(SCARD_E_TIMEOUT), -ETIMEDOUT);
	ck_assert_int_eq(pcsc_errno(SCARD_E_SHARING_VIOLATION), -EBUSY);
	ck_assert_int_eq(pcsc_errno(SCARD_E_NOT_TRANSACTED), -EIO);
}
END_TEST

START_TEST(t_contactless_atr)
{
	static const uint8_t phone[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };
	ck_assert(pseudo_atr_contactless(phone, sizeof(phone)));
	ck_assert(!pseudo_atr_contactless(ATR1, sizeof(ATR1)));
	ck_assert(!pseudo_atr_contactless(phone, 3));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("reader_pcsc");
	TCase *tc = tcase_create("state");
	tcase_add_test(tc, t_insert_remove);
	tcase_add_test(tc, t_quick_swap_counter);
	tcase_add_test(tc, t_mute_and_gone);
	tcase_add_test(tc, t_errno_map);
	tcase_add_test(tc, t_contactless_atr);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
