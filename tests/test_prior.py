"""Tests of tripjax.prior against a brute-force float64 reference.

The reference (tests/prior_reference.py) enumerates every lattice node of
small mixed rings; see also test_prior_sampling.py, test_prior_numerics.py
and test_prior_refit.py.
"""
import functools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special, stats

import prior_reference as ref
import tripjax.prior as trip

C, D = ref.CONTINUOUS, ref.DISCRETE
SEED = 1234

# name -> (kinds, num_components, rank, fraction of exact-zero core entries)
RINGS = {
    "cdc_r2": ((C, D, C), (3, 2, 2), 2, 0.0),
    "dddd_r3": ((D, D, D, D), (2, 3, 2, 3), 3, 0.0),
    "cdcdc_r3": ((C, D, C, D, C), (2, 2, 3, 3, 2), 3, 0.0),
    "dccd_k1_r2": ((D, C, C, D), (3, 1, 3, 2), 2, 0.0),
    "cdcd_zeros_r2": ((C, D, C, D), (2, 3, 2, 2), 2, 0.3),
}
RING_NAMES = list(RINGS)


def _case(name):
  """A ring and a batch x (numpy float64) with random missing entries."""
  ring, x = _cached_case(name)
  return ring, x.copy()


@functools.lru_cache(maxsize=None)
def _cached_case(name, batch=24, missing_rate=0.35):
  kinds, ks, rank, zero_fraction = RINGS[name]
  rng = np.random.default_rng(SEED + RING_NAMES.index(name))
  ring = ref.random_ring(rng, kinds, ks, rank, zero_fraction=zero_fraction)
  _, x = ref.sample_nodes(ring, rng, batch)
  x[rng.uniform(size=x.shape) < missing_rate] = np.nan
  # Every missing subset of one full point (incl. all missing, all observed).
  full = ref.sample_nodes(ring, rng, 1)[1][0]
  masks = np.array(np.meshgrid(*[[0, 1]] * ring.n)).reshape(ring.n, -1).T
  subsets = np.where(masks.astype(bool), full, np.nan)
  return ring, np.concatenate([x, subsets], 0)


def _tolerance(dtype):
  return 1e-4 if dtype == jnp.float64 else 2e-3


# ---------------------------------------------------------------------------
# log_prob, marginals and posterior weights against brute force.
# ---------------------------------------------------------------------------


BRUTE_FORCE_CASES = ([(name, "float64") for name in RING_NAMES] +
                     [(name, "float32") for name in
                      ("cdcdc_r3", "cdcd_zeros_r2")])


@pytest.mark.parametrize("name,dtype_name", BRUTE_FORCE_CASES)
def test_matches_brute_force(name, dtype_name, request):
  """log_prob (every missing subset incl. all missing) and posterior_weights."""
  if dtype_name == "float64":
    request.getfixturevalue("x64")
  dtype = jnp.dtype(dtype_name)
  ring, x = _case(name)
  params = ref.to_params(ring, dtype)
  x = np.asarray(np.asarray(x, dtype), np.float64)
  got = trip.log_prob(params, jnp.asarray(x, dtype))
  assert got.shape == (x.shape[0],)
  assert got.dtype == dtype
  got = np.asarray(got, np.float64)
  np.testing.assert_allclose(got, ref.log_prob(ring, x),
                             atol=_tolerance(dtype), rtol=0)
  all_missing = np.all(np.isnan(x), axis=1)
  assert all_missing.sum() >= 1
  np.testing.assert_allclose(got[all_missing], 0.0, atol=1e-6)
  if dtype == jnp.float64:  # No epsilon fudge: exact to round-off.
    np.testing.assert_allclose(got, ref.log_prob(ring, x), atol=1e-9,
                               rtol=1e-9)

  post = trip.posterior_weights(params, jnp.asarray(x, dtype))
  assert post.shape == (x.shape[0], ring.n, ring.kmax)
  assert post.dtype == dtype
  post = np.asarray(post, np.float64)
  np.testing.assert_allclose(post, ref.posterior_weights(ring, x),
                             atol=1e-6 if dtype == jnp.float64 else 1e-4)
  for j, k in enumerate(ring.num_components):
    assert np.all(post[:, j, k:] == 0), "padded components must be exactly 0"
    if ring.kinds[j] == D:
      seen = ~np.isnan(x[:, j])
      onehot = np.eye(ring.kmax)[x[seen, j].astype(int)]
      np.testing.assert_array_equal(post[seen, j], onehot)


