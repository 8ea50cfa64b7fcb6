"""Without the ``otel`` extra nothing of OpenTelemetry is imported, and the components
work as before (W3C headers included); with it installed and no tracer provider set,
still nothing is imported; a global provider set before the first traced call turns
spans on by itself. Each in a fresh interpreter: ``sys.modules`` is the evidence."""

from __future__ import annotations

import subprocess
import sys
import textwrap

USE_EVERY_COMPONENT = """
import sys
import trio
from gochat_actors.config import load_settings
from gochat_actors.service import open_service

async def main():
    settings = load_settings(
        idgen={"etcd": "memory://"}, http={"enabled": False}, log={"level": "error"}
    )
    async with open_service(settings) as service:
        async with service.db.writer() as session:
            await session.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        await service.cache.set("k", b"v")
        async with service.locks.hold("k"):
            await service.cache.get("k")
        service.ids.next_id()
        await service.producer.create_topic("chat")
        got = trio.Event()
        seen = []

        async def process(msg):
            seen.append(msg)
            got.set()

        await service.add_child(
            service.consumer_spec("c", topics=["chat"], group_id="g", processor=process)
        )
        await service.producer.send("chat", b"hi")
        with trio.fail_after(30):
            await got.wait()
        assert seen[0].headers["traceparent"][3:35] == seen[0].headers["trace_id"]
"""

BLOCK_OPENTELEMETRY = """
import importlib.abc
import sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

NOTHING_IMPORTED = """
otel = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
assert not otel, otel
print("ok")
"""


def run(*parts: str) -> str:
    script = "\n".join(textwrap.dedent(part) for part in parts)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_without_the_extra_nothing_is_imported_and_all_works() -> None:
    out = run(
        BLOCK_OPENTELEMETRY,
        USE_EVERY_COMPONENT,
        "trio.run(main)",
        NOTHING_IMPORTED,
        """
        from gochat_actors import TracingUnavailable, tracing
        try:
            tracing.enable()
        except TracingUnavailable as exc:
            print("unavailable:", exc)
        """,
    )
    lines = out.splitlines()
    assert "ok" in lines
    assert "unavailable: OpenTelemetry is not installed: pip install 'gochat-actors[otel]'" in lines


def test_installed_but_not_set_up_nothing_is_imported() -> None:
    assert "ok" in run(USE_EVERY_COMPONENT, "trio.run(main)", NOTHING_IMPORTED).splitlines()


def test_a_global_provider_set_first_turns_spans_on() -> None:
    out = run(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        """,
        USE_EVERY_COMPONENT,
        """
        trio.run(main)
        names = {span.name for span in exporter.get_finished_spans()}
        wanted = {"send chat", "process chat", "db.transaction", "SET", "GET", "lock.acquire",
                  "lock.hold", "idgen.acquire", "idgen.released"}
        assert wanted <= names, sorted(names)
        print("ok")
        """,
    )
    assert "ok" in out.splitlines()
