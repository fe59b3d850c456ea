"""Conditional VAE-TRIP with partially observed attributes (paper, section 4, eqs. 11-14).

Two models on the shared loop (`tripjax.training.loop`), chosen by `config.model.kind`:

* "trip": one TRIP over the d latents z and the a discrete attributes y, in the seeded
  random ring order `prior.permutation_seed` (`tripjax.priors.make_joint_prior`); the
  decoder sees z alone. Trained by the bound of eq. 14 on log p(x, y_obs)
  (`tripjax.losses.conditional_elbo`): the unconditional encoder q(z|x), Monte-Carlo
  KL, and the hidden attributes summed out exactly by the prior (no imputation).
* "concat": the usual CVAE baseline: z ~ N(0, I) and a decoder that takes
  [z, one-hot y] with a learned "unknown" value for a hidden attribute
  (`tripjax.models.vae.ConditionalDecoder`); same encoder, decoder widths and
  budget. Trained by the ELBO of log p(x | y_obs).

Training labels are hidden at random: each attribute of each training example with
probability `data.hide_attribute_fraction`, drawn once per example index from
`train.seed` (`tripjax.data.hidden_attribute_mask`), so every epoch and every resumed
run hides the same labels. `prepare_batch` gives the step
{"image": (B, H, W, C), "attributes": (B, a) float32 value indices, NaN = hidden}.

The ring order is part of the state (`CvaeState.permutation`, an int array next to the
parameters, never trained) and so of every checkpoint; a run restored from a checkpoint
rebuilds its prior with the checkpoint's order, which wins over the config's seed.

What "test bound" means (every test attribute is observed; nats per example):

* `{split}_bound_x_given_y`, both models: a lower bound on log p(x | y). For "concat"
  it is its ELBO; for "trip" it is eq. 14's bound minus the exact log p(y) of the ring
  (z summed out), since log p(x | y) = log p(x, y) - log p(y). The two are comparable.
* "trip" also: `{split}_bound_x_y` (eq. 14, on log p(x, y)), `{split}_log_prob_y`
  (exact log p(y)), `{split}_elbo` (the ELBO of log p(x) with every attribute summed
  out of the prior), and the parts `log_likelihood` E_q[log p(x|z)],
  `attribute_log_likelihood` E_q[log p(y|z)] and `kl` KL(q(z|x) || p(z)).

Conditional generation (`sample_images`, `load_sampler`, `python -m
train.cvae_sample`): the unspecified attributes of a request are summed out and
z ~ p(z | y_given) is drawn exactly (trip); the concat model draws z ~ N(0, I) and
gives its decoder the request, "unknown" where unspecified.

The condition violation rate (`violation_metrics`, after the last step): images
generated for random requests are classified by an attribute classifier
(`load_attribute_predictor`); the share whose predicted attributes contradict the
requested ones, per attribute and mean, for single attributes and random subsets.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable, NamedTuple, Sequence

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
from tripjax.metrics import attribute_classifier
from tripjax.metrics import condition_violation
from tripjax.models import vae as vae_models
from tripjax.training import checkpoints
from tripjax.training import classifier
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import samplers
from tripjax.training import sharding
from tripjax.training import vae
from tripjax.training import workdirs

MODEL_KINDS = ("trip", "concat")
VIOLATION_KINDS = ("single", "subset")  # requests of one attribute, of random subsets
_SINGLE_REQUEST_SEED, _SUBSET_REQUEST_SEED = 0, 1  # the same requests for every run


@flax.struct.dataclass
class CvaeState:
  """Everything that changes during training (and is checkpointed).

  Attributes:
    params: {"encoder": ..., "decoder": ..., "prior": ...} parameter pytrees.
    opt_state: the optax state for `params`.
    permutation: (d + a,) int32, the joint prior's ring order (`JointPrior.permutation`);
      never trained, kept in the checkpoint next to the params. None for "concat".
  """
  params: dict
  opt_state: Any
  permutation: Any


@dataclasses.dataclass(frozen=True)
class CvaeModel:
  """The fixed (non-array) parts of a conditional VAE.

  Attributes:
    kind: "trip" or "concat".
    encoder: images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim).
    decoder: a `Decoder` of z ("trip") or a `ConditionalDecoder` of (z, y) ("concat").
    prior: the `JointPrior` p(z, y) ("trip") or the N(0, I) `Prior` over z ("concat").
    specs: the attributes (`tripjax.data.attribute_specs`).
    likelihood: a name in `tripjax.likelihoods.LIKELIHOODS`.
    image_shape: (H, W, C).
    latent_dim: d.
  """
  kind: str
  encoder: vae_models.Encoder
  decoder: Any
  prior: Any
  specs: tuple[data_lib.AttributeSpec, ...]
  likelihood: str
  image_shape: tuple[int, int, int]
  latent_dim: int

  @property
  def permutation(self) -> tuple[int, ...] | None:
    """The joint prior's ring order; None for "concat"."""
    return self.prior.permutation if self.kind == "trip" else None

  def posterior(self, params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(z|x): images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim)."""
    return self.encoder.apply({"params": params["encoder"]}, images)

  def decoder_inputs(self, z: jax.Array, attributes: jax.Array) -> tuple:
    """What the decoder takes: (z,) for "trip", (z, attributes) for "concat"."""
    return (z,) if self.kind == "trip" else (z, attributes)

  def decode(self, params: dict, z: jax.Array, attributes: jax.Array) -> jax.Array:
    """z (B, d), attributes (B, a), NaN = unknown -> raw decoder output (B, H, W, P * C)."""
    return self.decoder.apply({"params": params["decoder"]},
                              *self.decoder_inputs(z, attributes))

  def decode_mean(self, params: dict, z: jax.Array, attributes: jax.Array) -> jax.Array:
    """z (B, d), attributes (B, a) -> images (B, H, W, C) in [0, 1] to look at."""
    return likelihoods.likelihood_mean(self.likelihood, self.decode(params, z, attributes))

  def log_likelihood_fn(self, params: dict, images: jax.Array, attributes: jax.Array):
    """The function z (B, d) -> log p(x | z) ("trip") or log p(x | z, y) ("concat")."""
    return lambda z: likelihoods.log_likelihood(
        self.likelihood, self.decode(params, z, attributes), images)

  def joint_log_prob_fn(self, params: dict, attributes: jax.Array):
    """The function z (B, d) -> (log p(z), log p(y_obs | z)), each (B,), of eq. 14.

    "concat" models no y: its second term is 0, so eq. 14's bound is its ELBO.
    """
    if self.kind == "trip":
      return lambda z: self.prior.log_prob_parts(params["prior"], z, attributes)
    return lambda z: (self.prior.log_prob(params["prior"], z),
                      jnp.zeros(z.shape[:-1], z.dtype))

  def bound_terms(self, params: dict, images: jax.Array, attributes: jax.Array,
                  key: jax.Array, num_samples: int = 1) -> losses.ConditionalElboTerms:
    """Per-example terms (B,) of the trained bound: eq. 14 on log p(x, y_obs)
    ("trip") or the ELBO of log p(x | y_obs) ("concat")."""
    mean, log_scale = self.posterior(params, images)
    return losses.conditional_elbo(key, mean, log_scale,
                                   self.log_likelihood_fn(params, images, attributes),
                                   self.joint_log_prob_fn(params, attributes),
                                   num_samples)


def build_model(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                likelihood: str,
                permutation: Sequence[int] | None = None) -> CvaeModel:
  """The networks of `config.model` and the prior of `config.prior` for the attributes
  of `config.data.name`; `permutation` (e.g. a checkpoint's) overrides the ring order
  of `prior.permutation_seed`."""
  specs = data_lib.attribute_specs(config.data.name)
  num_values = tuple(spec.num_values for spec in specs)
  encoder, decoder = vae.build_networks(config, image_shape, likelihood)
  if config.model.kind == "trip":
    prior = priors.make_joint_prior(
        config.model.latent_dim, num_values, num_components=config.prior.num_components,
        rank=config.prior.rank, permutation_seed=config.prior.permutation_seed,
        permutation=permutation)
  else:
    prior = priors.make_prior("normal", config.model.latent_dim)
    decoder = vae_models.ConditionalDecoder(decoder=decoder, num_values=num_values)
  return CvaeModel(kind=config.model.kind, encoder=encoder, decoder=decoder,
                   prior=prior, specs=specs, likelihood=likelihood,
                   image_shape=tuple(image_shape), latent_dim=config.model.latent_dim)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The VAE's two Adams (`vae.two_adams`): the prior's at `prior.learning_rate`."""
  return vae.two_adams(config)


def init_state(model: CvaeModel, optimizer: optax.GradientTransformation,
               key: jax.Array) -> CvaeState:
  """Fresh parameters and optimizer state (one compiled call), and the ring order."""

  @jax.jit
  def initialize(key):  # key: an RBG key, whose compiled init is cheap on XLA:CPU
    encoder_key, decoder_key, prior_key = jax.random.split(key, 3)
    images = jnp.zeros((1,) + model.image_shape, jnp.float32)
    z = jnp.zeros((1, model.latent_dim), jnp.float32)
    attributes = jnp.full((1, len(model.specs)), jnp.nan, jnp.float32)
    params = {
        "encoder": model.encoder.init(encoder_key, images)["params"],
        "decoder": model.decoder.init(decoder_key,
                                      *model.decoder_inputs(z, attributes))["params"],
        "prior": model.prior.init(prior_key),
    }
    return params, optimizer.init(params)

  params, opt_state = initialize(key)
  permutation = (None if model.permutation is None
                 else np.asarray(model.permutation, np.int32))
  return CvaeState(params=params, opt_state=opt_state, permutation=permutation)


def make_prepare_batch(config: ml_collections.ConfigDict,
                       train_dataset: data_lib.ImageDataset) -> loop.PrepareBatchFn:
  """The loop's `prepare_batch`: {"image", "attributes"} with the hidden labels NaN.

  Which labels are hidden is `hidden_attribute_mask` over the whole training split
  (seed `train.seed`), looked up by example index: a pure function of the example.
  """
  name = config.data.name
  hidden = data_lib.hidden_attribute_mask(
      len(train_dataset), len(data_lib.attribute_specs(name)),
      float(config.data.hide_attribute_fraction), config.train.seed)

  def prepare_batch(indices: np.ndarray, images: np.ndarray, labels) -> dict:
    attributes = data_lib.attributes_from_labels(name, labels)
    return {"image": images,
            "attributes": data_lib.hide_attributes(attributes, hidden[indices])}

  return prepare_batch


def make_train_step(model: CvaeModel, optimizer: optax.GradientTransformation,
                    elbo_samples: int = 1) -> loop.TrainStepFn:
  """The pure step: maximize the batch mean of the model's bound (`bound_terms`).

  Returns:
    train_step(state, batch {"image" (B, H, W, C), "attributes" (B, a)}, rng) ->
    (state, metrics) with scalar metrics loss (= -bound), bound, log_likelihood, kl,
    attribute_log_likelihood ("trip" only; nats per example) and grad_norm.
  """

  def loss_fn(params, images, attributes, rng):
    terms = jax.tree.map(jnp.mean, model.bound_terms(params, images, attributes, rng,
                                                     elbo_samples))
    return -terms.bound, terms

  def train_step(state: CvaeState, batch: dict, rng: jax.Array):
    grads, terms = jax.grad(loss_fn, has_aux=True)(state.params, batch["image"],
                                                   batch["attributes"], rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": -terms.bound, "bound": terms.bound,
               "log_likelihood": terms.log_likelihood, "kl": terms.kl}
    if model.kind == "trip":
      metrics["attribute_log_likelihood"] = terms.attribute_log_likelihood
    metrics["grad_norm"] = optax.tree.norm(grads)
    return state.replace(params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(model: CvaeModel):
  """Sums of the per-example test bounds (module docstring) over a padded batch.

  Returns:
    eval_step(params, images (B, H, W, C), attributes (B, a), mask (B,), rng) -> dict
    of scalar sums over the real (mask = 1) examples, with "count".
  """

  def eval_step(params, images, attributes, mask, rng):
    terms = model.bound_terms(params, images, attributes, rng)
    if model.kind == "trip":
      no_latents = jnp.full((images.shape[0], model.latent_dim), jnp.nan, images.dtype)
      log_prob_y = model.prior.log_prob(params["prior"], no_latents, attributes)
      sums = {"bound_x_given_y": terms.bound - log_prob_y, "bound_x_y": terms.bound,
              "log_prob_y": log_prob_y, "elbo": terms.log_likelihood - terms.kl,
              "log_likelihood": terms.log_likelihood,
              "attribute_log_likelihood": terms.attribute_log_likelihood,
              "kl": terms.kl}
    else:
      sums = {"bound_x_given_y": terms.bound, "log_likelihood": terms.log_likelihood,
              "kl": terms.kl}
    sums = {name: jnp.sum(value * mask) for name, value in sums.items()}
    sums["count"] = jnp.sum(mask)
    return sums

  return eval_step


@functools.lru_cache(maxsize=16)
def _jitted_eval_step(model: CvaeModel, mesh: jax.sharding.Mesh):
  return vae.jit_eval_step(make_eval_step(model), mesh, num_batch_arrays=3)


def evaluate(model: CvaeModel, params: dict, dataset: data_lib.ImageDataset, *,
             batch_size: int, key: jax.Array, mesh: jax.sharding.Mesh | None = None,
             prefix: str = "test") -> dict:
  """Mean test bounds (module docstring) over every example of `dataset`, every
  attribute observed, in nats per example: {f"{prefix}_bound_x_given_y", ...}."""
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  totals = vae.dataset_totals(
      _jitted_eval_step(model, mesh), params, dataset, batch_size=batch_size, key=key,
      mesh=mesh, batch_arrays=lambda batch: (
          batch.images, data_lib.attributes_from_labels(dataset.name, batch.labels)))
  count = totals.pop("count")
  return {f"{prefix}_{name}": total / count for name, total in totals.items()}


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
      indices, NaN = unspecified (summed out by "trip"; "unknown" to "concat").
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


class AttributePredictor(NamedTuple):
  """The classifier behind the condition violation rate.

  Attributes:
    predict: images (N, H, W, C) in [0, 1] -> (N, a) float32 predicted value indices.
    description: what it is, for logs.
  """
  predict: Callable[[np.ndarray], np.ndarray]
  description: str


def load_attribute_predictor(config: ml_collections.ConfigDict) -> AttributePredictor:
  """The attribute classifier of `config.data.name` from `eval.classifier_workdir`.

  digits and mnist: the FD digit classifier (`tripjax.configs.digits_classifier`,
  trained there first if missing); its predicted digit gives every digit attribute.
  celeb_a: the attribute classifier of `python -m train.train_classifier --config
  celeba_attribute_classifier` (FileNotFoundError naming that command if missing).
  """
  from tripjax.configs import digits_classifier  # pylint: disable=import-outside-toplevel

  workdir = config.eval.classifier_workdir
  batch_size = config.eval.batch_size
  if config.data.name in ("digits", "mnist"):
    params, metadata = classifier.get_or_train(digits_classifier.get_config(), workdir)
    return AttributePredictor(
        lambda images: condition_violation.predict_digit_attributes(params, images,
                                                                    batch_size),
        f"digit classifier in {workdir} (test accuracy "
        f"{metadata['test_accuracy']:.4f})")
  model, params, _ = classifier.load_attribute_classifier(workdir)
  return AttributePredictor(
      lambda images: attribute_classifier.predict_attributes(model, params, images,
                                                             batch_size),
      f"attribute classifier in {workdir}")


def real_attributes_and_accuracies(predictor: AttributePredictor,
                                   dataset: data_lib.ImageDataset, batch_size: int
                                   ) -> tuple[np.ndarray, dict[str, float]]:
  """The attributes of the real images of `dataset` (N, a), and the predictor's
  accuracy on them (the metric's own error): {"classifier_accuracy_<attribute>",
  "classifier_accuracy" (the mean)}. Reads the images batch by batch."""
  attributes, correct = [], []
  for batch in data_lib.padded_batches(dataset, batch_size):
    real = batch.mask > 0
    truth = data_lib.attributes_from_labels(dataset.name, batch.labels[real])
    attributes.append(truth)
    correct.append(predictor.predict(batch.images[real]) == truth)
  attributes, correct = np.concatenate(attributes), np.concatenate(correct)
  specs = data_lib.attribute_specs(dataset.name)
  accuracies = {f"classifier_accuracy_{spec.name}": float(np.mean(correct[:, j]))
                for j, spec in enumerate(specs)}
  accuracies["classifier_accuracy"] = float(np.mean(correct))
  return attributes, accuracies


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


def violation_metrics(model: CvaeModel, params: dict, predictor: AttributePredictor,
                      requests: dict[str, np.ndarray], key: jax.Array,
                      chunk_size: int) -> dict[str, float]:
  """Condition violation rates of one image per request (`violation_rates`).

  Returns:
    For each kind of `requests` ("single", "subset"): f"violation_{kind}_mean" (mean
    over the attributes), f"violation_{kind}_any" (share of images that violate at
    least one requested attribute) and f"violation_{kind}_{attribute}".
  """
  params = distributed.to_host(params)
  results = {}
  for index, (kind, kind_requests) in enumerate(requests.items()):
    images = sample_images_in_chunks(model, params, jax.random.fold_in(key, index),
                                     kind_requests, chunk_size)
    rates = condition_violation.violation_rates(predictor.predict(images), kind_requests)
    results[f"violation_{kind}_mean"] = rates.mean
    results[f"violation_{kind}_any"] = rates.any_violation
    for spec, rate in zip(model.specs, rates.per_attribute):
      results[f"violation_{kind}_{spec.name}"] = float(rate)
  return results


class _Evaluation(NamedTuple):
  """What the violation evaluation needs, loaded once per run."""
  predictor: AttributePredictor
  requests: dict
  classifier_accuracy: dict


def _violation_setup(config: ml_collections.ConfigDict) -> _Evaluation | None:
  """The classifier, the requests and its accuracy on real `eval.split` images (grey
  levels: the samples are decoder means); None when `eval.violation_num_samples` is 0."""
  if not config.eval.violation_num_samples:
    return None
  predictor = load_attribute_predictor(config)
  real = data_lib.load_dataset(config.data.name, config.eval.split,
                               data_dir=config.data.data_dir, binarize=False)
  if config.data.num_eval_examples is not None:
    real = real.take(config.data.num_eval_examples)
  reference, accuracies = real_attributes_and_accuracies(predictor, real,
                                                         config.eval.batch_size)
  return _Evaluation(predictor, violation_requests(config, reference), accuracies)


def _violation_key(config) -> jax.Array:
  return jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 6)


def _violation_outputs(config, model, params, evaluation: _Evaluation | None) -> dict:
  if evaluation is None:
    return {}
  outputs = violation_metrics(model, params, evaluation.predictor, evaluation.requests,
                              _violation_key(config), config.eval.batch_size)
  outputs.update(evaluation.classifier_accuracy)
  return outputs


# ---------------------------------------------------------------- config and training


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a CVAE config."""
  config_checks.check_choice(config, "task", ("cvae",))
  config_checks.check_choice(config, "data.name", data_lib.ATTRIBUTE_DATASETS)
  config_checks.check_number(config, "data.hide_attribute_fraction", minimum=0.0,
                             maximum=1.0)
  config_checks.check_choice(config, "model.kind", MODEL_KINDS)
  vae.check_shared_fields(config)
  config_checks.check_int(config, "prior.permutation_seed", minimum=0)
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
  sizes = config.eval.violation_subset_sizes
  if not sizes or max(sizes) > len(specs):
    raise config_checks.ConfigError(
        "eval.violation_subset_sizes", sizes, f"must be sizes in [1, {len(specs)}] "
        f"(the {config.data.name} attributes: "
        f"{', '.join(spec.name for spec in specs)}).")
  if not isinstance(config_checks.get_field(config, "eval.classifier_workdir"), str):
    raise config_checks.ConfigError("eval.classifier_workdir",
                                    config.eval.classifier_workdir, "must be a path.")


class _Setup(NamedTuple):
  train_dataset: data_lib.ImageDataset
  eval_dataset: data_lib.ImageDataset
  model: CvaeModel
  optimizer: optax.GradientTransformation


def _init_key(config) -> jax.Array:
  """The key of the initial parameters: XLA's RBG generator, because the init compiled
  with the default threefry keys costs several times longer on XLA:CPU (every random
  initializer inlines the threefry rounds)."""
  return jax.random.fold_in(jax.random.key(config.train.seed, impl="rbg"), 1)


def _setup(config: ml_collections.ConfigDict) -> _Setup:
  """Datasets, model and optimizer of a config."""
  train_dataset = vae.load_split(config, "train", config.data.num_train_examples)
  eval_dataset = vae.load_split(config, config.eval.split,
                                config.data.num_eval_examples)
  model = build_model(config, train_dataset.image_shape, train_dataset.likelihood)
  return _Setup(train_dataset, eval_dataset, model, make_optimizer(config))


def _restore_matching(config: ml_collections.ConfigDict, workdir: str,
                      model: CvaeModel, optimizer: optax.GradientTransformation, *,
                      step: int | None = None, mesh: jax.sharding.Mesh | None = None
                      ) -> tuple[CvaeModel, tuple[CvaeState, dict] | None]:
  """The model with the ring order of the checkpoint in `workdir`, and that
  checkpoint's (state, position); (model, None) when there is none to read.

  The checkpoint's order wins over `prior.permutation_seed` (with a message): its
  parameters were trained in it. The ring's static structure (which variable is
  discrete where) is rebuilt before the parameters are restored into it.
  """
  if not os.path.isdir(os.path.join(workdir, checkpoints.CHECKPOINT_DIRNAME)):
    return model, None

  def restore(model):
    return loop.restore_for_inference(
        workdir, lambda key: init_state(model, optimizer, key), step=step, mesh=mesh)

  try:
    restored = restore(model)
  except (FileNotFoundError, checkpoints.CheckpointCorruptError):
    return model, None  # The loop reports it (or starts afresh), as for the VAE.
  if model.kind != "trip":
    return model, restored
  stored = tuple(int(i) for i in np.asarray(restored[0].permutation))
  if stored == model.permutation:
    return model, restored
  tqdm.tqdm.write(
      f"The checkpoint in {workdir} orders the joint prior's variables as "
      f"{list(stored)}, not as prior.permutation_seed={config.prior.permutation_seed} "
      f"would ({list(model.permutation)}); using the checkpoint's order.")
  model = build_model(config, model.image_shape, model.likelihood, stored)
  return model, restore(model)


def make_after_step(config: ml_collections.ConfigDict, setup: _Setup,
                    evaluation: _Evaluation | None,
                    mesh: jax.sharding.Mesh) -> loop.AfterStepFn:
  """Prior refits (`vae.refit_if_due`), evaluations (test bounds and sample grids,
  when `vae.evaluation_is_due`) and, after the last step, the condition violation
  rates and the classifier's accuracy on real images."""
  model = setup.model
  requests = grid_requests(config, model.specs)
  seed_key = jax.random.PRNGKey(config.train.seed)

  def after_step(state: CvaeState, progress: loop.Progress):
    outputs = {}
    state, refitted = vae.refit_if_due(config, model, setup.optimizer, state, progress,
                                       setup.train_dataset, mesh)
    if refitted:
      outputs["prior_refit"] = True
    if vae.evaluation_is_due(config, progress):
      outputs.update(evaluate(model, state.params, setup.eval_dataset,
                              batch_size=config.eval.batch_size,
                              key=vae.eval_key(config), mesh=mesh,
                              prefix=config.eval.split))
      outputs.update(image_outputs(
          model, state.params, requests, config.eval.grid_columns,
          jax.random.fold_in(jax.random.fold_in(seed_key, 4), progress.epoch),
          config.eval.num_prior_samples))
    if progress.final:
      outputs.update(_violation_outputs(config, model, state.params, evaluation))
    return state, outputs

  return after_step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       step_hooks: Sequence[loop.StepHook] = (),
                       mesh: jax.sharding.Mesh | None = None,
                       allow_config_change: bool = False) -> CvaeState:
  """Trains a conditional VAE as `config` says, resuming from `workdir`'s checkpoints.

  Writes workdir/config.json, metrics.jsonl, checkpoints/ and images/ (conditional and
  unconditional sample grids at every evaluation); the last evaluation adds the
  condition violation rates. Returns the final state.

  Raises:
    ConfigError: a bad config value (before anything is written).
    ConfigMismatchError: `workdir` holds a run of another config.
    FileNotFoundError: the CelebA attribute classifier is not trained yet.
  """
  validate_config(config)
  workdirs.check_rerun(config, workdir, allow_config_change=allow_config_change)
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  setup = _setup(config)
  model, _ = _restore_matching(config, workdir, setup.model, setup.optimizer, mesh=mesh)
  setup = setup._replace(model=model)
  evaluation = _violation_setup(config)
  fraction = config.data.hide_attribute_fraction
  tqdm.tqdm.write(
      f"Conditional VAE ({config.model.kind}) on {config.data.name} with "
      f"{len(setup.model.specs)} attributes, {fraction:.0%} of the training labels "
      f"hidden, {len(setup.train_dataset)} train / {len(setup.eval_dataset)} "
      f"{config.eval.split} examples, {mesh.devices.size} device(s); writing to "
      f"{workdir}."
      + (f" Condition violations by the {evaluation.predictor.description}."
         if evaluation else ""))
  task = loop.Task(
      init_state=init_state(model, setup.optimizer, _init_key(config)),
      train_step=make_train_step(setup.model, setup.optimizer, config.train.elbo_samples),
      after_step=make_after_step(config, setup, evaluation, mesh),
      shown_metrics=("loss", "bound"),
      prepare_batch=make_prepare_batch(config, setup.train_dataset))
  return loop.run(workdir=workdir, options=loop.LoopOptions.from_config(config.train),
                  task=task, train_dataset=setup.train_dataset, mesh=mesh,
                  step_hooks=step_hooks, config=config)


