"""Test certificates for the development stack's TLS listeners: a CA, and certificates it
signs for a server (``localhost`` and ``127.0.0.1``) or a client, made with the ``openssl``
command into a directory. For tests and local trials only: the keys are not encrypted."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streams.dev.processes import DevStackError


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    @property
    def pem(self) -> Path:
        """The key and the certificate in one PEM file (a Kafka PEM keystore)."""
        return self.cert.with_suffix(".keystore.pem")


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise DevStackError("the openssl command is needed to make test certificates")
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise DevStackError(f"openssl {args[0]} failed: {done.stderr[-2000:]}")


def make_ca(directory: Path, name: str = "enricher-test-ca") -> Certificate:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return Certificate(cert, key)


def issue(ca: Certificate, directory: Path, name: str, server: bool) -> Certificate:
    """A certificate signed by ``ca``: for a server on this machine, or for a client."""
    cert, key, request = (
        directory / f"{name}.pem",
        directory / f"{name}.key",
        directory / f"{name}.csr",
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
        "-keyout", str(key), "-out", str(request), cwd=directory,
    )  # fmt: skip
    extensions = directory / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    lines = [f"extendedKeyUsage={usage}", "keyUsage=critical,digitalSignature,keyEncipherment"]
    if server:
        lines.append("subjectAltName=DNS:localhost,IP:127.0.0.1")
    extensions.write_text("\n".join(lines) + "\n")
    _openssl(
        "x509", "-req", "-in", str(request), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", "30", "-extfile", str(extensions), "-out", str(cert),
        cwd=directory,
    )  # fmt: skip
    if "BEGIN PRIVATE KEY" not in key.read_text():  # PKCS#8, as Kafka's PEM keystores want
        _openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(key), "-out", f"{key}.p8", cwd=directory)
        Path(f"{key}.p8").replace(key)
    issued = Certificate(cert, key)
    issued.pem.write_text(key.read_text() + cert.read_text() + ca.cert.read_text())
    return issued
