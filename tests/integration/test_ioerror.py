#!/usr/bin/python3
"""I/O errors under the daemon: vitaled runs under libfiu's POSIX preload
(`fiu-run -x -f FIFO`), and fiu-ctrl switches failure points on and off in
the running process. What reaches SQLite here (checked first, below):
`posix/io/sync/fdatasync` fails every commit's WAL sync (SQLITE_IOERR_FSYNC),
`posix/io/rw/pwrite` every WAL or database write (SQLITE_IOERR_WRITE). Only
those two points are used, so the daemon's sockets, eventfds and log keep
working.

  1. creates succeed; then every fdatasync fails: each create answers
     IoError with SQLite's reason, nothing is acknowledged, GetStatus and
     ListSheets keep answering, the daemon keeps its PID;
  2. the fault lifted: creates succeed again, numbers go on densely;
  3. every pwrite fails: IoError again; lifted: creates succeed;
  4. four clients create while fdatasync fails at random (30 %), then pwrite
     at random (30 %), with whatever errno fiu picks: every answer is a
     sheet, IoError, or QueueFull (ENOSPC is a full disk), nothing else;
  5. the daemon is killed (-9) and started again without faults: every
     acknowledged sheet is there with its number, decrypts and verifies
     (independent verifier), numbers are unique and consecutive, and a copy
     of the files passes PRAGMA integrity_check.

Seeded (printed; IOERROR_SEED replays the clients' timing). Exit 0 pass,
77 skip (no fiu-run), 1 fail. Every process is stopped by PID on every exit
path (harness.py).
"""
import os
import random
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, check_seqs, list_all  # noqa: E402

check = harness.check
SEED = int(os.environ.get("IOERROR_SEED", str(random.SystemRandom().randrange(1 << 31))))
FSYNC = "posix/io/sync/fdatasync"
PWRITE = "posix/io/rw/pwrite"


class Fiu:
    def __init__(self, base, pid):
        self.base, self.pid = base, pid

    def ctl(self, cmd):
        p = subprocess.run(["fiu-ctrl", "-f", self.base, "-c", cmd, str(self.pid)],
                           capture_output=True, text=True, timeout=10)
        check(p.returncode == 0, "fiu-ctrl %s: %s %s" % (cmd, p.stdout, p.stderr))

    def enable(self, name, probability=None, errno=None):
        extra = ",failinfo=%d" % errno if errno else ""
        if probability is None:
            self.ctl("enable name=%s%s" % (name, extra))
        else:
            self.ctl("enable_random name=%s,probability=%s%s" % (name, probability, extra))

    def disable(self, name):
        self.ctl("disable name=%s" % name)


def create(d, acked, k=0):
    err, r = call(d, "CreateSheet", sl.degraded(nir=sl.NIRS[k % 3]))
    if err is None:
        acked[r["id"]] = r["seq"]
    return err, r


def fault_phase(d, fiu, name, acked, what):
    n = len(acked)
    fiu.enable(name, errno=5)  # EIO: fiu would otherwise pick any errno the call may give
    try:
        for i in range(5):
            err, r = create(d, acked, i)
            check(err == sl.IFACE + "IoError" and "disk I/O error" in r.get("reason", ""),
                  "%s: create answers IoError with the reason (%s %r)" % (what, err, r))
        check(len(acked) == n, "%s: nothing acknowledged" % what)
        err, st = call(d, "GetStatus")
        check(err is None and st["queue"]["state"] == "open", "%s: GetStatus answers" % what)
        err, ls = call(d, "ListSheets", {"limit": 5})
        check(err is None, "%s: ListSheets reads (%s)" % (what, err))
        check(d.proc.poll() is None, "%s: the daemon is up" % what)
    finally:
        fiu.disable(name)
    last = max(acked.values()) if acked else 0
    err, r = create(d, acked)
    check(err is None and r["seq"] == last + 1,
          "%s lifted: creates succeed, the next number is %d (%s %r)" % (what, last + 1, err, r))


