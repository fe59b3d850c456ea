"""The paper's WGAN-TRIP on CelebA 64x64 (Table 1): weight clipping, batch-norm critic.

python -m train.gan --config configs/celeba_wgan_trip.py \
  --workdir runs/celeba_wgan_trip --config.data.data_dir=~/tensorflow_datasets

As configs/celeba_wgangp_trip.py, but the critic's parameters are clipped to
[-0.01, 0.01] after every update instead of the gradient penalty (the WGAN paper's
recipe, with Adam as in the authors' code), and the critic uses batch norm.
"""
from tripjax.configs import celeba_wgangp_trip


def get_config():
  config = celeba_wgangp_trip.get_config()
  config.gan.gradient_penalty = 0.0
  config.gan.clip_value = 0.01
  config.model.critic_norm = "batch"
  return config
