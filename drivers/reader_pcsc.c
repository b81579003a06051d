/* The PC/SC reader driver: pcsc-lite's client library (libpcsclite) behind
 * the reader interface of reader.h.
 *
 * Events. One worker thread owns one SCARDCONTEXT and blocks in
 * SCardGetStatusChange(INFINITE) on every known reader plus the special
 * reader "\\?PnP?\Notification". Each call passes the last dwEventState as
 * dwCurrentState (never SCARD_STATE_UNAWARE after the first call), so it
 * returns only on a real change: idle costs no CPU. pcscd keeps a per-reader
 * event counter (card insertions + removals) in the upper 16 bits of
 * dwEventState; when it moved while the card is present on both sides, the
 * card was pulled and put back between two calls and the worker reports
 * CARD_ABSENT then CARD_PRESENT. After every wake-up the reader list is read
 * again (SCardListReaders) and compared with ours: REMOVED, then ADDED.
 * pcsc-lite 1.9.9 compares the PnP reader count from the start of each call,
 * so a reader that appears between our SCardListReaders and that start is
 * reported at the next wake-up only; pcsc-lite >= 2.0.4 keeps a reader-event
 * counter in the PnP entry's upper word, which we feed back like the others,
 * and the window closes there.
 *
 * Middleware lost. Any other error of the wait or the list (pcscd killed:
 * SCARD_F_COMM_ERROR; stopped: SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED;
 * SCARD_E_READER_UNAVAILABLE on the PnP reader ...) drops the context:
 * CARD_ABSENT for readers with a card, REMOVED for every reader, then
 * DRIVER_DOWN with the reason. The worker re-establishes the context with an
 * exponential backoff (100 ms doubling up to backoff_max_ms, an interruptible
 * wait), then reports DRIVER_UP and ADDED for each reader it finds. While
 * pcscd is down there are no PC/SC readers: the list always says what pcscd
 * would say.
 *
 * Sessions. connect() makes a context of its own (pcsc-lite serialises every
 * call on one context with a mutex, and the worker holds its context's for
 * as long as it waits), SCardConnect(SHARED) + SCardBeginTransaction: the
 * session is exclusive while other applications (OpenSC for a CPS) may still
 * connect. SCARD_W_RESET_CARD: SCardReconnect, transaction again, and the
 * call returns -ECONNRESET (the caller restarts its read). disconnect() ends
 * the transaction and resets the card (SCARD_RESET_CARD): no selected
 * application or verified PIN outlives a session.
 *
 * A card that never answers (measured with vpcd, see docs/pcsc.md): vpcd
 * waits for the card's answer in recv() with no timeout while holding the
 * reader's lock in pcscd, and libpcsclite waits for pcscd in poll(-1). No
 * PC/SC call can end that wait: SCardCancel only cancels
 * SCardGetStatusChange, and SCardDisconnect/SCardReleaseContext from another
 * thread block on the context's mutex that the stuck SCardTransmit holds.
 * What does end it is the client socket: abort() shutdown()s the socket of
 * each context the reader's sessions use (found when the context is made: the one new
 * AF_UNIX stream socket with a named peer), the pending poll() wakes, read()
 * returns 0 and SCardTransmit returns SCARD_F_COMM_ERROR at once. The fd
 * stays open (libpcsclite closes it in SCardReleaseContext), so its number
 * is never reused under anyone's feet. pcscd's thread for that client stays
 * in the driver until the card leaves (vpcd's recv then fails) and then
 * cleans the context up: the reader is unusable meanwhile, which it is
 * anyway with a silent card in it. If the socket could not be identified
 * (another thread of the process made a pcsc-lite context at the same
 * instant), abort() only flags the card and returns false. Cards keep a
 * reference on the driver, so a session that outlives close() (abandoned
 * at shutdown) still finds its lock.
 *
 * The worker and close() use the same socket shutdown as the last resort
 * when SCardCancel does not stop the wait within a second (pcsc-lite ignores
 * a cancel that arrives just before the wait starts).
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <winscard.h>

#include "lib/log.h"
#include "drivers/reader.h"

#define PCSC_MAX_READERS 32
#define PCSC_BACKOFF_MIN_MS 100u
#define PCSC_PNP "\\\\?PnP?\\Notification"
#define PCSC_MAX_SOCKS 64
/* SCARD_ATTR_ATR_STRING of pcsc-lite's <PCSC/reader.h> (class ICC state 9,
 * tag 0303), whose file name our own reader.h shadows */
