/* The durable queue of care sheets; see queue.h for the contract and
 * docs/queue.md for the schema and the on-disk format.
 *
 * What must stay true here:
 * - a write is acknowledged (a 0 return) only after COMMIT returned in WAL
 *   mode with synchronous=FULL;
 * - a failed transaction leaves nothing behind (ROLLBACK when SQLite did not
 *   already roll back) and the handle usable; the in-memory counters are
 *   changed only after COMMIT succeeded;
 * - a queued sheet's payload, id, practitioner, care date, sequence number
 *   and due date are never written again (the v2 triggers refuse it too);
 * - only finished sheets and stale drafts are ever deleted;
 * - the key never leaves this file: not in a message, not in the database.
 */
#include "storage/queue.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "lib/secmem.h"
#include "protocol/cbor.h"
#include "protocol/holidays.h"

#define BLOB_VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16
#define BLOB_OVERHEAD (1 + NONCE_LEN + TAG_LEN)
#define QUEUE_APP_ID 0x56544c51 /* "VTLQ" in PRAGMA application_id */
#define KEYCHECK_AD "vitaled-queue-key-check"
#define KEYCHECK_PT "vitaled queue key check v1"
#define REASON_AD_SUFFIX "#reason"
/* The systemd credential that holds the key when the unit has one
 * (LoadCredentialEncrypted=vitaled.queue-key:...; docs/queue.md). */
#define KEY_CREDENTIAL "vitaled.queue-key"
#define PATH_MAX_LEN 4096
#define HWM_MAGIC "vitaled-queue-hwm 1"
#define HWM_KEY_LABEL "vitaled queue.hwm mac key v1"
#define HWM_MAX_BYTES (1u << 20)
/* A restart credits the queue's clock with the wall-clock time it was off
 * for, up to this much (a larger gap is a clock jump or a long stop: not
 * credited, so retention waits longer, never shorter). */
#define QCLOCK_GAP_MAX_MS (3LL * 86400000)

struct hwm_ent {
	char pract[QUEUE_PRACT_MAX + 1];
	char date[11];
	uint32_t reserved; /* every number up to this one may have been issued */
};

static const char *const state_names[QUEUE_NSTATES] = {
	"draft", "queued", "sending", "accepted", "rejected", "paid", "refused",
};

/* ------------------------------------------------------------------ */
/* schema and migrations
 *
 * Each entry moves the schema from version - 1 to version, inside one
 * transaction that also sets PRAGMA user_version. An entry is never edited
 * once released: a change is a new entry. Version 0 is an empty file. */

struct migration {
	int version;
	const char *sql;
};

static const struct migration migrations[] = {
	{ 1,
	  "PRAGMA application_id = 1448365137;\n" /* QUEUE_APP_ID */
	  "CREATE TABLE meta (k TEXT PRIMARY KEY NOT NULL, v BLOB NOT NULL);\n"
	  "CREATE TABLE sheets (\n"
	  "  id TEXT PRIMARY KEY NOT NULL,\n"
	  "  state TEXT NOT NULL CHECK (state IN ('draft','queued','sending','accepted',"
	  "'rejected','paid','refused')),\n"
	  "  practitioner TEXT NOT NULL,\n"
	  "  care_date TEXT NOT NULL,\n"
	  "  seq INTEGER,\n"
	  "  due_date TEXT,\n"
	  "  created INTEGER NOT NULL,\n"
	  "  updated INTEGER NOT NULL,\n"
	  "  size INTEGER NOT NULL,\n"
	  "  payload BLOB NOT NULL\n"
	  ");\n"
	  "CREATE UNIQUE INDEX sheets_seq ON sheets (practitioner, care_date, seq);\n" },
	/* v2: retention clock, uploader bookkeeping, the insurer's reason,
	 * scheduling and purge indexes, and triggers that make a queued sheet
	 * immutable and undeletable whatever code runs against the file. */
	{ 2,
	  "ALTER TABLE sheets ADD COLUMN closed INTEGER;\n"
	  "ALTER TABLE sheets ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;\n"
	  "ALTER TABLE sheets ADD COLUMN batch_id TEXT;\n"
	  "ALTER TABLE sheets ADD COLUMN reason BLOB;\n"
	  "UPDATE sheets SET closed = updated\n"
	  "  WHERE state IN ('accepted','rejected','paid','refused');\n"
	  "CREATE INDEX sheets_state_due ON sheets (state, due_date);\n"
	  "CREATE INDEX sheets_closed ON sheets (closed) WHERE closed IS NOT NULL;\n"
	  "CREATE TRIGGER sheets_immutable\n"
	  "  BEFORE UPDATE OF id, practitioner, care_date, seq, due_date, size, payload ON sheets\n"
	  "  WHEN OLD.state <> 'draft'\n"
	  "  BEGIN SELECT RAISE(ABORT, 'a queued sheet is immutable'); END;\n"
	  "CREATE TRIGGER sheets_keep\n"
	  "  BEFORE DELETE ON sheets WHEN OLD.state IN ('queued','sending')\n"
	  "  BEGIN SELECT RAISE(ABORT, 'a queued sheet cannot be deleted'); END;\n" },
	/* v3: the creation time of the oldest queued sheet (queue_stats, which
	 * the daemon reads after every write for its status) by index: without
	 * it each call scanned every queued row (150 ms at 100,000 sheets). */
	{ 3, "CREATE INDEX sheets_state_created ON sheets (state, created);\n" },
	/* v4: the uploader (docs/queue.md "Uploads"): which certificate signed
	 * each sheet (certs keyed by the SHA-256 of the signer's DER, the whole
	 * x5chain kept as the batch sends it), the insurer's code in clear (a
	 * short word: "signature", "rights"; the reason stays encrypted), the
	 * index that forms a batch by certificate, and the opposition list. The
	 * cursors live in meta ('returns_cursor', 'opposition_cursor'). A
	 * sheet's certificate is set once, never changed (queue_set_cert only
	 * fills a NULL). */
	{ 4,
	  "CREATE TABLE certs (digest TEXT PRIMARY KEY NOT NULL, x5chain BLOB NOT NULL,\n"
	  "  added INTEGER NOT NULL);\n"
	  "ALTER TABLE sheets ADD COLUMN cert TEXT;\n"
	  "ALTER TABLE sheets ADD COLUMN code TEXT;\n"
	  "CREATE INDEX sheets_state_cert_due ON sheets (state, cert, due_date);\n"
	  "CREATE TABLE opposition (serial TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;\n" },
	/* v5 (issue 11): a client's request id per sheet, for idempotent
	 * creates (request_id: CreateSheet, CreateDraft; complete_request_id:
	 * CompleteDraft), each unique and set once; the queue's own clock at
	 * creation and at closing (retention by monotonic evidence: rows of
	 * v4 keep their wall-clock times); the floors of the daily numbers
	 * after an accepted loss (numbers continue above the high-water mark). */
	{ 5,
	  "ALTER TABLE sheets ADD COLUMN request_id TEXT;\n"
	  "ALTER TABLE sheets ADD COLUMN complete_request_id TEXT;\n"
	  "ALTER TABLE sheets ADD COLUMN qclock INTEGER;\n"
	  "ALTER TABLE sheets ADD COLUMN qclosed INTEGER;\n"
	  "UPDATE sheets SET qclock = created, qclosed = closed;\n"
	  "CREATE UNIQUE INDEX sheets_request ON sheets (request_id) WHERE request_id IS NOT NULL;\n"
	  "CREATE UNIQUE INDEX sheets_complete_request ON sheets (complete_request_id)\n"
	  "  WHERE complete_request_id IS NOT NULL;\n"
	  "CREATE TRIGGER sheets_request_once\n"
	  "  BEFORE UPDATE OF request_id, complete_request_id ON sheets\n"
	  "  WHEN (OLD.request_id IS NOT NULL AND NEW.request_id IS NOT OLD.request_id)\n"
	  "    OR (OLD.complete_request_id IS NOT NULL\n"
	  "        AND NEW.complete_request_id IS NOT OLD.complete_request_id)\n"
	  "  BEGIN SELECT RAISE(ABORT, 'a request id is set once'); END;\n"
	  "CREATE TABLE seq_floor (practitioner TEXT NOT NULL, care_date TEXT NOT NULL,\n"
	  "  floor INTEGER NOT NULL, PRIMARY KEY (practitioner, care_date)) WITHOUT ROWID;\n" },
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

#define META_COLS \
	"rowid, id, state, practitioner, care_date, seq, due_date, created, updated, " \
	"closed, size, attempts, batch_id, cert, code, request_id, complete_request_id"

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_EXISTS,
	ST_NEXTSEQ,
	ST_INSERT,
	ST_META,
	ST_PAYLOAD,
	ST_REASON,
	ST_COMPLETE,
	ST_SETSTATE,
	ST_DELETE_DRAFT,
	ST_TAKE_SELECT,
	ST_MIN_CREATED,
	ST_MIN_DUE,
	ST_FIND_REQUEST,
	ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_EXISTS] = "SELECT 1 FROM sheets WHERE id = ?1",
	[ST_NEXTSEQ] = "SELECT MAX(COALESCE((SELECT MAX(seq) FROM sheets "
	               "WHERE practitioner = ?1 AND care_date = ?2), 0), "
	               "COALESCE((SELECT floor FROM seq_floor "
	               "WHERE practitioner = ?1 AND care_date = ?2), 0)) + 1",
	[ST_INSERT] = "INSERT INTO sheets (id, state, practitioner, care_date, seq, due_date, "
	              "created, updated, size, payload, cert, qclock, request_id) "
	              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?11, ?12)",
	[ST_META] = "SELECT " META_COLS ", length(payload) FROM sheets WHERE id = ?1",
	[ST_FIND_REQUEST] = "SELECT " META_COLS " FROM sheets WHERE request_id = ?1 "
	                    "UNION ALL SELECT " META_COLS " FROM sheets WHERE complete_request_id = ?1 "
	                    "LIMIT 1",
	[ST_PAYLOAD] = "SELECT payload FROM sheets WHERE id = ?1",
	[ST_REASON] = "SELECT reason FROM sheets WHERE id = ?1",
	[ST_COMPLETE] = "UPDATE sheets SET state = 'queued', practitioner = ?2, care_date = ?3, "
	                "seq = ?4, due_date = ?5, updated = ?6, size = ?7, payload = ?8, "
	                "complete_request_id = ?9 WHERE id = ?1 AND state = 'draft'",
	[ST_SETSTATE] = "UPDATE sheets SET state = ?2, updated = ?3, closed = ?4, batch_id = ?5, "
	                "attempts = attempts + ?6, reason = COALESCE(?7, reason), code = COALESCE(?8, code), "
	                "qclosed = ?9 WHERE id = ?1",
	[ST_DELETE_DRAFT] = "DELETE FROM sheets WHERE id = ?1 AND state = 'draft'",
	[ST_TAKE_SELECT] = "SELECT " META_COLS " FROM sheets WHERE state = 'queued' "
	                   "ORDER BY due_date, rowid LIMIT ?1",
	[ST_MIN_CREATED] = "SELECT MIN(created) FROM sheets WHERE state IN ('queued','sending')",
	[ST_MIN_DUE] = "SELECT MIN(due_date) FROM sheets WHERE state IN ('queued','sending')",
};

struct queue {
	sqlite3 *db;
	int lock_fd;
	/* QUEUE_KEY_LEN bytes in a locked, MADV_DONTDUMP page (lib/secmem),
	 * allocated by the first key_read/key_create; NULL before. */
	unsigned char *key;
	bool key_cred;                 /* read from the systemd credential */
	char cred_path[PATH_MAX_LEN];  /* $CREDENTIALS_DIRECTORY/vitaled.queue-key */
	char db_path[PATH_MAX_LEN];
	char key_path[PATH_MAX_LEN];
	char lock_path[PATH_MAX_LEN];
	char hwm_path[PATH_MAX_LEN];
	char dir[PATH_MAX_LEN];
	long long max_sheets, max_bytes;
	int64_t (*clock_ms)(void *arg);
	void *clock_arg;
	int64_t (*mono_ms)(void *arg);
	const char *vfs;
	int busy_timeout_ms;
	bool skip_quick_check;
	bool defer_quick_check, check_pending, damaged;
	char damage[600];       /* why writes are refused (queue_check failed) */
	/* the queue's clock (retention): qbase at mono time mbase */
	int64_t qbase, mbase;
	bool read_only;
	/* the high-water mark (queue.hwm): reservations per practitioner and
	 * day, and the numbered sheets ever stored (numbered: committed;
	 * d_numbered: the open transaction's) */
	struct hwm_ent *hwm;
	size_t nhwm, hwm_cap;
	uint64_t numbered, purged_numbered;
	int64_t d_numbered;
	bool hwm_dirty;
	int64_t hwm_written;
	unsigned char hwm_key[32];
	char notice[1024];
	/* committed counters, and the deltas of the open transaction */
	uint64_t n[QUEUE_NSTATES];
	uint64_t bytes;
	int64_t dn[QUEUE_NSTATES];
	int64_t dbytes;
	/* queue_stats' two SQL reads, kept as of the last commit while only
	 * inserts happen (an insert of a queued sheet can only lower the oldest
	 * creation time and the nearest due date): mins_known; d_put_* are the
	 * open transaction's inserts, and any other change to dn[] at COMMIT
	 * makes the next queue_stats read them again. */
	bool mins_known;
	int64_t min_created;
	char min_due[11];
	int64_t d_put[QUEUE_NSTATES];
	int64_t d_min_created;
	char d_min_due[11];
	EVP_CIPHER *gcm;
	EVP_CIPHER_CTX *cctx;
	bool reset_pending; /* sending → queued could not be written at open */
	char current_cert[QUEUE_CERT_DIGEST_LEN + 1]; /* for puts that name none; "" none */
	/* Set by sqlerr: the last SQLite failure was not a constraint on one row,
	 * so the open transaction cannot go on (disk full, I/O error, ...). */
	bool fatal;
	sqlite3_stmt *st[ST_COUNT];
	char errmsg[512];
};

/* ------------------------------------------------------------------ */
/* small helpers */

static void __attribute__((format(printf, 2, 3)))
seterr(struct queue *q, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->errmsg, sizeof(q->errmsg), fmt, ap);
	va_end(ap);
}

