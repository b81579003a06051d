/* The durable queue of care sheets: one SQLite database in the state
 * directory, the only place vitaled uses SQLite (DESIGN.md "The queue").
 *
 * What it promises: a sheet is queued for the caller only once COMMIT has
 * returned (WAL, synchronous=FULL: the WAL is fsynced before COMMIT returns).
 * From then on the sheet is never lost and its payload never altered: it
 * can only change state along draft → queued → sending → accepted/rejected →
 * paid/refused (sending may fall back to queued), and only finished sheets
 * older than the retention are ever deleted. Schema triggers refuse any
 * other change as a second line of defence.
 *
 * Payloads are opaque bytes to the queue (the caller stores the signed
 * COSE_Sign1 of a sheet, or a draft's unsigned content). They are encrypted
 * at rest with AES-256-GCM under a 32-byte key kept in <dir>/queue.key
 * (mode 0600), with a fresh random 12-byte nonce per write and the sheet id
 * as associated data. The clear columns hold only what scheduling needs:
 * id, state, practitioner id, care date, daily sequence number, due date,
 * times, size, attempts, batch id. docs/queue.md has the schema.
 *
 * Errors: every function returns 0 or a negative errno; queue_error_name()
 * gives the name the API shows, queue_last_error() the detail of the last
 * failure on a handle:
 *   -ENOSPC       QueueFull: a configured limit is reached, or the disk is
 *                 full (SQLITE_FULL); nothing was written; retry later.
 *   -EIO          IoError: the disk failed a read, write or fsync; nothing
 *                 new was acknowledged; the handle stays usable.
 *   -ENOENT       NotFound.   -EEXIST  Exists (id already in the queue).
 *   -EPERM        BadTransition: the state change is not allowed.
 *   -EINVAL       InvalidArgument.   -E2BIG  payload over QUEUE_PAYLOAD_MAX.
 *   -ENOKEY       KeyMissing: queue.key is gone while sheets are stored.
 *   -EKEYREJECTED KeyMismatch: queue.key is not the key of this database.
 *   -EBADMSG      DecryptFailed: a stored payload does not authenticate.
 *   -EUCLEAN      QueueCorrupt: quick_check or SQLite found corruption.
 *   -EMEDIUMTYPE  NotAQueue: the file is a database, but not ours.
 *   -EPROTO       SchemaTooNew: written by a newer vitaled.
 *   -EBUSY        QueueBusy: another process holds the queue.
 *   -ESTALE       QueueLost: queue.db is missing, empty or older than the
 *                 high-water mark kept beside it (queue.hwm): it was lost or
 *                 rolled back; opened only with queue_opts.accept_new.
 *   -EROFS        ReadOnly: the queue was opened read-only (the disk was
 *                 full at start) and could not be reopened for writing yet.
 *
 * Thread context: a handle is used from ONE thread at a time. The daemon
 * opens it on its loop thread (so that a refusal stops start-up) and then
 * uses it only from the queue's one-thread worker (daemon/sheets/sheetq.h): every call is
 * synchronous, a write blocks for one fsync and for the seal callback,
 * which signs inside the write transaction (a card may take 0.5 s), and
 * none of that may stop the event loop. queue_put_batch lets the caller
 * acknowledge every create that arrived during one commit with a single
 * COMMIT. Different handles (tests) may live on different threads.
 */
#ifndef VITALED_QUEUE_H
#define VITALED_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUE_SCHEMA_VERSION 5
#define QUEUE_REQUEST_ID_MAX 64   /* a client's request id: 1..64 printable ASCII (0x21..0x7e) */
#define QUEUE_ID_MAX 36           /* a UUID in text form */
#define QUEUE_PRACT_MAX 32
#define QUEUE_BATCH_MAX 64
#define QUEUE_REASON_MAX 512
#define QUEUE_PAYLOAD_MAX (1u << 20)
#define QUEUE_KEY_LEN 32
#define QUEUE_CERT_DIGEST_LEN 64  /* SHA-256 of the signer's DER, lower-case hex */
#define QUEUE_CODE_MAX 32         /* the insurer's code ("signature", "rights") */
#define QUEUE_CURSOR_MAX 256

