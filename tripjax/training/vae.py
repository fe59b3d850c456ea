"""VAE training with a normal, GMM or TRIP prior (paper, section 3.1).

The pieces specific to the VAE: the model bundle, the pure `train_step`, the
evaluation (ELBO and IWAE-k in nats per example), the data-driven prior refits and the
image grids. `train_and_evaluate(config, workdir)` hands them to the shared loop
(`tripjax.training.loop`). Parameters are one dict
{"encoder": ..., "decoder": ..., "prior": ...}, trained jointly by Adam; with
`config.prior.learnable = False` the prior's parameters get no updates (the paper's "F").
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from tripjax import data as data_lib
from tripjax import likelihoods
from tripjax import losses
from tripjax import priors
from tripjax.models import vae as vae_models
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import samplers
from tripjax.training import sharding
from tripjax.training import workdirs

EVAL_FILENAME = "eval_metrics.json"


@flax.struct.dataclass
class VaeState:
  """Everything that changes during training (and is checkpointed).

  Attributes:
    params: {"encoder": ..., "decoder": ..., "prior": ...} parameter pytrees.
    opt_state: the optax state for `params`.
  """
  params: dict
  opt_state: Any


@dataclasses.dataclass(frozen=True)
class VaeModel:
  """The fixed (non-array) parts of a VAE: modules, prior functions, likelihood.

  Attributes:
    encoder: images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim).
    decoder: z (B, latent_dim) -> likelihood parameters (B, H, W, P * C).
    prior: `tripjax.priors.Prior` over latent_dim variables.
    likelihood: a name in `tripjax.likelihoods.LIKELIHOODS`.
    image_shape: (H, W, C).
    latent_dim: size of z.
  """
  encoder: vae_models.Encoder
  decoder: vae_models.Decoder
  prior: Any
  likelihood: str
  image_shape: tuple[int, int, int]
  latent_dim: int

  def posterior(self, params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(z|x): images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim)."""
    return self.encoder.apply({"params": params["encoder"]}, images)

  def decode(self, params: dict, z: jax.Array) -> jax.Array:
    """z (B, latent_dim) -> raw decoder output (B, H, W, P * C)."""
    return self.decoder.apply({"params": params["decoder"]}, z)

  def decode_mean(self, params: dict, z: jax.Array) -> jax.Array:
    """z (B, latent_dim) -> images (B, H, W, C) in [0, 1] to look at."""
    return likelihoods.likelihood_mean(self.likelihood, self.decode(params, z))

  def log_likelihood_fn(self, params: dict, images: jax.Array):
    """The function z (B, latent_dim) -> log p(x|z) (B,) for fixed images x."""
    return lambda z: likelihoods.log_likelihood(self.likelihood,
                                                self.decode(params, z), images)

  def prior_log_prob_fn(self, params: dict):
    """The function z (..., latent_dim) -> log p(z) (...)."""
    return lambda z: self.prior.log_prob(params["prior"], z)


def build_networks(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                   likelihood: str) -> tuple[vae_models.Encoder, vae_models.Decoder]:
  """The conv encoder and decoder of `config.model` (shared by the VAE and the CVAE)."""
  if config.model.norm == "batch":
    raise ValueError("The VAE trainers have no batch statistics; use "
                     "model.norm='none' or 'group'.")
  widths = config.model.widths
  return vae_models.encoder_decoder(
      tuple(image_shape), config.model.latent_dim,
      widths=None if widths is None else tuple(widths),
      params_per_channel=likelihoods.num_params_per_channel(likelihood),
      norm=config.model.norm, use_bias=config.model.use_bias,
      kernel_size=config.model.kernel_size)


def build_model(config: ml_collections.ConfigDict,
                image_shape: Sequence[int], likelihood: str) -> VaeModel:
  """The encoder/decoder of `config.model` and the prior of `config.prior`."""
  encoder, decoder = build_networks(config, image_shape, likelihood)
  prior = priors.make_prior(config.prior.kind, config.model.latent_dim,
                            num_components=config.prior.num_components,
                            rank=config.prior.rank)
  return VaeModel(encoder=encoder, decoder=decoder, prior=prior,
                  likelihood=likelihood, image_shape=tuple(image_shape),
                  latent_dim=config.model.latent_dim)


