/* APDU encoding, status words and the T=0 exchange loop, see apdu.h.
 *
 * Encoding follows ISO/IEC 7816-4:2013 §5.1 (short and extended Lc/Le
 * fields) and case detection ISO/IEC 7816-3:2006 §12.1.3. The exchange loop
 * follows §12.2 (T=0 transmission of APDUs: 61xx and 6Cxx procedure words
 * surfacing as status words through an APDU-level reader).
 *
 * What must stay true: the loop never sends more than 1 + max_6c +
 * max_get_response commands for one call, never writes outside the
 * caller's buffer, and never gathers more than max_response data bytes.
 */
#include "protocol/apdu.h"

#include <errno.h>
#include <string.h>

int
apdu_case(const struct apdu_cmd *cmd)
{
	if (cmd->lc == 0)
		return cmd->ne == 0 ? 1 : 2;
	return cmd->ne == 0 ? 3 : 4;
}

int
apdu_build(const struct apdu_cmd *cmd, uint8_t *out, size_t outsz, size_t *outlen)
{
	size_t n = 0;
	*outlen = 0;
	if (cmd->lc > 0 && !cmd->data)
		return -EINVAL;
	bool ext = cmd->extended;
	if (ext ? (cmd->lc > APDU_EXT_MAX_LC || cmd->ne > APDU_EXT_MAX_NE)
	        : (cmd->lc > APDU_SHORT_MAX_LC || cmd->ne > APDU_SHORT_MAX_NE))
		return -EINVAL;
	size_t need = 4;
	if (cmd->lc)
		need += (ext ? 3 : 1) + cmd->lc;
	if (cmd->ne)
		need += ext ? (cmd->lc ? 2 : 3) : 1;
	if (need > outsz)
		return -EMSGSIZE;
	out[n++] = cmd->cla;
	out[n++] = cmd->ins;
	out[n++] = cmd->p1;
	out[n++] = cmd->p2;
	if (cmd->lc) {
		if (ext) {
			out[n++] = 0x00;
			out[n++] = (uint8_t)(cmd->lc >> 8);
		}
		out[n++] = (uint8_t)cmd->lc;
		memcpy(out + n, cmd->data, cmd->lc);
		n += cmd->lc;
	}
	if (cmd->ne) {
		/* Ne maximum is coded as 00 (short) or 0000 (extended) */
		size_t ne = ext ? (cmd->ne == APDU_EXT_MAX_NE ? 0 : cmd->ne)
		                : (cmd->ne == APDU_SHORT_MAX_NE ? 0 : cmd->ne);
		if (ext) {
			if (!cmd->lc)
				out[n++] = 0x00;
			out[n++] = (uint8_t)(ne >> 8);
		}
		out[n++] = (uint8_t)ne;
	}
	*outlen = n;
	return 0;
}

