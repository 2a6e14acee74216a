"""Client side of the version history API (``server/routes_history.py``): list, fetch and restore
kept versions of a file or of an object's values through an :class:`~oaiofs.client.api.ApiClient`."""
from __future__ import annotations

from typing import Any

from .. import protocol
from .api import ApiClient, quote_id, quote_path


def _object(api: ApiClient, method: str, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = api.request(method, url, params=params).json()
    return body


def _params(base_version: int | None) -> dict[str, Any] | None:
    return {"base_version": int(base_version)} if base_version is not None else None


def file_versions(api: ApiClient, oaio_id: str, path: str) -> dict[str, Any]:
    """``{"oaio_id", "path", "exists", "current_version", "versions": [...]}`` (newest first)."""
    url = protocol.PATH_HISTORY_VERSIONS.format(oaio_id=quote_id(oaio_id), path=quote_path(path))
    return _object(api, "GET", url)


def file_version_bytes(api: ApiClient, oaio_id: str, path: str, version: int) -> bytes:
    """The bytes of kept version ``version`` of ``path``."""
    url = protocol.PATH_HISTORY_BYTES.format(oaio_id=quote_id(oaio_id), version=int(version), path=quote_path(path))
    return api.request("GET", url).content


def restore_file(api: ApiClient, oaio_id: str, path: str, version: int,
                 base_version: int | None = None) -> dict[str, Any]:
    """Commit kept version ``version`` again as a new version; the new ``FileDoc`` (+ ``restored_from``)."""
    url = protocol.PATH_HISTORY_RESTORE.format(oaio_id=quote_id(oaio_id), version=int(version),
                                               path=quote_path(path))
    return _object(api, "POST", url, _params(base_version))


def values_versions(api: ApiClient, oaio_id: str) -> dict[str, Any]:
    """``{"oaio_id", "current_version", "versions": [...]}`` of the object's values (newest first)."""
    return _object(api, "GET", protocol.PATH_HISTORY_VALUES.format(oaio_id=quote_id(oaio_id)))


def values_version(api: ApiClient, oaio_id: str, version: int) -> dict[str, Any]:
    """One kept values version with its ``values``."""
    url = protocol.PATH_HISTORY_VALUES_VERSION.format(oaio_id=quote_id(oaio_id), version=int(version))
    return _object(api, "GET", url)


def restore_values(api: ApiClient, oaio_id: str, version: int, base_version: int | None = None) -> dict[str, Any]:
    """Set kept values version ``version`` again (a new object version); the object document."""
    url = protocol.PATH_HISTORY_VALUES_RESTORE.format(oaio_id=quote_id(oaio_id), version=int(version))
    return _object(api, "POST", url, _params(base_version))
