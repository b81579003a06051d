/* Unit tests for daemon/pin/signer and its backends.
 *
 * - the PKCS#11 login outcome table (token flags -> tries left, blocked);
 * - the file backend, clear and encrypted PEM, ES256 and PS256, through the
 *   worker thread and the event loop, signatures checked with the key the
 *   test generated (not the backend's idea of it);
 * - idle logout;
 * - the pkcs11 backend against SoftHSM2 tokens made in a temp dir (skipped
 *   when softhsm2-util/pkcs11-tool are missing). SoftHSM 2.6 answers
 *   CKR_PIN_INCORRECT forever and only sets CKF_USER_PIN_COUNT_LOW: the
 *   FINAL_TRY/LOCKED paths are covered by the table test here and by the
 *   fake module in tests/integration/test_signer.py.
 */
#include <check.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "protocol/cose.h"
#include "daemon/core/loop.h"
#include "lib/secmem.h"
#include "daemon/pin/signer.h"

/* the p11 constants we need, without pulling the p11-kit header in here */
#define T_CKR_OK 0x0UL
#define T_CKR_DEVICE_REMOVED 0x32UL
#define T_CKR_FUNCTION_CANCELED 0x50UL
#define T_CKR_PIN_INCORRECT 0xA0UL
#define T_CKR_PIN_LEN_RANGE 0xA2UL
#define T_CKR_PIN_LOCKED 0xA4UL
#define T_CKR_SESSION_HANDLE_INVALID 0xB3UL
#define T_CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define T_CKF_USER_PIN_COUNT_LOW (1UL << 16)
#define T_CKF_USER_PIN_FINAL_TRY (1UL << 17)
#define T_CKF_USER_PIN_LOCKED (1UL << 18)

static char tmpdir[256];

static void
mk_tmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_signer.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
rm_tmp(void)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", tmpdir);
}

