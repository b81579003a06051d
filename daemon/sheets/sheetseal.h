/* Signing ahead inside a group-commit batch.
 *
 * A batch is one write transaction (daemon/sheets/sheets.c, storage/queue
 * queue_put_batch): the queue assigns the first sheet's daily sequence
 * number (MAX + 1) and calls its seal callback, which signs it; the next
 * sheets of the same practitioner and care date will get the next numbers,
 * one by one, since nothing else writes (the queue's lock) and an item uses
 * a number only when it is stored. So once the first number of a group is
 * known, the others are too, and their signatures can be made while the
 * queue thread inserts the earlier ones: this thread signs them (through
 * the signer: on this thread for a file key, else on the signer's worker)
 * in FIFO order, and each
 * seal callback takes its sheet's signed bytes if they carry the number the
 * queue gave it, or signs again if not (an item before it failed). Every
 * signature is still made inside the transaction that stores the sheet,
 * with the number it is stored under; only the queue thread's waiting for
 * the signer is overlapped with its inserting.
 *
 * One thread; tasks are owned by the caller (the queue thread), which must
 * wait for or cancel each task it submitted before freeing it.
 */
#ifndef VITALED_SHEETSEAL_H
#define VITALED_SHEETSEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/sheet.h"
#include "daemon/pin/signer.h"

struct sheetseal;

struct sheetseal_task {
	struct sheetseal_task *next;  /* internal */
	/* in */
	struct sheet *s;              /* s->seq is set to seq, then it is encoded and signed */
	uint32_t seq;
	int alg;
	struct signer *signer;
	/* out, once done */
	uint8_t *out;                 /* malloc'd COSE_Sign1; the caller frees it */
	size_t len;
	int result;
	uint64_t sign_us;
	/* internal */
	int state;                    /* 0 idle, 1 queued, 2 running, 3 done */
};

/* Start the thread. 0 or a negative errno. */
int sheetseal_start(struct sheetseal **out);
/* Stop it; tasks still queued are dropped (their callers wait or cancel
 * first). NULL is fine. */
void sheetseal_stop(struct sheetseal *ss);

/* Queue t (its in fields set). Any thread but the seal thread. */
void sheetseal_submit(struct sheetseal *ss, struct sheetseal_task *t);
/* Wait until t is done; returns t->result. */
int sheetseal_wait(struct sheetseal *ss, struct sheetseal_task *t);
/* Take t back: removed if it did not start, else waited for. Frees
 * t->out either way. */
void sheetseal_cancel(struct sheetseal *ss, struct sheetseal_task *t);

#endif
