/*
 * nfc_probe: the smallest correct libnfc client of the vitaled digital card.
 *
 * Opens a reader, polls (bounded) for an ISO 14443-4A target, then runs
 * SELECT, GET CREDENTIAL (61xx / GET RESPONSE chaining) and AUTHENTICATE
 * (polled while the phone answers 63 00) as docs/digital-card.md §2-§4 say,
 * and prints the timing of each step. It checks transport and status words
 * only; the answers are written to -o DIR for tests/world/verify_credential.py
 * to verify. It is the "minimal C program" baseline of the benchmarks, so it
 * does nothing else.
 *
 *   nfc_probe [-o DIR] [-p POLL_MS] [-a APDU_TIMEOUT_MS] [-i CODE_POLL_MS]
 *             [-c CODE_TIMEOUT_MS] [-t TERMINAL_ID] [-n READS] [-s] CONNSTRING
 *
 * -n READS repeats SELECT + GET CREDENTIAL that many times (benchmarks);
 * -s stops after the reads (no AUTHENTICATE).
 * Last line: "result=ok" or "result=<reason>" with the reason names of
 * docs/digital-card.md §12 (plus no_target, reader_error).
 *
 * libnfc 1.8 on a PN532 turns nfc_initiator_poll_target into InAutoPoll and
 * waits for its answer with no time-out at all: a watchdog thread bounds it
 * with nfc_abort_command(). Every transceive gets a positive time-out
 * (0 would mean "wait for ever").
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <nfc/nfc.h>

#define PROBE_MAX_ANSWER	16384	/* APDU-layer cap, §13 */
#define PROBE_MAX_CREDENTIAL	8192
#define PROBE_MAX_SELECT	256
#define PROBE_MAX_AUTH		1024
#define PROBE_MAX_ROUNDS	64
#define PROBE_RX		(256 + 2)

static const uint8_t probe_select[] = {
	0x00, 0xA4, 0x04, 0x00, 0x09,
	0xF0, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45, 0x44, 0x01, 0x00
};
static const uint8_t probe_get_credential[] = { 0x80, 0xCA, 0x00, 0x00, 0x00 };

struct watchdog {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	nfc_device *pnd;
	struct timespec deadline;	/* CLOCK_MONOTONIC */
	int armed;
	int fired;
	int quit;
};

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void *
watchdog_main(void *arg)
{
	struct watchdog *w = arg;

	pthread_mutex_lock(&w->lock);
	while (!w->quit) {
		if (!w->armed) {
			pthread_cond_wait(&w->cond, &w->lock);
			continue;
		}
		if (pthread_cond_timedwait(&w->cond, &w->lock, &w->deadline) == ETIMEDOUT &&
		    w->armed) {
			w->armed = 0;
			w->fired = 1;
			nfc_abort_command(w->pnd);
		}
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static void
watchdog_arm(struct watchdog *w, long ms)
{
	pthread_mutex_lock(&w->lock);
	clock_gettime(CLOCK_MONOTONIC, &w->deadline);
	w->deadline.tv_sec += ms / 1000;
	w->deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (w->deadline.tv_nsec >= 1000000000L) {
		w->deadline.tv_sec++;
		w->deadline.tv_nsec -= 1000000000L;
	}
	w->armed = 1;
	w->fired = 0;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static int
watchdog_disarm(struct watchdog *w)
{
	int fired;

	pthread_mutex_lock(&w->lock);
	w->armed = 0;
	fired = w->fired;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	return fired;
}

/*
 * One command with 61xx chaining (docs/digital-card.md §2.3). The answer's data
 * go to out (at most limit bytes); *sw gets the final status word. Returns NULL
 * on success or the failure reason.
 */
static const char *
exchange(nfc_device *pnd, const char *name, const uint8_t *cmd, size_t cmdlen,
    uint8_t *out, size_t limit, size_t *outlen, unsigned *sw, int timeout, int verbose)
{
	uint8_t rx[PROBE_RX];
	uint8_t getresp[5] = { 0x00, 0xC0, 0x00, 0x00, 0x00 };
	const uint8_t *tx = cmd;
	size_t txlen = cmdlen;
	int rounds = 0;
	int res;
	double t;

	*outlen = 0;
	*sw = 0;
	for (;;) {
		t = now_ms();
		res = nfc_initiator_transceive_bytes(pnd, tx, txlen, rx, sizeof(rx), timeout);
		t = now_ms() - t;
		if (res < 2) {
			printf("apdu %-14s %8.3f ms error %s\n", rounds ? "GET RESPONSE" : name, t,
			    res < 0 ? nfc_strerror(pnd) : "short response");
			return "card_lost";
		}
		*sw = (unsigned)rx[res - 2] << 8 | rx[res - 1];
		if (verbose)
			printf("apdu %-14s %8.3f ms sw=%04X len=%d\n",
			    rounds ? "GET RESPONSE" : name, t, *sw, res - 2);
		if ((size_t)(res - 2) > limit - *outlen)
			return "answer_too_large";
		memcpy(out + *outlen, rx, (size_t)(res - 2));
		*outlen += (size_t)(res - 2);
		if ((*sw >> 8) != 0x61)
			return NULL;
		if (++rounds > PROBE_MAX_ROUNDS)
			return "answer_too_large";
		getresp[4] = (uint8_t)(*sw & 0xFF);
		tx = getresp;
		txlen = sizeof(getresp);
	}
}

static int
write_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
	char path[PATH_MAX];
	FILE *f;
	int n, rc = -1;

	n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path))
		return -1;
	if ((f = fopen(path, "wb")) == NULL)
		return -1;
	if (fwrite(data, 1, len, f) == len)
		rc = 0;
	if (fclose(f) != 0)
		rc = -1;
	return rc;
}

