/* Unit tests of daemon/cards/opposition.c, the opposition list in memory:
 * bounds, and a long random run of adds and removes (the removals shift
 * probe chains back) compared at each step with a plain array. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/cards/opposition.h"

START_TEST(t_bounds)
{
	char s33[34];
	memset(s33, 'A', 33);
	s33[33] = '\0';
	ck_assert_int_eq(opposition_add(""), -EINVAL);
	ck_assert_int_eq(opposition_add(NULL), -EINVAL);
	ck_assert_int_eq(opposition_add(s33), -EINVAL);
	ck_assert(!opposition_has(s33));
	s33[32] = '\0';
	ck_assert_int_eq(opposition_add(s33), 0);
	ck_assert(opposition_has(s33));
	ck_assert_int_eq(opposition_add(s33), 0);
	ck_assert_uint_eq(opposition_count(), 1);
	ck_assert(!opposition_has(""));
	ck_assert(!opposition_has(NULL));
	ck_assert(!opposition_has("8A3F00120045"));
	opposition_remove("8A3F00120045");
	ck_assert_uint_eq(opposition_count(), 1);
	ck_assert(!opposition_loaded());
	opposition_set_loaded(true);
	ck_assert(opposition_loaded());
	opposition_clear();
	ck_assert(!opposition_loaded());
	ck_assert_uint_eq(opposition_count(), 0);
	ck_assert(!opposition_has(s33));
	opposition_remove(s33); /* on an empty set */
}
END_TEST

#define UNIVERSE 3000

START_TEST(t_random_against_array)
{
	static bool in[UNIVERSE];
	char name[24];
	size_t n = 0;
	unsigned seed = 12345;
	memset(in, 0, sizeof(in));
	for (int step = 0; step < 60000; step++) {
		seed = seed * 1103515245u + 12345u;
		unsigned k = (seed >> 8) % UNIVERSE;
		snprintf(name, sizeof(name), "%020u", k * 7919u);
		if ((seed >> 4) % 3 != 0) {
			ck_assert_int_eq(opposition_add(name), 0);
			n += !in[k];
			in[k] = true;
		} else {
			opposition_remove(name);
			n -= in[k];
			in[k] = false;
		}
		ck_assert_uint_eq(opposition_count(), n);
		if (step % 10000 == 0) {
			for (unsigned j = 0; j < UNIVERSE; j++) {
				snprintf(name, sizeof(name), "%020u", j * 7919u);
				ck_assert_msg(opposition_has(name) == in[j], "step %d, serial %s", step,
				              name);
			}
		}
	}
	for (unsigned j = 0; j < UNIVERSE; j++) {
		snprintf(name, sizeof(name), "%020u", j * 7919u);
		ck_assert(opposition_has(name) == in[j]);
		opposition_remove(name);
	}
	ck_assert_uint_eq(opposition_count(), 0);
	opposition_clear();
}
END_TEST

/* A set built elsewhere (the queue's thread) and installed. */
START_TEST(t_install)
{
	ck_assert_int_eq(opposition_add("OLD"), 0);
	struct opposition *o = opposition_new(1000);
	ck_assert_ptr_nonnull(o);
	char name[24];
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "S%u", i);
		ck_assert_int_eq(opposition_set_add(o, name), 0);
	}
	ck_assert_uint_eq(opposition_set_count(o), 1000);
	ck_assert(opposition_set_has(o, "S999"));
	ck_assert(!opposition_loaded());
	opposition_install(o);
	ck_assert(opposition_loaded());
	ck_assert_uint_eq(opposition_count(), 1000);
	ck_assert(opposition_has("S0"));
	ck_assert(!opposition_has("OLD")); /* the set before is gone */
	opposition_remove("S0");
	ck_assert(!opposition_has("S0"));
	ck_assert_uint_eq(opposition_count(), 999);
	opposition_clear();
	ck_assert(!opposition_has("S1"));
	opposition_free(NULL);
}
END_TEST

int
main(void)
{
	Suite *su = suite_create("opposition");
	TCase *tc = tcase_create("set");
	tcase_add_test(tc, t_bounds);
	tcase_add_test(tc, t_random_against_array);
	tcase_add_test(tc, t_install);
	suite_add_tcase(su, tc);
	SRunner *sr = srunner_create(su);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
