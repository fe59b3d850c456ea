"""full_gmm and full_gaussian (tripjax.full_space_priors via make_prior) against scipy."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import special
from scipy import stats

from tripjax import full_space_priors as full
from tripjax import priors


def _random_gmm_params(key, num_components, num_variables):
  keys = jax.random.split(key, 3)
  return {"logits": jax.random.normal(keys[0], (num_components,)),
          "means": jax.random.normal(keys[1], (num_components, num_variables)),
          "log_variances": 0.5 * jax.random.normal(keys[2],
                                                   (num_components, num_variables))}


def _gmm_reference(params, z):
  """float64 log-sum-exp over the components of the present (not NaN) entries of z."""
  logits, means, log_variances = (np.asarray(params[name], np.float64)
                                  for name in ("logits", "means", "log_variances"))
  log_weights = logits - special.logsumexp(logits)
  rows = []
  for row in np.asarray(z, np.float64):
    present = ~np.isnan(row)
    terms = stats.norm.logpdf(row[present], means[:, present],
                              np.exp(0.5 * log_variances[:, present])).sum(-1)
    rows.append(special.logsumexp(log_weights + terms))
  return np.array(rows)


def test_full_gmm_init_is_the_authors():
  prior = priors.make_prior("full_gmm", 6, num_components=4)
  params = prior.init(jax.random.PRNGKey(0))
  assert params["means"].shape == (24, 6)  # d * N components by default
  np.testing.assert_array_equal(params["logits"], 0.0)
  np.testing.assert_array_equal(params["log_variances"], -1.0)
  assert -1 <= params["means"].min() and params["means"].max() <= 1
  sized = priors.make_prior("full_gmm", 6, num_mixture_components=7)
  assert sized.init(jax.random.PRNGKey(0))["logits"].shape == (7,)
  with pytest.raises(ValueError, match="num_mixture_components"):
    priors.make_prior("full_gmm", 6, num_mixture_components=0)


def test_full_gmm_log_prob_matches_float64_logsumexp_and_marginals_drop_dimensions():
  prior = priors.make_prior("full_gmm", 4, num_mixture_components=5)
  params = _random_gmm_params(jax.random.PRNGKey(1), 5, 4)
  z = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (6, 4)) * 1.5)
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z)),
                             _gmm_reference(params, z), rtol=1e-5)
  np.testing.assert_allclose(full.full_gmm_distribution(params).log_prob(z),
                             _gmm_reference(params, z), rtol=1e-5)
  missing = z.copy()
  missing[0, 1] = missing[1, [0, 3]] = missing[2, :] = np.nan
  expected = _gmm_reference(params, missing)
  assert expected[2] == 0.0
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(missing)), expected,
                             rtol=1e-5, atol=1e-6)
  observed = ~np.isnan(missing)
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z), observed), expected,
                             rtol=1e-5, atol=1e-6)
  gradient = jax.grad(lambda p: prior.log_prob(p, jnp.asarray(missing)).sum())(params)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(gradient))


def _nearest_component(draws, means):
  return np.argmin(((draws[:, None, :] - means[None]) ** 2).sum(-1), axis=1)


def test_full_gmm_component_frequencies_match_softmax_weights():
  num_components, num_draws = 4, 40_000
  logits = jnp.asarray([0.5, -1.0, 1.2, 0.0])
  means = 10.0 * jnp.arange(num_components, dtype=jnp.float32)[:, None] * jnp.ones((1, 3))
  params = {"logits": logits, "means": means,
            "log_variances": jnp.full((num_components, 3), -4.0)}
  prior = priors.make_prior("full_gmm", 3, num_mixture_components=num_components)
  draws = np.asarray(prior.sample(params, jax.random.PRNGKey(3), (num_draws,)))
  counts = np.bincount(_nearest_component(draws, np.asarray(means)),
                       minlength=num_components)
  weights = np.asarray(jax.nn.softmax(logits), np.float64)
  standard_errors = np.sqrt(num_draws * weights * (1 - weights))
  assert np.all(np.abs(counts - num_draws * weights) < 4 * standard_errors)


def test_full_gmm_conditional_draws_pick_the_component_posterior():
  # Dimension 0 overlaps, dimension 1 names the component (means 0, 10, 20; tiny scale).
  means = jnp.asarray([[0.0, 0.0], [0.7, 10.0], [1.5, 20.0]])
  params = {"logits": jnp.asarray([0.3, 0.0, -0.4]), "means": means,
            "log_variances": jnp.asarray([[0.0, -9.0], [0.2, -9.0], [-0.3, -9.0]])}
  prior = priors.make_prior("full_gmm", 2, num_mixture_components=3)
  given = jnp.asarray([[0.4, np.nan]])
  num_draws = 30_000
  draws = np.asarray(prior.sample(params, jax.random.PRNGKey(4), (num_draws,),
                                  given=given))
  assert draws.shape == (num_draws, 1, 2)
  assert np.all(draws[:, 0, 0] == np.float32(0.4))
  counts = np.bincount(np.rint(draws[:, 0, 1] / 10).astype(int), minlength=3)
  log_posterior = (np.log(special.softmax(np.asarray(params["logits"], np.float64)))
                   + stats.norm.logpdf(0.4, np.asarray(means[:, 0], np.float64),
                                       np.exp(0.5 * np.asarray(
                                           params["log_variances"][:, 0], np.float64))))
  posterior = special.softmax(log_posterior)
  standard_errors = np.sqrt(num_draws * posterior * (1 - posterior))
  assert np.all(np.abs(counts - num_draws * posterior) < 4 * standard_errors)


def test_full_gmm_refit_recovers_separated_components():
  true_means = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, -4.0]], np.float32)
  labels = np.random.default_rng(0).choice(3, size=3000, p=[0.2, 0.3, 0.5])
  z = true_means[labels] + 0.5 * np.random.default_rng(1).normal(size=(3000, 2))
  prior = priors.make_prior("full_gmm", 2, num_mixture_components=3)
  start = {"logits": jnp.zeros(3), "means": jnp.asarray(true_means + 1.0),
           "log_variances": jnp.zeros((3, 2))}
  refit = prior.refit(start, jnp.asarray(z, jnp.float32), jax.random.PRNGKey(0))
  np.testing.assert_allclose(refit["means"], true_means, atol=0.1)
  np.testing.assert_allclose(jax.nn.softmax(refit["logits"]), [0.2, 0.3, 0.5], atol=0.03)
  np.testing.assert_allclose(np.exp(0.5 * refit["log_variances"]), 0.5, atol=0.05)


def _random_gaussian_params(key, num_variables, scale=1.0):
  mean_key, tril_key = jax.random.split(key)
  return {"mean": jax.random.normal(mean_key, (num_variables,)),
          "scale_tril": scale * jax.random.normal(tril_key, (num_variables,) * 2)}


def _gaussian_reference(params, z):
  """float64 scipy log-densities of the present entries (rows and columns dropped)."""
  cholesky = np.asarray(full.full_gaussian_cholesky(params), np.float64)
  covariance = cholesky @ cholesky.T
  mean = np.asarray(params["mean"], np.float64)
  rows = []
  for row in np.asarray(z, np.float64):
    present = ~np.isnan(row)
    rows.append(stats.multivariate_normal(
        mean[present], covariance[np.ix_(present, present)]).logpdf(row[present])
                if present.any() else 0.0)
  return np.array(rows)


def test_full_gaussian_matches_scipy_for_a_random_cholesky_factor_and_its_marginals():
  prior = priors.make_prior("full_gaussian", 4)
  params = _random_gaussian_params(jax.random.PRNGKey(5), 4, scale=0.5)
  z = np.asarray(jax.random.normal(jax.random.PRNGKey(6), (5, 4)))
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z)),
                             _gaussian_reference(params, z), rtol=1e-5)
  missing = z.copy()
  missing[0, 2] = missing[1, [0, 1]] = missing[3, :] = np.nan
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(missing)),
                             _gaussian_reference(params, missing), rtol=1e-5, atol=1e-5)
  gradient = jax.grad(lambda p: prior.log_prob(p, jnp.asarray(missing)).sum())(params)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(gradient))


def test_full_gaussian_starts_at_standard_normal():
  prior = priors.make_prior("full_gaussian", 3)
  params = prior.init(jax.random.PRNGKey(0))
  z = np.array([[0.3, -1.0, 2.0]], np.float32)
  np.testing.assert_allclose(prior.log_prob(params, jnp.asarray(z)),
                             stats.norm.logpdf(z).sum(-1), rtol=1e-6)


def test_full_gaussian_stays_a_valid_density_after_arbitrary_updates():
  prior = priors.make_prior("full_gaussian", 3)
  params = _random_gaussian_params(jax.random.PRNGKey(7), 3, scale=4.0)  # wild values
  data = jax.random.normal(jax.random.PRNGKey(8), (64, 3)) * jnp.asarray([3.0, 0.1, 1.0])
  optimizer = optax.adam(0.3)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda p: -prior.log_prob(p, data).mean())(params)
    updates, state = optimizer.update(grads, state)
    return optax.apply_updates(params, updates), state

  state = optimizer.init(params)
  for _ in range(50):
    params, state = step(params, state)
  cholesky = np.asarray(full.full_gaussian_cholesky(params))
  assert np.all(np.diagonal(cholesky) > 0)
  np.testing.assert_array_equal(np.triu(cholesky, 1), 0.0)
  np.testing.assert_allclose(prior.log_prob(params, data[:8]),
                             _gaussian_reference(params, np.asarray(data[:8])), rtol=1e-4)


def test_full_gaussian_conditional_draws_have_the_closed_form_moments():
  prior = priors.make_prior("full_gaussian", 3)
  params = _random_gaussian_params(jax.random.PRNGKey(9), 3, scale=0.6)
  cholesky = np.asarray(full.full_gaussian_cholesky(params), np.float64)
  covariance, mean = cholesky @ cholesky.T, np.asarray(params["mean"], np.float64)
  given = np.array([[0.5, np.nan, np.nan], [np.nan, -1.0, 0.8]], np.float32)
  num_draws = 40_000
  draws = np.asarray(prior.sample(params, jax.random.PRNGKey(10), (num_draws,),
                                  given=jnp.asarray(given)), np.float64)
  assert draws.shape == (num_draws, 2, 3)
  for row, values in enumerate(given):
    observed, missing = ~np.isnan(values), np.isnan(values)
    assert np.all(draws[:, row, observed] == values[observed])
    gain = covariance[np.ix_(missing, observed)] @ np.linalg.inv(
        covariance[np.ix_(observed, observed)])
    expected_mean = mean[missing] + gain @ (values[observed] - mean[observed])
    expected_covariance = (covariance[np.ix_(missing, missing)]
                           - gain @ covariance[np.ix_(observed, missing)])
    sample = draws[:, row, missing]
    standard_errors = np.sqrt(np.diagonal(expected_covariance) / num_draws)
    assert np.all(np.abs(sample.mean(0) - expected_mean) < 4 * standard_errors)
    np.testing.assert_allclose(np.cov(sample.T).reshape(expected_covariance.shape),
                               expected_covariance, rtol=0.05, atol=0.01)


def test_full_gaussian_refit_is_the_sample_mean_and_covariance():
  prior = priors.make_prior("full_gaussian", 3)
  z = np.random.default_rng(2).normal(size=(500, 3)) @ np.array(
      [[1.0, 0.5, 0.0], [0.0, 0.7, -0.3], [0.0, 0.0, 0.2]])
  refit = prior.refit(prior.init(jax.random.PRNGKey(0)), jnp.asarray(z, jnp.float32),
                      jax.random.PRNGKey(1))
  np.testing.assert_allclose(refit["mean"], z.mean(0), atol=1e-5)
  cholesky = np.asarray(full.full_gaussian_cholesky(refit), np.float64)
  np.testing.assert_allclose(cholesky @ cholesky.T, np.cov(z.T, bias=True), atol=1e-4)


@pytest.mark.parametrize("kind", ["full_gmm", "full_gaussian"])
def test_full_space_priors_hop_modes(kind):
  prior = priors.make_prior(kind, 5, num_mixture_components=6)
  params = prior.init(jax.random.PRNGKey(11))
  path = np.asarray(priors.mode_hopping(prior, params, jax.random.PRNGKey(12), 3, 4, 2))
  assert path.shape == (3, 5, 5) and np.all(np.isfinite(path))
  assert np.all((path[:, 1:] != path[:, :-1]).sum(-1) <= 2)
