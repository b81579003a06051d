#!/usr/bin/python3
"""A full disk under the daemon: the state dir is a small tmpfs (8 MiB: the
WAL reaches its checkpoint size, about 4 MiB, and the database grows after
it) mounted by this test in a mount namespace of its own (`unshare -m`, then
`mount -t tmpfs`; skipped with 77 where that is not permitted), with a
1 MiB ballast file beside the queue.

  1. four clients create sheets until the disk is full: from the first
     QueueFull or IoError on, every answer is one of those two (and says
     why), the daemon stays up, GetStatus and ListSheets answer;
  2. a copy of the files passes PRAGMA integrity_check;
  3. the ballast is removed: creates succeed again, in the same daemon;
  4. kill -9, restart on the same tmpfs: every acknowledged sheet is there
     with its number, decrypts, verifies (independent verifier); numbers
     unique and consecutive.

Exit 0 pass, 77 skip, 1 fail. Every process is stopped by PID on every exit
path (harness.py); the mount goes away with the namespace.
"""
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SIZE = "8m"
BALLAST = 1024 * 1024


def reexec_in_namespace():
    if os.environ.get("DISKFULL_IN_NS") == "1":
        return
    if not shutil.which("unshare"):
        print("SKIP: no unshare")
        sys.exit(77)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True)
    if p.returncode != 0:
        print("SKIP: unshare -m is not permitted here: %s" % p.stderr.decode().strip())
        sys.exit(77)
    env = dict(os.environ, DISKFULL_IN_NS="1")
    os.execve(shutil.which("unshare"), ["unshare", "-m", "--propagation", "private",
                                        "/usr/bin/python3", os.path.abspath(__file__)], env)


reexec_in_namespace()

import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, check_seqs, list_all  # noqa: E402

check = harness.check


def main():
    tmp = harness.mktemp("test_diskfull-")
    key, cert, pub = sl.make_key(tmp)
    state = os.path.join(tmp, "state")
    os.makedirs(state)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % SIZE, "tmpfs", state],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print("SKIP: cannot mount a tmpfs here: %s" % p.stderr.strip())
        sys.exit(77)
    ballast = os.path.join(state, "ballast")
    with open(ballast, "wb") as f:
        f.write(b"\xa5" * BALLAST)
    d = harness.Daemon(conf=sl.conf(key), tmp=tmp).start()
    pid = d.proc.pid
    acked, answers = {}, {}
    lock = threading.Lock()
    full = threading.Event()
    after_full = {}

    def worker(k):
        i = 0
        while True:
            i += 1
            err, r = call(d, "CreateSheet", sl.degraded(nir=sl.NIRS[(k + i) % 3]))
            with lock:
                answers[err] = answers.get(err, 0) + 1
                if err is None:
                    acked[r["id"]] = r["seq"]
                    if full.is_set():
                        after_full["ok"] = after_full.get("ok", 0) + 1
                else:
                    if err not in (sl.IFACE + "QueueFull", sl.IFACE + "IoError"):
                        after_full.setdefault("bad", []).append((err, r))
                    elif not full.is_set():
                        after_full["first"] = (err, r)
                    full.set()
                    after_full["n"] = after_full.get("n", 0) + 1
                if after_full.get("n", 0) >= 40 or i > 20000:
                    return

    try:
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        print("  %d sheets acknowledged before the disk was full (%.1f s); answers %s"
              % (len(acked), time.monotonic() - t0, {k or "ok": v for k, v in answers.items()}),
              flush=True)
        check(full.is_set(), "the disk filled up")
        check("bad" not in after_full, "only QueueFull or IoError when full: %s" % after_full.get("bad"))
        err, r = after_full["first"]
        check(r.get("reason"), "the first refusal says why: %s %r" % (err, r))
        print("  first refusal: %s %s" % (err, r.get("reason")), flush=True)
        check(after_full.get("ok", 0) <= 8, "once full, the disk stays full (%s late successes)"
              % after_full.get("ok", 0))
        check(d.proc.poll() is None and d.proc.pid == pid, "the daemon is up")
        err, st = call(d, "GetStatus")
        check(err is None and st["queue"]["state"] == "open", "GetStatus answers")
        n_listed = len(list_all(d))
        check(n_listed >= len(acked), "ListSheets reads the %d sheets" % n_listed)
        copy = os.path.join(tmp, "copy")
        os.makedirs(copy)
        for f in ("queue.db", "queue.db-wal", "queue.db-shm"):
            if os.path.exists(os.path.join(state, f)):
                shutil.copy2(os.path.join(state, f), copy)
        p = subprocess.run(["sqlite3", os.path.join(copy, "queue.db"), "PRAGMA integrity_check;"],
                           capture_output=True, text=True, timeout=120)
        check(p.stdout.strip() == "ok", "integrity_check while full: %s %s" % (p.stdout, p.stderr))
        print("  ok   full: refusals with reasons, daemon up, reads work, file intact", flush=True)
        os.unlink(ballast)
        oks = 0
        for i in range(20):
            err, r = call(d, "CreateSheet", sl.degraded())
            check(err is None, "space freed: create %d succeeds (%s %r)" % (i, err, r))
            acked[r["id"]] = r["seq"]
            oks += 1
        check(d.proc.pid == pid, "same daemon")
        print("  ok   ballast removed: %d creates succeed in the same daemon" % oks, flush=True)
        d.kill()
        d2 = harness.Daemon(conf=sl.conf(key), tmp=tmp).start()
        stored = {m["id"]: m for m in list_all(d2)}
        missing = [i for i in acked if i not in stored]
        check(not missing, "every acknowledged sheet survived (%d missing)" % len(missing))
        check(all(stored[i]["seq"] == s for i, s in acked.items()), "with its number")
        check_seqs(stored.values(), "after the full disk")
        for sid, meta in stored.items():
            problems = sl.check_stored(d2, meta, pub)
            check(not problems, "%s: %s" % (sid, problems))
        print("  ok   kill -9 and restart: %d acknowledged, %d stored, all verify"
              % (len(acked), len(stored)), flush=True)
        d2.stop()
    except harness.Failure as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    finally:
        harness._kill_all()
        subprocess.run(["umount", "-l", state], capture_output=True)
    print("diskfull: pass")


if __name__ == "__main__":
    main()
