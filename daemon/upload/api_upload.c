/* The Upload method (docs/io.vitaled.Terminal.varlink): apart from the
 * machinery in upload.c. Without "more" it asks for a round and answers at
 * once; with "more" it streams the round's progress and ends with the
 * round. */
#include <errno.h>
#include <stdlib.h>

#include "daemon/core/daemon.h"
#include "daemon/core/varlink.h"
#include "daemon/upload/upload.h"

struct waiter {
	struct vl_call *call;
	struct waiter *next;
};

static struct waiter *waiters;
static bool watching;

static json_t *
progress_json(const struct upload_progress *p, bool done)
{
	return json_pack("{s:s,s:s?,s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "state", p->state,
	                 "reason", p->reason[0] ? p->reason : NULL, "running", p->running, "done",
	                 done, "total", (json_int_t)p->total, "sent", (json_int_t)p->sent,
	                 "accepted", (json_int_t)p->accepted, "duplicate",
	                 (json_int_t)p->duplicate, "rejected", (json_int_t)p->rejected, "failures",
	                 (json_int_t)p->failures, "elapsed_ms", (json_int_t)p->elapsed_ms);
}

static void
on_progress(const struct upload_progress *p, bool done, void *arg)
{
	(void)arg;
	struct waiter *w = waiters;
	if (done)
		waiters = NULL;
	while (w) {
		struct waiter *next = w->next;
		if (done) {
			vl_call_set_cancel(w->call, NULL, NULL);
			vl_reply(w->call, progress_json(p, true));
			free(w);
		} else {
			vl_reply_continues(w->call, progress_json(p, false));
		}
		w = next;
	}
}

static void
waiter_cancel(struct vl_call *call, void *arg)
{
	struct waiter *me = arg;
	(void)call;
	for (struct waiter **pp = &waiters; *pp; pp = &(*pp)->next) {
		if (*pp == me) {
			*pp = me->next;
			free(me);
			return;
		}
	}
}

static int
m_upload(struct vl_call *call, json_t *params, void *arg)
{
	struct upload_progress p;
	(void)params;
	(void)arg;
	if (upload_request() < 0)
		return vl_reply_error(call, VL_ERR("UploadDisabled"),
		                      json_pack("{s:s}", "reason", "no insurer configured"));
	upload_progress(&p);
	if (!vl_call_more(call))
		return vl_reply(call, progress_json(&p, false));
	struct waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->call = call;
	w->next = waiters;
	waiters = w;
	vl_call_set_cancel(call, waiter_cancel, w);
	/* a round already running shows where it is; a new one speaks when
	 * it starts (the last round's figures would only mislead) */
	if (p.running)
		vl_reply_continues(call, progress_json(&p, false)); /* -EPIPE: cancel ran */
	return 0;
}

int
api_upload_init(struct daemon *d)
{
	int r = vl_server_add_method(d->api, TERMINAL_IFACE ".Upload", m_upload, NULL, VL_CONTROL);
	if (r < 0)
		return r;
	if (!watching && (r = upload_watch(on_progress, NULL)) == 0)
		watching = true;
	return r;
}

void
api_upload_fini(struct daemon *d)
{
	(void)d;
	struct upload_progress p;
	upload_progress(&p);
	on_progress(&p, true, NULL);
	if (watching)
		upload_unwatch(on_progress, NULL);
	watching = false;
}
