"""kubeconfig files for a KubeApiServer, in each way a real cluster hands them out.

auth:  "token"      users[].user.token
       "token-file" users[].user.tokenFile (read by the client; rotate by rewriting the file)
       "cert-files" client-certificate / client-key paths
       "cert-data"  client-certificate-data / client-key-data (base64 PEM)
       "exec"       an exec credential plugin (client.authentication.k8s.io/v1beta1) that prints
                    the token in <file>.exec-token with an expirationTimestamp; every run is
                    counted in <file>.exec-calls
ca:    "file" (certificate-authority), "data" (certificate-authority-data), or "insecure"
       (insecure-skip-tls-verify)

Written as JSON, which is valid YAML: every kubeconfig reader accepts it.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Iterable, Optional

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"

# The plugin: no dependencies beyond python3; reads its token and lifetime from files next to
# the kubeconfig so a test can rotate the token or shorten the expiry between runs.
EXEC_PLUGIN = """#!/usr/bin/python3
import datetime, json, pathlib, sys
base = pathlib.Path(sys.argv[1])
with open(str(base) + ".exec-calls", "a") as calls:
    calls.write("1\\n")
token = pathlib.Path(str(base) + ".exec-token").read_text().strip()
lifetime = int(pathlib.Path(str(base) + ".exec-lifetime").read_text().strip())
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
print(json.dumps({"apiVersion": "%s", "kind": "ExecCredential",
                  "status": {"token": token,
                             "expirationTimestamp": expiry.strftime("%%Y-%%m-%%dT%%H:%%M:%%SZ")}}))
""" % EXEC_API_VERSION


def _b64(path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def write_kubeconfig(server, path, auth: str = "token", ca: str = "file",
                     token: Optional[str] = None, user: str = "admin",
                     groups: Iterable[str] = (), exec_lifetime: int = 3600,
                     namespace: str = "", server_url: Optional[str] = None) -> str:
    """Write a kubeconfig for server to path; returns path as str.

    token defaults to the server's admin token; user/groups name the client certificate's
    subject for the cert variants. server_url overrides the URL (e.g. a name in the cert).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = token or server.admin_token
    cluster = {"server": server_url or server.url}
    if ca == "file":
        cluster["certificate-authority"] = server.ca_cert
    elif ca == "data":
        cluster["certificate-authority-data"] = _b64(server.ca_cert)
    elif ca == "insecure":
        cluster["insecure-skip-tls-verify"] = True
    else:
        raise ValueError(f"unknown ca variant {ca!r}")
    creds: dict = {}
    if auth == "token":
        creds["token"] = token
    elif auth == "token-file":
        token_file = Path(f"{path}.token")
        # no newline: python3-kubernetes 22.6 sends the file verbatim ("Bearer x\n" is an
        # invalid header there); kubectl trims it. Service account token files have none.
        token_file.write_text(token)
        creds["tokenFile"] = str(token_file)
    elif auth in ("cert-files", "cert-data"):
        cert, key = server.client_cert(user, groups)
        if auth == "cert-files":
            creds.update({"client-certificate": str(cert), "client-key": str(key)})
        else:
            creds.update({"client-certificate-data": _b64(cert), "client-key-data": _b64(key)})
    elif auth == "exec":
        plugin = path.parent / "exec-credential-plugin"
        plugin.write_text(EXEC_PLUGIN)
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        Path(f"{path}.exec-token").write_text(token + "\n")
        Path(f"{path}.exec-lifetime").write_text(f"{exec_lifetime}\n")
        creds["exec"] = {"apiVersion": EXEC_API_VERSION, "command": str(plugin),
                         "args": [str(path)]}
    else:
        raise ValueError(f"unknown auth variant {auth!r}")
    context = {"cluster": "kubeapi-test", "user": "kubeapi-test"}
    if namespace:
        context["namespace"] = namespace
    config = {"apiVersion": "v1", "kind": "Config", "preferences": {},
              "clusters": [{"name": "kubeapi-test", "cluster": cluster}],
              "users": [{"name": "kubeapi-test", "user": creds}],
              "contexts": [{"name": "kubeapi-test", "context": context}],
              "current-context": "kubeapi-test"}
    path.write_text(json.dumps(config, indent=2) + "\n")
    os.chmod(path, 0o600)
    return str(path)


def exec_calls(kubeconfig_path) -> int:
    """How many times the exec plugin of this kubeconfig has run."""
    calls = Path(f"{kubeconfig_path}.exec-calls")
    return len(calls.read_text().splitlines()) if calls.exists() else 0


def set_exec_token(kubeconfig_path, token: str, lifetime: Optional[int] = None) -> None:
    """What the exec plugin prints from its next run on."""
    Path(f"{kubeconfig_path}.exec-token").write_text(token + "\n")
    if lifetime is not None:
        Path(f"{kubeconfig_path}.exec-lifetime").write_text(f"{lifetime}\n")
