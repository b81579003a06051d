/* Terminal-side verification of the digital carte Vitale's credential and
 * device answer (docs/digital-card.md §8-§12).
 *
 * The checks run in the order of §11 and stop at the first failure, which
 * is reported by its §12 name. Signatures are checked over the bytes as
 * received (protocol/cose.c). The issuer's certificate path is built and
 * checked by OpenSSL (RFC 5280 §6) with the configured anchors as the only
 * trust, at the caller's "now" without skew; the issuer profile of §10.1
 * (P-256 key, keyUsage digitalSignature, not a CA, the purpose OID in
 * extendedKeyUsage) is checked here because no OpenSSL purpose expresses a
 * private OID.
 *
 * NIR: docs/digital-card.md §10.3 is nir_check() of protocol/nir.c, the
 * project's single NIR validator (the same rule as the physical cards and
 * the care sheets).
 */
#include "protocol/credential.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "protocol/cbor.h"
#include "protocol/cose.h"
#include "protocol/nir.h"

static const char *const reason_names[CREDENTIAL_R_COUNT] = {
	[CREDENTIAL_R_OK] = "ok",
	[CREDENTIAL_R_NO_APPLET] = "no_applet",
	[CREDENTIAL_R_BAD_VERSION] = "bad_version",
	[CREDENTIAL_R_CBOR_MALFORMED] = "cbor_malformed",
	[CREDENTIAL_R_COSE_MALFORMED] = "cose_malformed",
	[CREDENTIAL_R_PAYLOAD_INVALID] = "payload_invalid",
	[CREDENTIAL_R_ALG_UNSUPPORTED] = "alg_unsupported",
	[CREDENTIAL_R_UVM_UNSUPPORTED] = "uvm_unsupported",
	[CREDENTIAL_R_CHAIN_UNTRUSTED] = "chain_untrusted",
	[CREDENTIAL_R_CHAIN_EXPIRED] = "chain_expired",
	[CREDENTIAL_R_ISSUER_PURPOSE] = "issuer_purpose",
	[CREDENTIAL_R_CREDENTIAL_SIGNATURE] = "credential_signature",
	[CREDENTIAL_R_CREDENTIAL_NOT_YET_VALID] = "credential_not_yet_valid",
	[CREDENTIAL_R_CREDENTIAL_EXPIRED] = "credential_expired",
	[CREDENTIAL_R_DEVICE_KEY_INVALID] = "device_key_invalid",
	[CREDENTIAL_R_DEVICE_SIGNATURE] = "device_signature",
	[CREDENTIAL_R_NONCE_MISMATCH] = "nonce_mismatch",
	[CREDENTIAL_R_CID_MISMATCH] = "cid_mismatch",
	[CREDENTIAL_R_UV_FALSE] = "uv_false",
	[CREDENTIAL_R_CODE_REFUSED] = "code_refused",
	[CREDENTIAL_R_CODE_BLOCKED] = "code_blocked",
	[CREDENTIAL_R_CODE_TIMEOUT] = "code_timeout",
	[CREDENTIAL_R_ANSWER_TOO_LARGE] = "answer_too_large",
	[CREDENTIAL_R_STATUS_UNEXPECTED] = "status_unexpected",
	[CREDENTIAL_R_CARD_LOST] = "card_lost",
	[CREDENTIAL_R_QR_UNREADABLE] = "qr_unreadable",
	[CREDENTIAL_R_PRESENTATION_EXPIRED] = "presentation_expired",
	[CREDENTIAL_R_REPLAYED] = "replayed",
	[CREDENTIAL_R_CHALLENGE_MISMATCH] = "challenge_mismatch",
	[CREDENTIAL_R_CHALLENGE_REQUIRED] = "challenge_required",
	[CREDENTIAL_R_INTERNAL_ERROR] = "internal_error",
};

const char *
credential_reason_name(enum credential_reason r)
{
	if ((unsigned)r >= CREDENTIAL_R_COUNT)
		return "unknown";
	return reason_names[r];
}

