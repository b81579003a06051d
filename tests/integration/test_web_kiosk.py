#!/usr/bin/python3
"""Issue 14: the kiosk screen (GET /kiosk on vitaled-web) in headless
Chromium while the simulated card and phone go through the check-in flows
of a daemon in kiosk mode ([daemon] mode = kiosk).

Each state is screenshotted into $B/test-output/web_kiosk/ (or
$KIOSK_SHOTS) and checked: the French and English texts are on the
screen, and nothing sensitive is: no surname, no NIR (full or masked), no
birth date, no rights. What the bridge sends the page (the kiosk feed) is
read beside it and may only hold state, reason, first_name, reset_s.

  idle      "Insérez votre carte Vitale ou approchez votre téléphone"
  welcome   a Vitale 2: a draft is made; "Bienvenue Marie-Claire" (first
            name only); the screen resets to idle after [web]
            kiosk_reset_s with nothing happening
  code      a phone that takes its time: "Saisissez votre code sur votre
            téléphone", then welcome
  refused   a phone whose code is refused
  expired   a phone whose credential has expired
  not a patient card: refused, "Cette carte n'est pas une carte Vitale"
  opposed   the test insurer puts the Vitale 2's serial on its opposition
            list; once vitaled has synced it, the card read is opposed:
            "Carte bloquée", no draft
  hostile   the kiosk feed refuses a page of another origin, and the page
            is not served under a rebinding name

Exit 0 pass, 77 skip (no chromium, pcscd/vpcd), 1 fail.
"""
import json
import os
import re
import sys
import threading
import time
import http.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "world"))
import sheetlib as sl  # noqa: E402
from sheetlib import harness  # noqa: E402

check = harness.check
R0 = "Virtual PCD 00 00"
RESET_S = 3
G = {"feed": []}
OUT = os.environ.get("KIOSK_SHOTS") or os.path.join(harness.B, "test-output", "web_kiosk")
HAVE_PCSC = all(os.path.exists(p) for p in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"))

# what must never be on the patient's screen (the test cards' data)
SENSITIVE = ["DUPONT", "MARTIN", "Dupont", "Martin", "2800575056123", "280057505612389", "1980", "14/05",
             "05-14", "284122A004123", "1984", "12-03", "AMO", "751", "0042", "0012", "NIR",
             "nir", "2 80 05", "né", "birth"]


def feed_reader(url):
    """Read the kiosk feed as the page does, to check what the bridge sends."""
    host, port = url.split("//")[1].split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=300)
    c.request("GET", "/v1/kiosk/events")
    r = c.getresponse()
    buf = b""
    while True:
        chunk = r.fp.readline()
        if not chunk:
            return
        buf += chunk
        if chunk == b"\n":
            for line in buf.decode().splitlines():
                if line.startswith("data: "):
                    G["feed"].append(json.loads(line[6:]))
            buf = b""


def screen(name, state, fr, en, timeout=20):
    p = G["page"]
    p.wait("document.body.dataset.state === %s" % json.dumps(state), timeout=timeout,
           what="the kiosk screen in state %s (it is %s)" % (state, p.eval("document.body.dataset.state")))
    text = p.eval("document.body.innerText")
    for t in fr + en:
        check(t in text, "%s: %r not on the screen: %r" % (name, t, text))
    check(text.find(fr[0]) < text.find(en[0]), "%s: French comes first" % name)
    for s in SENSITIVE:
        check(s not in text, "%s: %r is on the screen: %r" % (name, s, text))
    path = p.screenshot(os.path.join(OUT, name + ".png"))
    G["shots"].append(path)
    print("  screenshot %s: %s" % (state, path), flush=True)
    return text


def idle(name=None, timeout=20):
    return screen(name or "01-idle", "idle", ["Insérez votre carte Vitale ou approchez votre téléphone"],
                  ["Insert your carte Vitale or tap your phone"], timeout)


def present(card, **args):
    h = G["host"]
    if h.inserted:
        h.remove()
        time.sleep(0.6)
    h.insert(card, **args)


def remove():
    if G["host"].inserted:
        G["host"].remove()


def t_idle():
    G["page"].wait("document.body.dataset.feed === 'on'", what="the kiosk feed")
    idle()