NETWORK, PRIOR = "network", "prior"  # the two optimizers' parameter groups


def _parameter_groups(params: dict) -> dict:
  """Labels every leaf of {"encoder", "decoder", "prior"} as NETWORK or PRIOR."""
  return {part: jax.tree.map(lambda _: PRIOR if part == "prior" else NETWORK, subtree)
          for part, subtree in params.items()}


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`two_adams` for a VAE config; with `prior.learnable = False` the prior gets no
  updates (the paper's "F")."""
  return two_adams(config, learnable_prior=config.prior.learnable)


def two_adams(config: ml_collections.ConfigDict, *,
              learnable_prior: bool = True) -> optax.GradientTransformation:
  """Two Adams, as the authors' code: one for the encoder/decoder, one for the prior.

  The network's learning rate is `train.learning_rate` (after clipping its gradient's
  global norm to `train.grad_clip_norm`, if set); the prior's is
  `prior.learning_rate` (None: the network's). Parameters are
  {"encoder", "decoder", "prior"}; `learnable_prior=False` gives the prior no updates.
  """
  network = optax.adam(config.train.learning_rate)
  if config.train.grad_clip_norm:
    network = optax.chain(optax.clip_by_global_norm(config.train.grad_clip_norm),
                          network)
  if learnable_prior:
    prior_learning_rate = config.prior.learning_rate
    if prior_learning_rate is None:
      prior_learning_rate = config.train.learning_rate
    prior = optax.adam(prior_learning_rate)
  else:
    prior = optax.set_to_zero()
  return optax.multi_transform({NETWORK: network, PRIOR: prior}, _parameter_groups)


def reset_optimizer_state(optimizer: optax.GradientTransformation, opt_state,
                          params: dict, groups=(NETWORK, PRIOR)):
  """The optimizer state with the given groups' moments and counts started afresh.

  After an EM refit moves the prior's means and scales, Adam's moments of the old
  values would steer the new ones; the authors' code creates both optimizers anew at
  every round. `groups` is a subset of (NETWORK, PRIOR). The fresh arrays are placed
  like the ones they replace, so the jitted step sees the same input types (and is
  not compiled again).
  """
  fresh = optimizer.init(params)
  inner_states = dict(opt_state.inner_states)
  for group in groups:
    inner_states[group] = jax.tree.map(
        lambda new, old: (jax.device_put(new, old.sharding)
                          if isinstance(old, jax.Array) else new),
        fresh.inner_states[group], opt_state.inner_states[group])
  return opt_state._replace(inner_states=inner_states)


def init_state(model: VaeModel, optimizer: optax.GradientTransformation,
               key: jax.Array) -> VaeState:
  """Fresh parameters (encoder, decoder, prior) and optimizer state (one compiled call)."""

  @jax.jit
  def initialize(key):
    encoder_key, decoder_key, prior_key = jax.random.split(key, 3)
    images = jnp.zeros((1,) + model.image_shape, jnp.float32)
    z = jnp.zeros((1, model.latent_dim), jnp.float32)
    params = {
        "encoder": model.encoder.init(encoder_key, images)["params"],
        "decoder": model.decoder.init(decoder_key, z)["params"],
        "prior": model.prior.init(prior_key),
    }
    return VaeState(params=params, opt_state=optimizer.init(params))

  return initialize(key)


def make_train_step(model: VaeModel, optimizer: optax.GradientTransformation,
                    elbo_samples: int = 1) -> loop.TrainStepFn:
  """The pure step: maximize the mean MC ELBO (paper eq. 8) of the batch.

  Returns:
    train_step(state, batch {"image": (B, H, W, C)}, rng) -> (state, metrics) with
    scalar metrics loss (= -elbo), elbo, log_likelihood, kl (nats per example) and
    grad_norm.
  """

  def loss_fn(params, images, rng):
    mean, log_scale = model.posterior(params, images)
    terms = losses.elbo(rng, mean, log_scale, model.log_likelihood_fn(params, images),
                        model.prior_log_prob_fn(params), num_samples=elbo_samples)
    terms = jax.tree.map(jnp.mean, terms)
    return -terms.elbo, terms

  def train_step(state: VaeState, batch: dict, rng: jax.Array):
    grads, terms = jax.grad(loss_fn, has_aux=True)(state.params, batch["image"], rng)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": -terms.elbo, "elbo": terms.elbo,
               "log_likelihood": terms.log_likelihood, "kl": terms.kl,
               "grad_norm": optax.tree.norm(grads)}
    return VaeState(params=params, opt_state=opt_state), metrics

  return train_step


