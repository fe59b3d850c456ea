"""VAE training with any prior of `tripjax.priors` (paper, section 3.1): the VAE's task.

What is the VAE's own: the model bundle, the pure `train_step` (the MC ELBO of eq. 8),
the evaluation (ELBO and IWAE-k in nats per example), the image grids and the
after-step schedule (prior refits, optimizer restarts, evaluations). The shared run
function (`tripjax.training.experiment`) runs it as `TRAINER`; the refits and networks
it shares with the conditional VAE are in `tripjax.training.autoencoders`. Parameters
are one dict {"encoder": ..., "decoder": ..., "prior": ...}, trained by two Adams
(`tripjax.training.optimizers.two_adams`); with `config.prior.learnable = False` the
prior's parameters get no updates (the paper's "F").
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence, cast

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from tripjax import data as data_lib
from tripjax import likelihoods
from tripjax import losses
from tripjax import priors
from tripjax.models import vae as vae_models
from tripjax.training import autoencoders
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import evaluation
from tripjax.training import experiment
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import optimizers
from tripjax.training import rng as rng_lib
from tripjax.training import samplers
from tripjax.training import sharding


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
  """The fixed (non-array) parts of a VAE: modules, prior, likelihood.

  Attributes:
    encoder: images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim).
    decoder: z (B, latent_dim) -> likelihood parameters (B, H, W, P * C).
    prior: a `tripjax.priors.LatentPrior` over latent_dim variables.
    likelihood: a name in `tripjax.likelihoods.LIKELIHOODS`.
    image_shape: (H, W, C).
    latent_dim: size of z.
  """
  encoder: vae_models.Encoder
  decoder: vae_models.Decoder
  prior: Any
  likelihood: str
  image_shape: tuple[int, ...]
  latent_dim: int

  def posterior(self, params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(z|x): images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim)."""
    return cast(tuple[jax.Array, jax.Array],
                self.encoder.apply({"params": params["encoder"]}, images))

  def decode(self, params: dict, z: jax.Array) -> jax.Array:
    """z (B, latent_dim) -> raw decoder output (B, H, W, P * C)."""
    return cast(jax.Array, self.decoder.apply({"params": params["decoder"]}, z))

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


def model_likelihood(config: ml_collections.ConfigDict,
                     dataset: data_lib.ImageDataset) -> str:
  """`model.likelihood`, or by default the dataset's (a proper density of its pixels)."""
  return config.model.likelihood or dataset.likelihood


def build_model(config: ml_collections.ConfigDict,
                image_shape: Sequence[int], likelihood: str) -> VaeModel:
  """The encoder/decoder of `config.model` and the prior of `config.prior` (under
  `prior.flows` coupling layers)."""
  encoder, decoder = autoencoders.build_networks(config, image_shape, likelihood)
  prior = priors.with_flows(
      priors.make_prior(config.prior.kind, config.model.latent_dim,
                        num_components=config.prior.num_components,
                        rank=config.prior.rank,
                        num_mixture_components=config.prior.num_mixture_components),
      config.prior.flows)
  return VaeModel(encoder=encoder, decoder=decoder, prior=prior,
                  likelihood=likelihood, image_shape=tuple(image_shape),
                  latent_dim=config.model.latent_dim)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`optimizers.two_adams`; with `prior.learnable = False` the prior gets no updates
  (the paper's "F")."""
  return optimizers.two_adams(config, learnable_prior=config.prior.learnable)


def init_state(model: VaeModel, optimizer: optax.GradientTransformation,
               key: jax.Array) -> VaeState:
  """Fresh parameters (encoder, decoder, prior) and optimizer state (one compiled call).

  `key`: the "init" stream's key (`RandomStreams.init_key`), or any PRNG key.
  """

  @jax.jit
  def initialize(key):
    params = init_params(model, key)
    return VaeState(params=params, opt_state=optimizer.init(params))

  return initialize(key)


def init_params(model: VaeModel, key: jax.Array) -> dict:
  """Fresh parameters {"encoder", "decoder", "prior"} (traceable)."""
  encoder_key, decoder_key, prior_key = jax.random.split(key, 3)
  images = jnp.zeros((1,) + model.image_shape, jnp.float32)
  z = jnp.zeros((1, model.latent_dim), jnp.float32)
  return {"encoder": model.encoder.init(encoder_key, images)["params"],
          "decoder": model.decoder.init(decoder_key, z)["params"],
          "prior": model.prior.init(prior_key)}


def num_trainable_params(config: ml_collections.ConfigDict,
                         image_shape: Sequence[int], likelihood: str) -> int:
  """How many numbers training updates: the encoder's and decoder's, plus the
  prior's (its flows included) when `prior.learnable`. From shapes alone (no
  parameters are made)."""
  model = build_model(config, image_shape, likelihood)
  shapes = jax.eval_shape(lambda key: init_params(model, key),
                          rng_lib.RandomStreams(0).init_key())
  if not config.prior.learnable:
    shapes = {name: tree for name, tree in shapes.items() if name != "prior"}
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))


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


