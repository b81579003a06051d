#!/usr/bin/python3
"""The signing certificate comes from the signer, and its renewal (issue 10):

- file signer: [signer] cert_file holds certificate A (from the insurer's
  practitioner CA, tests/insurer/mkpki.py); sheets are signed; the file is
  replaced by certificate B (same key, issued later); GetSigner shows B;
  more sheets; one upload: both sets reach the insurer in separate batches,
  every sheet accepted and held once (ground truth held.json, answers.jsonl);
- PKCS#11 signer (SoftHSM): the same, with A then B written on the token
  under the key's CKA_ID (pkcs11-tool) while vitaled runs;
- a signer without a certificate: status says so, sheets wait, none lost;
  the certificate appears: they go;
- the terminal's TLS client key in SoftHSM as a PKCS#11 URI
  ([insurer] client_key = pkcs11:...) through OpenSSL's pkcs11 engine.

No [insurer] signer_chain anywhere: the chain is the signer's.
"""
import hashlib
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "insurer"))

import harness  # noqa: E402
import sheetlib  # noqa: E402
from harness import check  # noqa: E402

try:
    import insurer  # noqa: E402
    import mkpki  # noqa: E402
    from cryptography import x509  # noqa: E402
    from cryptography.hazmat.primitives import serialization  # noqa: E402
except ImportError as e:
    print("skip: %s" % e)
    sys.exit(77)

T = "io.vitaled.Terminal."
TERMINAL = "T0001"
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
ENGINE = "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so"


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    if r.returncode != 0:
        raise harness.Failure("%s: %s %s" % (" ".join(cmd), r.stdout.decode(), r.stderr.decode()))
    return r


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise harness.Failure("timed out waiting for %s" % what)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


class World:
    def __init__(self):
        self.tmp = harness.mktemp("vitaled-ucert-")
        self.pki = os.path.join(self.tmp, "pki")
        mkpki.init_pki(self.pki, terminal_id=TERMINAL)
        self.ins = insurer.InsurerProcess(self.pki, os.path.join(self.tmp, "insurer"))
        self.ins.__enter__()

    def insurer_conf(self, client_key=None, extra=""):
        key = client_key or "%s/client.key.pem" % self.pki
        return ("[insurer]\nurl = %s\nca_file = %s/server-ca.pem\nclient_cert = %s/client.pem\n"
                "client_key = %s\ngather_ms = 100\nbackoff_base_s = 1\nbackoff_cap_s = 3\n"
                "timeout_s = 5\nreturns_interval_s = 60\n%s" %
                (self.ins.url, self.pki, self.pki, key, extra))

    def close(self):
        self.ins.__exit__(None, None, None)


def daemon(w, conf, name, env=None):
    conf = conf.replace("[daemon]\n", "[daemon]\nterminal_id = %s\n" % TERMINAL, 1)
    return harness.Daemon(conf=conf, tmp=w.tmp, name=name, env=env, timeout=10.0)


def create(d, n):
    ids = []
    for _ in range(n):
        end = time.monotonic() + 10
        while True:
            err, r = sheetlib.call(d, "CreateSheet", sheetlib.degraded())
            if not (err and err.endswith("SignerUnavailable") and time.monotonic() < end):
                break
            time.sleep(0.05)
        check(err is None, "CreateSheet: %s %r" % (err, r))
        ids.append(r["id"])
    return ids


def uploader(d):
    return d.result(T + "GetStatus")[1]["uploader"]


def signer_cert(d):
    return d.result(T + "GetSigner")[1].get("certificate")


def wait_cert(d, sha, what):
    return wait_for(lambda: (lambda c: c if c and c.get("sha256") == sha else None)(signer_cert(d)),
                    10, what)


def drained(d):
    u = uploader(d)
    return u if u["waiting"] == 0 and u["state"] == "idle" else None


def check_sets(w, d, sets):
    """Each set of sheets: accepted, held once with the terminal's bytes, and
    in batches of its own (no batch holds sheets of two sets)."""
    held = {}
    for s in w.ins.held()["sheets"]:
        check(s["id"] not in held, "sheet %s held twice" % s["id"])
        held[s["id"]] = s
    st = {m["id"]: m for m in sheetlib.list_all(d)}
    batches = []
    for ids in sets:
        b = set()
        for sid in ids:
            check(sid in held, "sheet %s not held by the insurer: %r" % (sid, st.get(sid)))
            check(st[sid]["state"] in ("accepted", "paid", "refused"), "%s: %r" % (sid, st[sid]))
            check(held[sid]["sha256"] == hashlib.sha256(sheetlib.export(d, sid)).hexdigest(),
                  "sheet %s: other bytes held" % sid)
            b.add(held[sid]["batch_id"])
        batches.append(b)
    for i in range(len(batches)):
        for j in range(i + 1, len(batches)):
            check(not (batches[i] & batches[j]), "sets %d and %d share a batch: %r %r" %
                  (i, j, batches[i], batches[j]))
    ans = {}
    for a in w.ins.answers():
        for r in a.get("results") or []:
            ans.setdefault(r.get("id"), []).append(r.get("status"))
    for ids in sets:
        for sid in ids:
            check("accepted" in ans.get(sid, []), "answers.jsonl for %s: %r" % (sid, ans.get(sid)))
    return batches


