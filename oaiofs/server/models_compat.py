"""Tables of the ``ae.oaio_client`` compatibility layer (:mod:`oaiofs.server.compat_ae`).

Imported at the end of :mod:`oaiofs.server.models` so that the one ``Base.metadata``
(and the migrations that must match it) includes them.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String

from sqlalchemy.orm import Mapped, mapped_column

from .models_base import Base, utcnow


class CompatAeObject(Base):
    """The seed client's version stamp of an object and the oaiofs version it belongs to.

    The unmodified client stores attached files at ``<oaio_id>/<client_stamp>/<path>``
    and fetches them at the stamp the server reports, so the stamp a client sent
    is reported verbatim while the object is still at ``version``; after a native
    change (``objects.version != version``) the object's own stamp is reported.
    """
    __tablename__ = "compat_ae_objects"
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True)
    client_stamp: Mapped[str] = mapped_column(String(20))
    version: Mapped[int] = mapped_column(Integer)
    csh_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class CompatAeStagedFile(Base):
    """A file the storage plugin deployed at ``<oaio_id>/<stamp>/<path>`` before ``register/``/``upload/``."""
    __tablename__ = "compat_ae_staged"
    __table_args__ = (Index("ix_compat_ae_staged_key", "oaio_id", "stamp"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    oaio_id: Mapped[str] = mapped_column(String(255))
    stamp: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(String(4096))
    blob_key: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
