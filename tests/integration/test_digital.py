#!/usr/bin/python3
"""The digital carte Vitale end to end: a phone presents its credential to
vitaled over NFC (libnfc's pn532_uart driver on a PN532 emulator,
tests/world/pn532emu.py) and over PC/SC (the `phone` card on vpcd, through a
private pcscd), both hosting tests/world/phone_applet.py with a test insurer
made by tests/world/issuer.py in this test's temporary directory.

For each transport:
  - a good phone: CardInserted -> CardRead; `vitalectl card --json` shows
    presentation "digital-nfc" and every identity field as issuer.py put it
    in the credential; the evidence (credential and device answer, base64)
    is byte for byte what the phone sent and verifies with the independent
    verifier (tests/world/verify_credential.py) against the nonce vitaled
    recorded;
  - code entry pending longer than [pcsc] session_timeout_ms:
    CodeEntryRequested, the reader in state code_entry, then CardRead (the
    session deadline follows [digital] code_timeout_s once the phone asks);
  - each refusal ends in CardError with its docs/digital-card.md §12 name,
    within a bounded time, while GetStatus keeps answering: code_refused,
    code_blocked, credential_signature, chain_untrusted, credential_expired,
    chain_expired, nonce_mismatch, uv_false, answer_too_large, card_lost
    (phone gone mid-exchange, and taken away during code entry),
    code_timeout;
then: the PN532 vanishing and coming back (ReaderRemoved, ReaderAdded, the
next tap read); vitaled without trust anchor (chain_untrusted, "no trust
anchor configured"); an unreadable anchor file (start-up fails naming it);
and no NIR or name in vitaled's log.

Environment: B (build dir, default ./build); KEEP=1 keeps the temp dir;
ONLY=nfc|pcsc runs one transport. Exit 0 pass, 77 skip, 1 fail. Every
process is stopped by PID on every exit path.
"""

import base64
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORLD = os.path.join(ROOT, "tests", "world")
B = os.path.abspath(os.environ.get("B", os.path.join(ROOT, "build")))
WRAPPED = bool(os.environ.get("TEST_WRAPPER", ""))
SLOW = 5.0 if WRAPPED else 1.0

SESSION_TIMEOUT_MS = 2500     # [pcsc] session_timeout_ms: shorter than PENDING_S
CODE_TIMEOUT_S = 6            # [digital] code_timeout_s
PENDING_S = 3.5               # the phone's code entry in the "pending" case
BOUND_S = 5.0 * SLOW          # a refusal is reported within this


def skip(why):
    print("SKIP: %s" % why)
    sys.exit(77)


for need in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
    if not os.path.exists(need):
        skip("%s is not installed" % need)
for b in ("vitaled", "vitalectl"):
    if not os.access(os.path.join(B, b), os.X_OK):
        print("FAIL: %s/%s is not built" % (B, b))
        sys.exit(1)

sys.path.insert(0, HERE)
sys.path.insert(0, WORLD)
import harness  # noqa: E402
from harness import Watch  # noqa: E402
from test_readers import Fail, check  # noqa: E402
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402
import issuer  # noqa: E402
import verify_credential as vc  # noqa: E402

try:
    import cbor2  # noqa: E402
except ImportError:
    skip("python3-cbor2 is not installed")

R0 = "Virtual PCD 00 00"


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)   # the finally blocks stop what runs


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGHUP, _on_signal)


# ------------------------------------------------------------------ processes


