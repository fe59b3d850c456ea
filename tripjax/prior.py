"""Tensor Ring Induced Prior (TRIP): exact densities, marginals, posteriors, sampling.

A TRIP over n variables puts a tensor ring on their component indices s (paper, eq. 1, 3):

  p(s) = Tr(Q_1[s_1] ··· Q_n[s_n]) / Z,   Z = Tr(∏_j Σ_k Q_j[k]),
  p(x | s) = ∏_j p(x_j | s_j),

where each core Q_j has shape (K_j, m, m) and is nonnegative. A continuous variable has a
1-D Gaussian per component, N(x_j; mu_jk, sigma_jk); a discrete variable takes the value
of its component (x_j = s_j). Summing over s gives, for any set of observed variables,

  p(x_obs) = Tr(∏_j A_j) / Z,   A_j = Σ_k w_jk Q_j[k],

with w_jk = p(x_j | s_j = k) for an observed variable and w_jk = 1 for a missing one
(Algorithm 1). Everything below is this one product of m×m matrices, computed in log
space: the weights are max-subtracted per variable and the running product is rescaled
every step, its log-scale carried aside. Rescalings do not change log p, so they are kept
out of the gradient, which a custom VJP computes from prefix and suffix products.

Variables are padded to the largest K with zero cores, so every array is rectangular.
A value that has zero probability (a discrete value out of range or not an integer, or a
combination the cores forbid) gives log p = -inf, never NaN: traced values cannot raise.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import distrax
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Variables per block of the scan: the weighted cores of a block are built by one
# batched GEMM, and the backward pass stores the running product once per block.
_BLOCK = 16
# The running products are rescaled every this many steps. Weights are max-subtracted
# (<= 1) and each Σ_k Q_j[k] has largest row sum 1, so a step never grows the largest
# row sum of the product; four steps of shrinking stay far inside float32's range.
_RESCALE_EVERY = 4


class Continuous(NamedTuple):
  """A real variable: a mixture of `num_components` 1-D Gaussians, one per component."""
  num_components: int


class Discrete(NamedTuple):
  """A categorical variable with values 0..num_categories-1 (component k is value k)."""
  num_categories: int

  @property
  def num_components(self) -> int:
    return self.num_categories


Variable = Union[Continuous, Discrete]


@flax.struct.dataclass
class TRIPParams:
  """Unconstrained TRIP parameters; a pytree whose leaves are the three float arrays.

  Attributes:
    core_roots: (n, K, m, m); cores are `core_roots ** 2` (zero where k is padding).
    means: (n, K) Gaussian means (unused for discrete variables).
    log_scales: (n, K) log standard deviations (unused for discrete variables).
    num_components: static, K_j of every variable.
    discrete: static, whether each variable is discrete.
  """
  core_roots: Array
  means: Array
  log_scales: Array
  num_components: tuple = flax.struct.field(pytree_node=False)
  discrete: tuple = flax.struct.field(pytree_node=False)

  @property
  def num_variables(self) -> int:
    return len(self.num_components)

  @property
  def max_components(self) -> int:
    return self.core_roots.shape[1]

  @property
  def rank(self) -> int:
    return self.core_roots.shape[-1]

  @property
  def variables(self) -> tuple:
    return tuple(Discrete(k) if d else Continuous(k)
                 for k, d in zip(self.num_components, self.discrete))


class Natural(NamedTuple):
  """Constrained parameters: cores (n, K, m, m) >= 0, means (n, K), scales (n, K) > 0."""
  cores: Array
  means: Array
  scales: Array


# ---------------------------------------------------------------------------------------
# Construction and validation.


def _check_variables(variables: Sequence[Variable]) -> tuple[tuple, tuple]:
  if isinstance(variables, (Continuous, Discrete)):
    raise TypeError("variables must be a sequence of trip.Continuous/trip.Discrete, "
                    "got a single variable; wrap it in a list.")
  variables = tuple(variables)
  if not variables:
    raise ValueError("variables is empty: a TRIP needs at least one variable.")
  for j, v in enumerate(variables):
    if not isinstance(v, (Continuous, Discrete)):
      raise TypeError(f"variables[{j}] is {v!r}; expected trip.Continuous or "
                      "trip.Discrete.")
    k = v.num_components
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(f"variables[{j}] has {k!r} components; need an integer >= 1.")
  num_components = tuple(int(v.num_components) for v in variables)
  discrete = tuple(isinstance(v, Discrete) for v in variables)
  return num_components, discrete


def _check_rank(rank) -> int:
  if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
    raise ValueError(f"rank must be an integer >= 1, got {rank!r}.")
  return int(rank)


def _component_mask(params: TRIPParams) -> np.ndarray:
  """(n, K) float mask of real (non-padded) components; a compile-time constant."""
  ks = np.asarray(params.num_components)
  return (np.arange(params.max_components)[None, :] < ks[:, None]).astype(np.float32)


def init(key: Array, variables: Sequence[Variable], rank: int, *,
         mean_range: tuple[float, float] = (-1.0, 1.0), core_noise: float = 0.1,
         dtype=jnp.float32) -> TRIPParams:
  """Random TRIP parameters as the paper's GAN setting.

  Means are uniform in `mean_range`, standard deviations 1/K_j, and the cores are near
  uniform: `(1 + core_noise * eps)^2` with eps ~ N(0, 1).

  Args:
    key: PRNG key.
    variables: sequence of `Continuous(K)` / `Discrete(K)`, one per variable (n).
    rank: the ring's bond dimension m.
    mean_range: interval of the uniform initial means.
    core_noise: relative noise of the cores.
    dtype: float dtype of the parameters.

  Returns:
    TRIPParams with core_roots (n, K, m, m), means and log_scales (n, K).
  """
  num_components, discrete = _check_variables(variables)
  rank = _check_rank(rank)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be a float dtype, got {dtype}.")
  n, kmax = len(num_components), max(num_components)
  mask = (np.arange(kmax)[None, :] < np.asarray(num_components)[:, None])
  key_cores, key_means = jax.random.split(key)
  roots = 1.0 + core_noise * jax.random.normal(key_cores, (n, kmax, rank, rank), dtype)
  roots = roots * jnp.asarray(mask[:, :, None, None], dtype)
  low, high = mean_range
  means = jax.random.uniform(key_means, (n, kmax), dtype, low, high)
  is_discrete = np.asarray(discrete)[:, None]
  means = jnp.where(is_discrete | ~mask, 0.0, means).astype(dtype)
  log_scales = -np.log(np.asarray(num_components, np.float64))[:, None] * np.ones((1, kmax))
  log_scales = jnp.asarray(np.where(is_discrete | ~mask, 0.0, log_scales), dtype)
  return TRIPParams(roots, means, log_scales, num_components, discrete)


def natural(params: TRIPParams) -> Natural:
  """Constrained parameters: cores (n, K, m, m) >= 0 (zero where padded), means, scales."""
  cores = jnp.square(params.core_roots)
  if min(params.num_components) < params.max_components:
    mask = jnp.asarray(_component_mask(params), cores.dtype)
    cores = cores * mask[:, :, None, None]
  return Natural(cores, params.means, jnp.exp(params.log_scales))


def from_natural(variables: Sequence[Variable], cores: Array, means: Array,
                 scales: Array) -> TRIPParams:
  """Inverse of `natural`: params with the given cores (n, K, m, m), means, scales (n, K).

  Entries of padded components are ignored. Cores may contain exact zeros.
  """
  num_components, discrete = _check_variables(variables)
  n, kmax = len(num_components), max(num_components)
  cores, means, scales = jnp.asarray(cores), jnp.asarray(means), jnp.asarray(scales)
  if cores.ndim != 4 or cores.shape[:2] != (n, kmax) or cores.shape[2] != cores.shape[3]:
    raise ValueError(f"cores must have shape ({n}, {kmax}, m, m), got {cores.shape}.")
  for name, value in (("means", means), ("scales", scales)):
    if value.shape != (n, kmax):
      raise ValueError(f"{name} must have shape ({n}, {kmax}), got {value.shape}.")
  mask = (np.arange(kmax)[None, :] < np.asarray(num_components)[:, None])
  roots = jnp.sqrt(jnp.maximum(cores, 0.0)) * mask[:, :, None, None]
  log_scales = jnp.where(mask, jnp.log(jnp.where(mask, scales, 1.0)), 0.0)
  return TRIPParams(roots, jnp.where(mask, means, 0.0), log_scales, num_components,
                    discrete)


# ---------------------------------------------------------------------------------------
# The ring contraction: log Tr(∏_j Σ_k W[j, b, k] Q_j[k]) for a batch b, with its VJP.


def _weighted_cores(weights: Array, cores: Array) -> Array:
  """A[j, b] = Σ_k weights[j, b, k] Q_j[k] as one GEMM per variable: (c, B, m, m)."""
  c, batch, _ = weights.shape
  m = cores.shape[-1]
  flat = jnp.einsum("cbk,ckq->cbq", weights, cores.reshape(c, cores.shape[1], m * m))
  return flat.reshape(c, batch, m, m)


def _rescale(matrix: Array) -> tuple[Array, Array]:
  """Divides each (m, m) matrix of a batch by its largest entry; returns (matrix, log)."""
  scale = jnp.max(matrix, axis=(-2, -1))
  scale = jnp.where(scale > 0, scale, 1.0)
  return matrix / scale[..., None, None], jnp.log(scale)


def _split_blocks(n: int) -> tuple[int, int]:
  """(number of full blocks, block size); the block size is a multiple of _RESCALE_EVERY."""
  if n < _RESCALE_EVERY:
    return 0, 0
  block = min(_BLOCK, n - n % _RESCALE_EVERY)
  return n // block, block


def _prefix_steps(prefix: Array, log_scale: Array, mats: Array, offset: int = 0):
  """prefix <- prefix @ mats[i] for the block, rescaled every _RESCALE_EVERY steps.

  Args:
    prefix: (B, m, m) running product, `log_scale` (B,) its log scale.
    mats: (c, B, m, m) the block's weighted cores.
    offset: steps done before this block (the rescaling phase).

  Returns:
    The final (prefix, log_scale) and the lists of prefixes and log scales that stood
    before each step.
  """
  prefixes, log_scales = [], []
  for i in range(mats.shape[0]):
    prefixes.append(prefix)
    log_scales.append(log_scale)
    prefix = prefix @ mats[i]
    if (offset + i + 1) % _RESCALE_EVERY == 0:
      prefix, log_step = _rescale(prefix)
      log_scale = log_scale + log_step
  return prefix, log_scale, prefixes, log_scales


def _blocks(weights: Array, cores: Array, num_blocks: int, block: int):
  """The first num_blocks * block variables as (num_blocks, block, ...) scan inputs."""
  full = num_blocks * block
  w_blocks = weights[:full].reshape(num_blocks, block, *weights.shape[1:])
  q_blocks = cores[:full].reshape(num_blocks, block, *cores.shape[1:])
  return w_blocks, q_blocks


def _compensated_add(total: Array, error: Array, value: Array) -> tuple[Array, Array]:
  """Neumaier's compensated summation: (total, error) + value; the sum is total + error."""
  new_total = total + value
  lost = jnp.where(jnp.abs(total) >= jnp.abs(value), (total - new_total) + value,
                   (value - new_total) + total)
  return new_total, error + lost


