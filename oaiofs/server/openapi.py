"""The OpenAPI document, told truthfully: every status an operation answers, the error body,
the tus and cart headers, the Basic/Bearer security schemes and distinct operation ids.

FastAPI derives the paths and bodies from the routes; :func:`install` completes what it
cannot know (statuses raised as :class:`~oaiofs.errors.OaioError`, raw header protocols)
from the table :data:`OPERATIONS`. ``tests/server/test_openapi.py`` runs schemathesis
against a live server with this document.
"""
from __future__ import annotations

import re
import warnings
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .. import protocol

ERROR_SCHEMA = {
    "type": "object", "required": ["error", "message", "detail"],
    "properties": {"error": {"type": "string", "description": "machine-readable code (see oaiofs.errors)"},
                   "message": {"type": "string"},
                   "detail": {"type": "object", "additionalProperties": True}},
}
_DESCRIPTIONS = {
    200: "OK", 201: "Created", 202: "Accepted: the cart is not ready yet", 204: "No Content",
    206: "Partial Content (Range)", 304: "Not Modified (If-None-Match)", 400: "Invalid input",
    401: "Not authenticated (missing, wrong or expired credentials)", 403: "The access right is too small",
    404: "Not found (or not visible to the caller)", 409: "Conflict (version, existing name, offset, failed cart)",
    410: "Gone (deleted object, expired upload)", 411: "Content-Length required",
    412: "Precondition failed (Tus-Resumable)", 413: "Too large", 415: "Unsupported media type",
    416: "Range not satisfiable", 422: "Invalid value", 429: "Too many requests (login throttling)",
    460: "Checksum mismatch", 500: "The cart failed (cartd status answer)",
    503: "Unavailable (database busy or server saturated); retry", 507: "Insufficient storage (disk full)",
}
_NO_BODY = {204, 304}
_AUTH = {401, 429, 503}                  # any authenticated request
_READ = _AUTH | {400, 404, 410, 422}
_WRITE = _READ | {403, 409, 413, 507}
_FILE_GET = _READ | {200, 206, 304, 403, 416}
_TUS = _AUTH | {400, 404, 410, 412, 422}