int
apdu_parse(const uint8_t *buf, size_t len, struct apdu_cmd *out)
{
	memset(out, 0, sizeof(*out));
	if (!buf || len < 4)
		return -EINVAL;
	out->cla = buf[0];
	out->ins = buf[1];
	out->p1 = buf[2];
	out->p2 = buf[3];
	if (len == 4)
		return 0;                                   /* case 1 */
	if (len == 5) {                                     /* case 2S */
		out->ne = buf[4] ? buf[4] : APDU_SHORT_MAX_NE;
		return 0;
	}
	if (buf[4] != 0) {                                  /* short Lc */
		size_t lc = buf[4];
		if (len == 5 + lc) {                        /* case 3S */
			out->data = buf + 5;
			out->lc = lc;
			return 0;
		}
		if (len == 6 + lc) {                        /* case 4S */
			out->data = buf + 5;
			out->lc = lc;
			out->ne = buf[len - 1] ? buf[len - 1] : APDU_SHORT_MAX_NE;
			return 0;
		}
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	/* B1 = 00 with more bytes: extended */
	out->extended = true;
	if (len == 7) {                                     /* case 2E */
		size_t ne = (size_t)buf[5] << 8 | buf[6];
		out->ne = ne ? ne : APDU_EXT_MAX_NE;
		return 0;
	}
	if (len < 7) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	size_t lc = (size_t)buf[5] << 8 | buf[6];
	if (lc == 0) {
		memset(out, 0, sizeof(*out));
		return -EINVAL;
	}
	if (len == 7 + lc) {                                /* case 3E */
		out->data = buf + 7;
		out->lc = lc;
		return 0;
	}
	if (len == 9 + lc) {                                /* case 4E */
		out->data = buf + 7;
		out->lc = lc;
		size_t ne = (size_t)buf[len - 2] << 8 | buf[len - 1];
		out->ne = ne ? ne : APDU_EXT_MAX_NE;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

int
apdu_parse_response(const uint8_t *buf, size_t len, const uint8_t **data, size_t *dlen,
                    uint16_t *sw)
{
	*data = NULL;
	*dlen = 0;
	*sw = 0;
	if (!buf || len < 2)
		return -EBADMSG;
	*data = buf;
	*dlen = len - 2;
	*sw = (uint16_t)(buf[len - 2] << 8 | buf[len - 1]);
	return 0;
}

/* ---- status words (ISO 7816-4:2013 §5.6, tables 5 and 6) ---- */

struct sw_entry {
	uint16_t sw, mask;
	const char *name, *text;
};

static const struct sw_entry sw_table[] = {
	{ 0x9000, 0xFFFF, "ok", "normal processing" },
	{ 0x6100, 0xFF00, "bytes_available", "response bytes still available (GET RESPONSE)" },
	{ 0x6281, 0xFFFF, "data_corrupted", "part of returned data may be corrupted" },
	{ 0x6282, 0xFFFF, "end_of_file", "end of file reached before reading Ne bytes" },
	{ 0x6283, 0xFFFF, "file_deactivated", "selected file deactivated" },
	{ 0x6284, 0xFFFF, "fci_format", "file control information not formatted as expected" },
	{ 0x6200, 0xFF00, "warning", "warning, memory unchanged" },
	{ 0x63C0, 0xFFF0, "tries_left", "verification failed, counter gives tries left" },
	{ 0x6300, 0xFFFF, "verify_failed", "verification failed, no information given" },
	{ 0x6300, 0xFF00, "warning_changed", "warning, memory changed" },
	{ 0x6400, 0xFF00, "execution_error", "execution error, memory unchanged" },
	{ 0x6581, 0xFFFF, "memory_failure", "memory failure" },
	{ 0x6500, 0xFF00, "execution_error_changed", "execution error, memory changed" },
	{ 0x6700, 0xFFFF, "wrong_length", "wrong length (Lc or Le)" },
	{ 0x6881, 0xFFFF, "channel_not_supported", "logical channel not supported" },
	{ 0x6882, 0xFFFF, "sm_not_supported", "secure messaging not supported" },
	{ 0x6800, 0xFF00, "cla_function_unsupported", "functions in CLA not supported" },
	{ 0x6981, 0xFFFF, "incompatible_file", "command incompatible with file structure" },
	{ 0x6982, 0xFFFF, "security_not_satisfied", "security status not satisfied" },
	{ 0x6983, 0xFFFF, "auth_blocked", "authentication method blocked" },
	{ 0x6984, 0xFFFF, "reference_unusable", "reference data not usable" },
	{ 0x6985, 0xFFFF, "conditions_not_satisfied", "conditions of use not satisfied" },
	{ 0x6986, 0xFFFF, "no_current_ef", "command not allowed (no current EF)" },
	{ 0x6987, 0xFFFF, "sm_missing", "expected secure messaging data objects missing" },
	{ 0x6988, 0xFFFF, "sm_incorrect", "incorrect secure messaging data objects" },
	{ 0x6900, 0xFF00, "command_not_allowed", "command not allowed" },
	{ 0x6A80, 0xFFFF, "wrong_data", "incorrect parameters in the data field" },
	{ 0x6A81, 0xFFFF, "function_not_supported", "function not supported" },
	{ 0x6A82, 0xFFFF, "file_not_found", "file or application not found" },
	{ 0x6A83, 0xFFFF, "record_not_found", "record not found" },
	{ 0x6A84, 0xFFFF, "no_memory", "not enough memory space in the file" },
	{ 0x6A86, 0xFFFF, "wrong_p1p2", "incorrect parameters P1-P2" },
	{ 0x6A88, 0xFFFF, "reference_not_found", "referenced data or reference data not found" },
	{ 0x6A00, 0xFF00, "wrong_parameters", "wrong parameters P1-P2" },
	{ 0x6B00, 0xFFFF, "wrong_offset", "wrong parameters P1-P2 (offset outside the EF)" },
	{ 0x6C00, 0xFF00, "wrong_le", "wrong Le field (SW2 gives the exact length)" },
	{ 0x6D00, 0xFFFF, "ins_not_supported", "instruction code not supported or invalid" },
	{ 0x6E00, 0xFFFF, "cla_not_supported", "class not supported" },
	{ 0x6F00, 0xFFFF, "no_diagnosis", "no precise diagnosis" },
};

static const struct sw_entry *
sw_find(uint16_t sw)
{
	for (size_t i = 0; i < sizeof(sw_table) / sizeof(sw_table[0]); i++)
		if ((sw & sw_table[i].mask) == sw_table[i].sw)
			return &sw_table[i];
	return NULL;
}

const char *
apdu_sw_name(uint16_t sw)
{
	const struct sw_entry *e = sw_find(sw);
	return e ? e->name : "sw_unknown";
}

const char *
apdu_sw_text(uint16_t sw)
{
	const struct sw_entry *e = sw_find(sw);
	return e ? e->text : "unknown status";
}

bool
apdu_sw_ok(uint16_t sw)
{
	return sw == APDU_SW_OK;
}

const char *
apdu_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
	case -ELOOP: return "t0_endless_61xx";
	case -EPROTO: return "t0_6c_pingpong";
	case -EMSGSIZE: return "answer_too_large";
	case -EBADMSG: return "bad_response";
	case -ENODEV: return "card_removed";
	case -ETIMEDOUT: return "timeout";
	case -ECONNRESET: return "card_reset";
	case -EHOSTDOWN: return "reader_gone";
	case -EIO: return "io_error";
	case -EINVAL: return "bad_command";
	default: return "transport_error";
	}
}

void
apdu_limits_default(struct apdu_limits *l)
{
	l->max_get_response = APDU_DEFAULT_MAX_GET_RESPONSE;
	l->max_6c = APDU_DEFAULT_MAX_6C;
	l->max_response = APDU_DEFAULT_MAX_RESPONSE;
}

/* ---- the exchange loop ---- */

#define SHORT_CMD_MAX (4 + 1 + APDU_SHORT_MAX_LC + 1)

/* One transmit into buf[0..room), with the checks every answer needs. */
static int
send_one(const struct apdu_io *io, struct apdu_stats *st, const uint8_t *c, size_t clen,
         uint8_t *buf, size_t room, size_t *got)
{
	size_t rlen = room;
	*got = 0;
	if (st)
		st->apdus++;
	int r = io->transmit(io->ctx, c, clen, buf, &rlen);
	if (r < 0)
		return r;
	if (r > 0 || rlen > room)
		return -EIO;          /* the driver broke its contract */
	if (st)
		st->bytes_in += rlen;
	if (rlen < 2)
		return -EBADMSG;
	*got = rlen;
	return 0;
}

static int
exchange(const struct apdu_io *io, const struct apdu_limits *lim, struct apdu_stats *st,
         const uint8_t *capdu, size_t clen, uint8_t *buf, size_t bufsz, size_t *datalen,
         uint16_t *sw, bool nodata)
{
	struct apdu_limits defl;
	struct apdu_cmd parsed;
	uint8_t copy[SHORT_CMD_MAX];  /* the command, when 6Cxx may rewrite its Le */
	uint8_t gr[5];                /* GET RESPONSE */
	const uint8_t *cur = capdu;
	size_t curlen = clen;
	uint8_t *cur_le = NULL;       /* the Le byte of cur, if short case 2/4 */
	unsigned n61 = 0, n6c = 0;
	size_t acc = 0;
	int r = 0;

	*datalen = 0;
	*sw = 0;
	if (!lim) {
		apdu_limits_default(&defl);
		lim = &defl;
	}
	if (!io || !io->transmit || !capdu || apdu_parse(capdu, clen, &parsed) < 0)
		return -EINVAL;
	if (!parsed.extended && parsed.ne && clen <= sizeof(copy)) {
		memcpy(copy, capdu, clen);
		cur = copy;
		cur_le = copy + clen - 1;
	}
	for (;;) {
		size_t got;
		if (bufsz - acc < 2)
			return -EMSGSIZE;
		r = send_one(io, st, cur, curlen, buf + acc, bufsz - acc, &got);
		if (r < 0)
			goto out;
		size_t dlen = got - 2;
		uint8_t sw1 = buf[acc + dlen], sw2 = buf[acc + dlen + 1];

		if (sw1 == 0x6C) {
			/* §12.2.2: wrong Le, the card gives the right one; any data
			 * with it is meaningless and dropped */
			if (!cur_le) {
				*sw = (uint16_t)(sw1 << 8 | sw2);
				goto done;
			}
			if (n6c >= lim->max_6c) {
				r = -EPROTO;
				goto out;
			}
			n6c++;
			*cur_le = sw2;
			continue;
		}
		if (nodata && sw1 == 0x61) {
			/* the answer waits; we do not want it */
			*sw = APDU_SW_OK;
			acc = 0;
			goto done;
		}
		if (!nodata) {
			if (dlen > lim->max_response - acc) {
				r = -EMSGSIZE;
				goto out;
			}
			acc += dlen;
		}
		if (sw1 != 0x61) {
			*sw = (uint16_t)(sw1 << 8 | sw2);
			goto done;
		}
		/* §12.2.2: 61xx, xx bytes (00: 256 or more) wait */
		if (n61 >= lim->max_get_response) {
			r = -ELOOP;
			goto out;
		}
		n61++;
		size_t ne = sw2 ? sw2 : 256;
		size_t room = bufsz - acc;
		size_t left = lim->max_response - acc;
		if (room < 3 || left == 0) {
			r = -EMSGSIZE;
			goto out;
		}
		if (ne > room - 2)
			ne = room - 2;     /* ask for less; the card says 61 for the rest */
		if (ne > left)
			ne = left;
		uint8_t ocla = capdu[0];
		gr[0] = (ocla & 0xE0) == 0 ? (uint8_t)(ocla & 0x03) : 0x00;
		gr[1] = APDU_INS_GET_RESPONSE;
		gr[2] = 0x00;
		gr[3] = 0x00;
		gr[4] = (uint8_t)(ne & 0xFF);   /* 256 is coded 00 */
		cur = gr;
		curlen = sizeof(gr);
		cur_le = &gr[4];
	}
done:
	*datalen = acc;
	return 0;
out:
	*datalen = acc;
	*sw = 0;
	return r;
}

int
apdu_exchange(const struct apdu_io *io, const struct apdu_limits *lim, struct apdu_stats *st,
              const uint8_t *capdu, size_t clen, uint8_t *resp, size_t respsz, size_t *resplen,
              uint16_t *sw)
{
	*resplen = 0;
	*sw = 0;
	if (!resp && respsz)
		return -EINVAL;
	if (!resp || respsz < 2)
		return -EMSGSIZE;
	return exchange(io, lim, st, capdu, clen, resp, respsz, resplen, sw, false);
}

int
apdu_exchange_nodata(const struct apdu_io *io, const struct apdu_limits *lim,
                     struct apdu_stats *st, const uint8_t *capdu, size_t clen, uint16_t *sw)
{
	uint8_t buf[APDU_RESP_SHORT_MAX];
	size_t n;
	int r = exchange(io, lim, st, capdu, clen, buf, sizeof(buf), &n, sw, true);
	explicit_bzero(buf, sizeof(buf));
	return r;
}
