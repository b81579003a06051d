#!/usr/bin/python3
"""The paper duplicata (issue 12; docs/care-sheet.md "The paper duplicata"):
PrintSheet and `vitalectl sheet print ID -o FILE`, read back the way a
person and a scanner would:

  small    a sheet of two acts: one A4 page (pdfinfo); its text (pdftotext)
           has DUPLICATA, the practice's name and address, the masked NIR
           and never the full one, the care date, the sequence number, the
           due date, each line and the parts paid by whom; the page drawn
           (pdftoppm) and its QR code decoded (zbarimg) give exactly the
           signed bytes ExportSheet gives, which the independent verifier
           (tests/world/verify_sheet.py) accepts with the signer's key
  big      32 acts: the signed bytes do not fit a code a scanner reads: the
           code holds the id and the SHA-256 of those bytes, printed too
  pharmacy a model 2 sheet: two medicines (CIP13, rates PH4 and PH7), a
           device (LPP), a PH7 act, an AMC with its number and tiers payant:
           each line's code, quantity × unit price and amount on the page
  refused  an unknown id: SheetNotFound; a bad id; vitalectl without -o
           (a draft, NotSigned: test_opposition.py has a draft)

Needs pdftotext, pdftoppm, pdfinfo (poppler-utils) and zbarimg (zbar-tools):
exit 77 without them.
"""
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sheetlib as sl  # noqa: E402
from sheetlib import harness, call  # noqa: E402

check = harness.check
NAME = "Cabinet du Dr Martin"
ADDRESS = "12 rue des Lilas, 75011 Paris"
G = {}


