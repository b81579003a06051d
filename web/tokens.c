/* Tokens and pairings; see tokens.h. */
#include "web/tokens.h"

#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "lib/clock.h"
#include "lib/fsutil.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "lib/secmem.h"

struct token {
	char id[17];          /* public handle: hex of 8 random bytes */
	uint8_t hash[32];     /* SHA-256 of the token */
	enum web_scope scope;
	char origin[WEB_ORIGIN_MAX + 1];
	char app[WEB_APP_MAX + 1];
	int64_t created;      /* unix seconds */
	int64_t last_used;    /* unix seconds, 0 never (kept in memory only) */
};

struct pending {
	bool used;
	bool approved;
	char pair_id[WEB_PAIR_ID_LEN + 1];
	char code[7];
	enum web_scope scope;
	char origin[WEB_ORIGIN_MAX + 1];
	char app[WEB_APP_MAX + 1];
	uint64_t expires_ms; /* monotonic */
	char token[WEB_TOKEN_LEN + 1]; /* once approved, until collected; wiped */
};

struct web_store {
	pthread_mutex_t mu;
	char *path;
	long pair_timeout_s;
	struct token tokens[WEB_MAX_TOKENS];
	int ntokens;
	struct pending pending[WEB_MAX_PENDING];
};

static int
random_bytes(uint8_t *p, size_t n)
{
	while (n) {
		ssize_t r = getrandom(p, n, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static void
sha256(const void *p, size_t n, uint8_t out[32])
{
	unsigned int len = 32;
	if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1)
		memset(out, 0, 32); /* never matches a stored hash of a real token */
}

static void
token_encode(const uint8_t raw[32], char out[WEB_TOKEN_LEN + 1])
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < 32; i++) {
		acc = (acc << 8) | raw[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[o++] = a[(acc >> bits) & 63];
		}
	}
	if (bits)
		out[o++] = a[(acc << (6 - bits)) & 63];
	out[o] = '\0';
}

static void
copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

/* ------------------------------------------------------------ the file */

static json_t *
tokens_json(const struct web_store *s, bool with_hash)
{
	json_t *a = json_array();
	for (int i = 0; i < s->ntokens; i++) {
		const struct token *t = &s->tokens[i];
		char hx[65];
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", t->id, "scope",
		                      web_scope_name(t->scope), "origin", t->origin, "app", t->app,
		                      "created", (json_int_t)t->created);
		if (with_hash)
			json_object_set_new(o, "sha256", json_string(hex_encode(t->hash, 32, false, hx, sizeof(hx))));
		else if (t->last_used)
			json_object_set_new(o, "last_used", json_integer(t->last_used));
		json_array_append_new(a, o);
	}
	return a;
}

static int
store_save(struct web_store *s)
{
	json_t *a = tokens_json(s, true);
	char *text = json_dumps(a, JSON_INDENT(1));
	json_decref(a);
	if (!text)
		return -ENOMEM;
	int r = fs_write_atomic(s->path, text, strlen(text), 0600);
	free(text);
	if (r < 0)
		log_err("web: cannot write %s: %s", s->path, strerror(-r));
	return r;
}

static int
token_from_json(json_t *o, struct token *t)
{
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *hx = json_string_value(json_object_get(o, "sha256"));
	const char *origin = json_string_value(json_object_get(o, "origin"));
	const char *app = json_string_value(json_object_get(o, "app"));
	enum web_scope sc = web_scope_parse(json_string_value(json_object_get(o, "scope")));
	if (!id || strlen(id) != 16 || !hx || strlen(hx) != 64 || !origin ||
	    strlen(origin) > WEB_ORIGIN_MAX || !app || strlen(app) > WEB_APP_MAX || sc == WEB_SCOPE_NONE)
		return -EINVAL;
	if (hex_decode(hx, 64, t->hash, 32) != 32)
		return -EINVAL;
	memcpy(t->id, id, 17);
	t->scope = sc;
	copy_str(t->origin, sizeof(t->origin), origin);
	copy_str(t->app, sizeof(t->app), app);
	t->created = (int64_t)json_integer_value(json_object_get(o, "created"));
	t->last_used = 0;
	return 0;
}

static int
store_load(struct web_store *s, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	int r = fs_read_file(s->path, 1 << 20, &text, &len);
	if (r == -ENOENT)
		return 0;
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", s->path, strerror(-r));
		return r;
	}
	json_error_t je;
	json_t *a = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	free(text);
	size_t i;
	json_t *o;
	if (!json_is_array(a) || json_array_size(a) > WEB_MAX_TOKENS) {
		snprintf(err, errlen, "%s: not a token list (line %d: %s)", s->path, je.line, je.text);
		json_decref(a);
		return -EINVAL;
	}
	json_array_foreach(a, i, o) {
		if (token_from_json(o, &s->tokens[s->ntokens]) < 0) {
			snprintf(err, errlen, "%s: token %zu is malformed", s->path, i);
			json_decref(a);
			return -EINVAL;
		}
		s->ntokens++;
	}
	json_decref(a);
	return 0;
}