static int64_t
now_ms(const struct queue *q)
{
	if (q->clock_ms)
		return q->clock_ms(q->clock_arg);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Map an SQLite result to the module's errno and remember the detail. */
static int
sqlerr(struct queue *q, int rc, const char *what)
{
	const char *msg = q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc);
	int e;
	switch (rc & 0xff) {
	case SQLITE_FULL:
		e = -ENOSPC;
		break;
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
	case SQLITE_PROTOCOL:
		e = -EIO;
		break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		e = -EUCLEAN;
		break;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		e = -EBUSY;
		break;
	case SQLITE_NOMEM:
		e = -ENOMEM;
		break;
	case SQLITE_READONLY:
		e = -EROFS;
		break;
	case SQLITE_CONSTRAINT:
		if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE)
			e = -EEXIST;
		else if (rc == SQLITE_CONSTRAINT_TRIGGER)
			e = -EPERM;
		else
			e = -EINVAL;
		break;
	default:
		e = -EIO;
	}
	q->fatal = (rc & 0xff) != SQLITE_CONSTRAINT;
	seterr(q, "%s: %s (SQLite %d)", what, msg, rc);
	return e;
}

static sqlite3_stmt *
stmt(struct queue *q, enum stmt_id id)
{
	if (!q->st[id]) {
		int rc = sqlite3_prepare_v3(q->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
		                            &q->st[id], NULL);
		if (rc != SQLITE_OK) {
			sqlerr(q, rc, "prepare");
			q->st[id] = NULL;
		}
	}
	return q->st[id];
}

static void
stmt_done(sqlite3_stmt *s)
{
	if (s) {
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
}

/* Run a parameterless cached statement to completion. */
static int
run(struct queue *q, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = stmt(q, id);
	if (!s)
		return -EIO;
	int rc = sqlite3_step(s);
	int r = (rc == SQLITE_DONE || rc == SQLITE_ROW) ? 0 : sqlerr(q, rc, what);
	stmt_done(s);
	return r;
}

static int
exec_sql(struct queue *q, const char *sql, const char *what)
{
	char *msg = NULL;
	int rc = sqlite3_exec(q->db, sql, NULL, NULL, &msg);
	sqlite3_free(msg);
	return rc == SQLITE_OK ? 0 : sqlerr(q, rc, what);
}

static bool
valid_token(const char *s, size_t max)
{
	if (!s)
		return false;
	size_t n = strnlen(s, max + 1);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

static bool
valid_practitioner(const char *s)
{
	if (!s)
		return false;
	size_t n = strnlen(s, QUEUE_PRACT_MAX + 1);
	if (n == 0 || n > QUEUE_PRACT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

/* YYYY-MM-DD with plausible month and day; the calendar itself is the
 * caller's business (protocol/holidays.c). */
static bool
valid_date(const char *s)
{
	if (!s || strnlen(s, 11) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
			return false;
	int m = (s[5] - '0') * 10 + (s[6] - '0');
	int d = (s[8] - '0') * 10 + (s[9] - '0');
	return m >= 1 && m <= 12 && d >= 1 && d <= 31;
}

static void
copy_col(sqlite3_stmt *s, int col, char *out, size_t outlen)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	snprintf(out, outlen, "%s", t ? (const char *)t : "");
}

static void
read_meta(sqlite3_stmt *s, struct queue_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->cursor = sqlite3_column_int64(s, 0);
	copy_col(s, 1, m->id, sizeof(m->id));
	const unsigned char *st = sqlite3_column_text(s, 2);
	int p = st ? queue_state_parse((const char *)st) : -EINVAL;
	m->state = p < 0 ? QUEUE_DRAFT : (enum queue_state)p;
	copy_col(s, 3, m->practitioner, sizeof(m->practitioner));
	copy_col(s, 4, m->care_date, sizeof(m->care_date));
	m->seq = (uint32_t)sqlite3_column_int64(s, 5);
	copy_col(s, 6, m->due_date, sizeof(m->due_date));
	m->created_ms = sqlite3_column_int64(s, 7);
	m->updated_ms = sqlite3_column_int64(s, 8);
	m->closed_ms = sqlite3_column_int64(s, 9);
	m->size = (uint32_t)sqlite3_column_int64(s, 10);
	m->attempts = (uint32_t)sqlite3_column_int64(s, 11);
	copy_col(s, 12, m->batch_id, sizeof(m->batch_id));
	copy_col(s, 13, m->cert, sizeof(m->cert));
	copy_col(s, 14, m->code, sizeof(m->code));
	copy_col(s, 15, m->request_id, sizeof(m->request_id));
	copy_col(s, 16, m->complete_request_id, sizeof(m->complete_request_id));
}

static bool
is_closed_state(enum queue_state s)
{
	return s == QUEUE_ACCEPTED || s == QUEUE_REJECTED || s == QUEUE_PAID || s == QUEUE_REFUSED;
}

/* ------------------------------------------------------------------ */
/* encryption at rest: blob = version(1) ‖ nonce(12) ‖ ciphertext ‖ tag(16),
 * AES-256-GCM, associated data = the sheet id (NIST SP 800-38D; random
 * 96-bit nonces stay far below the 2^32 invocations limit for one key). */

/* The cipher is fetched once per handle and its context object reused:
 * OpenSSL 3 would otherwise look the algorithm up again on every call. The
 * key schedule is not kept between calls: blob_seal and blob_open reset the
 * context when they are done, which frees (and clears) the provider's
 * state, so the expanded key is in the heap only during an operation and a
 * core dump finds no copy of the key outside the locked page (issue 11, 8).
 * The cost is a key expansion per blob, well under a microsecond. */
static int
cipher_ready(struct queue *q)
{
	if (!q->gcm && !(q->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)))
		return -EIO;
	if (!q->cctx && !(q->cctx = EVP_CIPHER_CTX_new()))
		return -ENOMEM;
	return 0;
}

static int
blob_seal(struct queue *q, const void *ad, size_t adlen, const uint8_t *pt, size_t ptlen,
          uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	int r, n = 0;
	EVP_CIPHER_CTX *c;
	if (ptlen > QUEUE_PAYLOAD_MAX)
		return -E2BIG;
	if ((r = cipher_ready(q)) < 0)
		return r;
	c = q->cctx;
	r = -EIO;
	uint8_t *b = malloc(ptlen + BLOB_OVERHEAD);
	if (!b)
		return -ENOMEM;
	b[0] = BLOB_VERSION;
	if (RAND_bytes(b + 1, NONCE_LEN) != 1)
		goto out;
	if (EVP_EncryptInit_ex(c, q->gcm, NULL, q->key, b + 1) != 1 ||
	    EVP_EncryptUpdate(c, NULL, &n, ad, (int)adlen) != 1 ||
	    EVP_EncryptUpdate(c, b + 1 + NONCE_LEN, &n, pt, (int)ptlen) != 1 ||
	    EVP_EncryptFinal_ex(c, b + 1 + NONCE_LEN + n, &n) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, b + 1 + NONCE_LEN + ptlen) != 1)
		goto out;
	*out = b;
	*outlen = ptlen + BLOB_OVERHEAD;
	b = NULL;
	r = 0;
out:
	EVP_CIPHER_CTX_reset(c); /* frees and clears the key schedule */
	free(b);
	return r;
}

/* -EBADMSG when the blob does not authenticate (wrong key, wrong id, damage). */
static int
blob_open(struct queue *q, const void *ad, size_t adlen, const uint8_t *b, size_t blen,
          uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (!b || blen < BLOB_OVERHEAD || b[0] != BLOB_VERSION ||
	    blen - BLOB_OVERHEAD > QUEUE_PAYLOAD_MAX)
		return -EBADMSG;
	size_t ctlen = blen - BLOB_OVERHEAD;
	int r, n = 0;
	if ((r = cipher_ready(q)) < 0)
		return r;
	EVP_CIPHER_CTX *c = q->cctx;
	r = -EBADMSG;
	uint8_t *pt = malloc(ctlen ? ctlen : 1);
	unsigned char tag[TAG_LEN];
	if (!pt)
		return -ENOMEM;
	memcpy(tag, b + 1 + NONCE_LEN + ctlen, TAG_LEN);
	if (EVP_DecryptInit_ex(c, q->gcm, NULL, q->key, b + 1) != 1 ||
	    EVP_DecryptUpdate(c, NULL, &n, ad, (int)adlen) != 1 ||
	    EVP_DecryptUpdate(c, pt, &n, b + 1 + NONCE_LEN, (int)ctlen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1 ||
	    EVP_DecryptFinal_ex(c, pt + n, &n) != 1)
		goto out;
	*out = pt;
	*outlen = ctlen;
	pt = NULL;
	r = 0;
out:
	EVP_CIPHER_CTX_reset(c); /* frees and clears the key schedule */
	if (pt) {
		OPENSSL_cleanse(pt, ctlen);
		free(pt);
	}
	return r;
}

static int
reason_ad(const char *id, char *buf, size_t buflen)
{
	int n = snprintf(buf, buflen, "%s" REASON_AD_SUFFIX, id);
	return n < 0 || (size_t)n >= buflen ? -EINVAL : n;
}

/* ------------------------------------------------------------------ */
/* transactions and counters */

static int64_t mono_now(const struct queue *q);
static int hwm_write(struct queue *q);

static void
deltas_clear(struct queue *q)
{
	memset(q->dn, 0, sizeof(q->dn));
	q->dbytes = 0;
	memset(q->d_put, 0, sizeof(q->d_put));
	q->d_min_created = 0;
	q->d_min_due[0] = '\0';
	q->d_numbered = 0;
}

/* At COMMIT, before the counters move: keep queue_stats' minimums when the
 * transaction only inserted sheets, else forget them. */
static void
mins_commit(struct queue *q)
{
	if (!q->mins_known)
		return;
	for (int i = 0; i < QUEUE_NSTATES; i++) {
		if (q->dn[i] != q->d_put[i]) {
			q->mins_known = false;
			return;
		}
	}
	if (q->d_min_created && (!q->min_created || q->d_min_created < q->min_created))
		q->min_created = q->d_min_created;
	if (q->d_min_due[0] && (!q->min_due[0] || strcmp(q->d_min_due, q->min_due) < 0))
		memcpy(q->min_due, q->d_min_due, sizeof(q->min_due));
}

static int
tx_begin(struct queue *q)
{
	deltas_clear(q);
	if (q->damaged) {
		seterr(q, "%s", q->damage);
		return -EUCLEAN;
	}
	if (q->read_only) {
		seterr(q, "the queue is read-only: the disk was full when vitaled started; writes "
		          "resume once space is freed");
		return -ENOSPC;
	}
	return run(q, ST_BEGIN, "begin");
}

static void
tx_rollback(struct queue *q)
{
	deltas_clear(q);
	if (!sqlite3_get_autocommit(q->db))
		run(q, ST_ROLLBACK, "rollback");
}

/* COMMIT; the counters move only when it succeeded. A failed COMMIT is
 * rolled back so the handle is usable again. */
static int
tx_commit(struct queue *q)
{
	int r = run(q, ST_COMMIT, "commit");
	if (r < 0) {
		char keep[sizeof(q->errmsg)];
		memcpy(keep, q->errmsg, sizeof(keep));
		tx_rollback(q);
		memcpy(q->errmsg, keep, sizeof(keep));
		return r;
	}
	mins_commit(q);
	for (int i = 0; i < QUEUE_NSTATES; i++)
		q->n[i] = (uint64_t)((int64_t)q->n[i] + q->dn[i]);
	q->bytes = (uint64_t)((int64_t)q->bytes + q->dbytes);
	if (q->d_numbered > 0) {
		/* the mark's count follows lazily: at most every QUEUE_HWM_LAZY_MS */
		q->numbered += (uint64_t)q->d_numbered;
		q->hwm_dirty = true;
		if (mono_now(q) - q->hwm_written >= QUEUE_HWM_LAZY_MS)
			hwm_write(q); /* a failure leaves it dirty: written later */
	}
	deltas_clear(q);
	return 0;
}

static int pragma_int(struct queue *q, const char *sql, long long *out);

/* The stored bytes: a walk of the whole table (the payloads are in its
 * rows), 0.1 s at 100,000 sheets; with defer_quick_check it is done by
 * queue_check, before any write can look at the limits. */
static int
load_bytes(struct queue *q)
{
	long long b = 0;
	int r = pragma_int(q, "SELECT CAST(TOTAL(length(payload)) AS INTEGER) FROM sheets", &b);
	if (r == 0)
		q->bytes = (uint64_t)b;
	return r;
}

static int
load_counters(struct queue *q)
{
	sqlite3_stmt *s = NULL;
	/* the counts alone come from an index on state; the bytes need the
	 * table (load_bytes) */
	int rc = sqlite3_prepare_v2(q->db,
	                            q->check_pending
	                                    ? "SELECT state, COUNT(*), 0 FROM sheets GROUP BY state"
	                                    : "SELECT state, COUNT(*), TOTAL(length(payload)) FROM "
	                                      "sheets GROUP BY state",
	                            -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlerr(q, rc, "count");
	memset(q->n, 0, sizeof(q->n));
	q->bytes = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);
		int st = t ? queue_state_parse((const char *)t) : -EINVAL;
		if (st >= 0)
			q->n[st] = (uint64_t)sqlite3_column_int64(s, 1);
		q->bytes += (uint64_t)sqlite3_column_double(s, 2);
	}
	int r = rc == SQLITE_DONE ? 0 : sqlerr(q, rc, "count");
	sqlite3_finalize(s);
	return r;
}

static uint64_t
total_rows(const struct queue *q, bool with_pending)
{
	int64_t t = 0;
	for (int i = 0; i < QUEUE_NSTATES; i++)
		t += (int64_t)q->n[i] + (with_pending ? q->dn[i] : 0);
	return (uint64_t)t;
}

/* ------------------------------------------------------------------ */
/* the queue's clock: wall-clock ms as the queue has lived them. It starts
 * at the wall clock when a queue is made (or migrated to v5), then moves
 * only with the monotonic clock while the queue is open, and across a
 * restart by the wall-clock gap when that gap is 0 .. QCLOCK_GAP_MAX_MS.
 * A forward jump of the wall clock does not move it, so retention (which
 * wants both clocks past the limit) never purges a row young by it. */

static int64_t
mono_now(const struct queue *q)
{
	if (q->mono_ms)
		return q->mono_ms(q->clock_arg);
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
qclock_now(const struct queue *q)
{
	return q->qbase + (mono_now(q) - q->mbase);
}

/* ------------------------------------------------------------------ */
/* the high-water mark (queue.hwm, beside queue.key; docs/queue.md)
 *
 *   vitaled-queue-hwm 1
 *   count N                   numbered sheets ever stored (never above the db's)
 *   seq PRACTITIONER DATE R   numbers up to R may have been issued
 *   mac HEX                   HMAC-SHA256 of the lines above, key derived from queue.key
 *
 * A reservation is written before a number beyond it is used; count is
 * written at most QUEUE_HWM_LAZY_MS after the commit that raised it. */

static struct hwm_ent *
hwm_find(struct queue *q, const char *pract, const char *date)
{
	for (size_t i = q->nhwm; i-- > 0;)
		if (!strcmp(q->hwm[i].date, date) && !strcmp(q->hwm[i].pract, pract))
			return &q->hwm[i];
	return NULL;
}

static struct hwm_ent *
hwm_add(struct queue *q, const char *pract, const char *date)
{
	if (q->nhwm == q->hwm_cap) {
		size_t cap = q->hwm_cap ? q->hwm_cap * 2 : 16;
		struct hwm_ent *n = realloc(q->hwm, cap * sizeof(*n));
		if (!n)
			return NULL;
		q->hwm = n;
		q->hwm_cap = cap;
	}
	struct hwm_ent *e = &q->hwm[q->nhwm++];
	memset(e, 0, sizeof(*e));
	snprintf(e->pract, sizeof(e->pract), "%s", pract);
	snprintf(e->date, sizeof(e->date), "%s", date);
	return e;
}

/* The day number of a "YYYY-MM-DD" care date (protocol/holidays); 0 for a
 * date that does not parse (such an entry is the first to be pruned). */
static long
date_days(const char *d)
{
	int32_t day;
	return holidays_parse(d, &day) == 0 ? (long)day : 0;
}

/* Entries more than a year older than the newest care date are dropped
 * (the file stays small; a number of such a date could be issued again
 * only after a loss accepted more than a year later). */
static void
hwm_prune(struct queue *q)
{
	long newest = 0;
	for (size_t i = 0; i < q->nhwm; i++)
		if (date_days(q->hwm[i].date) > newest)
			newest = date_days(q->hwm[i].date);
	size_t k = 0;
	for (size_t i = 0; i < q->nhwm; i++)
		if (date_days(q->hwm[i].date) >= newest - 372)
			q->hwm[k++] = q->hwm[i];
	q->nhwm = k;
}

static void
hwm_mac(const struct queue *q, const char *text, size_t len, char hex[65])
{
	unsigned char mac[32];
	unsigned int mlen = sizeof(mac);
	HMAC(EVP_sha256(), q->hwm_key, sizeof(q->hwm_key), (const unsigned char *)text, len, mac,
	     &mlen);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", mac[i]);
}

static int
hwm_write(struct queue *q)
{
	hwm_prune(q);
	size_t cap = 128 + q->nhwm * (QUEUE_PRACT_MAX + 32);
	char *b = malloc(cap);
	if (!b)
		return -ENOMEM;
	uint64_t count = q->numbered;
	size_t off = (size_t)snprintf(b, cap, HWM_MAGIC "\ncount %llu\n", (unsigned long long)count);
	for (size_t i = 0; i < q->nhwm; i++)
		off += (size_t)snprintf(b + off, cap - off, "seq %s %s %u\n", q->hwm[i].pract,
		                        q->hwm[i].date, q->hwm[i].reserved);
	char hex[65];
	hwm_mac(q, b, off, hex);
	off += (size_t)snprintf(b + off, cap - off, "mac %s\n", hex);
	int r = fs_write_atomic(q->hwm_path, b, off, 0600);
	free(b);
	if (r < 0) {
		seterr(q, "high-water mark %s: cannot write: %s", q->hwm_path, strerror(-r));
		return r;
	}
	q->hwm_written = mono_now(q);
	q->hwm_dirty = false;
	return 0;
}

struct hwm_file {
	bool present, authentic;
	uint64_t count;
	struct hwm_ent *e;
	size_t n;
};

/* Read queue.hwm; authentic only when the MAC checks (the key is known). */
static int
hwm_read(struct queue *q, struct hwm_file *f, bool have_key)
{
	char *buf = NULL;
	size_t len = 0;
	memset(f, 0, sizeof(*f));
	int r = fs_read_file(q->hwm_path, HWM_MAX_BYTES, &buf, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		seterr(q, "high-water mark %s: %s", q->hwm_path, strerror(-r));
		return r;
	}
	f->present = true;
	char *mac = strstr(buf, "\nmac ");
	if (mac && have_key && strlen(mac + 5) >= 64) {
		char hex[65];
		hwm_mac(q, buf, (size_t)(mac + 1 - buf), hex);
		f->authentic = CRYPTO_memcmp(hex, mac + 5, 64) == 0;
	}
	if (mac)
		mac[1] = '\0';
	size_t cap = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char p[QUEUE_PRACT_MAX + 1], d[11];
		unsigned long long c;
		unsigned u;
		if (sscanf(line, "count %llu", &c) == 1) {
			f->count = c;
		} else if (sscanf(line, "seq %32s %10s %u", p, d, &u) == 3 && valid_practitioner(p) &&
		           valid_date(d)) {
			if (f->n == cap) {
				cap = cap ? cap * 2 : 16;
				struct hwm_ent *n = realloc(f->e, cap * sizeof(*n));
				if (!n) {
					free(buf);
					return -ENOMEM;
				}
				f->e = n;
			}
			struct hwm_ent *e = &f->e[f->n++];
			snprintf(e->pract, sizeof(e->pract), "%s", p);
			snprintf(e->date, sizeof(e->date), "%s", d);
			e->reserved = u;
		}
	}
	free(buf);
	return 0;
}

/* "P on D: up to N" for the first few entries, for the messages. */
static void
hwm_describe(const struct hwm_file *f, char *out, size_t len)
{
	size_t off = 0;
	out[0] = '\0';
	for (size_t i = 0; i < f->n && off + 80 < len; i++)
		off += (size_t)snprintf(out + off, len - off, "%s%s on %s: numbers up to %u",
		                        i ? ", " : "", f->e[i].pract, f->e[i].date, f->e[i].reserved);
	if (!f->n)
		snprintf(out, len, "no number reserved");
}

/* ------------------------------------------------------------------ */
/* the key file */

/* The key's page (lib/secmem): locked, left out of core dumps, wiped at
 * close. 0, or an error with q->errmsg set. */
static int
key_buf(struct queue *q)
{
	if (q->key)
		return 0;
	void *p = NULL;
	int r = secmem_alloc(QUEUE_KEY_LEN, &p);
	if (r < 0) {
		seterr(q, "queue key: cannot lock a page of memory for it (%s): raise LimitMEMLOCK",
		       strerror(-r));
		return r;
	}
	q->key = p;
	return 0;
}

static int path_join(char *out, size_t outlen, const char *dir, const char *name);

/* Where the key came from, for messages. */
static const char *
key_name(const struct queue *q)
{
	return q->key_cred ? q->cred_path : q->key_path;
}

/* Read QUEUE_KEY_LEN bytes from path straight into the key's page. A file
 * whose mode has a bit of badmode is refused. 0, -ENOENT, or an error with
 * q->errmsg set. */
static int
key_read_path(struct queue *q, const char *path, mode_t badmode, const char *what)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT)
			return -ENOENT;
		seterr(q, "queue key %s: %s", path, strerror(e));
		return -e;
	}
	int r = 0;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		seterr(q, "queue key %s: %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size != QUEUE_KEY_LEN) {
		seterr(q, "queue key %s: not a %d-byte %s; restore it from backup", path,
		       QUEUE_KEY_LEN, what);
		r = -EKEYREJECTED;
		goto out;
	}
	if (st.st_mode & badmode) {
		seterr(q, "queue key %s: mode %03o lets others read it; chmod 600 it", path,
		       (unsigned)(st.st_mode & 0777));
		r = -EACCES; /* KeyNotPrivate: not -EPERM, which is BadTransition (issue 11, 13) */
		goto out;
	}
	size_t got = 0;
	while (got < QUEUE_KEY_LEN) {
		ssize_t n = read(fd, q->key + got, QUEUE_KEY_LEN - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			seterr(q, "queue key %s: short read", path);
			goto out;
		}
		got += (size_t)n;
	}
