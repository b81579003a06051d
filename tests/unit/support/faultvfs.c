/* A fault-injecting SQLite VFS for tests: see faultvfs.h. */
#include "tests/unit/support/faultvfs.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct faultvfs faultvfs;

struct fv_file {
	sqlite3_file base;
	const char *path;
	sqlite3_file *real; /* follows this struct in the same allocation */
};

static sqlite3_vfs fv_vfs;
static sqlite3_vfs *fv_parent;

void
faultvfs_reset(void)
{
	for (size_t i = 0; i < faultvfs.nundo; i++)
		free(faultvfs.undo[i].old);
	free(faultvfs.undo);
	memset(&faultvfs, 0, sizeof(faultvfs));
}

static void
fv_forget(const char *path)
{
	size_t j = 0;
	for (size_t i = 0; i < faultvfs.nundo; i++) {
		if (strcmp(faultvfs.undo[i].path, path) == 0)
			free(faultvfs.undo[i].old);
		else
			faultvfs.undo[j++] = faultvfs.undo[i];
	}
	faultvfs.nundo = j;
}

static void
fv_log(struct fv_file *f, sqlite3_int64 off, size_t len)
{
	sqlite3_int64 size = 0;
	if (!f->path || f->real->pMethods->xFileSize(f->real, &size) != SQLITE_OK)
		return;
	if (faultvfs.nundo == faultvfs.capundo) {
		faultvfs.capundo = faultvfs.capundo ? faultvfs.capundo * 2 : 64;
		faultvfs.undo = realloc(faultvfs.undo, faultvfs.capundo * sizeof(*faultvfs.undo));
		if (!faultvfs.undo)
			abort();
	}
	struct fv_undo *u = &faultvfs.undo[faultvfs.nundo++];
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

void
faultvfs_crash_apply(unsigned seed)
{
	size_t keep = faultvfs.nundo ? (size_t)(seed % (faultvfs.nundo + 1)) : 0;
	for (size_t i = faultvfs.nundo; i-- > keep;) {
		struct fv_undo *u = &faultvfs.undo[i];
		int fd = open(u->path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (u->len && pwrite(fd, u->old, u->len, u->off) != (ssize_t)u->len)
			abort();
		if (ftruncate(fd, u->old_size) < 0)
			abort();
		close(fd);
	}
	for (size_t i = 0; i < faultvfs.nundo; i++)
		free(faultvfs.undo[i].old);
	faultvfs.nundo = 0;
	faultvfs.dead = false;
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
	faultvfs.writes++;
	if (faultvfs.crash_in > 0 && --faultvfs.crash_in == 0)
		faultvfs.dead = true;
	if (faultvfs.dead)
		return SQLITE_OK;
	if (faultvfs.failing_w || (faultvfs.fail_write_in > 0 && --faultvfs.fail_write_in == 0)) {
		faultvfs.failing_w = faultvfs.sticky;
		faultvfs.failures++;
		return faultvfs.write_err ? faultvfs.write_err : SQLITE_IOERR_WRITE;
	}
	fv_log(f, off, (size_t)n);
	return f->real->pMethods->xWrite(f->real, buf, n, off);
}

static int
fv_truncate(sqlite3_file *p, sqlite3_int64 size)
{
	struct fv_file *f = (struct fv_file *)p;
	if (faultvfs.dead)
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
	faultvfs.syncs++;
	if (faultvfs.dead)
		return SQLITE_OK;
	if (faultvfs.failing_s || (faultvfs.fail_sync_in > 0 && --faultvfs.fail_sync_in == 0)) {
		faultvfs.failing_s = faultvfs.sticky;
		faultvfs.failures++;
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
	if (faultvfs.dead)
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

int
faultvfs_register(void)
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
