"""Data parallelism with `jax.sharding`: a 1-D mesh, batches split, state replicated."""
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh named `DATA_AXIS` over `devices` (default: all `jax.devices()`)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, scalars)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """The leading (batch) axis is split across the mesh's devices."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
  """Raises a ValueError unless `batch_size` splits evenly over the mesh."""
  num_devices = mesh.devices.size
  if batch_size % num_devices:
    raise ValueError(f"The {what} {batch_size} is not divisible by the number of "
                     f"devices {num_devices}; pick a multiple of {num_devices}.")


def replicate(tree, mesh: Mesh):
  """Puts every leaf of `tree` on all devices of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
  """Splits every leaf of `batch` (leading axis B, divisible by devices) over `mesh`."""
  return jax.device_put(batch, batch_sharded(mesh))


def pad_batch(images: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pads a final partial batch with zeros to `batch_size` examples.

  Args:
    images: (n, ...) with n <= batch_size.
    batch_size: size after padding.

  Returns:
    (padded (batch_size, ...), mask (batch_size,) float32: 1 for real examples).
  """
  num_real = images.shape[0]
  if num_real > batch_size:
    raise ValueError(f"batch of {num_real} examples exceeds batch_size {batch_size}.")
  padding = [(0, batch_size - num_real)] + [(0, 0)] * (images.ndim - 1)
  mask = np.zeros((batch_size,), np.float32)
  mask[:num_real] = 1.0
  return np.pad(images, padding), mask
