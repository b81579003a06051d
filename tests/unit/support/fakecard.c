/* Fakes at the APDU seam for the protocol unit suites: see fakecard.h. */
#include "tests/unit/support/fakecard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t
fakecard_unhex(const char *s, uint8_t *out, size_t max)
{
	size_t n = 0;
	int hi = -1;
	for (; *s; s++) {
		int v;
		if (*s == ' ')
			continue;
		if (*s >= '0' && *s <= '9') v = *s - '0';
		else if (*s >= 'a' && *s <= 'f') v = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'F') v = *s - 'A' + 10;
		else abort();
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n >= max)
			abort();
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	return n;
}

/* ---- transcript ---- */

int
fakecard_tx_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct transcript *t = ctx;
	uint8_t want[300], resp[600];
	if (t->pos >= t->n) {
		if (!t->mismatch) {
			t->mismatch = (int)t->pos + 1;
			snprintf(t->got, sizeof(t->got), "(beyond the transcript)");
		}
		return -EIO;
	}
	const struct tx_step *s = &t->steps[t->pos++];
	if (s->cmd) {
		size_t wn = fakecard_unhex(s->cmd, want, sizeof(want));
		if (wn != clen || memcmp(want, c, clen) != 0) {
			if (!t->mismatch) {
				t->mismatch = (int)t->pos;
				size_t o = 0;
				for (size_t i = 0; i < clen && o + 3 < sizeof(t->got); i++)
					o += (size_t)snprintf(t->got + o, sizeof(t->got) - o, "%02X", c[i]);
			}
			return -EIO;
		}
	}
	if (s->err)
		return s->err;
	size_t rn = fakecard_unhex(s->resp, resp, sizeof(resp));
	if (rn > *rlen)
		return -ENOBUFS;
	memcpy(r, resp, rn);
	*rlen = rn;
	return 0;
}

/* ---- TLV builder ---- */

void
fakecard_tb_init(struct tb *t, size_t cap)
{
	t->b = malloc(cap);
	t->n = 0;
	t->cap = cap;
	if (!t->b)
		abort();
}

void
fakecard_tb_raw(struct tb *t, const void *p, size_t n)
{
	if (t->n + n > t->cap)
		abort();
	memcpy(t->b + t->n, p, n);
	t->n += n;
}

void
fakecard_tb_hdr(struct tb *t, uint32_t tag, size_t len)
{
	uint8_t h[12];
	size_t k = 0;
	if (tag > 0xFFFFFF) h[k++] = (uint8_t)(tag >> 24);
	if (tag > 0xFFFF) h[k++] = (uint8_t)(tag >> 16);
	if (tag > 0xFF) h[k++] = (uint8_t)(tag >> 8);
	h[k++] = (uint8_t)tag;
	if (len < 0x80) {
		h[k++] = (uint8_t)len;
	} else if (len <= 0xFF) {
		h[k++] = 0x81; h[k++] = (uint8_t)len;
	} else if (len <= 0xFFFF) {
		h[k++] = 0x82; h[k++] = (uint8_t)(len >> 8); h[k++] = (uint8_t)len;
	} else {
		h[k++] = 0x83; h[k++] = (uint8_t)(len >> 16); h[k++] = (uint8_t)(len >> 8);
		h[k++] = (uint8_t)len;
	}
	fakecard_tb_raw(t, h, k);
}

void
fakecard_tb_tlv(struct tb *t, uint32_t tag, const void *v, size_t n)
{
	fakecard_tb_hdr(t, tag, n);
	fakecard_tb_raw(t, v, n);
}

void
fakecard_tb_str(struct tb *t, uint32_t tag, const char *s)
{
	fakecard_tb_tlv(t, tag, s, strlen(s));
}

/* ---- T=0 card simulator ---- */

void
fakecard_init(struct fakecard *fc)
{
	memset(fc, 0, sizeof(*fc));
	fc->cur_app = -1;
	fc->cur_ef = -1;
	fc->silent_after = -1;
	fc->vanish_after = -1;
}

void
fakecard_free(struct fakecard *fc)
{
	/* every slot, so tests may hide an app or EF by lowering a count */
	for (size_t a = 0; a < FC_MAX_APPS; a++)
		for (size_t e = 0; e < FC_MAX_EFS; e++)
			free(fc->app[a].ef[e].data);
}

struct fc_app *
fakecard_add_app(struct fakecard *fc, const uint8_t *aid, size_t n)
{
	struct fc_app *a = &fc->app[fc->napp++];
	memcpy(a->aid, aid, n);
	a->aid_len = n;
	return a;
}

/* Takes ownership of t's buffer. */
void
fakecard_add_ef(struct fc_app *a, uint16_t fid, struct tb *t)
{
	struct fc_ef *e = &a->ef[a->nef++];
	e->fid = fid;
	e->data = t->b;
	e->len = t->n;
	t->b = NULL;
}

static void
fc_sw(uint8_t *r, size_t *n, unsigned sw)
{
	r[(*n)++] = (uint8_t)(sw >> 8);
	r[(*n)++] = (uint8_t)sw;
}

