/* Unit tests for drivers/reader_qr.c: the keyboard layouts (every
 * character of a code typed on a US and a French keyboard), and the driver
 * itself on a pseudo-terminal standing for a serial scanner: ReaderAdded, a
 * code as a "card" (pseudo-ATR, read_code), CR LF and LF, a line longer than
 * any code, the hold time-out, unplug and re-plug, and the API readers of
 * PresentCode. The evdev path needs /dev/uinput (tests/integration/test_qr.py
 * drives it where the machine has one); its key mapping is tested here. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <pthread.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "drivers/reader_qr.h"

static const char B45[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

static bool
typable(enum reader_qr_keymap km, char want)
{
	for (unsigned code = 1; code < 128; code++)
		for (int sh = 0; sh < 2; sh++)
			if (reader_qr_key_char(km, code, sh) == want)
				return true;
	return false;
}

START_TEST(keymaps)
{
	for (const char *p = B45; *p; p++) {
		ck_assert_msg(typable(READER_QR_QWERTY, *p), "qwerty cannot type '%c'", *p);
		ck_assert_msg(typable(READER_QR_AZERTY, *p), "azerty cannot type '%c'", *p);
	}
	/* French AZERTY (Linux "fr") */
	static const struct {
		unsigned code;
		bool shift;
		char c;
	} fr[] = {
		{ KEY_Q, true, 'A' },   { KEY_A, true, 'Q' },       { KEY_W, true, 'Z' },
		{ KEY_Z, true, 'W' },   { KEY_SEMICOLON, true, 'M' }, { KEY_M, false, ',' },
		{ KEY_1, false, '&' },  { KEY_1, true, '1' },       { KEY_0, true, '0' },
		{ KEY_2, false, 0 },    { KEY_6, false, '-' },      { KEY_DOT, false, ':' },
		{ KEY_DOT, true, '/' }, { KEY_COMMA, true, '.' },   { KEY_BACKSLASH, false, '*' },
		{ KEY_RIGHTBRACE, false, '$' }, { KEY_APOSTROPHE, true, '%' },
		{ KEY_EQUAL, true, '+' }, { KEY_V, true, 'V' },     { KEY_SPACE, false, ' ' },
	};
	for (size_t i = 0; i < sizeof(fr) / sizeof(fr[0]); i++)
		ck_assert_msg(reader_qr_key_char(READER_QR_AZERTY, fr[i].code, fr[i].shift) == fr[i].c,
		              "azerty key %u shift %d", fr[i].code, fr[i].shift);
	/* US */
	ck_assert_int_eq(reader_qr_key_char(READER_QR_QWERTY, KEY_SEMICOLON, true), ':');
	ck_assert_int_eq(reader_qr_key_char(READER_QR_QWERTY, KEY_4, true), '$');
	ck_assert_int_eq(reader_qr_key_char(READER_QR_QWERTY, KEY_1, false), '1');
	ck_assert_int_eq(reader_qr_key_char(READER_QR_QWERTY, KEY_Q, true), 'Q');
	ck_assert_int_eq(reader_qr_key_char(READER_QR_QWERTY, KEY_A, false), 'a');
	/* both: keypad, Enter, nothing for a modifier */
	for (int km = 0; km < 2; km++) {
		ck_assert_int_eq(reader_qr_key_char(km, KEY_KP7, false), '7');
		ck_assert_int_eq(reader_qr_key_char(km, KEY_ENTER, false), '\n');
		ck_assert_int_eq(reader_qr_key_char(km, KEY_KPENTER, true), '\n');
		ck_assert_int_eq(reader_qr_key_char(km, KEY_LEFTSHIFT, false), 0);
	}
	ck_assert_int_eq(reader_qr_keymap_parse("azerty"), READER_QR_AZERTY);
	ck_assert_int_eq(reader_qr_keymap_parse("qwerty"), READER_QR_QWERTY);
	ck_assert_int_eq(reader_qr_keymap_parse("dvorak"), -1);
}
END_TEST

/* ------------------------------------------------------------------ */
/* the driver on a pty */

