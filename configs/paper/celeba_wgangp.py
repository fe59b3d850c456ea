"""Table 1's WGAN-GP block on CelebA 64x64 as the TRIP authors' `train_wgan.py` runs it.

python -m train.gan --config configs/paper/celeba_wgangp.py \
  --workdir runs/paper/wgangp_trip_L --config.data.data_dir=~/tensorflow_datasets \
  [--config.prior.kind=normal|full_gmm|trip] [--config.prior.learnable=False]

Differences from the stock configs/celeba_wgangp_trip.py (this project's recommended
setting, standard WGAN-GP):
  * 20,000 generator steps, 4 critic updates per generator update (the authors' 4:1);
  * Adam(1e-4, 0.5, 0.9) for the nets, recreated every 1,000 iterations (200 steps);
    the prior's Adam(1e-4) with torch's default betas (0.9, 0.999);
  * rewards divided by their batch std (prior.normalize_rewards);
  * the penalty (||grad||_2 over the channel axis - 1)^2 averaged over pixels
    (gan.penalty_norm=per_pixel) and the critic's layer norm over each pixel's channels
    (model.critic_norm=layer_per_pixel);
  * CelebA pooled and split 90/10 at random with seed 777 (the authors' dataset module).
"""
from tripjax.configs import celeba_wgangp_trip
from tripjax.configs.paper import _gan_protocol


def get_config():
  config = _gan_protocol.apply(celeba_wgangp_trip.get_config())
  config.data.split = "random_90_10"
  config.data.split_seed = 777
  config.gan.gradient_penalty = 10.0
  config.gan.penalty_norm = "per_pixel"
  config.model.critic_norm = "layer_per_pixel"
  return config
