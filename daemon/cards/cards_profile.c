/* The profile card reader: cards are identified and read by the
 * declarative profiles of protocol/profile (built-in ones, then the files
 * of [profiles] dir, which override a built-in profile of the same name).
 *
 * identify() runs on the loop thread at insertion and again on the session
 * thread; read() runs on the session thread. The profile set is built at
 * start-up and read-only afterwards, so both may use it without a lock.
 *
 * What a read gives, by the profile's handler:
 *   script   the script runs; identity data fills the card_result; a
 *            failed read (hostile card, removed card, refused SELECT ...)
 *            returns its negative errno with the profile's reason, so the
 *            session ends in CardError;
 *   pkcs11   the practitioner's card: recognised; it is used through
 *            PKCS#11 by the signer, not read here;
 *   digital  the phone: handed to the digital-card reader (cards_digital).
 * A profile marked "readable = false" (Vitale 1) is recognised and reported
 * with its message; an unknown card is reported with its ATR.
 */
#include "daemon/cards/cards_profile.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/cards/cards.h"
#include "daemon/cards/cards_digital.h"
#include "daemon/cards/cards_qr.h"
#include "daemon/core/daemon.h"
#include "lib/fsutil.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "protocol/profile.h"

static struct profile_set *g_set;

bool
profiles_loaded(void)
{
	return g_set != NULL;
}

const struct profile *
cards_profile_find(const char *name)
{
	return g_set && name ? profile_set_find(g_set, name) : NULL;
}

static void
copy_text(char *dst, size_t dstlen, const char *src)
{
	snprintf(dst, dstlen, "%s", src ? src : "");
}

static void
prof_identify(const uint8_t *atr, size_t atr_len, struct card_result *out)
{
	hex_encode(atr, atr_len, true, out->atr_hex, sizeof(out->atr_hex));
	if (atr_len == READER_QR_ATR_LEN && memcmp(atr, READER_QR_ATR, READER_QR_ATR_LEN) == 0) {
		/* a scanned code (drivers/reader_qr.c), not a card */
		copy_text(out->profile, sizeof(out->profile), "digital-qr");
		copy_text(out->kind, sizeof(out->kind), "digital");
		copy_text(out->presentation, sizeof(out->presentation), "digital-qr");
		out->recognised = true;
		out->readable = false;
		return;
	}
	const struct profile *p = g_set ? profile_match(g_set, atr, atr_len) : NULL;
	if (!p) {
		copy_text(out->profile, sizeof(out->profile), "unknown");
		copy_text(out->kind, sizeof(out->kind), "unknown");
		copy_text(out->presentation, sizeof(out->presentation), "physical");
		out->recognised = false;
		out->readable = false;
		return;
	}
	copy_text(out->profile, sizeof(out->profile), p->name);
	copy_text(out->kind, sizeof(out->kind), profile_kind_name(p->kind));
	copy_text(out->presentation, sizeof(out->presentation),
	          p->kind == PROFILE_KIND_DIGITAL ? "digital-nfc" : "physical");
	out->recognised = true;
	out->readable = false;
}

static void
fill_result(const struct profile_result *res, struct card_result *out)
{
	out->nbeneficiaries = 0;
	for (size_t i = 0; i < res->nbenef && i < CARD_BENEFICIARIES_MAX; i++) {
		const struct profile_beneficiary *pb = &res->benef[i];
		struct card_beneficiary *b = &out->beneficiaries[out->nbeneficiaries++];
		b->rank = (int)i;
		copy_text(b->surname, sizeof(b->surname), pb->surname);
		copy_text(b->given_name, sizeof(b->given_name), pb->given_name);
		copy_text(b->birth_date, sizeof(b->birth_date), pb->birth_date);
		copy_text(b->nationality, sizeof(b->nationality), pb->nationality);
		copy_text(b->nir, sizeof(b->nir), pb->nir);
		b->nir_valid = pb->nir_valid;
	}
	if (res->card.start_date[0])
		card_result_add_field(out, "start_date", res->card.start_date);
	if (res->card.end_date[0])
		card_result_add_field(out, "end_date", res->card.end_date);
	if (res->card.serial[0])
		card_result_add_field(out, "serial", res->card.serial);
	card_result_add_field(out, "certificate", res->card.certificate ? "present" : "absent");
	if (res->nbenef > CARD_BENEFICIARIES_MAX)
		card_result_add_field(out, "note", "more beneficiaries on the card than vitaled shows");
}

