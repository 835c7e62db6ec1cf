"""Which build of the core runs: the modules setup.py compiles with mypyc, or their Python
sources (issue 21). Said in the worker's first log lines and in the test session header."""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("enrichers", "streams")


def compiled(module: str = "enrichers.enrich") -> bool:
    """Whether ``module`` (imported) was loaded from a compiled extension."""
    imported = sys.modules.get(module)
    loader = getattr(getattr(imported, "__spec__", None), "loader", None)
    return isinstance(loader, importlib.machinery.ExtensionFileLoader)


def describe() -> str:
    import enrichers.enrich  # noqa: F401  (the module whose build is described)
    import streams.worker.batch  # noqa: F401

    if compiled("enrichers.enrich") and compiled("streams.worker.batch"):
        return "core compiled with mypyc"
    return "core in pure Python"


def stale_extensions() -> list[str]:
    """Compiled modules older than their source: an edit not built yet (``make install``
    builds again); the extension would run instead of the edited source."""
    stale = []
    for package in _PACKAGES:
        for extension in (ROOT / package).rglob("*.so"):
            source = extension.with_name(extension.name.split(".", 1)[0] + ".py")
            if source.exists() and source.stat().st_mtime > extension.stat().st_mtime:
                stale.append(str(source.relative_to(ROOT)))
    return sorted(stale)


def prefer_sources() -> None:
    """From now on, modules of this project are imported from their Python sources even where
    compiled ones sit beside them (the pure build's tests, the fuzzer's coverage). Call before
    the first import of a compiled module."""
    loaded = sorted(n for n in sys.modules if n.split(".")[0] in _PACKAGES and compiled(n))
    if loaded:
        raise RuntimeError(f"compiled modules already imported: {', '.join(loaded)}")
    roots = {str(ROOT), *(str(ROOT / package) for package in _PACKAGES)}
    loaders = [(importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)]

    def sources_only(path: str) -> importlib.machinery.FileFinder:
        resolved = str(Path(path or ".").resolve())
        if resolved in roots or any(resolved.startswith(f"{r}/") for r in roots - {str(ROOT)}):
            return importlib.machinery.FileFinder(path, *loaders)
        raise ImportError("not this project's directory")

    sys.path_hooks.insert(0, sources_only)
    sys.path_importer_cache.clear()


if __name__ == "__main__":  # make install: exit 1 when a compiled module must be built again
    if "--check-stale" in sys.argv and stale_extensions():
        print(f"to build again: {', '.join(stale_extensions())}", file=sys.stderr)
        sys.exit(1)