def random_phase(d, fiu, name, acked, rng, seconds=2.0):
    answers = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    seeds = [rng.randrange(1 << 30) for _ in range(4)]

    def worker(k):
        r_ = random.Random(seeds[k])
        i = 0
        while time.monotonic() < stop:
            i += 1
            local = {}
            err, r = create(d, local, k + i)
            with lock:
                acked.update(local)
                answers[err] = answers.get(err, 0) + 1
            time.sleep(r_.uniform(0, 0.004))

    fiu.enable(name, 0.3)
    try:
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    finally:
        fiu.disable(name)
    print("       %s at 30 %%: %s" % (name, {k or "ok": v for k, v in answers.items()}), flush=True)
    # fiu picks a random errno among those the call may give: ENOSPC from a
    # write is a full disk, and SQLite says so (QueueFull)
    check(set(answers) <= {None, sl.IFACE + "IoError", sl.IFACE + "QueueFull"},
          "only sheets, IoError or QueueFull: %s" % answers)
    check(answers.get(None, 0) > 0 and answers.get(sl.IFACE + "IoError", 0) > 0,
          "both outcomes seen under %s: %s" % (name, answers))
    check(d.proc.poll() is None, "the daemon is up after %s" % name)


def main():
    if not shutil.which("fiu-run") or not shutil.which("fiu-ctrl"):
        print("SKIP: fiu-run/fiu-ctrl not installed (fiu-utils)")
        sys.exit(77)
    if not shutil.which("sqlite3"):
        print("SKIP: no sqlite3 CLI")
        sys.exit(77)
    print("seed %d (IOERROR_SEED=%d replays)" % (SEED, SEED), flush=True)
    rng = random.Random(SEED)
    tmp = harness.mktemp("test_ioerror-")
    key, cert, pub = sl.make_key(tmp)
    base = os.path.join(tmp, "fiu")
    d = harness.Daemon(conf=sl.conf(key), tmp=tmp, wrapper="fiu-run -x -f %s" % base).start()
    acked = {}
    try:
        fiu = Fiu(base, d.proc.pid)
        for i in range(5):
            err, r = create(d, acked, i)
            check(err is None, "before faults: %s %r" % (err, r))
        print("  ok   creates before any fault", flush=True)
        fault_phase(d, fiu, FSYNC, acked, "every fdatasync fails")
        print("  ok   fdatasync failing: IoError, daemon up, then creates again", flush=True)
        fault_phase(d, fiu, PWRITE, acked, "every pwrite fails")
        print("  ok   pwrite failing: IoError, daemon up, then creates again", flush=True)
        random_phase(d, fiu, FSYNC, acked, rng)
        random_phase(d, fiu, PWRITE, acked, rng)
        print("  ok   random faults under 4 clients: sheets, IoError or QueueFull only", flush=True)
        err, r = create(d, acked)
        check(err is None, "after the random faults: %s %r" % (err, r))
        pid = d.proc.pid
        d.kill()
        copy = os.path.join(tmp, "copy")
        os.makedirs(copy)
        for f in ("queue.db", "queue.db-wal", "queue.db-shm"):
            if os.path.exists(os.path.join(d.state, f)):
                shutil.copy2(os.path.join(d.state, f), copy)
        p = subprocess.run(["sqlite3", os.path.join(copy, "queue.db"), "PRAGMA integrity_check;"],
                           capture_output=True, text=True, timeout=120)
        check(p.stdout.strip() == "ok", "integrity_check of the files after kill -9: %s %s"
              % (p.stdout, p.stderr))
        d2 = harness.Daemon(conf=sl.conf(key), tmp=tmp).start()
        check(d2.proc.pid != pid, "restarted")
        stored = {m["id"]: m for m in list_all(d2)}
        missing = [i for i in acked if i not in stored]
        check(not missing, "every acknowledged sheet is on disk (%d missing)" % len(missing))
        check(all(stored[i]["seq"] == s for i, s in acked.items()), "with its acknowledged number")
        check_seqs(stored.values(), "after the faults")
        for sid, meta in stored.items():
            problems = sl.check_stored(d2, meta, pub)
            check(not problems, "%s: %s" % (sid, problems))
        print("  ok   kill -9 and restart: %d acknowledged, %d stored, all verify"
              % (len(acked), len(stored)), flush=True)
        d2.stop()
    except harness.Failure as e:
        print("FAIL: %s (seed %d)" % (e, SEED), flush=True)
        sys.exit(1)
    print("ioerror: pass")


if __name__ == "__main__":
    main()