static struct config *
make_config(const char *backend, const char *module, const char *token, const char *key,
            const char *key_file, const char *idle)
{
	struct config *c = NULL;
	char err[256];
	ck_assert_int_eq(config_load(NULL, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(c, "signer", "backend", backend, err, sizeof(err)), 0);
	if (module)
		ck_assert_int_eq(config_set(c, "signer", "module", module, err, sizeof(err)), 0);
	if (token)
		ck_assert_int_eq(config_set(c, "signer", "token", token, err, sizeof(err)), 0);
	if (key)
		ck_assert_int_eq(config_set(c, "signer", "key", key, err, sizeof(err)), 0);
	if (key_file)
		ck_assert_int_eq(config_set(c, "signer", "key_file", key_file, err, sizeof(err)), 0);
	if (idle)
		ck_assert_int_eq(config_set(c, "signer", "pin_idle_timeout_s", idle, err, sizeof(err)), 0);
	return c;
}

/* Write a fresh key as PEM (encrypted with pass if not NULL); return its SPKI DER. */
static size_t
make_key(const char *path, bool rsa, const char *pass, uint8_t *spki, size_t cap)
{
	EVP_PKEY *pk = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
	ck_assert_ptr_nonnull(pk);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fchmod(fileno(f), 0600);
	if (pass)
		ck_assert_int_eq(PEM_write_PKCS8PrivateKey(f, pk, EVP_aes_256_cbc(), pass,
		                                           (int)strlen(pass), NULL, NULL), 1);
	else
		ck_assert_int_eq(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pk, &der);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_le((size_t)n, cap);
	memcpy(spki, der, (size_t)n);
	OPENSSL_free(der);
	EVP_PKEY_free(pk);
	return (size_t)n;
}

struct waiter {
	enum signer_state want;
	bool seen;
	int changes;
};

static void
status_cb(struct signer *s, const struct signer_status *st, void *arg)
{
	struct waiter *w = arg;
	w->changes++;
	if (st->state == w->want)
		w->seen = true;
}

static void
run_until(struct loop *l, bool *flag, int ms)
{
	/* under a wrapper (valgrind) everything is slower: the Makefile sets
	 * CK_TIMEOUT_MULTIPLIER, and the waits here stretch with it */
	const char *mul = getenv("CK_TIMEOUT_MULTIPLIER");
	long m = mul ? strtol(mul, NULL, 10) : 1;
	uint64_t end = loop_now_ms() + (uint64_t)ms * (uint64_t)(m > 0 ? m : 1);
	while (!*flag && loop_now_ms() < end)
		loop_run_once(l, 50);
}

static struct secmem_pin *
pin_of(const char *s)
{
	struct secmem_pin *p = NULL;
	ck_assert_int_eq(secmem_pin_new(s, strlen(s), 4, 16, &p), 0);
	return p;
}

struct login_res {
	bool done;
	int result;
	struct signer_status st;
};

static void
login_cb(int result, const struct signer_status *st, void *arg)
{
	struct login_res *r = arg;
	r->done = true;
	r->result = result;
	r->st = *st;
}

static int
login_wait(struct loop *l, struct signer *s, const char *pin, struct signer_status *st)
{
	struct login_res r = { 0 };
	ck_assert_int_eq(signer_login(s, pin ? pin_of(pin) : NULL, login_cb, &r), 0);
	run_until(l, &r.done, 20000);
	ck_assert(r.done);
	if (st)
		*st = r.st;
	return r.result;
}

/* ------------------------------------------------------------------ */

START_TEST(p11_outcome_table)
{
	struct signer_p11_outcome o;
	signer_p11_login_outcome(T_CKR_OK, T_CKF_USER_PIN_COUNT_LOW, &o);
	ck_assert_int_eq(o.result, 0);
	ck_assert_int_eq(o.state, SIGNER_READY);
	ck_assert(!o.count_low);

	signer_p11_login_outcome(T_CKR_USER_ALREADY_LOGGED_IN, 0, &o);
	ck_assert_int_eq(o.result, 0);

	signer_p11_login_outcome(T_CKR_PIN_INCORRECT, 0, &o);
	ck_assert_int_eq(o.result, SIGNER_E_PIN_INCORRECT);
	ck_assert_int_eq(o.tries_left, -1);
	ck_assert(!o.count_low);
	ck_assert_int_eq(o.state, SIGNER_LOCKED);

	/* SoftHSM's answer: count low, no number */
	signer_p11_login_outcome(T_CKR_PIN_INCORRECT, T_CKF_USER_PIN_COUNT_LOW, &o);
	ck_assert_int_eq(o.result, SIGNER_E_PIN_INCORRECT);
	ck_assert_int_eq(o.tries_left, -1);
	ck_assert(o.count_low);

	/* a card through OpenSC with one try left */
	signer_p11_login_outcome(T_CKR_PIN_INCORRECT,
	                         T_CKF_USER_PIN_COUNT_LOW | T_CKF_USER_PIN_FINAL_TRY, &o);
	ck_assert_int_eq(o.result, SIGNER_E_PIN_INCORRECT);
	ck_assert_int_eq(o.tries_left, 1);

	/* the wrong PIN used the last try: blocked now */
	signer_p11_login_outcome(T_CKR_PIN_INCORRECT, T_CKF_USER_PIN_LOCKED, &o);
	ck_assert_int_eq(o.result, SIGNER_E_PIN_BLOCKED);
	ck_assert_int_eq(o.state, SIGNER_BLOCKED);
	ck_assert_int_eq(o.tries_left, 0);

	signer_p11_login_outcome(T_CKR_PIN_LOCKED, 0, &o);
	ck_assert_int_eq(o.result, SIGNER_E_PIN_BLOCKED);
	ck_assert_int_eq(o.tries_left, 0);

	signer_p11_login_outcome(T_CKR_PIN_LEN_RANGE, 0, &o);
	ck_assert_int_eq(o.result, SIGNER_E_PIN_MALFORMED);
	signer_p11_login_outcome(T_CKR_FUNCTION_CANCELED, 0, &o);
	ck_assert_int_eq(o.result, SIGNER_E_CANCELLED);
	signer_p11_login_outcome(T_CKR_DEVICE_REMOVED, 0, &o);
	ck_assert_int_eq(o.result, SIGNER_E_NO_TOKEN);
	ck_assert_int_eq(o.state, SIGNER_NO_TOKEN);
	signer_p11_login_outcome(T_CKR_SESSION_HANDLE_INVALID, 0, &o);
	ck_assert_int_eq(o.result, SIGNER_E_NO_TOKEN);
	signer_p11_login_outcome(0x6UL /* CKR_FUNCTION_FAILED */, 0, &o);
	ck_assert_int_eq(o.result, -EIO);

	char b[32];
	ck_assert_str_eq(signer_p11_rv_name(T_CKR_PIN_LOCKED, b, sizeof(b)), "CKR_PIN_LOCKED");
	ck_assert_str_eq(signer_p11_rv_name(0x80000001UL, b, sizeof(b)), "CKR_0x80000001");
}
END_TEST

START_TEST(backend_table)
{
	ck_assert_ptr_eq(signer_backend_find("pkcs11"), &signer_pkcs11_ops);
	ck_assert_ptr_eq(signer_backend_find("file"), &signer_file_ops);
	ck_assert_ptr_eq(signer_backend_find("none"), &signer_none_ops);
	ck_assert_ptr_null(signer_backend_find("pkcs12"));
	ck_assert_ptr_null(signer_backend_find(NULL));
	ck_assert_str_eq(signer_alg_name(SIGNER_ALG_ES256), "ES256");
	ck_assert_str_eq(signer_alg_name(SIGNER_ALG_PS256), "PS256");
	ck_assert_ptr_null(signer_alg_name(-8));
	ck_assert_str_eq(signer_state_name(SIGNER_BLOCKED), "blocked");
}
END_TEST

static void
file_roundtrip(bool rsa)
{
	mk_tmp();
	char path[300];
	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	uint8_t spki[1024];
	size_t spki_len = make_key(path, rsa, NULL, spki, sizeof(spki));
	struct config *c = make_config("file", NULL, NULL, NULL, path, NULL);
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_READY };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	const struct signer_status *st = signer_status(s);
	ck_assert(st->logged_in);
	ck_assert(!st->needs_pin);
	int alg = rsa ? SIGNER_ALG_PS256 : SIGNER_ALG_ES256;
	ck_assert_int_eq(st->cose_alg, alg);

	static const uint8_t msg[] = "care sheet 2024-0001";
	uint8_t sig[SIGNER_SIG_MAX];
	size_t siglen = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, alg, msg, sizeof(msg), sig, &siglen), 0);
	ck_assert_uint_eq(siglen, rsa ? 256u : 64u);
	ck_assert_int_eq(signer_verify(alg, spki, spki_len, msg, sizeof(msg), sig, siglen), 0);
	/* the signature is over these bytes, not others */
	ck_assert_int_eq(signer_verify(alg, spki, spki_len, msg, sizeof(msg) - 1, sig, siglen), -EBADMSG);
	sig[siglen / 2] ^= 1;
	ck_assert_int_eq(signer_verify(alg, spki, spki_len, msg, sizeof(msg), sig, siglen), -EBADMSG);
	/* the wrong algorithm for the key */
	siglen = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, rsa ? SIGNER_ALG_ES256 : SIGNER_ALG_PS256, msg, sizeof(msg),
	                             sig, &siglen), SIGNER_E_BAD_ALG);
	ck_assert_uint_eq(siglen, 0);
	/* a buffer too small */
	siglen = 10;
	ck_assert_int_eq(signer_sign(s, alg, msg, sizeof(msg), sig, &siglen), -ENOBUFS);
	ck_assert_uint_eq(siglen, 0);
	/* ECDSA signatures differ each time but both verify; PSS too (random salt) */
	uint8_t sig2[SIGNER_SIG_MAX];
	size_t l1 = sizeof(sig), l2 = sizeof(sig2);
	ck_assert_int_eq(signer_sign(s, alg, msg, sizeof(msg), sig, &l1), 0);
	ck_assert_int_eq(signer_sign(s, alg, msg, sizeof(msg), sig2, &l2), 0);
	ck_assert(l1 != l2 || memcmp(sig, sig2, l1) != 0);
	ck_assert_int_eq(signer_verify(alg, spki, spki_len, msg, sizeof(msg), sig2, l2), 0);
	/* a file without a PIN: SubmitPin is not expected */
	struct signer_status after;
	ck_assert_int_eq(login_wait(l, s, "1234", &after), SIGNER_E_NOT_EXPECTED);
	ck_assert(after.logged_in);
	signer_free(s);
	loop_free(l);
	config_free(c);
	rm_tmp();
}

