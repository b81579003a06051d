/* libcurl multi on the event loop; see http.h. */
#include "daemon/upload/http.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#ifndef OPENSSL_NO_ENGINE
/* the ENGINE API is deprecated in OpenSSL 3 but is what libcurl 7.88 and
 * libp11 0.4 (Debian 12) have for a key in a token */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#include <openssl/engine.h>
#pragma GCC diagnostic pop
#endif
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "daemon/core/diag.h"
#include "lib/clock.h"
#include "lib/log.h"

struct xfer {
	struct http *h;
	CURL *e;
	struct curl_slist *hdrs;
	char *buf;
	size_t len, cap;
	int too_big;
	char retry_after[128];
	time_t date; /* the answer's Date header, 0 when none */
	char errbuf[CURL_ERROR_SIZE];
	char host[256];
	uint64_t t0;
	http_done_fn done;
	void *arg;
	struct xfer *next;
};

struct http {
	struct loop *loop;
	CURLM *multi;
	uint64_t timer;
	char *ca, *cert, *key;
	bool engine_key;          /* key is a pkcs11: URI for the pkcs11 engine */
	long connect_ms, total_ms, low_speed_s;
	size_t max_answer;
	struct xfer *xfers;
};

static void check_done(struct http *h);

static void
on_fd(struct loop *l, int fd, short revents, void *arg)
{
	struct http *h = arg;
	int running = 0, flags = 0;
	(void)l;
	if (revents & POLLIN)
		flags |= CURL_CSELECT_IN;
	if (revents & POLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (revents & (POLLERR | POLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(h->multi, fd, flags, &running);
	check_done(h);
}

static int
sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct http *h = userp;
	short ev = 0;
	(void)e;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		loop_del_fd(h->loop, s);
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= POLLIN;
	if (what & CURL_POLL_OUT)
		ev |= POLLOUT;
	if (loop_mod_fd(h->loop, s, ev) == -ENOENT && loop_add_fd(h->loop, s, ev, on_fd, h) < 0)
		return -1;
	return 0;
}

static void
on_timer(struct loop *l, void *arg)
{
	struct http *h = arg;
	int running = 0;
	(void)l;
	h->timer = 0;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(h);
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct http *h = userp;
	(void)m;
	if (h->timer)
		loop_timer_cancel(h->loop, h->timer);
	h->timer = 0;
	/* never call curl back from inside its own callback: a 0 ms timer */
	if (timeout_ms >= 0 && !(h->timer = loop_timer_add(h->loop, (uint64_t)timeout_ms, on_timer, h)))
		return -1;
	return 0;
}

#ifndef OPENSSL_NO_ENGINE
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
/* The pkcs11 engine, configured once (module, PIN) and put in OpenSSL's
 * engine list, where libcurl's ENGINE_by_id("pkcs11") finds this very
 * instance (a dynamic engine loaded by id alone would not be listed and
 * would come without our module path). Returns 0 or -ENOENT/-EINVAL with
 * why (never the PIN). */
static bool engine_ready;

int
http_engine_key_setup(const char *module, const char *key_pin, const char *pin_file, char *why,
                      size_t wl)
{
	bool done = engine_ready; /* once per process */
	char pin[256] = "";
	int r = -EINVAL;
	if (done)
		return 0;
	ENGINE_load_builtin_engines();
	ENGINE *e = ENGINE_by_id("pkcs11");
	if (!e) {
		snprintf(why, wl, "OpenSSL has no pkcs11 engine (install libengine-pkcs11-openssl)");
		return -ENOENT;
	}
	if (pin_file && pin_file[0]) {
		FILE *f = fopen(pin_file, "re");
		if (!f || !fgets(pin, sizeof(pin), f)) {
			snprintf(why, wl, "cannot read [insurer] client_key_pin_file");
			if (f)
				fclose(f);
			goto out;
		}
		fclose(f);
		pin[strcspn(pin, "\r\n")] = '\0';
	} else if (key_pin && key_pin[0]) {
		snprintf(pin, sizeof(pin), "%s", key_pin);
	}
	if (module && module[0] &&
	    !ENGINE_ctrl_cmd_string(e, "MODULE_PATH", module, 0)) {
		snprintf(why, wl, "the pkcs11 engine refused the module %.100s", module);
		goto out;
	}
	if (pin[0] && !ENGINE_ctrl_cmd_string(e, "PIN", pin, 0)) {
		snprintf(why, wl, "the pkcs11 engine refused the PIN setting");
		goto out;
	}
	if (!ENGINE_init(e)) {
		snprintf(why, wl, "the pkcs11 engine cannot start (module %.100s)",
		         module && module[0] ? module : "p11-kit-proxy");
		goto out;
	}
	ENGINE_add(e); /* listed: libcurl's ENGINE_by_id gets this instance */
	engine_ready = true; /* the functional reference stays for the process */
	r = 0;
out:
	OPENSSL_cleanse(pin, sizeof(pin));
	ENGINE_free(e); /* the structural reference of ENGINE_by_id */
	return r;
}
#pragma GCC diagnostic pop
#else
static bool engine_ready;

int
http_engine_key_setup(const char *module, const char *key_pin, const char *pin_file, char *why,
                      size_t wl)
{
	snprintf(why, wl, "this OpenSSL has no engine support: [insurer] client_key must be a file");
	return -ENOTSUP;
}
#endif

int
http_new(struct loop *l, const struct http_opts *o, struct http **out)
{
	static int global_done;
	struct http *h;

	*out = NULL;
	if (!global_done) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			return -ENOMEM;
		global_done = 1;
	}
	if (!(h = calloc(1, sizeof(*h))))
		return -ENOMEM;
	h->loop = l;
	h->ca = strdup(o->ca_file ? o->ca_file : "");
	h->cert = strdup(o->client_cert ? o->client_cert : "");
	h->key = strdup(o->client_key ? o->client_key : "");
	if (o->client_key && !strncmp(o->client_key, "pkcs11:", 7)) {
		if (!engine_ready) {
			log_err("upload: [insurer] client_key is a PKCS#11 URI but the pkcs11 engine is "
			        "not set up");
			http_free(h);
			return -ENOKEY;
		}
		h->engine_key = true;
	}
	h->connect_ms = o->connect_timeout_ms;
	h->total_ms = o->timeout_ms;
	h->low_speed_s = o->low_speed_time_s;
	h->max_answer = o->max_answer;
	h->multi = curl_multi_init();
	if (!h->ca || !h->cert || !h->key || !h->multi) {
		http_free(h);
		return -ENOMEM;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 4L);
	*out = h;
	return 0;
}

static void
xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (x->e) {
		curl_multi_remove_handle(x->h->multi, x->e);
		curl_easy_cleanup(x->e);
	}
	curl_slist_free_all(x->hdrs);
	free(x->buf);
	free(x);
}

