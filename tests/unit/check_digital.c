/* Unit tests for protocol/digital.c: the terminal's APDU flow
 * (docs/digital-card.md §2-§4, §11) against a scripted fake phone.
 *
 * The fake phone answers SELECT, GET CREDENTIAL, GET RESPONSE and
 * AUTHENTICATE as §4 says, chains long answers in 256-byte parts (§2.3),
 * checks the terminal's commands (exact bytes, deterministic AUTHENTICATE
 * data, identical re-sends while polling) and signs device answers with the
 * test device key over the nonce it received. Knobs make it refuse, block,
 * never finish, chain forever, vanish (-ENODEV) at a given APDU, answer for
 * another nonce or credential, or say uv false. The clock and sleep are
 * simulated: sleeping advances the clock, so a 60 s code timeout runs in
 * microseconds.
 *
 * Run from the source tree root (make unit does), or set srcdir. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "protocol/cbor.h"
#include "protocol/cose.h"
#include "protocol/credential.h"
#include "protocol/digital.h"
#include "tests/unit/support/digital_data.h"

#define NOW 1767225600 /* tests/data/digital/make_vectors.py */
#define TID "till-3 pharmacie du port"

static const uint8_t CID[16] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	                         0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff };
static const uint8_t SELECT_APDU[] = { 0x00, 0xA4, 0x04, 0x00, 0x09, 0xF0, 0x56, 0x49,
	                               0x54, 0x41, 0x4C, 0x45, 0x44, 0x01, 0x00 };
static const uint8_t SELECT_OK[] = { 0xA3, 0x61, 0x76, 0x01, 0x63, 0x75, 0x76, 0x6D, 0x81, 0x63,
	                             0x70, 0x69, 0x6E, 0x64, 0x61, 0x6C, 0x67, 0x73, 0x81, 0x26 };

enum auth_mode { AUTH_OK, AUTH_REFUSE, AUTH_BLOCK, AUTH_NEVER, AUTH_SW, AUTH_PENDING_DATA };
enum answer_mode { ANS_GOOD, ANS_OTHER_NONCE, ANS_UV_FALSE, ANS_OTHER_CID, ANS_PADDED, ANS_HUGE };

struct phone {
	/* script */
	const uint8_t *select_data;
	size_t select_len;
	uint16_t select_sw;
	uint8_t *cred;
	size_t cred_len;
	uint16_t cred_sw;
	int pending_polls;
	enum auth_mode auth;
	uint16_t auth_sw;
	enum answer_mode answer;
	EVP_PKEY *dk;
	int lose_at;          /* the n-th APDU fails with -ENODEV (0: never) */
	int short_at;         /* the n-th APDU answers one byte */
	bool endless;         /* GET CREDENTIAL chains for ever in 256-byte parts */
	bool endless_tiny;    /* ... in 1-byte parts */
	bool huge_select;     /* SELECT chains for ever */
	int cancel_after;     /* sleep fails after n sleeps (0: never) */
	/* state */
	int ntx, nselect, ncred, ngetresp, nauth, ndistinct_auth;
	uint8_t pending[4096];
	size_t pending_len, pending_off;
	uint8_t last_auth[300];
	size_t last_auth_len;
	uint8_t nonce[32];
	int polls;
	uint8_t *answer_bytes;
	size_t answer_len;
	/* clock */
	int64_t now_ms;
	int prompts, sleeps;
	unsigned slept;
	char failure[128]; /* what the phone found wrong with the terminal */
};

static void
phone_fail(struct phone *p, const char *what)
{
	if (!p->failure[0])
		snprintf(p->failure, sizeof(p->failure), "%s", what);
}

/* Answer the next part of the pending answer (§2.3), Ne = 256. */
static int
respond_part(struct phone *p, uint16_t final_sw, uint8_t *r, size_t *rlen)
{
	size_t left = p->pending_len - p->pending_off, part = left > 256 ? 256 : left;

	ck_assert_uint_ge(*rlen, part + 2);
	memcpy(r, p->pending + p->pending_off, part);
	p->pending_off += part;
	left -= part;
	if (left) {
		r[part] = 0x61;
		r[part + 1] = (uint8_t)(left >= 256 ? 0 : left);
	} else {
		r[part] = (uint8_t)(final_sw >> 8);
		r[part + 1] = (uint8_t)final_sw;
	}
	*rlen = part + 2;
	return 0;
}

static uint16_t pending_sw;

static int
respond(struct phone *p, const uint8_t *data, size_t len, uint16_t sw, uint8_t *r, size_t *rlen)
{
	ck_assert_uint_le(len, sizeof(p->pending));
	memcpy(p->pending, data, len);
	p->pending_len = len;
	p->pending_off = 0;
	pending_sw = sw;
	return respond_part(p, sw, r, rlen);
}

static int
sw_only(uint16_t sw, uint8_t *r, size_t *rlen)
{
	r[0] = (uint8_t)(sw >> 8);
	r[1] = (uint8_t)sw;
	*rlen = 2;
	return 0;
}