#define PCSC_ATTR_ATR_STRING 0x00090303ul

struct pcsc_reader {
	char name[READER_NAME_MAX];
	DWORD state;        /* last dwEventState without CHANGED; UNAWARE when new */
	unsigned counter;   /* pcscd's event counter at state */
	bool counter_known; /* state came from pcscd at least once */
	bool present;       /* what we last reported */
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len;
};

struct reader_driver {
	reader_event_fn cb;
	void *arg;
	unsigned backoff_max_ms;

	pthread_t worker;
	bool worker_started;
	pthread_mutex_t lock; /* guards the fields below */
	pthread_cond_t cond;  /* wakes the backoff wait */
	bool stopping;
	bool in_wait;         /* worker is in (or about to enter) SCardGetStatusChange */
	SCARDCONTEXT ctx;
	bool have_ctx;
	int ctx_fd;           /* the context's socket, -1 if unknown */
	struct reader_card *cards; /* connected or connecting, for abort() */
	unsigned refs;        /* 1 until close(), +1 per card */

	/* written by the worker under lock, read by it without (and by
	 * connect() for the ATR, under lock) */
	struct pcsc_reader readers[PCSC_MAX_READERS];
	size_t nreaders;
	/* worker thread only */
	DWORD pnp_state;
	bool down_reported;
	bool up_reported;
	unsigned unknown_streak;
};

struct reader_card {
	struct reader_driver *d;
	SCARDCONTEXT ctx;
	bool have_ctx;
	SCARDHANDLE h;
	bool have_h;
	bool in_tx;
	DWORD proto;
	/* under d->lock: */
	int fd;       /* the context's socket, -1 if unknown or closed */
	bool aborted;
	struct reader_card *next;
	char reader[READER_NAME_MAX];
};

/* Every context this process makes through the driver is made (and every
 * SCardCancel, which opens a short-lived socket, is sent) under this lock,
 * so the socket a new context brings is the one new pcscd socket. */
static pthread_mutex_t pcsc_ctx_lock = PTHREAD_MUTEX_INITIALIZER;

/* ------------------------------------------------------------------ */
/* errors */

static int
pcsc_errno(LONG rv)
{
	switch (rv) {
	case SCARD_S_SUCCESS:
		return 0;
	case SCARD_W_REMOVED_CARD:
	case SCARD_E_NO_SMARTCARD:
	case SCARD_W_UNPOWERED_CARD:
	case SCARD_E_UNKNOWN_READER:
	case SCARD_E_READER_UNAVAILABLE:
	case SCARD_E_NO_READERS_AVAILABLE:
		return -ENODEV;
	case SCARD_W_RESET_CARD:
		return -ECONNRESET;
	case SCARD_E_NO_SERVICE:
	case SCARD_E_SERVICE_STOPPED:
	case SCARD_F_COMM_ERROR:
	case SCARD_E_INVALID_HANDLE:
		return -EHOSTDOWN;
	case SCARD_E_TIMEOUT:
	case SCARD_W_UNRESPONSIVE_CARD:
		return -ETIMEDOUT;
	case SCARD_E_SHARING_VIOLATION:
		return -EBUSY;
	case SCARD_E_INSUFFICIENT_BUFFER:
		return -ENOBUFS;
	case SCARD_E_NO_MEMORY:
		return -ENOMEM;
	case SCARD_E_UNSUPPORTED_FEATURE:
		return -ENOTSUP;
	default:
		return -EIO;
	}
}

