#!/usr/bin/python3
"""The uploader against the independent test insurer (tests/insurer/):

- offline first (the insurer's port closed): sheets wait, status says
  offline and why; the port opens: they go, each held once;
- every fault knob of the insurer (503/500/429 with and without
  Retry-After, a delay past the client's timeout, a reset and a truncated
  answer, seven kinds of garbage 200, 401): once it clears, every
  acknowledged sheet is held exactly once (ground truth: held.json, by id
  and by the SHA-256 of the exact bytes), duplicates only as answers;
- a sheet rejected by the insurer and a sheet whose batch gets a 400: both
  rejected with their code on both sides, the others accepted;
- the insurer's certificate from another CA, a name mismatch, an expired
  client certificate: no batch reaches the insurer, status says why;
- kill -9 of vitaled at random moments while it uploads (20 kills; 500
  with TORTURE=long): nothing lost, nothing held twice.

Everything is started here (harness.Daemon, insurer.InsurerProcess) and
stopped by PID on every exit path. Seed: UPLOAD_SEED=N to replay.
"""
import hashlib
import json
import os
import random
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "insurer"))

import harness  # noqa: E402
import sheetlib  # noqa: E402
from harness import check  # noqa: E402

try:
    import insurer  # noqa: E402
    import mkpki  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
except ImportError as e:  # cbor2 / cryptography missing
    print("skip: %s" % e)
    sys.exit(77)

T = "io.vitaled.Terminal."
TERMINAL = "T0001"


class World:
    """A PKI, a practitioner key with its certificate from the insurer's
    practitioner CA, and an insurer."""

    def __init__(self, closed=False):
        self.tmp = harness.mktemp("vitaled-upload-")
        self.pki = os.path.join(self.tmp, "pki")
        mkpki.init_pki(self.pki, terminal_id=TERMINAL)
        self.key, _, pub = sheetlib.make_key(self.tmp)
        cert = mkpki.issue_practitioner(self.pki, pub)
        self.chain = os.path.join(self.tmp, "chain.pem")
        with open(self.chain, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        self.ins = insurer.InsurerProcess(self.pki, os.path.join(self.tmp, "insurer"),
                                          closed=closed)
        self.ins.__enter__()

    def conf(self, client="client", **kw):
        o = {"gather_ms": 100, "backoff_base_s": 1, "backoff_cap_s": 3, "timeout_s": 3,
             "low_speed_time_s": 3, "connect_timeout_s": 2, "returns_interval_s": 10}
        o.update(kw)
        ins = ("[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/%s.pem\n"
               "client_key = %s/%s.key.pem\nsigner_chain = %s\n" %
               (self.ins.url, self.pki, self.pki, client, self.pki, client, self.chain))
        ins += "".join("%s = %s\n" % kv for kv in o.items())
        c = sheetlib.conf(self.key, extra=ins)
        return c.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)

    def daemon(self, **kw):
        return harness.Daemon(conf=self.conf(**kw), tmp=self.tmp, name="d", timeout=10.0)

    def close(self):
        self.ins.__exit__(None, None, None)


def create(d, n):
    ids = []
    for _ in range(n):
        end = time.monotonic() + 10
        while True:
            err, r = sheetlib.call(d, "CreateSheet", sheetlib.degraded())
            # right after a start the signer may still be opening its key
            if not (err and err.endswith("SignerUnavailable") and time.monotonic() < end):
                break
            time.sleep(0.05)
        check(err is None, "CreateSheet: %s %r" % (err, r))
        ids.append(r["id"])
    return ids


def uploader(d):
    return d.result(T + "GetStatus")[1]["uploader"]


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise harness.Failure("timed out waiting for %s" % what)


def drained(d):
    u = uploader(d)
    return u if u["waiting"] == 0 and u["state"] == "idle" else None


def states(d):
    return {m["id"]: m for m in sheetlib.list_all(d)}


REJECTED = set()  # acknowledged sheets the insurer rejected (on purpose)


def check_exactly_once(w, d, acked, rejected=REJECTED):
    """Every acknowledged sheet is held once by the insurer, with the bytes
    the terminal stores; rejected ones are not held; the terminal says
    accepted (or rejected) for each."""
    held = w.ins.held()
    by_id = {}
    for s in held["sheets"]:
        check(s["id"] not in by_id, "sheet %s held twice" % s["id"])
        by_id[s["id"]] = s
    st = states(d)
    for sid in acked:
        if sid in rejected:
            check(sid not in by_id, "rejected sheet %s held" % sid)
            check(st[sid]["state"] == "rejected", "%s: %r" % (sid, st[sid]))
            continue
        if sid not in by_id:
            ans = [(a.get("status"), a.get("fault"), r) for a in w.ins.answers()
                   for r in a.get("results") or [] if r.get("id") == sid]
            raise harness.Failure("acknowledged sheet %s not held by the insurer: terminal %r, "
                                  "insurer answers %r" % (sid, st.get(sid), ans))
        digest = hashlib.sha256(sheetlib.export(d, sid)).hexdigest()
        check(by_id[sid]["sha256"] == digest, "sheet %s: other bytes held" % sid)
        check(st[sid]["state"] in ("accepted", "paid", "refused"), "%s: %r" % (sid, st[sid]))
    return held