@pytest.mark.parametrize("name", ["cdc_r2", "dccd_k1_r2", "cdcd_zeros_r2"])
def test_observed_mask_equals_nan(name, x64):
  """observed=False marginalizes, whatever finite value x holds there."""
  del x64
  ring, x = _case(name)
  rng = np.random.default_rng(SEED)
  observed = ~np.isnan(x)
  junk = np.where(observed, x, rng.normal(size=x.shape) * 3)
  params = ref.to_params(ring, jnp.float64)
  expected = ref.log_prob(ring, x)
  np.testing.assert_allclose(
      np.asarray(trip.log_prob(params, junk, observed=observed)), expected,
      atol=1e-4)
  np.testing.assert_allclose(
      np.asarray(trip.posterior_weights(params, junk, observed=observed)),
      ref.posterior_weights(ring, x), atol=1e-6)
  # NaN with observed=True is still missing.
  np.testing.assert_allclose(
      np.asarray(trip.log_prob(params, x, observed=np.ones_like(observed))),
      expected, atol=1e-4)


# ---------------------------------------------------------------------------
# Normalization.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dddd_r3", "cdcd_zeros_r2"])
def test_discrete_ring_sums_to_one(name, x64):
  del x64
  ring, _ = _case(name)
  discrete = [j for j in range(ring.n) if ring.kinds[j] == D]
  ks = [ring.num_components[j] for j in discrete]
  values = np.full((int(np.prod(ks)), ring.n), np.nan)
  values[:, discrete] = ref.lattice(ks)
  # Sub-marginal: the first discrete variable missing.
  sub = np.full((int(np.prod(ks[1:])), ring.n), np.nan)
  sub[:, discrete[1:]] = ref.lattice(ks[1:])
  params = ref.to_params(ring, jnp.float64)
  lp = np.asarray(trip.log_prob(params, np.concatenate([values, sub])))
  assert not np.any(np.isnan(lp))
  lp_full, lp_sub = lp[:len(values)], lp[len(values):]
  np.testing.assert_allclose(special.logsumexp(lp_full), 0.0, atol=1e-6)
  np.testing.assert_allclose(special.logsumexp(lp_sub), 0.0, atol=1e-6)
  np.testing.assert_allclose(lp_full, ref.log_prob(ring, values), atol=1e-4)


def _trapezoid_weights(grid):
  w = np.full(grid.shape, grid[1] - grid[0])
  w[0] = w[-1] = w[0] / 2
  return w


def test_continuous_1d_integrates_to_one(x64):
  del x64
  rng = np.random.default_rng(SEED + 100)
  ring = ref.random_ring(rng, (C,), (3,), 2)
  grid = np.linspace(-12, 12, 9601)
  params = ref.to_params(ring, jnp.float64)
  density = np.exp(np.asarray(trip.log_prob(params, grid[:, None])))
  np.testing.assert_allclose(density @ _trapezoid_weights(grid), 1.0,
                             atol=1e-6)