/* A refusal: set the reason, return -EACCES. */
static int
refuse(enum credential_reason *reason, enum credential_reason r)
{
	*reason = r;
	return -EACCES;
}

/* A failure of the terminal itself. */
static int
internal(enum credential_reason *reason, int rc)
{
	*reason = CREDENTIAL_R_INTERNAL_ERROR;
	return rc < 0 && rc != -EACCES ? rc : -EIO;
}

/* ------------------------------------------------------------------------ */
/* Anchors */

struct credential_anchors {
	X509_STORE *store;
	size_t n;
};

int
credential_anchors_new(struct credential_anchors **out)
{
	struct credential_anchors *a;

	*out = NULL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->store = X509_STORE_new();
	if (!a->store) {
		free(a);
		return -ENOMEM;
	}
	*out = a;
	return 0;
}

int
credential_anchors_add_x509(struct credential_anchors *a, X509 *cert)
{
	if (!a || !cert)
		return -EINVAL;
	/* X509_STORE_add_cert takes its own reference. */
	if (X509_STORE_add_cert(a->store, cert) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	a->n++;
	return 0;
}

int
credential_anchors_add_pem(struct credential_anchors *a, const char *pem, size_t len)
{
	STACK_OF(X509) *certs = NULL;
	BIO *bio = NULL;
	X509 *x;
	unsigned long e;
	int rc = -EINVAL;

	if (!a || !pem || len == 0 || len > INT_MAX)
		return -EINVAL;
	certs = sk_X509_new_null();
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!certs || !bio) {
		rc = -ENOMEM;
		goto out;
	}
	ERR_clear_error();
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
		if (!sk_X509_push(certs, x)) {
			X509_free(x);
			rc = -ENOMEM;
			goto out;
		}
	}
	/* The loop ends with "no start line" at the end of the text; any
	 * other error is a certificate that does not parse. */
	e = ERR_peek_last_error();
	if (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
		goto out;
	if (sk_X509_num(certs) == 0)
		goto out;
	for (int i = 0; i < sk_X509_num(certs); i++) {
		rc = credential_anchors_add_x509(a, sk_X509_value(certs, i));
		if (rc)
			goto out;
	}
	rc = 0;
out:
	ERR_clear_error();
	BIO_free(bio);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

size_t
credential_anchors_count(const struct credential_anchors *a)
{
	return a ? a->n : 0;
}

void
credential_anchors_free(struct credential_anchors *a)
{
	if (!a)
		return;
	X509_STORE_free(a->store);
	free(a);
}

/* ------------------------------------------------------------------------ */
/* Field checks (§8, §10.3) */

static bool
is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* Text of min..max bytes without C0 controls or DEL, copied with a NUL. */
static bool
get_text(const struct cbor_item *it, size_t min, size_t max, char *dst)
{
	if (!it || it->type != CBOR_TEXT || it->len < min || it->len > max)
		return false;
	for (size_t i = 0; i < it->len; i++)
		if (it->ptr[i] < 0x20 || it->ptr[i] == 0x7F)
			return false;
	memcpy(dst, it->ptr, it->len);
	dst[it->len] = '\0';
	return true;
}

static bool
get_digits(const struct cbor_item *it, size_t n, char *dst)
{
	if (!get_text(it, n, n, dst))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_digit((uint8_t)dst[i]))
			return false;
	return true;
}

/* "YYYY-MM-DD", digits only (birth dates may be "lunar": §8). */
static bool
date_pattern(const char *s)
{
	for (int i = 0; i < 10; i++) {
		if (i == 4 || i == 7) {
			if (s[i] != '-')
				return false;
		} else if (!is_digit((uint8_t)s[i])) {
			return false;
		}
	}
	return s[10] == '\0';
}

static bool
get_date(const struct cbor_item *it, char dst[11])
{
	return get_text(it, 10, 10, dst) && date_pattern(dst);
}

