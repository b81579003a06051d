/* The digital carte Vitale on a card session: the phone's presentation
 * (docs/digital-card.md) run on the session thread and turned into a
 * struct card_result.
 *
 * The module "digital" reads the [digital] trust anchors once at start-up
 * (a file that cannot be read, or holds no certificate, stops start-up
 * with its name) and keeps them, with the other [digital] settings and the
 * terminal id, read-only for the session threads. cards_digital_read() is
 * called by the profile reader for a profile with handler "digital": it
 * runs protocol/digital.c's digital_read() over the session's transmit,
 * passes the phone's "code to enter" moment on to the reader manager
 * (card_io.code_prompt: state code_entry, event CodeEntryRequested, longer
 * deadline), and fills the result: identity (holder first, then the
 * credential's beneficiaries), card fields, and the evidence a care sheet
 * keeps (the credential and device answer bytes as received, the nonce, the
 * terminal id). Every refusal carries its §12 name in card_result.reason.
 *
 * Nothing here logs identity data, credential bytes or nonces: only reason
 * names, sizes and counts (§16).
 */
#include "daemon/cards/cards_digital.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/objects.h>

#include "daemon/cards/cards.h"
#include "protocol/credential.h"
#include "daemon/core/daemon.h"
#include "protocol/digital.h"
#include "lib/fsutil.h"
#include "lib/hex.h"
#include "lib/log.h"

#define ANCHOR_FILE_MAX (1u << 20) /* a PEM bundle of a few certificates */

static struct {
	struct credential_anchors *anchors; /* NULL: none configured */
	char issuer_eku[201];
	int64_t skew_s;
	unsigned code_timeout_ms;
	char terminal_id[DIGITAL_TERMINAL_ID_MAX + 1];
	bool up;
} G;

/* §12, in the order of enum credential_reason: what each name means, for
 * people (reader state, CardError detail). */
static const char *const meanings[CREDENTIAL_R_COUNT] = {
	[CREDENTIAL_R_OK] = "accepted",
	[CREDENTIAL_R_NO_APPLET] = "not a vitaled phone (no applet)",
	[CREDENTIAL_R_BAD_VERSION] = "protocol version not supported",
	[CREDENTIAL_R_CBOR_MALFORMED] = "malformed answer (CBOR)",
	[CREDENTIAL_R_COSE_MALFORMED] = "malformed signed answer (COSE)",
	[CREDENTIAL_R_PAYLOAD_INVALID] = "a field of the credential or answer is invalid",
	[CREDENTIAL_R_ALG_UNSUPPORTED] = "signature algorithm not supported",
	[CREDENTIAL_R_UVM_UNSUPPORTED] = "the phone offers no personal code",
	[CREDENTIAL_R_CHAIN_UNTRUSTED] = "the credential's issuer is not trusted",
	[CREDENTIAL_R_CHAIN_EXPIRED] = "an issuer certificate is outside its validity",
	[CREDENTIAL_R_ISSUER_PURPOSE] = "the issuer certificate may not issue credentials",
	[CREDENTIAL_R_CREDENTIAL_SIGNATURE] = "the issuer's signature does not verify",
	[CREDENTIAL_R_CREDENTIAL_NOT_YET_VALID] = "the credential is not valid yet",
	[CREDENTIAL_R_CREDENTIAL_EXPIRED] = "the credential has expired",
	[CREDENTIAL_R_DEVICE_KEY_INVALID] = "the phone's key in the credential is invalid",
	[CREDENTIAL_R_DEVICE_SIGNATURE] = "the phone's signature does not verify",
	[CREDENTIAL_R_NONCE_MISMATCH] = "the phone signed another challenge (replay)",
	[CREDENTIAL_R_CID_MISMATCH] = "the phone's answer names another credential",
	[CREDENTIAL_R_UV_FALSE] = "the phone does not say the code was entered",
	[CREDENTIAL_R_CODE_REFUSED] = "the code was refused or cancelled on the phone",
	[CREDENTIAL_R_CODE_BLOCKED] = "the code is blocked on the phone",
	[CREDENTIAL_R_CODE_TIMEOUT] = "the code was not entered in time",
	[CREDENTIAL_R_ANSWER_TOO_LARGE] = "an answer is over its size limit",
	[CREDENTIAL_R_STATUS_UNEXPECTED] = "unexpected status word from the phone",
	[CREDENTIAL_R_CARD_LOST] = "the phone was taken away or the link failed",
	[CREDENTIAL_R_QR_UNREADABLE] = "the code is not a readable vitaled QR code",
	[CREDENTIAL_R_PRESENTATION_EXPIRED] = "the code was made too long ago (or the phone's clock is wrong)",
	[CREDENTIAL_R_REPLAYED] = "this code was already used",
	[CREDENTIAL_R_CHALLENGE_MISMATCH] = "the code does not carry a challenge this terminal shows",
	[CREDENTIAL_R_CHALLENGE_REQUIRED] = "the code has no challenge and this terminal requires one",
	[CREDENTIAL_R_INTERNAL_ERROR] = "internal error in the terminal",
};

