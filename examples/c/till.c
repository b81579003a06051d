/* till.c: a pharmacy till's whole flow against vitaled, in C with
 * libvitaled-client (vitaled-client.h) and jansson: the companion of
 * docs/till-integration.md, which explains every step, call, event and
 * error used here. examples/python/till.py does the same with Python's
 * standard library; both print the same lines.
 *
 * Build it as an integrator would, against the installed header and
 * library:
 *
 *   cc -o till till.c $(pkg-config --cflags --libs vitaled-client)
 *
 * (in this tree, `make` builds build/examples/till-c against client/ and
 * build/libvitaled-client.a).
 *
 *   till [--socket PATH] [--reader NAME] [--beneficiary N]
 *        [--act CODE:COEF:CENTS ...] [--insurer REGIME:CAISSE:CENTRE]
 *        [--request-id ID] [--card-timeout S] [--rights-timeout S]
 *        [--follow-timeout S] [--poll-interval S] [--call-timeout S]
 *        [--reconnect-timeout S] [--until queued|accepted|paid] [--lose-answer]
 *
 * The steps: 1. connect, GetInfo, GetStatus; 2. WatchEvents on a second
 * connection; 3. the practitioner's PINs (a CPS in a reader: target
 * "card:<reader>"; the signer: target "practitioner"); 4. the patient's
 * card or phone; 5. the holder and the rights; 6. CreateSheet with a
 * request_id (the same again after a lost answer); 7. the sheet followed
 * to accepted and paid.
 *
 * PINs are read from standard input, one line each time one is needed
 * (without echo on a terminal), wiped after use, never printed.
 * Output: "till: ..." lines, then "RESULT {json}": {"status": "ok", "id",
 * "seq", "state", "amount", "request_id"} or {"error": NAME, ...}.
 * Exit status: 0 the flow reached --until; 1 an error the daemon named, or
 * the insurer rejected or refused the sheet; 2 usage; 3 vitaled
 * unreachable; 4 a time-out.
 */
#define _DEFAULT_SOURCE /* explicit_bzero, nanosleep, malloc_usable_size */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <vitaled-client.h>

#define IFACE "io.vitaled.Terminal."
#define MAX_ACTS 16

enum { EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT };

struct act {
	char code[16];
	long coef, cents;
};

struct till {
	/* options */
	const char *socket, *reader_opt, *until, *insurer;
	int beneficiary;
	struct act acts[MAX_ACTS];
	int nacts;
	char request_id[65];
	double card_timeout, rights_timeout, follow_timeout, poll_interval, call_timeout,
	    reconnect_timeout;
	bool lose_answer;
	/* state */
	struct vtc *conn;  /* calls */
	struct vtc *watch; /* the event stream */
	char reader[256];  /* the patient's card's reader */
	json_t *sheet;     /* CreateSheet's answer */
	json_t *result;    /* the RESULT line when the flow stops */
};

/* ------------------------------------------------------------- helpers */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("till: ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	fflush(stdout);
	va_end(ap);
}

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	nanosleep(&ts, NULL);
}

static const char *
jstr(json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : dflt;
}

/* The error's name without its interface: "NoCard" for
 * io.vitaled.Terminal.NoCard, "PermissionDenied" for
 * org.varlink.service.PermissionDenied. */
static const char *
short_name(const char *err)
{
	const char *dot = err ? strrchr(err, '.') : NULL;
	return dot ? dot + 1 : err;
}

/* Stop the flow: exit code and the RESULT object (stolen). */
static int
stop(struct till *t, int code, json_t *result)
{
	json_decref(t->result);
	t->result = result;
	return code;
}

/* jansson's copies of a PIN are wiped when freed (the library wipes the
 * serialized call itself). */
static void
wiping_free(void *p)
{
	if (p) {
		explicit_bzero(p, malloc_usable_size(p));
		free(p);
	}
}

/* What the till shows for each named error that ends the flow
 * (docs/till-integration.md, "Errors"). */
static const char *
show(const char *name)
{
	static const char *const msgs[][2] = {
		{ "NoCard", "no usable carte Vitale: insert the card (chip first) or tap the phone again" },
		{ "CardOpposed", "this card is on the insurer's opposition list: keep it, make no sheet from it, "
		                 "ask for another proof of rights" },
		{ "QueueFull", "the sheet queue is full (or the disk): nothing was stored; upload, then try again" },
		{ "IoError", "the terminal's disk failed: nothing was stored; call support, try again" },
		{ "InvalidSheet", "the sheet breaks a rule: correct the field and try again" },
		{ "PinBlocked", "the PIN is blocked: unblock it with the card's unblock code" },
		{ "NotLoggedIn", "the practitioner's PIN is needed" },
		{ "SignerUnavailable", "the practitioner's card or key cannot sign now: insert it, check the reader" },
		{ "PermissionDenied", "this till's user may not do that: add it to [api] allowed_users or allowed_groups" },
		{ "ShuttingDown", "the terminal is restarting: try again in a moment" },
		{ "InternalError", "the terminal failed: call support" },
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++)
		if (!strcmp(name, msgs[i][0]))
			return msgs[i][1];
	return "refused";
}

/* A named error that ends the flow: what the till shows, and the RESULT.
 * err is freed, params released. */
