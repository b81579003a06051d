/* The signer backend table and what every backend shares: the "none"
 * backend, state and algorithm names, signature verification. See
 * drivers/signer.h.
 */
#include "drivers/signer.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "protocol/cose.h"

/* ------------------------------------------------------------------ */
/* the backend table (STYLE: backends chosen by name from a const table) */

static int
none_open(const struct config *c, void **ctx, struct signer_status *st)
{
	*ctx = NULL;
	st->state = SIGNER_DISABLED;
	snprintf(st->reason, sizeof(st->reason), "no signer configured ([signer] backend = none)");
	return 0;
}

static int
none_login(void *ctx, const struct secmem_pin *pin, struct signer_status *st)
{
	return SIGNER_E_NOT_EXPECTED;
}

static int
none_logout(void *ctx, struct signer_status *st)
{
	return 0;
}

static int
none_sign(void *ctx, struct signer_status *st, int alg, const uint8_t *tbs, size_t len,
          uint8_t *sig, size_t *siglen)
{
	*siglen = 0;
	return SIGNER_E_NO_TOKEN;
}

static int
none_public_key(void *ctx, uint8_t **der, size_t *len)
{
	*der = NULL;
	*len = 0;
	return -ENOENT;
}

static void
none_close(void *ctx)
{
}

const struct signer_ops signer_none_ops = {
	.name = "none",
	.compiled_in = true,
	.open = none_open,
	.login = none_login,
	.logout = none_logout,
	.poll = NULL,
	.sign = none_sign,
	.public_key = none_public_key,
	.close = none_close,
};

static const struct signer_ops *const backends[] = {
	&signer_pkcs11_ops,
	&signer_file_ops,
	&signer_none_ops,
};

const struct signer_ops *
signer_backend_find(const char *name)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (name && !strcmp(backends[i]->name, name))
			return backends[i];
	return NULL;
}

const char *
signer_state_name(enum signer_state st)
{
	switch (st) {
	case SIGNER_DISABLED: return "disabled";
	case SIGNER_STARTING: return "starting";
	case SIGNER_NO_TOKEN: return "no-token";
	case SIGNER_LOCKED: return "locked";
	case SIGNER_READY: return "ready";
	case SIGNER_BLOCKED: return "blocked";
	case SIGNER_ERROR: return "error";
	}
	return "error";
}

const char *
signer_alg_name(int cose_alg)
{
	switch (cose_alg) {
	case SIGNER_ALG_ES256: return "ES256";
	case SIGNER_ALG_PS256: return "PS256";
	default: return NULL;
	}
}

/* ------------------------------------------------------------------ */
/* verification and format helpers */

int
signer_verify(int cose_alg, const uint8_t *spki, size_t spki_len, const uint8_t *tbs,
              size_t len, const uint8_t *sig, size_t siglen)
{
	const unsigned char *p = spki;
	EVP_PKEY *pk = spki ? d2i_PUBKEY(NULL, &p, (long)spki_len) : NULL;
	if (!pk)
		return -EINVAL;
	int r = cose_verify_raw(cose_alg, pk, tbs, len, sig, siglen);
	EVP_PKEY_free(pk);
	if (r == -EKEYREJECTED || r == -EPROTO)
		return -EBADMSG;
	if (r == -ENOTSUP)
		return SIGNER_E_BAD_ALG;
	return r;
}
