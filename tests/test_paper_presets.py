"""configs/paper/ (issue 19, item 6): every preset loads by path and by name, validates
with every prior of its table, and carries the TRIP authors' protocol; the
no_validation split (CIFAR-10's 50,000 training images)."""
import os

import numpy as np
import pytest

from tripjax import data as data_lib
from tripjax.training import config_checks
from tripjax.training import config_files
from tripjax.training import experiment
from tripjax.training import trainers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = ("celeba_vae", "celeba_wgan", "celeba_wgangp", "cifar10_wgangp")


def preset(name):
  return config_files.load_config(os.path.join(REPO_ROOT, "configs", "paper",
                                               f"{name}.py"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_validates_with_every_prior(name):
  config = preset(name)
  assert config.to_dict() == config_files.load_config(f"paper.{name}").to_dict()
  assert f"paper.{name}" in config_files.stock_config_names()
  validate = trainers.trainer(config.task).validate_config
  flows = (0, 4) if config.task == "vae" else (0,)
  for kind in ("normal", "full_gmm", "trip"):
    for learnable in (False, True):
      for num_flows in flows:
        config.prior.kind, config.prior.learnable = kind, learnable
        if num_flows:
          config.prior.flows = num_flows
        validate(config)


def test_vae_preset_is_the_authors_protocol():
  config = preset("celeba_vae")
  assert config.train.num_steps == 8 * 10_000
  assert config.train.reset_optimizer_every_steps == 10_000
  assert (config.train.learning_rate, config.prior.learning_rate) == (3e-4, 3e-4)
  assert config.train.batch_size == 128
  # Refits before rounds 2 and 7, of TRIP only, on 2,000 samples, cores redrawn.
  assert config.prior.refit_every_epochs == 0
  assert tuple(config.prior.refit_at_steps) == (10_000, 60_000)
  assert tuple(config.prior.refit_kinds) == ("trip",)
  assert config.prior.refit_num_examples == 2000 and config.prior.refit_on == "samples"
  assert config.prior.refit_redraws_cores
  assert config.model.likelihood == "squared_error"
  assert (config.data.split, config.data.split_seed) == ("random_90_10", 777)


@pytest.mark.parametrize("name", ["celeba_wgan", "celeba_wgangp", "cifar10_wgangp"])
def test_gan_presets_are_the_authors_protocol(name):
  config = preset(name)
  assert config.train.num_steps == 20_000 and config.gan.n_critic == 4
  assert config.train.learning_rate == 1e-4
  assert (config.gan.adam_b1, config.gan.adam_b2) == (0.5, 0.9)
  # Optimizers recreated every 1,000 batches: 200 steps of 4 critic + 1 generator.
  assert config.train.reset_optimizer_every_steps * (config.gan.n_critic + 1) == 1000
  assert config.prior.learning_rate == 1e-4
  assert (config.prior.adam_b1, config.prior.adam_b2) == (0.9, 0.999)
  assert config.prior.normalize_rewards
  if name == "celeba_wgan":
    assert config.gan.gradient_penalty == 0 and config.model.critic_norm == "batch"
  else:
    assert config.gan.gradient_penalty == 10.0
    assert config.gan.penalty_norm == "per_pixel"
    assert config.model.critic_norm == "layer_per_pixel"
  expected_split = "no_validation" if name.startswith("cifar10") else "random_90_10"
  assert config.data.split == expected_split


def _rows(dataset):
  images, labels = dataset.read(np.arange(len(dataset)))
  return [image.tobytes() + bytes([int(label)]) for image, label in zip(images, labels)]


def test_no_validation_split_trains_on_train_and_validation():
  train = data_lib.load_dataset("digits", "train", split_scheme="no_validation")
  test = data_lib.load_dataset("digits", "test", split_scheme="no_validation")
  assert _rows(train) == (_rows(data_lib.load_dataset("digits", "train"))
                          + _rows(data_lib.load_dataset("digits", "validation")))
  np.testing.assert_array_equal(test.images, data_lib.load_dataset("digits", "test").images)
  with pytest.raises(ValueError, match="no validation split"):
    data_lib.load_dataset("digits", "validation", split_scheme="no_validation")
  config = preset("cifar10_wgangp")
  config.eval.split = "validation"
  with pytest.raises(config_checks.ConfigError, match="eval.split"):
    experiment.check_split_fields(config)
