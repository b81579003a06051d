#!/usr/bin/python3
"""Independent terminal-side verifier for the vitaled digital card.

Implements docs/digital-card.md §11 (the checks, in their order) and reports the
first failure by its §12 name. It shares no code with issuer.py or
phone_applet.py: it has its own strict deterministic-CBOR decoder (§6), its own
COSE_Sign1 checks (§7) and its own small certificate path check (RFC 5280 §6
subset: signatures, CA flags, validity, the §10.1 issuer profile), so it can
judge both the test tools and the C code.

    verify_credential.py --anchor ca.pem --credential FILE
                         [--answer FILE (--nonce HEX | --nonce-file FILE)]
                         [--select FILE] [--now EPOCH] [--skew 300] [--eku OID]
                         [--show]

Prints "ok ..." (exit 0) or "fail REASON: detail" (exit 1).
Module use: verify_select(), verify_credential(), verify_answer(); each raises
VerifyError(reason, detail).
"""

import argparse
import datetime
import hmac
import re
import secrets
import sys
import time

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

PURPOSE_OID = "2.999.86.1.1"
MAX_SELECT = 256
MAX_CREDENTIAL = 8192
MAX_ANSWER = 1024
MAX_DEPTH = 8
SKEW = 300
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class VerifyError(Exception):
    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail))
        self.reason = reason
        self.detail = detail


class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


# ---------------------------------------------------------------------------
# Strict decoder: one well-formed item, deterministic (§6), depth-bounded.

class _Strict:
    def __init__(self, data, allow_top_tag18):
        self.d, self.i, self.allow_tag = data, 0, allow_top_tag18

    def fail(self, what):
        raise VerifyError("cbor_malformed", "%s at offset %d" % (what, self.i))

    def take(self, n):
        if self.i + n > len(self.d):
            self.fail("truncated")
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def head(self):
        ib = self.take(1)[0]
        major, ai = ib >> 5, ib & 31
        if ai < 24:
            return major, ai
        if ai > 27:
            self.fail("indefinite length or reserved value")
        size = 1 << (ai - 24)
        n = int.from_bytes(self.take(size), "big")
        if n < (24 if size == 1 else 1 << (4 * size)):
            self.fail("non-shortest head")
        return major, n

    def item(self, depth):
        start = self.i
        if self.i < len(self.d) and self.d[self.i] >> 5 == 7:
            ib = self.take(1)[0]
            if ib in (0xF4, 0xF5):
                return ib == 0xF5
            self.fail("float, null or simple value")
        major, n = self.head()
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            try:
                return self.take(n).decode("utf-8")
            except UnicodeDecodeError:
                self.fail("invalid UTF-8")
        if major in (4, 5, 6) and depth >= MAX_DEPTH:
            self.fail("nesting deeper than %d" % MAX_DEPTH)
        if major == 4:
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            out, last = {}, None
            for _ in range(n):
                ks = self.i
                k = self.item(depth + 1)
                kb = self.d[ks:self.i]
                if last is not None and kb <= last:
                    self.fail("map keys unsorted or repeated")
                if not isinstance(k, (int, str)) or isinstance(k, bool):
                    self.fail("map key of another type than int or text")
                last = kb
                out[k] = self.item(depth + 1)
            return out
        if major == 6:
            if not (self.allow_tag and start == 0 and n == 18):
                self.fail("unexpected tag %d" % n)
            return Tag(n, self.item(depth + 1))
        self.fail("unknown major type")  # not reached: 7 is handled above


def strict_decode(data, allow_top_tag18=False):
    s = _Strict(bytes(data), allow_top_tag18)
    obj = s.item(0)
    if s.i != len(s.d):
        s.fail("trailing bytes")
    return obj


# ---------------------------------------------------------------------------
# COSE_Sign1 (§7)

