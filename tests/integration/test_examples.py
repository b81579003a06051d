#!/usr/bin/python3
"""The till examples (examples/c/till.c built as build/examples/till-c, and
examples/python/till.py) run against a live vitaled on the simulated world:
a private pcscd with vpcd, a virtual carte Vitale 2 in "Virtual PCD 00 00"
and a virtual CPS in "Virtual PCD 00 01", the file signer with a key
encrypted under a PIN, and the test insurer (tests/insurer/) that accepts
every sheet and pays it at once (--returns-auto paid).

For each example, on a fresh vitaled:

  nocard     no card in: the signer's PIN is taken, then NoCard (exit 1);
             the daemon holds no sheet and its signer is logged in
  full       a CPS whose first PIN is wrong (PinIncorrect, 2 tries left),
             then right; a Vitale 2: read, rights checked, sheet created,
             accepted, paid (exit 0). What the example printed is checked
             against GetSheet (id, seq, state paid, request_id), the card's
             NIR, the insurer's held.json (held once, paid, the amount) and
             the CPS's own try counter
  lost       the first CreateSheet answer dropped (--lose-answer): called
             again with the same request_id, exactly one sheet has it
  refused    the insurer accepts the sheet, then refuses it: SheetRefused
             with the insurer's code (exit 1), the daemon says refused
  restart    vitaled stopped and started again while the example waits
             for the payment (the insurer pays meanwhile): the example
             reconnects and reports paid (python and C)
  offline    the rights check unanswered (the insurer fails it): the example
             says the rights are not checked and goes on; the sheet is queued
  phone      a phone (the digital carte Vitale over the PC/SC contactless
             path) taps while the example waits: CodeEntryRequested shown,
             the sheet made from the phone (mode digital-nfc, the holder's NIR)
  opposed    the card's serial on the insurer's opposition list: CardOpposed
             (exit 1), no sheet made
  readonly   run as a user without control access (nobody): PermissionDenied
             (exit 1) before any card is touched; the daemon refuses GetCard
             to that user with org.varlink.service.PermissionDenied
  blocked    a CPS with one try left and a wrong PIN: PinBlocked (exit 1),
             the card's counter is 0, no sheet made
  noserial   a Vitale 2 without its serial (EF 2F02): NoCard with the reason,
             no sheet made

Exit 0 pass, 77 skip (no pcscd/vpcd, no test insurer modules), 1 fail.
Every process is stopped by PID on every exit path (harness.py).
"""
import json
import os
import re
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "insurer"))
sys.path.insert(0, os.path.join(TOP, "tests", "world"))

import harness  # noqa: E402
from harness import check  # noqa: E402

