/* digital_baseline: the benchmark baseline for a digital carte Vitale tap
 * (tests/bench/bench_digital_e2e.py). The least a terminal program must do
 * between a tap and a verified identity, written straight on libnfc and
 * OpenSSL, without vitaled's code (tools are built without the core lib):
 *
 *   poll (bounded InListPassiveTarget every POLL_MS, as the nfc driver),
 *   SELECT, GET CREDENTIAL with 61xx / GET RESPONSE chaining,
 *   the issuer chain to the anchor (X509_verify_cert) and the purpose OID,
 *   the issuer's ES256 signature over Sig_structure, the payload's keys
 *   (v, cid, nir with its key, names, nbf/exp against now ± 300 s, dk),
 *   AUTHENTICATE with a fresh nonce (polled on 63 00),
 *   the device's ES256 signature, nonce (constant time), cid, uv, uvm.
 *
 * What it leaves out, and vitaled does: the strict deterministic-CBOR
 * checks (RFC 8949 §4.2.1 re-encoding, nesting limit), the issuer profile's
 * key usage and basic constraints, every §8 field format (dates, rights,
 * beneficiaries, control characters), the point-on-curve check beyond what
 * OpenSSL does when it builds the key. See docs/digital-card.md §11.
 *
 *   digital_baseline -a ANCHOR.pem [-p POLL_MS] [-n TAPS] [-t TERMINAL_ID] CONNSTRING
 *
 * Prints "ready" once the device is open, then one line per tap:
 * "verified ok" or "verified <reason>" (the §12 names where one fits,
 * "baseline_error" otherwise), flushed at once, and waits for the phone to
 * leave before polling again. Exits after TAPS taps (default 1), or 77 when
 * built without libnfc.
 */
#include <stdio.h>

#if !WITH_NFC
int
main(void)
{
	puts("digital_baseline: libnfc not compiled in");
	return 77;
}
#else

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <nfc/nfc.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define CHAIN_MAX 16384
#define CRED_MAX 8192
#define ANSWER_MAX 1024
#define ROUNDS_MAX 64
#define SKEW 300
#define PURPOSE "2.999.86.1.1"

static nfc_device *pnd;
static X509_STORE *store;
static const char *terminal_id = "BENCH-BASELINE";

/* ------------------------------------------------------------------ */
/* transport */

/* One command with 61xx chaining into buf (at most cap bytes). */
static const char *
exchange(const uint8_t *cmd, size_t clen, uint8_t *buf, size_t cap, size_t *len, uint16_t *sw)
{
	uint8_t rx[258], gr[5] = { 0x00, 0xC0, 0x00, 0x00, 0x00 };
	*len = 0;
	for (int round = 0;; round++) {
		int n = nfc_initiator_transceive_bytes(pnd, cmd, clen, rx, sizeof(rx), 2000);
		if (n < 2)
			return "card_lost";
		size_t d = (size_t)n - 2;
		if (d > cap - *len)
			return "answer_too_large";
		memcpy(buf + *len, rx, d);
		*len += d;
		*sw = (uint16_t)(rx[d] << 8 | rx[d + 1]);
		if (rx[d] != 0x61)
			return NULL;
		if (round >= ROUNDS_MAX)
			return "answer_too_large";
		gr[4] = rx[d + 1];
		cmd = gr;
		clen = sizeof(gr);
	}
}

/* ------------------------------------------------------------------ */
/* a small CBOR reader (definite lengths only) */

struct item {
	int major;
	uint64_t val;            /* argument: int value, length, count, tag */
	const uint8_t *data;     /* bstr/text content; array/map first element */
	const uint8_t *next;     /* after the whole item */
};

static int parse(const uint8_t *p, const uint8_t *end, struct item *it, int depth);

