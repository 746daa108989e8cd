"""The daemon needs no root and no capabilities: it runs as a throw-away system user (setpriv:
no supplementary groups, empty capability sets, no_new_privs), owns the config folder, and
drives a BIRD + BIRD6 pair that also runs as that user (`bird -u USER -g GROUP`). The configs
it writes are mode 0640 and BIRD accepts them.

The user is made with `useradd --system` and removed again, also on failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from rr_service.core.safety import session_names
from tests import prereq
from tests.lab.notify import NotifySocket
from tests.lab import CalicoData, minimal_bird_config, proto_name, start_etcd, wait_for
from tests.lab.bird import BIRD, BirdProc
from tests.lab.netns import REPO_ROOT
from tests.lab.reflector import FILE_FOLLOWS_BIRD, PYTHON, _env
from tests.lab.world import AS_NUM, CLUSTER_ID, ETCD_IP, NODES, RR1, RR2
from tests.security.security_helpers import no_traceback
from tests.polling import becomes_true
from tests.tomlfile import write_settings

pytestmark = pytest.mark.integration

CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@pytest.fixture
def system_user():
    for tool in ("useradd", "userdel", "setpriv"):
        if shutil.which(tool) is None:
            prereq.missing(f"{tool} is not installed")
    name = f"rrsec{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        subprocess.run(["groupdel", name], capture_output=True, timeout=30)  # if userdel left it


def _proc_status(pid: int) -> dict:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def test_daemon_runs_unprivileged_against_unprivileged_bird(lab, system_user, figures):
    user = group = system_user
    uid = int(subprocess.run(["id", "-u", user], capture_output=True, text=True, check=True).stdout)
    gid = int(subprocess.run(["id", "-g", user], capture_output=True, text=True, check=True).stdout)
    etcd = start_etcd(lab, lab.add_host("etcd", ETCD_IP))
    calico = CalicoData(etcd)
    name, ip4, ip6 = RR1
    calico.set_global_as(AS_NUM)
    for ip in (ip4, ip6, RR2[1], RR2[2]):
        calico.add_reflector(ip, CLUSTER_ID)
    calico.add_global_peer(ip4, AS_NUM)
    calico.add_node("a", NODES["a"].ipv4)
    host = lab.add_host(name, ip4, ip6)

    work = Path(tempfile.mkdtemp(prefix="rr-sec-", dir="/tmp"))
    procs = []
    notify = None
    try:
        os.chmod(work, 0o755)
        conf, run, state = work / "conf", work / "run", work / "state"
        for folder in (conf, run, state):
            folder.mkdir()
            os.chown(folder, uid, gid)
            os.chmod(folder, 0o750)
        paths = {4: (conf / "bird.conf", run / "bird.ctl", run / "bird.pid"),
                 6: (conf / "bird6.conf", run / "bird6.ctl", run / "bird6.pid")}
        birds = {}
        for family, (config, sock, pid) in paths.items():
            config.write_text(minimal_bird_config(ip4))
            os.chown(config, uid, gid)
            os.chmod(config, 0o644)  # the daemon's files must come out 0640 anyway
            binary = BIRD[family]
            proc = host.popen([binary, "-f", "-u", user, "-g", group, "-c", str(config), "-s", str(sock),
                               "-P", str(pid)], name=f"{name}-bird{family}-unpriv")
            procs.append(proc)
            birds[family] = BirdProc(lab, host, family, proc, config, sock, pid)
            birds[family].wait_ready()
            assert _proc_status(proc.pid)["Uid"][0] == str(uid), "BIRD did not drop to the test user"
        settings = Path(write_settings(work / "rr.toml", {
            "reflector": {"ip": ip4, "ip6": ip6},
            "etcd": {"endpoints": [etcd.endpoint]},
            "bird": {"config": str(paths[4][0]), "config6": str(paths[6][0]),
                     "socket": str(paths[4][1]), "socket6": str(paths[6][1])},
            "log": {"level": "debug"},
            "safety": {"state_dir": str(state)},
        }))
        os.chown(settings, 0, gid)
        os.chmod(settings, 0o640)
        notify = NotifySocket(work / "notify.sock")
        # The test user may not be able to read the checkout (CI clones wherever it likes,
        # e.g. below a 0700 folder): it runs a copy of the product, as an installed one would.
        app = work / "app"
        shutil.copytree(REPO_ROOT / "rr_service", app / "rr_service", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(REPO_ROOT / "templates", app / "templates")
        as_user_env = dict(_env(), PYTHONPATH=str(app), PYTHONDONTWRITEBYTECODE="1")
        setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
                   "--bounding-set=-all", "--no-new-privs"]
        env = dict(as_user_env, NOTIFY_SOCKET=notify.path)
        started = time.monotonic()
        daemon = host.popen([*setpriv, PYTHON, "-m", "rr_service", "--config", str(settings), "run"],
                            name=f"{name}-rr_service-unpriv", env=env, cwd=str(app))
        procs.insert(0, daemon)

        def alive():
            assert daemon.alive(), f"the daemon exited:\n{daemon.log()[-3000:]}"
            return True
        def exec_done():
            # Popen's child is a fork of this (root) test process, also called python3, until
            # it execs `ip`: wait for the daemon's own exec, not just for the name.
            cmdline = Path(f"/proc/{daemon.pid}/cmdline").read_bytes().split(b"\0")
            exe = os.readlink(f"/proc/{daemon.pid}/exe")
            return Path(exe).name.startswith("python") and b"rr_service" in cmdline

        wait_for(lambda: alive() and exec_done(), 10, what="ip netns exec and setpriv to exec the daemon")
        status = _proc_status(daemon.pid)
        assert status["Uid"] == [str(uid)] * 4 and status["Gid"] == [str(gid)] * 4, status
        assert status["Groups"] == [], status["Groups"]
        for cap in CAP_FIELDS:
            assert int(status[cap][0], 16) == 0, f"{cap} = {status[cap]}"
        assert status["NoNewPrivs"] == ["1"], status["NoNewPrivs"]

        want = {4: {proto_name("Client", NODES["a"].ipv4), proto_name("Mesh", RR2[1])},
                6: {proto_name("Mesh", RR2[2])}}

        def configured():
            alive()
            return all(want[f] <= set(birds[f].bgp_protocols()) for f in (4, 6))
        wait_for(configured, 60, what="the unprivileged daemon's sessions in BIRD and BIRD6",
                 describe=lambda: daemon.log()[-3000:])
        configured_after = time.monotonic() - started
        calico.add_node("b", NODES["b"].ipv4)  # and a later change is applied too
        wait_for(lambda: alive() and proto_name("Client", NODES["b"].ipv4) in birds[4].bgp_protocols(), 30,
                 what="a watched change applied by the unprivileged daemon", describe=lambda: daemon.log()[-3000:])

        for family, (config, _sock, _pid) in paths.items():
            st = os.stat(config)
            assert stat.S_IMODE(st.st_mode) == 0o640, f"{config}: mode {stat.S_IMODE(st.st_mode):o}"
            assert (st.st_uid, st.st_gid) == (uid, gid), f"{config}: owner {st.st_uid}:{st.st_gid}"
            running = set(birds[family].bgp_protocols())
            # The file is renamed into place just after BIRD took it in.
            assert becomes_true(lambda c=config, r=running: session_names([c.read_text()]) == r,
                                FILE_FOLLOWS_BIRD), \
                f"{config} holds {sorted(session_names([config.read_text()]))}, BIRD{family} runs {sorted(running)}"
        leftovers = [p.name for p in conf.iterdir() if p.name.startswith(".")]
        assert not leftovers, f"temp files left in the config folder: {leftovers}"
        log = daemon.log()
        assert "accepted" in log and "Traceback" not in log, log[-3000:]
        assert "ermission denied" not in log and "not writable" not in log, log[-3000:]

        as_user = subprocess.run(["ip", "netns", "exec", host.ns, *setpriv, PYTHON, "-m", "rr_service",
                                  "--config", str(settings), "status"], env=as_user_env, cwd=str(app),
                                 capture_output=True, text=True, timeout=60)
        no_traceback(as_user)
        assert as_user.returncode == 0, as_user.stderr
        assert proto_name("Client", NODES["b"].ipv4) in as_user.stdout, as_user.stdout
    finally:
        for proc in procs:  # before userdel: it refuses a user with running processes
            proc.stop()
        if notify is not None:
            notify.close()
        shutil.rmtree(work, ignore_errors=True)
    figures.add("security", "unprivileged", fault="no root, no capabilities",
                done="daemon as a throw-away system user (setpriv: no groups, all capability sets "
                "empty, no_new_privs) owning the config folder; BIRD + BIRD6 run as that user too",
                figure=f"sessions configured {configured_after:.1f} s after start, later change applied; "
                       "configs 0640 owned by the user; `status` works as that user")
