"""Exact sampling from a TRIP, optionally conditioned on given values."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tripjax.prior import checks
from tripjax.prior.params import TRIPParams
from tripjax.prior.ring import rescale, weighted_cores
from tripjax.prior.weights import component_weights, cores_normalized, result_dtype

Array = jax.Array


def _uniforms(key: Array, shape: tuple, dtype) -> Array:
  """Uniforms in (0, 1), strictly positive so that they also feed inverse CDFs."""
  return jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny)


def _categorical(uniform: Array, probs: Array) -> Array:
  """Inverse-CDF draw from unnormalized probs (..., m) with uniform (...) in [0, 1)."""
  size = probs.shape[-1]
  # A cumulative sum as a product with a triangular matrix: XLA:CPU's cumsum (a
  # reduce-window) is several times slower at these sizes.
  upper = jnp.triu(jnp.ones((size, size), probs.dtype))
  cdf = probs @ upper
  threshold = uniform * cdf[..., -1]
  index = jnp.sum(cdf <= threshold[..., None], axis=-1)
  return jnp.minimum(index, probs.shape[-1] - 1)


def _suffix_products(mats: Array) -> Array:
  """Rescaled suffixes S_j = M_j ··· M_{n-1} for mats (n, B, m, m): (n + 1, B, m, m)."""
  n, batch, m, _ = mats.shape
  eye = jnp.broadcast_to(jnp.eye(m, dtype=mats.dtype), (batch, m, m))

  def body(suffix, mat):
    suffix, _ = rescale(mat @ suffix)
    return suffix, suffix

  _, suffixes = jax.lax.scan(body, eye, mats, reverse=True)
  return jnp.concatenate([suffixes, eye[None]], axis=0)


def _sample_indices(params: TRIPParams, key: Array, num_draws: int, weights: Array):
  """Exact draws of component indices s given per-row weights.

  The ring's trace is a sum over the closing bond index: Tr(∏M) = Σ_a (∏M)_aa. So draw
  a_0 ∝ diag(∏M), then a_j | a_{j-1}, a_0 ∝ M_j[a_{j-1}, a_j] S_{j+1}[a_j, a_0] along the
  ring (S the suffix products, shared by all draws of a row), then every
  s_j | a_{j-1}, a_j ∝ w_jk Q_j[k][a_{j-1}, a_j] in parallel.

  Args:
    params: TRIPParams.
    key: PRNG key.
    num_draws: R, draws per row.
    weights: (B, n, K) component weights w_jk of each row (B = 1 for no conditioning).

  Returns:
    (R, B, n) int32 component indices, and (B,) whether the row has positive probability.
  """
  dtype = weights.dtype
  cores = cores_normalized(params, dtype)                           # (n, K, m, m)
  batch, n, _ = weights.shape
  m = params.rank
  flat = jnp.transpose(weights, (1, 0, 2))                          # (n, B, K)
  mats = weighted_cores(flat, cores)                                # (n, B, m, m)
  suffixes = _suffix_products(mats)                                 # (n+1, B, m, m)
  # One draw of uniforms for everything: each random call site costs seconds of XLA:CPU
  # compilation (threefry), so the bond, closing and component draws share one.
  uniforms = _uniforms(key, (2 * n + 1, num_draws, batch), dtype)

  diag = jnp.diagonal(suffixes[0], axis1=-2, axis2=-1)              # (B, m)
  valid = jnp.sum(diag, axis=-1) > 0
  alpha0 = _categorical(uniforms[2 * n], jnp.broadcast_to(diag, (num_draws, batch, m)))
  bonds = jnp.arange(m)
  # S_{j+1}[:, a_0] for every step at once: (n, R, B, m).
  closing = (alpha0[..., None] == bonds).astype(dtype)
  columns = jnp.einsum("rbk,nbjk->nrbj", closing, suffixes[1:])

  def step(previous, inputs):
    mat, column, u = inputs                          # (B, m, m), (R, B, m), (R, B)
    probs = jnp.einsum("rbi,bij->rbj", previous, mat) * column
    alpha = _categorical(u, probs)
    return (alpha[..., None] == bonds).astype(dtype), alpha

  _, alphas = jax.lax.scan(step, closing, (mats, columns, uniforms[:n]))
  alpha_before = jnp.concatenate([alpha0[None], alphas[:-1]], axis=0)  # (n, R, B)
  alpha_after = alphas                                              # a_n == a_0

  # s_j ∝ w_jk Q_j[k][a_{j-1}, a_j] for all j at once.
  cores_last = jnp.moveaxis(cores, 1, -1)                           # (n, m, m, K)
  variable_index = jnp.arange(n)[:, None, None]
  comp_probs = cores_last[variable_index, alpha_before, alpha_after]  # (n, R, B, K)
  comp_probs = comp_probs * flat[:, None, :, :]
  components = _categorical(uniforms[n:2 * n], comp_probs)          # (n, R, B)
  return jnp.moveaxis(components, 0, -1).astype(jnp.int32), valid


class _Conditioning(NamedTuple):
  """What a sampling call draws and conditions on.

  Attributes:
    shape: the sample shape.
    num_draws: R = prod(shape), draws per row.
    batch_shape: given.shape[:-1], () without `given`.
    given: (B, n) values to condition on (B = 1 and all NaN without `given`).
    present: (B, n) whether each given entry is observed.
    weights: (B, n, K) the component weights w_jk of each row.
  """
  shape: tuple
  num_draws: int
  batch_shape: tuple
  given: Array
  present: Array
  weights: Array


def _conditioning(params: TRIPParams, shape, given, observed) -> _Conditioning:
  shape = tuple(shape) if not isinstance(shape, int) else (shape,)
  num_draws = int(np.prod(shape, dtype=np.int64))
  checks.observed_needs_given(given, observed)
  if given is None:
    batch_shape = ()
    given = jnp.full((1, params.num_variables), jnp.nan, params.core_roots.dtype)
    present = jnp.zeros(given.shape, bool)
  else:
    given, present = checks.values_and_mask(given, observed, params.num_variables,
                                            "given")
    batch_shape = given.shape[:-1]
    given = given.reshape(-1, params.num_variables)
    present = present.reshape(given.shape)
  weights = component_weights(params, given, present, result_dtype(params, given))
  return _Conditioning(shape, num_draws, batch_shape, given, present, weights.weights)


def sample_components(params: TRIPParams, key: Array, shape: Sequence[int] = (),
                      given: Optional[Array] = None,
                      observed: Optional[Array] = None) -> Array:
  """Exact draws of the component indices s, optionally conditioned on `given` values.

  Returns:
    int32 array (*shape, n) without `given`, (*shape, *given.shape[:-1], n) with it.
  """
  request = _conditioning(params, shape, given, observed)
  components, _ = _sample_indices(params, key, request.num_draws, request.weights)
  return components.reshape(*request.shape, *request.batch_shape, params.num_variables)


def sample(params: TRIPParams, key: Array, shape: Sequence[int] = (),
           given: Optional[Array] = None, observed: Optional[Array] = None) -> Array:
  """Exact samples from the TRIP, or from p(missing | given) when `given` is passed.

  Args:
    params: TRIPParams over n variables.
    key: PRNG key.
    shape: sample shape.
    given: optional (..., n) float values to condition on; NaN (or `observed == False`)
      marks the entries to sample.
    observed: optional boolean mask like `given`.

  Returns:
    (*shape, n) without `given`; (*shape, *given.shape[:-1], n) with it, where given
    entries are returned unchanged. Rows whose given part has zero probability are NaN
    in their sampled entries.
  """
  request = _conditioning(params, shape, given, observed)
  dtype = request.weights.dtype
  key_components, key_noise = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
  components, valid = _sample_indices(params, key_components, request.num_draws,
                                      request.weights)
  variable_index = jnp.arange(params.num_variables)
  means = params.means.astype(dtype)[variable_index, components]   # (R, B, n)
  scales = jnp.exp(params.log_scales.astype(dtype))[variable_index, components]
  noise = jax.scipy.special.ndtri(_uniforms(key_noise, components.shape, dtype))
  values = jnp.where(np.asarray(params.discrete), components.astype(dtype),
                     means + scales * noise)
  values = jnp.where(valid[None, :, None], values, jnp.nan)
  values = jnp.where(request.present[None], request.given[None].astype(dtype), values)
  return values.reshape(*request.shape, *request.batch_shape, params.num_variables)
