/* Metrics: counters, the exposition, GetMetrics and the textfile; see
 * metrics.h. */
#include "daemon/core/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/daemon.h"
#include "lib/clock.h"
#include "lib/log.h"

static const struct {
	const char *name, *label, *help;
} families[METRICS_NCOUNTERS] = {
	[METRICS_CARDS_READ] = { "vitaled_cards_read_total", "profile",
	                         "Cards read since start, by the profile that read them." },
	[METRICS_CARD_ERRORS] = { "vitaled_card_errors_total", NULL,
	                          "Card reads that failed since start." },
	[METRICS_UPLOAD_ATTEMPTS] = { "vitaled_upload_attempts_total", NULL,
	                              "Batches of sheets sent to the insurer since start." },
	[METRICS_UPLOAD_FAILURES] = { "vitaled_upload_failures_total", NULL,
	                              "Exchanges with the insurer that failed since start "
	                              "(the sheets wait for the next try)." },
	[METRICS_PIN_FAILURES] = { "vitaled_pin_failures_total", "target",
	                           "Wrong PINs (target practitioner or card) and wrong unblock "
	                           "codes (target unblock) since start." },
};

#define NCELLS 64
#define LABEL_MAX 48
static struct cell {
	enum metrics_counter c;
	char label[LABEL_MAX];
	unsigned long long n;
	bool used;
} cells[NCELLS];

/* counts of labels that found no cell, shown under the label "other" */
static unsigned long long overflow[METRICS_NCOUNTERS];

static struct {
	metrics_fn fn;
	void *arg;
} providers[8];
static size_t nproviders;

static struct {
	struct daemon *d;
	uint64_t timer;
	bool failing;
} M;

void
metrics_inc(enum metrics_counter c, const char *label)
{
	if ((unsigned)c >= METRICS_NCOUNTERS)
		return;
	char l[LABEL_MAX];
	snprintf(l, sizeof(l), "%s", families[c].label ? (label && *label ? label : "unknown") : "");
	struct cell *free_cell = NULL;
	for (size_t i = 0; i < NCELLS; i++) {
		if (cells[i].used && cells[i].c == c && !strcmp(cells[i].label, l)) {
			cells[i].n++;
			return;
		}
		if (!cells[i].used && !free_cell)
			free_cell = &cells[i];
	}
	if (!free_cell) { /* a label never seen, with every cell taken: counted under "other" */
		overflow[c]++;
		return;
	}
	*free_cell = (struct cell){ c, "", 1, true };
	memcpy(free_cell->label, l, sizeof(l));
}

int
metrics_add_provider(metrics_fn fn, void *arg)
{
	if (nproviders >= sizeof(providers) / sizeof(providers[0]))
		return -ENOSPC;
	providers[nproviders].fn = fn;
	providers[nproviders++].arg = arg;
	return 0;
}

void
metrics_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
put_escaped(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

/* name{k1="v1",k2="v2"} v: kv holds n pairs. */
static void
sample_kv(FILE *f, const char *name, const char *const *kv, size_t n, double v)
{
	fputs(name, f);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s%s=\"", i ? "," : "{", kv[2 * i]);
		put_escaped(f, kv[2 * i + 1] ? kv[2 * i + 1] : "");
		fputc('"', f);
	}
	if (n)
		fputc('}', f);
	if (isnan(v))
		fputs(" NaN\n", f);
	else if (v == floor(v) && fabs(v) < 1e15)
		fprintf(f, " %lld\n", (long long)v);
	else
		fprintf(f, " %.17g\n", v);
}

void
metrics_sample(FILE *f, const char *name, const char *label, const char *value, double v)
{
	const char *kv[2] = { label, value };
	sample_kv(f, name, kv, label ? 1 : 0, v);
}

/* ISO 8601 UTC ("2025-01-31T08:15:02.123Z") or a date ("2025-01-31") as
 * seconds since the epoch; -1 when it is neither. */
static double
parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%d", &tm);
	}
	if (!end)
		return -1;
	return (double)timegm(&tm);
}

