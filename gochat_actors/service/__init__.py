"""The standard service tree (``open_service``), ``run(main)``, and ``[service]`` settings.

Example::

    from gochat_actors.service import open_service

    async with open_service() as service:      # embedded defaults: no server needed
        print(service.ids.next_id())
"""

from ._service import COMPONENTS, Service, open_service, run
from ._settings import ServiceSettings

__all__ = ["COMPONENTS", "Service", "ServiceSettings", "open_service", "run"]
