/* CBOR (RFC 8949): a bounded decoder into a flat item tree and a
 * deterministic encoder.
 *
 * vitaled uses this module for everything CBOR: the digital card protocol
 * (docs/digital-card.md §6), COSE (protocol/cose.h) and care sheets. We do not
 * use libcbor: Debian bookworm ships 0.8, whose encoder does not produce the
 * deterministic map ordering of RFC 8949 §4.2.1 and whose decoder does not
 * reject non-deterministic input, which both the protocol and signed sheets
 * need.
 *
 * Decoder. cbor_decode() parses exactly one item (no trailing bytes) into a
 * flat array of struct cbor_item in pre-order: a container is followed by its
 * children (a map by key, value, key, value ...; a tag by the tagged item),
 * and every item knows the index just past its subtree ("next"), so walking
 * and skipping are cheap. Byte and text strings are zero-copy: they point into
 * the caller's input, which must outlive the document. Always rejected:
 * indefinite lengths (§3.2.1-3.2.3), reserved additional-information values,
 * floats, undefined and every simple value but false/true/null, invalid UTF-8
 * in text strings (§5.3.1), and anything beyond the limits (input size, item
 * count, nesting depth). With CBOR_STRICT the input must also be encoded
 * deterministically (§4.2.1): shortest heads for integers, lengths and tags,
 * map keys in bytewise order of their encodings, no duplicate keys. Without
 * it, non-shortest heads and unsorted keys are accepted, but duplicate keys
 * (equal by value for integers and strings, by encoding otherwise) are still
 * rejected.
 *
 * Depth: arrays, maps and tags each count one level; a top-level container
 * is at depth 1, so with max_depth 8 the item [[[[[[[[1]]]]]]]] is accepted
 * and one more array is not.
 *
 * Encoder. struct cbor_enc is a growable buffer bounded at init. Containers
 * are opened and closed (the element count is written when they close) and
 * map entries are sorted by their encoded keys when the map closes, so the
 * output is always deterministic whatever order the caller writes the
 * entries in. Errors are sticky: after the first failure every call returns
 * it again, so a sequence of writes may be checked once at cbor_enc_finish().
 *
 * All functions are pure and thread-safe on distinct objects; none logs.
 * Errors are negative errno values:
 *   -EBADMSG  not well-formed (truncated, trailing bytes, bad head, break)
 *   -EILSEQ   a text string that is not valid UTF-8
 *   -EDOM     not deterministic in strict mode (non-shortest head, key order)
 *   -ENOTUNIQ duplicate map key
 *   -ENOTSUP  indefinite length, float, undefined or another simple value;
 *             what the CBOR_NO_* / CBOR_KEYS_* flags refuse
 *   -E2BIG    input, item count or encoder output over the limit
 *   -ELOOP    nesting deeper than the limit
 *   -ENOMEM   allocation failure
 *   -EINVAL   misuse (bad arguments, unbalanced containers, odd map entries)
 */
#ifndef VITALED_CBOR_H
#define VITALED_CBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hard caps whatever the limits say: the decoder recurses per level. */
#define CBOR_DEPTH_HARD_MAX 64
#define CBOR_ITEMS_HARD_MAX 1000000u

enum cbor_type {
	CBOR_UINT = 1, /* u: the value */
	CBOR_NEGINT,   /* u: n, the value is -1 - n (so down to -2^64) */
	CBOR_BYTES,    /* ptr/len: content */
	CBOR_TEXT,     /* ptr/len: content, valid UTF-8, not NUL-terminated */
	CBOR_ARRAY,    /* count: elements */
	CBOR_MAP,      /* count: pairs (2 * count children) */
	CBOR_TAG,      /* u: tag number; one child */
	CBOR_BOOL,     /* u: 0 or 1 */
	CBOR_NULL,
};

struct cbor_item {
	enum cbor_type type;
	uint32_t count;      /* arrays: elements; maps: pairs */
	uint32_t next;       /* index of the first item after this subtree */
	uint32_t depth;      /* containers around it (top-level item: 0) */
	uint64_t u;          /* see enum cbor_type */
	const uint8_t *ptr;  /* strings: content (points into the input) */
	size_t len;
	const uint8_t *raw;  /* the whole encoded item, head and subtree */
	size_t raw_len;
};

struct cbor_limits {
	size_t max_size;    /* input bytes */
	uint32_t max_items; /* items in the tree (each head counts one) */
	uint32_t max_depth; /* nesting, see above; at most CBOR_DEPTH_HARD_MAX */
};

/* Generous defaults for vitaled's own documents (care sheets, batches). The
 * digital card uses its own, tighter limits (docs/digital-card.md §13). */
#define CBOR_LIMITS_DEFAULT ((struct cbor_limits){ 1u << 20, 65536, 16 })

#define CBOR_STRICT 0x1u /* require deterministic encoding (RFC 8949 §4.2.1) */
/* Narrower data models, each refusal -ENOTSUP (docs/digital-card.md §6
 * allows no null, no tags but the COSE_Sign1 tag at the top, and only
 * integer and text map keys): */
#define CBOR_NO_NULL 0x2u        /* refuse null */
#define CBOR_KEYS_INT_TEXT 0x4u  /* map keys must be integers or text strings */
#define CBOR_NO_TAGS 0x8u        /* refuse every tag ... */
#define CBOR_TOP_TAG18 0x10u     /* ... but tag 18 on the top-level item */

