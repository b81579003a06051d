/* ATR parsing and matching (ISO/IEC 7816-3:2006 §8 "Answer-to-Reset").
 *
 * A card's ATR decides which profile reads it. atr_parse() splits an ATR
 * into TS, T0, the interface-byte chain (TAi TBi TCi TDi), the historical
 * bytes and TCK, checks TCK, and lists the protocols offered. A broken ATR
 * never crashes anything: atr_parse() returns -EINVAL and names the reason
 * in info->error (atr_error_name()).
 *
 * Conventions (§8.1): PC/SC hands the ATR already decoded, whatever the
 * convention, so a Vitale 1 shows TS = 3F and its other bytes read
 * directly. A reader that hands the raw bytes of an inverse-convention card
 * shows TS = 03 (3F seen through the direct convention): atr_parse()
 * recognises that, decodes every byte (bit order reversed, levels
 * inverted), sets raw_inverse, and works on the decoded copy in
 * info->bytes, which is what matching uses.
 *
 * Patterns: "3B 75 13 00 00 40 09 EA 90 00" with a mask
 * "FF FF FF FF FF F0 FF EF FF FF" (a byte matches when atr & mask ==
 * value & mask); in the value a nibble may also be a wildcard ('.' or 'x',
 * so ".." is any byte), and a trailing "..." lets any further bytes follow.
 *
 * Pure code: no I/O, no allocation, no global state; thread-safe.
 */
#ifndef VITALED_ATR_H
#define VITALED_ATR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ATR_MAX_LEN 33      /* ISO 7816-3 §8.2.1: at most 32 bytes after TS */
#define ATR_MAX_HIST 15     /* K is a nibble */
#define ATR_MAX_LEVELS 8    /* interface-byte groups kept; more is "atr_too_many_levels" */

enum atr_convention {
	ATR_CONV_DIRECT = 0,  /* TS = 3B */
	ATR_CONV_INVERSE = 1, /* TS = 3F (or 03 raw, decoded here) */
};

enum atr_error {
	ATR_OK = 0,
	ATR_ERR_EMPTY,          /* no byte at all */
	ATR_ERR_TOO_LONG,       /* more than 33 bytes */
	ATR_ERR_BAD_TS,         /* TS neither 3B, 3F nor raw-inverse 03 */
	ATR_ERR_TRUNCATED,      /* interface or historical bytes announced but missing */
	ATR_ERR_TOO_MANY_LEVELS,/* TDi chain longer than ATR_MAX_LEVELS */
	ATR_ERR_TCK_MISSING,    /* a protocol other than T=0 offered, no TCK */
	ATR_ERR_TCK_MISMATCH,   /* XOR of T0..TCK is not 0 */
	ATR_ERR_TRAILING,       /* bytes after the ATR's announced end */
};

/* Presence bits of one interface-byte group (level i = 1, 2, ...). */
#define ATR_TA 0x01
#define ATR_TB 0x02
#define ATR_TC 0x04
#define ATR_TD 0x08

struct atr_level {
	uint8_t present;         /* ATR_TA | ATR_TB | ATR_TC | ATR_TD */
	uint8_t ta, tb, tc, td;  /* valid where present */
};

struct atr_info {
	uint8_t bytes[ATR_MAX_LEN]; /* the ATR, decoded to direct reading */
	size_t len;
	enum atr_convention conv;
	bool raw_inverse;           /* input was undecoded inverse (TS 03) */
	uint8_t t0;
	size_t nlevels;             /* groups parsed (1 + number of TDi) */
	struct atr_level level[ATR_MAX_LEVELS];
	uint16_t protocols;         /* bit t set: T=t indicated (T=15 = global bytes) */
	uint8_t hist[ATR_MAX_HIST]; /* historical bytes (a copy) */
	size_t hist_len;
	bool tck_present;
	uint8_t tck;
	enum atr_error error;       /* reason when atr_parse() fails */
};

/* Parse an ATR (ISO 7816-3 §8.2). out is cleared first, then filled even on
 * failure as far as parsing got. Returns 0, or -EINVAL with out->error set.
 * out holds no pointer: it may be copied freely. */
int atr_parse(const uint8_t *atr, size_t len, struct atr_info *out);

/* Stable lower-case name of a reason, e.g. "atr_truncated". */
const char *atr_error_name(enum atr_error e);

/* True if T=t is offered (T=0 when no TD1, §8.2.3). */
bool atr_offers(const struct atr_info *info, unsigned t);

/* Decode one byte of a raw inverse-convention stream (§8.1). */
uint8_t atr_inverse_byte(uint8_t raw);

/* Hex helpers. atr_hex_parse() accepts "3B 75 13", "3b:75:13", "3B7513"
 * (spaces, colons and tabs ignored; an odd number of digits is an error).
 * Returns 0, -EINVAL (bad character or odd length) or -EMSGSIZE (more than
 * outsz bytes). *outlen is set to the number of bytes written. */
int atr_hex_parse(const char *s, size_t slen, uint8_t *out, size_t outsz, size_t *outlen);
/* "3B 75 13" into out (always NUL-terminated; truncated with "..." if out
 * is too small). Returns out. */
char *atr_hex_format(const uint8_t *b, size_t len, char *out, size_t outsz);

struct atr_pattern {
	uint8_t value[ATR_MAX_LEN]; /* already masked */
	uint8_t mask[ATR_MAX_LEN];
	size_t len;
	bool prefix;                /* "..." at the end: further bytes allowed */
};

/* Build a pattern from a value text (hex, with nibble wildcards '.'/'x' and
 * an optional trailing "...") and an optional mask text (hex, same length
 * as the value, or NULL/empty for all-FF). Returns 0 or -EINVAL. */
int atr_pattern_parse(const char *value, size_t vlen, const char *mask, size_t mlen,
                      struct atr_pattern *out);

/* Match an ATR against a pattern. Returns 0 if it does not match, else a
 * specificity score > 0 (twice the number of mask bits set, plus one, plus
 * one more for an exact-length pattern): the caller keeps the highest. */
unsigned atr_pattern_match(const struct atr_pattern *p, const uint8_t *atr, size_t len);

/* True if info is a PC/SC part 3 pseudo-ATR of an ISO 14443-4 card
 * (3B 8n 80 01 [historical bytes] TCK), and not that of a storage card
 * (historical bytes 80 4F ..., PC/SC part 3 §3.1.3.2.3). */
bool atr_is_iso14443_4(const struct atr_info *info);

#endif
