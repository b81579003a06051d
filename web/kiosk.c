/* The kiosk screen's state from the daemon's events; see kiosk.h. */
#include "web/kiosk.h"

#include <stdio.h>
#include <string.h>

void
kiosk_init(struct kiosk *k)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->state, sizeof(k->state), "idle");
}

void
kiosk_first_name(const char *given_name, char *out, size_t outlen)
{
	size_t o = 0;
	const unsigned char *s = (const unsigned char *)(given_name ? given_name : "");
	while (*s == ' ' || *s == ',')
		s++;
	for (; *s && *s != ' ' && *s != ',' && o + 1 < outlen; s++) {
		unsigned char c = *s;
		if (c < 0x20 || c == 0x7f || c == '<' || c == '>' || c == '&' || c == '"')
			continue;
		if (o > 0 && c >= 'A' && c <= 'Z' && out[o - 1] != '-')
			c = (unsigned char)(c - 'A' + 'a');
		out[o++] = (char)c;
	}
	out[o] = '\0';
}

static bool
set(struct kiosk *k, const char *state, const char *reason)
{
	bool changed = strcmp(k->state, state) != 0 || strcmp(k->reason, reason ? reason : "") != 0;
	snprintf(k->state, sizeof(k->state), "%s", state);
	snprintf(k->reason, sizeof(k->reason), "%s", reason ? reason : "");
	if (strcmp(state, "welcome") != 0)
		k->first_name[0] = '\0';
	return changed;
}

/* A CardError's reason (docs/digital-card.md §12 names, or a text). */
static bool
card_error(struct kiosk *k, const char *reason)
{
	static const struct { const char *name, *state, *why; } map[] = {
		{ "credential_expired", "expired", "credential" },
		{ "chain_expired", "expired", "issuer" },
		{ "credential_not_yet_valid", "refused", "not_yet_valid" },
		{ "code_refused", "refused", "code_refused" },
		{ "code_blocked", "refused", "code_blocked" },
		{ "code_timeout", "refused", "code_timeout" },
		{ "chain_untrusted", "refused", "untrusted" },
		{ "card_opposed", "opposed", "" },
		{ "opposed", "opposed", "" },
		{ "card_lost", "error", "lost" },
	};
	k->pending_name[0] = '\0';
	for (size_t i = 0; reason && i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(reason, map[i].name))
			return set(k, map[i].state, map[i].why);
	return set(k, "refused", "other");
}

/* CardRead: a readable patient card waits for its draft (DraftCreated);
 * anything else is refused at once. */
static bool
card_read(struct kiosk *k, const json_t *ev)
{
	const json_t *sum = json_object_get(ev, "summary");
	const char *kind = json_string_value(json_object_get(sum, "kind"));
	k->pending_name[0] = '\0';
	/* on the insurers' opposition list: no check-in (the daemon makes no draft) */
	if (json_is_true(json_object_get(ev, "opposed")) || json_is_true(json_object_get(sum, "opposed")))
		return set(k, "opposed", NULL);
	/* a Vitale card ("patient") or a phone ("digital"); a CPS is "practitioner" */
	bool patient = kind && (!strcmp(kind, "patient") || !strcmp(kind, "digital"));
	if (kind && !patient && strcmp(kind, "unknown") != 0)
		return set(k, "refused", "not_patient");
	if (!patient || !json_is_true(json_object_get(sum, "readable")))
		return set(k, "refused", "unreadable");
	const json_t *b0 = json_array_get(json_object_get(sum, "beneficiaries"), 0);
	kiosk_first_name(json_string_value(json_object_get(b0, "given_name")), k->pending_name,
	                 sizeof(k->pending_name));
	return set(k, "reading", NULL);
}

bool
kiosk_feed(struct kiosk *k, const json_t *ev)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *reason = json_string_value(json_object_get(ev, "reason"));
	if (!type)
		return false;
	if (!strcmp(type, "CardInserted")) {
		k->pending_name[0] = '\0';
		return set(k, "reading", NULL);
	}
	if (!strcmp(type, "CodeEntryRequested"))
		return set(k, "code", NULL);
	if (!strcmp(type, "CardRead"))
		return card_read(k, ev);
	if (!strcmp(type, "CardError"))
		return card_error(k, reason);
	if (strstr(type, "Opposed")) { /* CardOpposed, or a draft refused as opposed */
		k->pending_name[0] = '\0';
		return set(k, "opposed", NULL);
	}
	if (!strcmp(type, "DraftCreated")) {
		set(k, "welcome", NULL);
		snprintf(k->first_name, sizeof(k->first_name), "%s", k->pending_name);
		k->pending_name[0] = '\0';
		return true;
	}
	if (!strcmp(type, "CardRemoved") || !strcmp(type, "ReaderRemoved")) {
		k->pending_name[0] = '\0';
		/* a final state stays for its reset time; a read in progress ends */
		if (!strcmp(k->state, "reading") || !strcmp(k->state, "code"))
			return set(k, "idle", NULL);
	}
	return false;
}

json_t *
kiosk_message(const struct kiosk *k, long reset_s)
{
	json_t *m = json_pack("{s:s, s:I}", "state", k->state, "reset_s", (json_int_t)reset_s);
	if (k->reason[0])
		json_object_set_new(m, "reason", json_string(k->reason));
	if (!strcmp(k->state, "welcome") && k->first_name[0])
		json_object_set_new(m, "first_name", json_string(k->first_name));
	return m;
}
