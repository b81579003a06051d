/* Unit tests of storage/queue: creation, encryption at rest, keys, state
 * machine, sequence numbers, limits, retention, migrations, corruption,
 * injected I/O errors, simulated power losses and a real full disk.
 *
 * Random tests print their seed; set QUEUE_TEST_SEED to replay one. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storage/queue.h"
#include "tests/unit/support/faultvfs.h"

static int64_t fake_now = 1700000000000LL; /* 2023-11-14 */

static int64_t
fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

/* The monotonic clock: moves with fake_now, except by a jump of the wall
 * clock (mono_skew takes it back). */
static int64_t mono_skew;

static int64_t
fake_mono(void *arg)
{
	(void)arg;
	return fake_now - mono_skew;
}

static int
rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void
rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static char tmpdir[256];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_queue.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	fake_now = 1700000000000LL;
	mono_skew = 0;
	faultvfs_reset();
}

static void
teardown(void)
{
	rm_rf(tmpdir);
	faultvfs_reset();
}

static void
path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

static struct queue_opts
opts_default(void)
{
	struct queue_opts o = { .dir = tmpdir, .clock_ms = fake_clock, .mono_ms = fake_mono };
	return o;
}

static struct queue *
qopen(void)
{
	struct queue_opts o = opts_default();
	struct queue *q = NULL;
	char err[512];
	int r = queue_open(&o, &q, err, sizeof(err));
	ck_assert_msg(r == 0, "queue_open: %d %s", r, err);
	return q;
}

static int
put(struct queue *q, const char *id, const char *pract, const char *date, const char *due,
    const char *payload)
{
	struct queue_put it = {
		.id = id,
		.practitioner = pract,
		.care_date = date,
		.due_date = due,
		.payload = (const uint8_t *)payload,
		.payload_len = strlen(payload),
	};
	return queue_put(q, &it);
}

static void
expect_payload(struct queue *q, const char *id, const char *want)
{
	uint8_t *p = NULL;
	size_t n = 0;
	struct queue_meta m;
	int r = queue_get(q, id, &m, &p, &n);
	ck_assert_msg(r == 0, "get %s: %d %s", id, r, queue_last_error(q));
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_int_eq(memcmp(p, want, n), 0);
	ck_assert_uint_eq(m.size, n);
	queue_free_payload(p, n);
}

/* Raw SQLite access to the file, as an on-call engineer (or an attacker) would. */
static sqlite3 *
raw_open(void)
{
	char p[512];
	path_in(p, sizeof(p), "queue.db");
	sqlite3 *db = NULL;
	ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
	return db;
}

static long long
raw_int(const char *sql)
{
	sqlite3 *db = raw_open();
	sqlite3_stmt *s = NULL;
	ck_assert_msg(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql,
	              sqlite3_errmsg(db));
	long long v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static int
raw_exec(const char *sql)
{
	sqlite3 *db = raw_open();
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

static void
write_key(const unsigned char *key, mode_t mode)
{
	char p[512];
	path_in(p, sizeof(p), "queue.key");
	unlink(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	ck_assert_int_eq(write(fd, key, 32), 32);
	close(fd);
}

static void
read_key(unsigned char *key)
{
	char p[512];
	path_in(p, sizeof(p), "queue.key");
	int fd = open(p, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, key, 32), 32);
	close(fd);
}

/* An independent writer of the documented at-rest format (docs/queue.md):
 * 0x01 ‖ nonce(12) ‖ AES-256-GCM(ciphertext) ‖ tag(16), AD = sheet id. */
static size_t
test_seal(const unsigned char *key, const char *ad, const char *pt, unsigned char *out)
{
	int n = 0;
	size_t len = strlen(pt);
	out[0] = 1;
	RAND_bytes(out + 1, 12);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	ck_assert(EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, out + 1) == 1);
	ck_assert(EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)ad, (int)strlen(ad)) == 1);
	ck_assert(EVP_EncryptUpdate(c, out + 13, &n, (const unsigned char *)pt, (int)len) == 1);
	ck_assert(EVP_EncryptFinal_ex(c, out + 13 + n, &n) == 1);
	ck_assert(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, out + 13 + len) == 1);
	EVP_CIPHER_CTX_free(c);
	return 13 + len + 16;
}

/* ------------------------------------------------------------------ */

START_TEST(test_open_create)
{
	struct queue *q = qopen();
	struct queue_stats st;
	ck_assert_int_eq(queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.total, 0);
	ck_assert_str_eq(st.next_due, "");
	queue_close(q);

	char p[512];
	struct stat sb;
	path_in(p, sizeof(p), "queue.key");
	ck_assert_int_eq(stat(p, &sb), 0);
	ck_assert_int_eq(sb.st_size, 32);
	ck_assert_int_eq(sb.st_mode & 0777, 0600);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
	ck_assert_int_eq(raw_int("PRAGMA application_id"), 0x56544c51);
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM meta WHERE k = 'key_check'"), 1);
	sqlite3 *db = raw_open();
	sqlite3_stmt *s = NULL;
	sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL);
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	ck_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	sqlite3_close(db);

	/* the same key is used again at the second open */
	unsigned char k1[32], k2[32];
	read_key(k1);
	q = qopen();
	queue_close(q);
	read_key(k2);
	ck_assert_int_eq(memcmp(k1, k2, 32), 0);
}
END_TEST

START_TEST(test_busy)
{
	struct queue *q = qopen();
	struct queue_opts o = opts_default();
	struct queue *q2 = NULL;
	char err[256];
	ck_assert_int_eq(queue_open(&o, &q2, err, sizeof(err)), -EBUSY);
	ck_assert_ptr_null(q2);
	ck_assert_ptr_nonnull(strstr(err, "in use"));
	ck_assert_str_eq(queue_error_name(-EBUSY), "QueueBusy");
	queue_close(q);
}
END_TEST

