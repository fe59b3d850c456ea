"""Numerical stability of tripjax.prior: long rings, far tails, zero events."""
import jax
import jax.numpy as jnp
import numpy as np
import prior_reference as ref
import pytest

import tripjax.prior as trip

C, D = ref.CONTINUOUS, ref.DISCRETE
SEED = 777


def _long_ring(num_vars=2000, num_components=3, rank=4):
  rng = np.random.default_rng(SEED)
  cores = rng.uniform(0.2, 1.0, size=(num_vars, num_components, rank, rank))
  means = rng.uniform(-1, 1, size=(num_vars, num_components))
  scales = rng.uniform(0.3, 1.0, size=(num_vars, num_components))
  return ref.Ring((C,) * num_vars, (num_components,) * num_vars, cores, means,
                  scales)


def test_d2000_float32_matches_float64(x64):
  del x64
  ring = _long_ring()
  rng = np.random.default_rng(SEED + 1)
  x = rng.normal(size=(4, ring.n))
  x[1, rng.uniform(size=ring.n) < 0.5] = np.nan
  x[2, :] = np.nan
  x[2, :3] = [0.1, -0.2, 0.3]
  x = x.astype(np.float32).astype(np.float64)
  expected = ref.transfer_matrix_log_prob(ring, x)
  lp64 = np.asarray(trip.log_prob(ref.to_params(ring, jnp.float64), x))
  np.testing.assert_allclose(lp64, expected, rtol=1e-9)
  params32 = ref.to_params(ring, jnp.float32)
  lp32 = trip.log_prob(params32, jnp.asarray(x, jnp.float32))
  assert lp32.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(lp32, np.float64), expected, rtol=1e-5)
  # README: "d = 2000 agrees with float64 to ~1e-7 relative" (measured 3e-9 to 4e-8 on
  # the rows with hundreds or thousands of observed variables; the row with 3 observed
  # has log p = -3.2 and 2.4e-5 nats of error).
  many_observed = [0, 1, 3]
  np.testing.assert_allclose(np.asarray(lp32, np.float64)[many_observed],
                             expected[many_observed], rtol=1e-6)
  post32 = trip.posterior_weights(params32, jnp.asarray(x[:2], jnp.float32))
  post64 = trip.posterior_weights(ref.to_params(ring, jnp.float64), x[:2])
  np.testing.assert_allclose(np.asarray(post32, np.float64),
                             np.asarray(post64), atol=1e-4)
  grads = jax.grad(lambda p: trip.log_prob(p, jnp.asarray(x, jnp.float32)).sum())(
      params32)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(np.asarray(leaf)))


def _tail_ring():
  rng = np.random.default_rng(SEED + 2)
  ring = ref.random_ring(rng, (C, D, C, C), (3, 2, 2, 1), 2)
  scales = ring.scales.copy()
  scales[0, :3] = [0.05, 0.3, 1.0]
  scales[2, :2] = [0.1, 0.2]
  scales[3, 0] = 0.05
  return ref.Ring(ring.kinds, ring.num_components, ring.cores, ring.means,
                  scales)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_far_tails_stay_finite(dtype_name, request):
  if dtype_name == "float64":
    request.getfixturevalue("x64")
  dtype = jnp.dtype(dtype_name)
  ring = _tail_ring()
  x = np.array([[50.0, 1.0, -50.0, 50.0],
                [-50.0, 0.0, 50.0, np.nan],
                [50.0, np.nan, np.nan, np.nan],
                [-50.0, 1.0, 0.3, -50.0]])
  params = ref.to_params(ring, dtype)
  lp = np.asarray(trip.log_prob(params, jnp.asarray(x, dtype)), np.float64)
  assert np.all(np.isfinite(lp)), lp
  np.testing.assert_allclose(lp, ref.log_prob(ring, x), rtol=1e-5)
  post = np.asarray(trip.posterior_weights(params, jnp.asarray(x, dtype)),
                    np.float64)
  assert np.all(np.isfinite(post))
  np.testing.assert_allclose(post, ref.posterior_weights(ring, x), atol=1e-4)
  if dtype == jnp.float64:
    return
  g_params, g_x = jax.grad(lambda p, v: trip.log_prob(p, v).sum(),
                           argnums=(0, 1))(params, jnp.asarray(x, dtype))
  for leaf in jax.tree.leaves(g_params):
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert np.all(np.isfinite(np.asarray(g_x)))


