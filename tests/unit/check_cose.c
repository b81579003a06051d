/* Unit tests for protocol/cose.c: Sig_structure vectors (RFC 9052 §4.4 and
 * the COSE WG examples), the RFC 9052 Appendix C.2.1 ES256 vector, sign and
 * verify round trips for ES256 and PS256 with keys made by OpenSSL,
 * tampered payload / protected header / signature, wrong keys, parse
 * shapes (tag, x5chain forms, common labels), COSE_Key to EVP_PKEY. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "protocol/cbor.h"
#include "protocol/cose.h"

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

static const char content[] = "This is the content.";

/* RFC 9052 Appendix C.2.1 key "11" (P-256) and signed message. */
static const char key11_x[] = "bac5b11cad8f99f9c72b05cf4b9e26d244dc189f745228255a219a86d6a09eff";
static const char key11_y[] = "20138bf82dc1b6d562be0fa54ab7804a3a64b6d72ccfed6b6fb6ed28bbfc117e";
static const char c21[] =
	"d28443a10126a10442313154546869732069732074686520636f6e74656e742e5840"
	"8eb33e4ca31d1c465ab05aac34cc6b23d58fef5c083106c4d25a91aef0b0117e"
	"2af9a291aa32e14ab834dc56ed2a223444547e01f11d3b0916e5a4c345cacb36";
/* COSE WG examples sign1-pass-02: the same key, external_aad. */
static const char pass02[] =
	"d28443a10126a10442313154546869732069732074686520636f6e74656e742e5840"
	"3a7487d9a528cb61dd8e99bd652c12577fc47d70ee5af2e703c420584f060fc7"
	"a8d61e4a35862b2b531a8447030ab966aeed8dd45ebc507c761431e349995770";
static const char pass02_tbs[] =
	"846a5369676e61747572653143a101264c11aa22bb33cc44dd55006699"
	"54546869732069732074686520636f6e74656e742e";

