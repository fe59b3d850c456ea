"""What tripjax asks of JAX that JAX has no public API for, in one place.

Two questions, each answered through JAX's private modules (`jax._src`), checked
against jax 0.10.2 and kept here so that a JAX release that moves them breaks one
tested module, not the trainers:

* `backends_started()`: whether JAX has created its backends, after which `XLA_FLAGS`
  and the CPU device count are read and fixed (`jax.extend.backend` can create or
  clear backends but not say whether they exist). `tripjax.xla_cpu` must not set a
  flag that would no longer be read.
* `cluster_process_count()`: the process count of a cluster job that
  `jax.distributed.initialize()` would detect (SLURM, Open MPI, TPU pods, ...), so
  that a single process, or a cluster job of one process, never starts the
  distributed runtime (`jax.distributed.initialize()` without arguments raises
  outside a cluster, and starts a coordinator for a one-process job).

Both degrade to a safe answer if the private API is gone: backends count as started
(no flag is set), and no cluster is detected.
"""
from __future__ import annotations

from typing import Any


def backends_started() -> bool:
  """Whether JAX has created its backends (and read `XLA_FLAGS`)."""
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return True


def _cluster_types() -> list[Any]:
  try:
    from jax._src import clusters  # pylint: disable=import-outside-toplevel
    return list(clusters.ClusterEnv._cluster_types)  # pylint: disable=protected-access
  except (ImportError, AttributeError):
    return []


def cluster_process_count() -> int | None:
  """The process count of the cluster job JAX would detect, or None outside one.

  Only environments JAX detects on its own count (not the opt-in ones such as
  mpi4py).
  """
  for cluster in _cluster_types():
    try:
      if not cluster.opt_in_only_method and cluster.is_env_present():
        return int(cluster.get_process_count())
    except Exception:  # pylint: disable=broad-exception-caught
      continue  # A detector that cannot run here (e.g. no metadata server).
  return None
