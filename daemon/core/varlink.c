/* The varlink server; see varlink.h.
 *
 * Lifetimes: a connection that fails is only marked dead while we may be
 * inside one of its callbacks; a zero-delay reaper timer frees dead
 * connections from a clean stack. A call belongs to its connection until it
 * is answered; if the connection dies first, the handler's cancel callback
 * tells it to forget the call.
 *
 * Input bytes are wiped as soon as a message is parsed, and the whole input
 * buffer when a connection goes: a SubmitPin message carries a PIN, and it
 * must not linger in freed heap memory (see lib/secmem.h).
 */
#include "daemon/core/varlink.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"

#define SVC "org.varlink.service"

struct method {
	char *name;
	vl_method_fn fn;
	void *arg;
	unsigned flags;
};

/* An interface; alias_of: the canonical name this lower-case alias stands
 * for (vl_server_add_interface), its name and description then owned. */
struct iface {
	const char *name;
	const char *desc;
	const char *alias_of;
	char *owned_name, *owned_desc;
};

struct vl_conn;

struct vl_call {
	struct vl_conn *conn;
	char *method;
	bool more, oneway;
	vl_cancel_fn cancel;
	void *cancel_arg;
	bool replying; /* inside send_reply: a failed send must not free us */
	const struct iface *alias; /* called through this alias: errors in its name */
};

struct vl_conn {
	struct vl_server *srv;
	int fd;
	struct vl_peer peer;
	char *in;
	size_t inlen, incap;
	char *out;
	size_t outlen, outoff, outcap;
	struct vl_call *pending;
	uint64_t idle_timer;
	uint64_t resume_timer;
	bool spoke;            /* a complete message was received */
	uint64_t idle_delay;   /* the delay idle_timer was set with */
	bool dead;
	bool close_after_flush;
	bool in_dispatch;
	struct vl_conn *next, *prev;
};

struct vl_server {
	struct loop *loop;
	struct vl_server_opts o;
	char *path;
	bool unlink_path;
	int lfd;
	struct method *methods;
	size_t nmethods;
	struct iface ifaces[16];
	size_t nifaces;
	struct vl_conn *conns;
	unsigned nconns;
	uint64_t reaper;
	uint64_t accept_pause;   /* timer while accept is paused (EMFILE) */
	int spare_fd;            /* a descriptor kept to free under EMFILE */
	size_t out_total;        /* bytes queued to every client together */
	struct vl_ratelog refuse_log, emfile_log, deny_log;
	bool shutting_down;
	char err_protocol[128], err_shutdown[128], err_internal[128];
};

/* A log line at most every VL_LOG_INTERVAL_MS per kind; the lines held back
 * are counted and the count goes out with the next one, so a flood of
 * refusals costs a few lines, not millions. */
#define VL_LOG_INTERVAL_MS 10000u

static bool
ratelog_take(struct vl_ratelog *r, unsigned long *suppressed)
{
	uint64_t now = loop_now_ms();
	if (r->last && now - r->last < VL_LOG_INTERVAL_MS) {
		r->suppressed++;
		return false;
	}
	r->last = now ? now : 1;
	*suppressed = r->suppressed;
	r->suppressed = 0;
	return true;
}

static void conn_kill(struct vl_conn *c);
static void accept_resume(struct loop *l, void *arg);

/* Bytes queued to all clients together: max_output for one client, and at
 * most VL_OUT_BUDGET for everyone (the worst case stays in tens of MiB
 * however many watchers stop reading). */
#define VL_OUT_BUDGET ((size_t)32 << 20)

static size_t
out_budget(const struct vl_server *s)
{
	size_t b = s->o.max_output_total ? s->o.max_output_total : VL_OUT_BUDGET;
	return s->o.max_output > b ? s->o.max_output : b;
}
static void conn_process(struct vl_conn *c);
static void conn_update_events(struct vl_conn *c);

/* ------------------------------------------------------------------ */
/* the message parser */

bool
vl_method_name_valid(const char *name)
{
	/* interface: reverse-domain, at least two dot-separated parts, each
	 * starting with a letter; member: starts with an upper-case letter */
	const char *dot = strrchr(name, '.');
	if (!dot || dot == name || !dot[1])
		return false;
	size_t parts = 0;
	const char *p = name;
	while (p < dot) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
			return false;
		while (p < dot && *p != '.') {
			char ch = *p;
			if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			      (ch >= '0' && ch <= '9') || ch == '-'))
				return false;
			p++;
		}
		parts++;
		if (p < dot)
			p++;
	}
	if (parts < 2)
		return false;
	p = dot + 1;
	if (!(*p >= 'A' && *p <= 'Z'))
		return false;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			return false;
	return (size_t)(dot - name) < 256 && strlen(dot + 1) < 256;
}

