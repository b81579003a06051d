/* The open insurer interface, version 1 (../shared/INSURER.md, restated in
 * docs/insurer-api.md): what the terminal sends and how it reads what the
 * insurer answers. Pure and bounded: no I/O, no clock, no randomness of its
 * own (the backoff takes an injected random source), no logging.
 *
 *   insurer_batch_encode      POST /v1/batches body (deterministic CBOR)
 *   insurer_parse_results     its 200 answer, with every rule of "a 200
 *                             counts only if ..."
 *   insurer_parse_error       a 4xx body {"error": code, "reason": text}
 *   insurer_parse_returns     GET /v1/returns answer
 *   insurer_rights_request / insurer_parse_rights   POST /v1/rights
 *   insurer_parse_opposition  GET /v1/opposition answer
 *   insurer_classify          what an HTTP status means for a batch
 *   insurer_backoff_ms, insurer_retry_after_ms   when to try again
 *
 * Every parser takes the answer's bytes (at most INSURER_ANSWER_MAX: the
 * transport refuses more), clears its outputs first, and returns 0 or
 * -EBADMSG (not the documented JSON: for a batch, a transient failure),
 * -E2BIG (over a bound) or -ENOMEM. Strings copied out are NUL-terminated
 * and truncated to their field; a value longer than its field is refused.
 * Thread-safe on distinct objects.
 */
#ifndef VITALED_PROTOCOL_INSURER_H
#define VITALED_PROTOCOL_INSURER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define INSURER_VERSION 1
#define INSURER_BATCH_SHEETS_MAX 500
#define INSURER_BATCH_BYTES_MAX (4u << 20)
#define INSURER_ANSWER_MAX (1u << 20)
#define INSURER_CERTS_MAX 8
#define INSURER_ID_MAX 36
#define INSURER_CODE_MAX 32
#define INSURER_REASON_MAX 512
#define INSURER_CURSOR_MAX 256
#define INSURER_RETURNS_MAX 1000
#define INSURER_SERIAL_MAX 32
#define INSURER_OPPOSITION_MAX 10000
#define INSURER_RIGHTS_MAX 8
/* Bytes a batch body adds to its sheets and certificates, at most: the
 * map, its keys and scalar values, and a 5-byte head per sheet and
 * certificate (the queue uses it to fill a batch up to 4 MiB). */
#define INSURER_BATCH_OVERHEAD(nsheets, ncerts) \
	(512u + 5u * (size_t)(nsheets) + 5u * (size_t)(ncerts))

/* One POST /v1/batches body (INSURER.md "POST /v1/batches"). */
struct insurer_batch {
	const char *batch_id;        /* lower-case UUID v4 */
	const char *terminal_id;
	const char *practitioner_id;
	uint64_t created;            /* seconds since the epoch */
	const uint8_t *const *certs; /* DER: the signer's first, then intermediates */
	const size_t *cert_lens;
	size_t ncerts;               /* 1..INSURER_CERTS_MAX */
	const uint8_t *const *sheets; /* COSE_Sign1 exactly as stored */
	const size_t *sheet_lens;
	size_t nsheets;              /* 1..INSURER_BATCH_SHEETS_MAX */
};

/* Encode b as the deterministic CBOR map of INSURER.md (RFC 8949 §4.2.1).
 * *out is malloc'd (free it). -EINVAL for a missing field or a count out of
 * range, -E2BIG when the body would exceed INSURER_BATCH_BYTES_MAX. */
int insurer_batch_encode(const struct insurer_batch *b, uint8_t **out, size_t *len);

/* True for a lower-case UUID v4 in text form. */
bool insurer_uuid_valid(const char *s);
/* Format 16 random bytes as a lower-case UUID v4 (version and variant bits
 * set); out has at least 37 bytes. */
void insurer_uuid_format(const uint8_t rnd[16], char out[37]);

enum insurer_status {
	INSURER_ACCEPTED = 1, /* the insurer now holds it */
	INSURER_DUPLICATE,    /* it held it already: the same as accepted */
	INSURER_REJECTED,     /* final, with code and reason */
};

struct insurer_result {
	enum insurer_status status;
	char code[INSURER_CODE_MAX + 1];     /* rejected only */
	char reason[INSURER_REASON_MAX + 1]; /* rejected only; may be "" */
};

/* Read a 200 answer to the batch batch_id whose sheets had ids[0..n).
 * It counts only if it is a JSON object with "batch_id" equal to batch_id,
 * "received" a string, and "results" an array of exactly n objects, in the
 * batch's order, each with "status" accepted, duplicate or rejected, and
 * "id" equal to ids[i] (or null, for a rejected sheet whose code is
 * "malformed"); a rejected one has a non-empty text "code" and an optional
 * text "reason". Unknown keys are ignored; duplicate keys refused. Fills
 * out[0..n). Anything else: -EBADMSG (transient: the same batch again). */