enum queue_state {
	QUEUE_DRAFT = 0,  /* kiosk check-in, unsigned, no sequence number yet */
	QUEUE_QUEUED,     /* signed, acknowledged, waiting to be sent */
	QUEUE_SENDING,    /* in a batch on its way to the insurer */
	QUEUE_ACCEPTED,   /* positive ARL */
	QUEUE_REJECTED,   /* rejected by the insurer, with its reason */
	QUEUE_PAID,       /* payment return */
	QUEUE_REFUSED,    /* refusal return */
	QUEUE_NSTATES
};

#define QUEUE_STATE_BIT(s) (1u << (s))

struct queue;

struct queue_opts {
	const char *dir;        /* state dir: queue.db, queue.key, queue.lock; made 0700 if missing */
	long long max_sheets;   /* rows of any state; 0 = no limit */
	long long max_bytes;    /* sum of stored (encrypted) payload sizes; 0 = no limit */
	int busy_timeout_ms;    /* 0 = 5000 */
	bool skip_quick_check;  /* tests and tools only: skip PRAGMA quick_check at open */
	/* The daemon: do not run PRAGMA quick_check in queue_open (it reads the
	 * whole file: 0.1 s at 100,000 sheets) but leave it to queue_check(),
	 * which must then be the handle's first call after the open. Only when
	 * the schema is current (a migration is never written unchecked). */
	bool defer_quick_check;
	const char *vfs;        /* SQLite VFS name; NULL = default (tests register a fault VFS) */
	/* Wall clock in ms since the epoch; NULL = CLOCK_REALTIME (tests set a fake one). */
	int64_t (*clock_ms)(void *arg);
	void *clock_arg;
	/* Monotonic ms (counts suspend) for the queue's own clock (retention);
	 * NULL = CLOCK_BOOTTIME (tests set a fake one). */
	int64_t (*mono_ms)(void *arg);
	/* Open even when queue.db is missing, empty or rolled back below the
	 * high-water mark (vitaled --accept-new-queue): the loss is described
	 * by queue_open_notice() and numbers continue above the mark. */
	bool accept_new;
	/* When the database cannot be written at open (disk full), open it
	 * read-only instead of failing: reads work, writes fail with -ENOSPC
	 * until queue_try_writable() succeeds. */
	bool allow_readonly;
};

/* What the queue knows about a sheet, in clear. */
struct queue_meta {
	char id[QUEUE_ID_MAX + 1];
	enum queue_state state;
	char practitioner[QUEUE_PRACT_MAX + 1];
	char care_date[11];     /* YYYY-MM-DD */
	uint32_t seq;           /* daily sequence number; 0 for a draft */
	char due_date[11];      /* YYYY-MM-DD; "" for a draft */
	int64_t created_ms, updated_ms;
	int64_t closed_ms;      /* when it reached accepted/rejected/paid/refused; 0 if not */
	uint32_t size;          /* plaintext payload bytes */
	uint32_t attempts;      /* times taken for sending */
	char batch_id[QUEUE_BATCH_MAX + 1]; /* "" unless sending */
	char cert[QUEUE_CERT_DIGEST_LEN + 1]; /* v4: digest of the signing certificate; "" unknown */
	char code[QUEUE_CODE_MAX + 1];      /* v4: the insurer's code (rejected, refused); "" none */
	char request_id[QUEUE_REQUEST_ID_MAX + 1];          /* v5: the creating request's id; "" none */
	char complete_request_id[QUEUE_REQUEST_ID_MAX + 1]; /* v5: the completing request's id */
	int64_t cursor;         /* opaque position for paging with queue_filter.after */
};

struct queue_put;
/* Called inside the write transaction once the sequence number is known,
 * to build (e.g. encode and sign) the payload. On success set *payload to a
 * malloc'd buffer (the queue wipes and frees it) and return 0; a negative
 * errno fails this item only. */
typedef int (*queue_seal_fn)(void *arg, const struct queue_put *item, uint32_t seq,
                             uint8_t **payload, size_t *len);

