"""Tests for tripjax/metrics/digit_quality.py: the three scores by their definitions.

A randomly initialized classifier is enough: every check compares a score with what its
definition gives from the same classifier's outputs, on the offline test digits.
"""
import jax
import numpy as np
import pytest

from tripjax import data as data_lib
from tripjax.metrics import classifier_fd
from tripjax.metrics import digit_quality


@pytest.fixture(scope="module")
def classifier_and_digits():
  params = classifier_fd.init_params(jax.random.key(0), feature_dim=16)
  digits = data_lib.load_dataset("digits", "test", binarize=False).images[:200]
  return params, digits


def test_confident_share_and_class_tv_by_definition():
  probabilities = np.array([[0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.89, 0.11]])
  assert digit_quality.confident_share(probabilities) == 0.5
  assert digit_quality.confident_share(probabilities, threshold=0.5) == 1.0
  # Histograms (1/2, 1/2) and (1/4, 3/4): TV 1/4; disjoint supports: 1.
  assert digit_quality.class_tv([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx(0.25)
  assert digit_quality.class_tv([3, 3], [4, 5, 4]) == pytest.approx(1.0)
  with pytest.raises(ValueError, match="non-empty"):
    digit_quality.confident_share(np.zeros((0, 10)))


def test_scores_of_a_set_against_itself_and_of_one_class(classifier_and_digits):
  params, digits = classifier_and_digits
  probabilities = classifier_fd.class_probabilities(params, digits)
  assert probabilities.shape == (len(digits), 10)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
  same = digit_quality.digit_quality(params, digits, digits, threshold=0.2)
  assert abs(same.classifier_fd) < 1e-3 and same.class_tv == 0.0
  assert same.confident_share == np.mean(probabilities.max(-1) >= 0.2)
  # Only the digits of the most predicted class: TV = 1 - that class's reference share.
  predicted = probabilities.argmax(-1)
  top = np.bincount(predicted).argmax()
  one_class = digit_quality.digit_quality(params, digits[predicted == top], digits)
  assert one_class.class_tv == pytest.approx(1 - np.mean(predicted == top))
  assert one_class.classifier_fd > 0


def test_scores_of_a_sampler_are_those_of_its_drawn_samples(classifier_and_digits):
  """digit_quality_of_sampler scores `sampling.draw_samples`'s images, and its FD is
  `classifier_fd_from_sampler`'s with the same seed and batch size (the same samples)."""
  from tripjax.metrics import sampling
  params, digits = classifier_and_digits

  def sample_fn(key, num):  # real digits in a key-dependent order
    return digits[jax.random.choice(key, len(digits), (num,))]

  kwargs = dict(num_samples=130, batch_size=50, seed=3)
  quality = digit_quality.digit_quality_of_sampler(sample_fn, digits, params, **kwargs)
  images = sampling.draw_samples(sample_fn, **kwargs)
  assert images.shape == (130, 28, 28, 1)
  assert quality == digit_quality.digit_quality(params, images, digits, batch_size=50)
  fd = sampling.classifier_fd_from_sampler(sample_fn, digits, params, progress=False,
                                           **kwargs)
  assert quality.classifier_fd == pytest.approx(fd, rel=1e-4, abs=1e-4)
  other_seed = digit_quality.digit_quality_of_sampler(sample_fn, digits, params,
                                                      num_samples=130, batch_size=50,
                                                      seed=4)
  assert other_seed.classifier_fd != quality.classifier_fd
