"""data.split = random_90_10: every example pooled, a seeded random 90% / 10% split."""
import numpy as np
import pytest

from tripjax import data as data_lib
from tripjax.configs import digits_vae_trip
from tripjax.training import config_checks
from tripjax.training import experiment


def _rows(dataset):
  images, labels = dataset.read(np.arange(len(dataset)))
  return {image.tobytes() + bytes([int(label)]) for image, label in zip(images, labels)}


def test_random_90_10_pools_every_digit_and_splits_by_the_seed():
  pooled = set().union(*(_rows(data_lib.load_dataset("digits", split))
                         for split in data_lib.SPLITS))
  train = data_lib.load_dataset("digits", "train", split_scheme="random_90_10")
  test = data_lib.load_dataset("digits", "test", split_scheme="random_90_10")
  assert (len(train), len(test)) == (4500, 500)
  assert (train.split, test.split) == ("train", "test")
  train_rows, test_rows = _rows(train), _rows(test)
  assert not train_rows & test_rows
  # Every pooled example lands in one of the two (as a set of image-and-label rows).
  assert train_rows | test_rows == pooled
  again = data_lib.load_dataset("digits", "test", split_scheme="random_90_10",
                                split_seed=data_lib.PAPER_SPLIT_SEED)
  np.testing.assert_array_equal(again.images, test.images)
  other = data_lib.load_dataset("digits", "test", split_scheme="random_90_10",
                                split_seed=1)
  assert not np.array_equal(other.images, test.images)
  # Not the tfds test split, and the labels travel with their images.
  assert not np.array_equal(test.images, data_lib.load_dataset("digits", "test").images)
  images, labels = test.read(np.array([3, 0, 499]))
  for image, label in zip(images, labels):
    assert image.tobytes() + bytes([int(label)]) in pooled


def test_random_90_10_has_no_validation_and_bad_values_are_errors():
  with pytest.raises(ValueError, match="no validation split"):
    data_lib.load_dataset("digits", "validation", split_scheme="random_90_10")
  with pytest.raises(ValueError, match="Unknown split scheme 'random'"):
    data_lib.load_dataset("digits", "train", split_scheme="random")
  config = digits_vae_trip.get_config()
  config.data.split = "random_90_10"
  config.data.num_train_examples = 10
  assert len(experiment.load_split(config, "train", 10)) == 10
  experiment.check_split_fields(config)
  config.eval.split = "validation"
  with pytest.raises(config_checks.ConfigError, match="has only train and test"):
    experiment.check_split_fields(config)
  config.data.split = "paper"
  with pytest.raises(config_checks.ConfigError, match="data.split = 'paper'"):
    experiment.check_split_fields(config)
