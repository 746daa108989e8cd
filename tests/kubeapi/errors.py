"""kube-apiserver's error answers: a `Status` object with the reason and code clients test.

Clients branch on `reason` and `code` (client-go's `errors.IsNotFound`, python's
`ApiException.status`), and people read `message`: all three copy kube-apiserver's wording
(k8s.io/apimachinery/pkg/api/errors), so a client's error handling sees what production sends.
"""

from __future__ import annotations

from typing import Optional

# The continue-token message of kube-apiserver's etcd3 storage, word for word.
CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list.")


class ApiError(Exception):
    """An error to answer as a kube `Status`; raised anywhere below the HTTP handler."""

    def __init__(self, code: int, reason: str, message: str, details: Optional[dict] = None,
                 headers: Optional[dict] = None, list_continue: str = ""):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}
        self.list_continue = list_continue  # an inconsistent continue token (Expired only)

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.list_continue:
            body["metadata"] = {"continue": self.list_continue}
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(plural: str, group: str) -> str:
    """`nodes` or `bgppeers.crd.projectcalico.org`: how kube names a resource in messages."""
    return f"{plural}.{group}" if group else plural


def _details(plural: str, group: str, name: str = "") -> dict:
    details = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = plural
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(plural, group)} "{name}" not found',
                    _details(plural, group, name))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(plural, group)} "{name}" already exists',
                    _details(plural, group, name))


def conflict(plural: str, group: str, name: str,
             why: str = "the object has been modified; please apply your changes to the "
                        "latest version and try again") -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
                    _details(plural, group, name))


def invalid(kind: str, group: str, name: str, field: str, value, why: str) -> ApiError:
    cause = f"{field}: Invalid value: {value}: {why}"
    kind_q = f"{kind}.{group}" if group else kind
    details = {"name": name, "kind": kind, "causes": [
        {"reason": "FieldValueInvalid", "message": f"Invalid value: {value}: {why}",
         "field": field}]}
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{kind_q} "{name}" is invalid: {cause}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(user: str, verb: str, plural: str, group: str, name: str = "",
              namespace: str = "", subresource: str = "") -> ApiError:
    resource = f"{plural}/{subresource}" if subresource else plural
    who = f'{qualified(plural, group)} "{name}"' if name else qualified(plural, group)
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    message = (f'{who} is forbidden: User "{user}" cannot {verb} resource "{resource}" in API '
               f'group "{group}" {scope}')
    return ApiError(403, "Forbidden", message, _details(plural, group, name))


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed",
                    "the server does not allow this method on the requested resource", {})


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f"include: application/json-patch+json, application/merge-patch+json, "
                    f"application/strategic-merge-patch+json (got {content_type!r})")


def continue_expired(inconsistent_token: str = "") -> ApiError:
    return ApiError(410, "Expired", CONTINUE_EXPIRED, list_continue=inconsistent_token)


def too_old(requested: int, oldest: int) -> ApiError:
    """A resourceVersion below etcd's compaction: 410 Expired (as a watch ERROR event or as
    the answer to an exact list)."""
    return ApiError(410, "Expired", f"too old resource version: {requested} ({oldest})")


def too_large(requested: int, current: int) -> ApiError:
    return ApiError(504, "Timeout", f"Too large resource version: {requested}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}",
                    {"causes": [{"message": message}]})


def injected(code: int) -> ApiError:
    """The answer to a fault injected by a test (ServiceUnavailable, TooManyRequests ...)."""
    reasons = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
               504: "Timeout"}
    headers = {"Retry-After": "1"} if code in (429, 503) else {}
    return ApiError(code, reasons.get(code, "InternalError"), f"injected fault ({code})",
                    {"retryAfterSeconds": 1} if headers else {}, headers=headers)