START_TEST(test_roundtrip)
{
	struct queue *q = qopen();
	const char *secret = "NIR 184127645108946 acts C 25.00 EUR";
	ck_assert_int_eq(put(q, "s-1", "P1", "2024-03-01", "2024-03-06", secret), 0);
	ck_assert_int_eq(put(q, "s-2", "P1", "2024-03-01", "2024-03-06", secret), 0);
	struct queue_put empty = { .id = "s-3", .practitioner = "P1", .care_date = "2024-03-01",
		                   .due_date = "2024-03-06" };
	ck_assert_int_eq(queue_put(q, &empty), 0);
	uint8_t bin[300];
	for (size_t i = 0; i < sizeof(bin); i++)
		bin[i] = (uint8_t)(i * 7);
	struct queue_put b = { .id = "s-4", .practitioner = "P1", .care_date = "2024-03-01",
		               .due_date = "2024-03-06", .payload = bin, .payload_len = sizeof(bin) };
	ck_assert_int_eq(queue_put(q, &b), 0);

	expect_payload(q, "s-1", secret);
	expect_payload(q, "s-2", secret);
	expect_payload(q, "s-3", "");
	uint8_t *p = NULL;
	size_t n = 0;
	struct queue_meta m;
	ck_assert_int_eq(queue_get(q, "s-4", &m, &p, &n), 0);
	ck_assert_uint_eq(n, sizeof(bin));
	ck_assert_int_eq(memcmp(p, bin, n), 0);
	queue_free_payload(p, n);
	ck_assert_str_eq(m.id, "s-4");
	ck_assert_int_eq(m.state, QUEUE_QUEUED);
	ck_assert_str_eq(m.practitioner, "P1");
	ck_assert_str_eq(m.care_date, "2024-03-01");
	ck_assert_str_eq(m.due_date, "2024-03-06");
	ck_assert_uint_eq(m.seq, 4);
	ck_assert_int_eq(m.created_ms, fake_now);
	ck_assert_int_eq(queue_get(q, "nope", &m, NULL, NULL), -ENOENT);
	ck_assert_str_eq(m.id, "");
	ck_assert_int_eq(put(q, "s-1", "P1", "2024-03-01", "2024-03-06", "x"), -EEXIST);
	ck_assert_int_eq(put(q, "bad id", "P1", "2024-03-01", "2024-03-06", "x"), -EINVAL);
	ck_assert_int_eq(put(q, "s-9", "P1", "2024-13-01", "2024-03-06", "x"), -EINVAL);
	ck_assert_int_eq(put(q, "s-9", "", "2024-03-01", "2024-03-06", "x"), -EINVAL);
	queue_close(q);

	/* nothing in clear on disk; stored = 29 bytes of overhead; fresh nonces */
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sheets WHERE instr(payload, CAST('184127645108946' AS BLOB)) > 0"), 0);
	ck_assert_int_eq(raw_int("SELECT length(payload) FROM sheets WHERE id = 's-1'"),
	                 (long long)strlen(secret) + 29);
	ck_assert_int_eq(raw_int("SELECT a.payload = b.payload FROM sheets a, sheets b "
	                         "WHERE a.id = 's-1' AND b.id = 's-2'"),
	                 0);
	char p2[512];
	path_in(p2, sizeof(p2), "queue.db");
	char *file = NULL;
	size_t flen = 0;
	FILE *f = fopen(p2, "rb");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	flen = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	file = malloc(flen);
	ck_assert_uint_eq(fread(file, 1, flen, f), flen);
	fclose(f);
	ck_assert_ptr_null(memmem(file, flen, "184127645108946", 15));
	free(file);

	/* too big */
	q = qopen();
	uint8_t *big = calloc(1, QUEUE_PAYLOAD_MAX + 1);
	struct queue_put bg = { .id = "big", .practitioner = "P1", .care_date = "2024-03-01",
		                .due_date = "2024-03-06", .payload = big,
		                .payload_len = QUEUE_PAYLOAD_MAX + 1 };
	ck_assert_int_eq(queue_put(q, &bg), -E2BIG);
	free(big);
	queue_close(q);
}
END_TEST

START_TEST(test_wrong_key)
{
	struct queue *q = qopen();
	ck_assert_int_eq(put(q, "s-1", "P1", "2024-03-01", "2024-03-06", "payload"), 0);
	queue_close(q);
	unsigned char good[32], bad[32];
	read_key(good);
	memcpy(bad, good, 32);
	bad[5] ^= 1;
	write_key(bad, 0600);

	struct queue_opts o = opts_default();
	char err[512];
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), -EKEYREJECTED);
	ck_assert_ptr_null(q);
	ck_assert_ptr_nonnull(strstr(err, "does not open this queue"));
	ck_assert_str_eq(queue_error_name(-EKEYREJECTED), "KeyMismatch");

	/* readable by others: refused before use */
	write_key(good, 0644);
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
	/* issue 11, 13: it was logged as "BadTransition" (-EPERM) */
	ck_assert_str_eq(queue_error_name(-EACCES), "KeyNotPrivate");
	/* wrong size */
	char p[512];
	path_in(p, sizeof(p), "queue.key");
	int fd = open(p, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(fchmod(fd, 0600), 0);
	ck_assert_int_eq(write(fd, good, 16), 16);
	close(fd);
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), -EKEYREJECTED);

	/* the right key still opens it, and nothing was changed meanwhile */
	write_key(good, 0600);
	q = qopen();
	expect_payload(q, "s-1", "payload");
	queue_close(q);
}
END_TEST

START_TEST(test_missing_key)
{
	char p[512];
	path_in(p, sizeof(p), "queue.key");
	/* no sheets: a lost key is replaced */
	struct queue *q = qopen();
	queue_close(q);
	ck_assert_int_eq(unlink(p), 0);
	q = qopen();
	ck_assert_int_eq(put(q, "s-1", "P1", "2024-03-01", "2024-03-06", "payload"), 0);
	queue_close(q);
	/* sheets present: refused, and no new key is written */
	ck_assert_int_eq(unlink(p), 0);
	struct queue_opts o = opts_default();
	char err[512];
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), -ENOKEY);
	ck_assert_ptr_nonnull(strstr(err, "missing"));
	ck_assert_ptr_nonnull(strstr(err, "1 sheet"));
	ck_assert_int_eq(access(p, F_OK), -1);
	ck_assert_str_eq(queue_error_name(-ENOKEY), "KeyMissing");
}
END_TEST

START_TEST(test_tamper)
{
	struct queue *q = qopen();
	struct queue_put d = { .id = "d-1", .practitioner = "P1", .care_date = "2024-03-01",
		               .draft = true, .payload = (const uint8_t *)"draft", .payload_len = 5 };
	ck_assert_int_eq(queue_put(q, &d), 0);
	ck_assert_int_eq(put(q, "s-1", "P1", "2024-03-01", "2024-03-06", "signed"), 0);
	queue_close(q);
	/* a queued sheet cannot be altered or deleted, even by raw SQL */
	ck_assert_int_ne(raw_exec("UPDATE sheets SET payload = x'00' WHERE id = 's-1'"), SQLITE_OK);
	ck_assert_int_ne(raw_exec("UPDATE sheets SET seq = 9 WHERE id = 's-1'"), SQLITE_OK);
	ck_assert_int_ne(raw_exec("DELETE FROM sheets WHERE id = 's-1'"), SQLITE_OK);
	/* a payload moved to another id does not authenticate */
	ck_assert_int_eq(raw_exec("UPDATE sheets SET payload = (SELECT payload FROM sheets WHERE "
	                          "id = 's-1') WHERE id = 'd-1'"),
	                 SQLITE_OK);
	q = qopen();
	uint8_t *p = NULL;
	size_t n = 0;
	ck_assert_int_eq(queue_get(q, "d-1", NULL, &p, &n), -EBADMSG);
	ck_assert_ptr_null(p);
	ck_assert_ptr_nonnull(strstr(queue_last_error(q), "does not decrypt"));
	ck_assert_str_eq(queue_error_name(-EBADMSG), "DecryptFailed");
	expect_payload(q, "s-1", "signed");
	queue_close(q);
}
END_TEST

/* drive a fresh sheet to state s */
static void
drive(struct queue *q, const char *id, enum queue_state s)
{
	static const enum queue_state path_acc[] = { QUEUE_SENDING, QUEUE_ACCEPTED };
	if (s == QUEUE_DRAFT) {
		struct queue_put d = { .id = id, .practitioner = "P1", .care_date = "2024-03-01",
			               .draft = true };
		ck_assert_int_eq(queue_put(q, &d), 0);
		return;
	}
	ck_assert_int_eq(put(q, id, "P1", "2024-03-01", "2024-03-06", "x"), 0);
	switch (s) {
	case QUEUE_QUEUED:
		return;
	case QUEUE_SENDING:
	case QUEUE_REJECTED:
		ck_assert_int_eq(queue_transition(q, id, QUEUE_SENDING, NULL), 0);
		if (s == QUEUE_REJECTED)
			ck_assert_int_eq(queue_transition(q, id, QUEUE_REJECTED, "R12 bad act"), 0);
		return;
	default:
		for (size_t i = 0; i < 2; i++)
			ck_assert_int_eq(queue_transition(q, id, path_acc[i], NULL), 0);
		if (s != QUEUE_ACCEPTED)
			ck_assert_int_eq(queue_transition(q, id, s, NULL), 0);
	}
}

