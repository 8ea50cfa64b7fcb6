"""Consumer groups as supervised actors: at-least-once, retries, a dead-letter topic.

``Consumer`` checks its options once into a frozen
:class:`~gochat_actors.mq._consumer_config.ConsumerConfig`; each incarnation of its actor
runs a :class:`~gochat_actors.mq._session.Session` (dispatch, workers, commits: drawn in
``_session.py``), which counts into the consumer's
:class:`~gochat_actors.mq._consumer_config.ConsumerTally`; a message that fails every
attempt goes to ``_dead_letter.py``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import trio

from supervisors import (
    Backoff,
    ChildSpec,
    Supervisor,
    cleanup_scope,
)

from .._bridge import Bridge
from .._exceptions import BridgeError, MQError, MQUnavailable
from .._tracing import reset_trace_ids, set_trace_ids
from ..log import get_logger
from ..metrics import Metrics
from ._ambient import service_connection
from ._connect import Connection
from ._consumer_config import BatchProcessor, ConsumerConfig, ConsumerTally, Processor
from ._memory import MemoryBroker
from ._message import Message
from ._protocol import (
    ConsumerOptions,
    GroupConsumer,
    TopicPartition,
)
from ._session import Session
from ._settings import MQSettings

__all__ = ["BatchProcessor", "Consumer", "ConsumerStatistics", "Processor", "consumer_spec"]

_log = get_logger("gochat_actors.mq")


def _is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004
    )


_WORKERS = "workers"


class _Default(int):
    """The default of ``max_batch``: an int that tells "not given" from 500 given (a
    per-message consumer refuses ``max_batch`` given). Its repr is the int's."""

    __slots__ = ()


_MAX_BATCH = _Default(500)


def _one_at_a_time(batch_processor: BatchProcessor) -> Processor:
    """The per-message processor of a batch consumer: its batch processor, given a batch
    of one (what retries a batch's culprit before its dead letter), with ``trace_ids``
    bound as for any batch call (the retry runs in :func:`process_started`'s context)."""

    async def process(msg: Message) -> None:
        msgs = [msg]
        token = set_trace_ids(msgs)
        try:
            await batch_processor(msgs)
        finally:
            reset_trace_ids(token)

    return process


def _processor(
    processor: Processor | None, batch_processor: BatchProcessor | None, max_batch: int
) -> tuple[Processor, BatchProcessor | None]:
    """Check that exactly one of the two is given, an async function (and ``max_batch``
    only with ``batch_processor``)."""
    if (processor is None) == (batch_processor is None):
        raise TypeError(
            "give exactly one of processor= (async def f(msg)) and batch_processor= "
            f"(async def f(msgs)), got processor={processor!r}, "
            f"batch_processor={batch_processor!r}"
        )
    if batch_processor is None and type(max_batch) is not _Default:
        # given with a per-message processor it would do nothing: say so, not ignore it
        raise TypeError(
            f"max_batch={max_batch!r} is for batch_processor= (async def f(msgs)); "
            "processor= gets one message per call"
        )
    if batch_processor is not None:
        if not _is_async_callable(batch_processor):
            raise TypeError(
                "batch_processor must be an async function (async def f(msgs)), "
                f"got {batch_processor!r}"
            )
        return _one_at_a_time(batch_processor), batch_processor
    if not _is_async_callable(processor):
        raise TypeError(
            f"processor must be an async function (async def f(msg)), got {processor!r}"
        )
    assert processor is not None
    return processor, None


class _Started:
    """The task status the nested workers supervisor reports to: once the workers run,
    the consumer actor is ready (with the Consumer as its value)."""

    def __init__(self, status: trio.TaskStatus[Consumer], consumer: Consumer) -> None:
        self._status = status
        self._consumer = consumer

    def started(self, value: object = None) -> None:
        self._status.started(self._consumer)
        _log.info(
            "mq consumer started",
            group=self._consumer.group_id,
            topics=list(self._consumer.topics),
            concurrency=self._consumer._config.concurrency,
        )


@dataclass(frozen=True, slots=True)
class ConsumerStatistics:
    """What :meth:`Consumer.statistics` returns (counters since the Consumer was built).

    ``processed`` counts messages finished (dead-lettered ones included), ``retries``
    failed attempts that were retried, ``lag`` the messages known but not yet processed
    over the assigned partitions, ``buffered`` those fetched and waiting in memory,
    ``sessions`` the incarnations started (restarts + 1).
    """

    processed: int
    retries: int
    dead_lettered: int
    assigned: frozenset[TopicPartition]
    lag: int
    buffered: int
    in_flight: int
    broker_reachable: bool
    running: bool
    sessions: int


