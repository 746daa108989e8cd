"""BIRD 1.6 in the lab: start it in a host namespace, drive it with birdc,
parse what it says, and write configs like Calico's own nodes use."""

from __future__ import annotations

import ipaddress
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Union

from .netns import Host, Lab, LabError, Proc, wait_for

BIRD = {4: "/usr/sbin/bird", 6: "/usr/sbin/bird6"}
BIRDC = {4: "/usr/sbin/birdc", 6: "/usr/sbin/birdc6"}


def proto_name(kind: str, addr: str) -> str:
    """BIRD protocol name for a peer: ``Client_192_0_2_21``,
    ``Mesh_2001_db8__11`` (IPv6 compressed, ``.`` and ``:`` become ``_``)."""
    a = str(ipaddress.ip_address(addr))
    return f"{kind}_{a.replace('.', '_').replace(':', '_')}"


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str

    @property
    def established(self) -> bool:
        return self.state == "up" and self.info.startswith("Established")

    def same_run_as(self, earlier: "Protocol") -> bool:
        """Still the session `earlier` saw: Established then and now, not restarted."""
        return self.established and same_since(self.since, earlier.since)


_CLOCK = re.compile(r"(\d\d):(\d\d):(\d\d)(?:\.(\d+))?$")


def _seconds_of_day(since: str) -> Optional[float]:
    m = _CLOCK.search(since)
    if not m:
        return None
    h, mi, s, frac = m.groups()
    return int(h) * 3600 + int(mi) * 60 + int(s) + (float("0." + frac) if frac else 0.0)


def same_since(a: str, b: str) -> bool:
    """Whether two `since` readings are the same instant. Neither BIRD stores wall time: both
    keep the state change on the monotonic clock and convert it to wall time through the offset
    at each `show protocols`, so one instant shows as T or T +/- 1 s on BIRD 1.6 and as T +/- a
    millisecond or so on BIRD 2 (both seen here). A real restart moves it by more than 1 s: the
    nodes wait 2 s (connect delay) and the reflector 5 s before they reconnect."""
    if a == b:
        return True
    sa, sb = _seconds_of_day(a), _seconds_of_day(b)
    if sa is None or sb is None:
        return False
    d = abs(sa - sb)
    return min(d, 86400 - d) <= 1.0  # a wrap at midnight is still 0 s apart


@dataclass
class Route:
    prefix: str
    line: str
    via: Optional[str]
    protocol: Optional[str]
    from_: Optional[str]
    primary: bool
    attrs: Dict[str, str] = field(default_factory=dict)

    @property
    def originator_id(self) -> Optional[str]:
        return self.attrs.get("BGP.originator_id")

    @property
    def cluster_list(self) -> List[str]:
        return self.attrs.get("BGP.cluster_list", "").split()

    @property
    def next_hop(self) -> Optional[str]:
        v = self.attrs.get("BGP.next_hop")
        return v.split()[0] if v else None

    @property
    def as_path(self) -> str:
        return self.attrs.get("BGP.as_path", "")

    def excerpt(self) -> str:
        keep = ("Type", "BGP.next_hop", "BGP.as_path", "BGP.local_pref",
                "BGP.originator_id", "BGP.cluster_list")
        lines = [self.line]
        lines += [f"\t{k}: {self.attrs[k]}" for k in keep if k in self.attrs]
        return "\n".join(lines)


_PROTO_HDR = re.compile(r"^name\s+proto\s+table\s+state\s+since\s+info", re.IGNORECASE)  # BIRD 2: "Name Proto ..."
_ROUTE_HEAD = re.compile(
    r"^(?P<prefix>\S+)?\s+(?P<rest>.*?)\s*\[(?P<proto>\S+)\s+[^\]]*?"
    r"(?:\s+from\s+(?P<from>\S+))?\]\s*(?P<primary>\*)?")


def parse_protocols(text: str) -> Dict[str, Protocol]:
    """Parse ``show protocols`` (BIRD 1.6 and 2 share the columns)."""
    out: Dict[str, Protocol] = {}
    seen_header = False
    for line in text.splitlines():
        if _PROTO_HDR.match(line):
            seen_header = True
            continue
        if not seen_header or not line.strip():
            continue
        parts = line.split(None, 5)
        if len(parts) < 4:
            continue
        while len(parts) < 6:
            parts.append("")
        name, proto, table, state, since, info = parts
        # In BIRD 2 "since" is "date time"; keep both words.
        if re.match(r"^\d{4}-\d\d-\d\d$", since) and re.match(r"^\d\d:\d\d", info):
            t, _, info = info.partition(" ")
            since = f"{since} {t}"
        out[name] = Protocol(name, proto, table, state, since, info.strip())
    return out


