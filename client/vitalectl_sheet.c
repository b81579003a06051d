/* vitalectl's sheet and queue commands.
 *
 *   sheet create (--reader NAME [--beneficiary N] | --degraded --patient-json FILE)
 *                (--act CODE:COEF:AMOUNT_CENTS[:DATE] ...
 *                 --medicine CIP13:SERVICE:QTY:UNIT_CENTS[:DATE] ...
 *                 --device LPP:QTY:UNIT_CENTS[:DATE] ... | --input FILE) [options]
 *   sheet draft [--reader NAME] [--beneficiary N] [--input FILE]
 *   sheet complete ID (--act ... | --input FILE) [options]
 *   sheet list [--state S[,S]] [--from D] [--to D] [--due-before D] [--limit N] [--all]
 *   sheet show ID
 *   sheet export ID -o FILE
 *   sheet print ID -o FILE                   (the paper duplicata, PDF)
 *   sheet verify FILE --cert CERT.pem        (offline: no daemon needed)
 *   queue
 *
 * `sheet verify` links protocol/sheetsig (with protocol/cbor, cose, sheet,
 * holidays and OpenSSL): it checks the COSE signature against the
 * certificate's key and the content's shape and rules, without the daemon
 * (docs/care-sheet.md "The signed form"). Its exit code: 0 valid, 1 not
 * valid, 2 usage or unreadable files.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/b64.h"
#include "protocol/holidays.h"
#include "protocol/sheetsig.h"
#include "client/vitalectl.h"

#define FILE_MAX (1u << 20)

static json_t *
load_json_file(const char *path)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		fprintf(stderr, "vitalectl: %s:%d: %s\n", path, je.line, je.text);
	else if (!json_is_object(j)) {
		fprintf(stderr, "vitalectl: %s: not a JSON object\n", path);
		json_decref(j);
		j = NULL;
	}
	return j;
}

/* Split spec at ':' into at most max parts (in buf); the count, or 0. */
static size_t
split_spec(const char *spec, char *buf, size_t buflen, char **parts, size_t max)
{
	size_t n = 0;
	if (strlen(spec) >= buflen)
		return 0;
	snprintf(buf, buflen, "%s", spec);
	for (char *p = buf; n < max;) {
		parts[n++] = p;
		char *c = strchr(p, ':');
		if (!c)
			break;
		*c = '\0';
		p = c + 1;
	}
	return strchr(parts[n - 1], ':') ? 0 : n;
}

static bool
get_ll(const char *v, long long *out)
{
	char *end;
	*out = strtoll(v, &end, 10);
	return *end == '\0' && end != v;
}

/* CODE:COEF:AMOUNT_CENTS[:DATE] as an act line. */
static json_t *
parse_act(const char *spec)
{
	char buf[128], *parts[4] = { NULL };
	size_t n = split_spec(spec, buf, sizeof(buf), parts, 4);
	if (n < 3)
		return NULL;
	char *end;
	double coef = strtod(parts[1], &end);
	if (*end || end == parts[1] || coef < 0)
		return NULL;
	long long amount;
	if (!get_ll(parts[2], &amount))
		return NULL;
	json_t *a = json_pack("{s:s,s:s,s:I}", "kind", "act", "code", parts[0], "amount",
	                      (json_int_t)amount);
	if (coef == (double)(long long)coef)
		json_object_set_new(a, "coefficient", json_integer((json_int_t)coef));
	else
		json_object_set_new(a, "coefficient", json_real(coef));
	if (n == 4)
		json_object_set_new(a, "date", json_string(parts[3]));
	return a;
}

/* CIP13:SERVICE:QTY:UNIT_CENTS[:DATE] (medicine) or LPP:QTY:UNIT_CENTS[:DATE]
 * (device) as a line; its amount is quantity × unit price. */
static json_t *
parse_item(const char *spec, bool medicine)
{
	char buf[128], *parts[5] = { NULL };
	size_t want = medicine ? 4 : 3;
	size_t n = split_spec(spec, buf, sizeof(buf), parts, want + 1);
	long long qty, unit;
	if (n < want || !get_ll(parts[want - 2], &qty) || !get_ll(parts[want - 1], &unit) ||
	    qty < 0 || qty > 1000000 || unit < 0 || unit > 100000000000LL)
		return NULL;
	json_t *l = json_pack("{s:s,s:s,s:I,s:I,s:I}", "kind", medicine ? "medicine" : "device",
	                      medicine ? "cip13" : "lpp", parts[0], "quantity", (json_int_t)qty,
	                      "unit_price", (json_int_t)unit, "amount", (json_int_t)(qty * unit));
	if (medicine)
		json_object_set_new(l, "service", json_string(parts[1]));
	if (n == want + 1)
		json_object_set_new(l, "date", json_string(parts[want]));
	return l;
}

