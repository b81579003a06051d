/* Configuration loading: the key table, the INI reader and the printer.
 *
 * The file is read with libinih through ini_parse_stream() and a line
 * reader of our own, so every error can name its line (Debian's libinih is
 * built without INI_HANDLER_LINENO). The first error wins; nothing is
 * applied from a file that has one, so a bad file never half-configures
 * the daemon.
 */
#include "conf/config.h"

#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum ctype { CT_STR, CT_BOOL, CT_INT, CT_OCTAL, CT_ENUM, CT_LIST, CT_LEVEL };

struct ckey {
	const char *section;
	const char *key;
	enum ctype type;
	size_t off;
	const char *def;
	long min, max;
	const char *choices; /* CT_ENUM: "a|b|c" */
	bool secret;
};

#define O(f) offsetof(struct config, f)
/* clang-format off */
static const struct ckey keys[] = {
	{ "daemon", "mode",            CT_ENUM,  O(mode), "clinic", 0, 0, "clinic|till|kiosk", false },
	{ "daemon", "terminal_id",     CT_STR,   O(terminal_id), "", 0, 64, NULL, false },
	{ "daemon", "socket",          CT_STR,   O(socket_path), "/run/vitaled/vitaled.sock", 1, 107, NULL, false },
	{ "daemon", "state_dir",       CT_STR,   O(state_dir), "/var/lib/vitaled", 1, 4000, NULL, false },
	{ "daemon", "log_level",       CT_LEVEL, O(log_level), "info", 0, 0, NULL, false },

	{ "api", "allowed_users",      CT_LIST,  O(allowed_users), "root", 0, 64, NULL, false },
	{ "api", "allowed_groups",     CT_LIST,  O(allowed_groups), "vitaled", 0, 64, NULL, false },
	{ "api", "socket_group",       CT_STR,   O(socket_group), "vitaled", 0, 64, NULL, false },
	{ "api", "socket_mode",        CT_OCTAL, O(socket_mode), "0660", 0600, 0777, NULL, false },
	{ "api", "max_message",        CT_INT,   O(api_max_message), "65536", 1024, 16777216, NULL, false },
	{ "api", "max_clients",        CT_INT,   O(api_max_clients), "64", 1, 4096, NULL, false },
	{ "api", "idle_timeout_s",     CT_INT,   O(api_idle_timeout_s), "30", 1, 86400, NULL, false },
	{ "api", "max_output",         CT_INT,   O(api_max_output), "4194304", 65536, 268435456, NULL, false },

	/* [web]: read by the local web bridge vitaled-web (web/), not by the daemon */
	{ "web", "port",               CT_INT,   O(web_port), "8451", 1, 65535, NULL, false },
	{ "web", "allowed_origins",    CT_LIST,  O(web_allowed_origins), "", 0, 200, NULL, false },
	{ "web", "state_dir",          CT_STR,   O(web_state_dir), "/var/lib/vitaled-web", 1, 4000, NULL, false },
	{ "web", "control_socket",     CT_STR,   O(web_control_socket), "/run/vitaled-web/control.sock", 1, 107, NULL, false },
	{ "web", "pair_timeout_s",     CT_INT,   O(web_pair_timeout_s), "120", 10, 3600, NULL, false },
	{ "web", "kiosk",              CT_BOOL,  O(web_kiosk), "false", 0, 0, NULL, false },
	{ "web", "kiosk_reset_s",      CT_INT,   O(web_kiosk_reset_s), "8", 2, 300, NULL, false },

	{ "pcsc", "enabled",           CT_BOOL,  O(pcsc_enabled), "true", 0, 0, NULL, false },
	{ "pcsc", "backoff_max_ms",    CT_INT,   O(pcsc_backoff_max_ms), "5000", 100, 600000, NULL, false },
	{ "pcsc", "session_timeout_ms", CT_INT,  O(pcsc_session_timeout_ms), "15000", 500, 600000, NULL, false },

	{ "nfc", "device",             CT_LIST,  O(nfc_devices), "", 0, 255, NULL, false },
	{ "nfc", "poll_ms",            CT_INT,   O(nfc_poll_ms), "300", 50, 10000, NULL, false },

	{ "profiles", "dir",           CT_STR,   O(profile_dir), CONFIG_DEFAULT_PROFILE_DIR, 0, 4000, NULL, false },

	{ "digital", "trust_anchor",   CT_LIST,  O(trust_anchors), "", 0, 4000, NULL, false },
	{ "digital", "clock_skew_s",   CT_INT,   O(clock_skew_s), "300", 0, 86400, NULL, false },
	{ "digital", "code_timeout_s", CT_INT,   O(code_timeout_s), "60", 1, 600, NULL, false },
	{ "digital", "issuer_eku",     CT_STR,   O(issuer_eku), "2.999.86.1.1", 3, 200, NULL, false },
	{ "digital", "qr",             CT_BOOL,  O(qr_enabled), "true", 0, 0, NULL, false },
	{ "digital", "qr_one_way",     CT_BOOL,  O(qr_one_way), "false", 0, 0, NULL, false },
	{ "digital", "qr_window_s",    CT_INT,   O(qr_window_s), "120", 10, 3600, NULL, false },
	{ "digital", "qr_challenge_ttl_s", CT_INT, O(qr_challenge_ttl_s), "300", 30, 3600, NULL, false },

	{ "scanner", "device",         CT_LIST,  O(scanner_devices), "", 0, 255, NULL, false },
	{ "scanner", "keyboard",       CT_LIST,  O(scanner_keyboards), "", 0, 255, NULL, false },
	{ "scanner", "keymap",         CT_ENUM,  O(scanner_keymap), "qwerty", 0, 0, "qwerty|azerty", false },
	{ "scanner", "hold_s",         CT_INT,   O(scanner_hold_s), "300", 5, 3600, NULL, false },

	{ "signer", "backend",         CT_ENUM,  O(signer_backend), "none", 0, 0, "none|pkcs11|file", false },
	{ "signer", "module",          CT_STR,   O(signer_module), "", 0, 4000, NULL, false },
	{ "signer", "token",           CT_STR,   O(signer_token), "", 0, 64, NULL, false },
	{ "signer", "key",             CT_STR,   O(signer_key), "", 0, 64, NULL, false },
	{ "signer", "key_file",        CT_STR,   O(signer_key_file), "", 0, 4000, NULL, true },
	{ "signer", "cert_file",       CT_STR,   O(signer_cert_file), "", 0, 4000, NULL, false },
	{ "signer", "pin_idle_timeout_s", CT_INT, O(pin_idle_timeout_s), "900", 0, 86400, NULL, false },

	{ "practitioner", "id",        CT_STR,   O(practitioner_id), "", 0, 32, NULL, false },
	{ "practitioner", "structure", CT_STR,   O(structure_id), "", 0, 32, NULL, false },
	{ "practitioner", "name",      CT_STR,   O(practice_name), "", 0, 100, NULL, false },
	{ "practitioner", "address",   CT_STR,   O(practice_address), "", 0, 200, NULL, false },

	{ "queue", "max_sheets",       CT_INT,   O(queue_max_sheets), "1000000", 1, 100000000, NULL, false },
	{ "queue", "max_bytes",        CT_INT,   O(queue_max_bytes), "2147483647", 65536, LONG_MAX, NULL, false },
	/* R.161-47: the electronic copy is kept at least 90 days */
	{ "queue", "retention_days",   CT_INT,   O(retention_days), "365", 90, 36500, NULL, false },
	{ "queue", "alsace_moselle",   CT_BOOL,  O(alsace_moselle), "false", 0, 0, NULL, false },

	/* the department the terminal works in: its holidays set the due dates */
	{ "terminal", "department",    CT_STR,   O(department), "", 0, 3, NULL, false },

	{ "insurer", "url",            CT_STR,   O(insurer_url), "", 0, 2000, NULL, false },
	{ "insurer", "ca_file",        CT_STR,   O(insurer_ca), "", 0, 4000, NULL, false },
	{ "insurer", "client_cert",    CT_STR,   O(insurer_client_cert), "", 0, 4000, NULL, false },
	{ "insurer", "client_key",     CT_STR,   O(insurer_client_key), "", 0, 4000, NULL, true },
	{ "insurer", "client_key_module", CT_STR, O(insurer_client_key_module), "", 0, 4000, NULL, false },
	{ "insurer", "client_key_pin", CT_STR,   O(insurer_client_key_pin), "", 0, 64, NULL, true },
	{ "insurer", "client_key_pin_file", CT_STR, O(insurer_client_key_pin_file), "", 0, 4000, NULL, false },
	{ "insurer", "upload_interval_s", CT_INT, O(upload_interval_s), "300", 5, 86400, NULL, false },
	{ "insurer", "backoff_base_s", CT_INT,   O(backoff_base_s), "2", 1, 3600, NULL, false },
	{ "insurer", "backoff_cap_s",  CT_INT,   O(backoff_cap_s), "600", 1, 86400, NULL, false },
	{ "insurer", "signer_chain",   CT_STR,   O(insurer_signer_chain), "", 0, 4000, NULL, false },
	{ "insurer", "connect_timeout_s", CT_INT, O(insurer_connect_timeout_s), "10", 1, 10, NULL, false },
	{ "insurer", "timeout_s",      CT_INT,   O(insurer_timeout_s), "60", 1, 60, NULL, false },
	{ "insurer", "low_speed_time_s", CT_INT, O(insurer_low_speed_time_s), "30", 1, 30, NULL, false },
	{ "insurer", "gather_ms",      CT_INT,   O(insurer_gather_ms), "2000", 0, 600000, NULL, false },
	{ "insurer", "returns_interval_s", CT_INT, O(insurer_returns_interval_s), "3600", 10, 604800, NULL, false },
	{ "insurer", "due_margin_days", CT_INT,  O(insurer_due_margin_days), "1", 0, 30, NULL, false },
	{ "insurer", "rights_timeout_ms", CT_INT, O(insurer_rights_timeout_ms), "3000", 100, 60000, NULL, false },

	{ "metrics", "textfile",       CT_STR,   O(metrics_textfile), "", 0, 4000, NULL, false },
	{ "metrics", "interval_s",     CT_INT,   O(metrics_interval_s), "60", 5, 86400, NULL, false },
};
/* clang-format on */
#undef O
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct ckey *
find_key(const char *section, const char *key)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			return &keys[i];
	return NULL;
}

