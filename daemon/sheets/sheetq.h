/* The queue's worker: the one thread that uses the storage/queue handle.
 *
 * Every queue operation of the daemon (writes, reads, purges) is a job run
 * on a one-thread daemon/core/worker ("vl-queue") in FIFO order, so a
 * commit's fsync and the signatures made inside a write transaction (the
 * seal callback: the practitioner's signer, which may be a card taking
 * 0.5 s) never stop the event loop: the loop keeps reading requests and
 * collecting the next group-commit batch while the current one commits. A
 * job's work runs on the worker's thread with the handle; its done callback
 * then runs on the loop thread, exactly once, in submission order, where
 * the API replies are sent.
 *
 * After each job that wrote, the worker refreshes a snapshot of the
 * queue's statistics, which the loop reads without waiting (GetStatus must
 * answer at once, whatever the disk does).
 *
 * storage/queue.h allows a handle on any one thread at a time: it is
 * opened on the loop thread at start-up (so a refusal stops start-up with
 * its reason), then used only on the worker's thread, and closed after the
 * worker was freed.
 */
#ifndef VITALED_SHEETQ_H
#define VITALED_SHEETQ_H

#include <stdbool.h>

#include "daemon/core/loop.h"
#include "storage/queue.h"

struct sheetq;

/* Work on the queue's worker thread; returns SHEETQ_WROTE when it changed the queue
 * (the statistics snapshot is then refreshed), else 0. */
#define SHEETQ_WROTE 0x1
typedef int (*sheetq_work_fn)(struct queue *q, void *arg);
/* Runs on the loop thread after the work, with the same arg. */
typedef void (*sheetq_done_fn)(void *arg);

/* Open the queue (storage/queue.h queue_open) and make its worker. On
 * failure returns the queue's negative errno with its sentence in err.
 * Loop thread. */
int sheetq_start(struct loop *l, const struct queue_opts *o, struct sheetq **out, char *err,
                 size_t errlen);
/* Let the jobs already queued run, end the worker, run the done callbacks
 * of every finished job (here, on the caller's thread: the loop thread;
 * one that queues a job then gets -ESHUTDOWN), close the queue. NULL is
 * fine. */
void sheetq_stop(struct sheetq *sq);

/* Queue a job. Returns 0, -ESHUTDOWN once stopping, -ENOMEM. Loop thread. */
int sheetq_run(struct sheetq *sq, sheetq_work_fn work, sheetq_done_fn done, void *arg);

/* The statistics as of the last write (or the open). Any thread. */
void sheetq_stats(struct sheetq *sq, struct queue_stats *st);
/* What the queue said at open (storage/queue.h queue_open_notice), and
 * whether it is read-only. Loop thread, before the first job. */
void sheetq_open_notice(struct sheetq *sq, char *buf, size_t len, bool *read_only);
/* The integrity check (PRAGMA quick_check) of the file: the worker's first
 * job when the queue was opened with defer_quick_check (else it ran in
 * queue_open, and this says OK once the worker started). RUNNING until it
 * ends; FAILED: every write is refused (storage/queue.h queue_check), why
 * says so. ms: how long it took. Any thread. */
enum sheetq_check { SHEETQ_CHECK_RUNNING, SHEETQ_CHECK_OK, SHEETQ_CHECK_FAILED };
enum sheetq_check sheetq_check(struct sheetq *sq, char *why, size_t len, uint64_t *ms);
/* Jobs whose done callback has not run yet (for tests and status). Any thread. */
unsigned sheetq_pending(struct sheetq *sq);

#endif
