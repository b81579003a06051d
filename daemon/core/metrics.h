/* Metrics in the Prometheus text format (version 0.0.4): the counters the
 * modules keep here, the gauges read from GetStatus (readers, drivers,
 * queue, uploader, signer) and those of providers the modules register
 * (sheets by state). Served by GetMetrics (`vitalectl metrics`) and, with
 * [metrics] textfile = PATH, written to PATH every [metrics] interval_s for
 * node_exporter's textfile collector: a temporary file in the same
 * directory renamed over PATH, so a reader never sees half a file. One
 * timer, every interval_s (60 s by default): an idle daemon wakes for it
 * once a minute, and not at all without a textfile.
 *
 * Loop thread only.
 */
#ifndef VITALED_CORE_METRICS_H
#define VITALED_CORE_METRICS_H

#include <stdio.h>

struct daemon;

enum metrics_counter {
	METRICS_CARDS_READ,      /* label profile */
	METRICS_CARD_ERRORS,     /* no label */
	METRICS_UPLOAD_ATTEMPTS, /* batches sent to the insurer */
	METRICS_UPLOAD_FAILURES, /* exchanges that failed (retried or stopped the round) */
	METRICS_PIN_FAILURES,    /* label target: practitioner, card, unblock */
	METRICS_NCOUNTERS
};

/* Count one; label: the label's value (NULL for a counter without label).
 * Counters live from start to stop (a restart resets them, as Prometheus
 * counters may). */
void metrics_inc(enum metrics_counter c, const char *label);

/* A provider writes whole families (metrics_family, then its samples). */
typedef void (*metrics_fn)(FILE *f, void *arg);
/* At most 8; 0 or -ENOSPC. Forgotten at metrics_fini. */
int metrics_add_provider(metrics_fn fn, void *arg);
/* # HELP and # TYPE lines of one family. */
void metrics_family(FILE *f, const char *name, const char *type, const char *help);
/* name{label="value"} v (label NULL: none); the value escaped. */
void metrics_sample(FILE *f, const char *name, const char *label, const char *value, double v);

/* The counters' families (every one, with HELP and TYPE; a counter without
 * label shows 0 before its first count). */
void metrics_write_counters(FILE *f);
/* The whole exposition (malloc'd, NUL-terminated), or NULL. */
char *metrics_text(struct daemon *d);

/* Module "metrics": GetMetrics and the textfile timer. Last in the list
 * (its fini writes the textfile a last time, vitaled_up 0). */
int metrics_init(struct daemon *d);
void metrics_fini(struct daemon *d);

#endif
