"""Quickstart: WGAN-GP-TRIP on the offline MNIST digits (no download), minutes on CPU.

python -m train.gan --config configs/digits_wgangp_trip.py --workdir runs/gan

A small generator and critic (widths 64, 32) on the 4,000 grey-level training digits;
recognisable digits in workdir/images/ within 10 minutes on 2 CPU cores.
"""
from tripjax.configs import base_gan


def get_config():
  config = base_gan.get_config()
  config.data.name = "digits"  # 4,000 train / 500 test real MNIST digits, grey levels
  config.model.latent_dim = 32
  config.model.widths = (64, 32)
  config.prior.kind = "trip"
  config.prior.num_components = 10
  config.prior.rank = 40
  config.train.num_epochs = 40
  config.train.batch_size = 64
  config.train.learning_rate = 2e-4
  config.train.checkpoint_every_steps = 200
  config.train.log_every_steps = 10
  config.eval.every_epochs = 5
  return config
