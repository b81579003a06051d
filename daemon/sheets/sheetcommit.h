/* The sheet-creation state machine: group commit, drafts, CompleteDraft.
 *
 * Plain C, no varlink: a request (struct sheetcommit_req) carries a built
 * sheet (or a draft's payload, or a completion's patch) in, and its result
 * out; the machine calls the request's finished callback exactly once,
 * after the transaction that stored it (or failed to) has ended, then frees
 * it. The API handlers (daemon/sheets/api_sheets.c) turn JSON into requests
 * and results into replies; the unit suite (tests/unit/check_sheets.c)
 * drives the machine directly.
 *
 * Group commit: a sheet or draft submitted while a batch is in flight
 * waits in the pending list; when the batch ends (its requests finished,
 * in their order), the pending ones (at most SHEETCOMMIT_BATCH_MAX) go
 * together into the next queue_put_batch: one transaction, one fsync, each
 * sheet signed inside it once its daily number is known (sign-ahead:
 * daemon/sheets/sheetseal.h). So a request never waits for more than the
 * commit in flight plus its own batch's, and it is answered only after
 * COMMIT ("queued" means on disk). A completion (CompleteDraft) is its own
 * job in the same FIFO: queue_complete_draft, validated and signed inside
 * its transaction.
 *
 * Failures: an item that fails alone (duplicate id, a limit: -ENOSPC, a
 * seal error) has its own result and reason; a transaction that fails
 * (disk full -ENOSPC, I/O error -EIO) fails every request of the batch with
 * the queue's reason; a job that cannot be queued (-ESHUTDOWN, -ENOMEM)
 * fails every request of the batch with that error; sheetcommit_free fails
 * the pending ones with -ESHUTDOWN.
 *
 * Where the work runs is injected (ops.run: sheetq_run in the daemon, the
 * queue's worker; a test runs jobs itself), and so is the clock of the
 * pipeline figures. The machine's functions run on one thread (the loop);
 * the work functions it hands to ops.run run where ops.run puts them, one
 * at a time.
 */
#ifndef VITALED_SHEETCOMMIT_H
#define VITALED_SHEETCOMMIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/sheets/sheetbuild.h"
#include "daemon/sheets/sheetq.h"
#include "daemon/sheets/sheetseal.h"
#include "drivers/reader.h"
#include "protocol/cose.h"
#include "protocol/sheet.h"
#include "storage/queue.h"

/* Why a sheet is not made from a card in opposition (CardOpposed). */
#define SHEETS_OPPOSED_REASON                                                                  \
	"this card is in opposition (reported lost, stolen or replaced): no sheet can be made "  \
	"from it; ask the patient for another card, or make a degraded sheet"

/* Largest number of creates in one transaction. */
#define SHEETCOMMIT_BATCH_MAX 128

enum sheetcommit_kind {
	SHEETCOMMIT_SHEET,      /* a built, validated sheet: signed and queued */
	SHEETCOMMIT_DRAFT,      /* a draft: its payload stored unsigned */
	SHEETCOMMIT_COMPLETE,   /* a draft completed: patch merged, validated, signed */
};

struct sheetcommit_req;
/* Called once per request when its fate is known, on the machine's
 * thread; the machine frees the request right after. */
typedef void (*sheetcommit_finished_fn)(struct sheetcommit_req *r, void *arg);

