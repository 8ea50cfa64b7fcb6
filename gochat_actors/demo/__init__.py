"""The demo chat backend (``gochat-actors demo``), built only from the public API.

A load generator sends chat messages (Snowflake IDs, trace ids) to a topic; a consumer
group persists them (the id is the primary key, so a redelivery is a no-op) and
updates each room's last message in the cache; a lock-guarded compactor runs in one
place at a time. ``--duration`` ends with a summary where lost and duplicate ids are 0.

Example::

    from gochat_actors.demo import main

    exit_code = main(duration=10.0, chaos=1.0, live=False)
"""

from ._chat import ChatDemo, Ledger
from ._main import ROWS, Summary, main, run_demo

__all__ = ["ROWS", "ChatDemo", "Ledger", "Summary", "main", "run_demo"]
