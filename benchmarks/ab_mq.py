"""A/B of the MQ benchmark's own contenders between two source trees, interleaved.

Runs ``benchmarks.bench_mq --one <contender>`` for ``send_ours``, ``bulk_ours`` and
``consume_ours`` from this tree (B) and from ``--base`` (A: e.g. ``git archive`` of the
commit before a change, unpacked), alternating A and B run by run, each in a fresh
interpreter, and prints each contender's median rates and B/A ratio. The peer contenders
of ``bench_mq`` do not change between trees, so they are left out: what is compared is
ours before and after, on the same broker in the same minutes. The rows go to
``benchmarks/results/mq-ab.json`` (ours = B, peer = A), with ``--change`` saying what
B changed.

Run: ``.venv/bin/python -m benchmarks.ab_mq --base /tmp/base --change "..."`` (needs the
broker at 127.0.0.1:9092, like ``bench_mq``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._report import Row, write_results

CONTENDERS = ("send_ours", "bulk_ours", "consume_ours")
HERE = Path(__file__).resolve().parents[1]


def one(tree: Path, name: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_mq", "--one", name, "--n", str(n)],
        cwd=tree,  # the tree's own gochat_actors comes first on sys.path
        capture_output=True,
        text=True,
        check=True,
    )
    rate: float = json.loads(out.stdout.strip().splitlines()[-1])["rate"]
    return rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--change", default="", help="what B changed (goes in the notes)")
    parser.add_argument("--target", default=">= 0.95x")
    opts = parser.parse_args()
    trees = {"A": opts.base.resolve(), "B": HERE}
    rates: dict[tuple[str, str], list[float]] = {}
    for round_ in range(opts.rounds):
        order = ("A", "B") if round_ % 2 == 0 else ("B", "A")
        for name in CONTENDERS:
            for side in order:
                rate = one(trees[side], name, opts.n)
                rates.setdefault((name, side), []).append(rate)
                print(f"  round {round_ + 1} {name:13s} {side} {rate:12,.0f} msg/s", flush=True)
    what = {
        "send_ours": "produce 1 KB, 1,000 senders awaiting acks (msg/s)",
        "bulk_ours": "produce 1 KB, bulk (msg/s)",
        "consume_ours": "consume + no-op process + commit (msg/s)",
    }
    rows = [
        Row(
            f"{what[name]}, after / before",
            statistics.median(rates[(name, "B")]),
            statistics.median(rates[(name, "A")]),
            "the same before the change",
            True,
            opts.target,
            "msg/s",
            "all rates, A: "
            + ", ".join(f"{r:,.0f}" for r in rates[(name, "A")])
            + "; B: "
            + ", ".join(f"{r:,.0f}" for r in rates[(name, "B")]),
        )
        for name in CONTENDERS
    ]
    write_results(
        "mq-ab",
        f"python -m benchmarks.ab_mq --base A --n {opts.n} --rounds {opts.rounds}",
        rows,
        notes=(
            f"{opts.change} Each contender of bench_mq (ours only), {opts.n:,} messages "
            f"per run, {opts.rounds} runs per side alternating A and B (each in a fresh "
            "interpreter, on the same broker in the same minutes); medians."
        ).strip(),
    )


if __name__ == "__main__":
    main()
