/* Unit tests for drivers/reader_nfc.c.
 *
 * Pure parts (always): the PC/SC part 3 pseudo-ATRs against ATRs known from
 * real readers, the backoff sequence, the "not compiled in" table entry.
 * With libnfc (WITH_NFC=1): the driver through reader_nfc_ops against
 * tests/world/pn532emu.py, a PN532 emulator on a pty that hosts the phone
 * applet, driven by libnfc's real pn532_uart driver. Each emulator test case
 * starts its own emulator on a private temp dir from an unchecked fixture
 * (it runs in the parent process, so the emulator is stopped by its PID even
 * when a forked test fails or times out; PR_SET_PDEATHSIG covers a killed
 * runner). Without /usr/bin/python3 or the emulator those cases are skipped
 * with a message.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "drivers/reader.h"
#include "drivers/reader_nfc.h"

#define PY "/usr/bin/python3"
#define EMU_REL "tests/world/pn532emu.py"

static const uint8_t phone_atr[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };

static bool
tck_ok(const uint8_t *atr, size_t n)
{
	uint8_t x = 0;
	for (size_t i = 1; i < n; i++)
		x ^= atr[i];
	return x == 0;
}

/* ---------------------------------------------------------------------------
 * pure tests
 */

START_TEST(pseudo_atr_known_values)
{
	uint8_t atr[READER_NFC_ATR_MAX];
	size_t n = 99;

	/* the emulated phone: ATS 05 78 80 70 02, libnfc drops TL */
	const uint8_t phone[] = { 0x78, 0x80, 0x70, 0x02 };
	ck_assert_int_eq(reader_nfc_pseudo_atr(phone, sizeof(phone), atr, &n), 0);
	ck_assert_uint_eq(n, sizeof(phone_atr));
	ck_assert_mem_eq(atr, phone_atr, n);

	/* no ATS bytes at all: same ATR */
	ck_assert_int_eq(reader_nfc_pseudo_atr(NULL, 0, atr, &n), 0);
	ck_assert_mem_eq(atr, phone_atr, sizeof(phone_atr));

	/* MIFARE DESFire EV1: ATS 06 75 77 81 02 80 -> 3B 81 80 01 80 80 */
	const uint8_t desfire[] = { 0x75, 0x77, 0x81, 0x02, 0x80 };
	const uint8_t desfire_atr[] = { 0x3B, 0x81, 0x80, 0x01, 0x80, 0x80 };
	ck_assert_int_eq(reader_nfc_pseudo_atr(desfire, sizeof(desfire), atr, &n), 0);
	ck_assert_uint_eq(n, sizeof(desfire_atr));
	ck_assert_mem_eq(atr, desfire_atr, n);

	/* YubiKey NEO: historical bytes "YubikeyNEOr3" (TA only in the ATS) */
	const uint8_t neo[] = { 0x18, 0x77, 'Y', 'u', 'b', 'i', 'k', 'e', 'y', 'N', 'E', 'O',
		                'r', '3' };
	const uint8_t neo_atr[] = { 0x3B, 0x8C, 0x80, 0x01, 'Y', 'u', 'b', 'i', 'k', 'e', 'y',
		                    'N', 'E', 'O', 'r', '3', 0x58 };
	ck_assert_int_eq(reader_nfc_pseudo_atr(neo, sizeof(neo), atr, &n), 0);
	ck_assert_uint_eq(n, sizeof(neo_atr));
	ck_assert_mem_eq(atr, neo_atr, n);
}
END_TEST

