/* The card profile interpreter: runs a profile's [script] over an apdu_io
 * and fills a struct profile_result, see profile.h and
 * docs/card-profiles.md.
 *
 * Commands used (ISO/IEC 7816-4:2013): SELECT §11.2.2 (P1 04 by DF name,
 * 02 EF under the current DF, 00 by file id; the FCP template 62 and its
 * tag 80 "number of data bytes" §7.4.3, table 12), READ BINARY §11.3.3
 * (P1 bit 8 clear: 15-bit offset; set: SFI in bits 1-5, offset in P2),
 * status words §5.6. The Vitale 2 pointer file is the public structure of
 * DESIGN.md "What is public": E0 { A0 { 82 ... } 80 ... }.
 *
 * Every bound is enforced here, whatever the card says: commands over the
 * whole read (through a counting wrapper around the caller's transmit),
 * bytes per file and in total, TLV depth, beneficiaries, pointer entries,
 * value sizes. The first failure stops the read and is named in
 * res->reason; nothing read before it is trusted by the caller.
 */
#include "protocol/profile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FCP_BUF 1026          /* an FCP/FCI is small; room for T=0 rounds */
#define MAX_POINTER_APPS 8
#define MAX_OFFSET 0x7FFF     /* READ BINARY with a 15-bit offset */

enum skip { SKIP_NONE, SKIP_TO_SELECT, SKIP_TO_AID };

struct run {
	const struct profile *p;
	const struct apdu_io *card;
	struct apdu_io io;        /* counting wrapper */
	struct profile_limits lim;
	struct profile_result *res;
	struct apdu_stats st;
	unsigned sent;
	uint8_t *buf;
	size_t bufsz;
	size_t len;
	bool have_data;
	uint8_t aid[16];
	size_t aid_len;
	size_t hint;              /* EF size from the FCP */
	bool have_hint;
	enum skip skip;
};

void
profile_limits_default(struct profile_limits *l)
{
	apdu_limits_default(&l->apdu);
	l->max_file = PROFILE_DEFAULT_MAX_FILE;
	l->max_total = PROFILE_DEFAULT_MAX_TOTAL;
	l->max_apdus = PROFILE_DEFAULT_MAX_APDUS;
	l->max_depth = TLV_DEFAULT_DEPTH;
	l->max_pointer_files = PROFILE_DEFAULT_MAX_POINTER_FILES;
}

void
profile_result_wipe(struct profile_result *res)
{
	if (res)
		explicit_bzero(res, sizeof(*res));
}

static int
fail(struct run *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(struct run *r, int err, const char *fmt, ...)
{
	if (r->res->err == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(r->res->reason, sizeof(r->res->reason), fmt, ap);
		va_end(ap);
		r->res->err = err;
	}
	return err;
}

static int
counted_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *rapdu, size_t *rlen)
{
	struct run *r = ctx;
	if (r->sent >= r->lim.max_apdus)
		return -E2BIG;
	r->sent++;
	return r->card->transmit(r->card->ctx, c, clen, rapdu, rlen);
}

static int
io_fail(struct run *r, int err)
{
	if (err == -E2BIG)
		return fail(r, err, "too_many_apdus");
	return fail(r, err, "%s", apdu_strerror(err));
}

static bool
sw_expected(const struct profile_step *st, uint16_t sw)
{
	for (size_t i = 0; i < st->nexpect; i++)
		if ((sw & st->expect[i].mask) == st->expect[i].sw)
			return true;
	return false;
}

/* ---- values ---- */

static int
conv_text(struct run *r, const struct tlv *v, char *dst, size_t cap)
{
	if (v->len > cap)
		return fail(r, -EOVERFLOW, "value_too_large");
	size_t n = v->len;
	for (size_t i = 0; i < n; i++)
		if (v->value[i] < 0x20 || v->value[i] > 0x7E)
			return fail(r, -EILSEQ, "bad_text");
	while (n && v->value[n - 1] == ' ')
		n--;
	memcpy(dst, v->value, n);
	dst[n] = '\0';
	return 0;
}

