/* A fault-injecting SQLite VFS for tests ("faultvfs"), wrapping the default
 * one. Included by the test that uses it (static code, test-only).
 *
 * It can:
 * - fail the n-th next xWrite (with SQLITE_IOERR_WRITE or SQLITE_FULL) or
 *   xSync (SQLITE_IOERR_FSYNC), once or for every later call ("sticky");
 * - simulate a power loss: from the n-th next xWrite on, the machine is
 *   "dead": writes, truncates, deletes and syncs do nothing. Every write
 *   since the file's last xSync is logged with the bytes it replaced, so
 *   fv_crash_apply() can then put the files back the way a disk that lost
 *   its cache would leave them: only a prefix of the unsynced writes
 *   survives (the prefix length is drawn from the seed).
 * The model does not cover lost directory entries or torn sectors.
 */
#ifndef VITALED_TEST_FAULTVFS_H
#define VITALED_TEST_FAULTVFS_H

#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct fv_undo {
	char path[512];
	sqlite3_int64 off;      /* where the old bytes go back */
	unsigned char *old;     /* the bytes that were there (within old_size) */
	size_t len;
	sqlite3_int64 old_size; /* file size before the change */
};

static struct {
	int fail_write_in;  /* > 0: count down on each xWrite; at 0 the write fails */
	int fail_sync_in;   /* same for xSync */
	int write_err;      /* SQLITE_IOERR_WRITE (default) or SQLITE_FULL */
	bool sticky;        /* keep failing after the first failure */
	bool failing_w, failing_s;
	int crash_in;       /* > 0: count down on each xWrite; at 0 the power goes */
	bool dead;
	long writes, syncs, failures;
	struct fv_undo *undo;
	size_t nundo, capundo;
} fv;

struct fv_file {
	sqlite3_file base;
	const char *path;
	sqlite3_file *real; /* follows this struct in the same allocation */
};

static sqlite3_vfs fv_vfs;
static sqlite3_vfs *fv_parent;

static void
fv_reset(void)
{
	for (size_t i = 0; i < fv.nundo; i++)
		free(fv.undo[i].old);
	free(fv.undo);
	memset(&fv, 0, sizeof(fv));
}

static void
fv_forget(const char *path)
{
	size_t j = 0;
	for (size_t i = 0; i < fv.nundo; i++) {
		if (strcmp(fv.undo[i].path, path) == 0)
			free(fv.undo[i].old);
		else
			fv.undo[j++] = fv.undo[i];
	}
	fv.nundo = j;
}

static void
fv_log(struct fv_file *f, sqlite3_int64 off, size_t len)
{
	sqlite3_int64 size = 0;
	if (!f->path || f->real->pMethods->xFileSize(f->real, &size) != SQLITE_OK)
		return;
	if (fv.nundo == fv.capundo) {
		fv.capundo = fv.capundo ? fv.capundo * 2 : 64;
		fv.undo = realloc(fv.undo, fv.capundo * sizeof(*fv.undo));
		if (!fv.undo)
			abort();
	}
	struct fv_undo *u = &fv.undo[fv.nundo++];
	memset(u, 0, sizeof(*u));
	snprintf(u->path, sizeof(u->path), "%s", f->path);
	u->off = off;
	u->old_size = size;
	if (off < size) {
		u->len = (size_t)(off + (sqlite3_int64)len <= size ? (sqlite3_int64)len : size - off);
		u->old = malloc(u->len);
		if (!u->old)
			abort();
		f->real->pMethods->xRead(f->real, u->old, (int)u->len, off);
	}
}

/* After the power loss: undo the unsynced writes beyond a prefix whose
 * length is drawn from seed. Call once every connection is closed. */
