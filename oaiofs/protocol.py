"""The wire contract between the oaiofs server and its clients.

Server (``oaiofs.server``) and client (``oaiofs.client``, ``oaiofs.vfs``) meet only
here: paths, headers, field names, rights, stamps, id and path rules. A change
to the protocol is a change to this file, seen by both sides.

REST API (JSON bodies; every call takes ``Authorization: Bearer <token>`` or
HTTP Basic; errors are ``{"error": code, "message": text, "detail": {}}``, see
:mod:`oaiofs.errors`)::

  POST   /api/v1/auth/login                 {"username","password"} -> 200 {"token","username","expires"}
  POST   /api/v1/auth/logout                -> 204
  GET    /api/v1/whoami                     -> {"username"}
  GET    /api/v1/stamp                      -> {"current_stamp"}
  GET    /api/v1/users                      -> {"users": [username, ...]}
  GET    /api/v1/objects                    -> {"objects": [ObjectDoc], "cursor": int}  (visible, not deleted)
  POST   /api/v1/objects                    {"values", "oaio_id"?, "app_id"?, "device_id"?, "stamp"?} -> 201 ObjectDoc
  GET    /api/v1/objects/{oaio_id}          -> ObjectDoc (404 if not visible; 410 if deleted)
  GET    /api/v1/objects/{oaio_id}?limit=N[&after=P] -> ObjectDoc with at most N files (paths after P, in the
                                            database's path order) and "files_next": the next page's P or null
  PATCH  /api/v1/objects/{oaio_id}          {"values", "mode": "merge"|"replace", "base_version"?} -> ObjectDoc
  DELETE /api/v1/objects/{oaio_id}[?base_version=N]  -> 200 ObjectDoc (tombstone)
  GET    /api/v1/objects/{oaio_id}/files/{path}      -> bytes (Range supported; ETag = sha256)
  PUT    /api/v1/objects/{oaio_id}/files/{path}      bytes [?base_version=N] -> 200 FileDoc (plain upload;
                                            ?compact=true: + "object", the commit's CompactDoc)
  PATCH  /api/v1/objects/{oaio_id}/files/{path}      {"mode"?, "mtime_ns"?, "base_version"?} -> 200 ObjectDoc
                                            (metadata only: chmod/utimes without re-sending the bytes)
  PUT    /api/v1/objects/{oaio_id}/links/{path}      {"target", "mtime_ns"?, "base_version"?}
                                            -> 200 ObjectDoc (a symbolic link)
  DELETE /api/v1/objects/{oaio_id}/files/{path}[?base_version=N] -> 200 ObjectDoc (dir: recursive)
  POST   /api/v1/objects/{oaio_id}/dirs/{path}       -> 201 ObjectDoc (an explicit, possibly empty folder)
  POST   /api/v1/objects/{oaio_id}/move     {"src","dst","base_version"?,"overwrite"?} -> 200 ObjectDoc
  GET    /api/v1/objects/{oaio_id}/subscriptions     -> {"subscriptions": [{"username","access_right"}]}
  PUT    /api/v1/objects/{oaio_id}/subscriptions/{username} {"access_right"} -> {"pid", "access_right"}
                                            ("x" removes, answering {"pid": 0, "access_right": "x"})
  POST   /api/v1/objects/{oaio_id}/batch    tar body (see BATCH_* below) -> 200 {"object_version",
                                            "results": [BatchResult]} (many small files, one transaction;
                                            ?compact=true: + the batch's CompactDoc fields)
  GET    /api/v1/changes?cursor=N&wait=S&limit=L     -> {"cursor": int, "events": [CloudEvent]}
  tus 1.0 at /api/v1/uploads/   (see TUS_* below)
  Pacifica cartd at /api/v1/carts/{uid} (see CART_* below); single files:
  GET    /api/v1/carts/{uid}/files/{path}   -> bytes of one cart member (Range supported)
  OpenAPI at /openapi.json, docs at /docs.

ObjectDoc::

  {"oaio_id", "owner", "values": {}, "version": int, "stamp": "YYYYmmddHHMMSSffffff",
   "created": iso8601, "updated": iso8601, "deleted": iso8601|null,
   "access_right": "C"|"D"|"U"|"r", "app_id", "device_id",
   "files": [FileDoc]}

CompactDoc (``?compact=true`` on the PATCH/DELETE of a file, PUT of a link, POST of a folder,
a move and a batch; as ``"object"`` of a plain PUT: the answer's cost does not grow with the
object)::

  {"oaio_id", "version", "previous_version", "stamp", "updated", "access_right",
   "changed": [FileDoc], "removed": [path]}

``changed`` holds the entries the change made or changed and every folder above a changed or
removed path (the folders whose mtime it moved among them), sorted by path; ``removed`` the
paths that are gone. The ObjectDoc of ``previous_version`` without ``removed``, with ``changed``
put in (files sorted by path; ``version``, ``stamp``, ``updated`` taken from here) is exactly
the ObjectDoc of ``version``. Older servers sent no ``previous_version`` (= ``version - 1``)
and listed no folders above (a client then fetches the object).

FileDoc::

  {"path": "a/b.txt", "kind": "file"|"dir"|"link", "size": int, "sha256": hex|null,
   "version": int, "stamp": str, "mtime": float, "mtime_ns": int, "mode": int, "target": str|null}

``mode`` holds the permission bits the writer set (0o644 by default for files, 0o755 for
folders; set-user/group-id bits are dropped); a mount shows them without ``w`` to a
subscriber who may not write. ``mtime_ns`` is the modification time in nanoseconds
(``mtime`` is the same time in float seconds). A ``link`` stores its ``target`` as given
(``size`` = its length in bytes); it has no bytes and no sha256.

``version`` of an object goes up by one on every change (values, files,
deletion). A file's ``version`` is the object version at which that file was
last written. ``base_version`` on a values change is compared with the
object's version; on a file change (upload, delete, move) with that file's
version (``0`` = "the file must not exist yet"). A stale base answers 409
``version_conflict`` with ``detail.current_version`` and changes nothing.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as _dt
import json
import math
import re
import unicodedata
from typing import Any, Iterable, TypedDict

from .errors import InvalidInput, InvalidValue, MalformedJson

API_PREFIX = "/api/v1"
DEFAULT_PORT = 8470

# --- REST paths (format with str.format; quote path parts with urllib.parse.quote) ---
PATH_LOGIN = API_PREFIX + "/auth/login"
PATH_LOGOUT = API_PREFIX + "/auth/logout"
PATH_WHOAMI = API_PREFIX + "/whoami"
PATH_STAMP = API_PREFIX + "/stamp"
PATH_USERS = API_PREFIX + "/users"
PATH_OBJECTS = API_PREFIX + "/objects"
PATH_OBJECT = API_PREFIX + "/objects/{oaio_id}"
PATH_FILE = API_PREFIX + "/objects/{oaio_id}/files/{path}"
PATH_FILE_INFO = API_PREFIX + "/objects/{oaio_id}/info/{path}"   # FileDoc (+ its commit's CompactDoc)
PATH_LINK = API_PREFIX + "/objects/{oaio_id}/links/{path}"
PATH_DIR = API_PREFIX + "/objects/{oaio_id}/dirs/{path}"
PATH_MOVE = API_PREFIX + "/objects/{oaio_id}/move"
MAX_FILES_PAGE = 10_000                                  # GET PATH_OBJECT?limit=N pages the file list
PATH_BATCH = API_PREFIX + "/objects/{oaio_id}/batch"     # batch commit of small files (BATCH_* below)
PATH_SUBSCRIPTIONS = API_PREFIX + "/objects/{oaio_id}/subscriptions"
PATH_SUBSCRIPTION = API_PREFIX + "/objects/{oaio_id}/subscriptions/{username}"
PATH_CHANGES = API_PREFIX + "/changes"
# version history (server/routes_history.py): list, bytes of a kept version, restore as a new version
PATH_HISTORY_VERSIONS = API_PREFIX + "/objects/{oaio_id}/history/versions/{path}"
PATH_HISTORY_BYTES = API_PREFIX + "/objects/{oaio_id}/history/files/{version}/{path}"
PATH_HISTORY_RESTORE = API_PREFIX + "/objects/{oaio_id}/history/restore/{version}/{path}"
PATH_HISTORY_VALUES = API_PREFIX + "/objects/{oaio_id}/history/values"
PATH_HISTORY_VALUES_VERSION = API_PREFIX + "/objects/{oaio_id}/history/values/{version}"
PATH_HISTORY_VALUES_RESTORE = API_PREFIX + "/objects/{oaio_id}/history/values/{version}/restore"
PATH_ADMIN_USERS = API_PREFIX + "/admin/users"               # administrators only
PATH_ADMIN_USER = API_PREFIX + "/admin/users/{username}"
ERROR_ACCOUNT_DISABLED = "account_disabled"                  # 401 code for a disabled account
PATH_UPLOADS = API_PREFIX + "/uploads/"
PATH_CARTS = API_PREFIX + "/carts"
PATH_CART = API_PREFIX + "/carts/{uid}"
PATH_CART_FILE = API_PREFIX + "/carts/{uid}/files/{path}"

# --- headers ---
HEADER_DEVICE = "X-OAIO-Device"     # optional context headers (plain UTF-8, percent-encoded)
HEADER_APP = "X-OAIO-App"
HEADER_VERSION = "X-OAIO-Version"   # object/file version on file GET/PUT responses
HEADER_SHA256 = "X-OAIO-Sha256"

# --- access rights (seed ae.oaio_model) ---
CREATE_ACCESS_RIGHT = "C"
DELETE_ACCESS_RIGHT = "D"
UPDATE_ACCESS_RIGHT = "U"
READ_ACCESS_RIGHT = "r"
NO_ACCESS_RIGHT = "x"
ACCESS_RIGHTS = (CREATE_ACCESS_RIGHT, DELETE_ACCESS_RIGHT, UPDATE_ACCESS_RIGHT, READ_ACCESS_RIGHT)
UPDATE_RIGHTS = frozenset("CDU")
DELETE_RIGHTS = frozenset("CD")


def can_update(right: str | None) -> bool:
    """True if ``right`` allows changing values and files."""
    return right in UPDATE_RIGHTS


def can_delete(right: str | None) -> bool:
    """True if ``right`` allows deleting the object."""
    return right in DELETE_RIGHTS


def userz_access_sort_key(entry: dict[str, str]) -> str:
    """Sort key of the seed's ``userz_access``: access right, then user name (C < D < U < r < x)."""
    return entry["access_right"] + entry["username"]


