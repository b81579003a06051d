/* Logging to stderr with journald priority prefixes ("<3>" ...).
 *
 * One process-wide level; thread-safe (one write(2) per line). Messages must
 * never hold a PIN, a key, a full NIR or raw identity APDU payloads: callers
 * mask with protocol/nir's nir_mask() (a card's NIR: card_nir_mask() of
 * daemon/cards/cards.h) where a NIR would help the reader of the log.
 * This module depends on nothing else in the project, so drivers may use it.
 */
#ifndef VITALED_LOG_H
#define VITALED_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARNING = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/* Set the threshold; messages above it are dropped. */
void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Parse "err|warning|notice|info|debug" (and "error", "warn"); -1 if unknown. */
int log_level_parse(const char *s);
const char *log_level_name(enum log_level lvl);
/* With prefix=0 (a terminal, not journald), lines carry a time and a level word. */
void log_set_journald(int on);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_err(...)     log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)    log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
