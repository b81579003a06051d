/* The queue's reads (ListSheets, GetSheet, ExportSheet; see
 * docs/io.vitaled.Terminal.varlink) as jobs, and the JSON form of a sheet's
 * clear columns and times that the write side shares.
 *
 * A read is a plain request (struct sheetread_req) run by sheetread_work
 * on the queue's worker (daemon/sheets/sheetq.h), behind the commit in
 * flight. Its result object is built there, on the worker's thread (a
 * thousand rows of JSON are the worker's time, not the loop's), and handed
 * to the loop with the request; the varlink handlers
 * (daemon/sheets/api_sheets.c) read the parameters and send it. A signed
 * sheet is shown decoded from its signed bytes (what is stored is what was
 * signed); a draft from its stored JSON.
 *
 * The JSON helpers: any thread.
 */
#ifndef VITALED_SHEETREAD_H
#define VITALED_SHEETREAD_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/sheet.h"
#include "storage/queue.h"

/* ListSheets: default and largest page. */
#define SHEETS_LIST_DEFAULT 100
#define SHEETS_LIST_MAX 1000

/* PRINT: GET's reply and the signed bytes (for the paper duplicata,
 * daemon/sheets/sheetprint.h); a draft is -EPERM as for EXPORT. */
enum sheetread_kind { SHEETREAD_LIST, SHEETREAD_GET, SHEETREAD_EXPORT, SHEETREAD_PRINT };

struct sheetread_req {
	/* in */
	enum sheetread_kind kind;
	char id[SHEET_ID_LEN + 1];              /* GET, EXPORT, PRINT */
	char request_id[QUEUE_REQUEST_ID_MAX + 1]; /* GET, EXPORT, PRINT (when id is ""), LIST: "" = any */
	unsigned states;                        /* LIST: QUEUE_STATE_BIT mask, 0 = all */
	char from[11], to[11], due_before[11];  /* LIST: YYYY-MM-DD or "" */
	char pract[QUEUE_PRACT_MAX + 1];        /* LIST: "" = any */
	int64_t after;                          /* LIST: cursor */
	size_t limit;                           /* LIST: 1..SHEETS_LIST_MAX */
	void *caller;                           /* the caller's; never read here */
	/* out */
	json_t *reply;   /* the method's reply object (owned by the request) when result is 0 */
	int result;      /* 0, or a queue errno; EXPORT, PRINT of a draft: -EPERM */
	char reason[QUEUE_REASON_MAX];
	uint8_t *cose;   /* PRINT: the signed bytes, malloc'd (the request's owner frees them) */
	size_t cose_len;
};

/* The job (a sheetq_work_fn, arg a struct sheetread_req): fills the out
 * fields. Queue's worker thread. Returns 0 (it never writes). */
int sheetread_work(struct queue *q, void *arg);

/* The SheetMeta object of a queue row (new reference). */
json_t *sheetread_meta_json(const struct queue_meta *m);
/* ISO 8601 UTC with milliseconds, or null for 0. */
json_t *sheetread_iso_ms(int64_t ms);
/* A string, or null for NULL/"". */
json_t *sheetread_opt_str(const char *s);

#endif