static void
fv_crash_apply(unsigned seed)
{
	size_t keep = fv.nundo ? (size_t)(seed % (fv.nundo + 1)) : 0;
	for (size_t i = fv.nundo; i-- > keep;) {
		struct fv_undo *u = &fv.undo[i];
		int fd = open(u->path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (u->len && pwrite(fd, u->old, u->len, u->off) != (ssize_t)u->len)
			abort();
		if (ftruncate(fd, u->old_size) < 0)
			abort();
		close(fd);
	}
	for (size_t i = 0; i < fv.nundo; i++)
		free(fv.undo[i].old);
	fv.nundo = 0;
	fv.dead = false;
}

static int
fv_close(sqlite3_file *p)
{
	struct fv_file *f = (struct fv_file *)p;
	return f->real->pMethods->xClose(f->real);
}

static int
fv_read(sqlite3_file *p, void *buf, int n, sqlite3_int64 off)
{
	struct fv_file *f = (struct fv_file *)p;
	return f->real->pMethods->xRead(f->real, buf, n, off);
}

static int
fv_write(sqlite3_file *p, const void *buf, int n, sqlite3_int64 off)
{
	struct fv_file *f = (struct fv_file *)p;
	fv.writes++;
	if (fv.crash_in > 0 && --fv.crash_in == 0)
		fv.dead = true;
	if (fv.dead)
		return SQLITE_OK;
	if (fv.failing_w || (fv.fail_write_in > 0 && --fv.fail_write_in == 0)) {
		fv.failing_w = fv.sticky;
		fv.failures++;
		return fv.write_err ? fv.write_err : SQLITE_IOERR_WRITE;
	}
	fv_log(f, off, (size_t)n);
	return f->real->pMethods->xWrite(f->real, buf, n, off);
}

static int
fv_truncate(sqlite3_file *p, sqlite3_int64 size)
{
	struct fv_file *f = (struct fv_file *)p;
	if (fv.dead)
		return SQLITE_OK;
	sqlite3_int64 cur = 0;
	if (f->real->pMethods->xFileSize(f->real, &cur) == SQLITE_OK && size < cur)
		fv_log(f, size, (size_t)(cur - size));
	return f->real->pMethods->xTruncate(f->real, size);
}

static int
fv_sync(sqlite3_file *p, int flags)
{
	struct fv_file *f = (struct fv_file *)p;
	fv.syncs++;
	if (fv.dead)
		return SQLITE_OK;
	if (fv.failing_s || (fv.fail_sync_in > 0 && --fv.fail_sync_in == 0)) {
		fv.failing_s = fv.sticky;
		fv.failures++;
		return SQLITE_IOERR_FSYNC;
	}
	int rc = f->real->pMethods->xSync(f->real, flags);
	if (rc == SQLITE_OK && f->path)
		fv_forget(f->path);
	return rc;
}

#define FV_PASS(name, sig, args)                                 \
	static int fv_##name sig                                     \
	{                                                            \
		struct fv_file *f = (struct fv_file *)p;                 \
		return f->real->pMethods->x##name args;                  \
	}
FV_PASS(FileSize, (sqlite3_file * p, sqlite3_int64 *s), (f->real, s))
FV_PASS(Lock, (sqlite3_file * p, int l), (f->real, l))
FV_PASS(Unlock, (sqlite3_file * p, int l), (f->real, l))
FV_PASS(CheckReservedLock, (sqlite3_file * p, int *o), (f->real, o))
FV_PASS(FileControl, (sqlite3_file * p, int op, void *a), (f->real, op, a))
FV_PASS(SectorSize, (sqlite3_file * p), (f->real))
FV_PASS(DeviceCharacteristics, (sqlite3_file * p), (f->real))
FV_PASS(ShmMap, (sqlite3_file * p, int pg, int sz, int ext, void volatile **pp),
        (f->real, pg, sz, ext, pp))
FV_PASS(ShmLock, (sqlite3_file * p, int off, int n, int fl), (f->real, off, n, fl))
FV_PASS(ShmUnmap, (sqlite3_file * p, int del), (f->real, del))
FV_PASS(Fetch, (sqlite3_file * p, sqlite3_int64 off, int n, void **pp), (f->real, off, n, pp))
FV_PASS(Unfetch, (sqlite3_file * p, sqlite3_int64 off, void *pg), (f->real, off, pg))
#undef FV_PASS

static void
fv_ShmBarrier(sqlite3_file *p)
{
	struct fv_file *f = (struct fv_file *)p;
	f->real->pMethods->xShmBarrier(f->real);
}

static const sqlite3_io_methods fv_io = {
	3,           fv_close,          fv_read,       fv_write,
	fv_truncate, fv_sync,           fv_FileSize,   fv_Lock,
	fv_Unlock,   fv_CheckReservedLock, fv_FileControl, fv_SectorSize,
	fv_DeviceCharacteristics, fv_ShmMap, fv_ShmLock, fv_ShmBarrier,
	fv_ShmUnmap, fv_Fetch,          fv_Unfetch,
};

static int
fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *p, int flags, int *outflags)
{
	struct fv_file *f = (struct fv_file *)p;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	f->path = name;
	int rc = fv_parent->xOpen(fv_parent, name, f->real, flags, outflags);
	f->base.pMethods = (rc == SQLITE_OK && f->real->pMethods) ? &fv_io : NULL;
	return rc;
}

static int
fv_delete(sqlite3_vfs *vfs, const char *name, int syncdir)
{
	if (fv.dead)
		return SQLITE_OK;
	fv_forget(name);
	return fv_parent->xDelete(fv_parent, name, syncdir);
}

static int
fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	return fv_parent->xAccess(fv_parent, name, flags, out);
}

static int
fv_fullpath(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	return fv_parent->xFullPathname(fv_parent, name, n, out);
}

static int
fv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	return fv_parent->xRandomness(fv_parent, n, out);
}

static int
fv_sleep(sqlite3_vfs *vfs, int us)
{
	return fv_parent->xSleep(fv_parent, us);
}

static int
fv_current_time(sqlite3_vfs *vfs, double *t)
{
	return fv_parent->xCurrentTime(fv_parent, t);
}

static int
fv_last_error(sqlite3_vfs *vfs, int n, char *buf)
{
	return fv_parent->xGetLastError(fv_parent, n, buf);
}

static int
fv_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *t)
{
	return fv_parent->xCurrentTimeInt64(fv_parent, t);
}

/* Register "faultvfs" (not as the default). Idempotent. */
static int
fv_register(void)
{
	if (fv_parent)
		return SQLITE_OK;
	fv_parent = sqlite3_vfs_find(NULL);
	if (!fv_parent)
		return SQLITE_ERROR;
	memset(&fv_vfs, 0, sizeof(fv_vfs));
	fv_vfs.iVersion = 2;
	fv_vfs.szOsFile = (int)sizeof(struct fv_file) + fv_parent->szOsFile;
	fv_vfs.mxPathname = fv_parent->mxPathname;
	fv_vfs.zName = "faultvfs";
	fv_vfs.xOpen = fv_open;
	fv_vfs.xDelete = fv_delete;
	fv_vfs.xAccess = fv_access;
	fv_vfs.xFullPathname = fv_fullpath;
	fv_vfs.xRandomness = fv_randomness;
	fv_vfs.xSleep = fv_sleep;
	fv_vfs.xCurrentTime = fv_current_time;
	fv_vfs.xGetLastError = fv_last_error;
	fv_vfs.xCurrentTimeInt64 = fv_current_time64;
	return sqlite3_vfs_register(&fv_vfs, 0);
}

#endif
