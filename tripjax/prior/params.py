"""TRIP parameters: variable specs, the params pytree, random init, natural parameters."""

from __future__ import annotations

from typing import NamedTuple, Sequence, Union

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tripjax.prior import checks

Array = jax.Array


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


def check_variables(variables: Sequence[Variable]) -> tuple[tuple, tuple]:
  """(num_components, discrete) tuples of a checked sequence of variable specs."""
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
    checks.positive_int(v.num_components, f"variables[{j}].num_components")
  num_components = tuple(int(v.num_components) for v in variables)
  discrete = tuple(isinstance(v, Discrete) for v in variables)
  return num_components, discrete


def _real_components(num_components: Sequence[int]) -> np.ndarray:
  """(n, K) bool mask of real (non-padded) components; a compile-time constant."""
  ks = np.asarray(num_components)
  return np.arange(max(num_components))[None, :] < ks[:, None]


def component_mask(params: TRIPParams) -> np.ndarray:
  """(n, K) float mask of real (non-padded) components; a compile-time constant."""
  return _real_components(params.num_components).astype(np.float32)


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
  num_components, discrete = check_variables(variables)
  rank = checks.positive_int(rank, "rank")
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype must be a float dtype, got {dtype}.")
  n, kmax = len(num_components), max(num_components)
  mask = _real_components(num_components)
  key_cores, key_means = jax.random.split(key)
  roots = 1.0 + core_noise * jax.random.normal(key_cores, (n, kmax, rank, rank), dtype)
  roots = roots * jnp.asarray(mask[:, :, None, None], dtype)
  low, high = mean_range
  means = jax.random.uniform(key_means, (n, kmax), dtype, low, high)
  is_discrete = np.asarray(discrete)[:, None]
  means = jnp.where(is_discrete | ~mask, 0.0, means).astype(dtype)
  log_inverse_k = -np.log(np.asarray(num_components, np.float64))[:, None] * np.ones((1, kmax))
  log_scales = jnp.asarray(np.where(is_discrete | ~mask, 0.0, log_inverse_k), dtype)
  return TRIPParams(roots, means, log_scales, num_components, discrete)


def natural(params: TRIPParams) -> Natural:
  """Constrained parameters: cores (n, K, m, m) >= 0 (zero where padded), means, scales.

  The cores Q_j[k] of p(s) ∝ Tr(Q_1[s_1] ··· Q_n[s_n]) (paper, eq. 1, 4) are the
  squared `core_roots`; the means and scales are those of p(x_j | s_j = k) (eq. 3).
  """
  cores = jnp.square(params.core_roots)
  if min(params.num_components) < params.max_components:
    mask = jnp.asarray(component_mask(params), cores.dtype)
    cores = cores * mask[:, :, None, None]
  return Natural(cores, params.means, jnp.exp(params.log_scales))


def from_natural(variables: Sequence[Variable], cores: Array, means: Array,
                 scales: Array) -> TRIPParams:
  """Inverse of `natural`: params with the given cores (n, K, m, m), means, scales (n, K).

  The cores are the Q_j[k] of eq. 1, 4 (nonnegative), the means and scales those of the
  1-D Gaussians of eq. 3. Entries of padded components are ignored. Cores may contain
  exact zeros.
  """
  num_components, discrete = check_variables(variables)
  n, kmax = len(num_components), max(num_components)
  cores, means, scales = jnp.asarray(cores), jnp.asarray(means), jnp.asarray(scales)
  if cores.ndim != 4 or cores.shape[:2] != (n, kmax) or cores.shape[2] != cores.shape[3]:
    raise ValueError(f"cores must have shape ({n}, {kmax}, m, m), got {cores.shape}.")
  for name, value in (("means", means), ("scales", scales)):
    if value.shape != (n, kmax):
      raise ValueError(f"{name} must have shape ({n}, {kmax}), got {value.shape}.")
  mask = _real_components(num_components)
  roots = jnp.sqrt(jnp.maximum(cores, 0.0)) * mask[:, :, None, None]
  log_scales = jnp.where(mask, jnp.log(jnp.where(mask, scales, 1.0)), 0.0)
  return TRIPParams(roots, jnp.where(mask, means, 0.0), log_scales, num_components,
                    discrete)