START_TEST(pseudo_atr_edges)
{
	uint8_t atr[READER_NFC_ATR_MAX];
	uint8_t ats[40];
	size_t n = 99;

	/* 20 historical bytes: the first 15 are kept */
	ats[0] = 0x00;  /* no TA/TB/TC */
	for (size_t i = 1; i < 21; i++)
		ats[i] = (uint8_t)(0xA0 + i);
	ck_assert_int_eq(reader_nfc_pseudo_atr(ats, 21, atr, &n), 0);
	ck_assert_uint_eq(n, READER_NFC_ATR_MAX);
	ck_assert_uint_eq(atr[1], 0x8F);
	ck_assert_uint_eq(atr[4], 0xA1);
	ck_assert_uint_eq(atr[18], 0xAF);
	ck_assert(tck_ok(atr, n));

	/* T0 announces TA, TB, TC but only one follows: no historical bytes */
	const uint8_t short_ats[] = { 0x70, 0x01 };
	ck_assert_int_eq(reader_nfc_pseudo_atr(short_ats, sizeof(short_ats), atr, &n), 0);
	ck_assert_mem_eq(atr, phone_atr, sizeof(phone_atr));
	ck_assert_uint_eq(n, sizeof(phone_atr));

	/* exactly the interface bytes: no historical bytes */
	const uint8_t only_if[] = { 0x30, 0x11, 0x22 };
	ck_assert_int_eq(reader_nfc_pseudo_atr(only_if, sizeof(only_if), atr, &n), 0);
	ck_assert_uint_eq(n, 5);

	/* every length 0..15 of historical bytes: right K and a right TCK */
	for (size_t k = 0; k <= 15; k++) {
		ats[0] = 0x10;  /* TA only */
		ats[1] = 0x77;
		for (size_t i = 0; i < k; i++)
			ats[2 + i] = (uint8_t)(k * 17 + i);
		ck_assert_int_eq(reader_nfc_pseudo_atr(ats, 2 + k, atr, &n), 0);
		ck_assert_uint_eq(n, 5 + k);
		ck_assert_uint_eq(atr[1], 0x80 | k);
		ck_assert(tck_ok(atr, n));
	}

	/* bad arguments */
	n = 7;
	ck_assert_int_eq(reader_nfc_pseudo_atr(ats, 3, NULL, &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(reader_nfc_pseudo_atr(NULL, 3, atr, &n), -EINVAL);
	ck_assert_int_eq(reader_nfc_pseudo_atr(ats, 3, atr, NULL), -EINVAL);
}
END_TEST

START_TEST(storage_atr_known_values)
{
	uint8_t atr[READER_NFC_ATR_MAX];
	size_t n = 0;
	const uint8_t atqa_1k[] = { 0x00, 0x04 }, atqa_ul[] = { 0x00, 0x44 };
	/* what PC/SC contactless readers show for these cards */
	const uint8_t classic1k[] = { 0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00,
		                      0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6A };
	const uint8_t ultralight[] = { 0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00,
		                       0x03, 0x06, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x68 };

	ck_assert_int_eq(reader_nfc_storage_atr(0x08, atqa_1k, atr, &n), 0);
	ck_assert_uint_eq(n, sizeof(classic1k));
	ck_assert_mem_eq(atr, classic1k, n);
	ck_assert_int_eq(reader_nfc_storage_atr(0x00, atqa_ul, atr, &n), 0);
	ck_assert_mem_eq(atr, ultralight, n);
	ck_assert_int_eq(reader_nfc_storage_atr(0x18, atqa_1k, atr, &n), 0);
	ck_assert_uint_eq(atr[14], 0x02);
	ck_assert(tck_ok(atr, n));
	ck_assert_int_eq(reader_nfc_storage_atr(0x11, NULL, atr, &n), 0);
	ck_assert_uint_eq(atr[13], 0x00);
	ck_assert_uint_eq(atr[14], 0x00);
	ck_assert(tck_ok(atr, n));
	ck_assert_int_eq(reader_nfc_storage_atr(0x08, atqa_1k, NULL, &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(backoff_sequence)
{
	const unsigned want[] = { 250, 500, 1000, 2000, 4000, 5000, 5000 };
	unsigned cur = 0;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cur = reader_nfc_backoff_next(cur, 5000);
		ck_assert_uint_eq(cur, want[i]);
	}
	ck_assert_uint_eq(reader_nfc_backoff_next(0, 100), 100);
	ck_assert_uint_eq(reader_nfc_backoff_next(100, 100), 100);
	ck_assert_uint_eq(reader_nfc_backoff_next(0, 0), 250);
	ck_assert_uint_eq(reader_nfc_backoff_next(400, 1000), 800);
	ck_assert_uint_eq(reader_nfc_backoff_next(800, 1000), 1000);
	ck_assert_uint_eq(reader_nfc_backoff_next(UINT_MAX / 2 + 10, UINT_MAX), UINT_MAX);
}
END_TEST

static void
null_cb(const struct reader_event *ev, void *arg)
{
}

START_TEST(compiled_in_or_not)
{
	const struct reader_ops *ops = &reader_nfc_ops;
	struct reader_driver *d = (struct reader_driver *)1;
	const char *devs[] = { "pn532_uart:/nonexistent/a", "pn532_uart:/nonexistent/a" };
	struct reader_params p = { .devices = devs, .ndevices = 1, .poll_ms = 100 };

	ck_assert_str_eq(ops->name, "nfc");
	ck_assert_ptr_nonnull(ops->why);
#if WITH_NFC
	ck_assert(ops->compiled_in);
	ck_assert_ptr_null(ops->why());
	/* bad parameters */
	ck_assert_int_eq(ops->open(&p, NULL, NULL, &d), -EINVAL);
	ck_assert_ptr_null(d);
	p.ndevices = 2;
	ck_assert_int_eq(ops->open(&p, null_cb, NULL, &d), -EINVAL);   /* twice the same */
	devs[1] = "";
	ck_assert_int_eq(ops->open(&p, null_cb, NULL, &d), -EINVAL);   /* empty */
	/* no device at all: a driver that does nothing */
	p.ndevices = 0;
	ck_assert_int_eq(ops->open(&p, null_cb, NULL, &d), 0);
	ck_assert_ptr_nonnull(d);
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len = 5;
	struct reader_card *c = (struct reader_card *)1;
	ck_assert_int_eq(ops->connect(d, "nfc:x", &c, atr, &atr_len), -ENODEV);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(atr_len, 0);
	ops->close(d);
#else
	ck_assert(!ops->compiled_in);
	ck_assert_str_eq(ops->why(), "NFC not compiled in");
	ck_assert_int_eq(ops->open(&p, null_cb, NULL, &d), -ENOTSUP);
	ck_assert_ptr_null(d);
	ops->close(NULL);
#endif
}
END_TEST

#if WITH_NFC

static const uint8_t select_aid[] = {
	0x00, 0xA4, 0x04, 0x00, 0x09, 0xF0, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45, 0x44, 0x01, 0x00
};
/* docs/digital-card.md §4.1: {"v": 1, "uvm": ["pin"], "algs": [-7]} in
 * deterministic order, then 90 00 */
static const uint8_t hello[] = {
	0xA3, 0x61, 0x76, 0x01, 0x63, 0x75, 0x76, 0x6D, 0x81, 0x63, 0x70, 0x69, 0x6E,
	0x64, 0x61, 0x6C, 0x67, 0x73, 0x81, 0x26, 0x90, 0x00
};
static const uint8_t get_credential[] = { 0x80, 0xCA, 0x00, 0x00, 0x00 };

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------------------
 * events
 */

#define EVQ_MAX 64

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct reader_event ev[EVQ_MAX];
	size_t head, n;
	unsigned cb_inside;     /* callbacks running now (must stay <= 1) */
	unsigned cb_overlap;
} evq = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void
ev_cb(const struct reader_event *ev, void *arg)
{
	pthread_mutex_lock(&evq.lock);
	if (++evq.cb_inside > 1)
		evq.cb_overlap++;
	pthread_mutex_unlock(&evq.lock);
	usleep(2000);   /* widen the window for overlapping callbacks */
	pthread_mutex_lock(&evq.lock);
	if (evq.n < EVQ_MAX) {
		evq.ev[(evq.head + evq.n) % EVQ_MAX] = *ev;
		evq.n++;
	}
	evq.cb_inside--;
	pthread_cond_broadcast(&evq.cond);
	pthread_mutex_unlock(&evq.lock);
}

/* Wait up to ms for the next event (any reader) and return it in *out.
 * Returns false on time-out. */
static bool
ev_next(struct reader_event *out, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;
	bool got = false;

	pthread_mutex_lock(&evq.lock);
	while (evq.n == 0) {
		uint64_t t = now_ms();
		if (t >= deadline)
			break;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t left = deadline - t;
		ts.tv_sec += (time_t)(left / 1000);
		ts.tv_nsec += (long)(left % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&evq.cond, &evq.lock, &ts);
	}
	if (evq.n > 0) {
		*out = evq.ev[evq.head];
		evq.head = (evq.head + 1) % EVQ_MAX;
		evq.n--;
		got = true;
	}
	pthread_mutex_unlock(&evq.lock);
	return got;
}

static const char *
ev_name(enum reader_event_type t)
{
	switch (t) {
	case READER_EV_ADDED: return "ADDED";
	case READER_EV_REMOVED: return "REMOVED";
	case READER_EV_CARD_PRESENT: return "CARD_PRESENT";
	case READER_EV_CARD_ABSENT: return "CARD_ABSENT";
	case READER_EV_DRIVER_DOWN: return "DRIVER_DOWN";
	case READER_EV_DRIVER_UP: return "DRIVER_UP";
	}
	return "?";
}

/* Wait for an event of type for reader; fails the test on another event or
 * on time-out. */
static void
expect_ev(enum reader_event_type type, const char *reader, unsigned ms, struct reader_event *out)
{
	struct reader_event ev;
	ck_assert_msg(ev_next(&ev, ms), "no %s event for %s within %u ms", ev_name(type), reader, ms);
	ck_assert_msg(ev.type == type && strcmp(ev.reader, reader) == 0,
	              "expected %s for %s, got %s for %s (%s)", ev_name(type), reader,
	              ev_name(ev.type), ev.reader, ev.reason);
	ck_assert_str_eq(ev.driver, "nfc");
	ck_assert(ev.contactless);
	if (out != NULL)
		*out = ev;
}

static void
expect_no_ev(unsigned ms)
{
	struct reader_event ev;
	ck_assert_msg(!ev_next(&ev, ms), "unexpected %s for %s (%s)", ev_name(ev.type), ev.reader,
	              ev.reason);
}

/* ---------------------------------------------------------------------------
 * the emulator (started by the parent process)
 */

static struct {
	pid_t pid;
	char dir[32];               /* /tmp/vitaled-nfcdrv.XXXXXX */
	char link[64];
	char ctl[64];
	char log[64];
	char conn[96];              /* pn532_uart:<link> */
	char name[READER_NAME_MAX]; /* nfc:pn532_uart:<link> */
} emu;

static char emu_script[PATH_MAX];
static const char *emu_skip;   /* why the emulator tests cannot run */

static void
find_emulator(void)
{
	const char *src = getenv("VITALED_SRCDIR");
	char exe[PATH_MAX];
	ssize_t n;

	if (access(PY, X_OK) != 0) {
		emu_skip = PY " not found";
		return;
	}
	if (src != NULL) {
		snprintf(emu_script, sizeof(emu_script), "%s/%s", src, EMU_REL);
	} else if (access(EMU_REL, R_OK) == 0) {
		snprintf(emu_script, sizeof(emu_script), "%s", EMU_REL);
	} else if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) > 0) {
		/* B/tests/check_reader_nfc -> B/../tests/world (B one level down) */
		exe[n] = '\0';
		snprintf(emu_script, sizeof(emu_script), "%.*s/../../%s",
		         (int)(strrchr(exe, '/') - exe), exe, EMU_REL);
	}
	if (emu_script[0] == '\0' || access(emu_script, R_OK) != 0) {
		emu_skip = "tests/world/pn532emu.py not found (set VITALED_SRCDIR)";
		return;
	}
	if (system(PY " -c 'import cbor2, cryptography' >/dev/null 2>&1") != 0)
		emu_skip = "python3-cbor2 / python3-cryptography missing";
}

/* Send one control line; returns 0 when the emulator said "ok". */
static int
emu_ctl(const char *cmd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char buf[256];
	size_t got = 0;
	int fd, r = -1;

	if (strlen(emu.ctl) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, emu.ctl, strlen(emu.ctl) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		goto out;
	snprintf(buf, sizeof(buf), "%s\n", cmd);
	if (write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf))
		goto out;
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(buf, '\n', got) != NULL)
			break;
	}
	buf[got] = '\0';
	r = strncmp(buf, "ok", 2) == 0 ? 0 : -1;
