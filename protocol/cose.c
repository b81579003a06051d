/* COSE_Sign1 for vitaled (RFC 9052 §4.2 structure, §4.4 signing process,
 * RFC 9053 §2.1 ECDSA, RFC 8230 §2 RSASSA-PSS, RFC 9360 x5chain) over
 * protocol/cbor and OpenSSL 3 EVP.
 *
 * COSE carries ECDSA signatures as the fixed-size concatenation r||s
 * (RFC 9053 §2.1), OpenSSL wants DER (ECDSA-Sig-Value); the conversion is
 * done here in both directions. Verification always runs over the
 * Sig_structure built from the protected header and payload bytes exactly
 * as received.
 */
#include "protocol/cose.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

/* ------------------------------------------------------------------------ */
/* Parsing (RFC 9052 §4.2, §3) */

/* RFC 9052 §3: a label MUST NOT occur in both buckets. */
static int
check_no_common_label(const struct cose_sign1 *m, const struct cbor_item *prot_map)
{
	struct cbor_iter it;
	const struct cbor_item *k, *v;

	if (!prot_map)
		return 0;
	cbor_iter_init(&it, &m->prot, prot_map);
	while ((k = cbor_iter_next(&it)) && (v = cbor_iter_next(&it))) {
		struct cbor_iter u;
		const struct cbor_item *k2, *v2;

		cbor_iter_init(&u, &m->doc, m->unprotected);
		while ((k2 = cbor_iter_next(&u)) && (v2 = cbor_iter_next(&u))) {
			if (k->type == k2->type && k->raw_len == k2->raw_len &&
			    memcmp(k->raw, k2->raw, k->raw_len) == 0)
				return -EPROTO;
		}
	}
	return 0;
}

/* RFC 9360 §2: COSE_X509 = bstr / [ +bstr ]. */
static void
get_x5chain(struct cose_sign1 *m, const struct cbor_doc *doc, const struct cbor_item *x)
{
	struct cbor_iter it;
	const struct cbor_item *c;

	m->has_x5chain = true;
	if (x->type == CBOR_BYTES && x->len > 0) {
		m->x5chain[0] = (struct cose_bytes){ x->ptr, x->len };
		m->x5chain_n = 1;
		return;
	}
	if (x->type != CBOR_ARRAY || x->count == 0 || x->count > COSE_X5CHAIN_MAX)
		goto bad;
	m->x5chain_array = true;
	cbor_iter_init(&it, doc, x);
	while ((c = cbor_iter_next(&it))) {
		if (c->type != CBOR_BYTES || c->len == 0)
			goto bad;
		m->x5chain[m->x5chain_n++] = (struct cose_bytes){ c->ptr, c->len };
	}
	return;
bad:
	m->x5chain_invalid = true;
	m->x5chain_array = false;
	m->x5chain_n = 0;
	memset(m->x5chain, 0, sizeof(m->x5chain));
}

int
cose_sign1_parse(const uint8_t *buf, size_t len, const struct cbor_limits *lim, unsigned flags,
                 struct cose_sign1 *out)
{
	const struct cbor_item *root, *arr, *prot, *unprot, *payload, *sig, *pmap = NULL, *x;
	unsigned narrow = (flags & COSE_NARROW) ? CBOR_NO_NULL | CBOR_KEYS_INT_TEXT | CBOR_NO_TAGS : 0;
	int rc;

