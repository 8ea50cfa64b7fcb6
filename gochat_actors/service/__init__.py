"""The standard service tree (``open_service``), ``run(main)``, and ``[service]`` settings.

Example::

    from gochat_actors.service import open_service

    async with open_service() as service:      # embedded defaults: no server needed
        print(service.ids.next_id())
"""

from ..config import ServiceSettings
from ._run import exit_on_startup_error, run, startup_error
from ._service import COMPONENTS, Service, open_service, untraced

__all__ = [
    "COMPONENTS",
    "Service",
    "ServiceSettings",
    "exit_on_startup_error",
    "open_service",
    "run",
    "startup_error",
    "untraced",
]