class Emulator:
    """pn532emu.py on a pty, its control socket, its log."""

    def __init__(self, tmp, world):
        self.link = os.path.join(tmp, "pn532")
        self.ctl = os.path.join(tmp, "pn532.sock")
        self.log = os.path.join(tmp, "pn532.log")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(WORLD, "pn532emu.py"), "--link", self.link,
             "--control", self.ctl, "--log", self.log, "--world", world],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        harness.track(self.proc)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise Fail("pn532emu did not start: %r" % line)

    @property
    def connstring(self):
        return "pn532_uart:" + self.link

    def send(self, line):
        sys.path.insert(0, WORLD)
        import pn532emu
        answer = pn532emu.client(self.ctl, line)
        if not answer.startswith("ok"):
            raise Fail("pn532emu %r: %s" % (line, answer))
        return answer

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Daemon(harness.Daemon):
    """vitaled in TMP/NAME with this test's environment and configuration."""

    def __init__(self, tmp, env, name, conf, args=()):
        harness.Daemon.__init__(self, conf=conf, args=args, env=env, tmp=tmp, name=name,
                                timeout=10.0)

    def reader(self, name):
        for r in self.call("io.vitaled.Terminal.ListReaders")["parameters"]["readers"]:
            if r["name"] == name:
                return r
        return None


# ------------------------------------------------------------------ transports


class Nfc:
    name = "nfc"

    def __init__(self, emu):
        self.emu = emu
        self.reader = "nfc:" + emu.connstring

    def present(self, **knobs):
        words = ["%s=%s" % (k, json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v)
                 for k, v in knobs.items()]
        self.emu.send(" ".join(["tap"] + words))

    def take_away(self):
        self.emu.send("away")


class Pcsc:
    name = "pcsc"

    def __init__(self, host, world_dir):
        self.host = host
        self.world_dir = world_dir
        self.reader = R0

    def present(self, **knobs):
        self.host.insert("phone", tmpdir=self.world_dir, **knobs)

    def take_away(self):
        self.host.remove()


def outcome(w, reader, timeout):
    """Events on reader until CardRead or CardError: (that event, all seen)."""
    seen = []
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise Fail("no outcome on %s within %.1f s (seen %s)" % (reader, timeout, [e["type"] for e in seen]))
        try:
            e = w.next(left)
        except OSError:
            continue
        if e.get("reader") != reader or e["type"] in ("ReaderAdded", "ReaderRemoved"):
            continue
        if not seen and e["type"] == "CardRemoved":
            continue   # the previous phone's, left by settle()
        seen.append(e)
        if e["type"] in ("CardRead", "CardError"):
            return e, seen


def settle(d, t, w):
    """The phone leaves and the reader is absent again (the events on the
    way are skipped by the next outcome())."""
    t.take_away()
    end = time.monotonic() + 5 * SLOW
    r = None
    while time.monotonic() < end:
        r = d.reader(t.reader)
        if r and r["state"] == "absent":
            return
        time.sleep(0.02)
    raise Fail("reader %s not absent after the phone left (%r)" % (t.reader, r))


# ------------------------------------------------------------------ checks


