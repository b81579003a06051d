/* PIN blocks, VERIFY and RESET RETRY COUNTER, status words, and the
 * PC/SC part 10 structures; see pin.h for the contract and the references.
 *
 * What must stay true: a PIN is checked in full before any byte of it is
 * written; every failure after writing started wipes the whole output
 * buffer; no function keeps a copy of a PIN anywhere but in the caller's
 * output buffer (no stack temporaries holding digits).
 */
#include "protocol/pin.h"
#include "lib/secmem.h"

#include <errno.h>
#include <string.h>

const struct pin_params pin_params_cps = {
	.format = PIN_FORMAT_ASCII,
	.cla = 0x00,
	.ref = 0x01,
	.min_len = 4,
	.max_len = 4, /* a CPS PIN is 4 digits */
	.block_len = 8,
	.pad = 0xFF,
	.puk_len = 8,
};

const struct pin_pinpad pin_pinpad_default = {
	.timeout_s = 30,
	.timeout2_s = 10,
	.validation = 0x02,
	.messages = 1,
	.lang_id = 0x040C,
	.msg_index = 0,
};

#define INS_VERIFY 0x20
#define INS_RESET_RETRY_COUNTER 0x2C

/* A wipe the compiler may not drop (protocol/ has no daemon helpers). */
static void
wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

int
pin_params_check(const struct pin_params *p)
{
	if (!p || p->min_len < PIN_DIGITS_MIN || p->max_len > PIN_DIGITS_MAX ||
	    p->min_len > p->max_len || p->block_len == 0 || p->block_len > PIN_BLOCK_MAX ||
	    p->puk_len > PIN_PUK_MAX)
		return -EINVAL;
	switch (p->format) {
	case PIN_FORMAT_ASCII:
		return p->max_len <= p->block_len ? 0 : -EINVAL;
	case PIN_FORMAT_BCD:
		return p->max_len <= 2u * p->block_len ? 0 : -EINVAL;
	case PIN_FORMAT_ISO9564_2:
		/* ISO 9564-1: 8 bytes, 1 control nibble + 1 length nibble + 14 digit nibbles */
		return p->block_len == 8 ? 0 : -EINVAL;
	}
	return -EINVAL;
}

/* The one digit check, in the base layer (secmem_pin_new uses it too). */
int
pin_check_digits(const char *s, size_t len, size_t min, size_t max)
{
	return secmem_check_digits(s, len, min, max);
}

int
pin_check(const struct pin_params *p, const char *pin, size_t len)
{
	if (pin_params_check(p) < 0)
		return -EINVAL;
	return pin_check_digits(pin, len, p->min_len, p->max_len);
}

/* Write the block for an already checked PIN. */
static void
write_block(const struct pin_params *p, const char *pin, size_t len, uint8_t *out)
{
	uint8_t fill = (uint8_t)(p->pad & 0x0F);
	switch (p->format) {
	case PIN_FORMAT_ASCII:
		memset(out, p->pad, p->block_len);
		memcpy(out, pin, len);
		break;
	case PIN_FORMAT_BCD:
		memset(out, (uint8_t)(fill << 4 | fill), p->block_len);
		for (size_t i = 0; i < len; i++) {
			uint8_t d = (uint8_t)(pin[i] - '0');
			if (i % 2 == 0)
				out[i / 2] = (uint8_t)(d << 4 | (out[i / 2] & 0x0F));
			else
				out[i / 2] = (uint8_t)((out[i / 2] & 0xF0) | d);
		}
		break;
	case PIN_FORMAT_ISO9564_2:
		memset(out, 0xFF, p->block_len);
		out[0] = (uint8_t)(0x20 | len);
		for (size_t i = 0; i < len; i++) {
			uint8_t d = (uint8_t)(pin[i] - '0');
			size_t n = i + 2; /* nibble index: after control and length */
			if (n % 2 == 0)
				out[n / 2] = (uint8_t)(d << 4 | (out[n / 2] & 0x0F));
			else
				out[n / 2] = (uint8_t)((out[n / 2] & 0xF0) | d);
		}
		break;
	}
}

