/* The NFC reader driver (libnfc): reader_nfc_ops, declared in reader.h, plus
 * the pure helpers it is built on, exported for tests.
 *
 * What the driver does with the reader interface (docs/nfc.md has the why):
 *   - params->devices are libnfc connstrings ("pn532_uart:/dev/ttyUSB0",
 *     "acr122_usb", ...). One nfc_device and one worker thread per
 *     connstring, so a silent device never delays another; one libnfc
 *     context per process, shared by every open driver (libnfc 1.8's
 *     nfc_exit frees the driver list of all contexts). Only the configured
 *     connstrings are opened: nothing is scanned. A device path
 *     ("pn532_uart:/dev/...") is flock()ed while open: a second opener gets
 *     "in use".
 *   - Readers are named "nfc:" + connstring.
 *   - The callback is called from the per-device worker threads, one call at
 *     a time (the driver serialises the calls), never with a driver lock held
 *     other than that one: it may call connect() and transmit(), not close().
 *   - Events: ADDED when a device answers; REMOVED with a reason when it
 *     cannot be opened or stops answering (the driver keeps reopening it with
 *     exponential backoff up to params->backoff_max_ms, then ADDED again);
 *     CARD_PRESENT (contactless = true, atr = the PC/SC part 3 pseudo-ATR)
 *     when a target is activated; CARD_ABSENT when it left. DRIVER_DOWN/UP
 *     are not used: libnfc runs in-process, every failure is per device.
 *     No event carries the target's UID (phones use random UIDs; a UID is
 *     personal data and is never logged).
 *   - While a card is connected the worker leaves the device to the session:
 *     removal then shows as -ENODEV from transmit(), and CARD_ABSENT follows
 *     disconnect(). A card that failed a transmit is always reported absent
 *     after disconnect(); if it is still in the field the next poll reports
 *     it present again (a fresh activation).
 *   - transmit() errors: -ENODEV target lost (RF error, released, taken away,
 *     or the driver closing), -ETIMEDOUT the device did not answer within
 *     params->apdu_timeout_ms, -EHOSTDOWN the device was found dead,
 *     -ENOTSUP the target does not speak ISO 14443-4 (no APDUs), -EINVAL a
 *     command longer than a short APDU (261 bytes) or *rlen < 2, -ENOBUFS the
 *     answer does not fit in *rlen, -EIO anything else.
 *   - close() stops every worker; it returns within about 0.5 s, or within
 *     about 1.8 s if a worker is inside nfc_open() on a device that does not
 *     answer (libnfc's open cannot be interrupted). A card still connected
 *     stays valid memory: its transmit() returns -ENODEV and its
 *     disconnect() frees it.
 *   - Built without libnfc (WITH_NFC=0): compiled_in = false, open() returns
 *     -ENOTSUP and why() returns "NFC not compiled in".
 */
#ifndef VITALED_READER_NFC_H
#define VITALED_READER_NFC_H

#include <stddef.h>
#include <stdint.h>

#include "drivers/reader.h"

/* Longest pseudo-ATR built here: 3B 8F 80 01 + 15 historical bytes + TCK. */
#define READER_NFC_ATR_MAX 20

/* Default for reader_params.apdu_timeout_ms == 0. */
#define READER_NFC_APDU_TIMEOUT_MS 2000

/*
 * PC/SC part 3 §3.1.3.2.3.1 pseudo-ATR of an ISO 14443-4 type A card:
 * 3B 8n 80 01 T1..Tn TCK, with the historical bytes T1..Tn of the ATS (at
 * most 15 are kept) and TCK the XOR of every byte after 3B.
 * ats/ats_len is the ATS as libnfc gives it (nfc_iso14443a_info.abtAts):
 * from T0 on, without TL and CRC; an empty ATS gives 3B 80 80 01 01. An ATS
 * whose T0 announces more interface bytes than it holds is taken as having
 * no historical bytes. Writes to atr (at least READER_NFC_ATR_MAX bytes) and
 * *atr_len (cleared first). Returns 0, or -EINVAL on NULL pointers.
 * Pure; any thread.
 */
int reader_nfc_pseudo_atr(const uint8_t *ats, size_t ats_len, uint8_t *atr, size_t *atr_len);

/*
 * PC/SC part 3 §3.1.3.2.3.2 pseudo-ATR of a storage card (ISO 14443-3 type A,
 * no ISO-DEP): 3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 C0 C1 00 00 00 00 TCK,
 * standard 03 (ISO 14443 A part 3) and card name C0 C1 from the SAK/ATQA
 * (00 01 MIFARE Classic 1K, 00 02 4K, 00 26 Mini, 00 03 Ultralight, else
 * 00 00). Same conventions as above.
 */
int reader_nfc_storage_atr(uint8_t sak, const uint8_t atqa[2], uint8_t *atr, size_t *atr_len);

/*
 * Next reopen delay of the backoff: 0 → the first delay (250 ms, or cap when
 * smaller), then doubling, never above cap (cap 0 is taken as 250).
 * Pure; any thread.
 */
unsigned reader_nfc_backoff_next(unsigned cur_ms, unsigned cap_ms);

#endif