if not all(os.path.exists(p) for p in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so")):
    print("SKIP: pcscd or vpcd not installed")
    sys.exit(77)
try:
    import sheetlib  # noqa: E402
    import insurer  # noqa: E402
    import mkpki  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
except ImportError as e:
    print("SKIP: %s" % e)
    sys.exit(77)
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402
import cards  # noqa: E402
import issuer as phone_issuer  # noqa: E402  (tests/world/issuer.py: the digital card's issuer)

R0, R1 = "Virtual PCD 00 00", "Virtual PCD 00 01"
T = "io.vitaled.Terminal."
TERMINAL = "T0001"
SERIAL = "25012345678901234567"   # the virtual Vitale 2's serial (tests/world/cards.py)
SIGNER_PIN = "58204637"        # the practitioner key file's passphrase (digits: a PIN)
CPS_PIN = "9073"  # a CPS PIN is 4 digits
EXAMPLES = {
    "python": ["/usr/bin/python3", os.path.join(TOP, "examples", "python", "till.py")],
    "c": [os.path.join(harness.B, "examples", "till-c")],
}
# EXAMPLE_WRAPPER="valgrind --error-exitcode=99 --leak-check=full -q" runs the C
# example under it (the daemon takes $TEST_WRAPPER as in every test)
WRAP_C = shlex.split(os.environ.get("EXAMPLE_WRAPPER", ""))
SLOW = 5 if (harness.WRAPPER or WRAP_C) else 1
G = {}


def command(lang):
    return (WRAP_C if lang == "c" else []) + EXAMPLES[lang]


def run(lang, args, pins=(), timeout=60):
    """The example with args; PINs on its standard input. (rc, stdout lines,
    the RESULT line's fields)."""
    timeout *= SLOW
    cmd = command(lang) + ["--socket", G["d"].sock] + list(args)
    p = subprocess.run(cmd, input="".join(x + "\n" for x in pins), capture_output=True, text=True,
                       timeout=timeout)
    out = p.stdout.splitlines()
    G["last"] = "%s\n--- stdout\n%s\n--- stderr\n%s" % (" ".join(cmd), p.stdout, p.stderr)
    with open(os.path.join(G["tmp"], "%s-%d.out" % (lang, len(os.listdir(G["tmp"])))), "w") as f:
        f.write(G["last"])
    res = [x for x in out if x.startswith("RESULT ")]
    check(len(res) == 1, "%s: one RESULT line expected:\n%s" % (lang, G["last"]))
    return p.returncode, out, parse_result(res[0])


def parse_result(line):
    """The JSON object after "RESULT "."""
    try:
        return json.loads(line[len("RESULT "):])
    except ValueError:
        raise harness.Failure("RESULT is not JSON: %r" % line)


def said(out, pattern):
    return [x for x in out if re.search(pattern, x)]


def sheets(d):
    return sheetlib.list_all(d)


def swap_card(h, card, wait_event=None, **args):
    """Put card in h's reader (removing what was there) and wait for an event."""
    w = harness.Watch(G["d"])
    try:
        if h.inserted:
            h.remove()
            w.wait_for("CardRemoved", timeout=10)
        if card is None:
            return None
        h.insert(card, **args)
        if wait_event:
            return w.wait_for(wait_event[0], timeout=15 * SLOW, **wait_event[1])
    finally:
        w.close()


def empty_readers():
    for h in (G["h0"], G["h1"]):
        if h.inserted:
            swap_card(h, None)


def t_usage(lang):
    """Bad options: exit 2 and nothing sent (no RESULT); --help: exit 0."""
    for bad in (["--act", "C:x:2650"], ["--insurer", "01:751"], ["--until", "never"], ["--bogus"]):
        p = subprocess.run(command(lang) + ["--socket", G["d"].sock] + bad, capture_output=True, text=True,
                           timeout=30 * SLOW, stdin=subprocess.DEVNULL)
        check(p.returncode == 2 and "RESULT" not in p.stdout, "%s %s: exit %d\n%s%s" % (
            lang, bad, p.returncode, p.stdout, p.stderr))
    p = subprocess.run(command(lang) + ["--help"], capture_output=True, text=True, timeout=30 * SLOW)
    check(p.returncode == 0 and "--request-id" in p.stdout, "%s --help: exit %d" % (lang, p.returncode))


def t_nocard(lang):
    d = G["d"]
    empty_readers()
    rc, out, r = run(lang, ["--reader", R0, "--card-timeout", "1"], pins=[SIGNER_PIN])
    check(rc == 1 and r.get("error") == "NoCard", "NoCard: exit %d, %r\n%s" % (rc, r, G["last"]))
    check(said(out, r"practitioner: PIN accepted"), "the signer's PIN was taken:\n%s" % G["last"])
    st = d.invoke("GetStatus")
    check(st["signer"]["logged_in"] is True, "the daemon's signer is logged in: %r" % st["signer"])
    check(sheets(d) == [], "no sheet was made")
    print("  %s nocard: exit 1, %s; signer logged in; no sheet" % (lang, said(out, "NoCard")[0]))


def t_full(lang):
    d, ins = G["d"], G["ins"]
    cps = cards.Cps(pin=CPS_PIN)
    swap_card(G["h1"], cps, ("PinRequested", {"reader": R1}))
    swap_card(G["h0"], "vitale2", ("CardRights", {"reader": R0}))
    rid = "till-%s-full" % lang
    rc, out, r = run(lang, ["--request-id", rid, "--act", "C:1:2650"], pins=["0000", CPS_PIN, SIGNER_PIN])
    check(rc == 0 and r.get("status") == "ok", "the whole flow: exit %d %r\n%s" % (rc, r, G["last"]))
    check(said(out, r"PinIncorrect: wrong PIN for card:%s, 2 tries left" % R1),
          "PinIncorrect with 2 tries left shown:\n%s" % G["last"])
    check(said(out, r"card:%s: PIN accepted" % R1), "then the right PIN:\n%s" % G["last"])
    check(cps.tries == 3, "the CPS's own counter is back to 3 (%d)" % cps.tries)
    check(said(out, r"rights: checked by the insurer: organisation 01/751/0042, covered"),
          "the rights shown as the insurer checked them:\n%s" % G["last"])
    # the daemon's own word on the sheet
    g = d.invoke("GetSheet", {"id": r["id"]})
    m = g["meta"]
    check(m["state"] == "paid" and r["state"] == "paid", "paid: example %s, daemon %s" % (r["state"], m["state"]))
    check(m["request_id"] == rid == r["request_id"], "request_id %r / %r" % (m["request_id"], r["request_id"]))
    check(m["seq"] == r["seq"], "seq: example %s, daemon %s" % (r["seq"], m["seq"]))
    card = d.invoke("GetCard", {"reader": R0})["card"]
    check(g["sheet"]["nir"] == card["beneficiaries"][0]["nir"], "the sheet is the holder's")
    check(card["beneficiaries"][0]["nir"] not in "\n".join(out), "the full NIR is never printed")
    check(SIGNER_PIN not in "\n".join(out) and
          not re.search(r"(?<![0-9A-Fa-f])%s(?![0-9A-Fa-f])" % CPS_PIN, "\n".join(out)),
          "no PIN printed")
    # the insurer's ground truth
    held = [s for s in ins.held()["sheets"] if s["id"] == r["id"]]
    check(len(held) == 1, "the insurer holds the sheet once (%d)" % len(held))
    ret = held[0]["return"] or {}
    check(ret.get("kind") == "paid" and ret.get("amount") == r["amount"],
          "paid %s by the insurer, the example says %s" % (ret, r["amount"]))
    print("  %s full: PinIncorrect (2 left) then verified; sheet %s seq %s paid %s cents; "
          "insurer holds it once, paid" % (lang, r["id"][:8], r["seq"], r["amount"]))


def t_lost(lang):
    d = G["d"]
    rid = "till-%s-lost" % lang
    rc, out, r = run(lang, ["--request-id", rid, "--lose-answer", "--until", "queued"])
    check(rc == 0 and said(out, "calling again with the same request_id"),
          "lost answer: exit %d\n%s" % (rc, G["last"]))
    same = sheetlib.list_all(d, request_id=rid)
    check(len(same) == 1 and same[0]["id"] == r["id"],
          "exactly one sheet for request_id %s (%s), the one the example reports (%s)"
          % (rid, [x["id"] for x in same], r["id"]))
    print("  %s lost: one sheet %s for request_id %s after the answer was dropped" % (lang, r["id"][:8], rid))


def t_refused(lang):
    """The insurer accepts the sheet, then refuses it (a return of kind
    refused): the example reports SheetRefused with the insurer's code and
    exits 1; the daemon says refused with the same code."""
    d, ins = G["d"], G["ins"]
    if not G["h0"].inserted:
        swap_card(G["h0"], "vitale2", ("CardRights", {"reader": R0}))
    ins.ctl("returns_auto refused")
    try:
        rid = "till-%s-refused" % lang
        rc, out, r = run(lang, ["--request-id", rid], pins=[SIGNER_PIN])
    finally:
        ins.ctl("returns_auto paid")
    check(rc == 1 and r.get("error") == "SheetRefused", "refused: exit %d %r\n%s" % (rc, r, G["last"]))
    m = d.invoke("GetSheet", {"id": r["id"]})["meta"]
    check(m["state"] == "refused" and m["code"] == r["code"] and m["request_id"] == rid,
          "the daemon: %s code %r; the example: code %r" % (m["state"], m["code"], r["code"]))
    held = [x for x in ins.held()["sheets"] if x["id"] == r["id"]]
    check(len(held) == 1 and (held[0]["return"] or {}).get("kind") == "refused",
          "the insurer refused it: %r" % held)
    print("  %s refused: %s" % (lang, said(out, "SheetRefused")[0]))


def t_restart(lang):
    d, ins = G["d"], G["ins"]
    ins.ctl("returns_auto off")
    rid = "till-%s-restart" % lang
    cmd = command(lang) + ["--socket", d.sock, "--request-id", rid, "--poll-interval", "1",
                           "--reconnect-timeout", str(20 * SLOW), "--follow-timeout", str(40 * SLOW)]
    p = harness.track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True))
    out = []
    try:
        end = time.monotonic() + 30 * SLOW
        while time.monotonic() < end:
            line = p.stdout.readline()
            if not line:
                break
            out.append(line.rstrip("\n"))
            if "SheetAccepted" in line:
                break
        check(said(out, "SheetAccepted"), "accepted before the restart:\n%s" % "\n".join(out))
        sid = said(out, "sheet created: id=")[0].split("id=")[1].split()[0]
        d.stop()
        ins.ctl("pay %s amount=1234" % sid)
        time.sleep(1)
        d.start()
        d.invoke("Upload")   # a round now (its returns poll), not after returns_interval_s
        rest, err = p.communicate(timeout=60 * SLOW)
        out += rest.splitlines()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ins.ctl("returns_auto paid")
    G["last"] = "\n".join(out) + "\n--- stderr\n" + err
    res = [x for x in out if x.startswith("RESULT ")]
    r = parse_result(res[-1]) if res else {}
    check(p.returncode == 0 and r.get("state") == "paid" and r.get("id") == sid,
          "paid after the restart: exit %s %r\n%s" % (p.returncode, r, G["last"]))
    check(said(out, "lost"), "the example saw the connection go:\n%s" % G["last"])
    check(d.invoke("GetSheet", {"id": sid})["meta"]["state"] == "paid", "the daemon says paid")
    print("  %s restart: vitaled restarted while following; the example reconnected and saw %s paid"
          % (lang, sid[:8]))


