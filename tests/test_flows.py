"""RealNVP flows on any prior (tripjax.flows.FlowPrior): the change of variables, the
authors' coupling formula, inversion, refits in the base space, refused conditioning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tripjax import flows
from tripjax import priors
import tripjax.prior as trip

KINDS = ("normal", "gmm", "trip", "full_gmm", "full_gaussian")


def _flow_prior(kind, num_variables=4, num_layers=4):
  base = priors.make_prior(kind, num_variables, num_components=3, rank=2,
                           num_mixture_components=5)
  return priors.with_flows(base, num_layers)


def _sharpened(params, factor=2.5):
  """The params with the coupling nets' weights scaled up, so f is far from identity."""
  return dict(params, flow=jax.tree.map(lambda w: factor * w, params["flow"]))


def _reference_forward(flow_params, base_z):
  """The authors' RealNVP `g` in numpy: x_ = x * m; x = x_ + (1 - m) * (x * exp(s(x_))
  + t(x_)) with s = tanh(mlp), layer i keeping the coordinates j % 2 == i % 2."""
  def mlp(layers, x):
    for layer in layers[:-1]:
      x = x @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])
      x = np.where(x > 0, x, 0.01 * x)
    return x @ np.asarray(layers[-1]["kernel"]) + np.asarray(layers[-1]["bias"])

  x = np.asarray(base_z, np.float64)
  for i, nets in enumerate(flow_params):
    mask = (np.arange(x.shape[-1]) % 2 == i % 2).astype(np.float64)
    kept = x * mask
    scale = np.tanh(mlp(nets["s"], kept)) * (1 - mask)
    shift = mlp(nets["t"], kept) * (1 - mask)
    x = kept + (1 - mask) * (x * np.exp(scale) + shift)
  return x


def test_the_flow_is_the_authors_realnvp_and_inverts():
  prior = _flow_prior("trip")
  params = _sharpened(prior.init(jax.random.PRNGKey(0)))
  assert len(params["flow"]) == 4
  assert params["flow"][0]["s"][0]["kernel"].shape == (4, 64)
  base_z = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
  z = prior.forward(params, base_z)
  np.testing.assert_allclose(z, _reference_forward(params["flow"], base_z), rtol=1e-5,
                             atol=1e-5)
  assert np.abs(np.asarray(z - base_z)).max() > 0.5  # far from identity
  np.testing.assert_allclose(prior.forward(params, prior.inverse(params, z)), z,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(prior.inverse(params, z), base_z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_is_the_base_log_prob_plus_the_jacfwd_log_determinant(kind):
  prior = _flow_prior(kind)
  params = _sharpened(prior.init(jax.random.PRNGKey(2)))
  z = prior.sample(params, jax.random.PRNGKey(3), (3,))
  inverse_jacobian = jax.jit(jax.jacfwd(lambda point: prior.inverse(params, point)))
  for row in z:
    jacobian = inverse_jacobian(row)
    _, log_determinant = np.linalg.slogdet(np.asarray(jacobian, np.float64))
    expected = (prior.base.log_prob(params["base"], prior.inverse(params, row))
                + log_determinant)
    np.testing.assert_allclose(prior.log_prob(params, row), expected, rtol=1e-4,
                               atol=1e-4)
  assert abs(log_determinant) > 0.1  # the flow changes volume


def test_gradients_are_finite_pathwise_and_through_log_prob():
  prior = _flow_prior("trip")
  params = prior.init(jax.random.PRNGKey(4))
  pathwise = jax.jit(jax.grad(
      lambda p: jnp.sum(prior.sample(p, jax.random.PRNGKey(5), (8,)))))(params)
  assert any(np.abs(leaf).max() > 0 for leaf in jax.tree.leaves(pathwise["flow"]))
  z = prior.sample(params, jax.random.PRNGKey(6), (8,))
  grads = jax.jit(jax.grad(lambda p: jnp.sum(prior.log_prob(p, z))))(params)
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))


def _gmm_base_params(means, scale):
  variables = [trip.Continuous(means.shape[1])] * means.shape[0]
  cores = jnp.ones(means.shape + (1, 1))
  return trip.from_natural(variables, cores, jnp.asarray(means),
                           jnp.full(means.shape, scale))


