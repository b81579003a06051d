/* Card profiles: the file format parser, profile sets, ATR matching and
 * the PIN block of a profile's VERIFY step. See profile.h and
 * docs/card-profiles.md (the format is specified there; this parser is
 * its reference).
 *
 * The parser reads the text line by line with fixed bounds (file size,
 * line length, tokens per line, entries per table); every rejection names
 * "source:line" and what is wrong. Nothing in a file is executed: a
 * script is a list of a few fixed step kinds with data.
 */
#include "protocol/profile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 48

enum section { SEC_NONE, SEC_PROFILE, SEC_SCRIPT, SEC_MAP, SEC_PIN };

struct pctx {
	struct profile *p;
	const char *source;
	unsigned line;
	char *err;
	size_t errlen;
	enum section sec;
	bool seen[5];
	bool have_name, have_kind, have_readable;
};

struct tok {
	const char *s;
	size_t n;
};

static int
perr(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
perr(struct pctx *c, const char *fmt, ...)
{
	if (c->err && c->errlen) {
		int n = snprintf(c->err, c->errlen, "%s:%u: ", c->source, c->line);
		if (n >= 0 && (size_t)n < c->errlen) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static bool
tok_is(const struct tok *t, const char *word)
{
	size_t n = strlen(word);
	return t->n == n && strncasecmp(t->s, word, n) == 0;
}

static bool
is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r';
}

static int
hexv(char ch)
{
	if (ch >= '0' && ch <= '9') return ch - '0';
	if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
	return -1;
}

static bool
tok_is_hex(const struct tok *t)
{
	if (t->n == 0 || t->n % 2)
		return false;
	for (size_t i = 0; i < t->n; i++)
		if (hexv(t->s[i]) < 0)
			return false;
	return true;
}

/* Split s[0..n) at blanks into at most MAX_TOKENS tokens. */
static int
tokenize(struct pctx *c, const char *s, size_t n, struct tok *t, size_t *nt)
{
	size_t k = 0, i = 0;
	while (i < n) {
		while (i < n && is_space(s[i]))
			i++;
		if (i >= n)
			break;
		size_t b = i;
		while (i < n && !is_space(s[i]))
			i++;
		if (k >= MAX_TOKENS)
			return perr(c, "too many words on one line (at most %d)", MAX_TOKENS);
		t[k].s = s + b;
		t[k].n = i - b;
		k++;
	}
	*nt = k;
	return 0;
}

/* Hex bytes from consecutive hex tokens starting at *i. */
static int
hex_tokens(struct pctx *c, const struct tok *t, size_t nt, size_t *i, uint8_t *out,
           size_t outsz, size_t *outlen, const char *what)
{
	size_t n = 0;
	*outlen = 0;
	while (*i < nt && tok_is_hex(&t[*i])) {
		for (size_t j = 0; j < t[*i].n; j += 2) {
			if (n >= outsz)
				return perr(c, "%s: more than %zu bytes", what, outsz);
			out[n++] = (uint8_t)(hexv(t[*i].s[j]) << 4 | hexv(t[*i].s[j + 1]));
		}
		(*i)++;
	}
	if (n == 0)
		return perr(c, "%s: hex bytes expected", what);
	*outlen = n;
	return 0;
}

static int
parse_uint(const char *s, size_t n, int base, unsigned long max, unsigned long *out)
{
	char buf[24];
	char *end;
	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (buf[0] == '-' || buf[0] == '+')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(buf, &end, base);
	if (errno || *end || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int
copy_text(struct pctx *c, char *dst, size_t dstsz, const char *s, size_t n, const char *what)
{
	if (n >= dstsz)
		return perr(c, "%s: longer than %zu characters", what, dstsz - 1);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
			return perr(c, "%s: control character", what);
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

static int
parse_bool(struct pctx *c, const char *v, size_t n, bool *out, const char *key)
{
	struct tok t = { v, n };
	if (tok_is(&t, "yes") || tok_is(&t, "true") || tok_is(&t, "on") || tok_is(&t, "1"))
		*out = true;
	else if (tok_is(&t, "no") || tok_is(&t, "false") || tok_is(&t, "off") || tok_is(&t, "0"))
		*out = false;
	else
		return perr(c, "%s: yes or no expected", key);
	return 0;
}

/* ---- [profile] ---- */

static int
parse_atr(struct pctx *c, const char *v, size_t n)
{
	struct profile *p = c->p;
	struct tok t = { v, n };
	if (tok_is(&t, "iso14443-4")) {
		p->any_iso14443_4 = true;
		return 0;
	}
	if (p->natr >= PROFILE_MAX_ATR)
		return perr(c, "atr: at most %d patterns", PROFILE_MAX_ATR);
	/* "VALUE [mask MASK]" */
	const char *m = NULL;
	size_t mlen = 0, vlen = n;
	for (size_t i = 0; i + 4 <= n; i++) {
		if (strncasecmp(v + i, "mask", 4) == 0 && (i == 0 || is_space(v[i - 1])) &&
		    (i + 4 == n || is_space(v[i + 4]))) {
			vlen = i;
			m = v + i + 4;
			mlen = n - i - 4;
			while (mlen && is_space(*m)) {
				m++;
				mlen--;
			}
			if (mlen == 0)
				return perr(c, "atr: mask without bytes");
			break;
		}
	}
	if (atr_pattern_parse(v, vlen, m, mlen, &p->atr[p->natr]) < 0)
		return perr(c, "atr: bad pattern (hex bytes, '.'/'x' nibbles, trailing '...', "
		            "optional 'mask' of the same length)");
	p->natr++;
	return 0;
}

static int
kv_profile(struct pctx *c, const char *k, size_t kn, const char *v, size_t vn)
{
	struct profile *p = c->p;
	struct tok key = { k, kn }, val = { v, vn };
	if (tok_is(&key, "name")) {
		if (vn == 0 || vn >= PROFILE_NAME_MAX)
			return perr(c, "name: 1 to %d characters", PROFILE_NAME_MAX - 1);
		for (size_t i = 0; i < vn; i++) {
			char ch = v[i];
			if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
			      ch == '-'))
				return perr(c, "name: only a-z 0-9 _ -");
		}
		memcpy(p->name, v, vn);
		p->name[vn] = '\0';
		c->have_name = true;
	} else if (tok_is(&key, "kind")) {
		if (tok_is(&val, "patient"))
			p->kind = PROFILE_KIND_PATIENT;
		else if (tok_is(&val, "practitioner"))
			p->kind = PROFILE_KIND_PRACTITIONER;
		else if (tok_is(&val, "digital"))
			p->kind = PROFILE_KIND_DIGITAL;
		else
			return perr(c, "kind: patient, practitioner or digital");
		c->have_kind = true;
	} else if (tok_is(&key, "handler")) {
		if (tok_is(&val, "script"))
			p->handler = PROFILE_HANDLER_SCRIPT;
		else if (tok_is(&val, "digital"))
			p->handler = PROFILE_HANDLER_DIGITAL;
		else if (tok_is(&val, "pkcs11"))
			p->handler = PROFILE_HANDLER_PKCS11;
		else
			return perr(c, "handler: script, digital or pkcs11");
	} else if (tok_is(&key, "description")) {
		return copy_text(c, p->description, sizeof(p->description), v, vn, "description");
	} else if (tok_is(&key, "message")) {
		return copy_text(c, p->message, sizeof(p->message), v, vn, "message");
	} else if (tok_is(&key, "contactless")) {
		return parse_bool(c, v, vn, &p->contactless, "contactless");
	} else if (tok_is(&key, "readable")) {
		c->have_readable = true;
		return parse_bool(c, v, vn, &p->readable, "readable");
	} else if (tok_is(&key, "atr")) {
		return parse_atr(c, v, vn);
	} else {
		return perr(c, "unknown key '%.*s' in [profile]", (int)(kn > 40 ? 40 : kn), k);
	}
	return 0;
}

/* ---- [pin] ---- */

static int
kv_pin(struct pctx *c, const char *k, size_t kn, const char *v, size_t vn)
{
	struct profile_pin *pin = &c->p->pin;
	struct tok key = { k, kn }, val = { v, vn };
	unsigned long x;
	if (tok_is(&key, "verify_ref") || tok_is(&key, "cla") || tok_is(&key, "p1") ||
	    tok_is(&key, "pad")) {
		if (vn != 2 || parse_uint(v, vn, 16, 0xFF, &x) < 0)
			return perr(c, "%.*s: one hex byte expected", (int)kn, k);
		if (tok_is(&key, "verify_ref"))
			pin->p2 = (uint8_t)x;
		else if (tok_is(&key, "cla"))
			pin->cla = (uint8_t)x;
		else if (tok_is(&key, "p1"))
			pin->p1 = (uint8_t)x;
		else
			pin->pad = (uint8_t)x;
	} else if (tok_is(&key, "min_length") || tok_is(&key, "max_length")) {
		if (parse_uint(v, vn, 10, PIN_DIGITS_MAX, &x) < 0 || x < PIN_DIGITS_MIN)
			return perr(c, "%.*s: %d to %d digits", (int)kn, k, PIN_DIGITS_MIN, PIN_DIGITS_MAX);
		if (tok_is(&key, "min_length"))
			pin->min_len = (unsigned)x;
		else
			pin->max_len = (unsigned)x;
	} else if (tok_is(&key, "block_length")) {
		if (parse_uint(v, vn, 10, PIN_BLOCK_MAX, &x) < 0 || x < 1)
			return perr(c, "block_length: 1 to %d", PIN_BLOCK_MAX);
		pin->block_len = x;
	} else if (tok_is(&key, "unblock_length")) {
		if (parse_uint(v, vn, 10, PIN_PUK_MAX, &x) < 0)
			return perr(c, "unblock_length: 0 to %d digits", PIN_PUK_MAX);
		pin->puk_len = (unsigned)x;
	} else if (tok_is(&key, "format")) {
		if (tok_is(&val, "ascii"))
			pin->format = PROFILE_PIN_ASCII;
		else if (tok_is(&val, "bcd"))
			pin->format = PROFILE_PIN_BCD;
		else if (tok_is(&val, "iso9564-2"))
			pin->format = PROFILE_PIN_ISO9564_2;
		else
			return perr(c, "format: ascii, bcd or iso9564-2");
	} else {
		return perr(c, "unknown key '%.*s' in [pin]", (int)(kn > 40 ? 40 : kn), k);
	}
	return 0;
}

/* ---- [script] ---- */

static int
parse_sw(const struct tok *t, struct profile_sw *out)
{
	uint16_t sw = 0, mask = 0;
	if (t->n != 4)
		return -EINVAL;
	for (size_t i = 0; i < 4; i++) {
		char ch = t->s[i];
		sw <<= 4;
		mask <<= 4;
		if (ch == 'x' || ch == 'X')
			continue;
		int h = hexv(ch);
		if (h < 0)
			return -EINVAL;
		sw |= (uint16_t)h;
		mask |= 0xF;
	}
	out->sw = sw;
	out->mask = mask;
	return 0;
}

static bool
is_select(const struct profile_step *st)
{
	return st->op == PROFILE_OP_SELECT_AID || st->op == PROFILE_OP_SELECT_EF ||
	       st->op == PROFILE_OP_SELECT_FID;
}

static int
step_options(struct pctx *c, struct profile_step *st, const struct tok *t, size_t nt,
             size_t i)
{
	unsigned long x;
	while (i < nt) {
		if (tok_is(&t[i], "optional")) {
			st->optional = true;
		} else if (tok_is(&t[i], "fci") && is_select(st)) {
			st->fci = true;
		} else if (tok_is(&t[i], "nofci") && is_select(st)) {
			st->fci = false;
		} else if (tok_is(&t[i], "le") && is_select(st)) {
			st->le = true;
		} else if (tok_is(&t[i], "raw") &&
		           (st->op == PROFILE_OP_READ || st->op == PROFILE_OP_SEND)) {
			st->raw = true;
		} else if (tok_is(&t[i], "map") && st->op == PROFILE_OP_SEND) {
			st->map = true;
		} else if (tok_is(&t[i], "sfi") && st->op == PROFILE_OP_READ) {
			if (i + 1 >= nt || parse_uint(t[i + 1].s, t[i + 1].n, 10, 30, &x) < 0 ||
			    x == 0)
				return perr(c, "sfi: a number 1 to 30 expected");
			st->sfi = (uint8_t)x;
			i++;
		} else if (tok_is(&t[i], "max") && st->op == PROFILE_OP_READ) {
			if (i + 1 >= nt || parse_uint(t[i + 1].s, t[i + 1].n, 10, 32767, &x) < 0 ||
			    x == 0)
				return perr(c, "max: a number of bytes 1 to 32767 expected");
			st->max = x;
			i++;
		} else if (tok_is(&t[i], "expect") && st->op != PROFILE_OP_POINTERS) {
			size_t k = i + 1;
			while (k < nt && t[k].n == 4 && st->nexpect < PROFILE_MAX_EXPECT &&
			       parse_sw(&t[k], &st->expect[st->nexpect]) == 0) {
				st->nexpect++;
				k++;
			}
			if (k == i + 1)
				return perr(c, "expect: status words expected (9000, 63Cx, ...)");
			if (k < nt && t[k].n == 4 && parse_sw(&t[k], &(struct profile_sw){ 0, 0 }) == 0)
				return perr(c, "expect: at most %d status words", PROFILE_MAX_EXPECT);
			i = k;
			continue;
		} else {
			return perr(c, "unknown or misplaced option '%.*s'",
			            (int)(t[i].n > 40 ? 40 : t[i].n), t[i].s);
		}
		i++;
	}
	return 0;
}

static int
line_script(struct pctx *c, const char *s, size_t n)
{
	struct profile *p = c->p;
	struct tok t[MAX_TOKENS];
	size_t nt, i = 1;
	int r = tokenize(c, s, n, t, &nt);
	if (r < 0)
		return r;
	if (p->nsteps >= PROFILE_MAX_STEPS)
		return perr(c, "script: at most %d steps", PROFILE_MAX_STEPS);
	struct profile_step *st = &p->steps[p->nsteps];
	memset(st, 0, sizeof(*st));
	st->line = c->line;

	if (tok_is(&t[0], "select")) {
		if (nt < 3)
			return perr(c, "select: 'select aid HEX', 'select ef FID' or 'select fid FID'");
		if (tok_is(&t[1], "aid")) {
			st->op = PROFILE_OP_SELECT_AID;
		} else if (tok_is(&t[1], "ef")) {
			st->op = PROFILE_OP_SELECT_EF;
			st->fci = true;
		} else if (tok_is(&t[1], "fid")) {
			st->op = PROFILE_OP_SELECT_FID;
			st->fci = true;
		} else {
			return perr(c, "select: aid, ef or fid expected");
		}
		i = 2;
		r = hex_tokens(c, t, nt, &i, st->data, 16, &st->data_len, "select");
		if (r < 0)
			return r;
		if (st->op == PROFILE_OP_SELECT_AID && st->data_len < 5)
			return perr(c, "select aid: an AID is 5 to 16 bytes");
		if (st->op != PROFILE_OP_SELECT_AID && st->data_len != 2)
			return perr(c, "select %s: a file id is 2 bytes", st->op == PROFILE_OP_SELECT_EF ? "ef" : "fid");
	} else if (tok_is(&t[0], "read")) {
		st->op = PROFILE_OP_READ;
	} else if (tok_is(&t[0], "pointers")) {
		st->op = PROFILE_OP_POINTERS;
	} else if (tok_is(&t[0], "send")) {
		st->op = PROFILE_OP_SEND;
		r = hex_tokens(c, t, nt, &i, st->data, sizeof(st->data), &st->data_len, "send");
		if (r < 0)
			return r;
		struct apdu_cmd cmd;
		if (apdu_parse(st->data, st->data_len, &cmd) < 0 || cmd.extended)
			return perr(c, "send: not a short command APDU");
	} else {
		return perr(c, "unknown step '%.*s' (select, read, pointers, send)",
		            (int)(t[0].n > 40 ? 40 : t[0].n), t[0].s);
	}
	r = step_options(c, st, t, nt, i);
	if (r < 0)
		return r;
	p->nsteps++;
	return 0;
}

/* ---- [map] ---- */

static const struct {
	const char *name;
	enum profile_field f;
	enum profile_format def;
	unsigned allowed;   /* bit per format */
	bool beneficiary;
} fields[] = {
	{ "beneficiary.surname", PROFILE_F_SURNAME, PROFILE_FMT_TEXT, 1u << PROFILE_FMT_TEXT, true },
	{ "beneficiary.given_name", PROFILE_F_GIVEN_NAME, PROFILE_FMT_TEXT, 1u << PROFILE_FMT_TEXT, true },
	{ "beneficiary.birth_date", PROFILE_F_BIRTH_DATE, PROFILE_FMT_DATE, 1u << PROFILE_FMT_DATE, true },
	{ "beneficiary.nationality", PROFILE_F_NATIONALITY, PROFILE_FMT_TEXT, 1u << PROFILE_FMT_TEXT, true },
	{ "beneficiary.nir", PROFILE_F_NIR, PROFILE_FMT_NIR, 1u << PROFILE_FMT_NIR, true },
	{ "card.start_date", PROFILE_F_CARD_START, PROFILE_FMT_DATE, 1u << PROFILE_FMT_DATE, false },
	{ "card.end_date", PROFILE_F_CARD_END, PROFILE_FMT_DATE, 1u << PROFILE_FMT_DATE, false },
	{ "card.serial", PROFILE_F_CARD_SERIAL, PROFILE_FMT_BCD,
	  1u << PROFILE_FMT_BCD | 1u << PROFILE_FMT_HEX | 1u << PROFILE_FMT_TEXT, false },
	{ "card.certificate", PROFILE_F_CARD_CERTIFICATE, PROFILE_FMT_PRESENT,
	  1u << PROFILE_FMT_PRESENT, false },
};

static const char *const format_names[] = {
	[PROFILE_FMT_TEXT] = "text", [PROFILE_FMT_DATE] = "date", [PROFILE_FMT_NIR] = "nir",
	[PROFILE_FMT_BCD] = "bcd", [PROFILE_FMT_HEX] = "hex", [PROFILE_FMT_PRESENT] = "present",
};

const char *
profile_field_name(enum profile_field f)
{
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].f == f)
			return fields[i].name;
	return "unknown";
}

static int
kv_map(struct pctx *c, const char *k, size_t kn, const char *v, size_t vn)
{
	struct profile *p = c->p;
	struct tok t[MAX_TOKENS];
	size_t nt;
	if (p->nmap >= PROFILE_MAX_MAP)
		return perr(c, "map: at most %d entries", PROFILE_MAX_MAP);
	struct profile_map_entry *e = &p->map[p->nmap];
	memset(e, 0, sizeof(*e));
	e->line = c->line;
	if (tlv_path_parse(k, kn, e->path, TLV_PATH_MAX, &e->npath) < 0)
		return perr(c, "map: bad tag path '%.*s' (hex tags joined by '/', at most %d)",
		            (int)(kn > 40 ? 40 : kn), k, TLV_PATH_MAX);
	int r = tokenize(c, v, vn, t, &nt);
	if (r < 0)
		return r;
	if (nt < 1 || nt > 2)
		return perr(c, "map: 'PATH = FIELD [FORMAT]'");
	size_t fi;
	for (fi = 0; fi < sizeof(fields) / sizeof(fields[0]); fi++)
		if (tok_is(&t[0], fields[fi].name))
			break;
	if (fi == sizeof(fields) / sizeof(fields[0]))
		return perr(c, "map: unknown field '%.*s'", (int)(t[0].n > 40 ? 40 : t[0].n), t[0].s);
	e->field = fields[fi].f;
	e->fmt = fields[fi].def;
	if (nt == 2) {
		size_t k2;
		for (k2 = 0; k2 < sizeof(format_names) / sizeof(format_names[0]); k2++)
			if (tok_is(&t[1], format_names[k2]))
				break;
		if (k2 == sizeof(format_names) / sizeof(format_names[0]) ||
		    !(fields[fi].allowed & (1u << k2)))
			return perr(c, "map: format '%.*s' not allowed for %s",
			            (int)(t[1].n > 20 ? 20 : t[1].n), t[1].s, fields[fi].name);
		e->fmt = (enum profile_format)k2;
	}
	if (fields[fi].beneficiary) {
		/* the first tag of a beneficiary path is the record: each one
		 * of them is one beneficiary */
		if (p->record_tag && p->record_tag != e->path[0])
			return perr(c, "map: every beneficiary path must start with the same tag");
		p->record_tag = e->path[0];
	}
	p->nmap++;
	return 0;
}

/* ---- lines ---- */

static int
parse_line(struct pctx *c, const char *s, size_t n)
{
	/* comments: '#' or ';' at the start, or '#' after a blank */
	for (size_t i = 0; i < n; i++) {
		if ((s[i] == '#' && (i == 0 || is_space(s[i - 1]))) || (s[i] == ';' && i == 0)) {
			n = i;
			break;
		}
	}
	while (n && is_space(s[n - 1]))
		n--;
	while (n && is_space(*s)) {
		s++;
		n--;
	}
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
			return perr(c, "control character in line");

	if (s[0] == '[') {
		struct tok t = { s, n };
		enum section sec;
		if (tok_is(&t, "[profile]")) sec = SEC_PROFILE;
		else if (tok_is(&t, "[script]")) sec = SEC_SCRIPT;
		else if (tok_is(&t, "[map]")) sec = SEC_MAP;
		else if (tok_is(&t, "[pin]")) sec = SEC_PIN;
		else
			return perr(c, "unknown section '%.*s'", (int)(n > 40 ? 40 : n), s);
		if (c->seen[sec])
			return perr(c, "section '%.*s' given twice", (int)n, s);
		c->seen[sec] = true;
		c->sec = sec;
		if (sec == SEC_PIN)
			c->p->pin.present = true;
		return 0;
	}
	if (c->sec == SEC_NONE)
		return perr(c, "text before the first section ([profile] expected)");
	if (c->sec == SEC_SCRIPT)
		return line_script(c, s, n);

	const char *eq = memchr(s, '=', n);
	if (!eq)
		return perr(c, "'key = value' expected");
	size_t kn = (size_t)(eq - s);
	const char *v = eq + 1;
	size_t vn = n - kn - 1;
	while (kn && is_space(s[kn - 1]))
		kn--;
	while (vn && is_space(*v)) {
		v++;
		vn--;
	}
	if (kn == 0)
		return perr(c, "empty key");
	if (c->sec == SEC_PROFILE)
		return kv_profile(c, s, kn, v, vn);
	if (c->sec == SEC_PIN)
		return kv_pin(c, s, kn, v, vn);
	return kv_map(c, s, kn, v, vn);
}

static int
finish(struct pctx *c)
{
	struct profile *p = c->p;
	if (!c->have_name)
		return perr(c, "no 'name' in [profile]");
	if (!c->have_kind)
		return perr(c, "no 'kind' in [profile]");
	if (p->natr == 0 && !p->any_iso14443_4)
		return perr(c, "no 'atr' in [profile]");
	if (p->handler != PROFILE_HANDLER_SCRIPT && (p->nsteps || p->nmap))
		return perr(c, "a %s profile has no [script] or [map]: its handler reads the card",
		            profile_handler_name(p->handler));
	if (p->handler == PROFILE_HANDLER_SCRIPT && p->readable && p->nsteps == 0)
		return perr(c, "a readable profile needs a [script] (or 'readable = no')");
	if (!p->readable && p->message[0] == '\0')
		return perr(c, "'readable = no' needs a 'message'");
	bool reads = false;
	for (size_t i = 0; i < p->nsteps; i++) {
		if (p->steps[i].op == PROFILE_OP_READ)
			reads = true;
		if (p->steps[i].op == PROFILE_OP_POINTERS && !reads) {
			c->line = p->steps[i].line;
			return perr(c, "pointers: needs a 'read' of the pointer file before it");
		}
	}
	if (p->pin.present) {
		struct profile_pin *pin = &p->pin;
		struct pin_params pp;
		size_t need = pin->format == PROFILE_PIN_BCD ? (pin->max_len + 1) / 2 : pin->max_len;
		if (pin->min_len > pin->max_len)
			return perr(c, "[pin]: min_length is above max_length");
		if (pin->format == PROFILE_PIN_ISO9564_2 && pin->block_len != 8)
			return perr(c, "[pin]: format iso9564-2 needs block_length = 8");
		if (pin->format != PROFILE_PIN_ISO9564_2 && need > pin->block_len)
			return perr(c, "[pin]: block_length too small for max_length");
		if (profile_pin_params(pin, &pp) < 0)
			return perr(c, "[pin]: the PIN step cannot be built");
	}
	return 0;
}

int
profile_parse(const char *text, size_t len, const char *source, struct profile **out,
              char *err, size_t errlen)
{
	struct pctx c = { 0 };
	int r = 0;
	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	c.source = source ? source : "(profile)";
	c.err = err;
	c.errlen = errlen;
	if (!text)
		return perr(&c, "no text");
	if (len > PROFILE_TEXT_MAX_SIZE) {
		perr(&c, "larger than %d bytes", PROFILE_TEXT_MAX_SIZE);
		return -EFBIG;
	}
	c.p = calloc(1, sizeof(*c.p));
	if (!c.p)
		return -ENOMEM;
	c.p->readable = true;
	c.p->pin.cla = 0x00;
	c.p->pin.min_len = 4;
	c.p->pin.max_len = 8;
	c.p->pin.pad = 0xFF;
	c.p->pin.block_len = 8;
	snprintf(c.p->source, sizeof(c.p->source), "%s", c.source);

	size_t i = 0;
	while (i < len) {
		size_t b = i;
		while (i < len && text[i] != '\n')
			i++;
		c.line++;
		if (i - b > PROFILE_LINE_MAX) {
			r = perr(&c, "line longer than %d bytes", PROFILE_LINE_MAX);
			goto out;
		}
		if (memchr(text + b, '\0', i - b)) {
			r = perr(&c, "NUL byte in line");
			goto out;
		}
		r = parse_line(&c, text + b, i - b);
		if (r < 0)
			goto out;
		if (i < len)
			i++;
	}
	r = finish(&c);
out:
	if (r < 0) {
		free(c.p);
		return r;
	}
	*out = c.p;
	return 0;
}

void
profile_free(struct profile *p)
{
	free(p);
}

const char *
profile_kind_name(enum profile_kind k)
{
	switch (k) {
	case PROFILE_KIND_PATIENT: return "patient";
	case PROFILE_KIND_PRACTITIONER: return "practitioner";
	case PROFILE_KIND_DIGITAL: return "digital";
	}
	return "unknown";
}

const char *
profile_handler_name(enum profile_handler h)
{
	switch (h) {
	case PROFILE_HANDLER_SCRIPT: return "script";
	case PROFILE_HANDLER_DIGITAL: return "digital";
	case PROFILE_HANDLER_PKCS11: return "pkcs11";
	}
	return "unknown";
}

/* ---- sets ---- */

struct profile_set {
	struct profile *p[PROFILE_SET_MAX];
	size_t n;
};

struct profile_set *
profile_set_new(void)
{
	return calloc(1, sizeof(struct profile_set));
}

void
profile_set_free(struct profile_set *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		profile_free(set->p[i]);
	free(set);
}

int
profile_set_add_text(struct profile_set *set, const char *text, size_t len, const char *source,
                     char *err, size_t errlen)
{
	struct profile *p;
	int r = profile_parse(text, len, source, &p, err, errlen);
	if (r < 0)
		return r;
	for (size_t i = 0; i < set->n; i++) {
		if (strcmp(set->p[i]->name, p->name) == 0) {
			profile_free(set->p[i]);
			set->p[i] = p;
			return 0;
		}
	}
	if (set->n >= PROFILE_SET_MAX) {
		if (err && errlen)
			snprintf(err, errlen, "%s: more than %d profiles", source ? source : "(profile)",
			         PROFILE_SET_MAX);
		profile_free(p);
		return -ENOSPC;
	}
	set->p[set->n++] = p;
	return 0;
}

int
profile_set_add_builtin(struct profile_set *set, char *err, size_t errlen)
{
	char src[PROFILE_SOURCE_MAX];
	for (const struct profile_text *t = profile_builtin_texts; t->name; t++) {
		snprintf(src, sizeof(src), "builtin:%s", t->name);
		int r = profile_set_add_text(set, t->text, strlen(t->text), src, err, errlen);
		if (r < 0)
			return r;
	}
	return 0;
}

size_t
profile_set_count(const struct profile_set *set)
{
	return set ? set->n : 0;
}

const struct profile *
profile_set_get(const struct profile_set *set, size_t i)
{
	return set && i < set->n ? set->p[i] : NULL;
}

const struct profile *
profile_set_find(const struct profile_set *set, const char *name)
{
	for (size_t i = 0; set && name && i < set->n; i++)
		if (strcmp(set->p[i]->name, name) == 0)
			return set->p[i];
	return NULL;
}

const struct profile *
profile_match(const struct profile_set *set, const uint8_t *atr, size_t len)
{
	struct atr_info info;
	const struct profile *best = NULL;
	unsigned best_score = 0;
	if (!set || atr_parse(atr, len, &info) < 0)
		return NULL;
	for (size_t i = 0; i < set->n; i++) {
		const struct profile *p = set->p[i];
		unsigned score = 0;
		for (size_t k = 0; k < p->natr; k++) {
			unsigned s = atr_pattern_match(&p->atr[k], info.bytes, info.len);
			if (s > score)
				score = s;
		}
		if (score == 0 && p->any_iso14443_4 && atr_is_iso14443_4(&info))
			score = 1;   /* below any pattern: every pattern scores 2 or more */
		if (score > best_score) {
			best_score = score;
			best = p;
		}
	}
	return best;
}

/* ---- PIN ---- */

int
profile_pin_params(const struct profile_pin *pin, struct pin_params *out)
{
	memset(out, 0, sizeof(*out));
	if (!pin || !pin->present || pin->min_len > 0xFF || pin->max_len > 0xFF ||
	    pin->block_len > 0xFF || pin->puk_len > 0xFF)
		return -EINVAL;
	switch (pin->format) {
	case PROFILE_PIN_ASCII: out->format = PIN_FORMAT_ASCII; break;
	case PROFILE_PIN_BCD: out->format = PIN_FORMAT_BCD; break;
	case PROFILE_PIN_ISO9564_2: out->format = PIN_FORMAT_ISO9564_2; break;
	default: return -EINVAL;
	}
	out->cla = pin->cla;
	out->p1 = pin->p1;
	out->ref = pin->p2;
	out->min_len = (uint8_t)pin->min_len;
	out->max_len = (uint8_t)pin->max_len;
	out->block_len = (uint8_t)pin->block_len;
	out->pad = pin->pad;
	out->puk_len = (uint8_t)pin->puk_len;
	if (pin_params_check(out) < 0) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	return 0;
}

int
profile_pin_apdu(const struct profile_pin *pin, const char *digits, size_t ndigits,
                 uint8_t *out, size_t outsz, size_t *outlen)
{
	struct pin_params pp;
	*outlen = 0;
	if (!digits || profile_pin_params(pin, &pp) < 0) {
		explicit_bzero(out, outsz);
		return -EINVAL;
	}
	int r = pin_build_verify(&pp, digits, ndigits, out, outsz, outlen); /* wipes out on failure */
	if (r == -ENOBUFS)
		return -EMSGSIZE;
	return r < 0 ? -EINVAL : 0;
}
