/* The 2D barcode scanners; see reader_qr.h.
 *
 * One watch thread polls every open scanner and a wake pipe; it reopens the
 * missing ones every second (doubling up to backoff_max_ms while a device
 * stays missing) and ends held codes when hold_ms passes. Slots never move
 * (a fixed array), so connect() and reader_qr_present() find them under
 * the mutex while the thread runs. Nothing here blocks for long: a read is
 * non-blocking, connect() only copies the code, so abort() has nothing to
 * release.
 */
#include "drivers/reader_qr.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"

enum slot_kind { SLOT_SERIAL, SLOT_KEYBOARD, SLOT_API };

#define SLOTS_MAX (READER_QR_DEVICES_MAX + READER_QR_API_READERS)
#define RETRY_MIN_MS 1000u

struct slot {
	bool used;
	enum slot_kind kind;
	char name[READER_NAME_MAX];
	char path[READER_NAME_MAX];
	int fd;                 /* -1: closed */
	bool added;             /* ReaderAdded sent */
	uint64_t retry_at;      /* ms: next open attempt */
	unsigned retry_ms;
	bool warned;            /* open failure logged (once per absence) */
	/* the line being read */
	char line[READER_QR_LINE_MAX];
	size_t linelen;
	bool overlong;
	bool shift_l, shift_r, caps;
	/* the code held ("the card") */
	char *code;
	size_t codelen;
	bool code_overlong;
	uint64_t code_until;    /* ms; 0: none held */
};

struct reader_driver {
	pthread_t th;
	bool th_started;
	int wake[2];
	pthread_mutex_t mu;
	bool stop;
	struct slot slots[SLOTS_MAX];
	reader_event_fn cb;
	void *arg;
	enum reader_qr_keymap keymap;
	unsigned hold_ms;
	unsigned backoff_max_ms;
};

struct reader_card {
	char *code;
	size_t len;
	bool overlong;
};

static uint64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ */
/* key codes to characters */

/* The characters a code can hold: base45's alphabet (and the prefix's
 * letters) on a US and a French keyboard, by Linux key code. */
struct keydef {
	unsigned code;
	char plain, shifted;
};

static const struct keydef qwerty[] = {
	{ KEY_1, '1', '!' }, { KEY_2, '2', '@' }, { KEY_3, '3', '#' }, { KEY_4, '4', '$' },
	{ KEY_5, '5', '%' }, { KEY_6, '6', '^' }, { KEY_7, '7', '&' }, { KEY_8, '8', '*' },
	{ KEY_9, '9', '(' }, { KEY_0, '0', ')' }, { KEY_MINUS, '-', '_' }, { KEY_EQUAL, '=', '+' },
	{ KEY_SEMICOLON, ';', ':' }, { KEY_APOSTROPHE, '\'', '"' }, { KEY_COMMA, ',', '<' },
	{ KEY_DOT, '.', '>' }, { KEY_SLASH, '/', '?' }, { KEY_BACKSLASH, '\\', '|' },
	{ KEY_LEFTBRACE, '[', '{' }, { KEY_RIGHTBRACE, ']', '}' }, { KEY_GRAVE, '`', '~' },
};

/* French AZERTY (Linux "fr"): digits need Shift; A/Q, Z/W and M move. */
static const struct keydef azerty[] = {
	{ KEY_1, '&', '1' }, { KEY_2, 0, '2' }, { KEY_3, '"', '3' }, { KEY_4, '\'', '4' },
	{ KEY_5, '(', '5' }, { KEY_6, '-', '6' }, { KEY_7, 0, '7' }, { KEY_8, '_', '8' },
	{ KEY_9, 0, '9' }, { KEY_0, 0, '0' }, { KEY_MINUS, ')', 0 }, { KEY_EQUAL, '=', '+' },
	{ KEY_Q, 'a', 'A' }, { KEY_W, 'z', 'Z' }, { KEY_A, 'q', 'Q' }, { KEY_Z, 'w', 'W' },
	{ KEY_SEMICOLON, 'm', 'M' }, { KEY_M, ',', '?' }, { KEY_COMMA, ';', '.' },
	{ KEY_DOT, ':', '/' }, { KEY_SLASH, '!', 0 }, { KEY_APOSTROPHE, 0, '%' },
	{ KEY_BACKSLASH, '*', 0 }, { KEY_RIGHTBRACE, '$', 0 }, { KEY_LEFTBRACE, '^', 0 },
};

