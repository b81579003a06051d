/* The event bus and the WatchEvents method; see events.h.
 *
 * Watchers live in a list. Sending to one may kill its connection (output
 * buffer full, peer gone); the varlink server then calls our cancel callback
 * from inside vl_reply_continues, which frees the call. So while a publish
 * walks the list, cancelled watchers are only marked, and the walk frees
 * them after it.
 */
#include "daemon/core/events.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

struct watcher {
	struct vl_call *call; /* NULL once cancelled */
	struct watcher *next;
};

static struct {
	struct watcher *list;
	unsigned count;
	uint64_t seq;
	bool publishing;
	bool ready;
} ev;

void
events_time_now(char *out, size_t outlen)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         ts.tv_nsec / 1000000L);
}

unsigned
events_watchers(void)
{
	return ev.count;
}

uint64_t
events_last_seq(void)
{
	return ev.seq;
}

static void
sweep(void)
{
	struct watcher **pp = &ev.list;
	while (*pp) {
		struct watcher *w = *pp;
		if (!w->call) {
			*pp = w->next;
			free(w);
			ev.count--;
		} else {
			pp = &w->next;
		}
	}
}

static json_t *
event_new(const char *type, uint64_t seq)
{
	char t[40];
	events_time_now(t, sizeof(t));
	return json_pack("{s:s,s:I,s:s}", "type", type, "seq", (json_int_t)seq, "time", t);
}

/* Add a publisher's fields to an event. type, seq and time are the bus's
 * own: a field of the same name never replaces them (watchers rely on seq
 * to notice a lost event). */
static void
merge_fields(json_t *event, json_t *fields)
{
	const char *key;
	json_t *v;
	json_object_foreach(fields, key, v) {
		if (strcmp(key, "type") && strcmp(key, "seq") && strcmp(key, "time"))
			json_object_set(event, key, v);
	}
}

void
events_publish_ex(const char *type, json_t *fields, json_t *control_fields)
{
	json_t *pub = NULL, *ctl = NULL;
	if (!ev.ready)
		goto out;
	ev.seq++;
	pub = event_new(type, ev.seq);
	if (!pub)
		goto out;
	if (fields)
		merge_fields(pub, fields);
	if (control_fields) {
		ctl = json_deep_copy(pub);
		if (!ctl)
			goto out;
		merge_fields(ctl, control_fields);
	}
	log_debug("event %s #%llu to %u watcher(s)", type, (unsigned long long)ev.seq, ev.count);
	ev.publishing = true;
	for (struct watcher *w = ev.list; w; w = w->next) {
		if (!w->call)
			continue;
		/* access is read now, not at subscription: a Reload that takes a
		 * user out of the control lists filters its stream at once */
		json_t *e = (vl_call_peer(w->call)->control && ctl) ? ctl : pub;
		/* -EPIPE: the connection died; our cancel callback marked w */
		vl_reply_continues(w->call, json_pack("{s:O}", "event", e));
	}
	ev.publishing = false;
	sweep();
out:
	json_decref(pub);
	json_decref(ctl);
	json_decref(fields);
	json_decref(control_fields);
}

void
events_publish(const char *type, json_t *fields)
{
	events_publish_ex(type, fields, NULL);
}

static void
watch_cancel(struct vl_call *call, void *arg)
{
	struct watcher *w = arg;
	(void)call;
	w->call = NULL;
	if (!ev.publishing)
		sweep();
}

static int
m_watch_events(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	if (!vl_call_more(call))
		return vl_reply_error(call, "org.varlink.service.ExpectedMore", NULL);
	struct watcher *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	json_t *first = event_new("Watching", ev.seq);
	if (!first) {
		free(w);
		return -ENOMEM;
	}
	w->call = call;
	w->next = ev.list;
	ev.list = w;
	ev.count++;
	vl_call_set_cancel(call, watch_cancel, w);
	vl_reply_continues(call, json_pack("{s:o}", "event", first));
	return 0;
}

int
events_init(struct daemon *d)
{
	memset(&ev, 0, sizeof(ev));
	int r = vl_server_add_method(d->api, TERMINAL_IFACE ".WatchEvents", m_watch_events, NULL, 0);
	if (r < 0) {
		log_err("events: cannot register WatchEvents: %s", strerror(-r));
		return r;
	}
	ev.ready = true;
	return 0;
}

void
events_fini(struct daemon *d)
{
	(void)d;
	ev.ready = false;
	ev.publishing = true;
	for (struct watcher *w = ev.list; w; w = w->next) {
		struct vl_call *c = w->call;
		if (!c)
			continue;
		w->call = NULL;
		vl_call_set_cancel(c, NULL, NULL);
		vl_reply_error(c, TERMINAL_IFACE ".ShuttingDown", NULL);
	}
	ev.publishing = false;
	sweep();
}
