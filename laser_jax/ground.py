"""The ground floor: atomic text writes and the clock of a run (wall and CPU seconds, programs compiled).

Every module that writes a file atomically or times a run phase takes these
from here, so that the store, the protocol, examples and checkpoints need not
import each other. This module imports nothing of laser_jax.

Compiles are counted process-wide from JAX's own monitoring events (one
``/jax/core/compile/backend_compile_duration`` event per XLA program compiled,
or read from the persistent compilation cache), by a listener registered the
first time a :class:`Clock` starts. The seconds compiling are wall seconds
during which at least one program was compiling: programs compiled side by
side on several threads count once.
"""

from __future__ import annotations

import os
import threading
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


COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileTime:
    """Compiles counted as they end: how many, and the wall seconds covered by at least one (the union of their
    intervals, so that compiles side by side on several threads count once). Events must come in order of
    their ends, as they do when each is reported at its end."""

    def __init__(self):
        self.programs, self.seconds, self.until = 0, 0.0, float("-inf")
        self.lock = threading.Lock()

    def add(self, end: float, seconds: float) -> None:
        with self.lock:
            self.programs += 1
            self.seconds += max(0.0, end - max(end - seconds, self.until))
            self.until = max(end, self.until)


_compiled = CompileTime()
_listening = []


def _on_event(event: str, seconds: float, **_) -> None:
    if event == COMPILE_EVENT:
        _compiled.add(time.perf_counter(), seconds)  # the event comes as the compile ends, on the thread that compiled


def compile_totals() -> tuple[int, float]:
    """Programs compiled in this process, and the wall seconds spent compiling them (overlapping compiles
    counted once), since counting started."""
    if not _listening:
        import jax.monitoring

        jax.monitoring.register_event_duration_secs_listener(_on_event)
        _listening.append(_on_event)
    return _compiled.programs, _compiled.seconds


class Clock:
    """Since the last lap: wall and CPU seconds, programs compiled and seconds compiling."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.programs, self.compile_s = compile_totals()

    def lap(self) -> dict[str, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        programs, compile_s = compile_totals()
        out = {"wall_s": wall - self.wall, "cpu_s": cpu - self.cpu, "programs": programs - self.programs,
               "compile_s": compile_s - self.compile_s}
        self.wall, self.cpu, self.programs, self.compile_s = wall, cpu, programs, compile_s
        return out


def timing_line(phases: dict) -> str:
    """One line of a run's time per phase, e.g. ``val 41.2 s (12 programs, 9.8 s compiling)``."""
    parts = []
    for phase, values in phases.items():
        compiled = ""
        if "programs" in values:
            compiled = f" ({int(values['programs'])} programs, {values['compile_s']:.1f} s compiling)"
        parts.append(f"{phase} {values['wall_s']:.1f} s{compiled}")
    return "; ".join(parts)


__all__ = ["write_text_atomic", "Clock", "CompileTime", "compile_totals", "timing_line", "COMPILE_EVENT"]