/* ------------------------------------------------------------------ */
/* finding a context's socket */

struct sock_id {
	int fd;
	ino_t ino;
};

/* Connected AF_UNIX stream sockets with a named peer (pcscd's socket is
 * bound to a path; our API clients' peers are unnamed). */
static size_t
list_peer_sockets(struct sock_id *out, size_t max)
{
	size_t n = 0;
	DIR *dir = opendir("/proc/self/fd");
	if (!dir)
		return 0;
	int self = dirfd(dir);
	struct dirent *de;
	while ((de = readdir(dir)) != NULL && n < max) {
		char *end;
		long v = strtol(de->d_name, &end, 10);
		if (*end || end == de->d_name || v < 0 || v > 1 << 24 || (int)v == self)
			continue;
		int fd = (int)v;
		struct stat st;
		if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		struct sockaddr_un sa;
		socklen_t sl = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		if (getpeername(fd, (struct sockaddr *)&sa, &sl) < 0 || sa.sun_family != AF_UNIX ||
		    sl <= offsetof(struct sockaddr_un, sun_path) || sa.sun_path[0] == '\0')
			continue;
		int type = 0;
		socklen_t tl = sizeof(type);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM)
			continue;
		out[n++] = (struct sock_id){ fd, st.st_ino };
	}
	closedir(dir);
	return n;
}

/* Make a context and find its socket (*fd = -1 when ambiguous). */
static LONG
ctx_establish(SCARDCONTEXT *ctx, int *fd)
{
	struct sock_id before[PCSC_MAX_SOCKS], after[PCSC_MAX_SOCKS];
	*fd = -1;
	pthread_mutex_lock(&pcsc_ctx_lock);
	size_t nb = list_peer_sockets(before, PCSC_MAX_SOCKS);
	LONG rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, ctx);
	if (rv == SCARD_S_SUCCESS) {
		size_t na = list_peer_sockets(after, PCSC_MAX_SOCKS);
		int found = -1, nfound = 0;
		for (size_t i = 0; i < na; i++) {
			bool old = false;
			for (size_t j = 0; j < nb && !old; j++)
				old = before[j].fd == after[i].fd && before[j].ino == after[i].ino;
			if (!old) {
				found = after[i].fd;
				nfound++;
			}
		}
		if (nfound == 1)
			*fd = found;
		else
			log_debug("pcsc: context socket not identified (%d candidates)", nfound);
	}
	pthread_mutex_unlock(&pcsc_ctx_lock);
	return rv;
}

/* ------------------------------------------------------------------ */
/* the worker */

static bool
pseudo_atr_contactless(const uint8_t *atr, size_t len)
{
	/* PC/SC part 3 §3.1.3.2.3: contactless cards get 3B 8n 80 01 ... */
	return len >= 4 && atr[0] == 0x3B && (atr[1] & 0xF0) == 0x80 && atr[2] == 0x80 &&
	       atr[3] == 0x01;
}

static void
emit(struct reader_driver *d, enum reader_event_type type, const char *reader,
     const uint8_t *atr, size_t atr_len, unsigned counter, const char *reason)
{
	struct reader_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.driver = "pcsc";
	if (reader)
		snprintf(ev.reader, sizeof(ev.reader), "%s", reader);
	if (atr && atr_len <= sizeof(ev.atr)) {
		memcpy(ev.atr, atr, atr_len);
		ev.atr_len = atr_len;
		ev.contactless = pseudo_atr_contactless(atr, atr_len);
	}
	ev.counter = counter;
	if (reason)
		snprintf(ev.reason, sizeof(ev.reason), "%s", reason);
	d->cb(&ev, d->arg);
}

static bool
is_stopping(struct reader_driver *d)
{
	pthread_mutex_lock(&d->lock);
	bool s = d->stopping;
	pthread_mutex_unlock(&d->lock);
	return s;
}

