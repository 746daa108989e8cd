"""The Ansible role, end to end: Debian's ansible-core runs the example playbook
(packaging/ansible/site.yml) over SSH against a booted Debian 12 and a booted Debian 13 (the
system test's systemd-nspawn container, see tests/system/sysenv.py and ansenv.py here).

One container per release; the tests run in file order and build on each other:
converge -> BIRD's open-files limit -> reflecting -> idempotent -> check mode changes nothing
-> a running BIRD is named, not restarted -> a change reloads (also with `enabled` flipped).

- ansible-playbook runs in a network namespace of its own (`ip netns exec`), joined to the
  container's by a veth pair (192.0.2.0/24, 2001:db8::/64): the root namespace's interfaces
  are never used, nothing is routed anywhere else.
- The inventory is a copy of the example's (packaging/ansible/inventory) with the test host
  and its connection settings in host_vars; the etcd credentials are in a vault.yml
  encrypted with a throw-away vault password; etcd (Debian's etcd-server, in the container)
  runs with authentication on, so the vaulted password is really used.
- SSH: a throw-away ed25519 key, user `deploy` with sudo (become), no control master (no
  ssh process outlives a run).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import ansenv
from ansenv import sysenv

from tests import prereq
from tests.lab.reflector import FILE_FOLLOWS_BIRD
from tests.polling import wait_for

pytestmark = pytest.mark.system

ANSIBLE_DIR = sysenv.REPO / "packaging" / "ansible"
UNIT = "calico-routereflector"
HOST = "rr1"
AS_NUM = "64512"
CLUSTER_ID = "244.0.0.1"          # the example's group_vars
OTHER_RR = "192.0.2.11"           # another reflector: a mesh peer once registered
NODE_IP = "192.0.2.21"
CLIENT_PROTOCOL = "Client_" + NODE_IP.replace(".", "_")
MESH_PROTOCOL = "Mesh_" + OTHER_RR.replace(".", "_")
ETCD_ROOT_PW = secrets.token_hex(12)
ETCD_USER, ETCD_PW = "calico", secrets.token_hex(12)
RECAP = re.compile(rf"^{HOST}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def prerequisites():
    why = ansenv.missing_prerequisites()
    if why:
        prereq.missing("Ansible test cannot run here: " + ", ".join(why))


@pytest.fixture(scope="module")
def deb(prerequisites, tmp_path_factory) -> Path:
    return sysenv.build_deb(tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="module", params=ansenv.HOST_RELEASES)
def host(deb, tmp_path_factory, request):
    """The booted container, reachable over SSH from the controller namespace, etcd up with
    authentication and the cluster's global BGP data: a host of each of ansenv.HOST_RELEASES
    (bookworm: the role installs BIRD 2, set by the test; trixie: BIRD 3, the role's default)."""
    release = request.param
    tree = ansenv.ensure_tree(release)
    sysenv.ensure_deb_dependencies(tree, deb, ansenv.role_packages(release))
    if release == ansenv.MOVES_TO_BIRD3:
        sysenv.ensure_deb_dependencies(tree, deb, ("bird2",))
    work = tmp_path_factory.mktemp("ansible")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "calico-rr-test",
                    "-f", str(work / "id_ed25519")], check=True, timeout=30)
    c = sysenv.Container(tree, name_prefix="rrans")
    net = ansenv.Network(c)
    try:
        c.prepare()
        net.make()
        ansenv.authorize_key(c, (work / "id_ed25519.pub").read_text())
        c.boot()
        setup_etcd(c)
        c.net, c.work = net, work
        c.release, c.bird_package = release, ansenv.BIRD_OF_RELEASE[release]
        wait_for(lambda: ssh(c, "true").returncode == 0, 60, "SSH login to the container")
        yield c
    finally:
        try:
            c.destroy()
        finally:
            net.destroy()


