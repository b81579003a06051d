# Carte Vitale 2: the public read path (docs/card-profiles.md has it
# step by step; DESIGN.md "What is public"; the same path as cardpeek's
# vitale_2.lua). Compiled into vitaled; a file of the same name in the
# profile directory replaces this one.

[profile]
name        = vitale2
kind        = patient
description = Carte Vitale 2
contactless = no
# 3B 75 13 00 00 4x 09 EA 90 00 (x = 3..C in pcsc-tools' list) and the
# variant with FA for EA: the mask drops the low nibble of byte 6 and
# bit 0x10 of byte 8. Direct convention, T=0 only.
atr = 3B 75 13 00 00 40 09 EA 90 00  mask FF FF FF FF FF F0 FF EF FF FF

[script]
# application VITALE
select aid D2 50 00 00 02 56 49 54 41 4C 45
# EF 2001, the pointer file: which EFs of which application hold what
select ef 2001
read
# read every EF it lists, selecting its application when it changes
pointers
# application MF_VITALE, EF 2F02: the card serial number (its EFs are
# not listed in the pointer file); a card without it still reads
select aid D2 50 00 00 02 4D 46 5F 56 49 54 41 4C 45  optional
select ef 2F02  optional
read

[map]
# each 65 is one beneficiary
65/80 = beneficiary.surname
65/81 = beneficiary.given_name
65/82 = beneficiary.birth_date
65/90 = beneficiary.nationality
65/93 = beneficiary.nir
# the card
66/80 = card.start_date
7F21  = card.certificate
5A    = card.serial
