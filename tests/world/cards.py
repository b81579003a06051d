#!/usr/bin/python3
"""Virtual cards for the vitaled PC/SC test world.

Each card is a class with an ``atr`` (bytes) and ``apdu(cmd: bytes) -> bytes``
(the response APDU, data + SW1 SW2).  ``CARDS`` maps a name to its class;
``make_card(name, **args)`` builds one (args are strings, from ``--card-arg``).
The card host (cardhost.py) calls ``power(on)``/``reset()`` on vpcd's control
messages and may see two special outcomes of ``apdu``:
``NoAnswer`` raised (the host sends nothing: a silent card) and
``card.vanish_now`` set true (the host closes the connection after the answer:
the card is pulled out of the reader).

All cards behave as T=0 cards seen through an APDU-level reader (vpcd passes
the bytes through untouched, pcscd does no 61xx/6Cxx handling):

* A command is CLA INS P1 P2 [P3 [data]].  4 bytes = no P3 (taken as P3=00).
  5 bytes = case 2 (P3 is Le, 00 meaning 256).  5+Lc = case 3, 5+Lc+1 = case 4
  (the trailing Le is ignored: a T=0 card cannot answer data to a case 4
  command, it says 61xx).  Extended lengths are refused with 67 00.
* SELECT (INS A4) never returns data directly: it answers ``61 xx`` (xx = length
  of the FCI/FCP waiting, 00 = 256) unless P2 = 0C (no data: ``90 00``).
* GET RESPONSE ``00 C0 00 00 Le`` hands out the waiting bytes: Le = what is
  waiting -> data + 90 00; Le smaller -> that many bytes + ``61 <rest>``;
  Le larger (or 00 with less than 256 waiting) -> ``6C <exact>`` (the waiting
  data is kept; repeat with that Le).  Nothing waiting -> ``69 85``.  Any other
  command drops what was waiting.
* READ BINARY ``00 B0 P1 P2 Le``: offset = (P1 & 7F) << 8 | P2; if P1 bit 8 is
  set, P1 bits 1-5 are an SFI (= EF id & 1F) which selects the EF, offset = P2.
  Le 00 means 256.  offset > size or offset = size -> ``6B 00``;
  bytes left >= Le -> Le bytes + 90 00; bytes left < Le -> ``6C <left>``
  (the reader repeats with that Le and gets a short answer + 90 00).
  Card-arg ``short=1`` makes a Vitale answer the short data + 90 00 at once
  instead (T=1-like behaviour).  No current EF -> ``69 86``.
* Unknown INS -> ``6D 00``; CLA other than 00 -> ``6E 00``; file or AID not
  found -> ``6A 82``; bad P1/P2 -> ``6A 86``; bad length -> ``67 00``.

----------------------------------------------------------------------------
Vitale 2 file layout (card ``vitale2``) -- the C card profile reads this
----------------------------------------------------------------------------
ATR (default)  3B 75 13 00 00 47 09 EA 90 00   (T=0 only, direct convention)
               card-arg gen=3..C changes the 6th byte to 4x; fa=1 uses FA for
               EA; atr=HEX replaces it outright.

Application VITALE     AID D2 50 00 00 02 56 49 54 41 4C 45  (entry id 00 01)
  SELECT 00 A4 04 00 0B <AID>        -> 61 0F ; GET RESPONSE 00 C0 00 00 0F ->
                                         6F 0D 84 0B <AID> 90 00
  EF 2001 pointer file   (SELECT 00 A4 00 00 02 20 01, or P1 = 02;
                          FCP = 62 0B 80 02 <size> 82 01 01 83 02 <fid>,
                          so 61 0D then GET RESPONSE 00 C0 00 00 0D)
     E0 L
       A0 L
         82 0F  00 01 00 00  D2 50 00 00 02 56 49 54 41 4C 45
         82 12  00 02 00 00  D2 50 00 00 02 4D 46 5F 56 49 54 41 4C 45
       80 0C  "CARTE   "  00 01  20 02          (card data, > 256 bytes)
       80 0C  "BENEF 01"  00 01  20 04          (beneficiary 1 = the holder)
       80 0C  "BENEF 02"  00 01  20 05          (beneficiary 2)
       80 0C  "BENEF 03"  00 01  20 06          (... one EF per beneficiary,
                                                 EF ids 2004 + n - 1)
     In an 82 value: bytes 0-1 entry id, 2-3 reserved (00 00), 4.. the AID.
     In an 80 value: bytes 0-7 name (printable, space padded), 8-9 the entry
     id of the application, 10-11 the EF id.  The pointer file does not list
     MF_VITALE's EFs (2F00, 2F02): they are fixed, as cardpeek assumes too.
  EF 2002 "CARTE" (364 bytes: READ BINARY at 0 (Le 00), at 256 -> 6C 6C, Le 6C)
     66 0A  80 08 "YYYYMMDD"                       start of validity
     7F21 82 01 5B                                 certificate
        42 08 "FRCAVIT1"                           (CA reference)
        5F20 0C "VITALE<serial 6 last digits>"     (holder reference)
        5F37 82 01 00 <256 bytes>                  signature (not a real one)
        5F38 3A <58 bytes>                         public key remainder
  EF 2004, 2005, ... one beneficiary each:
     65 L
        80 L surname        (printable ASCII, upper case)
        81 L given name
        82 08 birth date    (ASCII YYYYMMDD)
        [DF01 01 <rank>]    (beneficiary 2 of the default holders carries this
                             two-byte unknown tag: parsers must skip it)
        90 L nationality    (ASCII, e.g. "FRA")
        93 0F NIR           (15 ASCII chars: 13 + key; Corsica as 2A / 2B)
  card-args: holders=FILE.json (see below), efsize=N (pad every EF of VITALE
  except 2001 with padbyte=00|FF up to N bytes), short=1 (see above).

Application MF_VITALE  AID D2 50 00 00 02 4D 46 5F 56 49 54 41 4C 45 (entry 00 02)
  EF 2F00 DIR:  61 0F 4F 0B <VITALE AID> 50 00 ... (ISO 7816-4 EF.DIR records:
                61 { 4F AID, 50 label } for VITALE and MF_VITALE)
  EF 2F02 PAN:  5A 0A <card serial number, 20 digits BCD>

MF (SELECT 00 A4 00 00 02 3F 00) exists and holds no EF.

Holders file (JSON): either a list of beneficiaries or
  {"card": {"start": "YYYYMMDD", "serial": "20 digits"},
   "beneficiaries": [{"surname": .., "given_name": .., "birth_date": "YYYYMMDD",
                      "nationality": "FRA", "nir": "13 or 15 chars",
                      "nir_raw": "served as is, no key check",
                      "extra": "hex bytes appended inside 65"}, ...]}
A 13-char NIR gets its key computed; a 15-char one must carry a valid key.
The default holders are three fictitious beneficiaries (DEFAULT_HOLDERS below),
the second with a Corsican (2A) NIR.

----------------------------------------------------------------------------
Other cards
----------------------------------------------------------------------------
vitale1    ATR 3F 65 25 00 2C 09 69 90 00 (inverse convention as the reader
           reports it: TS = 3F).  SELECT -> 6A 82, anything else -> 6D 00.
cps        ATR 3B 7D 18 00 00 00 31 80 71 8E 64 86 D6 01 00 81 90 00 (the
           brief's Oberthur-style CPS3 contact ATR; it is not verbatim in
           pcsc-tools' list).  atr=cps2 gives 3B AC 00 40 2A 00 12 25 00 64 80
           00 03 10 00 90 00, listed there as "Sesam Vitale card CPS".
           VERIFY        00 20 00 <ref> 08 <PIN block>   ref default 01 (ref=)
             PIN block: the PIN's ASCII digits, padded with FF to 8 bytes
             ("1234" -> 31 32 33 34 FF FF FF FF).  Right -> 90 00 (counter
             back to 3).  Wrong -> 63 C2, 63 C1, 63 C0; then blocked: every
             VERIFY -> 69 83 (blocksw=6983 answers the third wrong one with
             69 83 instead of 63 C0).  Lc other than 8 -> 67 00.
           VERIFY without data (00 20 00 <ref>, or P3 = 00): 63 Cx tries left,
             90 00 if already verified since power-on, 69 83 when blocked.
           RESET RETRY COUNTER 00 2C 00 <ref> 10 <unblock code 8 ASCII digits>
             <new PIN block 8 bytes> -> 90 00, PIN replaced, counter 3.
             00 2C 01 <ref> 08 <unblock code> -> 90 00, counter 3, PIN kept.
             Wrong code -> 63 Cx (x of 10 tries of the code left, pukTries=),
             then 69 83.  Bad new PIN block -> 6A 80.
           Wrong ref -> 6A 88.  SELECT -> 6A 82.  card-args pin=1234,
           puk=12345678, tries=3.  State lives in the card instance: a power
           cycle drops "verified" only; cardhost "reinsert" keeps the counters.
unknown    ATR 3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A
           (a PC/SC part 3 storage-card pseudo-ATR).  SELECT -> 6A 82, else 6D 00.
phone      ATR 3B 80 80 01 01 (contactless ISO 14443-4 pseudo-ATR).  APDUs go
           to PhoneApplet().apdu(cmd) from tests/world/phone_applet.py
           (card-arg applet=PATH loads another file; the other card-args are
           passed to PhoneApplet(**args) as strings).

Hostile cards (all serve the Vitale 2 layout above unless said):
endless61  GET RESPONSE Le=n always answers n bytes + 61 n (forever; Le=00
           gives 256 bytes + 61 00).  mode=empty answers a bare 61 10.
pingpong6c READ BINARY Le=n answers 6C m with m != n, forever.  at=select
           does the same to GET RESPONSE after a SELECT.
tlvoverrun where=benef (default): beneficiary 1's 65 claims 40 bytes more
           than the EF holds; beneficiary 2's 93 runs past the end of its 65;
           beneficiary 3's 65 has length 84 FF FF FF F0.  where=pointer: the
           pointer file's E0 claims 200 bytes more than the file; where=inner:
           an 82 inside A0 runs past the end of A0.  where=all: all of these.
huge       beneficiary 1's surname (80) is 10240 bytes (size=N), the EF is
           served in 256-byte steps (41 READ BINARY).
deepnest   beneficiary 1 is 65 { A1 { A1 { ... 80 04 "DEEP" } } } with 200
           nested A1 (depth=N); its EF is over 256 bytes.
silent     answers the ATR but never an APDU (after=N: answers N first);
           keeps the connection open.  The reader (and pcscd's slot) hangs
           until the card is removed.
vanish     answers N APDUs (after=N, default 3) then closes the connection:
           removal between two APDUs.
badatr     ATR 3F FF FF FF: claims inverse convention and announces TA1, TB1,
           TC1, TD1 and 15 historical bytes, but ends there.
wrongconv  ATR 3F 75 13 00 00 47 09 EA 90 00: TS says inverse convention but
           the rest is a direct-convention Vitale 2 ATR.
"""

