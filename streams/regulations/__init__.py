"""Regulations (SPEC R39): the topics that carry them and their outcomes (``log``), the
worker's service applying them to the state (``applier``), their HTTP views (``views``) and
commands (``commands``). Imports the core, ``streams.state``, ``streams.worker`` clients and
``streams.settings``; the sinks import ``log`` to follow regulations."""
