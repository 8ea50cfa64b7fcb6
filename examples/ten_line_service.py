"""A service in ten lines: the standard tree plus one actor of your own.

Run: ``.venv/bin/python examples/ten_line_service.py`` (embedded defaults, no server),
then open http://127.0.0.1:9464/debug/tree in a browser; Ctrl-C stops it gracefully.
"""

import trio

import gochat_actors
from gochat_actors.service import Service
from supervisors import Actor, actor_spec, whereis


class Greeter(Actor):
    async def init(self, service: Service) -> None:
        self.service = service

    async def handle_call(self, name: object) -> str:
        return f"hello {name}, here is an id: {self.service.ids.next_id()}"


async def main(service: Service) -> None:
    await service.add_child(actor_spec("greeter", Greeter, service))
    print(await whereis("greeter").call("ann"), flush=True)
    await trio.sleep_forever()


if __name__ == "__main__":
    gochat_actors.run(main)
