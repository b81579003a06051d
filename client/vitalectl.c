/* vitalectl: the human and script face of vitaled.
 *
 * Every command talks to the daemon over its varlink socket through
 * libvitaled-client. Output is a readable summary by default and stable
 * JSON with --json. Commands live in one table; a new command is a
 * function and a row.
 *
 * Exit codes (stable, for scripts):
 *   0  success
 *   1  the daemon answered with an error (name printed on stderr)
 *   2  usage error
 *   3  the daemon is unreachable (no socket, refused, permission denied)
 *   4  the connection failed during the call (timeout, closed, bad reply)
 *
 * `watch` streams until interrupted: SIGINT/SIGTERM end it with 0; the
 * daemon ending the stream with an error (ShuttingDown) gives 1; a lost
 * connection gives 4.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include "client/vitalectl.h"

static void
fmt_duration(long long s, char *buf, size_t len)
{
	if (s >= 86400)
		snprintf(buf, len, "%lldd%02lldh%02lldm", s / 86400, (s % 86400) / 3600, (s % 3600) / 60);
	else if (s >= 3600)
		snprintf(buf, len, "%lldh%02lldm%02llds", s / 3600, (s % 3600) / 60, s % 60);
	else if (s >= 60)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else
		snprintf(buf, len, "%llds", s);
}

/* ------------------------------------------------------------------ */

static int
cmd_status(struct ctl *ctl, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: vitalectl status [--json]\n");
		return EXIT_USAGE;
	}
	json_t *st = NULL;
	int r = ctl_call_human(ctl, IFACE ".GetStatus", NULL, &st);
	if (r)
		return r < 0 ? 0 : r;
	char up[64];
	fmt_duration((long long)json_integer_value(json_object_get(st, "uptime_s")), up, sizeof(up));
	printf("vitaled %s: %s, up %s, mode %s, terminal %s\n", jstr(st, "version", "?"),
	       jstr(st, "state", "?"), up, jstr(st, "mode", "?"), jstr(st, "terminal_id", "?"));
	json_t *readers = json_object_get(st, "readers");
	if (json_array_size(readers) == 0) {
		printf("readers:  none\n");
	} else {
		size_t i;
		json_t *rd;
		printf("readers:\n");
		json_array_foreach(readers, i, rd) {
			printf("  %-32s %-6s %-10s %s\n", jstr(rd, "name", "?"), jstr(rd, "driver", "?"),
			       jstr(rd, "state", "?"), jstr(rd, "card", ""));
		}
	}
	size_t di;
	json_t *dv;
	json_array_foreach(json_object_get(st, "drivers"), di, dv) {
		char label[32];
		snprintf(label, sizeof(label), "%s:", jstr(dv, "name", "?"));
		if (strcmp(jstr(dv, "state", "?"), "up") != 0)
			printf("%-9s %s%s%s%s\n", label, jstr(dv, "state", "?"),
			       jstr(dv, "reason", NULL) ? " (" : "", jstr(dv, "reason", ""),
			       jstr(dv, "reason", NULL) ? ")" : "");
	}
	json_t *q = json_object_get(st, "queue");
	printf("queue:    %s, %lld sheets (%lld queued)", jstr(q, "state", "?"),
	       (long long)json_integer_value(json_object_get(q, "total")),
	       (long long)json_integer_value(json_object_get(q, "queued")));
	if (jstr(q, "next_due", NULL))
		printf(", next due %s", jstr(q, "next_due", ""));
	if (jstr(q, "integrity", NULL) && strcmp(jstr(q, "integrity", ""), "ok") != 0)
		printf(", integrity %s%s%s%s", jstr(q, "integrity", ""),
		       jstr(q, "integrity_error", NULL) ? " (" : "", jstr(q, "integrity_error", ""),
		       jstr(q, "integrity_error", NULL) ? ")" : "");
	printf("\n");
	json_t *u = json_object_get(st, "uploader");
	printf("uploader: %s", jstr(u, "state", "?"));
	if (jstr(u, "reason", NULL))
		printf(" (%s)", jstr(u, "reason", ""));
	if (json_is_integer(json_object_get(u, "waiting")))
		printf(", %lld waiting, %lld rejected",
		       (long long)json_integer_value(json_object_get(u, "waiting")),
		       (long long)json_integer_value(json_object_get(u, "rejected")));
	if (jstr(u, "last_success", NULL))
		printf(", last success %s", jstr(u, "last_success", ""));
	printf("\n");
	size_t ci;
	json_t *cp;
	json_array_foreach(json_object_get(st, "card_pins"), ci, cp) {
		if (ci == 0)
			printf("card PINs:\n");
		const char *state = jstr(cp, "state", "?");
		printf("  %-32s %-6s %s", jstr(cp, "target", "?"), jstr(cp, "profile", "?"), state);
		json_t *tl = json_object_get(cp, "tries_left");
		if (!strcmp(state, "verified") && jstr(cp, "verified_at", NULL))
			printf(" since %s", jstr(cp, "verified_at", ""));
		else if (json_is_integer(tl) && strcmp(state, "blocked"))
			printf(", %lld tries left", (long long)json_integer_value(tl));
		if (json_is_true(json_object_get(cp, "pinpad")))
			printf(", keypad reader");
		printf("\n");
	}
	printf("access:   %s\n", jstr(st, "access", "?"));
	json_decref(st);
	return 0;
}

static int
cmd_info(struct ctl *ctl, int argc, char **argv)
{
	json_t *r = NULL;
	int rc = ctl_call(ctl, "org.varlink.service.GetInfo", NULL, &r);
	if (rc)
		return rc;
	if (ctl->json) {
		print_json(r);
	} else {
		printf("%s %s (%s)\n", jstr(r, "product", "?"), jstr(r, "version", "?"),
		       jstr(r, "vendor", "?"));
		size_t i;
		json_t *v;
		json_array_foreach(json_object_get(r, "interfaces"), i, v)
			printf("  %s\n", json_string_value(v));
	}
	json_decref(r);
	return 0;
}