static int
named_error(struct till *t, char *err, json_t *params)
{
	char *p = json_dumps(params, JSON_COMPACT);
	say("%s: %s %s", err, show(err), p ? p : "");
	free(p);
	int rc = stop(t, EXIT_ERROR, json_pack("{s:s,s:O}", "error", err, "parameters", params));
	free(err);
	json_decref(params);
	return rc;
}

/* ---------------------------------------------------------- connections */

/* (Re)connect the call connection, trying for up to wait seconds (the
 * daemon restarting). */
static int
connect_calls(struct till *t, double wait)
{
	double end = now_s() + wait;
	for (;;) {
		int r = vtc_connect(t->socket, (int)(t->call_timeout * 1000), &t->conn);
		if (r == 0)
			return 0;
		if (r == -EACCES)
			return stop(t, EXIT_UNREACHABLE, json_pack("{s:s,s:s}", "error", "PermissionDenied",
			                                           "socket", vtc_socket_path(t->socket)));
		if (now_s() >= end) {
			say("cannot reach vitaled at %s: %s", vtc_socket_path(t->socket), strerror(-r));
			return stop(t, EXIT_UNREACHABLE, json_pack("{s:s,s:s}", "error", "Unreachable",
			                                           "socket", vtc_socket_path(t->socket)));
		}
		sleep_s(0.5);
	}
}

/* One call. Returns 0 (*reply: the parameters), VTC_ERROR_REPLY (*err: the
 * short name, *reply: its parameters), or an exit code after setting the
 * RESULT. With retry (calls safe to repeat: reads, and CreateSheet with its
 * request_id; never SubmitPin), a lost connection or ShuttingDown (the
 * daemon restarting) is met by reconnecting and calling again, for up to
 * --reconnect-timeout. params is stolen. */
static int
call(struct till *t, const char *method, json_t *params, bool retry, json_t **reply, char **err)
{
	char full[128];
	snprintf(full, sizeof(full), "%s%s", strchr(method, '.') ? "" : IFACE, method);
	double end = now_s() + t->reconnect_timeout;
	*reply = NULL;
	*err = NULL;
	for (;;) {
		if (!t->conn) {
			double left = end - now_s();
			int rc = connect_calls(t, left > 0 ? left : 0);
			if (rc) {
				json_decref(params);
				return rc;
			}
		}
		char *e = NULL;
		int r = vtc_call(t->conn, full, json_incref(params), 0, reply, &e);
		if (r == 0) {
			json_decref(params);
			return 0;
		}
		if (r == VTC_ERROR_REPLY && strcmp(short_name(e), "ShuttingDown")) {
			*err = strdup(short_name(e));
			free(e);
			json_decref(params);
			return VTC_ERROR_REPLY;
		}
		say("connection lost (%s): %s", r == VTC_ERROR_REPLY ? short_name(e) : strerror(-r),
		    retry ? "reconnecting" : "giving up");
		free(e);
		json_decref(*reply);
		*reply = NULL;
		vtc_close(t->conn);
		t->conn = NULL;
		if (!retry || now_s() >= end) {
			json_decref(params);
			return stop(t, EXIT_TIMEOUT, json_pack("{s:s,s:s}", "error", "Lost", "method", method));
		}
		sleep_s(0.5);
	}
}

/* WatchEvents with "more" on its own connection; the first reply is the
 * Watching event. The connection's timeout is short: next_event waits in
 * steps of it until its own deadline. */
static int
subscribe(struct till *t)
{
	double end = now_s() + t->reconnect_timeout;
	for (;;) {
		json_t *r = NULL;
		char *e = NULL;
		int x = vtc_connect(t->socket, 250, &t->watch);
		if (x == 0) {
			x = vtc_call(t->watch, IFACE "WatchEvents", NULL, VTC_MORE, &r, &e);
			while (x == -ETIMEDOUT && now_s() < end)
				x = vtc_next(t->watch, &r, &e, NULL);
			if (x == 0) {
				say("watching events (from seq %lld)",
				    (long long)json_integer_value(json_object_get(json_object_get(r, "event"), "seq")));
				json_decref(r);
				return 0;
			}
			vtc_close(t->watch);
			t->watch = NULL;
		}
		json_decref(r);
		free(e);
		if (now_s() >= end) {
			say("cannot watch events: %s", x > 0 ? "error reply" : strerror(-x));
			return stop(t, EXIT_UNREACHABLE, json_pack("{s:s,s:s}", "error", "Unreachable",
			                                           "socket", vtc_socket_path(t->socket)));
		}
		sleep_s(0.5);
	}
}

/* The next event (*ev, caller decrefs), or *ev NULL when none came within
 * timeout. A lost stream (the daemon stopped: closed, or ShuttingDown) is
 * subscribed again and reported as {"type": "Resubscribed"}: the caller
 * then looks at the state again, since events in between are gone. */
