"""The paper's VAE-TRIP on CelebA 64x64 (section 6.1, Table 1): batch 128, Adam 3e-4,
latent 100, N = 10 components, rank m = 20, the 4-conv DCGAN-like model (~11.4 M params).

python -m train.vae --config configs/celeba_vae_trip.py --workdir runs/celeba_vae_trip \
  --config.data.data_dir=~/tensorflow_datasets
"""
from tripjax.configs import base_vae


def get_config():
  config = base_vae.get_config()
  config.data.name = "celeb_a"  # center crop 160, resized to 64x64x3
  config.model.latent_dim = 100
  config.model.widths = (64, 128, 256, 512)
  config.model.use_bias = False  # as the paper's model
  config.prior.kind = "trip"
  config.prior.num_components = 10
  config.prior.rank = 20
  config.train.num_epochs = 30  # not given in the main text; our choice
  config.train.batch_size = 128
  config.train.learning_rate = 3e-4
  config.train.checkpoint_every_steps = 1000
  config.eval.batch_size = 256
  return config