static int
cmd_reload(struct ctl *ctl, int argc, char **argv)
{
	json_t *r = NULL;
	int rc = ctl_call(ctl, IFACE ".Reload", NULL, &r);
	if (rc)
		return rc;
	if (ctl->json) {
		print_json(r);
	} else {
		size_t i;
		json_t *v;
		json_array_foreach(json_object_get(r, "reloaded"), i, v)
			printf("applied:        %s\n", json_string_value(v));
		json_array_foreach(json_object_get(r, "restart_needed"), i, v)
			printf("needs restart:  %s\n", json_string_value(v));
		if (!json_array_size(json_object_get(r, "reloaded")) &&
		    !json_array_size(json_object_get(r, "restart_needed")))
			printf("configuration unchanged\n");
	}
	json_decref(r);
	return 0;
}

/* ------------------------------------------------------------------ */
/* PIN entry: never from argv (visible in ps and shell history); read
 * without echo from the terminal, or from standard input when it is not a
 * terminal, or from --pin-fd. The buffer is locked when possible and wiped
 * on every path; jansson's copies are wiped by its free hook below, and the
 * client library wipes the serialized call. */

#define PIN_BUF 64

static volatile sig_atomic_t pin_interrupted;

static void
pin_sig(int sig)
{
	pin_interrupted = sig;
}

static void
wiping_free(void *p)
{
	if (p) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

/* Read one line from fd into buf (no stdio: nothing buffered elsewhere).
 * Returns its length, -1 on read error/interrupt, -2 if too long. */
static int
read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r < 0) {
			if (errno == EINTR && !pin_interrupted)
				continue;
			return -1;
		}
		if (r == 0 || ch == '\n')
			break;
		if (n + 1 >= cap) {
			/* swallow the rest of the line so it does not reach the shell */
			while (read(fd, &ch, 1) == 1 && ch != '\n')
				;
			ch = 0;
			return -2;
		}
		buf[n++] = ch;
		ch = 0;
	}
	while (n > 0 && (buf[n - 1] == '\r'))
		buf[--n] = '\0';
	buf[n] = '\0';
	return (int)n;
}

/* prompt: what is asked, shown on a terminal as "<prompt>: ". */
static int
read_pin(int fd, const char *prompt, char *buf, size_t cap)
{
	if (fd >= 0)
		return read_line(fd, buf, cap);
	if (!isatty(STDIN_FILENO))
		return read_line(STDIN_FILENO, buf, cap);
	struct termios old, quiet;
	if (tcgetattr(STDIN_FILENO, &old) < 0)
		return -1;
	quiet = old;
	quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHOE | ECHOK);
	quiet.c_lflag |= ECHONL;
	struct sigaction sa = { .sa_handler = pin_sig }, o_int, o_term, o_hup, o_quit, o_tstp;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &o_int); /* no SA_RESTART: read() returns EINTR */
	sigaction(SIGTERM, &sa, &o_term);
	sigaction(SIGHUP, &sa, &o_hup);
	sigaction(SIGQUIT, &sa, &o_quit);
	sigaction(SIGTSTP, &sa, &o_tstp); /* no suspending with echo off */
	/* echo off before the prompt shows: what is typed once the prompt is
	 * there is never echoed (input typed before it is discarded) */
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	fprintf(stderr, "%s: ", prompt);
	fflush(stderr);
	int n = read_line(STDIN_FILENO, buf, cap);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	sigaction(SIGINT, &o_int, NULL);
	sigaction(SIGTERM, &o_term, NULL);
	sigaction(SIGHUP, &o_hup, NULL);
	sigaction(SIGQUIT, &o_quit, NULL);
	sigaction(SIGTSTP, &o_tstp, NULL);
	if (pin_interrupted) {
		fprintf(stderr, "\n");
		return -1;
	}
	return n;
}

static void
print_pin_error(const char *err, json_t *r, const char *target)
{
	json_t *tl = json_object_get(r, "tries_left");
	if (!strcmp(err, IFACE ".PinIncorrect")) {
		if (json_is_integer(tl))
			fprintf(stderr, "vitalectl: wrong PIN for %s: %lld tries left\n", target,
			        (long long)json_integer_value(tl));
		else
			fprintf(stderr, "vitalectl: wrong PIN for %s\n", target);
	} else if (!strcmp(err, IFACE ".PinBlocked")) {
		fprintf(stderr, "vitalectl: the PIN for %s is blocked; it needs the unblock code\n", target);
	} else if (!strcmp(err, IFACE ".PinMalformed")) {
		fprintf(stderr, "vitalectl: a PIN for %s is %lld to %lld digits\n", target,
		        (long long)json_integer_value(json_object_get(r, "min_len")),
		        (long long)json_integer_value(json_object_get(r, "max_len")));
	} else if (!strcmp(err, IFACE ".PinNotExpected")) {
		fprintf(stderr, "vitalectl: no PIN expected for %s: %s\n", target,
		        jstr(r, "reason", "?"));
	} else if (!strcmp(err, IFACE ".RateLimited")) {
		fprintf(stderr, "vitalectl: %s; try again in %lld s\n", jstr(r, "reason", "too many attempts"),
		        (long long)json_integer_value(json_object_get(r, "retry_after_s")));
	} else if (!strcmp(err, IFACE ".PinEntryCancelled")) {
		fprintf(stderr, "vitalectl: PIN entry on the keypad was cancelled or timed out\n");
	} else {
		char *p = json_dumps(r, JSON_COMPACT);
		fprintf(stderr, "vitalectl: SubmitPin: %s %s\n", err, p ? p : "");
		free(p);
	}
}

