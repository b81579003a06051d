/* The bridge's pure rules; see policy.h. */
#include "web/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum web_scope
web_scope_parse(const char *s)
{
	if (!s)
		return WEB_SCOPE_NONE;
	if (!strcmp(s, "read"))
		return WEB_SCOPE_READ;
	if (!strcmp(s, "control"))
		return WEB_SCOPE_CONTROL;
	if (!strcmp(s, "pin"))
		return WEB_SCOPE_PIN;
	return WEB_SCOPE_NONE;
}

const char *
web_scope_name(enum web_scope s)
{
	switch (s) {
	case WEB_SCOPE_READ: return "read";
	case WEB_SCOPE_CONTROL: return "control";
	case WEB_SCOPE_PIN: return "pin";
	default: return "none";
	}
}

/* ":port" after a name, or nothing. */
static bool
port_ok(const char *rest, unsigned port)
{
	if (*rest == '\0')
		return true;
	if (*rest != ':' || rest[1] == '\0' || strlen(rest + 1) > 5)
		return false;
	unsigned v = 0;
	for (const char *p = rest + 1; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (unsigned)(*p - '0');
	}
	return v == port;
}

bool
web_host_ok(const char *host, unsigned port)
{
	static const char *const names[] = { "127.0.0.1", "localhost", "[::1]" };
	if (!host || strlen(host) > 64)
		return false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t n = strlen(names[i]);
		if (strncasecmp(host, names[i], n) == 0 && port_ok(host + n, port))
			return true;
	}
	return false;
}

bool
web_origin_allowed(const struct config_list *allowed, const char *origin)
{
	if (!origin || !*origin || !strcmp(origin, "null"))
		return false;
	for (size_t i = 0; i < allowed->n; i++)
		if (!strcmp(allowed->v[i], origin))
			return true;
	return false;
}

bool
web_origin_own(const char *origin, const char *host)
{
	if (!origin || !host || strncmp(origin, "http://", 7) != 0)
		return false;
	return strcasecmp(origin + 7, host) == 0;
}

struct method_rule {
	const char *name;
	enum web_scope scope;
};

/* Every io.vitaled.Terminal method the bridge forwards. Not here, so never
 * forwarded: Reload (configuration is for the terminal's administrator),
 * anything of another interface. */
static const struct method_rule methods[] = {
	{ "GetStatus", WEB_SCOPE_READ },       { "ListReaders", WEB_SCOPE_READ },
	{ "QueueStats", WEB_SCOPE_READ },      { "ListSheets", WEB_SCOPE_READ },
	{ "GetSigner", WEB_SCOPE_READ },       { "GetCard", WEB_SCOPE_CONTROL },
	{ "CreateSheet", WEB_SCOPE_CONTROL },  { "CreateDraft", WEB_SCOPE_CONTROL },
	{ "CompleteDraft", WEB_SCOPE_CONTROL }, { "GetSheet", WEB_SCOPE_CONTROL },
	{ "ExportSheet", WEB_SCOPE_CONTROL },  { "Upload", WEB_SCOPE_CONTROL },
	{ "CheckRights", WEB_SCOPE_CONTROL },  { "SignerSelfTest", WEB_SCOPE_CONTROL },
	{ "SubmitPin", WEB_SCOPE_PIN },        { "UnblockPin", WEB_SCOPE_PIN },
};

enum web_scope
web_method_scope(const char *method)
{
	if (!method)
		return WEB_SCOPE_NONE;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (!strcmp(methods[i].name, method))
			return methods[i].scope;
	return WEB_SCOPE_NONE;
}

bool
web_method_name_ok(const char *method)
{
	size_t n = method ? strlen(method) : 0;
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = method[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

void
web_redact_event(json_t *event, enum web_scope scope)
{
	if (scope >= WEB_SCOPE_CONTROL || !json_is_object(event))
		return;
	json_t *bs = json_object_get(json_object_get(event, "summary"), "beneficiaries");
	size_t i;
	json_t *b;
	json_array_foreach(bs, i, b) {
		json_object_del(b, "surname");
		json_object_del(b, "given_name");
	}
}

char *
web_log_safe(const char *s, char *out, size_t outlen)
{
	size_t o = 0;
	for (; s && *s && o + 1 < outlen; s++)
		out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	out[o] = '\0';
	return out;
}
