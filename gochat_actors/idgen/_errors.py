"""httpx exceptions and etcd error replies translated at the edge into ours.

Imported only by the HTTP backend, so importing :mod:`gochat_actors` loads no driver.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import httpx

from .._dsn import mask_urls
from .._exceptions import GochatError, IdGenAuthFailed, IdGenUnavailable, MachineIdLost

__all__ = [
    "DRIVER_ERRORS",
    "LEASE_NOT_FOUND",
    "TokenRejected",
    "loads",
    "reply_error",
    "translate",
]

DRIVER_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, OSError, ValueError)
"""What an HTTP call to etcd may raise that :func:`translate` maps (a bad JSON body is a
``ValueError``); anything else is a bug and is not caught."""

LEASE_NOT_FOUND = 5
"""The gRPC code etcd answers for an unknown lease (``NotFound``)."""

# etcd's auth refusals, by message (their gRPC codes are shared with other errors).
_TOKEN_REJECTED = ("invalid auth token", "revision of auth store is old", "user name is empty")
_AUTH_REFUSED = (
    "authentication failed",
    "invalid user id or password",
    "user name not found",
    "permission denied",
    "authentication is not enabled",
)


class TokenRejected(IdGenAuthFailed):
    """etcd refused the request's token (expired, from before a restart, or none sent
    while auth is on): authenticate again and resend (private to the HTTP client)."""


def translate(exc: Exception, what: str) -> GochatError:
    """Our exception for the driver's ``exc`` raised by ``what`` (raise it ``from exc``).

    Example::

        try:
            response = await client.post("/v3/kv/range", json=body)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "range") from exc
    """
    chain = _chain(exc)
    detail = mask_urls(next((str(e) for e in chain if str(e)), type(exc).__name__))
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return IdGenUnavailable(f"etcd {what} failed, TLS handshake: {detail}")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return IdGenUnavailable(f"etcd {what} timed out: {detail}")
    if isinstance(exc, ValueError):
        return IdGenUnavailable(f"etcd {what}: unreadable reply: {detail}")
    return IdGenUnavailable(f"etcd {what} failed, server unreachable: {detail}")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (httpx's ConnectError often has no text of its own)."""
    chain = [exc]
    while len(chain) < 5 and (inner := chain[-1].__cause__ or chain[-1].__context__):
        chain.append(inner)
    return chain


def reply_error(status: int, body: dict[str, Any], what: str) -> GochatError | None:
    """Our exception for an etcd error reply (``{"error", "message", "code"}``), else None.

    An unknown lease is :class:`~gochat_actors.MachineIdLost`; a refused credential or
    token is :class:`~gochat_actors.IdGenAuthFailed` (:class:`TokenRejected` for a token
    to renew); any other refusal is :class:`~gochat_actors.IdGenUnavailable`.

    Example::

        >>> reply_error(404, {"code": 5, "message": "lease not found"}, "put")
        MachineIdLost('etcd put: lease not found')
    """
    error = body.get("error")
    if status == 200 and not error:
        return None
    if isinstance(error, dict):  # a streamed reply: {"error": {"grpc_code", "message"}}
        body = {"code": error.get("grpc_code", error.get("code")), **error}
    message = str(body.get("message") or error or f"HTTP {status}")
    message = message.removeprefix("etcdserver: ")
    if body.get("code") == LEASE_NOT_FOUND:
        return MachineIdLost(f"etcd {what}: {message}")
    lowered = message.lower()
    if any(text in lowered for text in _TOKEN_REJECTED):
        return TokenRejected(f"etcd {what} refused: {mask_urls(message)}")
    if any(text in lowered for text in _AUTH_REFUSED):
        return IdGenAuthFailed(f"etcd {what} refused: {mask_urls(message)}")
    return IdGenUnavailable(f"etcd {what} refused (HTTP {status}): {mask_urls(message)}")


def loads(raw: bytes) -> dict[str, Any]:
    """The first JSON object of an etcd reply (streamed replies are one per line)."""
    line = raw.split(b"\n", 1)[0]
    body = json.loads(line) if line.strip() else {}
    if not isinstance(body, dict):
        raise ValueError(f"expected a JSON object, got {type(body).__name__}")
    return body