static int
conv_date(struct run *r, const struct tlv *v, char *dst)
{
	const uint8_t *d = v->value;
	if (v->len != 8)
		return fail(r, v->len > 64 ? -EOVERFLOW : -EILSEQ,
		            v->len > 64 ? "value_too_large" : "bad_date");
	for (size_t i = 0; i < 8; i++)
		if (d[i] < '0' || d[i] > '9')
			return fail(r, -EILSEQ, "bad_date");
	/* 00 stands for an unknown month or day in civil-status data */
	int month = (d[4] - '0') * 10 + (d[5] - '0');
	int day = (d[6] - '0') * 10 + (d[7] - '0');
	if (month > 12 || day > 31)
		return fail(r, -EILSEQ, "bad_date");
	memcpy(dst, d, 4);
	dst[4] = '-';
	memcpy(dst + 5, d + 4, 2);
	dst[7] = '-';
	memcpy(dst + 8, d + 6, 2);
	dst[10] = '\0';
	return 0;
}

static int
conv_bcd(struct run *r, const struct tlv *v, char *dst, size_t cap)
{
	size_t n = 0;
	bool pad = false;
	if (v->len * 2 > cap)
		return fail(r, -EOVERFLOW, "value_too_large");
	for (size_t i = 0; i < v->len * 2; i++) {
		uint8_t nib = (uint8_t)((i % 2) ? v->value[i / 2] & 0x0F : v->value[i / 2] >> 4);
		if (nib == 0x0F) {
			pad = true;
			continue;
		}
		if (nib > 9 || pad)
			return fail(r, -EILSEQ, "bad_bcd");
		dst[n++] = (char)('0' + nib);
	}
	dst[n] = '\0';
	return 0;
}

static int
conv_hex(struct run *r, const struct tlv *v, char *dst, size_t cap)
{
	static const char dig[] = "0123456789ABCDEF";
	if (v->len * 2 > cap)
		return fail(r, -EOVERFLOW, "value_too_large");
	for (size_t i = 0; i < v->len; i++) {
		dst[2 * i] = dig[v->value[i] >> 4];
		dst[2 * i + 1] = dig[v->value[i] & 0xF];
	}
	dst[v->len * 2] = '\0';
	return 0;
}

static int
store(struct run *r, const struct profile_map_entry *e, const struct tlv *v,
      struct profile_beneficiary *b)
{
	struct profile_card *card = &r->res->card;
	switch (e->field) {
	case PROFILE_F_SURNAME:
		return conv_text(r, v, b->surname, PROFILE_NAME_VALUE_MAX);
	case PROFILE_F_GIVEN_NAME:
		return conv_text(r, v, b->given_name, PROFILE_NAME_VALUE_MAX);
	case PROFILE_F_BIRTH_DATE:
		return conv_date(r, v, b->birth_date);
	case PROFILE_F_NATIONALITY:
		return conv_text(r, v, b->nationality, PROFILE_NATIONALITY_MAX);
	case PROFILE_F_NIR:
		return conv_text(r, v, b->nir, NIR_LEN);
	case PROFILE_F_CARD_START:
		return conv_date(r, v, card->start_date);
	case PROFILE_F_CARD_END:
		return conv_date(r, v, card->end_date);
	case PROFILE_F_CARD_SERIAL:
		if (e->fmt == PROFILE_FMT_HEX)
			return conv_hex(r, v, card->serial, PROFILE_SERIAL_MAX);
		if (e->fmt == PROFILE_FMT_TEXT)
			return conv_text(r, v, card->serial, PROFILE_SERIAL_MAX);
		return conv_bcd(r, v, card->serial, PROFILE_SERIAL_MAX);
	case PROFILE_F_CARD_CERTIFICATE:
		card->certificate = true;
		return 0;
	case PROFILE_F_COUNT:
		break;
	}
	return 0;
}

static bool
is_benef_field(enum profile_field f)
{
	return f <= PROFILE_F_NIR;
}

