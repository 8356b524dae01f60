"""Metrics, structured logs and (later) the audit trail."""