out:
	close(fd);
	return r;
}

static void
emu_stop(void)
{
	if (emu.pid > 0) {
		int st;
		kill(emu.pid, SIGTERM);
		for (int i = 0; i < 100 && waitpid(emu.pid, &st, WNOHANG) == 0; i++)
			usleep(20000);
		if (waitpid(emu.pid, &st, WNOHANG) == 0) {
			kill(emu.pid, SIGKILL);
			waitpid(emu.pid, &st, 0);
		}
		emu.pid = 0;
	}
	if (emu.dir[0] != '\0') {
		unlink(emu.link);
		unlink(emu.ctl);
		if (getenv("KEEP_EMU_LOG") == NULL)
			unlink(emu.log);
		rmdir(emu.dir);
		emu.dir[0] = '\0';
	}
}

/* Unchecked fixture: runs in the parent, once per test case. */
static void
emu_start(void)
{
	memset(&emu, 0, sizeof(emu));
	if (emu_skip != NULL)
		return;
	snprintf(emu.dir, sizeof(emu.dir), "/tmp/vitaled-nfcdrv.XXXXXX");
	if (mkdtemp(emu.dir) == NULL) {
		emu.dir[0] = '\0';
		return;
	}
	snprintf(emu.link, sizeof(emu.link), "%s/pn532", emu.dir);
	snprintf(emu.ctl, sizeof(emu.ctl), "%s/control.sock", emu.dir);
	snprintf(emu.log, sizeof(emu.log), "%s/frames.log", emu.dir);
	snprintf(emu.conn, sizeof(emu.conn), "pn532_uart:%s", emu.link);
	snprintf(emu.name, sizeof(emu.name), "nfc:%s", emu.conn);
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
		}
		execl(PY, PY, emu_script, "--link", emu.link, "--control", emu.ctl, "--log", emu.log,
		      (char *)NULL);
		_exit(127);
	}
	if (pid < 0)
		return;
	emu.pid = pid;
	for (int i = 0; i < 200; i++) {
		struct stat st;
		if (stat(emu.ctl, &st) == 0 && lstat(emu.link, &st) == 0 && emu_ctl("status") == 0)
			return;
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			emu.pid = 0;
			return;
		}
		usleep(25000);
	}
}

