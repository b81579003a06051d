#!/usr/bin/python3
"""Care sheets end to end: vitaled with a private pcscd and a virtual
Vitale 2 (tests/world), a file signer key (ES256) or SoftHSM (PS256 with an
RSA key), driven over the API and vitalectl. Every signed sheet is exported
and checked by the independent verifier (tests/world/verify_sheet.py:
cbor2 + cryptography, written from docs/care-sheet.md) and by
`vitalectl sheet verify`.

  card       a sheet from a Vitale 2 read: NIR, birth date and serial from
             the card, read time, mode physical; the second beneficiary;
             SheetQueued event; vitalectl sheet create --reader
  phone      a sheet from a phone (digital card) in a contactless reader: the
             evidence is its device-signed answer and credential, byte for
             byte, and verify_credential.py accepts them from the signed sheet
  verify     export → independent verifier and vitalectl sheet verify, with
             the right certificate (valid) and another one, and a tampered
             copy (refused by both)
  invalid    each validation error gives InvalidSheet with that one field:
             bad NIR key, totals that do not add up, no acts, negative
             amount, future care date, no evidence unless degraded (no card;
             caller-made evidence; a card without serial; a NIR with a card);
             nothing stored
  login      an encrypted key: NotLoggedIn (and PinRequested) until
             `vitalectl pin`, then the create works
  drafts     CreateDraft from the card, NotSigned export, CompleteDraft (bad
             totals refused, then signed and queued), NotADraft after;
             vitalectl sheet draft/complete; kiosk mode makes a draft per read
  list       ListSheets filters (state, care dates, due before), paging;
             vitalectl sheet list/show/queue; GetStatus's queue object
  seq        8 concurrent clients: every create acknowledged, numbers unique
             and consecutive per practitioner and day, batches shared
  softhsm    PS256 with an RSA key on SoftHSM after SubmitPin
  refuse     start-up refused with the reason when queue.key is gone while
             sheets are stored; a corrupt database: start-up refused, or
             (found by the integrity check after READY) status says so and
             creates are refused

Environment: B (build dir). Exit 0 pass, 77 skip, 1 fail.
"""
import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call, check_seqs, export, list_all, till_part, verify  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402

WORLD = os.path.join(sl.TOP, "tests", "world")
HAVE_PCSC = all(os.path.exists(p) for p in ("/usr/sbin/pcscd",
                                            "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"))
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
check = harness.check
R0, R1 = "Virtual PCD 00 00", "Virtual PCD 00 01"

G = {}   # shared: tmp, key, cert, pub, world, daemon, hosts


def today():
    return dt.date.today()


def vitalectl(*args, input=None):
    return subprocess.run([harness.VITALECTL, "--socket", G["d"].sock] + list(args),
                          capture_output=True, text=True, input=input, timeout=60)


def create_ok(d, params, what):
    err, r = call(d, "CreateSheet", params)
    check(err is None, "%s: %s %r" % (what, err, r))
    check(r["state"] == "queued" and r["seq"] >= 1 and r["practitioner_id"] == sl.PRACTITIONER,
          "%s: reply %r" % (what, r))
    return r


def verified(d, sid, pub, alg="ES256"):
    data = export(d, sid)
    problems, info = verify(data, pub)
    check(not problems, "independent verifier on %s: %s" % (sid, problems))
    check(info.get("signature_ok") is True and info.get("alg") == alg,
          "signature %s / %s" % (info.get("signature_ok"), info.get("alg")))
    check(info["sheet"]["id"] == sid, "the signed id is the sheet's")
    return data, info["sheet"]


def insert_card(slot, **args):
    h = G["hosts"][slot]
    if h.inserted:
        h.remove()
        time.sleep(0.6)
    w = harness.Watch(G["d"])
    try:
        h.insert("vitale2", **args)
        w.wait_for("CardRead", reader=(R0, R1)[slot], timeout=15)
    finally:
        w.close()


# ---------------------------------------------------------------------------

