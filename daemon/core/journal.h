/* journald with structured fields: when stderr is journald's stream (systemd
 * says so in JOURNAL_STREAM=device:inode, which must match stderr's own), every
 * message goes through sd_journal_sendv with MESSAGE=, PRIORITY=,
 * SYSLOG_IDENTIFIER=vitaled and, for the events an operator filters on,
 * MESSAGE_ID=, READER=, SHEET_ID= (lib/log.h log_ev, docs/journal.md).
 * Anywhere else (a terminal, a pipe, another supervisor) plain lines on
 * stderr as before. */
#ifndef VITALED_CORE_JOURNAL_H
#define VITALED_CORE_JOURNAL_H

#include <stdbool.h>

/* True when JOURNAL_STREAM names the file open on fd (stderr: 2). */
bool journal_stream_is(int fd);
/* Install the journald sink if stderr is journald's stream; returns whether it did. */
bool journal_setup(void);
/* Back to plain lines (tests). */
void journal_reset(void);

#endif
