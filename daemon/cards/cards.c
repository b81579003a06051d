/* Card results: wiping, JSON views, and the placeholder card reader that
 * stands in until the profile interpreter is plugged in; see cards.h.
 */
#include "daemon/cards/cards.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "lib/log.h"

static void
free_blob(uint8_t **p, size_t *len)
{
	if (*p) {
		explicit_bzero(*p, *len);
		free(*p);
	}
	*p = NULL;
	*len = 0;
}

void
card_result_clear(struct card_result *r)
{
	free_blob(&r->evidence.credential, &r->evidence.credential_len);
	free_blob(&r->evidence.device_answer, &r->evidence.device_answer_len);
	explicit_bzero(r, sizeof(*r));
}

void
card_result_move(struct card_result *dst, struct card_result *src)
{
	if (dst == src)
		return;
	card_result_clear(dst);
	memcpy(dst, src, sizeof(*dst));
	/* the blobs now belong to dst: forget them without freeing */
	explicit_bzero(src, sizeof(*src));
}

const char *
card_strerror(int err)
{
	switch (err) {
	case -ETIMEDOUT: return "no answer in time";
	case -ENODEV: return "the card was removed";
	case -ECONNRESET: return "the card was reset by another application";
	case -EHOSTDOWN: return "the reader service (pcscd) went away";
	case -EBUSY: return "another application holds the card";
	case -ENOBUFS: return "the answer is too long";
	case -ENOMEM: return "out of memory";
	case -EIO: return "transmission error";
	default: return strerror(err < 0 ? -err : err);
	}
}

void
card_atr_hex(const uint8_t *atr, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	if (outlen == 0)
		return;
	for (size_t i = 0; i < len && o + 2 < outlen; i++) {
		out[o++] = hex[atr[i] >> 4];
		out[o++] = hex[atr[i] & 0x0F];
	}
	out[o] = '\0';
}

int
card_result_add_field(struct card_result *r, const char *name, const char *value)
{
	if (r->nfields >= CARD_FIELDS_MAX)
		return -ENOSPC;
	struct card_field *f = &r->fields[r->nfields++];
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->value, sizeof(f->value), "%s", value);
	return 0;
}

/* base64 (RFC 4648 §4, padded) of a blob as a JSON string; null for none. */
static json_t *
b64_json(const uint8_t *p, size_t len)
{
	if (!p || len == 0 || len > 1u << 20)
		return json_null();
	size_t n = 4 * ((len + 2) / 3) + 1;
	char *buf = malloc(n);
	if (!buf)
		return NULL;
	EVP_EncodeBlock((unsigned char *)buf, p, (int)len);
	json_t *s = json_string(buf);
	free(buf);
	return s;
}

static json_t *
evidence_json(const struct card_evidence *e)
{
	char nonce[CARD_NONCE_LEN * 2 + 1];
	card_atr_hex(e->nonce, sizeof(e->nonce), nonce, sizeof(nonce));
	json_t *o = json_pack("{s:b,s:I,s:I,s:s,s:s,s:I}", "holder_verified", e->holder_verified,
	                      "credential_len", (json_int_t)e->credential_len, "device_answer_len",
	                      (json_int_t)e->device_answer_len, "nonce",
	                      e->holder_verified ? nonce : "", "terminal_id", e->terminal_id,
	                      "answer_ts", (json_int_t)e->answer_ts);
	if (!o)
		return NULL;
	json_object_set_new(o, "credential", b64_json(e->credential, e->credential_len));
	json_object_set_new(o, "device_answer", b64_json(e->device_answer, e->device_answer_len));
	return o;
}

