/* libFuzzer target: the response side of the APDU layer and the profile
 * interpreter (protocol/apdu, protocol/profile_read). The input is a
 * sequence of card answers, each a 2-byte big-endian length then that
 * many bytes (length FFFF: the card is removed, FFFE: silence); a fake
 * transmit hands them out whatever was sent. The first byte picks what
 * runs: a T=0 exchange of some command, or the built-in vitale2 profile
 * reading the "card". Nothing may hang, overrun or break a bound. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/apdu.h"
#include "protocol/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct feed {
	const uint8_t *p, *end;
	unsigned calls;
};

static int
feed_transmit(void *ctx, const uint8_t *c, size_t clen, uint8_t *r, size_t *rlen)
{
	struct feed *f = ctx;
	f->calls++;
	if (clen < 4 || clen > APDU_CMD_MAX)
		__builtin_trap();
	if (f->end - f->p < 2)
		return -ETIMEDOUT;
	size_t n = (size_t)f->p[0] << 8 | f->p[1];
	f->p += 2;
	if (n == 0xFFFF)
		return -ENODEV;
	if (n == 0xFFFE)
		return -ETIMEDOUT;
	if (n > (size_t)(f->end - f->p))
		n = (size_t)(f->end - f->p);
	if (n > *rlen)
		return -ENOBUFS;
	memcpy(r, f->p, n);
	f->p += n;
	*rlen = n;
	return 0;
}

static struct profile_set *set;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (!set) {
		set = profile_set_new();
		if (!set || profile_set_add_builtin(set, NULL, 0) < 0)
			__builtin_trap();
	}
	struct feed f = { data + 1, data + size, 0 };
	struct apdu_io io = { feed_transmit, &f };
	uint8_t mode = data[0];

	if (mode < 0x80) {
		static const uint8_t cmds[][16] = {
			{ 0x00, 0xB0, 0x00, 0x00, 0x00 },
			{ 0x00, 0xA4, 0x04, 0x00, 0x02, 0xA1, 0xA2 },
			{ 0x80, 0xCA, 0x00, 0x00, 0x00 },
			{ 0x00, 0xA4, 0x04, 0x00, 0x02, 0xA1, 0xA2, 0x00 },
		};
		static const size_t lens[] = { 5, 7, 5, 8 };
		size_t k = mode % 4;
		struct apdu_limits lim;
		struct apdu_stats st = { 0 };
		apdu_limits_default(&lim);
		lim.max_response = (mode & 0x40) ? 300 : 4096;
		size_t bufsz = (mode & 0x20) ? 40 : 4098;
		uint8_t *buf = malloc(bufsz);
		size_t n;
		uint16_t sw;
		int r;
		if (mode & 0x10)
			r = apdu_exchange_nodata(&io, &lim, &st, cmds[k], lens[k], &sw);
		else
			r = apdu_exchange(&io, &lim, &st, cmds[k], lens[k], buf, bufsz, &n, &sw);
		if (f.calls > 1 + lim.max_6c + lim.max_get_response)
			__builtin_trap();
		if (r == 0 && !(mode & 0x10) && (n > lim.max_response || n + 2 > bufsz))
			__builtin_trap();
		(void)apdu_strerror(r);
		(void)apdu_sw_name(sw);
		free(buf);
		return 0;
	}

	struct profile_limits lim;
	profile_limits_default(&lim);
	if (mode & 0x01)
		lim.max_file = 600;
	struct profile_result res;
	int r = profile_read(profile_set_find(set, "vitale2"), &io, &lim, &res);
	if (f.calls > lim.max_apdus || res.nbenef > PROFILE_MAX_BENEF)
		__builtin_trap();
	if ((r == 0) != (res.reason[0] == '\0') || r != res.err)
		__builtin_trap();
	for (size_t i = 0; i < res.nbenef; i++)
		if (strlen(res.benef[i].surname) > PROFILE_NAME_VALUE_MAX ||
		    strlen(res.benef[i].nir) > NIR_LEN)
			__builtin_trap();
	profile_result_wipe(&res);

	/* the APDU parser on the raw input */
	struct apdu_cmd cmd;
	if (apdu_parse(data + 1, size - 1, &cmd) == 0) {
		uint8_t out[APDU_CMD_MAX];
		size_t n;
		if (apdu_build(&cmd, out, sizeof(out), &n) == 0 &&
		    (n != size - 1 || memcmp(out, data + 1, n) != 0)) {
			/* a short Le of 00 and Ne 256 round-trip; so must all */
			__builtin_trap();
		}
	}
	return 0;
}
