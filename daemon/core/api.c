/* The local API: the varlink server on the daemon's socket, peer access
 * rules, and the io.vitaled.Terminal methods of the core (GetStatus,
 * Reload). Other modules register their own methods on d->api after this
 * module's init.
 *
 * Access: every peer that can open the socket (mode 0660, group from the
 * config) may read status; "control" methods (PINs, cards, sheets, reload)
 * need the peer's uid in [api] allowed_users, or one of its groups in
 * [api] allowed_groups, or to be the daemon's own uid. Names or numbers.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon/core/daemon.h"
#include "lib/log.h"

struct iface_text {
	const char *name;
	const char *text;
};
extern const struct iface_text vitaled_ifaces[];

/* ------------------------------------------------------------------ */
/* access */

static bool
name_or_id_match(const struct config_list *l, const char *name, unsigned id)
{
	char num[24];
	snprintf(num, sizeof(num), "%u", id);
	return config_list_has(l, num) || (name && config_list_has(l, name));
}

static void
api_access(struct vl_peer *peer, void *arg)
{
	struct daemon *d = arg;
	const struct config *c = d->cfg;
	peer->control = false;
	if (peer->uid == geteuid()) {
		peer->control = true;
		return;
	}
	struct passwd pw, *pwp = NULL;
	char buf[4096];
	getpwuid_r(peer->uid, &pw, buf, sizeof(buf), &pwp);
	if (name_or_id_match(&c->allowed_users, pwp ? pwp->pw_name : NULL, peer->uid)) {
		peer->control = true;
		return;
	}
	gid_t groups[64];
	int ng = 64;
	groups[0] = peer->gid;
	if (pwp) {
		if (getgrouplist(pwp->pw_name, peer->gid, groups, &ng) < 0)
			ng = 64;
	} else {
		ng = 1;
	}
	for (int i = 0; i < ng; i++) {
		struct group gr, *grp = NULL;
		getgrgid_r(groups[i], &gr, buf, sizeof(buf), &grp);
		if (name_or_id_match(&c->allowed_groups, grp ? grp->gr_name : NULL, groups[i])) {
			peer->control = true;
			return;
		}
	}
}

/* ------------------------------------------------------------------ */
/* methods */

static int
m_get_status(struct vl_call *call, json_t *params, void *arg)
{
	struct daemon *d = arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	return vl_reply(call, status_build(d, vl_call_peer(call)->control));
}

static int
m_reload(struct vl_call *call, json_t *params, void *arg)
{
	struct daemon *d = arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	json_t *rel = json_array(), *rs = json_array();
	int r = daemon_reload(d, rel, rs);
	if (r < 0) {
		json_decref(rel);
		json_decref(rs);
		return vl_reply_error(call, TERMINAL_IFACE ".InternalError",
		                      json_pack("{s:s}", "reason", "configuration file has errors; see the log"));
	}
	return vl_reply(call, json_pack("{s:o,s:o}", "reloaded", rel, "restart_needed", rs));
}

int
api_init(struct daemon *d)
{
	const struct config *c = d->cfg;
	char err[256];
	gid_t gid = (gid_t)-1;
	if (c->socket_group[0]) {
		struct group *gr = getgrnam(c->socket_group);
		if (gr)
			gid = gr->gr_gid;
		else
			log_info("api: group '%s' does not exist; socket keeps the daemon's group",
			         c->socket_group);
	}
	struct vl_server_opts o = {
		.path = c->socket_path,
		.mode = (unsigned)c->socket_mode,
		.gid = gid,
		.max_message = (size_t)c->api_max_message,
		.max_output = (size_t)c->api_max_output,
		.max_clients = (unsigned)c->api_max_clients,
		.idle_timeout_ms = (unsigned)c->api_idle_timeout_s * 1000u,
		.vendor = "vitaled project",
		.product = "vitaled",
		.version = VITALED_VERSION,
		.url = "https://github.com/vitaled/vitaled",
		.error_prefix = TERMINAL_IFACE,
		.access = api_access,
		.access_arg = d,
	};
	int r = vl_server_new(d->loop, &o, d->listen_fd, &d->api, err, sizeof(err));
	if (r < 0) {
		log_err("api: %s", err);
		return r;
	}
	for (const struct iface_text *it = vitaled_ifaces; it->name; it++)
		vl_server_add_interface(d->api, it->name, it->text);
	vl_server_add_method(d->api, TERMINAL_IFACE ".GetStatus", m_get_status, d, 0);
	vl_server_add_method(d->api, TERMINAL_IFACE ".Reload", m_reload, d, VL_CONTROL);
	log_info("api: listening on %s", d->listen_fd >= 0 ? "socket from systemd" : c->socket_path);
	return 0;
}

void
api_fini(struct daemon *d)
{
	vl_server_free(d->api);
	d->api = NULL;
}

void
api_reload(struct daemon *d, const struct config *old)
{
	(void)old;
	/* access rules are read at each connect from d->cfg; connections
	 * already open are judged again now (docs: "at once") */
	if (d->api)
		vl_server_reaccess(d->api);
}
