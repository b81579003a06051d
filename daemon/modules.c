/* The module list: init runs top to bottom, fini bottom to top. A module
 * added by a later part of vitaled goes here, after what it depends on. */
#include <stddef.h>

#include "daemon.h"

const struct module vitaled_modules[] = {
	{ "state", statedir_init, statedir_fini, NULL },
	{ "api", api_init, api_fini, api_reload },
	{ NULL, NULL, NULL, NULL },
};
