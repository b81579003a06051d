/* Unit tests of storage/queue's upload part (schema v4): the migration from
 * version 3 (built by the test from a fresh queue by undoing v4 with raw
 * SQL), certificates, forming batches by certificate within the sheet and
 * byte limits, splitting (rebatch), a batch's results in one transaction
 * with code and reason, sending → queued at open, returns and their cursor
 * (twice changes nothing, unknown ids skipped), opposition, counts. */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "storage/queue.h"

static int64_t fake_now = 1700000000000LL;
static char tmpdir[256];

static int64_t
fake_clock(void *arg)
{
	(void)arg;
	return fake_now;
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
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_queue_upload.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	fake_now = 1700000000000LL;
}

static void
teardown(void)
{
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static struct queue *
qopen(void)
{
	struct queue_opts o = { .dir = tmpdir, .clock_ms = fake_clock };
	struct queue *q = NULL;
	char err[256];
	int r = queue_open(&o, &q, err, sizeof(err));
	ck_assert_msg(r == 0, "open: %s", err);
	return q;
}

static void
put(struct queue *q, const char *id, const char *due, const char *cert, size_t size)
{
	char *p = malloc(size);
	memset(p, 'x', size);
	struct queue_put it = { .id = id, .practitioner = "123456789", .care_date = "2023-11-13",
		                .due_date = due, .payload = (uint8_t *)p, .payload_len = size,
		                .cert = cert };
	ck_assert_int_eq(queue_put(q, &it), 0);
	free(p);
}

static long long
raw_int(const char *sql)
{
	char path[300];
	sqlite3 *db;
	sqlite3_stmt *s;
	long long v = -1;
	snprintf(path, sizeof(path), "%s/queue.db", tmpdir);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void
raw_exec(const char *sql)
{
	char path[300];
	sqlite3 *db;
	char *msg = NULL;
	snprintf(path, sizeof(path), "%s/queue.db", tmpdir);
	ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "");
	sqlite3_free(msg);
	sqlite3_close(db);
}

static void
cert(struct queue *q, const char *der, char digest[65])
{
	const uint8_t *c[2] = { (const uint8_t *)der, (const uint8_t *)"INTERMEDIATE" };
	size_t l[2] = { strlen(der), 12 };
	ck_assert_int_eq(queue_cert_put(q, c, l, 2, digest), 0);
	ck_assert_uint_eq(strlen(digest), 64);
}

START_TEST(test_migrate_from_v3)
{
	struct queue *q = qopen();
	struct queue_meta m;
	put(q, "s1", "2023-11-16", NULL, 100);
	put(q, "s2", "2023-11-17", NULL, 100);
	size_t n;
	ck_assert_int_eq(queue_take(q, "b1", 1, &m, &n), 0);
	queue_close(q);
	ck_assert_int_eq(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
	/* undo v5 and v4: what a version-3 file looks like */
	raw_exec("BEGIN; DROP TRIGGER sheets_request_once; DROP INDEX sheets_request;"
	         "DROP INDEX sheets_complete_request; DROP TABLE seq_floor;"
	         "ALTER TABLE sheets DROP COLUMN request_id;"
	         "ALTER TABLE sheets DROP COLUMN complete_request_id;"
	         "ALTER TABLE sheets DROP COLUMN qclock; ALTER TABLE sheets DROP COLUMN qclosed;"
	         "DELETE FROM meta WHERE k IN ('qclock', 'purged_numbered'); COMMIT;");
	raw_exec("BEGIN; DROP TABLE certs; DROP TABLE opposition; DROP INDEX sheets_state_cert_due;"
	         "ALTER TABLE sheets DROP COLUMN cert; ALTER TABLE sheets DROP COLUMN code;"
	         "PRAGMA user_version = 3; COMMIT;");
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'certs'"), 0);
	q = qopen();
	ck_assert_int_eq(raw_int("PRAGMA user_version"), QUEUE_SCHEMA_VERSION);
	ck_assert_int_eq(queue_get(q, "s1", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_QUEUED); /* sending → queued at open */
	ck_assert_str_eq(m.cert, "");
	ck_assert_str_eq(m.batch_id, "");
	ck_assert_uint_eq(m.attempts, 1);
	/* a v3 sheet has no certificate: it waits, counted, until it gets one */
	struct queue_upload_counts c;
	ck_assert_int_eq(queue_upload_counts(q, "2023-11-14", "2023-11-16", &c), 0);
	ck_assert_uint_eq(c.waiting, 2);
	ck_assert_uint_eq(c.no_cert, 2);
	ck_assert_uint_eq(c.due_by, 1);
	struct queue_meta out[4];
	char cd[65], used[65];
	struct queue_take_opts o = { "b2", 4, 0 };
	ck_assert_int_eq(queue_take_batch(q, &o, out, &n, used), 0);
	ck_assert_uint_eq(n, 0);
	cert(q, "CERT-A", cd);
	ck_assert_int_eq(queue_set_cert(q, "s1", cd), 0);
	ck_assert_int_eq(queue_take_batch(q, &o, out, &n, used), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(used, cd);
	queue_close(q);
}
END_TEST

START_TEST(test_certs)
{
	struct queue *q = qopen();
	char a[65], a2[65], b[65];
	uint8_t *chain;
	size_t len;
	cert(q, "CERT-A", a);
	cert(q, "CERT-A", a2);
	ck_assert_str_eq(a, a2);
	cert(q, "CERT-B", b);
	ck_assert_str_ne(a, b);
	ck_assert_int_eq(queue_cert_get(q, a, &chain, &len), 0);
	/* the CBOR array of the batch's x5chain: [h'CERT-A', h'INTERMEDIATE'] */
	ck_assert_uint_eq(len, 1 + 1 + 6 + 1 + 12);
	ck_assert_uint_eq(chain[0], 0x82);
	ck_assert_mem_eq(chain + 2, "CERT-A", 6);
	free(chain);
	ck_assert_int_eq(queue_cert_get(q, "00000000000000000000000000000000000000000000000000000000"
	                                   "00000000",
	                                &chain, &len),
	                 -ENOENT);
	ck_assert_int_eq(queue_set_current_cert(q, "0000000000000000000000000000000000000000000000"
	                                           "000000000000000000"),
	                 -ENOENT);
	/* the current certificate goes with every later put that names none */
	ck_assert_int_eq(queue_set_current_cert(q, a), 0);
	put(q, "s1", "2023-11-16", NULL, 10);
	put(q, "s2", "2023-11-16", b, 10);
	struct queue_meta m;
	ck_assert_int_eq(queue_get(q, "s1", &m, NULL, NULL), 0);
	ck_assert_str_eq(m.cert, a);
	ck_assert_int_eq(queue_get(q, "s2", &m, NULL, NULL), 0);
	ck_assert_str_eq(m.cert, b);
	/* set once */
	ck_assert_int_eq(queue_set_cert(q, "s2", a), -EPERM);
	ck_assert_int_eq(queue_set_cert(q, "s2", b), 0);
	ck_assert_int_eq(queue_set_cert(q, "nope", b), -ENOENT);
	queue_close(q);
}
END_TEST

START_TEST(test_take_by_cert)
{
	struct queue *q = qopen();
	char a[65], b[65], used[65];
	struct queue_meta out[8];
	size_t n;
	cert(q, "CERT-A", a);
	cert(q, "CERT-B", b);
	put(q, "a1", "2023-11-20", a, 100);
	put(q, "b1", "2023-11-16", b, 100); /* most urgent: B goes first */
	put(q, "a2", "2023-11-15", a, 100);
	put(q, "b2", "2023-11-21", b, 100);
	put(q, "b3", "2023-11-19", b, 100);
	struct queue_take_opts o = { "batch-1", 8, 0 };
	ck_assert_int_eq(queue_take_batch(q, &o, out, &n, used), 0);
	/* a2 is the most urgent of all: certificate A, in due order */
	ck_assert_str_eq(used, a);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out[0].id, "a2");
	ck_assert_str_eq(out[1].id, "a1");
	ck_assert_int_eq(out[0].state, QUEUE_SENDING);
	ck_assert_str_eq(out[0].batch_id, "batch-1");
	/* bytes: 250 takes two sheets of 100; a sheet over the limit alone still goes */
	struct queue_take_opts o2 = { "batch-2", 8, 250 };
	ck_assert_int_eq(queue_take_batch(q, &o2, out, &n, used), 0);
	ck_assert_str_eq(used, b);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(out[0].id, "b1");
	ck_assert_str_eq(out[1].id, "b3");
	struct queue_take_opts o3 = { "batch-3", 8, 10 };
	ck_assert_int_eq(queue_take_batch(q, &o3, out, &n, used), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(queue_take_batch(q, &o3, out, &n, used), 0);
	ck_assert_uint_eq(n, 0);
	/* sheets per batch */
	queue_close(q);
}
END_TEST

START_TEST(test_results_one_transaction)
{
	struct queue *q = qopen();
	char a[65], used[65];
	struct queue_meta out[4], m;
	size_t n;
	char reason[128];
	cert(q, "CERT-A", a);
	put(q, "s1", "2023-11-16", a, 10);
	put(q, "s2", "2023-11-16", a, 10);
	put(q, "s3", "2023-11-16", a, 10);
	struct queue_take_opts o = { "b1", 4, 0 };
	ck_assert_int_eq(queue_take_batch(q, &o, out, &n, used), 0);
	ck_assert_uint_eq(n, 3);
	/* split: s3 goes to its own batch */
	const char *ids[] = { "s3" };
	ck_assert_int_eq(queue_rebatch(q, "b2", ids, 1), 0);
	ck_assert_int_eq(queue_get(q, "s3", &m, NULL, NULL), 0);
	ck_assert_str_eq(m.batch_id, "b2");
	ck_assert_uint_eq(m.attempts, 2);
	struct queue_update u[3] = {
		{ .id = "s1", .to = QUEUE_ACCEPTED },
		{ .id = "s2", .to = QUEUE_REJECTED, .code = "signature", .reason = "bad signature" },
		{ .id = "s3", .to = QUEUE_ACCEPTED },
	};
	ck_assert_int_eq(queue_update_batch(q, u, 3), 0);
	ck_assert_int_eq(queue_get(q, "s2", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_REJECTED);
	ck_assert_str_eq(m.code, "signature");
	ck_assert_int_eq(queue_get_reason(q, "s2", reason, sizeof(reason)), 0);
	ck_assert_str_eq(reason, "bad signature");
	/* the code is in clear, the reason is not */
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sheets WHERE code = 'signature'"), 1);
	ck_assert_int_eq(raw_int("SELECT COUNT(*) FROM sheets WHERE CAST(reason AS TEXT) LIKE '%bad%'"),
	                 0);
	ck_assert_int_eq(queue_rebatch(q, "b3", ids, 1), -EPERM); /* not sending any more */
	struct queue_upload_counts c;
	ck_assert_int_eq(queue_upload_counts(q, "2023-11-14", "2023-11-20", &c), 0);
	ck_assert_uint_eq(c.rejected, 1);
	ck_assert_uint_eq(c.waiting, 0);
	queue_close(q);
}
END_TEST

START_TEST(test_returns_cursor)
{
	struct queue *q = qopen();
	char a[65], used[65], buf[300];
	struct queue_meta out[4], m;
	size_t n, applied, skipped;
	cert(q, "CERT-A", a);
	put(q, "s1", "2023-11-16", a, 10);
	put(q, "s2", "2023-11-16", a, 10);
	struct queue_take_opts o = { "b1", 4, 0 };
	ck_assert_int_eq(queue_take_batch(q, &o, out, &n, used), 0);
	struct queue_update u[2] = { { .id = "s1", .to = QUEUE_ACCEPTED },
		                     { .id = "s2", .to = QUEUE_ACCEPTED } };
	ck_assert_int_eq(queue_update_batch(q, u, 2), 0);
	ck_assert_int_eq(queue_cursor_get(q, "returns", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "");
	struct queue_return rt[3] = {
		{ "s1", QUEUE_PAID, NULL, NULL },
		{ "s2", QUEUE_REFUSED, "rights", "no rights at the care date" },
		{ "unknown", QUEUE_PAID, NULL, NULL },
	};
	ck_assert_int_eq(queue_apply_returns(q, rt, 3, "c1", &applied, &skipped), 0);
	ck_assert_uint_eq(applied, 2);
	ck_assert_uint_eq(skipped, 1);
	ck_assert_int_eq(queue_get(q, "s2", &m, NULL, NULL), 0);
	ck_assert_int_eq(m.state, QUEUE_REFUSED);
	ck_assert_str_eq(m.code, "rights");
	ck_assert_int_eq(queue_cursor_get(q, "returns", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "c1");
	/* twice: nothing changes but the cursor */
	ck_assert_int_eq(queue_apply_returns(q, rt, 3, "c2", &applied, &skipped), 0);
	ck_assert_uint_eq(applied, 0);
	ck_assert_uint_eq(skipped, 3);
	queue_close(q);
	q = qopen();
	ck_assert_int_eq(queue_cursor_get(q, "returns", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "c2");
	ck_assert_int_eq(queue_cursor_get(q, "other", buf, sizeof(buf)), -EINVAL);
	queue_close(q);
}
END_TEST

START_TEST(test_opposition)
{
	struct queue *q = qopen();
	char buf[64];
	const char add[2][33] = { "8A3F00120045", "11" };
	const char rem[1][33] = { "11" };
	ck_assert_int_eq(queue_apply_opposition(q, add, 2, NULL, 0, "o1"), 0);
	ck_assert_int_eq(queue_opposed(q, "11"), 1);
	ck_assert_int_eq(queue_apply_opposition(q, NULL, 0, rem, 1, "o2"), 0);
	ck_assert_int_eq(queue_opposed(q, "11"), 0);
	ck_assert_int_eq(queue_opposed(q, "8A3F00120045"), 1);
	ck_assert_int_eq(queue_cursor_get(q, "opposition", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "o2");
	/* the whole list, for the daemon's copy in memory */
	char(*all)[33] = NULL;
	size_t n = 99;
	ck_assert_int_eq(queue_opposition_list(q, &all, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(all[0], "8A3F00120045");
	free(all);
	ck_assert_int_eq(queue_apply_opposition(q, NULL, 0, add, 1, "o3"), 0);
	ck_assert_int_eq(queue_opposition_list(q, &all, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_ptr_null(all);
	queue_close(q);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("queue_upload");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_migrate_from_v3);
	tcase_add_test(tc, test_certs);
	tcase_add_test(tc, test_take_by_cert);
	tcase_add_test(tc, test_results_one_transaction);
	tcase_add_test(tc, test_returns_cursor);
	tcase_add_test(tc, test_opposition);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
