"""Shared defaults of every VAE experiment (on top of configs/base.py).

Override any field from the command line, e.g. `--config.prior.kind=gmm`; a field that
is not defined is an error.
"""
import ml_collections
from ml_collections import config_dict

from tripjax.configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task = "vae"

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 100
  # Encoder conv widths (decoder mirrors them); None: the default for the image size.
  config.model.widths = config_dict.placeholder(tuple)
  config.model.norm = "none"  # none | group
  config.model.use_bias = True
  config.model.kernel_size = 4
  # The decoder's likelihood (tripjax.likelihoods); None: the dataset's proper density
  # (bernoulli for binarized sets, discretized_logistic for RGB). "squared_error" is
  # the authors' term -sum (x_hat - x)^2 on images in [-1, 1]: not a density, not nats.
  config.model.likelihood = config_dict.placeholder(str)

  config.prior = ml_collections.ConfigDict()
  # normal | gmm | trip | full_gmm | full_gaussian. gmm is the factorized GMM (a product
  # of 1-D mixtures: TRIP with rank 1); full_gmm is ONE diagonal mixture over the whole
  # space (the paper's GMM baseline); full_gaussian is N(mean, L L^T), learned.
  config.prior.kind = "trip"
  config.prior.learnable = True  # False: prior parameters get no gradient updates ("F")
  config.prior.num_components = 10  # N, Gaussians per latent variable
  config.prior.rank = 20  # m, tensor-ring core size (trip only)
  # full_gmm's number of components; None: latent_dim * num_components (the paper's).
  config.prior.num_mixture_components = config_dict.placeholder(int)
  # A RealNVP of this many affine coupling layers on top of the prior (any kind); 0: none.
  config.prior.flows = 0
  # The prior has its own Adam (as in the authors' code); None: train.learning_rate.
  config.prior.learning_rate = config_dict.placeholder(float)
  # Data-driven init (paper 3.1): refit the prior's means and scales by EM on encoder
  # latents of the training set after epoch 1 and then every this many epochs
  # (1, 6, 11, ...; 0: never), and after each step listed in refit_at_steps.
  config.prior.refit_every_epochs = 5
  config.prior.refit_at_steps = ()
  # What the EM fits: "samples", one z ~ q(z|x) per example (a sample of the aggregate
  # posterior, as the authors' code does), or "means", the means of q(z|x).
  config.prior.refit_on = "samples"
  # Fit to the first this many training examples (the authors use about 2,000);
  # None: all.
  config.prior.refit_num_examples = config_dict.placeholder(int)
  # The prior kinds that are refit (under flows: the base prior's kind, fit to the
  # inverse-flowed latents). The authors refit only trip.
  config.prior.refit_kinds = ("gmm", "trip")
  # At each refit, also redraw the ring's cores (before their positivity map) as
  # N(0, 1) / (m^2 N), as the authors' refit does (gmm and trip only).
  config.prior.refit_redraws_cores = False
  # After a refit, restart the prior's Adam moments: they are running averages of the
  # gradients at the old means and scales, and would push the refit values back
  # towards them. The network's moments are kept (its parameters did not move).
  config.prior.reset_optimizer_on_refit = True

  config.train.grad_clip_norm = 0.0  # of the network's gradient; 0: no clipping
  config.train.elbo_samples = 1  # l in the paper's eq. 8
  # Restart both Adams every this many steps, as the authors' rounds of 10,000 steps
  # do; 0: never.
  config.train.reset_optimizer_every_steps = 0

  config.eval.iwae_samples = 100  # k of the IWAE bound (paper Table 1)
  config.eval.iwae_samples_per_chunk = 10  # of the k samples, decoded at once
  config.eval.iwae_every_epochs = 0  # 0: IWAE only after the last step
  config.eval.num_reconstructions = 32  # test images in the reconstruction grid
  config.eval.num_prior_samples = 64
  return config
