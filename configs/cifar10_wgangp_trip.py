"""WGAN-GP-TRIP on CIFAR-10 (32x32x3, paper Table 2); needs TFDS data.

python -m train.gan --config configs/cifar10_wgangp_trip.py \
  --workdir runs/cifar10_wgangp_trip --config.data.data_dir=~/tensorflow_datasets

The authors' settings: latent 128, N = 10, m = 40, batch 256, Adam(1e-4, 0.5, 0.9) for
the generator, critic and prior, penalty weight 10, n_critic 5. The 32 px generator
is the WGAN-GP CIFAR-10 one (4x4x512 -> 256 -> 128 -> 3).
"""
from tripjax.configs import base_gan


def get_config():
  config = base_gan.get_config()
  config.data.name = "cifar10"
  config.model.latent_dim = 128
  config.model.widths = (512, 256, 128)
  # 45,000 train images: 35 generator steps per epoch, 17,500 in all; the run length
  # is not given in the paper.
  config.train.num_epochs = 500
  config.train.checkpoint_every_steps = 1000
  config.eval.batch_size = 200
  return config
