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

The original is ``__cause__``. Parameter values never reach our messages: the engines
run with ``hide_parameters=True``, and quoted values the server echoes back
(``Duplicate entry 'alice@example.com'``) are masked, in our message and in the
cause's driver message alike; the cause's ``params`` is dropped.

SQLAlchemy is imported inside :func:`translate` (only when there is an error to
translate), so this module is light to import.
"""

from __future__ import annotations

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

__all__ = ["DRIVER_ERRORS", "driver_code", "is_retryable", "translate"]

DRIVER_ERRORS: tuple[type[BaseException], ...] = (OSError, BridgeError)
"""Non-SQLAlchemy errors a backend call may raise that :func:`translate` maps."""

DEADLOCK, LOCK_WAIT_TIMEOUT = 1213, 1205
RETRYABLE_CODES = frozenset({DEADLOCK, LOCK_WAIT_TIMEOUT})
RETRYABLE_SQLSTATES = frozenset({"40001"})
SQLITE_BUSY = 5  # "database is locked": SQLite's lock wait ran out

_UNAVAILABLE_CODES = frozenset(
    {1040, 1045, 1053, 1927, 2002, 2003, 2005, 2006, 2013, 2014, 2026, 2055, 4031}
)
_TIMEOUT_CODES = frozenset({LOCK_WAIT_TIMEOUT, 1969, 3024})
_SQLITE_PROGRAMMING = re.compile(
    r"syntax error|no such (table|column|function)|has no column named|incomplete input"
    r"|already exists|wrong number of arguments",
    re.IGNORECASE,
)
_NEAR = re.compile(r"(near ')(.*)(' at line \d+)", re.DOTALL)
_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'")
_MAX_VALUES = 1000


def driver_code(exc: BaseException | None) -> int | str | None:
    """The driver's error code behind ``exc`` (a SQLAlchemy error or one of ours).

    MySQL/MariaDB errno (``1213``), a SQLSTATE string, or SQLite's primary result code.

    Example::

        driver_code(err)   # 1062 for a duplicate key on MariaDB
    """
    seen = 0
    while exc is not None and seen < 4:
        orig = getattr(exc, "orig", None)
        for candidate in (orig, exc):
            if candidate is None:
                continue
            sqlite = getattr(candidate, "sqlite_errorcode", None)
            if isinstance(sqlite, int):
                return sqlite & 0xFF
            args = getattr(candidate, "args", ())
            if args and isinstance(args[0], int) and not isinstance(args[0], bool):
                return args[0]
            for attr in ("sqlstate", "pgcode"):
                state = getattr(candidate, attr, None)
                if isinstance(state, str):
                    return state
        exc = exc.__cause__
        seen += 1
    return None


def is_retryable(exc: BaseException) -> bool:
    """True for a deadlock or a lock-wait/serialization failure: retry the transaction.

    Example::

        except DBError as exc:
            if is_retryable(exc):
                ...  # run the whole transaction again
    """
    code = driver_code(exc)
    if isinstance(code, str):
        return code in RETRYABLE_SQLSTATES
    if code is None:
        return False
    is_sqlite = _is_sqlite(exc)
    return code == SQLITE_BUSY if is_sqlite else code in RETRYABLE_CODES


def _is_sqlite(exc: BaseException) -> bool:
    cause = exc if getattr(exc, "orig", None) is not None else exc.__cause__
    orig = getattr(cause, "orig", None)
    return orig is not None and hasattr(orig, "sqlite_errorcode")


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
    code = driver_code(exc)
    label = f" ({code})" if code is not None else ""

    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or code in _UNAVAILABLE_CODES:
            return DBUnavailable(f"database unreachable{label}: {detail}")
        if isinstance(exc, sa_exc.IntegrityError):
            return DBIntegrityError(f"integrity error{label}: {detail}")
        if code in _TIMEOUT_CODES:
            return DBTimeout(f"timed out{label}: {detail}")
        if is_retryable(exc):
            return DBError(f"deadlock or serialization failure{label}: {detail}")
        if isinstance(exc, sa_exc.ProgrammingError) or (
            _is_sqlite(exc) and _SQLITE_PROGRAMMING.search(detail)
        ):
            return DBProgrammingError(f"bad SQL{label}: {detail}", statement=statement)
        if isinstance(exc, sa_exc.InterfaceError):
            return DBUnavailable(f"database connection failed{label}: {detail}")
        return DBError(f"database error{label}: {detail}")
    if isinstance(exc, sa_exc.StatementError | sa_exc.CompileError | sa_exc.ArgumentError):
        return DBProgrammingError(f"bad statement: {detail}", statement=statement)
    return DBError(f"database error: {type(exc).__name__}: {detail}")


def _values(params: Any) -> Iterator[str]:
    """The parameter values as text (to find them in messages); bounded."""
    stack: list[Any] = [params]
    count = 0
    while stack and count < _MAX_VALUES:
        item = stack.pop()
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        else:
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            if text:
                count += 1
                yield text
                escaped = text.replace("\\", "\\\\").replace("'", "\\'")
                if escaped != text:
                    yield escaped


def _redact(message: str, values: list[str]) -> str:
    """Mask the quoted parts of a server message that hold a parameter value."""
    if not values:
        return message

    def holds_value(text: str) -> bool:
        return any(v in text for v in values)

    def near(m: re.Match[str]) -> str:
        return f"{m.group(1)}***{m.group(3)}" if holds_value(m.group(2)) else m.group(0)

    def quoted(m: re.Match[str]) -> str:
        return "'***'" if holds_value(m.group(1)) else m.group(0)

    return _QUOTED.sub(quoted, _NEAR.sub(near, message))


def _scrub(exc: BaseException, orig: BaseException | None, values: list[str]) -> str:
    """Redact ``orig``'s message in place, drop ``exc.params``; return the message."""
    if orig is not None:
        args = orig.args
        if len(args) >= 2 and isinstance(args[1], str):  # pymysql: (errno, message)
            orig.args = (args[0], _redact(args[1], values), *args[2:])
            message = orig.args[1]
        elif len(args) == 1 and isinstance(args[0], str):
            orig.args = (_redact(args[0], values),)
            message = orig.args[0]
        else:
            message = _redact(str(orig), values)
    else:
        message = str(exc.args[0]) if exc.args else type(exc).__name__
        message = _redact(message.split("\n[SQL:")[0], values)
    if hasattr(exc, "params"):
        exc.params = None
    if values and exc.args and isinstance(exc.args[0], str):  # SQLAlchemy's own copy
        exc.args = (_redact(exc.args[0], values), *exc.args[1:])
    return mask_urls(message) or type(exc).__name__
