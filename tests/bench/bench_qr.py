#!/usr/bin/python3
"""Bench row for the digital carte Vitale by QR code (docs/digital-card.md part 2):
scan -> verified identity through vitaled, beside the NFC tap, both measured in
this run on this machine.

- value: the wall time from the last byte of a code written by the serial
  scanner emulator (tests/world/scanner_emu.py, a pseudo-terminal at vitaled's
  `[scanner] device`) to vitaled's CardRead event; median of SCANS codes, each
  a fresh one-way code of the same credential (made beforehand with
  tests/world/phone_qr.py, outside the timing);
- baseline: the NFC tap through vitaled on the PN532 emulator, from `tap` to
  CardRead (bench_digital_e2e.py's measure, median of as many taps, poll 50 ms).
  The tap includes libnfc's polling and the APDU round trips; the scan has
  neither, so the ratio says how the QR path's parsing and checks (base45,
  inflate, the same credential checks, the presentation) compare with a tap.

Prints "| what | value | baseline | ratio |" (tests/bench/run.sh).
Environment: B, BENCH_QR_SCANS (default 20).
"""
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
from harness import TOP, Daemon, Watch, mktemp, track  # noqa: E402
import bench_digital_e2e as nfc_bench  # noqa: E402

WORLD = os.path.join(TOP, "tests", "world")
SCANS = int(os.environ.get("BENCH_QR_SCANS", "20"))
WARMUP = 2


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def bench_scans(tmp, world):
    import issuer
    import phone_qr
    import scanner_emu
    cred, dk = issuer.make_credential(world)
    link = os.path.join(tmp, "scanner")
    sc = scanner_emu.SerialScanner(link)
    conf = ("[daemon]\nlog_level = notice\n[pcsc]\nenabled = false\n[digital]\ntrust_anchor = %s\n"
            "qr_one_way = true\n[scanner]\ndevice = %s\n" % (os.path.join(world, "ca.pem"), link))
    d = Daemon(conf=conf, tmp=os.path.join(tmp, "qr"))
    try:
        d.start()
        w = Watch(d)
        reader = "scanner:" + link
        deadline = time.monotonic() + 10
        while not any(r["name"] == reader for r in d.invoke("ListReaders")["readers"]):
            if time.monotonic() > deadline:
                raise RuntimeError("the scanner reader did not come")
            time.sleep(0.05)
        walls = []
        for i in range(WARMUP + SCANS):
            text = phone_qr.make_code(world, "good", cred=cred, device_key=dk)
            t0 = time.monotonic()
            sc.scan(text, chunk=4096)
            e = w.wait_for(("CardRead", "CardError"), reader=reader)
            t1 = time.monotonic()
            if e["type"] != "CardRead":
                raise RuntimeError("vitaled: %s %s" % (e["type"], e.get("reason")))
            if i >= WARMUP:
                walls.append((t1 - t0) * 1000)
        w.close()
        return walls, len(text)
    finally:
        d.stop()
        sc.close()


def bench_taps(tmp, world):
    link, ctl = os.path.join(tmp, "pn532"), os.path.join(tmp, "pn532.sock")
    emu = track(subprocess.Popen(["/usr/bin/python3", os.path.join(WORLD, "pn532emu.py"), "--link", link,
                                  "--control", ctl, "--world", world],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    try:
        if not emu.stdout.readline().startswith("ready"):
            raise RuntimeError("pn532emu did not start")
        nfc_bench.TAPS = SCANS
        walls, _ = nfc_bench.bench_vitaled(os.path.join(tmp, "nfc"), world, ctl, "pn532_uart:" + link)
        return walls
    finally:
        nfc_bench.stop(emu)


def main():
    sys.path.insert(0, WORLD)
    import issuer
    tmp = mktemp("vitaled-bench-qr.")
    world = os.path.join(tmp, "issuer")
    issuer.init_world(world)
    try:
        qw, size = bench_scans(tmp, world)
    except Exception as e:  # noqa: BLE001 -- a row that says why
        row("QR scan -> verified identity", "failed: %s" % e, "-", "-")
        return 1
    qm = statistics.median(qw)
    try:
        tw = bench_taps(tmp, world)
        tm = statistics.median(tw)
        base, ratio = "%.1f ms: NFC tap -> verified identity, vitaled on the PN532 emulator " \
                      "(median of %d, poll 50 ms)" % (tm, len(tw)), "%.2f" % (qm / tm)
    except Exception as e:  # noqa: BLE001
        base, ratio = "not measured: %s" % e, "-"
    row("QR scan -> verified identity, vitaled with a serial scanner on a pty (median of %d "
        "one-way codes of %d characters; p90 %.1f ms)" % (len(qw), size, sorted(qw)[int(len(qw) * 0.9) - 1]),
        "%.1f ms" % qm, base, ratio)
    return 0


if __name__ == "__main__":
    sys.exit(main())
