#!/usr/bin/python3
"""Bench rows for physical cards (make bench):

- Vitale 2 read, CardInserted -> CardRead as a watcher sees it, and vitaled's
  CPU per card, beside a minimal C program (tests/world/pcsc_probe.c) that
  connects and sends the same APDUs through the same pcscd to the same
  virtual card, in the same run (its wall time includes its own exec and
  SCardEstablishContext; vitaled's includes the session thread, the
  transaction, parsing and the event).
- APDUs per Vitale 2 read.
Env: B, BENCH_CARDS_N (default 20). Skips (exit 77) without pcscd/vpcd."""
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "tests", "world"))
if not os.path.exists("/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
    sys.exit(77)
from harness import Watch  # noqa: E402
from test_readers import R0, readers_daemon  # noqa: E402
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402

N = int(os.environ.get("BENCH_CARDS_N", "50"))


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def transcript_commands():
    """The vitale2 profile's commands, from the recorded exchange, without
    the GET RESPONSEs (the probe issues those itself on 61xx)."""
    text = open(os.path.join(TOP, "tests", "unit", "vitale2_transcript.h")).read()
    cmds = re.findall(r'\{ "([0-9A-F]+)",', text)
    return [c for c in cmds if not c.startswith("00C0")]


def cpu_of(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    tmp = tempfile.mkdtemp(prefix="bench_cards.")
    probe = os.path.join(tmp, "pcsc_probe")
    subprocess.run(["sh", "-c", "cc -O2 -o %s %s $(pkg-config --cflags --libs libpcsclite)" %
                    (probe, os.path.join(TOP, "tests", "world", "pcsc_probe.c"))], check=True)
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    d = readers_daemon(tmp, env)
    host = None
    w = None
    try:
        world.start()
        d.start()
        w = Watch(d.sock)
        host = CardHost(world.port, log=os.path.join(tmp, "h.log"))
        walls, apdus = [], []
        for i in range(N + 2):
            if i == 2:  # two warm-up rounds; then the daemon's CPU over all N
                c_start = cpu_of(d.pid)
            host.insert("vitale2")
            w.expect("CardInserted", reader=R0, ignore=("DriverUp", "ReaderAdded", "CardRemoved"))
            t0 = time.monotonic()
            e = w.expect("CardRead", reader=R0)
            t1 = time.monotonic()
            if i >= 2:
                walls.append(t1 - t0)
                apdus.append(e["summary"]["apdus"])
            host.remove()
        w.expect("CardRemoved", reader=R0)
        # /proc ticks are 10 ms: only the total over N cards means something
        cpu_total = cpu_of(d.pid) - c_start
        cmds = transcript_commands()
        pwalls, pcpus = [], []
        host.insert("vitale2")
        time.sleep(0.5)
        for i in range(N + 2):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            p = subprocess.run([probe, "-q", "-r", R0] + cmds, env=env, capture_output=True, text=True)
            t1 = time.monotonic()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if p.returncode != 0:
                raise RuntimeError("pcsc_probe failed: %s %s" % (p.stdout[-300:], p.stderr[-300:]))
            if i >= 2:
                pwalls.append(t1 - t0)
                pcpus.append((r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime))
        xch = sum(int(x) for x in re.findall(r"xch=(\d+)", p.stdout))
        host.remove()
        a, b = statistics.median(walls) * 1000, statistics.median(pwalls) * 1000
        row("Vitale 2 read: CardInserted → CardRead (ms, median of %d)" % N, "%.2f" % a,
            "%.2f (pcsc_probe: exec, connect, same APDUs)" % b, "%.2f" % (a / b))
        ca, cb = cpu_total / N * 1000, sum(pcpus) / len(pcpus) * 1000
        row("CPU per Vitale 2 card (ms, total over %d cards / N; vitaled: insert+read+remove+events)" % N, "%.2f" % ca,
            "%.2f (pcsc_probe process)" % cb, "%.2f" % (ca / cb if cb else float("nan")))
        row("APDUs per Vitale 2 read", "%d" % statistics.median(apdus),
            "%d (pcsc_probe transmits for the same commands)" % xch, "%.2f" % (statistics.median(apdus) / xch))
    finally:
        if w:
            w.close()
        if host:
            try:
                host.close()
            except Exception:
                pass
        d.stop()
        world.stop()


if __name__ == "__main__":
    main()
