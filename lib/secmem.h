/* Memory for secrets: locked pages that never reach swap or a core dump,
 * a PIN type that lives only there, constant-time comparison, and the
 * wiping of every heap block the JSON library frees.
 *
 * Where a PIN goes in the daemon, and what keeps it from staying there:
 *   1. the API socket's input buffer (daemon/core/varlink.c wipes each message
 *      once it is parsed, and the whole buffer when the connection goes);
 *   2. jansson's parser and string objects (secmem_init installs a free
 *      function that wipes every block jansson frees);
 *   3. a struct secmem_pin: mlock'd, MADV_DONTDUMP, MADV_WIPEONFORK pages,
 *      wiped with explicit_bzero and unmapped as soon as the login ends;
 *   4. the PKCS#11 module or OpenSSL, which get a pointer into (3).
 *
 * Core dumps: the daemon does NOT call prctl(PR_SET_DUMPABLE, 0). A crash
 * dump is the on-call engineer's best tool, and gcore is how the tests prove
 * that no PIN is left behind. Instead the pages that hold a PIN are marked
 * MADV_DONTDUMP (skipped by the kernel's dumper and by gdb's gcore, which
 * honour the "dd" flag), and every other place a PIN passes through is
 * wiped right after use. An operator who wants no dumps at all sets
 * LimitCORE=0 in the unit; that is a policy choice, not a substitute for
 * wiping.
 *
 * Thread context: all functions are thread-safe (no shared state but the
 * allocator hook, set once at start-up from the main thread).
 */
#ifndef VITALED_LIB_SECMEM_H
#define VITALED_LIB_SECMEM_H

#include <stdbool.h>
#include <stddef.h>

/* The longest PIN the daemon accepts from anyone (bytes). Profiles and
 * tokens set tighter bounds. */
#define SECMEM_PIN_MAX 32

/* Install the wiping free for jansson (idempotent). Call before the API
 * serves the first PIN. Returns 0. */
int secmem_init(void);
void secmem_fini(void);

/* Map size bytes (rounded up to pages) of zeroed, locked, non-dumpable,
 * wiped-on-fork memory. Returns 0, or a negative errno (-EPERM/-ENOMEM/
 * -EAGAIN when the pages cannot be locked: RLIMIT_MEMLOCK). *out is NULL
 * on failure. Free with secmem_free(p, size). */
int secmem_alloc(size_t size, void **out);
/* Wipe, unlock and unmap. NULL is ignored. */
void secmem_free(void *p, size_t size);

/* explicit_bzero that accepts NULL. */
void secmem_wipe(void *p, size_t n);
/* Wipe malloc_usable_size(p) bytes, then free(p). The jansson free hook;
 * usable for any malloc'd block that held a secret. */
void secmem_free_wiped(void *p);
/* Allocation functions with the signatures of OpenSSL's
 * CRYPTO_set_mem_functions that wipe every block they give back: free wipes
 * malloc_usable_size bytes, realloc moves to a fresh block and wipes the old
 * one. OpenSSL frees many buffers that held key bytes without cleansing
 * them (a PEM key's decoded DER, ASN.1 octet strings of a private key), and
 * glibc leaves most of a freed block as it was, so without them a key file's
 * private scalar stays in the heap after the key is loaded. main() installs
 * them before OpenSSL allocates anything (it refuses later). */
void *secmem_crypto_malloc(size_t n, const char *file, int line);
void *secmem_crypto_realloc(void *p, size_t n, const char *file, int line);
void secmem_crypto_free(void *p, const char *file, int line);

/* Compare in time that depends only on n. True when equal. */
bool secmem_equal(const void *a, const void *b, size_t n);

/* A PIN in locked memory. */
struct secmem_pin;

/* Check src (len bytes, not NUL-terminated) is only ASCII digits with
 * min_len <= len <= max_len (max_len <= SECMEM_PIN_MAX), then copy it into
 * a fresh locked page. Nothing is allocated for a malformed PIN.
 * Returns 0, -EINVAL (a non-digit), -ERANGE (length), or an allocation
 * error from secmem_alloc. The caller owns *out (secmem_pin_free). */
/* Check that s is len ASCII digits, min <= len <= max, looking at every
 * byte (no early exit). Returns 0, -EINVAL (a non-digit) or -ERANGE. */
int secmem_check_digits(const char *s, size_t len, size_t min, size_t max);

int secmem_pin_new(const char *src, size_t len, size_t min_len, size_t max_len,
                   struct secmem_pin **out);
/* The digits, NUL-terminated, valid until secmem_pin_free. */
const char *secmem_pin_digits(const struct secmem_pin *p);
size_t secmem_pin_len(const struct secmem_pin *p);
/* Constant-time comparison of the PIN with len bytes at s. */
bool secmem_pin_equal(const struct secmem_pin *p, const char *s, size_t len);
/* Wipe and unmap. NULL is ignored. */
void secmem_pin_free(struct secmem_pin *p);

#endif
