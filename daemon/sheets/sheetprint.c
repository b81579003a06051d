/* The paper duplicata; see sheetprint.h.
 *
 * Coordinates are PostScript points (1/72 inch) from the page's top left;
 * A4 is 595.28 x 841.89. The text is French: the page is for the patient
 * and the French insurer.
 */
#include "daemon/sheets/sheetprint.h"

#include <cairo-pdf.h>
#include <cairo.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <qrencode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/b64.h"
#include "lib/hex.h"
#include "protocol/nir.h"

#define PAGE_W 595.28
#define PAGE_H 841.89
#define LEFT 42.0
#define RIGHT (PAGE_W - 42.0)
#define FONT "DejaVu Sans"
#define QR_SIZE 158.0 /* 56 mm */
#define QR_X (RIGHT - QR_SIZE)
#define QR_Y 112.0
#define TABLE_BOTTOM 688.0 /* the totals (62 points) and the footer below */
#define GREY 0.35

/* ------------------------------------------------------------------ */
/* output buffer */

struct buf {
	uint8_t *p;
	size_t len, cap;
	bool over;
};

static cairo_status_t
buf_write(void *closure, const unsigned char *data, unsigned int length)
{
	struct buf *b = closure;
	if (b->over || b->len + length > SHEETPRINT_MAX) {
		b->over = true;
		return CAIRO_STATUS_WRITE_ERROR;
	}
	if (b->len + length > b->cap) {
		size_t ncap = b->cap ? b->cap : 65536;
		while (ncap < b->len + length)
			ncap *= 2;
		uint8_t *np = realloc(b->p, ncap);
		if (!np)
			return CAIRO_STATUS_NO_MEMORY;
		b->p = np;
		b->cap = ncap;
	}
	memcpy(b->p + b->len, data, length);
	b->len += length;
	return CAIRO_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------ */
/* reading the sheet's JSON */

static const char *
jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static bool
jint(json_t *o, const char *key, json_int_t *v)
{
	json_t *x = json_object_get(o, key);
	if (!json_is_integer(x))
		return false;
	*v = json_integer_value(x);
	return true;
}

/* "YYYY-MM-DD" as "DD/MM/YYYY"; anything else as it is. */
static const char *
date_fr(const char *iso, char out[16])
{
	if (strlen(iso) == 10 && iso[4] == '-' && iso[7] == '-')
		snprintf(out, 16, "%.2s/%.2s/%.4s", iso + 8, iso + 5, iso);
	else
		snprintf(out, 16, "%s", iso[0] ? iso : "-");
	return out;
}

/* Cents as "1234,56 €" (negative amounts are refused by the sheet's rules
 * but shown as they are). */
static const char *
eur(json_int_t cents, char out[32])
{
	json_int_t a = cents < 0 ? -cents : cents;
	snprintf(out, 32, "%s%" PRId64 ",%02" PRId64 " \u20ac", cents < 0 ? "-" : "",
	         (int64_t)(a / 100), (int64_t)(a % 100));
	return out;
}

static const char *
insurance_fr(const char *v)
{
	static const char *const map[][2] = {
		{ "maladie", "maladie" }, { "maternite", "maternit\u00e9" },
		{ "at_mp", "accident du travail / maladie professionnelle" },
		{ "smg", "soins m\u00e9dicaux gratuits" },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(v, map[i][0]))
			return map[i][1];
	return v[0] ? v : "-";
}

static const char *
pathway_fr(const char *v)
{
	static const char *const map[][2] = {
		{ "medecin_traitant", "m\u00e9decin traitant" },
		{ "new_medecin_traitant", "nouveau m\u00e9decin traitant" },
		{ "substitute", "rempla\u00e7ant du m\u00e9decin traitant" },
		{ "referred", "orient\u00e9 par le m\u00e9decin traitant" },
		{ "direct_access", "acc\u00e8s direct" }, { "emergency", "urgence" },
		{ "away_from_home", "hors r\u00e9sidence habituelle" },
		{ "outside", "hors parcours de soins" },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(v, map[i][0]))
			return map[i][1];
	return v;
}

static const char *
exemption_fr(const char *v)
{
	static const char *const map[][2] = {
		{ "ald", "affection de longue dur\u00e9e (ALD)" }, { "invalidity", "invalidit\u00e9" },
		{ "prevention", "pr\u00e9vention" }, { "other", "autre exon\u00e9ration" },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(v, map[i][0]))
			return map[i][1];
	return v;
}

static const char *
mode_fr(const char *v)
{
	if (!strcmp(v, "physical"))
		return "carte Vitale lue";
	if (!strcmp(v, "digital-nfc") || !strcmp(v, "digital-qr"))
		return "appli carte Vitale (t\u00e9l\u00e9phone)";
	if (!strcmp(v, "degraded"))
		return "sans carte (mode d\u00e9grad\u00e9)";
	return v[0] ? v : "-";
}

/* ------------------------------------------------------------------ */
/* drawing */

static void
font(cairo_t *cr, double size, bool bold)
{
	cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
	                       bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
}

static void
grey(cairo_t *cr, double g)
{
	cairo_set_source_rgb(cr, g, g, g);
}

static double
text_at(cairo_t *cr, double x, double y, const char *s)
{
	cairo_text_extents_t te;
	cairo_move_to(cr, x, y);
	cairo_show_text(cr, s);
	cairo_text_extents(cr, s, &te);
	return x + te.x_advance;
}

/* Length of the valid UTF-8 sequence at p (1 to 4), 0 when none. */
static size_t
utf8_len(const unsigned char *p)
{
	size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 && p[0] >= 0xc2 ? 2 :
	           (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 && p[0] <= 0xf4 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* Text from the configuration, made printable: invalid UTF-8 and control
 * characters become '?' (cairo refuses the one and draws boxes for the
 * other). */
static void
clean_text(const char *in, char *out, size_t outlen)
{
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)in;
	while (*p && o + 5 < outlen) {
		size_t n = utf8_len(p);
		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
			out[o++] = '?';
			p++;
			continue;
		}
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
}

/* Draw s within maxw points: smaller (down to 6.5 points) if it must,
 * then cut at a character boundary with an ellipsis. */
static void
text_fit(cairo_t *cr, double x, double y, double maxw, double size, bool bold, const char *s)
{
	char buf[512];
	cairo_text_extents_t te;
	clean_text(s, buf, sizeof(buf));
	font(cr, size, bold);
	cairo_text_extents(cr, buf, &te);
	if (te.x_advance > maxw) {
		double fs = size * maxw / te.x_advance;
		font(cr, fs < 6.5 ? 6.5 : fs, bold);
		cairo_text_extents(cr, buf, &te);
	}
	size_t n = strlen(buf);
	while (te.x_advance > maxw && n > 0) {
		do
			n--;
		while (n > 0 && ((unsigned char)buf[n] & 0xc0) == 0x80);
		memcpy(buf + n, "\u2026", 4); /* the ellipsis, 3 bytes and the NUL */
		cairo_text_extents(cr, buf, &te);
	}
	text_at(cr, x, y, buf);
	font(cr, size, bold);
}

static void
text_right(cairo_t *cr, double xr, double y, const char *s)
{
	cairo_text_extents_t te;
	cairo_text_extents(cr, s, &te);
	cairo_move_to(cr, xr - te.x_advance, y);
	cairo_show_text(cr, s);
}

static void
hline(cairo_t *cr, double x0, double x1, double y, double w)
{
	cairo_set_line_width(cr, w);
	cairo_move_to(cr, x0, y);
	cairo_line_to(cr, x1, y);
	cairo_stroke(cr);
}

/* A small grey title above a block. */
static void
block_title(cairo_t *cr, double x, double y, const char *t)
{
	grey(cr, GREY);
	font(cr, 8, true);
	text_at(cr, x, y, t);
	grey(cr, 0);
}

/* "Label : value" on one line, the label in grey. */
static void
field(cairo_t *cr, double x, double y, const char *label, const char *value)
{
	font(cr, 9.5, false);
	grey(cr, GREY);
	double xv = text_at(cr, x, y, label);
	grey(cr, 0);
	text_at(cr, xv + 4, y, value);
}

static void
draw_header(cairo_t *cr)
{
	font(cr, 30, true);
	text_at(cr, LEFT, 62, "DUPLICATA");
	font(cr, 12, true);
	text_right(cr, RIGHT, 46, "Feuille de soins");
	font(cr, 10, false);
	text_right(cr, RIGHT, 62, "copie papier de la feuille \u00e9lectronique");
	hline(cr, LEFT, RIGHT, 74, 1.2);
	font(cr, 8.5, false);
	text_at(cr, LEFT, 88, "La feuille de soins \u00e9lectronique n'a pas pu \u00eatre transmise : "
	                      "ce duplicata la remplace aupr\u00e8s de votre caisse");
	text_at(cr, LEFT, 99, "d'assurance maladie (article R.161-47 du code de la s\u00e9curit\u00e9 "
	                      "sociale). Le code ci-contre permet de v\u00e9rifier sa signature.");
}

static void
draw_parties(cairo_t *cr, const struct sheetprint_in *in)
{
	json_t *s = in->sheet;
	char line[160], d[16];
	double y = 126;
	block_title(cr, LEFT, y, "PRATICIEN");
	y += 15;
	if (in->practice_name && in->practice_name[0]) {
		text_fit(cr, LEFT, y, QR_X - LEFT - 12, 11, true, in->practice_name);
		y += 13;
	}
	if (in->practice_address && in->practice_address[0]) {
		text_fit(cr, LEFT, y, QR_X - LEFT - 12, 9.5, false, in->practice_address);
		y += 13;
	}
	field(cr, LEFT, y, "N\u00b0 praticien :", jstr(s, "practitioner_id"));
	y += 13;
	if (jstr(s, "structure_id")[0]) {
		field(cr, LEFT, y, "Structure :", jstr(s, "structure_id"));
		y += 13;
	}
	field(cr, LEFT, y, "Terminal :", jstr(s, "terminal_id"));

	y = 226;
	block_title(cr, LEFT, y, "PATIENT");
	y += 15;
	char masked[24];
	const char *nir = jstr(s, "nir");
	nir_mask(nir[0] ? nir : NULL, strlen(nir), masked, sizeof(masked));
	snprintf(line, sizeof(line), "%s (masqu\u00e9)", masked);
	field(cr, LEFT, y, "N\u00b0 de s\u00e9curit\u00e9 sociale :", line);
	y += 13;
	json_int_t rank = 0;
	if (jstr(s, "birth_date")[0] || jint(s, "birth_rank", &rank)) {
		snprintf(line, sizeof(line), "%s", date_fr(jstr(s, "birth_date"), d));
		if (jint(s, "birth_rank", &rank))
			snprintf(line + strlen(line), sizeof(line) - strlen(line), ", rang %" PRId64,
			         (int64_t)rank);
		field(cr, LEFT, y, "N\u00e9(e) le :", line);
		y += 13;
	}
	json_t *ins = json_object_get(s, "insurer");
	if (json_is_object(ins)) {
		snprintf(line, sizeof(line), "r\u00e9gime %s, caisse %s, centre %s", jstr(ins, "regime"),
		         jstr(ins, "caisse"), jstr(ins, "centre"));
		field(cr, LEFT, y, "Organisme :", line);
		y += 13;
	}
	field(cr, LEFT, y, "Carte :", mode_fr(jstr(s, "mode")));
}

/* The sheet's own facts, in two columns; returns where the table starts. */
static double
draw_facts(cairo_t *cr, const struct sheetprint_in *in)
{
	json_t *s = in->sheet;
	char d[16], d2[16], line[160];
	double y = 302, xr = 310;
	block_title(cr, LEFT, y, "FEUILLE DE SOINS");
	hline(cr, LEFT, RIGHT, y + 4, 0.4);
	y += 17;
	field(cr, LEFT, y, "Date des soins :", date_fr(jstr(s, "care_date"), d));
	json_int_t seq = 0;
	jint(s, "seq", &seq);
	snprintf(line, sizeof(line), "%" PRId64 " du %s", (int64_t)seq, date_fr(jstr(s, "care_date"), d2));
	field(cr, xr, y, "N\u00b0 de s\u00e9quence :", line);
	y += 13;
	field(cr, LEFT, y, "\u00c0 transmettre avant le :", date_fr(jstr(s, "due_date"), d));
	field(cr, xr, y, "Nature :", insurance_fr(jstr(s, "insurance")));
	y += 13;
	double yl = y, yr = y;
	if (jstr(s, "pathway")[0]) {
		field(cr, LEFT, yl, "Parcours :", pathway_fr(jstr(s, "pathway")));
		yl += 13;
	}
	if (jstr(s, "exemption")[0]) {
		field(cr, xr, yr, "Exon\u00e9ration :", exemption_fr(jstr(s, "exemption")));
		yr += 13;
	}
	if (jstr(s, "prescriber_id")[0]) {
		snprintf(line, sizeof(line), "%s%s%s", jstr(s, "prescriber_id"),
		         jstr(s, "prescription_date")[0] ? ", le " : "",
		         jstr(s, "prescription_date")[0] ? date_fr(jstr(s, "prescription_date"), d) : "");
		field(cr, LEFT, yl, "Prescripteur :", line);
		yl += 13;
	}
	if (jstr(s, "at_date")[0]) {
		snprintf(line, sizeof(line), "%s%s%s", date_fr(jstr(s, "at_date"), d),
		         jstr(s, "at_number")[0] ? ", n\u00b0 " : "", jstr(s, "at_number"));
		field(cr, xr, yr, "Accident du travail :", line);
		yr += 13;
	}
	y = (yl > yr ? yl : yr) + 2;
	font(cr, 7.5, false);
	grey(cr, GREY);
	snprintf(line, sizeof(line), "Identifiant de la feuille : %s", jstr(s, "id"));
	text_at(cr, LEFT, y, line);
	grey(cr, 0);
	return y + 8;
}

/* One line of the table: its nature, its code, its detail. */
static void
line_cells(json_t *l, char *nature, size_t nn, char *code, size_t cn, char *detail, size_t dn)
{
	const char *kind = jstr(l, "kind");
	json_int_t q = 0, pu = 0;
	char p[32];
	bool qty = jint(l, "quantity", &q) && jint(l, "unit_price", &pu);
	if (!strcmp(kind, "medicine")) {
		snprintf(nature, nn, "M\u00e9dicament%s%s%s", jstr(l, "service")[0] ? " (" : "",
		         jstr(l, "service"), jstr(l, "service")[0] ? ")" : "");
		snprintf(code, cn, "CIP %s", jstr(l, "cip13")[0] ? jstr(l, "cip13") : jstr(l, "code"));
	} else if (!strcmp(kind, "device")) {
		snprintf(nature, nn, "Dispositif m\u00e9dical");
		snprintf(code, cn, "LPP %s", jstr(l, "lpp")[0] ? jstr(l, "lpp") : jstr(l, "code"));
	} else {
		snprintf(nature, nn, "%s", kind[0] && strcmp(kind, "act") ? kind : "Acte");
		snprintf(code, cn, "%s", jstr(l, "code"));
	}
	json_t *coef = json_object_get(l, "coefficient");
	if (qty)
		snprintf(detail, dn, "%" PRId64 " \u00d7 %s", (int64_t)q, eur(pu, p));
	else if (json_is_integer(coef))
		snprintf(detail, dn, "coef. %" PRId64, (int64_t)json_integer_value(coef));
	else if (json_is_real(coef))
		snprintf(detail, dn, "coef. %.3g", json_real_value(coef));
	else
		detail[0] = '\0';
}

/* Returns where the table ends. */
static double
draw_lines(cairo_t *cr, const struct sheetprint_in *in, double top)
{
	json_t *lines = json_object_get(in->sheet, "lines");
	if (!json_is_array(lines))
		lines = json_object_get(in->sheet, "acts");
	size_t n = json_array_size(lines);
	double row = n ? (TABLE_BOTTOM - top - 18) / (double)n : 14;
	row = row > 15 ? 15 : row < 8.5 ? 8.5 : row;
	double fs = row >= 13 ? 9.5 : row * 0.72;
	const double xc[] = { LEFT + 2, LEFT + 64, LEFT + 186, LEFT + 330 };
	double y = top + 10;

	cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
	cairo_rectangle(cr, LEFT, top, RIGHT - LEFT, 14);
	cairo_fill(cr);
	grey(cr, 0);
	font(cr, 8.5, true);
	text_at(cr, xc[0], y, "Date");
	text_at(cr, xc[1], y, "Code");
	text_at(cr, xc[2], y, "Nature");
	text_at(cr, xc[3], y, "Quantit\u00e9 ou coefficient");
	text_right(cr, RIGHT - 2, y, "Montant");
	y = top + 14;
	size_t i;
	json_t *l;
	json_array_foreach(lines, i, l) {
		char d[16], nature[64], code[48], detail[64], a[32];
		json_int_t amount = 0;
		line_cells(l, nature, sizeof(nature), code, sizeof(code), detail, sizeof(detail));
		jint(l, "amount", &amount);
		y += row;
		font(cr, fs, false);
		text_at(cr, xc[0], y - row * 0.3, date_fr(jstr(l, "date")[0] ? jstr(l, "date") :
		                                          jstr(in->sheet, "care_date"), d));
		text_at(cr, xc[1], y - row * 0.3, code);
		text_at(cr, xc[2], y - row * 0.3, nature);
		text_at(cr, xc[3], y - row * 0.3, detail);
		text_right(cr, RIGHT - 2, y - row * 0.3, eur(amount, a));
		grey(cr, 0.8);
		hline(cr, LEFT, RIGHT, y, 0.3);
		grey(cr, 0);
	}
	return y;
}

/* Who pays what, from the totals (where the sheet knows it). */
static void
draw_totals(cairo_t *cr, const struct sheetprint_in *in, double top)
{
	json_t *s = in->sheet, *t = json_object_get(s, "totals"), *amc = json_object_get(s, "amc");
	json_int_t total = 0, amo = 0, amc_part = 0, pat = 0;
	char a[32], line[160];
	jint(t, "total", &total);
	jint(t, "amo", &amo);
	jint(t, "amc", &amc_part);
	jint(t, "patient", &pat);
	double y = top + 22, xl = 300;
	font(cr, 11, true);
	text_at(cr, xl, y, "Total");
	text_right(cr, RIGHT - 2, y, eur(total, a));
	hline(cr, xl, RIGHT, y + 4, 0.6);
	font(cr, 9.5, false);
	y += 16;
	text_at(cr, xl, y, "Part Assurance Maladie (AMO)");
	text_right(cr, RIGHT - 2, y, eur(amo, a));
	y += 13;
	const char *amc_id = json_is_object(amc) ? jstr(amc, "id") : "";
	snprintf(line, sizeof(line), "Part compl\u00e9mentaire (AMC%s%s)", amc_id[0] ? " " : "", amc_id);
	text_at(cr, xl, y, line);
	text_right(cr, RIGHT - 2, y, eur(amc_part, a));
	y += 13;
	font(cr, 9.5, true);
	text_at(cr, xl, y, "Part du patient");
	text_right(cr, RIGHT - 2, y, eur(pat, a));

	/* left: tiers payant in words */
	bool tp = json_is_true(json_object_get(s, "tiers_payant"));
	bool amc_tp = json_is_object(amc) && json_is_true(json_object_get(amc, "tiers_payant"));
	y = top + 22;
	block_title(cr, LEFT, y, "TIERS PAYANT");
	font(cr, 9.5, false);
	text_at(cr, LEFT, y + 15, tp ? "Assurance Maladie : oui, pay\u00e9e au praticien" :
	                               "Assurance Maladie : non, avanc\u00e9e par le patient");
	text_at(cr, LEFT, y + 28, !json_is_object(amc) && !json_is_true(amc) ? "Compl\u00e9mentaire : aucune" :
	                          amc_tp ? "Compl\u00e9mentaire : oui, pay\u00e9e au praticien" :
	                                   "Compl\u00e9mentaire : non");
}

/* The QR code as an image, one pixel a module, scaled without smoothing. */
static int
draw_code(cairo_t *cr, const struct sheetprint_in *in, struct sheetprint_out *out, char *err,
          size_t errlen)
{
	const char *id = jstr(in->sheet, "id");
	char *text = NULL;
	QRcode *qr = NULL;
	int r = sheetprint_code_text(id, in->cose, in->cose_len, true, &text);
	if (r == 0) {
		qr = QRcode_encodeString8bit(text, 0, QR_ECLEVEL_M);
		out->full = qr && qr->version <= SHEETPRINT_QR_MAX_VERSION;
	}
	if (r == 0 && !out->full) {
		/* too big for a code a phone or a scanner reads: its digest */
		QRcode_free(qr);
		free(text);
		text = NULL;
		r = sheetprint_code_text(id, in->cose, in->cose_len, false, &text);
		qr = r == 0 ? QRcode_encodeString8bit(text, 0, QR_ECLEVEL_M) : NULL;
	}
	free(text);
	if (r < 0 || !qr) {
		snprintf(err, errlen, "cannot make the 2D code");
		QRcode_free(qr);
		return r < 0 ? r : -ENOMEM;
	}
	out->qr_version = qr->version;
	int quiet = 4, w = qr->width + 2 * quiet;
	cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, w);
	if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
		QRcode_free(qr);
		cairo_surface_destroy(img);
		return -ENOMEM;
	}
	cairo_surface_flush(img);
	unsigned char *px = cairo_image_surface_get_data(img);
	int stride = cairo_image_surface_get_stride(img);
	for (int yy = 0; yy < w; yy++) {
		uint32_t *rowp = (uint32_t *)(void *)(px + (size_t)yy * (size_t)stride);
		for (int xx = 0; xx < w; xx++) {
			int mx = xx - quiet, my = yy - quiet;
			bool dark = mx >= 0 && my >= 0 && mx < qr->width && my < qr->width &&
			            (qr->data[my * qr->width + mx] & 1);
			rowp[xx] = dark ? 0x000000u : 0xffffffu;
		}
	}
	cairo_surface_mark_dirty(img);
	QRcode_free(qr);
	cairo_save(cr);
	cairo_translate(cr, QR_X, QR_Y);
	cairo_scale(cr, QR_SIZE / w, QR_SIZE / w);
	cairo_set_source_surface(cr, img, 0, 0);
	cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
	cairo_paint(cr);
	cairo_restore(cr);
	cairo_surface_destroy(img);

	char cap[96];
	font(cr, 7.5, false);
	grey(cr, GREY);
	if (out->full)
		snprintf(cap, sizeof(cap), "feuille sign\u00e9e (COSE_Sign1, %zu octets)", in->cose_len);
	else
		snprintf(cap, sizeof(cap), "identifiant et empreinte de la feuille sign\u00e9e");
	text_right(cr, RIGHT, QR_Y + QR_SIZE + 10, cap);
	grey(cr, 0);
	return 0;
}