def t_blocked(lang):
    d = G["d"]
    n = len(sheets(d))
    cps = cards.Cps(pin=CPS_PIN, tries=1)
    e = swap_card(G["h1"], cps, ("PinRequested", {"reader": R1}))
    check(e["tries_left"] == 1, "the CPS has one try left: %r" % e)
    rc, out, r = run(lang, ["--card-timeout", "5"], pins=["0000"])
    check(rc == 1 and r.get("error") == "PinBlocked" and r.get("target") == "card:" + R1,
          "PinBlocked: exit %d %r\n%s" % (rc, r, G["last"]))
    check(cps.tries == 0, "the card's counter is 0 (%d)" % cps.tries)
    check(len(sheets(d)) == n, "no sheet made")
    print("  %s blocked: %s" % (lang, said(out, "PinBlocked")[0]))


def t_noserial(lang):
    d = G["d"]
    swap_card(G["h1"], None)
    n = len(sheets(d))
    swap_card(G["h0"], "vitale2", ("CardRead", {"reader": R0}), noserial="1")
    rc, out, r = run(lang, ["--card-timeout", "5", "--rights-timeout", "3"], pins=[SIGNER_PIN])
    check(rc == 1 and r.get("error") == "NoCard" and "2F02" in r.get("reason", ""),
          "a card without its serial: exit %d %r\n%s" % (rc, r, G["last"]))
    check(len(sheets(d)) == n, "no sheet made")
    print("  %s noserial: %s" % (lang, r.get("reason")))