/* The --pin-fd argument: an open file descriptor, or -1 after saying why. */
static int
parse_pin_fd(const char *arg)
{
	char *end;
	long v = strtol(arg, &end, 10);
	if (!*arg || *end || v < 0 || v > 1024 || fcntl((int)v, F_GETFD) < 0) {
		fprintf(stderr, "vitalectl: --pin-fd: '%s' is not an open file descriptor\n", arg);
		return -1;
	}
	return (int)v;
}

/* vitalectl pin [--target T] [--pin-fd N] [--pinpad] */
static int
cmd_pin(struct ctl *ctl, int argc, char **argv)
{
	const char *target = "practitioner";
	int fd = -1;
	bool pinpad = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--target") && i + 1 < argc) {
			target = argv[++i];
		} else if (!strcmp(argv[i], "--pin-fd") && i + 1 < argc) {
			if ((fd = parse_pin_fd(argv[++i])) < 0)
				return EXIT_USAGE;
		} else if (!strcmp(argv[i], "--pinpad")) {
			pinpad = true;
		} else {
			fprintf(stderr, "usage: vitalectl pin [--target NAME] [--pin-fd N] [--pinpad]\n"
			                "The PIN is read without echo from the terminal, or from standard\n"
			                "input (or fd N) when it is not a terminal; never from the command line.\n");
			return EXIT_USAGE;
		}
	}
	json_set_alloc_funcs(malloc, wiping_free);
	/* a keypad waits for a person: give it time */
	if (ctl->timeout_ms > 0 && ctl->timeout_ms < 120000)
		ctl->timeout_ms = 120000;
	int rc = ctl_connect(ctl);
	if (rc)
		return rc;
	if (!pinpad && fd < 0 && !strcmp(target, "practitioner")) {
		json_t *sg = NULL;
		char *err = NULL;
		if (vtc_call(ctl->conn, IFACE ".GetSigner", NULL, 0, &sg, &err) == 0)
			pinpad = json_is_true(json_object_get(sg, "pinpad"));
		json_decref(sg);
		free(err);
	} else if (!pinpad && fd < 0 && !strncmp(target, "card:", 5)) {
		/* a card in a keypad reader: GetStatus's card_pins says so */
		json_t *st = NULL;
		char *err = NULL;
		if (vtc_call(ctl->conn, IFACE ".GetStatus", NULL, 0, &st, &err) == 0) {
			size_t i;
			json_t *cp;
			json_array_foreach(json_object_get(st, "card_pins"), i, cp) {
				if (!strcmp(jstr(cp, "target", ""), target))
					pinpad = json_is_true(json_object_get(cp, "pinpad"));
			}
		}
		json_decref(st);
		free(err);
	}
	json_t *params = json_pack("{s:s}", "target", target);
	if (!params)
		return EXIT_TRANSPORT;
	if (pinpad) {
		fprintf(stderr, "Type the PIN for %s on the reader's keypad.\n", target);
	} else {
		static char pin[PIN_BUF];
		bool locked = mlock(pin, sizeof(pin)) == 0;
		char prompt[200];
		snprintf(prompt, sizeof(prompt), "PIN for %s", target);
		int n = read_pin(fd, prompt, pin, sizeof(pin));
		if (n < 0 || n == 0) {
			explicit_bzero(pin, sizeof(pin));
			if (locked)
				munlock(pin, sizeof(pin));
			json_decref(params);
			fprintf(stderr, "vitalectl: %s\n", n == -2 ? "PIN too long" :
			                                   n == 0  ? "no PIN given" :
			                                             "PIN entry interrupted");
			return n == -1 ? EXIT_TRANSPORT : EXIT_USAGE;
		}
		json_object_set_new(params, "pin", json_stringn(pin, (size_t)n));
		explicit_bzero(pin, sizeof(pin));
		if (locked)
			munlock(pin, sizeof(pin));
	}
	json_t *r = NULL;
	char *err = NULL;
	int x = vtc_call(ctl->conn, IFACE ".SubmitPin", params, 0, &r, &err); /* params freed (wiped) */
	if (x == VTC_ERROR_REPLY) {
		ctl_note_error(err, r);
		print_pin_error(err, r, target);
		free(err);
		json_decref(r);
		return EXIT_REPLY_ERROR;
	}
	if (x < 0) {
		fprintf(stderr, "vitalectl: SubmitPin: %s\n",
		        x == -EPIPE ? "connection closed by vitaled" : strerror(-x));
		return EXIT_TRANSPORT;
	}
	if (ctl->json)
		print_json(r);
	else
		printf("%s: logged in\n", target);
	json_decref(r);
	return 0;
}

/* vitalectl unblock --target T [--pin-fd N] [--keep-pin]: RESET RETRY
 * COUNTER with the card's unblock code, read like a PIN (never from argv),
 * then the new PIN (asked twice on a terminal) unless --keep-pin. */
