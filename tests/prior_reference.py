"""Brute-force float64 reference for the Tensor Ring Induced Prior (TRIP).

Written directly from the paper (Kuznetsov et al., NeurIPS 2019, sections 2-4)
and independent of `tripjax.prior`: every lattice node s in prod_j range(K_j)
is enumerated, so this is only for tiny rings (n <= 5, K <= 3, m <= 3).

The model:
  p(s) = Tr(Q_1[s_1] ... Q_n[s_n]) / Tr(prod_j sum_k Q_j[k]),
  continuous j: p(z_j | s_j = k) = N(z_j; means[j, k], scales[j, k]),
  discrete j:   x_j = s_j (as a float).
Missing entries are summed / integrated out, which for a discrete x_j means
summing over its values and for a continuous z_j integrating its Gaussian to 1.
"""
import dataclasses
import itertools
from typing import Optional, Sequence

import numpy as np
from scipy import special

CONTINUOUS = "continuous"
DISCRETE = "discrete"


@dataclasses.dataclass(frozen=True)
class Ring:
  """A small TRIP in natural parameters (float64 numpy).

  Attributes:
    kinds: per variable, CONTINUOUS or DISCRETE.
    num_components: per variable, K_j >= 1.
    cores: (n, Kmax, m, m) non-negative; entries with k >= K_j are ignored.
    means: (n, Kmax) (used only for continuous variables, k < K_j).
    scales: (n, Kmax) > 0 (used only for continuous variables, k < K_j).
  """
  kinds: tuple
  num_components: tuple
  cores: np.ndarray
  means: np.ndarray
  scales: np.ndarray

  @property
  def n(self) -> int:
    return len(self.kinds)

  @property
  def kmax(self) -> int:
    return max(self.num_components)

  @property
  def rank(self) -> int:
    return self.cores.shape[-1]

  def with_cores(self, cores) -> "Ring":
    return dataclasses.replace(self, cores=np.asarray(cores, np.float64))


def random_ring(rng: np.random.Generator, kinds: Sequence[str],
                num_components: Sequence[int], rank: int,
                zero_fraction: float = 0.0, mean_range: float = 2.0,
                scale_range=(0.3, 1.2)) -> Ring:
  """Random cores (uniform in [0.05, 1], optionally some exact zeros)."""
  kinds = tuple(kinds)
  num_components = tuple(int(k) for k in num_components)
  n, kmax = len(kinds), max(num_components)
  cores = rng.uniform(0.05, 1.0, size=(n, kmax, rank, rank))
  if zero_fraction > 0:
    cores = np.where(rng.uniform(size=cores.shape) < zero_fraction, 0.0, cores)
  means = rng.uniform(-mean_range, mean_range, size=(n, kmax))
  scales = rng.uniform(*scale_range, size=(n, kmax))
  for j, k in enumerate(num_components):
    cores[j, k:] = 0.0
    # Padded entries get arbitrary (finite) values: they must be ignored.
    means[j, k:] = 7.0
    scales[j, k:] = 0.5
  ring = Ring(kinds, num_components, cores, means, scales)
  if not np.isfinite(log_normalizer(ring)):
    raise ValueError("random ring has a zero normalizer; choose another seed")
  return ring


def permuted_ring(rng: np.random.Generator, permutation: Sequence[int],
                  kinds: Sequence[str], num_components: Sequence[int], rank: int,
                  **kwargs) -> Ring:
  """A `random_ring` over variables given in their own order, placed on the ring so
  that ring position i holds variable permutation[i] (the joint prior's convention)."""
  order = list(permutation)
  return random_ring(rng, [kinds[i] for i in order],
                     [num_components[i] for i in order], rank, **kwargs)


def joint_ring(joint, seed: int) -> Ring:
  """A random ring over [z, y] in the ring order of `joint` (a tripjax JointPrior: only
  its sizes and permutation are read), with strongly dependent variables (sparse,
  sharpened cores) so that conditioning on y matters."""
  kinds = [CONTINUOUS] * joint.num_latents + [DISCRETE] * joint.num_attributes
  components = [joint.num_components] * joint.num_latents + list(joint.num_values)
  ring = permuted_ring(np.random.default_rng(seed), joint.permutation, kinds,
                       components, joint.rank, zero_fraction=0.4)
  return ring.with_cores(ring.cores ** 3)


def lattice(num_components: Sequence[int]) -> np.ndarray:
  """All component-index combinations, (S, n) int, in C order."""
  return np.array(list(itertools.product(*[range(k) for k in num_components])),
                  dtype=np.int64).reshape(-1, len(num_components))