def t_card():
    d = G["d"]
    err, r = call(d, "CreateSheet", {"sheet": till_part()})
    check(err == sl.IFACE + "NoCard", "no card read yet, not degraded: NoCard (%s)" % err)
    insert_card(0)
    t_read = time.time()
    w = harness.Watch(d)
    r = create_ok(d, {"reader": R0, "sheet": till_part()}, "CreateSheet from the Vitale 2")
    e = w.wait_for("SheetQueued", id=r["id"])
    check(e["number"] == r["seq"] and "nir" not in json.dumps(e), "SheetQueued event, no identity in it")
    w.close()
    check(r["mode"] == "physical" and r["care_date"] == today().isoformat(), "physical, today")
    err, g = call(d, "GetSheet", {"id": r["id"]})
    check(err is None, "GetSheet: %s" % err)
    s = g["sheet"]
    import cards
    holder = cards.DEFAULT_HOLDERS["beneficiaries"][0]
    serial = cards.DEFAULT_HOLDERS["card"]["serial"]
    check(s["nir"] == sl.nir_full(holder["nir"]), "the NIR is the card holder's")
    b = holder["birth_date"]
    check(s["birth_date"] == "%s-%s-%s" % (b[:4], b[4:6], b[6:]), "birth date from the card")
    check(s["evidence"]["card_serial"] == serial, "evidence: the card's serial %s" % serial)
    check(abs(s["evidence"]["read_at"] - t_read) < 30, "evidence: the read time")
    check(g["meta"]["state"] == "queued" and g["signature"]["alg"] == "ES256", "meta and alg")
    G["card_sheet"] = r["id"]
    # the second beneficiary (Corsican NIR 2A)
    r2 = create_ok(d, {"reader": R0, "beneficiary": 1, "sheet": till_part()}, "beneficiary 1")
    err, g2 = call(d, "GetSheet", {"id": r2["id"]})
    check(g2["sheet"]["nir"] == sl.nir_full(cards.DEFAULT_HOLDERS["beneficiaries"][1]["nir"]),
          "beneficiary 1's NIR (%s)" % g2["sheet"]["nir"])
    err, x = call(d, "CreateSheet", {"reader": R0, "beneficiary": 7, "sheet": till_part()})
    check(err == sl.IFACE + "NoCard" and "beneficiar" in x.get("reason", ""),
          "no such beneficiary: NoCard with a reason (%s %r)" % (err, x))
    p = vitalectl("sheet", "create", "--reader", R0, "--act", "C:1:2650", "--act", "AMI:1.5:1350")
    check(p.returncode == 1 and "insurer.regime: missing" in p.stderr,
          "a Vitale 2 carries no insurer: the till must give it (%s)" % p.stderr.strip())
    p = vitalectl("sheet", "create", "--reader", R0, "--act", "C:1:2650", "--act", "AMI:1.5:1350",
                  "--insurer", "01:751:0012")
    check(p.returncode == 0 and p.stdout.startswith("queued "), "vitalectl sheet create --reader: %s %s"
          % (p.stdout, p.stderr))
    for sid in (r["id"], r2["id"], p.stdout.split()[1].rstrip(":")):
        verified(d, sid, G["pub"])


def t_verify():
    d = G["d"]
    sid = G["card_sheet"]
    data, s = verified(d, sid, G["pub"])
    f = os.path.join(G["tmp"], "sheet.cose")
    p = vitalectl("sheet", "export", sid, "-o", f)
    check(p.returncode == 0 and open(f, "rb").read() == data, "vitalectl sheet export writes the bytes")
    p = subprocess.run([harness.VITALECTL, "sheet", "verify", f, "--cert", G["cert"]],
                       capture_output=True, text=True, env={"VITALED_SOCKET": "/nonexistent"})
    check(p.returncode == 0 and "valid" in p.stdout, "vitalectl sheet verify, no daemon: %s" % p.stdout)
    p = subprocess.run([harness.VITALECTL, "--json", "sheet", "verify", f, "--cert", G["cert"]],
                       capture_output=True, text=True)
    j = json.loads(p.stdout)
    check(j["valid"] and j["signature_ok"] and j["id"] == sid and j["seq"] == s["seq"],
          "vitalectl --json sheet verify: %r" % j)
    _, other_cert, other_pub = sl.make_key(G["tmp"], "other")
    p = subprocess.run([harness.VITALECTL, "sheet", "verify", f, "--cert", other_cert],
                       capture_output=True, text=True)
    check(p.returncode == 1 and "does not verify" in p.stdout, "another certificate: refused")
    problems, _ = verify(data, other_pub)
    check(any("signature" in x for x in problems), "independent verifier: another key refused")
    # tamper with one byte of the payload (a digit of an amount or date)
    i = data.index(s["care_date"].encode())
    bad = bytearray(data)
    bad[i + 3] ^= 1
    bf = os.path.join(G["tmp"], "bad.cose")
    open(bf, "wb").write(bytes(bad))
    p = subprocess.run([harness.VITALECTL, "sheet", "verify", bf, "--cert", G["cert"]],
                       capture_output=True, text=True)
    check(p.returncode == 1, "vitalectl: a tampered sheet is refused (%s)" % p.stdout.strip())
    problems, _ = verify(bytes(bad), G["pub"])
    check(problems, "independent verifier: a tampered sheet is refused")


