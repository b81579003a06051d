/* Unit tests for daemon/pin/cardpin against a fake reader holding a CPS-like
 * card with the semantics of tests/world/cards.py's "cps" (4-digit ASCII
 * PIN padded with FF to 8 bytes, reference 01, 3 tries, 63Cx, blocked
 * 6983 or 63C0, RESET RETRY COUNTER with an 8-digit code) and an optional
 * part 10 keypad that fills the PIN_VERIFY_STRUCTURE template the way a
 * CCID reader does. Every APDU sent is recorded, so the tests can check
 * that a blocked card never receives a PIN. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/pin/cardpin.h"

#define LOGMAX 32

struct reader_card {
	/* card */
	char pin[9];
	char puk[9];
	int tries, max_tries, puk_tries;
	bool verified;
	bool block_6983;
	/* reader */
	bool pinpad;
	const char *typed; /* what the person types on the keypad, or "cancel"/"timeout" */
	uint8_t last_structure[64];
	size_t last_structure_len;
	/* log */
	uint8_t apdu[LOGMAX][64];
	size_t apdu_len[LOGMAX];
	unsigned n;
};

static void
block(const char *pin, uint8_t out[8])
{
	memset(out, 0xFF, 8);
	memcpy(out, pin, strlen(pin));
}

static uint16_t
card_apdu(struct reader_card *c, const uint8_t *a, size_t len)
{
	if (c->n < LOGMAX) {
		memcpy(c->apdu[c->n], a, len < 64 ? len : 64);
		c->apdu_len[c->n++] = len;
	}
	if (len < 4)
		return 0x6700;
	size_t lc = len > 4 ? a[4] : 0;
	const uint8_t *data = a + 5;
	if (len > 5 && len != 5 + lc)
		return 0x6700;
	if (a[1] == 0x20) {
		if (a[2] != 0)
			return 0x6A86;
		if (a[3] != 0x01)
			return 0x6A88;
		if (lc == 0) {
			if (c->tries == 0)
				return 0x6983;
			return c->verified ? 0x9000 : (uint16_t)(0x63C0 | c->tries);
		}
		if (lc != 8)
			return 0x6700;
		if (c->tries == 0)
			return 0x6983;
		uint8_t want[8];
		block(c->pin, want);
		if (!memcmp(data, want, 8)) {
			c->tries = c->max_tries;
			c->verified = true;
			return 0x9000;
		}
		c->verified = false;
		c->tries--;
		if (c->tries == 0 && c->block_6983)
			return 0x6983;
		return (uint16_t)(0x63C0 | c->tries);
	}
	if (a[1] == 0x2C) {
		if (a[3] != 0x01)
			return 0x6A88;
		if ((a[2] == 0 && lc != 16) || (a[2] == 1 && lc != 8))
			return 0x6700;
		if (a[2] > 1)
			return 0x6A86;
		if (c->puk_tries == 0)
			return 0x6983;
		if (memcmp(data, c->puk, 8)) {
			c->puk_tries--;
			return c->puk_tries ? (uint16_t)(0x63C0 | (c->puk_tries > 15 ? 15 : c->puk_tries))
			                    : 0x6983;
		}
		if (a[2] == 0) {
			const uint8_t *nb = data + 8;
			size_t k = 0;
			while (k < 8 && nb[k] >= '0' && nb[k] <= '9')
				k++;
			for (size_t j = k; j < 8; j++)
				if (nb[j] != 0xFF)
					return 0x6A80;
			if (k < 4)
				return 0x6A80;
			memcpy(c->pin, nb, k);
			c->pin[k] = 0;
		}
		c->puk_tries = 10;
		c->tries = c->max_tries;
		return 0x9000;
	}
	return 0x6D00;
}

static int
fake_transmit(struct reader_card *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
              size_t *rlen)
{
	uint16_t sw = card_apdu(c, capdu, clen);
	if (*rlen < 2)
		return -EIO;
	rapdu[0] = (uint8_t)(sw >> 8);
	rapdu[1] = (uint8_t)sw;
	*rlen = 2;
	return 0;
}

static int
fake_control(struct reader_card *c, uint32_t code, const uint8_t *in, size_t inlen, uint8_t *out,
             size_t *outlen)
{
	if (code == PIN_CM_IOCTL_GET_FEATURE_REQUEST) {
		if (!c->pinpad)
			return -EIO;
		static const uint8_t f[] = { 0x06, 0x04, 0x42, 0x33, 0x00, 0x06,
			                     0x0A, 0x04, 0x42, 0x33, 0x00, 0x0A };
		memcpy(out, f, sizeof(f));
		*outlen = sizeof(f);
		return 0;
	}
	if (code != 0x42330006u || !c->pinpad)
		return -EIO;
	memcpy(c->last_structure, in, inlen < 64 ? inlen : 64);
	c->last_structure_len = inlen;
	/* a CCID reader: ASCII, byte units, left, position bits 6-3 */
	if (inlen < 19 || (in[2] & 0x03) != 0x02 || !(in[2] & 0x80))
		return -EIO;
	uint32_t dl = (uint32_t)in[15] | (uint32_t)in[16] << 8 | (uint32_t)in[17] << 16 |
	              (uint32_t)in[18] << 24;
	if (dl != inlen - 19 || dl > 40)
		return -EIO;
	uint16_t sw;
	if (!strcmp(c->typed, "cancel")) {
		sw = 0x6401;
	} else if (!strcmp(c->typed, "timeout")) {
		sw = 0x6400;
	} else {
		unsigned minl = in[6], maxl = in[5];
		size_t tl = strlen(c->typed);
		if (tl < minl || tl > maxl) {
			sw = 0x6403;
		} else {
			uint8_t apdu[48];
			memcpy(apdu, in + 19, dl);
			size_t pos = 5 + ((in[2] >> 3) & 0x0F);
			memcpy(apdu + pos, c->typed, tl);
			sw = card_apdu(c, apdu, dl);
		}
	}
	out[0] = (uint8_t)(sw >> 8);
	out[1] = (uint8_t)sw;
	*outlen = 2;
	return 0;
}

