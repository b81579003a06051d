/* Unit tests of storage/queue, issue 11 points 4, 9 and 17:
 * - the high-water mark (queue.hwm): a lost, emptied or rolled-back
 *   queue.db is refused (QueueLost) while the key and the mark exist,
 *   --accept-new-queue (opts.accept_new) opens it and the numbers go on
 *   above the mark; a fresh install opens as before; a tampered mark is
 *   refused;
 * - retention by the queue's own clock: a forward jump of the wall clock
 *   purges nothing made minutes before;
 * - request ids: the same id again gives the sheet already made (create,
 *   draft, completion), across a reopen, within one batch; listing and
 *   lookup by it; the v4 → v5 migration. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/queue.h"

static int64_t fake_now = 1700000000000LL;
static int64_t mono_skew;

static int64_t
fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
}

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

static char tmpdir[256];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_queue_hwm.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	fake_now = 1700000000000LL;
	mono_skew = 0;
}

static void
teardown(void)
{
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void
path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", tmpdir, name);
}

static int
try_open(bool accept, struct queue **q, char *err, size_t errlen)
{
	struct queue_opts o = { .dir = tmpdir, .clock_ms = fake_clock, .mono_ms = fake_mono,
		                .accept_new = accept };
	*q = NULL;
	return queue_open(&o, q, err, errlen);
}

static struct queue *
qopen(void)
{
	struct queue *q = NULL;
	char err[1024];
	int r = try_open(false, &q, err, sizeof(err));
	ck_assert_msg(r == 0, "queue_open: %d %s", r, err);
	return q;
}

static int
put_rid(struct queue *q, const char *id, const char *pract, const char *date, const char *rid,
        bool draft, struct queue_put *out)
{
	struct queue_put it = { .id = id, .practitioner = pract, .care_date = date,
		                .due_date = draft ? NULL : "2024-03-06", .draft = draft,
		                .payload = (const uint8_t *)id, .payload_len = strlen(id),
		                .request_id = rid };
	int r = queue_put(q, &it);
	if (out)
		*out = it;
	return r;
}

static uint32_t
put_seq(struct queue *q, const char *id, const char *pract, const char *date)
{
	struct queue_put it;
	ck_assert_int_eq(put_rid(q, id, pract, date, NULL, false, &it), 0);
	return it.seq;
}

static void
remove_db(bool truncate_only)
{
	char p[512];
	const char *names[] = { "queue.db", "queue.db-wal", "queue.db-shm" };
	for (int i = 0; i < 3; i++) {
		path_in(p, sizeof(p), names[i]);
		if (truncate_only && i == 0)
			ck_assert_int_eq(truncate(p, 0), 0);
		else
			unlink(p);
	}
}

static void
copy_file(const char *from, const char *to)
{
	char a[512], b[512];
	path_in(a, sizeof(a), from);
	path_in(b, sizeof(b), to);
	FILE *in = fopen(a, "rb");
	if (!in) {
		unlink(b);
		return;
	}
	FILE *out = fopen(b, "wb");
	ck_assert_ptr_nonnull(out);
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
}

static double
ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (t1.tv_sec - t0->tv_sec) * 1e3 + (t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* ------------------------------------------------------------------ */
/* point 4: new or lost */

START_TEST(test_fresh_install)
{
	char p[512];
	struct queue *q = qopen(); /* nothing there: opens as ever */
	ck_assert_str_eq(queue_open_notice(q), "");
	ck_assert_uint_eq(put_seq(q, "s1", "P1", "2024-03-01"), 1);
	queue_close(q);
	path_in(p, sizeof(p), "queue.hwm");
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	q = qopen(); /* a normal restart */
	ck_assert_uint_eq(put_seq(q, "s2", "P1", "2024-03-01"), 2);
	queue_close(q);
}
END_TEST