static double
jnum(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *
jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void
write_readers(FILE *f, json_t *st)
{
	json_t *readers = json_object_get(st, "readers"), *r;
	size_t i;
	metrics_family(f, "vitaled_readers", "gauge", "Card readers the drivers report.");
	metrics_sample(f, "vitaled_readers", NULL, NULL, (double)json_array_size(readers));
	metrics_family(f, "vitaled_reader_state", "gauge",
	               "1 for each reader in its state (absent, present, reading, ready, error ...).");
	json_array_foreach(readers, i, r) {
		const char *kv[] = { "reader", jstr(r, "name"), "driver", jstr(r, "driver"), "state",
		                     jstr(r, "state") };
		sample_kv(f, "vitaled_reader_state", kv, 3, 1);
	}
	json_t *drivers = json_object_get(st, "drivers");
	metrics_family(f, "vitaled_driver_up", "gauge", "1 when the reader driver is up.");
	json_array_foreach(drivers, i, r)
		metrics_sample(f, "vitaled_driver_up", "driver", jstr(r, "name"),
		               jstr(r, "state") && !strcmp(jstr(r, "state"), "up"));
}

static void
write_queue(FILE *f, json_t *st, double now)
{
	json_t *q = json_object_get(st, "queue"), *u = json_object_get(st, "uploader");
	const char *oldest = jstr(q, "oldest"), *due = jstr(q, "next_due");
	double t = oldest ? parse_time(oldest) : -1;
	metrics_family(f, "vitaled_oldest_waiting_sheet_age_seconds", "gauge",
	               "Age of the oldest sheet waiting for upload (queued or sending); 0 when none waits.");
	metrics_sample(f, "vitaled_oldest_waiting_sheet_age_seconds", NULL, NULL,
	               t >= 0 && now > t ? floor(now - t) : 0);
	metrics_family(f, "vitaled_next_due_timestamp_seconds", "gauge",
	               "The nearest due date of a waiting sheet (its midnight UTC); absent when none waits.");
	if (due && parse_time(due) >= 0)
		metrics_sample(f, "vitaled_next_due_timestamp_seconds", NULL, NULL, parse_time(due));
	metrics_family(f, "vitaled_uploader_state", "gauge",
	               "1 for the uploader's state (disabled, idle, sending, offline, error).");
	metrics_sample(f, "vitaled_uploader_state", "state", jstr(u, "state"), 1);
	static const char *const keys[] = { "waiting", "rejected", "no_cert", "due_soon", "overdue" };
	static const char *const help[] = {
		"Sheets waiting for upload (queued or sending).",
		"Sheets the insurer rejected (final, kept).",
		"Queued sheets whose signing certificate is unknown (they cannot upload).",
		"Waiting sheets due within [insurer] due_margin_days.",
		"Waiting sheets past their due date.",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		double v = jnum(u, keys[i]);
		char name[64];
		snprintf(name, sizeof(name), "vitaled_sheets_%s", keys[i]);
		metrics_family(f, name, "gauge", help[i]);
		metrics_sample(f, name, NULL, NULL, isnan(v) ? 0 : v);
	}
}

void
metrics_write_counters(FILE *f)
{
	for (int c = 0; c < METRICS_NCOUNTERS; c++) {
		metrics_family(f, families[c].name, "counter", families[c].help);
		bool any = false, other = false;
		for (size_t i = 0; i < NCELLS; i++)
			if (cells[i].used && cells[i].c == (enum metrics_counter)c) {
				bool o = !strcmp(cells[i].label, "other");
				metrics_sample(f, families[c].name, families[c].label, cells[i].label,
				               (double)(cells[i].n + (o ? overflow[c] : 0)));
				any = true;
				other = other || o;
			}
		if (overflow[c] && !other)
			metrics_sample(f, families[c].name, families[c].label, "other", (double)overflow[c]);
		if (!any && !families[c].label)
			metrics_sample(f, families[c].name, NULL, NULL, 0);
	}
}

static char *
exposition(struct daemon *d, bool up)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	json_t *st = status_build(d, false);
	double now = (double)clock_real_ms() / 1000.0;
	metrics_family(f, "vitaled_up", "gauge", "1 while vitaled runs (0: written as it stopped).");
	metrics_sample(f, "vitaled_up", NULL, NULL, up);
	metrics_family(f, "vitaled_info", "gauge", "The daemon's version, terminal id and mode.");
	const char *kv[] = { "version", VITALED_VERSION, "terminal_id", d->terminal_id, "mode",
		             d->cfg->mode };
	sample_kv(f, "vitaled_info", kv, 3, 1);
	metrics_family(f, "vitaled_uptime_seconds", "gauge", "Seconds since the daemon started.");
	metrics_sample(f, "vitaled_uptime_seconds", NULL, NULL, jnum(st, "uptime_s"));
	write_readers(f, st);
	write_queue(f, st, now);
	json_t *sg = json_object_get(st, "signer");
	if (json_is_object(sg)) {
		metrics_family(f, "vitaled_signer_state", "gauge",
		               "1 for the signer's state (disabled, no-token, locked, ready, blocked, error).");
		const char *skv[] = { "backend", jstr(sg, "backend"), "state", jstr(sg, "state") };
		sample_kv(f, "vitaled_signer_state", skv, 2, 1);
	}
	metrics_write_counters(f);
	for (size_t i = 0; i < nproviders; i++)
		providers[i].fn(f, providers[i].arg);
	metrics_family(f, "vitaled_api_clients", "gauge", "Connections open on the API socket.");
	metrics_sample(f, "vitaled_api_clients", NULL, NULL, d->api ? vl_server_clients(d->api) : 0);
	json_decref(st);
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

char *
metrics_text(struct daemon *d)
{
	return exposition(d, true);
}

/* ------------------------------------------------------------------ */
/* the textfile */

static int
write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

static void
write_textfile(struct daemon *d, bool up)
{
	const char *path = d->cfg->metrics_textfile;
	char tmp[4200];
	char *text = exposition(d, up);
	int r = -ENOMEM;
	if (text && snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) < (int)sizeof(tmp)) {
		/* not *.prom: the collector skips it until the rename */
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
		/* readable by node_exporter's user, whatever the daemon's umask */
		r = fd < 0 ? -errno : fchmod(fd, 0644) < 0 ? -errno : write_all(fd, text, strlen(text));
		if (fd >= 0 && close(fd) < 0 && r == 0)
			r = -errno;
		if (r == 0 && rename(tmp, path) < 0)
			r = -errno;
		if (r < 0 && fd >= 0)
			unlink(tmp);
	}
	free(text);
	if (r < 0 && !M.failing)
		log_warn("metrics: cannot write %s: %s (tried again every %ld s)", path, strerror(-r),
		         d->cfg->metrics_interval_s);
	else if (r == 0 && M.failing)
		log_notice("metrics: %s written again", path);
	M.failing = r < 0;
}

