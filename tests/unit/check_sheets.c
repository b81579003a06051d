/* Unit tests of the sheet-creation state machine (daemon/sheets/sheetcommit):
 * group commit, drafts and CompleteDraft, queue full and I/O errors, on the
 * real storage/queue in a temporary directory.
 *
 * The machine's work runner is the test's own: jobs are held until the test
 * runs them (work, then done, on this thread), so the test decides when a
 * transaction happens and checks what was answered before and after it.
 * Each finished callback looks the sheet up in the queue: an answer for a
 * sheet that is not committed is a failure. The signer is a fake (a
 * digest of what is signed; thread-safe); the sign-ahead worker is the
 * real one (loop test: without it, and with it).
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <openssl/sha.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "daemon/sheets/sheetbuild.h"
#include "daemon/sheets/sheetcommit.h"
#include "daemon/sheets/sheetseal.h"
#include "protocol/cose.h"
#include "protocol/holidays.h"
#include "protocol/sheetsig.h"
#include "storage/queue.h"
#include "tests/unit/support/faultvfs.h"

#define TODAY "2024-03-15"
#define NOW 1710500000LL
#define PRACT_A "81000123456"
#define PRACT_B "81000654321"

/* ------------------------------------------------------------------ */
/* fixture: a queue, a held work runner, a fake clock, a fake signer */

struct held {
	sheetq_work_fn work;
	sheetq_done_fn done;
	void *arg;
};

struct answer {
	char id[SHEET_ID_LEN + 1];
	enum sheetcommit_kind kind;
	int result;
	uint32_t seq;
	size_t nerrs;
	char reason[QUEUE_REASON_MAX];
	bool stored;               /* found in the queue when answered */
	enum queue_state state;
	uint32_t stored_seq;
};

static char tmpdir[256];
static struct queue *q;
static struct loop *lp;
static struct sheetseal *sealer;
static struct sheetcommit *sc;
static struct held jobs[64];
static size_t njobs;
static int run_fails;           /* ops.run returns this when non-zero */
static uint64_t fake_us;
static struct answer ans[64];
static size_t nans;
static atomic_int signatures;
static unsigned id_counter;

static int
run_held(void *ctx, sheetq_work_fn work, sheetq_done_fn done, void *arg)
{
	(void)ctx;
	if (run_fails)
		return run_fails;
	ck_assert_uint_lt(njobs, 64);
	jobs[njobs++] = (struct held){ work, done, arg };
	return 0;
}

static uint64_t
fake_clock(void *ctx)
{
	(void)ctx;
	return fake_us += 10;
}

/* The oldest held job: its work (the transaction), then its done. */
static void
pump(void)
{
	ck_assert_uint_gt(njobs, 0);
	struct held h = jobs[0];
	memmove(jobs, jobs + 1, (njobs - 1) * sizeof(jobs[0]));
	njobs--;
	h.work(q, h.arg);
	h.done(h.arg);
}

/* The sign_ctx of a signer that always fails. */
static char fail_signer_tag;
#define FAIL_SIGNER ((void *)&fail_signer_tag)

static int
fake_sign(void *ctx, int alg, const uint8_t *tbs, size_t len, uint8_t *sig, size_t *siglen)
{
	(void)alg;
	if (ctx == FAIL_SIGNER)
		return -EIO;
	if (*siglen < 64)
		return -E2BIG;
	SHA256(tbs, len, sig);
	SHA256(sig, 32, sig + 32);
	*siglen = 64;
	atomic_fetch_add(&signatures, 1);
	return 0;
}