static int
num(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* A proleptic Gregorian calendar date (rights: §8). */
static bool
calendar_date(const char *s)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d, dim;

	if (!date_pattern(s))
		return false;
	y = num(s, 4);
	m = num(s + 5, 2);
	d = num(s + 8, 2);
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return false;
	dim = mdays[m - 1];
	if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		dim = 29;
	return d <= dim;
}

static bool
get_nir(const struct cbor_item *it, char dst[16])
{
	/* §10.3 is protocol/nir.c's rule, the project's one NIR validator */
	return get_text(it, NIR_LEN, NIR_LEN, dst) && nir_check(dst, NIR_LEN, NULL) == 0;
}

static bool
get_uint63(const struct cbor_item *it, int64_t *out)
{
	uint64_t u;

	*out = 0;
	if (cbor_get_uint(it, &u) || u > (uint64_t)INT64_MAX)
		return false;
	*out = (int64_t)u;
	return true;
}

static bool
get_person(const struct cbor_doc *doc, const struct cbor_item *map, char nir[16], char *surname,
           char *given, char bd[11])
{
	return get_nir(cbor_map_get_text(doc, map, "nir"), nir) &&
	       get_text(cbor_map_get_text(doc, map, "surname"), 1, CREDENTIAL_NAME_MAX, surname) &&
	       get_text(cbor_map_get_text(doc, map, "given_name"), 1, CREDENTIAL_NAME_MAX, given) &&
	       get_date(cbor_map_get_text(doc, map, "birth_date"), bd);
}

static bool
get_rights(const struct cbor_doc *doc, const struct cbor_item *arr, struct credential *c)
{
	struct cbor_iter it;
	const struct cbor_item *r;

	if (!arr || arr->type != CBOR_ARRAY || arr->count > CREDENTIAL_RIGHTS_MAX)
		return false;
	cbor_iter_init(&it, doc, arr);
	while ((r = cbor_iter_next(&it))) {
		struct credential_right *x = &c->rights[c->nrights];

		if (r->type != CBOR_MAP ||
		    !get_text(cbor_map_get_text(doc, r, "from"), 10, 10, x->from) ||
		    !get_text(cbor_map_get_text(doc, r, "to"), 10, 10, x->to) ||
		    !calendar_date(x->from) || !calendar_date(x->to) || strcmp(x->from, x->to) > 0 ||
		    !get_text(cbor_map_get_text(doc, r, "code"), 1, CREDENTIAL_CODE_MAX, x->code))
			return false;
		c->nrights++;
	}
	return true;
}

static bool
get_beneficiaries(const struct cbor_doc *doc, const struct cbor_item *arr, struct credential *c)
{
	struct cbor_iter it;
	const struct cbor_item *b;
	uint64_t rank;

	if (!arr || arr->type != CBOR_ARRAY || arr->count > CREDENTIAL_BENEFICIARIES_MAX)
		return false;
	cbor_iter_init(&it, doc, arr);
	while ((b = cbor_iter_next(&it))) {
		struct credential_beneficiary *x = &c->beneficiaries[c->nbeneficiaries];

		if (b->type != CBOR_MAP || cbor_get_uint(cbor_map_get_text(doc, b, "rank"), &rank) ||
		    rank < 1 || rank > 99)
			return false;
		for (size_t i = 0; i < c->nbeneficiaries; i++)
			if (c->beneficiaries[i].rank == rank)
				return false;
		x->rank = (unsigned)rank;
		if (!get_person(doc, b, x->nir, x->surname, x->given_name, x->birth_date))
			return false;
		c->nbeneficiaries++;
	}
	return true;
}

static int
check_policy(const struct credential_policy *pol)
{
	/* Bounded so that now +/- skew cannot overflow. */
	if (!pol || pol->skew_s < 0 || pol->skew_s > 366 * 86400 || pol->now < 0 ||
	    pol->now > INT64_MAX / 4)
		return -EINVAL;
	return 0;
}

static const struct cbor_limits cred_limits = { CREDENTIAL_MAX, CREDENTIAL_MAX,
	                                         CREDENTIAL_DEPTH_MAX };