def _log_total_start(carry) -> Array:
  """The log-scale of a forward carry (prefix, total, error)."""
  return carry[1] + carry[2]


def _ring_forward(weights: Array, cores: Array):
  """Returns (log traces (B,), residuals for the backward pass).

  The running product is stored once per block (`_BLOCK` variables); the backward pass
  recomputes the prefixes inside a block, which costs less than storing them all.
  """
  n, batch, _ = weights.shape
  m = cores.shape[-1]
  num_blocks, block = _split_blocks(n)
  full = num_blocks * block
  eye = jnp.broadcast_to(jnp.eye(m, dtype=cores.dtype), (batch, m, m))
  zero = jnp.zeros((batch,), cores.dtype)
  # The log-scale is a compensated sum: over thousands of variables it reaches the
  # hundreds, and plain float32 accumulation would cost digits of log p.
  carry = (eye, zero, zero)
  block_starts = None
  if num_blocks:
    def body(carry, block_inputs):
      prefix, log_total, log_error = carry
      mats = _weighted_cores(*block_inputs)
      prefix_out, log_block, _, _ = _prefix_steps(prefix, zero, mats)
      log_total, log_error = _compensated_add(log_total, log_error, log_block)
      return (prefix_out, log_total, log_error), (prefix, _log_total_start(carry))

    carry, block_starts = jax.lax.scan(body, carry,
                                       _blocks(weights, cores, num_blocks, block))
  prefix, log_total, log_error = carry
  tail_start = (prefix, _log_total_start(carry))
  if full < n:
    mats = _weighted_cores(weights[full:], cores[full:])
    prefix, log_tail, _, _ = _prefix_steps(prefix, zero, mats)
    log_total, log_error = _compensated_add(log_total, log_error, log_tail)
  log_trace = (jnp.log(jnp.trace(prefix, axis1=-2, axis2=-1)) + log_error) + log_total
  return log_trace, (block_starts, tail_start)