static int
cmd_unblock(struct ctl *ctl, int argc, char **argv)
{
	const char *target = NULL;
	int fd = -1;
	bool keep = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--target") && i + 1 < argc) {
			target = argv[++i];
		} else if (!strcmp(argv[i], "--pin-fd") && i + 1 < argc) {
			if ((fd = parse_pin_fd(argv[++i])) < 0)
				return EXIT_USAGE;
		} else if (!strcmp(argv[i], "--keep-pin")) {
			keep = true;
		} else {
			target = NULL;
			break;
		}
	}
	if (!target) {
		fprintf(stderr, "usage: vitalectl unblock --target card:READER [--pin-fd N] [--keep-pin]\n"
		                "The unblock code, then the new PIN, are read like a PIN: without echo\n"
		                "from the terminal, or a line each from standard input or fd N.\n");
		return EXIT_USAGE;
	}
	json_set_alloc_funcs(malloc, wiping_free);
	int rc = ctl_connect(ctl);
	if (rc)
		return rc;
	static char code[PIN_BUF], pin[PIN_BUF], again[PIN_BUF];
	bool locked = mlock(code, sizeof(code)) == 0 && mlock(pin, sizeof(pin)) == 0 &&
	              mlock(again, sizeof(again)) == 0;
	char prompt[200];
	json_t *params = NULL;
	int ret = EXIT_USAGE;
	snprintf(prompt, sizeof(prompt), "Unblock code for %s", target);
	int n = read_pin(fd, prompt, code, sizeof(code));
	int m = 0;
	if (n > 0 && !keep) {
		snprintf(prompt, sizeof(prompt), "New PIN for %s", target);
		m = read_pin(fd, prompt, pin, sizeof(pin));
		if (m > 0 && fd < 0 && isatty(STDIN_FILENO)) {
			snprintf(prompt, sizeof(prompt), "New PIN again");
			int k = read_pin(fd, prompt, again, sizeof(again));
			if (k != m || memcmp(pin, again, (size_t)m) != 0) {
				fprintf(stderr, "vitalectl: the two new PINs differ\n");
				goto out;
			}
		}
	}
	if (n <= 0 || (!keep && m <= 0)) {
		int bad = n <= 0 ? n : m;
		fprintf(stderr, "vitalectl: %s\n", bad == -2 ? "too long" : bad == 0 ? "nothing given" :
		                                                               "entry interrupted");
		ret = bad == -1 ? EXIT_TRANSPORT : EXIT_USAGE;
		goto out;
	}
	params = json_pack("{s:s,s:s%}", "target", target, "puk", code, (size_t)n);
	if (params && !keep)
		json_object_set_new(params, "new_pin", json_stringn(pin, (size_t)m));
	explicit_bzero(code, sizeof(code));
	explicit_bzero(pin, sizeof(pin));
	explicit_bzero(again, sizeof(again));
	if (!params) {
		ret = EXIT_TRANSPORT;
		goto out;
	}
	json_t *r = NULL;
	char *err = NULL;
	int x = vtc_call(ctl->conn, IFACE ".UnblockPin", params, 0, &r, &err); /* params freed (wiped) */
	params = NULL;
	if (x == VTC_ERROR_REPLY) {
		ctl_note_error(err, r);
		if (!strcmp(err, IFACE ".PinIncorrect")) {
			json_t *tl = json_object_get(r, "tries_left");
			if (json_is_integer(tl))
				fprintf(stderr, "vitalectl: wrong unblock code for %s: %lld tries left\n", target,
				        (long long)json_integer_value(tl));
			else
				fprintf(stderr, "vitalectl: wrong unblock code for %s\n", target);
		} else if (!strcmp(err, IFACE ".PinBlocked")) {
			fprintf(stderr, "vitalectl: the unblock code of %s is blocked too\n", target);
		} else {
			print_pin_error(err, r, target);
		}
		free(err);
		json_decref(r);
		ret = EXIT_REPLY_ERROR;
		goto out;
	}
	if (x < 0) {
		fprintf(stderr, "vitalectl: UnblockPin: %s\n",
		        x == -EPIPE ? "connection closed by vitaled" : strerror(-x));
		ret = EXIT_TRANSPORT;
		goto out;
	}
	if (ctl->json) {
		print_json(r);
	} else {
		json_t *tl = json_object_get(r, "tries_left");
		if (json_is_integer(tl))
			printf("%s: unblocked, %lld tries left\n", target, (long long)json_integer_value(tl));
		else
			printf("%s: unblocked\n", target);
	}
	json_decref(r);
	ret = 0;
out:
	json_decref(params);
	explicit_bzero(code, sizeof(code));
	explicit_bzero(pin, sizeof(pin));
	explicit_bzero(again, sizeof(again));
	if (locked) {
		munlock(code, sizeof(code));
		munlock(pin, sizeof(pin));
		munlock(again, sizeof(again));
	}
	return ret;
}

/* vitalectl signer [test [ROUNDS]] */
static int
cmd_signer(struct ctl *ctl, int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "test")) {
		json_t *params = json_object();
		if (argc == 3) {
			char *end;
			long n = strtol(argv[2], &end, 10);
			if (*end || n < 1 || n > 10000) {
				fprintf(stderr, "vitalectl: rounds must be 1..10000\n");
				json_decref(params);
				return EXIT_USAGE;
			}
			json_object_set_new(params, "rounds", json_integer(n));
		} else if (argc > 3) {
			json_decref(params);
			fprintf(stderr, "usage: vitalectl signer [test [ROUNDS]]\n");
			return EXIT_USAGE;
		}
		json_t *r = NULL;
		int rc = ctl_call(ctl, IFACE ".SignerSelfTest", params, &r);
		if (rc)
			return rc;
		if (ctl->json)
			print_json(r);
		else
			printf("%s self-test: %s, %lld signatures, %.1f per second\n", jstr(r, "key_alg", "?"),
			       json_is_true(json_object_get(r, "verified")) ? "verified" : "NOT VERIFIED",
			       (long long)json_integer_value(json_object_get(r, "rounds")),
			       json_real_value(json_object_get(r, "signatures_per_s")));
		int bad = !json_is_true(json_object_get(r, "verified"));
		json_decref(r);
		return bad ? EXIT_REPLY_ERROR : 0;
	}
	if (argc != 1) {
		fprintf(stderr, "usage: vitalectl signer [test [ROUNDS]]\n");
		return EXIT_USAGE;
	}
	json_t *r = NULL;
	int rc = ctl_call(ctl, IFACE ".GetSigner", NULL, &r);
	if (rc)
		return rc;
	if (ctl->json) {
		print_json(r);
	} else {
		printf("signer:   %s, %s%s\n", jstr(r, "backend", "?"), jstr(r, "state", "?"),
		       json_is_true(json_object_get(r, "logged_in")) ? " (logged in)" : "");
		if (jstr(r, "who", NULL))
			printf("who:      %s\n", jstr(r, "who", ""));
		if (jstr(r, "practitioner_id", NULL) || jstr(r, "structure_id", NULL))
			printf("ids:      practitioner %s, structure %s\n", jstr(r, "practitioner_id", "-"),
			       jstr(r, "structure_id", "-"));
		if (jstr(r, "token", NULL))
			printf("token:    %s%s\n", jstr(r, "token", ""),
			       json_is_true(json_object_get(r, "pinpad")) ? " (PIN on the reader's keypad)" : "");
		if (jstr(r, "key_alg", NULL))
			printf("key:      %s\n", jstr(r, "key_alg", ""));
		json_t *tl = json_object_get(r, "tries_left");
		if (json_is_integer(tl))
			printf("tries:    %lld left\n", (long long)json_integer_value(tl));
		json_t *idle = json_object_get(r, "idle_logout_in_s");
		if (json_is_integer(idle))
			printf("idle:     logout in %lld s\n", (long long)json_integer_value(idle));
		if (jstr(r, "reason", NULL))
			printf("reason:   %s\n", jstr(r, "reason", ""));
	}
	json_decref(r);
	return 0;
}

