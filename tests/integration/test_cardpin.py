#!/usr/bin/python3
"""Card PIN flows end to end: the CPS's [pin] step through a private pcscd,
the vpcd virtual readers and the test world's virtual CPS (tests/world/
cards.py "cps": PIN 1234, 3 tries, 63Cx, then blocked, unblock code
12345678 with RESET RETRY COUNTER).

  1. insertion: CardRead, then PinRequested {target "card:<reader>", reader,
     tries_left 3, pinpad false} (the count comes from VERIFY without data:
     no try spent); GetStatus "card_pins" says required.
  2. wrong PIN: PinIncorrect tries 2, then 1; right PIN: logged_in,
     PinVerified, status verified; the card's counter is back to 3.
  3. SubmitPin while verified, to an unknown target, to an empty reader:
     PinNotExpected.
  4. the card removed while verified: PinCleared, the target is gone, status
     no longer verified.
  5. malformed PINs ("12a4", "123", 9 digits): PinMalformed, and the card
     saw no APDU at all (its counter unchanged).
  6. vitalectl pin refuses a PIN in argv (nothing sent); --target ...
     --pin-fd N logs in.
  7. more than 5 attempts a minute on one target: RateLimited.
  8. (a fresh daemon: fresh rate limits) three wrong PINs: PinIncorrect 2, 1,
     then PinBlocked (the event too); SubmitPin with the right PIN: PinBlocked
     and the card's APDU count does not move.
  9. UnblockPin: a malformed code (nothing sent), a wrong one (PinIncorrect
     with the code's tries), the right one with a new PIN (vitalectl unblock
     --pin-fd): unblocked, a new PinRequested with 3 tries; the new PIN
     verifies.
 10. the card pulled out during a VERIFY: NoCard.

vpcd has no keypad (no PC/SC part 10 IOCTL), so the keypad path
(FEATURE_VERIFY_PIN_DIRECT, PIN_VERIFY_STRUCTURE through SCardControl) is
tested at the structure level in check_pin and check_cardpin; here pinpad
must be false.

Environment: B (build dir, default ./build). Exit 0 pass, 77 skip (no
pcscd/vpcd), 1 fail. Every process is stopped by PID on every exit path.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import VITALECTL, Watch  # noqa: E402
from test_readers import R0, R1, Fail, check, readers_daemon  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "world"))
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402
import cards  # noqa: E402

IFACE = "io.vitaled.Terminal"
T0, T1 = "card:" + R0, "card:" + R1


def submit(d, target, pin=None):
    """SubmitPin; returns (error name or None, parameters)."""
    params = {"target": target}
    if pin is not None:
        params["pin"] = pin
    r = d.call(IFACE + ".SubmitPin", params)
    err = r.get("error")
    return (err[len(IFACE) + 1:] if err and err.startswith(IFACE + ".") else err), r.get("parameters", {})


def unblock(d, target, puk, new_pin=None):
    params = {"target": target, "puk": puk}
    if new_pin is not None:
        params["new_pin"] = new_pin
    r = d.call(IFACE + ".UnblockPin", params)
    err = r.get("error")
    return (err[len(IFACE) + 1:] if err and err.startswith(IFACE + ".") else err), r.get("parameters", {})


def wait_event(w, etype, timeout=10.0, **fields):
    """The next event of etype with these fields; other events are skipped."""
    return w.wait_for(etype, timeout, **fields)


def card_pins(d):
    st = d.call(IFACE + ".GetStatus")["parameters"]
    return {p["target"]: p for p in st.get("card_pins", [])}


def settle(h, quiet=0.3):
    """The APDU count once the card has been left alone for a moment."""
    n = h.apdus
    while True:
        time.sleep(quiet)
        if h.apdus == n:
            return n
        n = h.apdus


def insert_cps(w, h, reader, card=None, tries=3):
    card = card or cards.Cps()
    h.insert(card)
    e = wait_event(w, "CardRead", reader=reader)
    check(e["profile"] == "cps", "%s: the CPS is read (profile %s)" % (reader, e["profile"]))
    e = wait_event(w, "PinRequested", reader=reader)
    check(e["target"] == "card:" + reader and e["tries_left"] == tries and e["pinpad"] is False
          and e["profile"] == "cps",
          "PinRequested {target %s, tries_left %r, pinpad %r} on insertion"
          % (e["target"], e["tries_left"], e["pinpad"]))
    return card


def main():
    for need in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
        if not os.path.exists(need):
            print("SKIP: %s is not installed" % need)
            return 77
    tmp = tempfile.mkdtemp(prefix="test_cardpin.")
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    daemons, hosts, watches = [], [], []
    ok = False
    d = None
    try:
        world.start()
        os.makedirs(os.path.join(tmp, "d1"))
        d = readers_daemon(os.path.join(tmp, "d1"), env)
        daemons.append(d)
        d.start()
        w = Watch(d.sock)
        watches.append(w)
        h0 = CardHost(world.port, log=os.path.join(tmp, "h0.log"))
        h1 = CardHost(world.port + 1, log=os.path.join(tmp, "h1.log"))
        hosts += [h0, h1]

        # 1. insertion
        c0 = insert_cps(w, h0, R0)
        check(c0.tries == 3, "the query spent no try (card counter %d)" % c0.tries)
        p = card_pins(d).get(T0)
        check(p and p["state"] == "required" and p["tries_left"] == 3 and p["reader"] == R0
              and not p["verified"], "GetStatus card_pins: %r" % p)

        # 2. wrong, wrong, right
        err, r = submit(d, T0, "0000")
        check(err == "PinIncorrect" and r.get("tries_left") == 2, "wrong PIN: %s %r" % (err, r))
        e = wait_event(w, "PinRequested", reader=R0)
        check(e["tries_left"] == 2, "PinRequested again with 2 tries")
        err, r = submit(d, T0, "9999")
        check(err == "PinIncorrect" and r.get("tries_left") == 1, "wrong again: %s %r" % (err, r))
        err, r = submit(d, T0, "1234")
        check(err is None and r.get("logged_in") is True, "right PIN: %s %r" % (err, r))
        e = wait_event(w, "PinVerified", reader=R0)
        check(e["target"] == T0 and e["profile"] == "cps", "PinVerified event")
        check(c0.tries == 3, "after wrong + right the card's counter is back to 3 (%d)" % c0.tries)
        p = card_pins(d)[T0]
        check(p["state"] == "verified" and p["verified"] and p["verified_at"],
              "status: verified at %s" % p["verified_at"])
        out = d.ctl("status").stdout
        check("card PINs:" in out and T0 in out and "verified since" in out,
              "vitalectl status shows the verified card")

        # 3. PinNotExpected
        err, r = submit(d, T0, "1234")
        check(err == "PinNotExpected" and "verified" in r.get("reason", ""),
              "SubmitPin while verified: %s (%s)" % (err, r.get("reason")))
        err, r = submit(d, "card:no such reader", "1234")
        check(err == "PinNotExpected", "SubmitPin to an unknown target: %s" % err)
        err, r = submit(d, T1, "1234")
        check(err == "PinNotExpected", "SubmitPin to an empty reader: %s (%s)" % (err, r.get("reason")))

        # 4. removal while verified
        h0.remove()
        e = wait_event(w, "PinCleared", reader=R0)
        check(e["target"] == T0, "PinCleared when the card leaves (%s)" % e.get("reason"))
        check(T0 not in card_pins(d), "status: the target is gone, nothing verified")
        err, r = submit(d, T0, "1234")
        check(err == "PinNotExpected", "SubmitPin after removal: %s" % err)

        # 5. malformed PINs on R1: no APDU, no try
        c1 = insert_cps(w, h1, R1, cards.Cps(pin="9073"))
        n = settle(h1)
        # a CPS PIN is 4 digits: a longer entry (90731, 90735062) never reaches the card
        for bad in ("123", "90731", "90735062"):
            err, r = submit(d, T1, bad)
            check(err == "PinMalformed" and r.get("min_len") == 4 and r.get("max_len") == 4,
                  "malformed %r: %s %r" % (bad, err, r))
        time.sleep(0.3)
        check(h1.apdus == n and c1.tries == 3,
              "malformed PINs: no APDU reached the card (%d -> %d), tries %d" % (n, h1.apdus, c1.tries))

        # 6. vitalectl pin
        r = d.ctl("pin", "--target", T1, "9073")
        check(r.returncode == 2, "vitalectl pin refuses a PIN in argv (exit %d)" % r.returncode)
        time.sleep(0.2)
        check(h1.apdus == n, "and nothing reached the card")
        rfd, wfd = os.pipe()
        os.write(wfd, b"9073\n")
        os.close(wfd)
        p = subprocess.run([VITALECTL, "--socket", d.sock, "pin", "--target", T1,
                            "--pin-fd", str(rfd)], capture_output=True, text=True, timeout=30,
                           pass_fds=(rfd,))
        os.close(rfd)
        check(p.returncode == 0 and "logged in" in p.stdout,
              "vitalectl pin --target %s --pin-fd: %d %r %r" % (T1, p.returncode, p.stdout, p.stderr))
        wait_event(w, "PinVerified", reader=R1)
        check(card_pins(d)[T1]["verified"], "status: %s verified" % T1)

        # 7. rate limit: 4 attempts so far on T1 (3 malformed + 1 right)
        err, r = submit(d, T1, "9073")
        check(err == "PinNotExpected", "5th attempt: %s" % err)
        n = h1.apdus
        err, r = submit(d, T1, "9073")
        check(err == "RateLimited" and 1 <= r.get("retry_after_s", 0) <= 60,
              "6th attempt in a minute: %s %r" % (err, r))
        check(h1.apdus == n, "a rate-limited attempt sends nothing")
        log = open(d.log, errors="replace").read()
        check(not re.search(r"(?<![0-9A-Fa-f])9073(?![0-9A-Fa-f])", log),
              "the log does not hold the PIN")
        h1.remove()
        wait_event(w, "PinCleared", reader=R1)

        # 8. a fresh daemon: blocking
        for x in watches:
            x.close()
        watches.clear()
        d.stop()
        os.makedirs(os.path.join(tmp, "d2"))
        d = readers_daemon(os.path.join(tmp, "d2"), env)
        daemons.append(d)
        d.start()
        w = Watch(d.sock)
        watches.append(w)
        c0 = insert_cps(w, h0, R0)
        for want in (2, 1):
            err, r = submit(d, T0, "5555")
            check(err == "PinIncorrect" and r.get("tries_left") == want,
                  "wrong PIN: %s %r (want %d left)" % (err, r, want))
        err, r = submit(d, T0, "5555")
        check(err == "PinBlocked", "third wrong PIN: %s %r" % (err, r))
        wait_event(w, "PinBlocked", reader=R0)
        check(c0.tries == 0 and card_pins(d)[T0]["state"] == "blocked", "the card and status say blocked")
        n = settle(h0)
        err, r = submit(d, T0, "1234")
        time.sleep(0.3)
        check(err == "PinBlocked" and h0.apdus == n,
              "right PIN on a blocked card: %s, no APDU (%d -> %d)" % (err, n, h0.apdus))

        # 9. unblock
        err, r = unblock(d, T0, "1234")
        check(err == "PinMalformed" and r.get("min_len") == 8 and h0.apdus == n,
              "a 4-digit unblock code: %s %r, nothing sent" % (err, r))
        err, r = unblock(d, T0, "87654321", "2468")
        check(err == "PinIncorrect" and r.get("tries_left") == 9 and c0.tries == 0,
              "a wrong unblock code: %s %r" % (err, r))
        rfd, wfd = os.pipe()
        os.write(wfd, b"12345678\n2468\n")
        os.close(wfd)
        p = subprocess.run([VITALECTL, "--socket", d.sock, "unblock", "--target",
                            T0, "--pin-fd", str(rfd)], capture_output=True, text=True, timeout=30,
                           pass_fds=(rfd,))
        os.close(rfd)
        check(p.returncode == 0 and "unblocked, 3 tries left" in p.stdout,
              "vitalectl unblock with the right code and a new PIN: %d %r %r"
              % (p.returncode, p.stdout, p.stderr))
        e = wait_event(w, "PinRequested", reader=R0)
        check(e["tries_left"] == 3 and c0.tries == 3, "PinRequested with 3 tries after the unblock")
        err, r = submit(d, T0, "2468")
        check(err is None and r.get("logged_in"), "the new PIN verifies: %s %r" % (err, r))

        # 10. the card leaves during VERIFY
        class Vanishing(cards.Cps):
            """Answers the probe's query, then vanishes after the query that
            opens the VERIFY session (before the PIN goes)."""
            queries = 0

            def verify(self, a):
                out = super().verify(a)
                if not a.data:
                    self.queries += 1
                    if self.queries == 2:
                        self.vanish_now = True
                return out
        cv = insert_cps(w, h1, R1, Vanishing())
        err, r = submit(d, T1, "1234")
        check(err == "NoCard" and r.get("reader") == R1, "the card pulled out during VERIFY: %s %r" % (err, r))
        check(cv.tries == 3, "and no try was spent")
        wait_event(w, "PinCleared", reader=R1)
        check(T1 not in card_pins(d), "its target is gone")
        ok = True
    except Fail as e:
        print("not ok - %s" % e)
        for x in daemons:
            print("---- %s ----\n%s" % (x.log, x.tail(60)))
    finally:
        for x in watches:
            x.close()
        for h in hosts:
            try:
                h.close()
            except Exception:
                pass
        for x in daemons:
            x.stop()
        world.stop()
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s" % tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: sys.exit(1))
    sys.exit(main())