static void
emu_teardown(void)
{
	emu_stop();
}

#define REQUIRE_EMU() do { \
		ck_assert_msg(emu.pid > 0, "the PN532 emulator did not start"); \
	} while (0)

static struct reader_driver *
drv_open_with(const char *const *devs, size_t n, unsigned poll_ms, unsigned backoff_max_ms,
              unsigned apdu_ms)
{
	struct reader_params p = {
		.devices = devs, .ndevices = n, .poll_ms = poll_ms,
		.backoff_max_ms = backoff_max_ms, .apdu_timeout_ms = apdu_ms,
	};
	struct reader_driver *d = NULL;
	ck_assert_int_eq(reader_nfc_ops.open(&p, ev_cb, NULL, &d), 0);
	ck_assert_ptr_nonnull(d);
	return d;
}

/* One APDU; returns the driver's result; answer in r/rn. */
static int
xfer(struct reader_card *c, const uint8_t *cmd, size_t n, uint8_t *r, size_t cap, size_t *rn)
{
	*rn = cap;
	return reader_nfc_ops.transmit(c, cmd, n, r, rn);
}

/* CARD_PRESENT (with the phone's ATR), connect, SELECT -> hello */
static struct reader_card *
present_connect_select(struct reader_driver *d)
{
	struct reader_event ev;
	struct reader_card *c = NULL;
	uint8_t atr[READER_ATR_MAX], r[300];
	size_t atr_len = 0, rn;

	expect_ev(READER_EV_CARD_PRESENT, emu.name, 2000, &ev);
	ck_assert_uint_eq(ev.atr_len, sizeof(phone_atr));
	ck_assert_mem_eq(ev.atr, phone_atr, sizeof(phone_atr));
	ck_assert_int_eq(reader_nfc_ops.connect(d, emu.name, &c, atr, &atr_len), 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(atr_len, sizeof(phone_atr));
	ck_assert_mem_eq(atr, phone_atr, sizeof(phone_atr));
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), 0);
	ck_assert_uint_eq(rn, sizeof(hello));
	ck_assert_mem_eq(r, hello, sizeof(hello));
	return c;
}

