/* The HTTP side of the bridge, on libmicrohttpd (one thread per
 * connection, so a call or an event stream may block on the daemon).
 *
 * Every request passes the same gate, in this order (docs/web-bridge.md):
 *   1. Host must be a loopback name (127.0.0.1, localhost, [::1]) with our
 *      port: a DNS-rebinding page reaches us under its own name.
 *   2. Origin: the API (/v1/...) answers only Origins in [web]
 *      allowed_origins; preflights (CORS and Chromium's private-network
 *      access) are answered only for them; the kiosk page and its feed
 *      only to the bridge's own origin.
 *   3. A token (Authorization: Bearer), bound to the Origin that paired it.
 *   4. The token's scope covers the method (web/policy.c); a method the
 *      bridge does not forward is refused whatever the scope.
 * Each refusal is a JSON error {"error": "io.vitaled.Web.<Name>",
 * "reason": ...} with a 4xx status, logged and counted (GET /v1/status).
 */
#include "web/bridge.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/vitaled-client.h"
#include "lib/log.h"
#include "lib/secmem.h"
#include "web/kiosk.h"
#include "web/policy.h"

#define MAX_BODY 65536
#define MAX_SERVERS 4
#define CALL_TIMEOUT_MS 60000
#define STREAM_KEEPALIVE_MS 5000
#define WERR "io.vitaled.Web."

extern const char web_kiosk_html[]; /* build/gen/web_assets.c, from web/kiosk.html */

static struct MHD_Daemon *servers[MAX_SERVERS];
static int nservers;

struct req {
	char *body;
	size_t len;
	bool over;
};

/* What the gate learned about a request. */
struct gate {
	struct bridge *b;
	struct MHD_Connection *conn;
	const char *url;
	const char *method;
	const char *host;
	const char *origin;
	bool origin_allowed; /* in [web] allowed_origins */
	bool origin_own;     /* the bridge's own origin (the kiosk page) */
	enum web_scope scope;
};

static void
common_headers(struct MHD_Response *r, const struct gate *g, const char *type)
{
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Vary", "Origin");
	if (g->origin_allowed)
		MHD_add_response_header(r, "Access-Control-Allow-Origin", g->origin);
}

static enum MHD_Result
send_json(const struct gate *g, unsigned status, json_t *body)
{
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return MHD_NO;
	size_t n = strlen(text);
	struct MHD_Response *r = MHD_create_response_from_buffer(n, text, MHD_RESPMEM_MUST_FREE);
	common_headers(r, g, "application/json; charset=utf-8");
	enum MHD_Result res = MHD_queue_response(g->conn, status, r);
	MHD_destroy_response(r);
	return res;
}

static enum MHD_Result
refuse(const struct gate *g, enum web_refusal why, unsigned status, const char *name,
       const char *reason)
{
	atomic_fetch_add(&g->b->refused[why], 1);
	char o[80], u[80];
	log_info("web: refused %s %s (%s): %s; Origin %s", g->method, web_log_safe(g->url, u, sizeof(u)),
	         web_refusal_name(why), reason, g->origin ? web_log_safe(g->origin, o, sizeof(o)) : "none");
	char full[80];
	snprintf(full, sizeof(full), WERR "%s", name);
	return send_json(g, status, json_pack("{s:s, s:s, s:s}", "error", full, "reason", reason,
	                                      "refusal", web_refusal_name(why)));
}

/* ------------------------------------------------------------ preflight */

static enum MHD_Result
preflight(const struct gate *g)
{
	if (!g->origin_allowed)
		return refuse(g, WEB_REF_ORIGIN, MHD_HTTP_FORBIDDEN, "OriginNotAllowed",
		              "this Origin is not in [web] allowed_origins");
	struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	common_headers(r, g, "text/plain");
	MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST");
	MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
	MHD_add_response_header(r, "Access-Control-Max-Age", "600");
	const char *pna = MHD_lookup_connection_value(g->conn, MHD_HEADER_KIND,
	                                              "Access-Control-Request-Private-Network");
	if (pna && !strcmp(pna, "true")) {
		MHD_add_response_header(r, "Access-Control-Allow-Private-Network", "true");
		atomic_fetch_add(&g->b->pna_preflights, 1);
	}
	enum MHD_Result res = MHD_queue_response(g->conn, MHD_HTTP_NO_CONTENT, r);
	MHD_destroy_response(r);
	return res;
}

