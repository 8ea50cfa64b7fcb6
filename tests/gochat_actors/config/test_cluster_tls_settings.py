"""``[cache]``/``[lock]`` URLs of a Redis Cluster, TLS files beside them, and ``ssl_*``
in a MySQL URL: accepted when right, and ``gochat-actors check-config`` names each bad
part in one line (unknown scheme, empty member list, a certificate without its key, a
missing file, TLS files with a plain URL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gochat_actors._dsn import Dsn
from gochat_actors.cache import CacheSettings
from gochat_actors.cli import main
from gochat_actors.lock import LockSettings
from tests._clusters import TLSFiles, make_tls_files


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return make_tls_files(tmp_path / "tls")


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """``check-config --json`` of ``path``: each problem's message by its setting."""
    code = main(["check-config", "--json", str(path)])
    problems = json.loads(capsys.readouterr().out).get("problems", [])
    assert code == (1 if problems else 0)
    for problem in problems:
        assert "\n" not in problem["message"]  # one line each
    return {p["path"]: p["message"] for p in problems}


def test_cluster_and_tls_urls_are_accepted(tls: TLSFiles) -> None:
    files = {"ca_file": str(tls.ca), "cert_file": str(tls.client_cert)}
    files["key_file"] = str(tls.client_key)
    cache = CacheSettings(url=Dsn("redis+cluster://127.0.0.1:7001,127.0.0.1:7002,[::1]:7003"))
    assert cache.url.members == (("127.0.0.1", 7001), ("127.0.0.1", 7002), ("::1", 7003))
    cluster = {"url": "rediss+cluster://:pw@h1:7001,h2:7002", **files}
    assert CacheSettings.model_validate(cluster).tls.ca_file == str(tls.ca)
    single = {"url": "rediss://127.0.0.1:6380/0", **files}
    assert CacheSettings.model_validate(single).tls.cert_file == str(tls.client_cert)
    lock = LockSettings(url=Dsn("rediss://127.0.0.1:6380/0"), ca_file=str(tls.ca))
    assert lock.tls.ca_file == str(tls.ca)
    assert str(Dsn("redis+cluster://:secret@h1:1,h2:2")) == "redis+cluster://:***@h1:1,h2:2"


def test_check_config_names_every_bad_part(
    tmp_path: Path, tls: TLSFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f"""
[cache]
url = "rediss+clustre://127.0.0.1:7001"

[lock]
url = "redis+cluster://"

[db]
primary = "mysql+aiomysql://u:p@127.0.0.1:3306/chat?ssl_ca={tmp_path}/nope.pem"
"""
    )
    assert check_config(path, capsys) == {
        "cache.url": "unsupported scheme 'rediss+clustre' (expected redis://, rediss://, "
        "memory://, redis+cluster://, rediss+cluster://)",
        "lock.url": "redis+cluster:// URL needs at least one member (host:port,host:port)",
        "db.primary": f"ssl_ca: no such file: {tmp_path}/nope.pem",
    }


def test_check_config_names_each_bad_tls_file(
    tmp_path: Path, tls: TLSFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f"""
[cache]
url = "rediss+cluster://127.0.0.1:7001,127.0.0.1:7002"
ca_file = "{tmp_path}/nope.pem"
cert_file = "{tls.client_cert}"

[lock]
url = "redis://127.0.0.1:6379/0"
ca_file = "{tls.ca}"
"""
    )
    assert check_config(path, capsys) == {
        "cache.cert_file": "cert_file is set without key_file (a client certificate needs its key)",
        "cache.ca_file": f"ca_file: no such file: {tmp_path}/nope.pem",
        "lock.ca_file": "ca_file is for rediss:// and rediss+cluster:// URLs, not redis://",
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://h1:7001,,h3:7003", "member 2 of the host list is empty"),
        ("redis+cluster://h1:7001,h2:x", "port must be an integer in 1..65535"),
        ("redis+cluster://h1:7001,h2:7002/3", "a Redis Cluster has database 0 only"),
    ],
)
def test_bad_member_lists(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CacheSettings.model_validate({"url": url})


def test_lock_tls_files_need_a_lock_url(tls: TLSFiles) -> None:
    with pytest.raises(ValueError, match=r"TLS files need a \[lock\] url"):
        LockSettings(ca_file=str(tls.ca))


@pytest.mark.parametrize(
    "url", ["http://a:2379,http://b:2379", "redis://a:1,b:2/0", "http://a:2379,b:2379"]
)
def test_a_host_list_is_only_for_cluster_schemes(url: str) -> None:
    """Other schemes still refuse ``host:port,host:port`` (as before clusters)."""
    with pytest.raises(ValueError, match="port must be an integer"):
        Dsn(url)
