/* Unit tests for protocol/tlv: tags and lengths of every allowed size,
 * zero-copy views, padding, paths, and each named error: overrun (also a
 * 4-byte length near 2^32), truncation, indefinite length, bad tags,
 * nesting 200 deep, input too large; plus random input. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/tlv.h"

static size_t
unhex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;
	int hi = -1;
	for (; *s; s++) {
		int v;
		if (*s == ' ')
			continue;
		if (*s >= '0' && *s <= '9') v = *s - '0';
		else if (*s >= 'A' && *s <= 'F') v = *s - 'A' + 10;
		else abort();
		if (hi < 0) { hi = v; continue; }
		ck_assert_uint_lt(n, max);
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	return n;
}

START_TEST(test_read_forms)
{
	uint8_t b[64];
	struct tlv t;
	size_t n = unhex("80 03 41 42 43", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.tag, 0x80);
	ck_assert(!t.constructed);
	ck_assert_ptr_eq(t.value, b + 2);    /* zero-copy */
	ck_assert_uint_eq(t.len, 3);
	ck_assert_ptr_eq(t.start, b);
	ck_assert_uint_eq(t.size, 5);

	/* multi-byte tags: 2, 3 and 4 bytes */
	n = unhex("7F 21 00", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.tag, 0x7F21);
	ck_assert(t.constructed);
	ck_assert_uint_eq(t.len, 0);
	n = unhex("5F 81 01 01 AA", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.tag, 0x5F8101);
	n = unhex("DF 81 82 03 00", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.tag, 0xDF818203);
	ck_assert(!t.constructed);
	n = unhex("DF 81 82 83 04 00", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -EILSEQ);
	n = unhex("5F 80 01 00", b, sizeof(b));     /* leading zero tag bits */
	ck_assert_int_eq(tlv_read(b, n, &t), -EILSEQ);

	/* long-form lengths 81..84 (non-minimal 81 05 allowed: cards do it) */
	n = unhex("04 81 02 01 02", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.len, 2);
	ck_assert_ptr_eq(t.value, b + 3);
	n = unhex("04 82 00 01 AA", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.len, 1);
	n = unhex("04 83 00 00 01 AA", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	n = unhex("04 84 00 00 00 01 AA", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.size, 7);
	n = unhex("04 85 00 00 00 00 01 AA", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -ERANGE);
	n = unhex("30 80 04 00 00 00", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -ENOTSUP);

	/* overrun and truncation */
	n = unhex("80 04 41 42 43", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -EBADMSG);
	ck_assert_ptr_null(t.value);          /* cleared on failure */
	n = unhex("65 84 FF FF FF F0 80 01 41", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -EBADMSG);
	n = unhex("65 84 FF FF", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -ENODATA);
	n = unhex("7F", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -ENODATA);
	n = unhex("80", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), -ENODATA);
	ck_assert_int_eq(tlv_read(b, 0, &t), -ENODATA);

	ck_assert_str_eq(tlv_strerror(-EBADMSG), "tlv_overrun");
	ck_assert_str_eq(tlv_strerror(-ELOOP), "tlv_too_deep");
	ck_assert_str_eq(tlv_strerror(-ENOTSUP), "tlv_indefinite");
	ck_assert_str_eq(tlv_strerror(-EILSEQ), "tlv_bad_tag");
	ck_assert_str_eq(tlv_strerror(-ERANGE), "tlv_bad_length");
	ck_assert_str_eq(tlv_strerror(-ENODATA), "tlv_truncated");
}
END_TEST

START_TEST(test_iter_padding)
{
	uint8_t b[64];
	struct tlv_iter it;
	struct tlv t;
	/* padding before, between and after (ISO 7816-4 §5.2.2.1) */
	size_t n = unhex("00 FF 80 01 41 00 00 81 01 42 FF FF", b, sizeof(b));
	tlv_iter_init(&it, b, n);
	ck_assert_int_eq(tlv_iter_next(&it, &t), 1);
	ck_assert_uint_eq(t.tag, 0x80);
	ck_assert_uint_eq(t.value[0], 'A');
	ck_assert_int_eq(tlv_iter_next(&it, &t), 1);
	ck_assert_uint_eq(t.tag, 0x81);
	ck_assert_int_eq(tlv_iter_next(&it, &t), 0);
	ck_assert_int_eq(tlv_iter_next(&it, &t), 0);
	/* only padding, or nothing */
	tlv_iter_init(&it, b, 2);
	ck_assert_int_eq(tlv_iter_next(&it, &t), 0);
	tlv_iter_init(&it, NULL, 0);
	ck_assert_int_eq(tlv_iter_next(&it, &t), 0);
	/* an error is sticky */
	n = unhex("80 01 41 81 05 42", b, sizeof(b));
	tlv_iter_init(&it, b, n);
	ck_assert_int_eq(tlv_iter_next(&it, &t), 1);
	ck_assert_int_eq(tlv_iter_next(&it, &t), -EBADMSG);
	ck_assert_int_eq(tlv_iter_next(&it, &t), -EBADMSG);
	/* children, with padding inside the constructed value too */
	n = unhex("65 09 80 01 41 00 FF 81 02 42 43", b, sizeof(b));
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	struct tlv c;
	tlv_iter_children(&it, &t);
	ck_assert_int_eq(tlv_iter_next(&it, &c), 1);
	ck_assert_uint_eq(c.tag, 0x80);
	ck_assert_int_eq(tlv_iter_next(&it, &c), 1);
	ck_assert_uint_eq(c.tag, 0x81);
	ck_assert_uint_eq(c.len, 2);
	ck_assert_int_eq(tlv_iter_next(&it, &c), 0);
	ck_assert_int_eq(tlv_validate(b, n, 0), 0);
}
END_TEST

