/* ATR parsing and matching (ISO/IEC 7816-3:2006 §8), see atr.h.
 *
 * The parser walks TS, T0 and the TDi chain with an index that is checked
 * against the input length before every read, so any byte string, however
 * short or hostile, ends in a named reason rather than an out-of-bounds
 * read. Matching works on the decoded bytes only.
 */
#include "protocol/atr.h"

#include <errno.h>
#include <string.h>

static const char *const atr_error_names[] = {
	[ATR_OK] = "ok",
	[ATR_ERR_EMPTY] = "atr_empty",
	[ATR_ERR_TOO_LONG] = "atr_too_long",
	[ATR_ERR_BAD_TS] = "atr_bad_ts",
	[ATR_ERR_TRUNCATED] = "atr_truncated",
	[ATR_ERR_TOO_MANY_LEVELS] = "atr_too_many_levels",
	[ATR_ERR_TCK_MISSING] = "atr_tck_missing",
	[ATR_ERR_TCK_MISMATCH] = "atr_tck_mismatch",
	[ATR_ERR_TRAILING] = "atr_trailing_bytes",
};

const char *
atr_error_name(enum atr_error e)
{
	if ((unsigned)e < sizeof(atr_error_names) / sizeof(atr_error_names[0]) &&
	    atr_error_names[e])
		return atr_error_names[e];
	return "atr_invalid";
}

uint8_t
atr_inverse_byte(uint8_t raw)
{
	/* §8.1: inverse convention sends the most significant bit first with
	 * the levels inverted; seen through the direct convention a byte
	 * arrives bit-reversed and complemented. */
	uint8_t r = 0;
	for (int i = 0; i < 8; i++)
		if (raw & (1u << i))
			r |= (uint8_t)(0x80u >> i);
	return (uint8_t)~r;
}

static int
fail(struct atr_info *out, enum atr_error e)
{
	out->error = e;
	return -EINVAL;
}

int
atr_parse(const uint8_t *atr, size_t len, struct atr_info *out)
{
	memset(out, 0, sizeof(*out));
	if (!atr || len == 0)
		return fail(out, ATR_ERR_EMPTY);
	if (len > ATR_MAX_LEN)
		return fail(out, ATR_ERR_TOO_LONG);

	/* TS (§8.1) */
	if (atr[0] == 0x03) {
		out->raw_inverse = true;
		for (size_t i = 0; i < len; i++)
			out->bytes[i] = atr_inverse_byte(atr[i]);
	} else {
		memcpy(out->bytes, atr, len);
	}
	out->len = len;
	const uint8_t *b = out->bytes;
	if (b[0] == 0x3B)
		out->conv = ATR_CONV_DIRECT;
	else if (b[0] == 0x3F)
		out->conv = ATR_CONV_INVERSE;
	else
		return fail(out, ATR_ERR_BAD_TS);

	if (len < 2)
		return fail(out, ATR_ERR_TRUNCATED);
	out->t0 = b[1];
	size_t k = b[1] & 0x0F;
	uint8_t y = (uint8_t)(b[1] >> 4);   /* Y1, then Yi+1 from each TDi */
	size_t i = 2;
	bool tck_needed = false;
	bool any_td = false;

	/* Interface bytes (§8.2.2, §8.2.3): each group announces the next. */
	for (size_t lvl = 0;; lvl++) {
		if (lvl >= ATR_MAX_LEVELS)
			return fail(out, ATR_ERR_TOO_MANY_LEVELS);
		struct atr_level *L = &out->level[lvl];
		out->nlevels = lvl + 1;
		if (y & 0x1) {
			if (i >= len) return fail(out, ATR_ERR_TRUNCATED);
			L->ta = b[i++]; L->present |= ATR_TA;
		}
		if (y & 0x2) {
			if (i >= len) return fail(out, ATR_ERR_TRUNCATED);
			L->tb = b[i++]; L->present |= ATR_TB;
		}
		if (y & 0x4) {
			if (i >= len) return fail(out, ATR_ERR_TRUNCATED);
			L->tc = b[i++]; L->present |= ATR_TC;
		}
		if (!(y & 0x8))
			break;
		if (i >= len) return fail(out, ATR_ERR_TRUNCATED);
		L->td = b[i++]; L->present |= ATR_TD;
		any_td = true;
		unsigned t = L->td & 0x0F;
		out->protocols |= (uint16_t)(1u << t);
		if (t != 0)
			tck_needed = true;   /* §8.2.5 */
		y = (uint8_t)(L->td >> 4);
	}
	if (!any_td)
		out->protocols = 1u << 0;   /* §8.2.3: no TD1 means T=0 only */

	/* Historical bytes (§8.2.4) */
	if (k > len - i)
		return fail(out, ATR_ERR_TRUNCATED);
	memcpy(out->hist, b + i, k);
	out->hist_len = k;
	i += k;

	/* TCK (§8.2.5): present unless only T=0 is indicated. */
	if (tck_needed) {
		if (i >= len)
			return fail(out, ATR_ERR_TCK_MISSING);
		out->tck_present = true;
		out->tck = b[i++];
		uint8_t x = 0;
		for (size_t j = 1; j < i; j++)
			x ^= b[j];
		if (x != 0)
			return fail(out, ATR_ERR_TCK_MISMATCH);
	}
	if (i != len)
		return fail(out, ATR_ERR_TRAILING);
	out->error = ATR_OK;
	return 0;
}

bool
atr_offers(const struct atr_info *info, unsigned t)
{
	return t < 15 && (info->protocols & (1u << t));
}

