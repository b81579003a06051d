"""The opposition list (issue 12; docs/upload.md "The opposition list")
end to end, against the independent test insurer (tests/insurer/) and the
simulated PC/SC world (a virtual Vitale 2, serial 25012345678901234567):

1. the list is empty: the card is read (opposed false), a draft is made
   from it;
2. the insurer puts the card's serial on its list; vitaled syncs it with
   the returns: the card still in the reader is opposed now (GetCard,
   can_back_sheet false), CreateSheet and CreateDraft from it answer
   CardOpposed, CompleteDraft of the draft made before answers
   CardOpposed; the card read again: CardRead with opposed true;
3. the serial leaves the list: synced, the card is accepted again (GetCard,
   CreateSheet, CompleteDraft; CardRead opposed false);
4. the list is stored: put back, synced, vitaled restarted (as a kiosk)
   with the insurer closed: GetStatus says the stored serial was loaded,
   the card read is opposed without any exchange, and the kiosk makes no
   check-in draft from it.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "insurer"))

import harness  # noqa: E402
import sheetlib  # noqa: E402
from test_readers import R0, check, skip  # noqa: E402  (skips without the PC/SC world)

sys.path.insert(0, os.path.join(TOP, "tests", "world"))
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402

try:
    import insurer  # noqa: E402
    import mkpki  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
except ImportError as e:
    skip(str(e))

T = "io.vitaled.Terminal."
TERMINAL = "T0001"
SERIAL = "25012345678901234567"   # tests/world/cards.py's Vitale 2
SYNC_S = 10                       # [insurer] returns_interval_s (its minimum)


def conf(pki, url, key, chain):
    ins = ("[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
           "client_key = %s/client.key.pem\nsigner_chain = %s\nrights_timeout_ms = 1500\n"
           "upload_interval_s = 3600\nreturns_interval_s = %d\nconnect_timeout_s = 2\n"
           "[pcsc]\nsession_timeout_ms = 3000\nbackoff_max_ms = 400\n" %
           (url, pki, pki, pki, chain, SYNC_S))
    c = sheetlib.conf(key, extra=ins, log_level="debug")
    return c.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)


def opposition(d):
    return d.result(T + "GetStatus")[1]["opposition"]


def wait_serials(d, n, what):
    """Wait until vitaled's copy of the list holds n serials (a sync)."""
    end = time.monotonic() + SYNC_S * 2 + 5
    t0 = time.monotonic()
    while True:
        o = opposition(d)
        if o["serials"] == n:
            print("  %s: synced in %.1f s (%r)" % (what, time.monotonic() - t0, o), flush=True)
            return
        if time.monotonic() > end:
            raise harness.Failure("%s: the list not synced: %r" % (what, o))
        time.sleep(0.2)


def read_card(w, h):
    if h.inserted:
        h.remove()
        w.wait_for("CardRemoved", reader=R0)
        time.sleep(0.5)
    h.insert("vitale2")
    return w.wait_for("CardRead", reader=R0, timeout=15)


def create(d, method, params):
    end = time.monotonic() + 10
    while True:
        err, r = sheetlib.call(d, method, params)
        if not (err and err.endswith("SignerUnavailable") and time.monotonic() < end):
            return err, r
        time.sleep(0.05)


def card(d):
    return d.result(T + "GetCard", {"reader": R0})[1]["card"]


def refused(d, draft_id):
    """Every way to a sheet from the opposed card answers CardOpposed."""
    c = card(d)
    check(c["opposed"] is True and c["can_back_sheet"] is False and "opposition" in c["why"],
          "GetCard: opposed %r, can_back_sheet %r, why %r" % (c["opposed"], c["can_back_sheet"],
                                                             c.get("why")))
    err, r = create(d, "CreateSheet", {"reader": R0, "sheet": sheetlib.till_part()})
    check(err == T + "CardOpposed" and r.get("reader") == R0 and "opposition" in r["reason"],
          "CreateSheet from the opposed card: %s %r" % (err, r))
    err, r = create(d, "CreateDraft", {"reader": R0})
    check(err == T + "CardOpposed", "CreateDraft from the opposed card: %s %r" % (err, r))
    err, r = create(d, "CompleteDraft", {"id": draft_id, "sheet": sheetlib.till_part()})
    check(err == T + "CardOpposed" and r.get("id") == draft_id,
          "CompleteDraft of a draft from the opposed card: %s %r" % (err, r))
    n = len([m for m in sheetlib.list_all(d) if m["state"] != "draft"])
    check(n == 0, "no sheet was made: %d" % n)


