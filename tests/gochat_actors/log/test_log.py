"""configure(): JSON lines / console, outputs, stdlib routing, trace IDs, idempotence, secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from gochat_actors import log
from gochat_actors.config import load_settings
from gochat_actors.log import LogSettings


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    log.reset()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if type(h).__module__.startswith("gochat")]


def test_json_line_fields(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings(), service="chat-gateway")
    log.get_logger("gateway").info("user joined", room=7)

    [line] = json_lines(capsys.readouterr().out)
    assert list(line)[:4] == ["timestamp", "level", "event", "service"]
    assert line["level"] == "info"
    assert line["event"] == "user joined"
    assert line["service"] == "chat-gateway"
    assert line["logger"] == "gateway"
    assert line["room"] == 7
    assert "trace_id" not in line
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60


def test_trace_context_binds_and_restores(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings())
    logger = log.get_logger("t")
    assert log.current_trace_id() is None
    with log.trace_context() as outer:
        assert len(outer) == 32
        assert log.current_trace_id() == outer
        logger.info("outer")
        with log.trace_context("inner-1") as inner:
            assert inner == "inner-1"
            logger.info("inner")
        assert log.current_trace_id() == outer
    assert log.current_trace_id() is None
    logger.info("none")

    lines = json_lines(capsys.readouterr().out)
    assert [line.get("trace_id") for line in lines] == [outer, "inner-1", None]


def test_bind_trace_id_and_new_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings())
    with log.trace_context():  # restores whatever bind_trace_id does inside
        log.bind_trace_id("abc")
        assert log.current_trace_id() == "abc"
        log.get_logger().warning("bound")
    assert json_lines(capsys.readouterr().out)[0]["trace_id"] == "abc"
    assert log.new_trace_id() != log.new_trace_id()
    with pytest.raises(ValueError, match="non-empty"):
        log.bind_trace_id("")


def test_set_and_reset_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings())
    logger = log.get_logger("t")
    with log.trace_context("outer"):
        token = log.set_trace_id("fast-1")
        try:
            assert log.current_trace_id() == "fast-1"
            logger.info("inside")
        finally:
            log.reset_trace_id(token)
        assert log.current_trace_id() == "outer"
        logger.info("after")
    assert log.current_trace_id() is None
    token = log.set_trace_id("alone")
    log.reset_trace_id(token)
    assert log.current_trace_id() is None
    lines = json_lines(capsys.readouterr().out)
    assert [line["trace_id"] for line in lines] == ["fast-1", "outer"]
    for bad in ("", "x" * 129, "line\nbreak"):
        with pytest.raises(ValueError, match="trace_id must be"):
            log.set_trace_id(bad)
    assert log.current_trace_id() is None


def test_new_trace_ids_are_32_hex_digits() -> None:
    ids = {log.new_trace_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids)


async def test_trace_ids_follow_trio_tasks(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings())
    logger = log.get_logger("tasks")
    seen: dict[str, str | None] = {}

    async def worker(name: str, trace_id: str | None) -> None:
        if trace_id is None:
            seen[name] = log.current_trace_id()
            logger.info(name)
            return
        with log.trace_context(trace_id):
            await trio.lowlevel.checkpoint()
            seen[name] = log.current_trace_id()
            logger.info(name)

    with log.trace_context("parent"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker, "a", "trace-a")
            nursery.start_soon(worker, "b", "trace-b")
            nursery.start_soon(worker, "inherits", None)
    assert seen == {"a": "trace-a", "b": "trace-b", "inherits": "parent"}
    by_event = {line["event"]: line["trace_id"] for line in json_lines(capsys.readouterr().out)}
    assert by_event == {"a": "trace-a", "b": "trace-b", "inherits": "parent"}


def test_stdlib_logging_goes_through_the_same_chain(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings(), service="svc")
    with log.trace_context("t-1"):
        logging.getLogger("aiokafka.consumer").warning(
            "rebalance of %s", "group-1", extra={"generation": 3}
        )
    [line] = json_lines(capsys.readouterr().out)
    assert line["event"] == "rebalance of group-1"
    assert line["level"] == "warning"
    assert line["logger"] == "aiokafka.consumer"
    assert line["service"] == "svc"
    assert line["trace_id"] == "t-1"
    assert line["generation"] == 3
    assert "timestamp" in line


def test_level_filters_both_structlog_and_stdlib(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings(level="warning"))
    log.get_logger("x").info("dropped")
    logging.getLogger("sqlalchemy.pool").info("dropped too")
    log.get_logger("x").error("kept")
    assert [line["event"] for line in json_lines(capsys.readouterr().out)] == ["kept"]

    log.configure(LogSettings(level="debug"))
    log.get_logger("x").debug("now visible")
    assert [line["event"] for line in json_lines(capsys.readouterr().out)] == ["now visible"]


def test_exceptions_are_rendered(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings())
    try:
        raise KeyError("missing-key")
    except KeyError:
        log.get_logger("x").exception("lookup failed")
    [line] = json_lines(capsys.readouterr().out)
    assert line["level"] == "error"
    assert "KeyError: 'missing-key'" in line["exception"]


def test_console_format_is_for_humans(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings(format="console"), service="svc")
    log.get_logger("x").info("hello console", k=1)
    out = capsys.readouterr().out
    assert "hello console" in out
    assert "k=1" in out
    assert "service=svc" in out
    assert "\x1b[" not in out  # captured stdout is no tty: no colors
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


def test_several_outputs_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "chat.log"
    log.configure(LogSettings(outputs=("stdout", "stderr", str(path))))
    log.get_logger("x").info("everywhere")
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, path.read_text(encoding="utf-8")):
        assert [line["event"] for line in json_lines(text)] == ["everywhere"]


def test_configure_is_idempotent(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    for _ in range(5):
        log.configure(LogSettings(outputs=("stdout", str(path))))
    assert len(ours()) == 2
    log.get_logger("x").info("once")
    assert len(json_lines(capsys.readouterr().out)) == 1
    assert len(json_lines(path.read_text(encoding="utf-8"))) == 1


def test_reconfigure_switches_outputs_and_reset_undoes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first, second = tmp_path / "1.log", tmp_path / "2.log"
    log.configure(LogSettings(outputs=(str(first),)))
    log.get_logger("x").info("to first")
    log.configure(LogSettings(outputs=(str(second),)))
    log.get_logger("x").info("to second")
    assert [e["event"] for e in json_lines(first.read_text(encoding="utf-8"))] == ["to first"]
    assert [e["event"] for e in json_lines(second.read_text(encoding="utf-8"))] == ["to second"]

    assert log.is_configured()
    log.reset()
    assert not log.is_configured()
    assert ours() == []
    logging.getLogger("x").warning("after reset")
    assert "after reset" not in second.read_text(encoding="utf-8")


def test_unwritable_file_output_raises_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    log.configure(LogSettings(), service="before")
    with pytest.raises(OSError, match="No such file"):
        log.configure(LogSettings(outputs=(str(tmp_path / "no" / "dir" / "x.log"),)))
    log.get_logger("x").info("still here")
    [line] = json_lines(capsys.readouterr().out)
    assert line["service"] == "before"


def test_an_output_that_fails_closes_the_files_opened_before_it(tmp_path: Path) -> None:
    # "nothing is changed then": the outputs listed before the failing one were opened
    # and left open (a file descriptor per failed call, closed only by the GC).
    opened: list[logging.FileHandler] = []
    real_init = logging.FileHandler.__init__

    def recording_init(self: logging.FileHandler, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        opened.append(self)

    bad = str(tmp_path / "no" / "dir" / "x.log")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.FileHandler, "__init__", recording_init)
        with pytest.raises(OSError, match="No such file"):
            log.configure(LogSettings(outputs=(str(tmp_path / "a.log"), bad)))
    [handler] = opened
    assert handler.stream is None  # closed


def test_secrets_never_reach_the_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db_pw, redis_pw, sasl_pw = "Db-s3cret-pw", "Redis-s3cret-pw", "Sasl-s3cret-pw"
    settings = load_settings(
        db={"primary": f"mysql+aiomysql://app:{db_pw}@127.0.0.1:3306/chat"},
        cache={"url": f"redis://:{redis_pw}@127.0.0.1:6379/0"},
        mq={
            "brokers": "127.0.0.1:9092",
            "security_protocol": "SASL_SSL",
            "sasl_username": "u",
            "sasl_password": sasl_pw,
        },
        log={"outputs": ["stdout", str(tmp_path / "s.log")]},
    )
    log.configure(settings.log)
    logger = log.get_logger("x")
    logger.info("settings", settings=settings, db=settings.db, url=settings.cache.url)
    logger.info(
        "sasl",
        password=sasl_pw,
        nested={"password": sasl_pw, "urls": [settings.cache.url.reveal()]},
    )
    logger.info(f"connecting to {settings.db.primary.reveal()}")
    logging.getLogger("aiomysql").error("cannot reach %s", settings.db.primary.reveal())
    try:
        raise ConnectionError(f"refused: {settings.cache.url.reveal()}")
    except ConnectionError:
        logger.exception("cache down")

    outputs = [capsys.readouterr().out, (tmp_path / "s.log").read_text(encoding="utf-8")]
    for text in outputs:
        assert len(json_lines(text)) == 5
        assert "mysql+aiomysql://app:***@127.0.0.1:3306/chat" in text
        for secret in (db_pw, redis_pw, sasl_pw):
            assert secret not in text


def test_structlog_events_are_masked_for_other_handlers_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log.configure(LogSettings())
    secret = "Only-in-clear-here"
    try:
        raise ConnectionError(f"refused: redis://:{secret}@h:6379/0")
    except ConnectionError:
        log.get_logger("x").exception("down", password=secret)
    assert caplog.records, "pytest's handler saw the event"
    assert secret not in caplog.text


def test_stdlib_records_get_no_formatter_noise(capsys: pytest.CaptureFixture[str]) -> None:
    log.configure(LogSettings())
    logging.getLogger("sqlalchemy.engine").warning("plain")
    [line] = json_lines(capsys.readouterr().out)
    assert set(line) == {"timestamp", "level", "event", "service", "logger"}


def test_a_logger_used_under_one_configuration_follows_the_next() -> None:
    import structlog.testing

    logger = log.get_logger("reconfigured")
    log.configure(LogSettings(level="error"))
    logger.error("under the first configuration")
    log.reset()
    with structlog.testing.capture_logs() as logs:
        logger.warning("seen by capture_logs")
    assert [entry["event"] for entry in logs] == ["seen by capture_logs"]


def test_httpx_request_lines_are_quiet_unless_debug(capsys: pytest.CaptureFixture[str]) -> None:
    # Regression (issue 22 point 8): httpx wrote one info line per etcd request.
    httpx_logger = logging.getLogger("httpx")
    before = httpx_logger.level
    log.configure(LogSettings())
    httpx_logger.info("HTTP Request: POST http://127.0.0.1:2379/v3/kv/range")
    httpx_logger.warning("kept")
    assert [line["event"] for line in json_lines(capsys.readouterr().out)] == ["kept"]
    log.configure(LogSettings(level="debug"))
    httpx_logger.info("HTTP Request: at debug level")
    assert [line["event"] for line in json_lines(capsys.readouterr().out)] == [
        "HTTP Request: at debug level"
    ]
    log.reset()
    assert httpx_logger.level == before


def test_configured_restores_what_was_there_before(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import structlog

    root = logging.getLogger()
    before_handlers, before_level = list(root.handlers), root.level
    with log.configured(LogSettings(outputs=(str(tmp_path / "a.log"),))):
        assert log.is_configured()
    assert list(root.handlers) == before_handlers
    assert root.level == before_level
    assert not structlog.is_configured()

    log.configure(LogSettings(format="console"), service="outer")
    outer = ours()
    config = structlog.get_config()
    with log.configured(LogSettings(level="debug", outputs=("stderr",)), service="inner"):
        log.get_logger("x").debug("inner line")
        with log.configured(LogSettings(outputs=(str(tmp_path / "b.log"),))):
            log.get_logger("x").info("innermost")
        log.get_logger("x").debug("inner again")
    log.get_logger("x").info("outer line")
    assert ours() == outer
    assert structlog.get_config() == config
    captured = capsys.readouterr()
    assert [line["event"] for line in json_lines(captured.err)] == ["inner line", "inner again"]
    assert "outer line" in captured.out
    assert "service=outer" in captured.out
    assert "innermost" in (tmp_path / "b.log").read_text(encoding="utf-8")