static void
expect_lost(const char *why, int nsheets)
{
	struct queue *q = NULL;
	char err[1024], want[64];
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int r = try_open(false, &q, err, sizeof(err));
	double ms = ms_since(&t0);
	ck_assert_msg(r == -ESTALE, "%s: open gave %d (%s), not QueueLost", why, r, err);
	ck_assert_ptr_null(q);
	ck_assert_ptr_nonnull(strstr(err, "vitaled --accept-new-queue"));
	snprintf(want, sizeof(want), "records %d numbered sheets", nsheets);
	ck_assert_msg(strstr(err, want), "%s: %s", why, err);
	ck_assert_str_eq(queue_error_name(r), "QueueLost");
	printf("test_queue_hwm: %s: refused in %.2f ms: %s\n", why, ms, err);
	/* and again: a refusal leaves nothing that would make the next start pass */
	ck_assert_int_eq(try_open(false, &q, err, sizeof(err)), -ESTALE);
}

static void
fill_three(void)
{
	struct queue *q = qopen();
	ck_assert_uint_eq(put_seq(q, "a1", "P1", "2024-03-01"), 1);
	ck_assert_uint_eq(put_seq(q, "a2", "P1", "2024-03-01"), 2);
	ck_assert_uint_eq(put_seq(q, "a3", "P2", "2024-03-01"), 1);
	queue_close(q);
}

START_TEST(test_lost_truncated)
{
	fill_three();
	remove_db(true);
	expect_lost("queue.db truncated to 0 bytes", 3);
	/* the explicit recovery: logged figures, numbers above the mark */
	struct queue *q = NULL;
	char err[1024];
	ck_assert_int_eq(try_open(true, &q, err, sizeof(err)), 0);
	const char *n = queue_open_notice(q);
	printf("test_queue_hwm: accepted: %s\n", n);
	ck_assert_ptr_nonnull(strstr(n, "3 sheets lost"));
	ck_assert_ptr_nonnull(strstr(n, "P1 on 2024-03-01"));
	uint32_t s = put_seq(q, "b1", "P1", "2024-03-01");
	ck_assert_uint_gt(s, 2);
	ck_assert_uint_eq(s, QUEUE_HWM_BLOCK + 1);
	ck_assert_uint_gt(put_seq(q, "b2", "P2", "2024-03-01"), 1);
	ck_assert_uint_eq(put_seq(q, "b3", "P3", "2024-03-01"), 1); /* never seen: from 1 */
	queue_close(q);
	/* the next start is a normal one, and the floors stay */
	q = qopen();
	ck_assert_str_eq(queue_open_notice(q), "");
	ck_assert_uint_eq(put_seq(q, "b4", "P1", "2024-03-01"), s + 1);
	queue_close(q);
}
END_TEST

START_TEST(test_lost_deleted)
{
	fill_three();
	remove_db(false);
	expect_lost("queue.db deleted", 3);
	/* deleted with its mark: still not a fresh install, the key is there */
	char p[512];
	path_in(p, sizeof(p), "queue.hwm");
	ck_assert_int_eq(unlink(p), 0);
	struct queue *q = NULL;
	char err[1024];
	ck_assert_int_eq(try_open(false, &q, err, sizeof(err)), -ESTALE);
	ck_assert_ptr_nonnull(strstr(err, "missing or empty while queue.key exists"));
}
END_TEST

