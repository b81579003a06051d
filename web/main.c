/* vitaled-web: the local web bridge. Web applications on this PC reach the
 * terminal through it: HTTP on loopback only, calls as JSON, events as
 * Server-Sent Events, each request checked (Host, Origin, paired token,
 * scope: web/http.c). It is an ordinary varlink client of vitaled
 * (client/libvitaled-client) and holds no privilege of its own.
 *
 * Sockets: by socket activation (packaging/systemd/vitaled-web.socket:
 * TCP on 127.0.0.1 and [::1], and the control socket, an AF_UNIX stream
 * socket), or bound here: [web] port on 127.0.0.1 and ::1, and [web]
 * control_socket. A TCP socket handed over that is not on a loopback
 * address is refused: the bridge never listens on the network. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "client/vitaled-client.h"
#include "conf/config.h"
#include "lib/log.h"
#include "web/bridge.h"

#define MAX_FDS 4

static volatile sig_atomic_t stop_sig;

static void
on_signal(int sig)
{
	stop_sig = sig;
}

static bool
loopback_fd(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
	return false;
}

static unsigned
fd_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static int
bind_tcp(int family, unsigned port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	int r;
	if (family == AF_INET) {
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	} else {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
		a.sin6_addr = in6addr_loopback;
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	}
	if (r < 0 || listen(fd, 64) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int
bind_unix(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(path);
	mode_t old = umask(0117); /* 0660: root and the group only */
	int r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	umask(old);
	if (r < 0 || listen(fd, 8) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* The sockets: handed over by systemd, or bound here. 0 or -1 (logged). */
static int
open_sockets(const struct config *cfg, unsigned *port, int *http, int *nhttp, int *ctl)
{
	int n = sd_listen_fds(1);
	*nhttp = 0;
	*ctl = -1;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		if (sd_is_socket(fd, AF_UNIX, SOCK_STREAM, 1) > 0) {
			*ctl = fd;
		} else if (loopback_fd(fd) && *nhttp < MAX_FDS) {
			http[(*nhttp)++] = fd;
			*port = fd_port(fd);
		} else {
			log_err("web: socket %d handed over is not a loopback TCP socket: refused", fd);
			return -1;
		}
	}
	if (*nhttp == 0) {
		*port = (unsigned)cfg->web_port;
		int fd4 = bind_tcp(AF_INET, *port), fd6 = bind_tcp(AF_INET6, *port);
		if (fd4 < 0) {
			log_err("web: cannot listen on 127.0.0.1:%u: %s", *port, strerror(-fd4));
			return -1;
		}
		http[(*nhttp)++] = fd4;
		if (fd6 >= 0)
			http[(*nhttp)++] = fd6;
		else
			log_warn("web: not listening on [::1]:%u: %s", *port, strerror(-fd6));
	}
	if (*ctl < 0 && (*ctl = bind_unix(cfg->web_control_socket)) < 0) {
		log_err("web: cannot listen on %s: %s", cfg->web_control_socket, strerror(-*ctl));
		return -1;
	}
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: vitaled-web [--config FILE] [--socket DAEMON_SOCKET] [--port N]\n"
	           "                   [--state-dir DIR] [--control-socket PATH] [--log-level LEVEL]\n"
	           "The local web bridge of vitaled (docs/web-bridge.md, vitaled-web(8)).\n");
}

static int
parse_args(int argc, char **argv, struct config *cfg, const char **sock, char *err, size_t errlen)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },  { "socket", required_argument, NULL, 's' },
		{ "port", required_argument, NULL, 'p' },    { "state-dir", required_argument, NULL, 'd' },
		{ "control-socket", required_argument, NULL, 'C' },
		{ "log-level", required_argument, NULL, 'l' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "c:s:p:d:C:l:h", opts, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case 'c': break; /* read first, in main */
		case 's': *sock = optarg; break;
		case 'p': r = config_set(cfg, "web", "port", optarg, err, errlen); break;
		case 'd': r = config_set(cfg, "web", "state_dir", optarg, err, errlen); break;
		case 'C': r = config_set(cfg, "web", "control_socket", optarg, err, errlen); break;
		case 'l': r = config_set(cfg, "daemon", "log_level", optarg, err, errlen); break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	return optind < argc ? -EINVAL : 0;
}

static int
run(struct bridge *b)
{
	int http[MAX_FDS], nhttp = 0, ctl = -1;
	unsigned port = 0;
	if (open_sockets(b->cfg, &port, http, &nhttp, &ctl) < 0)
		return 1;
	b->port = port;
	if (web_ctl_start(b, ctl) < 0 || web_http_start(b, http, nhttp) < 0)
		return 1;
	log_notice("web: serving http://127.0.0.1:%u/ (%d socket(s)), %zu allowed origin(s), daemon %s",
	           port, nhttp, b->cfg->web_allowed_origins.n, b->daemon_socket);
	sd_notify(0, "READY=1");
	while (!stop_sig)
		pause();
	sd_notify(0, "STOPPING=1");
	atomic_store(&b->stopping, true);
	web_http_stop();
	web_ctl_stop();
	return 0;
}

int
main(int argc, char **argv)
{
	const char *conf_path = NULL, *sock = NULL;
	char err[512];
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "-c"))
			conf_path = argv[i + 1];
	if (!conf_path && access(VITALED_SYSCONFDIR "/vitaled/vitaled.conf", F_OK) == 0)
		conf_path = VITALED_SYSCONFDIR "/vitaled/vitaled.conf";
	struct config *cfg = NULL;
	if (config_load(conf_path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "vitaled-web: %s\n", err);
		return 2;
	}
	if (parse_args(argc, argv, cfg, &sock, err, sizeof(err)) < 0) {
		fprintf(stderr, "vitaled-web: %s\n", err[0] ? err : "bad arguments");
		config_free(cfg);
		return 2;
	}
	log_set_level((enum log_level)cfg->log_level);
	log_set_journald(getenv("JOURNAL_STREAM") != NULL);
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	struct bridge b = { .cfg = cfg };
	b.daemon_socket = vtc_socket_path(sock ? sock : cfg->socket_path);
	if (web_store_open(cfg->web_state_dir, cfg->web_pair_timeout_s, &b.store, err, sizeof(err)) < 0) {
		fprintf(stderr, "vitaled-web: %s\n", err);
		config_free(cfg);
		return 1;
	}
	int rc = run(&b);
	web_store_free(b.store);
	config_free(cfg);
	return rc;
}