static const struct reader_ops fake_ops = {
	.name = "fake",
	.compiled_in = true,
	.transmit = fake_transmit,
	.control = fake_control,
};

static struct reader_card *
new_card(void)
{
	struct reader_card *c = calloc(1, sizeof(*c));
	ck_assert_ptr_nonnull(c);
	snprintf(c->pin, sizeof(c->pin), "1234");
	snprintf(c->puk, sizeof(c->puk), "12345678");
	c->tries = c->max_tries = 3;
	c->puk_tries = 10;
	c->typed = "1234";
	return c;
}

static struct secmem_pin *
mkpin(const char *s)
{
	struct secmem_pin *p;
	ck_assert_int_eq(secmem_pin_new(s, strlen(s), 1, 16, &p), 0);
	return p;
}

static int
verify(struct reader_card *c, const char *pin, struct pin_result *r)
{
	struct secmem_pin *p = mkpin(pin);
	int rc = cardpin_verify(&fake_ops, c, &pin_params_cps, p, r);
	secmem_pin_free(p);
	return rc;
}

static unsigned
verifies_with_data(const struct reader_card *c)
{
	unsigned k = 0;
	for (unsigned i = 0; i < c->n; i++)
		k += c->apdu[i][1] == 0x20 && c->apdu_len[i] > 5;
	return k;
}

