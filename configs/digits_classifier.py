"""The digit classifier behind the offline classifier FD (and the digits condition
violation rate): a small CNN on the 4,000 grey-level training digits.

python -m train.train_classifier --workdir runs/classifier

Its penultimate features are the FD feature space, so FD values compare only between
runs scored with the same classifier (the same config).
"""
import ml_collections

from tripjax.configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task = "classifier"
  config.data.name = "digits"
  config.data.binarize = False  # grey levels; see train.binarize_fraction

  config.model = ml_collections.ConfigDict()
  config.model.kind = "digits"  # digits | attributes (configs/celeba_attribute_classifier.py)
  config.model.feature_dim = 64

  config.train.num_epochs = 6
  config.train.batch_size = 128
  config.train.learning_rate = 3e-3
  # Share of each batch thresholded at 0.5, so both grey-level images (decoder means)
  # and binary ones (binarized digits, Bernoulli samples) are in-distribution.
  config.train.binarize_fraction = 0.5
  config.train.checkpoint_every_steps = 1000
  config.train.log_every_steps = 10

  config.eval.every_epochs = 0  # accuracies after the last step
  config.eval.batch_size = 500
  return config
