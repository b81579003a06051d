/* Fakes at the APDU seam for the protocol unit suites (fakecard.c; linked
 * into every unit suite):
 *
 * - a scripted transcript: a table of expected command -> answer (or a
 *   transport error); any other command is a mismatch the test sees;
 * - a small T=0 card simulator that serves transparent EFs the way the
 *   test world's cards do (tests/world/cards.py: SELECT answers 61xx,
 *   GET RESPONSE, READ BINARY with 6Cxx for a short rest), with switches
 *   for the hostile behaviours (endless 61xx, 6C ping-pong, silence,
 *   removal after N commands);
 * - a TLV builder to lay out EF contents.
 *
 * Test code: every helper aborts on misuse (bad hex, a full buffer) rather
 * than returning an error. Not thread-safe; one fake per test.
 */
#ifndef VITALED_TEST_SUPPORT_FAKECARD_H
#define VITALED_TEST_SUPPORT_FAKECARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hex (spaces allowed) into out; returns the byte count. Aborts on a
 * non-hex character or more than max bytes. */
size_t fakecard_unhex(const char *s, uint8_t *out, size_t max);

/* ---- transcript ---- */

struct tx_step {
	const char *cmd;   /* hex, or NULL: any command */
	const char *resp;  /* hex, used when err == 0 */
	int err;           /* a transport error to return instead */
};

struct transcript {
	const struct tx_step *steps;
	size_t n, pos;
	int mismatch;      /* 1-based index of the first wrong command, 0 if none */
	char got[600];     /* the wrong command, hex */
};

/* An APDU transmit function over a struct transcript (ctx): the next step's
 * answer when the command is the expected one, -EIO (and t->mismatch, t->got
 * set) when it is not or the transcript is over. */
int fakecard_tx_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen);

/* ---- TLV builder ---- */

struct tb {
	uint8_t *b;        /* malloc'd; the caller frees it (or hands it to fakecard_add_ef) */
	size_t n, cap;
};

void fakecard_tb_init(struct tb *t, size_t cap);
void fakecard_tb_raw(struct tb *t, const void *p, size_t n);
/* A BER-TLV header: tag (1 to 4 bytes) and definite length. */
void fakecard_tb_hdr(struct tb *t, uint32_t tag, size_t len);
void fakecard_tb_tlv(struct tb *t, uint32_t tag, const void *v, size_t n);
void fakecard_tb_str(struct tb *t, uint32_t tag, const char *s);

/* ---- T=0 card simulator ---- */

#define FC_MAX_APPS 4
#define FC_MAX_EFS 12

struct fc_ef {
	uint16_t fid;
	uint8_t *data;   /* owned (malloc) */
	size_t len;
};

struct fc_app {
	uint8_t aid[16];
	size_t aid_len;
	struct fc_ef ef[FC_MAX_EFS];
	size_t nef;
};

struct fakecard {
	struct fc_app app[FC_MAX_APPS];
	size_t napp;
	int cur_app, cur_ef;
	uint8_t pending[1024];
	size_t npending;
	bool has_pending;
	/* behaviour */
	bool endless61;      /* GET RESPONSE Le=n: n bytes + 61 n, forever */
	bool pingpong_read;  /* READ BINARY Le=n: 6C m (m != n), forever */
	bool pingpong_gr;    /* GET RESPONSE after SELECT: 6C m (m != n), forever */
	bool short_reads;    /* answer a short rest + 9000 instead of 6Cxx */
	bool no_fcp_size;    /* FCP without tag 80 */
	int silent_after;    /* answer this many commands, then -ETIMEDOUT (-1: never) */
	int vanish_after;    /* answer this many commands, then -ENODEV (-1: never) */
	unsigned count;      /* commands received */
	unsigned reads;      /* READ BINARY received */
};

void fakecard_init(struct fakecard *fc);
/* Frees every EF's data, in every slot (tests may hide an app or EF by
 * lowering a count). */
void fakecard_free(struct fakecard *fc);
struct fc_app *fakecard_add_app(struct fakecard *fc, const uint8_t *aid, size_t n);
/* Takes ownership of t's buffer. */
void fakecard_add_ef(struct fc_app *a, uint16_t fid, struct tb *t);
/* An APDU transmit function over a struct fakecard (ctx). */
int fakecard_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen);

/* ---- the public Vitale 2 layout ---- */

struct fc_benef {
	const char *surname, *given_name, *birth, *nationality, *nir;
};

/* One beneficiary EF: 65 { 80 81 82 90 93 } (fields left NULL are absent). */
void fakecard_benef_tlv(struct tb *t, const struct fc_benef *b);

/* Build the Vitale 2 of the public structure with beneficiary EFs given
 * ready-made (EF 2004 + i, whose buffers it takes); the card EF 2002 is
 * 66 { 80 start } 7F21 {..} over 256 bytes; MF_VITALE holds 2F02 = 5A serial. */
void fakecard_vitale2(struct fakecard *fc, struct tb *benef_efs, size_t nbenef);

#endif