def test_continuous_2d_integrates_to_one_and_marginalizes(x64):
  del x64
  rng = np.random.default_rng(SEED + 101)
  ring = ref.random_ring(rng, (C, C), (2, 3), 3)
  grid = np.linspace(-10, 10, 801)
  w = _trapezoid_weights(grid)
  z1, z2 = np.meshgrid(grid, grid, indexing="ij")
  points = np.stack([z1.ravel(), z2.ravel()], -1)
  # Integrating z2 out numerically equals marginalizing it (NaN).
  marginal_points = np.stack([grid, np.full_like(grid, np.nan)], -1)
  params = ref.to_params(ring, jnp.float64)
  lp = np.asarray(trip.log_prob(params,
                                np.concatenate([points, marginal_points])))
  density = np.exp(lp[:len(points)]).reshape(z1.shape)
  marginal = np.exp(lp[len(points):])
  np.testing.assert_allclose(w @ density @ w, 1.0, atol=1e-5)
  np.testing.assert_allclose(density @ w, marginal, atol=1e-6)


def test_mixed_ring_normalizes(x64):
  del x64
  rng = np.random.default_rng(SEED + 102)
  ring = ref.random_ring(rng, (D, C), (3, 2), 2)
  grid = np.linspace(-10, 10, 4001)
  points = np.stack([np.repeat(np.arange(3.0), len(grid)),
                     np.tile(grid, 3)], -1)
  cat_only = np.stack([np.arange(3.0), np.full(3, np.nan)], -1)
  params = ref.to_params(ring, jnp.float64)
  lp = np.asarray(trip.log_prob(params, np.concatenate([points, cat_only])))
  density = np.exp(lp[:len(points)]).reshape(3, -1)
  per_category = density @ _trapezoid_weights(grid)
  np.testing.assert_allclose(per_category.sum(), 1.0, atol=1e-6)
  np.testing.assert_allclose(per_category, np.exp(lp[len(points):]),
                             atol=1e-6)


# ---------------------------------------------------------------------------
# Structural properties.
# ---------------------------------------------------------------------------


