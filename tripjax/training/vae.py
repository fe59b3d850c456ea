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
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import sharding

IMAGES_DIRNAME = "images"
CONFIG_FILENAME = "config.json"
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


def build_model(config: ml_collections.ConfigDict,
                image_shape: Sequence[int], likelihood: str) -> VaeModel:
  """The encoder/decoder of `config.model` and the prior of `config.prior`."""
  if config.model.norm == "batch":
    raise ValueError("The VAE trainer has no batch statistics; use "
                     "model.norm='none' or 'group'.")
  widths = config.model.widths
  encoder, decoder = vae_models.encoder_decoder(
      tuple(image_shape), config.model.latent_dim,
      widths=None if widths is None else tuple(widths),
      params_per_channel=likelihoods.num_params_per_channel(likelihood),
      norm=config.model.norm, use_bias=config.model.use_bias,
      kernel_size=config.model.kernel_size)
  prior = priors.make_prior(config.prior.kind, config.model.latent_dim,
                            num_components=config.prior.num_components,
                            rank=config.prior.rank)
  return VaeModel(encoder=encoder, decoder=decoder, prior=prior,
                  likelihood=likelihood, image_shape=tuple(image_shape),
                  latent_dim=config.model.latent_dim)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam on all parameters; the prior's are frozen unless `config.prior.learnable`."""
  adam = optax.adam(config.train.learning_rate)
  if config.train.grad_clip_norm:
    adam = optax.chain(optax.clip_by_global_norm(config.train.grad_clip_norm), adam)
  if config.prior.learnable:
    return adam

  def labels(params):
    return {part: jax.tree.map(lambda _: "frozen" if part == "prior" else "trained",
                               subtree) for part, subtree in params.items()}

  return optax.multi_transform({"trained": adam, "frozen": optax.set_to_zero()},
                               labels)


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


def _padded_batches(dataset: data_lib.ImageDataset, batch_size: int):
  """Every example once, in order: (images (batch_size, ...), mask (batch_size,))."""
  for indices in data_lib.batch_indices(len(dataset), batch_size, seed=0, epoch=0,
                                        shuffle=False, drop_remainder=False):
    images, _ = dataset.read(indices)
    yield sharding.pad_batch(images, batch_size)


# Compiled once per (model, settings, mesh), not once per epoch.
@functools.lru_cache(maxsize=16)
def _jitted_eval_step(model: VaeModel, iwae_samples: int | None,
                      iwae_samples_per_chunk: int | None, mesh: jax.sharding.Mesh):
  replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(make_eval_step(model, iwae_samples, iwae_samples_per_chunk),
                 in_shardings=(replicated, split, split, replicated),
                 out_shardings=replicated)


@functools.lru_cache(maxsize=16)
def _jitted_posterior_mean(model: VaeModel, mesh: jax.sharding.Mesh):
  replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(lambda params, images: model.posterior(params, images)[0],
                 in_shardings=(replicated, split), out_shardings=split)


@functools.lru_cache(maxsize=16)
def _jitted_refit(model: VaeModel):
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
  sharding.check_batch_size(batch_size, mesh, "eval batch size")
  eval_step = _jitted_eval_step(model, iwae_samples, iwae_samples_per_chunk, mesh)
  totals = {}
  for batch_index, (images, mask) in enumerate(_padded_batches(dataset, batch_size)):
    sums = eval_step(params, images, mask, jax.random.fold_in(key, batch_index))
    totals = {name: totals.get(name, 0.0) + value for name, value in sums.items()}
  totals = jax.device_get(totals)
  count = totals.pop("count")
  names = {"iwae": f"iwae_{iwae_samples}"}
  return {f"{prefix}_{names.get(name, name)}": float(total / count)
          for name, total in totals.items()}


