#!/usr/bin/python3
"""Bench rows for the digital carte Vitale, each against a baseline measured
in the same run on the same machine:

1. tap -> verified identity through vitaled over NFC: the wall time from the
   PN532 emulator's `tap` control command to vitaled's CardRead event
   (median of TAPS taps; poll period 50 ms), against
   build/tools/digital_baseline (tests/tools/digital_baseline.c: libnfc +
   OpenSSL, the same APDUs and the signature, chain, nonce and uv checks,
   without vitaled's strict-CBOR and field checks) on the same emulator,
   polling the same way, from `tap` to its "verified ok" line;
2. CPU per tap: vitaled's CPU time (utime + stime from /proc) over the same
   taps, each tap cycle paced to CYCLE_S (tap, verified, away, idle polling
   until the cycle ends), against the baseline's over the same cycles;
3. one full verification of a presentation in-process (credential chain,
   3 ECDSA verifies: the issuer certificate's, the credential's and the
   answer's; payload parsing), measured by tests/unit/check_credential.c's
   "bench" case, against one ECDSA P-256 verify from
   `openssl speed -seconds 1 ecdsap256`'s verify rate.

Prints rows "| what | value | baseline | ratio |" (tests/bench/run.sh).
Environment: B (build dir), BENCH_DIGITAL_TAPS (default 20).
"""
import os
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import B, TOP, Daemon, Watch, mktemp, track  # noqa: E402