# (method, path) -> statuses beyond what FastAPI documents; "public" ops need no credentials
OPERATIONS: dict[tuple[str, str], set[int]] = {
    ("post", "/api/v1/auth/login"): {200, 400, 401, 413, 422, 429, 503},
    ("post", "/api/v1/auth/logout"): {204} | _AUTH,
    ("get", "/api/v1/whoami"): {200} | _AUTH,
    ("get", "/api/v1/stamp"): {200},
    ("get", "/api/v1/users"): {200} | _AUTH,
    ("get", "/api/v1/objects"): {200} | _AUTH,
    ("post", "/api/v1/objects"): {201} | _WRITE,
    ("get", "/api/v1/objects/{oaio_id}"): {200, 403} | _READ,
    ("patch", "/api/v1/objects/{oaio_id}"): {200} | _WRITE,
    ("delete", "/api/v1/objects/{oaio_id}"): {200} | _WRITE,
    ("delete", "/api/v1/objects/{oaio_id}/files/{path}"): {200} | _WRITE,
    ("get", "/api/v1/objects/{oaio_id}/files/{path}"): _FILE_GET,
    ("head", "/api/v1/objects/{oaio_id}/files/{path}"): _FILE_GET,
    ("put", "/api/v1/objects/{oaio_id}/files/{path}"): {200, 411, 460} | _WRITE,
    ("get", protocol.PATH_FILE_INFO): {200, 403} | _READ,
    ("patch", "/api/v1/objects/{oaio_id}/files/{path}"): {200} | _WRITE,
    ("put", "/api/v1/objects/{oaio_id}/links/{path}"): {200} | _WRITE,
    ("post", "/api/v1/objects/{oaio_id}/dirs/{path}"): {201} | _WRITE,
    ("post", "/api/v1/objects/{oaio_id}/move"): {200} | _WRITE,
    ("post", protocol.PATH_BATCH): {200} | _WRITE,
    ("get", "/api/v1/objects/{oaio_id}/subscriptions"): {200, 403} | _READ,
    ("put", "/api/v1/objects/{oaio_id}/subscriptions/{username}"): {200} | _WRITE,
    ("get", "/api/v1/changes"): {200, 400, 422} | _AUTH,
    ("options", "/api/v1/uploads/"): {204},
    ("options", "/api/v1/uploads/{upload_id}"): {204},
    ("post", "/api/v1/uploads/"): {201, 403, 409, 413, 415, 460, 507} | _TUS,
    ("head", "/api/v1/uploads/{upload_id}"): {200} | _TUS,
    ("patch", "/api/v1/uploads/{upload_id}"): {204, 403, 409, 413, 415, 460, 507} | _TUS,
    ("delete", "/api/v1/uploads/{upload_id}"): {204} | _TUS,
    ("post", "/api/v1/carts/{uid}"): {201, 403, 413, 507} | _READ,
    ("head", "/api/v1/carts/{uid}"): {204, 403, 500} | _READ,
    ("get", "/api/v1/carts/{uid}"): {200, 202, 206, 403, 409, 416} | _READ,
    ("delete", "/api/v1/carts/{uid}"): {200} | _READ,
    ("get", "/api/v1/carts/{uid}/files/{path}"): {202, 409} | _FILE_GET,
    ("head", "/api/v1/carts/{uid}/files/{path}"): {202, 409} | _FILE_GET,
    # version history (routes_history.py): r reads, U/D/C restores
    ("get", "/api/v1/objects/{oaio_id}/history/versions/{path}"): {200, 403} | _READ,
    ("get", "/api/v1/objects/{oaio_id}/history/files/{version}/{path}"): _FILE_GET,
    ("head", "/api/v1/objects/{oaio_id}/history/files/{version}/{path}"): _FILE_GET,
    ("post", "/api/v1/objects/{oaio_id}/history/restore/{version}/{path}"): {200} | _WRITE,
    ("get", "/api/v1/objects/{oaio_id}/history/values"): {200, 403} | _READ,
    ("get", "/api/v1/objects/{oaio_id}/history/values/{version}"): {200, 403} | _READ,
    ("post", "/api/v1/objects/{oaio_id}/history/values/{version}/restore"): {200} | _WRITE,
    # the trash (routes_trash.py)
    ("get", "/api/v1/trash"): {200} | _AUTH,
    ("delete", "/api/v1/trash"): {200} | _AUTH,
    ("get", "/api/v1/objects/{oaio_id}/trash"): {200} | _READ,
    ("delete", "/api/v1/objects/{oaio_id}/trash"): {200, 403} | _READ,
    ("post", "/api/v1/objects/{oaio_id}/trash/restore"): {200} | _WRITE,
    # administration (routes_admin.py): 403 for a caller who is not an administrator
    ("get", "/api/v1/admin/users"): {200, 403} | _AUTH,
    ("post", "/api/v1/admin/users"): {201, 400, 403, 409, 413, 422} | _AUTH,
    ("patch", "/api/v1/admin/users/{username}"): {200, 400, 403, 404, 413, 422} | _AUTH,
    ("delete", "/api/v1/admin/users/{username}"): {200, 403, 404, 422} | _AUTH,
}
PUBLIC = {("get", "/api/v1/stamp"), ("post", "/api/v1/auth/login"), ("options", "/api/v1/uploads/"),
          ("options", "/api/v1/uploads/{upload_id}")}


# request bodies a handler reads itself (FastAPI cannot see them)
REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", protocol.PATH_BATCH): {
        "required": True,
        "description": "an uncompressed tar stream: manifest.json ({\"files\": [{path, sha256, size, "
                       "base_version?, mtime_ns?, mode?}]}) then one member per file named by its index "
                       f"(at most {protocol.BATCH_MAX_FILES} files and {protocol.BATCH_MAX_BYTES} bytes; "
                       "see docs/api.md)",
        "content": {protocol.BATCH_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
}