# ---------------------------------------------------------------- trained runs


@dataclasses.dataclass(frozen=True)
class ConditionalSampler:
  """A checkpoint of a `train.cvae` run, ready to generate images given attributes.

  Attributes:
    config: the run's config.
    model: its model (with the checkpoint's ring order).
    params: its parameters, on the host.
    position: {"step", "epoch", "batches_done"} of the checkpoint.
  """
  config: ml_collections.ConfigDict
  model: CvaeModel
  params: dict
  position: dict

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
  model, restored = _restore_matching(config, workdir, model, make_optimizer(config),
                                      step=step)
  if restored is None:
    raise FileNotFoundError(f"No readable checkpoint in {workdir}.")
  state, position = restored
  return ConditionalSampler(config, model, distributed.to_host(state.params), position)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *,
                        step: int | None = None) -> dict:
  """Test bounds and condition violation rates of a checkpoint in `workdir`.

  Appends the result to workdir/metrics.jsonl (split "checkpoint_eval") and writes it
  to workdir/eval_metrics.json. Returns the record, with "step".
  """
  sampler = load_sampler(workdir, step=step, config=config)
  eval_dataset = vae.load_split(config, config.eval.split,
                                config.data.num_eval_examples)
  metrics = evaluate(sampler.model, sampler.params, eval_dataset,
                     batch_size=config.eval.batch_size, key=vae.eval_key(config),
                     prefix=config.eval.split)
  metrics.update(_violation_outputs(config, sampler.model, sampler.params,
                                    _violation_setup(config)))
  return vae.write_checkpoint_eval(workdir, sampler.position, metrics)


def checkpoint_sampler(config: ml_collections.ConfigDict, workdir: str,
                       step: int | None = None) -> samplers.CheckpointSampler:
  """Unconditional decoder means of a `train.cvae` checkpoint, for FID.

  "trip": z ~ p(z) with every attribute summed out. "concat" has no p(y): each image
  gets the attributes of a random real test example (drawn with the key). The
  reference is the test split at grey levels (as for the VAE).
  """
  sampler = load_sampler(workdir, step=step, config=config)
  reference = data_lib.load_dataset(config.data.name, "test",
                                    data_dir=config.data.data_dir, binarize=False)
  if sampler.model.kind == "trip":
    def sample_fn(key, num_samples):
      return sampler.sample(key, np.full(len(sampler.specs), np.nan, np.float32),
                            num_samples)
  else:
    real_attributes = data_lib.attributes_from_labels(config.data.name, reference.labels)

    def sample_fn(key, num_samples):
      rows_key, sample_key = jax.random.split(key)
      rows = jax.random.randint(rows_key, (num_samples,), 0, len(real_attributes))
      return sampler.sample(sample_key, real_attributes[np.asarray(rows)])

  return samplers.CheckpointSampler(sample_fn, reference.images, sampler.position)
