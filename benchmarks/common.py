"""What the step benchmarks share: the CPU device count, timing, the machine's load."""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Sequence

import jax

from tripjax import xla_cpu
from tripjax.training import sharding


def add_devices_flag(parser, default: int | None = None) -> None:
  """`--devices N`: XLA:CPU devices (default None: one per core, as the train CLIs)."""
  default_text = ("one per usable core that divides the batch, as `python -m "
                  "train.*`" if default is None else str(default))
  parser.add_argument(
      "--devices", type=int, default=default,
      help=f"XLA:CPU device count (default: {default_text}); ignored on a GPU/TPU")


def set_cpu_devices(count: int | None, batch_sizes: Sequence[int] = ()) -> None:
  """Before JAX creates its devices: `count` XLA:CPU devices, or one per core, and
  Eigen's convolutions (`xla_cpu.prefer_eigen_convolutions`), as the train CLIs.

  Raises:
    ValueError: `count` is below 1 or JAX has created its devices already.
  """
  xla_cpu.prefer_eigen_convolutions()
  if count is None:
    sharding.use_all_cpu_cores(batch_sizes)
    return
  if count < 1:
    raise ValueError(f"--devices must be at least 1, got {count}.")
  try:
    jax.config.update("jax_num_cpu_devices", count)
  except RuntimeError as error:
    raise ValueError("--devices: JAX has created its devices already.") from error


def cpu_threads() -> int:
  """Threads for the PyTorch references: every core this process may use.

  Not the XLA:CPU device count: one XLA device runs its convolutions on a pool of
  threads over all cores (a 1-device VAE step at batch 128 used 1.75 cores' CPU time
  per wall second on the 2-core machine), so a 1-thread PyTorch would be an unfair
  reference.
  """
  return sharding.usable_cores()


def load_average() -> str:
  """The 1-, 5- and 15-minute load averages and the core count, for the tables."""
  one, five, fifteen = os.getloadavg()
  return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def timed(fn: Callable[[], object]) -> float:
  """Wall seconds of `fn()`, its result blocked on."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - start


def median_ms(seconds: Sequence[float]) -> float:
  return 1e3 * statistics.median(seconds)


def interleaved(steps: dict[str, Callable[[], float]], repeats: int
                ) -> dict[str, list[float]]:
  """Each step's times (seconds, as it returns them) over `repeats` rounds; within a
  round the steps take turns, so load on the machine hits them alike."""
  times = {name: [] for name in steps}
  for _ in range(repeats):
    for name, step in steps.items():
      times[name].append(step())
  return times
