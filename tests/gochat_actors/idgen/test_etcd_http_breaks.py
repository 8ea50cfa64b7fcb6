"""Adversarial review of ``HttpEtcd`` (issue 20) against a tiny HTTP/1.1 server on the
loopback that answers some requests late: a request the cluster client gave up on must
never have its late reply read as the reply of a later request on a reused connection;
tokens renewed while several requests run at once."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from gochat_actors import IdGenAuthFailed, IdGenUnavailable
from gochat_actors.idgen._cluster import ClusterEtcd
from gochat_actors.idgen._etcd import HttpEtcd

Handler = Callable[[str, dict[str, Any], dict[str, str]], Awaitable[dict[str, Any]]]


async def _serve_one(stream: trio.SocketStream, handler: Handler) -> None:
    buffer = b""
    async with stream:
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                buffer += chunk
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            path = lines[0].split()[1]
            headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                chunk = await stream.receive_some()
                if not chunk:
                    return
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
            answer = await handler(path, json.loads(body or b"{}"), headers)
            status = 200
            if "code" in answer and path != "/v3/lease/keepalive":  # as etcd's gateway
                status = 401 if answer["code"] in (3, 16) else 503
                answer = {"error": answer["message"], **answer}
            elif "code" in answer:  # a streamed reply carries its error inside
                answer = {"error": {"grpc_code": answer["code"], "message": answer["message"]}}
            reply = json.dumps(answer).encode()
            try:
                await stream.send_all(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, len(reply), reply)
                )
            except trio.BrokenResourceError:
                return


async def start_server(nursery: trio.Nursery, handler: Handler) -> str:
    async def serve(stream: trio.SocketStream) -> None:
        await _serve_one(stream, handler)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def echo_range(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """A range reply naming the key asked for; ``slow`` keys are answered after 5 s."""
    if base64.b64decode(body["key"]).startswith(b"slow"):
        await trio.sleep(5.0)
    return await echo_fast(path, body, headers)


async def echo_fast(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """A range reply naming the key asked for, at once."""
    key = base64.b64decode(body["key"])
    return {"header": {"revision": "1"}, "kvs": [{"key": b64(key), "value": b64(key)}]}


async def test_a_late_reply_is_never_read_as_the_next_one(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        url = await start_server(nursery, echo_range)
        etcd = HttpEtcd(url, timeout=30.0)
        try:
            for n in range(5):
                with trio.move_on_after(1.0):  # as ClusterEtcd gives up on a member
                    await etcd.range(b"slow%d" % n)
                kvs = await etcd.range(b"fast%d" % n)
                assert [kv.key for kv in kvs] == [b"fast%d" % n]
        finally:
            await etcd.aclose()
        nursery.cancel_scope.cancel()


async def test_a_member_given_up_on_answers_the_next_request_right(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Through ClusterEtcd: m1 is slow once and the request moves to m2; later m2
    refuses, m1 has rested and must answer the new request, not the old one."""
    m2_refuses = [False]

    async def second_handler(
        path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any]:
        if m2_refuses[0]:
            return {
                "error": "etcdserver: no leader",
                "code": 14,
                "message": "etcdserver: no leader",
            }
        return await echo_fast(path, body, headers)

    async with trio.open_nursery() as nursery:
        m1 = HttpEtcd(await start_server(nursery, echo_range), timeout=30.0)
        m2 = HttpEtcd(await start_server(nursery, second_handler), timeout=30.0)
        etcd = ClusterEtcd([("m1", m1), ("m2", m2)], timeout=1.0, retry_after=2.0)
        try:
            kvs = await etcd.range(b"slow-a")  # m1 gives up after 1 s, m2 answers
            assert [kv.key for kv in kvs] == [b"slow-a"]
            kvs = await etcd.range(b"k1")
            assert [kv.key for kv in kvs] == [b"k1"]
            assert etcd.current == "m2"
            m2_refuses[0] = True
            await trio.sleep(10.0)  # m1 rested; its late reply to slow-a went out
            kvs = await etcd.range(b"k2")
            assert [kv.key for kv in kvs] == [b"k2"]
            assert etcd.current == "m1"
        finally:
            await etcd.aclose()
        nursery.cancel_scope.cancel()


