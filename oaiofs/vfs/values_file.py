"""values.json of an open object folder: an in-memory document edited like a file.

:class:`ValuesFile` is the handle of an open values.json. It has the operations of
every open handle (:class:`~oaiofs.vfs.handles.OpenFile`: read, write, truncate,
flush, fsync, release), so :class:`~oaiofs.vfs.vfs.Vfs` dispatches to it like to an
attached file. Writes go to a buffer (at most ``protocol.MAX_VALUES_BYTES``); at
flush (close), fsync and release the text must parse as values
(:func:`parse_values`) and is then submitted once as a ``put_values`` op based on
the values the handle opened with (the next save builds on this one). A bad
document fails ``close``/``fsync`` with ``EINVAL`` and leaves the values unchanged.

Locking: ``lock`` guards the buffer; it is a leaf (the submit runs after it).
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from .. import protocol
from ..errors import InvalidValue, OaioError, TooLarge
from .cache import ItemKey
from .opstore import Op

log = logging.getLogger(__name__)

# (oaio_id, new values, the values they replace, base version) -> the queued put_values op
SubmitValues = Callable[[str, dict[str, Any], dict[str, Any], "int | None"], Op]
LastFailure = Callable[[ItemKey], "OaioError | None"]


def parse_values(text: bytes) -> dict[str, Any]:
    """values.json text -> values, or ``InvalidValue`` saying why not."""
    if len(text) > protocol.MAX_VALUES_BYTES:
        raise TooLarge(f"values.json is larger than {protocol.MAX_VALUES_BYTES} bytes")
    try:
        values = json.loads(text.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidValue(f"values.json is not valid JSON: {exc}") from None
    return protocol.validate_values(values)


class ValuesFile:
    """An open values.json (one handle): edits a copy of the text, submits parsed values."""

    def __init__(self, oaio_id: str, writable: bool, base_values: dict[str, Any], base_version: int,
                 text: bytes, *, dirty: bool, submit: SubmitValues, last_failure: LastFailure) -> None:
        self.oaio_id = oaio_id
        self.writable = writable
        self.base_values = base_values
        self.base_version = base_version
        self.buffer = bytearray(text)
        self.dirty = dirty
        self.submitted: bytes | None = None     # the text last accepted (not submitted twice)
        self.lock = threading.Lock()
        self._submit, self._last_failure = submit, last_failure

    @property
    def path(self) -> str:
        return protocol.VALUES_FILE

    def read_into(self, offset: int, buf: memoryview) -> int:
        with self.lock:
            data = self.buffer[offset:offset + len(buf)]
        buf[:len(data)] = data
        return len(data)

    def write(self, offset: int, data: bytes | memoryview) -> int:
        if offset + len(data) > protocol.MAX_VALUES_BYTES:
            raise TooLarge(f"values.json is limited to {protocol.MAX_VALUES_BYTES} bytes")
        with self.lock:
            buf = self.buffer
            if offset > len(buf):
                buf.extend(b"\0" * (offset - len(buf)))
            buf[offset:offset + len(data)] = data
            self.dirty = True
        return len(data)

    def truncate(self, length: int) -> None:
        with self.lock:
            del self.buffer[length:]
            self.buffer.extend(b"\0" * (length - len(self.buffer)))
            self.dirty = True

    def flush(self) -> None:
        """close(2): the document is validated and submitted here, so a bad one fails close."""
        self.submit()

    def fsync(self) -> None:
        """Submit; raise the error of the previous save if the server refused it for good."""
        failure = self._last_failure((self.oaio_id, protocol.VALUES_FILE))
        self.submit()
        if failure is not None:
            raise failure

    def release(self) -> None:
        """Last close: submit what parses; a refusal is logged (close already reported it)."""
        try:
            self.submit()
        except OaioError as err:
            log.warning("values.json of %s not saved: %s", self.oaio_id, err.message)

    def submit(self) -> Op | None:
        """Queue the edited values (None: nothing new to save)."""
        with self.lock:
            if not self.writable or not self.dirty:
                return None
            text = bytes(self.buffer)
            if text == self.submitted:
                return None
            try:
                values = parse_values(text)
            except InvalidValue as err:
                log.warning("values.json of %s refused: %s", self.oaio_id, err.message)
                raise
            self.submitted = text
            base_values, self.base_values = self.base_values, values   # the next save builds on this one
        return self._submit(self.oaio_id, values, base_values, self.base_version)
