/* Certificate chains as the signer backends read them (drivers/signer.h:
 * struct signer_chain): the leaf chosen by its public key, then its
 * issuers. OpenSSL only; no backend state.
 */
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/signer.h"

void
signer_chain_clear(struct signer_chain *c)
{
	for (size_t i = 0; i < c->n && i < SIGNER_CHAIN_MAX; i++)
		free(c->der[i]);
	memset(c, 0, sizeof(*c));
}

bool
signer_chain_equal(const struct signer_chain *a, const struct signer_chain *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->len[i] != b->len[i] || memcmp(a->der[i], b->der[i], a->len[i]))
			return false;
	return true;
}

int
signer_chain_copy(struct signer_chain *dst, const struct signer_chain *src)
{
	memset(dst, 0, sizeof(*dst));
	for (size_t i = 0; i < src->n && i < SIGNER_CHAIN_MAX; i++) {
		dst->der[i] = malloc(src->len[i] ? src->len[i] : 1);
		if (!dst->der[i]) {
			signer_chain_clear(dst);
			return -ENOMEM;
		}
		memcpy(dst->der[i], src->der[i], src->len[i]);
		dst->len[i] = src->len[i];
		dst->n = i + 1;
	}
	return 0;
}

static bool
x509_matches_pub(X509 *x, const uint8_t *pub, size_t pub_len)
{
	unsigned char *d = NULL;
	int l = i2d_PUBKEY(X509_get0_pubkey(x), &d);
	bool ok = l > 0 && (size_t)l == pub_len && !memcmp(d, pub, pub_len);
	OPENSSL_free(d);
	return ok;
}

static bool
x509_issued(X509 *issuer, X509 *subject)
{
	if (X509_NAME_cmp(X509_get_subject_name(issuer), X509_get_issuer_name(subject)))
		return false;
	EVP_PKEY *k = X509_get0_pubkey(issuer);
	return k && X509_verify(subject, k) == 1;
}

int
signer_chain_build(uint8_t **der, const size_t *len, size_t n, const uint8_t *pub,
                   size_t pub_len, struct signer_chain *out)
{
	X509 *x[SIGNER_CHAIN_MAX * 2] = { 0 };
	size_t m = 0;
	int r = -ENOENT;
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n; i++) {
		const unsigned char *q = der[i];
		if (m < sizeof(x) / sizeof(x[0]) && der[i])
			x[m] = d2i_X509(NULL, &q, (long)len[i]);
		if (x[m])
			m++;
		free(der[i]);
		der[i] = NULL;
	}
	/* the leaf: the key's own, the most recent if several */
	int leaf = -1;
	for (size_t i = 0; i < m; i++) {
		if (pub && !x509_matches_pub(x[i], pub, pub_len))
			continue;
		if (!pub && leaf >= 0)
			break;
		if (leaf < 0 || ASN1_TIME_compare(X509_get0_notBefore(x[i]),
		                                  X509_get0_notBefore(x[leaf])) > 0)
			leaf = (int)i;
	}
	if (leaf < 0)
		goto out;
	bool used[SIGNER_CHAIN_MAX * 2] = { false };
	X509 *cur = x[leaf];
	used[leaf] = true;
	while (cur && out->n < SIGNER_CHAIN_MAX) {
		unsigned char *d = NULL;
		int l = i2d_X509(cur, &d);
		if (l <= 0) {
			r = -ENOMEM;
			goto out;
		}
		out->der[out->n] = malloc((size_t)l);
		if (!out->der[out->n]) {
			OPENSSL_free(d);
			r = -ENOMEM;
			goto out;
		}
		memcpy(out->der[out->n], d, (size_t)l);
		out->len[out->n++] = (size_t)l;
		OPENSSL_free(d);
		X509 *next = NULL;
		for (size_t i = 0; i < m && !next; i++) {
			if (used[i] || !x509_issued(x[i], cur))
				continue;
			used[i] = true;
			/* a self-signed root is the verifier's trust anchor, not sent */
			if (!x509_issued(x[i], x[i]))
				next = x[i];
		}
		cur = next;
	}
	r = 0;
out:
	if (r < 0)
		signer_chain_clear(out);
	for (size_t i = 0; i < m; i++)
		X509_free(x[i]);
	return r;
}
