"""Machinery of the Ansible test, built on the system test's (tests/system/sysenv.py).

What it adds to sysenv, in its own files and names (sysenv is used, never changed):

  /var/cache/calico-rr-test/ansible-<release>-<key>/  the system test's cached tree, copied, with
                                                     what an Ansible-managed Debian host has:
                                                     openssh-server, sudo, python3-apt and a user
                                                     `deploy` (sudo without password; key login
                                                     only, its key is written per run). The name
                                                     does not match sysenv's `<release>-*`, so
                                                     neither cache removes the other.
  /run/netns/rransctl-XXXX                           the controller's network namespace: where
                                                     `ansible-playbook` runs (ip netns exec)

Network (nothing else is touched, nothing leaves these two namespaces):

  rransctl-XXXX (controller)            rrans-XXXX (the container, systemd-nspawn)
    ctl0 192.0.2.1/24  2001:db8::1/64 <-veth-> eth0 192.0.2.10/24  2001:db8::10/64
                                                default via 192.0.2.1 / 2001:db8::1 (so that
                                                Ansible's facts have default addresses; the
                                                controller namespace routes nowhere)

Can be used by hand: /usr/bin/python3 tests/ansible/ansenv.py cache DEB   (build the tree)
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))
import sysenv  # noqa: E402  (the system test's machinery, shared as one module)

REPO = sysenv.REPO
# What a host that Ansible manages has on top of the system test's tree.
EXTRA_PACKAGES = ["openssh-server", "sudo", "python3-apt"]
# What the role installs beside the .deb, pre-downloaded for the offline container: BIRD
# (role_packages: the one of the release) and the monitoring packages the example inventory
# turns on.
ROLE_PACKAGES = ("bird2", "prometheus-bird-exporter", "python3-prometheus-client")
# The BIRD package the role installs on each release the test runs it against. On trixie it is
# the role's default (bird3; the test leaves calico_rr_bird_package unset there, so that the
# default is what is tested); on bookworm the test sets bird2 (the role's default there,
# BIRD 1.6, is what the system test covers).
BIRD_OF_RELEASE = {"bookworm": "bird2", "trixie": "bird3"}
BIRD_SET_BY_TEST = {"bookworm"}
# The release whose host also moves from BIRD 2 to BIRD 3 with the role (bird2 pre-downloaded
# by a second call: bird2 and bird3 conflict, one apt command cannot fetch both).
MOVES_TO_BIRD3 = "trixie"
HOST_RELEASES = ["bookworm", "trixie"]


def role_packages(suite: str = sysenv.SUITE) -> tuple[str, ...]:
    return (BIRD_OF_RELEASE[suite],) + ROLE_PACKAGES[1:]
SSH_USER = "deploy"
# Bump when the way the tree is derived changes.
LAYOUT_VERSION = 1

CONTROLLER_IP, CONTROLLER_IP6 = "192.0.2.1", "2001:db8::1"
HOST_IP, HOST_IP6 = "192.0.2.10", "2001:db8::10"
STATE_DIR = Path("/var/tmp")
STATE_GLOB = "calico-rr-ansible-netns-*.json"

log = sysenv.log


def missing_prerequisites() -> list[str]:
    why = sysenv.missing_prerequisites()
    for tool in ("ansible-playbook", "ansible-vault", "ansible-lint", "ssh", "ssh-keygen"):
        if shutil.which(tool, path=sysenv.CONTAINER_PATH) is None:
            why.append(f"{tool} not installed")
    return why


# --------------------------------------------------------------------------- the cached tree

def tree_path(base: Path) -> Path:
    blob = json.dumps({"base": base.name, "extra": EXTRA_PACKAGES, "user": SSH_USER,
                       "layout": LAYOUT_VERSION}, sort_keys=True)
    suite = base.name.split("-", 1)[0]
    return sysenv.CACHE_ROOT / f"ansible-{suite}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def ensure_tree(suite: str = sysenv.SUITE) -> Path:
    """sysenv's base tree of this release, copied once, with EXTRA_PACKAGES installed and the
    SSH user made. Like sysenv's cache build this (and only this) talks to the host's Debian
    mirror."""
    base = sysenv.ensure_base_tree(suite)
    final = tree_path(base)
    with sysenv._Lock(sysenv.CACHE_ROOT / ".lock"):
        if (final / sysenv.COMPLETE).exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=sysenv.CACHE_ROOT))
        try:
            t0 = time.monotonic()
            log(f"deriving {final.name} from {base.name}: + {' '.join(EXTRA_PACKAGES)}")
            tmp.rmdir()
            sysenv.run(["cp", "-a", "--reflink=auto", str(base), str(tmp)], timeout=600)
            (tmp / sysenv.COMPLETE).unlink()
            shutil.rmtree(tmp / "var/lib/calico-rr-test", ignore_errors=True)
            (tmp / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
            os.chmod(tmp / "usr/sbin/policy-rc.d", 0o755)
            sysenv.chroot(tmp, "export DEBIAN_FRONTEND=noninteractive\n"
                               "apt-get -q update\n"
                               f"apt-get install -y -q --no-install-recommends "
                               f"{' '.join(EXTRA_PACKAGES)}\n"
                               "apt-get clean\n"
                               f"useradd --create-home --shell /bin/bash {SSH_USER}\n"
                               # '*': no password, but not a locked account: key login works.
                               f"usermod -p '*' {SSH_USER}\n"
                               f"echo '{SSH_USER} ALL=(ALL) NOPASSWD: ALL' "
                               f"> /etc/sudoers.d/{SSH_USER}\n"
                               f"chmod 0440 /etc/sudoers.d/{SSH_USER}\n")
            (tmp / "usr/sbin/policy-rc.d").unlink()
            sysenv.publish_tree(tmp, final, f"ansible-{suite}-*", t0, "tree")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- the network

class Network:
    """The container's namespace (made here instead of Container.make_netns, which keeps
    both veth ends inside) and the controller's, joined by one veth pair."""

    def __init__(self, container: "sysenv.Container"):
        self.c = container
        self.ctl = "rransctl-" + secrets.token_hex(3)
        self._state = STATE_DIR / f"calico-rr-ansible-netns-{self.ctl}.json"
        self._made = False

    def make(self) -> None:
        reap_stale()
        c = self.c
        self._state.write_text(json.dumps({"owner": os.getpid(), "netns": self.ctl}))
        sysenv.run(["ip", "netns", "add", self.ctl])
        self._made = True
        sysenv.run(["ip", "netns", "add", c.netns])
        c._netns_made = True  # Container.destroy() deletes it; reap_stale_runs() too
        c._save_state()
        for ns in (self.ctl, c.netns):
            sysenv.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        sysenv.run(["ip", "-n", c.netns, "link", "add", "eth0", "type", "veth",
                    "peer", "name", "ctl0", "netns", self.ctl])
        for ns, dev, v4, v6 in ((self.ctl, "ctl0", CONTROLLER_IP, CONTROLLER_IP6),
                                (c.netns, "eth0", HOST_IP, HOST_IP6)):
            n = ["ip", "-n", ns]
            sysenv.run(n + ["addr", "add", f"{v4}/24", "dev", dev])
            sysenv.run(n + ["addr", "add", f"{v6}/64", "dev", dev, "nodad"])
            sysenv.run(n + ["link", "set", dev, "up"])
        sysenv.run(["ip", "-n", c.netns, "route", "add", "default", "via", CONTROLLER_IP])
        sysenv.run(["ip", "-n", c.netns, "-6", "route", "add", "default", "via", CONTROLLER_IP6])

    def exec(self) -> list[str]:
        """Prefix of a command run in the controller namespace."""
        return ["ip", "netns", "exec", self.ctl]

    def destroy(self) -> None:
        if self._made:
            p = sysenv.run(["ip", "netns", "del", self.ctl], check=False)
            if p.returncode != 0:
                log(f"ip netns del {self.ctl}: {p.stderr.strip()}")
            self._made = False
        self._state.unlink(missing_ok=True)