static void
draw_footer(cairo_t *cr, const struct sheetprint_in *in, const struct sheetprint_out *out)
{
	char line[200], when[40];
	double y = PAGE_H - 62;
	grey(cr, 0.6);
	hline(cr, LEFT, RIGHT, y - 12, 0.4);
	grey(cr, 0);
	font(cr, 7.5, false);
	snprintf(line, sizeof(line), "Empreinte SHA-256 de la feuille sign\u00e9e : %.16s %.16s %.16s %.16s",
	         out->sha256, out->sha256 + 16, out->sha256 + 32, out->sha256 + 48);
	text_at(cr, LEFT, y, line);
	time_t t = (time_t)in->printed_at;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%d/%m/%Y \u00e0 %H:%M UTC", &tm);
	snprintf(line, sizeof(line), "Imprim\u00e9 le %s par le terminal %s (vitaled)%s%s.", when,
	         jstr(in->sheet, "terminal_id"), in->state && in->state[0] ? " ; \u00e9tat : " : "",
	         in->state ? in->state : "");
	text_at(cr, LEFT, y + 11, line);
	font(cr, 7.5, true);
	text_at(cr, LEFT, y + 24, "DUPLICATA \u2014 ne pas envoyer en plus de la feuille \u00e9lectronique "
	                          "si celle-ci est transmise plus tard.");
}