/* Letters where both layouts agree (KEY_A.. by row on a US keyboard). */
static const struct {
	unsigned code;
	char c;
} letters[] = {
	{ KEY_B, 'b' }, { KEY_C, 'c' }, { KEY_D, 'd' }, { KEY_E, 'e' }, { KEY_F, 'f' },
	{ KEY_G, 'g' }, { KEY_H, 'h' }, { KEY_I, 'i' }, { KEY_J, 'j' }, { KEY_K, 'k' },
	{ KEY_L, 'l' }, { KEY_N, 'n' }, { KEY_O, 'o' }, { KEY_P, 'p' }, { KEY_R, 'r' },
	{ KEY_S, 's' }, { KEY_T, 't' }, { KEY_U, 'u' }, { KEY_V, 'v' }, { KEY_X, 'x' },
	{ KEY_Y, 'y' },
	/* these four differ on AZERTY (its table comes first) */
	{ KEY_A, 'a' }, { KEY_Q, 'q' }, { KEY_W, 'w' }, { KEY_Z, 'z' }, { KEY_M, 'm' },
};

static const struct {
	unsigned code;
	char c;
} keypad[] = {
	{ KEY_KP0, '0' }, { KEY_KP1, '1' }, { KEY_KP2, '2' }, { KEY_KP3, '3' }, { KEY_KP4, '4' },
	{ KEY_KP5, '5' }, { KEY_KP6, '6' }, { KEY_KP7, '7' }, { KEY_KP8, '8' }, { KEY_KP9, '9' },
	{ KEY_KPMINUS, '-' }, { KEY_KPPLUS, '+' }, { KEY_KPASTERISK, '*' }, { KEY_KPSLASH, '/' },
	{ KEY_KPDOT, '.' },
};

char
reader_qr_key_char(enum reader_qr_keymap km, unsigned code, bool shift)
{
	const struct keydef *t = km == READER_QR_AZERTY ? azerty : qwerty;
	size_t n = km == READER_QR_AZERTY ? sizeof(azerty) / sizeof(azerty[0])
	                                  : sizeof(qwerty) / sizeof(qwerty[0]);

	if (code == KEY_ENTER || code == KEY_KPENTER)
		return '\n';
	if (code == KEY_SPACE)
		return ' ';
	for (size_t i = 0; i < n; i++)
		if (t[i].code == code)
			return shift ? t[i].shifted : t[i].plain;
	for (size_t i = 0; i < sizeof(letters) / sizeof(letters[0]); i++)
		if (letters[i].code == code)
			return shift ? (char)(letters[i].c - 'a' + 'A') : letters[i].c;
	for (size_t i = 0; i < sizeof(keypad) / sizeof(keypad[0]); i++)
		if (keypad[i].code == code)
			return keypad[i].c;
	return 0;
}

int
reader_qr_keymap_parse(const char *name)
{
	if (name && strcmp(name, "qwerty") == 0)
		return READER_QR_QWERTY;
	if (name && strcmp(name, "azerty") == 0)
		return READER_QR_AZERTY;
	return -1;
}

/* ------------------------------------------------------------------ */
/* events (under the mutex) */

static void
emit(struct reader_driver *d, enum reader_event_type type, const struct slot *s)
{
	struct reader_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.driver = "qr";
	snprintf(ev.reader, sizeof(ev.reader), "%s", s->name);
	if (type == READER_EV_CARD_PRESENT) {
		memcpy(ev.atr, READER_QR_ATR, READER_QR_ATR_LEN);
		ev.atr_len = READER_QR_ATR_LEN;
	}
	d->cb(&ev, d->arg);
}

