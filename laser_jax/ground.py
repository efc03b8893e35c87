"""The ground floor: atomic text writes and the wall/CPU clock of a run.

Every module that writes a file atomically or times a run phase takes these
from here, so that the store, the protocol, examples and checkpoints need not
import each other. This module imports nothing of laser_jax.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class Clock:
    """Wall and CPU seconds since the last lap."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = {"wall_s": wall - self.wall, "cpu_s": cpu - self.cpu}
        self.wall, self.cpu = wall, cpu
        return out


__all__ = ["write_text_atomic", "Clock"]
