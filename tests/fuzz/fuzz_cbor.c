/* libFuzzer target for protocol/cbor.c.
 *
 * Properties checked (abort on violation):
 * - strict decoding never crashes and, when it accepts, re-encoding the
 *   tree with the deterministic encoder gives back exactly the input
 *   (RFC 8949 §4.2.1: one item has one deterministic encoding);
 * - whatever strict accepts, lax accepts too, and whatever the narrow
 *   profile of docs/digital-card.md §6 accepts, strict accepts;
 * - a lax document, re-encoded, is accepted by the strict decoder (or the
 *   re-encoding finds keys that become equal once normalised);
 * - the tree's "next" links and counts are consistent with its size. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/cbor.h"

static void
reencode(const struct cbor_doc *d, const struct cbor_item *it, struct cbor_enc *e)
{
	struct cbor_iter iter;
	const struct cbor_item *c;

	switch (it->type) {
	case CBOR_UINT:
		cbor_enc_uint(e, it->u);
		break;
	case CBOR_NEGINT:
		if (it->u <= (uint64_t)INT64_MAX) {
			cbor_enc_int(e, -1 - (int64_t)it->u);
		} else {
			/* below INT64_MIN: write the shortest head by hand */
			uint8_t h[9] = { 0x3B };
			for (int i = 0; i < 8; i++)
				h[1 + i] = (uint8_t)(it->u >> (56 - 8 * i));
			cbor_enc_raw(e, h, 9);
		}
		break;
	case CBOR_BYTES:
		cbor_enc_bytes(e, it->ptr, it->len);
		break;
	case CBOR_TEXT:
		cbor_enc_text(e, (const char *)it->ptr, it->len);
		break;
	case CBOR_BOOL:
		cbor_enc_bool(e, it->u != 0);
		break;
	case CBOR_NULL:
		cbor_enc_null(e);
		break;
	case CBOR_TAG:
		cbor_enc_tag(e, it->u);
		reencode(d, cbor_child(d, it, 0), e);
		break;
	case CBOR_ARRAY:
	case CBOR_MAP:
		if (it->type == CBOR_ARRAY)
			cbor_enc_array_begin(e);
		else
			cbor_enc_map_begin(e);
		cbor_iter_init(&iter, d, it);
		while ((c = cbor_iter_next(&iter)))
			reencode(d, c, e);
		if (it->type == CBOR_ARRAY)
			cbor_enc_array_end(e);
		else
			cbor_enc_map_end(e);
		break;
	}
}

static void
check_tree(const struct cbor_doc *d, const uint8_t *buf, size_t len)
{
	const struct cbor_item *r = cbor_root(d);

	if (!r || r->next != d->nitems || r->raw != buf || r->raw_len != len)
		abort();
	for (uint32_t i = 0; i < d->nitems; i++) {
		const struct cbor_item *it = &d->items[i];
		if (it->next <= i || it->next > d->nitems || it->raw < buf ||
		    it->raw + it->raw_len > buf + len)
			abort();
	}
	/* lookups on the root never crash */
	(void)cbor_map_get_text(d, r, "v");
	(void)cbor_map_get_int(d, r, -1);
	(void)cbor_child(d, r, 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cbor_limits lim = { 65536, 4096, 16 };
	struct cbor_doc strict, lax;
	struct cbor_enc e;
	const uint8_t *out;
	size_t olen;
	int rs, rl, rc;

	rs = cbor_decode(data, size, &lim, CBOR_STRICT, &strict);
	rl = cbor_decode(data, size, &lim, 0, &lax);
	if (rs == 0 && rl != 0)
		abort();
	{
		/* the narrow profile accepts a subset of strict */
		struct cbor_doc n;
		int rn = cbor_decode(data, size, &lim,
		                     CBOR_STRICT | CBOR_NO_NULL | CBOR_KEYS_INT_TEXT | CBOR_NO_TAGS |
		                             CBOR_TOP_TAG18, &n);
		if (rn == 0 && rs != 0)
			abort();
		if (rn == 0 && n.nitems != strict.nitems)
			abort();
		cbor_doc_free(&n);
	}
	if (rs == 0) {
		check_tree(&strict, data, size);
		cbor_enc_init(&e, size + 16);
		reencode(&strict, cbor_root(&strict), &e);
		if (cbor_enc_finish(&e, &out, &olen) != 0 || olen != size || memcmp(out, data, size) != 0)
			abort();
		cbor_enc_free(&e);
	}
	if (rl == 0) {
		struct cbor_doc again;

		check_tree(&lax, data, size);
		cbor_enc_init(&e, 2 * size + 64);
		reencode(&lax, cbor_root(&lax), &e);
		rc = cbor_enc_finish(&e, &out, &olen);
		if (rc == 0) {
			if (cbor_decode(out, olen, &lim, CBOR_STRICT, &again) != 0)
				abort();
			cbor_doc_free(&again);
		} else if (rc != -ENOTUNIQ) {
			abort();
		}
		cbor_enc_free(&e);
	}
	cbor_doc_free(&strict);
	cbor_doc_free(&lax);
	return 0;
}
