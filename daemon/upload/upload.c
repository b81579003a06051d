/* Module "upload"; see upload.h. The machinery around the state machine:
 * queue jobs, HTTP exchanges, timers, rtnetlink, status and events. */
#include "daemon/upload/upload.h"

#include <curl/curl.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cards/opposition.h"
#include "daemon/cards/readers.h"
#include "daemon/core/events.h"
#include "daemon/core/metrics.h"
#include "daemon/core/status.h"
#include "daemon/pin/pinflow.h"
#include "daemon/sheets/api_sheets.h"
#include "daemon/sheets/sheetq.h"
#include "daemon/sheets/sheets.h"
#include "daemon/upload/batches.h"
#include "daemon/upload/http.h"
#include "daemon/upload/uploader.h"
#include "lib/clock.h"
#include "lib/log.h"

#define PARTS_MAX 64
#define WATCH_MAX 16
#define RETURNS_PAGE 100
#define DAY_MS 86400000u

enum job_kind {
	J_FORM, J_REFORM, J_COMMIT, J_SETTLE, J_CURSOR, J_RETURNS, J_COUNTS, J_CHAIN,
	J_OPP_CURSOR, J_OPPOSITION, J_SIGNER_CHAIN, J_OPP_LOAD
};

struct job {
	enum job_kind kind;
	int r;
	struct batch *b;
	struct insurer_result *res;
	char code[INSURER_CODE_MAX + 1], reason[INSURER_REASON_MAX + 1];
	bool reject;
	bool ahead;                  /* J_FORM formed while the previous batch is in flight */
	struct insurer_returns ret;
	struct insurer_opposition opp;
	char cursor[INSURER_CURSOR_MAX + 1];
	size_t applied, skipped;
	struct queue_upload_counts counts;
	char today[11], due_by[11];
	char path[4096], digest[65], err[300];
	struct opposition *oppset;   /* J_OPP_LOAD: the stored list, built on the queue's thread */
	size_t nserials, nbad;
	uint8_t *der[INSURER_CERTS_MAX]; /* J_SIGNER_CHAIN */
	size_t der_len[INSURER_CERTS_MAX], nder;
	uint64_t created;
	char terminal[65];
};

static struct {
	struct daemon *d;
	bool on;
	struct uploader u;
	struct http *http;
	struct sheetq *sq;
	char base[2100];
	uint64_t timer, returns_timer, due_timer;
	int nl_fd;
	struct batch *cur;            /* formed, in flight or waiting for its resend */
	struct batch *parts[PARTS_MAX]; /* split parts still to send, last on top */
	size_t nparts;
	/* Forming ahead: while a batch is in flight, the queue thread forms the
	 * next one (reads and decrypts up to 500 sheets), so that it goes as
	 * soon as the answer is committed. At most one; its result waits in
	 * `ahead` until wanted. */
	bool ahead_running;           /* a J_FORM with j->ahead is on the queue thread */
	bool ahead_wanted;            /* the round waits for it */
	struct job *ahead;            /* its result, not yet taken */
	bool busy;                    /* a job or an exchange of the round is running */
	/* Pipelining: a batch's results are committed on the queue thread
	 * while the next batch is already in flight. `commits` counts the
	 * J_COMMIT jobs not settled yet; the end of a round (its
	 * UploadFinished counts, the next plan) waits for them: `finish`
	 * holds what to do then. */
	unsigned commits;
	enum { FIN_NONE, FIN_END, FIN_STOP } finish;
	uint64_t finish_wait_ms;
	bool round, reached;
	bool returns_busy;
	struct queue_upload_counts counts;
	struct upload_progress prog;
	uint64_t round_t0;
	struct {
		upload_watch_fn fn;
		void *arg;
	} watch[WATCH_MAX];
} U = { .nl_fd = -1 };

static void start_round(void);
static void ahead_release(struct job *j);
static void next_batch(void);
static void poll_returns(void);
static void poll_opposition(void);
struct job;
static void opposition_loaded_from(struct job *j);
static void opposition_increment(struct job *j);

/* ------------------------------------------------------------------ */
/* helpers */