/* One sheet to store. */
struct queue_put {
	/* in */
	const char *id;            /* [A-Za-z0-9._-]{1,36}, unique */
	const char *practitioner;  /* 1..32 printable; with queue_complete_draft NULL keeps the draft's */
	const char *care_date;     /* YYYY-MM-DD; with queue_complete_draft NULL keeps the draft's */
	const char *due_date;      /* YYYY-MM-DD; ignored for a draft */
	bool draft;                /* store as a draft: no sequence number, no due date */
	const uint8_t *payload;    /* used when seal is NULL; not owned */
	size_t payload_len;
	queue_seal_fn seal;
	void *seal_arg;
	/* digest of the certificate that signs it (queue_cert_put); NULL: the
	 * queue's current one (queue_set_current_cert), if any */
	const char *cert;
	/* the client's request id (QUEUE_REQUEST_ID_MAX), or NULL. A put whose
	 * request id is stored already (request_id or complete_request_id of
	 * any sheet) stores nothing and gives that sheet: replayed is set, meta
	 * filled, seq is its number, result 0. queue_complete_draft: stored as
	 * the sheet's complete_request_id; the same id again on the completed
	 * sheet is a replay too. */
	const char *request_id;
	/* out */
	uint32_t seq;              /* assigned daily sequence number (0 for a draft) */
	int result;                /* 0 or a negative errno for this item */
	bool replayed;             /* the request id was known: nothing stored, see replay */
	struct queue_meta replay;  /* the sheet made by the first request with this id */
};

/* Open (creating if needed) the queue in opts->dir: lock, quick_check,
 * WAL, migrations, key, sending → queued, counters. On error returns a
 * negative errno (see above) with a sentence in err for the log; *out is
 * NULL. On success *out is owned by the caller (queue_close). */
int queue_open(const struct queue_opts *opts, struct queue **out, char *err, size_t errlen);
/* The PRAGMA quick_check that queue_open deferred (opts.defer_quick_check);
 * nothing when it ran at open or was skipped. 0: sound. Any failure (-EUCLEAN
 * damaged, or the check could not run) leaves the handle refusing every
 * write with -EUCLEAN and queue_last_error's sentence, reads still work.
 * Queue thread; the daemon runs it as the queue worker's first job. */
int queue_check(struct queue *q);
/* NULL, or why writes are refused since queue_check failed. */
const char *queue_damage(const struct queue *q);
/* Close and wipe the key (writes the high-water mark if it is behind).
 * NULL is fine. */
void queue_close(struct queue *q);
/* What queue_open accepted (opts.accept_new: the lost sheets, the mark's
 * figures) or noticed, as a sentence for the log at notice level; "" when
 * nothing. */
const char *queue_open_notice(const struct queue *q);
/* True while the queue is open read-only (disk full at open). */
bool queue_read_only(const struct queue *q);
/* Read-only: try to reopen for writing (and finish what open could not).
 * 0 when writable now, or a negative errno (-ENOSPC: still full). */
int queue_try_writable(struct queue *q);
/* Write the high-water mark if commits since its last write are not in it
 * yet (queue.hwm is written at most every QUEUE_HWM_LAZY_MS after a
 * commit, and at once whenever a new block of numbers is reserved). */
int queue_hwm_flush(struct queue *q);
/* Commits not in queue.hwm yet (a flush would write). Queue thread. */
bool queue_hwm_pending(const struct queue *q);
#define QUEUE_HWM_LAZY_MS 250
#define QUEUE_HWM_BLOCK 256       /* numbers reserved per practitioner and day at a time */

/* The sheet that a request id made (its request_id or complete_request_id). */
int queue_find_request(struct queue *q, const char *request_id, struct queue_meta *meta);
/* True for a well-formed request id. */
bool queue_request_id_valid(const char *s);
/* Store n sheets in ONE transaction (group commit), each with its own
 * sequence number when not a draft. Returns 0 when the transaction
 * committed: each items[i].result then says whether that item is stored
 * (per-item failures: -EEXIST, -EINVAL, -E2BIG, -ENOSPC for a limit, a seal
 * error). Returns a negative errno when nothing was committed (disk full,
 * I/O error, ...); every result is then that error. Only items with
 * result 0 after a 0 return may be acknowledged. */
