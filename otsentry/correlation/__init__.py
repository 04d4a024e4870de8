"""Correlation: alerts -> incidents (actor, target, time; ATT&CK for ICS tactics in order)."""

from otsentry.correlation.incidents import DEFAULT_IDLE_GAP_S, Correlator, correlate, incident_id
from otsentry.correlation.summary import summarise

__all__ = ["DEFAULT_IDLE_GAP_S", "Correlator", "correlate", "incident_id", "summarise"]
