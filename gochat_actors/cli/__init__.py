"""The ``gochat-actors`` command: ``check-config``, ``tree``, ``demo``.

Example::

    $ gochat-actors check-config chat.toml
    $ gochat-actors tree --url http://127.0.0.1:9464
"""

from .._render import render_tree
from ._app import app, main

__all__ = ["app", "main", "render_tree"]