def start_example(lang, args):
    cmd = command(lang) + ["--socket", G["d"].sock] + list(args)
    return harness.track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))


def read_until(p, out, pattern, timeout=30):
    """Lines of p's output into out until one matches pattern."""
    end = time.monotonic() + timeout * SLOW
    while time.monotonic() < end:
        line = p.stdout.readline()
        if not line:
            break
        out.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return line
    raise harness.Failure("no line matching %r:\n%s" % (pattern, "\n".join(out)))


def t_phone(lang):
    """A phone on the PC/SC contactless path: the example waits, the phone
    asks its holder for the code (1.5 s), the example says so, then makes
    the sheet from the phone's device-signed answer."""
    d = G["d"]
    swap_card(G["h1"], None)
    swap_card(G["h0"], None)
    rid = "till-%s-phone" % lang
    p = start_example(lang, ["--request-id", rid, "--card-timeout", str(20 * SLOW), "--until", "queued"])
    out = []
    try:
        read_until(p, out, "waiting for a carte Vitale or a phone")
        G["h0"].insert("phone", tmpdir=G["phone_world"], pending_s="1.5")
        rest, err = p.communicate(timeout=60 * SLOW)
        out += rest.splitlines()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    G["last"] = "\n".join(out)
    res = [x for x in out if x.startswith("RESULT ")]
    r = parse_result(res[-1]) if res else {}
    check(p.returncode == 0 and r.get("status") == "ok", "phone: exit %s %r\n%s" % (p.returncode, r, G["last"]))
    check(said(out, "CodeEntryRequested: enter your code on your phone"),
          "the example asked the holder for the code on the phone:\n%s" % G["last"])
    g = d.invoke("GetSheet", {"id": r["id"]})
    check(g["meta"]["request_id"] == rid and g["sheet"]["mode"] == "digital-nfc",
          "the sheet is the phone's: mode %r" % g["sheet"].get("mode"))
    holder = phone_issuer.default_holder()
    check(g["sheet"]["nir"] == holder["nir"], "the sheet carries the phone holder's NIR")
    swap_card(G["h0"], None)
    print("  %s phone: CodeEntryRequested shown, sheet %s mode %s" % (lang, r["id"][:8], g["sheet"]["mode"]))