def _factorized_gmm_log_prob(cores, means, scales, kinds, ks, x):
  """Sum over variables of independent 1-D mixture log-densities."""
  total = np.zeros(x.shape[0])
  for j, (kind, num) in enumerate(zip(kinds, ks)):
    w = cores[j, :num, 0, 0] / cores[j, :num, 0, 0].sum()
    for b in range(x.shape[0]):
      if np.isnan(x[b, j]):
        continue
      if kind == C:
        total[b] += special.logsumexp(
            np.log(w) + stats.norm.logpdf(x[b, j], means[j, :num],
                                          scales[j, :num]))
      else:
        total[b] += np.log(w[int(x[b, j])])
  return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_one_is_factorized_gmm(seed, x64):
  del x64
  kinds, ks = (C, D, C, C), (3, 2, 1, 2)
  variables = [trip.Continuous(k) if kind == C else trip.Discrete(k)
               for kind, k in zip(kinds, ks)]
  params = trip.init(jax.random.key(seed), variables, rank=1,
                     dtype=jnp.float64)
  nat = trip.natural(params)
  cores, means, scales = (np.asarray(a) for a in nat)
  assert cores.shape == (4, 3, 1, 1)
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(25, 4)) * 1.5
  x[:, 1] = rng.integers(0, 2, size=25)
  x[rng.uniform(size=x.shape) < 0.3] = np.nan
  expected = _factorized_gmm_log_prob(cores, means, scales, kinds, ks, x)
  np.testing.assert_allclose(np.asarray(trip.log_prob(params, x)), expected,
                             atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", ["cdcdc_r3"])
def test_cyclic_shift_and_reversal_invariance(name, x64):
  """Tr is cyclic, and Tr(A B C) = Tr(C^T B^T A^T)."""
  del x64
  ring, x = _case(name)
  params = ref.to_params(ring, jnp.float64)
  base = np.asarray(trip.log_prob(params, x))
  for shift in (1, 3):
    rolled = ref.Ring(tuple(np.roll(ring.kinds, shift)),
                      tuple(np.roll(ring.num_components, shift)),
                      np.roll(ring.cores, shift, 0),
                      np.roll(ring.means, shift, 0),
                      np.roll(ring.scales, shift, 0))
    got = trip.log_prob(ref.to_params(rolled, jnp.float64),
                        np.roll(x, shift, 1))
    np.testing.assert_allclose(np.asarray(got), base, atol=1e-9)
  reversed_ring = ref.Ring(ring.kinds[::-1], ring.num_components[::-1],
                           np.swapaxes(ring.cores[::-1], -1, -2),
                           ring.means[::-1], ring.scales[::-1])
  got = trip.log_prob(ref.to_params(reversed_ring, jnp.float64), x[:, ::-1])
  np.testing.assert_allclose(np.asarray(got), base, atol=1e-9)


def test_padded_entries_are_ignored(x64):
  del x64
  ring, x = _case("dccd_k1_r2")
  other = ref.Ring(ring.kinds, ring.num_components, ring.cores.copy(),
                   ring.means.copy(), ring.scales.copy())
  for j, k in enumerate(ring.num_components):
    other.cores[j, k:] = 5.0
    other.means[j, k:] = -3.0
    other.scales[j, k:] = 2.0
  a, b = ref.to_params(ring, jnp.float64), ref.to_params(other, jnp.float64)
  np.testing.assert_allclose(np.asarray(trip.log_prob(b, x)),
                             np.asarray(trip.log_prob(a, x)), atol=1e-12)
  np.testing.assert_allclose(np.asarray(trip.posterior_weights(b, x)),
                             np.asarray(trip.posterior_weights(a, x)),
                             atol=1e-12)
  cores = np.asarray(trip.natural(b).cores)
  for j, k in enumerate(ring.num_components):
    assert np.all(cores[j, k:] == 0)


def test_natural_roundtrip_with_exact_zeros(x64):
  del x64
  ring, _ = _case("cdcd_zeros_r2")
  assert np.any(ring.cores[:, :2] == 0)
  nat = trip.natural(ref.to_params(ring, jnp.float64))
  assert isinstance(nat, tuple) and hasattr(nat, "_fields")
  np.testing.assert_allclose(np.asarray(nat.cores), ring.cores, rtol=1e-12,
                             atol=0)
  assert np.all(np.asarray(nat.cores)[ring.cores == 0] == 0)
  for j, (kind, k) in enumerate(zip(ring.kinds, ring.num_components)):
    if kind == C:
      np.testing.assert_allclose(np.asarray(nat.means)[j, :k],
                                 ring.means[j, :k], rtol=1e-12)
      np.testing.assert_allclose(np.asarray(nat.scales)[j, :k],
                                 ring.scales[j, :k], rtol=1e-12)


@pytest.mark.parametrize("rank,dtype_name", [(1, "float32"), (3, "float64")])
def test_init_structure(rank, dtype_name, request):
  if dtype_name == "float64":
    request.getfixturevalue("x64")
  dtype = jnp.dtype(dtype_name)
  variables = [trip.Continuous(3), trip.Discrete(2), trip.Continuous(1),
               trip.Discrete(4)]
  params = trip.init(jax.random.key(0), variables, rank=rank, dtype=dtype)
  assert isinstance(params, trip.TRIPParams)
  leaves = jax.tree.leaves(params)
  assert leaves
  for leaf in leaves:
    assert isinstance(leaf, jax.Array) and leaf.dtype == dtype, leaf
  cores, means, scales = trip.natural(params)
  assert cores.shape == (4, 4, rank, rank)
  assert means.shape == scales.shape == (4, 4)
  assert cores.dtype == means.dtype == scales.dtype == dtype
  cores = np.asarray(cores)
  assert np.all(cores >= 0)
  for j, k in enumerate([3, 2, 1, 4]):
    assert np.all(cores[j, k:] == 0)
    assert np.all(cores[j, :k].sum(0) > 0)
  for j, k in ((0, 3), (2, 1)):  # Continuous variables.
    assert np.all(np.abs(np.asarray(means)[j, :k]) <= 1.0)
    assert np.all(np.asarray(scales)[j, :k] > 0)
  # Deterministic in the key; different keys differ.
  again = trip.init(jax.random.key(0), variables, rank=rank, dtype=dtype)
  jax.tree.map(np.testing.assert_array_equal, params, again)
  other = trip.init(jax.random.key(1), variables, rank=rank, dtype=dtype)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(params), jax.tree.leaves(other)))
  # tree.map keeps the type and static metadata.
  doubled = jax.tree.map(lambda a: a * 1, params)
  assert isinstance(doubled, trip.TRIPParams)
  np.testing.assert_array_equal(np.asarray(trip.natural(doubled).cores), cores)


