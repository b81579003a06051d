/* The uploader's jobs on the queue thread; see batches.h. */
#include "daemon/upload/batches.h"

#include <errno.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/cbor.h"

/* room kept in the 4 MiB for the certificate chain and the map */
#define CHAIN_RESERVE (64u << 10)

struct batch *
batch_new(void)
{
	struct batch *b = calloc(1, sizeof(*b));
	uint8_t rnd[16];
	if (!b)
		return NULL;
	b->ids = calloc(INSURER_BATCH_SHEETS_MAX, sizeof(*b->ids));
	if (!b->ids || RAND_bytes(rnd, sizeof(rnd)) != 1) {
		batch_free(b);
		return NULL;
	}
	insurer_uuid_format(rnd, b->id);
	return b;
}

void
batch_free(struct batch *b)
{
	if (!b)
		return;
	free(b->ids);
	free(b->body);
	free(b);
}

struct batch *
batch_part(const struct batch *b, size_t from, size_t n)
{
	struct batch *p = batch_new();
	if (!p)
		return NULL;
	memcpy(p->cert, b->cert, sizeof(p->cert));
	memcpy(p->practitioner, b->practitioner, sizeof(p->practitioner));
	memcpy(p->ids, b->ids + from, n * sizeof(*b->ids));
	p->n = n;
	return p;
}

/* Decode a stored x5chain (CBOR array of bstr) into pointers into it. */
static int
chain_items(const uint8_t *chain, size_t len, struct cbor_doc *d, const uint8_t **certs,
            size_t *lens, size_t *n)
{
	struct cbor_iter it;
	const struct cbor_item *c;
	int r = cbor_decode(chain, len, NULL, 0, d);
	*n = 0;
	if (r < 0)
		return r;
	if (cbor_root(d)->type != CBOR_ARRAY)
		return -EBADMSG;
	cbor_iter_init(&it, d, cbor_root(d));
	while ((c = cbor_iter_next(&it))) {
		if (c->type != CBOR_BYTES || *n >= INSURER_CERTS_MAX)
			return -EBADMSG;
		certs[*n] = c->ptr;
		lens[(*n)++] = c->len;
	}
	return *n ? 0 : -EBADMSG;
}

static int
encode(struct queue *q, struct batch *b, const char *terminal_id, uint64_t created_s)
{
	uint8_t **pay = calloc(b->n, sizeof(*pay)), *chain = NULL;
	size_t *plen = calloc(b->n, sizeof(*plen)), chainlen = 0, nc = 0;
	const uint8_t *certs[INSURER_CERTS_MAX];
	size_t clen[INSURER_CERTS_MAX];
	struct cbor_doc d = { 0 };
	int r = -ENOMEM;

	if (!pay || !plen)
		goto out;
	for (size_t i = 0; i < b->n; i++)
		if ((r = queue_get(q, b->ids[i], NULL, &pay[i], &plen[i])) < 0)
			goto out;
	if ((r = queue_cert_get(q, b->cert, &chain, &chainlen)) < 0 ||
	    (r = chain_items(chain, chainlen, &d, certs, clen, &nc)) < 0)
		goto out;
	struct insurer_batch ib = { b->id, terminal_id, b->practitioner, created_s,
		                    certs, clen, nc, (const uint8_t *const *)pay, plen, b->n };
	free(b->body);
	b->body = NULL;
	r = insurer_batch_encode(&ib, &b->body, &b->len);
out:
	for (size_t i = 0; pay && i < b->n; i++)
		queue_free_payload(pay[i], plen[i]);
	free(pay);
	free(plen);
	free(chain);
	cbor_doc_free(&d);
	return r;
}

