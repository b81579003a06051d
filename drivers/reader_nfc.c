/* The NFC reader driver: libnfc in initiator mode, ISO 14443-4 type A
 * (ISO-DEP), for phones presenting the digital carte Vitale
 * (docs/digital-card.md) and for contactless cards. See reader_nfc.h for the
 * contract and docs/nfc.md for the measurements behind the choices.
 *
 * One worker thread per configured device runs a small state machine:
 *   DOWN     nfc_open + nfc_initiator_init, retried with exponential backoff;
 *   IDLE     one bounded nfc_initiator_select_passive_target per poll_ms;
 *   PRESENT  nfc_initiator_target_is_present per poll_ms while no session
 *            holds the card; nothing while one does.
 * Why not nfc_initiator_poll_target: on a PN532 libnfc 1.8 turns it into one
 * InAutoPoll sent with timeout 0, and waits for the PN532's ACK with no
 * time-out at all and no abort: a PN532 that stopped answering before the
 * call blocks the thread for good, nfc_abort_command() included (measured
 * with tests/world/pn532emu.py, docs/nfc.md). Every libnfc call made here has
 * a finite time-out instead: InListPassiveTarget with "infinite select" off
 * (MxRtyPassiveActivation 2) answers at once, and libnfc bounds it by 300 ms.
 *
 * Locks: dev->io serialises libnfc calls on one device (libnfc is not
 * thread-safe per device; the worker and a session thread share it);
 * drv->lock guards the state below it; nfc_open_lock serialises nfc_open and
 * nfc_close process-wide; drv->cb_lock makes callbacks one at a time. Order:
 * io, then lock; nfc_open_lock inside io; the callback runs with only cb_lock
 * held.
 */
#include "drivers/reader_nfc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifndef WITH_NFC
#define WITH_NFC 0
#endif

/* ---------------------------------------------------------------------------
 * Pure helpers, built with or without libnfc.
 */

int
reader_nfc_pseudo_atr(const uint8_t *ats, size_t ats_len, uint8_t *atr, size_t *atr_len)
{
	size_t hist = 0, nhist = 0;
	uint8_t tck = 0;

	if (atr_len != NULL)
		*atr_len = 0;
	if (atr == NULL || atr_len == NULL || (ats_len > 0 && ats == NULL))
		return -EINVAL;
	if (ats_len > 0) {
		/* ISO 14443-4 §5.2.2: T0 b5, b6, b7 announce TA(1), TB(1), TC(1);
		 * the historical bytes follow them. */
		size_t nif = (size_t)((ats[0] >> 4) & 1) + ((ats[0] >> 5) & 1) + ((ats[0] >> 6) & 1);
		if (1 + nif <= ats_len) {
			hist = 1 + nif;
			nhist = ats_len - hist;
		}
	}
	if (nhist > 15)
		nhist = 15;     /* the ATR's T0 has 4 bits for K */
	atr[0] = 0x3B;
	atr[1] = (uint8_t)(0x80 | nhist); /* TD1 present, K historical bytes */
	atr[2] = 0x80;                    /* TD1: TD2 present, T=0 */
	atr[3] = 0x01;                    /* TD2: T=1 */
	if (nhist > 0)
		memcpy(atr + 4, ats + hist, nhist);
	for (size_t i = 1; i < 4 + nhist; i++)
		tck ^= atr[i];
	atr[4 + nhist] = tck;
	*atr_len = 5 + nhist;
	return 0;
}

int
reader_nfc_storage_atr(uint8_t sak, const uint8_t atqa[2], uint8_t *atr, size_t *atr_len)
{
	static const uint8_t head[] = {
		0x3B, 0x8F, 0x80, 0x01,             /* 15 historical bytes, T=1 */
		0x80, 0x4F, 0x0C,                   /* category, AID tag, length 12 */
		0xA0, 0x00, 0x00, 0x03, 0x06,       /* RID of the PC/SC workgroup */
		0x03,                               /* SS: ISO 14443 A part 3 */
	};
	uint8_t name0 = 0x00, name1 = 0x00, tck = 0;
	size_t n = sizeof(head);

	if (atr_len != NULL)
		*atr_len = 0;
	if (atr == NULL || atr_len == NULL)
		return -EINVAL;
	/* PC/SC part 3 supplement, card names (NN) */
	if (sak == 0x08)
		name1 = 0x01;                       /* MIFARE Classic 1K */
	else if (sak == 0x18)
		name1 = 0x02;                       /* MIFARE Classic 4K */
	else if (sak == 0x09)
		name1 = 0x26;                       /* MIFARE Mini */
	else if (sak == 0x00 && atqa != NULL && atqa[0] == 0x00 && atqa[1] == 0x44)
		name1 = 0x03;                       /* MIFARE Ultralight */
	memcpy(atr, head, sizeof(head));
	atr[n++] = name0;
	atr[n++] = name1;
	for (int i = 0; i < 4; i++)
		atr[n++] = 0x00;                    /* RFU */
	for (size_t i = 1; i < n; i++)
		tck ^= atr[i];
	atr[n++] = tck;
	*atr_len = n;
	return 0;
}

