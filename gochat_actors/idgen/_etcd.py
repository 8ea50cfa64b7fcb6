"""``HttpEtcd``: etcd v3 through its JSON gateway with httpx, natively on trio.

Keys and values travel base64-encoded; int64 fields come back as strings and are
omitted when zero. Imported lazily (only when ``[idgen] etcd`` is an http(s) URL).
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Sequence
from typing import Any

import httpx
import trio

from .._dsn import mask_urls
from .._exceptions import IdGenAuthFailed, IdGenUnavailable, MachineIdLost
from ._errors import DRIVER_ERRORS, TokenRejected, loads, reply_error, translate
from ._protocol import Compare, Get, KeyValue, Op, Put, TxnResult

__all__ = ["HttpEtcd"]

_TARGETS = {
    "create": ("CREATE", "create_revision"),
    "mod": ("MOD", "mod_revision"),
    "version": ("VERSION", "version"),
    "value": ("VALUE", "value"),
}


_JSON = {"Content-Type": "application/json"}


class _Body(httpx.AsyncByteStream):
    """A request body that is a plain async iterator, not an async generator: httpx's
    own (``ByteStream.__aiter__``) is left suspended when a request is cancelled while
    sending, and trio then warns when it is garbage collected (encode/httpx#3686)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: object) -> bytes:
    return base64.b64decode(str(text)) if text else b""


def _int(value: object) -> int:
    return int(str(value)) if value is not None else 0


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        _unb64(raw.get("key")),
        _unb64(raw.get("value")),
        _int(raw.get("create_revision")),
        _int(raw.get("mod_revision")),
        _int(raw.get("version")),
        _int(raw.get("lease")),
    )


def _range_body(key: bytes, range_end: bytes, keys_only: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key)}
    if range_end:
        body["range_end"] = _b64(range_end)
    if keys_only:
        body["keys_only"] = True
    return body


