#!/usr/bin/python3
"""Bench rows for the uploader (issue 10), each beside a baseline measured in
the same run:

- Drain N (default 10,000) queued sheets to the test insurer
  (tests/insurer/insurer.py, mutual TLS on loopback): sheets per second
  and vitaled's CPU per sheet, from the insurer's `listen` (the port was
  closed while the sheets were made) until the queue is drained. The
  sheets are real ones made through the API (build/tools/sheet_bench, 8
  clients, degraded sheets) by vitaled's own file signer, whose key has a
  signing certificate from the insurer's practitioner CA ([insurer]
  signer_chain). (tests/tools/fill_queue is not used: the sheets it puts
  carry no signing certificate, so the uploader would not send them.)
  Baseline: the very batch bodies vitaled sent, kept by the insurer
  (`--save-bodies DIR`), posted again with the `curl` command to a fresh
  insurer (new state, same PKI, same certificates, same headers:
  Content-Type application/cbor, the same Idempotency-Key, no Expect):
  ONE curl process for all batches, one after the other on one
  connection (a config file with `next` between requests), as vitaled
  sends them (one at a time, connection kept). Both sides must end with
  every sheet held by the insurer. The insurer (Python, a signature check
  per sheet) bounds both sides; the ratio says whether vitaled adds to it.
- Wake-ups per second (voluntary + involuntary context switches of every
  thread, /proc/PID/task/*/status) while offline with 1,000 sheets
  waiting (the insurer's port closed, default backoff), over BENCH_UPLOAD_IDLE_S
  (default 20) s, against the same daemon on the same state dir idle with
  no insurer configured. PC/SC off on both sides.

Env: B, BENCH_UPLOAD_N, BENCH_UPLOAD_IDLE_S. Exit 77 when cbor2/cryptography
or curl is missing. Everything started here is stopped by PID (harness,
InsurerProcess); runs under /var/tmp.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
sys.path.insert(0, os.path.join(TOP, "tests", "insurer"))
try:
    import sheetlib as sl  # noqa: E402
    from sheetlib import harness  # noqa: E402
    import insurer  # noqa: E402
    import mkpki  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
except ImportError as e:
    print("bench_upload: %s; skipped" % e, file=sys.stderr)
    sys.exit(77)

TOOLS = os.path.join(harness.B, "tools")
N = int(os.environ.get("BENCH_UPLOAD_N", "10000"))
IDLE_S = float(os.environ.get("BENCH_UPLOAD_IDLE_S", "20"))
WAITING = 1000
TERMINAL = "T0001"
CURL = shutil.which("curl")


def row(what, value, baseline, ratio):
    print("| %s | %s | %s | %s |" % (what, value, baseline, ratio), flush=True)


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit("bench_upload: timed out waiting for %s" % what)


def uploader(d):
    return d.invoke("io.vitaled.Terminal.GetStatus")["uploader"]


def switches(pid):
    n = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
        except OSError:
            pass    # a thread gone meanwhile
    return n


class Setup:
    def __init__(self, base):
        self.base = base
        self.pki = os.path.join(base, "pki")
        mkpki.init_pki(self.pki, terminal_id=TERMINAL)
        self.key, _, pub = sl.make_key(base)
        self.chain = os.path.join(base, "chain.pem")
        with open(self.chain, "wb") as f:
            f.write(mkpki.issue_practitioner(self.pki, pub).public_bytes(serialization.Encoding.PEM))
        self.params = os.path.join(base, "params.json")
        with open(self.params, "w") as f:
            json.dump(sl.degraded(), f)

    def insurer(self, name, closed=False, extra=()):
        return insurer.InsurerProcess(self.pki, os.path.join(self.base, name), closed=closed,
                                      extra=["--quiet"] + list(extra))

    def conf(self, ins=None):
        c = sl.conf(self.key, log_level="notice", extra="[pcsc]\nenabled = false\n")
        c = c.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)
        if ins:
            c += ("[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
                  "client_key = %s/client.key.pem\nsigner_chain = %s\n" %
                  (ins.url, self.pki, self.pki, self.pki, self.chain))
        return c

    def daemon(self, name, ins=None, state=None):
        tmp = os.path.join(self.base, name)
        args = ["--state-dir", state] if state else []
        return harness.Daemon(conf=self.conf(ins), tmp=tmp, args=args, timeout=30.0)

    def create(self, d, n):
        out = subprocess.run([os.path.join(TOOLS, "sheet_bench"), d.sock, "8", str(n), self.params],
                             capture_output=True, text=True, check=True, timeout=900).stdout.split()
        if int(out[1]):
            raise SystemExit("bench_upload: %s create errors" % out[1])
        return float(out[0])


def drain(s):
    """vitaled drains N sheets; returns (s, cpu s, bodies dir, batches)."""
    bodies = os.path.join(s.base, "bodies")
    ins = s.insurer("ins-vitaled", closed=True, extra=["--save-bodies", bodies])
    try:
        with s.daemon("d-drain", ins) as d:
            rate = s.create(d, N)
            wait_for(lambda: uploader(d)["state"] == "offline", 30, "offline")
            u = uploader(d)
            if u["waiting"] != N:
                raise SystemExit("bench_upload: %d waiting, expected %d" % (u["waiting"], N))
            cpu0 = d.cpu_s()
            t0 = time.monotonic()
            ins.ctl("listen")
            d.invoke("io.vitaled.Terminal.Upload")
            wait_for(lambda: (lambda u: u["waiting"] == 0 and u["state"] == "idle")(uploader(d)),
                     900, "the queue drained")
            took = time.monotonic() - t0
            cpu = d.cpu_s() - cpu0
        held = ins.held()["count"]
        c = ins.counters()
        if held != N:
            raise SystemExit("bench_upload: the insurer holds %d of %d after vitaled's drain" % (held, N))
    finally:
        ins.stop()
    return took, cpu, bodies, c["batches"], rate


def curl_baseline(s, bodies):
    """The same bodies posted by one curl process to a fresh insurer."""
    files, seen = [], set()
    for name in sorted(os.listdir(bodies)):
        key = name.split("-", 1)[1][:-len(".cbor")]
        if key in seen:        # a batch vitaled sent twice (a retry): post it once
            continue
        seen.add(key)
        files.append((os.path.join(bodies, name), key))
    ins = s.insurer("ins-curl")
    try:
        cfg = os.path.join(s.base, "curl.cfg")
        with open(cfg, "w") as f:
            for i, (path, key) in enumerate(files):
                if i:
                    f.write("next\n")
                f.write('url = "%sv1/batches"\ncacert = "%s/server-ca.pem"\ncert = "%s/client.pem"\n'
                        'key = "%s/client.key.pem"\ndata-binary = "@%s"\n'
                        'header = "Content-Type: application/cbor"\nheader = "Idempotency-Key: %s"\n'
                        'header = "Expect:"\nsilent\nshow-error\noutput = "/dev/null"\n'
                        'write-out = "%%{http_code}\\n"\n' % (ins.url, s.pki, s.pki, s.pki, path, key))
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        p = subprocess.run([CURL, "--config", cfg], capture_output=True, text=True, timeout=900)
        took = time.monotonic() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        codes = p.stdout.split()
        if p.returncode or codes != ["200"] * len(files):
            raise SystemExit("bench_upload: curl exit %d, answers %s\n%s" %
                             (p.returncode, sorted(set(codes)), p.stderr[-500:]))
        held = ins.held()["count"]
        if held != N:
            raise SystemExit("bench_upload: the insurer holds %d of %d after curl" % (held, N))
    finally:
        ins.stop()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return took, cpu, len(files)


def wakeups(s):
    """(offline with WAITING sheets, idle without an insurer) wake-ups per s."""
    ins = s.insurer("ins-offline", closed=True)
    state = os.path.join(s.base, "wake-state")
    try:
        with s.daemon("d-offline", ins, state=state) as d:
            s.create(d, WAITING)
            wait_for(lambda: uploader(d)["state"] == "offline", 30, "offline")
            if uploader(d)["waiting"] != WAITING:
                raise SystemExit("bench_upload: %r" % uploader(d))
            time.sleep(1)
            w0 = switches(d.pid)
            time.sleep(IDLE_S)
            off = (switches(d.pid) - w0) / IDLE_S
            u = uploader(d)
            if u["state"] != "offline" or u["waiting"] != WAITING:
                raise SystemExit("bench_upload: not offline any more: %r" % u)
    finally:
        ins.stop()
    with s.daemon("d-idle", None, state=state) as d:
        time.sleep(1)
        w0 = switches(d.pid)
        time.sleep(IDLE_S)
        idle = (switches(d.pid) - w0) / IDLE_S
        if uploader(d)["state"] != "disabled":
            raise SystemExit("bench_upload: %r" % uploader(d))
    return off, idle


def main():
    if not CURL:
        print("bench_upload: curl not installed; skipped", file=sys.stderr)
        sys.exit(77)
    base = tempfile.mkdtemp(prefix="vitaled-bench-upload-", dir="/var/tmp")
    harness._tmpdirs.append(base)
    s = Setup(base)
    took, cpu, bodies, batches, rate = drain(s)
    ctook, ccpu, nb = curl_baseline(s, bodies)
    row("drain %d queued sheets to the test insurer (sheets/s; %d batches, mutual TLS; baseline: "
        "the same bodies, one `curl --config` process, sequential, one connection)" % (N, nb),
        "%.0f" % (N / took), "%.0f (curl)" % (N / ctook), "%.2f" % (ctook / took))
    row("CPU per sheet while draining %d (µs; vitaled: form, read, send, commit; baseline: curl's "
        "own CPU for the same bodies)" % N, "%.1f" % (cpu / N * 1e6), "%.1f (curl)" % (ccpu / N * 1e6),
        "%.2f" % (cpu / ccpu if ccpu else float("nan")))
    off, idle = wakeups(s)
    row("wake-ups per s while offline with %d sheets waiting (%.0f s, PC/SC off; baseline: the same "
        "state dir, no insurer configured)" % (WAITING, IDLE_S), "%.2f" % off, "%.2f (idle)" % idle,
        "%.2f" % (off / idle) if idle else "n/a (baseline 0; %+.2f/s)" % off)
    print("bench_upload: %d sheets made at %.0f/s through the API for the drain; vitaled sent %d "
          "POST /v1/batches" % (N, rate, batches), file=sys.stderr)
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
