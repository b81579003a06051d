/* libvitaled-client: talk to vitaled over its local varlink socket.
 *
 * A connection carries one call at a time (varlink's rule). Calls block
 * up to the connection's timeout. Parameters and replies are jansson
 * objects. Not thread-safe per connection; use one connection per thread.
 *
 *   struct vtc *c;
 *   if (vtc_connect(NULL, 5000, &c) == 0) {
 *       json_t *reply; char *err;
 *       if (vtc_call(c, "io.vitaled.Terminal.GetStatus", NULL, 0, &reply, &err) == 0) ...
 *       vtc_close(c);
 *   }
 */
#ifndef VITALED_CLIENT_H
#define VITALED_CLIENT_H

#include <jansson.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VTC_DEFAULT_SOCKET "/run/vitaled/vitaled.sock"
#define VTC_MORE 0x1   /* ask for a stream of replies ("more": true) */
#define VTC_ONEWAY 0x2 /* no reply wanted */

/* The return codes of vtc_call/vtc_next besides 0 and negative errnos. */
#define VTC_ERROR_REPLY 1 /* the daemon answered with a varlink error */

struct vtc;

/* The socket to use: path if not NULL, else $VITALED_SOCKET, else the default. */
const char *vtc_socket_path(const char *path);

/* Connect. timeout_ms bounds every later read and write (0: wait forever).
 * Returns 0, or -errno (-ENOENT/-ECONNREFUSED: no daemon; -EACCES: socket
 * permissions). */
int vtc_connect(const char *path, int timeout_ms, struct vtc **out);
void vtc_close(struct vtc *c);

/* Call method with params (stolen; NULL means {}). On 0, *reply holds the
 * reply's parameters (caller decrefs). On VTC_ERROR_REPLY, *error holds the
 * error name (caller frees) and *reply its parameters. Negative errno on
 * transport failure (-ETIMEDOUT, -EPIPE, -EBADMSG for a malformed reply).
 * With VTC_MORE, this returns the first reply; read the rest with vtc_next
 * while *continues is true. reply, error and continues may be NULL. */
int vtc_call(struct vtc *c, const char *method, json_t *params, unsigned flags, json_t **reply,
             char **error);
int vtc_next(struct vtc *c, json_t **reply, char **error, bool *continues);
/* Whether the last reply said "continues": true. */
bool vtc_continues(const struct vtc *c);

#ifdef __cplusplus
}
#endif
#endif
