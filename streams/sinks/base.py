"""The sink API: one small abstract class, the records it is given and the two kinds of error.

A sink writes batches of enriched messages somewhere. The runner (``streams.sinks.runner``)
does everything else: consuming, routing by ``integrations``, the IP policy, retries with
backoff, dead letters and offset commits. A sink only has to write a batch, or raise:

- :class:`RetryableSinkError`: worth trying again (the service is down, slow, rate-limited);
- :class:`PermanentSinkError`: these records will never be accepted (the runner dead-letters
  them and goes on).

A sink may also implement :meth:`Sink.regulate` (SPEC R39: delete what it wrote of a person).

Any other exception is a bug: the runner stops without committing the batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from enrichers.regulations import Regulation

SinkSource = Literal["destinations", "warehouse"]


@dataclass(frozen=True, slots=True)
class SinkRecord:
    """One enriched message as the sink gets it: the decoded message (after the sink's IP
    policy) and where it came from."""

    message: dict[str, Any]
    topic: str
    partition: int
    offset: int
    key: bytes | None
    timestamp_ms: int

    @property
    def message_id(self) -> str | None:
        value = self.message.get("messageId")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class SinkOption:
    """A setting of a sink: read from ``ENRICHER_SINK_<NAME>_<OPTION>`` (or the config file),
    parsed by ``parse`` at start (a ``ValueError`` names the bad value), else ``default``.
    ``required`` options have no default and must be set."""

    name: str
    parse: Callable[[str], Any]
    default: Any = None
    help: str = ""
    required: bool = False


class SinkError(Exception):
    """Base of the errors a sink raises on purpose."""


class RetryableSinkError(SinkError):
    """Try the batch again later. ``retry_after`` (seconds) is the destination's own request
    (an HTTP ``Retry-After``); the runner waits at least that long."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RegulationUnsupported(SinkError):
    """The destination cannot do what a regulation asks (R39): reported as ``unsupported``."""


class PermanentSinkError(SinkError):
    """These records will never be written. ``records`` names the failed ones when only some of
    the batch failed (the rest were written); ``None`` means the whole batch."""

    def __init__(self, message: str, records: Sequence[SinkRecord] | None = None) -> None:
        super().__init__(message)
        self.records = records


class Sink(ABC):
    """A destination. Subclass it, give it a ``name``, declare its ``options``, implement
    :meth:`write`; register the class under the entry-point group ``identity_enricher.sinks``.

    ``source`` says which topic it reads: ``"destinations"`` (what downstream tools may see,
    the default) or ``"warehouse"`` (everything, ``context.traits`` included: loaders).
    """

    name: ClassVar[str] = ""
    source: ClassVar[SinkSource] = "destinations"
    obeys_all_false: ClassVar[bool] = True
    """Whether ``integrations.All: false`` keeps messages from this sink unless it is named
    (R29). Warehouse loaders set it False: like Segment's warehouses they load everything
    but what names them with an explicit ``false``."""
    options: ClassVar[Sequence[SinkOption]] = ()

    def __init__(self, config: Mapping[str, Any]) -> None:
        """``config`` maps each declared option's name (and the common ones: ``batch_max``,
        ``ip_policy``, ``retries``...) to its parsed value."""
        self.config = config

    @property
    def batch_size(self) -> int:
        """The most records one :meth:`write` call gets."""
        return int(self.config["batch_max"])

    async def start(self) -> None:
        """Connect, create what is needed; called once before the first write."""
        return None

    async def stop(self) -> None:
        """Flush and disconnect; called once, after the last write."""
        return None

    async def tick(self) -> None:
        """Called between batches, at least every second (time-based work such as rotating
        a file); nothing by default."""
        return None

    async def regulate(self, regulation: Regulation) -> Mapping[str, Any]:
        """R39: a regulation of ``events.regulations``, once, in order, before the records
        consumed after it: a ``delete`` (or ``delete-and-suppress``) asks the sink to delete
        what it wrote of the regulation's userIds and anonymousIds. Return counts for the
        regulation's status (never ids); raise :class:`RetryableSinkError` to be called again
        later, :class:`RegulationUnsupported` when the destination cannot (the default), any
        other error to report the regulation ``failed`` on this sink (tried again on the next
        start)."""
        raise RegulationUnsupported(f"the {self.name} sink cannot delete what it wrote")

    @abstractmethod
    async def write(self, batch: Sequence[SinkRecord]) -> None:
        """Write every record of ``batch`` durably, or raise one of the sink errors. Records
        come in each partition's order; a batch may be written again after a failure or a
        restart, so writes should be idempotent by ``messageId`` where the destination can."""