def make_eval_step(model: VaeModel, iwae_samples: int | None,
                   iwae_samples_per_chunk: int | None = None):
  """Sums of per-example bounds over a padded batch.

  Returns:
    eval_step(params, images (B, H, W, C), mask (B,), rng) -> dict of scalar sums
    over the real (mask = 1) examples: elbo, log_likelihood, kl, count and, when
    `iwae_samples` is set, iwae.
  """

  def eval_step(params, images, mask, rng):
    elbo_rng, iwae_rng = jax.random.split(rng)
    mean, log_scale = model.posterior(params, images)
    log_likelihood_fn = model.log_likelihood_fn(params, images)
    prior_log_prob_fn = model.prior_log_prob_fn(params)
    terms = losses.elbo(elbo_rng, mean, log_scale, log_likelihood_fn,
                        prior_log_prob_fn)
    sums = {"elbo": terms.elbo, "log_likelihood": terms.log_likelihood,
            "kl": terms.kl}
    if iwae_samples:
      sums["iwae"] = losses.iwae_bound(iwae_rng, mean, log_scale, log_likelihood_fn,
                                       prior_log_prob_fn, iwae_samples,
                                       iwae_samples_per_chunk)
    sums = {name: jnp.sum(value * mask) for name, value in sums.items()}
    sums["count"] = jnp.sum(mask)
    return sums

  return eval_step


def jit_eval_step(eval_step, mesh: jax.sharding.Mesh, num_batch_arrays: int):
  """`eval_step(params, *batch_arrays, rng)` jitted with the params and the key
  replicated and each of the `num_batch_arrays` arrays (mask included) split over the
  batch axis; its sums come back replicated."""
  replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(eval_step,
                 in_shardings=(replicated,) + (split,) * num_batch_arrays + (replicated,),
                 out_shardings=replicated)


def dataset_totals(eval_step, params: dict, dataset: data_lib.ImageDataset, *,
                   batch_size: int, key: jax.Array, mesh: jax.sharding.Mesh,
                   batch_arrays=lambda batch: (batch.images,)) -> dict:
  """The sums of a jitted `eval_step` (`jit_eval_step`) added over every example.

  Args:
    eval_step: (params, *batch_arrays(batch), mask (B,), rng) -> dict of scalar sums
      over the real (mask = 1) examples, with "count".
    batch_arrays: a `data_lib.PaddedBatch` -> the arrays eval_step takes, each (B, ...).
    key: batch i gets `fold_in(key, i)`.

  Returns:
    {name: total} as Python floats, "count" included.
  """
  sharding.check_batch_size(batch_size, mesh, "eval batch size")
  rows = distributed.process_slice(batch_size, mesh)
  totals = {}
  for batch_index, batch in enumerate(data_lib.padded_batches(dataset, batch_size)):
    arrays = tuple(array[rows] for array in batch_arrays(batch)) + (batch.mask[rows],)
    sums = eval_step(params, *sharding.shard_batch(arrays, mesh),
                     jax.random.fold_in(key, batch_index))
    totals = {name: totals.get(name, 0.0) + value for name, value in sums.items()}
  return {name: float(total) for name, total in distributed.to_host(totals).items()}