def _block_backward(suffix, log_suffix, prefixes, log_prefixes, mats, w_block, q_block,
                    log_trace, g, offset):
  """Gradients of one block's weights and cores, right to left.

  With P the product before variable j and S the product after it,
  d log Tr(P A_j S) / d A_j = (S P)^T / Tr(P A_j S), and Tr(P A_j S) is the whole trace
  for every j. So with rescaled P, S the factor is exp(log_p + log_s - log Tr), a (B,)
  scalar folded into the GEMMs that map d/dA_j to the weights and cores.
  """
  holes, coefs = [None] * len(prefixes), [None] * len(prefixes)
  count = offset
  for i in reversed(range(len(prefixes))):
    holes[i] = suffix @ prefixes[i]                      # (S P), the transposed gradient
    exponent = log_prefixes[i] + log_suffix - log_trace
    coefs[i] = jnp.where(jnp.isfinite(log_trace), g * jnp.exp(exponent), 0.0)
    suffix = mats[i] @ suffix
    count += 1
    if count % _RESCALE_EVERY == 0:
      suffix, log_step = _rescale(suffix)
      log_suffix = log_suffix + log_step
  c, batch, m, _ = mats.shape
  holes = jnp.stack(holes).reshape(c, batch, m * m)
  coefs = jnp.stack(coefs)[..., None]                    # (c, B, 1)
  cores_t = jnp.swapaxes(q_block, -1, -2).reshape(c, q_block.shape[1], m * m)
  grad_w = coefs * jnp.einsum("cbq,ckq->cbk", holes, cores_t)
  grad_q_t = jnp.einsum("cbk,cbq->ckq", w_block * coefs, holes)
  grad_q = jnp.swapaxes(grad_q_t.reshape(q_block.shape), -1, -2)
  return suffix, log_suffix, grad_w, grad_q


