/* Unit tests for protocol/pin: VERIFY and RESET RETRY COUNTER bytes in
 * every format, malformed PINs refused without a byte written, status
 * words, the part 10 feature TLV and PIN_VERIFY_STRUCTURE byte for byte.
 *
 * Expected bytes are written by hand from ISO 7816-4 §11.5.6/§11.5.10 and
 * PC/SC part 10 v2.02.09 §2.2/§2.5.2, not computed by the code under test.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/pin.h"

static void
expect_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len)
{
	ck_assert_uint_eq(got_len, want_len);
	for (size_t i = 0; i < want_len; i++)
		ck_assert_msg(got[i] == want[i], "byte %zu: got %02X want %02X", i, got[i], want[i]);
}

static int
all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

START_TEST(verify_ascii_cps)
{
	uint8_t out[PIN_APDU_MAX];
	size_t n = 99;
	ck_assert_int_eq(pin_build_verify(&pin_params_cps, "1234", 4, out, sizeof(out), &n), 0);
	static const uint8_t want[] = { 0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33,
		                        0x34, 0xFF, 0xFF, 0xFF, 0xFF };
	expect_bytes(out, n, want, sizeof(want));

	/* a CPS PIN is 4 digits; a profile allowing 8 fills the block */
	ck_assert_int_eq(pin_build_verify(&pin_params_cps, "12345678", 8, out, sizeof(out), &n), -ERANGE);
	struct pin_params p8 = pin_params_cps;
	p8.max_len = 8;
	ck_assert_int_eq(pin_build_verify(&p8, "12345678", 8, out, sizeof(out), &n), 0);
	static const uint8_t want8[] = { 0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33,
		                         0x34, 0x35, 0x36, 0x37, 0x38 };
	expect_bytes(out, n, want8, sizeof(want8));
}
END_TEST

START_TEST(verify_other_ref_pad_cla)
{
	struct pin_params p = pin_params_cps;
	p.ref = 0x81;
	p.pad = 0x00;
	p.cla = 0x80;
	p.max_len = 8;
	uint8_t out[PIN_APDU_MAX];
	size_t n;
	ck_assert_int_eq(pin_build_verify(&p, "90210", 5, out, sizeof(out), &n), 0);
	static const uint8_t want[] = { 0x80, 0x20, 0x00, 0x81, 0x08, 0x39, 0x30, 0x32,
		                        0x31, 0x30, 0x00, 0x00, 0x00 };
	expect_bytes(out, n, want, sizeof(want));
}
END_TEST

