"""The ring's inputs: normalized cores and per-variable component weights w_jk.

w_jk = p(x_j | s_j = k) for an observed variable and 1 for a missing one (Algorithm 1),
kept max-subtracted per variable so that they lie in [0, 1]; the subtracted log offsets
are added back to log p by the caller.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tripjax.prior.params import TRIPParams
from tripjax.prior.params import component_mask
from tripjax.prior.params import natural

Array = jax.Array


class ComponentWeights(NamedTuple):
  """Max-subtracted weights and what was subtracted.

  Attributes:
    weights: (..., n, K) in [0, 1]; zero for padded components.
    log_offsets: (..., n) the per-variable log maxima (-inf where every weight is 0).
  """
  weights: Array
  log_offsets: Array


def result_dtype(params: TRIPParams, x: Array):
  """The float dtype a computation over params and x runs in."""
  return jnp.result_type(params.core_roots.dtype, x.dtype)


def cores_normalized(params: TRIPParams, dtype) -> Array:
  """Cores (n, K, m, m), each variable's divided by a constant (exact: cancels in p)."""
  cores = natural(params).cores.astype(dtype)
  total = jnp.sum(cores, axis=1)                                    # (n, m, m)
  # The largest row sum of Σ_k Q_j[k]: products of such matrices neither overflow (the
  # weights are <= 1) nor, for near-uniform cores, drift, so the log-scales carried by
  # the ring and by the normalizer stay small and their difference keeps its precision.
  scale = jax.lax.stop_gradient(jnp.max(jnp.sum(total, axis=-1), axis=-1))
  scale = jnp.where(scale > 0, scale, 1.0)
  return cores / scale[:, None, None, None]


def log_weights(params: TRIPParams, x: Array, present: Array, dtype) -> Array:
  """log p(x_j | s_j = k) for observed j, 0 for missing j, -inf for padded k: (..., n, K)."""
  mask = component_mask(params) > 0                                 # (n, K)
  is_discrete = np.asarray(params.discrete)[:, None]                # (n, 1)
  means = params.means.astype(dtype)
  log_scales = params.log_scales.astype(dtype)
  x_safe = jnp.where(present, x, 0.0).astype(dtype)[..., None]      # (..., n, 1)
  # Discrete columns never reach the Gaussian (an infinite one would poison gradients).
  x_gauss = jnp.where(is_discrete, 0.0, x_safe)
  z = (x_gauss - means) * jnp.exp(-log_scales)
  log_gauss = -0.5 * jnp.square(z) - log_scales - 0.5 * math.log(2 * math.pi)
  categories = jnp.arange(params.max_components, dtype=dtype)
  log_match = jnp.where(x_safe == categories, 0.0, -jnp.inf).astype(dtype)
  log_w = jnp.where(is_discrete, log_match, log_gauss)
  log_w = jnp.where(present[..., None], log_w, 0.0)
  return jnp.where(mask, log_w, -jnp.inf)


def component_weights(params: TRIPParams, x: Array, present: Array,
                      dtype) -> ComponentWeights:
  """Max-subtracted weights (..., n, K) in [0, 1] and their log offsets (..., n)."""
  log_w = log_weights(params, x, present, dtype)
  offset = jnp.max(log_w, axis=-1)
  finite = jnp.isfinite(offset)
  offset_safe = jax.lax.stop_gradient(jnp.where(finite, offset, 0.0))
  weights = jnp.exp(log_w - offset_safe[..., None])
  return ComponentWeights(weights, jnp.where(finite, offset_safe, -jnp.inf))


def flat_batch(weights: Array) -> tuple[Array, tuple]:
  """(..., n, K) -> (n, B, K) for the ring, plus the batch shape."""
  batch_shape = weights.shape[:-2]
  n, k = weights.shape[-2:]
  flat = weights.reshape(-1, n, k)
  return jnp.transpose(flat, (1, 0, 2)), batch_shape