class Consumer:
    """A consumer-group member as a supervised actor: at-least-once processing with
    retries and a dead-letter topic. Build it once; add :meth:`spec` to a supervisor
    (or use :func:`consumer_spec`, which does both).

    Messages of one partition are processed in offset order, one at a time; up to
    ``concurrency`` partitions at once. A processor that raises is retried in place
    (``retries`` times, ``retry_backoff`` between attempts); then the message goes to
    ``dead_letter_topic`` (with its error, origin and attempts in headers) and counts as
    processed. Without a dead-letter topic it is logged and skipped. The committed offset
    of a partition is always the offset after its last finished message: a message is
    committed only once processed or dead-lettered (at-least-once; duplicates are
    possible for messages in flight when the consumer stops or loses the partition).

    With ``batch_processor=`` instead of ``processor=``, ``await batch_processor(msgs)``
    gets up to ``max_batch`` consecutive messages of one partition (those fetched and
    waiting: it does not wait for a full batch), in offset order; the partition's offset
    moves past them once it returns. If it raises, the batch is split in halves, each
    given again in turn, until the failing message is alone: that one is retried and
    dead-lettered as above, the others are processed once, in order, around it.
    ``processing_timeout`` bounds each call. Each message keeps its ``trace_id``; a call
    runs in a log context of its own whose ``trace_ids`` lists theirs.

    Example::

        consumer = Consumer(topics=["chat.messages"], group_id="persister",
                            processor=persist, settings=settings.mq, bridge=bridge,
                            dead_letter_topic="chat.messages.dlq")
        children.append(consumer.spec("persister", depends_on=("bridge",)))
    """

    def __init__(
        self,
        *,
        topics: Sequence[str],
        group_id: str,
        processor: Processor | None = None,
        batch_processor: BatchProcessor | None = None,
        max_batch: int = _MAX_BATCH,
        settings: MQSettings | None = None,
        bridge: Bridge | None = None,
        metrics: Metrics | None = None,
        broker: MemoryBroker | None = None,
        concurrency: int = 8,
        retries: int = 3,
        retry_backoff: Backoff | None = None,
        dead_letter_topic: str | None = None,
        processing_timeout: float | None = None,
        commit_interval: float = 1.0,
        revoke_timeout: float = 5.0,
        max_buffered: int = 5000,
        options: ConsumerOptions | None = None,
        connect_timeout: float = 10.0,
        probe_interval: float = 2.0,
        request_timeout: float = 10.0,
    ) -> None:
        self._conn = Connection(
            settings if settings is not None else MQSettings(),
            bridge=bridge,
            broker=broker,
            request_timeout=request_timeout,
        )
        # Made without saying where the broker is: inside a service, the service's.
        self._follows_service = settings is None and bridge is None and broker is None
        # memory:// without a broker: inside a service on memory://, the service's
        # memory broker (its settings, svc.settings.mq, say no more than memory://).
        self._memory_follows_service = broker is None and self._conn.settings.is_memory
        if isinstance(topics, str) or not isinstance(topics, Sequence) or not topics:
            raise TypeError(f"topics must be a non-empty list of topic names, got {topics!r}")
        if not all(isinstance(t, str) and t for t in topics):
            raise ValueError(f"topics must be non-empty str, got {topics!r}")
        if not isinstance(group_id, str) or not group_id:
            raise ValueError(f"group_id must be a non-empty str, got {group_id!r}")
        processor, batch_processor = _processor(processor, batch_processor, max_batch)
        for name, count, low in (
            ("concurrency", concurrency, 1),
            ("max_batch", max_batch, 1),
            ("retries", retries, 0),
            ("max_buffered", max_buffered, 1),
        ):
            if not isinstance(count, int) or isinstance(count, bool) or count < low:
                raise ValueError(f"{name} must be an int >= {low}, got {count!r}")
        if retry_backoff is None:
            retry_backoff = Backoff(initial=0.1, maximum=5.0, multiplier=2.0, jitter=0.2)
        if not isinstance(retry_backoff, Backoff):
            raise TypeError(f"retry_backoff must be a supervisors.Backoff, got {retry_backoff!r}")
        if dead_letter_topic is not None:
            if not isinstance(dead_letter_topic, str) or not dead_letter_topic:
                raise ValueError(
                    f"dead_letter_topic must be a non-empty str or None, got {dead_letter_topic!r}"
                )
            if dead_letter_topic in topics:
                raise ValueError(
                    f"dead_letter_topic {dead_letter_topic!r} is one of the consumed topics "
                    "(a poison message would loop forever)"
                )
        for name, seconds, optional in (
            ("processing_timeout", processing_timeout, True),
            ("commit_interval", commit_interval, False),
            ("revoke_timeout", revoke_timeout, False),
            ("connect_timeout", connect_timeout, False),
            ("probe_interval", probe_interval, False),
        ):
            if seconds is None and optional:
                continue
            if not isinstance(seconds, int | float) or not 0 < seconds < math.inf:
                raise ValueError(f"{name} must be a number of seconds > 0, got {seconds!r}")
        if options is None:
            options = ConsumerOptions()
        if not isinstance(options, ConsumerOptions):
            raise TypeError(f"options must be a ConsumerOptions, got {options!r}")
        self.topics = tuple(topics)
        self.group_id = group_id
        self.metrics = metrics
        self._config = ConsumerConfig(
            group_id=group_id,
            processor=processor,
            concurrency=concurrency,
            retries=retries,
            retry_backoff=retry_backoff,
            dead_letter_topic=dead_letter_topic,
            processing_timeout=processing_timeout,
            commit_interval=float(commit_interval),
            revoke_timeout=float(revoke_timeout),
            max_buffered=max_buffered,
            batch_processor=batch_processor,
            max_batch=int(max_batch),
        )
        self._options = options
        self._connect_timeout = float(connect_timeout)
        self._probe_interval = float(probe_interval)
        self._session: Session | None = None
        self._sessions = 0
        self._tally = ConsumerTally(metrics)

    # -- the actor -------------------------------------------------------------------
    def spec(self, id: str, **spec_options: Any) -> ChildSpec:
        """The child running this consumer.

        ``spec_options`` go to :class:`supervisors.ChildSpec`; defaults here:
        ``stall_timeout=120`` (no progress while messages wait -> restart) and
        ``shutdown=10`` (the budget for the final commit and leaving the group).

        Example::

            children.append(consumer.spec("persister", depends_on=("bridge",)))
        """
        spec_options.setdefault("stall_timeout", 120.0)
        spec_options.setdefault("shutdown", 10.0)
        return ChildSpec(id, self._run, **spec_options)

    async def _run(
        self, *, task_status: trio.TaskStatus[Consumer] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        async with self._connection().serve(
            f"consumer {self.group_id}",
            connect_timeout=self._connect_timeout,
            probe_interval=self._probe_interval,
        ) as (backend, watch):
            group: GroupConsumer | None = None
            with trio.move_on_after(self._connect_timeout):
                group = await backend.open_consumer(self.group_id, self.topics, self._options)
            if group is None:
                raise MQUnavailable(
                    f"could not open a consumer of group {self.group_id!r} within "
                    f"{self._connect_timeout:g}s"
                )
            session = Session(self._config, self._tally, backend, group, watch)
            self._session = session
            self._sessions += 1
            # This actor owns the group membership (poll loop, dispatch, commits); the
            # processing runs in a child of its own ("workers"): killing that child
            # cancels the messages in flight (they go back to their queues) and costs
            # no group rejoin.
            workers = Supervisor(
                [ChildSpec(_WORKERS, session.run_workers, shutdown=1.0)],
                max_restarts=5,
                max_seconds=10.0,
                backoff=Backoff(initial=0.05, maximum=1.0, jitter=0.2),
                name=_WORKERS,
            )
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.dispatch)
                    nursery.start_soon(session.tick)
                    nursery.start_soon(watch.run, backend)
                    nursery.start_soon(group.run, session)
                    # the nested supervisor runs in this task: its child is ours
                    status = cast("trio.TaskStatus[Supervisor]", _Started(task_status, self))
                    await workers.run(task_status=status)
            finally:
                session.close()
                with cleanup_scope():
                    await session.commit(final=True)
                    try:
                        await group.aclose()
                    except (MQError, BridgeError) as exc:
                        _log.warning(
                            "mq consumer close failed", group=self.group_id, error=str(exc)
                        )
                    session.forget_lag()
                self._session = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> Connection:
        """Where this incarnation connects: a consumer made without ``settings=``,
        ``bridge=`` or ``broker=`` and started inside a service consumes from that
        service's broker (Kafka or its memory broker), never from a broker of its own
        that the service's producer does not write to. A ``memory://`` consumer without
        ``broker=`` inside a service on ``memory://`` consumes from that service's memory
        broker (``settings=service.settings.mq`` included)."""
        follows = self._follows_service or self._memory_follows_service
        service = service_connection() if follows else None
        if service is None:
            return self._conn
        if self._follows_service:
            return Connection(
                service.settings,
                bridge=service.bridge,
                broker=service.broker,
                request_timeout=self._conn.request_timeout,
            )
        if not service.settings.is_memory:  # memory:// asked for: not the service's Kafka
            return self._conn
        return Connection(
            self._conn.settings,
            bridge=self._conn.bridge,
            broker=service.broker,
            request_timeout=self._conn.request_timeout,
        )

    def statistics(self) -> ConsumerStatistics:
        """Counters and the current session's state (a frozen record).

        Example::

            stats = consumer.statistics()
            print(stats.processed, stats.lag, stats.assigned)
        """
        session = self._session
        parts = session.parts if session is not None else {}
        tally = self._tally
        return ConsumerStatistics(
            processed=tally.processed,
            retries=tally.retried,
            dead_lettered=tally.dead_lettered,
            assigned=frozenset(parts),
            lag=sum(p.lag for p in parts.values()),
            buffered=session.buffered if session is not None else 0,
            in_flight=sum(p.in_flight for p in parts.values()),
            broker_reachable=session.watch.reachable if session is not None else False,
            running=session is not None,
            sessions=self._sessions,
        )

    def __repr__(self) -> str:
        state = "running" if self._session is not None else "stopped"
        return f"<Consumer group={self.group_id!r} topics={list(self.topics)} {state}>"