@jax.custom_vjp
def _ring_log_trace(weights: Array, cores: Array) -> Array:
  """log Tr(∏_j Σ_k weights[j, b, k] cores[j, k]) for weights (n, B, K), cores (n, K, m, m).

  Returns (B,). Zero traces give -inf.
  """
  return _ring_forward(weights, cores)[0]


def _ring_log_trace_fwd(weights, cores):
  log_trace, residuals = _ring_forward(weights, cores)
  return log_trace, (weights, cores, log_trace, residuals)


def _ring_log_trace_bwd(residuals, g):
  weights, cores, log_trace, (block_starts, (tail_prefix, tail_log)) = residuals
  n, batch, _ = weights.shape
  m = cores.shape[-1]
  num_blocks, block = _split_blocks(n)
  full = num_blocks * block
  g = jnp.where(jnp.isfinite(g), g, 0.0)
  suffix = jnp.broadcast_to(jnp.eye(m, dtype=cores.dtype), (batch, m, m))
  log_suffix = jnp.zeros((batch,), cores.dtype)
  grads_w, grads_q = [], []
  if full < n:
    w_tail, q_tail = weights[full:], cores[full:]
    mats = _weighted_cores(w_tail, q_tail)
    _, _, prefixes, log_prefixes = _prefix_steps(tail_prefix, tail_log, mats)
    suffix, log_suffix, grad_w, grad_q = _block_backward(
        suffix, log_suffix, prefixes, log_prefixes, mats, w_tail, q_tail, log_trace, g, 0)
    grads_w.append(grad_w)
    grads_q.append(grad_q)
  if num_blocks:
    offset = n - full

    def body(carry, block_inputs):
      (prefix, log_prefix), w_block, q_block = block_inputs
      mats = _weighted_cores(w_block, q_block)
      _, _, prefixes, log_prefixes = _prefix_steps(prefix, log_prefix, mats)
      suffix, log_suffix, grad_w, grad_q = _block_backward(
          *carry, prefixes, log_prefixes, mats, w_block, q_block, log_trace, g, offset)
      return (suffix, log_suffix), (grad_w, grad_q)

    w_blocks, q_blocks = _blocks(weights, cores, num_blocks, block)
    _, (grad_w, grad_q) = jax.lax.scan(body, (suffix, log_suffix),
                                       (block_starts, w_blocks, q_blocks), reverse=True)
    grads_w.insert(0, grad_w.reshape(full, *weights.shape[1:]))
    grads_q.insert(0, grad_q.reshape(full, *cores.shape[1:]))
  return jnp.concatenate(grads_w), jnp.concatenate(grads_q)


