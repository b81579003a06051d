/* APDUs: build and parse command APDUs, name status words, and exchange an
 * APDU with a card through the reader's transmit call, doing the T=0
 * response handling (ISO/IEC 7816-3:2006 §12.2, ISO/IEC 7816-4:2013 §5).
 *
 * The reader drivers (drivers/reader.h) pass bytes through untouched; T=0
 * cards answer "61 xx" (xx bytes wait: fetch them with GET RESPONSE) and
 * "6C xx" (wrong Le: send the same command again with Le = xx).
 * apdu_exchange() does both, bounded by rounds and by bytes, and gives a
 * distinct error for each hostile pattern:
 *   -ELOOP     "t0_endless_61xx"  more 61xx rounds than limits allow
 *   -EPROTO    "t0_6c_pingpong"   6Cxx again after the allowed re-sends
 *   -EMSGSIZE  "answer_too_large" the answer outgrows the limit or buffer
 *   -EBADMSG   "bad_response"     an answer shorter than SW1 SW2
 * and passes the drivers' errors through (-ENODEV "card_removed",
 * -ETIMEDOUT "timeout", -ECONNRESET "card_reset", -EHOSTDOWN
 * "reader_gone", -EIO "io_error"): apdu_strerror() names them all.
 *
 * Pure code: no I/O of its own (the transmit callback does it), no global
 * state. apdu_exchange() runs on the caller's thread (a session thread:
 * transmit blocks).
 */
#ifndef VITALED_APDU_H
#define VITALED_APDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define APDU_SHORT_MAX_LC 255
#define APDU_SHORT_MAX_NE 256
#define APDU_EXT_MAX_LC 65535
#define APDU_EXT_MAX_NE 65536
/* Largest encoded command: 4 + 3 + 65535 + 2. */
#define APDU_CMD_MAX (4 + 3 + APDU_EXT_MAX_LC + 2)
/* Room for one short answer: 256 data bytes + SW1 SW2. */
#define APDU_RESP_SHORT_MAX (APDU_SHORT_MAX_NE + 2)

/* Status words used by name in the code (ISO 7816-4 §5.6). */
#define APDU_SW_OK            0x9000
#define APDU_SW_EOF           0x6282 /* end of file before Ne bytes */
#define APDU_SW_WRONG_LENGTH  0x6700
#define APDU_SW_SECURITY      0x6982
#define APDU_SW_BLOCKED       0x6983
#define APDU_SW_REF_UNUSABLE  0x6984
#define APDU_SW_CONDITIONS    0x6985
#define APDU_SW_NOT_FOUND     0x6A82
#define APDU_SW_WRONG_P1P2    0x6A86
#define APDU_SW_WRONG_OFFSET  0x6B00
#define APDU_SW_INS_UNKNOWN   0x6D00
#define APDU_SW_CLA_UNKNOWN   0x6E00

#define APDU_INS_SELECT       0xA4
#define APDU_INS_READ_BINARY  0xB0
#define APDU_INS_GET_RESPONSE 0xC0
#define APDU_INS_VERIFY       0x20

/* A command APDU, zero-copy: data points into the caller's memory.
 * ne = 0: no Le field; 1..256 (short) or 1..65536 (extended): Ne. */
struct apdu_cmd {
	uint8_t cla, ins, p1, p2;
	const uint8_t *data;
	size_t lc;
	size_t ne;
	bool extended;  /* encode Lc/Le in extended form (§5.1) */
};

/* Encode cmd (cases 1-4, short, or extended when cmd->extended is set)
 * into out. Returns 0 and *outlen, -EINVAL (lc/ne out of range for the
 * form, data NULL with lc > 0) or -EMSGSIZE (outsz too small). */
int apdu_build(const struct apdu_cmd *cmd, uint8_t *out, size_t outsz, size_t *outlen);

/* Decode a command APDU (ISO 7816-3 §12.1.3 case detection). out->data
 * points into buf. Returns 0 or -EINVAL (no case fits the length). */
int apdu_parse(const uint8_t *buf, size_t len, struct apdu_cmd *out);

/* 1..4: the case of a command (by lc and ne). */
int apdu_case(const struct apdu_cmd *cmd);

/* Split a response APDU: data (pointing into buf) and SW1 SW2.
 * Returns 0 or -EBADMSG (fewer than 2 bytes). */
int apdu_parse_response(const uint8_t *buf, size_t len, const uint8_t **data, size_t *dlen,
                        uint16_t *sw);

/* Short stable name of a status word ("ok", "file_not_found",
 * "bytes_available" for 61xx, "tries_left" for 63Cx, ...) and a phrase
 * for people. Unknown words give "sw_unknown" / "unknown status". */
const char *apdu_sw_name(uint16_t sw);
const char *apdu_sw_text(uint16_t sw);
/* True only for 9000: warnings (62xx, 63xx) are for the caller to judge. */
bool apdu_sw_ok(uint16_t sw);

/* Named reason of an error from apdu_exchange() or a driver. */
const char *apdu_strerror(int err);

/* The transport: the reader driver's transmit bound to one card.
 * *rlen is the buffer size on entry and the answer length on return.
 * Returns 0 or a negative errno (drivers/reader.h codes). */
struct apdu_io {
	int (*transmit)(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
	                size_t *rlen);
	void *ctx;
};

struct apdu_limits {
	unsigned max_get_response; /* GET RESPONSE rounds in one exchange */
	unsigned max_6c;           /* 6Cxx re-sends in one exchange */
	size_t max_response;       /* data bytes gathered in one exchange */
};

#define APDU_DEFAULT_MAX_GET_RESPONSE 64
#define APDU_DEFAULT_MAX_6C 2
#define APDU_DEFAULT_MAX_RESPONSE 65536

/* Fill with the defaults above. */
void apdu_limits_default(struct apdu_limits *l);

/* Counters an exchange adds to (never cleared here). */
struct apdu_stats {
	unsigned apdus;     /* commands sent, GET RESPONSE and re-sends included */
	size_t bytes_in;    /* response bytes received, status words included */
};

/* Send one command and bring back its whole answer, doing the T=0 work:
 * 61xx: GET RESPONSE (00 C0 00 00 xx; CLA keeps the logical channel bits
 * of an interindustry command, else 00) and the data is appended;
 * 6Cxx: the last command is sent again with Le = xx (short case 2 or 4
 * only; otherwise 6Cxx is returned as the status).
 * resp receives the data only, but must have 2 bytes of room beyond it
 * (each answer's SW1 SW2 lands there in passing; resp may be NULL only if
 * respsz is 0); *sw the final status word. Counts into st when not NULL; lim NULL means
 * the defaults. Returns 0 (whatever the status word) or a negative errno
 * (see the top of this file); *resplen and *sw are always set (0 on error,
 * except *resplen which keeps the data gathered so far). */
int apdu_exchange(const struct apdu_io *io, const struct apdu_limits *lim,
                  struct apdu_stats *st, const uint8_t *capdu, size_t clen,
                  uint8_t *resp, size_t respsz, size_t *resplen, uint16_t *sw);

/* Like apdu_exchange() but a 61xx answer to cmd is taken as success
 * (status 9000, no data) without fetching: for a SELECT whose FCI is not
 * wanted. 6Cxx is still handled. */
int apdu_exchange_nodata(const struct apdu_io *io, const struct apdu_limits *lim,
                         struct apdu_stats *st, const uint8_t *capdu, size_t clen,
                         uint16_t *sw);

#endif