struct sheetcommit_req {
	/* in: set by the caller before submitting */
	enum sheetcommit_kind kind;
	struct sheet *s;              /* owned (allocated by req_new); wiped when freed.
	                               * COMPLETE: only s->id, the draft's id */
	int alg;                      /* SHEET, COMPLETE: COSE algorithm */
	cose_sign_fn sign;            /* SHEET, COMPLETE: the signer (signer_sign) */
	void *sign_ctx;
	uint8_t *draft;               /* DRAFT: the payload, owned (sheetcommit_draft_prepare) */
	size_t draft_len;
	json_t *patch;                /* COMPLETE: the till's part, owned; merged over the draft */
	struct sheetbuild_ctx ctx;    /* DRAFT, COMPLETE: what the daemon fills (its strings below) */
	char pract_id[12], struct_id[15], terminal[SHEET_TERMINAL_MAX + 1];
	sheetcommit_finished_fn finished;
	void *finished_arg;
	/* the client's request id ("" none): a request id stored already
	 * gives that sheet back (replayed), never a second one */
	char request_id[QUEUE_REQUEST_ID_MAX + 1];
	/* the caller's, never read by the machine (the API's call, a kiosk's reader) */
	void *caller;
	char reader[READER_NAME_MAX];
	/* out: valid in finished */
	int result;                   /* 0: stored; else a negative errno (storage/queue.h, SIGNER_E_*;
	                               * COMPLETE: -EKEYREVOKED, the draft's card is in opposition) */
	uint32_t seq;                 /* the daily number (0 for a draft) */
	char care[11], due[11];       /* the queue's columns: YYYY-MM-DD, due "" for a draft */
	char pract[QUEUE_PRACT_MAX + 1];
	struct sheet_errors errs;     /* COMPLETE, result -EINVAL: what is wrong with the sheet */
	char reason[QUEUE_REASON_MAX];/* the failure's sentence, or "" */
	uint64_t sign_us;
	bool replayed;                /* result 0: nothing stored, the sheet of the first request */
	enum queue_state state;       /* result 0: the sheet's state (a replay: as stored) */
	/* internal */
	struct sheetcommit *sc;
	struct sheetcommit_req *next;
	struct sheetcommit_batch *batch;
	size_t idx;
	struct sheetseal_task pre;
	bool pre_on;
};

struct sheetcommit_ops {
	/* Queue work, then done on the machine's thread (sheetq_run). */
	int (*run)(void *ctx, sheetq_work_fn work, sheetq_done_fn done, void *arg);
	/* Monotonic microseconds (the pipeline figures); called on the work's
	 * thread too. */
	uint64_t (*now_us)(void *ctx);
	void *ctx;
};

/* The pipeline's figures since start (QueueStats "pipeline"). */
struct sheetcommit_figures {
	uint64_t batches, sheets, max_batch, sign_us, txn_us, waiting;
};

struct sheetcommit;

/* A machine that runs its work through ops (copied) and signs ahead with
 * sealer (NULL: no signing ahead). NULL when out of memory. */
struct sheetcommit *sheetcommit_new(const struct sheetcommit_ops *ops, struct sheetseal *sealer);
/* Finish every pending request with -ESHUTDOWN, then free. Call it after
 * the work in flight has ended (the daemon: after sheetq_stop). NULL is fine. */
void sheetcommit_free(struct sheetcommit *sc);

/* A request of that kind with an empty sheet (sheet_init). NULL when out of
 * memory. */
struct sheetcommit_req *sheetcommit_req_new(enum sheetcommit_kind kind);
/* Free a request that was never submitted. NULL is fine. */
void sheetcommit_req_free(struct sheetcommit_req *r);

/* A draft's sheet (patient and evidence set) finished with r->ctx and rnd
 * (the id), validated as a draft, and its payload (the sheet's JSON) made.
 * 0; -EINVAL with r->errs; -EIO (the care date is outside the calendar);
 * -ENOMEM. */
int sheetcommit_draft_prepare(struct sheetcommit_req *r, const uint8_t rnd[16]);

/* Take r (SHEET or DRAFT) into the next batch; the machine owns it from
 * now on. */
void sheetcommit_submit(struct sheetcommit *sc, struct sheetcommit_req *r);
/* Take r (COMPLETE) as its own job. Returns 0 (owned by the machine, finished
 * later), or the error of ops.run (r is still the caller's: nothing was
 * called). */
int sheetcommit_complete(struct sheetcommit *sc, struct sheetcommit_req *r);

void sheetcommit_figures(const struct sheetcommit *sc, struct sheetcommit_figures *f);

#endif
