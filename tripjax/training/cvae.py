"""Conditional VAE-TRIP with partially observed attributes (paper, section 4, eqs. 11-14).

Four variants on the shared loop, chosen by `config.model.kind` (`VARIANTS`), each a
small class behind one interface (`CvaeVariant`):

* "trip" (`JointTrip`): one TRIP over the d latents z and the a discrete attributes
  y, in the seeded random ring order `prior.permutation_seed`
  (`tripjax.priors.make_joint_prior`); the decoder sees z alone. Trained by the bound
  of eq. 14 on log p(x, y_obs) (`tripjax.losses.conditional_elbo`): the
  unconditional encoder q(z|x), Monte-Carlo KL, and the hidden attributes summed out
  exactly by the prior (no imputation).
* "cvae" (`TextbookCvae`): the textbook conditional VAE, encoder q(z | x, y), decoder
  p(x | z, y), prior N(0, I); each attribute enters both networks as a one-hot with a
  learned "unknown" value for a hidden one (the special-value way of handling missing
  conditions; `tripjax.models.vae.ConditionalEncoder`, `ConditionalDecoder`). Trained
  by the ELBO of log p(x | y_obs).
* "cvae_imputed" (`ImputedCvae`): the same networks, trained on labels where every
  hidden one is imputed by a predictor of y from x trained on the visible training
  labels only (the predictive-model way; `tripjax.training.imputation`, cached in
  workdir/imputer): it never sees a hidden label, and it is not the classifier that
  scores the violations.
* "concat" (`Concatenation`): decoder-only conditioning: the unconditional encoder
  q(z | x) of the other variants, z ~ N(0, I) and a decoder of [z, one-hot y]
  ("unknown" for a hidden attribute). Not the textbook CVAE (its encoder does not see
  y); kept as the baseline of earlier results. Trained by the ELBO of log p(x | y_obs)
  with q(z | x) in place of q(z | x, y).

All four share the encoder and decoder widths of `config.model`.

Training labels are hidden at random: each attribute of each training example with
probability `data.hide_attribute_fraction`, drawn once per example index from
`train.seed` (`tripjax.data.hidden_attribute_mask`), so every epoch and every resumed
run hides the same labels. `prepare_batch` gives the step
{"image": (B, H, W, C), "attributes": (B, a) float32 value indices, NaN = hidden}.

The ring order is part of the state (`CvaeState.permutation`, an int array next to the
parameters, never trained) and so of every checkpoint; a run restored from a checkpoint
rebuilds its prior with the checkpoint's order, which wins over the config's seed.

What "test bound" means (every test attribute is observed; nats per example):

* `{split}_bound_x_given_y`, every variant: a lower bound on log p(x | y). For
  "cvae", "cvae_imputed" and "concat" it is their ELBO; for "trip" it is eq. 14's
  bound minus the exact log p(y) of the ring (z summed out), since log p(x | y) =
  log p(x, y) - log p(y). They are comparable.
* "trip" also: `{split}_bound_x_y` (eq. 14, on log p(x, y)), `{split}_log_prob_y`
  (exact log p(y)), `{split}_elbo` (the ELBO of log p(x) with every attribute summed
  out of the prior), and the parts `log_likelihood` E_q[log p(x|z)],
  `attribute_log_likelihood` E_q[log p(y|z)] and `kl` KL(q(z|x) || p(z)).

Conditional generation (`sample_images`, `load_sampler`, `python -m
train.cvae_sample`): the unspecified attributes of a request are summed out and
z ~ p(z | y_given) is drawn exactly (trip); the other variants draw z ~ N(0, I) and
give their decoder the request, "unknown" where unspecified.

The condition violation rate (`violation_metrics`, after the last step): images
generated for random requests are classified by an attribute classifier
(`tripjax.metrics.condition_violation.load_attribute_predictor`); the share whose
predicted attributes contradict the requested ones, per attribute and mean, for single
attributes and random subsets. Next to it, the diversity of what was not requested
(`condition_violation.unrequested_diversity`): per request, the total variation
distance between the unrequested attributes of the generated images that satisfy it
and of the real `eval.split` images that satisfy it (both as the classifier reads
them), averaged over the requests with at least `eval.diversity_min_reference` real
images.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, NamedTuple, Protocol, Sequence, cast

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from tripjax import conditional
from tripjax import data as data_lib
from tripjax import likelihoods
from tripjax import losses
from tripjax import priors
from tripjax.metrics import classifier_fd
from tripjax.metrics import condition_violation
from tripjax.models import vae as vae_models
from tripjax.training import autoencoders
from tripjax.training import checkpoints
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import evaluation
from tripjax.training import experiment
from tripjax.training import image_grid
from tripjax.training import imputation
from tripjax.training import loop
from tripjax.training import optimizers
from tripjax.training import rng as rng_lib
from tripjax.training import samplers
from tripjax.training import sharding
from tripjax.training import workdirs

VIOLATION_KINDS = ("single", "subset")  # requests of one attribute, of random subsets
_SINGLE_REQUEST_SEED, _SUBSET_REQUEST_SEED = 0, 1  # the same requests for every run

# z (B, d) -> (log p(z), log p(y_obs | z)), each (B,): the prior terms of eq. 14.
JointLogProbFn = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


@flax.struct.dataclass
class CvaeState:
  """Everything that changes during training (and is checkpointed).

  Attributes:
    params: {"encoder": ..., "decoder": ..., "prior": ...} parameter pytrees.
    opt_state: the optax state for `params`.
    permutation: (d + a,) int32, the joint prior's ring order (`JointPrior.permutation`);
      never trained, kept in the checkpoint next to the params. None for the
      baselines.
  """
  params: dict
  opt_state: Any
  permutation: Any


# ---------------------------------------------------------------- the variants


class CvaeVariant(Protocol):
  """What differs between the conditional VAEs: the prior over z (and y), what the
  decoder sees, and the prior terms of the bound. Hashable (compiled functions are
  cached by the model that holds it).

  Attributes:
    kind: its `config.model.kind`.
    prior: the prior the refits and samplers use (`tripjax.priors.LatentPrior`).
    permutation: the ring order to checkpoint, or None.
    imputes_hidden_labels: whether it trains on labels with the hidden ones imputed
      (`tripjax.training.imputation`) instead of NaN.
  """

  @property
  def kind(self) -> str: ...

  @property
  def imputes_hidden_labels(self) -> bool: ...

  @property
  def prior(self) -> Any: ...

  @property
  def permutation(self) -> tuple[int, ...] | None: ...

  def encoder(self, encoder: vae_models.Encoder) -> Any:
    """The encoder module, given the unconditional conv encoder."""
    ...

  def encoder_inputs(self, images: jax.Array, attributes: jax.Array) -> tuple:
    """What the encoder module takes."""
    ...

  def decoder(self, decoder: vae_models.Decoder) -> Any:
    """The decoder module, given the unconditional conv decoder."""
    ...

  def decoder_inputs(self, z: jax.Array, attributes: jax.Array) -> tuple:
    """What the decoder module takes."""
    ...

  def joint_log_prob_fn(self, prior_params: Any,
                        attributes: jax.Array) -> JointLogProbFn:
    """The prior terms of the trained bound for attributes (B, a), NaN = hidden."""
    ...

  def train_metrics(self, terms: losses.ConditionalElboTerms) -> dict[str, jax.Array]:
    """Metrics of the step beyond loss, bound, log_likelihood, kl and grad_norm."""
    ...

  def eval_sums(self, prior_params: Any, terms: losses.ConditionalElboTerms,
                attributes: jax.Array) -> dict[str, jax.Array]:
    """Per-example test values (B,) (the module docstring's test bounds)."""
    ...

  def unconditional_sample_fn(self, sample: Callable[..., np.ndarray],
                              real_attributes: np.ndarray
                              ) -> Callable[[jax.Array, int], np.ndarray]:
    """(key, n) -> n images without a request, from `sample(key, request, num)`."""
    ...


@dataclasses.dataclass(frozen=True)
class JointTrip:
  """"trip": one TRIP over [z, y] (paper, eq. 11); the decoder sees z alone."""
  prior: priors.JointPrior
  kind = "trip"
  imputes_hidden_labels = False

  @property
  def permutation(self) -> tuple[int, ...]:
    return self.prior.permutation

  def encoder(self, encoder: vae_models.Encoder) -> vae_models.Encoder:
    return encoder

  def encoder_inputs(self, images: jax.Array, attributes: jax.Array) -> tuple:
    del attributes
    return (images,)

  def decoder(self, decoder: vae_models.Decoder) -> vae_models.Decoder:
    return decoder

  def decoder_inputs(self, z: jax.Array, attributes: jax.Array) -> tuple:
    del attributes
    return (z,)

  def joint_log_prob_fn(self, prior_params: Any,
                        attributes: jax.Array) -> JointLogProbFn:
    """log p(z) and log p(y_obs | z), from one ring contraction."""
    return lambda z: self.prior.log_prob_parts(prior_params, z, attributes)

  def train_metrics(self, terms: losses.ConditionalElboTerms) -> dict[str, jax.Array]:
    return {"attribute_log_likelihood": terms.attribute_log_likelihood}

  def eval_sums(self, prior_params: Any, terms: losses.ConditionalElboTerms,
                attributes: jax.Array) -> dict[str, jax.Array]:
    no_latents = jnp.full(attributes.shape[:-1] + (self.prior.num_latents,), jnp.nan,
                          terms.bound.dtype)
    log_prob_y = self.prior.log_prob(prior_params, no_latents, attributes)
    return {"bound_x_given_y": terms.bound - log_prob_y, "bound_x_y": terms.bound,
            "log_prob_y": log_prob_y, "elbo": terms.log_likelihood - terms.kl,
            "log_likelihood": terms.log_likelihood,
            "attribute_log_likelihood": terms.attribute_log_likelihood,
            "kl": terms.kl}

  def unconditional_sample_fn(self, sample: Callable[..., np.ndarray],
                              real_attributes: np.ndarray
                              ) -> Callable[[jax.Array, int], np.ndarray]:
    """z ~ p(z) with every attribute summed out."""
    nothing = np.full(real_attributes.shape[-1], np.nan, np.float32)
    return lambda key, num_samples: sample(key, nothing, num_samples)


@dataclasses.dataclass(frozen=True)
class Concatenation:
  """"concat": q(z | x), z ~ N(0, I) and a decoder of [z, one-hot y] ("unknown" for
  hidden): decoder-only conditioning."""
  prior: priors.Prior
  num_values: tuple[int, ...]
  kind = "concat"
  permutation = None
  imputes_hidden_labels = False

  def encoder(self, encoder: vae_models.Encoder) -> Any:
    return encoder

  def encoder_inputs(self, images: jax.Array, attributes: jax.Array) -> tuple:
    del attributes
    return (images,)

  def decoder(self, decoder: vae_models.Decoder) -> vae_models.ConditionalDecoder:
    return vae_models.ConditionalDecoder(decoder=decoder, num_values=self.num_values)

  def decoder_inputs(self, z: jax.Array, attributes: jax.Array) -> tuple:
    return (z, attributes)

  def joint_log_prob_fn(self, prior_params: Any,
                        attributes: jax.Array) -> JointLogProbFn:
    """log p(z), and 0 for y (which it does not model): eq. 14 is then its ELBO."""
    del attributes
    return lambda z: (self.prior.log_prob(prior_params, z),
                      jnp.zeros(z.shape[:-1], z.dtype))

  def train_metrics(self, terms: losses.ConditionalElboTerms) -> dict[str, jax.Array]:
    del terms
    return {}

  def eval_sums(self, prior_params: Any, terms: losses.ConditionalElboTerms,
                attributes: jax.Array) -> dict[str, jax.Array]:
    del prior_params, attributes
    return {"bound_x_given_y": terms.bound, "log_likelihood": terms.log_likelihood,
            "kl": terms.kl}

  def unconditional_sample_fn(self, sample: Callable[..., np.ndarray],
                              real_attributes: np.ndarray
                              ) -> Callable[[jax.Array, int], np.ndarray]:
    """It has no p(y): each image gets the attributes of a random real example."""
    def sample_fn(key, num_samples):
      rows_key, sample_key = jax.random.split(key)
      rows = jax.random.randint(rows_key, (num_samples,), 0, len(real_attributes))
      return sample(sample_key, real_attributes[np.asarray(rows)])
    return sample_fn


@dataclasses.dataclass(frozen=True)
class TextbookCvae(Concatenation):
  """"cvae": q(z | x, y), p(x | z, y), z ~ N(0, I); a hidden attribute is a learned
  "unknown" value in both networks."""
  kind = "cvae"

  def encoder(self, encoder: vae_models.Encoder) -> vae_models.ConditionalEncoder:
    return vae_models.ConditionalEncoder(encoder=encoder, num_values=self.num_values)

  def encoder_inputs(self, images: jax.Array, attributes: jax.Array) -> tuple:
    return (images, attributes)


@dataclasses.dataclass(frozen=True)
class ImputedCvae(TextbookCvae):
  """"cvae_imputed": "cvae" trained on labels whose hidden entries are imputed by a
  predictor of y from x (`tripjax.training.imputation`)."""
  kind = "cvae_imputed"
  imputes_hidden_labels = True


def _joint_trip(config: ml_collections.ConfigDict, num_values: tuple[int, ...],
                permutation: Sequence[int] | None) -> JointTrip:
  return JointTrip(priors.make_joint_prior(
      config.model.latent_dim, num_values, num_components=config.prior.num_components,
      rank=config.prior.rank, permutation_seed=config.prior.permutation_seed,
      permutation=permutation))


def _concatenation(config: ml_collections.ConfigDict, num_values: tuple[int, ...],
                   permutation: Sequence[int] | None) -> Concatenation:
  del permutation
  return Concatenation(priors.make_prior("normal", config.model.latent_dim),
                       num_values)


def _textbook(config: ml_collections.ConfigDict, num_values: tuple[int, ...],
              permutation: Sequence[int] | None) -> TextbookCvae:
  del permutation
  return TextbookCvae(priors.make_prior("normal", config.model.latent_dim), num_values)


def _imputed(config: ml_collections.ConfigDict, num_values: tuple[int, ...],
             permutation: Sequence[int] | None) -> ImputedCvae:
  del permutation
  return ImputedCvae(priors.make_prior("normal", config.model.latent_dim), num_values)


# config.model.kind -> (config, attribute sizes, ring order or None) -> the variant.
VARIANTS: dict[str, Callable[..., CvaeVariant]] = {
    "trip": _joint_trip, "cvae": _textbook, "cvae_imputed": _imputed,
    "concat": _concatenation}
MODEL_KINDS = tuple(VARIANTS)


# ---------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class CvaeModel:
  """The fixed (non-array) parts of a conditional VAE.

  Attributes:
    variant: what differs between the conditional VAEs (`CvaeVariant`).
    encoder: the variant's encoder module: images (B, H, W, C) (and, for "cvae" and
      "cvae_imputed", attributes (B, a)) -> (mean, log_scale), each (B, latent_dim).
    decoder: the variant's decoder module.
    specs: the attributes (`tripjax.data.attribute_specs`).
    likelihood: a name in `tripjax.likelihoods.LIKELIHOODS`.
    image_shape: (H, W, C).
    latent_dim: d.
  """
  variant: CvaeVariant
  encoder: vae_models.Encoder
  decoder: Any
  specs: tuple[data_lib.AttributeSpec, ...]
  likelihood: str
  image_shape: tuple[int, ...]
  latent_dim: int

  @property
  def kind(self) -> str:
    return self.variant.kind

  @property
  def prior(self) -> Any:
    """The joint prior p(z, y) ("trip") or the N(0, I) prior over z (baselines)."""
    return self.variant.prior

  @property
  def permutation(self) -> tuple[int, ...] | None:
    """The joint prior's ring order; None where there is none."""
    return self.variant.permutation

  def posterior(self, params: dict, images: jax.Array,
                attributes: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """q(z|x) (or q(z|x, y)): images (B, H, W, C), attributes (B, a) with NaN =
    unknown (None: all unknown) -> (mean, log_scale), each (B, latent_dim)."""
    if attributes is None:
      attributes = jnp.full((images.shape[0], len(self.specs)), jnp.nan, jnp.float32)
    return cast(tuple[jax.Array, jax.Array], self.encoder.apply(
        {"params": params["encoder"]}, *self.variant.encoder_inputs(images, attributes)))

  def decode(self, params: dict, z: jax.Array, attributes: jax.Array) -> jax.Array:
    """z (B, d), attributes (B, a), NaN = unknown -> raw decoder output (B, H, W, P * C)."""
    return self.decoder.apply({"params": params["decoder"]},
                              *self.variant.decoder_inputs(z, attributes))

  def decode_mean(self, params: dict, z: jax.Array, attributes: jax.Array) -> jax.Array:
    """z (B, d), attributes (B, a) -> images (B, H, W, C) in [0, 1] to look at."""
    return likelihoods.likelihood_mean(self.likelihood, self.decode(params, z, attributes))

  def log_likelihood_fn(self, params: dict, images: jax.Array, attributes: jax.Array):
    """The function z (B, d) -> log p(x | z) ("trip") or log p(x | z, y) (baselines)."""
    return lambda z: likelihoods.log_likelihood(
        self.likelihood, self.decode(params, z, attributes), images)

  def bound_terms(self, params: dict, images: jax.Array, attributes: jax.Array,
                  key: jax.Array, num_samples: int = 1) -> losses.ConditionalElboTerms:
    """Per-example terms (B,) of the trained bound: eq. 14 on log p(x, y_obs)
    ("trip") or the ELBO of log p(x | y_obs) (baselines)."""
    mean, log_scale = self.posterior(params, images, attributes)
    return losses.conditional_elbo(
        key, mean, log_scale, self.log_likelihood_fn(params, images, attributes),
        self.variant.joint_log_prob_fn(params["prior"], attributes), num_samples)


def build_model(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                likelihood: str,
                permutation: Sequence[int] | None = None) -> CvaeModel:
  """The networks of `config.model` and the variant of `config.model.kind` for the
  attributes of `config.data.name`; `permutation` (e.g. a checkpoint's) overrides the
  ring order of `prior.permutation_seed`."""
  specs = data_lib.attribute_specs(config.data.name)
  num_values = tuple(spec.num_values for spec in specs)
  variant = VARIANTS[config.model.kind](config, num_values, permutation)
  encoder, decoder = autoencoders.build_networks(config, image_shape, likelihood)
  return CvaeModel(variant=variant, encoder=variant.encoder(encoder),
                   decoder=variant.decoder(decoder),
                   specs=specs, likelihood=likelihood, image_shape=tuple(image_shape),
                   latent_dim=config.model.latent_dim)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The two Adams (`optimizers.two_adams`): the prior's at `prior.learning_rate`."""
  return optimizers.two_adams(config)


def init_state(model: CvaeModel, optimizer: optax.GradientTransformation,
               key: jax.Array) -> CvaeState:
  """Fresh parameters and optimizer state (one compiled call), and the ring order.

  `key`: the "init" stream's key (`RandomStreams.init_key`), or any PRNG key.
  """

  @jax.jit
  def initialize(key):
    encoder_key, decoder_key, prior_key = jax.random.split(key, 3)
    images = jnp.zeros((1,) + model.image_shape, jnp.float32)
    z = jnp.zeros((1, model.latent_dim), jnp.float32)
    attributes = jnp.full((1, len(model.specs)), jnp.nan, jnp.float32)
    params = {
        "encoder": model.encoder.init(
            encoder_key, *model.variant.encoder_inputs(images, attributes))["params"],
        "decoder": model.decoder.init(
            decoder_key, *model.variant.decoder_inputs(z, attributes))["params"],
        "prior": model.prior.init(prior_key),
    }
    return params, optimizer.init(params)

  params, opt_state = initialize(key)
  permutation = (None if model.permutation is None
                 else np.asarray(model.permutation, np.int32))
  return CvaeState(params=params, opt_state=opt_state, permutation=permutation)


def hidden_labels(config: ml_collections.ConfigDict,
                  train_dataset: data_lib.ImageDataset) -> np.ndarray:
  """Which training labels are hidden: `hidden_attribute_mask` over the whole training
  split (seed `train.seed`), bool (N, a); row i is a function of example i alone."""
  return data_lib.hidden_attribute_mask(
      len(train_dataset), len(data_lib.attribute_specs(config.data.name)),
      float(config.data.hide_attribute_fraction), config.train.seed)


def make_prepare_batch(config: ml_collections.ConfigDict,
                       train_dataset: data_lib.ImageDataset,
                       imputed: np.ndarray | None = None) -> loop.PrepareBatchFn:
  """The loop's `prepare_batch`: {"image", "attributes"} with the hidden labels NaN
  (`hidden_labels`, looked up by example index: a pure function of the example), or,
  given `imputed` (N, a) (`impute_hidden_labels`), its rows."""
  name = config.data.name
  hidden = hidden_labels(config, train_dataset)

  def prepare_batch(indices: np.ndarray, images: np.ndarray, labels) -> dict:
    if imputed is not None:
      return {"image": images, "attributes": imputed[indices]}
    attributes = data_lib.attributes_from_labels(name, labels)
    return {"image": images,
            "attributes": data_lib.hide_attributes(attributes, hidden[indices])}

  return prepare_batch


IMPUTER_DIRNAME = "imputer"  # where "cvae_imputed" caches its predictor in the workdir


def impute_hidden_labels(config: ml_collections.ConfigDict,
                         train_dataset: data_lib.ImageDataset,
                         streams: rng_lib.RandomStreams,
                         workdir: str | None = None) -> imputation.Imputation:
  """The training attributes of "cvae_imputed": the visible labels (`hidden_labels`
  NaN), every hidden one imputed by a predictor trained on the visible ones
  (`imputation.impute_hidden_labels`, key `streams.key("imputer")`, cached in
  workdir/imputer)."""
  labels = train_dataset.labels
  if labels is None:
    raise ValueError(f"{train_dataset.name} train has no labels.")
  visible = data_lib.hide_attributes(
      data_lib.attributes_from_labels(config.data.name, labels),
      hidden_labels(config, train_dataset))
  return imputation.impute_hidden_labels(
      config, train_dataset, visible, streams.key("imputer"), config.train.seed,
      None if workdir is None else os.path.join(workdir, IMPUTER_DIRNAME),
      save=distributed.is_main_process())


def make_train_step(model: CvaeModel, optimizer: optax.GradientTransformation,
                    elbo_samples: int = 1,
                    attribute_weight: float = 1.0) -> loop.TrainStepFn:
  """The pure step: maximize the batch mean of the model's bound (`bound_terms`).

  With `attribute_weight` w != 1 (`train.attribute_weight`) it maximizes
  E_q[log p(x|z)] + w E_q[log p(y_obs|z)] - KL instead (eq. 14 is w = 1); the metrics
  still report the bound itself, and loss is what is minimized. Only "trip" has the
  attribute term (the baselines' is 0), so w changes nothing else.

  Returns:
    train_step(state, batch {"image" (B, H, W, C), "attributes" (B, a)}, rng) ->
    (state, metrics) with scalar metrics loss (what is minimized: -bound at w = 1),
    bound, log_likelihood, kl, the variant's own (`train_metrics`; "trip":
    attribute_log_likelihood), nats per example, and grad_norm.
  """

  def loss_fn(params, images, attributes, rng):
    terms = jax.tree.map(jnp.mean, model.bound_terms(params, images, attributes, rng,
                                                     elbo_samples))
    return -(terms.bound + (attribute_weight - 1.0) * terms.attribute_log_likelihood), terms

  def train_step(state: CvaeState, batch: dict, rng: jax.Array):
    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch["image"], batch["attributes"], rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "bound": terms.bound,
               "log_likelihood": terms.log_likelihood, "kl": terms.kl,
               **model.variant.train_metrics(terms),
               "grad_norm": optax.tree.norm(grads)}
    return dataclasses.replace(state, params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(model: CvaeModel):
  """Sums of the per-example test bounds (module docstring) over a padded batch.

  Returns:
    eval_step(params, images (B, H, W, C), attributes (B, a), mask (B,), rng) -> dict
    of scalar sums over the real (mask = 1) examples, with "count".
  """

  def eval_step(params, images, attributes, mask, rng):
    terms = model.bound_terms(params, images, attributes, rng)
    sums = model.variant.eval_sums(params["prior"], terms, attributes)
    sums = {name: jnp.sum(value * mask) for name, value in sums.items()}
    sums["count"] = jnp.sum(mask)
    return sums

  return eval_step


@functools.lru_cache(maxsize=16)
def _jitted_eval_step(model: CvaeModel, mesh: jax.sharding.Mesh):
  return evaluation.jit_eval_step(make_eval_step(model), mesh, num_batch_arrays=3)


def evaluate(model: CvaeModel, params: dict, dataset: data_lib.ImageDataset, *,
             batch_size: int, key: jax.Array, mesh: jax.sharding.Mesh | None = None,
             prefix: str = "test") -> dict:
  """Mean test bounds (module docstring) over every example of `dataset`, every
  attribute observed, in nats per example: {f"{prefix}_bound_x_given_y", ...}."""
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  totals = evaluation.dataset_totals(
      _jitted_eval_step(model, mesh), params, dataset, batch_size=batch_size, key=key,
      mesh=mesh, batch_arrays=lambda batch: (
          batch.images, data_lib.attributes_from_labels(dataset.name, batch.labels)))
  return evaluation.per_example_means(totals, prefix)


# ---------------------------------------------------------------- conditional samples


@functools.lru_cache(maxsize=16)
def _jitted_decode_mean(model: CvaeModel):
  return jax.jit(model.decode_mean)


def sample_images(model: CvaeModel, params: dict, key: jax.Array, request,
                  num: int | None = None) -> np.ndarray:
  """Decoder means of images given attributes (`conditional.sample_images_given_attributes`).

  Args:
    model, params: a trained model (host params).
    key: PRNG key.
    request: (a,) one request for `num` images, or (n, a) one per image; float value
      indices, NaN = unspecified (summed out by "trip"; "unknown" to the baselines).
    num: the number of images of a single request.

  Returns:
    (n, H, W, C) float32 images in [0, 1].

  Raises:
    ValueError: bad shapes, or a request of probability zero under the prior.
  """
  request = np.asarray(request, np.float32)
  if request.ndim == 1 and num is not None:
    # One row per image: every call of a given size shares one compiled sampler.
    request = np.broadcast_to(request, (num, request.shape[0]))
    num = None
  decode_mean = _jitted_decode_mean(model)
  return np.asarray(conditional.sample_images_given_attributes(
      model.prior, params["prior"], key, request,
      lambda z, attributes: decode_mean(params, z, jnp.asarray(attributes)), num))


def sample_images_in_chunks(model: CvaeModel, params: dict, key: jax.Array,
                            requests: np.ndarray, chunk_size: int) -> np.ndarray:
  """`sample_images` for many requests (n, a), `chunk_size` at a time (one compiled
  shape: the last chunk is padded with unconditional requests): (n, H, W, C)."""
  requests = np.asarray(requests, np.float32)
  num_chunks = -(-len(requests) // chunk_size)
  padded = np.full((num_chunks * chunk_size, requests.shape[1]), np.nan, np.float32)
  padded[:len(requests)] = requests
  images = [sample_images(model, params, jax.random.fold_in(key, index),
                          padded[index * chunk_size:(index + 1) * chunk_size])
            for index in range(num_chunks)]
  return np.concatenate(images)[:len(requests)]


def parse_request_list(specs: Sequence[data_lib.AttributeSpec], text: str) -> np.ndarray:
  """"digit=3" or "Male=1,Eyeglasses=1" ("" for none) -> a request (a,) with NaN."""
  assignments = [part for part in text.split(",") if part.strip()]
  return conditional.parse_attribute_request(specs, assignments)


def grid_requests(config: ml_collections.ConfigDict,
                  specs: Sequence[data_lib.AttributeSpec]) -> np.ndarray:
  """The rows of the conditional sample grid (`eval.grid_requests`): (rows, a); by
  default one row per value of the first attribute (digit=0, ..., digit=9)."""
  if config.eval.grid_requests:
    return np.stack([parse_request_list(specs, text)
                     for text in config.eval.grid_requests])
  requests = np.full((specs[0].num_values, len(specs)), np.nan, np.float32)
  requests[:, 0] = np.arange(specs[0].num_values)
  return requests


def image_outputs(model: CvaeModel, params: dict, requests: np.ndarray,
                  num_columns: int, key: jax.Array,
                  num_prior_samples: int) -> dict[str, loop.Image]:
  """The loop's image outputs: "conditional_samples" (row i: `num_columns` images
  given requests[i]) and "prior_samples" (no attribute given)."""
  params = distributed.to_host(params)
  row_key, prior_key = jax.random.split(key)
  conditional_images = sample_images(model, params, row_key,
                                     np.repeat(requests, num_columns, axis=0))
  unconditional = sample_images(model, params, prior_key,
                                np.full(len(model.specs), np.nan, np.float32),
                                num=num_prior_samples)
  scale = image_grid.display_scale(model.image_shape)
  return {
      "conditional_samples": loop.Image(
          image_grid.make_grid(conditional_images, num_columns), scale),
      "prior_samples": loop.Image(image_grid.make_grid(unconditional), scale),
  }


# ---------------------------------------------------------------- condition violation


def violation_requests(config: ml_collections.ConfigDict,
                       reference_attributes: np.ndarray) -> dict[str, np.ndarray]:
  """{"single": one attribute per request, "subset": random subsets of
  `eval.violation_subset_sizes`}, `eval.violation_num_samples` requests each (n, a),
  values copied from real examples; the same for every run of a dataset."""
  specs = data_lib.attribute_specs(config.data.name)
  count = config.eval.violation_num_samples
  return {
      "single": condition_violation.random_requests(
          specs, count, (1,), _SINGLE_REQUEST_SEED, reference_attributes),
      "subset": condition_violation.random_requests(
          specs, count, tuple(config.eval.violation_subset_sizes),
          _SUBSET_REQUEST_SEED, reference_attributes),
  }


def violation_metrics(model: CvaeModel, params: dict,
                      predictor: condition_violation.AttributePredictor,
                      requests: dict[str, np.ndarray], key: jax.Array,
                      chunk_size: int, reference_predicted: np.ndarray | None = None,
                      min_reference: int = condition_violation.MIN_REFERENCE
                      ) -> dict[str, float]:
  """`condition_violation.violation_metrics` of one image per request, drawn
  `chunk_size` at a time (`sample_images_in_chunks`): violation rates and, given the
  attributes the predictor reads on real images (N, a), the diversity of the
  unrequested attributes (`condition_violation.unrequested_diversity`)."""
  params = distributed.to_host(params)
  return condition_violation.violation_metrics(
      lambda key, requests: sample_images_in_chunks(model, params, key, requests,
                                                    chunk_size),
      predictor, requests, key, model.specs, reference_predicted, min_reference)


class ViolationSetup(NamedTuple):
  """What the violation evaluation needs, loaded once per run: the classifier, the
  requests (`violation_requests`), the classifier's accuracy on real images and the
  attributes it reads on them (N, a) (the diversity's reference)."""
  predictor: condition_violation.AttributePredictor
  requests: dict
  classifier_accuracy: dict
  reference_predicted: np.ndarray


def violation_setup(config: ml_collections.ConfigDict) -> ViolationSetup | None:
  """The classifier, the requests and its accuracy on real `eval.split` images (grey
  levels: the samples are decoder means); None when `eval.violation_num_samples` is 0."""
  if not config.eval.violation_num_samples:
    return None
  predictor = condition_violation.load_attribute_predictor(
      config.data.name, config.eval.classifier_workdir, config.eval.batch_size)
  real = data_lib.load_dataset(config.data.name, config.eval.split,
                               data_dir=config.data.data_dir, binarize=False)
  if config.data.num_eval_examples is not None:
    real = real.take(config.data.num_eval_examples)
  attributes = condition_violation.real_attributes(predictor, real,
                                                   config.eval.batch_size)
  return ViolationSetup(predictor, violation_requests(config, attributes.truth),
                        attributes.accuracy, attributes.predicted)


def _diversity_min_reference(config: ml_collections.ConfigDict) -> int:
  """`eval.diversity_min_reference`; the default for a run whose config predates it."""
  return int(config.eval.get("diversity_min_reference",
                             condition_violation.MIN_REFERENCE))


def _violation_outputs(config: ml_collections.ConfigDict, model: CvaeModel,
                       params: dict, evaluation_setup: ViolationSetup | None,
                       streams: rng_lib.RandomStreams) -> dict:
  if evaluation_setup is None:
    return {}
  outputs = violation_metrics(model, params, evaluation_setup.predictor,
                              evaluation_setup.requests, streams.key("request"),
                              config.eval.batch_size,
                              evaluation_setup.reference_predicted,
                              _diversity_min_reference(config))
  outputs.update(evaluation_setup.classifier_accuracy)
  return outputs


# ---------------------------------------------------------------- config and training


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a CVAE config."""
  config_checks.check_choice(config, "task", ("cvae",))
  config_checks.check_choice(config, "data.name", data_lib.ATTRIBUTE_DATASETS)
  config_checks.check_number(config, "data.hide_attribute_fraction", minimum=0.0,
                             maximum=1.0)
  config_checks.check_choice(config, "model.kind", MODEL_KINDS)
  autoencoders.check_autoencoder_fields(config)
  config_checks.check_int(config, "prior.permutation_seed", minimum=0)
  # (Read by "trip" alone: the baselines' bounds have no attribute term to weigh, so
  # one config serves every kind, as `benchmarks.cvae_results` runs them.)
  config_checks.check_number(config, "train.attribute_weight", minimum=0.0)
  if config.model.kind == "cvae_imputed":
    imputation.check_fields(config)
  specs = data_lib.attribute_specs(config.data.name)
  requests = config_checks.get_field(config, "eval.grid_requests")
  if not isinstance(requests, (tuple, list)) or not all(
      isinstance(text, str) for text in requests):
    raise config_checks.ConfigError("eval.grid_requests", requests, "must be a tuple "
                                    "of strings like 'digit=3' or 'Male=1,Smiling=1'.")
  for text in requests:
    try:
      parse_request_list(specs, text)
    except ValueError as error:
      raise config_checks.ConfigError("eval.grid_requests", requests,
                                      str(error)) from None
  config_checks.check_int(config, "eval.grid_columns", minimum=1)
  config_checks.check_int(config, "eval.violation_num_samples", minimum=0)
  config_checks.check_int_sequence(config, "eval.violation_subset_sizes", minimum=1)
  if "diversity_min_reference" in config.eval:  # absent from runs before issue 21
    config_checks.check_int(config, "eval.diversity_min_reference", minimum=1)
  sizes = config.eval.violation_subset_sizes
  if not sizes or max(sizes) > len(specs):
    raise config_checks.ConfigError(
        "eval.violation_subset_sizes", sizes, f"must be sizes in [1, {len(specs)}] "
        f"(the {config.data.name} attributes: "
        f"{', '.join(spec.name for spec in specs)}).")
  if not isinstance(config_checks.get_field(config, "eval.classifier_workdir"), str):
    raise config_checks.ConfigError("eval.classifier_workdir",
                                    config.eval.classifier_workdir, "must be a path.")


@dataclasses.dataclass(frozen=True)
class CvaeSetup:
  """The data, model and optimizer of a CVAE config.

  Attributes:
    train_dataset: the training split (its first `data.num_train_examples`).
    eval_dataset: the `eval.split` (its first `data.num_eval_examples`).
    model: the `CvaeModel` (with the ring order of the workdir's checkpoint, if any).
    optimizer: the two Adams (`make_optimizer`).
  """
  train_dataset: data_lib.ImageDataset
  eval_dataset: data_lib.ImageDataset
  model: CvaeModel
  optimizer: optax.GradientTransformation


def setup(config: ml_collections.ConfigDict, workdir: str | None = None) -> CvaeSetup:
  """The `CvaeSetup` of a (valid) config; with `workdir`, its model has the ring order
  of the workdir's checkpoint (`restore_matching`)."""
  train_dataset = experiment.load_split(config, "train", config.data.num_train_examples)
  eval_dataset = experiment.load_split(config, config.eval.split,
                                       config.data.num_eval_examples)
  model = build_model(config, train_dataset.image_shape, train_dataset.likelihood)
  optimizer = make_optimizer(config)
  if workdir is not None:
    model, _ = restore_matching(config, workdir, model, optimizer)
  return CvaeSetup(train_dataset, eval_dataset, model, optimizer)


class RestoredCvae(NamedTuple):
  """A checkpoint of a CVAE run: the state and its position."""
  state: CvaeState
  position: loop.Position


def restore_matching(config: ml_collections.ConfigDict, workdir: str,
                     model: CvaeModel, optimizer: optax.GradientTransformation, *,
                     step: int | None = None, mesh: jax.sharding.Mesh | None = None
                     ) -> tuple[CvaeModel, RestoredCvae | None]:
  """The model with the ring order of the checkpoint in `workdir`, and that
  checkpoint; (model, None) when there is none to read.

  The checkpoint's order wins over `prior.permutation_seed` (with a message): its
  parameters were trained in it. The ring's static structure (which variable is
  discrete where) is rebuilt before the parameters are restored into it.
  """
  if not os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIRNAME)):
    return model, None

  def restore(model: CvaeModel) -> RestoredCvae:
    return RestoredCvae(*loop.restore_for_inference(
        workdir, lambda key: init_state(model, optimizer, key), step=step, mesh=mesh))

  try:
    restored = restore(model)
  except (FileNotFoundError, checkpoints.CheckpointCorruptError):
    return model, None  # The loop reports it (or starts afresh), as for the VAE.
  if model.permutation is None:
    return model, restored
  stored = tuple(int(i) for i in np.asarray(restored.state.permutation))
  if stored == model.permutation:
    return model, restored
  tqdm.tqdm.write(
      f"The checkpoint in {workdir} orders the joint prior's variables as "
      f"{list(stored)}, not as prior.permutation_seed={config.prior.permutation_seed} "
      f"would ({list(model.permutation)}); using the checkpoint's order.")
  model = build_model(config, model.image_shape, model.likelihood, stored)
  return model, restore(model)


def _evaluation_due(config: ml_collections.ConfigDict, progress: loop.Progress) -> bool:
  return progress.is_due(every_steps=config.eval.every_steps,
                         every_epochs=config.eval.every_epochs)


def make_after_step(config: ml_collections.ConfigDict, cvae_setup: CvaeSetup,
                    evaluation_setup: ViolationSetup | None, mesh: jax.sharding.Mesh,
                    streams: rng_lib.RandomStreams
                    ) -> tuple[loop.AfterStepFn, loop.DueFn]:
  """Prior refits (`autoencoders.refit_if_due`), evaluations (test bounds and sample
  grids, on the VAE's schedule) and, after the last step, the condition violation
  rates and the classifier's accuracy on real images; and when any is due."""
  model = cvae_setup.model
  requests = grid_requests(config, model.specs)

  def due(progress: loop.Progress) -> bool:
    refit = (model.prior.refit is not None
             and autoencoders.refit_due(config, progress))
    return refit or _evaluation_due(config, progress) or progress.final

  def after_step(state: CvaeState, progress: loop.Progress):
    outputs: dict[str, Any] = {}
    state, refitted = autoencoders.refit_if_due(
        config, model, cvae_setup.optimizer, state, progress, cvae_setup.train_dataset,
        mesh, streams)
    if refitted:
      outputs["prior_refit"] = True
    if _evaluation_due(config, progress):
      outputs.update(evaluate(model, state.params, cvae_setup.eval_dataset,
                              batch_size=config.eval.batch_size,
                              key=streams.key("evaluation"), mesh=mesh,
                              prefix=config.eval.split))
      outputs.update(image_outputs(
          model, state.params, requests, config.eval.grid_columns,
          streams.key("image_grid", progress.epoch), config.eval.num_prior_samples))
    if progress.final:
      outputs.update(_violation_outputs(config, model, state.params, evaluation_setup,
                                        streams))
    return state, outputs

  return after_step, due


def _header(config: ml_collections.ConfigDict, cvae_setup: CvaeSetup,
            evaluation_setup: ViolationSetup | None) -> str:
  fraction = config.data.hide_attribute_fraction
  header = (f"Conditional VAE ({config.model.kind}) on {config.data.name} with "
            f"{len(cvae_setup.model.specs)} attributes, {fraction:.0%} of the training "
            f"labels hidden, {len(cvae_setup.train_dataset)} train / "
            f"{len(cvae_setup.eval_dataset)} {config.eval.split} examples")
  if evaluation_setup is not None:
    header += f"; condition violations by the {evaluation_setup.predictor.description}"
  return header


def _imputation_text(config: ml_collections.ConfigDict,
                     train_dataset: data_lib.ImageDataset, imputed: np.ndarray) -> str:
  """How often the imputed labels are right (read here for the log only: the
  predictor never saw them)."""
  hidden = hidden_labels(config, train_dataset)
  if not hidden.any():
    return "no label hidden, none imputed"
  truth = data_lib.attributes_from_labels(config.data.name, train_dataset.labels)
  accuracy = float(np.mean(imputed[hidden] == truth[hidden]))
  return (f"{int(hidden.sum()):,} hidden labels imputed by a predictor of the visible "
          f"ones, {accuracy:.1%} of them right")


def build(config: ml_collections.ConfigDict,
          context: experiment.RunContext) -> experiment.Experiment:
  """The `experiment.Experiment` of a CVAE config (`Trainer.build`).

  Raises:
    FileNotFoundError: the classifier of the violation rate is not trained yet.
  """
  cvae_setup = setup(config, context.workdir)
  evaluation_setup = violation_setup(config)
  imputed, header = None, _header(config, cvae_setup, evaluation_setup)
  if cvae_setup.model.variant.imputes_hidden_labels:
    imputed = impute_hidden_labels(config, cvae_setup.train_dataset, context.streams,
                                   context.workdir).attributes
    header += "; " + _imputation_text(config, cvae_setup.train_dataset, imputed)
  after_step, due = make_after_step(config, cvae_setup, evaluation_setup, context.mesh,
                                    context.streams)
  task = loop.Task(
      init_state=init_state(cvae_setup.model, cvae_setup.optimizer,
                            context.streams.init_key()),
      train_step=make_train_step(cvae_setup.model, cvae_setup.optimizer,
                                 config.train.elbo_samples,
                                 config.train.attribute_weight),
      after_step=after_step, after_step_due=due, shown_metrics=("loss", "bound"),
      prepare_batch=make_prepare_batch(config, cvae_setup.train_dataset, imputed))
  return experiment.Experiment(task, cvae_setup.train_dataset, header)


def classifiers(config: ml_collections.ConfigDict
                ) -> tuple[experiment.ClassifierRun, ...]:
  """The digit classifier of the violation rate on digits (the CelebA attribute
  classifier is trained by hand: `condition_violation.load_attribute_predictor`)."""
  if (not config.eval.violation_num_samples
      or config.data.name not in condition_violation.DIGIT_DATASETS):
    return ()
  return (experiment.ClassifierRun(classifier_fd.STOCK_CONFIG,
                                   config.eval.classifier_workdir),)


# ---------------------------------------------------------------- trained runs


@dataclasses.dataclass(frozen=True)
class ConditionalSampler:
  """A checkpoint of a `train.cvae` run, ready to generate images given attributes.

  Attributes:
    config: the run's config.
    model: its model (with the checkpoint's ring order).
    params: its parameters, on the host.
    position: the checkpoint's `loop.Position`.
  """
  config: ml_collections.ConfigDict
  model: CvaeModel
  params: dict
  position: loop.Position

  @property
  def specs(self) -> tuple[data_lib.AttributeSpec, ...]:
    return self.model.specs

  def request(self, assignments: Sequence[str]) -> np.ndarray:
    """["Male=1", "Eyeglasses=1"] -> (a,) request (`conditional.parse_attribute_request`;
    ValueError listing the valid names or values)."""
    return conditional.parse_attribute_request(self.specs, assignments)

  def sample(self, key: jax.Array, request, num: int | None = None) -> np.ndarray:
    """`sample_images` with this checkpoint: (n, H, W, C) in [0, 1]."""
    return sample_images(self.model, self.params, key, request, num)


def load_sampler(workdir: str, *, step: int | None = None,
                 config: ml_collections.ConfigDict | None = None) -> ConditionalSampler:
  """The newest (or the given) checkpoint of a `train.cvae` run in `workdir`.

  Args:
    workdir: the run's workdir.
    step: which checkpoint (default: the newest).
    config: the run's config (default: workdir/config.json).

  Raises:
    FileNotFoundError: no run or no checkpoint in `workdir`.
  """
  config = workdirs.load_config(workdir) if config is None else config
  validate_config(config)
  test_set = data_lib.load_dataset(config.data.name, "test",
                                   data_dir=config.data.data_dir)
  model = build_model(config, test_set.image_shape, test_set.likelihood)
  model, restored = restore_matching(config, workdir, model, make_optimizer(config),
                                     step=step)
  if restored is None:
    raise FileNotFoundError(f"No readable checkpoint in {workdir}.")
  return ConditionalSampler(config, model, distributed.to_host(restored.state.params),
                            restored.position)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        step: int | None = None) -> dict:
  """Test bounds and condition violation rates of a checkpoint in `workdir`, with the
  keys of training (`RandomStreams(train.seed)`).

  Appends the result to workdir/metrics.jsonl (split "checkpoint_eval") and writes it
  to workdir/eval_metrics.json. Returns the record, with "step".
  """
  sampler = load_sampler(workdir, step=step, config=config)
  streams = rng_lib.RandomStreams(config.train.seed)
  eval_dataset = experiment.load_split(config, config.eval.split,
                                       config.data.num_eval_examples)
  metrics = evaluate(sampler.model, sampler.params, eval_dataset,
                     batch_size=config.eval.batch_size, key=streams.key("evaluation"),
                     prefix=config.eval.split)
  metrics.update(_violation_outputs(config, sampler.model, sampler.params,
                                    violation_setup(config), streams))
  return evaluation.write_checkpoint_eval(workdir, sampler.position, metrics)


def checkpoint_sampler(config: ml_collections.ConfigDict, workdir: str,
                       step: int | None = None) -> samplers.CheckpointSampler:
  """Unconditional decoder means of a `train.cvae` checkpoint, for FID.

  "trip": z ~ p(z) with every attribute summed out. The baselines have no p(y): each
  image gets the attributes of a random real test example (drawn with the key). The
  reference is the test split at grey levels (as for the VAE).
  """
  sampler = load_sampler(workdir, step=step, config=config)
  reference = data_lib.load_dataset(config.data.name, "test",
                                    data_dir=config.data.data_dir, binarize=False)
  real_attributes = data_lib.attributes_from_labels(config.data.name, reference.labels)
  sample_fn = sampler.model.variant.unconditional_sample_fn(sampler.sample,
                                                            real_attributes)
  return samplers.CheckpointSampler(sample_fn, reference.images, sampler.position)


TRAINER = experiment.Trainer(
    name="cvae", validate_config=validate_config, build=build,
    evaluate_checkpoint=evaluate_checkpoint, checkpoint_sampler=checkpoint_sampler,
    classifiers=classifiers)


# Trains this task in a workdir (`experiment.Trainer.train_and_evaluate`).
train_and_evaluate = TRAINER.train_and_evaluate