@pytest.fixture(scope="module")
def inventory(host, deb) -> Path:
    """The example inventory, copied, with the test's host and a vaulted etcd password."""
    inv = host.work / "inventory"
    shutil.copytree(ANSIBLE_DIR / "inventory", inv)
    (inv / "hosts.ini").write_text(f"[route_reflectors]\n{HOST}\n")
    (inv / "host_vars").mkdir()
    key = host.work / "id_ed25519"
    (inv / "host_vars" / f"{HOST}.yml").write_text(yaml.safe_dump({
        "ansible_host": ansenv.HOST_IP,
        "ansible_user": ansenv.SSH_USER,
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                   "-o BatchMode=yes -o ConnectTimeout=10",
        # The package built by this run; the container is offline: no apt-get update.
        "calico_rr_deb": str(deb),
        "calico_rr_apt_update_cache": False,
        "calico_rr_etcd_endpoints": ["http://localhost:2379"],
    } | ({"calico_rr_bird_package": host.bird_package}
         if host.release in ansenv.BIRD_SET_BY_TEST else {})))
    vault_pass = host.work / "vault-pass"
    vault_pass.write_text(secrets.token_hex(16) + "\n")
    vault = inv / "group_vars" / "route_reflectors" / "vault.yml"
    vault.write_text(yaml.safe_dump({"vault_calico_rr_etcd_username": ETCD_USER,
                                     "vault_calico_rr_etcd_password": ETCD_PW}))
    p = subprocess.run(["ansible-vault", "encrypt", "--vault-password-file", str(vault_pass),
                        str(vault)], capture_output=True, text=True, timeout=60, env=ansible_env(host))
    assert p.returncode == 0, p.stderr
    assert vault.read_text().startswith("$ANSIBLE_VAULT;"), "vault.yml not encrypted"
    assert ETCD_PW not in vault.read_text()
    host.vault_pass = vault_pass
    return inv


@pytest.fixture(scope="module")
def converged(host, inventory):
    """The first run of the example playbook on the fresh host, after a --check of it."""
    host.fresh_check = playbook(host, inventory, "--check", "--diff")
    host.first = playbook(host, inventory)
    return host


# --------------------------------------------------------------------------- helpers

def shq(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def etcdctl(c, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return c.sh(f"etcdctl --user root:{ETCD_ROOT_PW} " + " ".join(shq(a) for a in args),
                check=check, timeout=60)


def setup_etcd(c) -> None:
    """Debian's etcd in the container, with authentication: root, and the reflector's user
    `calico` with read-write access to /calico/ only. The cluster's global BGP data."""
    c.sh("systemctl start etcd.service", timeout=60)
    wait_for(lambda: c.sh("etcdctl endpoint health", check=False).returncode == 0, 30,
             "etcd healthy")
    c.sh(f"etcdctl user add root:{ETCD_ROOT_PW} --interactive=false && "
         f"etcdctl role add calico && "
         f"etcdctl role grant-permission calico --prefix=true readwrite /calico/ && "
         f"etcdctl user add {ETCD_USER}:{ETCD_PW} --interactive=false && "
         f"etcdctl user grant-role {ETCD_USER} calico && "
         f"etcdctl auth enable")
    for key, value in (("/calico/bgp/v1/global/as_num", AS_NUM),
                       (f"/calico/bgp/v1/global/peer_v4/{ansenv.HOST_IP}",
                        json.dumps({"ip": ansenv.HOST_IP, "as_num": AS_NUM}))):
        etcdctl(c, "put", key, value)


def ansible_env(c) -> dict:
    """A private HOME (Ansible's temp files, no ~/.ssh), Debian's tools, the example's
    ansible.cfg, and no SSH control master: no ssh process outlives a run."""
    home = c.work / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": sysenv.CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": str(home),
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "PYTHONDONTWRITEBYTECODE": "1"}


def ssh(c, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        c.net.exec() + ["ssh", "-i", str(c.work / "id_ed25519"), "-o", "BatchMode=yes",
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                        "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
                        f"{ansenv.SSH_USER}@{ansenv.HOST_IP}", command],
        capture_output=True, text=True, timeout=30, env=ansible_env(c))


class Run:
    def __init__(self, p: subprocess.CompletedProcess, seconds: float):
        self.rc, self.out, self.err, self.seconds = p.returncode, p.stdout, p.stderr, seconds
        m = RECAP.search(self.out)
        self.ok, self.changed, self.unreachable, self.failed = \
            (int(g) for g in m.groups()) if m else (None,) * 4

    def __str__(self):
        return f"--- ansible-playbook rc={self.rc} ---\n{self.out[-12000:]}\n{self.err[-3000:]}"


def playbook(c, inventory: Path, *extra: str) -> Run:
    """The example playbook, unchanged, from the controller namespace."""
    cmd = c.net.exec() + ["ansible-playbook", "-i", str(inventory / "hosts.ini"),
                          "--vault-password-file", str(c.vault_pass), "site.yml", *extra]
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=600,
                       env=ansible_env(c))
    r = Run(p, time.monotonic() - t0)
    sysenv.log(f"ansible-playbook {' '.join(extra)}: rc={r.rc} changed={r.changed} "
               f"in {r.seconds:.0f}s")
    return r