static EVP_PKEY *
key11(void)
{
	uint8_t x[32], y[32];
	struct cbor_enc e;
	struct cbor_doc d;
	const uint8_t *out;
	size_t len;
	EVP_PKEY *k = NULL;

	unhex(key11_x, x, sizeof(x));
	unhex(key11_y, y, sizeof(y));
	cbor_enc_init(&e, 256);
	cbor_enc_map_begin(&e);
	cbor_enc_int(&e, 1);
	cbor_enc_int(&e, 2);
	cbor_enc_int(&e, -1);
	cbor_enc_int(&e, 1);
	cbor_enc_int(&e, -2);
	cbor_enc_bytes(&e, x, 32);
	cbor_enc_int(&e, -3);
	cbor_enc_bytes(&e, y, 32);
	cbor_enc_map_end(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	ck_assert_int_eq(cbor_decode(out, len, NULL, CBOR_STRICT, &d), 0);
	ck_assert_int_eq(cose_key_to_evp(&d, cbor_root(&d), &k), 0);
	cbor_doc_free(&d);
	cbor_enc_free(&e);
	return k;
}

START_TEST(sig_structure_vectors)
{
	uint8_t want[256], prot[] = { 0xA1, 0x01, 0x26 }, aad[12], *tbs;
	size_t n, tbslen;

	/* docs/digital-card.md §7: 84 6A "Signature1" 43 A10126 40 <payload> */
	ck_assert_int_eq(cose_sig_structure(prot, 3, NULL, 0, (const uint8_t *)content, 20, &tbs, &tbslen), 0);
	n = unhex("846a5369676e617475726531 43a10126 40 54546869732069732074686520636f6e74656e742e",
	          want, sizeof(want));
	ck_assert_uint_eq(tbslen, n);
	ck_assert_mem_eq(tbs, want, n);
	free(tbs);

	unhex("11aa22bb33cc44dd55006699", aad, sizeof(aad));
	ck_assert_int_eq(cose_sig_structure(prot, 3, aad, 12, (const uint8_t *)content, 20, &tbs, &tbslen), 0);
	n = unhex(pass02_tbs, want, sizeof(want));
	ck_assert_uint_eq(tbslen, n);
	ck_assert_mem_eq(tbs, want, n);
	free(tbs);

	/* empty protected (RFC 9052 §3: a zero-length bstr) */
	ck_assert_int_eq(cose_sig_structure(NULL, 0, NULL, 0, NULL, 0, &tbs, &tbslen), 0);
	n = unhex("846a5369676e617475726531 40 40 40", want, sizeof(want));
	ck_assert_uint_eq(tbslen, n);
	ck_assert_mem_eq(tbs, want, n);
	free(tbs);
}
END_TEST

START_TEST(rfc9052_c21)
{
	uint8_t buf[256], aad[12], *tbs;
	size_t n, tbslen;
	struct cose_sign1 m;
	EVP_PKEY *k = key11();

	n = unhex(c21, buf, sizeof(buf));
	ck_assert_int_eq(cose_sign1_parse(buf, n, NULL, COSE_TAG_REQUIRED, &m), 0);
	ck_assert(m.tagged);
	ck_assert(m.has_alg);
	ck_assert_int_eq(m.alg, COSE_ALG_ES256);
	ck_assert_uint_eq(m.protected_count, 1);
	ck_assert_uint_eq(m.unprotected_count, 1);
	ck_assert(!m.has_x5chain);
	ck_assert_uint_eq(m.payload.len, 20);
	ck_assert_mem_eq(m.payload.ptr, content, 20);
	ck_assert_int_eq(cose_sign1_verify(&m, k), 0);
	cose_sign1_free(&m);
	/* one bit off in the signature */
	buf[n - 1] ^= 1;
	ck_assert_int_eq(cose_sign1_parse(buf, n, NULL, COSE_TAG_REQUIRED, &m), 0);
	ck_assert_int_eq(cose_sign1_verify(&m, k), -EKEYREJECTED);
	cose_sign1_free(&m);
	/* the payload changed */
	buf[n - 1] ^= 1;
	buf[20] ^= 0x20;
	ck_assert_int_eq(cose_sign1_parse(buf, n, NULL, COSE_TAG_REQUIRED, &m), 0);
	ck_assert_int_eq(cose_sign1_verify(&m, k), -EKEYREJECTED);
	cose_sign1_free(&m);

	/* sign1-pass-02: external aad */
	n = unhex(pass02, buf, sizeof(buf));
	ck_assert_int_eq(cose_sign1_parse(buf, n, NULL, 0, &m), 0);
	ck_assert_int_eq(cose_sign1_verify(&m, k), -EKEYREJECTED); /* aad missing */
	unhex("11aa22bb33cc44dd55006699", aad, sizeof(aad));
	ck_assert_int_eq(cose_sig_structure(m.protected_hdr.ptr, m.protected_hdr.len, aad, 12,
	                                    m.payload.ptr, m.payload.len, &tbs, &tbslen), 0);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_ES256, k, tbs, tbslen, m.signature.ptr,
	                                 m.signature.len), 0);
	free(tbs);
	cose_sign1_free(&m);
	EVP_PKEY_free(k);
}
END_TEST

