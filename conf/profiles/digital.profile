# The digital carte Vitale (appli carte Vitale on a phone, over NFC).
# This profile only routes the card to the digital-card protocol code
# (docs: the open protocol, version 1); it holds no script.

[profile]
name        = digital
kind        = digital
description = Carte Vitale numérique (phone, NFC)
contactless = yes
handler     = digital
# the phone's PC/SC pseudo-ATR (ISO 14443-4 type A, no historical bytes)
atr = 3B 80 80 01 01
# and any other ISO 14443-4 pseudo-ATR (3B 8n 80 01 ... TCK), storage
# cards excepted: the least specific match, so any profile that names a
# contactless card's ATR (the contactless CPS) wins over this one
atr = iso14443-4