def one_error(d, params, field, words, err_name="InvalidSheet"):
    before = len(list_all(d))
    err, r = call(d, "CreateSheet", params)
    check(err == sl.IFACE + err_name, "%s: %s %r" % (field, err, r))
    if err_name == "InvalidSheet":
        check(r["field"] == field and len(r["errors"]) == 1 and words in r["reason"],
              "%s: exactly one error, %r" % (field, r["errors"]))
    check(len(list_all(d)) == before, "%s: nothing stored" % field)


def t_invalid():
    d = G["d"]
    one_error(d, sl.degraded(nir="184127645108947"), "nir", "key")
    p = sl.degraded()
    p["sheet"]["totals"]["total"] += 1
    one_error(d, p, "totals.total", "add up")
    # sheetlib sends model 1's form ("acts"), still accepted: a model 2 sheet,
    # whose errors name its lines
    p = sl.degraded(acts=())
    one_error(d, p, "lines", "no lines")
    p = sl.degraded()
    p["sheet"]["acts"][0]["amount"] = -100
    p["sheet"]["totals"] = {"total": 0, "amo": 0, "amc": 0, "patient": 0}
    one_error(d, p, "lines[0].amount", "negative")
    tomorrow = (today() + dt.timedelta(days=1)).isoformat()
    one_error(d, sl.degraded(care_date=tomorrow), "care_date", "future")
    # evidence: only the card session gives it; only a degraded sheet has none
    p = {"reader": R0, "sheet": till_part(evidence={"card_serial": "1", "read_at": 1})}
    one_error(d, p, "evidence", "set by the daemon")
    p = {"reader": R0, "sheet": till_part(nir=sl.NIRS[1])}
    one_error(d, p, "nir", "comes from the card")
    p = sl.degraded()
    p["sheet"]["mode"] = "physical"
    one_error(d, p, "mode", "set by the daemon")
    holders = os.path.join(G["tmp"], "noserial.json")
    with open(holders, "w") as f:
        import cards
        json.dump({"card": {"serial": ""}, "beneficiaries": cards.DEFAULT_HOLDERS["beneficiaries"]}, f)
    insert_card(1, holders=holders)
    # a card that cannot back a sheet: NoCard with a reason, as the interface says (issue 11, 18)
    one_error(d, {"reader": R1, "sheet": till_part()}, "evidence", "serial", err_name="NoCard")
    G["hosts"][1].remove()
    time.sleep(0.6)
    err, r = call(d, "CreateSheet", {"reader": R1, "sheet": till_part()})
    check(err == sl.IFACE + "NoCard", "card gone from that reader: NoCard (%s)" % err)
    # the till's errors all at once
    p = sl.degraded(nir="1")
    p["sheet"]["totals"]["total"] += 1
    p["sheet"]["acts"][0]["code"] = "x"
    err, r = call(d, "CreateSheet", p)
    check(err == sl.IFACE + "InvalidSheet" and
          {e["field"] for e in r["errors"]} == {"nir", "totals.total", "lines[0].code"},
          "several problems: one error each: %r" % r.get("errors"))
    p = vitalectl("sheet", "create", "--degraded", "--patient-json", "/dev/null", "--act", "C:1:2650")
    check(p.returncode == 2, "vitalectl: bad patient JSON is a usage error")


def t_phone():
    """A phone (the digital card) in a contactless PC/SC reader: the sheet's
    evidence is its device-signed answer and its credential, as received."""
    d = G["d"]
    h = G["hosts"][1]
    if h.inserted:
        h.remove()
        time.sleep(0.6)
    w = harness.Watch(d)
    try:
        h.insert("phone", tmpdir=G["issuer"])
        w.wait_for("CardRead", reader=R1, timeout=20)
    finally:
        w.close()
    err, c = call(d, "GetCard", {"reader": R1})
    check(err is None and c["card"]["presentation"] == "digital-nfc", "GetCard: the phone (%s)" % err)
    card = c["card"]
    ev = card["evidence"]
    r = create_ok(d, {"reader": R1, "sheet": till_part(insurer=False)}, "CreateSheet from the phone")
    check(r["mode"] == "digital-nfc", "mode digital-nfc")
    err, g = call(d, "GetSheet", {"id": r["id"]})
    s = g["sheet"]
    check(s["evidence"]["device_answer"] == ev["device_answer"] and
          s["evidence"]["credential"] == ev["credential"] and "card_serial" not in s["evidence"],
          "evidence: the device answer and the credential, byte for byte as the session kept them")
    check(s["nir"] == card["beneficiaries"][0]["nir"], "the NIR is the credential holder's")
    check(s["insurer"] == {k: card["fields"][k] for k in ("regime", "caisse", "centre")},
          "the insurer organisation comes from the credential")
    _, signed = verified(d, r["id"], G["pub"])
    import verify_credential as vc
    anchors = vc.load_anchors([os.path.join(G["issuer"], "ca.pem")])
    payload, dk = vc.verify_credential(signed["evidence"]["credential"], anchors)
    a = vc.verify_answer(signed["evidence"]["device_answer"], payload, dk, bytes.fromhex(ev["nonce"]))
    check(a["uv"] is True and a["cid"] == payload["cid"],
          "verify_credential.py accepts the signed sheet's evidence (holder verified)")
    h.remove()
    time.sleep(0.6)


