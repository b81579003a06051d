/* vitalectl rights: the online rights check of a patient without a card
 * (CheckRights). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/vitalectl.h"

static int
rights_usage(void)
{
	fprintf(stderr, "usage: vitalectl rights NIR --birth-date YYYY-MM-DD [--rank N] [--json]\n");
	return EXIT_USAGE;
}

int
cmd_rights(struct ctl *ctl, int argc, char **argv)
{
	const char *nir = NULL, *birth = NULL;
	long rank = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--birth-date") && i + 1 < argc) {
			birth = argv[++i];
		} else if (!strncmp(a, "--birth-date=", 13)) {
			birth = a + 13;
		} else if ((!strcmp(a, "--rank") && i + 1 < argc) || !strncmp(a, "--rank=", 7)) {
			const char *v = a[6] == '=' ? a + 7 : argv[++i];
			char *end;
			rank = strtol(v, &end, 10);
			if (*end || rank < 1 || rank > 9)
				return rights_usage();
		} else if (!strcmp(a, "--json")) {
			ctl->json = true;
		} else if (a[0] != '-' && !nir) {
			nir = a;
		} else {
			return rights_usage();
		}
	}
	if (!nir || !birth)
		return rights_usage();
	json_t *r = NULL;
	int rc = ctl_call_human(ctl, IFACE ".CheckRights",
	                        json_pack("{s:s,s:s,s:I}", "nir", nir, "birth_date", birth,
	                                  "birth_rank", (json_int_t)rank),
	                        &r);
	if (rc)
		return rc < 0 ? 0 : rc;
	json_t *org = json_object_get(r, "organisation"), *rt = json_object_get(r, "rights");
	printf("insurer:   regime %s, caisse %s, centre %s (checked %s)\n", jstr(org, "regime", "?"),
	       jstr(org, "caisse", "?"), jstr(org, "centre", "?"), jstr(org, "checked", "?"));
	printf("care date: %s: %s\n", jstr(r, "care_date", "?"),
	       json_is_true(json_object_get(rt, "covered")) ? "covered (AMO)" : "NOT covered (AMO)");
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(rt, "periods"), i, p)
		printf("right:     %s from %s to %s\n", jstr(p, "code", "?"), jstr(p, "from", "?"),
		       jstr(p, "to", "?"));
	json_t *amc = json_object_get(rt, "amc");
	if (json_is_object(amc))
		printf("amc:       %s%s%s%s\n", jstr(amc, "id", "?"),
		       json_is_true(json_object_get(amc, "tiers_payant")) ? ", tiers payant" : "",
		       jstr(amc, "to", NULL) ? " until " : "", jstr(amc, "to", ""));
	else
		printf("amc:       none known\n");
	json_decref(r);
	return 0;
}
