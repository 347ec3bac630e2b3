"""Certificates for the Dask cluster's TLS, for compose and `make stack` (the Helm chart makes its own, or takes a
Secret you manage).

    python deploy/dask_tls.py DIR [--days 365]

writes DIR/ca.crt, DIR/tls.crt and DIR/tls.key: a CA of the cluster's own and one certificate it signs, which the
scheduler, the workers and the job all present. Distributed's `Security` checks the peer's certificate against the
CA both ways and checks no host name, so one certificate serves every role; a client without a certificate the CA
signed is refused. The CA's key is not kept: nothing else can be signed with it. A certificate already in DIR
that is valid for another day is kept, so that running this again (compose does at every `up`) does not cut off
a running cluster.
"""

import argparse
import datetime
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FILES = ("ca.crt", "tls.crt", "tls.key")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks a little apart
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def make(folder: Path, days: int = 365, name: str = "telemetry-aggregates-dask") -> None:
    """A new CA and a certificate it signs (P-256 keys), written into `folder`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _builder(f"{name}-ca", _name(f"{name}-ca"), ca_key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # every end listens and connects
    cert = (
        _builder(name, ca.subject, key.public_key(), days)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    descriptor = os.open(folder / "tls.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)


def still_valid(folder: Path, days: float = 1) -> bool:
    """Whether the folder holds all three files and a certificate valid for `days` more."""
    if not all((folder / name).is_file() for name in FILES):
        return False
    cert = x509.load_pem_x509_certificate((folder / "tls.crt").read_bytes())
    return cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)


def environment(folder: Path, role: str) -> dict[str, str]:
    """distributed's `Security` for a role (scheduler, worker or client) in its configuration variables, as the
    chart and compose set them: TLS required, the cluster's CA, the role's certificate (the one in `folder`)."""
    return {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(folder / "ca.crt"),
        f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__CERT": str(folder / "tls.crt"),
        f"DASK_DISTRIBUTED__COMM__TLS__{role.upper()}__KEY": str(folder / "tls.key"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/dask_tls.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--days", type=int, default=365, help="validity of the certificates")
    parser.add_argument("--force", action="store_true", help="replace a certificate still valid")
    args = parser.parse_args(argv)
    if not args.force and still_valid(args.folder):
        print(f"kept the certificates in {args.folder}")
        return 0
    make(args.folder, args.days)
    print(f"wrote {', '.join(FILES)} in {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