static int
next_event(struct till *t, double timeout, json_t **ev)
{
	double end = now_s() + timeout;
	*ev = NULL;
	for (;;) {
		json_t *r = NULL;
		char *e = NULL;
		int x = vtc_next(t->watch, &r, &e, NULL);
		if (x == 0) {
			*ev = json_incref(json_object_get(r, "event"));
			json_decref(r);
			return 0;
		}
		if (x == -ETIMEDOUT) {
			if (now_s() >= end)
				return 0;
			continue;
		}
		say("event stream lost (%s): subscribing again", x > 0 ? short_name(e) : strerror(-x));
		json_decref(r);
		free(e);
		vtc_close(t->watch);
		t->watch = NULL;
		int rc = subscribe(t);
		if (rc)
			return rc;
		*ev = json_pack("{s:s}", "type", "Resubscribed");
		return 0;
	}
}

static bool
is_event(json_t *ev, const char *type)
{
	return ev && !strcmp(jstr(ev, "type", ""), type);
}

/* ---------------------------------------------------- 1. who is there */

static int
hello(struct till *t)
{
	json_t *info, *st;
	char *err;
	int rc = connect_calls(t, 0);
	if (rc)
		return rc;
	if ((rc = call(t, "org.varlink.service.GetInfo", NULL, true, &info, &err)))
		return rc == VTC_ERROR_REPLY ? named_error(t, err, info) : rc;
	bool ours = false;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(info, "interfaces"), i, v)
		ours = ours || !strcmp(json_string_value(v) ? json_string_value(v) : "", "io.vitaled.Terminal");
	if (!ours) {
		json_decref(info);
		return stop(t, EXIT_ERROR, json_pack("{s:s}", "error", "NotVitaled"));
	}
	if ((rc = call(t, "GetStatus", NULL, true, &st, &err))) {
		json_decref(info);
		return rc == VTC_ERROR_REPLY ? named_error(t, err, st) : rc;
	}
	say("connected to %s %s at %s: mode %s, terminal %s, access %s", jstr(info, "product", "?"),
	    jstr(info, "version", "?"), vtc_socket_path(t->socket), jstr(st, "mode", "?"),
	    jstr(st, "terminal_id", "?"), jstr(st, "access", "?"));
	json_decref(info);
	if (strcmp(jstr(st, "access", ""), "control")) {
		/* GetStatus is open to anyone who can open the socket; cards,
		 * PINs and sheets need [api] allowed_users or allowed_groups */
		say("this user may only read status: add it to [api] allowed_users or a group in allowed_groups");
		json_decref(st);
		return stop(t, EXIT_ERROR, json_pack("{s:s,s:s}", "error", "PermissionDenied", "access", "read"));
	}
	json_t *sg = json_object_get(st, "signer");
	say("signer: %s, %s; queue: %lld waiting; uploader: %s", jstr(sg, "backend", "none"),
	    jstr(sg, "state", "?"),
	    (long long)json_integer_value(json_object_get(json_object_get(st, "queue"), "queued")),
	    jstr(json_object_get(st, "uploader"), "state", "?"));
	json_decref(st);
	return 0;
}

/* ---------------------------------------------------------- 3. PINs */

/* One line of standard input into buf, without echo on a terminal and
 * without stdio (nothing buffered elsewhere). Its length, or -1. */
