"""The paper's conditional VAE-TRIP on CelebA 64x64 (section 4 and 6, Table 3): the 14
conditions of `tripjax.data.CELEB_A_CONDITIONS`, the VAE-TRIP's model and sizes (latent
100, N = 10, rank 20, the 4-conv DCGAN-like networks), half of the training labels
hidden.

python -m train.train_classifier --config celeba_attribute_classifier \
  --workdir runs/attr_classifier --config.data.data_dir=~/tensorflow_datasets
python -m train.cvae --config configs/celeba_cvae_trip.py --workdir runs/celeba_cvae \
  --config.data.data_dir=~/tensorflow_datasets
python -m train.cvae_sample --workdir runs/celeba_cvae --attr Male=1 --attr Wearing_Hat=1
"""
from tripjax.configs import base_cvae


def get_config():
  config = base_cvae.get_config()
  config.data.name = "celeb_a"  # center crop 160, resized to 64x64x3
  config.data.hide_attribute_fraction = 0.5
  config.model.kind = "trip"
  config.model.latent_dim = 100
  config.model.widths = (64, 128, 256, 512)
  config.model.use_bias = False  # as the paper's model
  config.prior.num_components = 10
  config.prior.rank = 20
  config.prior.learning_rate = 1e-2
  config.train.num_epochs = 30  # not given in the paper; as configs/celeba_vae_trip.py
  config.train.batch_size = 128
  config.train.learning_rate = 3e-4
  config.train.checkpoint_every_steps = 1000
  config.eval.batch_size = 256
  # The paper's Table 3 style: partial attribute sets, the others summed out.
  config.eval.grid_requests = (
      "", "Male=1", "Male=0", "Male=1,Wearing_Hat=1", "Male=0,Eyeglasses=1",
      "Smiling=1,Blond_Hair=1", "Male=1,Mustache=1", "Young=0,Gray_Hair=1")
  config.eval.grid_columns = 8
  config.eval.violation_num_samples = 2000
  config.eval.classifier_workdir = "runs/attr_classifier"
  return config
