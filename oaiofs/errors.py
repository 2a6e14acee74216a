"""The oaiofs error tree: one exception family shared by server, client and drive.

Every error carries a machine-readable ``code``, an HTTP status (what the server
answers) and an errno (what the drive answers)::

    OaioError                      500  EIO     internal
    ├── InvalidInput               400  EINVAL  invalid_input
    │   ├── MalformedJson          400  EINVAL  malformed_json
    │   └── InvalidValue           422  EINVAL  invalid_value
    ├── Unauthorized               401  EACCES  unauthorized
    ├── Forbidden                  403  EACCES  forbidden
    ├── NotFound                   404  ENOENT  not_found
    ├── Gone                       410  ENOENT  gone
    ├── Conflict                   409  EBUSY   conflict
    │   ├── VersionConflict        409  EBUSY   version_conflict
    │   ├── AlreadyExists          409  EEXIST  already_exists
    │   └── OffsetMismatch         409  EIO     offset_mismatch
    ├── NotEmpty                   409  ENOTEMPTY not_empty
    ├── PreconditionFailed         412  EINVAL  precondition_failed
    ├── TooLarge                   413  EFBIG   too_large
    ├── UnsupportedMediaType       415  EINVAL  unsupported_media_type
    ├── ChecksumMismatch           460  EIO     checksum_mismatch
    ├── TooManyRequests            429  EAGAIN  too_many_requests (login throttling; Retry-After)
    ├── InsufficientStorage        507  ENOSPC  insufficient_storage
    └── Unavailable                503  EIO     unavailable   (also: server unreachable)

The server turns an ``OaioError`` into ``{"error": code, "message": text,
"detail": {...}}`` with its status; the client turns such a body back into the
same class with :func:`error_from_response`. The drive turns it into
``FuseOSError(err.errno)`` in one place.
"""
from __future__ import annotations

import errno as _errno
from typing import Any


class OaioError(Exception):
    """Base of all oaiofs errors."""

    code = "internal"
    http_status = 500
    errno = _errno.EIO

    def __init__(self, message: str = "", detail: dict[str, Any] | None = None,
                 *, http_status: int | None = None, code: str | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        self.detail = detail or {}
        if http_status is not None:
            self.http_status = http_status
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, Any]:
        """The JSON error body the server sends."""
        return {"error": self.code, "message": self.message, "detail": self.detail}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, status={self.http_status})"


class InvalidInput(OaioError):
    code, http_status, errno = "invalid_input", 400, _errno.EINVAL


class MalformedJson(InvalidInput):
    code, http_status = "malformed_json", 400


class InvalidValue(InvalidInput):
    code, http_status = "invalid_value", 422


class Unauthorized(OaioError):
    code, http_status, errno = "unauthorized", 401, _errno.EACCES


class Forbidden(OaioError):
    code, http_status, errno = "forbidden", 403, _errno.EACCES


class NotFound(OaioError):
    code, http_status, errno = "not_found", 404, _errno.ENOENT


class Gone(OaioError):
    code, http_status, errno = "gone", 410, _errno.ENOENT


class Conflict(OaioError):
    code, http_status, errno = "conflict", 409, _errno.EBUSY


class VersionConflict(Conflict):
    """The base version a change was made on is no longer current."""

    code = "version_conflict"


class AlreadyExists(Conflict):
    code, errno = "already_exists", _errno.EEXIST


class OffsetMismatch(Conflict):
    code, errno = "offset_mismatch", _errno.EIO


class NotEmpty(OaioError):
    code, http_status, errno = "not_empty", 409, _errno.ENOTEMPTY


class PreconditionFailed(OaioError):
    code, http_status, errno = "precondition_failed", 412, _errno.EINVAL


class TooLarge(OaioError):
    code, http_status, errno = "too_large", 413, _errno.EFBIG


class UnsupportedMediaType(OaioError):
    code, http_status, errno = "unsupported_media_type", 415, _errno.EINVAL


class ChecksumMismatch(OaioError):
    code, http_status, errno = "checksum_mismatch", 460, _errno.EIO


class TooManyRequests(OaioError):
    """Too many failed logins for this user name or client address; retry after ``detail.retry_after`` s."""

    code, http_status, errno = "too_many_requests", 429, _errno.EAGAIN


class InsufficientStorage(OaioError):
    """The server's storage is full (or below its reserve); nothing was stored."""

    code, http_status, errno = "insufficient_storage", 507, _errno.ENOSPC


class Unavailable(OaioError):
    """The server cannot be reached or is overloaded; retry later."""

    code, http_status, errno = "unavailable", 503, _errno.EIO


_BY_CODE: dict[str, type[OaioError]] = {
    cls.code: cls
    for cls in (OaioError, InvalidInput, MalformedJson, InvalidValue, Unauthorized, Forbidden,
                NotFound, Gone, Conflict, VersionConflict, AlreadyExists, OffsetMismatch,
                NotEmpty, PreconditionFailed, TooLarge, UnsupportedMediaType, ChecksumMismatch,
                InsufficientStorage, Unavailable, TooManyRequests)
}
_BY_STATUS: dict[int, type[OaioError]] = {
    400: InvalidInput, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    410: Gone, 412: PreconditionFailed, 413: TooLarge, 415: UnsupportedMediaType,
    422: InvalidValue, 429: TooManyRequests, 460: ChecksumMismatch, 502: Unavailable, 507: InsufficientStorage,
    503: Unavailable, 504: Unavailable,
}


def error_from_response(status: int, body: Any) -> OaioError:
    """Rebuild the right ``OaioError`` from an HTTP status and a (parsed JSON or text) body."""
    code = message = None
    detail: dict[str, Any] = {}
    if isinstance(body, dict):
        code = body.get("error") if isinstance(body.get("error"), str) else None
        message = body.get("message")
        detail = body.get("detail") if isinstance(body.get("detail"), dict) else {}
    elif isinstance(body, (str, bytes)):
        message = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        message = message[:500]
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or OaioError
    err = cls(f"HTTP {status}: {message or cls.code}", detail, http_status=status, code=code or None)
    return err
