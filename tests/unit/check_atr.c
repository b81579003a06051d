/* Unit tests for protocol/atr: real ATRs of the cards vitaled knows
 * (pcsc-tools' list), both conventions (PC/SC-decoded and raw inverse),
 * every named reason, patterns with masks and wildcards, random garbage. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/atr.h"

static size_t
hx(const char *s, uint8_t *out)
{
	size_t n;
	ck_assert_int_eq(atr_hex_parse(s, strlen(s), out, 64, &n), 0);
	return n;
}

static struct atr_info
parse_ok(const char *s)
{
	uint8_t b[64];
	struct atr_info info;
	size_t n = hx(s, b);
	int r = atr_parse(b, n, &info);
	ck_assert_msg(r == 0, "%s: %s", s, atr_error_name(info.error));
	return info;
}

static enum atr_error
parse_err(const char *s)
{
	uint8_t b[64];
	struct atr_info info;
	size_t n = hx(s, b);
	ck_assert_int_eq(atr_parse(b, n, &info), -EINVAL);
	ck_assert_int_ne(info.error, ATR_OK);
	return info.error;
}

START_TEST(test_vitale2)
{
	struct atr_info i = parse_ok("3B 75 13 00 00 47 09 EA 90 00");
	ck_assert_int_eq(i.conv, ATR_CONV_DIRECT);
	ck_assert(!i.raw_inverse);
	ck_assert_uint_eq(i.t0, 0x75);
	ck_assert_uint_eq(i.nlevels, 1);
	ck_assert_uint_eq(i.level[0].present, ATR_TA | ATR_TB | ATR_TC);
	ck_assert_uint_eq(i.level[0].ta, 0x13);
	ck_assert_uint_eq(i.level[0].tb, 0x00);
	ck_assert_uint_eq(i.level[0].tc, 0x00);
	ck_assert_uint_eq(i.protocols, 1u << 0);   /* T=0 only: no TD1 */
	ck_assert(atr_offers(&i, 0));
	ck_assert(!atr_offers(&i, 1));
	ck_assert(!i.tck_present);
	ck_assert_uint_eq(i.hist_len, 5);
	ck_assert_mem_eq(i.hist, "\x47\x09\xEA\x90\x00", 5);
	ck_assert(!atr_is_iso14443_4(&i));
}
END_TEST

START_TEST(test_vitale1_inverse)
{
	/* as PC/SC reports it: TS 3F, the rest already decoded */
	struct atr_info i = parse_ok("3F 65 25 00 2C 09 69 90 00");
	ck_assert_int_eq(i.conv, ATR_CONV_INVERSE);
	ck_assert(!i.raw_inverse);
	ck_assert_uint_eq(i.level[0].present, ATR_TB | ATR_TC);
	ck_assert_uint_eq(i.level[0].tb, 0x25);
	ck_assert_uint_eq(i.hist_len, 5);
	ck_assert_uint_eq(i.hist[0], 0x2C);

	/* the same ATR as raw line bytes: each byte bit-reversed and
	 * complemented, so TS shows as 03 */
	uint8_t dec[9], raw[9];
	size_t n = hx("3F 65 25 00 2C 09 69 90 00", dec);
	for (size_t k = 0; k < n; k++)
		raw[k] = atr_inverse_byte(dec[k]);
	ck_assert_uint_eq(raw[0], 0x03);
	ck_assert_uint_eq(atr_inverse_byte(0x03), 0x3F);
	ck_assert_uint_eq(atr_inverse_byte(0x00), 0xFF);
	ck_assert_uint_eq(atr_inverse_byte(0x01), 0x7F);
	struct atr_info j;
	ck_assert_int_eq(atr_parse(raw, n, &j), 0);
	ck_assert(j.raw_inverse);
	ck_assert_int_eq(j.conv, ATR_CONV_INVERSE);
	ck_assert_mem_eq(j.bytes, dec, n);
	ck_assert_uint_eq(j.hist_len, 5);
	ck_assert_uint_eq(j.hist[0], 0x2C);
	/* involution: decoding twice gives the byte back */
	for (unsigned b = 0; b < 256; b++)
		ck_assert_uint_eq(atr_inverse_byte(atr_inverse_byte((uint8_t)b)), b);
}
END_TEST

