/* libFuzzer target: the web bridge's checks of an HTTP request (web/policy.c)
 * on arbitrary requests. The input is read as a request head: a first line
 * "METHOD /v1/call/<Name>" and header lines, then a blank line and a JSON
 * body (an event, as the bridge forwards them). libmicrohttpd parses the HTTP
 * itself; what the bridge decides from the Host, the Origin, the method name
 * and the event is fuzzed here.
 * Invariants: a Host accepted is a loopback name (127.0.0.1, localhost, [::1])
 * with at most the bridge's own port; an Origin accepted is byte for byte one
 * of the allowed ones and never "null"; a method the bridge forwards has a
 * valid name and Reload is never forwarded; an event redacted for a read-only
 * token keeps no beneficiary name; a log copy is printable and bounded. */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PORT 8787u

static char *
field(const char *head, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = head; p && *p;) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len > n + 1 && strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1;
			while (*v == ' ')
				v++;
			size_t vl = len - (size_t)(v - p);
			if (vl && v[vl - 1] == '\r')
				vl--;
			return strndup(v, vl);
		}
		p = e ? e + 1 : NULL;
	}
	return NULL;
}

/* After the name: nothing, or ":" and 1-5 digits whose value is the
 * bridge's port (leading zeros are valid port syntax, RFC 3986 3.2.3). */
static bool
port_is_ours(const char *rest)
{
	if (*rest == '\0')
		return true;
	if (*rest != ':' || !rest[1] || strlen(rest + 1) > 5)
		return false;
	unsigned v = 0;
	for (const char *p = rest + 1; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	return v == PORT;
}

static void
check_host(const char *host)
{
	if (!web_host_ok(host, PORT))
		return;
	const char *names[] = { "127.0.0.1", "localhost", "[::1]" };
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(names[i]);
		if (strncasecmp(host, names[i], n) == 0 && port_is_ours(host + n))
			return;
	}
	abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 16384)
		return 0;
	char *req = strndup((const char *)data, size);
	if (!req)
		return 0;
	char *body = strstr(req, "\n\n");
	if (body)
		*body++ = '\0';

	char *host = field(req, "Host");
	if (host)
		check_host(host);

	struct config_list allowed = { .n = 2 };
	allowed.v[0] = (char *)"https://till.example";
	allowed.v[1] = (char *)"http://127.0.0.1:9000";
	char *origin = field(req, "Origin");
	if (origin) {
		if (web_origin_allowed(&allowed, origin) &&
		    strcmp(origin, allowed.v[0]) != 0 && strcmp(origin, allowed.v[1]) != 0)
			abort();
		if (strcmp(origin, "null") == 0 && web_origin_allowed(&allowed, origin))
			abort();
		if (host && web_host_ok(host, PORT))
			(void)web_origin_own(origin, host);
	}

	char *call = strstr(req, "/v1/call/");
	if (call) {
		char name[128];
		size_t i = 0;
		for (call += 9; call[i] && call[i] != ' ' && call[i] != '\n' && i < sizeof(name) - 1; i++)
			name[i] = call[i];
		name[i] = '\0';
		enum web_scope s = web_method_scope(name);
		if (s != WEB_SCOPE_NONE && !web_method_name_ok(name))
			abort();
		if (strcmp(name, "Reload") == 0 && s != WEB_SCOPE_NONE)
			abort();
		(void)web_scope_name(web_scope_parse(name));
	}

	if (body) {
		json_t *ev = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
		if (ev) {
			web_redact_event(ev, WEB_SCOPE_READ);
			json_t *b = json_object_get(json_object_get(ev, "summary"), "beneficiaries");
			size_t i;
			json_t *x;
			json_array_foreach(b, i, x) {
				if (json_object_get(x, "surname") || json_object_get(x, "given_name"))
					abort();
			}
			json_decref(ev);
		}
	}

	char out[32];
	web_log_safe(req, out, sizeof(out));
	if (strlen(out) >= sizeof(out))
		abort();
	for (const char *p = out; *p; p++)
		if (!isprint((unsigned char)*p))
			abort();

	free(host);
	free(origin);
	free(req);
	return 0;
}