static void
unlink_xfer(struct http *h, struct xfer *x)
{
	for (struct xfer **pp = &h->xfers; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			return;
		}
	}
}

void
http_free(struct http *h)
{
	if (!h)
		return;
	while (h->xfers) {
		struct xfer *x = h->xfers;
		h->xfers = x->next;
		xfer_free(x); /* removing the handle closes its sockets through sock_cb */
	}
	if (h->timer)
		loop_timer_cancel(h->loop, h->timer);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	free(h->ca);
	free(h->cert);
	free(h->key);
	free(h);
}

static size_t
write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (x->len + n > x->h->max_answer) {
		x->too_big = 1;
		return 0; /* CURLE_WRITE_ERROR: the answer is refused */
	}
	if (x->len + n + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;
		while (cap < x->len + n + 1)
			cap *= 2;
		char *b = realloc(x->buf, cap);
		if (!b)
			return 0;
		x->buf = b;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, p, n);
	x->len += n;
	x->buf[x->len] = '\0';
	return n;
}

static size_t
header_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	static const char name[] = "retry-after:";
	if (n > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0) {
		size_t v = sizeof(name) - 1, e = n;
		while (v < n && (p[v] == ' ' || p[v] == '\t'))
			v++;
		while (e > v && (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' '))
			e--;
		snprintf(x->retry_after, sizeof(x->retry_after), "%.*s", (int)(e - v), p + v);
	}
	static const char dname[] = "date:";
	if (n > sizeof(dname) - 1 && n < 200 && strncasecmp(p, dname, sizeof(dname) - 1) == 0) {
		char v[200];
		snprintf(v, sizeof(v), "%.*s", (int)(n - (sizeof(dname) - 1)), p + sizeof(dname) - 1);
		time_t t = curl_getdate(v, NULL);
		x->date = t > 0 ? t : 0;
	}
	return n;
}