# Compiled once per (model, settings, mesh), not once per evaluation.
@functools.lru_cache(maxsize=16)
def _jitted_eval_step(model: VaeModel, iwae_samples: int | None,
                      iwae_samples_per_chunk: int | None, mesh: jax.sharding.Mesh):
  return evaluation.jit_eval_step(
      make_eval_step(model, iwae_samples, iwae_samples_per_chunk), mesh,
      num_batch_arrays=2)


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
  totals = evaluation.dataset_totals(eval_step, params, dataset, batch_size=batch_size,
                                     key=key, mesh=mesh)
  return evaluation.per_example_means(totals, prefix,
                                      renames={"iwae": f"iwae_{iwae_samples}"})


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


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a VAE config."""
  config_checks.check_choice(config, "task", ("vae",))
  config_checks.check_choice(config, "data.name", data_lib.DATASETS)
  experiment.check_split_fields(config)
  autoencoders.check_autoencoder_fields(config)
  config_checks.check_choice(config, "model.likelihood",
                             (None,) + likelihoods.LIKELIHOODS)
  kinds = priors.PRIOR_KINDS + priors.FULL_SPACE_PRIOR_KINDS
  config_checks.check_choice(config, "prior.kind", kinds)
  config_checks.check_bool(config, "prior.learnable")
  config_checks.check_int(config, "prior.num_mixture_components", minimum=1,
                          optional=True)
  config_checks.check_int(config, "prior.flows", minimum=0)
  autoencoders.check_refit_kind_fields(config, kinds)
  config_checks.check_int(config, "train.reset_optimizer_every_steps", minimum=0)
  config_checks.check_int(config, "eval.iwae_samples", minimum=1)
  config_checks.check_int(config, "eval.iwae_samples_per_chunk", minimum=1)
  config_checks.check_int(config, "eval.iwae_every_epochs", minimum=0)
  config_checks.check_int(config, "eval.num_reconstructions", minimum=0)


@dataclasses.dataclass(frozen=True)
class VaeSetup:
  """The data, model and optimizer of a VAE config.

  Attributes:
    train_dataset: the training split (its first `data.num_train_examples`).
    eval_dataset: the `eval.split` (its first `data.num_eval_examples`).
    model: the `VaeModel`.
    optimizer: the two Adams (`make_optimizer`).
  """
  train_dataset: data_lib.ImageDataset
  eval_dataset: data_lib.ImageDataset
  model: VaeModel
  optimizer: optax.GradientTransformation


def setup(config: ml_collections.ConfigDict) -> VaeSetup:
  """The `VaeSetup` of a (valid) config."""
  train_dataset = experiment.load_split(config, "train", config.data.num_train_examples)
  eval_dataset = experiment.load_split(config, config.eval.split,
                                       config.data.num_eval_examples)
  model = build_model(config, train_dataset.image_shape,
                      model_likelihood(config, train_dataset))
  return VaeSetup(train_dataset, eval_dataset, model, make_optimizer(config))


def _evaluation_due(config: ml_collections.ConfigDict, progress: loop.Progress) -> bool:
  return progress.is_due(every_steps=config.eval.every_steps,
                         every_epochs=config.eval.every_epochs)


def make_after_step(config: ml_collections.ConfigDict, vae_setup: VaeSetup,
                    mesh: jax.sharding.Mesh, streams: rng_lib.RandomStreams
                    ) -> tuple[loop.AfterStepFn, loop.DueFn]:
  """Prior refits, optimizer restarts, evaluations and image grids on their schedules,
  and when any of them is due.

  * Refit (paper 3.1): `autoencoders.refit_if_due`.
  * Both optimizers restart every `train.reset_optimizer_every_steps` steps (the
    authors' rounds).
  * Evaluation (ELBO; IWAE-k after the last step and every `eval.iwae_every_epochs`
    epochs) and image grids after the last step, every `eval.every_steps` steps and
    every `eval.every_epochs` epochs.
  """
  model, optimizer = vae_setup.model, vae_setup.optimizer
  num_images = min(config.eval.num_reconstructions, len(vae_setup.eval_dataset))
  num_images -= num_images % 8
  grid_images = vae_setup.eval_dataset[np.arange(max(num_images, 1))]

  def due(progress: loop.Progress) -> bool:
    refit = (autoencoders.refits_prior(config, model.prior)
             and autoencoders.refit_due(config, progress))
    return (refit or optimizers.reset_due(config, progress)
            or _evaluation_due(config, progress))

  def after_step(state: VaeState, progress: loop.Progress):
    outputs: dict[str, Any] = {}
    state, refitted = autoencoders.refit_if_due(
        config, model, optimizer, state, progress, vae_setup.train_dataset, mesh,
        streams)
    if refitted:
      outputs["prior_refit"] = True
    if optimizers.reset_due(config, progress):
      state = dataclasses.replace(state, opt_state=optimizers.reset_optimizer_state(
          optimizer, state.opt_state, state.params))
      outputs["optimizer_reset"] = True
    if _evaluation_due(config, progress):
      with_iwae = progress.final or (progress.end_of_epoch and progress.is_due(
          every_epochs=config.eval.iwae_every_epochs, at_end=False))
      outputs.update(evaluate(
          model, state.params, vae_setup.eval_dataset,
          batch_size=config.eval.batch_size, key=streams.key("evaluation"),
          iwae_samples=config.eval.iwae_samples if with_iwae else None,
          iwae_samples_per_chunk=config.eval.iwae_samples_per_chunk, mesh=mesh,
          prefix=config.eval.split))
      outputs.update(image_outputs(model, state.params, grid_images,
                                   streams.key("image_grid", progress.epoch),
                                   config.eval.num_prior_samples))
    return state, outputs

  return after_step, due


def build(config: ml_collections.ConfigDict,
          context: experiment.RunContext) -> experiment.Experiment:
  """The `experiment.Experiment` of a VAE config (`Trainer.build`)."""
  vae_setup = setup(config)
  after_step, due = make_after_step(config, vae_setup, context.mesh, context.streams)
  task = loop.Task(
      init_state=init_state(vae_setup.model, vae_setup.optimizer,
                            context.streams.init_key()),
      train_step=make_train_step(vae_setup.model, vae_setup.optimizer,
                                 config.train.elbo_samples),
      after_step=after_step, after_step_due=due, shown_metrics=("loss", "elbo"))
  header = (f"VAE with a {vae_setup.model.prior.kind} prior "
            f"(learnable={config.prior.learnable}), "
            f"{vae_setup.model.likelihood} likelihood, {len(vae_setup.train_dataset)} "
            f"train / {len(vae_setup.eval_dataset)} {config.eval.split} examples")
  return experiment.Experiment(task, vae_setup.train_dataset, header)


def restore(config: ml_collections.ConfigDict, workdir: str,
            step: int | None = None) -> experiment.RestoredModel:
  """The model, host params and position of the newest (or the given) checkpoint of a
  `train.vae` run; `config` is the run's (`workdirs.load_config(workdir)`)."""
  trained_on = data_lib.load_dataset(config.data.name, "test",
                                     data_dir=config.data.data_dir)
  model = build_model(config, trained_on.image_shape,
                      model_likelihood(config, trained_on))
  optimizer = make_optimizer(config)
  state, position = loop.restore_for_inference(
      workdir, lambda key: init_state(model, optimizer, key), step=step)
  return experiment.RestoredModel(model, distributed.to_host(state.params), position)


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str,
                        step: int | None = None) -> dict:
  """Test ELBO and IWAE-k (config.eval.iwae_samples) of a checkpoint in `workdir`,
  with the evaluation key of training (`RandomStreams(train.seed)`).

  Appends the result to workdir/metrics.jsonl (split "checkpoint_eval") and writes it
  to workdir/eval_metrics.json. Returns the record, with "step".
  """
  validate_config(config)
  restored = restore(config, workdir, step)
  eval_dataset = experiment.load_split(config, config.eval.split,
                                       config.data.num_eval_examples)
  metrics = evaluate(restored.model, restored.params, eval_dataset,
                     batch_size=config.eval.batch_size,
                     key=rng_lib.RandomStreams(config.train.seed).key("evaluation"),
                     iwae_samples=config.eval.iwae_samples,
                     iwae_samples_per_chunk=config.eval.iwae_samples_per_chunk,
                     prefix=config.eval.split)
  return evaluation.write_checkpoint_eval(workdir, restored.position, metrics)


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


def latent_model(config: ml_collections.ConfigDict, workdir: str,
                 step: int | None = None) -> samplers.LatentModel:
  """The prior and the decoder means (images in [0, 1]) at a checkpoint of a run."""
  model, params, position = restore(config, workdir, step)
  return samplers.LatentModel(
      prior=model.prior, prior_params=params["prior"],
      decode_fn=functools.partial(jax.jit(model.decode_mean), params),
      image_shape=model.image_shape, position=position)


TRAINER = experiment.Trainer(
    name="vae", validate_config=validate_config, build=build,
    evaluate_checkpoint=evaluate_checkpoint, checkpoint_sampler=checkpoint_sampler,
    latent_model=latent_model)


# Trains this task in a workdir (`experiment.Trainer.train_and_evaluate`).
train_and_evaluate = TRAINER.train_and_evaluate