static void
on_finished(struct sheetcommit_req *r, void *arg)
{
	(void)arg;
	ck_assert_uint_lt(nans, 64);
	struct answer *a = &ans[nans++];
	memset(a, 0, sizeof(*a));
	snprintf(a->id, sizeof(a->id), "%s", r->s->id);
	a->kind = r->kind;
	a->result = r->result;
	a->seq = r->seq;
	a->nerrs = r->errs.n;
	snprintf(a->reason, sizeof(a->reason), "%s", r->reason);
	struct queue_meta m;
	uint8_t *pl = NULL;
	size_t plen = 0;
	if (a->id[0] && queue_get(q, a->id, &m, &pl, &plen) == 0) {
		a->stored = true;
		a->state = m.state;
		a->stored_seq = m.seq;
		queue_free_payload(pl, plen);
	}
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
open_queue(long long max_sheets, const char *vfs)
{
	char err[600];
	struct queue_opts o = { .dir = tmpdir, .max_sheets = max_sheets, .vfs = vfs };
	ck_assert_msg(queue_open(&o, &q, err, sizeof(err)) == 0, "queue_open: %s", err);
}

/* _i: 0 without the sign-ahead worker, 1 with it */
static void
start(int with_sealer, long long max_sheets, const char *vfs)
{
	open_queue(max_sheets, vfs);
	if (with_sealer) {
		ck_assert_int_eq(loop_new(&lp), 0);
		ck_assert_int_eq(sheetseal_start(lp, &sealer), 0);
	}
	struct sheetcommit_ops ops = { .run = run_held, .now_us = fake_clock };
	sc = sheetcommit_new(&ops, sealer);
	ck_assert_ptr_nonnull(sc);
}

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_sheets.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	ck_assert_int_eq(faultvfs_register(), SQLITE_OK);
	faultvfs_reset();
	q = NULL;
	lp = NULL;
	sealer = NULL;
	sc = NULL;
	njobs = nans = 0;
	run_fails = 0;
	fake_us = 0;
	atomic_store(&signatures, 0);
}

