#!/usr/bin/python3
"""The phone side of the vitaled digital card (docs/digital-card.md), for tests.

PhoneApplet answers command APDUs as a phone's host card emulation would: SELECT,
GET CREDENTIAL, AUTHENTICATE (with 63 00 while the code is "being entered"),
GET RESPONSE and 61xx chaining (§2-§5). The transport hosts call it:
tests/world/pn532emu.py (libnfc) and the PC/SC card host (vpcd), which does
`from phone_applet import PhoneApplet`. Keep the constructor's signature stable.

    applet = PhoneApplet(credential_bytes, device_key, **behaviour)
    rapdu = applet.apdu(capdu)      # bytes in, bytes out (data + SW1 SW2)
    applet.reset()                  # field lost / new ISO-DEP session
    applet.gone                     # True once vanish_after APDUs were answered:
                                    # the host must then drop the phone from the field

Behaviour knobs (defaults are a good phone):
    code="accept"|"refuse"|"block"  result of the code entry
    pending_s=0.0          answer 63 00 to AUTHENTICATE until this long after the
                           first AUTHENTICATE of the session
    sign_other_nonce=False sign a different nonce (a replayed answer)
    uv=False               the answer says uv: false
    huge=0                 pad the credential to this many bytes (over the limit)
    vanish_after=0         after this many APDUs, set .gone (0: never)
    bad_issuer_sig=False   corrupt the issuer's signature on the credential
    chunk=256              never send more than this many bytes per response part
    version=1              "v" in the SELECT answer
    no_applet=False        answer SELECT with 6A 82, as a phone without the app

make_phone(tmpdir, **knobs) builds a test issuer and credential in tmpdir (or
reuses them) and returns a PhoneApplet. It also takes the credential knobs of
issuer.make_credential: issuer=, expired=, not_yet_valid=, holder=.
"""

import hashlib
import json
import os
import secrets
import sys
import time

import cbor2
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issuer as _issuer  # noqa: E402  (test issuer: CBOR/COSE encoder, credentials)

AID = bytes.fromhex("F0564954414C454401")

SW_OK = b"\x90\x00"
SW_PENDING = b"\x63\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_REFUSED = b"\x69\x82"
SW_BLOCKED = b"\x69\x83"
SW_CONDITIONS = b"\x69\x85"
SW_WRONG_DATA = b"\x6a\x80"
SW_NOT_FOUND = b"\x6a\x82"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_INS = b"\x6d\x00"
SW_CLA = b"\x6e\x00"

# (CLA, INS) -> handler name (docs/digital-card.md §4)
COMMANDS = {
    (0x00, 0xA4): "_select",
    (0x00, 0xC0): "_get_response",
    (0x80, 0xCA): "_get_credential",
    (0x80, 0x88): "_authenticate",
}

KNOBS = {
    "code": "accept", "pending_s": 0.0, "sign_other_nonce": False, "uv": True,
    "huge": 0, "vanish_after": 0, "bad_issuer_sig": False, "chunk": 256,
    "version": 1, "no_applet": False,
}
CREDENTIAL_KNOBS = ("issuer", "expired", "not_yet_valid", "holder")


class _Reject(Exception):
    def __init__(self, sw):
        super().__init__(sw.hex())
        self.sw = sw


def _parse(cmd):
    """ISO 7816-4 short APDU -> (cla, ins, p1, p2, data or None, ne or None).
    A missing Le reads as 256 (docs/digital-card.md §2.2)."""
    if len(cmd) < 4:
        raise _Reject(SW_WRONG_LENGTH)
    cla, ins, p1, p2 = cmd[:4]
    body = cmd[4:]
    if not body:
        return cla, ins, p1, p2, None, None                    # case 1
    if len(body) == 1:
        return cla, ins, p1, p2, None, body[0] or 256          # case 2
    lc = body[0]
    if lc == 0:
        raise _Reject(SW_WRONG_LENGTH)                          # extended length
    if len(body) == 1 + lc:
        return cla, ins, p1, p2, bytes(body[1:]), 256           # case 3
    if len(body) == 2 + lc:
        return cla, ins, p1, p2, bytes(body[1:1 + lc]), body[-1] or 256   # case 4
    raise _Reject(SW_WRONG_LENGTH)