# ---------------------------------------------------------------------------
# Transformations: jit, vmap, grad, batch dims, optax.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
def test_batch_dims(batch_shape):
  ring, x = _case("cdc_r2")
  params = ref.to_params(ring, jnp.float32)
  size = int(np.prod(batch_shape, dtype=int))
  flat = jnp.asarray(x[:size], jnp.float32)
  xb = flat.reshape(batch_shape + (ring.n,))
  lp = trip.log_prob(params, xb)
  assert lp.shape == batch_shape and lp.dtype == jnp.float32
  expected = ref.log_prob(ring, np.asarray(flat, np.float64))
  np.testing.assert_allclose(np.asarray(lp).reshape(-1), expected, atol=2e-3)
  if len(batch_shape) == 2:
    post = trip.posterior_weights(params, xb)
    assert post.shape == batch_shape + (ring.n, ring.kmax)
    np.testing.assert_allclose(
        np.asarray(post).reshape(size, ring.n, ring.kmax),
        ref.posterior_weights(ring, np.asarray(flat, np.float64)), atol=1e-4)
    observed = ~jnp.isnan(xb)
    lp_obs = trip.log_prob(params, jnp.nan_to_num(xb), observed)
    np.testing.assert_allclose(np.asarray(lp_obs), np.asarray(lp), rtol=1e-6,
                               atol=1e-6)


def test_jit_and_vmap_over_x():
  ring, x = _case("cdcdc_r3")
  params = ref.to_params(ring, jnp.float32)
  x = jnp.asarray(x, jnp.float32)
  expected = ref.log_prob(ring, np.asarray(x, np.float64))
  jitted = jax.jit(trip.log_prob)(params, x)
  np.testing.assert_allclose(np.asarray(jitted), expected, atol=2e-3)
  per_row = jax.vmap(trip.log_prob, in_axes=(None, 0))(params, x)
  np.testing.assert_allclose(np.asarray(per_row), expected, atol=2e-3)


def test_vmap_over_params(x64):
  del x64
  variables = [trip.Continuous(2), trip.Discrete(3), trip.Continuous(3)]
  keys = jax.random.split(jax.random.key(7), 3)
  plist = [trip.init(k, variables, rank=2, dtype=jnp.float64) for k in keys]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *plist)
  x = jnp.array([[0.3, 1.0, jnp.nan], [jnp.nan, 2.0, -0.5]])
  got = jax.jit(jax.vmap(trip.log_prob, in_axes=(0, None)))(stacked, x)
  expected = np.stack([np.asarray(trip.log_prob(p, x)) for p in plist])
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10)


def _random_like(tree, seed):
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(treedef, [
      jnp.asarray(rng.normal(size=leaf.shape), leaf.dtype) for leaf in leaves])


def _directional_check(objective, params, seed):
  grads = jax.grad(objective)(params)
  assert isinstance(grads, trip.TRIPParams)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(np.asarray(leaf)))
  direction = _random_like(params, seed)
  eps = 1e-5
  plus = objective(jax.tree.map(lambda p, v: p + eps * v, params, direction))
  minus = objective(jax.tree.map(lambda p, v: p - eps * v, params, direction))
  numeric = float(plus - minus) / (2 * eps)
  analytic = sum(float(jnp.vdot(g, v)) for g, v in
                 zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
  np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["dccd_k1_r2"])
