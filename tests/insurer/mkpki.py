#!/usr/bin/python3
"""The test PKI of the insurer interface (docs/insurer-api.md), made with the
cryptography library. Test key material only, written only into the directory
the caller names.

    mkpki.py init DIR [--terminal-id ID] [--other-terminal-id ID]
                      [--practitioner-id ID]
    mkpki.py practitioner DIR --out CERT.pem
                      (--pubkey PEM | --key PEM | --new-key ec|rsa --key-out PEM)
                      [--id PRACTITIONER_ID] [--cn NAME] [--days N]
                      [--not-before-days N] [--expired] [--not-yet-valid]
                      [--intermediate] [--unknown-ca] [--no-serial]
                      [--key-usage sign|encipher|none]
    mkpki.py client DIR --cn ID --out CERT.pem --key-out KEY.pem
                      [--expired] [--unknown-ca]

`init` writes (PEM; keys mode 0600; `pki.json` lists them all):

  server-ca.pem / .key.pem     the insurer's server CA (the terminal's ca_file)
  server.pem / .key.pem        server cert: SAN IP 127.0.0.1, DNS localhost
  server-wrongname.pem / .key  same CA, SAN DNS wrong.example + IP 127.0.0.2
  server-expired.pem / .key    same CA, SANs right, validity ended yesterday
  other-ca.pem / .key.pem      another CA
  server-otherca.pem / .key    server cert from other-ca, SANs right
  client-ca.pem / .key.pem     the terminals' client CA (the insurer trusts it)
  client.pem / .key.pem        client cert, CN = --terminal-id (default T0001)
  client-other.pem / .key.pem  client CN = --other-terminal-id (default T0002)
  client-expired.pem / .key    CN = terminal id, validity ended yesterday
  unknown-ca.pem / .key.pem    a CA the insurer does not know
  client-unknownca.pem / .key  CN = terminal id, from unknown-ca
  practitioner-ca.pem / .key   the insurer's practitioner CA (sheets' chains)
  practitioner-int.pem / .key  an intermediate CA under practitioner-ca
  practitioner.pem / .key.pem  EC P-256 signing cert, serialNumber = --practitioner-id
  practitioner-rsa.pem / .key  RSA 2048 signing cert (PS256 sheets), same id

`practitioner` issues a signing certificate from practitioner-ca (or, with
--intermediate, practitioner-int: send x5chain = [cert, practitioner-int]) for
a given public key (--pubkey, a PEM public key; --key, a PEM private key whose
public half is used) or for a new key written to --key-out (EC P-256 or RSA
2048). Subject: CN = --cn, serialNumber = --id (default the id given to init).
Validity: from --not-before-days ago (default 1) for --days (default 365);
--expired ends yesterday; --not-yet-valid starts tomorrow. Prints the
certificate's path. `client` issues one more client certificate (a renewal,
another terminal).

As a module: init_pki(dir, ...) -> dict of paths; issue_practitioner(dir,
public_key, ...) -> x509.Certificate; issue_client(...); load_key(path).
"""
import argparse
import datetime as dt
import ipaddress
import json
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = dt.timedelta(days=1)
DEFAULT_TERMINAL = "T0001"
DEFAULT_OTHER_TERMINAL = "T0002"
DEFAULT_PRACTITIONER = "81000123456"


def _now():
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _write(path, data, secret=False):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_key(path, key):
    _write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()), secret=True)


def write_cert(path, cert):
    _write(path, cert.public_bytes(serialization.Encoding.PEM))


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def load_cert(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def new_ec():
    return ec.generate_private_key(ec.SECP256R1())


def new_rsa(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(cn, serial=None, org="vitaled test world"):
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
             x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if serial is not None:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


def _builder(subject, issuer_name, public_key, not_before, not_after):
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def make_ca(cn, issuer=None, days_before=3 * 365, days_after=10 * 365, path_len=None):
    """A CA (self-signed, or under issuer=(cert, key)). Returns (cert, key)."""
    key = new_ec()
    now = _now()
    subject = _name(cn)
    b = _builder(subject, issuer[0].subject if issuer else subject, key.public_key(),
                 now - days_before * DAY, now + days_after * DAY)
    b = b.add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
    b = b.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=True, crl_sign=True,
                                      encipher_only=False, decipher_only=False), critical=True)
    if issuer:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer[1].public_key()), critical=False)
    cert = b.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def _leaf(ca, subject, public_key, not_before, not_after, eku=None, sans=None, key_usage="sign"):
    b = _builder(subject, ca[0].subject, public_key, not_before, not_after)
    b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[1].public_key()),
                        critical=False)
    if key_usage == "sign":
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                                          encipher_only=False, decipher_only=False), critical=True)
    elif key_usage == "encipher":
        b = b.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                          key_encipherment=True, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                                          encipher_only=False, decipher_only=False), critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca[1], hashes.SHA256())