START_TEST(test_transitions)
{
	/* the design's state machine, written out independently of queue.c */
	static const char *allowed[] = { "queued>sending", "sending>queued", "sending>accepted",
		                         "sending>rejected", "accepted>paid", "accepted>refused" };
	struct queue *q = qopen();
	int k = 0;
	for (int from = 0; from < QUEUE_NSTATES; from++) {
		for (int to = 0; to < QUEUE_NSTATES; to++) {
			char id[32], pair[40];
			snprintf(id, sizeof(id), "t-%d", k++);
			snprintf(pair, sizeof(pair), "%s>%s", queue_state_name(from), queue_state_name(to));
			bool want = false;
			for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
				want |= strcmp(pair, allowed[i]) == 0;
			drive(q, id, (enum queue_state)from);
			int r = queue_transition(q, id, (enum queue_state)to, NULL);
			struct queue_meta m;
			ck_assert_int_eq(queue_get(q, id, &m, NULL, NULL), 0);
			ck_assert_msg(r == (want ? 0 : -EPERM), "%s gave %d", pair, r);
			ck_assert_msg((int)m.state == (want ? to : from), "%s left state %d", pair, m.state);
			ck_assert_int_eq(queue_transition_allowed(from, to),
			                 want || (from == QUEUE_DRAFT && to == QUEUE_QUEUED));
			ck_assert_int_eq(m.closed_ms != 0,
			                 (want ? to : from) >= QUEUE_ACCEPTED);
		}
	}
	char reason[QUEUE_REASON_MAX + 1];
	ck_assert_int_eq(queue_get_reason(q, "t-29", reason, sizeof(reason)), 0);
	/* t-29 = from rejected (4) × 7 + 1: driven with a reason */
	ck_assert_str_eq(reason, "R12 bad act");
	ck_assert_int_eq(queue_get_reason(q, "t-0", reason, sizeof(reason)), 0);
	ck_assert_str_eq(reason, "");
	ck_assert_int_eq(queue_transition(q, "nope", QUEUE_SENDING, NULL), -ENOENT);
	ck_assert_int_eq(queue_transition(q, "t-8", (enum queue_state)42, NULL), -EINVAL);
	ck_assert_str_eq(queue_error_name(-EPERM), "BadTransition");

	/* a batch answer: per-item results in one transaction */
	drive(q, "u-1", QUEUE_SENDING);
	drive(q, "u-2", QUEUE_SENDING);
	drive(q, "u-3", QUEUE_QUEUED);
	struct queue_update u[] = {
		{ .id = "u-1", .to = QUEUE_ACCEPTED },
		{ .id = "u-2", .to = QUEUE_REJECTED, .reason = "duplicate act" },
		{ .id = "u-3", .to = QUEUE_PAID },
		{ .id = "u-4", .to = QUEUE_ACCEPTED },
	};
	ck_assert_int_eq(queue_update_batch(q, u, 4), 0);
	ck_assert_int_eq(u[0].result, 0);
	ck_assert_int_eq(u[1].result, 0);
	ck_assert_int_eq(u[2].result, -EPERM);
	ck_assert_int_eq(u[3].result, -ENOENT);
	ck_assert_int_eq(queue_get_reason(q, "u-2", reason, sizeof(reason)), 0);
	ck_assert_str_eq(reason, "duplicate act");
	queue_close(q);
	/* reasons are encrypted too */
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sheets WHERE instr(reason, CAST('duplicate' AS BLOB)) > 0"), 0);
}
END_TEST

