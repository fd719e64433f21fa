"""A throwaway PostgreSQL cluster that speaks TLS with a certificate from a CA made for it.

    with tls_postgres() as pg:          # skips nothing by itself: check `unavailable()` first
        pg.host, pg.port                # 127.0.0.1 and a free port
        pg.ca_pem_path                  # the CA that signed the server certificate (for verify-full)
        pg.url                          # postgresql+pg8000://postgres@127.0.0.1:PORT/postgres (trust auth)

The server certificate names `127.0.0.1` (IP) and `localhost` (DNS). `make_ca(dir)` gives another CA, for
tests that a verifying client refuses a server it cannot authenticate. The cluster runs as the `postgres`
OS user (`initdb` refuses root), in a temporary directory removed on exit; starting takes ~1 s.
`unavailable()` says why it cannot run here (not root, no `postgres` user, no PostgreSQL binaries), for
`pytest.skip`.
"""

from __future__ import annotations

import datetime
import glob
import ipaddress
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

OS_USER = "postgres"


@dataclass(frozen=True)
class TlsPostgres:
    host: str
    port: int
    ca_pem_path: Path
    url: str
    data_dir: Path


@dataclass(frozen=True)
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    pem_path: Path


def bin_dir() -> Path | None:
    """The newest PostgreSQL server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def unavailable() -> str | None:
    """Why a TLS cluster cannot be started here, or None."""
    if bin_dir() is None:
        return "no PostgreSQL server binaries (initdb) on this machine"
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no {OS_USER!r} OS user to run the cluster as"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != OS_USER:
        return f"starting a cluster as {OS_USER!r} needs root"
    return None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    """A day's certificate for `key`'s public half (extensions and signature up to the caller)."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_ca(directory: Path, common_name: str = "orchestrator test CA") -> Ca:
    """A self-signed CA valid for a day; its PEM at `directory/<slug>.pem`."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    cert = (
        _certificate(common_name, _name(common_name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / (common_name.replace(" ", "-") + ".pem")
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o644)
    return Ca(cert, key, path)


def _server_cert(ca: Ca, names: tuple[str, ...]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    cert = (
        _certificate(names[0], ca.cert.subject, key)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    if pwd.getpwuid(os.geteuid()).pw_name != OS_USER:
        argv = ["runuser", "-u", OS_USER, "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, **kwargs)  # type: ignore[call-overload,no-any-return]


@contextmanager
def tls_postgres(server_names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Iterator[TlsPostgres]:
    """Start the cluster (TLS on, trust auth, 127.0.0.1 only), yield where it is, stop and remove it."""
    why = unavailable()
    if why:
        raise RuntimeError(why)
    binaries = bin_dir()
    assert binaries is not None
    owner = pwd.getpwnam(OS_USER)
    root = Path(tempfile.mkdtemp(prefix="tls-postgres-"))
    root.chmod(0o755)
    data = root / "data"
    try:
        ca = make_ca(root)
        cert_pem, key_pem = _server_cert(ca, server_names)
        tls = root / "tls"
        tls.mkdir(mode=0o700)
        (tls / "server.crt").write_bytes(cert_pem)
        (tls / "server.key").write_bytes(key_pem)
        (tls / "server.key").chmod(0o600)  # PostgreSQL refuses a key others can read
        for path in (tls, tls / "server.crt", tls / "server.key"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        data.mkdir(mode=0o700)
        os.chown(data, owner.pw_uid, owner.pw_gid)
        init = _as_postgres(
            [
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
        port = _free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root}/data "
            f"-c ssl=on -c ssl_cert_file={tls}/server.crt -c ssl_key_file={tls}/server.key -c fsync=off"
        )
        start = _as_postgres(
            [
                str(binaries / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                "30",
                "start",
            ]
        )
        if start.returncode != 0:
            log = (data / "server.log").read_text() if (data / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {start.stderr[-1000:]} {log[-2000:]}")
        try:
            yield TlsPostgres(
                host="127.0.0.1",
                port=port,
                ca_pem_path=ca.pem_path,
                url=f"postgresql+pg8000://postgres@127.0.0.1:{port}/postgres",
                data_dir=data,
            )
        finally:
            _as_postgres([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
