/* The opposition list in memory; see opposition.h. */
#include "daemon/cards/opposition.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SLOT (OPPOSITION_SERIAL_MAX + 1)
#define MIN_CAP 64u

struct opposition {
	char (*slot)[SLOT]; /* "" = free */
	size_t cap;         /* a power of two, or 0 */
	size_t n;
};

static struct {
	struct opposition *cur;
	bool loaded;
} O;

/* FNV-1a, 64 bits, then MurmurHash3's finaliser (FNV's low bits alone
 * cluster for serials that differ in their last digits). The serials come
 * from the insurer over mutual TLS: no keyed hash. */
static size_t
hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return (size_t)h;
}

static bool
valid(const char *serial)
{
	return serial && serial[0] && strnlen(serial, SLOT) <= OPPOSITION_SERIAL_MAX;
}

/* The slot holding serial, or the free slot where it would go. */
static size_t
find(const struct opposition *o, const char *serial)
{
	size_t mask = o->cap - 1, i = hash(serial) & mask;
	while (o->slot[i][0] && strcmp(o->slot[i], serial) != 0)
		i = (i + 1) & mask;
	return i;
}

/* Room for n serials at most 3/4 full. */
static int
reserve(struct opposition *o, size_t n)
{
	size_t ncap = o->cap ? o->cap : MIN_CAP;
	while (n > ncap / 4 * 3)
		ncap *= 2;
	if (ncap == o->cap)
		return 0;
	char(*ns)[SLOT] = calloc(ncap, SLOT);
	if (!ns)
		return -ENOMEM;
	struct opposition old = *o;
	o->slot = ns;
	o->cap = ncap;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slot[i][0])
			memcpy(o->slot[find(o, old.slot[i])], old.slot[i], SLOT);
	free(old.slot);
	return 0;
}

struct opposition *
opposition_new(size_t n)
{
	struct opposition *o = calloc(1, sizeof(*o));
	if (o && reserve(o, n) < 0) {
		free(o);
		return NULL;
	}
	return o;
}

int
opposition_set_add(struct opposition *o, const char *serial)
{
	if (!valid(serial))
		return -EINVAL;
	int r = reserve(o, o->n + 1);
	if (r < 0)
		return r;
	size_t i = find(o, serial);
	if (!o->slot[i][0]) {
		memcpy(o->slot[i], serial, strlen(serial) + 1);
		o->n++;
	}
	return 0;
}

void
opposition_set_remove(struct opposition *o, const char *serial)
{
	if (!valid(serial) || !o->n)
		return;
	size_t mask = o->cap - 1, i = find(o, serial);
	if (!o->slot[i][0])
		return;
	o->slot[i][0] = '\0';
	o->n--;
	/* backward shift: move into the hole every later entry of the chain
	 * whose home slot is not between the hole and it */
	for (size_t j = (i + 1) & mask; o->slot[j][0]; j = (j + 1) & mask) {
		size_t home = hash(o->slot[j]) & mask;
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (stays)
			continue;
		memcpy(o->slot[i], o->slot[j], SLOT);
		o->slot[j][0] = '\0';
		i = j;
	}
}

bool
opposition_set_has(const struct opposition *o, const char *serial)
{
	if (!o || !valid(serial) || !o->n)
		return false;
	return o->slot[find(o, serial)][0] != '\0';
}

size_t
opposition_set_count(const struct opposition *o)
{
	return o ? o->n : 0;
}

void
opposition_free(struct opposition *o)
{
	if (!o)
		return;
	free(o->slot);
	free(o);
}

/* ------------------------------------------------------------------ */
/* the installed set */

void
opposition_install(struct opposition *o)
{
	opposition_free(O.cur);
	O.cur = o;
	O.loaded = o != NULL;
}

int
opposition_add(const char *serial)
{
	if (!O.cur && !(O.cur = opposition_new(0)))
		return -ENOMEM;
	return opposition_set_add(O.cur, serial);
}

void
opposition_remove(const char *serial)
{
	if (O.cur)
		opposition_set_remove(O.cur, serial);
}

bool
opposition_has(const char *serial)
{
	return opposition_set_has(O.cur, serial);
}

size_t
opposition_count(void)
{
	return opposition_set_count(O.cur);
}

bool
opposition_loaded(void)
{
	return O.loaded;
}

void
opposition_set_loaded(bool loaded)
{
	O.loaded = loaded;
}

void
opposition_clear(void)
{
	opposition_free(O.cur);
	O.cur = NULL;
	O.loaded = false;
}
