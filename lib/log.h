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

/* Where messages go instead of stderr (daemon/core/journal.c sets one when
 * stderr is journald's stream): msg is the formatted, one-line message;
 * msgid, reader and sheet_id may be NULL. A sink returning < 0 makes the
 * message go to stderr as a line after all. NULL: stderr. */
typedef int (*log_sink_fn)(enum log_level lvl, const char *msg, const char *msgid,
                           const char *reader, const char *sheet_id);
void log_set_sink(log_sink_fn fn);

void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* An event an operator filters on: journald gets MESSAGE_ID=msgid (one of
 * LOG_ID_* below, documented in docs/journal.md) and READER=, SHEET_ID= when
 * not NULL; on stderr the line is the same as log_msg's. */
void log_ev(enum log_level lvl, const char *msgid, const char *reader, const char *sheet_id,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* MESSAGE_IDs (journalctl MESSAGE_ID=...); never change one once shipped */
#define LOG_ID_READY           "9a3c7d2e5b14480f8e61f0c2a7d95b31" /* started, API listening */
#define LOG_ID_STOPPING        "4be1f09c7a2d4c6b9d35e8f1027ac6d4" /* SIGTERM/SIGINT */
#define LOG_ID_READER_ADDED    "0c5f6a7e91d24b3e8a4c2d1f9b6e7a80" /* READER= */
#define LOG_ID_READER_REMOVED  "e27b4d9a6c8f4e15b3a0d7c6f1e2b948" /* READER= */
#define LOG_ID_CARD_READ       "5d81c3f4a2b94e7c9f06e1d8b3a7c2f5" /* READER= */
#define LOG_ID_CARD_REFUSED    "b6e2a9d4c7f14a38a5e0f3b9d2c61e77" /* READER= */
#define LOG_ID_CARD_OPPOSED    "71f4c8e2d9a64b05b8c3e6f1a0d9274c" /* READER= */
#define LOG_ID_SESSION_ABORTED "c3a8e5f1b7d2460c9e4a1f6d8b2c5e93" /* READER= */
#define LOG_ID_SHEET_QUEUED    "2f9d6b1e8c4a47d3b0e5a9c7f3d1b864" /* SHEET_ID= */
#define LOG_ID_DRAFT_CREATED   "8e3b7f2a5d9c4016a7f2c8e4b1d6a395" /* SHEET_ID= READER= */
#define LOG_ID_SHEET_NOT_STORED "d4c9a2e7f6b148e3b1d5c0a8e9f27b16" /* SHEET_ID= */
#define LOG_ID_UPLOAD_STOPPED  "6a1e8d3c9f2b4e7a8c5d0b3f7e4a9c21" /* upload paused: auth, TLS, insurer */

#define log_err(...)     log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)    log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
