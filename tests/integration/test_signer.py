#!/usr/bin/python3
"""Integration test of the PIN flows and the practitioner's signer.

Starts build/vitaled (B=<build dir>, default ./build) with private sockets
and state dirs in a temp dir, and checks through the varlink API and
vitalectl:

- SoftHSM2 tokens (EC P-256 and RSA 2048, made with softhsm2-util and
  pkcs11-tool): locked at start, wrong PIN (SoftHSM never counts down nor
  locks: only CKF_USER_PIN_COUNT_LOW), malformed PIN, right PIN, the
  self-test signatures verified here with python3-cryptography (ES256 raw
  r||s, PS256 with MGF1-SHA256 and a 32-byte salt) against the public key
  that pkcs11-tool exports;
- the file backend with keys made here (ES256, PS256, encrypted PEM);
- a fake PKCS#11 module (fake_pkcs11.c, compiled here) for what SoftHSM
  does not do: tries counting down (COUNT_LOW, FINAL_TRY), blocking
  (never retried), the pinpad (protected authentication path), removal;
- rate limiting, idle logout, vitalectl pin (stdin, --pin-fd, a pty
  without echo, never argv);
- the PIN canary: random PINs submitted through the API, then gcore of the
  running daemon, and the core, the state dir and the log searched for the
  PIN bytes: zero hits allowed.

Exit 0 pass, 77 skip (nothing to test with), 1 fail. Random PINs come from
SEED (printed; set SEED=... to replay).
"""
import base64
import os
import pty
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import IFACE, VITALECTL, VITALED, Failure, Watch, check  # noqa: E402

SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"

SEED = int(os.environ.get("SEED", str(random.SystemRandom().randrange(1 << 32))))
rng = random.Random(SEED)



def log(msg):
    print(msg, flush=True)


def signer_daemon(top, name, conf, env=None):
    """vitaled in TOP/NAME, debug log; result() calls wait up to 30 s."""
    return harness.Daemon(conf=conf, tmp=top, name=name, env=env, args=["--log-level", "debug"],
                          timeout=30.0)


