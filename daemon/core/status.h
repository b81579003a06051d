/* The status registry (GetStatus): providers registered by the modules.
 * Loop thread only. */
#ifndef VITALED_CORE_STATUS_H
#define VITALED_CORE_STATUS_H

#include <jansson.h>
#include <stdbool.h>

struct daemon;

/* A provider adds its fields to the GetStatus reply object. */
typedef void (*status_fn)(struct daemon *d, json_t *status, void *arg);
/* Register fn (at most 32 providers); 0 or -ENOSPC. */
int status_add_provider(status_fn fn, void *arg);
/* Forget every provider (at stop, and in tests). */
void status_clear_providers(void);
/* Build the full status object: the core's fields, then each provider's.
 * control says whether the peer may see control-level detail. The caller
 * owns the reference. */
json_t *status_build(struct daemon *d, bool control);

#endif