/* A secret in the parameters of `call` (issue 11, 13): "pin", "puk" or
 * "new_pin" with a value. argv shows in ps and in shell history, so such a
 * call is refused before anything is sent, and the argument is wiped from
 * this process's memory (what ps shows from now on). Null is allowed (a
 * keypad reader: SubmitPin without a PIN). */
static bool
params_hold_secret(const json_t *params)
{
	static const char *const keys[] = { "pin", "puk", "new_pin" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const json_t *v = json_object_get(params, keys[i]);
		if (v && !json_is_null(v))
			return true;
	}
	return false;
}

/* vitalectl call METHOD [JSON]: any method, for integrators and debugging. */
static int
cmd_call(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: vitalectl call METHOD [PARAMETERS-JSON]\n");
		return EXIT_USAGE;
	}
	json_t *params = NULL;
	if (argc == 3) {
		json_error_t je;
		params = json_loads(argv[2], 0, &je);
		if (!json_is_object(params)) {
			fprintf(stderr, "vitalectl: parameters must be a JSON object\n");
			json_decref(params);
			return EXIT_USAGE;
		}
		if (params_hold_secret(params)) {
			json_decref(params);
			explicit_bzero(argv[2], strlen(argv[2]));
			fprintf(stderr,
			        "vitalectl: refusing a PIN or unblock code on the command line (it shows in "
			        "ps and in shell history); nothing was sent.\n"
			        "  vitalectl pin [--target TARGET] [--pin-fd N]       (SubmitPin)\n"
			        "  vitalectl unblock --target TARGET [--pin-fd N]     (UnblockPin)\n"
			        "read it without echo, from standard input, or from a file descriptor.\n");
			return EXIT_USAGE;
		}
	}
	json_t *r = NULL;
	int rc = ctl_call(ctl, argv[1], params, &r);
	if (rc)
		return rc;
	print_json(r);
	json_decref(r);
	return 0;
}


/* ------------------------------------------------------------------ */
/* readers, card, watch */

static int
cmd_readers(struct ctl *ctl, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: vitalectl readers [--json]\n");
		return EXIT_USAGE;
	}
	json_t *r = NULL;
	int rc = ctl_call_human(ctl, IFACE ".ListReaders", NULL, &r);
	if (rc)
		return rc < 0 ? 0 : rc;
	json_t *readers = json_object_get(r, "readers");
	if (json_array_size(readers) == 0) {
		printf("no readers\n");
	} else {
		size_t i;
		json_t *rd;
		printf("%-32s %-6s %-12s %-10s %s\n", "READER", "DRIVER", "STATE", "CARD", "ATR / REASON");
		json_array_foreach(readers, i, rd) {
			const char *extra = jstr(rd, "reason", NULL);
			printf("%-32s %-6s %-12s %-10s %s\n", jstr(rd, "name", "?"), jstr(rd, "driver", "?"),
			       jstr(rd, "state", "?"), jstr(rd, "card", "-"),
			       extra ? extra : jstr(rd, "atr", ""));
		}
	}
	json_decref(r);
	return 0;
}

static void print_card(json_t *c);

/* card present TEXT|- [--reader NAME]: PresentCode (docs/digital-card.md
 * part 2); card challenge: NewChallenge. */
static int
cmd_card_qr(struct ctl *ctl, int argc, char **argv)
{
	json_t *r = NULL;
	int rc;
	if (!strcmp(argv[1], "challenge")) {
		if (argc != 2) {
			fprintf(stderr, "usage: vitalectl card challenge\n");
			return EXIT_USAGE;
		}
		if ((rc = ctl_call(ctl, IFACE ".NewChallenge", NULL, &r)))
			return rc;
		if (ctl->json)
			print_json(r);
		else
			printf("%s (for %lld s)\n", jstr(r, "challenge", "?"),
			       (long long)json_integer_value(json_object_get(r, "expires_in_s")));
		json_decref(r);
		return 0;
	}
	const char *text = NULL, *reader = NULL;
	static char line[8192];
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--reader") && i + 1 < argc)
			reader = argv[++i];
		else if (!text)
			text = argv[i];
		else
			text = NULL, i = argc;
	}
	if (!text) {
		fprintf(stderr, "usage: vitalectl card present TEXT|- [--reader NAME]\n");
		return EXIT_USAGE;
	}
	if (!strcmp(text, "-")) {
		if (!fgets(line, sizeof(line), stdin)) {
			fprintf(stderr, "vitalectl: no code on standard input\n");
			return EXIT_USAGE;
		}
		line[strcspn(line, "\r\n")] = '\0';
		text = line;
	}
	json_t *params = json_pack("{s:s}", "text", text);
	if (reader)
		json_object_set_new(params, "reader", json_string(reader));
	if ((rc = ctl_call(ctl, IFACE ".PresentCode", params, &r)))
		return rc;
	if (ctl->json)
		print_json(json_object_get(r, "card"));
	else
		print_card(json_object_get(r, "card"));
	json_decref(r);
	return 0;
}