def iso_utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_identity(t, card, anchors):
    """GetCard (vitalectl card --json) against the credential issuer.py made."""
    ev = card.get("evidence") or {}
    cred = base64.b64decode(ev.get("credential") or "")
    answer = base64.b64decode(ev.get("device_answer") or "")
    nonce = bytes.fromhex(ev.get("nonce") or "")
    check(card["presentation"] == "digital-nfc" and card["profile"] == "digital"
          and card["kind"] == "digital" and card["readable"] and card["recognised"],
          "%s: vitalectl card --json: presentation digital-nfc, profile/kind digital, readable" % t.name)
    check(len(cred) == ev.get("credential_len") and len(answer) == ev.get("device_answer_len")
          and ev.get("holder_verified") is True and len(nonce) == 32,
          "%s: evidence: credential %d bytes, device answer %d bytes, nonce, holder verified"
          % (t.name, len(cred), len(answer)))
    # the phone's credential as issuer.py wrote it (make_phone keeps it in the world dir)
    files = [f for f in os.listdir(t.world_dir) if f.startswith("phone-") and f.endswith(".cbor")]
    same = [f for f in files if open(os.path.join(t.world_dir, f), "rb").read() == cred]
    check(len(same) == 1, "%s: the evidence credential is byte for byte the one issuer.py made" % t.name)
    # the independent verifier accepts the evidence against vitaled's nonce
    payload, dk = vc.verify_credential(cred, anchors)
    a = vc.verify_answer(answer, payload, dk, nonce)
    check(a["uv"] is True and a["cid"] == payload["cid"],
          "%s: verify_credential.py accepts the kept credential and device answer" % t.name)
    check(ev.get("terminal_id") == t.terminal_id, "%s: evidence names this terminal" % t.name)
    # every identity field
    people = [payload] + sorted(payload["beneficiaries"], key=lambda b: b["rank"])
    bens = card["beneficiaries"]
    check(len(bens) == len(people), "%s: holder + %d beneficiaries" % (t.name, len(people) - 1))
    for i, (got, want) in enumerate(zip(bens, people)):
        for k in ("surname", "given_name", "birth_date", "nir"):
            check(got[k] == want[k], "%s: person %d %s as issued" % (t.name, i, k))
        check(got["rank"] == (0 if i == 0 else want["rank"]) and got["nir_valid"] is True,
              "%s: person %d rank %d, NIR valid" % (t.name, i, got["rank"]))
    f = card["fields"]
    for k in ("regime", "caisse", "centre"):
        check(f.get(k) == payload[k], "%s: field %s = %s" % (t.name, k, payload[k]))
    rights = ", ".join("%s %s..%s" % (r["code"], r["from"], r["to"]) for r in payload["rights"])
    check(f.get("rights") == rights, "%s: rights %r" % (t.name, rights))
    check(f.get("credential_id") == payload["cid"].hex().upper(), "%s: credential id" % t.name)
    check(f.get("not_before") == iso_utc(payload["nbf"]) and f.get("not_after") == iso_utc(payload["exp"]),
          "%s: not_before/not_after = nbf/exp" % t.name)
    check(f.get("holder_verified") == "yes" and f.get("rights_today") == "covered",
          "%s: holder verified, rights cover today" % t.name)
    return people


# (case, knobs, reason) of the refusals, each on both transports
REFUSALS = [
    ("code refused", {"code": "refuse"}, "code_refused"),
    ("code blocked", {"code": "block"}, "code_blocked"),
    ("bad issuer signature", {"bad_issuer_sig": True}, "credential_signature"),
    ("unknown issuer CA", {"issuer": "unknown_ca"}, "chain_untrusted"),
    ("issuer under a forged CA", {"issuer": "forged_ca"}, "chain_untrusted"),
    ("issuer without purpose", {"issuer": "no_purpose"}, "issuer_purpose"),
    ("expired credential", {"expired": True}, "credential_expired"),
    ("credential not yet valid", {"not_yet_valid": True}, "credential_not_yet_valid"),
    ("expired issuer certificate", {"issuer": "expired"}, "chain_expired"),
    ("device signs another nonce", {"sign_other_nonce": True}, "nonce_mismatch"),
    ("uv false", {"uv": False}, "uv_false"),
    ("huge chained credential", {"huge": 12000}, "answer_too_large"),
    ("phone gone mid-read", {"vanish_after": 3}, "card_lost"),
]