/* The object at rest[0..n) below obj (obj itself when n is 0); 1 if
 * found, 0 if absent, or a failure. */
static int
lookup(struct run *r, const struct tlv *obj, const uint32_t *rest, size_t n, struct tlv *out)
{
	if (n == 0) {
		*out = *obj;
		return 1;
	}
	if (!obj->constructed)
		return 0;
	int e = tlv_find_path(obj->value, obj->len, rest, n, out);
	if (e == -ENOENT)
		return 0;
	if (e < 0)
		return fail(r, e, "%s", tlv_strerror(e));
	return 1;
}

/* Validate data as BER-TLV and apply the [map] to its top-level objects. */
static int
apply_map(struct run *r, const uint8_t *data, size_t len)
{
	const struct profile *p = r->p;
	struct profile_result *res = r->res;
	struct tlv_iter it;
	struct tlv obj, v;
	int e = tlv_validate(data, len, r->lim.max_depth);
	if (e < 0)
		return fail(r, e, "%s", tlv_strerror(e));
	tlv_iter_init(&it, data, len);
	while ((e = tlv_iter_next(&it, &obj)) > 0) {
		if (p->record_tag && obj.tag == p->record_tag) {
			if (res->nbenef >= PROFILE_MAX_BENEF)
				return fail(r, -E2BIG, "too_many_beneficiaries");
			struct profile_beneficiary *b = &res->benef[res->nbenef++];
			memset(b, 0, sizeof(*b));
			b->nir_reason = nir_reason_name(NIR_MISSING);
			for (size_t i = 0; i < p->nmap; i++) {
				const struct profile_map_entry *m = &p->map[i];
				if (!is_benef_field(m->field))
					continue;
				int f = lookup(r, &obj, m->path + 1, m->npath - 1, &v);
				if (f < 0)
					return f;
				if (f > 0 && (f = store(r, m, &v, b)) < 0)
					return f;
			}
			if (b->nir[0]) {
				enum nir_reason why;
				b->nir_valid = nir_check(b->nir, strlen(b->nir), &why) == 0;
				b->nir_reason = nir_reason_name(why);
			}
		}
		for (size_t i = 0; i < p->nmap; i++) {
			const struct profile_map_entry *m = &p->map[i];
			if (is_benef_field(m->field) || m->path[0] != obj.tag)
				continue;
			int f = lookup(r, &obj, m->path + 1, m->npath - 1, &v);
			if (f < 0)
				return f;
			if (f > 0 && (f = store(r, m, &v, NULL)) < 0)
				return f;
		}
	}
	if (e < 0)
		return fail(r, e, "%s", tlv_strerror(e));
	return 0;
}

/* ---- steps ---- */

/* SELECT; *refused set (and 0 returned) when the card said no. */
static int
do_select(struct run *r, const struct profile_step *st, enum profile_op op, const uint8_t *id,
          size_t idlen, bool fci, bool *refused)
{
	uint8_t cmd[4 + 1 + 16 + 1];
	uint8_t fcp[FCP_BUF];
	size_t clen = 0, n = 0;
	uint16_t sw = 0;
	int e;
	*refused = false;
	cmd[clen++] = 0x00;
	cmd[clen++] = APDU_INS_SELECT;
	cmd[clen++] = op == PROFILE_OP_SELECT_AID ? 0x04 : op == PROFILE_OP_SELECT_EF ? 0x02 : 0x00;
	cmd[clen++] = 0x00;
	cmd[clen++] = (uint8_t)idlen;
	memcpy(cmd + clen, id, idlen);
	clen += idlen;
	if (st && st->le)
		cmd[clen++] = 0x00;
	if (fci)
		e = apdu_exchange(&r->io, &r->lim.apdu, &r->st, cmd, clen, fcp, sizeof(fcp), &n, &sw);
	else
		e = apdu_exchange_nodata(&r->io, &r->lim.apdu, &r->st, cmd, clen, &sw);
	if (e < 0)
		return io_fail(r, e);
	if (sw != APDU_SW_OK && !(st && sw_expected(st, sw))) {
		r->res->last_sw = sw;
		*refused = true;
		return 0;
	}
	r->have_hint = false;
	r->have_data = false;
	if (op == PROFILE_OP_SELECT_AID) {
		memcpy(r->aid, id, idlen);
		r->aid_len = idlen;
		return 0;
	}
	/* FCP 62 { 80 size } gives the EF size: reads then ask for exactly it */
	struct tlv size;
	if (fci && n > 0 && tlv_find_path(fcp, n, (const uint32_t[]){ 0x62, 0x80 }, 2, &size) == 0 &&
	    size.len >= 1 && size.len <= 4) {
		size_t s = 0;
		for (size_t i = 0; i < size.len; i++)
			s = s << 8 | size.value[i];
		r->hint = s;
		r->have_hint = true;
	}
	return 0;
}

