/* The control socket: `vitalectl web` approves pairings, lists and revokes
 * tokens. It speaks varlink's framing (a JSON object and a NUL each way)
 * with the methods of interface io.vitaled.Web (docs/web-bridge.md), on an
 * AF_UNIX socket that only root and the vitaled group can open (mode 0660;
 * the systemd socket unit sets it). One connection at a time, each bounded
 * in size and time: this is a person at a terminal, not a server. */
#include "web/bridge.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"

#define CTL_MAX_MSG 16384
#define CTL_TIMEOUT_MS 10000
#define WIFACE "io.vitaled.Web."

static const char *const refusal_names[WEB_REF_N] = {
	"host", "origin", "token_missing", "token_invalid", "token_origin",
	"scope", "method", "bad_request", "pairing", "not_found",
};

const char *
web_refusal_name(enum web_refusal r)
{
	return r < WEB_REF_N ? refusal_names[r] : "?";
}

json_t *
bridge_status(struct bridge *b)
{
	json_t *by = json_object();
	unsigned long total = 0;
	for (int i = 0; i < WEB_REF_N; i++) {
		unsigned long n = atomic_load(&b->refused[i]);
		total += n;
		json_object_set_new(by, refusal_names[i], json_integer((json_int_t)n));
	}
	int tokens = 0, pending = 0;
	web_store_counts(b->store, &tokens, &pending);
	return json_pack("{s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:i, s:i}", "bridge", "vitaled-web",
	                 "version", VITALED_VERSION, "refused_total", (json_int_t)total, "refused", by,
	                 "requests", (json_int_t)atomic_load(&b->requests), "forwarded",
	                 (json_int_t)atomic_load(&b->forwarded), "private_network_preflights",
	                 (json_int_t)atomic_load(&b->pna_preflights), "tokens", tokens, "pending_pairings",
	                 pending);
}

static char *
reply_error(const char *name, json_t *params)
{
	json_t *m = json_pack("{s:s, s:o}", "error", name, "parameters", params ? params : json_object());
	char *s = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	return s;
}

static char *
reply_ok(json_t *params)
{
	json_t *m = json_pack("{s:o}", "parameters", params);
	char *s = json_dumps(m, JSON_COMPACT);
	json_decref(m);
	return s;
}

static char *
ctl_approve(struct bridge *b, json_t *p)
{
	const char *code = json_string_value(json_object_get(p, "code"));
	const char *scope_s = json_string_value(json_object_get(p, "scope"));
	enum web_scope scope = WEB_SCOPE_NONE;
	if (scope_s && (scope = web_scope_parse(scope_s)) == WEB_SCOPE_NONE)
		return reply_error(WIFACE "InvalidParameter", json_pack("{s:s}", "parameter", "scope"));
	if (!code)
		return reply_error(WIFACE "InvalidParameter", json_pack("{s:s}", "parameter", "code"));
	json_t *info = NULL;
	int r = web_pair_approve(b->store, code, scope, &info);
	if (r == -ENOENT)
		return reply_error(WIFACE "PairingNotFound", json_pack("{s:s}", "code", code));
	if (r == -ENOSPC)
		return reply_error(WIFACE "TooManyTokens", json_pack("{s:i}", "max", WEB_MAX_TOKENS));
	if (r < 0)
		return reply_error(WIFACE "IoError", json_pack("{s:s}", "reason", strerror(-r)));
	log_notice("web: pairing %s approved: token %s for %s, scope %s", code,
	           json_string_value(json_object_get(info, "id")),
	           json_string_value(json_object_get(info, "origin")),
	           json_string_value(json_object_get(info, "scope")));
	return reply_ok(info);
}

static char *
ctl_revoke(struct bridge *b, json_t *p)
{
	const char *id = json_string_value(json_object_get(p, "id"));
	if (!id)
		return reply_error(WIFACE "InvalidParameter", json_pack("{s:s}", "parameter", "id"));
	int r = web_token_revoke(b->store, id);
	if (r == -ENOENT)
		return reply_error(WIFACE "TokenNotFound", json_pack("{s:s}", "id", id));
	if (r < 0)
		return reply_error(WIFACE "IoError", json_pack("{s:s}", "reason", strerror(-r)));
	log_notice("web: revoked %d token(s) (%s)", r, id);
	return reply_ok(json_pack("{s:i}", "revoked", r));
}

