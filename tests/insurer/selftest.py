#!/usr/bin/python3
"""Self-test of the test insurer (tests/insurer/insurer.py) against
docs/insurer-api.md: makes a PKI (mkpki.py), starts the insurer, builds signed
care sheets the way docs/care-sheet.md says (checked by the world's own
verifier, tests/world/verify_sheet.py), and checks every behaviour with plain
Python HTTPS calls under the terminal's client certificate.

    /usr/bin/python3 tests/insurer/selftest.py [-v] [--keep]

Exit 0: every check passed; 1: a check failed (each failure printed);
77: a dependency (cbor2, cryptography, openssl's TLS) is missing.
Every insurer started here is stopped by PID on every exit path.
"""
import sys

try:
    import cbor2  # noqa: F401
    from cryptography import x509  # noqa: F401
except ImportError as e:  # pragma: no cover
    print("SKIP: %s (Debian: python3-cbor2 python3-cryptography)" % e)
    sys.exit(77)

import datetime as dt
import email.utils
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
import warnings

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "world"))
sys.path.insert(0, os.path.join(TOP, "tests", "data"))

import holidays_table  # noqa: E402
import insurer  # noqa: E402
import mkpki  # noqa: E402
import verify_sheet  # noqa: E402

det = insurer.det_encode
VERBOSE = "-v" in sys.argv
FAILS = []
CHECKS = [0]


def check(cond, what, detail=""):
    CHECKS[0] += 1
    if cond:
        if VERBOSE:
            print("ok   %s" % what)
    else:
        FAILS.append(what)
        print("FAIL %s %s" % (what, detail))
    return cond


def section(name):
    if VERBOSE:
        print("--- %s" % name)


# ---------------------------------------------------------------------------
# Sheets, as docs/care-sheet.md "The signed form" says

NIRS = [insurer.nir_full(x) for x in ("2800575056123", "1841276451089", "2151113055123")]


def sheet_payload(pid, terminal, created=None, care=None, **over):
    created = int(time.time()) if created is None else created
    care = care or dt.datetime.fromtimestamp(created, dt.timezone.utc).date()
    amount = 2650
    s = {"v": 1, "id": str(uuid.uuid4()), "amc": False, "nir": NIRS[0], "seq": 1,
         "acts": [{"code": "G", "date": care.isoformat(), "amount": amount, "coef_milli": 1000}],
         "mode": "physical",
         "totals": {"amc": 0, "amo": amount * 7 // 10, "total": amount,
                    "patient": amount - amount * 7 // 10},
         "created": created, "insurer": {"caisse": "751", "centre": "0042", "regime": "01"},
         "due_date": holidays_table.due(care, 3, False).isoformat(),
         "evidence": {"read_at": created - 10, "card_serial": "25012345678901234567"},
         "care_date": care.isoformat(), "insurance": 10, "terminal_id": terminal,
         "tiers_payant": False, "practitioner_id": pid}
    s.update(over)
    return s


def sign(payload, key, raw_payload=None):
    """COSE_Sign1 over the deterministic payload (ES256 for EC, PS256 for RSA)."""
    p = raw_payload if raw_payload is not None else det(payload)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        prot = bytes.fromhex("a10126")
        tbs = det(["Signature1", prot, b"", p])
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        prot = bytes.fromhex("a1013824")
        tbs = det(["Signature1", prot, b"", p])
        sig = key.sign(tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
    return det(cbor2.CBORTag(18, [prot, {}, p, sig]))


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def batch_body(sheets, chain, pid, terminal, bid=None, created=None, **over):
    b = {"v": 1, "batch_id": bid or str(uuid.uuid4()), "terminal_id": terminal,
         "practitioner_id": pid, "created": int(time.time()) if created is None else created,
         "x5chain": chain, "sheets": sheets}
    b.update(over)
    for k in [k for k, v in b.items() if v is DROP]:
        del b[k]
    return b["batch_id"] if "batch_id" in b else None, det(b)


DROP = object()


# ---------------------------------------------------------------------------
# An HTTPS client with the terminal's certificate

class Client:
    def __init__(self, pki, port, cert="client", ca="server-ca.pem", host="127.0.0.1"):
        self.port, self.host = port, host
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, ca))
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert:
            self.ctx.load_cert_chain(os.path.join(pki, cert + ".pem"),
                                     os.path.join(pki, cert + ".key.pem"))

    def req(self, method, path, body=None, headers=None, timeout=10):
        c = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def post_batch(self, bid, body, ctype="application/cbor", key=None, timeout=10):
        h = {"Content-Type": ctype}
        if key is not False:
            h["Idempotency-Key"] = bid if key is None else key
        return self.req("POST", "/v1/batches", body, h, timeout)


def results_of(data):
    j = json.loads(data)
    return [(r["id"], r["status"], r.get("code")) for r in j["results"]]


