"""Drive-only refusals: POSIX conditions that have no HTTP counterpart.

They extend the shared :mod:`oaiofs.errors` tree so that ``fuse_ops`` still
translates every error in one place (``err.errno``).
"""
from __future__ import annotations

import errno as _errno

from ..errors import OaioError


class NotPermitted(OaioError):
    """The layout forbids this (e.g. a regular file at the root): EPERM."""

    code, http_status, errno = "not_permitted", 403, _errno.EPERM


class IsADirectory(OaioError):
    code, http_status, errno = "is_a_directory", 409, _errno.EISDIR


class NotADirectory(OaioError):
    code, http_status, errno = "not_a_directory", 409, _errno.ENOTDIR


class CrossDevice(OaioError):
    """A rename between two objects (``mv`` then copies and deletes): EXDEV."""

    code, http_status, errno = "cross_device", 409, _errno.EXDEV


class BadHandle(OaioError):
    code, http_status, errno = "bad_handle", 400, _errno.EBADF


class NoAttribute(OaioError):
    code, http_status, errno = "no_attribute", 404, _errno.ENODATA


class NameTooLong(OaioError):
    """A path component longer than ``protocol.MAX_NAME_BYTES``, or a link target longer than
    ``protocol.MAX_LINK_TARGET_BYTES``: ENAMETOOLONG."""

    code, http_status, errno = "name_too_long", 400, _errno.ENAMETOOLONG


def check_name_lengths(path: str, limit: int) -> None:
    """Raise :class:`NameTooLong` if a component of the mount path ``path`` is over ``limit`` bytes."""
    for part in path.split("/"):
        if len(part) * 4 > limit and len(part.encode("utf-8", "surrogateescape")) > limit:
            raise NameTooLong(f"a name in {path[:80]!r}... is longer than {limit} bytes")


class NotCached(OaioError):
    """The bytes are not in the cache and the server cannot be reached: EIO."""

    code, http_status, errno = "not_cached", 503, _errno.EIO


class NotSupported(OaioError):
    """An extended attribute or operation the drive does not offer: ENOTSUP."""

    code, http_status, errno = "not_supported", 400, _errno.ENOTSUP


class NotALink(OaioError):
    """readlink of something that is not a symbolic link: EINVAL."""

    code, http_status, errno = "not_a_link", 400, _errno.EINVAL


class IsALink(OaioError):
    """The drive never follows a link by itself (open of a link's own path): ELOOP."""

    code, http_status, errno = "is_a_link", 409, _errno.ELOOP


class ReadOnly(OaioError):
    """The mount is read-only for now (e.g. the account was disabled on the server): EROFS."""

    code, http_status, errno = "read_only", 403, _errno.EROFS


class IllegalItemTransition(OaioError):
    """A cache item was asked for a state change its state machine forbids (a drive bug,
    :mod:`oaiofs.vfs.item_state`): the operation fails with EIO instead of risking the bytes."""

    code, http_status, errno = "illegal_item_transition", 500, _errno.EIO
