"""The cart service behind ``/api/v1/carts/{uid}`` (the Pacifica cartd API; its routes are
:mod:`oaiofs.server.routes_carts`).

``POST {uid}`` with ``{"fileids": [{"id", "path", "hashtype", "hashsum"}]}`` makes a cart
of attached files (``id`` = ``"<oaio_id>/<file path>"``, ``path`` = where the file goes in
the bundle). A cart pins the exact blobs its files had when it was made, so a later
overwrite does not change what it serves. Files whose ``sha256`` hashsum equals the
stored one are verified by metadata at once; other hash types (md5, sha1, ...) are
computed from the blob in a background thread. ``HEAD`` reports the status in
``X-Pacifica-Status``/``X-Pacifica-Message`` (and long-polls with ``?wait=S``); ``GET``
streams a deterministic tar with Content-Length and Range; single members are served
at ``/carts/{uid}/files/{path}``. Members keep their stored mode bits and mtime (ns);
a symbolic link is a tar ``SYMTYPE`` member whose target is stored as given (its
"content" for hashsums is the target's UTF-8 bytes; the single-member endpoint
answers 409 for it). Carts are bound to their creator (others get 404),
and every request re-checks the creator's right to read the objects the cart (or the
member) comes from: after an unsubscription or a deletion it answers 403. Carts
expire after ``cart_ttl_s`` without access and are evicted least-recently-used when
the carts of all users pin more than ``cart_quota_bytes``.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from cachetools import LRUCache
from sqlalchemy import CursorResult, delete, insert, select, update

from .. import protocol
from ..errors import Conflict, Forbidden, InvalidValue, NotFound, OaioError
from . import access
from . import db as dbmod
from .models import Cart, CartFile, FileEntry, OaiObject, Subscription, User, utcnow
from .tarlayout import TarLayout, TarMember
from .db import aware
from .state import AppState, transaction

logger = logging.getLogger(__name__)

MAX_CART_FILES = protocol.MAX_CART_FILES
BUILD_BATCH = 1000                        # cart rows read / written per short transaction
BUILD_PAUSE_S = 0.01                      # SQLite: breathing room for other writers between batches
BUILDING_PREFIX = "#building-"            # uid of a cart under construction ('#' is not a valid uid)
STALE_STAGING_S = 600                     # a preparation silent this long is restarted by the purge
TOUCH_EVERY_S = 30                        # a cart's last use is recorded at most this often
_LAYOUTS: LRUCache[tuple[int, float, str], TarLayout] = LRUCache(32)
_LAYOUT_LOCK = threading.Lock()
_CART_OBJECTS: LRUCache[tuple[int, float], tuple[str, ...]] = LRUCache(256)   # a cart's objects never change
RIGHTS_BATCH = 500                        # object ids per rights query
CHECKSUM_FAILED = "checksum mismatch for "   # how the message of a cart failed by a checksum starts
_UID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_HASH_RE = re.compile(r"^[0-9a-fA-F]{8,256}$")
_FILE_KEYS = ("id", "path", "hashtype", "hashsum")


def check_uid(uid: str) -> str:
    """A cart uid is 1-128 characters of ``[A-Za-z0-9._~-]`` (cartd clients use uuid4)."""
    if not _UID_RE.match(uid) or uid in (".", ".."):
        raise InvalidValue("cart uid must be 1-128 characters of letters, digits, '.', '_', '~', '-'")
    return uid


def bundle_path(raw: Any, file_id: str) -> str:
    """The member path of a cart file: cartd drops one leading '/', then it must be a clean relative path."""
    if isinstance(raw, str) and raw.startswith("/"):
        raw = raw[1:]
    try:
        return protocol.normalize_file_path(raw)
    except InvalidValue as exc:
        raise InvalidValue(f"bad bundle path for {file_id!r}: {exc.message}", {"id": file_id}) from None


@dataclass
class FileRequest:
    """One validated entry of ``fileids``."""

    file_id: str
    oaio_id: str
    path: str
    bundle_path: str
    hashtype: str
    hashsum: str


def parse_fileids(body: Any) -> list[FileRequest]:
    """Validate a cartd create body; 422 names the offending entry."""
    if not isinstance(body, dict) or not isinstance(body.get("fileids"), list):
        raise InvalidValue("body must be {\"fileids\": [{\"id\", \"path\", \"hashtype\", \"hashsum\"}, ...]}")
    fileids = body["fileids"]
    if len(fileids) > MAX_CART_FILES:
        raise InvalidValue(f"a cart holds at most {MAX_CART_FILES} files")
    out: list[FileRequest] = []
    seen: set[str] = set()
    for index, entry in enumerate(fileids):
        if not isinstance(entry, dict) or any(k not in entry for k in _FILE_KEYS):
            raise InvalidValue(f"fileids[{index}] must have the keys id, path, hashtype, hashsum",
                               {"index": index})
        file_id = entry["id"]
        if not isinstance(file_id, str):
            raise InvalidValue(f"fileids[{index}].id must be '<oaio_id>/<file path>'", {"index": index})
        oaio_id, path = protocol.split_cart_file_id(file_id)
        hashtype, hashsum = entry["hashtype"], entry["hashsum"]
        if not isinstance(hashtype, str) or hashtype.lower() not in hashlib.algorithms_available:
            raise InvalidValue(f"unknown hashtype {hashtype!r} for {file_id!r}", {"id": file_id})
        if not isinstance(hashsum, str) or not _HASH_RE.match(hashsum):
            raise InvalidValue(f"hashsum of {file_id!r} must be hex", {"id": file_id})
        member = bundle_path(entry["path"], file_id)
        if member in seen:
            raise InvalidValue(f"two files want the bundle path {member!r}", {"id": file_id})
        seen.add(member)
        out.append(FileRequest(file_id, oaio_id, path, member, hashtype.lower(), hashsum.lower()))
    return out


class CartService:
    """Create, prepare, serve, delete and evict carts (blocking; call from threads)."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self.blobs = state.blobs
        self.settings = state.settings

    # creation
    def create(self, user_id: int, uid: str, files: list[FileRequest]) -> str:
        """Make the cart (replacing an older one with the same uid); returns its status.

        Built in batches so that no write lock is held for long: the files are pinned
        in read transactions, the rows are written under a hidden uid in batches of
        ``BUILD_BATCH`` (each its own short transaction), and the finished cart then
        replaces the old one of the same uid in one short transaction.
        """
        pinned = self._pin(user_id, files)
        status, message = self._verify_by_metadata(pinned)
        now = utcnow()
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            cart = Cart(uid=BUILDING_PREFIX + secrets.token_hex(8), user_id=user_id, status=status,
                        message=message, size=sum(f["size"] for f in pinned), created=now, accessed=now,
                        expires=now + dt.timedelta(seconds=self.settings.cart_ttl_s))
            db.add(cart)
            db.flush()
            cart_id = cart.id
        try:
            for start in range(0, len(pinned), BUILD_BATCH):
                self._pause_between_batches(start)
                with transaction(self.state) as db:
                    dbmod.lock_for_write(db)
                    db.execute(insert(CartFile), [dict(row, cart_id=cart_id)
                                                  for row in pinned[start:start + BUILD_BATCH]])
            with transaction(self.state) as db:
                dbmod.lock_for_write(db)
                old = list(db.scalars(select(Cart.id).where(Cart.user_id == user_id, Cart.uid == uid)))
                db.execute(update(Cart).where(Cart.id.in_(old)).values(uid=BUILDING_PREFIX + "old"))
                db.execute(update(Cart).where(Cart.id == cart_id).values(uid=uid))
        except BaseException:
            self.drop_carts([cart_id])
            raise
        self.drop_carts(old)
        self.evict_over_quota(keep=cart_id)
        if status == protocol.CART_STAGING:
            self.start_preparing(cart_id)
        logger.info("cart %s of user %d: %d files, %s", uid, user_id, len(files), status)
        return status

    def _pause_between_batches(self, start: int) -> None:
        if start and dbmod.is_sqlite(self.state.engine):
            time.sleep(BUILD_PAUSE_S)

    def drop_carts(self, cart_ids: list[int]) -> None:
        """Delete carts, their members in batches (no long write lock for a big cart)."""
        for cart_id in cart_ids:
            while True:
                with transaction(self.state) as db:
                    dbmod.lock_for_write(db)
                    batch = list(db.scalars(select(CartFile.id).where(CartFile.cart_id == cart_id)
                                            .limit(BUILD_BATCH)))
                    if not batch:
                        db.execute(delete(Cart).where(Cart.id == cart_id))
                        break
                    db.execute(delete(CartFile).where(CartFile.id.in_(batch)))
                self._pause_between_batches(1)

    def _pin(self, user_id: int, files: list[FileRequest]) -> list[dict[str, Any]]:
        """Cart rows pinned to the current blobs of readable files (404 names the first missing one).

        Read-only: objects are checked one by one, their entries looked up ``BUILD_BATCH`` paths at a time.
        """
        by_object: dict[str, list[FileRequest]] = {}
        for req in files:
            by_object.setdefault(req.oaio_id, []).append(req)
        entries: dict[tuple[str, str], tuple[Any, ...]] = {}
        with transaction(self.state) as db:
            user = db.get_one(User, user_id)
            for oaio_id, reqs in by_object.items():
                try:
                    obj, _right = access.load_object(db, user, oaio_id, "read")
                except OaioError as exc:
                    raise type(exc)(f"cannot add {reqs[0].file_id!r}: {exc.message}",
                                    {"id": reqs[0].file_id}) from None
                paths = sorted({r.path for r in reqs})
                for start in range(0, len(paths), BUILD_BATCH):
                    for row in db.execute(select(FileEntry.path, FileEntry.kind, FileEntry.blob_key, FileEntry.size,
                                                 FileEntry.sha256, FileEntry.mtime, FileEntry.version,
                                                 FileEntry.mode, FileEntry.mtime_ns, FileEntry.target)
                                          .where(FileEntry.object_id == obj.id,
                                                 FileEntry.path.in_(paths[start:start + BUILD_BATCH]))):
                        entries[(oaio_id, row.path)] = tuple(row)
        return [pin_row(req, entries.get((req.oaio_id, req.path))) for req in files]

    @staticmethod
    def _verify_by_metadata(files: list[dict[str, Any]]) -> tuple[str, str]:
        """Settle every sha256 request from the stored hash; the cart is ready if nothing is left."""
        pending = False
        for f in files:
            if f["hashtype"] != "sha256":
                pending = True
                continue
            if f["hashsum"] != f["sha256"]:
                f["status"], f["message"] = protocol.CART_ERROR, "sha256 does not match the stored file"
                return protocol.CART_ERROR, f"{CHECKSUM_FAILED}{f['file_id']}: sha256 is {f['sha256']}"
            f["status"] = protocol.CART_READY
        return (protocol.CART_STAGING, "") if pending else (protocol.CART_READY, "")

    # background preparation (hash types other than sha256)
    def start_preparing(self, cart_id: int) -> None:
        threading.Thread(target=self.prepare, args=(cart_id,), name=f"cart-{cart_id}", daemon=True).start()

    def prepare(self, cart_id: int) -> None:
        """Hash the pinned blobs whose requested hash type is not sha256; set ready or error."""
        try:
            with transaction(self.state) as db:
                todo = [(f.id, f.file_id, f.blob_key, f.hashtype, f.hashsum, f.target if f.kind == "link" else None)
                        for f in db.scalars(select(CartFile).where(CartFile.cart_id == cart_id,
                                                                   CartFile.status != protocol.CART_READY))]
            for row_id, file_id, key, hashtype, hashsum, target in todo:
                hasher = hashlib.new(hashtype)
                pieces = [target.encode("utf-8")] if target is not None else self.blobs.open_range(key, 0, None)
                for piece in pieces:
                    hasher.update(piece)
                ok = hasher.hexdigest() == hashsum
                with transaction(self.state) as db:
                    db.execute(update(CartFile).where(CartFile.id == row_id).values(
                        status=protocol.CART_READY if ok else protocol.CART_ERROR,
                        message="" if ok else f"{hashtype} does not match"))
                    db.execute(update(Cart).where(Cart.id == cart_id).values(accessed=utcnow()))
                    if not ok:
                        db.execute(update(Cart).where(Cart.id == cart_id).values(
                            status=protocol.CART_ERROR,
                            message=f"{CHECKSUM_FAILED}{file_id}: {hashtype} is {hasher.hexdigest()}"))
                if not ok:
                    return
            self._set_status(cart_id, protocol.CART_READY, "")
        except Exception as exc:  # noqa: BLE001 - a failed preparation becomes the cart's error status
            logger.exception("cart %d: preparation failed", cart_id)
            self._set_status(cart_id, protocol.CART_ERROR, f"preparation failed: {exc}")

    def _set_status(self, cart_id: int, status: str, message: str) -> None:
        with transaction(self.state) as db:
            db.execute(update(Cart).where(Cart.id == cart_id).values(status=status, message=message))

    # reading
    def get(self, user_id: int, uid: str, *, touch: bool = False, member: str | None = None,
            check_rights: bool = True) -> tuple[Cart, CartFile | None]:
        """The caller's cart (404 for unknown uids and other users' carts) and, if asked, one member.

        ``check_rights`` re-checks that the caller may still read every object the cart
        (or just ``member``) comes from: a revoked subscription or a deleted object
        answers 403. ``touch`` marks the cart used (for LRU eviction and expiry), at
        most once per ``TOUCH_EVERY_S`` so that ranged reads do not each write.
        """
        with transaction(self.state) as db:
            cart = db.scalar(select(Cart).where(Cart.user_id == user_id, Cart.uid == uid))
            if cart is None:
                raise NotFound(f"no cart {uid!r}", {"uid": uid})
            found = None
            if member is not None:
                found = db.scalar(select(CartFile).where(CartFile.cart_id == cart.id,
                                                         CartFile.bundle_path == member))
                if found is None:
                    raise NotFound(f"no member {member!r} in cart {uid!r}", {"uid": uid, "path": member})
            if check_rights:
                oaio_ids = (found.oaio_id,) if found is not None else self._cart_objects(db, cart)
                self._check_rights(db, user_id, uid, oaio_ids)
            now = utcnow()
            if touch and aware(cart.accessed) < now - dt.timedelta(seconds=TOUCH_EVERY_S):
                dbmod.lock_for_write(db)
                cart.accessed = now
                cart.expires = now + dt.timedelta(seconds=self.settings.cart_ttl_s)
            return cart, found

    @staticmethod
    def _cart_objects(db: Any, cart: Cart) -> tuple[str, ...]:
        """The ids of the objects ``cart``'s members come from (cached: a made cart never changes)."""
        key = (cart.id, aware(cart.created).timestamp())
        with _LAYOUT_LOCK:
            cached = _CART_OBJECTS.get(key)
        if cached is None:
            cached = tuple(db.scalars(select(CartFile.oaio_id).where(CartFile.cart_id == cart.id).distinct()))
            with _LAYOUT_LOCK:
                _CART_OBJECTS[key] = cached
        return cached

    @staticmethod
    def _check_rights(db: Any, user_id: int, uid: str, oaio_ids: tuple[str, ...]) -> None:
        """403 unless ``user_id`` is still subscribed to every one of ``oaio_ids`` and none is deleted."""
        readable: set[str] = set()
        for start in range(0, len(oaio_ids), RIGHTS_BATCH):
            batch = oaio_ids[start:start + RIGHTS_BATCH]
            readable.update(db.scalars(
                select(OaiObject.oaio_id).join(Subscription, Subscription.object_id == OaiObject.id)
                .where(OaiObject.oaio_id.in_(batch), Subscription.user_id == user_id,
                       OaiObject.deleted.is_(None))))
        lost = [oaio_id for oaio_id in oaio_ids if oaio_id not in readable]
        if lost:
            raise Forbidden(f"cart {uid!r} holds files of {lost[0]!r}, which you may no longer read "
                            "(unsubscribed or deleted)", {"uid": uid, "oaio_id": lost[0], "count": len(lost)})

    def ready_cart(self, user_id: int, uid: str, member: str | None = None) -> tuple[Cart, CartFile | None]:
        """The caller's cart (and member), touched; a failed cart raises ``Conflict`` naming the failure."""
        cart, found = self.get(user_id, uid, touch=True, member=member)
        if cart.status == protocol.CART_ERROR:
            raise Conflict(f"cart {uid!r} failed: {cart.message}", {"uid": uid, "message": cart.message})
        return cart, found

    def layout(self, cart: Cart, top: str) -> TarLayout:
        """The cart's tar layout under ``top`` (cached: ranged reads of one cart reuse it)."""
        key = (cart.id, aware(cart.created).timestamp(), top)
        with _LAYOUT_LOCK:
            cached = _LAYOUTS.get(key)
        if cached is None:
            with transaction(self.state) as db:
                files = list(db.scalars(select(CartFile).where(CartFile.cart_id == cart.id).order_by(CartFile.id)))
            cached = tar_layout(files, top)
            with _LAYOUT_LOCK:
                _LAYOUTS[key] = cached
        return cached

    def delete(self, user_id: int, uid: str) -> None:
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            ids = list(db.scalars(select(Cart.id).where(Cart.user_id == user_id, Cart.uid == uid)))
            if not ids:
                raise NotFound(f"no cart {uid!r}", {"uid": uid})
            db.execute(update(Cart).where(Cart.id.in_(ids)).values(uid=BUILDING_PREFIX + "deleted"))
        self.drop_carts(ids)

    # eviction and expiry
    def evict_over_quota(self, keep: int | None = None) -> int:
        """Delete least-recently-used carts while all carts together pin more than the quota."""
        evicted = 0
        quota = self.settings.cart_quota_bytes
        with transaction(self.state) as db:
            dbmod.lock_for_write(db)
            # The total and the candidates come from ONE statement (one snapshot): on
            # PostgreSQL (READ COMMITTED, no write lock) a sum read before a concurrent
            # eviction committed, with candidates read after it, evicted the kept newest
            # cart too (issue 11: both carts of test_carts_are_evicted_over_quota_and_expire).
            carts = db.execute(select(Cart.id, Cart.size, Cart.uid).order_by(Cart.accessed)).all()
            total = sum(size for _, size, _uid in carts)
            for cart_id, size, uid in carts:
                if total <= quota:
                    break
                if cart_id == keep or uid.startswith(BUILDING_PREFIX):    # never one being built
                    continue
                # A cart a concurrent eviction already took counts as gone all the same.
                evicted += cast("CursorResult[Any]", db.execute(delete(Cart).where(Cart.id == cart_id))).rowcount or 0
                total -= size
        if evicted:
            logger.info("evicted %d least-recently-used carts over the quota", evicted)
        return evicted

    def purge_expired(self) -> int:
        """Drop expired carts, enforce the quota, restart preparations that went silent."""
        now = utcnow()
        with transaction(self.state) as db:
            expired = cast("CursorResult[Any]", db.execute(delete(Cart).where(Cart.expires < now))).rowcount
            stale = list(db.scalars(select(Cart.id).where(
                Cart.status == protocol.CART_STAGING,
                Cart.accessed < now - dt.timedelta(seconds=STALE_STAGING_S))))
            if stale:
                db.execute(update(Cart).where(Cart.id.in_(stale)).values(accessed=now))
        for cart_id in stale:
            self.start_preparing(cart_id)
        return (expired or 0) + self.evict_over_quota()


