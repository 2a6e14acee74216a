"""The drive's metadata values: file entries, object views, resolved nodes and their attributes.

Pure data plus the mode/size/mtime rules; no I/O, no locks.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import stat
from dataclasses import dataclass, field
from typing import Any

from .. import protocol

ROOT_DIR_MODE = 0o755
RW_DIR_MODE, RO_DIR_MODE = 0o755, 0o555
RW_FILE_MODE, RO_FILE_MODE = 0o644, 0o444
MAX_NAME_BYTES = protocol.MAX_NAME_BYTES


@dataclass(slots=True)
class Entry:
    """One file or folder inside an object (server state, possibly patched by local changes)."""

    path: str
    kind: str                     # "file" | "dir" | "link"
    size: int = 0
    sha256: str | None = None
    version: int = 0              # server version of the file; 0 = never committed
    mtime: float = 0.0
    local: bool = False           # changed locally and not yet committed
    mode: int | None = None       # permission bits the writer set (None: the default of the kind)
    mtime_ns: int = 0             # exact mtime; 0 = only ``mtime`` is known
    target: str | None = None     # a link's target, as given

    @property
    def time_ns(self) -> int:
        """The mtime in nanoseconds."""
        return self.mtime_ns or round(self.mtime * 1e9)


@dataclass(slots=True)
class ObjectView:
    """An object as the mount shows it: the server's document with local changes replayed."""

    oaio_id: str
    owner: str
    access_right: str
    values: dict[str, Any]
    version: int
    created: str
    mtime: float
    entries: dict[str, Entry] = field(default_factory=dict)
    children: dict[str, dict[str, Entry]] = field(default_factory=dict)   # folder path -> name -> entry
    local: bool = False           # created locally, not yet on the server
    _values_bytes: bytes | None = None
    subdirs: dict[str, int] = field(default_factory=dict)   # folder path -> number of sub-folders
    shadowed: dict[str, "Entry | None"] = field(default_factory=dict)   # open file path -> entry it hides
    # folder path -> ``created`` of the pending op whose added/removed name last set its mtime
    # (gone once a chmod/utimens set it): tells a commit whether the server's touch shows
    touched: dict[str, float] = field(default_factory=dict)

    @property
    def writable(self) -> bool:
        return protocol.can_update(self.access_right)

    @property
    def deletable(self) -> bool:
        return protocol.can_delete(self.access_right)

    @property
    def values_bytes(self) -> bytes:
        """values.json as shown in the mount (pretty-printed, newline-terminated)."""
        if self._values_bytes is None:
            self._values_bytes = values_to_bytes(self.values)
        return self._values_bytes

    def index(self) -> None:
        """(Re)build ``children`` and implicit parent folders from ``entries``."""
        for entry in list(self.entries.values()):
            for parent in protocol.parent_dirs(entry.path):
                if parent not in self.entries or self.entries[parent].kind != "dir":
                    self.entries[parent] = Entry(parent, "dir", mtime=entry.mtime, version=entry.version)
        self.children = {"": {}}
        self.subdirs = {}
        for entry in self.entries.values():
            if entry.kind == "dir":
                self.children.setdefault(entry.path, {})
        for path, entry in self.entries.items():
            parent, _, name = path.rpartition("/")
            self.children.setdefault(parent, {})[name] = entry
            if entry.kind == "dir":
                self.subdirs[parent] = self.subdirs.get(parent, 0) + 1


@dataclass(frozen=True, slots=True)
class Node:
    """What a mount path resolves to."""

    kind: str                     # "root" | "object" | "values" | "dir" | "file"
    view: ObjectView | None = None
    entry: Entry | None = None

    @property
    def oaio_id(self) -> str:
        assert self.view is not None
        return self.view.oaio_id

    @property
    def path(self) -> str:
        """The path inside the object ("" for the object folder itself)."""
        if self.kind == "values":
            return protocol.VALUES_FILE
        return self.entry.path if self.entry else ""

    @property
    def is_dir(self) -> bool:
        return self.kind in ("root", "object", "dir")

    @property
    def is_link(self) -> bool:
        return self.kind == "link"


