/* Unit tests for protocol/cbor.c: RFC 8949 Appendix A vectors (decode and
 * deterministic re-encode), deterministic map ordering (§4.2.1), strict
 * rejections (non-shortest heads, key order, duplicates), bounds (size,
 * items, depth), malformed input, UTF-8, the encoder's limits and errors,
 * and a seeded random round trip (CBOR_SEED=N to replay). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/cbor.h"

static size_t
unhex(const char *h, uint8_t *out, size_t cap)
{
	size_t n = 0;

	while (h[0] && h[1]) {
		unsigned v;
		if (h[0] == ' ') {
			h++;
			continue;
		}
		ck_assert(sscanf(h, "%2x", &v) == 1);
		ck_assert(n < cap);
		out[n++] = (uint8_t)v;
		h += 2;
	}
	return n;
}

/* Re-encode a decoded item with the encoder (through the public API). */
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
		if (it->u <= (uint64_t)INT64_MAX)
			cbor_enc_int(e, -1 - (int64_t)it->u);
		else
			cbor_enc_raw(e, it->raw, it->raw_len); /* below INT64_MIN */
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

static int
decode_hex(const char *hex, unsigned flags, struct cbor_doc *doc, uint8_t *buf, size_t cap,
           size_t *len)
{
	*len = unhex(hex, buf, cap);
	return cbor_decode(buf, *len, NULL, flags, doc);
}

/* RFC 8949 Appendix A: every item vitaled supports decodes strictly and
 * re-encodes to the same bytes. */
static const char *const appendix_a_ok[] = {
	"00", "01", "0a", "17", "1818", "1819", "1864", "1903e8", "1a000f4240",
	"1b000000e8d4a51000", "1bffffffffffffffff", "c249010000000000000000",
	"3bffffffffffffffff", "c349010000000000000000", "20", "29", "3863", "3903e7",
	"f4", "f5", "f6",
	"c074323031332d30332d32315432303a30343a30305a", "c11a514b67b0", "d74401020304",
	"d818456449455446", "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
	"40", "4401020304", "60", "6161", "6449455446", "62225c", "62c3bc", "63e6b0b4",
	"64f0908591", "80", "83010203", "8301820203820405",
	"98190102030405060708090a0b0c0d0e0f101112131415161718181819",
	"a0", "a201020304", "a26161016162820203", "826161a161626163",
	"a56161614161626142616361436164614461656145",
};

/* Appendix A items outside vitaled's subset: floats, undefined, simple
 * values, indefinite lengths. */
static const char *const appendix_a_unsupported[] = {
	"f90000", "f98000", "f93c00", "fb3ff199999999999a", "f93e00", "f97bff",
	"fa47c35000", "fa7f7fffff", "fb7e37e43c8800759c", "f90001", "f90400", "f9c400",
	"fbc010666666666666", "f97c00", "f97e00", "f9fc00", "fa7f800000", "fa7fc00000",
	"faff800000", "fb7ff0000000000000", "fb7ff8000000000000", "fbfff0000000000000",
	"f7", "f0", "f8ff", "c1fb41d452d9ec200000",
	"5f42010243030405ff", "7f657374726561646d696e67ff", "9fff", "9f018202039f0405ffff",
	"9f01820203820405ff", "83018202039f0405ff", "83019f0203ff820405",
	"9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
	"bf61610161629f0203ffff", "826161bf61626163ff", "bf6346756ef563416d7421ff",
};

START_TEST(appendix_a)
{
	uint8_t buf[256];
	size_t len;
	struct cbor_doc doc;

	for (size_t i = 0; i < sizeof(appendix_a_ok) / sizeof(appendix_a_ok[0]); i++) {
		struct cbor_enc e;
		const uint8_t *out;
		size_t olen;

		ck_assert_msg(decode_hex(appendix_a_ok[i], CBOR_STRICT, &doc, buf, sizeof(buf), &len) == 0,
		              "decode %s", appendix_a_ok[i]);
		ck_assert_uint_eq(doc.items[0].raw_len, len);
		ck_assert_int_eq(cbor_enc_init(&e, 1024), 0);
		reencode(&doc, cbor_root(&doc), &e);
		ck_assert_int_eq(cbor_enc_finish(&e, &out, &olen), 0);
		ck_assert_msg(olen == len && memcmp(out, buf, len) == 0, "re-encode %s",
		              appendix_a_ok[i]);
		cbor_enc_free(&e);
		cbor_doc_free(&doc);
	}
	for (size_t i = 0; i < sizeof(appendix_a_unsupported) / sizeof(appendix_a_unsupported[0]); i++) {
		ck_assert_msg(decode_hex(appendix_a_unsupported[i], 0, &doc, buf, sizeof(buf), &len) ==
		                      -ENOTSUP,
		              "unsupported %s", appendix_a_unsupported[i]);
		ck_assert_ptr_null(doc.items);
	}
}
END_TEST