WORLD = os.path.join(TOP, "tests", "world")
BASELINE = os.path.join(B, "tools", "digital_baseline")
TAPS = int(os.environ.get("BENCH_DIGITAL_TAPS", "20"))
WARMUP = 2
POLL_MS = 50
CYCLE_S = 0.5


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def ratio(a, b):
    return "%.2f" % (a / b) if b > 0 else "-"


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(p):
    """SIGTERM to a child that is not vitaled (the emulator, the baseline)."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def emu_send(ctl, line):
    import pn532emu  # after sys.path has WORLD (main)
    answer = pn532emu.client(ctl, line)
    if not answer.startswith("ok"):
        raise RuntimeError("pn532emu %r: %s" % (line, answer))


def pace(t_start):
    left = CYCLE_S - (time.monotonic() - t_start)
    if left > 0:
        time.sleep(left)


def bench_vitaled(tmp, world, ctl, conn):
    conf = ("[daemon]\nlog_level = notice\n[pcsc]\nenabled = false\n[nfc]\npoll_ms = %d\n"
            "[digital]\ntrust_anchor = %s\n" % (POLL_MS, os.path.join(world, "ca.pem")))
    d = Daemon(conf=conf, args=["--nfc", conn], env={"LIBNFC_AUTO_SCAN": "false"}, tmp=tmp)
    try:
        d.start()
        w = Watch(d)
        reader = "nfc:" + conn
        deadline = time.monotonic() + 10
        while True:  # the reader may have come before the watch
            if any(r["name"] == reader for r in d.invoke("ListReaders")["readers"]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the NFC reader did not come")
            time.sleep(0.05)
        walls = []
        c0 = None
        for i in range(WARMUP + TAPS):
            if i == WARMUP:
                c0 = d.cpu_s()
            t0 = time.monotonic()
            emu_send(ctl, "tap")
            e = w.wait_for(("CardRead", "CardError"))
            t1 = time.monotonic()
            if e["type"] != "CardRead":
                raise RuntimeError("vitaled: %s %s" % (e["type"], e.get("reason")))
            emu_send(ctl, "away")
            w.wait_for("CardRemoved")
            if i >= WARMUP:
                walls.append((t1 - t0) * 1000)
            pace(t0)
            time.sleep(random.uniform(0, POLL_MS / 1000.0))
        cpu = (d.cpu_s() - c0) / TAPS * 1000
        w.close()
        return walls, cpu
    finally:
        d.stop()


def bench_baseline(tmp, world, ctl, conn):
    p = track(subprocess.Popen([BASELINE, "-a", os.path.join(world, "ca.pem"), "-p", str(POLL_MS),
                                "-n", str(WARMUP + TAPS), conn],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1))
    try:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("digital_baseline did not start")
        walls = []
        c0 = None
        for i in range(WARMUP + TAPS):
            if i == WARMUP:
                c0 = cpu_s(p.pid)
            t0 = time.monotonic()
            emu_send(ctl, "tap")
            r, _, _ = select.select([p.stdout], [], [], 10)
            line = p.stdout.readline().strip() if r else ""
            t1 = time.monotonic()
            if line != "verified ok":
                raise RuntimeError("digital_baseline: %r" % line)
            emu_send(ctl, "away")
            if i >= WARMUP:
                walls.append((t1 - t0) * 1000)
            pace(t0)
            time.sleep(random.uniform(0, POLL_MS / 1000.0))
        cpu = (cpu_s(p.pid) - c0) / TAPS * 1000
        return walls, cpu
    finally:
        stop(p)


def verification_rows():
    t = os.path.join(B, "tests", "check_credential")
    if not os.access(t, os.X_OK):
        subprocess.run(["make", "-C", TOP, "--no-print-directory", "B=" + B, t],
                       stdout=subprocess.DEVNULL, check=True)
    out = subprocess.run([t], env=dict(os.environ, CK_RUN_CASE="bench", CK_FORK="no"),
                         cwd=TOP, capture_output=True, text=True).stdout
    m = re.search(r"full digital-card verification ([0-9.]+) us", out)
    sp = subprocess.run(["openssl", "speed", "-seconds", "1", "ecdsap256"], capture_output=True, text=True).stdout
    v = re.search(r"ecdsa \(nistp256\)\s+[0-9.]+s\s+[0-9.]+s\s+[0-9.]+\s+([0-9.]+)", sp)
    if not m or not v:
        row("digital card: one full verification", "not measured (%s)" % ("check_credential" if not m else "openssl speed"), "-", "-")
        return
    full_us = float(m.group(1))
    one_us = 1e6 / float(v.group(1))
    row("digital card: one full verification in-process (chain, 3 ECDSA verifies, payload)",
        "%.0f us" % full_us,
        "%.0f us: 1 ECDSA P-256 verify (openssl speed, %.0f/s)" % (one_us, float(v.group(1))),
        ratio(full_us, one_us))


def main():
    if not os.access(BASELINE, os.X_OK) or subprocess.run([BASELINE], capture_output=True).returncode == 77:
        row("digital tap through vitaled over NFC", "skipped: no libnfc or %s not built" % BASELINE, "-", "-")
        verification_rows()
        return 0
    tmp = mktemp("vitaled-bench-digital.")
    emu = None
    try:
        sys.path.insert(0, WORLD)
        import issuer
        world = os.path.join(tmp, "issuer")
        issuer.init_world(world)
        link, ctl = os.path.join(tmp, "pn532"), os.path.join(tmp, "pn532.sock")
        emu = track(subprocess.Popen(["/usr/bin/python3", os.path.join(WORLD, "pn532emu.py"), "--link", link,
                                      "--control", ctl, "--world", world],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        if not emu.stdout.readline().startswith("ready"):
            raise RuntimeError("pn532emu did not start")
        conn = "pn532_uart:" + link
        vw, vcpu = bench_vitaled(tmp, world, ctl, conn)
        bw, bcpu = bench_baseline(tmp, world, ctl, conn)
        vm, bm = statistics.median(vw), statistics.median(bw)
        row("digital tap -> verified identity, vitaled over NFC (median of %d, poll %d ms; p90 %.0f ms)"
            % (TAPS, POLL_MS, sorted(vw)[int(len(vw) * 0.9) - 1]),
            "%.1f ms" % vm,
            "%.1f ms: digital_baseline, same emulator, APDUs, signature/chain/nonce checks "
            "(no strict-CBOR or field checks)" % bm, ratio(vm, bm))
        row("digital tap: CPU per tap cycle of %.1f s (verification + idle polling; /proc ticks, +-%.1f ms)"
            % (CYCLE_S, 10.0 / TAPS),
            "%.1f ms (vitaled)" % vcpu, "%.1f ms (digital_baseline)" % bcpu, ratio(vcpu, bcpu))
    except Exception as e:  # noqa: BLE001 - a bench row says what went wrong
        row("digital tap through vitaled over NFC", "failed: %s" % e, "-", "-")
        return 1
    finally:
        if emu is not None:
            stop(emu)
    verification_rows()
    return 0


if __name__ == "__main__":
    sys.exit(main())