def prop(c, name: str) -> str:
    return prop_of(c, name, UNIT)


def prop_of(c, name: str, unit: str) -> str:
    return c.sh(f"systemctl show -p {name} --value {unit}").stdout.strip()


def bird_pid(c) -> str:
    return prop_of(c, "MainPID", "bird.service")


def reloads(c, pid: str) -> int:
    """How often the daemon process PID logged that it re-reads its settings (SIGHUP)."""
    out = c.sh(f"journalctl --no-pager -o cat -u {UNIT} _PID={pid}", check=False).stdout
    return out.count("reloading settings from ")


def task_output(out: str, task: str, kind: str = "TASK") -> str:
    """What ansible-playbook printed for one of the role's tasks (or handlers: kind=
    "RUNNING HANDLER"), up to the next task."""
    head = f"{kind} [calico_routereflector : {task}]"
    assert head in out, f"no {head} in the output\n{out[-12000:]}"
    return re.split(r"^(?:TASK|RUNNING HANDLER|PLAY RECAP) ", out.split(head, 1)[1], maxsplit=1,
                    flags=re.M)[0]


def diag(c) -> str:
    out = c.sh(f"systemctl status --no-pager -l {UNIT}; journalctl --no-pager -n 60 -u {UNIT}",
               check=False, timeout=30)
    return f"\n--- {UNIT} ---\n{out.stdout}{out.stderr}"


# --------------------------------------------------------------------------- host side

