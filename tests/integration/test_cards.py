#!/usr/bin/python3
"""Every virtual card of the test world through pcscd and vitaled: the
recognised-but-unreadable Vitale 1, the practitioner's CPS, an unknown ISO
card, and the hostile cards, each of which must end in CardError (or a
clean read where the profile can cope) within a bounded time while the API
keeps answering and the other reader keeps reading."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Watch  # noqa: E402
from test_readers import (R0, R1, Fail, check, insert_and_read, readers_daemon,  # noqa: E402
                          remove_card, wait_state)
sys.path.insert(0, os.path.join(HERE, "..", "world"))
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402

# (card, args, expected outcome, what to check)
BENIGN = [
    ("vitale1", {}, "vitale1", "recognised"),
    ("cps", {}, "cps", "practitioner"),
    ("cps", {"atr": "cps2"}, "cps", "practitioner"),
    ("unknown", {}, "unknown", None),
    ("vitale2", {"gen": "C"}, "vitale2", None),
    ("vitale2", {"fa": "1"}, "vitale2", None),
]
# hostile cards along the Vitale 2 path: each has its named reason
HOSTILE = [
    ("endless61", "t0_endless_61xx"),
    ("pingpong6c", "t0_6c_pingpong"),
    ("tlvoverrun", "tlv_overrun"),
    ("huge", None),          # a 10 KB value: refused or bounded, never a hang
    ("deepnest", "tlv_too_deep"),
    ("wrongconv", None),     # inverse TS with direct bytes: unknown or refused
]


def main():
    tmp = __import__("tempfile").mkdtemp(prefix="test_cards.")
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    d = readers_daemon(tmp, env)
    hosts, watches = [], []
    ok = False
    try:
        world.start()
        d.start()
        w = Watch(d.sock)
        watches.append(w)
        h0 = CardHost(world.port, log=os.path.join(tmp, "h0.log"))
        h1 = CardHost(world.port + 1, log=os.path.join(tmp, "h1.log"))
        hosts += [h0, h1]
        for card, args, profile, note in BENIGN:
            h0.insert(card, **args)
            e = w.expect("CardInserted", reader=R0, ignore=("DriverUp", "ReaderAdded"))
            e = w.expect("CardRead", reader=R0)
            s = e["summary"]
            c = d.call("io.vitaled.Terminal.GetCard", {"reader": R0})["parameters"]["card"]
            if profile == "vitale2":
                good = s["readable"] and len(c["beneficiaries"]) == 3
            elif profile == "vitale1":
                good = c["recognised"] and not c["readable"] and note in (c.get("error") or "")
            elif profile == "cps":
                good = c["recognised"] and c["kind"] == note and not c["beneficiaries"]
            else:
                good = not c["recognised"] and c["profile"] == "unknown" and c["atr"] == s["atr"]
            check(e["profile"] == profile and good,
                  "%s %s: profile %s, %s" % (card, args or "", e["profile"], note or "as expected"))
            if profile == "cps":  # its [pin] step: a PIN target until the card leaves
                p = w.expect("PinRequested", reader=R0)
                check(p["target"] == "card:" + R0 and p["tries_left"] == 3,
                      "cps %s: PinRequested, 3 tries left" % (args or ""))
            remove_card(w, h0, R0)
            if profile == "cps":
                w.expect("PinCleared", reader=R0)
        for card, reason in HOSTILE:
            t0 = time.monotonic()
            h0.insert(card)
            w.expect("CardInserted", reader=R0)
            # meanwhile the API answers
            t1 = time.monotonic()
            d.call("io.vitaled.Terminal.GetStatus")
            api_ms = (time.monotonic() - t1) * 1000
            while True:  # the first outcome on this reader, whatever it is
                e = w.next(15)
                if e["type"] in ("CardRead", "CardError") and e.get("reader") == R0:
                    break
            took = time.monotonic() - t0
            why = e.get("reason") or (e.get("summary") or {}).get("error") or ""
            check((reason is None or reason in why) and took < 10 and api_ms < 500,
                  "hostile %s: %s '%s' in %.2f s; GetStatus meanwhile %.0f ms" % (card, e["type"], why, took, api_ms))
            remove_card(w, h0, R0)
        # the card that vanishes between two APDUs: the session ends cleanly
        h0.insert("vanish")
        w.expect("CardInserted", reader=R0)
        t0 = time.monotonic()
        while True:
            e = w.next(15)
            if e.get("reader") == R0 and e["type"] in ("CardRemoved", "CardError"):
                break
        check(time.monotonic() - t0 < 5, "vanish: %s after removal mid-read (%.2f s)" % (e["type"], time.monotonic() - t0))
        h0.close()
        if e["type"] != "CardRemoved":
            w.expect("CardRemoved", reader=R0, ignore=("CardError",))
        # the other reader still reads a good card
        insert_and_read(w, h1, R1)
        check(wait_state(d, R1, "ready")["card"] == "vitale2", "after the hostile cards, the other reader reads a Vitale 2")
        log = open(d.log, errors="replace").read()
        check("2800575056123" not in log and "DUPONT" not in log, "the log holds no NIR and no name")
        ok = True
    except Fail as e:
        print("not ok - %s" % e)
        print(d.tail())
    finally:
        for w_ in watches:
            w_.close()
        for h in hosts:
            try:
                h.close()
            except Exception:
                pass
        d.stop()
        world.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
