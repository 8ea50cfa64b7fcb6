"""The ID generator's metric families (registered by every ``Metrics``)."""

from __future__ import annotations

from ..metrics import Family, declare

__all__ = ["FAMILIES"]

FAMILIES = declare(
    Family.counter("idgen_issued", "IDs issued."),
    Family.counter(
        "idgen_next_millisecond_waits",
        "Times the sequence overflowed and waited for the next millisecond.",
    ),
    Family.counter("idgen_renewals", "Machine-ID lease keepalives acknowledged."),
    Family.counter("idgen_renewal_failures", "Machine-ID lease keepalives that failed."),
    Family.gauge("idgen_machine_id", "The machine ID in use (-1 while none is held).", initial=-1),
)
