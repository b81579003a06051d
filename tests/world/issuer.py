#!/usr/bin/python3
"""Test insurer for the vitaled digital card (docs/digital-card.md).

Makes a test insurer CA, credential-issuer certificates (a good one and broken
variants for tests), and credentials: COSE_Sign1 (RFC 9052 §4.2, ES256) over a
deterministic CBOR payload (RFC 8949 §4.2.1) that carries a fresh device key.
Everything here is test key material, written only into the directory the
caller names (a test's temporary directory).

    issuer.py init DIR
    issuer.py credential DIR --out FILE [--key-out FILE] [--holder JSON]
                             [--expired] [--not-yet-valid] [--issuer VARIANT]

Importable too: init_world(), make_credential(), default_holder(),
cbor_encode(), cose_sign1(), cose_key(), nir_key().

Issuer variants (docs/digital-card.md §10, §11 C.4-C.5):
  good        issuer certificate signed by the CA, with the purpose OID
  expired     the same, but its validity ended yesterday   -> chain_expired
  unknown_ca  signed by a CA the terminal does not trust    -> chain_untrusted
  forged_ca   signed by a CA with the trusted CA's very name -> chain_untrusted
  no_purpose  signed by the CA, EKU clientAuth only          -> issuer_purpose
"""

import argparse
import datetime
import json
import os
import secrets
import sys
import time

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# docs/digital-card.md §10.2: id-vitaled-kp-credentialIssuer, under the ITU-T/ISO
# example arc 2.999 -- a test arc, replaced by an insurer OID in production.
PURPOSE_OID = "2.999.86.1.1"
VARIANTS = ("good", "expired", "unknown_ca", "forged_ca", "no_purpose")
DAY = 86400


# ---------------------------------------------------------------------------
# Deterministic CBOR encoder (RFC 8949 §4.2.1). cbor2's canonical=True sorts
# map keys length-first (RFC 7049 §3.9), which differs from §4.2.1 for keys of
# mixed lengths, so the protocol's bytes are produced here.

def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    raise ValueError("integer too large for CBOR")


def cbor_encode(obj):
    """Deterministic CBOR of int, bytes, str, bool, list, dict, cbor2.CBORTag."""
    if obj is True:
        return b"\xf5"
    if obj is False:
        return b"\xf4"
    if isinstance(obj, int):
        return _head(0, obj) if obj >= 0 else _head(1, -1 - obj)
    if isinstance(obj, (bytes, bytearray)):
        return _head(2, len(obj)) + bytes(obj)
    if isinstance(obj, str):
        b = obj.encode("utf-8")
        return _head(3, len(b)) + b
    if isinstance(obj, (list, tuple)):
        return _head(4, len(obj)) + b"".join(cbor_encode(x) for x in obj)
    if isinstance(obj, dict):
        items = sorted((cbor_encode(k), cbor_encode(v)) for k, v in obj.items())
        for a, b in zip(items, items[1:]):
            if a[0] == b[0]:
                raise ValueError("duplicate map key")
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    if isinstance(obj, cbor2.CBORTag):
        return _head(6, obj.tag) + cbor_encode(obj.value)
    raise TypeError("cannot encode %r in CBOR" % type(obj))


# ---------------------------------------------------------------------------
# COSE (RFC 9052 §4.2, §4.4; RFC 9053 §2.1 ES256; §7.1.1 EC2 keys)

PROTECTED_ES256 = cbor_encode({1: -7})          # A1 01 26