static int
parse(const uint8_t *p, const uint8_t *end, struct item *it, int depth)
{
	if (p >= end || depth > 16)
		return -1;
	int ai = p[0] & 31;
	it->major = p[0] >> 5;
	p++;
	if (ai < 24) {
		it->val = (uint64_t)ai;
	} else if (ai <= 27) {
		size_t n = (size_t)1 << (ai - 24);
		if ((size_t)(end - p) < n)
			return -1;
		it->val = 0;
		for (size_t i = 0; i < n; i++)
			it->val = it->val << 8 | p[i];
		p += n;
	} else {
		return -1;
	}
	it->data = p;
	switch (it->major) {
	case 0: case 1: case 7:
		it->next = p;
		return 0;
	case 2: case 3:
		if (it->val > (uint64_t)(end - p))
			return -1;
		it->next = p + it->val;
		return 0;
	case 4: case 5: {
		uint64_t n = it->major == 5 ? it->val * 2 : it->val;
		struct item sub;
		for (uint64_t i = 0; i < n; i++) {
			if (parse(p, end, &sub, depth + 1) < 0)
				return -1;
			p = sub.next;
		}
		it->next = p;
		return 0;
	}
	case 6: {
		struct item sub;
		if (parse(p, end, &sub, depth + 1) < 0)
			return -1;
		it->next = sub.next;
		return 0;
	}
	}
	return -1;
}

/* Value of a text key (or an int key when key == NULL) in a map. */
static int
map_get(const struct item *map, const uint8_t *end, const char *key, int64_t ikey, struct item *out)
{
	const uint8_t *p = map->data;
	for (uint64_t i = 0; i < map->val; i++) {
		struct item k;
		if (parse(p, end, &k, 1) < 0 || parse(k.next, end, out, 1) < 0)
			return -1;
		if (key && k.major == 3 && k.val == strlen(key) && !memcmp(k.data, key, k.val))
			return 0;
		if (!key && ((ikey >= 0 && k.major == 0 && k.val == (uint64_t)ikey) ||
		             (ikey < 0 && k.major == 1 && k.val == (uint64_t)(-1 - ikey))))
			return 0;
		p = out->next;
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* COSE_Sign1 (RFC 9052 §4.2), ES256 */

struct sign1 {
	struct item prot, unprot, payload, sig;
	const uint8_t *end;
};

static int
sign1(const uint8_t *b, size_t len, struct sign1 *s)
{
	struct item top, arr;
	s->end = b + len;
	if (parse(b, s->end, &top, 0) < 0 || top.next != s->end || top.major != 6 || top.val != 18 ||
	    parse(top.data, s->end, &arr, 1) < 0 || arr.major != 4 || arr.val != 4)
		return -1;
	const uint8_t *p = arr.data;
	struct item *parts[4] = { &s->prot, &s->unprot, &s->payload, &s->sig };
	for (int i = 0; i < 4; i++) {
		if (parse(p, s->end, parts[i], 2) < 0)
			return -1;
		p = parts[i]->next;
	}
	if (s->prot.major != 2 || s->prot.val != 3 || memcmp(s->prot.data, "\xA1\x01\x26", 3) ||
	    s->unprot.major != 5 || s->payload.major != 2 || s->sig.major != 2 || s->sig.val != 64)
		return -1;
	return 0;
}

static bool
es256_ok(EVP_PKEY *key, const struct sign1 *s)
{
	/* Sig_structure = ["Signature1", h'A10126', h'', payload] */
	size_t plen = (size_t)s->payload.val, n = 0;
	uint8_t *tbs = malloc(plen + 32);
	bool ok = false;
	if (!tbs)
		return false;
	memcpy(tbs, "\x84\x6A" "Signature1" "\x43\xA1\x01\x26\x40", 17);
	n = 17;
	if (plen < 24) {
		tbs[n++] = (uint8_t)(0x40 | plen);
	} else if (plen < 256) {
		tbs[n++] = 0x58;
		tbs[n++] = (uint8_t)plen;
	} else {
		tbs[n++] = 0x59;
		tbs[n++] = (uint8_t)(plen >> 8);
		tbs[n++] = (uint8_t)plen;
	}
	memcpy(tbs + n, s->payload.data, plen);
	n += plen;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(s->sig.data, 32, NULL), *sv = BN_bin2bn(s->sig.data + 32, 32, NULL);
	unsigned char *der = NULL;
	int dlen = -1;
	if (es && r && sv && ECDSA_SIG_set0(es, r, sv) == 1) {
		r = sv = NULL;
		dlen = i2d_ECDSA_SIG(es, &der);
	}
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	if (dlen > 0 && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1)
		ok = EVP_DigestVerify(md, der, (size_t)dlen, tbs, n) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	BN_free(r);
	BN_free(sv);
	ECDSA_SIG_free(es);
	free(tbs);
	return ok;
}

/* COSE_Key {1: 2, -1: 1, -2: x, -3: y} -> EVP_PKEY (P-256) */
static EVP_PKEY *
cose_key(const struct item *m, const uint8_t *end)
{
	struct item x, y;
	uint8_t pub[65];
	if (m->major != 5 || map_get(m, end, NULL, -2, &x) < 0 || map_get(m, end, NULL, -3, &y) < 0 ||
	    x.major != 2 || x.val != 32 || y.major != 2 || y.val != 32)
		return NULL;
	pub[0] = 0x04;
	memcpy(pub + 1, x.data, 32);
	memcpy(pub + 33, y.data, 32);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *key = NULL;
	if (bld && ctx &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, sizeof(pub)) == 1 &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) && EVP_PKEY_fromdata_init(ctx) == 1)
		EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return key;
}