static void
iso_ms(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
day_str(int64_t ms, char out[11])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

static void
notify(bool done)
{
	struct upload_progress p;
	upload_progress(&p);
	for (size_t i = 0; i < WATCH_MAX; i++)
		if (U.watch[i].fn)
			U.watch[i].fn(&p, done, U.watch[i].arg);
}

static void
plan_timer(uint64_t delay_ms);

static struct job *
job_new(enum job_kind k, struct batch *b)
{
	struct job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->kind = k;
	j->b = b;
	j->created = (uint64_t)(clock_real_ms() / 1000);
	snprintf(j->terminal, sizeof(j->terminal), "%s", U.d->terminal_id);
	return j;
}

static void
job_free(struct job *j)
{
	if (!j)
		return;
	free(j->res);
	insurer_returns_free(&j->ret);
	insurer_opposition_free(&j->opp);
	opposition_free(j->oppset);
	for (size_t i = 0; i < j->nder; i++)
		free(j->der[i]);
	free(j);
}

/* ------------------------------------------------------------------ */
/* queue jobs: work on the queue thread */

static int
returns_apply(struct queue *q, struct job *j)
{
	struct queue_return *rt = calloc(j->ret.n ? j->ret.n : 1, sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	for (size_t i = 0; i < j->ret.n; i++) {
		const struct insurer_return *it = &j->ret.items[i];
		rt[i].sheet_id = it->sheet_id;
		rt[i].to = it->kind == INSURER_PAID ? QUEUE_PAID : QUEUE_REFUSED;
		rt[i].code = it->kind == INSURER_REFUSED ? it->code : NULL;
		rt[i].reason = it->kind == INSURER_REFUSED && it->reason[0] ? it->reason : NULL;
	}
	int r = queue_apply_returns(q, rt, j->ret.n, j->ret.next, &j->applied, &j->skipped);
	free(rt);
	return r;
}

/* The stored opposition list as a set, built here on the queue's thread
 * (a long list is seconds of work the loop must not do); the loop
 * installs it. */
static int
opposition_load(struct queue *q, struct job *j)
{
	char(*v)[33] = NULL;
	int r = queue_opposition_list(q, &v, &j->nserials);
	if (r < 0)
		return r;
	j->oppset = opposition_new(j->nserials);
	for (size_t i = 0; j->oppset && i < j->nserials; i++)
		if (opposition_set_add(j->oppset, v[i]) < 0)
			j->nbad++;
	free(v);
	return j->oppset ? 0 : -ENOMEM;
}

static int
job_work(struct queue *q, void *arg)
{
	struct job *j = arg;
	switch (j->kind) {
	case J_FORM:
		j->r = batch_form(q, j->b, j->terminal, j->created);
		break;
	case J_REFORM:
		j->r = batch_reform(q, j->b, j->terminal, j->created);
		break;
	case J_COMMIT:
		j->r = batch_commit(q, j->b, j->res);
		break;
	case J_SETTLE:
		j->r = batch_settle(q, j->b, j->reject ? j->code : NULL, j->reject ? j->reason : NULL);
		break;
	case J_CURSOR:
		j->r = queue_cursor_get(q, "returns", j->cursor, sizeof(j->cursor));
		return 0;
	case J_RETURNS:
		j->r = returns_apply(q, j);
		break;
	case J_COUNTS:
		j->r = queue_upload_counts(q, j->today, j->due_by, &j->counts);
		return 0;
	case J_OPP_CURSOR:
		j->r = queue_cursor_get(q, "opposition", j->cursor, sizeof(j->cursor));
		return 0;
	case J_OPPOSITION:
		j->r = queue_apply_opposition(q, (const char(*)[33])j->opp.added, j->opp.nadded,
		                              (const char(*)[33])j->opp.removed, j->opp.nremoved,
		                              j->opp.next);
		break;
	case J_OPP_LOAD:
		j->r = opposition_load(q, j);
		return 0;
	case J_CHAIN:
		j->r = batch_register_chain(q, j->path, j->digest, j->err, sizeof(j->err));
		break;
	case J_SIGNER_CHAIN:
		j->r = batch_register_der(q, (const uint8_t *const *)j->der, j->der_len, j->nder,
		                          j->digest, j->err, sizeof(j->err));
		break;
	}
	if (j->r < 0 && !j->err[0])
		snprintf(j->err, sizeof(j->err), "%s", queue_last_error(q));
	return SHEETQ_WROTE;
}

static void job_done(void *arg);

static int
submit(struct job *j)
{
	if (!j)
		return -ENOMEM;
	int r = sheetq_run(U.sq, job_work, job_done, j);
	if (r < 0)
		job_free(j);
	return r;
}

/* ------------------------------------------------------------------ */
/* the round */

static void
publish_sheet_results(const struct batch *b, const struct insurer_result *res)
{
	for (size_t i = 0; i < b->n; i++) {
		if (res[i].status == INSURER_REJECTED) {
			U.prog.rejected++;
			events_publish_ex("SheetRejected",
			                  json_pack("{s:s,s:s}", "id", b->ids[i], "code", res[i].code),
			                  json_pack("{s:s}", "reason", res[i].reason));
		} else {
			bool dup = res[i].status == INSURER_DUPLICATE;
			if (dup)
				U.prog.duplicate++;
			else
				U.prog.accepted++;
			events_publish("SheetAccepted",
			               json_pack("{s:s,s:b}", "id", b->ids[i], "duplicate", dup));
		}
	}
	U.prog.sent += b->n;
}

static void
refresh_counts(void)
{
	struct job *j = job_new(J_COUNTS, NULL);
	int64_t now = clock_real_ms();
	if (!j)
		return;
	day_str(now, j->today);
	day_str(now + (int64_t)U.d->cfg->insurer_due_margin_days * DAY_MS, j->due_by);
	submit(j);
}

static void
end_round(void)
{
	if (U.commits) {
		/* the last answers are still being committed: the round ends
		 * (counts, UploadFinished) when they are */
		U.finish = FIN_END;
		U.busy = true;
		return;
	}
	uploader_round_end(&U.u, loop_now_ms(), clock_real_ms(), U.reached);
	U.round = false;
	events_publish("UploadFinished",
	               json_pack("{s:I,s:I,s:I,s:I,s:s}", "sent", (json_int_t)U.prog.sent, "accepted",
	                         (json_int_t)U.prog.accepted, "duplicates",
	                         (json_int_t)U.prog.duplicate, "rejected",
	                         (json_int_t)U.prog.rejected, "state",
	                         uploader_state_name(U.u.state)));
	log_info("upload: round done: %llu sheets answered (%llu accepted, %llu duplicate, %llu "
	         "rejected) in %llu ms",
	         (unsigned long long)U.prog.sent, (unsigned long long)U.prog.accepted,
	         (unsigned long long)U.prog.duplicate, (unsigned long long)U.prog.rejected,
	         (unsigned long long)(loop_now_ms() - U.round_t0));
	plan_timer(U.u.next_ms - loop_now_ms());
	refresh_counts();
	if (U.reached)
		poll_returns();
	notify(true);
}

/* Stop the round: every sheet of the current batch and of the split parts
 * goes back to queued; the next round after wait_ms. */
static void stop_finish(uint64_t wait_ms);

static void
stop_round(uint64_t wait_ms)
{
	struct batch *all[PARTS_MAX + 1];
	size_t n = 0;
	if (U.cur)
		all[n++] = U.cur;
	while (U.nparts)
		all[n++] = U.parts[--U.nparts];
	U.cur = NULL;
	if (U.ahead) {
		ahead_release(U.ahead);
		job_free(U.ahead);
		U.ahead = NULL;
	}
	U.ahead_wanted = false;   /* one still running is released when it arrives */
	for (size_t i = 0; i < n; i++) {
		struct job *j = job_new(J_SETTLE, all[i]);
		if (!j || submit(j) < 0)
			batch_free(all[i]); /* they go back to queued at the next open */
	}
	U.round = false;
	if (U.commits) {
		/* results of earlier batches still being committed: their
		 * counts go into UploadFinished when they are */
		U.finish = FIN_STOP;
		U.finish_wait_ms = wait_ms;
		U.busy = true;
		return;
	}
	stop_finish(wait_ms);
}

static void
stop_finish(uint64_t wait_ms)
{
	events_publish("UploadFinished",
	               json_pack("{s:I,s:I,s:I,s:I,s:s,s:s}", "sent", (json_int_t)U.prog.sent,
	                         "accepted", (json_int_t)U.prog.accepted, "duplicates",
	                         (json_int_t)U.prog.duplicate, "rejected",
	                         (json_int_t)U.prog.rejected, "state",
	                         uploader_state_name(U.u.state), "reason", U.u.why));
	log_ev(LOG_LVL_WARNING, LOG_ID_UPLOAD_STOPPED, NULL, NULL, "upload: stopped: %s; again in %llu s",
	       U.u.why, (unsigned long long)(wait_ms / 1000));
	plan_timer(wait_ms);
	notify(true);
}

static void
send_batch(struct batch *b);

static void formed(struct job *j);

/* While the current batch is in flight and nothing else waits (no split
 * parts), form the next one on the queue thread. */
static void
form_ahead(void)
{
	if (!U.round || U.nparts || U.ahead_running || U.ahead)
		return;
	struct batch *b = batch_new();
	struct job *j = b ? job_new(J_FORM, b) : NULL;
	if (!j) {
		batch_free(b);
		return;   /* no harm: the next batch is formed when it is wanted */
	}
	j->ahead = true;
	U.ahead_running = true;
	if (submit(j) < 0)
		U.ahead_running = false;
}

/* The round wants its next batch: split parts first, then the one formed
 * ahead (at once if it is there, when it arrives if it is still being
 * formed), else form one now. */
static void
take_next(void)
{
	if (U.nparts) {
		next_batch();
	} else if (U.ahead) {
		struct job *j = U.ahead;
		U.ahead = NULL;
		formed(j);
		job_free(j);
	} else if (U.ahead_running) {
		U.ahead_wanted = true;
		U.busy = true;
	} else {
		next_batch();
	}
}

/* A batch formed ahead whose round has ended: its sheets go back to
 * queued (a formed batch marks them sending). */
static void
ahead_release(struct job *j)
{
	if (j->r == 0 && j->b && j->b->n) {
		struct job *s = job_new(J_SETTLE, j->b);
		j->b = NULL;
		if (s && submit(s) == 0)
			return;
	}
	batch_free(j->b);
	j->b = NULL;
}

static void
on_batch_answer(const struct http_result *hr, void *arg)
{
	struct batch *b = arg;
	struct uploader_answer a = { hr->net, hr->status, hr->body, hr->len, hr->retry_after,
		                     hr->why, time(NULL) };
	struct uploader_decision d;
	struct insurer_result *res = calloc(b->n, sizeof(*res));
	const char **ids = calloc(b->n, sizeof(*ids));
	struct job *j;

	U.busy = false;
	if (!res || !ids) {
		free(res);
		free(ids);
		stop_round(1000);
		return;
	}
	for (size_t i = 0; i < b->n; i++)
		ids[i] = b->ids[i];
	uploader_answer(&U.u, loop_now_ms(), b->id, ids, b->n, &a, res, &d);
	free(ids);
	log_debug("upload: batch %s (%zu sheets, %zu bytes): %s %ld in %llu ms (at %llu ms)", b->id,
	          b->n, b->len, hr->net == UPLOADER_NET_OK ? "HTTP" : hr->why, hr->status,
	          (unsigned long long)(hr->elapsed_us / 1000), (unsigned long long)loop_now_ms());
	if (hr->net != UPLOADER_NET_OFFLINE && hr->net != UPLOADER_NET_TLS_SERVER &&
	    hr->net != UPLOADER_NET_LOCAL)
		U.reached = U.reached || hr->net == UPLOADER_NET_OK;
	switch (d.what) {
	case UPLOADER_DO_COMMIT:
		j = job_new(J_COMMIT, b);
		if (j) {
			j->res = res; /* the job owns them now */
			res = NULL;
		}
		U.cur = NULL;
		if (submit(j) < 0) {
			batch_free(b);
			stop_round(1000);
			break;
		}
		/* the next batch goes while this one's results are committed
		 * (its sheets are `sending`: no later batch can take them; a
		 * kill before the commit only means they go again, answered
		 * duplicate) */
		U.commits++;
		if (U.round)
			take_next();
		break;
	case UPLOADER_DO_RETRY:
		U.prog.failures++;
		metrics_inc(METRICS_UPLOAD_FAILURES, NULL);
		log_notice("upload: batch %s: %s; the same bytes again in %llu ms", b->id, U.u.why,
		           (unsigned long long)d.wait_ms);
		plan_timer(d.wait_ms);
		notify(false);
		break;
	case UPLOADER_DO_SPLIT: {
		size_t half = b->n / 2;
		struct batch *p1 = batch_part(b, 0, half), *p2 = batch_part(b, half, b->n - half);
		if (!p1 || !p2 || U.nparts + 2 > PARTS_MAX) {
			batch_free(p1);
			batch_free(p2);
			stop_round(1000);
			break;
		}
		log_notice("upload: batch %s (%zu sheets) refused as a whole (HTTP %ld): split in two",
		           b->id, b->n, hr->status);
		U.parts[U.nparts++] = p2;
		U.parts[U.nparts++] = p1;
		/* its sheets stay sending until their part takes them */
		batch_free(b);
		U.cur = NULL;
		next_batch();
		break;
	}
	case UPLOADER_DO_REJECT:
		j = job_new(J_SETTLE, b);
		if (j) {
			j->reject = true;
			memcpy(j->code, d.code, sizeof(j->code));
			memcpy(j->reason, d.reason, sizeof(j->reason));
		}
		U.cur = NULL;
		U.busy = true;
		if (submit(j) < 0) {
			U.busy = false;
			batch_free(b);
			stop_round(1000);
		}
		break;
	case UPLOADER_DO_STOP:
		U.prog.failures++;
		metrics_inc(METRICS_UPLOAD_FAILURES, NULL);
		stop_round(d.wait_ms);
		break;
	}
	free(res);
}

static void
send_batch(struct batch *b)
{
	char url[2200], key[80];
	const char *hdrs[] = { "Content-Type: application/cbor", key, NULL };
	snprintf(url, sizeof(url), "%sv1/batches", U.base);
	snprintf(key, sizeof(key), "Idempotency-Key: %s", b->id);
	b->sends++;
	metrics_inc(METRICS_UPLOAD_ATTEMPTS, NULL);
	U.busy = true;
	if (http_request(U.http, "POST", url, hdrs, b->body, b->len, on_batch_answer, b) < 0) {
		U.busy = false;
		stop_round(1000);
		return;
	}
	form_ahead();
}

static void
next_batch(void)
{
	struct job *j;
	if (U.nparts) {
		j = job_new(J_REFORM, U.parts[U.nparts - 1]);
		if (j)
			U.nparts--;
	} else {
		struct batch *b = batch_new();
		j = b ? job_new(J_FORM, b) : NULL;
		if (b && !j)
			batch_free(b);
	}
	U.busy = true;
	if (submit(j) < 0) {
		U.busy = false;
		stop_round(1000);
	}
}

/* The terminal's client certificate must be valid now: an expired one
 * would be refused in the handshake; say so and send nothing. */
static int
client_cert_check(char *why, size_t whylen)
{
	FILE *f = fopen(U.d->cfg->insurer_client_cert, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	int r = 0;
	if (f)
		fclose(f);
	if (!x) {
		snprintf(why, whylen, "cannot read this terminal's client certificate "
		                      "([insurer] client_cert)");
		return -ENOENT;
	}
	if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
		snprintf(why, whylen, "this terminal's client certificate has expired "
		                      "([insurer] client_cert): renew it");
		r = -EKEYEXPIRED;
	} else if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
		snprintf(why, whylen, "this terminal's client certificate is not valid yet "
		                      "(is this terminal's clock right?)");
		r = -EKEYEXPIRED;
	}
	X509_free(x);
	return r;
}

static void
start_round(void)
{
	char why[UPLOADER_WHY_MAX];
	struct queue_stats qs;

	if (client_cert_check(why, sizeof(why)) < 0) {
		uploader_local_error(&U.u, loop_now_ms(), why);
		log_warn("upload: %s", why);
		plan_timer(U.u.next_ms - loop_now_ms());
		notify(true);
		return;
	}
	sheetq_stats(U.sq, &qs);
	memset(&U.prog, 0, sizeof(U.prog));
	U.prog.total = qs.count[QUEUE_QUEUED] + qs.count[QUEUE_SENDING];
	U.round_t0 = loop_now_ms();
	U.round = true;
	U.reached = false;
	uploader_round_begin(&U.u, loop_now_ms());
	events_publish("UploadStarted", json_pack("{s:I}", "waiting", (json_int_t)U.prog.total));
	notify(false);
	next_batch();
}

static void
on_timer(struct loop *l, void *arg)
{
	(void)l;
	(void)arg;
	U.timer = 0;
	if (U.busy || !U.on)
		return;
	if (U.cur && U.cur->body) {
		uploader_round_begin(&U.u, loop_now_ms());
		send_batch(U.cur); /* the same bytes, the same Idempotency-Key */
	} else if (U.round) {
		next_batch();
	} else {
		start_round();
	}
}

static void
plan_timer(uint64_t delay_ms)
{
	if (U.timer)
		loop_timer_cancel(U.d->loop, U.timer);
	U.timer = loop_timer_add(U.d->loop, delay_ms, on_timer, NULL);
}

static void
kick(enum uploader_trigger t)
{
	if (!U.on || !U.http)
		return;
	uint64_t d = uploader_trigger(&U.u, loop_now_ms(), t);
	if (d != UPLOADER_NEVER && !U.busy)
		plan_timer(d);
}

/* ------------------------------------------------------------------ */
/* job results on the loop */

static void
formed(struct job *j)
{
	struct batch *b = j->b;
	if (j->r == -E2BIG && b->n) {
		/* over 4 MiB once encoded: as a 413 without asking */
		struct http_result hr = { .net = UPLOADER_NET_OK, .status = 413, .body = "", .why = "" };
		U.cur = b;
		on_batch_answer(&hr, b);
		return;
	}
	if (j->r < 0) {
		char why[UPLOADER_WHY_MAX];
		snprintf(why, sizeof(why), "the queue failed: %.180s", j->err);
		batch_free(b);
		uploader_local_error(&U.u, loop_now_ms(), why);
		stop_round(U.u.next_ms - loop_now_ms());
		return;
	}
	if (b->n == 0) {
		batch_free(b);
		end_round();
		return;
	}
	U.cur = b;
	send_batch(b);
}

static void
settled(struct job *j)
{
	if (j->kind == J_COMMIT) {
		U.commits--;
		if (j->r == 0) {
			publish_sheet_results(j->b, j->res);
		} else {
			/* not committed: the sheets stay sending and go back to
			 * queued at the next open; the insurer will say duplicate */
			log_err("upload: cannot commit the results of batch %s: %s", j->b->id, j->err);
		}
	} else if (j->reject && j->r == 0) {
		for (size_t i = 0; i < j->b->n; i++)
			events_publish_ex("SheetRejected",
			                  json_pack("{s:s,s:s}", "id", j->b->ids[i], "code", j->code),
			                  json_pack("{s:s}", "reason", j->reason));
		U.prog.rejected += j->b->n;
		U.prog.sent += j->b->n;
	}
	batch_free(j->b);
	j->b = NULL;
	if (j->kind == J_COMMIT && !U.commits && U.finish != FIN_NONE) {
		int f = U.finish;
		U.finish = FIN_NONE;
		U.busy = false;
		if (f == FIN_END)
			end_round();
		else
			stop_finish(U.finish_wait_ms);
		return;
	}
	notify(false);
	if (U.round && j->reject)
		take_next();
}

static void
returns_applied(struct job *j)
{
	U.returns_busy = false;
	if (j->r == 0 && j->ret.n)
		log_info("upload: %zu returns applied", j->applied);
	if (j->r < 0) {
		log_err("upload: cannot apply the insurer's returns: %s", j->err);
		return;
	}
	for (size_t i = 0; i < j->ret.n; i++) {
		const struct insurer_return *it = &j->ret.items[i];
		if (it->kind == INSURER_PAID)
			events_publish("SheetPaid", json_pack("{s:s,s:I,s:s}", "id", it->sheet_id, "amount",
			                                      (json_int_t)it->amount, "date", it->date));
		else
			events_publish_ex("SheetRefused",
			                  json_pack("{s:s,s:s,s:s}", "id", it->sheet_id, "code", it->code,
			                            "date", it->date),
			                  json_pack("{s:s}", "reason", it->reason));
	}
	if (j->skipped)
		log_info("upload: %zu returns for sheets unknown here or already applied: skipped",
		         j->skipped);
	if (j->ret.n >= RETURNS_PAGE) {
		U.returns_busy = true;
		if (submit(job_new(J_CURSOR, NULL)) < 0)
			U.returns_busy = false;
	} else {
		poll_opposition();
	}
}

static void
counted(struct job *j)
{
	static int64_t last_due_event;
	if (j->r < 0)
		return;
	U.counts = j->counts;
	if ((j->counts.due_by || j->counts.overdue) &&
	    clock_real_ms() - last_due_event >= (int64_t)DAY_MS) {
		last_due_event = clock_real_ms();
		events_publish("DueSoon", json_pack("{s:I,s:I,s:i}", "due_soon",
		                                    (json_int_t)j->counts.due_by, "overdue",
		                                    (json_int_t)j->counts.overdue, "margin_days",
		                                    (int)U.d->cfg->insurer_due_margin_days));
	}
}

static void on_returns_answer(const struct http_result *hr, void *arg);
static void on_opposition_answer(const struct http_result *hr, void *arg);

/* GET PATH?[limit=N&]after=CURSOR (cursor escaped; none on the first call). */
static void
get_with_cursor(const char *path, const char *limit, const char *cursor, http_done_fn done)
{
	char url[2600];
	char *esc = cursor[0] ? curl_easy_escape(NULL, cursor, 0) : NULL;
	snprintf(url, sizeof(url), "%s%s?%s%s%s", U.base, path, limit, esc ? "after=" : "",
	         esc ? esc : "");
	curl_free(esc);
	if (http_request(U.http, "GET", url, NULL, NULL, 0, done, NULL) < 0)
		U.returns_busy = false;
}

static void
job_done(void *arg)
{
	struct job *j = arg;
	if (!U.on) {
		/* the module stopped first: sheets in flight stay sending and go
		 * back to queued at the next open */
		batch_free(j->b);
		job_free(j);
		return;
	}
	if (j->kind == J_FORM && j->ahead) {
		U.ahead_running = false;
		bool usable = j->b && j->b->n && (j->r == 0 || j->r == -E2BIG);
		if (!U.round) {
			ahead_release(j);
		} else if (!usable) {
			/* nothing (yet) or a failure: not kept, since sheets may be
			 * queued meanwhile; the next batch is formed when wanted */
			batch_free(j->b);
			j->b = NULL;
			if (U.ahead_wanted) {
				U.ahead_wanted = false;
				U.busy = false;
				next_batch();
			}
		} else if (U.ahead_wanted) {
			U.ahead_wanted = false;
			U.busy = false;
			formed(j);
		} else {
			U.ahead = j;   /* kept until the round wants it */
			return;
		}
		job_free(j);
		return;
	}
	switch (j->kind) {
	case J_FORM:
	case J_REFORM:
		U.busy = false;
		formed(j);
		break;
	case J_COMMIT:
	case J_SETTLE:
		if (j->reject)
			U.busy = false;
		settled(j);
		break;
	case J_CURSOR:
		get_with_cursor("v1/returns", "limit=100&", j->cursor, on_returns_answer);
		break;
	case J_OPP_CURSOR:
		get_with_cursor("v1/opposition", "", j->cursor, on_opposition_answer);
		break;
	case J_OPPOSITION:
		U.returns_busy = false;
		if (j->r < 0)
			log_err("upload: cannot store the opposition list: %s", j->err);
		else
			opposition_increment(j);
		break;
	case J_OPP_LOAD:
		opposition_loaded_from(j);
		break;
	case J_RETURNS:
		returns_applied(j);
		break;
	case J_COUNTS:
		counted(j);
		break;
	case J_CHAIN:
		if (j->r < 0)
			log_err("upload: [insurer] signer_chain: %s; new sheets have no certificate and "
			        "wait", j->err);
		else
			log_notice("upload: signing certificate %.16s… recorded for new sheets",
			           j->digest);
		break;
	case J_SIGNER_CHAIN:
		if (j->r < 0)
			log_err("upload: cannot record the signer's certificate: %s", j->err);
		else if (j->nder)
			log_notice("upload: the signer's certificate %.16s… recorded for new sheets",
			           j->digest);
		else
			log_warn("upload: the signer has no certificate: new sheets are kept and wait");
		break;
	}
	job_free(j);
}

/* ------------------------------------------------------------------ */
/* the opposition list's copy in memory (daemon/cards/opposition.h) */

/* At start-up: the list as stored. */
static void
opposition_loaded_from(struct job *j)
{
	if (j->r < 0) {
		/* the increments still come in; a card read meanwhile is checked
		 * against those only: said loudly */
		log_err("upload: cannot read the stored opposition list: %s; cards are checked "
		        "against the increments fetched from now on only",
		        j->err[0] ? j->err : strerror(-j->r));
		return;
	}
	opposition_install(j->oppset);
	j->oppset = NULL;
	if (j->nbad) {
		opposition_set_loaded(false);
		log_err("upload: out of memory for the opposition list: %zu of %zu serials not "
		        "checked", j->nbad, j->nserials);
	} else {
		log_info("upload: opposition list: %zu cards", opposition_count());
	}
	if (readers_opposition_changed())
		log_info("upload: a card already read is on the opposition list");
}

/* An increment the queue committed: the same in memory, then the cards
 * in the readers again. */
static void
opposition_increment(struct job *j)
{
	size_t bad = 0;
	for (size_t i = 0; i < j->opp.nadded; i++)
		if (opposition_add(j->opp.added[i]) < 0)
			bad++;
	for (size_t i = 0; i < j->opp.nremoved; i++)
		opposition_remove(j->opp.removed[i]);
	if (bad) {
		opposition_set_loaded(false);
		log_err("upload: out of memory for the opposition list: %zu serials not checked", bad);
	}
	if (j->opp.nadded || j->opp.nremoved)
		log_notice("upload: opposition list: %zu cards added, %zu removed (%zu in all)",
		           j->opp.nadded, j->opp.nremoved, opposition_count());
	readers_opposition_changed();
}

/* ------------------------------------------------------------------ */
/* returns */

static void
on_returns_answer(const struct http_result *hr, void *arg)
{
	struct job *j;
	(void)arg;
	if (hr->net != UPLOADER_NET_OK || hr->status != 200) {
		log_info("upload: returns not fetched (%s %ld)", hr->why, hr->status);
		U.returns_busy = false;
		return;
	}
	if (!(j = job_new(J_RETURNS, NULL))) {
		U.returns_busy = false;
		return;
	}
	if (insurer_parse_returns(hr->body, hr->len, RETURNS_PAGE, &j->ret) < 0) {
		log_warn("upload: the insurer's returns are not the documented JSON: ignored");
		U.returns_busy = false;
		job_free(j);
		return;
	}
	if (submit(j) < 0)
		U.returns_busy = false;
}

/* Start a cursor poll (J_CURSOR: returns, J_OPP_CURSOR: opposition): the
 * stored cursor is read on the queue thread, then the GET goes out. One
 * at a time (returns_busy). */
static void
poll_cursor(enum job_kind k)
{
	if (U.returns_busy || !U.http)
		return;
	U.returns_busy = true;
	if (submit(job_new(k, NULL)) < 0)
		U.returns_busy = false;
}

static void
poll_returns(void)
{
	poll_cursor(J_CURSOR);
}

/* The opposition list (INSURER.md "GET /v1/opposition"), refreshed with
 * the returns; the increment and its cursor are stored in one transaction.
 * (Checking the cards read against it is the card session's part.) */
static void
on_opposition_answer(const struct http_result *hr, void *arg)
{
	struct job *j;
	(void)arg;
	U.returns_busy = false;
	if (hr->net != UPLOADER_NET_OK || hr->status != 200 || !(j = job_new(J_OPPOSITION, NULL)))
		return;
	if (insurer_parse_opposition(hr->body, hr->len, &j->opp) < 0) {
		log_warn("upload: the insurer's opposition list is not the documented JSON: ignored");
		job_free(j);
		return;
	}
	U.returns_busy = true;
	if (submit(j) < 0)
		U.returns_busy = false;
}

static void
poll_opposition(void)
{
	poll_cursor(J_OPP_CURSOR);
}

static void
returns_timer(struct loop *l, void *arg)
{
	(void)arg;
	poll_returns();
	refresh_counts();
	U.returns_timer = loop_timer_add(l, (uint64_t)U.d->cfg->insurer_returns_interval_s * 1000,
	                                 returns_timer, NULL);
}

/* ------------------------------------------------------------------ */
/* rtnetlink: the network came back */

static void
on_netlink(struct loop *l, int fd, short revents, void *arg)
{
	char buf[8192];
	bool up = false;
	ssize_t n;
	(void)l;
	(void)revents;
	(void)arg;
	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == RTM_NEWADDR || h->nlmsg_type == RTM_NEWROUTE ||
			    h->nlmsg_type == RTM_NEWLINK)
				up = true;
		}
	}
	if (up) {
		log_debug("upload: network event: an address, route or link appeared");
		kick(UPLOADER_T_NETWORK);
	}
}