#define NFC_BACKOFF_FIRST_MS 250u

unsigned
reader_nfc_backoff_next(unsigned cur_ms, unsigned cap_ms)
{
	if (cap_ms == 0)
		cap_ms = NFC_BACKOFF_FIRST_MS;
	if (cur_ms == 0)
		return cap_ms < NFC_BACKOFF_FIRST_MS ? cap_ms : NFC_BACKOFF_FIRST_MS;
	if (cur_ms >= cap_ms / 2)
		return cap_ms;
	return cur_ms * 2;
}

#if WITH_NFC

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <nfc/nfc.h>

#include "lib/log.h"

/* A short APDU: header, Lc, 255 data bytes, Le. libnfc copies the command into
 * a 264-byte frame buffer without checking its length, so this bound also
 * keeps libnfc's memcpy inside its buffer. */
#define NFC_CAPDU_MAX 261
#define NFC_POLL_MS_DEFAULT 300u
#define NFC_REASON_MAX 128

enum dev_state {
	DEV_DOWN,       /* no nfc_device */
	DEV_IDLE,       /* open, no target */
	DEV_PRESENT,    /* a target is activated */
};

struct nfc_dev {
	struct reader_driver *drv;
	char connstring[NFC_BUFSIZE_CONNSTRING];
	char name[READER_NAME_MAX];
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t io;             /* every libnfc call on pnd */

	/* under drv->lock (pnd, lockfd: written with io held as well) */
	nfc_device *pnd;
	int lockfd;                     /* flock()ed device path, or -1 */
	enum dev_state state;
	struct reader_card *card;       /* the connected card, if any */
	bool card_lost;                 /* a transmit failed on this activation */
	bool suspect;                   /* the device itself failed a transmit */
	bool busy;                      /* a libnfc call on pnd is in flight */
	bool wake;                      /* wake the worker (disconnect) */
	uint32_t gen;                   /* bumped at each activation and loss */
	uint32_t counter;               /* card events */
	bool iso_dep;
	uint8_t atr[READER_NFC_ATR_MAX];
	size_t atr_len;

	/* worker only */
	unsigned backoff_ms;
	bool down_reported;
};

struct reader_card {
	struct nfc_dev *dev;
	uint32_t gen;
};

struct reader_driver {
	nfc_context *ctx;               /* the process-wide one, see ctx_get() */
	reader_event_fn cb;
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t cond;            /* CLOCK_MONOTONIC */
	pthread_mutex_t cb_lock;
	bool stopping;
	unsigned refs;                  /* 1 from open() to close(), + 1 per card */
	unsigned poll_ms;
	unsigned backoff_max_ms;
	int apdu_timeout_ms;
	size_t ndev;
	struct nfc_dev *dev;
};

static const nfc_modulation nfc_mod_a = { .nmt = NMT_ISO14443A, .nbr = NBR_106 };

/*
 * One libnfc context per process, shared by every open driver. libnfc 1.8
 * keeps its driver list in a global that nfc_init fills and nfc_exit frees
 * for every context at once: with one context per driver, closing one driver
 * (e.g. the old one on a configuration reload) makes every later nfc_open of
 * the others fail with "No driver available". nfc_open and nfc_close are
 * serialised process-wide too (libusb-0.1 based drivers keep global state).
 */
static pthread_mutex_t nfc_ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t nfc_open_lock = PTHREAD_MUTEX_INITIALIZER;
static nfc_context *nfc_ctx;
static unsigned nfc_ctx_users;

static nfc_context *
ctx_get(void)
{
	nfc_context *c;

	pthread_mutex_lock(&nfc_ctx_lock);
	if (nfc_ctx == NULL)
		nfc_init(&nfc_ctx);
	if (nfc_ctx != NULL)
		nfc_ctx_users++;
	c = nfc_ctx;
	pthread_mutex_unlock(&nfc_ctx_lock);
	return c;
}

static void
ctx_put(void)
{
	pthread_mutex_lock(&nfc_ctx_lock);
	if (nfc_ctx_users > 0 && --nfc_ctx_users == 0) {
		nfc_exit(nfc_ctx);
		nfc_ctx = NULL;
	}
	pthread_mutex_unlock(&nfc_ctx_lock);
}

