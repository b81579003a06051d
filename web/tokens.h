/* The bridge's tokens and pairings.
 *
 * A web application gets a token only after a person approves its pairing
 * at the terminal: the page asks (web_pair_start: an unguessable pairing id
 * for the page, a 6-digit code it shows), the person compares the code and
 * approves it with `vitalectl web pair CODE` over the control socket
 * (web_pair_approve), and the page collects its token once
 * (web_pair_collect, same Origin only). Only the SHA-256 of a token is
 * kept, in memory and in STATE_DIR/tokens.json (mode 0600); a token is
 * bound to the Origin that paired it and to its scope, and revocable.
 * Thread-safe (one mutex). */
#ifndef VITALED_WEB_TOKENS_H
#define VITALED_WEB_TOKENS_H

#include <jansson.h>
#include <stdint.h>

#include "web/policy.h"

#define WEB_MAX_TOKENS 64
#define WEB_MAX_PENDING 8
#define WEB_TOKEN_LEN 43    /* base64url of 32 random bytes */
#define WEB_PAIR_ID_LEN 32  /* hex of 16 random bytes */
#define WEB_ORIGIN_MAX 200
#define WEB_APP_MAX 64

struct web_store;

/* Load STATE_DIR/tokens.json (a missing file: no tokens). pair_timeout_s:
 * how long a pairing waits for its approval. 0 or -errno (err says why). */
int web_store_open(const char *state_dir, long pair_timeout_s, struct web_store **out, char *err,
                   size_t errlen);
void web_store_free(struct web_store *s);

/* The outcome of a token check. */
enum web_auth {
	WEB_AUTH_OK,
	WEB_AUTH_MISSING,   /* no "Authorization: Bearer ..." */
	WEB_AUTH_INVALID,   /* unknown, revoked or malformed */
	WEB_AUTH_ORIGIN,    /* a valid token presented by another Origin */
};

/* Check "Bearer TOKEN" (authorization may be NULL) presented by origin;
 * on OK *scope is the token's scope and its last use is noted. */
enum web_auth web_store_check(struct web_store *s, const char *authorization, const char *origin,
                              enum web_scope *scope);

/* A page on origin asks to pair as app for scope: 0 and pair_id (the
 * page's secret handle, WEB_PAIR_ID_LEN+1 bytes) and code ("123456", 7
 * bytes); -EBUSY when WEB_MAX_PENDING pairings wait; -EINVAL bad input. */
int web_pair_start(struct web_store *s, const char *origin, const char *app, enum web_scope scope,
                   char *pair_id, char *code);

/* The page polls: 0 pending (nothing set), 1 approved (token, WEB_TOKEN_LEN+1
 * bytes, and *scope set; the pairing is gone afterwards), -ENOENT no such
 * pairing for this origin (unknown, expired, denied or collected). */
int web_pair_collect(struct web_store *s, const char *pair_id, const char *origin, char *token,
                     enum web_scope *scope);

/* At the terminal: the pending pairings ([{code, origin, app, scope,
 * expires_in_s}]). */
json_t *web_pair_list(struct web_store *s);
/* Approve the pairing showing code, with scope (WEB_SCOPE_NONE: the scope
 * asked for). 0 and *info ({id, origin, app, scope}); -ENOENT no such code;
 * -EIO the token file could not be written (nothing approved). */
int web_pair_approve(struct web_store *s, const char *code, enum web_scope scope, json_t **info);
/* Refuse it: 0 or -ENOENT. */
int web_pair_deny(struct web_store *s, const char *code);

/* The tokens ([{id, origin, app, scope, created, last_used}]; never a hash). */
json_t *web_token_list(struct web_store *s);
/* Revoke token id (or every token with "all"): the count revoked, or -ENOENT / -EIO. */
int web_token_revoke(struct web_store *s, const char *id);
/* Counts for the status. */
void web_store_counts(struct web_store *s, int *tokens, int *pending);

#endif
