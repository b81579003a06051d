/* The state directory (queue, keys, terminal id): created 0700 if missing,
 * checked writable before READY, and the home of the terminal id. The
 * terminal id is the configured one, or one made at first start and kept in
 * <state_dir>/terminal-id so it never changes under the insurer's feet. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "daemon/core/daemon.h"
#include "lib/fsutil.h"
#include "lib/log.h"

int
statedir_init(struct daemon *d)
{
	const char *dir = d->cfg->state_dir;
	int r = fs_mkdir_p(dir, 0700);
	if (r < 0) {
		log_err("state dir %s: cannot create: %s", dir, strerror(-r));
		return r;
	}
	if ((r = fs_probe_writable(dir)) < 0) {
		log_err("state dir %s: not writable: %s", dir, strerror(-r));
		return r;
	}
	if (d->cfg->terminal_id[0]) {
		snprintf(d->terminal_id, sizeof(d->terminal_id), "%s", d->cfg->terminal_id);
		return 0;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/terminal-id", dir);
	char *buf = NULL;
	size_t len = 0;
	r = fs_read_file(path, 128, &buf, &len);
	if (r == 0) {
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
			buf[--len] = '\0';
		if (len > 0 && len < sizeof(d->terminal_id)) {
			memcpy(d->terminal_id, buf, len + 1);
			free(buf);
			return 0;
		}
		free(buf);
		log_err("%s: bad terminal id; remove the file or set [daemon] terminal_id", path);
		return -EINVAL;
	}
	if (r != -ENOENT) {
		log_err("%s: %s", path, strerror(-r));
		return r;
	}
	unsigned char rnd[6];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return -EIO;
	snprintf(d->terminal_id, sizeof(d->terminal_id), "VT-%02X%02X%02X%02X%02X%02X", rnd[0],
	         rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
	char line[80];
	int n = snprintf(line, sizeof(line), "%s\n", d->terminal_id);
	if ((r = fs_write_atomic(path, line, (size_t)n, 0600)) < 0) {
		log_err("%s: cannot write: %s", path, strerror(-r));
		return r;
	}
	log_notice("new terminal id %s", d->terminal_id);
	return 0;
}

void
statedir_fini(struct daemon *d)
{
	(void)d;
}
