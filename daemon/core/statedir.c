/* The state directory (queue, keys, terminal id): created 0700 if missing,
 * refused when another user owns it or may write in it, locked for one
 * daemon at a time before anything else starts (the API socket included),
 * checked writable before READY, and the home of the terminal id. The
 * terminal id is the configured one, or one made at first start and kept in
 * <state_dir>/terminal-id so it never changes under the insurer's feet. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/core/daemon.h"
#include "lib/fsutil.h"
#include "lib/log.h"

static int instance_fd = -1;

/* The directory must be ours and closed to everyone else: another user who
 * can write in it could plant files or links for us to follow. Read and
 * search bits for others are taken away (0700); write access for others,
 * another owner or a symbolic link is refused. */
static int
check_dir(const char *dir)
{
	struct stat st;
	if (lstat(dir, &st) < 0) {
		log_err("state dir %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_err("state dir %s: not a directory (a symbolic link is refused)", dir);
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid()) {
		log_err("state dir %s: owned by uid %u, not by this daemon's uid %u: "
		        "chown it to the service user", dir, (unsigned)st.st_uid, (unsigned)geteuid());
		return -EPERM;
	}
	if (st.st_mode & 022) {
		log_err("state dir %s: mode %04o lets other users write in it: "
		        "check what is inside, then chmod 0700 %s", dir, (unsigned)(st.st_mode & 07777), dir);
		return -EPERM;
	}
	if ((st.st_mode & 077) && chmod(dir, 0700) == 0)
		log_notice("state dir %s: mode %04o tightened to 0700", dir,
		           (unsigned)(st.st_mode & 07777));
	return 0;
}

/* One daemon per state directory, decided before anything else is touched
 * (the API socket included): a second instance stops here. */
static int
take_instance_lock(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/vitaled.lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_err("%s: %s", path, strerror(errno));
		return -errno;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK) {
			log_err("state dir %s is in use by another vitaled; not starting", dir);
			return -EBUSY;
		}
		log_err("%s: lock: %s", path, strerror(e));
		return -e;
	}
	instance_fd = fd;
	return 0;
}

/* A terminal id goes into every batch, status and log: printable, no
 * spaces, 1 to 64 characters of [A-Za-z0-9._-]. */
static bool
terminal_id_valid(const char *s, size_t len)
{
	if (len == 0 || len > 64)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

int
statedir_init(struct daemon *d)
{
	const char *dir = d->cfg->state_dir;
	umask(077);
	int r = fs_mkdir_p(dir, 0700);
	if (r < 0) {
		log_err("state dir %s: cannot create: %s", dir, strerror(-r));
		return r;
	}
	if ((r = check_dir(dir)) < 0 || (r = take_instance_lock(dir)) < 0)
		return r;
	if ((r = fs_probe_writable(dir)) == -ENOSPC) {
		/* a full disk: start anyway, the queue opens read-only (issue 11, 12) */
		log_warn("state dir %s: the disk is full: starting with the queue read-only", dir);
	} else if (r < 0) {
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
		if (terminal_id_valid(buf, len) && len < sizeof(d->terminal_id)) {
			memcpy(d->terminal_id, buf, len + 1);
			free(buf);
			return 0;
		}
		free(buf);
		log_err("%s: not a valid terminal id (1 to 64 of A-Z a-z 0-9 . _ -); "
		        "remove the file or set [daemon] terminal_id", path);
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
	if (instance_fd >= 0)
		close(instance_fd);   /* the lock goes with it */
	instance_fd = -1;
}