static void
make_answer(struct phone *p)
{
	struct cose_sign1_params prm = { .alg = COSE_ALG_ES256 };
	struct cbor_enc e;
	const uint8_t *pl;
	size_t plen;
	uint8_t n[32], cid[16];

	memcpy(n, p->nonce, 32);
	if (p->answer == ANS_OTHER_NONCE)
		memset(n, 0x42, 32); /* an answer made for another terminal's nonce */
	memcpy(cid, CID, 16);
	if (p->answer == ANS_OTHER_CID)
		cid[15] ^= 1;
	cbor_enc_init(&e, 4096);
	cbor_enc_map_begin(&e);
	cbor_enc_textz(&e, "n");
	cbor_enc_bytes(&e, n, 32);
	cbor_enc_textz(&e, "cid");
	cbor_enc_bytes(&e, cid, 16);
	cbor_enc_textz(&e, "uv");
	cbor_enc_bool(&e, p->answer != ANS_UV_FALSE);
	cbor_enc_textz(&e, "uvm");
	cbor_enc_textz(&e, "pin");
	cbor_enc_textz(&e, "ts");
	cbor_enc_uint(&e, NOW + 7);
	if (p->answer == ANS_PADDED || p->answer == ANS_HUGE) {
		static const uint8_t pad[1200];
		cbor_enc_textz(&e, "zpad");
		cbor_enc_bytes(&e, pad, p->answer == ANS_PADDED ? 600 : 1000);
	}
	cbor_enc_map_end(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &pl, &plen), 0);
	free(p->answer_bytes);
	ck_assert_int_eq(cose_sign1_create(&prm, pl, plen, cose_sign_evp, p->dk, &p->answer_bytes,
	                                   &p->answer_len), 0);
	cbor_enc_free(&e);
}

/* §4.3: check the AUTHENTICATE data as a phone would. */
static void
check_auth_data(struct phone *p, const uint8_t *data, size_t len)
{
	struct cbor_doc d;
	const struct cbor_item *m, *n, *t, *ts;
	uint64_t v;

	if (cbor_decode(data, len, NULL, CBOR_STRICT, &d)) {
		phone_fail(p, "AUTHENTICATE data not deterministic CBOR");
		return;
	}
	m = cbor_root(&d);
	n = cbor_map_get_text(&d, m, "n");
	t = cbor_map_get_text(&d, m, "t");
	ts = cbor_map_get_text(&d, m, "ts");
	if (m->type != CBOR_MAP || m->count != 3 || !n || n->type != CBOR_BYTES || n->len != 32)
		phone_fail(p, "AUTHENTICATE n");
	else
		memcpy(p->nonce, n->ptr, 32);
	if (!cbor_text_eq(t, TID))
		phone_fail(p, "AUTHENTICATE t");
	if (cbor_get_uint(ts, &v) || v != NOW)
		phone_fail(p, "AUTHENTICATE ts");
	cbor_doc_free(&d);
}

static int
phone_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct phone *p = ctx;

	p->ntx++;
	p->now_ms += 1; /* every exchange takes a millisecond */
	if (p->lose_at && p->ntx == p->lose_at)
		return -ENODEV;
	if (p->short_at && p->ntx == p->short_at) {
		r[0] = 0x90;
		*rlen = 1;
		return 0;
	}
	if (clen < 4) {
		phone_fail(p, "short command");
		return sw_only(0x6700, r, rlen);
	}
	if (c[0] == 0x00 && c[1] == 0xA4) {
		p->nselect++;
		if (clen != sizeof(SELECT_APDU) || memcmp(c, SELECT_APDU, clen) != 0)
			phone_fail(p, "SELECT bytes");
		if (p->huge_select) {
			p->pending_len = sizeof(p->pending);
			memset(p->pending, 0xA0, sizeof(p->pending));
			p->pending_off = 0;
			pending_sw = 0x9000;
			return respond_part(p, 0x9000, r, rlen);
		}
		if (p->select_sw != 0x9000)
			return sw_only(p->select_sw, r, rlen);
		return respond(p, p->select_data, p->select_len, 0x9000, r, rlen);
	}
	if (c[0] == 0x80 && c[1] == 0xCA) {
		static const uint8_t gc[] = { 0x80, 0xCA, 0x00, 0x00, 0x00 };
		p->ncred++;
		if (clen != 5 || memcmp(c, gc, 5) != 0)
			phone_fail(p, "GET CREDENTIAL bytes");
		if (p->cred_sw != 0x9000)
			return sw_only(p->cred_sw, r, rlen);
		if (p->endless || p->endless_tiny) {
			memset(r, 0xA0, 256);
			r[p->endless_tiny ? 1 : 256] = 0x61;
			r[(p->endless_tiny ? 1 : 256) + 1] = p->endless_tiny ? 1 : 0;
			*rlen = p->endless_tiny ? 3 : 258;
			return 0;
		}
		return respond(p, p->cred, p->cred_len, 0x9000, r, rlen);
	}
	if (c[0] == 0x00 && c[1] == 0xC0) {
		p->ngetresp++;
		if (clen != 5 || c[2] || c[3])
			phone_fail(p, "GET RESPONSE bytes");
		if (p->endless || p->endless_tiny) {
			size_t part = p->endless_tiny ? 1 : 256;
			if (c[4] != (p->endless_tiny ? 1 : 0))
				phone_fail(p, "GET RESPONSE Le is not the xx given");
			memset(r, 0xA0, part);
			r[part] = 0x61;
			r[part + 1] = p->endless_tiny ? 1 : 0;
			*rlen = part + 2;
			return 0;
		}
		if (p->pending_off >= p->pending_len)
			return sw_only(0x6985, r, rlen);
		{
			size_t left = p->pending_len - p->pending_off;
			if (c[4] != (uint8_t)(left >= 256 ? 0 : left))
				phone_fail(p, "GET RESPONSE Le is not the xx given");
		}
		return respond_part(p, pending_sw, r, rlen);
	}
	if (c[0] == 0x80 && c[1] == 0x88) {
		p->nauth++;
		p->pending_len = p->pending_off = 0;
		if (clen < 7 || c[2] || c[3] || clen != (size_t)c[4] + 6 || c[clen - 1] != 0x00) {
			phone_fail(p, "AUTHENTICATE framing");
			return sw_only(0x6700, r, rlen);
		}
		if (clen != p->last_auth_len || memcmp(c, p->last_auth, clen) != 0) {
			/* §4.3 rule 1: a new request */
			p->ndistinct_auth++;
			ck_assert_uint_le(clen, sizeof(p->last_auth));
			memcpy(p->last_auth, c, clen);
			p->last_auth_len = clen;
			p->polls = 0;
			check_auth_data(p, c + 5, c[4]);
			free(p->answer_bytes);
			p->answer_bytes = NULL;
		}
		if (p->auth == AUTH_NEVER || p->polls < p->pending_polls) {
			p->polls++;
			return sw_only(0x6300, r, rlen);
		}
		switch (p->auth) {
		case AUTH_REFUSE:
			return sw_only(0x6982, r, rlen);
		case AUTH_BLOCK:
			return sw_only(0x6983, r, rlen);
		case AUTH_SW:
			return sw_only(p->auth_sw, r, rlen);
		case AUTH_PENDING_DATA:
			r[0] = 0x01;
			r[1] = 0x63;
			r[2] = 0x00;
			*rlen = 3;
			return 0;
		default:
			if (!p->answer_bytes)
				make_answer(p);
			return respond(p, p->answer_bytes, p->answer_len, 0x9000, r, rlen);
		}
	}
	return sw_only(0x6D00, r, rlen);
}

