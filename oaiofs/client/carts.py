"""``CartDownloader``: fetch many attached files at once through a server cart.

``create`` posts a cartd cart, ``wait`` long-polls its status (one request per
up to 60 s instead of cartd's 1-second polling), ``download`` streams the cart's
tar straight to disk: every member is checked against a safe relative path (no
absolute paths, ``..``, hard links or devices), written to ``<name>.part``, verified
against the sha256 the server put in the member's PAX header (and the hashsum
asked for, if this downloader made the cart) and only then renamed into place
with the member's mode bits and mtime (ns). Symbolic link members become links
(their checksum is over the target's bytes) unless the target is absolute or
leads outside ``dest_dir`` (also through other links): those are not created but
listed in :attr:`CartDownloader.refused_links`. Nothing is ever written through
a link (:mod:`oaiofs.client.safe_links`).
A cut connection resumes with HTTP Range: the member being written continues
from its last byte via the single-member endpoint, the tar from the next member.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import tarfile
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import unquote

import requests
import urllib3
from cachetools import LRUCache

from .. import protocol
from ..errors import ChecksumMismatch, InvalidValue, Unavailable, error_from_response
from .api import ApiClient, quote_id, quote_path
from .safe_links import escaped, place_link, prepare_parent
from .tarstream import TarStream, mtime_ns

log = logging.getLogger(__name__)

TOP = "data"                              # the tar's top folder (cartd names it after ?filename)
PAX_SHA256 = "OAIO.sha256"
COPY_PIECE = 1 << 20
VERIFIED_KEPT = 4096                      # checked sha256s remembered for take_verified_sha256
_TRANSPORT_ERRORS = (Unavailable, requests.RequestException, urllib3.exceptions.HTTPError, tarfile.ReadError,
                     ConnectionError, TimeoutError)


def cart_entry(oaio_id: str, path: str, sha256: str, bundle_path: str | None = None) -> dict[str, str]:
    """One ``fileids`` entry: the file ``path`` of ``oaio_id``, placed at ``bundle_path`` (default: ``path``)."""
    return {"id": protocol.cart_file_id(oaio_id, path), "path": bundle_path or path,
            "hashtype": "sha256", "hashsum": sha256}


def member_path(name: str) -> str:
    """The safe relative path of tar member ``name`` under the top folder, else ``InvalidValue``."""
    prefix = TOP + "/"
    if not name.startswith(prefix):
        raise InvalidValue(f"tar member {name[:200]!r} is outside {prefix!r}")
    return protocol.normalize_file_path(name[len(prefix):])


@dataclass
class _Partial:
    """A member whose bytes stopped arriving mid-way."""

    rel: str
    size: int
    mtime: float
    sha256: str | None
    next_pos: int                          # tar offset of the member after it
    mode: int | None = None                # permission bits of the member (None: leave as created)
    mtime_ns: int | None = None            # exact mtime (None: ``mtime``)


@dataclass
class _Progress:
    """Where a cart download stands: the next member header, or a member cut mid-way."""

    pos: int = 0
    partial: _Partial | None = None


class CartDownloader:
    """Creates, waits for, downloads and deletes carts through one :class:`ApiClient`."""

    def __init__(self, api: ApiClient, max_attempts: int = 8, backoff_cap_s: float = 30.0,
                 backoff_base_s: float = 0.25, keep_modes: bool = True) -> None:
        """``keep_modes=False``: files keep the mode they were created with (a cache needs rw files)."""
        self.api = api
        self.keep_modes = keep_modes
        self.max_attempts = max_attempts
        self.backoff_cap_s = backoff_cap_s
        self.backoff_base_s = backoff_base_s
        self.bytes_received = 0            # body bytes read by this downloader (for tests/stats)
        self._expected: dict[str, dict[str, tuple[str, str]]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cart-write")
        self._verified: LRUCache[Path, str] = LRUCache(VERIFIED_KEPT)
        self._verified_lock = threading.Lock()
        self.refused_links: list[tuple[str, str, str]] = []   # (member path, target, why) of the last download

    def _count(self, size: int) -> None:
        self.bytes_received += size

    def _cart_path(self, uid: str) -> str:
        return protocol.PATH_CART.format(uid=quote_id(uid))

    # --- cartd calls ---
    def create(self, fileids: Iterable[dict[str, Any]], uid: str | None = None) -> str:
        """Post a cart of ``fileids`` (see :func:`cart_entry`); returns its uid."""
        uid = uid or uuid.uuid4().hex
        entries = list(fileids)
        self.api.request("POST", self._cart_path(uid), json={"fileids": entries}, expect=(201,)).close()
        self._expected[uid] = {str(e["path"]).lstrip("/"): (str(e["hashtype"]).lower(), str(e["hashsum"]).lower())
                               for e in entries}
        return uid

    def _head(self, uid: str, wait: float = 0.0) -> requests.Response:
        params = {protocol.CART_WAIT_PARAM: wait} if wait else None
        timeout = (5, wait + 30) if wait else None
        resp = self.api.request("HEAD", self._cart_path(uid), params=params, timeout=timeout, expect=(204, 500))
        resp.close()
        return resp

    def status(self, uid: str, wait: float = 0.0) -> tuple[str, str]:
        """``(status, message)`` of a cart; ``wait`` long-polls until it is ready or failed."""
        resp = self._head(uid, wait)
        return (resp.headers.get(protocol.CART_STATUS_HEADER, ""),
                unquote(resp.headers.get(protocol.CART_MESSAGE_HEADER, "")))

    def wait(self, uid: str, timeout: float = 300.0) -> str:
        """Block until the cart is ready (returns ``"ready"``); a failed cart raises its error."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            resp = self._head(uid, wait=max(0.0, min(remaining, protocol.MAX_CART_WAIT_S)))
            status = resp.headers.get(protocol.CART_STATUS_HEADER, "")
            if status == protocol.CART_READY:
                return status
            if status == protocol.CART_ERROR:
                message = unquote(resp.headers.get(protocol.CART_MESSAGE_HEADER, ""))
                code = resp.headers.get(protocol.CART_ERROR_CODE_HEADER, "internal")
                raise error_from_response(500, {"error": code, "message": f"cart {uid} failed: {message}",
                                                "detail": {"uid": uid}})
            if time.monotonic() >= deadline:
                raise Unavailable(f"cart {uid} is still {status} after {timeout:.0f}s", {"uid": uid})

    def open_member(self, uid: str, path: str, start: int = 0, end: int | None = None) -> requests.Response:
        """A streaming response with bytes ``[start, end)`` of one cart member."""
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        path_url = protocol.PATH_CART_FILE.format(uid=quote_id(uid), path=quote_path(path))
        return self.api.request("GET", path_url, headers=headers, stream=True, expect=(200, 206))

    @contextlib.contextmanager
    def member_pieces(self, uid: str, path: str, start: int = 0, end: int | None = None,
                      piece_bytes: int = 1 << 20) -> Iterator[Iterator[bytes | memoryview]]:
        """Bytes ``[start, end)`` of one cart member as pieces of at most ``piece_bytes`` (read into
        one reused buffer: each piece is valid until the next); the response is closed on exit.
        ``NotFound`` (cart expired) and other errors are raised on entering, before any byte."""
        resp = self.open_member(uid, path, start, end)
        try:
            yield _pieces(resp.raw, piece_bytes)
        finally:
            resp.close()

    def delete(self, uid: str) -> None:
        """Free the cart on the server."""
        self.api.request("DELETE", self._cart_path(uid), expect=(200,)).close()
        self._expected.pop(uid, None)

    def fetch(self, fileids: Iterable[dict[str, Any]], dest_dir: str | os.PathLike[str],
              timeout: float = 300.0) -> list[Path]:
        """Create, wait for, download and delete a cart in one call."""
        uid = self.create(fileids)
        try:
            self.wait(uid, timeout)
            return self.download(uid, dest_dir)
        finally:
            self.delete(uid)

    # --- download ---
    def download(self, uid: str, dest_dir: str | os.PathLike[str], verify: bool = True,
                 on_progress: Callable[[int], None] | None = None) -> list[Path]:
        """Stream the cart into ``dest_dir`` (files at their bundle paths); returns the written files."""
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        progress = _Progress()
        failures = 0
        self.refused_links = []
        while True:
            try:
                if progress.partial is not None:
                    written.append(self._finish_partial(uid, dest, progress.partial, verify))
                    progress.pos, progress.partial = progress.partial.next_pos, None
                if self._stream_tar(uid, dest, progress, verify, written, on_progress):
                    return self._drop_escaped_links(dest, written)
            except _TRANSPORT_ERRORS as exc:
                failures += 1
                if failures >= self.max_attempts:
                    raise Unavailable(f"cart {uid} download failed: {exc}", {"uid": uid}) from None
                delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (failures - 1)) * random.uniform(0.5, 1)
                log.info("cart %s: download interrupted (%s); resuming at byte %d in %.2fs",
                         uid, exc, progress.pos, delay)
                time.sleep(delay)

    def _stream_tar(self, uid: str, dest: Path, progress: _Progress, verify: bool, written: list[Path],
                    on_progress: Callable[[int], None] | None) -> bool:
        """Extract the tar from byte ``progress.pos`` on; False if the cart was not ready yet."""
        base = progress.pos
        headers = {"Range": f"bytes={base}-"} if base else {}
        resp = self.api.request("GET", self._cart_path(uid), params={"filename": TOP + ".tar"}, headers=headers,
                                stream=True, expect=(200, 206, 202))
        with resp:
            if resp.status_code == 202:
                self.wait(uid)
                return False
            if base and resp.status_code == 200:
                raise InvalidValue("the server ignored the Range request of a cart download")
            stream = TarStream(resp.raw, on_bytes=self._count)
            for member, _header_at in stream:
                rel = member_path(member.name)
                if member.issym():
                    link = self._make_link(uid, dest, rel, member, verify)
                    if link is not None:
                        written.append(link)
                    progress.pos = base + member.offset_data
                    continue
                if not member.isreg():
                    raise InvalidValue(f"tar member {member.name!r} is not a regular file or link")
                padded = -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                info = _Partial(rel, member.size, float(member.mtime), member.pax_headers.get(PAX_SHA256),
                                base + member.offset_data + padded, member.mode if self.keep_modes else None,
                                mtime_ns(member))
                try:
                    written.append(self._write_member(uid, dest, info, stream, verify))
                except _TRANSPORT_ERRORS:
                    progress.partial = info
                    raise
                progress.pos = info.next_pos
                if on_progress is not None:
                    on_progress(len(written))
        return True

    def _make_link(self, uid: str, dest: Path, rel: str, member: tarfile.TarInfo, verify: bool) -> Path | None:
        """Create the link of a ``SYMTYPE`` member (checked like a file's bytes); None if refused."""
        target = member.linkname
        if verify:
            digest = target.encode("utf-8", "surrogateescape")
            asked = self._expected.get(uid, {}).get(rel)
            wanted = {member.pax_headers[PAX_SHA256]} if member.pax_headers.get(PAX_SHA256) else set()
            got = {"sha256": hashlib.sha256(digest).hexdigest()}
            if asked and asked[0] in hashlib.algorithms_available:
                got[asked[0]] = hashlib.new(asked[0], digest).hexdigest()
                if asked[0] != "sha256" and got[asked[0]] != asked[1]:
                    raise ChecksumMismatch(f"{rel}: {asked[0]} is {got[asked[0]]}, expected {asked[1]}",
                                           {"path": rel, "hashtype": asked[0]})
                if asked[0] == "sha256":
                    wanted.add(asked[1])
            if wanted and wanted != {got["sha256"]}:
                raise ChecksumMismatch(f"{rel}: sha256 is {got['sha256']}, expected {' and '.join(sorted(wanted))}",
                                       {"path": rel, "hashtype": "sha256"})
        try:
            place_link(dest, rel, target)
        except InvalidValue as exc:
            self.refused_links.append((rel, target, exc.message))
            log.warning("cart %s: link %r -> %r not created: %s", uid, rel, target[:200], exc.message)
            return None
        link = dest / rel
        when = mtime_ns(member)
        with contextlib.suppress(OSError, NotImplementedError):
            os.utime(link, ns=(when, when), follow_symlinks=False)
        return link

    def _drop_escaped_links(self, dest: Path, written: list[Path]) -> list[Path]:
        """Remove links that lead outside ``dest`` through other links (each is fine by its name alone)."""
        links = [p for p in written if p.is_symlink()]
        bad = set(escaped(dest, links))
        for link in bad:
            target = os.readlink(link)
            link.unlink()
            rel = link.relative_to(dest).as_posix()
            self.refused_links.append((rel, target, "link target leads outside the folder through other links"))
            log.warning("link %r -> %r removed: it leads outside %s through other links", rel, target[:200], dest)
        return [p for p in written if p not in bad]

    def _write_member(self, uid: str, dest: Path, info: _Partial, source: TarStream,
                      verify: bool) -> Path:
        """Copy one member from the tar stream to ``<name>.part``, hashing on the way."""
        target = prepare_parent(dest, info.rel)
        part = target.with_name(target.name + ".part")
        hashers = self._hashers(uid, info) if verify else {}

        def consume(piece: bytes) -> None:
            out.write(piece)
            for hasher in hashers.values():
                hasher.update(piece)

        with _open_part(part, truncate=True) as out:
            if info.size <= COPY_PIECE:              # small: one piece, a thread hop would cost more than it hides
                while piece := source.read(COPY_PIECE):
                    consume(piece)
            else:
                pending: Future[None] | None = None  # writing+hashing one piece overlaps receiving the next
                try:
                    while piece := source.read(COPY_PIECE):
                        if pending is not None:
                            pending.result()
                        pending = self._pool.submit(consume, piece)
                finally:
                    if pending is not None:
                        pending.result()
        return self._finalize(uid, target, part, info, hashers if verify else None)

    def _finish_partial(self, uid: str, dest: Path, info: _Partial, verify: bool) -> Path:
        """Continue a member cut mid-way with a Range request for its missing tail."""
        target = prepare_parent(dest, info.rel)
        part = target.with_name(target.name + ".part")
        have = part.stat().st_size if part.exists() and not part.is_symlink() else 0
        if have > info.size:
            part.unlink()
            have = 0
        if have < info.size:
            with self.open_member(uid, info.rel, start=have) as resp, _open_part(part, truncate=not have) as out:
                if resp.status_code == 200 and have:
                    out.truncate(0)         # the server ignored the range: take the whole body
                for piece in resp.iter_content(COPY_PIECE):
                    self.bytes_received += len(piece)
                    out.write(piece)
            log.info("cart %s: resumed %s at byte %d", uid, info.rel, have)
        hashers = None
        if verify:                          # the bytes came in two parts: hash the whole file once
            hashers = self._hashers(uid, info)
            with open(part, "rb") as handle:
                for piece in iter(lambda: handle.read(COPY_PIECE), b""):
                    for hasher in hashers.values():
                        hasher.update(piece)
        return self._finalize(uid, target, part, info, hashers)

    def _hashers(self, uid: str, info: _Partial) -> dict[str, Any]:
        """Hashers for the checksums known for a member: the server's sha256, the hashsum asked for."""
        names = {"sha256"} if info.sha256 else set()
        hashtype, _hashsum = self._expected.get(uid, {}).get(info.rel, ("", ""))
        if hashtype in hashlib.algorithms_available:
            names.add(hashtype)
        return {name: hashlib.new(name) for name in names}

    def _finalize(self, uid: str, target: Path, part: Path, info: _Partial,
                  hashers: dict[str, Any] | None) -> Path:
        """Check size and checksums of a ``.part`` file, then move it into place."""
        size = part.stat().st_size
        if size != info.size:
            raise tarfile.ReadError(f"{info.rel}: got {size} of {info.size} bytes")
        asked = self._expected.get(uid, {}).get(info.rel)
        for name, hasher in (hashers or {}).items():
            wanted = {asked[1]} if asked and asked[0] == name else set()
            if name == "sha256" and info.sha256:
                wanted.add(info.sha256)
            if wanted != {hasher.hexdigest()}:
                part.unlink(missing_ok=True)
                raise ChecksumMismatch(f"{info.rel}: {name} is {hasher.hexdigest()}, expected "
                                       f"{' and '.join(sorted(wanted))}", {"path": info.rel, "hashtype": name})
        if info.mode is not None:
            os.chmod(part, info.mode & 0o777)
        os.replace(part, target)             # replaces a link at ``target``, never writes through it
        if info.mtime_ns is not None:
            os.utime(target, ns=(info.mtime_ns, info.mtime_ns))
        else:
            os.utime(target, (info.mtime, info.mtime))
        if hashers and "sha256" in hashers:
            with self._verified_lock:
                self._verified[target] = hashers["sha256"].hexdigest()
        return target

    def take_verified_sha256(self, path: str | os.PathLike[str]) -> str | None:
        """The sha256 checked while streaming the file this downloader installed at ``path`` (once), or None.

        Lets a caller skip re-reading a just-downloaded file to hash it; only the
        most recent :data:`VERIFIED_KEPT` files are remembered.
        """
        with self._verified_lock:
            return self._verified.pop(Path(path), None)


def _open_part(part: Path, *, truncate: bool) -> Any:
    """Open a ``.part`` file for writing (appending unless ``truncate``) without following a link there."""
    if part.is_symlink():
        part.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if truncate else os.O_APPEND)
    return os.fdopen(os.open(part, flags, 0o600), "wb" if truncate else "ab")


def _pieces(raw: Any, size: int) -> Iterator[memoryview]:
    """Read the body into one reused buffer (no allocation per piece); each piece is valid until the next."""
    buf = bytearray(size)
    view = memoryview(buf)
    while True:
        filled = 0
        while filled < size:
            n = raw.readinto(view[filled:])
            if not n:
                break
            filled += n
        if not filled:
            return
        yield view[:filled]
        if filled < size:
            return