class PhoneApplet:
    def __init__(self, credential_bytes, device_key, **behaviour):
        unknown = set(behaviour) - set(KNOBS)
        if unknown:
            raise TypeError("unknown PhoneApplet knobs: %s" % ", ".join(sorted(unknown)))
        self.knobs = dict(KNOBS, **behaviour)
        if self.knobs["code"] not in ("accept", "refuse", "block"):
            raise ValueError("code must be accept, refuse or block")
        if isinstance(device_key, (bytes, str)):
            device_key = serialization.load_pem_private_key(
                device_key.encode() if isinstance(device_key, str) else device_key, None)
        self.device_key = device_key
        self.cid = cbor2.loads(cbor2.loads(credential_bytes).value[2])["cid"]
        self.credential = self._shape_credential(bytes(credential_bytes))
        self.apdu_count = 0
        self.code_blocked = False          # survives reset(): it is the phone's state
        self.reset()

    def _shape_credential(self, cred):
        k = self.knobs
        if k["bad_issuer_sig"]:
            cred = cred[:-1] + bytes([cred[-1] ^ 0x01])        # last byte of the signature
        if k["huge"] and k["huge"] > len(cred):
            # a valid COSE_Sign1 grown by an unprotected "pad" bstr to exactly huge bytes
            prot, unprot, payload, sig = cbor2.loads(cred).value
            unprot = dict(unprot, pad=b"")
            base = len(_issuer.cbor_encode(cbor2.CBORTag(18, [prot, unprot, payload, sig])))
            for head in (1, 2, 3, 5):
                n = k["huge"] - (base - 1) - head
                if n >= 0 and head == (1 if n < 24 else 2 if n < 256 else 3 if n < 65536 else 5):
                    break
            unprot["pad"] = bytes(max(n, 0))
            cred = _issuer.cbor_encode(cbor2.CBORTag(18, [prot, unprot, payload, sig]))
        return cred

    # -- host interface ----------------------------------------------------

    def reset(self):
        """A new ISO-DEP session (field loss, DESELECT, new activation): IDLE."""
        self.selected = False
        self.pending = b""                 # rest of a chained answer
        self.auth_data = None              # data bytes of the current AUTHENTICATE
        self.auth_result = None            # None (pending) or the final R-APDU
        self.auth_started = None           # monotonic time of the first AUTHENTICATE

    @property
    def gone(self):
        n = self.knobs["vanish_after"]
        return bool(n) and self.apdu_count >= n

    def apdu(self, cmd):
        self.apdu_count += 1
        cmd = bytes(cmd)
        try:
            if len(cmd) < 4:
                raise _Reject(SW_WRONG_LENGTH)
            if cmd[0] not in (0x00, 0x80):
                raise _Reject(SW_CLA)
            handler = COMMANDS.get((cmd[0], cmd[1]))
            if handler is None:
                raise _Reject(SW_INS)
            parsed = _parse(cmd)
            if handler != "_get_response":
                self.pending = b""         # §2.3: any other command drops the chain
            return getattr(self, handler)(*parsed[2:])
        except _Reject as r:
            return r.sw

    # -- chaining (§2.3) ---------------------------------------------------

    def _send(self, data, ne, sw=SW_OK):
        part = min(ne, self.knobs["chunk"])
        out, self.pending = data[:part], data[part:]
        if self.pending:
            return out + bytes([0x61, min(len(self.pending), 256) & 0xFF])
        return out + sw

    def _get_response(self, p1, p2, data, ne):
        if data is not None or ne is None:
            raise _Reject(SW_WRONG_LENGTH)
        if (p1, p2) != (0, 0):
            raise _Reject(SW_WRONG_P1P2)
        if not self.selected or not self.pending:
            raise _Reject(SW_CONDITIONS)
        return self._send(self.pending, ne)

    # -- commands (§4) -----------------------------------------------------

    def _select(self, p1, p2, data, ne):
        if data is None:
            raise _Reject(SW_WRONG_LENGTH)
        if (p1, p2) != (0x04, 0x00):
            raise _Reject(SW_WRONG_P1P2)
        if data != AID or self.knobs["no_applet"]:
            self.reset()
            raise _Reject(SW_NOT_FOUND)
        self.reset()
        self.selected = True
        answer = _issuer.cbor_encode({"v": self.knobs["version"], "algs": [-7], "uvm": ["pin"]})
        return self._send(answer, ne)

    def _get_credential(self, p1, p2, data, ne):
        if data is not None or ne is None:
            raise _Reject(SW_WRONG_LENGTH)
        if (p1, p2) != (0, 0):
            raise _Reject(SW_WRONG_P1P2)
        if not self.selected:
            raise _Reject(SW_CONDITIONS)
        return self._send(self.credential, ne)

    def _authenticate(self, p1, p2, data, ne):
        if data is None or ne is None:
            raise _Reject(SW_WRONG_LENGTH)
        if (p1, p2) != (0, 0):
            raise _Reject(SW_WRONG_P1P2)
        if not self.selected:
            raise _Reject(SW_CONDITIONS)
        if self.code_blocked:
            return SW_BLOCKED
        if data != self.auth_data:
            try:
                req = cbor2.loads(data)
            except Exception:
                raise _Reject(SW_WRONG_DATA)
            if not (isinstance(req, dict) and isinstance(req.get("n"), bytes) and len(req["n"]) == 32
                    and isinstance(req.get("t"), str) and isinstance(req.get("ts"), int)
                    and not isinstance(req.get("ts"), bool)):
                raise _Reject(SW_WRONG_DATA)
            self.auth_data, self.auth_result, self.nonce = data, None, req["n"]
            if self.auth_started is None:
                self.auth_started = time.monotonic()
        if self.auth_result is None:
            if time.monotonic() - self.auth_started < self.knobs["pending_s"]:
                return SW_PENDING
            self.auth_result = self._user_verified()
        if self.auth_result in (SW_REFUSED, SW_BLOCKED):
            return self.auth_result
        return self._send(self.auth_result, ne)

    def _user_verified(self):
        code = self.knobs["code"]
        if code == "refuse":
            return SW_REFUSED
        if code == "block":
            self.code_blocked = True
            return SW_BLOCKED
        nonce = secrets.token_bytes(32) if self.knobs["sign_other_nonce"] else self.nonce
        payload = {"n": nonce, "cid": self.cid, "uv": bool(self.knobs["uv"]), "uvm": "pin",
                   "ts": int(time.time())}
        return _issuer.cose_sign1(_issuer.cbor_encode(payload), self.device_key, {})


def make_phone(tmpdir, **knobs):
    """A PhoneApplet with a test credential issued in tmpdir (made once per set of
    credential knobs, then reused: a phone keeps its credential and device key)."""
    cred_knobs = {k: knobs.pop(k) for k in CREDENTIAL_KNOBS if k in knobs}
    tag = hashlib.sha256(json.dumps(cred_knobs, sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(tmpdir, "phone-%s.cbor" % tag)
    if not os.path.exists(path):
        cred, dkey = _issuer.make_credential(tmpdir, **cred_knobs)
        _issuer.write_file(path + ".key.pem", _issuer.device_key_pem(dkey))
        _issuer.write_file(path, cred)
    with open(path, "rb") as f:
        cred = f.read()
    with open(path + ".key.pem", "rb") as f:
        dkey = f.read()
    return PhoneApplet(cred, dkey, **knobs)
