#!/usr/bin/python3
"""The test world's insurer: an independent implementation of vitaled's open
insurer interface, written from docs/insurer-api.md (and docs/care-sheet.md
for the sheet model), not from the C code. When this file and the C code
disagree, the documentation decides.

    insurer.py --pki DIR --state DIR --control SOCK [--port N] [options]

See tests/insurer/README.md for the command line, the control socket's
commands and the files it writes. Standard library + cbor2 + cryptography.

Importable: Insurer (the server object), InsurerProcess (start one as a child
process, drive its control socket, read its ground truth; stopped by PID),
det_encode (deterministic CBOR, RFC 8949 section 4.2.1).
"""
import argparse
import atexit
import datetime as dt
import email.utils
import hashlib
import http.server
import json
import os
import re
import select
import shlex
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback
import uuid

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtensionOID, NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "world"))
import verify_sheet  # noqa: E402  (the model's rules, written from docs/care-sheet.md)

MAX_BODY = 4 * 1024 * 1024
MAX_SHEETS = 500
FUTURE_S = 300
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
BATCH_KEYS = {"v", "batch_id", "terminal_id", "practitioner_id", "created", "x5chain", "sheets"}
PROT = {bytes.fromhex("a10126"): "ES256", bytes.fromhex("a1013824"): "PS256"}
CODES = ("malformed", "signature", "certificate", "conflict", "invalid")
HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

# The sheet model's keys (docs/care-sheet.md, "The payload"): key -> (kind, required)
# kinds: uint, int, text, bool, bytes, list, map
SHEET = {"v": ("uint", 1), "id": ("text", 1), "amc": ("bool", 1), "nir": ("text", 1),
         "seq": ("uint", 1), "acts": ("list", 1), "mode": ("text", 1), "totals": ("map", 1),
         "at_date": ("text", 0), "created": ("uint", 1), "insurer": ("map", 1),
         "due_date": ("text", 1), "evidence": ("map", 0), "care_date": ("text", 1),
         "insurance": ("uint", 1), "birth_date": ("text", 0), "birth_rank": ("uint", 0),
         "prescriber": ("map", 0), "terminal_id": ("text", 1), "structure_id": ("text", 0),
         "tiers_payant": ("bool", 1), "practitioner_id": ("text", 1)}
SUBMAPS = {
    "totals": {"amc": ("int", 1), "amo": ("int", 1), "total": ("int", 1), "patient": ("int", 1)},
    "insurer": {"caisse": ("text", 1), "centre": ("text", 1), "regime": ("text", 1)},
    "evidence": {"read_at": ("uint", 0), "credential": ("bytes", 0), "card_serial": ("text", 0),
                 "device_answer": ("bytes", 0)},
    "prescriber": {"id": ("text", 0), "date": ("text", 0)},
}
ACT = {"code": ("text", 1), "date": ("text", 1), "amount": ("int", 1), "coef_milli": ("uint", 1)}
# model 2 (docs/care-sheet.md): "lines" of three kinds instead of "acts", the AMC as a map
SHEET2 = {k: v for k, v in SHEET.items() if k not in ("acts", "amc")}
SHEET2.update({"lines": ("list", 1), "amc": ("map", 0), "at_number": ("text", 0),
               "maternity_date": ("text", 0), "pathway": ("text", 0), "referrer_id": ("text", 0),
               "exemption": ("text", 0)})
SUBMAPS2 = dict(SUBMAPS, amc={"id": ("text", 0), "tiers_payant": ("bool", 1)})
LINES = {
    "act": dict(ACT, kind=("text", 1)),
    "medicine": {"kind": ("text", 1), "date": ("text", 1), "cip13": ("text", 1),
                 "service": ("text", 1), "quantity": ("uint", 1), "unit_price": ("int", 1),
                 "amount": ("int", 1)},
    "device": {"kind": ("text", 1), "date": ("text", 1), "lpp": ("text", 1),
               "quantity": ("uint", 1), "unit_price": ("int", 1), "amount": ("int", 1)},
}


# ---------------------------------------------------------------------------
# Deterministic CBOR (RFC 8949 section 4.2.1): shortest heads, definite lengths,
# map keys sorted by their encodings' bytes. Used to check that what arrived
# is deterministic (decode with cbor2, re-encode here, compare the bytes).

class NotDeterministic(ValueError):
    pass


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | ai]) + n.to_bytes(size, "big")
    raise NotDeterministic("integer too large")


def _float(x):
    for fmt, ai in (("e", 25), ("f", 26), ("d", 27)):
        try:
            b = struct.pack(">" + fmt, x)
        except (OverflowError, struct.error):
            continue
        if struct.unpack(">" + fmt, b)[0] == x or (x != x):
            return bytes([0xE0 | ai]) + b
    raise NotDeterministic("float")


def det_encode(o):
    if o is False:
        return b"\xf4"
    if o is True:
        return b"\xf5"
    if o is None:
        return b"\xf6"
    if isinstance(o, int):
        return _head(0, o) if o >= 0 else _head(1, -1 - o)
    if isinstance(o, bytes):
        return _head(2, len(o)) + o
    if isinstance(o, str):
        b = o.encode("utf-8")
        return _head(3, len(b)) + b
    if isinstance(o, (list, tuple)):
        return _head(4, len(o)) + b"".join(det_encode(x) for x in o)
    if isinstance(o, dict):
        items = sorted((det_encode(k), det_encode(v)) for k, v in o.items())
        return _head(5, len(o)) + b"".join(k + v for k, v in items)
    if isinstance(o, cbor2.CBORTag):
        return _head(6, o.tag) + det_encode(o.value)
    if isinstance(o, float):
        return _float(o)
    if isinstance(o, cbor2.CBORSimpleValue):
        return _head(7, o.value) if o.value < 24 else b"\xf8" + bytes([o.value])
    raise NotDeterministic("a %s is not in the model" % type(o).__name__)


def det_loads(data):
    """Decode data as exactly one deterministically encoded CBOR item, or raise."""
    obj = cbor2.loads(data)
    if det_encode(obj) != data:
        raise NotDeterministic("not deterministically encoded (RFC 8949 section 4.2.1)")
    return obj


def kind_ok(v, kind):
    if kind == "uint":
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, {"text": str, "bool": bool, "bytes": bytes, "list": list,
                          "map": dict}[kind])


