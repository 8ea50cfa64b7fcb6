"""load_settings: defaults < TOML file < environment < overrides, and where each value came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from gochat_actors import Dsn
from gochat_actors.config import (
    CONFIG_ENV_VAR,
    DBSettings,
    LogSettings,
    Settings,
    SettingSource,
    env_var_name,
    explain_settings,
    load_settings,
    settings_sources,
)

# The "Settings shape" of DESIGN.md, verbatim: its names and defaults are fixed.
DESIGN_SHAPE = """
[service]
name = "gochat"                      # the `service` field of every log line

[log]
level = "info"
format = "json"                      # or "console"
outputs = ["stdout"]                 # stdout, stderr, or file paths

[http]
enabled = true
host = "127.0.0.1"
port = 9464

[db]
primary = "sqlite+aiosqlite:///:memory:"
replicas = []
pool_size = 10
probe_interval = 2.0
max_lag = 5.0
sticky_seconds = 2.0

[cache]
url = "memory://"                    # or "redis://127.0.0.1:6379/0"
key_prefix = ""

[lock]
url = ""                             # empty = the cache's url
default_ttl = 10.0

[mq]
brokers = "memory://"                # or "127.0.0.1:9092"
client_id = "gochat"

[idgen]
etcd = ""                            # empty = static machine_id
machine_id = 1                       # used when etcd is empty
key_prefix = "/gochat/machine_ids/"
lease_ttl = 10.0
epoch_ms = 1288834974657
"""


def write(tmp_path: Path, text: str, name: str = "gochat.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_the_design_shape(tmp_path: Path) -> None:
    from_file = load_settings(write(tmp_path, DESIGN_SHAPE))
    assert from_file == load_settings() == Settings()
    assert {str(s) for s in settings_sources(load_settings()).values()} == {"default"}


def test_embedded_defaults_need_no_server() -> None:
    settings = load_settings()
    assert settings.db.primary.scheme == "sqlite+aiosqlite"
    assert settings.cache.url == Dsn("memory://")
    assert not settings.lock.url
    assert settings.mq.brokers == "memory://"
    assert settings.mq.is_memory
    assert not settings.idgen.etcd
    assert settings.http.host == "127.0.0.1"


def test_layering_default_file_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path,
        """
        [db]
        pool_size = 20
        max_lag = 7.5
        probe_interval = 3.0
        [http]
        port = 9000
        """,
    )
    monkeypatch.setenv("GOCHAT_DB__MAX_LAG", "9.5")
    monkeypatch.setenv("GOCHAT_DB__PROBE_INTERVAL", "4.0")
    monkeypatch.setenv("GOCHAT_HTTP__HOST", "0.0.0.0")

    settings = load_settings(path, db={"probe_interval": 5.0})

    assert settings.db.sticky_seconds == 2.0  # default
    assert settings.db.pool_size == 20  # file
    assert settings.db.max_lag == 9.5  # env beats file
    assert settings.db.probe_interval == 5.0  # override beats env and file
    assert settings.http.port == 9000  # file, next to an env value in the same section
    assert settings.http.host == "0.0.0.0"  # env

    sources = settings_sources(settings)
    assert sources["db.sticky_seconds"] == SettingSource("default")
    assert sources["db.pool_size"] == SettingSource("file", str(path))
    assert sources["db.max_lag"] == SettingSource("env", "GOCHAT_DB__MAX_LAG")
    assert sources["db.probe_interval"] == SettingSource("override")
    assert sources["http.port"] == SettingSource("file", str(path))
    assert str(sources["http.host"]) == "env GOCHAT_HTTP__HOST"


def test_overrides_merge_per_field_not_per_section(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "debug"\nformat = "console"\n')
    settings = load_settings(path, log={"format": "json"})
    assert settings.log.level == "debug"  # kept from the file
    assert settings.log.format == "json"


def test_override_with_a_section_model_uses_only_its_set_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "[db]\npool_size = 20\n")
    settings = load_settings(path, db=DBSettings(max_lag=1.0))
    assert settings.db.pool_size == 20
    assert settings.db.max_lag == 1.0
    assert settings_sources(settings)["db.max_lag"] == SettingSource("override")


def test_config_file_named_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[service]\nname = "from-env-file"\n')
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    settings = load_settings()
    assert settings.service.name == "from-env-file"
    assert settings_sources(settings)["service.name"] == SettingSource("file", str(path))


def test_explicit_path_beats_config_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, str(write(tmp_path, '[service]\nname = "a"\n', "a.toml")))
    settings = load_settings(write(tmp_path, '[service]\nname = "b"\n', "b.toml"))
    assert settings.service.name == "b"


def test_env_names_are_case_insensitive_and_reported_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("gochat_service__name", "lower")
    settings = load_settings()
    assert settings.service.name == "lower"
    assert settings_sources(settings)["service.name"] == SettingSource(
        "env", "gochat_service__name"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("stdout,stderr", ("stdout", "stderr")),
        ('["stderr", "/tmp/a.log"]', ("stderr", "/tmp/a.log")),
        ("stdout, stdout", ("stdout",)),
    ],
)
def test_env_lists_are_json_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("GOCHAT_LOG__OUTPUTS", raw)
    assert load_settings().log.outputs == expected


def test_env_section_as_json_then_field_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOCHAT_DB", '{"pool_size": 3, "max_lag": 1.0}')
    monkeypatch.setenv("GOCHAT_DB__POOL_SIZE", "4")
    settings = load_settings()
    assert (settings.db.pool_size, settings.db.max_lag) == (4, 1.0)
    sources = settings_sources(settings)
    assert sources["db.pool_size"] == SettingSource("env", "GOCHAT_DB__POOL_SIZE")
    assert sources["db.max_lag"] == SettingSource("env", "GOCHAT_DB")


def test_env_replica_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "GOCHAT_DB__REPLICAS",
        "mysql+aiomysql://ro:pw@10.0.0.2:3306/chat,mysql+aiomysql://ro:pw@10.0.0.3:3306/chat",
    )
    replicas = load_settings().db.replicas
    assert [r.host for r in replicas] == ["10.0.0.2", "10.0.0.3"]


def test_settings_constructor_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOCHAT_DB__POOL_SIZE", "99")
    assert Settings().db.pool_size == 10
    assert load_settings().db.pool_size == 99


def test_settings_sources_of_a_directly_built_settings() -> None:
    settings = Settings(log=LogSettings(level="debug"))
    sources = settings_sources(settings)
    assert sources["log.level"] == SettingSource("override")
    assert sources["log.format"] == SettingSource("default")
    assert sources["db.primary"] == SettingSource("default")


def test_settings_are_immutable() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.db.pool_size = 3


def test_explain_settings_lists_every_field_with_source_and_env(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nport = 8080\n")
    rows = {row.path: row for row in explain_settings(load_settings(path))}
    expected_paths = {
        f"{section}.{field}"
        for section, model in Settings.model_fields.items()
        for field in model.annotation.model_fields  # type: ignore[union-attr]
    }
    assert set(rows) == expected_paths
    assert rows["http.port"].value == 8080
    assert rows["http.port"].source == SettingSource("file", str(path))
    assert rows["http.port"].env == "GOCHAT_HTTP__PORT"
    assert rows["db.primary"].value == "sqlite+aiosqlite:///:memory:"


def test_env_var_name() -> None:
    assert env_var_name("idgen.lease_ttl") == "GOCHAT_IDGEN__LEASE_TTL"
