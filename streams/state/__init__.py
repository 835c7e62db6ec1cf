"""Where state lives: the Redis store (devices, user and group profiles), the key layout,
the client factory (one Redis or a Redis Cluster), lookups, and the Lua scripts that apply a
batch atomically.

May import: ``enrichers`` and ``streams.settings``; nothing else of ``streams``."""