/* -- small things ------------------------------------------------------------ */

static void
drv_free(struct reader_driver *d)
{
	for (size_t i = 0; i < d->ndev; i++) {
		struct nfc_dev *dev = &d->dev[i];
		if (dev->pnd != NULL) {
			pthread_mutex_lock(&nfc_open_lock);
			nfc_close(dev->pnd);
			pthread_mutex_unlock(&nfc_open_lock);
		}
		if (dev->lockfd >= 0)
			close(dev->lockfd);
		pthread_mutex_destroy(&dev->io);
	}
	if (d->ctx != NULL)
		ctx_put();
	pthread_mutex_destroy(&d->lock);
	pthread_mutex_destroy(&d->cb_lock);
	pthread_cond_destroy(&d->cond);
	free(d->dev);
	free(d);
}

/* Drop one reference; the last one frees the driver. Called without locks. */
static void
drv_unref(struct reader_driver *d)
{
	bool last;

	pthread_mutex_lock(&d->lock);
	last = --d->refs == 0;
	pthread_mutex_unlock(&d->lock);
	if (last)
		drv_free(d);
}

static bool
drv_stopping(struct reader_driver *d)
{
	bool s;

	pthread_mutex_lock(&d->lock);
	s = d->stopping;
	pthread_mutex_unlock(&d->lock);
	return s;
}

/* Wait up to ms, or until close() or a disconnect wakes the worker. Returns
 * true when the driver is stopping. */
static bool
dev_wait(struct nfc_dev *dev, unsigned ms)
{
	struct reader_driver *d = dev->drv;
	struct timespec ts;
	bool s;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->lock);
	while (!d->stopping && !dev->wake)
		if (pthread_cond_timedwait(&d->cond, &d->lock, &ts) == ETIMEDOUT)
			break;
	dev->wake = false;
	s = d->stopping;
	pthread_mutex_unlock(&d->lock);
	return s;
}

/* Report one event for dev. type CARD_PRESENT carries the current ATR. No
 * event once close() has begun. */
static void
dev_emit(struct nfc_dev *dev, enum reader_event_type type, const char *reason)
{
	struct reader_driver *d = dev->drv;
	struct reader_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.driver = "nfc";
	ev.contactless = true;
	snprintf(ev.reader, sizeof(ev.reader), "%s", dev->name);
	if (reason != NULL)
		snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
	pthread_mutex_lock(&d->lock);
	if (d->stopping) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	if (type == READER_EV_CARD_PRESENT || type == READER_EV_CARD_ABSENT)
		dev->counter++;
	ev.counter = dev->counter;
	if (type == READER_EV_CARD_PRESENT) {
		memcpy(ev.atr, dev->atr, dev->atr_len);
		ev.atr_len = dev->atr_len;
	}
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_lock(&d->cb_lock);
	d->cb(&ev, d->arg);
	pthread_mutex_unlock(&d->cb_lock);
}

/* Mark a libnfc call on dev in flight (so close() may abort it); io held.
 * Returns the device, or NULL when it is gone. */
static nfc_device *
dev_begin(struct nfc_dev *dev)
{
	nfc_device *pnd;

	pthread_mutex_lock(&dev->drv->lock);
	pnd = dev->pnd;
	dev->busy = pnd != NULL;
	pthread_mutex_unlock(&dev->drv->lock);
	return pnd;
}

static void
dev_end(struct nfc_dev *dev)
{
	pthread_mutex_lock(&dev->drv->lock);
	dev->busy = false;
	pthread_mutex_unlock(&dev->drv->lock);
}

/* Take an exclusive flock() on the device path of a "driver:/path[:speed]"
 * connstring (pn532_uart, arygon, pn532_i2c, pn532_spi): libnfc's own
 * "claimed" mark is a termios flag that Linux does not keep, so nothing else
 * stops a second process from opening the same PN532 and breaking both
 * sessions (docs/digital-card.md §15). It also gives a clearer reason than
 * nfc_open, which only returns NULL. Returns 0 with *fd set (-1 when the
 * connstring has no path), or a positive errno (EWOULDBLOCK: in use). */
static int
dev_lock_path(const char *cs, int *fd)
{
	char path[PATH_MAX];
	const char *p = strchr(cs, ':'), *end;
	size_t n;
	int e;

	*fd = -1;
	if (p == NULL || p[1] != '/')
		return 0;
	p++;
	end = strchr(p, ':');
	n = end != NULL ? (size_t)(end - p) : strlen(p);
	if (n >= sizeof(path))
		return ENAMETOOLONG;
	memcpy(path, p, n);
	path[n] = '\0';
	if ((*fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0) {
		e = errno;
		*fd = -1;
		return e;
	}
	if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
		e = errno == EWOULDBLOCK ? EWOULDBLOCK : errno;
		close(*fd);
		*fd = -1;
		return e;
	}
	return 0;
}

