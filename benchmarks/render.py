"""Rewrite ``docs/benchmarks.md`` and its plots from ``benchmarks/results/*.json``.

Run: ``.venv/bin/python -m benchmarks.render`` (``benchmarks/run`` does it after the
benchmarks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks._report import RESULTS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
PLOTS = ROOT / "docs" / "img"

ORDER = [
    "supervisors",
    "actors",
    "db",
    "cache",
    "lock",
    "locks",
    "mq",
    "mq-ab",
    "pipeline",
    "pipeline-latency",
    "idgen",
]

INTRO = """# Benchmarks

Every figure below was measured **beside a peer in the same run** on the same machine
(a 2-core VM; absolute numbers there are noisy and mean little, ratios travel better).
`ratio` is always *ours / peer* of the raw figures; the target says which way is good
(`<= 3x` for a latency, `>= 0.9x` for a throughput). Nothing here is asserted by the
test suite: timing assertions do not belong in tests.

Regenerate everything with `benchmarks/run` (needs the servers: `scripts/services up`,
and `pip install -e '.[bench]'`, which `benchmarks/run` does), or one benchmark with the
command shown under it, then `python -m benchmarks.render`.

The asyncio bridge's A/B (issue 29: the shipped trio-asyncio bridge against a loop in a
thread of its own) is not part of `benchmarks/run`: `.venv/bin/python -m
benchmarks.bridge_ab --rounds 3 --n 500` (MariaDB and Kafka up) prints its table; the
figures and the decision are in
[the design notes](design.md#the-asyncio-bridge-on-python-311-314-issue-29).
"""


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _verdict(row: dict[str, Any]) -> str:
    passed = row.get("passed")
    return {True: "met", False: "**missed**", None: ""}[passed]


def _plot(name: str, rows: list[dict[str, Any]]) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the bench extra is not installed
        return None
    PLOTS.mkdir(parents=True, exist_ok=True)
    labels = [f"{r['metric']}\nvs {r['peer_name']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = ["#2e7d32" if r.get("passed") is not False else "#c62828" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.2))
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("ratio ours / peer (same run)")
    ax.set_title(name)
    fig.tight_layout()
    path = PLOTS / f"bench-{name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"img/{path.name}"


def render() -> str:
    results = []
    for path in sorted(RESULTS.glob("*.json")):
        results.append(json.loads(path.read_text()))
    results.sort(key=lambda r: (ORDER.index(r["name"]) if r["name"] in ORDER else 99, r["name"]))
    parts = [INTRO]
    summary = [
        "| benchmark | metric | ours | peer | ratio | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for row in result["rows"]:
            summary.append(
                f"| {result['name']} | {row['metric']} | {_fmt(row['ours'])} {row['unit']} "
                f"| {_fmt(row['peer'])} {row['unit']} ({row['peer_name']}) | {row['ratio']:.3f} "
                f"| {row['target']} | {_verdict(row)} |"
            )
    parts.append("## Summary\n\n" + "\n".join(summary) + "\n")
    for result in results:
        section = [f"## {result['name']}\n", f"Command: `{result['command']}`  "]
        section.append(
            f"Measured {result['when']} on {result['machine']}, Python {result['python']}.\n"
        )
        if result.get("notes"):
            section.append(result["notes"] + "\n")
        notes = [
            f"- {r['metric']} vs {r['peer_name']}: {r['note']}"
            for r in result["rows"]
            if r.get("note")
        ]
        if notes:
            section.append("\n".join(notes) + "\n")
        image = _plot(result["name"], result["rows"])
        if image:
            section.append(f"![{result['name']} ratios]({image})\n")
        parts.append("\n".join(section))
    return "\n".join(parts)


def main() -> None:
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
