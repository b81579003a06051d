#!/usr/bin/python3
"""A pharmacy till's whole flow against vitaled, in Python with the standard
library only (socket and json): the companion of docs/till-integration.md,
which explains every step, call, event and error used here.

    till.py [--socket PATH] [--reader NAME] [--beneficiary N]
            [--act CODE:COEF:CENTS ...] [--insurer REGIME:CAISSE:CENTRE]
            [--request-id ID] [--card-timeout S] [--rights-timeout S]
            [--follow-timeout S] [--until queued|accepted|paid]
            [--reconnect-timeout S] [--lose-answer]

1. connect, GetInfo, GetStatus (is this the terminal, may we control it?)
2. WatchEvents on a second connection (subscribe before looking, so
   nothing that happens after the look is missed)
3. the practitioner: a card PIN a CPS in a reader asks for
   (target "card:<reader>"), and the signer's PIN (target "practitioner")
4. the patient: a carte Vitale, or a phone (its holder types a code on it)
5. the holder and the rights (GetCard, the online rights check)
6. the care sheet (CreateSheet with a request_id; the same request_id again
   after a lost answer)
7. the sheet followed to accepted and paid (events, GetSheet)

PINs are read from standard input, one line each time one is needed (a real
till asks the practitioner on its own screen). They are never printed.

Output: one line per step, prefixed "till: ", and a last line "RESULT "
and a JSON object: {"status": "ok", "id", "seq", "state", "amount" (cents,
null when unknown), "request_id"} or {"error": NAME, ...}. Exit status: 0 the flow reached --until; 1 it
stopped on an error the daemon named (NoCard, PinBlocked, QueueFull ...) or
the insurer rejected or refused the sheet; 2 usage; 3 vitaled unreachable;
4 a time-out (no card, no answer from the insurer in time).
"""
import argparse
import getpass
import json
import os
import socket
import sys
import time

IFACE = "io.vitaled.Terminal"
DEFAULT_SOCKET = "/run/vitaled/vitaled.sock"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT = 0, 1, 2, 3, 4

# What the till shows for each named error that ends the flow
# (docs/till-integration.md, "Errors").
SHOW = {
    "NoCard": "no usable carte Vitale: insert the card (chip first) or tap the phone again",
    "CardOpposed": "this card is on the insurer's opposition list: keep it, make no sheet from it, "
                   "ask for another proof of rights",
    "QueueFull": "the sheet queue is full (or the disk): nothing was stored; upload, then try again",
    "IoError": "the terminal's disk failed: nothing was stored; call support, try again",
    "InvalidSheet": "the sheet breaks a rule: correct the field and try again",
    "PinBlocked": "the PIN is blocked: unblock it with the card's unblock code",
    "NotLoggedIn": "the practitioner's PIN is needed",
    "SignerUnavailable": "the practitioner's card or key cannot sign now: insert it, check the reader",
    "PermissionDenied": "this till's user may not do that: add it to [api] allowed_users or allowed_groups",
    "ShuttingDown": "the terminal is restarting: try again in a moment",
    "InternalError": "the terminal failed: call support",
}


def say(msg):
    print("till: " + msg, flush=True)


class Stop(Exception):
    """The flow ends here: exit status and the RESULT line's text."""

    def __init__(self, code, result):
        Exception.__init__(self, json.dumps(result))
        self.code = code
        self.result = result


class VarlinkError(Exception):
    """vitaled answered with a named error: name without its interface
    ("NoCard" for io.vitaled.Terminal.NoCard, "PermissionDenied" for
    org.varlink.service.PermissionDenied), parameters as a dict."""

    def __init__(self, name, params):
        self.full = name
        self.name = name.rsplit(".", 1)[-1]
        self.params = params or {}
        Exception.__init__(self, "%s %s" % (self.name, json.dumps(self.params)))


class Lost(Exception):
    """The connection failed on the way (closed, reset, timed out): the call's
    fate is unknown."""


# --------------------------------------------------------------- varlink


