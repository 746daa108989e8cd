"""Helpers of the security tests (tests/security): a throw-away CA (openssl), etcd with TLS or authentication
inside a lab namespace, the daemon and the CLI run with chosen settings, a NOTIFY_SOCKET to
read the daemon's STATUS=, and a check that no secret shows in any captured text, not even
escaped. (The figures for docs/reliability.md go through tests/faults/figures.py.)

Every process, namespace, user and folder made here is removed again, also on failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests import prereq  # noqa: E402
from tests.lab.notify import NotifySocket  # noqa: E402
from tests.lab import Lab, Reflector, requirements_missing, need_rr_service, wait_for  # noqa: E402
from tests.lab.etcd import ETCD, ETCDCTL, Etcd  # noqa: E402
from tests.lab.netns import Host, LabError  # noqa: E402
from tests.lab.reflector import PYTHON, _env  # noqa: E402
from tests.tomlfile import write_settings


# -- skipping ------------------------------------------------------------------------------

def lab_or_skip() -> None:
    prereq.need(requirements_missing())
    if shutil.which("openssl") is None:
        prereq.missing("openssl is not installed")
    need_rr_service()


# -- a throw-away CA -------------------------------------------------------------------------

def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class ThrowAwayCA:
    """An EC P-256 CA made by openssl, and certificates it issues. Test use only."""

    def __init__(self, folder: Path, name: str):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.cert = str(self.folder / f"{name}-ca.crt")
        self.key = str(self.folder / f"{name}-ca.key")
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", self.key, "-out", self.cert,
                 "-subj", f"/CN=throw-away test CA {name}", "-days", "2")

    def issue(self, cn: str, san: str, usage: str) -> tuple:
        stem = self.folder / f"{self.name}-{cn}"
        key, csr, crt, ext = (f"{stem}.{e}" for e in ("key", "csr", "crt", "ext"))
        Path(ext).write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        _openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
        os.chmod(key, 0o600)
        return crt, key


def private_key_fragments(paths: Iterable[str]) -> List[str]:
    """What of a PEM private key must never show: the whole file and every base64 line."""
    found = []
    for path in paths:
        text = Path(path).read_text()
        found.append(text.strip())
        found += [line for line in text.splitlines() if line and not line.startswith("-----") and len(line) >= 16]
    return found


# A run of characters that repr(), JSON, TOML and shell quoting all leave as they are: what of
# a secret still shows when the rest of it comes out escaped.
_VERBATIM = re.compile(r"[A-Za-z0-9_+/=-]{12,}")


def secret_needles(secret: str) -> List[str]:
    """What to search for: the secret itself and each long run of it that no escaping changes
    (the random part of a password, a key's base64 lines)."""
    return [secret] + [run for run in _VERBATIM.findall(secret) if run != secret]


def assert_no_secrets(texts: Dict[str, str], secrets: Iterable[str]) -> int:
    """Fail naming the text a secret (or its random part) shows in; returns how many texts
    were checked."""
    needles = [n for s in secrets if s for n in secret_needles(s)]
    for name, text in texts.items():
        for needle in needles:
            assert needle not in text, f"a secret ({needle[:4]}...) shows in {name}"
    return len(texts)


# -- etcd with TLS and/or authentication, in a lab namespace ---------------------------------

class SecureEtcd(Etcd):
    """The lab's Etcd, with TLS (client certificate) and/or an etcd user for etcdctl."""

    def __init__(self, lab: Lab, host: Host, proc, endpoint: str, tls: Optional[dict] = None):
        super().__init__(lab, host, proc, endpoint)
        self.tls = tls or {}
        self.user = ""  # "name:password" once authentication is on

    def _base(self) -> List[str]:
        cmd = ["env", "ETCDCTL_API=3", ETCDCTL, f"--endpoints={self.endpoint}",
               "--dial-timeout=3s", "--command-timeout=10s"]
        if self.tls:
            cmd += [f"--cacert={self.tls['ca']}", f"--cert={self.tls['cert']}", f"--key={self.tls['key']}"]
        if self.user:
            cmd += [f"--user={self.user}"]
        return cmd

    def ctl(self, *args: str, input: Optional[str] = None, timeout: float = 15) -> str:
        return self.host.run(self._base() + list(args), input=input, timeout=timeout).stdout

    def healthy(self) -> bool:
        try:
            out = self.host.run(self._base() + ["endpoint", "health"], check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return out.returncode == 0 and "is healthy" in (out.stdout + out.stderr)


def start_secure_etcd(lab: Lab, host: Host, server_tls: Optional[dict] = None,
                      client_tls: Optional[dict] = None, timeout: float = 30.0) -> SecureEtcd:
    """etcd on host; with server_tls ({"ca", "cert", "key"}) it serves https and demands a client
    certificate signed by that CA; client_tls is what etcdctl presents."""
    ip = host.ipv4
    scheme = "https" if server_tls else "http"
    data_dir = lab.tmp / f"{host.name}-etcd.data"
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    client, peer = f"{scheme}://{ip}:2379", f"http://{ip}:2380"
    args = [ETCD, "--name", host.name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{host.name}={peer}", "--initial-cluster-state", "new",
            "--log-level", "warn"]
    if server_tls:
        args += ["--cert-file", server_tls["cert"], "--key-file", server_tls["key"],
                 "--trusted-ca-file", server_tls["ca"], "--client-cert-auth"]
    proc = host.popen(args, name=f"{host.name}-etcd")
    etcd = SecureEtcd(lab, host, proc, client, client_tls)

    def up():
        if not proc.alive():
            raise LabError(f"etcd on {host.name} exited:\n{proc.log()}")
        return etcd.healthy()
    wait_for(up, timeout, interval=0.3, what=f"etcd on {host.name}", describe=proc.log)
    return etcd


# -- the product with chosen settings ---------------------------------------------------------

def settings_file(rr: Reflector, name: str = "", **settings: str) -> Path:
    """rr's settings file with these [etcd] settings (ca_cert, cert, key, username, password):
    rewritten in place (name ""), or as a copy `<name>.toml` beside it. Mode 0640."""
    etcd = {key: None for key in ("ca_cert", "cert", "key", "username", "password")}
    etcd.update(settings)
    if not name:
        rr.set({"etcd": etcd})
        os.chmod(rr.config, 0o640)
        return rr.config
    sections = {section: dict(values) for section, values in rr.settings.items()}
    sections["etcd"] = {key: value for key, value in {**sections["etcd"], **etcd}.items() if value is not None}
    path = rr.dir / f"{name}.toml"
    write_settings(path, sections)
    os.chmod(path, 0o640)
    return path


def cli(host: Host, config: Path, *args: str, env: Optional[dict] = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """`python3 -m rr_service --config FILE ARGS` inside host's namespace; never raises on exit status."""
    cmd = ["ip", "netns", "exec", host.ns, PYTHON, "-m", "rr_service", "--config", str(config), *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=dict(_env(), **(env or {})), capture_output=True,
                          text=True, timeout=timeout)


def start_daemon(rr: Reflector, notify: NotifySocket, env: Optional[dict] = None,
                 prefix_cmd: Iterable[str] = (), name: Optional[str] = None,
                 config: Optional[Path] = None):
    """The daemon in rr's namespace at debug level, STATUS= going to `notify`; prefix_cmd
    e.g. setpriv ...; config: another settings file than rr's."""
    full_env = dict(_env(), NOTIFY_SOCKET=notify.path, PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    cmd = [*prefix_cmd, PYTHON, "-m", "rr_service", "--config", str(config or rr.config),
           "--log-level", "debug", "run"]
    return rr.host.popen(cmd, name=name or f"{rr.host.name}-rr_service", env=full_env, cwd=str(REPO_ROOT))


def no_traceback(result: subprocess.CompletedProcess) -> None:
    both = result.stdout + result.stderr
    assert "Traceback" not in both, f"a traceback instead of an error message:\n{both[-3000:]}"
