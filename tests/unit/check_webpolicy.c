/* The web bridge's pure rules (web/policy.c): loopback Host names, the
 * Origin allow-list, method scopes, event redaction, log-safe strings. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "web/policy.h"

START_TEST(test_host)
{
	ck_assert(web_host_ok("127.0.0.1:8451", 8451));
	ck_assert(web_host_ok("localhost:8451", 8451));
	ck_assert(web_host_ok("LOCALHOST:8451", 8451));
	ck_assert(web_host_ok("[::1]:8451", 8451));
	ck_assert(web_host_ok("127.0.0.1", 8451));
	ck_assert(web_host_ok("localhost", 8451));
	/* rebinding names, other addresses, other ports, junk */
	ck_assert(!web_host_ok("evil.example:8451", 8451));
	ck_assert(!web_host_ok("localhost.evil.example:8451", 8451));
	ck_assert(!web_host_ok("127.0.0.1.nip.io:8451", 8451));
	ck_assert(!web_host_ok("127.0.0.2:8451", 8451));
	ck_assert(!web_host_ok("192.168.1.10:8451", 8451));
	ck_assert(!web_host_ok("localhost:8452", 8451));
	ck_assert(!web_host_ok("localhost:", 8451));
	ck_assert(!web_host_ok("localhost:84510", 8451));
	ck_assert(!web_host_ok("localhost:+8451", 8451));
	ck_assert(!web_host_ok("localhost:8451 ", 8451));
	ck_assert(!web_host_ok("[::1]x", 8451));
	ck_assert(!web_host_ok("", 8451));
	ck_assert(!web_host_ok(NULL, 8451));
}
END_TEST

START_TEST(test_origin)
{
	struct config_list l = { 0 };
	char a[] = "http://localhost:8080", b[] = "https://app.example";
	l.v[l.n++] = a;
	l.v[l.n++] = b;
	ck_assert(web_origin_allowed(&l, "http://localhost:8080"));
	ck_assert(web_origin_allowed(&l, "https://app.example"));
	ck_assert(!web_origin_allowed(&l, "http://app.example"));
	ck_assert(!web_origin_allowed(&l, "https://app.example.evil"));
	ck_assert(!web_origin_allowed(&l, "http://localhost:8081"));
	ck_assert(!web_origin_allowed(&l, "null"));
	ck_assert(!web_origin_allowed(&l, ""));
	ck_assert(!web_origin_allowed(&l, NULL));
	ck_assert(web_origin_own("http://127.0.0.1:8451", "127.0.0.1:8451"));
	ck_assert(!web_origin_own("http://evil:8451", "127.0.0.1:8451"));
	ck_assert(!web_origin_own("https://127.0.0.1:8451", "127.0.0.1:8451"));
	ck_assert(!web_origin_own(NULL, "127.0.0.1:8451"));
}
END_TEST

START_TEST(test_scopes)
{
	ck_assert_int_eq(web_scope_parse("read"), WEB_SCOPE_READ);
	ck_assert_int_eq(web_scope_parse("control"), WEB_SCOPE_CONTROL);
	ck_assert_int_eq(web_scope_parse("pin"), WEB_SCOPE_PIN);
	ck_assert_int_eq(web_scope_parse("admin"), WEB_SCOPE_NONE);
	ck_assert_int_eq(web_scope_parse(NULL), WEB_SCOPE_NONE);
	ck_assert_str_eq(web_scope_name(WEB_SCOPE_CONTROL), "control");
	ck_assert_int_eq(web_method_scope("GetStatus"), WEB_SCOPE_READ);
	ck_assert_int_eq(web_method_scope("GetCard"), WEB_SCOPE_CONTROL);
	ck_assert_int_eq(web_method_scope("CreateSheet"), WEB_SCOPE_CONTROL);
	ck_assert_int_eq(web_method_scope("SubmitPin"), WEB_SCOPE_PIN);
	ck_assert_int_eq(web_method_scope("UnblockPin"), WEB_SCOPE_PIN);
	ck_assert_int_eq(web_method_scope("Reload"), WEB_SCOPE_NONE);
	ck_assert_int_eq(web_method_scope("WatchEvents"), WEB_SCOPE_NONE); /* its own endpoint */
	ck_assert_int_eq(web_method_scope("getstatus"), WEB_SCOPE_NONE);
	ck_assert(web_method_name_ok("GetStatus"));
	ck_assert(!web_method_name_ok("org.varlink.service.GetInfo"));
	ck_assert(!web_method_name_ok("Get/Status"));
	ck_assert(!web_method_name_ok(""));
}
END_TEST

START_TEST(test_redact)
{
	const char *ev = "{\"type\":\"CardRead\",\"summary\":{\"beneficiaries\":[{\"rank\":0,"
	                 "\"nir_masked\":\"280************\",\"surname\":\"DUPONT\",\"given_name\":\"MARIE\"}]}}";
	json_t *e = json_loads(ev, 0, NULL);
	web_redact_event(e, WEB_SCOPE_CONTROL);
	char *s = json_dumps(e, 0);
	ck_assert_ptr_nonnull(strstr(s, "DUPONT"));
	free(s);
	web_redact_event(e, WEB_SCOPE_READ);
	s = json_dumps(e, 0);
	ck_assert_ptr_null(strstr(s, "DUPONT"));
	ck_assert_ptr_null(strstr(s, "MARIE"));
	ck_assert_ptr_nonnull(strstr(s, "nir_masked"));
	free(s);
	json_decref(e);
	web_redact_event(NULL, WEB_SCOPE_READ); /* nothing to do, no crash */
}
END_TEST

START_TEST(test_log_safe)
{
	char out[8];
	ck_assert_str_eq(web_log_safe("a\nb\x1b[31m", out, sizeof(out)), "a?b?[31");
	ck_assert_str_eq(web_log_safe(NULL, out, sizeof(out)), "");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("webpolicy");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_host);
	tcase_add_test(tc, test_origin);
	tcase_add_test(tc, test_scopes);
	tcase_add_test(tc, test_redact);
	tcase_add_test(tc, test_log_safe);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