# --- stamps (seed: naive UTC, 20 digits) ---
STAMP_FORMAT = "%Y%m%d%H%M%S%f"
OLDEST_SYNC_STAMP = "20221231111111012345"
_STAMP_RE = re.compile(r"^[0-9]{20}$")


def now_stamp(now: _dt.datetime | None = None) -> str:
    """The current UTC time as a 20-digit stamp."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).strftime(STAMP_FORMAT)


def is_stamp(value: Any) -> bool:
    """True for a well-formed stamp newer than ``OLDEST_SYNC_STAMP``."""
    return isinstance(value, str) and bool(_STAMP_RE.match(value)) and value > OLDEST_SYNC_STAMP


def stamp_to_datetime(stamp: str) -> _dt.datetime:
    """Parse a stamp into an aware UTC datetime."""
    return _dt.datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=_dt.timezone.utc)


# --- seed id rules ---
_DEFUSE_MAP = {
    "/": "⁄", "@": "﹫", ":": "﹕", " ": "␣", "{": "﹛", "}": "﹜", "\\": "﹨", "|": "￨",
    "*": "﹡", "?": "﹖", '"': "＂", "'": "‘", "<": "﹤", ">": "﹥", "(": "﹙", ")": "﹚",
    "[": "⁅", "]": "⁆", "#": "﹟", ";": "﹔", "&": "﹠", "=": "﹦", "+": "﹢", "$": "﹩",
    "%": "﹪", "^": "ˆ", ",": "‚",
}


def defuse(value: str) -> str:
    """Replace file-name- and URL-hostile ASCII with look-alike Unicode (seed ``defuse``)."""
    value = value.replace("://", "⫻")
    out = []
    for ch in value:
        if ord(ch) < 32:
            out.append(chr(0x2400 + ord(ch)))
        else:
            out.append(_DEFUSE_MAP.get(ch, ch))
    return "".join(out)


# --- strict input: the edge validators (every request input passes one of these) ---
MAX_JSON_DEPTH = 64                  # nesting of a JSON request body (values included)
MAX_DIGITS = 20                      # an integer in a header or metadata (> 2**63)


def check_text(value: str, what: str) -> str:
    """``value`` if it is valid Unicode (encodable as UTF-8: no lone surrogates), else ``InvalidValue``."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidValue(f"{what} is not valid UTF-8 text (lone surrogate)") from None
    return value