static const struct cbor_limits answer_limits = { CREDENTIAL_ANSWER_MAX, CREDENTIAL_ANSWER_MAX,
	                                           CREDENTIAL_DEPTH_MAX };

static int
cbor_reason(int rc, enum credential_reason *reason)
{
	if (rc == -ENOMEM)
		return internal(reason, rc);
	return refuse(reason, CREDENTIAL_R_CBOR_MALFORMED);
}

/* The COSE_Sign1 prologue both signed objects share (§7, C.2–C.3, A.2–A.3):
 * parse with tag 18 and the narrow CBOR profile, then require alg -7.
 * Returns 0, or the refusal (reason set) / internal error. */
static int
parse_es256(const uint8_t *buf, size_t len, const struct cbor_limits *lim, struct cose_sign1 *m,
            enum credential_reason *reason)
{
	int rc = cose_sign1_parse(buf, len, lim, COSE_TAG_REQUIRED | COSE_NARROW, m);
	if (rc == -EPROTO)
		return refuse(reason, CREDENTIAL_R_COSE_MALFORMED);
	if (rc)
		return cbor_reason(rc, reason);
	if (!m->alg_present)
		return refuse(reason, CREDENTIAL_R_COSE_MALFORMED);
	/* any alg but the integer -7 (a text name too) */
	if (!m->has_alg || m->alg != COSE_ALG_ES256)
		return refuse(reason, CREDENTIAL_R_ALG_UNSUPPORTED);
	return 0;
}

/* §11 C.7-C.11 */
int
credential_parse_payload(const uint8_t *payload, size_t len, const struct credential_policy *pol,
                         struct credential *out, enum credential_reason *reason)
{
	struct cbor_doc doc = { 0 };
	const struct cbor_item *m, *v;
	uint64_t ver;
	int rc;

	memset(out, 0, sizeof(*out));
	*reason = CREDENTIAL_R_OK;
	if (pol && check_policy(pol))
		return internal(reason, -EINVAL);
	/* C.7 */
	rc = cbor_decode(payload, len, &cred_limits, CREDENTIAL_CBOR_FLAGS, &doc);
	if (rc) {
		rc = cbor_reason(rc, reason);
		goto out;
	}
	m = cbor_root(&doc);
	if (m->type != CBOR_MAP) {
		rc = refuse(reason, CREDENTIAL_R_CBOR_MALFORMED);
		goto out;
	}
	/* C.8 */
	v = cbor_map_get_text(&doc, m, "v");
	if (cbor_get_uint(v, &ver)) {
		rc = refuse(reason, CREDENTIAL_R_PAYLOAD_INVALID);
		goto out;
	}
	if (ver != 1) {
		rc = refuse(reason, CREDENTIAL_R_BAD_VERSION);
		goto out;
	}
	/* C.9 */
	v = cbor_map_get_text(&doc, m, "cid");
	if (!v || v->type != CBOR_BYTES || v->len != CREDENTIAL_CID_LEN ||
	    !get_person(&doc, m, out->nir, out->surname, out->given_name, out->birth_date) ||
	    !get_digits(cbor_map_get_text(&doc, m, "regime"), 2, out->regime) ||
	    !get_digits(cbor_map_get_text(&doc, m, "caisse"), 3, out->caisse) ||
	    !get_digits(cbor_map_get_text(&doc, m, "centre"), 4, out->centre) ||
	    !get_rights(&doc, cbor_map_get_text(&doc, m, "rights"), out) ||
	    !get_beneficiaries(&doc, cbor_map_get_text(&doc, m, "beneficiaries"), out) ||
	    !get_uint63(cbor_map_get_text(&doc, m, "nbf"), &out->nbf) ||
	    !get_uint63(cbor_map_get_text(&doc, m, "exp"), &out->exp) || out->nbf >= out->exp) {
		rc = refuse(reason, CREDENTIAL_R_PAYLOAD_INVALID);
		goto out;
	}
	memcpy(out->cid, v->ptr, CREDENTIAL_CID_LEN);
	/* C.10 */
	rc = cose_key_to_evp(&doc, cbor_map_get_text(&doc, m, "dk"), &out->dk);
	if (rc == -ENOMEM || rc == -EIO) {
		rc = internal(reason, rc);
		goto out;
	} else if (rc) {
		rc = refuse(reason, CREDENTIAL_R_DEVICE_KEY_INVALID);
		goto out;
	}
	/* C.11: valid when nbf - skew <= now < exp + skew */
	if (pol && pol->now + pol->skew_s < out->nbf) {
		rc = refuse(reason, CREDENTIAL_R_CREDENTIAL_NOT_YET_VALID);
		goto out;
	}
	if (pol && pol->now - pol->skew_s >= out->exp) {
		rc = refuse(reason, CREDENTIAL_R_CREDENTIAL_EXPIRED);
		goto out;
	}
	rc = 0;
out:
	cbor_doc_free(&doc);
	if (rc)
		credential_clear(out);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The issuer's certificates (§10, §11 C.4-C.5) */

static bool
cert_time_ok(X509 *x, time_t now)
{
	time_t t = now;

	return X509_cmp_time(X509_get0_notBefore(x), &t) < 0 &&
	       X509_cmp_time(X509_get0_notAfter(x), &t) > 0;
}

/* C.4: RFC 5280 §6 path from the first x5chain certificate to an anchor, at
 * now exactly. The other x5chain certificates are untrusted helpers. */
static int
check_chain(const struct cose_sign1 *m, const struct credential_policy *pol, X509 **leaf_out,
            enum credential_reason *reason)
{
	STACK_OF(X509) *untrusted = NULL;
	X509_STORE_CTX *ctx = NULL;
	X509_VERIFY_PARAM *vp;
	STACK_OF(X509) *chain;
	int rc, err;

