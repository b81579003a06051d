/* The reader-session state machine: the card readers, their cards and the
 * card sessions, as plain C structs with an injected clock.
 *
 * Inputs: driver events (readers_driver_event), a session's progress
 * (readers_session_progress) and end (readers_session_done), and time
 * (readers_tick); each takes the monotonic time in ms as now. Outputs: the
 * reports of struct readers_report (ReaderAdded ... CardError: the events
 * the API publishes, daemon/cards/api_cards.c), sessions handed to
 * readers_ops.start, a driver's abort() when a deadline passes or a card
 * leaves mid-session, and the two hooks below. Nothing here knows the
 * loop, threads, JSON or varlink: the module that runs it (cardio.c) turns
 * driver callbacks, worker jobs and a loop timer into these calls; the unit
 * suite (tests/unit/check_readers.c) drives it directly.
 *
 *   absent -> present -> identifying -> reading [-> code_entry] -> ready
 *                 \            \            \            \
 *                  +------------+------------+------------+--> error (reason)
 *   a card pulled while its session still runs: removed, then absent.
 *   code_entry: a phone asks its holder for the code (CodeEntryRequested).
 *
 * A session has a deadline (session_timeout_ms; once a phone asks for its
 * code, code_timeout_s * 1000 + CARDS_CODE_MARGIN_MS from that moment):
 * when it passes, the driver's abort() releases the blocked exchange, the
 * reader goes to error ("the card did not answer within N ms") and CardError
 * is reported; abort() is repeated every READERS_ABORT_REPEAT_MS until the
 * session ends (a card connected after an abort is not covered by it).
 * CardError's reason is the failure's name when the card reader gives one
 * (the digital card's §12 names), with the text as detail; else the text.
 *
 * One instance per process (the daemon has one set of readers). Every
 * function but readers_session_run runs on one thread (the loop's).
 */
#ifndef VITALED_CARDS_READERS_H
#define VITALED_CARDS_READERS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/cards/cards.h"
#include "drivers/reader.h"

/* Resets (another application reset the card) a session reads through. */
#define READERS_RESET_RETRIES 2
/* A passed deadline aborts again this often until the session ends. */
#define READERS_ABORT_REPEAT_MS 1000u

enum readers_state {
	READERS_ABSENT,
	READERS_PRESENT,
	READERS_IDENTIFYING,
	READERS_READING,
	READERS_CODE_ENTRY, /* a phone waits for its holder's code */
	READERS_READY,
	READERS_REMOVED,
	READERS_ERROR,
};
/* "absent", "present", ... as ListReaders and GetStatus show them. */
const char *readers_state_name(enum readers_state st);

enum readers_drv_state { READERS_DRV_DISABLED, READERS_DRV_STARTING, READERS_DRV_UP, READERS_DRV_DOWN };
/* "disabled", "starting", "up", "down". */
const char *readers_drv_state_name(enum readers_drv_state st);

/* A driver as the machine sees it: the runner opens it and fills ops and
 * h; the machine only calls ops->abort (may be NULL) and keeps state and
 * reason from DRIVER_DOWN/UP. */
struct readers_driver {
	const struct reader_ops *ops;
	struct reader_driver *h;
	enum readers_drv_state state;
	char reason[128];
};

struct readers_session;

/* A reader entry. Read-only outside readers.c; valid until the next input. */
struct readers_reader {
	struct readers_reader *next;
	struct readers_driver *drv;
	char name[READER_NAME_MAX];
	enum readers_state state;
	char reason[CARD_ERROR_MAX];
	bool card;                   /* the driver says a card is in */
	bool contactless;
	uint8_t atr[READER_ATR_MAX];
	size_t atr_len;
	uint64_t card_seq;           /* bumped at each insertion */
	uint64_t session_seq;        /* card_seq of the last session started */
	struct readers_session *sess; /* running session, or NULL */
	uint64_t deadline_at;        /* ms (now's clock) the session must end by; 0: none */
	unsigned deadline_ms;        /* the running session's budget, for messages */
	bool timed_out;              /* this card's session passed its deadline */
	bool gone;                   /* removed by the driver; freed when sess ends */
	struct card_result *result;  /* identify's at insertion, the read's once ready */
	char read_at[40];            /* ISO 8601 time of the read, "" before */
};