/* The options shared by create and complete: they build the till's part. */
struct sheet_opts {
	json_t *sheet;       /* what is being built */
	const char *reader;
	long beneficiary;
	bool degraded;
	long long amo, amc, patient;
	bool amo_set, amc_set, patient_set;
	const char *amc_id;   /* --amc-id */
	bool amc_tp;          /* --amc-tiers-payant */
};

static int
usage_sheet(void)
{
	fprintf(stderr,
	        "usage: vitalectl sheet create (--reader NAME [--beneficiary N] | --degraded --patient-json FILE)\n"
	        "                              (--act CODE:COEF:AMOUNT_CENTS[:DATE] ...\n"
	        "                               --medicine CIP13:SERVICE:QTY:UNIT_CENTS[:DATE] ...\n"
	        "                               --device LPP:QTY:UNIT_CENTS[:DATE] ... | --input FILE)\n"
	        "                              [--care-date YYYY-MM-DD] [--insurance maladie|maternite|at_mp|smg]\n"
	        "                              [--at-date D] [--at-number REF] [--maternity-date D]\n"
	        "                              [--pathway NAME[:REFERRER_ID]] [--exemption NAME]\n"
	        "                              [--tiers-payant] [--insurer RR:CCC:CCCC]\n"
	        "                              [--amo CENTS] [--amc CENTS] [--patient CENTS]\n"
	        "                              [--amc-id NUMBER] [--amc-tiers-payant]\n"
	        "                              [--prescriber ID[:DATE]]\n"
	        "       vitalectl sheet draft [--reader NAME] [--beneficiary N] [--input FILE]\n"
	        "       vitalectl sheet complete ID (--act ... | --input FILE) [the options of create]\n"
	        "       vitalectl sheet list [--state S[,S...]] [--from D] [--to D] [--due-before D]\n"
	        "                            [--limit N] [--all]\n"
	        "       vitalectl sheet show ID\n"
	        "       vitalectl sheet export ID -o FILE\n"
	        "       vitalectl sheet print ID -o FILE.pdf          (the paper duplicata)\n"
	        "       vitalectl sheet verify FILE --cert CERT.pem   (offline)\n"
	        "--input FILE (-i; formerly --json FILE): the till's part as a JSON object.\n"
	        "Totals when not in the input: total = the lines' sum; amo = total - amc - patient.\n");
	return EXIT_USAGE;
}

static bool
set_money(const char *v, long long *out, bool *set)
{
	char *end;
	*out = strtoll(v, &end, 10);
	*set = true;
	return *end == '\0' && end != v && *out >= 0;
}

/* The lines: a JSON file's ("lines", or model 1's "acts", each an act),
 * then the options'; the totals from them unless the JSON gave them; the
 * AMC from --amc-id / --amc-tiers-payant / --amc. */
static void
finish_lines(json_t *s, json_t *opts_lines, const struct sheet_opts *o)
{
	json_t *lines = json_object_get(s, "lines"), *old = json_object_get(s, "acts");
	size_t k;
	json_t *l;
	if (json_is_array(old) && !lines && json_array_size(opts_lines)) {
		/* model 1's acts from a file, more lines from the options: all lines */
		lines = json_array();
		json_array_foreach(old, k, l) {
			json_t *c = json_deep_copy(l);
			json_object_set_new(c, "kind", json_string("act"));
			json_array_append_new(lines, c);
		}
		json_object_set_new(s, "lines", lines);
		json_object_del(s, "acts");
	}
	if (json_array_size(opts_lines)) {
		if (json_is_array(lines))
			json_array_extend(lines, opts_lines);
		else
			json_object_set(s, "lines", opts_lines);
	}
	json_t *all = json_object_get(s, "lines");
	if (!all)
		all = json_object_get(s, "acts");
	long long amc = o->amc_set ? o->amc : 0;
	if (!json_object_get(s, "totals") && json_is_array(all) && json_array_size(all)) {
		long long total = 0;
		json_array_foreach(all, k, l) total += json_integer_value(json_object_get(l, "amount"));
		long long patient = o->patient_set ? o->patient : 0;
		long long amo = o->amo_set ? o->amo : total - amc - patient;
		if (!o->patient_set && o->amo_set)
			patient = total - amo - amc;
		json_object_set_new(s, "totals", json_pack("{s:I,s:I,s:I,s:I}", "total", (json_int_t)total,
		                                           "amo", (json_int_t)amo, "amc", (json_int_t)amc,
		                                           "patient", (json_int_t)patient));
	}
	if (o->amc_id || o->amc_tp) {
		json_t *a = json_pack("{s:b}", "tiers_payant", o->amc_tp);
		if (o->amc_id)
			json_object_set_new(a, "id", json_string(o->amc_id));
		json_object_set_new(s, "amc", a);
	} else if (!json_object_get(s, "amc") && json_is_array(all) && json_array_size(all))
		json_object_set_new(s, "amc", json_boolean(amc > 0));
	if (all && !json_object_get(s, "insurance"))
		json_object_set_new(s, "insurance", json_string("maladie"));
	if (all && !json_object_get(s, "tiers_payant"))
		json_object_set_new(s, "tiers_payant", json_false());
}

