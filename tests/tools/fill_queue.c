/* fill_queue: put N real, signed sheets into a queue directory, fast: the
 * test-only path for the bench rows "with 100,000 sheets in the queue".
 *
 *   fill_queue STATE_DIR N KEY.pem [TERMINAL_ID [PRACTITIONER_ID]]
 *
 * Opens (or creates) the queue in STATE_DIR the way vitaled does
 * (storage/queue: queue.db, queue.key), then stores N degraded sheets of
 * the model (protocol/sheet) signed with KEY.pem (EC: ES256, RSA: PS256;
 * protocol/sheetsig) in transactions of 1000 (queue_put_batch with the seal
 * callback, as the daemon does), care dates spread over the last 300 days
 * so that the daily sequence numbers are like a real practice's. The result
 * is what the daemon itself would have stored, only without the API and one
 * fsync per 1000. Prints "<sheets> <seconds>".
 *
 * Linked against the layer archives (storage/, protocol/, lib/).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/fsutil.h"
#include "protocol/holidays.h"
#include "protocol/sheet.h"
#include "protocol/sheetsig.h"
#include "storage/queue.h"

#include <openssl/pem.h>
#include <openssl/rand.h>

static const char *const nirs[] = { "184127645108946", "280057505612389", "151113055123336" };

struct fill {
	struct sheet s;
	EVP_PKEY *key;
	int alg;
};

static int
fill_seal(void *arg, const struct queue_put *item, uint32_t seq, uint8_t **payload, size_t *len)
{
	(void)item;
	struct fill *f = arg;
	f->s.seq = seq;
	return sheetsig_sign(&f->s, f->alg, cose_sign_evp, f->key, payload, len);
}

int
main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s STATE_DIR N KEY.pem [TERMINAL_ID [PRACTITIONER_ID]]\n", argv[0]);
		return 2;
	}
	long n = strtol(argv[2], NULL, 10);
	const char *term = argc > 4 ? argv[4] : "VT-FILL";
	const char *pract = argc > 5 ? argv[5] : "81000123456";
	FILE *kf = fopen(argv[3], "r");
	EVP_PKEY *key = kf ? PEM_read_PrivateKey(kf, NULL, NULL, NULL) : NULL;
	if (kf)
		fclose(kf);
	if (!key || n < 1) {
		fprintf(stderr, "fill_queue: bad key or count\n");
		return 2;
	}
	int alg = EVP_PKEY_get_base_id(key) == EVP_PKEY_EC ? COSE_ALG_ES256 : COSE_ALG_PS256;
	struct queue_opts o = { .dir = argv[1] };
	struct queue *q = NULL;
	char err[600];
	if (queue_open(&o, &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "fill_queue: %s\n", err);
		return 1;
	}
	enum { BATCH = 1000 };
	struct fill *f = calloc(BATCH, sizeof(*f));
	struct queue_put *items = calloc(BATCH, sizeof(*items));
	char(*care)[11] = calloc(BATCH, 11), (*due)[11] = calloc(BATCH, 11);
	if (!f || !items || !care || !due)
		return 1;
	time_t now = time(NULL);
	int32_t today = (int32_t)(now / 86400);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long done = 0;
	unsigned rnd = 12345;
	while (done < n) {
		size_t b = 0;
		for (; b < BATCH && done + (long)b < n; b++) {
			struct sheet *s = &f[b].s;
			uint8_t r16[16];
			RAND_bytes(r16, sizeof(r16));
			sheet_init(s);
			sheet_uuid_v4(r16, s->id);
			snprintf(s->terminal_id, sizeof(s->terminal_id), "%s", term);
			snprintf(s->practitioner_id, sizeof(s->practitioner_id), "%s", pract);
			rnd = rnd * 1103515245u + 12345u;
			s->care_date = today - 1 - (int32_t)((rnd >> 8) % 300);
			snprintf(s->nir, sizeof(s->nir), "%s", nirs[(done + (long)b) % 3]);
			memcpy(s->regime, "01", 3);
			memcpy(s->caisse, "751", 4);
			memcpy(s->centre, "0012", 5);
			s->insurance = SHEET_INS_MALADIE;
			s->nlines = 1;
			s->lines[0] = (struct sheet_line){ .date = s->care_date, .code = "C",
				                           .coef_milli = 1000, .amount = 2650 };
			s->total = 2650;
			s->amo = 1855;
			s->patient = 795;
			s->mode = SHEET_MODE_DEGRADED;
			s->created = (int64_t)now;
			sheet_set_due_date(s, 0);
			f[b].key = key;
			f[b].alg = alg;
			holidays_format(s->care_date, care[b], 11);
			holidays_format(s->due_date, due[b], 11);
			items[b] = (struct queue_put){ .id = s->id, .practitioner = pract, .care_date = care[b],
				                       .due_date = due[b], .seal = fill_seal, .seal_arg = &f[b] };
		}
		int r = queue_put_batch(q, items, b);
		for (size_t i = 0; r == 0 && i < b; i++)
			if (items[i].result < 0)
				r = items[i].result;
		if (r < 0) {
			fprintf(stderr, "fill_queue: %s\n", queue_last_error(q));
			return 1;
		}
		done += (long)b;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	queue_close(q);
	printf("%ld %.2f\n", done, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	EVP_PKEY_free(key);
	return 0;
}
