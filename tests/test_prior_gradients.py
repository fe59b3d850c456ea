"""Tests for tripjax.prior.expectation_gradient: both estimators against exact gradients.

Exact gradients (float64): an additive f(z) = Σ_j a_j cos(w_j z_j + c_j), whose
expectation Σ_j Σ_k p(s_j = k) a_j cos(w_j μ_jk + c_j) exp(-w_j² σ_jk² / 2) needs only
the ring's exact marginals (`posterior_weights` with nothing observed), and a non-additive
f on a tiny ring with a discrete variable, by enumerating the lattice. Each estimator's
mean over many batches must lie within a few standard errors of the exact gradient.
"""
import functools

import float64
import jax
import jax.numpy as jnp
import numpy as np
import prior_reference as ref
import pytest

import tripjax.prior as trip

C, D = ref.CONTINUOUS, ref.DISCRETE
NUM_SE = 4.5
BATCH, NUM_BATCHES = 4, 10_000

# ---------------------------------------------------------------------------------------
# The two test functions and their exact expectations.

ADDITIVE_SIZES = (C, C, C, C), (3, 2, 3, 3), 2  # kinds, components (one padded), rank
AMPLITUDES = np.array([1.0, -0.7, 1.3, 0.5])
FREQUENCIES = np.array([1.0, 1.5, 0.6, 2.0])
PHASES = np.array([0.0, 0.4, -1.0, 0.8])


def _additive(z):
  """f(z) = Σ_j a_j cos(w_j z_j + c_j): (B, 4) -> (B,)."""
  return jnp.sum(AMPLITUDES * jnp.cos(FREQUENCIES * z + PHASES), axis=-1)


def _additive_expectation(params):
  """E_p[f] from the ring's exact marginals p(s_j = k) and the Gaussian closed form."""
  _, means, scales = trip.natural(params)
  nothing = jnp.full((params.num_variables,), jnp.nan, means.dtype)
  marginals = trip.posterior_weights(params, nothing)                  # (n, K)
  w, a, c = (x[:, None] for x in (FREQUENCIES, AMPLITUDES, PHASES))
  conditional = a * jnp.cos(w * means + c) * jnp.exp(-0.5 * jnp.square(w * scales))
  return jnp.sum(marginals * conditional)


MIXED_SIZES = (C, D, C), (2, 3, 2), 2  # z0, x1 in {0, 1, 2}, z2
DIRECTION = np.array([0.8, 0.5, -1.1])


def _mixed(z):
  """f(z) = cos(a·z + 0.3) + z0 z2 - 0.4 x1 z0: (B, 3) -> (B,), not additive."""
  return (jnp.cos(z @ DIRECTION + 0.3) + z[:, 0] * z[:, 2] - 0.4 * z[:, 1] * z[:, 0])


def _lattice_probabilities(params):
  """p(s) (S,) by enumerating Tr(Q_1[s_1] ... Q_n[s_n]) over the lattice."""
  cores = trip.natural(params).cores
  nodes = ref.lattice(params.num_components)                           # (S, n)
  mats = cores[np.arange(params.num_variables), nodes]                 # (S, n, m, m)
  product = functools.reduce(jnp.matmul, [mats[:, j] for j in range(mats.shape[1])])
  weights = jnp.trace(product, axis1=-2, axis2=-1)
  return weights / jnp.sum(weights)


def _mixed_expectation(params):
  """E_p[f] = Σ_s p(s) E[f | s]: given s, a·z is Gaussian with mean a·m, variance
  Σ_continuous a_j² σ_j² (m_j = μ_js continuous, s_j discrete)."""
  _, means, scales = trip.natural(params)
  nodes = ref.lattice(params.num_components)
  s0, s1, s2 = (nodes[:, j] for j in range(3))
  m0, m2 = means[0, s0], means[2, s2]
  mean = DIRECTION[0] * m0 + DIRECTION[1] * s1 + DIRECTION[2] * m2
  variance = jnp.square(DIRECTION[0] * scales[0, s0]) + jnp.square(
      DIRECTION[2] * scales[2, s2])
  conditional = (jnp.cos(mean + 0.3) * jnp.exp(-0.5 * variance) + m0 * m2
                 - 0.4 * s1 * m0)
  return jnp.sum(_lattice_probabilities(params) * conditional)


