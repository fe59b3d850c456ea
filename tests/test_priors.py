"""Tests for tripjax.priors: N(0, I), factorized GMM and TRIP behind one interface."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

import tripjax.prior as trip
from tripjax import priors


def test_normal_log_prob_matches_scipy_and_marginalizes_missing():
  prior = priors.make_prior("normal", 3)
  params = prior.init(jax.random.PRNGKey(0))
  z = np.array([[0.3, -1.2, 2.0], [np.nan, 0.5, np.nan]], np.float32)
  expected = [stats.norm.logpdf(z[0]).sum(), stats.norm.logpdf(0.5)]
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z)), expected, rtol=1e-6)
  observed = jnp.asarray([True, False, True])
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z[:1]), observed),
                             [stats.norm.logpdf(z[0, [0, 2]]).sum()], rtol=1e-6)


def test_normal_sample_moments_and_given_entries():
  prior = priors.make_prior("normal", 4)
  draws = np.asarray(prior.sample({}, jax.random.PRNGKey(1), (50_000,)))
  assert draws.shape == (50_000, 4)
  np.testing.assert_allclose(draws.mean(0), 0.0, atol=0.03)
  np.testing.assert_allclose(draws.std(0), 1.0, atol=0.03)
  given = jnp.asarray([[0.5, np.nan, -1.0, np.nan]])
  conditional = np.asarray(prior.sample({}, jax.random.PRNGKey(2), (3,), given=given))
  assert conditional.shape == (3, 1, 4)
  np.testing.assert_array_equal(conditional[:, 0, [0, 2]], [[0.5, -1.0]] * 3)
  assert np.all(np.isfinite(conditional))


@pytest.mark.parametrize("kind, rank", [("gmm", 1), ("trip", 3)])
def test_mixture_priors_are_trip_rings(kind, rank):
  prior = priors.make_prior(kind, 5, num_components=4, rank=3)
  params = prior.init(jax.random.PRNGKey(3))
  assert isinstance(params, trip.TRIPParams)
  assert params.rank == rank and params.max_components == 4
  z = prior.sample(params, jax.random.PRNGKey(4), (7,))
  np.testing.assert_allclose(prior.log_prob(params, z), trip.log_prob(params, z))
  refit = prior.refit(params, z, jax.random.PRNGKey(5))
  np.testing.assert_array_equal(refit.core_roots, params.core_roots)


def test_gmm_is_a_product_of_independent_mixtures():
  prior = priors.make_prior("gmm", 3, num_components=2)
  params = prior.init(jax.random.PRNGKey(6))
  cores, means, scales = (np.asarray(a, np.float64) for a in trip.natural(params))
  weights = cores[:, :, 0, 0] / cores[:, :, 0, 0].sum(1, keepdims=True)
  z = np.array([0.2, -0.7, 1.1])
  expected = sum(
      special.logsumexp(np.log(weights[j]) + stats.norm.logpdf(z[j], means[j], scales[j]))
      for j in range(3))
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z, jnp.float32)), expected,
                             rtol=1e-5)


def test_bad_input_raises():
  with pytest.raises(ValueError, match="unknown prior kind"):
    priors.make_prior("flow", 3)
  with pytest.raises(ValueError, match="num_variables"):
    priors.make_prior("normal", 0)
  prior = priors.make_prior("normal", 3)
  with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
    prior.log_prob({}, jnp.zeros((2, 4)))
  with pytest.raises(TypeError, match="float"):
    prior.log_prob({}, jnp.zeros((2, 3), jnp.int32))
  with pytest.raises(ValueError, match="observed"):
    prior.log_prob({}, jnp.zeros((2, 3)), jnp.ones((2, 2), bool))
  with pytest.raises(ValueError, match="without given"):
    prior.sample({}, jax.random.PRNGKey(0), (2,), observed=jnp.ones((3,), bool))


@pytest.mark.parametrize("kind", ["gmm", "trip"])
def test_init_is_the_papers_gan_init(kind):
  """Section 3.3: means uniform in [-1, 1], standard deviations 1/N."""
  num_components = 10
  prior = priors.make_prior(kind, 40, num_components=num_components, rank=4)
  params = jax.jit(prior.init)(jax.random.key(7, impl="rbg"))  # compiles fast
  means = np.asarray(params.means).ravel()
  np.testing.assert_allclose(np.exp(params.log_scales), 1 / num_components, rtol=1e-6)
  assert np.all(np.abs(means) <= 1)
  assert stats.kstest(means, "uniform", args=(-1, 2)).pvalue > 1e-3