/* tap (no phone in the field before), then as above */
static struct reader_card *
tap_connect_select(struct reader_driver *d)
{
	ck_assert_int_eq(emu_ctl("tap"), 0);
	return present_connect_select(d);
}

/* ---------------------------------------------------------------------------
 * emulator tests
 */

START_TEST(added_tap_select_credential_away)
{
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *d = drv_open_with(devs, 1, 100, 1000, 0);
	struct reader_event ev;
	struct reader_card *c, *c2 = NULL;
	uint8_t r[300], cmd[5];
	size_t rn, total = 0;
	int rounds = 0;

	uint64_t t0 = now_ms();
	expect_ev(READER_EV_ADDED, emu.name, 3000, &ev);
	fprintf(stderr, "nfc: open -> ADDED %llu ms\n", (unsigned long long)(now_ms() - t0));
	expect_no_ev(300);      /* no phone in the field yet */

	t0 = now_ms();
	c = tap_connect_select(d);
	fprintf(stderr, "nfc: tap -> SELECT answered %llu ms\n", (unsigned long long)(now_ms() - t0));

	/* exclusive */
	ck_assert_int_eq(reader_nfc_ops.connect(d, emu.name, &c2, NULL, NULL), -EBUSY);
	ck_assert_ptr_null(c2);
	ck_assert_int_eq(reader_nfc_ops.connect(d, "nfc:pn532_uart:/other", &c2, NULL, NULL), -ENODEV);

	/* bad arguments: no I/O, no damage */
	uint8_t big[262] = { 0 };
	ck_assert_int_eq(xfer(c, big, sizeof(big), r, sizeof(r), &rn), -EINVAL);
	ck_assert_uint_eq(rn, 0);
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, 1, &rn), -EINVAL);
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, 10, &rn), -ENOBUFS);
	ck_assert_int_eq(reader_nfc_ops.control(c, 0x42, NULL, 0, r, &rn), -ENOTSUP);

	/* GET CREDENTIAL, chained with GET RESPONSE (docs/digital-card.md §2.3) */
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), 0);
	ck_assert_int_eq(xfer(c, get_credential, sizeof(get_credential), r, sizeof(r), &rn), 0);
	ck_assert_uint_ge(rn, 2);
	ck_assert_uint_eq(r[0], 0xD2);  /* CBOR tag 18: COSE_Sign1 */
	while (r[rn - 2] == 0x61) {
		total += rn - 2;
		ck_assert_int_lt(++rounds, 64);
		cmd[0] = 0x00; cmd[1] = 0xC0; cmd[2] = 0x00; cmd[3] = 0x00; cmd[4] = r[rn - 1];
		ck_assert_int_eq(xfer(c, cmd, 5, r, sizeof(r), &rn), 0);
		ck_assert_uint_ge(rn, 2);
	}
	total += rn - 2;
	ck_assert_uint_eq(r[rn - 2], 0x90);
	ck_assert_uint_eq(r[rn - 1], 0x00);
	ck_assert_uint_gt(total, 256);
	ck_assert_int_ge(rounds, 1);

	/* a session that ends well: the phone stays, no event */
	reader_nfc_ops.disconnect(c);
	expect_no_ev(400);
	/* a second session on the same activation */
	ck_assert_int_eq(reader_nfc_ops.connect(d, emu.name, &c, NULL, NULL), 0);
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), 0);
	ck_assert_mem_eq(r, hello, sizeof(hello));
	reader_nfc_ops.disconnect(c);

	/* away: CARD_ABSENT within a poll or two */
	t0 = now_ms();
	ck_assert_int_eq(emu_ctl("away"), 0);
	expect_ev(READER_EV_CARD_ABSENT, emu.name, 1000, &ev);
	fprintf(stderr, "nfc: away -> CARD_ABSENT %llu ms (poll_ms 100)\n",
	        (unsigned long long)(now_ms() - t0));
	ck_assert_int_eq(reader_nfc_ops.connect(d, emu.name, &c2, NULL, NULL), -ENODEV);

	/* a new tap is a new activation */
	c = tap_connect_select(d);
	reader_nfc_ops.disconnect(c);
	reader_nfc_ops.close(d);
	ck_assert_uint_eq(evq.cb_overlap, 0);
}
END_TEST