int
batch_form(struct queue *q, struct batch *b, const char *terminal_id, uint64_t created_s)
{
	struct queue_meta *m = calloc(INSURER_BATCH_SHEETS_MAX, sizeof(*m));
	struct queue_take_opts o = {
		.batch_id = b->id,
		.max_sheets = INSURER_BATCH_SHEETS_MAX,
		.max_bytes = INSURER_BATCH_BYTES_MAX - INSURER_BATCH_OVERHEAD(INSURER_BATCH_SHEETS_MAX,
		                                                              INSURER_CERTS_MAX) -
		             CHAIN_RESERVE,
	};
	int r;

	b->n = 0;
	if (!m)
		return -ENOMEM;
	r = queue_take_batch(q, &o, m, &b->n, b->cert);
	if (r == 0 && b->n) {
		snprintf(b->practitioner, sizeof(b->practitioner), "%s", m[0].practitioner);
		for (size_t i = 0; i < b->n; i++)
			memcpy(b->ids[i], m[i].id, sizeof(b->ids[i]));
		r = encode(q, b, terminal_id, created_s);
	}
	free(m);
	return r;
}

int
batch_reform(struct queue *q, struct batch *b, const char *terminal_id, uint64_t created_s)
{
	const char **ids = calloc(b->n, sizeof(*ids));
	int r;
	if (!ids)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++)
		ids[i] = b->ids[i];
	r = queue_rebatch(q, b->id, ids, b->n);
	free(ids);
	return r < 0 ? r : encode(q, b, terminal_id, created_s);
}

int
batch_commit(struct queue *q, const struct batch *b, const struct insurer_result *res)
{
	struct queue_update *u = calloc(b->n, sizeof(*u));
	int r;
	if (!u)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		u[i].id = b->ids[i];
		u[i].to = res[i].status == INSURER_REJECTED ? QUEUE_REJECTED : QUEUE_ACCEPTED;
		if (res[i].status == INSURER_REJECTED) {
			u[i].code = res[i].code;
			u[i].reason = res[i].reason[0] ? res[i].reason : NULL;
		}
	}
	r = queue_update_batch(q, u, b->n);
	free(u);
	return r;
}

int
batch_settle(struct queue *q, const struct batch *b, const char *code, const char *reason)
{
	struct queue_update *u = calloc(b->n ? b->n : 1, sizeof(*u));
	int r;
	if (!u)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		u[i].id = b->ids[i];
		u[i].to = code ? QUEUE_REJECTED : QUEUE_QUEUED;
		u[i].code = code;
		u[i].reason = reason;
	}
	r = queue_update_batch(q, u, b->n);
	free(u);
	return r;
}

int
batch_register_der(struct queue *q, const uint8_t *const *der, const size_t *lens, size_t n,
                   char digest[65], char *err, size_t errlen)
{
	int r;
	digest[0] = '\0';
	if (errlen)
		err[0] = '\0';
	if (n == 0)
		return queue_set_current_cert(q, NULL);
	if (n > INSURER_CERTS_MAX)
		n = INSURER_CERTS_MAX;
	if ((r = queue_cert_put(q, der, lens, n, digest)) == 0)
		r = queue_set_current_cert(q, digest);
	if (r < 0)
		snprintf(err, errlen, "%s", queue_last_error(q));
	return r;
}

int
batch_register_chain(struct queue *q, const char *pem_path, char digest[65], char *err,
                     size_t errlen)
{
	FILE *f = fopen(pem_path, "r");
	uint8_t *der[INSURER_CERTS_MAX] = { 0 };
	size_t lens[INSURER_CERTS_MAX], n = 0;
	X509 *x;
	int r = 0;

	digest[0] = '\0';
	if (errlen)
		err[0] = '\0';
	if (!f) {
		snprintf(err, errlen, "cannot open %s", pem_path);
		return -ENOENT;
	}
	while (n < INSURER_CERTS_MAX && (x = PEM_read_X509(f, NULL, NULL, NULL))) {
		int l = i2d_X509(x, &der[n]);
		X509_free(x);
		if (l <= 0) {
			r = -EINVAL;
			break;
		}
		lens[n++] = (size_t)l;
	}
	fclose(f);
	if (r == 0 && n == 0) {
		snprintf(err, errlen, "no certificate in %s", pem_path);
		r = -EINVAL;
	}
	if (r == 0 &&
	    (r = batch_register_der(q, (const uint8_t *const *)der, lens, n, digest, err, errlen)) < 0)
		snprintf(err, errlen, "%s: %s", pem_path, queue_last_error(q));
	for (size_t i = 0; i < n; i++)
		OPENSSL_free(der[i]);
	return r;
}