static void
netlink_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK,
		                  .nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE |
		                               RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE };
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    loop_add_fd(U.d->loop, fd, POLLIN, on_netlink, NULL) < 0) {
		log_warn("upload: no network events (rtnetlink): %s; the interval and the backoff "
		         "still run", strerror(errno));
		if (fd >= 0)
			close(fd);
		return;
	}
	U.nl_fd = fd;
}

/* ------------------------------------------------------------------ */
/* status, progress, the module */

static json_t *
iso_or_null(int64_t ms)
{
	char t[32];
	if (ms <= 0)
		return json_null();
	iso_ms(ms, t);
	return json_string(t);
}

static void
status_cb(struct daemon *d, json_t *st, void *arg)
{
	struct queue_stats qs = { 0 };
	int64_t next = 0;
	(void)d;
	(void)arg;
	if (U.sq)
		sheetq_stats(U.sq, &qs);
	if (U.u.next_ms != UPLOADER_NEVER && U.u.state != UPLOADER_DISABLED) {
		uint64_t now = loop_now_ms();
		next = clock_real_ms() + (int64_t)(U.u.next_ms > now ? U.u.next_ms - now : 0);
	}
	json_t *o = json_pack(
		"{s:s,s:s?,s:o,s:o,s:I,s:o,s:s?,s:I,s:I,s:I,s:I}", "state",
		uploader_state_name(U.u.state), "reason", U.u.why[0] ? U.u.why : NULL, "last_success",
		iso_or_null(U.u.last_success), "next_attempt", iso_or_null(next), "waiting",
		(json_int_t)(qs.count[QUEUE_QUEUED] + qs.count[QUEUE_SENDING]), "oldest",
		iso_or_null(qs.oldest_queued_ms), "next_due", qs.next_due[0] ? qs.next_due : NULL,
		"rejected", (json_int_t)qs.count[QUEUE_REJECTED], "no_cert",
		(json_int_t)U.counts.no_cert, "due_soon", (json_int_t)U.counts.due_by, "overdue",
		(json_int_t)U.counts.overdue);
	if (o)
		json_object_set_new(st, "uploader", o);
}