def wait_state(dm, want, timeout=10):
    """GetSigner until its state is want (a state or a tuple of them)."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        err, p = dm.result("GetSigner")
        last = p
        if not err and p.get("state") in (want if isinstance(want, tuple) else (want,)):
            return p
        time.sleep(0.1)
    raise Failure("signer state %r, wanted %r" % (last, want))


def ctl(dm, args, stdin=None, pass_fds=()):
    """vitalectl with bytes in and out."""
    return dm.ctl(*args, input=stdin, text=False, pass_fds=pass_fds, timeout=60)


def run(cmd, env=None, check_rc=True):
    r = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    if check_rc and r.returncode != 0:
        raise Failure("%s: %s %s" % (" ".join(cmd), r.stdout.decode(), r.stderr.decode()))
    return r


def softhsm_env(top, name):
    d = os.path.join(top, name)
    os.makedirs(os.path.join(d, "tokens"), exist_ok=True)
    conf = os.path.join(d, "softhsm2.conf")
    with open(conf, "w") as f:
        f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n" % d)
    env = dict(os.environ)
    env["SOFTHSM2_CONF"] = conf
    return env, d


def softhsm_token(env, label, pin, keytype):
    run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", "87654321",
         "--pin", pin], env=env)
    run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", label, "--login", "--pin", pin,
         "--keypairgen", "--key-type", keytype, "--id", "01", "--label", "SIGN"], env=env)


def p11_conf(module, token, key="SIGN", idle=900, extra=""):
    return ("[signer]\nbackend = pkcs11\nmodule = %s\ntoken = %s\nkey = %s\npin_idle_timeout_s = %d\n"
            "[practitioner]\nid = 81000123456\nstructure = 751234567\n%s" % (module, token, key, idle, extra))


def verify(alg, spki_der, tbs, sig):
    """Independent check: python3-cryptography, COSE signature forms."""
    pub = serialization.load_der_public_key(spki_der)
    if alg == "ES256":
        check(isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1",
              "ES256 key is not P-256")
        check(len(sig) == 64, "ES256 signature is %d bytes, not 64 (raw r||s)" % len(sig))
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        pub.verify(der, tbs, ec.ECDSA(hashes.SHA256()))
    elif alg == "PS256":
        check(isinstance(pub, rsa.RSAPublicKey), "PS256 key is not RSA")
        check(len(sig) == pub.key_size // 8, "PS256 signature length")
        pub.verify(sig, tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                   hashes.SHA256())
    else:
        raise Failure("unknown alg " + alg)


def selftest_verified(d, expect_alg, spki=None, rounds=3):
    err, r = d.result("SignerSelfTest", {"rounds": rounds})
    check(err is None, "SignerSelfTest: %s %s" % (err, r))
    check(r["key_alg"] == expect_alg, "key_alg %s" % r["key_alg"])
    check(r["verified"] is True, "the daemon did not verify its own signature")
    tbs = base64.b64decode(r["tbs"])
    sig = base64.b64decode(r["signature"])
    check(tbs.startswith(b"vitaled signer self-test\0") and len(tbs) == 57, "self-test challenge")
    pub = base64.b64decode(r["public_key"]) if spki is None else spki
    if spki is not None:
        check(base64.b64decode(r["public_key"]) == spki, "the daemon's public key is not the token's")
    verify(expect_alg, pub, tbs, sig)
    # a flipped bit must not verify: the check above can fail
    bad = bytearray(sig)
    bad[5] ^= 1
    try:
        verify(expect_alg, pub, tbs, bytes(bad))
        raise Failure("a corrupted signature verified")
    except InvalidSignature:
        pass
    return r


# ---------------------------------------------------------------------------

def t_softhsm(top):
    env, d = softhsm_env(top, "hsm")
    softhsm_token(env, "PRAT_EC", "2468", "EC:prime256v1")
    softhsm_token(env, "PRAT_RSA", "1357", "rsa:2048")
    for label, pin, alg in (("PRAT_EC", "2468", "ES256"), ("PRAT_RSA", "1357", "PS256")):
        pubf = os.path.join(d, label + ".der")
        run(["pkcs11-tool", "--module", SOFTHSM, "--token-label", label, "--read-object",
             "--type", "pubkey", "--id", "01", "-o", pubf], env=env)
        with open(pubf, "rb") as f:
            spki = f.read()
        with signer_daemon(top, "d-" + label, p11_conf(SOFTHSM, label), env) as dm:
            p = wait_state(dm, "locked")
            check(p["key_alg"] == alg and p["logged_in"] is False and p["pinpad"] is False,
                  "GetSigner before login: %r" % p)
            check(p["practitioner_id"] == "81000123456" and p["structure_id"] == "751234567",
                  "practitioner ids from the config")
            err, r = dm.result("SignerSelfTest", {})
            check(err == IFACE + ".SignerUnavailable", "self-test before login: %s" % err)
            err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "0000"})
            check(err == IFACE + ".PinIncorrect" and r["tries_left"] is None,
                  "wrong PIN: %s %r" % (err, r))
            err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "12a4"})
            check(err == IFACE + ".PinMalformed" and r["min_len"] == 4, "malformed: %s %r" % (err, r))
            err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": pin})
            check(err is None and r["logged_in"] is True, "right PIN: %s %r" % (err, r))
            err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": pin})
            check(err == IFACE + ".PinNotExpected", "second login: %s" % err)
            selftest_verified(dm, alg, spki)
            err, st = dm.result("GetStatus")
            check(st["signer"]["state"] == "ready" and st["signer"]["logged_in"] is True,
                  "GetStatus signer: %r" % st.get("signer"))
        # SoftHSM's counter: it never locks; the right PIN still works after 10 wrong ones
    log("  SoftHSM: CKR_PIN_INCORRECT with CKF_USER_PIN_COUNT_LOW only; never FINAL_TRY/LOCKED")


def t_softhsm_never_locks(top):
    env, d = softhsm_env(top, "hsm2")
    softhsm_token(env, "PRAT", "2468", "EC:prime256v1")
    conf = p11_conf(SOFTHSM, "PRAT")
    for round_ in range(2):  # two daemons: 10 wrong tries, more than any card allows
        with signer_daemon(top, "d-nl%d" % round_, conf, env) as dm:
            wait_state(dm, "locked")
            for i in range(5):
                err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "9999"})
                check(err == IFACE + ".PinIncorrect", "wrong #%d: %s" % (i, err))
            err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "9999"})
            check(err == IFACE + ".RateLimited" and 1 <= r["retry_after_s"] <= 60,
                  "6th attempt in a minute: %s %r" % (err, r))
    with signer_daemon(top, "d-nl-ok", conf, env) as dm:
        wait_state(dm, "locked")
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "2468"})
        check(err is None, "SoftHSM after 10 wrong PINs: %s %r" % (err, r))


def gen_key(kind):
    if kind == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def spki_of(k):
    return k.public_key().public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)


def t_file(top):
    for alg in ("ES256", "PS256"):
        k = gen_key(alg)
        path = os.path.join(top, "key-%s.pem" % alg)
        with open(path, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        os.chmod(path, 0o600)
        conf = "[signer]\nbackend = file\nkey_file = %s\n" % path
        with signer_daemon(top, "f-" + alg, conf) as dm:
            p = wait_state(dm, "ready")
            check(p["logged_in"] and p["key_alg"] == alg, "file %s: %r" % (alg, p))
            selftest_verified(dm, alg, spki_of(k))
            err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "1234"})
            check(err == IFACE + ".PinNotExpected", "clear key file takes no PIN: %s" % err)
            check("development" in dm.log_text(), "the file backend must warn at start")
    # an encrypted key: the PIN is its passphrase
    k = gen_key("ES256")
    path = os.path.join(top, "key-enc.pem")
    with open(path, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"24681357")))
    os.chmod(path, 0o600)
    with signer_daemon(top, "f-enc", "[signer]\nbackend = file\nkey_file = %s\n" % path) as dm:
        wait_state(dm, "locked")
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "24681358"})
        check(err == IFACE + ".PinIncorrect" and r["tries_left"] is None, "enc wrong: %s" % err)
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "24681357"})
        check(err is None, "enc right: %s %r" % (err, r))
        selftest_verified(dm, "ES256", spki_of(k))


def fake_module(top):
    so = os.path.join(top, "fake_pkcs11.so")
    if not os.path.exists(so):
        run(["cc", "-shared", "-fPIC", "-O1", "-Wno-deprecated-declarations", "-o", so,
             os.path.join(HERE, "fake_pkcs11.c"), "-lcrypto"])
    return so


def fake_dir(top, name, pin="4321", pinpad=False):
    d = os.path.join(top, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "present"), "w"):
        pass
    with open(os.path.join(d, "pin"), "w") as f:
        f.write(pin)
    if pinpad:
        with open(os.path.join(d, "pinpad"), "w"):
            pass
    return d


def logins(d):
    try:
        with open(os.path.join(d, "logins")) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def t_fake_counting(top):
    so = fake_module(top)
    fd = fake_dir(top, "fake-count")
    with signer_daemon(top, "d-count", p11_conf(so, "FAKECPS"), {"FAKE_P11_DIR": fd}) as dm:
        p = wait_state(dm, "locked")
        check(p["tries_left"] is None, "3 tries: the token gives no number: %r" % p)
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "1111"})
        check(err == IFACE + ".PinIncorrect" and r["tries_left"] is None,
              "1st wrong (COUNT_LOW): %s %r" % (err, r))
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "1111"})
        check(err == IFACE + ".PinIncorrect" and r["tries_left"] == 1,
              "2nd wrong (FINAL_TRY): %s %r" % (err, r))
        p = wait_state(dm, "locked")
        check(p["tries_left"] == 1, "GetSigner says the final try: %r" % p)
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "1111"})
        check(err == IFACE + ".PinBlocked", "3rd wrong: blocked: %s %r" % (err, r))
        p = wait_state(dm, "blocked")
        check(p["tries_left"] == 0 and p["logged_in"] is False, "blocked state: %r" % p)
        n = len(logins(fd))
        check(n == 3, "C_Login calls so far: %d" % n)
        # the right PIN now: reported blocked, and never sent to the card
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "4321"})
        check(err == IFACE + ".PinBlocked", "right PIN on a blocked card: %s" % err)
        time.sleep(2.5)  # a presence poll or two: still nothing sent
        check(len(logins(fd)) == 3, "a blocked PIN was tried again: %r" % logins(fd))
        check("blocked" in dm.log_text(), "log says blocked")
    # a reset counter: the card unblocked elsewhere (tries=3) works again
    with open(os.path.join(fd, "tries"), "w") as f:
        f.write("3")
    with signer_daemon(top, "d-count2", p11_conf(so, "FAKECPS"), {"FAKE_P11_DIR": fd}) as dm:
        wait_state(dm, "locked")
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "4321"})
        check(err is None, "after unblock: %s %r" % (err, r))
        selftest_verified(dm, "ES256")


def t_fake_pinpad(top):
    so = fake_module(top)
    fd = fake_dir(top, "fake-pinpad", pinpad=True)
    with signer_daemon(top, "d-pinpad", p11_conf(so, "FAKECPS"), {"FAKE_P11_DIR": fd}) as dm:
        p = wait_state(dm, "locked")
        check(p["pinpad"] is True, "pinpad flag: %r" % p)
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "4321"})
        check(err == IFACE + ".PinNotExpected" and "keypad" in r["reason"],
              "a host PIN to a pinpad: %s %r" % (err, r))
        check(logins(fd) == [], "nothing reached the token")
        with open(os.path.join(fd, "pinpad_result"), "w") as f:
            f.write("cancel")
        err, r = dm.result("SubmitPin", {"target": "practitioner"})
        check(err == IFACE + ".PinEntryCancelled", "pinpad cancel: %s %r" % (err, r))
        with open(os.path.join(fd, "pinpad_result"), "w") as f:
            f.write("ok")
        # vitalectl finds out about the keypad by itself and sends no PIN
        r = ctl(dm, ["pin"], stdin=b"")
        check(r.returncode == 0, "vitalectl pin with a pinpad: %r" % (r,))
        check(b"keypad" in r.stderr, "vitalectl tells to use the keypad")
        check(logins(fd) == ["pinpad", "pinpad"], "C_Login(NULL) only: %r" % logins(fd))
        selftest_verified(dm, "ES256")


def t_fake_removal(top):
    so = fake_module(top)
    fd = fake_dir(top, "fake-rm")
    with signer_daemon(top, "d-rm", p11_conf(so, "FAKECPS"), {"FAKE_P11_DIR": fd}) as dm:
        wait_state(dm, "locked")
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "4321"})
        check(err is None, "login: %s" % err)
        os.unlink(os.path.join(fd, "present"))
        p = wait_state(dm, "no-token", timeout=8)
        check(p["logged_in"] is False, "removed: logged out: %r" % p)
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "4321"})
        check(err == IFACE + ".PinNotExpected", "no card: %s" % err)
        watch = Watch(dm, timeout=5)
        with open(os.path.join(fd, "present"), "w"):
            pass
        ev = watch.wait_for("PinRequested", timeout=8)
        watch.close()
        check(ev.get("target") == "practitioner" and ev.get("pinpad") is False,
              "PinRequested event: %r" % ev)
        p = wait_state(dm, "locked", timeout=8)
        check(p["logged_in"] is False, "back: a new login is needed: %r" % p)
        check("PIN required for practitioner" in dm.log_text(), "PIN request logged")
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "4321"})
        check(err is None, "login again: %s" % err)


def t_idle(top):
    so = fake_module(top)
    fd = fake_dir(top, "fake-idle")
    with signer_daemon(top, "d-idle", p11_conf(so, "FAKECPS", idle=2), {"FAKE_P11_DIR": fd}) as dm:
        wait_state(dm, "locked")
        err, r = dm.result("SubmitPin", {"target": "practitioner", "pin": "4321"})
        check(err is None, "login: %s" % err)
        p = wait_state(dm, "ready")
        check(p["idle_logout_in_s"] is not None and p["idle_logout_in_s"] <= 2, "idle: %r" % p)
        t0 = time.time()
        wait_state(dm, "locked", timeout=6)
        check(time.time() - t0 < 4, "idle logout late")
        check("idle for 2 s" in dm.log_text(), "idle logout logged")


def t_vitalectl(top):
    so = fake_module(top)
    fd = fake_dir(top, "fake-ctl", pin="97531")
    with signer_daemon(top, "d-ctl", p11_conf(so, "FAKECPS"), {"FAKE_P11_DIR": fd}) as dm:
        wait_state(dm, "locked")
        r = ctl(dm, ["pin", "97531"])
        check(r.returncode == 2, "a PIN on the command line must be refused: %r" % (r,))
        r = ctl(dm, ["pin"], stdin=b"11111\n")
        check(r.returncode == 1 and b"wrong PIN" in r.stderr, "stdin wrong: %r" % (r,))
        r = ctl(dm, ["pin"], stdin=b"12\n")
        check(r.returncode == 1 and b"4 to 8 digits" in r.stderr, "stdin short: %r" % (r,))
        rfd, wfd = os.pipe()
        os.write(wfd, b"97531\n")
        os.close(wfd)
        r = ctl(dm, ["pin", "--pin-fd", str(rfd)], pass_fds=(rfd,))
        os.close(rfd)
        check(r.returncode == 0 and b"logged in" in r.stdout, "--pin-fd: %r" % (r,))
        dm.result("SignerSelfTest", {})
    # a terminal: the PIN is not echoed
    fd2 = fake_dir(top, "fake-tty", pin="86420")
    with signer_daemon(top, "d-tty", p11_conf(so, "FAKECPS"), {"FAKE_P11_DIR": fd2}) as dm:
        wait_state(dm, "locked")
        pid, master = pty.fork()
        if pid == 0:
            os.execv(VITALECTL, [VITALECTL, "--socket", dm.sock, "pin"])
        out = b""
        end = time.time() + 20
        sent = False
        while time.time() < end:
            rl, _, _ = select.select([master], [], [], 0.2)
            if rl:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            if not sent and b"PIN for practitioner:" in out:
                os.write(master, b"86420\n")
                sent = True
        # never hang the suite: vitalectl gets 10 s to end, then SIGKILL
        status = None
        for _ in range(100):
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            time.sleep(0.1)
        if status is None:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(master)
        check(sent, "no prompt on the terminal: %r" % out)
        check(b"86420" not in out, "the PIN was echoed on the terminal: %r" % out)
        check(os.waitstatus_to_exitcode(status) == 0 and b"logged in" in out, "tty login: %r" % out)


def search(path, needles):
    hits = []
    with open(path, "rb") as f:
        data = f.read()
    for n in needles:
        i = data.find(n)
        while i >= 0:
            hits.append((path, n, i))
            i = data.find(n, i + 1)
    return hits, data


def till(dm):
    """A client that keeps its connection open, like a till application."""
    return harness.Varlink(dm.sock, timeout=30)


def windows(pin, n=7):
    """Every run of n bytes of the PIN: any of them in memory is a leak."""
    b = pin.encode()
    return sorted({b[i:i + n] for i in range(len(b) - n + 1)})


def key_needles(label, secret, n=16, step=8):
    """A key as a process could hold it: its bytes, reversed (a BIGNUM's
    little-endian limbs), and with each 32-bit word byte-swapped (a C AES
    key schedule); runs of n bytes of each, every step bytes, so that any
    copy of n + step - 1 bytes or more holds one (a copy whose first bytes
    an allocator overwrote is still found; 16 random bytes do not occur in
    a core by chance)."""
    swapped = b"".join(secret[i:i + 4][::-1] for i in range(0, len(secret), 4))
    out = []
    for form, b in (("", secret), (" reversed", secret[::-1]), (" word-swapped", swapped)):
        starts = sorted(set(list(range(0, len(b) - n + 1, step)) + [len(b) - n]))
        out += [(label + form, b[i:i + n]) for i in starts]
    return out


def queue_key_of(dm, credential=None):
    """The queue's AES key: the credential the daemon was given, else queue.key."""
    path = credential or os.path.join(dm.state, "queue.key")
    with open(path, "rb") as f:
        k = f.read()
    check(len(k) == 32, "queue key %s: %d bytes" % (path, len(k)))
    return k


