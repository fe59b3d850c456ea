"""What a trained run generates, as FID and latent-space pictures consume it.

`tripjax.training.trainers.load_checkpoint_sampler(workdir)` gives the
`CheckpointSampler` of any run, `load_latent_model(workdir)` the `LatentModel` of an
unconditional one (VAE, GAN); each task module makes its own from a checkpoint.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from tripjax.training import loop

# key, num_samples -> images (num_samples, H, W, C) in [0, 1].
SampleFn = Callable[[jax.Array, int], Any]


class CheckpointSampler(NamedTuple):
  """What a trained run generates, and what it is compared with.

  Attributes:
    sample_fn: (key, n) -> images (n, H, W, C) float32 in [0, 1].
    reference_images: (N, H, W, C) in [0, 1], the real images of the run's test split.
    position: the `loop.Position` of the restored checkpoint.
  """
  sample_fn: SampleFn
  reference_images: np.ndarray
  position: loop.Position


class LatentModel(NamedTuple):
  """A trained run's prior and the map from its latents to images.

  Attributes:
    prior: the run's prior (a `tripjax.priors.LatentPrior`).
    prior_params: its parameters at the checkpoint (host arrays).
    decode_fn: z (n, latent_dim) -> images (n, H, W, C) float32 in [0, 1] (the VAE's
      decoder means, the GAN's generator); jitted.
    image_shape: (H, W, C).
    position: the `loop.Position` of the restored checkpoint.
  """
  prior: Any
  prior_params: Any
  decode_fn: Callable[[jax.Array], Any]
  image_shape: tuple
  position: loop.Position
