/* Fuzz target for the web bridge's control socket (web/ctl.c): one request
 * as `vitalectl web` sends it (a varlink message without its NUL) through
 * web_ctl_handle against a live token store in a temporary directory.
 * Invariants checked: every input gets an answer, and the answer is a JSON
 * object with "parameters" (an object) and, for an error, "error" (a name). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "web/bridge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bridge b;
static char dir[] = "/tmp/fuzz_webctl.XXXXXX";

static void
cleanup(void)
{
	char p[64];
	snprintf(p, sizeof(p), "%s/tokens.json", dir);
	unlink(p);
	rmdir(dir);
}

static void
init(void)
{
	static struct config *cfg;
	char err[256];
	if (config_load(NULL, &cfg, err, sizeof(err)) < 0 || !mkdtemp(dir) ||
	    web_store_open(dir, 60, &b.store, err, sizeof(err)) < 0)
		abort();
	b.cfg = cfg;
	atexit(cleanup);
	/* something to list, approve and revoke */
	char pid[WEB_PAIR_ID_LEN + 1], code[7];
	for (int i = 0; i < 3; i++)
		web_pair_start(b.store, "http://localhost:8080", "fuzz", WEB_SCOPE_READ, pid, code);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!b.store)
		init();
	char *out = web_ctl_handle(&b, (const char *)data, size);
	if (!out)
		abort();
	json_t *j = json_loads(out, 0, NULL);
	json_t *err = json_object_get(j, "error");
	if (!json_is_object(j) || !json_is_object(json_object_get(j, "parameters")) ||
	    (err && !json_is_string(err)))
		abort();
	json_decref(j);
	free(out);
	return 0;
}
