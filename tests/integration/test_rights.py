"""The online rights check (issue 10, docs/upload.md "The rights check")
against the independent test insurer (tests/insurer/) and the simulated
PC/SC world (a virtual Vitale 2 whose holders are the insurer's default
beneficiaries):

- the insurer down (its port closed): the card is read at once, the check
  says offline, a sheet from the session keeps the till's organisation;
- the insurer up: CardRights with the insurer's organisation and rights,
  GetCard shows them with their source, a sheet from the session carries
  the checked organisation (not the till's);
- an answer later than rights_timeout_ms: the card read at once, the
  check says timeout, the API answers meanwhile;
- vitalectl rights for a known and an unknown beneficiary.
"""
import json
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
RIGHTS_TIMEOUT_MS = 1500
HOLDER = ("280057505612389", "1980-05-14")
TILL_ORG = dict(sheetlib.INSURER)                     # centre 0012
CHECKED_ORG = {"regime": "01", "caisse": "751", "centre": "0042"}


def conf(tmp, pki, url, key, chain):
    ins = ("[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
           "client_key = %s/client.key.pem\nsigner_chain = %s\nrights_timeout_ms = %d\n"
           "upload_interval_s = 3600\nreturns_interval_s = 3600\nconnect_timeout_s = 2\n"
           "[pcsc]\nsession_timeout_ms = 3000\nbackoff_max_ms = 400\n" %
           (url, pki, pki, pki, chain, RIGHTS_TIMEOUT_MS))
    c = sheetlib.conf(key, extra=ins, log_level="debug")
    return c.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)


def read_card(w, h):
    """Insert the Vitale 2: (ms from CardInserted to CardRead, CardRights event, ms to it)."""
    h.insert("vitale2")
    w.wait_for("CardInserted", reader=R0)
    t0 = time.monotonic()
    w.wait_for("CardRead", reader=R0)
    t_read = (time.monotonic() - t0) * 1000
    e = w.wait_for("CardRights", reader=R0, timeout=10)
    return t_read, e, (time.monotonic() - t0) * 1000


def remove_card(w, h, reader):
    h.remove()
    return w.wait_for("CardRemoved", reader=reader)


def sheet_from_card(d):
    end = time.monotonic() + 10
    while True:
        err, r = sheetlib.call(d, "CreateSheet", {"reader": R0, "sheet": sheetlib.till_part()})
        if not (err and err.endswith("SignerUnavailable") and time.monotonic() < end):
            break
        time.sleep(0.05)
    check(err is None, "CreateSheet from the card: %s %r" % (err, r))
    err, g = sheetlib.call(d, "GetSheet", {"id": r["id"]})
    check(err is None, "GetSheet: %s" % err)
    return g["sheet"]