int
pin_build_block(const struct pin_params *p, const char *pin, size_t len, uint8_t *out, size_t cap)
{
	int r = pin_check(p, pin, len);
	if (r < 0)
		goto out;
	if (cap < p->block_len) {
		r = -ENOBUFS;
		goto out;
	}
	write_block(p, pin, len, out);
	return 0;
out:
	wipe(out, cap);
	return r;
}

int
pin_build_verify(const struct pin_params *p, const char *pin, size_t len, uint8_t *out,
                 size_t cap, size_t *outlen)
{
	int r;
	*outlen = 0;
	if ((r = pin_check(p, pin, len)) < 0)
		goto out;
	if (cap < 5u + p->block_len) {
		r = -ENOBUFS;
		goto out;
	}
	out[0] = p->cla;
	out[1] = INS_VERIFY;
	out[2] = p->p1; /* 00 (§11.5.6: other values RFU) unless the profile says */
	out[3] = p->ref;
	out[4] = p->block_len;
	write_block(p, pin, len, out + 5);
	*outlen = 5u + p->block_len;
	return 0;
out:
	wipe(out, cap);
	return r;
}

int
pin_build_verify_query(const struct pin_params *p, uint8_t *out, size_t cap, size_t *outlen)
{
	*outlen = 0;
	if (pin_params_check(p) < 0)
		return -EINVAL;
	if (cap < 4)
		return -ENOBUFS;
	out[0] = p->cla;
	out[1] = INS_VERIFY;
	out[2] = p->p1;
	out[3] = p->ref;
	*outlen = 4;
	return 0;
}

int
pin_build_reset_retry(const struct pin_params *p, const char *puk, size_t puklen,
                      const char *newpin, size_t newlen, uint8_t *out, size_t cap,
                      size_t *outlen)
{
	int r;
	*outlen = 0;
	if (pin_params_check(p) < 0 || p->puk_len == 0) {
		r = -EINVAL;
		goto out;
	}
	if ((r = pin_check_digits(puk, puklen, p->puk_len, p->puk_len)) < 0)
		goto out;
	if (newpin && (r = pin_check(p, newpin, newlen)) < 0)
		goto out;
	size_t lc = p->puk_len + (newpin ? p->block_len : 0u);
	if (cap < 5u + lc) {
		r = -ENOBUFS;
		goto out;
	}
	out[0] = p->cla;
	out[1] = INS_RESET_RETRY_COUNTER;
	out[2] = newpin ? 0x00 : 0x01; /* §11.5.10: 00 code + new data, 01 code only */
	out[3] = p->ref;
	out[4] = (uint8_t)lc;
	memcpy(out + 5, puk, p->puk_len);
	if (newpin)
		write_block(p, newpin, newlen, out + 5 + p->puk_len);
	*outlen = 5u + lc;
	return 0;
out:
	wipe(out, cap);
	return r;
}

/* ------------------------------------------------------------------ */
/* answers (ISO 7816-4 §5.6, part 10 §2.5 for the pinpad's own codes) */