static void
reader_drop(struct reader_driver *d, size_t i)
{
	struct pcsc_reader *r = &d->readers[i];
	if (r->present)
		emit(d, READER_EV_CARD_ABSENT, r->name, NULL, 0, r->counter, NULL);
	emit(d, READER_EV_REMOVED, r->name, NULL, 0, 0, NULL);
	pthread_mutex_lock(&d->lock);
	memmove(&d->readers[i], &d->readers[i + 1], (d->nreaders - i - 1) * sizeof(d->readers[0]));
	d->nreaders--;
	pthread_mutex_unlock(&d->lock);
}

static void
ctx_drop(struct reader_driver *d)
{
	pthread_mutex_lock(&d->lock);
	bool had = d->have_ctx;
	SCARDCONTEXT c = d->ctx;
	d->have_ctx = false;
	d->ctx_fd = -1;
	pthread_mutex_unlock(&d->lock);
	if (had) {
		pthread_mutex_lock(&pcsc_ctx_lock);
		SCardReleaseContext(c);
		pthread_mutex_unlock(&pcsc_ctx_lock);
	}
}

/* The middleware is gone: forget every reader, tell once. */
static void
go_down(struct reader_driver *d, const char *why)
{
	ctx_drop(d);
	while (d->nreaders > 0)
		reader_drop(d, d->nreaders - 1);
	d->pnp_state = SCARD_STATE_UNAWARE;
	if (!d->down_reported) {
		log_warn("pcsc: down: %s", why);
		emit(d, READER_EV_DRIVER_DOWN, NULL, NULL, 0, 0, why);
		d->down_reported = true;
		d->up_reported = false;
	}
}

/* Compare pcscd's reader list with ours: REMOVED first, then ADDED. */
static LONG
sync_readers(struct reader_driver *d)
{
	LPSTR list = NULL;
	DWORD len = SCARD_AUTOALLOCATE;
	LONG rv = SCardListReaders(d->ctx, NULL, (LPSTR)&list, &len);
	if (rv == SCARD_E_NO_READERS_AVAILABLE) {
		list = NULL;
		len = 0;
	} else if (rv != SCARD_S_SUCCESS) {
		return rv;
	}
	/* a multi-string: names separated by NULs, ended by an empty one */
	for (size_t i = d->nreaders; i-- > 0;) {
		bool found = false;
		for (const char *p = list; p && *p && !found; p += strlen(p) + 1)
			found = strcmp(p, d->readers[i].name) == 0;
		if (!found)
			reader_drop(d, i);
	}
	for (const char *p = list; p && *p; p += strlen(p) + 1) {
		bool known = false;
		for (size_t i = 0; i < d->nreaders && !known; i++)
			known = strcmp(p, d->readers[i].name) == 0;
		if (known)
			continue;
		if (strlen(p) >= READER_NAME_MAX) {
			log_warn("pcsc: reader name too long; ignored: %.60s...", p);
			continue;
		}
		if (d->nreaders >= PCSC_MAX_READERS) {
			log_warn("pcsc: more than %d readers; '%s' ignored", PCSC_MAX_READERS, p);
			continue;
		}
		pthread_mutex_lock(&d->lock);
		struct pcsc_reader *r = &d->readers[d->nreaders++];
		memset(r, 0, sizeof(*r));
		snprintf(r->name, sizeof(r->name), "%s", p);
		r->state = SCARD_STATE_UNAWARE;
		pthread_mutex_unlock(&d->lock);
		emit(d, READER_EV_ADDED, r->name, NULL, 0, 0, NULL);
	}
	if (list)
		SCardFreeMemory(d->ctx, list);
	return SCARD_S_SUCCESS;
}

