"""The paper's WGAN-GP-TRIP on CelebA 64x64 (section 6.1, Table 1); needs TFDS data.

python -m train.gan --config configs/celeba_wgangp_trip.py \
  --workdir runs/celeba_wgangp_trip --config.data.data_dir=~/tensorflow_datasets

The authors' settings: the DCGAN-like 64 px generator and layer-norm critic
(`tripjax.models.gan.paper_generator_critic`), latent 128, N = 10, m = 40, batch 256,
Adam(1e-4, 0.5, 0.9) for the generator, critic and prior, penalty weight 10,
n_critic 5.
"""
from tripjax.configs import base_gan


def get_config():
  config = base_gan.get_config()
  config.data.name = "celeb_a"  # center crop 160, resized to 64x64x3
  config.model.latent_dim = 128
  config.model.widths = (512, 256, 128, 64)
  config.model.critic_norm = "layer"
  # 162,770 train images: 127 generator steps per epoch, 6,350 in all; the run length
  # is not given in the paper.
  config.train.num_epochs = 50
  config.train.checkpoint_every_steps = 1000
  config.eval.batch_size = 256
  return config