int
web_store_open(const char *state_dir, long pair_timeout_s, struct web_store **out, char *err,
               size_t errlen)
{
	struct web_store *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	s->pair_timeout_s = pair_timeout_s;
	int r = fs_mkdir_p(state_dir, 0700);
	if (r < 0) {
		snprintf(err, errlen, "%s: %s", state_dir, strerror(-r));
		web_store_free(s);
		return r;
	}
	if (asprintf(&s->path, "%s/tokens.json", state_dir) < 0) {
		s->path = NULL;
		web_store_free(s);
		return -ENOMEM;
	}
	r = store_load(s, err, errlen);
	if (r < 0) {
		web_store_free(s);
		return r;
	}
	*out = s;
	return 0;
}

void
web_store_free(struct web_store *s)
{
	if (!s)
		return;
	secmem_wipe(s->pending, sizeof(s->pending));
	pthread_mutex_destroy(&s->mu);
	free(s->path);
	free(s);
}

/* ------------------------------------------------------------ checks */

enum web_auth
web_store_check(struct web_store *s, const char *authorization, const char *origin,
                enum web_scope *scope)
{
	if (!authorization || strncmp(authorization, "Bearer ", 7) != 0)
		return WEB_AUTH_MISSING;
	const char *tok = authorization + 7;
	if (strlen(tok) != WEB_TOKEN_LEN)
		return WEB_AUTH_INVALID;
	uint8_t h[32];
	sha256(tok, WEB_TOKEN_LEN, h);
	enum web_auth res = WEB_AUTH_INVALID;
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < s->ntokens; i++) {
		struct token *t = &s->tokens[i];
		if (!secmem_equal(t->hash, h, 32))
			continue;
		if (!origin || strcmp(origin, t->origin) != 0) {
			res = WEB_AUTH_ORIGIN;
			break;
		}
		t->last_used = clock_real_ms() / 1000;
		*scope = t->scope;
		res = WEB_AUTH_OK;
		break;
	}
	pthread_mutex_unlock(&s->mu);
	return res;
}

/* ------------------------------------------------------------ pairing */

static void
expire_pending(struct web_store *s)
{
	uint64_t now = clock_mono_ms();
	for (int i = 0; i < WEB_MAX_PENDING; i++)
		if (s->pending[i].used && s->pending[i].expires_ms <= now)
			secmem_wipe(&s->pending[i], sizeof(s->pending[i]));
}

static struct pending *
find_code(struct web_store *s, const char *code)
{
	for (int i = 0; code && i < WEB_MAX_PENDING; i++)
		if (s->pending[i].used && !s->pending[i].approved && !strcmp(s->pending[i].code, code))
			return &s->pending[i];
	return NULL;
}

static bool
app_ok(const char *app)
{
	size_t n = app ? strlen(app) : 0;
	if (n == 0 || n > WEB_APP_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)app[i] < 0x20 || app[i] == 0x7f)
			return false;
	return true;
}

int
web_pair_start(struct web_store *s, const char *origin, const char *app, enum web_scope scope,
               char *pair_id, char *code)
{
	if (!origin || strlen(origin) > WEB_ORIGIN_MAX || !app_ok(app) || scope == WEB_SCOPE_NONE)
		return -EINVAL;
	uint8_t raw[16];
	if (random_bytes(raw, sizeof(raw)) < 0)
		return -EIO;
	int r = -EBUSY;
	pthread_mutex_lock(&s->mu);
	expire_pending(s);
	for (int i = 0; i < WEB_MAX_PENDING; i++) {
		struct pending *p = &s->pending[i];
		if (p->used)
			continue;
		uint32_t v;
		do {
			if (random_bytes((uint8_t *)&v, sizeof(v)) < 0)
				goto out;
			snprintf(code, 7, "%06u", v % 1000000u);
		} while (find_code(s, code));
		memset(p, 0, sizeof(*p));
		p->used = true;
		hex_encode(raw, sizeof(raw), false, p->pair_id, sizeof(p->pair_id));
		memcpy(p->code, code, 7);
		p->scope = scope;
		copy_str(p->origin, sizeof(p->origin), origin);
		copy_str(p->app, sizeof(p->app), app);
		p->expires_ms = clock_mono_ms() + (uint64_t)s->pair_timeout_s * 1000;
		memcpy(pair_id, p->pair_id, WEB_PAIR_ID_LEN + 1);
		r = 0;
		break;
	}
out:
	pthread_mutex_unlock(&s->mu);
	return r;
}

