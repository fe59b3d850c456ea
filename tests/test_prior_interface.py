"""Tests for tripjax.priors.LatentPrior: every prior face satisfies it and behaves.

`make_prior`'s priors, the joint prior and `DistraxPrior` (any distrax distribution as
a prior), and the lazy import of distrax behind `tripjax.prior.Distribution`.
"""
import subprocess
import sys

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tripjax.prior as trip
from tripjax import conditional
from tripjax import priors

NUM_VARIABLES = 3


def _standard_normal_prior(num_variables: int = NUM_VARIABLES) -> priors.DistraxPrior:
  return priors.DistraxPrior(
      "normal", num_variables, init=lambda key: {},
      make_distribution=lambda params: distrax.MultivariateNormalDiag(
          jnp.zeros(num_variables), jnp.ones(num_variables)))


def _trip_prior(num_variables: int = NUM_VARIABLES) -> priors.DistraxPrior:
  """make_prior("trip")'s init and refit around the TRIP as a distrax distribution."""
  made = priors.make_prior("trip", num_variables, num_components=2, rank=2)
  return priors.DistraxPrior("trip", num_variables, init=made.init,
                             make_distribution=trip.Distribution, refit=made.refit)


PRIORS = {
    "normal": lambda: priors.make_prior("normal", NUM_VARIABLES),
    "gmm": lambda: priors.make_prior("gmm", NUM_VARIABLES, num_components=2),
    "trip": lambda: priors.make_prior("trip", NUM_VARIABLES, num_components=2, rank=2),
    "joint_trip": lambda: priors.make_joint_prior(NUM_VARIABLES, [3, 2],
                                                  num_components=2, rank=2),
    "distrax_normal": _standard_normal_prior,
    "distrax_trip": _trip_prior,
}


@pytest.mark.parametrize("name", list(PRIORS))
def test_every_prior_is_a_latent_prior_and_behaves_as_one(name):
  prior = PRIORS[name]()
  assert isinstance(prior, priors.LatentPrior)
  assert prior.num_variables == NUM_VARIABLES
  assert isinstance(prior.kind, str) and prior.kind in name
  key_init, key_sample, key_refit = jax.random.split(jax.random.PRNGKey(0), 3)

  @jax.jit  # one compilation for everything the protocol promises
  def evaluate(key_init, key_sample):
    params = prior.init(key_init)
    z = prior.sample(params, key_sample, (4, 5))
    single = prior.sample(params, key_sample)
    return params, z, single, prior.log_prob(params, z), prior.log_prob(params, single)

  params, z, single, log_prob, single_log_prob = evaluate(key_init, key_sample)
  assert z.shape == (4, 5, NUM_VARIABLES) and single.shape == (NUM_VARIABLES,)
  assert log_prob.shape == (4, 5) and single_log_prob.shape == ()
  assert np.all(np.isfinite(z)) and np.all(np.isfinite(log_prob))
  if prior.refit is None:
    assert name.endswith("normal")
    return
  refit = jax.jit(prior.refit)(params, z.reshape(-1, NUM_VARIABLES), key_refit)
  assert jax.tree.structure(refit) == jax.tree.structure(params)


def test_objects_missing_a_member_are_not_latent_priors():
  complete = priors.make_prior("normal", 2)
  assert isinstance(complete, priors.LatentPrior)
  assert not isinstance(object(), priors.LatentPrior)
  as_dict = complete._asdict()
  del as_dict["refit"]  # None is a valid refit; a missing one is not
  assert not isinstance(type("NoRefit", (), as_dict)(), priors.LatentPrior)


def test_distrax_normal_is_make_prior_normal():
  prior, reference = _standard_normal_prior(4), priors.make_prior("normal", 4)
  z = jax.random.normal(jax.random.PRNGKey(1), (6, 4)) * 2.0
  np.testing.assert_allclose(prior.log_prob({}, z), reference.log_prob({}, z),
                             rtol=1e-6)
  num_draws = 20_000
  draws = np.asarray(jax.jit(prior.sample, static_argnums=2)(
      {}, jax.random.PRNGKey(2), (num_draws,)), np.float64)
  assert draws.shape == (num_draws, 4)
  # Mean 0 (standard error 1/sqrt(n)) and variance 1 (standard error sqrt(2/n)).
  assert np.all(np.abs(draws.mean(0)) < 5 / np.sqrt(num_draws))
  assert np.all(np.abs(draws.var(0) - 1) < 5 * np.sqrt(2 / num_draws))
  assert prior.sample({}, jax.random.PRNGKey(3), 7).shape == (7, 4)


