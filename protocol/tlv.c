/* BER-TLV decoding, see tlv.h.
 *
 * Every read is preceded by a check against the end of the current
 * container, lengths are compared as 64-bit numbers against what remains
 * (never added to a pointer first), and the tree walk keeps its own
 * bounded stack, so no input can make this code read outside the buffer,
 * overflow a size or recurse.
 */
#include "protocol/tlv.h"

#include <errno.h>
#include <string.h>

const char *
tlv_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
	case -EBADMSG: return "tlv_overrun";
	case -ENODATA: return "tlv_truncated";
	case -ELOOP: return "tlv_too_deep";
	case -ENOTSUP: return "tlv_indefinite";
	case -EILSEQ: return "tlv_bad_tag";
	case -ERANGE: return "tlv_bad_length";
	case -EFBIG: return "tlv_too_large";
	case -ENOENT: return "tlv_not_found";
	case -EINVAL: return "tlv_bad_path";
	default: return "tlv_error";
	}
}

int
tlv_read(const uint8_t *buf, size_t len, struct tlv *out)
{
	size_t i = 0;
	memset(out, 0, sizeof(*out));
	if (len > TLV_MAX_INPUT)
		return -EFBIG;
	if (len == 0)
		return -ENODATA;

	/* tag (X.690 §8.1.2) */
	uint32_t tag = buf[i++];
	if ((tag & 0x1F) == 0x1F) {
		for (int n = 1;; n++) {
			if (n >= TLV_MAX_TAG_BYTES)
				return -EILSEQ;
			if (i >= len)
				return -ENODATA;
			uint8_t b = buf[i++];
			/* §8.1.2.4.2 c: the first subsequent byte is not 80 */
			if (n == 1 && b == 0x80)
				return -EILSEQ;
			tag = tag << 8 | b;
			if (!(b & 0x80))
				break;
		}
	}

	/* length (X.690 §8.1.3, definite forms only) */
	if (i >= len)
		return -ENODATA;
	uint8_t l0 = buf[i++];
	uint64_t vlen;
	if (l0 < 0x80) {
		vlen = l0;
	} else if (l0 == 0x80) {
		return -ENOTSUP;
	} else {
		size_t nb = l0 & 0x7F;
		if (nb > TLV_MAX_LEN_BYTES)
			return -ERANGE;
		if (nb > len - i)
			return -ENODATA;
		vlen = 0;
		for (size_t k = 0; k < nb; k++)
			vlen = vlen << 8 | buf[i++];
	}
	if (vlen > (uint64_t)(len - i))
		return -EBADMSG;

	out->tag = tag;
	out->constructed = (buf[0] & 0x20) != 0;
	out->start = buf;
	out->value = buf + i;
	out->len = (size_t)vlen;
	out->size = i + (size_t)vlen;
	return 0;
}

static bool
is_padding(uint8_t b)
{
	return b == 0x00 || b == 0xFF;
}

void
tlv_iter_init(struct tlv_iter *it, const uint8_t *buf, size_t len)
{
	it->p = buf;
	it->end = buf ? buf + len : buf;
	it->err = len > TLV_MAX_INPUT ? -EFBIG : 0;
}

void
tlv_iter_children(struct tlv_iter *it, const struct tlv *parent)
{
	tlv_iter_init(it, parent->value, parent->len);
}

int
tlv_iter_next(struct tlv_iter *it, struct tlv *out)
{
	memset(out, 0, sizeof(*out));
	if (it->err)
		return it->err;
	while (it->p < it->end && is_padding(*it->p))
		it->p++;
	if (it->p >= it->end)
		return 0;
	int r = tlv_read(it->p, (size_t)(it->end - it->p), out);
	if (r < 0) {
		it->err = r;
		return r;
	}
	it->p += out->size;
	return 1;
}

