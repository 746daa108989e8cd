"""BIRD configuration text from a Plan, through the jinja2 templates in `templates/`.

Pure: no file is written here. The model already validated every value; `_check_safe` is a
second, independent guard so that a future change upstream can never let text from etcd
reach a BIRD config as anything but the address, number or symbol it stands for.
"""

from __future__ import annotations

import ipaddress
import operator
import os
import re
from pathlib import Path
from typing import Callable, Optional

import jinja2

from rr_service.core.values import AS_MAX, password_problem
from rr_service.core.plan import CLIENT, ROLE_ORDER, FamilyPlan, Plan, Planned, Session, session_key
from rr_service.core.slots import Slots

INSTALLED_TEMPLATES = "/usr/share/calico-routereflector/templates"
SOURCE_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
# Per BIRD flavour: each config file BIRD reads (the target), its template, its families.
# BIRD 1.6 runs one daemon per family; BIRD 2 one daemon with both. BIRD 3 reads BIRD 2's
# configs as they are (checked with BIRD 3.1.8's `bird -p`): its flavour shares their templates.
TEMPLATES = {
    "bird1": {"bird": ("bird.conf.j2", (4,)), "bird6": ("bird6.conf.j2", (6,))},
    "bird2": {"bird": ("bird2.conf.j2", (4, 6))},
    "bird3": {"bird": ("bird2.conf.j2", (4, 6))},
}
SESSION_TEMPLATE = "session.j2"  # every flavour's

_SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_DESCRIPTION_RE = re.compile(r"[A-Za-z0-9_.:, -]{1,4096}")
_NODE_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9])?")


class RenderError(Exception):
    """A template is missing or broken, or a value failed the last safety check."""


def default_template_dir() -> str:
    """The source tree's templates when run from a checkout, else the installed ones."""
    override = os.environ.get("CALICO_RR_TEMPLATES")
    if override:
        return override
    if SOURCE_TEMPLATES.is_dir():
        return str(SOURCE_TEMPLATES)
    return INSTALLED_TEMPLATES


FILTER_MODES = ("pools", "limits-only", "off")


PASSWORD_MASK = "<redacted>"


