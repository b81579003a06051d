/* Unit tests of daemon/cards/cards.c and the card JSON of api_cards.c: the
 * placeholder reader of tests/unit/support (one SELECT MF, nothing read,
 * errors passed on) through the card_reader_fn seam, the JSON views (no
 * full NIR outside CARD_JSON_FULL, no names in the read-only summary), the
 * masked NIR, wiping, the
 * ownership of the evidence blobs (move, clear; run under valgrind or ASan
 * for the leak half); and daemon/cards/cards_digital.c with a scripted phone: the
 * trust anchors at start-up, no_applet as an unknown card, a refusal with
 * its §12 name and detail. The accepted presentation is in
 * tests/integration/test_digital.py (it needs a phone that signs the
 * terminal's fresh nonce). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/config.h"
#include "daemon/cards/api_cards.h"
#include "daemon/cards/cards.h"
#include "daemon/cards/cards_digital.h"
#include "daemon/core/daemon.h"
#include "lib/hex.h"
#include "tests/unit/support/placeholder_card.h"

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
	const struct card_reader_fn *fn = &placeholder_card_reader;
	struct card_result r = { 0 };
	card_result_clear(&r);
	fn->identify(ATR, sizeof(ATR), &r);
	ck_assert_str_eq(r.profile, "unknown");
	ck_assert_str_eq(r.kind, "unknown");
	ck_assert_str_eq(r.atr_hex, "3B751300004709EA9000");
	ck_assert(!r.recognised);
	struct fake f = { .answer = { 0x6A, 0x82 }, .alen = 2 };
	struct card_io io = { fake_tx, fake_reading, &f, NULL, NULL };
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
	const struct card_reader_fn *fn = &placeholder_card_reader;
	struct card_result r = { 0 };
	card_result_clear(&r);
	fn->identify(ATR, sizeof(ATR), &r);
	struct fake f = { .rc = -ETIMEDOUT };
	struct card_io io = { fake_tx, fake_reading, &f, NULL, NULL };
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
	hex_encode(ATR, sizeof(ATR), true, r->atr_hex, sizeof(r->atr_hex));
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
	hex_encode(ATR, sizeof(ATR), true, small, sizeof(small));
	ck_assert_str_eq(small, "3B75");
}
END_TEST

/* The masked NIR as logs and events have always shown it: three
 * characters and twelve '*' whatever the length read from the card,
 * "(none)" for none; an unprintable card byte never reaches a log. */
START_TEST(t_nir_mask)
{
	char m[32];
	ck_assert_str_eq(card_nir_mask("284037512345678", m, sizeof(m)), "284************");
	ck_assert_str_eq(card_nir_mask("2840375123456", m, sizeof(m)), "284************");
	ck_assert_str_eq(card_nir_mask("284", m, sizeof(m)), "284************");
	ck_assert_str_eq(card_nir_mask("28", m, sizeof(m)), "(none)");
	ck_assert_str_eq(card_nir_mask("", m, sizeof(m)), "(none)");
	ck_assert_str_eq(card_nir_mask(NULL, m, sizeof(m)), "(none)");
	ck_assert_str_eq(card_nir_mask("2\x01" "4037512345678", m, sizeof(m)), "2?4************");
	char small[5];
	ck_assert_str_eq(card_nir_mask("284037512345678", small, sizeof(small)), "284*");
}
END_TEST

