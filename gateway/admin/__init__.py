"""The admin listener: metrics, health, readiness (and, later, the admin API)."""
