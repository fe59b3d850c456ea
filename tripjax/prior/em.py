"""Data-driven initialization (paper, section 3.1): a 1-D GMM per continuous variable by EM."""

from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from tripjax.prior import checks
from tripjax.prior.params import TRIPParams
from tripjax.prior.params import component_mask

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("num_iters", "num_components"))
def _fit_gmm_1d(z: Array, key: Optional[Array], num_iters: int,
                num_components: tuple, min_variance: float):
  """EM for independent 1-D GMMs, one per column of z (N, n); NaN entries are ignored.

  Returns means, scales, mixture weights, each (n, K); columns with K_j < K are padded.
  """
  n_rows, n = z.shape
  kmax = max(num_components)
  ks = jnp.asarray(num_components, z.dtype)[:, None]                # (n, 1)
  mask = jnp.arange(kmax)[None, :] < ks                             # (n, K)
  present = ~jnp.isnan(z)
  z_safe = jnp.where(present, z, 0.0)
  count = jnp.maximum(jnp.sum(present, axis=0), 1).astype(z.dtype)  # (n,)
  column_mean = jnp.sum(z_safe, axis=0) / count
  column_variance = jnp.sum(jnp.where(present, jnp.square(z - column_mean), 0.0),
                            axis=0) / count

  # Initial means at evenly spaced quantiles (jittered with `key`), scales std / K.
  offset = 0.5 if key is None else jax.random.uniform(key, (n, kmax), z.dtype, 0.3, 0.7)
  levels = (jnp.arange(kmax)[None, :] + offset) / ks                # (n, K)
  ordered = jnp.sort(z, axis=0)                                     # NaN last
  index = jnp.floor(levels * (count[:, None] - 1)).astype(jnp.int32)
  index = jnp.clip(index, 0, n_rows - 1)
  means = jnp.take_along_axis(ordered, index.T, axis=0).T           # (n, K)
  variances = jnp.broadcast_to((column_variance / jnp.square(ks[:, 0]))[:, None],
                               (n, kmax))
  variances = jnp.maximum(variances, min_variance)
  mix = jnp.where(mask, 1.0 / ks, 0.0)

  def em_step(_, state):
    means, variances, mix = state
    diff = z_safe[:, :, None] - means                               # (N, n, K)
    log_r = (jnp.log(jnp.where(mask, mix, 1.0)) - 0.5 * jnp.log(variances)
             - 0.5 * jnp.square(diff) / variances)
    log_r = jnp.where(mask, log_r, -jnp.inf)
    resp = jax.nn.softmax(log_r, axis=-1) * present[:, :, None]
    weight = jnp.sum(resp, axis=0)                                  # (n, K)
    alive = weight > 1e-8 * count[:, None]
    safe = jnp.where(alive, weight, 1.0)
    new_means = jnp.sum(resp * z_safe[:, :, None], axis=0) / safe
    new_variances = jnp.sum(resp * jnp.square(z_safe[:, :, None] - new_means),
                            axis=0) / safe
    new_variances = jnp.maximum(new_variances, min_variance)
    means = jnp.where(alive, new_means, means)
    variances = jnp.where(alive, new_variances, variances)
    mix = jnp.where(mask, weight / count[:, None], 0.0)
    return means, variances, mix

  means, variances, mix = jax.lax.fori_loop(0, num_iters, em_step,
                                            (means, variances, mix))
  return means, jnp.sqrt(variances), mix


def refit_components(params: TRIPParams, z: Array, num_iters: int = 100,
                     key: Optional[Array] = None,
                     min_variance: float = 1e-6) -> TRIPParams:
  """Data-driven (re-)initialization of the means and scales (paper, section 3.1).

  Fits a K_j-component 1-D Gaussian mixture by EM to every continuous variable's column
  of z and replaces that variable's means and scales; cores and discrete variables are
  kept. Components are ordered by mean.

  Args:
    params: TRIPParams over n variables.
    z: (N, n) float data (e.g. encoder means); NaN entries are ignored.
    num_iters: EM iterations.
    key: optional PRNG key that jitters the quantile initialization.
    min_variance: variance floor of every component (as sklearn's reg_covar).

  Returns:
    New TRIPParams.
  """
  z = checks.float_array(z, params.num_variables, "z")
  if z.ndim != 2:
    raise ValueError(f"z must have shape (num_samples, {params.num_variables}), "
                     f"got {z.shape}.")
  num_iters = checks.positive_int(num_iters, "num_iters")
  dtype = params.means.dtype
  means, scales, _ = _fit_gmm_1d(z.astype(dtype), key, num_iters,
                                 params.num_components, min_variance)
  real = component_mask(params) > 0
  order = jnp.argsort(jnp.where(real, means, jnp.inf), axis=-1)
  means = jnp.take_along_axis(means, order, axis=-1)
  scales = jnp.take_along_axis(scales, order, axis=-1)
  keep = np.asarray(params.discrete)[:, None] | ~real
  return dataclasses.replace(
      params,
      means=jnp.where(keep, params.means, means).astype(dtype),
      log_scales=jnp.where(keep, params.log_scales, jnp.log(scales)).astype(dtype))
