/* The digital carte Vitale by QR code (docs/digital-card.md part 2):
 * base45, the bounded inflate, the container and the presentation, checked
 * in the order of §Q.11.
 *
 * The credential is checked by credential_verify() exactly as over NFC;
 * the presentation is the QR counterpart of the device answer (§9), with a
 * phone nonce, an optional challenge and "use": "qr" so that neither can
 * stand for the other.
 */
#include "protocol/qr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zlib.h>

#include "protocol/cbor.h"
#include "protocol/cose.h"

static const char B45[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

static int
b45_value(char c)
{
	const char *p = c ? strchr(B45, c) : NULL;
	return p ? (int)(p - B45) : -1;
}

int
base45_decode(const char *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen)
{
	size_t o = 0;

	*outlen = 0;
	if (len % 3 == 1)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 3) {
		int c = b45_value(in[i]), d = b45_value(in[i + 1]);
		if (c < 0 || d < 0)
			return -EINVAL;
		if (i + 2 < len) {
			int e = b45_value(in[i + 2]);
			if (e < 0)
				return -EINVAL;
			unsigned n = (unsigned)c + (unsigned)d * 45u + (unsigned)e * 2025u;
			if (n > 0xFFFFu)
				return -EINVAL;
			if (outmax - o < 2)
				return -ENOSPC;
			out[o++] = (uint8_t)(n >> 8);
			out[o++] = (uint8_t)n;
		} else {
			unsigned n = (unsigned)c + (unsigned)d * 45u;
			if (n > 0xFFu)
				return -EINVAL;
			if (outmax - o < 1)
				return -ENOSPC;
			out[o++] = (uint8_t)n;
		}
	}
	*outlen = o;
	return 0;
}

int
base45_encode(const uint8_t *in, size_t len, char *out, size_t outmax)
{
	size_t o = 0;

	if (outmax < (len / 2) * 3 + (len % 2) * 2 + 1)
		return -ENOSPC;
	for (size_t i = 0; i < len; i += 2) {
		if (i + 1 < len) {
			unsigned n = (unsigned)in[i] << 8 | in[i + 1];
			out[o++] = B45[n % 45];
			out[o++] = B45[(n / 45) % 45];
			out[o++] = B45[n / 2025];
		} else {
			out[o++] = B45[in[i] % 45];
			out[o++] = B45[in[i] / 45];
		}
	}
	out[o] = '\0';
	return 0;
}

int
qr_inflate(const uint8_t *in, size_t len, uint8_t *out, size_t outmax, size_t *outlen)
{
	z_stream z;
	int zr, rc;

	*outlen = 0;
	memset(&z, 0, sizeof(z));
	if (len > UINT32_MAX || outmax > UINT32_MAX)
		return -E2BIG;
	if (inflateInit(&z) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)outmax;
	zr = inflate(&z, Z_FINISH);
	if (zr == Z_STREAM_END)
		rc = z.avail_in == 0 ? 0 : -EBADMSG; /* bytes after the stream */
	else if (zr == Z_MEM_ERROR)
		rc = -ENOMEM;
	else if ((zr == Z_BUF_ERROR || zr == Z_OK) && z.avail_out == 0)
		rc = -E2BIG; /* the output would not fit */
	else
		rc = -EBADMSG; /* corrupt or truncated */
	*outlen = rc == 0 ? z.total_out : 0;
	inflateEnd(&z);
	return rc;
}

static int
refuse(enum credential_reason *reason, enum credential_reason r)
{
	*reason = r;
	return -EACCES;
}

static const struct cbor_limits box_limits = { QR_CBOR_MAX, 64, CREDENTIAL_DEPTH_MAX };
static const struct cbor_limits pres_limits = { CREDENTIAL_ANSWER_MAX, CREDENTIAL_ANSWER_MAX,
	                                        CREDENTIAL_DEPTH_MAX };

/* §Q.2: "VQ" digits ":" */
static int
check_prefix(const char *text, size_t len, size_t *skip, enum credential_reason *reason)
{
	size_t i = 2;
	unsigned long v = 0;

	if (len < 4 || text[0] != 'V' || text[1] != 'Q')
		return refuse(reason, CREDENTIAL_R_QR_UNREADABLE);
	while (i < len && i < 6 && text[i] >= '0' && text[i] <= '9')
		v = v * 10 + (unsigned long)(text[i++] - '0');
	if (i == 2 || i >= len || text[i] != ':')
		return refuse(reason, CREDENTIAL_R_QR_UNREADABLE);
	if (v != 1 || i != 3)
		return refuse(reason, CREDENTIAL_R_BAD_VERSION);
	*skip = i + 1;
	return 0;
}