/* Turn one reader's new state into card events. */
static void
reader_update(struct reader_driver *d, struct pcsc_reader *r, const SCARD_READERSTATE *s)
{
	DWORD ev = s->dwEventState;
	unsigned counter = (unsigned)((ev >> 16) & 0xFFFFu);
	if (ev & (SCARD_STATE_UNKNOWN | SCARD_STATE_IGNORE)) {
		/* the reader went away: the list sync that follows drops it */
		pthread_mutex_lock(&d->lock);
		r->state = ev & ~(DWORD)SCARD_STATE_CHANGED;
		pthread_mutex_unlock(&d->lock);
		return;
	}
	bool now = (ev & SCARD_STATE_PRESENT) && !(ev & SCARD_STATE_UNAVAILABLE);
	unsigned moved = r->counter_known ? ((counter - r->counter) & 0xFFFFu) : 0;
	size_t atr_len = s->cbAtr <= READER_ATR_MAX ? (size_t)s->cbAtr : 0;
	const char *mute = (ev & SCARD_STATE_MUTE) ? "card mute (no ATR)" : NULL;

	if (r->present && !now) {
		emit(d, READER_EV_CARD_ABSENT, r->name, NULL, 0, counter, NULL);
	} else if (r->present && now && moved != 0) {
		/* pulled and put back between two waits */
		log_debug("pcsc: %s: card replaced (counter %u -> %u)", r->name, r->counter, counter);
		emit(d, READER_EV_CARD_ABSENT, r->name, NULL, 0, counter, NULL);
		emit(d, READER_EV_CARD_PRESENT, r->name, s->rgbAtr, atr_len, counter, mute);
	} else if (!r->present && now) {
		emit(d, READER_EV_CARD_PRESENT, r->name, s->rgbAtr, atr_len, counter, mute);
	} else if (!r->present && !now && moved >= 2) {
		log_debug("pcsc: %s: a card came and went between two waits", r->name);
	}
	pthread_mutex_lock(&d->lock);
	r->present = now;
	r->counter = counter;
	r->counter_known = true;
	r->state = ev & ~(DWORD)SCARD_STATE_CHANGED;
	memcpy(r->atr, s->rgbAtr, atr_len);
	r->atr_len = now ? atr_len : 0;
	pthread_mutex_unlock(&d->lock);
}

