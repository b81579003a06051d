#!/usr/bin/python3
"""The demo behind `make demo`: vitaled on a private socket, a private
pcscd with two virtual readers, virtual cards inserted and removed, and
what the till sees: events, the card, the status; a phone on an NFC reader;
then the insurer: offline first, sheets wait, the network comes back, they
upload, the insurer holds them and pays them. Everything is simulated
hardware (and a simulated insurer) on the real middleware; all of it is
stopped by PID at the end."""
import hashlib
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))
sys.path.insert(0, os.path.join(HERE, "world"))
from harness import VITALECTL, Daemon, Watch, mktemp, track  # noqa: E402
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402

TTY = sys.stdout.isatty()


def step(title):
    print(("\n\033[1m== %s\033[0m" if TTY else "\n== %s") % title, flush=True)


def show(cmd, d):
    print("$ vitalectl " + " ".join(cmd), flush=True)
    p = subprocess.run([VITALECTL, "--socket", d.sock] + cmd, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    if p.stderr:
        sys.stdout.write(p.stderr)
    return p


def events(w, until, reader=None, timeout=10):
    """Print events as a till would see them, up to the first of type `until`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        e = w.next(end - time.monotonic())
        fields = {k: v for k, v in e.items() if k not in ("seq", "time", "type")}
        print("  event %-14s %s" % (e["type"], json.dumps(fields, ensure_ascii=False)[:150]), flush=True)
        if e["type"] in until and (reader is None or e.get("reader") == reader):
            return e
    raise RuntimeError("no %s within %ss" % (until, timeout))


def main():
    tmp = mktemp("vitaled-demo-")
    step("start a private pcscd with two virtual readers (vpcd), and vitaled watching it")
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    world.start()
    print("pcscd pid %d on %s" % (world.pid, world.socket))
    hosts = []
    # the practitioner's key: a PEM file protected by a PIN (development
    # backend; a CPS through OpenSC's PKCS#11 module in real use)
    import sheetlib
    pin = "%07d" % (int.from_bytes(os.urandom(4), "big") % 10000000)
    key, cert, _ = sheetlib.make_key(tmp, password=pin)
    conf = sheetlib.conf(key_path=key)
    with Daemon(tmp=tmp, conf=conf, env={"PCSCLITE_CSOCK_NAME": world.socket}) as d:
        print("vitaled pid %d, API socket %s" % (d.proc.pid, d.sock))
        try:
            w = Watch(d.sock)
            time.sleep(0.5)
            step("the daemon at a glance")
            show(["status"], d)
            show(["readers"], d)

            step("a patient's carte Vitale 2 goes into the first reader")
            h0 = CardHost(world.port, log=os.path.join(tmp, "card0.log"))
            hosts.append(h0)
            h0.insert("vitale2", wait=0)
            e = events(w, ("CardRead", "CardError"))
            print("(events mask the NIR; the full holder data goes only to allowed peers:)")
            show(["card"], d)
            step("the same card for scripts (the data is fictitious test data)")
            p = show(["card", "--json"], d)
            card = json.loads(p.stdout)

            step("the practitioner logs in (PIN from a pipe here; from the terminal, without echo, at a desk)")
            r, wfd = os.pipe()
            os.write(wfd, (pin + "\n").encode())
            os.close(wfd)
            print("$ vitalectl pin --pin-fd N")
            p = subprocess.run([VITALECTL, "--socket", d.sock, "pin", "--pin-fd", str(r)], pass_fds=(r,),
                               capture_output=True, text=True)
            os.close(r)
            sys.stdout.write(p.stdout + p.stderr)

            step("a care sheet from the card in the reader: one consultation (C, 26.50 EUR), signed, queued durably")
            p = show(["sheet", "create", "--reader", "Virtual PCD 00 00", "--act", "C:1:2650",
                      "--insurer", "01:751:0001"], d)
            events(w, ("SheetQueued",))
            show(["queue"], d)
            p = show(["--json", "sheet", "list"], d)
            sheets = json.loads(p.stdout).get("sheets", [])
            if sheets:
                sid = sheets[0]["id"]
                out = os.path.join(tmp, "sheet.cose")
                show(["sheet", "export", sid, "-o", out], d)
                step("anyone with the practitioner's certificate checks the exported sheet, offline")
                show(["sheet", "verify", out, "--cert", cert], d)
                step("the sheet cannot be transmitted? its paper duplicata (R.161-47): one A4 page "
                     "for the patient, its QR code holds the signed sheet")
                # kept after the demo (the temporary directory is not)
                import harness
                os.makedirs(os.path.join(harness.B, "demo-output"), exist_ok=True)
                dup = os.path.join(harness.B, "demo-output", "duplicata.pdf")
                show(["sheet", "print", sid, "-o", dup], d)
                print("the duplicata is kept in %s (any PDF reader shows it)" % dup)

            step("the card leaves the reader")
            h0.remove()
            events(w, ("CardRemoved",))

            step("other cards: a Vitale 1, a practitioner's CPS, an unknown card")
            for name in ("vitale1", "cps", "unknown"):
                h0.insert(name, wait=0)
                e = events(w, ("CardRead", "CardError"))
                h0.remove()
                events(w, ("CardRemoved",))

            step("a hostile card (endless 61xx) ends in a named CardError; the API keeps answering")
            h0.insert("endless61", wait=0)
            events(w, ("CardError",))
            show(["status"], d)
            h0.remove()
            events(w, ("CardRemoved",))

            step("a malformed API request gets a clear error and the daemon stays up")
            c = d.client()
            c.send_raw(b'{"method": "io.vitaled.Terminal.GetStatus",,}\0')
            print("raw client sent invalid JSON; reply: %s" % json.dumps(c.recv()))
            c.close()
            w.close()
        finally:
            for h in hosts:
                h.close()
        step("stop vitaled with SIGTERM, then pcscd")
        rc, took = d.stop()
        print("vitaled exited with %d in %.2f s" % (rc, took))
    world.stop()
    phone = phone_taps()
    phone += "; " + phone_shows_qr()
    upload = insurer_story()
    kiosk = kiosk_story()
    print("\nDemo finished: %d beneficiaries read from the Vitale 2 (%s), every card reported, "
          "the hostile one contained; %s; %s; %s." % (len(card["beneficiaries"]), card["profile"], phone,
                                                       upload, kiosk))
    print("See README.md for what is built and what is simulated.")


def phone_taps():
    """A phone presents the digital carte Vitale to an NFC reader (a PN532
    emulated on a pseudo-terminal, behind libnfc's real pn532_uart driver),
    with a test insurer made here; the holder takes 1.5 s to type the code."""
    step("a phone taps the NFC reader (digital carte Vitale; test insurer, PN532 emulator)")
    import issuer
    import pn532emu
    tmp = mktemp("vitaled-demo-nfc-")
    world = issuer.init_world(os.path.join(tmp, "issuer"))
    link, ctl = os.path.join(tmp, "pn532"), os.path.join(tmp, "pn532.sock")
    emu = track(subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "world", "pn532emu.py"),
                                  "--link", link, "--control", ctl, "--world", world],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    if not emu.stdout.readline().startswith("ready"):
        print("the PN532 emulator did not start; step skipped")
        return "the phone step was skipped"
    conf = ("[nfc]\npoll_ms = 100\n[pcsc]\nenabled = false\n"
            "[digital]\ntrust_anchor = %s\n" % os.path.join(world, "ca.pem"))
    conn = "pn532_uart:" + link
    reader = "nfc:" + conn
    print("$ vitaled --nfc %s   # [digital] trust_anchor = the test insurer's CA" % conn)
    with Daemon(tmp=tmp, conf=conf, args=["--nfc", conn]) as d:
        w = Watch(d.sock)
        end = time.monotonic() + 5
        while time.monotonic() < end:  # the reader is there
            rs = d.call("io.vitaled.Terminal.ListReaders")["parameters"]["readers"]
            if any(r["name"] == reader for r in rs):
                break
            time.sleep(0.05)
        print("phone: %s (the holder will take 1.5 s to type the code)" % pn532emu.client(ctl, "tap pending_s=1.5"))
        e = events(w, ("CardRead", "CardError"), reader=reader)
        show(["card"], d)
        pn532emu.client(ctl, "away")
        events(w, ("CardRemoved",), reader=reader)
        w.close()
        d.stop()
    emu.terminate()
    emu.wait(5)
    return "the phone's presentation %s" % ("verified" if e["type"] == "CardRead" else "refused: " + e.get("reason", "?"))


def phone_shows_qr():
    """An iPhone-style presentation: the phone cannot emulate a card, so it
    shows a QR code; the counter's 2D scanner (a serial scanner emulated on a
    pseudo-terminal) reads it. The kiosk shows a challenge that the holder
    types into the phone with the personal code (docs/digital-card.md part 2)."""
    step("an iPhone shows the digital carte Vitale as a QR code at the counter (2D scanner)")
    import shutil
    import issuer
    import phone_qr
    import scanner_emu
    if not (shutil.which("qrencode") and shutil.which("zbarimg")):
        print("qrencode or zbarimg missing (packaging/deps.sh); step skipped")
        return "the QR step was skipped"
    tmp = mktemp("vitaled-demo-qr-")
    world = issuer.init_world(os.path.join(tmp, "issuer"))
    cred, dk = issuer.make_credential(world)
    link = os.path.join(tmp, "ttyACM0")
    sc = scanner_emu.SerialScanner(link)
    conf = ("[pcsc]\nenabled = false\n[digital]\ntrust_anchor = %s\n[scanner]\ndevice = %s\n"
            % (os.path.join(world, "ca.pem"), link))
    reader = "scanner:" + link
    print("$ vitaled   # [scanner] device = %s (a CDC-ACM scanner, here a pty)" % link)
    try:
        with Daemon(tmp=tmp, conf=conf) as d:
            w = Watch(d.sock)
            end = time.monotonic() + 5
            while time.monotonic() < end:
                rs = d.call("io.vitaled.Terminal.ListReaders")["parameters"]["readers"]
                if any(r["name"] == reader for r in rs):
                    break
                time.sleep(0.05)
            show(["readers"], d)
            p = show(["card", "challenge"], d)
            chal = p.stdout.split()[0]
            print("kiosk screen: \"Type %s into the carte Vitale app\"" % chal)
            text = phone_qr.make_code(world, "good", challenge=chal, cred=cred, device_key=dk)
            png = os.path.join(tmp, "phone-screen.png")
            phone_qr.render_png(text, png)
            print("phone: holder types %s and the personal code; the screen shows a QR code of "
                  "version %d, level M (%d characters: VQ1: + base45 of the deflated credential "
                  "and signed presentation) -> %s" % (chal, phone_qr.qr_version(png), len(text), png))
            got = phone_qr.zbar_decode(png)
            print("scanner (zbarimg on the picture): %s...%s" % (got[:12], got[-6:]))
            sc.scan(got)
            e = events(w, ("CardRead", "CardError"), reader=reader)
            show(["card", "--reader", reader], d)
            print("the same code scanned again (a photo of the phone's screen):")
            sc.scan(got)
            events(w, ("CardRead", "CardError"), reader=reader)
            w.close()
            d.stop()
    finally:
        sc.close()
    return "the QR presentation %s" % ("verified" if e["type"] == "CardRead" else "refused: " + e.get("reason", "?"))


TERMINAL = "T0001"


def insurer_story():
    """The end of the story: the test insurer (tests/insurer/) is unreachable
    at first (its port bound but closed, as when the clinic's line is down),
    sheets are made and wait; the port opens, vitaled uploads them, the
    insurer holds them (its ground truth, held.json), pays them, and
    vitaled's returns poll shows them paid. A fresh vitaled (its own state
    dir) configured with the insurer, a private pcscd with the Vitale 2."""
    step("the insurer: a test insurer (mutual TLS on loopback), its port closed for now: the network is down")
    sys.path.insert(0, os.path.join(HERE, "insurer"))
    try:
        import insurer
        import mkpki
        import sheetlib
        from cryptography.hazmat.primitives import serialization
    except ImportError as e:
        print("the test insurer needs python3-cbor2 and python3-cryptography (%s); step skipped" % e)
        return "the insurer part was skipped"
    tmp = mktemp("vitaled-demo-insurer-")
    pki = os.path.join(tmp, "pki")
    mkpki.init_pki(pki, terminal_id=TERMINAL)
    # the practitioner's key, with a signing certificate from the insurer's
    # practitioner CA (a CPS's certificate in real use)
    key, _, pub = sheetlib.make_key(tmp)
    chain = os.path.join(tmp, "chain.pem")
    with open(chain, "wb") as f:
        f.write(mkpki.issue_practitioner(pki, pub).public_bytes(serialization.Encoding.PEM))
    ins = insurer.InsurerProcess(pki, os.path.join(tmp, "insurer"), closed=True)
    world = None
    try:
        print("insurer pid %d, %s (port bound, not listening: connections refused)" % (ins.pid, ins.url))
        world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
        world.start()
        print("pcscd pid %d" % world.pid)
        conf = sheetlib.conf(key, extra=(
            "[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
            "client_key = %s/client.key.pem\nsigner_chain = %s\ngather_ms = 300\n"
            "backoff_base_s = 1\nbackoff_cap_s = 5\nconnect_timeout_s = 2\nreturns_interval_s = 10\n"
            % (ins.url, pki, pki, pki, chain)))
        conf = conf.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)
        print("[insurer] url = %s, ca_file = the insurer's server CA, client_cert/client_key = this "
              "terminal's (CN %s),\n          signer_chain = the practitioner's signing certificate" %
              (ins.url, TERMINAL))
        with Daemon(tmp=tmp, name="d", conf=conf, timeout=10.0,
                    env={"PCSCLITE_CSOCK_NAME": world.socket}) as d:
            print("vitaled pid %d" % d.pid)
            w = Watch(d.sock)
            try:
                return _story(d, w, ins, world, tmp)
            finally:
                w.close()
                step("stop vitaled, pcscd and the insurer (by PID)")
                rc, took = d.stop()
                print("vitaled exited with %d in %.2f s" % (rc, took))
    finally:
        if world:
            world.stop()
        ins.stop()
        print("insurer stopped")


def _uploader(d):
    return d.invoke("io.vitaled.Terminal.GetStatus")["uploader"]


def _wait(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    return None


def _rights_built(d):
    """Is the online rights check in this vitaled? Its interface says so."""
    desc = d.invoke("org.varlink.service.GetInterfaceDescription",
                    {"interface": "io.vitaled.Terminal"}).get("description", "")
    # a rights method, or GetCard's rights-check fields (the digital card's
    # own "rights" field is not the check)
    return bool(re.search(r"method\s+\w*Rights\b", desc)) or "rights_check" in desc


def _show_rights(d, reader):
    """The card's rights as GetCard shows them once the check is over."""
    def done():
        p = subprocess.run([VITALECTL, "--socket", d.sock, "--json", "card", "--reader", reader],
                           capture_output=True, text=True)
        try:
            c = json.loads(p.stdout)
        except ValueError:
            return None
        rc = c.get("rights_check")
        return c if rc is None or rc.get("state") != "pending" else None
    c = _wait(done, 5) or {}
    if "rights_check" not in c:
        print("(GetCard shows no rights check for this card)")
        return None
    print("$ vitalectl --json card   # its rights fields:")
    for k in ("rights_check", "organisation", "rights"):
        if k in c:
            print("  %-13s %s" % (k, json.dumps(c[k], ensure_ascii=False)))
    return c["rights_check"].get("state")


def _story(d, w, ins, world, tmp):
    reader = "Virtual PCD 00 00"
    rights = _rights_built(d)
    step("patients come while the network is down: a Vitale 2, three care sheets")
    h = CardHost(world.port, log=os.path.join(tmp, "card.log"))
    try:
        h.insert("vitale2", wait=0)
        events(w, ("CardRead", "CardError"))
        if rights:
            print("the online rights check, with the insurer out of reach (the till's own values stand):")
            _show_rights(d, reader)
        for ben, act in ((0, "C:1:2650"), (1, "C:1:2650"), (2, "G:1:3000")):
            show(["sheet", "create", "--reader", reader, "--beneficiary", str(ben), "--act", act,
                  "--insurer", "01:751:0001"], d)
        h.remove()
        events(w, ("CardRemoved",))
    finally:
        h.close()
    u = _wait(lambda: (lambda u: u if u["state"] == "offline" else None)(_uploader(d)), 15)
    if not u:
        print("(the uploader did not report offline: %r)" % _uploader(d))
    step("vitaled tried, could not reach the insurer: the sheets wait, nothing is lost")
    show(["status"], d)
    show(["sheet", "list"], d)
    print("(the batch is formed and kept: the same bytes go again, under the same key, when the insurer answers)")

    step("the network comes back (the insurer opens its port); vitaled uploads")
    print("insurer control: listen -> ok %s" % ins.ctl("listen"))
    show(["upload", "--wait"], d)
    print("(the events a till watching saw meanwhile:)")
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            e = w.next(0.5)
        except Exception:  # noqa: BLE001 - no more for now
            break
        fields = {k: v for k, v in e.items() if k not in ("seq", "time", "type")}
        print("  event %-14s %s" % (e["type"], json.dumps(fields, ensure_ascii=False)[:150]))
    show(["status"], d)

    step("what the insurer holds (its ground truth, held.json), byte for byte what vitaled signed")
    held = ins.held()
    ours = {}
    p = subprocess.run([VITALECTL, "--socket", d.sock, "--json", "sheet", "list"], capture_output=True, text=True)
    for m in json.loads(p.stdout).get("sheets", []):
        out = os.path.join(tmp, m["id"] + ".cose")
        subprocess.run([VITALECTL, "--socket", d.sock, "sheet", "export", m["id"], "-o", out],
                       capture_output=True)
        with open(out, "rb") as f:
            ours[m["id"]] = hashlib.sha256(f.read()).hexdigest()
    for s in held["sheets"]:
        print("  %s  amo %5.2f EUR  batch %s…  sha256 %s…  %s" % (
            s["id"], s["amo"] / 100, s["batch_id"][:8], s["sha256"][:12],
            "same bytes as vitaled's" if ours.get(s["id"]) == s["sha256"] else "DIFFERENT from vitaled's"))
    print("insurer holds %d sheet(s); every one once" % held["count"])
    show(["sheet", "list"], d)

    step("later the insurer pays them; vitaled's returns poll brings the word back")
    print("insurer control: pay all -> ok %s" % ins.ctl("pay all"))
    print("(vitaled asks for returns after every upload round and every returns_interval_s; "
          "a round now instead of waiting:)")
    show(["upload"], d)
    paid = 0
    end = time.monotonic() + 15
    while paid < len(held["sheets"]) and time.monotonic() < end:
        try:
            e = w.next(end - time.monotonic())
        except Exception:  # noqa: BLE001 - a timeout: report below
            break
        if e["type"] in ("SheetPaid", "SheetRefused"):
            paid += 1
            fields = {k: v for k, v in e.items() if k not in ("seq", "time", "type")}
            print("  event %-14s %s" % (e["type"], json.dumps(fields, ensure_ascii=False)[:150]))
    show(["sheet", "list"], d)
    show(["queue"], d)

    step("the card again, now that the insurer is reachable: its rights from the rights check")
    state = None
    if rights:
        h = CardHost(world.port, log=os.path.join(tmp, "card2.log"))
        try:
            h.insert("vitale2", wait=0)
            events(w, ("CardRead", "CardError"))
            state = _show_rights(d, reader)
            h.remove()
            events(w, ("CardRemoved",))
        finally:
            h.close()
    else:
        print("the online rights check (POST /v1/rights) is not built yet in this vitaled: "
              "a card's organisation and rights still come from the card and the till")
    return "%d sheet(s) uploaded after the network came back, held once each by the insurer, %d paid%s" % (
        held["count"], paid, "; rights check: %s" % state if rights else "")


def kiosk_story():
    """The kiosk screen (vitaled-web's /kiosk) in headless Chromium while a
    Vitale 2 and phones check in; each state's screenshot is kept under
    $B/demo-output/kiosk/ and named here."""
    import cdp
    import issuer
    import sheetlib
    import webworld
    step("the kiosk screen: [daemon] mode = kiosk, vitaled-web serves /kiosk, headless Chromium shows it")
    if not cdp.available():
        print("chromium is not installed: the kiosk screen is not shown")
        return "kiosk screen not shown (no chromium)"
    out = os.path.join(webworld.harness.B, "demo-output", "kiosk")
    os.makedirs(out, exist_ok=True)
    tmp = mktemp("vitaled-demo-kiosk-")
    iss = os.path.join(tmp, "issuer")
    issuer.init_world(iss)
    port = webworld.free_port()
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    world.start()
    conf = sheetlib.conf(None, mode="kiosk", extra=(
        "[digital]\ntrust_anchor = %s\ncode_timeout_s = 20\n[web]\nport = %d\nkiosk_reset_s = 3\n"
        % (os.path.join(iss, "ca.pem"), port)))
    shots = []
    try:
        with Daemon(tmp=tmp, conf=conf, env={"PCSCLITE_CSOCK_NAME": world.socket}) as d:
            br = webworld.Bridge(d, tmp, port).start()
            browser = cdp.Browser(tmp)
            h = CardHost(world.port, log=os.path.join(tmp, "card.log"))
            try:
                p = browser.page()
                p.viewport(1280, 800)
                p.navigate(br.url + "/kiosk")
                print("vitaled-web pid %d; kiosk page %s/kiosk" % (br.proc.pid, br.url))

                def shot(name, state, what):
                    p.wait("document.body.dataset.state === %s" % json.dumps(state), timeout=20)
                    path = p.screenshot(os.path.join(out, name + ".png"))
                    text = p.eval("document.body.innerText").split("\n")
                    lines = [x for x in text if x.strip()]
                    print("  %-8s %-40s screen: %s / %s" % (state, what, lines[0], lines[1]))
                    print("           screenshot %s" % path)
                    shots.append(path)

                p.wait("document.body.dataset.feed === 'on'", timeout=10)
                shot("01-idle", "idle", "nobody there")
                h.insert("vitale2")
                shot("02-welcome", "welcome", "a Vitale 2: checked in (a draft sheet)")
                h.remove()
                shot("02b-idle", "idle", "3 s later, back to the start")
                time.sleep(0.6)
                h.insert("phone", tmpdir=iss, pending_s=2.5)
                shot("03-code", "code", "a phone: its holder types the code")
                shot("03b-welcome", "welcome", "the phone's holder is checked in")
                h.remove()
                time.sleep(0.6)
                h.insert("phone", tmpdir=iss, code="refuse")
                shot("04-refused", "refused", "a phone whose code is refused")
                h.remove()
                time.sleep(0.6)
                h.insert("phone", tmpdir=iss, expired=True)
                shot("05-expired", "expired", "a phone whose credential has expired")
                h.remove()
                drafts = len(sheetlib.list_all(d, state="draft"))
                print("drafts in the queue (the check-ins): %d" % drafts)
            finally:
                h.close()
                browser.close()
                br.stop()
    finally:
        world.stop()
    return "the kiosk screen shown in %d states (screenshots in %s)" % (len(shots), out)


def _wait_event(w, etype, timeout=10):
    try:
        return w.wait_for(etype, timeout)
    except Exception:  # noqa: BLE001 - shown as missing
        return None


if __name__ == "__main__":
    main()
