/* Unit tests for conf/config.c: defaults, every key type, file:line errors,
 * unknown keys, lists, overrides, redaction, diff. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"

static char tmpl[] = "/tmp/vitaled-check-config-XXXXXX";
static char path[300];

static const char *
write_conf(const char *text)
{
	int fd = mkstemp(tmpl);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	snprintf(path, sizeof(path), "%s", tmpl);
	memcpy(tmpl + strlen(tmpl) - 6, "XXXXXX", 6);
	return path;
}

START_TEST(defaults)
{
	struct config *c;
	char err[300];
	ck_assert_int_eq(config_load(NULL, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c->mode, "clinic");
	ck_assert_str_eq(c->socket_path, "/run/vitaled/vitaled.sock");
	ck_assert_str_eq(c->state_dir, "/var/lib/vitaled");
	ck_assert(c->pcsc_enabled);
	ck_assert_uint_eq(c->nfc_devices.n, 0);
	ck_assert_str_eq(c->insurer_url, "");
	ck_assert_int_eq(c->socket_mode, 0660);
	ck_assert_int_eq(c->log_level, 6);
	ck_assert_uint_eq(c->allowed_users.n, 1);
	ck_assert_str_eq(c->allowed_users.v[0], "root");
	ck_assert_int_eq(config_validate(c, err, sizeof(err)), 0);
	config_free(c);
}
END_TEST

START_TEST(full_file)
{
	struct config *c;
	char err[300];
	const char *p = write_conf("; comment\n"
	                           "[daemon]\nmode = kiosk\nlog_level = debug\nterminal_id = T-1\n"
	                           "[api]\nsocket_mode = 0600\nallowed_users = alice, bob\n"
	                           "allowed_users = 1001\n"
	                           "[pcsc]\nenabled = no\n"
	                           "[nfc]\ndevice = pn532_uart:/dev/ttyUSB0\ndevice = acr122_usb\n"
	                           "[queue]\nretention_days = 90\nalsace_moselle = yes\n"
	                           "[terminal]\ndepartment = 67\n");
	ck_assert_int_eq(config_load(p, &c, err, sizeof(err)), 0);
	ck_assert_str_eq(c->mode, "kiosk");
	ck_assert_int_eq(c->log_level, 7);
	ck_assert_str_eq(c->terminal_id, "T-1");
	ck_assert_int_eq(c->socket_mode, 0600);
	ck_assert_uint_eq(c->allowed_users.n, 3); /* the file's list replaces the default */
	ck_assert_str_eq(c->allowed_users.v[0], "alice");
	ck_assert_str_eq(c->allowed_users.v[2], "1001");
	ck_assert(!config_list_has(&c->allowed_users, "root"));
	ck_assert(!c->pcsc_enabled);
	ck_assert_uint_eq(c->nfc_devices.n, 2);
	ck_assert_str_eq(c->nfc_devices.v[1], "acr122_usb");
	ck_assert_int_eq(c->retention_days, 90);
	ck_assert(c->alsace_moselle);
	ck_assert_str_eq(c->department, "67");
	ck_assert_int_eq(config_validate(c, err, sizeof(err)), 0);
	config_free(c);
	unlink(p);
}
END_TEST

struct bad_case {
	const char *text;
	const char *expect; /* substring of the error, after "file:" */
};

static const struct bad_case bad_cases[] = {
	{ "[daemon]\nmode = clinic\nfrobnicate = 1\n", ":3: unknown key 'frobnicate' in [daemon]" },
	{ "[nosuch]\nx = 1\n", ":2: unknown section [nosuch]" },
	{ "[daemon]\nmode = hospital\n", ":2: [daemon] mode: 'hospital' is not one of clinic|till|kiosk" },
	{ "\n\n[pcsc]\nenabled = maybe\n", ":4: [pcsc] enabled: 'maybe' is not a boolean" },
	{ "[api]\nmax_clients = 0\n", ":2: [api] max_clients: 0 out of range 1..4096" },
	{ "[api]\nmax_clients = 12x\n", ":2: [api] max_clients: '12x' is not a number" },
	{ "[api]\nsocket_mode = 0999\n", ":2: [api] socket_mode: '0999' is not an octal number" },
	{ "[daemon]\nlog_level = loud\n", ":2: [daemon] log_level: 'loud' is not one of" },
	{ "[daemon]\nmode = till\nmode = kiosk\n", ":3: [daemon] mode set twice" },
	{ "[daemon]\nthis line has no equals\n", ":2: syntax error" },
	{ "[daemon]\nsocket = \n", ":2: [daemon] socket: value must not be empty" },
	/* R.161-47: the electronic copy is kept at least 90 days */
	{ "[queue]\nretention_days = 89\n", ":2: [queue] retention_days: 89 out of range 90..36500" },
	{ "[terminal]\ndepartment = 9740\n", ":2: [terminal] department: value longer than 3" },
};