def check_json(doc: Any, what: str = "JSON document", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``doc`` if every number in it is finite, every string and key valid UTF-8 and it nests at most
    ``max_depth`` levels deep; else ``InvalidValue``."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            check_text(value, what)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidValue(f"{what}: numbers must be finite (no NaN or Infinity)")
        elif isinstance(value, (dict, list)):
            if depth > max_depth:
                raise InvalidValue(f"{what} is nested deeper than {max_depth} levels", {"max_depth": max_depth})
            if isinstance(value, dict):
                for key, item in value.items():
                    if isinstance(key, str):
                        check_text(key, what)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in value)
    return doc


def _refuse_constant(name: str) -> Any:
    raise InvalidValue(f"{name} is not a finite number (JSON has no NaN or Infinity)")


def check_json_body(body: bytes, what: str = "request body") -> None:
    """Refuse a JSON request body that is not UTF-8 (400) or breaks :func:`check_json` (422).

    A body that is not JSON at all passes: the JSON parser of the route answers that (400).
    """
    _parse_json_body(body, what, not_json_passes=True)


def load_json_body(body: bytes, what: str = "request body") -> Any:
    """Parse a JSON request body under the rules of :func:`check_json_body` (one parse, for big bodies);
    a body that is not JSON answers 400 ``malformed_json``."""
    return _parse_json_body(body, what, not_json_passes=False)


