/* Small durable-file helpers: directories and whole-file writes that
 * survive a crash (temp file, fsync, rename, fsync of the directory).
 * No project dependencies. Any thread. */
#ifndef VITALED_FSUTIL_H
#define VITALED_FSUTIL_H

#include <stddef.h>
#include <sys/types.h>

/* mkdir -p with mode for the directories it creates. 0 or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);
/* Replace path with data atomically and durably; the file gets mode.
 * 0 or -errno (nothing is left half-written: the old file stays). */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Read a whole file of at most max bytes into a new buffer (NUL-terminated
 * for convenience). 0, -ENOENT, -EFBIG, or another -errno. */
int fs_read_file(const char *path, size_t max, char **out, size_t *outlen);
/* fsync a directory. 0 or -errno. */
int fs_fsync_dir(const char *dir);
/* Check that dir is writable and can fsync: create, fsync, remove a probe file. */
int fs_probe_writable(const char *dir);

#endif
