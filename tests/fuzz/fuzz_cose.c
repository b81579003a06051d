/* libFuzzer target for protocol/cose.c: COSE_Sign1 parsing with every flag
 * combination, Sig_structure building, ES256/PS256 verification against
 * fixed keys (nothing random may verify), and COSE_Key decoding of the
 * payload when it is a map. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "protocol/cbor.h"
#include "protocol/cose.h"

static EVP_PKEY *ec_key, *rsa_key;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ec_key = EVP_EC_gen("P-256");
	rsa_key = EVP_RSA_gen(2048);
	if (!ec_key || !rsa_key)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned flags[] = { 0, COSE_TAG_REQUIRED, COSE_UNTAGGED,
		                          COSE_TAG_REQUIRED | COSE_NARROW };
	struct cose_sign1 m;

	for (size_t f = 0; f < 4; f++) {
		struct cbor_limits lim = { 65536, 4096, 8 };
		int rc = cose_sign1_parse(data, size, &lim, flags[f], &m);

		if (rc == 0) {
			uint8_t *tbs;
			size_t tbslen;

			if (m.x5chain_n > COSE_X5CHAIN_MAX || (m.x5chain_invalid && m.x5chain_n))
				abort();
			if ((m.has_alg && !m.alg_present) || (m.label_conflict && !(flags[f] & COSE_NARROW)))
				abort();
			if (cose_sig_structure(m.protected_hdr.ptr, m.protected_hdr.len, NULL, 0,
			                       m.payload.ptr, m.payload.len, &tbs, &tbslen) != 0)
				abort();
			free(tbs);
			/* random keys: a fuzzed message must never verify */
			if (cose_sign1_verify(&m, ec_key) == 0 || cose_sign1_verify(&m, rsa_key) == 0)
				abort();
			if (f == 0) {
				struct cbor_doc d;
				if (cbor_decode(m.payload.ptr, m.payload.len, &lim, CBOR_STRICT, &d) == 0) {
					EVP_PKEY *k = NULL;
					if (cose_key_to_evp(&d, cbor_root(&d), &k) == 0 && !cose_key_is_p256(k))
						abort();
					EVP_PKEY_free(k);
					cbor_doc_free(&d);
				}
			}
		}
		cose_sign1_free(&m);
	}
	/* the raw signature converters */
	if (size >= 1) {
		uint8_t raw[64];
		(void)cose_ecdsa_der_to_raw(data, size, 32, raw);
	}
	if (size == 64) {
		uint8_t *der;
		size_t dl;
		if (cose_ecdsa_raw_to_der(data, size, &der, &dl) == 0)
			free(der);
	}
	return 0;
}
