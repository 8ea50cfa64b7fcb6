"""HTTP endpoints (/metrics, /healthz, /readyz, /debug/tree) as a supervised child;
``[http]`` settings.

Example::

    from gochat_actors.http import HTTPEndpoints

    endpoints = HTTPEndpoints(settings.http, metrics=metrics)
    async with open_supervisor([endpoints.spec("http")]):
        print(endpoints.url)        # http://127.0.0.1:9464
"""

from ._endpoints import HTTPEndpoints
from ._html import render_tree_html
from ._settings import HTTPSettings

__all__ = ["HTTPEndpoints", "HTTPSettings", "render_tree_html"]