START_TEST(test_wrong_convention_garbage)
{
	/* TS says inverse but the rest is a direct Vitale 2: it parses as an
	 * inverse-convention ATR, which no Vitale 2 pattern matches */
	struct atr_info i = parse_ok("3F 75 13 00 00 47 09 EA 90 00");
	ck_assert_int_eq(i.conv, ATR_CONV_INVERSE);
	struct atr_pattern p;
	const char *v = "3B 75 13 00 00 40 09 EA 90 00", *m = "FF FF FF FF FF F0 FF EF FF FF";
	ck_assert_int_eq(atr_pattern_parse(v, strlen(v), m, strlen(m), &p), 0);
	ck_assert_uint_eq(atr_pattern_match(&p, i.bytes, i.len), 0);

	/* the test world's badatr: TA1 TB1 TC1 TD1 and 15 historical bytes
	 * announced, 2 bytes given */
	ck_assert_int_eq(parse_err("3F FF FF FF"), ATR_ERR_TRUNCATED);
	ck_assert_str_eq(atr_error_name(ATR_ERR_TRUNCATED), "atr_truncated");
}
END_TEST

START_TEST(test_cps_and_contactless)
{
	/* CPS2ter: TB1, TD1 = 40 -> TC2, T=0 only, no TCK */
	struct atr_info i = parse_ok("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00");
	ck_assert_uint_eq(i.nlevels, 2);
	ck_assert_uint_eq(i.level[0].present, ATR_TB | ATR_TD);
	ck_assert_uint_eq(i.level[1].present, ATR_TC);
	ck_assert_uint_eq(i.level[1].tc, 0x2A);
	ck_assert_uint_eq(i.protocols, 1u << 0);
	ck_assert(!i.tck_present);
	ck_assert_uint_eq(i.hist_len, 12);
	/* CPS V4 */
	i = parse_ok("3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00");
	ck_assert_uint_eq(i.hist_len, 12);
	/* the test world's CPS3 */
	i = parse_ok("3B 7D 18 00 00 00 31 80 71 8E 64 86 D6 01 00 81 90 00");
	ck_assert_uint_eq(i.hist_len, 13);

	/* contactless pseudo-ATRs (PC/SC part 3): T=0 and T=1 indicated, TCK */
	i = parse_ok("3B 80 80 01 01");
	ck_assert_uint_eq(i.protocols, (1u << 0) | (1u << 1));
	ck_assert(i.tck_present);
	ck_assert_uint_eq(i.tck, 0x01);
	ck_assert_uint_eq(i.hist_len, 0);
	ck_assert(atr_is_iso14443_4(&i));
	i = parse_ok("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E");
	ck_assert(atr_is_iso14443_4(&i));
	/* a storage card's pseudo-ATR is not ISO 14443-4 */
	i = parse_ok("3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A");
	ck_assert(!atr_is_iso14443_4(&i));
	/* ISO 14443-4 type B: 3B 88 80 01 + 8 bytes (ATQB) + TCK */
	uint8_t b[16] = { 0x3B, 0x88, 0x80, 0x01, 1, 2, 3, 4, 5, 6, 7, 8 };
	uint8_t x = 0;
	for (int k = 1; k < 12; k++)
		x ^= b[k];
	b[12] = x;
	ck_assert_int_eq(atr_parse(b, 13, &i), 0);
	ck_assert(atr_is_iso14443_4(&i));
	ck_assert(!atr_is_iso14443_4(&(struct atr_info){ .error = ATR_ERR_TRUNCATED }));
}
END_TEST

