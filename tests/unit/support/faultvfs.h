/* A fault-injecting SQLite VFS for tests ("faultvfs"), wrapping the default
 * one. Test-only (faultvfs.c; linked into every unit suite, registered only
 * by faultvfs_register()).
 *
 * It can:
 * - fail the n-th next xWrite (with SQLITE_IOERR_WRITE or SQLITE_FULL) or
 *   xSync (SQLITE_IOERR_FSYNC), once or for every later call ("sticky");
 * - simulate a power loss: from the n-th next xWrite on, the machine is
 *   "dead": writes, truncates, deletes and syncs do nothing. Every write
 *   since the file's last xSync is logged with the bytes it replaced, so
 *   faultvfs_crash_apply() can then put the files back the way a disk that lost
 *   its cache would leave them: only a prefix of the unsynced writes
 *   survives (the prefix length is drawn from the seed).
 * The model does not cover lost directory entries or torn sectors.
 */
#ifndef VITALED_TEST_SUPPORT_FAULTVFS_H
#define VITALED_TEST_SUPPORT_FAULTVFS_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

struct fv_undo {
	char path[512];
	sqlite3_int64 off;      /* where the old bytes go back */
	unsigned char *old;     /* the bytes that were there (within old_size) */
	size_t len;
	sqlite3_int64 old_size; /* file size before the change */
};

/* The knobs and counters: the test sets and reads them directly (one
 * thread; faultvfs_reset() between cases). */
struct faultvfs {
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
};
extern struct faultvfs faultvfs;

/* Forget every knob, counter and logged write. */
void faultvfs_reset(void);

/* After the power loss: undo the unsynced writes beyond a prefix whose
 * length is drawn from seed. Call once every connection is closed. */
void faultvfs_crash_apply(unsigned seed);

/* Register "faultvfs" (not as the default). Idempotent. */
int faultvfs_register(void);

#endif
