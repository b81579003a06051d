/* Locked, non-dumpable memory for PINs; see secmem.h for where a PIN
 * travels through the daemon and why dumps stay enabled.
 */
#include "lib/secmem.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18 /* Linux 4.14 */
#endif

struct secmem_pin {
	size_t len;
	char digits[SECMEM_PIN_MAX + 1];
};

void
secmem_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

void
secmem_free_wiped(void *p)
{
	if (!p)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

void *
secmem_crypto_malloc(size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return malloc(n ? n : 1);
}

void *
secmem_crypto_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	if (!p)
		return malloc(n ? n : 1);
	if (n == 0) {
		secmem_free_wiped(p);
		return NULL;
	}
	size_t old = malloc_usable_size(p);
	if (n <= old)
		return p; /* the block stays where it is: nothing is left behind */
	void *q = malloc(n);
	if (!q)
		return NULL; /* p is untouched, as realloc leaves it */
	memcpy(q, p, old);
	secmem_free_wiped(p);
	return q;
}

void
secmem_crypto_free(void *p, const char *file, int line)
{
	(void)file;
	(void)line;
	secmem_free_wiped(p);
}

bool
secmem_equal(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char d = 0;
	for (size_t i = 0; i < n; i++)
		d |= (unsigned char)(x[i] ^ y[i]);
	return d == 0;
}

int
secmem_init(void)
{
	/* Blocks are still plain malloc blocks, so memory jansson allocated
	 * before this call is freed correctly too. */
	json_set_alloc_funcs(malloc, secmem_free_wiped);
	return 0;
}

void
secmem_fini(void)
{
	/* Keep wiping until exit: JSON objects may outlive the module. */
}

static size_t
page_round(size_t size)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t ps = pg > 0 ? (size_t)pg : 4096u;
	if (size == 0)
		size = 1;
	if (size > SIZE_MAX - ps)
		return 0;
	return (size + ps - 1) / ps * ps;
}

int
secmem_alloc(size_t size, void **out)
{
	*out = NULL;
	size_t len = page_round(size);
	if (!len)
		return -ENOMEM;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	/* Mark before the first byte is written; a PIN must never be in a
	 * page that a dump or a forked child could see. */
	if (madvise(p, len, MADV_DONTDUMP) < 0) {
		int e = errno;
		munmap(p, len);
		return -e;
	}
	(void)madvise(p, len, MADV_WIPEONFORK); /* older kernels: EINVAL, harmless */
	if (mlock(p, len) < 0) {
		int e = errno;
		munmap(p, len);
		return -e;
	}
	*out = p;
	return 0;
}

void
secmem_free(void *p, size_t size)
{
	if (!p)
		return;
	size_t len = page_round(size);
	explicit_bzero(p, len);
	munlock(p, len);
	munmap(p, len);
}

/* The shape check of a PIN, here because lib/ is below protocol/ (whose
 * pin_check_digits calls it): every byte looked at whatever it holds (no
 * early exit on the first non-digit). */
int
secmem_check_digits(const char *s, size_t len, size_t min, size_t max)
{
	unsigned bad = 0;
	if (!s && len)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned c = (unsigned char)s[i];
		bad |= (unsigned)(c < '0') | (unsigned)(c > '9');
	}
	if (bad)
		return -EINVAL;
	if (len < min || len > max)
		return -ERANGE;
	return 0;
}

int
secmem_pin_new(const char *src, size_t len, size_t min_len, size_t max_len,
               struct secmem_pin **out)
{
	*out = NULL;
	if (max_len > SECMEM_PIN_MAX)
		max_len = SECMEM_PIN_MAX;
	int r = secmem_check_digits(src, len, min_len, max_len);
	if (r < 0)
		return r;
	void *mem;
	if ((r = secmem_alloc(sizeof(struct secmem_pin), &mem)) < 0)
		return r;
	struct secmem_pin *p = mem;
	memcpy(p->digits, src, len);
	p->digits[len] = '\0';
	p->len = len;
	*out = p;
	return 0;
}

const char *
secmem_pin_digits(const struct secmem_pin *p)
{
	return p->digits;
}

size_t
secmem_pin_len(const struct secmem_pin *p)
{
	return p->len;
}

bool
secmem_pin_equal(const struct secmem_pin *p, const char *s, size_t len)
{
	/* Walk the whole buffer: the bytes past p->len are zero, so the time
	 * depends on neither length nor content. */
	unsigned char d = (unsigned char)(len != p->len);
	for (size_t i = 0; i < SECMEM_PIN_MAX; i++) {
		unsigned char b = i < len ? (unsigned char)s[i] : 0;
		d |= (unsigned char)((unsigned char)p->digits[i] ^ b);
	}
	return d == 0;
}

void
secmem_pin_free(struct secmem_pin *p)
{
	secmem_free(p, sizeof(*p));
}
