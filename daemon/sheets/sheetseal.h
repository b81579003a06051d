/* Signing ahead inside a group-commit batch.
 *
 * A batch is one write transaction (daemon/sheets/sheetcommit.c,
 * storage/queue queue_put_batch): the queue assigns the first sheet's daily
 * sequence number (MAX + 1) and calls its seal callback, which signs it;
 * the next sheets of the same practitioner and care date will get the next
 * numbers, one by one, since nothing else writes (the queue's lock) and an
 * item uses a number only when it is stored. So once the first number of a
 * group is known, the others are too, and their signatures can be made
 * while the queue's worker inserts the earlier ones: a one-thread
 * daemon/core/worker of its own ("vl-seal") signs them (through the
 * task's sign function: the signer, on that thread for a file key, else on
 * the signer's worker) in FIFO order, and each seal callback takes its
 * sheet's signed bytes if they carry the number the queue gave it, or
 * signs again if not (an item before it failed). Every signature is still
 * made inside the transaction that stores the sheet, with the number it is
 * stored under; only the queue thread's waiting for the signer is
 * overlapped with its inserting. Its own worker, not the queue's: the
 * queue's one thread is the one waiting for these signatures.
 *
 * The worker runs the jobs; the queue's thread waits for a task's result
 * on the sealer's own condition variable (a worker's done callback runs on
 * the loop, which is not the thread that waits). Tasks are owned by the
 * caller (the queue's thread), which must wait for or cancel each task it
 * submitted before freeing it.
 */
#ifndef VITALED_SHEETSEAL_H
#define VITALED_SHEETSEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"
#include "protocol/cose.h"
#include "protocol/sheet.h"

struct sheetseal;

struct sheetseal_task {
	/* in */
	struct sheet *s;              /* s->seq is set to seq, then it is encoded and signed */
	uint32_t seq;
	int alg;
	cose_sign_fn sign;            /* the signer (signer_sign in the daemon) */
	void *sign_ctx;
	/* out, once done */
	uint8_t *out;                 /* malloc'd COSE_Sign1; the caller frees it */
	size_t len;
	int result;
	uint64_t sign_us;
	/* internal */
	int state;                    /* idle, queued, running, done */
	bool cancelled;
};

/* Make the sealer and its worker. Loop thread. 0 or a negative errno. */
int sheetseal_start(struct loop *l, struct sheetseal **out);
/* Free it (loop thread), after every task was waited for or cancelled.
 * NULL is fine. */
void sheetseal_stop(struct sheetseal *ss);

/* Queue t (its in fields set). Any thread but the sealer's. On failure
 * (-ENOMEM, -ESHUTDOWN) t is done at once with that result, so a wait or
 * cancel still works. Returns 0 or that error. */
int sheetseal_submit(struct sheetseal *ss, struct sheetseal_task *t);
/* Wait until t is done; returns t->result. */
int sheetseal_wait(struct sheetseal *ss, struct sheetseal_task *t);
/* Take n tasks back: those that did not start are not signed, the one
 * signing is waited for. Frees each t[i]->out. */
void sheetseal_cancel(struct sheetseal *ss, struct sheetseal_task *const *t, size_t n);

#endif
