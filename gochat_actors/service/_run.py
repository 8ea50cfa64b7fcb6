"""``run(main)``: a service's ``main`` under trio, and startup errors as one clear line."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import supervisors
from supervisors import ChildStartError

from .._dsn import mask_urls
from .._exceptions import SettingsError
from ._service import Service, open_service

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["exit_on_startup_error", "run", "startup_error"]

T = TypeVar("T")


def run(
    main: Callable[[Service], Awaitable[T]],
    settings: Settings | None = None,
    **service_options: Any,
) -> T | None:
    """Run ``main(service)`` inside :func:`open_service`, under trio, until it returns or
    SIGINT/SIGTERM stops it gracefully (a second signal: at once), with
    :func:`supervisors.run`. Returns ``main``'s result; when a signal stopped it, raises
    ``SystemExit(128 + signal)`` once the tree has stopped (exit code 130 after SIGINT,
    143 after SIGTERM).

    ``settings`` defaults to :func:`~gochat_actors.load_settings` (the file named by
    ``$GOCHAT_CONFIG``, then the environment); ``service_options`` go to
    :func:`open_service` (``components=``, ``children=``, and the root supervisor's
    options such as ``max_restarts``).

    When the service cannot start (invalid settings, a busy HTTP port, a server that
    refuses, anything raised before ``main`` runs) it prints one line on stderr,
    ``<service name>: cannot start: <why>`` (the settings' problems, one per line, for
    invalid settings), and exits with code 1 (``SystemExit(1)``); the traceback is
    printed too when ``[log] level = "debug"``. What ``main`` raises is raised as
    it is (not wrapped in an exception group).

    Example::

        async def main(service: Service) -> None:
            await service.add_child(my_spec)
            await trio.sleep_forever()

        if __name__ == "__main__":
            gochat_actors.run(main, components=["db", "cache"])
    """
    if settings is None:
        from ..config import load_settings

        try:
            settings = load_settings()
        except SettingsError as exc:
            _exit("gochat", f"invalid settings: {exc}", exc, debug=False)
    failed: list[BaseException] = []

    async def service_main() -> T | None:
        started = False
        try:
            async with open_service(settings, **service_options) as service:
                started = True
                return await main(service)
        except Exception as exc:  # ExceptionGroup included; Cancelled and KeyboardInterrupt not
            if started:
                raise  # supervisors.run raises it as main raised it
            failed.append(exc)
            return None

    result = supervisors.run(service_main)
    if failed:
        message = startup_error(failed[0], any_error=True) or repr(failed[0])
        _exit(settings.service.name, message, failed[0], debug=settings.log.level == "debug")
    return result


def startup_error(exc: BaseException, *, any_error: bool = False) -> str | None:
    """One line that says why a service could not start, or None when ``exc`` is not a
    startup error: a :class:`~gochat_actors.SettingsError`, or a
    :class:`~supervisors.ChildStartError`, alone or as the only kind of error in
    exception groups. With ``any_error=True`` every ``Exception`` counts (for errors
    known to be raised before the service ran). URL passwords are masked.

    Example::

        startup_error(exc)
        # "cannot start: child 'http' failed to start: OSError: [Errno 98] http endpoints
        #  cannot bind 127.0.0.1:9464: Address already in use"
    """
    leaves = _leaves(exc)
    if not leaves or not all(isinstance(leaf, Exception) for leaf in leaves):
        return None
    settings_errors = [leaf for leaf in leaves if isinstance(leaf, SettingsError)]
    if settings_errors:
        if len(settings_errors) != len(leaves):
            return None
        return mask_urls(f"invalid settings: {settings_errors[0]}")
    if not any_error and not all(isinstance(leaf, ChildStartError) for leaf in leaves):
        return None
    reasons = dict.fromkeys(_describe(leaf) for leaf in leaves)
    return mask_urls("cannot start: " + "; ".join(reasons))


def exit_on_startup_error(exc: BaseException, *, name: str = "gochat", debug: bool = False) -> None:
    """When ``exc`` is a startup error (:func:`startup_error`), print its line on stderr
    (the traceback before it when ``debug``) and exit with code 1; else return, for the
    caller to re-raise. For command-line programs that start a service their own way.

    Example::

        try:
            supervisors.run(my_main)
        except BaseException as exc:
            exit_on_startup_error(exc, name="chat-gateway")
            raise
    """
    message = startup_error(exc)
    if message is not None:
        _exit(name, message, exc, debug=debug)


def _exit(name: str, message: str, exc: BaseException, *, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(f"{name}: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1) from None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ChildStartError):
        return str(exc)  # "child 'http' failed to start: OSError: ..."
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
