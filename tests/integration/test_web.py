#!/usr/bin/python3
"""Issue 14: the local web bridge (vitaled-web) in a real headless browser
(Debian's chromium over the DevTools protocol, tests/integration/cdp.py).

  till_flow        examples/js/till.html on an allowed origin pairs (the
                   code it shows is approved with `vitalectl web pair`),
                   waits for a card on the simulated PC/SC reader, reads
                   the holder, makes a sheet and sees it queued
  hostile_origin   a page of another origin, even holding a stolen token:
                   its preflights and simple requests are refused (origin),
                   it reads nothing, and no sheet is made
  rebinding_host   a page under a DNS-rebinding name (rebind.test ->
                   127.0.0.1) reaches the bridge: refused (host)
  missing_token    an allowed page without a token: refused (token_missing)
  revoked_token    a token works, `vitalectl web revoke` ends it
                   (token_invalid); only its SHA-256 was ever stored
  wrong_scope      a read token cannot read the card; a control token
                   cannot pass a PIN (scope); only a pin token reaches
                   SubmitPin; Reload is never forwarded (method)
  other_origin     a token used by another allowed origin (token_origin)
  private_network  the private-network preflight answer, for allowed
                   origins only (HTTP: Chromium 156 no longer sends it)
  socket_activation  started by systemd-socket-activate as the .socket unit
                   would: serves on the handed-over loopback socket (the
                   Host check follows its port) and control socket; a
                   handed-over socket on 0.0.0.0 is refused: it does not start

Each refusal is checked by its own counter on GET /v1/status, so a test
fails when its check is removed. The browser runs with Chromium's Local
Network Access checks off: the bridge must hold on its own, as in a browser
without them. Exit 0 pass, 77 skip (no chromium, pcscd/vpcd), 1 fail.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness  # noqa: E402

check = harness.check
R0 = "Virtual PCD 00 00"
G = {}
HAVE_PCSC = all(os.path.exists(p) for p in ("/usr/sbin/pcscd", "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"))


def refusals(reason):
    return G["bridge"].status(G["app"])["refused"][reason]


def expect_refused(reason, before, n=1):
    after = refusals(reason)
    check(after - before >= n, "refusals for %s: %d -> %d, expected +%d" % (reason, before, after, n))


def control_token():
    """The till page's token (t_till_flow), or one paired here when that test did not run."""
    if not G.get("control_token"):
        G["control_token"], _ = G["bridge"].pair(G["app"], "control", app="till")
    return G["control_token"]


def sheet_count():
    return len(sl.list_all(G["d"]))


def t_till_flow():
    p, br = G["page"], G["bridge"]
    p.navigate("%s/till.html?bridge=%s&reader=%s" % (G["app"], br.url, R0.replace(" ", "%20")))
    code = p.wait("document.body.dataset.state === 'pairing' && document.body.dataset.code",
                  what="the page's pairing code")
    pending = br.ctl_cmd("pair")["pending"]
    check([x["code"] for x in pending] == [code] and pending[0]["origin"] == G["app"] and
          pending[0]["scope"] == "control", "vitalectl web pair lists the page: %r" % pending)
    out = subprocess.run([harness.VITALECTL, "web", "--web-socket", br.ctl, "pair", code],
                         capture_output=True, text=True, timeout=30)
    check(out.returncode == 0 and G["app"] in out.stdout, "approve: %s %s" % (out.stdout, out.stderr))
    p.wait("document.body.dataset.state === 'waiting-card'", what="the page waits for a card")
    G["host"].insert("vitale2")
    state = p.wait("['done','error'].includes(document.body.dataset.state) && document.body.dataset.state",
                   timeout=40, what="the till flow")
    log = p.eval("document.getElementById('log').textContent")
    check(state == "done", "the till flow ended %s: %s" % (state, log))
    check(p.eval("document.body.dataset.holder") == "MARIE-CLAIRE DUPONT", "holder: %s" % log)
    sid = p.eval("document.body.dataset.sheet")
    err, g = sl.call(G["d"], "GetSheet", {"id": sid})
    check(err is None and g["meta"]["state"] == "queued" and
          p.eval("document.body.dataset.sheetState") == "queued", "the sheet %s: %s %r" % (sid, err, g and g["meta"]))
    G["control_token"] = p.eval("sessionStorage.getItem('vitaled-token')")
    print("  till_flow: paired (code %s), card read, sheet %s number %s queued" % (code, sid, g["meta"]["seq"]),
          flush=True)


