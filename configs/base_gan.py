"""Shared defaults of every GAN experiment (on top of configs/base.py).

The values follow the TRIP authors' public scripts for the paper's GAN runs (latent
128, N = 10 components, ring rank m = 40, batch 256, Adam(1e-4, b1 0.5, b2 0.9) for the
generator, the critic and the prior, penalty weight 10, 5 critic updates per generator
update). Override any field from the command line, e.g. `--config.prior.kind=gmm`;
`--config.gan.gradient_penalty=0` trains a WGAN with weight clipping instead of a
WGAN-GP. A field that is not defined is an error.
"""
import ml_collections
from ml_collections import config_dict

from tripjax.configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task = "gan"
  # A GAN models grey levels: the digits and MNIST are not binarized.
  config.data.binarize = False

  config.model = ml_collections.ConfigDict()
  config.model.latent_dim = 128
  # Generator widths (the critic's in reverse); None: the default for the image size
  # (tripjax.models.gan.DEFAULT_WIDTHS), or PACGAN_GENERATOR_WIDTHS (4x400) for the
  # point sets' MLP.
  config.model.widths = config_dict.placeholder(tuple)
  # The critic's widths; None: the generator's reversed (conv critic), or
  # PACGAN_CRITIC_WIDTHS (3x200) for the point sets' MLP critic.
  config.model.critic_widths = config_dict.placeholder(tuple)
  # The critic's norm after every conv but the first: layer | layer_per_pixel | batch |
  # none; None: layer norm (over each example's (H, W, C)) with the gradient penalty
  # (which needs per-example scores), batch norm with weight clipping (the WGAN paper's
  # critic). layer_per_pixel: over the channels of each pixel (the TRIP authors').
  config.model.critic_norm = config_dict.placeholder(str)

  config.prior = ml_collections.ConfigDict()
  config.prior.kind = "trip"  # normal | gmm | trip (gmm is TRIP with rank 1)
  config.prior.learnable = True  # False: prior parameters get no updates ("F")
  config.prior.num_components = 10  # N, Gaussians per latent variable
  config.prior.rank = 40  # m, tensor-ring core size (trip only)
  # The prior has its own Adam (as in the authors' code); None: train.learning_rate.
  config.prior.learning_rate = config_dict.placeholder(float)
  # The prior's Adam betas; None: gan.adam_b1 / gan.adam_b2 (the authors' GAN script
  # gives the prior torch's defaults, 0.9 / 0.999: configs/paper/).
  config.prior.adam_b1 = config_dict.placeholder(float)
  config.prior.adam_b2 = config_dict.placeholder(float)
  # The prior's score-function gradient (paper eq. 10) centres the rewards by their
  # batch mean. True also divides them by their batch standard deviation, as the
  # authors' code does; False is eq. 10 as printed. Under Adam the two differ only in
  # how much weight each step gets.
  config.prior.normalize_rewards = False
  # How the prior's gradient is estimated (tripjax.prior.gradients): "score" (eq. 10's
  # score function for every prior parameter, as printed) or "pathwise" (means and
  # scales through z = mu_s + sigma_s * eps, the cores by eq. 10's score function).
  config.prior.gradient_estimator = "score"
  # RealNVP coupling layers on top of the prior (0: none; the authors' --add_flows):
  # the flow by the generator's pathwise gradient, the base prior by the estimator.
  config.prior.flows = 0

  config.gan = ml_collections.ConfigDict()
  # lambda of WGAN-GP's penalty on the per-example gradient norm (all pixels and
  # channels); 0: WGAN with weight clipping to [-clip_value, clip_value] instead.
  config.gan.gradient_penalty = 10.0
  config.gan.clip_value = 0.01
  config.gan.n_critic = 5  # critic updates (each on its own real batch) per step
  config.gan.adam_b1 = 0.5
  config.gan.adam_b2 = 0.9
  # Norm of the penalty's gradient: per_example (WGAN-GP: over all of an example's
  # pixels and channels) | per_pixel (the TRIP authors': over the channels at each
  # pixel, (norm - 1)^2 averaged over pixels and examples).
  config.gan.penalty_norm = "per_example"

  config.train.num_epochs = 100
  config.train.batch_size = 256
  config.train.learning_rate = 1e-4
  # Restart all three Adams every k steps (0: never); the authors recreate their
  # optimizers every 1,000 iterations.
  config.train.reset_optimizer_every_steps = 0

  config.eval.num_samples = 64  # images in the sample grid (the same z every time)
  # Classifier FD (28x28x1 sets: digits, mnist) of generator samples every k epochs
  # and after the last step; 0: never (score a checkpoint with train.fid instead).
  config.eval.classifier_fd_every_epochs = 0
  config.eval.classifier_fd_num_samples = 1000
  config.eval.classifier_workdir = "runs/classifier"  # trained there if missing
  return config
