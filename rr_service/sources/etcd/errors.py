"""gRPC and python-etcd3 errors in words a person can act on."""

from __future__ import annotations

import grpc

from rr_service.sources.etcd.config import Endpoint


def rpc_error(exc: BaseException) -> grpc.RpcError | None:
    # python-etcd3 re-raises UNAVAILABLE / DEADLINE_EXCEEDED as its own
    # exceptions without the details; the gRPC error stays in __context__.
    for candidate in (exc, exc.__context__):
        if isinstance(candidate, grpc.RpcError) and hasattr(candidate, "code"):
            return candidate
    return None


def is_token_rejected(exc: BaseException) -> bool:
    rpc = rpc_error(exc)
    return (rpc is not None and rpc.code() == grpc.StatusCode.UNAUTHENTICATED
            and "auth token" in (rpc.details() or ""))


def explain(exc: BaseException, endpoint: Endpoint, timeout: float) -> str:
    """One line a person can act on, from a gRPC / python-etcd3 error."""
    rpc = rpc_error(exc)
    if rpc is None:
        return str(exc) or type(exc).__name__
    code, details = rpc.code(), (rpc.details() or "").strip()
    lowered = details.lower()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer within {timeout:g} s"
    if "handshake failed" in lowered:
        reason = details.rsplit("::", 1)[-1] if "::" in details else details.rsplit(":", 1)[-1]
        return f"TLS handshake failed: {reason.strip()}"
    if "not in peer certificate" in lowered:
        return f"TLS: the server certificate does not name {endpoint.url}"
    if "connection refused" in lowered:
        return "connection refused"
    if "connection reset" in lowered:
        if endpoint.tls:  # etcd refusing our client certificate resets as often as it closes
            return ("connection reset by etcd during TLS setup: etcd may have rejected the "
                    "client certificate (cert, key)")
        return "connection reset by etcd"
    if code == grpc.StatusCode.UNAVAILABLE and ("endpoint read failed" in lowered
                                                or "socket closed" in lowered):
        if endpoint.tls:
            return ("connection closed during TLS setup: etcd may have rejected the "
                    "client certificate (cert, key) or not speak TLS")
        return "connection closed by etcd: does it want https:// ?"
    if code == grpc.StatusCode.UNAVAILABLE and "keepalive" in lowered:
        return "no answer to keepalive pings: etcd hung or unreachable"
    details = details.removeprefix("etcdserver: ")
    return f"{code.name.lower()}: {details}" if details else code.name.lower()