int
fakecard_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct fakecard *fc = ctx;
	uint8_t out[1100];
	size_t n = 0;
	bool had = fc->has_pending;
	fc->has_pending = false;
	if (fc->silent_after >= 0 && fc->count >= (unsigned)fc->silent_after)
		return -ETIMEDOUT;
	if (fc->vanish_after >= 0 && fc->count >= (unsigned)fc->vanish_after)
		return -ENODEV;
	fc->count++;
	if (clen < 4) {
		fc_sw(out, &n, 0x6700);
		goto send;
	}
	uint8_t ins = c[1], p1 = c[2], p2 = c[3];
	size_t ne = clen == 5 ? (c[4] ? c[4] : 256) : 0;
	if (ins == 0xC0) {
		if (fc->endless61) {
			size_t k = ne ? ne : 256;
			memset(out, 0xA5, k);
			n = k;
			fc_sw(out, &n, 0x6100 | (k & 0xFF));
			goto send;
		}
		if (!had) {
			fc_sw(out, &n, 0x6985);
			goto send;
		}
		if (fc->pingpong_gr) {
			fc->has_pending = true;
			fc_sw(out, &n, 0x6C00 | ((ne % 255) + 1));
			goto send;
		}
		if (ne > fc->npending) {
			fc->has_pending = true;
			fc_sw(out, &n, 0x6C00 | fc->npending);
			goto send;
		}
		memcpy(out, fc->pending, ne);
		n = ne;
		if (ne < fc->npending) {
			memmove(fc->pending, fc->pending + ne, fc->npending - ne);
			fc->npending -= ne;
			fc->has_pending = true;
			fc_sw(out, &n, 0x6100 | (fc->npending & 0xFF));
		} else {
			fc_sw(out, &n, 0x9000);
		}
		goto send;
	}
	if (ins == 0xA4) {
		size_t lc = clen > 5 ? c[4] : 0;
		const uint8_t *d = c + 5;
		if (clen < 5 || clen < 5 + lc) {
			fc_sw(out, &n, 0x6700);
			goto send;
		}
		if (p1 == 0x04) {
			for (size_t a = 0; a < fc->napp; a++) {
				if (fc->app[a].aid_len == lc && memcmp(fc->app[a].aid, d, lc) == 0) {
					fc->cur_app = (int)a;
					fc->cur_ef = -1;
					fc->npending = 0;
					fc->pending[fc->npending++] = 0x6F;
					fc->pending[fc->npending++] = (uint8_t)(lc + 2);
					fc->pending[fc->npending++] = 0x84;
					fc->pending[fc->npending++] = (uint8_t)lc;
					memcpy(fc->pending + fc->npending, d, lc);
					fc->npending += lc;
					fc->has_pending = true;
					fc_sw(out, &n, 0x6100 | fc->npending);
					goto send;
				}
			}
			fc_sw(out, &n, 0x6A82);
			goto send;
		}
		if ((p1 == 0x00 || p1 == 0x02) && lc == 2 && fc->cur_app >= 0) {
			struct fc_app *a = &fc->app[fc->cur_app];
			uint16_t fid = (uint16_t)(d[0] << 8 | d[1]);
			for (size_t e = 0; e < a->nef; e++) {
				if (a->ef[e].fid != fid)
					continue;
				fc->cur_ef = (int)e;
				size_t len = a->ef[e].len;
				uint8_t *q = fc->pending;
				size_t k = 0;
				q[k++] = 0x62;
				q[k++] = fc->no_fcp_size ? 7 : 11;
				if (!fc->no_fcp_size) {
					q[k++] = 0x80; q[k++] = 2;
					q[k++] = (uint8_t)(len >> 8); q[k++] = (uint8_t)len;
				}
				q[k++] = 0x82; q[k++] = 1; q[k++] = 1;
				q[k++] = 0x83; q[k++] = 2; q[k++] = d[0]; q[k++] = d[1];
				fc->npending = k;
				fc->has_pending = true;
				fc_sw(out, &n, 0x6100 | k);
				goto send;
			}
		}
		fc_sw(out, &n, 0x6A82);
		goto send;
	}
	if (ins == 0xB0) {
		fc->reads++;
		if (clen != 5) {
			fc_sw(out, &n, 0x6700);
			goto send;
		}
		size_t off = (size_t)(p1 & 0x7F) << 8 | p2;
		if (p1 & 0x80) {
			fc_sw(out, &n, 0x6A82);
			goto send;
		}
		if (fc->cur_app < 0 || fc->cur_ef < 0) {
			fc_sw(out, &n, 0x6986);
			goto send;
		}
		struct fc_ef *e = &fc->app[fc->cur_app].ef[fc->cur_ef];
		if (off >= e->len) {
			fc_sw(out, &n, 0x6B00);
			goto send;
		}
		if (fc->pingpong_read) {
			fc_sw(out, &n, 0x6C00 | ((ne % 255) + 1));
			goto send;
		}
		size_t left = e->len - off;
		if (left >= ne) {
			memcpy(out, e->data + off, ne);
			n = ne;
			fc_sw(out, &n, 0x9000);
		} else if (fc->short_reads) {
			memcpy(out, e->data + off, left);
			n = left;
			fc_sw(out, &n, 0x9000);
		} else {
			fc_sw(out, &n, 0x6C00 | left);
		}
		goto send;
	}
	fc_sw(out, &n, 0x6D00);