import hashlib
import importlib.util
import json
import atexit
import shutil
import tempfile
import os
import sys

# --------------------------------------------------------------------------
# helpers

SW_OK = b"\x90\x00"


def sw(code):
    return bytes(((code >> 8) & 0xFF, code & 0xFF))


def hexb(text):
    """'3B 75 13' or '3b7513' -> bytes."""
    return bytes.fromhex(text.replace(" ", "").replace(":", ""))


def ber_len(n):
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag, value):
    """tag: int (multi-byte tags as one int, e.g. 0x7F21) or bytes."""
    if isinstance(tag, int):
        tag = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    return tag + ber_len(len(value)) + value


def nir_key(nir13):
    """Key of a 13-character NIR (Corsica: 2A -> 19, 2B -> 18)."""
    s = nir13.upper()
    if len(s) != 13:
        raise ValueError("NIR body must be 13 characters")
    dept = s[5:7]
    if dept == "2A":
        s = s[:5] + "19" + s[7:]
    elif dept == "2B":
        s = s[:5] + "18" + s[7:]
    if not s.isdigit():
        raise ValueError("NIR body must be digits (2A/2B allowed in 6-7)")
    return "%02d" % (97 - int(s) % 97)


def nir_full(nir):
    nir = nir.replace(" ", "").upper()
    if len(nir) == 13:
        return nir + nir_key(nir)
    if len(nir) == 15:
        if nir_key(nir[:13]) != nir[13:]:
            raise ValueError("NIR key does not match (use nir_raw to serve it anyway)")
        return nir
    raise ValueError("NIR must be 13 or 15 characters")


