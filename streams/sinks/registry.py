"""Finding sinks: every class registered under the entry-point group ``identity_enricher.sinks``
(the built-ins are registered the same way, in pyproject.toml), so built-ins and plug-ins are
listed and run alike."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Final

from streams.settings import SettingsError
from streams.sinks.base import Sink
from streams.sinks.options import METRICS_PORT_VARIABLE, all_options, check_sink_name, variable

ENTRY_POINT_GROUP: Final = "identity_enricher.sinks"


@dataclass(frozen=True)
class InstalledSink:
    name: str
    entry_point: EntryPoint

    @property
    def target(self) -> str:
        return self.entry_point.value

    @property
    def distribution(self) -> str:
        dist = self.entry_point.dist
        return f"{dist.name} {dist.version}" if dist is not None else "?"

    def load(self) -> type[Sink]:
        loaded = self.entry_point.load()
        if not (isinstance(loaded, type) and issubclass(loaded, Sink)):
            raise SettingsError(
                f"sink {self.name!r}: entry point {self.target} is not a Sink subclass"
            )
        return loaded


def installed_sinks() -> dict[str, InstalledSink]:
    """Every registered sink by name (the entry point's name); a name registered twice keeps
    the first distribution's."""
    found: dict[str, InstalledSink] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, InstalledSink(point.name, point))
    return dict(sorted(found.items()))


def load_sink(name: str) -> type[Sink]:
    check_sink_name(name)
    sinks = installed_sinks()
    if name not in sinks:
        known = ", ".join(sinks) or "none"
        raise SettingsError(f"no sink named {name!r} is installed (installed: {known})")
    return sinks[name].load()


def sink_setting_names() -> list[str]:
    """Every sink setting the installed sinks read (built-ins and plug-ins), plus the runner's
    own; deployment files can be checked against it. A sink that fails to load is skipped."""
    names = {METRICS_PORT_VARIABLE}
    for name, installed in installed_sinks().items():
        try:
            sink = installed.load()
        except Exception:  # a broken plug-in must not hide the others' settings
            continue
        names.update(variable(name, option.name) for option in all_options(sink))
    return sorted(names)
