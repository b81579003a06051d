/* Card PIN checks over the reader interface: VERIFY with a PIN from the
 * host, VERIFY on the reader's keypad (PC/SC part 10
 * FEATURE_VERIFY_PIN_DIRECT), the tries-left query, and RESET RETRY
 * COUNTER with the unblock code.
 *
 * For card sessions whose profile has a PIN step (a CPS card read through
 * PC/SC, or a patient card profile that declares one). The APDU bytes come
 * from protocol/pin.h; this module only moves them, so it does not depend
 * on the T=0 layer (VERIFY and RESET RETRY COUNTER are case 3 commands:
 * no 61xx/6Cxx handling is needed).
 *
 * Rules kept here: a PIN is put in an APDU only in locked memory
 * (secmem_alloc), wiped right after the exchange; a card whose counter
 * says "blocked" (6983 or 63C0 to the query) never gets the PIN; nothing
 * is retried.
 *
 * Thread context: blocking (card I/O); call from a session thread, never
 * from the event loop. Returns 0 when the card answered (the outcome is in
 * *res), or a reader error (-ENODEV, -ETIMEDOUT, -EIO ... see reader.h),
 * -ENOTSUP (no keypad / no control), -EINVAL (params), -ENOMEM.
 */
#ifndef VITALED_CARDPIN_H
#define VITALED_CARDPIN_H

#include "protocol/pin.h"
#include "drivers/reader.h"
#include "lib/secmem.h"

/* VERIFY without data: tries left (PIN_ST_NEEDED + tries_left), already
 * verified (PIN_ST_OK), blocked (PIN_ST_BLOCKED), or a card that does not
 * support the query (another status). */
int cardpin_query(const struct reader_ops *ops, struct reader_card *card,
                  const struct pin_params *p, struct pin_result *res);

/* Query first (a blocked card gets nothing; an already verified one too),
 * then VERIFY with pin. res tells ok / incorrect (tries_left) / blocked. A
 * malformed PIN returns -EINVAL before any exchange. */
int cardpin_verify(const struct reader_ops *ops, struct reader_card *card,
                   const struct pin_params *p, const struct secmem_pin *pin,
                   struct pin_result *res);

/* The reader's part 10 features (CM_IOCTL_GET_FEATURE_REQUEST). A reader
 * without control or without features: -ENOTSUP (f then empty). */
int cardpin_features(const struct reader_ops *ops, struct reader_card *card,
                     struct pin_features *f);

/* VERIFY on the keypad: PIN_VERIFY_STRUCTURE sent with
 * FEATURE_VERIFY_PIN_DIRECT; res from the two status bytes the reader
 * returns (6400 timeout, 6401 cancel ...). -ENOTSUP when f has no
 * VERIFY_PIN_DIRECT. The host never sees the PIN. */
int cardpin_verify_pinpad(const struct reader_ops *ops, struct reader_card *card,
                          const struct pin_params *p, const struct pin_pinpad *pp,
                          const struct pin_features *f, struct pin_result *res);

/* RESET RETRY COUNTER with the unblock code, and a new PIN (or NULL to
 * keep the old one). res->tries_left after a wrong code is the code's own
 * counter. */
int cardpin_unblock(const struct reader_ops *ops, struct reader_card *card,
                    const struct pin_params *p, const struct secmem_pin *puk,
                    const struct secmem_pin *newpin, struct pin_result *res);

#endif
