"""``[idgen]``: Snowflake IDs and how the machine ID is obtained."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from .._dsn import Dsn
from .._section import (
    NonNegativeSeconds,
    PositiveSeconds,
    Section,
    cross_field_error,
    raise_cross_field_errors,
)
from ._backends import BACKENDS
from ._members import members_of, parse_members

__all__ = ["EtcdUrl", "IdGenSettings"]

EtcdUrl = Annotated[Dsn, BeforeValidator(parse_members), BACKENDS.url_check(allow_empty=True)]
"""An etcd v3 JSON-gateway URL (``http://127.0.0.1:2379``), several comma-separated
(``http://a:2379,http://b:2379``: an :class:`EtcdMembers`), ``memory://``, or empty."""


class IdGenSettings(Section):
    """The ``[idgen]`` section.

    The bit split must add up to 63 (IDs are positive signed 64-bit integers).

    Example::

        IdGenSettings(etcd="http://127.0.0.1:2379", lease_ttl=10.0, margin=2.0)
        IdGenSettings(etcd="https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379",
                      etcd_user="gochat", etcd_password="...", etcd_ca_file="/etc/etcd/ca.pem")
    """

    etcd: EtcdUrl = Field(
        default=Dsn(""),
        description="Empty: the static `machine_id` (single instance only). "
        "Else etcd `http(s)://host:2379` (or `memory://`) to lease a machine ID; a cluster "
        "as its comma-separated members `http://a:2379,http://b:2379,http://c:2379`.",
    )
    etcd_user: str = Field(
        default="", description="etcd v3 auth user name (empty: no authentication)."
    )
    etcd_password: SecretStr = Field(
        default=SecretStr(""), description="etcd v3 auth password (secret: always masked)."
    )
    etcd_ca_file: str = Field(
        default="",
        description="PEM CA bundle that signs the https:// members' certificates "
        "(empty: the system's CAs).",
    )
    etcd_cert_file: str = Field(
        default="", description="PEM client certificate for https:// members (with a key)."
    )
    etcd_key_file: str = Field(default="", description="PEM private key of `etcd_cert_file`.")
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

    @property
    def etcd_members(self) -> tuple[Dsn, ...]:
        """The etcd member URLs (one for a single URL, none when ``etcd`` is empty)."""
        return members_of(self.etcd)

    def _etcd_problems(self) -> list[PydanticCustomError]:
        """Auth and TLS settings that cannot work with the ``etcd`` given."""
        problems = []
        scheme = self.etcd.scheme
        password = self.etcd_password.get_secret_value()
        if (self.etcd_user or password) and scheme not in ("http", "https"):
            problems.append(
                cross_field_error(
                    ("etcd_user", "etcd_password", "etcd"),
                    "etcd_user/etcd_password are set but etcd is not an http(s):// URL",
                )
            )
        elif password and not self.etcd_user:
            problems.append(
                cross_field_error(("etcd_password", "etcd_user"), "etcd_password needs etcd_user")
            )
        tls_files = (self.etcd_ca_file, self.etcd_cert_file, self.etcd_key_file)
        if any(tls_files) and scheme != "https":
            problems.append(
                cross_field_error(
                    ("etcd_ca_file", "etcd_cert_file", "etcd_key_file", "etcd"),
                    "etcd TLS files are set but the etcd members are not https://",
                )
            )
        elif bool(self.etcd_cert_file) != bool(self.etcd_key_file):
            problems.append(
                cross_field_error(
                    ("etcd_cert_file", "etcd_key_file"),
                    "etcd_cert_file and etcd_key_file go together (a client certificate "
                    "and its key)",
                )
            )
        return problems

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
        problems += self._etcd_problems()
        raise_cross_field_errors(self, problems)
        return self