START_TEST(t_move_and_clear)
{
	struct card_result a = { 0 }, b = { 0 };
	a.evidence.present = true;
	a.evidence.credential = malloc(10);
	a.evidence.credential_len = 10;
	memset(a.evidence.credential, 0xAB, 10);
	a.evidence.device_answer = malloc(5);
	a.evidence.device_answer_len = 5;
	memset(a.evidence.device_answer, 0xCD, 5);
	snprintf(a.profile, sizeof(a.profile), "digital");
	b.evidence.credential = malloc(3); /* dst's own blob is freed by the move */
	b.evidence.credential_len = 3;
	uint8_t *cred = a.evidence.credential;
	card_result_move(&b, &a);
	static const struct card_result zero;
	ck_assert_mem_eq(&a, &zero, sizeof(a));
	ck_assert_ptr_eq(b.evidence.credential, cred);
	ck_assert_uint_eq(b.evidence.credential_len, 10);
	ck_assert_str_eq(b.profile, "digital");
	json_t *full = card_result_json(&b, CARD_JSON_FULL);
	json_t *sum = card_result_json(&b, CARD_JSON_SUMMARY_ID);
	json_t *ev = json_object_get(full, "evidence");
	ck_assert_ptr_nonnull(ev);
	/* base64 of ten 0xAB */
	ck_assert_str_eq(json_string_value(json_object_get(ev, "credential")), "q6urq6urq6urqw==");
	ck_assert_int_eq(json_integer_value(json_object_get(ev, "device_answer_len")), 5);
	ck_assert_ptr_null(json_object_get(sum, "evidence")); /* events never carry it */
	json_decref(full);
	json_decref(sum);
	card_result_clear(&b);
	ck_assert_mem_eq(&b, &zero, sizeof(b));
	card_result_move(&a, &a); /* a no-op, not a free */
}
END_TEST

/* ------------------------------------------------------------------ */
/* cards_digital with a scripted phone */

static struct config *dcfg;
static struct daemon dd;

static int
digital_up(const char *anchor)
{
	char err[300];
	cards_digital_fini(&dd);
	if (dcfg)
		config_free(dcfg);
	ck_assert_int_eq(config_load(NULL, &dcfg, err, sizeof(err)), 0);
	if (anchor)
		ck_assert_int_eq(config_set(dcfg, "digital", "trust_anchor", anchor, err, sizeof(err)), 0);
	memset(&dd, 0, sizeof(dd));
	dd.cfg = dcfg;
	snprintf(dd.terminal_id, sizeof(dd.terminal_id), "UNIT-TERMINAL");
	return cards_digital_init(&dd);
}

struct phone {
	const uint8_t *cred;
	size_t cred_len, sent;
	bool no_applet;
	unsigned calls, prompts;
	uint8_t ins[16];
};

static int
phone_tx(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	static const uint8_t hello[] = { 0xA3, 0x61, 0x76, 0x01, 0x63, 0x75, 0x76, 0x6D, 0x81, 0x63,
		                         0x70, 0x69, 0x6E, 0x64, 0x61, 0x6C, 0x67, 0x73, 0x81, 0x26 };
	struct phone *p = ctx;
	size_t n = 0;
	ck_assert_uint_ge(clen, 4);
	if (p->calls < sizeof(p->ins))
		p->ins[p->calls] = c[1];
	p->calls++;
	if (c[1] == 0xA4) {
		if (p->no_applet) {
			r[0] = 0x6A, r[1] = 0x82;
			*rlen = 2;
			return 0;
		}
		memcpy(r, hello, sizeof(hello));
		n = sizeof(hello);
		r[n++] = 0x90, r[n++] = 0x00;
		*rlen = n;
		return 0;
	}
	if (c[1] == 0xCA)
		p->sent = 0;
	if (c[1] == 0xCA || c[1] == 0xC0) {
		/* §2.3: 256-byte parts, 61 xx while more waits */
		size_t left = p->cred_len - p->sent, part = left < 256 ? left : 256;
		memcpy(r, p->cred + p->sent, part);
		p->sent += part;
		left -= part;
		r[part] = left ? 0x61 : 0x90;
		r[part + 1] = left ? (uint8_t)(left >= 256 ? 0 : left) : 0x00;
		*rlen = part + 2;
		return 0;
	}
	r[0] = 0x6D, r[1] = 0x00;
	*rlen = 2;
	return 0;
}

static void
phone_prompt(void *ctx)
{
	((struct phone *)ctx)->prompts++;
}