START_TEST(verify_bcd)
{
	struct pin_params p = pin_params_cps;
	p.format = PIN_FORMAT_BCD;
	p.max_len = 8;
	uint8_t out[PIN_APDU_MAX];
	size_t n;
	ck_assert_int_eq(pin_build_verify(&p, "1234", 4, out, sizeof(out), &n), 0);
	static const uint8_t want[] = { 0x00, 0x20, 0x00, 0x01, 0x08, 0x12, 0x34, 0xFF,
		                        0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
	expect_bytes(out, n, want, sizeof(want));
	/* odd length: the last digit's low nibble is the pad nibble */
	ck_assert_int_eq(pin_build_verify(&p, "12345", 5, out, sizeof(out), &n), 0);
	static const uint8_t want5[] = { 0x00, 0x20, 0x00, 0x01, 0x08, 0x12, 0x34, 0x5F,
		                         0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
	expect_bytes(out, n, want5, sizeof(want5));
	/* pad 0x00 gives 0 nibbles; a 4-byte block */
	p.pad = 0x00;
	p.block_len = 4;
	ck_assert_int_eq(pin_build_verify(&p, "9876543", 7, out, sizeof(out), &n), 0);
	static const uint8_t want7[] = { 0x00, 0x20, 0x00, 0x01, 0x04, 0x98, 0x76, 0x54, 0x30 };
	expect_bytes(out, n, want7, sizeof(want7));
}
END_TEST

START_TEST(verify_iso9564_2)
{
	struct pin_params p = pin_params_cps;
	p.format = PIN_FORMAT_ISO9564_2;
	p.ref = 0x80;
	p.max_len = 12;
	uint8_t out[PIN_APDU_MAX];
	size_t n;
	ck_assert_int_eq(pin_build_verify(&p, "1234", 4, out, sizeof(out), &n), 0);
	static const uint8_t want[] = { 0x00, 0x20, 0x00, 0x80, 0x08, 0x24, 0x12, 0x34,
		                        0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
	expect_bytes(out, n, want, sizeof(want));
	ck_assert_int_eq(pin_build_verify(&p, "123456789012", 12, out, sizeof(out), &n), 0);
	static const uint8_t want12[] = { 0x00, 0x20, 0x00, 0x80, 0x08, 0x2C, 0x12, 0x34,
		                          0x56, 0x78, 0x90, 0x12, 0xFF };
	expect_bytes(out, n, want12, sizeof(want12));
}
END_TEST

START_TEST(malformed_refused_nothing_written)
{
	static const char *const bad[] = { "123", "123456789", "12a4", "12 4", "-123",
		                           "１２３４", "1234\n", "" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t out[PIN_APDU_MAX];
		memset(out, 0xA5, sizeof(out));
		size_t n = 77;
		int r = pin_build_verify(&pin_params_cps, bad[i], strlen(bad[i]), out, sizeof(out), &n);
		ck_assert_msg(r == -EINVAL || r == -ERANGE, "'%s' gave %d", bad[i], r);
		ck_assert_uint_eq(n, 0);
		/* wiped, not left with the sentinel or a partial APDU */
		ck_assert(all_zero(out, sizeof(out)));
	}
	/* length errors and digit errors are told apart */
	ck_assert_int_eq(pin_check(&pin_params_cps, "123", 3), -ERANGE);
	ck_assert_int_eq(pin_check(&pin_params_cps, "12345678901", 11), -ERANGE);
	ck_assert_int_eq(pin_check(&pin_params_cps, "12x4", 4), -EINVAL);
	/* an embedded NUL is not a digit */
	ck_assert_int_eq(pin_check(&pin_params_cps, "12\0004", 4), -EINVAL);
	ck_assert_int_eq(pin_check(&pin_params_cps, "0000", 4), 0);
	ck_assert_int_eq(pin_check(&pin_params_cps, "9999", 4), 0);
	/* a CPS PIN is 4 digits: 5 or 8 are refused */
	ck_assert_int_eq(pin_check(&pin_params_cps, "99999", 5), -ERANGE);
	ck_assert_int_eq(pin_check(&pin_params_cps, "99999999", 8), -ERANGE);
}
END_TEST

START_TEST(buffer_too_small)
{
	uint8_t out[12];
	size_t n;
	memset(out, 0xA5, sizeof(out));
	ck_assert_int_eq(pin_build_verify(&pin_params_cps, "1234", 4, out, sizeof(out), &n), -ENOBUFS);
	ck_assert_uint_eq(n, 0);
	ck_assert(all_zero(out, sizeof(out)));
}
END_TEST

START_TEST(params_checked)
{
	struct pin_params p = pin_params_cps;
	ck_assert_int_eq(pin_params_check(&p), 0);
	p.min_len = 3;
	ck_assert_int_eq(pin_params_check(&p), -EINVAL);
	p = pin_params_cps;
	p.max_len = 9; /* does not fit an 8-byte ASCII block */
	ck_assert_int_eq(pin_params_check(&p), -EINVAL);
	p.format = PIN_FORMAT_BCD; /* 9 digits fit 8 BCD bytes */
	ck_assert_int_eq(pin_params_check(&p), 0);
	p.format = PIN_FORMAT_ISO9564_2;
	p.block_len = 6;
	ck_assert_int_eq(pin_params_check(&p), -EINVAL);
	p = pin_params_cps;
	p.block_len = 0;
	ck_assert_int_eq(pin_params_check(&p), -EINVAL);
	p = pin_params_cps;
	p.min_len = 8;
	p.max_len = 6;
	ck_assert_int_eq(pin_params_check(&p), -EINVAL);
	uint8_t out[PIN_APDU_MAX];
	size_t n;
	ck_assert_int_eq(pin_build_verify(&p, "1234567", 7, out, sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(pin_params_check(NULL), -EINVAL);
}
END_TEST

START_TEST(query_apdu)
{
	uint8_t out[8];
	size_t n;
	ck_assert_int_eq(pin_build_verify_query(&pin_params_cps, out, sizeof(out), &n), 0);
	static const uint8_t want[] = { 0x00, 0x20, 0x00, 0x01 };
	expect_bytes(out, n, want, sizeof(want));
	ck_assert_int_eq(pin_build_verify_query(&pin_params_cps, out, 3, &n), -ENOBUFS);
}
END_TEST

/* A profile's own P1 goes into every VERIFY form (and nowhere else:
 * RESET RETRY COUNTER's P1 says which variant it is). */
START_TEST(p1_from_params)
{
	struct pin_params p = pin_params_cps;
	p.p1 = 0x80;
	uint8_t out[PIN_VERIFY_STRUCTURE_MAX];
	size_t n;
	ck_assert_int_eq(pin_build_verify_query(&p, out, sizeof(out), &n), 0);
	static const uint8_t q[] = { 0x00, 0x20, 0x80, 0x01 };
	expect_bytes(out, n, q, sizeof(q));
	ck_assert_int_eq(pin_build_verify(&p, "1234", 4, out, sizeof(out), &n), 0);
	static const uint8_t v[] = { 0x00, 0x20, 0x80, 0x01, 0x08, '1', '2', '3', '4', 0xFF, 0xFF,
		                     0xFF, 0xFF };
	expect_bytes(out, n, v, sizeof(v));
	ck_assert_int_eq(pin_build_verify_structure(&p, &pin_pinpad_default, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(out[PIN_VERIFY_STRUCTURE_HDR + 2], 0x80);
	ck_assert_int_eq(pin_build_reset_retry(&p, "12345678", 8, NULL, 0, out, sizeof(out), &n), 0);
	ck_assert_uint_eq(out[2], 0x01);
}
END_TEST

START_TEST(reset_retry_counter)
{
	uint8_t out[PIN_APDU_MAX];
	size_t n;
	/* P1 = 00: unblock code then the new PIN block (cards.py's CPS layout) */
	ck_assert_int_eq(pin_build_reset_retry(&pin_params_cps, "12345678", 8, "4321", 4, out,
	                                       sizeof(out), &n), 0);
	static const uint8_t want[] = { 0x00, 0x2C, 0x00, 0x01, 0x10, '1', '2', '3', '4', '5',
		                        '6', '7', '8', '4', '3', '2', '1', 0xFF, 0xFF, 0xFF, 0xFF };
	expect_bytes(out, n, want, sizeof(want));
	/* P1 = 01: unblock code only */
	ck_assert_int_eq(pin_build_reset_retry(&pin_params_cps, "87654321", 8, NULL, 0, out,
	                                       sizeof(out), &n), 0);
	static const uint8_t want1[] = { 0x00, 0x2C, 0x01, 0x01, 0x08, '8', '7', '6', '5',
		                         '4', '3', '2', '1' };
	expect_bytes(out, n, want1, sizeof(want1));
	/* a 7-digit code, a letter, a bad new PIN: refused, wiped */
	memset(out, 0xA5, sizeof(out));
	ck_assert_int_eq(pin_build_reset_retry(&pin_params_cps, "1234567", 7, NULL, 0, out,
	                                       sizeof(out), &n), -ERANGE);
	ck_assert(all_zero(out, sizeof(out)));
	ck_assert_int_eq(pin_build_reset_retry(&pin_params_cps, "1234567A", 8, NULL, 0, out,
	                                       sizeof(out), &n), -EINVAL);
	ck_assert_int_eq(pin_build_reset_retry(&pin_params_cps, "12345678", 8, "12", 2, out,
	                                       sizeof(out), &n), -ERANGE);
	ck_assert_uint_eq(n, 0);
	struct pin_params nopuk = pin_params_cps;
	nopuk.puk_len = 0;
	ck_assert_int_eq(pin_build_reset_retry(&nopuk, "12345678", 8, NULL, 0, out, sizeof(out), &n),
	                 -EINVAL);
}
END_TEST

START_TEST(sw_verify)
{
	struct pin_result r;
	pin_parse_sw(PIN_CMD_VERIFY, 0x9000, &r);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	for (int x = 1; x <= 15; x++) {
		pin_parse_sw(PIN_CMD_VERIFY, (uint16_t)(0x63C0 | x), &r);
		ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
		ck_assert_int_eq(r.tries_left, x);
	}
	pin_parse_sw(PIN_CMD_VERIFY, 0x63C0, &r);
	ck_assert_int_eq(r.status, PIN_ST_BLOCKED);
	ck_assert_int_eq(r.tries_left, 0);
	pin_parse_sw(PIN_CMD_VERIFY, 0x6983, &r);
	ck_assert_int_eq(r.status, PIN_ST_BLOCKED);
	ck_assert_int_eq(r.tries_left, 0);
	pin_parse_sw(PIN_CMD_VERIFY, 0x6300, &r);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, -1);
	static const struct {
		uint16_t sw;
		enum pin_status st;
	} named[] = {
		{ 0x6984, PIN_ST_REF_UNUSABLE }, { 0x6985, PIN_ST_CONDITIONS },
		{ 0x6982, PIN_ST_SECURITY },     { 0x6A80, PIN_ST_WRONG_DATA },
		{ 0x6A86, PIN_ST_BAD_P1P2 },     { 0x6A88, PIN_ST_REF_NOT_FOUND },
		{ 0x6700, PIN_ST_WRONG_LENGTH }, { 0x6D00, PIN_ST_NOT_SUPPORTED },
		{ 0x6E00, PIN_ST_NOT_SUPPORTED }, { 0x6F00, PIN_ST_CARD_ERROR },
		{ 0x6400, PIN_ST_CARD_ERROR },   /* from a card, 6400 is not a pinpad timeout */
		{ 0x63D1, PIN_ST_CARD_ERROR },
	};
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
		pin_parse_sw(PIN_CMD_VERIFY, named[i].sw, &r);
		ck_assert_msg(r.status == named[i].st, "SW %04X: %s", named[i].sw,
		              pin_status_name(r.status));
		ck_assert_int_eq(r.sw, named[i].sw);
		ck_assert_int_eq(r.tries_left, -1);
	}
}
END_TEST

START_TEST(sw_query_pinpad)
{
	struct pin_result r;
	pin_parse_sw(PIN_CMD_QUERY, 0x63C3, &r);
	ck_assert_int_eq(r.status, PIN_ST_NEEDED);
	ck_assert_int_eq(r.tries_left, 3);
	pin_parse_sw(PIN_CMD_QUERY, 0x9000, &r);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	pin_parse_sw(PIN_CMD_PINPAD_VERIFY, 0x6400, &r);
	ck_assert_int_eq(r.status, PIN_ST_PINPAD_TIMEOUT);
	pin_parse_sw(PIN_CMD_PINPAD_VERIFY, 0x6401, &r);
	ck_assert_int_eq(r.status, PIN_ST_PINPAD_CANCELLED);
	pin_parse_sw(PIN_CMD_PINPAD_VERIFY, 0x6402, &r);
	ck_assert_int_eq(r.status, PIN_ST_PINPAD_MISMATCH);
	pin_parse_sw(PIN_CMD_PINPAD_VERIFY, 0x6403, &r);
	ck_assert_int_eq(r.status, PIN_ST_PINPAD_LENGTH);
	pin_parse_sw(PIN_CMD_PINPAD_VERIFY, 0x63C1, &r);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, 1);
	pin_parse_sw(PIN_CMD_RESET_RETRY, 0x63C9, &r);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, 9);

	static const uint8_t ans[] = { 0xAA, 0x63, 0xC2 };
	ck_assert_int_eq(pin_parse_answer(PIN_CMD_VERIFY, ans, 3, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, 2);
	ck_assert_int_eq(pin_parse_answer(PIN_CMD_VERIFY, ans, 1, &r), -EBADMSG);
	ck_assert_int_eq(r.status, PIN_ST_CARD_ERROR);
	ck_assert_int_eq(pin_parse_answer(PIN_CMD_VERIFY, NULL, 0, &r), -EBADMSG);
	ck_assert_str_eq(pin_status_name(PIN_ST_BLOCKED), "blocked");
}
END_TEST

START_TEST(features_tlv)
{
	/* what a CCID pinpad reader answers (pcsc-lite ccid: codes 0x42330000 + tag) */
	static const uint8_t ans[] = {
		0x06, 0x04, 0x42, 0x33, 0x00, 0x06, /* VERIFY_PIN_DIRECT */
		0x07, 0x04, 0x42, 0x33, 0x00, 0x07, /* MODIFY_PIN_DIRECT */
		0x0A, 0x04, 0x42, 0x33, 0x00, 0x0A, /* IFD_PIN_PROPERTIES */
		0x12, 0x04, 0x42, 0x33, 0x00, 0x12, /* GET_TLV_PROPERTIES */
		0x06, 0x04, 0x11, 0x11, 0x11, 0x11, /* repeated tag: the first wins */
	};
	struct pin_features f;
	ck_assert_int_eq(pin_features_parse(ans, sizeof(ans), &f), 0);
	ck_assert_uint_eq(f.count, 4);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_VERIFY_PIN_DIRECT), 0x42330006u);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_MODIFY_PIN_DIRECT), 0x42330007u);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_IFD_PIN_PROPERTIES), 0x4233000Au);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_GET_TLV_PROPERTIES), 0x42330012u);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_VERIFY_PIN_START), 0);

	/* no keypad: empty answer, no features */
	ck_assert_int_eq(pin_features_parse(NULL, 0, &f), 0);
	ck_assert_uint_eq(f.count, 0);

	/* truncated value, truncated header, length other than 4 */
	ck_assert_int_eq(pin_features_parse(ans, 5, &f), -EBADMSG);
	ck_assert_uint_eq(f.count, 0);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_VERIFY_PIN_DIRECT), 0);
	ck_assert_int_eq(pin_features_parse(ans, 7, &f), -EBADMSG);
	static const uint8_t badlen[] = { 0x06, 0x02, 0x42, 0x33 };
	ck_assert_int_eq(pin_features_parse(badlen, sizeof(badlen), &f), -EBADMSG);
	static const uint8_t ok_then_bad[] = { 0x06, 0x04, 0x42, 0x33, 0x00, 0x06, 0x07, 0x05,
		                               0, 0, 0, 0, 0 };
	ck_assert_int_eq(pin_features_parse(ok_then_bad, sizeof(ok_then_bad), &f), -EBADMSG);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_VERIFY_PIN_DIRECT), 0);
	/* longer than any real answer */
	uint8_t *big = calloc(PIN_FEATURES_MAX_LEN + 6, 1);
	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i + 6 <= PIN_FEATURES_MAX_LEN + 6; i += 6) {
		big[i] = (uint8_t)(i / 6);
		big[i + 1] = 4;
		big[i + 5] = 1;
	}
	ck_assert_int_eq(pin_features_parse(big, PIN_FEATURES_MAX_LEN + 6, &f), -EBADMSG);
	ck_assert_int_eq(pin_features_parse(big, PIN_FEATURES_MAX_LEN, &f), 0);
	ck_assert_uint_eq(f.count, 256);
	free(big);
	/* the IOCTL code of part 10 §2.2 as pcsc-lite defines it */
	ck_assert_uint_eq(PIN_CM_IOCTL_GET_FEATURE_REQUEST, 0x42000D48u);
}
END_TEST

