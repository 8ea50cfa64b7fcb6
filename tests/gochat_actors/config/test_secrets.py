"""Secrets (passwords in DSNs, SASL password) never show: repr, str, JSON dump, errors, sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gochat_actors import Dsn, SettingsError
from gochat_actors.config import explain_settings, load_settings

DB_PASSWORD = "db-Pa55-word"
REPLICA_PASSWORD = "replica-Pa55"
REDIS_PASSWORD = "redis-Pa55"
SASL_PASSWORD = "sasl-Pa55"
ALL = (DB_PASSWORD, REPLICA_PASSWORD, REDIS_PASSWORD, SASL_PASSWORD)


@pytest.fixture
def secret_settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.toml"
    path.write_text(
        f"""
        [db]
        primary = "mysql+aiomysql://app:{DB_PASSWORD}@127.0.0.1:3306/chat"
        replicas = ["mysql+aiomysql://ro:{REPLICA_PASSWORD}@127.0.0.1:3307/chat"]
        [cache]
        url = "redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
        [mq]
        brokers = "127.0.0.1:9092"
        security_protocol = "SASL_PLAINTEXT"
        sasl_username = "chat"
        sasl_password = "{SASL_PASSWORD}"
        """,
        encoding="utf-8",
    )
    return path


def assert_clean(text: str) -> None:
    for secret in ALL:
        assert secret not in text


def test_secrets_never_in_repr_str_or_json(secret_settings_file: Path) -> None:
    settings = load_settings(secret_settings_file)
    assert_clean(repr(settings))
    assert_clean(str(settings))
    for section in (settings.db, settings.cache, settings.mq):
        assert_clean(repr(section))
        assert_clean(str(section))
    assert_clean(settings.model_dump_json())
    dumped = settings.model_dump(mode="json")
    assert_clean(json.dumps(dumped))
    assert dumped["db"]["primary"] == "mysql+aiomysql://app:***@127.0.0.1:3306/chat"
    assert dumped["mq"]["sasl_password"] == "**********"
    assert_clean(repr(explain_settings(settings)))


def test_secrets_are_still_there_for_the_driver(secret_settings_file: Path) -> None:
    settings = load_settings(secret_settings_file)
    assert DB_PASSWORD in settings.db.primary.reveal()
    assert REPLICA_PASSWORD in settings.db.replicas[0].reveal()
    password = settings.cache.url.password
    assert password is not None
    assert password.get_secret_value() == REDIS_PASSWORD
    assert settings.mq.sasl_password.get_secret_value() == SASL_PASSWORD


def test_secrets_never_in_the_error_report(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each DSN here is invalid for its field, so its text could end up in a message.
    monkeypatch.setenv("GOCHAT_DB__PRIMARY", f"postgres://app:{DB_PASSWORD}@db:5432/chat")
    monkeypatch.setenv("GOCHAT_CACHE__URL", f"redis://:{REDIS_PASSWORD}@cache:99999/0")
    with pytest.raises(SettingsError) as exc:
        load_settings(
            db={"replicas": [f"mysql+aiomysql://ro:{REPLICA_PASSWORD}@h:3306/x", 5]},
            mq={"sasl_password": SASL_PASSWORD, "sasl_username": "u"},
        )
    assert len(exc.value.problems) >= 4
    assert_clean(str(exc.value))
    assert_clean(repr(exc.value.problems))


def test_secret_query_parameters_are_masked() -> None:
    dsn = Dsn(f"mysql+aiomysql://app@h:3306/chat?charset=utf8&password={DB_PASSWORD}")
    assert DB_PASSWORD not in str(dsn)
    assert str(dsn).endswith("charset=utf8&password=***")
    assert DB_PASSWORD in dsn.reveal()


def test_a_password_with_brackets_is_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression (issue 22 point 5): "malformed URL ('hunter2pw' does not appear to be an
    # IPv4 or IPv6 address)" showed the password.
    monkeypatch.setenv("GOCHAT_CACHE__URL", "redis://:x[hunter2pw]@127.0.0.1:6379/0")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    [problem] = exc.value.problems
    assert problem.path == "cache.url"
    assert "hunter2pw" not in str(exc.value)
    assert "percent-encode" in problem.message