static uint8_t *
read_data(const char *name, size_t *len)
{
	char path[512];
	const char *src = getenv("srcdir");
	snprintf(path, sizeof(path), "%s/tests/data/digital/%s", src ? src : ".", name);
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "%s", path);
	uint8_t *b = malloc(16384);
	*len = fread(b, 1, 16384, f);
	fclose(f);
	return b;
}

START_TEST(t_digital_anchors)
{
	char path[512];
	const char *src = getenv("srcdir");
	/* missing, and not a certificate: start-up errors */
	ck_assert_int_lt(digital_up("/nonexistent/vitaled-anchor.pem"), 0);
	snprintf(path, sizeof(path), "%s/tests/data/digital/expected.txt", src ? src : ".");
	ck_assert_int_eq(digital_up(path), -EINVAL);
	snprintf(path, sizeof(path), "%s/tests/data/digital/ca.pem", src ? src : ".");
	ck_assert_int_eq(digital_up(path), 0);
	ck_assert_int_eq(digital_up(NULL), 0); /* none: up, every phone refused */
	cards_digital_fini(&dd);
}
END_TEST

START_TEST(t_digital_refusals)
{
	size_t len;
	uint8_t *cred = read_data("cred-good.cbor", &len);
	struct phone ph = { .cred = cred, .cred_len = len };
	struct card_io io = { phone_tx, fake_reading, &ph, phone_prompt, NULL };
	struct card_result r = { 0 };

	/* not up yet: internal_error, nothing sent */
	cards_digital_fini(&dd);
	ck_assert_int_lt(cards_digital_read(NULL, &io, &r), 0);
	ck_assert_str_eq(r.reason, "internal_error");
	ck_assert_uint_eq(ph.calls, 0);
	card_result_clear(&r);

	/* no anchor: chain_untrusted, and the detail says why */
	ck_assert_int_eq(digital_up(NULL), 0);
	ck_assert_int_eq(cards_digital_read(NULL, &io, &r), -EACCES);
	ck_assert_str_eq(r.reason, "chain_untrusted");
	ck_assert_msg(strstr(r.error, "no trust anchor configured") != NULL, "%s", r.error);
	ck_assert(!r.readable && !r.evidence.present && r.nbeneficiaries == 0);
	ck_assert_uint_eq(ph.prompts, 0);
	ck_assert_uint_eq(ph.ins[0], 0xA4);
	ck_assert_uint_eq(ph.ins[1], 0xCA);
	ck_assert_uint_eq(ph.ins[2], 0xC0); /* chained: > 256 bytes */
	ck_assert_uint_eq(ph.sent, len);
	card_result_clear(&r);

	/* an anchor that is not the issuer's: chain_untrusted, generic text */
	char path[512];
	const char *src = getenv("srcdir");
	snprintf(path, sizeof(path), "%s/tests/data/digital/unknown-ca.pem", src ? src : ".");
	ck_assert_int_eq(digital_up(path), 0);
	ph.calls = 0;
	ck_assert_int_eq(cards_digital_read(NULL, &io, &r), -EACCES);
	ck_assert_str_eq(r.reason, "chain_untrusted");
	ck_assert_ptr_null(strstr(r.error, "no trust anchor"));
	card_result_clear(&r);

	/* no applet: an unknown contactless card, not an error */
	ph.no_applet = true;
	ph.calls = 0;
	ck_assert_int_eq(cards_digital_read(NULL, &io, &r), 0);
	ck_assert_str_eq(r.profile, "unknown");
	ck_assert(!r.recognised && !r.readable);
	ck_assert_str_eq(r.reason, "");
	ck_assert_uint_eq(ph.calls, 1);
	card_result_clear(&r);

	cards_digital_fini(&dd);
	config_free(dcfg);
	dcfg = NULL;
	free(cred);
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
	tcase_add_test(tc, t_nir_mask);
	tcase_add_test(tc, t_move_and_clear);
	tcase_add_test(tc, t_digital_anchors);
	tcase_add_test(tc, t_digital_refusals);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
