"""Tables of the server trash (:mod:`oaiofs.server.trash`; revision ``0008_trash``).

Imported at the end of :mod:`oaiofs.server.models` so that the one ``Base.metadata``
(and the migrations that must match it) includes them.

``trash`` has one row per deletion: a file, a folder with its whole subtree, or a whole
object (``kind="object"``: the tombstoned object keeps its file rows, so no
``trash_files`` rows). ``trash_files`` keeps the entries a path deletion removed, with
their blob keys, so the blob collector keeps the bytes until the item expires.
"""
from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from .models_base import Base, utcnow


class TrashItem(Base):
    """One deletion that can be restored until it expires (deleted + the retention period)."""
    __tablename__ = "trash"
    __table_args__ = (Index("ix_trash_object_path", "object_id", "path_hash"),
                      Index("ix_trash_object_version", "object_id", "version"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))                   # "path" | "object"
    path: Mapped[str] = mapped_column(String(4096), default="")    # "" for an object
    path_hash: Mapped[str] = mapped_column(String(64), default="")
    entry_kind: Mapped[str] = mapped_column(String(8))             # "file" | "dir" | "link" | "object"
    version: Mapped[int] = mapped_column(Integer, default=0)       # the object version the deletion made
    first_version: Mapped[int] = mapped_column(Integer, default=0)  # lowest version of the deletions folded in
    parent_mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)   # its folder's mtime before
    files: Mapped[int] = mapped_column(Integer, default=0)         # files (not folders) in the item
    size: Mapped[int] = mapped_column(BigInteger, default=0)       # their bytes
    deleted: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    deleted_by: Mapped[str] = mapped_column(String(150), default="")   # user name (kept if the user goes)

    @validates("path")
    def _set_path_hash(self, _key: str, path: str) -> str:
        self.path_hash = hashlib.sha256(path.encode("utf-8")).hexdigest()
        return path


class TrashFile(Base):
    """An entry (file, folder or link) removed by a path deletion, as it was."""
    __tablename__ = "trash_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trash_id: Mapped[int] = mapped_column(ForeignKey("trash.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(4096))
    kind: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    blob_key: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    mtime: Mapped[float] = mapped_column(Float, default=0.0)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    mode: Mapped[int] = mapped_column(Integer, default=0o644)
    target: Mapped[str | None] = mapped_column(String(4096), nullable=True)
