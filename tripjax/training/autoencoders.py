"""What the VAE and the conditional VAE share: their networks, encoder latents, refits.

* `build_networks`: the conv encoder and decoder of `config.model`.
* `encoder_latents`: the means of q(z|x), or one draw z ~ q(z|x), of a split.
* The data-driven prior refits of the paper's section 3.1 (`refit_prior`, on the
  schedule of `refit_if_due`): the prior's means and scales refit by EM to encoder
  latents of the training set, the prior's Adam moments restarted.
* `check_autoencoder_fields`: the config fields both trainers read.

A model here is anything with `posterior(params, images) -> (mean, log_scale)` and a
`prior` with `refit` (or `refit = None`): the VAE's and the conditional VAE's.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar, Hashable, Protocol, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from tripjax import data as data_lib
from tripjax import likelihoods
from tripjax import priors
from tripjax.models import vae as vae_models
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import loop
from tripjax.training import optimizers
from tripjax.training import rng as rng_lib
from tripjax.training import sharding

REFIT_ON = ("samples", "means")  # what `prior.refit_on` may say


class AutoencoderModel(Hashable, Protocol):
  """What the refits need of a model (hashable: compiled functions are cached by it)."""

  @property
  def prior(self) -> Any:
    """A `tripjax.priors.LatentPrior` (its `refit` may be None)."""
    ...

  def posterior(self, params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(z|x): images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim)."""
    ...


class AutoencoderState(Protocol):
  """What the refits need of a train state (a dataclass: `dataclasses.replace`)."""
  __dataclass_fields__: ClassVar[dict[str, Any]]
  params: dict
  opt_state: Any


def build_networks(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                   likelihood: str) -> tuple[vae_models.Encoder, vae_models.Decoder]:
  """The conv encoder and decoder of `config.model`."""
  widths = config.model.widths
  return vae_models.encoder_decoder(
      tuple(image_shape), config.model.latent_dim,
      widths=None if widths is None else tuple(widths),
      params_per_channel=likelihoods.num_params_per_channel(likelihood),
      norm=config.model.norm, use_bias=config.model.use_bias,
      kernel_size=config.model.kernel_size)


@functools.lru_cache(maxsize=16)
def _jitted_posterior(model: AutoencoderModel, mesh: jax.sharding.Mesh):
  replicated, split = sharding.replicated(mesh), sharding.batch_sharded(mesh)
  return jax.jit(model.posterior, in_shardings=(replicated, split),
                 out_shardings=(split, split))


@functools.lru_cache(maxsize=16)
def _jitted_refit(model: AutoencoderModel):
  return jax.jit(model.prior.refit)


