/* Card PIN checks over the reader interface; see cardpin.h. */
#include "daemon/pin/cardpin.h"

#include <errno.h>
#include <string.h>

#define RAPDU_MAX 258

/* Send cmd (clen bytes) and name the answer. */
static int
exchange(const struct reader_ops *ops, struct reader_card *card, enum pin_cmd kind,
         const uint8_t *cmd, size_t clen, struct pin_result *res)
{
	uint8_t r[RAPDU_MAX];
	size_t rlen = sizeof(r);
	int rc = ops->transmit(card, cmd, clen, r, &rlen);
	if (rc < 0)
		return rc;
	if (pin_parse_answer(kind, r, rlen, res) < 0)
		return -EIO;
	return 0;
}

int
cardpin_query(const struct reader_ops *ops, struct reader_card *card,
              const struct pin_params *p, struct pin_result *res)
{
	uint8_t cmd[8];
	size_t n;
	int r = pin_build_verify_query(p, cmd, sizeof(cmd), &n);
	if (r < 0)
		return r;
	return exchange(ops, card, PIN_CMD_QUERY, cmd, n, res);
}

int
cardpin_verify(const struct reader_ops *ops, struct reader_card *card,
               const struct pin_params *p, const struct secmem_pin *pin,
               struct pin_result *res)
{
	void *buf = NULL;
	size_t n = 0;
	int r;
	res->status = PIN_ST_CARD_ERROR;
	res->tries_left = -1;
	res->sw = 0;
	if (!pin)
		return -EINVAL;
	/* the shape first: a malformed PIN never starts an exchange */
	if ((r = pin_check(p, secmem_pin_digits(pin), secmem_pin_len(pin))) < 0)
		return r;
	struct pin_result q;
	if ((r = cardpin_query(ops, card, p, &q)) < 0)
		return r;
	if (q.status == PIN_ST_BLOCKED || q.status == PIN_ST_OK) {
		*res = q; /* blocked: never send it; verified already: nothing to do */
		return 0;
	}
	if ((r = secmem_alloc(PIN_APDU_MAX, &buf)) < 0)
		return r;
	r = pin_build_verify(p, secmem_pin_digits(pin), secmem_pin_len(pin), buf, PIN_APDU_MAX, &n);
	if (r == 0)
		r = exchange(ops, card, PIN_CMD_VERIFY, buf, n, res);
	if (r == 0 && res->tries_left < 0 && q.status == PIN_ST_NEEDED &&
	    res->status == PIN_ST_INCORRECT && q.tries_left > 0)
		res->tries_left = q.tries_left - 1; /* a card that answers a bare 6300 */
	secmem_free(buf, PIN_APDU_MAX);
	return r;
}

int
cardpin_features(const struct reader_ops *ops, struct reader_card *card, struct pin_features *f)
{
	memset(f, 0, sizeof(*f));
	if (!ops->control)
		return -ENOTSUP;
	uint8_t out[PIN_FEATURES_MAX_LEN];
	size_t olen = sizeof(out);
	int r = ops->control(card, PIN_CM_IOCTL_GET_FEATURE_REQUEST, NULL, 0, out, &olen);
	if (r < 0)
		return r == -EIO ? -ENOTSUP : r; /* readers without part 10 fail the IOCTL */
	if (pin_features_parse(out, olen, f) < 0)
		return -EIO;
	return f->count ? 0 : -ENOTSUP;
}

int
cardpin_verify_pinpad(const struct reader_ops *ops, struct reader_card *card,
                      const struct pin_params *p, const struct pin_pinpad *pp,
                      const struct pin_features *f, struct pin_result *res)
{
	res->status = PIN_ST_CARD_ERROR;
	res->tries_left = -1;
	res->sw = 0;
	uint32_t code = pin_feature_code(f, PIN_FEATURE_VERIFY_PIN_DIRECT);
	if (!code || !ops->control)
		return -ENOTSUP;
	struct pin_result q;
	int r = cardpin_query(ops, card, p, &q);
	if (r < 0)
		return r;
	if (q.status == PIN_ST_BLOCKED || q.status == PIN_ST_OK) {
		*res = q;
		return 0;
	}
	uint8_t st[PIN_VERIFY_STRUCTURE_MAX];
	size_t n;
	if ((r = pin_build_verify_structure(p, pp, st, sizeof(st), &n)) < 0)
		return r;
	uint8_t out[RAPDU_MAX];
	size_t olen = sizeof(out);
	if ((r = ops->control(card, code, st, n, out, &olen)) < 0)
		return r;
	if (pin_parse_answer(PIN_CMD_PINPAD_VERIFY, out, olen, res) < 0)
		return -EIO;
	return 0;
}

int
cardpin_unblock(const struct reader_ops *ops, struct reader_card *card,
                const struct pin_params *p, const struct secmem_pin *puk,
                const struct secmem_pin *newpin, struct pin_result *res)
{
	void *buf = NULL;
	size_t n = 0;
	res->status = PIN_ST_CARD_ERROR;
	res->tries_left = -1;
	res->sw = 0;
	if (!puk)
		return -EINVAL;
	int r = secmem_alloc(PIN_APDU_MAX, &buf);
	if (r < 0)
		return r;
	r = pin_build_reset_retry(p, secmem_pin_digits(puk), secmem_pin_len(puk),
	                          newpin ? secmem_pin_digits(newpin) : NULL,
	                          newpin ? secmem_pin_len(newpin) : 0, buf, PIN_APDU_MAX, &n);
	if (r == 0)
		r = exchange(ops, card, PIN_CMD_RESET_RETRY, buf, n, res);
	secmem_free(buf, PIN_APDU_MAX);
	return r;
}
