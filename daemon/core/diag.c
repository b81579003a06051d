/* GetDiagnostics; see diag.h. */
#include "daemon/core/diag.h"

#include <errno.h>
#include <openssl/asn1.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/daemon.h"
#include "lib/clock.h"

static struct {
	int64_t remote_s;  /* the insurer's Date, Unix seconds (0: none yet) */
	int64_t local_ms;  /* this host's clock when it came */
} P;

void
diag_note_peer_clock(int64_t remote_s)
{
	P.remote_s = remote_s;
	P.local_ms = clock_real_ms();
}

static json_t *
iso(int64_t s)
{
	time_t t = (time_t)s;
	struct tm tm;
	char buf[32];
	if (!gmtime_r(&t, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return json_null();
	return json_string(buf);
}

static json_t *
state_dir_json(const char *dir)
{
	struct stat st;
	struct statvfs vf;
	json_t *o = json_pack("{s:s,s:I,s:I}", "path", dir, "daemon_uid", (json_int_t)geteuid(),
	                      "daemon_gid", (json_int_t)getegid());
	if (stat(dir, &st) < 0) {
		json_object_set_new(o, "error", json_string(strerror(errno)));
		return o;
	}
	char mode[8];
	snprintf(mode, sizeof(mode), "%04o", (unsigned)(st.st_mode & 07777));
	json_object_set_new(o, "uid", json_integer((json_int_t)st.st_uid));
	json_object_set_new(o, "gid", json_integer((json_int_t)st.st_gid));
	json_object_set_new(o, "mode", json_string(mode));
	json_object_set_new(o, "writable", json_boolean(access(dir, W_OK | X_OK) == 0));
	if (statvfs(dir, &vf) == 0) {
		json_object_set_new(o, "free_bytes",
		                    json_integer((json_int_t)((unsigned long long)vf.f_bavail * vf.f_frsize)));
		json_object_set_new(o, "total_bytes",
		                    json_integer((json_int_t)((unsigned long long)vf.f_blocks * vf.f_frsize)));
		json_object_set_new(o, "free_inodes", json_integer((json_int_t)vf.f_favail));
	}
	return o;
}

/* The first certificate of [insurer] signer_chain: its notAfter, ISO. */
static json_t *
chain_not_after(const char *path)
{
	FILE *f = path[0] ? fopen(path, "re") : NULL;
	if (!f)
		return json_null();
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	struct tm tm;
	json_t *r = json_null();
	if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
		char buf[32];
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
		r = json_string(buf);
	}
	X509_free(x);
	return r;
}

static int
m_get_diagnostics(struct vl_call *call, json_t *params, void *arg)
{
	struct daemon *d = arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	int64_t now_ms = clock_real_ms();
	json_t *clock = json_pack("{s:o}", "now", iso(now_ms / 1000));
	if (P.remote_s > 0) {
		/* the insurer's clock now, as its last answer implies, minus ours */
		int64_t skew = P.remote_s - P.local_ms / 1000;
		json_object_set_new(clock, "insurer_date", iso(P.remote_s));
		json_object_set_new(clock, "insurer_skew_s", json_integer((json_int_t)skew));
		json_object_set_new(clock, "checked", iso(P.local_ms / 1000));
	}
	json_t *chain = json_pack("{s:b,s:o}", "configured", d->cfg->insurer_signer_chain[0] != '\0',
	                          "not_after", chain_not_after(d->cfg->insurer_signer_chain));
	return vl_reply(call, json_pack("{s:o,s:o,s:b,s:o}", "state_dir",
	                                state_dir_json(d->cfg->state_dir), "clock", clock,
	                                "insurer_configured", d->cfg->insurer_url[0] != '\0',
	                                "signer_chain", chain));
}

int
diag_init(struct daemon *d)
{
	return vl_server_add_method(d->api, TERMINAL_IFACE ".GetDiagnostics", m_get_diagnostics, d,
	                            VL_CONTROL);
}

void
diag_fini(struct daemon *d)
{
	(void)d;
	P.remote_s = 0;
}
