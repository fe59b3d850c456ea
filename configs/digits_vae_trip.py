"""Quickstart: VAE-TRIP on the offline MNIST digits (no download), a few minutes on CPU.

python -m train.vae --config configs/digits_vae_trip.py --workdir runs/digits_vae_trip
"""
from tripjax.configs import base_vae


def get_config():
  config = base_vae.get_config()
  config.data.name = "digits"  # 4,000 train / 500 test real MNIST digits, binarized
  config.model.latent_dim = 16
  config.model.widths = (32, 64)
  config.prior.kind = "trip"
  config.prior.num_components = 10
  config.prior.rank = 20
  config.prior.refit_every_epochs = 5
  config.train.num_epochs = 20
  config.train.batch_size = 64
  config.train.learning_rate = 1e-3
  config.train.checkpoint_every_steps = 200
  config.train.log_every_steps = 20
  config.eval.batch_size = 250
  return config
