/* libFuzzer target for protocol/credential.c and protocol/digital.c.
 *
 * The first byte picks what the rest is:
 *   0  a GET CREDENTIAL answer, verified against the test CA
 *      (tests/data/digital/ca.pem when run from the source root) at the
 *      vectors' instant (the seeds hold genuine ones);
 *   1  a credential payload alone (§11 C.7-C.11);
 *   2  a device answer, verified against a credential made at start-up;
 *   3  the payload of a device answer, signed here with that credential's
 *      device key so that every check after the signature is reached;
 *   4  a SELECT answer (§11 S);
 *   5  a transcript of phone answers (each: one length byte, then the
 *      bytes) replayed to the whole terminal flow, with a simulated clock.
 * Nothing random may be accepted where a signature is involved. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>

#include "protocol/cbor.h"
#include "protocol/cose.h"
#include "protocol/credential.h"
#include "protocol/digital.h"

#define NOW 1767225600

static struct credential_anchors *anchors;
static struct credential cred;
static EVP_PKEY *dk;
static const uint8_t CID[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
static const uint8_t NONCE[32] = { 7 };

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct cbor_enc e;
	const uint8_t *pl;
	size_t plen;
	enum credential_reason r;
	FILE *f;
	char pem[8192];
	size_t n = 0;

	(void)argc;
	(void)argv;
	if (credential_anchors_new(&anchors))
		abort();
	f = fopen("tests/data/digital/ca.pem", "rb");
	if (f) {
		n = fread(pem, 1, sizeof(pem), f);
		fclose(f);
	}
	if (!n || credential_anchors_add_pem(anchors, pem, n))
		fprintf(stderr, "fuzz_credential: no test CA (run from the source root)\n");

	dk = EVP_EC_gen("P-256");
	cbor_enc_init(&e, 8192);
	cbor_enc_map_begin(&e);
	cbor_enc_textz(&e, "v");
	cbor_enc_uint(&e, 1);
	cbor_enc_textz(&e, "cid");
	cbor_enc_bytes(&e, CID, 16);
	cbor_enc_textz(&e, "nir");
	cbor_enc_textz(&e, "184127510001210");
	cbor_enc_textz(&e, "surname");
	cbor_enc_textz(&e, "FUZZ");
	cbor_enc_textz(&e, "given_name");
	cbor_enc_textz(&e, "Test");
	cbor_enc_textz(&e, "birth_date");
	cbor_enc_textz(&e, "1984-12-03");
	cbor_enc_textz(&e, "regime");
	cbor_enc_textz(&e, "01");
	cbor_enc_textz(&e, "caisse");
	cbor_enc_textz(&e, "751");
	cbor_enc_textz(&e, "centre");
	cbor_enc_textz(&e, "0042");
	cbor_enc_textz(&e, "rights");
	cbor_enc_array_begin(&e);
	cbor_enc_array_end(&e);
	cbor_enc_textz(&e, "beneficiaries");
	cbor_enc_array_begin(&e);
	cbor_enc_array_end(&e);
	cbor_enc_textz(&e, "nbf");
	cbor_enc_uint(&e, 1);
	cbor_enc_textz(&e, "exp");
	cbor_enc_uint(&e, 4000000000u);
	cbor_enc_textz(&e, "dk");
	cose_key_from_evp(dk, &e);
	cbor_enc_map_end(&e);
	if (cbor_enc_finish(&e, &pl, &plen) || credential_parse_payload(pl, plen, NULL, &cred, &r))
		abort();
	cbor_enc_free(&e);
	return 0;
}

struct transcript {
	const uint8_t *p;
	size_t left;
	int64_t ms;
};

static int
t_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct transcript *t = ctx;
	size_t n;

	(void)c;
	(void)clen;
	if (t->left == 0)
		return -ENODEV;
	n = t->p[0];
	t->p++;
	t->left--;
	if (n > t->left)
		n = t->left;
	if (n > *rlen)
		n = *rlen;
	memcpy(r, t->p, n);
	t->p += n;
	t->left -= n;
	*rlen = n;
	t->ms += 1;
	return 0;
}

static int64_t
t_clock(void *ctx)
{
	return ((struct transcript *)ctx)->ms;
}

static int64_t
t_wall(void *ctx)
{
	(void)ctx;
	return NOW;
}

static int
t_sleep(void *ctx, unsigned ms)
{
	((struct transcript *)ctx)->ms += ms;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct credential_policy pol = { .anchors = anchors, .now = NOW, .skew_s = 300 };
	struct credential c;
	struct credential_answer ans;
	enum credential_reason r;
	int rc;

	if (size < 1)
		return 0;
	switch (data[0] % 6) {
	case 0:
		/* Only the seed's genuine credentials (issuer-signed) pass. */
		rc = credential_verify(data + 1, size - 1, &pol, &c, &r);
		if ((rc == 0) != (r == CREDENTIAL_R_OK) || (rc == 0 && (!c.dk || strlen(c.nir) != 15)))
			abort();
		if (rc != 0 && c.dk)
			abort();
		credential_clear(&c);
		break;
	case 1:
		rc = credential_parse_payload(data + 1, size - 1, &pol, &c, &r);
		if ((rc == 0) != (r == CREDENTIAL_R_OK) || (rc == 0 && !c.dk))
			abort();
		if (rc == 0 && (strlen(c.nir) != 15 || c.nrights > 16 || c.nbeneficiaries > 16 ||
		                c.nbf >= c.exp))
			abort();
		credential_clear(&c);
		break;
	case 2:
		if (credential_verify_answer(&cred, data + 1, size - 1, NONCE, &ans, &r) == 0)
			abort();
		break;
	case 3: {
		struct cose_sign1_params p = { .alg = COSE_ALG_ES256 };
		uint8_t *msg;
		size_t len;

		if (cose_sign1_create(&p, data + 1, size - 1, cose_sign_evp, dk, &msg, &len))
			abort();
		rc = credential_verify_answer(&cred, msg, len, NONCE, &ans, &r);
		if (rc == 0 && (size - 1 < 32 || !memmem(data + 1, size - 1, NONCE, 32)))
			abort(); /* accepted without our nonce in it */
		if (r == CREDENTIAL_R_DEVICE_SIGNATURE)
			abort(); /* it is signed by dk */
		free(msg);
		break;
	}
	case 4:
		(void)digital_check_select(data + 1, size - 1, &r);
		break;
	default: {
		struct transcript t = { data + 1, size - 1, 0 };
		struct digital_io io = { .transmit = t_transmit, .ctx = &t, .clock_ms = t_clock,
			                 .wall_s = t_wall, .sleep_ms = t_sleep };
		struct digital_params prm = { .anchors = anchors, .skew_s = 300, .terminal_id = "fuzz",
			                      .code_timeout_ms = 2000 };
		struct digital_result res;

		if (digital_read(&io, &prm, &res) == 0)
			abort(); /* would need a real issuer signature */
		if (res.reason == CREDENTIAL_R_OK || res.credential_bytes || res.cred.dk)
			abort();
		digital_result_clear(&res);
		break;
	}
	}
	return 0;
}
