/* The uploader's work on the queue: forming a batch (take the sheets,
 * read their signed bytes, encode the body), splitting one, committing a
 * batch's results, giving sheets back. Every function here runs on the
 * queue's thread (daemon/sheets/sheetq.h: the one thread that uses the
 * storage/queue handle) with the handle; the uploader (upload.c) submits
 * them as jobs and reads the struct batch in their done callbacks.
 */
#ifndef VITALED_UPLOAD_BATCHES_H
#define VITALED_UPLOAD_BATCHES_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/insurer.h"
#include "storage/queue.h"

struct batch {
	char id[37];                     /* lower-case UUID v4: the Idempotency-Key */
	char cert[QUEUE_CERT_DIGEST_LEN + 1];
	char practitioner[QUEUE_PRACT_MAX + 1];
	size_t n;                        /* sheets, 0..INSURER_BATCH_SHEETS_MAX */
	char (*ids)[QUEUE_ID_MAX + 1];   /* in the batch's order */
	uint8_t *body;                   /* the exact bytes sent, kept for retries */
	size_t len;
	unsigned sends;                  /* times these bytes went out */
};

/* A new batch with a fresh id. NULL on allocation failure. */
struct batch *batch_new(void);
void batch_free(struct batch *b);
/* A batch of the ids [from, from + n) of b, with a fresh id (a split). */
struct batch *batch_part(const struct batch *b, size_t from, size_t n);

/* Queue thread. Take the next batch (the most urgent certificate, at most
 * INSURER_BATCH_SHEETS_MAX sheets, within 4 MiB with the chain) and encode
 * it; b->n is 0 when nothing is ready. Returns 0 or a negative errno (the
 * queue's, or -E2BIG: the body would exceed 4 MiB, split it). */
int batch_form(struct queue *q, struct batch *b, const char *terminal_id, uint64_t created_s);
/* Queue thread. A split part: move its sheets to its id (queue_rebatch),
 * read them and encode. */
int batch_reform(struct queue *q, struct batch *b, const char *terminal_id, uint64_t created_s);
/* Queue thread. The insurer's results, in ONE transaction: accepted and
 * duplicate → accepted, rejected → rejected with code and reason. */
int batch_commit(struct queue *q, const struct batch *b, const struct insurer_result *res);
/* Queue thread. Every sheet of b → rejected with code and reason (a lone
 * sheet refused as a whole), or → queued (code NULL: give them back). */
int batch_settle(struct queue *q, const struct batch *b, const char *code, const char *reason);

/* Queue thread. Read a PEM chain file (the signer's certificate first),
 * store it, and make it the current certificate of new sheets. digest gets
 * its digest. -ENOENT / -EINVAL with a sentence in err. */
int batch_register_chain(struct queue *q, const char *pem_path, char digest[65], char *err,
                         size_t errlen);

/* Queue thread. The same for a chain given as DER (the signer's, through
 * pinflow_watch_chain); n == 0 forgets the current certificate (the signer
 * has none: new sheets wait). */
int batch_register_der(struct queue *q, const uint8_t *const *der, const size_t *lens, size_t n,
                       char digest[65], char *err, size_t errlen);

#endif
