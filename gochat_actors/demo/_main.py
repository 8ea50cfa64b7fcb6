"""``gochat-actors demo``: run the chat backend, show the live tree, print a summary."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import trio
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

import supervisors
from supervisors.testing import ChaosMonkey

from .. import log
from .._dsn import Dsn
from .._render import render_tree
from ..config import Settings, load_settings
from ..service import Service, open_service
from ._chat import ChatDemo, percentile

__all__ = ["ROWS", "Summary", "main", "run_demo"]

DRAIN_TIMEOUT = 60.0
LIVE_LOG = Path(".state") / "gochat-demo.log"
"""Where the log goes while the live view is drawn (git-ignored; each run starts it anew)."""
CHAOS_EXCLUDE = ("http", "log", "metrics", "chaos", "bridge")
MIN_PROGRESS = 0.8
"""The verdict's progress rule: at least this share of the messages sent during the run
must be persisted before the run ends (not only in the drain after it)."""
MAX_P99_MS = 20_000.0
"""The verdict's latency rule: p99 send-to-persist latency at most this (milliseconds)."""

ROWS: dict[str, str] = {
    "sent": "messages this process sent that the broker acknowledged",
    "persisted": "of those, how many are in the database at the end (after the drain)",
    "lost": "acknowledged but not in the database after the drain: must be 0",
    "duplicate ids": "Snowflake ids issued twice: must be 0",
    "redelivered": "messages delivered again after a kill or rebalance (stored once)",
    "restarts": "actor restarts (the chaos kills and what they cascade to)",
    "chaos kills": "actors the chaos monkey killed",
    "compactions": "runs of the lock-guarded singleton compactor",
    "compactor overlaps": "times two compactors ran at once: must be 0",
    "p50 ms / p99 ms": "send-to-persist latency of the messages persisted here",
    "seconds": "length of the run (the drain not included)",
    "persisted here": "messages this process's consumer inserted (with several instances "
    "sharing the group, each persists a share, its own and others' messages)",
    "persisted in run": "messages sent that were already in the database when the run "
    f"ended: the verdict wants at least {MIN_PROGRESS:.0%} of sent",
    "machine ids": "the Snowflake machine ids this process's messages carry (a new one "
    "after its etcd lease was lost)",
    "healthy at end": "the tree was live and ready again after the chaos stopped",
    "overstayed": "children that did not stop within their shutdown budget: must be none",
    "verdict": "ok: nothing lost, no duplicate id, no compactor overlap, healthy at the "
    f"end, nothing overstayed, >= {MIN_PROGRESS:.0%} persisted during the run and p99 <= "
    f"{MAX_P99_MS:.0f} ms",
}
"""What each row of the summary means (the demo's docs and ``--help`` say the same)."""


@dataclass(frozen=True)
class Summary:
    """What ``--duration`` prints at the end: ``lost`` and ``duplicate_ids`` must be 0."""

    sent: int
    persisted: int
    lost: int
    duplicate_ids: int
    redelivered: int
    restarts: int
    chaos_kills: int
    compactions: int
    compactor_overlaps: int
    p50_ms: float
    p99_ms: float
    seconds: float
    persisted_here: int = 0
    machine_ids: tuple[int, ...] = ()
    healthy_at_end: bool = True
    overstayed: tuple[str, ...] = ()
    persisted_in_run: int | None = None  # None: not measured (counts as kept up)

    @property
    def kept_up(self) -> bool:
        """Progress during the run: enough persisted before it ended, p99 within bound."""
        measured = self.persisted_in_run is not None and self.sent > 0
        if measured and (self.persisted_in_run or 0) < MIN_PROGRESS * self.sent:
            return False
        return not self.p99_ms > MAX_P99_MS  # NaN (nothing persisted) is judged above

    @property
    def ok(self) -> bool:
        """Nothing lost or duplicated, no compactor overlap, healthy at the end, nothing
        overstayed, and the system kept up while it ran (:attr:`kept_up`)."""
        return (
            self.lost == 0
            and self.duplicate_ids == 0
            and self.compactor_overlaps == 0
            and self.healthy_at_end
            and not self.overstayed
            and self.kept_up
        )

    def table(self) -> Table:
        table = Table(title="gochat-actors demo: summary", show_header=False)
        for key, value in asdict(self).items():
            bad = key in ("lost", "duplicate_ids", "compactor_overlaps", "overstayed") and value
            bad = bad or (key == "healthy_at_end" and not value)
            bad = bad or (key in ("persisted_in_run", "p99_ms") and not self.kept_up)
            text = f"{value:.1f}" if isinstance(value, float) else str(value)
            table.add_row(key.replace("_", " "), f"[red]{text}[/red]" if bad else text)
        table.add_row("verdict", "[green]ok[/green]" if self.ok else "[red]FAILED[/red]")
        return table