static int
step_select(struct run *r, const struct profile_step *st)
{
	bool refused;
	if (r->skip == SKIP_TO_AID && st->op != PROFILE_OP_SELECT_AID)
		return 0;
	r->skip = SKIP_NONE;
	int e = do_select(r, st, st->op, st->data, st->data_len, st->fci, &refused);
	if (e < 0 || !refused)
		return e;
	if (st->optional) {
		r->skip = st->op == PROFILE_OP_SELECT_AID ? SKIP_TO_AID : SKIP_TO_SELECT;
		return 0;
	}
	return fail(r, -ENOENT, "select_failed %04X", r->res->last_sw);
}

/* READ BINARY the current EF into r->buf; *refused as for do_select. */
static int
do_read(struct run *r, const struct profile_step *st, bool *refused)
{
	size_t max = r->lim.max_file;
	size_t off = 0;
	bool first = true;
	*refused = false;
	r->have_data = false;
	r->len = 0;
	if (st && st->max && st->max < max)
		max = st->max;
	if (r->have_hint && r->hint >= max)
		return fail(r, -E2BIG, "file_too_large");
	for (;; first = false) {
		size_t le = APDU_SHORT_MAX_NE;
		if (r->have_hint) {
			if (off >= r->hint)
				break;
			if (r->hint - off < le)
				le = r->hint - off;
		}
		if (off >= max || off > MAX_OFFSET)
			return fail(r, -E2BIG, "file_too_large");
		if (max - off < le)
			le = max - off;
		uint8_t cmd[5] = { 0x00, APDU_INS_READ_BINARY, (uint8_t)(off >> 8),
		                   (uint8_t)(off & 0xFF), (uint8_t)(le & 0xFF) };
		if (first && st && st->sfi) {
			cmd[2] = (uint8_t)(0x80 | st->sfi);
			cmd[3] = 0x00;
		}
		size_t n = 0;
		uint16_t sw = 0;
		int e = apdu_exchange(&r->io, &r->lim.apdu, &r->st, cmd, sizeof(cmd), r->buf + off,
		                      max + 2 - off, &n, &sw);
		if (e < 0)
			return io_fail(r, e);
		if (sw == APDU_SW_OK || sw == APDU_SW_EOF || (st && sw_expected(st, sw))) {
			off += n;
			r->res->data_bytes += n;
			if (r->res->data_bytes > r->lim.max_total)
				return fail(r, -E2BIG, "read_too_large");
			if (sw != APDU_SW_OK || n < le)
				break;       /* a short answer or end of file: done */
			continue;
		}
		if (sw == APDU_SW_WRONG_OFFSET && off > 0)
			break;               /* the file ended on a 256-byte boundary */
		r->res->last_sw = sw;
		*refused = true;
		return 0;
	}
	r->len = off;
	r->have_data = true;
	r->res->files++;
	return 0;
}