def parse_routes(text: str) -> List[Route]:
    """Parse ``show route [all]`` output of BIRD 1.6, 2 or 3 into routes."""
    routes: List[Route] = []
    current_prefix: Optional[str] = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("BIRD ") or line.startswith("Network not"):
            continue
        if line[0] in " \t" and routes and ":" in line and "[" not in line:
            key, _, value = line.strip().partition(":")
            key = key.strip()
            if key.startswith("bgp_"):  # BIRD 3 prints bgp_originator_id where 1.6 and 2 print BGP.originator_id
                key = "BGP." + key[4:]
            routes[-1].attrs[key] = value.strip()
            continue
        m = _ROUTE_HEAD.match(line)
        if not m:
            continue
        prefix = m.group("prefix") or current_prefix
        current_prefix = prefix
        rest = m.group("rest") or ""
        via = None
        vm = re.search(r"\bvia\s+(\S+)", rest)
        if vm:
            via = vm.group(1)
        routes.append(Route(prefix=prefix, line=line.strip(), via=via,
                            protocol=m.group("proto"), from_=m.group("from"),
                            primary=bool(m.group("primary"))))
    return routes


class BirdProc:
    """One running BIRD (family 4 or 6) in a host namespace."""

    def __init__(self, lab: Lab, host: Host, family: int, proc: Proc,
                 config_path: Path, socket_path: Path, pid_path: Path):
        self.lab = lab
        self.host = host
        self.family = family
        self.proc = proc
        self.config_path = config_path
        self.socket_path = socket_path
        self.pid_path = pid_path

    # -- control socket -----------------------------------------------------
    def birdc(self, cmd: str, timeout: float = 15) -> str:
        """Run one birdc command; return its output (raises on failure)."""
        # The control socket is a file-system socket: reachable without
        # entering the namespace.
        res = subprocess.run([BIRDC[self.family], "-s", str(self.socket_path), *cmd.split()],
                             capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise LabError(f"birdc {cmd!r} on {self.host.name}: rc={res.returncode} "
                           f"{res.stdout.strip()} {res.stderr.strip()}")
        return res.stdout

    def protocols(self) -> Dict[str, Protocol]:
        return parse_protocols(self.birdc("show protocols"))

    def bgp_protocols(self) -> Dict[str, Protocol]:
        return {n: p for n, p in self.protocols().items() if p.proto == "BGP"}

    def wait_ready(self, timeout: float = 20) -> None:
        def ok():
            if not self.proc.alive():
                raise AssertionError(f"BIRD on {self.host.name} died:\n{self.proc.log()}")
            return "ready" in self.birdc("show status")
        wait_for(ok, timeout, what=f"BIRD{self.family} control socket on {self.host.name}",
                 describe=self.proc.log)

    def wait_established(self, names: Union[str, Iterable[str], Callable[[Dict[str, Protocol]], bool]],
                         timeout: float = 60) -> Dict[str, Protocol]:
        """Wait until the named BGP protocol(s) are Established, or until
        `names(protocols)` returns true.  Returns the protocols seen."""
        if callable(names):
            pred = names
            what = "predicate on protocols"
        else:
            wanted = [names] if isinstance(names, str) else list(names)
            what = f"Established: {', '.join(wanted)}"

            def pred(protos):
                return all(n in protos and protos[n].established for n in wanted)

        def check():
            protos = self.protocols()
            return protos if pred(protos) else None
        return wait_for(check, timeout, what=f"{what} on {self.host.name} (BIRD{self.family})",
                        describe=lambda: self.birdc("show protocols"))

    def wait_gone(self, name: str, timeout: float = 30) -> None:
        wait_for(lambda: name not in self.protocols(), timeout,
                 what=f"protocol {name} to disappear on {self.host.name}",
                 describe=lambda: self.birdc("show protocols"))

    def routes(self, prefix: str) -> List[Route]:
        return parse_routes(self.birdc(f"show route all {prefix}"))

    def route(self, prefix: str) -> Optional[Route]:
        """The primary route for exactly `prefix` (parsed ``show route all``),
        or None when BIRD has none."""
        routes = [r for r in self.routes(prefix) if r.prefix == prefix]
        for r in routes:
            if r.primary:
                return r
        return routes[0] if routes else None

    def wait_route(self, prefix: str, timeout: float = 60,
                   pred: Optional[Callable[[Route], bool]] = None) -> Route:
        def check():
            r = self.route(prefix)
            return r if r is not None and (pred is None or pred(r)) else None
        return wait_for(check, timeout, what=f"route {prefix} on {self.host.name}",
                        describe=lambda: self.birdc("show route all") + self.birdc("show protocols"))

    def reconfigure(self, text: Optional[str] = None) -> str:
        """Write `text` (if given) to the config file and ``configure`` BIRD.
        Raises unless BIRD answers with a success code."""
        if text is not None:
            self.config_path.write_text(text)
        out = self.birdc("configure")
        if not re.search(r"^(Reconfigured|Reconfiguration in progress|Reconfiguration already in progress"
                         r"|Nothing to do)", out, re.M) and "Reconfigured" not in out:
            raise LabError(f"configure failed on {self.host.name}: {out}")
        return out

    def stop(self) -> None:
        self.proc.stop()

    def __repr__(self) -> str:
        return f"<BirdProc{self.family} {self.host.name} {self.socket_path}>"


def check_config(text: str, family: int, path: Path, binary: Optional[str] = None) -> None:
    path.write_text(text)
    res = subprocess.run([binary or BIRD[family], "-p", "-c", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        raise LabError(f"bird{'' if family == 4 else '6'} -p rejects {path}: {res.stderr.strip()}")


def start_bird(lab: Lab, host: Host, config_text: str, family: int = 4,
               name: Optional[str] = None, config_path: Optional[Path] = None,
               socket_path: Optional[Path] = None, wait: bool = True,
               binary: Optional[str] = None) -> BirdProc:
    """Start BIRD (family 4) or BIRD6 (family 6) in `host`'s namespace, in the
    foreground so the lab owns the process. `binary` runs another BIRD, e.g. an
    unpacked BIRD 2 (one daemon for both families; BIRD 1.6's birdc talks to it)."""
    if family not in (4, 6):
        raise ValueError("family must be 4 or 6")
    suffix = "" if family == 4 else "6"
    name = name or f"{host.name}-bird{suffix}"
    config_path = Path(config_path or lab.tmp / f"{name}.conf")
    socket_path = Path(socket_path or lab.tmp / f"{name}.ctl")
    pid_path = lab.tmp / f"{name}.pid"
    check_config(config_text, family, config_path, binary)
    proc = host.popen([binary or BIRD[family], "-f", "-c", str(config_path), "-s", str(socket_path),
                       "-P", str(pid_path)], name=name)
    bird = BirdProc(lab, host, family, proc, config_path, socket_path, pid_path)
    if wait:
        bird.wait_ready()
    return bird


# -- configs ----------------------------------------------------------------

def minimal_bird_config(router_id: str) -> str:
    """What a reflector's BIRD starts with before the daemon renders its config."""
    return f"router id {router_id};\nprotocol device {{ scan time 2; }}\n"


def calico_node_bird_config(node_ip: str, as_num: int, rr_ips: Union[str, Iterable[str]],
                            exported_prefixes: Union[str, Iterable[str]],
                            router_id: Optional[str] = None,
                            rr_as_num: Optional[int] = None,
                            family: int = 4) -> str:
    """A BIRD 1.6 config shaped like the one calico/node writes for itself.

    `node_ip` is the node's address of `family` (the BGP source address);
    `router_id` defaults to `node_ip` for IPv4 and must be given (the node's
    IPv4 address) for IPv6.  The node originates a blackhole route for each of
    its own blocks (`exported_prefixes`) and exports only those.
    """
    rr_list = [rr_ips] if isinstance(rr_ips, str) else list(rr_ips)
    blocks = [exported_prefixes] if isinstance(exported_prefixes, str) else list(exported_prefixes)
    if router_id is None:
        if family == 6:
            raise ValueError("IPv6 node configs need router_id (the node's IPv4 address)")
        router_id = node_ip
    rr_as = rr_as_num if rr_as_num is not None else as_num
    statics = "\n".join(f"  route {b} blackhole;" for b in blocks)
    matches = ", ".join(blocks)
    peers = "\n".join(
        f"protocol bgp {proto_name('Node', ip)} from bgp_template {{\n"
        f"  neighbor {ipaddress.ip_address(ip)} as {rr_as};\n}}\n"
        for ip in rr_list)
    return f"""\
# Generated by the calico-routereflector test lab, in the style of calico/node.
router id {router_id};

filter calico_export_to_bgp_peers {{
  if ( net ~ [ {matches} ] ) then {{ accept; }}
  reject;
}}

filter calico_kernel_programming {{
  reject;
}}

protocol kernel {{
  learn;
  persist;
  scan time 2;
  import all;
  export filter calico_kernel_programming;
  graceful restart;
}}

protocol device {{
  debug {{ states }};
  scan time 2;
}}

protocol direct {{
  debug {{ states }};
  interface -"cali*", "*";
}}

protocol static {{
{statics}
}}

template bgp bgp_template {{
  debug {{ states }};
  description "Connection to BGP peer";
  local as {as_num};
  multihop;
  gateway recursive;
  import all;
  export filter calico_export_to_bgp_peers;
  next hop self;
  source address {node_ip};
  add paths on;
  graceful restart;
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}}

{peers}"""


def handwritten_rr_config(rr_ip: str, client_ips: Iterable[str], as_num: int = 64512,
                          cluster_id: str = "1.2.3.4", router_id: Optional[str] = None,
                          extra: str = "") -> str:
    """A reflector config in the style of the original calico/routereflector
    image (used to prove the routing design independently of the product)."""
    router_id = router_id or rr_ip
    clients = "\n".join(
        f"protocol bgp {proto_name('Client', ip)} from bgp_template {{\n"
        f"  local as {as_num};\n  neighbor {ipaddress.ip_address(ip)} as {as_num};\n"
        f"  rr client;\n  rr cluster id {cluster_id};\n}}\n"
        for ip in client_ips)
    return f"""\
router id {router_id};
protocol device {{ scan time 2; }}
{extra}
template bgp bgp_template {{
  debug off;
  description "Connection to BGP peer";
  multihop;
  import all;
  export all;
  source address {ipaddress.ip_address(rr_ip)};
  graceful restart;
}}

{clients}"""