def _cose_sign1(data, unprotected_empty):
    obj = strict_decode(data, allow_top_tag18=True)
    if not isinstance(obj, Tag) or not isinstance(obj.value, list) or len(obj.value) != 4:
        raise VerifyError("cose_malformed", "not tag 18 around an array of 4")
    prot, unprot, payload, sig = obj.value
    if not (isinstance(prot, bytes) and isinstance(unprot, dict)
            and isinstance(payload, bytes) and isinstance(sig, bytes)):
        raise VerifyError("cose_malformed", "element types")
    phdr = strict_decode(prot)
    if not isinstance(phdr, dict):
        raise VerifyError("cose_malformed", "protected header is not a map")
    if 1 not in phdr:
        raise VerifyError("cose_malformed", "no alg in protected header")
    if phdr[1] != -7 or isinstance(phdr[1], bool):
        raise VerifyError("alg_unsupported", "alg %r" % (phdr[1],))
    if set(phdr) != {1}:
        raise VerifyError("cose_malformed", "other labels in protected header")
    if len(sig) != 64:
        raise VerifyError("cose_malformed", "signature of %d bytes" % len(sig))
    if unprotected_empty and unprot:
        raise VerifyError("cose_malformed", "unprotected header not empty")
    return prot, unprot, payload, sig


def _es256_ok(pub, prot, payload, sig):
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
        return False
    # Sig_structure ["Signature1", protected, h'', payload], deterministic.
    def bstr(b):
        n = len(b)
        if n < 24:
            h = bytes([0x40 | n])
        elif n < 256:
            h = bytes([0x58, n])
        elif n < 65536:
            h = b"\x59" + n.to_bytes(2, "big")
        else:
            h = b"\x5a" + n.to_bytes(4, "big")
        return h + b
    tbs = b"\x84\x6aSignature1" + bstr(prot) + b"\x40" + bstr(payload)
    try:
        pub.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


# ---------------------------------------------------------------------------
# Certificates (§10.1, §11 C.4-C.5)

PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load_anchors(paths):
    """Every certificate of every PEM file (a file may hold several)."""
    out = []
    for p in paths:
        with open(p, "rb") as f:
            out.extend(x509.load_pem_x509_certificate(m) for m in PEM_CERT.findall(f.read()))
    return out


def _sig_ok(cert, issuer):
    pub = issuer.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        return False
    try:
        pub.verify(cert.signature, cert.tbs_certificate_bytes,
                   ec.ECDSA(cert.signature_hash_algorithm))
        return True
    except (InvalidSignature, TypeError, ValueError):
        return False


def _is_ca(cert):
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca and ku.key_cert_sign