def test_refit_on_flowed_samples_recovers_the_base_components():
  true_means = np.array([[-3.0, 3.0], [-2.0, 2.5]], np.float32)  # (d=2, N=2)
  prior = priors.with_flows(priors.make_prior("gmm", 2, num_components=2), 2)
  params = _sharpened(prior.init(jax.random.PRNGKey(7)), 1.5)
  params = dict(params, base=_gmm_base_params(true_means, 0.3))
  z = prior.sample(params, jax.random.PRNGKey(8), (4000,))
  start = dict(params, base=_gmm_base_params(np.zeros((2, 2), np.float32), 1.0))
  refit = prior.refit(start, z, jax.random.PRNGKey(9))
  recovered = np.sort(np.asarray(refit["base"].means), axis=1)
  np.testing.assert_allclose(recovered, true_means, atol=0.1)
  np.testing.assert_allclose(jnp.exp(refit["base"].log_scales), 0.3, atol=0.05)
  # The flow is kept, and a refit of the base on z itself (no f^-1) would be wrong.
  assert refit["flow"] is start["flow"]
  naive = prior.base.refit(start["base"], z, jax.random.PRNGKey(9))
  assert np.abs(np.sort(np.asarray(naive.means), axis=1) - true_means).max() > 0.3


def test_conditioning_under_a_flow_is_refused_with_the_prior_named():
  prior = _flow_prior("trip")
  params = prior.init(jax.random.PRNGKey(10))
  z = np.asarray(prior.sample(params, jax.random.PRNGKey(11), (2,)))
  missing = z.copy()
  missing[0, 1] = np.nan
  with pytest.raises(ValueError, match=r"trip\+realnvp4 prior has no exact marginals"):
    prior.log_prob(params, jnp.asarray(missing))
  with pytest.raises(ValueError, match=r"trip\+realnvp4 prior has no exact marginals"):
    prior.log_prob(params, jnp.asarray(z), jnp.ones(z.shape, bool))
  with pytest.raises(ValueError, match=r"trip\+realnvp4 prior has no exact conditionals"):
    prior.sample(params, jax.random.PRNGKey(12), (), given=jnp.asarray(missing))
  # Traced, a NaN entry cannot raise: its row is NaN, never a number.
  traced = np.asarray(jax.jit(prior.log_prob)(params, jnp.asarray(missing)))
  assert np.isnan(traced[0]) and np.isfinite(traced[1])


def test_mode_hopping_hops_in_the_base_space_and_pushes_through_the_flow():
  prior = _flow_prior("trip", num_variables=6, num_layers=2)
  params = _sharpened(prior.init(jax.random.PRNGKey(13)))
  key = jax.random.PRNGKey(14)
  hop = jax.jit(priors.mode_hopping, static_argnums=(0, 3, 4, 5))
  path = hop(prior, params, key, 3, 4, 2)
  base_path = hop(prior.base, params["base"], key, 3, 4, 2)
  np.testing.assert_allclose(path, prior.forward(params, base_path), rtol=1e-5, atol=1e-5)
  moved = np.abs(np.diff(np.asarray(prior.inverse(params, path)), axis=1)) > 1e-4
  assert moved.sum(-1).max() <= 2
  assert (np.abs(np.diff(np.asarray(path), axis=1)) > 1e-4).sum(-1).max() > 2


def test_with_flows_zero_is_the_prior_itself_and_kinds_name_the_base():
  base = priors.make_prior("full_gmm", 3)
  assert priors.with_flows(base, 0) is base
  flowed = priors.with_flows(base, 3)
  assert isinstance(flowed, flows.FlowPrior) and flowed.kind == "full_gmm+realnvp3"
  assert priors.base_prior(flowed) is base and priors.base_prior(base) is base
  assert isinstance(flowed, priors.LatentPrior)
  assert priors.with_flows(priors.make_prior("normal", 3), 1).refit is None
  with pytest.raises(ValueError, match="num_layers"):
    flows.FlowPrior(base, -1)