struct cbor_doc {
	struct cbor_item *items; /* owned; items[0] is the root */
	uint32_t nitems;
	uint32_t cap;
};

/* Decode buf[0..len) as exactly one item. doc is cleared first and, on
 * success, owns an item array (free with cbor_doc_free) whose strings point
 * into buf. lim may be NULL for CBOR_LIMITS_DEFAULT. On failure doc is left
 * empty (nothing to free, freeing is harmless). */
int cbor_decode(const uint8_t *buf, size_t len, const struct cbor_limits *lim, unsigned flags,
                struct cbor_doc *doc);

/* Free the item array; doc becomes empty. NULL-safe. */
void cbor_doc_free(struct cbor_doc *doc);

/* The root item, or NULL for an empty document. */
const struct cbor_item *cbor_root(const struct cbor_doc *doc);

/* Child i of a container (arrays: element i; maps: item i of the 2*count
 * keys and values; tags: 0 only), or NULL when out of range or it is not a
 * container. O(i). */
const struct cbor_item *cbor_child(const struct cbor_doc *doc, const struct cbor_item *it,
                                   size_t i);

/* Iterate over a container's children in order (maps: key, value, ...). */
struct cbor_iter {
	const struct cbor_doc *doc;
	uint32_t pos;
	uint32_t left;
};
void cbor_iter_init(struct cbor_iter *iter, const struct cbor_doc *doc, const struct cbor_item *it);
/* Next child, or NULL at the end. */
const struct cbor_item *cbor_iter_next(struct cbor_iter *iter);

/* The value for a text key (compared bytewise with the NUL-terminated key) or
 * an integer key in a map; NULL when absent or it is not a map. */
const struct cbor_item *cbor_map_get_text(const struct cbor_doc *doc, const struct cbor_item *map,
                                          const char *key);
const struct cbor_item *cbor_map_get_int(const struct cbor_doc *doc, const struct cbor_item *map,
                                         int64_t key);

/* Typed reads. Return 0, -EINVAL when it is NULL or of another type, or
 * -ERANGE when the integer does not fit. *out is cleared first. */
int cbor_get_uint(const struct cbor_item *it, uint64_t *out);
int cbor_get_int(const struct cbor_item *it, int64_t *out);
int cbor_get_bool(const struct cbor_item *it, bool *out);
/* True when it is a text string equal to the NUL-terminated s. */
bool cbor_text_eq(const struct cbor_item *it, const char *s);
/* True when it is an integer equal to v. */
bool cbor_int_eq(const struct cbor_item *it, int64_t v);

/* Validate UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
bool cbor_utf8_valid(const uint8_t *p, size_t len);

/* ------------------------------------------------------------------------ */
/* Encoder */

#define CBOR_ENC_DEPTH_MAX 32

struct cbor_enc_level {
	size_t start;    /* offset of the container's (future) head */
	size_t mark0;    /* index in marks of its first child */
	bool map;
};

struct cbor_enc {
	uint8_t *buf;
	size_t len, cap, max;
	size_t *marks;   /* start offsets of the children of open containers */
	size_t nmarks, capmarks;
	struct cbor_enc_level lv[CBOR_ENC_DEPTH_MAX];
	unsigned depth;
	bool in_tag;     /* the next item is the content of a tag just written */
	int err;         /* sticky */
};

/* Prepare an empty encoder whose output may grow to max bytes (at least 1).
 * Nothing is allocated until the first write. */
int cbor_enc_init(struct cbor_enc *e, size_t max);
/* Wipe (outputs may hold identity data) and free. The encoder is reset and
 * may be initialised again. NULL-safe. */
void cbor_enc_free(struct cbor_enc *e);

int cbor_enc_uint(struct cbor_enc *e, uint64_t v);
int cbor_enc_int(struct cbor_enc *e, int64_t v);
int cbor_enc_bytes(struct cbor_enc *e, const uint8_t *p, size_t n);
/* Text must be valid UTF-8 (-EILSEQ otherwise). */
int cbor_enc_text(struct cbor_enc *e, const char *p, size_t n);
int cbor_enc_textz(struct cbor_enc *e, const char *s);
int cbor_enc_bool(struct cbor_enc *e, bool v);
int cbor_enc_null(struct cbor_enc *e);
/* A tag head; the next item written is its content. */
int cbor_enc_tag(struct cbor_enc *e, uint64_t tag);
/* One item already encoded (the caller guarantees it is one well-formed,
 * deterministic item; e.g. a signed COSE_Sign1 inside a batch). */
int cbor_enc_raw(struct cbor_enc *e, const uint8_t *p, size_t n);
int cbor_enc_array_begin(struct cbor_enc *e);
int cbor_enc_array_end(struct cbor_enc *e);
int cbor_enc_map_begin(struct cbor_enc *e);
/* Sorts the entries by encoded key; -ENOTUNIQ on a duplicate key, -EINVAL on
 * an odd number of items. */
int cbor_enc_map_end(struct cbor_enc *e);

/* Check that every container is closed and no error happened; *out points
 * to the encoder's buffer (valid until the next write or cbor_enc_free). */
int cbor_enc_finish(struct cbor_enc *e, const uint8_t **out, size_t *len);
/* Like cbor_enc_finish, but the caller takes the buffer (free() it) and the
 * encoder is reset to empty. An empty output gives a 1-byte allocation. */
int cbor_enc_take(struct cbor_enc *e, uint8_t **out, size_t *len);

#endif
