"""`calico-rr`: the command line of calico-routereflector."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Optional, Sequence

from rr_service import __version__
from rr_service.app import register, wiring
from rr_service.bird.control import BirdClient, BirdSocketError
from rr_service.sources.base import DatastoreError
from rr_service.core.pipeline import Computed
from rr_service.core.values import InvalidValue, rejection_message
from rr_service.app.settings import DEFAULT_CONFIG_PATH, LogSettings, Settings, SettingsError, load_settings
from rr_service.app.state_dir import StateDir

log = logging.getLogger("calico-rr")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Turn this host's BIRD into a BGP route reflector for a Calico cluster whose data lives in
etcd, in either of Calico's two layouts ([etcd] schema; auto picks v3 once a v3 Node exists):

  v3  Calico 3.x and later: the Node, BGPPeer and BGPConfiguration resources under
      /calico/resources/v3/projectcalico.org. Outside the cluster, the reflector serves every
      Node that a BGPPeer with its address as peerIP applies to, and meshes with the other
      reflectors declared by `calico-rr register`. As a Calico Node ([reflector] node_name) it
      gets the sessions calico/node would configure for it: its clients by peerSelector, its
      peers, the mesh when it has no routeReflectorClusterID.
  v1  the legacy /calico/bgp/v1 keys: the reflector meshes with every other reflector listed
      there and serves, as route-reflector server, every node that names it as its peer.

With [datastore] type = "kubernetes" (DATASTORE_TYPE=kubernetes) the data comes from the
Kubernetes API instead ([kubernetes] kubeconfig, KUBECONFIG): Calico Nodes are Kubernetes
Nodes, BGPPeer, BGPConfiguration and IPPool Calico's custom resources; the v3 rules apply,
and register/unregister write the reflector's BGPPeers through the API (not --node).
BGPPeer passwords come from Kubernetes Secrets in either mode: in etcd mode only when
[kubernetes] kubeconfig (KUBECONFIG) is set.
"""

