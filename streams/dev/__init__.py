"""The development stack: an embedded broker and a local Redis (or Redis Cluster) on free
ports, child processes that die with their parent, the ``make run`` demo and its sample.

Used by ``make run``, the tests and the bench; never by a deployed process. May import
anything of ``streams``."""
