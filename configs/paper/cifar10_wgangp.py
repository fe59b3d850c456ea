"""Table 2's WGAN-GP-TRIP on CIFAR-10 (32x32x3) as the TRIP authors' scripts run it.

python -m train.gan --config configs/paper/cifar10_wgangp.py \
  --workdir runs/paper/cifar10_wgangp_trip_L --config.data.data_dir=~/tensorflow_datasets

The protocol of configs/paper/celeba_wgangp.py (20,000 generator steps, 4:1, the
authors' Adams and restarts, normalized rewards, per-pixel penalty and layer norm) on
all 50,000 training images (data.split=no_validation; the stock
configs/cifar10_wgangp_trip.py holds 5,000 out for validation).
"""
from tripjax.configs import cifar10_wgangp_trip
from tripjax.configs.paper import _gan_protocol


def get_config():
  config = _gan_protocol.apply(cifar10_wgangp_trip.get_config())
  config.data.split = "no_validation"
  config.gan.gradient_penalty = 10.0
  config.gan.penalty_norm = "per_pixel"
  config.model.critic_norm = "layer_per_pixel"
  return config