static int64_t
phone_clock(void *ctx)
{
	return ((struct phone *)ctx)->now_ms;
}

static int64_t
phone_wall(void *ctx)
{
	(void)ctx;
	return NOW;
}

static int
phone_sleep(void *ctx, unsigned ms)
{
	struct phone *p = ctx;

	p->sleeps++;
	if (p->cancel_after && p->sleeps > p->cancel_after)
		return -ECANCELED;
	p->now_ms += ms;
	p->slept += ms;
	return 0;
}

static void
phone_prompt(void *ctx)
{
	((struct phone *)ctx)->prompts++;
}

static struct credential_anchors *ca;
static EVP_PKEY *dk;
static uint8_t *good_cred;
static size_t good_len;

static void
setup(void)
{
	size_t len;
	uint8_t *pem = digital_data_load("ca.pem", &len);
	BIO *b;

	ck_assert_int_eq(credential_anchors_new(&ca), 0);
	ck_assert_int_eq(credential_anchors_add_pem(ca, (const char *)pem, len), 0);
	free(pem);
	pem = digital_data_load("dk-good.key.pem", &len);
	b = BIO_new_mem_buf(pem, (int)len);
	dk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(dk);
	BIO_free(b);
	free(pem);
	good_cred = digital_data_load("cred-good.cbor", &good_len);
}

static void
teardown(void)
{
	credential_anchors_free(ca);
	EVP_PKEY_free(dk);
	free(good_cred);
}

static void
phone_init(struct phone *p)
{
	memset(p, 0, sizeof(*p));
	p->select_data = SELECT_OK;
	p->select_len = sizeof(SELECT_OK);
	p->select_sw = 0x9000;
	p->cred = good_cred;
	p->cred_len = good_len;
	p->cred_sw = 0x9000;
	p->dk = dk;
	p->now_ms = 1000000;
}

static int
run(struct phone *p, struct digital_result *res, bool read_only)
{
	struct digital_io io = { .transmit = phone_transmit, .ctx = p, .clock_ms = phone_clock,
		                 .wall_s = phone_wall, .sleep_ms = phone_sleep,
		                 .code_prompt = phone_prompt };
	struct digital_params prm = { .anchors = ca, .skew_s = 300, .terminal_id = TID,
		                      .read_only = read_only };
	int rc = digital_read(&io, &prm, res);

	ck_assert_msg(p->failure[0] == '\0', "the phone says: %s", p->failure);
	if (rc) {
		/* a refused presentation carries no identity */
		ck_assert_ptr_null(res->cred.dk);
		ck_assert_ptr_null(res->credential_bytes);
		ck_assert_ptr_null(res->answer_bytes);
		ck_assert_str_eq(res->cred.surname, "");
		ck_assert(!res->holder_verified);
	}
	return rc;
}

