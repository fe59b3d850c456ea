"""Tests for tripjax/losses.py against closed forms."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from tripjax import losses


def _standard_normal_log_prob(z):
  return losses.gaussian_log_prob(z, jnp.zeros_like(z), jnp.zeros_like(z))


def _analytic_kl_to_standard_normal(mean, log_scale):
  """KL(N(mean, exp(log_scale)^2) || N(0, I)), summed over the last axis."""
  variance = jnp.exp(2 * log_scale)
  return jnp.sum(0.5 * (variance + mean**2 - 1) - log_scale, axis=-1)


@pytest.mark.parametrize("shape", [(3,), (4, 5), (2, 3, 7)])
def test_gaussian_log_prob_matches_scipy(shape, x64):
  rng = np.random.default_rng(0)
  z, mean = rng.normal(size=(2,) + shape)
  log_scale = rng.normal(size=shape) * 0.5
  expected = stats.norm.logpdf(z, mean, np.exp(log_scale)).sum(-1)
  actual = losses.gaussian_log_prob(jnp.asarray(z), jnp.asarray(mean),
                                    jnp.asarray(log_scale))
  assert actual.shape == shape[:-1]
  np.testing.assert_allclose(actual, expected, rtol=1e-12)


def test_gaussian_log_prob_tails_are_finite():
  z = jnp.array([[1e4, -1e4]])
  log_prob = losses.gaussian_log_prob(z, jnp.zeros_like(z), jnp.full_like(z, -5.0))
  assert np.isfinite(log_prob).all()


def test_sample_gaussian_shape_moments_and_gradient():
  mean = jnp.array([[1.0, -2.0, 0.5]])
  log_scale = jnp.log(jnp.array([[0.5, 2.0, 1.0]]))
  z = losses.sample_gaussian(jax.random.key(0), mean, log_scale, 20000)
  assert z.shape == (20000, 1, 3)
  np.testing.assert_allclose(z.mean(0), mean, atol=0.05)
  np.testing.assert_allclose(z.std(0), jnp.exp(log_scale), rtol=0.03)
  # Reparameterized: d z / d mean = 1 for every sample.
  grad = jax.grad(lambda m: losses.sample_gaussian(
      jax.random.key(1), m, log_scale, 5).sum())(mean)
  np.testing.assert_allclose(grad, 5.0 * jnp.ones_like(mean))


def test_mc_kl_matches_analytic_kl_in_expectation():
  rng = np.random.default_rng(1)
  mean = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
  log_scale = jnp.asarray(rng.normal(size=(4, 6)) * 0.3, jnp.float32)
  terms = losses.elbo(jax.random.key(2), mean, log_scale,
                      log_likelihood_fn=lambda z: jnp.zeros(z.shape[0]),
                      prior_log_prob_fn=_standard_normal_log_prob,
                      num_samples=20000)
  expected_kl = _analytic_kl_to_standard_normal(mean, log_scale)
  # Standard error of the MC KL is about sqrt(d / 2 / l) ~ 0.01 here.
  np.testing.assert_allclose(terms.kl, expected_kl, atol=0.06)
  np.testing.assert_allclose(terms.elbo, -terms.kl)


def test_elbo_of_linear_gaussian_model_matches_closed_form():
  """x | z ~ N(z, 1), z ~ N(0, 1): ELBO has a closed form for any Gaussian q."""
  x = jnp.array([0.3, -1.2, 2.0])
  mean = jnp.array([[0.1], [-0.4], [1.5]])
  log_scale = jnp.log(jnp.array([[0.6], [1.3], [0.2]]))

  def log_likelihood_fn(z):  # (batch, 1) -> (batch,)
    return losses.gaussian_log_prob(z, x[:, None], jnp.zeros_like(z))

  terms = losses.elbo(jax.random.key(3), mean, log_scale, log_likelihood_fn,
                      _standard_normal_log_prob, num_samples=20000)
  variance = jnp.exp(2 * log_scale[:, 0])
  expected_log_likelihood = (-0.5 * ((x - mean[:, 0])**2 + variance)
                             - 0.5 * np.log(2 * np.pi))
  expected_elbo = (expected_log_likelihood
                   - _analytic_kl_to_standard_normal(mean, log_scale))
  np.testing.assert_allclose(terms.elbo, expected_elbo, atol=0.05)
  # The true posterior N(x / 2, 1 / 2) makes every bound tight: log p(x) = log N(x | 0, 2).
  log_evidence = stats.norm.logpdf(np.asarray(x), 0.0, np.sqrt(2.0))
  posterior_mean = (x / 2)[:, None]
  posterior_log_scale = jnp.full_like(posterior_mean, 0.5 * np.log(0.5))
  exact = losses.elbo(jax.random.key(4), posterior_mean, posterior_log_scale,
                      log_likelihood_fn, _standard_normal_log_prob, 3)
  np.testing.assert_allclose(exact.elbo, log_evidence, rtol=1e-5)
  iwae = losses.iwae_bound(jax.random.key(5), posterior_mean, posterior_log_scale,
                           log_likelihood_fn, _standard_normal_log_prob, 7)
  np.testing.assert_allclose(iwae, log_evidence, rtol=1e-5)


def test_iwae_with_one_sample_equals_elbo_sample():
  rng = np.random.default_rng(6)
  mean = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
  log_scale = jnp.asarray(rng.normal(size=(5, 3)) * 0.2, jnp.float32)
  log_likelihood_fn = lambda z: -jnp.sum(z**2 + z, axis=-1)
  key = jax.random.key(7)
  one_sample_elbo = losses.elbo(key, mean, log_scale, log_likelihood_fn,
                                _standard_normal_log_prob).elbo
  iwae = losses.iwae_bound(key, mean, log_scale, log_likelihood_fn,
                           _standard_normal_log_prob, num_samples=1)
  np.testing.assert_allclose(iwae, one_sample_elbo, rtol=1e-6)


@pytest.mark.parametrize("samples_per_chunk", [None, 4])
def test_iwae_is_at_least_elbo_and_grows_with_k(samples_per_chunk):
  """Same k samples: log-mean-exp >= mean (Jensen), per example; and E[IWAE_k] grows."""
  rng = np.random.default_rng(8)
  mean = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  log_scale = jnp.asarray(rng.normal(size=(6, 4)) * 0.3, jnp.float32)
  log_likelihood_fn = lambda z: -2.0 * jnp.sum((z - 1.0)**2, axis=-1)
  key = jax.random.key(9)
  k = 16
  many_sample_elbo = losses.elbo(key, mean, log_scale, log_likelihood_fn,
                                 _standard_normal_log_prob, num_samples=k).elbo
  iwae = losses.iwae_bound(key, mean, log_scale, log_likelihood_fn,
                           _standard_normal_log_prob, k, samples_per_chunk)
  assert np.all(iwae >= many_sample_elbo - 1e-5)


def test_expected_iwae_grows_with_k():
  rng = np.random.default_rng(8)
  mean = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  log_scale = jnp.asarray(rng.normal(size=(6, 4)) * 0.3, jnp.float32)
  log_likelihood_fn = lambda z: -2.0 * jnp.sum((z - 1.0)**2, axis=-1)

  @functools.partial(jax.jit, static_argnums=1)
  def average_iwae(keys, num_samples):  # MC average of IWAE_k over `keys`.
    return jnp.mean(jax.vmap(lambda key: losses.iwae_bound(
        key, mean, log_scale, log_likelihood_fn, _standard_normal_log_prob,
        num_samples, samples_per_chunk=num_samples))(keys), axis=0)

  keys = jax.random.split(jax.random.key(11), 100)
  estimates = [average_iwae(keys, k) for k in (1, 10, 100)]
  assert np.all(estimates[0] < estimates[1])
  assert np.all(estimates[1] < estimates[2])


def test_iwae_chunking_does_not_change_the_result():
  mean = jnp.linspace(-1, 1, 12).reshape(4, 3)
  log_scale = jnp.full((4, 3), -0.5)
  log_likelihood_fn = lambda z: -jnp.sum(jnp.abs(z), axis=-1)
  key = jax.random.key(10)
  unchunked = losses.iwae_bound(key, mean, log_scale, log_likelihood_fn,
                                _standard_normal_log_prob, 10)
  chunked = losses.iwae_bound(key, mean, log_scale, log_likelihood_fn,
                              _standard_normal_log_prob, 10, samples_per_chunk=5)
  np.testing.assert_allclose(chunked, unchunked, rtol=1e-6)


def test_iwae_evaluates_the_prior_once_on_every_sample_outside_the_chunks():
  # A prior that branches on its whole input (full_gaussian: "no entry missing") must
  # see all k samples in one call, not a vmapped chunk, or its lax.cond runs both sides.
  seen = []

  def prior_log_prob(z):
    seen.append(z.shape)
    return _standard_normal_log_prob(z)

  mean, log_scale = jnp.zeros((4, 3)), jnp.zeros((4, 3))
  log_likelihood_fn = lambda z: -jnp.sum(z**2, axis=-1)
  terms = losses.log_importance_weights(jax.random.key(0), mean, log_scale,
                                        log_likelihood_fn, prior_log_prob, 10,
                                        samples_per_chunk=5)
  assert seen == [(10, 4, 3)]
  z = losses.sample_gaussian(jax.random.key(0), mean, log_scale, 10)
  np.testing.assert_allclose(terms.log_prior, _standard_normal_log_prob(z), rtol=1e-6)
  jaxpr = jax.make_jaxpr(lambda z: losses.iwae_bound(
      jax.random.key(0), z, log_scale, log_likelihood_fn,
      lambda z: jax.lax.cond(jnp.all(jnp.isfinite(z)), _standard_normal_log_prob,
                             lambda z: jnp.full(z.shape[:-1], jnp.nan), z),
      10, samples_per_chunk=5))(mean)
  primitives = {equation.primitive.name for equation in jaxpr.jaxpr.eqns}
  assert "cond" in primitives  # still a branch, not a select of both sides


def test_log_mean_exp_is_stable():
  values = jnp.array([[-1000.0, -1001.0], [1000.0, 1000.0]])
  result = losses.log_mean_exp(values, axis=1)
  expected = np.array([-1000.0 + np.log((1 + np.exp(-1)) / 2), 1000.0])
  np.testing.assert_allclose(result, expected, rtol=1e-6)
