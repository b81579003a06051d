/* vitalectl's shared helpers: the call wrappers every command uses
 * (connect on first use, errors printed the same way, exit codes) and the
 * JSON helpers. Commands in vitalectl.c and vitalectl_sheet.c use these;
 * this file uses neither, so the CLI's object graph has no cycle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/vitalectl.h"

int
ctl_connect(struct ctl *ctl)
{
	if (ctl->conn)
		return 0;
	int r = vtc_connect(ctl->socket, ctl->timeout_ms, &ctl->conn);
	if (r < 0) {
		fprintf(stderr, "vitalectl: cannot reach vitaled at %s: %s\n",
		        vtc_socket_path(ctl->socket), strerror(-r));
		return EXIT_UNREACHABLE;
	}
	return 0;
}

int
ctl_call_err(struct ctl *ctl, const char *method, json_t *params, json_t **reply, char **error)
{
	*reply = NULL;
	*error = NULL;
	int r = ctl_connect(ctl);
	if (r) {
		json_decref(params);
		return r;
	}
	r = vtc_call(ctl->conn, method, params, 0, reply, error);
	if (r == VTC_ERROR_REPLY)
		return EXIT_REPLY_ERROR;
	if (r < 0) {
		fprintf(stderr, "vitalectl: %s: %s\n", method,
		        r == -EPIPE ? "connection closed by vitaled" : strerror(-r));
		return EXIT_TRANSPORT;
	}
	return 0;
}

int
ctl_call_human(struct ctl *ctl, const char *method, json_t *params, json_t **reply)
{
	int rc = ctl_call(ctl, method, params, reply);
	if (rc || !ctl->json)
		return rc;
	print_json(*reply);
	json_decref(*reply);
	*reply = NULL;
	return -1;
}

int
ctl_call(struct ctl *ctl, const char *method, json_t *params, json_t **reply)
{
	char *err = NULL;
	int r = ctl_call_err(ctl, method, params, reply, &err);
	if (r == EXIT_REPLY_ERROR) {
		char *p = json_dumps(*reply, JSON_COMPACT);
		fprintf(stderr, "vitalectl: %s: %s %s\n", method, err, p ? p : "");
		free(p);
		free(err);
		json_decref(*reply);
		*reply = NULL;
	}
	return r;
}

void
print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
	if (s) {
		puts(s);
		free(s);
	}
}

const char *
jstr(json_t *o, const char *key, const char *dflt)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : dflt;
}