def t_offline(lang):
    """The rights check unanswered (the insurer answers 503 to it; a closed
    port is the same for the till, but a kept-alive connection may still
    be answered): the example says the rights are not checked and goes on
    with the card's data; the sheet is queued."""
    d, ins = G["d"], G["ins"]
    ins.ctl("fail 503 1 path=/v1/rights")
    try:
        e = swap_card(G["h0"], "vitale2", ("CardRights", {"reader": R0}))
        check(e["state"] not in ("checked", "pending"), "the rights check failed: %r" % e)
        rid = "till-%s-offline" % lang
        rc, out, r = run(lang, ["--request-id", rid, "--until", "queued"], pins=[SIGNER_PIN])
        check(rc == 0 and r.get("state") == "queued", "offline: exit %d %r\n%s" % (rc, r, G["last"]))
        check(said(out, r"rights: not checked \(%s" % e["state"]),
              "the example says the rights are not checked:\n%s" % G["last"])
        m = d.invoke("GetSheet", {"id": r["id"]})["meta"]
        check(m["request_id"] == rid, "the sheet is stored: %r" % m)
    finally:
        ins.ctl("clear")
    print("  %s offline: rights check %s (%s), sheet %s %s" % (lang, e["state"], e.get("reason"),
                                                               r["id"][:8], m["state"]))


def t_readonly(lang):
    """The till's user is not allowed control (here: nobody, not in
    [api] allowed_users/allowed_groups): the example sees access "read" in
    GetStatus and stops with PermissionDenied before touching a card; the
    daemon's own answer to that user's GetCard is
    org.varlink.service.PermissionDenied."""
    import pwd
    d = G["d"]
    nob = pwd.getpwnam("nobody")
    for path in (G["tmp"], d.dir):
        os.chmod(path, 0o755)
    os.chmod(d.sock, 0o666)

    def as_nobody():
        os.setgid(nob.pw_gid)
        os.setgroups([])
        os.setuid(nob.pw_uid)
    cmd = command(lang) + ["--socket", d.sock, "--card-timeout", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, preexec_fn=as_nobody,
                       stdin=subprocess.DEVNULL)
    G["last"] = "%s\n%s" % (p.stdout, p.stderr)
    res = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if not res and p.returncode in (2, 126, 127):
        print("  %s readonly: skipped, nobody cannot run %s (%s)" % (lang, cmd[-5], p.stderr.strip()[:80]))
        return
    r = parse_result(res[-1]) if res else {}
    check(p.returncode == 1 and r.get("error") == "PermissionDenied" and r.get("access") == "read",
          "read-only user: exit %d %r\n%s" % (p.returncode, r, G["last"]))
    q = subprocess.run(["/usr/bin/python3", "-c",
                        "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
                        "s.sendall(b'{\"method\":\"io.vitaled.Terminal.GetCard\",\"parameters\":{}}\\0')\n"
                        "print(s.recv(4096).rstrip(b'\\0').decode())", d.sock],
                       capture_output=True, text=True, timeout=30, preexec_fn=as_nobody)
    check(json.loads(q.stdout or "{}").get("error") == "org.varlink.service.PermissionDenied",
          "the daemon refuses GetCard to that user: %r %r" % (q.stdout, q.stderr))
    print("  %s readonly: %s" % (lang, [x for x in p.stdout.splitlines() if "may only read" in x][0]))


def wait_opposition(d, n):
    """vitaled's copy of the opposition list holds n serials (synced with
    the returns: an Upload round asks for it now)."""
    d.invoke("Upload")
    end = time.monotonic() + 25
    while d.invoke("GetStatus")["opposition"]["serials"] != n:
        check(time.monotonic() < end, "the opposition list not synced: %r" % d.invoke("GetStatus")["opposition"])
        time.sleep(0.2)