/* Read the options of create/draft/complete from argv[i...]. */
static int
parse_sheet_opts(int argc, char **argv, int i, struct sheet_opts *o, bool allow_patient)
{
	json_t *acts = json_array();
	json_t *s = o->sheet;
	for (; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool used = true;
		if (!strcmp(a, "--reader") && v) {
			o->reader = v;
		} else if (!strcmp(a, "--beneficiary") && v) {
			char *end;
			o->beneficiary = strtol(v, &end, 10);
			if (*end || o->beneficiary < 0)
				goto bad;
		} else if ((!strcmp(a, "--input") || !strcmp(a, "-i") || !strcmp(a, "--json")) && v) {
			/* --json FILE: the old spelling, kept (see json_names_input) */
			json_t *j = load_json_file(v);
			if (!j)
				goto fail;
			json_object_update(s, j);
			json_decref(j);
		} else if (!strcmp(a, "--patient-json") && v && allow_patient) {
			json_t *j = load_json_file(v);
			if (!j)
				goto fail;
			json_object_update(s, j);
			json_decref(j);
		} else if (!strcmp(a, "--act") && v) {
			json_t *act = parse_act(v);
			if (!act) {
				fprintf(stderr, "vitalectl: --act %s: want CODE:COEF:AMOUNT_CENTS[:DATE]\n", v);
				goto fail_usage;
			}
			json_array_append_new(acts, act);
		} else if ((!strcmp(a, "--medicine") || !strcmp(a, "--device")) && v) {
			json_t *item = parse_item(v, !strcmp(a, "--medicine"));
			if (!item) {
				fprintf(stderr, "vitalectl: %s %s: want %s\n", a, v,
				        !strcmp(a, "--medicine") ? "CIP13:SERVICE:QTY:UNIT_CENTS[:DATE]" :
				                                   "LPP:QTY:UNIT_CENTS[:DATE]");
				goto fail_usage;
			}
			json_array_append_new(acts, item);
		} else if (!strcmp(a, "--pathway") && v) {
			const char *c = strchr(v, ':');
			json_object_set_new(s, "pathway", json_stringn(v, c ? (size_t)(c - v) : strlen(v)));
			if (c)
				json_object_set_new(s, "referrer_id", json_string(c + 1));
		} else if (!strcmp(a, "--exemption") && v) {
			json_object_set_new(s, "exemption", json_string(v));
		} else if (!strcmp(a, "--maternity-date") && v) {
			json_object_set_new(s, "maternity_date", json_string(v));
		} else if (!strcmp(a, "--at-number") && v) {
			json_object_set_new(s, "at_number", json_string(v));
		} else if (!strcmp(a, "--amc-id") && v) {
			o->amc_id = v;
		} else if (!strcmp(a, "--amc-tiers-payant")) {
			o->amc_tp = true;
			used = false;
		} else if (!strcmp(a, "--care-date") && v) {
			json_object_set_new(s, "care_date", json_string(v));
		} else if (!strcmp(a, "--at-date") && v) {
			json_object_set_new(s, "at_date", json_string(v));
		} else if (!strcmp(a, "--insurance") && v) {
			json_object_set_new(s, "insurance", json_string(v));
		} else if (!strcmp(a, "--insurer") && v) {
			char r[8], c[8], e[8];
			const char *p1 = strchr(v, ':'), *p2 = p1 ? strchr(p1 + 1, ':') : NULL;
			if (!p2 || p1 - v >= 8 || p2 - p1 - 1 >= 8 || strlen(p2 + 1) >= 8)
				goto bad;
			snprintf(r, sizeof(r), "%.*s", (int)(p1 - v), v);
			snprintf(c, sizeof(c), "%.*s", (int)(p2 - p1 - 1), p1 + 1);
			snprintf(e, sizeof(e), "%s", p2 + 1);
			json_object_set_new(s, "insurer",
			                    json_pack("{s:s,s:s,s:s}", "regime", r, "caisse", c, "centre", e));
		} else if (!strcmp(a, "--prescriber") && v) {
			char id[16];
			const char *c = strchr(v, ':');
			snprintf(id, sizeof(id), "%.*s", c ? (int)(c - v) : (int)strlen(v), v);
			json_t *p = json_pack("{s:s}", "id", id);
			if (c)
				json_object_set_new(p, "date", json_string(c + 1));
			json_object_set_new(s, "prescriber", p);
		} else if (!strcmp(a, "--amo") && v) {
			if (!set_money(v, &o->amo, &o->amo_set))
				goto bad;
		} else if (!strcmp(a, "--amc") && v) {
			if (!set_money(v, &o->amc, &o->amc_set))
				goto bad;
		} else if (!strcmp(a, "--patient") && v) {
			if (!set_money(v, &o->patient, &o->patient_set))
				goto bad;
		} else if (!strcmp(a, "--tiers-payant")) {
			json_object_set_new(s, "tiers_payant", json_true());
			used = false;
		} else if (!strcmp(a, "--degraded") && allow_patient) {
			o->degraded = true;
			used = false;
		} else {
			goto bad;
		}
		if (used)
			i++;
	}
	finish_lines(s, acts, o);
	json_decref(acts);
	return 0;
bad:
	fprintf(stderr, "vitalectl: sheet: bad or unknown option '%s'\n", argv[i]);
fail_usage:
	json_decref(acts);
	usage_sheet();
	return EXIT_USAGE;
fail:
	json_decref(acts);
	return EXIT_USAGE;
}