def t_offline_then_online(w):
    w.ins.ctl("close")
    with w.daemon() as d:
        ids = create(d, 5)
        u = wait_for(lambda: (lambda u: u if u["state"] == "offline" else None)(uploader(d)),
                     10, "offline")
        check("cannot reach the insurer" in (u["reason"] or ""), u)
        check(u["waiting"] == 5, u)
        w.ins.ctl("listen")
        t0 = time.monotonic()
        d.result(T + "Upload")
        wait_for(lambda: drained(d), 15, "the queue drained after listen")
        print("offline -> online: drained %.2f s after listen" % (time.monotonic() - t0))
        check_exactly_once(w, d, ids)
        u = uploader(d)
        check(u["last_success"] and u["reason"] is None, u)
    return ids


FAULTS = [
    "fail 503 2 retry_after=1", "fail 500 2", "fail 429 1 retry_after=date:1",
    "fail 502 1", "fail 504 1", "delay 4 1", "delay 4 1 process=0",
    "reset 1", "reset 1 process=0", "truncate 1",
    "garbage 1 kind=html", "garbage 1 kind=notjson", "garbage 1 kind=empty",
    "garbage 1 kind=wrongid", "garbage 1 kind=short", "garbage 1 kind=status",
    "garbage 1 kind=order", "fail 401 1", "fail 403 1",
]


def t_faults(w, acked):
    with w.daemon() as d:
        for fault in FAULTS:
            w.ins.ctl("clear")
            w.ins.ctl(fault + " path=/v1/batches")
            ids = create(d, 3)
            acked += ids
            d.result(T + "Upload")
            t0 = time.monotonic()
            wait_for(lambda: drained(d), 25, "drained after %r" % fault)
            fired = w.ins.counters()["faults"]
            print("fault %-40s cleared in %.1f s (fired so far %s)" %
                  (fault, time.monotonic() - t0, sum(fired.values())))
            check_exactly_once(w, d, acked)
        c = w.ins.counters()
        check(sum(c["faults"].values()) >= len(FAULTS), c["faults"])
        print("insurer answers: %s; sheets %s" % (json.dumps(c["answers"]), c["sheets"]))


def t_rejections(w, acked):
    with w.daemon() as d:
        w.ins.ctl("close")
        ids = create(d, 6)
        w.ins.ctl("reject %s signature reason='bad scan'" % ids[1])
        w.ins.ctl("mark %s" % ids[4])
        w.ins.ctl("listen")
        watch = d.watch()
        d.result(T + "Upload")
        wait_for(lambda: drained(d), 25, "drained with rejections")
        acked += ids
        REJECTED.update((ids[1], ids[4]))
        check_exactly_once(w, d, acked)
        st = states(d)
        check(st[ids[1]]["code"] == "signature", st[ids[1]])
        check(st[ids[4]]["code"] == "sheets", st[ids[4]])
        ev = watch.wait_for("SheetRejected", timeout=5)
        check(ev["code"] in ("signature", "sheets"), ev)
        watch.close()
        err, g = sheetlib.call(d, "GetSheet", {"id": ids[1]})
        check(err is None and g.get("reason") == "bad scan", (err, g.get("reason")))
        u = uploader(d)
        check(u["rejected"] == 2, u)
        # the insurer's side: the same codes
        ans = [r for a in w.ins.answers() for r in a.get("results") or []]
        check(any(r["id"] == ids[1] and r["code"] == "signature" for r in ans), "insurer side")


def t_returns(w):
    """Returns: paid and refused sheets move accepted -> paid / refused, with
    SheetPaid / SheetRefused; the opposition list is fetched with them."""
    with w.daemon() as d:
        ids = create(d, 3)
        d.result(T + "Upload")
        wait_for(lambda: drained(d), 15, "drained before the returns")
        w.ins.ctl("pay %s %s amount=1234" % (ids[0], ids[1]))
        w.ins.ctl("refuse %s code=rights reason='no rights at the care date'" % ids[2])
        w.ins.ctl("oppose 8A3F00120045")
        watch = d.watch()
        create(d, 1)
        d.result(T + "Upload")  # a round that reaches the insurer asks for the returns
        ev = watch.wait_for("SheetPaid", timeout=15)
        check(ev["amount"] == 1234 and ev["id"] in ids[:2], ev)
        ev = watch.wait_for("SheetRefused", timeout=15)
        check(ev["id"] == ids[2] and ev["code"] == "rights", ev)
        watch.close()
        st = wait_for(lambda: (lambda st: st if st[ids[0]]["state"] == "paid" and
                               st[ids[1]]["state"] == "paid" else None)(states(d)), 10, "paid")
        check(st[ids[2]]["state"] == "refused" and st[ids[2]]["code"] == "rights", st[ids[2]])
        wait_for(lambda: "opposition list: 1 cards added" in d.log_text(), 10,
                 "the opposition list fetched")
        print("returns: 2 paid, 1 refused applied; opposition list fetched")