class Connection:
    """One varlink connection: a JSON object and a NUL byte each way, one call
    at a time. timeout bounds every wait for a reply."""

    def __init__(self, path, timeout):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send(self, method, params=None, more=False):
        msg = {"method": method, "parameters": params or {}}
        if more:
            msg["more"] = True
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\0")
        except OSError as e:
            raise Lost("%s: %s" % (method, e))

    def recv(self, timeout=None):
        """The next message as a dict; socket.timeout when none came within
        timeout; Lost when vitaled closed the connection."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\0" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise
            except OSError as e:
                raise Lost(str(e))
            if not chunk:
                raise Lost("connection closed by vitaled")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None):
        """The reply's parameters, or VarlinkError; Lost when the answer did
        not come (closed, timed out)."""
        self.send(method, params)
        try:
            reply = self.recv()
        except socket.timeout:
            raise Lost("%s: no answer in time" % method)
        if "error" in reply:
            raise VarlinkError(reply["error"], reply.get("parameters"))
        return reply.get("parameters", {})

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------ the till


class Till:
    def __init__(self, args):
        self.a = args
        self.path = args.socket or os.environ.get("VITALED_SOCKET") or DEFAULT_SOCKET
        self.conn = None      # calls
        self.watch = None     # the event stream
        self.reader = None    # the patient's card's reader
        self.sheet = None     # CreateSheet's answer
        self.request_id = args.request_id or "till-%d-%d" % (os.getpid(), int(time.time() * 1000))

    # -- connections --------------------------------------------------------

    def connect(self, wait=0.0):
        """(Re)connect the call connection, trying for up to wait seconds
        (the daemon restarting)."""
        end = time.monotonic() + wait
        while True:
            try:
                self.conn = Connection(self.path, self.a.call_timeout)
                return
            except PermissionError:
                raise Stop(EXIT_UNREACHABLE, {"error": "PermissionDenied", "socket": self.path})
            except OSError as e:
                if time.monotonic() >= end:
                    say("cannot reach vitaled at %s: %s" % (self.path, e.strerror or e))
                    raise Stop(EXIT_UNREACHABLE, {"error": "Unreachable", "socket": self.path})
                time.sleep(0.5)

    def call(self, method, params=None, retry=True):
        """One call; on a lost connection reconnect and call again (only for
        calls that are safe to repeat: reads, and CreateSheet with its
        request_id; never SubmitPin)."""
        method = IFACE + "." + method if "." not in method else method
        end = time.monotonic() + self.a.reconnect_timeout
        while True:
            if self.conn is None:
                self.connect(max(end - time.monotonic(), 0))
            try:
                return self.conn.call(method, params)
            except (Lost, VarlinkError) as e:
                # ShuttingDown: the daemon stops (a restart, an upgrade) and
                # takes no new work; it will answer again once restarted
                if isinstance(e, VarlinkError) and e.name != "ShuttingDown":
                    raise
                self.conn.close()
                self.conn = None
                if not retry or time.monotonic() >= end:
                    raise
                say("connection lost (%s): reconnecting" % e)
                time.sleep(0.5)

    def subscribe(self):
        """WatchEvents with "more": the first reply is the Watching event."""
        end = time.monotonic() + self.a.reconnect_timeout
        while True:
            try:
                w = Connection(self.path, self.a.call_timeout)
                w.send(IFACE + ".WatchEvents", {}, more=True)
                first = w.recv()
                if "error" in first:
                    raise VarlinkError(first["error"], first.get("parameters"))
                self.watch = w
                say("watching events (from seq %d)" % first["parameters"]["event"]["seq"])
                return
            except (OSError, Lost) as e:
                if time.monotonic() >= end:
                    say("cannot watch events: %s" % e)
                    raise Stop(EXIT_UNREACHABLE, {"error": "Unreachable", "socket": self.path})
                time.sleep(0.5)

    def next_event(self, timeout):
        """The next event, or None when none came within timeout. A lost
        stream (the daemon restarted) is subscribed again; the caller then
        looks at the state again, since events in between are gone."""
        try:
            m = self.watch.recv(max(timeout, 0.01))
        except socket.timeout:
            return None
        except Lost as e:
            m = {"error": "Lost: %s" % e}
        if "error" not in m:
            return m["parameters"]["event"]
        # the stream ended: closed, or an error such as ShuttingDown (the
        # daemon stopping); a restarted daemon numbers its events afresh
        say("event stream lost (%s): subscribing again" % m["error"])
        self.watch.close()
        self.subscribe()
        return {"type": "Resubscribed"}

    # -- 1. who are we talking to --------------------------------------------

    def hello(self):
        self.connect()
        info = self.call("org.varlink.service.GetInfo")
        if IFACE not in info.get("interfaces", []):
            raise Stop(EXIT_ERROR, {"error": "NotVitaled", "interfaces": info.get("interfaces")})
        st = self.call("GetStatus")
        say("connected to %s %s at %s: mode %s, terminal %s, access %s" % (
            info.get("product"), info.get("version"), self.path, st["mode"], st["terminal_id"], st["access"]))
        if st["access"] != "control":
            # GetStatus is open to anyone who can open the socket; reading
            # cards, PINs and sheets need [api] allowed_users/allowed_groups
            say("this user may only read status: add it to [api] allowed_users or a group in allowed_groups")
            raise Stop(EXIT_ERROR, {"error": "PermissionDenied", "access": st["access"]})
        sg = st.get("signer") or {}
        say("signer: %s, %s; queue: %d waiting; uploader: %s" % (
            sg.get("backend"), sg.get("state"), st["queue"]["queued"], st["uploader"]["state"]))
        return st

    # -- 3. PINs ---------------------------------------------------------------

    def read_pin(self, target):
        """One line of standard input (without echo on a terminal)."""
        prompt = "PIN for %s: " % target
        if sys.stdin.isatty():
            return getpass.getpass(prompt)
        sys.stderr.write(prompt + "\n")
        line = sys.stdin.readline()
        if not line:
            raise Stop(EXIT_ERROR, {"error": "NoPin", "target": target})
        return line.strip()

    def pin(self, target, tries_left=None):
        """SubmitPin for target until it is accepted. PinIncorrect: say the
        tries left and ask again; PinBlocked: stop."""
        while True:
            say("PIN needed for %s%s" % (target, "" if tries_left is None else " (%d tries left)" % tries_left))
            p = self.read_pin(target)
            try:
                # not repeated after a lost answer: a PIN sent twice may cost two tries
                r = self.call("SubmitPin", {"target": target, "pin": p}, retry=False)
            except VarlinkError as e:
                if e.name == "PinIncorrect":
                    tries_left = e.params.get("tries_left")
                    say("PinIncorrect: wrong PIN for %s, %s tries left" % (
                        target, "unknown" if tries_left is None else tries_left))
                    continue
                if e.name == "PinBlocked":
                    say("PinBlocked: the PIN of %s is blocked; unblock it with its code (vitalectl unblock) "
                        "or the card's own tools" % target)
                    raise Stop(EXIT_ERROR, {"error": "PinBlocked", "target": target})
                if e.name == "PinMalformed":
                    say("PinMalformed: %d to %d digits; nothing was sent" % (e.params["min_len"], e.params["max_len"]))
                    continue
                if e.name == "RateLimited":
                    say("RateLimited: wait %d s" % e.params["retry_after_s"])
                    time.sleep(e.params["retry_after_s"])
                    continue
                if e.name == "PinNotExpected":
                    say("no PIN wanted for %s any more (%s)" % (target, e.params.get("reason")))
                    return
                if e.name == "NoCard":
                    say("the card of %s left its reader" % target)
                    return
                raise
            finally:
                p = None  # Python cannot wipe a str; drop our reference at least
            say("%s: PIN accepted" % target)
            return r

    def practitioner(self):
        """Card PIN steps waiting (a CPS in a reader) and the signer's login."""
        st = self.call("GetStatus")
        for cp in st.get("card_pins") or []:
            if cp["state"] == "required":
                self.pin(cp["target"], cp.get("tries_left"))
            elif cp["state"] == "blocked":
                say("PinBlocked: %s is blocked" % cp["target"])
                raise Stop(EXIT_ERROR, {"error": "PinBlocked", "target": cp["target"]})
        sg = st.get("signer") or {}
        state = sg.get("state")
        if state == "locked":
            self.pin("practitioner")
        elif state == "blocked":
            raise Stop(EXIT_ERROR, {"error": "PinBlocked", "target": "practitioner"})
        elif state in ("disabled", "no-token", "error"):
            # a sheet cannot be signed: say so now rather than at CreateSheet
            say("the signer cannot sign (%s): insert the practitioner's card or check [signer]" % state)
        else:
            say("practitioner: signer %s" % state)

    # -- 4. the patient's card or phone ----------------------------------------

    def patient_card_in(self, reader):
        """GetCard(reader) if it holds a readable patient card or phone, else None."""
        try:
            c = self.call("GetCard", {"reader": reader})["card"]
        except VarlinkError as e:
            if e.name == "NoCard":
                return None
            raise
        if c["kind"] in ("patient", "digital") and c["readable"]:
            return c
        return None

    def wait_card(self):
        # what is in the readers now (the events only tell what happens next)
        readers = [self.a.reader] if self.a.reader else \
            [r["name"] for r in self.call("ListReaders")["readers"] if r["state"] == "ready"]
        for name in readers:
            c = self.patient_card_in(name)
            if c:
                self.reader = name
                say("card already in %s (%s)" % (name, c["profile"]))
                return c
        say("waiting for a carte Vitale or a phone%s (%d s)" % (
            " in " + self.a.reader if self.a.reader else "", self.a.card_timeout))
        end = time.monotonic() + self.a.card_timeout
        while time.monotonic() < end:
            e = self.next_event(end - time.monotonic())
            if e is None:
                break
            t, r = e["type"], e.get("reader")
            if self.a.reader and r and r != self.a.reader and t != "PinRequested":
                continue
            if t == "CardInserted":
                say("card inserted in %s (%s): reading" % (r, e.get("profile")))
            elif t == "CodeEntryRequested":
                say("CodeEntryRequested: enter your code on your phone (%s s)" % e.get("timeout_s"))
            elif t == "CardError":
                say("CardError in %s: %s%s: ask the patient to present the card again" % (
                    r, e.get("reason"), " (%s)" % e["detail"] if e.get("detail") else ""))
            elif t == "CardRead":
                s = e.get("summary") or {}
                if s.get("kind") in ("patient", "digital"):
                    c = self.patient_card_in(r)
                    if c:
                        self.reader = r
                        say("card read in %s (%s, %s)" % (r, c["profile"], c.get("presentation")))
                        return c
                    say("the card in %s cannot be read: %s" % (r, s.get("error")))
            elif t == "PinRequested":
                # a CPS inserted meanwhile, or the signer's idle logout
                self.pin(e["target"], e.get("tries_left"))
            elif t == "DriverDown":
                say("reader driver %s down: %s" % (e.get("driver"), e.get("reason")))
            elif t == "Resubscribed":
                return self.wait_card()
        # nobody came: GetCard itself says NoCard, the error a till shows
        try:
            self.call("GetCard", {"reader": self.a.reader} if self.a.reader else {})
        except VarlinkError as e:
            if e.name == "NoCard":
                say("NoCard: no carte Vitale read: insert the card (chip first) or tap the phone")
                raise Stop(EXIT_ERROR, {"error": "NoCard"})
            raise
        raise Stop(EXIT_TIMEOUT, {"error": "Timeout", "waiting": "card"})

    # -- 5. the holder and the rights --------------------------------------------

    def holder_and_rights(self, card):
        b = card["beneficiaries"]
        if self.a.beneficiary >= len(b):
            raise Stop(EXIT_ERROR, {"error": "NoSuchBeneficiary", "count": len(b)})
        p = b[self.a.beneficiary]
        # never show or log the full NIR: sex and birth year are enough to check
        say("holder: %s %s, NIR %s, born %s (%d on the card)" % (
            p["surname"], p["given_name"], (p.get("nir") or "")[:3] + "…",
            (p.get("birth_date") or "?")[:4], len(b)))
        if card.get("opposed"):
            # the card's serial is on the insurers' opposition list (lost,
            # stolen, replaced): CreateSheet would answer CardOpposed
            say("CardOpposed: %s" % SHOW["CardOpposed"])
            raise Stop(EXIT_ERROR, {"error": "CardOpposed", "reader": self.reader})
        if card.get("can_back_sheet") is False:
            say("NoCard: this card cannot back a sheet: %s" % card.get("why"))
            raise Stop(EXIT_ERROR, {"error": "NoCard", "reason": card.get("why")})
        rc = card.get("rights_check")
        if rc and rc["state"] == "pending":
            # the online check runs after the read; CardRights says when it ends
            end = time.monotonic() + self.a.rights_timeout
            while time.monotonic() < end:
                e = self.next_event(end - time.monotonic())
                if e is None or e["type"] == "Resubscribed" or \
                        (e["type"] == "CardRights" and e.get("reader") == self.reader):
                    break
            card = self.call("GetCard", {"reader": self.reader})["card"]
            rc = card.get("rights_check")
        org = card.get("organisation") or {}
        if rc is None:
            say("rights: no online check (no insurer configured, or a phone)")
        elif rc["state"] == "checked":
            rt = card.get("rights") or {}
            amc = rt.get("amc")
            say("rights: checked by the insurer: organisation %s/%s/%s, %s%s" % (
                org.get("regime"), org.get("caisse"), org.get("centre"),
                "covered" if rt.get("covered") else "NOT covered on the care date",
                ", AMC %s%s" % (amc["id"], " tiers payant" if amc.get("tiers_payant") else "") if amc else ""))
        elif rc["state"] == "unknown":
            say("rights: the insurer knows no such beneficiary: ask for an attestation of rights")
        else:
            # offline, timeout, error: go on; the sheet keeps the card's or the till's organisation
            say("rights: not checked (%s: %s): going on with the card's data" % (rc["state"], rc.get("reason")))
        say("organisation from the %s" % org.get("source", "till"))
        return card

    # -- 6. the care sheet ------------------------------------------------------

    def till_part(self):
        acts, total = [], 0
        for a in self.a.act:
            code, coef, cents = a.split(":")
            acts.append({"code": code, "coefficient": int(coef), "amount": int(cents)})
            total += int(cents)
        amo = total * 7 // 10
        regime, caisse, centre = self.a.insurer.split(":")
        return {"insurance": "maladie", "acts": acts, "amc": False, "tiers_payant": False,
                "totals": {"total": total, "amo": amo, "amc": 0, "patient": total - amo},
                "insurer": {"regime": regime, "caisse": caisse, "centre": centre}}

    def create_sheet(self):
        params = {"sheet": self.till_part(), "reader": self.reader,
                  "beneficiary": self.a.beneficiary, "request_id": self.request_id}
        say("CreateSheet request_id=%s" % self.request_id)
        end = time.monotonic() + self.a.reconnect_timeout
        if self.a.lose_answer:
            # a demonstration of a lost answer: the call goes out, the connection
            # drops before its answer is read (a crash of the till, a cable ...)
            self.conn.send(IFACE + ".CreateSheet", params)
            self.conn.close()
            self.conn = None
            say("connection dropped before the answer: calling again with the same request_id")
        while True:
            try:
                s = self.call("CreateSheet", params)
                break
            except VarlinkError as e:
                if e.name == "NotLoggedIn":
                    self.pin(e.params["target"])
                    continue
                if e.name in ("SignerUnavailable", "ShuttingDown") and time.monotonic() < end:
                    say("%s: trying again" % e.name)   # the signer opening, the daemon restarting
                    time.sleep(0.5)
                    if e.name == "ShuttingDown":
                        self.conn.close()
                        self.conn = None
                    continue
                if e.name == "RateLimited":
                    time.sleep(e.params["retry_after_s"])
                    continue
                raise
            except Lost as e:
                # the answer is lost twice in a row: the same request_id is still safe
                if time.monotonic() >= end:
                    raise Stop(EXIT_UNREACHABLE, {"error": "Unreachable", "request_id": self.request_id})
                say("answer lost (%s): again with the same request_id" % e)
                time.sleep(0.5)
        self.sheet = s
        say("sheet created: id=%s seq=%s state=%s care_date=%s due_date=%s mode=%s" % (
            s["id"], s["seq"], s["state"], s["care_date"], s["due_date"], s["mode"]))
        return s

    # -- 7. accepted, paid ----------------------------------------------------

    def follow(self):
        sid, want = self.sheet["id"], self.a.until
        order = {"queued": 0, "sending": 0, "accepted": 1, "paid": 2}
        end = time.monotonic() + self.a.follow_timeout
        state, amount = self.sheet["state"], None
        next_look = 0.0
        while True:
            if state in ("rejected", "refused"):
                g = self.call("GetSheet", {"id": sid})
                say("Sheet%s: code %s: %s" % (state.capitalize(), g["meta"].get("code"), g.get("reason")))
                raise Stop(EXIT_ERROR, {"error": "Sheet" + state.capitalize(), "id": sid,
                                       "code": g["meta"].get("code")})
            if order.get(state, -1) >= order[want]:
                return state, amount
            now = time.monotonic()
            if now >= end:
                say("no answer from the insurer within %d s: the sheet stays queued, nothing is lost"
                    % self.a.follow_timeout)
                raise Stop(EXIT_TIMEOUT, {"error": "Timeout", "id": sid, "state": state})
            if now >= next_look:
                # events say it first; GetSheet is the truth after a lost stream
                state = self.call("GetSheet", {"id": sid})["meta"]["state"]
                next_look = now + self.a.poll_interval
                continue
            e = self.next_event(min(end, next_look) - now)
            if e is None:
                continue
            if e["type"] == "Resubscribed":
                next_look = 0.0
            elif e.get("id") == sid:
                if e["type"] == "SheetAccepted":
                    say("SheetAccepted: the insurer holds the sheet%s" % (" (again)" if e.get("duplicate") else ""))
                    state = "accepted" if state != "paid" else state
                elif e["type"] == "SheetPaid":
                    amount = e.get("amount")
                    say("SheetPaid: %.2f EUR on %s" % (amount / 100, e.get("date")))
                    state = "paid"
                elif e["type"] in ("SheetRejected", "SheetRefused"):
                    state = "rejected" if e["type"] == "SheetRejected" else "refused"

    def run(self):
        self.hello()
        self.subscribe()
        self.practitioner()
        card = self.wait_card()
        self.holder_and_rights(card)
        self.create_sheet()
        state, amount = self.follow()
        # amount: null when paid while we were not watching (GetSheet has no amount)
        return state, amount


