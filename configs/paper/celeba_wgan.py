"""Table 1's WGAN block on CelebA 64x64: the authors' GAN protocol with weight clipping.

python -m train.gan --config configs/paper/celeba_wgan.py \
  --workdir runs/paper/wgan_trip_L --config.data.data_dir=~/tensorflow_datasets \
  [--config.prior.kind=normal|full_gmm|trip] [--config.prior.learnable=False]

As configs/paper/celeba_wgangp.py (20,000 generator steps, 4:1, the authors' Adams and
restarts, normalized rewards, their 90/10 split), but WGAN as its reference defines it:
no penalty, the critic's parameters clipped to [-0.01, 0.01] after every update, a
batch-norm critic. (The authors' `--no_gp` path cannot run: it reads a gradient norm
it never sets, and never clips.)
"""
from tripjax.configs.paper import celeba_wgangp


def get_config():
  config = celeba_wgangp.get_config()
  config.gan.gradient_penalty = 0.0
  config.gan.clip_value = 0.01
  config.gan.penalty_norm = "per_example"  # unused without a penalty
  config.model.critic_norm = "batch"
  return config
