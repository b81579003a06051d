/*
 * pcsc_probe: the minimal PC/SC client of the vitaled test world.
 *
 * Connects to the first reader holding a card (or the one named with -r),
 * prints its ATR, sends the APDUs given in hex on the command line and
 * prints each answer with its timing.  T=0 by the book: 61xx -> GET RESPONSE
 * (00 C0 00 00 xx) until done, 6Cxx -> the same command again with Le = xx
 * (once).  It is also the "minimal C program" baseline of the benchmarks,
 * so it does nothing else.
 *
 *   cc -O2 -o pcsc_probe pcsc_probe.c $(pkg-config --cflags --libs libpcsclite)
 *
 *   pcsc_probe [-r NAME] [-w SECS] [-p t0|t1|any] [-q] [-b N] APDU...
 *   pcsc_probe -l                   list readers and their state
 *   pcsc_probe -E SECS [-n N]       print card events (present/absent)
 *
 * Output (one line each, easy to parse):
 *   reader <name>
 *   atr <hex>
 *   protocol T0|T1
 *   > <command hex>               (data of VERIFY/CHANGE/RESET RETRY masked)
 *   < sw=<SW> len=<n> xch=<transmits> us=<microseconds> data=<hex>
 *   bench n=<N> transmits=<T> min_us= med_us= mean_us= p99_us= max_us=
 *   event <unix time.us> <reader> present|absent|mute [atr=<hex>]
 * With -q the data= field is left out.  Exit: 0 ok, 1 PC/SC error,
 * 2 usage, 3 card misbehaved (61xx/6Cxx loop, answer too long).
 * The reader connection uses PCSCLITE_CSOCK_NAME like any pcsc-lite client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <winscard.h>

#define MAX_APDU 261
#define MAX_RESP 65538
#define MAX_CHAIN 64            /* GET RESPONSE rounds per command */
#define MAX_TOTAL 65536         /* data bytes per command */

static SCARDCONTEXT ctx;
static SCARDHANDLE card;
static DWORD proto;
static int quiet;
static double *samples;
static size_t nsamples, capsamples;

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void hex(FILE *f, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02X", p[i]);
}

static int unhex(const char *s, unsigned char *out, size_t max)
{
	size_t n = 0;
	while (*s) {
		unsigned int b;
		if (*s == ' ' || *s == ':') {
			s++;
			continue;
		}
		if (n >= max || sscanf(s, "%2x", &b) != 1 || !s[1])
			return -1;
		out[n++] = (unsigned char)b;
		s += 2;
	}
	return (int)n;
}

static int fail(const char *what, LONG rv)
{
	fprintf(stderr, "pcsc_probe: %s: %s (0x%08lX)\n", what,
		pcsc_stringify_error(rv), (unsigned long)rv);
	return 1;
}

static LONG xmit(const unsigned char *cmd, DWORD n, unsigned char *resp, DWORD *rn)
{
	const SCARD_IO_REQUEST *pci = proto == SCARD_PROTOCOL_T1 ? SCARD_PCI_T1 : SCARD_PCI_T0;
	double t0 = now_us();
	LONG rv;
	*rn = MAX_RESP;
	rv = SCardTransmit(card, pci, cmd, n, NULL, resp, rn);
	if (samples) {
		if (nsamples == capsamples) {
			capsamples = capsamples ? capsamples * 2 : 1024;
			samples = realloc(samples, capsamples * sizeof *samples);
			if (!samples) {
				perror("realloc");
				exit(1);
			}
		}
		samples[nsamples++] = now_us() - t0;
	}
	return rv;
}

/* One command, T=0 rules.  Returns 0, 1 (PC/SC error) or 3 (card loops). */
static int exchange(const unsigned char *cmd0, int n0, int print)
{
	static unsigned char resp[MAX_RESP], data[MAX_TOTAL + MAX_RESP];
	unsigned char cmd[MAX_APDU];
	size_t total = 0;
	DWORD rn;
	int xch = 0, sixc = 0, chain = 0, n = n0;
	unsigned char sw1, sw2;
	double t0 = now_us();
	LONG rv;

	memcpy(cmd, cmd0, n);
	for (;;) {
		rv = xmit(cmd, n, resp, &rn);
		xch++;
		if (rv != SCARD_S_SUCCESS)
			return fail("SCardTransmit", rv);
		if (rn < 2) {
			fprintf(stderr, "pcsc_probe: answer shorter than a status word "
				"(%lu bytes)\n", (unsigned long)rn);
			return 3;
		}
		sw1 = resp[rn - 2];
		sw2 = resp[rn - 1];
		if (sw1 == 0x6C) {              /* wrong Le: repeat with Le = sw2 */
			if (sixc++) {
				fprintf(stderr, "pcsc_probe: 6Cxx answered to 6Cxx\n");
				return 3;
			}
			if (n == 4)
				n = 5;
			else if (n > 5 && n == 5 + cmd[4])
				n++;            /* case 3: add Le */
			cmd[n - 1] = sw2;
			continue;
		}
		sixc = 0;
		if (total + rn - 2 > MAX_TOTAL) {
			fprintf(stderr, "pcsc_probe: answer longer than %d bytes\n", MAX_TOTAL);
			return 3;
		}
		memcpy(data + total, resp, rn - 2);
		total += rn - 2;
		if (sw1 != 0x61)
			break;
		if (++chain > MAX_CHAIN) {
			fprintf(stderr, "pcsc_probe: more than %d GET RESPONSE\n", MAX_CHAIN);
			return 3;
		}
		cmd[0] = 0x00;                  /* GET RESPONSE, Le = sw2 */
		cmd[1] = 0xC0;
		cmd[2] = cmd[3] = 0x00;
		cmd[4] = sw2;
		n = 5;
	}
	if (print) {
		printf("< sw=%02X%02X len=%zu xch=%d us=%.0f", sw1, sw2, total, xch,
		       now_us() - t0);
		if (!quiet) {
			printf(" data=");
			hex(stdout, data, total);
		}
		printf("\n");
	}
	return 0;
}

