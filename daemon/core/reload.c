/* The reload path shared by SIGHUP and the Reload method: read the
 * configuration again (through the loader main() put in struct daemon),
 * take the keys that change at run time, tell each module (d->modules) with
 * its reload hook, and name in the log every other changed key that waits
 * for a restart. In the core so that the API (Reload) calls down to it
 * rather than up into main.c.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "daemon/core/daemon.h"
#include "daemon/core/notify.h"
#include "lib/log.h"

/* Keys that change at run time; everything else needs a restart. */
static bool
key_reloadable(const char *section, const char *key)
{
	return (!strcmp(section, "daemon") && !strcmp(key, "log_level")) ||
	       (!strcmp(section, "api") &&
	        (!strcmp(key, "allowed_users") || !strcmp(key, "allowed_groups")));
}

struct diff_arrays {
	json_t *reloaded, *restart;
};

static void
diff_cb(const char *section, const char *key, void *arg)
{
	struct diff_arrays *a = arg;
	char name[128];
	snprintf(name, sizeof(name), "%s.%s", section, key);
	if (key_reloadable(section, key))
		json_array_append_new(a->reloaded, json_string(name));
	else
		json_array_append_new(a->restart, json_string(name));
}

int
daemon_reload(struct daemon *d, json_t *reloaded, json_t *restart_needed)
{
	struct config *nc = NULL;
	char err[600];
	notify_reloading();
	int r = d->load_config(d, &nc, err, sizeof(err));
	if (r < 0) {
		log_err("reload: %s; keeping the running configuration", err);
		notify_status("running (reload failed: configuration has errors)");
		sd_notify(0, "READY=1");
		return r;
	}
	json_t *rel = json_array(), *rs = json_array();
	struct diff_arrays a = { rel, rs };
	config_diff(d->cfg, nc, diff_cb, &a);
	/* take the new values of the reloadable keys only: the running modules
	 * were built from the old config and keep it for the rest */
	struct config *old = d->cfg;
	char e2[200];
	char lvl[16];
	snprintf(lvl, sizeof(lvl), "%s", log_level_name((enum log_level)nc->log_level));
	config_set(old, "daemon", "log_level", lvl, e2, sizeof(e2));
	/* swapped, so that freeing nc frees the old lists (they leaked when
	 * they were overwritten: found by make memcheck) */
	struct config_list tu = old->allowed_users, tg = old->allowed_groups;
	old->allowed_users = nc->allowed_users;
	old->allowed_groups = nc->allowed_groups;
	nc->allowed_users = tu;
	nc->allowed_groups = tg;
	config_free(nc);
	log_set_level((enum log_level)old->log_level);
	for (const struct module *m = d->modules; m && m->name; m++)
		if (m->reload)
			m->reload(d, old);
	size_t i;
	json_t *v;
	json_array_foreach(rel, i, v) log_notice("reload: %s applied", json_string_value(v));
	json_array_foreach(rs, i, v)
		log_warn("reload: %s changed but needs a restart to take effect", json_string_value(v));
	if (json_array_size(rel) == 0 && json_array_size(rs) == 0)
		log_notice("reload: configuration unchanged");
	if (reloaded)
		json_array_extend(reloaded, rel);
	if (restart_needed)
		json_array_extend(restart_needed, rs);
	json_decref(rel);
	json_decref(rs);
	sd_notify(0, "READY=1\nSTATUS=running");
	return 0;
}