START_TEST(values)
{
	uint8_t buf[256];
	size_t len;
	struct cbor_doc doc;
	const struct cbor_item *r, *v;
	uint64_t u;
	int64_t i;
	bool b;

	ck_assert_int_eq(decode_hex("1bffffffffffffffff", CBOR_STRICT, &doc, buf, sizeof(buf), &len), 0);
	r = cbor_root(&doc);
	ck_assert_int_eq(r->type, CBOR_UINT);
	ck_assert_int_eq(cbor_get_uint(r, &u), 0);
	ck_assert(u == UINT64_MAX);
	ck_assert_int_eq(cbor_get_int(r, &i), -ERANGE);
	cbor_doc_free(&doc);

	ck_assert_int_eq(decode_hex("3bffffffffffffffff", CBOR_STRICT, &doc, buf, sizeof(buf), &len), 0);
	r = cbor_root(&doc);
	ck_assert_int_eq(r->type, CBOR_NEGINT);
	ck_assert(r->u == UINT64_MAX); /* -2^64 */
	ck_assert_int_eq(cbor_get_int(r, &i), -ERANGE);
	ck_assert_int_eq(cbor_get_uint(r, &u), -EINVAL);
	cbor_doc_free(&doc);

	ck_assert_int_eq(decode_hex("3b7fffffffffffffff", CBOR_STRICT, &doc, buf, sizeof(buf), &len), 0);
	ck_assert_int_eq(cbor_get_int(cbor_root(&doc), &i), 0);
	ck_assert(i == INT64_MIN);
	cbor_doc_free(&doc);

	ck_assert_int_eq(decode_hex("3903e7", CBOR_STRICT, &doc, buf, sizeof(buf), &len), 0);
	ck_assert_int_eq(cbor_get_int(cbor_root(&doc), &i), 0);
	ck_assert_int_eq(i, -1000);
	ck_assert(cbor_int_eq(cbor_root(&doc), -1000));
	cbor_doc_free(&doc);

	/* {"a": 1, "b": [2, 3]} */
	ck_assert_int_eq(decode_hex("a26161016162820203", CBOR_STRICT, &doc, buf, sizeof(buf), &len), 0);
	r = cbor_root(&doc);
	ck_assert_int_eq(r->type, CBOR_MAP);
	ck_assert_uint_eq(r->count, 2);
	ck_assert(cbor_int_eq(cbor_map_get_text(&doc, r, "a"), 1));
	v = cbor_map_get_text(&doc, r, "b");
	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(v->type, CBOR_ARRAY);
	ck_assert(cbor_int_eq(cbor_child(&doc, v, 0), 2));
	ck_assert(cbor_int_eq(cbor_child(&doc, v, 1), 3));
	ck_assert_ptr_null(cbor_child(&doc, v, 2));
	ck_assert_ptr_null(cbor_map_get_text(&doc, r, "c"));
	ck_assert_ptr_null(cbor_map_get_text(&doc, r, "ab"));
	ck_assert_ptr_null(cbor_map_get_int(&doc, r, 1));
	ck_assert_uint_eq(r->next, doc.nitems);
	cbor_doc_free(&doc);

	/* {1: 2, 3: 4}, bool, strings zero-copy */
	ck_assert_int_eq(decode_hex("a3010203f5186164c3bc6869", CBOR_STRICT, &doc, buf, sizeof(buf), &len), 0);
	r = cbor_root(&doc);
	ck_assert(cbor_int_eq(cbor_map_get_int(&doc, r, 1), 2));
	ck_assert_int_eq(cbor_get_bool(cbor_map_get_int(&doc, r, 3), &b), 0);
	ck_assert(b);
	v = cbor_map_get_int(&doc, r, 0x61);
	ck_assert_int_eq(v->type, CBOR_TEXT);
	ck_assert_uint_eq(v->len, 4);
	ck_assert_ptr_eq(v->ptr, buf + 8);
	ck_assert(cbor_text_eq(v, "\xc3\xbchi"));
	cbor_doc_free(&doc);
}
END_TEST