def t_hostile_origin():
    p, br = G["page"], G["bridge"]
    stolen = control_token()
    p.navigate(G["hostile"] + "/blank.html")
    before, n_sheets = refusals("origin"), sheet_count()
    tries = [
        ("POST", "/v1/call/GetStatus", stolen, {}, "application/json", None),
        ("POST", "/v1/call/CreateSheet", stolen, {"reader": R0, "sheet": sl.till_part()}, "application/json", None),
        ("POST", "/v1/pair", None, {"app": "evil", "scope": "pin"}, "application/json", None),
        ("GET", "/v1/status", None, None, None, None),
        # a "simple" request (no preflight) that the page cannot read: still refused
        ("POST", "/v1/call/CreateSheet", None, {"reader": R0, "sheet": sl.till_part()}, "text/plain", "no-cors"),
    ]
    for method, path, tok, body, ctype, mode in tries:
        r = harness_probe(p, br.url + path, method, tok, body, ctype, mode)
        check(r["status"] == 0, "a hostile page read %s %s: %r" % (method, path, r))
    expect_refused("origin", before, len(tries))
    check(sheet_count() == n_sheets, "no sheet made by the hostile page")
    check(br.ctl_cmd("pair")["pending"] == [], "no pairing asked by the hostile page")


def harness_probe(page, url, method, token, body, ctype, mode):
    import webworld
    return webworld.probe(page, url, method, token, body, ctype or "application/json", mode)


def t_rebinding_host():
    p, br = G["page"], G["bridge"]
    origin = "http://rebind.test:%d" % br.port
    p.serve(origin + "/", "<!DOCTYPE html><title>rebinding</title><p>attacker page")
    p.navigate(origin + "/")
    before = refusals("host")
    for method, path, tok in (("GET", "/v1/status", None), ("POST", "/v1/call/GetStatus", control_token()),
                              ("GET", "/v1/events", control_token())):
        r = harness_probe(p, path, method, tok, {} if method == "POST" else None, None, None)
        check(r["status"] == 403 and (r.get("body") or {}).get("error") == "io.vitaled.Web.HostNotAllowed",
              "%s %s under a rebinding name: %r" % (method, path, r))
    expect_refused("host", before, 3)


def allowed_page():
    G["page"].navigate(G["app"] + "/blank.html")
    return G["page"]


def call(token, method, params=None, page=None):
    return harness_probe(page or G["page"], G["bridge"].url + "/v1/call/" + method, "POST", token,
                         params or {}, None, None)


def t_missing_token():
    p = allowed_page()
    before = refusals("token_missing")
    r = call(None, "GetStatus", page=p)
    check(r["status"] == 401 and r["body"]["error"] == "io.vitaled.Web.TokenMissing", "no token: %r" % r)
    r = harness_probe(p, G["bridge"].url + "/v1/events", "GET", None, None, None, None)
    check(r["status"] == 401, "events without a token: %r" % r)
    expect_refused("token_missing", before, 2)


def t_revoked_token():
    br = G["bridge"]
    tok, tid = br.pair(G["app"], "control", app="revoke me")
    with open(os.path.join(br.dir, "tokens.json")) as f:
        stored = f.read()
    check(tok not in stored and hashlib.sha256(tok.encode()).hexdigest() in stored,
          "tokens.json keeps the SHA-256 only")
    p = allowed_page()
    r = call(tok, "GetStatus", page=p)
    check(r["status"] == 200 and r["body"]["parameters"]["access"] == "control", "a fresh token: %r" % r)
    listed = [t["id"] for t in br.ctl_cmd("list")["tokens"]]
    check(tid in listed, "vitalectl web list shows %s: %r" % (tid, listed))
    check(br.ctl_cmd("revoke", tid)["revoked"] == 1, "revoked")
    before = refusals("token_invalid")
    r = call(tok, "GetStatus", page=p)
    check(r["status"] == 401 and r["body"]["error"] == "io.vitaled.Web.TokenInvalid", "revoked token: %r" % r)
    expect_refused("token_invalid", before)
    check(tid not in [t["id"] for t in br.ctl_cmd("list")["tokens"]], "gone from the list")
    with open(os.path.join(br.dir, "tokens.json")) as f:
        check(hashlib.sha256(tok.encode()).hexdigest() not in f.read(), "gone from tokens.json")