def ec_scalar(k):
    """The raw private scalar of an EC P-256 key (32 bytes, big-endian)."""
    return k.private_numbers().private_value.to_bytes(32, "big")


def core_of(dm):
    """gcore of the running daemon; the path of the core."""
    corebase = os.path.join(dm.dir, "core")
    g = subprocess.run(["gcore", "-o", corebase, str(dm.proc.pid)], capture_output=True,
                       timeout=120)
    core = "%s.%d" % (corebase, dm.proc.pid)
    check(g.returncode == 0 and os.path.exists(core), "gcore failed: %s" % g.stderr.decode()[-500:])
    return core


def key_hits(core, labelled):
    """Where each labelled needle is in the core: [(label, offset)]."""
    hits, _ = search(core, [n for _, n in labelled])
    names = {}
    for label, n in labelled:
        names.setdefault(n, label)
    return sorted({(names[n], off - off % 4096) for _, n, off in hits})


def card_world(top):
    """A private pcscd with the virtual CPS's reader, or None when the test
    world cannot run here (no pcscd/vpcd)."""
    if not all(os.path.exists(p) for p in ("/usr/sbin/pcscd",
                                           "/usr/lib/pcsc/drivers/serial/libifdvpcd.so")):
        return None
    sys.path.insert(0, os.path.join(HERE, "..", "world"))
    from world import PcscWorld
    w = PcscWorld(dir=os.path.join(top, "pcsc-canary"))
    w.start()
    return w