START_TEST(ok_after_polls)
{
	struct phone p;
	struct digital_result res;
	struct credential_answer ans;
	enum credential_reason r;

	phone_init(&p);
	p.pending_polls = 3;
	ck_assert_int_eq(run(&p, &res, false), 0);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_OK);
	ck_assert(res.holder_verified);
	ck_assert_str_eq(res.presentation, "digital-nfc");
	ck_assert_str_eq(res.terminal_id, TID);
	ck_assert_str_eq(res.cred.surname, "MARTIN");
	ck_assert_uint_eq(res.cred.nbeneficiaries, 2);
	ck_assert_mem_eq(res.cred.cid, CID, 16);
	ck_assert_uint_eq(res.credential_len, good_len);
	ck_assert_mem_eq(res.credential_bytes, good_cred, good_len);
	ck_assert_uint_eq(res.answer_len, p.answer_len);
	ck_assert_mem_eq(res.answer_bytes, p.answer_bytes, p.answer_len);
	ck_assert_mem_eq(res.nonce, p.nonce, 32);
	ck_assert_int_eq(res.answer_ts, NOW + 7);
	ck_assert_uint_eq(res.polls, 3);
	ck_assert_uint_eq(res.last_sw, 0x9000);
	/* the evidence verifies on its own */
	ck_assert_int_eq(credential_verify_answer(&res.cred, res.answer_bytes, res.answer_len,
	                                          res.nonce, &ans, &r), 0);
	/* one request, sent 4 times identically; the till told once; 3 waits of 250 ms */
	ck_assert_int_eq(p.nauth, 4);
	ck_assert_int_eq(p.ndistinct_auth, 1);
	ck_assert_int_eq(p.prompts, 1);
	ck_assert_uint_eq(p.slept, 750);
	ck_assert_int_eq(p.nselect, 1);
	ck_assert_int_eq(p.ncred, 1);
	ck_assert_int_eq(p.ngetresp, (int)((good_len - 1) / 256));
	digital_result_clear(&res);
	ck_assert_ptr_null(res.answer_bytes);
	free(p.answer_bytes);

	/* no wait at all: no prompt */
	phone_init(&p);
	ck_assert_int_eq(run(&p, &res, false), 0);
	ck_assert_int_eq(p.prompts, 0);
	ck_assert_uint_eq(res.polls, 0);
	digital_result_clear(&res);
	free(p.answer_bytes);

	/* a chained device answer (> 256 bytes) */
	phone_init(&p);
	p.answer = ANS_PADDED;
	p.pending_polls = 1;
	ck_assert_int_eq(run(&p, &res, false), 0);
	ck_assert_uint_gt(res.answer_len, 600);
	ck_assert_int_ge(p.ngetresp, (int)((good_len - 1) / 256) + 2);
	digital_result_clear(&res);
	free(p.answer_bytes);
}
END_TEST

START_TEST(nonces_are_fresh)
{
	struct phone p;
	struct digital_result res;
	uint8_t first[32];

	phone_init(&p);
	ck_assert_int_eq(run(&p, &res, false), 0);
	memcpy(first, p.nonce, 32);
	digital_result_clear(&res);
	free(p.answer_bytes);
	phone_init(&p);
	ck_assert_int_eq(run(&p, &res, false), 0);
	ck_assert(memcmp(first, p.nonce, 32) != 0);
	digital_result_clear(&res);
	free(p.answer_bytes);
}
END_TEST

START_TEST(refused_blocked_other)
{
	static const struct {
		enum auth_mode auth;
		uint16_t sw;
		enum credential_reason want;
	} t[] = {
		{ AUTH_REFUSE, 0, CREDENTIAL_R_CODE_REFUSED },
		{ AUTH_BLOCK, 0, CREDENTIAL_R_CODE_BLOCKED },
		{ AUTH_SW, 0x6A80, CREDENTIAL_R_STATUS_UNEXPECTED },
		{ AUTH_SW, 0x6985, CREDENTIAL_R_STATUS_UNEXPECTED },
		{ AUTH_SW, 0x6F00, CREDENTIAL_R_STATUS_UNEXPECTED },
		{ AUTH_PENDING_DATA, 0, CREDENTIAL_R_STATUS_UNEXPECTED },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct phone p;
		struct digital_result res;

		phone_init(&p);
		p.pending_polls = 2;
		p.auth = t[i].auth;
		p.auth_sw = t[i].sw;
		ck_assert_int_eq(run(&p, &res, false), -EACCES);
		ck_assert_msg(res.reason == t[i].want, "case %zu: %s", i, credential_reason_name(res.reason));
		ck_assert_int_eq(p.prompts, 1);
		ck_assert_int_eq(p.nauth, 3);
		ck_assert_int_eq(p.ndistinct_auth, 1);
		digital_result_clear(&res);
	}
}
END_TEST

START_TEST(answer_checks)
{
	static const struct {
		enum answer_mode a;
		enum credential_reason want;
	} t[] = {
		{ ANS_OTHER_NONCE, CREDENTIAL_R_NONCE_MISMATCH }, /* a replayed answer */
		{ ANS_UV_FALSE, CREDENTIAL_R_UV_FALSE },
		{ ANS_OTHER_CID, CREDENTIAL_R_CID_MISMATCH },
		{ ANS_HUGE, CREDENTIAL_R_ANSWER_TOO_LARGE },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct phone p;
		struct digital_result res;

		phone_init(&p);
		p.answer = t[i].a;
		p.pending_polls = 1;
		ck_assert_int_eq(run(&p, &res, false), -EACCES);
		ck_assert_msg(res.reason == t[i].want, "case %zu: %s", i, credential_reason_name(res.reason));
		digital_result_clear(&res);
		free(p.answer_bytes);
	}
}
END_TEST

/* A phone that answers every AUTHENTICATE with the answer it made for an
 * earlier terminal (a replay): the terminal's own nonce is not in it. */
static uint8_t *replay_bytes;
static size_t replay_len;

static int
replay_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct phone *p = ctx;

	if (clen > 2 && c[0] == 0x80 && c[1] == 0x88) {
		p->nauth++;
		return respond(p, replay_bytes, replay_len, 0x9000, r, rlen);
	}
	return phone_transmit(ctx, c, clen, r, rlen);
}