int insurer_parse_results(const char *body, size_t len, const char *batch_id,
                          const char *const *ids, size_t n, struct insurer_result *out);

/* A 4xx body {"error": code, "reason": text}; -EBADMSG when it is not one
 * (the terminal acts on the status anyway). */
int insurer_parse_error(const char *body, size_t len, char code[INSURER_CODE_MAX + 1],
                        char reason[INSURER_REASON_MAX + 1]);

enum insurer_return_kind { INSURER_PAID = 1, INSURER_REFUSED };

struct insurer_return {
	char sheet_id[INSURER_ID_MAX + 1];
	enum insurer_return_kind kind;
	int64_t amount;                      /* paid: cents */
	char code[INSURER_CODE_MAX + 1];     /* refused */
	char reason[INSURER_REASON_MAX + 1]; /* refused */
	char date[11];                       /* YYYY-MM-DD */
};

struct insurer_returns {
	struct insurer_return *items; /* malloc'd; insurer_returns_free */
	size_t n;
	char next[INSURER_CURSOR_MAX + 1];
};

/* GET /v1/returns answer: {"returns": [...], "next": cursor}, at most max
 * items (<= INSURER_RETURNS_MAX). One bad item refuses the whole answer
 * (-EBADMSG): nothing is applied and the cursor does not move. */
int insurer_parse_returns(const char *body, size_t len, size_t max, struct insurer_returns *out);
void insurer_returns_free(struct insurer_returns *r);

struct insurer_right {
	char code[INSURER_CODE_MAX + 1];
	char from[11], to[11];
};

struct insurer_rights {
	char regime[3], caisse[4], centre[5];
	struct insurer_right rights[INSURER_RIGHTS_MAX];
	size_t nrights;
	bool has_amc;
	char amc_id[INSURER_CODE_MAX + 1];
	bool amc_tiers_payant;
	char amc_to[11];
	char checked[40];
};

/* The POST /v1/rights body; *out is malloc'd. -EINVAL for a NIR that is not
 * 15 characters, a date not YYYY-MM-DD, a rank outside 1..9. */
int insurer_rights_request(const char *nir, const char *birth_date, int birth_rank,
                           const char *care_date, char **out, size_t *len);
/* Its 200 answer. The NIR echoed must be nir. */
int insurer_parse_rights(const char *body, size_t len, const char *nir, struct insurer_rights *out);

struct insurer_opposition {
	char (*added)[INSURER_SERIAL_MAX + 1];   /* malloc'd; insurer_opposition_free */
	size_t nadded;
	char (*removed)[INSURER_SERIAL_MAX + 1];
	size_t nremoved;
	char next[INSURER_CURSOR_MAX + 1];
};
/* GET /v1/opposition answer: {"added": [...], "removed": [...], "next": c}. */
int insurer_parse_opposition(const char *body, size_t len, struct insurer_opposition *out);
void insurer_opposition_free(struct insurer_opposition *o);

/* What an answer to POST /v1/batches means (INSURER.md "Other answers"). */
enum insurer_action {
	INSURER_ACT_RESULTS = 1, /* 200: read the results (a bad body is transient) */
	INSURER_ACT_SPLIT,       /* 400, 409, 413: never resend these bytes; isolate */
	INSURER_ACT_REFUSED,     /* 401, 403: client certificate refused; wait the cap */
	INSURER_ACT_TRANSIENT,   /* 429, 5xx, anything unknown: the same bytes again */
};
enum insurer_action insurer_classify(long http_status);

/* A random source: 64 random bits each call (tests inject a fixed one). */
typedef uint64_t (*insurer_rand_fn)(void *arg);

/* Exponential backoff with full jitter (the "Full Jitter" of AWS's
 * "Exponential Backoff And Jitter", floored at the base): after the
 * failure number attempt (1 = the first), wait a uniformly random time in
 * [base, min(cap, base * 2^(attempt-1))] seconds, in milliseconds. base
 * and cap are clamped to at least 1 s, base to at most cap. */
uint64_t insurer_backoff_ms(unsigned attempt, unsigned base_s, unsigned cap_s, insurer_rand_fn rnd,
                            void *rnd_arg);

/* Retry-After (RFC 9110 §10.2.3): delay-seconds, or an HTTP date
 * (IMF-fixdate, RFC 9110 §5.6.7) read against now (seconds since the
 * epoch). Sets *ms to the wait (0 for a date in the past), at most one
 * day. -EINVAL when it is neither. */
int insurer_retry_after_ms(const char *value, time_t now, uint64_t *ms);

/* The wait before a batch goes again: the backoff, but never less than
 * the Retry-After (retry_after_ms 0: none). */
uint64_t insurer_next_wait_ms(uint64_t backoff_ms, uint64_t retry_after_ms);

#endif
