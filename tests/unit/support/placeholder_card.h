/* A test card reader (struct card_reader_fn) that knows no card: every
 * card is "unknown" with its ATR; its read sends one SELECT of the MF
 * (00 A4 00 00 02 3F 00), changes nothing on the card and keeps only the
 * status word, as the card field "probe_sw". For suites that need a card
 * reader without the profiles (check_cards, check_readers).
 */
#ifndef VITALED_TEST_PLACEHOLDER_CARD_H
#define VITALED_TEST_PLACEHOLDER_CARD_H

#include "daemon/cards/cards.h"

extern const struct card_reader_fn placeholder_card_reader;

#endif