/* Close a device taken off its nfc_dev (bounded: about 350 ms on a silent
 * PN532), then drop its path lock. */
static void
dev_release(struct reader_driver *d, nfc_device *pnd, int lockfd)
{
	if (pnd != NULL) {
		pthread_mutex_lock(&nfc_open_lock);
		nfc_close(pnd);
		pthread_mutex_unlock(&nfc_open_lock);
	}
	if (lockfd >= 0)
		close(lockfd);
}

/* -- the worker's steps ------------------------------------------------------ */

/* Open and set up the device. Returns 0, or -1 with reason filled. */
static int
dev_open(struct nfc_dev *dev, char *reason, size_t reasonlen)
{
	struct reader_driver *d = dev->drv;
	nfc_device *pnd = NULL;
	int e, r, lockfd = -1;

	if ((e = dev_lock_path(dev->connstring, &lockfd)) != 0) {
		snprintf(reason, reasonlen, "cannot open: %s",
		         e == EWOULDBLOCK ? "in use by another process (locked)" :
		         e == EACCES ? "Permission denied (is the service user in the device's group, e.g. dialout?)" :
		         strerror(e));
		return -1;
	}
	pthread_mutex_lock(&nfc_open_lock);
	pnd = nfc_open(d->ctx, dev->connstring);
	pthread_mutex_unlock(&nfc_open_lock);
	if (pnd == NULL) {
		snprintf(reason, reasonlen, "cannot open: no such libnfc device, or it does not answer");
		dev_release(d, NULL, lockfd);
		return -1;
	}
	/* nfc_initiator_init turns "infinite select" on; turn it off again so a
	 * select without a target answers at once. Easy framing: libnfc and the
	 * chip run ISO 14443-4 (I-blocks, chaining, WTX) for us. Auto ISO 14443-4:
	 * the chip sends RATS at activation, so the ATS comes with the target. */
	if ((r = nfc_initiator_init(pnd)) < 0 ||
	    (r = nfc_device_set_property_bool(pnd, NP_INFINITE_SELECT, false)) < 0 ||
	    (r = nfc_device_set_property_bool(pnd, NP_AUTO_ISO14443_4, true)) < 0 ||
	    (r = nfc_device_set_property_bool(pnd, NP_EASY_FRAMING, true)) < 0) {
		snprintf(reason, reasonlen, "cannot initialise: %s", nfc_strerror(pnd));
		dev_release(d, pnd, lockfd);
		return -1;
	}
	pthread_mutex_lock(&dev->io);
	pthread_mutex_lock(&d->lock);
	dev->pnd = pnd;
	dev->lockfd = lockfd;
	dev->state = DEV_IDLE;
	dev->card_lost = false;
	dev->suspect = false;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&dev->io);
	return 0;
}

/* The device stopped answering: report, close it, and go back to DOWN. The
 * events go out before the close, which takes about 350 ms on a silent PN532. */
static void
dev_lost(struct nfc_dev *dev, const char *why)
{
	struct reader_driver *d = dev->drv;
	char reason[NFC_REASON_MAX];
	nfc_device *pnd;
	bool had_card;
	int lockfd;

	/* detached under io: no other thread can be using it afterwards */
	pthread_mutex_lock(&dev->io);
	pthread_mutex_lock(&d->lock);
	had_card = dev->state == DEV_PRESENT;
	pnd = dev->pnd;
	lockfd = dev->lockfd;
	dev->pnd = NULL;
	dev->lockfd = -1;
	dev->state = DEV_DOWN;
	dev->gen++;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&dev->io);
	if (had_card)
		dev_emit(dev, READER_EV_CARD_ABSENT, "device lost");
	snprintf(reason, sizeof(reason), "device not answering (%s); reopening", why);
	log_warn("nfc: %s: %s", dev->name, reason);
	dev_emit(dev, READER_EV_REMOVED, reason);
	dev->down_reported = true;
	dev->backoff_ms = 0;
	dev_release(d, pnd, lockfd);
}

/* After a libnfc error: does the device still answer? A bounded command
 * (RFConfiguration, libnfc's default 350 ms time-out) that changes nothing:
 * the field is already on. */
static bool
dev_alive(struct nfc_dev *dev)
{
	nfc_device *pnd;
	int r = NFC_EIO;

	pthread_mutex_lock(&dev->io);
	if ((pnd = dev_begin(dev)) != NULL)
		r = nfc_device_set_property_bool(pnd, NP_ACTIVATE_FIELD, true);
	dev_end(dev);
	pthread_mutex_unlock(&dev->io);
	return r >= 0;
}

