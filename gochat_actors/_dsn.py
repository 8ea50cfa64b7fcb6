"""``Dsn``: a connection URL whose password never shows.

A :class:`Dsn` keeps the whole URL but masks the password (and secret-looking query
parameters) in ``str()``, ``repr()`` and ``model_dump(mode="json")``; only
:meth:`Dsn.reveal` gives the clear URL, for the driver. A settings field states which
schemes it accepts with :class:`DsnSchemes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, SecretStr
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["MASK", "Dsn", "DsnSchemes", "is_secret_name", "mask_urls"]

MASK = "***"
"""What a masked password looks like."""

_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*$")
# A secret name is one whose words (split at _ - . and camelCase) hold one of these:
# as a part of a word (db_password, dbpassword), as a whole word, or as a word's end.
_SECRET_PARTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "authorization",
    "credential",
    "privatekey",
)
_SECRET_WORDS = frozenset({"pwd", "token", "auth", "cookie", "sessionid"})
_SECRET_ENDINGS = ("token", "cookie")
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# A quoted value as reprs and JSON write it ('...', "...", b'...'), within one line.
_QUOTED = r"b?'(?:[^'\\\n]|\\.)*'" + r'|b?"(?:[^"\\\n]|\\.)*"'
# name=value in a URL query or fragment, or free text: after ? & ; # a space, a quote or
# the start (#access_token=... is how OAuth's implicit flow hands a token over). The
# value is quoted (a repr: password='...') or bare, up to & # a space or a quote.
_PARAM = re.compile(rf"""(^|[?&;#\s'"(,])([A-Za-z][\w.\-]*)=({_QUOTED}|b?['"]?[^&#\s'"]*)""")
_QUOTED_VALUE = re.compile(_QUOTED)
_OPENING_QUOTE = re.compile(r"""b?['"]""")
# 'name': 'value' in a dict's repr, "name": "value" in JSON (numbers are left alone).
_QUOTED_PAIR = re.compile(rf"""(['"])([A-Za-z][\w.\-]*)\1(\s*:\s*)({_QUOTED})""")
# Any "scheme://user:password@" inside free text (log messages, driver errors). Matched
# from "://" on: a scheme pattern in front made every letter of a long run a start the
# engine scanned the run from (quadratic: seconds for 40 KB, in the event loop).
_URL_PASSWORD = re.compile(r"(://[^\s:/@]*:)([^\s/]+)@")


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a key or parameter ``name`` names a secret: one of its words (split at
    ``_ - .`` and camelCase) contains ``password``, ``passwd``, ``passphrase``,
    ``secret``, ``apikey``, ``authorization``, ``credential`` or ``privatekey``, is
    ``pwd``, ``auth``, ``sessionid``, or ends with ``token`` or ``cookie``. Adjacent words
    count together too (``api_key``, ``private-key``).

    Example::

        >>> [is_secret_name(n) for n in ("db_password", "accessToken", "x-api-key", "tokens")]
        [True, True, True, False]
    """
    words = [w.lower() for w in _WORD.findall(name)]
    words += [a + b for a, b in pairwise(words)]
    return any(
        w in _SECRET_WORDS or w.endswith(_SECRET_ENDINGS) or any(p in w for p in _SECRET_PARTS)
        for w in words
    )


def _masked_value(value: str) -> str | None:
    """``value`` masked, its quotes kept; None when there is nothing to mask."""
    opening = _OPENING_QUOTE.match(value)
    prefix = opening.group(0) if opening else ""
    closing = value[-1] if prefix and _QUOTED_VALUE.fullmatch(value) else ""
    inner = value[len(prefix) : len(value) - len(closing)]  # closing "": bare, or left open
    if not inner or inner == MASK:
        return None
    return f"{prefix}{MASK}{closing}"


def _mask_param(match: re.Match[str]) -> str:
    if not is_secret_name(match.group(2)):
        return match.group(0)
    masked = _masked_value(match.group(3))
    if masked is None:
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}={masked}"


def _mask_quoted_pair(match: re.Match[str]) -> str:
    quote, name, colon, value = match.groups()
    masked = _masked_value(value) if is_secret_name(name) else None
    if masked is None:
        return match.group(0)
    return f"{quote}{name}{quote}{colon}{masked}"


def mask_urls(text: str) -> str:
    """Mask the secrets of free text: the password of every ``scheme://user:password@host``
    URL, and the value of every secret-named ``name=value`` (a URL's query parameter
    ``?password=...``, a ``token=...`` in a message, ``password='...'`` in a repr) and
    ``'name': 'value'`` (a dict's repr, JSON); see :func:`is_secret_name`.

    Example::

        >>> mask_urls("connect to redis://:hunter2@cache:6379/0 failed")
        'connect to redis://:***@cache:6379/0 failed'
        >>> mask_urls("GET /login?user=ann&password=hunter2")
        'GET /login?user=ann&password=***'
        >>> mask_urls("Login(user='ann', password='hunter2')")
        "Login(user='ann', password='***')"
    """
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    if "=" in text:
        text = _PARAM.sub(_mask_param, text)
    if ":" in text and ("'" in text or '"' in text):
        text = _QUOTED_PAIR.sub(_mask_quoted_pair, text)
    return text


class Dsn:
    """A connection URL (``scheme://user:password@host:port/path?query``).

    ``str()``/``repr()`` mask the password; :meth:`reveal` returns the URL as given.
    An empty ``Dsn("")`` is falsy and means "not set". Raises :class:`ValueError`
    on a malformed URL (the message never contains the URL).

    Example::

        >>> dsn = Dsn("mysql+aiomysql://app:s3cret@127.0.0.1:3306/chat")
        >>> str(dsn), dsn.host, dsn.port, dsn.database
        ('mysql+aiomysql://app:***@127.0.0.1:3306/chat', '127.0.0.1', 3306, 'chat')
        >>> dsn.reveal()
        'mysql+aiomysql://app:s3cret@127.0.0.1:3306/chat'
    """

    __slots__ = ("_masked", "_parts", "_port", "_url")

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise TypeError(f"Dsn expects a str, got {type(url).__name__}")
        self._url = url
        self._parts: SplitResult | None = None
        self._port: int | None = None
        self._masked = ""
        if not url:
            return
        if "://" not in url:
            raise ValueError("not a URL: expected scheme://...")
        try:
            parts = urlsplit(url)
            # host:port,host:port (a cluster's members, for its schemes only): each port
            # is checked by members(); a Sentinel URL's hosts are read by its own check
            # (DsnSchemes). Either way there is no single port.
            listed = parts.scheme in _MEMBER_SCHEMES and bool(_member_list(parts.netloc))
            several = parts.scheme in _MULTI_HOST_SCHEMES and _several_hosts(parts)
            port = None if listed or several else parts.port
        except ValueError as exc:
            # Never urllib's text: it quotes the part in [ ], which may be a password.
            raise ValueError(_urllib_problem(url, str(exc))) from None
        if listed:
            members(parts.netloc)  # ValueError naming the bad member, never the URL
        if not _SCHEME.match(parts.scheme):
            raise ValueError("malformed URL scheme")
        if port == 0:
            raise ValueError("port must be an integer in 1..65535")
        self._parts = parts
        self._port = port
        self._masked = _masked_url(url, parts)

    # -- parts -------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        """The scheme, lower case (``"mysql+aiomysql"``); ``""`` when empty."""
        return self._parts.scheme if self._parts else ""

    @property
    def username(self) -> str | None:
        """The user name, or None."""
        return self._parts.username if self._parts else None

    @property
    def password(self) -> SecretStr | None:
        """The password as a :class:`~pydantic.SecretStr`, or None."""
        if self._parts is None or self._parts.password is None:
            return None
        return SecretStr(self._parts.password)

    @property
    def host(self) -> str | None:
        """The host name or address, or None."""
        return self._parts.hostname if self._parts else None

    @property
    def port(self) -> int | None:
        """The port, or None when the URL gives none."""
        return self._port

    @property
    def members(self) -> tuple[tuple[str, int | None], ...]:
        """The ``(host, port)`` of each comma-separated member of the host part
        (``redis+cluster://h1:7001,h2:7002``); one member for a single host, none when
        the URL has no host. ``port`` is None when a member gives none."""
        return members(self._parts.netloc) if self._parts else ()

    @property
    def path(self) -> str:
        """The path, with its leading ``/`` (``"/chat"``, ``"/:memory:"``)."""
        return self._parts.path if self._parts else ""

    @property
    def database(self) -> str:
        """The path without its leading ``/`` (a database name, a Redis db number)."""
        return self.path[1:] if self.path.startswith("/") else self.path

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (last one wins)."""
        return dict(parse_qsl(self._parts.query)) if self._parts else {}

    def reveal(self) -> str:
        """The URL in clear, password included: for the driver only, never for logs."""
        return self._url

    @property
    def masked(self) -> str:
        """The URL with its password masked (same as ``str(dsn)``)."""
        return self._masked

    # -- dunders -----------------------------------------------------------------
    def __str__(self) -> str:
        return self._masked

    def __repr__(self) -> str:
        return f"Dsn({self._masked!r})"

    def __bool__(self) -> bool:
        return bool(self._url)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dsn):
            return self._url == other._url
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Dsn, self._url))

    # -- pydantic ----------------------------------------------------------------
    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                cls._serialize, info_arg=True
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "uri"}

    @classmethod
    def _validate(cls, value: Any) -> Dsn:
        if isinstance(value, Dsn):
            return value
        if not isinstance(value, str):
            raise PydanticCustomError("dsn_type", "expected a URL string")
        try:
            return cls(value)
        except ValueError as exc:
            raise PydanticCustomError("dsn_parsing", str(exc)) from None

    @staticmethod
    def _serialize(value: Dsn, info: core_schema.SerializationInfo) -> Any:
        if info.mode_is_json():
            return value.masked
        return value


def _member_list(netloc: str) -> str:
    """The host part of ``netloc`` when it lists several members (has a comma), else ``""``."""
    hosts = netloc.rpartition("@")[2]
    return hosts if "," in hosts else ""


def members(netloc: str) -> tuple[tuple[str, int | None], ...]:
    """The ``(host, port)`` members of a URL's ``netloc`` (``user:pw@h1:1,h2:2``); ``()``
    when it names no host. ``ValueError`` for an empty member or a bad port.

    Example::

        >>> members("h1:7001,[::1]:7002,h3")
        (('h1', 7001), ('::1', 7002), ('h3', None))
    """
    hosts = netloc.rpartition("@")[2]
    if not hosts:
        return ()
    found: list[tuple[str, int | None]] = []
    for number, member in enumerate(hosts.split(","), start=1):
        host, port = _host_port(member.strip())
        if not host:
            raise ValueError(f"member {number} of the host list is empty (host:port,host:port)")
        found.append((host, port))
    return tuple(found)


def _host_port(member: str) -> tuple[str, int | None]:
    if member.startswith("["):
        host, _, rest = member[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    else:
        host, _, port_text = member.partition(":")
    if not port_text:
        return host.lower(), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("port must be an integer in 1..65535")
    return host.lower(), int(port_text)


def _urllib_problem(url: str, message: str) -> str:
    if "out of range" in message or "Port" in message:
        return "port must be an integer in 1..65535"
    netloc = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    userinfo = netloc.rpartition("@")[0]
    if "[" in userinfo or "]" in userinfo:
        return "malformed URL: [ or ] in the user or password (percent-encode them: %5B %5D)"
    if "[" in netloc or "]" in netloc:
        return "malformed URL: [ ] around the host must hold an IPv6 address ([::1])"
    return "malformed URL"


def _masked_url(url: str, parts: SplitResult) -> str:
    # Edit the original text (urlunsplit would normalize it: "memory://" -> "memory:").
    if parts.password is None and "=" not in url and "@" not in url:
        return url
    scheme, _, tail = url.partition("://")
    netloc, rest = _split_netloc(tail)
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    elif ":" in netloc and "@" in rest:
        # user:pass@ with a / ? or # left unencoded in pass: urllib ended the host there
        # (and may have found a valid one). Mask up to the last '@' as the password.
        userinfo, _, after = tail.rpartition("@")
        hostport, rest = _split_netloc(after)
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    rest = _PARAM.sub(_mask_param, rest)
    return f"{scheme}://{netloc}{rest}"


def _several_hosts(parts: SplitResult) -> bool:
    return "," in parts.netloc.rpartition("@")[2]


def _split_netloc(tail: str) -> tuple[str, str]:
    end = min((i for i in (tail.find(c) for c in "/?#") if i >= 0), default=len(tail))
    return tail[:end], tail[end:]


_MULTI_HOST_SCHEMES = frozenset({"redis+sentinel"})
"""Schemes whose URL lists several hosts (``h1:p1,h2:p2``) read by the scheme's own check
(the cluster schemes' members: :data:`_MEMBER_SCHEMES`)."""

_NETWORK_SCHEMES = frozenset(
    {"mysql+aiomysql", "redis", "rediss", "http", "https"},
)


_MEMBER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
# The schemes whose URL lists members, host:port,host:port (a cluster: database 0 only).


@dataclass(frozen=True, slots=True)
class DsnSchemes:
    """Field metadata: the schemes a :class:`Dsn` field accepts (and if it may be empty).

    Network schemes must name a host; ``redis``/``rediss`` take an optional ``/<db>``
    number; ``sqlite+aiosqlite`` needs a path.

    Example::

        url: Annotated[Dsn, DsnSchemes("redis", "rediss", "memory")] = Dsn("memory://")
    """

    schemes: tuple[str, ...]
    allow_empty: bool

    def __init__(self, *schemes: str, allow_empty: bool = False) -> None:
        object.__setattr__(self, "schemes", schemes)
        object.__setattr__(self, "allow_empty", allow_empty)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, dsn: Dsn) -> Dsn:
        expected = ", ".join(f"{s}://" for s in self.schemes)
        if not dsn:
            if self.allow_empty:
                return dsn
            raise PydanticCustomError(
                "dsn_empty", "must not be empty (expected {expected})", {"expected": expected}
            )
        if dsn.scheme not in self.schemes:
            raise PydanticCustomError(
                "dsn_scheme",
                "unsupported scheme '{scheme}' (expected {expected})",
                {"scheme": dsn.scheme, "expected": expected},
            )
        if dsn.scheme in _NETWORK_SCHEMES and not dsn.host:
            raise PydanticCustomError(
                "dsn_host", "{scheme}:// URL needs a host", {"scheme": dsn.scheme}
            )
        if dsn.scheme in _MEMBER_SCHEMES and not dsn.members:
            raise PydanticCustomError(
                "dsn_members",
                "{scheme}:// URL needs at least one member (host:port,host:port)",
                {"scheme": dsn.scheme},
            )
        if dsn.scheme in _MEMBER_SCHEMES and dsn.database not in ("", "0"):
            raise PydanticCustomError(
                "dsn_cluster_db", "a Redis Cluster has database 0 only (no /<db> in the URL)"
            )
        if dsn.scheme in ("redis", "rediss") and dsn.database and not dsn.database.isdigit():
            raise PydanticCustomError("dsn_redis_db", "Redis database must be a number (/0)")
        if dsn.scheme == "redis+sentinel":
            from ._sentinel_url import sentinel_url_problem

            problem = sentinel_url_problem(dsn.reveal())
            if problem is not None:
                raise PydanticCustomError("dsn_sentinel", problem)
        if dsn.scheme == "sqlite+aiosqlite" and dsn.path in ("", "/"):
            raise PydanticCustomError(
                "dsn_sqlite_path", "SQLite URL needs a path (sqlite+aiosqlite:///:memory:)"
            )
        return dsn
