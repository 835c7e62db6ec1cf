"""The live console (``enricher console``): recent events in their raw, warehouse and
destinations forms, matched and compared, in the browser. ``window`` holds and matches them
(no I/O), ``tail`` reads the topics, ``server`` serves the pages and the live stream. Imports
``streams.settings``, ``streams.state`` (lookups) and ``streams.worker`` (Kafka clients)."""