json_t *
card_result_json(const struct card_result *r, enum card_json what)
{
	json_t *bens = json_array();
	json_t *o = NULL;
	if (!bens)
		return NULL;
	for (size_t i = 0; i < r->nbeneficiaries && i < CARD_BENEFICIARIES_MAX; i++) {
		const struct card_beneficiary *b = &r->beneficiaries[i];
		json_t *jb;
		if (what == CARD_JSON_FULL) {
			jb = json_pack("{s:i,s:s,s:s,s:s?,s:s?,s:b,s:s?}", "rank", b->rank, "surname",
			               b->surname, "given_name", b->given_name, "birth_date",
			               b->birth_date[0] ? b->birth_date : NULL, "nir",
			               b->nir[0] ? b->nir : NULL, "nir_valid", b->nir_valid,
			               "nationality", b->nationality[0] ? b->nationality : NULL);
		} else {
			char masked[32];
			log_mask_nir(b->nir[0] ? b->nir : NULL, masked, sizeof(masked));
			jb = json_pack("{s:i,s:s?}", "rank", b->rank, "nir_masked",
			               b->nir[0] ? masked : NULL);
			if (jb && what == CARD_JSON_SUMMARY_ID) {
				json_object_set_new(jb, "surname", json_string(b->surname));
				json_object_set_new(jb, "given_name", json_string(b->given_name));
			}
		}
		if (!jb || json_array_append_new(bens, jb) < 0)
			goto fail;
	}
	o = json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:I,s:s?}", "profile", r->profile, "kind", r->kind,
	              "presentation", r->presentation[0] ? r->presentation : "physical",
	              "atr", r->atr_hex, "recognised", r->recognised, "readable", r->readable,
	              "apdus", (json_int_t)r->apdus, "error", r->error[0] ? r->error : NULL);
	if (!o)
		goto fail;
	json_object_set_new(o, "beneficiaries", bens);
	if (r->reason[0])
		json_object_set_new(o, "reason", json_string(r->reason));
	if (what == CARD_JSON_FULL && r->evidence.present)
		json_object_set_new(o, "evidence", evidence_json(&r->evidence));
	if (what == CARD_JSON_FULL) {
		json_t *fields = json_object();
		for (size_t i = 0; fields && i < r->nfields && i < CARD_FIELDS_MAX; i++)
			json_object_set_new(fields, r->fields[i].name, json_string(r->fields[i].value));
		json_object_set_new(o, "fields", fields ? fields : json_null());
	}
	return o;
fail:
	json_decref(bens);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* the placeholder */

static void
placeholder_identify(const uint8_t *atr, size_t atr_len, struct card_result *out)
{
	snprintf(out->profile, sizeof(out->profile), "unknown");
	snprintf(out->kind, sizeof(out->kind), "unknown");
	card_atr_hex(atr, atr_len, out->atr_hex, sizeof(out->atr_hex));
	out->recognised = false;
	out->readable = false;
}

static int
placeholder_read(const struct card_io *io, struct card_result *out)
{
	/* ISO 7816-4 §11.2.2 SELECT, P1 = 00 (MF/DF/EF by file identifier),
	 * file 3F00 (the MF): harmless on any ISO card, and an answer is all
	 * we keep */
	static const uint8_t select_mf[] = { 0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00 };
	uint8_t rapdu[258];
	size_t rlen = sizeof(rapdu);
	int r = io->transmit(io->ctx, select_mf, sizeof(select_mf), rapdu, &rlen);
	if (r < 0) {
		snprintf(out->error, sizeof(out->error), "SELECT MF failed: %s", card_strerror(r));
		return r;
	}
	if (rlen < 2) {
		snprintf(out->error, sizeof(out->error), "the card answered a SELECT without a status word");
		return -EIO;
	}
	char sw[8];
	snprintf(sw, sizeof(sw), "%02X%02X", rapdu[rlen - 2], rapdu[rlen - 1]);
	card_result_add_field(out, "probe_sw", sw);
	explicit_bzero(rapdu, sizeof(rapdu));
	return 0;
}

const struct card_reader_fn card_reader_placeholder = {
	.name = "placeholder",
	.identify = placeholder_identify,
	.read = placeholder_read,
};

const struct card_reader_fn *
cards_reader(void)
{
	return profiles_loaded() ? &card_reader_profiles : &card_reader_placeholder;
}