	if (!out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	rc = cbor_decode(buf, len, lim, CBOR_STRICT | narrow | (narrow ? CBOR_TOP_TAG18 : 0),
	                 &out->doc);
	if (rc)
		return rc;
	root = cbor_root(&out->doc);
	arr = root;
	if (root->type == CBOR_TAG) {
		if (root->u != COSE_TAG_SIGN1 || (flags & COSE_UNTAGGED))
			return -EPROTO;
		out->tagged = true;
		arr = cbor_child(&out->doc, root, 0);
	} else if (flags & COSE_TAG_REQUIRED) {
		return -EPROTO;
	}
	if (arr->type != CBOR_ARRAY || arr->count != 4)
		return -EPROTO;
	prot = cbor_child(&out->doc, arr, 0);
	unprot = cbor_child(&out->doc, arr, 1);
	payload = cbor_child(&out->doc, arr, 2);
	sig = cbor_child(&out->doc, arr, 3);
	if (prot->type != CBOR_BYTES || unprot->type != CBOR_MAP || payload->type != CBOR_BYTES ||
	    sig->type != CBOR_BYTES)
		return -EPROTO; /* a nil payload (detached content) included */
	out->protected_hdr = (struct cose_bytes){ prot->ptr, prot->len };
	out->payload = (struct cose_bytes){ payload->ptr, payload->len };
	out->signature = (struct cose_bytes){ sig->ptr, sig->len };
	out->unprotected = unprot;
	out->unprotected_count = unprot->count;

	/* §3: a zero-length protected bstr is the empty map. */
	if (prot->len) {
		rc = cbor_decode(prot->ptr, prot->len, lim, CBOR_STRICT | narrow, &out->prot);
		if (rc)
			return rc;
		pmap = cbor_root(&out->prot);
		if (pmap->type != CBOR_MAP)
			return -EPROTO;
		out->protected_count = pmap->count;
		x = cbor_map_get_int(&out->prot, pmap, COSE_LABEL_ALG);
		if (x) {
			out->alg_present = true;
			out->has_alg = cbor_get_int(x, &out->alg) == 0;
		}
	}
	if (check_no_common_label(out, pmap)) {
		if (!(flags & COSE_NARROW))
			return -EPROTO;
		out->label_conflict = true;
	}
	x = pmap ? cbor_map_get_int(&out->prot, pmap, COSE_LABEL_X5CHAIN) : NULL;
	if (x)
		get_x5chain(out, &out->prot, x);
	else if ((x = cbor_map_get_int(&out->doc, unprot, COSE_LABEL_X5CHAIN)))
		get_x5chain(out, &out->doc, x);
	return 0;
}

void
cose_sign1_free(struct cose_sign1 *msg)
{
	if (!msg)
		return;
	cbor_doc_free(&msg->doc);
	cbor_doc_free(&msg->prot);
	memset(msg, 0, sizeof(*msg));
}

/* ------------------------------------------------------------------------ */
/* Sig_structure (RFC 9052 §4.4) */

int
cose_sig_structure(const uint8_t *prot, size_t protlen, const uint8_t *aad, size_t aadlen,
                   const uint8_t *payload, size_t paylen, uint8_t **out, size_t *outlen)
{
	struct cbor_enc e;
	size_t max;
	int rc;

	*out = NULL;
	*outlen = 0;
	if ((!prot && protlen) || (!aad && aadlen) || (!payload && paylen))
		return -EINVAL;
	if (protlen > SIZE_MAX / 4 || aadlen > SIZE_MAX / 4 || paylen > SIZE_MAX / 4)
		return -E2BIG;
	max = protlen + aadlen + paylen + 64;
	rc = cbor_enc_init(&e, max);
	if (rc)
		return rc;
	cbor_enc_array_begin(&e);
	cbor_enc_textz(&e, "Signature1");
	cbor_enc_bytes(&e, prot, protlen);
	cbor_enc_bytes(&e, aad, aadlen);
	cbor_enc_bytes(&e, payload, paylen);
	cbor_enc_array_end(&e);
	rc = cbor_enc_take(&e, out, outlen);
	cbor_enc_free(&e);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* ECDSA signature forms */

int
cose_ecdsa_raw_to_der(const uint8_t *raw, size_t rawlen, uint8_t **der, size_t *derlen)
{
	ECDSA_SIG *s = NULL;
	BIGNUM *r = NULL, *sv = NULL;
	unsigned char *p;
	int n, rc = -ENOMEM;

	*der = NULL;
	*derlen = 0;
	if (rawlen == 0 || rawlen % 2 || rawlen > 2 * 66)
		return -EINVAL;
	s = ECDSA_SIG_new();
	r = BN_bin2bn(raw, (int)(rawlen / 2), NULL);
	sv = BN_bin2bn(raw + rawlen / 2, (int)(rawlen / 2), NULL);
	if (!s || !r || !sv)
		goto out;
	if (!ECDSA_SIG_set0(s, r, sv))
		goto out;
	r = sv = NULL; /* owned by s */
	n = i2d_ECDSA_SIG(s, NULL);
	if (n <= 0) {
		rc = -EIO;
		goto out;
	}
	*der = malloc((size_t)n);
	if (!*der)
		goto out;
	p = *der;
	if (i2d_ECDSA_SIG(s, &p) != n) {
		free(*der);
		*der = NULL;
		rc = -EIO;
		goto out;
	}
	*derlen = (size_t)n;
	rc = 0;
out:
	BN_free(r);
	BN_free(sv);
	ECDSA_SIG_free(s);
	return rc;
}

int
cose_ecdsa_der_to_raw(const uint8_t *der, size_t derlen, size_t n, uint8_t *raw)
{
	const unsigned char *p = der;
	ECDSA_SIG *s;
	const BIGNUM *r, *sv;
	int rc = 0;

	if (derlen > LONG_MAX || n == 0 || n > 66)
		return -EINVAL;
	s = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (!s)
		return -EINVAL;
	if ((size_t)(p - der) != derlen) {
		rc = -EINVAL;
		goto out;
	}
	ECDSA_SIG_get0(s, &r, &sv);
	if (BN_bn2binpad(r, raw, (int)n) < 0 || BN_bn2binpad(sv, raw + n, (int)n) < 0)
		rc = -EINVAL;
out:
	ECDSA_SIG_free(s);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Keys */

bool
cose_key_is_p256(EVP_PKEY *key)
{
	char name[64];
	size_t nl = 0;

	if (!key || !EVP_PKEY_is_a(key, "EC"))
		return false;
	if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &nl))
		return false;
	return strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0;
}

static bool
key_is_rsa(EVP_PKEY *key)
{
	return key && (EVP_PKEY_is_a(key, "RSA") || EVP_PKEY_is_a(key, "RSA-PSS"));
}

/* Set RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 8230 §2). */
static int
pss_params(EVP_PKEY_CTX *pctx)
{
	if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0)
		return -EIO;
	return 0;
}

