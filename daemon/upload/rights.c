/* The online rights check; see rights.h. */
#include "daemon/upload/rights.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cards/api_cards.h"
#include "daemon/cards/readers.h"
#include "daemon/core/events.h"
#include "daemon/core/loop.h"
#include "daemon/core/varlink.h"
#include "daemon/upload/http.h"
#include "lib/log.h"
#include "protocol/nir.h"

/* ------------------------------------------------------------------ */
/* the pure part */

static bool
date_valid(const char *d)
{
	if (!d || strlen(d) != 10 || d[4] != '-' || d[7] != '-')
		return false;
	for (int i = 0; i < 10; i++)
		if (i != 4 && i != 7 && (d[i] < '0' || d[i] > '9'))
			return false;
	return true;
}

static void
clear_insurer(struct card_rights *out)
{
	out->reason[0] = '\0';
	out->checked[0] = '\0';
	memset(out->regime, 0, sizeof(out->regime));
	memset(out->caisse, 0, sizeof(out->caisse));
	memset(out->centre, 0, sizeof(out->centre));
	out->nrights = 0;
	memset(out->rights, 0, sizeof(out->rights));
	out->covered = false;
	out->has_amc = false;
	out->amc_id[0] = '\0';
	out->amc_tiers_payant = false;
	out->amc_to[0] = '\0';
}

void
rights_from_answer(struct card_rights *out, const struct insurer_rights *a)
{
	clear_insurer(out);
	out->state = CARD_RIGHTS_CHECKED;
	snprintf(out->regime, sizeof(out->regime), "%s", a->regime);
	snprintf(out->caisse, sizeof(out->caisse), "%s", a->caisse);
	snprintf(out->centre, sizeof(out->centre), "%s", a->centre);
	snprintf(out->checked, sizeof(out->checked), "%s", a->checked);
	size_t n = a->nrights < CARD_RIGHTS_MAX ? a->nrights : CARD_RIGHTS_MAX;
	for (size_t i = 0; i < n; i++) {
		struct card_right *d = &out->rights[i];
		snprintf(d->code, sizeof(d->code), "%s", a->rights[i].code);
		snprintf(d->from, sizeof(d->from), "%s", a->rights[i].from);
		snprintf(d->to, sizeof(d->to), "%s", a->rights[i].to);
		/* the insurer lists its periods; the terminal compares */
		if (strcmp(d->code, "AMO") == 0 && date_valid(out->care_date) &&
		    (!d->from[0] || strcmp(d->from, out->care_date) <= 0) &&
		    (!d->to[0] || strcmp(out->care_date, d->to) <= 0))
			out->covered = true;
	}
	out->nrights = n;
	out->has_amc = a->has_amc;
	if (a->has_amc) {
		snprintf(out->amc_id, sizeof(out->amc_id), "%s", a->amc_id);
		out->amc_tiers_payant = a->amc_tiers_payant;
		snprintf(out->amc_to, sizeof(out->amc_to), "%s", a->amc_to);
	}
}

void
rights_outcome(struct card_rights *out, bool timed_out, enum uploader_net net, long status,
               const char *body, size_t len, const char *why, const char *nir)
{
	clear_insurer(out);
	if (timed_out) {
		out->state = CARD_RIGHTS_TIMEOUT;
		snprintf(out->reason, sizeof(out->reason),
		         "no answer from the insurer in time ([insurer] rights_timeout_ms)");
		return;
	}
	switch (net) {
	case UPLOADER_NET_OK:
		break;
	case UPLOADER_NET_OFFLINE:
		out->state = CARD_RIGHTS_OFFLINE;
		snprintf(out->reason, sizeof(out->reason), "%s",
		         why && why[0] ? why : "cannot reach the insurer");
		return;
	case UPLOADER_NET_TRANSIENT:
		out->state = why && strstr(why, "time") ? CARD_RIGHTS_TIMEOUT : CARD_RIGHTS_ERROR;
		snprintf(out->reason, sizeof(out->reason), "%s",
		         why && why[0] ? why : "the exchange with the insurer failed");
		return;
	default:
		out->state = CARD_RIGHTS_ERROR;
		snprintf(out->reason, sizeof(out->reason), "%s",
		         why && why[0] ? why : "the exchange with the insurer failed");
		return;
	}
	if (status == 200) {
		struct insurer_rights a;
		if (!body || insurer_parse_rights(body, len, nir, &a) < 0) {
			out->state = CARD_RIGHTS_ERROR;
			snprintf(out->reason, sizeof(out->reason),
			         "the insurer's answer is not the documented rights answer");
			return;
		}
		rights_from_answer(out, &a);
		return;
	}
	char code[INSURER_CODE_MAX + 1] = "", reason[INSURER_REASON_MAX + 1] = "";
	bool described = body && insurer_parse_error(body, len, code, reason) == 0;
	if (status == 404) {
		out->state = CARD_RIGHTS_UNKNOWN;
		snprintf(out->reason, sizeof(out->reason), "%s",
		         described && reason[0] ? reason : "the insurer knows no such beneficiary");
		return;
	}
	out->state = CARD_RIGHTS_ERROR;
	snprintf(out->reason, sizeof(out->reason), "the insurer answered HTTP %ld%s%s%s", status,
	         described ? " (" : "", described ? code : "", described ? ")" : "");
}

