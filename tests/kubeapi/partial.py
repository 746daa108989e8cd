"""Metadata only: what kube-apiserver answers to `Accept: application/json;as=PartialObjectMetadata
[List];g=meta.k8s.io;v=v1` (client-go's metadata client and informers ask for it).

A list is answered with the List form, a get and a watch's events with the singular one; an
Accept whose metadata form does not fit the verb falls through to its next media type (the
clients add `application/json` after it), as kube-apiserver's content negotiation does.
"""

from __future__ import annotations


API_VERSION = "meta.k8s.io/v1"


def wants_metadata(accept: str, verb: str) -> bool:
    """Whether the first media type of `accept` this verb can be answered with is the
    metadata-only form."""
    wanted = "PartialObjectMetadataList" if verb == "list" else "PartialObjectMetadata"
    for part in (accept or "").split(","):
        kind, *rest = (p.strip() for p in part.split(";"))
        params = dict(p.split("=", 1) for p in rest if "=" in p)
        if kind not in ("application/json", "*/*", "application/*"):
            continue
        if "as" not in params:
            return False  # plain JSON comes first
        if params.get("as") == wanted and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return True
    return False


def metadata_only(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": API_VERSION, "metadata": obj.get("metadata") or {}}


def metadata_list(result: dict) -> dict:
    return {"kind": "PartialObjectMetadataList", "apiVersion": API_VERSION,
            "metadata": result.get("metadata") or {},
            "items": [metadata_only(obj) for obj in result.get("items") or []]}


def answer(obj: dict, partial: bool) -> dict:
    """`obj` (an object or a list) as the client asked for it."""
    if not partial:
        return obj
    return metadata_list(obj) if "items" in obj else metadata_only(obj)


__all__ = ["wants_metadata", "metadata_only", "metadata_list", "answer"]
