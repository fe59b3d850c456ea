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
