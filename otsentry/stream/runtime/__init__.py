"""What a long-running stage needs around it: lifecycle, retry, the consumer loop, metrics, settings."""

__all__ = ["daemon", "membership", "metrics", "retry", "settings"]