def t_wrong_scope():
    br = G["bridge"]
    read_tok, _ = br.pair(G["app"], "read", app="read only")
    pin_tok, _ = br.pair(G["app"], "pin", app="with PIN")
    p = allowed_page()
    before = refusals("scope")
    r = call(read_tok, "GetStatus", page=p)
    check(r["status"] == 200, "a read token reads the status: %r" % r)
    r = call(read_tok, "GetCard", {"reader": R0}, page=p)
    check(r["status"] == 403 and r["body"]["error"] == "io.vitaled.Web.ScopeInsufficient", "GetCard, read: %r" % r)
    r = call(read_tok, "CreateSheet", {"reader": R0, "sheet": sl.till_part()}, page=p)
    check(r["status"] == 403, "CreateSheet, read: %r" % r)
    r = call(control_token(), "SubmitPin", {"target": "practitioner", "pin": "1234"}, page=p)
    check(r["status"] == 403 and r["body"]["error"] == "io.vitaled.Web.ScopeInsufficient",
          "SubmitPin, control: %r" % r)
    expect_refused("scope", before, 3)
    fwd = br.status(G["app"])["forwarded"]
    r = call(pin_tok, "SubmitPin", {"target": "practitioner", "pin": "1234"}, page=p)
    check(r["status"] == 200 and not r["body"].get("error", "").startswith("io.vitaled.Web."),
          "SubmitPin with the pin scope reaches the daemon: %r" % r)
    check(br.status(G["app"])["forwarded"] == fwd + 1, "forwarded")
    before = refusals("method")
    r = call(pin_tok, "Reload", page=p)
    check(r["status"] == 403 and r["body"]["error"] == "io.vitaled.Web.MethodNotAllowed", "Reload: %r" % r)
    expect_refused("method", before)
    check("1234" not in br.log_text(), "no PIN in the bridge's log")


def t_other_origin():
    G["page"].navigate(G["app2"] + "/blank.html")
    before = refusals("token_origin")
    r = call(control_token(), "GetStatus")
    check(r["status"] == 403 and r["body"]["error"] == "io.vitaled.Web.TokenOriginMismatch",
          "another allowed origin with the first one's token: %r" % r)
    expect_refused("token_origin", before)


def t_private_network():
    br = G["bridge"]
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type",
           "Access-Control-Request-Private-Network": "true"}
    st, h, _ = br.request("OPTIONS", "/v1/call/GetStatus", origin=G["app"], headers=pre)
    check(st == 204 and h.get("access-control-allow-private-network") == "true" and
          h.get("access-control-allow-origin") == G["app"], "allowed preflight: %d %r" % (st, h))
    before = refusals("origin")
    st, h, j = br.request("OPTIONS", "/v1/call/GetStatus", origin=G["hostile"], headers=pre)
    check(st == 403 and "access-control-allow-private-network" not in h and
          "access-control-allow-origin" not in h and j["error"] == "io.vitaled.Web.OriginNotAllowed",
          "hostile preflight: %d %r" % (st, h))
    expect_refused("origin", before)


