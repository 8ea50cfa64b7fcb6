"""``HTTPEndpoints``: hypercorn (trio worker) serving the endpoints app, as a child."""

from __future__ import annotations

import logging
import math
import socket
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import trio

from supervisors import ChildSpec, Supervisor, cleanup_scope

from .._slot import Slot
from .._tree import tree_root
from ..log import get_logger
from ..metrics import Metrics, RuntimeMetrics
from ._app import EndpointsApp
from ._settings import HTTPSettings

if TYPE_CHECKING:
    from hypercorn.config import Config

__all__ = ["HTTPEndpoints"]

_log = get_logger("gochat_actors.http")
_SERVER_LOGGER = "gochat_actors.http.server"  # hypercorn's own lines, through our logging


class HTTPEndpoints:
    """``/metrics``, ``/healthz``, ``/readyz`` and ``/debug/tree`` over HTTP, as a child.

    Run :meth:`spec` in the tree. It serves ``supervisor``'s tree, or (``None``) the
    whole tree it runs in, found by walking up from its own supervisor to the root.
    ``metrics`` (``None``: no ``/metrics``) also gets the runtime families of that tree
    (restarts, mailbox depths, children by state; see
    :class:`~gochat_actors.metrics.RuntimeMetrics`). Starting the child returns the bound
    URL (``http://127.0.0.1:PORT``; port 0 in the settings picks a free one).

    Example::

        endpoints = HTTPEndpoints(settings.http, metrics=metrics)
        async with open_supervisor([endpoints.spec()]) as sup:
            print(endpoints.url)          # http://127.0.0.1:9464
    """

    def __init__(
        self,
        settings: HTTPSettings,
        *,
        metrics: Metrics | None,
        supervisor: Supervisor | None = None,
    ) -> None:
        if not isinstance(settings, HTTPSettings):
            raise TypeError(f"settings must be HTTPSettings, got {type(settings).__name__}")
        self.settings = settings
        self.metrics = metrics
        self.supervisor = supervisor
        self._runtime = RuntimeMetrics(metrics) if metrics is not None else None
        self._slot: Slot[str] = Slot("http endpoints")

    # -- the child -------------------------------------------------------------------
    def spec(self, id: str = "http", **spec_options: Any) -> ChildSpec:
        """The child that serves the endpoints; ``spec_options`` go to ``ChildSpec``.

        Its shutdown budget (``shutdown=``, 5 s by default) bounds the graceful stop:
        open connections get most of it to finish, then are cut.

        Raises ``ValueError`` when ``[http] enabled = false``: leave it out of the tree.

        Example::

            children.append(endpoints.spec("http", shutdown=2.0))
        """
        if not self.settings.enabled:
            raise ValueError("the HTTP endpoints are disabled ([http] enabled = false)")
        return ChildSpec(id, self.run, **spec_options)

    async def run(
        self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Bind, report the URL with ``task_status.started(url)``, serve until cancelled,
        then shut down gracefully within the child's shutdown budget.

        Raises ``OSError`` (naming the address) when the address cannot be bound.

        Example::

            url = await nursery.start(endpoints.run)   # with supervisor= given
        """
        root = self.supervisor if self.supervisor is not None else tree_root("HTTPEndpoints")
        config = self._config()
        app = EndpointsApp(root, metrics=self.metrics, runtime=self._runtime)
        stop = trio.Event()
        done = trio.Event()
        server_scope = trio.CancelScope(shield=True)  # cancelled at our own deadline only
        detach = self._runtime.attach(root) if self._runtime is not None else None
        try:
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(_serve, app, config, stop, done, server_scope)
                url = str(binds[0])
                await self._serving(url, config, stop, done, server_scope, task_status)
        finally:
            if detach is not None:
                detach()

    async def _serving(
        self,
        url: str,
        config: Config,
        stop: trio.Event,
        done: trio.Event,
        server_scope: trio.CancelScope,
        task_status: trio.TaskStatus[str],
    ) -> NoReturn:
        self._slot.fill(url)
        _log.info("http endpoints serving", url=url)
        task_status.started(url)
        try:
            await trio.sleep_forever()
        finally:
            self._slot.clear()
            with cleanup_scope() as scope:
                # most of what is left of the budget for open requests, then cut
                left = scope.deadline - trio.current_time()
                config.graceful_timeout = max(0.0, min(left * 0.8, left - 0.05))
                stop.set()
                await done.wait()
            server_scope.cancel()  # past the budget: cut what is left

    def _config(self) -> Config:
        from hypercorn.config import Config  # imported when serving, not at import time

        config = Config()
        sock = _bind(self.settings.host, self.settings.port)
        config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) it from here
        config.accesslog = None
        config.errorlog = logging.getLogger(_SERVER_LOGGER)
        return config

    # -- where it is -------------------------------------------------------------------
    @property
    def url(self) -> str | None:
        """The base URL being served (``http://127.0.0.1:9464``), ``None`` while not serving.

        Example::

            httpx.get(f"{endpoints.url}/readyz")
        """
        return self._slot.value

    @property
    def port(self) -> int | None:
        """The bound port (the real one when the settings say 0), ``None`` while not serving.

        Example::

            print("metrics on port", endpoints.port)
        """
        url = self._slot.value
        return urlsplit(url).port if url is not None else None

    async def wait_url(self, timeout: float = math.inf) -> str:
        """The URL, waiting up to ``timeout`` seconds for the child to be serving.

        Raises :class:`~gochat_actors.ComponentUnavailable` when it is not by then.

        Example::

            url = await endpoints.wait_url(timeout=5.0)
        """
        return await self._slot.get(timeout)

    def __repr__(self) -> str:
        return f"<HTTPEndpoints {self.url or 'not serving'}>"


async def _serve(
    app: EndpointsApp,
    config: Config,
    stop: trio.Event,
    done: trio.Event,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    from hypercorn.trio import serve

    asgi: Any = app  # hypercorn's ASGI types are stricter than our plain mappings
    try:
        with scope:
            await serve(
                asgi, config, shutdown_trigger=stop.wait, task_status=task_status, mode="asgi"
            )
        if not stop.is_set() and not scope.cancel_called:
            raise RuntimeError("the HTTP server stopped on its own")
    finally:
        done.set()


def _bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket (closed again if binding fails; hypercorn would leak it)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            exc.errno, f"http endpoints cannot bind {host}:{port}: {exc.strerror}"
        ) from exc
    return sock