void
pin_parse_sw(enum pin_cmd cmd, uint16_t sw, struct pin_result *r)
{
	r->sw = sw;
	r->tries_left = -1;
	r->status = PIN_ST_CARD_ERROR;
	if (sw == 0x9000) {
		r->status = PIN_ST_OK;
		return;
	}
	if ((sw & 0xFFF0) == 0x63C0) {
		r->tries_left = sw & 0x0F;
		if (r->tries_left == 0)
			r->status = PIN_ST_BLOCKED;
		else
			r->status = cmd == PIN_CMD_QUERY ? PIN_ST_NEEDED : PIN_ST_INCORRECT;
		return;
	}
	if (cmd == PIN_CMD_PINPAD_VERIFY && (sw & 0xFF00) == 0x6400) {
		switch (sw) {
		case 0x6400: r->status = PIN_ST_PINPAD_TIMEOUT; return;
		case 0x6401: r->status = PIN_ST_PINPAD_CANCELLED; return;
		case 0x6402: r->status = PIN_ST_PINPAD_MISMATCH; return;
		case 0x6403: r->status = PIN_ST_PINPAD_LENGTH; return;
		default: return;
		}
	}
	switch (sw) {
	case 0x6300: r->status = cmd == PIN_CMD_QUERY ? PIN_ST_NEEDED : PIN_ST_INCORRECT; break;
	case 0x6983: r->status = PIN_ST_BLOCKED; r->tries_left = 0; break;
	case 0x6984: r->status = PIN_ST_REF_UNUSABLE; break;
	case 0x6985: r->status = PIN_ST_CONDITIONS; break;
	case 0x6982: r->status = PIN_ST_SECURITY; break;
	case 0x6A80: r->status = PIN_ST_WRONG_DATA; break;
	case 0x6A86: r->status = PIN_ST_BAD_P1P2; break;
	case 0x6A88: r->status = PIN_ST_REF_NOT_FOUND; break;
	case 0x6700: r->status = PIN_ST_WRONG_LENGTH; break;
	case 0x6D00:
	case 0x6E00: r->status = PIN_ST_NOT_SUPPORTED; break;
	default: break;
	}
}

int
pin_parse_answer(enum pin_cmd cmd, const uint8_t *rapdu, size_t len, struct pin_result *r)
{
	if (!rapdu || len < 2) {
		r->status = PIN_ST_CARD_ERROR;
		r->tries_left = -1;
		r->sw = 0;
		return -EBADMSG;
	}
	pin_parse_sw(cmd, (uint16_t)(rapdu[len - 2] << 8 | rapdu[len - 1]), r);
	return 0;
}

const char *
pin_status_name(enum pin_status st)
{
	switch (st) {
	case PIN_ST_OK: return "ok";
	case PIN_ST_NEEDED: return "needed";
	case PIN_ST_INCORRECT: return "incorrect";
	case PIN_ST_BLOCKED: return "blocked";
	case PIN_ST_REF_UNUSABLE: return "reference-unusable";
	case PIN_ST_CONDITIONS: return "conditions-not-satisfied";
	case PIN_ST_SECURITY: return "security-status-not-satisfied";
	case PIN_ST_WRONG_DATA: return "wrong-data";
	case PIN_ST_BAD_P1P2: return "bad-p1-p2";
	case PIN_ST_REF_NOT_FOUND: return "reference-not-found";
	case PIN_ST_WRONG_LENGTH: return "wrong-length";
	case PIN_ST_NOT_SUPPORTED: return "not-supported";
	case PIN_ST_PINPAD_TIMEOUT: return "pinpad-timeout";
	case PIN_ST_PINPAD_CANCELLED: return "pinpad-cancelled";
	case PIN_ST_PINPAD_MISMATCH: return "pinpad-mismatch";
	case PIN_ST_PINPAD_LENGTH: return "pinpad-length";
	case PIN_ST_CARD_ERROR: return "card-error";
	}
	return "card-error";
}

/* ------------------------------------------------------------------ */
/* PC/SC part 10 */

int
pin_features_parse(const uint8_t *buf, size_t len, struct pin_features *out)
{
	memset(out, 0, sizeof(*out));
	if (len > PIN_FEATURES_MAX_LEN || (len && !buf))
		return -EBADMSG;
	size_t i = 0;
	while (i < len) {
		/* §2.2: tag, length = 4, value = control code, big endian */
		if (len - i < 2 || buf[i + 1] != 4 || len - i - 2 < 4) {
			memset(out, 0, sizeof(*out));
			return -EBADMSG;
		}
		uint8_t tag = buf[i];
		uint32_t code = (uint32_t)buf[i + 2] << 24 | (uint32_t)buf[i + 3] << 16 |
		                (uint32_t)buf[i + 4] << 8 | (uint32_t)buf[i + 5];
		if (out->code[tag] == 0 && code != 0) {
			out->code[tag] = code;
			out->count++;
		}
		i += 6;
	}
	return 0;
}