/* ------------------------------------------------------------ tokens */

/* 0 when the request's token is good for need (g->scope set), else the
 * refusal already queued in *res. */
static int
authorize(struct gate *g, enum web_scope need, enum MHD_Result *res)
{
	const char *auth = MHD_lookup_connection_value(g->conn, MHD_HEADER_KIND, "Authorization");
	enum web_scope have = WEB_SCOPE_NONE;
	switch (web_store_check(g->b->store, auth, g->origin, &have)) {
	case WEB_AUTH_MISSING:
		*res = refuse(g, WEB_REF_TOKEN_MISSING, MHD_HTTP_UNAUTHORIZED, "TokenMissing",
		              "no token: pair this application first (POST /v1/pair)");
		return -1;
	case WEB_AUTH_INVALID:
		*res = refuse(g, WEB_REF_TOKEN_INVALID, MHD_HTTP_UNAUTHORIZED, "TokenInvalid",
		              "unknown or revoked token: pair again");
		return -1;
	case WEB_AUTH_ORIGIN:
		*res = refuse(g, WEB_REF_TOKEN_ORIGIN, MHD_HTTP_FORBIDDEN, "TokenOriginMismatch",
		              "this token was paired by another Origin");
		return -1;
	case WEB_AUTH_OK:
		break;
	}
	g->scope = have;
	if (have < need) {
		char why[120];
		snprintf(why, sizeof(why), "this needs the %s scope; the token has %s",
		         web_scope_name(need), web_scope_name(have));
		*res = refuse(g, WEB_REF_SCOPE, MHD_HTTP_FORBIDDEN, "ScopeInsufficient", why);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ calls */

static json_t *
parse_body(const struct req *q)
{
	if (!q->body || q->len == 0)
		return json_object();
	json_error_t je;
	json_t *j = json_loadb(q->body, q->len, JSON_REJECT_DUPLICATES, &je);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static bool
json_content_type(struct MHD_Connection *conn)
{
	const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
	return ct && !strncmp(ct, "application/json", 16);
}

/* Overwrite the PIN-like strings of a call's parameters before they are freed. */
static void
wipe_secrets(json_t *params)
{
	static const char *const keys[] = { "pin", "puk", "new_pin" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(params, keys[i]);
		if (json_is_string(v))
			secmem_wipe((char *)(uintptr_t)json_string_value(v), json_string_length(v));
	}
}

static enum MHD_Result
forward(struct gate *g, const char *method, json_t *params)
{
	char full[128];
	snprintf(full, sizeof(full), "io.vitaled.Terminal.%s", method);
	struct vtc *c = NULL;
	int r = vtc_connect(g->b->daemon_socket, CALL_TIMEOUT_MS, &c);
	if (r < 0) {
		wipe_secrets(params);
		json_decref(params);
		return send_json(g, MHD_HTTP_BAD_GATEWAY,
		                 json_pack("{s:s, s:s}", "error", WERR "DaemonUnreachable", "reason", strerror(-r)));
	}
	json_t *reply = NULL;
	char *err = NULL;
	r = vtc_call(c, full, json_incref(params), 0, &reply, &err);
	vtc_close(c);
	wipe_secrets(params);
	json_decref(params);
	atomic_fetch_add(&g->b->forwarded, 1);
	if (r < 0) {
		json_decref(reply);
		return send_json(g, MHD_HTTP_BAD_GATEWAY,
		                 json_pack("{s:s, s:s}", "error", WERR "DaemonUnreachable", "reason", strerror(-r)));
	}
	json_t *out = r == VTC_ERROR_REPLY
	                  ? json_pack("{s:s, s:o}", "error", err ? err : "?", "parameters",
	                              reply ? reply : json_object())
	                  : json_pack("{s:o}", "parameters", reply ? reply : json_object());
	free(err);
	return send_json(g, MHD_HTTP_OK, out);
}

static enum MHD_Result
route_call(struct gate *g, const char *method, struct req *q)
{
	enum MHD_Result res;
	if (!web_method_name_ok(method))
		return refuse(g, WEB_REF_BAD_REQUEST, MHD_HTTP_BAD_REQUEST, "BadRequest", "bad method name");
	enum web_scope need = web_method_scope(method);
	if (need == WEB_SCOPE_NONE)
		return refuse(g, WEB_REF_METHOD, MHD_HTTP_FORBIDDEN, "MethodNotAllowed",
		              "the bridge does not forward this method");
	if (authorize(g, need, &res) < 0)
		return res;
	if (q->over || !json_content_type(g->conn))
		return refuse(g, WEB_REF_BAD_REQUEST, MHD_HTTP_BAD_REQUEST, "BadRequest",
		              "the body must be a JSON object (Content-Type: application/json, at most 64 KiB)");
	json_t *params = parse_body(q);
	if (!params)
		return refuse(g, WEB_REF_BAD_REQUEST, MHD_HTTP_BAD_REQUEST, "BadRequest",
		              "the body is not a JSON object");
	return forward(g, method, params);
}

/* ------------------------------------------------------------ pairing */

static enum MHD_Result
route_pair_start(struct gate *g, struct req *q)
{
	json_t *p = json_content_type(g->conn) && !q->over ? parse_body(q) : NULL;
	const char *app = json_string_value(json_object_get(p, "app"));
	const char *sc = json_string_value(json_object_get(p, "scope"));
	enum web_scope scope = sc ? web_scope_parse(sc) : WEB_SCOPE_READ;
	char id[WEB_PAIR_ID_LEN + 1], code[7];
	int r = (p && scope != WEB_SCOPE_NONE) ? web_pair_start(g->b->store, g->origin, app, scope, id, code)
	                                       : -EINVAL;
	json_decref(p);
	if (r == -EBUSY)
		return refuse(g, WEB_REF_PAIRING, 429, "TooManyPairings",
		              "too many pairings wait for approval; try again later");
	if (r < 0)
		return refuse(g, WEB_REF_BAD_REQUEST, MHD_HTTP_BAD_REQUEST, "BadRequest",
		              "give {\"app\": NAME (1-64 characters), \"scope\": read|control|pin}");
	log_notice("web: pairing asked: code %s, scope %s (approve with: vitalectl web pair %s)", code,
	           web_scope_name(scope), code);
	return send_json(g, MHD_HTTP_OK,
	                 json_pack("{s:s, s:s, s:s, s:I}", "pairing", id, "code", code, "scope",
	                           web_scope_name(scope), "expires_in_s",
	                           (json_int_t)g->b->cfg->web_pair_timeout_s));
}

static enum MHD_Result
route_pair_poll(struct gate *g, const char *id)
{
	char token[WEB_TOKEN_LEN + 1];
	enum web_scope scope = WEB_SCOPE_NONE;
	int r = web_pair_collect(g->b->store, id, g->origin, token, &scope);
	if (r < 0)
		return refuse(g, WEB_REF_PAIRING, MHD_HTTP_NOT_FOUND, "PairingNotFound",
		              "no such pairing for this Origin (expired, refused or already collected)");
	if (r == 0)
		return send_json(g, MHD_HTTP_OK, json_pack("{s:s}", "state", "pending"));
	json_t *out = json_pack("{s:s, s:s, s:s}", "state", "approved", "token", token, "scope",
	                        web_scope_name(scope));
	secmem_wipe(token, sizeof(token));
	return send_json(g, MHD_HTTP_OK, out);
}

/* ------------------------------------------------------------ streams */

struct stream {
	struct bridge *b;
	struct vtc *c;
	bool kiosk;
	enum web_scope scope;
	struct kiosk k;
	char *out;
	size_t len, off;
};

static void
stream_free(void *cls)
{
	struct stream *s = cls;
	vtc_close(s->c);
	free(s->out);
	free(s);
}

/* Fill s->out with the next piece of the stream; -1 at its end. */
static int
stream_fill(struct stream *s)
{
	json_t *reply = NULL;
	char *err = NULL;
	bool more = false;
	int r = vtc_next(s->c, &reply, &err, &more);
	free(s->out);
	s->out = NULL;
	s->off = s->len = 0;
	if (r == -ETIMEDOUT) {
		s->out = strdup(": keepalive\n\n");
	} else if (r != 0 || !more) {
		json_decref(reply);
		free(err);
		return -1;
	} else {
		json_t *ev = json_object_get(reply, "event");
		if (s->kiosk) {
			if (kiosk_feed(&s->k, ev)) {
				char *m = json_dumps(kiosk_message(&s->k, s->b->cfg->web_kiosk_reset_s),
				                     JSON_COMPACT | JSON_ENSURE_ASCII);
				if (m && asprintf(&s->out, "event: kiosk\ndata: %s\n\n", m) < 0)
					s->out = NULL;
				free(m);
			}
		} else {
			web_redact_event(ev, s->scope);
			char *m = json_dumps(ev, JSON_COMPACT);
			const char *type = json_string_value(json_object_get(ev, "type"));
			if (m && asprintf(&s->out, "id: %lld\nevent: %s\ndata: %s\n\n",
			                  (long long)json_integer_value(json_object_get(ev, "seq")),
			                  type ? type : "Event", m) < 0)
				s->out = NULL;
			free(m);
		}
	}
	json_decref(reply);
	s->len = s->out ? strlen(s->out) : 0;
	return 0;
}

static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	(void)pos;
	while (s->off >= s->len) {
		if (atomic_load(&s->b->stopping) || stream_fill(s) < 0)
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	size_t n = s->len - s->off < max ? s->len - s->off : max;
	memcpy(buf, s->out + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static enum MHD_Result
route_stream(struct gate *g, bool kiosk)
{
	struct stream *s = calloc(1, sizeof(*s));
	if (!s)
		return MHD_NO;
	s->b = g->b;
	s->kiosk = kiosk;
	s->scope = g->scope;
	kiosk_init(&s->k);
	int r = vtc_connect(g->b->daemon_socket, STREAM_KEEPALIVE_MS, &s->c);
	json_t *first = NULL;
	if (r == 0)
		r = vtc_call(s->c, "io.vitaled.Terminal.WatchEvents", NULL, VTC_MORE, &first, NULL);
	json_decref(first);
	if (r != 0) {
		stream_free(s);
		return send_json(g, MHD_HTTP_BAD_GATEWAY,
		                 json_pack("{s:s, s:s}", "error", WERR "DaemonUnreachable", "reason",
		                           r < 0 ? strerror(-r) : "WatchEvents refused"));
	}
	/* the first piece: the kiosk's idle screen, or a comment that opens the stream */
	if (kiosk) {
		char *m = json_dumps(kiosk_message(&s->k, g->b->cfg->web_kiosk_reset_s), JSON_COMPACT);
		if (m && asprintf(&s->out, "retry: 1000\nevent: kiosk\ndata: %s\n\n", m) < 0)
			s->out = NULL;
		free(m);
	} else {
		s->out = strdup("retry: 1000\n: watching\n\n");
	}
	s->len = s->out ? strlen(s->out) : 0;
	struct MHD_Response *resp =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
	common_headers(resp, g, "text/event-stream; charset=utf-8");
	enum MHD_Result res = MHD_queue_response(g->conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return res;
}

/* ------------------------------------------------------------ kiosk */

static bool
kiosk_enabled(struct bridge *b)
{
	if (b->cfg->web_kiosk)
		return true;
	struct vtc *c = NULL;
	json_t *st = NULL;
	bool on = false;
	if (vtc_connect(b->daemon_socket, 5000, &c) == 0 &&
	    vtc_call(c, "io.vitaled.Terminal.GetStatus", NULL, 0, &st, NULL) == 0)
		on = !strcmp(json_string_value(json_object_get(st, "mode")) ?: "", "kiosk");
	json_decref(st);
	vtc_close(c);
	return on;
}

/* The kiosk page and its feed: the bridge's own origin only. A page of
 * another origin cannot read them (no CORS header), and is refused here
 * when its browser says who it is (Origin, Sec-Fetch-Site). */
static enum MHD_Result
route_kiosk(struct gate *g, bool feed)
{
	const char *site = MHD_lookup_connection_value(g->conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
	if ((g->origin && !g->origin_own) ||
	    (feed && site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0))
		return refuse(g, WEB_REF_ORIGIN, MHD_HTTP_FORBIDDEN, "OriginNotAllowed",
		              "the kiosk screen is for the bridge's own page");
	if (!kiosk_enabled(g->b))
		return refuse(g, WEB_REF_NOT_FOUND, MHD_HTTP_NOT_FOUND, "NotFound",
		              "no kiosk here: [daemon] mode is not kiosk and [web] kiosk is off");
	if (feed)
		return route_stream(g, true);
	g->origin_allowed = false; /* never a CORS header on the page */
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(web_kiosk_html),
	                                                         (void *)(uintptr_t)web_kiosk_html,
	                                                         MHD_RESPMEM_PERSISTENT);
	common_headers(r, g, "text/html; charset=utf-8");
	MHD_add_response_header(r, "Content-Security-Policy",
	                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
	                        "connect-src 'self'; frame-ancestors 'none'");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	enum MHD_Result res = MHD_queue_response(g->conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return res;
}

/* ------------------------------------------------------------ dispatch */

static enum MHD_Result
route(struct gate *g, struct req *q)
{
	bool get = !strcmp(g->method, "GET"), post = !strcmp(g->method, "POST");
	enum MHD_Result res;
	if (get && (!strcmp(g->url, "/kiosk") || !strcmp(g->url, "/kiosk/")))
		return route_kiosk(g, false);
	if (get && !strcmp(g->url, "/v1/kiosk/events"))
		return route_kiosk(g, true);
	if (strncmp(g->url, "/v1/", 4) != 0)
		return refuse(g, WEB_REF_NOT_FOUND, MHD_HTTP_NOT_FOUND, "NotFound", "no such path");
	/* the API: allowed Origins only (a browser always sends Origin across origins) */
	if (!g->origin_allowed)
		return refuse(g, WEB_REF_ORIGIN, MHD_HTTP_FORBIDDEN, "OriginNotAllowed",
		              "this Origin is not in [web] allowed_origins");
	if (get && !strcmp(g->url, "/v1/status"))
		return send_json(g, MHD_HTTP_OK, bridge_status(g->b));
	if (post && !strcmp(g->url, "/v1/pair"))
		return route_pair_start(g, q);
	if (get && !strncmp(g->url, "/v1/pair/", 9))
		return route_pair_poll(g, g->url + 9);
	if (post && !strncmp(g->url, "/v1/call/", 9))
		return route_call(g, g->url + 9, q);
	if (get && !strcmp(g->url, "/v1/events")) {
		if (authorize(g, WEB_SCOPE_READ, &res) < 0)
			return res;
		return route_stream(g, false);
	}
	return refuse(g, WEB_REF_NOT_FOUND, MHD_HTTP_NOT_FOUND, "NotFound", "no such path or method");
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
       const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct bridge *b = cls;
	struct req *q = *con_cls;
	(void)version;
	if (!q) {
		q = calloc(1, sizeof(*q));
		*con_cls = q;
		return q ? MHD_YES : MHD_NO;
	}
	if (*upload_size) {
		if (!q->over && q->len + *upload_size <= MAX_BODY) {
			char *nb = realloc(q->body, q->len + *upload_size);
			if (!nb)
				return MHD_NO;
			q->body = nb;
			memcpy(q->body + q->len, upload, *upload_size);
			q->len += *upload_size;
		} else {
			q->over = true;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	atomic_fetch_add(&b->requests, 1);
	struct gate g = { .b = b, .conn = conn, .url = url, .method = method };
	g.host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
	g.origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	if (!web_host_ok(g.host, b->port)) {
		g.origin = NULL; /* no CORS header for a rebinding name */
		return refuse(&g, WEB_REF_HOST, MHD_HTTP_FORBIDDEN, "HostNotAllowed",
		              "the Host header is not a loopback name (DNS rebinding?)");
	}
	g.origin_allowed = web_origin_allowed(&b->cfg->web_allowed_origins, g.origin);
	g.origin_own = web_origin_own(g.origin, g.host);
	if (!strcmp(method, "OPTIONS"))
		return preflight(&g);
	return route(&g, q);
}

static void
completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct req *q = *con_cls;
	(void)cls;
	(void)conn;
	(void)toe;
	if (q) {
		if (q->body)
			secmem_wipe(q->body, q->len); /* it may have held a PIN */
		free(q->body);
		free(q);
		*con_cls = NULL;
	}
}

int
web_http_start(struct bridge *b, const int *fds, int nfds)
{
	for (int i = 0; i < nfds && nservers < MAX_SERVERS; i++) {
		struct MHD_Daemon *d = MHD_start_daemon(
		    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
		    NULL, NULL, handle, b, MHD_OPTION_LISTEN_SOCKET, fds[i], MHD_OPTION_NOTIFY_COMPLETED,
		    completed, NULL, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
		    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)120, MHD_OPTION_END);
		if (!d) {
			log_err("web: libmicrohttpd would not serve listening socket %d", fds[i]);
			return -1;
		}
		servers[nservers++] = d;
	}
	return 0;
}

void
web_http_stop(void)
{
	for (int i = 0; i < nservers; i++)
		MHD_stop_daemon(servers[i]);
	nservers = 0;
}