def _pseudo(seed, n):
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        i += 1
    return out[:n]


def _flag(v):
    return str(v).lower() in ("1", "yes", "true", "on")


class NoAnswer(Exception):
    """Raised by apdu(): the host must not answer (silent card)."""


class Apdu:
    """A short command APDU as a T=0 card receives it (see module doc)."""

    __slots__ = ("cla", "ins", "p1", "p2", "data", "le", "p3", "ok")

    def __init__(self, cmd):
        self.ok = len(cmd) >= 4
        self.data = b""
        self.le = None      # None: no Le; 0 means 256
        self.p3 = None
        if not self.ok:
            self.cla = self.ins = self.p1 = self.p2 = 0
            return
        self.cla, self.ins, self.p1, self.p2 = cmd[0], cmd[1], cmd[2], cmd[3]
        if len(cmd) == 4:
            return
        self.p3 = cmd[4]
        if len(cmd) == 5:
            self.le = cmd[4]
            return
        lc = cmd[4]
        if lc == 0:
            self.ok = False      # extended length: not supported
            return
        if len(cmd) == 5 + lc:
            self.data = bytes(cmd[5:])
        elif len(cmd) == 6 + lc:
            self.data = bytes(cmd[5:5 + lc])
            self.le = cmd[-1]
        else:
            self.ok = False

    @property
    def ne(self):
        """Expected length, T=0 style: absent or 00 means 256."""
        return 256 if not self.le else self.le


