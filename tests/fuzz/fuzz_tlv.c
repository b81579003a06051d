/* libFuzzer target: BER-TLV decoding (protocol/tlv). The first byte sets
 * the depth allowed; the rest is a card file. The input is also read as a
 * tag path text. Every view handed out must lie inside the input. */
#include <stddef.h>
#include <stdint.h>

#include "protocol/tlv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
inside(const struct tlv *t, const uint8_t *b, size_t n)
{
	if (t->value < b || t->len > n || t->value + t->len > b + n || t->start < b ||
	    t->start + t->size > b + n)
		__builtin_trap();
}

static void
walk(const uint8_t *b, size_t n, const uint8_t *all, size_t alln, unsigned depth)
{
	struct tlv_iter it;
	struct tlv t;
	int r;
	if (depth > 20)
		return;
	tlv_iter_init(&it, b, n);
	while ((r = tlv_iter_next(&it, &t)) > 0) {
		inside(&t, all, alln);
		if (t.constructed)
			walk(t.value, t.len, all, alln, depth + 1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned depth = data[0] % 40;
	const uint8_t *b = data + 1;
	size_t n = size - 1;
	int v = tlv_validate(b, n, depth);
	(void)tlv_strerror(v);
	walk(b, n, b, n, 0);

	static const uint32_t paths[][3] = {
		{ 0x65, 0x93, 0 }, { 0xE0, 0xA0, 0x82 }, { 0x7F21, 0x5F37, 0 }, { 0x62, 0x80, 0 },
	};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct tlv t;
		size_t np = paths[i][2] ? 3 : 2;
		if (tlv_find_path(b, n, paths[i], np, &t) == 0)
			inside(&t, b, n);
	}
	uint32_t p[TLV_PATH_MAX];
	size_t np;
	if (tlv_path_parse((const char *)b, n, p, TLV_PATH_MAX, &np) == 0) {
		if (np == 0 || np > TLV_PATH_MAX)
			__builtin_trap();
		for (size_t i = 0; i < np; i++)
			if (!tlv_tag_valid(p[i]))
				__builtin_trap();
	}
	return 0;
}
