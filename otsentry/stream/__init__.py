"""otsentry.stream stage (see DESIGN.md)."""

__all__ = ["codec", "correlate", "detect", "index", "publish", "transport", "kafka"]