# --------------------------------------------------------------------------
# base classes


class Card:
    name = "card"
    atr = b""

    def __init__(self, **args):
        self.args = args
        self.vanish_now = False
        if "atr" in args:
            try:
                self.atr = hexb(args["atr"])
            except ValueError:
                raise ValueError("%s: atr=%r is not hex" % (self.name, args["atr"]))

    def power(self, on):
        self.reset()

    def reset(self):
        pass

    def apdu(self, cmd):
        raise NotImplementedError


class SimpleCard(Card):
    """Recognised or not, but nothing readable: SELECT -> 6A 82, else 6D 00."""

    def apdu(self, cmd):
        a = Apdu(cmd)
        if not a.ok:
            return sw(0x6700)
        if a.ins == 0xA4:
            return sw(0x6A82)
        return sw(0x6D00)


class IsoFsCard(Card):
    """A T=0 card with applications (by AID) holding transparent EFs."""

    def __init__(self, **args):
        super().__init__(**args)
        self.apps = {}          # AID bytes -> {fid int: bytes}
        self.mf_efs = {}
        self.short = _flag(args.get("short", "0"))
        self.reset()

    def reset(self):
        self.cur_app = None     # None = MF
        self.cur_ef = None      # fid
        self.pending = None     # bytes waiting for GET RESPONSE

    # -- helpers
    def efs(self):
        return self.mf_efs if self.cur_app is None else self.apps[self.cur_app]

    def ef_data(self):
        if self.cur_ef is None:
            return None
        return self.efs().get(self.cur_ef)

    def respond_61(self, data):
        """T=0: data for a case 3/4 command waits for GET RESPONSE."""
        if not data:
            return SW_OK
        self.pending = data
        return bytes((0x61, len(data) & 0xFF))

    # -- dispatch
    def apdu(self, cmd):
        a = Apdu(cmd)
        pending, self.pending = self.pending, None
        if not a.ok:
            return sw(0x6700)
        if a.cla != 0x00:
            return sw(0x6E00)
        if a.ins == 0xC0:
            return self.get_response(a, pending)
        if a.ins == 0xA4:
            return self.select(a)
        if a.ins == 0xB0:
            return self.read_binary(a)
        return self.other(a)

    def other(self, a):
        return sw(0x6D00)

    def get_response(self, a, pending):
        if a.p1 != 0 or a.p2 != 0:
            if pending is not None:
                self.pending = pending
            return sw(0x6A86)
        if pending is None:
            return sw(0x6985)
        ne = a.ne
        if ne > len(pending):
            self.pending = pending
            return bytes((0x6C, len(pending) & 0xFF))
        out, rest = pending[:ne], pending[ne:]
        if rest:
            self.pending = rest
            return out + bytes((0x61, len(rest) & 0xFF))
        return out + SW_OK

    def fcp(self, fid, data):
        return tlv(0x62, tlv(0x80, len(data).to_bytes(2, "big")) +
                   tlv(0x82, b"\x01") + tlv(0x83, fid.to_bytes(2, "big")))

    def select(self, a):
        nodata = (a.p2 & 0x0C) == 0x0C
        if a.p2 not in (0x00, 0x04, 0x0C):
            return sw(0x6A86)
        if a.p1 == 0x04:                       # by DF name (AID)
            if a.data not in self.apps:
                return sw(0x6A82)
            self.cur_app, self.cur_ef = a.data, None
            fci = tlv(0x6F, tlv(0x84, a.data))
            return SW_OK if nodata else self.respond_61(fci)
        if a.p1 in (0x00, 0x02):               # by file id
            if len(a.data) != 2:
                return sw(0x6700) if a.data else sw(0x6A86)
            fid = int.from_bytes(a.data, "big")
            if fid == 0x3F00 and a.p1 == 0x00:
                self.cur_app, self.cur_ef = None, None
                fci = tlv(0x62, tlv(0x82, b"\x38") + tlv(0x83, b"\x3F\x00"))
                return SW_OK if nodata else self.respond_61(fci)
            efs = self.efs()
            if fid not in efs:
                return sw(0x6A82)
            self.cur_ef = fid
            return SW_OK if nodata else self.respond_61(self.fcp(fid, efs[fid]))
        return sw(0x6A86)

    def read_binary(self, a):
        if a.data:
            return sw(0x6700)
        if a.p1 & 0x80:
            sfi = a.p1 & 0x1F
            found = [fid for fid in self.efs() if (fid & 0x1F) == sfi and sfi]
            if not found or a.p1 & 0x60:
                return sw(0x6A82)
            self.cur_ef = found[0]
            offset = a.p2
        else:
            offset = ((a.p1 & 0x7F) << 8) | a.p2
        data = self.ef_data()
        if data is None:
            return sw(0x6986)
        return self.serve_binary(a, data, offset)

    def serve_binary(self, a, data, offset):
        if offset >= len(data):
            return sw(0x6B00)
        left = len(data) - offset
        ne = a.ne
        if left >= ne:
            return data[offset:offset + ne] + SW_OK
        if self.short:
            return data[offset:] + SW_OK
        return bytes((0x6C, left))


