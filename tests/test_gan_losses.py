"""Tests for the GAN objectives in tripjax/losses.py.

The REINFORCE surrogate (eq. 10) against the exact gradient of E_p[f] computed by
enumerating a small ring (float64), the gradient penalty against its closed form on a
linear critic and against per-example jax.grad loops, weight clipping by its definition.
"""
import functools

import float64
import jax
import jax.numpy as jnp
import numpy as np
import prior_reference as ref
import pytest
from scipy import stats

from tripjax import losses
import tripjax.prior as trip

C, D = ref.CONTINUOUS, ref.DISCRETE
NUM_SE = 4.5

# ---------------------------------------------------------------------------------------
# Score-function surrogate.

# z = (x0, z1, x2, z3): discrete x0 in {0, 1}, x2 in {0, 1, 2}; continuous z1, z3.
KINDS, NUM_COMPONENTS, RANK = (D, C, D, C), (2, 2, 3, 2), 2
BATCH, NUM_BATCHES = 4, 20_000


def _reward(z):
  """f(z) (...,) for z (..., 4): a polynomial with a large constant part."""
  x0, z1, x2, z3 = (z[..., j] for j in range(4))
  return (10.0 + 1.5 * x0 + z1 - 0.5 * jnp.square(z1) + x2 * z3
          + 0.3 * jnp.square(z3) - 0.7 * x0 * x2)


def _conditional_reward(nodes, means, scales):
  """E[f | s] for the lattice nodes (S, 4), from the Gaussian moments of z1 and z3."""
  s0, s1, s2, s3 = (nodes[:, j] for j in range(4))
  mu1, mu3 = means[1, s1], means[3, s3]
  second1, second3 = jnp.square(mu1) + jnp.square(scales[1, s1]), \
      jnp.square(mu3) + jnp.square(scales[3, s3])
  return (10.0 + 1.5 * s0 + mu1 - 0.5 * second1 + s2 * mu3 + 0.3 * second3
          - 0.7 * s0 * s2)


def _expected_reward(params):
  """E_p[f] = sum_s p(s) E[f | s] by enumerating the lattice (differentiable)."""
  cores, means, scales = trip.natural(params)
  nodes = ref.lattice(params.num_components)                        # (S, n)
  mats = cores[np.arange(params.num_variables), nodes]              # (S, n, m, m)
  product = functools.reduce(jnp.matmul, [mats[:, j] for j in range(mats.shape[1])])
  weights = jnp.trace(product, axis1=-2, axis2=-1)                  # (S,)
  probs = weights / jnp.sum(weights)
  return jnp.sum(probs * _conditional_reward(jnp.asarray(nodes), means, scales))


def _flat(tree):
  """A pytree with a leading batch axis -> (batch, num_coordinates)."""
  leaves = jax.tree_util.tree_leaves(tree)
  return np.concatenate([np.asarray(leaf).reshape(leaf.shape[0], -1) for leaf in leaves],
                        axis=1)


def _estimates(params, key):
  """NUM_BATCHES gradient estimates of batches of BATCH draws, with the surrogate's
  baseline and without one (the plain (1/B) sum_i r_i grad log p(z_i))."""
  z = trip.sample(params, key, (NUM_BATCHES, BATCH))
  rewards = _reward(z)

  def one_batch(z, rewards):
    with_baseline = jax.grad(lambda p: losses.score_function_surrogate(
        trip.log_prob(p, z), rewards))(params)
    without_baseline = jax.grad(lambda p: jnp.mean(rewards * trip.log_prob(p, z)))(params)
    return with_baseline, without_baseline

  return jax.vmap(one_batch)(z, rewards)


@pytest.fixture(scope="module")
def score_function_estimates():
  """Exact gradient and the estimates with and without baseline (float64)."""
  with float64.enabled():
    rng = np.random.default_rng(7)
    ring = ref.random_ring(rng, KINDS, NUM_COMPONENTS, RANK)
    params = ref.to_params(ring, jnp.float64)
    exact = jax.jit(jax.grad(_expected_reward))(params)
    # rbg keys: threefry's sampler compiles several times slower on CPU.
    estimates, plain = jax.jit(_estimates)(params, jax.random.key(3, impl="rbg"))
    return (_flat(jax.tree.map(lambda leaf: leaf[None], exact))[0], _flat(estimates),
            _flat(plain))