static void
code_drop(struct slot *s)
{
	if (s->code) {
		explicit_bzero(s->code, s->codelen);
		free(s->code);
	}
	s->code = NULL;
	s->codelen = 0;
	s->code_overlong = false;
	s->code_until = 0;
}

/* A line is complete: it becomes the slot's code ("a card went in"). */
static void
code_set(struct reader_driver *d, struct slot *s, const char *text, size_t len, bool overlong)
{
	char *copy = malloc(len + 1);
	if (!copy) {
		log_err("qr: %s: out of memory; code dropped", s->name);
		return;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	code_drop(s);
	s->code = copy;
	s->codelen = len;
	s->code_overlong = overlong;
	s->code_until = now_ms() + d->hold_ms;
	log_info("qr: %s: a code of %zu characters%s", s->name, len, overlong ? " (too long)" : "");
	emit(d, READER_EV_CARD_PRESENT, s);
}

static void
slot_close(struct reader_driver *d, struct slot *s, const char *why)
{
	if (s->fd >= 0) {
		if (s->kind == SLOT_KEYBOARD)
			(void)ioctl(s->fd, EVIOCGRAB, 0);
		close(s->fd);
	}
	s->fd = -1;
	s->linelen = 0;
	s->overlong = false;
	explicit_bzero(s->line, sizeof(s->line));
	if (s->added) {
		log_notice("qr: %s gone (%s)", s->name, why);
		if (s->code)
			emit(d, READER_EV_CARD_ABSENT, s);
		emit(d, READER_EV_REMOVED, s);
		s->added = false;
	}
	code_drop(s);
	s->retry_ms = RETRY_MIN_MS;
	s->retry_at = now_ms() + s->retry_ms;
}

/* ------------------------------------------------------------------ */
/* input */

static void
line_char(struct reader_driver *d, struct slot *s, char c)
{
	if (c == '\r' || c == '\n') {
		if (s->linelen > 0 || s->overlong)
			code_set(d, s, s->line, s->linelen, s->overlong);
		explicit_bzero(s->line, s->linelen);
		s->linelen = 0;
		s->overlong = false;
		return;
	}
	if (s->linelen < sizeof(s->line))
		s->line[s->linelen++] = c;
	else
		s->overlong = true;
}

static int
serial_open(struct slot *s)
{
	struct termios t;
	int fd = open(s->path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (tcgetattr(fd, &t) == 0) {
		cfmakeraw(&t);
		t.c_cflag |= CLOCAL | CREAD;
		t.c_cc[VMIN] = 1;
		t.c_cc[VTIME] = 0;
		cfsetispeed(&t, B115200);
		cfsetospeed(&t, B115200);
		if (tcsetattr(fd, TCSANOW, &t) < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		tcflush(fd, TCIFLUSH);
	}
	return fd;
}

static int
keyboard_open(struct slot *s)
{
	int fd = open(s->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, EVIOCGRAB, 1) < 0) {
		/* another program holds it: its keystrokes would leak */
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static void
slot_try_open(struct reader_driver *d, struct slot *s, uint64_t now)
{
	int fd = s->kind == SLOT_SERIAL ? serial_open(s) : keyboard_open(s);
	if (fd < 0) {
		if (!s->warned)
			log_warn("qr: %s: cannot open: %s (tried again every %u s at most)", s->name,
			         strerror(-fd), d->backoff_max_ms / 1000u ? d->backoff_max_ms / 1000u : 1u);
		s->warned = true;
		s->retry_ms = s->retry_ms * 2 > d->backoff_max_ms ? d->backoff_max_ms : s->retry_ms * 2;
		if (s->retry_ms < RETRY_MIN_MS)
			s->retry_ms = RETRY_MIN_MS;
		s->retry_at = now + s->retry_ms;
		return;
	}
	s->fd = fd;
	s->warned = false;
	s->added = true;
	s->shift_l = s->shift_r = s->caps = false;
	log_notice("qr: %s ready", s->name);
	emit(d, READER_EV_ADDED, s);
}

static void
serial_read(struct reader_driver *d, struct slot *s)
{
	char buf[512];
	for (;;) {
		ssize_t n = read(s->fd, buf, sizeof(buf));
		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				line_char(d, s, buf[i]);
			explicit_bzero(buf, (size_t)n);
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		slot_close(d, s, n == 0 ? "end of file" : strerror(errno));
		return;
	}
}

static void
keyboard_read(struct reader_driver *d, struct slot *s)
{
	struct input_event ev[64];
	for (;;) {
		ssize_t n = read(s->fd, ev, sizeof(ev));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			slot_close(d, s, n == 0 ? "end of file" : strerror(errno));
			return;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(ev[0]); i++) {
			if (ev[i].type != EV_KEY)
				continue;
			unsigned code = ev[i].code;
			bool down = ev[i].value != 0;
			if (code == KEY_LEFTSHIFT)
				s->shift_l = down;
			else if (code == KEY_RIGHTSHIFT)
				s->shift_r = down;
			else if (code == KEY_CAPSLOCK && ev[i].value == 1)
				s->caps = !s->caps;
			else if (ev[i].value == 1) {
				bool shift = s->shift_l || s->shift_r;
				char c = reader_qr_key_char(d->keymap, code, shift);
				/* Caps Lock: letters only (both layouts) */
				if (s->caps && c >= 'a' && c <= 'z')
					c = (char)(c - 'a' + 'A');
				else if (s->caps && c >= 'A' && c <= 'Z' && shift)
					c = (char)(c - 'A' + 'a');
				if (c)
					line_char(d, s, c);
			}
		}
		explicit_bzero(ev, sizeof(ev));
	}
}

/* ------------------------------------------------------------------ */
/* the watch thread */

static int
poll_timeout(struct reader_driver *d, uint64_t now)
{
	uint64_t next = 0;
	for (size_t i = 0; i < SLOTS_MAX; i++) {
		const struct slot *s = &d->slots[i];
		if (!s->used)
			continue;
		if (s->kind != SLOT_API && s->fd < 0 && (!next || s->retry_at < next))
			next = s->retry_at;
		if (s->code_until && (!next || s->code_until < next))
			next = s->code_until;
	}
	if (!next)
		return -1;
	return next <= now ? 0 : (int)(next - now > 60000 ? 60000 : next - now);
}

static void
housekeeping(struct reader_driver *d, uint64_t now)
{
	for (size_t i = 0; i < SLOTS_MAX; i++) {
		struct slot *s = &d->slots[i];
		if (!s->used)
			continue;
		if (s->code_until && s->code_until <= now) {
			code_drop(s);
			emit(d, READER_EV_CARD_ABSENT, s);
		}
		if (s->kind != SLOT_API && s->fd < 0 && s->retry_at <= now)
			slot_try_open(d, s, now);
	}
}

static void *
watch(void *arg)
{
	struct reader_driver *d = arg;
	struct pollfd pfd[SLOTS_MAX + 1];
	size_t who[SLOTS_MAX + 1];

	pthread_mutex_lock(&d->mu);
	while (!d->stop) {
		uint64_t now = now_ms();
		housekeeping(d, now);
		size_t n = 0;
		pfd[n].fd = d->wake[0];
		pfd[n].events = POLLIN;
		who[n++] = SIZE_MAX;
		for (size_t i = 0; i < SLOTS_MAX; i++) {
			if (d->slots[i].used && d->slots[i].fd >= 0) {
				pfd[n].fd = d->slots[i].fd;
				pfd[n].events = POLLIN;
				who[n++] = i;
			}
		}
		int tmo = poll_timeout(d, now_ms());
		pthread_mutex_unlock(&d->mu);
		int r = poll(pfd, n, tmo);
		pthread_mutex_lock(&d->mu);
		if (r < 0 && errno != EINTR) {
			log_err("qr: poll: %s", strerror(errno));
			break;
		}
		for (size_t k = 0; r > 0 && k < n; k++) {
			if (!pfd[k].revents)
				continue;
			if (who[k] == SIZE_MAX) {
				char b[64];
				while (read(d->wake[0], b, sizeof(b)) > 0)
					;
				continue;
			}
			struct slot *s = &d->slots[who[k]];
			if (s->fd != pfd[k].fd)
				continue;
			if (pfd[k].revents & POLLIN)
				(s->kind == SLOT_SERIAL ? serial_read : keyboard_read)(d, s);
			else if (pfd[k].revents & (POLLHUP | POLLERR | POLLNVAL))
				slot_close(d, s, "hung up");
		}
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

static void
wake(struct reader_driver *d)
{
	char b = 1;
	ssize_t r = write(d->wake[1], &b, 1);
	(void)r;
}

/* ------------------------------------------------------------------ */
/* ops */

static void
add_devices(struct reader_driver *d, const char *const *paths, size_t n, enum slot_kind kind,
            size_t *k)
{
	for (size_t i = 0; i < n && *k < READER_QR_DEVICES_MAX; i++) {
		struct slot *s = &d->slots[(*k)++];
		s->used = true;
		s->kind = kind;
		s->fd = -1;
		s->retry_ms = RETRY_MIN_MS;
		snprintf(s->path, sizeof(s->path), "%s", paths[i]);
		snprintf(s->name, sizeof(s->name), "%s:%s", kind == SLOT_SERIAL ? "scanner" : "keyboard",
		         paths[i]);
	}
}

static int
qr_open(const struct reader_params *p, reader_event_fn cb, void *arg, struct reader_driver **out)
{
	struct reader_driver *d = calloc(1, sizeof(*d));
	size_t k = 0;
	int km = reader_qr_keymap_parse(p->keymap ? p->keymap : "qwerty");

	*out = NULL;
	if (!d)
		return -ENOMEM;
	if (km < 0) {
		free(d);
		return -EINVAL;
	}
	d->keymap = (enum reader_qr_keymap)km;
	d->hold_ms = p->hold_ms ? p->hold_ms : 300000u;
	d->backoff_max_ms = p->backoff_max_ms > RETRY_MIN_MS ? p->backoff_max_ms : RETRY_MIN_MS;
	d->cb = cb;
	d->arg = arg;
	add_devices(d, p->devices, p->ndevices, SLOT_SERIAL, &k);
	add_devices(d, p->keyboards, p->nkeyboards, SLOT_KEYBOARD, &k);
	if (pipe2(d->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		int e = errno;
		free(d);
		return -e;
	}
	pthread_mutex_init(&d->mu, NULL);
	/* the driver is up at once (before the thread's first ReaderAdded):
	 * scanners come and go as readers */
	struct reader_event ev = { .type = READER_EV_DRIVER_UP, .driver = "qr" };
	cb(&ev, arg);
	int r = pthread_create(&d->th, NULL, watch, d);
	if (r != 0) {
		close(d->wake[0]);
		close(d->wake[1]);
		pthread_mutex_destroy(&d->mu);
		free(d);
		return -r;
	}
	d->th_started = true;
	*out = d;
	return 0;
}

static void
qr_close(struct reader_driver *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->mu);
	d->stop = true;
	pthread_mutex_unlock(&d->mu);
	wake(d);
	if (d->th_started)
		pthread_join(d->th, NULL);
	for (size_t i = 0; i < SLOTS_MAX; i++) {
		struct slot *s = &d->slots[i];
		if (s->fd >= 0 && s->used) {
			if (s->kind == SLOT_KEYBOARD)
				(void)ioctl(s->fd, EVIOCGRAB, 0);
			close(s->fd);
		}
		code_drop(s);
		explicit_bzero(s->line, sizeof(s->line));
	}
	close(d->wake[0]);
	close(d->wake[1]);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

static struct slot *
slot_find(struct reader_driver *d, const char *name)
{
	for (size_t i = 0; i < SLOTS_MAX; i++)
		if (d->slots[i].used && strcmp(d->slots[i].name, name) == 0)
			return &d->slots[i];
	return NULL;
}

static int
qr_connect(struct reader_driver *d, const char *reader, struct reader_card **out, uint8_t *atr,
           size_t *atr_len)
{
	struct reader_card *c = calloc(1, sizeof(*c));
	int r = 0;

	*out = NULL;
	if (!c)
		return -ENOMEM;
	pthread_mutex_lock(&d->mu);
	struct slot *s = slot_find(d, reader);
	if (!s || !s->code) {
		r = -ENODEV;
	} else if (!(c->code = malloc(s->codelen + 1))) {
		r = -ENOMEM;
	} else {
		memcpy(c->code, s->code, s->codelen + 1);
		c->len = s->codelen;
		c->overlong = s->code_overlong;
	}
	pthread_mutex_unlock(&d->mu);
	if (r < 0) {
		free(c);
		return r;
	}
	if (*atr_len >= READER_QR_ATR_LEN) {
		memcpy(atr, READER_QR_ATR, READER_QR_ATR_LEN);
		*atr_len = READER_QR_ATR_LEN;
	}
	*out = c;
	return 0;
}

static int
qr_transmit(struct reader_card *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	(void)c;
	(void)capdu;
	(void)clen;
	(void)rapdu;
	*rlen = 0;
	return -ENOTSUP; /* a printed code answers no APDU */
}

static int
qr_control(struct reader_card *c, uint32_t code, const uint8_t *in, size_t inlen, uint8_t *out,
           size_t *outlen)
{
	(void)c;
	(void)code;
	(void)in;
	(void)inlen;
	(void)out;
	(void)outlen;
	return -ENOTSUP;
}

static int
qr_read_code(struct reader_card *c, char *buf, size_t *len)
{
	if (c->overlong)
		return -E2BIG;
	if (*len < c->len)
		return -ENOSPC;
	memcpy(buf, c->code, c->len);
	*len = c->len;
	return 0;
}

static void
qr_disconnect(struct reader_card *c)
{
	if (!c)
		return;
	if (c->code) {
		explicit_bzero(c->code, c->len);
		free(c->code);
	}
	free(c);
}

static bool
qr_abort(struct reader_driver *d, const char *reader)
{
	(void)d;
	(void)reader;
	return true; /* nothing blocks on a code */
}

static bool
api_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n > 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

int
reader_qr_present(struct reader_driver *d, const char *name, const char *text, size_t len,
                  char reader_out[READER_NAME_MAX])
{
	char rname[READER_NAME_MAX];
	int r = 0;

	if (!d || !text || len == 0 || len > READER_QR_LINE_MAX || (name && !api_name_ok(name)))
		return -EINVAL;
	snprintf(rname, sizeof(rname), "PresentCode%s%s", name && name[0] ? ":" : "",
	         name ? name : "");
	pthread_mutex_lock(&d->mu);
	struct slot *s = slot_find(d, rname);
	if (!s) {
		for (size_t i = READER_QR_DEVICES_MAX; i < SLOTS_MAX && !s; i++)
			if (!d->slots[i].used)
				s = &d->slots[i];
		if (!s) {
			r = -ENOSPC;
			goto out;
		}
		memset(s, 0, sizeof(*s));
		s->used = true;
		s->kind = SLOT_API;
		s->fd = -1;
		snprintf(s->name, sizeof(s->name), "%s", rname);
	}
	if (!s->added) {
		s->added = true;
		emit(d, READER_EV_ADDED, s);
	}
	code_set(d, s, text, len, false);
	if (reader_out)
		snprintf(reader_out, READER_NAME_MAX, "%s", rname);
out:
	pthread_mutex_unlock(&d->mu);
	wake(d); /* the hold time-out may now be the first */
	return r;
}

const struct reader_ops reader_qr_ops = {
	.name = "qr",
	.compiled_in = true,
	.open = qr_open,
	.close = qr_close,
	.connect = qr_connect,
	.transmit = qr_transmit,
	.control = qr_control,
	.disconnect = qr_disconnect,
	.abort = qr_abort,
	.why = NULL,
	.read_code = qr_read_code,
};