class Renderer:
    def __init__(self, template_dir: Optional[str] = None, flavour: str = "bird1", client_filter: str = "off",
                 import_limit: int = 0):
        """`client_filter` says what a client session accepts ([filters] mode): `pools` (its
        family's client_prefixes, or limits only while the data names no pool),
        `limits-only` (anything but a default route) or `off` (everything, the original
        image's `import all`); `import_limit` caps the routes a client session holds (0:
        none)."""
        if flavour not in TEMPLATES:
            raise RenderError(f"no templates for BIRD flavour {flavour!r}")
        if client_filter not in FILTER_MODES:
            raise RenderError(f"no client filter mode {client_filter!r}")
        if isinstance(import_limit, bool) or not isinstance(import_limit, int) or import_limit < 0:
            raise RenderError(f"import limit {import_limit!r} is not a whole number")
        self.template_dir = template_dir or default_template_dir()
        self.flavour = flavour
        self.client_filter = client_filter
        self.import_limit = import_limit
        # `calico-rr render` prints configs for people: BGP passwords there are masked.
        self.mask_passwords = False
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.template_dir),
            undefined=jinja2.StrictUndefined,
            autoescape=False,  # BIRD syntax, not HTML; safety comes from validated values
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            # A renderer lives until the next SIGHUP; looking at the template file's mtime on
            # every one of 10,000 session renders was a third of a cold start's render.
            auto_reload=False,
        )
        try:
            self._session_template = self._env.get_template(SESSION_TEMPLATE)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {SESSION_TEMPLATE} in {self.template_dir}: {exc}") from exc
        # Rendered session blocks of the last render, by session identity: the planner hands
        # back the same Session object for an unchanged session, so only what changed is
        # rendered (and checked) again. Rebuilt on every render, so it never outgrows the plan.
        self._blocks: dict = {}
        self._next_blocks: dict = {}

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(TEMPLATES[self.flavour])

    def render(self, plan: Plan) -> dict[str, str]:
        """The text of every config file of this flavour, by target name (`bird`, `bird6`)."""
        self._next_blocks = {}
        try:
            return {target: self._render_target(plan, target, self._session_blocks, _needs_any_source)
                    for target in self.targets}
        finally:
            self._blocks, self._next_blocks = self._next_blocks, {}

    def _render_target(self, plan: Plan, target: str, session_blocks: Callable[[FamilyPlan], str],
                       needs_any_source: Callable[[FamilyPlan], bool]) -> str:
        name, families = TEMPLATES[self.flavour][target]
        for family in families:
            _check_plan_header(plan, plan.family(family))
        try:
            template = self._env.get_template(name)
            # `plan` is the one family of a BIRD 1.6 file; BIRD 2 templates use v4 and v6.
            return template.render(
                router_id=plan.router_id,
                listen_port=plan.listen_port,
                plan=plan.family(families[0]),
                v4=plan.v4,
                v6=plan.v6,
                session_blocks=session_blocks,
                needs_any_source=needs_any_source,
                client_import=self._client_import,
                import_limit=self.import_limit,
                flavour_suffix=self.flavour != "bird1",  # BIRD 2, 3: one filter per family in one file
            )
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name} in {self.template_dir}: {exc}") from exc

    def _session_blocks(self, family_plan: FamilyPlan) -> str:
        family = family_plan.family
        blocks = self._blocks
        kept = self._next_blocks
        out = []
        for session in family_plan.sessions:
            key = (id(session), family)
            cached = blocks.get(key)
            if cached is None or cached[0] is not session:
                cached = (session, self._render_session(session, family))
            kept[key] = cached
            out.append(cached[1])
        return "".join(out)

    def _render_session(self, session: Session, family: int) -> str:
        _check_session(session, family)
        # A client with a node is a Calico node; a router given by peerIP (no node) is not
        # Calico's and announces what it will.
        filtered = self.client_filter != "off" and session.role == CLIENT and bool(session.node)
        password = PASSWORD_MASK if self.mask_passwords else session.password
        return self._session_template.render(session=session, family=family, filtered=filtered, password=password,
                                             channels=self.flavour != "bird1")

    def notes(self, plan: Plan) -> tuple[str, ...]:
        """What the operator should know about how the configs filter clients: pools asked
        for, but the data names none (then limits only)."""
        if self.client_filter != "pools":
            return ()
        if any(fp.local_address is not None and fp.client_prefixes is None for fp in (plan.v4, plan.v6)):
            limit = f"up to {self.import_limit} routes each" if self.import_limit else "without a limit"
            return (f"[filters] mode = pools, but the data names no IP pool (Calico IPPool resources, or "
                    f"/calico/v1/ipam pools): clients may announce anything but a default route, {limit}",)
        return ()

    def _client_import(self, family_plan: FamilyPlan) -> Optional[dict]:
        """What the family's client filter says (None: no filter): `prefixes`, each written
        with `+` (itself and everything inside), or None to accept all but a default route."""
        if self.client_filter == "off":
            return None
        prefixes = family_plan.client_prefixes if self.client_filter == "pools" else None
        if prefixes is not None:
            expected = ipaddress.IPv4Network if family_plan.family == 4 else ipaddress.IPv6Network
            for network in prefixes:
                if not isinstance(network, expected):
                    raise RenderError(f"{network!r} is not an IPv{family_plan.family} network object")
            prefixes = [f"{network}+" for network in prefixes]
        return {"prefixes": prefixes, "mode": self.client_filter}