def card_needles(pin):
    """The card PIN as the daemon could hold it: the digits (every 7-byte
    run), the VERIFY block (ASCII, FF-padded to 8 bytes) and the whole
    VERIFY command."""
    block = pin.encode() + b"\xff" * (8 - len(pin))
    return windows(pin) + [block, b"\x00\x20\x00\x01\x08" + block]


def canary_card(dm, world, tl, right, wrongs):
    """The card path: a virtual CPS with PIN right in the world's first
    reader; wrong PINs on the till's connection (tl), the right one through
    vitalectl pin --target card:... --pin-fd."""
    from cardhost import CardHost
    import cards
    reader = "Virtual PCD 00 00"
    target = "card:" + reader
    host = CardHost(world.port, log=os.path.join(dm.dir, "cardhost.log"))
    watch = Watch(dm, timeout=5)
    try:
        card = cards.Cps(pin=right)
        host.insert(card)
        ev = watch.wait_for("PinRequested", timeout=10)
        check(ev.get("target") == target and ev.get("tries_left") == 3, "card canary: %r" % ev)
        for w in wrongs:
            err, r = tl.result("SubmitPin", {"target": target, "pin": w})
            check(err == IFACE + ".PinIncorrect", "card canary wrong: %s %r" % (err, r))
        rfd, wfd = os.pipe()
        os.write(wfd, right.encode() + b"\n")
        os.close(wfd)
        r = ctl(dm, ["pin", "--target", target, "--pin-fd", str(rfd)], pass_fds=(rfd,))
        os.close(rfd)
        check(r.returncode == 0 and b"logged in" in r.stdout, "card canary login: %r" % (r,))
        check(card.tries == 3, "card canary: the card's counter is back to 3")
        # ... and once more while verified (PinNotExpected)
        err, r = tl.result("SubmitPin", {"target": target, "pin": right})
        check(err == IFACE + ".PinNotExpected", "card canary again: %s" % err)
    finally:
        watch.close()
    return host


