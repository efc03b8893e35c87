"""Devices and hosts for the command line: joining a multi-process run, the mesh, matmul precision, one writer.

:func:`add_device_arguments` adds ``--coordinator HOST:PORT --num-processes N
--process-id I --coordinator-timeout S --mesh AXES --precision P`` to a
command's parser; :func:`setup_devices` turns them into a
:class:`DeviceSetup` (call it before any JAX computation: it may start
``jax.distributed``). The processes of a run are found, in this order, from the
flags, from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``, or from a cluster that ``jax.distributed.initialize()``
recognises by itself (Slurm, Open MPI, Cloud TPU, Kubernetes); with none of
these the run is one process. On CPU, cross-process collectives use gloo.

Every process builds the same plan and computes every row (the sweep gathers
each row to every process); only process 0 writes the run directory
(:meth:`DeviceSetup.open_store`), and it tells the others which rows are done,
so a killed multi-process run resumes as a single-process one does.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Optional

import numpy as np

from laser_jax.errors import DeviceError, LaserJaxError

if TYPE_CHECKING:
    from jax.sharding import Mesh

# JAX (and the sweep engine, home of the mesh axes) are imported where needed: building the CLI's parser stays fast.

PRECISIONS = ("default", "high", "highest")
COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
DEFAULT_COORDINATOR_TIMEOUT = 300  # seconds, as jax.distributed.initialize


@dataclasses.dataclass(frozen=True)
class DeviceSetup:
    """Where a command runs: its mesh (None: the sweep's default), matmul precision, and this process's place."""

    mesh: Optional[Mesh]
    precision: str
    process_id: int = 0
    num_processes: int = 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes files (process 0)."""
        return self.process_id == 0

    def matmul_precision(self):
        """A context in which every matmul traced runs at :attr:`precision` (part of the jit cache key)."""
        import jax

        return jax.default_matmul_precision(self.precision)

    def open_store(self, make_store: Callable):
        """``make_store()`` (a :class:`~laser_jax.results.ResultsStore`) on process 0; on the others, a
        :class:`FollowerStore` that shares process 0's done rows and errors and writes nothing."""
        if self.num_processes == 1:
            return make_store()
        return FollowerStore(make_store if self.is_writer else None)


def setup_devices(*, coordinator: Optional[str] = None, num_processes: Optional[int] = None,
                  process_id: Optional[int] = None, coordinator_timeout: int = DEFAULT_COORDINATOR_TIMEOUT,
                  mesh: Optional[str] = None, precision: Optional[str] = None, dtype: str = "float32") -> DeviceSetup:
    """Join the multi-process run (if any), build the mesh (``"variants=2,model=4"``), pick the matmul precision
    (default: ``highest`` for float32 parameters, else ``default``). Call before any JAX computation."""
    if precision is not None and precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    process_id, num_processes = initialize_distributed(coordinator, num_processes, process_id, coordinator_timeout)
    built = None if mesh is None else build_mesh(parse_mesh(mesh))
    precision = precision or ("highest" if dtype == "float32" else "default")
    return DeviceSetup(built, precision, process_id, num_processes)


# ----------------------------------------------------------------------------- processes


def initialize_distributed(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
                           process_id: Optional[int] = None,
                           timeout: int = DEFAULT_COORDINATOR_TIMEOUT) -> tuple[int, int]:
    """Start ``jax.distributed`` for a multi-process run and return ``(process_id, num_processes)``.

    Arguments left None are read from the environment variables of this
    module's docstring; with none given anywhere, a cluster that JAX detects
    fills them in, and otherwise the run is one process (nothing started).
    """
    import jax

    coordinator = coordinator or os.environ.get(COORDINATOR_ENV) or None
    num_processes = _env_int(NUM_PROCESSES_ENV, "--num-processes") if num_processes is None else num_processes
    process_id = _env_int(PROCESS_ID_ENV, "--process-id") if process_id is None else process_id
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    given = {"--coordinator": coordinator, "--num-processes": num_processes, "--process-id": process_id}
    if all(value is None for value in given.values()) and not cluster_detected():
        return 0, 1
    if not cluster_detected():
        missing = [flag for flag, value in given.items() if value is None]
        if missing:
            raise DeviceError(f"a multi-process run needs --coordinator, --num-processes and --process-id "
                              f"(or their environment variables); {', '.join(missing)} missing")
    if num_processes is not None and num_processes < 1:
        raise DeviceError(f"--num-processes must be at least 1, got {num_processes}")
    if process_id is not None and num_processes is not None and not 0 <= process_id < num_processes:
        raise DeviceError(f"--process-id {process_id} is outside 0..{num_processes - 1} (--num-processes {num_processes})")
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DeviceError(f"--coordinator {coordinator!r} is not HOST:PORT (e.g. localhost:12355)")
    if timeout < 1:
        raise DeviceError(f"--coordinator-timeout must be at least 1 second, got {timeout}")
    if coordinator is not None and process_id is not None:
        wait_for_coordinator(coordinator, process_id, num_processes, timeout)
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=timeout)
    except Exception as error:  # jax raises RuntimeError, XlaRuntimeError or ValueError, with pages of detail
        detail = " ".join(str(error).split("\n")[0].split())[:200]
        where = f"the coordinator {coordinator}" if coordinator else "the cluster's coordinator"
        raise DeviceError(f"could not join the multi-process run at {where}: {detail}") from None
    return jax.process_index(), jax.process_count()