def shape_problem(obj, spec, where):
    """The first problem of keys/types in obj against spec, or None."""
    if not isinstance(obj, dict):
        return "%s: not a map" % where
    for k in obj:
        if not isinstance(k, str):
            return "%s: a key that is not text" % where
        if k not in spec:
            return "%s.%s: not a key of the model" % (where, k)
    for k, (kind, req) in spec.items():
        if k not in obj:
            if req:
                return "%s.%s: missing" % (where, k)
        elif not kind_ok(obj[k], kind):
            return "%s.%s: not a %s" % (where, k, kind)
    return None


def utc(ts=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def jbytes(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()


def write_atomic(path, data):
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------
# Certificates

def _naive(ts):
    return dt.datetime.utcfromtimestamp(ts)


def cert_signed_by(cert, issuer):
    pub = issuer.public_key()
    try:
        h = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return False
    if not isinstance(h, HASHES):
        return False
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(h))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), h)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def is_ca(cert):
    try:
        bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        return False
    return bc.ca


class Chain:
    """The verdict on one x5chain, independent of time: trusted or why not,
    the validity window (every certificate, the CA included) and the names
    the signing certificate gives (subject serialNumber)."""

    def __init__(self, ders, anchors):
        self.problem = None
        self.not_before = None
        self.not_after = None
        self.serials = []
        certs = [x509.load_der_x509_certificate(d) for d in ders]
        self.leaf = certs[0]
        self.serials = [a.value for a in self.leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]
        try:
            ku = self.leaf.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
            if not (ku.digital_signature or ku.content_commitment):
                self.problem = "the signing certificate's key usage allows no signature"
                return
        except x509.ExtensionNotFound:
            pass
        path = list(certs)
        for i in range(len(certs) - 1):
            if certs[i].issuer != certs[i + 1].subject or not cert_signed_by(certs[i], certs[i + 1]):
                self.problem = "x5chain[%d] is not issued by x5chain[%d]" % (i, i + 1)
                return
            if not is_ca(certs[i + 1]):
                self.problem = "x5chain[%d] is not a CA" % (i + 1)
                return
        last = certs[-1]
        anchor = None
        for a in anchors:
            if a.public_bytes(serialization.Encoding.DER) == last.public_bytes(serialization.Encoding.DER):
                anchor = a
                break
        if anchor is None:
            for a in anchors:
                if last.issuer == a.subject and cert_signed_by(last, a):
                    anchor = a
                    path.append(a)
                    break
        if anchor is None:
            self.problem = "the chain does not lead to the insurer's practitioner CA"
            return
        if not is_ca(anchor):
            self.problem = "the practitioner CA is not a CA"
            return
        self.not_before = max(c.not_valid_before for c in path)
        self.not_after = min(c.not_valid_after for c in path)

    def names(self, practitioner_id):
        for s in self.serials:
            if s == practitioner_id or (len(s) == len(practitioner_id) + 1 and s[0].isdigit()
                                        and s[1:] == practitioner_id):
                return True
        return False