static void
backoff_wait(struct reader_driver *d, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000u;
	ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&d->lock);
	while (!d->stopping) {
		if (pthread_cond_timedwait(&d->cond, &d->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&d->lock);
}

static void
describe(LONG rv, const char *what, char *buf, size_t len)
{
	snprintf(buf, len, "%s: %s (0x%08lX)", what, pcsc_stringify_error(rv),
	         (unsigned long)(uint32_t)rv);
}

static void *
worker_main(void *arg)
{
	struct reader_driver *d = arg;
	unsigned backoff = PCSC_BACKOFF_MIN_MS;
	SCARD_READERSTATE st[PCSC_MAX_READERS + 1];
	char why[160];

	while (!is_stopping(d)) {
		if (!d->have_ctx) {
			SCARDCONTEXT c;
			int fd;
			LONG rv = ctx_establish(&c, &fd);
			if (rv != SCARD_S_SUCCESS) {
				describe(rv, "cannot reach pcscd", why, sizeof(why));
				go_down(d, why);
				backoff_wait(d, backoff);
				backoff = backoff * 2 > d->backoff_max_ms ? d->backoff_max_ms : backoff * 2;
				continue;
			}
			pthread_mutex_lock(&d->lock);
			d->ctx = c;
			d->ctx_fd = fd;
			d->have_ctx = true;
			pthread_mutex_unlock(&d->lock);
			backoff = PCSC_BACKOFF_MIN_MS;
			if (!d->up_reported) {
				log_notice("pcsc: connected to pcscd");
				emit(d, READER_EV_DRIVER_UP, NULL, NULL, 0, 0, NULL);
				d->up_reported = true;
				d->down_reported = false;
			}
		}
		LONG rv = sync_readers(d);
		if (rv != SCARD_S_SUCCESS) {
			describe(rv, "reader list", why, sizeof(why));
			go_down(d, why);
			continue;
		}
		size_t n = d->nreaders;
		memset(st, 0, sizeof(st));
		for (size_t i = 0; i < n; i++) {
			st[i].szReader = d->readers[i].name;
			st[i].dwCurrentState = d->readers[i].state;
		}
		st[n].szReader = PCSC_PNP;
		st[n].dwCurrentState = d->pnp_state;

		pthread_mutex_lock(&d->lock);
		if (d->stopping) {
			pthread_mutex_unlock(&d->lock);
			break;
		}
		d->in_wait = true;
		pthread_mutex_unlock(&d->lock);
		rv = SCardGetStatusChange(d->ctx, INFINITE, st, (DWORD)(n + 1));
		pthread_mutex_lock(&d->lock);
		d->in_wait = false;
		pthread_mutex_unlock(&d->lock);

		switch (rv) {
		case SCARD_S_SUCCESS:
			d->unknown_streak = 0;
			for (size_t i = 0; i < n; i++)
				reader_update(d, &d->readers[i], &st[i]);
			d->pnp_state = st[n].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
			break;
		case SCARD_E_TIMEOUT:
		case SCARD_E_CANCELLED:
			break;
		case SCARD_E_UNKNOWN_READER:
			/* a reader left before the wait began: the next sync drops
			 * it; should pcscd keep listing it, do not spin */
			if (++d->unknown_streak > 2)
				backoff_wait(d, PCSC_BACKOFF_MIN_MS);
			break;
		default:
			if (is_stopping(d))
				break;
			describe(rv, "waiting for events", why, sizeof(why));
			go_down(d, why);
			break;
		}
	}
	ctx_drop(d);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* reader_ops */

static void driver_unref(struct reader_driver *d);

static int
pcsc_open(const struct reader_params *p, reader_event_fn cb, void *arg,
          struct reader_driver **out)
{
	*out = NULL;
	struct reader_driver *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->cb = cb;
	d->arg = arg;
	d->backoff_max_ms = p && p->backoff_max_ms >= PCSC_BACKOFF_MIN_MS ? p->backoff_max_ms : 5000u;
	d->ctx_fd = -1;
	d->refs = 1;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&d->lock, NULL);
	int r = pthread_create(&d->worker, NULL, worker_main, d);
	if (r != 0) {
		pthread_cond_destroy(&d->cond);
		pthread_mutex_destroy(&d->lock);
		free(d);
		return -r;
	}
	d->worker_started = true;
	*out = d;
	return 0;
}

static void
pcsc_close(struct reader_driver *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (d->worker_started) {
		/* SCardCancel is lost when it lands just before the wait starts
		 * (pcsc-lite only honours it inside the wait): repeat it, and shut
		 * the context's socket down if that is not enough */
		bool joined = false;
		for (int i = 0; i < 20 && !joined; i++) {
			pthread_mutex_lock(&d->lock);
			bool waiting = d->in_wait && d->have_ctx;
			SCARDCONTEXT c = d->ctx;
			pthread_mutex_unlock(&d->lock);
			if (waiting) {
				pthread_mutex_lock(&pcsc_ctx_lock);
				SCardCancel(c);
				pthread_mutex_unlock(&pcsc_ctx_lock);
			}
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			joined = pthread_timedjoin_np(d->worker, NULL, &ts) == 0;
		}
		if (!joined) {
			pthread_mutex_lock(&d->lock);
			if (d->ctx_fd >= 0)
				shutdown(d->ctx_fd, SHUT_RDWR);
			pthread_mutex_unlock(&d->lock);
			log_warn("pcsc: the event thread ignored SCardCancel; closed its socket");
			pthread_join(d->worker, NULL);
		}
	}
	driver_unref(d);
}

static void
driver_unref(struct reader_driver *d)
{
	pthread_mutex_lock(&d->lock);
	bool last = --d->refs == 0;
	pthread_mutex_unlock(&d->lock);
	if (!last)
		return;
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static bool
card_aborted(struct reader_card *c)
{
	pthread_mutex_lock(&c->d->lock);
	bool a = c->aborted;
	pthread_mutex_unlock(&c->d->lock);
	return a;
}

static int
card_err(struct reader_card *c, LONG rv)
{
	return card_aborted(c) ? -ETIMEDOUT : pcsc_errno(rv);
}

static int
card_begin(struct reader_card *c)
{
	LONG rv = SCardBeginTransaction(c->h);
	if (rv == SCARD_W_RESET_CARD) {
		rv = SCardReconnect(c->h, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
		                    SCARD_LEAVE_CARD, &c->proto);
		if (rv == SCARD_S_SUCCESS)
			rv = SCardBeginTransaction(c->h);
	}
	c->in_tx = rv == SCARD_S_SUCCESS;
	return rv == SCARD_S_SUCCESS ? 0 : card_err(c, rv);
}

static void
card_free(struct reader_card *c)
{
	struct reader_driver *d = c->d;
	if (c->have_h) {
		if (c->in_tx)
			SCardEndTransaction(c->h, SCARD_LEAVE_CARD);
		SCardDisconnect(c->h, SCARD_RESET_CARD);
	}
	/* out of abort()'s reach before the release closes the socket */
	pthread_mutex_lock(&d->lock);
	for (struct reader_card **pp = &d->cards; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	c->fd = -1;
	pthread_mutex_unlock(&d->lock);
	if (c->have_ctx) {
		pthread_mutex_lock(&pcsc_ctx_lock);
		SCardReleaseContext(c->ctx);
		pthread_mutex_unlock(&pcsc_ctx_lock);
	}
	free(c);
	driver_unref(d);
}

static int
pcsc_connect(struct reader_driver *d, const char *reader, struct reader_card **out, uint8_t *atr,
             size_t *atr_len)
{
	int ret;
	size_t atr_cap = *atr_len;
	*out = NULL;
	*atr_len = 0;
	struct reader_card *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->d = d;
	c->fd = -1;
	snprintf(c->reader, sizeof(c->reader), "%s", reader);
	pthread_mutex_lock(&d->lock);
	d->refs++;
	c->next = d->cards;
	d->cards = c;
	pthread_mutex_unlock(&d->lock);

	int fd;
	LONG rv = ctx_establish(&c->ctx, &fd);
	if (rv != SCARD_S_SUCCESS) {
		ret = -EHOSTDOWN;
		goto fail;
	}
	pthread_mutex_lock(&d->lock);
	c->have_ctx = true;
	c->fd = fd;
	if (c->aborted && fd >= 0)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&d->lock);

	rv = SCardConnect(c->ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
	                  &c->h, &c->proto);
	if (rv != SCARD_S_SUCCESS) {
		ret = card_err(c, rv);
		goto fail;
	}
	c->have_h = true;
	if ((ret = card_begin(c)) < 0)
		goto fail;
	/* The ATR the worker saw, not SCardStatus's: pcsc-lite 1.9.9 keeps one
	 * reader-state table for all the contexts of a process, and
	 * SCardStatus rewrites it with no lock while the worker's
	 * SCardGetStatusChange reads it (fixed in pcsc-lite 2.0): a stale
	 * write there could hide a removal from the worker. vpcd answers no
	 * SCARD_ATTR_ATR_STRING, so that is no way round either. A card
	 * swapped since the worker's event is caught by the worker's next
	 * event (ABSENT/PRESENT), which ends this session anyway. */
	BYTE abuf[MAX_ATR_SIZE];
	DWORD alen = 0;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nreaders; i++) {
		if (strcmp(d->readers[i].name, reader) == 0 && d->readers[i].present) {
			alen = (DWORD)d->readers[i].atr_len;
			memcpy(abuf, d->readers[i].atr, d->readers[i].atr_len);
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (alen == 0) {
		alen = sizeof(abuf);
		rv = SCardGetAttrib(c->h, PCSC_ATTR_ATR_STRING, abuf, &alen);
		if (rv != SCARD_S_SUCCESS || alen == 0) {
			DWORD state = 0, proto = 0, rlen = 0;
			alen = sizeof(abuf);
			rv = SCardStatus(c->h, NULL, &rlen, &state, &proto, abuf, &alen);
		}
		if (rv != SCARD_S_SUCCESS) {
			ret = card_err(c, rv);
			goto fail;
		}
	}
	if (alen > atr_cap || alen > READER_ATR_MAX) {
		ret = -ENOBUFS;
		goto fail;
	}
	memcpy(atr, abuf, alen);
	*atr_len = alen;
	*out = c;
	return 0;
fail:
	card_free(c);
	return ret;
}

static int
pcsc_transmit(struct reader_card *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
              size_t *rlen)
{
	size_t cap = *rlen;
	*rlen = 0;
	if (card_aborted(c))
		return -ETIMEDOUT;
	const SCARD_IO_REQUEST *pci = c->proto == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0;
	DWORD rl = (DWORD)cap;
	LONG rv = SCardTransmit(c->h, pci, capdu, (DWORD)clen, NULL, rapdu, &rl);
	if (rv == SCARD_W_RESET_CARD) {
		/* reset by someone else: take the card again, the caller redoes
		 * its read from the start */
		rv = SCardReconnect(c->h, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
		                    SCARD_LEAVE_CARD, &c->proto);
		if (rv != SCARD_S_SUCCESS)
			return card_err(c, rv);
		int r = card_begin(c);
		return r < 0 ? r : -ECONNRESET;
	}
	if (rv != SCARD_S_SUCCESS)
		return card_err(c, rv);
	/* a response APDU holds at least SW1 SW2 (ISO 7816-4 §5.1); vpcd
	 * answers "success, 0 bytes" when the card vanished mid-exchange */
	if (rl > cap || rl < 2)
		return card_aborted(c) ? -ETIMEDOUT : -EIO;
	*rlen = (size_t)rl;
	return 0;
}

static int
pcsc_control(struct reader_card *c, uint32_t code, const uint8_t *in, size_t inlen, uint8_t *out,
             size_t *outlen)
{
	size_t cap = *outlen;
	*outlen = 0;
	if (card_aborted(c))
		return -ETIMEDOUT;
	DWORD got = 0;
	LONG rv = SCardControl(c->h, (DWORD)code, in, (DWORD)inlen, out, (DWORD)cap, &got);
	if (rv != SCARD_S_SUCCESS)
		return card_err(c, rv);
	*outlen = got <= cap ? (size_t)got : cap;
	return 0;
}

static void
pcsc_disconnect(struct reader_card *c)
{
	if (c)
		card_free(c);
}

static bool
pcsc_abort(struct reader_driver *d, const char *reader)
{
	bool released = true;
	pthread_mutex_lock(&d->lock);
	for (struct reader_card *c = d->cards; c; c = c->next) {
		if (strcmp(c->reader, reader) != 0)
			continue;
		c->aborted = true;
		/* a card still making its context is shut down as soon as it
		 * has one (pcsc_connect checks the flag) */
		if (c->have_ctx && (c->fd < 0 || shutdown(c->fd, SHUT_RDWR) < 0))
			released = false;
	}
	pthread_mutex_unlock(&d->lock);
	return released;
}

const struct reader_ops reader_pcsc_ops = {
	.name = "pcsc",
	.compiled_in = true,
	.open = pcsc_open,
	.close = pcsc_close,
	.connect = pcsc_connect,
	.transmit = pcsc_transmit,
	.control = pcsc_control,
	.disconnect = pcsc_disconnect,
	.abort = pcsc_abort,
};
