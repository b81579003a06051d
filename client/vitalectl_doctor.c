/* vitalectl doctor: one line per check of a terminal's set-up, each with
 * what to do when it fails, from what the daemon reports (GetStatus,
 * GetSigner, GetDiagnostics). Levels: ok, warn (works, but look at it), FAIL.
 * Exit 0 when nothing failed, 1 when a check failed, 3 when the daemon
 * cannot be reached (then nothing else can be checked). --json: an array
 * of {check, level, detail, fix}.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/vitalectl.h"

#define DISK_FAIL_BYTES (100ll << 20)
#define DISK_WARN_BYTES (500ll << 20)
#define CERT_WARN_DAYS 30
#define SKEW_FAIL_S 300

struct doc {
	struct ctl *ctl;
	json_t *out; /* --json rows */
	int failed, warned;
};

static void
row(struct doc *D, const char *level, const char *check, const char *fix, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void
row(struct doc *D, const char *level, const char *check, const char *fix, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (!strcmp(level, "FAIL"))
		D->failed++;
	else if (!strcmp(level, "warn"))
		D->warned++;
	else
		fix = NULL;
	if (D->ctl->json) {
		json_t *o = json_pack("{s:s,s:s,s:s}", "check", check, "level", level, "detail", detail);
		if (fix)
			json_object_set_new(o, "fix", json_string(fix));
		json_array_append_new(D->out, o);
		return;
	}
	printf("%-4s  %-13s %s%s%s\n", level, check, detail, fix ? "\n      -> " : "", fix ? fix : "");
}

static const char *
s_(json_t *o, const char *k)
{
	return jstr(o, k, NULL);
}

static json_t *
driver(json_t *st, const char *name)
{
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(st, "drivers"), i, d)
		if (s_(d, "name") && !strcmp(s_(d, "name"), name))
			return d;
	return NULL;
}

static void
check_readers(struct doc *D, json_t *st)
{
	json_t *pc = driver(st, "pcsc"), *nfc = driver(st, "nfc");
	const char *ps = pc ? s_(pc, "state") : "absent", *ns = nfc ? s_(nfc, "state") : "absent";
	if (!ps || !strcmp(ps, "disabled") || !strcmp(ps, "absent"))
		row(D, "ok", "pcscd", NULL, "not used ([pcsc] enabled = false)");
	else if (!strcmp(ps, "up"))
		row(D, "ok", "pcscd", NULL, "reachable");
	else
		row(D, "FAIL", "pcscd", "start it: systemctl start pcscd.socket (or pcscd); check "
		                        "PCSCLITE_CSOCK_NAME if set",
		    "%s%s%s", ps, s_(pc, "reason") ? ": " : "", s_(pc, "reason") ? s_(pc, "reason") : "");
	size_t n = json_array_size(json_object_get(st, "readers"));
	if (n)
		row(D, "ok", "readers", NULL, "%zu seen", n);
	else
		row(D, "FAIL", "readers", "plug a reader in; pcsc_scan lists what pcscd sees; for NFC "
		                          "see [nfc] device", "none seen");
	if (!ns || !strcmp(ns, "disabled") || !strcmp(ns, "absent"))
		row(D, "ok", "nfc", NULL, "no NFC device configured");
	else if (!strcmp(ns, "up"))
		row(D, "ok", "nfc", NULL, "device open");
	else
		row(D, "FAIL", "nfc", "check [nfc] device (e.g. pn532_uart:/dev/ttyUSB0), that the "
		                      "device is plugged in and the vitaled user may open it (group dialout)",
		    "%s%s%s", ns, s_(nfc, "reason") ? ": " : "", s_(nfc, "reason") ? s_(nfc, "reason") : "");
}