static bool
nir_ok(const struct item *t)
{
	char s[16];
	unsigned m = 0;
	if (t->major != 3 || t->val != 15)
		return false;
	memcpy(s, t->data, 15);
	s[15] = '\0';
	if (s[5] == '2' && (s[6] == 'A' || s[6] == 'a'))
		s[5] = '1', s[6] = '9';   /* Corsica: 2A -> 19, 2B -> 18 */
	else if (s[5] == '2' && (s[6] == 'B' || s[6] == 'b'))
		s[5] = '1', s[6] = '8';
	for (int i = 0; i < 15; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	for (int i = 0; i < 13; i++)
		m = (m * 10 + (unsigned)(s[i] - '0')) % 97;
	return (unsigned)((s[13] - '0') * 10 + (s[14] - '0')) == 97 - m;
}

/* ------------------------------------------------------------------ */
/* the presentation */

static const char *
verify_chain(const struct sign1 *c, EVP_PKEY **issuer_key)
{
	struct item chain, cert;
	STACK_OF(X509) *untrusted = sk_X509_new_null();
	X509 *leaf = NULL;
	const char *why = "chain_untrusted";
	if (map_get(&c->unprot, c->end, NULL, 33, &chain) < 0 || chain.major != 4 || chain.val < 1 ||
	    chain.val > 4) {
		why = "cose_malformed";
		goto out;
	}
	const uint8_t *p = chain.data;
	for (uint64_t i = 0; i < chain.val; i++) {
		if (parse(p, c->end, &cert, 3) < 0 || cert.major != 2)
			goto out;
		const unsigned char *d = cert.data;
		X509 *x = d2i_X509(NULL, &d, (long)cert.val);
		if (!x)
			goto out;
		if (!leaf)
			leaf = x;
		else
			sk_X509_push(untrusted, x);
		p = cert.next;
	}
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok = ctx && X509_STORE_CTX_init(ctx, store, leaf, untrusted) == 1 && X509_verify_cert(ctx) == 1;
	int err = ctx ? X509_STORE_CTX_get_error(ctx) : 0;
	X509_STORE_CTX_free(ctx);
	if (!ok) {
		why = err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID
		              ? "chain_expired"
		              : "chain_untrusted";
		goto out;
	}
	/* the purpose OID in extendedKeyUsage (§10.1) */
	EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(leaf, NID_ext_key_usage, NULL, NULL);
	bool purpose = false;
	for (int i = 0; eku && i < sk_ASN1_OBJECT_num(eku); i++) {
		char oid[64];
		OBJ_obj2txt(oid, sizeof(oid), sk_ASN1_OBJECT_value(eku, i), 1);
		purpose |= strcmp(oid, PURPOSE) == 0;
	}
	EXTENDED_KEY_USAGE_free(eku);
	if (!purpose) {
		why = "issuer_purpose";
		goto out;
	}
	*issuer_key = X509_get_pubkey(leaf);
	why = *issuer_key ? NULL : "issuer_purpose";
out:
	X509_free(leaf);
	sk_X509_pop_free(untrusted, X509_free);
	return why;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *
present(void)
{
	static const uint8_t select[] = { 0x00, 0xA4, 0x04, 0x00, 0x09, 0xF0, 0x56, 0x49, 0x54,
		                          0x41, 0x4C, 0x45, 0x44, 0x01, 0x00 };
	static const uint8_t getcred[] = { 0x80, 0xCA, 0x00, 0x00, 0x00 };
	static uint8_t cred[CRED_MAX], ans[CHAIN_MAX];
	uint8_t apdu[300], nonce[32];
	size_t clen, alen;
	uint16_t sw;
	const char *why;
	EVP_PKEY *ik = NULL, *dk = NULL;
	struct sign1 c, a;
	struct item pl, v, cid, x, n, uv, uvm, sel;

	if ((why = exchange(select, sizeof(select), ans, CHAIN_MAX, &alen, &sw)))
		return why;
	if (sw != 0x9000)
		return "no_applet";
	if (parse(ans, ans + alen, &sel, 0) < 0 || sel.major != 5 ||
	    map_get(&sel, ans + alen, "v", 0, &v) < 0 || v.major != 0 || v.val != 1)
		return "bad_version";
	if ((why = exchange(getcred, sizeof(getcred), cred, CRED_MAX, &clen, &sw)))
		return why;
	if (sw != 0x9000)
		return "status_unexpected";
	if (sign1(cred, clen, &c) < 0)
		return "cose_malformed";
	if ((why = verify_chain(&c, &ik)))
		return why;
	why = "credential_signature";
	if (!es256_ok(ik, &c))
		goto out;
	why = "payload_invalid";
	const uint8_t *pend = c.payload.data + c.payload.val;
	if (parse(c.payload.data, pend, &pl, 0) < 0 || pl.major != 5 || map_get(&pl, pend, "v", 0, &v) < 0 ||
	    v.major != 0 || v.val != 1 || map_get(&pl, pend, "cid", 0, &cid) < 0 || cid.major != 2 ||
	    cid.val != 16 || map_get(&pl, pend, "nir", 0, &x) < 0 || !nir_ok(&x) ||
	    map_get(&pl, pend, "surname", 0, &x) < 0 || x.major != 3 ||
	    map_get(&pl, pend, "given_name", 0, &x) < 0 || x.major != 3)
		goto out;
	{
		struct item nbf, exp;
		int64_t now = (int64_t)time(NULL);
		if (map_get(&pl, pend, "nbf", 0, &nbf) < 0 || map_get(&pl, pend, "exp", 0, &exp) < 0 ||
		    nbf.major != 0 || exp.major != 0 || nbf.val >= exp.val)
			goto out;
		why = "credential_not_yet_valid";
		if (now + SKEW < (int64_t)nbf.val)
			goto out;
		why = "credential_expired";
		if (now - SKEW >= (int64_t)exp.val)
			goto out;
	}
	why = "device_key_invalid";
	if (map_get(&pl, pend, "dk", 0, &x) < 0 || !(dk = cose_key(&x, pend)))
		goto out;

	/* AUTHENTICATE {"n": nonce, "t": id, "ts": now} (§4.3) */
	why = "baseline_error";
	size_t tl = strlen(terminal_id), k = 5;
	if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce) || tl > 23)
		goto out;
	uint32_t ts = (uint32_t)time(NULL);
	memcpy(apdu, "\x80\x88\x00\x00\x00", 5);
	memcpy(apdu + k, "\xA3\x61n\x58\x20", 5), k += 5;
	memcpy(apdu + k, nonce, 32), k += 32;
	memcpy(apdu + k, "\x61t", 2), k += 2;
	apdu[k++] = (uint8_t)(0x60 | tl);
	memcpy(apdu + k, terminal_id, tl), k += tl;
	memcpy(apdu + k, "\x62ts\x1A", 4), k += 4;
	apdu[k++] = (uint8_t)(ts >> 24), apdu[k++] = (uint8_t)(ts >> 16);
	apdu[k++] = (uint8_t)(ts >> 8), apdu[k++] = (uint8_t)ts;
	apdu[4] = (uint8_t)(k - 5);
	apdu[k++] = 0x00;
	for (int polls = 0;; polls++) {
		if ((why = exchange(apdu, k, ans, ANSWER_MAX, &alen, &sw)))
			goto out;
		if (sw != 0x6300)
			break;
		why = "code_timeout";
		if (polls > 240)
			goto out;
		sleep_ms(250);
	}
	why = sw == 0x6982 ? "code_refused" : sw == 0x6983 ? "code_blocked" : "status_unexpected";
	if (sw != 0x9000)
		goto out;
	why = "cose_malformed";
	if (sign1(ans, alen, &a) < 0 || a.unprot.val != 0)
		goto out;
	why = "device_signature";
	if (!es256_ok(dk, &a))
		goto out;
	why = "payload_invalid";
	pend = a.payload.data + a.payload.val;
	if (parse(a.payload.data, pend, &pl, 0) < 0 || pl.major != 5 ||
	    map_get(&pl, pend, "n", 0, &n) < 0 || n.major != 2 || n.val != 32 ||
	    map_get(&pl, pend, "cid", 0, &x) < 0 || x.major != 2 || x.val != 16 ||
	    map_get(&pl, pend, "uv", 0, &uv) < 0 || map_get(&pl, pend, "uvm", 0, &uvm) < 0)
		goto out;
	why = "nonce_mismatch";
	if (CRYPTO_memcmp(n.data, nonce, 32) != 0)
		goto out;
	why = "cid_mismatch";
	if (memcmp(x.data, cid.data, 16) != 0)
		goto out;
	why = "uv_false";
	if (uv.major != 7 || uv.val != 21 || uvm.major != 3 || uvm.val != 3 || memcmp(uvm.data, "pin", 3))
		goto out;
	why = NULL;
out:
	EVP_PKEY_free(ik);
	EVP_PKEY_free(dk);
	return why;
}