def _z_scores(estimates, expected):
  """(mean - expected) / standard error per coordinate; coordinates with no spread
  (padding, discrete means) must match exactly and are left out."""
  mean = estimates.mean(0)
  se = estimates.std(0) / np.sqrt(len(estimates))
  spread = se > 1e-12
  np.testing.assert_allclose(mean[~spread], expected[~spread], atol=1e-12)
  return (mean[spread] - expected[spread]) / se[spread]


def test_score_function_surrogate_is_unbiased_for_scaled_gradient(
    score_function_estimates):
  """E[grad surrogate] = (1 - 1/B) grad E_p[f], by enumeration; a 1/B offset is seen."""
  exact, estimates, _ = score_function_estimates
  assert np.abs(exact).max() > 0.1
  z_scores = _z_scores(estimates, (1 - 1 / BATCH) * exact)
  assert len(z_scores) > 20
  assert np.abs(z_scores).max() < NUM_SE, z_scores
  # The test has the power to see the baseline's (1 - 1/B) factor.
  assert np.abs(_z_scores(estimates, exact)).max() > 2 * NUM_SE


def test_baseline_lowers_variance(score_function_estimates):
  """Without baseline the estimator is unbiased for the full gradient, but noisier."""
  exact, estimates, plain = score_function_estimates
  assert np.abs(_z_scores(plain, exact)).max() < NUM_SE
  variance_with, variance_without = estimates.var(0).sum(), plain.var(0).sum()
  assert variance_with < 0.25 * variance_without, (variance_with, variance_without)


def _log_probs(theta):
  """A nonlinear (B,) = (5,) function of theta (3,) standing in for log p(z_i)."""
  features = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), theta.dtype)
  return jnp.sin(features @ theta) - jnp.square(features @ theta)


@pytest.mark.parametrize("normalize", [False, True])
def test_surrogate_gradient_formula_and_stopped_rewards(normalize):
  theta = jnp.asarray([0.3, -0.2, 0.5])
  # Rewards that depend on theta too: their dependence must not reach the gradient.
  rewards_of = lambda theta: jnp.arange(5.0) ** 2 * (1.0 + theta[0])
  grad = jax.jit(jax.grad(lambda t: losses.score_function_surrogate(
      _log_probs(t), rewards_of(t), normalize=normalize)))(theta)
  rewards = np.asarray(rewards_of(theta), np.float64)
  advantages = rewards - rewards.mean()
  if normalize:
    advantages = advantages / rewards.std()
  jacobian = np.asarray(jax.jacobian(_log_probs)(theta), np.float64)  # (5, 3)
  np.testing.assert_allclose(grad, advantages @ jacobian / 5, rtol=1e-5, atol=1e-6)


def test_surrogate_constant_rewards_and_bad_shapes():
  theta = jnp.asarray([0.3, -0.2, 0.5])
  for normalize in (False, True):
    grad = jax.grad(lambda t: losses.score_function_surrogate(
        _log_probs(t), jnp.full((5,), 2.0), normalize=normalize))(theta)
    np.testing.assert_array_equal(grad, 0.0)
  with pytest.raises(ValueError, match=r"\(B,\)"):
    losses.score_function_surrogate(jnp.zeros(5), jnp.zeros(4))
  with pytest.raises(ValueError, match=r"\(B,\)"):
    losses.score_function_surrogate(jnp.zeros((5, 2)), jnp.zeros((5, 2)))


def test_wgan_losses():
  real, fake = jnp.asarray([1.0, 2.0, 4.0]), jnp.asarray([0.5, -1.5])
  np.testing.assert_allclose(losses.wgan_critic_loss(real, fake), -0.5 - 7 / 3,
                             rtol=1e-6)
  np.testing.assert_allclose(losses.wgan_generator_loss(fake), 0.5, rtol=1e-6)


# ---------------------------------------------------------------------------------------
# Gradient penalty.

IMAGE_SHAPE = (6, 4, 4, 3)  # (B, H, W, C)


def _images(seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=IMAGE_SHAPE), jnp.float32)


def _linear_critic(w, b=0.7):
  return lambda x: jnp.sum(x * w, axis=(1, 2, 3)) + b


@jax.jit
def _linear_penalty_and_grad(w, real, fake, key):
  """weight-10 penalty of the linear critic <w, x> + b, and its gradient in w."""
  return jax.value_and_grad(lambda w: losses.gradient_penalty(
      _linear_critic(w), real, fake, key, weight=10.0))(w)