/* A target answered the poll: build its ATR and report it. */
static void
dev_activated(struct nfc_dev *dev, const nfc_target *nt)
{
	struct reader_driver *d = dev->drv;
	const nfc_iso14443a_info *a = &nt->nti.nai;
	uint8_t atr[READER_NFC_ATR_MAX];
	size_t atr_len = 0;
	bool iso_dep = (a->btSak & 0x20) != 0;

	if (iso_dep)
		reader_nfc_pseudo_atr(a->abtAts, a->szAtsLen <= sizeof(a->abtAts) ? a->szAtsLen : 0,
		                      atr, &atr_len);
	else
		reader_nfc_storage_atr(a->btSak, a->abtAtqa, atr, &atr_len);
	pthread_mutex_lock(&d->lock);
	dev->state = DEV_PRESENT;
	dev->gen++;
	dev->iso_dep = iso_dep;
	dev->card_lost = false;
	memcpy(dev->atr, atr, atr_len);
	dev->atr_len = atr_len;
	pthread_mutex_unlock(&d->lock);
	/* the UID is personal data (and random on phones): never logged */
	log_info("nfc: %s: %s target present", dev->name,
	         iso_dep ? "ISO 14443-4" : "ISO 14443-3 (no APDUs)");
	dev_emit(dev, READER_EV_CARD_PRESENT, NULL);
}

/* The target left (or a session lost it): release it and report. */
static void
dev_absent(struct nfc_dev *dev, const char *why)
{
	struct reader_driver *d = dev->drv;
	nfc_device *pnd;

	pthread_mutex_lock(&dev->io);
	if ((pnd = dev_begin(dev)) != NULL)
		(void)nfc_initiator_deselect_target(pnd);   /* bounded; errors do not matter */
	dev_end(dev);
	pthread_mutex_lock(&d->lock);
	if (dev->state == DEV_PRESENT)
		dev->state = DEV_IDLE;
	dev->card_lost = false;
	dev->gen++;
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&dev->io);
	log_info("nfc: %s: target gone (%s)", dev->name, why);
	dev_emit(dev, READER_EV_CARD_ABSENT, why);
}

/* IDLE: one bounded poll for an ISO 14443 type A target. */
static void
dev_step_idle(struct nfc_dev *dev)
{
	nfc_device *pnd;
	nfc_target nt;
	int r = NFC_EIO;
	char why[96];

	memset(&nt, 0, sizeof(nt));
	pthread_mutex_lock(&dev->io);
	if ((pnd = dev_begin(dev)) != NULL)
		r = nfc_initiator_select_passive_target(pnd, nfc_mod_a, NULL, 0, &nt);
	if (r < 0 && pnd != NULL)
		snprintf(why, sizeof(why), "poll: %s", nfc_strerror(pnd));
	dev_end(dev);
	pthread_mutex_unlock(&dev->io);
	if (r > 0 && nt.nm.nmt == NMT_ISO14443A) {
		dev_activated(dev, &nt);
		explicit_bzero(&nt, sizeof(nt));
		return;
	}
	explicit_bzero(&nt, sizeof(nt));
	if (r < 0 && !drv_stopping(dev->drv) && !dev_alive(dev)) {
		dev_lost(dev, pnd != NULL ? why : "closed");
		return;
	}
	dev_wait(dev, dev->drv->poll_ms);
}

