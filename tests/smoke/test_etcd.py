"""etcd through httpx (async, on trio) on the v3 JSON gateway."""

from __future__ import annotations

import base64
from typing import Any

import httpx


def b64(text: str) -> str:
    """Base64 of ``text`` (the gateway's encoding of keys and values)."""
    return base64.b64encode(text.encode()).decode()


async def test_lease_and_put_if_absent_txn(etcd_url: str, etcd_key_prefix: str) -> None:
    """Grant a lease, put-if-absent with it (twice: only the first wins), read it back."""
    key = etcd_key_prefix + "machine/1"
    async with httpx.AsyncClient(base_url=etcd_url, timeout=10) as http:

        async def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
            resp = await http.post(path, json=body)
            resp.raise_for_status()
            reply: dict[str, Any] = resp.json()
            return reply

        lease = await call("/v3/lease/grant", {"TTL": 30})
        lease_id = lease["ID"]  # int64 as a string
        assert int(lease["TTL"]) == 30

        def put_if_absent(value: str) -> dict[str, Any]:
            return {
                "compare": [
                    {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
                ],
                "success": [
                    {"request_put": {"key": b64(key), "value": b64(value), "lease": lease_id}}
                ],
                "failure": [{"request_range": {"key": b64(key)}}],
            }

        first = await call("/v3/kv/txn", put_if_absent("owner-a"))
        assert first.get("succeeded") is True
        second = await call("/v3/kv/txn", put_if_absent("owner-b"))
        assert second.get("succeeded", False) is False  # proto3 JSON omits false
        held = second["responses"][0]["response_range"]["kvs"][0]
        assert base64.b64decode(held["value"]).decode() == "owner-a"

        got = await call("/v3/kv/range", {"key": b64(key)})
        assert [base64.b64decode(kv["value"]).decode() for kv in got["kvs"]] == ["owner-a"]
        assert got["kvs"][0]["lease"] == lease_id

        await call("/v3/lease/revoke", {"ID": lease_id})
        gone = await call("/v3/kv/range", {"key": b64(key)})
        assert "kvs" not in gone  # the lease took its key with it
