/* CBOR (RFC 8949) for vitaled: a bounded, optionally strict decoder into a
 * flat pre-order item array, and a deterministic encoder (§4.2.1).
 *
 * The decoder recurses once per nesting level, bounded by the caller's
 * max_depth (itself capped at CBOR_DEPTH_HARD_MAX), and allocates its item
 * array by doubling up to max_items. Every length read from the input is
 * checked against the bytes left before anything is believed: a string must
 * fit, and an array (map) of n items needs at least n (2n) more bytes.
 *
 * The encoder writes items in the order given and fixes containers up when
 * they close: the head (whose size depends on the count) is inserted before
 * the children, and map entries are reordered by their encoded keys. The
 * start offsets of the children of open containers are kept in one stack
 * ("marks") so that a map knows where each key and value begins.
 */
#include "protocol/cbor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* UTF-8 (RFC 3629 §4) */

bool
cbor_utf8_valid(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		uint8_t c = p[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xE0) == 0xC0) {
			n = 1;
			cp = c & 0x1Fu;
			min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 2;
			cp = c & 0x0Fu;
			min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 3;
			cp = c & 0x07u;
			min = 0x10000;
		} else {
			return false;
		}
		if (len - i - 1 < n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			uint8_t cc = p[i + k];
			if ((cc & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (cc & 0x3Fu);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += n + 1;
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* Decoder */

struct dec {
	const uint8_t *buf;
	size_t pos, len;
	const struct cbor_limits *lim;
	bool strict;
	unsigned flags;
	struct cbor_doc *doc;
};

static int
dec_push(struct dec *d, uint32_t *idx)
{
	struct cbor_doc *doc = d->doc;
	uint32_t max = d->lim->max_items;

	if (max > CBOR_ITEMS_HARD_MAX)
		max = CBOR_ITEMS_HARD_MAX;
	if (doc->nitems >= max)
		return -E2BIG;
	if (doc->nitems == doc->cap) {
		uint32_t ncap = doc->cap ? doc->cap * 2 : 16;
		struct cbor_item *n;

		if (ncap > max)
			ncap = max;
		n = realloc(doc->items, (size_t)ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		doc->items = n;
		doc->cap = ncap;
	}
	*idx = doc->nitems++;
	memset(&doc->items[*idx], 0, sizeof(doc->items[0]));
	return 0;
}

/* Read one head (RFC 8949 §3): major type, additional information and its
 * argument. Major type 7 is handled by the caller from ai. */
static int
dec_head(struct dec *d, unsigned *major, unsigned *ai, uint64_t *val)
{
	uint8_t ib;
	size_t n;
	uint64_t v = 0;

	if (d->pos >= d->len)
		return -EBADMSG;
	ib = d->buf[d->pos++];
	*major = ib >> 5;
	*ai = ib & 0x1Fu;
	*val = 0;
	if (*ai < 24) {
		*val = *ai;
		return 0;
	}
	if (*ai == 31) {
		/* §3.2: indefinite lengths exist for strings, arrays and maps
		 * only (and "break" for major 7, which is never expected here). */
		if (*major >= 2 && *major <= 5)
			return -ENOTSUP;
		return -EBADMSG;
	}
	if (*ai > 27)
		return -EBADMSG; /* 28..30 reserved (§3) */
	n = (size_t)1 << (*ai - 24);
	if (d->len - d->pos < n)
		return -EBADMSG;
	if (*major == 7) {
		/* simple value (1 byte) or float: the caller decides */
		for (size_t i = 0; i < n; i++)
			v = (v << 8) | d->buf[d->pos + i];
		d->pos += n;
		*val = v;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | d->buf[d->pos + i];
	d->pos += n;
	/* §4.2.1: the argument in the shortest form. */
	if (d->strict && ((*ai == 24 && v < 24) || (*ai == 25 && v <= 0xFF) ||
	                  (*ai == 26 && v <= 0xFFFF) || (*ai == 27 && v <= 0xFFFFFFFFu)))
		return -EDOM;
	*val = v;
	return 0;
}

static int
raw_cmp(const struct cbor_item *a, const struct cbor_item *b)
{
	size_t n = a->raw_len < b->raw_len ? a->raw_len : b->raw_len;
	int c = memcmp(a->raw, b->raw, n);

	if (c)
		return c;
	return (a->raw_len > b->raw_len) - (a->raw_len < b->raw_len);
}

/* Key equality for the non-strict duplicate check. */
static bool
key_equal(const struct cbor_item *a, const struct cbor_item *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case CBOR_UINT:
	case CBOR_NEGINT:
	case CBOR_BOOL:
		return a->u == b->u;
	case CBOR_NULL:
		return true;
	case CBOR_BYTES:
	case CBOR_TEXT:
		return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
	default:
		return raw_cmp(a, b) == 0;
	}
}

static int dec_item(struct dec *d, uint32_t depth);

static int
dec_map_entries(struct dec *d, uint32_t idx, uint64_t pairs, uint32_t depth)
{
	struct cbor_item *items;
	uint32_t prev_key = 0;
	int rc;

	for (uint64_t i = 0; i < pairs; i++) {
		uint32_t key = d->doc->nitems;

		rc = dec_item(d, depth);
		if (rc)
			return rc;
		items = d->doc->items;
		if ((d->flags & CBOR_KEYS_INT_TEXT) && items[key].type != CBOR_UINT &&
		    items[key].type != CBOR_NEGINT && items[key].type != CBOR_TEXT)
			return -ENOTSUP;
		if (i > 0 && d->strict) {
			/* §4.2.1: keys in bytewise lexicographic order of
			 * their deterministic encodings. */
			int c = raw_cmp(&items[prev_key], &items[key]);
			if (c == 0)
				return -ENOTUNIQ;
			if (c > 0)
				return -EDOM;
		} else if (i > 0) {
			uint32_t k = idx + 1;
			for (uint64_t j = 0; j < i; j++) {
				if (key_equal(&items[k], &items[key]))
					return -ENOTUNIQ;
				k = items[items[k].next].next; /* skip key and value */
			}
		}
		prev_key = key;
		rc = dec_item(d, depth);
		if (rc)
			return rc;
	}
	return 0;
}

static int
dec_item(struct dec *d, uint32_t depth)
{
	size_t start = d->pos;
	unsigned major, ai;
	uint64_t val;
	uint32_t idx;
	struct cbor_item *it;
	int rc;

	rc = dec_push(d, &idx);
	if (rc)
		return rc;
	rc = dec_head(d, &major, &ai, &val);
	if (rc)
		return rc;
	it = &d->doc->items[idx];
	it->depth = depth;
	switch (major) {
	case 0:
		it->type = CBOR_UINT;
		it->u = val;
		break;
	case 1:
		it->type = CBOR_NEGINT;
		it->u = val;
		break;
	case 2:
	case 3:
		if (val > d->len - d->pos)
			return -EBADMSG;
		it->type = major == 2 ? CBOR_BYTES : CBOR_TEXT;
		it->ptr = d->buf + d->pos;
		it->len = (size_t)val;
		d->pos += (size_t)val;
		if (major == 3 && !cbor_utf8_valid(it->ptr, it->len))
			return -EILSEQ;
		break;
	case 4:
	case 5:
	case 6:
		if (depth + 1 > d->lim->max_depth || depth + 1 > CBOR_DEPTH_HARD_MAX)
			return -ELOOP;
		if (major == 6) {
			if ((d->flags & CBOR_NO_TAGS) &&
			    !((d->flags & CBOR_TOP_TAG18) && depth == 0 && val == 18))
				return -ENOTSUP;
			it->type = CBOR_TAG;
			it->u = val;
			it->count = 1;
			rc = dec_item(d, depth + 1);
		} else if (major == 4) {
			/* every element needs at least one byte */
			if (val > d->len - d->pos)
				return -EBADMSG;
			it->type = CBOR_ARRAY;
			it->count = (uint32_t)val;
			for (uint64_t i = 0; i < val && !rc; i++)
				rc = dec_item(d, depth + 1);
		} else {
			if (val > (d->len - d->pos) / 2)
				return -EBADMSG;
			it->type = CBOR_MAP;
			it->count = (uint32_t)val;
			rc = dec_map_entries(d, idx, val, depth + 1);
		}
		if (rc)
			return rc;
		break;
	default: /* 7: simple values and floats (§3.3) */
		if (ai == 20 || ai == 21) {
			it->type = CBOR_BOOL;
			it->u = ai == 21;
		} else if (ai == 22) {
			if (d->flags & CBOR_NO_NULL)
				return -ENOTSUP;
			it->type = CBOR_NULL;
		} else if (ai == 24 && val < 32) {
			return -EBADMSG; /* §3.3: not well-formed */
		} else {
			return -ENOTSUP; /* undefined, other simple values, floats */
		}
		break;
	}
	it = &d->doc->items[idx]; /* the array may have moved */
	it->next = d->doc->nitems;
	it->raw = d->buf + start;
	it->raw_len = d->pos - start;
	return 0;
}

int
cbor_decode(const uint8_t *buf, size_t len, const struct cbor_limits *lim, unsigned flags,
            struct cbor_doc *doc)
{
	static const struct cbor_limits def = CBOR_LIMITS_DEFAULT;
	struct dec d;
	int rc;

	if (!doc)
		return -EINVAL;
	memset(doc, 0, sizeof(*doc));
	if (!buf && len)
		return -EINVAL;
	if (!lim)
		lim = &def;
	if (len > lim->max_size)
		return -E2BIG;
	if (len == 0)
		return -EBADMSG;
	d = (struct dec){ .buf = buf, .len = len, .lim = lim, .strict = flags & CBOR_STRICT,
		          .flags = flags, .doc = doc };
	rc = dec_item(&d, 0);
	if (rc == 0 && d.pos != len)
		rc = -EBADMSG; /* trailing bytes */
	if (rc)
		cbor_doc_free(doc);
	return rc;
}

void
cbor_doc_free(struct cbor_doc *doc)
{
	if (!doc)
		return;
	free(doc->items);
	memset(doc, 0, sizeof(*doc));
}

const struct cbor_item *
cbor_root(const struct cbor_doc *doc)
{
	return doc && doc->nitems ? &doc->items[0] : NULL;
}

static uint32_t
nchildren(const struct cbor_item *it)
{
	switch (it->type) {
	case CBOR_ARRAY:
		return it->count;
	case CBOR_MAP:
		return it->count * 2;
	case CBOR_TAG:
		return 1;
	default:
		return 0;
	}
}

const struct cbor_item *
cbor_child(const struct cbor_doc *doc, const struct cbor_item *it, size_t i)
{
	struct cbor_iter iter;
	const struct cbor_item *c = NULL;

	cbor_iter_init(&iter, doc, it);
	if (i >= iter.left)
		return NULL;
	for (size_t k = 0; k <= i; k++)
		c = cbor_iter_next(&iter);
	return c;
}

void
cbor_iter_init(struct cbor_iter *iter, const struct cbor_doc *doc, const struct cbor_item *it)
{
	memset(iter, 0, sizeof(*iter));
	if (!doc || !it || it < doc->items || it >= doc->items + doc->nitems)
		return;
	iter->doc = doc;
	iter->pos = (uint32_t)(it - doc->items) + 1;
	iter->left = nchildren(it);
}

const struct cbor_item *
cbor_iter_next(struct cbor_iter *iter)
{
	const struct cbor_item *c;

	if (!iter->left || iter->pos >= iter->doc->nitems)
		return NULL;
	c = &iter->doc->items[iter->pos];
	iter->pos = c->next;
	iter->left--;
	return c;
}

const struct cbor_item *
cbor_map_get_text(const struct cbor_doc *doc, const struct cbor_item *map, const char *key)
{
	struct cbor_iter iter;
	const struct cbor_item *k, *v;

	if (!map || map->type != CBOR_MAP || !key)
		return NULL;
	cbor_iter_init(&iter, doc, map);
	while ((k = cbor_iter_next(&iter)) && (v = cbor_iter_next(&iter)))
		if (cbor_text_eq(k, key))
			return v;
	return NULL;
}

const struct cbor_item *
cbor_map_get_int(const struct cbor_doc *doc, const struct cbor_item *map, int64_t key)
{
	struct cbor_iter iter;
	const struct cbor_item *k, *v;

	if (!map || map->type != CBOR_MAP)
		return NULL;
	cbor_iter_init(&iter, doc, map);
	while ((k = cbor_iter_next(&iter)) && (v = cbor_iter_next(&iter)))
		if (cbor_int_eq(k, key))
			return v;
	return NULL;
}

int
cbor_get_uint(const struct cbor_item *it, uint64_t *out)
{
	*out = 0;
	if (!it || it->type != CBOR_UINT)
		return -EINVAL;
	*out = it->u;
	return 0;
}

int
cbor_get_int(const struct cbor_item *it, int64_t *out)
{
	*out = 0;
	if (!it || (it->type != CBOR_UINT && it->type != CBOR_NEGINT))
		return -EINVAL;
	if (it->u > (uint64_t)INT64_MAX)
		return -ERANGE;
	*out = it->type == CBOR_UINT ? (int64_t)it->u : -1 - (int64_t)it->u;
	return 0;
}

int
cbor_get_bool(const struct cbor_item *it, bool *out)
{
	*out = false;
	if (!it || it->type != CBOR_BOOL)
		return -EINVAL;
	*out = it->u != 0;
	return 0;
}

bool
cbor_text_eq(const struct cbor_item *it, const char *s)
{
	size_t n = strlen(s);

	return it && it->type == CBOR_TEXT && it->len == n && memcmp(it->ptr, s, n) == 0;
}

bool
cbor_int_eq(const struct cbor_item *it, int64_t v)
{
	int64_t x;

	return cbor_get_int(it, &x) == 0 && x == v;
}

/* ------------------------------------------------------------------------ */
/* Encoder */

static size_t
head_encode(uint8_t out[9], unsigned major, uint64_t v)
{
	uint8_t mt = (uint8_t)(major << 5);
	size_t n;

	if (v < 24) {
		out[0] = (uint8_t)(mt | v);
		return 1;
	}
	if (v <= 0xFF) {
		out[0] = mt | 24;
		n = 1;
	} else if (v <= 0xFFFF) {
		out[0] = mt | 25;
		n = 2;
	} else if (v <= 0xFFFFFFFFu) {
		out[0] = mt | 26;
		n = 4;
	} else {
		out[0] = mt | 27;
		n = 8;
	}
	for (size_t i = 0; i < n; i++)
		out[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return n + 1;
}

static int
enc_fail(struct cbor_enc *e, int rc)
{
	if (!e->err)
		e->err = rc;
	return e->err;
}

/* Make room for n more bytes. Growth copies by hand so that the old buffer
 * is wiped before it is freed (it may hold identity data). */
static int
enc_reserve(struct cbor_enc *e, size_t n)
{
	size_t ncap;
	uint8_t *nb;

	if (e->err)
		return e->err;
	if (n > e->max - e->len)
		return enc_fail(e, -E2BIG);
	if (e->len + n <= e->cap)
		return 0;
	ncap = e->cap ? e->cap : 64;
	while (ncap < e->len + n)
		ncap = ncap > e->max / 2 ? e->max : ncap * 2;
	if (ncap > e->max)
		ncap = e->max;
	nb = malloc(ncap);
	if (!nb)
		return enc_fail(e, -ENOMEM);
	if (e->buf) {
		memcpy(nb, e->buf, e->len);
		explicit_bzero(e->buf, e->cap);
		free(e->buf);
	}
	e->buf = nb;
	e->cap = ncap;
	return 0;
}

/* Record the start of a new item in the current container (unless it is the
 * content of a tag, which belongs to the tag's mark). */
static int
enc_item_start(struct cbor_enc *e)
{
	if (e->err)
		return e->err;
	if (e->in_tag) {
		e->in_tag = false;
		return 0;
	}
	if (e->depth == 0)
		return 0;
	if (e->nmarks == e->capmarks) {
		size_t ncap = e->capmarks ? e->capmarks * 2 : 32;
		size_t *nm;

		if (ncap > e->max + 1)
			ncap = e->max + 1; /* every item takes at least a byte */
		if (ncap <= e->nmarks)
			return enc_fail(e, -E2BIG);
		nm = realloc(e->marks, ncap * sizeof(*nm));
		if (!nm)
			return enc_fail(e, -ENOMEM);
		e->marks = nm;
		e->capmarks = ncap;
	}
	e->marks[e->nmarks++] = e->len;
	return 0;
}

static int
enc_put(struct cbor_enc *e, const uint8_t *p, size_t n)
{
	int rc = enc_reserve(e, n);

	if (rc)
		return rc;
	if (n)
		memcpy(e->buf + e->len, p, n);
	e->len += n;
	return 0;
}

static int
enc_head_item(struct cbor_enc *e, unsigned major, uint64_t v, const uint8_t *p, size_t n)
{
	uint8_t h[9];
	size_t hl = head_encode(h, major, v);
	int rc;

	rc = enc_item_start(e);
	if (rc)
		return rc;
	rc = enc_reserve(e, hl + n);
	if (rc)
		return rc;
	enc_put(e, h, hl);
	return enc_put(e, p, n);
}

int
cbor_enc_init(struct cbor_enc *e, size_t max)
{
	if (!e)
		return -EINVAL;
	memset(e, 0, sizeof(*e));
	if (max == 0)
		return -EINVAL;
	e->max = max;
	return 0;
}

void
cbor_enc_free(struct cbor_enc *e)
{
	if (!e)
		return;
	if (e->buf) {
		explicit_bzero(e->buf, e->cap);
		free(e->buf);
	}
	free(e->marks);
	memset(e, 0, sizeof(*e));
}

int
cbor_enc_uint(struct cbor_enc *e, uint64_t v)
{
	return enc_head_item(e, 0, v, NULL, 0);
}

int
cbor_enc_int(struct cbor_enc *e, int64_t v)
{
	if (v >= 0)
		return enc_head_item(e, 0, (uint64_t)v, NULL, 0);
	return enc_head_item(e, 1, (uint64_t)(-1 - v), NULL, 0);
}

int
cbor_enc_bytes(struct cbor_enc *e, const uint8_t *p, size_t n)
{
	if (!p && n)
		return enc_fail(e, -EINVAL);
	return enc_head_item(e, 2, n, p, n);
}

int
cbor_enc_text(struct cbor_enc *e, const char *p, size_t n)
{
	if (!p && n)
		return enc_fail(e, -EINVAL);
	if (!cbor_utf8_valid((const uint8_t *)p, n))
		return enc_fail(e, -EILSEQ);
	return enc_head_item(e, 3, n, (const uint8_t *)p, n);
}

int
cbor_enc_textz(struct cbor_enc *e, const char *s)
{
	if (!s)
		return enc_fail(e, -EINVAL);
	return cbor_enc_text(e, s, strlen(s));
}

int
cbor_enc_bool(struct cbor_enc *e, bool v)
{
	uint8_t b = v ? 0xF5 : 0xF4;
	int rc = enc_item_start(e);

	return rc ? rc : enc_put(e, &b, 1);
}

int
cbor_enc_null(struct cbor_enc *e)
{
	uint8_t b = 0xF6;
	int rc = enc_item_start(e);

	return rc ? rc : enc_put(e, &b, 1);
}

int
cbor_enc_tag(struct cbor_enc *e, uint64_t tag)
{
	int rc = enc_head_item(e, 6, tag, NULL, 0);

	if (rc == 0)
		e->in_tag = true;
	return rc;
}

int
cbor_enc_raw(struct cbor_enc *e, const uint8_t *p, size_t n)
{
	int rc;

	if (!p || !n)
		return enc_fail(e, -EINVAL);
	rc = enc_item_start(e);
	return rc ? rc : enc_put(e, p, n);
}

static int
enc_begin(struct cbor_enc *e, bool map)
{
	int rc = enc_item_start(e);

	if (rc)
		return rc;
	if (e->depth >= CBOR_ENC_DEPTH_MAX)
		return enc_fail(e, -ELOOP);
	e->lv[e->depth++] = (struct cbor_enc_level){ .start = e->len, .mark0 = e->nmarks, .map = map };
	return 0;
}

int
cbor_enc_array_begin(struct cbor_enc *e)
{
	return enc_begin(e, false);
}

int
cbor_enc_map_begin(struct cbor_enc *e)
{
	return enc_begin(e, true);
}

/* Insert the container's head at its start, now that the count is known. */
static int
enc_insert_head(struct cbor_enc *e, size_t start, unsigned major, uint64_t count)
{
	uint8_t h[9];
	size_t hl = head_encode(h, major, count);
	int rc = enc_reserve(e, hl);

	if (rc)
		return rc;
	memmove(e->buf + start + hl, e->buf + start, e->len - start);
	memcpy(e->buf + start, h, hl);
	e->len += hl;
	return 0;
}

static int
enc_end_check(struct cbor_enc *e, bool map)
{
	if (e->err)
		return e->err;
	if (e->depth == 0 || e->lv[e->depth - 1].map != map || e->in_tag)
		return enc_fail(e, -EINVAL);
	return 0;
}

int
cbor_enc_array_end(struct cbor_enc *e)
{
	struct cbor_enc_level lv;
	int rc = enc_end_check(e, false);

	if (rc)
		return rc;
	lv = e->lv[--e->depth];
	rc = enc_insert_head(e, lv.start, 4, e->nmarks - lv.mark0);
	e->nmarks = lv.mark0;
	return rc;
}

struct enc_pair {
	const uint8_t *key;
	size_t klen;
	size_t start, end;
};

static int
pair_cmp(const void *a, const void *b)
{
	const struct enc_pair *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);

	if (c)
		return c;
	return (x->klen > y->klen) - (x->klen < y->klen);
}

int
cbor_enc_map_end(struct cbor_enc *e)
{
	struct cbor_enc_level lv;
	struct enc_pair *pairs = NULL;
	uint8_t *tmp = NULL;
	size_t nitems, npairs, region, off;
	int rc = enc_end_check(e, true);

	if (rc)
		return rc;
	lv = e->lv[e->depth - 1];
	nitems = e->nmarks - lv.mark0;
	if (nitems % 2)
		return enc_fail(e, -EINVAL);
	npairs = nitems / 2;
	region = e->len - lv.start;
	if (npairs > 1) {
		pairs = calloc(npairs, sizeof(*pairs));
		tmp = malloc(region);
		if (!pairs || !tmp) {
			rc = enc_fail(e, -ENOMEM);
			goto out;
		}
		for (size_t i = 0; i < npairs; i++) {
			size_t ks = e->marks[lv.mark0 + 2 * i], vs = e->marks[lv.mark0 + 2 * i + 1];
			size_t end = i + 1 < npairs ? e->marks[lv.mark0 + 2 * i + 2] : e->len;

			pairs[i] = (struct enc_pair){ e->buf + ks, vs - ks, ks, end };
		}
		/* §4.2.1: bytewise lexicographic order of the encoded keys. */
		qsort(pairs, npairs, sizeof(*pairs), pair_cmp);
		for (size_t i = 1; i < npairs; i++) {
			if (pair_cmp(&pairs[i - 1], &pairs[i]) == 0) {
				rc = enc_fail(e, -ENOTUNIQ);
				goto out;
			}
		}
		off = 0;
		for (size_t i = 0; i < npairs; i++) {
			memcpy(tmp + off, e->buf + pairs[i].start, pairs[i].end - pairs[i].start);
			off += pairs[i].end - pairs[i].start;
		}
		memcpy(e->buf + lv.start, tmp, region);
	}
	e->depth--;
	e->nmarks = lv.mark0;
	rc = enc_insert_head(e, lv.start, 5, npairs);
out:
	if (tmp) {
		explicit_bzero(tmp, region);
		free(tmp);
	}
	free(pairs);
	return rc;
}

int
cbor_enc_finish(struct cbor_enc *e, const uint8_t **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	if (e->err)
		return e->err;
	if (e->depth || e->in_tag)
		return enc_fail(e, -EINVAL);
	*out = e->buf;
	*len = e->len;
	return 0;
}

int
cbor_enc_take(struct cbor_enc *e, uint8_t **out, size_t *len)
{
	const uint8_t *p;
	size_t max = e->max;
	int rc;

	*out = NULL;
	*len = 0;
	rc = cbor_enc_finish(e, &p, len);
	if (rc)
		return rc;
	if (!e->buf) {
		e->buf = malloc(1);
		if (!e->buf)
			return enc_fail(e, -ENOMEM);
	}
	*out = e->buf;
	e->buf = NULL;
	cbor_enc_free(e);
	e->max = max;
	return 0;
}