def t_opposed(lang):
    """The card's serial on the insurer's opposition list: the example stops
    at the card (CardOpposed, exit 1) and no sheet is made; the daemon's own
    CreateSheet from that card answers CardOpposed too."""
    d, ins = G["d"], G["ins"]
    n = len(sheets(d))
    ins.ctl("oppose " + SERIAL)
    try:
        wait_opposition(d, 1)
        e = swap_card(G["h0"], "vitale2", ("CardRead", {"reader": R0}))
        check(e.get("opposed") is True, "CardRead says opposed: %r" % e.get("opposed"))
        rc, out, r = run(lang, ["--card-timeout", "5", "--rights-timeout", "3"], pins=[SIGNER_PIN])
        check(rc == 1 and r.get("error") == "CardOpposed", "opposed: exit %d %r\n%s" % (rc, r, G["last"]))
        check(said(out, "CardOpposed: this card is on the insurer's opposition list"),
              "the example says what to do:\n%s" % G["last"])
        check(len(sheets(d)) == n, "no sheet made")
        err, x = d.result("CreateSheet", {"reader": R0, "sheet": sheetlib.till_part()})
        check(err == T + "CardOpposed", "the daemon itself refuses a sheet from it: %s" % err)
        why = d.invoke("GetCard", {"reader": R0})["card"].get("why")
    finally:
        # the last scenario: the next daemon syncs the list afresh (oppose, unoppose: empty)
        ins.ctl("unoppose " + SERIAL)
    print("  %s opposed: %s; GetCard why %r; CreateSheet %r" % (lang, said(out, "CardOpposed")[0], why, x))


def daemon_for(lang):
    w = G["world"]
    conf = sheetlib.conf(G["key"], extra=(
        "[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
        "client_key = %s/client.key.pem\nsigner_chain = %s\ngather_ms = 100\n"
        "connect_timeout_s = 2\nreturns_interval_s = 10\n"
        "[pcsc]\nsession_timeout_ms = 5000\n[digital]\ntrust_anchor = %s/ca.pem\n" %
        (G["ins"].url, G["pki"], G["pki"], G["pki"], G["chain"], G["phone_world"])))
    conf = conf.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)
    return harness.Daemon(conf=conf, tmp=G["tmp"], name="d-" + lang, timeout=10.0,
                          env={"PCSCLITE_CSOCK_NAME": w.socket})


def main():
    only = os.environ.get("ONLY")
    langs = [x for x in EXAMPLES if not only or only.split()[0] in EXAMPLES and only.split()[0] == x
             or only.split()[0] not in EXAMPLES]
    missing = [EXAMPLES[x][-1] for x in langs if not os.path.exists(EXAMPLES[x][-1])]
    if missing or not os.access(harness.VITALED, os.X_OK):
        print("FAIL: not built: %s" % (missing or harness.VITALED))
        sys.exit(1)
    tmp = G["tmp"] = harness.mktemp("test_examples-")
    G["pki"] = pki = os.path.join(tmp, "pki")
    mkpki.init_pki(pki, terminal_id=TERMINAL)
    G["key"], _, pub = sheetlib.make_key(tmp, password=SIGNER_PIN)
    G["chain"] = os.path.join(tmp, "chain.pem")
    with open(G["chain"], "wb") as f:
        f.write(mkpki.issue_practitioner(pki, pub).public_bytes(serialization.Encoding.PEM))
    G["phone_world"] = os.path.join(tmp, "issuer")
    phone_issuer.init_world(G["phone_world"])
    G["ins"] = insurer.InsurerProcess(pki, os.path.join(tmp, "insurer"), extra=["--returns-auto", "paid"])
    G["world"] = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    failed = 0
    try:
        G["world"].start()
        G["h0"] = CardHost(G["world"].port, log=os.path.join(tmp, "h0.log"))
        G["h1"] = CardHost(G["world"].port + 1, log=os.path.join(tmp, "h1.log"))
        for lang in langs:
            G["d"] = daemon_for(lang).start()
            empty_readers()
            for t in (t_usage, t_nocard, t_full, t_lost, t_refused, t_restart, t_blocked, t_noserial, t_offline, t_phone, t_opposed, t_readonly):
                name = "%s %s" % (lang, t.__name__)
                if only and only not in name:
                    continue
                t0 = time.monotonic()
                try:
                    t(lang)
                    print("  ok   %-30s %.2fs" % (name, time.monotonic() - t0), flush=True)
                except Exception as e:  # noqa: BLE001 - every failure reported
                    failed += 1
                    print("  FAIL %-30s %s: %s" % (name, type(e).__name__, e), flush=True)
            G["d"].stop()
    finally:
        for h in ("h0", "h1"):
            if h in G:
                G[h].close()
        harness.stop_all()
        G["world"].stop()
        G["ins"].stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