/* signer_sign is the COSE signer callback: build a COSE_Sign1 with it and
 * verify it with the COSE code and the key the test made. */
static void
cose_roundtrip(bool rsa)
{
	mk_tmp();
	char path[300];
	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	uint8_t spki[1024];
	size_t spki_len = make_key(path, rsa, NULL, spki, sizeof(spki));
	struct config *c = make_config("file", NULL, NULL, NULL, path, NULL);
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_READY };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	cose_sign_fn fn = signer_sign; /* the shapes must match */
	struct cose_sign1_params prm = { .alg = rsa ? COSE_ALG_PS256 : COSE_ALG_ES256 };
	static const uint8_t payload[] = { 0xA1, 0x61, 0x76, 0x01 }; /* {"v": 1} */
	uint8_t *msg = NULL;
	size_t mlen = 0;
	ck_assert_int_eq(cose_sign1_create(&prm, payload, sizeof(payload), fn, s, &msg, &mlen), 0);
	struct cose_sign1 parsed;
	ck_assert_int_eq(cose_sign1_parse(msg, mlen, &CBOR_LIMITS_DEFAULT, COSE_TAG_REQUIRED, &parsed), 0);
	const unsigned char *q = spki;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &q, (long)spki_len);
	ck_assert_ptr_nonnull(pub);
	ck_assert_int_eq(cose_sign1_verify(&parsed, pub), 0);
	cose_sign1_free(&parsed);
	msg[mlen - 1] ^= 1; /* the last signature byte */
	ck_assert_int_eq(cose_sign1_parse(msg, mlen, &CBOR_LIMITS_DEFAULT, COSE_TAG_REQUIRED, &parsed), 0);
	ck_assert_int_ne(cose_sign1_verify(&parsed, pub), 0);
	cose_sign1_free(&parsed);
	EVP_PKEY_free(pub);
	free(msg);
	signer_free(s);
	loop_free(l);
	config_free(c);
	rm_tmp();
}

