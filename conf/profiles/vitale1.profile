# Carte Vitale 1: recognised by its ATR, not readable. Its read commands
# are not public (DESIGN.md "What is public" gives only the ATR), so
# vitaled says what it is instead of sending guesses to it.

[profile]
name        = vitale1
kind        = patient
description = Carte Vitale 1
contactless = no
readable    = no
message     = carte Vitale 1 recognised; it cannot be read without the licensed SESAM-Vitale components
# Inverse convention (TS 3F as PC/SC reports it), T=0. Exactly the ATRs
# pcsc-tools' smartcard_list.txt gives for the carte Vitale, no wider: the
# mask 3F 65 25 00 .. 09 .. 90 00 also matched a parking-meter card
# (2B 09 69), a Bull Scot 5 (2B 09 EB), bank cards (24 09 6B, 24 09 6E) and
# a city card (2B 09 62); such a card is now "unknown", never misread.
# "3F 65 25 00 2[2C] 09 [F6]9 90 00  Sesam Vitale (French health card)"
atr = 3F 65 25 00 22 09 F9 90 00
atr = 3F 65 25 00 22 09 69 90 00
atr = 3F 65 25 00 2C 09 F9 90 00
atr = 3F 65 25 00 2C 09 69 90 00
# "3F 65 25 00 52 09 6A 90 00  French carte Vitale"
atr = 3F 65 25 00 52 09 6A 90 00
# "3F 65 25 00 A[34] 09 6A 90 00  Sesam Vitale (French health card)"
atr = 3F 65 25 00 A3 09 6A 90 00
atr = 3F 65 25 00 A4 09 6A 90 00
