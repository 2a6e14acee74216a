"""The server's database schema (SQLAlchemy 2 declarative).

All server state lives here or in the blob store, never only in process
memory, so several server processes can share one database. Migrations in
``oaiofs/server/migrations`` must match these models (a test checks it).

Owners: core tables (users, tokens, objects, files, subscriptions, changes)
belong to the object service; uploads and carts to the transfer service.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String,
                        Text, UniqueConstraint, false)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

# the declarative base lives in models_base.py (the table modules share it); re-exported here
from .models_base import Base as Base
from .models_base import BigIntPk as BigIntPk
from .models_base import utcnow as utcnow


DIR, FILE = "dir", "file"          # FileEntry.kind of a folder / a file (a link is "link")


# NaN/Infinity stored before the input was validated read back as null, so such a document can
# still be sent as JSON (one user's bad value must not break every subscriber's listing)
_VALUES_DECODER = json.JSONDecoder(parse_constant=lambda _constant: None)


def load_values(text: str | None) -> dict[str, Any]:
    """An object's stored values (non-finite numbers of old data become null)."""
    return _VALUES_DECODER.decode(text or "{}")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # 401 everywhere
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Token(Base):
    """A login token; only its sha256 is stored."""
    __tablename__ = "tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class OaiObject(Base):
    __tablename__ = "objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    oaio_id: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    values_json: Mapped[str] = mapped_column(Text, default="{}")
    version: Mapped[int] = mapped_column(Integer, default=1)
    stamp: Mapped[str] = mapped_column(String(20))
    app_id: Mapped[str] = mapped_column(String(255), default="")
    device_id: Mapped[str] = mapped_column(String(255), default="")
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    owner: Mapped[User] = relationship()
    files: Mapped[list["FileEntry"]] = relationship(back_populates="object", cascade="all, delete-orphan",
                                                   order_by="FileEntry.path")


class FileEntry(Base):
    """An attached file or an explicit folder of an object (current version only)."""
    __tablename__ = "files"
    # unique on a hash of the path: PostgreSQL cannot index paths over ~2.7 KB (protocol allows 4 KB)
    __table_args__ = (UniqueConstraint("object_id", "path_hash", name="uq_files_object_path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(4096))
    path_hash: Mapped[str] = mapped_column(String(64))             # sha256(path), kept by _set_path_hash
    kind: Mapped[str] = mapped_column(String(8), default="file")   # "file" | "dir" | "link"
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    blob_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    stamp: Mapped[str] = mapped_column(String(20))
    mtime: Mapped[float] = mapped_column(Float, default=0.0)
    # POSIX metadata (revision 0005_posix_metadata): permission bits, mtime in ns, link target
    mode: Mapped[int] = mapped_column(Integer, default=0o644)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)
    target: Mapped[str | None] = mapped_column(String(4096), nullable=True)

    object: Mapped[OaiObject] = relationship(back_populates="files")

    @validates("path")
    def _set_path_hash(self, _key: str, path: str) -> str:
        self.path_hash = hashlib.sha256(path.encode("utf-8")).hexdigest()
        return path


class Subscription(Base):
    """A user's access right to an object; ``id`` is the seed's ``Pid``."""
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("object_id", "user_id", name="uq_subscriptions_object_user"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    access_right: Mapped[str] = mapped_column(String(1))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    user: Mapped[User] = relationship()
    object: Mapped[OaiObject] = relationship()


class Change(Base):
    """One change-feed entry for one recipient; ``id`` is the feed cursor."""
    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_user_id_id", "user_id", "id"),)
    id: Mapped[int] = mapped_column(BigIntPk, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    oaio_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    data_json: Mapped[str] = mapped_column(Text, default="{}")


class Upload(Base):
    """A tus upload in progress (bytes live in the blob store's staging area)."""
    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    oaio_id: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(4096))
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    segments: Mapped[int] = mapped_column(Integer, default=0)
    base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mtime: Mapped[float | None] = mapped_column(Float, nullable=True)
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    staging_json: Mapped[str] = mapped_column(Text, default="{}")   # blob-store staging state (e.g. S3 parts)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    completed: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class Cart(Base):
    """A download bundle (Pacifica cartd semantics), bound to its creator."""
    __tablename__ = "carts"
    __table_args__ = (Index("ix_carts_user_uid", "user_id", "uid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    message: Mapped[str] = mapped_column(Text, default="")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    accessed: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    expires: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    deleted: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    files: Mapped[list["CartFile"]] = relationship(back_populates="cart", cascade="all, delete-orphan",
                                                  order_by="CartFile.id")


class CartFile(Base):
    """One member of a cart, pinned to the blob it had when the cart was made."""
    __tablename__ = "cart_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cart_id: Mapped[int] = mapped_column(ForeignKey("carts.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[str] = mapped_column(String(4352))     # as the client sent it
    bundle_path: Mapped[str] = mapped_column(String(4096))
    oaio_id: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(4096))
    blob_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    hashtype: Mapped[str] = mapped_column(String(32), default="sha256")
    hashsum: Mapped[str] = mapped_column(String(256), default="")
    mtime: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="waiting")
    # POSIX metadata of the member (revision 0009_cart_posix): a link has no blob, only its target
    kind: Mapped[str] = mapped_column(String(8), default="file")     # "file" | "link"
    mode: Mapped[int] = mapped_column(Integer, default=0o644)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=0)      # 0: older cart, use ``mtime``
    target: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")

    cart: Mapped[Cart] = relationship(back_populates="files")


class BlobGc(Base):
    """A blob seen unreferenced by the garbage collector, and since when (``oaiofs.server.blob_gc``)."""
    __tablename__ = "blob_gc"
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    since: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


from . import models_compat  # noqa: E402,F401  (the ae compatibility tables share Base.metadata)
from . import models_history  # noqa: E402,F401  (the version history, issue 17)
from . import models_trash  # noqa: E402,F401  (the trash tables, issue 17)
