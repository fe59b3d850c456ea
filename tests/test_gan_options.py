"""The TRIP authors' GAN options (issue 19, item 4): each changes what it says.

gan.penalty_norm (closed forms on a linear critic, through the trainer's critic
update), gan.n_critic's schedule (Adam counts after one step), model.critic_norm =
layer_per_pixel (statistics over the channels of each pixel), prior.adam_b1/b2 (the
prior's Adam) and train.reset_optimizer_every_steps (all three Adams restart).
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tripjax import losses
from tripjax import priors
from tripjax.configs import base_gan
from tripjax.models import gan as gan_models
from tripjax.training import config_checks
from tripjax.training import gan
from tripjax.training import loop
from tripjax.training import rng as rng_lib

IMAGE_SHAPE = (3, 4, 2)  # (H, W, C)


class LinearCritic(nn.Module):
  """D(x) = <w, x> + b: its input gradient is w at every x (flat generator output is
  read as (B, H, W, C))."""
  norm: str = "none"

  @nn.compact
  def __call__(self, images, *, train=False):
    del train
    images = images.reshape((images.shape[0],) + IMAGE_SHAPE)
    w = self.param("w", nn.initializers.normal(1.0), images.shape[1:])
    b = self.param("b", nn.initializers.zeros, ())
    return jnp.sum(images * w, axis=tuple(range(1, images.ndim))) + b


def linear_model(image_shape=IMAGE_SHAPE, latent_dim=3):
  generator, _ = gan_models.mlp_generator_critic(int(np.prod(image_shape)),
                                                 generator_widths=(4,))
  return gan.GanModel(generator=generator, critic=LinearCritic(),
                      prior=priors.make_prior("normal", latent_dim),
                      image_shape=image_shape, latent_dim=latent_dim)


def small_config(**gan_fields):
  config = base_gan.get_config()
  config.prior.kind = "normal"
  for field, value in gan_fields.items():
    setattr(config.gan, field, value)
  return config


@pytest.mark.parametrize("penalty_norm", ["per_example", "per_pixel"])
def test_penalty_closed_form_on_a_linear_critic(penalty_norm):
  model = linear_model()
  config = small_config(penalty_norm=penalty_norm, gradient_penalty=7.0)
  optimizers = gan.make_optimizers(config)
  updates = gan.make_updates(model, optimizers, **gan.step_settings(config))
  w = jax.random.normal(jax.random.PRNGKey(0), IMAGE_SHAPE) * 0.6
  critic_params = {"w": w, "b": jnp.zeros(())}
  carry = gan.CriticCarry(critic_params, {}, optimizers.critic.init(critic_params))
  real, fake, interpolates = jax.random.normal(jax.random.PRNGKey(1),
                                               (3, 5) + IMAGE_SHAPE)
  _, terms = updates.critic(carry, real, fake, interpolates)
  w64 = np.asarray(w, np.float64)
  if penalty_norm == "per_example":  # (||w||_F - 1)^2, the same for every example
    expected = 7.0 * (np.sqrt(np.sum(w64 ** 2)) - 1.0) ** 2
  else:  # the mean over pixels of (||w[h, w, :]||_2 - 1)^2
    expected = 7.0 * np.mean((np.sqrt(np.sum(w64 ** 2, axis=-1)) - 1.0) ** 2)
  np.testing.assert_allclose(float(terms.penalty), expected, rtol=1e-5)
  # The two options differ on this critic (the test can fail).
  other = "per_pixel" if penalty_norm == "per_example" else "per_example"
  assert abs(float(losses.gradient_penalty_at(
      lambda x: LinearCritic().apply({"params": critic_params}, x), interpolates, 7.0,
      norm=other)) - expected) > 1e-3


def test_penalty_norm_rejects_unknown_values():
  with pytest.raises(ValueError, match="per_example"):
    losses.gradient_penalty_at(lambda x: jnp.sum(x, axis=(1, 2, 3)),
                               jnp.ones((2,) + IMAGE_SHAPE), norm="per_channel")
  config = small_config(penalty_norm="per_channel")
  with pytest.raises(config_checks.ConfigError, match="gan.penalty_norm"):
    gan.validate_config(config)


@pytest.mark.parametrize("n_critic", [1, 4])
def test_critic_to_generator_schedule_counts(n_critic):
  """One loop step of n_critic batches: n_critic critic updates, one generator one."""
  model = linear_model()
  config = small_config(n_critic=n_critic)
  optimizers = gan.make_optimizers(config)
  state = gan.init_state(model, optimizers, jax.random.PRNGKey(0))
  step = jax.jit(gan.make_train_step(model, optimizers, **gan.step_settings(config)))
  images = jax.random.uniform(jax.random.PRNGKey(1), (n_critic, 6) + IMAGE_SHAPE)
  state, _ = step(state, {"image": images}, jax.random.PRNGKey(2))
  state, _ = step(state, {"image": images}, jax.random.PRNGKey(3))

  def counts(opt_state):
    return {int(leaf) for leaf in jax.tree.leaves(opt_state)
            if jnp.ndim(leaf) == 0 and jnp.issubdtype(leaf.dtype, jnp.integer)}

  assert counts(state.critic_opt_state) == {2 * n_critic}
  assert counts(state.generator_opt_state.inner_states["generator"]) == {2}


def test_layer_per_pixel_normalizes_over_channels():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 4, 8)) * 3.0 + jnp.arange(8.0)
  per_pixel = gan_models._Norm("layer_per_pixel")
  y, _ = per_pixel.init_with_output(jax.random.PRNGKey(1), x, train=True)
  np.testing.assert_allclose(np.mean(y, axis=-1), 0.0, atol=1e-5)
  np.testing.assert_allclose(np.var(y, axis=-1), 1.0, rtol=1e-3)
  # "layer" normalizes over (H, W, C) instead: pixel means are not 0.
  whole, _ = gan_models._Norm("layer").init_with_output(jax.random.PRNGKey(1), x,
                                                        train=True)
  np.testing.assert_allclose(np.mean(whole, axis=(1, 2, 3)), 0.0, atol=1e-5)
  assert np.max(np.abs(np.mean(whole, axis=-1))) > 0.1
  # Same parameter shapes as "layer": one scale and bias per channel.
  critic = gan_models.Critic(widths=(4, 8), norm="layer_per_pixel")
  params = critic.init(jax.random.PRNGKey(2), jnp.zeros((1, 16, 16, 3)))["params"]
  assert params["norm1"]["LayerNorm_0"]["scale"].shape == (8,)


def test_prior_adam_betas():
  config = small_config()
  config.prior.kind = "trip"
  config.prior.num_components, config.prior.rank = 2, 2
  prior_params = priors.make_prior("trip", 3, num_components=2, rank=2).init(
      jax.random.PRNGKey(0))
  trainable = {"generator": {"w": jnp.ones(3)}, "prior": prior_params}
  grads = jax.tree.map(lambda leaf: jnp.full_like(leaf, 0.3), trainable)

  def prior_update(b1, b2):
    config.prior.adam_b1, config.prior.adam_b2 = b1, b2
    optimizer = gan.make_optimizers(config).generator
    opt_state = optimizer.init(trainable)
    for _ in range(2):
      updates, opt_state = optimizer.update(
          jax.tree.map(lambda g: g * 2.0, grads), opt_state, trainable)
    return updates["prior"]

  def reference(b1, b2):
    adam = optax.adam(config.train.learning_rate, b1=b1, b2=b2)
    opt_state = adam.init(prior_params)
    for _ in range(2):
      updates, opt_state = adam.update(jax.tree.map(lambda g: g * 2.0, grads["prior"]),
                                       opt_state, prior_params)
    return updates

  for ours, theirs in [(prior_update(None, None), reference(0.5, 0.9)),
                       (prior_update(0.9, 0.999), reference(0.9, 0.999))]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ours, theirs)
  with pytest.raises(AssertionError):  # the betas matter for this gradient sequence
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 prior_update(0.9, 0.999), reference(0.5, 0.9))


def test_reset_optimizer_every_steps_restarts_all_three_adams():
  model = linear_model()
  config = small_config(n_critic=2)
  config.train.reset_optimizer_every_steps = 3
  config.eval.every_epochs = 0
  optimizers = gan.make_optimizers(config)
  state = gan.init_state(model, optimizers, jax.random.PRNGKey(0))
  step = jax.jit(gan.make_train_step(model, optimizers, **gan.step_settings(config)))
  images = jax.random.uniform(jax.random.PRNGKey(1), (2, 6) + IMAGE_SHAPE)
  state, _ = step(state, {"image": images}, jax.random.PRNGKey(2))
  after_step, due = gan.make_after_step(config, model, rng_lib.RandomStreams(0),
                                        optimizers)
  not_yet = loop.Progress(step=2, epoch=0, end_of_epoch=False, final=False)
  reset = loop.Progress(step=3, epoch=0, end_of_epoch=False, final=False)
  assert not due(not_yet) and due(reset)
  moments = [leaf for leaf in jax.tree.leaves(
      (state.critic_opt_state, state.generator_opt_state)) if jnp.ndim(leaf) > 0]
  assert any(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in moments)
  new_state, outputs = after_step(state, reset)
  assert outputs == {"optimizer_reset": True}
  fresh = (optimizers.critic.init(state.params["critic"]),
           optimizers.generator.init(gan._generator_and_prior(state.params)))
  jax.tree.map(np.testing.assert_array_equal,
               (new_state.critic_opt_state, new_state.generator_opt_state), fresh)
  jax.tree.map(np.testing.assert_array_equal, new_state.params, state.params)
  # Without optimizers (or with 0) nothing restarts.
  _, due_without = gan.make_after_step(config, model, rng_lib.RandomStreams(0))
  assert not due_without(reset)
