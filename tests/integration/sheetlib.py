"""Shared pieces of the care-sheet integration tests (test_sheets, test_torture,
test_ioerror, test_diskfull) and of tests/bench/bench_sheets.py: signer keys
made here, a vitaled configuration, sheet parameters, calls that return
(error, parameters), export and independent verification
(tests/world/verify_sheet.py).

Processes are started through harness.py, which stops every one of them by
PID on every exit path.
"""
import base64
import datetime as dt
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "world"))

import harness  # noqa: E402
import verify_sheet  # noqa: E402

IFACE = "io.vitaled.Terminal."
PRACTITIONER = "81000123456"   # 11 digits: an RPPS-shaped number
STRUCTURE = "751234567"
INSURER = {"regime": "01", "caisse": "751", "centre": "0012"}
# fictitious NIRs whose keys check (13 digits + 97 - n mod 97)
NIRS = ["184127645108946", "280057505612389", "151113055123336"]


def nir_full(n13):
    body = n13.upper().replace("2A", "19").replace("2B", "18")
    return n13 + "%02d" % (97 - int(body) % 97)


def make_key(dirpath, name="prat", password=None):
    """An EC P-256 key (PEM, mode 0600) and a self-signed certificate for it."""
    k = ec.generate_private_key(ec.SECP256R1())
    kp = os.path.join(dirpath, name + ".key.pem")
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    with open(kp, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    os.chmod(kp, 0o600)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dr Test"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, PRACTITIONER)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(k.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .sign(k, hashes.SHA256()))
    cp = os.path.join(dirpath, name + ".cert.pem")
    with open(cp, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp, k.public_key()


def conf(key_path=None, extra="", mode="clinic", log_level="info"):
    signer = ("[signer]\nbackend = file\nkey_file = %s\n" % key_path) if key_path else ""
    return ("[daemon]\nmode = %s\nlog_level = %s\n%s"
            "[practitioner]\nid = %s\nstructure = %s\n%s" %
            (mode, log_level, signer, PRACTITIONER, STRUCTURE, extra))


def till_part(acts=(("C", 1, 2650),), care_date=None,
              tiers_payant=False, amo=None, insurer=True, **extra):
    """The till's part of a sheet: acts (code, coefficient, cents[, date]) and totals that add up."""
    a = []
    for act in acts:
        d = {"code": act[0], "coefficient": act[1], "amount": act[2]}
        if len(act) > 3:
            d["date"] = act[3]
        a.append(d)
    total = sum(x["amount"] for x in a)
    amo = total * 7 // 10 if amo is None else amo
    s = {"insurance": "maladie", "acts": a, "amc": False, "tiers_payant": tiers_payant,
         "totals": {"total": total, "amo": amo, "amc": 0, "patient": total - amo}}
    if insurer:
        s["insurer"] = dict(INSURER)
    if care_date:
        s["care_date"] = care_date
    s.update(extra)
    return s


def degraded(nir=NIRS[0], **kw):
    s = till_part(**kw)
    s["nir"] = nir
    return {"sheet": s, "degraded": True}


def call(d, method, params=None, timeout=30.0):
    """(error name or None, parameters) of one call on a fresh connection."""
    return d.result(method, params, timeout=timeout)


def export(d, sheet_id):
    err, r = call(d, "ExportSheet", {"id": sheet_id})
    if err:
        raise harness.Failure("ExportSheet %s: %s %r" % (sheet_id, err, r))
    return base64.b64decode(r["cose"])


def verify(data, pub):
    """Problems found by the independent verifier (empty: valid)."""
    problems, info = verify_sheet.verify(data, pub)
    return problems, info


def check_stored(d, meta, pub):
    """The stored sheet meta["id"] decrypts (GetSheet), its export verifies
    independently, and what was signed is what the queue says: id, number,
    practitioner, care date and due date. Returns the problems (empty: ok)."""
    sid = meta["id"]
    err, g = call(d, "GetSheet", {"id": sid})
    if err or g["sheet"].get("id") != sid:
        return ["GetSheet %s: %s" % (sid, err)]
    problems, info = verify(export(d, sid), pub)
    if not info.get("signature_ok"):
        problems.append("signature not verified")
    s = info.get("sheet") or {}
    for k_meta, k_sheet in (("id", "id"), ("seq", "seq"), ("practitioner_id", "practitioner_id"),
                            ("care_date", "care_date"), ("due_date", "due_date")):
        if s.get(k_sheet) != meta.get(k_meta):
            problems.append("signed %s %r, stored %r" % (k_sheet, s.get(k_sheet), meta.get(k_meta)))
    return problems


def list_all(d, **filters):
    out, after = [], 0
    while True:
        p = dict(filters, limit=1000)
        if after:
            p["after"] = after
        err, r = call(d, "ListSheets", p)
        if err:
            raise harness.Failure("ListSheets: %s %r" % (err, r))
        out += r["sheets"]
        if not r["more"]:
            return out
        after = r["sheets"][-1]["cursor"]


def check_seqs(sheets, what=""):
    """Daily sequence numbers unique and consecutive (1..n) per practitioner and care date."""
    groups = {}
    for m in sheets:
        if m["state"] == "draft":
            continue
        groups.setdefault((m["practitioner_id"], m["care_date"]), []).append(m["seq"])
    for k, seqs in groups.items():
        if sorted(seqs) != list(range(1, len(seqs) + 1)):
            raise harness.Failure("%s: sequence numbers of %s are not 1..%d: %s"
                                  % (what, k, len(seqs), sorted(seqs)[:50]))
    return groups
