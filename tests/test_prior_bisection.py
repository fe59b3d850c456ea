"""Tests of the bisection sampler of tripjax.prior (prior/sampling.py, ring.product_tree).

The bond indices are drawn level by level down a pairwise product tree; these tests
check the tree, the joint of the drawn bonds against enumeration for ring lengths that
split unevenly (odd and prime n, n = 1, 2, 3), the component draws of such rings against
the brute-force reference, the inverse-CDF draw at its edges, and a float32 ring of
2000 variables against float64 marginals. Chi-square p-values are taken with fixed
seeds; an error in a conditional shows as a p-value of ~0 at these draw counts.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import prior_reference as ref
import tripjax.prior as trip
from tripjax.prior import ring, sampling

C, D = ref.CONTINUOUS, ref.DISCRETE
SEED = 2468
NUM_DRAWS = 100_000
MIN_P_VALUE = 1e-4


def _chi_square_p_value(index: np.ndarray, probs: np.ndarray) -> float:
  """p-value of the counts of flat outcome indices against probs; impossible ones fail."""
  counts = np.bincount(index, minlength=len(probs))
  assert np.all(counts[probs == 0] == 0), "an outcome of probability zero was drawn"
  keep = probs > 0
  return stats.chisquare(counts[keep], counts.sum() * probs[keep]).pvalue


@pytest.mark.parametrize("n", [1, 6, 9])
def test_product_tree_matches_ordered_product(n, x64):
  del x64
  rng = np.random.default_rng(SEED + n)
  mats = rng.uniform(0.0, 2.0, size=(n, 2, 3, 3))
  tree = ring.product_tree(jnp.asarray(mats))
  expected = mats[0]
  for mat in mats[1:]:
    expected = expected @ mat
  np.testing.assert_allclose(np.asarray(tree.root) * np.exp(tree.log_scale)[:, None, None],
                             expected, rtol=1e-12)
  assert len(tree.levels) == int(np.ceil(np.log2(n)))
  # Each level's pairs multiply to the next level's nodes (up to their scales), and the
  # padding of an odd level is an identity.
  for level, parents in zip(tree.levels, tree.levels[1:] + [tree.root[None]]):
    level, parents = np.asarray(level), np.asarray(parents)
    products = level[0::2] @ level[1::2]
    real = products.shape[0] if parents.shape[0] % 2 == 0 else parents.shape[0]
    products, parents = products[:real], parents[:real]
    ratio = products.max(axis=(-2, -1), keepdims=True) / parents.max(
        axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(products, parents * ratio, rtol=1e-12)
  for level, count in zip(tree.levels, [n] + sampling._span_counts(n)[:-1]):
    if count % 2:
      np.testing.assert_array_equal(np.asarray(level[-1]), np.broadcast_to(np.eye(3),
                                                                           (2, 3, 3)))


@pytest.mark.parametrize("n, rank", [(2, 3), (3, 3), (5, 3), (7, 2)])
def test_bond_draws_match_enumeration(n, rank, x64):
  """Joint of a_0..a_{n-1} against p(a) ∝ ∏_j M_j[a_j, a_{j+1 mod n}], two rows."""
  del x64
  rng = np.random.default_rng(SEED + 10 * n)
  rows = 2
  mats = rng.uniform(0.05, 1.0, size=(n, rows, rank, rank))
  mats[:, 1] *= rng.uniform(size=(n, rank, rank)) < 0.7     # exact zeros in row 1
  tree = ring.product_tree(jnp.asarray(mats))
  uniforms = sampling._uniforms(jax.random.key(n),
                                (sampling._num_bond_draws(n), NUM_DRAWS, rows),
                                jnp.float64)
  draw = jax.jit(sampling._draw_bonds, static_argnums=1)
  bonds = np.asarray(draw(tree, n, uniforms))
  assert bonds.shape == (n + 1, NUM_DRAWS, rows)
  np.testing.assert_array_equal(bonds[n], bonds[0])
  configs = np.array(list(itertools.product(range(rank), repeat=n)))   # (m^n, n)
  following = np.roll(configs, -1, axis=1)
  for row in range(rows):
    weights = np.prod(mats[np.arange(n), row, configs, following], axis=1)
    assert weights.sum() > 0
    index = np.ravel_multi_index(tuple(bonds[:n, :, row]), (rank,) * n)
    assert _chi_square_p_value(index, weights / weights.sum()) > MIN_P_VALUE, row


def _sample_components(params, key, shape, given=None):
  return np.asarray(jax.jit(trip.sample_components, static_argnums=2)(params, key, shape,
                                                                      given))


ODD_RINGS = {
    1: ((C,), (3,)),
    3: ((C, D, C), (3, 2, 2)),
    5: ((D, C, D, C, D), (2, 2, 3, 2, 2)),
}


@pytest.mark.parametrize("n", list(ODD_RINGS))
def test_component_draws_of_odd_rings_match_joint(n):
  rng = np.random.default_rng(SEED + 100 * n)
  kinds, num_components = ODD_RINGS[n]
  ring_ = ref.random_ring(rng, kinds, num_components, 3,
                          zero_fraction=0.2 if n == 5 else 0.0)
  params = ref.to_params(ring_)
  # Row 0 all missing, row 1 given a continuous and a discrete value (n = 5).
  given = np.full((2, n), np.nan)
  if n == 5:
    given[1, 1], given[1, 2] = 0.3, 1.0
  if n == 3:                                # the path without given values
    s = _sample_components(params, jax.random.key(n), (NUM_DRAWS,))[:, None]
    given = given[:1]
  else:
    s = _sample_components(params, jax.random.key(n), (NUM_DRAWS,),
                           jnp.asarray(given, jnp.float32))
  assert s.shape == (NUM_DRAWS, len(given), n)
  for row in range(len(given)):
    probs = ref.conditional_node_probabilities(ring_, given[row])
    index = np.ravel_multi_index(tuple(s[:, row].T), num_components)
    assert _chi_square_p_value(index, probs) > MIN_P_VALUE, row


@pytest.mark.parametrize("size", [5, 40])
def test_categorical_is_the_inverse_cdf_and_skips_zeros(size):
  """Both code paths (unrolled running sum, triangular matmul) at the edges of (0, 1)."""
  rng = np.random.default_rng(SEED + size)
  probs = rng.uniform(0.1, 1.0, size=(6, size)).astype(np.float32)
  probs[0, 0] = probs[1, -1] = 0.0
  probs[2, 1::2] = 0.0
  probs[3, :-1] = 0.0                                   # only the last category
  probs[4, 1:] = 0.0                                    # only the first category
  probs[5] *= 1e-30                                     # tiny but normal totals
  below_one = np.nextafter(np.float32(1), np.float32(0))
  uniforms = np.array([np.finfo(np.float32).tiny, 0.25, 0.5, 0.999, below_one],
                      np.float32)
  index = np.asarray(sampling._categorical(
      jnp.asarray(np.broadcast_to(uniforms[:, None], (len(uniforms), len(probs)))),
      jnp.asarray(np.broadcast_to(probs, (len(uniforms), *probs.shape)))))
  cdf = np.cumsum(probs.astype(np.float64), axis=-1)
  for u_index, u in enumerate(uniforms):
    for row in range(len(probs)):
      k = index[u_index, row]
      assert probs[row, k] > 0, (u, row, k)
      threshold = u * cdf[row, -1]
      lower = cdf[row, k - 1] if k else 0.0
      tolerance = 1e-6 * cdf[row, -1]
      assert lower - tolerance <= threshold <= cdf[row, k] + tolerance, (u, row, k)


# ---------------------------------------------------------------------------------------
# A long float32 ring against float64 marginals computed by transfer matrices.

LONG_D, LONG_K, LONG_RANK, LONG_DRAWS = 2000, 3, 4, 2000
PAIRS = [(0, 1), (1023, 1024), (1500, 1501), (LONG_D - 1, 0)]   # incl. the closing bond


def _long_ring():
  rng = np.random.default_rng(SEED + 1)
  cores = rng.uniform(0.2, 1.0, size=(LONG_D, LONG_K, LONG_RANK, LONG_RANK))
  cores[:, 0, 0, :] *= 5.0                               # uneven transfer rows
  means = rng.uniform(-1, 1, size=(LONG_D, LONG_K))
  scales = rng.uniform(0.3, 1.0, size=(LONG_D, LONG_K))
  return ref.Ring((C,) * LONG_D, (LONG_K,) * LONG_D, cores, means, scales)


def _transfer_marginals(ring_, x):
  """Float64 p(s_j = k | x_obs) (d, K), and p(s_a = k, s_b = l | x_obs) (K, K) for PAIRS."""
  log_w = ref.log_likelihood_table(ring_, x[None])[0]                  # (d, K)
  weights = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
  weighted = ring_.cores * weights[:, :, None, None]                   # (d, K, m, m)
  mats = weighted.sum(axis=1)
  d, m = len(mats), mats.shape[-1]
  # prefixes[j] ∝ mats[0] ··· mats[j-1], suffixes[j] ∝ mats[j] ··· mats[d-1].
  prefixes, suffixes = [np.eye(m)], [np.eye(m)]
  for j in range(d):
    prefix, suffix = prefixes[-1] @ mats[j], mats[d - 1 - j] @ suffixes[-1]
    prefixes.append(prefix / prefix.max())
    suffixes.append(suffix / suffix.max())
  suffixes = suffixes[::-1]
  marginals = np.einsum("jab,jkbc,jca->jk", np.array(prefixes[:-1]), weighted,
                        np.array(suffixes[1:]))
  marginals /= marginals.sum(axis=-1, keepdims=True)
  pairs = []
  for a, b in PAIRS:
    if b == a + 1:
      joint = np.einsum("xy,kyz,lzw,wx->kl", prefixes[a], weighted[a], weighted[b],
                        suffixes[b + 1])
    else:                                   # b = 0 follows a = d - 1 around the ring
      between = np.eye(m)
      for j in range(1, a):
        between = between @ mats[j]
        between /= between.max()
      joint = np.einsum("lxy,yz,kzx->kl", weighted[b], between, weighted[a])
    pairs.append(joint / joint.sum())
  return marginals, pairs


def _max_z(frequencies, probs, num_draws):
  """Largest |frequency - p| in binomial standard errors."""
  se = np.sqrt(np.maximum(probs * (1 - probs), 1e-300) / num_draws)
  return float(np.max(np.abs(frequencies - probs) / se))


def test_long_float32_ring_matches_float64_marginals():
  """d = 2000 in float32, with far-tail observations: marginals and neighbour pairs."""
  ring_ = _long_ring()
  rng = np.random.default_rng(SEED + 2)
  x = np.full((2, LONG_D), np.nan)            # row 0 unconditioned
  observed = rng.uniform(size=LONG_D) < 0.3
  x[1, observed] = rng.normal(size=observed.sum())
  x[1, 5], x[1, 700] = 50.0, -50.0
  x = x.astype(np.float32)
  s = _sample_components(ref.to_params(ring_, jnp.float32), jax.random.key(7),
                         (LONG_DRAWS,), jnp.asarray(x))
  assert s.shape == (LONG_DRAWS, 2, LONG_D)
  for row in range(2):
    marginals, pairs = _transfer_marginals(ring_, x[row].astype(np.float64))
    frequencies = np.mean(s[:, row, :, None] == np.arange(LONG_K), axis=0)
    assert _max_z(frequencies, marginals, LONG_DRAWS) < 6.0, row
    for (a, b), pair in zip(PAIRS, pairs):
      counts = np.zeros((LONG_K, LONG_K))
      np.add.at(counts, (s[:, row, a], s[:, row, b]), 1)
      assert _max_z(counts / LONG_DRAWS, pair, LONG_DRAWS) < 5.0, (row, a, b)