/* §Q.5: {"v": 1, "cred": bstr, "pres": bstr} */
static int
check_box(const uint8_t *buf, size_t len, const uint8_t **cred, size_t *credlen,
          const uint8_t **pres, size_t *preslen, enum credential_reason *reason)
{
	struct cbor_doc doc = { 0 };
	const struct cbor_item *m, *c, *p;
	uint64_t v;
	int rc = cbor_decode(buf, len, &box_limits, CREDENTIAL_CBOR_FLAGS, &doc);

	if (rc == -ENOMEM) {
		*reason = CREDENTIAL_R_INTERNAL_ERROR;
		return rc;
	}
	m = cbor_root(&doc);
	if (rc || !m || m->type != CBOR_MAP) {
		rc = refuse(reason, CREDENTIAL_R_CBOR_MALFORMED);
		goto out;
	}
	if (cbor_get_uint(cbor_map_get_text(&doc, m, "v"), &v)) {
		rc = refuse(reason, CREDENTIAL_R_PAYLOAD_INVALID);
		goto out;
	}
	if (v != 1) {
		rc = refuse(reason, CREDENTIAL_R_BAD_VERSION);
		goto out;
	}
	c = cbor_map_get_text(&doc, m, "cred");
	p = cbor_map_get_text(&doc, m, "pres");
	/* exactly the three keys: the container is not signed, so nothing in
	 * it may pass unnoticed */
	if (m->count != 3 || !c || c->type != CBOR_BYTES || !p || p->type != CBOR_BYTES ||
	    c->len == 0 || p->len == 0) {
		rc = refuse(reason, CREDENTIAL_R_PAYLOAD_INVALID);
		goto out;
	}
	if (c->len > CREDENTIAL_MAX || p->len > CREDENTIAL_ANSWER_MAX) {
		rc = refuse(reason, CREDENTIAL_R_ANSWER_TOO_LARGE);
		goto out;
	}
	*cred = c->ptr;
	*credlen = c->len;
	*pres = p->ptr;
	*preslen = p->len;
	rc = 0;
out:
	cbor_doc_free(&doc);
	return rc;
}

int
qr_unpack(const char *text, size_t len, uint8_t **buf, const uint8_t **cred, size_t *credlen,
          const uint8_t **pres, size_t *preslen, enum credential_reason *reason)
{
	uint8_t *def = NULL;
	size_t skip = 0, dlen = 0, blen = 0;
	int rc;

	*buf = NULL;
	*reason = CREDENTIAL_R_OK;
	/* Q.1 */
	if (!text || len == 0 || len > QR_TEXT_MAX)
		return refuse(reason, CREDENTIAL_R_QR_UNREADABLE);
	/* Q.2 */
	if ((rc = check_prefix(text, len, &skip, reason)))
		return rc;
	/* Q.3 */
	def = malloc(QR_DEFLATED_MAX);
	*buf = malloc(QR_CBOR_MAX);
	if (!def || !*buf) {
		rc = -ENOMEM;
		*reason = CREDENTIAL_R_INTERNAL_ERROR;
		goto out;
	}
	if (base45_decode(text + skip, len - skip, def, QR_DEFLATED_MAX, &dlen) < 0) {
		rc = refuse(reason, CREDENTIAL_R_QR_UNREADABLE);
		goto out;
	}
	/* Q.4 */
	rc = qr_inflate(def, dlen, *buf, QR_CBOR_MAX, &blen);
	if (rc == -ENOMEM) {
		*reason = CREDENTIAL_R_INTERNAL_ERROR;
		goto out;
	}
	if (rc) {
		rc = refuse(reason, CREDENTIAL_R_QR_UNREADABLE);
		goto out;
	}
	/* Q.5 */
	rc = check_box(*buf, blen, cred, credlen, pres, preslen, reason);
out:
	free(def);
	if (rc) {
		free(*buf);
		*buf = NULL;
	}
	return rc;
}

/* The presentation's payload fields (§Q.6). */
struct pres {
	const struct cbor_item *n, *cid, *use, *uvm, *c;
	bool uv;
	int64_t ts;
};

