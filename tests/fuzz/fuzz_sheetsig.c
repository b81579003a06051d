/* libFuzzer target: the signed care sheet's reader (protocol/sheetsig) on
 * arbitrary bytes, both as a COSE_Sign1 (sheetsig_verify without a key) and
 * as a bare CBOR payload (sheetsig_decode). Properties: never crash or
 * leak; a payload that decodes without error encodes again, and when that
 * encoding is the input itself, decoding it again gives the same model
 * (JSON forms equal). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/sheetsig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sheet s, t;
	struct sheet_errors errs;
	struct sheetsig_report rep;
	if (size > SHEETSIG_MAX + 16)
		return 0;
	(void)sheetsig_verify(data, size, NULL, &s, &rep);
	if (rep.canonical && !rep.decoded)
		abort();
	if (sheetsig_decode(data, size, &s, &errs) == 0) {
		if (errs.n)
			abort();
		uint8_t *again = NULL;
		size_t alen = 0;
		if (sheetsig_encode(&s, &again, &alen) == 0 && alen == size &&
		    memcmp(again, data, size) == 0) {
			if (sheetsig_decode(again, alen, &t, &errs) != 0)
				abort();
			json_t *a = sheet_to_json(&s), *b = sheet_to_json(&t);
			if (a && b && !json_equal(a, b))
				abort();
			json_decref(a);
			json_decref(b);
		}
		free(again);
	}
	return 0;
}
