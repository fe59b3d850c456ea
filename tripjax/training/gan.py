"""WGAN-GP and WGAN training with a normal, GMM or TRIP prior (paper, section 3.3).

The pieces specific to the GAN: the model bundle, the three optimizers, the pure
`train_step` and the sample grids (and classifier FD) after steps. The shared run
function (`tripjax.training.experiment`) runs it as `TRAINER`. One loop step is one
generator update: it takes `gan.n_critic` real batches (the loop stacks them), makes
one critic update on each, then updates the generator and the prior once.

* Critic: minimizes E[D(G(z))] - E[D(x)] plus WGAN-GP's gradient penalty
  (`gan.gradient_penalty` > 0), or with its parameters clipped to
  [-gan.clip_value, gan.clip_value] after every update (WGAN, penalty 0).
* Generator: minimizes -E[D(G(z))] by the pathwise gradient; z ~ p_psi(z) enter as
  constants (`stop_gradient`), so the prior gets nothing from this term, except with
  the "pathwise" prior gradient below.
* Prior (`prior.learnable`): minimizes E_p[r(z)] with r_i = -D(G(z_i)) the per-example
  generator loss, i.e. maximizes the critic's score of G(z) (eq. 10), by
  `prior.gradient_estimator` (`tripjax.prior.gradients`):
  "score" (the default, eq. 10 as printed): every prior parameter by the score function
  with the batch-mean reward as baseline (`losses.score_function_surrogate`);
  "pathwise" (TRIP and GMM priors): the generator's batch is z = mu_s + sigma_s * eps
  (`trip.reparameterize` of exact draws of s), so the generator loss's pathwise
  gradient reaches the means and scales through z, and only the cores get eq. 10's
  score term (`trip.score_log_prob`, means and scales held).
  With `prior.learnable = False` (the paper's "F") it keeps its initial parameters
  (means uniform in [-1, 1], scales 1/N).
* Flows (`prior.flows` = K > 0, the authors' `--add_flows`): z = f(z0), z0 drawn from
  the base prior and f a RealNVP of K coupling layers (`tripjax.flows`). The flow's
  parameters get the generator loss's pathwise gradient through z; the base prior's
  get the estimator above, on z0 (eq. 10's score function of log p_base(z0), or the
  path z0 = mu_s + sigma_s * eps); both estimate the gradient of E[r(f(z0))] without
  bias. With `prior.learnable = False` neither moves.

Parameters are one dict {"generator": ..., "critic": ..., "prior": ...}; the critic
has its own Adam, the generator and the prior share one `optax.multi_transform` (two
Adams, the prior's with its own learning rate and betas), all with (b1, b2) = (0.5, 0.9)
by default. Every loss is a mean over the global batch (split over devices by the loop);
the penalty's gradient norms are per example (`gan.penalty_norm=per_example`, WGAN-GP)
or, as in the TRIP authors' code, per pixel over the channels (`per_pixel`). With
`train.reset_optimizer_every_steps` = k > 0 all three Adams restart every k steps (the
authors recreate their optimizers every 1,000 iterations).

Point data (`data.name` in `data.POINT_DATASETS`, the 2-D mixtures of the mode tests):
the generator and critic are MLPs (`gan_models.MLPGenerator`/`MLPCritic`, widths
`model.widths` / `model.critic_widths`, by default PacGAN's 4x400 and 3x200), points
enter the critic as they are (no [0, 1] -> [-1, 1] map), and after the steps the
sample grids are replaced by a scatter PNG of `MODE_NUM_SAMPLES` samples over the true
modes and the mode metrics of the same samples (`tripjax.metrics.modes`:
modes_covered, high_quality_share, reverse_kl).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Sequence, cast

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from tripjax import data as data_lib
from tripjax import losses
from tripjax import prior as trip
from tripjax import priors
from tripjax.metrics import classifier_fd
from tripjax.metrics import modes as mode_metrics
from tripjax.metrics import sampling
from tripjax.models import gan as gan_models
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import experiment
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import optimizers as optimizers_lib
from tripjax.training import rng as rng_lib
from tripjax.training import samplers

GENERATOR, CRITIC, PRIOR = "generator", "critic", "prior"  # parts of the parameters
CLASSIFIER_FD_DATASETS = ("digits", "mnist")  # 28x28x1, the digit classifier's input
MODE_NUM_SAMPLES = 2500  # samples of the point sets' scatter PNG and mode metrics


@flax.struct.dataclass
class GanState:
  """Everything that changes during training (and is checkpointed).

  Attributes:
    params: {"generator": ..., "critic": ..., "prior": ...} parameter pytrees.
    batch_stats: the critic's running batch-norm statistics ({} without batch norm).
    critic_opt_state: the critic's Adam state.
    generator_opt_state: the state of the generator's and the prior's Adams.
  """
  params: dict
  batch_stats: dict
  critic_opt_state: Any
  generator_opt_state: Any


@dataclasses.dataclass(frozen=True)
class GanModel:
  """The fixed (non-array) parts of a GAN: generator, critic and prior.

  Attributes:
    generator: z (B, latent_dim) -> images (B, H, W, C) in [-1, 1] (points (B, 2)).
    critic: images (B, H, W, C) in [-1, 1] (points (B, 2)) -> scores (B,).
    prior: a `tripjax.priors.LatentPrior` over latent_dim variables.
    image_shape: (H, W, C), or (2,) for points.
    latent_dim: size of z.
    points: the data are points (MLPs, no range map), not images.
  """
  generator: gan_models.Generator | gan_models.MLPGenerator
  critic: gan_models.Critic | gan_models.MLPCritic
  prior: Any
  image_shape: tuple[int, ...]
  latent_dim: int
  points: bool = False

  @property
  def has_batch_stats(self) -> bool:
    return self.critic.norm == "batch"

  def generate(self, params: dict, z: jax.Array) -> jax.Array:
    """G(z): z (B, latent_dim) -> images (B, H, W, C) in [-1, 1]."""
    return cast(jax.Array, self.generator.apply({"params": params[GENERATOR]}, z))

  def critic_scores(self, critic_params: dict, batch_stats: dict,
                    images: jax.Array) -> tuple[jax.Array, dict]:
    """D(x) in training mode: images (B, H, W, C) in [-1, 1] -> (scores (B,),
    batch_stats after this batch). With batch norm the scores use the batch's own
    statistics; otherwise each score depends on its own image only."""
    if self.has_batch_stats:
      scores, updates = self.critic.apply(
          {"params": critic_params, "batch_stats": batch_stats}, images, train=True,
          mutable=["batch_stats"])
      return scores, updates["batch_stats"]
    return (cast(jax.Array, self.critic.apply({"params": critic_params}, images)),
            batch_stats)

  def sample_latents(self, prior_params: Any, key: jax.Array,
                     num_samples: int) -> jax.Array:
    """z ~ p(z), (num_samples, latent_dim), as constants (no gradient to the prior)."""
    return jax.lax.stop_gradient(self.prior.sample(prior_params, key, (num_samples,)))

  @property
  def base_prior(self) -> Any:
    """The prior under the flow (`prior.flows` > 0), else the prior itself."""
    return priors.base_prior(self.prior)

  def base_params(self, prior_params: Any) -> Any:
    """The base prior's part of the prior's parameters."""
    return prior_params["base"] if self.base_prior is not self.prior else prior_params

  def push(self, prior_params: Any, base_z: jax.Array) -> jax.Array:
    """z = f(z0) (B, latent_dim) through the flow (differentiable in its parameters);
    z0 itself without one."""
    if self.base_prior is self.prior:
      return base_z
    return self.prior.forward(prior_params, base_z)

  def decode(self, params: dict, z: jax.Array) -> jax.Array:
    """z (B, latent_dim) -> images (B, H, W, C) in [0, 1] to look at or score (points
    (B, 2) as they are)."""
    if self.points:
      return self.generate(params, z)
    return gan_models.to_image_range(self.generate(params, z))

  def to_model_range(self, data: jax.Array) -> jax.Array:
    """A batch as the loop gives it -> the critic's input: images in [0, 1] to
    [-1, 1]; points unchanged."""
    return data if self.points else gan_models.to_model_range(data)


def critic_norm(config: ml_collections.ConfigDict) -> str:
  """`model.critic_norm`, or by default layer norm with a gradient penalty (per-example
  scores) and batch norm with weight clipping (the WGAN paper's critic)."""
  if config.model.critic_norm is not None:
    return config.model.critic_norm
  return "layer" if config.gan.gradient_penalty > 0 else "batch"


def build_model(config: ml_collections.ConfigDict,
                image_shape: Sequence[int]) -> GanModel:
  """The generator/critic of `config.model` and the prior of `config.prior` (MLPs for
  the point sets)."""
  widths, critic_widths = config.model.widths, config.model.critic_widths
  points = config.data.name in data_lib.POINT_DATASETS
  generator: gan_models.Generator | gan_models.MLPGenerator
  critic: gan_models.Critic | gan_models.MLPCritic
  if points:
    generator, critic = gan_models.mlp_generator_critic(
        image_shape[0],
        generator_widths=gan_models.PACGAN_GENERATOR_WIDTHS if widths is None else widths,
        critic_widths=(gan_models.PACGAN_CRITIC_WIDTHS if critic_widths is None
                       else critic_widths),
        critic_norm=critic_norm(config))
  else:
    generator, critic = gan_models.generator_critic(
        tuple(image_shape), widths=None if widths is None else tuple(widths),
        critic_widths=None if critic_widths is None else tuple(critic_widths),
        critic_norm=critic_norm(config))
  prior = priors.with_flows(
      priors.make_prior(config.prior.kind, config.model.latent_dim,
                        num_components=config.prior.num_components,
                        rank=config.prior.rank),
      config.prior.get("flows", 0))
  return GanModel(generator=generator, critic=critic, prior=prior,
                  image_shape=tuple(image_shape), latent_dim=config.model.latent_dim,
                  points=points)


class GanOptimizers(NamedTuple):
  """critic: over params["critic"]; generator: over {"generator", "prior"}."""
  critic: optax.GradientTransformation
  generator: optax.GradientTransformation


def _generator_and_prior(params: dict) -> dict:
  return {GENERATOR: params[GENERATOR], PRIOR: params[PRIOR]}


def _parameter_groups(params: dict) -> dict:
  """Labels every leaf of {"generator", "prior"} with its part's name."""
  return {part: jax.tree.map(lambda _, part=part: part, subtree)
          for part, subtree in params.items()}


def prior_adam_betas(config: ml_collections.ConfigDict) -> tuple[float, float]:
  """(`prior.adam_b1`, `prior.adam_b2`), each None: the nets' `gan.adam_b1/b2`."""
  b1, b2 = config.prior.get("adam_b1"), config.prior.get("adam_b2")
  return (config.gan.adam_b1 if b1 is None else b1,
          config.gan.adam_b2 if b2 is None else b2)


def make_optimizers(config: ml_collections.ConfigDict) -> GanOptimizers:
  """Three Adams: the nets' with (b1, b2) = (gan.adam_b1, gan.adam_b2), the prior's
  with `prior_adam_betas(config)`.

  The generator's and the critic's learning rate is `train.learning_rate`, the
  prior's `prior.learning_rate` (None: the same). With `prior.learnable = False` the
  prior gets no updates (the paper's "F").
  """
  def adam(learning_rate):
    return optax.adam(learning_rate, b1=config.gan.adam_b1, b2=config.gan.adam_b2)

  prior_b1, prior_b2 = prior_adam_betas(config)

  def prior_adam(learning_rate):
    return optax.adam(learning_rate, b1=prior_b1, b2=prior_b2)

  prior = optimizers_lib.prior_optimizer(config, learnable=config.prior.learnable,
                                         adam=prior_adam)
  generator = optax.multi_transform(
      {GENERATOR: adam(config.train.learning_rate), PRIOR: prior}, _parameter_groups)
  return GanOptimizers(critic=adam(config.train.learning_rate), generator=generator)


def reset_optimizers(optimizers: GanOptimizers, state: GanState) -> GanState:
  """`state` with all three Adams started afresh (moments and counts), the fresh
  arrays placed like the ones they replace (the compiled step is not compiled again)."""
  return dataclasses.replace(
      state, critic_opt_state=optimizers_lib.placed_like(
          optimizers.critic.init(state.params[CRITIC]), state.critic_opt_state),
      generator_opt_state=optimizers_lib.placed_like(
          optimizers.generator.init(_generator_and_prior(state.params)),
          state.generator_opt_state))


def init_state(model: GanModel, optimizers: GanOptimizers, key: jax.Array) -> GanState:
  """Fresh parameters (generator, critic, prior) and optimizer states (one compiled
  call). `key`: the "init" stream's key (`RandomStreams.init_key`), or any PRNG key."""

  @jax.jit
  def initialize(key):
    generator_key, critic_key, prior_key = jax.random.split(key, 3)
    z = jnp.zeros((1, model.latent_dim), jnp.float32)
    images = jnp.zeros((1,) + model.image_shape, jnp.float32)
    critic_variables = model.critic.init(critic_key, images)
    params = {
        GENERATOR: model.generator.init(generator_key, z)["params"],
        CRITIC: critic_variables["params"],
        PRIOR: model.prior.init(prior_key),
    }
    return GanState(
        params=params, batch_stats=dict(critic_variables.get("batch_stats", {})),
        critic_opt_state=optimizers.critic.init(params[CRITIC]),
        generator_opt_state=optimizers.generator.init(_generator_and_prior(params)))

  return initialize(key)


class CriticTerms(NamedTuple):
  """Scalars of one critic update (batch means)."""
  loss: jax.Array  # E[D(G(z))] - E[D(x)] + penalty, what the critic minimizes
  wasserstein: jax.Array  # E[D(x)] - E[D(G(z))], the critic's distance estimate
  penalty: jax.Array  # weight * E[(||grad D(x_hat)|| - 1)^2]; 0 with clipping
  grad_norm: jax.Array  # of the critic's gradient


class GeneratorTerms(NamedTuple):
  """Scalars of the generator (and prior) update."""
  loss: jax.Array  # -E[D(G(z))]
  grad_norm: jax.Array  # of the generator's gradient
  prior_grad_norm: jax.Array  # of the prior's gradient (0 if frozen)
  prior_log_prob: jax.Array  # E[log p(z)] of the samples (0 with a frozen prior)
  reward_std: jax.Array  # standard deviation of r_i = -D(G(z_i)) over the batch


class CriticCarry(NamedTuple):
  """What critic updates change: params["critic"], batch_stats, critic_opt_state."""
  params: dict
  batch_stats: dict
  opt_state: Any


class GanUpdates(NamedTuple):
  """The two pure updates one train step is made of (see `make_updates`)."""
  critic: Any
  generator: Any


def make_updates(model: GanModel, optimizers: GanOptimizers, *,
                 gradient_penalty: float, clip_value: float, learnable_prior: bool,
                 normalize_rewards: bool = False,
                 gradient_estimator: str = "score",
                 penalty_norm: str = "per_example") -> GanUpdates:
  """One critic update and one generator-and-prior update, as pure functions.

  Args:
    gradient_penalty: WGAN-GP's weight; 0: clip the critic's parameters to
      [-clip_value, clip_value] after every update (WGAN).
    learnable_prior: add the prior's score-function surrogate (eq. 10); False skips
      it (a frozen prior gets no updates anyway).
    normalize_rewards: divide the centred rewards of the score-function term by their
      batch standard deviation.
    gradient_estimator: "score" or "pathwise" (module docstring); "pathwise" needs a
      TRIP (or GMM) prior, and applies with a learnable prior only.
    penalty_norm: "per_example" or "per_pixel" (`losses.gradient_penalty_at`'s norm).

  Returns:
    critic(carry: CriticCarry, real (B, H, W, C), fake (B, H, W, C), interpolates
      (B, H, W, C) or None) -> (carry, CriticTerms), images in [-1, 1], fake and
      interpolates constants (the penalty is taken at the interpolates);
    generator(trainable {"generator", "prior"}, opt_state, critic_params,
      batch_stats, latents) -> (trainable, opt_state, batch_stats, GeneratorTerms),
      latents z (B, latent_dim) constants (under a flow: the base draws z0), or with
      "pathwise" (and a learnable prior) the `trip.Draws` of the batch,
      reparameterized by the (base) prior's params.
  """

  def critic_loss_fn(critic_params, batch_stats, real, fake, interpolates):
    real_scores, batch_stats = model.critic_scores(critic_params, batch_stats, real)
    fake_scores, batch_stats = model.critic_scores(critic_params, batch_stats, fake)
    loss = losses.wgan_critic_loss(real_scores, fake_scores)
    penalty = jnp.zeros((), loss.dtype)
    if gradient_penalty > 0:
      penalty = losses.gradient_penalty_at(
          lambda images: model.critic_scores(critic_params, batch_stats, images)[0],
          interpolates, gradient_penalty, norm=penalty_norm)
    return loss + penalty, (loss, penalty, batch_stats)

  def critic_update(carry: CriticCarry, real, fake, interpolates):
    grads, (loss, penalty, batch_stats) = jax.grad(critic_loss_fn, has_aux=True)(
        carry.params, carry.batch_stats, real, fake, interpolates)
    updates, opt_state = optimizers.critic.update(grads, carry.opt_state, carry.params)
    params = optax.apply_updates(carry.params, updates)
    if gradient_penalty <= 0:
      params = losses.clip_weights(params, clip_value)
    terms = CriticTerms(loss=loss + penalty, wasserstein=-loss, penalty=penalty,
                        grad_norm=optax.tree.norm(grads))
    return CriticCarry(params, batch_stats, opt_state), terms

  if gradient_estimator not in trip.ESTIMATORS:
    raise ValueError(f"gradient_estimator must be one of {trip.ESTIMATORS}, got "
                     f"{gradient_estimator!r}.")
  pathwise = learnable_prior and gradient_estimator == "pathwise"

  def generator_loss_fn(trainable, critic_params, batch_stats, latents):
    base_params = model.base_params(trainable[PRIOR])
    base_z = trip.reparameterize(base_params, latents) if pathwise else latents
    z = model.push(trainable[PRIOR], base_z)  # the flow's pathwise gradient
    fake = model.generate(trainable, z)
    scores, batch_stats = model.critic_scores(critic_params, batch_stats, fake)
    generator_loss = losses.wgan_generator_loss(scores)
    rewards = -scores  # per-example generator loss
    loss, log_prob = generator_loss, jnp.zeros_like(generator_loss)
    if learnable_prior:
      # log p(z) at constant z, so the surrogate's gradient is eq. 10's score-function
      # estimate: in every prior parameter, or in the cores only with "pathwise".
      if pathwise:
        log_probs = trip.score_log_prob(base_params, base_z, "pathwise")
      else:
        log_probs = model.base_prior.log_prob(base_params, base_z)
      loss = loss + losses.score_function_surrogate(log_probs, rewards,
                                                    normalize_rewards)
      log_prob = jnp.mean(log_probs)
    return loss, (generator_loss, log_prob, jnp.std(jax.lax.stop_gradient(rewards)),
                  batch_stats)

  def generator_update(trainable, opt_state, critic_params, batch_stats, latents):
    grads, (loss, log_prob, reward_std, batch_stats) = jax.grad(
        generator_loss_fn, has_aux=True)(trainable, critic_params, batch_stats, latents)
    updates, opt_state = optimizers.generator.update(grads, opt_state, trainable)
    trainable = optax.apply_updates(trainable, updates)
    terms = GeneratorTerms(loss=loss, grad_norm=optax.tree.norm(grads[GENERATOR]),
                           prior_grad_norm=optax.tree.norm(grads[PRIOR]),
                           prior_log_prob=log_prob, reward_std=reward_std)
    return trainable, opt_state, batch_stats, terms

  return GanUpdates(critic=critic_update, generator=generator_update)


def make_train_step(model: GanModel, optimizers: GanOptimizers, *,
                    gradient_penalty: float, clip_value: float,
                    learnable_prior: bool,
                    normalize_rewards: bool = False,
                    gradient_estimator: str = "score",
                    penalty_norm: str = "per_example") -> loop.TrainStepFn:
  """The pure step: n_critic critic updates, then one generator and prior update.

  Arguments as `make_updates`.

  Returns:
    train_step(state, batch {"image": (n_critic, B, H, W, C) in [0, 1], or
    (B, H, W, C) for n_critic = 1}, rng) ->
    (state, metrics) with scalar metrics critic_loss, wasserstein, gradient_penalty
    (with a penalty) and critic_grad_norm (means over the n_critic updates),
    generator_loss, generator_grad_norm and, with a learnable prior, prior_grad_norm,
    prior_log_prob and reward_std.
  """
  updates = make_updates(model, optimizers, gradient_penalty=gradient_penalty,
                         clip_value=clip_value, learnable_prior=learnable_prior,
                         normalize_rewards=normalize_rewards,
                         gradient_estimator=gradient_estimator,
                         penalty_norm=penalty_norm)
  pathwise = learnable_prior and gradient_estimator == "pathwise"

  def train_step(state: GanState, batch: dict, rng: jax.Array):
    real = model.to_model_range(batch["image"])
    if real.ndim == 1 + len(model.image_shape):  # n_critic = 1: one batch, not a stack.
      real = real[None]
    # (n_critic, B, H, W, C)
    num_critic_updates, batch_size = real.shape[:2]
    image_shape = real.shape[2:]
    params = state.params
    latent_key, interpolation_key = jax.random.split(rng)
    # The generator and the prior stay fixed during the critic updates, so the
    # latents of every update (n_critic fake batches, then the generator's batch) and
    # the fakes are drawn at once: the same distribution as one draw per update, and
    # one random-number program to compile instead of n_critic + 1.
    num_latents = (num_critic_updates + 1) * batch_size
    base_params = model.base_params(params[PRIOR])
    if pathwise:  # the generator's batch as draws, reparameterized in its update
      draws = jax.tree.map(
          lambda leaf: leaf.reshape(num_critic_updates + 1, batch_size, -1),
          trip.draw(base_params, latent_key, num_latents))
      base_z = trip.reparameterize(base_params, draws)
      generator_latents = jax.tree.map(lambda leaf: leaf[-1], draws)
    else:
      base_z = model.base_prior.sample(base_params, latent_key, (num_latents,))
      base_z = base_z.reshape(num_critic_updates + 1, batch_size, model.latent_dim)
      generator_latents = jax.lax.stop_gradient(base_z[-1])
    z = jax.lax.stop_gradient(model.push(params[PRIOR], base_z))
    fake = jax.lax.stop_gradient(model.generate(params, z[:-1].reshape(
        num_critic_updates * batch_size, model.latent_dim))).reshape(real.shape)
    interpolates: Any = [None] * num_critic_updates
    if gradient_penalty > 0:
      interpolates = losses.random_interpolates(
          interpolation_key, real.reshape((-1,) + image_shape),
          fake.reshape((-1,) + image_shape)).reshape(real.shape)

    carry = CriticCarry(params[CRITIC], state.batch_stats, state.critic_opt_state)
    critic_terms = []
    # A Python loop, not lax.scan: XLA:CPU runs the convolutions (and the penalty's
    # double backward pass) inside a while loop several times slower.
    for update in range(num_critic_updates):
      carry, terms = updates.critic(carry, real[update], fake[update],
                                    interpolates[update])
      critic_terms.append(terms)
    critic_terms = jax.tree.map(lambda *values: jnp.mean(jnp.stack(values)),
                                *critic_terms)

    trainable, generator_opt_state, batch_stats, generator_terms = updates.generator(
        _generator_and_prior(params), state.generator_opt_state, carry.params,
        carry.batch_stats, generator_latents)
    new_state = GanState(params={**trainable, CRITIC: carry.params},
                         batch_stats=batch_stats, critic_opt_state=carry.opt_state,
                         generator_opt_state=generator_opt_state)
    metrics = {"critic_loss": critic_terms.loss,
               "wasserstein": critic_terms.wasserstein,
               "critic_grad_norm": critic_terms.grad_norm,
               "generator_loss": generator_terms.loss,
               "generator_grad_norm": generator_terms.grad_norm}
    if gradient_penalty > 0:
      metrics["gradient_penalty"] = critic_terms.penalty
    if learnable_prior:
      metrics.update(prior_grad_norm=generator_terms.prior_grad_norm,
                     prior_log_prob=generator_terms.prior_log_prob,
                     reward_std=generator_terms.reward_std)
    return new_state, metrics

  return train_step


def step_settings(config: ml_collections.ConfigDict) -> dict:
  """The keyword arguments of `make_updates` / `make_train_step` in a config."""
  return dict(gradient_penalty=config.gan.gradient_penalty,
              clip_value=config.gan.clip_value,
              learnable_prior=config.prior.learnable and config.prior.kind != "normal",
              normalize_rewards=config.prior.normalize_rewards,
              gradient_estimator=config.prior.gradient_estimator,
              penalty_norm=config.gan.get("penalty_norm", "per_example"))


@functools.partial(jax.jit, static_argnums=(0, 3))
def sample_images(model: GanModel, params: dict, key: jax.Array,
                  num_samples: int) -> jax.Array:
  """G(z) for z ~ p(z): (num_samples, H, W, C) in [0, 1]."""
  z = model.prior.sample(params[PRIOR], key, (num_samples,))
  return model.decode(params, z)


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `config_checks.ConfigError` for the first bad field of a GAN config."""
  config_checks.check_choice(config, "task", ("gan",))
  config_checks.check_choice(config, "data.name",
                             data_lib.DATASETS + data_lib.POINT_DATASETS)
  config_checks.check_bool(config, "data.binarize")
  config_checks.check_int(config, "data.num_train_examples", minimum=1, optional=True)
  experiment.check_split_fields(config)
  config_checks.check_common_train_fields(config)
  config_checks.check_int(config, "model.latent_dim", minimum=1)
  config_checks.check_int_sequence(config, "model.widths", minimum=1, optional=True)
  config_checks.check_int_sequence(config, "model.critic_widths", minimum=1,
                                   optional=True)
  config_checks.check_choice(config, "model.critic_norm",
                             (None,) + gan_models.CRITIC_NORMS)
  config_checks.check_choice(config, "prior.kind",
                             priors.PRIOR_KINDS + priors.FULL_SPACE_PRIOR_KINDS)
  config_checks.check_bool(config, "prior.learnable")
  config_checks.check_prior_size_fields(config)
  config_checks.check_int(config, "prior.flows", minimum=0)
  config_checks.check_bool(config, "prior.normalize_rewards")
  config_checks.check_choice(config, "prior.gradient_estimator", trip.ESTIMATORS)
  if config.prior.gradient_estimator == "pathwise" and config.prior.kind not in (
      "gmm", "trip"):
    raise config_checks.ConfigError(
        "prior.gradient_estimator", "pathwise", f"the path z = mu_s + sigma_s * eps "
        f"needs a mixture prior (prior.kind 'gmm' or 'trip', got "
        f"{config.prior.kind!r}); use 'score'.")
  config_checks.check_number(config, "gan.gradient_penalty", minimum=0.0)
  config_checks.check_number(config, "gan.clip_value", minimum=0.0,
                             exclusive_minimum=True)
  config_checks.check_int(config, "gan.n_critic", minimum=1)
  config_checks.check_number(config, "gan.adam_b1", minimum=0.0, maximum=1.0)
  config_checks.check_number(config, "gan.adam_b2", minimum=0.0, maximum=1.0)
  config_checks.check_choice(config, "gan.penalty_norm", losses.PENALTY_NORMS)
  config_checks.check_number(config, "prior.adam_b1", minimum=0.0, maximum=1.0,
                             optional=True)
  config_checks.check_number(config, "prior.adam_b2", minimum=0.0, maximum=1.0,
                             optional=True)
  config_checks.check_int(config, "train.reset_optimizer_every_steps", minimum=0)
  if config.gan.gradient_penalty > 0 and config.model.critic_norm == "batch":
    raise config_checks.ConfigError(
        "model.critic_norm", "batch", "the gradient penalty needs per-example critic "
        "scores: use 'layer' or 'none', or batch norm with gan.gradient_penalty=0 "
        "(WGAN weight clipping).")
  config_checks.check_int(config, "eval.batch_size", minimum=1)
  config_checks.check_int(config, "eval.every_epochs", minimum=0)
  config_checks.check_int(config, "eval.every_steps", minimum=0)
  config_checks.check_int(config, "eval.num_samples", minimum=1)
  config_checks.check_int(config, "eval.classifier_fd_every_epochs", minimum=0)
  config_checks.check_int(config, "eval.classifier_fd_num_samples", minimum=2)
  if (config.eval.classifier_fd_every_epochs > 0
      and config.data.name not in CLASSIFIER_FD_DATASETS):
    raise config_checks.ConfigError(
        "eval.classifier_fd_every_epochs", config.eval.classifier_fd_every_epochs,
        f"the digit classifier scores 28x28x1 digits only (data.name one of "
        f"{', '.join(map(repr, CLASSIFIER_FD_DATASETS))}); use 0 and score with "
        f"python -m train.fid.")


@dataclasses.dataclass(frozen=True)
class GanSetup:
  """The data, model and optimizers of a GAN config.

  Attributes:
    train_dataset: the training split (its first `data.num_train_examples`).
    model: the `GanModel`.
    optimizers: the critic's and the generator's (with the prior's) Adams.
  """
  train_dataset: data_lib.ImageDataset
  model: GanModel
  optimizers: GanOptimizers


def setup(config: ml_collections.ConfigDict) -> GanSetup:
  """The `GanSetup` of a (valid) config."""
  train_dataset = experiment.load_split(config, "train", config.data.num_train_examples)
  model = build_model(config, train_dataset.image_shape)
  return GanSetup(train_dataset, model, make_optimizers(config))


def _reference_images(config: ml_collections.ConfigDict) -> np.ndarray:
  """The test split (of `data.split`) at grey levels, what generator samples are
  compared with."""
  return data_lib.load_dataset(
      config.data.name, "test", data_dir=config.data.data_dir, binarize=False,
      split_scheme=config.data.get("split", "tfds"),
      split_seed=config.data.get("split_seed", data_lib.PAPER_SPLIT_SEED)).images


def _grid_due(config: ml_collections.ConfigDict, progress: loop.Progress) -> bool:
  return progress.is_due(every_steps=config.eval.every_steps,
                         every_epochs=config.eval.every_epochs)


def _classifier_fd_due(config: ml_collections.ConfigDict,
                       progress: loop.Progress) -> bool:
  every = config.eval.classifier_fd_every_epochs
  return progress.is_due(every_epochs=every, at_end=every > 0)


def make_after_step(config: ml_collections.ConfigDict, model: GanModel,
                    streams: rng_lib.RandomStreams,
                    optimizers: GanOptimizers | None = None
                    ) -> tuple[loop.AfterStepFn, loop.DueFn]:
  """Optimizer restarts, sample grids (and the classifier FD) on their schedules, and
  when any of them is due.

  * With `optimizers`, all three Adams restart every `train.reset_optimizer_every_steps`
    steps (`reset_optimizers`; output "optimizer_reset").

  * A grid of `eval.num_samples` generator samples every `eval.every_epochs` epochs,
    every `eval.every_steps` steps and after the last step, always from the same
    "image_grid" key, so successive grids show how the same draws change.
  * Point data instead: on the same schedule, a scatter PNG ("samples") of
    `MODE_NUM_SAMPLES` generator samples over the mixture's modes (circles of 3 sd)
    and their mode metrics (`tripjax.metrics.modes`), from the same "image_grid" key.
  * With `eval.classifier_fd_every_epochs` = k > 0: the classifier FD of
    `eval.classifier_fd_num_samples` samples every k epochs and after the last step,
    scored by the digit classifier in `eval.classifier_workdir`
    (`tripjax.metrics.classifier_fd.load_classifier`; the train CLI trains it there
    first if it is missing).
  """
  scale = 1 if model.points else image_grid.display_scale(model.image_shape)
  mixture = (data_lib.point_mixture(config.data.name) if model.points else None)
  scorer: dict[str, Any] = {}  # Loaded at the first FD: classifier params, reference.

  def fd_of_samples(params) -> float:
    if not scorer:
      scorer["params"], _ = classifier_fd.load_classifier(
          config.eval.classifier_workdir)
      scorer["reference"] = _reference_images(config)
    return sampling.classifier_fd_from_sampler(
        lambda key, num: sample_images(model, params, key, num),
        scorer["reference"], scorer["params"],
        num_samples=config.eval.classifier_fd_num_samples,
        batch_size=config.eval.batch_size, key=streams.key("sample_metric"),
        progress=False)

  def reset_due(progress: loop.Progress) -> bool:
    return optimizers is not None and optimizers_lib.reset_due(config, progress)

  def due(progress: loop.Progress) -> bool:
    return (reset_due(progress) or _grid_due(config, progress)
            or _classifier_fd_due(config, progress))

  def after_step(state: GanState, progress: loop.Progress):
    outputs: dict[str, Any] = {}
    if reset_due(progress):
      assert optimizers is not None
      state = reset_optimizers(optimizers, state)
      outputs["optimizer_reset"] = True
    if not (_grid_due(config, progress) or _classifier_fd_due(config, progress)):
      return state, outputs
    params = distributed.to_host(state.params)
    if _grid_due(config, progress) and mixture is not None:
      points = np.asarray(sample_images(model, params, streams.key("image_grid"),
                                        MODE_NUM_SAMPLES))
      outputs["samples"] = loop.Image(
          image_grid.scatter_points(points, mixture.centres, mixture.sd), scale)
      scores = mode_metrics.mode_metrics(points, mixture.centres, mixture.sd)
      outputs.update(modes_covered=scores.modes_covered,
                     high_quality_share=scores.high_quality_share,
                     reverse_kl=scores.reverse_kl)
    elif _grid_due(config, progress):
      samples = np.asarray(sample_images(model, params, streams.key("image_grid"),
                                         config.eval.num_samples))
      outputs["samples"] = loop.Image(image_grid.make_grid(samples), scale)
    if _classifier_fd_due(config, progress):
      outputs["classifier_fd"] = fd_of_samples(params)
    return state, outputs

  return after_step, due


def _header(config: ml_collections.ConfigDict, gan_setup: GanSetup) -> str:
  variant = (f"WGAN-GP (penalty {config.gan.gradient_penalty:g}, "
             f"{config.gan.penalty_norm})"
             if config.gan.gradient_penalty > 0 else
             f"WGAN (weight clipping {config.gan.clip_value:g})")
  return (f"{variant} with a {config.prior.kind} prior (learnable="
          f"{config.prior.learnable}), {critic_norm(config)}-norm critic, n_critic "
          f"{config.gan.n_critic}, {len(gan_setup.train_dataset)} train images")


def build(config: ml_collections.ConfigDict,
          context: experiment.RunContext) -> experiment.Experiment:
  """The `experiment.Experiment` of a GAN config (`Trainer.build`)."""
  gan_setup = setup(config)
  after_step, due = make_after_step(config, gan_setup.model, context.streams,
                                    gan_setup.optimizers)
  task = loop.Task(
      init_state=init_state(gan_setup.model, gan_setup.optimizers,
                            context.streams.init_key()),
      train_step=make_train_step(gan_setup.model, gan_setup.optimizers,
                                 **step_settings(config)),
      after_step=after_step, after_step_due=due,
      shown_metrics=("wasserstein", "generator_loss"),
      batches_per_step=config.gan.n_critic)
  return experiment.Experiment(task, gan_setup.train_dataset,
                               _header(config, gan_setup))


def classifiers(config: ml_collections.ConfigDict
                ) -> tuple[experiment.ClassifierRun, ...]:
  """The digit classifier of the classifier FD, when the run computes it."""
  if config.eval.classifier_fd_every_epochs <= 0:
    return ()
  return (experiment.ClassifierRun(classifier_fd.STOCK_CONFIG,
                                   config.eval.classifier_workdir),)


def restore(config: ml_collections.ConfigDict, workdir: str,
            step: int | None = None) -> experiment.RestoredModel:
  """The model, host params and position of a checkpoint; reads no training data."""
  model = build_model(config, data_lib.image_shape(config.data.name))
  optimizers = make_optimizers(config)
  state, position = loop.restore_for_inference(
      workdir, lambda key: init_state(model, optimizers, key), step=step)
  return experiment.RestoredModel(model, distributed.to_host(state.params), position)


def latent_model(config: ml_collections.ConfigDict, workdir: str,
                 step: int | None = None) -> samplers.LatentModel:
  """The prior and the generator (images in [0, 1]) at a checkpoint of a run."""
  model, params, position = restore(config, workdir, step)
  return samplers.LatentModel(
      prior=model.prior, prior_params=params[PRIOR],
      decode_fn=functools.partial(jax.jit(model.decode), params),
      image_shape=model.image_shape, position=position)


def checkpoint_sampler(config: ml_collections.ConfigDict, workdir: str,
                       step: int | None = None) -> samplers.CheckpointSampler:
  """Generator samples G(z), z ~ p(z), in [0, 1] at a checkpoint of a `train.gan` run.

  The reference images are the run's test split at grey levels.
  """
  model, params, position = restore(config, workdir, step)

  def sample_fn(key, num_samples):
    return sample_images(model, params, key, num_samples)

  return samplers.CheckpointSampler(sample_fn, _reference_images(config), position)


TRAINER = experiment.Trainer(
    name="gan", validate_config=validate_config, build=build,
    checkpoint_sampler=checkpoint_sampler, latent_model=latent_model,
    classifiers=classifiers)


# Trains this task in a workdir (`experiment.Trainer.train_and_evaluate`).
train_and_evaluate = TRAINER.train_and_evaluate