/* PRESENT: leave a connected card alone; else check that it is still there. */
static void
dev_step_present(struct nfc_dev *dev)
{
	struct reader_driver *d = dev->drv;
	nfc_device *pnd;
	nfc_target nt;
	bool connected, lost, suspect;
	int r = NFC_EIO;

	pthread_mutex_lock(&d->lock);
	connected = dev->card != NULL;
	lost = dev->card_lost;
	suspect = dev->suspect;
	dev->suspect = false;
	pthread_mutex_unlock(&d->lock);
	if (connected) {
		dev_wait(dev, d->poll_ms);
		return;
	}
	if (lost) {
		/* A session lost the card: report it gone (the next poll finds it
		 * again if it is still in the field), after checking the device
		 * when the device itself failed. */
		if (suspect && !dev_alive(dev)) {
			dev_lost(dev, "no answer during a session");
			return;
		}
		dev_absent(dev, "lost during a session");
		return;
	}
	if (dev_wait(dev, d->poll_ms))
		return;
	pthread_mutex_lock(&dev->io);
	pthread_mutex_lock(&d->lock);
	connected = dev->card != NULL;  /* a session may have come meanwhile */
	pthread_mutex_unlock(&d->lock);
	if (connected) {
		pthread_mutex_unlock(&dev->io);
		return;
	}
	if ((pnd = dev_begin(dev)) != NULL) {
		/* ISO-DEP: an R(NAK) the target must answer (about 40 ms when it
		 * is gone, two tries of 300 ms at most on a silent device) */
		r = nfc_initiator_target_is_present(pnd, NULL);
		if (r == NFC_EDEVNOTSUPP) {
			/* a type A card libnfc cannot ping: activate it again */
			memset(&nt, 0, sizeof(nt));
			r = nfc_initiator_select_passive_target(pnd, nfc_mod_a, NULL, 0, &nt);
			explicit_bzero(&nt, sizeof(nt));
			r = r > 0 ? NFC_SUCCESS : r == 0 ? NFC_ETGRELEASED : r;
		}
	}
	dev_end(dev);
	pthread_mutex_unlock(&dev->io);
	if (r == NFC_SUCCESS)
		return;
	if (r == NFC_ETGRELEASED || r == NFC_ERFTRANS) {
		dev_absent(dev, "left the field");
		return;
	}
	if (drv_stopping(d))
		return;
	if (!dev_alive(dev)) {
		dev_lost(dev, "presence check failed");
		return;
	}
	dev_absent(dev, "presence check failed");
}

static void *
dev_worker(void *arg)
{
	struct nfc_dev *dev = arg;
	struct reader_driver *d = dev->drv;
	char reason[NFC_REASON_MAX];
	enum dev_state st;

	while (!drv_stopping(d)) {
		pthread_mutex_lock(&d->lock);
		st = dev->state;
		pthread_mutex_unlock(&d->lock);
		switch (st) {
		case DEV_DOWN:
			if (dev_open(dev, reason, sizeof(reason)) == 0) {
				log_info("nfc: %s: device ready", dev->name);
				dev->backoff_ms = 0;
				dev->down_reported = false;
				dev_emit(dev, READER_EV_ADDED, NULL);
				break;
			}
			if (!dev->down_reported) {
				log_warn("nfc: %s: %s; retrying", dev->name, reason);
				dev_emit(dev, READER_EV_REMOVED, reason);
				dev->down_reported = true;
			}
			dev->backoff_ms = reader_nfc_backoff_next(dev->backoff_ms, d->backoff_max_ms);
			log_debug("nfc: %s: %s; next open attempt in %u ms", dev->name, reason,
			          dev->backoff_ms);
			dev_wait(dev, dev->backoff_ms);
			break;
		case DEV_IDLE:
			dev_step_idle(dev);
			break;
		case DEV_PRESENT:
			dev_step_present(dev);
			break;
		}
	}
	return NULL;
}

/* -- the vtable ---------------------------------------------------------------- */

static void nfc_close_drv(struct reader_driver *d);

static int
nfc_open_drv(const struct reader_params *p, reader_event_fn cb, void *arg,
             struct reader_driver **out)
{
	struct reader_driver *d = NULL;
	pthread_condattr_t ca;
	const char *lvl;
	int r = 0;

	if (out != NULL)
		*out = NULL;
	if (p == NULL || cb == NULL || out == NULL || (p->ndevices > 0 && p->devices == NULL))
		return -EINVAL;
	for (size_t i = 0; i < p->ndevices; i++) {
		const char *cs = p->devices[i];
		if (cs == NULL || cs[0] == '\0' || strlen(cs) >= NFC_BUFSIZE_CONNSTRING ||
		    strlen(cs) + 4 >= READER_NAME_MAX) {
			log_err("nfc: device %zu: empty or too long connstring", i);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(cs, p->devices[j]) == 0) {
				log_err("nfc: device %s configured twice", cs);
				return -EINVAL;
			}
	}
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return -ENOMEM;
	d->cb = cb;
	d->arg = arg;
	d->refs = 1;
	d->poll_ms = p->poll_ms > 0 ? p->poll_ms : NFC_POLL_MS_DEFAULT;
	d->backoff_max_ms = p->backoff_max_ms;
	d->apdu_timeout_ms = p->apdu_timeout_ms > 0 && p->apdu_timeout_ms <= INT_MAX
	                     ? (int)p->apdu_timeout_ms : READER_NFC_APDU_TIMEOUT_MS;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->cb_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (p->ndevices > 0 && (d->dev = calloc(p->ndevices, sizeof(*d->dev))) == NULL) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < p->ndevices; i++) {
		struct nfc_dev *dev = &d->dev[i];
		dev->drv = d;
		snprintf(dev->connstring, sizeof(dev->connstring), "%s", p->devices[i]);
		snprintf(dev->name, sizeof(dev->name), "nfc:%s", p->devices[i]);
		pthread_mutex_init(&dev->io, NULL);
		dev->state = DEV_DOWN;
		dev->lockfd = -1;
		d->ndev++;
	}
	if ((lvl = getenv("LIBNFC_LOG_LEVEL")) != NULL && lvl[0] >= '3' && lvl[0] <= '9')
		log_warn("nfc: LIBNFC_LOG_LEVEL=%s makes libnfc print every frame, card and "
		         "identity data included: never use it in production", lvl);
	if (d->ndev > 0) {
		if ((d->ctx = ctx_get()) == NULL) {
			log_err("nfc: nfc_init failed");
			r = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < d->ndev; i++) {
		int e = pthread_create(&d->dev[i].thread, NULL, dev_worker, &d->dev[i]);
		if (e != 0) {
			log_err("nfc: cannot start a worker: %s", strerror(e));
			r = -e;
			goto out;
		}
		d->dev[i].thread_started = true;
	}
	*out = d;
	d = NULL;
out:
	if (d != NULL)
		nfc_close_drv(d);
	return r;
}

