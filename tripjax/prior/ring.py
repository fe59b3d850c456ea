"""The ring contraction log Tr(∏_j Σ_k w_jk Q_j[k]) for a batch, with its custom VJP.

This one product of m×m matrices is Algorithm 1 of the paper: every density, marginal and
posterior of a TRIP is built on it. It runs in log space: the weights arrive
max-subtracted, the cores normalized (`weights.py`), and the running product is rescaled
on a fixed schedule with its log-scale carried aside. Rescalings do not change log p, so
they are kept out of the gradient, which a custom VJP computes from prefix and suffix
products.

Rescaling schedule (the one place that ties `_RESCALE_EVERY`, `_BLOCK` and the phase):
a running product is rescaled after every `_RESCALE_EVERY` matrices, counted from the
ring's start in the forward pass and from its end in the backward pass. Weights are <= 1
and each Σ_k Q_j[k] has largest row sum 1, so a step never grows the largest row sum of
the product; `_RESCALE_EVERY` steps of shrinking stay far inside float32's range. The
variables go through a `lax.scan` in blocks of `_BLOCK`, and the count restarts at each
block, which is only the same count if a block is a multiple of `_RESCALE_EVERY`
(`_split_blocks` makes it so). The backward pass takes the tail of the n - full variables
that fill no block first, so it enters every block at the phase `_backward_phase(n)`.

The normalizer Z and the sampler's bond draws use a pairwise tree of products instead,
`product_tree`: ceil(log2 n) levels of batched matmuls, each node rescaled.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

# Rescale a running product after this many matrices (see the module docstring).
_RESCALE_EVERY = 4
# Variables per scan block: a multiple of _RESCALE_EVERY. The weighted cores of a block are
# built by one batched GEMM, and the backward pass stores the running product once per
# block.
_BLOCK = 4 * _RESCALE_EVERY


def _rescale_after(step: int) -> bool:
  """Whether the product is rescaled after `step` (0-based, counted from the phase)."""
  return (step + 1) % _RESCALE_EVERY == 0


def _split_blocks(n: int) -> tuple[int, int]:
  """(number of full blocks, block size); the block size is a multiple of _RESCALE_EVERY."""
  if n < _RESCALE_EVERY:
    return 0, 0
  block = min(_BLOCK, n - n % _RESCALE_EVERY)
  return n // block, block


def _backward_phase(n: int) -> int:
  """Steps the backward pass has counted when it enters a block: the tail's length."""
  num_blocks, block = _split_blocks(n)
  return (n - num_blocks * block) % _RESCALE_EVERY


def weighted_cores(weights: Array, cores: Array) -> Array:
  """A[j, b] = Σ_k weights[j, b, k] Q_j[k] as one GEMM per variable: (c, B, m, m).

  Args:
    weights: (c, B, K).
    cores: (c, K, m, m).
  """
  c, batch, _ = weights.shape
  m = cores.shape[-1]
  flat = jnp.einsum("cbk,ckq->cbq", weights, cores.reshape(c, cores.shape[1], m * m))
  return flat.reshape(c, batch, m, m)


def rescale(matrix: Array) -> tuple[Array, Array]:
  """Divides each (m, m) matrix of a batch by its largest entry; returns (matrix, log)."""
  scale = jnp.max(matrix, axis=(-2, -1))
  scale = jnp.where(scale > 0, scale, 1.0)
  return matrix / scale[..., None, None], jnp.log(scale)


class _PrefixSteps(NamedTuple):
  """A block's running product: where it ends and what stood before each step."""
  prefix: Array              # (B, m, m) after the block
  log_scale: Array           # (B,)
  prefixes: list             # c × (B, m, m), before each step
  log_scales: list           # c × (B,)


def _prefix_steps(prefix: Array, log_scale: Array, mats: Array) -> _PrefixSteps:
  """prefix <- prefix @ mats[i] for a block that starts at a multiple of _RESCALE_EVERY.

  Args:
    prefix: (B, m, m) running product, `log_scale` (B,) its log scale.
    mats: (c, B, m, m) the block's weighted cores.
  """
  prefixes, log_scales = [], []
  for i in range(mats.shape[0]):
    prefixes.append(prefix)
    log_scales.append(log_scale)
    prefix = prefix @ mats[i]
    if _rescale_after(i):
      prefix, log_step = rescale(prefix)
      log_scale = log_scale + log_step
  return _PrefixSteps(prefix, log_scale, prefixes, log_scales)


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
      mats = weighted_cores(*block_inputs)
      steps = _prefix_steps(prefix, zero, mats)
      log_total, log_error = _compensated_add(log_total, log_error, steps.log_scale)
      return (steps.prefix, log_total, log_error), (prefix, _log_total_start(carry))

    carry, block_starts = jax.lax.scan(body, carry,
                                       _blocks(weights, cores, num_blocks, block))
  prefix, log_total, log_error = carry
  tail_start = (prefix, _log_total_start(carry))
  if full < n:
    steps = _prefix_steps(prefix, zero, weighted_cores(weights[full:], cores[full:]))
    prefix = steps.prefix
    log_total, log_error = _compensated_add(log_total, log_error, steps.log_scale)
  log_trace = (jnp.log(jnp.trace(prefix, axis1=-2, axis2=-1)) + log_error) + log_total
  return log_trace, (block_starts, tail_start)