static bool
section_known(const char *section)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, section) == 0)
			return true;
	return false;
}

static void
list_clear(struct config_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

static int
parse_long(const char *v, int base, long *out)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, base);
	if (errno || end == v || *end != '\0')
		return -1;
	*out = x;
	return 0;
}

/* Apply one value. `fresh` marks the first occurrence of a list key in the
 * current source, so a file's list replaces the default rather than adding
 * to it, and repeated lines add up. */
static int
apply(struct config *c, const struct ckey *k, const char *value, bool fresh, char *err,
      size_t errlen)
{
	void *p = (char *)c + k->off;
	long x;

	switch (k->type) {
	case CT_STR:
		if ((long)strlen(value) > k->max) {
			snprintf(err, errlen, "[%s] %s: value longer than %ld characters", k->section,
			         k->key, k->max);
			return -EINVAL;
		}
		if ((long)strlen(value) < k->min) {
			snprintf(err, errlen, "[%s] %s: value must not be empty", k->section, k->key);
			return -EINVAL;
		}
		{
			char *d = strdup(value);
			if (!d)
				return -ENOMEM;
			free(*(char **)p);
			*(char **)p = d;
		}
		return 0;
	case CT_BOOL:
		if (!strcasecmp(value, "true") || !strcasecmp(value, "yes") || !strcmp(value, "1") ||
		    !strcasecmp(value, "on"))
			*(bool *)p = true;
		else if (!strcasecmp(value, "false") || !strcasecmp(value, "no") ||
		         !strcmp(value, "0") || !strcasecmp(value, "off"))
			*(bool *)p = false;
		else {
			snprintf(err, errlen, "[%s] %s: '%s' is not a boolean (true/false)", k->section,
			         k->key, value);
			return -EINVAL;
		}
		return 0;
	case CT_INT:
	case CT_OCTAL:
		if (parse_long(value, k->type == CT_OCTAL ? 8 : 10, &x) < 0) {
			snprintf(err, errlen, "[%s] %s: '%s' is not a%s number", k->section, k->key,
			         value, k->type == CT_OCTAL ? "n octal" : "");
			return -EINVAL;
		}
		if (x < k->min || x > k->max) {
			if (k->type == CT_OCTAL)
				snprintf(err, errlen, "[%s] %s: %s out of range %04lo..%04lo", k->section,
				         k->key, value, k->min, k->max);
			else
				snprintf(err, errlen, "[%s] %s: %s out of range %ld..%ld", k->section,
				         k->key, value, k->min, k->max);
			return -EINVAL;
		}
		*(long *)p = x;
		return 0;
	case CT_LEVEL: {
		static const char *const names[] = { "err", "warning", "notice", "info", "debug" };
		for (int i = 0; i < 5; i++)
			if (!strcasecmp(value, names[i])) {
				*(long *)p = 3 + i;
				return 0;
			}
		snprintf(err, errlen, "[%s] %s: '%s' is not one of err|warning|notice|info|debug",
		         k->section, k->key, value);
		return -EINVAL;
	}
	case CT_ENUM: {
		size_t vl = strlen(value);
		const char *s = k->choices;
		while (s && *s) {
			const char *bar = strchr(s, '|');
			size_t l = bar ? (size_t)(bar - s) : strlen(s);
			if (l == vl && strncmp(s, value, l) == 0) {
				char *d = strdup(value);
				if (!d)
					return -ENOMEM;
				free(*(char **)p);
				*(char **)p = d;
				return 0;
			}
			s = bar ? bar + 1 : NULL;
		}
		snprintf(err, errlen, "[%s] %s: '%s' is not one of %s", k->section, k->key, value,
		         k->choices);
		return -EINVAL;
	}
	case CT_LIST: {
		struct config_list *l = p;
		if (fresh)
			list_clear(l);
		/* a value may hold several items separated by commas or spaces */
		const char *s = value;
		while (*s) {
			while (*s == ',' || *s == ' ' || *s == '\t')
				s++;
			if (!*s)
				break;
			const char *e = s;
			while (*e && *e != ',' && *e != ' ' && *e != '\t')
				e++;
			size_t n = (size_t)(e - s);
			if ((long)n > k->max) {
				snprintf(err, errlen, "[%s] %s: item longer than %ld characters",
				         k->section, k->key, k->max);
				return -EINVAL;
			}
			if (l->n >= CONFIG_LIST_MAX) {
				snprintf(err, errlen, "[%s] %s: more than %d items", k->section, k->key,
				         CONFIG_LIST_MAX);
				return -EINVAL;
			}
			char *d = strndup(s, n);
			if (!d)
				return -ENOMEM;
			l->v[l->n++] = d;
			s = e;
		}
		return 0;
	}
	}
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* reading a file */

struct reader_state {
	FILE *f;
	int line;
	struct config *c;
	const char *path;
	char err[512];
	int first_err_line;
	bool seen[sizeof(keys) / sizeof(keys[0])];
	char cur_section[64];
};

static char *
line_reader(char *str, int num, void *stream)
{
	struct reader_state *rs = stream;
	char *r = fgets(str, num, rs->f);
	if (r)
		rs->line++;
	return r;
}

static int
ini_cb(void *user, const char *section, const char *name, const char *value)
{
	struct reader_state *rs = user;
	char msg[400];

	if (rs->first_err_line)
		return 1; /* keep the first error only */
	if (!section_known(section)) {
		snprintf(msg, sizeof(msg), "unknown section [%s]", section);
		goto bad;
	}
	const struct ckey *k = find_key(section, name);
	if (!k) {
		snprintf(msg, sizeof(msg), "unknown key '%s' in [%s]", name, section);
		goto bad;
	}
	size_t idx = (size_t)(k - keys);
	if (rs->seen[idx] && k->type != CT_LIST) {
		snprintf(msg, sizeof(msg), "[%s] %s set twice", section, name);
		goto bad;
	}
	int r = apply(rs->c, k, value, !rs->seen[idx], msg, sizeof(msg));
	rs->seen[idx] = true;
	if (r < 0)
		goto bad;
	return 1;
bad:
	rs->first_err_line = rs->line;
	snprintf(rs->err, sizeof(rs->err), "%s:%d: %s", rs->path, rs->line, msg);
	return 0;
}

static struct config *
config_defaults(void)
{
	struct config *c = calloc(1, sizeof(*c));
	char err[256];
	if (!c)
		return NULL;
	for (size_t i = 0; i < NKEYS; i++) {
		if (apply(c, &keys[i], keys[i].def, true, err, sizeof(err)) < 0) {
			/* a bad default is a bug in the table */
			config_free(c);
			return NULL;
		}
	}
	return c;
}

int
config_load(const char *path, struct config **out, char *err, size_t errlen)
{
	struct config *c;
	*out = NULL;
	if (errlen)
		err[0] = '\0';

	c = config_defaults();
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (!path) {
		*out = c;
		return 0;
	}
	c->path = strdup(path);
	struct reader_state *rs = calloc(1, sizeof(*rs));
	if (!rs || !c->path) {
		free(rs);
		config_free(c);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	rs->f = fopen(path, "re");
	if (!rs->f) {
		int e = errno;
		snprintf(err, errlen, "%s:0: cannot read: %s", path, strerror(e));
		free(rs);
		config_free(c);
		return -e;
	}
	rs->c = c;
	rs->path = path;
	int r = ini_parse_stream(line_reader, rs, ini_cb, rs);
	fclose(rs->f);
	if (rs->first_err_line) {
		snprintf(err, errlen, "%s", rs->err);
		r = -EINVAL;
	} else if (r != 0) {
		/* a syntax error libinih found itself (e.g. a line without '=') */
		snprintf(err, errlen, "%s:%d: syntax error (expected 'key = value' or '[section]')",
		         path, r > 0 ? r : 0);
		r = -EINVAL;
	}
	free(rs);
	if (r < 0) {
		config_free(c);
		return r;
	}
	*out = c;
	return 0;
}

int
config_set(struct config *c, const char *section, const char *key, const char *value,
           char *err, size_t errlen)
{
	const struct ckey *k = find_key(section, key);
	if (!k) {
		snprintf(err, errlen, "unknown key '%s' in [%s]", key, section);
		return -EINVAL;
	}
	return apply(c, k, value, true, err, errlen);
}

int
config_append(struct config *c, const char *section, const char *key, const char *value,
              char *err, size_t errlen)
{
	const struct ckey *k = find_key(section, key);
	if (!k) {
		snprintf(err, errlen, "unknown key '%s' in [%s]", key, section);
		return -EINVAL;
	}
	return apply(c, k, value, false, err, errlen);
}

/* "" (not set) or exactly a or b decimal digits. */
static int
check_id_digits(const char *v, size_t a, size_t b, const char *name, const char *what, char *err,
                size_t errlen)
{
	size_t n = strlen(v);
	if (n == 0)
		return 0;
	bool digits = true;
	for (size_t i = 0; i < n; i++)
		digits &= v[i] >= '0' && v[i] <= '9';
	if (digits && (n == a || n == b))
		return 0;
	snprintf(err, errlen, "%s must be %s (got %zu characters%s)", name, what, n,
	         digits ? "" : ", not all digits");
	return -EINVAL;
}

bool
config_department_known(const char *d)
{
	static const char *const overseas[] = { "971", "972", "973", "974", "976", "977", "978" };
	if (!strcmp(d, "2A") || !strcmp(d, "2B"))
		return true;
	for (size_t i = 0; i < sizeof(overseas) / sizeof(overseas[0]); i++)
		if (!strcmp(d, overseas[i]))
			return true;
	if (strlen(d) != 2 || d[0] < '0' || d[0] > '9' || d[1] < '0' || d[1] > '9')
		return false;
	int n = (d[0] - '0') * 10 + (d[1] - '0');
	return n >= 1 && n <= 95 && n != 20;
}

int
config_validate(const struct config *c, char *err, size_t errlen)
{
	if (c->socket_path[0] != '/') {
		snprintf(err, errlen, "[daemon] socket must be an absolute path");
		return -EINVAL;
	}
	if (c->state_dir[0] != '/') {
		snprintf(err, errlen, "[daemon] state_dir must be an absolute path");
		return -EINVAL;
	}
	if (!strcmp(c->signer_backend, "pkcs11") && (!c->signer_module[0] || !c->signer_key[0])) {
		snprintf(err, errlen, "[signer] backend = pkcs11 needs module and key");
		return -EINVAL;
	}
	if (!strcmp(c->signer_backend, "file") && !c->signer_key_file[0]) {
		snprintf(err, errlen, "[signer] backend = file needs key_file");
		return -EINVAL;
	}
	if (c->insurer_client_key_pin[0] && c->insurer_client_key_pin_file[0]) {
		snprintf(err, errlen, "[insurer] client_key_pin and client_key_pin_file: set one");
		return -EINVAL;
	}
	if (c->insurer_url[0] && strncmp(c->insurer_url, "https://", 8) != 0) {
		snprintf(err, errlen, "[insurer] url must start with https://");
		return -EINVAL;
	}
	if (c->metrics_textfile[0] &&
	    (c->metrics_textfile[0] != '/' || strlen(c->metrics_textfile) < 6 ||
	     strcmp(c->metrics_textfile + strlen(c->metrics_textfile) - 5, ".prom") != 0)) {
		snprintf(err, errlen, "[metrics] textfile must be an absolute path ending in .prom "
		                      "(node_exporter's textfile collector reads only *.prom)");
		return -EINVAL;
	}
	if (c->backoff_base_s > c->backoff_cap_s) {
		snprintf(err, errlen, "[insurer] backoff_base_s must not exceed backoff_cap_s");
		return -EINVAL;
	}
	/* identifiers that end up in signed sheets: exact length and shape
	 * here, never truncated later (a 12-digit id used to be signed as
	 * 11 digits: another practitioner) */
	if (check_id_digits(c->practitioner_id, 9, 11, "[practitioner] id",
	                    "9 (Assurance Maladie) or 11 (RPPS) digits", err, errlen) < 0 ||
	    check_id_digits(c->structure_id, 9, 14, "[practitioner] structure",
	                    "9 (FINESS) or 14 (SIRET) digits", err, errlen) < 0)
		return -EINVAL;
	if (c->department[0] && !config_department_known(c->department)) {
		snprintf(err, errlen, "[terminal] department: '%s' is not a department vitaled knows "
		                      "(01..95, 2A, 2B, 971..974, 976..978)", c->department);
		return -EINVAL;
	}
	if (c->department[0] && c->alsace_moselle && strcmp(c->department, "57") != 0 &&
	    strcmp(c->department, "67") != 0 && strcmp(c->department, "68") != 0) {
		snprintf(err, errlen, "[queue] alsace_moselle = true, but [terminal] department %s is "
		                      "not in Alsace-Moselle (57, 67, 68)", c->department);
		return -EINVAL;
	}
	size_t tl = strlen(c->terminal_id);
	for (size_t i = 0; i < tl; i++) {
		char ch = c->terminal_id[i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      ch == '-' || ch == '_' || ch == '.')) {
			snprintf(err, errlen, "[daemon] terminal_id may hold only letters, digits, '-', '_' and '.'");
			return -EINVAL;
		}
	}
	return 0;
}

/* A URL as printed by --check-config: credentials in it ("user:token@")
 * and the query string and fragment (where tokens travel) are replaced by
 * "(redacted)"; scheme, host, port and path stay, for the support person. */
static void
redact_url(const char *u, char *buf, size_t len)
{
	const char *scheme = strstr(u, "://");
	const char *host = scheme ? scheme + 3 : u;
	size_t hostpart = strcspn(host, "/?#");
	const char *at = memchr(host, '@', hostpart);
	const char *rest = host + hostpart;
	size_t pathlen = strcspn(rest, "?#");
	snprintf(buf, len, "%.*s%s%.*s%.*s%s", (int)(host - u), u, at ? "(redacted)@" : "",
	         (int)(at ? hostpart - (size_t)(at + 1 - host) : hostpart), at ? at + 1 : host,
	         (int)pathlen, rest, rest[pathlen] ? "?(redacted)" : "");
}

/* Format one key's value as the file would hold it (secrets redacted when
 * redact is set). */
static void
format_value(const struct ckey *k, const struct config *c, bool redact, char *buf, size_t len)
{
	const void *p = (const char *)c + k->off;
	switch (k->type) {
	case CT_STR:
	case CT_ENUM: {
		const char *s = *(char *const *)p;
		if (redact && !strcmp(k->key, "url"))
			redact_url(s, buf, len);
		else
			snprintf(buf, len, "%s", redact && k->secret && s[0] ? "(redacted)" : s);
		break;
	}
	case CT_BOOL: snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false"); break;
	case CT_INT: snprintf(buf, len, "%ld", *(const long *)p); break;
	case CT_OCTAL: snprintf(buf, len, "%04lo", *(const long *)p); break;
	case CT_LEVEL: {
		static const char *const names[] = { "err", "warning", "notice", "info", "debug" };
		long v = *(const long *)p;
		snprintf(buf, len, "%s", v >= 3 && v <= 7 ? names[v - 3] : "?");
		break;
	}
	case CT_LIST: {
		const struct config_list *l = p;
		size_t o = 0;
		buf[0] = '\0';
		for (size_t j = 0; j < l->n && o < len; j++) {
			int n = snprintf(buf + o, len - o, "%s%s", j ? ", " : "", l->v[j]);
			if (n < 0)
				break;
			o += (size_t)n;
		}
		break;
	}
	}
}

void
config_print(const struct config *c, FILE *f)
{
	const char *sec = "";
	char buf[4200];
	fprintf(f, "# effective configuration (%s)\n", c->path ? c->path : "built-in defaults");
	for (size_t i = 0; i < NKEYS; i++) {
		const struct ckey *k = &keys[i];
		if (strcmp(sec, k->section) != 0) {
			fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
			sec = k->section;
		}
		format_value(k, c, true, buf, sizeof(buf));
		fprintf(f, "%s = %s\n", k->key, buf);
	}
}

int
config_diff(const struct config *a, const struct config *b, config_diff_fn fn, void *arg)
{
	char va[4200], vb[4200];
	int n = 0;
	for (size_t i = 0; i < NKEYS; i++) {
		format_value(&keys[i], a, false, va, sizeof(va));
		format_value(&keys[i], b, false, vb, sizeof(vb));
		if (strcmp(va, vb) != 0) {
			n++;
			if (fn)
				fn(keys[i].section, keys[i].key, arg);
		}
	}
	return n;
}

void
config_free(struct config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		void *p = (char *)c + keys[i].off;
		if (keys[i].type == CT_STR || keys[i].type == CT_ENUM)
			free(*(char **)p);
		else if (keys[i].type == CT_LIST)
			list_clear(p);
	}
	free(c->path);
	free(c);
}

bool
config_list_has(const struct config_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], name) == 0)
			return true;
	return false;
}
