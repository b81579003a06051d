#!/usr/bin/python3
"""Bench rows for the NFC driver (drivers/reader_nfc.c): the same work done
through the driver (build/tools/nfc_drvbench) and through bare libnfc
(tests/world/nfc_probe.c, built here with gcc and pkg-config libnfc), against
the same PN532 emulator (tests/world/pn532emu.py) in the same run.

Rows: open until the device answers; open until the phone (already in the
field) is reported; open + poll + SELECT + GET CREDENTIAL (chained); the
median of 200 SELECT + GET CREDENTIAL; tap and away latencies against the
poll period; the CPU time of idle polling against the probe blocked in one
InAutoPoll for as long.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import B, TOP, mktemp, track  # noqa: E402

WORLD = os.path.join(TOP, "tests", "world")
DRVBENCH = os.path.join(B, "tools", "nfc_drvbench")
POLL_MS = 100
READS = 200
IDLE_MS = int(os.environ.get("BENCH_NFC_IDLE_MS", "3000"))


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def skip(why):
    row("nfc driver", "skipped: %s" % why, "-", "-")
    sys.exit(0)


def timings(out):
    """{"name": ms} from "timing NAME MS ms" lines."""
    t = {}
    for m in re.finditer(r"^timing (\S+) ([0-9.]+) ms", out, re.M):
        t[m.group(1)] = float(m.group(2))
    return t


def ratio(a, b):
    return "%.2f" % (a / b) if b > 0 else "-"


class Emulator:
    def __init__(self, tmp):
        self.link = os.path.join(tmp, "pn532")
        self.ctl = os.path.join(tmp, "control.sock")
        self.proc = track(subprocess.Popen(
            ["/usr/bin/python3", os.path.join(WORLD, "pn532emu.py"), "--link", self.link,
             "--control", self.ctl, "--tap"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(200):
            if os.path.exists(self.ctl) and os.path.lexists(self.link):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.025)
        self.stop()
        raise RuntimeError("the PN532 emulator did not start")

    def send(self, line):
        sys.path.insert(0, WORLD)
        import pn532emu  # here: it needs cbor2, checked by main() first
        return pn532emu.client(self.ctl, line).startswith("ok")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def run(cmd, timeout=120):
    """Run a child; returns (exit code, stdout, CPU seconds of the child)."""
    with tempfile.TemporaryFile(mode="w+") as out:
        p = track(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return p.returncode, out.read(), ru.ru_utime + ru.ru_stime


def main():
    for tool in ("gcc", "pkg-config"):
        if shutil.which(tool) is None:
            skip("%s not found" % tool)
    if subprocess.run(["pkg-config", "--exists", "libnfc"]).returncode != 0:
        skip("libnfc-dev not installed")
    if not os.access(DRVBENCH, os.X_OK):
        skip("%s not built" % DRVBENCH)
    if subprocess.run(["/usr/bin/python3", "-c", "import cbor2, cryptography"]).returncode != 0:
        skip("python3-cbor2 / python3-cryptography missing")
    tmp = mktemp("vitaled-bench-nfc.")
    emu = None
    try:
        probe = os.path.join(tmp, "nfc_probe")
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libnfc"], stdout=subprocess.PIPE,
                               text=True, check=True).stdout.split()
        subprocess.run(["gcc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-o", probe,
                        os.path.join(WORLD, "nfc_probe.c")] + flags + ["-pthread"], check=True)
        emu = Emulator(tmp)
        conn = "pn532_uart:" + emu.link

        # bare libnfc: one cold read, then the median of READS
        rc, out1, _ = run([probe, "-n", "1", "-s", "-p", "1000", conn])
        if rc != 0:
            raise RuntimeError("nfc_probe failed:\n" + out1)
        p1 = timings(out1)
        rc, outn, _ = run([probe, "-n", str(READS), "-s", conn])
        if rc == 77:
            skip("driver not compiled in")
        pn = timings(outn)
        mread = re.search(r"^timing read ([0-9.]+) ms", outn, re.M)
        # through the driver
        rc, outd, _ = run([DRVBENCH, "-n", str(READS), "-p", str(POLL_MS), "-t", "20",
                           "-i", str(IDLE_MS), "-c", emu.ctl, conn])
        if rc == 77:
            skip("driver built without libnfc")
        if rc != 0:
            raise RuntimeError("nfc_drvbench failed:\n" + outd)
        d = timings(outd)
        # baseline for idle CPU: the probe blocked in one InAutoPoll as long
        emu.send("away")
        rc, _, probe_cpu = run([probe, "-s", "-p", str(IDLE_MS), conn])
    finally:
        if emu is not None:
            emu.stop()

    open_p = p1["nfc_open"] + p1["nfc_initiator_init"]
    row("nfc: open until the device answers (driver: open() to ADDED; libnfc: nfc_open + init)",
        "%.1f ms" % d["open_to_added"], "%.1f ms" % open_p, ratio(d["open_to_added"], open_p))
    present_p = open_p + p1["poll"]
    row("nfc: open until the phone is reported (phone in the field; libnfc: + one poll)",
        "%.1f ms" % d["open_to_present"], "%.1f ms" % present_p,
        ratio(d["open_to_present"], present_p))
    first_p = present_p + p1["read"]
    row("nfc: open + poll + SELECT + GET CREDENTIAL (chained, 6 APDUs), cold",
        "%.1f ms" % d["open_to_first_read"], "%.1f ms" % first_p,
        ratio(d["open_to_first_read"], first_p))
    read_p = float(mread.group(1)) if mread else pn.get("read", 0)
    row("nfc: SELECT + GET CREDENTIAL (chained, 6 APDUs), median of %d" % READS,
        "%.3f ms" % d["read"], "%.3f ms" % read_p, ratio(d["read"], read_p))
    row("nfc: tap to CARD_PRESENT, median of 20 (baseline: poll_ms)",
        "%.1f ms" % d["tap_to_present"], "%d ms" % POLL_MS, ratio(d["tap_to_present"], POLL_MS))
    row("nfc: away to CARD_ABSENT, median of 20 (baseline: poll_ms)",
        "%.1f ms" % d["away_to_absent"], "%d ms" % POLL_MS, ratio(d["away_to_absent"], POLL_MS))
    if "idle_cpu" in d:
        row("nfc: CPU of %d ms idle polling every %d ms (baseline: libnfc blocked in InAutoPoll "
            "as long, whole process)" % (IDLE_MS, POLL_MS),
            "%.1f ms" % d["idle_cpu"], "%.1f ms" % (probe_cpu * 1000),
            ratio(d["idle_cpu"], probe_cpu * 1000))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        row("nfc driver", "error: %s" % str(e).splitlines()[0], "-", "-")
        sys.exit(1)
