/* Unit tests of daemon/cards.c: the placeholder reader (one SELECT MF,
 * nothing read, errors passed on), the JSON views (no full NIR outside
 * CARD_JSON_FULL, no names in the read-only summary), wiping. */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "cards.h"

struct fake {
	int rc;
	uint8_t answer[4];
	size_t alen;
	unsigned calls;
	uint8_t last[16];
	size_t lastlen;
};

static int
fake_tx(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct fake *f = ctx;
	f->calls++;
	memcpy(f->last, capdu, clen < sizeof(f->last) ? clen : sizeof(f->last));
	f->lastlen = clen;
	if (f->rc < 0) {
		*rlen = 0;
		return f->rc;
	}
	memcpy(rapdu, f->answer, f->alen);
	*rlen = f->alen;
	return 0;
}

static void
fake_reading(void *ctx)
{
	(void)ctx;
}

static const uint8_t ATR[] = { 0x3B, 0x75, 0x13, 0x00, 0x00, 0x47, 0x09, 0xEA, 0x90, 0x00 };

START_TEST(t_placeholder_unknown)
{
	const struct card_reader_fn *fn = cards_reader();
	struct card_result r = { 0 };
	card_result_clear(&r);
	fn->identify(ATR, sizeof(ATR), &r);
	ck_assert_str_eq(r.profile, "unknown");
	ck_assert_str_eq(r.kind, "unknown");
	ck_assert_str_eq(r.atr_hex, "3B751300004709EA9000");
	ck_assert(!r.recognised);
	struct fake f = { .answer = { 0x6A, 0x82 }, .alen = 2 };
	struct card_io io = { fake_tx, fake_reading, &f, NULL };
	ck_assert_int_eq(fn->read(&io, &r), 0);
	ck_assert_uint_eq(f.calls, 1);
	static const uint8_t sel[] = { 0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00 };
	ck_assert_uint_eq(f.lastlen, sizeof(sel));
	ck_assert_mem_eq(f.last, sel, sizeof(sel));
	ck_assert(!r.readable);
	ck_assert_uint_eq(r.nbeneficiaries, 0);
	ck_assert_uint_eq(r.nfields, 1);
	ck_assert_str_eq(r.fields[0].name, "probe_sw");
	ck_assert_str_eq(r.fields[0].value, "6A82");
	ck_assert_str_eq(r.error, "");
}
END_TEST

START_TEST(t_placeholder_errors)
{
	const struct card_reader_fn *fn = cards_reader();
	struct card_result r = { 0 };
	card_result_clear(&r);
	fn->identify(ATR, sizeof(ATR), &r);
	struct fake f = { .rc = -ETIMEDOUT };
	struct card_io io = { fake_tx, fake_reading, &f, NULL };
	ck_assert_int_eq(fn->read(&io, &r), -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(r.error, "no answer in time"));
	card_result_clear(&r);
	struct fake g = { .answer = { 0x90 }, .alen = 1 };
	io.ctx = &g;
	ck_assert_int_eq(fn->read(&io, &r), -EIO);
	ck_assert_str_eq(card_strerror(-ENODEV), "the card was removed");
}
END_TEST

static void
fill(struct card_result *r)
{
	card_result_clear(r);
	snprintf(r->profile, sizeof(r->profile), "vitale2");
	snprintf(r->kind, sizeof(r->kind), "patient");
	card_atr_hex(ATR, sizeof(ATR), r->atr_hex, sizeof(r->atr_hex));
	r->recognised = r->readable = true;
	r->nbeneficiaries = 1;
	struct card_beneficiary *b = &r->beneficiaries[0];
	snprintf(b->surname, sizeof(b->surname), "MARTIN");
	snprintf(b->given_name, sizeof(b->given_name), "Claire");
	snprintf(b->birth_date, sizeof(b->birth_date), "1984-03-12");
	snprintf(b->nir, sizeof(b->nir), "284037512345678");
	b->nir_valid = true;
	card_result_add_field(r, "valid_from", "2020-01-01");
	r->apdus = 12;
}

START_TEST(t_json_views)
{
	struct card_result r = { 0 };
	fill(&r);
	json_t *full = card_result_json(&r, CARD_JSON_FULL);
	json_t *sum = card_result_json(&r, CARD_JSON_SUMMARY);
	json_t *sid = card_result_json(&r, CARD_JSON_SUMMARY_ID);
	char *sf = json_dumps(full, JSON_COMPACT), *ss = json_dumps(sum, JSON_COMPACT),
	     *si = json_dumps(sid, JSON_COMPACT);
	ck_assert_ptr_nonnull(strstr(sf, "\"nir\":\"284037512345678\""));
	ck_assert_ptr_nonnull(strstr(sf, "\"birth_date\":\"1984-03-12\""));
	ck_assert_ptr_nonnull(strstr(sf, "\"valid_from\":\"2020-01-01\""));
	ck_assert_ptr_nonnull(strstr(sf, "\"error\":null"));
	/* no full NIR in either summary, no names in the read-only one */
	ck_assert_ptr_null(strstr(ss, "2840375"));
	ck_assert_ptr_null(strstr(si, "2840375"));
	ck_assert_ptr_nonnull(strstr(ss, "\"nir_masked\":\"284"));
	ck_assert_ptr_null(strstr(ss, "MARTIN"));
	ck_assert_ptr_null(strstr(ss, "1984-03-12"));
	ck_assert_ptr_nonnull(strstr(si, "MARTIN"));
	ck_assert_ptr_null(strstr(si, "1984-03-12"));
	free(sf);
	free(ss);
	free(si);
	json_decref(full);
	json_decref(sum);
	json_decref(sid);
	card_result_clear(&r);
	static const struct card_result zero;
	ck_assert_mem_eq(&r, &zero, sizeof(r));
}
END_TEST

START_TEST(t_bounds)
{
	struct card_result r = { 0 };
	card_result_clear(&r);
	for (int i = 0; i < CARD_FIELDS_MAX; i++)
		ck_assert_int_eq(card_result_add_field(&r, "f", "v"), 0);
	ck_assert_int_eq(card_result_add_field(&r, "f", "v"), -ENOSPC);
	char small[5];
	card_atr_hex(ATR, sizeof(ATR), small, sizeof(small));
	ck_assert_str_eq(small, "3B75");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("cards");
	TCase *tc = tcase_create("cards");
	tcase_add_test(tc, t_placeholder_unknown);
	tcase_add_test(tc, t_placeholder_errors);
	tcase_add_test(tc, t_json_views);
	tcase_add_test(tc, t_bounds);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