def _stats(
    demo: ChatDemo, started: float, monkey: ChaosMonkey | None, duration: float | None = None
) -> Table:
    ledger = demo.ledger
    now = trio.current_time()
    elapsed = max(1e-9, now - started)
    table = Table(show_header=False, box=None)
    if duration is not None:
        table.add_row("time left", f"{max(0.0, started + duration - now):.0f} s of {duration:g}")
    table.add_row("sent", f"{len(ledger.sent)}  ({len(ledger.sent) / elapsed:.0f}/s)")
    table.add_row("persisted here", f"{ledger.persisted}  (redelivered {ledger.redelivered})")
    table.add_row(
        "latency p50 / p99",
        f"{percentile(ledger.latencies_ms, 0.5):.0f} / "
        f"{percentile(ledger.latencies_ms, 0.99):.0f} ms",
    )
    table.add_row("restarts", str(ledger.restarts))
    table.add_row("chaos kills", str(len(monkey.kills)) if monkey else "off")
    table.add_row(
        "compactions", f"{len(ledger.compactions)} (overlaps {ledger.compactor_overlaps})"
    )
    return table


def _view(
    service: Service,
    demo: ChatDemo,
    started: float,
    monkey: ChaosMonkey | None,
    duration: float | None = None,
) -> Group:
    health = service.supervisor.health()
    title = "[green]ready[/green]" if health.ready else "[yellow]healing[/yellow]"
    return Group(
        Panel(render_tree(service.supervisor.snapshot()), title=f"supervision tree: {title}"),
        Panel(_stats(demo, started, monkey, duration), title="throughput"),
    )


async def _missing(demo: ChatDemo, timeout: float, *, until_none: bool) -> list[int] | None:
    """The acknowledged ids not in the database: the first answer (``until_none=False``)
    or the last one once it is empty or ``timeout`` passed; None if the database never
    answered (a component still healing is asked again)."""
    missing: list[int] | None = None
    with trio.move_on_after(timeout):
        while True:
            try:
                missing = await demo.unpersisted()
            except Exception as exc:
                log.get_logger("gochat_actors.demo").info("database check failed", error=str(exc))
            else:
                if not (until_none and missing):
                    break
            await trio.sleep(0.5)
    return missing


async def _drain(demo: ChatDemo) -> list[int]:
    """Wait until every acknowledged message is in the database (or the drain times out)."""
    missing = await _missing(demo, DRAIN_TIMEOUT, until_none=True)
    return list(demo.ledger.sent) if missing is None else missing


async def _persisted_now(demo: ChatDemo, timeout: float = 10.0) -> int | None:
    """How many of the messages sent so far are in the database now (None: the database
    did not answer within ``timeout``)."""
    missing = await _missing(demo, timeout, until_none=False)
    return None if missing is None else len(demo.ledger.sent) - len(missing)


async def _wait_healthy(service: Service, timeout: float = 30.0) -> bool:
    """Whether the tree is live and ready again (the chaos is over) within ``timeout``."""
    with trio.move_on_after(timeout):
        while True:
            health = service.supervisor.health()
            if health.live and health.ready:
                return True
            await trio.sleep(0.2)
    return False


