"""System test: build the .deb, install it with apt in a booted Debian 12 (bookworm) and
Debian 13 (trixie) (systemd-nspawn), run the reflector under the real systemd against a real
etcd and BIRD. The same _all.deb on both, the same checks.

One container per variant (release and BIRD package) serves the whole module; the tests run in file order and build on each
other's state (installed -> running -> reloaded -> stopped -> killed -> hung -> purged).

The container sits in its own network namespace (addresses from 192.0.2.0/24 only, nothing
routed anywhere); apt installs offline from archives that the cache build pre-downloaded.
See sysenv.py for the cache (/var/cache/calico-rr-test) and docs/packaging.md.
"""

from __future__ import annotations

import functools

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import sysenv

from tests import prereq
from tests.polling import wait_for as _wait_for

pytestmark = pytest.mark.system

RR_IP = "192.0.2.10"
NODE_IP = "192.0.2.21"
AS_NUM = "64512"
UNIT = "calico-routereflector"
# The watchdog test shortens WatchdogSec with a drop-in to keep the run fast.
TEST_WATCHDOG_SEC = 3
CONFIG = f"""\
[reflector]
ip = "{RR_IP}"

[etcd]
endpoints = ["http://localhost:2379"]

[log]
level = "info"

[metrics]
listen = "127.0.0.1:9824"
"""
ETCD_DATA = [
    (f"/calico/bgp/v1/rr_v4/{RR_IP}", f'{{"ip":"{RR_IP}","cluster_id":"1.2.3.4"}}'),
    ("/calico/bgp/v1/global/as_num", AS_NUM),
    (f"/calico/bgp/v1/global/peer_v4/{RR_IP}", f'{{"ip":"{RR_IP}","as_num":"{AS_NUM}"}}'),
    ("/calico/bgp/v1/host/node1/ip_addr_v4", NODE_IP),
]
CLIENT_PROTOCOL = "Client_" + NODE_IP.replace(".", "_")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def prerequisites():
    why = sysenv.missing_prerequisites()
    if why:
        prereq.missing("system test cannot run here: " + ", ".join(why))


@pytest.fixture(scope="module")
def deb(prerequisites, tmp_path_factory) -> Path:
    return sysenv.build_deb(tmp_path_factory.mktemp("deb"))


# The alternatives of "Depends: bird | bird2 | bird3": plain `apt install ./x.deb` resolves to
# BIRD 1.6 (bird) on bookworm, to BIRD 2 on trixie (trixie has no `bird` package); an operator
# who wants BIRD 2 on bookworm runs `apt install bird2 ./x.deb`, BIRD 3 on trixie `apt install
# bird3 ./x.deb`. (release, the BIRD package installed, whether the apt command names it)
VARIANTS = [("bookworm", "bird", False), ("bookworm", "bird2", True),
            ("trixie", "bird2", False), ("trixie", "bird3", True)]
BIRD_PACKAGES = ("bird", "bird2", "bird3")
MOVES_TO_BIRD3 = ("trixie", "bird2")  # the variant that moves a running reflector to BIRD 3


@pytest.fixture(scope="module", params=VARIANTS,
                ids=[f"{release}-{'apt-' if asked else ''}{bird}" for release, bird, asked in VARIANTS])
def container(request, deb):
    release, bird, asked = request.param
    # `apt install calico-routereflector prometheus-bird-exporter`, as an operator who wants
    # BIRD's metrics does: the exporter runs beside us with the package's drop-in.
    extra = ((bird,) if asked else ()) + ("prometheus-bird-exporter",)
    base = sysenv.ensure_base_tree(release)
    sysenv.ensure_deb_dependencies(base, deb, extra)
    if (release, bird) == MOVES_TO_BIRD3:  # BIRD 3's packages too, for test_move_from_bird2_to_bird3
        sysenv.ensure_deb_dependencies(base, deb, ("bird3", "prometheus-bird-exporter"))
    c = sysenv.Container(base)
    c.release = release
    c.bird = bird
    c.apt_extra = extra
    try:
        c.prepare()
        c.make_netns([f"{RR_IP}/24"])
        shutil.copy2(deb, c.root / "root" / deb.name)
        c.boot()
        yield c
    finally:
        c.destroy()