def test_ansible_lint_clean(tmp_path):
    """Debian's ansible-lint: no violation in the role and the example playbook (no root
    needed)."""
    if shutil.which("ansible-lint", path=sysenv.CONTAINER_PATH) is None:
        prereq.missing("ansible-lint not installed")
    env = {"PATH": sysenv.CONTAINER_PATH, "LANG": "C.UTF-8", "HOME": str(tmp_path),
           "NO_COLOR": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    p = subprocess.run(["ansible-lint", "--offline", "roles/calico_routereflector", "site.yml"],
                       cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"Passed with .*0 failure\(s\), 0 warning\(s\)", p.stdout + p.stderr), \
        p.stdout + p.stderr


# --------------------------------------------------------------------------- against the host

def test_check_on_fresh_host_predicts_the_install_and_changes_nothing(converged):
    """--check on the fresh host (run before the first real run): the installs are predicted,
    the check ends there (what follows needs the package), nothing was installed."""
    r = converged.fresh_check
    assert r.rc == 0 and r.failed == 0, str(r)
    assert r.changed and r.changed >= 2, str(r)  # BIRD, the .deb (its copy)
    assert "End the check here" in r.out, str(r)
    # What the real run then found: BIRD and the package still had to be installed.
    first = converged.first.out
    for task in (f"Install BIRD ({converged.bird_package})", "Install the .deb"):
        assert "changed: [rr1]" in task_output(first, task), \
            f"{task} was not done by the first run\n" + first


def test_converge(converged):
    c, r = converged, converged.first
    assert r.rc == 0 and r.failed == 0 and r.unreachable == 0, str(r)
    assert r.changed and r.changed > 0, str(r)
    # Installed: the package, the BIRD asked for (bookworm: the example's bird2; trixie:
    # bird3), not another.
    assert c.sh("dpkg-query -W -f='${db:Status-Status}' calico-routereflector").stdout == \
        "installed"
    assert c.sh(f"dpkg-query -W -f='${{db:Status-Status}}' {c.bird_package}").stdout == "installed"
    for other in {"bird", "bird2", "bird3"} - {c.bird_package}:
        assert c.sh(f"dpkg-query -W -f='${{db:Status-Status}}' {other}", check=False).stdout in \
            ("", "not-installed"), other
    # The config: from the facts (default routes' addresses) and the vault, root:bird 0640.
    conf = c.sh("cat /etc/calico-routereflector/config.toml").stdout
    assert c.sh("stat -c '%U:%G %a' /etc/calico-routereflector/config.toml").stdout.strip() \
        == "root:bird 640"
    assert f'ip = "{ansenv.HOST_IP}"' in conf and f'ip6 = "{ansenv.HOST_IP6}"' in conf, conf
    assert f'username = "{ETCD_USER}"' in conf and f'password = "{ETCD_PW}"' in conf
    assert ETCD_PW not in r.out, "the vaulted password was printed"
    assert '[metrics]\nlisten = "127.0.0.1:9824"' in conf, conf
    # Running, enabled; started with the new config, so not reloaded on top of that.
    assert "reloading settings" not in c.sh(f"journalctl --no-pager -o cat -u {UNIT}").stdout
    assert prop(c, "ActiveState") == "active" and prop(c, "SubState") == "running", diag(c)
    assert c.sh(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    # Registered (with the vaulted credentials: etcd has authentication on).
    got = etcdctl(c, "get", "--print-value-only", f"/calico/bgp/v1/rr_v4/{ansenv.HOST_IP}").stdout
    assert json.loads(got) == {"ip": ansenv.HOST_IP, "cluster_id": CLUSTER_ID}, got
    got6 = etcdctl(c, "get", "--print-value-only", f"/calico/bgp/v1/rr_v6/{ansenv.HOST_IP6}").stdout
    assert json.loads(got6) == {"ip": ansenv.HOST_IP6, "cluster_id": CLUSTER_ID}, got6


def test_bird_may_open_a_socket_per_session(converged):
    """The first run installed BIRD, which apt started before the package brought the drop-in
    that lifts its open-files limit: the role restarted it once (it had no session yet), so
    BIRD has the limit now, not systemd's 1,024."""
    c = converged
    out = task_output(c.first.out, "Restart the BIRD installed in this run, for the package's "
                                   "open-files limit")
    assert "changed: [rr1] => (item=bird.service)" in out, c.first.out
    expected = c.bird_open_files()
    assert expected > 1024, f"the container's PID 1 may open only {expected} files"
    assert c.open_files(bird_pid(c)) == (expected, expected), c.open_files(1)
    assert prop_of(c, "ActiveState", "bird.service") == "active"


def test_reflecting(converged):
    """The daemon reads etcd: its cluster id from its registration, a mesh peer and a node
    put in etcd now appear in BIRD's config and in BIRD."""
    c = converged
    etcdctl(c, "put", f"/calico/bgp/v1/rr_v4/{OTHER_RR}",
            json.dumps({"ip": OTHER_RR, "cluster_id": CLUSTER_ID}))
    etcdctl(c, "put", "/calico/bgp/v1/host/node1/ip_addr_v4", NODE_IP)
    try:
        wait_for(lambda: all(p in c.sh("birdc show protocols", check=False).stdout
                             for p in (CLIENT_PROTOCOL, MESH_PROTOCOL)),
                 30, f"{CLIENT_PROTOCOL} and {MESH_PROTOCOL} in birdc show protocols")
    except TimeoutError as e:
        raise AssertionError(str(e) + c.sh("cat /etc/bird/bird.conf; birdc show protocols",
                                           check=False).stdout + diag(c)) from None
    # The client session carries the cluster id this reflector was registered with. The file
    # is renamed into place just after BIRD took it in, so it may be a moment behind BIRD.
    wait_for(lambda: f"rr cluster id {CLUSTER_ID}" in c.sh("cat /etc/bird/bird.conf").stdout,
             FILE_FOLLOWS_BIRD,
             f"rr cluster id {CLUSTER_ID} in /etc/bird/bird.conf")
    st = c.sh("calico-rr status", check=False, timeout=60)
    assert st.returncode == 0, st.stdout + st.stderr
    assert CLIENT_PROTOCOL in st.stdout and MESH_PROTOCOL in st.stdout, st.stdout
    assert prop(c, "NRestarts") == "0", diag(c)


def scrape(c, port: int) -> str:
    return c.sh("python3 -c \"import urllib.request; print(urllib.request.urlopen("
                f"'http://127.0.0.1:{port}/metrics', timeout=5).read().decode())\"", check=False).stdout


def test_monitoring(converged):
    """The example turns monitoring on: the daemon serves its metrics (the role installed
    python3-prometheus-client), the exporter runs through the package's drop-in and labels
    BIRD's sessions; the role's check read `calico-rr status --json` and found it working."""
    c = converged
    etcdctl(c, "put", f"/calico/bgp/v1/rr_v4/{OTHER_RR}", json.dumps({"ip": OTHER_RR, "cluster_id": CLUSTER_ID}))
    assert "ok: [rr1]" in task_output(c.first.out, "Check that the reflector reaches its datastore and BIRD runs "
                                                    "its sessions"), c.first.out
    assert "skipping: [rr1]" in task_output(c.first.out, "Report what keeps the reflector from working")
    wait_for(lambda: "calico_rr_datastore_connected 1.0" in scrape(c, 9824), 30, "the daemon's metrics")
    assert prop_of(c, "ActiveState", "prometheus-bird-exporter.service") == "active"
    assert "/usr/libexec/calico-routereflector/prometheus-bird-exporter" in \
        prop_of(c, "ExecStart", "prometheus-bird-exporter.service")
    wait_for(lambda: f'name="{MESH_PROTOCOL}"' in scrape(c, 9324), 30, f"{MESH_PROTOCOL} in the exporter's series")
    line = next(line for line in scrape(c, 9324).splitlines()
                if line.startswith("bird_protocol_up{") and f'name="{MESH_PROTOCOL}"' in line)
    assert 'role="mesh"' in line, line


def test_second_run_changes_nothing(converged, inventory):
    c = converged
    pid, bird = prop(c, "MainPID"), bird_pid(c)
    r = playbook(c, inventory)
    assert r.rc == 0 and r.failed == 0, str(r)
    assert r.changed == 0, str(r)
    assert prop(c, "MainPID") == pid
    assert bird_pid(c) == bird, "BIRD was restarted on a converged host"


def test_check_diff_on_converged_host_changes_nothing(converged, inventory):
    c = converged
    before = c.sh("md5sum /etc/calico-routereflector/config.toml").stdout
    r = playbook(c, inventory, "--check", "--diff")
    assert r.rc == 0 and r.failed == 0, str(r)
    assert r.changed == 0, str(r)
    assert ETCD_PW not in r.out, "--diff printed the vaulted password"
    assert c.sh("md5sum /etc/calico-routereflector/config.toml").stdout == before


def test_check_mode_predicts_a_registration_change_without_writing(converged, inventory):
    """--check with another cluster id: the register task says it would change (with a diff)
    and etcd keeps the registered value."""
    c = converged
    r = playbook(c, inventory, "--check", "--diff", "-e", "calico_rr_cluster_id=244.0.0.9")
    assert r.rc == 0 and r.failed == 0, str(r)
    assert r.changed == 1, str(r)
    assert "changed: [rr1]" in task_output(r.out, "Register the reflector in its datastore"), str(r)
    assert '"cluster_id": "244.0.0.9"' in r.out, str(r)
    got = etcdctl(c, "get", "--print-value-only", f"/calico/bgp/v1/rr_v4/{ansenv.HOST_IP}").stdout
    assert json.loads(got)["cluster_id"] == CLUSTER_ID


def test_running_bird_below_the_limit_is_named_not_restarted(converged, inventory):
    """A BIRD that was running before the run, with fewer open files than the drop-in gives:
    the role must not restart it (that drops its sessions), but tell the operator how to."""
    c = converged
    drop_in = "/run/systemd/system/bird.service.d"
    remove = f"rm -f {drop_in}/zz-test.conf; rmdir {drop_in}; systemctl daemon-reload"
    try:
        # BIRD restarted under systemd's default, then the unit back to the package's limit.
        c.sh(f"mkdir -p {drop_in} && printf '[Service]\\nLimitNOFILE=1024\\n' > {drop_in}/zz-test.conf"
             f" && systemctl daemon-reload && systemctl restart bird.service && {remove}", timeout=60)
        bird = bird_pid(c)
        assert c.open_files(bird) == (1024, 1024)
        r = playbook(c, inventory)
        assert r.rc == 0 and r.failed == 0, str(r)
        assert r.changed == 0, str(r)
        assert bird_pid(c) == bird, "the role restarted a running BIRD"
        warning = task_output(r.out, "Tell how to lift a running BIRD's open-files limit")
        assert f"WARNING: bird.service (PID {bird}) may open only 1024 files; its next start " \
               f"gives it {c.bird_open_files()}" in warning, str(r)
        assert "systemctl restart bird.service" in warning, str(r)
    finally:
        c.sh(f"{remove}; systemctl restart bird.service", check=False, timeout=60)


def test_config_change_reloads_the_service(converged, inventory):
    """A changed variable rewrites config.toml and the handler reloads (SIGHUP) the running
    daemon: same MainPID, the daemon re-reads its settings."""
    c = converged
    pid = prop(c, "MainPID")
    since = c.sh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    r = playbook(c, inventory, "-e", "calico_rr_log_level=debug")
    assert r.rc == 0 and r.failed == 0, str(r)
    assert "RUNNING HANDLER [calico_routereflector : Reload calico-routereflector]" in r.out, str(r)
    assert r.changed == 2, str(r)  # the config file and the reload
    assert 'level = "debug"' in c.sh("cat /etc/calico-routereflector/config.toml").stdout
    wait_for(lambda: "reloading settings" in c.sh(
        f"journalctl --no-pager -o cat -u {UNIT} --since {shq(since)}", check=False).stdout,
        20, "the daemon's 'reloading settings' log line")
    # RELOADING=1 ... READY=1: back to active, same process.
    try:
        wait_for(lambda: prop(c, "ActiveState") == "active", 20, "active again after the reload")
    except TimeoutError as e:
        raise AssertionError(str(e) + diag(c)) from None
    assert prop(c, "MainPID") == pid, "a reload must not restart the daemon" + diag(c)


def test_config_change_reloads_also_when_enabling_the_service(converged, inventory):
    """The service task is "changed" when it only re-enables the running service: the
    changed config must still reach the running daemon, by one reload."""
    c = converged
    c.sh(f"systemctl disable {UNIT}")
    pid = prop(c, "MainPID")
    before = reloads(c, pid)
    r = playbook(c, inventory, "-e", "calico_rr_hold_seconds=301")
    assert r.rc == 0 and r.failed == 0, str(r)
    assert "changed: [rr1]" in task_output(r.out, "Enable and start calico-routereflector"), str(r)
    assert "changed: [rr1]" in task_output(r.out, "Reload calico-routereflector",
                                           kind="RUNNING HANDLER"), str(r)
    assert r.changed == 3, str(r)  # the config file, enabling, the reload
    assert "hold_seconds = 301" in c.sh("cat /etc/calico-routereflector/config.toml").stdout
    assert c.sh(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    try:
        wait_for(lambda: reloads(c, pid) > before, 20, "the daemon's 'reloading settings' log line")
        wait_for(lambda: prop(c, "ActiveState") == "active", 20, "active again after the reload")
    except TimeoutError as e:
        raise AssertionError(str(e) + diag(c)) from None
    assert reloads(c, pid) == before + 1, diag(c)
    assert prop(c, "MainPID") == pid, "a reload must not restart the daemon" + diag(c)


def test_v3_registration_is_idempotent(converged, inventory):
    """Calico v3 data: the register task creates the reflector's BGPPeers (peerIP its
    addresses, the cluster's AS, labelled as a reflector with its cluster id), then leaves
    them alone; with calico_rr_register_node it creates the reflector's Node resource instead
    (addresses from the facts, with the interface's prefix length; cluster id; labels), then
    leaves that alone too."""
    c = converged
    name = c.sh("hostname").stdout.strip().lower()
    prefix = "/calico/resources/v3/projectcalico.org"
    v3 = ["-e", "calico_rr_etcd_schema=v3", "-e", '{"calico_rr_register_labels": {"rack": "a"}}']
    r = playbook(c, inventory, *v3)
    assert r.rc == 0 and r.failed == 0, str(r)
    got = etcdctl(c, "get", "--print-value-only", f"{prefix}/bgppeers/calico-rr-{name}-ipv4").stdout
    peer = json.loads(got)
    assert peer["spec"] == {"peerIP": ansenv.HOST_IP, "asNumber": 64512}, peer
    assert peer["metadata"]["labels"] == {"rack": "a", "calico-rr/reflector": name,
                                          "calico-rr/cluster-id": CLUSTER_ID}, peer
    assert json.loads(etcdctl(c, "get", "--print-value-only",
                              f"{prefix}/bgppeers/calico-rr-{name}-ipv6").stdout)["spec"]["peerIP"] == ansenv.HOST_IP6
    again = playbook(c, inventory, *v3)
    assert again.rc == 0 and again.changed == 0, str(again)
    assert etcdctl(c, "get", "--print-value-only", f"{prefix}/bgppeers/calico-rr-{name}-ipv4").stdout == got

    as_node = ["-e", "calico_rr_etcd_schema=v3", "-e", "calico_rr_register_node=true",
               "-e", '{"calico_rr_register_labels": {"route-reflector": "true"}}']
    r = playbook(c, inventory, *as_node)
    assert r.rc == 0 and r.failed == 0, str(r)
    got = etcdctl(c, "get", "--print-value-only", f"{prefix}/nodes/{name}").stdout
    node = json.loads(got)
    assert node["metadata"]["labels"] == {"route-reflector": "true"}, node
    assert node["spec"]["bgp"] == {"ipv4Address": f"{ansenv.HOST_IP}/24",
                                   "ipv6Address": f"{ansenv.HOST_IP6}/64",
                                   "routeReflectorClusterID": CLUSTER_ID}, node
    again = playbook(c, inventory, *as_node)
    assert again.rc == 0 and again.changed == 0, str(again)
    assert etcdctl(c, "get", "--print-value-only", f"{prefix}/nodes/{name}").stdout == got

def test_the_check_fails_the_host_with_what_is_wrong(converged, inventory):
    """With etcd down the role's check gives up after calico_rr_verify_timeout and fails the
    host with the daemon's own words; the service keeps running."""
    c = converged
    c.sh("systemctl stop etcd.service", timeout=60)
    try:
        r = playbook(c, inventory, "-e", "calico_rr_verify_timeout=6", "-e", "calico_rr_register=false")
        assert r.rc != 0 and r.failed == 1, str(r)
        out = task_output(r.out, "Report what keeps the reflector from working")
        assert "calico-routereflector does not work after 6 s: datastore unreachable: " in out, out
        assert prop(c, "ActiveState") == "active", diag(c)
    finally:
        c.sh("systemctl start etcd.service", timeout=60)
        wait_for(lambda: etcdctl(c, "endpoint", "health", check=False).returncode == 0, 30, "etcd healthy")


def test_bird_package_change_moves_the_running_daemon(converged, inventory):
    """The role README's move: calico_rr_bird_package changed on a running reflector. Trixie's
    host goes to bird2 and back to bird3 (the role's default); each time apt swaps the package,
    the handler reloads the same daemon, which asks the binary again (flavour auto) and drives
    the new BIRD, and the role's check passes."""
    c = converged
    if c.release != ansenv.MOVES_TO_BIRD3:
        pytest.skip(f"only the {ansenv.MOVES_TO_BIRD3} host moves between BIRD 2 and 3")
    pid = prop(c, "MainPID")
    for package, extra, version in (("bird2", ["-e", "calico_rr_bird_package=bird2"], "BIRD 2."),
                                    ("bird3", [], "BIRD 3.")):
        was = "bird3" if package == "bird2" else "bird2"
        since = c.sh("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
        r = playbook(c, inventory, *extra)
        assert r.rc == 0 and r.failed == 0, str(r)
        assert "changed: [rr1]" in task_output(r.out, f"Install BIRD ({package})"), str(r)
        assert "changed: [rr1]" in task_output(r.out, "Reload calico-routereflector",
                                               kind="RUNNING HANDLER"), str(r)
        assert c.sh(f"dpkg-query -W -f='${{db:Status-Status}}' {package}").stdout == "installed"
        moved = f"BIRD flavour is now {package} (was {was})"
        try:
            wait_for(lambda: moved in c.sh(f"journalctl --no-pager -o cat -u {UNIT} --since {shq(since)}",
                                           check=False).stdout, 30, f"'{moved}' logged")
            wait_for(lambda: CLIENT_PROTOCOL in c.sh("birdc show protocols", check=False).stdout
                     and version in c.sh("birdc show status", check=False).stdout, 60,
                     f"{version} running {CLIENT_PROTOCOL}")
        except TimeoutError as e:
            raise AssertionError(str(e) + diag(c)) from None
        assert prop(c, "MainPID") == pid, "the move must not restart the daemon" + diag(c)
