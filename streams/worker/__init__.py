"""The worker's batch path: the Faust app, the raw consumer, the batch processor, the writer,
topics, dead letters, in/out records and retries.

May import: ``enrichers`` (the rules), ``streams.settings``, ``streams.state`` (device state),
``streams.observe`` (metrics, health, logs). Nothing here imports ``streams.ops``,
``streams.dev``, the collector or the sinks."""
