"""Watching a running process: Prometheus metrics, health and readiness, log formats, and the
web views that serve them (and the lookups).

May import: ``enrichers``, ``streams.settings``, ``streams.state``, and the worker's counters
and records (``streams.worker``) for what it exports."""
