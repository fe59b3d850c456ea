"""Tests for tripjax/conditional.py: attribute requests and conditional generation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tripjax import conditional
from tripjax import data
from tripjax import priors

CELEB_A = data.attribute_specs("celeb_a")
DIGITS = data.attribute_specs("digits")


def test_parse_attribute_request_and_format_back():
  request = conditional.parse_attribute_request(CELEB_A, ["Male=1", " Eyeglasses = 0"])
  names = [spec.name for spec in CELEB_A]
  assert request.shape == (14,) and request.dtype == np.float32
  assert request[names.index("Male")] == 1 and request[names.index("Eyeglasses")] == 0
  assert np.sum(~np.isnan(request)) == 2
  assert conditional.format_attribute_request(CELEB_A, request) == "Male=1, Eyeglasses=0"
  np.testing.assert_array_equal(conditional.parse_attribute_request(DIGITS, ["digit=3"]),
                                [3, np.nan, np.nan])
  assert np.all(np.isnan(conditional.parse_attribute_request(DIGITS, [])))


@pytest.mark.parametrize("assignments, message", [
    (["Hat=1"], "unknown attribute 'Hat'; valid names: Male, Young, Smiling, Eyeglasses"),
    (["Male=2"], "attribute 'Male' has no value '2'; valid values: 0, 1"),
    (["Male"], "not NAME=VALUE; valid names: Male"),
    (["=1"], "not NAME=VALUE"),
    (["Male=1", "Male=0"], "'Male' is given twice"),
])
def test_bad_requests_list_the_valid_choices(assignments, message):
  with pytest.raises(ValueError, match=message):
    conditional.parse_attribute_request(CELEB_A, assignments)


def test_bad_digit_value_lists_the_digits():
  with pytest.raises(ValueError, match="valid values: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"):
    conditional.parse_attribute_request(DIGITS, ["digit=ten"])
  with pytest.raises(TypeError, match="wrap it in a list"):
    conditional.parse_attribute_request(DIGITS, "digit=3")


@pytest.fixture(scope="module")
def joint_prior():
  joint = priors.make_joint_prior(3, [10, 2, 2], num_components=2, rank=2)
  return joint, jax.jit(joint.init)(jax.random.key(0, impl="rbg"))


def test_latents_given_attributes_are_the_joint_prior_conditionals(joint_prior):
  joint, params = joint_prior
  request = conditional.parse_attribute_request(DIGITS, ["digit=3"])
  key = jax.random.PRNGKey(1)
  z = conditional.sample_latents_given_attributes(joint, params, key, request, num=5)
  expected = jax.jit(joint.sample_joint, static_argnums=2)(params, key, (5,),
                                                         jnp.asarray(request))
  np.testing.assert_array_equal(z, expected.latents)
  per_row = np.stack([request, conditional.parse_attribute_request(DIGITS, ["even=1"])])
  assert conditional.sample_latents_given_attributes(joint, params, key,
                                                     per_row).shape == (2, 3)
  seen = []
  images = conditional.sample_images_given_attributes(
      joint, params, key, request, lambda z, y: seen.append(y) or jnp.tanh(z), num=5)
  np.testing.assert_array_equal(images, jnp.tanh(z))
  np.testing.assert_array_equal(seen[0], np.tile(request, (5, 1)))


def test_latents_given_attributes_errors(joint_prior):
  joint, params = joint_prior
  key = jax.random.PRNGKey(2)
  with pytest.raises(ValueError, match="probability zero"):
    conditional.sample_latents_given_attributes(joint, params, key,
                                                np.array([12.0, np.nan, np.nan]), num=2)
  with pytest.raises(ValueError, match="num is required"):
    conditional.sample_latents_given_attributes(joint, params, key, np.zeros(3))
  with pytest.raises(ValueError, match="3 attributes"):
    conditional.sample_latents_given_attributes(joint, params, key, np.zeros(4), num=2)


def test_normal_prior_ignores_the_request_and_the_decoder_gets_it():
  prior = priors.make_prior("normal", 4)
  request = conditional.parse_attribute_request(DIGITS, ["even=0"])
  z = conditional.sample_latents_given_attributes(prior, {}, jax.random.PRNGKey(3),
                                                  request, num=6)
  np.testing.assert_array_equal(z, prior.sample({}, jax.random.PRNGKey(3), (6,)))
  decoded = conditional.sample_images_given_attributes(
      prior, {}, jax.random.PRNGKey(3), request, lambda z, y: y, num=6)
  np.testing.assert_array_equal(decoded, np.tile(request, (6, 1)))