out:
	close(fd);
	if (r < 0)
		secmem_wipe(q->key, QUEUE_KEY_LEN);
	return r;
}

/* The key: from the systemd credential vitaled.queue-key when
 * $CREDENTIALS_DIRECTORY holds one (systemd decrypted it for this run; it
 * is never written to the state directory), else from queue.key. A
 * credential that is there but unusable is an error, not a fall-back.
 * 0, -ENOENT (neither), or an error with q->errmsg set. */
static int
key_read(struct queue *q)
{
	int r = key_buf(q);
	if (r < 0)
		return r;
	q->key_cred = false;
	const char *cd = getenv("CREDENTIALS_DIRECTORY");
	if (cd && cd[0]) {
		if (path_join(q->cred_path, sizeof(q->cred_path), cd, KEY_CREDENTIAL) < 0) {
			seterr(q, "queue key: $CREDENTIALS_DIRECTORY is too long");
			return -ENAMETOOLONG;
		}
		/* systemd presents it 0400 (0440 for a group) in a directory only the
		 * service can enter: refuse only a credential anyone may read */
		r = key_read_path(q, q->cred_path, 007, "credential");
		if (r != -ENOENT) {
			q->key_cred = true;
			return r;
		}
	}
	return key_read_path(q, q->key_path, 077, "file");
}

static int
key_create(struct queue *q)
{
	int r = key_buf(q);
	if (r < 0)
		return r;
	if (RAND_priv_bytes(q->key, QUEUE_KEY_LEN) != 1) {
		seterr(q, "queue key: no randomness");
		return -EIO;
	}
	r = fs_write_atomic(q->key_path, q->key, QUEUE_KEY_LEN, 0600);
	if (r < 0)
		seterr(q, "queue key %s: cannot write: %s", q->key_path, strerror(-r));
	return r;
}

/* The meta row key_check holds a known text sealed with the key, so a
 * wrong key is caught at open, not at the first read. */
static int
keycheck_write(struct queue *q)
{
	uint8_t *blob = NULL;
	size_t blen = 0;
	sqlite3_stmt *s = NULL;
	int r = blob_seal(q, KEYCHECK_AD, strlen(KEYCHECK_AD), (const uint8_t *)KEYCHECK_PT,
	                  strlen(KEYCHECK_PT), &blob, &blen);
	if (r < 0) {
		seterr(q, "queue key check: cannot encrypt");
		return r;
	}
	if ((r = tx_begin(q)) < 0)
		goto out;
	int rc = sqlite3_prepare_v2(q->db, "INSERT OR REPLACE INTO meta (k, v) VALUES ('key_check', ?1)",
	                            -1, &s, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_blob(s, 1, blob, (int)blen, SQLITE_STATIC);
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE && rc != SQLITE_OK) {
		r = sqlerr(q, rc, "key check");
		tx_rollback(q);
		goto out;
	}
	r = tx_commit(q);
out:
	sqlite3_finalize(s);
	free(blob);
	return r;
}

/* 1 if the stored key check opens with the key, 0 if it does not, -ENOENT
 * if there is none, or an error. */
static int
keycheck_verify(struct queue *q)
{
	sqlite3_stmt *s = NULL;
	int r;
	int rc = sqlite3_prepare_v2(q->db, "SELECT v FROM meta WHERE k = 'key_check'", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlerr(q, rc, "key check");
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		r = -ENOENT;
	} else if (rc == SQLITE_ROW) {
		uint8_t *pt = NULL;
		size_t ptlen = 0;
		int o = blob_open(q, KEYCHECK_AD, strlen(KEYCHECK_AD), sqlite3_column_blob(s, 0),
		                  (size_t)sqlite3_column_bytes(s, 0), &pt, &ptlen);
		r = o == 0 && ptlen == strlen(KEYCHECK_PT) && memcmp(pt, KEYCHECK_PT, ptlen) == 0;
		free(pt);
		if (o == -ENOMEM)
			r = -ENOMEM;
	} else {
		r = sqlerr(q, rc, "key check");
	}
	sqlite3_finalize(s);
	return r;
}

/* 1 if the first stored sheet decrypts with the key (a database without a
 * key check), 0 if not. */
static int
key_opens_first_row(struct queue *q)
{
	sqlite3_stmt *s = NULL;
	int r = 0;
	if (sqlite3_prepare_v2(q->db, "SELECT id, payload FROM sheets ORDER BY rowid LIMIT 1", -1, &s,
	                       NULL) != SQLITE_OK)
		return 0;
	if (sqlite3_step(s) == SQLITE_ROW) {
		uint8_t *pt = NULL;
		size_t ptlen = 0;
		const char *id = (const char *)sqlite3_column_text(s, 0);
		r = blob_open(q, id, strlen(id), sqlite3_column_blob(s, 1),
		              (size_t)sqlite3_column_bytes(s, 1), &pt, &ptlen) == 0;
		queue_free_payload(pt, ptlen);
	}
	sqlite3_finalize(s);
	return r;
}

static int
key_setup(struct queue *q)
{
	uint64_t rows = total_rows(q, false);
	int r = key_read(q);
	if (r == -ENOENT) {
		if (rows > 0) {
			seterr(q,
			       "queue key %s is missing but the queue holds %llu sheet(s): restore the "
			       "key file from backup (a new key would make them unreadable)",
			       q->key_path, (unsigned long long)rows);
			return -ENOKEY;
		}
		if ((r = key_create(q)) < 0)
			return r;
		return keycheck_write(q);
	}
	if (r < 0)
		return r;
	int v = keycheck_verify(q);
	if (v < 0 && v != -ENOENT)
		return v;
	if (v == 1)
		return 0;
	if (rows > 0 && (v == 0 || !key_opens_first_row(q))) {
		if (q->key_cred)
			seterr(q,
			       "queue key from the systemd credential %s does not open this queue "
			       "(%llu sheet(s) stored): it is not the key the queue was written with; "
			       "seal the right key (docs/queue.md) or restore the matching queue.db",
			       key_name(q), (unsigned long long)rows);
		else
			seterr(q,
			       "queue key %s does not open this queue (%llu sheet(s) stored): it is not "
			       "the key the queue was written with; restore the right key file",
			       q->key_path, (unsigned long long)rows);
		return -EKEYREJECTED;
	}
	/* No sheet to protect (or a key check was never written): adopt the key. */
	return keycheck_write(q);
}

/* ------------------------------------------------------------------ */
/* open and close */

static int
pragma_int(struct queue *q, const char *sql, long long *out)
{
	sqlite3_stmt *s = NULL;
	*out = 0;
	int rc = sqlite3_prepare_v2(q->db, sql, -1, &s, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			*out = sqlite3_column_int64(s, 0);
			rc = SQLITE_OK;
		}
	}
	sqlite3_finalize(s);
	return rc == SQLITE_OK ? 0 : sqlerr(q, rc, sql);
}

static int
quick_check(struct queue *q)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(q->db, "PRAGMA quick_check(3)", -1, &s, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		int r = sqlerr(q, rc, "quick_check");
		sqlite3_finalize(s);
		if (r == -EUCLEAN)
			seterr(q, "queue %s is damaged (%s); vitaled will not write to it: keep the "
			       "file for recovery and restore from backup",
			       q->db_path, sqlite3_errstr(rc));
		return r;
	}
	const unsigned char *t = sqlite3_column_text(s, 0);
	int r = 0;
	if (!t || strcmp((const char *)t, "ok") != 0) {
		seterr(q, "queue %s failed PRAGMA quick_check (%s); vitaled will not write to it: keep "
		       "the file for recovery and restore from backup",
		       q->db_path, t ? (const char *)t : "?");
		r = -EUCLEAN;
	}
	sqlite3_finalize(s);
	return r;
}