	*leaf_out = NULL;
	if (!pol->anchors || pol->anchors->n == 0)
		return refuse(reason, CREDENTIAL_R_CHAIN_UNTRUSTED);
	untrusted = sk_X509_new_null();
	ctx = X509_STORE_CTX_new();
	if (!untrusted || !ctx) {
		rc = internal(reason, -ENOMEM);
		goto out;
	}
	for (size_t i = 0; i < m->x5chain_n; i++) {
		const unsigned char *p = m->x5chain[i].ptr;
		X509 *x;

		if (m->x5chain[i].len > LONG_MAX) {
			rc = refuse(reason, CREDENTIAL_R_CHAIN_UNTRUSTED);
			goto out;
		}
		x = d2i_X509(NULL, &p, (long)m->x5chain[i].len);
		if (!x || p != m->x5chain[i].ptr + m->x5chain[i].len) {
			X509_free(x);
			rc = refuse(reason, CREDENTIAL_R_CHAIN_UNTRUSTED);
			goto out;
		}
		if (!sk_X509_push(untrusted, x)) {
			X509_free(x);
			rc = internal(reason, -ENOMEM);
			goto out;
		}
	}
	if (X509_STORE_CTX_init(ctx, pol->anchors->store, sk_X509_value(untrusted, 0), untrusted) != 1) {
		rc = internal(reason, -ENOMEM);
		goto out;
	}
	vp = X509_STORE_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_time(vp, (time_t)pol->now);
	/* §10.1: an anchor is trusted as configured, self-signed or not. */
	X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN);
	if (X509_verify_cert(ctx) != 1) {
		err = X509_STORE_CTX_get_error(ctx);
		if (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID)
			rc = refuse(reason, CREDENTIAL_R_CHAIN_EXPIRED);
		else if (err == X509_V_ERR_OUT_OF_MEM)
			rc = internal(reason, -ENOMEM);
		else
			rc = refuse(reason, CREDENTIAL_R_CHAIN_UNTRUSTED);
		goto out;
	}
	/* Every certificate on the path, the anchor included (§11 C.4), at
	 * now: OpenSSL may skip the anchor's own dates. */
	chain = X509_STORE_CTX_get0_chain(ctx);
	for (int i = 0; i < sk_X509_num(chain); i++) {
		if (!cert_time_ok(sk_X509_value(chain, i), (time_t)pol->now)) {
			rc = refuse(reason, CREDENTIAL_R_CHAIN_EXPIRED);
			goto out;
		}
	}
	*leaf_out = sk_X509_value(untrusted, 0);
	X509_up_ref(*leaf_out);
	rc = 0;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(ctx);
	sk_X509_pop_free(untrusted, X509_free);
	return rc;
}

