"""``OaiofsApi``: the ``ae.cloud_storage`` storage class (csh id ``Oaiofs``) that keeps files in oaiofs.

Import this module in an ``ae.oaio_client`` app and pass ``csh_default_id='Oaiofs'``::

    import oaiofs.compat.ae_storage            # registers the csh id 'Oaiofs'
    client = OaioClient("127.0.0.1:8470", {"username": ..., "password": ...}, csh_default_id="Oaiofs")

The client fetches ``csh_args/Oaiofs`` from the oaio server before every file
transfer; oaiofs answers ``{"base_url", "token"}`` with a short-lived token of
the logged-in user, so no storage account is shared. Files deployed at
``<oaio_id>/<stamp>/<path>`` become the object's attached files (visible on the
drive and through ``/api/v1``). Needs the optional extra ``oaiofs[ae]``; this is
the only oaiofs module that imports ``ae.*``.
"""
from __future__ import annotations

import logging
from typing import Optional
from urllib.parse import quote

import requests
from ae.cloud_storage import CshApiBase  # type: ignore[import-untyped]

log = logging.getLogger(__name__)
TIMEOUT = (10, 300)          # connect, read (seconds)
STORAGE_PATH = "/api/csh/files/"


class OaiofsApi(CshApiBase):
    """Deploy, fetch and delete the files of oaio versions on an oaiofs server."""

    def __init__(self, base_url: str = "", token: str = "", **csh_args):
        super().__init__(**csh_args)
        if not base_url.startswith(("http://", "https://")) or not token:
            raise ValueError("OaiofsApi needs the base_url and token that csh_args/Oaiofs hands out")
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = "Bearer " + token

    def _url(self, file_path: str) -> str:
        return self.base_url + STORAGE_PATH + quote(file_path.replace("\\", "/").strip("/"), safe="/")

    def _request(self, method: str, file_path: str, **kwargs) -> Optional[requests.Response]:
        url = self._url(file_path)
        try:
            res = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            self.error_message = f"{method} {file_path!r}: {exc}"
            return None
        if not res.ok:
            try:
                detail = res.json().get("message", "")
            except ValueError:
                detail = res.text[:200]
            self.error_message = f"{method} {file_path!r}: HTTP {res.status_code} {detail}"
            return None
        self.error_message = ""
        return res

    def deployed_file_content(self, file_path: str) -> Optional[bytes]:
        """The bytes of a deployed file (None on error, see ``error_message``)."""
        res = self._request("GET", file_path)
        return res.content if res is not None else None

    def deploy_file(self, file_path: str, source_path: str = "") -> str:
        """Upload ``source_path`` (default ``file_path``) as ``file_path``; returns it, or '' on error."""
        try:
            with open(source_path or file_path, "rb") as source:
                res = self._request("PUT", file_path, data=source)
        except OSError as exc:
            self.error_message = f"error reading the source file {source_path or file_path!r}: {exc}"
            return ""
        return file_path if res is not None else ""

    def delete_file_or_folder(self, file_path: str) -> str:
        """Drop staged files under ``file_path``; '' on success, else the error message."""
        res = self._request("DELETE", file_path)
        return "" if res is not None else self.error_message

    def __del__(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.close()
