/* The reader interface: one const vtable per middleware (pcsc, nfc).
 *
 * A driver owns long-lived watch threads that wait on its middleware for
 * as long as the driver is open (pcsc: one thread blocked in
 * SCardGetStatusChange(INFINITE); nfc: one thread per device polling with
 * bounded libnfc calls, one per poll_ms) and report reader and card events
 * through the callback given at open(). They keep threads of their own
 * rather than jobs of a daemon/core worker: a worker job is bounded work
 * that returns and then has its done callback, while a watch never returns
 * by design (it is the driver's event source; the PC/SC wait costs no CPU
 * when nothing happens). As a job it would hold a pool thread for good and
 * keep worker_free from draining. close() ends the watch (SCardCancel; the
 * nfc loop's stop flag) and joins the threads. The callback runs
 * on that watch thread: the daemon copies the event and hands it to its
 * loop with loop_post() (daemon/cards/cardio.c).
 *
 * Card I/O (connect/transmit/control/disconnect) is blocking and is called
 * from a card session (a job of the readers' worker), never from the main
 * loop. abort() is the one card call made from another thread: it bounds a
 * session whose card (or middleware) stopped answering, since neither
 * PC/SC nor libnfc has a per-exchange timeout that a silent card cannot
 * defeat. Readers are named by the middleware's reader name (pcsc) or the
 * device connstring (nfc), never by position. A driver that was not
 * compiled in has compiled_in = false and open() returns -ENOTSUP.
 *
 * Error codes (negative errno values) every driver uses:
 *   -ENODEV     the card was removed (session ends cleanly)
 *   -ECONNRESET the card was reset by someone else (driver reconnected; redo the session)
 *   -ETIMEDOUT  the card or device did not answer in time
 *   -EHOSTDOWN  the middleware is gone (pcscd dead, device unplugged)
 *   -EIO        any other transport failure
 */
#ifndef VITALED_READER_H
#define VITALED_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define READER_NAME_MAX 128
#define READER_ATR_MAX 33

enum reader_event_type {
	READER_EV_ADDED,        /* a reader appeared */
	READER_EV_REMOVED,      /* a reader went away */
	READER_EV_CARD_PRESENT, /* a card (or phone) is in the field; atr set */
	READER_EV_CARD_ABSENT,  /* the card left */
	READER_EV_DRIVER_DOWN,  /* middleware lost (pcscd dead ...); reason set */
	READER_EV_DRIVER_UP,    /* middleware back */
};

struct reader_event {
	enum reader_event_type type;
	const char *driver;              /* "pcsc", "nfc" */
	char reader[READER_NAME_MAX];
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len;
	uint32_t counter;                /* middleware's event counter when known */
	bool contactless;
	char reason[128];
};

typedef void (*reader_event_fn)(const struct reader_event *ev, void *arg);

struct reader_driver;
struct reader_card;

struct reader_params {
	const char *const *devices; /* nfc: connstrings; pcsc: unused */
	size_t ndevices;
	unsigned backoff_max_ms;    /* re-establish/reopen backoff cap */
	unsigned poll_ms;           /* nfc: one bounded poll */
	unsigned apdu_timeout_ms;   /* nfc: one APDU round trip; 0 = driver default (2000) */
	/* qr (drivers/reader_qr.h): devices are serial scanners (CDC-ACM),
	 * keyboards evdev scanners (grabbed); keymap "qwerty" or "azerty";
	 * a scanned code stays the reader's "card" for hold_ms. */
	const char *const *keyboards;
	size_t nkeyboards;
	const char *keymap;
	unsigned hold_ms;
};

struct reader_ops {
	const char *name;
	bool compiled_in;
	/* Start the watch thread; events flow until close(). */
	int (*open)(const struct reader_params *p, reader_event_fn cb, void *arg,
	            struct reader_driver **out);
	/* Stop the watch thread (cancels the blocking wait) and free. Cards still
	 * connected stay usable until their disconnect(). */
	void (*close)(struct reader_driver *d);
	/* Connect to the card in reader (exclusive for the session). atr/atr_len
	 * receive the ATR (pseudo-ATR for contactless). */
	int (*connect)(struct reader_driver *d, const char *reader, struct reader_card **out,
	               uint8_t *atr, size_t *atr_len);
	/* One raw exchange: no T=0 handling here (protocol/apdu does it).
	 * *rlen is the buffer size on entry and the answer length on return. */
	int (*transmit)(struct reader_card *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
	                size_t *rlen);
	/* Reader control (PC/SC SCardControl); -ENOTSUP where there is none. */
	int (*control)(struct reader_card *c, uint32_t code, const uint8_t *in, size_t inlen,
	               uint8_t *out, size_t *outlen);
	/* End the session: release the card and free c. */
	void (*disconnect)(struct reader_card *c);
	/* Make every connect/transmit/control blocked on a card of reader
	 * return soon with -ETIMEDOUT, and every later call on those cards fail
	 * so. Thread-safe: called by the daemon's session deadline (loop
	 * thread) while the session's job is blocked. A card connected after the call is not
	 * affected (call again). Best effort: returns true when every blocked
	 * call is known to be released, false when the driver could only flag
	 * a card (its session thread then stays blocked until the card or the
	 * middleware goes away). May be NULL (no way to abort). */
	bool (*abort)(struct reader_driver *d, const char *reader);
	/* Why open() returns -ENOTSUP (e.g. "NFC not compiled in"): a static
	 * string, or NULL when the driver is usable. May itself be NULL. */
	const char *(*why)(void);
	/* The text of a scanned code (qr driver only; NULL elsewhere): copied
	 * into buf (no terminator), *len the buffer size on entry and the
	 * text's length on return. -E2BIG: the scanner sent a line longer than
	 * the driver keeps; -ENOSPC: buf too small. */
	int (*read_code)(struct reader_card *c, char *buf, size_t *len);
};

/* The pseudo-ATR the qr driver reports for a scanned code: "QR" and the
 * version 1. Its first byte is neither 3B nor 3F, so no card has it. */
#define READER_QR_ATR_LEN 3
#define READER_QR_ATR "\x51\x52\x01"

extern const struct reader_ops reader_pcsc_ops;
extern const struct reader_ops reader_nfc_ops;
extern const struct reader_ops reader_qr_ops;

#endif
