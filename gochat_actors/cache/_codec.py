"""Codecs: how a Python value becomes the bytes stored in the cache, and back."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = ["BYTES", "JSON", "STR", "BytesCodec", "Codec", "JsonCodec", "StrCodec"]

T = TypeVar("T")


class Codec(Protocol[T]):
    """Turns values of one type into bytes and back; ``name`` shows in error messages.

    ``encode`` raises ``TypeError``/``ValueError`` on a value it cannot store;
    ``decode`` raises ``ValueError`` on bytes it cannot read.

    Example::

        class MsgpackCodec:
            name = "msgpack"
            def encode(self, value: Any) -> bytes: return msgpack.packb(value)
            def decode(self, data: bytes) -> Any: return msgpack.unpackb(data)
    """

    name: str

    def encode(self, value: T, /) -> bytes: ...
    def decode(self, data: bytes, /) -> T: ...


class BytesCodec(Codec[bytes]):
    """Bytes as they are (``bytearray``/``memoryview`` are copied to ``bytes``).

    Example::

        await cache.set("avatar:42", png, codec=BYTES)
    """

    name = "bytes"

    def encode(self, value: bytes | bytearray | memoryview, /) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise TypeError(f"the bytes codec stores bytes, got {type(value).__name__}")

    def decode(self, data: bytes, /) -> bytes:
        return data


class StrCodec(Codec[str]):
    """Text in ``encoding`` (UTF-8 by default).

    Example::

        name = await cache.get("user:42:name", codec=STR)
    """

    name = "str"

    def __init__(self, encoding: str = "utf-8") -> None:
        self.encoding = encoding

    def encode(self, value: str, /) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"the str codec stores str, got {type(value).__name__}")
        return value.encode(self.encoding)

    def decode(self, data: bytes, /) -> str:
        return data.decode(self.encoding)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (strict JSON has no NaN or Infinity)")


class JsonCodec(Codec[Any]):
    """Any JSON-serializable value, compact UTF-8 JSON on the wire; strict JSON both
    ways: ``NaN`` and ``Infinity`` are refused when encoding (``ValueError``) and when
    decoding, since other services' strict readers reject them. Values (or stored JSON)
    nested deeper than the interpreter's recursion limit are refused the same way.

    ``default`` is passed to :func:`json.dumps` for types JSON does not know.

    Example::

        await cache.set("user:42", {"name": "ann"}, ttl=60.0, codec=JSON)
        user = await cache.get("user:42", codec=JSON)
    """

    name = "json"

    def __init__(self, *, default: Callable[[Any], Any] | None = None) -> None:
        self._default = default

    def encode(self, value: Any, /) -> bytes:
        try:
            text = json.dumps(
                value,
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,
                default=self._default,
            )
        except RecursionError:
            # Nested deeper than the interpreter's recursion limit (or a ``default``
            # that never bottoms out): a value this codec cannot store, not a crash.
            raise ValueError("the value is nested too deeply to encode") from None
        return text.encode()

    def decode(self, data: bytes, /) -> Any:
        try:
            return json.loads(data, parse_constant=_no_constant)
        except RecursionError:
            # Another writer stored JSON nested past the recursion limit: unreadable
            # bytes (a ``ValueError``, ``CacheError`` to ``get``), not a crash.
            raise ValueError("the JSON is nested too deeply to decode") from None


BYTES: Codec[bytes] = BytesCodec()
"""The default codec: values are bytes."""

STR: Codec[str] = StrCodec()
"""UTF-8 text."""

JSON: Codec[Any] = JsonCodec()
"""Compact JSON."""
