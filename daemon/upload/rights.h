/* Module "rights": the online rights check (POST /v1/rights,
 * docs/insurer-api.md §4; the terminal's side in docs/upload.md "The rights
 * check").
 *
 * After a physical patient card is read (a card watcher set with
 * readers_watch_cards: the upload layer sits above the cards, so the cards
 * call down into nothing of this), when [insurer] url is set, it POSTs the
 * holder's NIR, birth date, birth rank 1 and today's date over the
 * uploader's HTTPS set-up (daemon/upload/http.h: libcurl multi on the
 * loop, the same TLS files and checks) and never blocks: the card is
 * reported read at once, its session shows rights_check "pending", and the
 * answer (or a failure, or [insurer] rights_timeout_ms passing) is copied
 * into the card session (readers_set_rights) and published as CardRights.
 * A care sheet made from the session then takes the insurer's organisation
 * (daemon/sheets/sheetbuild.c).
 *
 * The CheckRights method (control access) asks for a patient without a
 * card: answered from the insurer, or BeneficiaryUnknown /
 * RightsUnavailable {reason: disabled | offline | timeout | error}.
 *
 * A NIR is never logged whole (nir_mask). Loop thread only.
 */
#ifndef VITALED_UPLOAD_RIGHTS_H
#define VITALED_UPLOAD_RIGHTS_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/cards/cards.h"
#include "daemon/core/daemon.h"
#include "daemon/upload/uploader.h"
#include "protocol/insurer.h"

int rights_init(struct daemon *d);
void rights_fini(struct daemon *d);

/* ---- the pure part (tests/unit/check_rights.c) ---- */

/* What an exchange's outcome means for a rights check: fills out's state,
 * reason and (CHECKED) the insurer's fields, keeping what out already has
 * (asked, care_date, beneficiary). net/status/body as http.h gives them;
 * timed_out: rights_timeout_ms passed first (the outcome is then TIMEOUT
 * whatever came); nir: the NIR asked for (the answer must echo it). */
void rights_outcome(struct card_rights *out, bool timed_out, enum uploader_net net, long status,
                    const char *body, size_t len, const char *why, const char *nir);

/* Copy a parsed 200 answer into out (state CHECKED); covered says whether
 * an AMO right's period holds out->care_date (dates compared as text,
 * YYYY-MM-DD). */
void rights_from_answer(struct card_rights *out, const struct insurer_rights *a);

/* Whether a card read calls for a rights check: a readable patient card
 * presented physically (not a phone) whose holder has a 15-character NIR
 * and a birth date. */
bool rights_card_wants_check(const struct card_result *r);

#endif
