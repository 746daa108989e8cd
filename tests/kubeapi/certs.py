"""A throw-away CA per server, its serving certificate and client certificates (openssl CLI).

The serving certificate names 127.0.0.1 and localhost (and any extra address the caller gives,
e.g. one inside a network namespace) as subjectAltNames: Go clients (kubectl) ignore the CN.
A client certificate's CN is the user and each O a group, as kube-apiserver reads them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable, Tuple

DAYS = "2"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(path))
    path.chmod(0o600)


class CertAuthority:
    def __init__(self, folder: Path, name: str = "kubeapi-test-ca"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cert = self.folder / "ca.crt"
        self.key = self.folder / "ca.key"
        _new_key(self.key)
        _openssl("req", "-x509", "-new", "-key", str(self.key), "-out", str(self.cert),
                 "-subj", f"/CN={name}", "-days", DAYS,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
        self._serial = 1

    def issue(self, stem: str, subject: str, sans: Iterable[str] = (),
              usage: str = "clientAuth") -> Tuple[Path, Path]:
        """A certificate and key signed by this CA: (cert path, key path)."""
        key, csr, crt = (self.folder / f"{stem}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.folder / f"{stem}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature",
                 f"extendedKeyUsage={usage}"]
        sans = list(sans)
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        _new_key(key)
        _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
        self._serial += 1
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", str(self._serial), "-out", str(crt), "-days", DAYS,
                 "-extfile", str(ext))
        return crt, key

    def server_cert(self, ips: Iterable[str] = (), dns: Iterable[str] = ()) -> Tuple[Path, Path]:
        sans = [f"IP:{ip}" for ip in dict.fromkeys(["127.0.0.1", *ips])]
        sans += [f"DNS:{name}" for name in dict.fromkeys(["localhost", *dns])]
        return self.issue("server", "/CN=kube-apiserver", sans, "serverAuth")

    def client_cert(self, user: str, groups: Iterable[str] = ()) -> Tuple[Path, Path]:
        # kube reads O (groups) and CN (user); openssl wants them in one /-separated subject
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={user}"
        stem = "client-" + "".join(c if c.isalnum() else "_" for c in user)
        return self.issue(stem, subject)