def canary_run(top, name, conf, env, right, wrongs, world=None, card_pins=None, keys=()):
    """keys: (label, bytes) of keys that must not be in the core either
    (the queue's AES key is always added)."""
    with signer_daemon(top, name, conf, env) as dm:
        wait_state(dm, "locked")
        # wrong PINs on a connection that stays open until the core is taken
        tl = till(dm)
        for w in wrongs:
            err, r = tl.result("SubmitPin", {"target": "practitioner", "pin": w})
            check(err == IFACE + ".PinIncorrect", "canary wrong: %s %r" % (err, r))
        # the right one through vitalectl (client library, --pin-fd) ...
        rfd, wfd = os.pipe()
        os.write(wfd, right.encode() + b"\n")
        os.close(wfd)
        r = ctl(dm, ["pin", "--pin-fd", str(rfd)], pass_fds=(rfd,))
        os.close(rfd)
        check(r.returncode == 0, "canary login: %r" % (r,))
        selftest_verified(dm, "ES256")
        # ... and once more while logged in (the PinNotExpected path)
        err, r = tl.result("SubmitPin", {"target": "practitioner", "pin": right})
        check(err == IFACE + ".PinNotExpected", "again: %s" % err)
        host = None
        if world and card_pins:
            host = canary_card(dm, world, tl, card_pins[0], card_pins[1:])
        err, st = dm.result("GetStatus")
        try:
            core = core_of(dm)
        finally:
            tl.close()
            if host:
                host.close()
    labelled = key_needles("queue key", queue_key_of(dm))
    for label, k in keys:
        labelled += key_needles(label, k)
    khits = key_hits(core, labelled)
    needles = [w for p in [right] + wrongs for w in windows(p)]
    if world and card_pins:
        needles += [n for p in card_pins for n in card_needles(p)]
    hits, data = search(core, needles)
    # positive controls: the core is a real image of the daemon's memory
    check(st["terminal_id"].encode() in data, "the core does not hold the terminal id: bad core?")
    check(dm.sock.encode() in data, "the core does not hold the socket path: bad core?")
    size = len(data)
    del data
    for root, _, files in os.walk(dm.state):
        for fn in files:
            hits += search(os.path.join(root, fn), needles)[0]
    hits += search(dm.log, needles)[0]
    os.unlink(core)
    check(not hits, "PIN bytes found: %r" % hits)
    check(not khits, "key bytes in the core (label, page offset): %r" % khits[:20])
    log("  canary %s: core %d MB, state dir and log: 0 hits for %d PINs (%d needles); "
        "core: 0 hits for %d key(s) (%d needles)"
        % (name, size >> 20, 1 + len(wrongs) + len(card_pins or []) if world else 1 + len(wrongs),
           len(needles), 1 + len(keys), len(labelled)))


