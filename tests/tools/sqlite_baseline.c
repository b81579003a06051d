/* sqlite_baseline: what a durable insert costs on this disk with nothing of
 * vitaled around it, the baseline of the queue's bench rows.
 *
 *   sqlite_baseline DIR N [BATCH [PAYLOAD_BYTES]]
 *
 * Creates DIR/baseline.db (removed afterwards) with the queue's pragmas
 * (WAL, synchronous=FULL, BEGIN IMMEDIATE), inserts N rows of a text id and
 * a PAYLOAD_BYTES blob (default 1024), BATCH rows per transaction (default
 * 1), and prints "<rows per second>" on stdout. Also compiled into
 * bench_queue (BASELINE_NO_MAIN) so both run in the same process. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double
baseline_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* rows per second, or a negative value on error */
static double
baseline_run(const char *dir, int n, int batch, int payload)
{
	char path[4096], id[32];
	sqlite3 *db = NULL;
	sqlite3_stmt *ins = NULL;
	double rate = -1;
	unsigned char *blob = calloc(1, (size_t)payload + 1);
	snprintf(path, sizeof(path), "%s/baseline.db", dir);
	if (!blob || sqlite3_open(path, &db) != SQLITE_OK)
		goto out;
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db,
	                 "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
	                 "CREATE TABLE IF NOT EXISTS t (id TEXT PRIMARY KEY, state TEXT, "
	                 "created INTEGER, payload BLOB)",
	                 NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO t VALUES (?1, 'queued', ?2, ?3)", -1, &ins, NULL) !=
	            SQLITE_OK)
		goto out;
	double t0 = baseline_now();
	for (int i = 0; i < n;) {
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
			goto out;
		for (int k = 0; k < batch && i < n; k++, i++) {
			snprintf(id, sizeof(id), "row-%d", i);
			blob[0] = (unsigned char)i;
			sqlite3_bind_text(ins, 1, id, -1, SQLITE_TRANSIENT);
			sqlite3_bind_int64(ins, 2, i);
			sqlite3_bind_blob(ins, 3, blob, payload, SQLITE_STATIC);
			if (sqlite3_step(ins) != SQLITE_DONE)
				goto out;
			sqlite3_reset(ins);
		}
		if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
			goto out;
	}
	rate = n / (baseline_now() - t0);
out:
	sqlite3_finalize(ins);
	sqlite3_close(db);
	free(blob);
	unlink(path);
	snprintf(path, sizeof(path), "%s/baseline.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/baseline.db-shm", dir);
	unlink(path);
	return rate;
}

#ifndef BASELINE_NO_MAIN
int
main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s DIR N [BATCH [PAYLOAD_BYTES]]\n", argv[0]);
		return 2;
	}
	int n = (int)strtol(argv[2], NULL, 10);
	int batch = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 1;
	int payload = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 1024;
	if (n <= 0 || batch <= 0 || payload < 0 || payload > (1 << 20)) {
		fprintf(stderr, "%s: bad arguments\n", argv[0]);
		return 2;
	}
	double r = baseline_run(argv[1], n, batch, payload);
	if (r < 0) {
		fprintf(stderr, "%s: SQLite failed in %s\n", argv[0], argv[1]);
		return 1;
	}
	printf("%.0f\n", r);
	return 0;
}
#endif