def t_vitale_welcome():
    drafts = len(sl.list_all(G["d"], state="draft"))
    present("vitale2")
    screen("02-welcome", "welcome", ["Bienvenue Marie-Claire", "Votre arrivée est enregistrée"],
           ["Welcome Marie-Claire", "Your check-in is recorded"])
    check(len(sl.list_all(G["d"], state="draft")) == drafts + 1, "the check-in made a draft")
    remove()
    t0 = time.monotonic()
    idle("02b-reset", timeout=RESET_S + 5)
    took = time.monotonic() - t0
    check(took >= RESET_S - 1.5, "the welcome screen stayed %.1f s (reset after %d s)" % (took, RESET_S))
    print("  reset to idle %.1f s after the card left (kiosk_reset_s = %d)" % (took, RESET_S), flush=True)


def t_phone_code():
    present("phone", tmpdir=G["issuer"], pending_s=2.5)
    screen("03-code", "code", ["Saisissez votre code sur votre téléphone"], ["Enter your code on your phone"])
    screen("03b-welcome-phone", "welcome", ["Bienvenue Camille"], ["Welcome Camille"])
    remove()
    idle("03c-reset", timeout=RESET_S + 5)


def t_phone_refused():
    present("phone", tmpdir=G["issuer"], code="refuse")
    screen("04-refused", "refused", ["Carte refusée", "Le code saisi n'a pas été accepté"],
           ["Card refused", "The code was not accepted"])
    remove()
    idle("04b-reset", timeout=RESET_S + 5)


def t_phone_expired():
    present("phone", tmpdir=G["issuer"], expired=True)
    screen("05-expired", "expired", ["Carte expirée", "Mettez-la à jour"], ["Card expired"])
    remove()
    idle("05b-reset", timeout=RESET_S + 5)


def t_not_patient():
    present("cps")
    screen("06-not-patient", "refused", ["Carte refusée", "Cette carte n'est pas une carte Vitale"],
           ["Card refused", "This is not a carte Vitale"])
    remove()


def t_opposed():
    d = G["d"]
    drafts = len(sl.list_all(d, state="draft"))
    G["insurer"].ctl("oppose 25012345678901234567")   # tests/world/cards.py's Vitale 2
    end = time.monotonic() + 30
    while d.result("io.vitaled.Terminal.GetStatus")[1].get("opposition", {}).get("serials") != 1:
        check(time.monotonic() < end, "the opposition list was not synced")
        time.sleep(0.2)
    present("vitale2")
    screen("07-opposed", "opposed", ["Carte bloquée", "mise en opposition", "Adressez-vous"],
           ["Card blocked", "cancelled"])
    check(len(sl.list_all(d, state="draft")) == drafts, "no draft from an opposed card")
    remove()


def t_feed_holds_nothing_else():
    allowed = {"state", "reason", "first_name", "reset_s"}
    check(len(G["feed"]) >= 8, "the feed was read: %r" % G["feed"])
    for m in G["feed"]:
        check(set(m) <= allowed, "the kiosk feed sent more than its state: %r" % m)
        check(" " not in m.get("first_name", ""), "a first name only: %r" % m)
    states = [m["state"] for m in G["feed"]]
    for s in ("idle", "reading", "code", "welcome", "refused", "expired", "opposed"):
        check(s in states, "the feed went through %s: %r" % (s, states))
    blob = json.dumps(G["feed"])
    for s in SENSITIVE[:12]:
        check(s not in blob, "%r in the kiosk feed" % s)


