#!/usr/bin/python3
"""PC/SC readers, card sessions and the event stream, end to end.

A private pcscd with two vpcd readers and Python virtual cards (tests/world),
vitaled started on a temporary socket and state dir, driven over its varlink
API and vitalectl:

  1. vitaled starts before pcscd: DriverDown, then DriverUp + ReaderAdded for
     both readers once pcscd comes.
  2. insert/remove: CardInserted (right ATR, profile) -> CardRead ->
     CardRemoved, in order; ListReaders, GetCard, vitalectl readers/card/watch.
  3. a quick card swap is seen as CardRemoved then CardInserted (new ATR).
  4. the silent card: CardError within the session deadline while GetStatus
     keeps answering; after it is pulled the reader reads the next card.
  5. N insert/remove cycles (READERS_CYCLES, default 100): fd count and RSS
     of vitaled stable.
  6. kill -9 pcscd while idle, and while a session is blocked: DriverDown,
     readers removed; pcscd restarted: DriverUp, readers back, next card read.
  7. SIGTERM while a session runs: exit 0 within 2 s.

Environment: B (build dir, default ./build); PCSCWORLD_DIR (default
tests/world beside this directory); READERS_CYCLES; KEEP=1 keeps the temp dir.
Exit 0 pass, 77 skip (no pcscd/vpcd), 1 fail. Every process is stopped by
PID on every exit path.
"""

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
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import B, Varlink, Watch  # noqa: E402,F401 - Watch: for the suites that import it from here

WORLD = os.environ.get("PCSCWORLD_DIR", os.path.join(ROOT, "tests", "world"))
CYCLES = int(os.environ.get("READERS_CYCLES", "100"))
TIMEOUT_MS = 3000          # [pcsc] session_timeout_ms for this test
VITALE2_ATR = "3B7513000047" + "09EA9000"
UNKNOWN_ATR = "3B8F8001804F0CA000000306030001000000006A"
R0, R1 = "Virtual PCD 00 00", "Virtual PCD 00 01"
WRAPPED = os.environ.get("TEST_WRAPPER", "")
STOP_S = 2.0 if not WRAPPED else 10.0   # valgrind's own exit takes seconds
READERS_CONF = ("[daemon]\nlog_level = debug\n"
                "[pcsc]\nsession_timeout_ms = %d\nbackoff_max_ms = 400\n" % TIMEOUT_MS)


def skip(why):
    print("SKIP: %s" % why)
    sys.exit(77)


for need in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"):
    if not os.path.exists(need):
        skip("%s is not installed" % need)
if not os.path.exists(os.path.join(WORLD, "world.py")):
    skip("no PC/SC test world in %s" % WORLD)
for b in ("vitaled", "vitalectl"):
    if not os.access(os.path.join(B, b), os.X_OK):
        print("FAIL: %s/%s is not built" % (B, b))
        sys.exit(1)

sys.path.insert(0, WORLD)
from world import PcscWorld  # noqa: E402
from cardhost import CardHost  # noqa: E402
import cards  # noqa: E402

Fail = harness.Failure


def check(cond, what):
    """harness.check, and an "ok - what" line when it holds."""
    harness.check(cond, what)
    print("ok - %s" % what)


def readers_daemon(tmp, env):
    """vitaled in tmp with this test's configuration (debug log, a 3 s
    session deadline, a 400 ms cap on the pcscd reconnection backoff)."""
    return harness.Daemon(conf=READERS_CONF, tmp=tmp, env=env, timeout=10.0)


CARD_NOISE = ("CardInserted", "CardRead", "CardRemoved", "CardError")


def reader_state(d, name):
    for r in d.call("io.vitaled.Terminal.ListReaders")["parameters"]["readers"]:
        if r["name"] == name:
            return r
    return None


def wait_state(d, name, state, timeout=5.0):
    end = time.monotonic() + timeout
    r = None
    while time.monotonic() < end:
        r = reader_state(d, name)
        if r and r["state"] == state:
            return r
        time.sleep(0.02)
    raise Fail("reader %s not %s within %.1f s (%r)" % (name, state, timeout, r))


def iso(d8):
    return "%s-%s-%s" % (d8[:4], d8[4:6], d8[6:8])


def nir_key(n13):
    """The NIR key, computed here independently: 97 - (n mod 97), 2A -> 19, 2B -> 18."""
    n = n13.upper().replace("2A", "19").replace("2B", "18")
    return "%02d" % (97 - int(n) % 97)


def expected_vitale2():
    return [{"surname": b["surname"], "given_name": b["given_name"], "birth_date": iso(b["birth_date"]),
             "nir": b["nir"] + nir_key(b["nir"]), "nationality": b["nationality"], "nir_valid": True}
            for b in cards.DEFAULT_HOLDERS["beneficiaries"]]


