/* HTTPS exchanges with the insurer: libcurl's multi interface driven by the
 * event loop (curl docs/MULTI-EV.md): curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION → loop_add_fd/loop_mod_fd/loop_del_fd) and when
 * to call it back (CURLMOPT_TIMERFUNCTION → loop_timer_add), and we hand it
 * readiness with curl_multi_socket_action. No thread: a transfer costs the
 * loop only the moments its socket is ready, connections are kept and
 * reused between batches, and a shutdown simply removes the handles.
 * (A worker with blocking easy handles would cost a thread per transfer and
 * a stop that must wait for a 60 s timeout; see docs/insurer-api.md.)
 *
 * TLS: 1.2 or newer; the server is verified against ca_file ALONE
 * (CURLOPT_CAINFO, CURLOPT_CAPATH NULL: never the system store), host name
 * or IP checked; the client certificate and key are PEM files. Bounded:
 * connect, whole-exchange and low-speed timeouts, and an answer over
 * max_answer bytes is a transport failure. Only https, no redirects, no
 * proxy for loopback.
 *
 * Loop thread only. Callbacks run on the loop thread, exactly once per
 * request, never after http_free.
 */
#ifndef VITALED_UPLOAD_HTTP_H
#define VITALED_UPLOAD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core/loop.h"
#include "daemon/upload/uploader.h"

struct http;

struct http_opts {
	const char *ca_file, *client_cert, *client_key; /* copied */
	long connect_timeout_ms;  /* 10 s */
	long timeout_ms;          /* the whole exchange: 60 s */
	long low_speed_time_s;    /* below 1 byte/s this long: 30 s */
	size_t max_answer;        /* 1 MiB */
};

/* A client_key "pkcs11:..." stays in its token: OpenSSL's pkcs11 engine
 * (libp11) signs the handshake with it, set up once per process by this
 * call before http_new: module is the PKCS#11 module (NULL/"": the
 * engine's default, p11-kit-proxy); pin, or the first line of pin_file,
 * the token's PIN (NULL/""; never logged, wiped here). Returns 0, or a
 * negative errno with why in words. */
int http_engine_key_setup(const char *module, const char *pin, const char *pin_file, char *why,
                          size_t whylen);

struct http_result {
	enum uploader_net net;   /* OK: status and body are the insurer's answer */
	long status;
	const char *body;        /* NUL-terminated; valid during the callback */
	size_t len;
	const char *retry_after; /* the Retry-After header, or NULL */
	const char *why;         /* words for a failure (never a secret) */
	uint64_t elapsed_us;
};

typedef void (*http_done_fn)(const struct http_result *r, void *arg);

int http_new(struct loop *l, const struct http_opts *o, struct http **out);
/* Abort every transfer (no callback runs) and free. NULL is fine. */
void http_free(struct http *h);

/* Start a request: method "GET" or "POST"; body (POST) must stay valid
 * until done runs (the uploader keeps a batch's bytes for its retries);
 * headers is NULL-terminated. Returns 0 or a negative errno (done not
 * called). */
int http_request(struct http *h, const char *method, const char *url, const char *const *headers,
                 const uint8_t *body, size_t len, http_done_fn done, void *arg);

/* What a failed transfer means, in words a clinic's support person
 * understands (exported for tests): curl's result, the X509 verification
 * result, curl's error buffer, whether a connection was made, the host. */
enum uploader_net http_classify(int curl_code, long verify_result, const char *errbuf,
                                int connected, const char *host, char *why, size_t whylen);

#endif