def main():
    tmp = harness.mktemp("vitaled-opposition-")
    pki = os.path.join(tmp, "pki")
    mkpki.init_pki(pki, terminal_id=TERMINAL)
    key, _, pub = sheetlib.make_key(tmp)
    cert = mkpki.issue_practitioner(pki, pub)
    chain = os.path.join(tmp, "chain.pem")
    with open(chain, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    ins = insurer.InsurerProcess(pki, os.path.join(tmp, "insurer"))
    ins.__enter__()
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    cfg = conf(pki, ins.url, key, chain)
    d = harness.Daemon(conf=cfg, tmp=tmp, env=env, timeout=10.0)
    h = None
    try:
        world.start()
        d.start()
        w = harness.Watch(d)
        h = CardHost(world.port, log=os.path.join(tmp, "h0.log"))

        # 1. not opposed: read, a draft
        wait_serials(d, 0, "empty list")
        e = read_card(w, h)
        check(e.get("opposed") is False and e["summary"]["opposed"] is False,
              "CardRead of a card not opposed: opposed %r" % e.get("opposed"))
        check(card(d)["opposed"] is False, "GetCard: not opposed")
        err, dr = create(d, "CreateDraft", {"reader": R0})
        check(err is None, "CreateDraft: %s %r" % (err, dr))
        err, x = sheetlib.call(d, "PrintSheet", {"id": dr["id"]})
        check(err == T + "NotSigned", "PrintSheet of a draft (no duplicata of what is not "
              "signed): %s" % err)

        # 2. the insurer puts it on its list
        ins.ctl("oppose " + SERIAL)
        wait_serials(d, 1, "oppose")
        refused(d, dr["id"])
        e = read_card(w, h)
        check(e.get("opposed") is True and e["summary"]["opposed"] is True,
              "CardRead of the opposed card: opposed %r" % e.get("opposed"))
        refused(d, dr["id"])
        print("  opposed: CardRead opposed true; CreateSheet, CreateDraft, CompleteDraft: "
              "CardOpposed", flush=True)

        # 3. off the list again
        ins.ctl("unoppose " + SERIAL)
        wait_serials(d, 0, "unoppose")
        c = card(d)
        check(c["opposed"] is False and c["can_back_sheet"] is True,
              "GetCard after removal: opposed %r" % c["opposed"])
        err, s = create(d, "CreateSheet", {"reader": R0, "sheet": sheetlib.till_part()})
        check(err is None, "CreateSheet accepted again: %s %r" % (err, s))
        err, s2 = create(d, "CompleteDraft", {"id": dr["id"], "sheet": sheetlib.till_part()})
        check(err is None, "CompleteDraft accepted again: %s %r" % (err, s2))
        e = read_card(w, h)
        check(e.get("opposed") is False, "CardRead after removal: opposed %r" % e.get("opposed"))

        # 4. stored: back on the list, restart with the insurer closed
        ins.ctl("oppose " + SERIAL)
        wait_serials(d, 1, "oppose again")
        w.close()
        h.remove()
        d.stop()
        ins.ctl("close")
        # in kiosk mode now: a card read checks its patient in (a draft),
        # but not from an opposed card
        kiosk = cfg.replace("mode = clinic", "mode = kiosk", 1)
        check(kiosk != cfg, "the configuration names its mode")
        d = harness.Daemon(conf=kiosk, tmp=tmp, env=env, timeout=10.0)
        d.start()
        w = harness.Watch(d)
        end = time.monotonic() + 5
        while not opposition(d)["loaded"] and time.monotonic() < end:
            time.sleep(0.1)
        o = opposition(d)
        check(o == {"serials": 1, "loaded": True}, "after a restart: the stored list %r" % o)
        e = read_card(w, h)
        check(e.get("opposed") is True, "CardRead after a restart, insurer closed: opposed %r"
              % e.get("opposed"))
        err, r = create(d, "CreateSheet", {"reader": R0, "sheet": sheetlib.till_part()})
        check(err == T + "CardOpposed", "CreateSheet after a restart: %s" % err)
        time.sleep(0.5)
        drafts = [m for m in sheetlib.list_all(d) if m["state"] == "draft"]
        check(not drafts, "kiosk: no check-in draft from the opposed card (%d)" % len(drafts))
        log = open(d.log, errors="replace").read()
        check("kiosk: no draft for the card in %s: it is in opposition" % R0 in log,
              "the kiosk's refusal is logged")
        w.close()
    finally:
        if h:
            h.close()
        harness.stop_all()
        world.stop()
        ins.__exit__(None, None, None)
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except harness.Failure as e:
        print("FAIL: %s" % e)
        for x in harness.running():
            print(x.tail())
        sys.exit(1)