# --------------------------------------------------------------------------
# Vitale 2

AID_VITALE = hexb("D2 50 00 00 02 56 49 54 41 4C 45")
AID_MF_VITALE = hexb("D2 50 00 00 02 4D 46 5F 56 49 54 41 4C 45")
VITALE2_ATR = hexb("3B 75 13 00 00 47 09 EA 90 00")

DEFAULT_HOLDERS = {
    "card": {"start": "20230115", "serial": "25012345678901234567"},
    "beneficiaries": [
        {"surname": "DUPONT", "given_name": "MARIE-CLAIRE",
         "birth_date": "19800514", "nationality": "FRA",
         "nir": "2800575056123"},
        {"surname": "DUPONT", "given_name": "LUCAS",
         "birth_date": "20120302", "nationality": "FRA",
         "nir": "112032A004017", "extra": "DF010132"},
        {"surname": "MARTIN", "given_name": "CHLOE",
         "birth_date": "20151130", "nationality": "FRA",
         "nir": "2151113055123"},
    ],
}


def load_holders(path=None):
    if not path:
        return json.loads(json.dumps(DEFAULT_HOLDERS))
    with open(path, encoding="utf-8") as f:
        h = json.load(f)
    if isinstance(h, list):
        h = {"beneficiaries": h}
    card = dict(DEFAULT_HOLDERS["card"])
    card.update(h.get("card", {}))
    h["card"] = card
    h.setdefault("beneficiaries", [])
    return h


def beneficiary_tlv(b):
    def asc(s):
        return s.encode("ascii")
    body = tlv(0x80, asc(b["surname"])) + tlv(0x81, asc(b["given_name"]))
    body += tlv(0x82, asc(b["birth_date"]))
    extra = hexb(b.get("extra", ""))
    body += extra
    if b.get("nationality"):
        body += tlv(0x90, asc(b["nationality"]))
    if "nir_raw" in b:
        body += tlv(0x93, asc(b["nir_raw"]))
    elif b.get("nir"):
        body += tlv(0x93, asc(nir_full(b["nir"])))
    return tlv(0x65, body)


def bcd(digits):
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


