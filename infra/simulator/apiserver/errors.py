"""Errors shaped like kube-apiserver's `Status` objects, so real clients print them as they would."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API server returns as a `kind: Status` body."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details         # None: no `details` in the body; {} is sent as kube sends it

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(resource: str, name: str | None, group: str = "") -> dict[str, Any]:
    details: dict[str, Any] = {"kind": resource}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    return details


def qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                    details=_details(resource, name, group))


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                    details=_details(resource, name, group))


def conflict(resource: str, name: str, group: str = "", why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
                    details=_details(resource, name, group))


# field.ErrorType strings -> the CauseType kube puts in details.causes (apimachinery util/validation/field).
_CAUSE_TYPES = {"Required value": "FieldValueRequired", "Invalid value": "FieldValueInvalid",
                "Unsupported value": "FieldValueNotSupported", "Duplicate value": "FieldValueDuplicate",
                "Too long": "FieldValueTooLong", "Too many": "FieldValueTooMany", "Forbidden": "FieldValueForbidden",
                "Not found": "FieldValueNotFound", "Internal error": "InternalError"}


def _cause(error: str) -> dict[str, str]:
    """`spec.x: Invalid value: 3: detail` -> {reason, message (the error body), field}, as NewInvalid builds it."""
    for separator in (": ",):
        field, _, body = error.partition(separator)
        for prefix, reason in _CAUSE_TYPES.items():
            if body.startswith(prefix) and " " not in field:
                return {"reason": reason, "message": body, "field": field}
    return {"reason": "FieldValueInvalid", "message": error, "field": ""}


def invalid(kind: str, name: str, causes: list[str], group: str = "") -> ApiError:
    """422 as apimachinery's NewInvalid writes it: `Kind.group "name" is invalid: <errors>`, one cause each."""
    message = f'{kind}.{group} "{name}" is invalid: ' if group else f'{kind} "{name}" is invalid: '
    message += causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
    details: dict[str, Any] = {"name": name, "kind": kind} if name else {"kind": kind}
    if group:
        details["group"] = group
    details["causes"] = [_cause(c) for c in causes]
    return ApiError(422, "Invalid", message, details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, details={})


def page_not_found() -> ApiError:
    """A path no API serves: kube's 404 carries an empty details object."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", details={})


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str) -> ApiError:
    return ApiError(403, "Forbidden", message)


def forbidden_resource(resource: str, name: str, why: str, group: str = "") -> ApiError:
    """NewForbidden: `resource.group "name" is forbidden: why`, details naming the resource."""
    return ApiError(403, "Forbidden", f'{qualified(resource, group)} "{name}" is forbidden: {why}',
                    details=_details(resource, name, group))


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", message)


def unavailable(message: str) -> ApiError:
    return ApiError(503, "ServiceUnavailable", message)


def admission_denied(webhook: str, message: str, code: int = 400, reason: str = "BadRequest") -> ApiError:
    """An admission webhook's denial, worded as kube-apiserver relays it."""
    return ApiError(code, reason, f'admission webhook "{webhook}" denied the request: {message}')
