"""Alerts: ECS mapping and sinks (JSONL file; Elasticsearch in a later stage)."""

__all__ = ["ecs", "elastic", "elastic_retention", "elastic_search", "elastic_template", "kibana", "kibana_objects",
    "kibana_views", "sinks"]