def _op(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": _b64(op.key), "value": _b64(op.value)}
        if op.lease:
            put["lease"] = str(op.lease)
        return {"request_put": put}
    if isinstance(op, Get):
        return {"request_range": _range_body(op.key, op.range_end)}
    return {"request_delete_range": _range_body(op.key, op.range_end)}


def _compare(cmp: Compare) -> dict[str, Any]:
    target, field = _TARGETS[cmp.target]
    value = _b64(cmp.value) if isinstance(cmp.value, bytes) else str(cmp.value)
    return {"key": _b64(cmp.key), "target": target, "result": "EQUAL", field: value}


def _response(op: Op, raw: dict[str, Any]) -> list[KeyValue] | int | None:
    if isinstance(op, Put):
        return None
    if isinstance(op, Get):
        return [_kv(kv) for kv in raw.get("response_range", {}).get("kvs", [])]
    return _int(raw.get("response_delete_range", {}).get("deleted"))


class HttpEtcd:
    """An :class:`EtcdBackend` on etcd's v3 JSON gateway (``http://127.0.0.1:2379``).

    Every call is one POST with a ``timeout`` (seconds); failures raise
    :class:`~gochat_actors.IdGenUnavailable` with the httpx error as ``__cause__``.
    With ``user``, it authenticates first (``/v3/auth/authenticate``) and sends the token
    with every request; a token etcd no longer accepts (expired, or the member restarted)
    is renewed once per request. A refused password is
    :class:`~gochat_actors.IdGenAuthFailed`. ``verify`` is the TLS context for https://
    (a CA, a client certificate), as httpx takes it.

    Example::

        etcd = HttpEtcd("http://127.0.0.1:2379")
        try:
            lease, ttl = await etcd.lease_grant(10)
        finally:
            await etcd.aclose()
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        user: str = "",
        password: str = "",
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout, verify=verify)
        self._user = user
        self._password = password
        self._token: str | None = None  # None: authenticate before the next request
        self._auth_lock = trio.Lock()
        self.authentications = 0
        """How many tokens it obtained (the first one, then one per renewal)."""

    async def _call(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        if not self._user:
            try:
                return await self._post(path, body, what, None)
            except TokenRejected as exc:
                raise IdGenAuthFailed(
                    f"{exc} (etcd has auth enabled: set [idgen] etcd_user and etcd_password)"
                ) from None
        token = await self._authenticated(None)
        try:
            return await self._post(path, body, what, token)
        except TokenRejected:
            token = await self._authenticated(token)  # once: a second refusal is raised
            return await self._post(path, body, what, token)

    async def _authenticated(self, rejected: str | None) -> str:
        """A token to send: the current one, or a new one when there is none yet or the
        current one is ``rejected`` (concurrent callers authenticate once)."""
        async with self._auth_lock:
            if self._token is None or self._token == rejected:
                self._token = None
                body = {"name": self._user, "password": self._password}
                try:
                    reply = await self._post("/v3/auth/authenticate", body, "authenticate", None)
                except TokenRejected as exc:  # "user name is empty": no user sent
                    raise IdGenAuthFailed(str(exc)) from None
                except IdGenAuthFailed as exc:
                    if "not enabled" not in str(exc):
                        raise IdGenAuthFailed(
                            f"{exc} (as etcd user {self._user!r}: check [idgen] etcd_user "
                            "and etcd_password)"
                        ) from None
                    reply = {"token": ""}  # auth is off: requests go without a token
                self._token = str(reply.get("token") or "")
                self.authentications += 1
            return self._token

    async def _post(
        self, path: str, body: dict[str, Any], what: str, token: str | None
    ) -> dict[str, Any]:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {**_JSON, "Authorization": token} if token else _JSON
        request = self._client.build_request("POST", path, content=data, headers=headers)
        request.stream = _Body(data)
        try:
            response = await self._client.send(request)
            reply = loads(response.content)
        except DRIVER_ERRORS as exc:
            raise translate(exc, what) from exc
        error = reply_error(response.status_code, reply, what)
        if error is not None:
            raise error
        return reply

    @staticmethod
    def _revision(reply: dict[str, Any]) -> int:
        return _int(reply.get("header", {}).get("revision"))

    async def range(
        self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False
    ) -> list[KeyValue]:
        """The keys in ``[key, range_end)`` (or just ``key``), sorted."""
        reply = await self._call("/v3/kv/range", _range_body(key, range_end, keys_only), "range")
        return [_kv(kv) for kv in reply.get("kvs", [])]

    async def put(self, key: bytes, value: bytes, *, lease: int = 0) -> int:
        """Store ``value`` at ``key``; the new store revision."""
        body = _op(Put(key, value, lease))["request_put"]
        return self._revision(await self._call("/v3/kv/put", body, "put"))

    async def delete(self, key: bytes, range_end: bytes = b"") -> int:
        """Delete ``key`` (or ``[key, range_end)``); how many keys were deleted."""
        reply = await self._call("/v3/kv/deleterange", _range_body(key, range_end), "delete")
        return _int(reply.get("deleted"))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """Run ``success`` if every comparison holds, else ``failure``, atomically."""
        body = {
            "compare": [_compare(c) for c in compare],
            "success": [_op(op) for op in success],
            "failure": [_op(op) for op in failure],
        }
        reply = await self._call("/v3/kv/txn", body, "txn")
        succeeded = bool(reply.get("succeeded", False))
        ops = success if succeeded else failure
        raw = reply.get("responses", [])
        if len(raw) != len(ops):
            raise IdGenUnavailable(f"etcd txn: {len(raw)} responses for {len(ops)} operations")
        responses = tuple(_response(op, r) for op, r in zip(ops, raw, strict=True))
        return TxnResult(succeeded, self._revision(reply), responses)

    async def lease_grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: ``(lease_id, ttl)``; etcd may grant a longer TTL than asked."""
        reply = await self._call("/v3/lease/grant", {"TTL": str(int(ttl))}, "lease grant")
        return _int(reply.get("ID")), _int(reply.get("TTL"))

    async def lease_keepalive(self, lease: int) -> int | None:
        """Refresh ``lease``; its TTL, or ``None`` when etcd no longer has it."""
        reply = await self._call("/v3/lease/keepalive", {"ID": str(lease)}, "lease keepalive")
        ttl = reply.get("result", {}).get("TTL")
        return _int(ttl) if ttl is not None and _int(ttl) > 0 else None

    async def lease_revoke(self, lease: int) -> bool:
        """Revoke ``lease`` (its keys are deleted); ``False`` if etcd did not have it."""
        try:
            await self._call("/v3/lease/revoke", {"ID": str(lease)}, "lease revoke")
        except MachineIdLost:  # etcd does not have it
            return False
        return True

    async def lease_time_to_live(self, lease: int) -> int | None:
        """Seconds ``lease`` has left, or ``None`` when etcd does not have it."""
        reply = await self._call("/v3/lease/timetolive", {"ID": str(lease)}, "lease timetolive")
        ttl = _int(reply.get("TTL"))
        return ttl if ttl >= 0 else None

    async def aclose(self) -> None:
        """Close the HTTP connections (idempotent)."""
        await self._client.aclose()

    def __repr__(self) -> str:
        return f"<HttpEtcd {mask_urls(self.url)}>"
