/* Card results: wiping, moving, fields, error texts and the masked NIR;
 * see cards.h. The bottom of daemon/cards/: it calls nothing above it.
 */
#include "daemon/cards/cards.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/nir.h"

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

char *
card_nir_mask(const char *nir, char *out, size_t outlen)
{
	/* nir_mask masks as many characters as it is given: a NIR of another
	 * length than 15 read from a card is still shown as three characters
	 * and twelve '*', as it always was, so it is given a full NIR's length
	 * padded with '*' (never the bytes past the string) */
	char buf[NIR_LEN + 1];
	size_t n = nir ? strnlen(nir, NIR_LEN) : 0;
	if (n < 3)
		return nir_mask(NULL, 0, out, outlen);
	memcpy(buf, nir, n);
	memset(buf + n, '*', NIR_LEN - n);
	buf[NIR_LEN] = '\0';
	nir_mask(buf, NIR_LEN, out, outlen);
	explicit_bzero(buf, sizeof(buf));
	return out;
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

const char *
card_result_field(const struct card_result *r, const char *name)
{
	for (size_t i = 0; i < r->nfields && i < CARD_FIELDS_MAX; i++)
		if (strcmp(r->fields[i].name, name) == 0)
			return r->fields[i].value;
	return NULL;
}

const char *
card_opposition_serial(const struct card_result *r)
{
	if (strcmp(r->presentation, "digital-nfc") == 0)
		return NULL;
	const char *s = card_result_field(r, "serial");
	return s && s[0] ? s : NULL;
}

static bool
why_not(char *why, size_t whylen, const char *text)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", text);
	return false;
}

bool
card_can_back_sheet(const struct card_result *r, const char *read_at, char *why, size_t whylen)
{
	if (why && whylen)
		why[0] = '\0';
	bool patient = strcmp(r->kind, "patient") == 0 || strcmp(r->kind, "digital") == 0;
	if (!patient)
		return why_not(why, whylen, "not a patient card");
	if (!r->readable)
		return why_not(why, whylen, "the card could not be read");
	if (r->nbeneficiaries == 0)
		return why_not(why, whylen, "no beneficiary on the card");
	if (r->opposed)
		return why_not(why, whylen, "the card is in opposition (reported lost, stolen or "
		                            "replaced)");
	if (strcmp(r->presentation, "digital-nfc") == 0 || strcmp(r->presentation, "digital-qr") == 0) {
		const struct card_evidence *e = &r->evidence;
		if (!e->present || !e->holder_verified || !e->device_answer || !e->device_answer_len)
			return why_not(why, whylen, "no device-signed answer from the phone");
		return true;
	}
	const char *serial = NULL;
	for (size_t i = 0; i < r->nfields && i < CARD_FIELDS_MAX; i++)
		if (strcmp(r->fields[i].name, "serial") == 0)
			serial = r->fields[i].value;
	if (!serial || !serial[0])
		return why_not(why, whylen, "no card serial (EF 2F02)");
	if (!read_at || !read_at[0])
		return why_not(why, whylen, "no read time for the card session");
	return true;
}

const char *
card_rights_state_name(enum card_rights_state st)
{
	static const char *const names[] = { "none",    "pending", "checked", "offline",
		                             "timeout", "unknown", "error" };
	return (unsigned)st < sizeof(names) / sizeof(names[0]) ? names[st] : "?";
}
