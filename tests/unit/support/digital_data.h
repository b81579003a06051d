/* Test vectors of the digital card (tests/data/digital/, made by
 * tests/data/digital/make_vectors.py), for check_credential and
 * check_digital (digital_data.c; linked into every unit suite). */
#ifndef VITALED_TEST_SUPPORT_DIGITAL_DATA_H
#define VITALED_TEST_SUPPORT_DIGITAL_DATA_H

#include <stddef.h>
#include <stdint.h>

/* The whole file tests/data/digital/NAME (under $srcdir, or the current
 * directory: the source root), malloc'd and NUL-terminated beyond *len; the
 * caller frees it. A missing or unreadable file fails the running Check test. */
uint8_t *digital_data_load(const char *name, size_t *len);

#endif
