"""``enricher sink list`` and ``enricher sink settings``."""

from __future__ import annotations

from streams.settings import Settings
from streams.sinks.options import all_options, variable
from streams.sinks.registry import installed_sinks, sink_setting_names
from streams.sinks.runner import consumer_group, deadletter_topic, source_topic


def run_sink_list(settings: Settings, verbose: bool = False) -> int:
    """Every installed sink (built-in or plug-in), with what it reads and where it comes from;
    ``verbose`` adds each sink's settings."""
    sinks = installed_sinks()
    if not sinks:
        print("no sinks installed")
        return 0
    for name, installed in sinks.items():
        try:
            sink = installed.load()
        except Exception as exc:  # a broken plug-in is listed with its error, not hidden
            print(f"{name}\tBROKEN: {exc!r}\t{installed.target} ({installed.distribution})")
            continue
        print(
            f"{name}\treads {source_topic(settings, sink)}\t{installed.target}"
            f" ({installed.distribution})"
        )
        if verbose:
            print(f"    consumer group {consumer_group(settings, name)}")
            print(f"    dead letters   {deadletter_topic(settings, name)}")
            for option in all_options(sink):
                required = " (required)" if option.required else f" [default: {option.default}]"
                print(f"    {variable(name, option.name)}  {option.help}{required}")
    return 0


def run_sink_settings() -> int:
    """Every sink setting name the installed sinks read, one a line."""
    for name in sink_setting_names():
        print(name)
    return 0
