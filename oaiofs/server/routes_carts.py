"""The cart routes at ``/api/v1/carts/{uid}`` (the Pacifica cartd API; HTTP only, the rules are
:mod:`oaiofs.server.carts`).

``POST`` creates a cart, ``HEAD`` reports its status in ``X-Pacifica-Status``/``X-Pacifica-Message``
(``?wait=S`` long-polls without holding an admission slot), ``GET`` streams the tar (Range supported),
``GET``/``HEAD`` of ``/files/{path}`` serves one member and ``DELETE`` frees the cart.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from .. import protocol
from ..errors import Conflict
from .admission import release_slot, run_in_slot
from .byteranges import blob_response, ranged_response
from .carts import CHECKSUM_FAILED, CartService, FileRequest, check_uid, parse_fileids, tar_names
from .deps import authenticate
from .models import Cart
from .state import transfer_state

router = APIRouter(tags=["carts"])
CART_FILE_ROUTE = protocol.PATH_CART_FILE.replace("{path}", "{path:path}")
_HEADER_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) != "%")


def header_text(text: str) -> str:
    """``text`` as a header value: printable ASCII kept, everything else percent-encoded (UTF-8)."""
    return quote(text, safe=_HEADER_SAFE)


def _status_headers(cart: Cart) -> dict[str, str]:
    headers = {protocol.CART_STATUS_HEADER: cart.status, protocol.CART_MESSAGE_HEADER: header_text(cart.message)}
    if cart.status == protocol.CART_ERROR:
        failed_checksum = cart.message.startswith(CHECKSUM_FAILED)
        headers[protocol.CART_ERROR_CODE_HEADER] = "checksum_mismatch" if failed_checksum else "internal"
    return headers


def _cart_service(request: Request) -> CartService:
    return CartService(transfer_state(request))


def _parse_body(raw: bytes) -> list[FileRequest]:
    """Decode and validate a create body (in a worker thread: big carts take a while).

    The strict JSON rules of the other API bodies apply (``protocol.load_json_body``): UTF-8,
    finite numbers, no lone surrogates, bounded nesting."""
    return parse_fileids(protocol.load_json_body(raw, "cart body"))


@router.post(protocol.PATH_CART, status_code=201)
async def create_cart(uid: str, request: Request) -> Response:
    """cartd create: 201 ``{"message": "Cart Processing has begun"}``."""
    check_uid(uid)
    service = _cart_service(request)
    user_id = await run_in_threadpool(authenticate, request)
    raw = await request.body()       # JsonBodyLimit caps it at protocol.MAX_CART_BODY_BYTES (413)
    files = await run_in_threadpool(_parse_body, raw)
    status = await run_in_threadpool(service.create, user_id, uid, files)
    return JSONResponse({"message": "Cart Processing has begun", "status": status}, status_code=201)


@router.head(protocol.PATH_CART)
async def cart_status(uid: str, request: Request, wait: float = 0.0) -> Response:
    """cartd status: 204 (500 on error) with ``X-Pacifica-Status``; ``?wait=S`` long-polls."""
    service = _cart_service(request)
    user_id = await run_in_threadpool(authenticate, request)
    deadline = time.monotonic() + max(0.0, min(wait, protocol.MAX_CART_WAIT_S))
    if wait > 0:
        release_slot(request.scope)  # type: ignore[arg-type]  # a waiting long-poll holds no admission slot: each check takes one
    delay = 0.05
    while True:
        cart, _member = await run_in_slot(service.state.admission if wait > 0 else None,
                                          lambda: service.get(user_id, uid))
        if cart.status not in (protocol.CART_WAITING, protocol.CART_STAGING) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.5)
    status_code = 500 if cart.status == protocol.CART_ERROR else 204
    return Response(status_code=status_code, headers=_status_headers(cart))


async def _ready_cart(service: Any, request: Request, uid: str, member: str | None = None) -> Any:
    """(cart, member) of the caller's cart ``uid`` if it is ready and still readable, else cartd's 202 answer."""
    user_id = await run_in_threadpool(authenticate, request)
    cart, found = await run_in_threadpool(service.ready_cart, user_id, uid, member)
    if cart.status != protocol.CART_READY:
        return JSONResponse({"message": "The cart is not ready for download."}, status_code=202,
                            headers=_status_headers(cart))
    return cart, found


@router.api_route(protocol.PATH_CART, methods=["GET"], response_class=Response)
async def download_cart(uid: str, request: Request, filename: str | None = None) -> Response:
    """cartd download: the tar (202 while not ready); Content-Length and Range supported."""
    service = _cart_service(request)
    ready = await _ready_cart(service, request, uid)
    if isinstance(ready, Response):
        return ready
    cart, _member = ready
    name, top = tar_names(filename)
    layout = await run_in_threadpool(service.layout, cart, top)
    blobs = service.blobs
    tag = hashlib.sha256(f"{cart.id}/{cart.created}/{top}".encode()).hexdigest()[:32]
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
               "ETag": f'"cart-{tag}-{layout.size}"', **_status_headers(cart)}
    return ranged_response(request, layout.size,
                           lambda start, end: layout.iter_range(blobs.open_range, start, end), headers,
                           media_type="application/x-tar")


@router.api_route(CART_FILE_ROUTE, methods=["GET", "HEAD"], response_class=Response)
async def download_cart_file(uid: str, path: str, request: Request) -> Response:
    """One member of a ready cart, as pinned when the cart was made (Range supported)."""
    service = _cart_service(request)
    ready = await _ready_cart(service, request, uid, path)
    if isinstance(ready, Response):
        return ready
    _cart, member = ready
    if member.kind == protocol.KIND_LINK:
        raise Conflict(f"cart member {path!r} is a symbolic link: it has no bytes (the tar holds its target)",
                       {"uid": uid, "path": path})
    info = {"blob_key": member.blob_key, "size": member.size, "sha256": member.sha256,
            "version": member.version, "mtime": member.mtime}
    return blob_response(request, service.blobs, info)


@router.delete(protocol.PATH_CART)
async def delete_cart(uid: str, request: Request) -> Response:
    """cartd delete: frees the cart (its pinned blobs stay while files use them)."""
    service = _cart_service(request)
    user_id = await run_in_threadpool(authenticate, request)
    await run_in_threadpool(service.delete, user_id, uid)
    return JSONResponse({"message": "Cart Deleted Successfully"})