def insert_and_read(w, h, reader, card="vitale2", atr=VITALE2_ATR):
    h.insert(card)
    e = w.expect("CardInserted", reader=reader)
    if e["atr"] != atr:
        raise Fail("CardInserted ATR %s, want %s" % (e["atr"], atr))
    return w.expect("CardRead", reader=reader)


def remove_card(w, h, reader):
    h.remove()
    return w.expect("CardRemoved", reader=reader)


# ------------------------------------------------------------------ tests


def main():
    tmp = tempfile.mkdtemp(prefix="test_readers.")
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    env = dict(os.environ, PCSCLITE_CSOCK_NAME=world.socket)
    d = readers_daemon(tmp, env)
    hosts = []
    watches = []
    ok = False
    try:
        # 1. vitaled first, pcscd later
        d.start()
        st = d.call("io.vitaled.Terminal.GetStatus")["parameters"]
        end = time.monotonic() + 5
        while time.monotonic() < end:
            drv = {x["name"]: x for x in d.call("io.vitaled.Terminal.GetStatus")
                   ["parameters"].get("drivers", [])}
            if drv.get("pcsc", {}).get("state") == "down":
                break
            time.sleep(0.05)
        check(drv.get("pcsc", {}).get("state") == "down" and drv["pcsc"].get("reason"),
              "no pcscd: GetStatus says pcsc down (%s)" % drv.get("pcsc", {}).get("reason"))
        out = d.ctl("status")
        check(out.returncode == 0 and "pcsc:" in out.stdout and "down" in out.stdout,
              "vitalectl status shows 'pcsc: down (...)'")
        w = Watch(d.sock)
        watches.append(w)
        world.start()
        w.expect("DriverUp", timeout=10, driver="pcsc")
        names = {w.expect("ReaderAdded")["reader"] for _ in range(2)}
        check(names == {R0, R1}, "DriverUp then ReaderAdded for both virtual readers")
        rl = d.call("io.vitaled.Terminal.ListReaders")["parameters"]["readers"]
        check([r["name"] for r in rl] == [R0, R1] and all(r["state"] == "absent" for r in rl),
              "ListReaders: both readers, absent")
        h0 = CardHost(world.port, log=os.path.join(tmp, "cardhost0.log"))
        h1 = CardHost(world.port + 1, log=os.path.join(tmp, "cardhost1.log"))
        hosts += [h0, h1]

        # 2. insert, read, remove; both readers
        t0 = time.monotonic()
        h0.insert("vitale2", wait=0)
        e = w.expect("CardInserted", reader=R0)
        check(e["atr"] == VITALE2_ATR and e["profile"] == "vitale2" and e["driver"] == "pcsc",
              "CardInserted with the Vitale 2 ATR %s, profile vitale2 (%.2f s)" % (e["atr"], time.monotonic() - t0))
        e = w.expect("CardRead", reader=R0)
        s = e["summary"]
        want = expected_vitale2()
        check(e["profile"] == "vitale2" and s["readable"] is True and s["atr"] == VITALE2_ATR
              and len(s["beneficiaries"]) == len(want)
              and all(b["nir_masked"] == w_["nir"][:3] + "*" * 12 for b, w_ in zip(s["beneficiaries"], want))
              and not any(w_["nir"] in json.dumps(e) for w_ in want),
              "CardRead: vitale2 read, %d beneficiaries, NIRs masked in the event" % len(s["beneficiaries"]))
        r = wait_state(d, R0, "ready")
        check(r["card"] == "vitale2" and r["atr"] == VITALE2_ATR, "ListReaders: ready, vitale2, ATR")
        c = d.call("io.vitaled.Terminal.GetCard", {"reader": R0})["parameters"]["card"]
        got = [{k: b.get(k) for k in ("surname", "given_name", "birth_date", "nir", "nationality", "nir_valid")}
               for b in c["beneficiaries"]]
        check(c["atr"] == VITALE2_ATR and c["reader"] == R0 and c["readable"] is True
              and c["presentation"] == "physical" and got == want,
              "GetCard: every field of every beneficiary as the card holds it")
        card_want = cards.DEFAULT_HOLDERS["card"]
        f = c["fields"]
        check(f.get("start_date") == iso(card_want["start"]) and f.get("serial") == card_want["serial"]
              and f.get("certificate") == "present",
              "GetCard: card start of validity, serial, certificate (%s)" % f)
        check(c["apdus"] == 21, "a Vitale 2 read takes the 21 APDUs its profile needs (got %s)" % c["apdus"])
        out = d.ctl("card", "--json")
        cj = json.loads(out.stdout) if out.returncode == 0 else {}
        check(cj.get("profile") == "vitale2" and cj.get("atr") == VITALE2_ATR
              and [{k: b.get(k) for k in ("surname", "given_name", "birth_date", "nir")} for b in cj.get("beneficiaries", [])]
              == [{k: b[k] for k in ("surname", "given_name", "birth_date", "nir")} for b in want],
              "vitalectl card --json: profile, atr, beneficiaries with surname, given_name, birth_date, nir")
        out = d.ctl("readers")
        check(out.returncode == 0 and R0 in out.stdout and "ready" in out.stdout,
              "vitalectl readers")
        out = d.ctl("readers", "--json")
        check(out.returncode == 0 and len(json.loads(out.stdout)["readers"]) == 2,
              "vitalectl readers --json")
        insert_and_read(w, h1, R1, "unknown", UNKNOWN_ATR)
        check(wait_state(d, R1, "ready")["atr"] == UNKNOWN_ATR, "second reader reads its own card")
        e = remove_card(w, h0, R0)
        check(wait_state(d, R0, "absent")["card"] is None, "CardRemoved; reader absent")
        r = d.call("io.vitaled.Terminal.GetCard", {"reader": R0})
        check(r.get("error") == "io.vitaled.Terminal.NoCard", "GetCard on an empty reader: NoCard")
        remove_card(w, h1, R1)
        out = d.ctl("card")
        check(out.returncode == 1 and "NoCard" in out.stderr, "vitalectl card: exit 1, NoCard")

        # vitalectl watch --json sees the same stream
        wp = subprocess.Popen([harness.VITALECTL, "--socket", d.sock, "watch",
                               "--json"], stdout=subprocess.PIPE, text=True)
        try:
            first = json.loads(wp.stdout.readline())
            check(first["type"] == "Watching", "vitalectl watch --json: first line Watching")
            insert_and_read(w, h0, R0)
            remove_card(w, h0, R0)
            types = [json.loads(wp.stdout.readline())["type"] for _ in range(3)]
            check(types == ["CardInserted", "CardRead", "CardRemoved"],
                  "vitalectl watch --json: %s" % types)
        finally:
            wp.send_signal(signal.SIGINT)
            rc = wp.wait(5)
        check(rc == 0, "vitalectl watch exits 0 on SIGINT")

        # a watcher that never reads does not hold the others up
        lazy = Varlink(d.sock, 10.0)
        lazy.send("io.vitaled.Terminal.WatchEvents", {}, more=True)
        watches.append(lazy)

        # 3. quick swap: pulled and another card in at once
        insert_and_read(w, h0, R0)
        h0.remove()
        h0.insert("unknown")
        w.expect("CardRemoved", reader=R0, ignore=())
        e = w.expect("CardInserted", reader=R0)
        check(e["atr"] == UNKNOWN_ATR, "quick swap: CardRemoved then CardInserted with the new ATR")
        w.expect("CardRead", reader=R0)
        remove_card(w, h0, R0)

        # 4. the silent card
        h0.insert("silent")
        w.expect("CardInserted", reader=R0)
        t_in = time.monotonic()
        worst = 0.0
        while time.monotonic() - t_in < 0.8:
            t = time.monotonic()
            d.call("io.vitaled.Terminal.GetStatus")
            worst = max(worst, time.monotonic() - t)
            time.sleep(0.05)
        check(reader_state(d, R0)["state"] in ("identifying", "reading"),
              "silent card: session blocked in the card")
        check(worst < 0.5, "GetStatus answers while the session is blocked (worst %.0f ms)"
              % (worst * 1000))
        t = time.monotonic()
        insert_and_read(w, h1, R1)
        check(time.monotonic() - t < 2.0, "the other reader reads a card meanwhile (%.2f s)"
              % (time.monotonic() - t))
        e = w.expect("CardError", reader=R0, timeout=TIMEOUT_MS / 1000 + 3, ignore=CARD_NOISE)
        took = time.monotonic() - t_in
        check(TIMEOUT_MS / 1000 - 0.5 < took < TIMEOUT_MS / 1000 + 1.5,
              "silent card: CardError after %.2f s (deadline %d ms): %s"
              % (took, TIMEOUT_MS, e["reason"]))
        r = reader_state(d, R0)
        check(r["state"] == "error" and r["reason"], "reader in error: %s" % r["reason"])
        remove_card(w, h1, R1)
        th = d.threads()
        remove_card(w, h0, R0)
        wait_state(d, R0, "absent")
        insert_and_read(w, h0, R0)
        check(True, "after the silent card was pulled, the reader reads the next card")
        remove_card(w, h0, R0)
        check(d.threads() <= th, "no session thread left behind (%d threads)" % d.threads())

        # 5. cycles: no leak
        for _ in range(5):
            insert_and_read(w, h0, R0)
            remove_card(w, h0, R0)
        fd0, rss0 = d.fd_count(), d.rss_kb()
        t = time.monotonic()
        for i in range(CYCLES):
            insert_and_read(w, h0, R0, *(("unknown", UNKNOWN_ATR) if i % 2 else ()))
            remove_card(w, h0, R0)
        fd1, rss1 = d.fd_count(), d.rss_kb()
        per = (time.monotonic() - t) / max(CYCLES, 1)
        check(fd1 == fd0, "%d insert/read/remove cycles (%.2f s each): fds %d -> %d"
              % (CYCLES, per, fd0, fd1))
        if WRAPPED:
            print("# RSS %d -> %d KiB (not checked under %s)" % (rss0, rss1, WRAPPED))
        else:
            check(rss1 - rss0 < 1024, "RSS %d -> %d KiB (within 1 MiB)" % (rss0, rss1))
        print("# readers: cycle %.3f s, fds %d, rss %d KiB" % (per, fd1, rss1))

        # removal latency (pcscd polls vpcd every 0.4 s)
        lat = []
        for _ in range(5):
            insert_and_read(w, h0, R0)
            t = time.monotonic()
            remove_card(w, h0, R0)
            lat.append(time.monotonic() - t)
        print("# readers: card pulled -> CardRemoved %.0f..%.0f ms"
              % (min(lat) * 1000, max(lat) * 1000))

        # 6a. kill -9 pcscd while idle
        t = time.monotonic()
        world.kill()
        e = w.expect("DriverDown", timeout=5, ignore=("ReaderRemoved",))
        print("# readers: kill -9 pcscd -> DriverDown %.0f ms" % ((time.monotonic() - t) * 1000))
        check(e["driver"] == "pcsc" and e["reason"], "kill -9 pcscd (idle): DriverDown: %s"
              % e["reason"])
        check(reader_state(d, R0) is None and reader_state(d, R1) is None,
              "readers gone while pcscd is down")
        st = d.call("io.vitaled.Terminal.GetStatus")["parameters"]
        check([x["state"] for x in st["drivers"] if x["name"] == "pcsc"] == ["down"],
              "GetStatus: pcsc down")
        time.sleep(1.0)
        t = time.monotonic()
        world.restart()
        t_ready = time.monotonic()
        w.expect("DriverUp", timeout=10)
        print("# readers: pcscd restart -> DriverUp %.0f ms after pcscd was ready "
              "(backoff cap 400 ms)" % ((time.monotonic() - t_ready) * 1000))
        names = {w.expect("ReaderAdded")["reader"] for _ in range(2)}
        check(names == {R0, R1}, "pcscd restarted: DriverUp, both readers back")
        insert_and_read(w, h0, R0)
        remove_card(w, h0, R0)
        check(True, "the next card is read after the restart")

        # 6b. kill -9 pcscd while a session is blocked in the silent card
        h0.insert("silent")
        w.expect("CardInserted", reader=R0)
        wait_state(d, R0, "identifying")
        time.sleep(0.3)
        world.kill()
        e = w.expect("DriverDown", timeout=5, ignore=CARD_NOISE + ("ReaderRemoved",))
        check(True, "kill -9 pcscd during a session: DriverDown (%s)" % e["reason"])
        h0.remove()
        world.restart()
        w.expect("DriverUp", timeout=10, ignore=CARD_NOISE)
        names = {w.expect("ReaderAdded", ignore=CARD_NOISE)["reader"] for _ in range(2)}
        check(names == {R0, R1}, "restarted: readers back")
        insert_and_read(w, h0, R0)
        remove_card(w, h0, R0)
        check(d.threads() <= th, "sessions of the dead pcscd ended (%d threads)" % d.threads())
        check(d.proc.poll() is None, "vitaled still running")
        out = d.ctl("status")
        check(out.returncode == 0 and "pcsc:" not in out.stdout, "vitalectl status: pcsc up again")

        # 7. SIGTERM while a session runs
        h0.insert("silent")
        w.expect("CardInserted", reader=R0)
        wait_state(d, R0, "identifying")
        time.sleep(0.3)
        t = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(STOP_S)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t
        check(rc == 0, "SIGTERM during a blocked session: exit %r in %.2f s (limit %.0f s)"
              % (rc, took, STOP_S))
        ok = True
    except Fail as e:
        print("FAIL: %s" % e)
        print("--- vitaled log (tail)\n%s" % d.tail())
    finally:
        for x in watches:
            try:
                x.close()
            except Exception:
                pass
        d.stop()
        for h in hosts:
            h.close()
        world.cleanup()
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("# kept %s" % tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
