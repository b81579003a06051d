/* Unit tests for daemon/core/journal.c and lib/log.c's sink: which stderr is
 * journald's (JOURNAL_STREAM against fstat of fd 2), and the fields that
 * sd_journal_sendv receives: MESSAGE=, PRIORITY=, SYSLOG_IDENTIFIER=, and
 * MESSAGE_ID=, READER=, SHEET_ID= for log_ev's events. sd_journal_sendv is
 * replaced by a recorder (the suite links with -Wl,--wrap=sd_journal_sendv). */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "daemon/core/journal.h"
#include "lib/log.h"

int __wrap_sd_journal_sendv(const struct iovec *iov, int n);

static char got[8][2200];
static int ngot, ncalls, send_result;

int
__wrap_sd_journal_sendv(const struct iovec *iov, int n)
{
	ncalls++;
	ngot = 0;
	for (int i = 0; i < n && i < 8; i++) {
		size_t l = iov[i].iov_len < sizeof(got[0]) - 1 ? iov[i].iov_len : sizeof(got[0]) - 1;
		memcpy(got[i], iov[i].iov_base, l);
		got[i][l] = '\0';
		ngot++;
	}
	return send_result;
}

static const char *
get(const char *key)
{
	size_t k = strlen(key);
	for (int i = 0; i < ngot; i++)
		if (!strncmp(got[i], key, k) && got[i][k] == '=')
			return got[i] + k + 1;
	return NULL;
}

/* fd 2 becomes a pipe; JOURNAL_STREAM names it (or not); returns the read end */
static int
stderr_pipe(bool name_it)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_ge(dup2(p[1], 2), 0);
	close(p[1]);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	struct stat st;
	ck_assert_int_eq(fstat(2, &st), 0);
	char v[64];
	snprintf(v, sizeof(v), "%llu:%llu", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino + (name_it ? 0 : 1));
	setenv("JOURNAL_STREAM", v, 1);
	return p[0];
}

START_TEST(stream_must_be_stderr)
{
	int r = stderr_pipe(true);
	ck_assert(journal_stream_is(2));
	setenv("JOURNAL_STREAM", "12:34", 1);
	ck_assert(!journal_stream_is(2));
	setenv("JOURNAL_STREAM", "garbage", 1);
	ck_assert(!journal_stream_is(2));
	unsetenv("JOURNAL_STREAM");
	ck_assert(!journal_stream_is(2));
	close(r);
	r = stderr_pipe(false); /* another file's inode: a child of journald's child */
	ck_assert(!journal_stream_is(2));
	ck_assert(!journal_setup());
	close(r);
}
END_TEST

START_TEST(event_fields_reach_the_journal)
{
	int r = stderr_pipe(true);
	ck_assert(journal_setup());
	log_set_level(LOG_LVL_DEBUG);
	ncalls = 0;
	log_ev(LOG_LVL_NOTICE, LOG_ID_READER_ADDED, "ACS ACR122U 00 00", NULL,
	       "reader %s (%s) added", "ACS ACR122U 00 00", "pcsc");
	ck_assert_int_eq(ncalls, 1);
	ck_assert_str_eq(get("MESSAGE"), "reader ACS ACR122U 00 00 (pcsc) added");
	ck_assert_str_eq(get("PRIORITY"), "5");
	ck_assert_str_eq(get("SYSLOG_IDENTIFIER"), "vitaled");
	ck_assert_str_eq(get("MESSAGE_ID"), LOG_ID_READER_ADDED);
	ck_assert_str_eq(get("READER"), "ACS ACR122U 00 00");
	ck_assert_ptr_null(get("SHEET_ID"));

	log_ev(LOG_LVL_INFO, LOG_ID_SHEET_QUEUED, NULL, "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "queue: sheet %s queued",
	       "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
	ck_assert_int_eq(ncalls, 2);
	ck_assert_str_eq(get("SHEET_ID"), "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
	ck_assert_str_eq(get("MESSAGE_ID"), LOG_ID_SHEET_QUEUED);
	ck_assert_str_eq(get("PRIORITY"), "6");
	ck_assert_ptr_null(get("READER"));

	/* a plain message: no MESSAGE_ID, no READER; a newline cannot forge a second line */
	log_warn("upload: %s", "line one\nMESSAGE_ID=forged");
	ck_assert_int_eq(ncalls, 3);
	ck_assert_str_eq(get("MESSAGE"), "upload: line one MESSAGE_ID=forged");
	ck_assert_ptr_null(get("MESSAGE_ID"));
	ck_assert_str_eq(get("PRIORITY"), "4");

	/* nothing went to stderr as a line */
	char buf[256];
	ck_assert_int_lt(read(r, buf, sizeof(buf)), 1);

	/* below the level: nothing sent */
	log_set_level(LOG_LVL_NOTICE);
	log_info("not sent");
	ck_assert_int_eq(ncalls, 3);
	journal_reset();
	close(r);
}
END_TEST

START_TEST(plain_lines_otherwise)
{
	int r = stderr_pipe(false);
	ck_assert(!journal_setup());
	log_set_level(LOG_LVL_DEBUG);
	log_set_journald(1);
	ncalls = 0;
	log_ev(LOG_LVL_NOTICE, LOG_ID_READER_REMOVED, "R1", NULL, "reader %s removed", "R1");
	ck_assert_int_eq(ncalls, 0);
	char buf[256];
	ssize_t n = read(r, buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, "<5>reader R1 removed\n");
	close(r);
}
END_TEST

START_TEST(journal_failure_falls_back_to_stderr)
{
	int r = stderr_pipe(true);
	ck_assert(journal_setup());
	log_set_level(LOG_LVL_DEBUG);
	log_set_journald(1);
	send_result = -2; /* journald gone */
	ncalls = 0;
	log_ev(LOG_LVL_ERR, LOG_ID_UPLOAD_STOPPED, NULL, NULL, "upload: stopped: %s", "TLS");
	ck_assert_int_eq(ncalls, 1);
	char buf[256];
	ssize_t n = read(r, buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, "<3>upload: stopped: TLS\n");
	send_result = 0;
	journal_reset();
	close(r);
}
END_TEST

/* every MESSAGE_ID is 32 lower-case hex digits and they are all different */
START_TEST(message_ids_are_128_bit_and_distinct)
{
	const char *ids[] = { LOG_ID_READY, LOG_ID_STOPPING, LOG_ID_READER_ADDED, LOG_ID_READER_REMOVED,
		              LOG_ID_CARD_READ, LOG_ID_CARD_REFUSED, LOG_ID_CARD_OPPOSED,
		              LOG_ID_SESSION_ABORTED, LOG_ID_SHEET_QUEUED, LOG_ID_DRAFT_CREATED,
		              LOG_ID_SHEET_NOT_STORED, LOG_ID_UPLOAD_STOPPED };
	size_t n = sizeof(ids) / sizeof(ids[0]);
	for (size_t i = 0; i < n; i++) {
		ck_assert_uint_eq(strlen(ids[i]), 32);
		ck_assert_uint_eq(strspn(ids[i], "0123456789abcdef"), 32);
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(ids[i], ids[j]);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("journal");
	TCase *t = tcase_create("core");
	tcase_add_test(t, stream_must_be_stderr);
	tcase_add_test(t, event_fields_reach_the_journal);
	tcase_add_test(t, plain_lines_otherwise);
	tcase_add_test(t, journal_failure_falls_back_to_stderr);
	tcase_add_test(t, message_ids_are_128_bit_and_distinct);
	suite_add_tcase(s, t);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
