"""SQLAlchemy and driver exceptions translated at the edge into the ``DBError`` tree.

::

    driver / SQLAlchemy error                         ours
    IntegrityError (1062 duplicate, 1452 FK...)  ->  DBIntegrityError
    ProgrammingError (1064 syntax, 1146 table),  ->  DBProgrammingError (.statement, no params)
      SQLite "syntax error" / "no such table"
    disconnects (2002, 2003, 2006, 2013...), OSError,
      the bridge gone                            ->  DBUnavailable
    1205 lock wait, 1969 statement time, pool
      checkout timeout                           ->  DBTimeout
    1213 deadlock, SQLSTATE 40001, SQLite busy   ->  DBError, retryable (is_retryable)
    anything else                                ->  DBError

The codes are each dialect's (``_mysql.py``, ``_sqlite.py``): the dialect whose driver
raised the error (see ``_backends.dialect_of_error``) says what its code means. The
original is ``__cause__``. Parameter values never reach our messages: the engines
run with ``hide_parameters=True``, and quoted values the server echoes back
(``Duplicate entry 'alice@example.com'``) are masked, in our message and in the
cause's driver message alike; the cause's ``params`` is dropped.

SQLAlchemy is imported inside :func:`translate` (only when there is an error to
translate), so this module is light to import.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterator
from typing import Any

from .._dsn import mask_urls
from .._exceptions import (
    BridgeError,
    DBError,
    DBIntegrityError,
    DBProgrammingError,
    DBTimeout,
    DBUnavailable,
)
from ._backends import dialect_of_error
from ._dialect import driver_code

__all__ = [
    "DRIVER_ERRORS",
    "driver_code",
    "is_db_failure",
    "is_retryable",
    "redact_server_message",
    "translate",
    "watch_driver_errors",
]

DRIVER_ERRORS: tuple[type[BaseException], ...] = (OSError, BridgeError)
"""Non-SQLAlchemy errors a backend's own call (a probe, the engine's disposal) may raise
that :func:`translate` maps. A call running the user's code maps fewer: see
:func:`is_db_failure`."""

RETRYABLE_SQLSTATES = frozenset({"40001"})
"""SQLSTATEs that are retryable in every dialect (a serialization failure)."""

# Where MariaDB/MySQL echo a value (never an identifier), matched greedily: the value may
# hold quotes of its own, and is cut short (64 chars in 1062, 80 after "near").
_ECHOED = (
    re.compile(r"(Duplicate entry ')(.*)(' for key )", re.DOTALL),  # 1062, 1586
    re.compile(r"(value: ')(.*)('(?: for column | at row |$))", re.DOTALL),  # 1366, 1292...
)
_NEAR = re.compile(r"(near ')(.*)(' at line \d+)", re.DOTALL)
# A quoted name the server gives after one of these words is an identifier, kept.
_NAME_BEFORE = re.compile(
    r"(?:\b(?:key|column|table|index|constraint|database|schema|field|function|procedure"
    r"|variable|user|host|server on|engine|plugin|charset|collation|parameter)\s+|@)$",
    re.IGNORECASE,
)
_NAME = re.compile(r"[\w$.`-]{1,192}")
_CONTRACTION = re.compile(r"(?<=n)'(?=t\b)")  # "Can't", "doesn't": not a quote
_MAX_VALUES = 10_000


def is_retryable(exc: BaseException) -> bool:
    """True for a deadlock or a lock-wait/serialization failure: retry the transaction.

    Example::

        except DBError as exc:
            if is_retryable(exc):
                ...  # run the whole transaction again
    """
    dialect, code = dialect_of_error(exc)
    if code is None:
        return False
    return code in RETRYABLE_SQLSTATES or dialect.retryable(code)


def watch_driver_errors(engine: Any) -> None:
    """Make every exception the driver raises under ``engine`` (a sync ``Engine``) a
    SQLAlchemy error, so it is translated and never confused with the user's own.

    SQLAlchemy wraps the driver's DB-API errors, not the rest: a ``TypeError`` for a
    parameter the driver cannot send, an ``OSError`` from its socket. Those become a
    ``StatementError`` (a ``DBProgrammingError`` once translated) and an
    ``OperationalError`` on an invalidated connection (``DBUnavailable``). An exception
    raised by the user's own code in ``run_sync`` or ``with_transaction`` never passes
    here and comes back as itself.

    Example::

        watch_driver_errors(async_engine.sync_engine)
    """
    from sqlalchemy import event

    event.listen(engine, "handle_error", _wrap_driver_error)


def _wrap_driver_error(context: Any) -> BaseException | None:
    import sqlalchemy.exc as sa_exc

    exc = context.original_exception
    if context.sqlalchemy_exception is not None or not isinstance(exc, Exception):
        return None  # already wrapped, or an exit (a cancellation): as it is
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return None
    statement = context.statement
    if isinstance(exc, TypeError | ValueError):
        message = f"the driver refused the statement or a parameter: {type(exc).__name__}"
        return sa_exc.StatementError(message, statement, None, exc)
    lost = isinstance(exc, OSError)
    context.is_disconnect = context.is_disconnect or lost
    return sa_exc.OperationalError(statement, None, exc, connection_invalidated=lost)


def is_db_failure(exc: BaseException, *, user_code: bool) -> bool:
    """Whether :func:`translate` should map ``exc`` raised by a backend call.

    With ``user_code`` (the call ran the user's function) only SQLAlchemy's errors and
    the bridge's are the database's; anything else (an ``OSError`` of the user's own
    included) is the user's, and passes unchanged: it must not eject a replica.

    Example::

        if is_db_failure(exc, user_code=True):
            raise translate(exc) from exc
    """
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, sa_exc.SQLAlchemyError | BridgeError):
        return True
    return not user_code and isinstance(exc, DRIVER_ERRORS)


def translate(exc: BaseException) -> DBError:
    """Our exception for ``exc`` (raise it ``from exc``); scrubs parameters from ``exc``.

    Example::

        try:
            session.execute(stmt, params)
        except (SQLAlchemyError, *DRIVER_ERRORS) as exc:
            raise translate(exc) from exc
    """
    import sqlalchemy.exc as sa_exc

    if isinstance(exc, DBError):
        return exc
    if isinstance(exc, BridgeError):
        return DBUnavailable(f"database unavailable: the asyncio bridge is down ({exc})")
    if isinstance(exc, sa_exc.TimeoutError):
        return DBTimeout(f"no free connection in the pool in time: {exc}")
    if isinstance(exc, OSError) and not isinstance(exc, sa_exc.SQLAlchemyError):
        detail = mask_urls(str(exc)) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            return DBTimeout(f"database operation timed out: {detail}")
        return DBUnavailable(f"database unreachable: {detail}")
    if not isinstance(exc, sa_exc.SQLAlchemyError):
        return DBError(f"database error: {type(exc).__name__}: {exc}")

    statement = getattr(exc, "statement", None)
    values = list(_values(getattr(exc, "params", None)))
    orig = getattr(exc, "orig", None)
    detail = _scrub(exc, orig, values)
    dialect, code = dialect_of_error(exc)
    label = f" ({code})" if code is not None else ""

    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or (code is not None and dialect.unavailable(code)):
            return DBUnavailable(f"database unreachable{label}: {detail}")
        if isinstance(exc, sa_exc.IntegrityError):
            return DBIntegrityError(f"integrity error{label}: {detail}")
        if code is not None and dialect.timed_out(code):
            return DBTimeout(f"timed out{label}: {detail}")
        if is_retryable(exc):
            return DBError(f"deadlock or serialization failure{label}: {detail}")
        if isinstance(exc, sa_exc.ProgrammingError) or dialect.bad_sql(detail):
            return DBProgrammingError(f"bad SQL{label}: {detail}", statement=statement)
        if isinstance(exc, sa_exc.InterfaceError):
            return DBUnavailable(f"database connection failed{label}: {detail}")
        return DBError(f"database error{label}: {detail}")
    if isinstance(exc, sa_exc.StatementError | sa_exc.CompileError | sa_exc.ArgumentError):
        return DBProgrammingError(f"bad statement: {detail}", statement=statement)
    return DBError(f"database error: {type(exc).__name__}: {detail}")


def _values(params: Any) -> Iterator[str]:
    """The parameter values as text (to find them in messages), in order; bounded.

    Bytes come as MariaDB echoes them (``\\xFF`` for a byte that is not printable
    ASCII) and as UTF-8 text; strings also as escaped in SQL (``\\'``).
    """
    queue: collections.deque[Any] = collections.deque([params])
    count = 0
    while queue and count < _MAX_VALUES:
        item = queue.popleft()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, dict):
            queue.extend(item.values())
        elif isinstance(item, list | tuple):
            queue.extend(item)
        else:
            forms = [str(item)]
            if isinstance(item, bytes | bytearray | memoryview):
                raw = bytes(item)
                forms = [raw.decode("utf-8", "replace"), _echoed_bytes(raw)]
            for text in forms:
                if len(text) >= _MIN_VALUE:
                    count += 1
                    yield text
                    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
                    if escaped != text:
                        yield escaped


_MIN_VALUE = 3  # shorter values (ids, flags) would mask words of the message itself


def _echoed_bytes(raw: bytes) -> str:
    """``raw`` as MariaDB shows it in a message: printable ASCII, else ``\\xHH``."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02X}" for b in raw)


def redact_server_message(message: str, statement: str | None = None) -> str:
    """``message`` (a server's error text) with every value it may echo masked.

    What the server quotes as a value (a duplicate entry, an incorrect value, the SQL
    "near" an error when it is not the statement's own text) is masked whatever it is,
    so a value cut short, echoed as ``\\xHH`` or holding quotes of its own never shows.
    Any other quoted part is kept only when it is a name (after ``key``, ``column``,
    ``table``...). Example::

        >>> redact_server_message("Duplicate entry 'ann@x.org' for key 'email'")
        "Duplicate entry '***' for key 'email'"
    """
    for pattern in _ECHOED:
        message = pattern.sub(r"\1***\3", message)

    found = _NEAR.search(message)
    if found is None:
        return _mask_other_quotes(message)
    head, tail = message[: found.start()], message[found.end() :]
    text = found.group(2)
    if statement and text and text in statement:  # the statement's own SQL: no value
        kept = found.group(0)
    else:
        kept = f"{found.group(1)}***{found.group(3)}"
    return _mask_other_quotes(head) + kept + _mask_other_quotes(tail)


def _mask_other_quotes(message: str) -> str:
    """Mask each remaining ``'...'`` that is not a name; an unpaired quote masks the rest."""
    marker = "\x00"
    parts = _CONTRACTION.sub(marker, message).split("'")
    if len(parts) % 2 == 0:  # a quote left unpaired (a value holding one): mask the rest
        return (parts[0] + "'***'").replace(marker, "'")
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        inside, after = parts[i], parts[i + 1]
        keep = inside == "***" or (
            _NAME.fullmatch(inside) is not None and _NAME_BEFORE.search(out[-1]) is not None
        )
        out.append(f"'{inside if keep else '***'}'{after}")
    return "".join(out).replace(marker, "'")


def _redact(message: str, values: list[str]) -> str:
    """Mask the parameter values found anywhere in ``message`` (our own texts, SQLite's)."""
    for value in sorted(set(values), key=len, reverse=True):
        if value in message:
            message = message.replace(value, "***")
    return message


def _scrub(exc: BaseException, orig: BaseException | None, values: list[str]) -> str:
    """Mask ``orig``'s message in place, drop ``exc.params``; return the message."""
    statement = getattr(exc, "statement", None)
    statement = statement if isinstance(statement, str) else None
    if orig is not None:
        before = str(orig)
        args = orig.args
        if len(args) >= 2 and isinstance(args[1], str):  # pymysql: (errno, message)
            masked = _redact(redact_server_message(args[1], statement), values)
            orig.args = (args[0], masked, *args[2:])
            message = masked
        elif len(args) == 1 and isinstance(args[0], str):
            message = _redact(redact_server_message(args[0], statement), values)
            orig.args = (message,)
        else:
            message = _redact(redact_server_message(before, statement), values)
        after = str(orig)
    else:
        message = str(exc.args[0]) if exc.args else type(exc).__name__
        message = _redact(redact_server_message(message.split("\n[SQL:")[0]), values)
        before = after = ""
    if hasattr(exc, "params"):
        exc.params = None
    if exc.args and isinstance(exc.args[0], str):  # SQLAlchemy's own copy of the message
        text = exc.args[0]
        if before and before in text:
            text = text.replace(before, after)
        else:
            head, sep, tail = text.partition("\n[SQL:")
            text = redact_server_message(head, statement) + sep + tail
        exc.args = (_redact(text, values), *exc.args[1:])
    return mask_urls(message) or type(exc).__name__
