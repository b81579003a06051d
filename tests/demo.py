#!/usr/bin/python3
"""The demo behind `make demo`: start vitaled on a private socket and show
what it does, step by step, on the simulated world."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
from harness import VITALECTL, Daemon, mktemp, track  # noqa: E402

WORLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "world")


def step(title):
    print("\n\033[1m== %s\033[0m" % title if sys.stdout.isatty() else "\n== %s" % title, flush=True)


def show(cmd, d):
    print("$ vitalectl " + " ".join(cmd), flush=True)
    p = subprocess.run([VITALECTL, "--socket", d.sock] + cmd, capture_output=True, text=True)
    sys.stdout.write(p.stdout)
    if p.stderr:
        sys.stdout.write(p.stderr)
    return p


def main():
    step("start vitaled (private socket and state dir, no config file: built-in defaults)")
    with Daemon() as d:
        print("vitaled pid %d, socket %s" % (d.proc.pid, d.sock))
        step("the daemon at a glance")
        show(["status"], d)
        step("the same for scripts")
        p = show(["status", "--json"], d)
        st = json.loads(p.stdout)
        step("any varlink client works: the service's identity")
        show(["info"], d)
        step("a malformed request gets a clear error and the daemon stays up")
        c = d.client()
        c.send_raw(b'{"method": "io.vitaled.Terminal.GetStatus",,}\0')
        print("raw client sent invalid JSON; reply: %s" % json.dumps(c.recv()))
        c.close()
        show(["call", "io.vitaled.Terminal.NoSuchMethod"], d)
        step("stop with SIGTERM")
        rc, took = d.stop()
        print("vitaled exited with %d in %.2f s (terminal %s)" % (rc, took, st["terminal_id"]))
        print("\nlog of this run:")
        for line in d.log_text().splitlines():
            print("  " + line)
    phone_taps()
    print("\nDemo finished. Readers, cards, PINs and care sheets join this demo as they are built (see README).")


def phone_taps():
    """A phone presents the digital carte Vitale to an NFC reader (a PN532
    emulated on a pseudo-terminal, behind libnfc's real pn532_uart driver),
    with a test insurer made here; the holder takes 1.5 s to type the code."""
    step("a phone taps the NFC reader (digital carte Vitale; test insurer, PN532 emulator)")
    sys.path.insert(0, WORLD)
    import issuer
    import pn532emu
    tmp = mktemp("vitaled-demo-nfc-")
    world = issuer.init_world(os.path.join(tmp, "issuer"))
    link, ctl = os.path.join(tmp, "pn532"), os.path.join(tmp, "pn532.sock")
    emu = track(subprocess.Popen(["/usr/bin/python3", os.path.join(WORLD, "pn532emu.py"), "--link", link,
                                  "--control", ctl, "--world", world],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    if not emu.stdout.readline().startswith("ready"):
        print("the PN532 emulator did not start; step skipped")
        return
    conf = ("[nfc]\npoll_ms = 100\n[pcsc]\nenabled = false\n"
            "[digital]\ntrust_anchor = %s\n" % os.path.join(world, "ca.pem"))
    conn = "pn532_uart:" + link
    print("$ vitaled --nfc %s   # [digital] trust_anchor = the test insurer's CA" % conn)
    with Daemon(conf=conf, args=["--nfc", conn]) as d:
        w = d.client(timeout=10)
        w.call("io.vitaled.Terminal.WatchEvents", more=True)
        end = time.monotonic() + 5
        while time.monotonic() < end:  # the reader is there
            rs = d.call("io.vitaled.Terminal.ListReaders")["parameters"]["readers"]
            if any(r["name"] == "nfc:" + conn for r in rs):
                break
            time.sleep(0.05)
        print("phone: %s" % pn532emu.client(ctl, "tap pending_s=1.5"))
        t0 = time.monotonic()
        while True:
            m = w.recv()
            if m is None:
                break
            e = m["parameters"]["event"]
            if e.get("reader") != "nfc:" + conn or e["type"] == "ReaderAdded":
                continue
            extra = e.get("reason") or (e.get("summary") or {}).get("presentation") or e.get("profile") or ""
            print("  +%.2fs %-18s %s" % (time.monotonic() - t0, e["type"], extra), flush=True)
            if e["type"] in ("CardRead", "CardError"):
                break
        w.close()
        show(["card"], d)
        pn532emu.client(ctl, "away")
        d.stop()
    emu.terminate()
    emu.wait(5)


if __name__ == "__main__":
    main()