def wait_for_coordinator(coordinator: str, process_id: int, num_processes: int, timeout: float) -> None:
    """Process 0: check that the coordinator's port is free here. The others: wait up to ``timeout`` seconds for
    it to accept connections. (JAX's client aborts the whole process when it cannot connect; this fails first,
    with a message.)"""
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")
    if process_id == 0:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind(("", int(port)))
            except OSError as error:
                raise DeviceError(f"process 0 cannot serve the coordinator on port {port}: {error.strerror}") from None
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=min(5.0, timeout)).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise DeviceError(f"could not reach the coordinator {coordinator} within {timeout:g} s (process "
                                  f"{process_id} of {num_processes}); is process 0 running, and is the address "
                                  "reachable from here?") from None
            time.sleep(0.2)


# JAX keeps its cluster detection private (``jax._src.clusters``), so we read the same environment variables its
# detectors read: Slurm's job step, Open MPI's launcher, a TPU pod's worker list, a Kubernetes pod (with the
# ``kubernetes`` client JAX needs there). mpi4py is opt-in in JAX too, and is not detected here.
CLUSTER_ENVIRONMENTS = {
    "Slurm": ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"),
    "Open MPI": ("OMPI_MCA_orte_hnp_uri",),
    "Cloud TPU (GKE)": ("TPU_WORKER_HOSTNAMES",),
    "Cloud TPU (process addresses)": ("TPU_PROCESS_ADDRESSES",),
    "Kubernetes": ("KUBERNETES_SERVICE_HOST",),
}


