/* BER-TLV as found in smart-card files (ISO/IEC 7816-4:2013 §5.2.2,
 * coding per ISO/IEC 8825-1 (X.690) §8.1).
 *
 * Zero-copy: a struct tlv points into the caller's buffer, which must
 * outlive it. Everything is bounded: tags of at most 4 bytes, definite
 * lengths of at most 4 length bytes (81..84), input of at most
 * TLV_MAX_INPUT bytes, nesting of at most the depth asked for (capped at
 * TLV_MAX_DEPTH). The indefinite length (80) is refused: card files never
 * need it and it would let a short input claim unbounded nesting.
 *
 * Padding: ISO 7816-4 §5.2.2.1 lets '00' and 'FF' bytes without meaning
 * stand before, between and after data objects (erased or rewritten
 * records; a Vitale EF is often padded to its full size). They are not
 * valid first tag bytes, so the iterator skips them at every level.
 *
 * Errors (negative errno, named by tlv_strerror()):
 *   -EBADMSG  "tlv_overrun"    a length runs past the end of its container
 *   -ENODATA  "tlv_truncated"  the data ends inside a tag or length field
 *   -ELOOP    "tlv_too_deep"   more nesting than allowed
 *   -ENOTSUP  "tlv_indefinite" indefinite length (80)
 *   -EILSEQ   "tlv_bad_tag"    tag longer than 4 bytes or badly coded
 *   -ERANGE   "tlv_bad_length" more than 4 length bytes
 *   -EFBIG    "tlv_too_large"  input larger than TLV_MAX_INPUT
 *   -ENOENT   "tlv_not_found"  (finders) no such object
 *   -EINVAL   "tlv_bad_path"   (tlv_path_parse) the path text is wrong
 *
 * Pure code: no allocation, no I/O, no global state; thread-safe.
 */
#ifndef VITALED_TLV_H
#define VITALED_TLV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLV_MAX_TAG_BYTES 4
#define TLV_MAX_LEN_BYTES 4
#define TLV_MAX_DEPTH 64
#define TLV_DEFAULT_DEPTH 16
#define TLV_MAX_INPUT (16u * 1024u * 1024u)
#define TLV_PATH_MAX 8

struct tlv {
	uint32_t tag;          /* tag bytes, big-endian: 0x65, 0x7F21, 0x5F37 */
	bool constructed;      /* bit 6 of the first tag byte */
	const uint8_t *value;  /* into the input */
	size_t len;
	const uint8_t *start;  /* first tag byte */
	size_t size;           /* tag + length fields + value */
};

/* Decode the one object that starts at buf[0] (no padding skipped).
 * Returns 0 or a negative errno above; out is cleared first. */
int tlv_read(const uint8_t *buf, size_t len, struct tlv *out);

struct tlv_iter {
	const uint8_t *p, *end;
	int err;               /* sticky: the first error seen */
};

/* Iterate the objects of buf[0..len) (one level), skipping 00/FF padding. */
void tlv_iter_init(struct tlv_iter *it, const uint8_t *buf, size_t len);
/* The children of a constructed (or any) object: iterate its value. */
void tlv_iter_children(struct tlv_iter *it, const struct tlv *parent);
/* 1 and *out for the next object, 0 at the end, or a negative errno (and
 * again on every later call). */
int tlv_iter_next(struct tlv_iter *it, struct tlv *out);

/* Check a whole tree: every object well formed, every constructed value
 * made of objects, nesting at most max_depth levels (top level = 1;
 * 0 means TLV_DEFAULT_DEPTH; capped at TLV_MAX_DEPTH). Iterative. */
int tlv_validate(const uint8_t *buf, size_t len, unsigned max_depth);

/* First object with this tag at the top level of buf. */
int tlv_find(const uint8_t *buf, size_t len, uint32_t tag, struct tlv *out);
/* Follow path[0] at the top level, path[1] among its children, ...
 * (the first match at each level). n = 0 is -ENOENT. */
int tlv_find_path(const uint8_t *buf, size_t len, const uint32_t *path, size_t n,
                  struct tlv *out);

/* Parse "65/93" or "7F21" (hex tags separated by '/', each a well-coded
 * tag of 1..4 bytes) into path[0..*n). Returns 0 or -EINVAL. */
int tlv_path_parse(const char *s, size_t slen, uint32_t *path, size_t max, size_t *n);
/* True if tag is coded as BER allows (low 5 bits 11111 iff multi-byte,
 * continuation bits right). */
bool tlv_tag_valid(uint32_t tag);

const char *tlv_strerror(int err);

#endif
