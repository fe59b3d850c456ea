"""Shared defaults of every conditional VAE experiment (on top of configs/base.py).

The conditional VAE-TRIP of the paper's section 4 (`model.kind = "trip"`): one tensor
ring over the latents z and the dataset's discrete attributes y, trained by the bound
of eq. 14 on data where `data.hide_attribute_fraction` of the attribute labels are
hidden. The baselines: `model.kind = "cvae"`, the textbook CVAE (encoder q(z|x, y),
decoder p(x|z, y), N(0, I) prior, a learned "unknown" value for a missing attribute);
"cvae_imputed", the same with the hidden labels imputed by a predictor of y from x
trained on the visible ones (`imputer.*`); "concat", decoder-only conditioning
(q(z|x), a decoder of [z, one-hot y]). Override any field from the command line, e.g.
`--config.model.kind=cvae`.
"""
import ml_collections
from ml_collections import config_dict

from tripjax.configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.task = "cvae"
  config.data.name = "digits"  # a dataset with attributes: digits | mnist | celeb_a
  # Each attribute label of each training example is hidden (NaN) with this
  # probability, drawn once per example from train.seed (the same in every epoch and
  # after a resume). Test attributes are never hidden.
  config.data.hide_attribute_fraction = 0.0

  config.model = ml_collections.ConfigDict()
  # trip (joint TRIP prior) | cvae (textbook: q(z|x,y), p(x|z,y), N(0, I)) |
  # cvae_imputed (cvae, hidden labels imputed) | concat (q(z|x), decoder gets y)
  config.model.kind = "trip"
  config.model.latent_dim = 100
  # Encoder conv widths (decoder mirrors them); None: the default for the image size.
  config.model.widths = config_dict.placeholder(tuple)
  config.model.norm = "none"  # none | group
  config.model.use_bias = True
  config.model.kernel_size = 4

  # The joint TRIP p(z, y) (model.kind = "trip"; unused by "concat").
  config.prior = ml_collections.ConfigDict()
  config.prior.num_components = 10  # N, Gaussians per latent variable
  config.prior.rank = 20  # m, tensor-ring core size
  # The prior's own Adam: at the network's 1e-3 the attribute term barely moves.
  config.prior.learning_rate = 1e-2
  # The ring's random order of the d + a variables of [z, y] (paper, section 4). It is
  # stored in every checkpoint; a resumed run keeps the checkpoint's order.
  config.prior.permutation_seed = 0
  # Data-driven init of the latents' means and scales (paper 3.1, as the VAE's): after
  # epoch 1, then every this many epochs (0: never), and after the steps listed.
  config.prior.refit_every_epochs = 5
  config.prior.refit_at_steps = ()
  config.prior.refit_num_examples = config_dict.placeholder(int)  # None: all
  config.prior.refit_on = "samples"  # or "means"; as in configs/base_vae.py
  config.prior.reset_optimizer_on_refit = True

  # model.kind = "cvae_imputed": the predictor of y from x that imputes the hidden
  # training labels (an AttributeClassifier trained on the visible ones, cached in
  # workdir/imputer).
  config.imputer = ml_collections.ConfigDict()
  config.imputer.widths = (32, 64, 128, 128)  # stride-2 convs
  config.imputer.hidden = 256
  config.imputer.num_epochs = 5
  config.imputer.batch_size = 64
  config.imputer.learning_rate = 1e-3

  config.train.grad_clip_norm = 0.0  # of the network's gradient; 0: no clipping
  config.train.elbo_samples = 1  # z samples per example in the bound
  # model.kind = "trip": the weight w of the attribute term in the trained objective
  # E_q[log p(x|z)] + w E_q[log p(y_obs|z)] - KL; 1.0 is eq. 14's bound (the bound is
  # what every metric reports, whatever w). The baselines have no such term.
  config.train.attribute_weight = 1.0

  config.eval.num_prior_samples = 64  # unconditional samples in the image grid
  # Rows of the conditional sample grid, each a request "NAME=VALUE[,NAME=VALUE]"
  # ("" for unconditional); (): one row per value of the first attribute.
  config.eval.grid_requests = ()
  config.eval.grid_columns = 10
  # Condition violation rate after the last step: this many samples for single-
  # attribute requests and as many for random subsets of `violation_subset_sizes`
  # attributes (values copied from real examples of eval.split); 0: skip.
  config.eval.violation_num_samples = 1000
  config.eval.violation_subset_sizes = (2, 3)
  # With them, the diversity of the unrequested attributes (total variation against the
  # real eval.split images that satisfy a request), over the requests that this many
  # real images satisfy.
  config.eval.diversity_min_reference = 30
  # Where the attribute classifier of the metric is cached: digits/mnist use the FD
  # digit classifier (trained there on first use, configs/digits_classifier.py);
  # celeb_a needs `python -m train.train_classifier --config
  # celeba_attribute_classifier --workdir <this>` first.
  config.eval.classifier_workdir = "runs/classifier"
  return config