def _parse_json_body(body: bytes, what: str, *, not_json_passes: bool) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJson(f"{what} is not valid UTF-8") from None
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise InvalidValue(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels",
                           {"max_depth": MAX_JSON_DEPTH}) from None
    except json.JSONDecodeError:
        if not_json_passes:
            return None
        raise MalformedJson(f"{what} is not valid JSON") from None
    except ValueError:        # e.g. an integer of more than 4300 digits
        raise InvalidValue(f"{what} holds a number that is too long") from None
    return check_json(doc, what)


def parse_ascii_int(raw: str, what: str, error: type[InvalidInput] = InvalidInput) -> int:
    """A non-negative integer written in ASCII digits (``isdigit()`` also takes '²' and '٣')."""
    text = raw.strip()
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        raise error(f"{what} must be a non-negative integer (ASCII digits)", {"value": text[:40]})
    return int(text)


def parse_finite_float(raw: str | float, what: str) -> float:
    """A finite number (ASCII text or float); NaN, Infinity and overflows like ``1e400`` are refused."""
    if isinstance(raw, str):
        if not raw.isascii():
            raise InvalidValue(f"{what} must be a number written in ASCII")
        try:
            value = float(raw)
        except ValueError:
            raise InvalidValue(f"{what} must be a number", {"value": raw[:40]}) from None
    else:
        value = float(raw)
    if not math.isfinite(value):
        raise InvalidValue(f"{what} must be a finite number", {"value": str(raw)[:40]})
    return value


MAX_OAIO_ID_BYTES = 255        # accepted: a file name (the seed's id rule makes long ids, ae.oaio_client)
MADE_OAIO_ID_BYTES = 200       # ids oaiofs makes itself stay shorter (room for suffixes in local file names)
_BAD_ID_CHARS = re.compile(r"[/\\\x00-\x1f\x7f]")


def validate_oaio_id(oaio_id: Any) -> str:
    """Return ``oaio_id`` if it is a URL- and filename-safe id, else raise ``InvalidValue``."""
    if not isinstance(oaio_id, str) or not oaio_id:
        raise InvalidValue("oaio_id must be a non-empty string")
    check_text(oaio_id, "oaio_id")
    if oaio_id in (".", "..") or _BAD_ID_CHARS.search(oaio_id):
        raise InvalidValue("oaio_id must not contain '/', '\\', control characters or be '.'/'..'",
                           {"oaio_id": oaio_id[:80]})
    if len(oaio_id.encode("utf-8")) > MAX_OAIO_ID_BYTES:
        raise InvalidValue(f"oaio_id is longer than {MAX_OAIO_ID_BYTES} bytes")
    return oaio_id


def make_oaio_id(app_id: str, user: str, device_id: str, values: dict[str, Any], stamp: str) -> str:
    """Build a seed-style id: ``defuse('{app}://{user}@{device}/{name|root|file}/{stamp}')``, shortened."""
    url = f"{app_id}://{user}@{device_id}"
    if values.get("_name"):
        url += "/" + str(values["_name"])
    elif values.get("_root_path"):
        url += "/" + str(values["_root_path"]).strip("/")
    elif isinstance(values.get("_file_paths"), list) and len(values["_file_paths"]) == 1:
        url += "/" + str(values["_file_paths"][0])
    oaio_id = defuse(url)
    tail = "⁄" + stamp
    budget = MADE_OAIO_ID_BYTES - len(tail.encode("utf-8"))
    while len(oaio_id.encode("utf-8")) > budget:
        oaio_id = oaio_id[:-1]
    return oaio_id + tail


