/* The digital carte Vitale by QR code on a card session; see cards_qr.h.
 *
 * Freshness state (docs/digital-card.md §Q.7), shared by every session
 * thread under one mutex: the open challenges (made by NewChallenge, used
 * up by the code that signs them, dropped at their time-out) and the replay
 * cache (the SHA-256 of each accepted presentation's signed payload, kept
 * until its time-out: qr_window_s past the phone's ts for a one-way code,
 * qr_challenge_ttl_s for a code with a challenge). The cache is written to
 * <state_dir>/qr-replay (atomically) at each acceptance and read back at
 * start, so that a restart inside the window does not reopen it.
 *
 * Nothing here logs the code's text, identity data or challenges: reason
 * names and sizes only.
 */
#include "daemon/cards/cards_qr.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/cards/cards_digital.h"
#include "daemon/core/daemon.h"
#include "lib/fsutil.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "protocol/qr.h"

struct replay {
	uint8_t h[32];
	int64_t until;
};

struct challenge {
	char text[8];
	int64_t until;
};

static struct {
	pthread_mutex_t mu;
	bool up, enabled, one_way;
	int64_t window_s, ttl_s;
	char path[4200];
	struct challenge ch[CARDS_QR_CHALLENGES_MAX];
	struct replay *rp;
	size_t nrp;
} Q = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
copy_text(char *dst, size_t dstlen, const char *src)
{
	snprintf(dst, dstlen, "%s", src ? src : "");
}

/* ------------------------------------------------------------------ */
/* the replay cache (under Q.mu) */

static void
replay_expire(int64_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < Q.nrp; i++)
		if (Q.rp[i].until > now)
			Q.rp[k++] = Q.rp[i];
	Q.nrp = k;
}

static int
replay_save(void)
{
	size_t cap = Q.nrp * 90 + 64, o = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	o += (size_t)snprintf(buf, cap, "# vitaled QR replay cache: sha256 until\n");
	for (size_t i = 0; i < Q.nrp; i++) {
		char hx[65];
		hex_encode(Q.rp[i].h, 32, false, hx, sizeof(hx));
		o += (size_t)snprintf(buf + o, cap - o, "%s %lld\n", hx, (long long)Q.rp[i].until);
	}
	int r = fs_write_atomic(Q.path, buf, o, 0600);
	free(buf);
	return r;
}

static void
replay_load(int64_t now)
{
	char *text = NULL;
	size_t len = 0;
	int r = fs_read_file(Q.path, (size_t)CARDS_QR_REPLAY_MAX * 90 + 4096, &text, &len);
	if (r == -ENOENT)
		return;
	if (r < 0) {
		log_warn("qr: replay cache %s: %s; starting empty", Q.path, strerror(-r));
		return;
	}
	size_t bad = 0;
	for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		char hx[65];
		long long until;
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (line[0] == '#' || !line[0])
			continue;
		struct replay e;
		if (sscanf(line, "%64s %lld", hx, &until) != 2 || strlen(hx) != 64 ||
		    hex_decode(hx, 64, e.h, sizeof(e.h)) != 32) {
			bad++;
			continue;
		}
		e.until = (int64_t)until;
		if (e.until > now && Q.nrp < CARDS_QR_REPLAY_MAX)
			Q.rp[Q.nrp++] = e;
	}
	free(text);
	log_info("qr: replay cache: %zu presentation(s) still inside their window%s", Q.nrp,
	         bad ? " (unreadable lines skipped)" : "");
}

