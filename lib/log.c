/* Logging: see log.h. Lines go to stderr in one write each, so lines from
 * worker threads never interleave (or, with a sink set, to the sink: journald
 * with structured fields, daemon/core/journal.c). Under systemd (JOURNAL_STREAM set, or
 * --foreground without a tty) lines start with "<N>" so journald keeps the
 * priority; on a terminal they carry a timestamp and a level word instead. */
#include "lib/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_level = LOG_LVL_INFO;
static atomic_int g_journald = 1;
static _Atomic(log_sink_fn) g_sink;

void
log_set_sink(log_sink_fn fn)
{
	atomic_store(&g_sink, fn);
}

void
log_set_level(enum log_level lvl)
{
	atomic_store(&g_level, (int)lvl);
}

enum log_level
log_get_level(void)
{
	return (enum log_level)atomic_load(&g_level);
}

void
log_set_journald(int on)
{
	atomic_store(&g_journald, on ? 1 : 0);
}

static const struct {
	const char *name;
	enum log_level lvl;
} level_names[] = {
	{ "err", LOG_LVL_ERR },         { "error", LOG_LVL_ERR },
	{ "warning", LOG_LVL_WARNING }, { "warn", LOG_LVL_WARNING },
	{ "notice", LOG_LVL_NOTICE },   { "info", LOG_LVL_INFO },
	{ "debug", LOG_LVL_DEBUG },
};

int
log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(s, level_names[i].name) == 0)
			return (int)level_names[i].lvl;
	return -1;
}

const char *
log_level_name(enum log_level lvl)
{
	switch (lvl) {
	case LOG_LVL_ERR: return "err";
	case LOG_LVL_WARNING: return "warning";
	case LOG_LVL_NOTICE: return "notice";
	case LOG_LVL_INFO: return "info";
	case LOG_LVL_DEBUG: return "debug";
	}
	return "?";
}

/* Format one message: prefix (stderr's "<N>" or time and level), then the
 * text with newlines made spaces, a newline. Returns the length of the line;
 * *text is where the message itself starts. */
static size_t
format_line(char *line, size_t size, enum log_level lvl, size_t *text, const char *fmt, va_list ap)
{
	int n;
	if (atomic_load(&g_journald)) {
		n = snprintf(line, size, "<%d>", (int)lvl);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = snprintf(line, size, "%02d:%02d:%02d.%03ld %-7s ", tm.tm_hour,
		             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, log_level_name(lvl));
	}
	if (n < 0)
		return 0;
	int m = vsnprintf(line + n, size - (size_t)n - 1, fmt, ap);
	if (m < 0)
		return 0;
	size_t len = (size_t)n + (size_t)m;
	if (len > size - 2)
		len = size - 2;
	/* one line per message: a newline inside would let input forge log lines */
	for (size_t i = (size_t)n; i < len; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[len++] = '\n';
	line[len] = '\0';
	*text = (size_t)n;
	return len;
}

static void
emit(enum log_level lvl, const char *msgid, const char *reader, const char *sheet_id,
     const char *fmt, va_list ap)
{
	char line[2048];
	size_t text = 0;

	if ((int)lvl > atomic_load(&g_level))
		return;
	size_t len = format_line(line, sizeof(line), lvl, &text, fmt, ap);
	if (len == 0)
		return;
	log_sink_fn sink = atomic_load(&g_sink);
	if (sink) {
		line[len - 1] = '\0';
		int r = sink(lvl, line + text, msgid, reader, sheet_id);
		line[len - 1] = '\n';
		if (r >= 0)
			return;
	}
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void
log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	emit(lvl, NULL, NULL, NULL, fmt, ap);
}

void
log_ev(enum log_level lvl, const char *msgid, const char *reader, const char *sheet_id,
       const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	emit(lvl, msgid, reader, sheet_id, fmt, ap);
	va_end(ap);
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(lvl, fmt, ap);
	va_end(ap);
}