/* [terminal] department: the departments vitaled knows the holidays of;
 * the old Alsace-Moselle switch must agree with it. */
START_TEST(department)
{
	static const struct {
		const char *dep;
		bool alsace;
		bool ok;
	} cases[] = {
		{ "75", false, true },  { "2A", false, true },  { "974", false, true },
		{ "978", false, true }, { "57", true, true },   { "68", false, true },
		{ "20", false, false }, { "975", false, false }, { "96", false, false },
		{ "2c", false, false }, { "7", false, false },  { "75", true, false },
		{ "974", true, false },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *c;
		char err[300];
		ck_assert_int_eq(config_load(NULL, &c, err, sizeof(err)), 0);
		ck_assert_int_eq(config_set(c, "terminal", "department", cases[i].dep, err, sizeof(err)), 0);
		ck_assert_int_eq(config_set(c, "queue", "alsace_moselle", cases[i].alsace ? "true" : "false",
		                            err, sizeof(err)),
		                 0);
		int r = config_validate(c, err, sizeof(err));
		ck_assert_msg((r == 0) == cases[i].ok, "%s (alsace %d): %d %s", cases[i].dep,
		              cases[i].alsace, r, err);
		if (!cases[i].ok)
			ck_assert_msg(strstr(err, "department") != NULL, "%s", err);
		config_free(c);
	}
}
END_TEST

START_TEST(bad_values)
{
	const struct bad_case *bc = &bad_cases[_i];
	struct config *c = (struct config *)0x1;
	char err[300];
	const char *p = write_conf(bc->text);
	int r = config_load(p, &c, err, sizeof(err));
	ck_assert_int_eq(r, -EINVAL);
	ck_assert_ptr_null(c);
	ck_assert_msg(strncmp(err, p, strlen(p)) == 0, "error does not start with the file: %s", err);
	ck_assert_msg(strstr(err, bc->expect) != NULL, "case %d: '%s' lacks '%s'", _i, err, bc->expect);
	unlink(p);
}
END_TEST

START_TEST(unreadable)
{
	struct config *c;
	char err[300];
	int r = config_load("/nonexistent/vitaled.conf", &c, err, sizeof(err));
	ck_assert_int_eq(r, -ENOENT);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/vitaled.conf:0: cannot read"));
}
END_TEST