int queue_put_batch(struct queue *q, struct queue_put *items, size_t n);
/* One sheet; returns item->result. */
int queue_put(struct queue *q, struct queue_put *item);

/* Turn the draft item->id into a queued sheet in one transaction: assign the
 * sequence number, store the (sealed) payload, set the due date. -ENOENT,
 * -EPERM if it is not a draft. */
int queue_complete_draft(struct queue *q, struct queue_put *item);
/* Remove a draft (never anything else: -EPERM). */
int queue_delete_draft(struct queue *q, const char *id);

/* Meta data and (if payload != NULL) the decrypted payload of one sheet;
 * *payload is malloc'd, release it with queue_free_payload. -ENOENT, -EBADMSG. */
int queue_get(struct queue *q, const char *id, struct queue_meta *meta, uint8_t **payload,
              size_t *len);
void queue_free_payload(uint8_t *payload, size_t len);
/* The insurer's reason stored with the last transition ("" if none). */
int queue_get_reason(struct queue *q, const char *id, char *buf, size_t buflen);

/* True when the state machine allows from → to. */
bool queue_transition_allowed(enum queue_state from, enum queue_state to);
/* Move one sheet to state to (reason: the insurer's, for rejected/refused,
 * may be NULL, at most QUEUE_REASON_MAX bytes, stored encrypted).
 * -EPERM for a forbidden move; a draft becomes queued only through
 * queue_complete_draft. */
int queue_transition(struct queue *q, const char *id, enum queue_state to, const char *reason);

struct queue_update {
	const char *id;
	enum queue_state to;
	const char *reason;  /* may be NULL */
	const char *code;    /* the insurer's code, [A-Za-z0-9._-]{1,32}, clear; may be NULL */
	int result;          /* out */
};
/* Apply n transitions in one transaction (an insurer's answer to a batch).
 * Same return convention as queue_put_batch. */
int queue_update_batch(struct queue *q, struct queue_update *u, size_t n);

/* Take up to max queued sheets, nearest due date first, and mark them
 * sending under batch_id (attempts + 1) in one transaction. Fills out[0..*n). */
int queue_take(struct queue *q, const char *batch_id, size_t max, struct queue_meta *out,
               size_t *n);

struct queue_filter {
	unsigned states;          /* QUEUE_STATE_BIT mask; 0 = every state */
	const char *date_from;    /* care date >= (YYYY-MM-DD) or NULL */
	const char *date_to;      /* care date <= or NULL */
	const char *due_before;   /* due date < (drafts have none) or NULL */
	const char *practitioner; /* or NULL */
	int64_t after;            /* cursor of the last row of the previous page, or 0 */
	const char *request_id;   /* v5: made or completed by this request, or NULL */
};
/* List up to max sheets (insertion order) matching f (NULL = all). */
int queue_list(struct queue *q, const struct queue_filter *f, struct queue_meta *out,
               size_t max, size_t *n);

struct queue_stats {
	uint64_t count[QUEUE_NSTATES];
	uint64_t total;
	uint64_t bytes;            /* stored payload bytes */
	int64_t oldest_queued_ms;  /* creation time of the oldest queued or sending sheet; 0 none */
	char next_due[11];         /* nearest due date of a queued or sending sheet; "" none */
	long long max_sheets, max_bytes;
};
int queue_stats(struct queue *q, struct queue_stats *st);

struct queue_retention {
	int finished_days;  /* accepted/rejected/paid/refused closed longer ago are deleted (>= 1) */
	int draft_days;     /* drafts created longer ago are deleted; 0 = keep drafts */
};
/* Delete at most max expired sheets in one transaction; *purged says how
 * many (call again while it equals max). Queued and sending sheets are
 * never deleted. */
int queue_purge(struct queue *q, const struct queue_retention *r, size_t max, size_t *purged);

/* The detail of the last failure on q (never a payload or a key). */
const char *queue_last_error(const struct queue *q);
/* "QueueFull", "IoError", ... for an error returned by this module. */
const char *queue_error_name(int err);
const char *queue_state_name(enum queue_state s);
/* Returns the state, or -EINVAL. */
int queue_state_parse(const char *name);

