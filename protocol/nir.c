/* NIR validation (INSEE numbering rules), see nir.h.
 *
 * The key is computed digit by digit (Horner's rule modulo 97), so no
 * 13-digit integer is ever formed and no overflow is possible.
 */
#include "protocol/nir.h"

#include <errno.h>
#include <string.h>

static const char *const reason_names[] = {
	[NIR_OK] = "nir_ok",
	[NIR_BAD_LENGTH] = "nir_bad_length",
	[NIR_BAD_CHAR] = "nir_bad_char",
	[NIR_BAD_SEX] = "nir_bad_sex",
	[NIR_BAD_MONTH] = "nir_bad_month",
	[NIR_BAD_DEPARTMENT] = "nir_bad_department",
	[NIR_BAD_KEY] = "nir_bad_key",
	[NIR_MISSING] = "nir_missing",
};

const char *
nir_reason_name(enum nir_reason r)
{
	if ((unsigned)r < sizeof(reason_names) / sizeof(reason_names[0]))
		return reason_names[r];
	return "nir_invalid";
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
two(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

static int
set_why(enum nir_reason *why, enum nir_reason r)
{
	if (why)
		*why = r;
	return r == NIR_OK ? 0 : -EINVAL;
}

int
nir_key(const char *body, size_t len, enum nir_reason *why)
{
	if (!body || len != NIR_BODY_LEN)
		return set_why(why, NIR_BAD_LENGTH);
	/* characters other than the department: digits */
	for (size_t i = 0; i < NIR_BODY_LEN; i++)
		if ((i < 5 || i > 6) && !is_digit(body[i]))
			return set_why(why, NIR_BAD_CHAR);
	switch (body[0]) {
	case '1': case '2': case '3': case '4': case '7': case '8':
		break;
	default:
		return set_why(why, NIR_BAD_SEX);
	}
	int month = two(body + 3);
	if (!((month >= 1 && month <= 12) || (month >= 20 && month <= 42) ||
	      (month >= 50 && month <= 99)))
		return set_why(why, NIR_BAD_MONTH);

	/* department: digits 01-99, or Corsica 2A (-> 19) / 2B (-> 18) */
	char d0 = body[5], d1 = body[6];
	int dept;
	if (d0 == '2' && (d1 == 'A' || d1 == 'a')) {
		dept = 19;
	} else if (d0 == '2' && (d1 == 'B' || d1 == 'b')) {
		dept = 18;
	} else if (is_digit(d0) && is_digit(d1)) {
		dept = two(body + 5);
		if (dept == 0)
			return set_why(why, NIR_BAD_DEPARTMENT);
	} else if (is_digit(d0) || is_digit(d1) || d0 == '2') {
		return set_why(why, NIR_BAD_DEPARTMENT);
	} else {
		return set_why(why, NIR_BAD_CHAR);
	}

	unsigned m = 0;
	for (size_t i = 0; i < NIR_BODY_LEN; i++) {
		unsigned v;
		if (i == 5)
			v = (unsigned)(dept / 10);
		else if (i == 6)
			v = (unsigned)(dept % 10);
		else
			v = (unsigned)(body[i] - '0');
		m = (m * 10 + v) % 97;
	}
	set_why(why, NIR_OK);
	return (int)(97 - m);
}

int
nir_check(const char *nir, size_t len, enum nir_reason *why)
{
	enum nir_reason r;
	if (!nir || len != NIR_LEN)
		return set_why(why, NIR_BAD_LENGTH);
	int key = nir_key(nir, NIR_BODY_LEN, &r);
	if (key < 0)
		return set_why(why, r);
	if (!is_digit(nir[13]) || !is_digit(nir[14]))
		return set_why(why, NIR_BAD_CHAR);
	if (two(nir + 13) != key)
		return set_why(why, NIR_BAD_KEY);
	return set_why(why, NIR_OK);
}

char *
nir_mask(const char *nir, size_t len, char *out, size_t outlen)
{
	if (!out || outlen == 0)
		return out;
	if (!nir || len < 3) {
		size_t n = strlen("(none)");
		if (n >= outlen)
			n = outlen - 1;
		memcpy(out, "(none)", n);
		out[n] = '\0';
		return out;
	}
	if (len > NIR_LEN)
		len = NIR_LEN;
	size_t o = 0;
	for (size_t i = 0; i < len && o + 1 < outlen; i++) {
		char c = nir[i];
		if (i >= 3)
			c = '*';
		else if (c < 0x21 || c > 0x7E)
			c = '?';   /* card data: nothing unprintable reaches a log */
		out[o++] = c;
	}
	out[o] = '\0';
	return out;
}