START_TEST(test_find_path)
{
	uint8_t b[128];
	struct tlv t;
	/* E0 { A0 { 82 .. } 80 .. } and 65 { 80 81 93 } 66 { 80 } */
	size_t n = unhex("65 0E 80 03 44 55 50 81 02 4A 4F 93 03 31 32 33 "
	                 "66 0A 80 08 32 30 32 33 30 31 31 35 "
	                 "7F 21 05 5F 37 02 AA BB", b, sizeof(b));
	uint32_t p[TLV_PATH_MAX];
	size_t np;
	ck_assert_int_eq(tlv_path_parse("65/93", 5, p, TLV_PATH_MAX, &np), 0);
	ck_assert_uint_eq(np, 2);
	ck_assert_int_eq(tlv_find_path(b, n, p, np, &t), 0);
	ck_assert_uint_eq(t.len, 3);
	ck_assert_mem_eq(t.value, "123", 3);
	ck_assert_int_eq(tlv_path_parse("7F21/5F37", 9, p, TLV_PATH_MAX, &np), 0);
	ck_assert_uint_eq(p[0], 0x7F21);
	ck_assert_uint_eq(p[1], 0x5F37);
	ck_assert_int_eq(tlv_find_path(b, n, p, np, &t), 0);
	ck_assert_uint_eq(t.len, 2);
	ck_assert_int_eq(tlv_path_parse("66/80", 5, p, TLV_PATH_MAX, &np), 0);
	ck_assert_int_eq(tlv_find_path(b, n, p, np, &t), 0);
	ck_assert_mem_eq(t.value, "20230115", 8);
	/* absent, and through a primitive object */
	ck_assert_int_eq(tlv_path_parse("65/94", 5, p, TLV_PATH_MAX, &np), 0);
	ck_assert_int_eq(tlv_find_path(b, n, p, np, &t), -ENOENT);
	ck_assert_int_eq(tlv_path_parse("65/80/80", 8, p, TLV_PATH_MAX, &np), 0);
	ck_assert_int_eq(tlv_find_path(b, n, p, np, &t), -ENOENT);
	ck_assert_int_eq(tlv_find_path(b, n, p, 0, &t), -ENOENT);
	ck_assert_int_eq(tlv_find(b, n, 0x67, &t), -ENOENT);
	ck_assert_int_eq(tlv_find(b, n, 0x66, &t), 0);
	/* path texts */
	const char *bad[] = { "", "6", "65/", "/65", "65//93", "1F", "7F", "0065", "7F21F",
	                      "7FA1", "65/93/80/80/80/80/80/80/80", "6G", "DF81828304" };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		ck_assert_msg(tlv_path_parse(bad[k], strlen(bad[k]), p, TLV_PATH_MAX, &np) == -EINVAL,
		              "'%s' accepted", bad[k]);
	ck_assert_int_eq(tlv_path_parse("DF818203/7F21/5F37", 18, p, TLV_PATH_MAX, &np), 0);
	ck_assert_uint_eq(p[0], 0xDF818203);
	ck_assert_int_eq(tlv_path_parse("65/93", 5, p, 1, &np), -EINVAL);
	ck_assert(tlv_tag_valid(0x65));
	ck_assert(!tlv_tag_valid(0x1F));
	ck_assert(!tlv_tag_valid(0));
	ck_assert(tlv_tag_valid(0x9F8101));
	ck_assert(!tlv_tag_valid(0x9F0181));
}
END_TEST