static int
migrate(struct queue *q)
{
	long long app = 0, ver = 0, objs = 0;
	int r;
	if ((r = pragma_int(q, "PRAGMA application_id", &app)) < 0 ||
	    (r = pragma_int(q, "PRAGMA user_version", &ver)) < 0 ||
	    (r = pragma_int(q, "SELECT COUNT(*) FROM sqlite_master", &objs)) < 0)
		return r;
	if ((app != 0 && app != QUEUE_APP_ID) || (ver == 0 && objs > 0)) {
		seterr(q, "%s is an SQLite database but not a vitaled queue; move it away",
		       q->db_path);
		return -EMEDIUMTYPE;
	}
	if (ver > QUEUE_SCHEMA_VERSION) {
		seterr(q, "queue %s has schema version %lld, newer than this vitaled knows (%d): "
		       "run the newer vitaled",
		       q->db_path, ver, QUEUE_SCHEMA_VERSION);
		return -EPROTO;
	}
	for (size_t i = 0; i < N_MIGRATIONS; i++) {
		if (migrations[i].version <= ver)
			continue;
		char setver[64];
		snprintf(setver, sizeof(setver), "PRAGMA user_version = %d", migrations[i].version);
		if ((r = tx_begin(q)) < 0)
			return r;
		if ((r = exec_sql(q, migrations[i].sql, "migration")) < 0 ||
		    (r = exec_sql(q, setver, "migration")) < 0) {
			char keep[sizeof(q->errmsg)];
			memcpy(keep, q->errmsg, sizeof(keep));
			tx_rollback(q);
			snprintf(q->errmsg, sizeof(q->errmsg), "schema v%d: %.400s", migrations[i].version,
			         keep);
			return r;
		}
		if ((r = tx_commit(q)) < 0)
			return r;
	}
	return 0;
}

static int
reset_sending(struct queue *q)
{
	sqlite3_stmt *s = NULL;
	int r;
	if ((r = tx_begin(q)) < 0)
		return r;
	int rc = sqlite3_prepare_v2(q->db,
	                            "UPDATE sheets SET state = 'queued', batch_id = NULL, updated = ?1 "
	                            "WHERE state = 'sending'",
	                            -1, &s, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(s, 1, now_ms(q));
		rc = sqlite3_step(s);
	}
	if (rc != SQLITE_DONE) {
		r = sqlerr(q, rc, "sending to queued");
		sqlite3_finalize(s);
		tx_rollback(q);
		return r;
	}
	int changed = sqlite3_changes(q->db);
	sqlite3_finalize(s);
	q->dn[QUEUE_SENDING] -= changed;
	q->dn[QUEUE_QUEUED] += changed;
	if ((r = tx_commit(q)) == 0)
		q->reset_pending = false;
	return r;
}