static bool
get_ts(const struct cbor_item *it, int64_t *out)
{
	uint64_t u;
	if (cbor_get_uint(it, &u) || u > (uint64_t)INT64_MAX / 4)
		return false;
	*out = (int64_t)u;
	return true;
}

static bool
challenge_ok(const struct cbor_item *c)
{
	if (c->type != CBOR_TEXT || c->len < QR_CHALLENGE_MIN || c->len > QR_CHALLENGE_MAX)
		return false;
	for (size_t i = 0; i < c->len; i++)
		if (c->ptr[i] < 0x21 || c->ptr[i] > 0x7E)
			return false;
	return true;
}

/* Q.7 P.1-P.4: shape, device signature, payload, cid, uv. */
static int
check_presentation(const struct credential *cred, const uint8_t *buf, size_t len,
                   struct qr_result *out, char *chal, enum credential_reason *reason)
{
	struct cose_sign1 m;
	struct cbor_doc doc = { 0 };
	const struct cbor_item *p;
	struct pres f;
	int rc = cose_sign1_parse(buf, len, &pres_limits, COSE_TAG_REQUIRED | COSE_NARROW, &m);

	if (rc == -ENOMEM) {
		*reason = CREDENTIAL_R_INTERNAL_ERROR;
		goto out;
	}
	if (rc == -EPROTO) {
		rc = refuse(reason, CREDENTIAL_R_COSE_MALFORMED);
		goto out;
	}
	if (rc) {
		rc = refuse(reason, CREDENTIAL_R_CBOR_MALFORMED);
		goto out;
	}
	if (!m.alg_present || m.protected_count != 1 || m.unprotected_count != 0 ||
	    m.signature.len != COSE_ES256_SIG_LEN) {
		rc = refuse(reason, CREDENTIAL_R_COSE_MALFORMED);
		goto out;
	}
	if (!m.has_alg || m.alg != COSE_ALG_ES256) {
		rc = refuse(reason, CREDENTIAL_R_ALG_UNSUPPORTED);
		goto out;
	}
	rc = cose_sign1_verify(&m, cred->dk);
	if (rc == -ENOMEM || rc == -EIO) {
		*reason = CREDENTIAL_R_INTERNAL_ERROR;
		goto out;
	} else if (rc) {
		rc = refuse(reason, CREDENTIAL_R_DEVICE_SIGNATURE);
		goto out;
	}
	rc = cbor_decode(m.payload.ptr, m.payload.len, &pres_limits, CREDENTIAL_CBOR_FLAGS, &doc);
	p = cbor_root(&doc);
	if (rc || !p || p->type != CBOR_MAP) {
		if (rc == -ENOMEM) {
			*reason = CREDENTIAL_R_INTERNAL_ERROR;
			goto out;
		}
		rc = refuse(reason, CREDENTIAL_R_CBOR_MALFORMED);
		goto out;
	}
	memset(&f, 0, sizeof(f));
	f.n = cbor_map_get_text(&doc, p, "n");
	f.cid = cbor_map_get_text(&doc, p, "cid");
	f.use = cbor_map_get_text(&doc, p, "use");
	f.uvm = cbor_map_get_text(&doc, p, "uvm");
	f.c = cbor_map_get_text(&doc, p, "c");
	if (!f.n || f.n->type != CBOR_BYTES || f.n->len != QR_PRES_NONCE_LEN || !f.cid ||
	    f.cid->type != CBOR_BYTES || f.cid->len != CREDENTIAL_CID_LEN ||
	    cbor_get_bool(cbor_map_get_text(&doc, p, "uv"), &f.uv) || !f.uvm ||
	    f.uvm->type != CBOR_TEXT || !get_ts(cbor_map_get_text(&doc, p, "ts"), &f.ts) ||
	    !f.use || !cbor_text_eq(f.use, "qr") || (f.c && !challenge_ok(f.c))) {
		rc = refuse(reason, CREDENTIAL_R_PAYLOAD_INVALID);
		goto out;
	}
	if (memcmp(f.cid->ptr, cred->cid, CREDENTIAL_CID_LEN) != 0) {
		rc = refuse(reason, CREDENTIAL_R_CID_MISMATCH);
		goto out;
	}
	if (!f.uv || !cbor_text_eq(f.uvm, "pin")) {
		rc = refuse(reason, CREDENTIAL_R_UV_FALSE);
		goto out;
	}
	chal[0] = '\0';
	if (f.c) {
		memcpy(chal, f.c->ptr, f.c->len);
		chal[f.c->len] = '\0';
	}
	out->ts = f.ts;
	if (EVP_Digest(m.payload.ptr, m.payload.len, out->hash, NULL, EVP_sha256(), NULL) != 1) {
		rc = -EIO;
		*reason = CREDENTIAL_R_INTERNAL_ERROR;
		goto out;
	}
	rc = 0;
out:
	cbor_doc_free(&doc);
	cose_sign1_free(&m);
	return rc;
}

