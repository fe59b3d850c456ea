"""Tests for the conditional VAE-TRIP bound (paper eq. 14) in tripjax.losses."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special
from scipy import stats

import prior_reference as ref
from tripjax import losses
from tripjax import priors

NUM_LATENTS, NUM_VALUES = 2, (3, 2)
ATTRIBUTES = np.array([[0, 1], [2, np.nan], [np.nan, 0], [np.nan, np.nan]])


@pytest.fixture(scope="module")
def tiny():
  joint = priors.make_joint_prior(NUM_LATENTS, NUM_VALUES, num_components=2, rank=2,
                                  permutation_seed=0)
  return joint, ref.joint_ring(joint, seed=5)


def _ring_order(joint, z, attributes):
  """[z, y] (..., d + a) in the ring's order: position i holds variable permutation[i]."""
  attributes = np.broadcast_to(attributes, z.shape[:-1] + attributes.shape[-1:])
  return np.concatenate([z, attributes], -1)[..., list(joint.permutation)]


def _brute_force_log_probs(joint, ring, z, attributes):
  """log p(z, y_obs) and log p(z), (k, B) each, by enumerating the ring."""
  no_attributes = np.full(attributes.shape, np.nan)
  joint_values = [ref.log_prob(ring, _ring_order(joint, z_s, attributes)) for z_s in z]
  latent_values = [ref.log_prob(ring, _ring_order(joint, z_s, no_attributes)) for z_s in z]
  return np.array(joint_values), np.array(latent_values)


def test_eq14_bound_matches_brute_force(tiny, x64):
  joint, ring = tiny
  params = ref.to_params(ring, jnp.float64)
  rng = np.random.default_rng(0)
  mean = rng.normal(size=(4, NUM_LATENTS))
  log_scale = 0.3 * rng.normal(size=(4, NUM_LATENTS))
  centers = rng.normal(size=(4, NUM_LATENTS))
  key, num_samples = jax.random.PRNGKey(1), 3

  def log_likelihood_fn(z):  # a toy decoder: log p(x|z) = -|z - c(x)|^2
    return -jnp.sum(jnp.square(z - centers), axis=-1)

  terms = jax.jit(lambda mean, log_scale: losses.conditional_elbo(
      key, mean, log_scale, log_likelihood_fn,
      lambda z: joint.log_prob_parts(params, z, jnp.asarray(ATTRIBUTES)), num_samples))(
          jnp.asarray(mean), jnp.asarray(log_scale))
  # The reparameterized z of the bound (same key); everything else by enumeration.
  z = np.asarray(losses.sample_gaussian(key, jnp.asarray(mean), jnp.asarray(log_scale),
                                        num_samples))
  log_joint, log_latent = _brute_force_log_probs(joint, ring, z, ATTRIBUTES)
  log_q = stats.norm.logpdf(z, mean, np.exp(log_scale)).sum(-1)
  log_likelihood = -np.sum(np.square(z - centers), -1)
  expected = {
      "log_likelihood": log_likelihood.mean(0),
      "attribute_log_likelihood": (log_joint - log_latent).mean(0),
      "kl": (log_q - log_latent).mean(0),
      "bound": (log_likelihood + log_joint - log_q).mean(0),
  }
  for name, value in expected.items():
    np.testing.assert_allclose(getattr(terms, name), value, rtol=1e-9, atol=1e-12,
                               err_msg=name)
  assert terms.attribute_log_likelihood[3] == 0.0  # no attribute observed
  assert np.all(terms.attribute_log_likelihood[:3] < 0)


def test_hiding_an_attribute_sums_it_out(tiny, x64):
  """log p(y_0 = 2 | z) with y_1 hidden is log Σ_v p(y_0 = 2, y_1 = v | z)."""
  joint, ring = tiny
  params = ref.to_params(ring, jnp.float64)
  z = np.random.default_rng(2).normal(size=(1, 5, NUM_LATENTS))

  @jax.jit  # compiled once for the 3 calls
  def attribute_log_prob(params, z, attributes):  # log p(y_obs | z)
    return joint.log_prob_parts(params, z, attributes).attribute

  hidden = attribute_log_prob(params, jnp.asarray(z[0]), jnp.array([2.0, np.nan]))
  filled = [attribute_log_prob(params, jnp.asarray(z[0]), jnp.array([2.0, value]))
            for value in range(NUM_VALUES[1])]
  np.testing.assert_allclose(hidden, special.logsumexp(np.stack(filled), axis=0),
                             rtol=1e-12)
  brute_filled = []
  for value in range(NUM_VALUES[1]):
    log_joint, log_latent = _brute_force_log_probs(joint, ring, z, np.array([2.0, value]))
    brute_filled.append(log_joint[0] - log_latent[0])
  np.testing.assert_allclose(hidden, special.logsumexp(np.stack(brute_filled), axis=0),
                             rtol=1e-10)


def test_without_attributes_the_bound_is_the_elbo_and_gradients_are_finite():
  joint = priors.make_joint_prior(3, NUM_VALUES, num_components=3, rank=3)
  params = jax.jit(joint.init)(jax.random.key(0, impl="rbg"))
  mean = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
  log_scale = jnp.full((4, 3), -0.5)
  log_likelihood_fn = lambda z: -jnp.sum(jnp.square(z - 0.5), axis=-1)
  key = jax.random.PRNGKey(2)

  def bound(params, mean, attributes):
    return losses.conditional_elbo(
        key, mean, log_scale, log_likelihood_fn,
        lambda z: joint.log_prob_parts(params, z, attributes), num_samples=1)

  @jax.jit
  def bounds_and_grads(params, mean):  # one compilation for all the checks
    hidden = jnp.full((4, 2), jnp.nan)
    elbo = losses.elbo(key, mean, log_scale, log_likelihood_fn,
                       lambda z: joint.latent_log_prob(params, z), num_samples=1)
    attributes = jnp.asarray(ATTRIBUTES, jnp.float32)
    grads = jax.grad(lambda p, m: jnp.sum(bound(p, m, attributes).bound),
                     argnums=(0, 1))(params, mean)
    return bound(params, mean, hidden), elbo, grads

  terms, elbo, grads = bounds_and_grads(params, mean)
  np.testing.assert_allclose(terms.bound, elbo.elbo, rtol=1e-6)
  np.testing.assert_array_equal(terms.attribute_log_likelihood, 0.0)
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))
  assert np.any(np.asarray(grads[0].core_roots) != 0)