static void
copy_text(char *dst, size_t dstlen, const char *src)
{
	snprintf(dst, dstlen, "%s", src ? src : "");
}

static void
iso_time(int64_t t, char *out, size_t outlen)
{
	struct tm tm;
	time_t tt = (time_t)t;
	if (!gmtime_r(&tt, &tm) || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		copy_text(out, outlen, "");
}

static void
add_person(struct card_result *out, int rank, const char *nir, const char *surname,
           const char *given, const char *birth_date)
{
	struct card_beneficiary *b = &out->beneficiaries[out->nbeneficiaries++];
	b->rank = rank;
	copy_text(b->surname, sizeof(b->surname), surname);
	copy_text(b->given_name, sizeof(b->given_name), given);
	copy_text(b->birth_date, sizeof(b->birth_date), birth_date);
	copy_text(b->nir, sizeof(b->nir), nir);
	/* credential_verify refused any NIR that fails nir_check (§10.3) */
	b->nir_valid = true;
}

/* "AMO 2025-01-01..2025-12-31, CMU 2025-03-01..2025-06-30" within the
 * field's bound; "…" marks a cut. */
static void
rights_text(const struct credential *c, char *out, size_t outlen)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < c->nrights; i++) {
		const struct credential_right *rt = &c->rights[i];
		int n = snprintf(out + o, outlen - o, "%s%s %s..%s", i ? ", " : "", rt->code, rt->from,
		                 rt->to);
		if (n < 0 || (size_t)n >= outlen - o) {
			/* cut: end on a marker the reader sees */
			if (outlen >= 4)
				memcpy(out + outlen - 4, "...", 4);
			return;
		}
		o += (size_t)n;
	}
}

void
cards_digital_fill(const struct credential *c, bool holder_verified, const char *presentation,
                   struct card_result *out)
{
	char buf[CARD_FIELD_VALUE_MAX];

	copy_text(out->kind, sizeof(out->kind), "digital");
	copy_text(out->presentation, sizeof(out->presentation), presentation);
	out->recognised = true;
	out->readable = true;
	out->nbeneficiaries = 0;
	add_person(out, 0, c->nir, c->surname, c->given_name, c->birth_date);
	for (size_t i = 0; i < c->nbeneficiaries && out->nbeneficiaries < CARD_BENEFICIARIES_MAX; i++) {
		const struct credential_beneficiary *b = &c->beneficiaries[i];
		add_person(out, (int)b->rank, b->nir, b->surname, b->given_name, b->birth_date);
	}