bool
rights_card_wants_check(const struct card_result *r)
{
	if (!r || !r->readable || r->nbeneficiaries == 0 || strcmp(r->kind, "patient") != 0 ||
	    strcmp(r->presentation, "digital-nfc") == 0)
		return false;
	const struct card_beneficiary *b = &r->beneficiaries[0];
	return strlen(b->nir) == NIR_LEN && date_valid(b->birth_date);
}

/* ------------------------------------------------------------------ */
/* the module */

struct req {
	struct req *next;
	bool for_card;
	char reader[READER_NAME_MAX];
	uint64_t card_seq;
	struct vl_call *call;        /* CheckRights; NULL once answered or gone */
	char nir[NIR_LEN + 1];
	struct card_rights cr;
	char *body;
	size_t len;
	uint64_t timer;
	bool over;                   /* the outcome was delivered */
	struct timespec t0;
};

static struct {
	struct daemon *d;
	struct http *http;
	char url[600];
	long timeout_ms;
	struct req *list;
	bool watching;
	bool registered;
} RS;

static uint64_t
elapsed_ms(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)((t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000);
}

static void
today(char out[11])
{
	time_t now = time(NULL);
	struct tm tm;
	if (!localtime_r(&now, &tm) || strftime(out, 11, "%Y-%m-%d", &tm) != 10)
		snprintf(out, 11, "1970-01-01");
}

static void
req_free(struct req *q)
{
	for (struct req **pp = &RS.list; *pp; pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	}
	free(q->body);
	explicit_bzero(q, sizeof(*q));
	free(q);
}

static json_t *
answer_json(const struct card_rights *cr)
{
	json_t *o = json_pack("{s:{s:s,s:s,s:s,s:s,s:s},s:o,s:s}", "organisation", "regime",
	                      cr->regime, "caisse", cr->caisse, "centre", cr->centre, "source",
	                      "insurer", "checked", cr->checked, "rights",
	                      card_rights_checked_json(cr), "care_date", cr->care_date);
	return o;
}

static void
reply_call(struct req *q)
{
	struct vl_call *call = q->call;
	if (!call)
		return;
	q->call = NULL;
	vl_call_set_cancel(call, NULL, NULL);
	const struct card_rights *cr = &q->cr;
	if (cr->state == CARD_RIGHTS_CHECKED)
		vl_reply(call, answer_json(cr));
	else if (cr->state == CARD_RIGHTS_UNKNOWN)
		vl_reply_error(call, VL_ERR("BeneficiaryUnknown"),
		               json_pack("{s:s}", "reason", cr->reason));
	else
		vl_reply_error(call, VL_ERR("RightsUnavailable"),
		               json_pack("{s:s,s:s}", "reason", card_rights_state_name(cr->state),
		                         "detail", cr->reason));
}