START_TEST(replayed_answer)
{
	struct phone p;
	struct digital_result res;
	struct digital_io io = { .transmit = replay_transmit, .ctx = &p, .clock_ms = phone_clock,
		                 .wall_s = phone_wall, .sleep_ms = phone_sleep };
	struct digital_params prm = { .anchors = ca, .skew_s = 300, .terminal_id = TID };

	/* a genuine session, recorded */
	phone_init(&p);
	ck_assert_int_eq(run(&p, &res, false), 0);
	replay_len = p.answer_len;
	replay_bytes = malloc(replay_len);
	memcpy(replay_bytes, p.answer_bytes, replay_len);
	free(p.answer_bytes);
	digital_result_clear(&res);
	/* played back to the next session */
	phone_init(&p);
	ck_assert_int_eq(digital_read(&io, &prm, &res), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_NONCE_MISMATCH);
	ck_assert_int_eq(p.nauth, 1);
	digital_result_clear(&res);
	free(replay_bytes);
}
END_TEST

START_TEST(code_timeout)
{
	struct phone p;
	struct digital_result res;
	struct digital_io io = { .transmit = phone_transmit, .ctx = &p, .clock_ms = phone_clock,
		                 .wall_s = phone_wall, .sleep_ms = phone_sleep,
		                 .code_prompt = phone_prompt };
	struct digital_params prm = { .anchors = ca, .skew_s = 300, .terminal_id = TID };
	int64_t t0;

	phone_init(&p);
	p.auth = AUTH_NEVER;
	t0 = p.now_ms;
	ck_assert_int_eq(run(&p, &res, false), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_CODE_TIMEOUT);
	ck_assert_int_eq(p.prompts, 1);
	ck_assert_int_eq(p.ndistinct_auth, 1);
	/* 60 s of 250 ms polls (each APDU costs 1 ms here) */
	ck_assert_int_ge(p.now_ms - t0, 60000);
	ck_assert_int_lt(p.now_ms - t0, 60000 + 250 + 20);
	ck_assert_int_ge(p.nauth, 235);
	ck_assert_int_le(p.nauth, 242);
	ck_assert_uint_eq(res.polls, (unsigned)p.nauth);
	digital_result_clear(&res);

	/* configured: 1 s at 100 ms */
	phone_init(&p);
	p.auth = AUTH_NEVER;
	t0 = p.now_ms;
	prm.code_timeout_ms = 1000;
	prm.poll_interval_ms = 100;
	ck_assert_int_eq(digital_read(&io, &prm, &res), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_CODE_TIMEOUT);
	ck_assert_int_ge(p.nauth, 10);
	ck_assert_int_le(p.nauth, 11);
	ck_assert_int_ge(p.now_ms - t0, 1000);
	digital_result_clear(&res);

	/* the code comes in just before the deadline */
	phone_init(&p);
	p.pending_polls = 9;
	ck_assert_int_eq(digital_read(&io, &prm, &res), 0);
	ck_assert(res.holder_verified);
	digital_result_clear(&res);
	free(p.answer_bytes);

	/* the daemon cancels during the wait */
	phone_init(&p);
	p.auth = AUTH_NEVER;
	p.cancel_after = 3;
	ck_assert_int_eq(digital_read(&io, &prm, &res), -ECANCELED);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_CARD_LOST);
	ck_assert_int_eq(p.nauth, 4);
	digital_result_clear(&res);
}
END_TEST

START_TEST(chaining_limits)
{
	struct phone p;
	struct digital_result res;

	/* 256-byte parts for ever: stop past 8192 bytes, never read on */
	phone_init(&p);
	p.endless = true;
	ck_assert_int_eq(run(&p, &res, false), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_ANSWER_TOO_LARGE);
	ck_assert_int_eq(p.ngetresp, 32); /* 33 parts: 8448 > 8192 */
	ck_assert_int_eq(p.nauth, 0);
	digital_result_clear(&res);

	/* 1-byte parts for ever: stop at 64 GET RESPONSE rounds */
	phone_init(&p);
	p.endless_tiny = true;
	ck_assert_int_eq(run(&p, &res, false), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_ANSWER_TOO_LARGE);
	ck_assert_int_eq(p.ngetresp, 64);
	digital_result_clear(&res);

	/* SELECT answer chained past 256 bytes (4096 here): answer_too_large */
	phone_init(&p);
	p.huge_select = true;
	ck_assert_int_eq(run(&p, &res, false), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_ANSWER_TOO_LARGE);
	ck_assert_int_eq(p.ncred, 0);
	digital_result_clear(&res);
}
END_TEST

START_TEST(card_lost)
{
	/* lost at each APDU of a session with 2 polls: SELECT (1), GET
	 * CREDENTIAL (2), GET RESPONSE (3..6), AUTHENTICATE (7..9) */
	for (int at = 1; at <= 9; at++) {
		struct phone p;
		struct digital_result res;

		phone_init(&p);
		p.pending_polls = 2;
		p.lose_at = at;
		ck_assert_int_eq(run(&p, &res, false), -ENODEV);
		ck_assert_int_eq(res.reason, CREDENTIAL_R_CARD_LOST);
		ck_assert_int_eq(p.ntx, at);
		digital_result_clear(&res);
		free(p.answer_bytes);
	}
	/* an answer shorter than a status word */
	for (int at = 1; at <= 3; at++) {
		struct phone p;
		struct digital_result res;

		phone_init(&p);
		p.short_at = at;
		ck_assert_int_eq(run(&p, &res, false), -EIO);
		ck_assert_int_eq(res.reason, CREDENTIAL_R_CARD_LOST);
		digital_result_clear(&res);
	}
}
END_TEST

