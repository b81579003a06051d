/* libFuzzer target: the insurer's answers (protocol/insurer) on arbitrary
 * bytes. The first byte chooses the parser: batch results (against a fixed
 * two-sheet batch), a 4xx error body, returns, rights, opposition, or a
 * Retry-After value. Properties: never crash or leak; a results answer that
 * parsed has a known status per sheet and a code for each rejected one;
 * returns and opposition stay within their bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/insurer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BID "0f8e7d6c-5b4a-4938-a716-151413121110"
static const char *ids[] = { "11111111-1111-4111-8111-111111111111",
	                     "22222222-2222-4222-a222-222222222222" };

static void
results(const char *p, size_t n)
{
	struct insurer_result r[2];
	if (insurer_parse_results(p, n, BID, ids, 2, r) != 0)
		return;
	for (int i = 0; i < 2; i++) {
		if (r[i].status < INSURER_ACCEPTED || r[i].status > INSURER_REJECTED)
			abort();
		if (r[i].status == INSURER_REJECTED && !r[i].code[0])
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > INSURER_ANSWER_MAX)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	char code[INSURER_CODE_MAX + 1], reason[INSURER_REASON_MAX + 1];
	struct insurer_returns ret;
	struct insurer_rights rights;
	struct insurer_opposition opp;

	switch (data[0] % 6) {
	case 0:
		results(p, n);
		break;
	case 1:
		insurer_parse_error(p, n, code, reason);
		break;
	case 2:
		if (insurer_parse_returns(p, n, 100, &ret) == 0) {
			if (ret.n > 100 || strlen(ret.next) > INSURER_CURSOR_MAX)
				abort();
			insurer_returns_free(&ret);
		}
		break;
	case 3:
		if (insurer_parse_rights(p, n, "284027512345624", &rights) == 0 &&
		    rights.nrights > INSURER_RIGHTS_MAX)
			abort();
		break;
	case 4:
		if (insurer_parse_opposition(p, n, &opp) == 0)
			insurer_opposition_free(&opp);
		break;
	default: {
		char v[128];
		uint64_t ms;
		size_t m = n < sizeof(v) - 1 ? n : sizeof(v) - 1;
		memcpy(v, p, m);
		v[m] = '\0';
		if (insurer_retry_after_ms(v, 1760000000, &ms) == 0 && ms > 86400000ull)
			abort();
		break;
	}
	}
	return 0;
}