EPILOG = f"""\
settings: TOML file (default {DEFAULT_CONFIG_PATH}); the container image's environment
variables IP, IP6, ETCD_ENDPOINTS, ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE,
ETCD_USERNAME, ETCD_PASSWORD, DATASTORE_TYPE and KUBECONFIG override it. See calico-rr(8).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calico-rr",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"calico-rr {__version__}")
    _global_options(parser, argparse.SUPPRESS)
    parser.set_defaults(config=None, log_level=None)
    # The global options work after the command too (`calico-rr render --config FILE`), as
    # kubectl's and systemctl's do: every command takes them, without a default of its own so
    # that one given before the command stays.
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_with_parents(common))
    commands.add_parser(
        "run",
        help="run the reflector daemon (what the systemd unit starts)",
        description="Watch the datastore (etcd or the Kubernetes API), write the BIRD configs and reload BIRD on every change. "
        "SIGHUP re-reads the settings; SIGTERM stops cleanly.",
    )
    render = commands.add_parser(
        "render",
        help="print the BIRD configs computed from the datastore now; writes nothing",
        description="Read the datastore (etcd or the Kubernetes API) once and print the configs `run` would write. Touches no file "
        "and does not talk to BIRD. BGP passwords are printed as password \"<redacted>\".",
    )
    render.add_argument(
        "--flavour",
        choices=("auto", "bird1", "bird2", "bird3"),
        help="BIRD flavour to render for: bird1, bird2 or bird3 on any machine, whatever BIRD is "
        "installed; auto asks the installed BIRD (default: [bird] flavour)",
    )
    render.add_argument(
        "--only",
        choices=("bird", "bird6"),
        help="print only this file (BIRD 1.6: bird = IPv4, bird6 = IPv6; BIRD 2 has only bird)",
    )
    register = commands.add_parser(
        "register",
        help="declare this reflector in etcd: its rr_v4/rr_v6 entries (v1), its BGPPeers or its Node (v3)",
        description="v1: write /rr_v4/<ip> (and /rr_v6/<ip6> when an IPv6 address is set) so that "
        "the other reflectors mesh with this one; replaces the curl commands of the container image. "
        "v3: create or update this reflector's BGPPeer per family (calico-rr-<node_name>-ipv4, -ipv6): "
        "peerIP = our address, so every Node it applies to peers with us, labelled "
        "calico-rr/reflector so that the other reflectors mesh with us. With --node, instead our own "
        "Calico Node resource ([reflector] node_name): its addresses, routeReflectorClusterID and the "
        "--label labels. Either way every other field of the stored resource is kept.",
    )
    register.add_argument("--cluster-id", default=None, metavar="ID",
                          help="route-reflector cluster id, a dotted quad such as 1.0.0.1 "
                          "(v3: omitted keeps the stored one, \"\" removes it)")
    register.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                          help="v3 only: a label to set on the BGPPeer (or with --node the Node, e.g. "
                          "route-reflector=true) (repeatable)")
    register.add_argument("--node", action="store_true",
                          help="v3 only: register this reflector as a Calico Node resource instead of BGPPeers "
                          "(a reflector that is part of the cluster)")
    register.add_argument("--as-number", default=None, metavar="AS",
                          help="v3 BGPPeer: the AS the nodes peer with us in (default: the stored one, else the "
                          "cluster's AS from BGPConfiguration default)")
    register.add_argument("--node-selector", default=None, metavar="SELECTOR",
                          help="v3 BGPPeer: only the Nodes this Calico selector matches peer with us, e.g. "
                          "\"rack == 'a'\" (default: the stored one, else every Node; \"\" for every Node)")
    commands.add_parser(
        "unregister",
        help="remove this reflector's rr_v4/rr_v6 entries (v1) or its BGPPeers (v3) from etcd",
        description="v1: delete this reflector's rr_v4 / rr_v6 entries; the other reflectors drop "
        "their mesh sessions to it. v3: delete the BGPPeers `register` wrote; the nodes and the other "
        "reflectors drop their sessions to it. A Node resource of ours is left alone: remove it with "
        "`calicoctl delete node NAME`, which also releases its IPAM data.",
    )
    commands.add_parser(
        "accept",
        help="apply a config the daemon holds back because it would drop most sessions",
        description="When etcd's data would drop more than [safety] max_drop_share of the "
        "running BGP sessions at once, `run` holds the new config back for [safety] "
        "hold_seconds. `accept` tells it to apply that config now.",
    )
    status = commands.add_parser(
        "status",
        help="compare the sessions the data calls for with the sessions BIRD runs",
        description="One line per session: role, protocol name, neighbour, AS, whether the data "
        "calls for it, the state BIRD reports over its control socket, the routes a client session "
        "holds (with the updates its filter refused, and 'limit hit' at its import limit) and the rule "
        "that gave it. "
        "With the datastore unreachable, BIRD's sessions are listed anyway and the exit status is 1.",
    )
    status.add_argument("--json", action="store_true",
                        help="print one JSON document (datastore, drop guard, families, sessions, BIRD's "
                        "sockets) for scripts")
    return parser


def _global_options(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--config", metavar="PATH", default=default,
                        help=f"settings file (default {DEFAULT_CONFIG_PATH}; a missing default file is fine)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=default,
                        help="override [log] level")


def _with_parents(common: argparse.ArgumentParser):
    """The subparsers' class: each command's parser has the global options as a parent."""
    class CommandParser(argparse.ArgumentParser):
        def __init__(self, **kwargs):
            kwargs.setdefault("parents", [common])
            super().__init__(**kwargs)
    return CommandParser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # `accept` talks to the running daemon through its state folder only: it needs neither
        # this reflector's address nor the datastore.
        settings = _load(args, require_ip=args.command != "accept")
    except SettingsError as exc:
        print(f"calico-rr: {exc}", file=sys.stderr)
        return EXIT_ERROR
    setup_logging(settings.log.level)
    handler = {
        "run": cmd_run,
        "render": cmd_render,
        "register": cmd_register,
        "unregister": cmd_unregister,
        "status": cmd_status,
        "accept": cmd_accept,
    }[args.command]
    try:
        return handler(args, settings)
    except wiring.FlavourError as exc:
        print(f"calico-rr: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except DatastoreError as exc:
        print(f"calico-rr: {exc}", file=sys.stderr)  # it names the store: "etcd http://…: …"
        return EXIT_ERROR


def _load(args: argparse.Namespace, require_ip: bool = True) -> Settings:
    """The settings file with the command line's --log-level over [log] level: at start and
    at every SIGHUP, so a reload keeps the override."""
    settings = load_settings(args.config, require_ip=require_ip)
    if args.log_level:
        settings = dataclasses.replace(settings, log=LogSettings(args.log_level))
    return settings


def setup_logging(level: str) -> None:
    # journald stamps every line itself; a terminal user wants the time.
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(message)s"
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=fmt)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from rr_service.app.daemon import Daemon  # imported late: `--help` must work even without etcd3
    from rr_service.app.metrics import MetricsError

    try:
        daemon = Daemon(settings, reload_settings=lambda: _load(args))
    except MetricsError as exc:
        print(f"calico-rr: {exc}", file=sys.stderr)
        return EXIT_ERROR
    daemon.install_signal_handlers()
    return daemon.run()


def _compute_now(settings: Settings, render) -> Computed:
    """One read of the datastore through the whole pipeline, as `run` would compute it."""
    data, computed = wiring.compute_now(settings, render)
    log.info("reading the Calico %s data", data.rules)
    return computed


def cmd_render(args: argparse.Namespace, settings: Settings) -> int:
    render = wiring.renderer(settings, args.flavour)
    render.mask_passwords = True  # printed for people; `run` writes the real ones
    computed = _compute_now(settings, render)
    for rejected in computed.rejected:
        log.warning("%s", rejection_message(rejected))
    for warning in computed.plan.warnings:
        log.warning("%s", warning)
    _log_modes(computed.plan)
    if computed.plan.error:
        print(f"calico-rr: {computed.plan.error}; `run` would not apply these configs "
              "(BIRD keeps the ones it runs)", file=sys.stderr)
        return EXIT_ERROR
    targets = wiring.targets(settings, render.flavour)
    chosen = [name for name in targets if args.only in (None, name)]
    if not chosen:
        print(f"calico-rr: this BIRD flavour has no {args.only} config", file=sys.stderr)
        return EXIT_USAGE
    for name in chosen:
        if len(chosen) > 1:
            print(f"### {targets[name].config_path}")
        sys.stdout.write(computed.configs[name])
    return EXIT_OK


def _log_modes(the_plan) -> None:
    """What makes us a reflector, per family (`external reflector: 3 BGPPeers name ...`)."""
    for family_plan in (the_plan.v4, the_plan.v6):
        if family_plan.mode:
            log.info("IPv%d: %s", family_plan.family, family_plan.mode)


def cmd_register(args: argparse.Namespace, settings: Settings) -> int:
    try:
        labels = dict(register.split_label(text) for text in args.label)
    except InvalidValue as exc:
        print(f"calico-rr: --label: {exc}", file=sys.stderr)
        return EXIT_USAGE
    options = register.Options(cluster_id=args.cluster_id, labels=labels, node=args.node,
                               as_number=args.as_number, node_selector=args.node_selector)
    store = wiring.source(settings)
    try:
        for line in register.register(settings, store, options):
            print(line)
    except register.RegisterError as exc:
        print(f"calico-rr: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidValue as exc:
        print(f"calico-rr: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        store.close()
    return EXIT_OK


def cmd_unregister(args: argparse.Namespace, settings: Settings) -> int:
    store = wiring.source(settings)
    try:
        for line in register.unregister(settings, store):
            print(line)
    finally:
        store.close()
    return EXIT_OK


def cmd_accept(args: argparse.Namespace, settings: Settings) -> int:
    state = StateDir(settings.safety.state_dir)
    held = state.held()
    if held is None:
        print("no config is held back; nothing to accept")
        return EXIT_OK
    print(f"held back: {held.get('reason', '?')}")
    try:
        state.request_accept()
    except OSError as exc:
        print(f"calico-rr: cannot write to {settings.safety.state_dir}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    deadline = time.monotonic() + 10
    while state.accept_pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    if state.accept_pending():
        print("calico-rr: the daemon has not picked the answer up within 10 s; is it running?", file=sys.stderr)
        return EXIT_ERROR
    print("accepted: the daemon applies the held config now")
    return EXIT_OK


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """What the data calls for against what BIRD runs. The datastore unreachable is exactly
    when BIRD's view matters most: BIRD's sessions are listed anyway, and the exit status is 1."""
    from rr_service.core.status import status_report, status_table

    render = wiring.renderer(settings)
    plan, datastore_error = None, None
    try:
        plan = _compute_now(settings, render).plan
    except DatastoreError as exc:
        datastore_error = str(exc)
    if plan is not None and not args.json:
        for warning in plan.warnings:
            log.warning("%s", warning)
    family_targets = wiring.family_targets(render.flavour)
    # Every BIRD the settings configure, also when the data leaves its family out (v3: our Node
    # missing): the sessions it still runs are what a held-back render protects.
    me = wiring.identity(settings)
    wanted = {family_targets[f] for f in (4, 6) if me.address(f) is not None}
    bird_protocols: dict = {}
    bird_errors: dict = {}
    client_routes: dict = {}
    for name, target in wiring.targets(settings, render.flavour).items():
        if name not in wanted:
            continue
        try:
            client = BirdClient(target.socket_path, timeout=5.0)
            bird_protocols[name] = client.show_protocols()
            client_routes[name] = client.client_routes()
        except BirdSocketError as exc:
            bird_errors[name] = str(exc)
    held = StateDir(settings.safety.state_dir).held()
    held_reason = held.get("reason", "?") if held is not None else None
    if args.json:
        report = status_report(plan, family_targets, bird_protocols, bird_errors, datastore_error, held_reason,
                               client_routes)
        print(json.dumps(report, indent=1))
    else:
        print(status_table(plan, family_targets, bird_protocols, bird_errors, datastore_error, held_reason,
                           client_routes))
    return EXIT_ERROR if datastore_error else EXIT_OK
