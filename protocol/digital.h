/* The digital carte Vitale, terminal side: the APDU flow of
 * docs/digital-card.md §2-§4 and §11 as pure code over a transmit callback.
 *
 * digital_read() selects the applet (§4.1), checks its answer, reads the
 * credential with GET CREDENTIAL and GET RESPONSE chaining (§2.3, §4.2),
 * verifies it (protocol/credential.h), then, unless only a read is asked
 * for (kiosk check-in), sends AUTHENTICATE with a fresh 32-byte nonce and
 * polls while the phone answers 63 00 (§4.3), and verifies the device
 * answer. The outcome is one §12 reason.
 *
 * The transmit callback has the shape of reader_ops.transmit
 * (drivers/reader.h) with its context: one raw exchange, *rlen the buffer
 * size on entry and the answer length on return, a negative errno on
 * failure (-ENODEV card removed, -ETIMEDOUT, -EIO ...; all are card_lost
 * here). Clocks and sleep are injectable for tests; by default they are
 * CLOCK_MONOTONIC, time() and nanosleep().
 *
 * digital_read() blocks for up to code_timeout (60 s by default) while the
 * holder types the code on the phone: call it from a session thread, never
 * from the main loop. No logging here: the caller logs the reason name and
 * sizes, never the result's identity fields or bytes.
 */
#ifndef VITALED_DIGITAL_H
#define VITALED_DIGITAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/credential.h"

/* §3.1 */
#define DIGITAL_AID_LEN 9
extern const uint8_t DIGITAL_AID[DIGITAL_AID_LEN];

#define DIGITAL_TERMINAL_ID_MAX 64   /* bytes of UTF-8 (§4.3) */
#define DIGITAL_GET_RESPONSE_MAX 64  /* rounds per command (§2.3) */
#define DIGITAL_CHAIN_MAX 16384      /* any one chained answer (§13) */
#define DIGITAL_POLL_INTERVAL_MS 250
#define DIGITAL_CODE_TIMEOUT_MS 60000
#define DIGITAL_PRESENTATION "digital-nfc"

typedef int (*digital_transmit_fn)(void *ctx, const uint8_t *capdu, size_t clen, uint8_t *rapdu,
                                   size_t *rlen);

struct digital_io {
	digital_transmit_fn transmit;
	void *ctx;                               /* passed to every callback */
	int64_t (*clock_ms)(void *ctx);          /* monotonic ms; NULL: CLOCK_MONOTONIC */
	int64_t (*wall_s)(void *ctx);            /* seconds since the epoch; NULL: time() */
	/* Sleep between polls; NULL: nanosleep. A negative return aborts the
	 * flow (the daemon cancelling): digital_read returns it, card_lost. */
	int (*sleep_ms)(void *ctx, unsigned ms);
	/* Called once, at the first 63 00: "code to enter on the phone". */
	void (*code_prompt)(void *ctx);
};

struct digital_params {
	const struct credential_anchors *anchors;
	const char *issuer_eku;      /* NULL: CREDENTIAL_EKU_DEFAULT */
	int64_t skew_s;              /* clock_skew (§13) */
	const char *terminal_id;     /* 1..64 bytes UTF-8 */
	unsigned poll_interval_ms;   /* 0: 250 */
	unsigned code_timeout_ms;    /* 0: 60000 */
	bool read_only;              /* kiosk: no AUTHENTICATE (§11, last lines) */
};

struct digital_result {
	enum credential_reason reason;
	/* Filled only when the presentation is accepted (reason ok): */
	bool holder_verified;        /* false: "read, not verified by the holder" */
	const char *presentation;    /* DIGITAL_PRESENTATION */
	struct credential cred;      /* identity, rights, beneficiaries, dk */
	uint8_t *credential_bytes;   /* owned: the credential as received */
	size_t credential_len;
	uint8_t *answer_bytes;       /* owned: the device answer as received */
	size_t answer_len;
	uint8_t nonce[CREDENTIAL_NONCE_LEN];
	char terminal_id[DIGITAL_TERMINAL_ID_MAX + 1];
	int64_t answer_ts;           /* the phone's clock in the answer */
	/* Diagnostics, always set (safe to log): */
	uint16_t last_sw;            /* last status word received, 0 if none */
	size_t last_size;            /* bytes of the last gathered answer */
	unsigned polls;              /* 63 00 answers received */
};

/* Run the whole flow on a card that is connected. Returns 0 when accepted
 * (reason ok); -EACCES with the reason when the phone or its data are
 * refused; the transport's negative errno (or -EIO for a short answer,
 * or the sleep callback's error) with card_lost; -EINVAL (bad params),
 * -ENOMEM or -EIO with internal_error. out is cleared first; release it
 * with digital_result_clear() whatever the return. */
int digital_read(const struct digital_io *io, const struct digital_params *p,
                 struct digital_result *out);

/* Wipe and free a result. NULL-safe. */
void digital_result_clear(struct digital_result *r);

/* §11 S.3-S.8 on a SELECT answer's data (exported for tests and fuzzing).
 * 0, or -EACCES with *reason. */
int digital_check_select(const uint8_t *buf, size_t len, enum credential_reason *reason);

#endif