START_TEST(cose_es256)
{
	cose_roundtrip(false);
}
END_TEST

START_TEST(cose_ps256)
{
	cose_roundtrip(true);
}
END_TEST

START_TEST(file_es256)
{
	file_roundtrip(false);
}
END_TEST

START_TEST(file_ps256)
{
	file_roundtrip(true);
}
END_TEST

START_TEST(file_encrypted_pin)
{
	mk_tmp();
	char path[300];
	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	uint8_t spki[1024];
	size_t spki_len = make_key(path, false, "4711", spki, sizeof(spki));
	struct config *c = make_config("file", NULL, NULL, NULL, path, NULL);
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_LOCKED };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	ck_assert(signer_status(s)->needs_pin);
	ck_assert(!signer_status(s)->logged_in);

	static const uint8_t msg[] = "x";
	uint8_t sig[SIGNER_SIG_MAX];
	size_t siglen = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, SIGNER_ALG_ES256, msg, 1, sig, &siglen), SIGNER_E_LOGIN_NEEDED);

	struct signer_status st;
	ck_assert_int_eq(login_wait(l, s, "4712", &st), SIGNER_E_PIN_INCORRECT);
	ck_assert_int_eq(st.state, SIGNER_LOCKED);
	ck_assert_int_eq(st.tries_left, -1);
	ck_assert(!st.logged_in);
	ck_assert_int_eq(login_wait(l, s, "4711", &st), 0);
	ck_assert_int_eq(st.state, SIGNER_READY);
	ck_assert(st.logged_in);
	ck_assert_int_eq(signer_status(s)->state, SIGNER_READY);
	siglen = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, SIGNER_ALG_ES256, msg, 1, sig, &siglen), 0);
	ck_assert_int_eq(signer_verify(SIGNER_ALG_ES256, spki, spki_len, msg, 1, sig, siglen), 0);
	/* a second login while logged in is not expected */
	ck_assert_int_eq(login_wait(l, s, "4711", NULL), SIGNER_E_NOT_EXPECTED);

	w = (struct waiter){ .want = SIGNER_LOCKED };
	ck_assert_int_eq(signer_logout(s, "test"), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	siglen = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, SIGNER_ALG_ES256, msg, 1, sig, &siglen), SIGNER_E_LOGIN_NEEDED);
	signer_free(s);
	loop_free(l);
	config_free(c);
	rm_tmp();
}
END_TEST