START_TEST(test_rolled_back)
{
	struct queue *q = qopen();
	put_seq(q, "a1", "P1", "2024-03-01");
	put_seq(q, "a2", "P1", "2024-03-01");
	queue_close(q);
	copy_file("queue.db", "backup.db");
	copy_file("queue.db-wal", "backup.db-wal");
	q = qopen();
	for (int i = 0; i < 5; i++) {
		char id[8];
		snprintf(id, sizeof(id), "c%d", i);
		put_seq(q, id, "P1", "2024-03-01");
	}
	queue_close(q);
	remove_db(false);
	copy_file("backup.db", "queue.db");
	copy_file("backup.db-wal", "queue.db-wal");
	expect_lost("queue.db rolled back to a copy with 2 of 7 sheets", 7);
	char err[1024];
	ck_assert_int_eq(try_open(true, &q, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(queue_open_notice(q), "5 sheets lost"));
	ck_assert_uint_gt(put_seq(q, "d1", "P1", "2024-03-01"), 7);
	queue_close(q);
}
END_TEST

START_TEST(test_mark_tampered)
{
	fill_three();
	char p[512];
	path_in(p, sizeof(p), "queue.hwm");
	char *buf = NULL;
	FILE *f = fopen(p, "r");
	ck_assert_ptr_nonnull(f);
	size_t cap = 0;
	ssize_t n = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	ck_assert_int_gt(n, 0);
	char *c = strstr(buf, "count 3");
	ck_assert_ptr_nonnull(c);
	c[6] = '1'; /* "count 1": lower the mark to hide a rollback */
	f = fopen(p, "w");
	fputs(buf, f);
	fclose(f);
	free(buf);
	struct queue *q = NULL;
	char err[1024];
	ck_assert_int_eq(try_open(false, &q, err, sizeof(err)), -ESTALE);
	ck_assert_ptr_nonnull(strstr(err, "does not authenticate"));
}
END_TEST

/* The mark is written lazily after commits (count), at once for a new
 * block of numbers; a clean close leaves it exact. */
START_TEST(test_mark_lazy)
{
	struct queue *q = qopen();
	for (int i = 0; i < 10; i++) {
		char id[8];
		snprintf(id, sizeof(id), "e%d", i);
		put_seq(q, id, "P1", "2024-03-01");
	}
	ck_assert_int_eq(queue_hwm_flush(q), 0);
	queue_close(q);
	char p[512], *buf = NULL;
	size_t len = 0;
	path_in(p, sizeof(p), "queue.hwm");
	FILE *f = fopen(p, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_gt(getdelim(&buf, &len, '\0', f), 0);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "count 10\n"));
	char want[64];
	snprintf(want, sizeof(want), "seq P1 2024-03-01 %d\n", QUEUE_HWM_BLOCK);
	ck_assert_ptr_nonnull(strstr(buf, want));
	free(buf);
}
END_TEST

/* ------------------------------------------------------------------ */
/* point 9: retention by the queue's clock */

START_TEST(test_retention_clock_jump)
{
	struct queue *q = qopen();
	struct queue_put it;
	ck_assert_int_eq(put_rid(q, "kiosk1", "-", "2023-11-14", NULL, true, &it), 0);
	ck_assert_int_eq(put_rid(q, "done1", "P1", "2023-11-14", NULL, false, &it), 0);
	struct queue_meta m;
	size_t n;
	ck_assert_int_eq(queue_take(q, "b1", 1, &m, &n), 0);
	ck_assert_int_eq(queue_transition(q, "done1", QUEUE_ACCEPTED, NULL), 0);
	/* minutes later the wall clock jumps 40 days ahead; nothing else moved */
	fake_now += 5 * 60000;
	mono_skew += 40LL * 86400000;
	fake_now += 40LL * 86400000;
	struct queue_retention ret = { .finished_days = 30, .draft_days = 30 };
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(queue_get(q, "kiosk1", NULL, NULL, NULL), 0);
	ck_assert_int_eq(queue_get(q, "done1", NULL, NULL, NULL), 0);
	/* a restart does not credit the jump either */
	queue_close(q);
	q = qopen();
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
	ck_assert_uint_eq(n, 0);
	/* 31 days of real time later, both are old by both clocks */
	fake_now += 31LL * 86400000;
	ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
	ck_assert_uint_eq(n, 2);
	queue_close(q);
}
END_TEST

/* A stop shorter than QCLOCK_GAP_MAX (three days) counts; the queue's
 * clock is saved at every purge and at open. */
START_TEST(test_retention_restart_gap)
{
	struct queue *q = qopen();
	ck_assert_int_eq(put_rid(q, "k1", "-", "2023-11-14", NULL, true, NULL), 0);
	queue_close(q);
	struct queue_retention ret = { .finished_days = 30, .draft_days = 2 };
	size_t n;
	for (int day = 0; day < 3; day++) {
		/* off for a night (the monotonic clock starts again at boot) */
		fake_now += 86400000LL;
		mono_skew = fake_now - 1000;
		q = qopen();
		ck_assert_int_eq(queue_purge(q, &ret, 100, &n), 0);
		queue_close(q);
		if (day < 1)
			ck_assert_uint_eq(n, 0);
	}
	q = qopen();
	ck_assert_int_eq(queue_get(q, "k1", NULL, NULL, NULL), -ENOENT);
	queue_close(q);
}
END_TEST

/* ------------------------------------------------------------------ */
/* point 17: request ids */

