#!/usr/bin/python3
"""The varlink interface as tools nobody on the project wrote see it.

Debian's Go varlink library (golang-github-varlink-go-dev) parses
docs/io.vitaled.Terminal.varlink, its generator makes a client package from
it, and tests/varlinkgo/main.go is built against that package (offline:
GO111MODULE=off, GOPATH with /usr/share/gocode). Then, against a live
daemon with a signer and the test insurer:

- the generated client: GetStatus, WatchEvents with more, GetCard's own
  error as the generated type, every standard error (InterfaceNotFound,
  MethodNotFound, InvalidParameter, ExpectedMore, MethodNotImplemented,
  PermissionDenied as a user without control access), a oneway call;
- every reply and event this test provokes (sheets created and uploaded,
  the signer, the queue, readers, status, info...) checked field by field
  against the interface as that library parsed it: a field sent but not
  declared, a declared field missing, a wrong type, each fails;
- vitalectl's sheet input (--input FILE, and the old --json FILE) and its
  JSON errors in --json mode.

Generic: methods and fields added to the interface need no change here.
The library's parser (0.4.0) only takes lower-case interface names, so it
is given the file with the interface line renamed io.vitaled.terminal, the
alias vitaled serves (see the file's header).
"""
import json
import os
import pwd
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import sheetlib  # noqa: E402
from harness import check  # noqa: E402

import test_upload as tu  # noqa: E402  (World: a PKI, a signer key, the insurer)

T = "io.vitaled.Terminal."
IDL = os.path.join(TOP, "docs", "io.vitaled.Terminal.varlink")
GOLIB = "/usr/share/gocode/src/github.com/varlink/go"
B = os.environ.get("B", os.path.join(TOP, "build"))
if not os.path.isabs(B):
    B = os.path.join(TOP, B)


def build():
    """The generated package and the checker; the path of the binary."""
    if not shutil.which("go") or not os.path.isdir(GOLIB):
        raise harness.Failure("golang-go and golang-github-varlink-go-dev are needed "
                              "(packaging/deps.sh installs them)")
    root = os.path.join(B, "varlinkgo")
    pkg = os.path.join(root, "src", "vitaledcheck")
    gen = os.path.join(pkg, "iovitaledterminal")
    shutil.rmtree(os.path.join(root, "src"), ignore_errors=True)
    os.makedirs(gen)
    shutil.copy(os.path.join(TOP, "tests", "varlinkgo", "main.go"), pkg)
    with open(IDL) as f:
        text = f.read()
    lines = text.split("\n")
    n = [i for i, l in enumerate(lines) if l.startswith("interface ")]
    check(len(n) == 1 and lines[n[0]] == "interface io.vitaled.Terminal", "interface line: %r" % n)
    lines[n[0]] = "interface io.vitaled.terminal"
    idl = os.path.join(gen, "io.vitaled.terminal.varlink")
    with open(idl, "w") as f:
        f.write("\n".join(lines))
    env = dict(os.environ, GO111MODULE="off", GOPATH=root + ":/usr/share/gocode",
               GOCACHE=os.path.join(root, "cache"), GOFLAGS="", CGO_ENABLED="0")
    for cmd in (["go", "run", "github.com/varlink/go/cmd/varlink-go-interface-generator", idl],
                ["go", "vet", "vitaledcheck/iovitaledterminal"],
                ["go", "build", "-o", os.path.join(root, "vitaled-go-check"), "vitaledcheck"]):
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=root)
        check(p.returncode == 0, "%s: exit %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    check(os.path.exists(os.path.join(gen, "iovitaledterminal.go")), "the generator wrote nothing")
    print("  built: the generated package iovitaledterminal (%d bytes) and the checker" %
          os.path.getsize(os.path.join(gen, "iovitaledterminal.go")))
    return os.path.join(root, "vitaled-go-check"), idl


def run(cmd, user=None, stdin=None):
    pre = None
    if user:
        def pre():
            os.setgid(user[1])
            os.setgroups([])
            os.setuid(user[0])
    p = subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=60, preexec_fn=pre)
    for line in p.stdout.splitlines():
        print("   ", line)
    check(p.returncode == 0, "%s: exit %d\n%s" % (" ".join(cmd[:2]), p.returncode, p.stderr))
    return p


def collect(d, w, world):
    """Replies and events of a day's work, as validate's input lines."""
    out = []

    def rec(method, params=None):
        err, r = d.result(T + method, params or {})
        check(err is None, "%s: %s %r" % (method, err, r))
        out.append({"method": method, "reply": r})
        return r

    rec("GetStatus")
    rec("ListReaders")
    rec("GetSigner")
    rec("QueueStats")
    rec("GetMetrics")
    rec("GetDiagnostics")
    ids = tu.create(d, 2)
    rec("CreateSheet", dict(sheetlib.degraded(), request_id="go-1"))
    rec("GetSheet", {"id": ids[0]})
    rec("ExportSheet", {"id": ids[1]})
    rec("PrintSheet", {"id": ids[1]})
    rec("ListSheets", {"limit": 2})
    rec("SignerSelfTest", {"rounds": 2})
    c = harness.Varlink(d.sock, 20)
    s = c.call_more(T + "Upload")
    while True:
        p = s.next(20)
        out.append({"method": "Upload", "reply": p})
        if p.get("done") or s.ended:
            break
    c.close()
    tu.wait_for(lambda: tu.drained(d), 30, "the queue drained")
    rec("GetStatus")
    rec("Reload")
    for _ in range(200):
        try:
            w.next(0.1)
        except Exception:  # socket.timeout: nothing more
            break
    out.extend({"event": e} for e in w.log)
    types = {e["type"] for e in w.log}
    check({"SheetQueued", "UploadStarted", "SheetAccepted", "UploadFinished"} <= types,
          "events seen: %s" % sorted(types))
    return out