START_TEST(strict_rejects)
{
	static const struct {
		const char *hex;
		int strict, lax;
	} v[] = {
		{ "1817", -EDOM, 0 },                 /* 23 in one extra byte */
		{ "190017", -EDOM, 0 },
		{ "1900ff", -EDOM, 0 },
		{ "1a0000ffff", -EDOM, 0 },
		{ "1b00000000ffffffff", -EDOM, 0 },
		{ "3817", -EDOM, 0 },
		{ "580161", -EDOM, 0 },               /* string length */
		{ "780161", -EDOM, 0 },
		{ "9800", -EDOM, 0 },                 /* array count */
		{ "b800", -EDOM, 0 },                 /* map count */
		{ "d80201", -EDOM, 0 },               /* tag number */
		{ "a202000100", -EDOM, 0 },           /* {2:0, 1:0} unsorted */
		{ "a2616200616100", -EDOM, 0 },       /* {"b":0, "a":0} */
		{ "a262616100616200", -EDOM, 0 },     /* {"aa":0, "b":0}: "b" sorts first */
		{ "a2200001 00", -EDOM, 0 },          /* {-1:0, 1:0}: 01 < 20 */
		{ "a201000100", -ENOTUNIQ, -ENOTUNIQ },
		{ "a2010018 0100", -EDOM, -ENOTUNIQ }, /* 1 and 1 non-shortest */
		{ "a361610061620061 6100", -EDOM, -ENOTUNIQ },
		{ "a2616100616100", -ENOTUNIQ, -ENOTUNIQ },
	};
	uint8_t buf[64];
	size_t len;
	struct cbor_doc doc;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		ck_assert_msg(decode_hex(v[i].hex, CBOR_STRICT, &doc, buf, sizeof(buf), &len) == v[i].strict,
		              "strict %s", v[i].hex);
		cbor_doc_free(&doc);
		ck_assert_msg(decode_hex(v[i].hex, 0, &doc, buf, sizeof(buf), &len) == v[i].lax,
		              "lax %s", v[i].hex);
		cbor_doc_free(&doc);
	}
	/* The lax decoder still gives the values of non-shortest heads. */
	ck_assert_int_eq(decode_hex("1b0000000000000017", 0, &doc, buf, sizeof(buf), &len), 0);
	ck_assert(cbor_int_eq(cbor_root(&doc), 23));
	cbor_doc_free(&doc);
}
END_TEST

START_TEST(malformed)
{
	static const struct {
		const char *hex;
		int rc;
	} v[] = {
		{ "", -EBADMSG },
		{ "18", -EBADMSG },                    /* truncated argument */
		{ "1a0000", -EBADMSG },
		{ "6261", -EBADMSG },                  /* truncated string */
		{ "830102", -EBADMSG },                /* truncated array */
		{ "a1 01", -EBADMSG },
		{ "0000", -EBADMSG },                  /* trailing byte */
		{ "1c", -EBADMSG },                    /* reserved ai */
		{ "1d", -EBADMSG },
		{ "1e", -EBADMSG },
		{ "ff", -EBADMSG },                    /* lone break */
		{ "1f", -EBADMSG },                    /* indefinite uint */
		{ "df", -EBADMSG },                    /* indefinite tag */
		{ "f810", -EBADMSG },                  /* two-byte simple < 32 */
		{ "5bffffffffffffffff", -EBADMSG },    /* huge string length */
		{ "9bffffffffffffffff", -EBADMSG },    /* huge array */
		{ "bbffffffffffffffff", -EBADMSG },    /* huge map */
		{ "9a7fffffff00", -EBADMSG },
		{ "62c328", -EILSEQ },                 /* bad continuation */
		{ "62c080", -EILSEQ },                 /* overlong */
		{ "63eda080", -EILSEQ },               /* surrogate */
		{ "64f4908080", -EILSEQ },             /* > U+10FFFF */
		{ "61ff", -EILSEQ },
		{ "63e282", -EBADMSG },                /* truncated string (3 > 2 left) */
		{ "62e282", -EILSEQ },                 /* truncated sequence */
	};
	uint8_t buf[64];
	size_t len;
	struct cbor_doc doc;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		ck_assert_msg(decode_hex(v[i].hex, CBOR_STRICT, &doc, buf, sizeof(buf), &len) == v[i].rc,
		              "%s", v[i].hex);
		ck_assert_ptr_null(doc.items);
	}
}
END_TEST

