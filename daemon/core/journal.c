/* journald sink for lib/log: see journal.h. */
#include "daemon/core/journal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* no CODE_FILE=/CODE_LINE=: they would always name this file */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "lib/log.h"

bool
journal_stream_is(int fd)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	char tail;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return false;
	if (fstat(fd, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* one field "KEY=value", value cut to keep the buffer bounded */
static void
field(struct iovec *iov, size_t *n, char *buf, size_t size, const char *key, const char *value)
{
	int k = snprintf(buf, size, "%s=%s", key, value);
	if (k < 0)
		return;
	iov[*n].iov_base = buf;
	iov[*n].iov_len = (size_t)k < size ? (size_t)k : size - 1;
	(*n)++;
}

static int
journal_sink(enum log_level lvl, const char *msg, const char *msgid, const char *reader,
             const char *sheet_id)
{
	char fmsg[2100], fprio[16], fident[] = "SYSLOG_IDENTIFIER=vitaled", fid[48], freader[300],
	     fsheet[120];
	struct iovec iov[6];
	size_t n = 0;

	field(iov, &n, fmsg, sizeof(fmsg), "MESSAGE", msg);
	snprintf(fprio, sizeof(fprio), "PRIORITY=%d", (int)lvl);
	iov[n].iov_base = fprio;
	iov[n++].iov_len = strlen(fprio);
	iov[n].iov_base = fident;
	iov[n++].iov_len = strlen(fident);
	if (msgid)
		field(iov, &n, fid, sizeof(fid), "MESSAGE_ID", msgid);
	if (reader)
		field(iov, &n, freader, sizeof(freader), "READER", reader);
	if (sheet_id)
		field(iov, &n, fsheet, sizeof(fsheet), "SHEET_ID", sheet_id);
	return sd_journal_sendv(iov, (int)n);
}

bool
journal_setup(void)
{
	if (!journal_stream_is(2))
		return false;
	log_set_sink(journal_sink);
	return true;
}

void
journal_reset(void)
{
	log_set_sink(NULL);
}
