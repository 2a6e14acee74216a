"""Safe decoding of the seed client's context headers (``X-OAIO-user/-dvc/-app``).

``ae.oaio_model.context_encode`` sends each value as the Python ``repr`` of its
UTF-8 bytes (``b'j\\xc3\\xbcrgen'``). It is parsed as one bytes literal and nothing
else: ``ast.parse`` in ``eval`` mode must yield a single ``Constant`` of type
``bytes`` (no names, calls, operators or f-strings), the raw header is bounded in
length, and the bytes must be UTF-8. Nothing is ever evaluated.
"""
from __future__ import annotations

import ast
from typing import Mapping

from ...errors import InvalidInput

MAX_HEADER_CHARS = 4 * 255 + 3          # b'' around 255 bytes written as \xNN escapes
CONTEXT_HEADERS = {"user": "X-OAIO-user", "device": "X-OAIO-dvc", "app": "X-OAIO-app"}


def decode_bytes_literal(raw: str, name: str = "header") -> str:
    """The text of a ``b'...'`` literal, or raise ``InvalidInput`` (400)."""
    text = raw.strip()
    if len(text) > MAX_HEADER_CHARS:
        raise InvalidInput(f"{name} is longer than {MAX_HEADER_CHARS} characters", {"header": name})
    if len(text) < 3 or text[0] not in "bB" or text[1] not in "'\"" or text[-1] != text[1]:
        raise InvalidInput(f"{name} must be a Python bytes literal like b'name'", {"header": name})
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        raise InvalidInput(f"{name} is not a valid bytes literal", {"header": name}) from None
    node = tree.body
    if not isinstance(node, ast.Constant) or not isinstance(node.value, bytes):
        raise InvalidInput(f"{name} must be a single bytes literal", {"header": name})
    try:
        return node.value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{name} is not UTF-8", {"header": name}) from None


def context(headers: Mapping[str, str]) -> dict[str, str]:
    """``{"user", "device", "app"}`` from the request headers ('' where a header is absent)."""
    out = {}
    for key, name in CONTEXT_HEADERS.items():
        raw = headers.get(name)
        out[key] = decode_bytes_literal(raw, name)[:255] if raw else ""
    return out