static int
cmd_card(struct ctl *ctl, int argc, char **argv)
{
	const char *reader = NULL;
	if (argc >= 2 && (!strcmp(argv[1], "present") || !strcmp(argv[1], "challenge")))
		return cmd_card_qr(ctl, argc, argv);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reader") && i + 1 < argc) {
			reader = argv[++i];
		} else if (!strncmp(argv[i], "--reader=", 9)) {
			reader = argv[i] + 9;
		} else {
			fprintf(stderr, "usage: vitalectl card [--reader NAME] [--json]\n");
			return EXIT_USAGE;
		}
	}
	json_t *r = NULL;
	json_t *params = reader ? json_pack("{s:s}", "reader", reader) : NULL;
	int rc = ctl_call(ctl, IFACE ".GetCard", params, &r);
	if (rc)
		return rc;
	json_t *c = json_object_get(r, "card");
	if (ctl->json)
		print_json(c);
	else
		print_card(c);
	json_decref(r);
	return 0;
}

static void
print_card(json_t *c)
{
	printf("reader:   %s\n", jstr(c, "reader", "?"));
	printf("card:     %s (%s)%s\n", jstr(c, "profile", "?"), jstr(c, "kind", "?"),
	       json_is_true(json_object_get(c, "readable")) ? "" : ", not readable");
	printf("atr:      %s\n", jstr(c, "atr", "?"));
	if (jstr(c, "presentation", NULL))
		printf("presented: %s\n", jstr(c, "presentation", ""));
	printf("read at:  %s\n", jstr(c, "read_at", "?"));
	if (jstr(c, "error", NULL))
		printf("error:    %s\n", jstr(c, "error", ""));
	json_t *ev = json_object_get(c, "evidence");
	if (json_is_object(ev))
		printf("evidence: credential %lld bytes, device answer %lld bytes%s\n",
		       (long long)json_integer_value(json_object_get(ev, "credential_len")),
		       (long long)json_integer_value(json_object_get(ev, "device_answer_len")),
		       json_is_true(json_object_get(ev, "holder_verified")) ? ", code entered on the phone"
		                                                             : ", not verified by the holder");
	if (json_is_object(ev) && jstr(ev, "challenge", NULL) && jstr(ev, "challenge", "")[0])
		printf("challenge: %s\n", jstr(ev, "challenge", ""));
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(c, "fields"), k, v)
		printf("%-15s %s\n", k, json_is_string(v) ? json_string_value(v) : "?");
	size_t i;
	json_t *b;
	json_array_foreach(json_object_get(c, "beneficiaries"), i, b) {
		printf("beneficiary %zu: %s %s, born %s, NIR %s%s\n", i + 1, jstr(b, "surname", "?"),
		       jstr(b, "given_name", "?"), jstr(b, "birth_date", "?"), jstr(b, "nir", "-"),
		       json_is_false(json_object_get(b, "nir_valid")) ? " (key does not check)" : "");
	}
	json_t *rchk = json_object_get(c, "rights_check"), *org = json_object_get(c, "organisation");
	if (json_is_object(rchk))
		printf("rights check: %s%s%s\n", jstr(rchk, "state", "?"), jstr(rchk, "reason", NULL) ? ": " : "",
		       jstr(rchk, "reason", ""));
	if (json_is_object(org))
		printf("insurer:  %s %s %s (from the %s%s%s)\n", jstr(org, "regime", "-"),
		       jstr(org, "caisse", "-"), jstr(org, "centre", "-"), jstr(org, "source", "?"),
		       jstr(org, "checked", NULL) ? ", " : "", jstr(org, "checked", ""));
}

static void
watch_signal(int sig)
{
	(void)sig;
	/* every line is flushed as it is printed: nothing is lost */
	_exit(0);
}

static void
print_event(json_t *e)
{
	printf("%s %-14s", jstr(e, "time", "?"), jstr(e, "type", "?"));
	const char *k;
	json_t *v;
	json_object_foreach(e, k, v) {
		if (!strcmp(k, "time") || !strcmp(k, "type") || !strcmp(k, "seq"))
			continue;
		if (json_is_string(v)) {
			printf(" %s=\"%s\"", k, json_string_value(v));
		} else if (json_is_object(v) || json_is_array(v)) {
			char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
			printf(" %s=%s", k, s ? s : "?");
			free(s);
		} else if (!json_is_null(v)) {
			char *s = json_dumps(v, JSON_ENCODE_ANY);
			printf(" %s=%s", k, s ? s : "?");
			free(s);
		}
	}
	printf("\n");
}