def check_signature(alg, key, tbs, sig):
    """None when the signature verifies, else why not."""
    try:
        if alg == "ES256":
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
                return "ES256 needs a P-256 key in x5chain[0]"
            if len(sig) != 64:
                return "ES256 signature is %d bytes, not 64" % len(sig)
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            key.verify(der, tbs, ec.ECDSA(hashes.SHA256()))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                return "PS256 needs an RSA key in x5chain[0]"
            key.verify(sig, tbs, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
    except (InvalidSignature, ValueError):
        return "the signature does not verify with x5chain[0]"
    return None


# ---------------------------------------------------------------------------
# Default beneficiaries for the rights check: the test world's virtual Vitale 2
# holders (tests/world/cards.py DEFAULT_HOLDERS), with their NIR keys.

def nir_full(n13):
    body = n13.upper().replace("2A", "19").replace("2B", "18")
    return n13 + "%02d" % (97 - int(body) % 97)


def default_beneficiaries():
    y = time.gmtime().tm_year
    whole = [{"code": "AMO", "from": "%d-01-01" % y, "to": "%d-12-31" % y}]
    return [
        {"nir": nir_full("2800575056123"), "birth_date": "1980-05-14", "birth_rank": 1,
         "regime": "01", "caisse": "751", "centre": "0042", "rights": whole,
         "amc": {"id": "12345678", "tiers_payant": True, "to": "%d-12-31" % y}},
        {"nir": nir_full("112032A004017"), "birth_date": "2012-03-02", "birth_rank": 1,
         "regime": "01", "caisse": "201", "centre": "0001", "rights": whole},
        {"nir": nir_full("2151113055123"), "birth_date": "2015-11-30", "birth_rank": 1,
         "regime": "02", "caisse": "130", "centre": "0550",
         "rights": [{"code": "AMO", "from": "%d-01-01" % (y - 2), "to": "%d-12-31" % (y - 2)}]},
    ]


# ---------------------------------------------------------------------------
# The insurer

class Reply:
    def __init__(self, status, body=b"", ctype="application/json", headers=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers or []


def err(status, code, reason, headers=None):
    return Reply(status, jbytes({"error": code, "reason": reason}), headers=headers)


class Insurer:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.host = args.host
        self.max_body = args.max_body
        self.anchors = []
        for p in args.practitioner_ca:
            with open(p, "rb") as f:
                self.anchors.extend(x509.load_pem_x509_certificates(f.read())
                                    if hasattr(x509, "load_pem_x509_certificates")
                                    else [x509.load_pem_x509_certificate(f.read())])
        self.cert, self.key = args.cert, args.key
        self.ctx = self.make_ctx(self.cert, self.key)
        self.state = args.state
        os.makedirs(os.path.join(self.state, "sheets"), exist_ok=True)
        self.held = {}          # id -> record
        self.held_order = []
        self.returns = {}       # terminal_id -> [return]
        self.cursor_token = uuid.uuid4().hex[:12]
        self.opp_log = []       # [("add"|"remove", serial)]
        self.opp_token = uuid.uuid4().hex[:12]
        self.idem = {}          # (cn, key) -> (sha256 of body, Reply)
        self.chains = {}        # tuple(x5chain) -> Chain or exception text
        self.keys = {}          # DER of x5chain[0] -> its public key
        self.faults = []        # [dict]
        self.rejects = {}       # sheet id -> (code, reason)
        self.marks = {}         # sheet id -> 400 error code
        self.returns_auto = args.returns_auto
        self.benef = default_beneficiaries()
        if args.beneficiaries:
            with open(args.beneficiaries, encoding="utf-8") as f:
                self.benef = json.load(f)
        if args.opposition:
            with open(args.opposition, encoding="utf-8") as f:
                self.opp_log = [("add", s) for s in json.load(f)]
        self.counters = {"requests": 0, "paths": {}, "batches": 0, "answers": {},
                         "faults": {}, "replays": 0, "conflicts_409": 0,
                         "sheets": {"accepted": 0, "duplicate": 0, "rejected": {}},
                         "connections": 0, "handshakes": 0, "handshake_failures": 0,
                         "last_handshake_error": None, "rights": 0, "returns_served": 0}
        self.load_state()
        self.sock = None
        self.listening = False
        self.stopping = False
        self.bind()
        if not args.closed:
            self.listen()

    # -- TLS and the listening socket ------------------------------------------------
    def make_ctx(self, cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.args.tls_max == "1.2":
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert, key)
        ctx.load_verify_locations(cafile=self.args.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def bind(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.args.port if self.sock is None else self.port))
        self.port = s.getsockname()[1]
        self.sock = s

    def listen(self):
        with self.lock:
            if not self.listening:
                self.sock.listen(128)
                self.listening = True

    def close_port(self):
        with self.lock:
            if self.listening:
                self.listening = False
                old = self.sock
                try:
                    old.close()
                except OSError:
                    pass
                self.sock = None
                for _ in range(50):
                    try:
                        self.sock = None
                        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        s.bind((self.host, self.port))
                        self.sock = s
                        break
                    except OSError:
                        s.close()
                        time.sleep(0.05)

    def serve(self):
        while not self.stopping:
            with self.lock:
                s = self.sock if self.listening else None
            if s is None:
                time.sleep(0.05)
                continue
            try:
                r, _, _ = select.select([s], [], [], 0.2)
                if not r:
                    continue
                conn, addr = s.accept()
            except (OSError, ValueError):
                continue
            with self.lock:
                self.counters["connections"] += 1
                ctx = self.ctx
            threading.Thread(target=self.connection, args=(conn, addr, ctx), daemon=True).start()

    def connection(self, conn, addr, ctx):
        conn.settimeout(10)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.lock:
                self.counters["handshake_failures"] += 1
                self.counters["last_handshake_error"] = str(e)
            self.log("handshake refused from %s: %s" % (addr[0], e))
            try:
                conn.close()
            except OSError:
                pass
            return
        cn = None
        for rdn in tls.getpeercert().get("subject", ()):
            for k, v in rdn:
                if k == "commonName":
                    cn = v
        with self.lock:
            self.counters["handshakes"] += 1
        tls.settimeout(self.args.idle_timeout)
        try:
            Handler(tls, addr, self, cn)
        except Exception:  # noqa: BLE001 - a connection's end is never the server's
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def log(self, msg):
        if self.args.quiet:
            return
        sys.stderr.write("insurer %s %s\n" % (utc(), msg))
        sys.stderr.flush()

    # -- state ------------------------------------------------------------------------
    def load_state(self):
        p = os.path.join(self.state, "held.json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                g = json.load(f)
            for r in g["sheets"]:
                self.held[r["id"]] = r
                self.held_order.append(r["id"])
        p = os.path.join(self.state, "returns.json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                g = json.load(f)
            self.returns = g["returns"]
            self.cursor_token = g["token"]
            self.opp_log = [tuple(x) for x in g.get("opposition", self.opp_log)]
            self.opp_token = g.get("opposition_token", self.opp_token)

    def save_state(self):
        """The ground truth: every sheet held, once (written atomically)."""
        sheets = [self.held[i] for i in self.held_order]
        write_atomic(os.path.join(self.state, "held.json"),
                     json.dumps({"version": 1, "updated": utc(), "count": len(sheets),
                                 "sheets": sheets}, indent=0).encode())
        write_atomic(os.path.join(self.state, "returns.json"),
                     json.dumps({"token": self.cursor_token, "returns": self.returns,
                                 "opposition": self.opp_log,
                                 "opposition_token": self.opp_token}).encode())

    def journal(self, entry):
        with open(os.path.join(self.state, "answers.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    def count_answer(self, status):
        k = str(status)
        self.counters["answers"][k] = self.counters["answers"].get(k, 0) + 1

    # -- faults -----------------------------------------------------------------------
    def take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if f["n"] > 0 and (f["path"] == "any" or path.startswith(f["path"])):
                    f["n"] -= 1
                    self.counters["faults"][f["kind"]] = self.counters["faults"].get(f["kind"], 0) + 1
                    if f["n"] == 0:
                        self.faults.remove(f)
                    return dict(f)
        return None

    def save_body(self, key, body):
        """--save-bodies DIR: every POST /v1/batches body as received, in
        order, as DIR/NNNNNN-KEY.cbor (KEY: the Idempotency-Key, "none" when
        absent); for a baseline that posts the same bytes again."""
        with self.lock:
            self.saved = getattr(self, "saved", 0) + 1
            n = self.saved
        key = "".join(c for c in (key or "none") if c.isalnum() or c == "-")[:64] or "none"
        with open(os.path.join(self.args.save_bodies, "%06d-%s.cbor" % (n, key)), "wb") as f:
            f.write(body)       # no fsync: a test's copy, not the ground truth

    # -- POST /v1/batches ---------------------------------------------------------------
    def batch(self, headers, body, cn, fault):
        """Judge a batch. Returns (Reply, journal entry or None)."""
        key = headers.get("Idempotency-Key")
        digest = hashlib.sha256(body).hexdigest()
        if key is not None:
            with self.lock:
                mem = self.idem.get((cn, key))
            if mem is not None:
                with self.lock:
                    self.counters["replays" if mem[0] == digest else "conflicts_409"] += 1
                if mem[0] == digest:
                    return mem[1], {"replay": True}
                return err(409, "idempotency_key",
                           "this Idempotency-Key came before with another body"), None
        reply, info = self.judge_batch(headers, body, cn, key)
        if key is not None and reply.status in (200, 400):
            with self.lock:
                self.idem.setdefault((cn, key), (digest, reply))
                reply = self.idem[(cn, key)][1]
        return reply, info

    def judge_batch(self, headers, body, cn, key):
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/cbor":
            return err(400, "content_type", "Content-Type must be application/cbor"), None
        try:
            b = det_loads(body)
        except Exception as e:  # noqa: BLE001 - any decoding failure is a verdict
            return err(400, "cbor", "not one deterministic CBOR item: %s" % e), None
        if not isinstance(b, dict):
            return err(400, "cbor", "the body is not a CBOR map"), None
        if not all(isinstance(k, str) for k in b) or set(b) != BATCH_KEYS:
            extra = sorted(str(k) for k in set(b) - BATCH_KEYS)
            missing = sorted(BATCH_KEYS - set(b))
            return err(400, "keys", "keys: missing %s, extra %s" % (missing, extra)), None
        if not kind_ok(b["v"], "uint") or b["v"] != 1:
            return err(400, "version", "v must be 1"), None
        bid = b["batch_id"]
        if not isinstance(bid, str) or not UUID4.match(bid):
            return err(400, "batch_id", "batch_id must be a lower-case UUID v4"), None
        if key != bid:
            return err(400, "idempotency_key", "Idempotency-Key must be the batch_id"), None
        tid = b["terminal_id"]
        if not isinstance(tid, str) or not 1 <= len(tid) <= 64 or \
                not all(0x20 <= ord(c) <= 0x7E for c in tid):
            return err(400, "terminal_id", "terminal_id: 1 to 64 printable characters"), None
        if tid != cn:
            return err(403, "terminal_id", "terminal_id %r is not the client certificate's CN %r"
                       % (tid, cn)), None
        pid = b["practitioner_id"]
        if not isinstance(pid, str) or not pid.isascii() or not pid.isdigit() or len(pid) not in (9, 11):
            return err(400, "practitioner_id", "practitioner_id: 9 or 11 digits"), None
        if not kind_ok(b["created"], "uint") or b["created"] > time.time() + FUTURE_S:
            return err(400, "created", "created: a uint, at most 300 s ahead"), None
        chain = b["x5chain"]
        if not isinstance(chain, list) or not chain or not all(isinstance(c, bytes) for c in chain):
            return err(400, "x5chain", "x5chain: an array of 1 or more byte strings"), None
        for i, c in enumerate(chain):
            try:
                x509.load_der_x509_certificate(c)
            except Exception:  # noqa: BLE001
                return err(400, "x5chain", "x5chain[%d] is not a DER certificate" % i), None
        sheets = b["sheets"]
        if not isinstance(sheets, list) or not all(isinstance(s, bytes) for s in sheets):
            return err(400, "sheets", "sheets: an array of byte strings"), None
        if not 1 <= len(sheets) <= MAX_SHEETS:
            return err(400, "limit", "%d sheets: 1 to %d" % (len(sheets), MAX_SHEETS)), None
        with self.lock:
            marks = dict(self.marks)
        if marks:
            for i, raw in enumerate(sheets):
                sid = peek_id(raw)
                if sid in marks:
                    return err(400, marks[sid], "sheets[%d] (%s) is marked: the batch is refused"
                               % (i, sid)), None
        ctx = {"batch_id": bid, "terminal_id": tid, "practitioner_id": pid,
               "x5chain": tuple(chain), "received": utc()}
        results = []
        changed = False
        with self.lock:
            for raw in sheets:
                r = self.judge_sheet(raw, ctx)
                results.append(r)
                if r["status"] == "accepted":
                    changed = True
                    self.counters["sheets"]["accepted"] += 1
                elif r["status"] == "duplicate":
                    changed = True
                    self.counters["sheets"]["duplicate"] += 1
                else:
                    rj = self.counters["sheets"]["rejected"]
                    rj[r["code"]] = rj.get(r["code"], 0) + 1
            if changed:
                self.save_state()
        reply = Reply(200, jbytes({"batch_id": bid, "received": ctx["received"], "results": results}))
        return reply, {"batch_id": bid, "results": [
            {k: v for k, v in r.items() if k != "reason"} for r in results]}

    def chain(self, ders):
        c = self.chains.get(ders)
        if c is None:
            try:
                c = Chain(list(ders), self.anchors)
            except Exception as e:  # noqa: BLE001
                c = "x5chain: %s" % e
            self.chains[ders] = c
        return c

    def judge_sheet(self, raw, ctx):
        def rej(sid, code, reason):
            return {"id": sid, "status": "rejected", "code": code, "reason": reason}
        # 1. malformed
        try:
            msg = cbor2.loads(raw)
        except Exception as e:  # noqa: BLE001
            return rej(None, "malformed", "not CBOR: %s" % e)
        payload = None
        s = None
        sid = None
        if isinstance(msg, cbor2.CBORTag) and msg.tag == 18 and isinstance(msg.value, list) \
                and len(msg.value) == 4 and isinstance(msg.value[2], bytes):
            payload = msg.value[2]
            try:
                s = cbor2.loads(payload)
                if isinstance(s, dict) and isinstance(s.get("id"), str) and len(s["id"]) <= 64:
                    sid = s["id"]
            except Exception:  # noqa: BLE001
                s = None
        try:
            if det_encode(msg) != raw:
                return rej(sid, "malformed", "the COSE_Sign1 is not deterministic CBOR")
        except NotDeterministic as e:
            return rej(sid, "malformed", "the COSE_Sign1: %s" % e)
        if not (isinstance(msg, cbor2.CBORTag) and msg.tag == 18):
            return rej(sid, "malformed", "not a tagged COSE_Sign1 (tag 18)")
        if not (isinstance(msg.value, list) and len(msg.value) == 4):
            return rej(sid, "malformed", "the COSE_Sign1 is not an array of 4")
        prot, unprot, payload, sig = msg.value
        if not isinstance(prot, bytes) or prot not in PROT:
            return rej(sid, "malformed", "protected header is not {1: -7} or {1: -37}")
        if unprot != {} or not isinstance(unprot, dict):
            return rej(sid, "malformed", "unprotected header is not empty")
        if not isinstance(payload, bytes) or not isinstance(sig, bytes):
            return rej(sid, "malformed", "payload or signature is not a byte string")
        try:
            det_loads(payload)
        except Exception as e:  # noqa: BLE001
            return rej(sid, "malformed", "payload: %s" % e)
        v2 = isinstance(s, dict) and s.get("v") == 2
        p = shape_problem(s, SHEET2 if v2 else SHEET, "sheet")
        if p is None:
            for k, spec in (SUBMAPS2 if v2 else SUBMAPS).items():
                if k in s:
                    p = shape_problem(s[k], spec, k)
                    if p:
                        break
        if p is None:
            where = "lines" if v2 else "acts"
            for i, a in enumerate(s[where]):
                kind = a.get("kind") if v2 and isinstance(a, dict) else "act"
                if kind not in LINES:
                    p = "%s[%d].kind: not act, medicine or device" % (where, i)
                else:
                    p = shape_problem(a, LINES[kind] if v2 else ACT, "%s[%d]" % (where, i))
                if p:
                    break
        if p is not None:
            return rej(sid, "malformed", p)
        if s["v"] not in (1, 2):
            return rej(sid, "malformed", "v is %d: not model 1 or 2" % s["v"])
        if not UUID4.match(s["id"]):
            return rej(sid, "malformed", "id is not a lower-case UUID v4")
        # 2. signature
        alg = PROT[prot]
        key = self.keys.get(ctx["x5chain"][0])
        if key is None:
            try:
                key = x509.load_der_x509_certificate(ctx["x5chain"][0]).public_key()
            except Exception as e:  # noqa: BLE001
                return rej(sid, "signature", "x5chain[0]: %s" % e)
            self.keys[ctx["x5chain"][0]] = key
        tbs = det_encode(["Signature1", prot, b"", payload])
        why = check_signature(alg, key, tbs, sig)
        if why:
            return rej(sid, "signature", why)
        # 3. certificate
        c = self.chain(ctx["x5chain"])
        if isinstance(c, str):
            return rej(sid, "certificate", c)
        if c.problem:
            return rej(sid, "certificate", c.problem)
        t = _naive(s["created"]) if s["created"] < 253402300799 else dt.datetime.max
        if t < c.not_before:
            return rej(sid, "certificate", "a certificate of the chain is not yet valid at the "
                       "sheet's creation (%s)" % utc(s["created"]))
        if t > c.not_after:
            return rej(sid, "certificate", "a certificate of the chain is expired at the sheet's "
                       "creation (%s)" % utc(s["created"]))
        if not c.names(ctx["practitioner_id"]):
            return rej(sid, "certificate", "x5chain[0] does not name practitioner %s"
                       % ctx["practitioner_id"])
        if s["practitioner_id"] != ctx["practitioner_id"]:
            return rej(sid, "certificate", "the sheet's practitioner %s is not the batch's %s"
                       % (s["practitioner_id"], ctx["practitioner_id"]))
        # 4. duplicate / conflict
        digest = hashlib.sha256(raw).hexdigest()
        h = self.held.get(sid)
        if h is not None:
            if h["sha256"] == digest:
                h["duplicates"] = h.get("duplicates", 0) + 1
                return {"id": sid, "status": "duplicate"}
            return rej(sid, "conflict", "another sheet with this id is held (batch %s)" % h["batch_id"])
        # 5. invalid
        problems = []
        try:
            verify_sheet.check_rules(s, problems, {})
        except Exception as e:  # noqa: BLE001
            problems.append("sheet: %s" % e)
        if s["created"] > time.time() + FUTURE_S:
            problems.append("created: in the future")
        if problems:
            return rej(sid, "invalid", "; ".join(problems))
        forced = self.rejects.get(sid)
        if forced:
            return rej(sid, forced[0], forced[1])
        # 6. accepted
        rec = {"id": sid, "sha256": digest, "size": len(raw), "batch_id": ctx["batch_id"],
               "terminal_id": ctx["terminal_id"], "practitioner_id": ctx["practitioner_id"],
               "received": ctx["received"], "amo": s["totals"]["amo"], "return": None}
        self.held[sid] = rec
        self.held_order.append(sid)
        tmp = os.path.join(self.state, "sheets", sid + ".cose")
        with open(tmp + ".tmp", "wb") as f:
            f.write(raw)
        os.replace(tmp + ".tmp", tmp)
        if self.returns_auto in ("paid", "refused"):
            self.add_return(sid, self.returns_auto, {})
        return {"id": sid, "status": "accepted"}

    # -- returns ------------------------------------------------------------------------
    def add_return(self, sid, kind, opts):
        rec = self.held[sid]
        day = opts.get("date") or time.strftime("%Y-%m-%d", time.gmtime())
        if kind == "paid":
            r = {"sheet_id": sid, "kind": "paid", "amount": int(opts.get("amount", rec["amo"])),
                 "date": day}
        else:
            r = {"sheet_id": sid, "kind": "refused", "code": opts.get("code", "rights"),
                 "reason": opts.get("reason", "no rights open on the care date"), "date": day}
        rec["return"] = r
        self.returns.setdefault(rec["terminal_id"], []).append(r)

    def get_returns(self, query, cn):
        after = (query.get("after") or [""])[0]
        lim = (query.get("limit") or ["100"])[0]
        if not lim.isdigit() or not 1 <= int(lim) <= 1000:
            return err(400, "limit", "limit: 1 to 1000")
        lim = int(lim)
        with self.lock:
            lst = self.returns.get(cn, [])
            n = 0
            if after:
                tok, _, num = after.partition(".")
                if tok != self.cursor_token or not num.isdigit() or int(num) > len(lst):
                    return err(400, "cursor", "unknown cursor")
                n = int(num)
            out = lst[n:n + lim]
            self.counters["returns_served"] += len(out)
            return Reply(200, jbytes({"returns": out, "next": "%s.%d" % (self.cursor_token, n + len(out))}))

    # -- opposition ---------------------------------------------------------------------
    def opp_set(self, n):
        s = set()
        for op, serial in self.opp_log[:n]:
            if op == "add":
                s.add(serial)
            else:
                s.discard(serial)
        return s

    def get_opposition(self, query):
        after = (query.get("after") or [""])[0]
        with self.lock:
            n = 0
            if after:
                tok, _, num = after.partition(".")
                if tok != self.opp_token or not num.isdigit() or int(num) > len(self.opp_log):
                    return err(400, "cursor", "unknown cursor")
                n = int(num)
            then, now = self.opp_set(n), self.opp_set(len(self.opp_log))
            return Reply(200, jbytes({"added": sorted(now - then), "removed": sorted(then - now),
                                      "next": "%s.%d" % (self.opp_token, len(self.opp_log))}))

    # -- rights -------------------------------------------------------------------------
    def rights(self, headers, body):
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return err(400, "content_type", "Content-Type must be application/json")
        try:
            q = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return err(400, "json", "not JSON")
        if not isinstance(q, dict):
            return err(400, "json", "not a JSON object")
        allowed = {"nir", "birth_date", "birth_rank", "care_date"}
        if set(q) - allowed or not {"nir", "birth_date", "care_date"} <= set(q):
            return err(400, "keys", "keys: nir, birth_date, care_date, birth_rank (optional)")
        if not isinstance(q["nir"], str) or len(q["nir"]) != 15:
            return err(400, "nir", "nir: 15 characters")
        for k in ("birth_date", "care_date"):
            if not isinstance(q[k], str) or not DATE.match(q[k]):
                return err(400, k, "%s: YYYY-MM-DD" % k)
        rank = q.get("birth_rank", 1)
        if not isinstance(rank, int) or isinstance(rank, bool) or not 1 <= rank <= 9:
            return err(400, "birth_rank", "birth_rank: 1 to 9")
        with self.lock:
            self.counters["rights"] += 1
            for b in self.benef:
                if b["nir"] == q["nir"] and b["birth_date"] == q["birth_date"] and \
                        b.get("birth_rank", 1) == rank:
                    out = {"nir": b["nir"], "regime": b["regime"], "caisse": b["caisse"],
                           "centre": b["centre"], "rights": b.get("rights", [])}
                    if b.get("amc"):
                        out["amc"] = b["amc"]
                    out["checked"] = utc()
                    return Reply(200, jbytes(out))
        return err(404, "unknown", "no such beneficiary")

    # -- control ------------------------------------------------------------------------
    def control(self, line):
        try:
            words = shlex.split(line)
        except ValueError as e:
            return "err %s" % e
        if not words:
            return "err empty"
        cmd, rest = words[0], words[1:]
        opts = dict(w.split("=", 1) for w in rest if "=" in w)
        pos = [w for w in rest if "=" not in w]
        try:
            return self.command(cmd, pos, opts)
        except (ValueError, KeyError, IndexError, OSError, ssl.SSLError) as e:
            return "err %s: %s" % (type(e).__name__, e)

    def command(self, cmd, pos, opts):
        def n_of(default=1):
            return int(pos[0]) if pos else int(opts.get("n", default))

        def fault(kind, **kw):
            f = {"kind": kind, "n": n_of(), "path": opts.get("path", "/v1/")}
            f.update(kw)
            with self.lock:
                self.faults.append(f)
            return "ok"
        if cmd == "ping":
            return "ok pong"
        if cmd == "fail":                  # fail STATUS [N] [retry_after=S|date:S] [path=P] [process=0|1]
            status = int(pos.pop(0))
            return fault("status", status=status, retry_after=opts.get("retry_after"),
                         process=opts.get("process", "0") == "1")
        if cmd == "delay":                 # delay SECONDS [N] [process=1]
            secs = float(pos.pop(0))
            return fault("delay", seconds=secs, process=opts.get("process", "1") == "1")
        if cmd in ("reset", "truncate"):   # reset [N] [at=BYTES] [process=1]
            return fault(cmd, at=opts.get("at"), process=opts.get("process", "1") == "1")
        if cmd == "garbage":               # garbage [N] kind=html|notjson|empty|wrongid|short|status|order
            k = opts.get("kind", "html")
            if k not in ("html", "notjson", "empty", "wrongid", "short", "status", "order"):
                return "err unknown garbage kind"
            return fault("garbage", garbage=k, process=opts.get("process", "1") == "1")
        if cmd == "clear":
            with self.lock:
                self.faults = []
            return "ok"
        if cmd == "faults":
            with self.lock:
                return "ok " + json.dumps(self.faults)
        if cmd == "reject":                # reject ID [CODE] [reason=TEXT]
            code = pos[1] if len(pos) > 1 else "invalid"
            if code not in CODES:
                return "err code must be one of %s" % ", ".join(CODES)
            with self.lock:
                self.rejects[pos[0]] = (code, opts.get("reason", "refused by the test (%s)" % code))
            return "ok"
        if cmd == "unreject":
            with self.lock:
                self.rejects.pop(pos[0], None)
            return "ok"
        if cmd == "mark":                  # mark ID [ERROR]
            with self.lock:
                self.marks[pos[0]] = pos[1] if len(pos) > 1 else "sheets"
            return "ok"
        if cmd == "unmark":
            with self.lock:
                self.marks.pop(pos[0], None)
            return "ok"
        if cmd == "max_body":
            with self.lock:
                self.max_body = int(pos[0])
            return "ok"
        if cmd == "listen":
            self.listen()
            return "ok %d" % self.port
        if cmd == "close":
            self.close_port()
            return "ok"
        if cmd == "server_cert":           # server_cert CERT KEY
            ctx = self.make_ctx(pos[0], pos[1])
            with self.lock:
                self.ctx = ctx
            return "ok"
        if cmd == "counters":
            with self.lock:
                c = json.loads(json.dumps(self.counters))
                c["held"] = len(self.held)
                c["listening"] = self.listening
                c["port"] = self.port
            return "ok " + json.dumps(c, sort_keys=True)
        if cmd == "reset_counters":
            with self.lock:
                for k, v in self.counters.items():
                    self.counters[k] = {} if isinstance(v, dict) else (None if v is None or isinstance(v, str) else 0)
                self.counters["sheets"] = {"accepted": 0, "duplicate": 0, "rejected": {}}
            return "ok"
        if cmd == "held":
            with self.lock:
                return "ok %d" % len(self.held)
        if cmd in ("pay", "refuse"):       # pay ID...|all [amount=N] [date=D]; refuse ... [code=] [reason=]
            kind = "paid" if cmd == "pay" else "refused"
            n = 0
            with self.lock:
                ids = [i for i in self.held_order if self.held[i]["return"] is None] \
                    if pos == ["all"] else pos
                for sid in ids:
                    if sid not in self.held:
                        return "err %s is not held" % sid
                    self.add_return(sid, kind, opts)
                    n += 1
                self.save_state()
            return "ok %d" % n
        if cmd == "return":                # return TERMINAL JSON: any return object, as is
            with self.lock:
                self.returns.setdefault(pos[0], []).append(json.loads(pos[1]))
                self.save_state()
            return "ok"
        if cmd == "returns_auto":
            if pos[0] not in ("off", "paid", "refused"):
                return "err off|paid|refused"
            self.returns_auto = pos[0]
            return "ok"
        if cmd in ("oppose", "unoppose"):
            with self.lock:
                for s in pos:
                    self.opp_log.append(("add" if cmd == "oppose" else "remove", s))
                self.save_state()
            return "ok"
        if cmd == "beneficiary":           # beneficiary JSON
            with self.lock:
                self.benef.append(json.loads(pos[0]))
            return "ok"
        if cmd == "quit":
            self.stopping = True
            return "ok"
        return "err unknown command %s" % cmd

    def control_server(self, path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(16)

        def client(c):
            with c, c.makefile("rwb") as f:
                for line in f:
                    ans = self.control(line.decode("utf-8", "replace").strip())
                    f.write((ans + "\n").encode())
                    f.flush()
        while not self.stopping:
            try:
                c, _ = s.accept()
            except OSError:
                continue
            threading.Thread(target=client, args=(c,), daemon=True).start()


def peek_id(raw):
    try:
        m = cbor2.loads(raw)
        s = cbor2.loads(m.value[2])
        return s.get("id")
    except Exception:  # noqa: BLE001
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vitaled-test-insurer/1"
    sys_version = ""

    def __init__(self, sock, addr, insurer, cn):
        self.insurer = insurer
        self.cn = cn
        super().__init__(sock, addr, insurer)

    def log_message(self, fmt, *a):
        pass

    def handle_expect_100(self):
        n = self.content_length()
        if n is not None and n > self.insurer.max_body:
            self.count()
            self.answer(err(413, "size", "the body is over %d bytes" % self.insurer.max_body))
            self.close_connection = True
            return False
        return super().handle_expect_100()

    def content_length(self):
        v = self.headers.get("Content-Length")
        if v is None or not v.strip().isdigit():
            return None
        return int(v)

    def count(self):
        ins = self.insurer
        with ins.lock:
            ins.counters["requests"] += 1
            p = self.path.split("?")[0]
            ins.counters["paths"][p] = ins.counters["paths"].get(p, 0) + 1
            if p == "/v1/batches" and self.command == "POST":
                ins.counters["batches"] += 1

    def read_body(self):
        """The body, or a Reply (413) when it is over the limit."""
        limit = self.insurer.max_body
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(100)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1000) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                if len(out) + size > limit:
                    self.close_connection = True
                    return err(413, "size", "the body is over %d bytes" % limit)
                out += self.rfile.read(size)
                self.rfile.readline(10)
            return bytes(out)
        n = self.content_length() or 0
        if n > limit:
            left = n
            while left > 0 and left < 64 << 20:   # drain so that the terminal reads the 413
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
            if left:
                self.close_connection = True
            return err(413, "size", "the body is over %d bytes" % limit)
        return self.rfile.read(n)

    def answer(self, reply, fault=None):
        ins = self.insurer
        with ins.lock:
            ins.count_answer(reply.status)
        body = reply.body
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in reply.headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        if fault and fault["kind"] in ("reset", "truncate"):
            self._headers_buffer.append(b"\r\n")
            whole = b"".join(self._headers_buffer) + body
            self._headers_buffer = []
            at = int(fault["at"]) if fault.get("at") else len(whole) - max(1, len(body) // 2)
            at = max(0, min(at, len(whole) - 1))
            try:
                self.wfile.write(whole[:at])
                self.wfile.flush()
                if fault["kind"] == "reset":
                    _rst(self.connection)
                else:
                    _fin(self.connection)
            except OSError:
                pass
            self.close_connection = True
            return
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        ins = self.insurer
        self.count()
        from urllib.parse import parse_qs, urlsplit
        u = urlsplit(self.path)
        path, query = u.path, parse_qs(u.query, keep_blank_values=True)
        routes = {"/v1/batches": "POST", "/v1/rights": "POST", "/v1/returns": "GET",
                  "/v1/opposition": "GET"}
        body = b""
        if method == "POST":
            body = self.read_body()
            if isinstance(body, Reply):
                self.answer(body)
                return
        if path not in routes:
            self.answer(err(404, "not_found", "no such path"))
            return
        if routes[path] != method:
            self.answer(err(405, "method", "%s takes %s" % (path, routes[path])))
            return
        if path == "/v1/batches" and method == "POST" and ins.args.save_bodies:
            ins.save_body(self.headers.get("Idempotency-Key"), body)
        fault = ins.take_fault(path)
        info = None
        if fault and not fault["process"]:
            reply = None            # not judged: the fault's answer only
        elif path == "/v1/batches":
            reply, info = ins.batch(self.headers, body, self.cn, fault)
        elif path == "/v1/rights":
            reply = ins.rights(self.headers, body)
        elif path == "/v1/returns":
            reply = ins.get_returns(query, self.cn)
        else:
            reply = ins.get_opposition(query)
        shown = reply
        if fault:
            if fault["kind"] == "status":
                shown = self.fault_reply(fault, path)
            elif fault["kind"] == "delay":
                time.sleep(fault["seconds"])
            elif fault["kind"] == "garbage":
                shown = garbage(reply, fault["garbage"])
            if shown is None:       # a fault that was not to judge the request
                shown = err(503, "fault", "not judged (injected by the test)")
        if path == "/v1/batches":
            entry = {"time": utc(), "terminal": self.cn, "key": self.headers.get("Idempotency-Key"),
                     "status": shown.status, "judged_status": reply.status if reply else None,
                     "fault": fault["kind"] if fault else None}
            if info:
                entry.update(info)
            if reply is not None and reply.status != 200:
                try:
                    entry["error"] = json.loads(reply.body).get("error")
                except ValueError:
                    pass
            with ins.lock:
                ins.journal(entry)
        ins.log("%s %s %s -> %d%s" % (self.cn, method, path, shown.status,
                                      " (fault %s)" % fault["kind"] if fault else ""))
        self.answer(shown, fault if fault and fault["kind"] in ("reset", "truncate") else None)

    def fault_reply(self, fault, path):
        hdrs = []
        ra = fault.get("retry_after")
        if ra:
            if ra.startswith("date:"):
                hdrs.append(("Retry-After", email.utils.formatdate(time.time() + float(ra[5:]),
                                                                   usegmt=True)))
            else:
                hdrs.append(("Retry-After", ra))
        return err(fault["status"], "fault", "injected by the test (%d)" % fault["status"], hdrs)


def _rst(tls):
    """Close the TCP connection under a TLS socket with a reset (no close_notify)."""
    fd = tls.detach() if hasattr(tls, "detach") else tls.fileno()
    s = socket.socket(fileno=fd)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def _fin(tls):
    """End the TCP connection under a TLS socket without close_notify."""
    fd = tls.detach()
    s = socket.socket(fileno=fd)
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def garbage(reply, kind):
    if kind == "html":
        return Reply(200, b"<html><body>Service temporarily unavailable</body></html>", "text/html")
    if kind == "notjson":
        return Reply(200, b'{"batch_id": "', "application/json")
    if kind == "empty":
        return Reply(200, b"", "application/json")
    try:
        j = json.loads(reply.body) if reply is not None else {}
    except ValueError:
        j = {}
    if not isinstance(j, dict) or "results" not in j:
        j = {"batch_id": str(uuid.uuid4()), "received": utc(), "results": []}
    if kind == "wrongid":
        j["batch_id"] = str(uuid.uuid4())
    elif kind == "short":
        j["results"] = j["results"][:-1]
    elif kind == "status":
        for r in j["results"]:
            r["status"] = "maybe"
    elif kind == "order":
        j["results"] = list(reversed(j["results"]))
        if len(j["results"]) == 1:
            j["results"][0]["id"] = str(uuid.uuid4())
    return Reply(200, jbytes(j))


# ---------------------------------------------------------------------------
# Running it

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="insurer.py", description="vitaled's test insurer")
    ap.add_argument("--pki", help="a directory made by mkpki.py init: takes server.pem, "
                    "server.key.pem, client-ca.pem, practitioner-ca.pem from it")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--client-ca")
    ap.add_argument("--practitioner-ca", action="append", default=[])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--state", required=True, help="directory for held.json, sheets/, answers.jsonl")
    ap.add_argument("--control", required=True, help="control socket path (UNIX)")
    ap.add_argument("--ready-file", help="written (JSON) once the insurer is up")
    ap.add_argument("--closed", action="store_true", help="start with the port closed (bound, "
                    "not listening): connections are refused until 'listen'")
    ap.add_argument("--max-body", type=int, default=MAX_BODY)
    ap.add_argument("--returns-auto", choices=("off", "paid", "refused"), default="off")
    ap.add_argument("--beneficiaries", help="JSON list of beneficiaries for /v1/rights")
    ap.add_argument("--opposition", help="JSON list of serials in opposition at start")
    ap.add_argument("--tls-max", choices=("1.2", "1.3"), default="1.3")
    ap.add_argument("--idle-timeout", type=float, default=35)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--save-bodies", metavar="DIR", help="keep every POST /v1/batches body as "
                    "received in DIR (NNNNNN-IDEMPOTENCYKEY.cbor); nothing else changes")
    a = ap.parse_args(argv)
    if a.save_bodies:
        os.makedirs(a.save_bodies, exist_ok=True)
    if a.pki:
        a.cert = a.cert or os.path.join(a.pki, "server.pem")
        a.key = a.key or os.path.join(a.pki, "server.key.pem")
        a.client_ca = a.client_ca or os.path.join(a.pki, "client-ca.pem")
        if not a.practitioner_ca:
            a.practitioner_ca = [os.path.join(a.pki, "practitioner-ca.pem")]
    if not (a.cert and a.key and a.client_ca and a.practitioner_ca):
        ap.error("--pki, or all of --cert --key --client-ca --practitioner-ca")
    return a


def main(argv):
    args = parse_args(argv[1:])
    ins = Insurer(args)
    signal.signal(signal.SIGTERM, lambda *_: setattr(ins, "stopping", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(ins, "stopping", True))
    threading.Thread(target=ins.control_server, args=(args.control,), daemon=True).start()
    threading.Thread(target=ins.serve, daemon=True).start()
    deadline = time.time() + 5
    while not os.path.exists(args.control) and time.time() < deadline:
        time.sleep(0.01)
    ready = {"pid": os.getpid(), "host": args.host, "port": ins.port, "control": args.control,
             "url": "https://%s:%d/" % (args.host, ins.port), "listening": ins.listening,
             "state": args.state}
    if args.ready_file:
        write_atomic(args.ready_file, json.dumps(ready).encode())
    print("ready port=%d control=%s" % (ins.port, args.control), flush=True)
    while not ins.stopping:
        time.sleep(0.1)
    try:
        os.unlink(args.control)
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------------------
# For tests: one insurer as a child process

_children = set()


def _kill_children():
    for p in list(_children):
        try:
            p.kill()
            p.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        _children.discard(p)


atexit.register(_kill_children)


class InsurerProcess:
    """insurer.py in a child process. Stopped by PID on stop(), at exit, and (for
    the main thread) by the kernel if the test dies (PR_SET_PDEATHSIG)."""

    def __init__(self, pki, state, port=0, closed=False, extra=(), log=None):
        os.makedirs(state, exist_ok=True)
        self.state = state
        self.control_path = os.path.join(state, "control.sock")
        ready = os.path.join(state, "ready.json")
        try:
            os.unlink(ready)
        except FileNotFoundError:
            pass
        cmd = [sys.executable if os.path.basename(sys.executable).startswith("python")
               else "/usr/bin/python3", os.path.abspath(__file__), "--pki", pki, "--state", state,
               "--control", self.control_path, "--ready-file", ready, "--port", str(port)]
        if closed:
            cmd.append("--closed")
        cmd += list(extra)
        self.logf = open(log or os.path.join(state, "insurer.log"), "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=self.logf,
                                     preexec_fn=_pdeathsig)
        _children.add(self.proc)
        deadline = time.time() + 15
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("the insurer did not start (see %s)" % self.logf.name)
            time.sleep(0.02)
        with open(ready) as f:
            r = json.load(f)
        self.pid, self.port, self.url = self.proc.pid, r["port"], r["url"]

    def ctl(self, line):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(self.control_path)
            s.sendall(line.encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                d = s.recv(65536)
                if not d:
                    break
                buf += d
        ans = buf.decode().strip()
        if not ans.startswith("ok"):
            raise RuntimeError("insurer control %r: %s" % (line, ans))
        return ans[3:]

    def counters(self):
        return json.loads(self.ctl("counters"))

    def held(self):
        with open(os.path.join(self.state, "held.json")) as f:
            return json.load(f)

    def answers(self):
        try:
            with open(os.path.join(self.state, "answers.jsonl")) as f:
                return [json.loads(x) for x in f]
        except FileNotFoundError:
            return []

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _children.discard(self.proc)
        self.logf.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _pdeathsig():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
