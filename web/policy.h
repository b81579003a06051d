/* The bridge's pure rules: which Host names are loopback, which Origins
 * are allowed, which varlink methods a token scope may call, and what a
 * read-only token may see of an event. No I/O; unit-tested
 * (tests/unit/check_webpolicy.c). docs/web-bridge.md explains the why. */
#ifndef VITALED_WEB_POLICY_H
#define VITALED_WEB_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "conf/config.h"

/* Token scopes, ordered: each includes the ones below it. */
enum web_scope {
	WEB_SCOPE_NONE = 0,
	WEB_SCOPE_READ = 1,    /* status, readers, events (names removed), sheet lists */
	WEB_SCOPE_CONTROL = 2, /* + the card, sheets, uploads, rights checks */
	WEB_SCOPE_PIN = 3,     /* + SubmitPin, UnblockPin: a PIN passes through the bridge */
};

/* "read", "control", "pin" -> the scope; WEB_SCOPE_NONE for anything else. */
enum web_scope web_scope_parse(const char *s);
const char *web_scope_name(enum web_scope s);

/* Host is one of the loopback names (127.0.0.1, localhost, [::1]),
 * optionally with ":port" equal to port. Anything else (a DNS rebinding
 * name, a LAN address, no Host at all) is false. */
bool web_host_ok(const char *host, unsigned port);

/* origin is exactly one of the allowed origins ("null" never is). */
bool web_origin_allowed(const struct config_list *allowed, const char *origin);

/* origin is the bridge's own: "http://" + host (an already checked Host). */
bool web_origin_own(const char *origin, const char *host);

/* The scope io.vitaled.Terminal.<method> needs through the bridge;
 * WEB_SCOPE_NONE when the bridge never forwards it (Reload, unknown names,
 * other interfaces). method is the short name ("GetStatus"). */
enum web_scope web_method_scope(const char *method);

/* A method name is 1..64 of [A-Za-z0-9]. */
bool web_method_name_ok(const char *method);

/* Remove what a token of scope may not see from an event (in place): below
 * control, the names in summary.beneficiaries (as the daemon does for its
 * own watchers without control access). */
void web_redact_event(json_t *event, enum web_scope scope);

/* Copy s into out (outlen > 0) for a log line: at most outlen-1 bytes,
 * anything outside printable ASCII as '?'. Returns out. */
char *web_log_safe(const char *s, char *out, size_t outlen);

#endif
