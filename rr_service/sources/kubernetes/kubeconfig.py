"""Where the API server is and how to prove who we are: a kubeconfig, read as kubectl does.

Our own small loader rather than python3-kubernetes (see docs/kubernetes.md): the current
context's cluster (server, CA file or data, insecure-skip-tls-verify) and user (client
certificate and key as files or data, bearer token, tokenFile, exec credential plugins),
or, with no kubeconfig, the pod's service account. The TLS context is built once; the
bearer token is asked for at every request, so a rotated token file or an expired exec
credential is picked up without a restart.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from rr_service.sources.base import DatastoreConfigError, DatastoreUnavailable

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_TIMEOUT = 30.0
# An exec credential is asked for again this long before it expires, so no request carries a
# token that dies on its way.
EXPIRY_MARGIN = 30.0


@dataclass
class KubeConfig:
    server: str
    ssl_context: ssl.SSLContext
    token: Callable[[], Optional[str]] = lambda: None
    # Drops a cached credential after a 401, so the next request asks the plugin again.
    forget: Callable[[], None] = lambda: None
    source: str = ""
    namespace: str = "default"
    extra: dict = field(default_factory=dict)


def _named(entries: object, name: str, what: str, path: str) -> dict:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(what) or {}
    raise DatastoreConfigError(f"kubeconfig {path}: no {what} named {name!r}")


def _relative(base: Path, value: str) -> str:
    # kubectl resolves relative paths against the kubeconfig's own directory.
    return str(base / value) if not os.path.isabs(value) else value


def _data(value: str, what: str, path: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (ValueError, TypeError):
        raise DatastoreConfigError(f"kubeconfig {path}: {what} is not base64") from None


def _tls(cluster: dict, user: dict, base: Path, path: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(cadata=_data(cluster["certificate-authority-data"],
                                                   "certificate-authority-data", path).decode())
    elif cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=_relative(base, cluster["certificate-authority"]))
    cert, key = user.get("client-certificate"), user.get("client-key")
    cert_data, key_data = user.get("client-certificate-data"), user.get("client-key-data")
    if cert_data and key_data:
        # ssl loads a chain only from files: a private directory, gone right after loading.
        with tempfile.TemporaryDirectory(prefix="calico-rr-") as tmp:
            for name, value in (("cert", cert_data), ("key", key_data)):
                target = Path(tmp, name)
                target.touch(mode=0o600)
                target.write_bytes(_data(value, f"client-{name}-data", path))
            context.load_cert_chain(str(Path(tmp, "cert")), str(Path(tmp, "key")))
    elif cert and key:
        context.load_cert_chain(_relative(base, cert), _relative(base, key))
    return context


class ExecCredential:
    """A client.authentication.k8s.io ExecCredential plugin, run again only when its token
    has expired (or the API server refused it)."""

    def __init__(self, spec: dict, path: str):
        if not spec.get("command"):
            raise DatastoreConfigError(f"kubeconfig {path}: exec without a command")
        self._argv = [spec["command"], *(spec.get("args") or [])]
        self._env = dict(os.environ)
        for entry in spec.get("env") or []:
            self._env[str(entry.get("name"))] = str(entry.get("value"))
        self._api = spec.get("apiVersion", "client.authentication.k8s.io/v1beta1")
        self._token: Optional[str] = None
        self._until = 0.0
        self._lock = threading.Lock()

    def token(self) -> Optional[str]:
        with self._lock:
            if self._token is None or time.time() >= self._until:
                self._token, self._until = self._run()
            return self._token

    def forget(self) -> None:
        with self._lock:
            self._token = None

    def _run(self) -> tuple[str, float]:
        env = dict(self._env)
        env["KUBERNETES_EXEC_INFO"] = json.dumps({"apiVersion": self._api, "kind": "ExecCredential",
                                                  "spec": {"interactive": False}})
        try:
            done = subprocess.run(self._argv, env=env, capture_output=True, timeout=EXEC_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DatastoreUnavailable(f"exec credential plugin {self._argv[0]} failed: {exc}") from None
        if done.returncode != 0:
            raise DatastoreUnavailable(f"exec credential plugin {self._argv[0]} exited {done.returncode}: "
                                       f"{done.stderr.decode(errors='replace').strip()[:200]}")
        try:
            status = json.loads(done.stdout)["status"]
            token = status["token"]
        except (ValueError, KeyError, TypeError):
            raise DatastoreUnavailable(f"exec credential plugin {self._argv[0]} gave no status.token") from None
        return token, _expiry(status.get("expirationTimestamp"))


def _expiry(stamp: Optional[str]) -> float:
    if not stamp:
        return float("inf")  # no expiry given: kept until the API server refuses it
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
    return when - EXPIRY_MARGIN


def _token_file(path: str) -> Callable[[], Optional[str]]:
    def read() -> Optional[str]:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise DatastoreUnavailable(f"cannot read token file {path}: {exc.strerror}") from None
    return read


def load(path: Optional[str], environ: Optional[dict] = None) -> KubeConfig:
    """The kubeconfig at `path` (a KUBECONFIG list `a:b` is merged as kubectl merges it), or
    the pod's service account when `path` is empty."""
    environ = os.environ if environ is None else environ
    if not path:
        return in_cluster(environ)
    config = _merged([part for part in path.split(":") if part])
    # every relative path is already resolved against its own file's directory (_merged)
    base = Path("/")
    context = _named(config.get("contexts"), config.get("current-context") or "", "context", path)
    cluster = _named(config.get("clusters"), context.get("cluster") or "", "cluster", path)
    user = _named(config.get("users"), context.get("user") or "", "user", path)
    if not cluster.get("server"):
        raise DatastoreConfigError(f"kubeconfig {path}: the cluster has no server")
    try:
        tls = _tls(cluster, user, base, path)
    except (OSError, ssl.SSLError) as exc:
        raise DatastoreConfigError(f"kubeconfig {path}: cannot load its certificates: {exc}") from None
    result = KubeConfig(server=cluster["server"].rstrip("/"), ssl_context=tls, source=path,
                        namespace=context.get("namespace") or "default")
    if user.get("token"):
        result.token = lambda: user["token"]
    elif user.get("tokenFile"):
        result.token = _token_file(_relative(base, user["tokenFile"]))
    elif user.get("exec"):
        plugin = ExecCredential(user["exec"], path)
        result.token, result.forget = plugin.token, plugin.forget
    return result