START_TEST(test_request_id)
{
	struct queue *q = qopen();
	struct queue_put a, b;
	ck_assert_int_eq(put_rid(q, "s1", "P1", "2024-03-01", "till-7:0001", false, &a), 0);
	ck_assert(!a.replayed);
	ck_assert_uint_eq(a.seq, 1);
	/* the same request again (its answer was lost): the same sheet */
	ck_assert_int_eq(put_rid(q, "s2", "P1", "2024-03-01", "till-7:0001", false, &b), 0);
	ck_assert(b.replayed);
	ck_assert_str_eq(b.replay.id, "s1");
	ck_assert_uint_eq(b.seq, 1);
	ck_assert_str_eq(b.replay.request_id, "till-7:0001");
	ck_assert_int_eq(queue_get(q, "s2", NULL, NULL, NULL), -ENOENT);
	/* after a restart too */
	queue_close(q);
	q = qopen();
	ck_assert_int_eq(put_rid(q, "s3", "P1", "2024-03-01", "till-7:0001", false, &b), 0);
	ck_assert(b.replayed);
	ck_assert_str_eq(b.replay.id, "s1");
	ck_assert_uint_eq(put_seq(q, "s4", "P1", "2024-03-01"), 2);
	/* twice in one batch: one sheet */
	struct queue_put it[3] = {
		{ .id = "t1", .practitioner = "P1", .care_date = "2024-03-01", .due_date = "2024-03-06",
		  .payload = (const uint8_t *)"x", .payload_len = 1, .request_id = "dup" },
		{ .id = "t2", .practitioner = "P1", .care_date = "2024-03-01", .due_date = "2024-03-06",
		  .payload = (const uint8_t *)"x", .payload_len = 1, .request_id = "dup" },
		{ .id = "t3", .practitioner = "P1", .care_date = "2024-03-01", .due_date = "2024-03-06",
		  .payload = (const uint8_t *)"x", .payload_len = 1, .request_id = "other" },
	};
	ck_assert_int_eq(queue_put_batch(q, it, 3), 0);
	ck_assert_int_eq(it[0].result, 0);
	ck_assert(!it[0].replayed);
	ck_assert(it[1].replayed);
	ck_assert_str_eq(it[1].replay.id, "t1");
	ck_assert_uint_eq(it[1].seq, it[0].seq);
	ck_assert_uint_eq(it[2].seq, it[0].seq + 1);
	/* lookups */
	struct queue_meta m;
	ck_assert_int_eq(queue_find_request(q, "other", &m), 0);
	ck_assert_str_eq(m.id, "t3");
	ck_assert_int_eq(queue_find_request(q, "nope", &m), -ENOENT);
	struct queue_filter f = { .request_id = "dup" };
	struct queue_meta out[4];
	size_t n;
	ck_assert_int_eq(queue_list(q, &f, out, 4, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(out[0].id, "t1");
	/* bounds */
	char big[QUEUE_REQUEST_ID_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(put_rid(q, "u1", "P1", "2024-03-01", big, false, NULL), -EINVAL);
	big[QUEUE_REQUEST_ID_MAX] = '\0';
	ck_assert_int_eq(put_rid(q, "u2", "P1", "2024-03-01", big, false, NULL), 0);
	ck_assert_int_eq(put_rid(q, "u3", "P1", "2024-03-01", "", false, NULL), -EINVAL);
	ck_assert_int_eq(put_rid(q, "u4", "P1", "2024-03-01", "a b", false, NULL), -EINVAL);
	ck_assert_int_eq(put_rid(q, "u5", "P1", "2024-03-01", "caf\xc3\xa9", false, NULL), -EINVAL);
	queue_close(q);
}
END_TEST

START_TEST(test_request_id_draft)
{
	struct queue *q = qopen();
	struct queue_put a;
	ck_assert_int_eq(put_rid(q, "d1", "-", "2024-03-01", "kiosk:1", true, &a), 0);
	ck_assert_int_eq(put_rid(q, "d2", "-", "2024-03-01", "kiosk:1", true, &a), 0);
	ck_assert(a.replayed);
	ck_assert_str_eq(a.replay.id, "d1");
	ck_assert_int_eq(a.replay.state, QUEUE_DRAFT);
	struct queue_put c = { .id = "d1", .practitioner = "P1", .care_date = "2024-03-01",
		               .due_date = "2024-03-06", .payload = (const uint8_t *)"signed",
		               .payload_len = 6, .request_id = "complete:1" };
	ck_assert_int_eq(queue_complete_draft(q, &c), 0);
	ck_assert(!c.replayed);
	ck_assert_uint_eq(c.seq, 1);
	queue_close(q);
	q = qopen();
	struct queue_put c2 = c;
	c2.seq = 0;
	ck_assert_int_eq(queue_complete_draft(q, &c2), 0);
	ck_assert(c2.replayed);
	ck_assert_uint_eq(c2.seq, 1);
	ck_assert_str_eq(c2.replay.complete_request_id, "complete:1");
	/* another completion of the same sheet is still refused */
	c2.request_id = "complete:2";
	ck_assert_int_eq(queue_complete_draft(q, &c2), -EPERM);
	/* a completing request id cannot be taken by a new sheet */
	struct queue_put x;
	ck_assert_int_eq(put_rid(q, "n1", "P1", "2024-03-01", "complete:1", false, &x), 0);
	ck_assert(x.replayed);
	ck_assert_str_eq(x.replay.id, "d1");
	queue_close(q);
}
END_TEST

/* A version-4 file (v5 undone by hand) migrates: rows keep their
 * numbers, get no request id, and their queue clock is their creation. */
START_TEST(test_migrate_v4)
{
	struct queue *q = qopen();
	put_seq(q, "m1", "P1", "2024-03-01");
	ck_assert_int_eq(put_rid(q, "m2", "-", "2024-03-01", NULL, true, NULL), 0);
	queue_close(q);
	char p[512];
	sqlite3 *db = NULL;
	path_in(p, sizeof(p), "queue.db");
	ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
	ck_assert_int_eq(
	        sqlite3_exec(db,
	                     "BEGIN; DROP TRIGGER sheets_request_once; DROP INDEX sheets_request;"
	                     "DROP INDEX sheets_complete_request; DROP TABLE seq_floor;"
	                     "ALTER TABLE sheets DROP COLUMN request_id;"
	                     "ALTER TABLE sheets DROP COLUMN complete_request_id;"
	                     "ALTER TABLE sheets DROP COLUMN qclock;"
	                     "ALTER TABLE sheets DROP COLUMN qclosed;"
	                     "DELETE FROM meta WHERE k IN ('qclock', 'purged_numbered');"
	                     "PRAGMA user_version = 4; COMMIT;",
	                     NULL, NULL, NULL),
	        SQLITE_OK);
	sqlite3_close(db);
	path_in(p, sizeof(p), "queue.hwm");
	unlink(p); /* a v4 install had no mark */
	q = qopen();
	struct queue_meta m;
	ck_assert_int_eq(queue_get(q, "m1", &m, NULL, NULL), 0);
	ck_assert_uint_eq(m.seq, 1);
	ck_assert_str_eq(m.request_id, "");
	ck_assert_uint_eq(put_seq(q, "m3", "P1", "2024-03-01"), 2);
	struct queue_put a;
	ck_assert_int_eq(put_rid(q, "m4", "P1", "2024-03-01", "r1", false, &a), 0);
	ck_assert_int_eq(put_rid(q, "m5", "P1", "2024-03-01", "r1", false, &a), 0);
	ck_assert(a.replayed);
	queue_close(q);
	path_in(p, sizeof(p), "queue.db");
	ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
	sqlite3_stmt *s = NULL;
	ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM sheets WHERE qclock = created",
	                                    -1, &s, NULL),
	                 SQLITE_OK);
	ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(s, 0), 4);
	sqlite3_finalize(s);
	sqlite3_close(db);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("queue_hwm");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_fresh_install);
	tcase_add_test(tc, test_lost_truncated);
	tcase_add_test(tc, test_lost_deleted);
	tcase_add_test(tc, test_rolled_back);
	tcase_add_test(tc, test_mark_tampered);
	tcase_add_test(tc, test_mark_lazy);
	tcase_add_test(tc, test_retention_clock_jump);
	tcase_add_test(tc, test_retention_restart_gap);
	tcase_add_test(tc, test_request_id);
	tcase_add_test(tc, test_request_id_draft);
	tcase_add_test(tc, test_migrate_v4);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