def t_file_renewal(w):
    key, _, pub = sheetlib.make_key(w.tmp, name="prat-file")
    cert_a = mkpki.issue_practitioner(w.pki, pub, cn="Dr A", not_before_days=2)
    cert_b = mkpki.issue_practitioner(w.pki, pub, cn="Dr B", not_before_days=1, intermediate=True)
    certf = os.path.join(w.tmp, "prat-file.cert.pem")
    with open(certf, "wb") as f:
        f.write(pem(cert_a))
    conf = sheetlib.conf(key, extra=w.insurer_conf()).replace(
        "key_file = %s\n" % key, "key_file = %s\ncert_file = %s\n" % (key, certf), 1)
    sha_a, sha_b = hashlib.sha256(der(cert_a)).hexdigest(), hashlib.sha256(der(cert_b)).hexdigest()
    w.ins.ctl("close")  # both sets wait, then go in one attempt
    with daemon(w, conf, "dfile") as d:
        c = wait_cert(d, sha_a, "certificate A in GetSigner")
        check(c["chain_length"] == 1, c)
        set_a = create(d, 4)
        # the renewal: B from the intermediate CA, the chain is B then the intermediate
        inter = mkpki.load_cert(os.path.join(w.pki, "practitioner-int.pem"))
        with open(certf + ".new", "wb") as f:
            f.write(pem(cert_b) + pem(inter))
        os.replace(certf + ".new", certf)
        c = wait_cert(d, sha_b, "certificate B in GetSigner")
        check(c["chain_length"] == 2, c)
        check(d.result(T + "GetStatus")[1]["signer"]["certificate"] == "present", "status")
        time.sleep(0.3)  # the uploader's record of B runs on the queue thread
        set_b = create(d, 4)
        w.ins.ctl("listen")
        d.result(T + "Upload")
        wait_for(lambda: drained(d), 20, "drained after the renewal")
        b = check_sets(w, d, [set_a, set_b])
        print("file renewal: set A in %d batch(es), set B in %d" % (len(b[0]), len(b[1])))


def softhsm(w):
    d = os.path.join(w.tmp, "hsm")
    os.makedirs(os.path.join(d, "tokens"), exist_ok=True)
    conf = os.path.join(d, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % d)
    env = dict(os.environ)
    env["SOFTHSM2_CONF"] = conf
    return env, d


def p11(env, label, pin, *args):
    return run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", label, "--login", "--pin", pin]
               + list(args), env=env)


def token_with_key(env, d, label, pin, kid, klabel):
    run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "87654321",
         "--pin", pin], env=env)
    p11(env, label, pin, "--keypairgen", "--key-type", "EC:prime256v1", "--id", kid,
        "--label", klabel)
    pubf = os.path.join(d, label + ".pub.der")
    p11(env, label, pin, "--read-object", "--type", "pubkey", "--id", kid, "-o", pubf)
    with open(pubf, "rb") as f:
        return serialization.load_der_public_key(f.read())


def write_cert(env, d, label, pin, kid, cert, name):
    path = os.path.join(d, name + ".der")
    with open(path, "wb") as f:
        f.write(der(cert))
    p11(env, label, pin, "--write-object", path, "--type", "cert", "--id", kid, "--label", name)