START_TEST(bounds)
{
	uint8_t buf[64];
	struct cbor_doc doc;
	struct cbor_limits lim = { 64, 100, 8 };
	size_t n;

	/* depth: 8 arrays pass, 9 fail; a tag counts one level */
	memset(buf, 0x81, 8);
	buf[8] = 0x01;
	ck_assert_int_eq(cbor_decode(buf, 9, &lim, CBOR_STRICT, &doc), 0);
	ck_assert_uint_eq(doc.items[8].depth, 8);
	cbor_doc_free(&doc);
	memset(buf, 0x81, 9);
	buf[9] = 0x01;
	ck_assert_int_eq(cbor_decode(buf, 10, &lim, CBOR_STRICT, &doc), -ELOOP);
	ck_assert_ptr_null(doc.items);
	memset(buf, 0x81, 7);
	buf[7] = 0xD2; /* tag 18 */
	buf[8] = 0x01;
	ck_assert_int_eq(cbor_decode(buf, 9, &lim, CBOR_STRICT, &doc), 0);
	cbor_doc_free(&doc);
	buf[7] = 0xD2;
	buf[8] = 0x81;
	buf[9] = 0x01;
	ck_assert_int_eq(cbor_decode(buf, 10, &lim, CBOR_STRICT, &doc), -ELOOP);
	/* maps count too */
	n = unhex("a1 01 a1 01 a1 01 a1 01 a1 01 a1 01 a1 01 a1 01 a0", buf, sizeof(buf));
	ck_assert_int_eq(cbor_decode(buf, n, &lim, CBOR_STRICT, &doc), -ELOOP);
	n = unhex("a1 01 a1 01 a1 01 a1 01 a1 01 a1 01 a1 01 a0", buf, sizeof(buf));
	ck_assert_int_eq(cbor_decode(buf, n, &lim, CBOR_STRICT, &doc), 0);
	cbor_doc_free(&doc);
	/* a hard cap whatever the caller asks */
	{
		uint8_t deep[200];
		struct cbor_limits huge = { 1000, 1000, 1000 };
		memset(deep, 0x81, 199);
		deep[199] = 0;
		ck_assert_int_eq(cbor_decode(deep, 200, &huge, 0, &doc), -ELOOP);
	}

	/* size */
	n = unhex("4a00000000000000000000", buf, sizeof(buf));
	lim.max_size = n - 1;
	ck_assert_int_eq(cbor_decode(buf, n, &lim, CBOR_STRICT, &doc), -E2BIG);
	lim.max_size = n;
	ck_assert_int_eq(cbor_decode(buf, n, &lim, CBOR_STRICT, &doc), 0);
	cbor_doc_free(&doc);

	/* items: an array of 10 is 11 items */
	n = unhex("8a 00 01 02 03 04 05 06 07 08 09", buf, sizeof(buf));
	lim.max_items = 10;
	ck_assert_int_eq(cbor_decode(buf, n, &lim, CBOR_STRICT, &doc), -E2BIG);
	lim.max_items = 11;
	ck_assert_int_eq(cbor_decode(buf, n, &lim, CBOR_STRICT, &doc), 0);
	ck_assert_uint_eq(doc.nitems, 11);
	cbor_doc_free(&doc);
}
END_TEST

/* §4.2.1 ordering from any insertion order; docs/digital-card.md §4.1 and §6
 * examples. */