# --- the drive's extended attributes (read by getfattr, `oaiofs status`, `oaiofs pin`) ---
XATTR_PREFIX = "user.oaio."
XATTR_STATUS = XATTR_PREFIX + "status"              # cached/remote/dirty/uploading/conflict/error
XATTR_SHA256 = XATTR_PREFIX + "sha256"
XATTR_VERSION = XATTR_PREFIX + "version"
XATTR_PIN = XATTR_PREFIX + "pin"                    # settable: "1" pins, "0" releases
XATTR_MOUNT_STATUS = XATTR_PREFIX + "mount_status"  # on the mount root: JSON status of the mount
XATTR_ID = XATTR_PREFIX + "id"                      # on an object folder (and inside it): the object id
XATTR_INFO = XATTR_PREFIX + "info"                  # JSON: id, version, right, owner, sync state (oaiofs info)
XATTR_ACCESS = XATTR_PREFIX + "access"              # on an object folder: JSON users and rights (from the server)
XATTR_CONTROL = XATTR_PREFIX + "control"            # settable: a JSON request to the mount (share, retry, ...)
XATTR_RESULT_PREFIX = XATTR_PREFIX + "result."      # + the request's nonce: its JSON result
CONTROL_OPS = ("share", "retry", "discard", "clear_conflicts", "versions", "restore_version", "trash", "restore",
               "empty_trash")

# --- values ---
# Desktop metadata that must never become an object folder at the drive's root: trash folders of the
# freedesktop.org trash spec (GLib then offers permanent deletion), KDE's .directory, macOS' .DS_Store etc.
DESKTOP_METADATA_NAMES = frozenset({".Trash", ".directory", ".DS_Store", ".Spotlight-V100", ".fseventsd",
                                    ".TemporaryItems", ".Trashes", ".hidden", "Thumbs.db", "desktop.ini"})


def is_desktop_metadata(name: str) -> bool:
    """True for names of desktop metadata (``.Trash-1000``, ``.directory``, ``._x`` …) refused at the root."""
    return name in DESKTOP_METADATA_NAMES or name.startswith((".Trash-", "._"))


VALUES_FILE = "values.json"          # the drive's view of an object's values
RESERVED_VALUE_KEYS = ("_name", "_root_path", "_file_paths")
MAX_VALUES_BYTES = 1 << 20           # 1 MiB of JSON per object


def validate_values(values: Any) -> dict[str, Any]:
    """Check that ``values`` is a JSON object whose reserved keys have the seed's types."""
    if not isinstance(values, dict):
        raise InvalidValue("values must be a JSON object")
    check_json(values, "values")
    for key in values:
        if not isinstance(key, str):
            raise InvalidValue("value keys must be strings")
    if "_name" in values and not isinstance(values["_name"], str):
        raise InvalidValue("_name must be a string")
    if "_root_path" in values and not isinstance(values["_root_path"], str):
        raise InvalidValue("_root_path must be a string")
    if "_file_paths" in values:
        paths = values["_file_paths"]
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise InvalidValue("_file_paths must be a list of strings")
    return values


# --- file paths inside an object ---
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_PATH_DEPTH = 256                 # folders a path may nest (each level is a folder entry)


def normalize_file_path(path: Any) -> str:
    """Return a clean relative ``a/b/c`` path or raise ``InvalidValue``.

    Refused: non-strings, empty paths, text that is not valid UTF-8, absolute
    paths, ``.``/``..`` parts, empty parts, backslashes, NUL and other control
    characters, names over 255 bytes, paths over 4096 bytes or 256 levels, and
    ``values.json`` at the object's top level.
    Unicode is NFC-normalised so that one name has one spelling.
    """
    if not isinstance(path, str) or not path:
        raise InvalidValue("file path must be a non-empty string")
    check_text(path, "file path")
    path = unicodedata.normalize("NFC", path)
    if path.startswith("/") or "\\" in path or re.search(r"[\x00-\x1f\x7f]", path):
        raise InvalidValue("file path must be relative, without backslashes or control characters",
                           {"path": path[:200]})
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidValue("file path must not contain empty, '.' or '..' parts", {"path": path[:200]})
    if any(len(p.encode("utf-8")) > MAX_NAME_BYTES for p in parts):
        raise InvalidValue(f"a file name is longer than {MAX_NAME_BYTES} bytes", {"path": path[:200]})
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise InvalidValue(f"file path is longer than {MAX_PATH_BYTES} bytes")
    if len(parts) > MAX_PATH_DEPTH:
        raise InvalidValue(f"file path is deeper than {MAX_PATH_DEPTH} levels", {"max_depth": MAX_PATH_DEPTH})
    if path == VALUES_FILE:
        raise InvalidValue(f"'{VALUES_FILE}' is reserved at the top of an object")
    return path