int
vl_msg_parse(const char *buf, size_t len, struct vl_msg *m, char *err, size_t errlen)
{
	json_error_t jerr;
	memset(m, 0, sizeof(*m));
	if (memchr(buf, '\0', len)) {
		snprintf(err, errlen, "NUL byte inside a message");
		return -EBADMSG;
	}
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		/* jansson's text quotes the token it stopped at ("near '\"9876'"):
		 * that may be a PIN, so only its own words before " near " go out */
		char *near = strstr(jerr.text, " near ");
		int tl = near ? (int)(near - jerr.text) : (int)strlen(jerr.text);
		snprintf(err, errlen, "invalid JSON at byte %d: %.*s", jerr.position, tl, jerr.text);
		return -EBADMSG;
	}
	if (!json_is_object(root)) {
		snprintf(err, errlen, "message is not a JSON object");
		goto bad;
	}
	json_t *method = json_object_get(root, "method");
	if (!json_is_string(method)) {
		snprintf(err, errlen, "'method' missing or not a string");
		goto bad;
	}
	if (!vl_method_name_valid(json_string_value(method))) {
		snprintf(err, errlen, "'method' is not a valid varlink method name");
		goto bad;
	}
	json_t *params = json_object_get(root, "parameters");
	if (params && !json_is_object(params) && !json_is_null(params)) {
		snprintf(err, errlen, "'parameters' is not an object");
		goto bad;
	}
	static const char *const flags[] = { "more", "oneway", "upgrade" };
	bool fv[3] = { false, false, false };
	for (int i = 0; i < 3; i++) {
		json_t *f = json_object_get(root, flags[i]);
		if (f && !json_is_boolean(f) && !json_is_null(f)) {
			snprintf(err, errlen, "'%s' is not a boolean", flags[i]);
			goto bad;
		}
		fv[i] = f && json_is_true(f);
	}
	/* Any other member (a vendor's extension object, a field a later
	 * version of the protocol adds) is ignored, as the varlink spec asks
	 * of a service: only the members above have a meaning here. */
	m->method = strdup(json_string_value(method));
	if (!m->method) {
		snprintf(err, errlen, "out of memory");
		goto bad;
	}
	m->params = (params && json_is_object(params)) ? json_incref(params) : json_object();
	m->more = fv[0];
	m->oneway = fv[1];
	m->upgrade = fv[2];
	json_decref(root);
	return 0;
bad:
	json_decref(root);
	return -EBADMSG;
}

