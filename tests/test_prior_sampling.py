"""Sampling tests of tripjax.prior against the brute-force reference.

Frequencies of 200k draws are compared with the exact (conditional) joint by
total variation; continuous values by moments (within a few standard errors)
and Kolmogorov-Smirnov statistics. All seeds are fixed.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import prior_reference as ref
import tripjax.prior as trip

C, D = ref.CONTINUOUS, ref.DISCRETE
SEED = 4321
NUM_DRAWS = 200_000
TV_LIMIT = 0.01
KS_LIMIT = 2.2 / np.sqrt(NUM_DRAWS)  # ~ p = 1e-4 for one KS test.
NUM_SE = 5.0


@functools.lru_cache(maxsize=None)
def _ring(zeros=False):
  """A mixed ring of 24 nodes; continuous means far apart (8 sigma)."""
  rng = np.random.default_rng(SEED + int(zeros))
  ring = ref.random_ring(rng, (C, D, C, D), (3, 2, 2, 2), 2,
                         zero_fraction=0.3 if zeros else 0.0)
  means, scales = ring.means.copy(), ring.scales.copy()
  means[0, :3] = [-8.0, 0.0, 8.0]
  means[2, :2] = [-4.0, 4.0]
  scales[0, :3] = [0.5, 1.0, 0.7]
  scales[2, :2] = [0.6, 0.4]
  return ref.Ring(ring.kinds, ring.num_components, ring.cores, means, scales)


def _node_index(ring, s):
  return np.ravel_multi_index(tuple(np.asarray(s).reshape(-1, ring.n).T),
                              ring.num_components)


def _total_variation(ring, s, probs):
  counts = np.bincount(_node_index(ring, s), minlength=len(probs))
  return 0.5 * np.abs(counts / counts.sum() - probs).sum()


def _components_from_values(ring, values):
  """Recovers s from values (means are many sigmas apart)."""
  values = np.asarray(values, np.float64).reshape(-1, ring.n)
  s = np.empty(values.shape, np.int64)
  for j in range(ring.n):
    if ring.kinds[j] == D:
      s[:, j] = values[:, j].astype(np.int64)
    else:
      mus = ring.means[j, :ring.num_components[j]]
      s[:, j] = np.argmin(np.abs(values[:, j:j + 1] - mus), axis=1)
  return s


def _check_continuous_moments(ring, values, probs, columns, others=None):
  """Moments/KS of continuous `columns`; cross moments with `others`."""
  others = range(ring.n) if others is None else others
  mean, var = ref.value_moments(ring, probs)
  for j in columns:
    v = values[:, j]
    n = len(v)
    se_mean = np.sqrt(var[j] / n)
    assert abs(v.mean() - mean[j]) < NUM_SE * se_mean, (j, v.mean(), mean[j])
    fourth = np.mean((v - v.mean()) ** 4)
    se_var = np.sqrt(max(fourth - v.var() ** 2, 1e-12) / n)
    assert abs(v.var() - var[j]) < NUM_SE * se_var, (j, v.var(), var[j])
    ks = stats.kstest(v, ref.mixture_cdf(ring, probs, j)).statistic
    assert ks < KS_LIMIT, (j, ks)
  for a in columns:
    for b in others:
      if b == a:
        continue
      prod = values[:, a] * values[:, b]
      expected = ref.cross_moment(ring, probs, a, b)
      se = prod.std() / np.sqrt(len(prod))
      assert abs(prod.mean() - expected) < NUM_SE * se + 1e-9, (a, b)


@pytest.mark.parametrize("shape", [(), (2, 3)])
def test_sample_shapes_and_values(shape):
  ring = _ring()
  params = ref.to_params(ring)
  x = trip.sample(params, jax.random.key(0), shape)
  assert x.shape == shape + (ring.n,) and x.dtype == jnp.float32
  s = trip.sample_components(params, jax.random.key(0), shape)
  assert s.shape == shape + (ring.n,)
  assert jnp.issubdtype(s.dtype, jnp.integer)
  s = np.asarray(s).reshape(-1, ring.n)
  assert np.all(s >= 0) and np.all(s < np.array(ring.num_components))
  x = np.asarray(x).reshape(-1, ring.n)
  assert np.all(np.isfinite(x))
  for j in (1, 3):
    assert np.all(x[:, j] == np.round(x[:, j]))
    assert np.all((x[:, j] >= 0) & (x[:, j] < ring.num_components[j]))


def test_sample_float64(x64):
  del x64
  ring = _ring()
  x = trip.sample(ref.to_params(ring, jnp.float64), jax.random.key(0), (7,))
  assert x.dtype == jnp.float64 and x.shape == (7, ring.n)
  assert np.all(np.isfinite(np.asarray(x)))


def test_sample_is_deterministic_in_key_and_jittable():
  params = ref.to_params(_ring())
  a = trip.sample(params, jax.random.key(5), (4,))
  b = trip.sample(params, jax.random.key(5), (4,))
  c = trip.sample(params, jax.random.key(6), (4,))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.array_equal(np.asarray(a), np.asarray(c))
  jitted = jax.jit(trip.sample, static_argnums=2)(params, jax.random.key(5),
                                                  (4,))
  np.testing.assert_array_equal(np.asarray(jitted), np.asarray(a))


@pytest.mark.parametrize("zeros", [False, True])
def test_component_frequencies_match_joint(zeros):
  ring = _ring(zeros)
  probs = ref.prior_node_probabilities(ring)
  s = trip.sample_components(ref.to_params(ring), jax.random.key(11),
                             (NUM_DRAWS,))
  s = np.asarray(s)
  assert s.shape == (NUM_DRAWS, ring.n)
  counts = np.bincount(_node_index(ring, s), minlength=len(probs))
  assert np.all(counts[probs == 0] == 0), "impossible node sampled"
  assert _total_variation(ring, s, probs) < TV_LIMIT


def test_value_samples_match_joint():
  ring = _ring()
  probs = ref.prior_node_probabilities(ring)
  x = np.asarray(trip.sample(ref.to_params(ring), jax.random.key(12),
                             (NUM_DRAWS,)), np.float64)
  assert _total_variation(ring, _components_from_values(ring, x),
                          probs) < TV_LIMIT
  _check_continuous_moments(ring, x, probs, columns=(0, 2))


# Given vectors: continuous observed, discrete observed, both, none, all.
GIVENS = {
    "z0": [1.3, np.nan, np.nan, np.nan],
    "x1": [np.nan, 1.0, np.nan, np.nan],
    "z2_x3": [np.nan, np.nan, -0.5, 0.0],
    "z0_x1_z2": [-7.0, 0.0, 3.0, np.nan],
}


@pytest.mark.parametrize("given_name", list(GIVENS))
def test_conditional_components_match_brute_force(given_name):
  ring = _ring(zeros=given_name == "z2_x3")
  given = np.array(GIVENS[given_name])
  probs = ref.conditional_node_probabilities(ring, given)
  s = np.asarray(trip.sample_components(
      ref.to_params(ring), jax.random.key(21), (NUM_DRAWS,),
      given=jnp.asarray(given, jnp.float32)))
  assert s.shape == (NUM_DRAWS, ring.n)
  for j in (1, 3):
    if not np.isnan(given[j]):
      assert np.all(s[:, j] == int(given[j]))
  assert _total_variation(ring, s, probs) < TV_LIMIT


@pytest.mark.parametrize("given_name", ["z0", "z0_x1_z2", "z2_x3"])
def test_conditional_values_match_brute_force(given_name):
  ring = _ring()
  given = np.array(GIVENS[given_name])
  probs = ref.conditional_node_probabilities(ring, given)
  x = trip.sample(ref.to_params(ring), jax.random.key(22), (NUM_DRAWS,),
                  given=jnp.asarray(given, jnp.float32))
  x = np.asarray(x)
  assert x.shape == (NUM_DRAWS, ring.n)
  seen = ~np.isnan(given)
  np.testing.assert_array_equal(
      x[:, seen], np.broadcast_to(given[seen].astype(np.float32),
                                  (NUM_DRAWS, seen.sum())))
  x = x.astype(np.float64)
  missing = [j for j in range(ring.n) if not seen[j]]
  # Joint of the missing components (recovered from values) vs exact.
  s = _components_from_values(ring, np.where(seen, 0.0, x))
  nodes = ref.lattice(ring.num_components)
  marg = {}
  for node, p in zip(nodes, probs):
    key = tuple(node[missing])
    marg[key] = marg.get(key, 0.0) + p
  keys, counts = np.unique(s[:, missing], axis=0, return_counts=True)
  freq = {tuple(k): c / NUM_DRAWS for k, c in zip(keys, counts)}
  tv = 0.5 * sum(abs(freq.get(k, 0.0) - marg.get(k, 0.0))
                 for k in set(freq) | set(marg))
  assert tv < TV_LIMIT
  _check_continuous_moments(
      ring, x, probs, columns=[j for j in missing if ring.kinds[j] == C],
      others=missing)


def test_batched_given_and_observed_mask():
  ring = _ring()
  names = ["z0", "x1", "z0_x1_z2"]
  given = np.array([GIVENS[n] for n in names] + [[0.5, 1.0, -4.0, 1.0]] +
                   [[np.nan] * 4])
  observed = ~np.isnan(given)
  junk = np.where(observed, given, 123.0).astype(np.float32)
  params = ref.to_params(ring)
  num = NUM_DRAWS // 2
  s = np.asarray(trip.sample_components(params, jax.random.key(31), (num,),
                                        given=jnp.asarray(junk),
                                        observed=jnp.asarray(observed)))
  assert s.shape == (num, len(given), ring.n)
  x = np.asarray(trip.sample(params, jax.random.key(32), (2, 3),
                             given=jnp.asarray(junk),
                             observed=jnp.asarray(observed)))
  assert x.shape == (2, 3, len(given), ring.n)
  np.testing.assert_array_equal(
      x[..., observed], np.broadcast_to(junk[observed], x[..., observed].shape))
  assert not np.any(x[..., ~observed] == 123.0), "unobserved junk leaked"
  for b in range(len(given)):
    probs = ref.conditional_node_probabilities(ring, given[b])
    # Half the draws: allow sqrt(2) more TV.
    assert _total_variation(ring, s[:, b], probs) < TV_LIMIT * 1.5, b