static void print_cmd(const unsigned char *c, int n)
{
	int secret = n > 5 && (c[1] == 0x20 || c[1] == 0x21 || c[1] == 0x24 || c[1] == 0x2C);
	printf("> ");
	hex(stdout, c, secret ? 5 : (size_t)n);
	if (secret)
		printf("********");
	printf("\n");
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *readers(DWORD *len)
{
	char *buf;
	LONG rv = SCardListReaders(ctx, NULL, NULL, len);
	if (rv != SCARD_S_SUCCESS) {
		fail("SCardListReaders", rv);
		return NULL;
	}
	buf = malloc(*len);
	if (!buf || SCardListReaders(ctx, NULL, buf, len) != SCARD_S_SUCCESS) {
		free(buf);
		return NULL;
	}
	return buf;
}

static const char *state_name(DWORD s)
{
	if (s & SCARD_STATE_MUTE)
		return "mute";
	if (s & SCARD_STATE_PRESENT)
		return "present";
	if (s & SCARD_STATE_EMPTY)
		return "absent";
	return "unknown";
}

/* -l, -E and -w: watch reader states.  mode 0: list, 1: events, 2: wait card */
static int watch(int mode, double secs, int maxev, const char *want, char *pick, size_t picklen)
{
	SCARD_READERSTATE rs[16];
	DWORD len, nr = 0;
	char *names = readers(&len), *p;
	int events = 0;
	double end = now_us() + secs * 1e6;
	LONG rv;

	if (!names)
		return 1;
	for (p = names; *p && nr < 16; p += strlen(p) + 1) {
		if (want && !strstr(p, want))
			continue;
		memset(&rs[nr], 0, sizeof rs[nr]);
		rs[nr].szReader = p;
		rs[nr].dwCurrentState = SCARD_STATE_UNAWARE;
		nr++;
	}
	if (!nr) {
		fprintf(stderr, "pcsc_probe: no reader%s%s\n", want ? " matching " : "", want ? want : "");
		free(names);
		return 1;
	}
	rv = SCardGetStatusChange(ctx, 0, rs, nr);
	if (rv != SCARD_S_SUCCESS && rv != SCARD_E_TIMEOUT) {
		free(names);
		return fail("SCardGetStatusChange", rv);
	}
	for (DWORD i = 0; i < nr; i++) {
		rs[i].dwCurrentState = rs[i].dwEventState & ~SCARD_STATE_CHANGED;
		if (mode == 0) {
			printf("reader %s: %s", rs[i].szReader, state_name(rs[i].dwEventState));
			if (rs[i].dwEventState & SCARD_STATE_PRESENT) {
				printf(" atr=");
				hex(stdout, rs[i].rgbAtr, rs[i].cbAtr);
			}
			printf("\n");
		}
		if (mode == 2 && (rs[i].dwEventState & SCARD_STATE_PRESENT) &&
		    !(rs[i].dwEventState & SCARD_STATE_MUTE)) {
			snprintf(pick, picklen, "%s", rs[i].szReader);
			free(names);
			return 0;
		}
	}
	if (mode == 0) {
		free(names);
		return 0;
	}
	if (mode == 1) {
		printf("ready\n");
		fflush(stdout);
	}
	while (now_us() < end && (maxev <= 0 || events < maxev)) {
		DWORD ms = (DWORD)((end - now_us()) / 1000) + 1;
		rv = SCardGetStatusChange(ctx, ms, rs, nr);
		if (rv == SCARD_E_TIMEOUT)
			break;
		if (rv != SCARD_S_SUCCESS) {
			free(names);
			return fail("SCardGetStatusChange", rv);
		}
		for (DWORD i = 0; i < nr; i++) {
			if (!(rs[i].dwEventState & SCARD_STATE_CHANGED))
				continue;
			DWORD was = rs[i].dwCurrentState, is = rs[i].dwEventState;
			rs[i].dwCurrentState = is & ~SCARD_STATE_CHANGED;
			if (!((was ^ is) & (SCARD_STATE_PRESENT | SCARD_STATE_EMPTY | SCARD_STATE_MUTE)))
				continue;
			if (mode == 2 && (is & SCARD_STATE_PRESENT) && !(is & SCARD_STATE_MUTE)) {
				snprintf(pick, picklen, "%s", rs[i].szReader);
				free(names);
				return 0;
			}
			if (mode == 1) {
				struct timespec ts;
				clock_gettime(CLOCK_REALTIME, &ts);
				printf("event %ld.%06ld %s %s", (long)ts.tv_sec, ts.tv_nsec / 1000,
				       rs[i].szReader, state_name(is));
				if (is & SCARD_STATE_PRESENT) {
					printf(" atr=");
					hex(stdout, rs[i].rgbAtr, rs[i].cbAtr);
				}
				printf("\n");
				fflush(stdout);
				events++;
			}
		}
	}
	free(names);
	if (mode == 2) {
		fprintf(stderr, "pcsc_probe: no card\n");
		return 1;
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pcsc_probe [-r NAME] [-w SECS] [-p t0|t1|any] [-q] [-b N] APDU...\n"
		"       pcsc_probe -l | -E SECS [-n N] [-r NAME]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *want = NULL;
	char reader[256];
	double waitsecs = 0, evsecs = -1;
	int list = 0, bench = 0, maxev = 0, opt, rc = 0;
	DWORD pref = SCARD_PROTOCOL_T0, alen = MAX_ATR_SIZE, rlen = sizeof reader, st;
	unsigned char atr[MAX_ATR_SIZE];
	LONG rv;

	while ((opt = getopt(argc, argv, "r:w:p:qb:lE:n:h")) != -1) {
		switch (opt) {
		case 'r': want = optarg; break;
		case 'w': waitsecs = atof(optarg); break;
		case 'p':
			if (!strcmp(optarg, "t0")) pref = SCARD_PROTOCOL_T0;
			else if (!strcmp(optarg, "t1")) pref = SCARD_PROTOCOL_T1;
			else if (!strcmp(optarg, "any")) pref = SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1;
			else usage();
			break;
		case 'q': quiet = 1; break;
		case 'b': bench = (int)strtol(optarg, NULL, 10); break;
		case 'l': list = 1; break;
		case 'E': evsecs = atof(optarg); break;
		case 'n': maxev = (int)strtol(optarg, NULL, 10); break;
		default: usage();
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (rv != SCARD_S_SUCCESS)
		return fail("SCardEstablishContext", rv);
	if (list || evsecs >= 0) {
		rc = watch(list ? 0 : 1, evsecs, maxev, want, NULL, 0);
		SCardReleaseContext(ctx);
		return rc;
	}
	rc = watch(2, waitsecs, 0, want, reader, sizeof reader);
	if (rc) {
		SCardReleaseContext(ctx);
		return rc;
	}
	rv = SCardConnect(ctx, reader, SCARD_SHARE_SHARED, pref, &card, &proto);
	if (rv != SCARD_S_SUCCESS) {
		SCardReleaseContext(ctx);
		printf("reader %s\n", reader);
		return fail("SCardConnect", rv);
	}
	rv = SCardStatus(card, reader, &rlen, &st, &proto, atr, &alen);
	if (rv != SCARD_S_SUCCESS) {
		rc = fail("SCardStatus", rv);
		goto out;
	}
	printf("reader %s\natr ", reader);
	hex(stdout, atr, alen);
	printf("\nprotocol %s\n", proto == SCARD_PROTOCOL_T1 ? "T1" : "T0");
	if (bench > 0)
		samples = malloc(sizeof *samples), capsamples = 1;
	for (int round = 0; round < (bench > 0 ? bench : 1) && !rc; round++) {
		for (int i = optind; i < argc && !rc; i++) {
			unsigned char cmd[MAX_APDU];
			int n = unhex(argv[i], cmd, sizeof cmd);
			if (n < 4) {
				fprintf(stderr, "pcsc_probe: bad APDU %s\n", argv[i]);
				rc = 2;
				break;
			}
			if (!bench)
				print_cmd(cmd, n);
			rc = exchange(cmd, n, !bench);
		}
	}
	if (bench > 0 && !rc && nsamples) {
		double sum = 0;
		qsort(samples, nsamples, sizeof *samples, cmpd);
		for (size_t i = 0; i < nsamples; i++)
			sum += samples[i];
		printf("bench n=%d transmits=%zu min_us=%.1f med_us=%.1f mean_us=%.1f "
		       "p99_us=%.1f max_us=%.1f\n", bench, nsamples, samples[0],
		       samples[nsamples / 2], sum / nsamples,
		       samples[(size_t)(nsamples * 0.99)], samples[nsamples - 1]);
	}
	free(samples);
out:
	SCardDisconnect(card, SCARD_LEAVE_CARD);
	SCardReleaseContext(ctx);
	return rc;
}