void
vl_msg_clear(struct vl_msg *m)
{
	free(m->method);
	json_decref(m->params);
	memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------ */
/* output */

static int
conn_flush(struct vl_conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t w = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c->outoff += (size_t)w;
		c->srv->out_total -= (size_t)w;
	}
	if (c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	return 0;
}

static int
conn_send(struct vl_conn *c, json_t *msg)
{
	int ret = 0;
	if (c->dead) {
		json_decref(msg);
		return -EPIPE;
	}
	char *s = json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(msg);
	if (!s)
		return -ENOMEM;
	size_t n = strlen(s) + 1; /* with the NUL terminator */
	if (c->outlen - c->outoff + n > c->srv->o.max_output) {
		log_warn("api: client pid %d does not read its replies; disconnecting",
		         (int)c->peer.pid);
		free(s);
		conn_kill(c);
		return -EPIPE;
	}
	/* all clients together: over the budget, the one furthest behind goes */
	while (c->srv->out_total + n > out_budget(c->srv)) {
		struct vl_conn *worst = NULL;
		for (struct vl_conn *o = c->srv->conns; o; o = o->next)
			if (!o->dead && (!worst || o->outlen - o->outoff > worst->outlen - worst->outoff))
				worst = o;
		if (!worst || worst->outlen == worst->outoff)
			break;   /* nothing queued anywhere: a single reply larger than the budget */
		log_warn("api: replies waiting for all clients exceed %zu bytes; disconnecting "
		         "client pid %d, the furthest behind", out_budget(c->srv), (int)worst->peer.pid);
		conn_kill(worst);
		if (worst == c) {
			free(s);
			return -EPIPE;
		}
	}
	if (c->outoff && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + n > c->outcap) {
		/* compact first, grow only if needed */
		if (c->outoff) {
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		if (c->outlen + n > c->outcap) {
			size_t nc = c->outcap ? c->outcap : 4096;
			while (nc < c->outlen + n)
				nc *= 2;
			char *nb = realloc(c->out, nc);
			if (!nb) {
				free(s);
				conn_kill(c);
				return -ENOMEM;
			}
			c->out = nb;
			c->outcap = nc;
		}
	}
	memcpy(c->out + c->outlen, s, n);
	c->outlen += n;
	c->srv->out_total += n;
	free(s);
	ret = conn_flush(c);
	if (ret < 0) {
		conn_kill(c);
		return -EPIPE;
	}
	conn_update_events(c);
	return 0;
}

static void
call_free(struct vl_call *call)
{
	if (!call)
		return;
	free(call->method);
	free(call);
}

/* End the call: detach it from its connection and resume buffered input. */
static void
call_end(struct vl_call *call)
{
	struct vl_conn *c = call->conn;
	if (c && c->pending == call) {
		c->pending = NULL;
		if (!c->dead && !c->in_dispatch)
			conn_process(c);
	}
	call_free(call);
}

static int
send_reply(struct vl_call *call, json_t *params, const char *error, bool continues)
{
	int r = 0;
	if (call->oneway) {
		json_decref(params);
		return 0;
	}
	json_t *msg = json_object();
	json_object_set_new(msg, "parameters", params ? params : json_object());
	size_t cl = call->alias ? strlen(call->alias->alias_of) : 0;
	if (error && call->alias && !strncmp(error, call->alias->alias_of, cl) && error[cl] == '.')
		json_object_set_new(msg, "error", json_pack("s+", call->alias->name, error + cl));
	else if (error)
		json_object_set_new(msg, "error", json_string(error));
	if (continues)
		json_object_set_new(msg, "continues", json_true());
	if (call->conn) {
		call->replying = true;
		r = conn_send(call->conn, msg);
		call->replying = false;
	} else {
		json_decref(msg);
		r = -EPIPE;
	}
	return r;
}

int
vl_reply(struct vl_call *call, json_t *params)
{
	int r = send_reply(call, params, NULL, false);
	call_end(call);
	return r;
}

int
vl_reply_continues(struct vl_call *call, json_t *params)
{
	if (!call->more) {
		json_decref(params);
		return -EINVAL;
	}
	int r = send_reply(call, params, NULL, true);
	if (!call->conn) {
		/* the connection died under this reply: end the call here, so
		 * the handler hears it through its cancel callback as usual */
		if (call->cancel)
			call->cancel(call, call->cancel_arg);
		call_free(call);
		return -EPIPE;
	}
	return r;
}

int
vl_reply_error(struct vl_call *call, const char *error, json_t *params)
{
	int r = send_reply(call, params, error, false); /* nothing for a oneway call */
	call_end(call);
	return r;
}

int
vl_reply_invalid_param(struct vl_call *call, const char *param)
{
	return vl_reply_error(call, SVC ".InvalidParameter", json_pack("{s:s}", "parameter", param));
}

bool vl_call_more(const struct vl_call *c) { return c->more; }
bool vl_call_oneway(const struct vl_call *c) { return c->oneway; }
const char *vl_call_method(const struct vl_call *c) { return c->method; }

const struct vl_peer *
vl_call_peer(const struct vl_call *c)
{
	static const struct vl_peer gone = { 0, (uid_t)-1, (gid_t)-1, false };
	return c->conn ? &c->conn->peer : &gone;
}

void
vl_call_set_cancel(struct vl_call *c, vl_cancel_fn fn, void *arg)
{
	c->cancel = fn;
	c->cancel_arg = arg;
}

/* ------------------------------------------------------------------ */
/* built-in org.varlink.service */

static int
svc_get_info(struct vl_call *call, json_t *params, void *arg)
{
	struct vl_server *s = arg;
	json_t *ifs = json_array();
	json_array_append_new(ifs, json_string(SVC));
	for (size_t i = 0; i < s->nifaces; i++)
		json_array_append_new(ifs, json_string(s->ifaces[i].name));
	return vl_reply(call, json_pack("{s:s,s:s,s:s,s:s,s:o}", "vendor", s->o.vendor, "product",
	                                s->o.product, "version", s->o.version, "url", s->o.url,
	                                "interfaces", ifs));
}

static const char svc_description[] =
	"# The Varlink Service Interface is provided by every varlink service.\n"
	"interface org.varlink.service\n\n"
	"method GetInfo() -> (\n  vendor: string,\n  product: string,\n  version: string,\n"
	"  url: string,\n  interfaces: []string\n)\n\n"
	"method GetInterfaceDescription(interface: string) -> (description: string)\n\n"
	"error InterfaceNotFound (interface: string)\n"
	"error MethodNotFound (method: string)\n"
	"error MethodNotImplemented (method: string)\n"
	"error InvalidParameter (parameter: string)\n"
	"error PermissionDenied ()\n"
	"error ExpectedMore ()\n";

static int
svc_get_description(struct vl_call *call, json_t *params, void *arg)
{
	struct vl_server *s = arg;
	json_t *jn = json_object_get(params, "interface");
	if (!json_is_string(jn))
		return vl_reply_invalid_param(call, "interface");
	const char *name = json_string_value(jn);
	if (!strcmp(name, SVC))
		return vl_reply(call, json_pack("{s:s}", "description", svc_description));
	for (size_t i = 0; i < s->nifaces; i++)
		if (!strcmp(s->ifaces[i].name, name))
			return vl_reply(call, json_pack("{s:s}", "description", s->ifaces[i].desc));
	return vl_reply_error(call, SVC ".InterfaceNotFound", json_pack("{s:s}", "interface", name));
}

/* ------------------------------------------------------------------ */
/* dispatch */

static void
protocol_error(struct vl_conn *c, const char *reason)
{
	log_info("api: client pid %d: %s; closing", (int)c->peer.pid, reason);
	json_t *msg = json_pack("{s:s,s:{s:s}}", "error", c->srv->err_protocol, "parameters",
	                        "reason", reason);
	if (c->in)
		explicit_bzero(c->in, c->inlen);
	c->inlen = 0;
	conn_send(c, msg);
	c->close_after_flush = true;
	if (!c->dead && c->outlen == 0)
		conn_kill(c);
	else
		conn_update_events(c);
}

static const struct method *
find_method(struct vl_server *s, const char *name)
{
	for (size_t i = 0; i < s->nmethods; i++)
		if (!strcmp(s->methods[i].name, name))
			return &s->methods[i];
	return NULL;
}

static bool
iface_known(struct vl_server *s, const char *method)
{
	const char *dot = strrchr(method, '.');
	size_t n = (size_t)(dot - method);
	if (n == strlen(SVC) && !strncmp(method, SVC, n))
		return true;
	for (size_t i = 0; i < s->nifaces; i++)
		if (strlen(s->ifaces[i].name) == n && !strncmp(s->ifaces[i].name, method, n))
			return true;
	return false;
}

/* A call through a lower-case alias runs as the canonical interface's. */
static int
resolve_alias(struct vl_server *s, struct vl_call *call)
{
	const char *dot = strrchr(call->method, '.');
	size_t n = (size_t)(dot - call->method);
	for (size_t i = 0; i < s->nifaces; i++) {
		const struct iface *f = &s->ifaces[i];
		if (f->alias_of && strlen(f->name) == n && !strncmp(f->name, call->method, n)) {
			char *m = NULL;
			if (asprintf(&m, "%s%s", f->alias_of, dot) < 0)
				return -ENOMEM;
			free(call->method);
			call->method = m;
			call->alias = f;
			return 0;
		}
	}
	return 0;
}

static void
dispatch(struct vl_conn *c, const char *buf, size_t len)
{
	struct vl_server *s = c->srv;
	struct vl_msg m;
	char err[200];

	if (vl_msg_parse(buf, len, &m, err, sizeof(err)) < 0) {
		protocol_error(c, err);
		return;
	}
	struct vl_call *call = calloc(1, sizeof(*call));
	if (!call) {
		vl_msg_clear(&m);
		conn_kill(c);
		return;
	}
	call->conn = c;
	call->method = m.method;
	m.method = NULL;
	if (resolve_alias(s, call) < 0) {
		vl_msg_clear(&m);
		call_free(call);
		conn_kill(c);
		return;
	}
	/* oneway: the client wants no reply at all, not even an error or the
	 * replies of a stream (the varlink spec: "the service must not send a
	 * reply"); it wins over more. The call still runs. */
	call->oneway = m.oneway;
	call->more = m.more && !m.oneway;
	c->pending = call;

	const struct method *meth = find_method(s, call->method);
	if (m.upgrade) {
		vl_reply_error(call, SVC ".MethodNotImplemented",
		               json_pack("{s:s}", "method", call->method));
	} else if (!meth) {
		if (!iface_known(s, call->method)) {
			char iface[300];
			snprintf(iface, sizeof(iface), "%.*s",
			         (int)(strrchr(call->method, '.') - call->method), call->method);
			vl_reply_error(call, SVC ".InterfaceNotFound", json_pack("{s:s}", "interface", iface));
		} else {
			vl_reply_error(call, SVC ".MethodNotFound", json_pack("{s:s}", "method", call->method));
		}
	} else if (s->shutting_down) {
		vl_reply_error(call, s->err_shutdown, NULL);
	} else if ((meth->flags & VL_CONTROL) && !c->peer.control) {
		unsigned long held;
		if (ratelog_take(&s->deny_log, &held))
			log_notice("api: pid %d uid %u denied %s (%lu denials not logged in the last %u s)",
			           (int)c->peer.pid, (unsigned)c->peer.uid, call->method, held,
			           VL_LOG_INTERVAL_MS / 1000u);
		/* the standard error (org.varlink.service declares it without
		 * parameters): generic clients know it; the log says which method */
		vl_reply_error(call, SVC ".PermissionDenied", NULL);
	} else {
		int r = meth->fn(call, m.params, meth->arg);
		if (r < 0 && c->pending == call) {
			log_err("api: %s failed: %s", call->method, strerror(-r));
			vl_reply_error(call, s->err_internal, json_pack("{s:s}", "reason", strerror(-r)));
		}
	}
	vl_msg_clear(&m);
}

/* How long a connection may stay without a call in progress: a half-sent
 * message or a connection that never sent one gets idle_timeout; one that
 * has made calls and sits between them gets VL_KEEPALIVE_FACTOR times that.
 * A call in progress (a stream of events included) has no idle timer: a
 * watcher that stops reading is dropped by the output budgets instead. */
#define VL_KEEPALIVE_FACTOR 10u

static uint64_t
idle_delay(const struct vl_conn *c)
{
	uint64_t t = c->srv->o.idle_timeout_ms;
	return (c->inlen > 0 || !c->spoke) ? t : t * VL_KEEPALIVE_FACTOR;
}

static void
idle_timeout_cb(struct loop *l, void *arg)
{
	struct vl_conn *c = arg;
	c->idle_timer = 0;
	if (c->pending || c->dead)
		return;
	if (c->inlen > 0)
		protocol_error(c, "incomplete message timed out");
	else if (!c->spoke)
		protocol_error(c, "no request before the idle timeout");
	else {
		log_debug("api: client pid %d idle; closing", (int)c->peer.pid);
		conn_kill(c);
	}
}

static void
resume_cb(struct loop *l, void *arg)
{
	struct vl_conn *c = arg;
	c->resume_timer = 0;
	conn_process(c);
}

/* Handle every complete message in the input buffer, one call at a time. */
static void
conn_process(struct vl_conn *c)
{
	if (c->dead)
		return;
	c->in_dispatch = true;
	while (!c->dead && !c->pending && !c->close_after_flush && c->inlen > 0) {
		char *nul = memchr(c->in, '\0', c->inlen);
		if (!nul)
			break;
		size_t mlen = (size_t)(nul - c->in);
		c->spoke = true;
		if (c->idle_timer) {
			loop_timer_cancel(c->srv->loop, c->idle_timer);
			c->idle_timer = 0;
		}
		dispatch(c, c->in, mlen);
		if (c->dead || c->close_after_flush)
			break;
		memmove(c->in, nul + 1, c->inlen - mlen - 1);
		c->inlen -= mlen + 1;
		/* a message may carry a PIN: wipe the bytes it left behind */
		explicit_bzero(c->in + c->inlen, mlen + 1);
	}
	c->in_dispatch = false;
	if (c->dead)
		return;
	/* a call answered from inside its own handler leaves pending == NULL
	 * with input possibly waiting: go round again from a clean stack */
	if (!c->pending && !c->close_after_flush && c->inlen && memchr(c->in, '\0', c->inlen) &&
	    !c->resume_timer)
		c->resume_timer = loop_timer_add(c->srv->loop, 0, resume_cb, c);
	uint64_t want = idle_delay(c);
	if (c->idle_timer && !c->pending && want != c->idle_delay) {
		/* half a message arrived on a connection idle between calls: the
		 * short timeout applies from now */
		loop_timer_cancel(c->srv->loop, c->idle_timer);
		c->idle_timer = 0;
	}
	if (!c->pending && !c->idle_timer && !c->close_after_flush) {
		c->idle_timer = loop_timer_add(c->srv->loop, want, idle_timeout_cb, c);
		c->idle_delay = want;
	} else if (c->pending && c->idle_timer) {
		loop_timer_cancel(c->srv->loop, c->idle_timer);
		c->idle_timer = 0;
	}
	conn_update_events(c);
}

static void
conn_update_events(struct vl_conn *c)
{
	if (c->dead)
		return;
	short ev = 0;
	/* read while we can use the bytes: not while a call is pending and the
	 * buffer is full, never after a protocol error */
	if (!c->close_after_flush && (!c->pending || c->inlen < c->srv->o.max_message))
		ev |= POLLIN;
	if (c->outlen > c->outoff)
		ev |= POLLOUT;
	loop_mod_fd(c->srv->loop, c->fd, ev);
}

static void
conn_io(struct loop *l, int fd, short revents, void *arg)
{
	struct vl_conn *c = arg;
	if (c->dead)
		return;
	if (revents & POLLOUT) {
		if (conn_flush(c) < 0) {
			conn_kill(c);
			return;
		}
		if (c->close_after_flush && c->outlen == 0) {
			conn_kill(c);
			return;
		}
	}
	if (revents & POLLIN) {
		size_t room = c->srv->o.max_message - c->inlen;
		if (room == 0) {
			if (!c->pending) {
				protocol_error(c, "message too large");
				return;
			}
		} else {
			if (c->incap < c->srv->o.max_message) {
				size_t nc = c->incap ? c->incap : 4096;
				while (nc < c->inlen + room && nc < c->srv->o.max_message)
					nc *= 2;
				if (nc > c->srv->o.max_message)
					nc = c->srv->o.max_message;
				if (nc > c->incap) {
					char *nb = realloc(c->in, nc);
					if (!nb) {
						conn_kill(c);
						return;
					}
					c->in = nb;
					c->incap = nc;
				}
			}
			if (room > c->incap - c->inlen)
				room = c->incap - c->inlen;
			ssize_t r = recv(fd, c->in + c->inlen, room, 0);
			if (r == 0) {
				conn_kill(c);
				return;
			}
			if (r < 0) {
				if (errno != EAGAIN && errno != EINTR)
					conn_kill(c);
				return;
			}
			c->inlen += (size_t)r;
			if (c->inlen == c->srv->o.max_message && !memchr(c->in, '\0', c->inlen) &&
			    !c->pending) {
				protocol_error(c, "message too large");
				return;
			}
			conn_process(c);
			return;
		}
	}
	if ((revents & (POLLHUP | POLLERR | POLLNVAL)) && !(revents & POLLIN))
		conn_kill(c);
}

static void
reaper_cb(struct loop *l, void *arg)
{
	struct vl_server *s = arg;
	s->reaper = 0;
	struct vl_conn *c = s->conns;
	while (c) {
		struct vl_conn *n = c->next;
		if (c->dead) {
			if (c->prev)
				c->prev->next = c->next;
			else
				s->conns = c->next;
			if (c->next)
				c->next->prev = c->prev;
			s->nconns--;
			if (c->in)
				explicit_bzero(c->in, c->incap); /* unread input may hold a PIN */
			free(c->in);
			free(c->out);
			free(c);
			if (s->accept_pause) {
				loop_timer_cancel(l, s->accept_pause);
				accept_resume(l, s);
			}
		}
		c = n;
	}
}

/* Mark dead, detach from the loop, cancel the pending call; memory goes later. */
static void
conn_kill(struct vl_conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	c->srv->out_total -= c->outlen - c->outoff;
	c->outlen = c->outoff = 0;
	loop_del_fd(c->srv->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	if (c->idle_timer)
		loop_timer_cancel(c->srv->loop, c->idle_timer);
	if (c->resume_timer)
		loop_timer_cancel(c->srv->loop, c->resume_timer);
	c->idle_timer = c->resume_timer = 0;
	struct vl_call *call = c->pending;
	c->pending = NULL;
	if (call) {
		call->conn = NULL;
		/* a call that is sending its own reply is ended by that reply */
		if (!call->replying) {
			if (call->cancel)
				call->cancel(call, call->cancel_arg);
			call_free(call);
		}
	}
	if (!c->srv->reaper)
		c->srv->reaper = loop_timer_add(c->srv->loop, 0, reaper_cb, c->srv);
}

/* Fair sharing of the connections. max_clients in all; the last
 * reserved_slots() of them only for peers with control access (the till),
 * and a peer without control access holds at most per_user_limit() at once,
 * so a local user who may only read status can never lock the till out. */
static unsigned
reserved_slots(const struct vl_server *s)
{
	unsigned m = s->o.max_clients;
	return m >= 16 ? m / 8 : (m >= 4 ? 2 : 0);
}

static unsigned
per_user_limit(const struct vl_server *s)
{
	unsigned m = s->o.max_clients / 4;
	return m < 4 ? 4 : m;
}

static unsigned
conns_of(const struct vl_server *s, uid_t uid)
{
	unsigned n = 0;
	for (const struct vl_conn *c = s->conns; c; c = c->next)
		n += !c->dead && c->peer.uid == uid;
	return n;
}

/* NULL when the peer may connect, else why not. */
static const char *
admit(const struct vl_server *s, const struct vl_peer *p)
{
	if (s->nconns >= s->o.max_clients)
		return "too many clients";
	if (p->control)
		return NULL;
	if (s->nconns + reserved_slots(s) >= s->o.max_clients)
		return "the last connections are kept for control users";
	if (conns_of(s, p->uid) >= per_user_limit(s))
		return "too many connections from this user";
	return NULL;
}

static void
refuse(struct vl_server *s, int cfd, const struct vl_peer *p, const char *why)
{
	unsigned long held;
	if (ratelog_take(&s->refuse_log, &held))
		log_warn("api: refusing pid %d uid %u: %s (%u clients; %lu refusals not logged "
		         "in the last %u s)", (int)p->pid, (unsigned)p->uid, why, s->nconns, held,
		         VL_LOG_INTERVAL_MS / 1000u);
	close(cfd);
}

static void
accept_resume(struct loop *l, void *arg)
{
	struct vl_server *s = arg;
	s->accept_pause = 0;
	loop_mod_fd(l, s->lfd, POLLIN);
}

/* Out of descriptors: shed the connection at the head of the backlog with
 * the spare descriptor (so poll() does not stay readable for it), and stop
 * accepting for a moment: no tight loop, no flood of log lines. Accepting
 * resumes after VL_EMFILE_PAUSE_MS or as soon as a connection closes. */
#define VL_EMFILE_PAUSE_MS 250u

static void
accept_exhausted(struct vl_server *s, int err)
{
	if (s->spare_fd >= 0) {
		close(s->spare_fd);
		s->spare_fd = -1;
		int cfd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd >= 0)
			close(cfd);
		s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
	unsigned long held;
	if (ratelog_take(&s->emfile_log, &held))
		log_warn("api: accept: %s: pausing new connections (%u open; %lu times not logged)",
		         strerror(err), s->nconns, held);
	if (!s->accept_pause) {
		loop_mod_fd(s->loop, s->lfd, 0);
		s->accept_pause = loop_timer_add(s->loop, VL_EMFILE_PAUSE_MS, accept_resume, s);
	}
}

static void
accept_cb(struct loop *l, int fd, short revents, void *arg)
{
	struct vl_server *s = arg;
	for (int i = 0; i < 16; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				accept_exhausted(s, errno);
			else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				log_warn("api: accept: %s", strerror(errno));
			return;
		}
		struct ucred cr;
		socklen_t crl = sizeof(cr);
		if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cr, &crl) < 0) {
			close(cfd);
			continue;
		}
		struct vl_peer peer = { .pid = cr.pid, .uid = cr.uid, .gid = cr.gid };
		if (s->o.access)
			s->o.access(&peer, s->o.access_arg);
		const char *why = admit(s, &peer);
		if (why) {
			refuse(s, cfd, &peer, why);
			continue;
		}
		struct vl_conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(cfd);
			continue;
		}
		c->srv = s;
		c->fd = cfd;
		c->peer = peer;
		if (loop_add_fd(s->loop, cfd, POLLIN, conn_io, c) < 0) {
			close(cfd);
			free(c);
			continue;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->nconns++;
		/* the idle timer runs from the first moment: a connection that
		 * never sends a byte is closed like one that stops halfway */
		c->idle_delay = idle_delay(c);
		c->idle_timer = loop_timer_add(s->loop, c->idle_delay, idle_timeout_cb, c);
		log_debug("api: client pid %d uid %u (%s)", (int)cr.pid, (unsigned)cr.uid,
		          c->peer.control ? "control" : "read");
	}
}

