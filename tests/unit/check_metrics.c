/* Unit tests of daemon/core/metrics.c's text: label values escaped as the
 * Prometheus text format wants (backslash, double quote, newline), values
 * printed as integers or in full precision, families with HELP and TYPE,
 * and the counters: one sample per label value, "unknown" for a missing
 * one, and "other" once every cell is taken (never a lost count). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/core/metrics.h"

static char *
capture(void (*fn)(FILE *))
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	ck_assert_ptr_nonnull(f);
	fn(f);
	fclose(f);
	return buf;
}

static void
escaped(FILE *f)
{
	metrics_family(f, "x_total", "counter", "Help.");
	metrics_sample(f, "x_total", "profile", "a\"b\\c\nd", 3);
	metrics_sample(f, "x_total", NULL, NULL, 0.25);
	metrics_sample(f, "x_total", NULL, NULL, NAN);
	metrics_sample(f, "x_total", NULL, NULL, 1e15);
}

START_TEST(text_format)
{
	char *s = capture(escaped);
	ck_assert_str_eq(s, "# HELP x_total Help.\n# TYPE x_total counter\n"
	                    "x_total{profile=\"a\\\"b\\\\c\\nd\"} 3\n"
	                    "x_total 0.25\n"
	                    "x_total NaN\n"
	                    "x_total 1000000000000000\n");
	free(s);
}
END_TEST

START_TEST(counters)
{
	metrics_inc(METRICS_CARDS_READ, "vitale2");
	metrics_inc(METRICS_CARDS_READ, "vitale2");
	metrics_inc(METRICS_CARDS_READ, NULL);
	metrics_inc(METRICS_UPLOAD_FAILURES, "ignored: no label");
	/* fill every cell with new label values: the rest go to "other" */
	char l[32];
	for (int i = 0; i < 100; i++) {
		snprintf(l, sizeof(l), "p%d", i);
		metrics_inc(METRICS_PIN_FAILURES, l);
	}
	/* the counters' families as the exposition writes them */
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	metrics_write_counters(f);
	fclose(f);
	ck_assert_ptr_nonnull(strstr(buf, "vitaled_cards_read_total{profile=\"vitale2\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(buf, "vitaled_cards_read_total{profile=\"unknown\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(buf, "vitaled_upload_failures_total 1\n"));
	ck_assert_ptr_nonnull(strstr(buf, "vitaled_upload_attempts_total 0\n"));
	/* 64 cells: 3 taken above, 61 p-labels; the other 39 counted as "other" */
	ck_assert_ptr_nonnull(strstr(buf, "vitaled_pin_failures_total{target=\"p0\"} 1\n"));
	ck_assert_ptr_null(strstr(buf, "target=\"p99\""));
	ck_assert_ptr_nonnull(strstr(buf, "vitaled_pin_failures_total{target=\"other\"} 39\n"));
	free(buf);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("metrics");
	TCase *t = tcase_create("core");
	tcase_add_test(t, text_format);
	tcase_add_test(t, counters);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_NOFORK);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
