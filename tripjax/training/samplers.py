"""Samplers of trained runs, for FID and other sample metrics: one call for any trainer.

`load_checkpoint_sampler(workdir)` reads the run's config.json, finds its trainer by
`config.task` and asks that trainer's `checkpoint_sampler(config, workdir, step)` for
the images the model generates and the real images they are compared with.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from tripjax.training import workdirs

# Trainer modules by `config.task`; each defines `validate_config`,
# `train_and_evaluate` and `checkpoint_sampler`.
TRAINERS = {
    "vae": "tripjax.training.vae",
    "cvae": "tripjax.training.cvae",
}
DEFAULT_TASK = "vae"  # config.json of runs from before `config.task` existed

# key, num_samples -> images (num_samples, H, W, C) in [0, 1].
SampleFn = Callable[[jax.Array, int], Any]


class CheckpointSampler(NamedTuple):
  """What a trained run generates, and what it is compared with.

  Attributes:
    sample_fn: (key, n) -> images (n, H, W, C) float32 in [0, 1].
    reference_images: (N, H, W, C) in [0, 1], the real images of the run's test split.
    position: {"step", "epoch", "batches_done"} of the restored checkpoint.
  """
  sample_fn: SampleFn
  reference_images: np.ndarray
  position: dict


def trainer(task: str):
  """The trainer module of `config.task`."""
  if task not in TRAINERS:
    raise ValueError(f"Unknown task {task!r}; valid tasks: {', '.join(TRAINERS)}.")
  return importlib.import_module(TRAINERS[task])


def load_checkpoint_sampler(workdir: str, step: int | None = None) -> CheckpointSampler:
  """The sampler of the newest (or the given) checkpoint of any training run."""
  config = workdirs.load_config(workdir)
  return trainer(config.get("task", DEFAULT_TASK)).checkpoint_sampler(
      config, workdir, step)