def main():
    keep = "--keep" in sys.argv
    work = tempfile.mkdtemp(prefix="vitaled-insurer-selftest-")
    procs = []

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)
    try:
        run(work, procs)
    finally:
        for p in procs:
            p.stop()
        if keep or FAILS:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("%d checks, %d failed" % (CHECKS[0], len(FAILS)))
    return 1 if FAILS else 0


def run(work, procs):
    pki = os.path.join(work, "pki")
    p = mkpki.init_pki(pki, terminal_id="T0001", other_terminal_id="T0002",
                       practitioner_id="81000123456")
    PID, TERM = p["practitioner_id"], p["terminal_id"]
    ec_key = mkpki.load_key(p["practitioner.key"])
    ec_cert = mkpki.load_cert(p["practitioner"])
    rsa_key = mkpki.load_key(p["practitioner-rsa.key"])
    rsa_cert = mkpki.load_cert(p["practitioner-rsa"])
    EC_CHAIN, RSA_CHAIN = [der(ec_cert)], [der(rsa_cert)]

    ins = insurer.InsurerProcess(pki, os.path.join(work, "state"))
    procs.append(ins)
    cli = Client(pki, ins.port)

    def good(n=1, key=ec_key, **over):
        out = []
        for _ in range(n):
            s = sheet_payload(PID, TERM, **over)
            out.append((s["id"], sign(s, key)))
        return out

    # -- the builder agrees with the world's independent verifier
    section("sheets")
    probe = good(1)[0][1]
    probs, _ = verify_sheet.verify(probe, ec_cert.public_key())
    check(not probs, "a built sheet passes tests/world/verify_sheet.py", probs)
    s = sheet_payload(PID, TERM)
    probs, _ = verify_sheet.verify(sign(s, rsa_key), rsa_cert.public_key())
    check(not probs, "a PS256 sheet passes verify_sheet.py", probs)

    # -- TLS
    section("tls")
    st, _, _ = cli.req("GET", "/v1/opposition")
    check(st == 200, "good client certificate: 200", st)
    for cert in ("client-expired", "client-unknownca", None):
        c0 = ins.counters()["handshake_failures"]
        try:
            r = Client(pki, ins.port, cert=cert).req("GET", "/v1/opposition")
            check(False, "client certificate %s refused at the handshake" % cert, r[0])
        except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError):
            time.sleep(0.1)
            check(ins.counters()["handshake_failures"] == c0 + 1,
                  "client certificate %s refused at the handshake (counted)" % cert)
    try:
        Client(pki, ins.port, host="localhost").req("GET", "/v1/opposition")
        check(True, "server certificate valid for localhost")
    except (ssl.SSLError, OSError) as e:
        check(False, "server certificate valid for localhost", e)
    for stem, why in (("server-otherca", "certificate verify failed"),
                      ("server-wrongname", "mismatch"), ("server-expired", "expired")):
        ins.ctl("server_cert %s %s" % (p[stem], p[stem + ".key"]))
        try:
            cli.req("GET", "/v1/opposition")
            check(False, "%s refused by the client" % stem)
        except ssl.SSLCertVerificationError as e:
            check(why in str(e), "%s refused by the client (%s)" % (stem, why), e)
        except (ssl.SSLError, OSError) as e:
            check(False, "%s refused by the client (%s)" % (stem, why), e)
    ins.ctl("server_cert %s %s" % (p["server"], p["server.key"]))
    check(cli.req("GET", "/v1/opposition")[0] == 200, "good server certificate back")

    # -- a good batch, EC and RSA
    section("accept")
    sheets = good(3)
    bid, body = batch_body([x[1] for x in sheets], EC_CHAIN, PID, TERM)
    st, hd, data = cli.post_batch(bid, body)
    check(st == 200 and hd.get("content-type") == "application/json", "good batch: 200 JSON", st)
    j = json.loads(data)
    check(j["batch_id"] == bid and len(j["results"]) == 3, "answer names the batch, 3 results")
    check(results_of(data) == [(i, "accepted", None) for i, _ in sheets], "3 accepted in order",
          data)
    first_answer = data
    st, _, data = cli.post_batch(bid, body)
    check(st == 200 and data == first_answer, "same key, same bytes: same answer byte for byte")
    check(ins.counters()["replays"] == 1, "replay counted")
    _, body2 = batch_body([x[1] for x in sheets[:2]], EC_CHAIN, PID, TERM, bid=bid)
    st, _, _ = cli.post_batch(bid, body2)
    check(st == 409, "same key, other bytes: 409", st)
    rs = good(2, key=rsa_key)
    bid_r, body_r = batch_body([x[1] for x in rs], RSA_CHAIN, PID, TERM)
    st, _, data = cli.post_batch(bid_r, body_r)
    check(st == 200 and [x[1] for x in results_of(data)] == ["accepted"] * 2, "PS256 batch accepted",
          data)
    # chain through the intermediate
    ik = ec.generate_private_key(ec.SECP256R1())
    icert = mkpki.issue_practitioner(pki, ik.public_key(), PID, intermediate=True)
    s = sheet_payload(PID, TERM)
    _, b = batch_body([sign(s, ik)], [der(icert), der(mkpki.load_cert(p["practitioner-int"]))],
                      PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(st == 200 and results_of(data)[0][1] == "accepted", "chain with an intermediate", data)
    _, b = batch_body([sign(sheet_payload(PID, TERM), ik)], [der(icert)], PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data)[0][2] == "certificate", "intermediate missing: certificate", data)

    # -- duplicates, conflicts, and the order of judgement
    section("per-sheet")
    conflict = sheet_payload(PID, TERM, id=sheets[0][0], seq=7)
    unknown_ca_cert = mkpki.issue_practitioner(pki, ec_key.public_key(), PID, unknown_ca=True)
    bid3, body3 = batch_body([sheets[1][1], sign(conflict, ec_key)], EC_CHAIN, PID, TERM)
    st, _, data = cli.post_batch(bid3, body3)
    check(results_of(data) == [(sheets[1][0], "duplicate", None), (sheets[0][0], "rejected", "conflict")],
          "duplicate, then conflict", data)
    # held sheet under an untrusted certificate (same key): certificate before duplicate
    _, b = batch_body([sheets[2][1]], [der(unknown_ca_cert)], PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data) == [(sheets[2][0], "rejected", "certificate")],
          "certificate is judged before duplicate", data)

    other_key = ec.generate_private_key(ec.SECP256R1())
    bad_totals = sheet_payload(PID, TERM)
    bad_totals["totals"]["total"] += 1
    both = sheet_payload(PID, TERM)
    both["totals"]["total"] += 1
    nondet_payload = sheet_payload(PID, TERM)
    raw_nd = cbor2.dumps(dict(reversed(list(nondet_payload.items()))))   # keys not sorted
    old = int(time.time()) - 3 * 86400
    old_sheet = sheet_payload(PID, TERM, created=old)   # before the certificate's not_before
    other_prat = sheet_payload("810009999999"[:11], TERM)
    wrong_type = sheet_payload(PID, TERM, seq="1")
    extra_key = sheet_payload(PID, TERM, colour="blue")
    v2 = sheet_payload(PID, TERM, v=2)
    upper_id = sheet_payload(PID, TERM, id=str(uuid.uuid4()).upper())
    future = sheet_payload(PID, TERM, created=int(time.time()) + 3600)
    forced = sheet_payload(PID, TERM)
    ins.ctl("reject %s signature reason='test says no'" % forced["id"])
    cases = [
        (b"\x01\x02garbage", None, "malformed", "not CBOR"),
        (b"\xf6", None, "malformed", "CBOR null"),
        (det(cbor2.CBORTag(18, [bytes.fromhex("a10126"), {}, b"\xa0", b""])), None, "malformed",
         "an empty payload map (no id)"),
        (sign(None, ec_key, raw_payload=raw_nd), nondet_payload["id"], "malformed",
         "non-deterministic payload"),
        (sign(wrong_type, ec_key), wrong_type["id"], "malformed", "seq as text"),
        (sign(extra_key, ec_key), extra_key["id"], "malformed", "extra key"),
        (sign(v2, ec_key), v2["id"], "malformed", "v 2"),
        (sign(upper_id, ec_key), upper_id["id"], "malformed", "upper-case id"),
        (sign(both, other_key), both["id"], "signature", "other key (and invalid)"),
        (sign(bad_totals, rsa_key), bad_totals["id"], "signature", "PS256 against an EC cert"),
        (sign(old_sheet, ec_key), old_sheet["id"], "certificate", "made before not_before"),
        (sign(other_prat, ec_key), other_prat["id"], "certificate", "another practitioner"),
        (sign(bad_totals, ec_key), bad_totals["id"], "invalid", "totals"),
        (sign(future, ec_key), future["id"], "invalid", "created in the future"),
        (sign(forced, ec_key), forced["id"], "signature", "forced reject with a code"),
    ]
    ok_sheet = good(1)[0]
    raws = [c[0] for c in cases] + [ok_sheet[1]]
    bid4, body4 = batch_body(raws, EC_CHAIN, PID, TERM)
    st, _, data = cli.post_batch(bid4, body4)
    check(st == 200, "mixed batch: 200", st)
    got = results_of(data)
    for (raw, sid, code, what), r in zip(cases, got):
        check(r == (sid, "rejected", code), "rejected %s: %s" % (code, what), r)
    check(got[-1] == (ok_sheet[0], "accepted", None), "the good sheet of a mixed batch accepted",
          got[-1])
    j = json.loads(data)
    check(all(isinstance(r.get("reason"), str) and r["reason"] for r in j["results"][:-1]),
          "every rejection has a reason")
    check(j["results"][-2]["reason"] == "test says no", "forced reason", j["results"][-2])
    # expired practitioner certificate
    xk = ec.generate_private_key(ec.SECP256R1())
    xc = mkpki.issue_practitioner(pki, xk.public_key(), PID, expired=True)
    _, b = batch_body([sign(sheet_payload(PID, TERM), xk)], [der(xc)], PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data)[0][2] == "certificate", "expired practitioner certificate", data)
    # but a sheet made while it was valid is fine
    made = int(time.time()) - 20 * 86400
    s = sheet_payload(PID, TERM, created=made)
    _, b = batch_body([sign(s, xk)], [der(xc)], PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data)[0][1] == "accepted", "a sheet made while the certificate was valid", data)
    # a signing certificate whose key usage allows no signature
    ek = ec.generate_private_key(ec.SECP256R1())
    ecrt = mkpki.issue_practitioner(pki, ek.public_key(), PID, key_usage="encipher")
    _, b = batch_body([sign(sheet_payload(PID, TERM), ek)], [der(ecrt)], PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data)[0][2] == "certificate", "key usage without digitalSignature", data)
    # a CPS-style serialNumber: one type digit, then the id
    ck = ec.generate_private_key(ec.SECP256R1())
    ccrt = mkpki.issue_practitioner(pki, ck.public_key(), "8" + PID)
    _, b = batch_body([sign(sheet_payload(PID, TERM), ck)], [der(ccrt)], PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data)[0][1] == "accepted", "serialNumber 8 + the practitioner id", data)
    # two copies of one sheet in one batch
    twin = good(1)[0]
    _, b = batch_body([twin[1], twin[1]], EC_CHAIN, PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data) == [(twin[0], "accepted", None), (twin[0], "duplicate", None)],
          "two copies in one batch: accepted, duplicate", data)
    # a rejected sheet is not held: judged again
    ins.ctl("unreject %s" % forced["id"])
    _, b = batch_body([sign(forced, ec_key)], EC_CHAIN, PID, TERM)
    st, _, data = cli.post_batch(cbor2.loads(b)["batch_id"], b)
    check(results_of(data)[0][1] == "accepted", "a rejected sheet is judged again", data)

    # -- 400s, 403, 413
    section("batch errors")
    g = good(1)

    def expect(status, code, what, body_bid=None, **kw):
        ctype = kw.pop("ctype", "application/cbor")
        key = kw.pop("key", None)
        raw = kw.pop("raw", None)
        if raw is None:
            bb, raw = batch_body(kw.pop("sheets", [g[0][1]]), kw.pop("chain", EC_CHAIN),
                                 kw.pop("pid", PID), kw.pop("terminal", TERM), **kw)
        else:
            bb = body_bid
        st, _, data = cli.post_batch(bb, raw, ctype=ctype, key=key)
        try:
            e = json.loads(data).get("error")
        except ValueError:
            e = None
        check(st == status and (code is None or e == code), "%d %s: %s" % (status, code, what),
              (st, data[:200]))
        return st, data
    good_bid, good_raw = batch_body([g[0][1]], EC_CHAIN, PID, TERM)
    expect(400, "content_type", "application/json", good_bid, raw=good_raw, ctype="application/json")
    u = str(uuid.uuid4())
    unsorted = cbor2.dumps({"v": 1, "sheets": [g[0][1]], "batch_id": u, "created": 1,
                            "x5chain": EC_CHAIN, "terminal_id": TERM, "practitioner_id": PID})
    # cbor2 writes insertion order: batch_id before created is not RFC 8949 order
    expect(400, "cbor", "keys not in deterministic order", u, raw=unsorted)
    u = str(uuid.uuid4())
    expect(400, "cbor", "trailing bytes", u, raw=batch_body([g[0][1]], EC_CHAIN, PID, TERM, bid=u)[1]
           + b"\x00")
    expect(400, "cbor", "not a map", str(uuid.uuid4()), raw=det([1, 2]))
    expect(400, "keys", "an extra key", extra=1)
    expect(400, "keys", "a missing key", x5chain=DROP)
    expect(400, "version", "v 2", v=2)
    expect(400, "batch_id", "upper-case batch id", bid=str(uuid.uuid4()).upper())
    bb, raw = batch_body([g[0][1]], EC_CHAIN, PID, TERM)
    expect(400, "idempotency_key", "key differs", bb, raw=raw, key=str(uuid.uuid4()))
    bb, raw = batch_body([g[0][1]], EC_CHAIN, PID, TERM)
    expect(400, "idempotency_key", "no key", bb, raw=raw, key=False)
    expect(400, "terminal_id", "empty terminal id", terminal="")
    expect(403, "terminal_id", "another terminal's id", terminal="T0002")
    expect(400, "practitioner_id", "10 digits", pid="8100012345")
    expect(400, "created", "batch created an hour ahead", created=int(time.time()) + 3600)
    expect(400, "created", "created as text", created="now")
    expect(400, "x5chain", "empty chain", chain=[])
    expect(400, "x5chain", "not DER", chain=[b"\x30\x00"])
    expect(400, "sheets", "a sheet as text", sheets=["x"])
    expect(400, "limit", "0 sheets", sheets=[])
    expect(400, "limit", "501 sheets", sheets=[g[0][1]] * 501)
    ins.ctl("mark %s" % g[0][0])
    st, data = expect(400, "sheets", "a batch holding a marked sheet", sheets=[good(1)[0][1], g[0][1]])
    ins.ctl("mark %s limit" % g[0][0])
    expect(400, "limit", "marked with another error code", sheets=[g[0][1]])
    ins.ctl("unmark %s" % g[0][0])
    # a 400 is remembered: same key and bytes, same answer byte for byte
    bb, raw = batch_body([g[0][1]], EC_CHAIN, PID, TERM, v=3)
    st1, _, d1 = cli.post_batch(bb, raw)
    st2, _, d2 = cli.post_batch(bb, raw)
    check(st1 == st2 == 400 and d1 == d2, "a 400 is remembered byte for byte")
    r0 = ins.counters()["replays"]
    st3, _, _ = cli.post_batch(bb, batch_body([g[0][1]], EC_CHAIN, PID, TERM, bid=bb)[1])
    check(st3 == 409, "a 400 is remembered: the same key with other (good) bytes is 409", st3)
    check(r0 >= 2, "replays counted", r0)
    # 413
    big = [g[0][1]] + [b"\x00" * (1 << 20)] * 4
    expect(413, "size", "body over 4 MiB", sheets=big)
    ins.ctl("max_body 600")
    bb, raw = batch_body([x[1] for x in good(2)], EC_CHAIN, PID, TERM)
    expect(413, "size", "413 above a size set at run time", bb, raw=raw)
    if shutil.which("curl"):
        f = os.path.join(work, "body.cbor")
        with open(f, "wb") as fh:
            fh.write(raw)
        out = subprocess.run(
            ["curl", "-sS", "--cacert", p["server-ca"], "--cert", p["client"], "--key",
             p["client.key"], "-H", "Content-Type: application/cbor", "-H", "Idempotency-Key: " + bb,
             "-H", "Expect: 100-continue", "--data-binary", "@" + f, "-o", "/dev/null",
             "-w", "%{http_code}", ins.url + "v1/batches"], capture_output=True, text=True,
            timeout=30)
        check(out.stdout == "413", "413 instead of 100 Continue (curl)", (out.stdout, out.stderr))
    ins.ctl("max_body %d" % insurer.MAX_BODY)
    st, _, data = cli.post_batch(bb, raw)
    check(st == 200, "after the size knob is lifted, the same batch goes", st)

    # -- fault knobs
    section("faults")
    c0 = ins.counters()

    def fresh():
        x = good(2)
        bb, raw = batch_body([y[1] for y in x], EC_CHAIN, PID, TERM)
        return x, bb, raw
    x, bb, raw = fresh()
    ins.ctl("fail 503 2 retry_after=7")
    r1, r2 = cli.post_batch(bb, raw), cli.post_batch(bb, raw)
    check(r1[0] == r2[0] == 503 and r1[1].get("retry-after") == "7", "503 with Retry-After, twice",
          (r1[0], r2[0], r1[1]))
    r3 = cli.post_batch(bb, raw)
    check(r3[0] == 200 and [y[1] for y in results_of(r3[2])] == ["accepted"] * 2,
          "then judged afresh (a 5xx is not remembered)", r3[0])
    x, bb, raw = fresh()
    ins.ctl("fail 500")
    r = cli.post_batch(bb, raw)
    check(r[0] == 500 and "retry-after" not in r[1], "500 without Retry-After", r[:2])
    ins.ctl("fail 429 retry_after=date:30")
    r = cli.post_batch(bb, raw)
    ra = r[1].get("retry-after", "")
    when = email.utils.parsedate_to_datetime(ra).timestamp() if ra else 0
    check(r[0] == 429 and 20 < when - time.time() < 40, "429 with an HTTP-date Retry-After", ra)
    ins.ctl("fail 502 path=/v1/returns")
    check(cli.req("GET", "/v1/returns")[0] == 502, "a fault on another path")
    check(cli.post_batch(bb, raw)[0] == 200, "the batches path untouched by it")
    # delay past the client's timeout: the insurer judged it; the retry gets the answer
    x, bb, raw = fresh()
    ins.ctl("delay 1.5")
    t0 = time.time()
    try:
        cli.post_batch(bb, raw, timeout=0.5)
        check(False, "delay past the client's timeout")
    except (socket.timeout, TimeoutError, ssl.SSLError, OSError):
        check(time.time() - t0 < 1.4, "delay past the client's timeout")
    time.sleep(1.3)
    r = cli.post_batch(bb, raw)
    check(r[0] == 200 and [y[1] for y in results_of(r[2])] == ["accepted"] * 2,
          "after a delay, the retry gets the remembered answer", r[2][:200])
    for kind, exc_ok in (("reset", (ConnectionError, ssl.SSLError, http.client.HTTPException, OSError)),
                         ("truncate", (http.client.IncompleteRead, ConnectionError, ssl.SSLError,
                                       http.client.HTTPException, OSError))):
        x, bb, raw = fresh()
        ins.ctl(kind)
        try:
            r = cli.post_batch(bb, raw)
            check(False, "%s in the middle of the answer" % kind, r[:2])
        except exc_ok as e:
            check(True, "%s in the middle of the answer (%s)" % (kind, type(e).__name__))
        r = cli.post_batch(bb, raw)
        check(r[0] == 200 and [y[1] for y in results_of(r[2])] == ["accepted"] * 2,
              "after a %s, the retry gets the remembered answer" % kind)
    ins.ctl("reset at=5")
    try:
        cli.req("GET", "/v1/opposition")
        check(False, "reset before the status line")
    except (ConnectionError, ssl.SSLError, http.client.HTTPException, OSError):
        check(True, "reset before the status line")
    for kind in ("html", "notjson", "empty", "wrongid", "short", "status", "order"):
        x, bb, raw = fresh()
        ins.ctl("garbage kind=%s" % kind)
        r = cli.post_batch(bb, raw)
        bad = False
        try:
            j = json.loads(r[2])
            bad = (j.get("batch_id") != bb or len(j.get("results", [])) != 2 or
                   [y["id"] for y in j["results"]] != [y[0] for y in x] or
                   any(y["status"] not in ("accepted", "duplicate", "rejected") for y in j["results"]))
        except ValueError:
            bad = True
        check(r[0] == 200 and bad, "garbage 200 (%s) is not the documented answer" % kind, r[2][:80])
        r = cli.post_batch(bb, raw)
        check(results_of(r[2]) == [(y[0], "accepted", None) for y in x],
              "after garbage (%s), the retry gets the real answer" % kind)
    x, bb, raw = fresh()
    ins.ctl("garbage kind=html process=0")
    cli.post_batch(bb, raw)
    bid_new, raw_new = batch_body([y[1] for y in x], EC_CHAIN, PID, TERM)
    r = cli.post_batch(bid_new, raw_new)
    check(results_of(r[2]) == [(y[0], "accepted", None) for y in x],
          "garbage with process=0: nothing was held", r[2][:200])
    ins.ctl("fail 401")
    check(cli.req("GET", "/v1/opposition")[0] == 401, "401 on demand")
    ins.ctl("fail 503 3")
    ins.ctl("clear")
    check(cli.req("GET", "/v1/opposition")[0] == 200, "clear drops pending faults")
    c1 = ins.counters()
    check(c1["faults"].get("garbage", 0) - c0["faults"].get("garbage", 0) == 8,
          "faults counted", c1["faults"])
    check(c1["answers"].get("503", 0) >= 2 and c1["answers"].get("413", 0) >= 2,
          "answers counted by status", c1["answers"])
    check(c1["batches"] > 20 and c1["requests"] > c1["batches"], "requests and batches counted",
          (c1["requests"], c1["batches"]))

    # -- after a new batch id, the same sheets are duplicates (restart of the terminal)
    x, bb, raw = fresh()
    cli.post_batch(bb, raw)
    bb2, raw2 = batch_body([y[1] for y in x], EC_CHAIN, PID, TERM)
    r = cli.post_batch(bb2, raw2)
    check(results_of(r[2]) == [(y[0], "duplicate", None) for y in x],
          "the same sheets in a new batch: duplicate")

    # -- ground truth
    section("ground truth")
    gt = ins.held()
    ids = [s["id"] for s in gt["sheets"]]
    check(len(ids) == len(set(ids)) == gt["count"] == ins.counters()["held"],
          "held.json: every sheet once", (len(ids), len(set(ids)), gt["count"]))
    check(ins.counters()["sheets"]["accepted"] == len(ids), "accepted answers = sheets held",
          (ins.counters()["sheets"]["accepted"], len(ids)))
    by_id = {s["id"]: s for s in gt["sheets"]}
    ok = True
    for sid, raw in sheets + rs + [ok_sheet]:
        rec = by_id.get(sid)
        ok = ok and rec is not None and rec["sha256"] == hashlib.sha256(raw).hexdigest() \
            and rec["terminal_id"] == TERM
        with open(os.path.join(ins.state, "sheets", sid + ".cose"), "rb") as f:
            ok = ok and f.read() == raw
    check(ok, "held.json and sheets/: the bytes sent, digest, terminal")
    check(not any(c[1] in by_id for c in cases if c[1] and c[1] != forced["id"]),
          "no rejected sheet held")
    j = ins.answers()
    check(any(e.get("fault") == "reset" and e.get("results") for e in j), "answers.jsonl journal")

    # -- returns
    section("returns")
    st, _, data = cli.req("GET", "/v1/returns")
    j = json.loads(data)
    check(st == 200 and j["returns"] == [] and j["next"], "returns: none yet", data)
    first_cursor = j["next"]
    n = int(ins.ctl("pay all"))
    check(n == len(ids), "pay all held sheets", n)
    got, cur, pages = [], "", 0
    while True:
        st, _, data = cli.req("GET", "/v1/returns?limit=7" + ("&after=" + cur if cur else ""))
        j = json.loads(data)
        if st != 200 or not j["returns"]:
            break
        got += j["returns"]
        cur = j["next"]
        pages += 1
    check(len(got) == len(ids) and pages == -(-len(ids) // 7), "returns in pages of 7", (len(got), pages))
    check(all(r["kind"] == "paid" and r["amount"] == 1855 and r["date"] for r in got),
          "paid with the AMO part", got[:1])
    check(j["next"] == cur, "up to date: next is the cursor asked with", (j, cur))
    st, _, data = cli.req("GET", "/v1/returns?after=" + first_cursor)
    check(len(json.loads(data)["returns"]) == min(100, len(ids)), "an old cursor still valid")
    check(cli.req("GET", "/v1/returns?after=nope.3")[0] == 400, "unknown cursor: 400")
    check(cli.req("GET", "/v1/returns?limit=1001")[0] == 400, "limit over 1000: 400")
    other = Client(pki, ins.port, cert="client-other")
    st, _, data = other.req("GET", "/v1/returns")
    check(st == 200 and json.loads(data)["returns"] == [], "another terminal sees none of them")
    ins.ctl("returns_auto refused")
    x, bb, raw = fresh()
    cli.post_batch(bb, raw)
    st, _, data = cli.req("GET", "/v1/returns?after=" + cur)
    j = json.loads(data)
    check([(r["sheet_id"], r["kind"], r["code"]) for r in j["returns"]] ==
          [(y[0], "refused", "rights") for y in x], "returns_auto refused", data)
    ins.ctl("returns_auto off")
    ghost = str(uuid.uuid4())
    ins.ctl("return %s '%s'" % (TERM, json.dumps({"sheet_id": ghost, "kind": "paid", "amount": 1,
                                                  "date": "2026-01-02"})))
    st, _, data = cli.req("GET", "/v1/returns?after=" + j["next"])
    check([r["sheet_id"] for r in json.loads(data)["returns"]] == [ghost],
          "a return for an unknown sheet, injected")

    # -- rights
    section("rights")
    q = {"nir": NIRS[0], "birth_date": "1980-05-14", "care_date": "2026-12-05"}
    st, _, data = cli.req("POST", "/v1/rights", json.dumps(q), {"Content-Type": "application/json"})
    j = json.loads(data)
    check(st == 200 and j["regime"] == "01" and j["caisse"] == "751" and j["centre"] == "0042"
          and j["rights"] and j["amc"]["tiers_payant"] is True and j["checked"].endswith("Z"),
          "rights: a known beneficiary", data)
    q2 = dict(q, nir=insurer.nir_full("112032A004017"), birth_date="2012-03-02", birth_rank=1)
    st, _, data = cli.req("POST", "/v1/rights", json.dumps(q2), {"Content-Type": "application/json"})
    check(st == 200 and "amc" not in json.loads(data), "rights: no AMC known", data)
    st, _, data = cli.req("POST", "/v1/rights", json.dumps(dict(q, birth_rank=2)),
                          {"Content-Type": "application/json"})
    check(st == 404 and json.loads(data)["error"] == "unknown", "rights: unknown beneficiary", data)
    st, _, data = cli.req("POST", "/v1/rights", json.dumps(dict(q, nir="1")),
                          {"Content-Type": "application/json"})
    check(st == 400 and json.loads(data)["error"] == "nir", "rights: bad NIR", data)
    ins.ctl("beneficiary '%s'" % json.dumps({"nir": NIRS[1], "birth_date": "1984-02-12",
                                              "regime": "01", "caisse": "751", "centre": "0001",
                                              "rights": []}))
    st, _, data = cli.req("POST", "/v1/rights", json.dumps(dict(q, nir=NIRS[1], birth_date="1984-02-12")),
                          {"Content-Type": "application/json"})
    check(st == 200, "rights: a beneficiary added at run time", data)
    bfile = os.path.join(work, "benef.json")
    with open(bfile, "w") as f:
        json.dump([{"nir": NIRS[2], "birth_date": "2015-11-30", "regime": "02", "caisse": "130",
                    "centre": "0550", "rights": []}], f)

    # -- opposition
    section("opposition")
    st, _, data = cli.req("GET", "/v1/opposition")
    c0 = json.loads(data)["next"]
    ins.ctl("oppose 8A3F00120045 AAAA")
    st, _, data = cli.req("GET", "/v1/opposition?after=" + c0)
    j = json.loads(data)
    check(j["added"] == ["8A3F00120045", "AAAA"] and j["removed"] == [], "opposition: added", data)
    ins.ctl("unoppose AAAA")
    st, _, data = cli.req("GET", "/v1/opposition?after=" + j["next"])
    j2 = json.loads(data)
    check(j2["added"] == [] and j2["removed"] == ["AAAA"], "opposition: removed", data)
    st, _, data = cli.req("GET", "/v1/opposition")
    check(json.loads(data)["added"] == ["8A3F00120045"], "opposition: the whole list")
    check(cli.req("GET", "/v1/opposition?after=zz")[0] == 400, "opposition: unknown cursor")
    check(cli.req("GET", "/v1/nothing")[0] == 404 and cli.req("GET", "/v1/batches")[0] == 405,
          "404 and 405")

    # -- a restart keeps what is held
    section("restart")
    held_before = ins.held()["count"]
    ins.stop()
    procs.remove(ins)
    ins2 = insurer.InsurerProcess(pki, os.path.join(work, "state"),
                                  extra=["--beneficiaries", bfile])
    procs.append(ins2)
    cli2 = Client(pki, ins2.port)
    bb2, raw2 = batch_body([sheets[0][1]], EC_CHAIN, PID, TERM)
    r = cli2.post_batch(bb2, raw2)
    check(results_of(r[2]) == [(sheets[0][0], "duplicate", None)] and
          ins2.counters()["held"] == held_before, "after an insurer restart, held sheets stay", r[2])
    st, _, data = cli2.req("GET", "/v1/returns?after=" + first_cursor)
    check(st == 200 and len(json.loads(data)["returns"]) == min(100, held_before + 1),
          "after a restart, cursors stay valid", st)
    st, _, data = cli2.req("POST", "/v1/rights", json.dumps(
        {"nir": NIRS[2], "birth_date": "2015-11-30", "care_date": "2026-12-05"}),
        {"Content-Type": "application/json"})
    check(st == 200 and json.loads(data)["caisse"] == "130", "--beneficiaries FILE", data)
    st, _, _ = cli2.req("POST", "/v1/rights", json.dumps(q), {"Content-Type": "application/json"})
    check(st == 404, "--beneficiaries replaces the defaults", st)

    # -- listening late
    section("listening late")
    late = insurer.InsurerProcess(pki, os.path.join(work, "late"), closed=True)
    procs.append(late)
    lc = Client(pki, late.port)
    try:
        lc.req("GET", "/v1/opposition", timeout=3)
        check(False, "closed port: connection refused")
    except ConnectionRefusedError:
        check(True, "closed port: connection refused")
    except OSError as e:
        check(False, "closed port: connection refused", e)
    check(late.ctl("listen") == str(late.port), "listen on command")
    check(lc.req("GET", "/v1/opposition")[0] == 200, "then it answers")
    late.ctl("close")
    try:
        lc.req("GET", "/v1/opposition", timeout=3)
        check(False, "closed again: refused")
    except ConnectionRefusedError:
        check(True, "closed again: refused")
    except OSError as e:
        check(False, "closed again: refused", e)
    late.ctl("listen")
    check(lc.req("GET", "/v1/opposition")[0] == 200, "and open again, same port")
    late.stop()
    procs.remove(late)
    check(late.proc.poll() is not None, "insurer stopped by PID")

    # -- TLS 1.2 only client
    c12 = Client(pki, ins2.port)
    c12.ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    check(c12.req("GET", "/v1/opposition")[0] == 200, "a TLS 1.2 client")
    c11 = Client(pki, ins2.port)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            c11.ctx.minimum_version = ssl.TLSVersion.TLSv1
            c11.ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        c11.req("GET", "/v1/opposition")
        check(False, "a TLS 1.1 client refused")
    except (ssl.SSLError, OSError, ValueError):
        check(True, "a TLS 1.1 client refused")


if __name__ == "__main__":
    sys.exit(main())