def test_distrax_trip_is_make_prior_trip():
  prior = _trip_prior(4)
  reference = priors.make_prior("trip", 4, num_components=2, rank=2)
  params = jax.jit(prior.init)(jax.random.key(4, impl="rbg"))
  z = reference.sample(params, jax.random.PRNGKey(5), (8,))
  np.testing.assert_allclose(prior.log_prob(params, z), reference.log_prob(params, z),
                             rtol=1e-6)
  assert isinstance(prior.distribution(params), distrax.Distribution)


def test_distrax_prior_checks_its_distribution_and_arguments():
  scalars = priors.DistraxPrior(
      "independent", 3, init=lambda key: {},
      make_distribution=lambda params: distrax.Normal(jnp.zeros(3), jnp.ones(3)))
  with pytest.raises(ValueError, match=r"event shape \(3,\).*distrax.Independent"):
    scalars.log_prob({}, jnp.zeros((2, 3)))
  wrong_size = priors.DistraxPrior(
      "normal", 2, init=lambda key: {},
      make_distribution=lambda params: distrax.MultivariateNormalDiag(jnp.zeros(3)))
  with pytest.raises(ValueError, match=r"event shape \(2,\) and batch shape \(\), got "
                                       r"event shape \(3,\)"):
    wrong_size.sample({}, jax.random.PRNGKey(0), (2,))
  prior = _standard_normal_prior()
  with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 3\)"):
    prior.log_prob({}, jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="num_variables"):
    priors.DistraxPrior("normal", 0, init=lambda key: {},
                        make_distribution=lambda params: None)
  with pytest.raises(TypeError, match="make_distribution must be callable"):
    priors.DistraxPrior("normal", 2, init=lambda key: {}, make_distribution=None)
  hash(prior)  # a static jit argument


def test_conditional_sampling_takes_any_latent_prior():
  """A prior over z alone ignores the attribute request (the concatenation CVAE)."""
  prior = _standard_normal_prior()
  request = np.array([3.0, np.nan], np.float32)
  z = conditional.sample_latents_given_attributes(prior, {}, jax.random.PRNGKey(6),
                                                  request, num=5)
  np.testing.assert_array_equal(z, prior.sample({}, jax.random.PRNGKey(6), (5,)))


@pytest.mark.parametrize("name", ["joint_trip", "distrax_normal"])
def test_mode_hopping_needs_a_conditioning_prior(name):
  with pytest.raises(TypeError, match="make_prior Prior"):
    priors.mode_hopping(PRIORS[name](), {}, jax.random.PRNGKey(0), 2, 3, 1)


def test_importing_the_priors_does_not_import_distrax():
  script = """
import sys
import jax, jax.numpy as jnp
import tripjax.prior, tripjax.priors, tripjax.conditional
assert 'distrax' not in sys.modules, 'distrax imported eagerly'
prior = tripjax.priors.DistraxPrior(
    'trip', 3, init=lambda key: tripjax.prior.init(
        key, [tripjax.prior.Continuous(2)] * 3, rank=2),
    make_distribution=lambda params: tripjax.prior.Distribution(params))
assert 'distrax' not in sys.modules, 'DistraxPrior imported distrax'
params = prior.init(jax.random.PRNGKey(0))
dist = tripjax.prior.Distribution(params)
assert 'distrax' in sys.modules
from tripjax.prior import Distribution
import distrax
assert Distribution is tripjax.prior.Distribution
assert isinstance(dist, distrax.Distribution)
assert 'Distribution' in dir(tripjax.prior) and 'Distribution' in tripjax.prior.__all__
z = dist.sample(seed=jax.random.PRNGKey(1), sample_shape=(2,))
assert z.shape == (2, 3), z.shape
assert jnp.allclose(dist.log_prob(z), tripjax.prior.log_prob(params, z))
assert jnp.allclose(prior.log_prob(params, z), dist.log_prob(z))
print('ok')
"""
  result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == "ok"