def check_chain(chain_der, anchors, now, eku=PURPOSE_OID):
    """Validate x5chain against anchors; returns the issuer's public key."""
    if not anchors:
        raise VerifyError("chain_untrusted", "no trust anchor configured")
    try:
        chain = [x509.load_der_x509_certificate(d) for d in chain_der]
        for c in chain:     # cryptography parses lazily: touch every field now
            (c.subject, c.issuer, c.extensions, c.public_key(), c.signature_hash_algorithm,
             c.not_valid_before, c.not_valid_after, c.tbs_certificate_bytes)
    except Exception as e:  # any parse error of a hostile certificate
        raise VerifyError("chain_untrusted", "certificate does not parse: %s" % e)
    anchor_der = {a.public_bytes(serialization.Encoding.DER): a for a in anchors}
    path, cur, rest = [chain[0]], chain[0], chain[1:]
    while True:
        if cur.public_bytes(serialization.Encoding.DER) in anchor_der:
            break                                   # the chain carries the anchor itself
        nxt = None
        if rest and rest[0].subject == cur.issuer:
            if not _is_ca(rest[0]) or not _sig_ok(cur, rest[0]):
                raise VerifyError("chain_untrusted", "bad intermediate or signature")
            nxt, rest = rest[0], rest[1:]
        else:
            for a in anchors:
                if a.subject == cur.issuer and _sig_ok(cur, a):
                    nxt = a
                    break
            if nxt is None:
                raise VerifyError("chain_untrusted", "no path to a trust anchor")
            path.append(nxt)
            break
        path.append(nxt)
        cur = nxt
        if len(path) > 5:
            raise VerifyError("chain_untrusted", "path too long")
    when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
    for c in path:
        if not (c.not_valid_before <= when <= c.not_valid_after):
            raise VerifyError("chain_expired", "%s valid %s..%s" % (
                c.subject.rfc4514_string(), c.not_valid_before, c.not_valid_after))
    leaf = chain[0]
    pub = leaf.public_key()
    if not (isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"):
        raise VerifyError("issuer_purpose", "issuer key is not EC P-256")
    ext = leaf.extensions
    try:
        if ext.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise VerifyError("issuer_purpose", "issuer certificate is a CA")
    except x509.ExtensionNotFound:
        pass
    try:
        if not ext.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            raise VerifyError("issuer_purpose", "keyUsage without digitalSignature")
        ekus = [o.dotted_string for o in ext.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound as e:
        raise VerifyError("issuer_purpose", "missing extension: %s" % e)
    if eku not in ekus:
        raise VerifyError("issuer_purpose", "EKU %s not in %s" % (eku, ekus))
    return pub


# ---------------------------------------------------------------------------
# Payload checks (§8, §10.3)

# fullmatch everywhere: "$" would also match before a trailing newline
DATE_DIGITS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# §10.3 (the rule of protocol/nir.c, written again here independently):
# sex 1-4 or 7-8; year 2 digits; month 01-12, 20-42 or 50-99; department
# 01-99 or 2A/2B in either case; commune and order 6 digits; key 2 digits
NIR_RE = re.compile(r"[1-478][0-9]{2}(0[1-9]|1[0-2]|2[0-9]|3[0-9]|4[0-2]|[5-9][0-9])"
                    r"(0[1-9]|[1-9][0-9]|2[AaBb])[0-9]{6}[0-9]{2}")


def nir_ok(v):
    if not isinstance(v, str) or not NIR_RE.fullmatch(v):
        return False
    dept = {"2A": "19", "2B": "18"}.get(v[5:7].upper(), v[5:7])
    n = v[:5] + dept + v[7:13]
    return int(v[13:]) == 97 - int(n) % 97


def _calendar_date(v):
    if not isinstance(v, str) or not DATE_DIGITS.fullmatch(v):
        return False
    try:
        time.strptime(v, "%Y-%m-%d")
        return True
    except ValueError:
        return False


def _text(v, lo=1, hi=100):
    """§8: lo..hi bytes of UTF-8, no C0 control character, no DEL."""
    return (isinstance(v, str) and lo <= len(v.encode("utf-8")) <= hi
            and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in v))


def _digits(v, n):
    return isinstance(v, str) and len(v) == n and v.isdigit() and v.isascii()


def _uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _person(m, where):
    bad = []
    if not nir_ok(m.get("nir")):
        bad.append("nir")
    for k in ("surname", "given_name"):
        if not _text(m.get(k)):
            bad.append(k)
    if not (isinstance(m.get("birth_date"), str) and DATE_DIGITS.fullmatch(m["birth_date"])):
        bad.append("birth_date")
    if bad:
        raise VerifyError("payload_invalid", "%s: %s" % (where, ", ".join(bad)))


def _payload(p):
    _person(p, "holder")
    if not isinstance(p.get("cid"), bytes) or len(p["cid"]) != 16:
        raise VerifyError("payload_invalid", "cid")
    for k, n in (("regime", 2), ("caisse", 3), ("centre", 4)):
        if not _digits(p.get(k), n):
            raise VerifyError("payload_invalid", k)
    rights = p.get("rights")
    if not isinstance(rights, list) or len(rights) > 16:
        raise VerifyError("payload_invalid", "rights")
    for r in rights:
        if not (isinstance(r, dict) and _calendar_date(r.get("from")) and _calendar_date(r.get("to"))
                and r["from"] <= r["to"] and _text(r.get("code"), 1, 16)):
            raise VerifyError("payload_invalid", "a right")
    bens = p.get("beneficiaries")
    if not isinstance(bens, list) or len(bens) > 16:
        raise VerifyError("payload_invalid", "beneficiaries")
    ranks = set()
    for b in bens:
        if not isinstance(b, dict) or not _uint(b.get("rank")) or not 1 <= b["rank"] <= 99 \
                or b["rank"] in ranks:
            raise VerifyError("payload_invalid", "beneficiary rank")
        ranks.add(b["rank"])
        _person(b, "beneficiary %d" % b["rank"])
    if not (_uint(p.get("nbf")) and _uint(p.get("exp")) and p["nbf"] < p["exp"]):
        raise VerifyError("payload_invalid", "nbf/exp")


def _device_key(dk):
    if not (isinstance(dk, dict) and set(dk) == {1, -1, -2, -3} and dk[1] == 2 and dk[-1] == 1
            and not isinstance(dk[1], bool) and not isinstance(dk[-1], bool)
            and isinstance(dk[-2], bytes) and isinstance(dk[-3], bytes)
            and len(dk[-2]) == 32 and len(dk[-3]) == 32):
        raise VerifyError("device_key_invalid", "not {1:2,-1:1,-2:x(32),-3:y(32)}")
    try:
        return ec.EllipticCurvePublicNumbers(int.from_bytes(dk[-2], "big"),
                                             int.from_bytes(dk[-3], "big"),
                                             ec.SECP256R1()).public_key()
    except ValueError:
        raise VerifyError("device_key_invalid", "point not on P-256")


# ---------------------------------------------------------------------------
# The three steps of §11

def verify_select(data):
    if len(data) > MAX_SELECT:
        raise VerifyError("answer_too_large", "%d bytes" % len(data))
    m = strict_decode(data)
    if not isinstance(m, dict):
        raise VerifyError("cbor_malformed", "not a map")
    if not _uint(m.get("v")):
        raise VerifyError("payload_invalid", "v")
    if m["v"] != 1:
        raise VerifyError("bad_version", "v=%d" % m["v"])
    algs, uvm = m.get("algs"), m.get("uvm")
    if not (isinstance(algs, list) and all(isinstance(a, int) and not isinstance(a, bool) for a in algs)
            and isinstance(uvm, list) and all(isinstance(u, str) for u in uvm)):
        raise VerifyError("payload_invalid", "algs/uvm")
    if -7 not in algs:
        raise VerifyError("alg_unsupported", "algs %r" % algs)
    if "pin" not in uvm:
        raise VerifyError("uvm_unsupported", "uvm %r" % uvm)
    return m


def verify_credential(data, anchors, now=None, skew=SKEW, eku=PURPOSE_OID):
    """Returns (payload map, device public key)."""
    now = int(time.time() if now is None else now)
    if len(data) > MAX_CREDENTIAL:
        raise VerifyError("answer_too_large", "%d bytes" % len(data))
    prot, unprot, payload, sig = _cose_sign1(data, unprotected_empty=False)
    chain = unprot.get(33)
    if not (isinstance(chain, list) and 1 <= len(chain) <= 4
            and all(isinstance(c, bytes) for c in chain)):
        raise VerifyError("cose_malformed", "x5chain (33) not an array of 1..4 bstr")
    issuer_pub = check_chain(chain, anchors, now, eku)
    if not _es256_ok(issuer_pub, prot, payload, sig):
        raise VerifyError("credential_signature", "issuer signature does not verify")
    p = strict_decode(payload)
    if not isinstance(p, dict):
        raise VerifyError("cbor_malformed", "payload is not a map")
    if not _uint(p.get("v")):
        raise VerifyError("payload_invalid", "v")
    if p["v"] != 1:
        raise VerifyError("bad_version", "v=%d" % p["v"])
    _payload(p)
    dk = _device_key(p.get("dk"))
    if now + skew < p["nbf"]:
        raise VerifyError("credential_not_yet_valid", "nbf in %d s" % (p["nbf"] - now))
    if now - skew >= p["exp"]:
        raise VerifyError("credential_expired", "exp %d s ago" % (now - p["exp"]))
    return p, dk


def verify_answer(data, payload, dk, nonce):
    """Checks a device answer against the credential (payload, dk) and the nonce sent."""
    if len(data) > MAX_ANSWER:
        raise VerifyError("answer_too_large", "%d bytes" % len(data))
    prot, _unprot, body, sig = _cose_sign1(data, unprotected_empty=True)
    if not _es256_ok(dk, prot, body, sig):
        raise VerifyError("device_signature", "device signature does not verify")
    a = strict_decode(body)
    if not isinstance(a, dict):
        raise VerifyError("cbor_malformed", "payload is not a map")
    if not (isinstance(a.get("n"), bytes) and len(a["n"]) == 32
            and isinstance(a.get("cid"), bytes) and len(a["cid"]) == 16
            and isinstance(a.get("uv"), bool) and isinstance(a.get("uvm"), str)
            and _uint(a.get("ts"))):
        raise VerifyError("payload_invalid", "answer keys n/cid/uv/uvm/ts")
    if not hmac.compare_digest(a["n"], nonce):
        raise VerifyError("nonce_mismatch", "answer signs another nonce")
    if a["cid"] != payload["cid"]:
        raise VerifyError("cid_mismatch", "answer names another credential")
    if a["uv"] is not True or a["uvm"] != "pin":
        raise VerifyError("uv_false", "uv=%r uvm=%r" % (a["uv"], a["uvm"]))
    return a


# ---------------------------------------------------------------------------
# A whole terminal session over any transport (§2.3, §4, §11)

SELECT_APDU = bytes.fromhex("00A4040009F0564954414C45440100")
GET_CREDENTIAL_APDU = bytes.fromhex("80CA000000")
MAX_ROUNDS = 64


def _exchange(transmit, apdu, limit):
    """One command with 61xx chaining. transmit(bytes) -> bytes; it raises
    OSError/ConnectionError when the phone or the reader is gone."""
    try:
        r = transmit(apdu)
        if len(r) < 2:
            raise VerifyError("card_lost", "response shorter than 2 bytes")
        data, sw = bytearray(r[:-2]), r[-2:]
        rounds = 0
        while sw[0] == 0x61:
            rounds += 1
            if rounds > MAX_ROUNDS or len(data) > limit:
                raise VerifyError("answer_too_large", "%d bytes after %d rounds" % (len(data), rounds))
            r = transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw[1]]))
            if len(r) < 2:
                raise VerifyError("card_lost", "response shorter than 2 bytes")
            data += r[:-2]
            sw = r[-2:]
    except (OSError, ConnectionError, TimeoutError) as e:
        raise VerifyError("card_lost", str(e))
    if len(data) > limit:
        raise VerifyError("answer_too_large", "%d bytes" % len(data))
    return bytes(data), bytes(sw)