START_TEST(test_sending_reset)
{
	struct queue *q = qopen();
	for (int i = 0; i < 3; i++) {
		char id[16], due[16];
		snprintf(id, sizeof(id), "s-%d", i);
		snprintf(due, sizeof(due), "2024-03-0%d", 8 - i);
		ck_assert_int_eq(put(q, id, "P1", "2024-03-01", due, "x"), 0);
	}
	struct queue_meta out[4];
	size_t n = 0;
	ck_assert_int_eq(queue_take(q, "batch-1", 2, out, &n), 0);
	ck_assert_uint_eq(n, 2);
	/* nearest due first */
	ck_assert_str_eq(out[0].id, "s-2");
	ck_assert_str_eq(out[1].id, "s-1");
	ck_assert_int_eq(out[0].state, QUEUE_SENDING);
	ck_assert_str_eq(out[0].batch_id, "batch-1");
	ck_assert_uint_eq(out[0].attempts, 1);
	struct queue_stats st;
	queue_stats(q, &st);
	ck_assert_uint_eq(st.count[QUEUE_SENDING], 2);
	ck_assert_uint_eq(st.count[QUEUE_QUEUED], 1);
	queue_close(q);

	q = qopen();
	queue_stats(q, &st);
	ck_assert_uint_eq(st.count[QUEUE_SENDING], 0);
	ck_assert_uint_eq(st.count[QUEUE_QUEUED], 3);
	struct queue_meta m;
	ck_assert_int_eq(queue_get(q, "s-2", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_QUEUED);
	ck_assert_str_eq(m.batch_id, "");
	ck_assert_uint_eq(m.attempts, 1);
	ck_assert_int_eq(queue_take(q, "batch-2", 4, out, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(out[0].attempts, 2);
	ck_assert_int_eq(queue_take(q, "batch-3", 4, out, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(queue_take(q, "bad batch", 4, out, &n), -EINVAL);
	queue_close(q);
	/* raw view before any reopen: the three are still marked sending */
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sheets WHERE state = 'sending'"), 3);
}
END_TEST

static int
seal_with_seq(void *arg, const struct queue_put *it, uint32_t seq, uint8_t **out, size_t *len)
{
	int *calls = arg;
	(*calls)++;
	if (strcmp(it->id, "fail") == 0)
		return -EACCES; /* e.g. the practitioner's card went away */
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "%s#%u", it->id, seq);
	*out = malloc((size_t)n);
	memcpy(*out, buf, (size_t)n);
	*len = (size_t)n;
	return 0;
}

START_TEST(test_sequence)
{
	struct queue *q = qopen();
	char id[32];
	for (int i = 1; i <= 5; i++) {
		snprintf(id, sizeof(id), "a-%d", i);
		struct queue_put it = { .id = id, .practitioner = "P1", .care_date = "2024-03-01",
			                .due_date = "2024-03-06", .payload = (const uint8_t *)"x",
			                .payload_len = 1 };
		ck_assert_int_eq(queue_put(q, &it), 0);
		ck_assert_uint_eq(it.seq, (unsigned)i);
	}
	struct queue_put o1 = { .id = "b-1", .practitioner = "P2", .care_date = "2024-03-01",
		                .due_date = "2024-03-06" };
	ck_assert_int_eq(queue_put(q, &o1), 0);
	ck_assert_uint_eq(o1.seq, 1);
	struct queue_put o2 = { .id = "c-1", .practitioner = "P1", .care_date = "2024-03-02",
		                .due_date = "2024-03-07" };
	ck_assert_int_eq(queue_put(q, &o2), 0);
	ck_assert_uint_eq(o2.seq, 1);
	/* a draft takes no number; completing it takes the next one */
	struct queue_put d = { .id = "d-1", .practitioner = "P1", .care_date = "2024-03-01",
		               .draft = true };
	ck_assert_int_eq(queue_put(q, &d), 0);
	ck_assert_uint_eq(d.seq, 0);
	queue_close(q);

	q = qopen();
	struct queue_put it = { .id = "a-6", .practitioner = "P1", .care_date = "2024-03-01",
		                .due_date = "2024-03-06" };
	ck_assert_int_eq(queue_put(q, &it), 0);
	ck_assert_uint_eq(it.seq, 6);
	struct queue_put c = { .id = "d-1", .due_date = "2024-03-06",
		               .payload = (const uint8_t *)"signed", .payload_len = 6 };
	ck_assert_int_eq(queue_complete_draft(q, &c), 0);
	ck_assert_uint_eq(c.seq, 7);

	/* a batch with a failing seal: the others commit, numbers stay dense */
	int calls = 0;
	struct queue_put b[4];
	const char *ids[] = { "g-1", "fail", "g-2", "g-1" };
	for (int i = 0; i < 4; i++)
		b[i] = (struct queue_put){ .id = ids[i], .practitioner = "P3",
			                   .care_date = "2024-03-01", .due_date = "2024-03-06",
			                   .seal = seal_with_seq, .seal_arg = &calls };
	ck_assert_int_eq(queue_put_batch(q, b, 4), 0);
	ck_assert_int_eq(b[0].result, 0);
	ck_assert_int_eq(b[1].result, -EACCES);
	ck_assert_int_eq(b[2].result, 0);
	ck_assert_int_eq(b[3].result, -EEXIST);
	ck_assert_uint_eq(b[0].seq, 1);
	ck_assert_uint_eq(b[2].seq, 2);
	ck_assert_int_eq(calls, 3);
	expect_payload(q, "g-2", "g-2#2");
	queue_close(q);

	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM (SELECT practitioner, care_date, seq, "
	                         "COUNT(*) c FROM sheets WHERE seq IS NOT NULL GROUP BY 1, 2, 3 "
	                         "HAVING c > 1)"),
	                 0);
	/* the UNIQUE index itself refuses a duplicate number */
	ck_assert_int_ne(raw_exec("INSERT INTO sheets (id, state, practitioner, care_date, seq, "
	                          "due_date, created, updated, size, payload) VALUES ('z', 'queued', "
	                          "'P1', '2024-03-01', 3, '2024-03-06', 0, 0, 0, x'00')"),
	                 SQLITE_OK);
}
END_TEST

START_TEST(test_drafts)
{
	struct queue *q = qopen();
	struct queue_put d = { .id = "d-1", .practitioner = "P1", .care_date = "2024-03-01",
		               .draft = true, .payload = (const uint8_t *)"{identity}",
		               .payload_len = 10 };
	ck_assert_int_eq(queue_put(q, &d), 0);
	struct queue_meta m;
	ck_assert_int_eq(queue_get(q, "d-1", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_DRAFT);
	ck_assert_str_eq(m.due_date, "");
	ck_assert_uint_eq(m.seq, 0);
	expect_payload(q, "d-1", "{identity}");
	ck_assert_int_eq(queue_transition(q, "d-1", QUEUE_QUEUED, NULL), -EPERM);
	ck_assert_int_eq(queue_transition(q, "d-1", QUEUE_SENDING, NULL), -EPERM);
	/* a draft is never taken for sending */
	struct queue_meta out[2];
	size_t n = 9;
	ck_assert_int_eq(queue_take(q, "b", 2, out, &n), 0);
	ck_assert_uint_eq(n, 0);

	int calls = 0;
	struct queue_put c = { .id = "d-1", .practitioner = "P9", .care_date = "2024-03-04",
		               .due_date = "2024-03-07", .seal = seal_with_seq, .seal_arg = &calls };
	ck_assert_int_eq(queue_complete_draft(q, &c), 0);
	ck_assert_uint_eq(c.seq, 1);
	ck_assert_int_eq(queue_get(q, "d-1", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_QUEUED);
	ck_assert_str_eq(m.practitioner, "P9");
	ck_assert_str_eq(m.care_date, "2024-03-04");
	ck_assert_str_eq(m.due_date, "2024-03-07");
	expect_payload(q, "d-1", "d-1#1");
	ck_assert_int_eq(queue_complete_draft(q, &c), -EPERM);
	ck_assert_int_eq(queue_delete_draft(q, "d-1"), -EPERM);
	struct queue_put none = { .id = "zz", .due_date = "2024-03-07" };
	ck_assert_int_eq(queue_complete_draft(q, &none), -ENOENT);

	/* a failing seal leaves the draft as it was */
	struct queue_put d2 = { .id = "fail", .practitioner = "P1", .care_date = "2024-03-01",
		                .draft = true, .payload = (const uint8_t *)"keep", .payload_len = 4 };
	ck_assert_int_eq(queue_put(q, &d2), 0);
	struct queue_put c2 = { .id = "fail", .due_date = "2024-03-07", .seal = seal_with_seq,
		                .seal_arg = &calls };
	ck_assert_int_eq(queue_complete_draft(q, &c2), -EACCES);
	ck_assert_int_eq(queue_get(q, "fail", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_DRAFT);
	expect_payload(q, "fail", "keep");
	ck_assert_int_eq(queue_delete_draft(q, "fail"), 0);
	ck_assert_int_eq(queue_get(q, "fail", &m, NULL, NULL), -ENOENT);
	struct queue_stats st;
	queue_stats(q, &st);
	ck_assert_uint_eq(st.count[QUEUE_DRAFT], 0);
	ck_assert_uint_eq(st.count[QUEUE_QUEUED], 1);
	queue_close(q);
}
END_TEST

START_TEST(test_limits)
{
	struct queue_opts o = opts_default();
	o.max_sheets = 5;
	struct queue *q = NULL;
	char err[256];
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), 0);
	struct queue_put d = { .id = "d-0", .practitioner = "P1", .care_date = "2024-03-01",
		               .draft = true };
	ck_assert_int_eq(queue_put(q, &d), 0);
	char id[16];
	for (int i = 1; i < 5; i++) {
		snprintf(id, sizeof(id), "s-%d", i);
		ck_assert_int_eq(put(q, id, "P1", "2024-03-01", "2024-03-06", "0123456789"), 0);
	}
	int r = put(q, "s-5", "P1", "2024-03-01", "2024-03-06", "x");
	ck_assert_int_eq(r, -ENOSPC);
	ck_assert_str_eq(queue_error_name(r), "QueueFull");
	ck_assert_ptr_nonnull(strstr(queue_last_error(q), "queue full"));
	/* still serving: reads work, space comes back when a draft goes */
	expect_payload(q, "s-1", "0123456789");
	ck_assert_int_eq(queue_delete_draft(q, "d-0"), 0);
	ck_assert_int_eq(put(q, "s-5", "P1", "2024-03-01", "2024-03-06", "x"), 0);
	queue_close(q);

	/* bytes: each stored payload is 10 + 29 bytes */
	rm_rf(tmpdir);
	ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
	o.max_sheets = 0;
	o.max_bytes = 3 * 39;
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), 0);
	struct queue_put b[4];
	const char *ids[] = { "b-1", "b-2", "b-3", "b-4" };
	for (int i = 0; i < 4; i++)
		b[i] = (struct queue_put){ .id = ids[i], .practitioner = "P1",
			                   .care_date = "2024-03-01", .due_date = "2024-03-06",
			                   .payload = (const uint8_t *)"0123456789", .payload_len = 10 };
	ck_assert_int_eq(queue_put_batch(q, b, 4), 0);
	ck_assert_int_eq(b[0].result, 0);
	ck_assert_int_eq(b[2].result, 0);
	ck_assert_int_eq(b[3].result, -ENOSPC);
	struct queue_stats st;
	queue_stats(q, &st);
	ck_assert_uint_eq(st.bytes, 3 * 39);
	ck_assert_uint_eq(st.total, 3);
	queue_close(q);
	/* counters rebuilt from the file agree */
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), 0);
	queue_stats(q, &st);
	ck_assert_uint_eq(st.bytes, 3 * 39);
	ck_assert_int_eq(put(q, "b-4", "P1", "2024-03-01", "2024-03-06", "0123456789"), -ENOSPC);
	queue_close(q);
}
END_TEST