@pytest.fixture(scope="module")
def installed(container, deb):
    """`apt install ./x.deb` inside the booted container, resolving its dependencies from
    Debian's archive (offline: from the archives the cache build pre-downloaded; the
    container has no route anywhere). Not `--no-download`: with it, bookworm's apt 2.6
    fails on a local .deb ("Internal Error, Pathname to install is not absolute")."""
    p = container.sh(
        f"cd /root && DEBIAN_FRONTEND=noninteractive apt-get install "
        f"{' '.join(sysenv.APT_INSTALL_OPTS)} {' '.join(container.apt_extra)} ./{deb.name}",
        check=False, timeout=300)
    assert p.returncode == 0, f"apt install failed:\n{p.stdout[-4000:]}\n{p.stderr[-3000:]}"
    return container


@pytest.fixture(scope="module")
def configured(installed):
    c = installed
    c.sh("systemctl start etcd.service", timeout=60)
    wait_for(lambda: c.sh("etcdctl endpoint health", check=False).returncode == 0,
             30, "etcd healthy")
    for key, value in ETCD_DATA:
        c.sh(f"etcdctl put {shq(key)} {shq(value)}")
    # Truncate-and-write keeps the packaged mode and group (0640 root:bird).
    c.sh("cat > /etc/calico-routereflector/config.toml", input=CONFIG)
    for svc in bird_services(c):
        assert c.sh(f"systemctl is-active {svc}", check=False).stdout.strip() == "active", \
            diag(c, svc)
    return c


# --------------------------------------------------------------------------- helpers

def bird_services(c) -> list[str]:
    """BIRD 1.6 runs one daemon per family, BIRD 2 and 3 one for both (all call it bird.service)."""
    return ["bird.service", "bird6.service"] if c.bird == "bird" else ["bird.service"]


