/* Durable-file helpers; see fsutil.h. The write path is the classic one
 * (write temp → fsync → rename → fsync dir), as Redis and OpenSMTPD do, so a
 * crash leaves either the old or the new file, never a torn one. */
#include "lib/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
fs_mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char save = buf[i];
			buf[i] = '\0';
			if (mkdir(buf, mode) < 0 && errno != EEXIST)
				return -errno;
			buf[i] = save;
		}
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int
fs_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static int
dir_of(const char *path, char *out, size_t outlen)
{
	if (strlen(path) >= outlen)
		return -ENAMETOOLONG;
	memcpy(out, path, strlen(path) + 1);
	char *d = dirname(out);
	if (d != out)
		memmove(out, d, strlen(d) + 1);
	return 0;
}

int
fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[4200], dir[4096];
	int fd = -1, r;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	if ((r = dir_of(path, dir, sizeof(dir))) < 0)
		return r;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0)
		goto fail;
	const char *p = data;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	return fs_fsync_dir(dir);
fail:
	r = -errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return r;
}

int
fs_read_file(const char *path, size_t max, char **out, size_t *outlen)
{
	*out = NULL;
	if (outlen)
		*outlen = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	if ((size_t)st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	*out = buf;
	if (outlen)
		*outlen = got;
	return 0;
}

int
fs_probe_writable(const char *dir)
{
	char p[4200];
	if (snprintf(p, sizeof(p), "%s/.probe.%d", dir, (int)getpid()) >= (int)sizeof(p))
		return -ENAMETOOLONG;
	unlink(p); /* a stale probe from a crashed daemon with our pid */
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	int r = 0;
	if (write(fd, "ok\n", 3) != 3 || fsync(fd) < 0)
		r = errno ? -errno : -EIO;
	close(fd);
	unlink(p);
	return r;
}
