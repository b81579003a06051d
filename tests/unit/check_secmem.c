/* Unit tests for lib/secmem: the pages are really locked and marked
 * "do not dump" (read back from /proc/self/smaps), a forked child sees
 * them zeroed, malformed PINs allocate nothing, comparisons are right. */
#include <check.h>
#include <jansson.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/secmem.h"

/* The VmFlags line of the mapping that contains addr, or "" if none. */
static void
vmflags_of(const void *addr, char *flags, size_t flen)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool inside = false;
	flags[0] = '\0';
	ck_assert_ptr_nonnull(f);
	uintptr_t a = (uintptr_t)addr;
	while (fgets(line, sizeof(line), f)) {
		uintptr_t lo, hi;
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &lo, &hi) == 2 && strchr(line, ' ') &&
		    line[0] != 'V') {
			inside = a >= lo && a < hi;
			continue;
		}
		if (inside && !strncmp(line, "VmFlags:", 8)) {
			snprintf(flags, flen, "%s", line + 8);
			break;
		}
	}
	fclose(f);
}

static bool
has_flag(const char *flags, const char *flag)
{
	char pat[8];
	snprintf(pat, sizeof(pat), " %s", flag);
	const char *p = flags;
	while ((p = strstr(p, pat))) {
		char after = p[strlen(pat)];
		if (after == ' ' || after == '\n' || after == '\0')
			return true;
		p++;
	}
	return false;
}

START_TEST(alloc_locked_dontdump)
{
	void *p;
	ck_assert_int_eq(secmem_alloc(100, &p), 0);
	ck_assert_ptr_nonnull(p);
	unsigned char *b = p;
	for (size_t i = 0; i < 100; i++)
		ck_assert_int_eq(b[i], 0);
	memset(p, 'x', 100);
	char flags[512];
	vmflags_of(p, flags, sizeof(flags));
	ck_assert_msg(has_flag(flags, "dd"), "no dd in VmFlags:%s", flags);
#ifndef __SANITIZE_ADDRESS__
	/* AddressSanitizer intercepts mlock() and makes it a no-op */
	ck_assert_msg(has_flag(flags, "lo"), "no lo in VmFlags:%s", flags);
#endif
	secmem_free(p, 100);
	/* unmapped: no mapping contains it any more (or another one does, never ours) */
	secmem_free(NULL, 100);
}
END_TEST

START_TEST(fork_child_sees_zeros)
{
	void *p;
	ck_assert_int_eq(secmem_alloc(64, &p), 0);
	memcpy(p, "4711", 5);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(((char *)p)[0] == 0 ? 0 : 1);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st));
	ck_assert_msg(WEXITSTATUS(st) == 0, "the child saw the parent's secret");
	ck_assert_str_eq((char *)p, "4711");
	secmem_free(p, 64);
}
END_TEST

START_TEST(pin_new_and_compare)
{
	struct secmem_pin *pin = (struct secmem_pin *)1;
	ck_assert_int_eq(secmem_pin_new("1234", 4, 4, 8, &pin), 0);
	ck_assert_str_eq(secmem_pin_digits(pin), "1234");
	ck_assert_uint_eq(secmem_pin_len(pin), 4);
	ck_assert(secmem_pin_equal(pin, "1234", 4));
	ck_assert(!secmem_pin_equal(pin, "1235", 4));
	ck_assert(!secmem_pin_equal(pin, "12345", 5));
	ck_assert(!secmem_pin_equal(pin, "123", 3));
	ck_assert(!secmem_pin_equal(pin, "", 0));
	char flags[512];
	vmflags_of(secmem_pin_digits(pin), flags, sizeof(flags));
	ck_assert(has_flag(flags, "dd"));
	secmem_pin_free(pin);
	secmem_pin_free(NULL);

	/* not NUL-terminated input: only len bytes are taken */
	ck_assert_int_eq(secmem_pin_new("987654321", 6, 4, 8, &pin), 0);
	ck_assert_str_eq(secmem_pin_digits(pin), "987654");
	secmem_pin_free(pin);
}
END_TEST

START_TEST(pin_malformed_nothing_allocated)
{
	struct secmem_pin *pin = (struct secmem_pin *)1;
	ck_assert_int_eq(secmem_pin_new("12a4", 4, 4, 8, &pin), -EINVAL);
	ck_assert_ptr_null(pin);
	ck_assert_int_eq(secmem_pin_new("123", 3, 4, 8, &pin), -ERANGE);
	ck_assert_ptr_null(pin);
	ck_assert_int_eq(secmem_pin_new("123456789", 9, 4, 8, &pin), -ERANGE);
	ck_assert_int_eq(secmem_pin_new(" 1234", 5, 4, 8, &pin), -EINVAL);
	ck_assert_int_eq(secmem_pin_new("", 0, 4, 8, &pin), -ERANGE);
	/* the cap holds even if a caller asks for more */
	char longpin[SECMEM_PIN_MAX + 2];
	memset(longpin, '7', sizeof(longpin));
	ck_assert_int_eq(secmem_pin_new(longpin, sizeof(longpin), 4, 1000, &pin), -ERANGE);
	ck_assert_int_eq(secmem_pin_new(longpin, SECMEM_PIN_MAX, 4, 1000, &pin), 0);
	ck_assert_uint_eq(secmem_pin_len(pin), SECMEM_PIN_MAX);
	secmem_pin_free(pin);
}
END_TEST

START_TEST(equal_and_wiped_free)
{
	ck_assert(secmem_equal("abcd", "abcd", 4));
	ck_assert(!secmem_equal("abcd", "abce", 4));
	ck_assert(secmem_equal("x", "y", 0));
	char *m = malloc(40);
	ck_assert_ptr_nonnull(m);
	memset(m, 'z', 40);
	secmem_free_wiped(m);
	secmem_free_wiped(NULL);
	ck_assert_int_eq(secmem_init(), 0);
	json_t *j = json_string("5550123");
	ck_assert_ptr_nonnull(j);
	json_decref(j);
}
END_TEST

/* OpenSSL's allocation hooks: realloc keeps the content, stays in place
 * when the block is big enough, and handles NULL and 0 like realloc. */
START_TEST(crypto_hooks)
{
	char *p = secmem_crypto_malloc(24, __FILE__, __LINE__);
	ck_assert_ptr_nonnull(p);
	memcpy(p, "0123456789abcdefghijklm", 24);
	char *q = secmem_crypto_realloc(p, 8, __FILE__, __LINE__);
	ck_assert_ptr_eq(q, p); /* shrinking never moves (nothing left behind) */
	char *r = secmem_crypto_realloc(q, 4096, __FILE__, __LINE__);
	ck_assert_ptr_nonnull(r);
	ck_assert_int_eq(memcmp(r, "01234567", 8), 0);
	ck_assert_ptr_null(secmem_crypto_realloc(r, 0, __FILE__, __LINE__));
	char *n = secmem_crypto_realloc(NULL, 16, __FILE__, __LINE__);
	ck_assert_ptr_nonnull(n);
	secmem_crypto_free(n, __FILE__, __LINE__);
	secmem_crypto_free(NULL, __FILE__, __LINE__);
}
END_TEST

static Suite *
secmem_suite(void)
{
	Suite *s = suite_create("secmem");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, alloc_locked_dontdump);
	tcase_add_test(tc, fork_child_sees_zeros);
	tcase_add_test(tc, pin_new_and_compare);
	tcase_add_test(tc, pin_malformed_nothing_allocated);
	tcase_add_test(tc, equal_and_wiped_free);
	tcase_add_test(tc, crypto_hooks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(secmem_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
