/* Module "upload": care sheets to the insurer (docs/insurer-api.md).
 *
 * It runs the state machine of daemon/upload/uploader.h: forms batches of
 * the queued sheets of one signing certificate on the queue's thread
 * (daemon/upload/batches.h), posts them over HTTPS with libcurl's multi
 * interface on the event loop (daemon/upload/http.h), applies the answer
 * (per-sheet results in one transaction, the same bytes again after a
 * backoff, splits, stops), then asks for the insurer's returns. It wakes
 * when a sheet is queued (after [insurer] gather_ms), every
 * upload_interval_s, on the Upload method, and at once when an address or
 * route appears (rtnetlink on the loop); while offline nothing runs but
 * the backoff's timer and those wake-ups.
 *
 * GetStatus "uploader" (state, reason, last_success, next_attempt,
 * waiting, oldest, next_due, rejected, no_cert, due_soon, overdue); events
 * UploadStarted, UploadFinished, SheetAccepted, SheetRejected, SheetPaid,
 * SheetRefused, DueSoon. After "queue" in the module list. Loop thread only.
 */
#ifndef VITALED_UPLOAD_UPLOAD_H
#define VITALED_UPLOAD_UPLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/core/daemon.h"

int upload_init(struct daemon *d);
void upload_fini(struct daemon *d);

/* Progress of the current (or last) round, for the Upload method. */
struct upload_progress {
	const char *state;   /* uploader_state_name */
	const char *reason;  /* "" when none */
	bool running;        /* a round is in progress */
	uint64_t total;      /* sheets waiting when the round began */
	uint64_t sent;       /* sheets answered for in this round */
	uint64_t accepted, duplicate, rejected;
	uint64_t failures;   /* failed exchanges in this round */
	uint64_t elapsed_ms;
};
void upload_progress(struct upload_progress *p);
/* Ask for a round now. -ENOTCONN when uploads are disabled. */
int upload_request(void);
/* Called after every change of progress, and once with done true when the
 * round ends (or stops). At most 16; 0 or -ENOSPC. */
typedef void (*upload_watch_fn)(const struct upload_progress *p, bool done, void *arg);
int upload_watch(upload_watch_fn fn, void *arg);
void upload_unwatch(upload_watch_fn fn, void *arg);

/* Module "upload-api" (api_upload.c): the Upload method; after "upload".
 * Its fini ends every Upload stream still open. */
int api_upload_init(struct daemon *d);
void api_upload_fini(struct daemon *d);

#endif