START_TEST(test_retention)
{
	struct queue *q = qopen();
	int64_t t0 = fake_now;
	drive(q, "acc", QUEUE_ACCEPTED);
	drive(q, "paid", QUEUE_PAID);
	drive(q, "rej", QUEUE_REJECTED);
	drive(q, "queued", QUEUE_QUEUED);
	drive(q, "sending", QUEUE_SENDING);
	drive(q, "draft", QUEUE_DRAFT);
	fake_now = t0 + 20LL * 86400000;
	drive(q, "late", QUEUE_REFUSED);
	drive(q, "draft2", QUEUE_DRAFT);

	struct queue_retention ret = { .finished_days = 30, .draft_days = 7 };
	size_t n = 99;
	fake_now = t0 + 29LL * 86400000;
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
	ck_assert_uint_eq(n, 2); /* the drafts (29 and 9 days > 7); nothing closed yet */
	ck_assert_int_eq(queue_get(q, "acc", NULL, NULL, NULL), 0);
	fake_now = t0 + 31LL * 86400000;
	ck_assert_int_eq(queue_purge(q, &ret, 2, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
	ck_assert_uint_eq(n, 1); /* the third closed one */
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
	ck_assert_uint_eq(n, 0);
	struct queue_meta m;
	ck_assert_int_eq(queue_get(q, "acc", &m, NULL, NULL), -ENOENT);
	ck_assert_int_eq(queue_get(q, "paid", &m, NULL, NULL), -ENOENT);
	ck_assert_int_eq(queue_get(q, "rej", &m, NULL, NULL), -ENOENT);
	ck_assert_int_eq(queue_get(q, "draft", &m, NULL, NULL), -ENOENT);
	ck_assert_int_eq(queue_get(q, "draft2", &m, NULL, NULL), -ENOENT);
	ck_assert_int_eq(queue_get(q, "late", &m, NULL, NULL), 0);
	/* queued and sending are never purged, however old */
	fake_now = t0 + 5000LL * 86400000;
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(queue_get(q, "queued", &m, NULL, NULL), 0);
	ck_assert_int_eq(queue_get(q, "sending", &m, NULL, NULL), 0);
	struct queue_stats st;
	queue_stats(q, &st);
	ck_assert_uint_eq(st.total, 2);
	ck_assert_uint_eq(st.count[QUEUE_QUEUED], 1);
	ck_assert_uint_eq(st.count[QUEUE_SENDING], 1);
	ret.finished_days = 0;
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), -EINVAL);
	queue_close(q);
}
END_TEST

/* queue_stats keeps its two minimums across inserts without reading them
 * again; after every kind of write they must equal what SQL says now. */
static void
expect_mins(struct queue *q)
{
	struct queue_stats st;
	ck_assert_int_eq(queue_stats(q, &st), 0);
	long long want = raw_int("SELECT IFNULL(MIN(created), 0) FROM sheets "
	                         "WHERE state IN ('queued','sending')");
	ck_assert_int_eq(st.oldest_queued_ms, want);
	sqlite3 *db = raw_open();
	sqlite3_stmt *s = NULL;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT IFNULL(MIN(due_date), '') FROM sheets "
	                                        "WHERE state IN ('queued','sending')",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	ck_assert_str_eq(st.next_due, (const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	sqlite3_close(db);
}

START_TEST(test_stats_mins_cached)
{
	struct queue *q = qopen();
	expect_mins(q);
	ck_assert_int_eq(put(q, "a", "P1", "2024-03-01", "2024-03-06", "x"), 0);
	expect_mins(q);
	fake_now += 1000;
	ck_assert_int_eq(put(q, "b", "P1", "2024-03-02", "2024-03-09", "x"), 0);
	expect_mins(q);
	fake_now -= 5000; /* a clock stepped back: an older creation time */
	ck_assert_int_eq(put(q, "c", "P1", "2024-03-02", "2024-03-04", "x"), 0);
	expect_mins(q);
	fake_now += 10000;
	ck_assert_int_eq(put(q, "c", "P1", "2024-03-02", "2024-03-01", "x"), -EEXIST);
	expect_mins(q);
	struct queue_put d = { .id = "d", .practitioner = "P1", .care_date = "2024-03-01",
		               .draft = true };
	ck_assert_int_eq(queue_put(q, &d), 0);
	expect_mins(q);
	/* the oldest and the nearest leave queued/sending: both must move */
	ck_assert_int_eq(queue_transition(q, "c", QUEUE_SENDING, NULL), 0);
	expect_mins(q);
	ck_assert_int_eq(queue_transition(q, "c", QUEUE_ACCEPTED, NULL), 0);
	expect_mins(q);
	ck_assert_int_eq(put(q, "e", "P2", "2024-03-02", "2024-03-07", "x"), 0);
	expect_mins(q);
	ck_assert_int_eq(queue_transition(q, "a", QUEUE_SENDING, NULL), 0);
	ck_assert_int_eq(queue_transition(q, "a", QUEUE_REJECTED, "no"), 0);
	expect_mins(q);
	ck_assert_int_eq(queue_transition(q, "b", QUEUE_SENDING, NULL), 0);
	ck_assert_int_eq(queue_transition(q, "b", QUEUE_ACCEPTED, NULL), 0);
	ck_assert_int_eq(queue_transition(q, "e", QUEUE_SENDING, NULL), 0);
	ck_assert_int_eq(queue_transition(q, "e", QUEUE_ACCEPTED, NULL), 0);
	expect_mins(q); /* none left */
	ck_assert_int_eq(put(q, "f", "P2", "2024-03-03", "2024-03-10", "x"), 0);
	expect_mins(q);
	queue_close(q);
}
END_TEST

START_TEST(test_stats_list)
{
	struct queue *q = qopen();
	int64_t t0 = fake_now;
	ck_assert_int_eq(put(q, "a", "P1", "2024-03-01", "2024-03-06", "x"), 0);
	fake_now += 1000;
	ck_assert_int_eq(put(q, "b", "P1", "2024-03-02", "2024-03-05", "x"), 0);
	fake_now += 1000;
	ck_assert_int_eq(put(q, "c", "P2", "2024-03-03", "2024-03-08", "x"), 0);
	drive(q, "d", QUEUE_ACCEPTED);
	drive(q, "e", QUEUE_DRAFT);
	struct queue_stats st;
	ck_assert_int_eq(queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.total, 5);
	ck_assert_uint_eq(st.count[QUEUE_QUEUED], 3);
	ck_assert_uint_eq(st.count[QUEUE_ACCEPTED], 1);
	ck_assert_uint_eq(st.count[QUEUE_DRAFT], 1);
	ck_assert_int_eq(st.oldest_queued_ms, t0);
	ck_assert_str_eq(st.next_due, "2024-03-05");

	struct queue_meta out[8];
	size_t n = 0;
	ck_assert_int_eq(queue_list(q, NULL, out, 8, &n), 0);
	ck_assert_uint_eq(n, 5);
	ck_assert_str_eq(out[0].id, "a");
	ck_assert_str_eq(out[4].id, "e");
	struct queue_filter f = { .states = QUEUE_STATE_BIT(QUEUE_QUEUED) };
	ck_assert_int_eq(queue_list(q, &f, out, 8, &n), 0);
	ck_assert_uint_eq(n, 3);
	f = (struct queue_filter){ .date_from = "2024-03-02", .date_to = "2024-03-02" };
	ck_assert_int_eq(queue_list(q, &f, out, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0].id, "b");
	f = (struct queue_filter){ .due_before = "2024-03-06" };
	ck_assert_int_eq(queue_list(q, &f, out, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0].id, "b");
	f = (struct queue_filter){ .practitioner = "P2" };
	ck_assert_int_eq(queue_list(q, &f, out, 8, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0].id, "c");
	/* paging */
	f = (struct queue_filter){ 0 };
	ck_assert_int_eq(queue_list(q, &f, out, 2, &n), 0);
	ck_assert_uint_eq(n, 2);
	f.after = out[1].cursor;
	ck_assert_int_eq(queue_list(q, &f, out, 2, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out[0].id, "c");
	f = (struct queue_filter){ .date_from = "bad" };
	ck_assert_int_eq(queue_list(q, &f, out, 2, &n), -EINVAL);
	queue_close(q);
}
END_TEST

/* ------------------------------------------------------------------ */
/* schema versions */

START_TEST(test_migrate_v0)
{
	char p[512];
	path_in(p, sizeof(p), "queue.db");
	int fd = open(p, O_WRONLY | O_CREAT, 0600); /* an empty file */
	close(fd);
	struct queue *q = qopen();
	ck_assert_int_eq(put(q, "s-1", "P1", "2024-03-01", "2024-03-06", "x"), 0);
	queue_close(q);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);

	/* a database that is not ours */
	rm_rf(tmpdir);
	ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
	ck_assert_int_eq(raw_exec("CREATE TABLE foo (x)"), SQLITE_OK);
	struct queue_opts o = opts_default();
	char err[512];
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), -EMEDIUMTYPE);
	ck_assert_ptr_nonnull(strstr(err, "not a vitaled queue"));
	/* a newer schema */
	rm_rf(tmpdir);
	ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
	q = qopen();
	queue_close(q);
	ck_assert_int_eq(raw_exec("PRAGMA user_version = 99"), SQLITE_OK);
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), -EPROTO);
	ck_assert_ptr_nonnull(strstr(err, "newer"));
}
END_TEST