static void
round_trip(EVP_PKEY *key, EVP_PKEY *other, int alg)
{
	static const uint8_t cert1[] = { 0x30, 0x01, 0x02 }, cert2[] = { 0x30, 0x03 };
	struct cose_bytes chain[2] = { { cert1, sizeof(cert1) }, { cert2, sizeof(cert2) } };
	struct cose_sign1_params p = { .alg = alg, .x5chain = chain, .x5chain_n = 2 };
	const uint8_t payload[] = { 0xA1, 0x61, 0x76, 0x01 };
	struct cose_sign1 m;
	uint8_t *msg;
	size_t len;

	ck_assert_int_eq(cose_sign1_create(&p, payload, sizeof(payload), cose_sign_evp, key, &msg, &len), 0);
	ck_assert_int_eq(msg[0], 0xD2);
	ck_assert_int_eq(cose_sign1_parse(msg, len, NULL, COSE_TAG_REQUIRED, &m), 0);
	ck_assert_int_eq(m.alg, alg);
	ck_assert(m.has_x5chain && m.x5chain_array && !m.x5chain_invalid);
	ck_assert_uint_eq(m.x5chain_n, 2);
	ck_assert_mem_eq(m.x5chain[1].ptr, cert2, sizeof(cert2));
	ck_assert_uint_eq(m.payload.len, sizeof(payload));
	ck_assert_mem_eq(m.payload.ptr, payload, sizeof(payload));
	ck_assert_uint_eq(m.signature.len, (size_t)(alg == COSE_ALG_ES256 ? 64 : EVP_PKEY_get_size(key)));
	ck_assert_int_eq(cose_sign1_verify(&m, key), 0);
	ck_assert_int_eq(cose_sign1_verify(&m, other), -EKEYREJECTED);
	cose_sign1_free(&m);

	/* tampered payload: the last payload byte sits just before the
	 * signature's head */
	{
		size_t sighead = alg == COSE_ALG_ES256 ? 2 : 3;
		size_t off = len - m.signature.len - sighead - 1;
		msg[off] ^= 0x01;
		ck_assert_int_eq(cose_sign1_parse(msg, len, NULL, COSE_TAG_REQUIRED, &m), 0);
		ck_assert_int_eq(cose_sign1_verify(&m, key), -EKEYREJECTED);
		cose_sign1_free(&m);
		msg[off] ^= 0x01;
	}
	/* tampered signature */
	msg[len - 5] ^= 0x80;
	ck_assert_int_eq(cose_sign1_parse(msg, len, NULL, COSE_TAG_REQUIRED, &m), 0);
	ck_assert_int_eq(cose_sign1_verify(&m, key), -EKEYREJECTED);
	cose_sign1_free(&m);
	msg[len - 5] ^= 0x80;
	free(msg);

	/* one certificate: a bstr unless the array form is asked for */
	p.x5chain_n = 1;
	ck_assert_int_eq(cose_sign1_create(&p, payload, sizeof(payload), cose_sign_evp, key, &msg, &len), 0);
	ck_assert_int_eq(cose_sign1_parse(msg, len, NULL, 0, &m), 0);
	ck_assert(m.has_x5chain && !m.x5chain_array);
	ck_assert_uint_eq(m.x5chain_n, 1);
	ck_assert_int_eq(cose_sign1_verify(&m, key), 0);
	cose_sign1_free(&m);
	free(msg);
	p.x5chain_array = true;
	p.untagged = true;
	ck_assert_int_eq(cose_sign1_create(&p, payload, sizeof(payload), cose_sign_evp, key, &msg, &len), 0);
	ck_assert_int_eq(msg[0], 0x84);
	ck_assert_int_eq(cose_sign1_parse(msg, len, NULL, COSE_TAG_REQUIRED, &m), -EPROTO);
	cose_sign1_free(&m);
	ck_assert_int_eq(cose_sign1_parse(msg, len, NULL, COSE_UNTAGGED, &m), 0);
	ck_assert(m.has_x5chain && m.x5chain_array);
	ck_assert_int_eq(cose_sign1_verify(&m, key), 0);
	cose_sign1_free(&m);
	free(msg);
}

START_TEST(es256_round_trip)
{
	EVP_PKEY *k = EVP_EC_gen("P-256"), *k2 = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048);
	uint8_t sig[COSE_SIG_MAX];
	size_t siglen = sizeof(sig);

	ck_assert_ptr_nonnull(k);
	ck_assert_ptr_nonnull(k2);
	round_trip(k, k2, COSE_ALG_ES256);
	/* wrong key type or algorithm */
	ck_assert_int_eq(cose_sign_evp(rsa, COSE_ALG_ES256, (const uint8_t *)"x", 1, sig, &siglen), -ENOTSUP);
	siglen = sizeof(sig);
	ck_assert_int_eq(cose_sign_evp(k, COSE_ALG_ES256, (const uint8_t *)"x", 1, sig, &siglen), 0);
	ck_assert_uint_eq(siglen, 64);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_ES256, k, (const uint8_t *)"x", 1, sig, 64), 0);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_ES256, rsa, (const uint8_t *)"x", 1, sig, 64), -ENOTSUP);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_PS256, k, (const uint8_t *)"x", 1, sig, 64), -ENOTSUP);
	ck_assert_int_eq(cose_verify_raw(-8, k, (const uint8_t *)"x", 1, sig, 64), -ENOTSUP);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_ES256, k, (const uint8_t *)"x", 1, sig, 63), -EPROTO);
	/* r = 0 and s >= n do not verify */
	{
		uint8_t bad[64];
		memset(bad, 0, 32);
		memcpy(bad + 32, sig + 32, 32);
		ck_assert_int_eq(cose_verify_raw(COSE_ALG_ES256, k, (const uint8_t *)"x", 1, bad, 64), -EKEYREJECTED);
		memcpy(bad, sig, 32);
		memset(bad + 32, 0xFF, 32);
		ck_assert_int_eq(cose_verify_raw(COSE_ALG_ES256, k, (const uint8_t *)"x", 1, bad, 64), -EKEYREJECTED);
	}
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(rsa);
}
END_TEST

