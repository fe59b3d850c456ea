"""Tests for tripjax/training/imputation.py: the predictor that imputes the hidden
training labels of the `cvae_imputed` baseline (through `cvae.impute_hidden_labels`,
the function its runs call) never sees a hidden label."""
import jax
import numpy as np
import pytest

from tripjax import data as data_lib
from tripjax.configs import digits_cvae_trip
from tripjax.training import config_checks
from tripjax.training import cvae
from tripjax.training import imputation
from tripjax.training import rng as rng_lib

NUM_EXAMPLES = 96


def _config(**imputer):
  config = digits_cvae_trip.get_config()
  config.model.kind = "cvae_imputed"
  config.data.hide_attribute_fraction = 0.5
  config.imputer.widths, config.imputer.hidden = (4,), 8
  config.imputer.num_epochs, config.imputer.batch_size = 2, 16
  for name, value in imputer.items():
    config.imputer[name] = value
  return config


def _digits_with_labels(labels):
  """The first NUM_EXAMPLES training digits, with other labels."""
  digits = data_lib.load_dataset("digits", "train").take(NUM_EXAMPLES)
  images = digits.images
  return data_lib.ImageDataset(
      name="digits", split="train", image_shape=digits.image_shape,
      num_examples=NUM_EXAMPLES, binarized=True,
      read_fn=lambda indices: (images[indices], labels[indices]))


def _leaves(params):
  return [np.asarray(leaf) for leaf in jax.tree.leaves(params)]


def test_the_imputer_never_sees_a_hidden_label():
  """Relabelling the examples whose every attribute is hidden changes nothing: not
  the predictor, not one imputed value. Relabelling one visible label does."""
  config = _config()
  labels = data_lib.load_dataset("digits", "train").take(NUM_EXAMPLES).labels
  hidden = cvae.hidden_labels(config, _digits_with_labels(labels))
  all_hidden = hidden.all(axis=1)
  assert all_hidden.sum() >= 5  # about 1/8 of them
  relabelled = labels.copy()
  relabelled[all_hidden] = (labels[all_hidden] + 1) % 10  # changes the digit and parity

  def imputed(labels):
    return cvae.impute_hidden_labels(config, _digits_with_labels(labels),
                                     rng_lib.RandomStreams(0))

  original, other = imputed(labels), imputed(relabelled)
  for leaf, other_leaf in zip(_leaves(original.params), _leaves(other.params),
                              strict=True):
    np.testing.assert_array_equal(leaf, other_leaf)
  np.testing.assert_array_equal(original.attributes, other.attributes)
  truth = data_lib.attributes_from_labels("digits", labels)
  np.testing.assert_array_equal(original.attributes[~hidden], truth[~hidden])
  assert not np.isnan(original.attributes).any()

  visible_digit = np.flatnonzero(~hidden[:, 0])[0]
  changed = labels.copy()
  changed[visible_digit] = (labels[visible_digit] + 1) % 10
  sensitive = imputed(changed)
  assert any(np.any(leaf != other_leaf) for leaf, other_leaf in
             zip(_leaves(original.params), _leaves(sensitive.params), strict=True))


def test_a_cached_imputer_is_reused_only_for_the_same_setting(tmp_path, monkeypatch):
  config = _config()
  dataset = data_lib.load_dataset("digits", "train").take(NUM_EXAMPLES)
  streams = rng_lib.RandomStreams(0)
  workdir = str(tmp_path)
  first = cvae.impute_hidden_labels(config, dataset, streams, workdir)

  def no_training(*args, **kwargs):
    raise AssertionError("trained again")

  with monkeypatch.context() as patch:
    patch.setattr(imputation, "train_predictor", no_training)
    again = cvae.impute_hidden_labels(config, dataset, streams, workdir)
    np.testing.assert_array_equal(again.attributes, first.attributes)
    with pytest.raises(AssertionError, match="trained again"):
      cvae.impute_hidden_labels(_config(num_epochs=3), dataset, streams, workdir)


def test_nothing_hidden_nothing_imputed(monkeypatch):
  config = _config()
  config.data.hide_attribute_fraction = 0.0
  monkeypatch.setattr(imputation, "train_predictor", None)  # never called
  dataset = data_lib.load_dataset("digits", "train").take(NUM_EXAMPLES)
  result = cvae.impute_hidden_labels(config, dataset, rng_lib.RandomStreams(0))
  np.testing.assert_array_equal(
      result.attributes, data_lib.attributes_from_labels("digits", dataset.labels))
  assert result.model is None and result.params is None


def test_imputer_fields_are_checked_for_cvae_imputed_only():
  config = _config(num_epochs=0)
  with pytest.raises(config_checks.ConfigError, match="imputer.num_epochs"):
    cvae.validate_config(config)
  config.model.kind = "cvae"
  cvae.validate_config(config)