/* qr_claim_fn: replayed, then the challenge, then record (§Q.7 F.2-F.3) */
static enum credential_reason
claim(void *ctx, const uint8_t h[32], const char *challenge, int64_t ts)
{
	int64_t now = (int64_t)time(NULL), until;
	enum credential_reason r = CREDENTIAL_R_OK;
	struct challenge *hit = NULL;

	(void)ctx;
	pthread_mutex_lock(&Q.mu);
	replay_expire(now);
	for (size_t i = 0; i < Q.nrp; i++)
		if (memcmp(Q.rp[i].h, h, 32) == 0)
			r = CREDENTIAL_R_REPLAYED;
	if (r == CREDENTIAL_R_OK && challenge) {
		for (size_t i = 0; i < CARDS_QR_CHALLENGES_MAX && !hit; i++)
			if (Q.ch[i].until > now && strcmp(Q.ch[i].text, challenge) == 0)
				hit = &Q.ch[i];
		if (!hit)
			r = CREDENTIAL_R_CHALLENGE_MISMATCH;
	}
	if (r == CREDENTIAL_R_OK) {
		until = challenge ? now + Q.ttl_s : (ts > now ? ts : now) + Q.window_s;
		if (Q.nrp >= CARDS_QR_REPLAY_MAX) {
			/* full: refuse rather than forget (a flood of good codes
			 * inside one window is not a till's life) */
			r = CREDENTIAL_R_REPLAYED;
		} else {
			memcpy(Q.rp[Q.nrp].h, h, 32);
			Q.rp[Q.nrp++].until = until;
			if (hit)
				memset(hit, 0, sizeof(*hit));
			int w = replay_save();
			if (w < 0)
				log_err("qr: cannot write the replay cache %s: %s", Q.path, strerror(-w));
		}
	}
	pthread_mutex_unlock(&Q.mu);
	return r;
}

int
cards_qr_challenge_new(char out[8], int64_t *expires)
{
	int64_t now = (int64_t)time(NULL);
	size_t slot = 0;
	int r;

	if (!Q.up || !Q.enabled)
		return -ENOTSUP;
	pthread_mutex_lock(&Q.mu);
	/* a free or timed-out slot, else the one closest to its end */
	for (size_t i = 0; i < CARDS_QR_CHALLENGES_MAX; i++) {
		if (Q.ch[i].until <= now) {
			slot = i;
			break;
		}
		if (Q.ch[i].until < Q.ch[slot].until)
			slot = i;
	}
	r = qr_challenge_new(Q.ch[slot].text, sizeof(Q.ch[slot].text));
	if (r == 0) {
		Q.ch[slot].until = now + Q.ttl_s;
		memcpy(out, Q.ch[slot].text, 7);
		*expires = Q.ch[slot].until;
	} else {
		memset(&Q.ch[slot], 0, sizeof(Q.ch[slot]));
	}
	pthread_mutex_unlock(&Q.mu);
	return r;
}

/* ------------------------------------------------------------------ */
/* the session */

static void
refused(struct card_result *out, enum credential_reason why, const char *extra)
{
	const char *name = credential_reason_name(why);
	copy_text(out->reason, sizeof(out->reason), name);
	snprintf(out->error, sizeof(out->error), "%s: %s%s", name, extra ? extra : cards_digital_meaning(why),
	         "");
	out->readable = false;
}

static void
fill_evidence(struct qr_result *q, struct card_result *out)
{
	struct card_evidence *e = &out->evidence;
	e->present = true;
	e->holder_verified = true;
	e->credential = q->credential_bytes;
	e->credential_len = q->credential_len;
	q->credential_bytes = NULL;
	q->credential_len = 0;
	e->device_answer = q->presentation_bytes;
	e->device_answer_len = q->presentation_len;
	q->presentation_bytes = NULL;
	q->presentation_len = 0;
	memset(e->nonce, 0, sizeof(e->nonce));
	copy_text(e->terminal_id, sizeof(e->terminal_id), cards_digital_terminal_id());
	copy_text(e->challenge, sizeof(e->challenge), q->challenge);
	e->answer_ts = q->ts;
}

