"""Alerts: ECS mapping and sinks (JSONL file; Elasticsearch in a later stage)."""