START_TEST(select_answers)
{
	static const struct {
		const char *data;
		size_t len;
		uint16_t sw;
		enum credential_reason want;
	} t[] = {
		{ "", 0, 0x6A82, CREDENTIAL_R_NO_APPLET },
		{ "", 0, 0x6D00, CREDENTIAL_R_NO_APPLET },
		{ "", 0, 0x6E00, CREDENTIAL_R_NO_APPLET },
		{ "", 0, 0x9000, CREDENTIAL_R_CBOR_MALFORMED },
		/* {"v": 2, "uvm": ["pin"], "algs": [-7]} */
		{ "\xA3\x61\x76\x02\x63\x75\x76\x6D\x81\x63\x70\x69\x6E\x64\x61\x6C\x67\x73\x81\x26", 20, 0x9000, CREDENTIAL_R_BAD_VERSION },
		/* "algs": [-8] */
		{ "\xA3\x61\x76\x01\x63\x75\x76\x6D\x81\x63\x70\x69\x6E\x64\x61\x6C\x67\x73\x81\x27", 20, 0x9000, CREDENTIAL_R_ALG_UNSUPPORTED },
		/* "uvm": ["pen"] */
		{ "\xA3\x61\x76\x01\x63\x75\x76\x6D\x81\x63\x70\x65\x6E\x64\x61\x6C\x67\x73\x81\x26", 20, 0x9000, CREDENTIAL_R_UVM_UNSUPPORTED },
		/* "algs": ["-7"] */
		{ "\xA3\x61\x76\x01\x63\x75\x76\x6D\x81\x63\x70\x69\x6E\x64\x61\x6C\x67\x73\x81\x62\x2D\x37", 22, 0x9000, CREDENTIAL_R_PAYLOAD_INVALID },
		/* no "v" */
		{ "\xA2\x63\x75\x76\x6D\x81\x63\x70\x69\x6E\x64\x61\x6C\x67\x73\x81\x26", 17, 0x9000, CREDENTIAL_R_PAYLOAD_INVALID },
		/* "uvm": "pin" (not an array) */
		{ "\xA3\x61\x76\x01\x63\x75\x76\x6D\x63\x70\x69\x6E\x64\x61\x6C\x67\x73\x81\x26", 19, 0x9000, CREDENTIAL_R_PAYLOAD_INVALID },
		/* keys unsorted: "algs" before "uvm" */
		{ "\xA3\x61\x76\x01\x64\x61\x6C\x67\x73\x81\x26\x63\x75\x76\x6D\x81\x63\x70\x69\x6E", 20, 0x9000, CREDENTIAL_R_CBOR_MALFORMED },
		/* an array */
		{ "\x80", 1, 0x9000, CREDENTIAL_R_CBOR_MALFORMED },
		/* a later v1 phone with more: {"v":1,"uvm":["face","pin"],"algs":[-35,-7],"zz":0} */
		{ "\xA4\x61\x76\x01\x62\x7A\x7A\x00\x63\x75\x76\x6D\x82\x64\x66\x61\x63\x65\x63\x70\x69\x6E\x64\x61\x6C\x67\x73\x82\x38\x22\x26", 31, 0x9000, CREDENTIAL_R_OK },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct phone p;
		struct digital_result res;
		int rc;

		phone_init(&p);
		p.select_data = (const uint8_t *)t[i].data;
		p.select_len = t[i].len;
		p.select_sw = t[i].sw;
		rc = run(&p, &res, true);
		ck_assert_msg(res.reason == t[i].want, "case %zu: %s", i, credential_reason_name(res.reason));
		ck_assert_int_eq(rc, t[i].want == CREDENTIAL_R_OK ? 0 : -EACCES);
		ck_assert_int_eq(p.ncred, t[i].want == CREDENTIAL_R_OK ? 1 : 0);
		digital_result_clear(&res);
	}
	/* the export alone */
	{
		enum credential_reason r;
		uint8_t big[300];
		ck_assert_int_eq(digital_check_select(SELECT_OK, sizeof(SELECT_OK), &r), 0);
		ck_assert_int_eq(r, CREDENTIAL_R_OK);
		memset(big, 0, sizeof(big));
		ck_assert_int_eq(digital_check_select(big, sizeof(big), &r), -EACCES);
		ck_assert_int_eq(r, CREDENTIAL_R_ANSWER_TOO_LARGE);
	}
}
END_TEST