class TokenServer:
    """etcd with auth: tokens ``t1``, ``t2``, ... from /v3/auth/authenticate; every
    token stops being accepted when :meth:`expire` is called; authenticate can be slow."""

    def __init__(self) -> None:
        self.issued = 0
        self.valid: set[str] = set()
        self.auth_delay = 0.0
        self.requests = 0

    def expire(self) -> None:
        self.valid.clear()

    async def __call__(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> dict[str, Any]:
        if path == "/v3/auth/authenticate":
            await trio.sleep(self.auth_delay)
            if body.get("password") != "right":
                return {
                    "code": 3,
                    "message": "etcdserver: authentication failed, invalid user ID or password",
                }
            self.issued += 1
            token = f"t{self.issued}"
            self.valid.add(token)
            return {"token": token}
        self.requests += 1
        if headers.get("authorization") not in self.valid:
            return {"code": 3, "message": "etcdserver: invalid auth token"}
        await trio.sleep(0.01)
        return {"header": {"revision": "1"}, "result": {"ID": body.get("ID"), "TTL": "9"}}


async def test_tokens_expiring_under_concurrent_keepalives(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = TokenServer()
    async with trio.open_nursery() as nursery:
        etcd = HttpEtcd(await start_server(nursery, server), user="u", password="right")
        try:
            results: list[int | None] = []

            async def keepalive(n: int) -> None:
                results.append(await etcd.lease_keepalive(n))

            for _ in range(5):
                async with trio.open_nursery() as calls:
                    for n in range(20):
                        calls.start_soon(keepalive, n)
                server.expire()
            assert results == [9] * 100
            assert etcd.authentications <= 5 * 2
        finally:
            await etcd.aclose()
        nursery.cancel_scope.cancel()


async def test_cancelled_while_authenticating_then_works(autojump_clock: trio.abc.Clock) -> None:
    server = TokenServer()
    server.auth_delay = 5.0
    async with trio.open_nursery() as nursery:
        etcd = HttpEtcd(await start_server(nursery, server), user="u", password="right")
        try:
            for step in range(4):
                with trio.move_on_after(1.0 + step):
                    await etcd.lease_keepalive(1)
            server.auth_delay = 0.0
            assert await etcd.lease_keepalive(1) == 9
        finally:
            await etcd.aclose()
        nursery.cancel_scope.cancel()


async def test_a_wrong_password_is_typed_and_never_shown(autojump_clock: trio.abc.Clock) -> None:
    server = TokenServer()
    async with trio.open_nursery() as nursery:
        url = await start_server(nursery, server)
        members = [HttpEtcd(url, user="u", password="wr0ng-pw") for _ in range(3)]
        etcd = ClusterEtcd([(f"m{n}", m) for n, m in enumerate(members)], timeout=1.0)
        try:
            with pytest.raises(IdGenAuthFailed) as info:
                await etcd.lease_grant(9)
            assert "wr0ng-pw" not in str(info.value)
            assert "wr0ng-pw" not in repr(etcd) + repr(members[0])
            assert server.issued == 0
        finally:
            await etcd.aclose()
        nursery.cancel_scope.cancel()


async def empty(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """A 200 reply with an empty object: a stream that ended before its message."""
    return {}


@pytest.mark.parametrize("call", ["keepalive", "grant"])
async def test_an_empty_reply_is_unavailable_not_an_answer(
    call: str, autojump_clock: trio.abc.Clock
) -> None:
    async with trio.open_nursery() as nursery:
        etcd = HttpEtcd(await start_server(nursery, empty))
        try:
            request = etcd.lease_keepalive(7) if call == "keepalive" else etcd.lease_grant(9)
            with pytest.raises(IdGenUnavailable):
                await request
        finally:
            await etcd.aclose()
        nursery.cancel_scope.cancel()