/* One card session: made by the machine, run by readers_session_run on
 * another thread, handed back with readers_session_done. Between the two,
 * the running thread owns everything but id and stop. */
struct readers_session {
	uint64_t id;                 /* for readers_session_progress */
	char reader[READER_NAME_MAX];
	const struct reader_ops *ops;
	struct reader_driver *h;
	const struct card_reader_fn *fn;
	uint64_t card_seq;
	atomic_bool stop;            /* set at shutdown: do not connect any more */
	struct reader_card *card;
	struct card_result result;
	unsigned apdus;
	int rc;
	/* progress: ops->progress(ctx, id, code) from the session's thread,
	 * never once stop is set */
	void (*progress)(void *ctx, uint64_t id, bool code);
	void *progress_ctx;
};

enum readers_report_type {
	READERS_REPORT_READER_ADDED,   /* reader, driver */
	READERS_REPORT_READER_REMOVED, /* reader, driver */
	READERS_REPORT_CARD_INSERTED,  /* reader, driver, atr, profile (NULL: none), contactless */
	READERS_REPORT_CARD_READ,      /* reader, driver, result */
	READERS_REPORT_CARD_REMOVED,   /* reader, driver */
	READERS_REPORT_CARD_ERROR,     /* reader, driver, reason, detail and profile (NULL: none) */
	READERS_REPORT_CODE_ENTRY,     /* reader, driver, profile (NULL: none), timeout_s */
	READERS_REPORT_DRIVER_DOWN,    /* driver, reason */
	READERS_REPORT_DRIVER_UP,      /* driver */
};
/* The event's name: "ReaderAdded", "CardError", "CodeEntryRequested" ... */
const char *readers_report_name(enum readers_report_type t);

/* What happened; the pointers are valid during the report only. */
struct readers_report {
	enum readers_report_type type;
	const char *reader;
	const char *driver;
	const char *reason;
	const char *detail;
	const char *profile;
	const char *atr;
	bool contactless;
	unsigned timeout_s;
	const struct card_result *result;
};

struct readers_ops {
	/* Run s on another thread (readers_session_run) and hand it back later
	 * with readers_session_done on the machine's thread; never call back
	 * before returning. 0, or a negative errno: not started, the machine
	 * frees s and reports the reader in error. */
	int (*start)(void *ctx, struct readers_session *s);
	/* From a session's thread: pass (id, code) on to
	 * readers_session_progress on the machine's thread. code: the phone
	 * asks for its code; else the read proper begins. */
	void (*progress)(void *ctx, uint64_t id, bool code);
	/* Something to tell (an event); the machine's thread. */
	void (*report)(void *ctx, const struct readers_report *rep);
	/* ISO 8601 wall-clock time for read_at (events_time_now in the daemon). */
	void (*time_now)(char *buf, size_t len);
	void *ctx;
	/* Whether a card serial is on the opposition list (opposition_has in
	 * the daemon: memory only, never the disk); asked on the machine's
	 * thread for each physical card read, before CardRead. May be NULL. */
	bool (*opposed)(const char *serial);
};

struct readers_config {
	unsigned session_timeout_ms;           /* [pcsc] session_timeout_ms */
	unsigned code_timeout_s;               /* [digital] code_timeout_s */
	const struct card_reader_fn *card_reader; /* identifies and reads the cards */
};

/* Set the machine up, empty (ops and cfg are copied). */
void readers_begin(const struct readers_ops *ops, const struct readers_config *cfg);
/* Shutdown, step one: no new session starts, every running session is
 * told to stop and its reader's driver aborted; from now on sessions that
 * end are only freed, nothing is reported. */
void readers_stopping(void);
/* Shutdown, step two: free every reader. A session still running is left
 * to its thread (logged): a later readers_session_done only frees it. */
void readers_end(void);