START_TEST(encode_deterministic)
{
	struct cbor_enc e;
	const uint8_t *out;
	size_t len, n;
	uint8_t want[64];

	ck_assert_int_eq(cbor_enc_init(&e, 256), 0);
	cbor_enc_map_begin(&e);
	cbor_enc_textz(&e, "v");
	cbor_enc_uint(&e, 1);
	cbor_enc_textz(&e, "algs");
	cbor_enc_array_begin(&e);
	cbor_enc_int(&e, -7);
	cbor_enc_array_end(&e);
	cbor_enc_textz(&e, "uvm");
	cbor_enc_array_begin(&e);
	cbor_enc_textz(&e, "pin");
	cbor_enc_array_end(&e);
	ck_assert_int_eq(cbor_enc_map_end(&e), 0);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	n = unhex("A3 61 76 01 63 75 76 6D 81 63 70 69 6E 64 61 6C 67 73 81 26", want, sizeof(want));
	ck_assert_uint_eq(len, n);
	ck_assert_mem_eq(out, want, n);
	cbor_enc_free(&e);

	/* COSE_Key labels: 1, 33, -1, -2, -3 (01 < 18 21 < 20 < 21 < 22) */
	ck_assert_int_eq(cbor_enc_init(&e, 256), 0);
	cbor_enc_map_begin(&e);
	cbor_enc_int(&e, -3);
	cbor_enc_uint(&e, 0);
	cbor_enc_int(&e, -1);
	cbor_enc_uint(&e, 0);
	cbor_enc_int(&e, 33);
	cbor_enc_uint(&e, 0);
	cbor_enc_int(&e, -2);
	cbor_enc_uint(&e, 0);
	cbor_enc_int(&e, 1);
	cbor_enc_uint(&e, 0);
	cbor_enc_map_end(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	n = unhex("a5 0100 182100 2000 2100 2200", want, sizeof(want));
	ck_assert_uint_eq(len, n);
	ck_assert_mem_eq(out, want, n);
	cbor_enc_free(&e);

	/* bytewise, not length-first: "b" < "aa"; nested maps sorted too,
	 * and a map value that is itself a map moves with its key. */
	ck_assert_int_eq(cbor_enc_init(&e, 256), 0);
	cbor_enc_map_begin(&e);
	cbor_enc_textz(&e, "aa");
	cbor_enc_map_begin(&e);
	cbor_enc_uint(&e, 2);
	cbor_enc_bool(&e, true);
	cbor_enc_uint(&e, 1);
	cbor_enc_null(&e);
	cbor_enc_map_end(&e);
	cbor_enc_textz(&e, "b");
	cbor_enc_tag(&e, 1);
	cbor_enc_uint(&e, 1000);
	cbor_enc_map_end(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	n = unhex("a2 6162 c1 1903e8 626161 a2 01f6 02f5", want, sizeof(want));
	ck_assert_uint_eq(len, n);
	ck_assert_mem_eq(out, want, n);
	cbor_enc_free(&e);

	/* heads of every size, inserted before the content */
	ck_assert_int_eq(cbor_enc_init(&e, 100000), 0);
	cbor_enc_array_begin(&e);
	for (int i = 0; i < 300; i++)
		cbor_enc_uint(&e, 0);
	cbor_enc_array_end(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	ck_assert_uint_eq(len, 303);
	ck_assert_int_eq(out[0], 0x99);
	ck_assert_int_eq(out[1], 0x01);
	ck_assert_int_eq(out[2], 0x2c);
	cbor_enc_free(&e);

	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	cbor_enc_int(&e, INT64_MIN);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	n = unhex("3b7fffffffffffffff", want, sizeof(want));
	ck_assert_uint_eq(len, n);
	ck_assert_mem_eq(out, want, n);
	cbor_enc_free(&e);
}
END_TEST

START_TEST(encode_errors)
{
	struct cbor_enc e;
	const uint8_t *out;
	uint8_t *taken;
	size_t len;

	/* bound */
	ck_assert_int_eq(cbor_enc_init(&e, 4), 0);
	ck_assert_int_eq(cbor_enc_bytes(&e, (const uint8_t *)"abc", 3), 0);
	ck_assert_int_eq(cbor_enc_uint(&e, 1000), -E2BIG);
	ck_assert_int_eq(cbor_enc_uint(&e, 0), -E2BIG); /* sticky */
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), -E2BIG);
	ck_assert_ptr_null(out);
	cbor_enc_free(&e);
	/* a head inserted at close must fit too */
	ck_assert_int_eq(cbor_enc_init(&e, 24), 0);
	cbor_enc_array_begin(&e);
	for (int i = 0; i < 24; i++)
		cbor_enc_uint(&e, 0);
	ck_assert_int_eq(cbor_enc_array_end(&e), -E2BIG);
	cbor_enc_free(&e);

	/* duplicate key */
	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	cbor_enc_map_begin(&e);
	cbor_enc_textz(&e, "a");
	cbor_enc_uint(&e, 1);
	cbor_enc_textz(&e, "a");
	cbor_enc_uint(&e, 2);
	ck_assert_int_eq(cbor_enc_map_end(&e), -ENOTUNIQ);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), -ENOTUNIQ);
	cbor_enc_free(&e);

	/* odd map, unbalanced, wrong close, dangling tag */
	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	cbor_enc_map_begin(&e);
	cbor_enc_uint(&e, 1);
	ck_assert_int_eq(cbor_enc_map_end(&e), -EINVAL);
	cbor_enc_free(&e);
	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	cbor_enc_array_begin(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), -EINVAL);
	cbor_enc_free(&e);
	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	cbor_enc_array_begin(&e);
	ck_assert_int_eq(cbor_enc_map_end(&e), -EINVAL);
	cbor_enc_free(&e);
	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	cbor_enc_tag(&e, 18);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), -EINVAL);
	cbor_enc_free(&e);
	/* bad UTF-8 */
	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	ck_assert_int_eq(cbor_enc_text(&e, "\xc0\x80", 2), -EILSEQ);
	cbor_enc_free(&e);
	/* depth */
	ck_assert_int_eq(cbor_enc_init(&e, 1024), 0);
	for (int i = 0; i < CBOR_ENC_DEPTH_MAX; i++)
		ck_assert_int_eq(cbor_enc_array_begin(&e), 0);
	ck_assert_int_eq(cbor_enc_array_begin(&e), -ELOOP);
	cbor_enc_free(&e);

	/* take */
	ck_assert_int_eq(cbor_enc_init(&e, 64), 0);
	cbor_enc_array_begin(&e);
	cbor_enc_raw(&e, (const uint8_t *)"\xa0", 1);
	cbor_enc_array_end(&e);
	ck_assert_int_eq(cbor_enc_take(&e, &taken, &len), 0);
	ck_assert_uint_eq(len, 2);
	ck_assert_mem_eq(taken, "\x81\xa0", 2);
	ck_assert_ptr_null(e.buf);
	free(taken);
	cbor_enc_free(&e);
}
END_TEST