class Vitale2(IsoFsCard):
    name = "vitale2"
    atr = VITALE2_ATR

    def __init__(self, **args):
        atr = bytearray(VITALE2_ATR)
        if "gen" in args:
            atr[5] = 0x40 | (int(args["gen"], 16) & 0x0F)
        if _flag(args.get("fa", "0")):
            atr[7] = 0xFA
        self.atr = bytes(atr)
        super().__init__(**args)
        self.holders = load_holders(args.get("holders"))
        self.build()

    # layout pieces, overridable by hostile cards
    def card_ef(self):
        c = self.holders["card"]
        serial = c["serial"]
        seed = ("vitale2:" + serial).encode()
        cert = (tlv(0x42, b"FRCAVIT1") +
                tlv(0x5F20, ("VITALE" + serial[-6:]).encode()) +
                tlv(0x5F37, _pseudo(seed + b"sig", 256)) +
                tlv(0x5F38, _pseudo(seed + b"rem", 58)))
        return tlv(0x66, tlv(0x80, c["start"].encode())) + tlv(0x7F21, cert)

    def beneficiary_efs(self):
        return [beneficiary_tlv(b) for b in self.holders["beneficiaries"]]

    def pointer(self, files):
        apps = (tlv(0x82, b"\x00\x01\x00\x00" + AID_VITALE) +
                tlv(0x82, b"\x00\x02\x00\x00" + AID_MF_VITALE))
        body = tlv(0xA0, apps)
        for name, fid in files:
            body += tlv(0x80, name.ljust(8)[:8].encode() + b"\x00\x01" +
                        fid.to_bytes(2, "big"))
        return tlv(0xE0, body)

    def build(self):
        efs = {0x2002: self.card_ef()}
        files = [("CARTE", 0x2002)]
        for i, data in enumerate(self.beneficiary_efs()):
            efs[0x2004 + i] = data
            files.append(("BENEF %02d" % (i + 1), 0x2004 + i))
        size = int(self.args.get("efsize", "0"))
        pad = hexb(self.args.get("padbyte", "00"))[:1] or b"\x00"
        for fid in efs:
            if len(efs[fid]) < size:
                efs[fid] = efs[fid] + pad * (size - len(efs[fid]))
        efs[0x2001] = self.pointer(files)
        self.apps[AID_VITALE] = efs
        serial = self.holders["card"]["serial"]
        dirdata = (tlv(0x61, tlv(0x4F, AID_VITALE) + tlv(0x50, b"VITALE")) +
                   tlv(0x61, tlv(0x4F, AID_MF_VITALE) + tlv(0x50, b"MF_VITALE")))
        self.apps[AID_MF_VITALE] = {0x2F00: dirdata,
                                    0x2F02: tlv(0x5A, bcd(serial))}
        if _flag(self.args.get("noserial", "0")):
            del self.apps[AID_MF_VITALE][0x2F02]  # issue 11, 18: a card without EF 2F02


class Vitale1(SimpleCard):
    name = "vitale1"
    atr = hexb("3F 65 25 00 2C 09 69 90 00")


class Unknown(SimpleCard):
    name = "unknown"
    atr = hexb("3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A")


# --------------------------------------------------------------------------
# CPS-like practitioner card


class Cps(Card):
    name = "cps"
    atr = hexb("3B 7D 18 00 00 00 31 80 71 8E 64 86 D6 01 00 81 90 00")
    ATR_CPS2 = hexb("3B AC 00 40 2A 00 12 25 00 64 80 00 03 10 00 90 00")

    def __init__(self, **args):
        if args.get("atr") == "cps2":
            self.atr = self.ATR_CPS2
            args = dict(args)
            del args["atr"]
        super().__init__(**args)
        self.pin = self.pin_block(args.get("pin", "1234"))
        if self.pin is None:
            raise ValueError("cps: pin must be 4 to 8 digits")
        self.puk = args.get("puk", "12345678").encode("ascii")
        if len(self.puk) != 8 or not self.puk.isdigit():
            raise ValueError("cps: puk must be 8 digits")
        self.ref = int(args.get("ref", "01"), 16)
        self.max_tries = int(args.get("tries", "3"))
        self.max_puk = int(args.get("pukTries", args.get("puktries", "10")))
        self.block_sw = args.get("blocksw", "63c0").lower()
        self.tries = self.max_tries
        self.puk_tries = self.max_puk
        self.verified = False

    @staticmethod
    def pin_block(pin):
        if isinstance(pin, str):
            pin = pin.encode("ascii")
        if not (4 <= len(pin) <= 8) or not pin.isdigit():
            return None
        return pin + b"\xFF" * (8 - len(pin))

    @staticmethod
    def valid_block(block):
        digits = block.rstrip(b"\xFF")
        return len(block) == 8 and 4 <= len(digits) <= 8 and digits.isdigit()

    def reset(self):
        self.verified = False

    def apdu(self, cmd):
        a = Apdu(cmd)
        if not a.ok:
            return sw(0x6700)
        if a.cla != 0x00:
            return sw(0x6E00)
        if a.ins == 0x20:
            return self.verify(a)
        if a.ins == 0x2C:
            return self.reset_retry(a)
        if a.ins == 0xA4:
            return sw(0x6A82)
        return sw(0x6D00)

    def verify(self, a):
        if a.p1 != 0x00:
            return sw(0x6A86)
        if a.p2 != self.ref:
            return sw(0x6A88)
        if not a.data:                       # tries-left query
            if self.tries == 0:
                return sw(0x6983)
            if self.verified:
                return SW_OK
            return sw(0x63C0 | self.tries)
        if len(a.data) != 8:
            return sw(0x6700)
        if self.tries == 0:
            return sw(0x6983)
        if a.data == self.pin:
            self.tries = self.max_tries
            self.verified = True
            return SW_OK
        self.verified = False
        self.tries -= 1
        if self.tries == 0 and self.block_sw == "6983":
            return sw(0x6983)
        return sw(0x63C0 | self.tries)

    def reset_retry(self, a):
        if a.p2 != self.ref:
            return sw(0x6A88)
        if a.p1 == 0x00:
            if len(a.data) != 16:
                return sw(0x6700)
            code, new = a.data[:8], a.data[8:]
        elif a.p1 == 0x01:
            if len(a.data) != 8:
                return sw(0x6700)
            code, new = a.data, None
        else:
            return sw(0x6A86)
        if self.puk_tries == 0:
            return sw(0x6983)
        if code != self.puk:
            self.puk_tries -= 1
            if self.puk_tries == 0:
                return sw(0x6983)
            return sw(0x63C0 | min(self.puk_tries, 15))
        if new is not None and not self.valid_block(new):
            return sw(0x6A80)
        self.puk_tries = self.max_puk
        self.tries = self.max_tries
        if new is not None:
            self.pin = bytes(new)
        return SW_OK