async def run_demo(
    settings: Settings,
    *,
    duration: float | None,
    chaos: float | None,
    live: bool,
    rate: float = 200.0,
    rooms: int = 8,
    seed: int | None = None,
    instance: str | None = None,
    sent_file: Path | None = None,
    console: Console | None = None,
) -> Summary | None:
    """Run the demo inside :func:`open_service`; return the summary (``None`` when stopped
    by a signal before ``duration``)."""
    console = console or Console()
    instance = instance or f"{os.uname().nodename}:{os.getpid()}"
    backoff = supervisors.Backoff(initial=0.05, maximum=2.0, jitter=0.2, reset_after=5.0)
    async with open_service(
        settings, max_restarts=200, max_seconds=10.0, backoff=backoff
    ) as service:
        demo = ChatDemo(
            service, rate=rate, rooms=rooms, instance=instance, seed=seed, sent_file=sent_file
        )
        service.supervisor.subscribe(demo.ledger.note_event)
        try:
            await demo.setup()
            for spec in demo.specs():
                await service.add_child(spec)
            monkey: ChaosMonkey | None = None
            if chaos:
                monkey = ChaosMonkey(chaos, seed=seed, exclude=CHAOS_EXCLUDE)
                await service.add_child(monkey.spec("chaos"))
            started = trio.current_time()
            with trio.move_on_after(duration if duration is not None else float("inf")):
                if live:
                    with Live(console=console, refresh_per_second=4, transient=False) as view:
                        while True:
                            view.update(_view(service, demo, started, monkey, duration))
                            await trio.sleep(0.25)
                else:
                    while True:
                        await trio.sleep(5.0)
                        console.print(_stats(demo, started, monkey, duration))
            seconds = trio.current_time() - started
            if monkey is not None:
                await service.supervisor.terminate_child("chaos")
            demo.sending = False
            persisted_in_run = await _persisted_now(demo)
            missing = await _drain(demo)
            healthy = await _wait_healthy(service)
            ledger = demo.ledger
            summary = Summary(
                sent=len(ledger.sent),
                persisted=len(ledger.sent) - len(missing),
                lost=len(missing),
                duplicate_ids=ledger.duplicate_ids,
                redelivered=ledger.redelivered,
                restarts=ledger.restarts,
                chaos_kills=len(monkey.kills) if monkey else 0,
                compactions=len(ledger.compactions),
                compactor_overlaps=ledger.compactor_overlaps,
                p50_ms=percentile(ledger.latencies_ms, 0.5),
                p99_ms=percentile(ledger.latencies_ms, 0.99),
                seconds=seconds,
                persisted_here=ledger.persisted,
                machine_ids=tuple(sorted({service.ids.parse(i).machine_id for i in ledger.sent})),
                healthy_at_end=healthy,
                persisted_in_run=persisted_in_run,
            )
        finally:
            demo.close()
    report = service.supervisor.shutdown_report
    overstayed = tuple(o.path for o in report.overstayed) if report is not None else ()
    return dataclasses.replace(summary, overstayed=overstayed)


def main(
    *,
    config: Path | None = None,
    duration: float | None = None,
    chaos: float | None = None,
    live: bool = True,
    rate: float = 200.0,
    rooms: int = 8,
    seed: int | None = None,
    instance: str | None = None,
    sent_file: Path | None = None,
    summary_json: Path | None = None,
) -> int:
    """Run the demo until ``duration`` or a signal; 0 when nothing was lost or duplicated.

    Example::

        main(duration=10, chaos=1.0, live=False)
    """
    settings = load_settings(config)
    console = Console()
    scratch = None
    if ":memory:" in settings.db.primary.reveal():
        # The embedded in-memory SQLite dies with its engine, and chaos restarts the DB
        # actor: keep the demo's rows in a scratch SQLite file instead.
        shm = Path("/dev/shm")  # tmpfs where there is one: no fsync cost for scratch rows
        scratch = tempfile.TemporaryDirectory(
            prefix="gochat-demo-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None
        )
        url = f"sqlite+aiosqlite:///{Path(scratch.name) / 'demo.db'}"
        settings = settings.model_copy(
            update={"db": settings.db.model_copy(update={"primary": Dsn(url)})}
        )
    if live and not console.is_terminal:
        live = False
    # Log lines would scroll the live view away: while it is drawn, they go to a file.
    if live and set(settings.log.outputs) & {"stdout", "stderr"}:
        LIVE_LOG.parent.mkdir(parents=True, exist_ok=True)
        LIVE_LOG.write_text("")  # this run's lines only
        settings = settings.model_copy(
            update={"log": settings.log.model_copy(update={"outputs": (str(LIVE_LOG),)})}
        )
        console.print(f"logs: {LIVE_LOG}")
    summary = supervisors.run(
        lambda: run_demo(
            settings,
            duration=duration,
            chaos=chaos,
            live=live,
            rate=rate,
            rooms=rooms,
            seed=seed,
            instance=instance,
            sent_file=sent_file,
            console=console,
        )
    )
    if scratch is not None:
        scratch.cleanup()
    if summary is None:
        console.print("stopped before the end: no summary")
        return 0
    console.print(summary.table())
    if summary_json is not None:
        summary_json.write_text(json.dumps({**asdict(summary), "ok": summary.ok}) + "\n")
    sys.stdout.flush()
    return 0 if summary.ok else 1