static void
host_of(const char *url, char *out, size_t outlen)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t n = strcspn(p, "/?#");
	snprintf(out, outlen, "%.*s", (int)n, p);
}

static int
setup_easy(struct http *h, struct xfer *x, const char *method, const char *url,
           const uint8_t *body, size_t len)
{
	CURL *e = x->e;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_CAINFO, h->ca);
	curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(e, CURLOPT_SSLCERT, h->cert);
	curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
	if (h->engine_key) {
		curl_easy_setopt(e, CURLOPT_SSLENGINE, "pkcs11");
		curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "ENG");
	} else {
		curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	}
	curl_easy_setopt(e, CURLOPT_SSLKEY, h->key);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, h->total_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, h->low_speed_s);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_answer);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
	if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else if (strcmp(method, "GET") != 0) {
		return -EINVAL;
	}
	return 0;
}

int
http_request(struct http *h, const char *method, const char *url, const char *const *headers,
             const uint8_t *body, size_t len, http_done_fn done, void *arg)
{
	struct xfer *x = calloc(1, sizeof(*x));
	int r = -ENOMEM;

	if (!x)
		return -ENOMEM;
	x->h = h;
	x->done = done;
	x->arg = arg;
	x->t0 = clock_mono_us();
	host_of(url, x->host, sizeof(x->host));
	if (!(x->e = curl_easy_init()))
		goto fail;
	/* no "Expect: 100-continue" round trip before a big batch */
	if (!(x->hdrs = curl_slist_append(NULL, "Expect:")))
		goto fail;
	for (size_t i = 0; headers && headers[i]; i++) {
		struct curl_slist *s = curl_slist_append(x->hdrs, headers[i]);
		if (!s)
			goto fail;
		x->hdrs = s;
	}
	if ((r = setup_easy(h, x, method, url, body, len)) < 0)
		goto fail;
	if (curl_multi_add_handle(h->multi, x->e) != CURLM_OK) {
		r = -ENOMEM;
		goto fail;
	}
	x->next = h->xfers;
	h->xfers = x;
	return 0;
fail:
	if (x->e) {
		curl_easy_cleanup(x->e);
		x->e = NULL;
	}
	xfer_free(x);
	return r;
}

static bool
has(const char *s, const char *needle)
{
	return s && strcasestr(s, needle) != NULL;
}

/* The TLS alert of a client certificate refused in the handshake
 * (INSURER.md: counts as 401/403), or NULL. */
static const char *
client_alert(const char *errbuf)
{
	static const char *const alerts[][2] = {
		{ "certificate required", "the insurer asked for a client certificate" },
		{ "unknown ca", "unknown CA: not issued by a CA the insurer trusts" },
		{ "bad certificate", "bad certificate" },
		{ "certificate expired", "expired" },
		{ "certificate revoked", "revoked" },
		{ "certificate unknown", "certificate unknown" },
	};
	if (!has(errbuf, "alert"))
		return NULL;
	for (size_t i = 0; i < sizeof(alerts) / sizeof(alerts[0]); i++)
		if (has(errbuf, alerts[i][0]))
			return alerts[i][1];
	return NULL;
}

static enum uploader_net
server_cert_words(long vr, const char *errbuf, const char *host, char *why, size_t whylen)
{
	switch (vr) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
		snprintf(why, whylen, "the insurer's server certificate has expired");
		break;
	case X509_V_ERR_CERT_NOT_YET_VALID:
		snprintf(why, whylen, "the insurer's server certificate is not valid yet "
		                      "(is this terminal's clock right?)");
		break;
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
		snprintf(why, whylen, "unknown CA: the insurer's server certificate is not signed by "
		                      "the CA in [insurer] ca_file");
		break;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		snprintf(why, whylen, "name mismatch: the insurer's server certificate is not for %s",
		         host);
		break;
	default:
		if (has(errbuf, "subject name") || has(errbuf, "does not match") ||
		    has(errbuf, "no alternative"))
			snprintf(why, whylen,
			         "name mismatch: the insurer's server certificate is not for %s", host);
		else
			snprintf(why, whylen, "the insurer's server certificate was refused (%.160s)",
			         errbuf && errbuf[0] ? errbuf : "verification failed");
	}
	return UPLOADER_NET_TLS_SERVER;
}

