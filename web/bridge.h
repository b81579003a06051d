/* The bridge's shared state and its parts: the HTTP side (http.c, on
 * libmicrohttpd), the control socket for `vitalectl web` (ctl.c) and the
 * refusal counters both show. main.c builds it. */
#ifndef VITALED_WEB_BRIDGE_H
#define VITALED_WEB_BRIDGE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "conf/config.h"
#include "web/tokens.h"

/* Why a request was refused: one counter each (GET /v1/status). */
enum web_refusal {
	WEB_REF_HOST,       /* Host not a loopback name: DNS rebinding */
	WEB_REF_ORIGIN,     /* Origin not allowed (requests and preflights) */
	WEB_REF_TOKEN_MISSING,
	WEB_REF_TOKEN_INVALID, /* unknown or revoked */
	WEB_REF_TOKEN_ORIGIN,  /* a token presented by another Origin */
	WEB_REF_SCOPE,      /* the token's scope is too small for the method */
	WEB_REF_METHOD,     /* a method the bridge never forwards */
	WEB_REF_BAD_REQUEST,
	WEB_REF_PAIRING,    /* unknown pairing, too many pairings */
	WEB_REF_NOT_FOUND,
	WEB_REF_N
};

struct bridge {
	const struct config *cfg;
	const char *daemon_socket;
	unsigned port;
	struct web_store *store;
	atomic_ulong refused[WEB_REF_N];
	atomic_ulong requests;
	atomic_ulong forwarded;
	atomic_ulong pna_preflights; /* answered Access-Control-Allow-Private-Network */
	atomic_bool stopping;
};

const char *web_refusal_name(enum web_refusal r);
/* {refused_total, refused: {name: n}, requests, forwarded, tokens, pending_pairings} */
json_t *bridge_status(struct bridge *b);

/* http.c: serve HTTP on each listening socket fd (already bound and
 * listening, loopback only). 0 or -1 (logged). */
int web_http_start(struct bridge *b, const int *fds, int nfds);
void web_http_stop(void);

/* ctl.c: serve the control socket (a listening AF_UNIX fd) on a thread. */
int web_ctl_start(struct bridge *b, int fd);
void web_ctl_stop(void);
/* One control request (a varlink message without its NUL) -> the reply
 * (a new string, no NUL). Used by the thread and the fuzz target. */
char *web_ctl_handle(struct bridge *b, const char *msg, size_t len);

#endif