void
upload_progress(struct upload_progress *p)
{
	*p = U.prog;
	p->state = uploader_state_name(U.u.state);
	p->reason = U.u.why;
	p->running = U.round;
	p->elapsed_ms = U.round_t0 ? loop_now_ms() - U.round_t0 : 0;
}

int
upload_request(void)
{
	if (!U.on || !U.http)
		return -ENOTCONN;
	kick(UPLOADER_T_REQUEST);
	return 0;
}

int
upload_watch(upload_watch_fn fn, void *arg)
{
	for (size_t i = 0; i < WATCH_MAX; i++) {
		if (!U.watch[i].fn) {
			U.watch[i].fn = fn;
			U.watch[i].arg = arg;
			return 0;
		}
	}
	return -ENOSPC;
}

void
upload_unwatch(upload_watch_fn fn, void *arg)
{
	for (size_t i = 0; i < WATCH_MAX; i++)
		if (U.watch[i].fn == fn && U.watch[i].arg == arg)
			U.watch[i].fn = NULL;
}

static void
on_queued(void *arg)
{
	(void)arg;
	kick(UPLOADER_T_QUEUED);
}

static uint64_t
jitter(void *arg)
{
	uint64_t v = 0;
	(void)arg;
	if (RAND_bytes((unsigned char *)&v, sizeof(v)) != 1)
		v = (uint64_t)clock_mono_us() * 6364136223846793005ull;
	return v;
}