/* C.5: §10.1 credential issuer profile. */
static bool
issuer_profile_ok(X509 *leaf, const ASN1_OBJECT *purpose)
{
	EXTENDED_KEY_USAGE *eku;
	uint32_t flags;
	bool found = false;

	if (X509_get_version(leaf) != X509_VERSION_3 || !cose_key_is_p256(X509_get0_pubkey(leaf)))
		return false;
	flags = X509_get_extension_flags(leaf);
	if (flags & EXFLAG_INVALID)
		return false;
	if ((flags & EXFLAG_BCONS) && (flags & EXFLAG_CA))
		return false;
	if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE))
		return false;
	if (!(flags & EXFLAG_XKUSAGE))
		return false;
	eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, NULL, NULL);
	if (!eku)
		return false;
	/* anyExtendedKeyUsage does not stand in for the purpose OID. */
	for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++)
		if (OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), purpose) == 0)
			found = true;
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	return found;
}

int
credential_verify(const uint8_t *buf, size_t len, const struct credential_policy *pol,
                  struct credential *out, enum credential_reason *reason)
{
	struct cose_sign1 m;
	ASN1_OBJECT *purpose = NULL;
	X509 *leaf = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&m, 0, sizeof(m));
	*reason = CREDENTIAL_R_OK;
	if (check_policy(pol) || !buf)
		return internal(reason, -EINVAL);
	purpose = OBJ_txt2obj(pol->issuer_eku ? pol->issuer_eku : CREDENTIAL_EKU_DEFAULT, 1);
	if (!purpose) {
		rc = internal(reason, -EINVAL);
		goto out;
	}
	if (len > CREDENTIAL_MAX) {
		rc = refuse(reason, CREDENTIAL_R_ANSWER_TOO_LARGE);
		goto out;
	}
	/* C.2, C.3 */
	rc = parse_es256(buf, len, &cred_limits, &m, reason);
	if (rc)
		goto out;
	if (m.protected_count != 1 || m.signature.len != COSE_ES256_SIG_LEN || !m.has_x5chain ||
	    m.x5chain_invalid || !m.x5chain_array || m.x5chain_n > CREDENTIAL_X5CHAIN_MAX) {
		rc = refuse(reason, CREDENTIAL_R_COSE_MALFORMED);
		goto out;
	}
	/* C.4 */
	rc = check_chain(&m, pol, &leaf, reason);
	if (rc)
		goto out;
	/* C.5 */
	if (!issuer_profile_ok(leaf, purpose)) {
		rc = refuse(reason, CREDENTIAL_R_ISSUER_PURPOSE);
		goto out;
	}
	/* C.6 */
	rc = cose_sign1_verify(&m, X509_get0_pubkey(leaf));
	if (rc == -ENOMEM || rc == -EIO) {
		rc = internal(reason, rc);
		goto out;
	} else if (rc) {
		rc = refuse(reason, CREDENTIAL_R_CREDENTIAL_SIGNATURE);
		goto out;
	}
	/* C.7-C.11 */
	rc = credential_parse_payload(m.payload.ptr, m.payload.len, pol, out, reason);
out:
	ERR_clear_error();
	X509_free(leaf);
	ASN1_OBJECT_free(purpose);
	cose_sign1_free(&m);
	if (rc)
		credential_clear(out);
	return rc;
}

void
credential_clear(struct credential *c)
{
	if (!c)
		return;
	EVP_PKEY_free(c->dk);
	explicit_bzero(c, sizeof(*c));
}