def t_canary(top):
    if not shutil.which("gcore"):
        log("  SKIP canary: no gcore (gdb)")
        return
    def digits(n=7):
        return "".join(rng.choice("0123456789") for _ in range(n))
    right, w1, w2 = digits(), digits(), digits(32)
    log("  canary PINs drawn with SEED=%d" % SEED)
    env, d = softhsm_env(top, "hsm-canary")
    softhsm_token(env, "CANARY", right, "EC:prime256v1")
    # the card path too: a virtual CPS with its own 4-digit PIN (its
    # FF-padded VERIFY block is searched), two wrong ones first
    # (4 digits: a CPS PIN; the FF-padded block and the VERIFY command are
    # the needles then, a 4-byte run alone would match by chance)
    card_pins = [digits(4)]
    while len(card_pins) < 3:
        p = digits(4)
        if p not in card_pins:
            card_pins.append(p)
    world = card_world(top)
    if world is None:
        log("  canary: no pcscd/vpcd, the card PIN path is not covered")
    else:
        env = dict(env, PCSCLITE_CSOCK_NAME=world.socket)
    try:
        canary_run(top, "canary-softhsm", p11_conf(SOFTHSM, "CANARY"), env, right, [w1, w2],
                   world, card_pins)
    finally:
        if world:
            world.stop()
    # the file backend: the PIN is the passphrase of an encrypted PEM
    right2, w3, w4 = digits(), digits(), digits(20)
    k = gen_key("ES256")
    path = os.path.join(top, "canary.pem")
    with open(path, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(right2.encode())))
    os.chmod(path, 0o600)
    canary_run(top, "canary-file", "[signer]\nbackend = file\nkey_file = %s\n" % path, None,
               right2, [w3, w4], keys=[("file signer scalar", ec_scalar(k))])


