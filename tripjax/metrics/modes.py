"""Mode coverage of samples from a mixture of isotropic Gaussians (the GAN mode tests).

The standard synthetic tests of mode collapse (Unrolled GAN, VEEGAN, PacGAN's Table 1)
score generator samples x_1..x_n against the K true centres c_1..c_K of a mixture whose
components all have standard deviation `sd` per coordinate:

* every sample is assigned to its nearest centre (Euclidean distance; ties go to the
  lower index, as `argmin`);
* a sample is *high quality* when that distance is at most `HIGH_QUALITY_SDS` = 3 sds:
  ||x_i - c_nearest(i)|| <= 3 * sd;
* `high_quality_share` = (high-quality samples) / n;
* a mode k is *covered* when at least one high-quality sample has c_k as its nearest
  centre; `modes_covered` counts them (0..K);
* `reverse_kl` = KL(q || u) = sum_k q_k log(K q_k), where q_k is the share of the
  high-quality samples whose nearest centre is c_k and u the uniform distribution over
  the K modes (the true mixture's weights). Empty modes (q_k = 0) contribute 0
  (0 log 0 = 0), so the value is finite, between 0 (every mode equally often) and
  log K (all high-quality samples at one mode). With no high-quality sample at all q is
  undefined and `reverse_kl` is +inf (worse than any collapse onto a single mode).

The rule "nearest centre, then within 3 sd" equals "within 3 sd of some centre" when
the centres are more than 6 sd apart (true for both standard sets: ring 8 has centres
2 * 2 sin(pi / 8) = 1.53 apart with sd 0.02, the grid 2 apart with sd 0.05).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

HIGH_QUALITY_SDS = 3.0


class ModeMetrics(NamedTuple):
  """Mode-coverage scores of a set of samples (module docstring).

  Attributes:
    modes_covered: modes with at least one high-quality sample nearest to them.
    high_quality_share: share of samples within 3 sd of their nearest centre.
    reverse_kl: KL(q || uniform) of the high-quality samples' modes, in nats
      (+inf without high-quality samples).
    counts: (K,) int64 high-quality samples per mode.
  """
  modes_covered: int
  high_quality_share: float
  reverse_kl: float
  counts: np.ndarray


def nearest_modes(samples: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each sample's nearest centre and the distance to it.

  Args:
    samples: (n, D).
    centres: (K, D).

  Returns:
    (indices (n,) int64 in [0, K), distances (n,) float64).
  """
  samples = np.asarray(samples, np.float64)
  centres = np.asarray(centres, np.float64)
  if samples.ndim != 2 or centres.ndim != 2 or samples.shape[1] != centres.shape[1]:
    raise ValueError(f"samples (n, D) and centres (K, D) must agree in D, got "
                     f"{samples.shape} and {centres.shape}.")
  if len(centres) == 0:
    raise ValueError("centres must hold at least one mode.")
  distances = np.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=-1)
  indices = np.argmin(distances, axis=1) if len(samples) else np.zeros(0, np.int64)
  return indices.astype(np.int64), distances[np.arange(len(samples)), indices]


def reverse_kl_to_uniform(counts: np.ndarray) -> float:
  """KL(q || uniform over K) with q = counts / sum(counts), 0 log 0 = 0; nats.

  Args:
    counts: (K,) non-negative counts (or weights).

  Returns:
    sum_k q_k log(K q_k) in [0, log K]; +inf if every count is 0.
  """
  counts = np.asarray(counts, np.float64)
  if counts.ndim != 1 or len(counts) == 0 or np.any(counts < 0):
    raise ValueError(f"counts must be a non-empty 1-D array of non-negative numbers, "
                     f"got shape {counts.shape}.")
  total = counts.sum()
  if total == 0:
    return math.inf
  q = counts[counts > 0] / total
  return float(max(np.sum(q * np.log(len(counts) * q)), 0.0))


def mode_metrics(samples: np.ndarray, centres: np.ndarray, sd: float) -> ModeMetrics:
  """Modes covered, share of high-quality samples and reverse KL (module docstring).

  Args:
    samples: (n, D) generator samples, n >= 1.
    centres: (K, D) the mixture's centres.
    sd: the components' standard deviation per coordinate (> 0).

  Returns:
    `ModeMetrics`.
  """
  if not sd > 0:
    raise ValueError(f"sd must be positive, got {sd!r}.")
  samples = np.asarray(samples)
  if len(samples) == 0:
    raise ValueError("mode_metrics needs at least one sample.")
  if not np.all(np.isfinite(samples)):
    raise ValueError("samples hold NaN or inf.")
  nearest, distances = nearest_modes(samples, centres)
  high_quality = distances <= HIGH_QUALITY_SDS * sd
  counts = np.bincount(nearest[high_quality], minlength=len(centres)).astype(np.int64)
  return ModeMetrics(modes_covered=int(np.count_nonzero(counts)),
                     high_quality_share=float(np.mean(high_quality)),
                     reverse_kl=reverse_kl_to_uniform(counts), counts=counts)
