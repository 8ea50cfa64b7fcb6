"""The one format every benchmark writes: ``benchmarks/results/<name>.json``.

``benchmarks/run`` reads these files and rewrites ``docs/benchmarks.md`` (and its
plots) from them, so a benchmark never edits the docs itself.

Example::

    from benchmarks._report import Row, write_results

    write_results(
        "cache",
        "python -m benchmarks.bench_cache",
        [Row("GET ops/s", ours=41000, peer=43000, peer_name="raw coredis",
             higher_is_better=True, target=">= 0.9x")],
    )
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["RESULTS", "Row", "write_results"]

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Row:
    """One measured figure beside its peer, measured in the same run.

    ``ratio`` is always ``ours / peer`` of the raw figures; ``higher_is_better`` says how
    to read it, and ``target`` states the goal as a bound on that ratio
    (``">= 0.9x"`` for throughput, ``"<= 3x"`` for latency).
    ``passed`` is computed from ``target`` when it has that form, else ``None``.
    """

    metric: str
    ours: float
    peer: float
    peer_name: str
    higher_is_better: bool
    target: str = ""
    unit: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("inf")

    @property
    def passed(self) -> bool | None:
        target = self.target.replace("x", "").strip()
        for op in (">=", "<="):
            if target.startswith(op):
                try:
                    bound = float(target[len(op) :])
                except ValueError:
                    return None
                return self.ratio >= bound if op == ">=" else self.ratio <= bound
        return None


def write_results(name: str, command: str, rows: list[Row], *, notes: str = "") -> Path:
    """Write ``benchmarks/results/<name>.json`` and print the rows side by side."""
    RESULTS.mkdir(exist_ok=True)
    payload = {
        "name": name,
        "command": command,
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {platform.system()}",
        "notes": notes,
        "rows": [{**asdict(row), "ratio": row.ratio, "passed": row.passed} for row in rows],
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    width = max((len(r.metric) for r in rows), default=10)
    print(f"== {name}: {command}")
    for r in rows:
        verdict = {True: "ok", False: "MISSED", None: ""}[r.passed]
        print(
            f"  {r.metric:<{width}}  ours {r.ours:>12.4g}  {r.peer_name} {r.peer:>12.4g}"
            f"  ratio {r.ratio:6.3f}  target {r.target:<8} {verdict}"
        )
    return path
