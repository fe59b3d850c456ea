"""Samplers of trained runs, for FID and other sample metrics: one call for any trainer.

`load_checkpoint_sampler(workdir)` reads the run's config.json, finds its trainer by
`config.task` and asks that trainer's `checkpoint_sampler(config, workdir, step)` for
the images the model generates and the real images they are compared with.
`load_latent_model(workdir)` gives the run's prior and its decoder (z -> images), what
latent-space pictures such as mode hopping (`tripjax.training.mode_hopping`) need.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from tripjax.training import workdirs

# Trainer modules by `config.task`; each defines `validate_config`,
# `train_and_evaluate` and `checkpoint_sampler`; the unconditional ones (vae, gan)
# also `latent_model`.
TRAINERS = {
    "vae": "tripjax.training.vae",
    "gan": "tripjax.training.gan",
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


class LatentModel(NamedTuple):
  """A trained run's prior and the map from its latents to images.

  Attributes:
    prior: the `tripjax.priors.Prior` of the run.
    prior_params: its parameters at the checkpoint (host arrays).
    decode_fn: z (n, latent_dim) -> images (n, H, W, C) float32 in [0, 1] (the VAE's
      decoder means, the GAN's generator); jitted.
    image_shape: (H, W, C).
    position: {"step", "epoch", "batches_done"} of the restored checkpoint.
  """
  prior: Any
  prior_params: Any
  decode_fn: Callable[[jax.Array], Any]
  image_shape: tuple
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


def load_latent_model(workdir: str, step: int | None = None, *,
                      config=None) -> LatentModel:
  """The prior and decoder of the newest (or the given) checkpoint of a training run.

  `config` defaults to the run's saved config.json.
  """
  config = workdirs.load_config(workdir) if config is None else config
  task = config.get("task", DEFAULT_TASK)
  module = trainer(task)
  if not hasattr(module, "latent_model"):
    raise ValueError(f"{workdir} is a {task!r} run, which has no unconditional prior "
                     f"and decoder; latent-space pictures need a "
                     f"{' or '.join(t for t in TRAINERS if hasattr(trainer(t), 'latent_model'))} run.")
  return module.latent_model(config, workdir, step)