/* ------------------------------------------------------------------ */
/* Uploads (schema v4; docs/queue.md "Uploads"). Same thread rule. */

/* Store a signing certificate chain (DER, the signer's first) unless it is
 * known; digest gets the lower-case hex SHA-256 of certs[0]. */
int queue_cert_put(struct queue *q, const uint8_t *const *certs, const size_t *lens, size_t n,
                   char digest[QUEUE_CERT_DIGEST_LEN + 1]);
/* The chain of digest as the CBOR array of byte strings a batch's x5chain
 * carries; *cbor malloc'd (free it). -ENOENT when unknown. */
int queue_cert_get(struct queue *q, const char *digest, uint8_t **cbor, size_t *len);
/* The certificate recorded with every later queue_put that names none
 * (the signer's current one; NULL or "" forgets it). -ENOENT when not
 * stored with queue_cert_put first. */
int queue_set_current_cert(struct queue *q, const char *digest);
/* Record the certificate of a queued sheet that has none (set once: -EPERM
 * when it has another). */
int queue_set_cert(struct queue *q, const char *id, const char *digest);

struct queue_take_opts {
	const char *batch_id;  /* the new batch's id */
	size_t max_sheets;     /* <= what out holds */
	uint64_t max_bytes;    /* the sum of the sheets' sizes stays below (0: no limit) */
};
/* Form a batch: the certificate of the most urgent queued sheet that has
 * one (nearest due date, then oldest), and up to max_sheets queued sheets
 * of that certificate in the same order whose sizes fit max_bytes (at least
 * one), marked sending under batch_id (attempts + 1) in one transaction.
 * *n is 0 when no queued sheet has a certificate. */
int queue_take_batch(struct queue *q, const struct queue_take_opts *o, struct queue_meta *out,
                     size_t *n, char cert[QUEUE_CERT_DIGEST_LEN + 1]);
/* Move n sending sheets to a new batch (splitting a batch the insurer
 * refused as a whole), attempts + 1, in one transaction; -EPERM if one of
 * them is not sending. */
int queue_rebatch(struct queue *q, const char *batch_id, const char *const *ids, size_t n);

struct queue_return {
	const char *sheet_id;
	enum queue_state to;   /* QUEUE_PAID or QUEUE_REFUSED */
	const char *code;      /* refused: the insurer's code; may be NULL */
	const char *reason;    /* refused: may be NULL */
};
/* Apply the insurer's returns and store cursor (QUEUE_CURSOR_MAX) in ONE
 * transaction. A return for an unknown sheet, or for a sheet already paid
 * or refused (applied twice), changes nothing and is counted in *skipped. */
int queue_apply_returns(struct queue *q, const struct queue_return *r, size_t n,
                        const char *cursor, size_t *applied, size_t *skipped);
/* A stored cursor: name "returns" or "opposition"; "" when none. */
int queue_cursor_get(struct queue *q, const char *name, char *buf, size_t buflen);

/* Apply an opposition increment and its cursor in ONE transaction. */
int queue_apply_opposition(struct queue *q, const char (*added)[33], size_t nadded,
                           const char (*removed)[33], size_t nremoved, const char *cursor);
/* 1 when serial is in opposition, 0 when not, or a negative errno. */
int queue_opposed(struct queue *q, const char *serial);
/* Every serial in opposition (for the daemon's copy in memory,
 * daemon/cards/opposition.h): *out (malloc'd, free() it; NULL when none)
 * gets *n entries. 0 or a negative errno. */
int queue_opposition_list(struct queue *q, char (**out)[33], size_t *n);

struct queue_upload_counts {
	uint64_t waiting;      /* queued + sending */
	uint64_t no_cert;      /* queued without a known certificate: cannot upload */
	uint64_t due_by;       /* queued or sending, due on or before the date asked */
	uint64_t overdue;      /* queued or sending, due before the date "today" */
	uint64_t rejected;
};
/* Counts for the uploader's status; dates YYYY-MM-DD. */
int queue_upload_counts(struct queue *q, const char *today, const char *due_by,
                        struct queue_upload_counts *c);

#endif