def _zero_ring():
  """(D, D, C) ring where (x_0, x_1) = (0, 1) is impossible."""
  rng = np.random.default_rng(SEED + 3)
  cores = rng.uniform(0.2, 1.0, size=(3, 2, 2, 2))
  cores[0, 0] = np.diag([1.0, 0.0])
  cores[1, 1] = np.diag([0.0, 1.0])
  return ref.Ring((D, D, C), (2, 2, 2), cores,
                  np.array([[0.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]),
                  np.array([[1.0, 1.0], [1.0, 1.0], [0.5, 0.8]]))


ZERO_X = np.array([
    [0.0, 1.0, 0.3],      # impossible combination (exact zero cores)
    [0.0, 1.0, np.nan],   # impossible, continuous missing
    [2.0, 0.0, 0.3],      # out of range
    [-1.0, 0.0, 0.3],     # negative
    [0.5, 0.0, 0.3],      # non-integer
    [1.0, 1e9, np.nan],   # far out of range
    [np.inf, 0.0, 0.3],   # infinite discrete value
    [0.0, 0.0, 0.3],      # possible
    [1.0, 1.0, -0.3],     # possible
    [0.0, np.nan, 0.3],   # possible, marginal
])
ZERO_IMPOSSIBLE = np.array([True] * 7 + [False] * 3)


@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_zero_probability_events_are_minus_inf(dtype_name, request):
  if dtype_name == "float64":
    request.getfixturevalue("x64")
  dtype = jnp.dtype(dtype_name)
  ring = _zero_ring()
  params = ref.to_params(ring, dtype)
  x = jnp.asarray(ZERO_X, dtype)
  expected = ref.log_prob(ring, ZERO_X)
  assert np.all(np.isneginf(expected[ZERO_IMPOSSIBLE]))
  fns = [trip.log_prob] + ([jax.jit(trip.log_prob)] if dtype == jnp.float32
                           else [])
  for fn in fns:
    lp = np.asarray(fn(params, x), np.float64)
    assert not np.any(np.isnan(lp)), lp
    assert np.all(np.isneginf(lp[ZERO_IMPOSSIBLE])), lp
    np.testing.assert_allclose(lp[~ZERO_IMPOSSIBLE],
                               expected[~ZERO_IMPOSSIBLE], atol=1e-4)
  post = np.asarray(trip.posterior_weights(params, x[~ZERO_IMPOSSIBLE]))
  np.testing.assert_allclose(
      post, ref.posterior_weights(ring, ZERO_X[~ZERO_IMPOSSIBLE]), atol=1e-5)


def test_out_of_range_into_padding_is_minus_inf(x64):
  """A discrete value that indexes a padded component is impossible."""
  del x64
  rng = np.random.default_rng(SEED + 4)
  ring = ref.random_ring(rng, (D, C), (2, 3), 2)
  params = ref.to_params(ring, jnp.float64)
  x = np.array([[2.0, 0.0], [1.0, 0.0]])
  lp = np.asarray(trip.log_prob(params, x))
  assert np.isneginf(lp[0]) and np.isfinite(lp[1])


def test_grads_finite_where_log_prob_finite_with_zero_cores(x64):
  del x64
  ring = _zero_ring()
  params = ref.to_params(ring, jnp.float64)
  x = jnp.asarray(ZERO_X[~ZERO_IMPOSSIBLE])
  g_params, g_x = jax.grad(lambda p, v: trip.log_prob(p, v).sum(),
                           argnums=(0, 1))(params, x)
  for leaf in jax.tree.leaves(g_params):
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert np.all(np.isfinite(np.asarray(g_x)))


def test_masked_impossible_rows_keep_grads_finite():
  """A -inf row masked out of the loss must not poison the gradient."""
  ring = _zero_ring()
  params = ref.to_params(ring, jnp.float32)
  x = jnp.asarray(ZERO_X, jnp.float32)

  def loss(p):
    lp = trip.log_prob(p, x)
    return jnp.sum(jnp.where(jnp.isfinite(lp), lp, 0.0))

  grads = jax.grad(loss)(params)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(np.asarray(leaf))), leaf
