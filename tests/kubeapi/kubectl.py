"""Debian's kubectl (package kubernetes-client, 1.20), unpacked beside whatever owns /usr/bin.

On these machines /usr/bin/kubectl is Google Cloud SDK's dispatcher (package `kubectl`), which
conflicts with Debian's `kubernetes-client`; so the .deb is fetched with `apt-get download`
(Debian's archive only, no other network) and unpacked with `dpkg-deb -x` into a cache folder.
A run of kubectl gets its own HOME and discovery cache: kubectl caches discovery per
host:port for 10 minutes, and a server restarted on the same port with other groups would
otherwise be misread.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

CACHE = Path(os.environ.get("RR_KUBECTL_CACHE", "/var/cache/calico-rr-test/kubectl"))
PACKAGE = "kubernetes-client"


def _unpacked() -> Optional[Path]:
    binary = CACHE / "usr" / "bin" / "kubectl"
    return binary if os.access(binary, os.X_OK) else None


def debian_kubectl() -> Optional[str]:
    """The path of Debian's kubectl, unpacking it on first use; None if that failed."""
    binary = _unpacked()
    if binary:
        return str(binary)
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return None
    work = Path(tempfile.mkdtemp(prefix="kubectl-deb-"))
    try:
        work.chmod(0o777)  # apt's sandbox user (_apt) writes the download here
        download = ["apt-get", "download", "-q", PACKAGE]
        done = subprocess.run(download, cwd=work, capture_output=True, timeout=300)
        if done.returncode != 0 and os.geteuid() == 0:
            # fresh machine: no package lists yet
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300)
            done = subprocess.run(download, cwd=work, capture_output=True, timeout=300)
        debs = glob.glob(str(work / f"{PACKAGE}_*.deb"))
        if done.returncode != 0 or not debs:
            return None
        staging = Path(tempfile.mkdtemp(prefix="kubectl-unpack-", dir=_parent()))
        subprocess.run(["dpkg-deb", "-x", debs[0], str(staging)], check=True,
                       capture_output=True, timeout=120)
        if CACHE.exists() and not _unpacked():
            shutil.rmtree(CACHE, ignore_errors=True)  # a broken earlier unpack
        try:
            staging.rename(CACHE)  # atomic: a parallel run sees all or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another run won the race
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    binary = _unpacked()
    return str(binary) if binary else None


def _parent() -> str:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    return str(CACHE.parent)


def kubectl_or_missing() -> str:
    """Debian's kubectl, or a missing prerequisite (skip; a failure under RR_REQUIRE_ALL=1)."""
    from tests import prereq
    return debian_kubectl() or prereq.missing(
        f"Debian's kubectl could not be unpacked into {CACHE} "
        f"(apt-get download {PACKAGE} needs root and Debian's archive)")


def run_kubectl(binary: str, kubeconfig: str, *args: str, home: Optional[str] = None,
                timeout: float = 60, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """kubectl --kubeconfig K args..., with a private HOME and discovery cache."""
    home = home or str(Path(kubeconfig).parent / "kubectl-home")
    Path(home).mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
    cmd = [binary, "--kubeconfig", kubeconfig, "--cache-dir", f"{home}/cache", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input,
                          env=env)


def popen_kubectl(binary: str, kubeconfig: str, *args: str, home: Optional[str] = None,
                  stdout=None) -> subprocess.Popen:
    """A long-running kubectl (get -w): the caller must kill it (it is its own process group)."""
    home = home or str(Path(kubeconfig).parent / "kubectl-home")
    Path(home).mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
    cmd = [binary, "--kubeconfig", kubeconfig, "--cache-dir", f"{home}/cache", *args]
    return subprocess.Popen(cmd, stdout=stdout or subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