/* n nested A1 around 80 04 "DEEP" */
static size_t
nest(uint8_t *b, size_t cap, unsigned n)
{
	/* build inside-out at the end of the buffer */
	size_t end = cap, start = cap - 6;
	memcpy(b + start, "\x80\x04" "DEEP", 6);
	for (unsigned i = 0; i < n; i++) {
		size_t len = end - start;
		uint8_t h[4];
		size_t hl;
		if (len < 0x80) { h[0] = 0xA1; h[1] = (uint8_t)len; hl = 2; }
		else if (len < 0x100) { h[0] = 0xA1; h[1] = 0x81; h[2] = (uint8_t)len; hl = 3; }
		else { h[0] = 0xA1; h[1] = 0x82; h[2] = (uint8_t)(len >> 8); h[3] = (uint8_t)len; hl = 4; }
		start -= hl;
		memcpy(b + start, h, hl);
	}
	memmove(b, b + start, end - start);
	return end - start;
}

START_TEST(test_depth)
{
	static uint8_t b[4096];
	size_t n = nest(b, sizeof(b), 15);           /* 16 levels with 80 */
	ck_assert_int_eq(tlv_validate(b, n, 16), 0);
	n = nest(b, sizeof(b), 16);                  /* 17 levels */
	ck_assert_int_eq(tlv_validate(b, n, 16), -ELOOP);
	ck_assert_int_eq(tlv_validate(b, n, 17), 0);
	ck_assert_int_eq(tlv_validate(b, n, 0), -ELOOP);   /* default 16 */
	n = nest(b, sizeof(b), 200);
	ck_assert_int_eq(tlv_validate(b, n, 16), -ELOOP);
	ck_assert_int_eq(tlv_validate(b, n, 1000), -ELOOP); /* capped at TLV_MAX_DEPTH */
	/* an overrun deep inside is found */
	n = nest(b, sizeof(b), 10);
	b[n - 5] = 0x05;                             /* 80 05 "DEEP" */
	ck_assert_int_eq(tlv_validate(b, n, 16), -EBADMSG);
	/* constructed, child longer than parent */
	uint8_t c[] = { 0x65, 0x03, 0x80, 0x05, 0x41, 0x42, 0x43, 0x44, 0x45 };
	ck_assert_int_eq(tlv_validate(c, sizeof(c), 16), -EBADMSG);
	/* primitive values are not descended into */
	uint8_t d[] = { 0x80, 0x02, 0x65, 0x7F };
	ck_assert_int_eq(tlv_validate(d, sizeof(d), 16), 0);
	ck_assert_int_eq(tlv_validate(d, 0, 16), 0);
	ck_assert_int_eq(tlv_validate(d, (size_t)TLV_MAX_INPUT + 1, 16), -EFBIG);
}
END_TEST

START_TEST(test_big_value)
{
	/* 10 KB value: one object, length 82 28 00 */
	size_t n = 4 + 10240;
	uint8_t *b = malloc(n);
	b[0] = 0x80; b[1] = 0x82; b[2] = 0x28; b[3] = 0x00;
	memset(b + 4, 'A', 10240);
	struct tlv t;
	ck_assert_int_eq(tlv_read(b, n, &t), 0);
	ck_assert_uint_eq(t.len, 10240);
	ck_assert_int_eq(tlv_read(b, n - 1, &t), -EBADMSG);
	free(b);
}
END_TEST

START_TEST(test_random)
{
	unsigned seed = (unsigned)time(NULL);
	if (getenv("TEST_SEED"))
		seed = (unsigned)strtoul(getenv("TEST_SEED"), NULL, 10);
	printf("check_tlv random seed %u (TEST_SEED to replay)\n", seed);
	srand(seed);
	uint8_t b[300];
	for (int i = 0; i < 100000; i++) {
		size_t n = (size_t)(rand() % (int)sizeof(b));
		for (size_t k = 0; k < n; k++)
			b[k] = (uint8_t)(rand() % 4 ? rand() % 0x90 : rand());
		/* plain tests, ck_abort_msg only on failure (a ck_assert per
		 * round costs a write to Check's pipe: seconds over 100,000) */
		int r = tlv_validate(b, n, 8);
		if (!(r == 0 || r == -EBADMSG || r == -ENODATA || r == -ELOOP ||
		      r == -ENOTSUP || r == -EILSEQ || r == -ERANGE))
			ck_abort_msg("round %d: tlv_validate gave %d", i, r);
		struct tlv_iter it;
		struct tlv t;
		tlv_iter_init(&it, b, n);
		int k, guard = 0;
		while ((k = tlv_iter_next(&it, &t)) > 0) {
			if (!(t.value >= b && t.value + t.len <= b + n))
				ck_abort_msg("round %d: a value outside the input", i);
			if (++guard > 300)
				ck_abort_msg("round %d: the iterator does not end", i);
		}
		/* a tree that validates iterates to its end without error */
		if (r == 0 && k != 0)
			ck_abort_msg("round %d: a valid tree iterates to %d", i, k);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tlv");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_read_forms);
	tcase_add_test(tc, test_iter_padding);
	tcase_add_test(tc, test_find_path);
	tcase_add_test(tc, test_depth);
	tcase_add_test(tc, test_big_value);
	tcase_add_test(tc, test_random);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
