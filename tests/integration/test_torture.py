#!/usr/bin/python3
"""kill -9 torture of the durable queue, through the whole daemon.

Several client threads create sheets in a loop (CreateSheet, degraded, file
signer ES256) and record every id the API acknowledged with its sequence
number. Meanwhile vitaled is SIGKILLed at random moments (seeded: the seed
is printed, TORTURE_SEED replays it) and restarted; about one kill in ten
hits the daemon during its start-up, before it answers. The clients keep
going through the restarts (a refused or cut connection is not an
acknowledgement). After the last kill, a copy of the database files as the
crash left them passes `PRAGMA integrity_check` (sqlite3 CLI); then the
daemon is started once more and:

- every acknowledged sheet is there, queued, with the acknowledged number;
- each one decrypts (GetSheet) and its export verifies with the
  independent verifier (signature, deterministic encoding, rules, due date),
  and what was signed is what the queue holds (id, number, dates);
- sequence numbers are unique and consecutive per practitioner and day
  (an unacknowledged create either is fully there or not at all).

TORTURE_KILLS sets the number of kills (default 30; TORTURE=long: 2000, as
`make torture` runs it). TORTURE_CLIENTS (default 4); TORTURE_PAUSE_MS between
a client's creates (default 0; 10 in the long run). Exit 0 pass, 1 fail.
Every process is stopped by PID on every exit path (harness.py).
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
from sheetlib import harness, check_seqs, list_all  # noqa: E402

LONG = os.environ.get("TORTURE") == "long"
# under a wrapper (valgrind) the daemon is ~20x slower: give it time to work between kills
SLOW = 20.0 if os.environ.get("TEST_WRAPPER") else 1.0
KILLS = int(os.environ.get("TORTURE_KILLS", "2000" if LONG else "30"))
CLIENTS = int(os.environ.get("TORTURE_CLIENTS", "4"))
# the long run pauses between creates so that the check at the end (every
# sheet decrypted and verified) stays within minutes
PAUSE = float(os.environ.get("TORTURE_PAUSE_MS", "10" if LONG else "0")) / 1000.0
SEED = int(os.environ.get("TORTURE_SEED", str(random.SystemRandom().randrange(1 << 31))))


class Clients:
    def __init__(self, sock, n):
        self.sock = sock
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}          # id -> seq
        self.errors = {}         # error name -> count
        self.cut = 0             # calls that got no answer (the daemon died)
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(n)]

    def run(self, k):
        i = 0
        while not self.stop.is_set():
            i += 1
            if PAUSE:
                time.sleep(PAUSE)
            params = sl.degraded(nir=sl.NIRS[(k + i) % len(sl.NIRS)])
            try:
                c = harness.Varlink(self.sock, timeout=10)
            except OSError:
                time.sleep(0.003)
                continue
            try:
                r = c.call(sl.IFACE + "CreateSheet", params)
            except OSError:
                r = None
            finally:
                c.close()
            with self.lock:
                if r is None:
                    self.cut += 1
                elif "error" in r:
                    name = r["error"]
                    if name.endswith("SignerUnavailable") and "starting" in r.get("parameters", {}).get("reason", ""):
                        name += " (starting)"  # just restarted: the key is being opened
                    self.errors[name] = self.errors.get(name, 0) + 1
                else:
                    p = r["parameters"]
                    if p["id"] in self.acked:
                        raise RuntimeError("id %s acknowledged twice" % p["id"])
                    self.acked[p["id"]] = p["seq"]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def integrity_check(state, where):
    """PRAGMA integrity_check on a copy of the files as they are now."""
    copy = os.path.join(where, "copy")
    shutil.rmtree(copy, ignore_errors=True)
    os.makedirs(copy)
    for f in ("queue.db", "queue.db-wal", "queue.db-shm"):
        if os.path.exists(os.path.join(state, f)):
            shutil.copy2(os.path.join(state, f), os.path.join(copy, f))
    p = subprocess.run(["sqlite3", os.path.join(copy, "queue.db"), "PRAGMA integrity_check;"],
                       capture_output=True, text=True, timeout=300)
    return p.stdout.strip(), p.stderr.strip()


def main():
    if not shutil.which("sqlite3"):
        print("SKIP: no sqlite3 CLI")
        sys.exit(77)
    print("seed %d (TORTURE_SEED=%d replays), %d kills, %d clients" % (SEED, SEED, KILLS, CLIENTS),
          flush=True)
    rng = random.Random(SEED)
    tmp = harness.mktemp("test_torture-")
    key, cert, pub = sl.make_key(tmp)
    d = harness.Daemon(conf=sl.conf(key, log_level="notice"), tmp=tmp)
    cl = Clients(d.sock, CLIENTS)
    t0 = time.monotonic()
    early = 0
    d.start()
    cl.start()
    try:
        for k in range(KILLS):
            if rng.random() < 0.1:
                # a kill during start-up: open, key check, sending -> queued
                d.kill()
                d.wait_ready = False
                d.start()
                time.sleep(rng.uniform(0, 0.02))
                early += 1
            else:
                time.sleep(rng.uniform(0.002, 0.15) * SLOW)
            rc = d.kill()
            if rc != -9:
                raise harness.Failure("vitaled exited with %s before its kill:\n%s" % (rc, d.log_text()[-2000:]))
            if k == KILLS - 1 or (k + 1) % max(1, KILLS // 5) == 0:
                out, err = integrity_check(d.state, tmp)
                harness.check(out == "ok", "integrity_check after kill %d: %s %s" % (k + 1, out, err))
            d.wait_ready = True
            if k < KILLS - 1:
                d.start()
            if LONG and (k + 1) % 100 == 0:
                print("  %d kills, %d acknowledged" % (k + 1, len(cl.acked)), flush=True)
        # the last kill left the files as a crash does: checked above
        d.wait_ready = True
        d.start()
        time.sleep(0.3)
        cl.join()
        elapsed = time.monotonic() - t0
        acked = dict(cl.acked)
        print("  %d kills (%d during start-up) in %.1f s; %d sheets acknowledged, %d calls cut, "
              "errors %s" % (KILLS, early, elapsed, len(acked), cl.cut, cl.errors), flush=True)
        harness.check(len(acked) > KILLS, "the clients got work done (%d)" % len(acked))
        bad_errors = {e: n for e, n in cl.errors.items()
                      if not e.endswith("ShuttingDown") and not e.endswith("(starting)")}
        harness.check(not bad_errors, "no error answers but ShuttingDown and a signer still "
                      "starting: %s" % bad_errors)
        stored = {m["id"]: m for m in list_all(d)}
        missing = [i for i in acked if i not in stored]
        harness.check(not missing, "every acknowledged sheet is stored (%d missing: %s)"
                      % (len(missing), missing[:5]))
        wrong = [i for i, s in acked.items() if stored[i]["seq"] != s or stored[i]["state"] != "queued"]
        harness.check(not wrong, "acknowledged numbers and states as answered (%s)" % wrong[:5])
        check_seqs(stored.values(), "after %d kills" % KILLS)
        print("  %d stored (%d beyond the acknowledged: in flight at a kill)"
              % (len(stored), len(stored) - len(acked)), flush=True)
        n = 0
        for sid, meta in stored.items():
            problems = sl.check_stored(d, meta, pub)
            harness.check(not problems, "sheet %s: %s" % (sid, problems))
            n += 1
        print("  %d sheets decrypted and verified independently" % n, flush=True)
        rc, _ = d.stop()
        harness.check(rc == 0, "clean stop at the end (%s)" % rc)
        out, err = integrity_check(d.state, tmp)
        harness.check(out == "ok", "integrity_check after the clean stop: %s %s" % (out, err))
    except harness.Failure as e:
        print("FAIL: %s (seed %d)" % (e, SEED), flush=True)
        cl.stop.set()
        sys.exit(1)
    finally:
        cl.stop.set()
    print("torture: pass (seed %d)" % SEED)


if __name__ == "__main__":
    main()
