/* vitaled: the point-of-care terminal daemon.
 *
 * main() reads the arguments and the configuration, brings the modules up in
 * dependency order (state dir → API → readers → ...), tells systemd READY
 * once the state dir is writable and the API listens, runs the event loop,
 * and on SIGTERM/SIGINT takes the modules down in reverse order.
 *
 * vitaled never forks: it is a new-style daemon for systemd (Type=notify)
 * or any supervisor; --foreground is accepted and is what it always does.
 *
 * Exit codes: 0 clean stop, 1 run-time failure, 2 usage or configuration error.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "daemon/core/daemon.h"
#include "lib/log.h"
#include "lib/secmem.h"
#include "daemon/core/journal.h"
#include "daemon/core/notify.h"
#include "daemon/sheets/sheets.h"

extern const struct module vitaled_modules[];

/* OpenSSL's allocator wipes what it frees (lib/secmem.h), and its secure
 * heap: one mlocked, MADV_DONTDUMP arena (guard pages
 * around it) where OpenSSL keeps the BIGNUMs of private keys (BN_secure_new:
 * an EC scalar, RSA's d, p, q and CRT values) and a PEM key's decoded DER,
 * so that a file signer's key stays out of core dumps like the PINs
 * (issue 11, 8). Set up before any module loads a key: blocks allocated
 * before it live in the ordinary heap. A P-256 or RSA-4096 key and the
 * temporaries of a few concurrent signatures use a few KiB; 128 KiB leaves
 * room. Power of two, smallest block 32 bytes. */
#define SECURE_HEAP_BYTES (128u * 1024u)
#define SECURE_HEAP_MIN 32

static bool crypto_hooks_set;

static void
secure_heap_init(void)
{
	if (!crypto_hooks_set)
		log_warn("OpenSSL's allocator could not be replaced: blocks it frees are not wiped "
		         "(key bytes may stay in the heap)");
	int r = CRYPTO_secure_malloc_init(SECURE_HEAP_BYTES, SECURE_HEAP_MIN);
	if (r == 1)
		log_debug("OpenSSL secure heap: %u KiB, locked and left out of core dumps",
		          SECURE_HEAP_BYTES / 1024u);
	else if (r == 2)
		log_warn("OpenSSL secure heap: %u KiB, but it could not be locked or marked "
		         "MADV_DONTDUMP (LimitMEMLOCK?): a key file's private key may reach swap "
		         "or a core dump", SECURE_HEAP_BYTES / 1024u);
	else
		log_warn("OpenSSL secure heap unavailable: a key file's private key lives in the "
		         "ordinary heap and may reach a core dump");
}

static struct {
	const char *section, *key;
	char *value;
} overrides[8];
static size_t noverrides;

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: vitaled [options]\n"
	        "  -c, --config FILE      configuration file (default %s if it exists)\n"
	        "  -s, --socket PATH      local API socket ([daemon] socket)\n"
	        "  -d, --state-dir DIR    queue, keys and terminal id ([daemon] state_dir)\n"
	        "  -l, --log-level LEVEL  err, warning, notice, info or debug\n"
	        "  -n, --nfc CONNSTRING   add an NFC device (libnfc connstring)\n"
	        "  -f, --foreground       run in the foreground (always the case)\n"
	        "      --check-config     validate, print the effective configuration, exit\n"
	        "      --accept-new-queue start on a queue that its high-water mark says was lost\n"
	        "                         or rolled back (logged with what was lost)\n"
	        "  -V, --version          print the version and exit\n"
	        "  -h, --help             this help\n"
	        "Exit codes: 0 stopped cleanly, 1 run-time failure, 2 usage or configuration error.\n",
	        CONFIG_DEFAULT_PATH);
}

static int
add_override(const char *section, const char *key, const char *value)
{
	if (noverrides >= sizeof(overrides) / sizeof(overrides[0]))
		return -ENOSPC;
	overrides[noverrides].section = section;
	overrides[noverrides].key = key;
	overrides[noverrides].value = strdup(value);
	noverrides++;
	return 0;
}

/* Load the file (explicit path, or the default path when it exists, or
 * built-in defaults) and apply the command-line overrides. */
static int
load_config(const char *path, bool explicit_path, struct config **out, char *err, size_t errlen)
{
	const char *p = path;
	if (!explicit_path && access(p, F_OK) != 0)
		p = NULL;
	int r = config_load(p, out, err, errlen);
	if (r < 0)
		return r;
	for (size_t i = 0; i < noverrides; i++) {
		char e[300];
		bool again = false;
		for (size_t j = 0; j < i; j++)
			again |= !strcmp(overrides[j].section, overrides[i].section) &&
			         !strcmp(overrides[j].key, overrides[i].key);
		r = (again ? config_append : config_set)(*out, overrides[i].section, overrides[i].key,
		                                         overrides[i].value, e, sizeof(e));
		if (r < 0) {
			snprintf(err, errlen, "command line: %s", e);
			config_free(*out);
			*out = NULL;
			return r;
		}
	}
	if ((r = config_validate(*out, err, errlen)) < 0) {
		config_free(*out);
		*out = NULL;
	}
	return r;
}

static const char *g_config_path = CONFIG_DEFAULT_PATH;
static bool g_config_explicit;

/* struct daemon's loader, for the core's reload path */
static int
reload_loader(struct daemon *d, struct config **out, char *err, size_t errlen)
{
	(void)d;
	return load_config(g_config_path, g_config_explicit, out, err, errlen);
}