def _enumerated_additive_expectation(params):
  """The additive f's E_p[f] by enumeration: checks the marginal-based closed form."""
  _, means, scales = trip.natural(params)
  nodes = ref.lattice(params.num_components)
  j = np.arange(params.num_variables)
  conditional = jnp.sum(AMPLITUDES * jnp.cos(FREQUENCIES * means[j, nodes] + PHASES)
                        * jnp.exp(-0.5 * jnp.square(FREQUENCIES * scales[j, nodes])),
                        axis=-1)
  return jnp.sum(_lattice_probabilities(params) * conditional)


# ---------------------------------------------------------------------------------------
# Many estimates per estimator.


def _flat(tree, batched=True):
  """A TRIPParams pytree (with a leading batch axis) -> (batch, coordinates) and the
  group (core_roots, means, log_scales) of every coordinate."""
  leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]
  if not batched:
    leaves = [leaf[None] for leaf in leaves]
  flat = np.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)
  groups = np.concatenate([np.full(leaf[0].size, i) for i, leaf in enumerate(leaves)])
  return flat, groups


def _estimates(params, f, estimator, seed):
  """NUM_BATCHES estimates (values, flat gradients) from batches of BATCH draws."""
  keys = jax.random.split(jax.random.key(seed, impl="rbg"), NUM_BATCHES)
  estimate = jax.jit(jax.vmap(lambda key: trip.expectation_gradient(
      params, key, f, BATCH, estimator=estimator)))(keys)
  return np.asarray(estimate.value), _flat(estimate.gradient)[0]


def _case(sizes, f, expectation, seed):
  kinds, num_components, rank = sizes
  ring = ref.random_ring(np.random.default_rng(seed), kinds, num_components, rank)
  params = ref.to_params(ring, jnp.float64)
  exact_gradient, groups = _flat(jax.grad(expectation)(params), batched=False)
  case = {"params": params, "exact_value": float(expectation(params)),
          "exact_gradient": exact_gradient[0], "groups": groups}
  for seed_offset, estimator in enumerate(trip.ESTIMATORS):
    case[estimator] = _estimates(params, f, estimator, seed + 10 + seed_offset)
  return case


@pytest.fixture(scope="module")
def additive_case():
  with float64.enabled():
    case = _case(ADDITIVE_SIZES, _additive, _additive_expectation, seed=3)
    case["enumerated_gradient"] = _flat(jax.grad(_enumerated_additive_expectation)(
        case["params"]), batched=False)[0][0]
    return case


@pytest.fixture(scope="module")
def mixed_case():
  with float64.enabled():
    return _case(MIXED_SIZES, _mixed, _mixed_expectation, seed=5)


def _z_scores(samples, expected):
  """(mean - expected) / standard error per coordinate; coordinates with no spread
  (padding, a discrete variable's means) must match exactly and are left out."""
  mean = samples.mean(0)
  se = samples.std(0) / np.sqrt(len(samples))
  spread = se > 1e-12
  np.testing.assert_allclose(mean[~spread], expected[~spread], atol=1e-12)
  return (mean[spread] - expected[spread]) / se[spread]


def _group_variances(case, estimator):
  """Summed variance of one estimate per group: core_roots, means, log_scales."""
  variances = case[estimator][1].var(0)
  return [variances[case["groups"] == group].sum() for group in range(3)]


# ---------------------------------------------------------------------------------------


def test_marginal_closed_form_equals_enumeration(additive_case):
  """The additive f's exact gradient (through posterior_weights) is the lattice's."""
  np.testing.assert_allclose(additive_case["exact_gradient"],
                             additive_case["enumerated_gradient"], rtol=1e-9, atol=1e-12)
  assert np.abs(additive_case["exact_gradient"]).max() > 0.1


@pytest.mark.parametrize("case_name", ["additive_case", "mixed_case"])
@pytest.mark.parametrize("estimator", trip.ESTIMATORS)
def test_estimates_are_unbiased(case_name, estimator, request):
  case = request.getfixturevalue(case_name)
  values, gradients = case[estimator]
  value_z = (values.mean() - case["exact_value"]) / (values.std() / np.sqrt(len(values)))
  assert abs(value_z) < NUM_SE, value_z
  z_scores = _z_scores(gradients, case["exact_gradient"])
  assert len(z_scores) >= 20
  assert np.abs(z_scores).max() < NUM_SE, z_scores
  # Every group is estimated (none is identically zero where the exact one is not).
  for group in range(3):
    in_group = case["groups"] == group
    if np.abs(case["exact_gradient"][in_group]).max() > 1e-3:
      assert np.abs(gradients[:, in_group]).max() > 0