def t_socket_activation():
    import shutil as sh
    import socket
    import webworld
    sa = sh.which("systemd-socket-activate")
    if not sa:
        print("  socket_activation: systemd-socket-activate not installed: not run", flush=True)
        return
    tmp = harness.mktemp("test_web-sa-")
    port = webworld.free_port()
    ctl = os.path.join(tmp, "ctl.sock")
    log = open(os.path.join(tmp, "sa.log"), "wb")
    cmd = [sa, "-l", "127.0.0.1:%d" % port, "-l", ctl, "--", webworld.VITALED_WEB, "--config", G["d"].conf,
           "--socket", G["d"].sock, "--state-dir", os.path.join(tmp, "web"), "--port", "1"]
    p = harness.track(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    try:
        end = time.monotonic() + 10
        while not os.path.exists(ctl):
            check(time.monotonic() < end and p.poll() is None, "systemd-socket-activate did not listen")
            time.sleep(0.05)
        br = webworld.Bridge(G["d"], tmp, port)
        br.ctl = ctl
        st = br.status(G["app"])      # the first connection starts vitaled-web on the passed sockets
        check(st["bridge"] == "vitaled-web", "status through the activated socket: %r" % st)
        code, _, j = br.request("GET", "/v1/status", origin=G["app"], host="127.0.0.1:1")
        check(code == 403 and j["error"] == "io.vitaled.Web.HostNotAllowed",
              "the Host check follows the passed socket's port, not --port: %d %r" % (code, j))
        check(br.ctl_cmd("list")["tokens"] == [], "the control socket was passed too")
    finally:
        p.terminate()
        p.wait(timeout=20)
    # a socket on every address: refused, the bridge does not serve it
    port2 = webworld.free_port()
    p = harness.track(subprocess.Popen([sa, "-l", "0.0.0.0:%d" % port2, "--", webworld.VITALED_WEB,
                                        "--config", G["d"].conf, "--socket", G["d"].sock,
                                        "--state-dir", os.path.join(tmp, "web2"), "--control-socket",
                                        os.path.join(tmp, "ctl2.sock")],
                                       stdout=log, stderr=subprocess.STDOUT))
    try:
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port2), timeout=1).close()
                break
            except OSError:
                check(time.monotonic() < end, "systemd-socket-activate did not listen on 0.0.0.0")
                time.sleep(0.05)
        rc = p.wait(timeout=20)
        check(rc != 0, "vitaled-web served a socket on 0.0.0.0 (exit %r)" % rc)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    log.close()
    with open(os.path.join(tmp, "sa.log"), errors="replace") as f:
        text = f.read()
    check("not a loopback TCP socket: refused" in text, "the refusal is logged: %s" % text[-500:])


def main():
    sys.path.insert(0, os.path.join(sl.TOP, "tests", "world"))
    import cdp
    import webworld
    for b in ("vitaled", "vitalectl", "vitaled-web"):
        if not os.access(os.path.join(harness.B, b), os.X_OK):
            print("FAIL: %s is not built" % b)
            sys.exit(1)
    if not HAVE_PCSC or not cdp.available():
        print("SKIP: pcscd/vpcd or chromium not installed")
        sys.exit(77)
    from world import PcscWorld
    from cardhost import CardHost
    tmp = harness.mktemp("test_web-")
    key, _, _ = sl.make_key(tmp)
    ports = [webworld.free_port() for _ in range(4)]
    bport, app_port, app2_port, hostile_port = ports
    G["app"], G["app2"] = "http://localhost:%d" % app_port, "http://localhost:%d" % app2_port
    G["hostile"] = "http://127.0.0.1:%d" % hostile_port
    pages = os.path.join(tmp, "pages")
    os.makedirs(pages)
    with open(os.path.join(pages, "blank.html"), "w") as f:
        f.write("<!DOCTYPE html><title>blank</title><p>a page\n")
    # the allowed origin serves the example as it is in the tree, and a blank page
    app_dir = os.path.join(tmp, "app")
    shutil.copytree(os.path.join(sl.TOP, "examples", "js"), app_dir)
    shutil.copy(os.path.join(pages, "blank.html"), app_dir)
    webworld.serve_dir(app_dir, app_port)
    webworld.serve_dir(pages, app2_port)
    webworld.serve_dir(pages, hostile_port)
    world = PcscWorld(dir=os.path.join(tmp, "pcsc"))
    world.start()
    G["host"] = CardHost(world.port, log=os.path.join(tmp, "cardhost.log"))
    web = "[web]\nport = %d\nallowed_origins = %s, %s\n" % (bport, G["app"], G["app2"])
    dd = os.path.join(tmp, "d")
    os.makedirs(dd)
    G["d"] = harness.Daemon(conf=sl.conf(key, extra=web), tmp=dd, env=world.env).start()
    G["bridge"] = webworld.Bridge(G["d"], tmp, bport).start()
    browser = cdp.Browser(tmp, extra_args=["--disable-features=LocalNetworkAccessChecks"])
    G["page"] = browser.page()
    try:
        harness.run_tests([t_till_flow, t_hostile_origin, t_rebinding_host, t_missing_token,
                           t_revoked_token, t_wrong_scope, t_other_origin, t_private_network,
                           t_socket_activation])
    finally:
        browser.close()
        G["bridge"].stop()
        G["host"].close()
        world.stop()


if __name__ == "__main__":
    main()