# --- POSIX metadata: kinds, modes, times, symbolic links ---
KIND_FILE, KIND_DIR, KIND_LINK = "file", "dir", "link"
DEFAULT_FILE_MODE, DEFAULT_DIR_MODE, LINK_MODE = 0o644, 0o755, 0o777
MODE_BITS = 0o1777                   # what is stored: rwx for all, sticky; never set-user/group-id
MAX_LINK_TARGET_BYTES = 4095         # PATH_MAX - 1 (readlink's buffer)
MAX_MTIME_NS = (1 << 63) - 1
_MODE_TEXT_RE = re.compile(r"0o([0-7]{1,6})|([0-9]{1,6})", re.ASCII)
_MTIME_TEXT_RE = re.compile(r"[+-]?[0-9]{1,%d}" % MAX_DIGITS, re.ASCII)


def validate_mode(mode: Any) -> int:
    """Permission bits as stored (``& MODE_BITS``); ``InvalidValue`` unless an int in 0..0o7777."""
    if isinstance(mode, str):
        text = mode.strip().lower()
        match = _MODE_TEXT_RE.fullmatch(text)     # ASCII only: int() also takes '٣', '²'... and '1_0'
        if match is None:
            raise InvalidValue("mode must be an integer (permission bits, ASCII digits)", {"mode": mode[:20]})
        mode = int(match[1], 8) if match[1] is not None else int(match[2], 10)
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise InvalidValue("mode must be an integer between 0 and 0o7777", {"mode": str(mode)[:20]})
    return mode & MODE_BITS


def validate_mtime_ns(value: Any) -> int:
    """A modification time in nanoseconds since the epoch (may be negative)."""
    if isinstance(value, str):
        text = value.strip()
        if not _MTIME_TEXT_RE.fullmatch(text):    # ASCII only, like parse_ascii_int
            raise InvalidValue("mtime_ns must be an integer (nanoseconds, ASCII digits)", {"mtime_ns": value[:30]})
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_MTIME_NS:
        raise InvalidValue("mtime_ns must be a 64-bit integer (nanoseconds)", {"mtime_ns": str(value)[:30]})
    return value


