"""The shell of identity-enricher: it moves bytes and state in and out of the pure core
(``enrichers``) and owns every guarantee about order, retries and offsets.

- ``streams.worker``: the Faust app and the batch path (consume, enrich, produce, save, commit);
- ``streams.state``: Redis (devices, profiles, lookups);
- ``streams.observe``: metrics, health, logs, web views;
- ``streams.ops``: replay, import, dead-letter recovery, rewind;
- ``streams.collector``: Segment's Tracking API over HTTP;
- ``streams.sinks``: the sink API, its runner and the built-in sinks;
- ``streams.dev``: the embedded development stack and the demo.

At the top only what users name: ``streams.cli`` (``enricher ...``), ``streams.settings`` and
``streams.app`` (``faust -A streams.app worker``). ``enrichers`` never imports from here."""