def encoder_latents(model: AutoencoderModel, params: dict,
                    dataset: data_lib.ImageDataset, *, batch_size: int,
                    on: str = "means", key: jax.Array | None = None,
                    max_examples: int | None = None,
                    mesh: jax.sharding.Mesh | None = None) -> np.ndarray:
  """Latents of the first `max_examples` (default all) examples: (N, d).

  Args:
    model: a model with `posterior`.
    params: its parameters.
    dataset: the split.
    batch_size: encoder batch size (divisible by the device count).
    on: "means", the means of q(z|x); or "samples", one draw z ~ q(z|x) per example
      (a sample of the aggregate posterior q(z) = mean over x of q(z|x), which is
      what a prior should fit: it is wider than the cloud of means by the
      posterior variances).
    key: PRNG key of the draws (needed for "samples").
    max_examples: how many.
    mesh: the 1-D data mesh (default: all devices).
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
    if key is not None and on == "samples":
      noise = jax.random.normal(jax.random.fold_in(key, batch_index), mean.shape,
                                mean.dtype)
      mean = mean + np.exp(log_scale) * np.asarray(noise)
    latents.append(np.asarray(mean)[batch.mask > 0])
    count += len(latents[-1])
    if max_examples and count >= max_examples:
      break
  stacked = np.concatenate(latents)
  return stacked[:max_examples] if max_examples else stacked


def _redraw_cores(prior: Any, params: Any, key: jax.Array) -> Any:
  """`priors.redraw_cores` of the ring's params, or of the base's under a flow."""
  if priors.base_prior(prior) is prior:
    return priors.redraw_cores(params, key)
  return dict(params, base=priors.redraw_cores(params["base"], key))


def refit_prior(model: AutoencoderModel, state: AutoencoderState,
                dataset: data_lib.ImageDataset, key: jax.Array, *, batch_size: int,
                max_examples: int | None, mesh: jax.sharding.Mesh,
                on: str = "samples", redraw_cores: bool = False) -> Any:
  """Refits the prior's means and scales by EM (paper 3.1) to encoder latents.

  `on` = "samples" fits one draw z ~ q(z|x) per example (the authors' code), "means"
  the means of q(z|x); see `encoder_latents`. Under a flow the base prior is fit to
  f^-1(z) (`flows.FlowPrior.refit`). With `redraw_cores` the ring's cores are redrawn
  too (`priors.redraw_cores`, the authors' refit; gmm and trip). Returns the state
  with the new prior parameters, replicated over `mesh`.
  """
  sample_key, refit_key = jax.random.split(key)
  z = encoder_latents(model, state.params, dataset, batch_size=batch_size, on=on,
                      key=sample_key, max_examples=max_examples, mesh=mesh)
  prior_params = _jitted_refit(model)(distributed.to_host(state.params["prior"]),
                                      jnp.asarray(z), refit_key)
  if redraw_cores:
    prior_params = _redraw_cores(model.prior, prior_params,
                                 jax.random.fold_in(refit_key, 1))
  params = dict(state.params, prior=sharding.replicate(prior_params, mesh))
  return dataclasses.replace(state, params=params)


def refit_is_due(epochs_done: int, refit_every_epochs: int) -> bool:
  """Data-driven init (paper, section 3.1): after epoch 1, then every k epochs
  (1, 1+k, 1+2k, ...); never for k = 0."""
  if refit_every_epochs <= 0:
    return False
  return epochs_done == 1 or (epochs_done - 1) % refit_every_epochs == 0


def refit_due(config: ml_collections.ConfigDict, progress: loop.Progress) -> bool:
  """Whether the schedule refits the prior after this step: after each step in
  `prior.refit_at_steps`, and at the end of epoch 1 and every
  `prior.refit_every_epochs` epochs after it (`refit_is_due`)."""
  return progress.step in config.prior.refit_at_steps or (
      progress.end_of_epoch
      and refit_is_due(progress.epoch + 1, config.prior.refit_every_epochs))


def refits_prior(config: ml_collections.ConfigDict, prior: Any) -> bool:
  """Whether the schedule refits this prior: it has a refit and its kind (under a
  flow, its base's) is in `prior.refit_kinds` (a config without that field: every
  prior with a refit)."""
  if prior.refit is None:
    return False
  kinds = config.prior.get("refit_kinds")
  return kinds is None or priors.base_prior(prior).kind in kinds


def refit_if_due(config: ml_collections.ConfigDict, model: AutoencoderModel,
                 optimizer: optax.GradientTransformation, state: AutoencoderState,
                 progress: loop.Progress, train_dataset: data_lib.ImageDataset,
                 mesh: jax.sharding.Mesh,
                 streams: rng_lib.RandomStreams) -> tuple[Any, bool]:
  """The prior refit of the schedule (`refit_due`), if one is due after this step.

  Only for a prior that `refits_prior`. The refit's key is the "refit" stream's at
  this step. With `prior.reset_optimizer_on_refit` the prior's Adam moments restart
  (they were of the old means and scales).

  Returns:
    (state, whether it was refit).
  """
  if not refits_prior(config, model.prior) or not refit_due(config, progress):
    return state, False
  state = refit_prior(model, state, train_dataset, streams.key("refit", progress.step),
                      batch_size=config.eval.batch_size,
                      max_examples=config.prior.refit_num_examples, mesh=mesh,
                      on=config.prior.refit_on,
                      redraw_cores=config.prior.get("refit_redraws_cores", False))
  if config.prior.reset_optimizer_on_refit:
    state = dataclasses.replace(state, opt_state=optimizers.reset_optimizer_state(
        optimizer, state.opt_state, state.params, groups=(optimizers.PRIOR,)))
  return state, True


RING_PRIOR_KINDS = ("gmm", "trip")  # the kinds whose cores `refit_redraws_cores` redraws


def check_refit_kind_fields(config: ml_collections.ConfigDict,
                            kinds: Sequence[str]) -> None:
  """`prior.refit_kinds` (a tuple of `kinds`) and `prior.refit_redraws_cores` (only
  for gmm and trip among the refit kinds: a prior that is never refit ignores it, so
  one preset serves every `prior.kind`)."""
  value = config_checks.get_field(config, "prior.refit_kinds")
  if not isinstance(value, (tuple, list)) or any(kind not in kinds for kind in value):
    raise config_checks.ConfigError(
        "prior.refit_kinds", value,
        f"must be a tuple of prior kinds ({', '.join(kinds)}), e.g. ('trip',).")
  config_checks.check_bool(config, "prior.refit_redraws_cores")
  if (config.prior.refit_redraws_cores and config.prior.kind not in RING_PRIOR_KINDS
      and config.prior.kind in value):
    raise config_checks.ConfigError(
        "prior.refit_redraws_cores", True,
        f"only a ring prior has cores ({', '.join(RING_PRIOR_KINDS)}), "
        f"not prior.kind = {config.prior.kind!r}.")


def check_autoencoder_fields(config: ml_collections.ConfigDict) -> None:
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
  config_checks.check_prior_size_fields(config)
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
