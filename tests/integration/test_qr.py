#!/usr/bin/python3
"""The digital carte Vitale by QR code end to end (docs/digital-card.md part 2).

A phone side written from the doc (tests/world/phone_qr.py) makes codes with a
test insurer (tests/world/issuer.py) in this test's temporary directory; each
code is rendered to a picture with qrencode and decoded back with zbarimg
(proof that it scans), then typed by a serial scanner emulator on a
pseudo-terminal (tests/world/scanner_emu.py) into vitaled's `[scanner] device`.

  scan       NewChallenge, a good code with it: CardInserted (digital-qr) ->
             CardRead; GetCard shows presentation digital-qr, the holder, the
             evidence (the credential and presentation as the phone made them,
             the challenge); a care sheet from it has mode digital-qr, and its
             export verifies with the independent verifier, with vitalectl
             sheet verify, and its evidence's presentation verifies with the
             device key of its credential (Python, independently); uploaded,
             the test insurer (tests/insurer/insurer.py) accepts and holds it
  refusals   CardError with its name: replayed (the same code again),
             challenge_mismatch, chain_untrusted (foreign issuer), uv_false (no
             code entered), qr_unreadable (truncated, corrupted, too long),
             challenge_required (a one-way code while [digital] does not allow
             them)
  present    PresentCode: a good code comes back as the card; a bad one as
             CodeRefused with its reason; the API reader shows in ListReaders
  oneway     [digital] qr_one_way = true: a fresh one-way code accepted, an
             hour-old one presentation_expired; after a restart the first one is
             still replayed (the replay cache outlives the restart)
  hotplug    the scanner unplugged: ReaderRemoved; plugged back: ReaderAdded and
             the next scan read
  keyboard   the same through /dev/uinput as a keyboard scanner in AZERTY
             (skipped with its reason where /dev/uinput is missing)
  log        no NIR, name or code text in vitaled's log

Exit 0 pass, 77 skip, 1 fail. Every process stopped by PID on every exit path.
"""

import base64
import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, till_part  # noqa: E402

WORLD = os.path.join(sl.TOP, "tests", "world")
sys.path.insert(0, WORLD)
sys.path.insert(0, os.path.join(sl.TOP, "tests", "insurer"))
import insurer  # noqa: E402  (the test insurer: tests/insurer/insurer.py)
import mkpki  # noqa: E402
import issuer  # noqa: E402
import phone_qr  # noqa: E402
import scanner_emu  # noqa: E402
import verify_credential as vc  # noqa: E402

check = harness.check
G = {}
TERMINAL = "T0001"   # the test insurer's PKI names this terminal


def scanner_reader():
    return "scanner:" + G["link"]


def show_and_scan(text, scanner=None):
    """Render the code, decode the picture with zbarimg, type what it read."""
    png = os.path.join(G["tmp"], "code.png")
    phone_qr.render_png(text, png)
    got = phone_qr.zbar_decode(png)
    check(got == text, "zbarimg reads back the code (%s characters)" % len(text))
    (scanner or G["scanner"]).scan(got)


def expect_read(w, reader):
    w.wait_for("CardInserted", reader=reader, timeout=10)
    e = w.wait_for(("CardRead", "CardError"), reader=reader, timeout=10)
    check(e["type"] == "CardRead", "CardRead expected, got %r" % e)
    return e


def expect_error(w, reader, reason):
    w.wait_for("CardInserted", reader=reader, timeout=10)
    e = w.wait_for(("CardRead", "CardError"), reader=reader, timeout=10)
    check(e["type"] == "CardError" and e.get("reason") == reason,
          "CardError %s expected, got %r" % (reason, e))
    return e


def challenge(d):
    err, r = call(d, "NewChallenge")
    check(err is None and len(r["challenge"]) == 6 and r["expires_in_s"] > 0, "NewChallenge: %s %r" % (err, r))
    return r["challenge"]


