/* systemd notification (sd_notify): READY, STATUS, WATCHDOG, STOPPING.
 * Without NOTIFY_SOCKET every call is a cheap no-op, so vitaled runs the
 * same with or without systemd. Loop thread only. */
#ifndef VITALED_NOTIFY_H
#define VITALED_NOTIFY_H

#include "daemon/core/loop.h"

/* Arm the watchdog timer at half of WatchdogSec when systemd asks for one. */
void notify_init(struct loop *l);
void notify_fini(struct loop *l);
void notify_ready(const char *status);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void notify_stopping(void);
void notify_reloading(void);

#endif
