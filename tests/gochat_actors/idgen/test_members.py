"""``[idgen] etcd`` as a member list, and the auth/TLS settings (issue 20): one problem
per bad part, in ``check-config`` too; the password never shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gochat_actors import Dsn, SettingsError, load_settings
from gochat_actors.config import explain_settings
from gochat_actors.idgen import IdGenerator, IdGenSettings
from gochat_actors.idgen._backends import BACKENDS, EtcdOptions
from gochat_actors.idgen._cluster import ClusterEtcd
from gochat_actors.idgen._etcd import HttpEtcd
from gochat_actors.idgen._members import EtcdMembers

THREE = "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793"
PASSWORD = "etcd-Pa55-word"


def problems(**idgen: object) -> list[tuple[str, str]]:
    with pytest.raises(SettingsError) as info:
        load_settings(idgen=idgen)
    return [(p.path, p.message) for p in info.value.problems]


def test_a_member_list_keeps_every_member() -> None:
    settings = IdGenSettings.model_validate({"etcd": f" {THREE.replace(',', ' , ')} "})
    assert isinstance(settings.etcd, EtcdMembers)
    assert [m.port for m in settings.etcd_members] == [23791, 23792, 23793]
    assert settings.etcd.reveal() == THREE
    assert settings.etcd.scheme == "http"
    assert bool(settings.etcd)
    assert settings.model_dump(mode="json")["etcd"] == THREE


def test_one_url_is_the_single_server_form_unchanged() -> None:
    settings = IdGenSettings(etcd=Dsn("http://127.0.0.1:2379"))
    assert type(settings.etcd) is Dsn
    assert settings.etcd_members == (Dsn("http://127.0.0.1:2379"),)
    assert IdGenSettings().etcd_members == ()
    assert IdGenerator(settings).request_timeout == pytest.approx(10.0 / 3)


def test_a_cluster_gets_a_request_timeout_a_renewal_can_afford_twice() -> None:
    # 2/3 * 10 - 2 = 4.67 s between a renewal and its deadline: 2.33 s per member
    ids = IdGenerator(IdGenSettings.model_validate({"etcd": THREE}))
    assert ids.request_timeout == pytest.approx((10 * 2 / 3 - 2) / 2)


def test_member_passwords_are_masked() -> None:
    settings = IdGenSettings.model_validate(
        {"etcd": f"http://u:{PASSWORD}@127.0.0.1:1,http://127.0.0.1:2"}
    )
    for text in (str(settings.etcd), repr(settings.etcd), repr(settings)):
        assert PASSWORD not in text
    assert str(settings.etcd) == "http://u:***@127.0.0.1:1,http://127.0.0.1:2"
    assert PASSWORD in settings.etcd.reveal()


@pytest.mark.parametrize(
    ("etcd", "messages"),
    [
        (",", ["empty member list"]),
        (" , , ", ["empty member list"]),
        (
            "http://a:1,,http://b:2,",
            [
                "member 2 of 4 is empty (two commas in a row, or one at an end)",
                "member 4 of 4 is empty (two commas in a row, or one at an end)",
            ],
        ),
        (
            "grpc://a:1,http://b:99999,b:3",
            [
                "member 1 of 3: unsupported scheme 'grpc' (expected http://, https://; "
                "memory:// only alone)",
                "member 2 of 3: port must be an integer in 1..65535",
                "member 3 of 3: not a URL: expected scheme://...",
            ],
        ),
        ("memory://,http://a:1", ["member 1 of 2: unsupported scheme 'memory'"]),
        ("http://a:1,https://b:2", ["the members mix http:// and https://"]),
        ("http://a:1,http://a:1", ["member 2 of 2 repeats member 1"]),
        ("http://a:1,http:///x", ["member 2 of 2: http:// URL needs a host"]),
    ],
)
def test_each_bad_part_is_its_own_problem(etcd: str, messages: list[str]) -> None:
    found = problems(etcd=etcd)
    assert [path for path, _ in found] == ["idgen.etcd"] * len(messages)
    for (_, message), expected in zip(found, messages, strict=True):
        assert message.startswith(expected), (message, expected)


def test_auth_and_tls_settings_that_cannot_work() -> None:
    assert problems(etcd="", etcd_user="root", etcd_password="pw") == [
        ("idgen.etcd_user", "etcd_user/etcd_password are set but etcd is not an http(s):// URL")
    ]
    assert problems(etcd=THREE, etcd_password="pw") == [
        ("idgen.etcd_password", "etcd_password needs etcd_user")
    ]
    assert problems(etcd=THREE, etcd_ca_file="/ca.pem") == [
        ("idgen.etcd_ca_file", "etcd TLS files are set but the etcd members are not https://")
    ]
    https = THREE.replace("http:", "https:")
    [(path, message)] = problems(etcd=https, etcd_cert_file="/c.pem")
    assert path == "idgen.etcd_cert_file"
    assert message.startswith("etcd_cert_file and etcd_key_file go together")
    # https without a CA file: the system's CAs (etcd behind a public CA)
    assert load_settings(idgen={"etcd": https}).idgen.etcd_ca_file == ""


def test_the_password_is_a_secret_everywhere() -> None:
    settings = load_settings(idgen={"etcd": THREE, "etcd_user": "root", "etcd_password": PASSWORD})
    assert settings.idgen.etcd_password.get_secret_value() == PASSWORD
    for text in (
        repr(settings),
        settings.model_dump_json(),
        repr(explain_settings(settings)),
        repr(EtcdOptions.from_settings(settings.idgen)),
    ):
        assert PASSWORD not in text
    assert settings.model_dump(mode="json")["idgen"]["etcd_password"] == "**********"


def test_the_factory_builds_a_cluster_client_with_the_options() -> None:
    settings = IdGenSettings.model_validate(
        {"etcd": THREE, "etcd_user": "root", "etcd_password": PASSWORD, "lease_ttl": 6.0}
    )
    options = EtcdOptions.from_settings(settings)
    backend = BACKENDS.factory("http")(settings.etcd, 1.5, options)
    assert isinstance(backend, ClusterEtcd)
    assert backend.members == tuple(THREE.split(","))
    assert (backend.timeout, backend.retry_after, backend.request_bound) == (1.5, 6.0, 4.5)
    assert PASSWORD not in repr(backend)
    single = BACKENDS.factory("http")(Dsn("http://127.0.0.1:2379"), 1.5, options)
    assert isinstance(single, HttpEtcd)


def test_tls_files_that_cannot_be_read_are_a_typed_error(tmp_path: Path) -> None:
    from gochat_actors import IdGenUnavailable

    options = EtcdOptions(ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(IdGenUnavailable, match="etcd TLS files cannot be used"):
        options.tls_context()
    assert EtcdOptions().tls_context() is True


def test_check_config_prints_one_line_per_bad_member(tmp_path: Path) -> None:
    path = tmp_path / "chat.toml"
    path.write_text(
        f'[idgen]\netcd = "grpc://a:1,,https://b:2"\netcd_password = "{PASSWORD}"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
    result = subprocess.run(
        [sys.executable, "-m", "gochat_actors.cli", "check-config", "--json", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert PASSWORD not in result.stdout + result.stderr
    found = [(p["path"], p["message"]) for p in json.loads(result.stdout)["problems"]]
    assert [p for p, _ in found] == ["idgen.etcd", "idgen.etcd"]
    assert found[0][1].startswith("member 1 of 3: unsupported scheme 'grpc'")
    assert found[1][1].startswith("member 2 of 3 is empty")


def test_check_runtime_names_tls_files_that_cannot_be_read(tmp_path: Path) -> None:
    from gochat_actors.config import check_runtime

    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here: only that it can be read\n", encoding="utf-8")
    settings = load_settings(
        idgen={
            "etcd": THREE.replace("http:", "https:"),
            "etcd_ca_file": str(ca),
            "etcd_cert_file": str(tmp_path / "client.pem"),
            "etcd_key_file": str(tmp_path),
        }
    )
    found = [(p.path, p.message) for p in check_runtime(settings)]
    assert found == [
        ("idgen.etcd_cert_file", f"{tmp_path / 'client.pem'}: not a readable file"),
        ("idgen.etcd_key_file", f"{tmp_path}: not a readable file"),
    ]