def main():
    tmp = harness.mktemp("vitaled-rights-")
    pki = os.path.join(tmp, "pki")
    mkpki.init_pki(pki, terminal_id=TERMINAL)
    key, _, pub = sheetlib.make_key(tmp)
    cert = mkpki.issue_practitioner(pki, pub)
    chain = os.path.join(tmp, "chain.pem")
    with open(chain, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    ins = insurer.InsurerProcess(pki, os.path.join(tmp, "insurer"), closed=True)
    ins.__enter__()
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    d = harness.Daemon(conf=conf(tmp, pki, ins.url, key, chain), tmp=tmp, env=env, timeout=10.0)
    h = None
    try:
        world.start()
        d.start()
        w = harness.Watch(d)
        h = CardHost(world.port, log=os.path.join(tmp, "h0.log"))

        # 1. offline: the insurer's port is closed
        t_read, e, t_rights = read_card(w, h)
        check(e["state"] == "offline" and "reason" in e and "nir" not in e,
              "insurer down: CardRights offline (%s) after %.0f ms" % (e.get("reason"), t_rights))
        check(t_read < 2000, "insurer down: the card read at once (%.0f ms)" % t_read)
        c = d.result(T + "GetCard", {"reader": R0})[1]["card"]
        check(c["rights_check"]["state"] == "offline" and c["organisation"]["source"] in ("card", "till")
              and "rights" not in c, "GetCard: rights_check offline, organisation from the %s" %
              c["organisation"]["source"])
        s = sheet_from_card(d)
        check(s["insurer"] == TILL_ORG, "offline: the sheet keeps the till's organisation %r" % s["insurer"])
        remove_card(w, h, R0)

        # 2. online: the insurer's word
        ins.ctl("listen")  # raises unless ok
        t_read, e, t_rights = read_card(w, h)
        check(e["state"] == "checked" and e["organisation"]["regime"] == "01" and
              e["organisation"]["centre"] == "0042" and e["organisation"]["source"] == "insurer",
              "CardRights checked: %s, %.0f ms after CardInserted (read %.0f ms)" %
              (e["organisation"], t_rights, t_read))
        c = d.result(T + "GetCard", {"reader": R0})[1]["card"]
        org = c["organisation"]
        check({k: org[k] for k in ("regime", "caisse", "centre")} == CHECKED_ORG and
              org["source"] == "insurer" and org["checked"] and c["rights_check"]["state"] == "checked",
              "GetCard: organisation %r from the insurer, checked %s" % (org, org.get("checked")))
        rt = c["rights"]
        check(rt["covered"] and rt["periods"][0]["code"] == "AMO" and rt["amc"]["tiers_payant"],
              "GetCard: AMO rights cover today, an AMC with tiers payant")
        s = sheet_from_card(d)
        check(s["insurer"] == CHECKED_ORG,
              "the sheet from the session carries the checked organisation %r" % s["insurer"])
        log = open(d.log, errors="replace").read()
        check(HOLDER[0] not in log, "the NIR is never logged whole")
        remove_card(w, h, R0)

        # 3. an answer later than rights_timeout_ms
        ins.ctl("delay 3 1 path=/v1/rights")  # the next rights answer 3 s late
        h.insert("vitale2")
        w.wait_for("CardInserted", reader=R0)
        t0 = time.monotonic()
        w.wait_for("CardRead", reader=R0)
        t_read = (time.monotonic() - t0) * 1000
        t1 = time.monotonic()
        d.result(T + "GetStatus")
        api_ms = (time.monotonic() - t1) * 1000
        c = d.result(T + "GetCard", {"reader": R0})[1]["card"]
        pending = c["rights_check"]["state"]
        e = w.wait_for("CardRights", reader=R0, timeout=10)
        t_rights = (time.monotonic() - t0) * 1000
        check(e["state"] == "timeout" and t_read < 2000 and api_ms < 500 and pending == "pending",
              "delay past rights_timeout_ms: CardRead in %.0f ms, GetCard meanwhile says %s, "
              "GetStatus %.0f ms, CardRights timeout after %.0f ms" % (t_read, pending, api_ms, t_rights))
        check(t_rights < RIGHTS_TIMEOUT_MS + 1500, "the timeout is bounded by rights_timeout_ms")
        remove_card(w, h, R0)
        time.sleep(2)  # let the late answer arrive and be dropped

        # 4. vitalectl rights
        p = d.ctl("rights", HOLDER[0], "--birth-date", HOLDER[1], check_rc=0)
        check("caisse 751" in p.stdout and "centre 0042" in p.stdout and "covered" in p.stdout,
              "vitalectl rights (known): %s" % p.stdout.splitlines()[0])
        p = d.ctl("rights", HOLDER[0], "--birth-date", HOLDER[1], "--json", check_rc=0)
        j = json.loads(p.stdout)
        check(j["organisation"]["centre"] == "0042" and j["rights"]["source"] == "insurer",
              "vitalectl rights --json")
        p = d.ctl("rights", "112032A00401721", "--birth-date", "2012-03-02", check_rc=0)
        check("amc:       none known" in p.stdout, "vitalectl rights: the Corsican holder, no AMC")
        p = d.ctl("rights", HOLDER[0], "--birth-date", "1980-05-15", check_rc=1)
        check("BeneficiaryUnknown" in p.stderr, "vitalectl rights (unknown): %s" % p.stderr.strip())
        p = d.ctl("rights", "280057505612388", "--birth-date", HOLDER[1])
        check(p.returncode == 1 and "InvalidParameter" in p.stderr, "a NIR whose key is wrong: refused")
        ins.ctl("close")
        p = d.ctl("rights", HOLDER[0], "--birth-date", HOLDER[1])
        # a kept-alive connection may still be answered: offline or answered are both right
        check("RightsUnavailable" in p.stderr or p.returncode == 0,
              "vitalectl rights with the insurer closed: %s" % p.stderr.strip())
        log = open(d.log, errors="replace").read()
        check(HOLDER[0] not in log and "112032A00401721" not in log, "no NIR logged whole")
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
