#!/usr/bin/python3
"""The queue's key from a systemd credential (issue 11, 14) and the queue's
files' modes (18).

  credential   CREDENTIALS_DIRECTORY holds vitaled.queue-key (as systemd
               presents a decrypted credential: a plain file, mode 0400) and
               there is no queue.key: the daemon uses it, writes no key file,
               and a sheet it stores opens again with the same credential
  mismatch     the same queue with another credential is refused, and the
               log says it is the credential that does not open the queue
  migrate      a queue made with queue.key, then the same 32 bytes as a
               credential: opens (the operator then removes queue.key)
  bad          a credential that is not 32 bytes is refused, not skipped
  systemd      the round trip through `systemd-creds encrypt` and `decrypt`
               (host key; skipped, and says so, where systemd-creds cannot
               encrypt here)
  modes        queue.db, -wal and -shm, queue.key are 0600

Exit 0 pass, 77 skip, 1 fail.
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import sheetlib  # noqa: E402
from harness import IFACE, Daemon, Failure, check  # noqa: E402

CRED = "vitaled.queue-key"


def log(msg):
    print(msg, flush=True)


def cred_dir(top, name, key):
    d = os.path.join(top, name)
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o700)
    p = os.path.join(d, CRED)
    with open(p, "wb") as f:
        f.write(key)
    os.chmod(p, 0o400)
    return d


def daemon(top, name, key_path, creds=None, state=None):
    env = {"CREDENTIALS_DIRECTORY": creds} if creds else {}
    d = Daemon(conf=sheetlib.conf(key_path), tmp=top, name=name, env=env, timeout=30.0)
    if state:
        d.state = state
    return d


def one_sheet(d):
    err, r = sheetlib.call(d, "CreateSheet", sheetlib.degraded())
    check(err is None, "CreateSheet: %s %r" % (err, r))
    return r["id"]


def refused(d, want):
    """Start d and expect it to exit non-zero with want in its log."""
    d.start(wait=False)
    try:
        rc = d.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise Failure("vitaled started although it should have refused (%s)" % want)
    text = d.log_text()
    check(rc != 0, "exit code %d" % rc)
    check(want in text, "log does not say %r:\n%s" % (want, text[-1500:]))
    return text


def t_credential(top):
    kp, _, _ = sheetlib.make_key(top)
    key = os.urandom(32)
    creds = cred_dir(top, "creds", key)
    d = daemon(top, "cred", kp, creds)
    d.start()
    sid = one_sheet(d)
    check(not os.path.exists(os.path.join(d.state, "queue.key")),
          "queue.key was written although the key came from the credential")
    d.stop()
    # the same credential again: the sheet reads back
    d2 = daemon(top, "cred2", kp, creds, state=d.state)
    d2.start()
    err, r = sheetlib.call(d2, "GetSheet", {"id": sid})
    check(err is None and r["meta"]["id"] == sid, "GetSheet with the credential: %s %r" % (err, r))
    d2.stop()
    check(not os.path.exists(os.path.join(d.state, "queue.key")), "queue.key appeared")
    # another credential: refused, clearly
    other = cred_dir(top, "creds-other", os.urandom(32))
    d3 = daemon(top, "cred3", kp, other, state=d.state)
    text = refused(d3, "does not open this queue")
    check("credential" in text and CRED in text, "the refusal does not name the credential:\n%s"
          % text[-800:])
    line = [ln for ln in text.splitlines() if "does not open this queue" in ln][0]
    log("  credential: used, no queue.key written, sheet read back; another credential refused:")
    log("    " + line.strip()[:300])
    # no credential at all, no key file, sheets stored: refused too (KeyMissing)
    d4 = daemon(top, "cred4", kp, None, state=d.state)
    refused(d4, "missing")


def t_migrate(top):
    kp, _, _ = sheetlib.make_key(top, "m")
    d = daemon(top, "mig", kp)
    d.start()
    sid = one_sheet(d)
    d.stop()
    with open(os.path.join(d.state, "queue.key"), "rb") as f:
        key = f.read()
    creds = cred_dir(top, "creds-mig", key)
    d2 = daemon(top, "mig2", kp, creds, state=d.state)
    d2.start()
    err, r = sheetlib.call(d2, "GetSheet", {"id": sid})
    check(err is None, "GetSheet after moving the key to a credential: %s %r" % (err, r))
    d2.stop()
    log("  migrate: a queue.key queue opens with the same bytes as a credential")


def t_bad(top):
    kp, _, _ = sheetlib.make_key(top, "b")
    creds = cred_dir(top, "creds-bad", os.urandom(31))
    d = daemon(top, "bad", kp, creds)
    refused(d, "not a 32-byte credential")
    check(not os.path.exists(os.path.join(d.state, "queue.key")), "fell back to a new queue.key")
    log("  bad credential (31 bytes): refused, no fall-back to a new queue.key")


def t_systemd(top):
    sc = shutil.which("systemd-creds")
    if not sc:
        log("  SKIP systemd: no systemd-creds")
        return
    key = os.urandom(32)
    plain = os.path.join(top, "plain.key")
    sealed = os.path.join(top, CRED + ".cred")
    with open(plain, "wb") as f:
        f.write(key)
    os.chmod(plain, 0o600)
    r = subprocess.run([sc, "encrypt", "--name=" + CRED, plain, sealed], capture_output=True,
                       timeout=60)
    if r.returncode != 0:
        log("  SKIP systemd: systemd-creds encrypt failed here: %s" % r.stderr.decode().strip()[:300])
        return
    with open(sealed, "rb") as f:
        blob = f.read()
    check(key not in blob, "the sealed credential holds the key in clear")
    creds = os.path.join(top, "creds-sd")
    os.makedirs(creds, mode=0o700)
    out = os.path.join(creds, CRED)
    r = subprocess.run([sc, "decrypt", "--name=" + CRED, sealed, out], capture_output=True,
                       timeout=60)
    check(r.returncode == 0, "systemd-creds decrypt: %s" % r.stderr.decode())
    os.chmod(out, 0o400)
    kp, _, _ = sheetlib.make_key(top, "sd")
    d = daemon(top, "sd", kp, creds)
    d.start()
    sid = one_sheet(d)
    d.stop()
    check(not os.path.exists(os.path.join(d.state, "queue.key")), "queue.key written")
    # a credential sealed under another name does not decrypt as ours
    r = subprocess.run([sc, "decrypt", "--name=other", sealed, os.path.join(top, "x")],
                       capture_output=True, timeout=60)
    check(r.returncode != 0, "a credential decrypted under another name")
    log("  systemd: systemd-creds encrypt (host key) -> decrypt -> vitaled: sheet %s stored; "
        "sealed blob %d bytes, no key bytes in it" % (sid[:8], len(blob)))


def t_modes(top):
    kp, _, _ = sheetlib.make_key(top, "md")
    d = daemon(top, "modes", kp)
    d.start()
    one_sheet(d)
    names = ["queue.db", "queue.db-wal", "queue.db-shm", "queue.key"]
    modes = {}
    for n in names:
        p = os.path.join(d.state, n)
        check(os.path.exists(p), "%s missing while the daemon runs" % n)
        modes[n] = stat.S_IMODE(os.stat(p).st_mode)
    d.stop()
    bad = {n: "%04o" % m for n, m in modes.items() if m & 0o077}
    check(not bad, "queue files readable by others: %r" % bad)
    log("  modes: %s" % ", ".join("%s %04o" % (n, m) for n, m in modes.items()))


TESTS = [("credential", t_credential), ("migrate", t_migrate), ("bad", t_bad),
         ("systemd", t_systemd), ("modes", t_modes)]


def main():
    if not os.access(harness.VITALED, os.X_OK):
        log("SKIP: %s not built" % harness.VITALED)
        return 77
    only = sys.argv[1:]
    top = tempfile.mkdtemp(prefix="vqk.")
    failed = 0
    try:
        for name, fn in TESTS:
            if only and not any(o in name for o in only):
                continue
            try:
                fn(top)
                log("PASS %s" % name)
            except Exception as e:  # noqa: BLE001
                failed += 1
                log("FAIL %s: %s" % (name, e))
                if not isinstance(e, Failure):
                    traceback.print_exc()
            finally:
                harness.stop_all()
    finally:
        harness.stop_all()
        if not (failed and os.environ.get("KEEP")):
            shutil.rmtree(top, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