def validate_link_target(target: Any) -> str:
    """A symbolic link's target, stored as given: a non-empty string without NUL, at most 4095 bytes."""
    if not isinstance(target, str) or not target:
        raise InvalidValue("link target must be a non-empty string")
    if "\x00" in target:
        raise InvalidValue("link target must not contain NUL", {"target": target[:200]})
    try:
        size = len(target.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidValue("link target must be valid UTF-8", {"target": target[:200].encode("utf-8", "replace")
                                                                  .decode("utf-8")}) from None
    if size > MAX_LINK_TARGET_BYTES:
        raise InvalidValue(f"link target is longer than {MAX_LINK_TARGET_BYTES} bytes", {"size": size})
    return target


def link_escapes(link_path: str, target: str) -> bool:
    """True if ``target`` of a link at ``link_path`` (relative to its tree's top) points outside that tree."""
    if target.startswith("/"):
        return True
    depth = len(link_path.split("/")) - 1
    for part in target.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return True
    return False


def parent_dirs(path: str) -> list[str]:
    """All ancestor folders of ``a/b/c`` -> ``['a', 'a/b']``."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --- change feed (CloudEvents 1.0) ---
EVENT_TYPE_PREFIX = "org.oaiofs.object."
EVENT_CREATED = EVENT_TYPE_PREFIX + "created"
EVENT_UPDATED = EVENT_TYPE_PREFIX + "updated"          # values and/or files changed
EVENT_DELETED = EVENT_TYPE_PREFIX + "deleted"
EVENT_SUBSCRIBED = EVENT_TYPE_PREFIX + "subscribed"    # the recipient gained (or changed) a right
EVENT_UNSUBSCRIBED = EVENT_TYPE_PREFIX + "unsubscribed"  # the recipient lost access
EVENT_TYPES = (EVENT_CREATED, EVENT_UPDATED, EVENT_DELETED, EVENT_SUBSCRIBED, EVENT_UNSUBSCRIBED)
MAX_CHANGES_WAIT_S = 60.0
# event "data": {"oaio_id", "version", "stamp", "actor", "access_right"?, "changed_files"?: [path],
#                "removed_files"?: [path], "values_changed"?: bool}
# event "subject": the oaio_id; "id": the cursor (str); "source": "/oaiofs/objects"

# --- tus 1.0 uploads ---
TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = ("creation", "creation-with-upload", "termination", "checksum", "expiration",
                  "creation-defer-length")
TUS_CHECKSUM_ALGORITHMS = ("sha1", "sha256")
TUS_CONTENT_TYPE = "application/offset+octet-stream"
TUS_CHECKSUM_MISMATCH_STATUS = 460
# Upload-Metadata keys
META_OAIO_ID = "oaio_id"
META_PATH = "path"
META_BASE_VERSION = "base_version"
META_SHA256 = "sha256"
META_MTIME = "mtime"
META_MTIME_NS = "mtime_ns"          # int nanoseconds; wins over META_MTIME
META_MODE = "mode"                  # permission bits, decimal or 0o-octal
# response headers after the last byte (also on HEAD of a completed upload)
HEADER_UPLOAD_RESULT_VERSION = "X-OAIO-Version"
HEADER_UPLOAD_RESULT_SHA256 = "X-OAIO-Sha256"

CHUNK_UNIT = 1280 * 1024             # LCM of Graph's 320 KiB and Drive's 256 KiB
DEFAULT_CHUNK_SIZE = 4 * CHUNK_UNIT  # 5 MiB


def encode_upload_metadata(meta: dict[str, str]) -> str:
    """tus ``Upload-Metadata``: ``key base64(value)`` pairs joined by commas."""
    parts = []
    for key, value in meta.items():
        if not key or " " in key or "," in key:
            raise InvalidInput(f"bad Upload-Metadata key {key!r}")
        parts.append(f"{key} {base64.b64encode(str(value).encode('utf-8')).decode('ascii')}")
    return ",".join(parts)


def decode_upload_metadata(header: str | None) -> dict[str, str]:
    """Parse ``Upload-Metadata``; raise ``InvalidInput`` on a malformed header."""
    result: dict[str, str] = {}
    if not header:
        return result
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        if not key or key in result:
            raise InvalidInput("malformed Upload-Metadata", {"item": item[:100]})
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value else ""
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput("Upload-Metadata value is not base64 UTF-8", {"key": key}) from None
    return result


# --- batch commit of many small files (POST PATH_BATCH) ---
# The body is an uncompressed tar stream (Content-Type BATCH_CONTENT_TYPE): first a member named
# BATCH_MANIFEST_NAME holding {"files": [{"path", "sha256", "size", "base_version"?, "mtime_ns"?,
# "mode"?}]}, then one regular member per manifest entry, in the same order, named by its index
# ("0", "1", ...) and holding exactly ``size`` bytes. Every file is committed as by a single PUT
# (same base_version rules; a stale base or a 409 refuses that file only), all in one transaction.
# A malformed body, a hostile or repeated path or a bad field refuses the WHOLE batch (422, nothing
# applied); a body over BATCH_MAX_BYTES or more than BATCH_MAX_FILES files answers 413.
# Answer: {"object_version": int, "stamp": str, "results": [BatchResult]} in manifest order
# (?compact=true: plus the CompactDoc fields of the whole batch, see the module docstring).
BATCH_MAX_FILES = 1000
BATCH_MAX_BYTES = 16 << 20                # whole request body (tar headers and manifest included)
BATCH_MANIFEST_NAME = "manifest.json"
BATCH_CONTENT_TYPE = "application/x-tar"
BATCH_OK, BATCH_CONFLICT, BATCH_ERROR = "ok", "conflict", "error"
_TAR_BLOCK = 512
_TAR_RECORD = 20 * _TAR_BLOCK             # tarfile pads an archive to whole records


@dataclasses.dataclass(frozen=True)
class BatchFile:
    """One file of a batch commit (``sha256``: lower-case hex of ``data``)."""

    path: str
    data: bytes
    sha256: str
    base_version: int | None = None
    mtime_ns: int | None = None
    mode: int | None = None

    def manifest_entry(self) -> dict[str, Any]:
        """This file's entry in the batch manifest."""
        entry: dict[str, Any] = {"path": self.path, "sha256": self.sha256, "size": len(self.data)}
        for key in ("base_version", "mtime_ns", "mode"):
            value = getattr(self, key)
            if value is not None:
                entry[key] = int(value)
        return entry


class BatchResult(TypedDict, total=False):
    path: str
    status: str                           # BATCH_OK | BATCH_CONFLICT (a 409) | BATCH_ERROR
    version: int                          # the file's new version (ok only)
    object_version: int                   # the object's version after the whole batch
    error: dict[str, Any]                 # {"error", "message", "detail"} (not ok only)


_BATCH_PATH_RE = re.compile("^" + re.escape(API_PREFIX) + r"/objects/[^/]+/batch$")


def is_batch_path(path: str) -> bool:
    """True for the (raw, unquoted) request path of a batch commit."""
    return bool(_BATCH_PATH_RE.match(path))


def _tar_member_bytes(size: int) -> int:
    return _TAR_BLOCK + -(-size // _TAR_BLOCK) * _TAR_BLOCK


def batch_manifest(files: Iterable[BatchFile]) -> bytes:
    """The manifest member's bytes for ``files``."""
    return json.dumps({"files": [f.manifest_entry() for f in files]}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def batch_body_bytes(files: Iterable[BatchFile]) -> int:
    """An upper bound of the tar body a batch of ``files`` makes (compare with BATCH_MAX_BYTES)."""
    files = list(files)
    total = _tar_member_bytes(len(batch_manifest(files))) + sum(_tar_member_bytes(len(f.data)) for f in files)
    return total + 2 * _TAR_BLOCK + _TAR_RECORD


def plan_batches(files: Iterable[BatchFile], max_files: int = BATCH_MAX_FILES,
                 max_bytes: int = BATCH_MAX_BYTES) -> list[list[BatchFile]]:
    """Split ``files`` (in order) into batches within the limits; a file too big for any batch
    still gets a batch of its own (the caller should send it with tus/PUT instead)."""
    batches: list[list[BatchFile]] = []
    current: list[BatchFile] = []
    empty = 4 * _TAR_BLOCK + _TAR_RECORD + len(b'{"files":[]}')     # end blocks, record padding, manifest
    used = empty
    for item in files:
        entry = json.dumps(item.manifest_entry(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        cost = _tar_member_bytes(len(item.data)) + len(entry) + 1
        if current and (len(current) >= max_files or used + cost > max_bytes):
            batches.append(current)
            current, used = [], empty
        current.append(item)
        used += cost
    if current:
        batches.append(current)
    return batches


# --- carts (Pacifica cartd) ---
CART_STATUS_HEADER = "X-Pacifica-Status"
CART_MESSAGE_HEADER = "X-Pacifica-Message"
CART_WAITING, CART_STAGING, CART_READY, CART_ERROR = "waiting", "staging", "ready", "error"
CART_WAIT_PARAM = "wait"             # HEAD /carts/{uid}?wait=S long-polls until ready/error
CART_ERROR_CODE_HEADER = "X-OAIO-Error"  # on a failed cart: the error code (e.g. checksum_mismatch)
# X-Pacifica-Message is printable ASCII: other characters are percent-encoded (UTF-8)
MAX_CART_WAIT_S = 60.0
MAX_CART_FILES = 100_000             # file ids per cart (422 beyond)
MAX_CART_BODY_BYTES = 32 << 20       # bytes of a cart's create body (413 beyond)


def cart_file_id(oaio_id: str, path: str) -> str:
    """The cart ``id`` naming an attached file: ``"<oaio_id>/<file path>"``."""
    return f"{oaio_id}/{path}"


def split_cart_file_id(file_id: Any) -> tuple[str, str]:
    """Inverse of :func:`cart_file_id` (the id never contains '/', so split at the first one)."""
    if not isinstance(file_id, str) or "/" not in file_id:
        raise InvalidValue("cart file id must be '<oaio_id>/<path>'", {"id": str(file_id)[:200]})
    oaio_id, path = file_id.split("/", 1)
    return validate_oaio_id(oaio_id), normalize_file_path(path)


# --- JSON documents (for type checkers and readers) ---
class FileDoc(TypedDict):
    path: str
    kind: str
    size: int
    sha256: str | None
    version: int
    stamp: str
    mtime: float
    mtime_ns: int
    mode: int
    target: str | None


class ObjectDoc(TypedDict):
    oaio_id: str
    owner: str
    values: dict[str, Any]
    version: int
    stamp: str
    created: str
    updated: str
    deleted: str | None
    access_right: str
    app_id: str
    device_id: str
    files: list[FileDoc]


def iter_chunks(data: bytes, size: int) -> Iterable[bytes]:
    """Slice ``data`` into pieces of ``size`` bytes."""
    for start in range(0, len(data), size):
        yield data[start:start + size]