#define EVQ_MAX 64
static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct reader_event ev[EVQ_MAX];
	int n, taken;
} E = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void
on_event(const struct reader_event *ev, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&E.mu);
	if (E.n < EVQ_MAX)
		E.ev[E.n++] = *ev;
	pthread_cond_broadcast(&E.cv);
	pthread_mutex_unlock(&E.mu);
}

/* The next event (skipping none), within 5 s. */
static struct reader_event
next_event(void)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&E.mu);
	while (E.taken >= E.n)
		if (pthread_cond_timedwait(&E.cv, &E.mu, &until) != 0)
			break;
	ck_assert_msg(E.taken < E.n, "no event within 5 s");
	struct reader_event ev = E.ev[E.taken++];
	pthread_mutex_unlock(&E.mu);
	return ev;
}

static void
expect(enum reader_event_type t, const char *reader)
{
	struct reader_event ev = next_event();
	ck_assert_int_eq(ev.type, t);
	if (reader)
		ck_assert_str_eq(ev.reader, reader);
	if (t == READER_EV_CARD_PRESENT) {
		ck_assert_uint_eq(ev.atr_len, READER_QR_ATR_LEN);
		ck_assert_int_eq(memcmp(ev.atr, READER_QR_ATR, READER_QR_ATR_LEN), 0);
	}
}

static int
read_code(struct reader_driver *d, const char *reader, char *buf, size_t *len)
{
	struct reader_card *c;
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len = sizeof(atr);
	int r = reader_qr_ops.connect(d, reader, &c, atr, &atr_len);
	if (r < 0)
		return r;
	uint8_t rapdu[8];
	size_t rlen = sizeof(rapdu);
	ck_assert_int_eq(reader_qr_ops.transmit(c, (const uint8_t *)"\x00\xA4", 2, rapdu, &rlen), -ENOTSUP);
	r = reader_qr_ops.read_code(c, buf, len);
	reader_qr_ops.disconnect(c);
	return r;
}

static void
put(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		ck_assert_int_gt(w, 0);
		s += w;
		n -= (size_t)w;
	}
	tcdrain(fd);
}