def t_login():
    tmp = os.path.join(G["tmp"], "login")
    os.makedirs(tmp)
    kp, cp, pub = sl.make_key(tmp, "enc", password="24681357")
    d = harness.Daemon(conf=sl.conf(kp), tmp=tmp).start()
    try:
        w = harness.Watch(d)
        err, r = call(d, "CreateSheet", sl.degraded())
        check(err == sl.IFACE + "NotLoggedIn" and r["target"] == "practitioner",
              "locked key: NotLoggedIn (%s %r)" % (err, r))
        w.wait_for("PinRequested", target="practitioner")
        w.close()
        check(len(list_all(d)) == 0, "nothing stored while not logged in")
        p = subprocess.run([harness.VITALECTL, "--socket", d.sock, "pin"], input="24681357\n",
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 0, "vitalectl pin: %s" % p.stderr)
        r = create_ok(d, sl.degraded(), "after the PIN")
        verified(d, r["id"], pub)
        check(r["seq"] == 1, "first number of the day")
    finally:
        d.stop()


def t_drafts():
    d = G["d"]
    if not G["hosts"][0].inserted:
        insert_card(0)
    err, r = call(d, "CreateDraft", {"reader": R0})
    check(err is None and r["state"] == "draft" and r["seq"] is None and r["due_date"] is None,
          "CreateDraft: %s %r" % (err, r))
    did = r["id"]
    drafts = list_all(d, state="draft")
    check(did in [m["id"] for m in drafts] and all(m["seq"] is None for m in drafts),
          "ListSheets state=draft")
    err, x = call(d, "ExportSheet", {"id": did})
    check(err == sl.IFACE + "NotSigned", "a draft has nothing to export (%s)" % err)
    err, g = call(d, "GetSheet", {"id": did})
    check(err is None and g["signature"] is None and g["sheet"]["evidence"]["card_serial"],
          "GetSheet of a draft: identity and evidence, no signature")
    bad = till_part()
    bad["totals"]["total"] += 5
    err, x = call(d, "CompleteDraft", {"id": did, "sheet": bad})
    check(err == sl.IFACE + "InvalidSheet" and x["field"] == "totals.total",
          "CompleteDraft with bad totals: InvalidSheet (%s %r)" % (err, x))
    check(call(d, "GetSheet", {"id": did})[1]["meta"]["state"] == "draft", "still a draft")
    err, x = call(d, "CompleteDraft", {"id": did, "sheet": dict(till_part(), nir=sl.NIRS[2])})
    check(err == sl.IFACE + "InvalidSheet" and x["field"] == "nir", "a completion cannot change the patient")
    err, c = call(d, "CompleteDraft", {"id": did, "sheet": till_part(tiers_payant=True)})
    check(err is None and c["state"] == "queued" and c["seq"] >= 1 and c["id"] == did,
          "CompleteDraft: %s %r" % (err, c))
    _, s = verified(d, did, G["pub"])
    check(s["tiers_payant"] is True and s["evidence"]["card_serial"] == g["sheet"]["evidence"]["card_serial"],
          "the signed sheet keeps the draft's evidence")
    err, x = call(d, "CompleteDraft", {"id": did, "sheet": till_part()})
    check(err == sl.IFACE + "NotADraft", "completing twice: NotADraft (%s)" % err)
    err, x = call(d, "CompleteDraft", {"id": "00000000-0000-4000-8000-000000000000", "sheet": till_part()})
    check(err == sl.IFACE + "SheetNotFound", "unknown draft: SheetNotFound (%s)" % err)
    p = vitalectl("sheet", "draft", "--reader", R0)
    check(p.returncode == 0 and p.stdout.startswith("draft "), "vitalectl sheet draft: %s %s" % (p.stdout, p.stderr))
    did2 = p.stdout.split()[1]
    p = vitalectl("sheet", "complete", did2, "--act", "G:1:2650", "--insurer", "01:751:0012")
    check(p.returncode == 0 and p.stdout.startswith("queued " + did2), "vitalectl sheet complete: %s %s"
          % (p.stdout, p.stderr))
    verified(d, did2, G["pub"])


