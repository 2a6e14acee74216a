"""``OaiObject``: the client's record of one oaio (the seed's dataclass plus sync bookkeeping).

Seed fields keep their meaning: ``client_values`` are the current local values,
``server_values`` the values of the server version the local copy is based on
(the base of a three-way merge), ``client_stamp`` the stamp of the newest local
change and ``server_stamp`` the stamp last synchronised. A record is *dirty*
(has changes to push) while ``client_stamp != server_stamp``.

Additions: ``server_version`` (the server version the local copy is based on;
0 = never uploaded), ``files`` (path -> the FileDoc last synchronised),
``root_path`` (the absolute, user-chosen folder of the attached files when the
object was registered on this device; empty means ``client_root/filez/<id>/``),
``uploads`` (path -> tus upload in progress: url, sha256, size),
``pending_delete`` (unregistered locally, deletion not yet sent) and
``incomplete`` (some server files could not be placed; pulled again next sync).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidValue
from ..protocol import ACCESS_RIGHTS, validate_oaio_id, validate_values


@dataclass
class OaiObject:
    """One oaio as known on this device."""

    oaio_id: str
    client_stamp: str = ""
    server_stamp: str = ""
    client_values: dict[str, Any] = field(default_factory=dict)
    server_values: dict[str, Any] = field(default_factory=dict)
    csh_id: str | None = None
    username: str = ""
    device_id: str = ""
    app_id: str = ""
    csh_access_right: str = "C"
    server_version: int = 0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    root_path: str = ""
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_delete: bool = False
    incomplete: bool = False

    @property
    def dirty(self) -> bool:
        """True while the object has local changes that the server has not seen."""
        return self.pending_delete or self.server_version == 0 or self.client_stamp != self.server_stamp

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> "OaiObject":
        """Rebuild a record from :meth:`to_json` output; raise ``InvalidValue`` if it is malformed."""
        if not isinstance(data, dict):
            raise InvalidValue("object record must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InvalidValue("object record has unknown fields", {"fields": sorted(unknown)[:10]})
        try:
            obj = cls(**data)
        except TypeError as exc:
            raise InvalidValue(f"object record is incomplete: {exc}") from None
        validate_oaio_id(obj.oaio_id)
        validate_values(obj.client_values)
        validate_values(obj.server_values)
        for name in ("client_stamp", "server_stamp", "username", "device_id", "app_id", "root_path"):
            if not isinstance(getattr(obj, name), str):
                raise InvalidValue(f"object record field {name} must be a string")
        if obj.csh_access_right not in ACCESS_RIGHTS:
            raise InvalidValue("object record has an unknown access right")
        if not isinstance(obj.server_version, int) or obj.server_version < 0:
            raise InvalidValue("object record server_version must be a non-negative integer")
        for name in ("files", "uploads"):
            table = getattr(obj, name)
            if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
                raise InvalidValue(f"object record field {name} must map paths to objects")
        return obj
