/* The paper duplicata of a signed care sheet (CSS R.161-47: a sheet that
 * cannot be transmitted goes to the insurer on paper): one A4 page in PDF
 * that a patient can read, and a 2D code (QR) that lets the insurer check
 * the paper against the signature. docs/care-sheet.md "The paper
 * duplicata" has the page and the code's format.
 *
 * The page is drawn with cairo (its PDF surface, text in DejaVu Sans via
 * fontconfig) and the code made with libqrencode. It is drawn from the
 * sheet's JSON form as GetSheet shows it (sheet_to_json of the decoded
 * signed bytes): model 1 ("acts") and model 2 ("lines" of kind act,
 * medicine, device) alike; the NIR only ever appears masked
 * (protocol/nir's nir_mask).
 *
 * The code holds, when it fits in a QR code of version SHEETPRINT_QR_MAX_VERSION
 * at error-correction level M, the signed sheet itself:
 *     VITALED-FSE:1:<base64 of the COSE_Sign1 bytes>
 * and else its id and the SHA-256 of those bytes:
 *     VITALED-FSE-DIGEST:1:<sheet id>:<sha256, 64 lower-case hex digits>
 * The digest is printed as text under the code too.
 *
 * Pure: no I/O, no global state (cairo and fontconfig are thread-safe);
 * any thread. The daemon runs it on a worker of its own (api_sheets.c),
 * never on the loop nor on the queue's thread.
 */
#ifndef VITALED_SHEETPRINT_H
#define VITALED_SHEETPRINT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest PDF made (bytes): a page is about 30 KiB; PrintSheet's
 * reply is bounded by this (base64: 4/3 of it). */
#define SHEETPRINT_MAX (512u * 1024u)
/* The largest QR code that holds the signed sheet (137 modules a side:
 * about 1 KB of COSE at level M, 0.4 mm a module in the page's 56 mm). */
#define SHEETPRINT_QR_MAX_VERSION 30
#define SHEETPRINT_PREFIX_FULL "VITALED-FSE:1:"
#define SHEETPRINT_PREFIX_DIGEST "VITALED-FSE-DIGEST:1:"

struct sheetprint_in {
	json_t *sheet;            /* the sheet's JSON form (borrowed) */
	const uint8_t *cose;      /* the signed sheet as stored (COSE_Sign1) */
	size_t cose_len;
	const char *state;        /* the queue's state ("queued" ...), may be NULL */
	const char *practice_name;    /* [practitioner] name, may be NULL or "" */
	const char *practice_address; /* [practitioner] address, may be NULL or "" */
	int64_t printed_at;       /* seconds since the epoch */
};

struct sheetprint_out {
	uint8_t *pdf;             /* malloc'd; free() it */
	size_t len;
	bool full;                /* the code holds the whole signed sheet (else its digest) */
	int qr_version;
	char sha256[65];          /* of the COSE bytes, lower-case hex */
};

/* The text the 2D code holds (see above) for the sheet id and its signed
 * bytes: *out malloc'd (free() it), *full set. 0, -EINVAL, -ENOMEM. Exposed
 * for the tests. */
int sheetprint_code_text(const char *id, const uint8_t *cose, size_t len, bool full, char **out);

/* Draw the duplicata. 0; -EINVAL (not a signed sheet's JSON: err says
 * why), -EFBIG (over SHEETPRINT_MAX), -ENOMEM, -EIO (cairo failed: err).
 * out is zeroed first; on failure it owns nothing. */
int sheetprint_pdf(const struct sheetprint_in *in, struct sheetprint_out *out, char *err,
                   size_t errlen);

#endif
