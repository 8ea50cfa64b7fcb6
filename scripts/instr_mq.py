"""Instructions per message of a bench_mq contender, load-independent (callgrind).

Runs one contender of ``benchmarks/bench_mq.py`` (this tree's harness) with the
``gochat_actors`` of ``--tree`` (default: this tree), under
``valgrind --tool=callgrind --instr-atstart=no``: instrumentation is switched on at the
contender's clock start and off at its clock stop (its first and second
``time.perf_counter()`` call), so the count covers what the benchmark times and nothing
else (no start-up, topic creation, fill or shutdown). Instructions per message:
``(count at N2 - count at N1) / (N2 - N1)``, which also takes out the fixed cost of a
window (the 1,000 sender tasks, the first poll, the last commit).

Run: ``PYTHONPATH=. .venv/bin/python scripts/instr_mq.py bulk_ours 2000 10000
[--tree /tmp/base] [--no-traceparent]`` (needs valgrind and the broker at
127.0.0.1:9092). ``--no-traceparent``: the raw peer's headers (and the consume fill's)
without the ``traceparent``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
_C = r"""
#include <valgrind/callgrind.h>
void instr_on(void) { CALLGRIND_START_INSTRUMENTATION; }
void instr_off(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def _library() -> str:
    out = Path(tempfile.gettempdir()) / f"instr_mq_{os.getuid()}.so"
    if not out.exists():
        src = out.with_suffix(".c")
        src.write_text(_C)
        subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    return str(out)


def child(name: str, n: int, tree: str, no_traceparent: bool) -> None:
    """In the measured interpreter: patch the clock, run the contender."""
    import ctypes
    import time

    sys.path.insert(0, str(HERE))
    from benchmarks import bench_mq  # this tree's harness, before --tree goes first

    sys.path.insert(0, tree)
    lib = ctypes.CDLL(_library())
    calls = [0]
    real = time.perf_counter

    class Clock:
        def __getattr__(self, attr: str) -> object:
            return getattr(time, attr)

        @staticmethod
        def perf_counter() -> float:
            calls[0] += 1
            if calls[0] == 1:
                lib.instr_on()
            elif calls[0] == 2:
                lib.instr_off()
            return real()

    bench_mq.time = Clock()  # type: ignore[assignment]
    if no_traceparent:
        headers = bench_mq._headers
        bench_mq._headers = lambda: headers()[1:]  # type: ignore[assignment]
    bench_mq.quiet()
    import gochat_actors

    assert gochat_actors.__file__.startswith(tree), gochat_actors.__file__
    bench_mq.one(name, bench_mq.BROKERS, n)
    assert calls[0] >= 2, calls


def count(name: str, n: int, tree: str, no_traceparent: bool) -> int:
    """Run the contender under callgrind; the instructions of its timed window."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no"),
            f"--callgrind-out-file={out}",
            *(sys.executable, __file__, "--child", name, str(n), "--tree", tree),
            *(["--no-traceparent"] if no_traceparent else []),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        found = re.search(r"^totals: (\d+)", out.read_text(), re.M)
        assert found, "no totals in the callgrind output"
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("n1", type=int)
    parser.add_argument("n2", type=int, nargs="?")
    parser.add_argument("--tree", default=str(HERE))
    parser.add_argument("--no-traceparent", action="store_true")
    parser.add_argument("--child", action="store_true")
    opts = parser.parse_args()
    tree = str(Path(opts.tree).resolve())
    if opts.child:
        child(opts.name, opts.n1, tree, opts.no_traceparent)
        return
    assert opts.n2
    assert opts.n2 > opts.n1
    low = count(opts.name, opts.n1, tree, opts.no_traceparent)
    high = count(opts.name, opts.n2, tree, opts.no_traceparent)
    per = (high - low) / (opts.n2 - opts.n1)
    print(f"{opts.name} tree={tree} no_traceparent={opts.no_traceparent}: ", end="")
    print(f"{low:,} at {opts.n1}, {high:,} at {opts.n2}: {per:,.0f} instructions/message")


if __name__ == "__main__":
    main()