START_TEST(ps256_round_trip)
{
	EVP_PKEY *k = EVP_RSA_gen(2048), *k2 = EVP_RSA_gen(2048), *small = EVP_RSA_gen(1024);
	uint8_t sig[COSE_SIG_MAX], *tbs;
	size_t siglen = sizeof(sig), tbslen;
	EVP_MD_CTX *md;
	EVP_PKEY_CTX *pctx;

	ck_assert_ptr_nonnull(k);
	round_trip(k, k2, COSE_ALG_PS256);
	ck_assert_int_eq(cose_sign_evp(small, COSE_ALG_PS256, (const uint8_t *)"x", 1, sig, &siglen), -ENOTSUP);

	/* Interop with OpenSSL's own PSS: salt 32, MGF1-SHA256 */
	ck_assert_int_eq(cose_sig_structure((const uint8_t *)"\xa1\x01\x38\x24", 4, NULL, 0,
	                                    (const uint8_t *)content, 20, &tbs, &tbslen), 0);
	md = EVP_MD_CTX_new();
	ck_assert_int_eq(EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, k), 1);
	EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
	EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32);
	siglen = sizeof(sig);
	ck_assert_int_eq(EVP_DigestSign(md, sig, &siglen, tbs, tbslen), 1);
	EVP_MD_CTX_free(md);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_PS256, k, tbs, tbslen, sig, siglen), 0);
	/* a salt of another length is refused */
	md = EVP_MD_CTX_new();
	ck_assert_int_eq(EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, k), 1);
	EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
	EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 20);
	siglen = sizeof(sig);
	ck_assert_int_eq(EVP_DigestSign(md, sig, &siglen, tbs, tbslen), 1);
	EVP_MD_CTX_free(md);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_PS256, k, tbs, tbslen, sig, siglen), -EKEYREJECTED);
	free(tbs);
	EVP_PKEY_free(k);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(small);
}
END_TEST

/* A signed message with a hand-made protected header, to tamper with it. */
START_TEST(tampered_protected)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	struct cose_sign1_params p = { .alg = COSE_ALG_ES256 };
	struct cose_sign1 m;
	struct cbor_enc e;
	uint8_t *msg;
	const uint8_t *out;
	size_t len, olen;

	ck_assert_int_eq(cose_sign1_create(&p, (const uint8_t *)"\xa0", 1, cose_sign_evp, k, &msg, &len), 0);
	ck_assert_int_eq(cose_sign1_parse(msg, len, NULL, 0, &m), 0);
	ck_assert_int_eq(cose_sign1_verify(&m, k), 0);
	/* same signature, protected {1: -7, 4: h''} */
	cbor_enc_init(&e, 1024);
	cbor_enc_tag(&e, 18);
	cbor_enc_array_begin(&e);
	cbor_enc_bytes(&e, (const uint8_t *)"\xa2\x01\x26\x04\x40", 5);
	cbor_enc_map_begin(&e);
	cbor_enc_map_end(&e);
	cbor_enc_bytes(&e, m.payload.ptr, m.payload.len);
	cbor_enc_bytes(&e, m.signature.ptr, m.signature.len);
	cbor_enc_array_end(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &olen), 0);
	cose_sign1_free(&m);
	ck_assert_int_eq(cose_sign1_parse(out, olen, NULL, 0, &m), 0);
	ck_assert_uint_eq(m.protected_count, 2);
	ck_assert_int_eq(cose_sign1_verify(&m, k), -EKEYREJECTED);
	cose_sign1_free(&m);
	cbor_enc_free(&e);
	free(msg);
	EVP_PKEY_free(k);
}
END_TEST

