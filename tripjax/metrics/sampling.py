"""Sample-quality metrics of any sampler: FID and the offline classifier FD.

A sampler is `sample_fn(key, num_samples) -> images (num_samples, H, W, C) in [0, 1]`
(`tripjax.training.samplers.load_checkpoint_sampler` gives one for a trained run), so
trainers, commands and notebooks score generators the same way.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import jax
import numpy as np
import tqdm

from tripjax.metrics import classifier_fd
from tripjax.metrics import frechet
from tripjax.metrics import inception

# key, num_samples -> images (num_samples, H, W, C) in [0, 1].
SampleFn = Callable[[jax.Array, int], Any]
# images (B, H, W, C) in [0, 1] -> features (B, f).
FeatureFn = Callable[[np.ndarray], np.ndarray]


def sample_batches(sample_fn: SampleFn, *, num_samples: int, batch_size: int,
                   seed: int = 0, key: jax.Array | None = None, progress: bool = False,
                   description: str = "samples") -> Iterator[np.ndarray]:
  """Yields `num_samples` samples of `sample_fn` in batches (batch_size, ...) (the last
  one cut to what is left).

  `sample_fn` is always asked for `batch_size` samples (one compiled shape); the
  surplus of the last batch is dropped. Batch i uses key fold_in(key, i), where `key`
  defaults to key(seed) (a trainer passes a key of its own random streams), so every
  metric of the same (sample_fn, seed, batch_size) sees the same samples.
  """
  if num_samples < 2:
    raise ValueError(f"num_samples must be at least 2, got {num_samples}")
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  base_key = jax.random.key(seed) if key is None else key
  num_batches = math.ceil(num_samples / batch_size)
  for index in tqdm.trange(num_batches, desc=description, disable=not progress):
    samples = np.asarray(sample_fn(jax.random.fold_in(base_key, index), batch_size))
    keep = min(batch_size, num_samples - index * batch_size)
    if samples.shape[0] < keep:
      raise ValueError(f"sample_fn returned {samples.shape[0]} samples, asked for "
                       f"{batch_size}")
    yield samples[:keep]


def draw_samples(sample_fn: SampleFn, *, num_samples: int, batch_size: int,
                 seed: int = 0, key: jax.Array | None = None) -> np.ndarray:
  """`num_samples` samples (num_samples, ...) of `sample_fn`, the ones `sample_batches`
  (and so `classifier_fd_from_sampler` with the same seed and batch size) draws."""
  return np.concatenate(list(sample_batches(sample_fn, num_samples=num_samples,
                                            batch_size=batch_size, seed=seed, key=key)))


def sampler_stats(sample_fn: SampleFn, feature_fn: FeatureFn, *, num_samples: int,
                  batch_size: int, seed: int = 0, key: jax.Array | None = None,
                  progress: bool = True,
                  description: str = "samples") -> tuple[np.ndarray, np.ndarray]:
  """Gaussian stats (mean (f,), cov (f, f)) of the features of `num_samples` samples
  (`sample_batches`'s)."""
  # Features of each full batch (one compiled shape), then only the samples kept.
  features = [np.asarray(feature_fn(_padded(images, batch_size)))[:len(images)]
              for images in sample_batches(sample_fn, num_samples=num_samples,
                                           batch_size=batch_size, seed=seed, key=key,
                                           progress=progress, description=description)]
  return frechet.gaussian_stats(np.concatenate(features))


def _padded(images: np.ndarray, size: int) -> np.ndarray:
  """images (n, ...) with n <= size, repeated to (size, ...) by its last image."""
  if len(images) == size:
    return images
  return np.concatenate([images, np.repeat(images[-1:], size - len(images), axis=0)])


def fid_from_sampler(sample_fn: SampleFn, reference_images, inception_params,
                     *, num_samples: int = 10_000, batch_size: int = 100, seed: int = 0,
                     key: jax.Array | None = None,
                     reference_stats: tuple[np.ndarray, np.ndarray] | None = None,
                     progress: bool = True) -> float:
  """FID between `num_samples` samples and reference images.

  Args:
    sample_fn: key, n -> (n, H, W, C) images in [0, 1], C in {1, 3}.
    reference_images: (N, H', W', C) in [0, 1] or uint8, e.g. the test split.
      Ignored if `reference_stats` is given.
    inception_params: variables from `inception.load_inception_variables`.
    num_samples: samples to draw (10,000 or 50,000 for paper-comparable FID).
    batch_size: images per sampler / Inception call.
    seed: sampling seed.
    key: sampling key (overrides `seed`).
    reference_stats: precomputed (mean, cov) of the reference features.
    progress: show tqdm bars.

  Returns:
    FID as a float >= 0.
  """
  def feature_fn(images):
    return inception.inception_features(inception_params, images, batch_size=batch_size)

  if reference_stats is None:
    reference_stats = frechet.gaussian_stats(inception.inception_features(
        inception_params, reference_images, batch_size=batch_size, progress=progress))
  stats = sampler_stats(sample_fn, feature_fn, num_samples=num_samples,
                        batch_size=batch_size, seed=seed, key=key,
                        progress=progress, description="samples (Inception)")
  return frechet.frechet_distance(*stats, *reference_stats)


def classifier_fd_from_sampler(sample_fn: SampleFn, reference_images, classifier_params,
                               *, num_samples: int = 5_000, batch_size: int = 500,
                               seed: int = 0, key: jax.Array | None = None,
                               progress: bool = True) -> float:
  """Classifier FD (digits, 28x28x1) between samples and reference images; see FID."""
  def feature_fn(images):
    return classifier_fd.classifier_features(classifier_params, images, batch_size)

  reference_stats = frechet.gaussian_stats(feature_fn(reference_images))
  stats = sampler_stats(sample_fn, feature_fn, num_samples=num_samples,
                        batch_size=batch_size, seed=seed, key=key,
                        progress=progress, description="samples (classifier)")
  return frechet.frechet_distance(*stats, *reference_stats)
