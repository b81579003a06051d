/* Base64 (RFC 4648 §4, the standard alphabet, padded): the project's one
 * codec. Strict on input: the length a multiple of 4, '=' only as the last
 * one or two characters, no whitespace, no other alphabet.
 *
 * Pure code, no allocation but b64_encode_alloc's; thread-safe.
 */
#ifndef VITALED_LIB_B64_H
#define VITALED_LIB_B64_H

#include <stddef.h>
#include <stdint.h>

/* Characters b64_encode writes for n bytes, without the NUL. */
#define B64_ENCODED_LEN(n) (((n) + 2) / 3 * 4)

/* Encode n bytes into out, which holds B64_ENCODED_LEN(n) + 1 bytes; always
 * NUL-terminates. Returns the length written (without the NUL). */
size_t b64_encode(const uint8_t *p, size_t n, char *out);

/* The same into a malloc'd string (the caller frees it); NULL when out of
 * memory or n is absurdly large. */
char *b64_encode_alloc(const uint8_t *p, size_t n);

/* Decode slen characters into out (at most max bytes). Returns 0, -EINVAL for
 * anything that is not strict base64, -E2BIG when out is too small. *outlen
 * is set to the decoded length (0 on error). */
int b64_decode(const char *s, size_t slen, uint8_t *out, size_t max, size_t *outlen);

#endif