START_TEST(right_pin)
{
	struct reader_card *c = new_card();
	struct pin_result r;
	ck_assert_int_eq(verify(c, "1234", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	ck_assert_uint_eq(c->n, 2); /* query, then VERIFY */
	static const uint8_t q[] = { 0x00, 0x20, 0x00, 0x01 };
	ck_assert_uint_eq(c->apdu_len[0], 4);
	ck_assert(!memcmp(c->apdu[0], q, 4));
	static const uint8_t v[] = { 0x00, 0x20, 0x00, 0x01, 0x08, 0x31, 0x32, 0x33,
		                     0x34, 0xFF, 0xFF, 0xFF, 0xFF };
	ck_assert_uint_eq(c->apdu_len[1], sizeof(v));
	ck_assert(!memcmp(c->apdu[1], v, sizeof(v)));
	/* verified already: the query says so and no PIN is sent again */
	ck_assert_int_eq(verify(c, "1234", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	ck_assert_uint_eq(c->n, 3);
	ck_assert_uint_eq(verifies_with_data(c), 1);
	free(c);
}
END_TEST

static void
count_down(bool use_6983)
{
	struct reader_card *c = new_card();
	c->block_6983 = use_6983;
	struct pin_result r;
	ck_assert_int_eq(verify(c, "9999", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, 2);
	ck_assert_int_eq(verify(c, "9999", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, 1);
	ck_assert_int_eq(verify(c, "9999", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_BLOCKED);
	ck_assert_int_eq(r.tries_left, 0);
	ck_assert_uint_eq(r.sw, use_6983 ? 0x6983 : 0x63C0);
	ck_assert_uint_eq(verifies_with_data(c), 3);
	/* the right PIN now: the query says blocked, the PIN is not sent */
	ck_assert_int_eq(verify(c, "1234", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_BLOCKED);
	ck_assert_uint_eq(verifies_with_data(c), 3);
	free(c);
}

START_TEST(tries_count_down_63c0)
{
	count_down(false);
}
END_TEST

START_TEST(tries_count_down_6983)
{
	count_down(true);
}
END_TEST

START_TEST(unblock)
{
	struct reader_card *c = new_card();
	c->tries = 0;
	struct pin_result r;
	struct secmem_pin *bad = mkpin("87654321"), *puk = mkpin("12345678"), *np = mkpin("5678");
	ck_assert_int_eq(cardpin_unblock(&fake_ops, c, &pin_params_cps, bad, NULL, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, 9);
	ck_assert_int_eq(cardpin_unblock(&fake_ops, c, &pin_params_cps, puk, np, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	static const uint8_t want[] = { 0x00, 0x2C, 0x00, 0x01, 0x10, '1', '2', '3', '4', '5', '6',
		                        '7', '8', '5', '6', '7', '8', 0xFF, 0xFF, 0xFF, 0xFF };
	ck_assert_uint_eq(c->apdu_len[c->n - 1], sizeof(want));
	ck_assert(!memcmp(c->apdu[c->n - 1], want, sizeof(want)));
	ck_assert_int_eq(verify(c, "1234", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(verify(c, "5678", &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	/* unblock keeping the PIN: P1 = 01 */
	c->tries = 0;
	ck_assert_int_eq(cardpin_unblock(&fake_ops, c, &pin_params_cps, puk, NULL, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	ck_assert_int_eq(c->apdu[c->n - 1][2], 0x01);
	ck_assert_int_eq(c->tries, 3);
	secmem_pin_free(bad);
	secmem_pin_free(puk);
	secmem_pin_free(np);
	free(c);
}
END_TEST

START_TEST(malformed_no_exchange)
{
	struct reader_card *c = new_card();
	struct pin_result r;
	ck_assert_int_eq(verify(c, "12", &r), -ERANGE);
	ck_assert_int_eq(verify(c, "123456789", &r), -ERANGE);
	ck_assert_uint_eq(c->n, 0);
	ck_assert_int_eq(cardpin_verify(&fake_ops, c, &pin_params_cps, NULL, &r), -EINVAL);
	ck_assert_uint_eq(c->n, 0);
	free(c);
}
END_TEST

START_TEST(pinpad)
{
	struct reader_card *c = new_card();
	struct pin_features f;
	ck_assert_int_eq(cardpin_features(&fake_ops, c, &f), -ENOTSUP);
	c->pinpad = true;
	ck_assert_int_eq(cardpin_features(&fake_ops, c, &f), 0);
	ck_assert_uint_eq(pin_feature_code(&f, PIN_FEATURE_VERIFY_PIN_DIRECT), 0x42330006u);
	struct pin_result r;
	c->typed = "4321";
	ck_assert_int_eq(cardpin_verify_pinpad(&fake_ops, c, &pin_params_cps, &pin_pinpad_default, &f, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_INCORRECT);
	ck_assert_int_eq(r.tries_left, 2);
	/* the structure the reader got, header byte for byte */
	static const uint8_t hdr[] = { 0x1E, 0x0A, 0x82, 0x08, 0x00, 0x04, 0x04, 0x02, 0x01,
		                       0x0C, 0x04, 0x00, 0x00, 0x00, 0x00, 0x0D, 0x00, 0x00, 0x00,
		                       0x00, 0x20, 0x00, 0x01, 0x08, 0xFF, 0xFF, 0xFF, 0xFF,
		                       0xFF, 0xFF, 0xFF, 0xFF };
	ck_assert_uint_eq(c->last_structure_len, sizeof(hdr));
	ck_assert(!memcmp(c->last_structure, hdr, sizeof(hdr)));
	c->typed = "cancel";
	ck_assert_int_eq(cardpin_verify_pinpad(&fake_ops, c, &pin_params_cps, &pin_pinpad_default, &f, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_PINPAD_CANCELLED);
	c->typed = "timeout";
	ck_assert_int_eq(cardpin_verify_pinpad(&fake_ops, c, &pin_params_cps, &pin_pinpad_default, &f, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_PINPAD_TIMEOUT);
	c->typed = "123";
	ck_assert_int_eq(cardpin_verify_pinpad(&fake_ops, c, &pin_params_cps, &pin_pinpad_default, &f, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_PINPAD_LENGTH);
	c->typed = "1234";
	ck_assert_int_eq(cardpin_verify_pinpad(&fake_ops, c, &pin_params_cps, &pin_pinpad_default, &f, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_OK);
	ck_assert_int_eq(c->tries, 3);
	/* a reader without VERIFY_PIN_DIRECT */
	struct pin_features none;
	memset(&none, 0, sizeof(none));
	ck_assert_int_eq(cardpin_verify_pinpad(&fake_ops, c, &pin_params_cps, &pin_pinpad_default, &none, &r),
	                 -ENOTSUP);
	free(c);
}
END_TEST

START_TEST(pinpad_blocked_card)
{
	struct reader_card *c = new_card();
	c->pinpad = true;
	c->tries = 0;
	struct pin_features f;
	ck_assert_int_eq(cardpin_features(&fake_ops, c, &f), 0);
	struct pin_result r;
	ck_assert_int_eq(cardpin_verify_pinpad(&fake_ops, c, &pin_params_cps, &pin_pinpad_default, &f, &r), 0);
	ck_assert_int_eq(r.status, PIN_ST_BLOCKED);
	ck_assert_uint_eq(c->last_structure_len, 0); /* the keypad was never asked */
	free(c);
}
END_TEST

static Suite *
cardpin_suite(void)
{
	Suite *s = suite_create("cardpin");
	TCase *tc = tcase_create("cps");
	tcase_add_test(tc, right_pin);
	tcase_add_test(tc, tries_count_down_63c0);
	tcase_add_test(tc, tries_count_down_6983);
	tcase_add_test(tc, unblock);
	tcase_add_test(tc, malformed_no_exchange);
	tcase_add_test(tc, pinpad);
	tcase_add_test(tc, pinpad_blocked_card);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cardpin_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
