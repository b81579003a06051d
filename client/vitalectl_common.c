/* vitalectl's shared helpers: the call wrappers every command uses
 * (connect on first use, errors printed the same way, exit codes) and the
 * JSON helpers. Commands in vitalectl.c and vitalectl_sheet.c use these;
 * this file uses neither, so the CLI's object graph has no cycle.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
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

/* --json mode's error object (see vitalectl.h): the last varlink error,
 * every line written on stderr, and whether a command printed its own JSON. */
static struct {
	bool on, printed;
	char *name;
	json_t *params;
	char *text;
	size_t len, cap;
	FILE *real;
} J;

static ssize_t
tee_write(void *cookie, const char *buf, size_t n)
{
	(void)cookie;
	if (J.len + n + 1 > J.cap && J.cap < 65536) {
		size_t nc = (J.cap ? J.cap : 256);
		while (nc < J.len + n + 1)
			nc *= 2;
		char *t = realloc(J.text, nc);
		if (t) {
			J.text = t;
			J.cap = nc;
		}
	}
	if (J.len + n + 1 <= J.cap) {
		memcpy(J.text + J.len, buf, n);
		J.len += n;
		J.text[J.len] = '\0';
	}
	/* people still see the lines (and a PIN prompt) at once */
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(STDERR_FILENO, buf + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	return (ssize_t)n;
}

void
ctl_json_errors_start(void)
{
	cookie_io_functions_t io = { .write = tee_write };
	FILE *f = fopencookie(NULL, "w", io);
	if (!f)
		return;
	setvbuf(f, NULL, _IONBF, 0);
	J.real = stderr;
	stderr = f;
	J.on = true;
}

static const char *
exit_name(int rc)
{
	switch (rc) {
	case EXIT_USAGE: return "vitalectl.Usage";
	case EXIT_UNREACHABLE: return "vitalectl.Unreachable";
	case EXIT_TRANSPORT: return "vitalectl.Transport";
	default: return "vitalectl.Failed";
	}
}

void
ctl_json_errors_finish(int rc)
{
	if (!J.on)
		return;
	if (rc != 0 && !J.printed) {
		/* the message without its "vitalectl: " prefixes and last newline */
		size_t n = J.len;
		while (n && J.text[n - 1] == '\n')
			n--;
		json_t *o = json_pack("{s:s,s:o,s:s%,s:i}", "error",
		                      rc == EXIT_REPLY_ERROR && J.name ? J.name : exit_name(rc),
		                      "parameters",
		                      rc == EXIT_REPLY_ERROR && J.params ? json_incref(J.params)
		                                                        : json_object(),
		                      "message", J.text ? J.text : "", n, "exit", rc);
		char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		if (s)
			puts(s);
		free(s);
		json_decref(o);
		fflush(stdout);
	}
	fclose(stderr);
	stderr = J.real;
	J.on = false;
	free(J.name);
	json_decref(J.params);
	free(J.text);
	J.name = NULL;
	J.params = NULL;
	J.text = NULL;
}

static void
remember_error(const char *name, json_t *params)
{
	free(J.name);
	json_decref(J.params);
	J.name = name ? strdup(name) : NULL;
	J.params = json_is_object(params) ? json_deep_copy(params) : NULL;
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
	if (r == VTC_ERROR_REPLY) {
		remember_error(*error, *reply);
		return EXIT_REPLY_ERROR;
	}
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
ctl_note_error(const char *name, json_t *params)
{
	remember_error(name, params);
}

void
print_json(json_t *j)
{
	J.printed = true;
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