/* A file key signs on the caller's thread (no worker hop): signatures from
 * several threads at once, while the key is logged out and in again, each
 * either verifies or says LOGIN_NEEDED, never anything else (nor a crash on
 * a key freed under it). */
struct signloop {
	struct signer *s;
	const uint8_t *spki;
	size_t spki_len;
	atomic_bool *stop;
	unsigned ok, locked, other;
};

static void *
signloop_main(void *arg)
{
	struct signloop *a = arg;
	static const uint8_t msg[] = "threads";
	while (!atomic_load(a->stop)) {
		uint8_t sig[SIGNER_SIG_MAX];
		size_t siglen = sizeof(sig);
		int r = signer_sign(a->s, SIGNER_ALG_ES256, msg, sizeof(msg), sig, &siglen);
		if (r == 0 && signer_verify(SIGNER_ALG_ES256, a->spki, a->spki_len, msg, sizeof(msg),
		                            sig, siglen) == 0)
			a->ok++;
		else if (r == SIGNER_E_LOGIN_NEEDED)
			a->locked++;
		else
			a->other++;
	}
	return NULL;
}

START_TEST(file_sign_threads_logout)
{
	mk_tmp();
	char path[300];
	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	uint8_t spki[1024];
	size_t spki_len = make_key(path, false, "4711", spki, sizeof(spki));
	struct config *c = make_config("file", NULL, NULL, NULL, path, NULL);
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_LOCKED };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	ck_assert_int_eq(login_wait(l, s, "4711", NULL), 0);
	atomic_bool stop = false;
	struct signloop a[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		a[i] = (struct signloop){ .s = s, .spki = spki, .spki_len = spki_len, .stop = &stop };
		ck_assert_int_eq(pthread_create(&th[i], NULL, signloop_main, &a[i]), 0);
	}
	for (int round = 0; round < 5; round++) {
		usleep(20000);
		w = (struct waiter){ .want = SIGNER_LOCKED };
		ck_assert_int_eq(signer_logout(s, "test"), 0);
		run_until(l, &w.seen, 5000);
		ck_assert(w.seen);
		usleep(20000);
		ck_assert_int_eq(login_wait(l, s, "4711", NULL), 0);
	}
	usleep(20000);
	atomic_store(&stop, true);
	unsigned ok = 0, locked = 0;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		ck_assert_uint_eq(a[i].other, 0);
		ok += a[i].ok;
		locked += a[i].locked;
	}
	ck_assert_uint_gt(ok, 0);
	ck_assert_uint_gt(locked, 0);
	signer_free(s);
	loop_free(l);
	config_free(c);
	rm_tmp();
}
END_TEST