START_TEST(credential_step)
{
	struct phone p;
	struct digital_result res;
	size_t len;

	/* GET CREDENTIAL answered with an error */
	phone_init(&p);
	p.cred_sw = 0x6985;
	ck_assert_int_eq(run(&p, &res, false), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_STATUS_UNEXPECTED);
	digital_result_clear(&res);
	/* an expired credential: never asks for the code */
	phone_init(&p);
	p.cred = digital_data_load("cred-expired.cbor", &len);
	p.cred_len = len;
	ck_assert_int_eq(run(&p, &res, false), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_CREDENTIAL_EXPIRED);
	ck_assert_int_eq(p.nauth, 0);
	ck_assert_int_eq(p.prompts, 0);
	digital_result_clear(&res);
	free(p.cred);
	/* an untrusted one */
	phone_init(&p);
	p.cred = digital_data_load("cred-issuer-unknown-ca.cbor", &len);
	p.cred_len = len;
	ck_assert_int_eq(run(&p, &res, false), -EACCES);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_CHAIN_UNTRUSTED);
	digital_result_clear(&res);
	free(p.cred);
	/* a bigger credential chains in more parts (1606 bytes: 6 parts) */
	phone_init(&p);
	p.cred = digital_data_load("cred-with-anchor.cbor", &len);
	p.cred_len = len;
	ck_assert_int_eq(run(&p, &res, false), 0);
	ck_assert_int_eq(p.ngetresp, (int)((len - 1) / 256));
	ck_assert_uint_eq(res.credential_len, len);
	digital_result_clear(&res);
	free(p.cred);
	free(p.answer_bytes);
}
END_TEST

START_TEST(read_only_and_params)
{
	struct phone p;
	struct digital_result res;
	struct digital_io io = { .transmit = phone_transmit, .ctx = &p };
	struct digital_params prm = { .anchors = ca, .skew_s = 300, .terminal_id = TID };
	char long_id[80];

	/* kiosk: identity read, not verified by the holder */
	phone_init(&p);
	ck_assert_int_eq(run(&p, &res, true), 0);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_OK);
	ck_assert(!res.holder_verified);
	ck_assert_ptr_null(res.answer_bytes);
	ck_assert_str_eq(res.cred.surname, "MARTIN");
	ck_assert_int_eq(p.nauth, 0);
	digital_result_clear(&res);

	/* bad parameters: nothing sent */
	phone_init(&p);
	prm.terminal_id = "";
	ck_assert_int_eq(digital_read(&io, &prm, &res), -EINVAL);
	ck_assert_int_eq(res.reason, CREDENTIAL_R_INTERNAL_ERROR);
	memset(long_id, 'x', 65);
	long_id[65] = 0;
	prm.terminal_id = long_id;
	ck_assert_int_eq(digital_read(&io, &prm, &res), -EINVAL);
	prm.terminal_id = "\xc0\x80";
	ck_assert_int_eq(digital_read(&io, &prm, &res), -EINVAL);
	prm.terminal_id = TID;
	ck_assert_int_eq(digital_read(NULL, &prm, &res), -EINVAL);
	ck_assert_int_eq(p.ntx, 0);
	/* 64 bytes is fine; default clocks (the real ones) in read-only mode */
	long_id[64] = 0;
	prm.terminal_id = long_id;
	prm.read_only = true;
	ck_assert_int_eq(digital_read(&io, &prm, &res), -EACCES);
	/* real time is far from NOW: the credential is not valid then */
	ck_assert(res.reason == CREDENTIAL_R_CREDENTIAL_EXPIRED ||
	          res.reason == CREDENTIAL_R_CREDENTIAL_NOT_YET_VALID ||
	          res.reason == CREDENTIAL_R_CHAIN_EXPIRED);
	digital_result_clear(&res);
}
END_TEST


/* ------------------------------------------------------------------------ */
/* Interoperability: the same flow against the independent Python phone
 * (tests/world/phone_applet.py, through tests/data/digital/phone_bridge.py)
 * with its own test issuer. Skipped (with a message) where the test world
 * is not there; VITALED_WORLD=DIR points at another copy of it. */

struct bridge {
	pid_t pid;
	int to, from;
	char ca[512];
};

static bool
read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

static bool
write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t w = write(fd, p, n);
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

static char world[512], bridge_py[512], tmpdir[64];

static bool
world_present(void)
{
	const char *src = getenv("srcdir"), *w = getenv("VITALED_WORLD");
	char applet[600];

	snprintf(world, sizeof(world), "%s", w ? w : "");
	if (!w)
		snprintf(world, sizeof(world), "%s/tests/world", src ? src : ".");
	snprintf(applet, sizeof(applet), "%s/phone_applet.py", world);
	snprintf(bridge_py, sizeof(bridge_py), "%s/tests/data/digital/phone_bridge.py", src ? src : ".");
	return access(applet, R_OK) == 0 && access("/usr/bin/python3", X_OK) == 0;
}