static int
read_pin(const char *target, char *buf, size_t cap)
{
	struct termios old, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
	if (tty) {
		quiet = old;
		quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHOE | ECHOK);
		quiet.c_lflag |= ECHONL;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	fprintf(stderr, "PIN for %s: %s", target, tty ? "" : "\n");
	size_t n = 0;
	int r = 0;
	for (;;) {
		char ch;
		ssize_t got = read(STDIN_FILENO, &ch, 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0 || ch == '\n') {
			r = got < 0 || (got == 0 && n == 0) ? -1 : 0;
			break;
		}
		if (n + 1 < cap)
			buf[n++] = ch;
		ch = 0;
	}
	buf[n] = '\0';
	if (tty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	return r < 0 ? -1 : (int)n;
}

/* SubmitPin for target until it is accepted. PinIncorrect: say the tries
 * left and ask again; PinBlocked: stop. tries: as the daemon said (-1:
 * unknown). */
static int
submit_pin(struct till *t, const char *target, long long tries)
{
	for (;;) {
		char pin[64];
		if (tries >= 0)
			say("PIN needed for %s (%lld tries left)", target, tries);
		else
			say("PIN needed for %s", target);
		if (read_pin(target, pin, sizeof(pin)) < 0) {
			explicit_bzero(pin, sizeof(pin));
			return stop(t, EXIT_ERROR, json_pack("{s:s,s:s}", "error", "NoPin", "target", target));
		}
		json_t *r, *params = json_pack("{s:s,s:s}", "target", target, "pin", pin);
		explicit_bzero(pin, sizeof(pin));
		char *err;
		/* never repeated after a lost answer: a PIN sent twice may cost two tries */
		int rc = call(t, "SubmitPin", params, false, &r, &err);
		if (rc == 0) {
			say("%s: PIN accepted", target);
			json_decref(r);
			return 0;
		}
		if (rc != VTC_ERROR_REPLY)
			return rc;
		int done = -1;
		json_t *tl = json_object_get(r, "tries_left");
		if (!strcmp(err, "PinIncorrect")) {
			tries = json_is_integer(tl) ? json_integer_value(tl) : -1;
			if (tries >= 0)
				say("PinIncorrect: wrong PIN for %s, %lld tries left", target, tries);
			else
				say("PinIncorrect: wrong PIN for %s, unknown tries left", target);
		} else if (!strcmp(err, "PinBlocked")) {
			say("PinBlocked: the PIN of %s is blocked; unblock it with its code (vitalectl unblock) "
			    "or the card's own tools", target);
			done = stop(t, EXIT_ERROR, json_pack("{s:s,s:s}", "error", "PinBlocked", "target", target));
		} else if (!strcmp(err, "PinMalformed")) {
			say("PinMalformed: %lld to %lld digits; nothing was sent",
			    (long long)json_integer_value(json_object_get(r, "min_len")),
			    (long long)json_integer_value(json_object_get(r, "max_len")));
		} else if (!strcmp(err, "RateLimited")) {
			long long s = json_integer_value(json_object_get(r, "retry_after_s"));
			say("RateLimited: wait %lld s", s);
			sleep_s((double)s);
		} else if (!strcmp(err, "PinNotExpected") || !strcmp(err, "NoCard")) {
			say("no PIN wanted for %s any more (%s)", target, jstr(r, "reason", err));
			done = 0;
		} else {
			return named_error(t, err, r);
		}
		json_decref(r);
		free(err);
		if (done >= 0)
			return done;
	}
}

/* Card PIN steps waiting (a CPS in a reader) and the signer's login. */
static int
practitioner(struct till *t)
{
	json_t *st;
	char *err;
	int rc = call(t, "GetStatus", NULL, true, &st, &err);
	if (rc)
		return rc == VTC_ERROR_REPLY ? named_error(t, err, st) : rc;
	size_t i;
	json_t *cp;
	json_array_foreach(json_object_get(st, "card_pins"), i, cp) {
		const char *state = jstr(cp, "state", "");
		json_t *tl = json_object_get(cp, "tries_left");
		if (!strcmp(state, "required"))
			rc = submit_pin(t, jstr(cp, "target", ""), json_is_integer(tl) ? json_integer_value(tl) : -1);
		else if (!strcmp(state, "blocked")) {
			say("PinBlocked: %s is blocked", jstr(cp, "target", ""));
			rc = stop(t, EXIT_ERROR, json_pack("{s:s,s:s}", "error", "PinBlocked", "target",
			                                   jstr(cp, "target", "")));
		}
		if (rc) {
			json_decref(st);
			return rc;
		}
	}
	const char *state = jstr(json_object_get(st, "signer"), "state", "disabled");
	if (!strcmp(state, "locked"))
		rc = submit_pin(t, "practitioner", -1);
	else if (!strcmp(state, "blocked"))
		rc = stop(t, EXIT_ERROR, json_pack("{s:s,s:s}", "error", "PinBlocked", "target", "practitioner"));
	else if (!strcmp(state, "disabled") || !strcmp(state, "no-token") || !strcmp(state, "error"))
		/* a sheet cannot be signed: say so now rather than at CreateSheet */
		say("the signer cannot sign (%s): insert the practitioner's card or check [signer]", state);
	else
		say("practitioner: signer %s", state);
	json_decref(st);
	return rc;
}

/* ------------------------------------------- 4. the patient's card */

/* GetCard(reader) if it holds a readable patient card or phone (*card,
 * caller decrefs), else *card NULL. */
static int
patient_card_in(struct till *t, const char *reader, json_t **card)
{
	json_t *r;
	char *err;
	*card = NULL;
	int rc = call(t, "GetCard", json_pack("{s:s}", "reader", reader), true, &r, &err);
	if (rc == VTC_ERROR_REPLY) {
		if (strcmp(err, "NoCard"))
			return named_error(t, err, r);
		free(err);
		json_decref(r);
		return 0;
	}
	if (rc)
		return rc;
	json_t *c = json_object_get(r, "card");
	const char *kind = jstr(c, "kind", "");
	if ((!strcmp(kind, "patient") || !strcmp(kind, "digital")) && json_is_true(json_object_get(c, "readable")))
		*card = json_incref(c);
	json_decref(r);
	return 0;
}

/* What is in the readers now (the events only tell what happens next). */
static int
card_already_in(struct till *t, json_t **card)
{
	json_t *r;
	char *err;
	*card = NULL;
	if (t->reader_opt) {
		int rc = patient_card_in(t, t->reader_opt, card);
		if (!rc && *card)
			snprintf(t->reader, sizeof(t->reader), "%s", t->reader_opt);
		return rc;
	}
	int rc = call(t, "ListReaders", NULL, true, &r, &err);
	if (rc)
		return rc == VTC_ERROR_REPLY ? named_error(t, err, r) : rc;
	size_t i;
	json_t *rd;
	json_array_foreach(json_object_get(r, "readers"), i, rd) {
		if (strcmp(jstr(rd, "state", ""), "ready"))
			continue;
		if ((rc = patient_card_in(t, jstr(rd, "name", ""), card)))
			break;
		if (*card) {
			snprintf(t->reader, sizeof(t->reader), "%s", jstr(rd, "name", ""));
			break;
		}
	}
	json_decref(r);
	return rc;
}

/* One event while waiting for the card: *card set when a patient's card or
 * phone was read. */
static int
card_event(struct till *t, json_t *e, json_t **card)
{
	const char *r = jstr(e, "reader", NULL);
	if (t->reader_opt && r && strcmp(r, t->reader_opt) && !is_event(e, "PinRequested"))
		return 0;
	if (is_event(e, "CardInserted")) {
		say("card inserted in %s (%s): reading", r, jstr(e, "profile", "?"));
	} else if (is_event(e, "CodeEntryRequested")) {
		say("CodeEntryRequested: enter your code on your phone (%lld s)",
		    (long long)json_integer_value(json_object_get(e, "timeout_s")));
	} else if (is_event(e, "CardError")) {
		const char *detail = jstr(e, "detail", NULL);
		say("CardError in %s: %s%s%s%s: ask the patient to present the card again", r,
		    jstr(e, "reason", "?"), detail ? " (" : "", detail ? detail : "", detail ? ")" : "");
	} else if (is_event(e, "CardRead")) {
		json_t *s = json_object_get(e, "summary");
		const char *kind = jstr(s, "kind", "");
		if (!strcmp(kind, "patient") || !strcmp(kind, "digital")) {
			int rc = patient_card_in(t, r, card);
			if (rc)
				return rc;
			if (*card) {
				snprintf(t->reader, sizeof(t->reader), "%s", r);
				say("card read in %s (%s, %s)", r, jstr(*card, "profile", "?"),
				    jstr(*card, "presentation", "?"));
			} else {
				say("the card in %s cannot be read: %s", r, jstr(s, "error", "?"));
			}
		}
	} else if (is_event(e, "PinRequested")) {
		/* a CPS inserted meanwhile, or the signer's idle logout */
		json_t *tl = json_object_get(e, "tries_left");
		return submit_pin(t, jstr(e, "target", ""), json_is_integer(tl) ? json_integer_value(tl) : -1);
	} else if (is_event(e, "DriverDown")) {
		say("reader driver %s down: %s", jstr(e, "driver", "?"), jstr(e, "reason", "?"));
	}
	return 0;
}

static int
wait_card(struct till *t, json_t **card)
{
	int rc = card_already_in(t, card);
	if (rc || *card) {
		if (*card)
			say("card already in %s (%s)", t->reader, jstr(*card, "profile", "?"));
		return rc;
	}
	say("waiting for a carte Vitale or a phone%s%s (%.0f s)", t->reader_opt ? " in " : "",
	    t->reader_opt ? t->reader_opt : "", t->card_timeout);
	double end = now_s() + t->card_timeout;
	while (now_s() < end && !*card) {
		json_t *e;
		if ((rc = next_event(t, end - now_s(), &e)))
			return rc;
		if (!e)
			break;
		if (is_event(e, "Resubscribed"))
			rc = card_already_in(t, card);
		else
			rc = card_event(t, e, card);
		json_decref(e);
		if (rc)
			return rc;
	}
	if (*card)
		return 0;
	/* nobody came: GetCard itself says NoCard, the error a till shows */
	json_t *r;
	char *err;
	rc = call(t, "GetCard", t->reader_opt ? json_pack("{s:s}", "reader", t->reader_opt) : NULL, true,
	          &r, &err);
	if (rc == VTC_ERROR_REPLY && !strcmp(err, "NoCard")) {
		say("NoCard: no carte Vitale read: insert the card (chip first) or tap the phone");
		rc = stop(t, EXIT_ERROR, json_pack("{s:s}", "error", "NoCard"));
	} else if (rc == 0 || rc == VTC_ERROR_REPLY) {
		rc = stop(t, EXIT_TIMEOUT, json_pack("{s:s,s:s}", "error", "Timeout", "waiting", "card"));
	}
	free(err);
	json_decref(r);
	return rc;
}

/* --------------------------------------- 5. the holder and the rights */

static void
print_rights(json_t *card)
{
	json_t *rc = json_object_get(card, "rights_check");
	json_t *org = json_object_get(card, "organisation");
	const char *state = jstr(rc, "state", NULL);
	if (!state) {
		say("rights: no online check (no insurer configured, or a phone)");
	} else if (!strcmp(state, "checked")) {
		json_t *rt = json_object_get(card, "rights");
		json_t *amc = json_object_get(rt, "amc");
		char amcs[128] = "";
		if (json_is_object(amc))
			snprintf(amcs, sizeof(amcs), ", AMC %s%s", jstr(amc, "id", "?"),
			         json_is_true(json_object_get(amc, "tiers_payant")) ? " tiers payant" : "");
		say("rights: checked by the insurer: organisation %s/%s/%s, %s%s", jstr(org, "regime", "?"),
		    jstr(org, "caisse", "?"), jstr(org, "centre", "?"),
		    json_is_true(json_object_get(rt, "covered")) ? "covered" : "NOT covered on the care date", amcs);
	} else if (!strcmp(state, "unknown")) {
		say("rights: the insurer knows no such beneficiary: ask for an attestation of rights");
	} else {
		/* offline, timeout, error: go on; the sheet keeps the card's or the till's organisation */
		say("rights: not checked (%s: %s): going on with the card's data", state,
		    jstr(rc, "reason", "?"));
	}
	say("organisation from the %s", jstr(org, "source", "till"));
}

static int
holder_and_rights(struct till *t, json_t **cardp)
{
	json_t *card = *cardp;
	json_t *b = json_object_get(card, "beneficiaries");
	json_t *p = json_array_get(b, (size_t)t->beneficiary);
	if (!p)
		return stop(t, EXIT_ERROR, json_pack("{s:s,s:I}", "error", "NoSuchBeneficiary", "count",
		                                     (json_int_t)json_array_size(b)));
	/* never show or log the full NIR: sex and birth year are enough to check */
	say("holder: %s %s, NIR %.3s…, born %.4s (%zu on the card)", jstr(p, "surname", "?"),
	    jstr(p, "given_name", "?"), jstr(p, "nir", ""), jstr(p, "birth_date", "?"), json_array_size(b));
	if (json_is_true(json_object_get(card, "opposed"))) {
		/* the card's serial is on the insurers' opposition list (lost,
		 * stolen, replaced): CreateSheet would answer CardOpposed */
		say("CardOpposed: %s", show("CardOpposed"));
		return stop(t, EXIT_ERROR, json_pack("{s:s,s:s}", "error", "CardOpposed", "reader", t->reader));
	}
	if (json_is_false(json_object_get(card, "can_back_sheet"))) {
		say("NoCard: this card cannot back a sheet: %s", jstr(card, "why", "?"));
		return stop(t, EXIT_ERROR, json_pack("{s:s,s:s}", "error", "NoCard", "reason", jstr(card, "why", "?")));
	}
	if (!strcmp(jstr(json_object_get(card, "rights_check"), "state", ""), "pending")) {
		/* the online check runs after the read; CardRights says when it ends */
		double end = now_s() + t->rights_timeout;
		while (now_s() < end) {
			json_t *e;
			int rc = next_event(t, end - now_s(), &e);
			if (rc)
				return rc;
			bool done = !e || is_event(e, "Resubscribed") ||
			            (is_event(e, "CardRights") && !strcmp(jstr(e, "reader", ""), t->reader));
			json_decref(e);
			if (done)
				break;
		}
		json_t *fresh;
		int rc = patient_card_in(t, t->reader, &fresh);
		if (rc)
			return rc;
		if (!fresh) {
			say("NoCard: the card left %s", t->reader);
			return stop(t, EXIT_ERROR, json_pack("{s:s}", "error", "NoCard"));
		}
		json_decref(card);
		*cardp = card = fresh;
	}
	print_rights(card);
	return 0;
}

/* -------------------------------------------------- 6. the care sheet */

static json_t *
till_part(struct till *t)
{
	json_t *acts = json_array();
	long total = 0;
	for (int i = 0; i < t->nacts; i++) {
		json_array_append_new(acts, json_pack("{s:s,s:I,s:I}", "code", t->acts[i].code, "coefficient",
		                                      (json_int_t)t->acts[i].coef, "amount",
		                                      (json_int_t)t->acts[i].cents));
		total += t->acts[i].cents;
	}
	long amo = total * 7 / 10;
	char regime[8] = "", caisse[8] = "", centre[8] = "";
	sscanf(t->insurer, "%7[^:]:%7[^:]:%7s", regime, caisse, centre);
	return json_pack("{s:s,s:o,s:b,s:b,s:{s:I,s:I,s:I,s:I},s:{s:s,s:s,s:s}}", "insurance", "maladie",
	                 "acts", acts, "amc", 0, "tiers_payant", 0, "totals", "total", (json_int_t)total, "amo",
	                 (json_int_t)amo, "amc", (json_int_t)0, "patient", (json_int_t)(total - amo), "insurer",
	                 "regime", regime, "caisse", caisse, "centre", centre);
}

static int
create_sheet(struct till *t)
{
	json_t *params = json_pack("{s:o,s:s,s:i,s:s}", "sheet", till_part(t), "reader", t->reader,
	                           "beneficiary", t->beneficiary, "request_id", t->request_id);
	say("CreateSheet request_id=%s", t->request_id);
	if (t->lose_answer) {
		/* a demonstration of a lost answer: the call goes out on a
		 * connection that gives up after 1 ms and is dropped before its
		 * answer is read (a time-out, a crash of the till ...) */
		struct vtc *hasty;
		if (vtc_connect(t->socket, 1, &hasty) == 0) {
			json_t *ignored = NULL;
			vtc_call(hasty, IFACE "CreateSheet", json_incref(params), 0, &ignored, NULL);
			json_decref(ignored);
			vtc_close(hasty);
		}
		say("connection dropped before the answer: calling again with the same request_id");
	}
	double end = now_s() + t->reconnect_timeout;
	for (;;) {
		json_t *r;
		char *err;
		/* retry: a lost answer or a restart is met by calling again with
		 * the same request_id: the same sheet, never a second one */
		int rc = call(t, "CreateSheet", json_incref(params), true, &r, &err);
		if (rc == 0) {
			t->sheet = r;
			break;
		}
		if (rc != VTC_ERROR_REPLY) {
			json_decref(params);
			return rc;
		}
		bool again = false;
		if (!strcmp(err, "NotLoggedIn")) {
			rc = submit_pin(t, jstr(r, "target", "practitioner"), -1);
			again = rc == 0;
		} else if (!strcmp(err, "SignerUnavailable") && now_s() < end) {
			say("%s: trying again", err); /* the signer opening its key */
			sleep_s(0.5);
			again = true;
		} else if (!strcmp(err, "RateLimited")) {
			sleep_s((double)json_integer_value(json_object_get(r, "retry_after_s")));
			again = true;
		} else {
			size_t i;
			json_t *x;
			json_array_foreach(json_object_get(r, "errors"), i, x) /* InvalidSheet: every problem */
				say("  %s: %s", jstr(x, "field", "?"), jstr(x, "reason", "?"));
			json_decref(params);
			return named_error(t, err, r);
		}
		free(err);
		json_decref(r);
		if (!again) {
			json_decref(params);
			return rc;
		}
	}
	json_decref(params);
	json_t *s = t->sheet;
	say("sheet created: id=%s seq=%lld state=%s care_date=%s due_date=%s mode=%s", jstr(s, "id", "?"),
	    (long long)json_integer_value(json_object_get(s, "seq")), jstr(s, "state", "?"),
	    jstr(s, "care_date", "?"), jstr(s, "due_date", "?"), jstr(s, "mode", "?"));
	return 0;
}

/* ------------------------------------------ 7. accepted, then paid */

static int
rank(const char *state)
{
	if (!strcmp(state, "queued") || !strcmp(state, "sending"))
		return 0;
	if (!strcmp(state, "accepted"))
		return 1;
	if (!strcmp(state, "paid"))
		return 2;
	return -1;
}

/* The sheet's state as the queue says (GetSheet): the truth after a lost
 * stream. */
static int
sheet_state(struct till *t, char *state, size_t cap)
{
	json_t *r;
	char *err;
	int rc = call(t, "GetSheet", json_pack("{s:s}", "id", jstr(t->sheet, "id", "")), true, &r, &err);
	if (rc == VTC_ERROR_REPLY)
		return named_error(t, err, r);
	if (rc == 0)
		snprintf(state, cap, "%s", jstr(json_object_get(r, "meta"), "state", "?"));
	json_decref(r);
	return rc;
}

static int
follow(struct till *t, char *state, size_t cap, json_int_t *amount)
{
	const char *sid = jstr(t->sheet, "id", "");
	double end = now_s() + t->follow_timeout, next_look = 0;
	snprintf(state, cap, "%s", jstr(t->sheet, "state", "queued"));
	for (;;) {
		if (!strcmp(state, "rejected") || !strcmp(state, "refused")) {
			const char *name = !strcmp(state, "rejected") ? "SheetRejected" : "SheetRefused";
			json_t *r;
			char *err;
			int rc = call(t, "GetSheet", json_pack("{s:s}", "id", sid), true, &r, &err);
			if (rc)
				return rc == VTC_ERROR_REPLY ? named_error(t, err, r) : rc;
			const char *code = jstr(json_object_get(r, "meta"), "code", "?");
			say("%s: code %s: %s", name, code, jstr(r, "reason", "?"));
			rc = stop(t, EXIT_ERROR, json_pack("{s:s,s:s,s:s}", "error", name, "id", sid, "code", code));
			json_decref(r);
			return rc;
		}
		if (rank(state) >= rank(t->until))
			return 0;
		double now = now_s();
		if (now >= end) {
			say("no answer from the insurer within %.0f s: the sheet stays queued, nothing is lost",
			    t->follow_timeout);
			return stop(t, EXIT_TIMEOUT, json_pack("{s:s,s:s,s:s}", "error", "Timeout", "id", sid,
			                                       "state", state));
		}
		if (now >= next_look) {
			/* events say it first; GetSheet is the truth after a lost stream */
			int rc = sheet_state(t, state, cap);
			if (rc)
				return rc;
			next_look = now + t->poll_interval;
			continue;
		}
		json_t *e;
		int rc = next_event(t, (end < next_look ? end : next_look) - now, &e);
		if (rc)
			return rc;
		if (is_event(e, "Resubscribed"))
			next_look = 0;
		else if (e && !strcmp(jstr(e, "id", ""), sid)) {
			if (is_event(e, "SheetAccepted")) {
				say("SheetAccepted: the insurer holds the sheet%s",
				    json_is_true(json_object_get(e, "duplicate")) ? " (again)" : "");
				if (strcmp(state, "paid"))
					snprintf(state, cap, "accepted");
			} else if (is_event(e, "SheetPaid")) {
				*amount = json_integer_value(json_object_get(e, "amount"));
				say("SheetPaid: %.2f EUR on %s", (double)*amount / 100, jstr(e, "date", "?"));
				snprintf(state, cap, "paid");
			} else if (is_event(e, "SheetRejected")) {
				snprintf(state, cap, "rejected");
			} else if (is_event(e, "SheetRefused")) {
				snprintf(state, cap, "refused");
			}
		}
		json_decref(e);
	}
}

/* --------------------------------------------------------------- main */

static const char USAGE[] =
	"usage: till [--socket PATH] [--reader NAME] [--beneficiary N] [--act CODE:COEF:CENTS ...]\n"
	"            [--insurer REGIME:CAISSE:CENTRE] [--request-id ID] [--card-timeout S]\n"
	"            [--rights-timeout S] [--follow-timeout S] [--poll-interval S] [--call-timeout S]\n"
	"            [--reconnect-timeout S] [--until queued|accepted|paid] [--lose-answer]\n"
	"A pharmacy till's whole flow against vitaled (docs/till-integration.md).\n";

static int
usage(const char *msg)
{
	fprintf(stderr, "till: %s\n%s", msg, USAGE);
	return EXIT_USAGE;
}

static bool
parse_seconds(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < 0 || v > 86400)
		return false;
	*out = v;
	return true;
}