	card_result_add_field(out, "regime", c->regime);
	card_result_add_field(out, "caisse", c->caisse);
	card_result_add_field(out, "centre", c->centre);
	rights_text(c, buf, sizeof(buf));
	card_result_add_field(out, "rights", buf);
	{
		char today[11];
		time_t now = time(NULL);
		struct tm tm;
		if (localtime_r(&now, &tm) && strftime(today, sizeof(today), "%Y-%m-%d", &tm))
			card_result_add_field(out, "rights_today",
			                      credential_right_covers(c, today) ? "covered" : "not covered");
	}
	hex_encode(c->cid, sizeof(c->cid), true, buf, sizeof(buf));
	card_result_add_field(out, "credential_id", buf);
	iso_time(c->nbf, buf, sizeof(buf));
	card_result_add_field(out, "not_before", buf);
	iso_time(c->exp, buf, sizeof(buf));
	card_result_add_field(out, "not_after", buf);
	card_result_add_field(out, "holder_verified", holder_verified ? "yes" : "no");
	if (1 + c->nbeneficiaries > CARD_BENEFICIARIES_MAX)
		card_result_add_field(out, "note", "more beneficiaries in the credential than vitaled shows");

}

static void
fill_accepted(struct digital_result *dr, struct card_result *out)
{
	cards_digital_fill(&dr->cred, dr->holder_verified, dr->presentation, out);
	/* the evidence: the blobs change owner, nothing is copied */
	struct card_evidence *e = &out->evidence;
	e->present = true;
	e->holder_verified = dr->holder_verified;
	e->credential = dr->credential_bytes;
	e->credential_len = dr->credential_len;
	dr->credential_bytes = NULL;
	dr->credential_len = 0;
	e->device_answer = dr->answer_bytes;
	e->device_answer_len = dr->answer_len;
	dr->answer_bytes = NULL;
	dr->answer_len = 0;
	memcpy(e->nonce, dr->nonce, sizeof(e->nonce));
	copy_text(e->terminal_id, sizeof(e->terminal_id), dr->terminal_id);
	e->answer_ts = dr->answer_ts;
}

int
cards_digital_read(const struct profile *p, const struct card_io *io, struct card_result *out)
{
	(void)p;
	struct digital_io dio = {
		.transmit = io->transmit,
		.ctx = io->ctx,
		.code_prompt = io->code_prompt,
	};
	struct digital_params params = {
		.anchors = G.anchors,
		.issuer_eku = G.issuer_eku[0] ? G.issuer_eku : NULL,
		.skew_s = G.skew_s,
		.terminal_id = G.terminal_id,
		.code_timeout_ms = G.code_timeout_ms,
	};
	struct digital_result *dr = calloc(1, sizeof(*dr));
	int rc;

	if (!G.up) {
		copy_text(out->reason, sizeof(out->reason), "internal_error");
		copy_text(out->error, sizeof(out->error), "internal_error: the digital module is not up");
		free(dr);
		return -EIO;
	}
	if (!dr) {
		copy_text(out->reason, sizeof(out->reason), "internal_error");
		copy_text(out->error, sizeof(out->error), "internal_error: out of memory");
		return -ENOMEM;
	}
	if (io->reading)
		io->reading(io->ctx);
	rc = digital_read(&dio, &params, dr);
	if (rc == 0) {
		fill_accepted(dr, out);
		log_info("digital: presentation accepted (credential %zu bytes, answer %zu bytes, "
		         "%u code polls)",
		         out->evidence.credential_len, out->evidence.device_answer_len, dr->polls);
	} else if (dr->reason == CREDENTIAL_R_NO_APPLET) {
		/* §14: an ISO-DEP card without the applet is an unknown
		 * contactless card, not an error */
		copy_text(out->profile, sizeof(out->profile), "unknown");
		copy_text(out->kind, sizeof(out->kind), "unknown");
		copy_text(out->presentation, sizeof(out->presentation), "physical");
		out->recognised = false;
		out->readable = false;
		card_result_add_field(out, "note", "contactless card without the vitaled applet (no_applet)");
		log_info("digital: no applet (SW %04X): an unknown contactless card", dr->last_sw);
		rc = 0;
	} else {
		enum credential_reason why = dr->reason;
		const char *name = credential_reason_name(why);
		const char *meaning = (unsigned)why < CREDENTIAL_R_COUNT && meanings[why]
		                              ? meanings[why]
		                              : "refused";
		if (why == CREDENTIAL_R_CHAIN_UNTRUSTED && !G.anchors)
			meaning = "no trust anchor configured ([digital] trust_anchor)";
		copy_text(out->reason, sizeof(out->reason), name);
		snprintf(out->error, sizeof(out->error), "%s: %s", name, meaning);
		out->readable = false;
		log_info("digital: presentation refused: %s (last SW %04X, last answer %zu bytes, "
		         "%u code polls, %s)",
		         name, dr->last_sw, dr->last_size, dr->polls, rc == -EACCES ? "refused" : card_strerror(rc));
		if (rc == 0)
			rc = -EIO;
	}
	digital_result_clear(dr);
	free(dr);
	return rc;
}