static bool
bridge_start(struct bridge *b, const char *knobs)
{
	int in[2], out[2];
	size_t n = 0;

	memset(b, 0, sizeof(*b));
	ck_assert_int_eq(pipe(in), 0);
	ck_assert_int_eq(pipe(out), 0);
	b->pid = fork();
	ck_assert_int_ge(b->pid, 0);
	if (b->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl("/usr/bin/python3", "python3", bridge_py, world, tmpdir, knobs, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	b->to = in[1];
	b->from = out[0];
	while (n + 1 < sizeof(b->ca)) {
		char c;
		if (!read_full(b->from, &c, 1))
			return false;
		if (c == '\n')
			break;
		b->ca[n++] = c;
	}
	b->ca[n] = 0;
	return n > 0;
}

static int
bridge_stop(struct bridge *b)
{
	int st = 0;

	write_full(b->to, "\0\0", 2);
	close(b->to);
	close(b->from);
	waitpid(b->pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int
bridge_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct bridge *b = ctx;
	uint8_t h[2] = { (uint8_t)(clen >> 8), (uint8_t)clen };
	size_t n;

	if (!write_full(b->to, h, 2) || !write_full(b->to, c, clen) || !read_full(b->from, h, 2))
		return -EIO;
	n = (size_t)(h[0] << 8 | h[1]);
	if (n == 0xFFFF)
		return -ENODEV;
	if (n > *rlen || !read_full(b->from, r, n))
		return -EIO;
	*rlen = n;
	return 0;
}

static int interop_prompts;

static void
interop_prompt(void *ctx)
{
	(void)ctx;
	interop_prompts++;
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

START_TEST(interop_python_phone)
{
	static const struct {
		const char *knobs;
		enum credential_reason want;
	} t[] = {
		{ "{\"pending_s\": 0.6}", CREDENTIAL_R_OK },
		{ "{}", CREDENTIAL_R_OK },
		{ "{\"chunk\": 100}", CREDENTIAL_R_OK },
		{ "{\"code\": \"refuse\", \"pending_s\": 0.3}", CREDENTIAL_R_CODE_REFUSED },
		{ "{\"code\": \"block\"}", CREDENTIAL_R_CODE_BLOCKED },
		{ "{\"sign_other_nonce\": true}", CREDENTIAL_R_NONCE_MISMATCH },
		{ "{\"uv\": false}", CREDENTIAL_R_UV_FALSE },
		{ "{\"bad_issuer_sig\": true}", CREDENTIAL_R_CREDENTIAL_SIGNATURE },
		{ "{\"huge\": 9000}", CREDENTIAL_R_ANSWER_TOO_LARGE },
		{ "{\"no_applet\": true}", CREDENTIAL_R_NO_APPLET },
		{ "{\"version\": 2}", CREDENTIAL_R_BAD_VERSION },
		{ "{\"expired\": true}", CREDENTIAL_R_CREDENTIAL_EXPIRED },
		{ "{\"not_yet_valid\": true}", CREDENTIAL_R_CREDENTIAL_NOT_YET_VALID },
		{ "{\"issuer\": \"no_purpose\"}", CREDENTIAL_R_ISSUER_PURPOSE },
		{ "{\"issuer\": \"expired\"}", CREDENTIAL_R_CHAIN_EXPIRED },
		{ "{\"issuer\": \"unknown_ca\"}", CREDENTIAL_R_CHAIN_UNTRUSTED },
		{ "{\"vanish_after\": 4}", CREDENTIAL_R_CARD_LOST },
	};

	if (!world_present()) {
		printf("check_digital interop_python_phone: SKIPPED (no %s/phone_applet.py; "
		       "set VITALED_WORLD)\n", world);
		return;
	}
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/vitaled-check-digital-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct bridge b;
		struct credential_anchors *a;
		struct digital_io io = { .transmit = bridge_transmit, .ctx = &b,
			                 .code_prompt = interop_prompt };
		struct digital_params prm = { .skew_s = 300, .terminal_id = TID };
		struct digital_result res;
		size_t len;
		uint8_t *pem;
		FILE *f;
		int rc;

		if (!bridge_start(&b, t[i].knobs)) {
			int st = bridge_stop(&b);
			ck_assert_msg(st == 77, "phone bridge failed (%d) for %s", st, t[i].knobs);
			printf("check_digital interop_python_phone: SKIPPED (applet not importable)\n");
			break;
		}
		f = fopen(b.ca, "rb");
		ck_assert_ptr_nonnull(f);
		pem = malloc(65536);
		len = fread(pem, 1, 65536, f);
		fclose(f);
		ck_assert_int_eq(credential_anchors_new(&a), 0);
		ck_assert_int_eq(credential_anchors_add_pem(a, (const char *)pem, len), 0);
		free(pem);
		prm.anchors = a;
		interop_prompts = 0;
		rc = digital_read(&io, &prm, &res);
		ck_assert_msg(res.reason == t[i].want, "%s: got %s, want %s", t[i].knobs,
		              credential_reason_name(res.reason), credential_reason_name(t[i].want));
		if (t[i].want == CREDENTIAL_R_OK) {
			ck_assert_int_eq(rc, 0);
			ck_assert(res.holder_verified);
			ck_assert_str_eq(res.cred.surname, "MARTIN");
			ck_assert_uint_eq(res.cred.nbeneficiaries, 2);
			ck_assert_ptr_nonnull(res.answer_bytes);
			if (strstr(t[i].knobs, "pending_s"))
				ck_assert_int_eq(interop_prompts, 1);
		} else if (t[i].want == CREDENTIAL_R_CARD_LOST) {
			ck_assert_int_eq(rc, -ENODEV);
		} else {
			ck_assert_int_eq(rc, -EACCES);
		}
		digital_result_clear(&res);
		credential_anchors_free(a);
		ck_assert_int_eq(bridge_stop(&b), 0);
	}
	nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	printf("check_digital interop_python_phone: %zu scenarios against %s/phone_applet.py\n",
	       sizeof(t) / sizeof(t[0]), world);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("digital");
	TCase *t = tcase_create("core");

	tcase_add_unchecked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, ok_after_polls);
	tcase_add_test(t, nonces_are_fresh);
	tcase_add_test(t, refused_blocked_other);
	tcase_add_test(t, answer_checks);
	tcase_add_test(t, replayed_answer);
	tcase_add_test(t, code_timeout);
	tcase_add_test(t, chaining_limits);
	tcase_add_test(t, card_lost);
	tcase_add_test(t, select_answers);
	tcase_add_test(t, credential_step);
	tcase_add_test(t, read_only_and_params);
	tcase_add_test(t, interop_python_phone);
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