/* AUTHENTICATE data: deterministic CBOR {"n": h'32 bytes', "t": text, "ts": uint}. */
static size_t
build_authenticate(uint8_t *apdu, const uint8_t nonce[32], const char *tid, uint64_t ts)
{
	size_t tlen = strlen(tid), n = 5;
	int i, w;

	apdu[n++] = 0xA3;
	apdu[n++] = 0x61; apdu[n++] = 'n';
	apdu[n++] = 0x58; apdu[n++] = 32;
	memcpy(apdu + n, nonce, 32);
	n += 32;
	apdu[n++] = 0x61; apdu[n++] = 't';
	apdu[n++] = (uint8_t)(0x60 | tlen);		/* tlen < 24, checked by main */
	memcpy(apdu + n, tid, tlen);
	n += tlen;
	apdu[n++] = 0x62; apdu[n++] = 't'; apdu[n++] = 's';
	if (ts < 24) {
		apdu[n++] = (uint8_t)ts;
	} else {
		w = ts < 0x100 ? 1 : ts < 0x10000 ? 2 : ts < 0x100000000ULL ? 4 : 8;
		apdu[n++] = (uint8_t)(w == 1 ? 0x18 : w == 2 ? 0x19 : w == 4 ? 0x1A : 0x1B);
		for (i = w - 1; i >= 0; i--)
			apdu[n++] = (uint8_t)(ts >> (8 * i));
	}
	apdu[0] = 0x80; apdu[1] = 0x88; apdu[2] = 0x00; apdu[3] = 0x00;
	apdu[4] = (uint8_t)(n - 5);
	apdu[n++] = 0x00;
	return n;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void
usage(void)
{
	fprintf(stderr, "usage: nfc_probe [-o DIR] [-p POLL_MS] [-a APDU_TIMEOUT_MS] "
	    "[-i CODE_POLL_MS] [-c CODE_TIMEOUT_MS] [-t TERMINAL_ID] [-n READS] [-s] CONNSTRING\n");
	exit(2);
}

static long
num_arg(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 0 || v > 10000000)
		usage();
	return v;
}

