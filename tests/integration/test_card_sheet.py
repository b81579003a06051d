#!/usr/bin/python3
"""Issue 11, 18: a card that cannot back a sheet, and GetSheet's signature.

  noserial   a Vitale 2 whose EF 2F02 holds no serial is read; GetCard says
             can_back_sheet false and why; CreateSheet from it answers
             NoCard with a reason (it used to be InvalidSheet "evidence")
  serial     the ordinary Vitale 2: can_back_sheet true, no why; a sheet
             from it: GetSheet's signature.size is the signature's own 64
             bytes (ES256), cose_size the whole COSE_Sign1 as exported

Exit 0 pass, 77 skip (no pcscd/vpcd), 1 fail.
"""
import base64
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, till_part  # noqa: E402

WORLD = os.path.join(sl.TOP, "tests", "world")
HAVE_PCSC = all(os.path.exists(p) for p in ("/usr/sbin/pcscd",
                                            "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"))
check = harness.check
R0 = "Virtual PCD 00 00"
G = {}


def insert(**args):
    h = G["host"]
    if h.inserted:
        h.remove()
        time.sleep(0.6)
    w = harness.Watch(G["d"])
    try:
        h.insert("vitale2", **args)
        w.wait_for("CardRead", reader=R0, timeout=15)
    finally:
        w.close()


def t_noserial():
    d = G["d"]
    insert(noserial="1")  # no EF 2F02 in MF_VITALE (the profile reads it as optional)
    err, x = call(d, "CreateSheet", {"reader": R0, "sheet": till_part()})
    check(err == sl.IFACE + "NoCard", "CreateSheet from a card with no serial: %s %r" % (err, x))
    check("2F02" in (x.get("reason") or "") and x.get("reader") == R0, "NoCard's reason: %r" % x)
    err, r = call(d, "GetCard", {"reader": R0})
    check(err is None, "GetCard: %s %r" % (err, r))
    c = r["card"]
    check(c["readable"] is True and c["kind"] == "patient", "the card is read: %r" % c)
    check(c.get("can_back_sheet") is False, "can_back_sheet for a card with no serial: %r"
          % c.get("can_back_sheet"))
    check("2F02" in (c.get("why") or ""), "why: %r" % c.get("why"))
    print("  noserial: CreateSheet NoCard reason=%r; GetCard can_back_sheet=false why=%r"
          % (x["reason"], c["why"]), flush=True)


def t_serial():
    d = G["d"]
    insert()
    err, s = call(d, "CreateSheet", {"reader": R0, "sheet": till_part()})
    check(err is None, "CreateSheet: %s %r" % (err, s))
    err, g = call(d, "GetSheet", {"id": s["id"]})
    check(err is None, "GetSheet: %s" % err)
    err, e = call(d, "ExportSheet", {"id": s["id"]})
    cose = base64.b64decode(e["cose"])
    sig = g["signature"]
    check(sig["alg"] == "ES256" and sig["size"] == 64,
          "signature.size is the signature's (64 for ES256), not the message's: %r" % sig)
    check(sig.get("cose_size") == len(cose), "cose_size %r vs the exported %d bytes" % (sig, len(cose)))
    err, r = call(d, "GetCard", {"reader": R0})
    check(err is None and r["card"].get("can_back_sheet") is True and "why" not in r["card"],
          "an ordinary Vitale 2: %s %r" % (err, {k: r["card"].get(k) for k in ("can_back_sheet", "why")}))
    print("  serial: can_back_sheet=true; signature size %d, COSE_Sign1 %d bytes"
          % (sig["size"], sig["cose_size"]), flush=True)


def main():
    for b in ("vitaled", "vitalectl"):
        if not os.access(os.path.join(harness.B, b), os.X_OK):
            print("FAIL: %s is not built" % b)
            sys.exit(1)
    if not HAVE_PCSC:
        print("SKIP: pcscd or vpcd not installed")
        sys.exit(77)
    sys.path.insert(0, WORLD)
    from world import PcscWorld
    from cardhost import CardHost
    tmp = harness.mktemp("test_card_sheet-")
    G["tmp"] = tmp
    key, _, _ = sl.make_key(tmp)
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    world.start()
    G["host"] = CardHost(world.port, log=os.path.join(tmp, "cardhost.log"))
    dd = os.path.join(tmp, "clinic")
    os.makedirs(dd)
    G["d"] = harness.Daemon(conf=sl.conf(key, extra="[pcsc]\nsession_timeout_ms = 5000\n"), tmp=dd,
                            env=world.env).start()
    try:
        harness.run_tests([t_noserial, t_serial])
    finally:
        G["host"].close()
        world.stop()


if __name__ == "__main__":
    main()