static void
teardown(void)
{
	while (njobs)
		pump();
	sheetcommit_free(sc);
	sheetseal_stop(sealer);
	loop_free(lp);
	queue_close(q);
	faultvfs_reset();
	nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* ------------------------------------------------------------------ */
/* requests */

static void
fill_ctx(struct sheetcommit_req *r, const char *pract)
{
	snprintf(r->pract_id, sizeof(r->pract_id), "%s", pract);
	snprintf(r->struct_id, sizeof(r->struct_id), "751234567");
	snprintf(r->terminal, sizeof(r->terminal), "VT-0A1B2C3D4E5F");
	r->ctx = (struct sheetbuild_ctx){ .terminal_id = r->terminal, .practitioner_id = r->pract_id,
		                          .structure_id = r->struct_id, .now = NOW };
	ck_assert_int_eq(holidays_parse(TODAY, &r->ctx.today), 0);
	r->finished = on_finished;
	r->sign = fake_sign;
	r->alg = COSE_ALG_ES256;
}

static void
rnd_id(uint8_t rnd[16])
{
	memset(rnd, 0x5a, 16);
	id_counter++;
	memcpy(rnd, &id_counter, sizeof(id_counter));
}

#define TILL_PART                                                                           \
	"\"insurance\": \"maladie\", \"amc\": false, \"tiers_payant\": false,"              \
	" \"insurer\": {\"regime\": \"01\", \"caisse\": \"751\", \"centre\": \"0012\"},"     \
	" \"acts\": [{\"code\": \"C\", \"coefficient\": 1, \"amount\": 2650}],"             \
	" \"totals\": {\"total\": 2650, \"amo\": 1855, \"amc\": 0, \"patient\": 795}"

/* A degraded sheet, built and validated the way CreateSheet does it. */
static struct sheetcommit_req *
new_sheet(const char *pract)
{
	struct sheetcommit_req *r = sheetcommit_req_new(SHEETCOMMIT_SHEET);
	ck_assert_ptr_nonnull(r);
	json_error_t jerr;
	json_t *j = json_loads("{\"nir\": \"184127645108946\", \"care_date\": \"" TODAY "\", " TILL_PART
	                       "}", 0, &jerr);
	ck_assert_ptr_nonnull(j);
	struct sheet_errors errs;
	ck_assert_int_eq(sheetbuild_from_json(j, SHEETBUILD_DEGRADED, r->s, &errs), 0);
	json_decref(j);
	r->s->mode = SHEET_MODE_DEGRADED;
	fill_ctx(r, pract);
	uint8_t rnd[16];
	rnd_id(rnd);
	ck_assert_int_eq(sheetbuild_finish(r->s, &r->ctx, rnd, false), 0);
	struct sheet_check chk = { .today = r->ctx.today, .now = r->ctx.now };
	ck_assert_msg(sheet_validate(r->s, &chk, &errs) == 0, "invalid test sheet: %s: %s",
	              errs.e[0].field, errs.e[0].msg);
	return r;
}

/* A draft: the patient only, the way a kiosk's card read makes one. */
static struct sheetcommit_req *
new_draft(void)
{
	struct sheetcommit_req *r = sheetcommit_req_new(SHEETCOMMIT_DRAFT);
	ck_assert_ptr_nonnull(r);
	json_t *j = json_pack("{s:s}", "nir", "184127645108946");
	struct sheet_errors errs;
	ck_assert_int_eq(sheetbuild_from_json(j, SHEETBUILD_DEGRADED, r->s, &errs), 0);
	json_decref(j);
	r->s->mode = SHEET_MODE_DEGRADED;
	fill_ctx(r, PRACT_A);
	uint8_t rnd[16];
	rnd_id(rnd);
	int e = sheetcommit_draft_prepare(r, rnd);
	ck_assert_msg(e == 0, "draft_prepare %d: %s: %s", e, r->errs.e[0].field, r->errs.e[0].msg);
	return r;
}

static struct sheetcommit_req *
new_complete(const char *id, const char *patch)
{
	struct sheetcommit_req *r = sheetcommit_req_new(SHEETCOMMIT_COMPLETE);
	ck_assert_ptr_nonnull(r);
	snprintf(r->s->id, sizeof(r->s->id), "%s", id);
	fill_ctx(r, PRACT_A);
	r->patch = json_loads(patch, 0, NULL);
	ck_assert_ptr_nonnull(r->patch);
	return r;
}

/* The number under which the stored sheet id was signed. */
static uint32_t
signed_seq(const char *id)
{
	struct queue_meta m;
	uint8_t *pl = NULL;
	size_t plen = 0;
	ck_assert_int_eq(queue_get(q, id, &m, &pl, &plen), 0);
	const uint8_t *cbor;
	size_t clen;
	int64_t alg;
	struct sheet s;
	ck_assert_int_eq(sheetsig_payload(pl, plen, &cbor, &clen, &alg), 0);
	ck_assert_int_eq(sheetsig_decode(cbor, clen, &s, NULL), 0);
	queue_free_payload(pl, plen);
	ck_assert_uint_eq(s.seq, m.seq);
	return s.seq;
}

static void
submit_n(size_t n, const char *pract, char ids[][SHEET_ID_LEN + 1])
{
	for (size_t i = 0; i < n; i++) {
		struct sheetcommit_req *r = new_sheet(pract);
		if (ids)
			snprintf(ids[i], SHEET_ID_LEN + 1, "%s", r->s->id);
		sheetcommit_submit(sc, r);
	}
}

/* ------------------------------------------------------------------ */
/* group commit */

/* Requests that arrive while a commit is in flight wait, unanswered, and
 * go together into the next transaction; each is answered after it, in
 * order, with the next daily numbers. */
START_TEST(group_commit)
{
	char ids[4][SHEET_ID_LEN + 1];
	start(_i, 0, NULL);
	submit_n(1, PRACT_A, ids);
	ck_assert_uint_eq(njobs, 1);           /* the first goes at once */
	submit_n(3, PRACT_A, ids + 1);
	ck_assert_uint_eq(njobs, 1);           /* the others wait for it */
	ck_assert_uint_eq(nans, 0);            /* nothing answered before a commit */
	struct sheetcommit_figures f;
	sheetcommit_figures(sc, &f);
	ck_assert_uint_eq(f.waiting, 3);

	pump();
	ck_assert_uint_eq(nans, 1);
	ck_assert_str_eq(ans[0].id, ids[0]);
	ck_assert_int_eq(ans[0].result, 0);
	ck_assert_uint_eq(ans[0].seq, 1);
	ck_assert_uint_eq(njobs, 1);           /* the next batch: all three */

	pump();
	ck_assert_uint_eq(nans, 4);
	for (size_t i = 0; i < 4; i++) {
		ck_assert_str_eq(ans[i].id, ids[i]);
		ck_assert_int_eq(ans[i].result, 0);
		ck_assert_uint_eq(ans[i].seq, i + 1);
		ck_assert_msg(ans[i].stored, "sheet %zu answered but not in the queue", i);
		ck_assert_int_eq(ans[i].state, QUEUE_QUEUED);
		ck_assert_uint_eq(ans[i].stored_seq, i + 1);
		ck_assert_uint_eq(signed_seq(ids[i]), i + 1);
	}
	ck_assert_uint_eq(njobs, 0);
	sheetcommit_figures(sc, &f);
	ck_assert_uint_eq(f.batches, 2);       /* two transactions for four sheets */
	ck_assert_uint_eq(f.sheets, 4);
	ck_assert_uint_eq(f.max_batch, 3);
	ck_assert_uint_eq(f.waiting, 0);
	ck_assert_int_eq(atomic_load(&signatures), 4);
}
END_TEST

/* Numbers per practitioner and care date inside one batch; sign-ahead
 * (loop 1) signs each under the number it is stored with. */
START_TEST(groups_in_one_batch)
{
	char ids[6][SHEET_ID_LEN + 1];
	start(_i, 0, NULL);
	submit_n(1, PRACT_B, ids);             /* in flight */
	submit_n(2, PRACT_A, ids + 1);
	submit_n(1, PRACT_B, ids + 3);
	submit_n(2, PRACT_A, ids + 4);
	pump();
	pump();
	ck_assert_uint_eq(nans, 6);
	static const uint32_t want[6] = { 1, 1, 2, 2, 3, 4 };
	for (size_t i = 0; i < 6; i++) {
		ck_assert_str_eq(ans[i].id, ids[i]);
		ck_assert_int_eq(ans[i].result, 0);
		ck_assert_uint_eq(ans[i].seq, want[i]);
		ck_assert_uint_eq(signed_seq(ids[i]), want[i]);
	}
}
END_TEST

/* An item that fails alone (a duplicate id) takes no number and no other
 * item down; the ones after it were signed ahead for other numbers and
 * are signed again under the numbers they get. */
START_TEST(item_fails_alone)
{
	char ids[4][SHEET_ID_LEN + 1];
	start(_i, 0, NULL);
	submit_n(1, PRACT_A, ids);
	pump();
	ck_assert_uint_eq(nans, 1);
	submit_n(1, PRACT_A, ids + 1);        /* in flight */
	struct sheetcommit_req *dup = new_sheet(PRACT_A);
	snprintf(dup->s->id, sizeof(dup->s->id), "%s", ids[0]);
	sheetcommit_submit(sc, dup);
	submit_n(2, PRACT_A, ids + 2);
	pump();
	pump();
	ck_assert_uint_eq(nans, 5);
	ck_assert_int_eq(ans[1].result, 0);
	ck_assert_uint_eq(ans[1].seq, 2);
	ck_assert_int_eq(ans[2].result, -EEXIST);
	ck_assert_str_eq(ans[2].id, ids[0]);
	ck_assert_int_eq(ans[3].result, 0);
	ck_assert_uint_eq(ans[3].seq, 3);
	ck_assert_int_eq(ans[4].result, 0);
	ck_assert_uint_eq(ans[4].seq, 4);
	ck_assert_uint_eq(signed_seq(ids[2]), 3);
	ck_assert_uint_eq(signed_seq(ids[3]), 4);
}
END_TEST

/* A seal that fails (the signer) takes no number: the items after it were
 * signed ahead (loop 1) for numbers one higher, and must be signed again
 * under the ones they are stored with. */
START_TEST(seal_fails_alone)
{
	char ids[5][SHEET_ID_LEN + 1];
	start(_i, 0, NULL);
	submit_n(1, PRACT_A, ids);             /* in flight */
	submit_n(1, PRACT_A, ids + 1);
	struct sheetcommit_req *bad = new_sheet(PRACT_A);
	bad->sign_ctx = FAIL_SIGNER;
	snprintf(ids[2], sizeof(ids[2]), "%s", bad->s->id);
	sheetcommit_submit(sc, bad);
	submit_n(2, PRACT_A, ids + 3);
	pump();
	pump();
	ck_assert_uint_eq(nans, 5);
	static const uint32_t want[5] = { 1, 2, 0, 3, 4 };
	for (size_t i = 0; i < 5; i++) {
		ck_assert_str_eq(ans[i].id, ids[i]);
		if (i == 2) {
			ck_assert_int_lt(ans[i].result, 0);
			ck_assert(!ans[i].stored);
			ck_assert_msg(strstr(ans[i].reason, "signing failed"), "reason: %s", ans[i].reason);
			continue;
		}
		ck_assert_int_eq(ans[i].result, 0);
		ck_assert_uint_eq(ans[i].seq, want[i]);
		ck_assert_uint_eq(signed_seq(ids[i]), want[i]);
	}
}
END_TEST

/* ------------------------------------------------------------------ */
/* drafts */

START_TEST(draft_then_complete)
{
	start(_i, 0, NULL);
	struct sheetcommit_req *d = new_draft();
	char id[SHEET_ID_LEN + 1];
	snprintf(id, sizeof(id), "%s", d->s->id);
	sheetcommit_submit(sc, d);
	ck_assert_uint_eq(nans, 0);
	pump();
	ck_assert_uint_eq(nans, 1);
	ck_assert_int_eq(ans[0].result, 0);
	ck_assert_uint_eq(ans[0].seq, 0);
	ck_assert(ans[0].stored);
	ck_assert_int_eq(ans[0].state, QUEUE_DRAFT);

	/* a completion that does not make a valid sheet: InvalidSheet's errors */
	struct sheetcommit_req *bad = new_complete(id, "{\"acts\": []}");
	ck_assert_int_eq(sheetcommit_complete(sc, bad), 0);
	pump();
	ck_assert_uint_eq(nans, 2);
	ck_assert_int_eq(ans[1].result, -EINVAL);
	ck_assert_uint_gt(ans[1].nerrs, 0);
	ck_assert_int_eq(ans[1].state, QUEUE_DRAFT);

	struct sheetcommit_req *c = new_complete(id, "{\"care_date\": \"" TODAY "\", " TILL_PART "}");
	ck_assert_int_eq(sheetcommit_complete(sc, c), 0);
	ck_assert_uint_eq(nans, 2);
	pump();
	ck_assert_uint_eq(nans, 3);
	ck_assert_msg(ans[2].result == 0, "complete: %d %s", ans[2].result, ans[2].reason);
	ck_assert_uint_eq(ans[2].seq, 1);
	ck_assert_int_eq(ans[2].state, QUEUE_QUEUED);
	ck_assert_uint_eq(signed_seq(id), 1);

	/* no longer a draft; an unknown id */
	c = new_complete(id, "{\"care_date\": \"" TODAY "\", " TILL_PART "}");
	ck_assert_int_eq(sheetcommit_complete(sc, c), 0);
	c = new_complete("00000000-0000-4000-8000-000000000000", "{" TILL_PART "}");
	ck_assert_int_eq(sheetcommit_complete(sc, c), 0);
	pump();
	pump();
	ck_assert_uint_eq(nans, 5);
	ck_assert_int_eq(ans[3].result, -EPERM);
	ck_assert_int_eq(ans[4].result, -ENOENT);
}
END_TEST

/* Drafts and sheets share a batch; only the sheets take numbers. */
START_TEST(drafts_in_a_batch)
{
	char ids[2][SHEET_ID_LEN + 1];
	start(_i, 0, NULL);
	submit_n(1, PRACT_A, ids);
	sheetcommit_submit(sc, new_draft());
	submit_n(1, PRACT_A, ids + 1);
	pump();
	pump();
	ck_assert_uint_eq(nans, 3);
	ck_assert_uint_eq(ans[0].seq, 1);
	ck_assert_int_eq(ans[1].state, QUEUE_DRAFT);
	ck_assert_uint_eq(ans[1].seq, 0);
	ck_assert_uint_eq(ans[2].seq, 2);
	ck_assert_uint_eq(signed_seq(ids[1]), 2);
}
END_TEST

/* ------------------------------------------------------------------ */
/* failures */

/* A configured limit fails the items over it, one by one. */
START_TEST(queue_full_limit)
{
	start(_i, 2, NULL);
	submit_n(1, PRACT_A, NULL);
	submit_n(3, PRACT_A, NULL);
	pump();
	pump();
	ck_assert_uint_eq(nans, 4);
	ck_assert_int_eq(ans[0].result, 0);
	ck_assert_int_eq(ans[1].result, 0);
	ck_assert_uint_eq(ans[1].seq, 2);
	for (size_t i = 2; i < 4; i++) {
		ck_assert_int_eq(ans[i].result, -ENOSPC);
		ck_assert(!ans[i].stored);
		ck_assert_str_ne(ans[i].reason, "");
	}
}
END_TEST

/* A transaction that fails (fsync error, disk full) fails every request
 * of its batch with the error, none stored; the next batch works and the
 * numbers stay dense. */
static void
batch_fails(int with_sealer, bool disk_full)
{
	start(with_sealer, 0, "faultvfs");
	submit_n(1, PRACT_A, NULL);
	pump();
	submit_n(1, PRACT_A, NULL);            /* in flight */
	submit_n(3, PRACT_A, NULL);            /* waiting */
	pump();
	ck_assert_uint_eq(nans, 2);
	faultvfs.sticky = true;
	if (disk_full) {
		faultvfs.write_err = SQLITE_FULL;
		faultvfs.fail_write_in = 1;
	} else {
		faultvfs.fail_sync_in = 1;
	}
	pump();
	ck_assert_uint_eq(nans, 5);
	for (size_t i = 2; i < 5; i++) {
		ck_assert_int_eq(ans[i].result, disk_full ? -ENOSPC : -EIO);
		ck_assert(!ans[i].stored);
		ck_assert_str_ne(ans[i].reason, "");
	}
	faultvfs_reset();
	submit_n(1, PRACT_A, NULL);
	pump();
	ck_assert_uint_eq(nans, 6);
	ck_assert_int_eq(ans[5].result, 0);
	ck_assert_uint_eq(ans[5].seq, 3);
	struct sheetcommit_figures f;
	sheetcommit_figures(sc, &f);
	ck_assert_uint_eq(f.sheets, 3);
}

START_TEST(io_error_fails_batch)
{
	batch_fails(_i, false);
}
END_TEST

START_TEST(disk_full_fails_batch)
{
	batch_fails(_i, true);
}
END_TEST

/* Stopping: the batch in flight ends and answers; a batch that cannot be
 * queued answers ShuttingDown to each of its requests; what is still
 * pending at free gets ShuttingDown too. */
START_TEST(shutdown)
{
	start(_i, 0, NULL);
	submit_n(1, PRACT_A, NULL);
	submit_n(2, PRACT_A, NULL);
	run_fails = -ESHUTDOWN;
	pump();
	ck_assert_uint_eq(nans, 3);
	ck_assert_int_eq(ans[0].result, 0);
	ck_assert_int_eq(ans[1].result, -ESHUTDOWN);
	ck_assert_int_eq(ans[2].result, -ESHUTDOWN);
	submit_n(1, PRACT_A, NULL);
	ck_assert_uint_eq(nans, 4);
	ck_assert_int_eq(ans[3].result, -ESHUTDOWN);
	ck_assert(!ans[3].stored);
	struct sheetcommit_req *c = new_complete("00000000-0000-4000-8000-000000000000", "{}");
	ck_assert_int_eq(sheetcommit_complete(sc, c), -ESHUTDOWN);
	sheetcommit_req_free(c);            /* still the caller's */
	ck_assert_uint_eq(nans, 4);
}
END_TEST

START_TEST(free_answers_pending)
{
	start(_i, 0, NULL);
	submit_n(1, PRACT_A, NULL);
	submit_n(2, PRACT_A, NULL);
	/* as if the worker ended with the batch undone: its job is dropped
	 * here only to reach the pending ones; the daemon frees after the
	 * worker delivered it */
	struct held h = jobs[0];
	njobs = 0;
	sheetcommit_free(sc);
	sc = NULL;
	ck_assert_uint_eq(nans, 2);
	ck_assert_int_eq(ans[0].result, -ESHUTDOWN);
	ck_assert_int_eq(ans[1].result, -ESHUTDOWN);
	(void)h;
}
END_TEST

/* The AMC against the rights check: filled, refused, or left alone when
 * there is no check. */
START_TEST(amc_from_rights)
{
	static struct card_result cr;
	struct sheet s;
	struct sheet_errors e;
	int32_t today;
	ck_assert_int_eq(holidays_parse("2026-12-06", &today), 0);
	memset(&cr, 0, sizeof(cr));
	sheet_init(&s);
	s.amc = true;
	s.amc_tiers_payant = true;
	/* no rights check: the till's word, nothing filled */
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), 0);
	ck_assert_str_eq(s.amc_id, "");
	cr.rights.state = CARD_RIGHTS_CHECKED;
	cr.rights.has_amc = true;
	snprintf(cr.rights.amc_id, sizeof(cr.rights.amc_id), "12345678");
	cr.rights.amc_tiers_payant = true;
	snprintf(cr.rights.amc_to, sizeof(cr.rights.amc_to), "2026-12-31");
	/* another beneficiary was checked: nothing */
	cr.rights.beneficiary = 1;
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), 0);
	ck_assert_str_eq(s.amc_id, "");
	cr.rights.beneficiary = 0;
	/* filled from the insurer's answer */
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), 0);
	ck_assert_str_eq(s.amc_id, "12345678");
	/* another number */
	snprintf(s.amc_id, sizeof(s.amc_id), "87654321");
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_str_eq(e.e[0].field, "amc.id");
	snprintf(s.amc_id, sizeof(s.amc_id), "12345678");
	/* no AMC tiers payant granted */
	cr.rights.amc_tiers_payant = false;
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_str_eq(e.e[0].field, "amc.tiers_payant");
	cr.rights.amc_tiers_payant = true;
	/* rights ended before the care date */
	snprintf(cr.rights.amc_to, sizeof(cr.rights.amc_to), "2026-12-01");
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), -EINVAL);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_str_eq(e.e[0].field, "amc");
	/* no AMC known to the insurer */
	cr.rights.has_amc = false;
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), -EINVAL);
	ck_assert_str_eq(e.e[0].field, "amc.tiers_payant");
	s.amc_tiers_payant = false;
	ck_assert_int_eq(sheetbuild_amc_from_rights(&s, &cr, 0, today, &e), 0);
}
END_TEST