static void
print_invalid(json_t *r)
{
	size_t i;
	json_t *e;
	fprintf(stderr, "vitalectl: the sheet is not valid:\n");
	json_array_foreach(json_object_get(r, "errors"), i, e)
		fprintf(stderr, "  %s: %s\n", jstr(e, "field", "?"), jstr(e, "reason", "?"));
}

/* Call a create-like method and print what was stored. */
static int
call_create(struct ctl *ctl, const char *method, json_t *params)
{
	json_t *r = NULL;
	char *err = NULL;
	/* a create waits for the signer and one fsync; a card signs in < 1 s */
	int rc = ctl_call_err(ctl, method, params, &r, &err);
	if (rc == EXIT_REPLY_ERROR) {
		if (!strcmp(err, IFACE ".InvalidSheet")) {
			print_invalid(r);
		} else if (!strcmp(err, IFACE ".NotLoggedIn")) {
			fprintf(stderr, "vitalectl: the practitioner is not logged in: run `vitalectl pin`, "
			                "then try again\n");
		} else {
			char *p = json_dumps(r, JSON_COMPACT);
			fprintf(stderr, "vitalectl: %s: %s %s\n", method, err, p ? p : "");
			free(p);
		}
		free(err);
		json_decref(r);
		return rc;
	}
	if (rc)
		return rc;
	if (ctl->json) {
		print_json(r);
	} else if (!strcmp(jstr(r, "state", ""), "draft")) {
		printf("draft %s (%s, care date %s)\n", jstr(r, "id", "?"), jstr(r, "mode", "?"),
		       jstr(r, "care_date", "?"));
	} else {
		printf("queued %s: no. %lld of %s for %s, due %s (%s)\n", jstr(r, "id", "?"),
		       (long long)json_integer_value(json_object_get(r, "seq")), jstr(r, "care_date", "?"),
		       jstr(r, "practitioner_id", "?"), jstr(r, "due_date", "?"), jstr(r, "mode", "?"));
	}
	json_decref(r);
	return 0;
}

static int
sheet_create(struct ctl *ctl, int argc, char **argv, bool draft)
{
	struct sheet_opts o = { .sheet = json_object() };
	int rc = parse_sheet_opts(argc, argv, 2, &o, !draft);
	if (rc) {
		json_decref(o.sheet);
		return rc;
	}
	if (!draft && !o.degraded && json_object_get(o.sheet, "nir")) {
		fprintf(stderr, "vitalectl: --patient-json needs --degraded (with a card, the card names the patient)\n");
		json_decref(o.sheet);
		return EXIT_USAGE;
	}
	if (o.degraded && o.reader) {
		fprintf(stderr, "vitalectl: --degraded is a sheet without a card: no --reader\n");
		json_decref(o.sheet);
		return EXIT_USAGE;
	}
	json_t *p = json_pack("{s:o}", "sheet", o.sheet);
	if (o.reader)
		json_object_set_new(p, "reader", json_string(o.reader));
	if (o.beneficiary)
		json_object_set_new(p, "beneficiary", json_integer(o.beneficiary));
	if (o.degraded)
		json_object_set_new(p, "degraded", json_true());
	return call_create(ctl, draft ? IFACE ".CreateDraft" : IFACE ".CreateSheet", p);
}

static int
sheet_complete(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 3)
		return usage_sheet();
	struct sheet_opts o = { .sheet = json_object() };
	int rc = parse_sheet_opts(argc, argv, 3, &o, false);
	if (rc) {
		json_decref(o.sheet);
		return rc;
	}
	return call_create(ctl, IFACE ".CompleteDraft",
	                   json_pack("{s:s,s:o}", "id", argv[2], "sheet", o.sheet));
}