START_TEST(parse_shapes)
{
	static const struct {
		const char *hex;
		unsigned flags;
		int rc;
	} v[] = {
		{ "d28443a10126a0404140", 0, 0 },
		{ "8443a10126a0404140", 0, 0 },
		{ "8443a10126a0404140", COSE_TAG_REQUIRED, -EPROTO },
		{ "d28443a10126a0404140", COSE_UNTAGGED, -EPROTO },
		{ "d18443a10126a0404140", 0, -EPROTO },          /* tag 17 */
		{ "d28343a10126a040", 0, -EPROTO },              /* 3 elements */
		{ "d28443a10126a0f64140", 0, -EPROTO },          /* detached payload */
		{ "d28443a1012680404140", 0, -EPROTO },          /* unprotected not a map */
		{ "d284a10126a0404140", 0, -EPROTO },            /* protected not a bstr */
		{ "d28441a0a0404140", 0, 0 },                    /* protected h'a0' */
		{ "d28440a0404140", 0, 0 },                      /* protected h'' */
		{ "d2844180a0404140", 0, -EPROTO },              /* protected wraps an array */
		{ "d2844201a0a0404140", 0, -EBADMSG },             /* protected trailing byte */
		{ "d28444a1013806a0404140", 0, -EDOM },          /* protected not deterministic */
		{ "d28443a10160a0404140", 0, 0 },                /* alg a text: reported */
		{ "d28443a10126a10126404140", 0, -EPROTO },      /* alg in both buckets */
		{ "d28443a10126a10126404140", COSE_NARROW, 0 },  /* ... recorded */
		{ "d28443a10126a0404140", COSE_NARROW, 0 },
		{ "d28443a10126a101f6404140", COSE_NARROW, -ENOTSUP }, /* null */
		{ "d28443a10126a1f501404140", COSE_NARROW, -ENOTSUP }, /* bool key */
		{ "d28443a10126a101c101404140", COSE_NARROW, -ENOTSUP }, /* inner tag */
		{ "d18443a10126a0404140", COSE_NARROW, -ENOTSUP },     /* top tag 17 */
		{ "d28443a10126a0404140 00", 0, -EBADMSG },      /* trailing */
		{ "d28443a10126a0404140ff", 0, -EBADMSG },
		{ "d2845f43a10126ffa0404140", 0, -ENOTSUP },     /* indefinite */
	};
	uint8_t buf[64];
	struct cose_sign1 m;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t n = unhex(v[i].hex, buf, sizeof(buf));
		ck_assert_msg(cose_sign1_parse(buf, n, NULL, v[i].flags, &m) == v[i].rc, "%s", v[i].hex);
		cose_sign1_free(&m);
	}
	/* what is recorded */
	{
		size_t n = unhex("d28443a10160a0404140", buf, sizeof(buf));
		EVP_PKEY *k = EVP_EC_gen("P-256");
		ck_assert_int_eq(cose_sign1_parse(buf, n, NULL, 0, &m), 0);
		ck_assert(m.alg_present && !m.has_alg);
		ck_assert_int_eq(cose_sign1_verify(&m, k), -ENOTSUP);
		cose_sign1_free(&m);
		n = unhex("d28440a0404140", buf, sizeof(buf));
		ck_assert_int_eq(cose_sign1_parse(buf, n, NULL, 0, &m), 0);
		ck_assert(!m.alg_present && !m.has_alg);
		ck_assert_int_eq(cose_sign1_verify(&m, k), -EPROTO);
		cose_sign1_free(&m);
		n = unhex("d28443a10126a10126404140", buf, sizeof(buf));
		ck_assert_int_eq(cose_sign1_parse(buf, n, NULL, COSE_NARROW, &m), 0);
		ck_assert(m.label_conflict);
		cose_sign1_free(&m);
		EVP_PKEY_free(k);
	}
	/* x5chain forms (RFC 9360 §2): bstr, array, wrong shapes flagged */
	{
		static const struct {
			const char *hex;
			bool has, invalid, array;
			size_t n;
		} x[] = {
			{ "d28443a10126a1182142300040 40", true, false, false, 1 },
			{ "d28443a10126a11821824130413140 40", true, false, true, 2 },
			{ "d28443a10126a118218040 40", true, true, false, 0 },   /* [] */
			{ "d28443a10126a118210140 40", true, true, false, 0 },   /* 1 */
			{ "d28443a10126a118218140 40 40", true, true, false, 0 }, /* [h''] */
			{ "d28443a10126a1182140 40 40", true, true, false, 0 },  /* h'' */
			{ "d28443a10126a1182189 01 01 01 01 01 01 01 01 01 40 40", true, true, false, 0 },
		};
		for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++) {
			size_t n = unhex(x[i].hex, buf, sizeof(buf));
			ck_assert_msg(cose_sign1_parse(buf, n, NULL, 0, &m) == 0, "%s", x[i].hex);
			ck_assert_msg(m.has_x5chain == x[i].has && m.x5chain_invalid == x[i].invalid &&
			                      m.x5chain_array == x[i].array && m.x5chain_n == x[i].n,
			              "%s", x[i].hex);
			cose_sign1_free(&m);
		}
	}
}
END_TEST