void
vl_server_reaccess(struct vl_server *s)
{
	if (!s->o.access)
		return;
	for (struct vl_conn *c = s->conns; c; c = c->next) {
		if (c->dead)
			continue;
		struct vl_peer p = c->peer;
		s->o.access(&p, s->o.access_arg);
		if (p.control == c->peer.control)
			continue;
		log_notice("api: client pid %d uid %u: access now %s", (int)c->peer.pid,
		           (unsigned)c->peer.uid, p.control ? "control" : "read");
		c->peer.control = p.control;
		const struct method *m = c->pending ? find_method(s, c->pending->method) : NULL;
		if (!p.control && m && (m->flags & VL_CONTROL)) {
			/* a control call in progress (a stream) loses its right: end it */
			log_notice("api: client pid %d: %s ended (access withdrawn)", (int)c->peer.pid,
			           c->pending->method);
			conn_kill(c);
		}
	}
}

/* ------------------------------------------------------------------ */
/* set-up */

/* The alias of an interface whose name has capitals: the name in lower
 * case, for parsers that follow the older grammar (lower case only; Debian
 * 12's Go varlink 0.4.0). Its description is the canonical one with the
 * interface line renamed; its methods are the canonical ones. */
static int
add_alias(struct vl_server *s, const char *name, const char *description)
{
	char *lower = strdup(name), *desc = NULL;
	if (!lower)
		return -ENOMEM;
	for (char *p = lower; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	char line[300];
	snprintf(line, sizeof(line), "interface %s\n", name);
	const char *at = strstr(description, line);
	size_t ll = strlen(line);
	if (!at || (at != description && at[-1] != '\n') ||
	    asprintf(&desc, "%.*sinterface %s\n%s", (int)(at - description), description, lower,
	             at + ll) < 0) {
		free(lower);
		return at ? -ENOMEM : -EINVAL;
	}
	if (s->nifaces >= sizeof(s->ifaces) / sizeof(s->ifaces[0])) {
		free(lower);
		free(desc);
		return -ENOSPC;
	}
	s->ifaces[s->nifaces++] = (struct iface){ lower, desc, name, lower, desc };
	return 0;
}

int
vl_server_add_interface(struct vl_server *s, const char *name, const char *description)
{
	if (s->nifaces >= sizeof(s->ifaces) / sizeof(s->ifaces[0]))
		return -ENOSPC;
	s->ifaces[s->nifaces++] = (struct iface){ name, description, NULL, NULL, NULL };
	for (const char *p = name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			return add_alias(s, name, description);
	return 0;
}

int
vl_server_add_method(struct vl_server *s, const char *name, vl_method_fn fn, void *arg,
                     unsigned flags)
{
	if (!vl_method_name_valid(name) || find_method(s, name))
		return -EINVAL;
	struct method *n = realloc(s->methods, (s->nmethods + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	s->methods = n;
	char *d = strdup(name);
	if (!d)
		return -ENOMEM;
	s->methods[s->nmethods++] = (struct method){ d, fn, arg, flags };
	return 0;
}

int
vl_server_new(struct loop *l, const struct vl_server_opts *o, int listen_fd,
              struct vl_server **out, char *err, size_t errlen)
{
	struct vl_server *s = calloc(1, sizeof(*s));
	int r;
	*out = NULL;
	if (!s)
		return -ENOMEM;
	s->loop = l;
	s->o = *o;
	s->lfd = -1;
	s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	snprintf(s->err_protocol, sizeof(s->err_protocol), "%s.ProtocolError", o->error_prefix);
	snprintf(s->err_shutdown, sizeof(s->err_shutdown), "%s.ShuttingDown", o->error_prefix);
	snprintf(s->err_internal, sizeof(s->err_internal), "%s.InternalError", o->error_prefix);

	if (listen_fd >= 0) {
		s->lfd = listen_fd;
		int fl = fcntl(s->lfd, F_GETFL);
		fcntl(s->lfd, F_SETFL, fl | O_NONBLOCK);
	} else {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		if (strlen(o->path) >= sizeof(sa.sun_path)) {
			snprintf(err, errlen, "socket path too long: %s", o->path);
			r = -ENAMETOOLONG;
			goto fail;
		}
		memcpy(sa.sun_path, o->path, strlen(o->path) + 1);
		s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (s->lfd < 0) {
			r = -errno;
			snprintf(err, errlen, "socket: %s", strerror(errno));
			goto fail;
		}
		/* Never take the path of a live daemon: a socket that answers a
		 * connect is in use (a stale file from a crash refuses it). */
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			snprintf(err, errlen, "%s: another process answers on this socket "
			         "(is vitaled already running?)", o->path);
			r = -EADDRINUSE;
			goto fail;
		}
		if (probe >= 0)
			close(probe);
		/* Bind under a temporary name, set mode and group, then rename
		 * over the final path: no window where the socket is reachable
		 * with the wrong permissions, and a stale socket is replaced. */
		char tmp[sizeof(sa.sun_path)];
		int tn = snprintf(tmp, sizeof(tmp), "%s.%d", o->path, (int)getpid());
		if (tn < 0 || (size_t)tn >= sizeof(tmp)) {
			snprintf(err, errlen, "socket path too long: %s", o->path);
			r = -ENAMETOOLONG;
			goto fail;
		}
		memcpy(sa.sun_path, tmp, (size_t)tn + 1);
		unlink(tmp);
		mode_t old = umask(0177);
		r = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
		umask(old);
		if (r < 0) {
			r = -errno;
			snprintf(err, errlen, "bind %s: %s", o->path, strerror(errno));
			goto fail;
		}
		if (o->gid != (gid_t)-1 && chown(tmp, (uid_t)-1, o->gid) < 0)
			log_warn("api: cannot give %s to group %u: %s", o->path, (unsigned)o->gid,
			         strerror(errno));
		if (chmod(tmp, o->mode) < 0 || rename(tmp, o->path) < 0) {
			r = -errno;
			snprintf(err, errlen, "socket %s: %s", o->path, strerror(errno));
			unlink(tmp);
			goto fail;
		}
		s->unlink_path = true;
		if (listen(s->lfd, 64) < 0) {
			r = -errno;
			snprintf(err, errlen, "listen %s: %s", o->path, strerror(errno));
			goto fail;
		}
	}
	s->path = strdup(o->path ? o->path : "");
	if ((r = loop_add_fd(l, s->lfd, POLLIN, accept_cb, s)) < 0) {
		snprintf(err, errlen, "loop: %s", strerror(-r));
		goto fail;
	}
	vl_server_add_method(s, SVC ".GetInfo", svc_get_info, s, 0);
	vl_server_add_method(s, SVC ".GetInterfaceDescription", svc_get_description, s, 0);
	*out = s;
	return 0;
fail:
	if (s->spare_fd >= 0)
		close(s->spare_fd);
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->unlink_path)
		unlink(o->path);
	free(s->path);
	free(s);
	return r;
}

void
vl_server_shutdown(struct vl_server *s)
{
	s->shutting_down = true;
}

size_t
vl_server_queued_bytes(const struct vl_server *s)
{
	return s->out_total;
}

unsigned
vl_server_clients(const struct vl_server *s)
{
	unsigned n = 0;
	for (const struct vl_conn *c = s->conns; c; c = c->next)
		n += !c->dead;
	return n;
}

void
vl_server_free(struct vl_server *s)
{
	if (!s)
		return;
	for (struct vl_conn *c = s->conns; c; c = c->next)
		conn_kill(c);
	if (s->reaper)
		loop_timer_cancel(s->loop, s->reaper);
	if (s->accept_pause)
		loop_timer_cancel(s->loop, s->accept_pause);
	s->accept_pause = 0;
	reaper_cb(s->loop, s);
	if (s->spare_fd >= 0)
		close(s->spare_fd);
	if (s->lfd >= 0) {
		loop_del_fd(s->loop, s->lfd);
		close(s->lfd);
	}
	if (s->unlink_path)
		unlink(s->path);
	for (size_t i = 0; i < s->nifaces; i++) {
		free(s->ifaces[i].owned_name);
		free(s->ifaces[i].owned_desc);
	}
	for (size_t i = 0; i < s->nmethods; i++)
		free(s->methods[i].name);
	free(s->methods);
	free(s->path);
	free(s);
}
