"""Helpers for the system test: a cached debootstrapped bookworm, booted with systemd-nspawn.

Layout (everything the test creates lives under these paths and is removed again, except the
cache, which is kept on purpose so reruns take seconds):

  /var/cache/calico-rr-test/bookworm-<key>/   debootstrapped tree (minbase + systemd + etcd),
                                             with working apt lists and the .deb's
                                             dependencies pre-downloaded into
                                             /var/cache/apt/archives; never booted itself
  /var/tmp/calico-rr-test-run-XXXX/           one run: overlayfs upper/work + merged root
  /run/netns/rrsys-XXXX                       the run's network namespace

Network rule: only the cache build (debootstrap, apt-get update, apt-get --download-only in a
chroot) talks to the Debian mirror the host's apt uses. The booted container lives in its own
empty network namespace and installs the .deb offline from the pre-downloaded archives.

Can also be used by hand:
  /usr/bin/python3 tests/system/sysenv.py cache [DEB]     build/refresh the cache
  /usr/bin/python3 tests/system/sysenv.py clean-cache     delete it
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "bookworm"  # the default release; RELEASES are those the system test boots
RELEASES = ("bookworm", "trixie")
CACHE_ROOT = Path(os.environ.get("CALICO_RR_TEST_CACHE", "/var/cache/calico-rr-test"))
COMPLETE = ".calico-rr-test-complete"  # a cached tree is whole only with this file
RUN_ROOT = Path("/var/tmp")
# What debootstrap puts in the base tree.
INCLUDE = ["systemd", "systemd-sysv", "dbus", "iproute2", "procps"]
# Installed in the cached tree before it is ever booted (test infrastructure, not the
# package under test: the .deb's own dependencies are only downloaded, never installed here).
PREINSTALL = ["etcd-server", "etcd-client"]
# Bump when the way the tree is built changes, to force a new cache directory.
LAYOUT_VERSION = 2
# apt options used both for the download (cache build) and the offline install (container),
# so both resolve the same set of packages.
APT_INSTALL_OPTS = ["-y", "-q", "-o", "Dpkg::Use-Pty=0"]
# The LimitNOFILE of the package's drop-ins for BIRD (systemd/bird.service.d/).
BIRD_NOFILE = 65536
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(msg: str) -> None:
    print(f"[sysenv {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=600, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("text", True)
    kw.setdefault("capture_output", True)
    env = kw.pop("env", None)
    if env is None:
        env = {"PATH": CONTAINER_PATH, "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    p = subprocess.run(cmd, timeout=timeout, env=env, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(
            f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{(p.stdout or '')[-4000:]}\n--- stderr ---\n{(p.stderr or '')[-4000:]}"
        )
    return p


# --------------------------------------------------------------------------- host facts

def missing_prerequisites() -> list[str]:
    """Reasons the system test cannot run here (empty when it can)."""
    why = []
    if os.geteuid() != 0:
        why.append("needs root")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "ip", "dpkg-buildpackage", "chroot",
                 "unshare"):
        if shutil.which(tool, path=CONTAINER_PATH) is None:
            why.append(f"{tool} not installed")
    if "overlay" not in Path("/proc/filesystems").read_text():
        why.append("no overlayfs in this kernel")
    return why


def host_debian_sources(suite: str = SUITE) -> tuple[str, str | None]:
    """(main mirror URI, security URI or None) taken from the host's apt sources: those of
    `suite`, else (a release the host does not use, trixie on a bookworm host) those of the
    host's own release, since one Debian mirror serves every release."""
    try:
        return _host_sources(suite)
    except RuntimeError:
        if suite == SUITE:
            raise
        return _host_sources(SUITE)


def _host_sources(suite: str) -> tuple[str, str | None]:
    mirror = security = None
    texts = []
    for p in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if p.is_file() and (p.suffix in (".list", ".sources") or p.name == "sources.list"):
            texts.append((p.suffix, p.read_text()))
    for suffix, text in texts:
        if suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
                    continue
                suites = fields.get("suites", "").split()
                for uri in fields.get("uris", "").split():
                    if f"{suite}-security" in suites:
                        security = security or uri
                    elif suite in suites:
                        mirror = mirror or uri
        else:
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if not m:
                    continue
                uri, dist = m.groups()
                if dist == f"{suite}-security":
                    security = security or uri
                elif dist == suite:
                    mirror = mirror or uri
    if mirror is None:
        raise RuntimeError(f"no '{suite}' apt source on the host to debootstrap from")
    return mirror, security


