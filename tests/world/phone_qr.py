#!/usr/bin/python3
"""The phone side of the vitaled digital card by QR code, for tests.

Written from docs/digital-card.md part 2 ("version 1, QR"), not from the C code:
the text a phone shows is

    "VQ1:" + base45( zlib( CBOR {"v": 1, "cred": credential, "pres": presentation} ) )

where the presentation is a COSE_Sign1 (ES256) by the credential's device key
over {"c": challenge (when the terminal shows one), "n": 16 random bytes,
"ts": now, "uv": true, "cid": cid, "use": "qr", "uvm": "pin"} (deterministic
CBOR, §6). base45 is RFC 9285, zlib is RFC 1950 (Python's zlib module).

    phone_qr.py code WORLD_DIR [--kind KIND] [--challenge C] [--out FILE] [--png FILE]
    phone_qr.py scan PNG                      # decode a picture back with zbarimg

Kinds (what the terminal must answer, §Q.12):
    good            accepted (with --challenge: the challenge form)
    expired         one-way, ts 1 hour ago             -> presentation_expired
    wrong_challenge signs another challenge            -> challenge_mismatch
    foreign_issuer  credential from an unknown CA      -> chain_untrusted
    no_code         "uv": false (code not entered)     -> uv_false
    truncated       the text cut short                 -> qr_unreadable
    corrupted       a base45 character changed         -> qr_unreadable (or a
                                                          signature failure)
    other_key       signed by another device key       -> device_signature
    nfc_answer      an NFC device answer in "pres"     -> payload_invalid
    version2        prefix "VQ2:"                      -> bad_version
A replay is a good code shown twice.

Importable: make_code(), base45_encode(), render_png(), zbar_decode().
Test keys only.
"""

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import issuer as _issuer  # noqa: E402

from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

PREFIX = "VQ1:"
B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
KINDS = ("good", "expired", "wrong_challenge", "foreign_issuer", "no_code", "truncated",
         "corrupted", "other_key", "nfc_answer", "version2")


def base45_encode(data):
    """RFC 9285 §4: two bytes -> three characters (c + 45 d + 2025 e), a last
    byte -> two characters."""
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        e, n = divmod(n, 2025)
        d, c = divmod(n, 45)
        out.append(B45[c] + B45[d] + B45[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out.append(B45[c] + B45[d])
    return "".join(out)


def base45_decode(text):
    vals = [B45.index(ch) for ch in text]
    out = bytearray()
    for i in range(0, len(vals), 3):
        g = vals[i:i + 3]
        if len(g) == 3:
            n = g[0] + g[1] * 45 + g[2] * 2025
            out += n.to_bytes(2, "big")
        else:
            out.append(g[0] + g[1] * 45)
    return bytes(out)


def presentation(cred_payload_cid, device_key, challenge=None, ts=None, uv=True, uvm="pin",
                 use="qr", nonce=None):
    body = {"n": nonce or secrets.token_bytes(16), "ts": int(ts if ts is not None else time.time()),
            "uv": uv, "cid": cred_payload_cid, "use": use, "uvm": uvm}
    if challenge is not None:
        body["c"] = challenge
    return _issuer.cose_sign1(_issuer.cbor_encode(body), device_key)


def pack(cred, pres, version=1):
    box = _issuer.cbor_encode({"v": 1, "cred": cred, "pres": pres})
    return "VQ%d:" % version + base45_encode(zlib.compress(box, 9))


def credential_cid(cred):
    """The cid of a credential (COSE_Sign1 bytes), read with cbor2."""
    import cbor2
    msg = cbor2.loads(cred)
    return cbor2.loads(msg.value[2])["cid"]


def make_code(world, kind="good", challenge=None, now=None, cred=None, device_key=None):
    """The text of a QR code of the given kind. world: a test issuer
    directory (tests/world/issuer.py init). cred/device_key: reuse a
    credential (else a new one is issued)."""
    now = int(now or time.time())
    if kind not in KINDS:
        raise ValueError("unknown kind %r (one of %s)" % (kind, ", ".join(KINDS)))
    if kind == "foreign_issuer":
        cred, device_key = _issuer.make_credential(world, issuer="unknown_ca", now=now)
    elif cred is None:
        cred, device_key = _issuer.make_credential(world, now=now)
    cid = credential_cid(cred)
    key = device_key
    ts = now
    chal = challenge
    uv = True
    if kind == "expired":
        ts, chal = now - 3600, None
    elif kind == "wrong_challenge":
        chal = "000000" if challenge != "000000" else "111111"
    elif kind == "no_code":
        uv = False
    elif kind == "other_key":
        key = ec.generate_private_key(ec.SECP256R1())
    if kind == "nfc_answer":
        body = _issuer.cbor_encode({"n": secrets.token_bytes(32), "cid": cid, "uv": True,
                                    "uvm": "pin", "ts": ts})
        pres = _issuer.cose_sign1(body, key)
    else:
        pres = presentation(cid, key, challenge=chal, ts=ts, uv=uv)
    text = pack(cred, pres, version=2 if kind == "version2" else 1)
    if kind == "truncated":
        text = text[: len(text) * 2 // 3]
    elif kind == "corrupted":
        i = len(text) // 2
        text = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:]
    return text


def render_png(text, path, level="M"):
    """Render text as a QR code picture with qrencode (Debian's qrencode)."""
    if not shutil.which("qrencode"):
        raise RuntimeError("qrencode is not installed (Debian package qrencode)")
    subprocess.run(["qrencode", "-l", level, "-s", "4", "-m", "4", "-o", path, text], check=True)


def qr_version(path):
    """The QR version of a rendered picture: (modules - 17) / 4, from its size."""
    import struct
    with open(path, "rb") as f:
        head = f.read(24)
    width = struct.unpack(">I", head[16:20])[0]
    modules = width // 4 - 8
    return (modules - 17) // 4


def zbar_decode(path):
    """Decode a picture with zbarimg (Debian's zbar-tools): the text, or None."""
    if not shutil.which("zbarimg"):
        raise RuntimeError("zbarimg is not installed (Debian package zbar-tools)")
    r = subprocess.run(["zbarimg", "--raw", "-q", "-Sdisable", "-Sqrcode.enable", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    return r.stdout.rstrip("\n")


def main(argv=None):
    p = argparse.ArgumentParser(description="vitaled test phone, QR form (test keys only)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pc = sub.add_parser("code", help="make a QR code's text")
    pc.add_argument("world")
    pc.add_argument("--kind", default="good", choices=KINDS)
    pc.add_argument("--challenge")
    pc.add_argument("--out", help="write the text here (default: stdout)")
    pc.add_argument("--png", help="also render it to this PNG (qrencode)")
    ps = sub.add_parser("scan", help="decode a PNG with zbarimg")
    ps.add_argument("png")
    a = p.parse_args(argv)
    if a.cmd == "scan":
        t = zbar_decode(a.png)
        if t is None:
            print("no QR code found", file=sys.stderr)
            return 1
        print(t)
        return 0
    text = make_code(a.world, a.kind, a.challenge)
    if a.png:
        render_png(text, a.png)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