START_TEST(test_errors)
{
	struct atr_info i;
	ck_assert_int_eq(atr_parse(NULL, 0, &i), -EINVAL);
	ck_assert_int_eq(i.error, ATR_ERR_EMPTY);
	uint8_t big[34];
	memset(big, 0, sizeof(big));
	big[0] = 0x3B;
	ck_assert_int_eq(atr_parse(big, sizeof(big), &i), -EINVAL);
	ck_assert_int_eq(i.error, ATR_ERR_TOO_LONG);
	ck_assert_int_eq(parse_err("3A 00"), ATR_ERR_BAD_TS);
	ck_assert_int_eq(parse_err("3B"), ATR_ERR_TRUNCATED);
	ck_assert_int_eq(parse_err("3B 75 13 00 00 47 09 EA 90"), ATR_ERR_TRUNCATED);
	ck_assert_int_eq(parse_err("3B 75 13 00 00 47 09 EA 90 00 00"), ATR_ERR_TRAILING);
	ck_assert_int_eq(parse_err("3B 80 80 01"), ATR_ERR_TCK_MISSING);
	ck_assert_int_eq(parse_err("3B 80 80 01 02"), ATR_ERR_TCK_MISMATCH);
	ck_assert_int_eq(parse_err("3B 80 80 80 80 80 80 80 80 80 80"), ATR_ERR_TOO_MANY_LEVELS);
	/* T=15 (global bytes) alone also needs TCK */
	ck_assert_int_eq(parse_err("3B 80 0F"), ATR_ERR_TCK_MISSING);
	parse_ok("3B 80 0F 8F");
	ck_assert_str_eq(atr_error_name(ATR_ERR_TCK_MISMATCH), "atr_tck_mismatch");
	ck_assert_str_eq(atr_error_name((enum atr_error)77), "atr_invalid");
	/* a raw-inverse stream that decodes to garbage still fails cleanly */
	ck_assert_int_eq(parse_err("03"), ATR_ERR_TRUNCATED);
}
END_TEST