# Compiled once per (model, settings, mesh), not once per evaluation.
@functools.lru_cache(maxsize=16)
def _jitted_eval_step(model: VaeModel, iwae_samples: int | None,
                      iwae_samples_per_chunk: int | None, mesh: jax.sharding.Mesh):
  return jit_eval_step(make_eval_step(model, iwae_samples, iwae_samples_per_chunk),
                       mesh, num_batch_arrays=2)


@functools.lru_cache(maxsize=16)
def _jitted_posterior(model: VaeModel, mesh: jax.sharding.Mesh):
  replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(model.posterior, in_shardings=(replicated, split),
                 out_shardings=(split, split))


@functools.lru_cache(maxsize=16)
def _jitted_refit(model):
  return jax.jit(model.prior.refit)


def evaluate(model: VaeModel, params: dict, dataset: data_lib.ImageDataset, *,
             batch_size: int, key: jax.Array, iwae_samples: int | None = None,
             iwae_samples_per_chunk: int | None = None,
             mesh: jax.sharding.Mesh | None = None, prefix: str = "test") -> dict:
  """Mean ELBO (and IWAE-k) over every example of `dataset`, in nats per example.

  Returns:
    {f"{prefix}_elbo", f"{prefix}_log_likelihood", f"{prefix}_kl"} and, with
    `iwae_samples` = k, f"{prefix}_iwae_{k}": Python floats.
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  eval_step = _jitted_eval_step(model, iwae_samples, iwae_samples_per_chunk, mesh)
  totals = dataset_totals(eval_step, params, dataset, batch_size=batch_size, key=key,
                          mesh=mesh)
  count = totals.pop("count")
  names = {"iwae": f"iwae_{iwae_samples}"}
  return {f"{prefix}_{names.get(name, name)}": total / count
          for name, total in totals.items()}


REFIT_ON = ("samples", "means")  # what `prior.refit_on` may say


def encoder_latents(model: VaeModel, params: dict, dataset: data_lib.ImageDataset, *,
                    batch_size: int, on: str = "means", key: jax.Array | None = None,
                    max_examples: int | None = None,
                    mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """Latents of the first `max_examples` (default all) examples: (N, d).

  Args:
    on: "means", the means of q(z|x); or "samples", one draw z ~ q(z|x) per example
      (a sample of the aggregate posterior q(z) = mean over x of q(z|x), which is
      what a prior should fit: it is wider than the cloud of means by the
      posterior variances).
    key: PRNG key of the draws (needed for "samples").
  """
  if on not in REFIT_ON:
    raise ValueError(f"on must be one of {REFIT_ON}, got {on!r}.")
  if on == "samples" and key is None:
    raise ValueError("on='samples' needs a key.")
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  posterior = _jitted_posterior(model, mesh)
  rows = distributed.process_slice(batch_size, mesh)
  latents, count = [], 0
  for batch_index, batch in enumerate(data_lib.padded_batches(dataset, batch_size)):
    mean, log_scale = distributed.to_host(
        posterior(params, sharding.shard_batch(batch.images[rows], mesh)))
    if on == "samples":
      noise = jax.random.normal(jax.random.fold_in(key, batch_index), mean.shape,
                                mean.dtype)
      mean = mean + np.exp(log_scale) * np.asarray(noise)
    latents.append(np.asarray(mean)[batch.mask > 0])
    count += len(latents[-1])
    if max_examples and count >= max_examples:
      break
  latents = np.concatenate(latents)
  return latents[:max_examples] if max_examples else latents


def encoder_means(model: VaeModel, params: dict, dataset: data_lib.ImageDataset, *,
                  batch_size: int, max_examples: int | None = None,
                  mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """Means of q(z|x) for the first `max_examples` (default all) examples: (N, d).

  `model` is any model with `posterior(params, images)` (the conditional VAE's too).
  """
  return encoder_latents(model, params, dataset, batch_size=batch_size, on="means",
                         max_examples=max_examples, mesh=mesh)


def refit_is_due(epochs_done: int, refit_every_epochs: int) -> bool:
  """Data-driven init (paper, section 3.1): after epoch 1, then every k epochs (1, 1+k, ...)."""
  if refit_every_epochs <= 0:
    return False
  return epochs_done == 1 or (epochs_done - 1) % refit_every_epochs == 0


def reconstruction_grid(model: VaeModel, params: dict, images: np.ndarray,
                        num_columns: int = 8) -> np.ndarray:
  """Rows of originals, each followed by a row of their reconstructions (posterior means).

  Args:
    images: (N, H, W, C), N a multiple of `num_columns`.

  Returns:
    (2N, H, W, C) images in [0, 1], ready for `image_grid.make_grid(..., num_columns)`.
  """
  reconstructions = np.asarray(_reconstruct(model, params, images))
  rows = []
  for start in range(0, len(images), num_columns):
    rows += [images[start:start + num_columns],
             reconstructions[start:start + num_columns]]
  return np.concatenate(rows)


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(model: VaeModel, params: dict, images: jax.Array) -> jax.Array:
  """Decoder means at the posterior means: (N, H, W, C) -> (N, H, W, C)."""
  mean, _ = model.posterior(params, images)
  return model.decode_mean(params, mean)


@functools.partial(jax.jit, static_argnums=(0, 3))
def prior_sample_images(model: VaeModel, params: dict, key: jax.Array,
                        num_samples: int) -> jax.Array:
  """Decoder means of z ~ p(z): (num_samples, H, W, C) in [0, 1]."""
  z = model.prior.sample(params["prior"], key, (num_samples,))
  return model.decode_mean(params, z)


def image_outputs(model: VaeModel, params: dict, images: np.ndarray, key: jax.Array,
                  num_prior_samples: int = 64) -> dict[str, loop.Image]:
  """The loop's image outputs: "reconstructions" (rows alternate originals and their
  reconstructions) and "prior_samples" (decoder means of z ~ p(z))."""
  params = distributed.to_host(params)
  samples = np.asarray(prior_sample_images(model, params, key, num_prior_samples))
  scale = image_grid.display_scale(model.image_shape)
  return {
      "reconstructions": loop.Image(image_grid.make_grid(
          reconstruction_grid(model, params, images), num_columns=8), scale),
      "prior_samples": loop.Image(image_grid.make_grid(samples), scale),
  }


def refit_prior(model: VaeModel, state: VaeState, dataset: data_lib.ImageDataset,
                key: jax.Array, *, batch_size: int, max_examples: int | None,
                mesh: jax.sharding.Mesh, on: str = "samples") -> VaeState:
  """Refits the prior's means and scales by EM (paper 3.1) to encoder latents.

  `on` = "samples" fits one draw z ~ q(z|x) per example (the authors' code), "means"
  the means of q(z|x); see `encoder_latents`.
  """
  sample_key, refit_key = jax.random.split(key)
  z = encoder_latents(model, state.params, dataset, batch_size=batch_size, on=on,
                      key=sample_key, max_examples=max_examples, mesh=mesh)
  prior_params = _jitted_refit(model)(distributed.to_host(state.params["prior"]),
                                      jnp.asarray(z), refit_key)
  params = dict(state.params, prior=sharding.replicate(prior_params, mesh))
  return state.replace(params=params)


def check_shared_fields(config: ml_collections.ConfigDict) -> None:
  """The fields of the VAE configs that the conditional VAE's configs share: the
  data subsets, the loop's, the networks', the prior's size, learning rate and refits,
  the ELBO and the evaluation schedule."""
  config_checks.check_int(config, "data.num_train_examples", minimum=1, optional=True)
  config_checks.check_int(config, "data.num_eval_examples", minimum=1, optional=True)
  config_checks.check_common_train_fields(config)
  config_checks.check_int(config, "model.latent_dim", minimum=1)
  config_checks.check_int_sequence(config, "model.widths", minimum=1, optional=True)
  config_checks.check_choice(config, "model.norm", ("none", "group"))
  config_checks.check_int(config, "model.kernel_size", minimum=1)
  config_checks.check_int(config, "prior.num_components", minimum=1)
  config_checks.check_int(config, "prior.rank", minimum=1)
  config_checks.check_number(config, "prior.learning_rate", minimum=0.0,
                             exclusive_minimum=True, optional=True)
  config_checks.check_int(config, "prior.refit_every_epochs", minimum=0)
  config_checks.check_int_sequence(config, "prior.refit_at_steps", minimum=1)
  config_checks.check_int(config, "prior.refit_num_examples", minimum=1, optional=True)
  config_checks.check_choice(config, "prior.refit_on", REFIT_ON)
  config_checks.check_bool(config, "prior.reset_optimizer_on_refit")
  config_checks.check_number(config, "train.grad_clip_norm", minimum=0.0)
  config_checks.check_int(config, "train.elbo_samples", minimum=1)
  config_checks.check_choice(config, "eval.split", data_lib.SPLITS)
  config_checks.check_int(config, "eval.batch_size", minimum=1)
  config_checks.check_int(config, "eval.every_epochs", minimum=0)
  config_checks.check_int(config, "eval.every_steps", minimum=0)
  config_checks.check_int(config, "eval.num_prior_samples", minimum=1)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a VAE config."""
  config_checks.check_choice(config, "task", ("vae",))
  config_checks.check_choice(config, "data.name", data_lib.DATASETS)
  check_shared_fields(config)
  config_checks.check_choice(config, "prior.kind", priors.PRIOR_KINDS)
  config_checks.check_bool(config, "prior.learnable")
  config_checks.check_int(config, "train.reset_optimizer_every_steps", minimum=0)
  config_checks.check_int(config, "eval.iwae_samples", minimum=1)
  config_checks.check_int(config, "eval.iwae_samples_per_chunk", minimum=1)
  config_checks.check_int(config, "eval.iwae_every_epochs", minimum=0)
  config_checks.check_int(config, "eval.num_reconstructions", minimum=0)


def load_split(config, split: str, num_examples: int | None) -> data_lib.ImageDataset:
  dataset = data_lib.load_dataset(config.data.name, split,
                                  data_dir=config.data.data_dir)
  return dataset if num_examples is None else dataset.take(num_examples)


def _setup(config: ml_collections.ConfigDict):
  """Datasets, model, optimizer and initial state of a config."""
  train_dataset = load_split(config, "train", config.data.num_train_examples)
  eval_dataset = load_split(config, config.eval.split, config.data.num_eval_examples)
  model = build_model(config, train_dataset.image_shape, train_dataset.likelihood)
  optimizer = make_optimizer(config)
  init_key = jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 1)
  state = init_state(model, optimizer, init_key)
  return train_dataset, eval_dataset, model, optimizer, state


