/* libFuzzer target: the care-sheet JSON reader, validation and encoding
 * (protocol/sheet) on arbitrary bytes. Properties: never crash or leak; a
 * sheet that parsed survives sheet_to_json → sheet_from_json unchanged; a
 * sheet that validated encodes. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "protocol/sheet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n_map(void *c, size_t n) { (void)c; (void)n; return 0; }
static int n_end(void *c) { (void)c; return 0; }
static int n_text(void *c, const char *s, size_t n) { (void)c; (void)s; (void)n; return 0; }
static int n_bytes(void *c, const uint8_t *p, size_t n) { (void)c; (void)p; (void)n; return 0; }
static int n_uint(void *c, uint64_t v) { (void)c; (void)v; return 0; }
static int n_sint(void *c, int64_t v) { (void)c; (void)v; return 0; }
static int n_bool(void *c, bool v) { (void)c; (void)v; return 0; }
static const struct sheet_encoder null_enc = { n_map,   n_end,  n_map,  n_end, n_text,
	                                       n_bytes, n_uint, n_sint, n_bool };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sheet s, t;
	struct sheet_errors errs;
	json_error_t je;
	if (size > 65536)
		return 0;
	json_t *o = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
	if (!o)
		return 0;
	sheet_init(&s);
	if (sheet_from_json(o, &s, &errs) == 0) {
		if (errs.n)
			abort();
		sheet_set_due_date(&s, 0);
		struct sheet_check c = { .today = 19797, .now = 1710500000 }; /* 2024-03-15 */
		int v = sheet_validate(&s, &c, &errs);
		if ((v == 0) != (errs.n == 0))
			abort();
		json_t *j = sheet_to_json(&s);
		if (j) {
			sheet_init(&t);
			if (sheet_from_json(j, &t, &errs) != 0)
				abort();
			json_t *j2 = sheet_to_json(&t);
			if (j2 && !json_equal(j, j2))
				abort();
			json_decref(j2);
			json_decref(j);
		}
		if (v == 0 && sheet_encode(&s, &null_enc, NULL) != 0)
			abort();
	} else if (errs.n == 0) {
		abort();
	}
	json_decref(o);
	return 0;
}