/* The version 1 schema as released, frozen here independently of queue.c. */
static const char v1_schema[] =
	"PRAGMA application_id = 1448365137;"
	"CREATE TABLE meta (k TEXT PRIMARY KEY NOT NULL, v BLOB NOT NULL);"
	"CREATE TABLE sheets (id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL CHECK (state IN "
	"('draft','queued','sending','accepted','rejected','paid','refused')), practitioner TEXT "
	"NOT NULL, care_date TEXT NOT NULL, seq INTEGER, due_date TEXT, created INTEGER NOT NULL, "
	"updated INTEGER NOT NULL, size INTEGER NOT NULL, payload BLOB NOT NULL);"
	"CREATE UNIQUE INDEX sheets_seq ON sheets (practitioner, care_date, seq);"
	"PRAGMA user_version = 1;";

static void
v1_row(sqlite3 *db, const unsigned char *key, const char *id, const char *state, int seq,
       const char *pt, long long updated)
{
	unsigned char blob[512];
	size_t n = test_seal(key, id, pt, blob);
	sqlite3_stmt *s = NULL;
	ck_assert_int_eq(sqlite3_prepare_v2(db,
	                                    "INSERT INTO sheets VALUES (?1, ?2, 'P1', '2024-02-01', "
	                                    "?3, ?4, 1000, ?5, ?6, ?7)",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
	if (seq)
		sqlite3_bind_int(s, 3, seq);
	if (seq)
		sqlite3_bind_text(s, 4, "2024-02-06", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, updated);
	sqlite3_bind_int64(s, 6, (long long)strlen(pt));
	sqlite3_bind_blob(s, 7, blob, (int)n, SQLITE_STATIC);
	ck_assert_int_eq(sqlite3_step(s), SQLITE_DONE);
	sqlite3_finalize(s);
}

START_TEST(test_migrate_v1)
{
	unsigned char key[32];
	RAND_bytes(key, 32);
	write_key(key, 0600);
	sqlite3 *db = raw_open();
	ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL), SQLITE_OK);
	ck_assert_int_eq(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
	v1_row(db, key, "v1-queued", "queued", 1, "queued payload", 2000);
	v1_row(db, key, "v1-sending", "sending", 2, "sending payload", 2100);
	v1_row(db, key, "v1-accepted", "accepted", 3, "accepted payload", 2200);
	v1_row(db, key, "v1-draft", "draft", 0, "draft payload", 2300);
	sqlite3_close(db);

	struct queue *q = qopen();
	expect_payload(q, "v1-queued", "queued payload");
	expect_payload(q, "v1-sending", "sending payload");
	expect_payload(q, "v1-accepted", "accepted payload");
	expect_payload(q, "v1-draft", "draft payload");
	struct queue_meta m;
	ck_assert_int_eq(queue_get(q, "v1-accepted", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.closed_ms, 2200); /* the retention clock starts at its last update */
	ck_assert_uint_eq(m.seq, 3);
	ck_assert_str_eq(m.due_date, "2024-02-06");
	ck_assert_int_eq(queue_get(q, "v1-sending", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_QUEUED);
	ck_assert_int_eq(queue_get(q, "v1-draft", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_DRAFT);
	ck_assert_uint_eq(m.seq, 0);
	struct queue_stats st;
	queue_stats(q, &st);
	ck_assert_uint_eq(st.total, 4);
	ck_assert_uint_eq(st.count[QUEUE_QUEUED], 2);
	struct queue_put it = { .id = "new", .practitioner = "P1", .care_date = "2024-02-01",
		                .due_date = "2024-02-06" };
	ck_assert_int_eq(queue_put(q, &it), 0);
	ck_assert_uint_eq(it.seq, 4);
	queue_close(q);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger'"), 3);
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sheets_state_due'"), 1);
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'sheets_state_created'"), 1);
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM meta WHERE k = 'key_check'"), 1);
	ck_assert_int_ne(raw_exec("UPDATE sheets SET payload = x'00' WHERE id = 'v1-queued'"), SQLITE_OK);

	/* a v1 file whose key is not the one on disk is refused, not migrated blindly */
	rm_rf(tmpdir);
	ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
	db = raw_open();
	ck_assert_int_eq(sqlite3_exec(db, v1_schema, NULL, NULL, NULL), SQLITE_OK);
	v1_row(db, key, "v1-queued", "queued", 1, "queued payload", 2000);
	sqlite3_close(db);
	key[0] ^= 0xff;
	write_key(key, 0600);
	struct queue_opts o = opts_default();
	char err[512];
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), -EKEYREJECTED);
}
END_TEST

/* A sound file with the check deferred (the daemon's way): the counts at
 * open, the stored bytes once queue_check ran, writes as usual. */
START_TEST(test_deferred_check)
{
	struct queue *q = qopen();
	struct queue_stats st, st2;
	for (int i = 0; i < 20; i++) {
		char id[16];
		snprintf(id, sizeof(id), "d-%03d", i);
		ck_assert_int_eq(put(q, id, "P1", "2024-03-01", "2024-03-06", "payload"), 0);
	}
	ck_assert_int_eq(queue_stats(q, &st), 0);
	ck_assert_uint_gt(st.bytes, 0);
	queue_close(q);
	struct queue_opts o = opts_default();
	o.defer_quick_check = true;
	char err[512];
	ck_assert_int_eq(queue_open(&o, &q, err, sizeof(err)), 0);
	ck_assert_int_eq(queue_stats(q, &st2), 0);
	ck_assert_uint_eq(st2.total, 20);
	ck_assert_int_eq(queue_check(q), 0);
	ck_assert_ptr_null(queue_damage(q));
	ck_assert_int_eq(queue_stats(q, &st2), 0);
	ck_assert_uint_eq(st2.bytes, st.bytes);
	ck_assert_int_eq(put(q, "d-new", "P1", "2024-03-01", "2024-03-06", "payload"), 0);
	ck_assert_int_eq(queue_check(q), 0); /* once only: nothing more to do */
	queue_close(q);
}
END_TEST

START_TEST(test_corrupt)
{
	struct queue *q = qopen();
	char pl[600];
	memset(pl, 'p', sizeof(pl) - 1);
	pl[sizeof(pl) - 1] = '\0';
	for (int i = 0; i < 200; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s-%03d", i);
		ck_assert_int_eq(put(q, id, "P1", "2024-03-01", "2024-03-06", pl), 0);
	}
	queue_close(q); /* checkpoints: everything is in queue.db now */

	char p[512];
	path_in(p, sizeof(p), "queue.db");
	struct stat sb;
	ck_assert_int_eq(stat(p, &sb), 0);
	long pgsz = raw_int("PRAGMA page_size");
	long long pages = sb.st_size / pgsz;
	ck_assert_int_gt(pages, 20);
	/* garbage over a b-tree page in the middle of the table */
	int fd = open(p, O_WRONLY);
	char junk[4096];
	memset(junk, 0x5a, sizeof(junk));
	ck_assert_int_eq(pwrite(fd, junk, (size_t)pgsz, (off_t)(pages / 2) * pgsz), pgsz);
	close(fd);
	struct queue_opts o = opts_default();
	char err[512];
	int r = queue_open(&o, &q, err, sizeof(err));
	ck_assert_int_eq(r, -EUCLEAN);
	ck_assert_ptr_null(q);
	ck_assert_msg(strstr(err, "quick_check") || strstr(err, "damaged"), "%s", err);
	ck_assert_str_eq(queue_error_name(r), "QueueCorrupt");
	/* the file is left as it was, for recovery */
	struct stat sb2;
	ck_assert_int_eq(stat(p, &sb2), 0);
	ck_assert_int_eq(sb2.st_size, sb.st_size);

	/* the daemon's way: the check deferred to queue_check (the open's own
	 * reads may or may not meet the damage); once it failed, every write
	 * is refused with its sentence, and nothing is written */
	o.defer_quick_check = true;
	r = queue_open(&o, &q, err, sizeof(err));
	if (r == 0) {
		ck_assert_ptr_null(queue_damage(q));
		ck_assert_int_eq(queue_check(q), -EUCLEAN);
		ck_assert_ptr_nonnull(queue_damage(q));
		ck_assert_msg(strstr(queue_damage(q), "quick_check") ||
		                      strstr(queue_damage(q), "damaged"),
		              "%s", queue_damage(q));
		ck_assert_int_eq(put(q, "s-new", "P1", "2024-03-01", "2024-03-06", pl), -EUCLEAN);
		ck_assert_msg(strstr(queue_last_error(q), "quick_check") != NULL ||
		                      strstr(queue_last_error(q), "damaged") != NULL,
		              "%s", queue_last_error(q));
		ck_assert_int_eq(queue_check(q), -EUCLEAN); /* stays refused */
		queue_close(q);
		q = NULL;
	} else {
		ck_assert_int_eq(r, -EUCLEAN);
	}
	ck_assert_int_eq(stat(p, &sb2), 0);
	ck_assert_int_eq(sb2.st_size, sb.st_size);

	/* a file that is not a database at all */
	fd = open(p, O_WRONLY | O_TRUNC);
	ck_assert_int_eq(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	path_in(p, sizeof(p), "queue.db-wal");
	unlink(p);
	r = queue_open(&o, &q, err, sizeof(err));
	ck_assert_int_eq(r, -EUCLEAN);
	ck_assert_ptr_nonnull(strstr(err, "damaged"));
}
END_TEST

/* ------------------------------------------------------------------ */
/* injected faults */

static struct queue *
qopen_fault(void)
{
	ck_assert_int_eq(faultvfs_register(), SQLITE_OK);
	struct queue_opts o = opts_default();
	o.vfs = "faultvfs";
	struct queue *q = NULL;
	char err[512];
	int r = queue_open(&o, &q, err, sizeof(err));
	ck_assert_msg(r == 0, "open: %s", err);
	return q;
}

/* The k-th write (or sync) of an insert fails: the insert reports an error,
 * the handle keeps working, every acknowledged sheet is intact after a
 * reopen with quick_check, and the failed one never shows up. */
static void
fault_sweep(bool sync, int err_code, int want)
{
	for (int k = 1; k < 40; k++) {
		rm_rf(tmpdir);
		ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
		faultvfs_reset();
		struct queue *q = qopen_fault();
		for (int i = 0; i < 5; i++) {
			char id[16];
			snprintf(id, sizeof(id), "ok-%d", i);
			ck_assert_int_eq(put(q, id, "P1", "2024-03-01", "2024-03-06", "acknowledged"), 0);
		}
		faultvfs.sticky = k % 2 == 0;
		faultvfs.write_err = err_code;
		if (sync)
			faultvfs.fail_sync_in = k;
		else
			faultvfs.fail_write_in = k;
		int r = put(q, "victim", "P1", "2024-03-01", "2024-03-06", "must not be acked");
		bool injected = faultvfs.failures > 0;
		faultvfs.fail_sync_in = faultvfs.fail_write_in = 0;
		faultvfs.failing_s = faultvfs.failing_w = false;
		if (!injected) { /* the insert needed fewer than k calls: swept through */
			ck_assert_int_eq(r, 0);
			queue_close(q);
			ck_assert_int_gt(k, 1);
			return;
		}
		ck_assert_msg(r == want, "k=%d: got %d (%s) want %d", k, r, queue_last_error(q), want);
		ck_assert_str_eq(queue_error_name(r), want == -ENOSPC ? "QueueFull" : "IoError");
		/* usable at once */
		expect_payload(q, "ok-3", "acknowledged");
		struct queue_meta m;
		ck_assert_int_eq(queue_get(q, "victim", &m, NULL, NULL), -ENOENT);
		ck_assert_int_eq(put(q, "after", "P1", "2024-03-01", "2024-03-06", "later"), 0);
		struct queue_stats st;
		queue_stats(q, &st);
		ck_assert_uint_eq(st.total, 6);
		queue_close(q);
		/* and after a reopen (with quick_check) */
		q = qopen();
		for (int i = 0; i < 5; i++) {
			char id[16];
			snprintf(id, sizeof(id), "ok-%d", i);
			expect_payload(q, id, "acknowledged");
		}
		expect_payload(q, "after", "later");
		ck_assert_int_eq(queue_get(q, "victim", &m, NULL, NULL), -ENOENT);
		struct queue_put it = { .id = "seq", .practitioner = "P1", .care_date = "2024-03-01",
			                .due_date = "2024-03-06" };
		ck_assert_int_eq(queue_put(q, &it), 0);
		ck_assert_uint_eq(it.seq, 7);
		queue_close(q);
	}
	ck_abort_msg("an insert took 40 writes or syncs?");
}

START_TEST(test_fault_write)
{
	fault_sweep(false, SQLITE_IOERR_WRITE, -EIO);
}
END_TEST

START_TEST(test_fault_full)
{
	fault_sweep(false, SQLITE_FULL, -ENOSPC);
}
END_TEST

START_TEST(test_fault_sync)
{
	fault_sweep(true, 0, -EIO);
}
END_TEST

static int
atoi_id(const char *id)
{
	return (int)strtol(id + 2, NULL, 10);
}

/* Power loss at a random write: every sheet acknowledged before it is
 * there afterwards, intact; the file passes quick_check; the queue goes on. */
START_TEST(test_power_loss)
{
	unsigned seed = (unsigned)time(NULL);
	const char *env = getenv("QUEUE_TEST_SEED");
	if (env)
		seed = (unsigned)strtoul(env, NULL, 10);
	printf("test_power_loss: seed %u (QUEUE_TEST_SEED to replay)\n", seed);
	fflush(stdout);
	srand(seed);
	int crashed = 0, total_acked = 0;
	size_t reverted = 0;
	for (int round = 0; round < 60; round++) {
		rm_rf(tmpdir);
		ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
		faultvfs_reset();
		struct queue *q = qopen_fault();
		bool acked[200] = { false }, accepted[200] = { false };
		int tries = 0, nacked = 0;
		faultvfs.crash_in = 1 + rand() % 150;
		while (!faultvfs.dead && tries < 200) {
			char id[16];
			snprintf(id, sizeof(id), "s-%03d", tries);
			int op = rand() % 10;
			int r;
			if (op < 7 || nacked == 0) {
				op = 0;
				r = put(q, id, "P1", "2024-03-01", "2024-03-06", id);
			} else if (op < 9) {
				struct queue_meta out[3];
				size_t n = 0;
				char b[16];
				snprintf(b, sizeof(b), "b-%d", tries);
				r = queue_take(q, b, 3, out, &n);
				for (size_t i = 0; r == 0 && i < n && !faultvfs.dead; i++) {
					r = queue_transition(q, out[i].id, QUEUE_ACCEPTED, NULL);
					if (r == 0 && !faultvfs.dead)
						accepted[atoi_id(out[i].id)] = true;
				}
			} else {
				struct queue_retention ret = { .finished_days = 1 };
				size_t n = 0;
				fake_now += 2 * 86400000LL;
				r = queue_purge(q, &ret, 10, &n);
			}
			if (faultvfs.dead)
				break; /* the machine died inside this call: no acknowledgement */
			ck_assert_msg(r == 0, "seed %u round %d: %d %s", seed, round, r,
			              queue_last_error(q));
			if (op == 0) {
				acked[tries] = true;
				nacked++;
			}
			tries++;
		}
		queue_close(q);
		crashed += faultvfs.dead;
		total_acked += nacked;
		reverted += faultvfs.nundo;
		faultvfs_crash_apply((unsigned)rand());
		/* The fault VFS lets the process go on after the "power loss"
		 * (its writes vanish), so a commit it undid may already be in the
		 * high-water mark, which a real power loss would have stopped
		 * before: the mark is not what this test is about. */
		struct queue_opts ao = opts_default();
		ao.accept_new = true;
		char aerr[512];
		q = NULL;
		int ar = queue_open(&ao, &q, aerr, sizeof(aerr)); /* quick_check runs here */
		ck_assert_msg(ar == 0, "seed %u round %d: reopen: %s", seed, round, aerr);
		struct queue_stats st;
		queue_stats(q, &st);
		ck_assert_uint_eq(st.count[QUEUE_SENDING], 0);
		/* every put that returned 0 before the power went is there, intact,
		 * unless retention purged it after it was accepted */
		for (int i = 0; i < tries; i++) {
			if (!acked[i])
				continue;
			char id[16];
			snprintf(id, sizeof(id), "s-%03d", i);
			struct queue_meta m;
			int r = queue_get(q, id, &m, NULL, NULL);
			if (r == -ENOENT && accepted[i])
				continue; /* accepted, then purged: allowed */
			ck_assert_msg(r == 0, "seed %u round %d: %s: %d", seed, round, id, r);
			expect_payload(q, id, id);
		}
		ck_assert_int_eq(put(q, "after", "P1", "2024-03-01", "2024-03-06", "after"), 0);
		queue_close(q);
	}
	printf("test_power_loss: 60 rounds, %d lost power, %d acknowledged puts checked, "
	       "%zu unsynced writes at the crashes\n", crashed, total_acked, reverted);
	ck_assert_int_ge(crashed, 50);
}
END_TEST

/* ------------------------------------------------------------------ */
/* a real full disk: a 1 MiB tmpfs in a private mount namespace */

static int
diskfull_child(void)
{
	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("vitaled-test", tmpdir, "tmpfs", 0, "size=1m,mode=0700") < 0) {
		printf("test_disk_full: SKIP: cannot mount a tmpfs here (%s)\n", strerror(errno));
		return 77;
	}
	char ballast[512];
	path_in(ballast, sizeof(ballast), "ballast");
	int fd = open(ballast, O_WRONLY | O_CREAT, 0600);
	static char chunk[128 * 1024];
	memset(chunk, 1, sizeof(chunk));
	if (fd < 0 || write(fd, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
		return 2;
	close(fd);
	struct queue_opts o = opts_default();
	struct queue *q = NULL;
	char err[512];
	if (queue_open(&o, &q, err, sizeof(err)) < 0) {
		printf("open: %s\n", err);
		return 3;
	}
	static char pl[4000];
	memset(pl, 'f', sizeof(pl) - 1);
	int acked = 0, r = 0;
	for (int i = 0; i < 1000; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s-%04d", i);
		r = put(q, id, "P1", "2024-03-01", "2024-03-06", pl);
		if (r < 0)
			break;
		acked++;
	}
	printf("test_disk_full: %d sheets stored, then %s: %s\n", acked, queue_error_name(r),
	       queue_last_error(q));
	if (r != -ENOSPC && r != -EIO)
		return 4;
	/* still serving reads; still refusing writes */
	uint8_t *p = NULL;
	size_t n = 0;
	if (queue_get(q, "s-0000", NULL, &p, &n) < 0 || n != strlen(pl))
		return 5;
	queue_free_payload(p, n);
	if (put(q, "still-full", "P1", "2024-03-01", "2024-03-06", pl) == 0)
		return 6;
	struct queue_stats st;
	if (queue_stats(q, &st) < 0 || st.total != (uint64_t)acked)
		return 7;
	/* space comes back */
	unlink(ballast);
	if ((r = put(q, "after", "P1", "2024-03-01", "2024-03-06", pl)) < 0) {
		fprintf(stderr, "test_disk_full: after freeing: %d %s\n", r, queue_last_error(q));
		return 8;
	}
	queue_close(q);
	if (queue_open(&o, &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "test_disk_full: reopen: %s\n", err);
		return 9;
	}
	for (int i = 0; i < acked; i++) {
		char id[16];
		snprintf(id, sizeof(id), "s-%04d", i);
		if (queue_get(q, id, NULL, &p, &n) < 0 || n != strlen(pl))
			return 10;
		queue_free_payload(p, n);
	}
	if (queue_get(q, "still-full", NULL, NULL, NULL) != -ENOENT)
		return 11;
	queue_close(q);
	umount(tmpdir);
	return 0;
}

START_TEST(test_disk_full)
{
	fflush(stdout);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int rc = diskfull_child();
		fflush(stdout);
		_exit(rc);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		return;
	ck_assert_msg(WEXITSTATUS(status) == 0, "disk-full scenario failed at step %d",
	              WEXITSTATUS(status));
}
END_TEST

static Suite *
queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("queue");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_open_create);
	tcase_add_test(tc, test_busy);
	tcase_add_test(tc, test_roundtrip);
	tcase_add_test(tc, test_wrong_key);
	tcase_add_test(tc, test_missing_key);
	tcase_add_test(tc, test_tamper);
	tcase_add_test(tc, test_transitions);
	tcase_add_test(tc, test_sending_reset);
	tcase_add_test(tc, test_sequence);
	tcase_add_test(tc, test_drafts);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_retention);
	tcase_add_test(tc, test_stats_list);
	tcase_add_test(tc, test_stats_mins_cached);
	tcase_add_test(tc, test_migrate_v0);
	tcase_add_test(tc, test_migrate_v1);
	tcase_add_test(tc, test_deferred_check);
	tcase_add_test(tc, test_corrupt);
	tcase_add_test(tc, test_fault_write);
	tcase_add_test(tc, test_fault_full);
	tcase_add_test(tc, test_fault_sync);
	tcase_add_test(tc, test_power_loss);
	tcase_add_test(tc, test_disk_full);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(queue_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
