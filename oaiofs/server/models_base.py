"""The declarative base every table module shares (``models.py``, ``models_*.py``), so those
modules import it from here and not from each other (no import cycle)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Integer
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> dt.datetime:
    """Timezone-aware now (stored as UTC)."""
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every oaiofs table."""


# BigInteger primary keys that still autoincrement on SQLite.
BigIntPk = BigInteger().with_variant(Integer(), "sqlite")