int
cose_verify_raw(int64_t alg, EVP_PKEY *key, const uint8_t *tbs, size_t tbslen, const uint8_t *sig,
                size_t siglen)
{
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t *der = NULL;
	size_t derlen = 0;
	int rc;

	if (!key || (!tbs && tbslen) || !sig)
		return -EINVAL;
	if (alg == COSE_ALG_ES256) {
		if (!cose_key_is_p256(key))
			return -ENOTSUP;
		if (siglen != COSE_ES256_SIG_LEN)
			return -EPROTO;
		rc = cose_ecdsa_raw_to_der(sig, siglen, &der, &derlen);
		if (rc)
			return rc;
	} else if (alg == COSE_ALG_PS256) {
		if (!key_is_rsa(key) || EVP_PKEY_get_bits(key) < 2048)
			return -ENOTSUP;
		if (siglen != (size_t)EVP_PKEY_get_size(key))
			return -EPROTO;
	} else {
		return -ENOTSUP;
	}
	md = EVP_MD_CTX_new();
	if (!md) {
		rc = -ENOMEM;
		goto out;
	}
	if (EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, key) != 1) {
		rc = -EIO;
		goto out;
	}
	if (alg == COSE_ALG_PS256) {
		rc = pss_params(pctx);
		if (rc)
			goto out;
	}
	/* r or s out of range make a valid DER that does not verify. */
	if (EVP_DigestVerify(md, der ? der : sig, der ? derlen : siglen, tbs, tbslen) == 1)
		rc = 0;
	else
		rc = -EKEYREJECTED;
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	free(der);
	return rc;
}

