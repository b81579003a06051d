/* The status registry: every module adds its fields to GetStatus (and to
 * systemd's STATUS= line) through a provider registered at its init, so
 * neither the API nor this file knows any module by name, and no module
 * calls into the API to be seen.
 */
#include <errno.h>
#include <stddef.h>

#include "daemon/core/daemon.h"
#include "daemon/core/loop.h"


struct provider {
	status_fn fn;
	void *arg;
};
static struct provider providers[32];
static size_t nproviders;

int
status_add_provider(status_fn fn, void *arg)
{
	if (nproviders >= sizeof(providers) / sizeof(providers[0]))
		return -ENOSPC;
	providers[nproviders++] = (struct provider){ fn, arg };
	return 0;
}

void
status_clear_providers(void)
{
	nproviders = 0;
}

json_t *
status_build(struct daemon *d, bool control)
{
	uint64_t up = (loop_now_ms() - d->start_ms) / 1000u;
	json_t *uploader;
	if (!d->cfg->insurer_url[0])
		uploader = json_pack("{s:s,s:s,s:n}", "state", "disabled", "reason",
		                     "no insurer configured", "last_success");
	else
		uploader = json_pack("{s:s,s:s,s:n}", "state", "unavailable", "reason",
		                     "this version has no uploader", "last_success");
	json_t *st = json_pack(
		"{s:s,s:I,s:s,s:s,s:s,s:s,s:[],s:{s:s,s:i,s:i,s:n,s:n},s:o}", "version",
		VITALED_VERSION, "uptime_s", (json_int_t)up, "mode", d->cfg->mode, "terminal_id",
		d->terminal_id, "state", d->state, "access", control ? "control" : "read", "readers",
		"queue", "state", "not-open", "total", 0, "queued", 0, "oldest", "next_due",
		"uploader", uploader);
	for (size_t i = 0; i < nproviders; i++)
		providers[i].fn(d, st, providers[i].arg);
	return st;
}