def purge_expired(state: AppState) -> int:
    """Hook for the server's periodic purge (also run at start-up)."""
    if state.blobs is None:
        return 0
    return CartService(state).purge_expired()


def pin_row(req: FileRequest, entry: tuple[Any, ...] | None) -> dict[str, Any]:
    """The cart row of ``req`` pinned to ``entry`` (a file with a blob, or a link); 404 for anything else."""
    if entry is None or not (entry[1] == protocol.KIND_FILE and entry[2] or entry[1] == protocol.KIND_LINK):
        raise NotFound(f"no file {req.file_id!r}", {"id": req.file_id})
    _path, kind, key, size, sha, mtime, version, mode, mtime_ns, target = entry
    if kind == protocol.KIND_LINK:
        key, size, sha = None, 0, link_sha256(target or "")
    return {"file_id": req.file_id, "bundle_path": req.bundle_path, "oaio_id": req.oaio_id,
            "path": req.path, "blob_key": key, "size": size, "sha256": sha,
            "hashtype": req.hashtype, "hashsum": req.hashsum, "mtime": mtime,
            "version": version, "status": protocol.CART_STAGING, "message": "",
            "kind": kind, "mode": mode, "mtime_ns": mtime_ns or 0,
            "target": target if kind == protocol.KIND_LINK else None}


