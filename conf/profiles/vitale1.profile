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
# 3F 65 25 00 xx 09 xx 90 00: inverse convention (TS 3F as PC/SC reports
# it), T=0. pcsc-tools' list has 22/2C .. F9/69, 52 .. 6A, A3/A4 .. 6A.
atr = 3F 65 25 00 .. 09 .. 90 00
