"""Tests for tripjax/likelihoods.py: normalization, closed forms, shapes, tails."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tripjax import likelihoods

PIXEL_VALUES = np.arange(256) / 255.0


@pytest.mark.parametrize("loc, log_scale", [
    (0.5, -2.0), (0.0, -4.0), (1.0, -4.0), (0.3, 1.0), (-0.5, -3.0), (1.7, -1.0),
    (0.5, -9.0), (0.5 + 0.5 / 255, -12.0), (0.5, 5.0),
])
def test_discretized_logistic_sums_to_one_over_256_bins(loc, log_scale):
  log_probs = likelihoods.discretized_logistic_log_prob(
      jnp.full(256, loc), jnp.full(256, log_scale), jnp.asarray(PIXEL_VALUES),
      event_ndims=0)
  assert np.all(np.isfinite(log_probs))
  assert np.all(np.asarray(log_probs) <= 1e-6)
  np.testing.assert_allclose(jnp.sum(jnp.exp(log_probs)), 1.0, atol=1e-5)


def test_discretized_logistic_float64_normalization_and_cdf(x64):
  rng = np.random.default_rng(0)
  for loc, log_scale in zip(rng.uniform(-0.2, 1.2, 5), rng.uniform(-6, 0, 5)):
    log_probs = likelihoods.discretized_logistic_log_prob(
        jnp.full(256, loc), jnp.full(256, log_scale), jnp.asarray(PIXEL_VALUES),
        event_ndims=0)
    np.testing.assert_allclose(jnp.sum(jnp.exp(log_probs)), 1.0, atol=1e-12)
    # Interior bin k: CDF(k/255 + 1/510) - CDF(k/255 - 1/510), logistic CDF.
    def cdf(value):
      return 1.0 / (1.0 + np.exp(-(value - loc) / np.exp(log_scale)))
    expected = cdf(PIXEL_VALUES[100] + 0.5 / 255) - cdf(PIXEL_VALUES[100] - 0.5 / 255)
    np.testing.assert_allclose(np.exp(log_probs[100]), expected, rtol=1e-10)
    np.testing.assert_allclose(np.exp(log_probs[0]), cdf(0.5 / 255), rtol=1e-10)
    survival = 1.0 / (1.0 + np.exp((1 - 0.5 / 255 - loc) / np.exp(log_scale)))
    np.testing.assert_allclose(np.exp(log_probs[255]), survival, rtol=1e-10)


def test_discretized_logistic_tiny_scale_puts_all_mass_on_one_bin():
  x = jnp.asarray(PIXEL_VALUES[[0, 37, 255]])
  log_probs = likelihoods.discretized_logistic_log_prob(
      x, jnp.full(3, -20.0), x, event_ndims=0)
  np.testing.assert_allclose(log_probs, 0.0, atol=1e-6)
  far = likelihoods.discretized_logistic_log_prob(
      jnp.full(2, 0.9), jnp.full(2, -20.0), x[:2], event_ndims=0)
  assert np.all(np.isfinite(far)) and np.all(far < -1e3)


def test_discretized_logistic_gradients_are_finite_in_the_tails():
  def total(loc, log_scale):
    return jnp.sum(likelihoods.discretized_logistic_log_prob(
        loc, log_scale, jnp.asarray(PIXEL_VALUES), event_ndims=0))
  for loc, log_scale in [(0.5, -15.0), (3.0, -7.0), (-3.0, -7.0), (0.5, 8.0)]:
    grads = jax.grad(total, argnums=(0, 1))(jnp.full(256, loc),
                                            jnp.full(256, log_scale))
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_bernoulli_matches_closed_form():
  rng = np.random.default_rng(1)
  logits = rng.normal(0, 3, (2, 5, 4, 4, 1)).astype(np.float32)
  x = (rng.uniform(size=logits.shape) < 0.5).astype(np.float32)
  probability = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = np.sum(x * np.log(probability) + (1 - x) * np.log1p(-probability),
                    axis=(-3, -2, -1))
  actual = likelihoods.bernoulli_log_prob(jnp.asarray(logits), jnp.asarray(x))
  assert actual.shape == (2, 5)
  np.testing.assert_allclose(actual, expected, rtol=1e-5)


def test_bernoulli_extreme_logits_are_finite():
  logits = jnp.array([-100.0, 100.0, -100.0, 100.0])
  x = jnp.array([0.0, 1.0, 1.0, 0.0])
  log_probs = likelihoods.bernoulli_log_prob(logits, x, event_ndims=0)
  np.testing.assert_allclose(log_probs, [0.0, 0.0, -100.0, -100.0], atol=1e-5)


@pytest.mark.parametrize("likelihood, channels", [
    ("bernoulli", 1), ("discretized_logistic", 3)])
@pytest.mark.parametrize("batch_shape", [(2,), (3, 2)])
def test_log_likelihood_dispatch_shapes(likelihood, channels, batch_shape):
  num_params = likelihoods.num_params_per_channel(likelihood)
  decoder_output = jnp.zeros((*batch_shape, 8, 8, num_params * channels))
  images = jnp.zeros((*batch_shape, 8, 8, channels))
  log_probs = likelihoods.log_likelihood(likelihood, decoder_output, images)
  assert log_probs.shape == batch_shape
  assert np.all(np.isfinite(log_probs))
  mean = likelihoods.likelihood_mean(likelihood, decoder_output)
  assert mean.shape == images.shape
  assert 0.0 <= float(mean.min()) and float(mean.max()) <= 1.0


def test_log_likelihood_discretized_logistic_uses_loc_then_log_scale():
  loc, log_scale = jnp.full((1, 2, 2, 3), 0.2), jnp.full((1, 2, 2, 3), -3.0)
  images = jnp.full((1, 2, 2, 3), 0.2)
  expected = likelihoods.discretized_logistic_log_prob(loc, log_scale, images)
  actual = likelihoods.log_likelihood(
      "discretized_logistic", jnp.concatenate([loc, log_scale], -1), images)
  np.testing.assert_allclose(actual, expected, rtol=1e-6)


def test_unknown_likelihood_and_bad_channels():
  with pytest.raises(ValueError, match="bernoulli, discretized_logistic"):
    likelihoods.num_params_per_channel("gaussian")
  with pytest.raises(ValueError, match="multiple of 2"):
    likelihoods.log_likelihood("discretized_logistic", jnp.zeros((1, 2, 2, 3)),
                               jnp.zeros((1, 2, 2, 3)))


def test_squared_error_is_the_authors_term_on_images_in_minus_one_one():
  # The authors' VAE: -((x_hat - x) ** 2).sum over (H, W, C), x in [-1, 1].
  images = np.array([[[[0.0], [1.0]], [[0.25], [0.5]]],
                     [[[1.0], [1.0]], [[0.0], [0.75]]]], np.float32)  # (2, 2, 2, 1) in [0, 1]
  reconstructions = np.array([[[[-0.5], [0.8]], [[0.0], [0.1]]],
                              [[[2.0], [1.0]], [[-1.0], [0.0]]]], np.float32)
  signed = 2.0 * images - 1.0
  expected = -((reconstructions - signed) ** 2).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(expected, [-(0.25 + 0.04 + 0.25 + 0.01), -(1 + 0 + 0 + 0.25)])
  np.testing.assert_allclose(
      likelihoods.log_likelihood("squared_error", jnp.asarray(reconstructions),
                                 jnp.asarray(images)), expected, rtol=1e-6)
  assert likelihoods.num_params_per_channel("squared_error") == 1
  np.testing.assert_allclose(
      likelihoods.likelihood_mean("squared_error", jnp.asarray(reconstructions)),
      np.clip((reconstructions + 1) / 2, 0, 1))