# --------------------------------------------------------------------------
# phone (contactless) -- delegates to tests/world/phone_applet.py


def _typed(v):
    """A card-arg string as the phone knob's type: bool, int, float or text."""
    if not isinstance(v, str):
        return v
    if v.lower() in ("true", "yes"):
        return True
    if v.lower() in ("false", "no"):
        return False
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


class Phone(Card):
    name = "phone"
    atr = hexb("3B 80 80 01 01")

    def __init__(self, **args):
        args = dict(args)
        path = args.pop("applet", None) or os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "phone_applet.py")
        atr = args.pop("atr", None)
        super().__init__()
        if atr:
            self.atr = hexb(atr)
        if not os.path.exists(path):
            raise RuntimeError("card 'phone' needs %s (class PhoneApplet with "
                               ".apdu(bytes) -> bytes); it is not there" % path)
        spec = importlib.util.spec_from_file_location("phone_applet", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not hasattr(mod, "PhoneApplet"):
            raise RuntimeError("%s has no class PhoneApplet" % path)
        if hasattr(mod, "make_phone"):
            # the real applet: a test credential issued into a temp dir
            # (card-args arrive as strings; turn them into the knobs' types)
            tmpdir = args.pop("tmpdir", None)
            if not tmpdir:
                tmpdir = tempfile.mkdtemp(prefix="vitaled-phone-")
                atexit.register(shutil.rmtree, tmpdir, True)
            self.applet = mod.make_phone(tmpdir, **{k: _typed(v) for k, v in args.items()})
        else:
            self.applet = mod.PhoneApplet(**args) if args else mod.PhoneApplet()

    def power(self, on):
        hook = getattr(self.applet, "power", None)
        if hook:
            hook(on)

    def reset(self):
        hook = getattr(self.applet, "reset", None)
        if hook:
            hook()

    def apdu(self, cmd):
        r = bytes(self.applet.apdu(bytes(cmd)))
        if getattr(self.applet, "gone", False):
            # vanish_after: the phone leaves the field after this answer,
            # as pn532emu.py does on NFC (the host closes the connection)
            self.vanish_now = True
        return r


# --------------------------------------------------------------------------
# hostile cards


class Endless61(Vitale2):
    name = "endless61"

    def get_response(self, a, pending):
        if a.p1 or a.p2:
            return sw(0x6A86)
        if self.args.get("mode") == "empty":
            return b"\x61\x10"
        n = a.ne
        return bytes((0xA5,)) * n + bytes((0x61, n & 0xFF))


class PingPong6C(Vitale2):
    name = "pingpong6c"

    @staticmethod
    def other_le(ne):
        m = (ne % 255) + 1          # never equal to ne (1..255, 256 -> 2)
        return m if m != ne else m + 1

    def serve_binary(self, a, data, offset):
        if offset >= len(data):
            return sw(0x6B00)
        return bytes((0x6C, self.other_le(a.ne) & 0xFF))

    def get_response(self, a, pending):
        if self.args.get("at") == "select" and pending is not None:
            self.pending = pending
            return bytes((0x6C, self.other_le(a.ne) & 0xFF))
        return super().get_response(a, pending)


class TlvOverrun(Vitale2):
    name = "tlvoverrun"

    def where(self):
        w = self.args.get("where", "benef")
        return {"benef", "pointer", "inner"} if w == "all" else {w}

    def beneficiary_efs(self):
        efs = super().beneficiary_efs()
        if "benef" not in self.where():
            return efs
        out = []
        for i, ef in enumerate(efs):
            if i == 0:      # 65 claims 40 more bytes than there are
                body = _tlv_value(ef)
                out.append(b"\x65" + ber_len(len(body) + 40) + body)
            elif i == 1:    # inner 93 runs past the end of 65
                body = _tlv_value(ef)
                pos = body.find(b"\x93\x0F")
                if pos < 0:
                    body += b"\x93\x0F"
                    pos = len(body) - 2
                body = body[:pos] + b"\x93\x7F" + body[pos + 2:]
                out.append(tlv(0x65, body))
            else:           # 4-byte length near 2^32 (overflow bait)
                body = _tlv_value(ef)
                out.append(b"\x65\x84\xFF\xFF\xFF\xF0" + body)
        return out

    def pointer(self, files):
        p = super().pointer(files)
        w = self.where()
        if "inner" in w:
            body = _tlv_value(p)
            a0 = _tlv_value(body)
            rest = body[len(tlv(0xA0, a0)):]
            # first 82 claims 0x30 bytes (more than A0 holds)
            a0 = b"\x82\x30" + a0[2:]
            p = tlv(0xE0, tlv(0xA0, a0) + rest)
        if "pointer" in w:
            body = _tlv_value(p)
            p = b"\xE0" + ber_len(len(body) + 200) + body
        return p


def _tlv_value(data):
    """Value of the first (well-formed) TLV in data; single-byte tag only."""
    i = 1
    if data[0] & 0x1F == 0x1F:
        i += 1
        while data[i - 1] & 0x80:
            i += 1
    n = data[i]
    i += 1
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    return data[i:i + n]


class Huge(Vitale2):
    name = "huge"

    def beneficiary_efs(self):
        efs = super().beneficiary_efs()
        b = dict(self.holders["beneficiaries"][0]) if self.holders["beneficiaries"] \
            else dict(DEFAULT_HOLDERS["beneficiaries"][0])
        b["surname"] = "A" * int(self.args.get("size", "10240"))
        return [beneficiary_tlv(b)] + efs[1:]


class DeepNest(Vitale2):
    name = "deepnest"

    def beneficiary_efs(self):
        efs = super().beneficiary_efs()
        inner = tlv(0x80, b"DEEP")
        for _ in range(int(self.args.get("depth", "200"))):
            inner = tlv(0xA1, inner)
        return [tlv(0x65, inner)] + efs[1:]


class Silent(Vitale2):
    name = "silent"

    def __init__(self, **args):
        super().__init__(**args)
        self.left = int(args.get("after", "0"))

    def apdu(self, cmd):
        if self.left <= 0:
            raise NoAnswer()
        self.left -= 1
        return super().apdu(cmd)


class Vanish(Vitale2):
    name = "vanish"

    def __init__(self, **args):
        super().__init__(**args)
        self.left = int(args.get("after", "3"))

    def apdu(self, cmd):
        r = super().apdu(cmd)
        self.left -= 1
        if self.left <= 0:
            self.vanish_now = True
        return r


class BadAtr(Vitale2):
    name = "badatr"

    def __init__(self, **args):
        super().__init__(**args)
        self.atr = hexb(args.get("atr", "3F FF FF FF"))


class WrongConv(Vitale2):
    name = "wrongconv"

    def __init__(self, **args):
        super().__init__(**args)
        self.atr = b"\x3F" + VITALE2_ATR[1:]


CARDS = {c.name: c for c in (Vitale2, Vitale1, Cps, Unknown, Phone, Endless61,
                             PingPong6C, TlvOverrun, Huge, DeepNest, Silent,
                             Vanish, BadAtr, WrongConv)}
HOSTILE = ("endless61", "pingpong6c", "tlvoverrun", "huge", "deepnest",
           "silent", "vanish", "badatr", "wrongconv")


def make_card(name, **args):
    try:
        cls = CARDS[name]
    except KeyError:
        raise ValueError("unknown card %r (known: %s)" % (name, " ".join(sorted(CARDS))))
    return cls(**args)


def parse_card_args(items):
    """['k=v', ...] -> dict."""
    out = {}
    for it in items or ():
        if "=" not in it:
            raise ValueError("card-arg %r is not k=v" % it)
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


if __name__ == "__main__":
    # Dump a card's layout (no identity data: sizes only) -- a debugging aid.
    card = make_card(sys.argv[1] if len(sys.argv) > 1 else "vitale2",
                     **parse_card_args(sys.argv[2:]))
    print("atr", card.atr.hex(" ").upper())
    for aid, efs in getattr(card, "apps", {}).items():
        print("app", aid.hex().upper())
        for fid, data in sorted(efs.items()):
            print("  ef %04X size %d" % (fid, len(data)))