class IncrementalRenderer:
    """Renderer.render kept up to date change by change, for the daemon: the rendered block of
    every session is kept in session order, a change renders only the blocks of the sessions
    the planner reports changed, and a config is its header plus one str.join. Same text as
    Renderer.render of the same plan."""

    def __init__(self, renderer: Renderer):
        self.renderer = renderer
        self._families: dict[int, _FamilyBlocks] = {}

    def render(self, planned: Planned) -> dict[str, str]:
        plan = planned.plan
        try:
            for family in (4, 6):
                changed = planned.changed.get(family)
                kept = self._families.get(family)
                if kept is None or changed is None:
                    self._families[family] = _FamilyBlocks(self.renderer, plan.family(family), kept)
                else:
                    kept.update(self.renderer, changed)
            return {target: self.renderer._render_target(plan, target, self._session_blocks, self._needs_any_source)
                    for target in self.renderer.targets}
        except BaseException:
            self._families.clear()  # half updated: the next render starts from its plan
            raise

    def _session_blocks(self, family_plan: FamilyPlan) -> str:
        return self._families[family_plan.family].text()

    def _needs_any_source(self, family_plan: FamilyPlan) -> bool:
        return self._families[family_plan.family].any_source > 0


_BLOCK = operator.itemgetter(1)


class _FamilyBlocks:
    """One family's rendered sessions: (session, block) by core.plan.session_key, in the
    planner's order."""

    def __init__(self, renderer: Renderer, family_plan: FamilyPlan, previous: Optional["_FamilyBlocks"]):
        self.family = family = family_plan.family
        self.blocks = Slots()
        self.any_source = 0  # sessions without a source address (Calico v3 only, so far)
        # Planned over (a global change, a resync): most sessions are equal to the last ones.
        old = dict(zip(previous.blocks.keys, previous.blocks.values)) if previous is not None else {}
        for session in family_plan.sessions:
            key = session_key(session)
            kept = old.get(key)
            if kept is None or not (kept[0] is session or kept[0] == session):
                kept = (session, renderer._render_session(session, family))
            self.blocks.append(key, kept)
            self.any_source += session.no_source_address

    def update(self, renderer: Renderer, changed: dict) -> None:
        for key, session in changed.items():
            entry = None if session is None else (session, renderer._render_session(session, self.family))
            old = self.blocks.put(key, entry)
            self.any_source += (session is not None and session.no_source_address) - (old is not None and old[0].no_source_address)

    def text(self) -> str:
        return "".join(map(_BLOCK, self.blocks.values))


def _needs_any_source(family_plan: FamilyPlan) -> bool:
    return any(session.no_source_address for session in family_plan.sessions)


def _check_plan_header(plan: Plan, family_plan: FamilyPlan) -> None:
    """The values outside the session blocks; each block is checked when it is rendered."""
    if not isinstance(plan.router_id, ipaddress.IPv4Address):
        raise RenderError(f"router id {plan.router_id!r} is not an IPv4 address")
    _check_port(plan.listen_port, "listen port")
    if family_plan.local_address is not None:
        _check_address(family_plan.local_address, family_plan.family)


def _check_session(session: Session, family: int) -> None:
    if not _SYMBOL_RE.fullmatch(session.name):
        raise RenderError(f"protocol name {session.name!r} is not a BIRD symbol")
    _check_address(session.neighbor, family)
    for number in (session.local_as, session.neighbor_as):
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= AS_MAX:
            raise RenderError(f"AS number {number!r} of {session.name} is invalid")
    if session.cluster_id is not None:
        ipaddress.IPv4Address(session.cluster_id)  # raises on anything but a dotted quad
    if session.source_address is not None:
        _check_address(session.source_address, family)
    for number in (session.port, session.graceful_restart_time):
        _check_port(number, session.name)
    if not _DESCRIPTION_RE.fullmatch(session.description):
        raise RenderError(f"description of {session.name} has unsafe characters")
    if session.password is not None and password_problem(session.password) is not None:
        raise RenderError(f"password of {session.name} cannot be written safely (value not shown)")
    if session.role not in ROLE_ORDER or (session.node and not _NODE_RE.fullmatch(session.node)):
        raise RenderError(f"role or node of {session.name} has unsafe characters")


def _check_port(number: object, where: str) -> None:
    """A port (or another 16-bit count, such as seconds of graceful restart): 1 to 65535."""
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535):
        raise RenderError(f"{number!r} in {where} is out of range")


def _check_address(address: object, family: int) -> None:
    expected = ipaddress.IPv4Address if family == 4 else ipaddress.IPv6Address
    if not isinstance(address, expected):
        raise RenderError(f"{address!r} is not an IPv{family} address object")