START_TEST(cose_key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256"), *k2 = NULL, *p384 = EVP_EC_gen("P-384");
	struct cbor_enc e;
	struct cbor_doc d;
	const uint8_t *out;
	size_t len;
	uint8_t buf[128], sig[64];
	size_t siglen = sizeof(sig);

	cbor_enc_init(&e, 256);
	ck_assert_int_eq(cose_key_from_evp(k, &e), 0);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	ck_assert_uint_eq(len, 75);
	/* {1: 2, -1: 1, -2: x, -3: y} in deterministic order */
	ck_assert_mem_eq(out, "\xa4\x01\x02\x20\x01\x21\x58\x20", 8);
	ck_assert_int_eq(cbor_decode(out, len, NULL, CBOR_STRICT, &d), 0);
	ck_assert_int_eq(cose_key_to_evp(&d, cbor_root(&d), &k2), 0);
	ck_assert_int_eq(EVP_PKEY_eq(k, k2), 1);
	ck_assert_int_eq(cose_sign_evp(k, COSE_ALG_ES256, (const uint8_t *)"m", 1, sig, &siglen), 0);
	ck_assert_int_eq(cose_verify_raw(COSE_ALG_ES256, k2, (const uint8_t *)"m", 1, sig, siglen), 0);
	EVP_PKEY_free(k2);
	k2 = NULL;
	cbor_doc_free(&d);

	/* point off the curve: y + 1 */
	memcpy(buf, out, len);
	buf[len - 1] ^= 0x01;
	ck_assert_int_eq(cbor_decode(buf, len, NULL, CBOR_STRICT, &d), 0);
	ck_assert_int_eq(cose_key_to_evp(&d, cbor_root(&d), &k2), -EINVAL);
	ck_assert_ptr_null(k2);
	cbor_doc_free(&d);
	/* crv P-384 label, kty OKP, x short */
	memcpy(buf, out, len);
	buf[4] = 0x02;
	ck_assert_int_eq(cbor_decode(buf, len, NULL, CBOR_STRICT, &d), 0);
	ck_assert_int_eq(cose_key_to_evp(&d, cbor_root(&d), &k2), -EPROTO);
	cbor_doc_free(&d);
	memcpy(buf, out, len);
	buf[2] = 0x01;
	ck_assert_int_eq(cbor_decode(buf, len, NULL, CBOR_STRICT, &d), 0);
	ck_assert_int_eq(cose_key_to_evp(&d, cbor_root(&d), &k2), -EPROTO);
	cbor_doc_free(&d);
	cbor_enc_free(&e);
	/* an extra label */
	cbor_enc_init(&e, 256);
	cbor_enc_map_begin(&e);
	cbor_enc_int(&e, 1);
	cbor_enc_int(&e, 2);
	cbor_enc_int(&e, -1);
	cbor_enc_int(&e, 1);
	cbor_enc_int(&e, -2);
	cbor_enc_bytes(&e, buf, 32);
	cbor_enc_int(&e, -3);
	cbor_enc_bytes(&e, buf, 32);
	cbor_enc_int(&e, 2);
	cbor_enc_bytes(&e, buf, 1);
	cbor_enc_map_end(&e);
	ck_assert_int_eq(cbor_enc_finish(&e, &out, &len), 0);
	ck_assert_int_eq(cbor_decode(out, len, NULL, CBOR_STRICT, &d), 0);
	ck_assert_int_eq(cose_key_to_evp(&d, cbor_root(&d), &k2), -EPROTO);
	cbor_doc_free(&d);
	cbor_enc_free(&e);
	/* only P-256 keys are written */
	cbor_enc_init(&e, 256);
	ck_assert_int_eq(cose_key_from_evp(p384, &e), -ENOTSUP);
	cbor_enc_free(&e);
	ck_assert(!cose_key_is_p256(p384));
	ck_assert(cose_key_is_p256(k));
	EVP_PKEY_free(k);
	EVP_PKEY_free(p384);
}
END_TEST