int
cose_sign1_verify(const struct cose_sign1 *msg, EVP_PKEY *key)
{
	uint8_t *tbs = NULL;
	size_t tbslen = 0;
	int rc;

	if (!msg || !key)
		return -EINVAL;
	if (!msg->has_alg)
		return msg->alg_present ? -ENOTSUP : -EPROTO;
	if (msg->alg != COSE_ALG_ES256 && msg->alg != COSE_ALG_PS256)
		return -ENOTSUP;
	rc = cose_sig_structure(msg->protected_hdr.ptr, msg->protected_hdr.len, NULL, 0,
	                        msg->payload.ptr, msg->payload.len, &tbs, &tbslen);
	if (rc)
		return rc;
	rc = cose_verify_raw(msg->alg, key, tbs, tbslen, msg->signature.ptr, msg->signature.len);
	free(tbs);
	return rc;
}

int
cose_sign_evp(void *ctx, int alg, const uint8_t *tbs, size_t len, uint8_t *sig, size_t *siglen)
{
	EVP_PKEY *key = ctx;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t der[160];
	size_t dlen = sizeof(der), cap = *siglen;
	int rc;

	*siglen = 0;
	if (alg == COSE_ALG_ES256) {
		if (!cose_key_is_p256(key))
			return -ENOTSUP;
		if (cap < COSE_ES256_SIG_LEN)
			return -ENOSPC;
	} else if (alg == COSE_ALG_PS256) {
		if (!key_is_rsa(key) || EVP_PKEY_get_bits(key) < 2048)
			return -ENOTSUP;
		if (cap < (size_t)EVP_PKEY_get_size(key))
			return -ENOSPC;
	} else {
		return -ENOTSUP;
	}
	md = EVP_MD_CTX_new();
	if (!md)
		return -ENOMEM;
	rc = -EIO;
	if (EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1)
		goto out;
	if (alg == COSE_ALG_ES256) {
		if (EVP_DigestSign(md, der, &dlen, tbs, len) != 1)
			goto out;
		rc = cose_ecdsa_der_to_raw(der, dlen, 32, sig);
		if (rc == 0)
			*siglen = COSE_ES256_SIG_LEN;
	} else {
		if (pss_params(pctx))
			goto out;
		if (EVP_DigestSign(md, sig, &cap, tbs, len) != 1)
			goto out;
		*siglen = cap;
		rc = 0;
	}
out:
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	return rc;
}