def eval_key(config) -> jax.Array:
  """The same key for every evaluation, so evaluations compare on the same noise."""
  return jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 2)


def _is_due(every: int, count: int) -> bool:
  return every > 0 and count % every == 0


def refit_if_due(config: ml_collections.ConfigDict, model, optimizer,
                 state, progress: loop.Progress, train_dataset: data_lib.ImageDataset,
                 mesh: jax.sharding.Mesh) -> tuple[Any, bool]:
  """The prior refit of the schedule (paper 3.1), if one is due after this step.

  Due after epoch 1 and every `prior.refit_every_epochs` epochs, and after each step in
  `prior.refit_at_steps`, for a prior with a `refit`; with
  `prior.reset_optimizer_on_refit` the prior's Adam moments restart (they were of the
  old means and scales). `model` has `posterior` and `prior.refit` (a `VaeModel` or
  the conditional VAE's model), `state` has `params` and `opt_state`.

  Returns:
    (state, whether it was refit).
  """
  refit_now = progress.step in config.prior.refit_at_steps or (
      progress.end_of_epoch
      and refit_is_due(progress.epoch + 1, config.prior.refit_every_epochs))
  if model.prior.refit is None or not refit_now:
    return state, False
  seed_key = jax.random.PRNGKey(config.train.seed)
  key = (jax.random.fold_in(jax.random.fold_in(seed_key, 3), progress.epoch)
         if progress.end_of_epoch else
         jax.random.fold_in(jax.random.fold_in(seed_key, 5), progress.step))
  state = refit_prior(model, state, train_dataset, key,
                      batch_size=config.eval.batch_size,
                      max_examples=config.prior.refit_num_examples, mesh=mesh,
                      on=config.prior.refit_on)
  if config.prior.reset_optimizer_on_refit:
    state = state.replace(opt_state=reset_optimizer_state(
        optimizer, state.opt_state, state.params, groups=(PRIOR,)))
  return state, True


