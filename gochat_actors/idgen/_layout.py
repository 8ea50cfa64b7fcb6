"""The bit layout of a Snowflake ID: compose and parse."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["SnowflakeLayout", "SnowflakeParts"]


class SnowflakeParts(NamedTuple):
    """An ID taken apart: Unix milliseconds, machine ID and per-millisecond sequence.

    Example::

        >>> SnowflakeParts(1288834974657, 1, 0).machine_id
        1
    """

    timestamp_ms: int
    machine_id: int
    sequence: int


class SnowflakeLayout:
    """How an ID is split: ``timestamp | machine | sequence``, most significant first.

    The timestamp part counts milliseconds since ``epoch_ms`` (Unix milliseconds); the
    three parts add up to 63 bits, so every ID is a positive signed 64-bit integer.
    :meth:`compose` and :meth:`parse` take and return Unix milliseconds.

    Example::

        >>> layout = SnowflakeLayout(epoch_ms=1288834974657)
        >>> i = layout.compose(1700000000000, 5, 7)
        >>> layout.parse(i)
        SnowflakeParts(timestamp_ms=1700000000000, machine_id=5, sequence=7)
    """

    __slots__ = (
        "epoch_ms",
        "machine_bits",
        "machine_shift",
        "max_machine_id",
        "max_sequence",
        "max_timestamp_ms",
        "sequence_bits",
        "timestamp_bits",
        "timestamp_shift",
    )

    def __init__(
        self,
        *,
        epoch_ms: int = 1288834974657,
        timestamp_bits: int = 41,
        machine_bits: int = 10,
        sequence_bits: int = 12,
    ) -> None:
        for name, bits in (
            ("timestamp_bits", timestamp_bits),
            ("machine_bits", machine_bits),
            ("sequence_bits", sequence_bits),
        ):
            if not isinstance(bits, int) or isinstance(bits, bool) or bits < 1:
                raise ValueError(f"{name} must be an int >= 1, got {bits!r}")
        if timestamp_bits + machine_bits + sequence_bits != 63:
            raise ValueError(
                "timestamp_bits + machine_bits + sequence_bits must be 63, "
                f"not {timestamp_bits + machine_bits + sequence_bits}"
            )
        if not isinstance(epoch_ms, int) or isinstance(epoch_ms, bool) or epoch_ms < 0:
            raise ValueError(f"epoch_ms must be an int >= 0, got {epoch_ms!r}")
        self.epoch_ms = epoch_ms
        self.timestamp_bits = timestamp_bits
        self.machine_bits = machine_bits
        self.sequence_bits = sequence_bits
        self.machine_shift = sequence_bits
        self.timestamp_shift = sequence_bits + machine_bits
        self.max_sequence = (1 << sequence_bits) - 1
        self.max_machine_id = (1 << machine_bits) - 1
        self.max_timestamp_ms = epoch_ms + (1 << timestamp_bits) - 1
        """The last Unix millisecond the timestamp part can hold."""

    def compose(self, timestamp_ms: int, machine_id: int, sequence: int) -> int:
        """The ID of ``(timestamp_ms, machine_id, sequence)``; ``timestamp_ms`` in Unix ms.

        Raises :class:`ValueError` naming the part that does not fit.

        Example::

            >>> SnowflakeLayout(epoch_ms=0).compose(1, 1, 1)
            4198401
        """
        _check_part("timestamp_ms", timestamp_ms, self.epoch_ms, self.max_timestamp_ms)
        _check_part("machine_id", machine_id, 0, self.max_machine_id)
        _check_part("sequence", sequence, 0, self.max_sequence)
        return (
            ((timestamp_ms - self.epoch_ms) << self.timestamp_shift)
            | (machine_id << self.machine_shift)
            | sequence
        )

    def parse(self, i: int) -> SnowflakeParts:
        """Take the ID ``i`` apart (the inverse of :meth:`compose`).

        Example::

            >>> SnowflakeLayout(epoch_ms=0).parse(4198401)
            SnowflakeParts(timestamp_ms=1, machine_id=1, sequence=1)
        """
        _check_part("id", i, 0, (1 << 63) - 1)
        return SnowflakeParts(
            (i >> self.timestamp_shift) + self.epoch_ms,
            (i >> self.machine_shift) & self.max_machine_id,
            i & self.max_sequence,
        )

    def __repr__(self) -> str:
        return (
            f"SnowflakeLayout(epoch_ms={self.epoch_ms}, timestamp_bits={self.timestamp_bits}, "
            f"machine_bits={self.machine_bits}, sequence_bits={self.sequence_bits})"
        )


def _check_part(name: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be within [{low}, {high}], got {value}")