/* [terminal] department over the old [queue] alsace_moselle switch. */
START_TEST(holiday_flags)
{
	ck_assert_uint_eq(sheetbuild_holiday_flags("", false), 0);
	ck_assert_uint_eq(sheetbuild_holiday_flags(NULL, true), HOLIDAYS_ALSACE_MOSELLE);
	ck_assert_uint_eq(sheetbuild_holiday_flags("", true), HOLIDAYS_ALSACE_MOSELLE);
	ck_assert_uint_eq(sheetbuild_holiday_flags("67", false), HOLIDAYS_ALSACE_MOSELLE);
	ck_assert_uint_eq(sheetbuild_holiday_flags("974", false), HOLIDAYS_SLAVERY_REUNION);
	ck_assert_uint_eq(sheetbuild_holiday_flags("75", false), 0);
}
END_TEST

static Suite *
sheets_suite(void)
{
	Suite *s = suite_create("sheets");
	TCase *tc = tcase_create("sheetcommit");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, group_commit, 0, 2);
	tcase_add_loop_test(tc, groups_in_one_batch, 0, 2);
	tcase_add_loop_test(tc, item_fails_alone, 0, 2);
	tcase_add_loop_test(tc, seal_fails_alone, 0, 2);
	tcase_add_loop_test(tc, draft_then_complete, 0, 2);
	tcase_add_loop_test(tc, drafts_in_a_batch, 0, 2);
	tcase_add_loop_test(tc, queue_full_limit, 0, 2);
	tcase_add_loop_test(tc, io_error_fails_batch, 0, 2);
	tcase_add_loop_test(tc, disk_full_fails_batch, 0, 2);
	tcase_add_loop_test(tc, shutdown, 0, 2);
	tcase_add_loop_test(tc, free_answers_pending, 0, 2);
	suite_add_tcase(s, tc);
	TCase *tb = tcase_create("sheetbuild");
	tcase_add_test(tb, amc_from_rights);
	tcase_add_test(tb, holiday_flags);
	suite_add_tcase(s, tb);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sheets_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