START_TEST(idle_logout)
{
	mk_tmp();
	char path[300];
	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	uint8_t spki[1024];
	make_key(path, false, "4711", spki, sizeof(spki));
	struct config *c = make_config("file", NULL, NULL, NULL, path, "1");
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_LOCKED };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert_int_eq(login_wait(l, s, "4711", NULL), 0);
	ck_assert(signer_status(s)->logged_in);
	uint64_t t0 = loop_now_ms();
	w = (struct waiter){ .want = SIGNER_LOCKED };
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	uint64_t dt = loop_now_ms() - t0;
	ck_assert_msg(dt >= 900 && dt < 3000, "idle logout after %llu ms", (unsigned long long)dt);
	ck_assert(!signer_status(s)->logged_in);
	signer_free(s);
	loop_free(l);
	config_free(c);
	rm_tmp();
}
END_TEST

struct sign_res {
	bool done;
	int result;
	uint8_t sig[SIGNER_SIG_MAX];
	size_t len;
};

static void
sign_cb(int result, const uint8_t *sig, size_t len, void *arg)
{
	struct sign_res *r = arg;
	r->done = true;
	r->result = result;
	if (sig && len <= sizeof(r->sig))
		memcpy(r->sig, sig, len);
	r->len = len;
}

struct st_res {
	bool done;
	struct signer_selftest t;
	uint8_t pub[1024];
};

static void
selftest_cb(const struct signer_selftest *t, void *arg)
{
	struct st_res *r = arg;
	r->done = true;
	r->t = *t;
	if (t->pub && t->pub_len <= sizeof(r->pub))
		memcpy(r->pub, t->pub, t->pub_len);
	r->t.pub = NULL;
}

START_TEST(async_and_selftest)
{
	mk_tmp();
	char path[300];
	snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
	uint8_t spki[1024];
	size_t spki_len = make_key(path, false, NULL, spki, sizeof(spki));
	struct config *c = make_config("file", NULL, NULL, NULL, path, NULL);
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_READY };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	struct sign_res r = { 0 };
	uint8_t msg[100];
	memset(msg, 'a', sizeof(msg));
	ck_assert_int_eq(signer_sign_async(s, SIGNER_ALG_ES256, msg, sizeof(msg), sign_cb, &r), 0);
	memset(msg, 'b', sizeof(msg)); /* the signer copied it */
	run_until(l, &r.done, 5000);
	ck_assert_int_eq(r.result, 0);
	memset(msg, 'a', sizeof(msg));
	ck_assert_int_eq(signer_verify(SIGNER_ALG_ES256, spki, spki_len, msg, sizeof(msg), r.sig, r.len), 0);

	struct st_res t = { 0 };
	ck_assert_int_eq(signer_selftest(s, 20, selftest_cb, &t), 0);
	run_until(l, &t.done, 5000);
	ck_assert_int_eq(t.t.result, 0);
	ck_assert(t.t.verified);
	ck_assert_uint_eq(t.t.rounds, 20);
	ck_assert_uint_eq(t.t.pub_len, spki_len);
	ck_assert(!memcmp(t.pub, spki, spki_len));
	ck_assert(t.t.tbs[0] != 0x84); /* never a COSE Sig_structure */
	ck_assert_int_eq(signer_verify(SIGNER_ALG_ES256, spki, spki_len, t.t.tbs, t.t.tbs_len, t.t.sig,
	                               t.t.sig_len), 0);
	signer_free(s);
	loop_free(l);
	config_free(c);
	rm_tmp();
}
END_TEST