static int
sheet_list(struct ctl *ctl, int argc, char **argv)
{
	json_t *p = json_object();
	bool all = false;
	for (int i = 2; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char *key = !strcmp(argv[i], "--state")      ? "state" :
		                  !strcmp(argv[i], "--from")       ? "from" :
		                  !strcmp(argv[i], "--to")         ? "to" :
		                  !strcmp(argv[i], "--due-before") ? "due_before" :
		                  !strcmp(argv[i], "--practitioner") ? "practitioner_id" :
		                                                     NULL;
		if (key && v) {
			json_object_set_new(p, key, json_string(v));
			i++;
		} else if (!strcmp(argv[i], "--limit") && v) {
			char *end;
			long n = strtol(v, &end, 10);
			if (*end || n < 1 || n > 1000) {
				json_decref(p);
				return usage_sheet();
			}
			json_object_set_new(p, "limit", json_integer(n));
			i++;
		} else if (!strcmp(argv[i], "--all")) {
			all = true;
		} else {
			json_decref(p);
			return usage_sheet();
		}
	}
	json_t *rows = json_array();
	int rc = 0;
	for (;;) {
		json_t *r = NULL;
		rc = ctl_call(ctl, IFACE ".ListSheets", json_deep_copy(p), &r);
		if (rc)
			break;
		json_t *sheets = json_object_get(r, "sheets");
		json_array_extend(rows, sheets);
		bool more = json_is_true(json_object_get(r, "more"));
		json_t *last = json_array_get(sheets, json_array_size(sheets) - 1);
		if (more && last)
			json_object_set(p, "after", json_object_get(last, "cursor"));
		json_decref(r);
		if (!all || !more)
			break;
	}
	json_decref(p);
	if (rc) {
		json_decref(rows);
		return rc;
	}
	if (ctl->json) {
		json_t *o = json_pack("{s:O}", "sheets", rows);
		print_json(o);
		json_decref(o);
	} else if (json_array_size(rows) == 0) {
		printf("no sheets\n");
	} else {
		size_t i;
		json_t *m;
		printf("%-36s %-8s %5s %-10s %-10s %-12s %s\n", "ID", "STATE", "SEQ", "CARE", "DUE",
		       "PRACTITIONER", "INSURER");
		json_array_foreach(rows, i, m) {
			json_t *seq = json_object_get(m, "seq");
			char sq[16] = "-";
			if (json_is_integer(seq))
				snprintf(sq, sizeof(sq), "%lld", (long long)json_integer_value(seq));
			/* the insurer's code for a rejected or refused sheet; a
			 * queued one whose signing certificate is unknown cannot go */
			const char *code = jstr(m, "code", NULL);
			bool nocert = json_is_false(json_object_get(m, "cert_known")) &&
			              !strcmp(jstr(m, "state", ""), "queued");
			printf("%-36s %-8s %5s %-10s %-10s %-12s %s\n", jstr(m, "id", "?"),
			       jstr(m, "state", "?"), sq, jstr(m, "care_date", "?"), jstr(m, "due_date", "-"),
			       jstr(m, "practitioner_id", "?"),
			       code ? code : nocert ? "(no certificate: waits)" : "-");
		}
	}
	json_decref(rows);
	return 0;
}

static void
print_sheet(json_t *s)
{
	json_t *ins = json_object_get(s, "insurer"), *t = json_object_get(s, "totals");
	printf("patient:     NIR %s%s%s, insurer %s/%s/%s\n", jstr(s, "nir", "?"),
	       jstr(s, "birth_date", NULL) ? ", born " : "", jstr(s, "birth_date", ""),
	       jstr(ins, "regime", "-"), jstr(ins, "caisse", "-"), jstr(ins, "centre", "-"));
	printf("mode:        %s\n", jstr(s, "mode", "?"));
	json_t *ev = json_object_get(s, "evidence");
	if (jstr(ev, "card_serial", NULL))
		printf("evidence:    card %s read at %lld\n", jstr(ev, "card_serial", ""),
		       (long long)json_integer_value(json_object_get(ev, "read_at")));
	else if (jstr(ev, "device_answer", NULL))
		printf("evidence:    the phone's signed answer (%zu base64 characters)\n",
		       strlen(jstr(ev, "device_answer", "")));
	printf("insurance:   %s%s\n", jstr(s, "insurance", "-"),
	       json_is_true(json_object_get(s, "tiers_payant")) ? ", tiers payant" : "");
	size_t i;
	json_t *a;
	json_t *lines = json_object_get(s, "lines");
	json_array_foreach(lines ? lines : json_object_get(s, "acts"), i, a) {
		long long amount = (long long)json_integer_value(json_object_get(a, "amount"));
		const char *kind = jstr(a, "kind", "act");
		if (!strcmp(kind, "act")) {
			char *coef = json_dumps(json_object_get(a, "coefficient"), JSON_ENCODE_ANY);
			printf("line %zu:      %s act      %-13s x%s %lld.%02lld EUR\n", i + 1,
			       jstr(a, "date", "?"), jstr(a, "code", "?"), coef ? coef : "?", amount / 100,
			       amount % 100);
			free(coef);
		} else {
			long long unit = (long long)json_integer_value(json_object_get(a, "unit_price"));
			printf("line %zu:      %s %-8s %-13s %s%s%lld x %lld.%02lld = %lld.%02lld EUR\n", i + 1,
			       jstr(a, "date", "?"), kind, jstr(a, !strcmp(kind, "medicine") ? "cip13" : "lpp", "?"),
			       jstr(a, "service", ""), jstr(a, "service", NULL) ? " " : "",
			       (long long)json_integer_value(json_object_get(a, "quantity")), unit / 100,
			       unit % 100, amount / 100, amount % 100);
		}
	}
	if (jstr(s, "pathway", NULL) || jstr(s, "exemption", NULL))
		printf("context:     pathway %s%s%s, exemption %s\n", jstr(s, "pathway", "-"),
		       jstr(s, "referrer_id", NULL) ? " by " : "", jstr(s, "referrer_id", ""),
		       jstr(s, "exemption", "-"));
	json_t *amc = json_object_get(s, "amc");
	if (json_is_object(amc))
		printf("AMC:         %s%s\n", jstr(amc, "id", "(no number)"),
		       json_is_true(json_object_get(amc, "tiers_payant")) ? ", tiers payant" : "");
	if (t)
		printf("totals:      %lld cents (AMO %lld, AMC %lld, patient %lld)\n",
		       (long long)json_integer_value(json_object_get(t, "total")),
		       (long long)json_integer_value(json_object_get(t, "amo")),
		       (long long)json_integer_value(json_object_get(t, "amc")),
		       (long long)json_integer_value(json_object_get(t, "patient")));
}

