/* Module "queue": care sheets and the durable queue in the daemon.
 *
 * At start it opens the queue in the state dir (storage/queue: quick_check,
 * key, migrations) and refuses to start, with the queue's reason, when the
 * file is corrupt, the key is lost while sheets are stored, or the file is
 * not a queue; main.c then never says READY. It adds the "queue" object of
 * GetStatus, a retention timer ([queue] retention_days), and the methods
 * (docs/io.vitaled.Terminal.varlink): CreateSheet, CreateDraft,
 * CompleteDraft, ListSheets, GetSheet, ExportSheet, QueueStats. In kiosk
 * mode ([daemon] mode = kiosk) each patient card read makes a draft
 * (DraftCreated event).
 *
 * A create is answered only after the COMMIT that stored it: "queued"
 * means on disk. Creates are group-committed: those that arrive while a
 * commit is in flight wait (on the loop, costing nothing) and go together
 * into the next queue_put_batch, each signed inside that transaction once
 * its daily sequence number is known (docs/queue.md "Group commit"). The
 * queue itself runs on its own thread (daemon/sheets/sheetq.h), so neither the
 * fsync nor the signatures stop the loop.
 *
 * After "signer" and "readers" in the module list. Loop thread only.
 */
#ifndef VITALED_SHEETS_H
#define VITALED_SHEETS_H

#include "daemon/core/daemon.h"

/* Largest number of creates in one transaction. */
#define SHEETS_BATCH_MAX 128
/* Retention: a purge round deletes at most this many sheets per transaction. */
#define SHEETS_PURGE_CHUNK 1000
#define SHEETS_PURGE_FIRST_MS 10000u
#define SHEETS_PURGE_EVERY_MS 3600000u

int sheets_init(struct daemon *d);
/* Lets the transactions already queued finish and answers their callers,
 * then closes the queue. */
void sheets_fini(struct daemon *d);

#endif
