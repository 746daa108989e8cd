"""The verbs on objects, with kube-apiserver's rules, over EtcdStore.

Objects are stored as JSON without `metadata.resourceVersion`: like kube-apiserver, the
version is the key's etcd mod_revision, filled in on every read; a list's version is the
header revision of the range. (Real kube-apiserver stores core objects such as Nodes as
protobuf; this server stores JSON for every kind.)

A list with resourceVersion "0" is answered from the watch cache when the server has one
(watchcache.py), as kube-apiserver does.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import re
import time
import uuid
from typing import Callable, Iterable, Optional

from . import errors
from .etcdstore import KV, Compacted, EtcdStore, FutureRevision, prefix_end
from .resources import Catalog, Resource
from .patch import apply_patch

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CAS_RETRIES = 20  # a guaranteed update re-reads and retries while other writers win


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode_continue(rev: int, start: str) -> str:
    """kube's token: base64url(JSON) with the list's revision and the next key (relative)."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rev, "start": start}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if raw.get("v") != "meta.k8s.io/v1" or not isinstance(raw.get("rv"), int):
            raise ValueError(raw)
        return raw["rv"], raw["start"]
    except (ValueError, TypeError, binascii.Error, AttributeError) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from exc


class Registry:
    def __init__(self, store: EtcdStore, catalog: Catalog, prefix: str = "/registry"):
        self.store, self.catalog, self.prefix = store, catalog, prefix.rstrip("/")
        self.expire_continue = False  # fault hook: every continue token answers 410
        self.cache = None  # the server's WatchCache, for lists with resourceVersion "0"

    # -- reading ------------------------------------------------------------------------------
    def decode(self, kv: KV, rv: Optional[int] = None) -> dict:
        obj = json.loads(kv.value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(rv or kv.mod_revision)
        return obj

    def _read(self, res: Resource, name: str, namespace: str) -> KV:
        kv = self.store.get(res.key(self.prefix, name, namespace))
        if kv is None:
            raise errors.not_found(res.plural, res.group, name)
        return kv

    def get(self, res: Resource, name: str, namespace: str = "") -> dict:
        return self.decode(self._read(res, name, namespace))

    def list(self, res: Resource, namespace: str = "", limit: int = 0, cont: str = "",
             rv: str = "", rv_match: str = "", match: Callable[[dict], bool] = None) -> dict:
        """One page of a List, as kube-apiserver's etcd3 storage reads it."""
        prefix = res.key_prefix(self.prefix, namespace)
        start, revision = prefix, 0
        if cont:
            if rv not in ("", "0"):
                raise errors.bad_request("specifying resource version is not allowed when "
                                         "using continue")
            revision, relative = decode_continue(cont)
            start = prefix + relative
            if self.expire_continue:
                raise errors.continue_expired(self._inconsistent(prefix, start))
        elif rv not in ("", "0"):
            revision = self._list_revision(rv, rv_match)
        elif rv == "0":
            cached = self.cache.list(prefix, match) if self.cache is not None else None
            if cached is not None:
                return _list_of(res, {"resourceVersion": str(cached[1])}, cached[0])
            limit = 0  # kube's watch cache ignores limit too
        items, last_key, more, count, read_rev = [], None, False, 0, revision
        while True:
            try:
                page = self.store.range(start, prefix_end(prefix), revision=read_rev,
                                        limit=limit + 1 if limit else 0)
            except Compacted:
                if cont:
                    raise errors.continue_expired(self._inconsistent(prefix, start))
                raise errors.ApiError(410, "Expired",
                                      "The resourceVersion for the provided list is too old.")
            except FutureRevision:
                raise errors.too_large(revision, self.store.revision())
            read_rev = read_rev or page.revision  # all further pages at the first's revision
            count = count or page.count
            for kv in page.kvs:
                if limit and len(items) == limit:
                    more = True
                    break
                obj = self.decode(kv)
                last_key = kv.key
                if match is None or match(obj):
                    items.append(obj)
            if more or not page.more or not limit:
                break
            start = last_key + "\x00"  # a filtered page came up short: read on
        meta = {"resourceVersion": str(read_rev)}
        if more:
            meta["continue"] = encode_continue(read_rev, last_key[len(prefix):] + "\x00")
            if match is None:  # kube counts only unfiltered lists
                meta["remainingItemCount"] = count - len(items)
        return _list_of(res, meta, items)

    def _inconsistent(self, prefix: str, start: str) -> str:
        # kube hands back a token at the latest revision ("rv": -1 there; 0 means latest here)
        return encode_continue(0, start[len(prefix):])

    def _list_revision(self, rv: str, rv_match: str) -> int:
        wanted = _parse_rv(rv)
        if rv_match == "Exact":
            return wanted
        # NotOlderThan: kube's watch cache waits up to 3 s to catch up, then says 504
        deadline = time.monotonic() + 3
        while (current := self.store.revision()) < wanted:
            if time.monotonic() > deadline:
                raise errors.too_large(wanted, current)
            time.sleep(0.1)
        return 0

    # -- writing ------------------------------------------------------------------------------
    def _prepare_new(self, res: Resource, namespace: str, body: dict) -> dict:
        obj = self._check_body(res, body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        self._check_name(res, meta.get("name", ""))
        if meta.get("resourceVersion"):
            raise errors.internal("resourceVersion should not be set on objects to be created")
        if res.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request("the namespace of the provided object does not match "
                                         "the namespace sent on the request")
            meta["namespace"] = namespace
            ns_res = self.catalog.find("", "v1", "namespaces")
            if ns_res and self.store.get(ns_res.key(self.prefix, namespace)) is None:
                raise errors.not_found("namespaces", "", namespace)
        else:
            meta.pop("namespace", None)
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if res.generation:
            meta["generation"] = 1
        _defaults(res, obj)
        return obj

    def _check_body(self, res: Resource, body) -> dict:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request is not a JSON object")
        obj = copy.deepcopy(body)
        if obj.get("apiVersion", res.api_version) != res.api_version or \
                obj.get("kind", res.kind) != res.kind:
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({res.api_version})" if obj.get("kind", res.kind) ==
                res.kind else f"the kind in the data ({obj.get('kind')}) does not match the "
                              f"expected kind ({res.kind})")
        obj["apiVersion"], obj["kind"] = res.api_version, res.kind
        return obj

    def _check_name(self, res: Resource, name: str) -> None:
        if not name:
            raise errors.invalid(res.kind, res.group, "", "metadata.name", '""',
                                 "name or generateName is required")
        if len(name) > 253 or not _NAME.match(name):
            raise errors.invalid(res.kind, res.group, name, "metadata.name", f'"{name}"',
                                 "a lowercase RFC 1123 subdomain must consist of lower case "
                                 "alphanumeric characters, '-' or '.', and must start and end "
                                 "with an alphanumeric character")

    @staticmethod
    def _encode(obj: dict) -> bytes:
        stored = copy.deepcopy(obj)
        stored["metadata"].pop("resourceVersion", None)
        return json.dumps(stored, separators=(",", ":")).encode()

    def create(self, res: Resource, namespace: str, body: dict, dry_run: bool = False) -> dict:
        obj = self._prepare_new(res, namespace, body)
        name = obj["metadata"]["name"]
        if dry_run:
            return obj
        rev = self.store.create(res.key(self.prefix, name, namespace), self._encode(obj))
        if rev is None:
            raise errors.already_exists(res.plural, res.group, name)
        obj["metadata"]["resourceVersion"] = str(rev)
        return obj

    def update(self, res: Resource, namespace: str, name: str, body: dict,
               subresource: str = "", dry_run: bool = False) -> dict:
        new = self._check_body(res, body)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not "
                                     f"match the name on the URL ({name})")
        wanted = meta.get("resourceVersion", "")
        if not wanted and not res.unconditional_update:
            raise errors.invalid(res.kind, res.group, name, "metadata.resourceVersion", "0x0",
                                 "must be specified for an update")
        return self._guaranteed_update(res, namespace, name, lambda cur: new,
                                       _parse_rv(wanted) if wanted else 0, subresource, dry_run)

    def patch(self, res: Resource, namespace: str, name: str, content_type: str, patch,
              subresource: str = "", dry_run: bool = False) -> dict:
        def patched(current: dict) -> dict:
            result = apply_patch(content_type, current, patch)
            if not isinstance(result, dict):
                raise errors.bad_request("the patch did not produce an object")
            if (result.get("metadata") or {}).get("name", name) != name:
                raise errors.invalid(res.kind, res.group, name, "metadata.name", f'"{name}"',
                                     "field is immutable")
            return self._check_body(res, result)
        return self._guaranteed_update(res, namespace, name, patched, 0, subresource, dry_run,
                                       precondition_from_result=True)

    def _guaranteed_update(self, res, namespace, name, build, wanted_rv, subresource, dry_run,
                           precondition_from_result=False) -> dict:
        key = res.key(self.prefix, name, namespace)
        for _ in range(CAS_RETRIES):
            kv = self._read(res, name, namespace)
            if wanted_rv and wanted_rv != kv.mod_revision:
                raise errors.conflict(res.plural, res.group, name)
            current = self.decode(kv)
            new = build(copy.deepcopy(current))
            if precondition_from_result:
                rv = (new.get("metadata") or {}).get("resourceVersion")
                if rv and _parse_rv(rv) != kv.mod_revision:
                    raise errors.conflict(res.plural, res.group, name)
            new = self._carry_over(res, current, new, subresource)
            if dry_run:
                return new
            if json.loads(self._encode(new)) == json.loads(kv.value):
                return current  # a no-op writes nothing, as kube-apiserver (same version)
            done, _, rev = self.store.update(key, self._encode(new), kv.mod_revision)
            if done:
                new["metadata"]["resourceVersion"] = str(rev)
                return new
            if wanted_rv:
                raise errors.conflict(res.plural, res.group, name)
        raise errors.conflict(res.plural, res.group, name, "too many concurrent writers")

    def _carry_over(self, res: Resource, current: dict, new: dict, subresource: str) -> dict:
        old_meta, meta = current["metadata"], new.setdefault("metadata", {})
        if meta.get("uid") and meta["uid"] != old_meta.get("uid"):
            raise errors.conflict(res.plural, res.group, old_meta["name"],
                                  f"Precondition failed: UID in precondition: {meta['uid']}, "
                                  f"UID in object meta: {old_meta.get('uid')}")
        if subresource == "status":
            kept = copy.deepcopy(current)
            kept["status"] = new.get("status", {})
            return kept
        for field in ("uid", "creationTimestamp", "name", "namespace", "generation"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta.pop("managedFields", None)
        if res.status_subresource:
            if "status" in current:
                new["status"] = current["status"]
            else:
                new.pop("status", None)
        if res.generation:
            strip = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}
            if strip(new) != strip(current):
                meta["generation"] = old_meta.get("generation", 1) + 1
        _defaults(res, new)
        return new

    def delete(self, res: Resource, namespace: str, name: str, options: Optional[dict] = None,
               dry_run: bool = False) -> dict:
        pre = (options or {}).get("preconditions") or {}
        key = res.key(self.prefix, name, namespace)
        for _ in range(CAS_RETRIES):
            kv = self._read(res, name, namespace)
            obj = self.decode(kv)
            uid = obj["metadata"].get("uid")
            if pre.get("uid") and pre["uid"] != uid:
                raise errors.conflict(res.plural, res.group, name,
                                      f"Precondition failed: UID in precondition: {pre['uid']}, "
                                      f"UID in object meta: {uid}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != str(kv.mod_revision):
                raise errors.conflict(res.plural, res.group, name,
                                      "Precondition failed: ResourceVersion in precondition: "
                                      f"{pre['resourceVersion']}, ResourceVersion in object "
                                      f"meta: {kv.mod_revision}")
            if dry_run:
                return obj
            done, _, rev = self.store.delete(key, kv.mod_revision)
            if done:
                obj["metadata"]["resourceVersion"] = str(rev)
                if res.returns_deleted_object:
                    return obj
                details = {"name": name, "kind": res.plural, "uid": uid}
                if res.group:
                    details["group"] = res.group
                return {"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "details": details}
        raise errors.conflict(res.plural, res.group, name, "too many concurrent writers")

    # -- for test helpers: straight into etcd ------------------------------------------------
    def seed(self, res: Resource, objects: Iterable[dict], namespace: str = "") -> int:
        """Put objects into etcd directly (no HTTP, unconditional, 128 per transaction),
        filling uid and creationTimestamp; the last revision written."""
        items = []
        for body in objects:
            obj = self._check_body(res, body)
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now())
            ns = meta.get("namespace", namespace) if res.namespaced else ""
            if res.namespaced:
                meta["namespace"] = ns
            _defaults(res, obj)
            items.append((res.key(self.prefix, meta["name"], ns), self._encode(obj)))
        return self.store.put_many(items)

    def ensure_namespaces(self, names: Iterable[str]) -> None:
        ns_res = self.catalog.find("", "v1", "namespaces")
        for name in names:
            try:
                self.create(ns_res, "", {"metadata": {"name": name}})
            except errors.ApiError as exc:
                if exc.code != 409:
                    raise


def _list_of(res: Resource, meta: dict, items: list) -> dict:
    return {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta, "items": items}


def _defaults(res: Resource, obj: dict) -> None:
    if res.kind == "Secret":
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {}) if (obj.get("data") or string_data) else None
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError) as exc:
                raise errors.bad_request(f"illegal base64 data in data[{key!r}]") from exc
        obj.setdefault("type", "Opaque")
    elif res.kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj.setdefault("status", {"phase": "Active"})


def _parse_rv(rv: str) -> int:
    try:
        value = int(rv)
        if value < 0:
            raise ValueError(rv)
        return value
    except (TypeError, ValueError):
        raise errors.bad_request(f"invalid resource version: {rv!r}") from None

