"""``python -m gochat_actors.cli``: the ``gochat-actors`` command."""

import sys

from . import main

sys.exit(main())
