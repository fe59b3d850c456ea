"""Tests for benchmarks/torch_reference.py: the PyTorch VAE computes tripjax's loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from benchmarks import torch_reference
from tripjax import priors
from tripjax.models import vae as vae_models
from tripjax.training import vae


def test_torch_vae_has_tripjax_loss_and_gradient_norm():
  """Same weights, same batch and noise: the same one-sample ELBO and gradient norm
  (so the same architecture, likelihood and KL term), and the same parameter count."""
  image_shape, latent_dim, widths, batch = (16, 16, 3), 3, (4, 8), 4
  encoder, decoder = vae_models.encoder_decoder(
      image_shape, latent_dim, widths=widths, params_per_channel=2, use_bias=False)
  model = vae.VaeModel(encoder=encoder, decoder=decoder,
                       prior=priors.make_prior("normal", latent_dim),
                       likelihood="discretized_logistic", image_shape=image_shape,
                       latent_dim=latent_dim)
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(lambda: {
      "encoder": encoder.init(jax.random.key(0), jnp.zeros((1, *image_shape)))["params"],
      "decoder": decoder.init(jax.random.key(0), jnp.zeros((1, latent_dim)))["params"],
      "prior": {}})
  params = jax.tree.map(lambda leaf: jnp.asarray(
      rng.normal(size=leaf.shape) * 0.3, leaf.dtype), shapes)
  optimizer = optax.adam(1e-3)
  state = vae.VaeState(params=params, opt_state=optimizer.init(params))
  images = (rng.integers(0, 256, (batch, *image_shape)) / 255).astype(np.float32)
  key = jax.random.PRNGKey(3)
  _, metrics = jax.jit(vae.make_train_step(model, optimizer))(
      state, {"image": images}, key)
  noise = np.asarray(jax.random.normal(key, (1, batch, latent_dim))[0])

  reference = torch_reference.TorchVae(image_shape, latent_dim, widths)
  torch_reference.load_tripjax_vae_params(reference, params)
  loss = reference(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()),
                   torch.from_numpy(noise.copy()))
  loss.backward()
  grad_norm = torch.sqrt(sum(p.grad.square().sum() for p in reference.parameters()))
  np.testing.assert_allclose(loss.item(), metrics["loss"], rtol=1e-5)
  np.testing.assert_allclose(grad_norm.item(), metrics["grad_norm"], rtol=1e-4)
  assert sum(p.numel() for p in reference.parameters()) == vae_models.count_params(params)


def test_torch_gan_has_tripjax_critic_and_generator_terms():
  """Same weights and inputs: the critic update's loss, penalty and gradient norm and
  the generator update's loss and gradient norm are tripjax's, and the parameter
  counts are equal."""
  from tripjax.configs import base_gan
  from tripjax.training import gan

  image_shape, latent_dim, widths, batch = (16, 16, 3), 5, (8, 4), 4
  config = base_gan.get_config()
  config.model.latent_dim, config.model.widths = latent_dim, widths
  config.prior.kind, config.prior.learnable = "normal", False
  model = gan.build_model(config, image_shape)
  optimizers = gan.make_optimizers(config)
  state = gan.init_state(model, optimizers, jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda leaf: jnp.asarray(
      leaf + rng.normal(size=leaf.shape) * 0.1, leaf.dtype), state.params)
  updates = gan.make_updates(model, optimizers, **gan.step_settings(config))
  real, fake, interpolates = (
      rng.uniform(-1, 1, (batch, *image_shape)).astype(np.float32) for _ in range(3))
  z = rng.normal(size=(batch, latent_dim)).astype(np.float32)
  carry = gan.CriticCarry(params[gan.CRITIC], {}, optimizers.critic.init(
      params[gan.CRITIC]))
  _, critic_terms = updates.critic(carry, real, fake, interpolates)
  trainable = {gan.GENERATOR: params[gan.GENERATOR], gan.PRIOR: params[gan.PRIOR]}
  *_, generator_terms = updates.generator(
      trainable, optimizers.generator.init(trainable), params[gan.CRITIC], {}, z)

  generator = torch_reference.TorchGenerator(image_shape, latent_dim, widths)
  critic = torch_reference.TorchCritic(image_shape, tuple(reversed(widths)))
  torch_reference.load_tripjax_gan_params(generator, critic, params)
  nchw = lambda images: torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  loss, penalty = torch_reference.gan_critic_loss(
      critic, nchw(real), nchw(fake), nchw(interpolates), 10.0)
  (loss + penalty).backward()
  norm = lambda module: torch.sqrt(sum(p.grad.square().sum()
                                       for p in module.parameters())).item()
  np.testing.assert_allclose(loss.item() + penalty.item(), critic_terms.loss, rtol=1e-4)
  np.testing.assert_allclose(penalty.item(), critic_terms.penalty, rtol=1e-4)
  np.testing.assert_allclose(norm(critic), critic_terms.grad_norm, rtol=1e-4)

  critic.zero_grad()
  generator_loss = -critic(generator(torch.from_numpy(z))).mean()
  generator_loss.backward()
  np.testing.assert_allclose(generator_loss.item(), generator_terms.loss, rtol=1e-4)
  np.testing.assert_allclose(norm(generator), generator_terms.grad_norm, rtol=1e-4)
  count = lambda module: sum(p.numel() for p in module.parameters())
  assert count(generator) == sum(leaf.size for leaf in jax.tree.leaves(
      params[gan.GENERATOR]))
  assert count(critic) == sum(leaf.size for leaf in jax.tree.leaves(params[gan.CRITIC]))
