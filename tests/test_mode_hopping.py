"""Tests for tripjax.priors.mode_hopping (Figure 5).

Bookkeeping (which coordinates move) for every prior kind, and exactness of each hop on
a tiny float64 ring: the probability integral transform of the re-drawn coordinates
through the brute-force conditional CDFs (Rosenblatt) must be uniform.
"""
import float64
import jax
import jax.numpy as jnp
import numpy as np
import prior_reference as ref
import pytest
from scipy import stats

from tripjax import priors

C = ref.CONTINUOUS


def _hopping(prior, params, key, num_trajectories, num_hops, num_resampled):
  return jax.jit(priors.mode_hopping, static_argnums=(0, 3, 4, 5))(
      prior, params, key, num_trajectories, num_hops, num_resampled)


def _check_bookkeeping(path, num_resampled):
  """Exactly num_resampled coordinates move per hop, the rest are kept bit for bit
  (resampled continuous coordinates differ with probability 1), and the moved ones
  vary over trajectories and hops."""
  assert np.all(np.isfinite(path))
  changed = path[:, 1:] != path[:, :-1]                        # (T, H, d)
  np.testing.assert_array_equal(changed.sum(-1), num_resampled)
  patterns = {tuple(np.flatnonzero(row)) for row in changed.reshape(-1, path.shape[-1])}
  assert len(patterns) > 2


def test_normal_prior_hops():
  prior = priors.make_prior("normal", 8)
  path = np.asarray(_hopping(prior, {}, jax.random.key(1), 6, 5, 3))
  assert path.shape == (6, 6, 8)
  _check_bookkeeping(path, 3)
  other = np.asarray(_hopping(prior, {}, jax.random.key(2), 6, 5, 3))
  assert not np.array_equal(other, path)


def _coupled_ring():
  """3 continuous variables, 2 components each; the cores favour equal components."""
  cores = np.zeros((3, 2, 2, 2))
  for k in range(2):
    cores[:, k] = 0.1
    cores[:, k, k, k] = 1.0
  cores[1] *= np.array([1.0, 0.6])[:, None, None]
  means = np.array([[-2.0, 2.0], [-1.5, 1.0], [-2.5, 1.5]])
  scales = np.array([[0.7, 0.9], [0.8, 0.6], [1.0, 0.5]])
  return ref.Ring((C, C, C), (2, 2, 2), cores, means, scales)


NUM_TRAJECTORIES, NUM_HOPS = 4000, 5


@pytest.fixture(scope="module")
def trip_hops():
  """(ring, path (T, H + 1, 3)), float64."""
  with float64.enabled():
    ring = _coupled_ring()
    prior = priors.make_prior("trip", 3, num_components=2, rank=2, dtype=jnp.float64)
    params = ref.to_params(ring, jnp.float64)
    # rbg keys: threefry's sampler compiles several times slower on CPU.
    path = _hopping(prior, params, jax.random.key(3, impl="rbg"), NUM_TRAJECTORIES,
                    NUM_HOPS, 2)
    return ring, np.asarray(path)


def test_trip_prior_hops(trip_hops):
  _, path = trip_hops
  assert path.shape == (NUM_TRAJECTORIES, NUM_HOPS + 1, 3)
  _check_bookkeeping(path, 2)


def _conditional_cdf(ring, given, j, value):
  """P[z_j <= value | given] for rows of given (B, n) (NaN missing), j and value (B,)."""
  nodes = ref.lattice(ring.num_components)                      # (S, n)
  posterior = ref.node_posterior(ring, given)                   # (B, S)
  components = nodes[:, j].T                                    # (B, S)
  mus, sigmas = ring.means[j[:, None], components], ring.scales[j[:, None], components]
  return np.sum(posterior * stats.norm.cdf(value[:, None], mus, sigmas), axis=1)


def _rosenblatt(ring, before, after):
  """u_a = F(z_a | z_c), u_b = F(z_b | z_c, z_a) for the moved pair a < b of each row."""
  moved = before != after
  first, second = (np.argsort(~moved, axis=1, kind="stable")[:, i] for i in (0, 1))
  rows = np.arange(len(before))
  given = np.where(moved, np.nan, before)
  u_first = _conditional_cdf(ring, given, first, after[rows, first])
  given[rows, first] = after[rows, first]
  u_second = _conditional_cdf(ring, given, second, after[rows, second])
  return u_first, u_second


def test_hops_draw_from_the_exact_conditional(trip_hops):
  """Every hop (4000 trajectories x 5 hops) re-draws a pair (z_a, z_b) given the kept
  z_c; under the exact conditional the Rosenblatt transform gives independent
  uniforms."""
  ring, path = trip_hops
  before, after = path[:, :-1].reshape(-1, 3), path[:, 1:].reshape(-1, 3)
  u_first, u_second = _rosenblatt(ring, before, after)
  assert stats.kstest(np.concatenate([u_first, u_second]), "uniform").pvalue > 1e-3
  assert abs(np.corrcoef(u_first, u_second)[0, 1]) < 4 / np.sqrt(len(u_first))
  # The test has power: a pair drawn from the prior, ignoring z_c, is rejected (the
  # values of another hop; every z on the path is a draw from p).
  moved = before != after
  other = np.random.default_rng(0).permutation(len(after))
  wrong = np.where(moved, after[other], before)
  u_first, u_second = _rosenblatt(ring, before, wrong)
  assert stats.kstest(np.concatenate([u_first, u_second]), "uniform").pvalue < 1e-6


def test_bad_arguments_raise():
  prior = priors.make_prior("normal", 4)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="num_resampled must be <= the latent size 4"):
    priors.mode_hopping(prior, {}, key, 2, 3, num_resampled=5)
  with pytest.raises(ValueError, match="num_resampled"):
    priors.mode_hopping(prior, {}, key, 2, 3, num_resampled=0)
  with pytest.raises(ValueError, match="num_hops"):
    priors.mode_hopping(prior, {}, key, 2, -1)
  with pytest.raises(ValueError, match="num_trajectories"):
    priors.mode_hopping(prior, {}, key, True, 3)
