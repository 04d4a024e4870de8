"""Windows -> alerts: the policy baseline (``policy*``, rules declared in ``rules``), the anomaly ensemble
(``anomaly``, ``ensemble``, ``models``), sensor and process-value rules, the model bundle, and ``scoring``, which
runs them all over a batch of windows for the pipeline and the Kafka detector alike."""

__all__ = ["acceptance", "anomaly", "base", "bundle", "compact", "discovery", "ensemble", "evaluation", "models",
    "policy", "policy_findings", "policy_flow_rules", "policy_profiles", "policy_rules", "rules", "scaling",
    "scoring", "sensor", "variables"]