def test_the_tests_see_the_batch_mean_baselines_bias(additive_case):
  """Eq. 10 as printed (batch-mean baseline) estimates (B - 1)/B of the gradient: the
  test's draws are many enough to tell it from the leave-one-out one."""
  _, gradients = additive_case["score"]
  shrunk = (BATCH - 1) / BATCH * gradients
  assert np.abs(_z_scores(shrunk, additive_case["exact_gradient"])).max() > 2 * NUM_SE


@pytest.mark.parametrize("case_name", ["additive_case", "mixed_case"])
def test_pathwise_lowers_the_means_and_scales_variance(case_name, request):
  case = request.getfixturevalue(case_name)
  score, pathwise = _group_variances(case, "score"), _group_variances(case, "pathwise")
  assert pathwise[1] < 0.5 * score[1], (pathwise, score)
  assert pathwise[2] < 0.5 * score[2], (pathwise, score)


def test_surrogate_pieces():
  """score_surrogate's gradient by its formula, both baselines; the checks' messages."""
  def log_probs_fn(theta):
    return jnp.sin(jnp.arange(5.0) * theta) - theta ** 2

  values = jnp.array([1.0, -2.0, 0.5, 3.0, 0.0])
  centred = values - values.mean()
  slope = jax.jacobian(log_probs_fn)(0.7)
  for baseline, factor in (("leave_one_out", 5 / 4), ("batch_mean", 1.0)):
    grad = jax.grad(lambda t: trip.score_surrogate(log_probs_fn(t), values,
                                                   baseline=baseline))(0.7)
    np.testing.assert_allclose(grad, factor * jnp.mean(centred * slope), rtol=1e-6)
  # Leave-one-out by its definition: b_i the mean of the other values.
  others = (values.sum() - values) / 4
  grad = jax.grad(lambda t: trip.score_surrogate(log_probs_fn(t), values))(0.7)
  np.testing.assert_allclose(grad, jnp.mean((values - others) * slope), rtol=1e-6)
  with pytest.raises(ValueError, match="baseline must be one of"):
    trip.score_surrogate(values, values, baseline="mean")
  with pytest.raises(ValueError, match="shape"):
    trip.score_surrogate(values, values[:3])


def test_bad_arguments_fail_clearly():
  params = trip.init(jax.random.key(0), [trip.Continuous(2)] * 2, rank=2)
  def f(z):
    return jnp.sum(z, axis=-1)

  key = jax.random.key(1)
  with pytest.raises(ValueError, match="estimator must be one of 'score', 'pathwise', "
                                       "got 'reinforce'"):
    trip.expectation_gradient(params, key, f, 8, estimator="reinforce")
  with pytest.raises(ValueError, match="num_samples must be >= 2"):
    trip.expectation_gradient(params, key, f, 1, estimator="score")
  with pytest.raises(ValueError, match=r"f must map z of shape \(8, 2\)"):
    trip.expectation_gradient(params, key, lambda z: z, 8, estimator="pathwise")


def test_draws_reparameterize_to_the_priors_distribution():
  """reparameterize(draw(...)) matches sample's moments (both exact draws of p)."""
  params = trip.init(jax.random.key(2), [trip.Continuous(3), trip.Discrete(3)], rank=3,
                     core_noise=0.8)
  z = trip.reparameterize(params, trip.draw(params, jax.random.key(3), 40_000))
  reference = trip.sample(params, jax.random.key(4), (40_000,))
  assert z.shape == reference.shape == (40_000, 2)
  np.testing.assert_allclose(z.mean(0), reference.mean(0), atol=0.03)
  np.testing.assert_allclose(z.std(0), reference.std(0), atol=0.03)
  # The discrete variable is its component, exactly.
  assert set(np.unique(np.asarray(z[:, 1]))) <= {0.0, 1.0, 2.0}