def link_sha256(target: str) -> str:
    """What a link's hashsum is computed over: its target's UTF-8 bytes."""
    return hashlib.sha256(target.encode("utf-8")).hexdigest()


def tar_member(f: CartFile, top: str) -> TarMember:
    """The tar member of one cart row (old rows: mode 0644, float mtime)."""
    link = f.kind == protocol.KIND_LINK
    return TarMember(name=f"{top}/{f.bundle_path}", size=0 if link else f.size, mtime=f.mtime,
                     blob_key=f.blob_key or "", sha256=f.sha256,
                     mode=protocol.LINK_MODE if link else (f.mode if f.mode is not None else 0o644),
                     mtime_ns=f.mtime_ns or None, target=(f.target or "") if link else None)


def tar_layout(files: list[CartFile], top: str) -> TarLayout:
    """The deterministic tar of cart members under the folder ``top``."""
    return TarLayout([tar_member(f, top) for f in files])


def tar_names(filename: str | None) -> tuple[str, str]:
    """(download name, top folder of every member) for ``?filename=``: ``x.tar`` -> ``x/...``.

    The top folder must be one clean path component: no ``/`` or ``\\``, not ``.`` or
    ``..`` (``...tar`` would make members ``../…``), no control characters (422 otherwise).
    """
    name = filename or utcnow().strftime("data_%Y_%m_%d_%H_%M_%S.tar")
    top = name[:-4] if name.endswith(".tar") and len(name) > 4 else name
    try:
        if "/" in top:
            raise InvalidValue("has a '/'")
        if top != protocol.VALUES_FILE:          # reserved inside objects only
            protocol.normalize_file_path(top)
    except InvalidValue:
        raise InvalidValue("filename must be a plain file name (no '/', '\\', '.', '..' or control characters)",
                           {"filename": name[:100]}) from None
    return name, top