def detected_cluster(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The cluster whose launcher set this process's environment (a key of :data:`CLUSTER_ENVIRONMENTS`), or None."""
    environ = os.environ if environ is None else environ
    for name, variables in CLUSTER_ENVIRONMENTS.items():
        if all(variable in environ for variable in variables):
            if name == "Kubernetes" and importlib.util.find_spec("kubernetes") is None:
                continue  # JAX's Kubernetes detector needs the client library; without it JAX does not start either
            return name
    return None


def cluster_detected() -> bool:
    """Whether ``jax.distributed.initialize()`` would find its arguments by itself (Slurm, Open MPI, TPU, ...)."""
    return detected_cluster() is not None


def _env_int(name: str, flag: str) -> Optional[int]:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise DeviceError(f"${name}={text!r} is not an integer (it stands for {flag})") from None


def broadcast_json(value, is_source: bool):
    """``value`` (JSON-serialisable) of process 0, on every process."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8) if is_source else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size), is_source=is_source))
    buffer = data if is_source else np.zeros(size, np.uint8)
    return json.loads(np.asarray(multihost_utils.broadcast_one_to_all(buffer, is_source=is_source)).tobytes())


class FollowerStore:
    """The run directory of a multi-process run, as every process sees it: process 0 holds the real store
    (``make_store()``) and writes; the others get its rows and directory, and raise the errors it raises.

    The same calls in the same order on every process (open, :meth:`start`) keep them in step.
    """

    def __init__(self, make_store: Optional[Callable]):
        self.store, message = None, {}
        if make_store is not None:
            try:
                self.store = make_store()
                message = {"rows": self.store.rows, "directory": str(self.store.directory)}
            except LaserJaxError as error:
                message = {"error": str(error)}
                broadcast_json(message, True)
                raise
        message = broadcast_json(message, self.store is not None)
        if "error" in message:
            raise DeviceError(f"process 0: {message['error']}")
        self.directory = Path(message["directory"])
        self._rows = [dict(row) for row in message["rows"]]

    def done(self) -> set[tuple]:
        from laser_jax.results import variant_key

        return {variant_key(row) for row in self._rows}

    def start(self) -> None:
        error = None
        if self.store is not None:
            try:
                self.store.start()
            except LaserJaxError as failure:
                error = failure
        message = broadcast_json(None if error is None else str(error), self.store is not None)
        if error is not None:
            raise error
        if message is not None:
            raise DeviceError(f"process 0: {message}")

    def record(self, rows, scores=None) -> None:
        from laser_jax.results import variant_key

        rows = [dict(row) for row in rows]
        if self.store is not None:
            self.store.record(rows, scores=scores)
        replaced = {(variant_key(row), row["split"]) for row in rows}  # as ResultsStore.record: per variant and split
        self._rows = [row for row in self._rows if (variant_key(row), row["split"]) not in replaced] + rows

    @property
    def rows(self) -> list[dict]:
        from laser_jax.results import sort_key

        return sorted(self._rows, key=sort_key)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


# ----------------------------------------------------------------------------- the mesh


def parse_mesh(text: str) -> dict[str, int]:
    """``"variants=2,model=4"`` to ``{"variants": 2, "model": 4}`` (axes of :data:`~laser_jax.sweep.MESH_AXES`)."""
    from laser_jax.sweep import MESH_AXES

    shape: dict[str, int] = {}
    for part in text.split(","):
        name, equals, size = (piece.strip() for piece in part.partition("="))
        if not equals or not size.isdigit():
            raise DeviceError(f"bad --mesh {text!r}: use AXIS=SIZE pairs, e.g. variants=2,model=4")
        if name not in MESH_AXES:
            raise DeviceError(f"unknown mesh axis {name!r} in --mesh {text!r}; axes: {', '.join(MESH_AXES)}")
        if name in shape or int(size) < 1:
            raise DeviceError(f"bad --mesh {text!r}: each axis once, with a size of at least 1")
        shape[name] = int(size)
    return shape


def build_mesh(shape: Mapping[str, int], devices=None) -> Mesh:
    """A ``(variants, examples, model)`` mesh over ``devices`` (default all, of every process).

    Axes left out have size 1, except ``examples``, which takes the devices
    left; the sizes must multiply to the device count. ``model`` varies
    fastest, so model-parallel groups sit on neighbouring devices (one host).
    """
    import jax
    from jax.sharding import Mesh

    from laser_jax.sweep import EXAMPLE_AXIS, MESH_AXES
    devices = list(jax.devices() if devices is None else devices)
    given = math.prod(shape.values())
    sizes = dict(shape)
    if EXAMPLE_AXIS not in sizes and len(devices) % given == 0:
        sizes[EXAMPLE_AXIS] = len(devices) // given
    spec = ",".join(f"{name}={size}" for name, size in shape.items())
    if math.prod(sizes.values()) != len(devices):
        need = f"{given} devices" if EXAMPLE_AXIS in shape else f"a multiple of {given} devices"
        raise DeviceError(f"--mesh {spec} needs {need}, but there are {len(devices)} "
                          f"({jax.process_count()} process(es) x {jax.local_device_count()})")
    dims = tuple(sizes.get(name, 1) for name in MESH_AXES)
    return Mesh(np.array(devices).reshape(dims), MESH_AXES)


def bytes_per_device(tree) -> dict:
    """Bytes of ``tree``'s arrays held by each (addressable) device."""
    import jax

    held: dict = {}
    for leaf in jax.tree.leaves(tree):
        for shard in leaf.addressable_shards:
            held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
    return held


__all__ = ["PRECISIONS", "DEFAULT_COORDINATOR_TIMEOUT", "DeviceSetup", "setup_devices", "initialize_distributed",
           "cluster_detected", "detected_cluster", "CLUSTER_ENVIRONMENTS", "broadcast_json", "FollowerStore", "parse_mesh", "build_mesh", "bytes_per_device"]
