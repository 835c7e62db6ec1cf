"""Instructions per event of the batch path, counted by valgrind's callgrind: the same code
gives the same count to about 0.2 % from run to run, where its CPU time on this shared machine
varies by 15 %; a step of a few per cent shows in one pair of runs.

    python -m bench.instructions [--policies]   # BENCH_DEVICES; valgrind must be installed

It runs ``bench.batch_path`` (the workload through the real BatchProcessor and StateStore on a
Redis, outputs discarded) under callgrind at two sizes and prints the difference over the
events between them, so start-up and the first batches cancel out; the hash seed is fixed.
Redis, the broker and the wall clock are not counted: compare the CPU with ``make bench``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

SIZES = (40_000, 46_000)
"""Events of the two runs: past the start, where most events find their device stored."""


def collected(events: int, arguments: list[str]) -> int:
    """The instructions callgrind counted in one run of ``bench.batch_path``."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "bench.batch_path",
            *arguments,
        ],
        env={**os.environ, "BENCH_EVENTS": str(events), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"callgrind counted nothing:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    arguments = [a for a in sys.argv[1:] if a == "--policies"]
    small, large = (collected(events, arguments) for events in SIZES)
    per_event = (large - small) / (SIZES[1] - SIZES[0])
    print(f"{per_event:,.0f} instructions per event (events {SIZES[0]:,} to {SIZES[1]:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