START_TEST(ecdsa_forms)
{
	uint8_t raw[64], back[64], *der;
	size_t derlen;

	memset(raw, 0, sizeof(raw));
	raw[31] = 1;
	raw[32] = 0x80; /* s with the top bit: DER needs a leading zero */
	ck_assert_int_eq(cose_ecdsa_raw_to_der(raw, 64, &der, &derlen), 0);
	ck_assert_uint_eq(derlen, 2 + 3 + 2 + 33);
	ck_assert_int_eq(cose_ecdsa_der_to_raw(der, derlen, 32, back), 0);
	ck_assert_mem_eq(raw, back, 64);
	ck_assert_int_eq(cose_ecdsa_der_to_raw(der, derlen - 1, 32, back), -EINVAL);
	ck_assert_int_eq(cose_ecdsa_der_to_raw(der, derlen, 16, back), -EINVAL);
	free(der);
	ck_assert_int_eq(cose_ecdsa_raw_to_der(raw, 63, &der, &derlen), -EINVAL);
}
END_TEST

/* A signer that fails, or returns a wrong length: the message is not made. */
static int
bad_signer(void *ctx, int alg, const uint8_t *tbs, size_t len, uint8_t *sig, size_t *siglen)
{
	int mode = *(int *)ctx;

	if (mode == 0)
		return -EACCES;
	memset(sig, 1, 10);
	*siglen = 10;
	return 0;
}

START_TEST(signer_errors)
{
	struct cose_sign1_params p = { .alg = COSE_ALG_ES256 };
	uint8_t *msg;
	size_t len;
	int mode = 0;

	ck_assert_int_eq(cose_sign1_create(&p, (const uint8_t *)"\xa0", 1, bad_signer, &mode, &msg, &len), -EACCES);
	ck_assert_ptr_null(msg);
	mode = 1;
	ck_assert_int_eq(cose_sign1_create(&p, (const uint8_t *)"\xa0", 1, bad_signer, &mode, &msg, &len), -EPROTO);
	ck_assert_ptr_null(msg);
	p.alg = -8;
	ck_assert_int_eq(cose_sign1_create(&p, (const uint8_t *)"\xa0", 1, bad_signer, &mode, &msg, &len), -EINVAL);
	p.alg = COSE_ALG_ES256;
	p.max_size = 20;
	{
		EVP_PKEY *k = EVP_EC_gen("P-256");
		ck_assert_int_eq(cose_sign1_create(&p, (const uint8_t *)"\xa0", 1, cose_sign_evp, k, &msg, &len), -E2BIG);
		EVP_PKEY_free(k);
	}
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("cose");
	TCase *t = tcase_create("core");

	tcase_set_timeout(t, 60);
	tcase_add_test(t, sig_structure_vectors);
	tcase_add_test(t, rfc9052_c21);
	tcase_add_test(t, es256_round_trip);
	tcase_add_test(t, ps256_round_trip);
	tcase_add_test(t, tampered_protected);
	tcase_add_test(t, parse_shapes);
	tcase_add_test(t, cose_key);
	tcase_add_test(t, ecdsa_forms);
	tcase_add_test(t, signer_errors);
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