def cache_key(suite: str = SUITE) -> str:
    mirror, security = host_debian_sources(suite)
    blob = json.dumps({"suite": suite, "include": INCLUDE, "preinstall": PREINSTALL,
                       "mirror": mirror, "security": security, "layout": LAYOUT_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def base_tree_path(suite: str = SUITE) -> Path:
    return CACHE_ROOT / f"{suite}-{cache_key(suite)}"


# --------------------------------------------------------------------------- chroot

def chroot(tree: Path, script: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run a shell script in TREE with /proc, /sys and /dev bound, in a private mount
    namespace (the mounts vanish with it, even if we are killed)."""
    wrapper = (
        "set -e\n"
        f"T={str(tree)!r}\n"
        'mount --make-rprivate /\n'
        'mount -t proc proc "$T/proc"\n'
        'mount --rbind /sys "$T/sys"\n'
        'mount --rbind /dev "$T/dev"\n'
        'exec chroot "$T" /bin/sh -ec "$1"\n'
    )
    return run(["unshare", "--mount", "--fork", "sh", "-ec", wrapper, "sh", script],
               timeout=timeout)


def _write_apt_sources(tree: Path, suite: str = SUITE) -> None:
    mirror, security = host_debian_sources(suite)
    text = (f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    if security:
        text += (f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
                 "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
    (tree / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (tree / "etc/apt/sources.list.d/debian.sources").write_text(text)
    sl = tree / "etc/apt/sources.list"
    if sl.exists():
        sl.unlink()


class _Lock:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w")

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def ensure_base_tree(suite: str = SUITE) -> Path:
    """Debootstrap (once) the cached tree of this Debian release and preinstall the test's
    own tools in it."""
    final = base_tree_path(suite)
    with _Lock(CACHE_ROOT / ".lock"):
        if (final / COMPLETE).exists():
            return final
        mirror, _ = host_debian_sources(suite)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=CACHE_ROOT))
        try:
            t0 = time.monotonic()
            log(f"debootstrap {suite} from {mirror} into {tmp} (cold cache, a few minutes)")
            run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}",
                 suite, str(tmp), mirror], timeout=1200)
            _write_apt_sources(tmp, suite)
            # No service may start inside the chroot.
            (tmp / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
            os.chmod(tmp / "usr/sbin/policy-rc.d", 0o755)
            log(f"preinstalling {' '.join(PREINSTALL)}")
            chroot(tmp, "export DEBIAN_FRONTEND=noninteractive\n"
                        "apt-get -q update\n"
                        f"apt-get install -y -q --no-install-recommends {' '.join(PREINSTALL)}\n"
                        # debootstrap's own .debs are dead weight in every run's copy
                        "apt-get clean\n")
            (tmp / "usr/sbin/policy-rc.d").unlink()
            # Boot faster and quieter: nothing in the container needs these.
            for unit in ("systemd-timesyncd.service", "apt-daily.timer",
                         "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
                         "getty@tty1.service", "console-getty.service"):
                link = tmp / "etc/systemd/system" / unit
                if not link.exists():
                    link.symlink_to("/dev/null")
            publish_tree(tmp, final, f"{suite}-*", t0, "base tree")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def publish_tree(tmp: Path, final: Path, stale_glob: str, started: float, what: str) -> None:
    """Mark a freshly built tree complete and move it into place; cached trees of the same
    kind under other names (older layouts, other mirrors) are ours too, and now dead."""
    (tmp / COMPLETE).write_text(time.ctime() + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in CACHE_ROOT.glob(stale_glob):
        if old != final and old.is_dir():
            log(f"removing stale cached tree {old}")
            shutil.rmtree(old, ignore_errors=True)
    log(f"{what} ready in {time.monotonic() - started:.0f}s: {final}")


def ensure_lintian_tree(suite: str) -> Path:
    """SUITE's base tree, copied once, with that release's lintian: the .deb checked by the
    lintian of a release the host does not run (trixie's on a bookworm host). Cached as
    lintian-SUITE-<key>; like the other cache builds this talks to the host's Debian mirror."""
    base = ensure_base_tree(suite)
    key = hashlib.sha256(json.dumps({"base": base.name, "layout": 1}).encode()).hexdigest()[:12]
    final = CACHE_ROOT / f"lintian-{suite}-{key}"
    with _Lock(CACHE_ROOT / ".lock"):
        if (final / COMPLETE).exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=CACHE_ROOT))
        try:
            t0 = time.monotonic()
            log(f"deriving {final.name} from {base.name}: + lintian")
            tmp.rmdir()
            run(["cp", "-a", "--reflink=auto", str(base), str(tmp)], timeout=600)
            (tmp / COMPLETE).unlink()
            (tmp / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
            os.chmod(tmp / "usr/sbin/policy-rc.d", 0o755)
            chroot(tmp, "export DEBIAN_FRONTEND=noninteractive\n"
                        "apt-get -q update\n"
                        "apt-get install -y -q --no-install-recommends lintian\n"
                        "apt-get clean\n")
            (tmp / "usr/sbin/policy-rc.d").unlink()
            publish_tree(tmp, final, f"lintian-{suite}-*", t0, "tree")
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def lintian_in_tree(tree: Path, deb: Path, *args: str) -> subprocess.CompletedProcess:
    """That tree's lintian on DEB (copied in, removed after; nothing else in the tree changes)."""
    inside = Path("/tmp") / deb.name
    shutil.copy(deb, tree / inside.relative_to("/"))
    try:
        return run(["unshare", "--mount", "--fork", "sh", "-ec",
                    'mount --make-rprivate /; mount -t proc proc "$1/proc"; shift; exec chroot "$@"',
                    "sh", str(tree), str(tree), "lintian", *args, str(inside)],
                   check=False, timeout=600)
    finally:
        (tree / inside.relative_to("/")).unlink(missing_ok=True)


def build_deb(out: Path) -> Path:
    """Build the package from this work tree into `out` (debian/build.sh); the .deb built."""
    p = run(["sh", str(REPO / "debian/build.sh"), "--no-lintian", str(out)],
            check=False, timeout=900, cwd=REPO)
    assert p.returncode == 0, f"debian/build.sh failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    debs = list(out.glob("calico-routereflector_*_all.deb"))
    assert len(debs) == 1, f"expected one .deb in {out}, got {debs}"
    return debs[0]


def deb_dependency_key(deb: Path, extra: tuple[str, ...] = ()) -> str:
    fields = [run(["dpkg-deb", "-f", str(deb), f]).stdout.strip()
              for f in ("Package", "Depends", "Pre-Depends", "Recommends")]
    return hashlib.sha256("\n".join(fields + list(extra)).encode()).hexdigest()[:12]


def ensure_deb_dependencies(tree: Path, deb: Path, extra: tuple[str, ...] = ()) -> None:
    """Pre-download (not install) into TREE's apt archive cache everything
    `apt install EXTRA... ./DEB` will need, so the booted container can install it
    offline. Redone only when the .deb's dependency fields (or EXTRA) change."""
    stamp = tree / f"var/lib/calico-rr-test/deps-{deb_dependency_key(deb, extra)}"
    with _Lock(CACHE_ROOT / ".lock"):
        if stamp.exists():
            return
        log(f"pre-downloading the dependencies of {deb.name} into the cached tree")
        inside = Path("/var/lib/calico-rr-test") / deb.name
        (tree / inside.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(deb, tree / inside.relative_to("/"))
        try:
            chroot(tree, "export DEBIAN_FRONTEND=noninteractive\n"
                         "apt-get -q update\n"
                         f"apt-get install --download-only {' '.join(APT_INSTALL_OPTS)} "
                         f"{' '.join(extra)} {inside}\n")
        finally:
            (tree / inside.relative_to("/")).unlink()
        stamp.write_text(time.ctime() + "\n")


def clean_cache() -> None:
    if CACHE_ROOT.exists():
        shutil.rmtree(CACHE_ROOT)


# --------------------------------------------------------------------------- a booted container

class Container:
    """One booted bookworm: overlay over the cached tree, own network namespace."""

    def __init__(self, base: Path, name_prefix: str = "rrsys"):
        self.base = base
        token = secrets.token_hex(3)
        self.name = f"{name_prefix}-{token}"
        self.netns = f"{name_prefix}-{token}"
        self.rundir: Path | None = None
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.pid1: int | None = None
        self.console_log: Path | None = None
        self._mounted = False
        self._netns_made = False

    # -- setup
    def prepare(self) -> None:
        reap_stale_runs()
        self.rundir = Path(tempfile.mkdtemp(prefix="calico-rr-test-run-", dir=RUN_ROOT))
        for d in ("upper", "work", "root"):
            (self.rundir / d).mkdir()
        self.root = self.rundir / "root"
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={self.base},upperdir={self.rundir/'upper'},workdir={self.rundir/'work'}",
             str(self.root)])
        self._mounted = True
        etc = self.root / "etc"
        (etc / "hostname").write_text(self.name + "\n")
        (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
                                   f"127.0.1.1\t{self.name}\n")
        rc = etc / "resolv.conf"
        if rc.is_symlink() or rc.exists():
            rc.unlink()
        rc.write_text("")
        self.console_log = self.rundir / "console.log"
        self._save_state()

    def make_netns(self, addresses: list[str]) -> None:
        """The container's network: its own namespace, lo up, and ADDRESSES on eth0, one end
        of a veth pair whose both ends stay inside the namespace (this kernel may lack the
        dummy driver). Nothing connects the namespace to the host or anywhere else."""
        run(["ip", "netns", "add", self.netns])
        self._netns_made = True
        self._save_state()
        n = ["ip", "-n", self.netns]
        run(n + ["link", "set", "lo", "up"])
        run(n + ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"])
        for a in addresses:
            run(n + ["addr", "add", a, "dev", "eth0"])
        run(n + ["link", "set", "eth0peer", "up"])
        run(n + ["link", "set", "eth0", "up"])

    def boot(self, timeout: float = 120) -> None:
        cmd = ["systemd-nspawn", "--boot", "--quiet",
               f"--directory={self.root}", f"--machine={self.name}",
               f"--network-namespace-path=/run/netns/{self.netns}",
               "--capability=CAP_NET_ADMIN",
               "--register=no", "--keep-unit", "--console=read-only",
               "--resolv-conf=off", "--timezone=off", "--link-journal=no"]
        log("booting: " + " ".join(cmd))
        self._console = open(self.console_log, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._console,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent,
                                     env={"PATH": CONTAINER_PATH, "LANG": "C.UTF-8"})
        self._save_state()
        deadline = time.monotonic() + timeout
        while self.pid1 is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n"
                                   + self.console_tail())
            if time.monotonic() > deadline:
                raise TimeoutError("container PID 1 never appeared\n" + self.console_tail())
            self.pid1 = self._find_pid1()
            time.sleep(0.2)
        state = ""
        while time.monotonic() < deadline:
            p = self.sh("systemctl is-system-running", check=False, timeout=30)
            state = p.stdout.strip()
            if state in ("running", "degraded"):
                log(f"container {self.name} is {state} (PID 1 = host pid {self.pid1})")
                return
            time.sleep(0.5)
        raise TimeoutError(f"container never finished booting (last state {state!r})\n"
                           + self.sh("systemctl list-jobs --no-pager; systemctl --failed "
                                     "--no-pager", check=False).stdout + self.console_tail())

    def _find_pid1(self) -> int | None:
        """The container's init is the nspawn process's child that runs systemd in a new
        PID namespace (nspawn's intermediate child exits once the init is started)."""
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return None
        mine = os.readlink(f"/proc/{self.proc.pid}/ns/pid")
        for k in kids:
            try:
                comm = Path(f"/proc/{k}/comm").read_text().strip()
                ns = os.readlink(f"/proc/{k}/ns/pid")
            except OSError:
                continue
            if comm == "systemd" and ns != mine:
                return int(k)
        return None

    def _save_state(self) -> None:
        """What reap_stale_runs() needs should this process die without tearing down."""
        (self.rundir / "state.json").write_text(json.dumps({
            "owner": os.getpid(), "netns": self.netns if self._netns_made else None,
            "nspawn": self.proc.pid if self.proc else None}))

    # -- driving
    def nsenter(self) -> list[str]:
        return ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "--"]

    def sh(self, script: str, check: bool = True, timeout: float = 120,
           input: str | None = None) -> subprocess.CompletedProcess:
        """Run a shell script inside the container (as root, in all its namespaces)."""
        return run(self.nsenter() + ["/bin/sh", "-c", script], check=check, timeout=timeout,
                   input=input)

    def open_files(self, pid: int | str) -> tuple[int, int]:
        """Soft and hard limit of open files of a process in the container."""
        soft, hard = self.sh(f"grep 'Max open files' /proc/{pid}/limits").stdout.split()[3:5]
        return int(soft), int(hard)

    def bird_open_files(self) -> int:
        """What the package's drop-in gives a BIRD started now. systemd cannot hand out more
        than its own hard limit: on a real host that is far above BIRD_NOFILE, in this
        sandbox's container it may be lower (20,000 seen)."""
        return min(BIRD_NOFILE, self.open_files(1)[1])

    def console_tail(self, n: int = 60) -> str:
        try:
            lines = self.console_log.read_text(errors="replace").splitlines()
        except (OSError, AttributeError):
            return ""
        return "--- console ---\n" + "\n".join(lines[-n:]) + "\n"

    # -- teardown
    def destroy(self) -> None:
        """Power off, kill if needed, unmount, remove everything. Never raises."""
        errors = []
        if self.proc is not None and self.proc.poll() is None:
            if self.pid1:
                try:
                    self.sh("systemctl poweroff --no-block", check=False, timeout=15)
                except Exception as e:  # noqa: BLE001
                    errors.append(f"poweroff: {e}")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # nspawn turns SIGTERM into an orderly halt of the container ...
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    # ... and SIGKILL of its whole session takes the container with it.
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    if self.pid1:
                        try:
                            os.kill(self.pid1, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    self.proc.wait(timeout=15)
        if getattr(self, "_console", None):
            self._console.close()
        if self._mounted:
            p = run(["umount", str(self.root)], check=False)
            if p.returncode != 0:
                run(["umount", "--lazy", str(self.root)], check=False)
            self._mounted = False
        if self._netns_made:
            p = run(["ip", "netns", "del", self.netns], check=False)
            if p.returncode != 0:
                errors.append(f"ip netns del: {p.stderr.strip()}")
            self._netns_made = False
        if self.rundir and self.rundir.exists():
            shutil.rmtree(self.rundir, ignore_errors=True)
        if errors:
            log("teardown problems: " + "; ".join(errors))


def _die_with_parent() -> None:
    """In the nspawn child before exec: SIGTERM (nspawn: power the container off) when the
    test process dies, even by SIGKILL."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def reap_stale_runs() -> None:
    """Tear down what an earlier run left behind because it was killed (overlay mount,
    network namespace, run directory), when the process that made it is gone."""
    for d in RUN_ROOT.glob("calico-rr-test-run-*"):
        try:
            state = json.loads((d / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        owner = state.get("owner")
        if owner and Path(f"/proc/{owner}").exists():
            continue  # still in use (a concurrent run)
        if not owner and time.time() - d.stat().st_mtime < 3600:
            continue  # being set up right now, or not ours to judge yet
        log(f"reaping a stale test run: {d}")
        nspawn = state.get("nspawn")
        if nspawn and Path(f"/proc/{nspawn}").exists():
            try:
                if "systemd-nspawn" in Path(f"/proc/{nspawn}/cmdline").read_text():
                    os.kill(nspawn, signal.SIGKILL)
                    time.sleep(1)
            except OSError:
                pass
        root = d / "root"
        if os.path.ismount(root):
            if run(["umount", str(root)], check=False).returncode != 0:
                run(["umount", "--lazy", str(root)], check=False)
        if state.get("netns"):
            run(["ip", "netns", "del", state["netns"]], check=False)
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- building the .deb

REPO = Path(__file__).resolve().parents[2]


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "cache"
    if what == "cache":
        tree = ensure_base_tree()
        if len(sys.argv) > 2:
            ensure_deb_dependencies(tree, Path(sys.argv[2]).resolve())
        print(tree)
    elif what == "clean-cache":
        clean_cache()
    else:
        sys.exit(__doc__)
