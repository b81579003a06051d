/* Hexadecimal text for bytes (ATRs, credential ids, nonces, digests).
 * Pure code; thread-safe. */
#ifndef VITALED_LIB_HEX_H
#define VITALED_LIB_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Write len bytes as hex digits (upper case when upper, else lower) into
 * out (outlen bytes); stops at a whole byte that no longer fits and always
 * NUL-terminates when outlen > 0. Returns out. */
char *hex_encode(const uint8_t *p, size_t len, bool upper, char *out, size_t outlen);

/* Parse exactly slen hex digits (either case, no separators) into out (at
 * most max bytes). Returns the number of bytes, or -EINVAL / -E2BIG. */
int hex_decode(const char *s, size_t slen, uint8_t *out, size_t max);

#endif