int
web_pair_collect(struct web_store *s, const char *pair_id, const char *origin, char *token,
                 enum web_scope *scope)
{
	int r = -ENOENT;
	if (!pair_id || strlen(pair_id) != WEB_PAIR_ID_LEN || !origin)
		return r;
	pthread_mutex_lock(&s->mu);
	expire_pending(s);
	for (int i = 0; i < WEB_MAX_PENDING; i++) {
		struct pending *p = &s->pending[i];
		if (!p->used || !secmem_equal(p->pair_id, pair_id, WEB_PAIR_ID_LEN) ||
		    strcmp(p->origin, origin) != 0)
			continue;
		if (!p->approved) {
			r = 0;
			break;
		}
		memcpy(token, p->token, WEB_TOKEN_LEN + 1);
		*scope = p->scope;
		secmem_wipe(p, sizeof(*p));
		r = 1;
		break;
	}
	pthread_mutex_unlock(&s->mu);
	return r;
}

json_t *
web_pair_list(struct web_store *s)
{
	json_t *a = json_array();
	pthread_mutex_lock(&s->mu);
	expire_pending(s);
	uint64_t now = clock_mono_ms();
	for (int i = 0; i < WEB_MAX_PENDING; i++) {
		struct pending *p = &s->pending[i];
		if (!p->used || p->approved)
			continue;
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:I}", "code", p->code, "origin",
		                                   p->origin, "app", p->app, "scope",
		                                   web_scope_name(p->scope), "expires_in_s",
		                                   (json_int_t)((p->expires_ms - now) / 1000)));
	}
	pthread_mutex_unlock(&s->mu);
	return a;
}

int
web_pair_approve(struct web_store *s, const char *code, enum web_scope scope, json_t **info)
{
	uint8_t raw[32], idraw[8];
	if (random_bytes(raw, sizeof(raw)) < 0 || random_bytes(idraw, sizeof(idraw)) < 0)
		return -EIO;
	int r = -ENOENT;
	pthread_mutex_lock(&s->mu);
	expire_pending(s);
	struct pending *p = find_code(s, code);
	if (!p)
		goto out;
	r = -ENOSPC;
	if (s->ntokens >= WEB_MAX_TOKENS)
		goto out;
	struct token *t = &s->tokens[s->ntokens];
	memset(t, 0, sizeof(*t));
	hex_encode(idraw, sizeof(idraw), false, t->id, sizeof(t->id));
	t->scope = scope == WEB_SCOPE_NONE ? p->scope : scope;
	copy_str(t->origin, sizeof(t->origin), p->origin);
	copy_str(t->app, sizeof(t->app), p->app);
	t->created = clock_real_ms() / 1000;
	token_encode(raw, p->token);
	sha256(p->token, WEB_TOKEN_LEN, t->hash);
	s->ntokens++;
	if (store_save(s) < 0) {
		s->ntokens--;
		secmem_wipe(p->token, sizeof(p->token));
		r = -EIO;
		goto out;
	}
	p->approved = true;
	p->scope = t->scope;
	/* the page has the rest of the pairing time to collect its token */
	*info = json_pack("{s:s, s:s, s:s, s:s}", "id", t->id, "origin", t->origin, "app", t->app,
	                  "scope", web_scope_name(t->scope));
	r = 0;
out:
	pthread_mutex_unlock(&s->mu);
	secmem_wipe(raw, sizeof(raw));
	return r;
}

int
web_pair_deny(struct web_store *s, const char *code)
{
	pthread_mutex_lock(&s->mu);
	struct pending *p = find_code(s, code);
	if (p)
		secmem_wipe(p, sizeof(*p));
	pthread_mutex_unlock(&s->mu);
	return p ? 0 : -ENOENT;
}

json_t *
web_token_list(struct web_store *s)
{
	pthread_mutex_lock(&s->mu);
	json_t *a = tokens_json(s, false);
	pthread_mutex_unlock(&s->mu);
	return a;
}

int
web_token_revoke(struct web_store *s, const char *id)
{
	if (!id)
		return -ENOENT;
	bool all = !strcmp(id, "all");
	pthread_mutex_lock(&s->mu);
	struct token saved[WEB_MAX_TOKENS];
	int nsaved = s->ntokens, n = 0, out = 0;
	memcpy(saved, s->tokens, sizeof(saved));
	for (int i = 0; i < s->ntokens; i++) {
		if (all || !strcmp(s->tokens[i].id, id))
			n++;
		else
			s->tokens[out++] = s->tokens[i];
	}
	s->ntokens = out;
	int r = n;
	if (n == 0) {
		r = -ENOENT;
	} else if (store_save(s) < 0) {
		memcpy(s->tokens, saved, sizeof(saved)); /* nothing revoked: say so */
		s->ntokens = nsaved;
		r = -EIO;
	}
	pthread_mutex_unlock(&s->mu);
	return r;
}

void
web_store_counts(struct web_store *s, int *tokens, int *pending)
{
	pthread_mutex_lock(&s->mu);
	expire_pending(s);
	*tokens = s->ntokens;
	int n = 0;
	for (int i = 0; i < WEB_MAX_PENDING; i++)
		n += s->pending[i].used && !s->pending[i].approved;
	*pending = n;
	pthread_mutex_unlock(&s->mu);
}
