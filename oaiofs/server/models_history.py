"""Tables of the version history (:mod:`oaiofs.server.history`): every committed file version and
every values change of an object, kept under the retention policy (revision ``0007_history``).

Imported at the end of :mod:`oaiofs.server.models` so that the one ``Base.metadata`` (and the
migrations that must match it) includes them. Authors are kept by name: a user removed later
still shows as the author of what they wrote.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .models_base import Base, BigIntPk, utcnow


class FileVersion(Base):
    """One committed version of a file: the blob it pointed at and its metadata."""
    __tablename__ = "file_versions"
    __table_args__ = (Index("ix_file_versions_file", "object_id", "path_hash", "version"),)
    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(4096))
    path_hash: Mapped[str] = mapped_column(String(64))          # sha256(path), as in files.path_hash
    version: Mapped[int] = mapped_column(Integer)               # the file's version (object version at commit)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    blob_key: Mapped[str] = mapped_column(String(255), index=True)
    mode: Mapped[int] = mapped_column(Integer, default=0o644)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    author: Mapped[str | None] = mapped_column(String(150), nullable=True)    # None: before the history existed
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    restored_from: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ValuesVersion(Base):
    """The values of an object as one change left them (``version``: the object version after it)."""
    __tablename__ = "values_versions"
    __table_args__ = (Index("ix_values_versions_object", "object_id", "version"),)
    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    values_json: Mapped[str] = mapped_column(Text, default="{}")
    author: Mapped[str | None] = mapped_column(String(150), nullable=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    restored_from: Mapped[int | None] = mapped_column(Integer, nullable=True)