static void
nfc_close_drv(struct reader_driver *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_broadcast(&d->cond);
	/* A call in flight returns at once when it waits for the PN532's answer;
	 * one still sending (waiting for the ACK) ends by its own time-out. */
	for (size_t i = 0; i < d->ndev; i++)
		if (d->dev[i].busy && d->dev[i].pnd != NULL)
			nfc_abort_command(d->dev[i].pnd);
	pthread_mutex_unlock(&d->lock);
	for (size_t i = 0; i < d->ndev; i++)
		if (d->dev[i].thread_started)
			pthread_join(d->dev[i].thread, NULL);
	/* Release the devices no session holds now (the tty is freed at once);
	 * the others go with their card's disconnect(). */
	for (size_t i = 0; i < d->ndev; i++) {
		struct nfc_dev *dev = &d->dev[i];
		nfc_device *pnd = NULL;
		int lockfd = -1;
		pthread_mutex_lock(&dev->io);
		pthread_mutex_lock(&d->lock);
		if (dev->card == NULL) {
			pnd = dev->pnd;
			lockfd = dev->lockfd;
			dev->pnd = NULL;
			dev->lockfd = -1;
		}
		pthread_mutex_unlock(&d->lock);
		if (pnd != NULL)
			nfc_initiator_deselect_target(pnd);
		dev_release(d, pnd, lockfd);
		pthread_mutex_unlock(&dev->io);
	}
	drv_unref(d);
}

static int
nfc_connect(struct reader_driver *d, const char *reader, struct reader_card **out,
            uint8_t *atr, size_t *atr_len)
{
	struct nfc_dev *dev = NULL;
	struct reader_card *c = NULL;
	int r = 0;

	if (out != NULL)
		*out = NULL;
	if (atr_len != NULL)
		*atr_len = 0;
	if (d == NULL || reader == NULL || out == NULL)
		return -EINVAL;
	for (size_t i = 0; i < d->ndev; i++)
		if (strcmp(d->dev[i].name, reader) == 0)
			dev = &d->dev[i];
	if (dev == NULL)
		return -ENODEV;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -ENOMEM;
	/* io: wait for the worker's poll or presence check to finish */
	pthread_mutex_lock(&dev->io);
	pthread_mutex_lock(&d->lock);
	if (d->stopping || dev->state == DEV_DOWN)
		r = d->stopping ? -ENODEV : -EHOSTDOWN;
	else if (dev->state != DEV_PRESENT || dev->card_lost)
		r = -ENODEV;
	else if (dev->card != NULL)
		r = -EBUSY;
	if (r == 0) {
		c->dev = dev;
		c->gen = dev->gen;
		dev->card = c;
		d->refs++;
		if (atr != NULL && atr_len != NULL) {
			memcpy(atr, dev->atr, dev->atr_len);
			*atr_len = dev->atr_len;
		}
	}
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&dev->io);
	if (r < 0) {
		free(c);
		return r;
	}
	*out = c;
	return 0;
}

/* libnfc error → the driver's error; marks the card lost (and the device
 * suspect when the device itself failed). d->lock held. */
static int
nfc_map_error(struct nfc_dev *dev, int res)
{
	switch (res) {
	case NFC_EOVFLOW:
		return -ENOBUFS;    /* the exchange went well; the buffer was short */
	case NFC_ERFTRANS:
	case NFC_ETGRELEASED:
	case NFC_EOPABORTED:
		dev->card_lost = true;
		return -ENODEV;
	case NFC_ETIMEOUT:
		dev->card_lost = true;
		dev->suspect = true;
		return -ETIMEDOUT;
	default:
		dev->card_lost = true;
		dev->suspect = true;
		return -EIO;
	}
}