def run_transport(d, w, t, anchors):
    # a good phone
    t0 = time.monotonic()
    t.present()
    e, seen = outcome(w, t.reader, BOUND_S)
    check(e["type"] == "CardRead" and [x["type"] for x in seen] == ["CardInserted", "CardRead"]
          and seen[0]["profile"] == "digital",
          "%s: good phone: CardInserted (digital) -> CardRead in %.2f s" % (t.name, time.monotonic() - t0))
    s = e["summary"]
    check(s["presentation"] == "digital-nfc" and "nir" not in json.dumps(s).replace("nir_masked", ""),
          "%s: CardRead summary: digital-nfc, NIRs masked" % t.name)
    p = d.ctl("card", "--json", "--reader", t.reader)
    check(p.returncode == 0, "%s: vitalectl card --json exits 0" % t.name)
    check_identity(t, json.loads(p.stdout), anchors)
    human = d.ctl("card", "--reader", t.reader).stdout
    check("presented: digital-nfc" in human and "code entered on the phone" in human,
          "%s: vitalectl card shows the presentation and the evidence" % t.name)
    settle(d, t, w)

    # code entry pending for longer than the generic session deadline
    t0 = time.monotonic()
    t.present(pending_s=PENDING_S)
    e, seen = outcome(w, t.reader, PENDING_S + BOUND_S)
    took = time.monotonic() - t0
    types = [x["type"] for x in seen]
    check(types == ["CardInserted", "CodeEntryRequested", "CardRead"],
          "%s: pending code: CardInserted -> CodeEntryRequested -> CardRead (%s)" % (t.name, types))
    cer = seen[1]
    check(cer.get("timeout_s") == CODE_TIMEOUT_S and cer.get("profile") == "digital",
          "%s: CodeEntryRequested says timeout_s %d" % (t.name, CODE_TIMEOUT_S))
    check(took >= PENDING_S - 0.3 and took > SESSION_TIMEOUT_MS / 1000.0,
          "%s: accepted after %.2f s, past session_timeout_ms %d" % (t.name, took, SESSION_TIMEOUT_MS))
    settle(d, t, w)

    # the reader says so while the phone waits; and GetStatus answers
    t.present(pending_s=30)
    seen_state = None
    end = time.monotonic() + BOUND_S
    while time.monotonic() < end:
        r = d.reader(t.reader)
        if r and r["state"] == "code_entry":
            seen_state = r
            break
        time.sleep(0.05)
    check(seen_state is not None and "phone" in (seen_state.get("reason") or ""),
          "%s: ListReaders shows code_entry (%r)" % (t.name, seen_state and seen_state.get("reason")))
    # taken away during code entry
    t0 = time.monotonic()
    t.take_away()
    e, seen = outcome(w, t.reader, BOUND_S)
    check(e["type"] == "CardError" and e["reason"] == "card_lost",
          "%s: taken away during code entry: CardError card_lost in %.2f s" % (t.name, time.monotonic() - t0))
    settle(d, t, w)

    # the code is not entered in time
    t0 = time.monotonic()
    t.present(pending_s=60)
    e, seen = outcome(w, t.reader, CODE_TIMEOUT_S + BOUND_S)
    took = time.monotonic() - t0
    check(e["type"] == "CardError" and e["reason"] == "code_timeout"
          and CODE_TIMEOUT_S - 0.5 <= took <= CODE_TIMEOUT_S + 3,
          "%s: code not entered: CardError code_timeout after %.2f s (code_timeout_s %d)"
          % (t.name, took, CODE_TIMEOUT_S))
    settle(d, t, w)

    for case, knobs, reason in REFUSALS:
        t0 = time.monotonic()
        t.present(**knobs)
        t1 = time.monotonic()
        st = d.call("io.vitaled.Terminal.GetStatus")
        api_ms = (time.monotonic() - t1) * 1000
        e, seen = outcome(w, t.reader, BOUND_S)
        took = time.monotonic() - t0
        check(e["type"] == "CardError" and e.get("reason") == reason and reason in (e.get("detail") or "")
              and "parameters" in st and api_ms < 500,
              "%s: %s: CardError %s in %.2f s (%s); GetStatus meanwhile %.0f ms"
              % (t.name, case, e.get("reason"), took, e.get("detail"), api_ms))
        r = d.reader(t.reader)
        check(r["state"] in ("error", "removed", "absent") and (r["state"] != "error" or reason in (r["reason"] or "")),
              "%s: %s: reader %s (%s)" % (t.name, case, r["state"], r.get("reason")))
        nc = d.call("io.vitaled.Terminal.GetCard", {"reader": t.reader})
        check(nc.get("error") == "io.vitaled.Terminal.NoCard", "%s: %s: GetCard has no card" % (t.name, case))
        settle(d, t, w)