START_TEST(overrides_and_validate)
{
	struct config *c;
	char err[300];
	ck_assert_int_eq(config_load(NULL, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(c, "daemon", "socket", "/tmp/x.sock", err, sizeof(err)), 0);
	ck_assert_str_eq(c->socket_path, "/tmp/x.sock");
	ck_assert_int_eq(config_set(c, "daemon", "nope", "1", err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(config_set(c, "nfc", "device", "a", err, sizeof(err)), 0);
	ck_assert_int_eq(config_append(c, "nfc", "device", "b", err, sizeof(err)), 0);
	ck_assert_uint_eq(c->nfc_devices.n, 2);
	ck_assert_int_eq(config_set(c, "daemon", "state_dir", "relative/dir", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "state_dir must be an absolute path"));
	ck_assert_int_eq(config_set(c, "daemon", "state_dir", "/var/tmp/x", err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(c, "signer", "backend", "file", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "needs key_file"));
	ck_assert_int_eq(config_set(c, "insurer", "url", "http://plain", err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(c, "signer", "backend", "none", err, sizeof(err)), 0);
	ck_assert_int_eq(config_validate(c, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "https://"));
	config_free(c);
}
END_TEST

START_TEST(print_redacts_secrets)
{
	struct config *c;
	char err[300], *buf = NULL;
	size_t len = 0;
	ck_assert_int_eq(config_load(NULL, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(c, "signer", "key_file", "/secret/place/key.pem", err, sizeof(err)), 0);
	FILE *f = open_memstream(&buf, &len);
	config_print(c, f);
	fclose(f);
	ck_assert_ptr_null(strstr(buf, "/secret/place"));
	ck_assert_ptr_nonnull(strstr(buf, "key_file = (redacted)"));
	ck_assert_ptr_nonnull(strstr(buf, "[daemon]\nmode = clinic\n"));
	free(buf);
	config_free(c);
}
END_TEST

/* Issue 11 (16): every configured identifier is checked for exact length
 * and shape; a 12-digit practitioner id used to be accepted and signed as
 * 11 digits (another practitioner). */
START_TEST(identifiers_exact)
{
	static const struct {
		const char *section, *key, *value;
		bool ok;
	} cases[] = {
		{ "practitioner", "id", "810001234567", false },  /* 12 digits */
		{ "practitioner", "id", "8100012345", false },    /* 10 */
		{ "practitioner", "id", "1234567A9", false },
		{ "practitioner", "id", "81000123456", true },    /* RPPS */
		{ "practitioner", "id", "123456789", true },      /* Assurance Maladie */
		{ "practitioner", "structure", "1234567890", false },
		{ "practitioner", "structure", "123456789012345", false },
		{ "practitioner", "structure", "123456789", true },      /* FINESS */
		{ "practitioner", "structure", "12345678901234", true }, /* SIRET */
		{ "daemon", "terminal_id", "T 1", false },
		{ "daemon", "terminal_id", "T\xc3\xa9" "1", false },
		{ "daemon", "terminal_id", "T-1.a_B", true },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *c;
		char err[300];
		ck_assert_int_eq(config_load(NULL, &c, err, sizeof(err)), 0);
		int r = config_set(c, cases[i].section, cases[i].key, cases[i].value, err, sizeof(err));
		if (r == 0)
			r = config_validate(c, err, sizeof(err));
		ck_assert_msg((r == 0) == cases[i].ok, "[%s] %s = %s: %d %s", cases[i].section,
		              cases[i].key, cases[i].value, r, err);
		config_free(c);
	}
}
END_TEST

/* Issue 11 (13): --check-config prints the insurer URL without the
 * credentials or the query string it may carry. */
START_TEST(print_redacts_url_credentials)
{
	struct config *c;
	char err[300], *buf = NULL;
	size_t len = 0;
	ck_assert_int_eq(config_load(NULL, &c, err, sizeof(err)), 0);
	ck_assert_int_eq(config_set(c, "insurer", "url",
	                            "https://user:s3cr3t@127.0.0.1:8443/base/?token=abc123#x", err,
	                            sizeof(err)), 0);
	FILE *f = open_memstream(&buf, &len);
	config_print(c, f);
	fclose(f);
	ck_assert_ptr_null(strstr(buf, "s3cr3t"));
	ck_assert_ptr_null(strstr(buf, "abc123"));
	ck_assert_ptr_null(strstr(buf, "user:"));
	ck_assert_ptr_nonnull(strstr(buf, "url = https://(redacted)@127.0.0.1:8443/base/?(redacted)\n"));
	free(buf);
	config_free(c);
}
END_TEST

static void
count_cb(const char *section, const char *key, void *arg)
{
	char *out = arg;
	strncat(out, section, 100);
	strncat(out, ".", 2);
	strncat(out, key, 100);
	strncat(out, ";", 2);
}

START_TEST(diff)
{
	struct config *a, *b;
	char err[300], out[512] = "";
	ck_assert_int_eq(config_load(NULL, &a, err, sizeof(err)), 0);
	ck_assert_int_eq(config_load(NULL, &b, err, sizeof(err)), 0);
	ck_assert_int_eq(config_diff(a, b, NULL, NULL), 0);
	config_set(b, "daemon", "log_level", "debug", err, sizeof(err));
	config_set(b, "api", "max_clients", "9", err, sizeof(err));
	ck_assert_int_eq(config_diff(a, b, count_cb, out), 2);
	ck_assert_str_eq(out, "daemon.log_level;api.max_clients;");
	config_free(a);
	config_free(b);
}
END_TEST

START_TEST(example_file_matches_defaults)
{
	/* conf/vitaled.conf documents every key with its default: loading it
	 * must give exactly the built-in defaults */
	struct config *a, *b;
	char err[300];
	ck_assert_int_eq(config_load(NULL, &a, err, sizeof(err)), 0);
	int r = config_load("conf/vitaled.conf", &b, err, sizeof(err));
	ck_assert_msg(r == 0, "%s", err);
	ck_assert_int_eq(config_diff(a, b, NULL, NULL), 0);
	config_free(a);
	config_free(b);
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("config");
	TCase *t = tcase_create("core");
	tcase_add_test(t, defaults);
	tcase_add_test(t, full_file);
	tcase_add_loop_test(t, bad_values, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(t, unreadable);
	tcase_add_test(t, department);
	tcase_add_test(t, overrides_and_validate);
	tcase_add_test(t, print_redacts_secrets);
	tcase_add_test(t, diff);
	tcase_add_test(t, identifiers_exact);
	tcase_add_test(t, print_redacts_url_credentials);
	tcase_add_test(t, example_file_matches_defaults);
	suite_add_tcase(s, t);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
