"""VAE-TRIP on CIFAR-10 (32x32x3, discretized logistic likelihood); needs TFDS data.

python -m train.vae --config configs/cifar10_vae_trip.py --workdir runs/cifar10_vae_trip \
  --config.data.data_dir=~/tensorflow_datasets
"""
from tripjax.configs import base_vae


def get_config():
  config = base_vae.get_config()
  config.data.name = "cifar10"
  config.model.latent_dim = 100
  config.model.widths = (64, 128, 256)
  config.train.num_epochs = 100
  config.train.batch_size = 128
  config.train.learning_rate = 3e-4
  config.train.checkpoint_every_steps = 1000
  config.eval.batch_size = 200  # 10,000 test images: 50 full batches
  return config