def t_list():
    d = G["d"]
    t = today()
    for days, tp in ((1, False), (10, True), (40, False)):
        care = (t - dt.timedelta(days=days)).isoformat()
        create_ok(d, sl.degraded(care_date=care, tiers_payant=tp), "care %s" % care)
    allq = list_all(d, state="queued")
    check(len(allq) >= 3 and all(m["state"] == "queued" for m in allq), "state=queued")
    c10 = (t - dt.timedelta(days=10)).isoformat()
    rows = list_all(d, **{"from": c10, "to": c10})
    check(len(rows) == 1 and rows[0]["care_date"] == c10, "from/to on care dates")
    rows = list_all(d, **{"from": (t - dt.timedelta(days=40)).isoformat(), "to": (t - dt.timedelta(days=2)).isoformat()})
    check(len(rows) == 2, "a care-date range")
    cut = (t - dt.timedelta(days=20)).isoformat()
    rows = list_all(d, due_before=cut)
    check(len(rows) >= 1 and all(m["due_date"] < cut for m in rows), "due_before")
    err, p1 = call(d, "ListSheets", {"limit": 2})
    err2, p2 = call(d, "ListSheets", {"limit": 2, "after": p1["sheets"][-1]["cursor"]})
    check(p1["more"] and len(p1["sheets"]) == 2 and
          not set(m["id"] for m in p1["sheets"]) & set(m["id"] for m in p2["sheets"]),
          "paging with limit and after")
    err, x = call(d, "ListSheets", {"state": "nonsense"})
    check(err == "org.varlink.service.InvalidParameter", "bad state: InvalidParameter")
    p = vitalectl("sheet", "list", "--state", "queued,draft", "--json")
    check(p.returncode == 0 and len(json.loads(p.stdout)["sheets"]) == len(list_all(d, state="queued,draft")),
          "vitalectl sheet list --state --json")
    p = vitalectl("sheet", "list", "--due-before", cut)
    check(p.returncode == 0 and p.stdout.count("\n") == len(list_all(d, due_before=cut)) + 1,
          "vitalectl sheet list --due-before (table)")
    sid = G["card_sheet"]
    p = vitalectl("sheet", "show", sid)
    check(p.returncode == 0 and sid in p.stdout and "queued" in p.stdout and "physical" in p.stdout,
          "vitalectl sheet show: %s" % p.stdout)
    p = vitalectl("sheet", "show", sid, "--json")
    check(json.loads(p.stdout)["meta"]["id"] == sid, "vitalectl sheet show --json")
    p = vitalectl("sheet", "show", "nope")
    check(p.returncode == 1 and "SheetNotFound" in p.stderr, "show unknown: SheetNotFound")
    st = call(d, "GetStatus")[1]["queue"]
    n = len(list_all(d))
    check(st["state"] == "open" and st["total"] == n and st["queued"] == len(list_all(d, state="queued"))
          and st["next_due"] and st["oldest"], "GetStatus queue: %r" % st)
    p = vitalectl("queue")
    check(p.returncode == 0 and "queued" in p.stdout and "next due" in p.stdout, "vitalectl queue")
    q = json.loads(vitalectl("queue", "--json").stdout)
    check(q["total"] == n and sum(q["counts"].values()) == n, "vitalectl queue --json counts")


def t_seq():
    d = G["d"]
    before = call(d, "QueueStats")[1]["pipeline"]
    results, errors = [], []

    def worker(k):
        for i in range(25):
            err, r = call(d, "CreateSheet", sl.degraded(nir=sl.NIRS[(k + i) % 3]))
            (errors if err else results).append((err, r))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errors and len(results) == 200, "200 concurrent creates acknowledged (%s)" % errors[:2])
    after = call(d, "QueueStats")[1]["pipeline"]
    nb = after["batches"] - before["batches"]
    check(nb < 200, "group commit: 200 sheets in %d transactions (largest %d)" % (nb, after["max_batch"]))
    print("       8 clients: 200 sheets in %d batches, largest %d" % (nb, after["max_batch"]))
    ids = {r["id"] for _, r in results}
    stored = {m["id"]: m for m in list_all(d)}
    check(ids <= set(stored), "every acknowledged sheet is listed")
    check_seqs(stored.values(), "all sheets")
    for _, r in results:
        check(stored[r["id"]]["seq"] == r["seq"], "the acknowledged number is the stored one")
    for sid in ids:
        problems = sl.check_stored(d, stored[sid], G["pub"])
        check(not problems, "%s: %s" % (sid, problems))