def node_log_weights(ring: Ring) -> np.ndarray:
  """log Tr(Q_1[s_1] ... Q_n[s_n]) for every lattice node, (S,)."""
  nodes = lattice(ring.num_components)
  out = np.empty(len(nodes))
  for i, s in enumerate(nodes):
    prod = np.eye(ring.rank)
    for j, k in enumerate(s):
      prod = prod @ ring.cores[j, k]
    trace = np.trace(prod)
    with np.errstate(divide="ignore"):
      out[i] = np.log(trace) if trace > 0 else -np.inf
  return out


def log_normalizer(ring: Ring) -> float:
  """log Tr(prod_j sum_k Q_j[k]) computed by enumeration."""
  return float(special.logsumexp(node_log_weights(ring)))


def _missing_mask(ring: Ring, x: np.ndarray,
                  observed: Optional[np.ndarray]) -> np.ndarray:
  missing = np.isnan(x)
  if observed is not None:
    missing = missing | ~np.broadcast_to(np.asarray(observed, bool), x.shape)
  return missing


def log_likelihood_table(ring: Ring, x, observed=None) -> np.ndarray:
  """log p(x_j | s_j = k) for x (B, n): (B, n, Kmax).

  Missing entries give 0 for every valid k. Padded k give -inf. A discrete
  value that is not an integer in range gives -inf for every k.
  """
  x = np.asarray(x, np.float64)
  assert x.ndim == 2 and x.shape[1] == ring.n, x.shape
  missing = _missing_mask(ring, x, observed)
  batch, kmax = x.shape[0], ring.kmax
  table = np.full((batch, ring.n, kmax), -np.inf)
  for j in range(ring.n):
    num = ring.num_components[j]
    for k in range(num):
      if ring.kinds[j] == CONTINUOUS:
        mu, sigma = ring.means[j, k], ring.scales[j, k]
        with np.errstate(invalid="ignore"):
          value = (-0.5 * ((x[:, j] - mu) / sigma) ** 2 - np.log(sigma)
                   - 0.5 * np.log(2 * np.pi))
      else:
        with np.errstate(invalid="ignore"):
          value = np.where(x[:, j] == k, 0.0, -np.inf)
      table[:, j, k] = np.where(missing[:, j], 0.0, value)
  return table


def node_log_joint(ring: Ring, x, observed=None) -> np.ndarray:
  """log [p(s) * p(x_observed | s)] for every batch row and node: (B, S)."""
  nodes = lattice(ring.num_components)
  table = log_likelihood_table(ring, x, observed)
  log_lik = np.zeros((table.shape[0], len(nodes)))
  for j in range(ring.n):
    log_lik += table[:, j, nodes[:, j]]
  return node_log_weights(ring)[None, :] - log_normalizer(ring) + log_lik


def log_prob(ring: Ring, x, observed=None) -> np.ndarray:
  """log p(x_observed) with missing entries summed out, x (B, n) -> (B,)."""
  with np.errstate(divide="ignore"):
    return special.logsumexp(node_log_joint(ring, x, observed), axis=1)


def node_posterior(ring: Ring, x, observed=None) -> np.ndarray:
  """p(s | x_observed) over all lattice nodes: (B, S)."""
  log_joint = node_log_joint(ring, x, observed)
  total = special.logsumexp(log_joint, axis=1, keepdims=True)
  return np.exp(log_joint - total)


def posterior_weights(ring: Ring, x, observed=None) -> np.ndarray:
  """p(s_j = k | x_observed): (B, n, Kmax), zero for padded k."""
  nodes = lattice(ring.num_components)
  post = node_posterior(ring, x, observed)
  out = np.zeros((post.shape[0], ring.n, ring.kmax))
  for j in range(ring.n):
    for k in range(ring.num_components[j]):
      out[:, j, k] = post[:, nodes[:, j] == k].sum(axis=1)
  return out


def prior_node_probabilities(ring: Ring) -> np.ndarray:
  """p(s) over all lattice nodes: (S,)."""
  log_w = node_log_weights(ring)
  return np.exp(log_w - special.logsumexp(log_w))


def conditional_node_probabilities(ring: Ring, given) -> np.ndarray:
  """p(s | given) for one given vector (n,) with NaN for missing: (S,)."""
  return node_posterior(ring, np.asarray(given, np.float64)[None])[0]


