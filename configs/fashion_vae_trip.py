"""VAE-TRIP on Fashion-MNIST (54,000 train / 6,000 validation / 10,000 test binarized
28x28 clothing images), read offline from the IDX files of Debian's
`dataset-fashion-mnist` (or TFDS `fashion_mnist` where prepared; `tripjax.data`).

python -m train.vae --config configs/fashion_vae_trip.py --workdir runs/fashion_vae_trip

The prior comparison on it is `python -m benchmarks.fashion_results` (which also says how
the latent size and the length were chosen on the validation split).
"""
from tripjax.configs import base_vae


def get_config():
  config = base_vae.get_config()
  config.data.name = "fashion_mnist"  # binarized at 0.5: a Bernoulli decoder, nats
  config.model.latent_dim = 32
  config.model.widths = (32, 64)
  config.prior.kind = "trip"
  config.prior.num_components = 10
  config.prior.rank = 20
  config.prior.refit_every_epochs = 5
  # The EM refits fit 4,000 posterior samples (the authors use about 2,000), not all
  # 54,000 training images.
  config.prior.refit_num_examples = 4000
  config.train.num_epochs = 5
  config.train.batch_size = 128
  config.train.learning_rate = 1e-3
  config.train.checkpoint_every_steps = 500
  config.train.log_every_steps = 50
  config.eval.batch_size = 500
  return config
