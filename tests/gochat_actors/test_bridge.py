"""The asyncio bridge: usable from siblings, exceptions typed, cancellation both ways."""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
import ssl

import pytest
import trio
import trio.testing

from gochat_actors import Bridge, BridgeError, BridgeNotRunning, GochatError
from gochat_actors._aiocompat import load_trio_asyncio
from gochat_actors._loop_tuning import TUNING_ENV, tuning_enabled
from gochat_actors.log import current_trace_id, trace_context

trio_asyncio = load_trio_asyncio()  # on any Python: gochat_actors/_aiocompat.py


class ChatBackendError(Exception):
    """An error type that only the asyncio side raises."""

    def __init__(self, code: int) -> None:
        super().__init__(f"backend failed with {code}")
        self.code = code


async def describe_loop(tag: str) -> tuple[str, bool, bool]:
    """asyncio side: prove we run as an asyncio task on the bridge's loop."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    await asyncio.sleep(0)
    return tag, isinstance(loop, trio_asyncio.TrioEventLoop), task is not None


async def test_started_value_is_the_bridge_and_a_sibling_can_use_it() -> None:
    bridge = Bridge()
    results: list[tuple[str, bool, bool]] = []
    seen_loop_in_sibling: list[object] = []

    async def sibling() -> None:
        # a sibling of the opener, not its descendant: trio-asyncio's context lookup
        # would find no loop here; the bridge passes its loop explicitly
        seen_loop_in_sibling.append(trio_asyncio.current_loop.get())
        results.append(await bridge.run_asyncio(describe_loop, "sibling"))

    async with trio.open_nursery() as nursery:
        assert await nursery.start(bridge.run) is bridge
        assert bridge.running
        async with trio.open_nursery() as siblings:
            siblings.start_soon(sibling)
            siblings.start_soon(sibling)
        nursery.cancel_scope.cancel()

    assert seen_loop_in_sibling == [None, None]
    assert results == [("sibling", True, True)] * 2
    assert not bridge.running


async def test_result_args_and_partial_for_keywords() -> None:
    async def add(a: int, b: int, *, scale: int = 1) -> int:
        await asyncio.sleep(0)
        return (a + b) * scale

    bridge = Bridge()
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        assert await bridge.run_asyncio(add, 2, 3) == 5
        assert await bridge.run_asyncio(functools.partial(add, scale=10), 2, 3) == 50
        nursery.cancel_scope.cancel()


async def test_asyncio_exception_arrives_typed_on_the_trio_side() -> None:
    async def fail(code: int) -> None:
        await asyncio.sleep(0)
        raise ChatBackendError(code)

    async def refuse() -> None:
        raise ConnectionRefusedError(111, "refused")

    bridge = Bridge()
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        with pytest.raises(ChatBackendError) as exc:
            await bridge.run_asyncio(fail, 503)
        assert exc.value.code == 503
        with pytest.raises(ConnectionRefusedError):
            await bridge.run_asyncio(refuse)
        # the bridge survives its callers' errors
        assert await bridge.run_asyncio(describe_loop, "after") == ("after", True, True)
        nursery.cancel_scope.cancel()


async def test_trio_cancellation_cancels_the_asyncio_task_and_its_finally_runs() -> None:
    bridge = Bridge()
    events: list[str] = []
    started = trio.Event()

    async def notify_started() -> None:
        started.set()

    async def long_operation() -> None:
        events.append("asyncio started")
        try:
            await bridge.run_trio(notify_started)
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            events.append("asyncio cancelled")
            raise
        finally:
            events.append("asyncio finally")

    async def caller(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await bridge.run_asyncio(long_operation)
        events.append(f"trio caller cancelled={scope.cancelled_caught}")

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        scope = await nursery.start(caller)
        await started.wait()
        await trio.testing.wait_all_tasks_blocked()  # the asyncio task waits on its Event
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    assert events == [
        "asyncio started",
        "asyncio cancelled",
        "asyncio finally",
        "trio caller cancelled=True",
    ]


async def test_trace_context_reaches_the_asyncio_side() -> None:
    async def read_trace_id() -> str | None:
        await asyncio.sleep(0)
        return current_trace_id()

    bridge = Bridge()
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        with trace_context("trace-from-trio"):
            assert await bridge.run_asyncio(read_trace_id) == "trace-from-trio"
        nursery.cancel_scope.cancel()


async def test_run_trio_gives_backpressure_to_asyncio_producers() -> None:
    bridge = Bridge()
    send, receive = trio.open_memory_channel[int](1)
    produced: list[int] = []

    async def produce(count: int) -> int:
        for i in range(count):
            await bridge.run_trio(send.send, i)  # waits while the channel is full
            produced.append(i)
        return count

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        results: list[int] = []

        async def run_producer() -> None:
            results.append(await bridge.run_asyncio(produce, 5))

        nursery.start_soon(run_producer)
        await trio.testing.wait_all_tasks_blocked()
        assert produced == [0]  # 1 in the channel, the next send is waiting
        received = [await receive.receive() for _ in range(5)]
        await trio.testing.wait_all_tasks_blocked()
        assert received == [0, 1, 2, 3, 4]
        assert results == [5]
        nursery.cancel_scope.cancel()


async def test_not_running_before_start_and_after_stop() -> None:
    bridge = Bridge()
    with pytest.raises(BridgeNotRunning):
        await bridge.run_asyncio(describe_loop, "too early")
    with pytest.raises(BridgeNotRunning):
        _ = bridge.loop
    assert issubclass(BridgeNotRunning, GochatError)

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        assert isinstance(bridge.loop, asyncio.AbstractEventLoop)
        nursery.cancel_scope.cancel()

    with pytest.raises(BridgeNotRunning):
        await bridge.run_asyncio(describe_loop, "too late")


async def test_call_in_flight_when_the_bridge_stops_gets_bridge_not_running() -> None:
    bridge = Bridge()
    started = trio.Event()
    outcome: list[BaseException] = []

    async def notify_started() -> None:
        started.set()

    async def forever() -> None:
        await bridge.run_trio(notify_started)
        await asyncio.Event().wait()

    async def user() -> None:
        try:
            await bridge.run_asyncio(forever)
        except BridgeNotRunning as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as bridge_scope:
            async with trio.open_nursery() as bridge_nursery:
                await bridge_nursery.start(bridge.run)
                nursery.start_soon(user)  # a sibling of the bridge's nursery
                await started.wait()
                bridge_scope.cancel()

    assert len(outcome) == 1
    assert isinstance(outcome[0].__cause__, asyncio.CancelledError)


async def test_sockets_closing_when_the_bridge_stops_are_closed_before_its_loop() -> None:
    """A transport's close only queues its socket's close (``call_soon``): the bridge
    stopping right after must still run it, tuned or not (else the GC finds the socket:
    a ResourceWarning). So must a TLS handshake the stop cuts, over a dup'd socket as
    aiomysql's upgrade does: both sockets are closed when the bridge has stopped."""
    sockets: list[socket.socket] = []
    hello = trio.Event()

    async def server(stream: trio.SocketStream) -> None:
        if await stream.receive_some():  # the ClientHello: the client waits mid-handshake
            hello.set()
        await trio.sleep_forever()

    async def close_one(port: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        sockets.append(writer.transport.get_extra_info("socket"))
        writer.transport.close()

    async def upgrade(port: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = writer.transport.get_extra_info("socket")
        dup = raw.dup()
        sockets.extend((raw, dup))
        writer.transport.close()
        context = ssl.create_default_context()
        await asyncio.open_connection(sock=dup, ssl=context, server_hostname="127.0.0.1")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as bridge_nursery:
            bridge = await bridge_nursery.start(Bridge().run)
            await bridge.run_asyncio(close_one, port)
            bridge_nursery.cancel_scope.cancel()  # its socket's close is still queued
        assert [sock.fileno() for sock in sockets] == [-1]
        async with trio.open_nursery() as bridge_nursery:
            bridge = await bridge_nursery.start(Bridge().run)
            bridge_nursery.start_soon(bridge.run_asyncio, upgrade, port)
            await hello.wait()
            bridge_nursery.cancel_scope.cancel()  # the handshake is cut
        assert [sock.fileno() for sock in sockets] == [-1, -1, -1]
        nursery.cancel_scope.cancel()


async def test_wait_ready_waits_for_the_loop() -> None:
    bridge = Bridge()
    ready: list[bool] = []

    async def waiter() -> None:
        await bridge.wait_ready()
        ready.append(bridge.running)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        assert ready == []
        await nursery.start(bridge.run)
        await trio.testing.wait_all_tasks_blocked()
        assert ready == [True]
        await bridge.wait_ready()  # returns at once when running
        nursery.cancel_scope.cancel()


async def test_two_concurrent_runs_are_refused() -> None:
    bridge = Bridge()
    errors: list[BridgeError] = []

    async def run_it() -> None:
        try:
            await bridge.run()
        except BridgeError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_it)
        nursery.start_soon(run_it)
        await bridge.wait_ready()
        await trio.testing.wait_all_tasks_blocked()
        assert len(errors) == 1
        nursery.cancel_scope.cancel()


async def test_can_run_again_after_stopping_but_not_twice_at_once() -> None:
    bridge = Bridge()
    for round_ in ("first", "second"):
        async with trio.open_nursery() as nursery:
            await nursery.start(bridge.run)
            assert await bridge.run_asyncio(describe_loop, round_) == (round_, True, True)
            with pytest.raises(BridgeError, match="already running"):
                await nursery.start(bridge.run)
            nursery.cancel_scope.cancel()


@pytest.mark.bridge_tuning
async def test_ready_callbacks_run_in_order_and_a_callback_storm_does_not_starve_trio() -> None:
    bridge = Bridge()
    order: list[int] = []
    storm_runs = 0
    trio_turns = 0
    stop = False

    def storm() -> None:  # asyncio side: reschedules itself as long as it may
        nonlocal storm_runs
        storm_runs += 1
        if not stop:
            asyncio.get_running_loop().call_soon(storm)

    async def schedule() -> None:
        loop = asyncio.get_running_loop()
        for n in range(200):  # more than one batch of ready callbacks
            loop.call_soon(order.append, n)
        loop.call_soon(storm)

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        await bridge.run_asyncio(schedule)
        while not storm_runs:
            await trio.lowlevel.checkpoint()
        before = storm_runs
        while trio_turns < 50:  # a trio task keeps getting its turns during the storm
            await trio.lowlevel.checkpoint()
            trio_turns += 1
        during = storm_runs - before
        stop = True
        await bridge.run_asyncio(asyncio.sleep, 0)
        nursery.cancel_scope.cancel()
    assert order == list(range(200))
    assert during > 10 * trio_turns  # many asyncio callbacks per trio round, not one


async def test_timers_fire_while_the_loop_waits_for_callbacks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bridge = Bridge()
    fired: list[float] = []

    async def later() -> None:  # asyncio side: a timer, then a long idle wait
        loop = asyncio.get_running_loop()
        start = loop.time()
        loop.call_later(5.0, lambda: fired.append(loop.time() - start))
        await asyncio.sleep(30.0)

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        await bridge.run_asyncio(later)
        nursery.cancel_scope.cancel()
    assert fired == [pytest.approx(5.0)]


async def test_timers_fire_in_order_as_they_are_added_moved_and_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bridge = Bridge()
    fired: list[tuple[str, float]] = []

    def add(name: str, delay: float) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        start = loop.time()
        return loop.call_later(delay, lambda: fired.append((name, loop.time() - start)))

    async def timers() -> None:
        late = add("late", 10.0)
        await asyncio.sleep(1.0)  # the loop now waits for "late"
        add("early", 2.0)  # an earlier first timer while it waits
        doomed = add("doomed", 0.5)
        await asyncio.sleep(0.25)
        doomed.cancel()  # the first timer cancelled while the loop waits for it
        await asyncio.sleep(20.0)
        assert not late.cancelled()

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        start = trio.current_time()
        await bridge.run_asyncio(timers)
        assert trio.current_time() - start == pytest.approx(21.25)
        nursery.cancel_scope.cancel()
    assert [name for name, _ in fired] == ["early", "late"]  # "doomed" never fired
    assert [after for _, after in fired] == pytest.approx([2.0, 10.0])


@pytest.mark.bridge_tuning
async def test_waiting_with_a_timer_pending_opens_no_cancel_scope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bridge = Bridge()
    timeouts = 0
    move_on_after = trio.move_on_after

    def counting(seconds: float, *, shield: bool = False) -> trio.CancelScope:
        nonlocal timeouts
        timeouts += 1
        return move_on_after(seconds, shield=shield)

    async def arm() -> None:  # as aiokafka's heartbeat: a timer always pending
        asyncio.get_running_loop().call_later(1000.0, lambda: None)

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        await bridge.run_asyncio(arm)
        monkeypatch.setattr(trio, "move_on_after", counting)  # trio-asyncio's wait uses it
        for _ in range(50):
            await bridge.run_asyncio(asyncio.sleep, 0)
        monkeypatch.undo()
        nursery.cancel_scope.cancel()
    # trio-asyncio's own step opens one per wait for a callback (50+ here)
    assert timeouts == 0


@pytest.mark.bridge_tuning
async def test_a_cancelled_timer_is_dropped_not_waited_for() -> None:
    bridge = Bridge()

    async def time_out_early() -> None:  # as aiomysql's connect: wait_for, done in time
        await asyncio.wait_for(asyncio.sleep(0), timeout=1000.0)

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        loop = bridge.loop
        await bridge.run_asyncio(time_out_early)
        await bridge.run_asyncio(asyncio.sleep, 0)  # the loop steps again
        # Left in the heap, the cancelled timer would make every wait for a callback
        # a timed one (a cancel scope each) for the next 1000 s, as asyncio's loop does not.
        assert loop._timers == []  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


@pytest.mark.bridge_tuning
async def test_a_socket_read_queues_one_callback_and_unread_data_is_offered_again() -> None:
    bridge = Bridge()
    ours, theirs = socket.socketpair()
    lazy, prod = socket.socketpair()
    lazy.setblocking(False)
    queued: list[object] = []
    offers = 0

    async def echo_back(rounds: int) -> None:  # asyncio side: a stream, a read per round
        reader, writer = await asyncio.open_connection(sock=ours)
        for _ in range(rounds):
            writer.write(await reader.readexactly(4))
        writer.close()

    def lazy_reader(sock: socket.socket, got: asyncio.Future[bytes]) -> None:
        nonlocal offers
        offers += 1  # leaves the data unread twice: asyncio offers it again
        if offers == 3:
            got.get_loop().remove_reader(sock)
            got.set_result(sock.recv(4))

    async def read_lazily(sock: socket.socket) -> bytes:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(sock, lazy_reader, sock, got)
        return await got

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        loop = bridge.loop
        queue_handle = loop._queue_handle  # type: ignore[attr-defined]

        def counting(handle: object) -> object:
            queued.append(handle)
            return queue_handle(handle)

        loop._queue_handle = counting  # type: ignore[attr-defined]
        rounds = 50
        nursery.start_soon(functools.partial(bridge.run_asyncio, echo_back, rounds))
        sock = trio.socket.from_stdlib_socket(theirs)
        for n in range(rounds):
            await sock.send(n.to_bytes(4, "big"))
            assert await sock.recv(4) == n.to_bytes(4, "big")
        per_read = len(queued) / rounds
        del loop._queue_handle  # type: ignore[attr-defined]
        prod.send(b"ping")
        assert await bridge.run_asyncio(read_lazily, lazy) == b"ping"
        nursery.cancel_scope.cancel()
    for each in (sock, lazy, prod):
        each.close()
    # the read wakes the reading task: one callback (trio-asyncio's own reader task
    # queued a second one per read, to wait for the first)
    assert per_read < 1.5
    assert offers == 3


class _TaskSteps(trio.abc.Instrument):
    """Counts the steps of trio tasks whose name contains ``part``."""

    def __init__(self, part: str) -> None:
        self.part, self.steps = part, 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.part in task.name:
            self.steps += 1


@pytest.mark.bridge_tuning
async def test_a_crossing_and_the_read_it_waits_for_run_without_the_loops_task() -> None:
    bridge = Bridge()
    ours, theirs = socket.socketpair()
    loop_task = _TaskSteps("_main_loop")

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(sock=ours)

    async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> int:
        writer.write(n.to_bytes(4, "big"))
        return int.from_bytes(await reader.readexactly(4), "big")

    async def close(writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def echo(sock: trio.socket.SocketType) -> None:
        while data := await sock.recv(4):
            await sock.send(data)

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        reader, writer = await bridge.run_asyncio(connect)
        nursery.start_soon(echo, trio.socket.from_stdlib_socket(theirs))
        trio.lowlevel.add_instrument(loop_task)
        answers = [await bridge.run_asyncio(ask, reader, writer, n) for n in range(50)]
        trio.lowlevel.remove_instrument(loop_task)
        await bridge.run_asyncio(close, writer)
        nursery.cancel_scope.cancel()
    theirs.close()
    assert answers == list(range(50))
    # the task's first step runs in the caller, what the read makes ready in the reader
    # task (trio-asyncio wakes its loop's task twice per crossing: 100 steps here)
    assert loop_task.steps == 0


async def test_callbacks_keep_their_order_around_a_trio_task_handle() -> None:
    bridge = Bridge()
    order: list[int] = []

    async def two() -> None:
        order.append(2)

    async def schedule() -> None:  # its first step runs in the calling trio task
        loop = asyncio.get_running_loop()
        loop.call_soon(order.append, 1)
        started = bridge.loop.trio_as_future(two)  # type: ignore[attr-defined]
        loop.call_soon(order.append, 3)
        await started
        await asyncio.sleep(0)

    class RunQueueOnSpawn(trio.abc.Instrument):
        """Another task runs the queue just as the trio task is spawned, not started."""

        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            if task.name.endswith("two"):
                bridge._ready.run_ready()  # type: ignore[union-attr]

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        trio.lowlevel.add_instrument(RunQueueOnSpawn())
        await bridge.run_asyncio(schedule)
        nursery.cancel_scope.cancel()
    assert order == [1, 2, 3]


async def test_a_crossing_without_io_is_a_checkpoint_and_a_cancelled_caller_starts_nothing() -> (
    None
):
    bridge = Bridge()
    ran: list[str] = []

    async def note(what: str) -> str:
        ran.append(what)
        return what

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        with trio.testing.assert_checkpoints():
            assert await bridge.run_asyncio(note, "done at once") == "done at once"
        with trio.CancelScope() as scope:
            scope.cancel()
            await bridge.run_asyncio(note, "never")
        nursery.cancel_scope.cancel()
    assert scope.cancelled_caught
    assert ran == ["done at once"]


@pytest.mark.parametrize("tuning", ["on", "off"])
async def test_run_coroutine_keeps_run_asyncios_contract_and_closes_what_it_never_starts(
    monkeypatch: pytest.MonkeyPatch, tuning: str
) -> None:
    """The DB's hot path hands the bridge a coroutine already made: same result,
    exception and cancellation as run_asyncio; a coroutine it never starts (the bridge
    not running, the caller already cancelled) is closed, never left unawaited."""
    monkeypatch.setenv(TUNING_ENV, tuning)
    ran: list[str] = []

    async def note(what: str) -> str:
        ran.append(what)
        await asyncio.sleep(0)  # a step on the loop, as a statement's read
        return what

    async def fail() -> None:
        raise ChatBackendError(7)

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ran.append("asyncio finally")

    bridge = Bridge()
    waiting = trio.CancelScope()

    async def wait_forever() -> None:
        with waiting:
            await bridge.run_coroutine(forever())

    unstarted = note("too early")
    with pytest.raises(BridgeNotRunning):
        await bridge.run_coroutine(unstarted)
    assert inspect.getcoroutinestate(unstarted) == inspect.CORO_CLOSED
    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        assert await bridge.run_coroutine(note("done")) == "done"
        with pytest.raises(ChatBackendError):
            await bridge.run_coroutine(fail())
        never = note("never")
        with trio.CancelScope() as scope:
            scope.cancel()
            await bridge.run_coroutine(never)
        assert scope.cancelled_caught
        assert inspect.getcoroutinestate(never) == inspect.CORO_CLOSED
        nursery.start_soon(wait_forever)
        await trio.testing.wait_all_tasks_blocked()  # the asyncio task waits
        waiting.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert waiting.cancelled_caught
        nursery.cancel_scope.cancel()
    assert ran == ["done", "asyncio finally"]


async def test_callbacks_run_in_order_whichever_trio_task_runs_the_queue() -> None:
    # Any trio task may run the ready queue between two steps of the loop's task (a
    # crossing's first step, a socket read): a handle the loop's task has taken must not
    # be overtaken by the ones behind it.
    bridge = Bridge()
    order: list[int] = []

    async def schedule() -> None:
        loop = asyncio.get_running_loop()
        for n in range(3 * 64 + 5):  # several batches
            loop.call_soon(order.append, n)
        await asyncio.sleep(0)

    class RunQueueBetweenSteps(trio.abc.Instrument):
        """After every task step, another task runs the queue (a crossing would)."""

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            ready = bridge._ready
            if ready is not None and ready._data:
                ready.run_ready()

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        instrument = RunQueueBetweenSteps()
        trio.lowlevel.add_instrument(instrument)
        try:
            await bridge.run_asyncio(schedule)
            while len(order) < 3 * 64 + 5:
                await trio.lowlevel.checkpoint()
        finally:
            trio.lowlevel.remove_instrument(instrument)
        nursery.cancel_scope.cancel()
    assert order == list(range(3 * 64 + 5))


async def test_a_cancellation_inside_cancel_grace_waits_that_long_for_the_task(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bridge = Bridge()
    steps: list[str] = []

    async def commit_like(work: float) -> str:  # asyncio side
        steps.append("before")
        await asyncio.sleep(0.1)  # not in the grace: a cancellation here cuts it at once
        with bridge.cancel_grace(1.0):
            steps.append("sent")
            await asyncio.sleep(work)  # the reply we wait for
        steps.append("replied")
        return "committed"

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        # Cancelled while in the grace, ended within it: the result, and the
        # cancellation at the next checkpoint.
        got: list[str] = []
        with trio.move_on_after(0.2) as scope:
            got.append(await bridge.run_asyncio(commit_like, 0.5))
            await trio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert got == ["committed"]
        assert trio.current_time() == pytest.approx(0.6)
        # Longer than its grace: cancelled when the grace ends.
        steps.clear()
        start = trio.current_time()
        with trio.move_on_after(0.2) as scope:
            await bridge.run_asyncio(commit_like, 10.0)
        assert scope.cancelled_caught
        assert steps == ["before", "sent"]
        assert trio.current_time() - start == pytest.approx(1.2)
        # Cancelled before the grace: at once.
        steps.clear()
        with trio.move_on_after(0.05) as scope:
            await bridge.run_asyncio(commit_like, 0.5)
        assert steps == ["before"]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("on", True), ("OFF", False), (" off ", False)]
)
def test_the_tuning_switch(monkeypatch: pytest.MonkeyPatch, value: str | None, on: bool) -> None:
    if value is None:
        monkeypatch.delenv(TUNING_ENV, raising=False)
    else:
        monkeypatch.setenv(TUNING_ENV, value)
    assert tuning_enabled() is on


def test_a_bad_tuning_switch_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TUNING_ENV, "fast")
    with pytest.raises(BridgeError, match="GOCHAT_BRIDGE_TUNING must be 'on' or 'off', got 'fast'"):
        tuning_enabled()


async def test_an_untuned_bridge_crosses_and_honours_cancel_grace(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """What the tuning-off test pass relies on: a bridge run with the switch off uses
    trio-asyncio's loop as it is, and a cancel_grace() still defers the cancellation."""
    monkeypatch.setenv(TUNING_ENV, "off")
    bridge = Bridge()

    async def commit_like() -> str:
        with bridge.cancel_grace(1.0):
            await asyncio.sleep(0.5)
        return "committed"

    async with trio.open_nursery() as nursery:
        await nursery.start(bridge.run)
        assert bridge._ready is None  # untuned
        got: list[str] = []
        with trio.move_on_after(0.2) as scope:
            got.append(await bridge.run_asyncio(commit_like))
            await trio.lowlevel.checkpoint()
        assert scope.cancelled_caught
        assert got == ["committed"]
        nursery.cancel_scope.cancel()