def value_moments(ring: Ring, node_probs: np.ndarray):
  """Mean and variance of every continuous z_j under p(s) = node_probs.

  Returns (mean (n,), var (n,)); discrete entries hold the mean / variance of
  the category value x_j = s_j.
  """
  nodes = lattice(ring.num_components)
  mean, var = np.zeros(ring.n), np.zeros(ring.n)
  for j in range(ring.n):
    if ring.kinds[j] == CONTINUOUS:
      mu = ring.means[j, nodes[:, j]]
      second = ring.scales[j, nodes[:, j]] ** 2 + mu ** 2
    else:
      mu = nodes[:, j].astype(np.float64)
      second = mu ** 2
    mean[j] = node_probs @ mu
    var[j] = node_probs @ second - mean[j] ** 2
  return mean, var


def cross_moment(ring: Ring, node_probs: np.ndarray, a: int, b: int) -> float:
  """E[v_a * v_b] for a != b (v = z for continuous, category for discrete)."""
  assert a != b
  nodes = lattice(ring.num_components)

  def value(j):
    if ring.kinds[j] == CONTINUOUS:
      return ring.means[j, nodes[:, j]]
    return nodes[:, j].astype(np.float64)

  return float(node_probs @ (value(a) * value(b)))


def mixture_cdf(ring: Ring, node_probs: np.ndarray, j: int):
  """CDF of continuous z_j under p(s) = node_probs, as a callable."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  nodes = lattice(ring.num_components)
  num = ring.num_components[j]
  weights = np.array([node_probs[nodes[:, j] == k].sum() for k in range(num)])
  mus, sigmas = ring.means[j, :num], ring.scales[j, :num]

  def cdf(z):
    z = np.asarray(z, np.float64)[..., None]
    return (weights * stats.norm.cdf(z, mus, sigmas)).sum(-1)

  return cdf


def sample_nodes(ring: Ring, rng: np.random.Generator, num: int,
                 node_probs: Optional[np.ndarray] = None):
  """Draws (num, n) component indices and values from node_probs (exact)."""
  if node_probs is None:
    node_probs = prior_node_probabilities(ring)
  nodes = lattice(ring.num_components)
  idx = rng.choice(len(nodes), size=num, p=node_probs / node_probs.sum())
  s = nodes[idx]
  values = s.astype(np.float64)
  for j in range(ring.n):
    if ring.kinds[j] == CONTINUOUS:
      values[:, j] = rng.normal(ring.means[j, s[:, j]], ring.scales[j, s[:, j]])
  return s, values


def to_params(ring: Ring, dtype=None):
  """tripjax.prior params with exactly this ring's natural parameters."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import tripjax.prior as trip  # pylint: disable=g-import-not-at-top
  dtype = jnp.float32 if dtype is None else dtype
  return trip.from_natural(variables_of(ring), jnp.asarray(ring.cores, dtype),
                           jnp.asarray(ring.means, dtype),
                           jnp.asarray(ring.scales, dtype))


def variables_of(ring: Ring):
  """The tripjax.prior variable specs of this ring."""
  import tripjax.prior as trip  # pylint: disable=g-import-not-at-top
  return [trip.Continuous(k) if kind == CONTINUOUS else trip.Discrete(k)
          for kind, k in zip(ring.kinds, ring.num_components)]


def transfer_matrix_log_prob(ring: Ring, x, observed=None) -> np.ndarray:
  """log p(x_observed) by Algorithm 1 of the paper with per-step rescaling.

  Float64, O(B n K m^2); usable for long rings (no enumeration).
  """
  x = np.asarray(x, np.float64)
  table = log_likelihood_table(ring, x, observed)  # (B, n, Kmax)
  shift = np.max(table, axis=2, keepdims=True)
  shift = np.where(np.isfinite(shift), shift, 0.0)
  with np.errstate(under="ignore"):
    weights = np.exp(table - shift)
  batch = x.shape[0]
  buff = np.broadcast_to(np.eye(ring.rank), (batch, ring.rank, ring.rank))
  norm = np.eye(ring.rank)
  log_scale = shift.sum(axis=(1, 2))
  log_norm = 0.0
  for j in range(ring.n):
    step = np.einsum("bk,kxy->bxy", weights[:, j], ring.cores[j])
    buff = buff @ step
    scale = np.abs(buff).max(axis=(1, 2), keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    buff = buff / scale
    log_scale += np.log(scale[:, 0, 0])
    norm = norm @ ring.cores[j].sum(0)
    norm_scale = np.abs(norm).max()
    norm = norm / norm_scale
    log_norm += np.log(norm_scale)
  with np.errstate(divide="ignore"):
    trace = np.log(np.trace(buff, axis1=1, axis2=2))
  return trace + log_scale - (np.log(np.trace(norm)) + log_norm)
