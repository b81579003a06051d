/* libvitaled-client; see vitaled-client.h. A tiny varlink client: write a
 * JSON object and a NUL, read until a NUL, with poll() bounding every wait.
 * Replies larger than VTC_MAX_REPLY are refused (a daemon bug or a wrong
 * socket must not make the client eat all memory). */
#include "client/vitaled-client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define VTC_MAX_REPLY (16u * 1024u * 1024u)

struct vtc {
	int fd;
	int timeout_ms;
	char *buf;
	size_t len, cap;
	bool continues;
};

const char *
vtc_socket_path(const char *path)
{
	if (path && path[0])
		return path;
	const char *e = getenv("VITALED_SOCKET");
	return e && e[0] ? e : VTC_DEFAULT_SOCKET;
}

int
vtc_connect(const char *path, int timeout_ms, struct vtc **out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *p = vtc_socket_path(path);
	*out = NULL;
	if (strlen(p) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, p, strlen(p) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct vtc *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return -ENOMEM;
	}
	c->fd = fd;
	c->timeout_ms = timeout_ms;
	*out = c;
	return 0;
}

void
vtc_close(struct vtc *c)
{
	if (!c)
		return;
	close(c->fd);
	free(c->buf);
	free(c);
}

static long
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int
wait_fd(struct vtc *c, short ev, long deadline)
{
	struct pollfd p = { c->fd, ev, 0 };
	for (;;) {
		int t = -1;
		if (c->timeout_ms > 0) {
			long left = deadline - now_ms();
			if (left <= 0)
				return -ETIMEDOUT;
			t = (int)left;
		}
		int r = poll(&p, 1, t);
		if (r > 0)
			return 0;
		if (r == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int
send_all(struct vtc *c, const char *s, size_t n)
{
	long deadline = now_ms() + c->timeout_ms;
	while (n) {
		int r = wait_fd(c, POLLOUT, deadline);
		if (r < 0)
			return r;
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

int
vtc_next(struct vtc *c, json_t **reply, char **error, bool *continues)
{
	long deadline = now_ms() + c->timeout_ms;
	if (reply)
		*reply = NULL;
	if (error)
		*error = NULL;
	for (;;) {
		char *nul = c->len ? memchr(c->buf, '\0', c->len) : NULL;
		if (nul) {
			size_t mlen = (size_t)(nul - c->buf);
			json_error_t je;
			json_t *msg = json_loadb(c->buf, mlen, 0, &je);
			memmove(c->buf, nul + 1, c->len - mlen - 1);
			c->len -= mlen + 1;
			if (!json_is_object(msg)) {
				json_decref(msg);
				return -EBADMSG;
			}
			json_t *params = json_object_get(msg, "parameters");
			json_t *err = json_object_get(msg, "error");
			c->continues = json_is_true(json_object_get(msg, "continues"));
			if (continues)
				*continues = c->continues;
			if (reply)
				*reply = params ? json_incref(params) : json_object();
			int r = 0;
			if (json_is_string(err)) {
				r = VTC_ERROR_REPLY;
				c->continues = false;
				if (continues)
					*continues = false;
				if (error)
					*error = strdup(json_string_value(err));
			}
			json_decref(msg);
			return r;
		}
		if (c->len == c->cap) {
			if (c->cap >= VTC_MAX_REPLY)
				return -EMSGSIZE;
			size_t nc = c->cap ? c->cap * 2 : 8192;
			char *nb = realloc(c->buf, nc);
			if (!nb)
				return -ENOMEM;
			c->buf = nb;
			c->cap = nc;
		}
		int r = wait_fd(c, POLLIN, deadline);
		if (r < 0)
			return r;
		ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n == 0)
			return -EPIPE;
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -errno;
		}
		c->len += (size_t)n;
	}
}

int
vtc_call(struct vtc *c, const char *method, json_t *params, unsigned flags, json_t **reply,
         char **error)
{
	if (reply)
		*reply = NULL;
	if (error)
		*error = NULL;
	json_t *msg = json_pack("{s:s,s:o}", "method", method, "parameters",
	                        params ? params : json_object());
	if (!msg)
		return -EINVAL;
	if (flags & VTC_MORE)
		json_object_set_new(msg, "more", json_true());
	if (flags & VTC_ONEWAY)
		json_object_set_new(msg, "oneway", json_true());
	char *s = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!s)
		return -ENOMEM;
	size_t slen = strlen(s);
	int r = send_all(c, s, slen + 1);
	explicit_bzero(s, slen); /* the call may carry a PIN (SubmitPin) */
	free(s);
	if (r < 0 || (flags & VTC_ONEWAY))
		return r;
	return vtc_next(c, reply, error, NULL);
}

bool
vtc_continues(const struct vtc *c)
{
	return c->continues;
}