static int
cmd_watch(struct ctl *ctl, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: vitalectl watch [--json]\n");
		return EXIT_USAGE;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = watch_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	ctl->timeout_ms = 0; /* events may be hours apart */
	int rc = ctl_connect(ctl);
	if (rc)
		return rc;
	json_t *reply = NULL;
	char *err = NULL;
	bool continues = true;
	int r = vtc_call(ctl->conn, IFACE ".WatchEvents", NULL, VTC_MORE, &reply, &err);
	for (;;) {
		if (r == VTC_ERROR_REPLY) {
			ctl_note_error(err, reply);
			fprintf(stderr, "vitalectl: WatchEvents: %s\n", err ? err : "error");
			free(err);
			json_decref(reply);
			return EXIT_REPLY_ERROR;
		}
		if (r < 0) {
			fprintf(stderr, "vitalectl: WatchEvents: %s\n",
			        r == -EPIPE ? "connection closed by vitaled" : strerror(-r));
			return EXIT_TRANSPORT;
		}
		json_t *e = json_object_get(reply, "event");
		if (ctl->json) {
			char *s = json_dumps(e, JSON_COMPACT);
			if (s) {
				puts(s);
				free(s);
			}
		} else if (strcmp(jstr(e, "type", ""), "Watching") != 0) {
			print_event(e);
		}
		if (fflush(stdout) != 0) {
			json_decref(reply);
			return 0; /* the reader of our output went away */
		}
		json_decref(reply);
		reply = NULL;
		continues = vtc_continues(ctl->conn);
		if (!continues)
			return 0;
		r = vtc_next(ctl->conn, &reply, &err, &continues);
	}
}

/* vitalectl upload [--wait]: start an upload round; with --wait follow it
 * (Upload with "more"): a progress bar on a terminal, one plain line per
 * step otherwise, the replies as JSON lines with --json. Exit 0 when the
 * round ended with the uploader idle, 1 when it stopped (offline, error). */
static void
upload_line(json_t *p, bool tty, uint64_t t0_ms)
{
	long long total = json_integer_value(json_object_get(p, "total"));
	long long sent = json_integer_value(json_object_get(p, "sent"));
	long long rej = json_integer_value(json_object_get(p, "rejected"));
	long long fails = json_integer_value(json_object_get(p, "failures"));
	double el = (double)json_integer_value(json_object_get(p, "elapsed_ms")) / 1000.0;
	double rate = el > 0 ? (double)sent / el : 0;
	(void)t0_ms;
	if (!tty) {
		printf("%s: sent %lld/%lld, rejected %lld, failures %lld%s%s\n", jstr(p, "state", "?"),
		       sent, total, rej, fails, jstr(p, "reason", NULL) ? ": " : "",
		       jstr(p, "reason", ""));
		return;
	}
	char bar[31];
	int fill = total > 0 ? (int)(30 * (sent > total ? total : sent) / total) : 30;
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = '\0';
	char left[32] = "-";
	if (rate > 0 && total > sent)
		fmt_duration((long long)((double)(total - sent) / rate), left, sizeof(left));
	printf("\r[%s] %lld/%lld  %.0f/s  rejected %lld  errors %lld  left %s   ", bar, sent, total,
	       rate, rej, fails, left);
}

static int
upload_follow(struct ctl *ctl)
{
	json_t *reply = NULL;
	char *err = NULL;
	bool continues = true, tty = !ctl->json && isatty(STDOUT_FILENO), idle = false;
	int r = vtc_call(ctl->conn, IFACE ".Upload", NULL, VTC_MORE, &reply, &err);
	while (r == 0) {
		bool done = json_is_true(json_object_get(reply, "done"));
		if (ctl->json)
			print_json(reply);
		else
			upload_line(reply, tty, 0);
		fflush(stdout);
		if (done) {
			idle = !strcmp(jstr(reply, "state", ""), "idle");
			if (tty)
				printf("\n%s%s%s\n", jstr(reply, "state", "?"),
				       jstr(reply, "reason", NULL) ? ": " : "", jstr(reply, "reason", ""));
		}
		json_decref(reply);
		reply = NULL;
		if (done || !vtc_continues(ctl->conn))
			return idle ? 0 : EXIT_REPLY_ERROR;
		r = vtc_next(ctl->conn, &reply, &err, &continues);
	}
	if (r == VTC_ERROR_REPLY) {
		ctl_note_error(err, reply);
		fprintf(stderr, "vitalectl: Upload: %s%s%s\n", err ? err : "error",
		        jstr(reply, "reason", NULL) ? ": " : "", jstr(reply, "reason", ""));
		free(err);
		json_decref(reply);
		return EXIT_REPLY_ERROR;
	}
	fprintf(stderr, "vitalectl: Upload: %s\n",
	        r == -EPIPE ? "connection closed by vitaled" : strerror(-r));
	return EXIT_TRANSPORT;
}

static int
cmd_upload(struct ctl *ctl, int argc, char **argv)
{
	bool wait = argc == 2 && !strcmp(argv[1], "--wait");
	if (argc > 2 || (argc == 2 && !wait)) {
		fprintf(stderr, "usage: vitalectl upload [--wait] [--json]\n");
		return EXIT_USAGE;
	}
	if (wait) {
		ctl->timeout_ms = 0; /* a round may take long: the daemon ends it */
		int rc = ctl_connect(ctl);
		return rc ? rc : upload_follow(ctl);
	}
	json_t *reply = NULL;
	int rc = ctl_call_human(ctl, IFACE ".Upload", NULL, &reply);
	if (rc)
		return rc < 0 ? 0 : rc;
	/* the reply is the round's progress: "total" is what waited when that
	 * round began, not what waits now (vitalectl status says that) */
	long long total = (long long)json_integer_value(json_object_get(reply, "total"));
	long long sent = (long long)json_integer_value(json_object_get(reply, "sent"));
	if (json_is_true(json_object_get(reply, "running")))
		printf("upload asked: %s; the round in progress has answered %lld of %lld sheets\n",
		       jstr(reply, "state", "?"), sent, total);
	else
		printf("upload asked: %s; a round starts now (vitalectl upload --wait follows it)\n",
		       jstr(reply, "state", "?"));
	json_decref(reply);
	return 0;
}

