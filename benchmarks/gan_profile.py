"""Where the GAN updates' time goes: each layer, and the critic's penalty, tripjax and
PyTorch.

  python -m benchmarks.gan_profile          # batch 64, 1 CPU device; torch: all cores
  python -m benchmarks.gan_profile --batch 16 --repeats 3 --clock cpu

Every layer with parameters of the paper's 64 px generator and layer-norm critic
(`tripjax.models.gan.paper_generator_critic`; found as in `benchmarks.vae_profile`) is
jitted alone and timed forward, and forward + VJP w.r.t. its parameters and input, next
to its twin in `benchmarks.torch_reference`. Then the nets whole, as the updates use
them (`benchmarks.gan_step` times the updates themselves):

* critic, input gradient: D(x) and its gradient w.r.t. x (what the generator update
  runs through the critic, and the penalty's inner gradient);
* critic, parameter gradient: D(x) and its gradient w.r.t. the critic's parameters;
* gradient penalty: WGAN-GP's penalty (`tripjax.losses.gradient_penalty_at`, weight
  10) and its gradient w.r.t. the critic's parameters (second order);
* critic loss: E[D(fake)] - E[D(real)] + penalty and its parameter gradient (the critic
  update without Adam);
* generator loss: -E[D(G(z))] and its gradient w.r.t. the generator's parameters (the
  generator update without Adam and the prior).

Medians in wall-clock or CPU ms (`--clock`), every piece of both libraries taking turns
within each repeat; PyTorch on every usable core (`common.cpu_threads`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks import layer_profile
from benchmarks.layer_profile import Piece

IMAGE_SHAPE = (64, 64, 3)
PENALTY_WEIGHT = 10.0


def whole_net_pieces(generator, critic, params: dict, torch_generator, torch_critic,
                     z: np.ndarray, images: np.ndarray) -> list[Piece]:
  """The critic's gradients, its penalty and both losses, in tripjax and PyTorch, at
  the same z and images (the critic loss on images, -images and images / 2 as real, fake
  and interpolates: only the cost matters)."""
  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  from tripjax import losses  # pylint: disable=g-import-not-at-top
  generator_params, critic_params = params["generator"], params["critic"]
  z, images = jnp.asarray(z), jnp.asarray(images)

  def score(critic_params, x):
    return critic.apply({"params": critic_params}, x)

  def penalty(critic_params, x):
    return losses.gradient_penalty_at(lambda x: score(critic_params, x), x,
                                      PENALTY_WEIGHT)

  def critic_loss(critic_params, real, fake, interpolates):
    return losses.wgan_critic_loss(score(critic_params, real), score(
        critic_params, fake)) + penalty(critic_params, interpolates)

  def generator_loss(generator_params, z):
    return losses.wgan_generator_loss(score(critic_params, generator.apply(
        {"params": generator_params}, z)))

  total = lambda f: lambda *args: jnp.sum(f(*args))
  forward = jax.jit(score)
  input_grad = jax.jit(jax.value_and_grad(total(score), argnums=1))
  param_grad = jax.jit(jax.value_and_grad(total(score)))
  penalty_value, penalty_grad = jax.jit(penalty), jax.jit(jax.value_and_grad(penalty))
  critic_value, critic_grad = jax.jit(critic_loss), jax.jit(
      jax.value_and_grad(critic_loss))
  generator_value, generator_grad = jax.jit(generator_loss), jax.jit(
      jax.value_and_grad(generator_loss))

  torch_x = torch.from_numpy(np.array(images).transpose(0, 3, 1, 2).copy())
  torch_z = torch.from_numpy(np.array(z))
  # Real, fake and interpolates for the critic loss: distinct arrays, or XLA would
  # compute one critic pass for all three.
  three = (images, -images, 0.5 * images)
  torch_three = (torch_x, -torch_x, 0.5 * torch_x)
  critic_weights = list(torch_critic.parameters())
  generator_weights = list(torch_generator.parameters())

  def torch_forward():
    with torch.no_grad():
      return torch_critic(torch_x)

  def torch_input_grad():
    x = torch_x.clone().requires_grad_(True)
    return torch.autograd.grad(torch_critic(x).sum(), x)

  def torch_param_grad():
    return torch.autograd.grad(torch_critic(torch_x).sum(), critic_weights)

  def torch_penalty(gradient: bool):
    value = torch_reference.gradient_penalty(torch_critic, torch_x, PENALTY_WEIGHT)
    if not gradient:
      return value.detach()
    return torch.autograd.grad(value, critic_weights, allow_unused=True)

  def torch_critic_loss(gradient: bool):
    loss, value = torch_reference.gan_critic_loss(torch_critic, *torch_three,
                                                  PENALTY_WEIGHT)
    if not gradient:
      return (loss + value).detach()
    return torch.autograd.grad(loss + value, critic_weights)

  def torch_generator_loss(gradient: bool):
    torch_critic.requires_grad_(False)
    try:
      loss = -torch_critic(torch_generator(torch_z)).mean()
      return torch.autograd.grad(loss, generator_weights) if gradient else loss.detach()
    finally:
      torch_critic.requires_grad_(True)

  shapes = f"{'x'.join(map(str, images.shape[1:]))} -> 1"
  return [
      Piece("critic, input gradient", shapes, lambda: forward(critic_params, images),
            lambda: input_grad(critic_params, images), torch_forward, torch_input_grad),
      Piece("critic, parameter gradient", shapes,
            lambda: forward(critic_params, images),
            lambda: param_grad(critic_params, images), torch_forward, torch_param_grad),
      Piece("gradient penalty (2nd order)", shapes,
            lambda: penalty_value(critic_params, images),
            lambda: penalty_grad(critic_params, images),
            lambda: torch_penalty(False), lambda: torch_penalty(True)),
      Piece("critic loss", f"3 x {shapes}",
            lambda: critic_value(critic_params, *three),
            lambda: critic_grad(critic_params, *three),
            lambda: torch_critic_loss(False), lambda: torch_critic_loss(True)),
      Piece("generator loss", f"{z.shape[1]} -> 1",
            lambda: generator_value(generator_params, z),
            lambda: generator_grad(generator_params, z),
            lambda: torch_generator_loss(False), lambda: torch_generator_loss(True)),
  ]


def main(argv=None) -> int:
  args = layer_profile.parse_args(__doc__, argv, batch=64)

  import torch  # pylint: disable=g-import-not-at-top
  from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top
  from tripjax.models import gan as gan_models  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(common.cpu_threads())
  rng = np.random.default_rng(0)
  z = rng.normal(size=(args.batch, args.latent)).astype(np.float32)
  images = rng.uniform(-1, 1, (args.batch,) + IMAGE_SHAPE).astype(np.float32)
  generator, critic = gan_models.paper_generator_critic()
  generator_key, critic_key = jax.random.split(jax.random.key(0))
  params = {"generator": generator.init(generator_key, z)["params"],
            "critic": critic.init(critic_key, images)["params"]}
  torch_generator = torch_reference.TorchGenerator(IMAGE_SHAPE, args.latent,
                                                   gan_models.PAPER_WIDTHS)
  torch_critic = torch_reference.TorchCritic(IMAGE_SHAPE,
                                             tuple(reversed(gan_models.PAPER_WIDTHS)))
  torch_reference.load_tripjax_gan_params(torch_generator, torch_critic,
                                          jax.device_get(params))
  torch_layers = {"generator/from_latent": torch_generator.from_latent,
                  "critic/to_score": torch_critic.to_score}
  torch_layers.update({f"generator/deconv{i}": deconv
                       for i, deconv in enumerate(torch_generator.deconvs)})
  torch_layers.update({f"critic/conv{i}": conv
                       for i, conv in enumerate(torch_critic.convs)})

  generator_layers = layer_profile.record_layers(generator, params["generator"], z)
  # The critic's layer norms have no PyTorch module of their own (their scale and bias
  # are parameters of TorchCritic); they are in the whole-critic rows.
  critic_layers = [layer for layer in layer_profile.record_layers(
      critic, params["critic"], images) if f"critic/{layer[0]}" in torch_layers]
  pieces = layer_profile.layer_pieces("generator", generator_layers, torch_layers,
                                      seed=1)
  pieces += layer_profile.layer_pieces("critic", critic_layers, torch_layers, seed=2)
  pieces += whole_net_pieces(generator, critic, params, torch_generator, torch_critic,
                             z, images)
  print(f"compiled; timing {args.repeats} repeats", flush=True)
  medians = layer_profile.time_pieces(pieces, args.repeats,
                                      layer_profile.CLOCKS[args.clock])
  layer_profile.print_table(
      f"GAN layers and losses, {args.clock}-clock ms, median of {args.repeats}; batch "
      f"{args.batch}, latent {args.latent}", pieces, medians)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