def reap_stale() -> None:
    """Controller namespaces a killed run left behind (the container's are sysenv's job)."""
    for f in STATE_DIR.glob(STATE_GLOB):
        try:
            state = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{state.get('owner')}").exists():
            continue
        log(f"reaping a stale controller namespace: {state.get('netns')}")
        if state.get("netns"):
            sysenv.run(["ip", "netns", "del", state["netns"]], check=False)
        f.unlink(missing_ok=True)


def authorize_key(c: "sysenv.Container", public_key: str) -> None:
    """Before boot: the test's throw-away key may log in as SSH_USER."""
    passwd = (c.root / "etc/passwd").read_text().splitlines()
    uid, gid = next((int(p.split(":")[2]), int(p.split(":")[3])) for p in passwd
                    if p.split(":")[0] == SSH_USER)
    ssh = c.root / "home" / SSH_USER / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    (ssh / "authorized_keys").write_text(public_key)
    os.chmod(ssh / "authorized_keys", 0o600)
    for p in (ssh, ssh / "authorized_keys"):
        os.chown(p, uid, gid)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "cache":
        tree = ensure_tree()
        sysenv.ensure_deb_dependencies(tree, Path(sys.argv[2]).resolve(), role_packages())
        print(tree)
    else:
        sys.exit(__doc__)