/* A driver event (struct reader_event), as the driver's callback got it. */
void readers_driver_event(struct readers_driver *dv, const struct reader_event *ev, uint64_t now);
/* Session id says that its read began (code false) or that the phone asks
 * for its code (code true). Ignored when that session is over or its card
 * gone. */
void readers_session_progress(uint64_t id, bool code, uint64_t now);
/* Session s ended (its thread returned from readers_session_run); the
 * machine takes s back and frees it. */
void readers_session_done(struct readers_session *s, uint64_t now);
/* Fire every deadline that is due at now. */
void readers_tick(uint64_t now);
/* The earliest deadline pending (ms, now's clock), 0 when none. */
uint64_t readers_next_deadline(void);

/* The body of a session, on its own thread, blocking: connect, identify,
 * read (again after a reset, READERS_RESET_RETRIES times), disconnect;
 * sets s->rc and s->result. */
void readers_session_run(struct readers_session *s);

/* The opposition list changed: the cards read and still in their readers
 * are checked again (their result's opposed follows; GetCard and
 * CreateSheet see it). No event. Returns how many changed. */
size_t readers_opposition_changed(void);

/* The readers, in the order they came (gone ones skipped). */
const struct readers_reader *readers_first(void);
const struct readers_reader *readers_next(const struct readers_reader *r);
/* The reader whose card was read last and is still in it (in reader name,
 * or in any reader when NULL), or NULL. */
const struct readers_reader *readers_current(const char *name);

/* A card's comings and goings, for a module that runs sessions of its own
 * on a card this module has read (daemon/pin/cardlogin.c: the card PIN step). */
struct readers_card_info {
	const char *reader;               /* the reader's name */
	uint64_t card_seq;                /* which insertion in that reader */
	const struct reader_ops *ops;     /* the reader's driver (connect, transmit, control, abort) */
	struct reader_driver *driver;     /* its handle: valid until the readers module stops */
	const struct card_result *result; /* the read's result; NULL: the card left */
};
typedef void (*readers_card_hook_fn)(const struct readers_card_info *ci, void *arg);
/* Set the one card hook (NULL: none). It is called on the loop thread
 * right after each CardRead event (result set) and when that card leaves,
 * is replaced, or its reader goes away (result NULL). ci and what it
 * points to are valid during the call only. */
void readers_set_card_hook(readers_card_hook_fn fn, void *arg);

/* The card read last and still in its reader (in reader, or in any reader
 * when NULL), as GetCard shows it: for whoever builds a care sheet from the
 * current card. Its evidence (struct card_evidence: the digital card's
 * credential and device answer bytes) is there too. NULL when none.
 * *reader_out and *read_at (each may be NULL) get the reader's name and the
 * read time (ISO 8601). Loop thread; the pointers are valid until the loop
 * handles its next event (copy what you keep). */
const struct card_result *readers_current_card(const char *reader, const char **reader_out,
                                               const char **read_at);

/* Called on the loop thread right after a card was read (and CardRead was
 * published), with the reader's name and the result (valid during the
 * call only): the kiosk's check-in drafts (daemon/sheets/api_sheets.c). One
 * hook besides the card hook above; NULL removes it. */
typedef void (*readers_read_fn)(const char *reader, const struct card_result *r, void *arg);
void readers_set_read_hook(readers_read_fn fn, void *arg);

/* More card watchers, for modules above this one (daemon/upload/rights.c:
 * the online rights check): called like the card hook, after it, right
 * after each read and when that card leaves (result NULL). At most
 * READERS_WATCH_MAX; 0 or -ENOSPC. */
#define READERS_WATCH_MAX 4
int readers_watch_cards(readers_card_hook_fn fn, void *arg);
void readers_unwatch_cards(readers_card_hook_fn fn, void *arg);

/* Set the rights check of the card read in reader at insertion card_seq
 * (copied into its result: GetCard shows it, a care sheet takes it).
 * -ENOENT when that card is no longer there (it left, or another one
 * came). Loop thread. */
int readers_set_rights(const char *reader, uint64_t card_seq, const struct card_rights *cr);

#endif
