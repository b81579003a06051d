/* The "pkcs11" signer backend: a PKCS#11 module loaded with dlopen()
 * (OpenSC's opensc-pkcs11.so for the CPS card, SoftHSM2 in tests).
 *
 * Why raw PKCS#11 and not libp11: we need the exact CK_RV of C_Login
 * (CKR_PIN_INCORRECT vs CKR_PIN_LOCKED) and the token flags read right
 * after it (CKF_USER_PIN_COUNT_LOW / FINAL_TRY / LOCKED) to tell the
 * practitioner how many tries are left; we need C_Login with a NULL PIN
 * for a protected authentication path (pinpad); we need CKM_RSA_PKCS_PSS
 * with our own parameters; and libp11 keeps a copy of the PIN in ordinary
 * heap memory to log in again after a fork, which is exactly what the PIN
 * rules forbid. The types come from p11-kit's pkcs11.h (a header only; we
 * do not link p11-kit).
 *
 * Configuration: [signer] module = PATH, token = LABEL (empty: the first
 * token present), key = LABEL, or key = id:HEX for a CKA_ID.
 *
 * Practitioner identity: a certificate on the token with the key's CKA_ID
 * (or label) gives "who" (subject CN) and cert_id (subject serialNumber,
 * where CPS certificates carry the national id); see docs/pin-and-signing.md.
 *
 * All functions run on the signer's worker thread (signer.c).
 */
#include <ctype.h>
#include <dlfcn.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "protocol/pin.h"
#include "drivers/signer.h"

/* Last: p11-kit's compatibility names are macros (value, count, params ...). */
#include <p11-kit-1/p11-kit/pkcs11.h>

#define ATTR_MAX (64u * 1024u) /* a certificate or a modulus is far smaller */

struct p11 {
	void *dl;
	CK_FUNCTION_LIST *f;
	bool finalize;
	char module[PATH_MAX];
	char want_token[65];
	char key_label[65];
	uint8_t key_id[32];
	size_t key_id_len;
	bool by_id;

	CK_SLOT_ID slot;
	bool have_slot;
	CK_SESSION_HANDLE sess;
	bool have_sess;
	CK_OBJECT_HANDLE priv;
	bool have_priv;
	uint8_t obj_id[64]; /* CKA_ID of the key pair, to find its certificate */
	size_t obj_id_len;
	uint8_t *pub;       /* SubjectPublicKeyInfo DER */
	size_t pub_len;
};

/* ------------------------------------------------------------------ */
/* CK_RV names and the login outcome (pure) */

