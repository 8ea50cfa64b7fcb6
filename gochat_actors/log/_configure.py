"""``configure``: structlog and stdlib logging through one chain of processors and outputs."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TextIO, cast

import structlog
from structlog.stdlib import ProcessorFormatter
from structlog.typing import EventDict, Processor

from ._processors import add_service, order_keys, redact_secrets
from ._settings import LogSettings

__all__ = ["configure", "configured", "get_logger", "is_configured", "reset"]

_extra_adder = structlog.stdlib.ExtraAdder()


def _add_extras(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's ``extra=`` fields, minus what a Formatter added (``message``)."""
    event_dict = _extra_adder(logger, method_name, event_dict)
    event_dict.pop("message", None)
    event_dict.pop("asctime", None)
    return event_dict


# What every event gets: structlog's (before reaching logging) and stdlib's (in the
# formatter, as ProcessorFormatter's foreign_pre_chain).
_COMMON: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.StackInfoRenderer(),
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
]
_FOREIGN_PRE_CHAIN: list[Processor] = [*_COMMON, _add_extras]


class _BoundLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib logger, except that ``exception()`` logs at error level through
    ``Logger.error``: the traceback is rendered (and masked) by the processors, and the
    record carries no raw ``exc_info`` for other handlers to print unmasked."""

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._proxy_to_logger("error", event, *args, **kw)


class _Handler(logging.Handler):
    """Marks the handlers configure() installed, so it can remove exactly those."""


class _StdStreamHandler(logging.StreamHandler[TextIO], _Handler):
    """Writes to ``sys.stdout``/``sys.stderr`` as they are *at emit time*, so a swapped
    stream (pytest's capture, a redirect) is followed and a closed old one never used."""

    def __init__(self, which: Literal["stdout", "stderr"]) -> None:
        self._which = which
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return cast(TextIO, getattr(sys, self._which))

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.<which>


class _FileHandler(logging.FileHandler, _Handler):
    pass


# The levels configure() changed, as they were before the first configure() (None: not
# changed), for reset() to put back.
_state: dict[str, Any] = {"root_level": None, "quiet_levels": None}

# Libraries whose info lines are one per request (httpx: one per etcd call): shown from
# warning up, unless the level is debug.
_CHATTY = ("httpx",)


def configure(settings: LogSettings | None = None, *, service: str = "gochat") -> None:
    """Set up structlog and stdlib logging from ``settings`` (``[log]``); safe to repeat.

    Every line (structlog's and stdlib's: aiokafka, SQLAlchemy...) gets ``timestamp``
    (ISO 8601, UTC), ``level``, ``event``, ``service``, ``logger``, the bound
    ``trace_id``, and goes to each of ``settings.outputs`` as JSON (``format="json"``)
    or for humans (``"console"``). Secrets are masked. httpx's one-line-per-request
    ``info`` lines show only at ``debug`` level. Calling it again replaces the previous
    outputs (no handler piles up); :func:`reset` undoes it; :func:`configured` restores
    what was there before.

    Raises :class:`OSError` if a file output cannot be opened (nothing is changed then).

    Example::

        configure(settings.log, service=settings.service.name)
        get_logger(__name__).info("started", port=9464)
    """
    settings = settings if settings is not None else LogSettings()
    handlers = _make_handlers(settings.outputs)  # may raise: before any change
    for handler, output in zip(handlers, settings.outputs, strict=True):
        handler.setFormatter(_make_formatter(settings, service, output))

    root = logging.getLogger()
    _remove_handlers(root)
    if _state["root_level"] is None:
        _state["root_level"] = root.level
    if _state["quiet_levels"] is None:
        _state["quiet_levels"] = {name: logging.getLogger(name).level for name in _CHATTY}
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(settings.level.upper())
    for name, level in _state["quiet_levels"].items():
        logging.getLogger(name).setLevel(level if settings.level == "debug" else logging.WARNING)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_COMMON,
            structlog.stdlib.PositionalArgumentsFormatter(),
            # rendered and masked here already, so any other handler on the way (pytest's
            # log capture, say) gets a clean event too
            structlog.processors.format_exc_info,
            redact_secrets,
            ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=_BoundLogger,
        # Not cached: loggers bound before a later configure() (or a test's
        # structlog.testing.capture_logs) must follow the configuration in force.
        cache_logger_on_first_use=False,
    )