def test_grad_log_prob_params_matches_finite_differences(name, x64):
  del x64
  ring, x = _case(name)
  params = ref.to_params(ring, jnp.float64)
  weights = jnp.asarray(np.random.default_rng(0).uniform(size=x.shape[0]))
  _directional_check(lambda p: jnp.sum(weights * trip.log_prob(p, x)),
                     params, seed=1)


def test_grad_posterior_weights_params_matches_finite_differences(x64):
  """posterior_weights must be differentiable (not silently zero-gradient)."""
  del x64
  ring, x = _case("cdc_r2")
  params = ref.to_params(ring, jnp.float64)
  weights = jnp.asarray(np.random.default_rng(0).uniform(
      size=(x.shape[0], ring.n, ring.kmax)))
  _directional_check(
      lambda p: jnp.sum(weights * trip.posterior_weights(p, x)), params, seed=2)


def test_grad_x_matches_finite_differences(x64):
  del x64
  ring, x = _case("cdcdc_r3")
  params = ref.to_params(ring, jnp.float64)
  grad = np.asarray(jax.grad(lambda v: jnp.sum(trip.log_prob(params, v)))(
      jnp.asarray(x)))
  assert np.all(np.isfinite(grad)), "grad w.r.t. x must be finite (NaN = missing)"
  missing = np.isnan(x)
  assert np.all(grad[missing] == 0), "missing entries have zero gradient"
  continuous = np.array([k == C for k in ring.kinds])
  check = ~missing & continuous[None, :]
  rows, cols = np.nonzero(check)
  eps = 1e-6
  plus, minus = x[rows].copy(), x[rows].copy()
  plus[np.arange(len(rows)), cols] += eps
  minus[np.arange(len(rows)), cols] -= eps
  lp = np.asarray(trip.log_prob(params, np.concatenate([plus, minus])))
  numeric = (lp[:len(rows)] - lp[len(rows):]) / (2 * eps)
  np.testing.assert_allclose(grad[rows, cols], numeric, rtol=1e-5, atol=1e-6)
  # Analytic: d/dz_j log p = E[-(z_j - mu) / sigma^2 | x].
  post = ref.posterior_weights(ring, x)
  analytic = (post * -(x[:, :, None] - ring.means) / ring.scales ** 2).sum(-1)
  np.testing.assert_allclose(grad[check], analytic[check], rtol=1e-7,
                             atol=1e-8)


def test_grad_with_missing_and_observed_mask_is_finite():
  ring, x = _case("cdcd_zeros_r2")
  params = ref.to_params(ring, jnp.float32)
  x = jnp.asarray(x, jnp.float32)
  observed = ~jnp.isnan(x)

  def objective(p, v):
    return jnp.sum(trip.log_prob(p, v, observed))

  g_params, g_x = jax.grad(objective, argnums=(0, 1))(params, jnp.nan_to_num(x))
  for leaf in jax.tree.leaves(g_params):
    assert np.all(np.isfinite(np.asarray(leaf)))
  assert np.all(np.isfinite(np.asarray(g_x)))
  assert np.all(np.asarray(g_x)[~np.asarray(observed)] == 0)


def test_optax_step():
  dtype = jnp.float32
  variables = [trip.Continuous(3), trip.Discrete(2), trip.Continuous(2)]
  params = trip.init(jax.random.key(3), variables, rank=2, dtype=dtype)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(64, 3))
  x[:, 1] = rng.integers(0, 2, size=64)
  x = jnp.asarray(x, dtype)
  opt = optax.adam(1e-2)
  state = opt.init(params)

  @jax.jit
  def step(p, s):
    loss, grads = jax.value_and_grad(lambda q: -trip.log_prob(q, x).mean())(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  losses = []
  for _ in range(30):
    params, state, loss = step(params, state)
    losses.append(float(loss))
  assert isinstance(params, trip.TRIPParams)
  assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(params))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


# ---------------------------------------------------------------------------
# distrax adapter.
# ---------------------------------------------------------------------------


