"""Multi-process (multi-host) data parallelism with JAX's own runtime.

Every process runs the same program on its local devices; together they form one
global mesh (`sharding.make_data_mesh()` over all `jax.devices()`). The contract:

* `initialize(...)` first, before any other JAX call (flags, or a cluster JAX
  detects such as SLURM or Open MPI, or nothing: a single process);
* every process computes the same global batch indices and reads only
  `process_slice(batch_size)` of them; `sharding.shard_batch` assembles the global
  batch (batch axis split over all devices of all processes);
* host-identical values (the initial state, the rng) become global replicated arrays
  with `sharding.replicate`; results come back with `to_host`;
* every process calls every collective (jitted steps, `sharding.replicate`, `to_host` of
  non-replicated arrays, checkpoint saves and restores, `any_process`) in the same
  order; only process 0 writes metrics and images (`is_main_process`).

Orbax checkpoints need no special handling: every process calls
`CheckpointManager.save` (a collective), process 0 writes the metadata and the
replicated arrays, and every process restores its own shards.
"""
import os
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np

from tripjax import jax_internals
from tripjax.training import sharding

_FLAG_NAMES = ("coordinator_address", "num_processes", "process_id")


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None) -> None:
  """Starts JAX's multi-process runtime, or does nothing for a single process.

  Call before any other JAX computation. With all three arguments, this process is
  `process_id` of `num_processes`, and process 0 serves at `coordinator_address`
  ("host:port", reachable from every process). With none, a cluster environment
  that JAX detects (SLURM, Open MPI, Cloud TPU, ...; or JAX_COORDINATOR_ADDRESS)
  supplies them; without one (or with a one-process cluster job) this is a no-op.
  CPU devices use gloo collectives. Calling it again is a no-op.

  Raises:
    ValueError: only some of the three arguments were given, or they are invalid.
  """
  given = {name: value for name, value in zip(
      _FLAG_NAMES, (coordinator_address, num_processes, process_id))
           if value is not None}
  if given and len(given) < len(_FLAG_NAMES):
    missing = [f"--{name}" for name in _FLAG_NAMES if name not in given]
    raise ValueError(
        f"--coordinator_address, --num_processes and --process_id go together; got "
        f"{', '.join(f'--{name}={value!r}' for name, value in given.items())} but "
        f"not {', '.join(missing)}. Give all three, or none (single process, or "
        f"a cluster that JAX detects, e.g. SLURM).")
  if coordinator_address is not None and num_processes is not None and (
      process_id is not None):
    if ":" not in str(coordinator_address):
      raise ValueError(f"--coordinator_address={coordinator_address!r} must be "
                       "HOST:PORT, e.g. 10.0.0.1:1234 (process 0's host).")
    if not 0 <= int(process_id) < int(num_processes):
      raise ValueError(f"--process_id={process_id} must be in [0, --num_processes="
                       f"{num_processes}).")
    if int(num_processes) == 1:
      return
  elif not os.environ.get("JAX_COORDINATOR_ADDRESS"):
    if jax_internals.cluster_process_count() in (None, 1):
      return
  if jax.distributed.is_initialized():
    return
  if getattr(jax.config, "jax_cpu_collectives_implementation") in (None, "none"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address is not None and num_processes is not None and (
      process_id is not None):
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=int(num_processes),
                               process_id=int(process_id))
  else:
    jax.distributed.initialize()


def is_main_process() -> bool:
  """True on process 0 (the one that writes metrics, images and messages)."""
  return jax.process_index() == 0


def process_slice(global_batch_size: int,
                  mesh: jax.sharding.Mesh | None = None) -> slice:
  """The rows of a global batch that this process reads (and feeds its devices).

  Args:
    global_batch_size: B, divisible by the number of devices in `mesh`.
    mesh: the 1-D data mesh (default: all devices of all processes).

  Returns:
    slice(start, stop) into the global batch; the processes' slices tile [0, B).
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  sharding.check_batch_size(global_batch_size, mesh)
  indices = sharding.batch_sharded(mesh).addressable_devices_indices_map(
      (global_batch_size,)).values()
  starts = sorted({_rows(index, global_batch_size) for index in indices})
  for (_, stop), (start, _) in zip(starts, starts[1:]):
    if stop != start:
      raise ValueError(f"This process's devices hold rows {starts} of the batch, not "
                       "one contiguous block; order the mesh by process.")
  return slice(starts[0][0], starts[-1][1])


def _rows(index: Any, global_batch_size: int) -> tuple[int, int]:
  """(start, stop) of a device's index (a tuple whose first entry is a slice)."""
  start, stop, _ = index[0].indices(global_batch_size)
  return start, stop


def _leaf_to_host(value):
  if not isinstance(value, jax.Array):
    return np.asarray(value)
  if value.is_fully_addressable:
    return np.asarray(jax.device_get(value))
  if value.sharding.is_fully_replicated:
    return np.asarray(value.addressable_data(0))
  return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def to_host(tree: Any) -> Any:
  """numpy copies of the leaves (replicated ones locally; sharded ones gathered
  from all processes, a collective). The leaves that this process holds whole are
  fetched in one `jax.device_get` (their transfers overlap)."""
  leaves, treedef = jax.tree.flatten(tree)
  local = [index for index, leaf in enumerate(leaves)
           if isinstance(leaf, jax.Array) and leaf.is_fully_addressable]
  fetched = dict(zip(local, jax.device_get([leaves[index] for index in local])))
  return jax.tree.unflatten(treedef, [
      np.asarray(fetched[index]) if index in fetched else _leaf_to_host(leaf)
      for index, leaf in enumerate(leaves)])


def gather_from_processes(value) -> np.ndarray:
  """(num_processes, ...) array of a host value from every process, in process
  order (a collective if there are several processes)."""
  value = np.asarray(value)
  if jax.process_count() == 1:
    return value[None]
  return np.asarray(multihost_utils.process_allgather(value))


def all_processes(flag: bool) -> bool:
  """True if `flag` is True on every process (a collective if there are several)."""
  return bool(np.all(gather_from_processes(bool(flag))))


def any_process(flag: bool) -> bool:
  """True if `flag` is True on some process (a collective if there are several)."""
  return bool(np.any(gather_from_processes(bool(flag))))


def sync(name: str) -> None:
  """Waits until every process reaches `sync(name)` (no-op for one process)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
