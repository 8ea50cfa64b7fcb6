"""Bounded metric labels for a statement: its operation and its main table.

Operations are a fixed set (``select insert update delete ddl other``); a table label is
a SQL identifier (``[A-Za-z0-9_.$]{1,64}``) taken from the statement, else ``"_other"``.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from ..metrics import OTHER_PREFIX

__all__ = ["NO_TABLE", "classify", "classify_text", "table_label"]

NO_TABLE = "_none"
"""The table label of operations on no table (``commit``, ``SELECT 1``)."""

_IDENT = re.compile(r"^[A-Za-z0-9_.$]{1,64}$")
_OPS = {
    "select": "select",
    "with": "select",
    "show": "select",
    "insert": "insert",
    "replace": "insert",
    "update": "update",
    "delete": "delete",
    "create": "ddl",
    "alter": "ddl",
    "drop": "ddl",
    "truncate": "ddl",
    "rename": "ddl",
}
_TABLE_AFTER = re.compile(
    r"\b(?:from|into|update|table(?:\s+if\s+(?:not\s+)?exists)?|join)\s+([^\s(),;]+)",
    re.IGNORECASE,
)
_QUOTES = {"`": "`", '"': '"', "[": "]"}


@functools.lru_cache(maxsize=1024)
def classify_text(sql: str) -> tuple[str, str]:
    """``(operation, table)`` of a SQL string.

    Example::

        >>> classify_text("INSERT INTO messages (id) VALUES (%s)")
        ('insert', 'messages')
        >>> classify_text("SELECT 1")
        ('select', '_none')
    """
    head = sql.lstrip(" \t\r\n(").split(None, 1)
    operation = _OPS.get(head[0].lower(), "other") if head else "other"
    match = _TABLE_AFTER.search(sql)
    if match is None:
        return operation, NO_TABLE
    return operation, table_label(_unquote(match.group(1)))


def _unquote(token: str) -> str | None:
    """``app.messages`` from ```app`.`messages```; None when a quote is not closed."""
    parts = []
    for part in token.split("."):
        close = _QUOTES.get(part[:1])
        if close is not None:
            if len(part) < 2 or part[-1] != close:
                return None
            part = part[1:-1]
        parts.append(part)
    return ".".join(parts)


def classify(statement: Any) -> tuple[str, str]:
    """``(operation, table)`` of a SQLAlchemy statement or SQL string.

    Example::

        classify(select(User).where(User.id == 1))   # ('select', 'users')
    """
    if isinstance(statement, str):
        return classify_text(statement)
    text = getattr(statement, "text", None)
    if isinstance(text, str):  # TextClause
        return classify_text(text)
    for kind in ("insert", "update", "delete"):
        if getattr(statement, f"is_{kind}", False):
            table = getattr(getattr(statement, "table", None), "name", None)
            return kind, table_label(table)
    if getattr(statement, "is_select", False):
        froms = getattr(statement, "get_final_froms", None)
        for from_ in froms() if callable(froms) else ():
            name = getattr(from_, "name", None)
            if isinstance(name, str):
                return "select", table_label(name)
        return "select", NO_TABLE
    return "other", OTHER_PREFIX


def table_label(name: object) -> str:
    """``name`` if it is a plain SQL identifier, else ``"_other"`` (bounded labels).

    Example::

        >>> table_label("messages"), table_label("a b")
        ('messages', '_other')
    """
    if isinstance(name, str) and _IDENT.match(name):
        return name
    return OTHER_PREFIX