START_TEST(unknown_and_missing)
{
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct config *c = make_config("none", NULL, NULL, NULL, NULL, NULL);
	struct waiter w = { .want = SIGNER_DISABLED };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	uint8_t sig[64];
	size_t n = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, SIGNER_ALG_ES256, (const uint8_t *)"x", 1, sig, &n),
	                 SIGNER_E_NO_TOKEN);
	ck_assert_int_eq(login_wait(l, s, "1234", NULL), SIGNER_E_NOT_EXPECTED);
	signer_free(s);
	config_free(c);

	/* a key file that is not there: no-token, not a crash */
	c = make_config("file", NULL, NULL, NULL, "/nonexistent/key.pem", NULL);
	w = (struct waiter){ .want = SIGNER_NO_TOKEN };
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	ck_assert_ptr_nonnull(strstr(signer_status(s)->reason, "cannot open"));
	signer_free(s);
	config_free(c);

	/* a module that is not there: error with a reason */
	c = make_config("pkcs11", "/nonexistent/p11.so", NULL, "k", NULL, NULL);
	w = (struct waiter){ .want = SIGNER_ERROR };
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	ck_assert_ptr_nonnull(strstr(signer_status(s)->reason, "cannot load"));
	signer_free(s);
	config_free(c);
	loop_free(l);
}
END_TEST

/* ------------------------------------------------------------------ */
/* SoftHSM2 */

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

static bool
have_softhsm(void)
{
	return access(SOFTHSM, R_OK) == 0 && system("command -v softhsm2-util >/dev/null 2>&1") == 0 &&
	       system("command -v pkcs11-tool >/dev/null 2>&1") == 0;
}

static void
softhsm_token(const char *keytype)
{
	char conf[400], cmd[1200];
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", tmpdir);
	FILE *f = fopen(conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
	        tmpdir);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "%s/tokens", tmpdir);
	ck_assert_int_eq(mkdir(cmd, 0700), 0);
	setenv("SOFTHSM2_CONF", conf, 1);
	snprintf(cmd, sizeof(cmd),
	         "softhsm2-util --init-token --free --label PRAT --so-pin 87654321 --pin 2468 >/dev/null && "
	         "pkcs11-tool --module %s --token-label PRAT --login --pin 2468 --keypairgen "
	         "--key-type %s --id 01 --label SIGN >/dev/null 2>&1",
	         SOFTHSM, keytype);
	ck_assert_int_eq(system(cmd), 0);
}

static void
softhsm_roundtrip(const char *keytype, int alg, const char *keyspec)
{
	if (!have_softhsm()) {
		fprintf(stderr, "softhsm2 not installed: skipped\n");
		return;
	}
	mk_tmp();
	softhsm_token(keytype);
	struct config *c = make_config("pkcs11", SOFTHSM, "PRAT", keyspec, NULL, NULL);
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_LOCKED };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 10000);
	ck_assert_msg(w.seen, "state %s: %s", signer_state_name(signer_status(s)->state),
	              signer_status(s)->reason);
	const struct signer_status *st = signer_status(s);
	ck_assert_str_eq(st->token, "PRAT");
	ck_assert(st->needs_pin);
	ck_assert(!st->pinpad);
	ck_assert_int_eq(st->cose_alg, alg); /* learnt from the public key before login */
	ck_assert_uint_eq(st->pin_min, 4);

	/* wrong PIN: SoftHSM says CKR_PIN_INCORRECT and sets COUNT_LOW, no number */
	struct signer_status after;
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(login_wait(l, s, "1357", &after), SIGNER_E_PIN_INCORRECT);
		ck_assert_int_eq(after.state, SIGNER_LOCKED);
		ck_assert_int_eq(after.tries_left, -1);
		ck_assert(after.count_low);
	}
	ck_assert_int_eq(login_wait(l, s, "2468", &after), 0);
	ck_assert_int_eq(after.state, SIGNER_READY);
	ck_assert(!after.count_low); /* a good login clears it */

	static const uint8_t msg[] = "lot 42";
	uint8_t sig[SIGNER_SIG_MAX];
	size_t siglen = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, alg, msg, sizeof(msg), sig, &siglen), 0);
	ck_assert_uint_eq(siglen, alg == SIGNER_ALG_ES256 ? 64u : 256u);
	struct st_res t = { 0 };
	ck_assert_int_eq(signer_selftest(s, 3, selftest_cb, &t), 0);
	run_until(l, &t.done, 10000);
	ck_assert_int_eq(t.t.result, 0);
	ck_assert(t.t.verified);
	ck_assert_int_eq(signer_verify(alg, t.pub, t.t.pub_len, msg, sizeof(msg), sig, siglen), 0);

	w = (struct waiter){ .want = SIGNER_LOCKED };
	signer_logout(s, "test");
	run_until(l, &w.seen, 5000);
	ck_assert(w.seen);
	siglen = sizeof(sig);
	ck_assert_int_eq(signer_sign(s, alg, msg, sizeof(msg), sig, &siglen), SIGNER_E_LOGIN_NEEDED);
	signer_free(s);
	loop_free(l);
	config_free(c);
	rm_tmp();
}

