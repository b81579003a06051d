/* The uploader's state machine: what to do with each answer of the insurer
 * and when to try again. Plain structs, the time passed in (monotonic ms),
 * the randomness injected: no I/O, no loop, no JSON, so that
 * tests/unit/check_upload.c drives it through every answer of INSURER.md.
 * daemon/upload/upload.c runs it: it forms batches in the queue, sends them
 * through daemon/upload/http.c and applies each decision.
 *
 * States (GetStatus "uploader.state"):
 *   disabled  no insurer configured
 *   idle      nothing in flight; next attempt at the interval, or sooner
 *             when a sheet is queued (after the gathering delay), when
 *             asked (Upload), or when the network comes back
 *   sending   a round is running (a batch in flight, or waiting to resend
 *             the same bytes after a transient failure: reason says so)
 *   offline   the insurer could not be reached (reason); the same batch
 *             again after the backoff, or at once on a network event
 *   error     the insurer refused this terminal (401/403, client
 *             certificate refused in the handshake), its certificate did
 *             not verify, or the terminal's own set-up is unusable
 *             (reason); nothing is sent before the backoff cap, or an
 *             Upload request
 * Loop thread only (one instance per daemon; tests make their own).
 */
#ifndef VITALED_UPLOAD_UPLOADER_H
#define VITALED_UPLOAD_UPLOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "protocol/insurer.h"

#define UPLOADER_NEVER UINT64_MAX
#define UPLOADER_WHY_MAX 240

enum uploader_state {
	UPLOADER_DISABLED = 0,
	UPLOADER_IDLE,
	UPLOADER_SENDING,
	UPLOADER_OFFLINE,
	UPLOADER_ERROR,
};

/* What the transport saw of one exchange. */
enum uploader_net {
	UPLOADER_NET_OK = 0,     /* an HTTP answer: status, body, Retry-After */
	UPLOADER_NET_OFFLINE,    /* no connection: refused, unreachable, no route, name unknown */
	UPLOADER_NET_TRANSIENT,  /* timeout, reset, truncated answer, answer over 1 MiB */
	UPLOADER_NET_TLS_SERVER, /* the insurer's certificate did not verify (why) */
	UPLOADER_NET_TLS_CLIENT, /* our client certificate refused in the handshake: as 401/403 */
	UPLOADER_NET_LOCAL,      /* our own set-up is unusable (client cert/key, expired) */
};

struct uploader_answer {
	enum uploader_net net;
	long status;              /* HTTP status when net is OK */
	const char *body;         /* the answer's body (may be NULL) */
	size_t len;
	const char *retry_after;  /* the Retry-After header, or NULL */
	const char *why;          /* words for the log and status when net is not OK */
	time_t now_real;          /* wall clock, for a Retry-After date */
};

enum uploader_do {
	UPLOADER_DO_COMMIT = 1, /* the results are valid: commit them in one transaction */
	UPLOADER_DO_RETRY,      /* the same bytes and Idempotency-Key again after wait_ms */
	UPLOADER_DO_SPLIT,      /* never these bytes again: two new batches (new ids) of halves */
	UPLOADER_DO_REJECT,     /* a one-sheet batch refused as a whole: reject it (code, reason) */
	UPLOADER_DO_STOP,       /* give the batch back (sending → queued); next round after wait_ms */
};

struct uploader_decision {
	enum uploader_do what;
	uint64_t wait_ms;
	char code[INSURER_CODE_MAX + 1];     /* REJECT */
	char reason[INSURER_REASON_MAX + 1]; /* REJECT */
};

struct uploader_cfg {
	unsigned backoff_base_s, backoff_cap_s;
	uint64_t interval_ms;  /* upload_interval_s */
	uint64_t gather_ms;    /* after a sheet is queued, wait this long for more */
	insurer_rand_fn rnd;   /* NULL: no jitter (the backoff's ceiling) */
	void *rnd_arg;
};

enum uploader_trigger {
	UPLOADER_T_QUEUED = 1, /* a sheet was queued */
	UPLOADER_T_TIMER,      /* the planned attempt is due */
	UPLOADER_T_REQUEST,    /* the Upload method */
	UPLOADER_T_NETWORK,    /* an address or route appeared */
};

struct uploader {
	struct uploader_cfg c;
	enum uploader_state state;
	char why[UPLOADER_WHY_MAX];
	unsigned failures;     /* consecutive failed attempts (backoff exponent) */
	uint64_t next_ms;      /* planned attempt (monotonic); UPLOADER_NEVER: none */
	int64_t last_success;  /* wall ms of the last round that reached the insurer; 0 never */
};

/* enabled false: DISABLED for good. */
void uploader_init(struct uploader *u, const struct uploader_cfg *c, bool enabled);

/* A reason to upload at now: returns the delay before a round should start
 * (0: now), or UPLOADER_NEVER when this trigger changes nothing (a round is
 * running, or a backoff is running that only a request or, when offline, a
 * network event may cut short). Sets next_ms when it plans something. */
uint64_t uploader_trigger(struct uploader *u, uint64_t now, enum uploader_trigger t);

/* A round begins (batches follow until the queue has none to send). */
void uploader_round_begin(struct uploader *u, uint64_t now);
/* The round ended with nothing left to send: idle, next attempt at the
 * interval; reached says whether the insurer answered during it. */
void uploader_round_end(struct uploader *u, uint64_t now, int64_t wall_ms, bool reached);
/* The terminal cannot upload at all now (client certificate expired, no
 * signing certificate, ...): error(why), next attempt at the cap. */
void uploader_local_error(struct uploader *u, uint64_t now, const char *why);

/* The answer to a batch of n sheets with the ids of that batch (batch_id,
 * ids[0..n)): decide, update the state, and for DO_COMMIT fill results[0..n)
 * from the body. */
void uploader_answer(struct uploader *u, uint64_t now, const char *batch_id,
                     const char *const *ids, size_t n, const struct uploader_answer *a,
                     struct insurer_result *results, struct uploader_decision *d);

const char *uploader_state_name(enum uploader_state s);

#endif