def start_daemon(name, extra=""):
    dd = os.path.join(G["tmp"], name)
    os.makedirs(dd, exist_ok=True)
    pki = G["pki"]
    ins = ("[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
           "client_key = %s/client.key.pem\nsigner_chain = %s\nupload_interval_s = 3600\n"
           "connect_timeout_s = 2\n" % (G["ins"].url, pki, pki, pki, G["chain"]))
    conf = sl.conf(G["key"], log_level="debug", extra=(
        "[pcsc]\nenabled = false\n[digital]\ntrust_anchor = %s\n%s[scanner]\ndevice = %s\n%s"
        % (os.path.join(G["world"], "ca.pem"), extra, G["link"], ins)))
    conf = conf.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)
    d = harness.Daemon(conf=conf, tmp=G["tmp"], name=name, timeout=15.0)
    d.state = os.path.join(G["tmp"], "state")   # one state dir: the replay cache is there
    w = None
    d.start()
    return d, w


def wait_reader(d, name, present=True, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        rs = {r["name"]: r for r in d.invoke("ListReaders")["readers"]}
        if (name in rs) == present:
            return rs.get(name)
        time.sleep(0.1)
    raise harness.Failure("reader %s %s" % (name, "never came" if present else "never went"))


# ------------------------------------------------------------------ tests


def t_scan():
    d = G["d"]
    r = wait_reader(d, scanner_reader())
    check(r["driver"] == "qr" and r["kind"] == "qr", "the scanner is a reader of kind qr: %r" % r)
    c = challenge(d)
    text = phone_qr.make_code(G["world"], "good", challenge=c, cred=G["cred"], device_key=G["dk"])
    w = harness.Watch(d)
    try:
        t0 = time.monotonic()
        show_and_scan(text)
        e = expect_read(w, scanner_reader())
        dt = time.monotonic() - t0
    finally:
        w.close()
    check(e["profile"] == "digital-qr", "CardRead profile %r" % e.get("profile"))
    err, g = call(d, "GetCard", {"reader": scanner_reader()})
    card = g["card"]
    check(card["presentation"] == "digital-qr" and card["kind"] == "digital", "GetCard: %r" % card)
    holder = issuer.default_holder()
    b0 = card["beneficiaries"][0]
    check(b0["surname"] == holder["surname"] and b0["nir"] == holder["nir"], "the holder: %r" % b0)
    check(len(card["beneficiaries"]) == 3, "holder and two beneficiaries")
    ev = card["evidence"]
    check(ev["holder_verified"] and ev["challenge"] == c, "evidence: %r" % {k: ev[k] for k in ev if k not in ("credential", "device_answer")})
    cred, pres = G["unpack"](text)
    check(base64.b64decode(ev["credential"]) == cred, "evidence.credential is the phone's")
    check(base64.b64decode(ev["device_answer"]) == pres, "evidence.device_answer is the presentation")
    check(card["can_back_sheet"] is True, "can_back_sheet: %r" % card.get("why"))
    check(card["fields"].get("freshness") == "challenge", "freshness: %r" % card["fields"])
    # the care sheet
    till = till_part()
    till.pop("insurer")
    err, s = call(d, "CreateSheet", {"reader": scanner_reader(), "sheet": till})
    check(err is None, "CreateSheet from the QR card: %s %r" % (err, s))
    data = sl.export(d, s["id"])
    problems, info = sl.verify(data, G["pub"])
    check(not problems and info.get("signature_ok"), "independent verifier: %r" % problems)
    sheet = info["sheet"]
    check(sheet["mode"] == "digital-qr", "mode %r" % sheet["mode"])
    check(sheet["evidence"]["device_answer"] == pres and sheet["evidence"]["credential"] == cred,
          "the sheet's evidence is the presentation and credential")
    # the presentation in the sheet verifies with the credential's device key
    anchors = vc.load_anchors([os.path.join(G["world"], "ca.pem")])
    payload, dkey = vc.verify_credential(sheet["evidence"]["credential"], anchors)
    G["verify_pres"](sheet["evidence"]["device_answer"], dkey, payload["cid"], c)
    f = os.path.join(G["tmp"], "sheet.cose")
    with open(f, "wb") as fh:
        fh.write(data)
    p = subprocess.run([harness.VITALECTL, "sheet", "verify", f, "--cert", G["cert"]],
                       capture_output=True, text=True, env={"VITALED_SOCKET": "/nonexistent"})
    check(p.returncode == 0 and "valid" in p.stdout, "vitalectl sheet verify: %s %s" % (p.stdout, p.stderr))
    # the test insurer: uploaded, its checks passed, held byte for byte
    call(d, "Upload")
    end = time.monotonic() + 20
    state = None
    while time.monotonic() < end:
        err, g = call(d, "GetSheet", {"id": s["id"]})
        state = g["meta"]["state"]
        if state in ("accepted", "paid", "rejected", "refused"):
            break
        time.sleep(0.2)
    check(state in ("accepted", "paid"), "the test insurer accepts the digital-qr sheet: %s" % state)
    held = [x for x in G["ins"].held()["sheets"] if x["id"] == s["id"]]
    check(len(held) == 1 and held[0]["sha256"] == hashlib.sha256(data).hexdigest(),
          "the insurer holds the sheet byte for byte: %r" % held)
    G["good_text"] = text
    print("  scan: %d characters, scan-to-CardRead %.0f ms; sheet %s mode digital-qr verified "
          "(independent verifier, vitalectl sheet verify) and %s by the test insurer"
          % (len(text), dt * 1000, s["id"][:8], state), flush=True)


def t_refusals():
    d = G["d"]
    rd = scanner_reader()
    w = harness.Watch(d)
    seen = []
    try:
        # the same code again
        G["scanner"].scan(G["good_text"])
        expect_error(w, rd, "replayed")
        seen.append("replayed")
        for kind, reason in (("wrong_challenge", "challenge_mismatch"),
                             ("foreign_issuer", "chain_untrusted"),
                             ("no_code", "uv_false"),
                             ("truncated", "qr_unreadable"),
                             ("other_key", "device_signature"),
                             ("nfc_answer", "payload_invalid"),
                             ("version2", "bad_version"),
                             ("expired", "challenge_required")):
            c = challenge(d)
            text = phone_qr.make_code(G["world"], kind, challenge=c, cred=G["cred"], device_key=G["dk"])
            show_and_scan(text)
            expect_error(w, rd, reason)
            seen.append(reason)
        # corrupted: refused with a name (which one depends on where the change falls)
        c = challenge(d)
        text = phone_qr.make_code(G["world"], "corrupted", challenge=c, cred=G["cred"], device_key=G["dk"])
        G["scanner"].scan(text)
        w.wait_for("CardInserted", reader=rd, timeout=10)
        e = w.wait_for(("CardRead", "CardError"), reader=rd, timeout=10)
        check(e["type"] == "CardError" and e.get("reason") not in (None, "internal_error"),
              "a corrupted code: %r" % e)
        seen.append("corrupted:" + e["reason"])
        # a line longer than any code
        G["scanner"].scan("VQ1:" + "0" * 5000)
        e = expect_error(w, rd, "qr_unreadable")
        seen.append("too long")
        # garbage with odd bytes
        G["scanner"].scan("\x01\x7f\xff not a code")
        expect_error(w, rd, "qr_unreadable")
        st = d.invoke("GetStatus")
        check(st is not None, "GetStatus still answers")
    finally:
        w.close()
    print("  refusals: %s" % ", ".join(seen), flush=True)


def t_present():
    d = G["d"]
    c = challenge(d)
    text = phone_qr.make_code(G["world"], "good", challenge=c, cred=G["cred"], device_key=G["dk"])
    err, r = call(d, "PresentCode", {"text": text})
    check(err is None and r["card"]["presentation"] == "digital-qr" and r["card"]["reader"] == "PresentCode",
          "PresentCode good: %s %r" % (err, r and {k: r.get(k) for k in ("reader",)}))
    check(r["card"]["can_back_sheet"], "PresentCode's card can back a sheet")
    err, r = call(d, "PresentCode", {"text": text})
    check(err == "io.vitaled.Terminal.CodeRefused" and r["reason"] == "replayed",
          "PresentCode replayed: %s %r" % (err, r))
    err, r = call(d, "PresentCode", {"text": "VQ1:ZZZ", "reader": "till-2"})
    check(err == "io.vitaled.Terminal.CodeRefused" and r["reason"] == "qr_unreadable"
          and r["reader"] == "PresentCode:till-2", "PresentCode unreadable: %s %r" % (err, r))
    err, r = call(d, "PresentCode", {"text": "x", "reader": "bad name!"})
    check(err == "org.varlink.service.InvalidParameter", "a bad reader name: %s" % err)
    names = [x["name"] for x in d.invoke("ListReaders")["readers"]]
    check("PresentCode" in names and "PresentCode:till-2" in names, "API readers listed: %r" % names)
    # vitalectl
    c = challenge(d)
    text = phone_qr.make_code(G["world"], "good", challenge=c, cred=G["cred"], device_key=G["dk"])
    p = subprocess.run([harness.VITALECTL, "--socket", d.sock, "card", "present", text],
                       capture_output=True, text=True)
    check(p.returncode == 0 and "digital-qr" in p.stdout, "vitalectl card present: %s %s" % (p.stdout, p.stderr))
    p = subprocess.run([harness.VITALECTL, "--socket", d.sock, "card", "present", text],
                       capture_output=True, text=True)
    check(p.returncode != 0 and "replayed" in p.stderr, "vitalectl card present again: %s" % p.stderr)
    p = subprocess.run([harness.VITALECTL, "--socket", d.sock, "card", "challenge"],
                       capture_output=True, text=True)
    check(p.returncode == 0 and len(p.stdout.split()[0]) == 6, "vitalectl card challenge: %s" % p.stdout)
    print("  present: PresentCode card / CodeRefused replayed, qr_unreadable; vitalectl card present",
          flush=True)


def t_oneway():
    G["d"].stop()
    d, _ = start_daemon("oneway", "qr_one_way = true\nqr_window_s = 60\n")
    G["d"] = d
    wait_reader(d, scanner_reader())
    text = phone_qr.make_code(G["world"], "good", cred=G["cred"], device_key=G["dk"])
    w = harness.Watch(d)
    try:
        show_and_scan(text)
        expect_read(w, scanner_reader())
        old = phone_qr.make_code(G["world"], "expired", cred=G["cred"], device_key=G["dk"])
        show_and_scan(old)
        expect_error(w, scanner_reader(), "presentation_expired")
    finally:
        w.close()
    err, g = call(d, "GetCard", {})
    d.stop()
    cache = os.path.join(G["tmp"], "state", "qr-replay")
    check(os.path.exists(cache), "the replay cache file is in the state dir")
    d, _ = start_daemon("oneway2", "qr_one_way = true\nqr_window_s = 60\n")
    G["d"] = d
    wait_reader(d, scanner_reader())
    w = harness.Watch(d)
    try:
        G["scanner"].scan(text)
        expect_error(w, scanner_reader(), "replayed")
    finally:
        w.close()
    print("  oneway: accepted, an hour-old one presentation_expired, replayed after a restart",
          flush=True)


def t_hotplug():
    d = G["d"]
    w = harness.Watch(d)
    try:
        G["scanner"].unplug()
        w.wait_for("ReaderRemoved", reader=scanner_reader(), timeout=10)
        G["scanner"].plug()
        w.wait_for("ReaderAdded", reader=scanner_reader(), timeout=10)
        c = phone_qr.make_code(G["world"], "good", cred=G["cred"], device_key=G["dk"])
        G["scanner"].scan(c)
        expect_read(w, scanner_reader())
    finally:
        w.close()
    print("  hotplug: removed, added, read", flush=True)


def t_keyboard():
    if not os.path.exists("/dev/uinput"):
        print("  keyboard: SKIPPED: /dev/uinput is missing on this machine (no uinput module)",
              flush=True)
        return
    try:
        kb = scanner_emu.KeyboardScanner("azerty")
    except OSError as e:
        print("  keyboard: SKIPPED: cannot make a uinput keyboard: %s" % e, flush=True)
        return
    try:
        G["d"].stop()
        d, _ = start_daemon("keyboard", "qr_one_way = true\n",)
        G["d"] = d
        # the keyboard joins the configuration
        d.stop()
        d.conf_text = d.conf_text + "keyboard = %s\nkeymap = azerty\n" % kb.path
        d.start()
        rd = "keyboard:" + kb.path
        wait_reader(d, rd)
        w = harness.Watch(d)
        try:
            text = phone_qr.make_code(G["world"], "good", cred=G["cred"], device_key=G["dk"])
            kb.scan(text)
            expect_read(w, rd)
        finally:
            w.close()
        print("  keyboard: an AZERTY keyboard scanner through uinput read", flush=True)
    finally:
        kb.close()


def t_log():
    holder = issuer.default_holder()
    text = ""
    for sub in ("clinic", "oneway", "oneway2", "keyboard"):
        p = os.path.join(G["tmp"], sub, "vitaled.log")
        if os.path.exists(p):
            text += open(p, encoding="utf-8", errors="replace").read()
    for secret in (holder["nir"], holder["surname"], holder["given_name"], G["good_text"][4:40]):
        check(secret not in text, "the log holds no identity data nor code text (%s...)" % secret[:3])
    print("  log: no NIR, name or code text (%d bytes checked)" % len(text), flush=True)


def main():
    for b in ("vitaled", "vitalectl"):
        if not os.access(os.path.join(harness.B, b), os.X_OK):
            print("FAIL: %s is not built" % b)
            sys.exit(1)
    for tool in ("qrencode", "zbarimg"):
        if not any(os.access(os.path.join(p, tool), os.X_OK) for p in ("/usr/bin", "/bin")):
            print("SKIP: %s is not installed (packaging/deps.sh)" % tool)
            sys.exit(77)
    tmp = harness.mktemp("test_qr-")
    G["tmp"] = tmp
    G["key"], G["cert"], G["pub"] = sl.make_key(tmp)
    G["pki"] = os.path.join(tmp, "pki")
    mkpki.init_pki(G["pki"], terminal_id=TERMINAL)
    from cryptography.hazmat.primitives import serialization
    G["chain"] = os.path.join(tmp, "chain.pem")
    with open(G["chain"], "wb") as f:
        f.write(mkpki.issue_practitioner(G["pki"], G["pub"]).public_bytes(serialization.Encoding.PEM))
    G["ins"] = insurer.InsurerProcess(G["pki"], os.path.join(tmp, "insurer"))
    G["ins"].__enter__()
    G["world"] = os.path.join(tmp, "world")
    issuer.init_world(G["world"])
    G["cred"], G["dk"] = issuer.make_credential(G["world"])
    G["unpack"] = unpack
    G["verify_pres"] = verify_presentation
    G["link"] = os.path.join(tmp, "ttyACM-scanner")
    G["scanner"] = scanner_emu.SerialScanner(G["link"])
    G["d"], _ = start_daemon("clinic")
    try:
        harness.run_tests([t_scan, t_refusals, t_present, t_oneway, t_hotplug, t_keyboard, t_log])
    finally:
        G["scanner"].close()
        G["ins"].__exit__(None, None, None)


def unpack(text):
    import zlib
    import cbor2
    box = cbor2.loads(zlib.decompress(phone_qr.base45_decode(text[4:])))
    return box["cred"], box["pres"]


def verify_presentation(pres, dkey, cid, chal):
    """The presentation's signature and fields, checked in Python (§Q.6)."""
    import cbor2
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    msg = cbor2.loads(pres)
    prot, _, payload, sig = msg.value
    tbs = issuer.sig_structure(prot, payload)
    dkey.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                tbs, ec.ECDSA(hashes.SHA256()))
    body = cbor2.loads(payload)
    check(body["use"] == "qr" and body["uv"] is True and body["cid"] == cid and body["c"] == chal,
          "the presentation's fields: %r" % {k: body[k] for k in ("use", "uv", "c")})


if __name__ == "__main__":
    main()