def run(*argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise harness.Failure("%s: exit %d: %s" % (argv[0], p.returncode, p.stderr.strip()))
    return p.stdout


def read_back(pdf, tag):
    """(the page's text, the QR code's text, pages) of a duplicata file."""
    pages = [ln for ln in run("pdfinfo", pdf).splitlines() if ln.startswith("Pages:")]
    text = run("pdftotext", "-layout", pdf, "-")
    png = os.path.join(G["tmp"], tag)
    # 300 dpi: a version-30 code's modules (about 0.4 mm) are 5 pixels wide;
    # at 200 dpi zbarimg missed one now and then. Only the QR decoder runs
    # (zbar's DataBar decoder once asserted on this page and found nothing).
    run("pdftoppm", "-png", "-r", "300", "-singlefile", pdf, png)
    code = run("zbarimg", "--raw", "-q", "-Sdisable", "-Sqrcode.enable", png + ".png").strip()
    return text, code, pages[0].split()[1] if pages else "?"


def exported(d, sid):
    return sl.export(d, sid)


def t_small():
    d = G["d"]
    nir = sl.NIRS[1]
    err, r = call(d, "CreateSheet", sl.degraded(nir=nir, acts=(("C", 1, 2650), ("MCS", 1, 500)),
                                                  tiers_payant=True))
    check(err is None, "CreateSheet: %s %r" % (err, r))
    pdf = os.path.join(G["tmp"], "duplicata.pdf")
    p = d.ctl("sheet", "print", r["id"], "-o", pdf, check_rc=0)
    check("duplicata of sheet %s" % r["id"] in p.stdout, "vitalectl sheet print: %s" % p.stdout.strip())
    text, code, pages = read_back(pdf, "small")
    check(pages == "1", "one page: %s" % pages)
    flat = " ".join(text.split())
    dd = r["care_date"].split("-")
    due = r["due_date"].split("-")
    for want in ("DUPLICATA", NAME, ADDRESS, nir[:3] + "*" * 12, "Date des soins : %s/%s/%s" % (dd[2], dd[1], dd[0]),
                 "N° de séquence : %d" % r["seq"], "transmettre avant le : %s/%s/%s" % (due[2], due[1], due[0]),
                 "26,50 €", "5,00 €", "Total 31,50 €", "Part Assurance Maladie (AMO) 22,05 €",
                 "Part complémentaire (AMC) 0,00 €", "Part du patient 9,45 €", "R.161-47", r["id"],
                 "81000123456"):
        check(want in flat, "the page says %r" % want)
    check(nir not in text and nir[:13] not in text, "no full NIR on the page")
    cose = exported(d, r["id"])
    check(code.startswith("VITALED-FSE:1:"), "the code holds the signed sheet: %s..." % code[:20])
    check(base64.b64decode(code[len("VITALED-FSE:1:"):], validate=True) == cose,
          "the code decodes to exactly the %d bytes ExportSheet gives" % len(cose))
    problems, info = sl.verify(base64.b64decode(code[len("VITALED-FSE:1:"):]), G["pub"])
    check(not problems and info.get("signature_ok"), "the code's bytes verify: %r" % problems)
    digest = hashlib.sha256(cose).hexdigest()
    check(" ".join(digest[i:i + 16] for i in range(0, 64, 16)) in text, "the SHA-256 printed")
    # the API, as a till calls it
    t0 = time.monotonic()
    err, a = call(d, "PrintSheet", {"id": r["id"]})
    ms = (time.monotonic() - t0) * 1000
    raw = base64.b64decode(a["pdf"])
    check(err is None and a["code"] == "sheet" and a["size"] == len(raw) and raw[:5] == b"%PDF-"
          and a["sha256"] == digest and a["size"] <= 512 * 1024,
          "PrintSheet: %d bytes, code %s, QR version %d, %.0f ms" % (a["size"], a["code"],
                                                                   a["qr_version"], ms))
    err, a2 = call(d, "PrintSheet", {"request_id": "none-such"})
    check(err == sl.IFACE + "SheetNotFound", "PrintSheet of an unknown request id: %s" % err)
    print("  small: 1 page, %d bytes of PDF; code = the %d signed bytes (QR version %d); "
          "PrintSheet %.0f ms" % (len(raw), len(cose), a["qr_version"], ms), flush=True)


def t_big():
    d = G["d"]
    acts = [("C", 1, 100 + i) for i in range(32)]
    err, r = call(d, "CreateSheet", sl.degraded(acts=acts))
    check(err is None, "CreateSheet of 32 acts: %s" % err)
    err, a = call(d, "PrintSheet", {"id": r["id"]})
    check(err is None and a["code"] == "digest", "PrintSheet of 32 acts: code %s" % a.get("code"))
    pdf = os.path.join(G["tmp"], "big.pdf")
    with open(pdf, "wb") as f:
        f.write(base64.b64decode(a["pdf"]))
    text, code, pages = read_back(pdf, "big")
    cose = exported(d, r["id"])
    digest = hashlib.sha256(cose).hexdigest()
    check(code == "VITALED-FSE-DIGEST:1:%s:%s" % (r["id"], digest),
          "the code holds the id and the SHA-256 of the signed bytes: %s" % code)
    check(pages == "1", "32 lines on one page: %s" % pages)
    flat = " ".join(text.split())
    check("1,31 €" in flat and "1,00 €" in flat, "the first and the last line are on the page")
    print("  big: %d signed bytes: the code holds id and digest (QR version %d)"
          % (len(cose), a["qr_version"]), flush=True)


def ean13(d12):
    """A CIP13 from its first 12 digits: the EAN-13 check digit appended."""
    s = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(d12))
    return d12 + str((10 - s % 10) % 10)