def main():
    ap = argparse.ArgumentParser(description="A pharmacy till's flow against vitaled (an example).")
    ap.add_argument("--socket", help="vitaled's socket (default $VITALED_SOCKET or %s)" % DEFAULT_SOCKET)
    ap.add_argument("--reader", help="the patient's reader (default: any)")
    ap.add_argument("--beneficiary", type=int, default=0, help="index on the card (0: the holder)")
    ap.add_argument("--act", action="append", help="CODE:COEFFICIENT:CENTS (default C:1:2650)")
    ap.add_argument("--insurer", default="01:751:0012", help="the till's REGIME:CAISSE:CENTRE")
    ap.add_argument("--request-id", help="the till's reference for the sheet (default: made up)")
    ap.add_argument("--card-timeout", type=float, default=60)
    ap.add_argument("--rights-timeout", type=float, default=5)
    ap.add_argument("--follow-timeout", type=float, default=120)
    ap.add_argument("--poll-interval", type=float, default=5)
    ap.add_argument("--call-timeout", type=float, default=30)
    ap.add_argument("--reconnect-timeout", type=float, default=30)
    ap.add_argument("--until", choices=("queued", "accepted", "paid"), default="paid")
    ap.add_argument("--lose-answer", action="store_true", help="drop the first CreateSheet answer (a demonstration)")
    try:
        args = ap.parse_args()
    except SystemExit as e:
        return EXIT_USAGE if e.code else EXIT_OK
    args.act = args.act or ["C:1:2650"]
    for a in args.act:
        parts = a.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            print("till.py: --act %s: expected CODE:COEFFICIENT:CENTS" % a, file=sys.stderr)
            return EXIT_USAGE
    if len(args.insurer.split(":")) != 3:
        print("till.py: --insurer: expected REGIME:CAISSE:CENTRE", file=sys.stderr)
        return EXIT_USAGE
    till = Till(args)
    try:
        state, amount = till.run()
        s = till.sheet
        print("RESULT " + json.dumps({"status": "ok", "id": s["id"], "seq": s["seq"], "state": state,
                                      "amount": amount, "request_id": till.request_id}), flush=True)
        return EXIT_OK
    except Stop as e:
        print("RESULT " + json.dumps(e.result), flush=True)
        return e.code
    except VarlinkError as e:
        # every other named error: what it is, what to do, its parameters
        say("%s: %s %s" % (e.name, SHOW.get(e.name, "refused"), json.dumps(e.params)))
        for x in e.params.get("errors") or []:      # InvalidSheet: every problem
            say("  %s: %s" % (x["field"], x["reason"]))
        print("RESULT " + json.dumps({"error": e.name, "parameters": e.params}), flush=True)
        return EXIT_ERROR
    except Lost as e:
        say("the call failed on the way: %s" % e)
        print("RESULT " + json.dumps({"error": "Lost"}), flush=True)
        return EXIT_TIMEOUT


if __name__ == "__main__":
    sys.exit(main())
