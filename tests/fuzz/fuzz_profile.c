/* libFuzzer target: the card profile file parser (protocol/profile), and
 * whatever it accepts run against a fake card that answers from the rest
 * of the input, plus its PIN block and ATR matching. Input: the profile
 * text, then optionally a NUL and the card's answers, each a length byte
 * (FF: 256), that many data bytes, then SW1 SW2 (9000 when missing). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
	(void)c;
	f->calls++;
	if (clen < 4)
		__builtin_trap();
	if (f->p >= f->end)
		return -ETIMEDOUT;
	size_t n = *f->p++;
	if (n == 0xFF)
		n = 256;                     /* a full short answer */
	if (n > (size_t)(f->end - f->p))
		n = (size_t)(f->end - f->p);
	if (n + 2 > *rlen)
		return -ENOBUFS;
	memcpy(r, f->p, n);
	f->p += n;
	/* status word from the next two bytes, 9000 when the input ends */
	r[n] = f->p < f->end ? *f->p++ : 0x90;
	r[n + 1] = f->p < f->end ? *f->p++ : 0x00;
	*rlen = n + 2;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* profile text, then optionally "\0" and card answers */
	const uint8_t *nul = memchr(data, '\0', size);
	size_t tlen = nul ? (size_t)(nul - data) : size;
	char err[256];
	struct profile *p = NULL;
	int r = profile_parse((const char *)data, tlen, "fuzz.profile", &p, err, sizeof(err));
	if (r < 0) {
		if (p || strlen(err) >= sizeof(err) || strncmp(err, "fuzz.profile", 12) != 0)
			__builtin_trap();
		return 0;
	}
	if (p->natr > PROFILE_MAX_ATR || p->nsteps > PROFILE_MAX_STEPS || p->nmap > PROFILE_MAX_MAP)
		__builtin_trap();
	for (size_t i = 0; i < p->natr; i++)
		(void)atr_pattern_match(&p->atr[i], p->atr[i].value, p->atr[i].len);

	uint8_t apdu[64];
	size_t n;
	(void)profile_pin_apdu(&p->pin, "12345678", 4 + size % 5, apdu, sizeof(apdu), &n);

	struct feed f = { nul ? nul + 1 : data + size, data + size, 0 };
	struct apdu_io io = { feed_transmit, &f };
	struct profile_limits lim;
	profile_limits_default(&lim);
	lim.max_apdus = 64;
	struct profile_result res;
	r = profile_read(p, &io, &lim, &res);
	if (f.calls > lim.max_apdus || (r == 0) != (res.reason[0] == '\0'))
		__builtin_trap();
	profile_free(p);
	return 0;
}
