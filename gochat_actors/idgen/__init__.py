"""Snowflake IDs with leased machine IDs; ``[idgen]`` settings.

Example::

    from gochat_actors.idgen import IdGenerator

    ids = IdGenerator(settings.idgen)          # static machine ID: issues at once
    message_id = ids.next_id()
    ids.parse(message_id)                      # SnowflakeParts(timestamp_ms, machine_id, sequence)
"""

from . import _metrics  # noqa: F401  (the ID generator's metric families, for Metrics)
from ._clock import IdClock, SystemClock, TrioIdClock
from ._generator import IdGenerator, IdGenStatistics
from ._layout import SnowflakeLayout, SnowflakeParts
from ._memory import MemoryEtcd
from ._protocol import Compare, Delete, EtcdBackend, Get, KeyValue, Op, Put, TxnResult, prefix_end
from ._settings import IdGenSettings

__all__ = [
    "Compare",
    "Delete",
    "EtcdBackend",
    "Get",
    "IdClock",
    "IdGenSettings",
    "IdGenStatistics",
    "IdGenerator",
    "KeyValue",
    "MemoryEtcd",
    "Op",
    "Put",
    "SnowflakeLayout",
    "SnowflakeParts",
    "SystemClock",
    "TrioIdClock",
    "TxnResult",
    "prefix_end",
]
