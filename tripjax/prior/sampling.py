"""Exact sampling from a TRIP, optionally conditioned on given values.

The scheme (bond indices by bisection over a product tree, then the components in
parallel) is stated in the package docstring; `_draw_bonds` draws the bonds,
`_sample_indices` the components, and `sample` adds the values.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from tripjax.prior import checks
from tripjax.prior.params import TRIPParams
from tripjax.prior.params import component_mask
from tripjax.prior.params import natural
from tripjax.prior.ring import ProductTree
from tripjax.prior.ring import product_tree
from tripjax.prior.ring import rescale
from tripjax.prior.ring import weighted_cores
from tripjax.prior.weights import component_weights
from tripjax.prior.weights import result_dtype

Array = jax.Array


def _uniforms(key: Array, shape: tuple, dtype) -> Array:
  """Uniforms in (0, 1), strictly positive so that they also feed inverse CDFs."""
  return jax.random.uniform(key, shape, dtype, minval=jnp.finfo(dtype).tiny)


# Categorical draws up to this many categories unroll the running sum of the inverse CDF:
# one fused loop on XLA:CPU, several times faster at these sizes than a cumsum (a
# reduce-window) or a product with a triangular matrix, which larger sizes use.
_UNROLLED_CATEGORIES = 32


def _categorical(uniform: Array, probs: Array) -> Array:
  """Inverse-CDF draw from unnormalized probs (..., c) with uniform (...) in [0, 1).

  A category of probability zero is not drawn (while the total is a normal float).
  """
  size = probs.shape[-1]
  if size > _UNROLLED_CATEGORIES:
    cdf = probs @ jnp.triu(jnp.ones((size, size), probs.dtype))
    index = jnp.sum(cdf <= (uniform * cdf[..., -1])[..., None], axis=-1)
    return jnp.minimum(index, size - 1)
  columns = [probs[..., k] for k in range(size)]
  # The total is summed in the running sum's order, so it equals the last running sum
  # and uniform * total < total: the last category needs no test of its own.
  threshold = uniform * functools.reduce(operator.add, columns)
  running = jnp.zeros_like(threshold)
  index = jnp.zeros(threshold.shape, jnp.int32)
  for column in columns[:-1]:
    running = running + column
    index = index + (running <= threshold)
  return index


def _span_counts(n: int) -> list:
  """Spans of each tree level over n matrices, bottom up: ceil(n / 2), ceil(n / 4), .., 1."""
  counts = []
  while n > 1:
    n = (n + 1) // 2
    counts.append(n)
  return counts


def _num_bond_draws(n: int) -> int:
  """The closing bond index and one midpoint per span of every level."""
  return 1 + sum(_span_counts(n))


def _normalize(probs: Array) -> Array:
  """Divides unnormalized probs (..., m) by their maximum (where it is positive)."""
  top = jnp.max(probs, axis=-1, keepdims=True)
  return probs / jnp.where(top > 0, top, 1.0)


def _split_tables(tree: ProductTree) -> Array:
  """Per span of the tree, the vectors its midpoint draw reads: (spans, B, 2m, m).

  The spans of all levels, bottom up. A span's halves are L = levels[l][2i] and
  R = levels[l][2i + 1]; its rows 0..m-1 are the rows of L, rows m..2m-1 the columns of
  R, each divided by its maximum (a vector's scale cancels in p(a_c | a_a, a_b) ∝
  L[a_a, a_c] R[a_c, a_b]), so that their product stays far from float underflow. One
  table for all levels keeps the compiled program small.
  """
  nodes = jnp.concatenate(tree.levels)                # every level has an even count
  return _normalize(jnp.concatenate([nodes[0::2], jnp.swapaxes(nodes[1::2], -1, -2)],
                                    axis=-2))


def _draw_bonds(tree: ProductTree, num_variables: int, uniforms: Array) -> Array:
  """Exact draws of the ring's bond indices by bisection, in ceil(log2 n) + 1 steps.

  With M_j the weighted cores, p(a_0, ..., a_{n-1}) ∝ ∏_j M_j[a_j, a_{j+1}] (a_n = a_0),
  since Tr(∏M) = Σ_a (∏M)_aa. Draw the closing index a_0 ∝ diag(∏_j M_j); then, from the
  root down, every span of the tree whose end bonds a_a, a_b are drawn splits at its
  midpoint c with p(a_c | a_a, a_b) ∝ L[a_a, a_c] R[a_c, a_b], L and R the products of its
  two halves (the tree's child nodes). All spans of a level are drawn at once.

  Args:
    tree: `product_tree` of the weighted cores (n, B, m, m).
    num_variables: n.
    uniforms: (_num_bond_draws(n), R, B) uniforms.

  Returns:
    (n + 1, R, B) bond indices a_0, ..., a_n (a_n = a_0); a_j stands before M_j.
  """
  m = tree.root.shape[-1]
  diag = jnp.diagonal(tree.root, axis1=-2, axis2=-1)                # (B, m)
  closing = _categorical(uniforms[0], jnp.broadcast_to(diag, (*uniforms.shape[1:], m)))
  bonds = jnp.stack([closing, closing])                             # (2, R, B)
  if num_variables == 1:
    return bonds
  spans = _span_counts(num_variables)                               # bottom up
  nodes = [num_variables] + spans[:-1]                              # real nodes per level
  table = _split_tables(tree).reshape(-1, m)                        # (spans * B * 2m, m)
  batch = tree.root.shape[0]
  first_span = np.cumsum([0] + spans[:-1])
  for level in reversed(range(len(spans))):
    count = spans[level]
    # Row a_a of L and column a_b of R of every span and draw: (c, R, B, 2, m).
    rows = jnp.stack([bonds[:-1], bonds[1:] + m], axis=-1)          # (c, R, B, 2)
    span_index = first_span[level] + np.arange(count)
    first_row = (span_index[:, None] * batch + np.arange(batch)) * (2 * m)   # (c, B)
    vectors = jnp.take(table, first_row[:, None, :, None] + rows, axis=0, mode="clip")
    start = 1 + int(first_span[level])
    middle = _categorical(uniforms[start:start + count],
                          vectors[..., 0, :] * vectors[..., 1, :])  # (c, R, B)
    interleaved = jnp.stack([bonds[:-1], middle], axis=1).reshape(2 * count,
                                                                  *middle.shape[1:])
    # The bonds around the level's real nodes: the one after an identity padding node
    # (its midpoint equals the span's end) is dropped.
    bonds = jnp.concatenate([interleaved, bonds[-1:]])[:nodes[level] + 1]
  return bonds


def _leaves(params: TRIPParams, weights: Optional[Array], dtype) -> Array:
  """The ring's matrices M_j = Σ_k w_jk Q_j[k], each divided by its largest entry.

  Args:
    params: TRIPParams over n variables.
    weights: (B, n, K) component weights, or None for w = 1 (nothing given, B = 1).
    dtype: the float dtype to compute in.

  Returns:
    (n, B, m, m). The scales cancel in every conditional the sampler draws from.
  """
  cores = natural(params).cores.astype(dtype)                       # (n, K, m, m)
  if weights is None:
    mats = jnp.sum(cores, axis=1)[:, None]
  else:
    mats = weighted_cores(jnp.transpose(weights, (1, 0, 2)), cores)
  return rescale(mats)[0]


def _component_probs(params: TRIPParams, bonds: Array, weights: Optional[Array],
                     dtype) -> Array:
  """w_jk Q_j[k][a_j, a_{j+1}] for every variable and draw: (n, R, B, K).

  Gathers the roots of the few entries it needs rather than squaring every core.
  """
  n = params.num_variables
  roots = jnp.moveaxis(params.core_roots, 1, -1)                    # (n, m, m, K)
  variable_index = jnp.arange(n)[:, None, None]
  probs = jnp.square(roots[variable_index, bonds[:-1], bonds[1:]].astype(dtype))
  probs = probs * jnp.asarray(component_mask(params), dtype)[:, None, None]
  if weights is not None:
    probs = probs * jnp.transpose(weights, (1, 0, 2))[:, None]
  return probs


def _num_index_uniforms(n: int) -> int:
  """Uniforms per draw of the component indices: the bonds, then one per variable."""
  return _num_bond_draws(n) + n


def _sample_indices(params: TRIPParams, uniforms: Array, weights: Optional[Array],
                    dtype):
  """Exact draws of component indices s given per-row weights.

  Draws the bond indices a_0..a_n of the ring of weighted cores M_j = Σ_k w_jk Q_j[k]
  (`_draw_bonds`), then every s_j | a_j, a_{j+1} ∝ w_jk Q_j[k][a_j, a_{j+1}] in parallel.
  The product tree is shared by all draws of a row (by all draws when nothing is given).

  Args:
    params: TRIPParams over n variables.
    uniforms: (_num_index_uniforms(n), R, B) uniforms in (0, 1).
    weights: (B, n, K) component weights w_jk of each row; None for no conditioning
      (w = 1, B = 1).
    dtype: the float dtype to compute in.

  Returns:
    (R, B, n) int32 component indices, and (B,) whether the row has positive probability.
  """
  n = params.num_variables
  num_bonds = _num_bond_draws(n)
  tree = product_tree(_leaves(params, weights, dtype))              # leaves (n, B, m, m)
  valid = jnp.trace(tree.root, axis1=-2, axis2=-1) > 0              # (B,)
  bonds = _draw_bonds(tree, n, uniforms[:num_bonds])                # (n+1, R, B)
  probs = _component_probs(params, bonds, weights, dtype)           # (n, R, B, K)
  components = _categorical(uniforms[num_bonds:], probs)            # (n, R, B)
  return jnp.moveaxis(components, 0, -1).astype(jnp.int32), valid


class _Conditioning(NamedTuple):
  """What a sampling call draws and conditions on.

  Attributes:
    shape: the sample shape.
    num_draws: R = prod(shape), draws per row.
    batch_shape: given.shape[:-1], () without `given`.
    dtype: the float dtype of the draws.
    given: (B, n) values to condition on; None without `given` (then B = 1).
    present: (B, n) whether each given entry is observed; None without `given`.
  """
  shape: tuple
  num_draws: int
  batch_shape: tuple
  dtype: Any
  given: Optional[Array]
  present: Optional[Array]


def _conditioning(params: TRIPParams, shape, given, observed) -> _Conditioning:
  shape = tuple(shape) if not isinstance(shape, int) else (shape,)
  num_draws = int(np.prod(shape, dtype=np.int64))
  checks.observed_needs_given(given, observed)
  if given is None:
    return _Conditioning(shape, num_draws, (), params.core_roots.dtype, None, None)
  given, present = checks.values_and_mask(given, observed, params.num_variables, "given")
  batch_shape = given.shape[:-1]
  given = given.reshape(-1, params.num_variables)
  present = present.reshape(given.shape)
  return _Conditioning(shape, num_draws, batch_shape, result_dtype(params, given), given,
                       present)


# Compiled as a whole even when called eagerly: op by op, the levels of the bisection
# would each compile their own small programs, several times the cost of one.
@functools.partial(jax.jit, static_argnames=("num_draws", "dtype", "values"))
def _draw(params: TRIPParams, key: Array, given: Optional[Array],
          present: Optional[Array], *, num_draws: int, dtype, values: bool) -> Array:
  """(R, B, n) exact draws: int32 component indices, or the values when `values`.

  Rows whose given part has zero probability get NaN values in their sampled entries.
  """
  n = params.num_variables
  if given is None or present is None:  # `_conditioning` sets both or neither
    weights, num_rows = None, 1
  else:
    weights = component_weights(params, given, present, dtype).weights
    num_rows = given.shape[0]
  # One draw of uniforms for everything: each random call site costs a second or more
  # of XLA:CPU compilation (threefry), so the indices and the Gaussian noise share one.
  num_index = _num_index_uniforms(n)
  num_noise = n if values else 0
  uniforms = _uniforms(key, (num_index + num_noise, num_draws, num_rows), dtype)
  components, valid = _sample_indices(params, uniforms[:num_index], weights, dtype)
  if not values:
    return components
  variable_index = jnp.arange(n)
  means = params.means.astype(dtype)[variable_index, components]
  scales = jnp.exp(params.log_scales.astype(dtype))[variable_index, components]
  noise = jax.scipy.special.ndtri(jnp.moveaxis(uniforms[num_index:], 0, -1))
  draws = jnp.where(np.asarray(params.discrete), components.astype(dtype),
                    means + scales * noise)
  draws = jnp.where(valid[None, :, None], draws, jnp.nan)
  if given is not None and present is not None:
    draws = jnp.where(present[None], given[None].astype(dtype), draws)
  return draws


def sample_components(params: TRIPParams, key: Array, shape: Sequence[int] = (),
                      given: Optional[Array] = None,
                      observed: Optional[Array] = None) -> Array:
  """Exact draws of the component indices s, optionally conditioned on `given` values.

  s ~ p(s) ∝ Tr(Q_1[s_1] ··· Q_n[s_n]) (paper, eq. 1), or p(s | x_given) with w_jk =
  p(x_j | s_j = k) for the given entries, drawn exactly as the paper's sections 2.1, 2.2
  require: the ring's bond indices by bisection, then every s_j given its two bonds
  (module docstring of `tripjax.prior`).

  Returns:
    int32 array (*shape, n) without `given`, (*shape, *given.shape[:-1], n) with it.
  """
  request = _conditioning(params, shape, given, observed)
  components = _draw(params, key, request.given, request.present,
                     num_draws=request.num_draws, dtype=request.dtype, values=False)
  return components.reshape(*request.shape, *request.batch_shape, params.num_variables)


def sample(params: TRIPParams, key: Array, shape: Sequence[int] = (),
           given: Optional[Array] = None, observed: Optional[Array] = None) -> Array:
  """Exact samples from the TRIP, or from p(missing | given) when `given` is passed.

  s as `sample_components` draws it (paper, sections 2.1, 2.2), then x_j ~ N(mu_js_j,
  sigma_js_j) for a continuous variable (eq. 3) and x_j = s_j for a discrete one.

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
  draws = _draw(params, key, request.given, request.present,
                num_draws=request.num_draws, dtype=request.dtype, values=True)
  return draws.reshape(*request.shape, *request.batch_shape, params.num_variables)