static const struct {
	CK_RV rv;
	const char *name;
} rv_names[] = {
	{ CKR_OK, "CKR_OK" },
	{ CKR_HOST_MEMORY, "CKR_HOST_MEMORY" },
	{ CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR" },
	{ CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED" },
	{ CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD" },
	{ CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR" },
	{ CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY" },
	{ CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED" },
	{ CKR_FUNCTION_CANCELED, "CKR_FUNCTION_CANCELED" },
	{ CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID" },
	{ CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT" },
	{ CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID" },
	{ CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID" },
	{ CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID" },
	{ CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE" },
	{ CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT" },
	{ CKR_PIN_INVALID, "CKR_PIN_INVALID" },
	{ CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE" },
	{ CKR_PIN_EXPIRED, "CKR_PIN_EXPIRED" },
	{ CKR_PIN_LOCKED, "CKR_PIN_LOCKED" },
	{ CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED" },
	{ CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID" },
	{ CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT" },
	{ CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED" },
	{ CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN" },
	{ CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN" },
	{ CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED" },
	{ CKR_USER_TYPE_INVALID, "CKR_USER_TYPE_INVALID" },
	{ CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL" },
	{ CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED" },
	{ CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED" },
	{ CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID" },
	{ CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE" },
};

const char *
signer_p11_rv_name(unsigned long rv, char *buf, size_t len)
{
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	snprintf(buf, len, "CKR_0x%08lX", rv);
	return buf;
}

static bool
rv_means_gone(CK_RV rv)
{
	return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
	       rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_SLOT_ID_INVALID;
}

void
signer_p11_login_outcome(unsigned long rv, unsigned long token_flags,
                         struct signer_p11_outcome *o)
{
	o->result = 0;
	o->state = SIGNER_READY;
	o->tries_left = -1;
	o->count_low = (token_flags & CKF_USER_PIN_COUNT_LOW) != 0;
	if (token_flags & CKF_USER_PIN_FINAL_TRY)
		o->tries_left = 1;
	switch (rv) {
	case CKR_OK:
	case CKR_USER_ALREADY_LOGGED_IN:
		o->tries_left = -1;
		o->count_low = false;
		return;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
		if (token_flags & CKF_USER_PIN_LOCKED) {
			/* the wrong PIN just used the last try */
			o->result = SIGNER_E_PIN_BLOCKED;
			o->state = SIGNER_BLOCKED;
			o->tries_left = 0;
			return;
		}
		o->result = SIGNER_E_PIN_INCORRECT;
		o->state = SIGNER_LOCKED;
		return;
	case CKR_PIN_LOCKED:
		o->result = SIGNER_E_PIN_BLOCKED;
		o->state = SIGNER_BLOCKED;
		o->tries_left = 0;
		return;
	case CKR_PIN_LEN_RANGE:
		o->result = SIGNER_E_PIN_MALFORMED;
		o->state = SIGNER_LOCKED;
		return;
	case CKR_FUNCTION_CANCELED:
		o->result = SIGNER_E_CANCELLED;
		o->state = SIGNER_LOCKED;
		return;
	default:
		if (rv_means_gone(rv)) {
			o->result = SIGNER_E_NO_TOKEN;
			o->state = SIGNER_NO_TOKEN;
			return;
		}
		o->result = -EIO;
		o->state = SIGNER_LOCKED;
		return;
	}
}

/* ------------------------------------------------------------------ */
/* helpers */

static void
trim_label(const unsigned char *src, size_t n, char *dst, size_t dlen)
{
	while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\0'))
		n--;
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < dlen; i++)
		dst[k++] = isprint(src[i]) ? (char)src[i] : '?';
	dst[k] = '\0';
}

static int
hex_decode(const char *s, uint8_t *out, size_t cap, size_t *len)
{
	size_t n = strlen(s);
	*len = 0;
	if (n == 0 || n % 2 || n / 2 > cap)
		return -EINVAL;
	for (size_t i = 0; i < n; i += 2) {
		int hi = isxdigit((unsigned char)s[i]) ? (isdigit((unsigned char)s[i]) ? s[i] - '0' : (tolower((unsigned char)s[i]) - 'a' + 10)) : -1;
		int lo = isxdigit((unsigned char)s[i + 1]) ? (isdigit((unsigned char)s[i + 1]) ? s[i + 1] - '0' : (tolower((unsigned char)s[i + 1]) - 'a' + 10)) : -1;
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i / 2] = (uint8_t)(hi << 4 | lo);
	}
	*len = n / 2;
	return 0;
}

static void
log_rv(const char *what, CK_RV rv)
{
	char b[32];
	log_warn("signer: %s: %s", what, signer_p11_rv_name(rv, b, sizeof(b)));
}

/* Read one attribute into a malloc'd buffer (two-call pattern, bounded). */
static CK_RV
get_attr(struct p11 *p, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, uint8_t **out, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	*out = NULL;
	*len = 0;
	CK_RV rv = p->f->C_GetAttributeValue(p->sess, obj, &a, 1);
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == (CK_ULONG)-1 || a.ulValueLen > ATTR_MAX)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	uint8_t *buf = malloc(a.ulValueLen ? a.ulValueLen : 1);
	if (!buf)
		return CKR_HOST_MEMORY;
	a.pValue = buf;
	rv = p->f->C_GetAttributeValue(p->sess, obj, &a, 1);
	if (rv != CKR_OK) {
		free(buf);
		return rv;
	}
	*out = buf;
	*len = a.ulValueLen;
	return CKR_OK;
}

static CK_RV
get_ulong(struct p11 *p, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { type, v, sizeof(*v) };
	return p->f->C_GetAttributeValue(p->sess, obj, &a, 1);
}

/* The first object of class cls matching the key (by label or id). With
 * use_obj_id, match the CKA_ID found on the key pair instead. */
static bool
find_obj(struct p11 *p, CK_OBJECT_CLASS cls, bool use_obj_id, CK_OBJECT_HANDLE *out)
{
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof(cls) }, { 0, NULL, 0 } };
	if (use_obj_id) {
		if (!p->obj_id_len)
			return false;
		t[1] = (CK_ATTRIBUTE){ CKA_ID, p->obj_id, p->obj_id_len };
	} else if (p->by_id) {
		t[1] = (CK_ATTRIBUTE){ CKA_ID, p->key_id, p->key_id_len };
	} else {
		t[1] = (CK_ATTRIBUTE){ CKA_LABEL, p->key_label, strlen(p->key_label) };
	}
	CK_ULONG n = 0;
	bool found = false;
	if (p->f->C_FindObjectsInit(p->sess, t, 2) != CKR_OK)
		return false;
	if (p->f->C_FindObjects(p->sess, out, 1, &n) == CKR_OK && n == 1)
		found = true;
	p->f->C_FindObjectsFinal(p->sess);
	return found;
}

static void
remember_id(struct p11 *p, CK_OBJECT_HANDLE obj)
{
	uint8_t *id = NULL;
	size_t n = 0;
	if (p->obj_id_len == 0 && get_attr(p, obj, CKA_ID, &id, &n) == CKR_OK && n > 0 &&
	    n <= sizeof(p->obj_id)) {
		memcpy(p->obj_id, id, n);
		p->obj_id_len = n;
	}
	free(id);
}

/* DER of the P-256 curve OID, as CKA_EC_PARAMS holds it. */
static const uint8_t oid_p256[] = { 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07 };
/* SubjectPublicKeyInfo for id-ecPublicKey / P-256, up to the BIT STRING's content. */
static const uint8_t spki_p256_prefix[] = {
	0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01,
	0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
};

static void
set_pub(struct p11 *p, uint8_t *der, size_t len)
{
	free(p->pub);
	p->pub = der;
	p->pub_len = len;
}

/* EC P-256 public key from CKA_EC_PARAMS / CKA_EC_POINT of obj. */
static bool
ec_pub_from_obj(struct p11 *p, CK_OBJECT_HANDLE obj)
{
	uint8_t *params = NULL, *point = NULL;
	size_t plen = 0, ptlen = 0;
	bool ok = false;
	if (get_attr(p, obj, CKA_EC_PARAMS, &params, &plen) != CKR_OK || plen != sizeof(oid_p256) ||
	    memcmp(params, oid_p256, plen))
		goto out;
	if (get_attr(p, obj, CKA_EC_POINT, &point, &ptlen) != CKR_OK)
		goto out;
	/* PKCS#11 v2.40 says DER OCTET STRING (04 41 04 x y); some tokens give the raw point */
	const uint8_t *q = point;
	if (ptlen == 67 && point[0] == 0x04 && point[1] == 0x41)
		q = point + 2;
	else if (ptlen != 65)
		goto out;
	if (q[0] != 0x04)
		goto out;
	uint8_t *der = malloc(sizeof(spki_p256_prefix) + 65);
	if (!der)
		goto out;
	memcpy(der, spki_p256_prefix, sizeof(spki_p256_prefix));
	memcpy(der + sizeof(spki_p256_prefix), q, 65);
	set_pub(p, der, sizeof(spki_p256_prefix) + 65);
	ok = true;
out:
	free(params);
	free(point);
	return ok;
}

/* RSA public key from CKA_MODULUS / CKA_PUBLIC_EXPONENT (public or private object). */
static bool
rsa_pub_from_obj(struct p11 *p, CK_OBJECT_HANDLE obj)
{
	uint8_t *mod = NULL, *exp = NULL;
	size_t mlen = 0, elen = 0;
	BIGNUM *n = NULL, *e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *prm = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;
	unsigned char *der = NULL;
	bool ok = false;
	if (get_attr(p, obj, CKA_MODULUS, &mod, &mlen) != CKR_OK ||
	    get_attr(p, obj, CKA_PUBLIC_EXPONENT, &exp, &elen) != CKR_OK || !mlen || !elen)
		goto out;
	n = BN_bin2bn(mod, (int)mlen, NULL);
	e = BN_bin2bn(exp, (int)elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (!n || !e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    !(prm = OSSL_PARAM_BLD_to_param(bld)))
		goto out;
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, prm) != 1)
		goto out;
	int dl = i2d_PUBKEY(pk, &der);
	if (dl <= 0)
		goto out;
	uint8_t *copy = malloc((size_t)dl);
	if (!copy)
		goto out;
	memcpy(copy, der, (size_t)dl);
	set_pub(p, copy, (size_t)dl);
	ok = true;
out:
	OPENSSL_free(der);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(prm);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	free(mod);
	free(exp);
	return ok;
}

static void
name_entry(X509_NAME *nm, int nid, char *dst, size_t dlen)
{
	dst[0] = '\0';
	int i = X509_NAME_get_index_by_NID(nm, nid, -1);
	if (i < 0)
		return;
	unsigned char *u = NULL;
	int n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, i)));
	if (n > 0) {
		size_t k = 0;
		for (int j = 0; j < n && k + 1 < dlen; j++)
			if (u[j] >= 0x20 && u[j] != 0x7F)
				dst[k++] = (char)u[j];
		dst[k] = '\0';
	}
	OPENSSL_free(u);
}

/* The certificate of the key: who it belongs to, and its public key if we
 * have none yet. */
static void
read_cert(struct p11 *p, struct signer_status *st)
{
	CK_OBJECT_HANDLE c;
	if (!find_obj(p, CKO_CERTIFICATE, true, &c) && !find_obj(p, CKO_CERTIFICATE, false, &c))
		return;
	uint8_t *der = NULL;
	size_t len = 0;
	if (get_attr(p, c, CKA_VALUE, &der, &len) != CKR_OK)
		return;
	const unsigned char *q = der;
	X509 *x = d2i_X509(NULL, &q, (long)len);
	if (x) {
		X509_NAME *nm = X509_get_subject_name(x);
		name_entry(nm, NID_commonName, st->who, sizeof(st->who));
		name_entry(nm, NID_serialNumber, st->cert_id, sizeof(st->cert_id));
		if (!p->pub) {
			unsigned char *pd = NULL;
			int pl = i2d_PUBKEY(X509_get0_pubkey(x), &pd);
			if (pl > 0) {
				uint8_t *copy = malloc((size_t)pl);
				if (copy) {
					memcpy(copy, pd, (size_t)pl);
					set_pub(p, copy, (size_t)pl);
				}
			}
			OPENSSL_free(pd);
		}
		X509_free(x);
	}
	free(der);
}

/* Key type and size from a key object (public or private). */
static void
read_key_type(struct p11 *p, CK_OBJECT_HANDLE obj, struct signer_status *st)
{
	CK_ULONG kt = (CK_ULONG)-1;
	if (get_ulong(p, obj, CKA_KEY_TYPE, &kt) != CKR_OK)
		return;
	if (kt == CKK_EC) {
		uint8_t *params = NULL;
		size_t plen = 0;
		if (get_attr(p, obj, CKA_EC_PARAMS, &params, &plen) == CKR_OK &&
		    plen == sizeof(oid_p256) && !memcmp(params, oid_p256, plen)) {
			st->cose_alg = SIGNER_ALG_ES256;
			st->key_bits = 256;
		} else {
			st->cose_alg = 0;
			snprintf(st->reason, sizeof(st->reason), "the key is EC but not on P-256");
		}
		free(params);
	} else if (kt == CKK_RSA) {
		uint8_t *mod = NULL;
		size_t mlen = 0;
		if (get_attr(p, obj, CKA_MODULUS, &mod, &mlen) == CKR_OK)
			st->key_bits = (unsigned)(mlen * 8);
		free(mod);
		st->cose_alg = st->key_bits >= 2048 ? SIGNER_ALG_PS256 : 0;
		if (!st->cose_alg)
			snprintf(st->reason, sizeof(st->reason), "the RSA key is shorter than 2048 bits");
	} else {
		st->cose_alg = 0;
		snprintf(st->reason, sizeof(st->reason), "the key type is neither EC nor RSA");
	}
}

static void
read_token_flags(struct p11 *p, struct signer_status *st, CK_FLAGS *flags)
{
	CK_TOKEN_INFO ti;
	*flags = 0;
	if (p->f->C_GetTokenInfo(p->slot, &ti) != CKR_OK)
		return;
	*flags = ti.flags;
	trim_label(ti.label, sizeof(ti.label), st->token, sizeof(st->token));
	st->pinpad = (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH) != 0;
	st->needs_pin = (ti.flags & CKF_LOGIN_REQUIRED) != 0;
	st->count_low = (ti.flags & CKF_USER_PIN_COUNT_LOW) != 0;
	st->tries_left = (ti.flags & CKF_USER_PIN_LOCKED) ? 0 :
	                 (ti.flags & CKF_USER_PIN_FINAL_TRY) ? 1 : -1;
	unsigned lo = PIN_DIGITS_MIN, hi = SECMEM_PIN_MAX;
	if (ti.ulMinPinLen > lo && ti.ulMinPinLen <= SECMEM_PIN_MAX)
		lo = (unsigned)ti.ulMinPinLen;
	if (ti.ulMaxPinLen >= lo && ti.ulMaxPinLen < hi)
		hi = (unsigned)ti.ulMaxPinLen;
	st->pin_min = lo;
	st->pin_max = hi;
}

static void
detach(struct p11 *p, struct signer_status *st, const char *why)
{
	if (p->have_sess)
		p->f->C_CloseSession(p->sess);
	p->have_sess = p->have_priv = p->have_slot = false;
	st->logged_in = false;
	st->state = SIGNER_NO_TOKEN;
	st->tries_left = -1;
	snprintf(st->reason, sizeof(st->reason), "%s", why);
}

/* Find the private key after login and check the token can do our mechanism. */
static int
find_private(struct p11 *p, struct signer_status *st)
{
	p->have_priv = false;
	if (!find_obj(p, CKO_PRIVATE_KEY, false, &p->priv)) {
		snprintf(st->reason, sizeof(st->reason), "no private key %s%s on the token",
		         p->by_id ? "with id " : "labelled ", p->by_id ? "(configured)" : p->key_label);
		return SIGNER_E_NO_KEY;
	}
	remember_id(p, p->priv);
	read_key_type(p, p->priv, st);
	if (!st->cose_alg)
		return SIGNER_E_BAD_ALG;
	if (!p->pub) {
		/* no public object nor certificate: RSA private keys carry n and e */
		if (st->cose_alg == SIGNER_ALG_PS256)
			rsa_pub_from_obj(p, p->priv);
		read_cert(p, st);
	}
	CK_MECHANISM_TYPE m = st->cose_alg == SIGNER_ALG_ES256 ? CKM_ECDSA : CKM_RSA_PKCS_PSS;
	CK_MECHANISM_INFO mi;
	if (p->f->C_GetMechanismInfo(p->slot, m, &mi) != CKR_OK || !(mi.flags & CKF_SIGN)) {
		snprintf(st->reason, sizeof(st->reason), "the token cannot sign with %s",
		         m == CKM_ECDSA ? "CKM_ECDSA" : "CKM_RSA_PKCS_PSS");
		return SIGNER_E_BAD_ALG;
	}
	p->have_priv = true;
	return 0;
}

/* Find the token, open a session, learn the key and the flags. Sets the
 * state; returns 0 (absence is a state, not an error). */
static int
attach(struct p11 *p, struct signer_status *st)
{
	CK_ULONG n = 0;
	CK_SLOT_ID *slots = NULL;
	CK_RV rv = p->f->C_GetSlotList(CK_TRUE, NULL, &n);
	if (rv == CKR_OK && n > 0 && n < 1024) {
		slots = calloc(n, sizeof(*slots));
		if (!slots)
			return -ENOMEM;
		rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
	}
	bool found = false;
	for (CK_ULONG i = 0; rv == CKR_OK && slots && i < n && !found; i++) {
		CK_TOKEN_INFO ti;
		char label[33];
		if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		trim_label(ti.label, sizeof(ti.label), label, sizeof(label));
		if (p->want_token[0] && strcmp(label, p->want_token))
			continue;
		p->slot = slots[i];
		found = true;
	}
	free(slots);
	if (!found) {
		detach(p, st, "");
		snprintf(st->reason, sizeof(st->reason), "no token%s%.32s%s in %.60s",
		         p->want_token[0] ? " labelled '" : "", p->want_token,
		         p->want_token[0] ? "'" : "", p->module);
		return 0;
	}
	p->have_slot = true;
	rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION, NULL, NULL, &p->sess);
	if (rv != CKR_OK) {
		log_rv("C_OpenSession", rv);
		detach(p, st, "cannot open a session on the token");
		return 0;
	}
	p->have_sess = true;
	st->reason[0] = '\0';
	CK_FLAGS flags;
	read_token_flags(p, st, &flags);

	/* what we can learn before login: the public key and the certificate */
	CK_OBJECT_HANDLE pubobj;
	p->obj_id_len = 0;
	set_pub(p, NULL, 0);
	st->who[0] = st->cert_id[0] = '\0';
	if (find_obj(p, CKO_PUBLIC_KEY, false, &pubobj)) {
		remember_id(p, pubobj);
		read_key_type(p, pubobj, st);
		if (st->cose_alg == SIGNER_ALG_ES256)
			ec_pub_from_obj(p, pubobj);
		else if (st->cose_alg == SIGNER_ALG_PS256)
			rsa_pub_from_obj(p, pubobj);
	}
	read_cert(p, st);

	CK_SESSION_INFO si;
	st->logged_in = p->f->C_GetSessionInfo(p->sess, &si) == CKR_OK &&
	                (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS);
	if (flags & CKF_USER_PIN_LOCKED) {
		st->state = SIGNER_BLOCKED;
		snprintf(st->reason, sizeof(st->reason), "the PIN is blocked; unblock the card first");
	} else if (st->logged_in || !st->needs_pin) {
		int r = find_private(p, st);
		st->state = r == 0 ? SIGNER_READY : SIGNER_ERROR;
		st->logged_in = r == 0;
	} else {
		st->state = SIGNER_LOCKED;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* the backend */

static void p11_close(void *ctx);

static int
p11_open(const struct config *c, void **ctx, struct signer_status *st)
{
	struct p11 *p = calloc(1, sizeof(*p));
	int r = -EINVAL;
	*ctx = NULL;
	if (!p)
		return -ENOMEM;
	snprintf(p->module, sizeof(p->module), "%s", c->signer_module);
	snprintf(p->want_token, sizeof(p->want_token), "%s", c->signer_token);
	if (!strncmp(c->signer_key, "id:", 3)) {
		if (hex_decode(c->signer_key + 3, p->key_id, sizeof(p->key_id), &p->key_id_len) < 0) {
			snprintf(st->reason, sizeof(st->reason), "[signer] key: '%s' is not id:HEX",
			         c->signer_key);
			goto fail;
		}
		p->by_id = true;
	} else {
		snprintf(p->key_label, sizeof(p->key_label), "%s", c->signer_key);
	}
	p->dl = dlopen(p->module, RTLD_NOW | RTLD_LOCAL);
	if (!p->dl) {
		const char *e = dlerror();
		snprintf(st->reason, sizeof(st->reason), "cannot load %.60s: %.80s", p->module, e ? e : "?");
		r = -ENOENT;
		goto fail;
	}
	CK_C_GetFunctionList gfl;
	*(void **)&gfl = dlsym(p->dl, "C_GetFunctionList");
	if (!gfl || gfl(&p->f) != CKR_OK || !p->f) {
		snprintf(st->reason, sizeof(st->reason), "%.120s is not a PKCS#11 module", p->module);
		r = -ENOEXEC;
		goto fail;
	}
	CK_C_INITIALIZE_ARGS ia;
	memset(&ia, 0, sizeof(ia));
	ia.flags = CKF_OS_LOCKING_OK;
	CK_RV rv = p->f->C_Initialize(&ia);
	if (rv == CKR_OK) {
		p->finalize = true;
	} else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		char b[32];
		snprintf(st->reason, sizeof(st->reason), "C_Initialize: %s",
		         signer_p11_rv_name(rv, b, sizeof(b)));
		p->f = NULL;
		r = -EIO;
		goto fail;
	}
	st->pin_min = PIN_DIGITS_MIN;
	st->pin_max = SECMEM_PIN_MAX;
	if ((r = attach(p, st)) < 0)
		goto fail;
	if (st->state == SIGNER_NO_TOKEN)
		log_notice("signer: %s", st->reason);
	*ctx = p;
	return 0;
fail:
	p11_close(p);
	return r;
}

static int
p11_login(void *ctx, const struct secmem_pin *pin, struct signer_status *st)
{
	struct p11 *p = ctx;
	CK_FLAGS flags = 0;
	if (!p->have_sess)
		attach(p, st);
	if (!p->have_sess)
		return SIGNER_E_NO_TOKEN;
	read_token_flags(p, st, &flags);
	if (flags & CKF_USER_PIN_LOCKED) {
		/* never send a PIN to a blocked token */
		st->state = SIGNER_BLOCKED;
		st->tries_left = 0;
		snprintf(st->reason, sizeof(st->reason), "the PIN is blocked; unblock the card first");
		return SIGNER_E_PIN_BLOCKED;
	}
	if (st->logged_in)
		return SIGNER_E_NOT_EXPECTED;
	CK_RV rv;
	if (st->pinpad) {
		if (pin) {
			snprintf(st->reason, sizeof(st->reason),
			         "the reader has a keypad: type the PIN there, not on the computer");
			return SIGNER_E_NOT_EXPECTED;
		}
		rv = p->f->C_Login(p->sess, CKU_USER, NULL, 0);
	} else {
		if (!pin)
			return SIGNER_E_PIN_MALFORMED;
		rv = p->f->C_Login(p->sess, CKU_USER, (CK_UTF8CHAR *)(uintptr_t)secmem_pin_digits(pin),
		                   (CK_ULONG)secmem_pin_len(pin));
	}
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		CK_FLAGS after = 0;
		if (!rv_means_gone(rv))
			read_token_flags(p, st, &after);
		struct signer_p11_outcome o;
		signer_p11_login_outcome(rv, after, &o);
		char b[32];
		log_notice("signer: login refused: %s", signer_p11_rv_name(rv, b, sizeof(b)));
		if (o.result == SIGNER_E_NO_TOKEN) {
			detach(p, st, "the token went away during login");
			return o.result;
		}
		st->state = o.state;
		st->tries_left = o.tries_left;
		st->count_low = o.count_low;
		st->logged_in = false;
		if (o.state == SIGNER_BLOCKED)
			snprintf(st->reason, sizeof(st->reason), "the PIN is blocked; unblock the card first");
		return o.result;
	}
	st->logged_in = true;
	st->reason[0] = '\0';
	read_token_flags(p, st, &flags);
	int r = find_private(p, st);
	if (r < 0) {
		p->f->C_Logout(p->sess);
		st->logged_in = false;
		st->state = SIGNER_ERROR;
		return r;
	}
	st->state = SIGNER_READY;
	return 0;
}

static int
p11_logout(void *ctx, struct signer_status *st)
{
	struct p11 *p = ctx;
	if (!st->needs_pin)
		return 0; /* a token without login: nothing to close */
	if (p->have_sess && st->logged_in) {
		CK_RV rv = p->f->C_Logout(p->sess);
		if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN && !rv_means_gone(rv))
			log_rv("C_Logout", rv);
	}
	p->have_priv = false;
	st->logged_in = false;
	if (st->state == SIGNER_READY)
		st->state = SIGNER_LOCKED;
	return 0;
}

static int
p11_poll(void *ctx, struct signer_status *st)
{
	struct p11 *p = ctx;
	if (p->have_slot) {
		CK_SLOT_INFO si;
		CK_RV rv = p->f->C_GetSlotInfo(p->slot, &si);
		if (rv != CKR_OK || !(si.flags & CKF_TOKEN_PRESENT)) {
			bool was = st->logged_in;
			detach(p, st, "the token was removed");
			if (was)
				log_notice("signer: token removed; logged out");
		}
	}
	if (p->have_sess) {
		CK_SESSION_INFO s;
		CK_RV rv = p->f->C_GetSessionInfo(p->sess, &s);
		if (rv != CKR_OK) {
			if (rv_means_gone(rv)) {
				detach(p, st, "the token was removed or reset");
			} else {
				log_rv("C_GetSessionInfo", rv);
			}
		} else if (st->logged_in && st->needs_pin && s.state != CKS_RO_USER_FUNCTIONS &&
		           s.state != CKS_RW_USER_FUNCTIONS) {
			/* the card was reset under us: the login is gone */
			st->logged_in = false;
			p->have_priv = false;
			st->state = SIGNER_LOCKED;
			log_notice("signer: the token forgot the login (card reset?)");
		}
	}
	if (!p->have_sess)
		attach(p, st);
	return 0;
}

static int
p11_sign(void *ctx, struct signer_status *st, int alg, const uint8_t *tbs, size_t len,
         uint8_t *sig, size_t *siglen)
{
	struct p11 *p = ctx;
	size_t cap = *siglen;
	*siglen = 0;
	if (!p->have_sess)
		return SIGNER_E_NO_TOKEN;
	if (!st->logged_in || !p->have_priv)
		return SIGNER_E_LOGIN_NEEDED;
	if (alg != st->cose_alg)
		return SIGNER_E_BAD_ALG;
	unsigned char digest[32];
	unsigned int dl = 0;
	if (EVP_Digest(tbs, len, digest, &dl, EVP_sha256(), NULL) != 1 || dl != 32)
		return -EIO;
	CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	if (alg == SIGNER_ALG_PS256) {
		mech.mechanism = CKM_RSA_PKCS_PSS;
		mech.pParameter = &pss;
		mech.ulParameterLen = sizeof(pss);
	}
	CK_RV rv = p->f->C_SignInit(p->sess, &mech, p->priv);
	CK_ULONG out = (CK_ULONG)cap;
	if (rv == CKR_OK)
		rv = p->f->C_Sign(p->sess, digest, 32, sig, &out);
	if (rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_KEY_HANDLE_INVALID ||
	    rv == CKR_OBJECT_HANDLE_INVALID) {
		st->logged_in = false;
		p->have_priv = false;
		st->state = SIGNER_LOCKED;
		return SIGNER_E_LOGIN_NEEDED;
	}
	if (rv_means_gone(rv)) {
		detach(p, st, "the token was removed");
		return SIGNER_E_NO_TOKEN;
	}
	if (rv != CKR_OK) {
		log_rv("C_Sign", rv);
		return -EIO;
	}
	if ((alg == SIGNER_ALG_ES256 && out != 64) || out > cap)
		return -EIO;
	*siglen = (size_t)out;
	return 0;
}

static int
p11_public_key(void *ctx, uint8_t **der, size_t *len)
{
	struct p11 *p = ctx;
	*der = NULL;
	*len = 0;
	if (!p->pub)
		return -ENOENT;
	*der = malloc(p->pub_len);
	if (!*der)
		return -ENOMEM;
	memcpy(*der, p->pub, p->pub_len);
	*len = p->pub_len;
	return 0;
}

/* The key's certificate and its issuers: every certificate object on the
 * token (those with the key's CKA_ID first), the leaf chosen by public key
 * (the most recent when a renewal left several), then its intermediates. */
#define P11_CERTS_MAX 16
static int
p11_certificate(void *ctx, struct signer_chain *out)
{
	struct p11 *p = ctx;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof(cls) },
		              { CKA_ID, p->obj_id, p->obj_id_len } };
	CK_OBJECT_HANDLE h[P11_CERTS_MAX], mine[P11_CERTS_MAX];
	CK_ULONG nh = 0, nm = 0;
	uint8_t *der[P11_CERTS_MAX];
	size_t len[P11_CERTS_MAX], n = 0;
	if (!p->have_sess)
		return SIGNER_E_NO_TOKEN;
	if (p->obj_id_len && p->f->C_FindObjectsInit(p->sess, t, 2) == CKR_OK) {
		if (p->f->C_FindObjects(p->sess, mine, P11_CERTS_MAX, &nm) != CKR_OK)
			nm = 0;
		p->f->C_FindObjectsFinal(p->sess);
	}
	CK_RV rv = p->f->C_FindObjectsInit(p->sess, t, 1);
	if (rv != CKR_OK)
		return rv_means_gone(rv) ? SIGNER_E_NO_TOKEN : -EIO;
	if (p->f->C_FindObjects(p->sess, h, P11_CERTS_MAX, &nh) != CKR_OK)
		nh = 0;
	p->f->C_FindObjectsFinal(p->sess);
	for (int pass = 0; pass < 2; pass++) {
		for (CK_ULONG i = 0; i < (pass ? nh : nm) && n < P11_CERTS_MAX; i++) {
			CK_OBJECT_HANDLE o = pass ? h[i] : mine[i];
			bool dup = false;
			for (CK_ULONG j = 0; pass && j < nm; j++)
				dup |= mine[j] == o;
			if (dup || get_attr(p, o, CKA_VALUE, &der[n], &len[n]) != CKR_OK)
				continue;
			n++;
		}
	}
	if (n == 0)
		return -ENOENT;
	return signer_chain_build(der, len, n, p->pub, p->pub_len, out);
}

static void
p11_close(void *ctx)
{
	struct p11 *p = ctx;
	if (!p)
		return;
	if (p->f) {
		if (p->have_sess)
			p->f->C_CloseSession(p->sess);
		if (p->finalize)
			p->f->C_Finalize(NULL);
	}
	if (p->dl)
		dlclose(p->dl);
	free(p->pub);
	free(p);
}

const struct signer_ops signer_pkcs11_ops = {
	.name = "pkcs11",
	.compiled_in = true,
	.open = p11_open,
	.login = p11_login,
	.logout = p11_logout,
	.poll = p11_poll,
	.sign = p11_sign,
	.public_key = p11_public_key,
	.close = p11_close,
	.certificate = p11_certificate,
};