static bool
parse_act(const char *s, struct act *a)
{
	char tail;
	return sscanf(s, "%15[^:]:%ld:%ld%c", a->code, &a->coef, &a->cents, &tail) == 3 && a->coef >= 0 &&
	       a->cents >= 0;
}

static int
parse_args(struct till *t, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		double *sec = !strcmp(o, "--card-timeout")        ? &t->card_timeout
		              : !strcmp(o, "--rights-timeout")    ? &t->rights_timeout
		              : !strcmp(o, "--follow-timeout")    ? &t->follow_timeout
		              : !strcmp(o, "--poll-interval")     ? &t->poll_interval
		              : !strcmp(o, "--call-timeout")      ? &t->call_timeout
		              : !strcmp(o, "--reconnect-timeout") ? &t->reconnect_timeout
		                                                  : NULL;
		static const char *const valued[] = { "--socket", "--reader", "--beneficiary", "--act",
		                                      "--insurer", "--request-id", "--until" };
		bool known = sec != NULL;
		for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
			known = known || !strcmp(o, valued[k]);
		if (!strcmp(o, "--help")) {
			fputs(USAGE, stdout);
			return -1;
		}
		if (!strcmp(o, "--lose-answer")) {
			t->lose_answer = true;
			continue;
		}
		if (!known)
			return usage("unknown option");
		if (!v)
			return usage("an option without its value");
		i++;
		if (sec) {
			if (!parse_seconds(v, sec))
				return usage("a time in seconds expected");
		} else if (!strcmp(o, "--socket")) {
			t->socket = v;
		} else if (!strcmp(o, "--reader")) {
			t->reader_opt = v;
		} else if (!strcmp(o, "--beneficiary")) {
			char *end;
			long n = strtol(v, &end, 10);
			if (*end || end == v || n < 0 || n > 99)
				return usage("--beneficiary: 0..99");
			t->beneficiary = (int)n;
		} else if (!strcmp(o, "--act")) {
			if (t->nacts >= MAX_ACTS || !parse_act(v, &t->acts[t->nacts]))
				return usage("--act CODE:COEFFICIENT:CENTS (at most 16)");
			t->nacts++;
		} else if (!strcmp(o, "--insurer")) {
			char a[8], b[8], c[8], tail;
			if (sscanf(v, "%7[^:]:%7[^:]:%7[^:]%c", a, b, c, &tail) != 3)
				return usage("--insurer REGIME:CAISSE:CENTRE");
			t->insurer = v;
		} else if (!strcmp(o, "--request-id")) {
			if (strlen(v) < 1 || strlen(v) > 64)
				return usage("--request-id: 1 to 64 characters");
			snprintf(t->request_id, sizeof(t->request_id), "%s", v);
		} else if (!strcmp(o, "--until")) {
			if (rank(v) < 0)
				return usage("--until queued|accepted|paid");
			t->until = v;
		}
	}
	if (t->nacts == 0)
		parse_act("C:1:2650", &t->acts[t->nacts++]);
	if (!t->request_id[0])
		snprintf(t->request_id, sizeof(t->request_id), "till-%ld-%lld", (long)getpid(),
		         (long long)time(NULL));
	return 0;
}