static void
textfile_tick(struct loop *l, void *arg)
{
	struct daemon *d = arg;
	M.timer = 0;
	write_textfile(d, true);
	M.timer = loop_timer_add(l, (uint64_t)d->cfg->metrics_interval_s * 1000u, textfile_tick, d);
}

/* ------------------------------------------------------------------ */
/* GetMetrics */

static void
append_counter(json_t *counters, const struct cell *c)
{
	const char *ln = families[c->c].label;
	json_t *o = json_pack("{s:s,s:I}", "name", families[c->c].name, "value", (json_int_t)c->n);
	if (ln) {
		json_object_set_new(o, "label", json_string(ln));
		json_object_set_new(o, "label_value", json_string(c->label));
	}
	json_array_append_new(counters, o);
}

static int
m_get_metrics(struct vl_call *call, json_t *params, void *arg)
{
	struct daemon *d = arg;
	if (json_object_size(params) != 0)
		return vl_reply_invalid_param(call, json_object_iter_key(json_object_iter(params)));
	char *text = metrics_text(d);
	if (!text)
		return -ENOMEM;
	json_t *counters = json_array();
	bool other[METRICS_NCOUNTERS] = { false };
	for (size_t i = 0; i < NCELLS; i++) {
		if (!cells[i].used)
			continue;
		struct cell c = cells[i];
		if (!strcmp(c.label, "other")) {
			c.n += overflow[c.c];
			other[c.c] = true;
		}
		append_counter(counters, &c);
	}
	for (int k = 0; k < METRICS_NCOUNTERS; k++)
		if (overflow[k] && !other[k]) {
			struct cell c = { (enum metrics_counter)k, "other", overflow[k], true };
			append_counter(counters, &c);
		}
	json_t *reply = json_pack("{s:s,s:o}", "text", text, "counters", counters);
	free(text);
	return vl_reply(call, reply);
}

int
metrics_init(struct daemon *d)
{
	M.d = d;
	int r = vl_server_add_method(d->api, TERMINAL_IFACE ".GetMetrics", m_get_metrics, d, 0);
	if (r < 0)
		return r;
	if (d->cfg->metrics_textfile[0]) {
		/* first write at once; then every interval_s */
		textfile_tick(d->loop, d);
		log_info("metrics: writing %s every %ld s", d->cfg->metrics_textfile,
		         d->cfg->metrics_interval_s);
	}
	return 0;
}

void
metrics_fini(struct daemon *d)
{
	if (M.timer)
		loop_timer_cancel(d->loop, M.timer);
	M.timer = 0;
	if (d->cfg->metrics_textfile[0])
		write_textfile(d, false); /* the last word: vitaled_up 0 */
	nproviders = 0;
	M.d = NULL;
}
