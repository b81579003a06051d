#!/usr/bin/python3
"""The demo behind `make demo`: vitaled on a private socket, a private
pcscd with two virtual readers, virtual cards inserted and removed, and
what the till sees: events, the card, the status. Everything is simulated
hardware on the real middleware; all of it is stopped by PID at the end."""
import json
import os
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
    print("\nDemo finished: %d beneficiaries read from the Vitale 2 (%s), every card reported, "
          "the hostile one contained; %s." % (len(card["beneficiaries"]), card["profile"], phone))
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


if __name__ == "__main__":
    main()
