"""MariaDB over TLS: ``ssl_ca`` (and ``ssl_cert``/``ssl_key``) in a ``mysql+aiomysql://``
URL become aiomysql's ``ssl.SSLContext``; a private mariadbd whose user must use TLS
(``REQUIRE SSL``); certificates made by the fixture (trustme), never committed."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import pytest
import trio
from pydantic import ValidationError
from sqlalchemy import text

from gochat_actors import Bridge, DBError
from gochat_actors._dsn import Dsn
from gochat_actors.db import DBManager, DBSettings
from gochat_actors.db._mysql import mysql_tls as _mysql_tls
from supervisors import open_supervisor
from tests._clusters import MariaDBTLS
from tests.gochat_actors.db._proxy import TcpProxy


async def cipher_and_rows(db: DBManager) -> tuple[str, list[int]]:
    async with db.reader() as session:
        row = (await session.execute(text("SHOW SESSION STATUS LIKE 'Ssl_cipher'"))).first()
        ids = (await session.scalars(text("SELECT id FROM notes ORDER BY id"))).all()
    assert row is not None
    return str(row._mapping["Value"]), [int(i) for i in ids]


async def insert_then_fail(db: DBManager) -> None:
    async with db.transaction() as session:
        await session.execute(text("INSERT INTO notes VALUES (3)"))
        raise RuntimeError("roll back")


@pytest.mark.parametrize("client_cert", [False, True], ids=["ca", "ca+cert"])
async def test_a_round_trip_and_a_transaction_over_tls(
    mariadb_tls: MariaDBTLS, client_cert: bool
) -> None:
    url = mariadb_tls.url(mariadb_tls.create_database())
    if client_cert:
        url += f"&ssl_cert={mariadb_tls.tls.client_cert}&ssl_key={mariadb_tls.tls.client_key}"
    db = DBManager(DBSettings(primary=Dsn(url)))
    async with open_supervisor([db.spec()]):
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE notes (id INT PRIMARY KEY)"))
            await session.execute(text("INSERT INTO notes VALUES (1), (2)"))
        with pytest.raises(RuntimeError, match="roll back"):
            await insert_then_fail(db)
        cipher, ids = await cipher_and_rows(db)
    assert cipher  # the session is encrypted
    assert ids == [1, 2]


def test_the_tls_parameters_leave_the_url_for_an_ssl_context(tmp_path: Path) -> None:
    from tests._clusters import make_tls_files

    files = make_tls_files(tmp_path)
    dsn = Dsn(f"mysql+aiomysql://u:p@127.0.0.1:3306/chat?charset=utf8mb4&ssl_ca={files.ca}")
    url, connect_args = _mysql_tls(dsn)
    assert dict(url.query) == {"charset": "utf8mb4"}  # type: ignore[union-attr]
    assert connect_args["ssl"].verify_mode.name == "CERT_REQUIRED"
    plain = Dsn("mysql+aiomysql://u:p@127.0.0.1:3306/chat")
    assert _mysql_tls(plain) == (plain.reveal(), {})  # no TLS: the URL as before


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("ssl_ca=/nonexistent/ca.pem", "ssl_ca: no such file: /nonexistent/ca.pem"),
        ("ssl_ca={ca}&ssl_cert={ca}", "ssl_cert is set without ssl_key"),
        ("ssl_key={ca}", "ssl_key is set without ssl_cert"),
        ("ssl_ca={junk}", "ssl_ca ({junk}): not loadable as PEM"),
    ],
)
def test_bad_tls_files_are_settings_errors(tmp_path: Path, query: str, message: str) -> None:
    from tests._clusters import make_tls_files

    files = make_tls_files(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    query = query.format(ca=files.ca, junk=junk)
    url = f"mysql+aiomysql://u:p@127.0.0.1:3306/chat?{query}"
    for fields in ({"primary": url}, {"replicas": [url]}):
        with pytest.raises(ValidationError, match=re.escape(message.format(junk=junk))):
            DBSettings.model_validate(fields)


async def test_a_file_gone_since_the_settings_loaded_is_a_db_error(tmp_path: Path) -> None:
    from tests._clusters import make_tls_files

    files = make_tls_files(tmp_path)
    dsn = Dsn(f"mysql+aiomysql://u:p@127.0.0.1:3306/chat?ssl_ca={files.ca}")
    files.ca.unlink()
    with pytest.raises(DBError, match="ssl_ca: no such file"):
        _mysql_tls(dsn)


def client_sockets_to(port: int) -> int:
    """How many TCP sockets this process holds open (an fd) to ``127.0.0.1:port``."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].rsplit(":", 1)[1], 16)
        count += remote_port == port and fields[9] in inodes
    return count


async def test_no_tls_socket_is_left_open_when_the_server_never_ends_its_shutdown(
    mariadb_tls: MariaDBTLS,
) -> None:
    """aiomysql's close over TLS returns before its socket is closed: that waits for the
    server's close_notify (up to 30 s). The bridge stopping right after the database (the
    supervisor's order), under load, left such a socket to the garbage collector (a
    ResourceWarning in CI). Here the server's replies are held and the proxy never closes
    a client's connection: when the database has stopped, with the bridge still running,
    none of its sockets may be open."""
    url = mariadb_tls.url(mariadb_tls.create_database())
    async with trio.open_nursery() as nursery:
        proxy = await nursery.start(TcpProxy(mariadb_tls.port).run)
        bridge = await nursery.start(Bridge().run)
        url = url.replace(f":{mariadb_tls.port}/", f":{proxy.port}/")
        db = DBManager(DBSettings(primary=Dsn(url)), bridge=bridge)
        async with open_supervisor([db.spec()]):
            async with db.transaction() as session:
                await session.execute(text("CREATE TABLE notes (id INT PRIMARY KEY)"))
            cipher, _ = await cipher_and_rows(db)
            assert cipher
            assert client_sockets_to(proxy.port) >= 1  # pooled (and the probes' own)
            proxy.keep_clients()
            proxy.hold_replies()
        assert client_sockets_to(proxy.port) == 0  # the database closed every one
        with trio.fail_after(5):  # and the proxy saw each close (a hang guard)
            await proxy.wait_no_connections()
        nursery.cancel_scope.cancel()