def shq(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


wait_for = functools.partial(_wait_for, interval=0.3)


def prop(c, name: str, unit: str = UNIT) -> str:
    return c.sh(f"systemctl show -p {name} --value {unit}").stdout.strip()


def diag(c, unit: str = UNIT) -> str:
    out = c.sh(f"systemctl status --no-pager -l {unit}; "
               f"journalctl --no-pager -o short-monotonic -n 60 -u {unit}",
               check=False, timeout=30)
    return f"\n--- {unit} ---\n{out.stdout}{out.stderr}"


def wait_active(c, timeout: float = 30, other_than_pid: str | None = None) -> str:
    """Wait until the unit is active (running) with a MainPID, optionally a new one."""
    def ok():
        if prop(c, "ActiveState") != "active" or prop(c, "SubState") != "running":
            return None
        pid = prop(c, "MainPID")
        if pid in ("", "0") or pid == other_than_pid:
            return None
        return pid
    try:
        return wait_for(ok, timeout, f"{UNIT} active with a new MainPID")
    except TimeoutError as e:
        raise AssertionError(str(e) + diag(c)) from None


def journal_lines(c, pid: str | None = None) -> list[str]:
    """The unit's journal; with PID only what that process itself logged (not systemd)."""
    match = f" _PID={pid}" if pid else ""
    return c.sh(f"journalctl --no-pager -o cat -u {UNIT}{match}", check=False).stdout.splitlines()


# --------------------------------------------------------------------------- host-side checks

def test_security_exposure_at_most_2():
    """The unit's sandboxing, scored offline by systemd-analyze (no running systemd needed);
    each release's own systemd scores the installed unit too (test_installed_unit_...)."""
    if shutil.which("systemd-analyze") is None:
        prereq.missing("systemd-analyze not installed")
    unit = sysenv.REPO / "systemd" / f"{UNIT}.service"
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert exposure(p.stdout + p.stderr) <= 2.0, p.stdout


def exposure(text: str) -> float:
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", text)
    assert m, text
    return float(m.group(1))


def test_man_page_covers_the_cli():
    """calico-rr(8) is hand-written: every subcommand of the real parser must have its entry
    under COMMANDS, with each of its options in that entry, and every global option must be
    under OPTIONS, so a new command or option cannot ship undocumented."""
    import argparse
    try:
        from rr_service.app.cli import build_parser
    except ImportError as e:
        prereq.missing(f"rr_service.app.cli not importable here: {e}")
    man = (sysenv.REPO / "packaging" / "calico-rr.8").read_text().replace("\\-", "-")

    def section(title: str) -> str:
        m = re.search(rf"^\.SH {title}\n(.*?)(?=^\.SH )", man, re.M | re.S)
        assert m, f"no section {title} in packaging/calico-rr.8"
        return m.group(1)

    def entry(name: str) -> str:
        """A command's .TP entry under COMMANDS: from its `.B name` line to the next .TP."""
        m = re.search(rf"^\.TP\n\.B {re.escape(name)}\b(.*?)(?=^\.TP|\Z)", section("COMMANDS"),
                      re.M | re.S)
        return m.group(0) if m else ""

    def options(parser):
        return [o for a in parser._actions for o in a.option_strings
                if o.startswith("--") and o != "--help"]

    parser = build_parser()
    missing = [o for o in options(parser) if o not in section("OPTIONS")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                text = entry(name)
                if not text:
                    missing.append(f"command {name}")
                # The global options work after a command too; OPTIONS documents them.
                missing += [f"{name} {o}" for o in options(sub)
                            if o not in text and o not in options(parser)]
    assert not missing, f"not in packaging/calico-rr.8: {missing}"


def test_lintian_clean(deb):
    """0 errors, 0 warnings (overrides carry their reasons)."""
    if shutil.which("lintian") is None:
        prereq.missing("lintian not installed")
    p = sysenv.run(["lintian", "--fail-on", "error,warning", str(deb)], check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert not re.search(r"^[EW]: ", p.stdout, re.M), p.stdout


# Trixie's lintian (2.122) wants units in /usr/lib/systemd/system ("aliased-location", an
# error); the one .deb for both releases keeps bookworm's /lib/systemd/system, which /lib
# aliases to the same directory on both (merged /usr). Not an override in the package: bookworm's
# lintian 2.116 does not know the tag and reports the override itself as an error (alien-tag).
# See docs/packaging.md.
TRIXIE_LINTIAN_SUPPRESSED = ("aliased-location",)


def test_lintian_clean_with_trixies_lintian(deb):
    """Debian 13's lintian, from a cached trixie tree: 0 errors, 0 warnings, with the package's
    overrides and TRIXIE_LINTIAN_SUPPRESSED only."""
    tree = sysenv.ensure_lintian_tree("trixie")
    p = sysenv.lintian_in_tree(tree, deb, "--fail-on", "error,warning",
                               "--suppress-tags", ",".join(TRIXIE_LINTIAN_SUPPRESSED))
    assert p.returncode == 0, p.stdout + p.stderr
    assert not re.search(r"^[EW]: ", p.stdout, re.M), p.stdout
    # What is suppressed is still all that is wrong: without it, only that tag.
    full = sysenv.lintian_in_tree(tree, deb)
    assert {m.group(1) for m in re.finditer(r"^[EW]: \S+ (\S+)", full.stdout, re.M)} \
        <= set(TRIXIE_LINTIAN_SUPPRESSED), full.stdout


# --------------------------------------------------------------------------- in the container

def test_install_from_debian_archive(installed, deb):
    c = installed
    status = c.sh("dpkg-query -W -f='${db:Status-Status} ${Version}' calico-routereflector").stdout
    assert status.startswith("installed "), status
    # The alternative of "bird | bird2 | bird3" this variant asked for, and only that one.
    assert c.sh(f"dpkg-query -W -f='${{db:Status-Status}}' {c.bird}").stdout == "installed"
    for other in BIRD_PACKAGES:
        if other != c.bird:
            assert c.sh(f"dpkg-query -W -f='${{db:Status-Status}}' {other}",
                        check=False).stdout in ("", "not-installed"), other
    # Conffile with secrets: root:bird 0640.
    assert c.sh("stat -c '%U:%G %a' /etc/calico-routereflector/config.toml").stdout.strip() \
        == "root:bird 640"
    assert "/etc/calico-routereflector/config.toml" in \
        c.sh("dpkg-query -W -f='${Conffiles}' calico-routereflector").stdout
    # Enabled, but not started: it cannot work before reflector.ip is set.
    assert c.sh(f"systemctl is-enabled {UNIT}", check=False).stdout.strip() == "enabled"
    assert c.sh(f"systemctl is-active {UNIT}", check=False).stdout.strip() == "inactive"
    # Program, templates, man page.
    help_ = c.sh("calico-rr --help", check=False)
    assert help_.returncode == 0, help_.stdout + help_.stderr
    assert "run" in help_.stdout
    c.sh("test -f /usr/share/calico-routereflector/templates/bird.conf.j2")
    c.sh("test -f /usr/share/man/man8/calico-rr.8.gz")
    # The daemon's runtime imports resolve against Debian's packages.
    c.sh("python3 -c 'import etcd3, sdnotify, jinja2, tomllib, rr_service.app.daemon'")
    verify = c.sh(f"systemd-analyze verify --man=no /lib/systemd/system/{UNIT}.service", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_installed_unit_exposure_at_most_2_with_the_releases_systemd(installed):
    c = installed
    p = c.sh(f"systemd-analyze security --no-pager {UNIT}.service", check=False, timeout=60)
    assert exposure(p.stdout + p.stderr) <= 2.0, p.stdout + p.stderr


def test_bird_may_open_a_socket_per_session(installed):
    """BIRD holds a socket per session: the package lifts systemd's 1,024 open files for it,
    so a reflector of a few thousand nodes does not run out (effective at BIRD's start)."""
    c = installed
    expected = c.bird_open_files()
    assert expected > 1024, f"the container's PID 1 may open only {expected} files"
    for svc in bird_services(c):
        assert c.sh(f"systemctl show -p LimitNOFILE --value {svc}").stdout.strip() == \
            str(sysenv.BIRD_NOFILE), diag(c, svc)
        c.sh(f"systemctl restart {svc}", timeout=60)
        pid = c.sh(f"systemctl show -p MainPID --value {svc}").stdout.strip()
        assert c.open_files(pid) == (expected, expected), (svc, c.open_files(1))
        assert c.sh(f"systemctl is-active {svc}", check=False).stdout.strip() == "active", diag(c, svc)


def test_start_serves_node(configured):
    c = configured
    c.sh(f"systemctl start {UNIT}", check=False, timeout=120)
    wait_active(c, timeout=60)
    status = c.sh(f"systemctl status --no-pager {UNIT}", check=False).stdout
    assert "active (running)" in status, status
    m = re.search(r'^\s*Status: "(.+)"$', status, re.M)
    assert m and m.group(1).strip(), "no Status: line in systemctl status" + diag(c)
    # The process runs as bird, unprivileged.
    pid = prop(c, "MainPID")
    owner = c.sh(f"ps -o user=,group= -p {pid}").stdout.split()
    assert owner == ["bird", "bird"], owner
    caps = c.sh(f"grep -E '^Cap(Eff|Prm|Bnd):' /proc/{pid}/status").stdout
    assert all(line.split()[1] == "0000000000000000" for line in caps.splitlines()), caps
    # ProtectSystem=strict: / read-only for it, /etc/bird (ReadWritePaths=) writable.
    mounts = {}
    for line in c.sh(f"cat /proc/{pid}/mountinfo").stdout.splitlines():
        fields = line.split()
        mounts[fields[4]] = fields[5].split(",")
    assert "ro" in mounts["/"], mounts["/"]
    assert "rw" in mounts["/etc/bird"], mounts.get("/etc/bird")
    # bird.conf carries the node; BIRD runs it.
    wait_for(lambda: CLIENT_PROTOCOL in c.sh("cat /etc/bird/bird.conf").stdout, 30,
             f"{CLIENT_PROTOCOL} in /etc/bird/bird.conf")
    try:
        wait_for(lambda: CLIENT_PROTOCOL in c.sh("birdc show protocols", check=False).stdout,
                 30, f"birdc show protocols listing {CLIENT_PROTOCOL}")
    except TimeoutError as e:
        raise AssertionError(str(e) + c.sh("birdc show protocols; ls -l /etc/bird /run/bird",
                                           check=False).stdout + diag(c)) from None
    assert prop(c, "NRestarts") == "0", diag(c)
    # flavour = "auto" found the BIRD this release's package installed.
    flavour = {"bird": "bird1", "bird2": "bird2", "bird3": "bird3"}[c.bird]
    assert any(f", {flavour} configs " in entry for entry in journal_lines(c, pid)), diag(c)
    # Its runtime directory ([safety] state_dir) exists and is its own.
    assert c.sh("stat -c '%U:%G %a' /run/calico-routereflector").stdout.strip() == "bird:bird 750"
    # The operator's commands work on the installed package, as root.
    st = c.sh("calico-rr status", check=False, timeout=60)
    assert st.returncode == 0 and CLIENT_PROTOCOL in st.stdout, st.stdout + st.stderr
    acc = c.sh("calico-rr accept", check=False, timeout=60)
    assert acc.returncode == 0, acc.stdout + acc.stderr


def test_bird_exporter_runs_with_our_flags_and_labels(configured):
    """The exporter's unit, through the package's drop-in, reads the BIRD this host runs
    (BIRD 1.6's two sockets, or BIRD 2 and 3 with -bird.v2) and labels each session with the
    role and Calico node of its description."""
    c = configured
    wait_for(lambda: CLIENT_PROTOCOL in c.sh("birdc show protocols", check=False).stdout, 60,
             f"BIRD running {CLIENT_PROTOCOL}")
    exec_start = c.sh("systemctl show -p ExecStart prometheus-bird-exporter").stdout
    assert "/usr/libexec/calico-routereflector/prometheus-bird-exporter" in exec_start, exec_start
    c.sh("systemctl restart prometheus-bird-exporter", timeout=60)
    fetch = ("python3 -c \"import urllib.request; "
             "print(urllib.request.urlopen('http://127.0.0.1:9324/metrics', timeout=5).read().decode())\"")

    def series():
        text = c.sh(fetch, check=False).stdout
        return next((line for line in text.splitlines()
                     if line.startswith("bird_protocol_up{") and f'name="{CLIENT_PROTOCOL}"' in line), None)
    line = wait_for(series, 60, f"the exporter's series of {CLIENT_PROTOCOL}")
    assert 'role="client"' in line and 'node="node1"' in line and 'proto="BGP"' in line, line
    if c.bird != "bird":
        assert 'ip_version="4"' in line
    cmdline = c.sh("cat /proc/$(systemctl show -p MainPID --value prometheus-bird-exporter)/cmdline | tr '\\0' ' '").stdout
    assert ("-bird.v2" in cmdline) == (c.bird != "bird"), cmdline


def test_reload(configured):
    """`systemctl reload` = SIGHUP: the same process re-reads its settings and is READY again.
    systemd 252 has no Type=notify-reload: `systemctl reload` returns once `kill -HUP` has, the
    daemon acts on the signal on its own loop: it sends RELOADING=1 (the unit is "reloading"),
    logs the line below, re-reads etcd and sends READY=1 (the unit is "active" again)."""
    c = configured
    pid = wait_active(c)
    line = "reloading settings from /etc/calico-routereflector/config.toml"

    def reloads() -> int:
        return sum(line in entry for entry in journal_lines(c, pid))

    before = reloads()
    p = c.sh(f"systemctl reload {UNIT}", check=False, timeout=60)
    assert p.returncode == 0, p.stderr + diag(c)
    try:
        wait_for(lambda: reloads() > before, 20, f"'{line}' logged by PID {pid}")
        wait_for(lambda: prop(c, "ActiveState") == "active", 20,
                 "READY=1 after the reload (the unit active, no longer reloading)")
    except TimeoutError as e:
        raise AssertionError(str(e) + diag(c)) from None
    assert reloads() == before + 1, diag(c)
    assert prop(c, "MainPID") == pid, "reload must not restart the daemon" + diag(c)
    assert prop(c, "NRestarts") == "0", diag(c)


def test_stop_is_clean(configured):
    c = configured
    c.sh(f"systemctl stop {UNIT}", timeout=120)
    assert prop(c, "ActiveState") == "inactive", diag(c)
    assert prop(c, "Result") == "success", diag(c)
    assert c.sh(f"systemctl is-failed {UNIT}", check=False).stdout.strip() != "failed"


def test_sigkill_is_restarted(configured):
    c = configured
    c.sh(f"systemctl start {UNIT}", timeout=120)
    old = wait_active(c)
    c.sh(f"systemctl kill -s SIGKILL {UNIT}")
    # Restart=on-failure, RestartSec=2.
    new = wait_active(c, timeout=30, other_than_pid=old)
    assert new != old
    assert int(prop(c, "NRestarts")) >= 1, diag(c)


def test_watchdog_restarts_hung_daemon(configured):
    """A stopped (hung) daemon misses its WATCHDOG=1 pings: systemd aborts it and restarts
    it. The test shortens WatchdogSec from 30 s to 3 s with a drop-in (in /run, removed
    afterwards). systemd follows its SIGABRT with SIGCONT, so even a stopped process dies at
    once; the unit's TimeoutAbortSec=10s bounds the wait for one that SIGABRT cannot end."""
    c = configured
    c.sh(f"mkdir -p /run/systemd/system/{UNIT}.service.d && "
         f"printf '[Service]\\nWatchdogSec={TEST_WATCHDOG_SEC}s\\n' "
         f"> /run/systemd/system/{UNIT}.service.d/test-watchdog.conf && "
         f"systemctl daemon-reload && systemctl restart {UNIT}", timeout=120)
    try:
        old = wait_active(c, timeout=60)
        assert prop(c, "WatchdogUSec") == f"{TEST_WATCHDOG_SEC}s", prop(c, "WatchdogUSec")
        # Alive and pinging: a few watchdog periods pass without a restart.
        time.sleep(2 * TEST_WATCHDOG_SEC)
        assert prop(c, "MainPID") == old, "restarted although not hung" + diag(c)
        restarts = int(prop(c, "NRestarts"))
        c.sh(f"kill -STOP {old}")
        new = wait_active(c, timeout=TEST_WATCHDOG_SEC + 10 + 2 + 30, other_than_pid=old)
        assert new != old
        assert int(prop(c, "NRestarts")) == restarts + 1, diag(c)
        journal = c.sh(f"journalctl --no-pager -o cat -u {UNIT}").stdout
        assert "Watchdog timeout" in journal, journal[-3000:]
        assert "Failed with result 'watchdog'" in journal, journal[-3000:]
    finally:
        c.sh(f"rm -rf /run/systemd/system/{UNIT}.service.d && systemctl daemon-reload",
             check=False)


def test_upgrade_restarts_running_daemon_and_keeps_config(configured, deb):
    """A reinstall runs the maintainer scripts as an upgrade does: a running service is
    try-restarted (new MainPID) without reloading BIRD, the operator's config and its
    root:bird 0640 stay."""
    c = configured
    c.sh(f"systemctl restart {UNIT}", timeout=120)
    old = wait_active(c)
    p = c.sh(f"DEBIAN_FRONTEND=noninteractive apt-get install --reinstall "
             f"{' '.join(sysenv.APT_INSTALL_OPTS)} /root/{deb.name}", check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    new = wait_active(c, timeout=60, other_than_pid=old)
    assert new != old
    # The restart of the upgrade reloads no BIRD: the old daemon handed over what BIRD runs
    # (RuntimeDirectoryPreserve=restart keeps /run/calico-routereflector for the new one).
    taken_over = "bird runs /etc/bird/bird.conf as the previous calico-rr left it"
    try:
        wait_for(lambda: any(taken_over in entry for entry in journal_lines(c, new)), 30,
                 f"'{taken_over}' logged by PID {new}")
    except TimeoutError as e:
        raise AssertionError(str(e) + diag(c)) from None
    assert c.sh("cat /etc/calico-routereflector/config.toml").stdout == CONFIG
    assert c.sh("stat -c '%U:%G %a' /etc/calico-routereflector/config.toml").stdout.strip() \
        == "root:bird 640"


def test_move_from_bird2_to_bird3(configured):
    """README's move of a running reflector from BIRD 2 to BIRD 3 on trixie: `apt install
    bird3` (it replaces bird2 and restarts bird.service), then `systemctl reload
    calico-routereflector`: the same daemon asks the BIRD binary again and drives BIRD 3."""
    c = configured
    if (c.release, c.bird) != MOVES_TO_BIRD3:
        pytest.skip("only the trixie reflector on BIRD 2 moves to BIRD 3")
    pid = wait_active(c)
    wait_for(lambda: CLIENT_PROTOCOL in c.sh("birdc show protocols", check=False).stdout, 60,
             f"BIRD 2 running {CLIENT_PROTOCOL}")
    p = c.sh("DEBIAN_FRONTEND=noninteractive apt-get install "
             f"{' '.join(sysenv.APT_INSTALL_OPTS)} bird3", check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    c.bird = "bird3"  # what the tests after this one find
    assert c.sh("dpkg-query -W -f='${db:Status-Status}' bird2", check=False).stdout in ("", "not-installed", "config-files")
    c.sh(f"systemctl reload {UNIT}", timeout=60)
    moved = "BIRD flavour is now bird3 (was bird2)"
    try:
        wait_for(lambda: any(moved in entry for entry in journal_lines(c, pid)), 30, f"'{moved}' logged")
        wait_for(lambda: CLIENT_PROTOCOL in c.sh("birdc show protocols", check=False).stdout
                 and "BIRD 3." in c.sh("birdc show status", check=False).stdout, 60,
                 f"BIRD 3 running {CLIENT_PROTOCOL}")
    except TimeoutError as e:
        raise AssertionError(str(e) + diag(c)) from None
    assert prop(c, "MainPID") == pid, "the move must not need a restart of the daemon" + diag(c)
    st = c.sh("calico-rr status", check=False, timeout=60)
    assert st.returncode == 0 and CLIENT_PROTOCOL in st.stdout, st.stdout + st.stderr


def test_purge_keeps_bird_config(configured):
    c = configured
    c.sh(f"systemctl restart {UNIT}", timeout=120)
    wait_active(c)
    p = c.sh("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q calico-routereflector",
             check=False, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    # prerm stopped the running daemon; the unit is gone.
    assert c.sh("pgrep -f /usr/bin/[c]alico-rr", check=False).returncode == 1
    assert c.sh(f"systemctl is-active {UNIT}", check=False).stdout.strip() in ("inactive",
                                                                               "unknown")
    c.sh("test ! -e /etc/calico-routereflector")
    c.sh(f"test ! -e /etc/systemd/system/multi-user.target.wants/{UNIT}.service")
    c.sh("test ! -e /usr/bin/calico-rr")
    # BIRD's directory and the last config the reflector wrote stay.
    c.sh("test -d /etc/bird && test -f /etc/bird/bird.conf")
    if c.bird == "bird":
        c.sh("test -f /etc/bird/bird6.conf")
    assert CLIENT_PROTOCOL in c.sh("cat /etc/bird/bird.conf").stdout
    for svc in bird_services(c):
        assert c.sh(f"systemctl is-active {svc}", check=False).stdout.strip() == "active"