/* The signer's chain (pinflow_watch_chain): recorded on the queue thread,
 * in order with the sheets, as the certificate of every sheet queued after. */
static void
on_signer_chain(const uint8_t *const *der, const size_t *len, size_t n, void *arg)
{
	struct job *j = job_new(J_SIGNER_CHAIN, NULL);
	(void)arg;
	if (!j)
		return;
	for (size_t i = 0; i < n && i < INSURER_CERTS_MAX; i++) {
		if (!(j->der[i] = malloc(len[i] ? len[i] : 1))) {
			job_free(j);
			return;
		}
		memcpy(j->der[i], der[i], len[i]);
		j->der_len[i] = len[i];
		j->nder = i + 1;
	}
	submit(j);
}

static int
start_transport(struct daemon *d)
{
	const struct config *c = d->cfg;
	struct http_opts ho = { c->insurer_ca, c->insurer_client_cert, c->insurer_client_key,
		                c->insurer_connect_timeout_s * 1000, c->insurer_timeout_s * 1000,
		                c->insurer_low_speed_time_s, INSURER_ANSWER_MAX };
	size_t n = strlen(c->insurer_url);
	snprintf(U.base, sizeof(U.base), "%s%s", c->insurer_url,
	         n && c->insurer_url[n - 1] == '/' ? "" : "/");
	char why[200];
	int r = 0;
	if (!strncmp(c->insurer_client_key, "pkcs11:", 7) &&
	    (r = http_engine_key_setup(c->insurer_client_key_module, c->insurer_client_key_pin,
	                               c->insurer_client_key_pin_file, why, sizeof(why))) < 0)
		log_err("upload: [insurer] client_key: %s", why);
	if (r == 0)
		r = http_new(d->loop, &ho, &U.http);
	if (r < 0) {
		log_err("upload: cannot start libcurl: %s", strerror(-r));
		return r;
	}
	if (c->insurer_signer_chain[0]) {
		struct job *j = job_new(J_CHAIN, NULL);
		if (j) {
			snprintf(j->path, sizeof(j->path), "%s", c->insurer_signer_chain);
			submit(j);
		}
	} else if (pinflow_watch_chain(on_signer_chain, NULL) < 0) {
		log_warn("upload: cannot follow the signer's certificate: sheets are kept and wait");
	}
	netlink_open();
	return 0;
}

