"""``[mq]``: Kafka (or the in-memory broker)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from .._section import Section, cross_field_error
from ._backends import BACKENDS, split_brokers

__all__ = ["MQSettings"]

MEMORY_BROKER = "memory://"
_FORM = "expected memory://, kafka://host:port[,host:port...] or host:port[,host:port...]"


def _check_brokers(value: str) -> str:
    value = value.strip()
    scheme, rest = split_brokers(value)
    if scheme not in BACKENDS.schemes:
        known = ", ".join(f"{s}://" for s in BACKENDS.schemes)
        raise PydanticCustomError(
            "brokers_scheme",
            "unsupported scheme '{scheme}' (expected " + known + ")",
            {"scheme": scheme},
        )
    if scheme == "memory":
        if rest:
            raise PydanticCustomError("brokers_form", "memory:// takes nothing after the scheme")
        return MEMORY_BROKER
    if not rest.strip():
        raise PydanticCustomError("brokers_empty", "empty broker list: " + _FORM)
    members = [item.strip() for item in rest.split(",")]
    for item in members:
        if not item:
            raise PydanticCustomError("brokers_empty", "an empty broker in the list: " + _FORM)
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port:
            raise PydanticCustomError(
                "brokers_form", "broker '{item}' is not host:port; " + _FORM, {"item": item}
            )
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise PydanticCustomError("brokers_port", "broker port must be an integer in 1..65535")
    prefix = f"{scheme}://" if "://" in value else ""
    return prefix + ",".join(members)


class MQSettings(Section):
    """The ``[mq]`` section.

    Example::

        MQSettings(brokers="10.0.0.1:9092,10.0.0.2:9092", client_id="gateway")
    """

    brokers: Annotated[str, AfterValidator(_check_brokers)] = Field(
        default=MEMORY_BROKER,
        description=(
            "`memory://` (in-process broker) or Kafka bootstrap `host:port[,host:port]`"
            " (also written `kafka://host:port[,host:port]`)."
        ),
    )
    client_id: str = Field(default="gochat", min_length=1, description="Kafka client id.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="Kafka security protocol."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="SASL mechanism, used with `SASL_*` protocols."
    )
    sasl_username: str = Field(
        default="", description="SASL user name, used with `SASL_*` protocols."
    )
    sasl_password: SecretStr = Field(
        default=SecretStr(""), description="SASL password (secret: always masked)."
    )

    @property
    def backend(self) -> str:
        """The scheme of ``brokers`` that picks the backend (``kafka`` for a bare list)."""
        return split_brokers(self.brokers)[0]

    @property
    def is_memory(self) -> bool:
        """True for the in-process broker (``memory://``)."""
        return self.brokers == MEMORY_BROKER

    @property
    def bootstrap_servers(self) -> list[str]:
        """The ``host:port`` list for the Kafka client (empty for ``memory://``)."""
        rest = split_brokers(self.brokers)[1]
        return rest.split(",") if rest else []

    @model_validator(mode="after")
    def _check_sasl(self) -> Self:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not self.sasl_username:
            raise cross_field_error(
                ("sasl_username", "security_protocol"),
                "SASL_* security_protocol needs sasl_username (and sasl_password)",
            )
        if not sasl and (self.sasl_username or self.sasl_password.get_secret_value()):
            raise cross_field_error(
                ("security_protocol", "sasl_username", "sasl_password"),
                "SASL credentials are set but security_protocol is not SASL_PLAINTEXT/SASL_SSL",
            )
        return self