def consumer_spec(
    id: str,
    *,
    topics: Sequence[str],
    group_id: str,
    processor: Processor | None = None,
    batch_processor: BatchProcessor | None = None,
    max_batch: int = _MAX_BATCH,
    settings: MQSettings | None = None,
    bridge: Bridge | None = None,
    metrics: Metrics | None = None,
    broker: MemoryBroker | None = None,
    concurrency: int = 8,
    retries: int = 3,
    retry_backoff: Backoff | None = None,
    dead_letter_topic: str | None = None,
    processing_timeout: float | None = None,
    commit_interval: float = 1.0,
    revoke_timeout: float = 5.0,
    max_buffered: int = 5000,
    options: ConsumerOptions | None = None,
    connect_timeout: float = 10.0,
    probe_interval: float = 2.0,
    request_timeout: float = 10.0,
    **spec_options: Any,
) -> ChildSpec:
    """A child running a :class:`Consumer` of ``topics`` in ``group_id``.

    ``settings``/``bridge``/``metrics``/``broker`` say how to reach the broker (the
    same as the :class:`Producer`'s). With none of ``settings``, ``bridge`` and
    ``broker``, the consumer takes, at each start, the broker of the service it starts
    in (``open_service``: its ``[mq]`` settings, bridge and memory broker), and outside a
    service ``memory://``, the in-process broker of the current ``trio.run``. Other keyword
    arguments are :class:`supervisors.ChildSpec` options (``depends_on``,
    ``stall_timeout``, ``shutdown``...). Give ``processor=`` (one message per call) or
    ``batch_processor=`` (up to ``max_batch`` messages of one partition per call; see
    :class:`Consumer`), not both.

    Example::

        service.add_child(consumer_spec(
            "persister", topics=["chat.messages"], group_id="persister", processor=persist,
            concurrency=8, retries=3, retry_backoff=Backoff(initial=0.2, maximum=5.0),
            dead_letter_topic="chat.messages.dlq",
            settings=settings.mq, bridge=bridge, metrics=metrics, depends_on=("bridge",)))
    """
    consumer = Consumer(
        topics=topics,
        group_id=group_id,
        processor=processor,
        batch_processor=batch_processor,
        max_batch=max_batch,
        settings=settings,
        bridge=bridge,
        metrics=metrics,
        broker=broker,
        concurrency=concurrency,
        retries=retries,
        retry_backoff=retry_backoff,
        dead_letter_topic=dead_letter_topic,
        processing_timeout=processing_timeout,
        commit_interval=commit_interval,
        revoke_timeout=revoke_timeout,
        max_buffered=max_buffered,
        options=options,
        connect_timeout=connect_timeout,
        probe_interval=probe_interval,
        request_timeout=request_timeout,
    )
    return consumer.spec(id, **spec_options)