_ring_log_trace.defvjp(_ring_log_trace_fwd, _ring_log_trace_bwd)


# ---------------------------------------------------------------------------------------
# Per-variable component weights w_jk = p(x_j | s_j = k), max-subtracted.


def _check_x(params: TRIPParams, x, observed, name: str = "x"):
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a float array (discrete values as floats, NaN for "
                    f"missing), got dtype {x.dtype}.")
  n = params.num_variables
  if x.ndim < 1 or x.shape[-1] != n:
    raise ValueError(f"{name} must have shape (..., {n}) for a TRIP over {n} variables, "
                     f"got {x.shape}.")
  return x, present_mask(x, observed, name)


def present_mask(x: Array, observed: Optional[Array] = None, name: str = "x") -> Array:
  """Boolean mask of the entries of x that count as observed: not NaN and `observed`.

  Args:
    x: (..., n) float array, NaN for missing entries.
    observed: optional boolean array of x's shape (or broadcastable to it).
    name: how error messages call x.

  Returns:
    (..., n) boolean mask.
  """
  present = ~jnp.isnan(x)
  if observed is not None:
    observed = jnp.asarray(observed)
    if observed.dtype != jnp.bool_:
      raise TypeError(f"observed must be a boolean array, got dtype {observed.dtype}.")
    if observed.shape != x.shape:
      try:
        observed = jnp.broadcast_to(observed, x.shape)
      except ValueError:
        raise ValueError(f"observed has shape {observed.shape}, which does not match "
                         f"{name} of shape {x.shape}.") from None
    present = present & observed
  return present


def _cores_normalized(params: TRIPParams, dtype) -> Array:
  """Cores (n, K, m, m), each variable's divided by a constant (exact: cancels in p)."""
  cores = natural(params).cores.astype(dtype)
  total = jnp.sum(cores, axis=1)                                    # (n, m, m)
  # The largest row sum of Σ_k Q_j[k]: products of such matrices neither overflow (the
  # weights are <= 1) nor, for near-uniform cores, drift, so the log-scales carried by
  # the ring and by the normalizer stay small and their difference keeps its precision.
  scale = jax.lax.stop_gradient(jnp.max(jnp.sum(total, axis=-1), axis=-1))
  scale = jnp.where(scale > 0, scale, 1.0)
  return cores / scale[:, None, None, None]