static void
deliver(struct req *q)
{
	char m[24];
	nir_mask(q->nir, strlen(q->nir), m, sizeof(m));
	uint64_t ms = elapsed_ms(&q->t0);
	const struct card_rights *cr = &q->cr;
	q->over = true;
	if (cr->state == CARD_RIGHTS_CHECKED)
		log_info("rights: %s %s: checked in %llu ms (%s %s %s, %s)",
		         q->for_card ? q->reader : "(no card)", m, (unsigned long long)ms, cr->regime,
		         cr->caisse, cr->centre, cr->covered ? "covered" : "not covered today");
	else
		log_notice("rights: %s %s: %s after %llu ms: %s", q->for_card ? q->reader : "(no card)",
		           m, card_rights_state_name(cr->state), (unsigned long long)ms, cr->reason);
	if (!q->for_card) {
		reply_call(q);
		return;
	}
	if (readers_set_rights(q->reader, q->card_seq, cr) < 0) {
		log_debug("rights: the card in %s left before the answer", q->reader);
		return;
	}
	json_t *f = json_pack("{s:s,s:s,s:i,s:s,s:I}", "reader", q->reader, "state",
	                      card_rights_state_name(cr->state), "beneficiary", cr->beneficiary,
	                      "nir_masked", m, "elapsed_ms", (json_int_t)ms);
	if (f && cr->reason[0])
		json_object_set_new(f, "reason", json_string(cr->reason));
	if (f && cr->state == CARD_RIGHTS_CHECKED) {
		json_object_set_new(f, "organisation",
		                    json_pack("{s:s,s:s,s:s,s:s,s:s}", "regime", cr->regime, "caisse",
		                              cr->caisse, "centre", cr->centre, "source", "insurer",
		                              "checked", cr->checked));
		json_object_set_new(f, "rights", card_rights_checked_json(cr));
	}
	events_publish("CardRights", f);
}

static void
on_timeout(struct loop *l, void *arg)
{
	(void)l;
	struct req *q = arg;
	q->timer = 0;
	if (q->over)
		return;
	rights_outcome(&q->cr, true, UPLOADER_NET_OK, 0, NULL, 0, NULL, q->nir);
	deliver(q);
	/* the transfer ends by curl's own bound (rights_timeout_ms + 1 s);
	 * its answer is then dropped */
}

static void
on_http(const struct http_result *r, void *arg)
{
	struct req *q = arg;
	if (q->timer) {
		loop_timer_cancel(RS.d->loop, q->timer);
		q->timer = 0;
	}
	if (!q->over) {
		rights_outcome(&q->cr, false, r->net, r->status, r->body, r->len, r->why, q->nir);
		deliver(q);
	}
	req_free(q);
}

static void
on_cancel(struct vl_call *call, void *arg)
{
	(void)call;
	struct req *q = arg;
	q->call = NULL;
}

/* Ask; the outcome goes to the card session (reader set) or the call. */
static int
start(const char *reader, uint64_t card_seq, struct vl_call *call, const char *nir,
      const char *birth_date, int rank, int beneficiary)
{
	struct req *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	clock_gettime(CLOCK_MONOTONIC, &q->t0);
	q->for_card = reader != NULL;
	if (reader)
		snprintf(q->reader, sizeof(q->reader), "%s", reader);
	q->card_seq = card_seq;
	snprintf(q->nir, sizeof(q->nir), "%s", nir);
	q->cr.state = CARD_RIGHTS_PENDING;
	q->cr.beneficiary = beneficiary;
	events_time_now(q->cr.asked, sizeof(q->cr.asked));
	today(q->cr.care_date);
	q->next = RS.list;
	RS.list = q;
	int e = insurer_rights_request(nir, birth_date, rank, q->cr.care_date, &q->body, &q->len);
	if (e < 0) {
		req_free(q);
		return e;
	}
	if (call) {
		q->call = call;
		vl_call_set_cancel(call, on_cancel, q);
	}
	if (q->for_card)
		readers_set_rights(reader, card_seq, &q->cr); /* pending */
	static const char *const headers[] = { "Content-Type: application/json",
		                               "Accept: application/json", NULL };
	q->timer = loop_timer_add(RS.d->loop, (uint64_t)RS.timeout_ms, on_timeout, q);
	e = http_request(RS.http, "POST", RS.url, headers, (const uint8_t *)q->body, q->len,
	                 on_http, q);
	if (e < 0) {
		if (q->timer)
			loop_timer_cancel(RS.d->loop, q->timer);
		q->timer = 0;
		rights_outcome(&q->cr, false, UPLOADER_NET_LOCAL, 0, NULL, 0,
		               "cannot start the exchange with the insurer", nir);
		deliver(q);
		req_free(q);
	}
	return 0;
}