static int
run(struct till *t, char *state, size_t cap, json_int_t *amount)
{
	json_t *card = NULL;
	int rc;
	if ((rc = hello(t)) || (rc = subscribe(t)) || (rc = practitioner(t)) || (rc = wait_card(t, &card)) ||
	    (rc = holder_and_rights(t, &card)) || (rc = create_sheet(t)))
		goto out;
	rc = follow(t, state, cap, amount);
out:
	json_decref(card);
	return rc;
}

int
main(int argc, char **argv)
{
	struct till t = {
		.until = "paid", .insurer = "01:751:0012", .card_timeout = 60, .rights_timeout = 5,
		.follow_timeout = 120, .poll_interval = 5, .call_timeout = 30, .reconnect_timeout = 30,
	};
	int rc = parse_args(&t, argc, argv);
	if (rc)
		return rc < 0 ? EXIT_OK : rc;
	json_set_alloc_funcs(malloc, wiping_free);
	char state[32] = "";
	json_int_t amount = -1;
	rc = run(&t, state, sizeof(state), &amount);
	if (rc == 0) {
		/* amount: null when paid while we were not watching (GetSheet has none) */
		json_t *res = json_pack("{s:s,s:s,s:O,s:s,s:o,s:s}", "status", "ok", "id", jstr(t.sheet, "id", ""),
		                        "seq", json_object_get(t.sheet, "seq"), "state", state, "amount",
		                        amount >= 0 ? json_integer(amount) : json_null(), "request_id", t.request_id);
		stop(&t, 0, res);
	} else if (!t.result) {
		t.result = json_pack("{s:s}", "error", "Failed");
	}
	char *line = json_dumps(t.result, JSON_COMPACT);
	printf("RESULT %s\n", line ? line : "{}");
	free(line);
	json_decref(t.result);
	json_decref(t.sheet);
	vtc_close(t.conn);
	vtc_close(t.watch);
	return rc;
}
