/* A varlink server (https://varlink.org) on a Unix stream socket.
 *
 * Messages are JSON objects terminated by a NUL byte. Calls on one
 * connection are answered in order: while a call is pending (a deferred
 * reply, or a `more` call that streams replies), later messages from that
 * connection wait in its buffer. Every connection is non-blocking with a
 * bounded input buffer (max_message) and a bounded output buffer
 * (max_output): a client that sends too much, sends garbage, or does not
 * read its replies is disconnected; nobody else waits for it.
 *
 * org.varlink.service (GetInfo, GetInterfaceDescription) is built in.
 * Everything runs on the loop thread.
 */
#ifndef VITALED_VARLINK_H
#define VITALED_VARLINK_H

#include <jansson.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "daemon/core/loop.h"

struct vl_server;
struct vl_call;

/* A rate-limited log line's state (see varlink.c). */
struct vl_ratelog {
	uint64_t last;
	unsigned long suppressed;
};

struct vl_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool control; /* may call methods marked VL_CONTROL */
};

/* A method handler. It must answer with vl_reply*() now, or later (keep the
 * call and set a cancel callback), and return 0. If it returns a negative
 * errno without answering, the server answers <error_prefix>.InternalError
 * {reason}. */
typedef int (*vl_method_fn)(struct vl_call *call, json_t *params, void *arg);
typedef void (*vl_cancel_fn)(struct vl_call *call, void *arg);
/* Decide access for a peer at connect time (sets peer->control). */
typedef void (*vl_access_fn)(struct vl_peer *peer, void *arg);

#define VL_CONTROL 0x1 /* only peers with control access */

struct vl_server_opts {
	const char *path;        /* socket path; an old socket file there is replaced */
	unsigned mode;           /* e.g. 0660 */
	gid_t gid;               /* group of the socket, or (gid_t)-1 to leave it */
	size_t max_message;      /* bytes, NUL included */
	size_t max_output;       /* bytes queued to one client before it is dropped */
	size_t max_output_total; /* to all clients together (0: 32 MiB); over it, the client
	                          * furthest behind is dropped */
	unsigned max_clients;     /* the last max_clients/8 (>= 2) kept for control peers; a
	                          * peer without control holds at most max(4, max_clients/4) */
	/* A connection without a call in progress that sent nothing, or half a
	 * message, for this long is closed; one idle between calls after ten
	 * times this. Calls in progress (streams) are exempt. */
	unsigned idle_timeout_ms;
	const char *vendor, *product, *version, *url;
	const char *error_prefix; /* e.g. "io.vitaled.Terminal" for ProtocolError, ShuttingDown ... */
	vl_access_fn access;
	void *access_arg;
};

/* Listen (or adopt listen_fd >= 0, e.g. from socket activation). Returns 0
 * or a negative errno with a message in err. */
int vl_server_new(struct loop *l, const struct vl_server_opts *o, int listen_fd,
                  struct vl_server **out, char *err, size_t errlen);
/* Close every connection (pending calls get their cancel callback), the
 * listening socket, and unlink the socket path if we created it. */
void vl_server_free(struct vl_server *s);

/* Register an interface (name and description text must outlive the server).
 * A name with capitals (io.vitaled.Terminal, as the varlink spec allows) is
 * also served under its lower-case spelling, for parsers that follow the
 * older lower-case-only grammar: same methods, the description with its
 * interface line renamed, errors named after the spelling the call used. */
int vl_server_add_interface(struct vl_server *s, const char *name, const char *description);
/* Register "interface.Method". flags: VL_CONTROL. */
int vl_server_add_method(struct vl_server *s, const char *name, vl_method_fn fn, void *arg,
                         unsigned flags);

/* Decide access again for every open connection (after a reload changed
 * the lists): a peer that lost control access keeps its connection for
 * reading, but a control call in progress on it (a stream) is ended by
 * closing the connection. Loop thread. */
void vl_server_reaccess(struct vl_server *s);
/* Stop accepting new calls (ShuttingDown); existing streams stay until freed. */
void vl_server_shutdown(struct vl_server *s);
unsigned vl_server_clients(const struct vl_server *s);
/* Bytes of replies waiting for all clients together. */
size_t vl_server_queued_bytes(const struct vl_server *s);

/* Replies. params is stolen (NULL means {}). vl_reply and vl_reply_error end
 * the call (the call pointer is invalid afterwards) and return 0, or -EPIPE
 * when the connection is gone. vl_reply_continues sends {"continues": true}
 * and keeps the call; it needs a call made with "more" (else -EINVAL, nothing
 * sent: answer ExpectedMore or a single reply instead); if the connection
 * dies while sending, the call's cancel callback runs, the call is freed and
 * -EPIPE is returned: the caller must forget the call. */
int vl_reply(struct vl_call *c, json_t *params);
int vl_reply_continues(struct vl_call *c, json_t *params);
int vl_reply_error(struct vl_call *c, const char *error, json_t *params);
/* Shorthand for org.varlink.service.InvalidParameter {parameter}. */
int vl_reply_invalid_param(struct vl_call *c, const char *param);

bool vl_call_more(const struct vl_call *c);
bool vl_call_oneway(const struct vl_call *c);
const char *vl_call_method(const struct vl_call *c);
const struct vl_peer *vl_call_peer(const struct vl_call *c);
/* Called if the client goes away while the call is pending; the call is
 * freed right after it returns. */
void vl_call_set_cancel(struct vl_call *c, vl_cancel_fn fn, void *arg);

/* --- the pure message parser (also the fuzz target's entry) --- */
struct vl_msg {
	char *method;     /* "interface.Method", owned */
	json_t *params;   /* owned, an object ({} when absent) */
	bool more, oneway, upgrade;
};
/* Parse one message (without its NUL). Returns 0, or -EBADMSG with a
 * reason in err (invalid JSON, not an object, bad field types, bad method
 * name). On success free with vl_msg_clear(). */
int vl_msg_parse(const char *buf, size_t len, struct vl_msg *m, char *err, size_t errlen);
void vl_msg_clear(struct vl_msg *m);
/* True when name is "a.b.Method" with varlink's interface/member syntax. */
bool vl_method_name_valid(const char *name);

#endif