def reset() -> None:
    """Undo :func:`configure`: remove its outputs (files closed), restore the root level
    and structlog's defaults.

    Example::

        configure(LogSettings(outputs=("/tmp/x.log",)))
        reset()   # /tmp/x.log is closed
    """
    root = logging.getLogger()
    _remove_handlers(root)
    if _state["root_level"] is not None:
        root.setLevel(_state["root_level"])
        _state["root_level"] = None
    if _state["quiet_levels"] is not None:
        for name, level in _state["quiet_levels"].items():
            logging.getLogger(name).setLevel(level)
        _state["quiet_levels"] = None
    structlog.reset_defaults()


@dataclass(frozen=True, slots=True)
class _Saved:
    handlers: list[logging.Handler]
    root_level: int
    levels: dict[str, int]
    state: dict[str, Any]
    structlog_config: dict[str, Any] | None


@contextmanager
def configured(settings: LogSettings | None = None, *, service: str = "gochat") -> Iterator[None]:
    """:func:`configure` for the ``with`` block; on exit the logging configuration in
    force before (another one, or none) is back: its outputs, levels and structlog's
    configuration. ``open_service`` configures logging this way. Logging is one per
    process: nested blocks restore in turn; of two services whose lives overlap without
    nesting, the one that exits first puts back what was there before it started.

    Raises :class:`OSError` if a file output cannot be opened (nothing is changed then).

    Example::

        with configured(settings.log, service="chat-gateway"):
            get_logger(__name__).info("in the service's format")
        # back to the configuration (or the absence of one) from before
    """
    root = logging.getLogger()
    saved = _Saved(
        handlers=[h for h in root.handlers if isinstance(h, _Handler)],
        root_level=root.level,
        levels={name: logging.getLogger(name).level for name in _CHATTY},
        state=dict(_state),
        structlog_config=structlog.get_config() if structlog.is_configured() else None,
    )
    for handler in saved.handlers:
        root.removeHandler(handler)  # kept open: they come back on exit
    try:
        configure(settings, service=service)
    except BaseException:
        _restore(saved)
        raise
    try:
        yield
    finally:
        _restore(saved)


def _restore(saved: _Saved) -> None:
    root = logging.getLogger()
    _remove_handlers(root)
    for handler in saved.handlers:
        root.addHandler(handler)
    root.setLevel(saved.root_level)
    for name, level in saved.levels.items():
        logging.getLogger(name).setLevel(level)
    _state.clear()
    _state.update(saved.state)
    if saved.structlog_config is None:
        structlog.reset_defaults()
    else:
        structlog.configure(**saved.structlog_config)


def is_configured() -> bool:
    """True between :func:`configure` and :func:`reset`.

    Example::

        if not is_configured():
            configure()
    """
    return any(isinstance(h, _Handler) for h in logging.getLogger().handlers)


def get_logger(name: str | None = None, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (the ``logger`` field), with ``initial_values`` bound.

    Example::

        log = get_logger(__name__, component="cache")
        log.info("connected", url=settings.cache.url)   # url's password masked
    """
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial_values)
    return logger


def _make_handlers(outputs: tuple[str, ...]) -> list[_Handler]:
    handlers: list[_Handler] = []
    try:
        for output in outputs:
            handlers.append(_make_handler(output))
    except BaseException:
        for handler in handlers:  # the files opened before the one that failed
            handler.close()
        raise
    return handlers


def _make_handler(output: str) -> _Handler:
    if output in ("stdout", "stderr"):
        return _StdStreamHandler(output)  # type: ignore[arg-type]
    return _FileHandler(output, mode="a", encoding="utf-8")


def _make_formatter(settings: LogSettings, service: str, output: str) -> ProcessorFormatter:
    renderer: Processor
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        stream = getattr(sys, output, None) if output in ("stdout", "stderr") else None
        colors = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        renderer = structlog.dev.ConsoleRenderer(colors=colors)
    return ProcessorFormatter(
        foreign_pre_chain=_FOREIGN_PRE_CHAIN,
        processors=[
            ProcessorFormatter.remove_processors_meta,
            add_service(service),
            structlog.processors.format_exc_info,
            redact_secrets,
            order_keys,
            renderer,
        ],
    )


def _remove_handlers(root: logging.Logger) -> None:
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
        handler.close()