START_TEST(softhsm_ec)
{
	softhsm_roundtrip("EC:prime256v1", SIGNER_ALG_ES256, "SIGN");
}
END_TEST

START_TEST(softhsm_rsa_by_id)
{
	softhsm_roundtrip("rsa:2048", SIGNER_ALG_PS256, "id:01");
}
END_TEST

START_TEST(softhsm_wrong_label)
{
	if (!have_softhsm())
		return;
	mk_tmp();
	softhsm_token("EC:prime256v1");
	struct config *c = make_config("pkcs11", SOFTHSM, "OTHER", "SIGN", NULL, NULL);
	struct loop *l;
	ck_assert_int_eq(loop_new(&l), 0);
	struct waiter w = { .want = SIGNER_NO_TOKEN };
	struct signer *s;
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 10000);
	ck_assert(w.seen);
	ck_assert_int_eq(login_wait(l, s, "2468", NULL), SIGNER_E_NO_TOKEN);
	signer_free(s);
	config_free(c);
	/* right token, wrong key label: the login works, the key is missing */
	c = make_config("pkcs11", SOFTHSM, "PRAT", "NOPE", NULL, NULL);
	w = (struct waiter){ .want = SIGNER_LOCKED };
	ck_assert_int_eq(signer_new(l, c, status_cb, &w, &s), 0);
	run_until(l, &w.seen, 10000);
	ck_assert(w.seen);
	struct signer_status after;
	ck_assert_int_eq(login_wait(l, s, "2468", &after), SIGNER_E_NO_KEY);
	ck_assert_int_eq(after.state, SIGNER_ERROR);
	ck_assert(!after.logged_in);
	signer_free(s);
	config_free(c);
	loop_free(l);
	rm_tmp();
}
END_TEST

static Suite *
signer_suite(void)
{
	Suite *s = suite_create("signer");
	TCase *tc = tcase_create("pure");
	tcase_add_test(tc, p11_outcome_table);
	tcase_add_test(tc, backend_table);
	suite_add_tcase(s, tc);
	tc = tcase_create("file");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, file_es256);
	tcase_add_test(tc, file_ps256);
	tcase_add_test(tc, file_encrypted_pin);
	tcase_add_test(tc, file_sign_threads_logout);
	tcase_add_test(tc, idle_logout);
	tcase_add_test(tc, async_and_selftest);
	tcase_add_test(tc, unknown_and_missing);
	tcase_add_test(tc, cose_es256);
	tcase_add_test(tc, cose_ps256);
	suite_add_tcase(s, tc);
	tc = tcase_create("softhsm");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, softhsm_ec);
	tcase_add_test(tc, softhsm_rsa_by_id);
	tcase_add_test(tc, softhsm_wrong_label);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(signer_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
