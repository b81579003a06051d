/* The event bus: what happens in the daemon, streamed to API watchers.
 *
 * Any module publishes with events_publish(); every client that called
 * io.vitaled.Terminal.WatchEvents with "more": true gets each event as one
 * reply {"event": {...}} with "continues": true. An event is a flat JSON
 * object: "type" (ReaderAdded, CardInserted, PinRequested ...), "seq" (one
 * counter per daemon run, so a client can tell it missed nothing), "time"
 * (ISO 8601 UTC), then the publisher's fields. The first reply of a watch is
 * {"type": "Watching", "seq": <last seq published>}: once a client has it,
 * it sees every later event.
 *
 * A watcher that does not read its socket is disconnected by the varlink
 * server when its output buffer fills ([api] max_output); nobody else waits
 * for it. Events are never stored: a client that reconnects asks for the
 * current state (ListReaders, GetCard ...) and watches again.
 *
 * Loop thread only. Publishers on other threads hand their event to the
 * loop first (loop_post).
 */
#ifndef VITALED_EVENTS_H
#define VITALED_EVENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/daemon.h"

/* Module "events": registers WatchEvents. After "api", before publishers. */
int events_init(struct daemon *d);
/* Ends every watch with ShuttingDown. */
void events_fini(struct daemon *d);

/* Publish to every watcher. type must be a string literal or outlive the
 * call; fields (stolen, may be NULL) is an object merged into the event. */
void events_publish(const char *type, json_t *fields);
/* The same, where control_fields (stolen, may be NULL) is merged over
 * fields for watchers with control access only: the place for identity
 * data that read-only watchers must not get. */
void events_publish_ex(const char *type, json_t *fields, json_t *control_fields);

/* Watchers now streaming (for status and tests). */
unsigned events_watchers(void);
/* Sequence number of the last event published (0: none yet). */
uint64_t events_last_seq(void);

/* Wall-clock time now as ISO 8601 UTC with milliseconds
 * ("2025-01-31T08:15:02.123Z"); always NUL-terminates. */
void events_time_now(char *out, size_t outlen);

#endif