static void
check_signer(struct doc *D)
{
	json_t *sg = NULL;
	char *err = NULL;
	int rc = ctl_connect(D->ctl);
	if (rc || vtc_call(D->ctl->conn, IFACE ".GetSigner", NULL, 0, &sg, &err) != 0) {
		row(D, "FAIL", "signer", "run vitalectl doctor as root or a user of [api] allowed_users",
		    "cannot ask the daemon: %s", err ? err : "no answer");
		free(err);
		json_decref(sg);
		return;
	}
	const char *state = s_(sg, "state") ? s_(sg, "state") : "?";
	if (!strcmp(state, "ready"))
		row(D, "ok", "signer", NULL, "%s, ready (%s)", s_(sg, "backend"),
		    s_(sg, "who") ? s_(sg, "who") : "?");
	else if (!strcmp(state, "locked") || !strcmp(state, "no-token") || !strcmp(state, "starting"))
		row(D, "warn", "signer", "give the PIN (vitalectl pin) or insert the card; sheets are "
		                         "signed once it is ready",
		    "%s, %s%s%s", s_(sg, "backend"), state, s_(sg, "reason") ? ": " : "",
		    s_(sg, "reason") ? s_(sg, "reason") : "");
	else
		row(D, "FAIL", "signer", !strcmp(state, "disabled") ? "configure [signer] (vitaled.conf(5))"
		                          : "see the reason; a blocked PIN needs the card's unblock code",
		    "%s, %s%s%s", s_(sg, "backend") ? s_(sg, "backend") : "?", state,
		    s_(sg, "reason") ? ": " : "", s_(sg, "reason") ? s_(sg, "reason") : "");
	json_t *cert = json_object_get(sg, "certificate");
	json_t *dg = NULL;
	char *derr = NULL;
	json_t *chain = NULL;
	if (vtc_call(D->ctl->conn, IFACE ".GetDiagnostics", NULL, 0, &dg, &derr) == 0)
		chain = json_object_get(dg, "signer_chain");
	free(derr);
	if (json_is_true(json_object_get(chain, "configured"))) {
		/* [insurer] signer_chain overrides the signer's certificate */
		cert = json_pack("{s:b,s:o}", "present", 1, "not_after",
		                 json_incref(json_object_get(chain, "not_after")));
		json_object_set_new(sg, "certificate", cert);
	}
	json_decref(dg);
	if (!strcmp(state, "disabled")) {
		/* nothing to say about a certificate */
	} else if (!json_is_object(cert)) {
		row(D, "warn", "certificate", "give the PIN first: the certificate is read then",
		    "not read yet");
	} else if (!json_is_true(json_object_get(cert, "present"))) {
		row(D, "FAIL", "certificate", "set [signer] cert_file or load the certificate on the token: "
		                              "sheets wait for one before they can be uploaded",
		    "the key has no certificate");
	} else {
		const char *na = s_(cert, "not_after");
		struct tm tm;
		memset(&tm, 0, sizeof(tm));
		double days = NAN;
		if (na && strptime(na, "%Y-%m-%dT%H:%M:%S", &tm))
			days = difftime(timegm(&tm), time(NULL)) / 86400.0;
		if (isnan(days))
			row(D, "warn", "certificate", "check the certificate's dates", "expiry unknown (%s)",
			    na ? na : "none");
		else if (days < 0)
			row(D, "FAIL", "certificate", "renew the practitioner's certificate", "expired on %s",
			    na);
		else if (days < CERT_WARN_DAYS)
			row(D, "warn", "certificate", "renew the practitioner's certificate soon",
			    "expires in %.0f days (%s)", floor(days), na);
		else
			row(D, "ok", "certificate", NULL, "expires in %.0f days (%s)", floor(days), na);
	}
	json_decref(sg);
}