static int
step_read(struct run *r, const struct profile_step *st)
{
	bool refused;
	if (r->skip != SKIP_NONE)
		return 0;
	int e = do_read(r, st, &refused);
	if (e < 0)
		return e;
	if (refused) {
		if (st->optional) {
			r->skip = SKIP_TO_SELECT;
			return 0;
		}
		return fail(r, -ENOENT, "read_failed %04X", r->res->last_sw);
	}
	return st->raw ? 0 : apply_map(r, r->buf, r->len);
}

struct ptr_app {
	uint8_t id[2];
	uint8_t aid[16];
	size_t aid_len;
};

struct ptr_file {
	uint8_t app[2];
	uint8_t fid[2];
};

static int
step_pointers(struct run *r, const struct profile_step *st)
{
	struct ptr_app apps[MAX_POINTER_APPS];
	struct ptr_file *files = NULL;
	size_t napps = 0, nfiles = 0, maxfiles = r->lim.max_pointer_files;
	struct tlv e0, t, a;
	struct tlv_iter it, ia;
	int e;

	if (r->skip != SKIP_NONE)
		return 0;
	if (!r->have_data)
		return fail(r, -EBADMSG, "pointer_invalid");
	e = tlv_find(r->buf, r->len, 0xE0, &e0);
	if (e == -ENOENT)
		return fail(r, -EBADMSG, "pointer_invalid");
	if (e < 0)
		return fail(r, e, "%s", tlv_strerror(e));
	files = calloc(maxfiles ? maxfiles : 1, sizeof(*files));
	if (!files)
		return fail(r, -ENOMEM, "out_of_memory");

	/* E0 { A0 { 82 id(2) rfu(2) AID ... } 80 name(8) app(2) fid(2) ... } */
	tlv_iter_children(&it, &e0);
	while ((e = tlv_iter_next(&it, &t)) > 0) {
		if (t.tag == 0xA0) {
			tlv_iter_children(&ia, &t);
			while ((e = tlv_iter_next(&ia, &a)) > 0) {
				if (a.tag != 0x82)
					continue;
				if (a.len < 4 + 5 || a.len > 4 + 16 || napps >= MAX_POINTER_APPS) {
					e = fail(r, -EBADMSG, "pointer_invalid");
					goto out;
				}
				memcpy(apps[napps].id, a.value, 2);
				apps[napps].aid_len = a.len - 4;
				memcpy(apps[napps].aid, a.value + 4, a.len - 4);
				napps++;
			}
			if (e < 0)
				break;
		} else if (t.tag == 0x80) {
			if (t.len < 12) {
				e = fail(r, -EBADMSG, "pointer_invalid");
				goto out;
			}
			if (nfiles >= maxfiles) {
				e = fail(r, -E2BIG, "pointer_too_many");
				goto out;
			}
			memcpy(files[nfiles].app, t.value + 8, 2);
			memcpy(files[nfiles].fid, t.value + 10, 2);
			nfiles++;
		}
	}
	if (e < 0) {
		e = fail(r, e, "%s", tlv_strerror(e));
		goto out;
	}

	for (size_t i = 0; i < nfiles; i++) {
		const struct ptr_app *app = NULL;
		bool refused;
		for (size_t k = 0; k < napps; k++)
			if (memcmp(apps[k].id, files[i].app, 2) == 0)
				app = &apps[k];
		if (!app) {
			e = fail(r, -EBADMSG, "pointer_invalid");
			goto out;
		}
		if (app->aid_len != r->aid_len || memcmp(app->aid, r->aid, r->aid_len) != 0) {
			e = do_select(r, NULL, PROFILE_OP_SELECT_AID, app->aid, app->aid_len, false,
			              &refused);
			if (e < 0)
				goto out;
			if (refused) {
				e = fail(r, -ENOENT, "select_failed %04X", r->res->last_sw);
				goto out;
			}
		}
		e = do_select(r, NULL, PROFILE_OP_SELECT_EF, files[i].fid, 2, true, &refused);
		if (e < 0)
			goto out;
		if (refused) {
			e = fail(r, -ENOENT, "select_failed %04X", r->res->last_sw);
			goto out;
		}
		e = do_read(r, NULL, &refused);
		if (e < 0)
			goto out;
		if (refused) {
			e = fail(r, -ENOENT, "read_failed %04X", r->res->last_sw);
			goto out;
		}
		e = apply_map(r, r->buf, r->len);
		if (e < 0)
			goto out;
	}
	e = 0;
out:
	free(files);
	(void)st;
	return e;
}