# The fields of a kubeconfig that name files, by section: relative to the file they are in.
_FILE_FIELDS = {"clusters": ("cluster", ("certificate-authority",)),
                "users": ("user", ("client-certificate", "client-key", "tokenFile"))}


def _merged(paths: list[str]) -> dict:
    """kubectl's merge of a KUBECONFIG list: the first file to name a cluster, context or user
    wins, `current-context` comes from the first file that sets one, and files that do not
    exist are skipped (all missing is an error)."""
    merged: dict = {"clusters": [], "contexts": [], "users": []}
    names: dict = {section: set() for section in merged}
    read = 0
    for path in paths:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            if len(paths) > 1:
                continue
            raise DatastoreConfigError(f"cannot read kubeconfig {path}: no such file") from None
        except OSError as exc:
            raise DatastoreConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
        read += 1
        config = _parse(text, path)
        base = Path(path).resolve().parent
        if not merged.get("current-context") and config.get("current-context"):
            merged["current-context"] = config["current-context"]
        for section in ("clusters", "contexts", "users"):
            entries = config.get(section) or []
            if not isinstance(entries, list):
                raise DatastoreConfigError(f"kubeconfig {path}: {section} is not a list")
            for entry in entries:
                if not isinstance(entry, dict) or entry.get("name") in names[section]:
                    continue
                names[section].add(entry.get("name"))
                merged[section].append(_resolved(entry, section, base))
    if not read:
        raise DatastoreConfigError(f"cannot read kubeconfig: none of {':'.join(paths)} exists")
    return merged


def _resolved(entry: dict, section: str, base: Path) -> dict:
    what, fields = _FILE_FIELDS.get(section, (None, ()))
    body = entry.get(what) if what else None
    if not isinstance(body, dict):
        return entry
    resolved = {name: _relative(base, body[name]) for name in fields if isinstance(body.get(name), str) and body[name]}
    return {**entry, what: {**body, **resolved}}


def _parse(text: str, path: str) -> dict:
    try:
        config = json.loads(text)
    except ValueError:
        import yaml  # only for YAML kubeconfigs; JSON ones need nothing more
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise DatastoreConfigError(f"kubeconfig {path} is not YAML: {exc}") from None
    if not isinstance(config, dict):
        raise DatastoreConfigError(f"kubeconfig {path} is not a kubeconfig")
    return config


def in_cluster(environ: dict, account: Path = SERVICE_ACCOUNT) -> KubeConfig:
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (account / "token").exists():
        raise DatastoreConfigError("no kubeconfig: set [kubernetes] kubeconfig or KUBECONFIG "
                                   "(not running in a pod with a service account)")
    if ":" in host:
        host = f"[{host}]"
    context = ssl.create_default_context(cafile=str(account / "ca.crt"))
    return KubeConfig(server=f"https://{host}:{port}", ssl_context=context,
                      token=_token_file(str(account / "token")), source="in-cluster service account")
