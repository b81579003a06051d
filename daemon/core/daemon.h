/* The daemon's shared context and its module list.
 *
 * main.c owns one struct daemon. Modules (state dir, API, readers, queue,
 * uploader ...) get it at init and keep what they need. Each module
 * contributes to GetStatus through a status provider, so the status method
 * knows no module by name.
 */
#ifndef VITALED_DAEMON_H
#define VITALED_DAEMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf/config.h"
#include "daemon/core/loop.h"
#include "daemon/core/status.h"
#include "daemon/core/varlink.h"

#define TERMINAL_IFACE "io.vitaled.Terminal"
/* A named error of the interface: VL_ERR("NoCard") */
#define VL_ERR(name) TERMINAL_IFACE "." name

struct module;

struct daemon {
	const struct module *modules;   /* the list main() brings up (NULL-terminated) */
	/* Read the configuration again as at start (file and command line);
	 * 0 or a negative errno with err filled. Used by daemon_reload. */
	int (*load_config)(struct daemon *d, struct config **out, char *err, size_t errlen);
	struct loop *loop;
	struct config *cfg;     /* current configuration; replaced on reload */
	struct vl_server *api;
	uint64_t start_ms;      /* monotonic */
	char terminal_id[65];
	const char *state;      /* "starting", "running", "stopping" */
	int listen_fd;          /* from socket activation, or -1 */
	bool stopping;
};

/* A module: init in list order, fini in reverse. init returns 0 or a
 * negative errno after logging why; a failed init stops start-up. */
struct module {
	const char *name;
	int (*init)(struct daemon *d);
	void (*fini)(struct daemon *d);
	/* Called after a successful reload with the old and new config; may be NULL. */
	void (*reload)(struct daemon *d, const struct config *old);
};


/* The reload path shared by SIGHUP and the Reload method (daemon/core/reload.c): reads the config
 * file again, applies what can change at run time, and fills the two arrays
 * (if not NULL) with "section.key" names. Returns 0 or a negative errno
 * (the old config stays in force). */
int daemon_reload(struct daemon *d, json_t *reloaded, json_t *restart_needed);

/* Modules of the core, in daemon/. */
int statedir_init(struct daemon *d);
void statedir_fini(struct daemon *d);
int api_init(struct daemon *d);
void api_fini(struct daemon *d);
void api_reload(struct daemon *d, const struct config *old);

#endif
