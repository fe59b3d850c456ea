"""Shared defaults of every VAE experiment; the other configs change a few fields.

Override any field from the command line, e.g. `--config.prior.kind=gmm`; a field that
is not defined here is an error.
"""
import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.name = "digits"  # digits (offline, no download) | mnist | cifar10 | celeb_a
  config.data.data_dir = config_dict.placeholder(str)  # TFDS data_dir; None: TFDS default
  # Use only the first examples of a split (quick trials, tests); None: all.
  config.data.num_train_examples = config_dict.placeholder(int)
  config.data.num_eval_examples = config_dict.placeholder(int)

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 100
  # Encoder conv widths (decoder mirrors them); None: the default for the image size.
  config.model.widths = config_dict.placeholder(tuple)
  config.model.norm = "none"  # none | group
  config.model.use_bias = True
  config.model.kernel_size = 4

  config.prior = ml_collections.ConfigDict()
  config.prior.kind = "trip"  # normal | gmm | trip (gmm is TRIP with rank 1)
  config.prior.learnable = True  # False: prior parameters get no gradient updates ("F")
  config.prior.num_components = 10  # N, Gaussians per latent variable
  config.prior.rank = 20  # m, tensor-ring core size (trip only)
  # Data-driven init (paper 3.1): refit the prior by EM on the training set's encoder
  # means after epoch 1 and then every this many epochs (1, 6, 11, ...); 0: never.
  config.prior.refit_every_epochs = 5
  config.prior.refit_num_examples = config_dict.placeholder(int)  # None: all

  config.train = ml_collections.ConfigDict()
  config.train.num_epochs = 20
  config.train.batch_size = 128
  config.train.learning_rate = 3e-4
  config.train.grad_clip_norm = 0.0  # 0: no clipping
  config.train.elbo_samples = 1  # l in the paper's eq. 8
  config.train.seed = 0
  config.train.checkpoint_every_steps = 500
  config.train.max_checkpoints_to_keep = 3
  config.train.log_every_steps = 50
  config.train.max_steps = config_dict.placeholder(int)  # None: all epochs
  config.train.progress_bar = True

  config.eval = ml_collections.ConfigDict()
  config.eval.split = "test"
  config.eval.batch_size = 250
  config.eval.iwae_samples = 100  # k of the IWAE bound (paper Table 1)
  config.eval.iwae_samples_per_chunk = 10  # of the k samples, decoded at once
  config.eval.iwae_every_epochs = 0  # 0: IWAE only after the last epoch
  config.eval.num_reconstructions = 32  # test images in the reconstruction grid
  config.eval.num_prior_samples = 64
  return config