def t_tls(w):
    before = w.ins.counters()["batches"]
    cases = [("server-otherca", "unknown CA"), ("server-wrongname", "name mismatch"),
             ("server-expired", "expired")]
    with w.daemon() as d:
        for name, words in cases:
            w.ins.ctl("server_cert %s/%s.pem %s/%s.key.pem" % (w.pki, name, w.pki, name))
            create(d, 1)
            d.result(T + "Upload")
            u = wait_for(lambda: (lambda u: u if u["state"] == "error" else None)(uploader(d)),
                         10, "error state with %s" % name)
            check(words in (u["reason"] or ""), "%s: %r" % (name, u))
            print("server %s: %s" % (name, u["reason"]))
        w.ins.ctl("server_cert %s/server.pem %s/server.key.pem" % (w.pki, w.pki))
        check(w.ins.counters()["batches"] == before, "a batch reached the insurer")
        d.result(T + "Upload")
        wait_for(lambda: drained(d), 15, "drained once the server certificate is right")
    # an expired client certificate: nothing leaves the terminal
    before = w.ins.counters()["batches"]
    with w.daemon(client="client-expired") as d:
        create(d, 1)
        d.result(T + "Upload")
        u = wait_for(lambda: (lambda u: u if u["state"] == "error" else None)(uploader(d)),
                     10, "error with an expired client certificate")
        check("expired" in u["reason"], u)
        print("client expired: %s" % u["reason"])
    check(w.ins.counters()["batches"] == before, "a batch reached the insurer")


def t_kill9(w, acked, kills):
    rnd = random.Random(SEED)
    t0 = time.monotonic()
    w.ins.ctl("clear")
    d = w.daemon()
    for i in range(kills):
        d.start()
        acked += create(d, rnd.randint(1, 6))
        # widen the windows now and then: an answer that comes late, or is lost
        if rnd.random() < 0.3:
            w.ins.ctl(rnd.choice(["delay 0.3 1 path=/v1/batches",
                                  "reset 1 path=/v1/batches process=1"]))
        d.result(T + "Upload")
        time.sleep(rnd.uniform(0, 0.4))
        d.kill()
    w.ins.ctl("clear")
    d.start()
    d.result(T + "Upload")
    wait_for(lambda: drained(d), 60, "drained after the kills")
    held = check_exactly_once(w, d, acked)
    d.stop()
    c = w.ins.counters()
    print("kill -9 x%d in %.1f s: %d sheets acknowledged, %d held, %d duplicate answers" %
          (kills, time.monotonic() - t0, len(acked), held["count"],
           c["sheets"].get("duplicate", 0)))


def held_count(w):
    try:
        return w.ins.held()["count"]
    except FileNotFoundError:  # nothing held yet
        return 0


def t_netns_child():
    """In a network namespace of our own: loopback down, sheets wait
    (offline); loopback up: the upload starts on the rtnetlink event, well
    before the backoff's timer (30 s)."""
    import subprocess
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    w = World()
    try:
        subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
        with w.daemon(backoff_base_s=30, backoff_cap_s=60, upload_interval_s=3600) as d:
            ids = create(d, 3)
            wait_for(lambda: (lambda u: u if u["state"] == "offline" else None)(uploader(d)),
                     10, "offline with the loopback down")
            time.sleep(0.5)
            t0 = time.monotonic()
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            wait_for(lambda: held_count(w) >= 3, 10, "held after the loopback came up")
            dt = time.monotonic() - t0
            print("netns: loopback up -> 3 sheets held in %.3f s" % dt)
            check(dt < 1.0, "the upload did not start on the address event (%.3f s)" % dt)
            check_exactly_once(w, d, ids)
    finally:
        harness.stop_all()
        w.close()


def t_netns():
    import subprocess
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        print("netns: skipped (unshare -n not allowed here)")
        return
    env = dict(os.environ, UPLOAD_NETNS_CHILD="1")
    p = subprocess.run(["unshare", "-n", sys.executable, os.path.abspath(__file__)], env=env,
                       timeout=120)
    check(p.returncode == 0, "the network-namespace part failed")


SEED = int(os.environ.get("UPLOAD_SEED", str(int(time.time()))))


def main():
    if os.environ.get("UPLOAD_NETNS_CHILD"):
        t_netns_child()
        print("ok")
        return
    print("UPLOAD_SEED=%d" % SEED)
    kills = 500 if os.environ.get("TORTURE") == "long" else 20
    w = World()
    try:
        acked = t_offline_then_online(w)
        t_faults(w, acked)
        t_rejections(w, acked)
        t_returns(w)
        t_tls(w)
        t_kill9(w, acked, kills)
        t_netns()
    finally:
        harness.stop_all()
        w.close()
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except harness.Failure as e:
        print("FAIL: %s" % e)
        for d in harness.running():
            print(d.tail())
        sys.exit(1)