static int
lock_take(struct queue *q)
{
	q->lock_fd = open(q->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (q->lock_fd < 0) {
		int e = errno;
		seterr(q, "queue lock %s: %s", q->lock_path, strerror(e));
		return -e;
	}
	if (flock(q->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK) {
			seterr(q, "queue %s is in use by another process", q->db_path);
			return -EBUSY;
		}
		seterr(q, "queue lock %s: %s", q->lock_path, strerror(e));
		return -e;
	}
	return 0;
}

static int
path_join(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

/* Open the database file (read-write, or read-only), check it, WAL,
 * pragmas, migrations (read-write only), counters. */
static int
db_open(struct queue *q, bool ro, bool existed)
{
	int flags = ro ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	char uri[3 * PATH_MAX_LEN + 32];
	const char *name = q->db_path;
	struct stat wst;
	char walpath[PATH_MAX_LEN + 8];
	snprintf(walpath, sizeof(walpath), "%s-wal", q->db_path);
	if (ro && (stat(walpath, &wst) < 0 || wst.st_size == 0)) {
		/* read-only on a full disk, everything in the main file (a clean
		 * stop): opened immutable, so SQLite needs no -shm file, which the
		 * full disk may not let it create (the flock keeps writers out) */
		size_t o = (size_t)snprintf(uri, sizeof(uri), "file:");
		for (const char *c = q->db_path; *c && o + 4 < sizeof(uri); c++)
			o += (size_t)(*c == '%' || *c == '?' || *c == '#'
			                      ? snprintf(uri + o, sizeof(uri) - o, "%%%02X", (unsigned char)*c)
			                      : snprintf(uri + o, sizeof(uri) - o, "%c", *c));
		snprintf(uri + o, sizeof(uri) - o, "?immutable=1");
		name = uri;
		flags |= SQLITE_OPEN_URI;
	}
	int rc = sqlite3_open_v2(name, &q->db, flags | SQLITE_OPEN_NOMUTEX, q->vfs);
	if (rc != SQLITE_OK)
		return sqlerr(q, rc, "open");
	sqlite3_extended_result_codes(q->db, 1);
	sqlite3_busy_timeout(q->db, q->busy_timeout_ms > 0 ? q->busy_timeout_ms : 5000);
	sqlite3_db_config(q->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	int r;
	if (!ro && !existed && (r = fs_fsync_dir(q->dir)) < 0) {
		seterr(q, "queue: fsync %s: %s", q->dir, strerror(-r));
		return r;
	}
	if (existed && !q->skip_quick_check) {
		long long ver = 0;
		if (q->defer_quick_check && pragma_int(q, "PRAGMA user_version", &ver) == 0 &&
		    ver == QUEUE_SCHEMA_VERSION)
			q->check_pending = true; /* queue_check, on the queue thread */
		else if ((r = quick_check(q)) < 0)
			return r;
	}
	if (!ro) {
		sqlite3_stmt *s = NULL;
		rc = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
		if (rc == SQLITE_OK)
			rc = sqlite3_step(s);
		const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
		bool wal = mode && strcmp((const char *)mode, "wal") == 0;
		if (rc != SQLITE_ROW || !wal) {
			r = rc == SQLITE_ROW ? -EIO : sqlerr(q, rc, "journal_mode");
			if (rc == SQLITE_ROW)
				seterr(q, "queue %s: cannot switch to WAL mode", q->db_path);
			sqlite3_finalize(s);
			if (r == -EUCLEAN)
				seterr(q, "queue %s is damaged or not a database (%s); vitaled will not write "
				       "to it: keep the file for recovery and restore from backup",
				       q->db_path, sqlite3_errstr(rc));
			return r;
		}
		sqlite3_finalize(s);
		if ((r = exec_sql(q,
		                  "PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY; "
		                  "PRAGMA journal_size_limit = 4194304; PRAGMA cell_size_check = ON;",
		                  "pragmas")) < 0)
			return r;
		if ((r = migrate(q)) < 0)
			return r;
	} else {
		long long ver = 0;
		if ((r = pragma_int(q, "PRAGMA user_version", &ver)) < 0)
			return r;
		if (ver != QUEUE_SCHEMA_VERSION) {
			seterr(q, "queue %s: schema version %lld needs a migration, which cannot be "
			       "written while the disk is full",
			       q->db_path, ver);
			return -ENOSPC;
		}
	}
	return load_counters(q);
}

static void
db_close(struct queue *q)
{
	for (int i = 0; i < ST_COUNT; i++) {
		sqlite3_finalize(q->st[i]);
		q->st[i] = NULL;
	}
	if (q->db)
		sqlite3_close(q->db);
	q->db = NULL;
}

static int
meta_text(struct queue *q, const char *k, char *buf, size_t len)
{
	sqlite3_stmt *s = NULL;
	buf[0] = '\0';
	int rc = sqlite3_prepare_v2(q->db, "SELECT CAST(v AS TEXT) FROM meta WHERE k = ?1", -1, &s,
	                            NULL);
	if (rc != SQLITE_OK)
		return sqlerr(q, rc, "meta");
	sqlite3_bind_text(s, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	int r = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : sqlerr(q, rc, "meta");
	if (rc == SQLITE_ROW)
		copy_col(s, 0, buf, len);
	sqlite3_finalize(s);
	return r;
}

/* The queue's clock at open (see qclock_now). */
static void
qclock_init(struct queue *q)
{
	char v[64];
	long long qs = 0, ws = 0, rowmax = 0;
	int64_t wall = now_ms(q);
	q->mbase = mono_now(q);
	pragma_int(q, "SELECT COALESCE((SELECT qclock FROM sheets ORDER BY rowid DESC LIMIT 1), 0)",
	           &rowmax);
	if (meta_text(q, "qclock", v, sizeof(v)) == 0 && sscanf(v, "%lld %lld", &qs, &ws) == 2) {
		int64_t gap = wall - ws;
		q->qbase = qs + (gap >= 0 && gap <= QCLOCK_GAP_MAX_MS ? gap : 0);
	} else {
		q->qbase = wall; /* a new queue (or one from before v5): the wall clock, once */
	}
	if (rowmax > q->qbase)
		q->qbase = rowmax;
	if (!q->read_only) {
		snprintf(v, sizeof(v), "INSERT OR REPLACE INTO meta (k, v) VALUES ('qclock', '%lld %lld')",
		         (long long)q->qbase, (long long)wall);
		exec_sql(q, v, "queue clock"); /* a full disk: saved at the next purge */
	}
}

/* Build the mark's reservations from the stored numbers (no mark yet). */
static int
hwm_from_db(struct queue *q)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(q->db,
	                            "SELECT practitioner, care_date, MAX(seq) FROM sheets "
	                            "WHERE seq IS NOT NULL GROUP BY practitioner, care_date "
	                            "UNION ALL SELECT practitioner, care_date, floor FROM seq_floor",
	                            -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlerr(q, rc, "high-water mark");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *p = (const char *)sqlite3_column_text(s, 0);
		const char *d = (const char *)sqlite3_column_text(s, 1);
		uint32_t v = (uint32_t)sqlite3_column_int64(s, 2);
		if (!p || !d)
			continue;
		struct hwm_ent *e = hwm_find(q, p, d);
		if (!e && !(e = hwm_add(q, p, d))) {
			sqlite3_finalize(s);
			return -ENOMEM;
		}
		if (v > e->reserved)
			e->reserved = v;
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : sqlerr(q, rc, "high-water mark");
}

/* Compare the queue with its high-water mark; refuse a lost or rolled-back
 * queue (-ESTALE) unless accept. */
static int
hwm_open(struct queue *q, bool key_existed, bool db_existed, bool accept)
{
	struct hwm_file f;
	char v[32], desc[400];
	long long floors = 0;
	int r = hwm_read(q, &f, true);
	if (r < 0)
		return r;
	if (meta_text(q, "purged_numbered", v, sizeof(v)) == 0)
		q->purged_numbered = strtoull(v, NULL, 10);
	q->numbered = total_rows(q, false) - q->n[QUEUE_DRAFT] + q->purged_numbered;
	if ((r = pragma_int(q, "SELECT COUNT(*) FROM seq_floor", &floors)) < 0)
		goto out;
	const char *lost = NULL;
	if (f.present && !f.authentic && f.count == 0 && f.n == 0)
		f.present = false; /* it protected nothing: as if there were none */
	if (f.present && !f.authentic)
		lost = "the high-water mark queue.hwm does not authenticate with queue.key (altered, or "
		       "the key was replaced)";
	else if (key_existed && !db_existed)
		lost = "queue.db is missing or empty while queue.key exists";
	else if (f.present && q->numbered < f.count)
		lost = "queue.db holds fewer numbered sheets than its high-water mark: it was rolled "
		       "back or replaced";
	else if (f.present && f.n > 0 && q->numbered == 0 && floors == 0)
		lost = "queue.db holds no numbered sheet while the high-water mark has numbers reserved";
	hwm_describe(&f, desc, sizeof(desc));
	if (lost && !accept) {
		seterr(q,
		       "queue %s was lost: %s (the mark records %llu numbered sheets, %s; the queue holds "
		       "%llu). vitaled will not start on it: restore queue.db from backup, or accept the "
		       "loss with `vitaled --accept-new-queue` (numbers then continue above the mark)",
		       q->db_path, lost, (unsigned long long)f.count, desc,
		       (unsigned long long)q->numbered);
		r = -ESTALE;
		goto out;
	}
	if (lost && q->read_only) {
		seterr(q, "queue %s was lost (%s), and the loss cannot be accepted while the disk is "
		       "full", q->db_path, lost);
		r = -ENOSPC;
		goto out;
	}
	free(q->hwm);
	q->hwm = f.e;
	q->nhwm = q->hwm_cap = f.n;
	f.e = NULL;
	if (lost) {
		/* numbers continue above what the mark reserved */
		if ((r = tx_begin(q)) < 0)
			goto out;
		for (size_t i = 0; i < q->nhwm && r == 0; i++) {
			char sql[400];
			snprintf(sql, sizeof(sql),
			         "INSERT OR REPLACE INTO seq_floor VALUES ('%s', '%s', MAX(%u, COALESCE("
			         "(SELECT floor FROM seq_floor WHERE practitioner = '%s' AND care_date = '%s'), 0)))",
			         q->hwm[i].pract, q->hwm[i].date, q->hwm[i].reserved, q->hwm[i].pract,
			         q->hwm[i].date);
			if (strchr(q->hwm[i].pract, '\''))
				continue; /* never from this vitaled: practitioner ids are digits */
			r = exec_sql(q, sql, "number floors");
		}
		if (r < 0) {
			tx_rollback(q);
			goto out;
		}
		if ((r = tx_commit(q)) < 0)
			goto out;
		snprintf(q->notice, sizeof(q->notice),
		         "--accept-new-queue: a new queue accepted in place of a lost one: %s; the mark "
		         "recorded %llu numbered sheets (%s), the queue holds %llu: %llu sheets lost; "
		         "numbers continue above the mark",
		         lost, (unsigned long long)f.count, desc, (unsigned long long)q->numbered,
		         (unsigned long long)(f.count > q->numbered ? f.count - q->numbered : 0));
	} else if (accept) {
		snprintf(q->notice, sizeof(q->notice),
		         "--accept-new-queue: nothing was lost (the mark records %llu numbered sheets, "
		         "the queue holds %llu): ignored",
		         (unsigned long long)f.count, (unsigned long long)q->numbered);
	}
	if (!f.present || lost) {
		if ((r = hwm_from_db(q)) < 0)
			goto out;
	}
	r = 0;
	if (!q->read_only && (!f.present || lost || f.count != q->numbered))
		r = hwm_write(q);
out:
	free(f.e);
	return r;
}

/* Everything after the lock: the database, the key, the mark, the clock. */
static int
open_all(struct queue *q, bool ro, bool accept, bool key_existed, bool db_existed)
{
	int r;
	q->read_only = ro;
	if ((r = db_open(q, ro, db_existed)) < 0)
		return r;
	if (ro) {
		if ((r = key_read(q)) < 0)
			return r == -ENOENT ? -ENOKEY : r;
		if (keycheck_verify(q) != 1) {
			seterr(q, "queue key %s does not open this queue", key_name(q));
			return -EKEYREJECTED;
		}
	} else if ((r = key_setup(q)) < 0) {
		return r;
	}
	unsigned int mlen = sizeof(q->hwm_key);
	HMAC(EVP_sha256(), q->key, QUEUE_KEY_LEN, (const unsigned char *)HWM_KEY_LABEL,
	     strlen(HWM_KEY_LABEL), q->hwm_key, &mlen);
	if ((r = hwm_open(q, key_existed, db_existed, accept)) < 0)
		return r;
	qclock_init(q);
	if (!ro && q->n[QUEUE_SENDING] > 0) {
		r = reset_sending(q);
		if (r == -ENOSPC || r == -EIO) {
			/* The disk is full or failing: open anyway so the queue can be
			 * read; queue_take retries the reset before sending anything. */
			q->reset_pending = true;
		} else if (r < 0) {
			return r;
		}
	} else if (ro && q->n[QUEUE_SENDING] > 0) {
		q->reset_pending = true;
	}
	return 0;
}

static void
unlink_db(struct queue *q)
{
	char p[PATH_MAX_LEN + 8];
	unlink(q->db_path);
	snprintf(p, sizeof(p), "%s-wal", q->db_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", q->db_path);
	unlink(p);
}

int
queue_check(struct queue *q)
{
	if (!q)
		return -EINVAL;
	if (!q->check_pending)
		return q->damaged ? -EUCLEAN : 0;
	q->check_pending = false;
	int r = quick_check(q);
	if (r == 0)
		r = load_bytes(q);
	/* both read the whole file through SQLite's page cache (up to its
	 * 2 MiB): let it go, the steady state needs a few pages */
	sqlite3_db_release_memory(q->db);
	if (r < 0) {
		q->damaged = true;
		snprintf(q->damage, sizeof(q->damage), "%s", q->errmsg);
		if (!q->damage[0])
			snprintf(q->damage, sizeof(q->damage), "queue %.400s: PRAGMA quick_check failed (%s)",
			         q->db_path, strerror(-r));
	}
	return r;
}

const char *
queue_damage(const struct queue *q)
{
	return q && q->damaged ? q->damage : NULL;
}

int
queue_open(const struct queue_opts *o, struct queue **out, char *err, size_t errlen)
{
	struct queue *q = NULL;
	int r;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!o || !o->dir || !o->dir[0]) {
		if (err)
			snprintf(err, errlen, "queue: no state directory");
		return -EINVAL;
	}
	if (!(q = calloc(1, sizeof(*q)))) {
		if (err)
			snprintf(err, errlen, "queue: out of memory");
		return -ENOMEM;
	}
	q->lock_fd = -1;
	q->max_sheets = o->max_sheets;
	q->max_bytes = o->max_bytes;
	q->clock_ms = o->clock_ms;
	q->clock_arg = o->clock_arg;
	q->mono_ms = o->mono_ms;
	q->vfs = o->vfs;
	q->busy_timeout_ms = o->busy_timeout_ms;
	q->skip_quick_check = o->skip_quick_check;
	q->defer_quick_check = o->defer_quick_check;
	q->hwm_written = INT64_MIN / 2;
	if ((r = path_join(q->db_path, sizeof(q->db_path), o->dir, "queue.db")) < 0 ||
	    (r = path_join(q->key_path, sizeof(q->key_path), o->dir, "queue.key")) < 0 ||
	    (r = path_join(q->lock_path, sizeof(q->lock_path), o->dir, "queue.lock")) < 0 ||
	    (r = path_join(q->hwm_path, sizeof(q->hwm_path), o->dir, "queue.hwm")) < 0 ||
	    snprintf(q->dir, sizeof(q->dir), "%s", o->dir) >= (int)sizeof(q->dir)) {
		r = -ENAMETOOLONG;
		seterr(q, "queue: state directory path too long");
		goto out;
	}
	if ((r = fs_mkdir_p(o->dir, 0700)) < 0) {
		seterr(q, "queue: cannot create %s: %s", o->dir, strerror(-r));
		goto out;
	}
	if ((r = lock_take(q)) < 0)
		goto out;

	struct stat st;
	bool db_existed = stat(q->db_path, &st) == 0 && st.st_size > 0;
	bool db_file = db_existed || stat(q->db_path, &st) == 0;
	bool key_existed = access(q->key_path, F_OK) == 0;
	r = open_all(q, false, o->accept_new, key_existed, db_existed);
	if ((r == -ENOSPC || r == -EIO) && o->allow_readonly && db_existed && key_existed) {
		/* the disk is full: read-only, so that what is stored can be read */
		char keep[sizeof(q->errmsg)];
		memcpy(keep, q->errmsg, sizeof(keep));
		db_close(q);
		r = open_all(q, true, false, key_existed, db_existed);
		if (r == 0)
			snprintf(q->notice, sizeof(q->notice),
			         "the queue is open read-only: it cannot be written (%.400s); "
			         "writes resume once space is freed", keep);
	}
	if (r < 0 && !db_existed) {
		/* refused: leave no new file behind (or the empty one as it was),
		 * so the next start sees the same state: a lost queue stays refused */
		db_close(q);
		unlink_db(q);
		if (db_file) {
			int fd = open(q->db_path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
			if (fd >= 0)
				close(fd);
		}
	}
	if (r < 0)
		goto out;
	*out = q;
	q = NULL;
out:
	if (q) {
		if (err)
			snprintf(err, errlen, "%s", q->errmsg[0] ? q->errmsg : strerror(-r));
		queue_close(q);
	}
	return r;
}

const char *
queue_open_notice(const struct queue *q)
{
	return q ? q->notice : "";
}

bool
queue_read_only(const struct queue *q)
{
	return q && q->read_only;
}

int
queue_try_writable(struct queue *q)
{
	if (!q)
		return -EINVAL;
	if (!q->read_only)
		return 0;
	int r = fs_probe_writable(q->dir); /* cheap: no reopen while it is still full */
	if (r < 0) {
		seterr(q, "the queue is read-only: %s is still not writable: %s", q->dir, strerror(-r));
		return r;
	}
	bool skip = q->skip_quick_check;
	q->skip_quick_check = true; /* checked at the read-only open */
	db_close(q);
	r = open_all(q, false, false, true, true);
	q->skip_quick_check = skip;
	if (r < 0) {
		char keep[sizeof(q->errmsg)];
		memcpy(keep, q->errmsg, sizeof(keep));
		db_close(q);
		int r2 = open_all(q, true, false, true, true);
		memcpy(q->errmsg, keep, sizeof(keep));
		if (r2 < 0)
			return r2;
		q->read_only = true;
		return r;
	}
	q->mins_known = false;
	return 0;
}

bool
queue_hwm_pending(const struct queue *q)
{
	return q && !q->read_only && q->hwm_dirty;
}

int
queue_hwm_flush(struct queue *q)
{
	if (!q || q->read_only || !q->hwm_dirty)
		return 0;
	return hwm_write(q);
}

void
queue_close(struct queue *q)
{
	if (!q)
		return;
	if (q->db && q->hwm_dirty && !q->read_only)
		hwm_write(q);
	db_close(q);
	free(q->hwm);
	OPENSSL_cleanse(q->hwm_key, sizeof(q->hwm_key));
	if (q->lock_fd >= 0)
		close(q->lock_fd); /* releases the flock */
	EVP_CIPHER_CTX_free(q->cctx); /* also wipes the expanded key */
	EVP_CIPHER_free(q->gcm);
	secmem_free(q->key, QUEUE_KEY_LEN); /* wiped, unlocked, unmapped */
	free(q);
}

/* ------------------------------------------------------------------ */
/* writes */

/* Before number seq is used: make sure the mark reserves it (written
 * now, a block of QUEUE_HWM_BLOCK at a time). */
static int
hwm_reserve(struct queue *q, const char *pract, const char *date, uint32_t seq)
{
	struct hwm_ent *e = hwm_find(q, pract, date);
	if (e && seq <= e->reserved)
		return 0;
	bool added = !e;
	if (!e && !(e = hwm_add(q, pract, date)))
		return -ENOMEM;
	uint32_t old = e->reserved;
	e->reserved = seq > UINT32_MAX - QUEUE_HWM_BLOCK ? UINT32_MAX : seq + QUEUE_HWM_BLOCK - 1;
	int r = hwm_write(q);
	if (r < 0) {
		q->fatal = false; /* this item only */
		if (added)
			q->nhwm--;
		else if ((e = hwm_find(q, pract, date)))
			e->reserved = old;
		return r == -ENOSPC ? -ENOSPC : -EIO;
	}
	return 0;
}

static int
next_seq(struct queue *q, const char *practitioner, const char *care_date, uint32_t *seq)
{
	sqlite3_stmt *s = stmt(q, ST_NEXTSEQ);
	*seq = 0;
	if (!s)
		return -EIO;
	sqlite3_bind_text(s, 1, practitioner, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, care_date, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = 0;
	if (rc == SQLITE_ROW) {
		sqlite3_int64 v = sqlite3_column_int64(s, 0);
		if (v <= 0 || v > UINT32_MAX) {
			seterr(q, "sequence numbers exhausted for %s on %s", practitioner, care_date);
			r = -ENOSPC;
		} else {
			*seq = (uint32_t)v;
		}
	} else {
		r = sqlerr(q, rc, "sequence number");
	}
	stmt_done(s);
	if (r == 0)
		r = hwm_reserve(q, practitioner, care_date, *seq);
	if (r < 0)
		*seq = 0;
	return r;
}

static int
id_exists(struct queue *q, const char *id)
{
	sqlite3_stmt *s = stmt(q, ST_EXISTS);
	if (!s)
		return -EIO;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sqlerr(q, rc, "lookup");
	stmt_done(s);
	return r;
}

/* Produce the encrypted blob of an item (calling its seal if it has one). */
static int
item_blob(struct queue *q, const struct queue_put *it, uint32_t seq, uint8_t **blob,
          size_t *blen, size_t *ptlen)
{
	uint8_t *owned = NULL;
	size_t len = it->payload_len;
	const uint8_t *pt = it->payload;
	int r;
	*blob = NULL;
	*blen = 0;
	*ptlen = 0;
	if (it->seal) {
		if ((r = it->seal(it->seal_arg, it, seq, &owned, &len)) < 0) {
			seterr(q, "sheet %s: sealing failed: %s", it->id, strerror(-r));
			return r;
		}
		pt = owned;
	}
	if (!pt && len) {
		seterr(q, "sheet %s: no payload", it->id);
		return -EINVAL;
	}
	if (len > QUEUE_PAYLOAD_MAX) {
		seterr(q, "sheet %s: payload of %zu bytes is over the %u limit", it->id, len,
		       QUEUE_PAYLOAD_MAX);
		r = -E2BIG;
	} else {
		r = blob_seal(q, it->id, strlen(it->id), pt ? pt : (const uint8_t *)"", len, blob,
		              blen);
		if (r < 0)
			seterr(q, "sheet %s: encryption failed", it->id);
		*ptlen = len;
	}
	if (owned)
		queue_free_payload(owned, len);
	return r;
}

static int
check_limits(struct queue *q, size_t add_rows, int64_t add_bytes)
{
	uint64_t rows = total_rows(q, true);
	int64_t bytes = (int64_t)q->bytes + q->dbytes;
	if (q->max_sheets > 0 && rows + add_rows > (uint64_t)q->max_sheets) {
		seterr(q, "queue full: %llu sheets stored, limit %lld", (unsigned long long)rows,
		       q->max_sheets);
		return -ENOSPC;
	}
	if (q->max_bytes > 0 && bytes + add_bytes > q->max_bytes) {
		seterr(q, "queue full: %lld bytes stored, limit %lld", (long long)bytes, q->max_bytes);
		return -ENOSPC;
	}
	return 0;
}

bool
queue_request_id_valid(const char *s)
{
	if (!s)
		return false;
	size_t n = strnlen(s, QUEUE_REQUEST_ID_MAX + 1);
	if (n == 0 || n > QUEUE_REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	return true;
}

static int
find_request(struct queue *q, const char *rid, struct queue_meta *m)
{
	sqlite3_stmt *s = stmt(q, ST_FIND_REQUEST);
	if (!s)
		return -EIO;
	sqlite3_bind_text(s, 1, rid, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = 0;
	if (rc == SQLITE_ROW)
		read_meta(s, m);
	else if (rc == SQLITE_DONE)
		r = -ENOENT;
	else
		r = sqlerr(q, rc, "request id lookup");
	stmt_done(s);
	return r;
}

int
queue_find_request(struct queue *q, const char *rid, struct queue_meta *m)
{
	if (!q || !m || !queue_request_id_valid(rid))
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	int r = find_request(q, rid, m);
	if (r == -ENOENT)
		seterr(q, "no sheet was made by request %s", rid);
	return r;
}

/* One insert inside the batch transaction. The INSERT is the item's only
 * write and the last step, and SQLite undoes a failed statement by itself,
 * so a failing item leaves the others alone without a savepoint. *fatal
 * says the whole transaction must be abandoned. */
static int
put_one(struct queue *q, struct queue_put *it, int64_t now, bool *fatal)
{
	uint8_t *blob = NULL;
	size_t blen = 0, ptlen = 0;
	uint32_t seq = 0;
	int r;
	*fatal = false;
	q->fatal = false;
	if (!valid_token(it->id, QUEUE_ID_MAX) || !valid_practitioner(it->practitioner) ||
	    !valid_date(it->care_date) || (!it->draft && !valid_date(it->due_date))) {
		seterr(q, "sheet: bad id, practitioner or date");
		return -EINVAL;
	}
	if (it->request_id && !queue_request_id_valid(it->request_id)) {
		seterr(q, "sheet: bad request id");
		return -EINVAL;
	}
	if (q->read_only) {
		seterr(q, "the queue is read-only: the disk was full when vitaled started");
		return -ENOSPC;
	}
	if (it->request_id) {
		r = find_request(q, it->request_id, &it->replay);
		if (r == 0) {
			it->replayed = true;
			it->seq = it->replay.seq;
			return 0;
		}
		if (r != -ENOENT)
			goto out;
	}
	if ((r = check_limits(q, 1, 0)) < 0)
		return r;
	if ((r = id_exists(q, it->id)) != 0) {
		if (r > 0) {
			seterr(q, "sheet %s is already in the queue", it->id);
			r = -EEXIST;
		}
		goto out;
	}
	if (!it->draft && (r = next_seq(q, it->practitioner, it->care_date, &seq)) < 0)
		goto out;
	if ((r = item_blob(q, it, seq, &blob, &blen, &ptlen)) < 0)
		goto out;
	if ((r = check_limits(q, 1, (int64_t)blen)) < 0)
		goto out;
	sqlite3_stmt *s = stmt(q, ST_INSERT);
	if (!s) {
		r = -EIO;
		goto out;
	}
	sqlite3_bind_text(s, 1, it->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, state_names[it->draft ? QUEUE_DRAFT : QUEUE_QUEUED], -1,
	                  SQLITE_STATIC);
	sqlite3_bind_text(s, 3, it->practitioner, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, it->care_date, -1, SQLITE_STATIC);
	if (it->draft) {
		sqlite3_bind_null(s, 5);
		sqlite3_bind_null(s, 6);
	} else {
		sqlite3_bind_int64(s, 5, seq);
		sqlite3_bind_text(s, 6, it->due_date, -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(s, 7, now);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)ptlen);
	sqlite3_bind_blob(s, 9, blob, (int)blen, SQLITE_STATIC);
	const char *cert = it->cert ? it->cert : q->current_cert;
	if (!it->draft && cert[0])
		sqlite3_bind_text(s, 10, cert, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 10);
	sqlite3_bind_int64(s, 11, qclock_now(q));
	if (it->request_id)
		sqlite3_bind_text(s, 12, it->request_id, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 12);
	int rc = sqlite3_step(s);
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		r = sqlerr(q, rc, "insert");
		goto out;
	}
	if (!it->draft)
		q->d_numbered++;
	q->dn[it->draft ? QUEUE_DRAFT : QUEUE_QUEUED]++;
	q->d_put[it->draft ? QUEUE_DRAFT : QUEUE_QUEUED]++;
	q->dbytes += (int64_t)blen;
	if (!it->draft) {
		if (!q->d_min_created || now < q->d_min_created)
			q->d_min_created = now;
		if (!q->d_min_due[0] || strcmp(it->due_date, q->d_min_due) < 0)
			snprintf(q->d_min_due, sizeof(q->d_min_due), "%s", it->due_date);
	}
	it->seq = seq;
out:
	if (r < 0)
		*fatal = q->fatal;
	free(blob);
	return r;
}

static void
batch_fail(struct queue_put *items, size_t n, int r)
{
	for (size_t i = 0; i < n; i++) {
		items[i].result = r;
		items[i].seq = 0;
		items[i].replayed = false;
	}
}

int
queue_put_batch(struct queue *q, struct queue_put *items, size_t n)
{
	int r;
	if (!q || (!items && n))
		return -EINVAL;
	if (n == 0)
		return 0;
	batch_fail(items, n, 0);
	int64_t now = now_ms(q);
	if ((r = tx_begin(q)) < 0) {
		batch_fail(items, n, r);
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		bool fatal = false;
		r = put_one(q, &items[i], now, &fatal);
		if (fatal) {
			char keep[sizeof(q->errmsg)];
			memcpy(keep, q->errmsg, sizeof(keep));
			tx_rollback(q);
			memcpy(q->errmsg, keep, sizeof(keep));
			batch_fail(items, n, r);
			return r;
		}
		items[i].result = r;
	}
	if ((r = tx_commit(q)) < 0) {
		batch_fail(items, n, r);
		return r;
	}
	return 0;
}

int
queue_put(struct queue *q, struct queue_put *item)
{
	if (!item)
		return -EINVAL;
	int r = queue_put_batch(q, item, 1);
	return r < 0 ? r : item->result;
}

/* Read the meta row of id inside or outside a transaction. */
static int
meta_get(struct queue *q, const char *id, struct queue_meta *m, int64_t *stored_len)
{
	sqlite3_stmt *s = stmt(q, ST_META);
	if (!s)
		return -EIO;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = 0;
	if (rc == SQLITE_ROW) {
		read_meta(s, m);
		if (stored_len)
			*stored_len = sqlite3_column_int64(s, 17);
	} else if (rc == SQLITE_DONE) {
		seterr(q, "sheet %s is not in the queue", id);
		r = -ENOENT;
	} else {
		r = sqlerr(q, rc, "lookup");
	}
	stmt_done(s);
	return r;
}

int
queue_complete_draft(struct queue *q, struct queue_put *it)
{
	struct queue_meta m;
	uint8_t *blob = NULL;
	size_t blen = 0, ptlen = 0;
	int64_t oldlen = 0;
	uint32_t seq = 0;
	int r;
	if (!q || !it)
		return -EINVAL;
	it->seq = 0;
	it->result = 0;
	it->replayed = false;
	if (it->request_id && !queue_request_id_valid(it->request_id)) {
		seterr(q, "sheet: bad request id");
		return it->result = -EINVAL;
	}
	if (q->read_only) {
		seterr(q, "the queue is read-only: the disk was full when vitaled started");
		return it->result = -ENOSPC;
	}
	if (!valid_token(it->id, QUEUE_ID_MAX) || !valid_date(it->due_date) ||
	    (it->practitioner && !valid_practitioner(it->practitioner)) ||
	    (it->care_date && !valid_date(it->care_date))) {
		seterr(q, "sheet: bad id, practitioner or date");
		return it->result = -EINVAL;
	}
	if ((r = tx_begin(q)) < 0)
		return it->result = r;
	if ((r = meta_get(q, it->id, &m, &oldlen)) < 0)
		goto fail;
	if (m.state != QUEUE_DRAFT && it->request_id &&
	    !strcmp(m.complete_request_id, it->request_id)) {
		/* this completion again (its answer was lost): the same sheet */
		it->replayed = true;
		it->replay = m;
		it->seq = m.seq;
		tx_rollback(q);
		return it->result = 0;
	}
	if (m.state != QUEUE_DRAFT) {
		seterr(q, "sheet %s is %s, not a draft", it->id, state_names[m.state]);
		r = -EPERM;
		goto fail;
	}
	const char *pract = it->practitioner ? it->practitioner : m.practitioner;
	const char *date = it->care_date ? it->care_date : m.care_date;
	if ((r = next_seq(q, pract, date, &seq)) < 0)
		goto fail;
	struct queue_put sealed = *it;
	sealed.practitioner = pract;
	sealed.care_date = date;
	sealed.draft = false;
	if ((r = item_blob(q, &sealed, seq, &blob, &blen, &ptlen)) < 0)
		goto fail;
	if ((r = check_limits(q, 0, (int64_t)blen - oldlen)) < 0)
		goto fail;
	sqlite3_stmt *s = stmt(q, ST_COMPLETE);
	if (!s) {
		r = -EIO;
		goto fail;
	}
	sqlite3_bind_text(s, 1, it->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, pract, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, date, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, seq);
	sqlite3_bind_text(s, 5, it->due_date, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, now_ms(q));
	sqlite3_bind_int64(s, 7, (sqlite3_int64)ptlen);
	sqlite3_bind_blob(s, 8, blob, (int)blen, SQLITE_STATIC);
	if (it->request_id)
		sqlite3_bind_text(s, 9, it->request_id, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 9);
	int rc = sqlite3_step(s);
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		r = sqlerr(q, rc, "complete draft");
		if (r == -EEXIST)
			seterr(q, "request id %s already made another sheet", it->request_id);
		goto fail;
	}
	q->d_numbered++;
	q->dn[QUEUE_DRAFT]--;
	q->dn[QUEUE_QUEUED]++;
	q->dbytes += (int64_t)blen - oldlen;
	if ((r = tx_commit(q)) < 0)
		goto out;
	it->seq = seq;
	goto out;
fail: {
	char keep[sizeof(q->errmsg)];
	memcpy(keep, q->errmsg, sizeof(keep));
	tx_rollback(q);
	memcpy(q->errmsg, keep, sizeof(keep));
}
out:
	free(blob);
	return it->result = r;
}

int
queue_delete_draft(struct queue *q, const char *id)
{
	struct queue_meta m;
	int64_t oldlen = 0;
	int r;
	if (!q || !valid_token(id, QUEUE_ID_MAX))
		return -EINVAL;
	if ((r = tx_begin(q)) < 0)
		return r;
	if ((r = meta_get(q, id, &m, &oldlen)) < 0)
		goto fail;
	if (m.state != QUEUE_DRAFT) {
		seterr(q, "sheet %s is %s: only drafts can be deleted", id, state_names[m.state]);
		r = -EPERM;
		goto fail;
	}
	sqlite3_stmt *s = stmt(q, ST_DELETE_DRAFT);
	if (!s) {
		r = -EIO;
		goto fail;
	}
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	stmt_done(s);
	if (rc != SQLITE_DONE) {
		r = sqlerr(q, rc, "delete draft");
		goto fail;
	}
	q->dn[QUEUE_DRAFT]--;
	q->dbytes -= oldlen;
	return tx_commit(q);
fail: {
	char keep[sizeof(q->errmsg)];
	memcpy(keep, q->errmsg, sizeof(keep));
	tx_rollback(q);
	memcpy(q->errmsg, keep, sizeof(keep));
}
	return r;
}

/* ------------------------------------------------------------------ */
/* state transitions */

bool
queue_transition_allowed(enum queue_state from, enum queue_state to)
{
	switch (from) {
	case QUEUE_DRAFT:
		return to == QUEUE_QUEUED;
	case QUEUE_QUEUED:
		return to == QUEUE_SENDING;
	case QUEUE_SENDING:
		return to == QUEUE_QUEUED || to == QUEUE_ACCEPTED || to == QUEUE_REJECTED;
	case QUEUE_ACCEPTED:
		return to == QUEUE_PAID || to == QUEUE_REFUSED;
	default:
		return false;
	}
}

/* One transition inside an open transaction. */
static int
set_state(struct queue *q, const struct queue_meta *m, enum queue_state to, const char *reason,
          const char *code, const char *batch_id, int64_t now)
{
	uint8_t *rblob = NULL;
	size_t rlen = 0;
	int r = 0;
	if (reason && reason[0]) {
		char ad[QUEUE_ID_MAX + sizeof(REASON_AD_SUFFIX)];
		int adlen = reason_ad(m->id, ad, sizeof(ad));
		if (adlen < 0)
			return adlen;
		if ((r = blob_seal(q, ad, (size_t)adlen, (const uint8_t *)reason, strlen(reason),
		                   &rblob, &rlen)) < 0) {
			seterr(q, "sheet %s: encryption failed", m->id);
			return r;
		}
	}
	sqlite3_stmt *s = stmt(q, ST_SETSTATE);
	if (!s) {
		free(rblob);
		return -EIO;
	}
	sqlite3_bind_text(s, 1, m->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, state_names[to], -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	if (is_closed_state(to))
		sqlite3_bind_int64(s, 4, now);
	else
		sqlite3_bind_null(s, 4);
	if (to == QUEUE_SENDING && batch_id)
		sqlite3_bind_text(s, 5, batch_id, -1, SQLITE_STATIC);
	else if (to == QUEUE_QUEUED || !m->batch_id[0])
		sqlite3_bind_null(s, 5);
	else
		sqlite3_bind_text(s, 5, m->batch_id, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, to == QUEUE_SENDING ? 1 : 0);
	if (rblob)
		sqlite3_bind_blob(s, 7, rblob, (int)rlen, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 7);
	if (code && code[0])
		sqlite3_bind_text(s, 8, code, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 8);
	if (is_closed_state(to))
		sqlite3_bind_int64(s, 9, qclock_now(q));
	else
		sqlite3_bind_null(s, 9);
	int rc = sqlite3_step(s);
	stmt_done(s);
	free(rblob);
	if (rc != SQLITE_DONE)
		return sqlerr(q, rc, "state change");
	q->dn[m->state]--;
	q->dn[to]++;
	return 0;
}

static int
check_transition(struct queue *q, const struct queue_meta *m, enum queue_state to)
{
	if ((int)to < 0 || to >= QUEUE_NSTATES) {
		seterr(q, "sheet %s: unknown state", m->id);
		return -EINVAL;
	}
	if (m->state == QUEUE_DRAFT) {
		seterr(q, "sheet %s is a draft: it is queued by completing it", m->id);
		return -EPERM;
	}
	if (!queue_transition_allowed(m->state, to)) {
		seterr(q, "sheet %s: %s → %s is not allowed", m->id, state_names[m->state],
		       state_names[to]);
		return -EPERM;
	}
	return 0;
}

int
queue_update_batch(struct queue *q, struct queue_update *u, size_t n)
{
	int r;
	if (!q || (!u && n))
		return -EINVAL;
	if (n == 0)
		return 0;
	int64_t now = now_ms(q);
	for (size_t i = 0; i < n; i++)
		u[i].result = 0;
	if ((r = tx_begin(q)) < 0)
		goto fail_all;
	for (size_t i = 0; i < n; i++) {
		struct queue_meta m;
		if (!valid_token(u[i].id, QUEUE_ID_MAX) ||
		    (u[i].reason && strnlen(u[i].reason, QUEUE_REASON_MAX + 1) > QUEUE_REASON_MAX) ||
		    (u[i].code && !valid_token(u[i].code, QUEUE_CODE_MAX))) {
			seterr(q, "transition: bad id or reason too long");
			u[i].result = -EINVAL;
			continue;
		}
		q->fatal = false;
		r = meta_get(q, u[i].id, &m, NULL);
		if (r == 0)
			r = check_transition(q, &m, u[i].to);
		if (r == 0)
			r = set_state(q, &m, u[i].to, u[i].reason, u[i].code, NULL, now);
		if (r < 0 && q->fatal) {
			char keep[sizeof(q->errmsg)];
			memcpy(keep, q->errmsg, sizeof(keep));
			tx_rollback(q);
			memcpy(q->errmsg, keep, sizeof(keep));
			goto fail_all;
		}
		u[i].result = r;
	}
	if ((r = tx_commit(q)) < 0)
		goto fail_all;
	return 0;
fail_all:
	for (size_t i = 0; i < n; i++)
		u[i].result = r;
	return r;
}

int
queue_transition(struct queue *q, const char *id, enum queue_state to, const char *reason)
{
	struct queue_update u = { .id = id, .to = to, .reason = reason };
	int r = queue_update_batch(q, &u, 1);
	return r < 0 ? r : u.result;
}

int
queue_take(struct queue *q, const char *batch_id, size_t max, struct queue_meta *out, size_t *n)
{
	int r;
	if (n)
		*n = 0;
	if (!q || !n || (!out && max) || !valid_token(batch_id, QUEUE_BATCH_MAX))
		return -EINVAL;
	if (q->reset_pending && (r = reset_sending(q)) < 0)
		return r;
	if (max == 0)
		return 0;
	int64_t now = now_ms(q);
	if ((r = tx_begin(q)) < 0)
		return r;
	sqlite3_stmt *s = stmt(q, ST_TAKE_SELECT);
	if (!s) {
		r = -EIO;
		goto fail;
	}
	sqlite3_bind_int64(s, 1, (sqlite3_int64)max);
	size_t got = 0;
	int rc = SQLITE_DONE;
	while (got < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
		read_meta(s, &out[got++]);
	if (got < max && rc != SQLITE_DONE) {
		r = sqlerr(q, rc, "take");
		stmt_done(s);
		goto fail;
	}
	stmt_done(s);
	for (size_t i = 0; i < got; i++) {
		if ((r = set_state(q, &out[i], QUEUE_SENDING, NULL, NULL, batch_id, now)) < 0)
			goto fail;
	}
	if ((r = tx_commit(q)) < 0)
		return r;
	for (size_t i = 0; i < got; i++) {
		out[i].state = QUEUE_SENDING;
		out[i].updated_ms = now;
		out[i].attempts++;
		snprintf(out[i].batch_id, sizeof(out[i].batch_id), "%s", batch_id);
	}
	*n = got;
	return 0;
fail: {
	char keep[sizeof(q->errmsg)];
	memcpy(keep, q->errmsg, sizeof(keep));
	tx_rollback(q);
	memcpy(q->errmsg, keep, sizeof(keep));
}
	return r;
}

/* ------------------------------------------------------------------ */
/* reads */

int
queue_get(struct queue *q, const char *id, struct queue_meta *meta, uint8_t **payload,
          size_t *len)
{
	struct queue_meta m;
	if (payload)
		*payload = NULL;
	if (len)
		*len = 0;
	if (meta)
		memset(meta, 0, sizeof(*meta));
	if (!q || !valid_token(id, QUEUE_ID_MAX) || (payload && !len))
		return -EINVAL;
	int r = meta_get(q, id, &m, NULL);
	if (r < 0)
		return r;
	if (payload) {
		sqlite3_stmt *s = stmt(q, ST_PAYLOAD);
		if (!s)
			return -EIO;
		sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		if (rc == SQLITE_ROW) {
			r = blob_open(q, id, strlen(id), sqlite3_column_blob(s, 0),
			              (size_t)sqlite3_column_bytes(s, 0), payload, len);
			if (r == -EBADMSG)
				seterr(q, "sheet %s: stored payload does not decrypt with the queue key "
				       "(damaged, or written under another key)",
				       id);
		} else {
			r = rc == SQLITE_DONE ? -ENOENT : sqlerr(q, rc, "read");
		}
		stmt_done(s);
		if (r < 0)
			return r;
	}
	if (meta)
		*meta = m;
	return 0;
}

void
queue_free_payload(uint8_t *payload, size_t len)
{
	if (payload) {
		OPENSSL_cleanse(payload, len);
		free(payload);
	}
}

int
queue_get_reason(struct queue *q, const char *id, char *buf, size_t buflen)
{
	if (!q || !buf || buflen == 0 || !valid_token(id, QUEUE_ID_MAX))
		return -EINVAL;
	buf[0] = '\0';
	sqlite3_stmt *s = stmt(q, ST_REASON);
	if (!s)
		return -EIO;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	int r = 0;
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_BLOB) {
		char ad[QUEUE_ID_MAX + sizeof(REASON_AD_SUFFIX)];
		int adlen = reason_ad(id, ad, sizeof(ad));
		uint8_t *pt = NULL;
		size_t ptlen = 0;
		r = adlen < 0 ? adlen
		              : blob_open(q, ad, (size_t)adlen, sqlite3_column_blob(s, 0),
		                          (size_t)sqlite3_column_bytes(s, 0), &pt, &ptlen);
		if (r == 0)
			snprintf(buf, buflen, "%.*s", (int)ptlen, (const char *)pt);
		else if (r == -EBADMSG)
			seterr(q, "sheet %s: stored reason does not decrypt", id);
		free(pt);
	} else if (rc == SQLITE_DONE) {
		r = -ENOENT;
	} else if (rc != SQLITE_ROW) {
		r = sqlerr(q, rc, "read");
	}
	stmt_done(s);
	return r;
}

int
queue_list(struct queue *q, const struct queue_filter *f, struct queue_meta *out, size_t max,
           size_t *n)
{
	static const struct queue_filter all;
	char sql[1024];
	size_t off = 0;
	sqlite3_stmt *s = NULL;
	int r = 0, rc;
	if (n)
		*n = 0;
	if (!q || !n || (!out && max))
		return -EINVAL;
	if (!f)
		f = &all;
	if ((f->date_from && !valid_date(f->date_from)) || (f->date_to && !valid_date(f->date_to)) ||
	    (f->due_before && !valid_date(f->due_before)) ||
	    (f->practitioner && !valid_practitioner(f->practitioner)) || f->after < 0 ||
	    (f->request_id && !queue_request_id_valid(f->request_id)) ||
	    (f->states >> QUEUE_NSTATES) != 0)
		return -EINVAL;
	if (max == 0)
		return 0;
#define ADD(...) off += (size_t)snprintf(sql + off, sizeof(sql) - off, __VA_ARGS__)
	ADD("SELECT " META_COLS " FROM sheets WHERE rowid > ?1");
	if (f->states) {
		ADD(" AND state IN (");
		const char *sep = "";
		for (int i = 0; i < QUEUE_NSTATES; i++)
			if (f->states & QUEUE_STATE_BIT(i)) {
				ADD("%s'%s'", sep, state_names[i]);
				sep = ",";
			}
		ADD(")");
	}
	if (f->date_from)
		ADD(" AND care_date >= ?2");
	if (f->date_to)
		ADD(" AND care_date <= ?3");
	if (f->due_before)
		ADD(" AND due_date < ?4");
	if (f->practitioner)
		ADD(" AND practitioner = ?5");
	if (f->request_id)
		ADD(" AND (request_id = ?7 OR complete_request_id = ?7)");
	ADD(" ORDER BY rowid LIMIT ?6");
#undef ADD
	rc = sqlite3_prepare_v2(q->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlerr(q, rc, "list");
	sqlite3_bind_int64(s, 1, f->after);
	if (f->date_from)
		sqlite3_bind_text(s, 2, f->date_from, -1, SQLITE_STATIC);
	if (f->date_to)
		sqlite3_bind_text(s, 3, f->date_to, -1, SQLITE_STATIC);
	if (f->due_before)
		sqlite3_bind_text(s, 4, f->due_before, -1, SQLITE_STATIC);
	if (f->practitioner)
		sqlite3_bind_text(s, 5, f->practitioner, -1, SQLITE_STATIC);
	if (f->request_id)
		sqlite3_bind_text(s, 7, f->request_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)max);
	size_t got = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && got < max)
		read_meta(s, &out[got++]);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		r = sqlerr(q, rc, "list");
	sqlite3_finalize(s);
	*n = r < 0 ? 0 : got;
	return r;
}

int
queue_stats(struct queue *q, struct queue_stats *st)
{
	if (!q || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	for (int i = 0; i < QUEUE_NSTATES; i++)
		st->count[i] = q->n[i];
	st->total = total_rows(q, false);
	st->bytes = q->bytes;
	st->max_sheets = q->max_sheets;
	st->max_bytes = q->max_bytes;
	if (q->n[QUEUE_QUEUED] + q->n[QUEUE_SENDING] == 0) {
		q->mins_known = true;
		q->min_created = 0;
		q->min_due[0] = '\0';
		return 0;
	}
	if (q->mins_known) {
		st->oldest_queued_ms = q->min_created;
		memcpy(st->next_due, q->min_due, sizeof(st->next_due));
		return 0;
	}
	sqlite3_stmt *s = stmt(q, ST_MIN_CREATED);
	if (!s)
		return -EIO;
	int rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		st->oldest_queued_ms = sqlite3_column_int64(s, 0);
	stmt_done(s);
	if (rc != SQLITE_ROW)
		return sqlerr(q, rc, "stats");
	if (!(s = stmt(q, ST_MIN_DUE)))
		return -EIO;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		copy_col(s, 0, st->next_due, sizeof(st->next_due));
	stmt_done(s);
	if (rc != SQLITE_ROW)
		return sqlerr(q, rc, "stats");
	q->mins_known = true;
	q->min_created = st->oldest_queued_ms;
	memcpy(q->min_due, st->next_due, sizeof(q->min_due));
	return 0;
}

/* ------------------------------------------------------------------ */
/* retention */

static int
purge_where(struct queue *q, const char *sql, int64_t cutoff, int64_t qcutoff, size_t max,
            size_t *done, uint64_t *numbered)
{
	sqlite3_stmt *s = NULL;
	int rc = sqlite3_prepare_v2(q->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlerr(q, rc, "purge");
	sqlite3_bind_int64(s, 1, cutoff);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	sqlite3_bind_int64(s, 3, qcutoff);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (sqlite3_column_type(s, 2) != SQLITE_NULL)
			(*numbered)++;
		const unsigned char *t = sqlite3_column_text(s, 0);
		int st = t ? queue_state_parse((const char *)t) : -EINVAL;
		if (st >= 0)
			q->dn[st]--;
		q->dbytes -= sqlite3_column_int64(s, 1);
		(*done)++;
	}
	int r = rc == SQLITE_DONE ? 0 : sqlerr(q, rc, "purge");
	sqlite3_finalize(s);
	return r;
}

int
queue_purge(struct queue *q, const struct queue_retention *ret, size_t max, size_t *purged)
{
	int r;
	size_t done = 0;
	if (purged)
		*purged = 0;
	if (!q || !ret || ret->finished_days < 1 || ret->draft_days < 0 || max == 0)
		return -EINVAL;
	int64_t now = now_ms(q), qnow = qclock_now(q);
	int64_t fin = (int64_t)ret->finished_days * 86400000;
	uint64_t numbered = 0;
	if ((r = tx_begin(q)) < 0)
		return r;
	/* both clocks must say so: the wall clock (closed, created) and the
	 * queue's own (qclosed, qclock), which a jump of the wall clock does
	 * not move */
	r = purge_where(q,
	                "DELETE FROM sheets WHERE rowid IN (SELECT rowid FROM sheets "
	                "WHERE closed IS NOT NULL AND closed < ?1 AND state IN "
	                "('accepted','rejected','paid','refused') "
	                "AND COALESCE(qclosed, closed) < ?3 LIMIT ?2) "
	                "RETURNING state, length(payload), seq",
	                now - fin, qnow - fin, max, &done, &numbered);
	if (r == 0 && ret->draft_days > 0 && done < max) {
		int64_t dr = (int64_t)ret->draft_days * 86400000;
		r = purge_where(q,
		                "DELETE FROM sheets WHERE rowid IN (SELECT rowid FROM sheets "
		                "WHERE state = 'draft' AND created < ?1 "
		                "AND COALESCE(qclock, created) < ?3 LIMIT ?2) "
		                "RETURNING state, length(payload), seq",
		                now - dr, qnow - dr, max - done, &done, &numbered);
	}
	/* the numbered sheets ever stored stay countable (the mark's count),
	 * and the queue's clock is saved with every purge */
	char sql[200];
	if (r == 0) {
		snprintf(sql, sizeof(sql),
		         "INSERT OR REPLACE INTO meta (k, v) VALUES ('purged_numbered', %llu), "
		         "('qclock', '%lld %lld')",
		         (unsigned long long)(q->purged_numbered + numbered), (long long)qnow,
		         (long long)now);
		r = exec_sql(q, sql, "purge");
	}
	if (r < 0) {
		char keep[sizeof(q->errmsg)];
		memcpy(keep, q->errmsg, sizeof(keep));
		tx_rollback(q);
		memcpy(q->errmsg, keep, sizeof(keep));
		return r;
	}
	if ((r = tx_commit(q)) < 0)
		return r;
	q->purged_numbered += numbered;
	if (purged)
		*purged = done;
	return 0;
}

/* ------------------------------------------------------------------ */
/* names */

const char *
queue_last_error(const struct queue *q)
{
	return q ? q->errmsg : "";
}

const char *
queue_error_name(int err)
{
	switch (err) {
	case 0:
		return "Ok";
	case -ENOSPC:
		return "QueueFull";
	case -EIO:
		return "IoError";
	case -ENOENT:
		return "NotFound";
	case -EEXIST:
		return "Exists";
	case -EPERM:
		return "BadTransition";
	case -EACCES:
		return "KeyNotPrivate";
	case -EINVAL:
		return "InvalidArgument";
	case -E2BIG:
		return "PayloadTooLarge";
	case -ENOKEY:
		return "KeyMissing";
	case -EKEYREJECTED:
		return "KeyMismatch";
	case -EBADMSG:
		return "DecryptFailed";
	case -EUCLEAN:
		return "QueueCorrupt";
	case -EMEDIUMTYPE:
		return "NotAQueue";
	case -EPROTO:
		return "SchemaTooNew";
	case -EBUSY:
		return "QueueBusy";
	case -ESTALE:
		return "QueueLost";
	case -ENOMEM:
		return "OutOfMemory";
	case -EROFS:
		return "ReadOnly";
	default:
		return "InternalError";
	}
}

const char *
queue_state_name(enum queue_state s)
{
	return (int)s >= 0 && s < QUEUE_NSTATES ? state_names[s] : "unknown";
}

int
queue_state_parse(const char *name)
{
	for (int i = 0; name && i < QUEUE_NSTATES; i++)
		if (strcmp(name, state_names[i]) == 0)
			return i;
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* uploads (schema v4)
 *
 * These run rarely (once per batch, per returns page), so their statements
 * are prepared per call rather than cached. */

static int
prep(struct queue *q, const char *sql, sqlite3_stmt **s)
{
	int rc = sqlite3_prepare_v2(q->db, sql, -1, s, NULL);
	if (rc != SQLITE_OK) {
		*s = NULL;
		return sqlerr(q, rc, "prepare");
	}
	return 0;
}

/* Step a one-shot write statement and finalize it. */
static int
step_done(struct queue *q, sqlite3_stmt *s, const char *what)
{
	int rc = sqlite3_step(s);
	int r = rc == SQLITE_DONE ? 0 : sqlerr(q, rc, what);
	sqlite3_finalize(s);
	return r;
}

static void
tx_abandon(struct queue *q)
{
	char keep[sizeof(q->errmsg)];
	memcpy(keep, q->errmsg, sizeof(keep));
	tx_rollback(q);
	memcpy(q->errmsg, keep, sizeof(keep));
}

static bool
valid_digest(const char *d)
{
	if (!d || strlen(d) != QUEUE_CERT_DIGEST_LEN)
		return false;
	for (size_t i = 0; i < QUEUE_CERT_DIGEST_LEN; i++)
		if (!((d[i] >= '0' && d[i] <= '9') || (d[i] >= 'a' && d[i] <= 'f')))
			return false;
	return true;
}

int
queue_cert_put(struct queue *q, const uint8_t *const *certs, const size_t *lens, size_t n,
               char digest[QUEUE_CERT_DIGEST_LEN + 1])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	struct cbor_enc e;
	const uint8_t *chain;
	size_t chainlen;
	sqlite3_stmt *s = NULL;
	int r;

	if (digest)
		digest[0] = '\0';
	if (!q || !certs || !lens || !digest || n == 0 || n > 8)
		return -EINVAL;
	if (!EVP_Digest(certs[0], lens[0], md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -ENOMEM;
	for (int i = 0; i < 32; i++)
		snprintf(digest + 2 * i, 3, "%02x", md[i]);
	if ((r = cbor_enc_init(&e, 1u << 20)) < 0)
		return r;
	cbor_enc_array_begin(&e);
	for (size_t i = 0; i < n; i++)
		cbor_enc_bytes(&e, certs[i], lens[i]);
	cbor_enc_array_end(&e);
	if ((r = cbor_enc_finish(&e, &chain, &chainlen)) < 0)
		goto out;
	if ((r = prep(q, "INSERT OR IGNORE INTO certs (digest, x5chain, added) VALUES (?1, ?2, ?3)",
	              &s)) < 0)
		goto out;
	sqlite3_bind_text(s, 1, digest, -1, SQLITE_STATIC);
	sqlite3_bind_blob(s, 2, chain, (int)chainlen, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now_ms(q));
	r = step_done(q, s, "certificate");
out:
	cbor_enc_free(&e);
	if (r < 0)
		digest[0] = '\0';
	return r;
}

int
queue_cert_get(struct queue *q, const char *digest, uint8_t **cbor, size_t *len)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	*cbor = NULL;
	*len = 0;
	if (!q || !valid_digest(digest))
		return -EINVAL;
	if ((r = prep(q, "SELECT x5chain FROM certs WHERE digest = ?1", &s)) < 0)
		return r;
	sqlite3_bind_text(s, 1, digest, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(s, 0);
		*cbor = malloc(n ? n : 1);
		if (!*cbor) {
			r = -ENOMEM;
		} else {
			memcpy(*cbor, sqlite3_column_blob(s, 0), n);
			*len = n;
		}
	} else if (rc == SQLITE_DONE) {
		seterr(q, "certificate %.16s… is not stored", digest);
		r = -ENOENT;
	} else {
		r = sqlerr(q, rc, "certificate");
	}
	sqlite3_finalize(s);
	return r;
}

int
queue_set_current_cert(struct queue *q, const char *digest)
{
	uint8_t *c;
	size_t n;
	int r;

	if (!q)
		return -EINVAL;
	if (!digest || !digest[0]) {
		q->current_cert[0] = '\0';
		return 0;
	}
	if ((r = queue_cert_get(q, digest, &c, &n)) < 0)
		return r;
	free(c);
	memcpy(q->current_cert, digest, QUEUE_CERT_DIGEST_LEN + 1);
	return 0;
}

int
queue_set_cert(struct queue *q, const char *id, const char *digest)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!q || !valid_token(id, QUEUE_ID_MAX) || !valid_digest(digest))
		return -EINVAL;
	if ((r = prep(q, "UPDATE sheets SET cert = ?2 WHERE id = ?1 AND state <> 'draft' "
	                 "AND (cert IS NULL OR cert = ?2)",
	              &s)) < 0)
		return r;
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, digest, -1, SQLITE_STATIC);
	if ((r = step_done(q, s, "certificate of a sheet")) < 0)
		return r;
	if (sqlite3_changes(q->db))
		return 0;
	struct queue_meta m;
	return (r = meta_get(q, id, &m, NULL)) < 0 ? r : -EPERM;
}

/* The certificate of the most urgent queued sheet that has one. */
static int
batch_cert(struct queue *q, char cert[QUEUE_CERT_DIGEST_LEN + 1])
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	cert[0] = '\0';
	if ((r = prep(q, "SELECT cert FROM sheets WHERE state = 'queued' AND cert IS NOT NULL "
	                 "ORDER BY due_date, rowid LIMIT 1",
	              &s)) < 0)
		return r;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		copy_col(s, 0, cert, QUEUE_CERT_DIGEST_LEN + 1);
	else if (rc != SQLITE_DONE)
		r = sqlerr(q, rc, "take");
	sqlite3_finalize(s);
	return r;
}

static int
take_rows(struct queue *q, const struct queue_take_opts *o, const char *cert,
          struct queue_meta *out, size_t *got)
{
	sqlite3_stmt *s = NULL;
	uint64_t bytes = 0;
	int r, rc;

	*got = 0;
	if ((r = prep(q, "SELECT " META_COLS " FROM sheets WHERE state = 'queued' AND cert = ?1 "
	                 "ORDER BY due_date, rowid LIMIT ?2",
	              &s)) < 0)
		return r;
	sqlite3_bind_text(s, 1, cert, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)o->max_sheets);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct queue_meta m;
		read_meta(s, &m);
		if (*got > 0 && o->max_bytes && bytes + m.size > o->max_bytes)
			break;
		bytes += m.size;
		out[(*got)++] = m;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = sqlerr(q, rc, "take");
	sqlite3_finalize(s);
	return r;
}

int
queue_take_batch(struct queue *q, const struct queue_take_opts *o, struct queue_meta *out,
                 size_t *n, char cert[QUEUE_CERT_DIGEST_LEN + 1])
{
	size_t got = 0;
	int r;

	if (n)
		*n = 0;
	if (cert)
		cert[0] = '\0';
	if (!q || !o || !n || !cert || !out || o->max_sheets == 0 ||
	    !valid_token(o->batch_id, QUEUE_BATCH_MAX))
		return -EINVAL;
	if (q->reset_pending && (r = reset_sending(q)) < 0)
		return r;
	int64_t now = now_ms(q);
	if ((r = tx_begin(q)) < 0)
		return r;
	if ((r = batch_cert(q, cert)) < 0 || !cert[0])
		goto fail;
	if ((r = take_rows(q, o, cert, out, &got)) < 0)
		goto fail;
	for (size_t i = 0; i < got; i++)
		if ((r = set_state(q, &out[i], QUEUE_SENDING, NULL, NULL, o->batch_id, now)) < 0)
			goto fail;
	if ((r = tx_commit(q)) < 0)
		return r;
	for (size_t i = 0; i < got; i++) {
		out[i].state = QUEUE_SENDING;
		out[i].updated_ms = now;
		out[i].attempts++;
		snprintf(out[i].batch_id, sizeof(out[i].batch_id), "%s", o->batch_id);
	}
	*n = got;
	return 0;
fail:
	tx_abandon(q);
	return r;
}

int
queue_rebatch(struct queue *q, const char *batch_id, const char *const *ids, size_t n)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (!q || !ids || n == 0 || !valid_token(batch_id, QUEUE_BATCH_MAX))
		return -EINVAL;
	if ((r = tx_begin(q)) < 0)
		return r;
	if ((r = prep(q, "UPDATE sheets SET batch_id = ?2, attempts = attempts + 1, updated = ?3 "
	                 "WHERE id = ?1 AND state = 'sending'",
	              &s)) < 0)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, batch_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, now_ms(q));
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE) {
			r = sqlerr(q, rc, "rebatch");
			goto fail;
		}
		if (sqlite3_changes(q->db) != 1) {
			seterr(q, "sheet %s is not sending", ids[i]);
			r = -EPERM;
			goto fail;
		}
	}
	sqlite3_finalize(s);
	return tx_commit(q);