def test_gradient_penalty_closed_form_on_linear_critic():
  """D(x) = <w, x> + b: ||grad D|| = ||w|| everywhere, penalty = weight (||w|| - 1)^2,
  and its gradient in w is weight * 2 (||w|| - 1) w / ||w||."""
  w = 0.5 * _images(0)[0]
  norm = float(jnp.sqrt(jnp.sum(jnp.square(w))))
  assert abs(norm - 1) > 0.5
  real, fake = _images(1), _images(2)
  np.testing.assert_allclose(
      losses.per_example_gradient_norms(_linear_critic(w), real), norm, rtol=1e-5)
  for seed in (0, 1):
    penalty, grad = _linear_penalty_and_grad(w, real, fake, jax.random.key(seed))
    np.testing.assert_allclose(penalty, 10.0 * (norm - 1) ** 2, rtol=1e-5)
    np.testing.assert_allclose(grad, 10.0 * 2 * (norm - 1) * w / norm, rtol=1e-4,
                               atol=1e-6)


def _nonlinear_critic(x):
  """A per-example critic whose gradient norm varies from example to example."""
  a = jnp.linspace(-1.0, 1.0, x[0].size).reshape(x.shape[1:])
  return jnp.sum(jnp.sin(a * x), axis=(1, 2, 3)) + 0.3 * jnp.sum(jnp.square(x),
                                                                 axis=(1, 2, 3))


def test_gradient_penalty_is_per_example():
  x = _images(3) * jnp.linspace(0.2, 2.0, IMAGE_SHAPE[0])[:, None, None, None]
  # Each example's gradient on its own (a batch of one), vmapped over the examples.
  one_by_one = jax.vmap(jax.grad(lambda one: _nonlinear_critic(one[None])[0]))(x)
  loop = np.linalg.norm(np.asarray(one_by_one).reshape(x.shape[0], -1), axis=1)
  assert loop.std() > 0.1 * loop.mean()
  np.testing.assert_allclose(losses.per_example_gradient_norms(_nonlinear_critic, x),
                             loop, rtol=1e-5)
  # With real == fake the interpolates are x whatever eps is.
  penalty = losses.gradient_penalty(_nonlinear_critic, x, x, jax.random.key(0),
                                    weight=3.0)
  np.testing.assert_allclose(penalty, 3.0 * np.mean((loop - 1) ** 2), rtol=1e-5)


def test_random_interpolates_use_one_uniform_per_example():
  num = 20_000
  real, fake = jnp.ones((num, 2, 2, 1)), jnp.zeros((num, 2, 2, 1))
  points = np.asarray(losses.random_interpolates(jax.random.key(4), real, fake))
  eps = points[:, 0, 0, 0]
  np.testing.assert_array_equal(points, np.broadcast_to(eps[:, None, None, None],
                                                        points.shape))
  assert stats.kstest(eps, "uniform").pvalue > 1e-3
  with pytest.raises(ValueError, match="same shape"):
    losses.random_interpolates(jax.random.key(0), real, fake[:, :1])


def test_gradient_penalty_of_flat_critic_is_finite():
  """A critic with zero gradient: penalty = weight, derivative finite (zero)."""
  value, grad = _linear_penalty_and_grad(jnp.zeros(IMAGE_SHAPE[1:]), _images(5),
                                         _images(6), jax.random.key(0))
  np.testing.assert_allclose(value, 10.0)
  assert np.all(np.isfinite(grad))


# ---------------------------------------------------------------------------------------
# Weight clipping.


def test_clip_weights_keeps_every_weight_in_range():
  rng = np.random.default_rng(8)
  params = {"conv": {"kernel": jnp.asarray(rng.uniform(-0.05, 0.05, (3, 3, 2, 4)),
                                           jnp.float32),
                     "bias": jnp.asarray([0.005, -0.2, 0.01, -0.01], jnp.float32)},
            "norm": {"scale": jnp.ones((4,), jnp.float32)}}
  clip = 0.01
  clipped = losses.clip_weights(params, clip)
  assert jax.tree.structure(clipped) == jax.tree.structure(params)
  for before, after in zip(jax.tree.leaves(params), jax.tree.leaves(clipped)):
    before, after = np.asarray(before), np.asarray(after)
    assert np.all(np.abs(after) <= clip)
    inside = np.abs(before) <= clip
    np.testing.assert_array_equal(after[inside], before[inside])
    np.testing.assert_array_equal(after[~inside], np.sign(before[~inside]) * np.float32(clip))
  with pytest.raises(ValueError, match="clip_value"):
    losses.clip_weights(params, 0.0)
