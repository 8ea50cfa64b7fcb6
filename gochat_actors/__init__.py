"""gochat_actors: supervised trio components for a chat backend."""

__all__: list[str] = []