START_TEST(verify_structure_ascii)
{
	uint8_t out[PIN_VERIFY_STRUCTURE_MAX + 4];
	size_t n;
	ck_assert_int_eq(pin_build_verify_structure(&pin_params_cps, &pin_pinpad_default, out,
	                                            sizeof(out), &n), 0);
	/* §2.5.2, by hand: */
	static const uint8_t want[] = {
		0x1E,       /* bTimerOut 30 s */
		0x0A,       /* bTimerOut2 10 s */
		0x82,       /* bmFormatString: bytes, position 0, left, ASCII */
		0x08,       /* bmPINBlockString: no length field, 8-byte block */
		0x00,       /* bmPINLengthFormat: no length */
		0x04, 0x04, /* wPINMaxExtraDigit 0x0404 LE: max 4, min 4 (a CPS PIN) */
		0x02,       /* bEntryValidationCondition: OK key */
		0x01,       /* bNumberMessage */
		0x0C, 0x04, /* wLangId 0x040C LE (French) */
		0x00,       /* bMsgIndex */
		0x00, 0x00, 0x00, /* bTeoPrologue */
		0x0D, 0x00, 0x00, 0x00, /* ulDataLength 13 LE */
		0x00, 0x20, 0x00, 0x01, 0x08, /* VERIFY header */
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* the template the reader fills */
	};
	expect_bytes(out, n, want, sizeof(want));
	ck_assert_int_eq(pin_build_verify_structure(&pin_params_cps, &pin_pinpad_default, out,
	                                            sizeof(want) - 1, &n), -ENOBUFS);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(verify_structure_bcd_format2)
{
	struct pin_pinpad pp = { .timeout_s = 0, .timeout2_s = 0, .validation = 0x03,
		                 .messages = 0, .lang_id = 0x0409, .msg_index = 0 };
	struct pin_params p = pin_params_cps;
	p.format = PIN_FORMAT_BCD;
	p.max_len = 8;
	p.ref = 0x81;
	p.block_len = 4;
	p.max_len = 8;
	p.min_len = 6;
	uint8_t out[PIN_VERIFY_STRUCTURE_MAX];
	size_t n;
	ck_assert_int_eq(pin_build_verify_structure(&p, &pp, out, sizeof(out), &n), 0);
	static const uint8_t want_bcd[] = {
		0x00, 0x00, 0x81, 0x04, 0x00, 0x08, 0x06, 0x03, 0x00, 0x09, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
		0x00, 0x20, 0x00, 0x81, 0x04, 0xFF, 0xFF, 0xFF, 0xFF,
	};
	expect_bytes(out, n, want_bcd, sizeof(want_bcd));

	p = pin_params_cps;
	p.format = PIN_FORMAT_ISO9564_2;
	p.ref = 0x80;
	p.max_len = 12;
	ck_assert_int_eq(pin_build_verify_structure(&p, &pin_pinpad_default, out, sizeof(out), &n), 0);
	static const uint8_t want_f2[] = {
		0x1E, 0x0A,
		0x41, /* bits units, digits at bit 8, left, BCD */
		0x48, /* a 4-bit length field, 8-byte block */
		0x04, /* length at bit 4, bit units */
		0x0C, 0x04, 0x02, 0x01, 0x0C, 0x04, 0x00, 0x00, 0x00, 0x00,
		0x0D, 0x00, 0x00, 0x00,
		0x00, 0x20, 0x00, 0x80, 0x08, 0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	};
	expect_bytes(out, n, want_f2, sizeof(want_f2));

	p = pin_params_cps;
	p.max_len = 2; /* invalid params */
	ck_assert_int_eq(pin_build_verify_structure(&p, &pp, out, sizeof(out), &n), -EINVAL);
}
END_TEST

static Suite *
pin_suite(void)
{
	Suite *s = suite_create("pin");
	TCase *tc = tcase_create("apdu");
	tcase_add_test(tc, verify_ascii_cps);
	tcase_add_test(tc, verify_other_ref_pad_cla);
	tcase_add_test(tc, verify_bcd);
	tcase_add_test(tc, verify_iso9564_2);
	tcase_add_test(tc, malformed_refused_nothing_written);
	tcase_add_test(tc, buffer_too_small);
	tcase_add_test(tc, params_checked);
	tcase_add_test(tc, query_apdu);
	tcase_add_test(tc, p1_from_params);
	tcase_add_test(tc, reset_retry_counter);
	suite_add_tcase(s, tc);
	tc = tcase_create("answers");
	tcase_add_test(tc, sw_verify);
	tcase_add_test(tc, sw_query_pinpad);
	suite_add_tcase(s, tc);
	tc = tcase_create("part10");
	tcase_add_test(tc, features_tlv);
	tcase_add_test(tc, verify_structure_ascii);
	tcase_add_test(tc, verify_structure_bcd_format2);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(pin_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
