"""``[idgen] etcd`` as a member list: ``http://a:2379,http://b:2379,http://c:2379``.

One URL stays a plain :class:`~gochat_actors.Dsn` (the single-server form, unchanged);
several become an :class:`EtcdMembers`, a ``Dsn`` whose ``reveal()``/``str()`` are the
whole list and whose :attr:`EtcdMembers.members` are the member URLs. Each bad part of a
list is its own error (its own line in ``gochat-actors check-config``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from .._dsn import Dsn

__all__ = ["MEMBER_SCHEMES", "EtcdMembers", "members_of", "parse_members"]

MEMBER_SCHEMES = ("http", "https")
"""The schemes a member of a list may have (``memory://`` is one in-process etcd alone)."""


class EtcdMembers(Dsn):
    """Several etcd members: a :class:`~gochat_actors.Dsn` for the whole list (``str()``
    masks each member's password) plus :attr:`members`, one ``Dsn`` each. Its
    ``scheme``/``host``/``port`` are the first member's.

    Example::

        >>> etcd = EtcdMembers([Dsn("http://127.0.0.1:23791"), Dsn("http://127.0.0.1:23792")])
        >>> [m.port for m in etcd.members], etcd.reveal()
        ([23791, 23792], 'http://127.0.0.1:23791,http://127.0.0.1:23792')
    """

    __slots__ = ("_list_masked", "_list_url", "members")

    def __init__(self, members: Sequence[Dsn]) -> None:
        if len(members) < 2:
            raise ValueError("EtcdMembers needs at least two members (one is a plain Dsn)")
        super().__init__(members[0].reveal())
        self.members: tuple[Dsn, ...] = tuple(members)
        self._list_url = ",".join(m.reveal() for m in members)
        self._list_masked = ",".join(m.masked for m in members)

    def reveal(self) -> str:
        """The member list in clear, passwords included: for the driver only."""
        return self._list_url

    @property
    def masked(self) -> str:
        """The member list, each password masked (same as ``str()``)."""
        return self._list_masked

    def __str__(self) -> str:
        return self._list_masked

    def __repr__(self) -> str:
        return f"EtcdMembers({self._list_masked!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Dsn):
            return self.reveal() == other.reveal()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((Dsn, self._list_url))


def members_of(etcd: Dsn) -> tuple[Dsn, ...]:
    """The member URLs of ``[idgen] etcd`` (one for a single URL, none when empty).

    Example::

        >>> members_of(Dsn("http://127.0.0.1:2379"))
        (Dsn('http://127.0.0.1:2379'),)
    """
    if isinstance(etcd, EtcdMembers):
        return etcd.members
    return (etcd,) if etcd else ()


def _problem(message: str, **context: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("etcd_members", message, context), loc=(), input=None
    )


def _member_problems(
    dsns: list[Dsn | None], parts: list[str], unreadable: dict[int, InitErrorDetails]
) -> list[InitErrorDetails]:
    """One problem per bad member, in member order, then one about the list."""
    count = len(parts)
    problems: list[InitErrorDetails] = []
    seen: dict[str, int] = {}
    for n, (part, dsn) in enumerate(zip(parts, dsns, strict=True), start=1):
        where = f"member {n} of {count}"
        if not part:
            problems.append(_problem(f"{where} is empty (two commas in a row, or one at an end)"))
        elif dsn is None:
            problems.append(unreadable[n])
        elif dsn.scheme not in MEMBER_SCHEMES:
            problems.append(
                _problem(
                    f"{where}: unsupported scheme '{{scheme}}' (expected http://, https://; "
                    "memory:// only alone)",
                    scheme=dsn.scheme,
                )
            )
        elif not dsn.host:
            problems.append(_problem(f"{where}: {dsn.scheme}:// URL needs a host"))
        elif dsn.reveal() in seen:
            problems.append(_problem(f"{where} repeats member {seen[dsn.reveal()]}"))
        else:
            seen[dsn.reveal()] = n
    schemes = sorted({d.scheme for d in dsns if d is not None and d.scheme in MEMBER_SCHEMES})
    if len(schemes) > 1:
        problems.append(_problem("the members mix http:// and https:// (use one scheme for all)"))
    return problems


def parse_members(value: Any) -> Any:
    """Before-validator of ``[idgen] etcd``: a comma-separated list becomes an
    :class:`EtcdMembers`, anything else goes on to the ``Dsn`` checks unchanged. Every
    bad member is reported on its own (an empty one, an unknown scheme, a repeat).

    Example::

        etcd: Annotated[Dsn, BeforeValidator(parse_members), BACKENDS.url_check()]
    """
    if not isinstance(value, str) or "," not in value:
        return value
    parts = [part.strip() for part in value.split(",")]
    if not any(parts):
        raise PydanticCustomError(
            "etcd_members", "empty member list (expected http(s)://host:port[,...])"
        )
    dsns: list[Dsn | None] = []
    unreadable: dict[int, InitErrorDetails] = {}
    for n, part in enumerate(parts, start=1):
        try:
            dsns.append(Dsn(part) if part else None)
        except ValueError as exc:  # its message never holds the URL
            dsns.append(None)
            unreadable[n] = _problem(f"member {n} of {len(parts)}: {exc}")
    problems = _member_problems(dsns, parts, unreadable)
    if problems:
        raise ValidationError.from_exception_data("etcd", problems)
    return EtcdMembers([d for d in dsns if d is not None])
