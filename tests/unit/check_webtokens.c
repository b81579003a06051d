/* The web bridge's token store and pairings (web/tokens.c): a token only
 * after approval, collected once by its own origin, stored as a SHA-256,
 * bound to its origin and scope, revocable, kept across a restart. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/fsutil.h"
#include "web/tokens.h"

#define APP "http://localhost:8080"

static char dir[64];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/check_webtokens.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
teardown(void)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/tokens.json", dir);
	unlink(p);
	rmdir(dir);
}

static struct web_store *
open_store(void)
{
	struct web_store *s = NULL;
	char err[256];
	ck_assert_int_eq(web_store_open(dir, 60, &s, err, sizeof(err)), 0);
	return s;
}

/* Pair origin for scope, approved; the token in tok. */
static void
pair(struct web_store *s, const char *origin, enum web_scope scope, char *tok, char *id)
{
	char pid[WEB_PAIR_ID_LEN + 1], code[7];
	enum web_scope got = WEB_SCOPE_NONE;
	ck_assert_int_eq(web_pair_start(s, origin, "app", scope, pid, code), 0);
	ck_assert_int_eq(web_pair_collect(s, pid, origin, tok, &got), 0); /* pending */
	json_t *info = NULL;
	ck_assert_int_eq(web_pair_approve(s, code, WEB_SCOPE_NONE, &info), 0);
	snprintf(id, 17, "%s", json_string_value(json_object_get(info, "id")));
	json_decref(info);
	ck_assert_int_eq(web_pair_collect(s, pid, "http://other", tok, &got), -ENOENT);
	ck_assert_int_eq(web_pair_collect(s, pid, origin, tok, &got), 1);
	ck_assert_int_eq(got, scope);
	ck_assert_uint_eq(strlen(tok), WEB_TOKEN_LEN);
	ck_assert_int_eq(web_pair_collect(s, pid, origin, tok, &got), -ENOENT); /* once */
}

static enum web_auth
check_tok(struct web_store *s, const char *tok, const char *origin, enum web_scope *scope)
{
	char auth[80];
	snprintf(auth, sizeof(auth), "Bearer %s", tok);
	return web_store_check(s, auth, origin, scope);
}

START_TEST(test_pair_check_revoke)
{
	struct web_store *s = open_store();
	char tok[WEB_TOKEN_LEN + 1], id[17];
	pair(s, APP, WEB_SCOPE_CONTROL, tok, id);
	enum web_scope sc = WEB_SCOPE_NONE;
	ck_assert_int_eq(check_tok(s, tok, APP, &sc), WEB_AUTH_OK);
	ck_assert_int_eq(sc, WEB_SCOPE_CONTROL);
	ck_assert_int_eq(check_tok(s, tok, "http://localhost:8081", &sc), WEB_AUTH_ORIGIN);
	ck_assert_int_eq(web_store_check(s, NULL, APP, &sc), WEB_AUTH_MISSING);
	ck_assert_int_eq(web_store_check(s, "Basic abc", APP, &sc), WEB_AUTH_MISSING);
	tok[3] ^= 1;
	ck_assert_int_eq(check_tok(s, tok, APP, &sc), WEB_AUTH_INVALID);
	tok[3] ^= 1;
	ck_assert_int_eq(check_tok(s, "short", APP, &sc), WEB_AUTH_INVALID);
	/* only the hash is on disk */
	char p[128], *text = NULL;
	size_t len = 0;
	snprintf(p, sizeof(p), "%s/tokens.json", dir);
	ck_assert_int_eq(fs_read_file(p, 1 << 20, &text, &len), 0);
	ck_assert_ptr_null(strstr(text, tok));
	ck_assert_ptr_nonnull(strstr(text, id));
	free(text);
	/* kept across a restart */
	web_store_free(s);
	s = open_store();
	ck_assert_int_eq(check_tok(s, tok, APP, &sc), WEB_AUTH_OK);
	ck_assert_int_eq(web_token_revoke(s, "0000000000000000"), -ENOENT);
	ck_assert_int_eq(web_token_revoke(s, id), 1);
	ck_assert_int_eq(check_tok(s, tok, APP, &sc), WEB_AUTH_INVALID);
	web_store_free(s);
	s = open_store();
	ck_assert_int_eq(check_tok(s, tok, APP, &sc), WEB_AUTH_INVALID);
	web_store_free(s);
}
END_TEST

START_TEST(test_pairing_rules)
{
	struct web_store *s = open_store();
	char pid[WEB_PAIR_ID_LEN + 1], code[7];
	ck_assert_int_eq(web_pair_start(s, APP, "", WEB_SCOPE_READ, pid, code), -EINVAL);
	ck_assert_int_eq(web_pair_start(s, APP, "a\nb", WEB_SCOPE_READ, pid, code), -EINVAL);
	ck_assert_int_eq(web_pair_start(s, APP, "app", WEB_SCOPE_NONE, pid, code), -EINVAL);
	for (int i = 0; i < WEB_MAX_PENDING; i++)
		ck_assert_int_eq(web_pair_start(s, APP, "app", WEB_SCOPE_READ, pid, code), 0);
	ck_assert_int_eq(web_pair_start(s, APP, "app", WEB_SCOPE_READ, pid, code), -EBUSY);
	json_t *l = web_pair_list(s);
	ck_assert_uint_eq(json_array_size(l), WEB_MAX_PENDING);
	json_decref(l);
	/* denied: gone; unknown code */
	ck_assert_int_eq(web_pair_deny(s, code), 0);
	ck_assert_int_eq(web_pair_deny(s, code), -ENOENT);
	json_t *info = NULL;
	ck_assert_int_eq(web_pair_approve(s, "999999x", WEB_SCOPE_NONE, &info), -ENOENT);
	/* the person gives a smaller scope than asked */
	ck_assert_int_eq(web_pair_start(s, APP, "app", WEB_SCOPE_PIN, pid, code), 0);
	ck_assert_int_eq(web_pair_approve(s, code, WEB_SCOPE_READ, &info), 0);
	ck_assert_str_eq(json_string_value(json_object_get(info, "scope")), "read");
	json_decref(info);
	char tok[WEB_TOKEN_LEN + 1];
	enum web_scope sc;
	ck_assert_int_eq(web_pair_collect(s, pid, APP, tok, &sc), 1);
	ck_assert_int_eq(sc, WEB_SCOPE_READ);
	int nt, np;
	web_store_counts(s, &nt, &np);
	ck_assert_int_eq(nt, 1);
	ck_assert_int_eq(np, WEB_MAX_PENDING - 1);
	web_store_free(s);
}
END_TEST

START_TEST(test_bad_file)
{
	char p[128];
	snprintf(p, sizeof(p), "%s/tokens.json", dir);
	ck_assert_int_eq(fs_write_atomic(p, "[{\"id\":\"x\"}]", 12, 0600), 0);
	struct web_store *s = NULL;
	char err[256];
	ck_assert_int_lt(web_store_open(dir, 60, &s, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(strstr(err, "malformed"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("webtokens");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_pair_check_revoke);
	tcase_add_test(tc, test_pairing_rules);
	tcase_add_test(tc, test_bad_file);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