static void
signal_cb(struct loop *l, int fd, short revents, void *arg)
{
	struct daemon *d = arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			if (!d->stopping) {
				log_ev(LOG_LVL_NOTICE, LOG_ID_STOPPING, NULL, NULL, "received %s; stopping",
				       si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
				d->stopping = true;
				d->state = "stopping";
				notify_stopping();
				if (d->api)
					vl_server_shutdown(d->api);
				loop_stop(l);
			}
			break;
		case SIGHUP:
			log_notice("received SIGHUP; reloading %s",
			           g_config_explicit || access(g_config_path, F_OK) == 0 ? g_config_path
			                                                                 : "(built-in defaults)");
			daemon_reload(d, NULL, NULL);
			break;
		default:
			break;
		}
	}
}

/* "<N>" prefixes for a supervisor, time and level on a terminal; and when
 * stderr is journald's own stream, structured fields through sd_journal_sendv */
static void
log_setup(void)
{
	log_set_journald(getenv("JOURNAL_STREAM") != NULL || !isatty(STDERR_FILENO));
	journal_setup();
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "nfc", required_argument, NULL, 'n' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "accept-new-queue", no_argument, NULL, 'A' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool check_only = false;
	int c;
	struct daemon d = { .listen_fd = -1, .state = "starting", .modules = vitaled_modules,
	                   .load_config = reload_loader };
	char err[600];
	int ret = 1;
	int sfd = -1;
	size_t ninit = 0;

	/* First of all: OpenSSL takes allocation functions only before its
	 * first allocation (see secure_heap_init for the rest). */
	crypto_hooks_set = CRYPTO_set_mem_functions(secmem_crypto_malloc, secmem_crypto_realloc,
	                                            secmem_crypto_free) == 1;
	log_setup();

	while ((c = getopt_long(argc, argv, "c:s:d:l:n:fVh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			g_config_path = optarg;
			g_config_explicit = true;
			break;
		case 's': add_override("daemon", "socket", optarg); break;
		case 'd': add_override("daemon", "state_dir", optarg); break;
		case 'l':
			if (log_level_parse(optarg) < 0) {
				fprintf(stderr, "vitaled: --log-level: '%s' is not one of err, warning, notice, info, debug\n", optarg);
				return 2;
			}
			add_override("daemon", "log_level", optarg);
			break;
		case 'n': add_override("nfc", "device", optarg); break;
		case 'f': break;
		case 'C': check_only = true; break;
		case 'A': sheets_accept_new_queue(true); break;
		case 'V': printf("vitaled %s\n", VITALED_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vitaled: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	if (load_config(g_config_path, g_config_explicit, &d.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "vitaled: %s\n", err);
		return 2;
	}
	if (check_only) {
		config_print(d.cfg, stdout);
		printf("# configuration OK\n");
		config_free(d.cfg);
		return 0;
	}
	log_set_level((enum log_level)d.cfg->log_level);
	secure_heap_init();

	/* signals arrive through signalfd; SIGPIPE never (we use MSG_NOSIGNAL,
	 * but libraries may not) */
	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	/* blocked before any thread starts, so workers never take them */
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		log_err("signalfd: %s", strerror(errno));
		goto out;
	}
	if (loop_new(&d.loop) < 0) {
		log_err("cannot create the event loop");
		goto out;
	}
	loop_add_fd(d.loop, sfd, POLLIN, signal_cb, &d);
	d.start_ms = loop_now_ms();
	if (sd_listen_fds(1) == 1)
		d.listen_fd = SD_LISTEN_FDS_START;

	log_notice("vitaled %s starting (mode %s, config %s)", VITALED_VERSION, d.cfg->mode,
	           d.cfg->path ? d.cfg->path : "built-in defaults");
	notify_status("starting");
	for (const struct module *m = vitaled_modules; m->name; m++) {
		notify_status("starting: %s", m->name);
		int r = m->init(&d);
		if (r < 0) {
			log_err("start-up failed in %s: %s", m->name, strerror(-r));
			goto out;
		}
		ninit++;
		if (d.stopping)
			goto out;
	}
	notify_init(d.loop);
	d.state = "running";
	log_ev(LOG_LVL_NOTICE, LOG_ID_READY, NULL, NULL, "ready: terminal %s, API on %s", d.terminal_id,
	       d.listen_fd >= 0 ? "the socket from systemd" : d.cfg->socket_path);
	notify_ready("running");
	/* what start-up freed (configuration, module set-up) goes back to the
	 * system rather than staying in the heap for the daemon's life */
	malloc_trim(0);

	int r = loop_run(d.loop);
	if (r < 0) {
		log_err("event loop failed: %s", strerror(-r));
		goto out;
	}
	ret = 0;
out:
	d.stopping = true;
	d.state = "stopping";
	notify_stopping();
	if (d.loop)
		notify_fini(d.loop);
	while (ninit > 0) {
		ninit--;
		vitaled_modules[ninit].fini(&d);
	}
	status_clear_providers();
	if (sfd >= 0) {
		if (d.loop)
			loop_del_fd(d.loop, sfd);
		close(sfd);
	}
	loop_free(d.loop);
	config_free(d.cfg);
	for (size_t i = 0; i < noverrides; i++)
		free(overrides[i].value);
	if (ret == 0)
		log_notice("stopped");
	return ret;
}
