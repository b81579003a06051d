/* The "file" signer backend: a PEM private key read with OpenSSL.
 *
 * For development and tests only: the key sits in a file, not on the
 * practitioner's card, so anyone who can read the file can sign as the
 * practitioner. The daemon says so at start.
 *
 * [signer] key_file = PATH. An encrypted PEM (PKCS#8 "ENCRYPTED PRIVATE
 * KEY" or a legacy "Proc-Type: 4,ENCRYPTED" block) needs the PIN as its
 * passphrase: the state is "locked" until SubmitPin, a wrong PIN is
 * PinIncorrect with unknown tries (a file has no counter; the daemon's
 * rate limit is the only brake), and logout forgets the decrypted key. A
 * clear PEM is usable at once and takes no PIN. The certificate (then its
 * intermediates) comes from [signer] cert_file, or CERTIFICATE blocks in
 * key_file when that is empty: it gives "who" like a card's certificate
 * would, and the chain the uploader sends (certificate op). The file is
 * looked at on every poll (a stat) and read again when it changed: a
 * renewal needs no restart.
 *
 * All functions run on the signer's worker thread, but file_sign, which
 * may run on any thread under the signer's read lock (sign_any_thread):
 * it only reads the key, with an EVP_MD_CTX of its own.
 */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "protocol/cose.h"
#include "lib/log.h"
#include "protocol/pin.h"
#include "drivers/signer.h"

#define KEY_FILE_MAX (64u * 1024u)

struct fkey {
	char path[4096];
	EVP_PKEY *pkey;
	bool encrypted;
	uint8_t *pub;
	size_t pub_len;
	char cert_path[4096]; /* cert_file, or path */
	struct stat cert_sb;  /* what the last read saw (st_ino 0: none yet) */
	struct signer_chain chain; /* the last chain read, and the file it came from */
	struct stat chain_sb;
	bool chain_read;
	int ifd;              /* inotify on cert_path's folder, or -1 */
	const char *cert_base; /* cert_path's last component (in cert_path) */
};

static bool
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Read the whole file (bounded) into a memory BIO. */
static BIO *
read_file(const char *path, struct signer_status *st)
{
	FILE *f = fopen(path, "re");
	BIO *b = NULL;
	char *buf = NULL;
	if (!f) {
		snprintf(st->reason, sizeof(st->reason), "cannot open the key file: %s", strerror(errno));
		return NULL;
	}
	struct stat sb;
	if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
		log_warn("signer: %s is readable by group or others; it should be mode 0600", path);
	buf = malloc(KEY_FILE_MAX);
	if (!buf)
		goto out;
	size_t n = fread(buf, 1, KEY_FILE_MAX, f);
	if (ferror(f) || n == KEY_FILE_MAX) {
		snprintf(st->reason, sizeof(st->reason), "the key file is unreadable or too large");
		goto out;
	}
	b = BIO_new(BIO_s_mem());
	if (b && BIO_write(b, buf, (int)n) != (int)n) {
		BIO_free(b);
		b = NULL;
	}
out:
	if (buf) {
		secmem_wipe(buf, KEY_FILE_MAX); /* a clear key file's bytes */
		free(buf);
	}
	fclose(f);
	return b;
}

struct pw {
	const struct secmem_pin *pin;
	bool asked;
};

/* OpenSSL's passphrase callback: the PIN, or nothing (just note it was asked). */
static int
pw_cb(char *buf, int size, int rwflag, void *u)
{
	struct pw *pw = u;
	pw->asked = true;
	if (!pw->pin)
		return -1;
	size_t n = secmem_pin_len(pw->pin);
	if (size < 0 || n > (size_t)size)
		return -1;
	memcpy(buf, secmem_pin_digits(pw->pin), n);
	return (int)n;
}

