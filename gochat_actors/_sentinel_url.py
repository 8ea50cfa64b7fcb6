"""``redis+sentinel://`` URLs: the sentinels, the master's name and the db number.

``redis+sentinel://[[user]:password@]h1:p1,h2:p2,h3:p3/<master-name>/<db>[?sentinel_password=...]``:
the user and password authenticate to the master (and its replicas); ``sentinel_password``
(and ``sentinel_username``), when the sentinels themselves require auth. Parsed without
coredis, so settings can be checked with no driver loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

__all__ = ["SCHEME", "SentinelTarget", "parse_sentinel_url", "sentinel_url_problem"]

SCHEME = "redis+sentinel"
_DEFAULT_PORT = 26379
_QUERY = frozenset({"sentinel_username", "sentinel_password"})


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """What a ``redis+sentinel://`` URL names. ``repr`` never shows a password.

    Example::

        >>> t = parse_sentinel_url("redis+sentinel://127.0.0.1:26391,127.0.0.1:26392/gmaster/0")
        >>> t.sentinels, t.master, t.db
        ((('127.0.0.1', 26391), ('127.0.0.1', 26392)), 'gmaster', 0)
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def __repr__(self) -> str:
        return f"SentinelTarget(sentinels={self.sentinels!r}, master={self.master!r}, db={self.db})"


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The parts of a ``redis+sentinel://`` URL; ``ValueError`` with a one-line reason
    (never the URL itself: it may hold a password).

    Example::

        >>> sentinel_url_problem("redis+sentinel:///gmaster/0")
        'redis+sentinel:// URL needs at least one sentinel (h:p,h:p/<master>/<db>)'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URL")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_member(m) for m in hostlist.split(",") if m.strip())
    if not sentinels:
        raise ValueError(f"{SCHEME}:// URL needs at least one sentinel (h:p,h:p/<master>/<db>)")
    if any(not m.strip() for m in hostlist.split(",")):
        raise ValueError(f"{SCHEME}:// URL has an empty sentinel in its list (a stray comma)")
    name, _, db_text = path.partition("/")
    if not name:
        raise ValueError(f"{SCHEME}:// URL needs the master's name (.../<master>/<db>)")
    db_text = db_text.rstrip("/")
    if db_text and not db_text.isdigit():
        raise ValueError(f"{SCHEME}:// database must be a number (/<master>/0)")
    if "/" in db_text:  # pragma: no cover - isdigit() refused it already
        raise ValueError(f"{SCHEME}:// URL has too many path parts")
    options = dict(parse_qsl(query))
    unknown = sorted(set(options) - _QUERY)
    if unknown:
        raise ValueError(
            f"{SCHEME}:// URL: unknown option {unknown[0]!r} (expected {', '.join(sorted(_QUERY))})"
        )
    return SentinelTarget(
        sentinels,
        unquote(name),
        int(db_text) if db_text else 0,
        username,
        password,
        options.get("sentinel_username"),
        options.get("sentinel_password"),
    )


def _member(text: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [::1]:26379
        host, _, port_text = text[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"{SCHEME}:// sentinel {text!r} has no host")
    if not port_text:
        return host, _DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{SCHEME}:// sentinel {host!r}: port must be an integer in 1..65535")
    return host, int(port_text)


def sentinel_url_problem(url: str) -> str | None:
    """Why ``url`` is not a valid ``redis+sentinel://`` URL, or None.

    Example::

        >>> sentinel_url_problem("redis+sentinel://127.0.0.1:26391/gmaster/x")
        'redis+sentinel:// database must be a number (/<master>/0)'
    """
    try:
        parse_sentinel_url(url)
    except ValueError as exc:
        return str(exc)
    return None
