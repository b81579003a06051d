/* The readers' and cards' inputs and outputs on the daemon's side: the
 * varlink methods ListReaders and GetCard (control), the "readers" and
 * "drivers" of GetStatus, the events the reader sessions report
 * (ReaderAdded, ReaderRemoved, CardInserted, CardRead, CardRemoved,
 * CardError, CodeEntryRequested, DriverDown, DriverUp; events.h), and the
 * JSON views of a card result. The wire format is the interface's
 * (docs/io.vitaled.Terminal.varlink); the state is the machine's
 * (daemon/cards/readers.h), read here and turned into JSON.
 *
 * Loop thread only.
 */
#ifndef VITALED_API_CARDS_H
#define VITALED_API_CARDS_H

#include <jansson.h>
#include <stddef.h>

#include "daemon/cards/cards.h"
#include "daemon/cards/readers.h"

struct daemon;

/* Register the methods and the status provider; drivers lists the
 * ndrivers drivers GetStatus shows (valid until the daemon stops).
 * 0 or a negative errno. */
int api_cards_start(struct daemon *d, const struct readers_driver *drivers, size_t ndrivers);

/* Publish a report of the reader sessions as its event; readers_ops.report
 * in the daemon (ctx unused). */
void api_cards_report(void *ctx, const struct readers_report *rep);

enum card_json {
	CARD_JSON_SUMMARY,     /* events: no names, masked NIR */
	CARD_JSON_SUMMARY_ID,  /* events for control watchers: names, masked NIR */
	CARD_JSON_FULL,        /* GetCard: everything, full NIR */
};

/* A new JSON object for r (NULL on allocation failure). Any thread. */
json_t *card_result_json(const struct card_result *r, enum card_json what);

/* The rights check of a card as GetCard shows it, set into o:
 * "rights_check" {state, reason, beneficiary, asked, care_date},
 * "organisation" {regime, caisse, centre, source "insurer" | "card" |
 * "till", checked} and, once checked, "rights" {source, checked, covered,
 * periods [{code, from, to}], amc {id, tiers_payant, to} | null}. Nothing
 * when no check was made (state none). No NIR. */
void card_rights_json(const struct card_result *r, json_t *o);
/* The insurer's part alone (rights_check, organisation, rights) of cr, for
 * the CheckRights answer and the CardRights event. */
json_t *card_rights_checked_json(const struct card_rights *cr);

#endif