fail:
	sqlite3_finalize(s);
	tx_abandon(q);
	return r;
}

static int
cursor_key(const char *name, char *key, size_t keylen)
{
	if (!name || (strcmp(name, "returns") != 0 && strcmp(name, "opposition") != 0))
		return -EINVAL;
	snprintf(key, keylen, "%s_cursor", name);
	return 0;
}

static int
cursor_put(struct queue *q, const char *name, const char *cursor)
{
	char key[32];
	sqlite3_stmt *s = NULL;
	int r;

	if ((r = cursor_key(name, key, sizeof(key))) < 0)
		return r;
	if (!cursor || strnlen(cursor, QUEUE_CURSOR_MAX + 1) > QUEUE_CURSOR_MAX)
		return -EINVAL;
	if ((r = prep(q, "INSERT OR REPLACE INTO meta (k, v) VALUES (?1, ?2)", &s)) < 0)
		return r;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, cursor, -1, SQLITE_STATIC);
	return step_done(q, s, "cursor");
}

int
queue_cursor_get(struct queue *q, const char *name, char *buf, size_t buflen)
{
	char key[32];
	sqlite3_stmt *s = NULL;
	int r, rc;

	if (!q || !buf || buflen == 0)
		return -EINVAL;
	buf[0] = '\0';
	if ((r = cursor_key(name, key, sizeof(key))) < 0)
		return r;
	if ((r = prep(q, "SELECT v FROM meta WHERE k = ?1", &s)) < 0)
		return r;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		copy_col(s, 0, buf, buflen);
	else if (rc != SQLITE_DONE)
		r = sqlerr(q, rc, "cursor");
	sqlite3_finalize(s);
	return r;
}

