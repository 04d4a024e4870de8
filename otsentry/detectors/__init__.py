"""otsentry.detectors stage (see DESIGN.md)."""

__all__ = ["acceptance", "anomaly", "base", "bundle", "compact", "discovery", "ensemble", "evaluation", "models",
    "policy", "policy_findings", "policy_flow_rules", "policy_profiles", "policy_rules", "rules", "scaling",
    "scoring", "sensor", "variables"]
