"""Who is asking (bearer token or client certificate) and may they (a small RBAC table).

Authentication as kube-apiserver with anonymous auth off: no valid credential is 401 on
every path, discovery included. A client certificate signed by the server's CA is the user
named by its CN, with its O entries as groups (kube's x509 authenticator); it wins over a
bearer token sent with it, as kube's union authenticator tries x509 first.

Authorisation: users without a rule list may do everything (as cluster-admin); a user with
one may do exactly what a rule allows. Discovery is always allowed to an authenticated user
(kube's system:discovery role). Like RBAC, a list or watch with `fieldSelector=metadata.name=X`
is checked as a request for the object named X, so `resourceNames` rules can allow it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from . import errors


@dataclass(frozen=True)
class User:
    name: str
    groups: Tuple[str, ...] = ("system:authenticated",)


@dataclass(frozen=True)
class Rule:
    """Allows `verbs` on `resources` ("nodes", "nodes/status", "secrets",
    "bgppeers.crd.projectcalico.org", "*"), optionally only for objects named in `names`,
    optionally only in `namespaces`."""

    verbs: Tuple[str, ...]
    resources: Tuple[str, ...]
    names: Tuple[str, ...] = ()
    namespaces: Tuple[str, ...] = ()

    def allows(self, verb: str, resource: str, name: str, namespace: str) -> bool:
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.resources and resource not in self.resources:
            return False
        if self.namespaces and namespace not in self.namespaces:
            return False
        # kube: resourceNames never match a list/watch without a name, nor a create
        return not self.names or (bool(name) and name in self.names)


def rule(spec) -> Rule:
    """A Rule from a Rule, or a tuple (verb, resource[, name]) with "*" as wildcard."""
    if isinstance(spec, Rule):
        return spec
    verb, resource, *name = spec
    return Rule((verb,), (resource,), tuple(name))


@dataclass
class Access:
    tokens: Dict[str, User] = field(default_factory=dict)
    rules: Dict[str, List[Rule]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- authentication --------------------------------------------------------------------
    def add_token(self, token: str, user: str, groups: Iterable[str] = ()) -> None:
        with self._lock:
            self.tokens[token] = User(user, ("system:authenticated", *groups))

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    def token_valid(self, token: Optional[str]) -> bool:
        with self._lock:
            return token is None or token in self.tokens

    def authenticate(self, authorization: Optional[str], peer_cert: Optional[dict]
                     ) -> Tuple[User, Optional[str]]:
        """(user, the bearer token used or None); 401 Unauthorized if neither works."""
        if peer_cert:
            subject = dict(item[0] for item in peer_cert.get("subject", ()))
            groups = tuple(value for rdn in peer_cert.get("subject", ())
                           for key, value in rdn if key == "organizationName")
            if subject.get("commonName"):
                return User(subject["commonName"], ("system:authenticated", *groups)), None
        if authorization and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
            with self._lock:
                user = self.tokens.get(token)
            if user:
                return user, token
        raise errors.unauthorized()

    # -- authorisation -----------------------------------------------------------------------
    def set_rules(self, user: str, rules: Optional[Iterable]) -> None:
        """Rules for one user; None gives them everything again."""
        with self._lock:
            if rules is None:
                self.rules.pop(user, None)
            else:
                self.rules[user] = [rule(spec) for spec in rules]

    def authorize(self, user: User, verb: str, plural: str, group: str, name: str = "",
                  namespace: str = "", subresource: str = "") -> None:
        with self._lock:
            rules = self.rules.get(user.name)
        if rules is None:
            return
        resource = f"{plural}/{subresource}" if subresource else plural
        qualified = errors.qualified(resource, group) if not subresource else (
            f"{plural}.{group}/{subresource}" if group else resource)
        if any(r.allows(verb, qualified, name, namespace) for r in rules):
            return
        raise errors.forbidden(user.name, verb, plural, group, name, namespace, subresource)