static void
on_card(const struct readers_card_info *ci, void *arg)
{
	(void)arg;
	if (!ci->result || !RS.http || !rights_card_wants_check(ci->result))
		return;
	const struct card_beneficiary *b = &ci->result->beneficiaries[0];
	int e = start(ci->reader, ci->card_seq, NULL, b->nir, b->birth_date, 1, 0);
	if (e < 0)
		log_warn("rights: no check for the card in %s: %s", ci->reader, strerror(-e));
}

static int
m_check_rights(struct vl_call *call, json_t *params, void *arg)
{
	(void)arg;
	const char *nir = NULL, *birth = NULL, *key;
	json_int_t rank = 1;
	json_t *v;
	json_object_foreach(params, key, v) {
		if (strcmp(key, "nir") == 0 && json_is_string(v))
			nir = json_string_value(v);
		else if (strcmp(key, "birth_date") == 0 && json_is_string(v))
			birth = json_string_value(v);
		else if (strcmp(key, "birth_rank") == 0 && (json_is_integer(v) || json_is_null(v)))
			rank = json_is_integer(v) ? json_integer_value(v) : 1;
		else
			return vl_reply_invalid_param(call, key);
	}
	if (!nir || nir_check(nir, strlen(nir), NULL) < 0)
		return vl_reply_invalid_param(call, "nir");
	if (!birth || !date_valid(birth))
		return vl_reply_invalid_param(call, "birth_date");
	if (rank < 1 || rank > 9)
		return vl_reply_invalid_param(call, "birth_rank");
	if (!RS.http)
		return vl_reply_error(call, VL_ERR("RightsUnavailable"),
		                      json_pack("{s:s,s:s}", "reason", "disabled", "detail",
		                                "no insurer is configured ([insurer] url)"));
	int e = start(NULL, 0, call, nir, birth, (int)rank, 0);
	if (e == -EINVAL)
		return vl_reply_invalid_param(call, "nir");
	return e;
}

int
rights_init(struct daemon *d)
{
	const struct config *c = d->cfg;
	RS.d = d;
	RS.timeout_ms = c->insurer_rights_timeout_ms > 0 ? c->insurer_rights_timeout_ms : 3000;
	int r;
	if (!RS.registered) {
		r = vl_server_add_method(d->api, TERMINAL_IFACE ".CheckRights", m_check_rights, NULL,
		                         VL_CONTROL);
		if (r < 0)
			return r;
		RS.registered = true;
	}
	if (!c->insurer_url[0])
		return 0;
	/* the uploader's TLS set-up (http.h), bounded by the rights budget:
	 * our own timer says "timeout" at rights_timeout_ms; curl's bound a
	 * second later only ends the transfer */
	long conn = c->insurer_connect_timeout_s * 1000;
	struct http_opts ho = { c->insurer_ca, c->insurer_client_cert, c->insurer_client_key,
		                conn < RS.timeout_ms ? conn : RS.timeout_ms, RS.timeout_ms + 1000,
		                c->insurer_low_speed_time_s, INSURER_ANSWER_MAX };
	size_t n = strlen(c->insurer_url);
	snprintf(RS.url, sizeof(RS.url), "%s%sv1/rights", c->insurer_url,
	         n && c->insurer_url[n - 1] == '/' ? "" : "/");
	r = http_new(d->loop, &ho, &RS.http);
	if (r < 0) {
		log_err("rights: cannot start libcurl: %s", strerror(-r));
		return r;
	}
	r = readers_watch_cards(on_card, NULL);
	if (r < 0) {
		http_free(RS.http);
		RS.http = NULL;
		return r;
	}
	RS.watching = true;
	log_info("rights: physical cards checked at %s within %ld ms", RS.url, RS.timeout_ms);
	return 0;
}

void
rights_fini(struct daemon *d)
{
	(void)d;
	if (RS.watching)
		readers_unwatch_cards(on_card, NULL);
	RS.watching = false;
	http_free(RS.http); /* no callback runs */
	RS.http = NULL;
	while (RS.list) {
		struct req *q = RS.list;
		if (q->timer)
			loop_timer_cancel(RS.d->loop, q->timer);
		if (q->call) {
			struct vl_call *call = q->call;
			q->call = NULL;
			vl_call_set_cancel(call, NULL, NULL);
			vl_reply_error(call, VL_ERR("ShuttingDown"), NULL);
		}
		req_free(q);
	}
}
