"""refit_components (per-variable 1-D EM) against sklearn's GaussianMixture."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats
from sklearn import mixture

import tripjax.prior as trip

SEED = 99
NUM_SAMPLES = 3000
# Per continuous variable: (means, stds, weights).
TRUTH = {
    0: ([-5.0, 0.0, 6.0], [0.5, 1.0, 0.7], [0.3, 0.5, 0.2]),
    2: ([-3.0, 3.0], [1.0, 0.5], [0.6, 0.4]),
    3: ([2.0], [1.5], [1.0]),
}
VARIABLES = [trip.Continuous(3), trip.Discrete(2), trip.Continuous(2),
             trip.Continuous(1)]
NAN_RATE = {0: 0.0, 1: 0.0, 2: 0.15, 3: 0.3}


def _data():
  rng = np.random.default_rng(SEED)
  z = np.empty((NUM_SAMPLES, 4))
  for j, (mus, sds, ws) in TRUTH.items():
    k = rng.choice(len(ws), size=NUM_SAMPLES, p=ws)
    z[:, j] = rng.normal(np.array(mus)[k], np.array(sds)[k])
  z[:, 1] = rng.integers(0, 2, size=NUM_SAMPLES)
  for j, rate in NAN_RATE.items():
    z[rng.uniform(size=NUM_SAMPLES) < rate, j] = np.nan
  return z


def _best_weight_log_likelihood(values, means, stds, iters=500):
  """Mean log-likelihood maximized over mixing weights (concave problem)."""
  log_dens = stats.norm.logpdf(values[:, None], means, stds)
  weights = np.full(len(means), 1.0 / len(means))
  for _ in range(iters):
    log_joint = log_dens + np.log(weights)
    resp = np.exp(log_joint - special.logsumexp(log_joint, 1, keepdims=True))
    weights = resp.mean(0)
  return special.logsumexp(log_dens + np.log(weights), 1).mean()


@pytest.fixture(scope="module")
def refit_case():
  z = _data()
  params = trip.init(jax.random.key(0), VARIABLES, rank=2)
  new = trip.refit_components(params, jnp.asarray(z, jnp.float32),
                              num_iters=200, key=jax.random.key(1))
  return z, params, new


def test_refit_matches_sklearn(refit_case):
  z, _, new = refit_case
  nat = trip.natural(new)
  means, scales = np.asarray(nat.means), np.asarray(nat.scales)
  assert np.all(np.isfinite(means)) and np.all(np.isfinite(scales))
  for j, (mus, _, _) in TRUTH.items():
    k = len(mus)
    values = z[~np.isnan(z[:, j]), j]
    gmm = mixture.GaussianMixture(k, tol=1e-10, max_iter=2000, n_init=3,
                                  random_state=0).fit(values[:, None])
    order = np.argsort(gmm.means_[:, 0])
    sk_means = gmm.means_[order, 0]
    sk_stds = np.sqrt(gmm.covariances_[order, 0, 0])
    got_order = np.argsort(means[j, :k])
    np.testing.assert_allclose(means[j, :k][got_order], sk_means, atol=0.03,
                               err_msg=f"variable {j}")
    np.testing.assert_allclose(scales[j, :k][got_order], sk_stds, rtol=0.03,
                               err_msg=f"variable {j}")
    ours = _best_weight_log_likelihood(values, means[j, :k], scales[j, :k])
    theirs = gmm.score(values[:, None])
    assert ours >= theirs - 1e-3, (j, ours, theirs)


def test_refit_single_component_is_mle(refit_case):
  z, _, new = refit_case
  values = z[~np.isnan(z[:, 3]), 3]
  nat = trip.natural(new)
  np.testing.assert_allclose(float(nat.means[3, 0]), values.mean(), rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(float(nat.scales[3, 0]), values.std(), rtol=1e-3)


def test_refit_keeps_cores_and_discrete_variables(refit_case):
  _, params, new = refit_case
  assert isinstance(new, trip.TRIPParams)
  assert jax.tree.structure(new) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
    assert a.dtype == b.dtype and a.shape == b.shape
  old_nat, new_nat = trip.natural(params), trip.natural(new)
  np.testing.assert_array_equal(np.asarray(new_nat.cores),
                                np.asarray(old_nat.cores))
  np.testing.assert_array_equal(np.asarray(new_nat.means)[1],
                                np.asarray(old_nat.means)[1])
  np.testing.assert_array_equal(np.asarray(new_nat.scales)[1],
                                np.asarray(old_nat.scales)[1])
  # Discrete log_prob is untouched; the refit continuous fit is finite.
  x = jnp.array([[np.nan, 1.0, np.nan, np.nan], [0.1, 0.0, 3.0, 2.0]])
  lp_old, lp_new = trip.log_prob(params, x), trip.log_prob(new, x)
  np.testing.assert_allclose(float(lp_new[0]), float(lp_old[0]), rtol=1e-6)
  assert np.isfinite(float(lp_new[1]))


def test_refit_without_key_and_float64(x64):
  del x64
  z = _data()[:1000]
  params = trip.init(jax.random.key(2), VARIABLES, rank=1, dtype=jnp.float64)
  new = trip.refit_components(params, jnp.asarray(z), num_iters=50)
  for leaf in jax.tree.leaves(new):
    assert leaf.dtype == jnp.float64
    assert np.all(np.isfinite(np.asarray(leaf)))
