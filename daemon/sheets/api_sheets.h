/* The sheets' inputs and outputs on the daemon's side: the varlink methods
 * CreateSheet, CreateDraft, CompleteDraft, ListSheets, GetSheet,
 * ExportSheet and QueueStats (docs/io.vitaled.Terminal.varlink), the
 * "queue" object of GetStatus, and, in kiosk mode ([daemon] mode = kiosk),
 * the card-read hook that makes a draft of each patient card read
 * (DraftCreated event).
 *
 * Each handler reads its parameters, builds a plain request, hands it to
 * the state machine (daemon/sheets/sheetcommit.h) or the queue's worker
 * (daemon/sheets/sheetread.h) and, when the request is finished, sends the
 * reply and publishes the event. The wire format is the interface's; the
 * errors are its names (QueueFull, IoError, InvalidSheet, NoCard,
 * NotLoggedIn, SignerUnavailable, ShuttingDown ...).
 *
 * Loop thread only.
 */
#ifndef VITALED_API_SHEETS_H
#define VITALED_API_SHEETS_H

#include "daemon/core/daemon.h"
#include "daemon/sheets/sheetcommit.h"
#include "daemon/sheets/sheetq.h"

/* Register the methods and the status provider, set the read hook; they
 * use sq and sc until api_sheets_stop(). 0 or a negative errno. */
int api_sheets_start(struct daemon *d, struct sheetq *sq, struct sheetcommit *sc);
/* Remove the read hook; from now on the methods answer ShuttingDown and
 * the status says the queue is closed. Requests in flight are still
 * answered when they finish. */
void api_sheets_stop(void);

/* One hook called on the loop thread after each sheet is queued (the
 * uploader's wake-up); fn NULL removes it. Loop thread. */
void api_sheets_set_queued_hook(void (*fn)(void *arg), void *arg);
/* One hook called on the loop thread after each create that wrote
 * (sheets, drafts, completions): the sheets module's tick. Loop thread. */
void api_sheets_set_commit_hook(void (*fn)(void *arg), void *arg);

#endif