enum uploader_net
http_classify(int code, long vr, const char *errbuf, int connected, const char *host, char *why,
              size_t whylen)
{
	const char *alert = client_alert(errbuf);
	const char *eb = errbuf && errbuf[0] ? errbuf : curl_easy_strerror((CURLcode)code);

	if (alert) {
		snprintf(why, whylen, "the insurer refused this terminal's client certificate (%s)",
		         alert);
		return UPLOADER_NET_TLS_CLIENT;
	}
	switch (code) {
	case CURLE_OK:
		why[0] = '\0';
		return UPLOADER_NET_OK;
	case CURLE_PEER_FAILED_VERIFICATION:
		return server_cert_words(vr, errbuf, host, why, whylen);
	case CURLE_SSL_CACERT_BADFILE:
		snprintf(why, whylen, "cannot read the insurer's CA ([insurer] ca_file)");
		return UPLOADER_NET_LOCAL;
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
		snprintf(why, whylen, "cannot use this terminal's client certificate or key "
		                      "([insurer] client_cert, client_key)");
		return UPLOADER_NET_LOCAL;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		snprintf(why, whylen, "cannot reach the insurer at %s (%.120s)", host, eb);
		return UPLOADER_NET_OFFLINE;
	case CURLE_OPERATION_TIMEDOUT:
		if (!connected) {
			snprintf(why, whylen, "cannot reach the insurer at %s (no connection in time)",
			         host);
			return UPLOADER_NET_OFFLINE;
		}
		snprintf(why, whylen, "the insurer did not answer in time");
		return UPLOADER_NET_TRANSIENT;
	default:
		snprintf(why, whylen, "the exchange with the insurer failed (%.160s)", eb);
		return UPLOADER_NET_TRANSIENT;
	}
}

static void
finish(struct http *h, struct xfer *x, CURLcode code)
{
	struct http_result r = { 0 };
	char why[UPLOADER_WHY_MAX];
	long vr = 0;
	curl_off_t connect_us = 0;
	char ra[sizeof(x->retry_after)];
	char *buf = x->buf;

	curl_easy_getinfo(x->e, CURLINFO_RESPONSE_CODE, &r.status);
	curl_easy_getinfo(x->e, CURLINFO_SSL_VERIFYRESULT, &vr);
	curl_easy_getinfo(x->e, CURLINFO_CONNECT_TIME_T, &connect_us);
	r.net = http_classify(code, vr, x->errbuf, connect_us > 0, x->host, why, sizeof(why));
	if (code == CURLE_WRITE_ERROR && x->too_big) {
		snprintf(why, sizeof(why), "the insurer's answer is over %zu bytes: refused",
		         h->max_answer);
		r.net = UPLOADER_NET_TRANSIENT;
	}
	if (code == CURLE_FILESIZE_EXCEEDED) {
		snprintf(why, sizeof(why), "the insurer's answer is over %zu bytes: refused",
		         h->max_answer);
		r.net = UPLOADER_NET_TRANSIENT;
	}
	memcpy(ra, x->retry_after, sizeof(ra));
	r.body = buf ? buf : "";
	r.len = x->len;
	r.retry_after = ra[0] ? ra : NULL;
	r.why = why;
	r.elapsed_us = clock_mono_us() - x->t0;
	if (r.net == UPLOADER_NET_OK && x->date > 0)
		diag_note_peer_clock((int64_t)x->date); /* for `vitalectl doctor`'s clock check */
	unlink_xfer(h, x);
	http_done_fn done = x->done;
	void *arg = x->arg;
	/* the handle goes before the callback, which may start the next request */
	x->buf = NULL;
	xfer_free(x);
	done(&r, arg);
	free(buf);
}

static void
check_done(struct http *h)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct xfer *x = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (x)
			finish(h, x, m->data.result);
	}
}