def _header(description: str, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


_TUS_RESPONSE_HEADERS = {
    "Tus-Resumable": _header("tus protocol version (1.0.0)"),
    "Upload-Offset": _header("bytes received so far"),
    "Upload-Expires": _header("when an unfinished upload expires (RFC 9110 date)"),
    "Upload-Length": _header("announced length (HEAD)"),
    "Upload-Defer-Length": _header("1 while the length is deferred (HEAD)"),
    "Upload-Metadata": _header("the creation's metadata (HEAD)"),
    "Location": _header("the upload URL (creation)"),
    protocol.HEADER_UPLOAD_RESULT_VERSION: _header("file version committed by the last byte"),
    protocol.HEADER_UPLOAD_RESULT_SHA256: _header("sha256 of the committed file"),
}
_TUS_OPTIONS_HEADERS = {name: _header(name) for name in
                        ("Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Checksum-Algorithm", "Tus-Max-Size")}
_CART_HEADERS = {
    protocol.CART_STATUS_HEADER: _header("cart status: waiting, staging, ready or error"),
    protocol.CART_MESSAGE_HEADER: _header("status message (percent-encoded UTF-8)"),
    protocol.CART_ERROR_CODE_HEADER: _header("error code of a failed cart (e.g. checksum_mismatch)"),
}
_FILE_HEADERS = {
    "ETag": _header("the sha256 in quotes"), "Last-Modified": _header("the file's mtime"),
    "Content-Range": _header("the range served (206) or the size (416)"), "Accept-Ranges": _header("bytes"),
    protocol.HEADER_VERSION: _header("the file's version"), protocol.HEADER_SHA256: _header("the file's sha256"),
}
_TUS_REQUEST = {
    "Tus-Resumable": ("tus version; must be 1.0.0", True),
    "Upload-Length": ("total size in bytes (ASCII digits)", False),
    "Upload-Defer-Length": ("1: the length is sent later", False),
    "Upload-Metadata": ("comma-separated 'key base64(value)': oaio_id, path, base_version, sha256, mtime", False),
    "Upload-Offset": ("offset of this chunk", True),
    "Upload-Checksum": ("'sha1|sha256 base64(digest)' of this chunk", False),
}
_TUS_REQUEST_BY_OP = {
    ("post", "/api/v1/uploads/"): ("Tus-Resumable", "Upload-Length", "Upload-Defer-Length", "Upload-Metadata",
                                   "Upload-Checksum"),
    ("patch", "/api/v1/uploads/{upload_id}"): ("Tus-Resumable", "Upload-Offset", "Upload-Length", "Upload-Checksum"),
}


# the ae.oaio_client compatibility routes (``/api/``; session cookie + X-CSRFToken, seed semantics)
_COMPAT_SLUGS = ("login", "logout", "register", "upload", "delete", "subscribe", "wipe_user")
_COMPAT_AUTH = {400, 401, 413, 422, 429, 503}   # 400: a bad X-OAIO-* header; 401: no session (the client logs in)
_COMPAT_WRITE = {200, 403, 404, 409, 410, 507} | _COMPAT_AUTH
OPERATIONS.update({("get", f"/api/{slug}/"): {200, 400} for slug in _COMPAT_SLUGS})    # the CSRF fetch
OPERATIONS.update({("post", f"/api/{slug}/"): _COMPAT_WRITE for slug in _COMPAT_SLUGS})
OPERATIONS.update({
    ("get", "/api/current_stamp/"): {200} | _COMPAT_AUTH,
    ("get", "/api/oaio_stampz/"): {200} | _COMPAT_AUTH,
    ("get", "/api/user_subz/{oaio_id}"): {200, 403, 404, 410} | _COMPAT_AUTH,
    ("get", "/api/csh_args/{csh_id}"): {200, 404} | _COMPAT_AUTH,
    ("put", "/api/csh/files/{raw}"): {200, 411} | _COMPAT_WRITE,
    ("get", "/api/csh/files/{raw}"): {200, 206, 304, 403, 404, 410, 416} | _COMPAT_AUTH,
    ("head", "/api/csh/files/{raw}"): {200, 206, 304, 403, 404, 410, 416} | _COMPAT_AUTH,
    ("delete", "/api/csh/files/{raw}"): _COMPAT_WRITE,
})

def _response(status: int, op_key: tuple[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, str(status))}
    if status >= 400 and not (op_key[0] == "head"):
        out["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    path = op_key[1]
    headers: dict[str, Any] = {}
    if path.startswith(protocol.PATH_UPLOADS):
        headers.update(_TUS_OPTIONS_HEADERS if op_key[0] == "options" else _TUS_RESPONSE_HEADERS)
    if path.startswith(protocol.PATH_CARTS):
        headers.update(_CART_HEADERS)
    if "/files/" in path and status in (200, 206, 304, 416):
        headers.update(_FILE_HEADERS)
    if status == 401:
        headers["WWW-Authenticate"] = _header("Basic realm")
    if status in (429, 503):
        headers["Retry-After"] = _header("seconds to wait")
    if headers:
        out["headers"] = headers
    return out


def _media(status: int, op_key: tuple[str, str]) -> dict[str, Any] | None:
    """The body of a success answer that FastAPI cannot describe (None: leave FastAPI's)."""
    method, path = op_key
    if method == "head" or status in _NO_BODY:
        return {}
    if "/files/" in path and method == "get":
        return {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    if path == protocol.PATH_CART and method == "get":
        if status == 202:
            return {"application/json": {"schema": {"type": "object"}}}
        return {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}}
    return None


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """Add statuses, error bodies, headers, security and unique operation ids to ``spec``."""
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        "basicAuth": {"type": "http", "scheme": "basic"},
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": "token from POST /api/v1/auth/login"},
    }
    spec["security"] = [{"basicAuth": []}, {"bearerAuth": []}]
    seen: set[str] = set()
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            key = (method, path)
            responses = op.setdefault("responses", {})
            statuses = OPERATIONS.get(key)
            if statuses:
                for stale in [s for s in responses if s.isdigit() and int(s) not in statuses]:
                    responses.pop(stale)              # FastAPI's guesses (200 for a 204 route, its 422 body)
                responses.pop("422", None)
                for status in sorted(statuses):
                    wanted = _response(status, key)
                    entry = responses.setdefault(str(status), wanted)
                    entry.setdefault("description", wanted["description"])
                    if wanted.get("headers"):
                        entry["headers"] = wanted["headers"]
                    media = _media(status, key) if status < 400 else None
                    if media is not None:
                        entry.pop("content", None)
                        if media:
                            entry["content"] = media
            if key in REQUEST_BODIES:
                op["requestBody"] = REQUEST_BODIES[key]
            if key in PUBLIC:
                op["security"] = []
            params = op.setdefault("parameters", [])
            declared = {p["name"] for p in params if p.get("in") == "path"}
            for name in re.findall(r"{(\w+)}", path):      # a handler shared by two paths may not name it
                if name not in declared:
                    params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
            for name in _TUS_REQUEST_BY_OP.get(key, ()):
                description, required = _TUS_REQUEST[name]
                params.append({"name": name, "in": "header", "required": required,
                               "description": description, "schema": {"type": "string"}})
            if not params:
                op.pop("parameters")
            op_id = f"{op.get('operationId') or method}"
            if op_id in seen or method == "head":
                op_id = f"{op_id.rsplit('_', 1)[0]}_{method}"
            while op_id in seen:
                op_id += "_"
            op["operationId"] = op_id
            seen.add(op_id)
    return spec


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():      # GET+HEAD routes share a generated id: complete() splits them
                warnings.simplefilter("ignore", UserWarning)
                spec = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            app.openapi_schema = complete(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