def test_distrax_adapter():
  ring, x = _case("cdc_r2")
  params = ref.to_params(ring, jnp.float32)
  dist = trip.Distribution(params)
  assert isinstance(dist, distrax.Distribution)
  assert tuple(dist.event_shape) == (ring.n,)
  x = jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(np.asarray(dist.log_prob(x)),
                             np.asarray(trip.log_prob(params, x)), rtol=1e-6)
  samples = dist.sample(seed=jax.random.key(0), sample_shape=(5, 2))
  assert samples.shape == (5, 2, ring.n)
  assert np.all(np.isfinite(np.asarray(samples)))


# ---------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------


@pytest.fixture
def small_params():
  variables = [trip.Continuous(2), trip.Discrete(3), trip.Continuous(2)]
  return trip.init(jax.random.key(0), variables, rank=2)


@pytest.mark.parametrize("fn", ["log_prob", "posterior_weights"])
def test_bad_x_last_dim(small_params, fn):
  with pytest.raises(ValueError, match=r"(?i)(dim|shape|variables|3)"):
    getattr(trip, fn)(small_params, jnp.zeros((4, 2)))
  with pytest.raises(ValueError):
    getattr(trip, fn)(small_params, jnp.zeros((4,)))


@pytest.mark.parametrize("fn", ["log_prob", "posterior_weights"])
def test_bad_integer_x(small_params, fn):
  with pytest.raises((TypeError, ValueError), match=r"(?i)(float|dtype|int)"):
    getattr(trip, fn)(small_params, jnp.zeros((4, 3), jnp.int32))
  with pytest.raises((TypeError, ValueError), match=r"(?i)(float|dtype|int)"):
    getattr(trip, fn)(small_params, np.zeros((4, 3), np.int64))


@pytest.mark.parametrize("make", [
    lambda: trip.Continuous(0), lambda: trip.Discrete(0),
    lambda: trip.Continuous(-2), lambda: trip.Discrete(-1)])
def test_bad_num_components(make):
  with pytest.raises((ValueError, TypeError), match=r"(?i)(compon|categor|K|>= ?1|positive)"):
    trip.init(jax.random.key(0), [make(), trip.Continuous(2)], rank=2)


@pytest.mark.parametrize("rank", [0, -1])
def test_bad_rank(rank):
  with pytest.raises(ValueError, match=r"(?i)rank"):
    trip.init(jax.random.key(0), [trip.Continuous(2)], rank=rank)


def test_empty_variables():
  with pytest.raises(ValueError, match=r"(?i)(empty|variable|at least)"):
    trip.init(jax.random.key(0), [], rank=2)


def test_bad_observed_shape(small_params):
  x = jnp.zeros((4, 3))
  with pytest.raises(ValueError, match=r"(?i)(observed|shape)"):
    trip.log_prob(small_params, x, observed=jnp.ones((4, 2), bool))
  with pytest.raises(ValueError, match=r"(?i)(observed|shape)"):
    trip.posterior_weights(small_params, x, observed=jnp.ones((5, 3), bool))


def test_bad_given_and_observed_shape_in_sample(small_params):
  key = jax.random.key(0)
  with pytest.raises(ValueError, match=r"(?i)(given|shape|dim)"):
    trip.sample(small_params, key, (2,), given=jnp.zeros((4, 2)))
  with pytest.raises(ValueError, match=r"(?i)(observed|shape)"):
    trip.sample(small_params, key, (2,), given=jnp.zeros((4, 3)),
                observed=jnp.ones((4, 2), bool))
  with pytest.raises(ValueError, match=r"(?i)(given|shape|dim)"):
    trip.sample_components(small_params, key, (2,), given=jnp.zeros((3, 4)))
  with pytest.raises((ValueError, TypeError), match=r"(?i)(float|dtype|int)"):
    trip.sample(small_params, key, (2,), given=jnp.zeros((4, 3), jnp.int32))