def encoder_means(model: VaeModel, params: dict, dataset: data_lib.ImageDataset, *,
                  batch_size: int, max_examples: int | None = None,
                  mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """Means of q(z|x) for the first `max_examples` (default all) examples: (N, d)."""
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  posterior_mean = _jitted_posterior_mean(model, mesh)
  means = []
  for images, mask in _padded_batches(dataset, batch_size):
    means.append(np.asarray(posterior_mean(params, images))[mask > 0])
    if max_examples and sum(len(chunk) for chunk in means) >= max_examples:
      break
  means = np.concatenate(means)
  return means[:max_examples] if max_examples else means


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
    (2N, H, W, C) images in [0, 1], ready for `image_grid.save_image_grid`.
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


def save_image_grids(model: VaeModel, params: dict, images: np.ndarray,
                     key: jax.Array, directory: str, epochs_done: int,
                     num_prior_samples: int = 64) -> list[str]:
  """Writes epoch_<k>_reconstructions.png and epoch_<k>_prior_samples.png."""
  params = jax.device_get(params)
  stem = os.path.join(directory, f"epoch_{epochs_done:03d}")
  samples = np.asarray(prior_sample_images(model, params, key, num_prior_samples))
  scale = max(1, 64 // model.image_shape[0])  # 28 and 32 px images shown twice as big
  return [
      image_grid.save_image_grid(reconstruction_grid(model, params, images),
                                 f"{stem}_reconstructions.png", num_columns=8,
                                 scale=scale),
      image_grid.save_image_grid(samples, f"{stem}_prior_samples.png", scale=scale),
  ]


def refit_prior(model: VaeModel, state: VaeState, dataset: data_lib.ImageDataset,
                key: jax.Array, *, batch_size: int, max_examples: int | None,
                mesh: jax.sharding.Mesh) -> VaeState:
  """Refits the prior's means/scales (and cores) by EM on the encoder means (paper 3.1)."""
  z = encoder_means(model, state.params, dataset, batch_size=batch_size,
                    max_examples=max_examples, mesh=mesh)
  prior_params = _jitted_refit(model)(jax.device_get(state.params["prior"]),
                                      jnp.asarray(z), key)
  params = dict(state.params, prior=sharding.replicate(prior_params, mesh))
  return state.replace(params=params)


def first_examples(dataset: data_lib.ImageDataset,
                   num_examples: int | None) -> data_lib.ImageDataset:
  """The first `num_examples` examples of `dataset` (all if None or larger)."""
  if num_examples is None or num_examples >= len(dataset):
    return dataset
  return data_lib.ImageDataset(
      name=dataset.name, split=dataset.split, image_shape=dataset.image_shape,
      num_examples=num_examples, read_fn=dataset.read, binarized=dataset.binarized,
      attribute_names=dataset.attribute_names)


def _load_split(config, split: str, num_examples: int | None) -> data_lib.ImageDataset:
  dataset = data_lib.load_dataset(config.data.name, split,
                                  data_dir=config.data.data_dir)
  return first_examples(dataset, num_examples)


def _setup(config: ml_collections.ConfigDict):
  """Datasets, model, optimizer and initial state of a config."""
  train_dataset = _load_split(config, "train", config.data.num_train_examples)
  eval_dataset = _load_split(config, config.eval.split, config.data.num_eval_examples)
  model = build_model(config, train_dataset.image_shape, train_dataset.likelihood)
  optimizer = make_optimizer(config)
  init_key = jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 1)
  state = init_state(model, optimizer, init_key)
  return train_dataset, eval_dataset, model, optimizer, state


def _eval_key(config) -> jax.Array:
  """The same key for every evaluation, so epochs compare on the same noise."""
  return jax.random.fold_in(jax.random.PRNGKey(config.train.seed), 2)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       step_hooks: Sequence[loop.StepHook] = (),
                       mesh: jax.sharding.Mesh | None = None) -> VaeState:
  """Trains a VAE as `config` says, resuming from `workdir` if it has checkpoints.

  Writes workdir/config.json, metrics.jsonl, checkpoints/ and images/ (one pair of
  PNG grids per epoch). Returns the final state.
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  train_dataset, eval_dataset, model, optimizer, state = _setup(config)
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILENAME), "w") as file:
    file.write(config.to_json(indent=2))
  tqdm.tqdm.write(
      f"VAE with a {config.prior.kind} prior (learnable={config.prior.learnable}), "
      f"{model.likelihood} likelihood, {len(train_dataset)} train / "
      f"{len(eval_dataset)} {config.eval.split} examples, {mesh.devices.size} "
      f"device(s); writing to {workdir}.")
  num_images = min(config.eval.num_reconstructions, len(eval_dataset))
  num_images -= num_images % 8
  grid_images = eval_dataset[np.arange(max(num_images, 1))]
  seed_key = jax.random.PRNGKey(config.train.seed)

  def end_of_epoch(state: VaeState, epoch: int):
    epochs_done = epoch + 1
    is_last = epochs_done == config.train.num_epochs
    metrics = {}
    if model.prior.refit is not None and refit_is_due(
        epochs_done, config.prior.refit_every_epochs):
      state = refit_prior(model, state, train_dataset,
                          jax.random.fold_in(jax.random.fold_in(seed_key, 3), epoch),
                          batch_size=config.eval.batch_size,
                          max_examples=config.prior.refit_num_examples, mesh=mesh)
      metrics["prior_refit"] = True
    iwae_every = config.eval.iwae_every_epochs
    with_iwae = is_last or (iwae_every > 0 and epochs_done % iwae_every == 0)
    metrics.update(evaluate(
        model, state.params, eval_dataset, batch_size=config.eval.batch_size,
        key=_eval_key(config),
        iwae_samples=config.eval.iwae_samples if with_iwae else None,
        iwae_samples_per_chunk=config.eval.iwae_samples_per_chunk, mesh=mesh,
        prefix=config.eval.split))
    save_image_grids(model, state.params, grid_images,
                     jax.random.fold_in(jax.random.fold_in(seed_key, 4), epoch),
                     os.path.join(workdir, IMAGES_DIRNAME), epochs_done,
                     config.eval.num_prior_samples)
    return state, metrics

  return loop.run(workdir=workdir, options=loop.LoopOptions.from_config(config.train),
                  init_state=state,
                  train_step=make_train_step(model, optimizer, config.train.elbo_samples),
                  train_dataset=train_dataset, end_of_epoch=end_of_epoch, mesh=mesh,
                  step_hooks=step_hooks)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved in `workdir/config.json`."""
  path = os.path.join(workdir, CONFIG_FILENAME)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir!r} a training workdir? "
                            "Pass --config to evaluate with an explicit config.")
  with open(path) as file:
    return ml_collections.ConfigDict(json.load(file))


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, *,
                        step: int | None = None,
                        mesh: jax.sharding.Mesh | None = None) -> dict:
  """Test ELBO and IWAE-k (config.eval.iwae_samples) of a checkpoint in `workdir`.

  Appends the result to workdir/metrics.jsonl (split "checkpoint_eval") and writes it
  to workdir/eval_metrics.json. Returns the metrics, with "step".
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  _, eval_dataset, model, _, state = _setup(config)
  state, position = loop.restore_checkpoint(workdir, state, mesh=mesh, step=step)
  metrics = evaluate(model, state.params, eval_dataset,
                     batch_size=config.eval.batch_size, key=_eval_key(config),
                     iwae_samples=config.eval.iwae_samples,
                     iwae_samples_per_chunk=config.eval.iwae_samples_per_chunk,
                     mesh=mesh, prefix=config.eval.split)
  record = metric_writer.MetricWriter(workdir).write(
      position["step"], position["epoch"], "checkpoint_eval", metrics)
  with open(os.path.join(workdir, EVAL_FILENAME), "w") as file:
    json.dump(record, file, indent=2)
  return record