int
upload_init(struct daemon *d)
{
	const struct config *c = d->cfg;
	struct uploader_cfg uc = { (unsigned)c->backoff_base_s, (unsigned)c->backoff_cap_s,
		                   (uint64_t)c->upload_interval_s * 1000, (uint64_t)c->insurer_gather_ms,
		                   jitter, NULL };
	int r;

	memset(&U, 0, sizeof(U));
	U.nl_fd = -1;
	U.d = d;
	U.sq = sheets_queue();
	uploader_init(&U.u, &uc, c->insurer_url[0] != '\0');
	if ((r = status_add_provider(status_cb, NULL)) < 0)
		return r;
	U.on = true;
	/* the stored opposition list into memory, first in the queue's FIFO
	 * (before any increment), with or without an insurer */
	opposition_clear();
	if (U.sq && submit(job_new(J_OPP_LOAD, NULL)) < 0)
		log_err("upload: cannot load the stored opposition list");
	if (U.u.state == UPLOADER_DISABLED || !U.sq)
		return 0;
	if ((r = start_transport(d)) < 0)
		return r;
	api_sheets_set_queued_hook(on_queued, NULL);
	/* a first round soon after start (sheets left from before), returns
	 * and counts on their own timer */
	kick(UPLOADER_T_REQUEST);
	U.returns_timer = loop_timer_add(d->loop, 1000, returns_timer, NULL);
	log_notice("upload: to %s every %ld s (backoff %ld..%ld s)", c->insurer_url,
	           c->upload_interval_s, c->backoff_base_s, c->backoff_cap_s);
	return 0;
}

void
upload_fini(struct daemon *d)
{
	if (!U.on)
		return;
	opposition_clear();
	api_sheets_set_queued_hook(NULL, NULL);
	pinflow_unwatch_chain(on_signer_chain, NULL);
	U.on = false;
	if (U.timer)
		loop_timer_cancel(d->loop, U.timer);
	if (U.returns_timer)
		loop_timer_cancel(d->loop, U.returns_timer);
	if (U.nl_fd >= 0) {
		loop_del_fd(d->loop, U.nl_fd);
		close(U.nl_fd);
	}
	/* transfers are dropped; their sheets stay sending and go back to
	 * queued at the next open (the insurer de-duplicates by sheet id) */
	http_free(U.http);
	U.http = NULL;
	batch_free(U.cur);
	while (U.nparts)
		batch_free(U.parts[--U.nparts]);
	U.cur = NULL;
	if (U.ahead) {
		batch_free(U.ahead->b);
		job_free(U.ahead);
		U.ahead = NULL;
	}
}