static int
nfc_transmit(struct reader_card *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
             size_t *rlen)
{
	struct nfc_dev *dev;
	struct reader_driver *d;
	nfc_device *pnd = NULL;
	size_t cap;
	int r = 0, res;

	if (rlen == NULL)
		return -EINVAL;
	cap = *rlen;
	*rlen = 0;
	if (c == NULL || capdu == NULL || rapdu == NULL || clen < 4 || clen > NFC_CAPDU_MAX ||
	    cap < 2)
		return -EINVAL;
	dev = c->dev;
	d = dev->drv;
	pthread_mutex_lock(&dev->io);
	pthread_mutex_lock(&d->lock);
	if (d->stopping || c->gen != dev->gen || dev->card_lost)
		r = dev->pnd == NULL && !d->stopping ? -EHOSTDOWN : -ENODEV;
	else if (dev->pnd == NULL)
		r = -EHOSTDOWN;
	else if (!dev->iso_dep)
		r = -ENOTSUP;
	if (r == 0) {
		pnd = dev->pnd;
		dev->busy = true;
	}
	pthread_mutex_unlock(&d->lock);
	if (r < 0) {
		pthread_mutex_unlock(&dev->io);
		return r;
	}
	res = nfc_initiator_transceive_bytes(pnd, capdu, clen, rapdu, cap, d->apdu_timeout_ms);
	pthread_mutex_lock(&d->lock);
	dev->busy = false;
	if (res >= 0)
		*rlen = (size_t)res;
	else
		r = nfc_map_error(dev, res);
	pthread_mutex_unlock(&d->lock);
	if (res < 0)
		log_debug("nfc: %s: exchange failed: %s", dev->name, nfc_strerror(pnd));
	pthread_mutex_unlock(&dev->io);
	return r;
}

static int
nfc_control(struct reader_card *c, uint32_t code, const uint8_t *in, size_t inlen,
            uint8_t *outb, size_t *outlen)
{
	if (outlen != NULL)
		*outlen = 0;
	return -ENOTSUP;
}

static void
nfc_disconnect(struct reader_card *c)
{
	struct nfc_dev *dev;
	struct reader_driver *d;

	if (c == NULL)
		return;
	dev = c->dev;
	d = dev->drv;
	pthread_mutex_lock(&d->lock);
	if (dev->card == c) {
		dev->card = NULL;
		dev->wake = true;
		pthread_cond_broadcast(&d->cond);
	}
	pthread_mutex_unlock(&d->lock);
	free(c);
	drv_unref(d);
}

static const char *
nfc_why(void)
{
	return NULL;
}

const struct reader_ops reader_nfc_ops = {
	.name = "nfc",
	.compiled_in = true,
	.open = nfc_open_drv,
	.close = nfc_close_drv,
	.connect = nfc_connect,
	.transmit = nfc_transmit,
	.control = nfc_control,
	.disconnect = nfc_disconnect,
	.why = nfc_why,
};

#else /* !WITH_NFC */

static int
nfc_open_absent(const struct reader_params *p, reader_event_fn cb, void *arg,
              struct reader_driver **out)
{
	if (out != NULL)
		*out = NULL;
	return -ENOTSUP;
}

static void
nfc_close_absent(struct reader_driver *d)
{
}

static int
nfc_connect_absent(struct reader_driver *d, const char *reader, struct reader_card **out,
                 uint8_t *atr, size_t *atr_len)
{
	if (out != NULL)
		*out = NULL;
	if (atr_len != NULL)
		*atr_len = 0;
	return -ENOTSUP;
}

static int
nfc_transmit_absent(struct reader_card *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
                  size_t *rlen)
{
	if (rlen != NULL)
		*rlen = 0;
	return -ENOTSUP;
}

static int
nfc_control_absent(struct reader_card *c, uint32_t code, const uint8_t *in, size_t inlen,
                 uint8_t *outb, size_t *outlen)
{
	if (outlen != NULL)
		*outlen = 0;
	return -ENOTSUP;
}

static void
nfc_disconnect_absent(struct reader_card *c)
{
}

static const char *
nfc_why_absent(void)
{
	return "NFC not compiled in";
}

const struct reader_ops reader_nfc_ops = {
	.name = "nfc",
	.compiled_in = false,
	.open = nfc_open_absent,
	.close = nfc_close_absent,
	.connect = nfc_connect_absent,
	.transmit = nfc_transmit_absent,
	.control = nfc_control_absent,
	.disconnect = nfc_disconnect_absent,
	.why = nfc_why_absent,
};

#endif /* WITH_NFC */