/* vitalectl metrics: the Prometheus text exposition (GetMetrics), as is. */
static int
cmd_metrics(struct ctl *ctl, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: vitalectl metrics [--json]\n");
		return EXIT_USAGE;
	}
	json_t *r = NULL;
	int rc = ctl_call_human(ctl, IFACE ".GetMetrics", NULL, &r);
	if (rc)
		return rc < 0 ? 0 : rc;
	fputs(jstr(r, "text", ""), stdout);
	json_decref(r);
	return 0;
}

struct command {
	const char *name;
	int (*fn)(struct ctl *, int, char **);
	const char *help;
};

static const struct command commands[] = {
	{ "status", cmd_status, "daemon, readers, queue and uploader at a glance" },
	{ "info", cmd_info, "the service's varlink identity and interfaces" },
	{ "reload", cmd_reload, "re-read the configuration (as SIGHUP)" },
	{ "pin", cmd_pin, "give a PIN: pin [--target NAME] [--pin-fd N] [--pinpad]" },
	{ "unblock", cmd_unblock, "unblock a card's PIN: unblock --target card:READER [--pin-fd N] [--keep-pin]" },
	{ "signer", cmd_signer, "the practitioner's signer: signer [test [ROUNDS]]" },
	{ "readers", cmd_readers, "the card readers and their state" },
	{ "card", cmd_card, "the card read last: card [--reader NAME]; card present TEXT|-; card challenge (control access)" },
	{ "watch", cmd_watch, "print events as they happen, until interrupted" },
	{ "sheet", cmd_sheet, "care sheets: sheet create|draft|complete|list|show|export|print|verify" },
	{ "queue", cmd_queue, "the queue: sheets per state, oldest, nearest due date" },
	{ "rights", cmd_rights, "the insurer's rights check without a card: rights NIR --birth-date D [--rank N]" },
	{ "upload", cmd_upload, "send the waiting sheets to the insurer now: upload [--wait]" },
	{ "web", cmd_web, "the local web bridge: web pair [CODE [SCOPE]]|deny CODE|list|revoke ID|status" },
	{ "metrics", cmd_metrics, "the daemon's metrics in the Prometheus text format" },
	{ "doctor", cmd_doctor, "check the set-up, one line per check with what to do when it fails" },
	{ "call", cmd_call, "call any varlink method: call METHOD [JSON]" },
	{ NULL, NULL, NULL },
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: vitalectl [--socket PATH] [--timeout SECONDS] [--json] COMMAND [ARGS]\n\n"
	           "commands:\n");
	for (const struct command *c = commands; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->help);
	fprintf(f, "\nThe socket is --socket, else $VITALED_SOCKET, else %s.\n"
	           "Exit codes: 0 ok, 1 the daemon answered an error, 2 usage, 3 daemon unreachable,\n"
	           "4 the call failed on the way (timeout, connection closed, bad reply).\n",
	        VTC_DEFAULT_SOCKET);
}

/* The old form `sheet create|draft|complete ... --json FILE` names the
 * sheet's input file (now --input FILE): a --json after the subcommand
 * (after the ID for complete) followed by a word that is not an option. Any
 * other --json asks for JSON output. */
static bool
json_names_input(int argc, char **argv, int first, int i)
{
	if (argc - first < 2 || strcmp(argv[first], "sheet") != 0)
		return false;
	const char *sub = argv[first + 1];
	int after = !strcmp(sub, "complete") ? first + 2 :
	            (!strcmp(sub, "create") || !strcmp(sub, "draft")) ? first + 1 : argc;
	return i > after && i + 1 < argc && argv[i + 1][0] != '-';
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "timeout", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct ctl ctl = { .timeout_ms = 10000 };
	int c;
	/* --json anywhere: errors are JSON too (vitalectl.h) */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--json")) {
			ctl_json_errors_start();
			break;
		}
	/* "+" stops at the first non-option: the command's own options follow */
	while ((c = getopt_long(argc, argv, "+s:t:jhV", opts, NULL)) != -1) {
		switch (c) {
		case 's': ctl.socket = optarg; break;
		case 't': {
			char *end;
			double t = strtod(optarg, &end);
			if (*end || t < 0 || t > 86400) {
				fprintf(stderr, "vitalectl: bad --timeout '%s'\n", optarg);
				ctl_json_errors_finish(EXIT_USAGE);
				return EXIT_USAGE;
			}
			ctl.timeout_ms = (int)(t * 1000);
			break;
		}
		case 'j': ctl.json = true; break;
		case 'h': usage(stdout); ctl_json_errors_finish(0); return 0;
		case 'V': printf("vitalectl %s\n", VITALED_VERSION); ctl_json_errors_finish(0); return 0;
		default: usage(stderr); ctl_json_errors_finish(EXIT_USAGE); return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		ctl_json_errors_finish(EXIT_USAGE);
		return EXIT_USAGE;
	}
	/* allow --json after the command too: "vitalectl status --json" */
	int sub_argc = 0;
	char **sub_argv = calloc((size_t)(argc - optind) + 1, sizeof(char *));
	if (!sub_argv)
		return EXIT_TRANSPORT;
	for (int i = optind; i < argc; i++) {
		if (!strcmp(argv[i], "--json") && !json_names_input(argc, argv, optind, i))
			ctl.json = true;
		else
			sub_argv[sub_argc++] = argv[i];
	}
	int rc = EXIT_USAGE;
	const struct command *cmd = NULL;
	for (const struct command *k = commands; k->name; k++)
		if (!strcmp(k->name, sub_argv[0]))
			cmd = k;
	if (!cmd) {
		fprintf(stderr, "vitalectl: unknown command '%s'\n", sub_argv[0]);
		usage(stderr);
	} else {
		rc = cmd->fn(&ctl, sub_argc, sub_argv);
	}
	vtc_close(ctl.conn);
	free(sub_argv);
	ctl_json_errors_finish(rc);
	return rc;
}
