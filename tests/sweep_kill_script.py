"""Run a sweep in its own process, slowly, so that a test can SIGKILL it mid-way.

Usage: python tests/sweep_kill_script.py STORE RUN GLOB SECONDS_PER_CHECKPOINT
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sweep_helpers import METRICS, build_mlp

from hookstats import sweep

jobs_module = importlib.import_module("hookstats.runs.jobs")  # where checkpoints are loaded


def main() -> None:
    store, run, pattern, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    load = jobs_module.load_checkpoint

    def slow_load(
        path, **options
    ):  # the delay makes the kill land between checkpoints or inside one
        time.sleep(delay)
        return load(path, **options)

    jobs_module.load_checkpoint = slow_load
    sweep(pattern, build_mlp, store, run, metrics=METRICS, progress=False)


if __name__ == "__main__":
    main()