def evaluation_is_due(config: ml_collections.ConfigDict, progress: loop.Progress) -> bool:
  """After the last step, every `eval.every_steps` steps and every `eval.every_epochs`
  epochs."""
  return progress.final or _is_due(config.eval.every_steps, progress.step) or (
      progress.end_of_epoch and _is_due(config.eval.every_epochs, progress.epoch + 1))


def make_after_step(config: ml_collections.ConfigDict, model: VaeModel,
                    optimizer: optax.GradientTransformation,
                    train_dataset: data_lib.ImageDataset,
                    eval_dataset: data_lib.ImageDataset,
                    mesh: jax.sharding.Mesh) -> loop.AfterStepFn:
  """Prior refits, optimizer resets, evaluations and image grids on their schedules.

  * Refit (paper 3.1): `refit_if_due`.
  * Both optimizers restart every `train.reset_optimizer_every_steps` steps (the
    authors' rounds).
  * Evaluation (ELBO; IWAE-k after the last step and every `eval.iwae_every_epochs`
    epochs) and image grids when `evaluation_is_due`.
  """
  num_images = min(config.eval.num_reconstructions, len(eval_dataset))
  num_images -= num_images % 8
  grid_images = eval_dataset[np.arange(max(num_images, 1))]
  seed_key = jax.random.PRNGKey(config.train.seed)

  def after_step(state: VaeState, progress: loop.Progress):
    outputs = {}
    state, refitted = refit_if_due(config, model, optimizer, state, progress,
                                   train_dataset, mesh)
    if refitted:
      outputs["prior_refit"] = True
    if _is_due(config.train.reset_optimizer_every_steps, progress.step):
      state = state.replace(opt_state=reset_optimizer_state(
          optimizer, state.opt_state, state.params))
      outputs["optimizer_reset"] = True
    if evaluation_is_due(config, progress):
      with_iwae = progress.final or (progress.end_of_epoch and _is_due(
          config.eval.iwae_every_epochs, progress.epoch + 1))
      outputs.update(evaluate(
          model, state.params, eval_dataset, batch_size=config.eval.batch_size,
          key=eval_key(config),
          iwae_samples=config.eval.iwae_samples if with_iwae else None,
          iwae_samples_per_chunk=config.eval.iwae_samples_per_chunk, mesh=mesh,
          prefix=config.eval.split))
      outputs.update(image_outputs(
          model, state.params, grid_images,
          jax.random.fold_in(jax.random.fold_in(seed_key, 4), progress.epoch),
          config.eval.num_prior_samples))
    return state, outputs

  return after_step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       step_hooks: Sequence[loop.StepHook] = (),
                       mesh: jax.sharding.Mesh | None = None,
                       allow_config_change: bool = False) -> VaeState:
  """Trains a VAE as `config` says, resuming from `workdir` if it has checkpoints.

  Writes workdir/config.json, metrics.jsonl, checkpoints/ and images/ (PNG grids at
  every evaluation). Returns the final state.

  Raises:
    ConfigError: a bad config value (before anything is written).
    ConfigMismatchError: `workdir` holds a run of another config.
  """
  validate_config(config)
  workdirs.check_rerun(config, workdir, allow_config_change=allow_config_change)
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  train_dataset, eval_dataset, model, optimizer, state = _setup(config)
  tqdm.tqdm.write(
      f"VAE with a {config.prior.kind} prior (learnable={config.prior.learnable}), "
      f"{model.likelihood} likelihood, {len(train_dataset)} train / "
      f"{len(eval_dataset)} {config.eval.split} examples, {mesh.devices.size} "
      f"device(s); writing to {workdir}.")
  task = loop.Task(
      init_state=state,
      train_step=make_train_step(model, optimizer, config.train.elbo_samples),
      after_step=make_after_step(config, model, optimizer, train_dataset,
                                 eval_dataset, mesh),
      shown_metrics=("loss", "elbo"))
  return loop.run(workdir=workdir, options=loop.LoopOptions.from_config(config.train),
                  task=task, train_dataset=train_dataset, mesh=mesh,
                  step_hooks=step_hooks, config=config)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *,
                        step: int | None = None,
                        mesh: jax.sharding.Mesh | None = None) -> dict:
  """Test ELBO and IWAE-k (config.eval.iwae_samples) of a checkpoint in `workdir`.

  Appends the result to workdir/metrics.jsonl (split "checkpoint_eval") and writes it
  to workdir/eval_metrics.json. Returns the metrics, with "step".
  """
  validate_config(config)
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  _, eval_dataset, model, _, state = _setup(config)
  state, position = loop.restore_checkpoint(workdir, state, mesh=mesh, step=step)
  metrics = evaluate(model, state.params, eval_dataset,
                     batch_size=config.eval.batch_size, key=eval_key(config),
                     iwae_samples=config.eval.iwae_samples,
                     iwae_samples_per_chunk=config.eval.iwae_samples_per_chunk,
                     mesh=mesh, prefix=config.eval.split)
  return write_checkpoint_eval(workdir, position, metrics)