static int
sheet_show(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 3)
		return usage_sheet();
	json_t *r = NULL;
	int rc = ctl_call_human(ctl, IFACE ".GetSheet", json_pack("{s:s}", "id", argv[2]), &r);
	if (rc)
		return rc < 0 ? 0 : rc;
	json_t *m = json_object_get(r, "meta"), *s = json_object_get(r, "sheet");
	json_t *sig = json_object_get(r, "signature");
	printf("sheet:       %s\n", jstr(m, "id", "?"));
	printf("state:       %s%s%s\n", jstr(m, "state", "?"), jstr(r, "reason", NULL) ? ": " : "",
	       jstr(r, "reason", ""));
	if (json_is_integer(json_object_get(m, "seq")))
		printf("number:      %lld of %s, practitioner %s\n",
		       (long long)json_integer_value(json_object_get(m, "seq")), jstr(m, "care_date", "?"),
		       jstr(m, "practitioner_id", "?"));
	else
		printf("care date:   %s\n", jstr(m, "care_date", "?"));
	printf("due:         %s\n", jstr(m, "due_date", "-"));
	printf("created:     %s\n", jstr(m, "created", "?"));
	if (json_is_object(sig))
		printf("signature:   %s, %lld bytes (COSE_Sign1 %lld bytes)\n", jstr(sig, "alg", "?"),
		       (long long)json_integer_value(json_object_get(sig, "size")),
		       (long long)json_integer_value(json_object_get(sig, "cose_size")));
	else
		printf("signature:   none (a draft)\n");
	print_sheet(s);
	json_decref(r);
	return 0;
}

/* Call method for sheet id and write the base64 member `field` of its reply,
 * decoded, to out ("-": stdout). magic, when set, is what the bytes must
 * start with. On success *reply is the reply (the caller frees it) and *len
 * the bytes written. The daemon encodes with the standard alphabet, padded,
 * on one line: lib/b64's strict decoder takes exactly that and refuses
 * anything else. */
static int
save_reply_file(struct ctl *ctl, const char *method, const char *field, const char *id,
                const char *out, const char *magic, const char *what, json_t **reply, size_t *len)
{
	const char *name = strrchr(method, '.') + 1;
	json_t *r = NULL;
	int rc = ctl_call(ctl, method, json_pack("{s:s}", "id", id), &r);
	if (rc)
		return rc;
	const char *b64 = jstr(r, field, "");
	size_t n = strlen(b64), mlen = magic ? strlen(magic) : 0;
	uint8_t *bin = malloc(n / 4 * 3 + 1);
	*len = 0;
	if (!bin) {
		fprintf(stderr, "vitalectl: %s: out of memory\n", name);
		rc = EXIT_TRANSPORT;
	} else if (b64_decode(b64, n, bin, n / 4 * 3, len) != 0 || *len < mlen ||
	           memcmp(bin, magic ? magic : "", mlen) != 0) {
		fprintf(stderr, "vitalectl: %s: the reply's \"%s\" is not %s\n", name, field, what);
		rc = EXIT_TRANSPORT;
	} else {
		FILE *f = strcmp(out, "-") ? fopen(out, "wbe") : stdout;
		if (!f || fwrite(bin, 1, *len, f) != *len || (f != stdout && fclose(f))) {
			fprintf(stderr, "vitalectl: %s: %s\n", out, strerror(errno));
			rc = EXIT_USAGE;
		}
	}
	free(bin);
	if (rc)
		json_decref(r);
	else
		*reply = r;
	return rc;
}