def _log_weights(params: TRIPParams, x: Array, present: Array, dtype) -> Array:
  """log p(x_j | s_j = k) for observed j, 0 for missing j, -inf for padded k: (..., n, K)."""
  mask = _component_mask(params) > 0                                # (n, K)
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


def _weights(params, x, present, dtype):
  """Max-subtracted weights (..., n, K) in [0, 1] and their offsets (..., n)."""
  log_w = _log_weights(params, x, present, dtype)
  offset = jnp.max(log_w, axis=-1)
  finite = jnp.isfinite(offset)
  offset_safe = jax.lax.stop_gradient(jnp.where(finite, offset, 0.0))
  weights = jnp.exp(log_w - offset_safe[..., None])
  return weights, jnp.where(finite, offset_safe, -jnp.inf)


def _dtype(params: TRIPParams, x: Array):
  return jnp.result_type(params.core_roots.dtype, x.dtype)


def _log_normalizer(cores: Array) -> Array:
  """log Z = log Tr(∏_j Σ_k Q_j[k]) for normalized cores (n, K, m, m); a scalar.

  Shared by the whole batch, so a pairwise tree (log2 n batched matmuls) rather than n
  sequential tiny ones. Each level is rescaled; the scales are constants for the
  gradient, which is exact because log Z does not depend on them.
  """
  mats = jnp.sum(cores, axis=1)                                      # (n, m, m)
  log_scales = jnp.zeros(mats.shape[:1], cores.dtype)  # summed pairwise, as the mats
  while mats.shape[0] > 1:
    if mats.shape[0] % 2:
      eye = jnp.eye(mats.shape[-1], dtype=mats.dtype)[None]
      mats = jnp.concatenate([mats, eye])
      log_scales = jnp.concatenate([log_scales, jnp.zeros((1,), log_scales.dtype)])
    mats = mats[0::2] @ mats[1::2]
    scale = jax.lax.stop_gradient(jnp.max(mats, axis=(-2, -1)))
    scale = jnp.where(scale > 0, scale, 1.0)
    mats = mats / scale[:, None, None]
    log_scales = log_scales[0::2] + log_scales[1::2] + jnp.log(scale)
  return jnp.log(jnp.trace(mats[0])) + log_scales[0]


def _flat_batch(weights: Array) -> tuple[Array, tuple]:
  """(..., n, K) -> (n, B, K) for the ring, plus the batch shape."""
  batch_shape = weights.shape[:-2]
  n, k = weights.shape[-2:]
  flat = weights.reshape(-1, n, k)
  return jnp.transpose(flat, (1, 0, 2)), batch_shape


# ---------------------------------------------------------------------------------------
# Public densities.


def log_prob(params: TRIPParams, x: Array, observed: Optional[Array] = None) -> Array:
  """Exact log density of the observed entries of x, the rest marginalized (Algorithm 1).

  Args:
    params: TRIPParams over n variables.
    x: (..., n) float array; discrete values as floats. NaN entries are missing.
    observed: optional boolean (..., n) (or broadcastable); False marks missing entries.

  Returns:
    (...) log p(x_observed). All-missing rows give 0; zero-probability values give -inf
    (a discrete value out of range or not an integer is such a value).
  """
  x, present = _check_x(params, x, observed)
  dtype = _dtype(params, x)
  cores = _cores_normalized(params, dtype)
  weights, offsets = _weights(params, x, present, dtype)
  flat, batch_shape = _flat_batch(weights)
  log_trace = _ring_log_trace(flat, cores).reshape(batch_shape)
  log_z = _log_normalizer(cores)
  result = log_trace + jnp.sum(offsets, axis=-1) - log_z
  return jnp.where(jnp.any(present, axis=-1), result, 0.0)


