/* Test vectors of the digital card: see digital_data.h. */
#include "tests/unit/support/digital_data.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

uint8_t *
digital_data_load(const char *name, size_t *len)
{
	const char *src = getenv("srcdir");
	char path[512];
	FILE *f;
	uint8_t *buf;
	long n;

	snprintf(path, sizeof(path), "%s/tests/data/digital/%s", src ? src : ".", name);
	f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "open %s (run from the source root or set srcdir)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	ck_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
	buf[n] = 0;
	fclose(f);
	*len = (size_t)n;
	return buf;
}
