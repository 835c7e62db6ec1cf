"""Operator commands: replay (rebuild and diff), import, dead-letter recovery, sink rewind,
time to offset, progress bars.

May import anything of ``streams`` but the development stack (``streams.dev``) and the
collector."""