static int
step_send(struct run *r, const struct profile_step *st)
{
	size_t n = 0;
	uint16_t sw = 0;
	if (r->skip != SKIP_NONE)
		return 0;
	r->have_data = false;
	int e = apdu_exchange(&r->io, &r->lim.apdu, &r->st, st->data, st->data_len, r->buf,
	                      r->bufsz, &n, &sw);
	if (e < 0)
		return io_fail(r, e);
	if (n > r->lim.max_file)
		return fail(r, -E2BIG, "file_too_large");
	bool ok = st->nexpect ? sw_expected(st, sw) : sw == APDU_SW_OK;
	if (!ok) {
		r->res->last_sw = sw;
		if (st->optional) {
			r->skip = SKIP_TO_SELECT;
			return 0;
		}
		return fail(r, -ENOENT, "send_failed %04X", sw);
	}
	r->len = n;
	r->have_data = true;
	r->res->data_bytes += n;
	if (r->res->data_bytes > r->lim.max_total)
		return fail(r, -E2BIG, "read_too_large");
	return st->map && !st->raw ? apply_map(r, r->buf, r->len) : 0;
}

int
profile_read(const struct profile *p, const struct apdu_io *io, const struct profile_limits *lim,
             struct profile_result *res)
{
	struct run r;
	int e = 0;

	memset(res, 0, sizeof(*res));
	memset(&r, 0, sizeof(r));
	r.res = res;
	if (!p || !io || !io->transmit)
		return fail(&r, -EINVAL, "bad_arguments");
	snprintf(res->profile, sizeof(res->profile), "%s", p->name);
	res->kind = p->kind;
	if (p->handler == PROFILE_HANDLER_DIGITAL)
		return fail(&r, -EOPNOTSUPP, "handler_digital");
	if (p->handler == PROFILE_HANDLER_PKCS11)
		return fail(&r, -EOPNOTSUPP, "handler_pkcs11");
	if (!p->readable)
		return fail(&r, -EOPNOTSUPP, "not_readable");

	r.p = p;
	r.card = io;
	r.io.transmit = counted_transmit;
	r.io.ctx = &r;
	if (lim)
		r.lim = *lim;
	else
		profile_limits_default(&r.lim);
	if (r.lim.max_file == 0 || r.lim.max_file > MAX_OFFSET + 1)
		r.lim.max_file = MAX_OFFSET + 1;
	if (r.lim.max_depth == 0 || r.lim.max_depth > TLV_MAX_DEPTH)
		r.lim.max_depth = TLV_MAX_DEPTH;
	r.bufsz = r.lim.max_file + 2;
	r.buf = malloc(r.bufsz);
	if (!r.buf)
		return fail(&r, -ENOMEM, "out_of_memory");

	for (size_t i = 0; i < p->nsteps && e == 0; i++) {
		const struct profile_step *st = &p->steps[i];
		switch (st->op) {
		case PROFILE_OP_SELECT_AID:
		case PROFILE_OP_SELECT_EF:
		case PROFILE_OP_SELECT_FID:
			e = step_select(&r, st);
			break;
		case PROFILE_OP_READ:
			e = step_read(&r, st);
			break;
		case PROFILE_OP_POINTERS:
			e = step_pointers(&r, st);
			break;
		case PROFILE_OP_SEND:
			e = step_send(&r, st);
			break;
		}
	}
	if (e == 0 && p->kind == PROFILE_KIND_PATIENT && res->nbenef == 0)
		e = fail(&r, -ENODATA, "no_beneficiary");

	res->apdus = r.sent;
	res->bytes_in = r.st.bytes_in;
	explicit_bzero(r.buf, r.bufsz);
	free(r.buf);
	return e;
}