def t_hostile():
    import webworld
    br = G["bridge"]
    before = br.status(G["app"])["refused"]
    st, h, j = br.request("GET", "/v1/kiosk/events", origin="http://127.0.0.1:9")
    check(st == 403 and j["error"] == "io.vitaled.Web.OriginNotAllowed" and "access-control-allow-origin" not in h,
          "the kiosk feed for another origin: %d %r" % (st, j))
    st, h, j = br.request("GET", "/v1/kiosk/events", headers={"Sec-Fetch-Site": "cross-site"})
    check(st == 403, "the kiosk feed for a cross-site request without Origin: %d %r" % (st, j))
    st, h, j = br.request("GET", "/kiosk", host="rebind.test:%d" % br.port)
    check(st == 403 and j["error"] == "io.vitaled.Web.HostNotAllowed", "the kiosk page under a rebinding name: %d" % st)
    # and from a real page of another origin, in the browser
    p = G["browser"].page()
    p.serve("http://app.test:1/", "<!DOCTYPE html><title>other</title>")
    p.navigate("http://app.test:1/")
    r = webworld.probe(p, br.url + "/v1/kiosk/events")
    check(r["status"] == 0, "a page of another origin read the kiosk feed: %r" % r)
    after = br.status(G["app"])["refused"]
    # (Chromium's own Local Network Access check may stop the page's request
    # before it reaches the bridge: then two refusals, both of ours)
    check(after["origin"] - before["origin"] >= 2 and after["host"] - before["host"] >= 1,
          "refusals counted: %r -> %r" % (before, after))


def main():
    import cdp
    import webworld
    import issuer
    sys.path.insert(0, os.path.join(sl.TOP, "tests", "insurer"))
    import insurer
    import mkpki
    from cryptography.hazmat.primitives import serialization
    for b in ("vitaled", "vitalectl", "vitaled-web"):
        if not os.access(os.path.join(harness.B, b), os.X_OK):
            print("FAIL: %s is not built" % b)
            sys.exit(1)
    if not HAVE_PCSC or not cdp.available():
        print("SKIP: pcscd/vpcd or chromium not installed")
        sys.exit(77)
    from world import PcscWorld
    from cardhost import CardHost
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".png"):
            os.unlink(os.path.join(OUT, f))
    G["shots"] = []
    tmp = harness.mktemp("test_web_kiosk-")
    G["issuer"] = os.path.join(tmp, "issuer")
    issuer.init_world(G["issuer"])
    bport = webworld.free_port()
    G["app"] = "http://localhost:1"
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    world.start()
    G["host"] = CardHost(world.port, log=os.path.join(tmp, "cardhost.log"))
    # the test insurer, for its opposition list (synced with the returns)
    pki = os.path.join(tmp, "pki")
    mkpki.init_pki(pki, terminal_id="T0001")
    key, _, pub = sl.make_key(tmp)
    chain = os.path.join(tmp, "chain.pem")
    with open(chain, "wb") as f:
        f.write(mkpki.issue_practitioner(pki, pub).public_bytes(serialization.Encoding.PEM))
    ins = G["insurer"] = insurer.InsurerProcess(pki, os.path.join(tmp, "insurer"))
    ins.__enter__()
    conf = sl.conf(key, mode="kiosk", extra=(
        "[pcsc]\nsession_timeout_ms = 8000\n[digital]\ntrust_anchor = %s\ncode_timeout_s = 20\n"
        "[web]\nport = %d\nallowed_origins = %s\nkiosk_reset_s = %d\n"
        "[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
        "client_key = %s/client.key.pem\nsigner_chain = %s\nupload_interval_s = 3600\n"
        "returns_interval_s = 10\nconnect_timeout_s = 2\n"
        % (os.path.join(G["issuer"], "ca.pem"), bport, G["app"], RESET_S, ins.url, pki, pki, pki, chain))
    ).replace("[daemon]\n", "[daemon]\nterminal_id = T0001\n", 1)
    dd = os.path.join(tmp, "d")
    os.makedirs(dd)
    G["d"] = harness.Daemon(conf=conf, tmp=dd, env=world.env).start()
    G["bridge"] = webworld.Bridge(G["d"], tmp, bport).start()
    threading.Thread(target=feed_reader, args=(G["bridge"].url,), daemon=True).start()
    G["browser"] = cdp.Browser(tmp)
    p = G["page"] = G["browser"].page()
    p.viewport(1280, 800)
    p.navigate(G["bridge"].url + "/kiosk")
    try:
        harness.run_tests([t_idle, t_vitale_welcome, t_phone_code, t_phone_refused, t_phone_expired,
                           t_not_patient, t_opposed, t_feed_holds_nothing_else, t_hostile])
    finally:
        ins.__exit__(None, None, None)
        G["browser"].close()
        G["bridge"].stop()
        G["host"].close()
        world.stop()


if __name__ == "__main__":
    main()
