#!/usr/bin/python3
"""Issue 11, 13: `vitalectl call` refuses a PIN in argv, and an unprotected
queue key is logged under its own error name.

  argv      vitalectl call SubmitPin/UnblockPin with "pin", "puk" or
            "new_pin": exit 2, a message naming `vitalectl pin` and
            --pin-fd, and the daemon never sees the call (its log of
            SubmitPin/UnblockPin attempts and the signer state unchanged);
            "pin": null (a keypad) still goes through
  keymode   queue.key mode 0644: the refusal is logged as KeyNotPrivate,
            not BadTransition

Exit 0 pass, 1 fail.
"""
import os
import sys
import tempfile
import shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Daemon, check  # noqa: E402


def t_argv(top):
    key = os.path.join(top, "enc.pem")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    k = ec.generate_private_key(ec.SECP256R1())
    with open(key, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"24681357")))
    os.chmod(key, 0o600)
    d = Daemon(conf="[signer]\nbackend = file\nkey_file = %s\n" % key, tmp=top, name="argv",
               args=["--log-level", "debug"], timeout=30.0).start()
    calls = [
        ("io.vitaled.Terminal.SubmitPin", '{"target": "practitioner", "pin": "24681357"}'),
        ("io.vitaled.Terminal.SubmitPin", '{"target": "practitioner", "pin": "1234"}'),
        ("io.vitaled.Terminal.UnblockPin", '{"target": "card:R", "puk": "12345678", "new_pin": "1234"}'),
        ("io.vitaled.Terminal.UnblockPin", '{"target": "card:R", "puk": "12345678"}'),
    ]
    for m, p in calls:
        r = d.ctl("call", m, p)
        check(r.returncode == 2, "%s %s: exit %d (%s %s)" % (m, p, r.returncode, r.stdout, r.stderr))
        check("vitalectl pin" in r.stderr and "--pin-fd" in r.stderr, "message: %r" % r.stderr)
    err, s = d.result("GetSigner")
    check(s["state"] == "locked" and not s["logged_in"], "the PIN went through: %r" % s)
    low = d.log_text().lower()
    check("incorrect" not in low and "submitpin" not in low and "unblock" not in low,
          "a PIN call reached the daemon:\n%s" % d.log_text()[-800:])
    # the right PIN through the API still logs in: no attempt was counted
    err, r = d.result("SubmitPin", {"target": "practitioner", "pin": "24681357"})
    check(err is None and r["logged_in"], "SubmitPin after the refusals: %s %r" % (err, r))
    # null: the keypad form, no secret: sent (the daemon answers PinNotExpected)
    r = d.ctl("call", "io.vitaled.Terminal.SubmitPin", '{"target": "practitioner", "pin": null}')
    check(r.returncode == 1 and "PinNotExpected" in r.stderr + r.stdout,
          "pin null: exit %d %s" % (r.returncode, r.stderr))
    print("  argv: %d calls with a PIN/PUK refused (exit 2), none reached the daemon; pin null sent"
          % len(calls), flush=True)


def t_keymode(top):
    d = Daemon(tmp=top, name="keymode", timeout=30.0).start()
    d.stop()
    kp = os.path.join(d.state, "queue.key")
    os.chmod(kp, 0o644)
    d2 = Daemon(tmp=top, name="keymode2", timeout=30.0)
    d2.state = d.state
    d2.start(wait=False)
    rc = d2.proc.wait(timeout=20)
    text = d2.log_text()
    os.chmod(kp, 0o600)
    check(rc != 0, "started with a 0644 key")
    line = [ln for ln in text.splitlines() if "chmod 600" in ln]
    check(line, "no chmod line:\n%s" % text[-800:])
    check("BadTransition" not in text and "KeyNotPrivate" in line[0], "logged as: %r" % line[0])
    print("  keymode: " + line[0].strip()[:200], flush=True)


def main():
    top = tempfile.mkdtemp(prefix="vcs.")
    failed = 0
    try:
        for fn in (t_argv, t_keymode):
            try:
                fn(top)
                print("PASS %s" % fn.__name__, flush=True)
            except Exception as e:  # noqa: BLE001
                failed += 1
                print("FAIL %s: %s" % (fn.__name__, e), flush=True)
            finally:
                harness.stop_all()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