int
tlv_validate(const uint8_t *buf, size_t len, unsigned max_depth)
{
	const uint8_t *ends[TLV_MAX_DEPTH + 1];
	size_t level = 1;     /* level of the objects being read */
	const uint8_t *p = buf;

	if (len > TLV_MAX_INPUT)
		return -EFBIG;
	if (len == 0)
		return 0;
	if (max_depth == 0)
		max_depth = TLV_DEFAULT_DEPTH;
	if (max_depth > TLV_MAX_DEPTH)
		max_depth = TLV_MAX_DEPTH;
	ends[1] = buf + len;
	for (;;) {
		if (p >= ends[level]) {
			if (level == 1)
				return 0;
			level--;      /* the child's end is inside the parent's */
			continue;
		}
		if (is_padding(*p)) {
			p++;
			continue;
		}
		struct tlv t;
		int r = tlv_read(p, (size_t)(ends[level] - p), &t);
		if (r < 0)
			return r;
		if (t.constructed && t.len > 0) {
			if (level + 1 > max_depth)
				return -ELOOP;
			ends[++level] = t.value + t.len;
			p = t.value;
		} else {
			p = t.start + t.size;
		}
	}
}

int
tlv_find(const uint8_t *buf, size_t len, uint32_t tag, struct tlv *out)
{
	struct tlv_iter it;
	struct tlv t;
	int r;
	memset(out, 0, sizeof(*out));
	tlv_iter_init(&it, buf, len);
	while ((r = tlv_iter_next(&it, &t)) > 0) {
		if (t.tag == tag) {
			*out = t;
			return 0;
		}
	}
	return r < 0 ? r : -ENOENT;
}

int
tlv_find_path(const uint8_t *buf, size_t len, const uint32_t *path, size_t n, struct tlv *out)
{
	struct tlv t;
	memset(out, 0, sizeof(*out));
	if (n == 0 || n > TLV_PATH_MAX)
		return -ENOENT;
	const uint8_t *b = buf;
	size_t l = len;
	for (size_t i = 0; i < n; i++) {
		int r = tlv_find(b, l, path[i], &t);
		if (r < 0)
			return r;
		if (i + 1 < n && !t.constructed)
			return -ENOENT;
		b = t.value;
		l = t.len;
	}
	*out = t;
	return 0;
}

bool
tlv_tag_valid(uint32_t tag)
{
	uint8_t b[4];
	int n = 0;
	if (tag == 0)
		return false;
	for (int s = 24; s >= 0; s -= 8) {
		uint8_t x = (uint8_t)(tag >> s);
		if (n == 0 && x == 0)
			continue;
		b[n++] = x;
	}
	if (n == 1)
		return (b[0] & 0x1F) != 0x1F;
	if ((b[0] & 0x1F) != 0x1F || b[1] == 0x80)
		return false;
	for (int i = 1; i < n; i++) {
		bool more = (b[i] & 0x80) != 0;
		if (more != (i < n - 1))
			return false;
	}
	return true;
}

static int
hexv(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

int
tlv_path_parse(const char *s, size_t slen, uint32_t *path, size_t max, size_t *n)
{
	size_t count = 0, i = 0;
	*n = 0;
	if (!s || slen == 0)
		return -EINVAL;
	while (i <= slen) {
		uint32_t tag = 0;
		size_t digits = 0;
		while (i < slen && s[i] != '/') {
			int v = hexv(s[i]);
			if (v < 0 || digits >= 8)
				return -EINVAL;
			tag = tag << 4 | (uint32_t)v;
			digits++;
			i++;
		}
		if (digits == 0 || digits % 2 || !tlv_tag_valid(tag) || count >= max ||
		    count >= TLV_PATH_MAX)
			return -EINVAL;
		/* "0065" would hide a leading zero byte: refuse it */
		if ((tag >> ((digits / 2 - 1) * 8)) == 0)
			return -EINVAL;
		path[count++] = tag;
		if (i == slen)
			break;
		i++;              /* the '/' */
		if (i == slen)
			return -EINVAL;
	}
	*n = count;
	return 0;
}