/* Random trees: encode, decode strictly, re-encode: same bytes; and the
 * encoding sorts map keys whatever order they were written in. */
static uint64_t rng;

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void
gen(struct cbor_enc *e, int depth)
{
	unsigned k = (unsigned)(rnd() % (depth > 5 ? 6 : 9));
	uint8_t b[40];
	char t[40];
	size_t n = rnd() % 40;

	switch (k) {
	case 0:
		cbor_enc_uint(e, rnd() >> (rnd() % 64));
		break;
	case 1:
		cbor_enc_int(e, -(int64_t)(rnd() >> (1 + rnd() % 63)) - 1);
		break;
	case 2:
		for (size_t i = 0; i < n; i++)
			b[i] = (uint8_t)rnd();
		cbor_enc_bytes(e, b, n);
		break;
	case 3:
		for (size_t i = 0; i < n; i++)
			t[i] = (char)(' ' + rnd() % 90);
		cbor_enc_text(e, t, n);
		break;
	case 4:
		cbor_enc_bool(e, rnd() & 1);
		break;
	case 5:
		cbor_enc_null(e);
		break;
	case 6: {
		size_t m = rnd() % 6;
		cbor_enc_array_begin(e);
		for (size_t i = 0; i < m; i++)
			gen(e, depth + 1);
		cbor_enc_array_end(e);
		break;
	}
	case 7: {
		/* distinct keys: a counter in a text key */
		size_t m = rnd() % 6;
		unsigned base = (unsigned)(rnd() % 1000);
		cbor_enc_map_begin(e);
		for (size_t i = 0; i < m; i++) {
			if (rnd() & 1) {
				cbor_enc_int(e, (int64_t)(base + i) * ((rnd() & 1) ? 1 : -1) - 1000000 * (int64_t)i);
			} else {
				char key[16];
				int kl = snprintf(key, sizeof(key), "k%u", (unsigned)(base * 7 + i));
				cbor_enc_text(e, key, (size_t)kl);
			}
			gen(e, depth + 1);
		}
		cbor_enc_map_end(e);
		break;
	}
	default:
		cbor_enc_tag(e, rnd() % 100000);
		gen(e, depth + 1);
		break;
	}
}