send:
	if (n > *rlen)
		return -ENOBUFS;
	memcpy(r, out, n);
	*rlen = n;
	return 0;
}

/* ---- the public Vitale 2 layout (tests/world/cards.py) ---- */

static const uint8_t FC_AID_VITALE[] = { 0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54,
                                         0x41, 0x4C, 0x45 };
static const uint8_t FC_AID_MF_VITALE[] = { 0xD2, 0x50, 0x00, 0x00, 0x02, 0x4D, 0x46, 0x5F,
                                            0x56, 0x49, 0x54, 0x41, 0x4C, 0x45 };

/* One beneficiary EF: 65 { 80 81 82 90 93 } (fields left NULL are absent). */
void
fakecard_benef_tlv(struct tb *t, const struct fc_benef *b)
{
	struct tb in;
	fakecard_tb_init(&in, 32768);
	if (b->surname) fakecard_tb_str(&in, 0x80, b->surname);
	if (b->given_name) fakecard_tb_str(&in, 0x81, b->given_name);
	if (b->birth) fakecard_tb_str(&in, 0x82, b->birth);
	if (b->nationality) fakecard_tb_str(&in, 0x90, b->nationality);
	if (b->nir) fakecard_tb_str(&in, 0x93, b->nir);
	fakecard_tb_tlv(t, 0x65, in.b, in.n);
	free(in.b);
}

/* Build the Vitale 2 of the public structure with beneficiary EFs given
 * ready-made (EF 2004 + i); the card EF 2002 is 66 { 80 start } 7F21 {..}
 * over 256 bytes; MF_VITALE holds 2F02 = 5A serial. */
void
fakecard_vitale2(struct fakecard *fc, struct tb *benef_efs, size_t nbenef)
{
	struct fc_app *v = fakecard_add_app(fc, FC_AID_VITALE, sizeof(FC_AID_VITALE));
	struct fc_app *m = fakecard_add_app(fc, FC_AID_MF_VITALE, sizeof(FC_AID_MF_VITALE));
	struct tb t, x;

	/* EF 2002: card */
	fakecard_tb_init(&t, 2048);
	fakecard_tb_init(&x, 1024);
	fakecard_tb_str(&x, 0x80, "20230115");
	fakecard_tb_tlv(&t, 0x66, x.b, x.n);
	x.n = 0;
	uint8_t sig[256];
	for (size_t i = 0; i < sizeof(sig); i++)
		sig[i] = (uint8_t)(i * 7 + 3);
	fakecard_tb_str(&x, 0x42, "FRCAVIT1");
	fakecard_tb_tlv(&x, 0x5F37, sig, sizeof(sig));
	fakecard_tb_tlv(&t, 0x7F21, x.b, x.n);
	free(x.b);
	fakecard_add_ef(v, 0x2002, &t);

	/* pointer file 2001 */
	fakecard_tb_init(&t, 1024);
	fakecard_tb_init(&x, 1024);
	struct tb a0;
	fakecard_tb_init(&a0, 256);
	uint8_t e1[4 + 11] = { 0x00, 0x01, 0x00, 0x00 };
	memcpy(e1 + 4, FC_AID_VITALE, sizeof(FC_AID_VITALE));
	uint8_t e2[4 + 14] = { 0x00, 0x02, 0x00, 0x00 };
	memcpy(e2 + 4, FC_AID_MF_VITALE, sizeof(FC_AID_MF_VITALE));
	fakecard_tb_tlv(&a0, 0x82, e1, sizeof(e1));
	fakecard_tb_tlv(&a0, 0x82, e2, sizeof(e2));
	fakecard_tb_tlv(&x, 0xA0, a0.b, a0.n);
	free(a0.b);
	uint8_t f[12];
	memcpy(f, "CARTE   \x00\x01\x20\x02", 12);
	fakecard_tb_tlv(&x, 0x80, f, 12);
	for (size_t i = 0; i < nbenef; i++) {
		char name[32]; /* 8 used: "BENEF nn" */
		snprintf(name, sizeof(name), "BENEF %02zu", i + 1);
		memcpy(f, name, 8);
		f[8] = 0x00; f[9] = 0x01;
		f[10] = 0x20; f[11] = (uint8_t)(0x04 + i);
		fakecard_tb_tlv(&x, 0x80, f, 12);
	}
	fakecard_tb_tlv(&t, 0xE0, x.b, x.n);
	free(x.b);
	fakecard_add_ef(v, 0x2001, &t);

	for (size_t i = 0; i < nbenef; i++)
		fakecard_add_ef(v, (uint16_t)(0x2004 + i), &benef_efs[i]);

	fakecard_tb_init(&t, 64);
	uint8_t serial[10] = { 0x25, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x23, 0x45, 0x67 };
	fakecard_tb_tlv(&t, 0x5A, serial, sizeof(serial));
	fakecard_add_ef(m, 0x2F02, &t);
}