def es256_sign(key, data):
    """ECDSA P-256 / SHA-256 signature as r || s (64 bytes)."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sig_structure(protected, payload):
    return cbor_encode(["Signature1", protected, b"", payload])


def cose_sign1(payload, key, unprotected=None):
    """COSE_Sign1 (tag 18) over payload bytes, protected {1: -7}."""
    sig = es256_sign(key, sig_structure(PROTECTED_ES256, payload))
    return cbor_encode(cbor2.CBORTag(18, [PROTECTED_ES256, unprotected or {}, payload, sig]))


def cose_key(public_key):
    """COSE_Key {1: 2, -1: 1, -2: x, -3: y} of a P-256 public key."""
    n = public_key.public_numbers()
    return {1: 2, -1: 1, -2: n.x.to_bytes(32, "big"), -3: n.y.to_bytes(32, "big")}


# ---------------------------------------------------------------------------
# NIR (social security number): 13 characters + key = 97 - (N mod 97), with
# Corsica's 2A -> 19 and 2B -> 18 for the computation.

def nir_key(nir13):
    digits = nir13.upper().replace("2A", "19").replace("2B", "18")
    if len(nir13) != 13 or not digits.isdigit():
        raise ValueError("a NIR has 13 characters before its key")
    return 97 - int(digits) % 97


def nir(nir13):
    return "%s%02d" % (nir13, nir_key(nir13))


def default_holder(now=None):
    """A fictitious holder with two beneficiaries (test data only)."""
    year = datetime.datetime.fromtimestamp(now or time.time(), datetime.timezone.utc).year
    return {
        "nir": nir("284122A004123"),          # Corsica 2A: exercises the 2A rule
        "surname": "MARTIN",
        "given_name": "Camille",
        "birth_date": "1984-12-03",
        "regime": "01",
        "caisse": "751",
        "centre": "0042",
        "rights": [{"from": "%d-01-01" % year, "to": "%d-12-31" % year, "code": "AMO"}],
        "beneficiaries": [
            {"rank": 1, "surname": "MARTIN", "given_name": "Léa",
             "birth_date": "2012-05-17", "nir": nir("2120575056078")},
            {"rank": 2, "surname": "MARTIN", "given_name": "Hugo",
             "birth_date": "2015-09-30", "nir": nir("115092B033045")},
        ],
    }


# ---------------------------------------------------------------------------
# Certificates (docs/digital-card.md §10.1)

def _name(cn):
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vitaled test world"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).replace(tzinfo=None)


def _make_ca(cn, now):
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(cn)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(now - DAY)).not_valid_after(_utc(now + 3650 * DAY))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _make_issuer(ca_key, ca_cert, cn, now, expired=False, purpose=True):
    key = ec.generate_private_key(ec.SECP256R1())
    if expired:
        nb, na = now - 730 * DAY, now - DAY
    else:
        nb, na = now - DAY, now + 730 * DAY
    eku = [x509.ObjectIdentifier(PURPOSE_OID)] if purpose else [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(nb)).not_valid_after(_utc(na))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_file(path, data):
    """Write a file readable by its owner only (test keys, still keys)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def init_world(d, now=None):
    """Create the test CA (DIR/ca.pem: the trust anchor) and every issuer
    variant (DIR/issuer-VARIANT.pem and .key.pem) in directory d."""
    now = int(now or time.time())
    os.makedirs(d, mode=0o700, exist_ok=True)
    ca_key, ca = _make_ca("vitaled TEST insurer CA", now)
    other_key, other = _make_ca("vitaled TEST unknown CA", now)
    forged_key, forged = _make_ca("vitaled TEST insurer CA", now)   # same name as ca
    made = {
        "good": _make_issuer(ca_key, ca, "vitaled TEST credential issuer", now),
        "expired": _make_issuer(ca_key, ca, "vitaled TEST expired issuer", now, expired=True),
        "unknown_ca": _make_issuer(other_key, other, "vitaled TEST issuer of an unknown CA", now),
        "forged_ca": _make_issuer(forged_key, forged, "vitaled TEST issuer of a forged CA", now),
        "no_purpose": _make_issuer(ca_key, ca, "vitaled TEST issuer without purpose", now,
                                   purpose=False),
    }
    write_file(os.path.join(d, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))
    write_file(os.path.join(d, "ca.key.pem"), _key_pem(ca_key))
    write_file(os.path.join(d, "unknown-ca.pem"), other.public_bytes(serialization.Encoding.PEM))
    for variant, (key, cert) in made.items():
        write_file(os.path.join(d, "issuer-%s.pem" % variant), cert.public_bytes(serialization.Encoding.PEM))
        write_file(os.path.join(d, "issuer-%s.key.pem" % variant), _key_pem(key))
    return d


def load_issuer(d, variant="good"):
    """(private key, [certificate DER]) of an issuer variant made by init_world."""
    if variant not in VARIANTS:
        raise ValueError("unknown issuer variant %r (one of %s)" % (variant, ", ".join(VARIANTS)))
    base = os.path.join(d, "issuer-%s" % variant)
    with open(base + ".key.pem", "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    with open(base + ".pem", "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return key, [cert.public_bytes(serialization.Encoding.DER)]


def make_credential(d, holder=None, device_key=None, issuer="good", expired=False,
                    not_yet_valid=False, now=None, cid=None, lifetime=30 * DAY):
    """Issue a credential. Returns (credential bytes, device private key).

    holder: fields merged over default_holder(); device_key: a P-256 private
    key, a new one when None. expired/not_yet_valid place nbf/exp beyond the
    300 s clock skew of docs/digital-card.md §11 C.11.
    """
    now = int(now or time.time())
    if not os.path.exists(os.path.join(d, "ca.pem")):
        init_world(d, now)
    key, chain = load_issuer(d, issuer)
    device_key = device_key or ec.generate_private_key(ec.SECP256R1())
    fields = default_holder(now)
    fields.update(holder or {})
    if expired:
        nbf, exp = now - 60 * DAY, now - DAY
    elif not_yet_valid:
        nbf, exp = now + DAY, now + DAY + lifetime
    else:
        nbf, exp = now - 3600, now + lifetime
    payload = dict(fields)
    payload.update({
        "v": 1,
        "cid": cid or secrets.token_bytes(16),
        "dk": cose_key(device_key.public_key()),
        "nbf": nbf,
        "exp": exp,
    })
    return cose_sign1(cbor_encode(payload), key, {33: chain}), device_key


def device_key_pem(device_key):
    return _key_pem(device_key)


def _holder_arg(text):
    if text.lstrip().startswith("{"):
        return json.loads(text)
    with open(text, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None):
    p = argparse.ArgumentParser(description="vitaled test insurer (test keys only)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("init", help="make the test CA and issuer variants in DIR")
    pi.add_argument("dir")
    pc = sub.add_parser("credential", help="issue a credential and a device key")
    pc.add_argument("dir")
    pc.add_argument("--out", required=True, help="credential (COSE_Sign1 bytes)")
    pc.add_argument("--key-out", help="device private key, PEM (default OUT.key.pem)")
    pc.add_argument("--holder", help="JSON object or JSON file, merged over the default holder")
    pc.add_argument("--expired", action="store_true")
    pc.add_argument("--not-yet-valid", action="store_true")
    pc.add_argument("--issuer", default="good", choices=VARIANTS)
    a = p.parse_args(argv)
    if a.cmd == "init":
        init_world(a.dir)
        print(os.path.join(a.dir, "ca.pem"))
        return 0
    cred, dkey = make_credential(a.dir, holder=_holder_arg(a.holder) if a.holder else None,
                                 issuer=a.issuer, expired=a.expired,
                                 not_yet_valid=a.not_yet_valid)
    write_file(a.out, cred)
    write_file(a.key_out or a.out + ".key.pem", device_key_pem(dkey))
    print("%s %d bytes" % (a.out, len(cred)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