def test_generated_client():
    binary, idl = build()
    world = tu.World()
    try:
        conf = world.conf() + "[api]\nsocket_mode = 0666\nallowed_users = root\nallowed_groups = \n"
        with harness.Daemon(conf=conf, tmp=world.tmp, name="d", timeout=10.0) as d:
            os.chmod(d.tmp, 0o755)
            w = d.watch()
            lines = collect(d, w, world)
            w.close()
            p = run([binary, "validate", idl], stdin="".join(json.dumps(x) + "\n" for x in lines))
            check("validated %d messages" % len(lines) in p.stdout, p.stdout)
            run([binary, "check", d.sock, idl])
            nobody = pwd.getpwnam("nobody")
            run([binary, "denied", d.sock], user=(nobody.pw_uid, nobody.pw_gid))
    finally:
        world.close()


def test_validator_catches():
    """The strict check fails on what it must catch (a field sent but not
    declared, a declared field missing, a wrong type), so it can fail."""
    binary, idl = os.path.join(B, "varlinkgo", "vitaled-go-check"), \
        os.path.join(B, "varlinkgo", "src", "vitaledcheck", "iovitaledterminal",
                     "io.vitaled.terminal.varlink")
    bad = [{"event": {"type": "X", "seq": 1, "time": "t", "undeclared_field": 1}},
           {"event": {"type": "X", "time": "t"}},
           {"method": "ListReaders", "reply": {"readers": [{"name": 5}]}}]
    for b in bad:
        p = subprocess.run([binary, "validate", idl], input=json.dumps(b) + "\n",
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 1 and "FAIL" in p.stdout, "validate accepted %r: %s" % (b, p.stdout))
    print("  the validator refuses an undeclared field, a missing field and a wrong type")


def test_vitalectl_input_and_json_errors():
    tmp = harness.mktemp("vitaled-input-")
    key, _, _ = sheetlib.make_key(tmp)
    till = os.path.join(tmp, "till.json")
    with open(till, "w") as f:
        json.dump(sheetlib.till_part(), f)
    patient = os.path.join(tmp, "patient.json")
    with open(patient, "w") as f:
        json.dump({"nir": sheetlib.NIRS[0]}, f)
    with harness.Daemon(conf=sheetlib.conf(key), tmp=tmp) as d:
        end = time.monotonic() + 10
        while d.result(T + "GetSigner")[1].get("state") != "ready" and time.monotonic() < end:
            time.sleep(0.05)
        ids = []
        for form in (["--input", till], ["-i", till], ["--json", till]):
            p = d.ctl("sheet", "create", "--degraded", "--patient-json", patient, *form, "--json",
                      check_rc=0)
            r = json.loads(p.stdout)
            check(r["state"] == "queued" and r["mode"] == "degraded", r)
            ids.append(r["id"])
        # the old form with the global --json first, and human output
        p = d.ctl("--json", "sheet", "create", "--degraded", "--patient-json", patient,
                  "--json", till, check_rc=0)
        ids.append(json.loads(p.stdout)["id"])
        p = d.ctl("sheet", "create", "--degraded", "--patient-json", patient, "--input", till,
                  check_rc=0)
        check(p.stdout.startswith("queued "), p.stdout)
        check(len(set(ids)) == 4, ids)
        # errors in --json mode are JSON on stdout (the text stays on stderr)
        p = d.ctl("--json", "sheet", "complete", ids[0], "--input", till)
        e = json.loads(p.stdout)
        check(p.returncode == 1 and e["error"] == T + "NotADraft" and e["exit"] == 1 and
              e["parameters"]["id"] == ids[0], (p.returncode, p.stdout))
        check("NotADraft" in p.stderr, p.stderr)
        p = d.ctl("sheet", "create", "--degraded", "--patient-json", patient, "--input",
                  os.path.join(tmp, "missing.json"), "--json")
        e = json.loads(p.stdout)
        check(p.returncode == 2 and e["error"] == "vitalectl.Usage" and "missing.json" in e["message"],
              (p.returncode, p.stdout))
        p = d.ctl("--json", "nosuchcommand")
        check(p.returncode == 2 and json.loads(p.stdout)["error"] == "vitalectl.Usage", p.stdout)
        p = subprocess.run([harness.VITALECTL, "--socket", tmp + "/nope.sock", "status", "--json"],
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 3 and json.loads(p.stdout)["error"] == "vitalectl.Unreachable",
              p.stdout)
        # a command that printed its result prints no error object after it
        p = d.ctl("--json", "sheet", "list", check_rc=0)
        check(len(json.loads(p.stdout)["sheets"]) == 5, p.stdout)
    print("  --input, -i and the old --json FILE made 3 + 1 sheets; JSON errors for a daemon "
          "error, a usage error and an unreachable daemon")


if __name__ == "__main__":
    harness.run_tests([test_generated_client, test_validator_catches,
                       test_vitalectl_input_and_json_errors])