static int
check_key(EVP_PKEY *pk, struct signer_status *st)
{
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC) {
		char grp[64];
		size_t gl;
		if (!EVP_PKEY_get_group_name(pk, grp, sizeof(grp), &gl) || strcmp(grp, "prime256v1")) {
			snprintf(st->reason, sizeof(st->reason), "the key is EC but not on P-256");
			return SIGNER_E_BAD_ALG;
		}
		st->cose_alg = SIGNER_ALG_ES256;
		st->key_bits = 256;
		return 0;
	}
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA) {
		st->key_bits = (unsigned)EVP_PKEY_get_bits(pk);
		if (st->key_bits < 2048) {
			snprintf(st->reason, sizeof(st->reason), "the RSA key is shorter than 2048 bits");
			return SIGNER_E_BAD_ALG;
		}
		st->cose_alg = SIGNER_ALG_PS256;
		return 0;
	}
	snprintf(st->reason, sizeof(st->reason), "the key is neither EC P-256 nor RSA");
	return SIGNER_E_BAD_ALG;
}

static void
take_pub(struct fkey *k, EVP_PKEY *pk)
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pk, &der);
	if (n > 0) {
		uint8_t *c = malloc((size_t)n);
		if (c) {
			memcpy(c, der, (size_t)n);
			free(k->pub);
			k->pub = c;
			k->pub_len = (size_t)n;
		}
	}
	OPENSSL_free(der);
}

static void
read_cert(struct fkey *k, struct signer_status *st)
{
	struct signer_status tmp = *st; /* a missing cert_file is no key error */
	if (stat(k->cert_path, &k->cert_sb) < 0)
		memset(&k->cert_sb, 0, sizeof(k->cert_sb));
	BIO *b = read_file(k->cert_path, &tmp);
	st->who[0] = st->cert_id[0] = '\0';
	if (!b)
		return;
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	if (x) {
		X509_NAME *nm = X509_get_subject_name(x);
		X509_NAME_get_text_by_NID(nm, NID_commonName, st->who, (int)sizeof(st->who));
		X509_NAME_get_text_by_NID(nm, NID_serialNumber, st->cert_id, (int)sizeof(st->cert_id));
		if (!k->pub)
			take_pub(k, X509_get0_pubkey(x));
		X509_free(x);
	}
	BIO_free(b);
}

/* Load the key with pin (NULL: try without). */
static int
load(struct fkey *k, const struct secmem_pin *pin, struct signer_status *st)
{
	BIO *b = read_file(k->path, st);
	if (!b)
		return SIGNER_E_NO_TOKEN;
	struct pw pw = { pin, false };
	EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, pw_cb, &pw);
	BIO_free(b);
	if (!pk) {
		if (pw.asked) {
			k->encrypted = true;
			return pin ? SIGNER_E_PIN_INCORRECT : SIGNER_E_LOGIN_NEEDED;
		}
		snprintf(st->reason, sizeof(st->reason), "no PEM private key in the key file");
		return SIGNER_E_NO_KEY;
	}
	int r = check_key(pk, st);
	if (r < 0) {
		EVP_PKEY_free(pk);
		return r;
	}
	EVP_PKEY_free(k->pkey);
	k->pkey = pk;
	take_pub(k, pk);
	return 0;
}

static void file_close(void *ctx);

/* Watch cert_path's folder (a renewal is usually written next to it and
 * renamed over it, which a watch on the file itself would miss). A
 * symbolic link (its target may change elsewhere) or an inotify failure
 * leaves ifd at -1: the daemon then polls on its timer as before. */
static void
watch_open(struct fkey *k)
{
	char dir[4096];
	struct stat sb;
	char *slash;
	k->ifd = -1;
	if (lstat(k->cert_path, &sb) == 0 && S_ISLNK(sb.st_mode))
		return;
	snprintf(dir, sizeof(dir), "%s", k->cert_path);
	slash = strrchr(dir, '/');
	k->cert_base = strrchr(k->cert_path, '/') ? strrchr(k->cert_path, '/') + 1 : k->cert_path;
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof(dir), ".");
	if (lstat(dir, &sb) == 0 && S_ISLNK(sb.st_mode))
		return;
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		return;
	if (inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |
	                                       IN_DELETE | IN_ATTRIB | IN_DELETE_SELF |
	                                       IN_MOVE_SELF) < 0) {
		close(fd);
		return;
	}
	k->ifd = fd;
}