START_TEST(serial_pty)
{
	int master, slave;
	char link[64], name[128], reader[160], buf[READER_QR_LINE_MAX + 8];
	size_t len;
	snprintf(link, sizeof(link), "/tmp/check_reader_qr.%d", (int)getpid());
	ck_assert_int_eq(openpty(&master, &slave, name, NULL, NULL), 0);
	unlink(link);
	ck_assert_int_eq(symlink(name, link), 0);
	snprintf(reader, sizeof(reader), "scanner:%s", link);
	const char *devs[] = { link };
	struct reader_params p = { .devices = devs, .ndevices = 1, .keymap = "qwerty",
		                   .hold_ms = 400, .backoff_max_ms = 1000 };
	struct reader_driver *d;
	ck_assert_int_eq(reader_qr_ops.open(&p, on_event, NULL, &d), 0);
	expect(READER_EV_DRIVER_UP, NULL);
	expect(READER_EV_ADDED, reader);

	/* a code, CR LF */
	put(master, "VQ1:ABC\r\n", 9);
	expect(READER_EV_CARD_PRESENT, reader);
	len = sizeof(buf);
	ck_assert_int_eq(read_code(d, reader, buf, &len), 0);
	ck_assert_uint_eq(len, 7);
	ck_assert_int_eq(memcmp(buf, "VQ1:ABC", 7), 0);
	/* too small a buffer */
	len = 3;
	ck_assert_int_eq(read_code(d, reader, buf, &len), -ENOSPC);
	/* the next code, LF only, in pieces: replaces it */
	put(master, "VQ1:", 4);
	usleep(20000);
	put(master, "XYZ\n", 4);
	expect(READER_EV_CARD_PRESENT, reader);
	len = sizeof(buf);
	ck_assert_int_eq(read_code(d, reader, buf, &len), 0);
	ck_assert_int_eq(memcmp(buf, "VQ1:XYZ", 7), 0);
	/* the hold time-out: CardRemoved, and nothing to connect to */
	expect(READER_EV_CARD_ABSENT, reader);
	len = sizeof(buf);
	ck_assert_int_eq(read_code(d, reader, buf, &len), -ENODEV);
	/* a line longer than any code */
	static char big[READER_QR_LINE_MAX + 100];
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\n';
	put(master, big, sizeof(big));
	expect(READER_EV_CARD_PRESENT, reader);
	len = sizeof(buf);
	ck_assert_int_eq(read_code(d, reader, buf, &len), -E2BIG);
	expect(READER_EV_CARD_ABSENT, reader);
	/* empty lines are no code */
	put(master, "\r\n\r\n", 4);
	/* unplugged: the pty's master closes */
	close(master);
	close(slave);
	unlink(link);
	expect(READER_EV_REMOVED, reader);
	/* plugged back */
	ck_assert_int_eq(openpty(&master, &slave, name, NULL, NULL), 0);
	ck_assert_int_eq(symlink(name, link), 0);
	expect(READER_EV_ADDED, reader);
	put(master, "VQ1:AGAIN\r", 10);
	expect(READER_EV_CARD_PRESENT, reader);

	/* PresentCode's readers */
	char rn[READER_NAME_MAX];
	ck_assert_int_eq(reader_qr_present(d, NULL, "VQ1:API", 7, rn), 0);
	ck_assert_str_eq(rn, "PresentCode");
	expect(READER_EV_ADDED, "PresentCode");
	expect(READER_EV_CARD_PRESENT, "PresentCode");
	len = sizeof(buf);
	ck_assert_int_eq(read_code(d, "PresentCode", buf, &len), 0);
	ck_assert_int_eq(memcmp(buf, "VQ1:API", 7), 0);
	ck_assert_int_eq(reader_qr_present(d, NULL, "VQ1:API2", 8, rn), 0);
	expect(READER_EV_CARD_PRESENT, "PresentCode"); /* no second ReaderAdded */
	ck_assert_int_eq(reader_qr_present(d, "till-2", "X", 1, rn), 0);
	ck_assert_str_eq(rn, "PresentCode:till-2");
	ck_assert_int_eq(reader_qr_present(d, "bad name", "X", 1, rn), -EINVAL);
	ck_assert_int_eq(reader_qr_present(d, NULL, "", 0, rn), -EINVAL);
	char n[8];
	for (int i = 3; i <= READER_QR_API_READERS; i++) {
		snprintf(n, sizeof(n), "t%d", i);
		ck_assert_int_eq(reader_qr_present(d, n, "X", 1, rn), 0);
	}
	ck_assert_int_eq(reader_qr_present(d, "one-more", "X", 1, rn), -ENOSPC);
	reader_qr_ops.close(d);
	close(master);
	close(slave);
	unlink(link);
}
END_TEST

START_TEST(missing_device)
{
	const char *devs[] = { "/nonexistent/ttyACM9" };
	const char *kbds[] = { "/nonexistent/event99" };
	struct reader_params p = { .devices = devs, .ndevices = 1, .keyboards = kbds,
		                   .nkeyboards = 1, .keymap = "azerty" };
	struct reader_driver *d;
	E.n = E.taken = 0;
	ck_assert_int_eq(reader_qr_ops.open(&p, on_event, NULL, &d), 0);
	expect(READER_EV_DRIVER_UP, NULL);
	usleep(300000);
	pthread_mutex_lock(&E.mu);
	ck_assert_int_eq(E.n, 1); /* no reader for a device that is not there */
	pthread_mutex_unlock(&E.mu);
	reader_qr_ops.close(d);
	p.keymap = "dvorak";
	ck_assert_int_eq(reader_qr_ops.open(&p, on_event, NULL, &d), -EINVAL);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("reader_qr");
	TCase *t = tcase_create("core");
	tcase_set_timeout(t, 30);
	tcase_add_test(t, keymaps);
	tcase_add_test(t, serial_pty);
	tcase_add_test(t, missing_device);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
