/* The 2D barcode scanners as readers of kind "qr" (reader_qr_ops): the
 * digital carte Vitale's QR form (docs/digital-card.md part 2).
 *
 * Three sources, each a reader of its own:
 *   "scanner:PATH"   a serial scanner (USB CDC-ACM, /dev/ttyACM0): termios
 *                    raw, one code per line (CR, LF or CR LF);
 *   "keyboard:PATH"  a scanner that types (USB HID keyboard, evdev
 *                    /dev/input/eventN or /dev/input/by-id/...-event-kbd):
 *                    grabbed (EVIOCGRAB) so that no other window gets the
 *                    keystrokes, key codes turned into characters with the
 *                    configured layout (qwerty or azerty), Enter ends a code;
 *   "PresentCode[:NAME]"  a till that reads the code itself hands the text
 *                    in through the API (reader_qr_present).
 * Scanners are hot-plugged: a device that is missing, or goes away, is
 * tried again every second (up to the backoff cap); ReaderAdded and
 * ReaderRemoved follow. A scanned line is a "card" (CardInserted with the
 * pseudo-ATR READER_QR_ATR) that stays in its reader until the next code,
 * or until hold_ms passes (CardRemoved). The session reads the text with
 * ops.read_code.
 */
#ifndef VITALED_READER_QR_H
#define VITALED_READER_QR_H

#include <stdbool.h>
#include <stddef.h>

#include "drivers/reader.h"

/* The longest line kept (a code is at most QR_TEXT_MAX characters). */
#define READER_QR_LINE_MAX 4096
#define READER_QR_API_READERS 8
#define READER_QR_DEVICES_MAX 16

enum reader_qr_keymap { READER_QR_QWERTY, READER_QR_AZERTY };

/* The character a key press gives on a scanner that types in layout km
 * (Linux input key codes, <linux/input-event-codes.h>), with shift held
 * (Shift or Caps Lock for letters): '\n' for Enter, 0 for a key that types
 * nothing a code can hold. Pure; for the driver and its tests. */
char reader_qr_key_char(enum reader_qr_keymap km, unsigned code, bool shift);

/* "qwerty"/"azerty" -> the keymap; -1 for anything else. */
int reader_qr_keymap_parse(const char *name);

/* Hand in a code's text for the API reader "PresentCode" (name NULL or "")
 * or "PresentCode:NAME": the reader is added on first use (ReaderAdded),
 * then the code is presented there like a scan (CardInserted ...). Loop
 * thread or any other. 0; -EINVAL (bad name, empty text, text too long),
 * -ENOSPC (too many API readers), -ENOMEM. *reader_out (may be NULL) gets
 * the reader's name. */
int reader_qr_present(struct reader_driver *d, const char *name, const char *text, size_t len,
                      char reader_out[READER_NAME_MAX]);

#endif