static int
sheet_export(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 5 || strcmp(argv[3], "-o"))
		return usage_sheet();
	const char *out = argv[4];
	json_t *r = NULL;
	size_t len;
	int rc = save_reply_file(ctl, IFACE ".ExportSheet", "cose", argv[2], out, NULL,
	                         "valid base64 (RFC 4648, padded, no whitespace)", &r, &len);
	if (rc)
		return rc;
	if (strcmp(out, "-") && !ctl->json)
		printf("%s: %zu bytes (COSE_Sign1)\n", out, len);
	json_decref(r);
	return 0;
}

/* The paper duplicata (PrintSheet): one A4 page in PDF. */
static int
sheet_print(struct ctl *ctl, int argc, char **argv)
{
	if (argc != 5 || strcmp(argv[3], "-o"))
		return usage_sheet();
	const char *out = argv[4];
	json_t *r = NULL;
	size_t len;
	int rc = save_reply_file(ctl, IFACE ".PrintSheet", "pdf", argv[2], out, "%PDF-",
	                         "a base64 PDF", &r, &len);
	if (rc)
		return rc;
	if (ctl->json) {
		json_object_del(r, "pdf");
		json_object_set_new(r, "file", json_string(out));
		print_json(r);
	} else if (strcmp(out, "-")) {
		printf("%s: duplicata of sheet %s, %zu bytes (PDF, one A4 page); its code holds %s\n",
		       out, jstr(r, "id", "?"), len,
		       !strcmp(jstr(r, "code", ""), "sheet") ? "the signed sheet" :
		                                               "the sheet's id and SHA-256");
	}
	json_decref(r);
	return 0;
}

/* ------------------------------------------------------------------ */
/* offline verification */

static EVP_PKEY *
load_cert_key(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "vitalectl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	EVP_PKEY *k = NULL;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	if (x) {
		k = X509_get_pubkey(x);
		X509_free(x);
	} else {
		rewind(f);
		k = PEM_read_PUBKEY(f, NULL, NULL, NULL); /* a bare public key also does */
	}
	fclose(f);
	if (!k)
		fprintf(stderr, "vitalectl: %s: not a PEM certificate or public key\n", path);
	return k;
}