int
main(int argc, char **argv)
{
	const char *anchor = NULL;
	unsigned poll_ms = 100;
	long taps = 1;
	int c;
	while ((c = getopt(argc, argv, "a:p:n:t:")) != -1) {
		switch (c) {
		case 'a': anchor = optarg; break;
		case 'p': poll_ms = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'n': taps = strtol(optarg, NULL, 10); break;
		case 't': terminal_id = optarg; break;
		default:
			fprintf(stderr, "usage: digital_baseline -a ANCHOR.pem [-p POLL_MS] [-n TAPS] "
			                "[-t ID] CONNSTRING\n");
			return 2;
		}
	}
	if (!anchor || optind != argc - 1) {
		fprintf(stderr, "digital_baseline: -a ANCHOR.pem and a connstring are required\n");
		return 2;
	}
	store = X509_STORE_new();
	if (!store || X509_STORE_load_file(store, anchor) != 1) {
		fprintf(stderr, "digital_baseline: cannot load %s\n", anchor);
		return 1;
	}
	X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	nfc_context *ctx = NULL;
	nfc_init(&ctx);
	if (!ctx || !(pnd = nfc_open(ctx, argv[optind])) || nfc_initiator_init(pnd) < 0 ||
	    nfc_device_set_property_bool(pnd, NP_INFINITE_SELECT, false) < 0 ||
	    nfc_device_set_property_bool(pnd, NP_AUTO_ISO14443_4, true) < 0 ||
	    nfc_device_set_property_bool(pnd, NP_EASY_FRAMING, true) < 0) {
		fprintf(stderr, "digital_baseline: cannot open %s\n", argv[optind]);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	static const nfc_modulation mod = { .nmt = NMT_ISO14443A, .nbr = NBR_106 };
	for (long done = 0; done < taps;) {
		nfc_target nt;
		int r = nfc_initiator_select_passive_target(pnd, mod, NULL, 0, &nt);
		if (r <= 0 || !(nt.nti.nai.btSak & 0x20)) {
			sleep_ms(poll_ms);
			continue;
		}
		const char *why = present();
		printf("verified %s\n", why ? why : "ok");
		fflush(stdout);
		done++;
		while (nfc_initiator_target_is_present(pnd, NULL) == 0)
			sleep_ms(poll_ms);
	}
	nfc_close(pnd);
	nfc_exit(ctx);
	X509_STORE_free(store);
	return 0;
}
#endif
