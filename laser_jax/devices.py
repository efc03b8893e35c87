"""Devices and hosts: joining a multi-process run, the mesh, placing arrays on it, memory sizing, one writer.

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
(:class:`laser_jax.results.FollowerStore` on the others), and it tells them which rows are done,
so a killed multi-process run resumes as a single-process one does.

The sweep engine's side of devices lives here too: the mesh axes
(:data:`MESH_AXES`), the default mesh (:func:`default_mesh`), how block
parameters and SVD factors are split (:func:`block_param_spec`,
:class:`Placement`), and how much memory one call may take
(:func:`device_memory`, :func:`activation_budget`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import importlib.util
import json
import math
import os
import socket
import time
from typing import TYPE_CHECKING, Callable, Hashable, Mapping, Optional, Sequence

import numpy as np

from laser_jax.errors import DeviceError

if TYPE_CHECKING:
    from jax.sharding import Mesh

# JAX is imported where needed: building the CLI's parser stays fast.

PRECISIONS = ("default", "high", "highest")
COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"
DEFAULT_COORDINATOR_TIMEOUT = 300  # seconds, as jax.distributed.initialize
VARIANT_AXIS = "variants"
EXAMPLE_AXIS = "examples"
MODEL_AXIS = "model"
MESH_AXES = (VARIANT_AXIS, EXAMPLE_AXIS, MODEL_AXIS)
DEFAULT_ACTIVATION_BUDGET = 1 << 30  # bytes, when the backend reports no free memory


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


# ----------------------------------------------------------------------------- the mesh


def parse_mesh(text: str) -> dict[str, int]:
    """``"variants=2,model=4"`` to ``{"variants": 2, "model": 4}`` (axes of :data:`MESH_AXES`)."""
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


# ----------------------------------------------------------------------------- compiling the engine's programs

# XLA's CPU backend compiles with its fusion emitters by default; an engine program's compile time is then mostly LLVM
# code generation, and the older emitters generate its code in about two thirds of that time, with the same seconds at
# run time (``XLA_FLAGS=--xla_cpu_use_fusion_emitters=false python benchmarks/compile_counts.py``: 10.8 s of compile
# threads become 7.2 s, the test phase takes 10.8 s in both).
CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


def compiler_options() -> dict:
    """The XLA options the engine's programs compile with on the default backend: :data:`CPU_COMPILER_OPTIONS` on a
    CPU whose XLA accepts them, none otherwise."""
    import jax

    return dict(_accepted_options(jax.default_backend(), tuple(sorted(CPU_COMPILER_OPTIONS.items()))))


@functools.lru_cache(maxsize=None)
def _accepted_options(platform: str, options: tuple) -> tuple:
    import jax

    if platform != "cpu":
        return ()
    def probe(x):
        return x + 1

    try:  # an XLA without these options refuses them at compile time
        jax.jit(probe, compiler_options=dict(options)).lower(np.float32(0)).compile()
    except (TypeError, RuntimeError):
        return ()
    return options


class Program:
    """``jax.jit(fn, static_argnums=...)`` with :func:`compiler_options`, jitted at its first use (once the
    backend is known: a multi-process run starts ``jax.distributed`` after importing the engine)."""

    def __init__(self, fn: Callable, static_argnums: tuple = ()):
        functools.update_wrapper(self, fn)
        self.fn, self.static_argnums = fn, tuple(static_argnums)
        self._jitted: Optional[Callable] = None

    def jitted(self) -> Callable:
        if self._jitted is None:
            import jax

            self._jitted = jax.jit(self.fn, static_argnums=self.static_argnums, compiler_options=compiler_options())
        return self._jitted

    def __call__(self, *args):
        return self.jitted()(*args)

    def lower(self, *args):
        return self.jitted().lower(*args)

    def __getattr__(self, name: str):  # the rest of the jitted function's interface (``_cache_size``, ``trace``, ...)
        if name.startswith("__") or name in ("fn", "static_argnums", "_jitted"):
            raise AttributeError(name)
        return getattr(self.jitted(), name)


def program(static_argnums: tuple = ()) -> Callable[[Callable], Program]:
    """Decorator: ``fn`` as a :class:`Program`."""
    return lambda fn: Program(fn, static_argnums)


# ----------------------------------------------------------------------------- placement on the mesh (the sweep's)


@functools.lru_cache(maxsize=1)
def _compile_pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="laser-jax-compile")


class Placement:
    """Puts host arrays on the mesh (or leaves them alone without one) and fetches results."""

    def __init__(self, mesh: Optional[Mesh]):
        self.mesh = mesh
        names = mesh.axis_names if mesh is not None else ()
        unknown = [name for name in names if name not in MESH_AXES]
        if unknown:
            raise DeviceError(f"unknown mesh axis {unknown[0]!r}; the sweep's axes are {', '.join(MESH_AXES)}")
        self.example_axis = EXAMPLE_AXIS if EXAMPLE_AXIS in names else None
        self.variant_axis = VARIANT_AXIS if VARIANT_AXIS in names else None
        self.example_shards = mesh.shape[EXAMPLE_AXIS] if self.example_axis else 1
        self.variant_shards = mesh.shape[VARIANT_AXIS] if self.variant_axis else 1
        self.model_shards = mesh.shape[MODEL_AXIS] if MODEL_AXIS in names else 1

    def put(self, tree, axis: Optional[str] = None):
        """Shard the leading axis of every leaf over mesh axis ``axis`` (None: replicate)."""
        import jax
        from jax.sharding import PartitionSpec

        spec = PartitionSpec(axis) if axis else PartitionSpec()
        return jax.tree.map(lambda leaf: self.put_leaf(leaf, spec), tree)

    def put_leaf(self, leaf, spec):
        import jax
        import jax.numpy as jnp
        from jax.sharding import NamedSharding

        if self.mesh is None:
            return jnp.asarray(leaf)
        sharding = NamedSharding(self.mesh, spec)
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    def block_spec(self, name: str, shape):
        return block_param_spec(name, tuple(shape), self.model_shards)

    def put_params(self, params: dict) -> dict:
        """The parameters on the mesh: block leaves split over ``model`` (:func:`block_param_spec`), the rest replicated."""
        blocks = {name: self.put_leaf(leaf, self.block_spec(name, leaf.shape)) for name, leaf in params["blocks"].items()}
        return {**self.put({k: v for k, v in params.items() if k != "blocks"}), "blocks": blocks}

    def put_factors(self, tau: str, matrix_shape, factors, per_variant: bool = False):
        """SVD factors (a :class:`~laser_jax.models.base.LowRank`) of block matrix ``tau`` split as the matrix is
        (and over ``variants`` when ``per_variant``)."""
        specs = factor_specs(self.block_spec(tau, matrix_shape), per_variant)
        return type(factors)(**{name: self.put_leaf(getattr(factors, name), getattr(specs, name)) for name in ("u", "s", "vt")})

    def activation_budget(self) -> int:
        """Bytes for one call's activations: half the smallest free device memory times the devices that split
        them, or :data:`DEFAULT_ACTIVATION_BUDGET` when the backend reports none."""
        import jax

        devices = jax.local_devices() if self.mesh is None else list(self.mesh.devices.flat)
        return activation_budget(device_memory(devices, "free"), self.example_shards * self.variant_shards)

    def dispatch(self, program: Callable, calls: Sequence[tuple], compiled: set) -> list:
        """``[program(*args) for args in calls]`` (``program``: a jitted function), each call's program compiled
        ahead where it is new.

        A program compiles on its first call, and a run's first batches need
        one per batch shape. So the first call of each program not in
        ``compiled`` (keyed by its static arguments and argument shapes) is
        traced and lowered here, in this thread, so that its configuration,
        such as the matmul precision, applies; then they compile side by side
        on a thread pool (XLA compiles one program per thread, without the
        GIL), and the calls find them compiled. Only in a single process.
        ``compiled`` gets their keys.

        On a CPU backend the compiles first wait for the calls' inputs: XLA's
        CPU compiler generates code on the cores that run the programs
        computing them, and compiling beside those programs slows both.
        """
        import jax

        new: dict[Hashable, tuple] = {}
        inputs = []
        for args in calls:
            leaves, tree = jax.tree.flatten(args)
            inputs += [leaf for leaf in leaves if isinstance(leaf, jax.Array)]
            key = (program, tree, tuple((leaf.shape, leaf.dtype) if hasattr(leaf, "shape") else leaf for leaf in leaves))
            if key not in compiled:
                new.setdefault(key, args)
        compiled.update(new)
        if new and jax.default_backend() == "cpu":
            jax.block_until_ready(inputs)
        if len(new) > 1 and jax.process_count() == 1:
            lowered = [program.lower(*args) for args in new.values()]
            list(_compile_pool().map(lambda ahead: ahead.compile(), lowered))
        return [program(*args) for args in calls]

    @staticmethod
    def fetch(tree):
        import jax

        def get(leaf):
            if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
                return np.asarray(leaf)
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

        return jax.tree.map(get, tree)


def default_mesh(model=None) -> Optional[Mesh]:
    """All devices on the ``examples`` axis when there are several (else None), with a ``model`` axis added
    when ``model``'s parameters would take more than half of a device's memory (when the backend reports it).

    The ``model`` axis is the smallest power of two (dividing the devices of
    one host) that brings a device's share under half its memory, so that
    tensor parallelism stays within a host.
    """
    import jax
    from jax.sharding import Mesh

    devices = jax.devices()
    if len(devices) == 1:
        return None
    limit = device_memory(jax.local_devices(), "limit")
    shards = 1
    if model is not None and limit is not None:
        param_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(model.params))
        shards = model_shards_for(param_bytes, limit, jax.local_device_count())
    if shards == 1:
        return Mesh(np.array(devices), (EXAMPLE_AXIS,))
    return Mesh(np.array(devices).reshape(-1, shards), (EXAMPLE_AXIS, MODEL_AXIS))


def model_shards_for(param_bytes: int, device_bytes: int, local_devices: int) -> int:
    """The smallest power of two dividing ``local_devices`` that puts at most half of ``device_bytes`` of
    parameters on each device (or the largest such power when none does)."""
    shards = 1
    while param_bytes / shards > device_bytes / 2 and local_devices % (2 * shards) == 0:
        shards *= 2
    return shards


def block_param_spec(name: str, shape: tuple, shards: int):
    """How block leaf ``name`` [n_layers, ...] is split over ``shards`` devices of the ``model`` axis.

    Tensor-parallel: q/k/v, ``fc_in`` and ``fc_up`` by their output (heads,
    MLP hidden units), ``out_proj`` and ``fc_out`` by their input, so each
    device holds whole heads and a slice of the hidden units; another leaf by
    its last axis (biases of the hidden units). An axis that ``shards`` does
    not divide is not split (the other matrix axis is tried first).
    """
    from jax.sharding import PartitionSpec

    from laser_jax.models.base import TAUS

    if shards == 1 or len(shape) < 2:
        return PartitionSpec()
    if name in TAUS:
        axes = (1, 2) if name in ("out_proj", "fc_out") else (2, 1)
    else:
        axes = (len(shape) - 1,)
    for axis in axes:
        if shape[axis] % shards == 0 and shape[axis] >= shards:
            return PartitionSpec(*([None] * axis), MODEL_AXIS)
    return PartitionSpec()


def factor_specs(matrix_spec, per_variant: bool):
    """The specs of a matrix's SVD factors (u [in, r], s [r], vt [r, out]) from the matrix's own
    [n_layers, in, out] spec, with a leading variant axis when ``per_variant``."""
    from jax.sharding import PartitionSpec

    from laser_jax.models.base import LowRank

    parts = tuple(matrix_spec) + (None,) * (3 - len(tuple(matrix_spec)))
    lead = (VARIANT_AXIS,) if per_variant else ()
    return LowRank(u=PartitionSpec(*lead, parts[1], None), s=PartitionSpec(*lead, None),
                   vt=PartitionSpec(*lead, None, parts[2]))


def activation_budget(free_bytes: Optional[int], splits: int) -> int:
    """Bytes for one call's activations: half a device's ``free_bytes`` times the ``splits`` devices that share
    them (variants × examples shards); :data:`DEFAULT_ACTIVATION_BUDGET` when the free memory is unknown."""
    return DEFAULT_ACTIVATION_BUDGET if free_bytes is None else max(1, free_bytes // 2) * splits


def device_memory(devices, field: str) -> Optional[int]:
    """The smallest ``"limit"`` or ``"free"`` (limit minus in use) memory of this process's ``devices`` in bytes,
    from ``device.memory_stats()``; None when the backend reports none (CPU)."""
    import jax

    stats = [device.memory_stats() for device in devices if device.process_index == jax.process_index()]
    if not stats or any(s is None or "bytes_limit" not in s for s in stats):
        return None
    return min(s["bytes_limit"] - (s.get("bytes_in_use", 0) if field == "free" else 0) for s in stats)


__all__ = ["PRECISIONS", "DEFAULT_COORDINATOR_TIMEOUT", "DeviceSetup", "setup_devices", "initialize_distributed",
           "cluster_detected", "detected_cluster", "CLUSTER_ENVIRONMENTS", "broadcast_json", "parse_mesh", "build_mesh", "bytes_per_device",
           "VARIANT_AXIS", "EXAMPLE_AXIS", "MODEL_AXIS", "MESH_AXES", "DEFAULT_ACTIVATION_BUDGET", "Placement",
           "default_mesh", "model_shards_for", "block_param_spec", "factor_specs", "activation_budget", "device_memory"]
