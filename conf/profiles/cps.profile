# CPS, the practitioner's card (carte de professionnel de santé).
# vitaled does not read it with APDUs: the signer uses it through PKCS#11
# (OpenSC supports CPS3/CPS4, IAS-ECC). This profile recognises it and
# declares its PIN step for the PIN code.

[profile]
name        = cps
kind        = practitioner
description = Carte de professionnel de santé (CPS)
contactless = no
handler     = pkcs11
# pcsc-tools' smartcard_list.txt: "Sesam Vitale card CPS" (CPS2ter)
atr = 3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00
atr = 3B AC 00 40 2A 00 12 25 00 64 80 82 02 12 00 90 00
# pcsc-tools: "Vitale card CPS V4"
atr = 3B DC 18 FF 00 00 12 25 00 64 80 00 04 01 00 90 00
# pcsc-tools: "Contactless CPS v3 Card" (a PC/SC contactless pseudo-ATR)
atr = 3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E
# CPS3 contact ATR (Oberthur IAS-ECC) as the project's brief gives it and
# the test world's virtual CPS presents it; not in pcsc-tools' list:
# confirm on a real card
atr = 3B 7D 18 00 00 00 31 80 71 8E 64 86 D6 01 00 81 90 00

[pin]
# VERIFY 00 20 00 01 08 <PIN block>: the PIN's ASCII digits padded with
# FF to 8 bytes ("1234" -> 31 32 33 34 FF FF FF FF), as the test world's
# virtual CPS expects. A CPS PIN has exactly 4 digits (esante.gouv.fr on
# the CPS): a longer or shorter entry is refused before it reaches the
# card, where it would cost a try.
# The 8-digit unblock code goes with RESET RETRY COUNTER (UnblockPin).
cla            = 00
verify_ref     = 01
min_length     = 4
max_length     = 4
format         = ascii
pad            = FF
block_length   = 8
unblock_length = 8