START_TEST(away_during_session)
{
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *d = drv_open_with(devs, 1, 100, 1000, 0);
	struct reader_card *c;
	uint8_t r[300];
	size_t rn;

	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	c = tap_connect_select(d);
	ck_assert_int_eq(emu_ctl("away"), 0);
	uint64_t t0 = now_ms();
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), -ENODEV);
	ck_assert_uint_lt(now_ms() - t0, 1000);
	ck_assert_uint_eq(rn, 0);
	/* the card stays lost for this session, without I/O */
	t0 = now_ms();
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), -ENODEV);
	ck_assert_uint_lt(now_ms() - t0, 50);
	/* while connected, the worker leaves the card alone: no event yet */
	expect_no_ev(300);
	reader_nfc_ops.disconnect(c);
	expect_ev(READER_EV_CARD_ABSENT, emu.name, 1000, NULL);
	/* the phone comes back */
	c = tap_connect_select(d);
	reader_nfc_ops.disconnect(c);
	reader_nfc_ops.close(d);
}
END_TEST

/* Parse the "next open attempt in N ms" lines of the captured log. */
static size_t
read_backoffs(const char *path, unsigned *out, size_t max)
{
	char line[1024];
	size_t n = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	while (n < max && fgets(line, sizeof(line), f) != NULL) {
		const char *p = strstr(line, "next open attempt in ");
		if (p != NULL)
			out[n++] = (unsigned)strtoul(p + strlen("next open attempt in "), NULL, 10);
	}
	fclose(f);
	return n;
}

START_TEST(vanish_backoff_back)
{
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *d;
	struct reader_event ev;
	struct reader_card *c;
	char logpath[96];
	unsigned delays[64];
	size_t n;
	int saved, fd;

	/* capture the driver's log (stderr) for the backoff lines */
	snprintf(logpath, sizeof(logpath), "%s/driver.log", emu.dir);
	fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	saved = dup(2);
	dup2(fd, 2);
	close(fd);
	log_set_level(LOG_LVL_DEBUG);

	d = drv_open_with(devs, 1, 100, 1000, 0);
	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	/* a phone in the field when the device goes: CARD_ABSENT, then REMOVED */
	ck_assert_int_eq(emu_ctl("tap"), 0);
	expect_ev(READER_EV_CARD_PRESENT, emu.name, 2000, NULL);
	uint64_t t0 = now_ms();
	ck_assert_int_eq(emu_ctl("vanish"), 0);
	expect_ev(READER_EV_CARD_ABSENT, emu.name, 3000, NULL);
	expect_ev(READER_EV_REMOVED, emu.name, 1000, &ev);
	uint64_t t_removed = now_ms() - t0;
	ck_assert_ptr_nonnull(strstr(ev.reason, "not answering"));
	/* reopen attempts: 1.4 s each on a silent PN532 + the backoff */
	usleep(6500 * 1000);
	expect_no_ev(0);        /* one REMOVED, not one per attempt */
	ck_assert_int_eq(emu_ctl("away"), 0);
	t0 = now_ms();
	ck_assert_int_eq(emu_ctl("back"), 0);
	expect_ev(READER_EV_ADDED, emu.name, 4000, NULL);
	uint64_t t_back = now_ms() - t0;
	c = tap_connect_select(d);
	reader_nfc_ops.disconnect(c);
	reader_nfc_ops.close(d);

	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	fprintf(stderr, "nfc: vanish -> REMOVED %llu ms; back -> ADDED %llu ms\n",
	        (unsigned long long)t_removed, (unsigned long long)t_back);
	n = read_backoffs(logpath, delays, 64);
	fprintf(stderr, "nfc: %zu reopen attempts, delays:", n);
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, " %u", delays[i]);
	fprintf(stderr, "\n");
	ck_assert_uint_ge(n, 3);
	ck_assert_uint_eq(delays[0], 250);
	ck_assert_uint_eq(delays[1], 500);
	ck_assert_uint_eq(delays[2], 1000);
	for (size_t i = 3; i < n; i++)
		ck_assert_uint_eq(delays[i], 1000);     /* capped at backoff_max_ms */
}
END_TEST