def _block_backward(suffix, log_suffix, prefixes, log_prefixes, mats, w_block, q_block,
                    log_trace, g, phase):
  """Gradients of one block's weights and cores, right to left.

  With P the product before variable j and S the product after it,
  d log Tr(P A_j S) / d A_j = (S P)^T / Tr(P A_j S), and Tr(P A_j S) is the whole trace
  for every j. So with rescaled P, S the factor is exp(log_p + log_s - log Tr), a (B,)
  scalar folded into the GEMMs that map d/dA_j to the weights and cores.
  """
  holes, coefs = [], []                                  # right to left
  for step, i in enumerate(reversed(range(len(prefixes)))):
    holes.append(suffix @ prefixes[i])                   # (S P), the transposed gradient
    exponent = log_prefixes[i] + log_suffix - log_trace
    coefs.append(jnp.where(jnp.isfinite(log_trace), g * jnp.exp(exponent), 0.0))
    suffix = mats[i] @ suffix
    if _rescale_after(phase + step):
      suffix, log_step = rescale(suffix)
      log_suffix = log_suffix + log_step
  c, batch, m, _ = mats.shape
  hole = jnp.stack(holes[::-1]).reshape(c, batch, m * m)
  coef = jnp.stack(coefs[::-1])[..., None]               # (c, B, 1)
  cores_t = jnp.swapaxes(q_block, -1, -2).reshape(c, q_block.shape[1], m * m)
  grad_w = coef * jnp.einsum("cbq,ckq->cbk", hole, cores_t)
  grad_q_t = jnp.einsum("cbk,cbq->ckq", w_block * coef, hole)
  grad_q = jnp.swapaxes(grad_q_t.reshape(q_block.shape), -1, -2)
  return suffix, log_suffix, grad_w, grad_q


@jax.custom_vjp
def ring_log_trace(weights: Array, cores: Array) -> Array:
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
    mats = weighted_cores(w_tail, q_tail)
    steps = _prefix_steps(tail_prefix, tail_log, mats)
    suffix, log_suffix, grad_w, grad_q = _block_backward(
        suffix, log_suffix, steps.prefixes, steps.log_scales, mats, w_tail, q_tail,
        log_trace, g, 0)
    grads_w.append(grad_w)
    grads_q.append(grad_q)
  if num_blocks:
    phase = _backward_phase(n)

    def body(carry, block_inputs):
      suffix, log_suffix = carry
      (prefix, log_prefix), w_block, q_block = block_inputs
      mats = weighted_cores(w_block, q_block)
      steps = _prefix_steps(prefix, log_prefix, mats)
      suffix, log_suffix, grad_w, grad_q = _block_backward(
          suffix, log_suffix, steps.prefixes, steps.log_scales, mats, w_block, q_block,
          log_trace, g, phase)
      return (suffix, log_suffix), (grad_w, grad_q)

    w_blocks, q_blocks = _blocks(weights, cores, num_blocks, block)
    _, (grad_w, grad_q) = jax.lax.scan(body, (suffix, log_suffix),
                                       (block_starts, w_blocks, q_blocks), reverse=True)
    grads_w.insert(0, grad_w.reshape(full, *weights.shape[1:]))
    grads_q.insert(0, grad_q.reshape(full, *cores.shape[1:]))
  return jnp.concatenate(grads_w), jnp.concatenate(grads_q)


ring_log_trace.defvjp(_ring_log_trace_fwd, _ring_log_trace_bwd)


class ProductTree(NamedTuple):
  """Pairwise products of a sequence of matrices, each rescaled to a largest entry of 1.

  Attributes:
    levels: levels[0] are the input matrices, levels[l + 1] the products of the pairs of
      levels[l]; every level but the root's is padded with an identity to an even
      count, so levels[l][2i] @ levels[l][2i + 1] ∝ levels[l + 1][i]. levels[l] has
      shape (2 ceil(n / 2^(l+1)), ..., m, m).
    root: (..., m, m) the rescaled product of all the matrices.
    log_scale: (...) log of the root's scale: ∏ = root * exp(log_scale).
  """
  levels: list
  root: Array
  log_scale: Array


def product_tree(mats: Array) -> ProductTree:
  """The ordered product of mats (n, ..., m, m) as a tree of ceil(log2 n) batched matmuls.

  The scales are constants for the gradient, which is exact for anything that does not
  depend on them (log Z, and every ratio of entries the sampler draws from).
  """
  eye = jnp.broadcast_to(jnp.eye(mats.shape[-1], dtype=mats.dtype), (1, *mats.shape[1:]))
  log_scales = jnp.zeros(mats.shape[:-2], mats.dtype)   # of every node, summed as mats
  levels = []
  while mats.shape[0] > 1:
    if mats.shape[0] % 2:
      mats = jnp.concatenate([mats, eye])
      log_scales = jnp.concatenate([log_scales, jnp.zeros_like(log_scales[:1])])
    levels.append(mats)
    mats = mats[0::2] @ mats[1::2]
    scale = jax.lax.stop_gradient(jnp.max(mats, axis=(-2, -1)))
    scale = jnp.where(scale > 0, scale, 1.0)
    mats = mats / scale[..., None, None]
    log_scales = log_scales[0::2] + log_scales[1::2] + jnp.log(scale)
  return ProductTree(levels, mats[0], log_scales[0])


def log_normalizer(cores: Array) -> Array:
  """log Z = log Tr(∏_j Σ_k Q_j[k]) for normalized cores (n, K, m, m); a scalar (eq. 1).

  Shared by the whole batch, so a pairwise tree (log2 n batched matmuls) rather than n
  sequential tiny ones.
  """
  tree = product_tree(jnp.sum(cores, axis=1))                        # (n, m, m) leaves
  return jnp.log(jnp.trace(tree.root)) + tree.log_scale
