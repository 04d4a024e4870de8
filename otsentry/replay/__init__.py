"""Scenario replays for students: the catalogue, paced replay, scoring against ground truth, the HTML report.

The click commands in ``otsentry.cli.replay`` are thin wrappers over these modules.
"""

__all__ = ["catalog", "kafka_out", "paced", "plot", "report", "score"]
