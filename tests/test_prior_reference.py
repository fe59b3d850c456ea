"""Self-consistency checks of the brute-force reference (no tripjax needed)."""
import numpy as np
import pytest
from scipy import special, stats

import prior_reference as ref

C, D = ref.CONTINUOUS, ref.DISCRETE
SEED = 20190925


def _transfer_matrix_log_prob(ring, x):
  """Algorithm 1 of the paper in float64: log Tr(prod A_j) - log Tr(prod M_j)."""
  x = np.asarray(x, np.float64)
  table = np.exp(ref.log_likelihood_table(ring, x))
  out = []
  for b in range(x.shape[0]):
    buff, norm = np.eye(ring.rank), np.eye(ring.rank)
    for j in range(ring.n):
      num = ring.num_components[j]
      buff = buff @ np.einsum("k,kab->ab", table[b, j, :num],
                              ring.cores[j, :num])
      norm = norm @ ring.cores[j, :num].sum(0)
    with np.errstate(divide="ignore"):
      out.append(np.log(np.trace(buff)) - np.log(np.trace(norm)))
  return np.array(out)


RINGS = [
    ((C, D, C), (3, 2, 2), 2),
    ((D, D, D), (2, 3, 2), 3),
    ((C,), (3,), 1),
    ((C, C, D, D), (1, 2, 3, 2), 2),
]


def _random_x(ring, rng, batch, missing_rate=0.3):
  _, x = ref.sample_nodes(ring, rng, batch)
  x[rng.uniform(size=x.shape) < missing_rate] = np.nan
  return x


@pytest.mark.parametrize("kinds,ks,rank", RINGS)
def test_enumeration_matches_transfer_matrices(kinds, ks, rank):
  rng = np.random.default_rng(SEED)
  ring = ref.random_ring(rng, kinds, ks, rank)
  x = _random_x(ring, rng, 20)
  np.testing.assert_allclose(ref.log_prob(ring, x),
                             _transfer_matrix_log_prob(ring, x), atol=1e-10)
  cores_sum = ring.cores.sum(1)
  prod = np.eye(rank)
  for j in range(ring.n):
    prod = prod @ cores_sum[j]
  np.testing.assert_allclose(ref.log_normalizer(ring), np.log(np.trace(prod)))


@pytest.mark.parametrize("kinds,ks,rank", RINGS)
def test_posteriors_are_normalized(kinds, ks, rank):
  rng = np.random.default_rng(SEED + 1)
  ring = ref.random_ring(rng, kinds, ks, rank)
  x = _random_x(ring, rng, 20)
  post = ref.posterior_weights(ring, x)
  np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-12)
  for j, k in enumerate(ks):
    assert np.all(post[:, j, k:] == 0)
  np.testing.assert_allclose(ref.prior_node_probabilities(ring).sum(), 1.0)
  np.testing.assert_allclose(
      ref.log_prob(ring, np.full((1, ring.n), np.nan)), 0, atol=1e-12)


def test_discrete_ring_sums_to_one():
  rng = np.random.default_rng(SEED + 2)
  ring = ref.random_ring(rng, (D, D, D), (2, 3, 3), 2)
  values = ref.lattice(ring.num_components).astype(np.float64)
  np.testing.assert_allclose(special.logsumexp(ref.log_prob(ring, values)), 0,
                             atol=1e-12)
  # A marginal over the first two variables also sums to one.
  values[:, 2] = np.nan
  unique = np.unique(values[:, :2], axis=0)
  marg = np.concatenate([unique, np.full((len(unique), 1), np.nan)], 1)
  np.testing.assert_allclose(special.logsumexp(ref.log_prob(ring, marg)), 0,
                             atol=1e-12)


def test_rank_one_is_factorized_mixture():
  rng = np.random.default_rng(SEED + 3)
  ring = ref.random_ring(rng, (C, D, C), (2, 3, 3), 1)
  x = _random_x(ring, rng, 30)
  expected = np.zeros(len(x))
  for j in range(ring.n):
    num = ring.num_components[j]
    w = ring.cores[j, :num, 0, 0] / ring.cores[j, :num, 0, 0].sum()
    for b in range(len(x)):
      if np.isnan(x[b, j]):
        continue
      if ring.kinds[j] == C:
        expected[b] += special.logsumexp(
            np.log(w) + stats.norm.logpdf(x[b, j], ring.means[j, :num],
                                          ring.scales[j, :num]))
      else:
        expected[b] += np.log(w[int(x[b, j])])
  np.testing.assert_allclose(ref.log_prob(ring, x), expected, atol=1e-10)


def test_zero_probability_and_invalid_discrete_values():
  rng = np.random.default_rng(SEED + 4)
  ring = ref.random_ring(rng, (D, C), (2, 2), 2)
  x = np.array([[2.0, 0.0], [-1.0, 0.0], [0.5, 0.0], [1.0, 0.0]])
  lp = ref.log_prob(ring, x)
  assert np.all(lp[:3] == -np.inf) and np.isfinite(lp[3])


def test_sampler_matches_node_probabilities():
  rng = np.random.default_rng(SEED + 5)
  ring = ref.random_ring(rng, (C, D), (2, 3), 2)
  probs = ref.prior_node_probabilities(ring)
  s, _ = ref.sample_nodes(ring, rng, 50_000)
  nodes = ref.lattice(ring.num_components)
  freq = np.array([np.all(s == node, axis=1).mean() for node in nodes])
  assert 0.5 * np.abs(freq - probs).sum() < 0.02


def test_cyclic_invariance_of_reference():
  rng = np.random.default_rng(SEED + 6)
  ring = ref.random_ring(rng, (C, D, C, D), (2, 2, 3, 2), 3)
  x = _random_x(ring, rng, 10)
  shift = 1
  rolled = ref.Ring(tuple(np.roll(ring.kinds, shift)),
                    tuple(np.roll(ring.num_components, shift)),
                    np.roll(ring.cores, shift, 0), np.roll(ring.means, shift, 0),
                    np.roll(ring.scales, shift, 0))
  np.testing.assert_allclose(ref.log_prob(rolled, np.roll(x, shift, 1)),
                             ref.log_prob(ring, x), atol=1e-10)


@pytest.mark.parametrize("kinds,ks,rank", RINGS)
def test_rescaled_transfer_matrices_match_enumeration(kinds, ks, rank):
  rng = np.random.default_rng(SEED + 7)
  ring = ref.random_ring(rng, kinds, ks, rank)
  x = _random_x(ring, rng, 20)
  x[0] = np.nan
  np.testing.assert_allclose(ref.transfer_matrix_log_prob(ring, x),
                             ref.log_prob(ring, x), atol=1e-10)