def main():
    tmp = tempfile.mkdtemp(prefix="test_digital.")
    world_dir = os.path.join(tmp, "issuer")
    issuer.init_world(world_dir)
    anchors = vc.load_anchors([os.path.join(world_dir, "ca.pem")])
    only = os.environ.get("ONLY", "")
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket, LIBNFC_AUTO_SCAN="false")
    env.pop("LIBNFC_LOG_LEVEL", None)
    emu = None
    host = None
    daemons = []
    watches = []
    ok = False
    try:
        world.start()
        emu = Emulator(tmp, world_dir)
        conf = ("[daemon]\nlog_level = debug\nterminal_id = TEST-DIGITAL-01\n"
                "[pcsc]\nsession_timeout_ms = %d\nbackoff_max_ms = 400\n"
                "[nfc]\npoll_ms = 100\n"
                "[digital]\ntrust_anchor = %s\ncode_timeout_s = %d\n"
                % (SESSION_TIMEOUT_MS, os.path.join(world_dir, "ca.pem"), CODE_TIMEOUT_S))
        d = Daemon(tmp, env, "vitaled", conf, ["--nfc", emu.connstring])
        daemons.append(d)
        d.start()
        w = Watch(d.sock)
        watches.append(w)
        nfc = Nfc(emu)
        nfc.world_dir = world_dir
        host = CardHost(world.port, log=os.path.join(tmp, "card0.log"))
        pcsc = Pcsc(host, world_dir)
        for t in (nfc, pcsc):
            t.terminal_id = "TEST-DIGITAL-01"
        # both readers up
        end = time.monotonic() + 10 * SLOW
        while time.monotonic() < end and not (d.reader(nfc.reader) and d.reader(R0)):
            time.sleep(0.05)
        check(d.reader(nfc.reader) is not None and d.reader(R0) is not None,
              "the NFC reader and the PC/SC readers are listed")
        for t in (nfc, pcsc):
            if only and only != t.name:
                continue
            run_transport(d, w, t, anchors)

        if not only or only == "nfc":
            # the PN532 vanishes and comes back
            t0 = time.monotonic()
            emu.send("vanish")
            e = w.expect("ReaderRemoved", timeout=5 * SLOW, reader=nfc.reader,
                         ignore=("CardRemoved",))
            t_gone = time.monotonic() - t0
            t0 = time.monotonic()
            emu.send("back")
            e = w.expect("ReaderAdded", timeout=8 * SLOW, reader=nfc.reader)
            check(True, "PN532 vanished: ReaderRemoved in %.2f s; back: ReaderAdded in %.2f s"
                  % (t_gone, time.monotonic() - t0))
            nfc.present()
            e, seen = outcome(w, nfc.reader, BOUND_S)
            check(e["type"] == "CardRead", "after the PN532 came back, the next tap is read")
            settle(d, nfc, w)

            # the PN532 vanishes while a phone waits for its code
            nfc.present(pending_s=30)
            w.expect("CodeEntryRequested", timeout=BOUND_S, reader=nfc.reader,
                     ignore=("CardInserted", "CardRemoved"))
            t0 = time.monotonic()
            emu.send("vanish")
            e, seen = outcome(w, nfc.reader, BOUND_S)
            check(e["type"] == "CardError" and e["reason"] == "card_lost",
                  "PN532 vanished during code entry: CardError card_lost in %.2f s" % (time.monotonic() - t0))
            st = d.call("io.vitaled.Terminal.GetStatus")
            check("parameters" in st, "GetStatus answers with the PN532 gone")
            emu.send("away")
            # the device is seen gone before it comes back (a slow daemon,
            # e.g. under valgrind, would otherwise never notice it left)
            w.expect("ReaderRemoved", timeout=8 * SLOW, reader=nfc.reader,
                     ignore=("CardRemoved", "CardError"))
            emu.send("back")
            w.expect("ReaderAdded", timeout=8 * SLOW, reader=nfc.reader,
                     ignore=("CardRemoved", "CardError"))

        # the log: no NIR, no name (debug level)
        log = d.log_text()
        holder = issuer.default_holder()
        secrets_ = [holder["nir"], holder["nir"][:13], holder["surname"], holder["given_name"]]
        for b in holder["beneficiaries"]:
            secrets_ += [b["nir"], b["nir"][:13], b["given_name"]]
        leaked = [s for s in secrets_ if s in log]
        check(not leaked, "vitaled's log (debug level) holds no NIR and no name")
        w.close()
        watches.remove(w)
        d.stop()
        check(d.proc.returncode == 0, "vitaled stopped cleanly (exit %d)" % d.proc.returncode)

        # no trust anchor: every phone refused, and says why
        if not only or only == "nfc":
            d2 = Daemon(tmp, env, "noanchor", "[nfc]\npoll_ms = 100\n[pcsc]\nenabled = false\n",
                        ["--nfc", emu.connstring])
            daemons.append(d2)
            d2.start()
            check("no trust anchor configured" in d2.log_text(), "without trust anchor: a warning at start")
            w2 = Watch(d2.sock)
            watches.append(w2)
            # the reader may have been added before the watch began: then
            # ListReaders has it already (outcome() skips a late ReaderAdded)
            if not d2.reader(nfc.reader):
                w2.expect("ReaderAdded", timeout=5 * SLOW, reader=nfc.reader,
                          ignore=("DriverDown", "CardInserted", "CardRead"))
            emu.send("away")
            time.sleep(0.3)
            nfc.present()
            e, seen = outcome(w2, nfc.reader, BOUND_S)
            check(e["type"] == "CardError" and e["reason"] == "chain_untrusted"
                  and "no trust anchor configured" in e.get("detail", ""),
                  "without trust anchor: CardError chain_untrusted, '%s'" % e.get("detail"))
            emu.send("away")
            w2.close()
            watches.remove(w2)
            d2.stop()

        # an anchor file that cannot be read stops start-up, naming it
        bad = os.path.join(tmp, "missing-anchor.pem")
        d3 = Daemon(tmp, env, "badanchor", "[pcsc]\nenabled = false\n[digital]\ntrust_anchor = %s\n" % bad)
        daemons.append(d3)
        d3.start(wait=False)
        try:
            rc = d3.proc.wait(10 * SLOW)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc not in (None, 0) and bad in d3.log_text(),
              "unreadable trust anchor: start-up fails (exit %s) and the log names %s" % (rc, os.path.basename(bad)))
        notpem = os.path.join(tmp, "not-a-cert.pem")
        with open(notpem, "w") as f:
            f.write("hello\n")
        d4 = Daemon(tmp, env, "notpem", "[pcsc]\nenabled = false\n[digital]\ntrust_anchor = %s\n" % notpem)
        daemons.append(d4)
        d4.start(wait=False)
        try:
            rc = d4.proc.wait(10 * SLOW)
        except subprocess.TimeoutExpired:
            rc = None
        check(rc not in (None, 0) and notpem in d4.log_text(),
              "a trust anchor file without a certificate: start-up fails (exit %s), named" % rc)
        ok = True
    except Fail as e:
        print("not ok - %s" % e)
        for d_ in daemons:
            print("--- %s log:\n%s" % (d_.log, d_.tail()))
    finally:
        for w_ in watches:
            try:
                w_.close()
            except Exception:
                pass
        for d_ in daemons:
            d_.stop()
        if host:
            try:
                host.close()
            except Exception:
                pass
        if emu:
            emu.stop()
        world.stop()
        if os.environ.get("KEEP") or not ok:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
