"""``[idgen]``: Snowflake IDs and how the machine ID is obtained."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from .._dsn import Dsn
from .._section import (
    NonNegativeSeconds,
    PositiveSeconds,
    Section,
    cross_field_error,
    raise_cross_field_errors,
)
from ._backends import BACKENDS

__all__ = ["EtcdUrl", "IdGenSettings"]

EtcdUrl = Annotated[Dsn, BACKENDS.url_check(allow_empty=True)]
"""An etcd v3 JSON-gateway URL (``http://127.0.0.1:2379``), ``memory://``, or empty."""


class IdGenSettings(Section):
    """The ``[idgen]`` section.

    The bit split must add up to 63 (IDs are positive signed 64-bit integers).

    Example::

        IdGenSettings(etcd="http://127.0.0.1:2379", lease_ttl=10.0, margin=2.0)
    """

    etcd: EtcdUrl = Field(
        default=Dsn(""),
        description="Empty: the static `machine_id` (single instance only). "
        "Else etcd `http(s)://host:2379` (or `memory://`) to lease a machine ID.",
    )
    machine_id: int = Field(default=1, ge=0, description="Machine ID used when `etcd` is empty.")
    key_prefix: str = Field(
        default="/gochat/machine_ids/",
        min_length=1,
        description="etcd key prefix of machine-ID claims.",
    )
    lease_ttl: PositiveSeconds = Field(default=10.0, description="etcd lease TTL, seconds.")
    margin: NonNegativeSeconds = Field(
        default=2.0,
        description="IDs stop being issued this many seconds before the lease could expire "
        "(`last keepalive sent + lease_ttl - margin`); must be < 2/3 of `lease_ttl`.",
    )
    epoch_ms: int = Field(
        default=1288834974657, ge=0, description="Epoch of the timestamp part, Unix milliseconds."
    )
    timestamp_bits: int = Field(
        default=41, ge=1, le=61, description="Bits of milliseconds since epoch."
    )
    machine_bits: int = Field(default=10, ge=1, le=61, description="Bits of machine ID.")
    sequence_bits: int = Field(
        default=12, ge=1, le=61, description="Bits of per-millisecond sequence."
    )

    @property
    def max_machine_id(self) -> int:
        """The largest machine ID the bit split allows."""
        return (1 << self.machine_bits) - 1

    @model_validator(mode="after")
    def _check_layout(self) -> Self:
        problems = []  # every rule that fails is reported, not only the first
        total = self.timestamp_bits + self.machine_bits + self.sequence_bits
        if total != 63:
            problems.append(
                cross_field_error(
                    ("timestamp_bits", "machine_bits", "sequence_bits"),
                    f"timestamp_bits + machine_bits + sequence_bits must be 63, not {total}",
                )
            )
        if self.machine_id > self.max_machine_id:
            problems.append(
                cross_field_error(
                    ("machine_id", "machine_bits"),
                    f"machine_id must be <= {self.max_machine_id} "
                    f"with machine_bits={self.machine_bits}",
                )
            )
        if self.margin >= self.lease_ttl:
            problems.append(
                cross_field_error(("margin", "lease_ttl"), "margin must be < lease_ttl")
            )
        elif self.margin >= self.lease_ttl * 2 / 3:
            # Renewals run every lease_ttl/3 and each lets IDs be issued for
            # lease_ttl - margin from its send: that must outlast the interval.
            problems.append(
                cross_field_error(
                    ("margin", "lease_ttl"),
                    f"margin must be < 2/3 of lease_ttl ({self.lease_ttl * 2 / 3:g}s): renewals "
                    "run every lease_ttl/3, each lets IDs be issued for lease_ttl - margin",
                )
            )
        raise_cross_field_errors(self, problems)
        return self