static void
check_insurer(struct doc *D, json_t *st)
{
	json_t *u = json_object_get(st, "uploader");
	const char *state = s_(u, "state") ? s_(u, "state") : "?", *why = s_(u, "reason");
	if (!strcmp(state, "disabled"))
		row(D, "warn", "insurer", "set [insurer] url and its certificates to upload sheets",
		    "no insurer configured");
	else if (!strcmp(state, "idle") || !strcmp(state, "sending"))
		row(D, "ok", "insurer", NULL, "%s, last reached %s", state,
		    s_(u, "last_success") ? s_(u, "last_success") : "not yet since start");
	else
		row(D, "FAIL", "insurer",
		    !strcmp(state, "offline") ? "check the network and [insurer] url; sheets wait and go "
		                                "when it is back"
		                              : "check [insurer] ca_file, client_cert and client_key, and "
		                                "that the insurer knows this terminal",
		    "%s%s%s", state, why ? ": " : "", why ? why : "");
	long long overdue = json_integer_value(json_object_get(u, "overdue"));
	long long soon = json_integer_value(json_object_get(u, "due_soon"));
	const char *next = s_(u, "next_due") ? s_(u, "next_due") : s_(json_object_get(st, "queue"), "next_due");
	if (overdue > 0)
		row(D, "FAIL", "due dates", "upload now (vitalectl upload --wait) and see why they wait "
		                            "(vitalectl sheet list --state queued)",
		    "%lld waiting sheets past their due date", overdue);
	else if (soon > 0)
		row(D, "warn", "due dates", "upload soon: vitalectl upload --wait",
		    "%lld waiting sheets due within the margin (next %s)", soon, next ? next : "?");
	else
		row(D, "ok", "due dates", NULL, "no waiting sheet near its due date%s%s",
		    next ? "; next " : "", next ? next : "");
}

static void
check_queue(struct doc *D, json_t *st)
{
	json_t *q = json_object_get(st, "queue");
	const char *integ = s_(q, "integrity") ? s_(q, "integrity") : "?";
	if (!strcmp(integ, "ok"))
		row(D, "ok", "queue", NULL, "%s, integrity ok, %lld sheets", s_(q, "state"),
		    (long long)json_integer_value(json_object_get(q, "total")));
	else if (!strcmp(integ, "checking"))
		row(D, "warn", "queue", "run vitalectl doctor again in a moment",
		    "integrity check still running");
	else
		row(D, "FAIL", "queue", "stop vitaled, keep a copy of the state directory and restore the "
		                        "queue from a backup (docs/queue.md); sheets are kept",
		    "integrity check failed: %s", s_(q, "integrity_error") ? s_(q, "integrity_error") : "?");
}