/* One return inside the open transaction: 1 applied, 0 skipped. */
static int
return_one(struct queue *q, const struct queue_return *rt, int64_t now)
{
	struct queue_meta m;
	int r;

	if (!valid_token(rt->sheet_id, QUEUE_ID_MAX) ||
	    (rt->to != QUEUE_PAID && rt->to != QUEUE_REFUSED))
		return 0;
	q->fatal = false;
	r = meta_get(q, rt->sheet_id, &m, NULL);
	if (r == -ENOENT && !q->fatal)
		return 0;
	if (r < 0)
		return r;
	if (m.state != QUEUE_ACCEPTED)
		return 0; /* applied before (paid/refused), or not ours to move */
	const char *code = rt->code && valid_token(rt->code, QUEUE_CODE_MAX) ? rt->code : NULL;
	const char *reason = rt->reason && strnlen(rt->reason, QUEUE_REASON_MAX + 1) <= QUEUE_REASON_MAX
	                             ? rt->reason
	                             : NULL;
	r = set_state(q, &m, rt->to, reason, code, NULL, now);
	return r < 0 ? r : 1;
}

int
queue_apply_returns(struct queue *q, const struct queue_return *rt, size_t n, const char *cursor,
                    size_t *applied, size_t *skipped)
{
	size_t a = 0, k = 0;
	int r;

	if (applied)
		*applied = 0;
	if (skipped)
		*skipped = 0;
	if (!q || (!rt && n) || !cursor)
		return -EINVAL;
	int64_t now = now_ms(q);
	if ((r = tx_begin(q)) < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		if ((r = return_one(q, &rt[i], now)) < 0)
			goto fail;
		if (r)
			a++;
		else
			k++;
	}
	if ((r = cursor_put(q, "returns", cursor)) < 0)
		goto fail;
	if ((r = tx_commit(q)) < 0)
		return r;
	if (applied)
		*applied = a;
	if (skipped)
		*skipped = k;
	return 0;
fail:
	tx_abandon(q);
	return r;
}