int
cards_digital_qr_read(const struct card_io *io, struct card_result *out)
{
	char *text = malloc(QR_TEXT_MAX + 1);
	size_t len = QR_TEXT_MAX;
	struct qr_result *q = calloc(1, sizeof(*q));
	struct qr_policy pol = { .one_way = Q.one_way, .window_s = Q.window_s, .claim = claim };
	int rc;

	if (!text || !q) {
		free(text);
		free(q);
		copy_text(out->reason, sizeof(out->reason), "internal_error");
		copy_text(out->error, sizeof(out->error), "internal_error: out of memory");
		return -ENOMEM;
	}
	if (io->reading)
		io->reading(io->ctx);
	rc = io->read_code ? io->read_code(io->ctx, text, &len) : -ENOTSUP;
	if (rc == -E2BIG || rc == -ENOSPC) {
		refused(out, CREDENTIAL_R_QR_UNREADABLE, "the scanner sent a line longer than a code");
		log_info("qr: code refused: qr_unreadable (over %d characters)", QR_TEXT_MAX);
		rc = -EACCES;
		goto out;
	}
	if (rc < 0) {
		copy_text(out->reason, sizeof(out->reason), "internal_error");
		snprintf(out->error, sizeof(out->error), "internal_error: cannot read the code: %s",
		         strerror(-rc));
		goto out;
	}
	if (!Q.enabled) {
		copy_text(out->reason, sizeof(out->reason), "qr_disabled");
		copy_text(out->error, sizeof(out->error), "qr_disabled: [digital] qr = false");
		rc = -EACCES;
		goto out;
	}
	if (cards_digital_policy(&pol.cred) < 0) {
		copy_text(out->reason, sizeof(out->reason), "internal_error");
		copy_text(out->error, sizeof(out->error), "internal_error: the digital module is not up");
		rc = -EIO;
		goto out;
	}
	rc = qr_verify(text, len, &pol, q);
	if (rc == 0) {
		cards_digital_fill(&q->cred, true, QR_PRESENTATION, out);
		card_result_add_field(out, "freshness", q->challenge[0] ? "challenge" : "one-way");
		fill_evidence(q, out);
		log_info("qr: presentation accepted (code %zu characters, credential %zu bytes, "
		         "presentation %zu bytes, %s)",
		         len, out->evidence.credential_len, out->evidence.device_answer_len,
		         out->evidence.challenge[0] ? "challenge" : "one-way");
	} else {
		refused(out, q->reason, NULL);
		log_info("qr: presentation refused: %s (code %zu characters)",
		         credential_reason_name(q->reason), len);
		if (rc != -EACCES && rc != -ENOMEM)
			rc = -EIO;
	}
out:
	explicit_bzero(text, QR_TEXT_MAX + 1);
	free(text);
	qr_result_clear(q);
	free(q);
	return rc;
}

/* ------------------------------------------------------------------ */
/* the module (part of "digital") */

int
cards_qr_init(struct daemon *d)
{
	const struct config *c = d->cfg;
	pthread_mutex_lock(&Q.mu);
	Q.enabled = c->qr_enabled;
	Q.one_way = c->qr_one_way;
	Q.window_s = c->qr_window_s;
	Q.ttl_s = c->qr_challenge_ttl_s;
	memset(Q.ch, 0, sizeof(Q.ch));
	snprintf(Q.path, sizeof(Q.path), "%s/%s", c->state_dir, CARDS_QR_REPLAY_FILE);
	Q.rp = calloc(CARDS_QR_REPLAY_MAX, sizeof(*Q.rp));
	Q.nrp = 0;
	if (!Q.rp) {
		pthread_mutex_unlock(&Q.mu);
		return -ENOMEM;
	}
	replay_load((int64_t)time(NULL));
	Q.up = true;
	pthread_mutex_unlock(&Q.mu);
	log_info("qr: the QR form is %s%s", Q.enabled ? "on" : "off ([digital] qr = false)",
	         Q.enabled ? (Q.one_way ? " (one-way codes accepted)" : " (a challenge is required)")
	                   : "");
	return 0;
}

void
cards_qr_fini(struct daemon *d)
{
	(void)d;
	pthread_mutex_lock(&Q.mu);
	free(Q.rp);
	Q.rp = NULL;
	Q.nrp = 0;
	explicit_bzero(Q.ch, sizeof(Q.ch));
	Q.up = false;
	pthread_mutex_unlock(&Q.mu);
}
