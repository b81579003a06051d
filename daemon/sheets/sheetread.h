/* The queue's read methods (ListSheets, GetSheet, ExportSheet; see
 * docs/io.vitaled.Terminal.varlink) and what the write side (daemon/sheets/sheets.c)
 * shares with them: the JSON form of a sheet's clear columns, times, and
 * the mapping of queue and signer errors to API errors.
 *
 * Reads are jobs on the queue's thread (daemon/sheets/sheetq.h), behind the
 * commit in flight; their reply is built there and sent from the loop. A
 * signed sheet is shown decoded from its signed bytes (what is stored is
 * what was signed); a draft from its stored JSON.
 *
 * Loop thread, but for the work functions the queue thread runs.
 */
#ifndef VITALED_SHEETREAD_H
#define VITALED_SHEETREAD_H

#include <jansson.h>
#include <stdint.h>

#include "daemon/core/daemon.h"
#include "storage/queue.h"
#include "daemon/sheets/sheetq.h"

/* ListSheets: default and largest page. */
#define SHEETS_LIST_DEFAULT 100
#define SHEETS_LIST_MAX 1000

/* Register the read methods; they use sq until sheetread_stop(). */
int sheetread_register(struct daemon *d, struct sheetq *sq);
void sheetread_stop(void);

/* The SheetMeta object of a queue row (new reference). */
json_t *sheetread_meta_json(const struct queue_meta *m);
/* ISO 8601 UTC with milliseconds, or null for 0. */
json_t *sheetread_iso_ms(int64_t ms);
/* A string, or null for NULL/"". */
json_t *sheetread_opt_str(const char *s);
/* Answer call with the API error for err (a queue errno or SIGNER_E_*):
 * QueueFull, IoError, SheetNotFound, NotADraft, NotLoggedIn,
 * SignerUnavailable, ShuttingDown, else InternalError; reason (may be
 * NULL) is the sentence shown. Returns vl_reply_error's result. */
int sheetread_reply_error(struct vl_call *call, int err, const char *reason, const char *id);

#endif
