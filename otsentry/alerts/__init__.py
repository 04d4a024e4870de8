"""Alerts as the SOC reads them: the ECS mapping (``ecs``), sinks (JSON lines, ``sinks``; Elasticsearch with index
templates, retention and search, ``elastic*``) and the Kibana saved objects (``kibana*``)."""

__all__ = ["ecs", "elastic", "elastic_retention", "elastic_search", "elastic_template", "kibana", "kibana_objects",
           "kibana_views", "sinks"]
