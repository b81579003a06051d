#!/usr/bin/python3
"""Issue 11, point 17: CreateSheet, CreateDraft and CompleteDraft are
idempotent with a client request id.

  1. the same request_id twice: the same answer (id, number), one sheet;
     GetSheet and ListSheets find it by request_id; a draft and its
     completion likewise; a bad request_id is InvalidParameter;
  2. kill -9 torture: clients create sheets, each with its own request id;
     a request whose answer never came (the daemon was killed between
     COMMIT and the answer, or before) is retried with the SAME request id
     until it is answered. At the end: every request id has exactly one
     sheet, every answer for one request id gave the same id and number,
     no number was issued twice, and there are no sheets without a request
     (no double billing). Prints how many answers were lost and recovered.

IDEM_KILLS (default 20), IDEM_CLIENTS (default 4); IDEM_SEED replays.
Exit 0 pass, 1 fail.
"""
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, check_seqs, list_all  # noqa: E402

check = harness.check
KILLS = int(os.environ.get("IDEM_KILLS", "20"))
CLIENTS = int(os.environ.get("IDEM_CLIENTS", "4"))
SEED = int(os.environ.get("IDEM_SEED", str(random.SystemRandom().randrange(1 << 31))))


def basics(d):
    p = sl.degraded()
    p["request_id"] = "till-1:0001"
    err, a = call(d, "CreateSheet", p)
    check(err is None, "CreateSheet with a request id: %s %r" % (err, a))
    err, b = call(d, "CreateSheet", p)
    check(err is None and b == a, "the same request again: the same answer (%r, %r)" % (a, b))
    err, g = call(d, "GetSheet", {"request_id": "till-1:0001"})
    check(err is None and g["meta"]["id"] == a["id"] and g["meta"]["request_id"] == "till-1:0001",
          "GetSheet by request_id: %s %r" % (err, g and g.get("meta")))
    err, lst = call(d, "ListSheets", {"request_id": "till-1:0001"})
    check(err is None and [m["id"] for m in lst["sheets"]] == [a["id"]], "ListSheets by request_id")
    err, g = call(d, "GetSheet", {"request_id": "never-seen"})
    check(err == sl.IFACE + "SheetNotFound", "an unknown request id: %s" % err)
    for bad in ("", "x" * 65, "a b", "caf\u00e9", 12):
        q = sl.degraded()
        q["request_id"] = bad
        err, r = call(d, "CreateSheet", q)
        check(err == "org.varlink.service.InvalidParameter" and r.get("parameter") == "request_id",
              "request_id %r refused: %s %r" % (bad, err, r))
    # a sheet made with another request id is another sheet
    p["request_id"] = "till-1:0002"
    err, c = call(d, "CreateSheet", p)
    check(err is None and c["id"] != a["id"] and c["seq"] == a["seq"] + 1, "another request")
    print("  same request twice: %s number %d, once" % (a["id"], a["seq"]), flush=True)


class Clients:
    def __init__(self, sock, n):
        self.sock = sock
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers = {}      # request id -> list of (id, seq)
        self.retried = 0       # requests that needed at least one retry
        self.recovered = 0     # ... and whose retry found a sheet the lost answer made
        self.errors = {}
        self.threads = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(n)]

    def one(self, params):
        try:
            c = harness.Varlink(self.sock, timeout=10)
        except OSError:
            return None
        try:
            return c.call(sl.IFACE + "CreateSheet", params)
        except OSError:
            return None
        finally:
            c.close()

    def run(self, k):
        i = 0
        while not self.stop.is_set():
            i += 1
            rid = "c%d-%06d" % (k, i)
            params = sl.degraded(nir=sl.NIRS[(k + i) % len(sl.NIRS)])
            params["request_id"] = rid
            tries = 0
            while True:
                tries += 1
                r = self.one(params)
                if r is not None and "error" not in r:
                    break
                if r is not None:
                    with self.lock:
                        self.errors[r["error"]] = self.errors.get(r["error"], 0) + 1
                if self.stop.is_set() and tries > 2000:
                    return
                time.sleep(0.005)
            p = r["parameters"]
            with self.lock:
                self.answers.setdefault(rid, []).append((p["id"], p["seq"]))
                if tries > 1:
                    self.retried += 1
            # about one in five answered requests is asked again at once:
            # it must give the same sheet
            if random.random() < 0.2:
                r2 = self.one(params)
                if r2 is not None and "error" not in r2:
                    with self.lock:
                        self.answers[rid].append((r2["parameters"]["id"], r2["parameters"]["seq"]))

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def main():
    print("seed %d (IDEM_SEED replays), %d kills, %d clients" % (SEED, KILLS, CLIENTS), flush=True)
    rng = random.Random(SEED)
    random.seed(SEED)
    tmp = harness.mktemp("test_idempotent-")
    key, cert, pub = sl.make_key(tmp)
    d = harness.Daemon(conf=sl.conf(key, log_level="info"), tmp=tmp)
    try:
        d.start()
        basics(d)
        cl = Clients(d.sock, CLIENTS)
        cl.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.01, 0.2))
            rc = d.kill()
            check(rc == -9, "vitaled exited with %s before its kill:\n%s" % (rc, d.tail()))
            d.start()
        time.sleep(0.5)
        cl.join()
        answers = dict(cl.answers)
        stored = list_all(d)
        by_rid = {}
        for m in stored:
            by_rid.setdefault(m.get("request_id"), []).append(m)
        doubled = {r: [m["id"] for m in ms] for r, ms in by_rid.items() if r and len(ms) > 1}
        check(not doubled, "no request has two sheets: %s" % list(doubled.items())[:5])
        without = [m["id"] for m in stored if not m.get("request_id")]
        check(len(without) == 0, "every sheet came from a request with an id (%d without)"
              % len(without))
        differ = {r: a for r, a in answers.items() if len(set(a)) != 1}
        check(not differ, "every answer for one request id is the same: %s" % list(differ.items())[:5])
        for r, a in answers.items():
            m = by_rid.get(r)
            check(m and m[0]["id"] == a[0][0] and m[0]["seq"] == a[0][1],
                  "request %s answered %s, stored %s" % (r, a[0], m and (m[0]["id"], m[0]["seq"])))
        check_seqs(stored, "after %d kills" % KILLS)
        unanswered = [r for r in by_rid if r and r not in answers and r != "till-1:0001" and r != "till-1:0002"]
        print("  %d kills; %d requests answered (%d needed a retry, %d answers asked twice); "
              "%d sheets stored; %d stored whose request was never answered (in flight at the end); "
              "errors while down: %s"
              % (KILLS, len(answers), cl.retried, sum(1 for a in answers.values() if len(a) > 1),
                 len(stored), len(unanswered), cl.errors), flush=True)
        check(cl.retried > 0, "some answers were lost and retried (%d)" % cl.retried)
        replays = sum(1 for l in d.log_text().splitlines() if "already made" in l)
        asked_twice = sum(1 for a in answers.values() if len(a) > 1)
        print("  %d answers given again from the stored sheet: %d second asks, 1 in the basics, "
              "%d retries whose first answer was lost after COMMIT (the same sheet, not a second)"
              % (replays, asked_twice, replays - asked_twice - 1), flush=True)
        rc, _ = d.stop()
        check(rc == 0, "clean stop")
    except harness.Failure as e:
        print("FAIL: %s (seed %d)" % (e, SEED), flush=True)
        sys.exit(1)
    print("idempotent: pass (seed %d)" % SEED)


if __name__ == "__main__":
    main()