static int
prof_read(const struct card_io *io, struct card_result *out)
{
	if (strcmp(out->presentation, "digital-qr") == 0)
		return cards_digital_qr_read(io, out);
	const struct profile *p = g_set ? profile_set_find(g_set, out->profile) : NULL;
	if (!p || !out->recognised)
		return 0; /* unknown card: reported with its ATR, nothing sent */
	if (!p->readable) {
		copy_text(out->error, sizeof(out->error),
		          p->message[0] ? p->message : "recognised, not readable");
		return 0;
	}
	switch (p->handler) {
	case PROFILE_HANDLER_PKCS11:
		card_result_add_field(out, "use", "practitioner card: used through PKCS#11 by the signer");
		return 0;
	case PROFILE_HANDLER_DIGITAL:
		return cards_digital_read(p, io, out);
	case PROFILE_HANDLER_SCRIPT:
		break;
	}
	if (io->reading)
		io->reading(io->ctx);
	struct profile_result *res = calloc(1, sizeof(*res));
	if (!res) {
		copy_text(out->error, sizeof(out->error), "out of memory");
		return -ENOMEM;
	}
	struct apdu_io aio = { io->transmit, io->ctx };
	int r = profile_read(p, &aio, NULL, res);
	if (r < 0) {
		copy_text(out->error, sizeof(out->error), res->reason[0] ? res->reason : strerror(-r));
	} else {
		fill_result(res, out);
		out->readable = true;
	}
	profile_result_wipe(res);
	free(res);
	return r;
}

const struct card_reader_fn card_reader_profiles = {
	.name = "profiles",
	.identify = prof_identify,
	.read = prof_read,
};

/* ------------------------------------------------------------------ */
/* the module */

static int
load_dir(struct profile_set *set, const char *dir)
{
	DIR *dh = opendir(dir);
	if (!dh) {
		log_err("profiles: cannot open [profiles] dir %s: %s", dir, strerror(errno));
		return -errno;
	}
	struct dirent *de;
	int r = 0;
	while ((de = readdir(dh))) {
		size_t n = strlen(de->d_name);
		if (n < 9 || strcmp(de->d_name + n - 8, ".profile") != 0)
			continue;
		char path[4200], err[300];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		char *text = NULL;
		size_t len = 0;
		r = fs_read_file(path, PROFILE_TEXT_MAX_SIZE, &text, &len);
		if (r < 0) {
			log_err("profiles: %s: %s", path, r == -EFBIG ? "file too large" : strerror(-r));
			break;
		}
		r = profile_set_add_text(set, text, len, path, err, sizeof(err));
		free(text);
		if (r < 0) {
			log_err("profiles: %s", err);
			break;
		}
		log_info("profiles: loaded %s", path);
	}
	closedir(dh);
	return r;
}

int
profiles_init(struct daemon *d)
{
	char err[300];
	struct profile_set *set = profile_set_new();
	if (!set)
		return -ENOMEM;
	int r = profile_set_add_builtin(set, err, sizeof(err));
	if (r < 0) {
		log_err("profiles: built-in profiles: %s", err);
		profile_set_free(set);
		return r;
	}
	const char *dir = d->cfg->profile_dir;
	if (dir[0] && !strcmp(dir, CONFIG_DEFAULT_PROFILE_DIR) && access(dir, F_OK) != 0) {
		log_debug("profiles: no %s (the default [profiles] dir): built-in profiles only", dir);
		dir = "";
	}
	if (dir[0] && (r = load_dir(set, dir)) < 0) {
		profile_set_free(set);
		return r;
	}
	g_set = set;
	log_info("profiles: %zu card profiles", profile_set_count(set));
	return 0;
}

void
profiles_fini(struct daemon *d)
{
	(void)d;
	profile_set_free(g_set);
	g_set = NULL;
}