def t_pharmacy():
    """A pharmacy's sheet (model 2): two medicines at different rates, a
    device, a PH7 act, an AMC with tiers payant: each line with its code,
    quantity and unit price, the AMC's number and parts."""
    d = G["d"]
    cip_a, cip_b = ean13("340093595583"), ean13("340093000001")
    lines = [
        {"kind": "medicine", "cip13": cip_a, "service": "PH4", "quantity": 2, "unit_price": 310,
         "amount": 620},
        {"kind": "medicine", "cip13": cip_b, "service": "PH7", "quantity": 1, "unit_price": 1290,
         "amount": 1290},
        {"kind": "device", "lpp": "1101090", "quantity": 3, "unit_price": 155, "amount": 465},
        {"kind": "act", "code": "PH7", "coefficient": 1, "amount": 102},
    ]
    sheet = sl.till_part()
    del sheet["acts"]
    sheet.update(lines=lines, amc={"id": "12345678", "tiers_payant": True}, tiers_payant=True,
                 pathway="medecin_traitant", exemption="ald",
                 totals={"total": 2477, "amo": 1900, "amc": 577, "patient": 0},
                 nir=sl.NIRS[2])
    err, r = call(d, "CreateSheet", {"sheet": sheet, "degraded": True})
    check(err is None, "CreateSheet of a pharmacy's sheet: %s %r" % (err, r))
    err, a = call(d, "PrintSheet", {"id": r["id"]})
    check(err is None, "PrintSheet: %s %r" % (err, a))
    pdf = os.path.join(G["tmp"], "pharmacy.pdf")
    with open(pdf, "wb") as f:
        f.write(base64.b64decode(a["pdf"]))
    text, code, pages = read_back(pdf, "pharmacy")
    flat = " ".join(text.split())
    for want in ("CIP %s Médicament (PH4) 2 × 3,10 € 6,20 €" % cip_a,
                 "CIP %s Médicament (PH7) 1 × 12,90 € 12,90 €" % cip_b,
                 "LPP 1101090 Dispositif médical 3 × 1,55 € 4,65 €",
                 "PH7 Acte coef. 1 1,02 €", "Total 24,77 €", "AMC 12345678) 5,77 €",
                 "Complémentaire : oui", "Parcours : médecin traitant",
                 "affection de longue durée (ALD)"):
        check(want in flat, "the pharmacy's page says %r" % want)
    check(sl.NIRS[2] not in text, "no full NIR on the pharmacy's page")
    cose = exported(d, r["id"])
    if a["code"] == "sheet":
        check(base64.b64decode(code[len("VITALED-FSE:1:"):]) == cose, "the code is the signed sheet")
    else:
        check(code.endswith(hashlib.sha256(cose).hexdigest()), "the code is the digest")
    print("  pharmacy: 4 lines (CIP13 x2, LPP, PH7), AMC 12345678 tiers payant; code %s"
          % a["code"], flush=True)


def t_refused():
    d = G["d"]
    # (a draft needs a card: PrintSheet of a draft, NotSigned, is in
    # test_opposition.py, which has one)
    err, x = call(d, "PrintSheet", {"id": "00000000-0000-4000-8000-000000000000"})
    check(err == sl.IFACE + "SheetNotFound", "PrintSheet of an unknown id: %s" % err)
    err, x = call(d, "PrintSheet", {"id": 5})
    check(err == "org.varlink.service.InvalidParameter", "PrintSheet with a bad id: %s" % err)
    p = d.ctl("sheet", "print", "00000000-0000-4000-8000-000000000000")
    check(p.returncode != 0 and "usage" in p.stderr, "vitalectl sheet print without -o: usage")


def t_stop():
    rc, took = G["d"].stop()
    check(rc == 0, "vitaled stops cleanly after printing (exit %r in %.2f s)" % (rc, took))


def main():
    for b in ("vitaled", "vitalectl"):
        if not os.access(os.path.join(harness.B, b), os.X_OK):
            print("FAIL: %s is not built" % b)
            sys.exit(1)
    for tool in ("pdftotext", "pdftoppm", "pdfinfo", "zbarimg"):
        if not shutil.which(tool):
            print("SKIP: %s not installed (poppler-utils, zbar-tools)" % tool)
            sys.exit(77)
    tmp = harness.mktemp("test_duplicata-")
    G["tmp"] = tmp
    key, _, pub = sl.make_key(tmp)
    G["pub"] = pub
    conf = sl.conf(key).replace("[practitioner]\n", "[practitioner]\nname = %s\naddress = %s\n"
                                % (NAME, ADDRESS), 1)
    G["d"] = harness.Daemon(conf=conf, tmp=tmp).start()
    harness.run_tests([t_small, t_big, t_pharmacy, t_refused, t_stop])


if __name__ == "__main__":
    main()