def posterior_weights(params: TRIPParams, x: Array,
                      observed: Optional[Array] = None) -> Array:
  """p(s_j = k | observed part of x) for every variable j and component k (eq. 5).

  One forward-backward pass over the ring: p(s_j = k | x_obs) ∝ w_jk Tr(P_j Q_j[k] S_j)
  with P_j, S_j the products before and after j, which is w_jk ∂ log Tr / ∂ w_jk.

  Args:
    params: TRIPParams over n variables.
    x: (..., n) float array, NaN (or `observed == False`) for missing entries.
    observed: optional boolean mask like x.

  Returns:
    (..., n, K) posterior probabilities, zero for padded components. Rows whose
    observed part has zero probability are all zero.
  """
  x, present = _check_x(params, x, observed)
  dtype = _dtype(params, x)
  cores = _cores_normalized(params, dtype)
  weights, _ = _weights(params, x, present, dtype)
  flat, batch_shape = _flat_batch(weights)
  log_trace, vjp = jax.vjp(lambda w: _ring_log_trace(w, cores), flat)
  (grad_w,) = vjp(jnp.ones_like(log_trace))
  post = jnp.transpose(grad_w * flat, (1, 0, 2))                   # (B, n, K)
  total = jnp.sum(post, axis=-1, keepdims=True)
  post = jnp.where(total > 0, post / jnp.where(total > 0, total, 1.0), 0.0)
  return post.reshape(*batch_shape, *post.shape[-2:])


# ---------------------------------------------------------------------------------------
# Exact sampling.


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
    suffix, _ = _rescale(mat @ suffix)
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
  cores = _cores_normalized(params, dtype)                          # (n, K, m, m)
  batch, n, _ = weights.shape
  m = params.rank
  flat = jnp.transpose(weights, (1, 0, 2))                          # (n, B, K)
  mats = _weighted_cores(flat, cores)                               # (n, B, m, m)
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
  var = jnp.arange(n)[:, None, None]
  comp_probs = cores_last[var, alpha_before, alpha_after]           # (n, R, B, K)
  comp_probs = comp_probs * flat[:, None, :, :]
  components = _categorical(uniforms[n:2 * n], comp_probs)                    # (n, R, B)
  return jnp.moveaxis(components, 0, -1).astype(jnp.int32), valid


def _prepare_sampling(params, shape, given, observed):
  shape = tuple(shape) if not isinstance(shape, int) else (shape,)
  num_draws = int(np.prod(shape, dtype=np.int64))
  dtype = params.core_roots.dtype
  if given is None:
    if observed is not None:
      raise ValueError("observed was passed without given.")
    batch_shape = ()
    given = jnp.full((1, params.num_variables), jnp.nan, dtype)
    present = jnp.zeros(given.shape, bool)
  else:
    given, present = _check_x(params, given, observed, name="given")
    batch_shape = given.shape[:-1]
    given = given.reshape(-1, params.num_variables)
    present = present.reshape(given.shape)
    dtype = _dtype(params, given)
  weights, _ = _weights(params, given, present, dtype)              # (B, n, K)
  return shape, num_draws, batch_shape, given, present, weights, dtype


def sample_components(params: TRIPParams, key: Array, shape: Sequence[int] = (),
                      given: Optional[Array] = None,
                      observed: Optional[Array] = None) -> Array:
  """Exact draws of the component indices s, optionally conditioned on `given` values.

  Returns:
    int32 array (*shape, n) without `given`, (*shape, *given.shape[:-1], n) with it.
  """
  shape, num_draws, batch_shape, _, _, weights, _ = _prepare_sampling(
      params, shape, given, observed)
  components, _ = _sample_indices(params, key, num_draws, weights)
  return components.reshape(*shape, *batch_shape, params.num_variables)


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
  shape, num_draws, batch_shape, given, present, weights, dtype = _prepare_sampling(
      params, shape, given, observed)
  key_components, key_noise = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
  components, valid = _sample_indices(params, key_components, num_draws, weights)
  var = jnp.arange(params.num_variables)
  means = params.means.astype(dtype)[var, components]               # (R, B, n)
  scales = jnp.exp(params.log_scales.astype(dtype))[var, components]
  noise = jax.scipy.special.ndtri(_uniforms(key_noise, components.shape, dtype))
  values = jnp.where(np.asarray(params.discrete), components.astype(dtype),
                     means + scales * noise)
  values = jnp.where(valid[None, :, None], values, jnp.nan)
  values = jnp.where(present[None], given[None].astype(dtype), values)
  return values.reshape(*shape, *batch_shape, params.num_variables)