static int
sheet_verify(struct ctl *ctl, int argc, char **argv)
{
	const char *file = NULL, *cert = NULL;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--cert") && i + 1 < argc)
			cert = argv[++i];
		else if (!file && argv[i][0] != '-')
			file = argv[i];
		else
			return usage_sheet();
	}
	if (!file || !cert)
		return usage_sheet();
	EVP_PKEY *key = load_cert_key(cert);
	if (!key)
		return EXIT_USAGE;
	uint8_t *buf = malloc(SHEETSIG_MAX + 1);
	FILE *f = fopen(file, "rbe");
	size_t n = 0;
	if (!buf || !f) {
		fprintf(stderr, "vitalectl: %s: %s\n", file, strerror(errno));
		if (f)
			fclose(f);
		free(buf);
		EVP_PKEY_free(key);
		return EXIT_USAGE;
	}
	n = fread(buf, 1, SHEETSIG_MAX + 1, f);
	fclose(f);
	struct sheet *s = malloc(sizeof(*s));
	struct sheetsig_report rep;
	int r = s ? sheetsig_verify(buf, n > SHEETSIG_MAX ? 0 : n, key, s, &rep) : -ENOMEM;
	bool future = r == 0 && s->created > (int64_t)time(NULL) + 300;
	const char *verdict = r == 0 && !future ? "valid" :
	                      future              ? "made in the future" :
	                      r == -EKEYREJECTED  ? "the signature does not verify with this certificate" :
	                      r == -EPROTO        ? "not a COSE_Sign1 of a vitaled sheet (tag 18, {1: ES256|PS256}, {})" :
	                      r == -EBADMSG       ? "the payload is not a sheet" :
	                      r == -EDOM          ? "the payload is not the canonical encoding of its sheet" :
	                      r == -EINVAL        ? "the sheet breaks the rules" :
	                      r == -ERANGE        ? "the due date is not the one the care date gives" :
	                                            "not well-formed CBOR";
	char care[11] = "", due[11] = "";
	if (rep.decoded) {
		holidays_format(s->care_date, care, sizeof(care));
		holidays_format(s->due_date, due, sizeof(due));
	}
	if (ctl->json) {
		json_t *errs = json_array();
		for (size_t i = 0; i < rep.errs.n; i++)
			json_array_append_new(errs, json_pack("{s:s,s:s}", "field", rep.errs.e[i].field,
			                                      "reason", rep.errs.e[i].msg));
		json_t *o = json_pack("{s:b,s:s,s:o,s:b,s:b,s:b,s:b,s:b,s:o}", "valid", r == 0 && !future,
		                      "verdict", verdict, "alg",
		                      rep.alg == COSE_ALG_ES256 ? json_string("ES256") :
		                      rep.alg == COSE_ALG_PS256 ? json_string("PS256") : json_null(),
		                      "signature_ok", rep.signature_ok, "canonical", rep.canonical,
		                      "rules_ok", rep.valid, "due_ok", rep.due_ok, "due_alsace_moselle",
		                      rep.due_alsace, "errors", errs);
		if (rep.decoded) {
			json_object_set_new(o, "id", json_string(s->id));
			json_object_set_new(o, "seq", json_integer(s->seq));
			json_object_set_new(o, "care_date", json_string(care));
			json_object_set_new(o, "due_date", json_string(due));
			json_object_set_new(o, "practitioner_id", json_string(s->practitioner_id));
			json_object_set_new(o, "version", json_integer(s->version));
		}
		if (rep.due_calendar)
			json_object_set_new(o, "due_calendar", json_string(rep.due_calendar));
		print_json(o);
		json_decref(o);
	} else {
		printf("%s: %s\n", file, verdict);
		if (rep.decoded)
			printf("sheet %s (model %u), no. %u of %s, practitioner %s, due %s%s%s%s, %s\n",
			       s->id, s->version, s->seq, care, s->practitioner_id, due,
			       rep.due_calendar && strcmp(rep.due_calendar, "metropolitan") ? " (" : "",
			       rep.due_calendar && strcmp(rep.due_calendar, "metropolitan") ?
			               rep.due_calendar : "",
			       rep.due_calendar && strcmp(rep.due_calendar, "metropolitan") ? ")" : "",
			       rep.alg == COSE_ALG_ES256 ? "ES256" : "PS256");
		for (size_t i = 0; i < rep.errs.n; i++)
			printf("  %s: %s\n", rep.errs.e[i].field, rep.errs.e[i].msg);
	}
	if (s) {
		explicit_bzero(s, sizeof(*s));
		free(s);
	}
	free(buf);
	EVP_PKEY_free(key);
	return r == 0 && !future ? 0 : 1;
}

int
cmd_sheet(struct ctl *ctl, int argc, char **argv)
{
	if (argc < 2)
		return usage_sheet();
	const char *sub = argv[1];
	if (!strcmp(sub, "create"))
		return sheet_create(ctl, argc, argv, false);
	if (!strcmp(sub, "draft"))
		return sheet_create(ctl, argc, argv, true);
	if (!strcmp(sub, "complete"))
		return sheet_complete(ctl, argc, argv);
	if (!strcmp(sub, "list"))
		return sheet_list(ctl, argc, argv);
	if (!strcmp(sub, "show"))
		return sheet_show(ctl, argc, argv);
	if (!strcmp(sub, "export"))
		return sheet_export(ctl, argc, argv);
	if (!strcmp(sub, "print"))
		return sheet_print(ctl, argc, argv);
	if (!strcmp(sub, "verify"))
		return sheet_verify(ctl, argc, argv);
	return usage_sheet();
}

int
cmd_queue(struct ctl *ctl, int argc, char **argv)
{
	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: vitalectl queue [--json]\n");
		return EXIT_USAGE;
	}
	json_t *r = NULL;
	int rc = ctl_call_human(ctl, IFACE ".QueueStats", NULL, &r);
	if (rc)
		return rc < 0 ? 0 : rc;
	static const char *const order[] = { "draft",    "queued", "sending", "accepted",
		                             "rejected", "paid",   "refused" };
	json_t *c = json_object_get(r, "counts");
	printf("queue:     %s, %lld sheets, %lld bytes\n", jstr(r, "state", "?"),
	       (long long)json_integer_value(json_object_get(r, "total")),
	       (long long)json_integer_value(json_object_get(r, "bytes")));
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		printf("  %-9s %lld\n", order[i], (long long)json_integer_value(json_object_get(c, order[i])));
	printf("oldest:    %s\n", jstr(r, "oldest", "-"));
	printf("next due:  %s\n", jstr(r, "next_due", "-"));
	printf("integrity: %s%s%s%s\n", jstr(r, "integrity", "?"),
	       jstr(r, "integrity_error", NULL) ? " (" : "", jstr(r, "integrity_error", ""),
	       jstr(r, "integrity_error", NULL) ? ")" : "");
	printf("limits:    %lld sheets, %lld bytes\n",
	       (long long)json_integer_value(json_object_get(r, "max_sheets")),
	       (long long)json_integer_value(json_object_get(r, "max_bytes")));
	json_decref(r);
	return 0;
}
