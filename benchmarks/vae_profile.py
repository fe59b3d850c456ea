"""Where the VAE step's time goes: each layer's forward and backward, tripjax and PyTorch.

  python -m benchmarks.vae_profile          # batch 128, 1 CPU device; torch: all cores
  python -m benchmarks.vae_profile --batch 32 --repeats 3 --clock cpu

Every layer of the paper's encoder and decoder (`tripjax.models.vae.paper_encoder_decoder`,
discretized-logistic output; the layers are found by running the model once under
`flax.linen.intercept_methods`, so the table follows the model's code) is jitted alone
at the batch size and timed: its forward, and its forward + VJP w.r.t. its parameters
and input for a fixed random cotangent (what a train step runs for it). Then the
likelihood (the mean discretized-logistic log-probability and its gradient w.r.t. the
decoder output), the Adam update of all parameters (`tripjax.training.vae.make_optimizer`)
and the whole train step (`benchmarks.vae_step`, N(0, I) prior). The same pieces of the
PyTorch reference (`benchmarks.torch_reference`, NCHW, `torch.set_num_threads` = every
usable core, `common.cpu_threads`) are timed the same way, every piece of both taking
turns within each repeat. "rest" is the train step minus the pieces (LeakyReLUs,
reshapes, the KL term, the sampling of z, the gradient norm).

Reported: medians, in wall-clock ms (`--clock wall`) or in this process's CPU ms
(`--clock cpu`: all its threads, robust to other processes' load when it runs on one
core), and tripjax's forward + backward time over PyTorch's.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import layer_profile
from benchmarks.layer_profile import Piece


def likelihood_piece(batch: int, image_shape, seed: int) -> Piece:
  """Mean discretized-logistic log-likelihood and its gradient w.r.t. the decoder
  output, in tripjax and in PyTorch."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  from tripjax import likelihoods  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  height, width, channels = image_shape
  images = (rng.integers(0, 256, (batch, height, width, channels)) / 255).astype(
      np.float32)
  output = np.concatenate([rng.uniform(size=images.shape),
                           rng.uniform(-5, -2, size=images.shape)], -1).astype(np.float32)

  def loss(output, images):
    return -jnp.mean(likelihoods.log_likelihood("discretized_logistic", output, images))

  jax_forward, jax_backward = jax.jit(loss), jax.jit(jax.value_and_grad(loss))
  torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  torch_output = torch.from_numpy(output.transpose(0, 3, 1, 2).copy()).requires_grad_()

  def torch_loss():
    log_scale = torch.clamp(torch_output[:, channels:], min=torch_reference.MIN_LOG_SCALE)
    return -torch_reference.discretized_logistic_log_prob(
        torch_output[:, :channels], log_scale, torch_images).mean()

  def torch_forward():
    with torch.no_grad():
      return torch_loss()

  return Piece("likelihood", f"{height}x{width}x{2 * channels} -> 1",
               lambda: jax_forward(output, images),
               lambda: jax_backward(output, images),
               torch_forward,
               lambda: torch.autograd.grad(torch_loss(), torch_output))


def adam_piece(timer, torch_step) -> Piece:
  """The optimizer update of every parameter (random gradients)."""
  import optax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from configs import celeba_vae_trip  # pylint: disable=g-import-not-at-top
  from tripjax.training import vae  # pylint: disable=g-import-not-at-top
  config = celeba_vae_trip.get_config()
  config.prior.kind = "normal"
  optimizer = vae.make_optimizer(config)
  params, opt_state = timer.state.params, timer.state.opt_state
  grads = jax.tree.map(lambda leaf: jnp.full_like(leaf, 1e-3), params)

  @jax.jit
  def update(params, opt_state, grads):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for parameter in torch_step.model.parameters():
    parameter.grad = torch.full_like(parameter, 1e-3)
  count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
  return Piece("Adam update", f"{count / 1e6:.2f} M params", None,
               lambda: update(params, opt_state, grads), None,
               torch_step.optimizer.step)


def main(argv=None) -> int:
  args = layer_profile.parse_args(__doc__, argv, batch=128)

  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import vae_step  # pylint: disable=g-import-not-at-top
  from tripjax.training import sharding  # pylint: disable=g-import-not-at-top
  threads = common.cpu_threads()
  torch.set_num_threads(threads)
  mesh = sharding.make_data_mesh()
  timer = vae_step.StepTimer("normal", batch=args.batch, latent_dim=args.latent,
                             num_components=1, rank=1, mesh=mesh)
  model, params = timer.model, jax.device_get(timer.state.params)
  images = jnp.asarray(jax.device_get(timer.batch["image"]))
  mean, _ = model.encoder.apply({"params": params["encoder"]}, images)
  torch_step = vae_step.make_torch_step(args.batch, args.latent, threads)
  reference = torch_step.model
  torch_layers = {f"encoder/conv{i}": conv for i, conv in enumerate(reference.encoder.convs)}
  torch_layers.update({
      "encoder/to_posterior": reference.encoder.to_posterior,
      "decoder/from_latent": reference.decoder.from_latent,
      "decoder/project": reference.decoder.project})
  torch_layers.update({f"decoder/deconv{i}": deconv
                       for i, deconv in enumerate(reference.decoder.deconvs)})

  pieces = layer_profile.layer_pieces(
      "encoder", layer_profile.record_layers(model.encoder, params["encoder"], images),
      torch_layers, seed=0)
  pieces += layer_profile.layer_pieces(
      "decoder", layer_profile.record_layers(model.decoder, params["decoder"], mean),
      torch_layers, seed=1)
  pieces.append(likelihood_piece(args.batch, vae_step.IMAGE_SHAPE, seed=2))
  pieces.append(adam_piece(timer, torch_step))
  pieces.append(Piece("train step", f"batch {args.batch}", None, timer.step, None,
                      torch_step.step))
  print(f"compiled; timing {args.repeats} repeats", flush=True)
  medians = layer_profile.time_pieces(pieces, args.repeats,
                                      layer_profile.CLOCKS[args.clock])

  layer_profile.print_table(
      f"Per-layer {args.clock}-clock ms, median of {args.repeats}; batch {args.batch}",
      pieces, medians, total="train step")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