def _validity(expired=False, not_yet_valid=False, days=365, not_before_days=1):
    now = _now()
    if expired:
        return now - 30 * DAY, now - DAY
    if not_yet_valid:
        return now + DAY, now + (days + 1) * DAY
    return now - not_before_days * DAY, now + days * DAY


def issue_server(ca, sans=("127.0.0.1", "localhost"), expired=False, cn="localhost"):
    key = new_ec()
    names = []
    for s in sans:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            names.append(x509.DNSName(s))
    nb, na = _validity(expired=expired)
    cert = _leaf(ca, _name(cn), key.public_key(), nb, na,
                 eku=[ExtendedKeyUsageOID.SERVER_AUTH], sans=names)
    return cert, key


def issue_client(ca, cn, expired=False):
    key = new_ec()
    nb, na = _validity(expired=expired)
    cert = _leaf(ca, _name(cn), key.public_key(), nb, na, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return cert, key


def _load_pair(d, stem):
    return load_cert(os.path.join(d, stem + ".pem")), load_key(os.path.join(d, stem + ".key.pem"))


def _save_pair(d, stem, pair, paths):
    cp, kp = os.path.join(d, stem + ".pem"), os.path.join(d, stem + ".key.pem")
    write_cert(cp, pair[0])
    write_key(kp, pair[1])
    paths[stem] = cp
    paths[stem + ".key"] = kp


def issue_practitioner(d, public_key, practitioner_id=None, cn="Dr Test", days=365,
                       not_before_days=1, expired=False, not_yet_valid=False,
                       intermediate=False, unknown_ca=False, key_usage="sign"):
    """A practitioner signing certificate for public_key, from DIR's practitioner
    CA (or its intermediate, or the unknown CA). Returns the x509.Certificate."""
    if practitioner_id is None:
        practitioner_id = _manifest(d).get("practitioner_id", DEFAULT_PRACTITIONER)
    stem = "unknown-ca" if unknown_ca else ("practitioner-int" if intermediate else "practitioner-ca")
    ca = _load_pair(d, stem)
    nb, na = _validity(expired, not_yet_valid, days, not_before_days)
    subject = _name(cn, serial=practitioner_id or None)
    return _leaf(ca, subject, public_key, nb, na, key_usage=key_usage)


def _manifest(d):
    try:
        with open(os.path.join(d, "pki.json")) as f:
            return json.load(f)
    except OSError:
        return {}


def init_pki(d, terminal_id=DEFAULT_TERMINAL, other_terminal_id=DEFAULT_OTHER_TERMINAL,
             practitioner_id=DEFAULT_PRACTITIONER):
    os.makedirs(d, exist_ok=True)
    p = {}
    server_ca = make_ca("vitaled test insurer server CA")
    _save_pair(d, "server-ca", server_ca, p)
    _save_pair(d, "server", issue_server(server_ca), p)
    _save_pair(d, "server-wrongname", issue_server(server_ca, sans=("wrong.example", "127.0.0.2"),
                                                   cn="wrong.example"), p)
    _save_pair(d, "server-expired", issue_server(server_ca, expired=True), p)
    other_ca = make_ca("vitaled test other CA")
    _save_pair(d, "other-ca", other_ca, p)
    _save_pair(d, "server-otherca", issue_server(other_ca), p)
    client_ca = make_ca("vitaled test terminal client CA")
    _save_pair(d, "client-ca", client_ca, p)
    _save_pair(d, "client", issue_client(client_ca, terminal_id), p)
    _save_pair(d, "client-other", issue_client(client_ca, other_terminal_id), p)
    _save_pair(d, "client-expired", issue_client(client_ca, terminal_id, expired=True), p)
    unknown_ca = make_ca("vitaled test terminal client CA")   # same name, other key
    _save_pair(d, "unknown-ca", unknown_ca, p)
    _save_pair(d, "client-unknownca", issue_client(unknown_ca, terminal_id), p)
    prat_ca = make_ca("vitaled test practitioner CA")
    _save_pair(d, "practitioner-ca", prat_ca, p)
    prat_int = make_ca("vitaled test practitioner intermediate CA", issuer=prat_ca,
                       days_before=3 * 365 - 1, days_after=5 * 365, path_len=0)
    _save_pair(d, "practitioner-int", prat_int, p)
    p["terminal_id"] = terminal_id
    p["other_terminal_id"] = other_terminal_id
    p["practitioner_id"] = practitioner_id
    _write(os.path.join(d, "pki.json"), json.dumps(p, indent=1, sort_keys=True).encode())
    for stem, key in (("practitioner", new_ec()), ("practitioner-rsa", new_rsa())):
        cert = issue_practitioner(d, key.public_key(), practitioner_id)
        _save_pair(d, stem, (cert, key), p)
    _write(os.path.join(d, "pki.json"), json.dumps(p, indent=1, sort_keys=True).encode())
    return p


def main(argv):
    ap = argparse.ArgumentParser(prog="mkpki.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("init")
    a.add_argument("dir")
    a.add_argument("--terminal-id", default=DEFAULT_TERMINAL)
    a.add_argument("--other-terminal-id", default=DEFAULT_OTHER_TERMINAL)
    a.add_argument("--practitioner-id", default=DEFAULT_PRACTITIONER)
    b = sub.add_parser("practitioner")
    b.add_argument("dir")
    b.add_argument("--out", required=True)
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--pubkey")
    g.add_argument("--key")
    g.add_argument("--new-key", choices=("ec", "rsa"))
    b.add_argument("--key-out")
    b.add_argument("--id", dest="pid")
    b.add_argument("--no-serial", action="store_true", help="no serialNumber in the subject")
    b.add_argument("--cn", default="Dr Test")
    b.add_argument("--days", type=int, default=365)
    b.add_argument("--not-before-days", type=int, default=1)
    b.add_argument("--expired", action="store_true")
    b.add_argument("--not-yet-valid", action="store_true")
    b.add_argument("--intermediate", action="store_true")
    b.add_argument("--unknown-ca", action="store_true")
    b.add_argument("--key-usage", choices=("sign", "encipher", "none"), default="sign")
    c = sub.add_parser("client")
    c.add_argument("dir")
    c.add_argument("--cn", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--key-out", required=True)
    c.add_argument("--expired", action="store_true")
    c.add_argument("--unknown-ca", action="store_true")
    args = ap.parse_args(argv[1:])
    if args.cmd == "init":
        p = init_pki(args.dir, args.terminal_id, args.other_terminal_id, args.practitioner_id)
        print(os.path.join(args.dir, "pki.json"))
        return 0 if p else 1
    if args.cmd == "practitioner":
        if args.pubkey:
            with open(args.pubkey, "rb") as f:
                data = f.read()
            if b"PRIVATE KEY" in data:
                pub = serialization.load_pem_private_key(data, None).public_key()
            else:
                pub = serialization.load_pem_public_key(data)
        elif args.key:
            pub = load_key(args.key).public_key()
        else:
            if not args.key_out:
                ap.error("--new-key needs --key-out")
            k = new_ec() if args.new_key == "ec" else new_rsa()
            write_key(args.key_out, k)
            pub = k.public_key()
        pid = "" if args.no_serial else args.pid
        cert = issue_practitioner(args.dir, pub, pid, args.cn, args.days, args.not_before_days,
                                  args.expired, args.not_yet_valid, args.intermediate,
                                  args.unknown_ca, args.key_usage)
        write_cert(args.out, cert)
        print(args.out)
        return 0
    ca = _load_pair(args.dir, "unknown-ca" if args.unknown_ca else "client-ca")
    cert, key = issue_client(ca, args.cn, expired=args.expired)
    write_cert(args.out, cert)
    write_key(args.key_out, key)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