START_TEST(vanish_during_session)
{
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *d = drv_open_with(devs, 1, 100, 500, 500);
	struct reader_card *c;
	uint8_t r[300];
	size_t rn;

	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	c = tap_connect_select(d);
	ck_assert_int_eq(emu_ctl("vanish"), 0);
	uint64_t t0 = now_ms();
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), -ETIMEDOUT);
	uint64_t t = now_ms() - t0;
	ck_assert_uint_ge(t, 400);
	ck_assert_uint_lt(t, 1500);
	reader_nfc_ops.disconnect(c);
	expect_ev(READER_EV_CARD_ABSENT, emu.name, 3000, NULL);
	expect_ev(READER_EV_REMOVED, emu.name, 1000, NULL);
	ck_assert_int_eq(emu_ctl("back"), 0);
	expect_ev(READER_EV_ADDED, emu.name, 5000, NULL);
	/* the phone never left: found again at the first poll */
	c = present_connect_select(d);
	reader_nfc_ops.disconnect(c);
	reader_nfc_ops.close(d);
}
END_TEST

START_TEST(back_after_power_cycle)
{
	/* "back reset": the PN532 comes back asleep, as after a power cycle;
	 * only a reopen (with its wake-up) brings it back */
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *d = drv_open_with(devs, 1, 100, 500, 0);
	struct reader_card *c;

	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	uint64_t t0 = now_ms();
	ck_assert_int_eq(emu_ctl("vanish"), 0);
	expect_ev(READER_EV_REMOVED, emu.name, 3000, NULL);
	fprintf(stderr, "nfc: vanish (no phone) -> REMOVED %llu ms\n",
	        (unsigned long long)(now_ms() - t0));
	t0 = now_ms();
	ck_assert_int_eq(emu_ctl("back reset"), 0);
	expect_ev(READER_EV_ADDED, emu.name, 5000, NULL);
	fprintf(stderr, "nfc: back after a power cycle -> ADDED %llu ms\n",
	        (unsigned long long)(now_ms() - t0));
	c = tap_connect_select(d);
	reader_nfc_ops.disconnect(c);
	reader_nfc_ops.close(d);
}
END_TEST

START_TEST(close_is_bounded)
{
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *d = drv_open_with(devs, 1, 300, 1000, 0);

	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	usleep(500 * 1000);
	uint64_t t0 = now_ms();
	reader_nfc_ops.close(d);
	uint64_t t_idle = now_ms() - t0;
	fprintf(stderr, "nfc: close while polling %llu ms\n", (unsigned long long)t_idle);
	ck_assert_uint_lt(t_idle, 1000);

	/* while the device is silent and being reopened */
	d = drv_open_with(devs, 1, 300, 1000, 0);
	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	ck_assert_int_eq(emu_ctl("vanish"), 0);
	expect_ev(READER_EV_REMOVED, emu.name, 3000, NULL);
	usleep(700 * 1000);
	t0 = now_ms();
	reader_nfc_ops.close(d);
	uint64_t t_down = now_ms() - t0;
	fprintf(stderr, "nfc: close while reopening a silent device %llu ms\n",
	        (unsigned long long)t_down);
	ck_assert_uint_lt(t_down, 2500);
	expect_no_ev(200);      /* nothing after close() */
}
END_TEST

START_TEST(close_with_a_session_open)
{
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *d = drv_open_with(devs, 1, 100, 1000, 0);
	struct reader_card *c;
	uint8_t r[300];
	size_t rn;

	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	c = tap_connect_select(d);
	uint64_t t0 = now_ms();
	reader_nfc_ops.close(d);
	ck_assert_uint_lt(now_ms() - t0, 1000);
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), -ENODEV);
	reader_nfc_ops.disconnect(c);   /* frees the driver (valgrind-clean) */
}
END_TEST

