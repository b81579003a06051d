/* The module list: init runs top to bottom, fini bottom to top. A module
 * added by a later part of vitaled goes here, after what it depends on. */
#include <stddef.h>

#include "daemon/pin/cardlogin.h"
#include "daemon/cards/cardio.h"
#include "daemon/cards/cards_digital.h"
#include "daemon/cards/cards_profile.h"
#include "daemon/cards/cards_qr.h"
#include "daemon/core/daemon.h"
#include "daemon/core/events.h"
#include "daemon/core/diag.h"
#include "daemon/core/metrics.h"
#include "daemon/pin/pinflow.h"
#include "daemon/sheets/sheets.h"
#include "daemon/upload/rights.h"
#include "daemon/upload/upload.h"

/* The reader sessions read cards with the profile reader (which hands
 * phones on to the digital card): passed down here, so that nothing in
 * daemon/cards/ calls up into the readers it is read by. */
static int
module_readers_init(struct daemon *d)
{
	return cardio_init(d, &card_reader_profiles);
}

static void
module_readers_fini(struct daemon *d)
{
	cardio_fini(d);
}

const struct module vitaled_modules[] = {
	{ "state", statedir_init, statedir_fini, NULL },
	{ "api", api_init, api_fini, api_reload },
	{ "events", events_init, events_fini, NULL },
	{ "profiles", profiles_init, profiles_fini, NULL },
	{ "digital", cards_digital_init, cards_digital_fini, NULL },
	{ "qr", cards_qr_init, cards_qr_fini, NULL },      /* the QR form's freshness state */
	{ "pinflow", pinflow_init, pinflow_fini, NULL },   /* the signer and the PIN flows */
	{ "readers", module_readers_init, module_readers_fini, NULL },
	{ "cardlogin", cardlogin_init, cardlogin_fini, NULL },
	/* the queue last: READY (after every init) means it is open and writable */
	{ "sheets", sheets_init, sheets_fini, NULL },     /* care sheets and the queue */
	/* after the queue: it forms its batches there */
	{ "upload", upload_init, upload_fini, NULL },
	{ "upload-api", api_upload_init, api_upload_fini, NULL },
	/* after the readers (it watches their cards) and the uploader (its TLS) */
	{ "rights", rights_init, rights_fini, NULL },
	/* last: it reads everyone's status, and its fini writes the textfile
	 * once more while they are all still there */
	{ "metrics", metrics_init, metrics_fini, NULL },
	{ "diag", diag_init, diag_fini, NULL },             /* GetDiagnostics (vitalectl doctor) */
	{ NULL, NULL, NULL, NULL },
};
