#!/usr/bin/python3
"""Make the QR test vectors (docs/digital-card.md part 2) for tests/unit/check_qr.c.

Uses the credentials and the device key already in this directory
(make_vectors.py, NOW = 1767225600) and the independent phone side
tests/world/phone_qr.py. Writes qr-KIND.txt (the text a scanner gives) and
qr-expected.txt (the reason the terminal must name, with the policy the unit
test applies: now = NOW + 10, challenge "482913" open, one-way codes allowed
within 120 s unless the line says otherwise).

    /usr/bin/python3 tests/data/digital/make_qr_vectors.py
"""

import os
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "world"))

import issuer  # noqa: E402
import phone_qr  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

NOW = 1767225600
CHALLENGE = "482913"
PRES_NONCE = bytes(range(16))


def main():
    def rd(name):
        with open(os.path.join(HERE, name), "rb") as f:
            return f.read()

    dk = serialization.load_pem_private_key(rd("dk-good.key.pem"), None)
    cred = rd("cred-good.cbor")
    foreign = rd("cred-issuer-unknown-ca.cbor")
    expired_cred = rd("cred-expired.cbor")
    cid = phone_qr.credential_cid(cred)

    def pres(**kw):
        kw.setdefault("ts", NOW + 5)
        kw.setdefault("nonce", PRES_NONCE)
        return phone_qr.presentation(cid, dk, **kw)

    codes = {}
    codes["good-challenge"] = phone_qr.pack(cred, pres(challenge=CHALLENGE))
    codes["good-oneway"] = phone_qr.pack(cred, pres())
    codes["expired"] = phone_qr.pack(cred, pres(ts=NOW - 3600))
    codes["future"] = phone_qr.pack(cred, pres(ts=NOW + 3600))
    codes["wrong-challenge"] = phone_qr.pack(cred, pres(challenge="000000"))
    codes["foreign-issuer"] = phone_qr.pack(foreign, pres(challenge=CHALLENGE))
    codes["cred-expired"] = phone_qr.pack(expired_cred, pres(challenge=CHALLENGE))
    codes["no-code"] = phone_qr.pack(cred, pres(challenge=CHALLENGE, uv=False))
    codes["uvm-other"] = phone_qr.pack(cred, pres(challenge=CHALLENGE, uvm="face"))
    codes["use-other"] = phone_qr.pack(cred, pres(challenge=CHALLENGE, use="nfc"))
    codes["wrong-cid"] = phone_qr.pack(cred, phone_qr.presentation(bytes(16), dk, challenge=CHALLENGE,
                                                                   ts=NOW + 5, nonce=PRES_NONCE))
    other = ec.generate_private_key(ec.SECP256R1())
    codes["other-key"] = phone_qr.pack(cred, phone_qr.presentation(cid, other, challenge=CHALLENGE,
                                                                   ts=NOW + 5, nonce=PRES_NONCE))
    nfc = issuer.cose_sign1(issuer.cbor_encode({"n": bytes(32), "cid": cid, "uv": True, "uvm": "pin",
                                                "ts": NOW + 5}), dk)
    codes["nfc-answer"] = phone_qr.pack(cred, nfc)
    codes["version2"] = phone_qr.pack(cred, pres(challenge=CHALLENGE), version=2)
    good = codes["good-challenge"]
    codes["truncated"] = good[: len(good) * 2 // 3]
    codes["truncated-group"] = good[:-1] if len(good) % 3 != 1 else good[:-2]
    codes["bad-char"] = good[:40] + "a" + good[41:]
    codes["no-prefix"] = good[4:]
    # a valid base45 stream of valid zlib that is not the container
    codes["not-cbor"] = "VQ1:" + phone_qr.base45_encode(zlib.compress(b"hello, world"))
    codes["not-a-map"] = "VQ1:" + phone_qr.base45_encode(zlib.compress(issuer.cbor_encode([1, 2])))
    codes["box-v2"] = "VQ1:" + phone_qr.base45_encode(zlib.compress(issuer.cbor_encode(
        {"v": 2, "cred": cred, "pres": nfc})))
    codes["box-no-pres"] = "VQ1:" + phone_qr.base45_encode(zlib.compress(issuer.cbor_encode(
        {"v": 1, "cred": cred})))
    codes["box-extra-key"] = "VQ1:" + phone_qr.base45_encode(zlib.compress(issuer.cbor_encode(
        {"v": 1, "cred": cred, "pres": pres(challenge=CHALLENGE), "x": 0})))
    # a deflate bomb: 1 MiB of zeros compresses to about 1 KiB
    codes["bomb"] = "VQ1:" + phone_qr.base45_encode(zlib.compress(bytes(1 << 20), 9))
    codes["trailing"] = "VQ1:" + phone_qr.base45_encode(zlib.compress(issuer.cbor_encode(
        {"v": 1, "cred": cred, "pres": pres(challenge=CHALLENGE)})) + b"\x00")

    expected = [
        ("good-challenge", "ok"),
        ("good-oneway", "ok"),
        ("expired", "presentation_expired"),
        ("future", "presentation_expired"),
        ("wrong-challenge", "challenge_mismatch"),
        ("foreign-issuer", "chain_untrusted"),
        ("cred-expired", "credential_expired"),
        ("no-code", "uv_false"),
        ("uvm-other", "uv_false"),
        ("use-other", "payload_invalid"),
        ("wrong-cid", "cid_mismatch"),
        ("other-key", "device_signature"),
        ("nfc-answer", "payload_invalid"),
        ("version2", "bad_version"),
        ("truncated", "qr_unreadable"),
        ("truncated-group", "qr_unreadable"),
        ("bad-char", "qr_unreadable"),
        ("no-prefix", "qr_unreadable"),
        ("not-cbor", "cbor_malformed"),
        ("not-a-map", "cbor_malformed"),
        ("box-v2", "bad_version"),
        ("box-no-pres", "payload_invalid"),
        ("box-extra-key", "payload_invalid"),
        ("bomb", "qr_unreadable"),
        ("trailing", "qr_unreadable"),
    ]
    for name, text in codes.items():
        with open(os.path.join(HERE, "qr-%s.txt" % name), "w") as f:
            f.write(text)
    with open(os.path.join(HERE, "qr-expected.txt"), "w") as f:
        f.write("# qr vector, expected reason; made by make_qr_vectors.py at NOW=%d;\n" % NOW)
        f.write("# the test's policy: now NOW+10, challenge %s open, one-way within 120 s\n"
                % CHALLENGE)
        for name, want in expected:
            f.write("qr-%s.txt %s\n" % (name, want))
    return 0


if __name__ == "__main__":
    sys.exit(main())