static int
file_watch_fd(void *ctx)
{
	const struct fkey *k = ctx;
	return k ? k->ifd : -1;
}

/* True when an event names the certificate file, or says the watch itself
 * is gone or overflowed (then a poll cannot hurt). */
static bool
file_watch_read(void *ctx)
{
	const struct fkey *k = ctx;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool due = false;
	ssize_t n;
	if (!k || k->ifd < 0)
		return false;
	while ((n = read(k->ifd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off + (ssize_t)sizeof(struct inotify_event) <= n;) {
			const struct inotify_event *e = (const struct inotify_event *)(buf + off);
			if (e->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
				due = true;
			else if (e->len && !strcmp(e->name, k->cert_base))
				due = true;
			off += (ssize_t)sizeof(*e) + e->len;
		}
	}
	return due;
}

static int
file_open(const struct config *c, void **ctx, struct signer_status *st)
{
	struct fkey *k = calloc(1, sizeof(*k));
	*ctx = NULL;
	if (!k)
		return -ENOMEM;
	log_warn("signer: the file backend is for development and tests only: the practitioner's "
	         "key is in %s, not on a card", c->signer_key_file);
	snprintf(k->path, sizeof(k->path), "%s", c->signer_key_file);
	snprintf(k->cert_path, sizeof(k->cert_path), "%s",
	         c->signer_cert_file && c->signer_cert_file[0] ? c->signer_cert_file : c->signer_key_file);
	const char *base = strrchr(k->path, '/');
	snprintf(st->token, sizeof(st->token), "%.64s", base ? base + 1 : k->path);
	st->pin_min = PIN_DIGITS_MIN;
	st->pin_max = SECMEM_PIN_MAX;
	st->pinpad = false;
	st->tries_left = -1;
	int r = load(k, NULL, st);
	if (r == 0) {
		st->needs_pin = false;
		st->logged_in = true;
		st->state = SIGNER_READY;
	} else if (r == SIGNER_E_LOGIN_NEEDED) {
		st->needs_pin = true;
		st->logged_in = false;
		st->state = SIGNER_LOCKED;
	} else if (r == SIGNER_E_NO_TOKEN) {
		st->state = SIGNER_NO_TOKEN;
	} else {
		st->state = SIGNER_ERROR;
	}
	read_cert(k, st);
	watch_open(k);
	*ctx = k;
	return 0;
}

static int
file_login(void *ctx, const struct secmem_pin *pin, struct signer_status *st)
{
	struct fkey *k = ctx;
	if (!k->encrypted || st->logged_in)
		return SIGNER_E_NOT_EXPECTED;
	if (!pin)
		return SIGNER_E_PIN_MALFORMED;
	int r = load(k, pin, st);
	if (r == 0) {
		st->logged_in = true;
		st->state = SIGNER_READY;
		st->reason[0] = '\0';
	} else if (r == SIGNER_E_PIN_INCORRECT) {
		st->state = SIGNER_LOCKED;
		st->tries_left = -1;
	} else if (r == SIGNER_E_NO_TOKEN) {
		st->state = SIGNER_NO_TOKEN;
	} else {
		st->state = SIGNER_ERROR;
	}
	return r;
}

static int
file_logout(void *ctx, struct signer_status *st)
{
	struct fkey *k = ctx;
	if (!k->encrypted)
		return 0; /* a clear key stays usable: there is nothing to forget */
	EVP_PKEY_free(k->pkey); /* OpenSSL clears private key material on free */
	k->pkey = NULL;
	st->logged_in = false;
	st->state = SIGNER_LOCKED;
	return 0;
}

static int
file_sign(void *ctx, struct signer_status *st, int alg, const uint8_t *tbs, size_t len,
          uint8_t *sig, size_t *siglen)
{
	struct fkey *k = ctx;
	size_t cap = *siglen;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char *der = NULL;
	int r = -EIO;
	*siglen = 0;
	if (!k->pkey)
		return SIGNER_E_LOGIN_NEEDED;
	if (alg != st->cose_alg)
		return SIGNER_E_BAD_ALG;
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, k->pkey) != 1)
		goto out;
	if (alg == SIGNER_ALG_PS256 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1 ||
	     EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1))
		goto out;
	size_t dl = 0;
	if (EVP_DigestSign(md, NULL, &dl, tbs, len) != 1)
		goto out;
	der = OPENSSL_malloc(dl);
	if (!der || EVP_DigestSign(md, der, &dl, tbs, len) != 1)
		goto out;
	if (alg == SIGNER_ALG_ES256) {
		if (cap < 64 || cose_ecdsa_der_to_raw(der, dl, 32, sig) < 0)
			goto out;
		*siglen = 64;
	} else {
		if (dl > cap) {
			r = -ENOBUFS;
			goto out;
		}
		memcpy(sig, der, dl);
		*siglen = dl;
	}
	r = 0;
out:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	return r;
}

static int
file_public_key(void *ctx, uint8_t **der, size_t *len)
{
	struct fkey *k = ctx;
	*der = NULL;
	*len = 0;
	if (!k->pub)
		return -ENOENT;
	*der = malloc(k->pub_len);
	if (!*der)
		return -ENOMEM;
	memcpy(*der, k->pub, k->pub_len);
	*len = k->pub_len;
	return 0;
}

/* A renewed certificate file: read "who" again (the chain follows in
 * file_certificate). */
static int
file_poll(void *ctx, struct signer_status *st)
{
	struct fkey *k = ctx;
	struct stat sb;
	if (stat(k->cert_path, &sb) < 0)
		memset(&sb, 0, sizeof(sb));
	if (!same_file(&sb, &k->cert_sb))
		read_cert(k, st);
	return 0;
}

static int
file_certificate(void *ctx, struct signer_chain *out)
{
	struct fkey *k = ctx;
	uint8_t *der[SIGNER_CHAIN_MAX * 2];
	size_t len[SIGNER_CHAIN_MAX * 2], n = 0;
	struct stat sb;
	X509 *x;
	if (stat(k->cert_path, &sb) < 0)
		return -ENOENT;
	if (k->chain_read && same_file(&sb, &k->chain_sb))
		return k->chain.n ? signer_chain_copy(out, &k->chain) : -ENOENT;
	BIO *b = BIO_new_file(k->cert_path, "r");
	if (!b)
		return -ENOENT;
	while (n < SIGNER_CHAIN_MAX * 2 && (x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
		unsigned char *d = NULL;
		int l = i2d_X509(x, &d);
		X509_free(x);
		if (l > 0 && (der[n] = malloc((size_t)l))) {
			memcpy(der[n], d, (size_t)l);
			len[n++] = (size_t)l;
		}
		OPENSSL_free(d);
	}
	BIO_free(b);
	signer_chain_clear(&k->chain);
	int r = n ? signer_chain_build(der, len, n, k->pub, k->pub_len, &k->chain) : -ENOENT;
	if (r < 0 && r != -ENOENT)
		return r;
	k->chain_read = true;
	k->chain_sb = sb;
	return k->chain.n ? signer_chain_copy(out, &k->chain) : -ENOENT;
}

static void
file_close(void *ctx)
{
	struct fkey *k = ctx;
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k->pub);
	signer_chain_clear(&k->chain);
	if (k->ifd >= 0)
		close(k->ifd);
	free(k);
}

const struct signer_ops signer_file_ops = {
	.name = "file",
	.compiled_in = true,
	.open = file_open,
	.login = file_login,
	.logout = file_logout,
	.poll = file_poll,
	.sign = file_sign,
	.public_key = file_public_key,
	.close = file_close,
	.certificate = file_certificate,
	.sign_any_thread = true,
	.watch_fd = file_watch_fd,
	.watch_read = file_watch_read,
};
