/* sd_notify wrapper; see notify.h. The watchdog ping runs from the main
 * loop's timer, so a stuck loop stops pinging and systemd restarts us:
 * exactly what the watchdog is for. */
#include "daemon/core/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "lib/log.h"

static uint64_t wd_interval_ms;
static uint64_t wd_timer;

static void
wd_cb(struct loop *l, void *arg)
{
	sd_notify(0, "WATCHDOG=1");
	wd_timer = loop_timer_add(l, wd_interval_ms, wd_cb, NULL);
}

void
notify_init(struct loop *l)
{
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		wd_interval_ms = usec / 2000u;
		if (wd_interval_ms == 0)
			wd_interval_ms = 1;
		log_info("watchdog: pinging every %llu ms", (unsigned long long)wd_interval_ms);
		wd_timer = loop_timer_add(l, wd_interval_ms, wd_cb, NULL);
	}
}

void
notify_fini(struct loop *l)
{
	if (wd_timer)
		loop_timer_cancel(l, wd_timer);
	wd_timer = 0;
}

void
notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void
notify_status(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sd_notifyf(0, "STATUS=%s", buf);
}

void
notify_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

void
notify_reloading(void)
{
	sd_notify(0, "RELOADING=1");
}