char *
web_ctl_handle(struct bridge *b, const char *msg, size_t len)
{
	json_error_t je;
	json_t *m = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &je);
	const char *method = json_string_value(json_object_get(m, "method"));
	json_t *p = json_object_get(m, "parameters");
	char *out;
	if (!json_is_object(m) || !method || (p && !json_is_object(p)))
		out = reply_error(WIFACE "ProtocolError", json_pack("{s:s}", "reason", "not a varlink call"));
	else if (!strcmp(method, WIFACE "ListPending"))
		out = reply_ok(json_pack("{s:o}", "pending", web_pair_list(b->store)));
	else if (!strcmp(method, WIFACE "Approve"))
		out = ctl_approve(b, p);
	else if (!strcmp(method, WIFACE "Deny"))
		out = web_pair_deny(b->store, json_string_value(json_object_get(p, "code"))) == 0
		          ? reply_ok(json_object())
		          : reply_error(WIFACE "PairingNotFound", NULL);
	else if (!strcmp(method, WIFACE "ListTokens"))
		out = reply_ok(json_pack("{s:o}", "tokens", web_token_list(b->store)));
	else if (!strcmp(method, WIFACE "Revoke"))
		out = ctl_revoke(b, p);
	else if (!strcmp(method, WIFACE "GetStatus"))
		out = reply_ok(bridge_status(b));
	else
		out = reply_error("org.varlink.service.MethodNotFound", json_pack("{s:s}", "method", method));
	json_decref(m);
	return out;
}

/* ------------------------------------------------------------ the thread */

static int ctl_fd = -1;
static pthread_t ctl_thread;
static struct bridge *ctl_bridge;

static int
wait_fd(int fd, short ev, uint64_t deadline)
{
	uint64_t now = clock_mono_ms();
	if (now >= deadline)
		return -ETIMEDOUT;
	struct pollfd p = { fd, ev, 0 };
	int r = poll(&p, 1, (int)(deadline - now));
	return r > 0 ? 0 : r == 0 ? -ETIMEDOUT : -errno;
}

/* Serve one connection: calls until it closes, errs or idles. */
static void
serve(int fd)
{
	char *buf = malloc(CTL_MAX_MSG);
	size_t len = 0;
	uint64_t deadline = clock_mono_ms() + CTL_TIMEOUT_MS;
	while (buf && wait_fd(fd, POLLIN, deadline) == 0) {
		ssize_t n = recv(fd, buf + len, CTL_MAX_MSG - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		char *nul;
		while ((nul = memchr(buf, '\0', len))) {
			size_t mlen = (size_t)(nul - buf);
			char *out = web_ctl_handle(ctl_bridge, buf, mlen);
			memmove(buf, nul + 1, len - mlen - 1);
			len -= mlen + 1;
			if (!out || send(fd, out, strlen(out) + 1, MSG_NOSIGNAL) < 0) {
				free(out);
				goto done;
			}
			free(out);
			deadline = clock_mono_ms() + CTL_TIMEOUT_MS;
		}
		if (len == CTL_MAX_MSG)
			break; /* a message over the limit: drop the connection */
	}
done:
	free(buf);
}

static void *
ctl_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&ctl_bridge->stopping)) {
		struct pollfd p = { ctl_fd, POLLIN, 0 };
		if (poll(&p, 1, 500) <= 0)
			continue;
		int c = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		struct ucred cr;
		socklen_t cl = sizeof(cr);
		if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
			log_debug("web: control connection from uid %u pid %d", (unsigned)cr.uid, (int)cr.pid);
		serve(c);
		close(c);
	}
	return NULL;
}

int
web_ctl_start(struct bridge *b, int fd)
{
	ctl_bridge = b;
	ctl_fd = fd;
	if (pthread_create(&ctl_thread, NULL, ctl_main, NULL) != 0) {
		log_err("web: cannot start the control thread");
		return -1;
	}
	return 0;
}

void
web_ctl_stop(void)
{
	if (ctl_fd >= 0) {
		pthread_join(ctl_thread, NULL);
		ctl_fd = -1;
	}
}