static uint8_t *
dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *d = malloc(n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

/* Q.7 F.1-F.3 */
static int
check_fresh(const struct qr_policy *pol, struct qr_result *out, enum credential_reason *reason)
{
	enum credential_reason r;

	if (!out->challenge[0]) {
		int64_t d = pol->cred.now - out->ts;
		if (!pol->one_way)
			return refuse(reason, CREDENTIAL_R_CHALLENGE_REQUIRED);
		if (d > pol->window_s || d < -pol->window_s)
			return refuse(reason, CREDENTIAL_R_PRESENTATION_EXPIRED);
	}
	if (pol->claim)
		r = pol->claim(pol->claim_ctx, out->hash, out->challenge[0] ? out->challenge : NULL,
		               out->ts);
	else
		r = out->challenge[0] ? CREDENTIAL_R_CHALLENGE_MISMATCH : CREDENTIAL_R_OK;
	if (r != CREDENTIAL_R_OK)
		return refuse(reason, r);
	return 0;
}

int
qr_verify(const char *text, size_t len, const struct qr_policy *pol, struct qr_result *out)
{
	uint8_t *buf = NULL;
	const uint8_t *cred = NULL, *pres = NULL;
	size_t credlen = 0, preslen = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	out->text_len = len;
	if (!pol || pol->window_s < 0 || pol->window_s > 86400) {
		out->reason = CREDENTIAL_R_INTERNAL_ERROR;
		return -EINVAL;
	}
	rc = qr_unpack(text, len, &buf, &cred, &credlen, &pres, &preslen, &out->reason);
	if (rc)
		goto out;
	/* Q.8: §11 C.2-C.11, the credential exactly as over NFC */
	rc = credential_verify(cred, credlen, &pol->cred, &out->cred, &out->reason);
	if (rc)
		goto out;
	/* Q.9 */
	rc = check_presentation(&out->cred, pres, preslen, out, out->challenge, &out->reason);
	if (rc)
		goto out;
	/* Q.10 */
	rc = check_fresh(pol, out, &out->reason);
	if (rc)
		goto out;
	out->credential_bytes = dup_bytes(cred, credlen);
	out->presentation_bytes = dup_bytes(pres, preslen);
	if (!out->credential_bytes || !out->presentation_bytes) {
		out->reason = CREDENTIAL_R_INTERNAL_ERROR;
		rc = -ENOMEM;
		goto out;
	}
	out->credential_len = credlen;
	out->presentation_len = preslen;
	out->cbor_len = credlen + preslen;
	out->reason = CREDENTIAL_R_OK;
out:
	if (buf) {
		explicit_bzero(buf, QR_CBOR_MAX);
		free(buf);
	}
	if (rc) {
		struct qr_result keep = { .reason = out->reason, .text_len = out->text_len };
		qr_result_clear(out);
		*out = keep;
		if (out->reason == CREDENTIAL_R_OK)
			out->reason = CREDENTIAL_R_INTERNAL_ERROR;
	}
	return rc;
}

void
qr_result_clear(struct qr_result *r)
{
	if (!r)
		return;
	credential_clear(&r->cred);
	if (r->credential_bytes) {
		explicit_bzero(r->credential_bytes, r->credential_len);
		free(r->credential_bytes);
	}
	if (r->presentation_bytes) {
		explicit_bzero(r->presentation_bytes, r->presentation_len);
		free(r->presentation_bytes);
	}
	explicit_bzero(r, sizeof(*r));
}

int
qr_challenge_new(char *out, size_t outlen)
{
	uint8_t b[8];
	uint64_t v = 0;

	if (outlen < 7)
		return -EINVAL;
	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	for (size_t i = 0; i < sizeof(b); i++)
		v = v << 8 | b[i];
	/* 2^64 mod 10^6 bias: under 2e-13, immaterial */
	v %= 1000000u;
	for (int i = 5; i >= 0; i--) {
		out[i] = (char)('0' + v % 10);
		v /= 10;
	}
	out[6] = '\0';
	return 0;
}