int
main(int argc, char **argv)
{
	const char *outdir = NULL, *tid = "vitaled-probe", *reason = NULL;
	long poll_ms = 3000, apdu_ms = 2000, code_poll_ms = 250, code_timeout_ms = 60000;
	long reads = 1, r;
	int stop_after_read = 0, opt, res, polls = 0, pollnr;
	nfc_context *ctx = NULL;
	nfc_device *pnd = NULL;
	nfc_target nt;
	const nfc_modulation nm = { .nmt = NMT_ISO14443A, .nbr = NBR_106 };
	struct watchdog wd = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	pthread_condattr_t ca;
	pthread_t wd_thread;
	int wd_started = 0;
	static uint8_t sel[PROBE_MAX_ANSWER], cred[PROBE_MAX_ANSWER], ans[PROBE_MAX_ANSWER];
	uint8_t auth[5 + 64 + 32 + 24 + 2];
	uint8_t nonce[32];
	size_t sel_len = 0, cred_len = 0, ans_len = 0, auth_len;
	unsigned sw = 0;
	double t, t0, t_auth, *read_ms = NULL;

	while ((opt = getopt(argc, argv, "o:p:a:i:c:t:n:s")) != -1) {
		switch (opt) {
		case 'o': outdir = optarg; break;
		case 'p': poll_ms = num_arg(optarg); break;
		case 'a': apdu_ms = num_arg(optarg); break;
		case 'i': code_poll_ms = num_arg(optarg); break;
		case 'c': code_timeout_ms = num_arg(optarg); break;
		case 't': tid = optarg; break;
		case 'n': reads = num_arg(optarg); break;
		case 's': stop_after_read = 1; break;
		default: usage();
		}
	}
	if (optind != argc - 1 || strlen(tid) == 0 || strlen(tid) > 23 || reads < 1 || apdu_ms < 1)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* The watchdog waits on CLOCK_MONOTONIC, like now_ms(). */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wd.cond, &ca);
	pthread_condattr_destroy(&ca);

	nfc_init(&ctx);
	if (ctx == NULL) {
		printf("result=reader_error (nfc_init)\n");
		return 1;
	}
	t = now_ms();
	pnd = nfc_open(ctx, argv[optind]);
	printf("timing nfc_open %.3f ms\n", now_ms() - t);
	if (pnd == NULL) {
		reason = "reader_error";
		goto out;
	}
	t = now_ms();
	if (nfc_initiator_init(pnd) < 0) {
		printf("nfc_initiator_init: %s\n", nfc_strerror(pnd));
		reason = "reader_error";
		goto out;
	}
	printf("timing nfc_initiator_init %.3f ms\n", now_ms() - t);

	wd.pnd = pnd;
	if (pthread_create(&wd_thread, NULL, watchdog_main, &wd) != 0) {
		reason = "reader_error";
		goto out;
	}
	wd_started = 1;

	/*
	 * InAutoPoll on a PN532 polls pollnr x (2 types) x period x 150 ms; the
	 * watchdog bounds it whatever the chip does.
	 */
	pollnr = (int)(poll_ms / 300);
	pollnr = pollnr < 1 ? 1 : pollnr > 254 ? 254 : pollnr;
	t = now_ms();
	watchdog_arm(&wd, poll_ms + 500);
	res = nfc_initiator_poll_target(pnd, &nm, 1, (uint8_t)pollnr, 1, &nt);
	if (watchdog_disarm(&wd))
		printf("poll: aborted by the watchdog after %.3f ms\n", now_ms() - t);
	printf("timing poll %.3f ms (res %d)\n", now_ms() - t, res);
	if (res < 0) {
		printf("poll: %s\n", nfc_strerror(pnd));
		reason = "reader_error";
		goto out;
	}
	if (res == 0) {
		reason = "no_target";
		goto out;
	}
	printf("target sak=%02X uid_len=%zu ats_len=%zu%s\n", nt.nti.nai.btSak,
	    nt.nti.nai.szUidLen, nt.nti.nai.szAtsLen,
	    nt.nti.nai.szUidLen == 4 && nt.nti.nai.abtUid[0] == 0x08 ? " (random uid)" : "");
	if (!(nt.nti.nai.btSak & 0x20)) {
		reason = "no_applet";		/* not ISO 14443-4: not a phone */
		goto out;
	}

	if ((read_ms = calloc((size_t)reads, sizeof(*read_ms))) == NULL) {
		reason = "reader_error";
		goto out;
	}
	for (r = 0; r < reads; r++) {
		t0 = now_ms();
		reason = exchange(pnd, "SELECT", probe_select, sizeof(probe_select), sel,
		    PROBE_MAX_SELECT, &sel_len, &sw, (int)apdu_ms, r == 0);
		if (reason == NULL && sw != 0x9000)
			reason = "no_applet";
		if (reason != NULL)
			goto out;
		reason = exchange(pnd, "GET CREDENTIAL", probe_get_credential,
		    sizeof(probe_get_credential), cred, PROBE_MAX_CREDENTIAL, &cred_len, &sw,
		    (int)apdu_ms, r == 0);
		if (reason == NULL && sw != 0x9000)
			reason = "status_unexpected";
		if (reason != NULL)
			goto out;
		read_ms[r] = now_ms() - t0;
	}
	qsort(read_ms, (size_t)reads, sizeof(*read_ms), cmp_double);
	printf("timing read %.3f ms (SELECT + GET CREDENTIAL, %zu bytes; median of %ld, min %.3f, max %.3f)\n",
	    read_ms[reads / 2], cred_len, reads, read_ms[0], read_ms[reads - 1]);
	if (outdir != NULL && (write_file(outdir, "select.cbor", sel, sel_len) < 0 ||
	    write_file(outdir, "credential.cbor", cred, cred_len) < 0)) {
		printf("cannot write to %s\n", outdir);
		reason = "reader_error";
		goto out;
	}
	if (stop_after_read)
		goto out;

	if (getrandom(nonce, sizeof(nonce), 0) != (ssize_t)sizeof(nonce)) {
		reason = "reader_error";
		goto out;
	}
	auth_len = build_authenticate(auth, nonce, tid, (uint64_t)time(NULL));
	t_auth = now_ms();
	for (;;) {
		reason = exchange(pnd, "AUTHENTICATE", auth, auth_len, ans, PROBE_MAX_AUTH,
		    &ans_len, &sw, (int)apdu_ms, polls == 0);
		polls++;
		if (reason != NULL || sw != 0x6300)
			break;
		if (polls == 1)
			printf("code to enter on the phone\n");
		if (now_ms() - t_auth >= (double)code_timeout_ms) {
			reason = "code_timeout";
			break;
		}
		usleep((useconds_t)code_poll_ms * 1000);
	}
	printf("timing authenticate %.3f ms (%d polls, last sw=%04X)\n", now_ms() - t_auth, polls, sw);
	if (reason == NULL) {
		if (sw == 0x6982)
			reason = "code_refused";
		else if (sw == 0x6983)
			reason = "code_blocked";
		else if (sw != 0x9000)
			reason = "status_unexpected";
	}
	if (reason == NULL && outdir != NULL &&
	    (write_file(outdir, "answer.cbor", ans, ans_len) < 0 ||
	    write_file(outdir, "nonce.bin", nonce, sizeof(nonce)) < 0)) {
		reason = "reader_error";
	}
out:
	printf("result=%s\n", reason == NULL ? "ok" : reason);
	if (wd_started) {
		pthread_mutex_lock(&wd.lock);
		wd.quit = 1;
		pthread_cond_signal(&wd.cond);
		pthread_mutex_unlock(&wd.lock);
		pthread_join(wd_thread, NULL);
	}
	free(read_ms);
	if (pnd != NULL) {
		t = now_ms();
		nfc_initiator_deselect_target(pnd);
		nfc_close(pnd);
		printf("timing nfc_close %.3f ms\n", now_ms() - t);
	}
	nfc_exit(ctx);
	explicit_bzero(cred, sizeof(cred));
	explicit_bzero(ans, sizeof(ans));
	return reason == NULL ? 0 : 1;
}
