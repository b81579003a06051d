/* Workers: the one place where blocking work runs off the loop.
 *
 * A module that must call blocking middleware (pcscd's card I/O, libnfc,
 * PKCS#11, SQLite, and next the uploader's HTTP) submits a job to a worker:
 * run() executes on one of the worker's threads; done() then runs on the
 * loop's thread, exactly once per submitted job, in submission order for a
 * one-thread worker. In the spirit of Redis's bio.c: a module says what job
 * it submits and what its callback does on the loop; it does not build its
 * own thread, mutex, condvar and hand-off.
 *
 * A worker with one thread is a serial queue (a SQLite connection, a
 * PKCS#11 session: one user at a time). A worker with n threads runs up to n
 * jobs at once (one card session per reader); threads are started when work
 * arrives and stay parked afterwards.
 *
 * Stop: worker_free() (loop thread) lets the jobs already submitted run to
 * their end (their run() is never skipped; a module that wants them cut
 * short tells them so through their own arg first), joins the threads, then
 * runs every outstanding done() on the calling thread before it returns.
 * After worker_free() no callback of that worker ever runs: a module frees
 * its worker first and its own state after, and a late result can never
 * reach a freed module (the "hub cleared at shutdown" problem).
 *
 * Jobs that are long-lived watchers (the drivers' SCardGetStatusChange and
 * libnfc polling threads) are not jobs: they block forever by design, and
 * say in their own headers why they keep a thread and post with loop_post().
 */
#ifndef VITALED_CORE_WORKER_H
#define VITALED_CORE_WORKER_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/loop.h"

struct worker;

/* Runs on a worker thread; may block. */
typedef void (*worker_run_fn)(void *arg);
/* Runs on the loop thread after run() returned. */
typedef void (*worker_done_fn)(void *arg);

#define WORKER_MAX_THREADS 16

/* A worker named name (thread names "vl-<name>", at most 12 characters
 * kept) with up to nthreads threads (1..WORKER_MAX_THREADS). stack_kib 0 is
 * the system's default stack; else that many KiB (RSS: a card session needs
 * little). Loop thread. Returns 0 or a negative errno. */
int worker_new(struct loop *l, const char *name, unsigned nthreads, size_t stack_kib,
               struct worker **out);

/* Queue a job. run may be NULL (done only, in order after earlier jobs);
 * done may be NULL. Any thread, the worker's own included. Returns 0, -ESHUTDOWN
 * once worker_free has begun (nothing queued, nothing called), or -ENOMEM. */
int worker_submit(struct worker *w, worker_run_fn run, worker_done_fn done, void *arg);

/* Run run(arg) on the worker and wait for it; done callbacks are not
 * involved. For callers that must have the answer now on their own thread
 * (the COSE signer callback asked by the sheets' sealing thread). Never
 * from the worker's own thread (that would wait for itself: asserted).
 * Returns 0 or -ESHUTDOWN / -ENOMEM (run not called). */
int worker_run_sync(struct worker *w, worker_run_fn run, void *arg);

/* True on one of w's threads. Any thread. */
bool worker_on_thread(const struct worker *w);

/* Jobs submitted and whose done() has not yet run (tests, status). Any thread. */
unsigned worker_pending(struct worker *w);

/* Drain and stop (see above), then free. Loop thread. NULL is ignored. */
void worker_free(struct worker *w);

#endif