/* ------------------------------------------------------------------ */

int
sheetprint_code_text(const char *id, const uint8_t *cose, size_t len, bool full, char **out)
{
	*out = NULL;
	if (!id || !cose || !len)
		return -EINVAL;
	if (full) {
		size_t pl = strlen(SHEETPRINT_PREFIX_FULL);
		char *s = malloc(pl + B64_ENCODED_LEN(len) + 1);
		if (!s)
			return -ENOMEM;
		memcpy(s, SHEETPRINT_PREFIX_FULL, pl);
		b64_encode(cose, len, s + pl);
		*out = s;
		return 0;
	}
	uint8_t md[SHA256_DIGEST_LENGTH];
	char hx[2 * SHA256_DIGEST_LENGTH + 1];
	SHA256(cose, len, md);
	hex_encode(md, sizeof(md), false, hx, sizeof(hx));
	size_t n = strlen(SHEETPRINT_PREFIX_DIGEST) + strlen(id) + 1 + sizeof(hx);
	char *s = malloc(n);
	if (!s)
		return -ENOMEM;
	snprintf(s, n, "%s%s:%s", SHEETPRINT_PREFIX_DIGEST, id, hx);
	*out = s;
	return 0;
}

int
sheetprint_pdf(const struct sheetprint_in *in, struct sheetprint_out *out, char *err,
               size_t errlen)
{
	struct buf b = { 0 };
	uint8_t md[SHA256_DIGEST_LENGTH];
	int r = 0;
	memset(out, 0, sizeof(*out));
	if (!json_is_object(in->sheet) || !jstr(in->sheet, "id")[0] || !in->cose || !in->cose_len) {
		snprintf(err, errlen, "not a signed sheet");
		return -EINVAL;
	}
	SHA256(in->cose, in->cose_len, md);
	hex_encode(md, sizeof(md), false, out->sha256, sizeof(out->sha256));

	cairo_surface_t *surf = cairo_pdf_surface_create_for_stream(buf_write, &b, PAGE_W, PAGE_H);
	cairo_pdf_surface_set_metadata(surf, CAIRO_PDF_METADATA_TITLE, "Duplicata de feuille de soins");
	cairo_pdf_surface_set_metadata(surf, CAIRO_PDF_METADATA_CREATOR, "vitaled");
	cairo_t *cr = cairo_create(surf);
	grey(cr, 0);
	draw_header(cr);
	draw_parties(cr, in);
	r = draw_code(cr, in, out, err, errlen);
	if (r == 0) {
		double top = draw_facts(cr, in);
		draw_totals(cr, in, draw_lines(cr, in, top));
		draw_footer(cr, in, out);
		cairo_show_page(cr);
	}
	cairo_status_t st = cairo_status(cr);
	cairo_destroy(cr);
	cairo_surface_finish(surf);
	if (st == CAIRO_STATUS_SUCCESS)
		st = cairo_surface_status(surf);
	cairo_surface_destroy(surf);
	if (r == 0 && b.over) {
		snprintf(err, errlen, "the page is over %u bytes", SHEETPRINT_MAX);
		r = -EFBIG;
	} else if (r == 0 && st != CAIRO_STATUS_SUCCESS) {
		snprintf(err, errlen, "cairo: %s", cairo_status_to_string(st));
		r = st == CAIRO_STATUS_NO_MEMORY ? -ENOMEM : -EIO;
	}
	if (r < 0) {
		free(b.p);
		out->full = false;
		return r;
	}
	out->pdf = b.p;
	out->len = b.len;
	return 0;
}