START_TEST(random_round_trip)
{
	const char *s = getenv("CBOR_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
	struct cbor_limits lim = { 1u << 20, 100000, 16 };

	printf("check_cbor random_round_trip seed %llu (CBOR_SEED to replay)\n",
	       (unsigned long long)seed);
	rng = seed ? seed : 1;
	for (int round = 0; round < 2000; round++) {
		struct cbor_enc e, e2;
		struct cbor_doc doc;
		const uint8_t *a, *b;
		size_t alen, blen;
		int rc;

		cbor_enc_init(&e, 1u << 20);
		gen(&e, 0);
		rc = cbor_enc_finish(&e, &a, &alen);
		if (rc == -ENOTUNIQ) { /* random int keys may collide */
			cbor_enc_free(&e);
			continue;
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(cbor_decode(a, alen, &lim, CBOR_STRICT, &doc), 0);
		cbor_enc_init(&e2, 1u << 20);
		reencode(&doc, cbor_root(&doc), &e2);
		ck_assert_int_eq(cbor_enc_finish(&e2, &b, &blen), 0);
		ck_assert_uint_eq(alen, blen);
		ck_assert_mem_eq(a, b, alen);
		cbor_doc_free(&doc);
		cbor_enc_free(&e);
		cbor_enc_free(&e2);
	}
}
END_TEST

/* The narrow data model flags (docs/digital-card.md §6). */
START_TEST(narrow_flags)
{
	static const struct {
		const char *hex;
		unsigned flags;
		int rc;
	} v[] = {
		{ "f6", CBOR_NO_NULL, -ENOTSUP },
		{ "81f6", CBOR_NO_NULL, -ENOTSUP },
		{ "f6", 0, 0 },
		{ "f5", CBOR_NO_NULL, 0 },
		{ "a1f500", CBOR_KEYS_INT_TEXT, -ENOTSUP },       /* {true: 0} */
		{ "a14100", CBOR_KEYS_INT_TEXT, -ENOTSUP },       /* {h'': 0} */
		{ "a18000", CBOR_KEYS_INT_TEXT, -ENOTSUP },       /* {[]: 0} */
		{ "a301002000616100", CBOR_KEYS_INT_TEXT, 0 },      /* {1:0, -1:0, "a":0} */
		{ "a1f500", 0, 0 },
		{ "c101", CBOR_NO_TAGS, -ENOTSUP },
		{ "d201", CBOR_NO_TAGS, -ENOTSUP },
		{ "d201", CBOR_NO_TAGS | CBOR_TOP_TAG18, 0 },
		{ "d101", CBOR_NO_TAGS | CBOR_TOP_TAG18, -ENOTSUP }, /* tag 17 */
		{ "81d201", CBOR_NO_TAGS | CBOR_TOP_TAG18, -ENOTSUP }, /* not at the top */
		{ "d2d201", CBOR_NO_TAGS | CBOR_TOP_TAG18, -ENOTSUP }, /* a tag in the tag */
		{ "c101", 0, 0 },
	};
	uint8_t buf[32];
	size_t len;
	struct cbor_doc doc;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		ck_assert_msg(decode_hex(v[i].hex, CBOR_STRICT | v[i].flags, &doc, buf, sizeof(buf), &len) == v[i].rc,
		              "%s flags %x", v[i].hex, v[i].flags);
		cbor_doc_free(&doc);
	}
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("cbor");
	TCase *t = tcase_create("core");

	tcase_add_test(t, appendix_a);
	tcase_add_test(t, values);
	tcase_add_test(t, strict_rejects);
	tcase_add_test(t, malformed);
	tcase_add_test(t, bounds);
	tcase_add_test(t, encode_deterministic);
	tcase_add_test(t, encode_errors);
	tcase_add_test(t, random_round_trip);
	tcase_add_test(t, narrow_flags);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
