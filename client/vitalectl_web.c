/* vitalectl web ...: the local web bridge's pairings and tokens, over the
 * bridge's control socket (vitaled-web, docs/web-bridge.md): --web-socket
 * PATH, else $VITALED_WEB_SOCKET, else /run/vitaled-web/control.sock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/vitalectl.h"

#define WEB_DEFAULT_SOCKET "/run/vitaled-web/control.sock"
#define WIFACE "io.vitaled.Web."

static int
web_usage(void)
{
	fprintf(stderr, "usage: vitalectl web [--web-socket PATH] pair [CODE [read|control|pin]]\n"
	                "       vitalectl web [--web-socket PATH] deny CODE\n"
	                "       vitalectl web [--web-socket PATH] list | revoke ID|all | status\n");
	return EXIT_USAGE;
}

static void
print_pending(json_t *r)
{
	json_t *a = json_object_get(r, "pending");
	if (json_array_size(a) == 0) {
		printf("no pairing waits for approval\n");
		return;
	}
	size_t i;
	json_t *p;
	printf("%-8s %-8s %-32s %s\n", "CODE", "SCOPE", "ORIGIN", "APPLICATION");
	json_array_foreach(a, i, p) {
		printf("%-8s %-8s %-32s %s (%llds left)\n", jstr(p, "code", "?"), jstr(p, "scope", "?"),
		       jstr(p, "origin", "?"), jstr(p, "app", "?"),
		       (long long)json_integer_value(json_object_get(p, "expires_in_s")));
	}
	printf("compare the code with the one the page shows, then: vitalectl web pair CODE\n");
}

static void
print_tokens(json_t *r)
{
	json_t *a = json_object_get(r, "tokens");
	if (json_array_size(a) == 0) {
		printf("no paired application\n");
		return;
	}
	size_t i;
	json_t *t;
	printf("%-16s %-8s %-32s %-20s %s\n", "ID", "SCOPE", "ORIGIN", "PAIRED", "APPLICATION");
	json_array_foreach(a, i, t) {
		time_t c = (time_t)json_integer_value(json_object_get(t, "created"));
		char when[32];
		struct tm tm;
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M", gmtime_r(&c, &tm));
		printf("%-16s %-8s %-32s %-20s %s\n", jstr(t, "id", "?"), jstr(t, "scope", "?"),
		       jstr(t, "origin", "?"), when, jstr(t, "app", "?"));
	}
}

static int
web_call(struct ctl *ctl, const char *method, json_t *params, json_t **reply)
{
	char full[64];
	snprintf(full, sizeof(full), WIFACE "%s", method);
	int r = ctl_call(ctl, full, params, reply);
	if (r == 0 && ctl->json) {
		print_json(*reply);
		json_decref(*reply);
		*reply = NULL;
		return -1;
	}
	return r;
}

int
cmd_web(struct ctl *ctl, int argc, char **argv)
{
	int i = 1;
	const char *sock = getenv("VITALED_WEB_SOCKET");
	if (i + 1 < argc && !strcmp(argv[i], "--web-socket")) {
		sock = argv[i + 1];
		i += 2;
	}
	ctl->socket = sock && *sock ? sock : WEB_DEFAULT_SOCKET;
	if (i >= argc)
		return web_usage();
	const char *sub = argv[i++];
	int n = argc - i;
	json_t *r = NULL;
	int rc;
	if (!strcmp(sub, "pair") && n == 0) {
		if ((rc = web_call(ctl, "ListPending", NULL, &r)) == 0)
			print_pending(r);
	} else if (!strcmp(sub, "pair") && (n == 1 || n == 2)) {
		json_t *p = json_pack("{s:s}", "code", argv[i]);
		if (n == 2)
			json_object_set_new(p, "scope", json_string(argv[i + 1]));
		if ((rc = web_call(ctl, "Approve", p, &r)) == 0)
			printf("approved: %s (%s) may use the terminal with scope %s; token id %s\n"
			       "(revoke it with: vitalectl web revoke %s)\n",
			       jstr(r, "origin", "?"), jstr(r, "app", "?"), jstr(r, "scope", "?"),
			       jstr(r, "id", "?"), jstr(r, "id", "?"));
	} else if (!strcmp(sub, "deny") && n == 1) {
		if ((rc = web_call(ctl, "Deny", json_pack("{s:s}", "code", argv[i]), &r)) == 0)
			printf("pairing %s refused\n", argv[i]);
	} else if (!strcmp(sub, "list") && n == 0) {
		if ((rc = web_call(ctl, "ListTokens", NULL, &r)) == 0)
			print_tokens(r);
	} else if (!strcmp(sub, "revoke") && n == 1) {
		if ((rc = web_call(ctl, "Revoke", json_pack("{s:s}", "id", argv[i]), &r)) == 0)
			printf("revoked %lld token(s)\n", (long long)json_integer_value(json_object_get(r, "revoked")));
	} else if (!strcmp(sub, "status") && n == 0) {
		if ((rc = web_call(ctl, "GetStatus", NULL, &r)) == 0) {
			char *s = json_dumps(r, JSON_INDENT(2));
			printf("%s\n", s ? s : "");
			free(s);
		}
	} else {
		return web_usage();
	}
	json_decref(r);
	return rc < 0 ? 0 : rc;
}