def t_softhsm():
    if not os.path.exists(SOFTHSM) or not shutil.which("pkcs11-tool"):
        print("       (SoftHSM not installed: skipped)")
        return
    tmp = os.path.join(G["tmp"], "hsm")
    os.makedirs(os.path.join(tmp, "tokens"))
    hconf = os.path.join(tmp, "softhsm2.conf")
    with open(hconf, "w") as f:
        f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % tmp)
    env = dict(os.environ, SOFTHSM2_CONF=hconf)
    run = lambda cmd: subprocess.run(cmd, env=env, capture_output=True, check=True, timeout=120)  # noqa: E731
    run(["softhsm2-util", "--init-token", "--free", "--label", "PRAT", "--so-pin", "87654321", "--pin", "1357"])
    run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", "PRAT", "--login", "--pin", "1357",
         "--keypairgen", "--key-type", "rsa:2048", "--id", "01", "--label", "SIGN"])
    spki = os.path.join(tmp, "pub.der")
    run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", "PRAT", "--read-object", "--type", "pubkey",
         "--id", "01", "-o", spki])
    pub = serialization.load_der_public_key(open(spki, "rb").read())
    pem = os.path.join(tmp, "pub.pem")
    open(pem, "wb").write(pub.public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    c = sl.conf(None, extra="[signer]\nbackend = pkcs11\nmodule = %s\ntoken = PRAT\nkey = SIGN\n" % SOFTHSM)
    d = harness.Daemon(conf=c, tmp=tmp, env={"SOFTHSM2_CONF": hconf}).start()
    try:
        end = time.monotonic() + 10
        while call(d, "GetSigner")[1].get("state") != "locked" and time.monotonic() < end:
            time.sleep(0.05)
        err, r = call(d, "CreateSheet", sl.degraded())
        check(err == sl.IFACE + "NotLoggedIn", "SoftHSM before the PIN: NotLoggedIn (%s)" % err)
        err, r = call(d, "SubmitPin", {"target": "practitioner", "pin": "1357"})
        check(err is None, "SubmitPin: %s %r" % (err, r))
        ids = [create_ok(d, sl.degraded(nir=n), "SoftHSM create")["id"] for n in sl.NIRS]
        for sid in ids:
            data, s = verified(d, sid, pub, alg="PS256")
        f = os.path.join(tmp, "ps.cose")
        open(f, "wb").write(data)
        p = subprocess.run([harness.VITALECTL, "sheet", "verify", f, "--cert", pem], capture_output=True, text=True)
        check(p.returncode == 0 and "PS256" in p.stdout, "vitalectl sheet verify PS256: %s" % p.stdout)
        check_seqs(list_all(d), "SoftHSM")
    finally:
        d.stop()


def t_refuse():
    tmp = os.path.join(G["tmp"], "refuse")
    os.makedirs(tmp)
    d = harness.Daemon(conf=sl.conf(G["key"]), tmp=tmp).start()
    for i in range(60):
        create_ok(d, sl.degraded(nir=sl.NIRS[i % 3]), "fill")
    rc, _ = d.stop()
    check(rc == 0, "clean stop")
    key = os.path.join(d.state, "queue.key")
    os.rename(key, key + ".bak")
    d2 = harness.Daemon(conf=sl.conf(G["key"]), tmp=tmp, wait=False).start()
    try:
        rc = d2.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    log = d2.log_text()
    check(rc not in (0, None) and "queue.key" in log or "KeyMissing" in log,
          "key lost with sheets stored: start-up refused (exit %s)" % rc)
    check("KeyMissing" in log, "the log names the reason: %s" % log[-400:])
    os.rename(key + ".bak", key)
    d3 = harness.Daemon(conf=sl.conf(G["key"]), tmp=tmp).start()
    check(len(list_all(d3)) == 60, "key restored: the 60 sheets are back")
    d3.stop()
    db = os.path.join(d.state, "queue.db")
    size = os.path.getsize(db)
    check(size > 8 * 4096, "the database has pages to corrupt (%d bytes)" % size)
    with open(db, "r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(4096))
    d4 = harness.Daemon(conf=sl.conf(G["key"]), tmp=tmp, wait=False).start()
    # Either the open's own reads meet the damage (start-up refused with
    # QueueCorrupt), or the daemon gets ready and its integrity check
    # (quick_check on the queue thread, just after READY) finds it: status
    # says so and no sheet is created (nothing written to a damaged file).
    q, end = None, time.monotonic() + 20
    while time.monotonic() < end and d4.proc.poll() is None:
        try:
            q = call(d4, "GetStatus", timeout=5)[1]["queue"]
            if q["integrity"] != "checking":
                break
        except Exception:
            pass
        time.sleep(0.1)
    rc = d4.proc.poll()
    log = d4.log_text()
    if rc is not None:
        check(rc != 0 and "QueueCorrupt" in log,
              "corrupt database: start-up refused with QueueCorrupt (exit %s): %s" % (rc, log[-300:]))
        return
    check(q is not None and q["integrity"] == "failed" and
          "quick_check" in (q["integrity_error"] or ""),
          "corrupt database: status says the integrity check failed: %r" % (q,))
    check("integrity check failed" in log, "the log says so: %s" % log[-400:])
    err, r = call(d4, "CreateSheet", sl.degraded())
    check(err and err.endswith("IoError") and "quick_check" in r.get("reason", ""),
          "corrupt database: CreateSheet refused (%s %r)" % (err, r))
    out = subprocess.run([os.path.join(harness.B, "vitalectl"), "--socket", d4.sock, "status"],
                         capture_output=True, text=True, timeout=10).stdout
    check("integrity failed" in out, "vitalectl status shows it: %s" % out)
    d4.stop()



def t_model2():
    """Model 2 through the API from a card session: a pharmacy sheet (two
    medicines at two rates, a device, PH7 and PH4 lines, AMC tiers payant)
    and a GP's (médecin traitant, ALD), signed, exported, and verified by
    vitalectl sheet verify and by the independent verifier."""
    d = G["d"]
    insert_card(0)
    care = today().isoformat()
    lines = [
        {"kind": "medicine", "cip13": "3400935955838", "service": "PH4", "quantity": 2,
         "unit_price": 310, "amount": 620},
        {"kind": "medicine", "cip13": "3400930000014", "service": "PH7", "quantity": 1,
         "unit_price": 1240, "amount": 1240},
        {"kind": "device", "lpp": "1101090", "quantity": 3, "unit_price": 155, "amount": 465},
        {"kind": "act", "code": "PH7", "coefficient": 1, "amount": 102},
        {"kind": "act", "code": "PH4", "coefficient": 1, "amount": 50},
    ]
    pharmacy = {"insurance": "maladie", "lines": lines, "tiers_payant": True,
                "amc": {"id": "12345678", "tiers_payant": True}, "insurer": dict(sl.INSURER),
                "totals": {"total": 2477, "amo": 1800, "amc": 677, "patient": 0}}
    gp = {"insurance": "maladie", "pathway": "medecin_traitant", "exemption": "ald",
          "lines": [{"kind": "act", "code": "G", "coefficient": 1, "amount": 3000}],
          "amc": False, "tiers_payant": False, "insurer": dict(sl.INSURER),
          "totals": {"total": 3000, "amo": 3000, "amc": 0, "patient": 0}}
    for name, sheet in (("pharmacy", pharmacy), ("gp", gp)):
        r = create_ok(d, {"reader": R0, "sheet": sheet}, "CreateSheet, model 2, " + name)
        check(r["mode"] == "physical", "%s: from the card" % name)
        data, s = verified(d, r["id"], G["pub"])
        check(s["v"] == 2 and "acts" not in s and len(s["lines"]) == len(sheet["lines"]),
              "%s: signed in model 2 with its lines" % name)
        err, g = call(d, "GetSheet", {"id": r["id"]})
        check(err is None and g["sheet"]["lines"][0]["kind"] == sheet["lines"][0]["kind"] and
              g["sheet"]["v"] == 2, "%s: GetSheet shows the lines" % name)
        f = os.path.join(G["tmp"], name + ".cose")
        p = vitalectl("sheet", "export", r["id"], "-o", f)
        check(p.returncode == 0, "export %s" % name)
        p = subprocess.run([harness.VITALECTL, "--json", "sheet", "verify", f, "--cert", G["cert"]],
                           capture_output=True, text=True)
        j = json.loads(p.stdout)
        check(p.returncode == 0 and j["valid"] and j["version"] == 2,
              "vitalectl sheet verify %s: %r" % (name, j))
        if name == "pharmacy":
            check(s["amc"] == {"id": "12345678", "tiers_payant": True}, "the AMC signed")
            kinds = [x["kind"] for x in s["lines"]]
            check(kinds == ["medicine", "medicine", "device", "act", "act"], "kinds %r" % kinds)
            check(s["lines"][0]["date"] == care, "a line's date defaults to the care date")
        else:
            check(s["pathway"] == "medecin_traitant" and s["exemption"] == "ald" and "amc" not in s,
                  "the GP's context signed")
    # each rule broken through the API: one error naming its field
    bad = json.loads(json.dumps(pharmacy))
    bad["lines"][0]["cip13"] = "3400935955839"
    one_error(d, {"reader": R0, "sheet": bad}, "lines[0].cip13", "CIP13")
    bad = json.loads(json.dumps(pharmacy))
    bad["lines"][2]["amount"] = 466
    bad["totals"] = {"total": 2478, "amo": 1801, "amc": 677, "patient": 0}
    one_error(d, {"reader": R0, "sheet": bad}, "lines[2].amount", "3 × 155")
    bad = json.loads(json.dumps(gp))
    bad["pathway"] = "referred"
    one_error(d, {"reader": R0, "sheet": bad}, "referrer_id", "missing")
    # the vitalectl options make the same kind of sheet
    p = vitalectl("sheet", "create", "--reader", R0, "--insurer", "01:751:0012",
                  "--medicine", "3400935955838:PH4:2:310", "--device", "1101090:3:155",
                  "--act", "PH7:1:102", "--amc-id", "12345678", "--amc-tiers-payant",
                  "--amc", "300", "--tiers-payant")
    check(p.returncode == 0 and p.stdout.startswith("queued "), "vitalectl sheet create --medicine: %s %s"
          % (p.stdout, p.stderr))
    verified(d, p.stdout.split()[1].rstrip(":"), G["pub"])

def t_kiosk():
    """Last: the clinic daemon is stopped, a kiosk one reads the card."""
    G["d"].stop()
    for h in G["hosts"]:
        h.remove()
    time.sleep(0.6)
    tmp = os.path.join(G["tmp"], "kiosk")
    os.makedirs(tmp)
    d = harness.Daemon(conf=sl.conf(None, mode="kiosk", extra="[pcsc]\nsession_timeout_ms = 5000\n"),
                       tmp=tmp, env=G["world"].env).start()
    try:
        w = harness.Watch(d)
        G["hosts"][0].insert("vitale2")
        e = w.wait_for("DraftCreated", reader=R0, timeout=15)
        w.close()
        drafts = list_all(d, state="draft")
        check([m["id"] for m in drafts] == [e["id"]] and drafts[0]["seq"] is None,
              "kiosk: one draft per card read, no signer needed")
        err, g = call(d, "GetSheet", {"id": e["id"]})
        check(g["sheet"]["mode"] == "physical" and g["sheet"]["evidence"]["card_serial"],
              "the kiosk draft holds the card's evidence")
        err, x = call(d, "CompleteDraft", {"id": e["id"], "sheet": till_part()})
        check(err == sl.IFACE + "SignerUnavailable", "a kiosk without a signer cannot complete (%s)" % err)
    finally:
        d.stop()


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
    tmp = harness.mktemp("test_sheets-")
    G["tmp"] = tmp
    G["key"], G["cert"], G["pub"] = sl.make_key(tmp)
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    world.start()
    G["world"] = world
    G["hosts"] = [CardHost(world.port + i, log=os.path.join(tmp, "cardhost%d.log" % i)) for i in (0, 1)]
    import issuer
    G["issuer"] = os.path.join(tmp, "issuer")
    issuer.init_world(G["issuer"])
    dd = os.path.join(tmp, "clinic")
    os.makedirs(dd)
    extra = ("[pcsc]\nsession_timeout_ms = 5000\n[digital]\ntrust_anchor = %s\ncode_timeout_s = 20\n"
             % os.path.join(G["issuer"], "ca.pem"))
    G["d"] = harness.Daemon(conf=sl.conf(G["key"], extra=extra), tmp=dd, env=world.env).start()
    try:
        harness.run_tests([t_card, t_verify, t_model2, t_invalid, t_phone, t_login, t_drafts, t_list, t_seq, t_softhsm,
                           t_refuse, t_kiosk])
    finally:
        for h in G["hosts"]:
            h.close()
        world.stop()


if __name__ == "__main__":
    main()