def authenticate_apdu(nonce, terminal_id, ts):
    """AUTHENTICATE with deterministic CBOR {"n","t","ts"} (keys already in order)."""
    t = terminal_id.encode("utf-8")
    ts_enc = (bytes([ts]) if ts < 24 else b"\x18" + bytes([ts]) if ts < 256
              else b"\x19" + ts.to_bytes(2, "big") if ts < 65536
              else b"\x1a" + ts.to_bytes(4, "big") if ts < 1 << 32
              else b"\x1b" + ts.to_bytes(8, "big"))
    if len(nonce) != 32 or not 1 <= len(t) <= 64:
        raise ValueError("nonce of 32 bytes, terminal id of 1..64 bytes")
    t_head = bytes([0x60 | len(t)]) if len(t) < 24 else bytes([0x78, len(t)])
    data = b"\xa3\x61n\x58\x20" + nonce + b"\x61t" + t_head + t + b"\x62ts" + ts_enc
    return bytes([0x80, 0x88, 0x00, 0x00, len(data)]) + data + b"\x00"


def terminal_session(transmit, anchors, terminal_id="vitaled-test", now=None,
                     poll_interval=0.25, code_timeout=60.0, authenticate=True,
                     on_pending=None, sleep=time.sleep, clock=time.monotonic):
    """Runs SELECT, GET CREDENTIAL, AUTHENTICATE as vitaled must. Returns a dict
    with select/credential/answer bytes, nonce, payload and polls; raises
    VerifyError with the first failure's reason."""
    out = {}
    data, sw = _exchange(transmit, SELECT_APDU, 16384)
    if sw != b"\x90\x00":
        raise VerifyError("no_applet", "SELECT sw %s" % sw.hex())
    verify_select(data)
    out["select"] = data
    data, sw = _exchange(transmit, GET_CREDENTIAL_APDU, MAX_CREDENTIAL)
    if sw != b"\x90\x00":
        raise VerifyError("status_unexpected", "GET CREDENTIAL sw %s" % sw.hex())
    out["credential"] = data
    out["payload"], dk = verify_credential(data, anchors, now)
    if not authenticate:
        return out
    nonce = secrets.token_bytes(32)
    apdu = authenticate_apdu(nonce, terminal_id, int(time.time() if now is None else now))
    start, polls = clock(), 0
    while True:
        data, sw = _exchange(transmit, apdu, MAX_ANSWER)
        polls += 1
        if sw != b"\x63\x00":
            break
        if polls == 1 and on_pending:
            on_pending()
        if clock() - start >= code_timeout:
            raise VerifyError("code_timeout", "still pending after %d polls" % polls)
        sleep(poll_interval)
    out["polls"] = polls
    if sw == b"\x69\x82":
        raise VerifyError("code_refused", "69 82")
    if sw == b"\x69\x83":
        raise VerifyError("code_blocked", "69 83")
    if sw != b"\x90\x00":
        raise VerifyError("status_unexpected", "AUTHENTICATE sw %s" % sw.hex())
    verify_answer(data, out["payload"], dk, nonce)
    out["answer"], out["nonce"] = data, nonce
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description="verify a vitaled digital-card presentation")
    p.add_argument("--anchor", action="append", default=[], help="trust anchor PEM (repeatable)")
    p.add_argument("--credential", required=True)
    p.add_argument("--answer")
    p.add_argument("--nonce", help="nonce sent, hex")
    p.add_argument("--nonce-file", help="nonce sent, 32 raw bytes")
    p.add_argument("--select", help="SELECT answer to check too")
    p.add_argument("--now", type=int)
    p.add_argument("--skew", type=int, default=SKEW)
    p.add_argument("--eku", default=PURPOSE_OID)
    p.add_argument("--show", action="store_true", help="print the identity (test data only)")
    a = p.parse_args(argv)

    def rd(path):
        with open(path, "rb") as f:
            return f.read()
    try:
        if a.select:
            verify_select(rd(a.select))
        payload, dk = verify_credential(rd(a.credential), load_anchors(a.anchor), a.now, a.skew, a.eku)
        summary = "credential %d bytes, cid %s, %d beneficiaries" % (
            len(rd(a.credential)), payload["cid"].hex(), len(payload["beneficiaries"]))
        if a.answer:
            nonce = bytes.fromhex(a.nonce) if a.nonce else rd(a.nonce_file)
            verify_answer(rd(a.answer), payload, dk, nonce)
            summary += ", device answer verified (uv)"
    except VerifyError as e:
        print("fail %s: %s" % (e.reason, e.detail))
        return 1
    print("ok " + summary)
    if a.show:
        for k in ("nir", "surname", "given_name", "birth_date", "regime", "caisse", "centre"):
            print("  %s: %s" % (k, payload[k]))
        for b in payload["beneficiaries"]:
            print("  beneficiary %d: %s %s %s" % (b["rank"], b["surname"], b["given_name"], b["birth_date"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