START_TEST(second_device_missing)
{
	REQUIRE_EMU();
	const char *missing = "pn532_uart:/nonexistent/vitaled-test-tty";
	const char *devs[] = { missing, emu.conn };
	struct reader_driver *d = drv_open_with(devs, 2, 100, 1000, 0);
	struct reader_event ev;
	struct reader_card *c;
	bool added = false, removed = false;

	for (int i = 0; i < 2; i++) {
		ck_assert_msg(ev_next(&ev, 3000), "missing ADDED/REMOVED");
		if (ev.type == READER_EV_ADDED && strcmp(ev.reader, emu.name) == 0) {
			added = true;
		} else if (ev.type == READER_EV_REMOVED && strcmp(ev.reader, "nfc:pn532_uart:/nonexistent/vitaled-test-tty") == 0) {
			removed = true;
			fprintf(stderr, "nfc: missing device: %s\n", ev.reason);
			ck_assert_ptr_nonnull(strstr(ev.reason, "No such file or directory"));
		} else {
			ck_abort_msg("unexpected %s for %s", ev_name(ev.type), ev.reader);
		}
	}
	ck_assert(added && removed);
	c = tap_connect_select(d);
	reader_nfc_ops.disconnect(c);
	ck_assert_int_eq(reader_nfc_ops.connect(d, "nfc:pn532_uart:/nonexistent/vitaled-test-tty",
	                                        &c, NULL, NULL), -EHOSTDOWN);
	expect_no_ev(1200);     /* retries are silent */
	reader_nfc_ops.close(d);
	ck_assert_uint_eq(evq.cb_overlap, 0);   /* two workers, one callback at a time */
}
END_TEST

START_TEST(device_in_use_by_another_driver)
{
	/* libnfc's own "claimed" mark does not hold on Linux; the driver's
	 * flock() on the path keeps a second opener off the PN532 */
	REQUIRE_EMU();
	const char *devs[] = { emu.conn };
	struct reader_driver *a = drv_open_with(devs, 1, 100, 1000, 0), *b;
	struct reader_event ev;
	struct reader_card *c;

	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	b = drv_open_with(devs, 1, 100, 1000, 0);
	expect_ev(READER_EV_REMOVED, emu.name, 3000, &ev);
	fprintf(stderr, "nfc: second opener: %s\n", ev.reason);
	ck_assert_ptr_nonnull(strstr(ev.reason, "in use"));
	/* the first keeps working, undisturbed by the second's retries */
	c = tap_connect_select(a);
	usleep(600 * 1000);
	uint8_t r[300];
	size_t rn;
	ck_assert_int_eq(xfer(c, select_aid, sizeof(select_aid), r, sizeof(r), &rn), 0);
	ck_assert_mem_eq(r, hello, sizeof(hello));
	reader_nfc_ops.disconnect(c);
	/* once the first lets go, the second gets it (and its libnfc context
	 * survived the first's close) */
	reader_nfc_ops.close(a);
	expect_ev(READER_EV_ADDED, emu.name, 3000, NULL);
	expect_ev(READER_EV_CARD_PRESENT, emu.name, 2000, NULL);
	reader_nfc_ops.close(b);
}
END_TEST

static void
emu_case(Suite *s, const char *name, const TTest *t, int timeout)
{
	TCase *tc = tcase_create(name);
	tcase_add_unchecked_fixture(tc, emu_start, emu_teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, t);
	suite_add_tcase(s, tc);
}

#endif /* WITH_NFC */

int
main(void)
{
	Suite *s = suite_create("reader_nfc");
	TCase *tc = tcase_create("pure");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, pseudo_atr_known_values);
	tcase_add_test(tc, pseudo_atr_edges);
	tcase_add_test(tc, storage_atr_known_values);
	tcase_add_test(tc, backoff_sequence);
	tcase_add_test(tc, compiled_in_or_not);
	suite_add_tcase(s, tc);
#if WITH_NFC
	find_emulator();
	if (emu_skip != NULL) {
		printf("reader_nfc: emulator tests skipped: %s\n", emu_skip);
	} else {
		emu_case(s, "added_tap_select_credential_away", added_tap_select_credential_away, 30);
		emu_case(s, "away_during_session", away_during_session, 30);
		emu_case(s, "vanish_backoff_back", vanish_backoff_back, 40);
		emu_case(s, "vanish_during_session", vanish_during_session, 30);
		emu_case(s, "back_after_power_cycle", back_after_power_cycle, 30);
		emu_case(s, "close_is_bounded", close_is_bounded, 30);
		emu_case(s, "close_with_a_session_open", close_with_a_session_open, 30);
		emu_case(s, "second_device_missing", second_device_missing, 30);
		emu_case(s, "device_in_use_by_another_driver", device_in_use_by_another_driver, 30);
	}
#else
	printf("reader_nfc: built without libnfc (WITH_NFC=0): emulator tests skipped\n");
#endif
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