bool
credential_right_covers(const struct credential *c, const char *today)
{
	if (!c || !today || !date_pattern(today))
		return false;
	for (size_t i = 0; i < c->nrights; i++)
		if (strcmp(c->rights[i].from, today) <= 0 && strcmp(today, c->rights[i].to) <= 0)
			return true;
	return false;
}

/* ------------------------------------------------------------------------ */
/* The device answer (§9, §11 A.2-A.8) */

int
credential_verify_answer(const struct credential *cred, const uint8_t *buf, size_t len,
                         const uint8_t nonce[CREDENTIAL_NONCE_LEN], struct credential_answer *out,
                         enum credential_reason *reason)
{
	struct cose_sign1 m;
	struct cbor_doc doc = { 0 };
	const struct cbor_item *p, *n, *cid, *uv, *uvm;
	bool uvb;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&m, 0, sizeof(m));
	*reason = CREDENTIAL_R_OK;
	if (!cred || !cred->dk || !buf || !nonce)
		return internal(reason, -EINVAL);
	if (len > CREDENTIAL_ANSWER_MAX)
		return refuse(reason, CREDENTIAL_R_ANSWER_TOO_LARGE);
	/* A.2, A.3 */
	rc = parse_es256(buf, len, &answer_limits, &m, reason);
	if (rc)
		goto out;
	if (m.protected_count != 1 || m.unprotected_count != 0 ||
	    m.signature.len != COSE_ES256_SIG_LEN) {
		rc = refuse(reason, CREDENTIAL_R_COSE_MALFORMED);
		goto out;
	}
	/* A.4 */
	rc = cose_sign1_verify(&m, cred->dk);
	if (rc == -ENOMEM || rc == -EIO) {
		rc = internal(reason, rc);
		goto out;
	} else if (rc) {
		rc = refuse(reason, CREDENTIAL_R_DEVICE_SIGNATURE);
		goto out;
	}
	/* A.5 */
	rc = cbor_decode(m.payload.ptr, m.payload.len, &answer_limits, CREDENTIAL_CBOR_FLAGS, &doc);
	if (rc) {
		rc = cbor_reason(rc, reason);
		goto out;
	}
	p = cbor_root(&doc);
	if (p->type != CBOR_MAP) {
		rc = refuse(reason, CREDENTIAL_R_CBOR_MALFORMED);
		goto out;
	}
	n = cbor_map_get_text(&doc, p, "n");
	cid = cbor_map_get_text(&doc, p, "cid");
	uv = cbor_map_get_text(&doc, p, "uv");
	uvm = cbor_map_get_text(&doc, p, "uvm");
	if (!n || n->type != CBOR_BYTES || n->len != CREDENTIAL_NONCE_LEN || !cid ||
	    cid->type != CBOR_BYTES || cid->len != CREDENTIAL_CID_LEN || cbor_get_bool(uv, &uvb) ||
	    !uvm || uvm->type != CBOR_TEXT ||
	    !get_uint63(cbor_map_get_text(&doc, p, "ts"), &out->ts)) {
		rc = refuse(reason, CREDENTIAL_R_PAYLOAD_INVALID);
		goto out;
	}
	/* A.6: constant time, the nonce is the freshness proof. */
	if (CRYPTO_memcmp(n->ptr, nonce, CREDENTIAL_NONCE_LEN) != 0) {
		rc = refuse(reason, CREDENTIAL_R_NONCE_MISMATCH);
		goto out;
	}
	/* A.7 */
	if (memcmp(cid->ptr, cred->cid, CREDENTIAL_CID_LEN) != 0) {
		rc = refuse(reason, CREDENTIAL_R_CID_MISMATCH);
		goto out;
	}
	/* A.8 */
	if (!uvb || !cbor_text_eq(uvm, "pin")) {
		rc = refuse(reason, CREDENTIAL_R_UV_FALSE);
		goto out;
	}
	rc = 0;
out:
	cbor_doc_free(&doc);
	cose_sign1_free(&m);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}
