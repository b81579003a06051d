#!/usr/bin/python3
"""Regenerate the digital-card test vectors in this directory.

TEST MATERIAL ONLY: every key written here is a throw-away test key, public
in the repository, trusted by nothing but the unit tests.

The credentials are made by the independent test insurer
(tests/world/issuer.py, docs/digital-card.md §17) at the fixed instant NOW,
plus a few variants it does not make (an intermediate CA, an expired anchor,
device answers for a fixed nonce). Each vector's expected §12 reason is
written to expected.txt, after the independent verifier
(tests/world/verify_credential.py) has been asked for its own verdict on it:
the generator stops if that verdict differs. tests/unit/check_credential.c
then checks that the C code gives the same reasons.

    make_vectors.py [--world DIR] [--out DIR]
"""

import argparse
import datetime
import os
import sys

NOW = 1767225600          # 2026-01-01T00:00:00Z; the unit tests verify at this instant
DAY = 86400
NONCE = bytes(range(32))  # the nonce the answer-*.cbor vectors sign
OTHER_NONCE = bytes(range(32, 64))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default=os.path.join(here, "..", "..", "world"))
    ap.add_argument("--out", default=here)
    a = ap.parse_args()
    sys.path.insert(0, a.world)
    import issuer
    import verify_credential as vc
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out = a.out
    issuer.init_world(out, NOW)

    def path(name):
        return os.path.join(out, name)

    def write(name, data):
        with open(path(name), "wb") as f:
            f.write(data)

    def der(cert):
        return cert.public_bytes(serialization.Encoding.DER)

    def utc(ts):
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).replace(tzinfo=None)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vitaled test world"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject_key, cn, signer_key, signer_cert, nb, na, ca):
        b = (x509.CertificateBuilder().subject_name(name(cn))
             .issuer_name(signer_cert.subject if signer_cert else name(cn))
             .public_key(subject_key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(utc(nb)).not_valid_after(utc(na))
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()),
                            critical=False))
        if signer_cert:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                signer_key.public_key()), critical=False)
        if ca:
            b = (b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                              False), critical=True))
        else:
            b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                 .add_extension(x509.KeyUsage(True, False, False, False, False, False, False,
                                              False, False), critical=True)
                 .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier(issuer.PURPOSE_OID)]),
                                critical=False))
        return b.sign(signer_key, hashes.SHA256())

    def load_key(name_):
        with open(path(name_), "rb") as f:
            return serialization.load_pem_private_key(f.read(), None)

    def load_cert(name_):
        with open(path(name_), "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    dk = ec.generate_private_key(ec.SECP256R1())
    write("dk-good.key.pem", issuer.device_key_pem(dk))
    cid = bytes.fromhex("00112233445566778899aabbccddeeff")

    creds = {}
    creds["good"], _ = issuer.make_credential(out, device_key=dk, now=NOW, cid=cid)
    creds["expired"], _ = issuer.make_credential(out, device_key=dk, now=NOW, cid=cid, expired=True)
    creds["not-yet-valid"], _ = issuer.make_credential(out, device_key=dk, now=NOW, cid=cid,
                                                       not_yet_valid=True)
    for variant in ("expired", "unknown_ca", "forged_ca", "no_purpose"):
        creds["issuer-" + variant.replace("_", "-")], _ = issuer.make_credential(
            out, device_key=dk, now=NOW, cid=cid, issuer=variant)
    bad = bytearray(creds["good"])
    bad[-1] ^= 0x01
    creds["bad-signature"] = bytes(bad)

    # A payload like make_credential's, signed by key with the given chain.
    def credential(key, chain):
        p = issuer.default_holder(NOW)
        p.update({"v": 1, "cid": cid, "dk": issuer.cose_key(dk.public_key()),
                  "nbf": NOW - 3600, "exp": NOW + 30 * DAY})
        return issuer.cose_sign1(issuer.cbor_encode(p), key, {33: chain})

    # CA -> intermediate -> issuer
    ca_key, ca = load_key("ca.key.pem"), load_cert("ca.pem")
    ikey = ec.generate_private_key(ec.SECP256R1())
    inter = cert(ikey, "vitaled TEST intermediate CA", ca_key, ca, NOW - DAY, NOW + 1000 * DAY, True)
    lkey = ec.generate_private_key(ec.SECP256R1())
    leaf = cert(lkey, "vitaled TEST issuer under an intermediate", ikey, inter, NOW - DAY,
                NOW + 700 * DAY, False)
    creds["intermediate"] = credential(lkey, [der(leaf), der(inter)])
    creds["intermediate-missing"] = credential(lkey, [der(leaf)])
    creds["with-anchor"] = credential(lkey, [der(leaf), der(inter), der(ca)])

    # An anchor that expired yesterday, and an issuer it signed
    xkey = ec.generate_private_key(ec.SECP256R1())
    xca = cert(xkey, "vitaled TEST expired CA", xkey, None, NOW - 3650 * DAY, NOW - DAY, True)
    write("ca-expired.pem", xca.public_bytes(serialization.Encoding.PEM))
    xlkey = ec.generate_private_key(ec.SECP256R1())
    xleaf = cert(xlkey, "vitaled TEST issuer of an expired CA", xkey, xca, NOW - 10 * DAY,
                 NOW + 700 * DAY, False)
    creds["anchor-expired"] = credential(xlkey, [der(xleaf)])

    for k, v in creds.items():
        write("cred-%s.cbor" % k, v)

    # Device answers over NONCE (docs/digital-card.md §9)
    def answer(n=NONCE, c=cid, uv=True, uvm="pin", key=dk):
        body = issuer.cbor_encode({"n": n, "cid": c, "uv": uv, "uvm": uvm, "ts": NOW + 5})
        return issuer.cose_sign1(body, key)

    answers = {
        "good": answer(),
        "other-nonce": answer(n=OTHER_NONCE),
        "uv-false": answer(uv=False),
        "uvm-other": answer(uvm="face"),
        "wrong-cid": answer(c=bytes(16)),
        "other-key": answer(key=ec.generate_private_key(ec.SECP256R1())),
    }
    bad = bytearray(answers["good"])
    bad[-1] ^= 0x01
    answers["bad-signature"] = bytes(bad)
    for k, v in answers.items():
        write("answer-%s.cbor" % k, v)

    # Expected reasons, cross-checked with the independent verifier.
    anchors = {"ca.pem": vc.load_anchors([path("ca.pem")]),
               "ca-expired.pem": vc.load_anchors([path("ca-expired.pem")])}
    expect_cred = [
        ("good", "ca.pem", "ok"),
        ("expired", "ca.pem", "credential_expired"),
        ("not-yet-valid", "ca.pem", "credential_not_yet_valid"),
        ("issuer-expired", "ca.pem", "chain_expired"),
        ("issuer-unknown-ca", "ca.pem", "chain_untrusted"),
        ("issuer-forged-ca", "ca.pem", "chain_untrusted"),
        ("issuer-no-purpose", "ca.pem", "issuer_purpose"),
        ("bad-signature", "ca.pem", "credential_signature"),
        ("intermediate", "ca.pem", "ok"),
        ("intermediate-missing", "ca.pem", "chain_untrusted"),
        ("with-anchor", "ca.pem", "ok"),
        ("anchor-expired", "ca-expired.pem", "chain_expired"),
    ]
    expect_answer = [
        ("good", "ok"),
        ("other-nonce", "nonce_mismatch"),
        ("uv-false", "uv_false"),
        ("uvm-other", "uv_false"),
        ("wrong-cid", "cid_mismatch"),
        ("other-key", "device_signature"),
        ("bad-signature", "device_signature"),
    ]
    lines = ["# vector anchor expected-reason (docs/digital-card.md §12); made by make_vectors.py",
             "# at NOW=%d, answers over nonce 000102..1f" % NOW]
    failed = False
    good_payload = good_dk = None
    for name_, anchor, want in expect_cred:
        try:
            payload, dkey = vc.verify_credential(creds[name_], anchors[anchor], now=NOW)
            got = "ok"
            if name_ == "good":
                good_payload, good_dk = payload, dkey
        except vc.VerifyError as e:
            got = e.reason
        if got != want:
            print("verify_credential.py says %s for cred-%s, expected %s" % (got, name_, want))
            failed = True
        lines.append("cred-%s.cbor %s %s" % (name_, anchor, want))
    for name_, want in expect_answer:
        try:
            vc.verify_answer(answers[name_], good_payload, good_dk, NONCE)
            got = "ok"
        except vc.VerifyError as e:
            got = e.reason
        if got != want:
            print("verify_credential.py says %s for answer-%s, expected %s" % (got, name_, want))
            failed = True
        lines.append("answer-%s.cbor - %s" % (name_, want))
    write("expected.txt", ("\n".join(lines) + "\n").encode())

    # Keep only the keys the C tests sign with.
    for f in os.listdir(out):
        if f.endswith(".key.pem") and f not in ("issuer-good.key.pem", "dk-good.key.pem"):
            os.unlink(path(f))
    for f in os.listdir(out):
        if f.startswith("issuer-") and f.endswith(".pem") and f not in (
                "issuer-good.pem", "issuer-good.key.pem"):
            os.unlink(path(f))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