uint32_t
pin_feature_code(const struct pin_features *f, uint8_t tag)
{
	return f->code[tag];
}

static void
put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v & 0xFF);
	p[1] = (uint8_t)(v >> 8);
}

static void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v & 0xFF);
	p[1] = (uint8_t)(v >> 8 & 0xFF);
	p[2] = (uint8_t)(v >> 16 & 0xFF);
	p[3] = (uint8_t)(v >> 24);
}

int
pin_build_verify_structure(const struct pin_params *p, const struct pin_pinpad *pp,
                           uint8_t *out, size_t cap, size_t *outlen)
{
	*outlen = 0;
	if (pin_params_check(p) < 0 || !pp)
		return -EINVAL;
	size_t apdu_len = 5u + p->block_len;
	if (cap < PIN_VERIFY_STRUCTURE_HDR + apdu_len)
		return -ENOBUFS;

	/* bmFormatString (§2.5.2): bit 7 system units (1 = bytes), bits 6-3 PIN
	 * position in the block in those units, bit 2 justification (0 = left),
	 * bits 1-0 type (00 binary, 01 BCD, 10 ASCII).
	 * bmPINBlockString: bits 7-4 size in bits of the PIN length field, bits
	 * 3-0 PIN block size in bytes. bmPINLengthFormat: bit 4 units (1 bytes),
	 * bits 3-0 position of the length field. */
	uint8_t fmt, blk, lenfmt;
	switch (p->format) {
	case PIN_FORMAT_ASCII:
		fmt = 0x80 | 0x02;
		blk = (uint8_t)(p->block_len & 0x0F);
		lenfmt = 0x00;
		break;
	case PIN_FORMAT_BCD:
		fmt = 0x80 | 0x01;
		blk = (uint8_t)(p->block_len & 0x0F);
		lenfmt = 0x00;
		break;
	case PIN_FORMAT_ISO9564_2:
		/* units bits; digits start at bit 8; a 4-bit length at bit 4 */
		fmt = (uint8_t)(8u << 3 | 0x01);
		blk = (uint8_t)(4u << 4 | 8u);
		lenfmt = 0x04;
		break;
	default:
		return -EINVAL;
	}
	if (p->block_len > 15) /* the block size field is 4 bits */
		return -EINVAL;

	out[0] = pp->timeout_s;
	out[1] = pp->timeout2_s;
	out[2] = fmt;
	out[3] = blk;
	out[4] = lenfmt;
	put_le16(out + 5, (uint16_t)(p->min_len << 8 | p->max_len));
	out[7] = pp->validation;
	out[8] = pp->messages;
	put_le16(out + 9, pp->lang_id);
	out[11] = pp->msg_index;
	out[12] = out[13] = out[14] = 0x00; /* bTeoPrologue: T=1 only, the reader fills it */
	put_le32(out + 15, (uint32_t)apdu_len);
	uint8_t *a = out + PIN_VERIFY_STRUCTURE_HDR;
	a[0] = p->cla;
	a[1] = INS_VERIFY;
	a[2] = p->p1;
	a[3] = p->ref;
	a[4] = p->block_len;
	if (p->format == PIN_FORMAT_ISO9564_2) {
		memset(a + 5, 0xFF, p->block_len);
		a[5] = 0x20;
	} else if (p->format == PIN_FORMAT_BCD) {
		uint8_t fill = (uint8_t)(p->pad & 0x0F);
		memset(a + 5, (uint8_t)(fill << 4 | fill), p->block_len);
	} else {
		memset(a + 5, p->pad, p->block_len);
	}
	*outlen = PIN_VERIFY_STRUCTURE_HDR + apdu_len;
	return 0;
}