# ---------------------------------------------------------------------------------------
# Data-driven initialization (section 3.1): a 1-D GMM per continuous variable by EM.


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
  mean = jnp.sum(z_safe, axis=0) / count
  var = jnp.sum(jnp.where(present, jnp.square(z - mean), 0.0), axis=0) / count

  # Initial means at evenly spaced quantiles (jittered with `key`), scales std / K.
  offset = 0.5 if key is None else jax.random.uniform(key, (n, kmax), z.dtype, 0.3, 0.7)
  levels = (jnp.arange(kmax)[None, :] + offset) / ks                # (n, K)
  ordered = jnp.sort(z, axis=0)                                     # NaN last
  index = jnp.floor(levels * (count[:, None] - 1)).astype(jnp.int32)
  index = jnp.clip(index, 0, n_rows - 1)
  means = jnp.take_along_axis(ordered, index.T, axis=0).T           # (n, K)
  variances = jnp.broadcast_to((var / jnp.square(ks[:, 0]))[:, None], (n, kmax))
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
    new_var = jnp.sum(resp * jnp.square(z_safe[:, :, None] - new_means), axis=0) / safe
    new_var = jnp.maximum(new_var, min_variance)
    means = jnp.where(alive, new_means, means)
    variances = jnp.where(alive, new_var, variances)
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
  z = jnp.asarray(z)
  if not jnp.issubdtype(z.dtype, jnp.floating):
    raise TypeError(f"z must be a float array, got dtype {z.dtype}.")
  if z.ndim != 2 or z.shape[1] != params.num_variables:
    raise ValueError(f"z must have shape (num_samples, {params.num_variables}), "
                     f"got {z.shape}.")
  if isinstance(num_iters, bool) or not isinstance(num_iters, (int, np.integer)) \
      or num_iters < 1:
    raise ValueError(f"num_iters must be an integer >= 1, got {num_iters!r}.")
  dtype = params.means.dtype
  means, scales, _ = _fit_gmm_1d(z.astype(dtype), key, int(num_iters),
                                 params.num_components, min_variance)
  order = jnp.argsort(jnp.where(_component_mask(params) > 0, means, jnp.inf), axis=-1)
  means = jnp.take_along_axis(means, order, axis=-1)
  scales = jnp.take_along_axis(scales, order, axis=-1)
  keep = np.asarray(params.discrete)[:, None] | (_component_mask(params) == 0)
  return params.replace(
      means=jnp.where(keep, params.means, means).astype(dtype),
      log_scales=jnp.where(keep, params.log_scales, jnp.log(scales)).astype(dtype))


# ---------------------------------------------------------------------------------------
# distrax adapter.


class Distribution(distrax.Distribution):
  """A TRIP as a `distrax.Distribution` with event shape (n,).

  `log_prob` marginalizes NaN entries; `sample(seed=key, sample_shape=...)` draws exact
  samples.
  """

  def __init__(self, params: TRIPParams):
    super().__init__()
    self._params = params

  @property
  def params(self) -> TRIPParams:
    return self._params

  @property
  def event_shape(self) -> tuple:
    return (self._params.num_variables,)

  @property
  def dtype(self) -> Any:
    return self._params.core_roots.dtype

  def _sample_n(self, key: Array, n: int) -> Array:
    return sample(self._params, key, (n,))

  def log_prob(self, value: Array) -> Array:
    return log_prob(self._params, value)

  def posterior_weights(self, value: Array) -> Array:
    return posterior_weights(self._params, value)
