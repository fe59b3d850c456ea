"""Data parallelism with `jax.sharding`: a 1-D mesh, batches split, state replicated."""
import math
import os
from typing import Sequence

import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
import numpy as np

DATA_AXIS = "data"


CPU_DEVICE_COUNT_FLAG = "xla_force_host_platform_device_count"


def usable_cores() -> int:
  """The CPU cores this process may run on (`os.sched_getaffinity`, else the count)."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def use_all_cpu_cores(batch_sizes: Sequence[int] = (),
                      max_devices: int | None = None) -> int | None:
  """Exposes one XLA:CPU device per usable core, so the data-parallel loop uses them.

  XLA:CPU runs a program on one core per device; with n devices the batch is split n
  ways. n is the number of cores this process may use (`usable_cores`), lowered to
  `max_devices` (when given) and then to the largest count that divides every batch
  size. Does nothing (returns None) when the user chose already (`XLA_FLAGS` with
  --xla_force_host_platform_device_count, or `JAX_NUM_CPU_DEVICES`). Call before JAX
  creates its devices; on an accelerator the CPU devices go unused.

  Returns:
    The CPU device count set, or None.
  """
  if (CPU_DEVICE_COUNT_FLAG in os.environ.get("XLA_FLAGS", "")
      or "JAX_NUM_CPU_DEVICES" in os.environ
      or getattr(jax.config, "jax_num_cpu_devices") != -1):
    return None
  cores = usable_cores()
  if max_devices is not None:
    cores = max(1, min(cores, max_devices))
  divisor = math.gcd(*batch_sizes) if batch_sizes else cores
  count = max(n for n in range(1, cores + 1) if divisor % n == 0)
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError:  # JAX has created its devices already (e.g. in a notebook).
    return None
  return count


def make_data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `DATA_AXIS` over `devices` (default: all `jax.devices()`)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, scalars)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
  """The batch axis is split across the mesh's devices.

  `leading_axes` axes come before the batch axis (e.g. 1 for k stacked batches
  (k, B, ...) fed to one step).
  """
  return NamedSharding(mesh, PartitionSpec(*(None,) * leading_axes, DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
  """Raises a ValueError unless `batch_size` splits evenly over the mesh."""
  num_devices = mesh.devices.size
  if batch_size % num_devices:
    raise ValueError(f"The {what} {batch_size} is not divisible by the number of "
                     f"devices {num_devices}; pick a multiple of {num_devices}.")


def _replicate_leaf(value, sharding: NamedSharding):
  if isinstance(value, jax.Array) and value.sharding == sharding:
    return value  # Already global and replicated (e.g. a jitted step's output).
  if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype,
                                                            jax.dtypes.prng_key):
    data = _replicate_leaf(jax.random.key_data(value), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
  host_value = np.asarray(value)
  return jax.make_array_from_callback(host_value.shape, sharding,
                                      lambda index: host_value[index])


def replicate(tree, mesh: Mesh):
  """Every leaf of `tree` on all devices of `mesh`.

  With several processes, each fills its own devices from its copy of `tree`, which
  must be the same on every process (`jax.device_put` cannot reach other processes'
  devices).
  """
  sharding = replicated(mesh)
  return jax.tree.map(lambda value: _replicate_leaf(value, sharding), tree)


def shard_batch(local_batch, mesh: Mesh, sharding: NamedSharding | None = None):
  """The global batch, split over `mesh` (default: on the leading axis B).

  Args:
    local_batch: a pytree of numpy arrays, this process's rows of the global batch
      (`distributed.process_slice`); with one process, the whole batch.
    mesh: the 1-D data mesh; its device count must divide B.
    sharding: the batch's sharding (default `batch_sharded(mesh)`).

  Returns:
    The same pytree of global jax.Arrays.
  """
  sharding = batch_sharded(mesh) if sharding is None else sharding
  return jax.tree.map(
      lambda rows: jax.make_array_from_process_local_data(sharding, np.asarray(rows)),
      local_batch)