def write_checkpoint_eval(workdir: str, position: dict, metrics: dict) -> dict:
  """Appends a checkpoint's evaluation to workdir/metrics.jsonl (split
  "checkpoint_eval") and writes it to workdir/eval_metrics.json; returns the record."""
  writer = metric_writer.MetricWriter(workdir)
  record = writer.write(position["step"], position["epoch"], "checkpoint_eval", metrics)
  writer.close()
  with open(os.path.join(workdir, EVAL_FILENAME), "w") as file:
    json.dump(record, file, indent=2)
  return record


def checkpoint_sampler(config: ml_collections.ConfigDict, workdir: str,
                       step: int | None = None) -> samplers.CheckpointSampler:
  """Decoder means of z ~ p(z) at a checkpoint of a `train.vae` run.

  The reference images are the run's test split at grey levels: for the binarized
  digits/MNIST the decoder means are grey-level Bernoulli probabilities, so they are
  compared with the original grey images, never with binary ones (RGB sets are never
  binarized).
  """
  reference = data_lib.load_dataset(config.data.name, "test",
                                    data_dir=config.data.data_dir, binarize=False)
  model, params, position = restore(config, workdir, step)

  def sample_fn(key, num_samples):
    return prior_sample_images(model, params, key, num_samples)

  return samplers.CheckpointSampler(sample_fn, reference.images, position)


def restore(config: ml_collections.ConfigDict, workdir: str, step: int | None = None):
  """(model, host params, position) of the newest (or the given) checkpoint of a
  `train.vae` run; `config` is the run's (`workdirs.load_config(workdir)`)."""
  trained_on = data_lib.load_dataset(config.data.name, "test",
                                     data_dir=config.data.data_dir)
  model = build_model(config, trained_on.image_shape, trained_on.likelihood)
  optimizer = make_optimizer(config)
  state, position = loop.restore_for_inference(
      workdir, lambda key: init_state(model, optimizer, key), step=step)
  return model, distributed.to_host(state.params), position


def latent_model(config: ml_collections.ConfigDict, workdir: str,
                 step: int | None = None) -> samplers.LatentModel:
  """The prior and the decoder means (images in [0, 1]) at a checkpoint of a run."""
  model, params, position = restore(config, workdir, step)
  return samplers.LatentModel(
      prior=model.prior, prior_params=params["prior"],
      decode_fn=functools.partial(jax.jit(model.decode_mean), params),
      image_shape=model.image_shape, position=position)