START_TEST(test_hex)
{
	uint8_t b[8];
	size_t n;
	ck_assert_int_eq(atr_hex_parse("3b:75 13\t00", 11, b, sizeof(b), &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_mem_eq(b, "\x3B\x75\x13\x00", 4);
	ck_assert_int_eq(atr_hex_parse("3B7513", 6, b, sizeof(b), &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(atr_hex_parse("3B 7", 4, b, sizeof(b), &n), -EINVAL);
	ck_assert_int_eq(atr_hex_parse("3 B", 3, b, sizeof(b), &n), -EINVAL);
	ck_assert_int_eq(atr_hex_parse("3G", 2, b, sizeof(b), &n), -EINVAL);
	ck_assert_int_eq(atr_hex_parse("010203", 6, b, 2, &n), -EMSGSIZE);
	char out[64];
	ck_assert_str_eq(atr_hex_format((const uint8_t *)"\x3B\x75\x0A", 3, out, sizeof(out)),
	                 "3B 75 0A");
	ck_assert_str_eq(atr_hex_format((const uint8_t *)"\x3B\x75\x0A\x01", 4, out, 9), "3B 75...");
	ck_assert_str_eq(atr_hex_format(NULL, 0, out, sizeof(out)), "");
}
END_TEST

static unsigned
match(const char *v, const char *m, const char *atr)
{
	struct atr_pattern p;
	uint8_t b[64];
	ck_assert_int_eq(atr_pattern_parse(v, strlen(v), m, m ? strlen(m) : 0, &p), 0);
	size_t n = hx(atr, b);
	return atr_pattern_match(&p, b, n);
}

START_TEST(test_patterns)
{
	const char *v = "3B 75 13 00 00 40 09 EA 90 00", *m = "FF FF FF FF FF F0 FF EF FF FF";
	char atr[64];
	/* x = 3..C and the FA variant */
	for (unsigned x = 3; x <= 0xC; x++) {
		snprintf(atr, sizeof(atr), "3B 75 13 00 00 4%X 09 EA 90 00", x);
		ck_assert_uint_gt(match(v, m, atr), 0);
	}
	ck_assert_uint_gt(match(v, m, "3B 75 13 00 00 45 09 FA 90 00"), 0);
	ck_assert_uint_eq(match(v, m, "3B 75 13 00 00 55 09 EA 90 00"), 0);
	ck_assert_uint_eq(match(v, m, "3B 75 13 00 00 45 09 EB 90 00"), 0);
	ck_assert_uint_eq(match(v, m, "3B 75 13 00 00 45 09 EA 90"), 0);
	ck_assert_uint_eq(match(v, m, "3B 75 13 00 00 45 09 EA 90 00 00"), 0);
	/* nibble wildcards and ".." */
	ck_assert_uint_gt(match("3F 65 25 00 .. 09 .x 90 00", NULL, "3F 65 25 00 2C 09 69 90 00"), 0);
	ck_assert_uint_gt(match("3F 65 25 00 .. 09 .x 90 00", NULL, "3F 65 25 00 A4 09 6A 90 00"), 0);
	ck_assert_uint_eq(match("3F 65 25 00 .. 09 .x 90 00", NULL, "3F 65 25 08 22 04 68 90 00"), 0);
	/* prefix */
	ck_assert_uint_gt(match("3B 8. 80 01 ...", NULL, "3B 80 80 01 01"), 0);
	ck_assert_uint_gt(match("3B8.8001...", NULL, "3B 8F 80 01 80 4F"), 0);
	ck_assert_uint_eq(match("3B 8. 80 01 ...", NULL, "3B 80 80"), 0);
	/* specificity: exact beats masked beats prefix */
	unsigned exact = match("3B 75 13 00 00 47 09 EA 90 00", NULL, "3B 75 13 00 00 47 09 EA 90 00");
	unsigned masked = match(v, m, "3B 75 13 00 00 47 09 EA 90 00");
	unsigned pre = match("3B 75 13 00 00 47 ...", NULL, "3B 75 13 00 00 47 09 EA 90 00");
	ck_assert_uint_gt(exact, masked);
	ck_assert_uint_gt(masked, pre);
	ck_assert_uint_eq(exact, 80 * 2 + 2);

	/* bad patterns */
	struct atr_pattern p;
	const char *bad[] = { "", "3B 7", "3B 7G", "...", "3B .. .", "3B 75 13 00 00 40 09 EA 90 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00" };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		ck_assert_msg(atr_pattern_parse(bad[k], strlen(bad[k]), NULL, 0, &p) == -EINVAL,
		              "'%s' accepted", bad[k]);
	ck_assert_int_eq(atr_pattern_parse(v, strlen(v), "FF FF", 5, &p), -EINVAL);
	ck_assert_int_eq(atr_pattern_parse(v, strlen(v), "FF ..", 5, &p), -EINVAL);
	ck_assert_uint_eq(atr_pattern_match(NULL, (const uint8_t *)"\x3B", 1), 0);
}
END_TEST

START_TEST(test_random_garbage)
{
	unsigned seed = (unsigned)time(NULL);
	if (getenv("TEST_SEED"))
		seed = (unsigned)strtoul(getenv("TEST_SEED"), NULL, 10);
	printf("check_atr random seed %u (TEST_SEED to replay)\n", seed);
	srand(seed);
	unsigned ok = 0;
	for (int n = 0; n < 200000; n++) {
		uint8_t b[40];
		size_t len = (size_t)(rand() % 36);
		for (size_t k = 0; k < len; k++)
			b[k] = (uint8_t)rand();
		if (len && rand() % 2)
			b[0] = (rand() % 2) ? 0x3B : 0x3F;
		struct atr_info i;
		int r = atr_parse(b, len, &i);
		/* plain tests, ck_abort_msg only on failure: each ck_assert
		 * marks a point through Check's pipe, and 200,000 rounds of
		 * them took seconds of system time (a timeout on a loaded CI) */
		if (r == 0) {
			ok++;
			if (i.error != ATR_OK || i.len != len || i.hist_len > ATR_MAX_HIST ||
			    memcmp(i.hist, i.bytes + i.len - i.hist_len - (i.tck_present ? 1 : 0),
			           i.hist_len) != 0)
				ck_abort_msg("round %d: an accepted ATR is inconsistent", n);
		} else if (r != -EINVAL || i.error == ATR_OK ||
		           strcmp(atr_error_name(i.error), "atr_invalid") == 0) {
			ck_abort_msg("round %d: refused with %d, error %d", n, r, (int)i.error);
		}
	}
	ck_assert_uint_gt(ok, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("atr");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_vitale2);
	tcase_add_test(tc, test_vitale1_inverse);
	tcase_add_test(tc, test_wrong_convention_garbage);
	tcase_add_test(tc, test_cps_and_contactless);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_hex);
	tcase_add_test(tc, test_patterns);
	tcase_add_test(tc, test_random_garbage);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