bool
atr_is_iso14443_4(const struct atr_info *info)
{
	/* PC/SC part 3 §3.1.3.2.3: 3B 8n 80 01 hist TCK; TD1 = 80 (T=0,
	 * TD2 follows), TD2 = 01 (T=1, nothing follows). Storage cards put a
	 * category indicator 80 then the PC/SC RID in 4F: not ISO 14443-4. */
	if (info->error != ATR_OK || info->conv != ATR_CONV_DIRECT)
		return false;
	if ((info->t0 & 0xF0) != 0x80 || info->nlevels != 3)
		return false;
	if (info->level[0].present != ATR_TD || info->level[0].td != 0x80)
		return false;
	if (info->level[1].present != ATR_TD || info->level[1].td != 0x01)
		return false;
	if (info->hist_len >= 2 && info->hist[0] == 0x80 && info->hist[1] == 0x4F)
		return false;
	return true;
}

/* ---- hex helpers ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static bool
is_sep(char c)
{
	return c == ' ' || c == '\t' || c == ':';
}

int
atr_hex_parse(const char *s, size_t slen, uint8_t *out, size_t outsz, size_t *outlen)
{
	size_t n = 0;
	int hi = -1;
	*outlen = 0;
	for (size_t i = 0; i < slen; i++) {
		if (is_sep(s[i])) {
			if (hi >= 0)
				return -EINVAL;   /* a byte split by a separator */
			continue;
		}
		int v = hexval(s[i]);
		if (v < 0)
			return -EINVAL;
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n >= outsz)
			return -EMSGSIZE;
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0)
		return -EINVAL;
	*outlen = n;
	return 0;
}

char *
atr_hex_format(const uint8_t *b, size_t len, char *out, size_t outsz)
{
	static const char dig[] = "0123456789ABCDEF";
	size_t o = 0;
	if (!out || outsz == 0)
		return out;
	for (size_t i = 0; i < len; i++) {
		size_t need = (i ? 1 : 0) + 2;
		if (o + need + 1 > outsz) {
			/* mark the cut when there is room for it */
			if (outsz >= 4) {
				o = o > outsz - 4 ? outsz - 4 : o;
				out[o++] = '.'; out[o++] = '.'; out[o++] = '.';
			}
			break;
		}
		if (i)
			out[o++] = ' ';
		out[o++] = dig[b[i] >> 4];
		out[o++] = dig[b[i] & 0xF];
	}
	out[o] = '\0';
	return out;
}

/* ---- patterns ---- */

static int
nibble(char c, uint8_t *v, uint8_t *m)
{
	if (c == '.' || c == 'x' || c == 'X') {
		*v = 0; *m = 0;
		return 0;
	}
	int h = hexval(c);
	if (h < 0)
		return -EINVAL;
	*v = (uint8_t)h; *m = 0xF;
	return 0;
}

int
atr_pattern_parse(const char *value, size_t vlen, const char *mask, size_t mlen,
                  struct atr_pattern *out)
{
	memset(out, 0, sizeof(*out));
	if (!value)
		return -EINVAL;
	/* a trailing "..." (after trimming) means "any further bytes" */
	size_t end = vlen;
	while (end > 0 && is_sep(value[end - 1]))
		end--;
	if (end >= 3 && memcmp(value + end - 3, "...", 3) == 0) {
		/* only on a byte boundary, so that "3B 4. .." is read as two
		 * bytes, not as "3B 4" and a prefix mark */
		size_t nibbles = 0;
		for (size_t i = 0; i < end - 3; i++)
			if (!is_sep(value[i]))
				nibbles++;
		if (nibbles % 2 == 0) {
			out->prefix = true;
			end -= 3;
		}
	}
	size_t n = 0;
	int state = 0;  /* 0: expecting high nibble, 1: low */
	uint8_t hv = 0, hm = 0;
	for (size_t i = 0; i < end; i++) {
		char c = value[i];
		if (is_sep(c)) {
			if (state)
				return -EINVAL;
			continue;
		}
		uint8_t v, m;
		if (nibble(c, &v, &m) < 0)
			return -EINVAL;
		if (!state) {
			hv = v; hm = m; state = 1;
			continue;
		}
		if (n >= ATR_MAX_LEN)
			return -EINVAL;
		out->value[n] = (uint8_t)(hv << 4 | v);
		out->mask[n] = (uint8_t)(hm << 4 | m);
		n++;
		state = 0;
	}
	if (state || n == 0)
		return -EINVAL;
	out->len = n;
	if (mask && mlen > 0) {
		uint8_t mb[ATR_MAX_LEN];
		size_t ml;
		if (atr_hex_parse(mask, mlen, mb, sizeof(mb), &ml) < 0 || ml != n)
			return -EINVAL;
		for (size_t i = 0; i < n; i++)
			out->mask[i] &= mb[i];
	}
	for (size_t i = 0; i < n; i++)
		out->value[i] &= out->mask[i];
	return 0;
}

unsigned
atr_pattern_match(const struct atr_pattern *p, const uint8_t *atr, size_t len)
{
	if (!p || p->len == 0 || !atr)
		return 0;
	if (p->prefix ? len < p->len : len != p->len)
		return 0;
	unsigned bits = 0;
	for (size_t i = 0; i < p->len; i++) {
		if ((atr[i] & p->mask[i]) != p->value[i])
			return 0;
		bits += (unsigned)__builtin_popcount(p->mask[i]);
	}
	return bits * 2 + (p->prefix ? 0 : 1) + 1;
}