def t_key_canary(top):
    """Keys out of cores (issue 11, 8): a clear PEM key (ES256, and PS256:
    its primes) and the queue's key, after signatures and a sheet or two of
    queue traffic: no 16-byte run of any of them in a gcore."""
    if not shutil.which("gcore"):
        log("  SKIP key canary: no gcore (gdb)")
        return
    for alg in ("ES256", "PS256"):
        k = gen_key(alg)
        path = os.path.join(top, "kc-%s.pem" % alg)
        with open(path, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        os.chmod(path, 0o600)
        known = []
        if alg == "ES256":
            keys = [("file signer scalar", ec_scalar(k))]
        else:
            n = k.private_numbers()
            keys = [("rsa d", n.d.to_bytes(256, "big")), ("rsa dmp1", n.dmp1.to_bytes(128, "big")),
                    ("rsa dmq1", n.dmq1.to_bytes(128, "big")), ("rsa iqmp", n.iqmp.to_bytes(128, "big"))]
            # Known, not fixed: OpenSSL 3's RSA keeps Montgomery contexts of
            # p and q (RSA_FLAG_CACHE_PRIVATE) in the ordinary heap after the
            # first signature, and a provider key offers no way to turn the
            # cache off. Reported, not failed (docs/pin-and-signing.md).
            known = [("rsa p", n.p.to_bytes(128, "big")), ("rsa q", n.q.to_bytes(128, "big"))]
        conf = "[signer]\nbackend = file\nkey_file = %s\n" % path
        with signer_daemon(top, "kc-" + alg, conf) as dm:
            wait_state(dm, "ready")
            selftest_verified(dm, alg)
            err, r = dm.result("QueueStats")
            check(err is None, "QueueStats: %s" % err)
            core = core_of(dm)
        labelled = key_needles("queue key", queue_key_of(dm))
        for label, kb in keys:
            labelled += key_needles(label, kb)
        hits = key_hits(core, labelled)
        khits = key_hits(core, [x for label, kb in known for x in key_needles(label, kb)])
        if khits:
            log("  key canary %s: known leak, not failed: %r" % (alg, khits))
        size = os.path.getsize(core)
        # positive control: the public key is there (the search can find a key)
        pub = spki_of(k)
        with open(core, "rb") as f:
            seen = pub[-32:] in f.read()
        os.unlink(core)
        check(seen, "the core does not hold the public key: bad core?")
        check(not hits, "%s: key bytes in the core (label, page offset): %r" % (alg, hits[:20]))
        log("  key canary %s: core %d MB, 0 hits for %d needles" % (alg, size >> 20, len(labelled)))


TESTS = [
    ("softhsm EC+RSA", t_softhsm, True),
    ("softhsm never locks, rate limit", t_softhsm_never_locks, True),
    ("file backend", t_file, False),
    ("fake: tries and blocking", t_fake_counting, False),
    ("fake: pinpad", t_fake_pinpad, False),
    ("fake: removal", t_fake_removal, False),
    ("idle logout", t_idle, False),
    ("vitalectl pin", t_vitalectl, False),
    ("PIN canary", t_canary, True),
    ("key canary", t_key_canary, False),
]


def main():
    if not os.access(VITALED, os.X_OK) or not os.access(VITALECTL, os.X_OK):
        log("SKIP: %s not built" % VITALED)
        return 77
    have_hsm = os.path.exists(SOFTHSM) and shutil.which("softhsm2-util") and shutil.which("pkcs11-tool")
    only = sys.argv[1:]
    log("test_signer: SEED=%d" % SEED)
    top = tempfile.mkdtemp(prefix="vsig.")
    failed = 0
    ran = 0
    try:
        for name, fn, needs_hsm in TESTS:
            if only and not any(o in name for o in only):
                continue
            if needs_hsm and not have_hsm:
                log("SKIP %s: softhsm2/pkcs11-tool missing" % name)
                continue
            t0 = time.time()
            try:
                fn(top)
                ran += 1
                log("PASS %s (%.1f s)" % (name, time.time() - t0))
            except Exception as e:  # noqa: BLE001 - report every failure the same way
                failed += 1
                log("FAIL %s: %s" % (name, e))
                if not isinstance(e, Failure):
                    traceback.print_exc()
                for dm in harness.running():
                    log("---- %s log tail ----\n%s" % (dm.dir, dm.log_text()[-3000:]))
            finally:
                harness.stop_all()
    finally:
        harness.stop_all()
        if failed and os.environ.get("KEEP"):
            log("kept " + top)
        else:
            shutil.rmtree(top, ignore_errors=True)
    if failed:
        return 1
    return 0 if ran else 77


if __name__ == "__main__":
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: (harness.stop_all(), sys.exit(1)))
    sys.exit(main())
