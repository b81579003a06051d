/* The digital carte Vitale's APDU flow, terminal side
 * (docs/digital-card.md §2.3 chaining, §4 commands, §11 checks).
 *
 * Every answer is gathered by one function that follows 61 xx with GET
 * RESPONSE (ISO 7816-4 §5.3.4) and stops at the first of: the answer's size
 * limit for that command, or 64 GET RESPONSE rounds (answer_too_large); it
 * never reads on "to be polite". The whole flow runs on the caller's thread
 * and talks to the phone only through io->transmit.
 */
#include "protocol/digital.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "protocol/cbor.h"

const uint8_t DIGITAL_AID[DIGITAL_AID_LEN] = { 0xF0, 0x56, 0x49, 0x54, 0x41,
	                                       0x4C, 0x45, 0x44, 0x01 };

#define SW_OK 0x9000
#define SW_PENDING 0x6300
#define SW_REFUSED 0x6982
#define SW_BLOCKED 0x6983
#define RAPDU_MAX 258 /* 256 data bytes + SW1 SW2 (§2.2 short APDUs) */

static int64_t
default_clock_ms(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
default_wall_s(void *ctx)
{
	(void)ctx;
	return (int64_t)time(NULL);
}

static int
default_sleep_ms(void *ctx, unsigned ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	(void)ctx;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
	return 0;
}

struct flow {
	const struct digital_io *io;
	int64_t (*clock_ms)(void *ctx);
	int64_t (*wall_s)(void *ctx);
	int (*sleep_ms)(void *ctx, unsigned ms);
	struct digital_result *res;
	uint8_t *acc;     /* gathered answer */
	size_t acclen;
	unsigned rounds;  /* GET RESPONSE rounds of the last command */
	uint16_t sw;      /* its final status word */
};

/* Send capdu and gather the answer with GET RESPONSE chaining (§2.3) into
 * f->acc, at most limit bytes. On return 0, f->sw is the final status word
 * (anything but 61 xx). */
static int
exchange(struct flow *f, const uint8_t *capdu, size_t clen, size_t limit)
{
	uint8_t r[RAPDU_MAX], getresp[5] = { 0x00, 0xC0, 0x00, 0x00, 0x00 };
	const uint8_t *cmd = capdu;
	size_t rlen, n, cmdlen = clen;
	int rc;

	f->acclen = 0;
	f->rounds = 0;
	f->sw = 0;
	for (;;) {
		rlen = sizeof(r);
		rc = f->io->transmit(f->io->ctx, cmd, cmdlen, r, &rlen);
		if (rc < 0) {
			f->res->reason = CREDENTIAL_R_CARD_LOST;
			return rc;
		}
		if (rlen < 2 || rlen > sizeof(r)) {
			f->res->reason = CREDENTIAL_R_CARD_LOST;
			return -EIO;
		}
		n = rlen - 2;
		f->sw = (uint16_t)(r[n] << 8 | r[n + 1]);
		f->res->last_sw = f->sw;
		if (n > limit - f->acclen) {
			f->res->last_size = f->acclen + n;
			f->res->reason = CREDENTIAL_R_ANSWER_TOO_LARGE;
			return -EACCES;
		}
		memcpy(f->acc + f->acclen, r, n);
		f->acclen += n;
		f->res->last_size = f->acclen;
		if (r[n] != 0x61)
			return 0;
		if (f->rounds >= DIGITAL_GET_RESPONSE_MAX) {
			f->res->reason = CREDENTIAL_R_ANSWER_TOO_LARGE;
			return -EACCES;
		}
		f->rounds++;
		getresp[4] = r[n + 1]; /* the xx we were given; 00 = 256 */
		cmd = getresp;
		cmdlen = sizeof(getresp);
	}
}

static int
refuse(struct digital_result *res, enum credential_reason r)
{
	res->reason = r;
	return -EACCES;
}

int
digital_check_select(const uint8_t *buf, size_t len, enum credential_reason *reason)
{
	static const struct cbor_limits lim = { CREDENTIAL_SELECT_MAX, CREDENTIAL_SELECT_MAX,
		                                CREDENTIAL_DEPTH_MAX };
	struct cbor_doc doc = { 0 };
	struct cbor_iter it;
	const struct cbor_item *m, *v, *algs, *uvm, *x;
	bool has_es256 = false, has_pin = false;
	uint64_t ver;
	int rc;

	*reason = CREDENTIAL_R_OK;
	/* S.3 */
	if (len > CREDENTIAL_SELECT_MAX) {
		*reason = CREDENTIAL_R_ANSWER_TOO_LARGE;
		return -EACCES;
	}
	/* S.4 */
	rc = cbor_decode(buf, len, &lim, CREDENTIAL_CBOR_FLAGS, &doc);
	if (rc == -ENOMEM) {
		*reason = CREDENTIAL_R_INTERNAL_ERROR;
		return rc;
	}
	rc = -EACCES;
	m = cbor_root(&doc);
	if (!m || m->type != CBOR_MAP) {
		*reason = CREDENTIAL_R_CBOR_MALFORMED;
		goto out;
	}
	/* S.5 */
	v = cbor_map_get_text(&doc, m, "v");
	if (cbor_get_uint(v, &ver)) {
		*reason = CREDENTIAL_R_PAYLOAD_INVALID;
		goto out;
	}
	if (ver != 1) {
		*reason = CREDENTIAL_R_BAD_VERSION;
		goto out;
	}
	/* S.6 */
	algs = cbor_map_get_text(&doc, m, "algs");
	uvm = cbor_map_get_text(&doc, m, "uvm");
	if (!algs || algs->type != CBOR_ARRAY || !uvm || uvm->type != CBOR_ARRAY) {
		*reason = CREDENTIAL_R_PAYLOAD_INVALID;
		goto out;
	}
	cbor_iter_init(&it, &doc, algs);
	while ((x = cbor_iter_next(&it))) {
		if (x->type != CBOR_UINT && x->type != CBOR_NEGINT) {
			*reason = CREDENTIAL_R_PAYLOAD_INVALID;
			goto out;
		}
		if (cbor_int_eq(x, -7))
			has_es256 = true;
	}
	cbor_iter_init(&it, &doc, uvm);
	while ((x = cbor_iter_next(&it))) {
		if (x->type != CBOR_TEXT) {
			*reason = CREDENTIAL_R_PAYLOAD_INVALID;
			goto out;
		}
		if (cbor_text_eq(x, "pin"))
			has_pin = true;
	}
	/* S.7, S.8 */
	if (!has_es256)
		*reason = CREDENTIAL_R_ALG_UNSUPPORTED;
	else if (!has_pin)
		*reason = CREDENTIAL_R_UVM_UNSUPPORTED;
	else
		rc = 0;
out:
	cbor_doc_free(&doc);
	return rc;
}

/* AUTHENTICATE data (§4.3): {"n": nonce, "t": terminal id, "ts": now},
 * deterministic; the whole APDU 80 88 00 00 Lc data 00 into apdu. */
static int
auth_apdu(const uint8_t nonce[CREDENTIAL_NONCE_LEN], const char *tid, int64_t now, uint8_t *apdu,
          size_t *apdulen)
{
	struct cbor_enc e;
	const uint8_t *data;
	size_t dlen;
	int rc;

	*apdulen = 0;
	cbor_enc_init(&e, 255);
	cbor_enc_map_begin(&e);
	cbor_enc_textz(&e, "n");
	cbor_enc_bytes(&e, nonce, CREDENTIAL_NONCE_LEN);
	cbor_enc_textz(&e, "t");
	cbor_enc_textz(&e, tid);
	cbor_enc_textz(&e, "ts");
	cbor_enc_uint(&e, now < 0 ? 0 : (uint64_t)now);
	cbor_enc_map_end(&e);
	rc = cbor_enc_finish(&e, &data, &dlen);
	if (rc == 0) {
		apdu[0] = 0x80;
		apdu[1] = 0x88;
		apdu[2] = 0x00;
		apdu[3] = 0x00;
		apdu[4] = (uint8_t)dlen;
		memcpy(apdu + 5, data, dlen);
		apdu[5 + dlen] = 0x00;
		*apdulen = dlen + 6;
	}
	cbor_enc_free(&e);
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

/* §4.3 polling and §11 A */
static int
authenticate(struct flow *f, const struct digital_params *p, unsigned interval, unsigned timeout)
{
	struct digital_result *res = f->res;
	struct credential_answer ans;
	uint8_t apdu[5 + 255 + 1];
	size_t apdulen;
	int64_t t0, elapsed;
	bool prompted = false;
	int rc;

	if (RAND_bytes(res->nonce, sizeof(res->nonce)) != 1) {
		res->reason = CREDENTIAL_R_INTERNAL_ERROR;
		return -EIO;
	}
	rc = auth_apdu(res->nonce, p->terminal_id, f->wall_s(f->io->ctx), apdu, &apdulen);
	if (rc) {
		res->reason = CREDENTIAL_R_INTERNAL_ERROR;
		return rc;
	}
	t0 = f->clock_ms(f->io->ctx);
	for (;;) {
		/* The identical APDU every time (same nonce, same ts). */
		rc = exchange(f, apdu, apdulen, CREDENTIAL_ANSWER_MAX);
		if (rc)
			return rc;
		if (f->sw != SW_PENDING)
			break;
		/* 63 00 is a direct answer, never with data or after a chain. */
		if (f->acclen || f->rounds)
			return refuse(res, CREDENTIAL_R_STATUS_UNEXPECTED);
		res->polls++;
		if (!prompted && f->io->code_prompt) {
			f->io->code_prompt(f->io->ctx);
			prompted = true;
		}
		elapsed = f->clock_ms(f->io->ctx) - t0;
		if (elapsed < 0)
			elapsed = 0;
		if (elapsed >= (int64_t)timeout)
			return refuse(res, CREDENTIAL_R_CODE_TIMEOUT);
		rc = f->sleep_ms(f->io->ctx, (int64_t)timeout - elapsed < (int64_t)interval
		                                     ? (unsigned)((int64_t)timeout - elapsed)
		                                     : interval);
		if (rc < 0) {
			res->reason = CREDENTIAL_R_CARD_LOST;
			return rc;
		}
	}
	if (f->sw == SW_REFUSED)
		return refuse(res, CREDENTIAL_R_CODE_REFUSED);
	if (f->sw == SW_BLOCKED)
		return refuse(res, CREDENTIAL_R_CODE_BLOCKED);
	if (f->sw != SW_OK)
		return refuse(res, CREDENTIAL_R_STATUS_UNEXPECTED);
	rc = credential_verify_answer(&res->cred, f->acc, f->acclen, res->nonce, &ans, &res->reason);
	if (rc)
		return rc;
	res->answer_bytes = dup_bytes(f->acc, f->acclen);
	if (!res->answer_bytes) {
		res->reason = CREDENTIAL_R_INTERNAL_ERROR;
		return -ENOMEM;
	}
	res->answer_len = f->acclen;
	res->answer_ts = ans.ts;
	return 0;
}

static bool
terminal_id_ok(const char *tid)
{
	size_t n;

	if (!tid)
		return false;
	n = strlen(tid);
	return n >= 1 && n <= DIGITAL_TERMINAL_ID_MAX && cbor_utf8_valid((const uint8_t *)tid, n);
}

int
digital_read(const struct digital_io *io, const struct digital_params *p,
             struct digital_result *out)
{
	static const uint8_t select[] = { 0x00, 0xA4, 0x04, 0x00, DIGITAL_AID_LEN,
		                          0xF0, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45, 0x44, 0x01,
		                          0x00 };
	static const uint8_t get_credential[] = { 0x80, 0xCA, 0x00, 0x00, 0x00 };
	struct credential_policy pol;
	struct flow f;
	int rc;

	memset(out, 0, sizeof(*out));
	memset(&f, 0, sizeof(f));
	if (!io || !io->transmit || !p || !terminal_id_ok(p->terminal_id) || p->skew_s < 0) {
		out->reason = CREDENTIAL_R_INTERNAL_ERROR;
		return -EINVAL;
	}
	f.io = io;
	f.res = out;
	f.clock_ms = io->clock_ms ? io->clock_ms : default_clock_ms;
	f.wall_s = io->wall_s ? io->wall_s : default_wall_s;
	f.sleep_ms = io->sleep_ms ? io->sleep_ms : default_sleep_ms;
	f.acc = malloc(DIGITAL_CHAIN_MAX);
	if (!f.acc) {
		out->reason = CREDENTIAL_R_INTERNAL_ERROR;
		return -ENOMEM;
	}

	/* S: SELECT (§4.1). Gathered up to the APDU layer's cap (S.1), then
	 * any status but 90 00 is no_applet (S.2, §5), then the 256-byte
	 * limit (S.3, in digital_check_select). */
	rc = exchange(&f, select, sizeof(select), DIGITAL_CHAIN_MAX);
	if (rc)
		goto out;
	if (f.sw != SW_OK) {
		rc = refuse(out, CREDENTIAL_R_NO_APPLET);
		goto out;
	}
	rc = digital_check_select(f.acc, f.acclen, &out->reason);
	if (rc)
		goto out;

	/* C: GET CREDENTIAL (§4.2) */
	rc = exchange(&f, get_credential, sizeof(get_credential), CREDENTIAL_MAX);
	if (rc)
		goto out;
	if (f.sw != SW_OK) {
		rc = refuse(out, CREDENTIAL_R_STATUS_UNEXPECTED);
		goto out;
	}
	pol = (struct credential_policy){ .anchors = p->anchors, .issuer_eku = p->issuer_eku,
		                          .now = f.wall_s(io->ctx), .skew_s = p->skew_s };
	rc = credential_verify(f.acc, f.acclen, &pol, &out->cred, &out->reason);
	if (rc)
		goto out;
	out->credential_bytes = dup_bytes(f.acc, f.acclen);
	if (!out->credential_bytes) {
		out->reason = CREDENTIAL_R_INTERNAL_ERROR;
		rc = -ENOMEM;
		goto out;
	}
	out->credential_len = f.acclen;

	/* A: AUTHENTICATE (§4.3) */
	if (!p->read_only) {
		rc = authenticate(&f, p, p->poll_interval_ms ? p->poll_interval_ms
		                                             : DIGITAL_POLL_INTERVAL_MS,
		                  p->code_timeout_ms ? p->code_timeout_ms : DIGITAL_CODE_TIMEOUT_MS);
		if (rc)
			goto out;
		out->holder_verified = true;
	}
	out->presentation = DIGITAL_PRESENTATION;
	memcpy(out->terminal_id, p->terminal_id, strlen(p->terminal_id) + 1);
	out->reason = CREDENTIAL_R_OK;
	rc = 0;
out:
	if (f.acc) {
		explicit_bzero(f.acc, DIGITAL_CHAIN_MAX);
		free(f.acc);
	}
	if (rc) {
		/* Only an accepted presentation carries identity (and the
		 * nonce is forgotten: §4.3). Keep the diagnostics. */
		struct digital_result keep = { .reason = out->reason, .last_sw = out->last_sw,
			                       .last_size = out->last_size, .polls = out->polls };
		digital_result_clear(out);
		*out = keep;
		if (out->reason == CREDENTIAL_R_OK)
			out->reason = CREDENTIAL_R_INTERNAL_ERROR;
	}
	return rc;
}

void
digital_result_clear(struct digital_result *r)
{
	if (!r)
		return;
	credential_clear(&r->cred);
	if (r->credential_bytes) {
		explicit_bzero(r->credential_bytes, r->credential_len);
		free(r->credential_bytes);
	}
	if (r->answer_bytes) {
		explicit_bzero(r->answer_bytes, r->answer_len);
		free(r->answer_bytes);
	}
	explicit_bzero(r, sizeof(*r));
}
