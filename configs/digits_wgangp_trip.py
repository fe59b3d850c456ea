"""Quickstart: WGAN-GP-TRIP on the offline MNIST digits (no download), minutes on CPU.

python -m train.gan --config configs/digits_wgangp_trip.py --workdir runs/gan

A small generator and critic (widths 32, 16) on the 4,000 grey-level training digits,
batch 32, 5 critic updates per step: 25 steps an epoch, 5,000 in the 200 epochs, Adam
5e-4 (0.5, 0.9). On one XLA:CPU device (`train.cpu_devices = 1`): these nets are too
small for the batch split over two devices to pay. Samples in workdir/images/.

The length and the learning rate were chosen on the validation digits (issue 20,
`results/gan_quickstart_selection.md`): 1,000 steps at 2e-4 (this config until then)
left mostly strokes; 5,000 steps at 2e-4 and at 5e-4 reached classifier FD 17.2 and 7.1
against the validation digits.
"""
from tripjax.configs import base_gan


def get_config():
  config = base_gan.get_config()
  config.data.name = "digits"  # 4,000 train / 500 test real MNIST digits, grey levels
  config.model.latent_dim = 32
  config.model.widths = (32, 16)
  config.prior.kind = "trip"
  config.prior.num_components = 10
  config.prior.rank = 40
  config.train.num_epochs = 200
  config.train.batch_size = 32
  config.train.learning_rate = 5e-4
  config.train.cpu_devices = 1
  config.train.checkpoint_every_steps = 200
  config.train.log_every_steps = 10
  config.eval.every_epochs = 5
  return config