@dataclass(frozen=True, slots=True)
class Attr:
    """A stat result in plain Python types (the FUSE adapter turns it into a dict)."""

    mode: int
    size: int
    mtime: float
    nlink: int = 1
    mtime_ns: int = 0             # exact mtime when known (0: from ``mtime``)

    def as_dict(self, uid: int, gid: int) -> dict[str, int | float]:
        """fusepy's stat dict with times in nanoseconds (the adapter sets ``use_ns``)."""
        blocks = (self.size + 511) // 512
        ns = self.mtime_ns or round(self.mtime * 1e9)
        return {"st_mode": self.mode, "st_size": self.size, "st_nlink": self.nlink,
                "st_mtime": ns, "st_ctime": ns, "st_atime": ns,
                "st_uid": uid, "st_gid": gid, "st_blocks": blocks, "st_blksize": 128 * 1024}


def values_to_bytes(values: dict[str, Any]) -> bytes:
    """The text of values.json."""
    return (json.dumps(values, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def iso_to_epoch(text: str | None) -> float:
    """Parse a server ISO-8601 time; 0 if missing or malformed."""
    if not text:
        return 0.0
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment.timestamp()


_UNSAFE_NAME_CHARS = {"/": "⁄", **{chr(i): chr(0x2400 + i) for i in range(32)}, "\x7f": "␡"}


def safe_name(text: str) -> str:
    """A single path component that shows ``text`` as it is, with look-alikes only where
    Linux cannot: '/' becomes '⁄', control characters their U+24xx symbols."""
    name = "".join(_UNSAFE_NAME_CHARS.get(ch, ch) for ch in text)
    if name in ("", ".", ".."):
        name = name.replace(".", "․") or "_"
    while len(name.encode("utf-8")) > MAX_NAME_BYTES - 12:   # room for a collision suffix
        name = name[:-1]
    return name


def base_dir_name(view: ObjectView) -> str:
    """The folder name an object would like: its ``_name``, else its id.

    An object named like desktop metadata (e.g. a ``.Trash-0`` object made by an older drive
    or through the API) gets its id suffix, so that no file manager takes it for a trash folder."""
    name = view.values.get("_name")
    base = safe_name(name if isinstance(name, str) and name.strip() else view.oaio_id)
    return base + collision_suffix(view.oaio_id) if protocol.is_desktop_metadata(base) else base


def collision_suffix(oaio_id: str) -> str:
    """A stable suffix for the 2nd, 3rd... object wanting the same folder name."""
    return " ~" + hashlib.sha256(oaio_id.encode("utf-8")).hexdigest()[:6]


def node_attr(node: Node) -> Attr:
    """Mode, size and mtime of a resolved node (sizes/mtimes are the server's, patched locally).

    A folder's link count is 2 + its sub-folders (``find`` and ``ls`` rely on it); the root's
    (2 + objects) is set by ``Vfs.getattr``, which knows the root folder names."""
    if node.kind == "root":
        return Attr(stat.S_IFDIR | ROOT_DIR_MODE, 0, 0.0, 2)
    view = node.view
    assert view is not None
    writable = view.writable
    if node.kind == "object":
        return Attr(stat.S_IFDIR | (RW_DIR_MODE if writable else RO_DIR_MODE), 0, view.mtime,
                    2 + view.subdirs.get("", 0))
    if node.kind == "values":
        return Attr(stat.S_IFREG | (RW_FILE_MODE if writable else RO_FILE_MODE),
                    len(view.values_bytes), view.mtime)
    entry = node.entry
    assert entry is not None
    mtime_ns = entry.time_ns or round(view.mtime * 1e9)
    if entry.kind == "link":
        return Attr(stat.S_IFLNK | protocol.LINK_MODE, entry.size, mtime_ns / 1e9, 1, mtime_ns)
    if entry.kind == "dir":
        bits = entry.mode if entry.mode is not None else RW_DIR_MODE
        return Attr(stat.S_IFDIR | shown_bits(bits, writable), 0, mtime_ns / 1e9,
                    2 + view.subdirs.get(entry.path, 0), mtime_ns)
    bits = entry.mode if entry.mode is not None else RW_FILE_MODE
    return Attr(stat.S_IFREG | shown_bits(bits, writable), entry.size, mtime_ns / 1e9, 1, mtime_ns)


def shown_bits(bits: int, writable: bool) -> int:
    """The permission bits a mount shows: the stored ones, without any ``w`` for a read-only subscriber."""
    return bits & protocol.MODE_BITS if writable else bits & protocol.MODE_BITS & ~0o222