int
cose_key_to_evp(const struct cbor_doc *doc, const struct cbor_item *map, EVP_PKEY **out)
{
	const struct cbor_item *x, *y;
	EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
	OSSL_PARAM params[3];
	uint8_t pub[65];
	char group[] = "prime256v1";
	int rc = -EINVAL;

	*out = NULL;
	/* RFC 9053 §7.1.1; docs/digital-card.md §8: exactly these labels. */
	if (!map || map->type != CBOR_MAP || map->count != 4)
		return -EPROTO;
	if (!cbor_int_eq(cbor_map_get_int(doc, map, 1), 2) ||   /* kty: EC2 */
	    !cbor_int_eq(cbor_map_get_int(doc, map, -1), 1))    /* crv: P-256 */
		return -EPROTO;
	x = cbor_map_get_int(doc, map, -2);
	y = cbor_map_get_int(doc, map, -3);
	if (!x || !y || x->type != CBOR_BYTES || y->type != CBOR_BYTES || x->len != 32 ||
	    y->len != 32)
		return -EPROTO;
	pub[0] = 0x04;
	memcpy(pub + 1, x->ptr, 32);
	memcpy(pub + 33, y->ptr, 32);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub));
	params[2] = OSSL_PARAM_construct_end();
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (!ctx) {
		rc = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_fromdata_init(ctx) != 1) {
		rc = -EIO;
		goto out;
	}
	/* Decoding the point checks that it is on the curve; the quick check
	 * repeats that (P-256 has cofactor 1: no order check needed). */
	if (EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	chk = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
	if (!chk || EVP_PKEY_public_check_quick(chk) != 1)
		goto out;
	rc = 0;
out:
	if (rc) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
	ERR_clear_error();
	EVP_PKEY_CTX_free(chk);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

int
cose_key_from_evp(EVP_PKEY *key, struct cbor_enc *e)
{
	BIGNUM *x = NULL, *y = NULL;
	uint8_t xb[32], yb[32];
	int rc = -EINVAL;

	if (!cose_key_is_p256(key))
		return -ENOTSUP;
	if (!EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
	    !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y))
		goto out;
	if (BN_bn2binpad(x, xb, 32) != 32 || BN_bn2binpad(y, yb, 32) != 32)
		goto out;
	cbor_enc_map_begin(e);
	cbor_enc_int(e, 1);
	cbor_enc_int(e, 2);
	cbor_enc_int(e, -1);
	cbor_enc_int(e, 1);
	cbor_enc_int(e, -2);
	cbor_enc_bytes(e, xb, 32);
	cbor_enc_int(e, -3);
	cbor_enc_bytes(e, yb, 32);
	rc = cbor_enc_map_end(e);
out:
	ERR_clear_error();
	BN_free(x);
	BN_free(y);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Creating (RFC 9052 §4.4) */

int
cose_sign1_create(const struct cose_sign1_params *p, const uint8_t *payload, size_t paylen,
                  cose_sign_fn sign, void *sign_ctx, uint8_t **out, size_t *outlen)
{
	struct cbor_enc ph, e;
	const uint8_t *prot = NULL;
	size_t protlen = 0, tbslen = 0, siglen = COSE_SIG_MAX;
	uint8_t *tbs = NULL, sig[COSE_SIG_MAX];
	int rc;

	*out = NULL;
	*outlen = 0;
	if (!p || !sign || (!payload && paylen) || (p->x5chain_n && !p->x5chain) ||
	    (p->alg != COSE_ALG_ES256 && p->alg != COSE_ALG_PS256))
		return -EINVAL;
	cbor_enc_init(&ph, 16);
	cbor_enc_init(&e, p->max_size ? p->max_size : (1u << 20));
	cbor_enc_map_begin(&ph);
	cbor_enc_int(&ph, COSE_LABEL_ALG);
	cbor_enc_int(&ph, p->alg);
	cbor_enc_map_end(&ph);
	rc = cbor_enc_finish(&ph, &prot, &protlen);
	if (rc)
		goto out;
	rc = cose_sig_structure(prot, protlen, NULL, 0, payload, paylen, &tbs, &tbslen);
	if (rc)
		goto out;
	rc = sign(sign_ctx, p->alg, tbs, tbslen, sig, &siglen);
	if (rc)
		goto out;
	if (siglen == 0 || siglen > sizeof(sig) ||
	    (p->alg == COSE_ALG_ES256 && siglen != COSE_ES256_SIG_LEN)) {
		rc = -EPROTO;
		goto out;
	}
	if (!p->untagged)
		cbor_enc_tag(&e, COSE_TAG_SIGN1);
	cbor_enc_array_begin(&e);
	cbor_enc_bytes(&e, prot, protlen);
	cbor_enc_map_begin(&e);
	if (p->kid) {
		cbor_enc_int(&e, COSE_LABEL_KID);
		cbor_enc_bytes(&e, p->kid, p->kid_len);
	}
	if (p->x5chain_n) {
		cbor_enc_int(&e, COSE_LABEL_X5CHAIN);
		if (p->x5chain_n == 1 && !p->x5chain_array) {
			cbor_enc_bytes(&e, p->x5chain[0].ptr, p->x5chain[0].len);
		} else {
			cbor_enc_array_begin(&e);
			for (size_t i = 0; i < p->x5chain_n; i++)
				cbor_enc_bytes(&e, p->x5chain[i].ptr, p->x5chain[i].len);
			cbor_enc_array_end(&e);
		}
	}
	cbor_enc_map_end(&e);
	cbor_enc_bytes(&e, payload, paylen);
	cbor_enc_bytes(&e, sig, siglen);
	cbor_enc_array_end(&e);
	rc = cbor_enc_take(&e, out, outlen);
out:
	free(tbs);
	cbor_enc_free(&ph);
	cbor_enc_free(&e);
	return rc;
}