def t_pkcs11_renewal(w):
    env, hd = softhsm(w)
    pub = token_with_key(env, hd, "PRAT", "2468", "01", "SIGN")
    cert_a = mkpki.issue_practitioner(w.pki, pub, cn="Dr A", not_before_days=2)
    cert_b = mkpki.issue_practitioner(w.pki, pub, cn="Dr B", not_before_days=1)
    sha_a, sha_b = hashlib.sha256(der(cert_a)).hexdigest(), hashlib.sha256(der(cert_b)).hexdigest()
    conf = ("[daemon]\nlog_level = info\n[signer]\nbackend = pkcs11\nmodule = %s\ntoken = PRAT\n"
            "key = SIGN\n[practitioner]\nid = %s\nstructure = %s\n%s" %
            (SOFTHSM, sheetlib.PRACTITIONER, sheetlib.STRUCTURE, w.insurer_conf()))
    w.ins.ctl("close")
    with daemon(w, conf, "dp11", env=env) as d:
        wait_for(lambda: d.result(T + "GetSigner")[1]["state"] == "locked", 10, "locked")
        # no certificate on the token yet: status says so, sheets wait
        check(wait_for(lambda: (lambda c: c if c and not c["present"] else None)(signer_cert(d)),
                       10, "no certificate")["present"] is False, "GetSigner certificate")
        check(d.result(T + "GetStatus")[1]["signer"]["certificate"] == "none", "status none")
        err, r = d.result(T + "SubmitPin", {"target": "practitioner", "pin": "2468"})
        check(err is None, "SubmitPin: %s %r" % (err, r))
        set_0 = create(d, 2)
        w.ins.ctl("listen")
        d.result(T + "Upload")
        time.sleep(1.5)
        u = uploader(d)
        check(u["no_cert"] >= 2 and u["waiting"] >= 0, "no_cert counted: %r" % u)
        w.ins.ctl("close")
        # certificate A on the token, under the key's CKA_ID
        write_cert(env, hd, "PRAT", "2468", "01", cert_a, "CERT_A")
        wait_cert(d, sha_a, "certificate A read from the token")
        time.sleep(0.3)
        set_a = create(d, 3)
        # the renewal: B written beside A (same key, issued later): B is chosen
        write_cert(env, hd, "PRAT", "2468", "01", cert_b, "CERT_B")
        wait_cert(d, sha_b, "certificate B read from the token")
        time.sleep(0.3)
        set_b = create(d, 3)
        w.ins.ctl("listen")
        d.result(T + "Upload")
        wait_for(lambda: (lambda u: u if u["waiting"] - u["no_cert"] <= 0 and u["state"] == "idle"
                          else None)(uploader(d)), 20, "sets A and B drained")
        b = check_sets(w, d, [set_a, set_b])
        st = {m["id"]: m for m in sheetlib.list_all(d)}
        for sid in set_0:
            check(st[sid]["state"] == "queued", "no-certificate sheet %s: %r" % (sid, st[sid]))
        print("pkcs11 renewal: set A in %d batch(es), set B in %d; %d sheets without a "
              "certificate wait" % (len(b[0]), len(b[1]), len(set_0)))


def t_engine_client_key(w):
    if not os.path.exists(ENGINE):
        print("skip engine: %s absent (libengine-pkcs11-openssl)" % ENGINE)
        return
    env, hd = softhsm(w)
    pub = token_with_key(env, hd, "TERM", "1111", "02", "TLS")
    # mkpki's client certificate, for the token's public key (issue_client makes its own key)
    nb, na = mkpki._validity()
    cert = mkpki._leaf(mkpki._load_pair(w.pki, "client-ca"), mkpki._name(TERMINAL), pub, nb, na,
                       eku=[mkpki.ExtendedKeyUsageOID.CLIENT_AUTH])
    cpath = os.path.join(w.tmp, "client-p11.pem")
    with open(cpath, "wb") as f:
        f.write(pem(cert))
    key, _, kpub = sheetlib.make_key(w.tmp, name="prat-eng")
    certf = os.path.join(w.tmp, "prat-eng.cert.pem")
    with open(certf, "wb") as f:
        f.write(pem(mkpki.issue_practitioner(w.pki, kpub)))
    pinf = os.path.join(w.tmp, "tls.pin")
    with open(pinf, "w") as f:
        f.write("1111\n")
    os.chmod(pinf, 0o600)
    ins = w.insurer_conf(client_key="pkcs11:token=TERM;object=TLS;type=private",
                         extra="client_key_module = %s\nclient_key_pin_file = %s\n" % (SOFTHSM, pinf))
    ins = ins.replace("client_cert = %s/client.pem" % w.pki, "client_cert = %s" % cpath)
    conf = sheetlib.conf(key, extra=ins).replace(
        "key_file = %s\n" % key, "key_file = %s\ncert_file = %s\n" % (key, certf), 1)
    with daemon(w, conf, "deng", env=env) as d:
        ids = create(d, 3)
        d.result(T + "Upload")
        wait_for(lambda: drained(d), 20, "drained with the token's TLS key")
        check_sets(w, d, [ids])
        with open(d.log, errors="replace") as f:
            check("1111" not in f.read(), "the token PIN is in the log")
        print("TLS client key in SoftHSM through the pkcs11 engine: %d sheets sent" % len(ids))


def main():
    w = World()
    try:
        t_file_renewal(w)
        t_pkcs11_renewal(w)
        t_engine_client_key(w)
    finally:
        harness.stop_all()
        w.close()
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except harness.Failure as e:
        print("FAIL: %s" % e)
        for d in harness.running():
            print(d.tail())
        sys.exit(1)
