"""Getting records through: the outbox (acknowledged sends) and event-time ordering of windows."""

__all__ = ["ordering", "outbox"]