static void
check_diag(struct doc *D)
{
	json_t *r = NULL;
	char *err = NULL;
	if (vtc_call(D->ctl->conn, IFACE ".GetDiagnostics", NULL, 0, &r, &err) != 0) {
		row(D, "FAIL", "state dir", "run vitalectl doctor as root or a user of [api] allowed_users",
		    "cannot ask the daemon: %s", err ? err : "no answer");
		free(err);
		json_decref(r);
		return;
	}
	json_t *sd = json_object_get(r, "state_dir");
	const char *path = s_(sd, "path") ? s_(sd, "path") : "?", *mode = s_(sd, "mode");
	if (s_(sd, "error"))
		row(D, "FAIL", "state dir", "create it (vitaled does at start) or fix [daemon] state_dir",
		    "%s: %s", path, s_(sd, "error"));
	else if (json_integer_value(json_object_get(sd, "uid")) !=
	         json_integer_value(json_object_get(sd, "daemon_uid")) ||
	         !json_is_true(json_object_get(sd, "writable")))
		row(D, "FAIL", "state dir", "chown the directory to the daemon's user (vitaled)",
		    "%s: owner uid %lld, the daemon runs as uid %lld%s", path,
		    (long long)json_integer_value(json_object_get(sd, "uid")),
		    (long long)json_integer_value(json_object_get(sd, "daemon_uid")),
		    json_is_true(json_object_get(sd, "writable")) ? "" : ", not writable");
	else if (!mode || strcmp(mode, "0700") != 0)
		row(D, "FAIL", "state dir", "chmod 0700 the directory (it holds the queue's key)",
		    "%s: mode %s", path, mode ? mode : "?");
	else
		row(D, "ok", "state dir", NULL, "%s: owner and mode 0700 right", path);
	long long fr = json_integer_value(json_object_get(sd, "free_bytes"));
	long long tot = json_integer_value(json_object_get(sd, "total_bytes"));
	if (!json_is_integer(json_object_get(sd, "free_bytes")))
		row(D, "warn", "disk", "check the file system of the state directory", "free space unknown");
	else if (fr < DISK_FAIL_BYTES)
		row(D, "FAIL", "disk", "free space on the state directory's file system: new sheets are "
		                       "refused (QueueFull) when it is full",
		    "%lld MiB free of %lld MiB", fr >> 20, tot >> 20);
	else if (fr < DISK_WARN_BYTES)
		row(D, "warn", "disk", "free some space soon", "%lld MiB free of %lld MiB", fr >> 20,
		    tot >> 20);
	else
		row(D, "ok", "disk", NULL, "%lld MiB free of %lld MiB", fr >> 20, tot >> 20);
	json_t *ck = json_object_get(r, "clock"), *skew = json_object_get(ck, "insurer_skew_s");
	if (json_is_integer(skew)) {
		long long s = json_integer_value(skew);
		if (llabs(s) > SKEW_FAIL_S)
			row(D, "FAIL", "clock", "set the clock right (timedatectl set-ntp true): care dates, "
			                        "due dates and signatures use it",
			    "%+lld s from the insurer's (its Date %s)", s, s_(ck, "insurer_date"));
		else
			row(D, "ok", "clock", NULL, "%+lld s from the insurer's (checked %s)", s,
			    s_(ck, "checked"));
	} else if (json_is_true(json_object_get(r, "insurer_configured"))) {
		row(D, "warn", "clock", "run vitalectl upload --wait, then doctor again",
		    "not compared yet: no answer from the insurer since start (now %s)", s_(ck, "now"));
	} else {
		row(D, "warn", "clock", "set [insurer] url: the insurer's clock is the reference",
		    "no insurer to compare with (now %s)", s_(ck, "now"));
	}
	json_decref(r);
}

int
cmd_doctor(struct ctl *ctl, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: vitalectl doctor [--json]\n");
		return EXIT_USAGE;
	}
	struct doc D = { .ctl = ctl, .out = json_array() };
	json_t *st = NULL;
	char *err = NULL;
	int rc = ctl_connect(ctl);
	if (rc == 0 && vtc_call(ctl->conn, IFACE ".GetStatus", NULL, 0, &st, &err) != 0)
		rc = EXIT_TRANSPORT;
	if (rc) {
		row(&D, "FAIL", "daemon", "start it: systemctl start vitaled; why it stopped: journalctl "
		                          "-u vitaled", "not reachable at %s", vtc_socket_path(ctl->socket));
		free(err);
	} else {
		row(&D, !strcmp(jstr(st, "state", ""), "running") ? "ok" : "FAIL", "daemon",
		    "see journalctl -u vitaled", "vitaled %s, %s, access %s", jstr(st, "version", "?"),
		    jstr(st, "state", "?"), jstr(st, "access", "?"));
		check_readers(&D, st);
		check_signer(&D);
		check_insurer(&D, st);
		check_queue(&D, st);
		check_diag(&D);
	}
	json_decref(st);
	if (ctl->json) {
		json_t *o = json_pack("{s:o,s:i,s:i}", "checks", D.out, "failed", D.failed, "warnings",
		                      D.warned);
		print_json(o);
		json_decref(o);
	} else {
		printf("%d failed, %d warnings\n", D.failed, D.warned);
		json_decref(D.out);
	}
	return rc ? EXIT_UNREACHABLE : D.failed ? EXIT_REPLY_ERROR : 0;
}
