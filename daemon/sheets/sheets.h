/* Module "queue": care sheets and the durable queue in the daemon.
 *
 * At start it opens the queue in the state dir (storage/queue: quick_check,
 * key, migrations) and refuses to start, with the queue's reason, when the
 * file is corrupt, the key is lost while sheets are stored, or the file is
 * not a queue; main.c then never says READY. It wires the parts together:
 *
 *   sheetq       the queue's one-thread worker (every SQLite call)
 *   sheetseal    the sign-ahead worker of a group-commit batch
 *   sheetcommit  the creation state machine (group commit, drafts,
 *                CompleteDraft): answered only after COMMIT
 *   sheetread    the read jobs (ListSheets, GetSheet, ExportSheet)
 *   api_sheets   the varlink methods, GetStatus's "queue", the kiosk hook
 *
 * and runs the retention timer ([queue] retention_days).
 *
 * After "signer" and "readers" in the module list. Loop thread only.
 */
#ifndef VITALED_SHEETS_H
#define VITALED_SHEETS_H

#include "daemon/core/daemon.h"
#include "daemon/sheets/sheetcommit.h"

/* Largest number of creates in one transaction. */
#define SHEETS_BATCH_MAX SHEETCOMMIT_BATCH_MAX
/* Retention: a purge round deletes at most this many sheets per transaction. */
#define SHEETS_PURGE_CHUNK 1000
#define SHEETS_PURGE_FIRST_MS 10000u
#define SHEETS_PURGE_EVERY_MS 3600000u

/* The high-water mark's lazy write and the read-only queue's retries. */
#define SHEETS_TICK_MS 1000u

/* vitaled --accept-new-queue: open a queue that the high-water mark says
 * was lost or rolled back (storage/queue.h accept_new), and log what was
 * lost at notice level. Call before init. */
void sheets_accept_new_queue(bool accept);

int sheets_init(struct daemon *d);
/* The queue's thread, for the modules after "queue" that work on the
 * queue (the uploader); NULL before init and after fini. Loop thread. */
struct sheetq *sheets_queue(void);
/* Lets the transactions already queued finish and answers their callers,
 * then closes the queue. */
void sheets_fini(struct daemon *d);

#endif