const char *
cards_digital_meaning(enum credential_reason why)
{
	if (why == CREDENTIAL_R_CHAIN_UNTRUSTED && !G.anchors)
		return "no trust anchor configured ([digital] trust_anchor)";
	return (unsigned)why < CREDENTIAL_R_COUNT && meanings[why] ? meanings[why] : "refused";
}

int
cards_digital_policy(struct credential_policy *pol)
{
	memset(pol, 0, sizeof(*pol));
	pol->anchors = G.anchors;
	pol->issuer_eku = G.issuer_eku[0] ? G.issuer_eku : NULL;
	pol->skew_s = G.skew_s;
	pol->now = (int64_t)time(NULL);
	return G.up ? 0 : -EIO;
}

const char *
cards_digital_terminal_id(void)
{
	return G.terminal_id;
}

/* ------------------------------------------------------------------ */
/* the module */

static int
load_anchor(const char *path)
{
	char *pem = NULL;
	size_t len = 0;
	int r = fs_read_file(path, ANCHOR_FILE_MAX, &pem, &len);
	if (r < 0) {
		log_err("digital: trust anchor %s: %s", path,
		        r == -EFBIG ? "file too large" : strerror(-r));
		return r;
	}
	size_t before = credential_anchors_count(G.anchors);
	r = credential_anchors_add_pem(G.anchors, pem, len);
	explicit_bzero(pem, len);
	free(pem);
	if (r < 0) {
		log_err("digital: trust anchor %s: %s", path,
		        r == -EINVAL ? "no PEM certificate in it, or one does not parse" : strerror(-r));
		return r;
	}
	log_info("digital: trust anchor %s: %zu certificate(s)", path,
	         credential_anchors_count(G.anchors) - before);
	return 0;
}

int
cards_digital_init(struct daemon *d)
{
	const struct config *c = d->cfg;
	int r;

	memset(&G, 0, sizeof(G));
	/* the OID is checked here rather than at every tap */
	ASN1_OBJECT *oid = OBJ_txt2obj(c->issuer_eku, 1);
	if (!oid) {
		log_err("digital: [digital] issuer_eku = %s is not a dotted OID", c->issuer_eku);
		return -EINVAL;
	}
	ASN1_OBJECT_free(oid);
	copy_text(G.issuer_eku, sizeof(G.issuer_eku), c->issuer_eku);
	G.skew_s = c->clock_skew_s;
	G.code_timeout_ms = (unsigned)c->code_timeout_s * 1000u;
	copy_text(G.terminal_id, sizeof(G.terminal_id), d->terminal_id);

	if (c->trust_anchors.n > 0) {
		if ((r = credential_anchors_new(&G.anchors)) < 0) {
			log_err("digital: %s", strerror(-r));
			return r;
		}
		for (size_t i = 0; i < c->trust_anchors.n; i++) {
			if ((r = load_anchor(c->trust_anchors.v[i])) < 0) {
				credential_anchors_free(G.anchors);
				G.anchors = NULL;
				return r;
			}
		}
		log_info("digital: %zu trust anchor certificate(s), issuer purpose %s",
		         credential_anchors_count(G.anchors), G.issuer_eku);
	} else {
		log_warn("digital: no trust anchor configured ([digital] trust_anchor): every phone "
		         "will be refused (chain_untrusted)");
	}
	G.up = true;
	return 0;
}

void
cards_digital_fini(struct daemon *d)
{
	(void)d;
	credential_anchors_free(G.anchors);
	memset(&G, 0, sizeof(G));
}