static int
serials_apply(struct queue *q, const char *sql, const char (*list)[33], size_t n)
{
	sqlite3_stmt *s = NULL;
	int r;

	if (n == 0)
		return 0;
	if ((r = prep(q, sql, &s)) < 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++) {
		sqlite3_bind_text(s, 1, list[i], -1, SQLITE_STATIC);
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			r = sqlerr(q, rc, "opposition");
	}
	sqlite3_finalize(s);
	return r;
}

int
queue_apply_opposition(struct queue *q, const char (*added)[33], size_t nadded,
                       const char (*removed)[33], size_t nremoved, const char *cursor)
{
	int r;

	if (!q || !cursor || (!added && nadded) || (!removed && nremoved))
		return -EINVAL;
	if ((r = tx_begin(q)) < 0)
		return r;
	if ((r = serials_apply(q, "INSERT OR IGNORE INTO opposition (serial) VALUES (?1)", added,
	                       nadded)) < 0 ||
	    (r = serials_apply(q, "DELETE FROM opposition WHERE serial = ?1", removed, nremoved)) < 0 ||
	    (r = cursor_put(q, "opposition", cursor)) < 0) {
		tx_abandon(q);
		return r;
	}
	return tx_commit(q);
}

int
queue_opposed(struct queue *q, const char *serial)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if (!q || !serial)
		return -EINVAL;
	if ((r = prep(q, "SELECT 1 FROM opposition WHERE serial = ?1", &s)) < 0)
		return r;
	sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	r = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : sqlerr(q, rc, "opposition");
	sqlite3_finalize(s);
	return r;
}

int
queue_opposition_list(struct queue *q, char (**out)[33], size_t *n)
{
	sqlite3_stmt *s = NULL;
	char(*v)[33] = NULL;
	size_t cap = 0, k = 0;
	int r, rc;

	if (!q || !out || !n)
		return -EINVAL;
	*out = NULL;
	*n = 0;
	if ((r = prep(q, "SELECT serial FROM opposition", &s)) < 0)
		return r;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(s, 0);
		if (!t || !t[0] || strlen(t) > 32)
			continue; /* not stored by queue_apply_opposition: skipped */
		if (k == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			char(*nv)[33] = realloc(v, ncap * sizeof(*v));
			if (!nv) {
				r = -ENOMEM;
				break;
			}
			v = nv;
			cap = ncap;
		}
		memcpy(v[k++], t, strlen(t) + 1);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sqlerr(q, rc, "opposition");
	sqlite3_finalize(s);
	if (r < 0) {
		free(v);
		return r;
	}
	*out = v;
	*n = k;
	return 0;
}

int
queue_upload_counts(struct queue *q, const char *today, const char *due_by,
                    struct queue_upload_counts *c)
{
	sqlite3_stmt *s = NULL;
	int r, rc;

	if (c)
		memset(c, 0, sizeof(*c));
	if (!q || !c || !valid_date(today) || !valid_date(due_by))
		return -EINVAL;
	if ((r = prep(q, "SELECT "
	                 "  COUNT(*) FILTER (WHERE state = 'queued' AND cert IS NULL),"
	                 "  COUNT(*) FILTER (WHERE due_date <= ?2),"
	                 "  COUNT(*) FILTER (WHERE due_date < ?1) "
	                 "FROM sheets WHERE state IN ('queued','sending')",
	              &s)) < 0)
		return r;
	sqlite3_bind_text(s, 1, today, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, due_by, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		c->no_cert = (uint64_t)sqlite3_column_int64(s, 0);
		c->due_by = (uint64_t)sqlite3_column_int64(s, 1);
		c->overdue = (uint64_t)sqlite3_column_int64(s, 2);
	} else {
		r = sqlerr(q, rc, "counts");
	}
	sqlite3_finalize(s);
	c->waiting = q->n[QUEUE_QUEUED] + q->n[QUEUE_SENDING];
	c->rejected = q->n[QUEUE_REJECTED];
	return r;
}
