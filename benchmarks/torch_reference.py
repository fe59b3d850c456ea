"""PyTorch references of the paper's VAE and GAN steps, timed against tripjax.

`TorchVae` is `tripjax.models.vae.paper_encoder_decoder` written in PyTorch (NCHW, the
layout a PyTorch user has): the same layers, shapes and biases, the same
discretized-logistic likelihood (log-scale floored at -7) and the same one-sample
Monte-Carlo ELBO with an N(0, I) prior; `TorchVaeStep` is one Adam step of it, as
`tripjax.training.vae.make_train_step` with `optax.adam`.

`TorchGenerator` and `TorchCritic` are `tripjax.models.gan.generator_critic` (layer-norm
critic, the WGAN-GP models) in PyTorch; `TorchGanUpdates` are one critic update (with
the gradient penalty at given interpolates) and one generator update with Adam(b1 0.5,
b2 0.9), as `tripjax.training.gan.make_updates` with an N(0, I) or fixed prior (no
score-function term).

`tests/test_torch_reference.py` checks that, with the tripjax weights copied in, the
losses and gradient norms are equal, so the timings compare the same computation.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import torch
from torch import nn

LEAKY_RELU_SLOPE = 0.2
MIN_LOG_SCALE = -7.0  # tripjax.likelihoods.MIN_LOG_SCALE
NUM_BINS = 256
_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


class TorchVaeEncoder(nn.Module):
  """Images (B, C, H, W) -> (mean, log_scale), each (B, latent_dim).

  Conv2d(kernel 4, stride 2, padding 1, no bias) per width, LeakyReLU 0.2 after each;
  Linear(flattened map -> 2 * latent_dim) with bias.
  """

  def __init__(self, image_shape: Sequence[int], latent_dim: int,
               widths: Sequence[int]):
    super().__init__()
    height, _, channels = image_shape
    convs, in_width = [], channels
    for width in widths:
      convs.append(nn.Conv2d(in_width, width, 4, stride=2, padding=1, bias=False))
      in_width = width
    self.convs = nn.ModuleList(convs)
    side = height // 2 ** len(widths)
    self.to_posterior = nn.Linear(side * side * in_width, 2 * latent_dim)

  def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images
    for conv in self.convs:
      x = nn.functional.leaky_relu(conv(x), LEAKY_RELU_SLOPE)
    x = self.to_posterior(x.flatten(1))
    return x.chunk(2, dim=1)


class TorchVaeDecoder(nn.Module):
  """z (B, latent_dim) -> (B, 2C, H, W): the logistic location, then its log-scale.

  Linear(latent -> widths[-1]) with bias, LeakyReLU; as a 1x1 map,
  ConvTranspose2d(kernel H / 2 ** len(widths), VALID, no bias), LeakyReLU;
  ConvTranspose2d(kernel 4, stride 2, padding 1, no bias) per reversed width, to 2C,
  LeakyReLU 0.2 between them.
  """

  def __init__(self, image_shape: Sequence[int], latent_dim: int,
               widths: Sequence[int]):
    super().__init__()
    height, _, channels = image_shape
    reversed_widths = tuple(reversed(widths))
    self.from_latent = nn.Linear(latent_dim, reversed_widths[0])
    start = height // 2 ** len(widths)
    self.project = nn.ConvTranspose2d(reversed_widths[0], reversed_widths[0], start,
                                      bias=False)
    output_widths = reversed_widths[1:] + (2 * channels,)
    deconvs, in_width = [], reversed_widths[0]
    for width in output_widths:
      deconvs.append(nn.ConvTranspose2d(in_width, width, 4, stride=2, padding=1,
                                        bias=False))
      in_width = width
    self.deconvs = nn.ModuleList(deconvs)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = nn.functional.leaky_relu(self.from_latent(z), LEAKY_RELU_SLOPE)
    x = x[:, :, None, None]
    x = nn.functional.leaky_relu(self.project(x), LEAKY_RELU_SLOPE)
    for layer, deconv in enumerate(self.deconvs):
      x = deconv(x)
      if layer < len(self.deconvs) - 1:
        x = nn.functional.leaky_relu(x, LEAKY_RELU_SLOPE)
    return x


def discretized_logistic_log_prob(loc: torch.Tensor, log_scale: torch.Tensor,
                                  x: torch.Tensor) -> torch.Tensor:
  """`tripjax.likelihoods.discretized_logistic_log_prob` over (C, H, W): (B,)."""
  bin_index = torch.round(x * (NUM_BINS - 1))
  inverse_scale = torch.exp(-log_scale)
  upper = inverse_scale * ((bin_index + 0.5) / (NUM_BINS - 1) - loc)
  lower = inverse_scale * ((bin_index - 0.5) / (NUM_BINS - 1) - loc)
  log_sigmoid = nn.functional.logsigmoid
  interior = (log_sigmoid(upper) + log_sigmoid(-lower)
              + torch.log(-torch.expm1(lower - upper)))
  log_mass = torch.where(bin_index <= 0, log_sigmoid(upper),
                         torch.where(bin_index >= NUM_BINS - 1, log_sigmoid(-lower),
                                     interior))
  return log_mass.sum(dim=(1, 2, 3))


class TorchVae(nn.Module):
  """The paper's VAE; `forward` returns the negative mean one-sample ELBO (nats)."""

  def __init__(self, image_shape: Sequence[int] = (64, 64, 3), latent_dim: int = 100,
               widths: Sequence[int] = (64, 128, 256, 512)):
    super().__init__()
    self.channels = image_shape[2]
    self.encoder = TorchVaeEncoder(image_shape, latent_dim, widths)
    self.decoder = TorchVaeDecoder(image_shape, latent_dim, widths)

  def forward(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """images (B, C, H, W) in [0, 1], noise (B, latent_dim) ~ N(0, I) -> scalar loss."""
    mean, log_scale = self.encoder(images)
    z = mean + torch.exp(log_scale) * noise
    output = self.decoder(z)
    loc, out_log_scale = output[:, :self.channels], output[:, self.channels:]
    log_likelihood = discretized_logistic_log_prob(
        loc, torch.clamp(out_log_scale, min=MIN_LOG_SCALE), images)
    # log q(z|x) - log p(z) at the sample: the Monte-Carlo KL of tripjax.losses.elbo.
    log_posterior = (-0.5 * noise.square() - log_scale - _HALF_LOG_TWO_PI).sum(dim=1)
    log_prior = (-0.5 * z.square() - _HALF_LOG_TWO_PI).sum(dim=1)
    return -(log_likelihood - (log_posterior - log_prior)).mean()


class TorchVaeStep:
  """One Adam (lr 3e-4) step of `TorchVae` on a fixed batch, fresh noise each step."""

  def __init__(self, images_nhwc: np.ndarray, latent_dim: int = 100,
               widths: Sequence[int] = (64, 128, 256, 512), learning_rate: float = 3e-4,
               seed: int = 0):
    torch.manual_seed(seed)
    self.model = TorchVae(images_nhwc.shape[1:], latent_dim, widths)
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
    self.images = torch.from_numpy(np.ascontiguousarray(
        images_nhwc.transpose(0, 3, 1, 2))).float()
    self.latent_dim = latent_dim

  def step(self) -> float:
    """Runs one step; returns its wall time in seconds (noise drawn inside)."""
    start = time.perf_counter()
    noise = torch.randn(self.images.shape[0], self.latent_dim)
    self.optimizer.zero_grad(set_to_none=True)
    loss = self.model(self.images, noise)
    loss.backward()
    self.optimizer.step()
    elapsed = time.perf_counter() - start
    if not math.isfinite(loss.item()):
      raise FloatingPointError("non-finite loss in the PyTorch reference")
    return elapsed


def _tensor(array) -> torch.Tensor:
  return torch.from_numpy(np.array(array, np.float32))  # a writable copy


def load_tripjax_vae_params(model: TorchVae, params: dict) -> None:
  """Copies tripjax VAE parameters {"encoder": ..., "decoder": ...} into `model`.

  Flax kernels are (kh, kw, in, out); Conv2d weights (out, in, kh, kw) and
  ConvTranspose2d weights (in, out, kh, kw). The flattened encoder map is (H, W, C) in
  flax and (C, H, W) here; flax's VALID ConvTranspose (`project`) correlates with the
  kernel unflipped, PyTorch's with it flipped.
  """
  encoder, decoder = params["encoder"], params["decoder"]
  with torch.no_grad():
    for layer, conv in enumerate(model.encoder.convs):
      conv.weight.copy_(_tensor(np.transpose(encoder[f"conv{layer}"]["kernel"],
                                             (3, 2, 0, 1))))
    kernel = np.asarray(encoder["to_posterior"]["kernel"])
    width = model.encoder.convs[-1].out_channels
    side = int(round(math.sqrt(kernel.shape[0] / width)))
    kernel = kernel.reshape(side, side, width, -1).transpose(3, 2, 0, 1)
    model.encoder.to_posterior.weight.copy_(_tensor(kernel.reshape(kernel.shape[0], -1)))
    model.encoder.to_posterior.bias.copy_(_tensor(encoder["to_posterior"]["bias"]))
    model.decoder.from_latent.weight.copy_(_tensor(
        np.transpose(decoder["from_latent"]["kernel"])))
    model.decoder.from_latent.bias.copy_(_tensor(decoder["from_latent"]["bias"]))
    model.decoder.project.weight.copy_(_tensor(np.transpose(
        np.asarray(decoder["project"]["kernel"])[::-1, ::-1], (2, 3, 0, 1))))
    for layer, deconv in enumerate(model.decoder.deconvs):
      deconv.weight.copy_(_tensor(np.transpose(decoder[f"deconv{layer}"]["kernel"],
                                               (2, 3, 0, 1))))


GAN_KERNEL_SIZE = 5  # tripjax.models.gan.KERNEL_SIZE
GAN_PADDING = 2
GAN_LAYER_NORM_EPSILON = 1e-6  # flax.linen.LayerNorm's default


class TorchGenerator(nn.Module):
  """z (B, latent_dim) -> images (B, C, H, W) in [-1, 1].

  Linear(latent -> s * s * widths[0]), ReLU, as a (widths[0], s, s) map with s = H /
  2 ** len(widths); ConvTranspose2d(kernel 5, stride 2, padding 2, output padding 1)
  per further width and to C, ReLU between them, tanh at the end.
  """

  def __init__(self, image_shape: Sequence[int], latent_dim: int,
               widths: Sequence[int]):
    super().__init__()
    height, _, channels = image_shape
    self.start, self.first_width = height // 2 ** len(widths), widths[0]
    self.from_latent = nn.Linear(latent_dim, self.start ** 2 * widths[0])
    deconvs, in_width = [], widths[0]
    for width in tuple(widths[1:]) + (channels,):
      deconvs.append(nn.ConvTranspose2d(in_width, width, GAN_KERNEL_SIZE, stride=2,
                                        padding=GAN_PADDING, output_padding=1))
      in_width = width
    self.deconvs = nn.ModuleList(deconvs)

  def forward(self, z: torch.Tensor) -> torch.Tensor:
    x = nn.functional.relu(self.from_latent(z))
    x = x.view(z.shape[0], self.first_width, self.start, self.start)
    for layer, deconv in enumerate(self.deconvs):
      x = deconv(x)
      x = nn.functional.relu(x) if layer < len(self.deconvs) - 1 else torch.tanh(x)
    return x


class TorchCritic(nn.Module):
  """Images (B, C, H, W) in [-1, 1] -> scores (B,): WGAN-GP's layer-norm critic.

  Conv2d(kernel 5, stride 2, padding 2) per width, LeakyReLU 0.2 after each, a layer
  norm over (C, H, W) with a scale and bias per channel after every conv but the first;
  a final Conv2d over the whole last map to one score.
  """

  def __init__(self, image_shape: Sequence[int], widths: Sequence[int]):
    super().__init__()
    height, _, channels = image_shape
    convs, in_width = [], channels
    for width in widths:
      convs.append(nn.Conv2d(in_width, width, GAN_KERNEL_SIZE, stride=2,
                             padding=GAN_PADDING))
      in_width = width
    self.convs = nn.ModuleList(convs)
    self.norm_scales = nn.ParameterList(
        [nn.Parameter(torch.ones(width)) for width in widths[1:]])
    self.norm_biases = nn.ParameterList(
        [nn.Parameter(torch.zeros(width)) for width in widths[1:]])
    self.to_score = nn.Conv2d(in_width, 1, height // 2 ** len(widths))

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = images
    for layer, conv in enumerate(self.convs):
      x = conv(x)
      if layer > 0:
        x = nn.functional.layer_norm(x, x.shape[1:], eps=GAN_LAYER_NORM_EPSILON)
        x = (x * self.norm_scales[layer - 1][:, None, None]
             + self.norm_biases[layer - 1][:, None, None])
      x = nn.functional.leaky_relu(x, LEAKY_RELU_SLOPE)
    return self.to_score(x).flatten()


def gan_critic_loss(critic: TorchCritic, real: torch.Tensor, fake: torch.Tensor,
                    interpolates: torch.Tensor, penalty_weight: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
  """(E[D(fake)] - E[D(real)], weight * E[(||grad D(interpolates)|| - 1)^2])."""
  loss = critic(fake).mean() - critic(real).mean()
  return loss, gradient_penalty(critic, interpolates, penalty_weight)


def gradient_penalty(critic: TorchCritic, interpolates: torch.Tensor,
                     penalty_weight: float) -> torch.Tensor:
  """weight * E[(||grad D(interpolates)|| - 1)^2], differentiable in the critic."""
  interpolates = interpolates.detach().requires_grad_(True)
  grads, = torch.autograd.grad(critic(interpolates).sum(), interpolates,
                               create_graph=True)
  return penalty_weight * (grads.flatten(1).norm(dim=1) - 1).square().mean()


class TorchGanUpdates:
  """WGAN-GP updates of `TorchGenerator` and `TorchCritic` on fixed inputs, each with
  its own Adam (lr 1e-4, betas (0.5, 0.9)), as the trainer with a fixed prior."""

  def __init__(self, image_shape: Sequence[int], batch: int, latent_dim: int,
               widths: Sequence[int], penalty_weight: float = 10.0,
               learning_rate: float = 1e-4, seed: int = 0):
    torch.manual_seed(seed)
    self.generator = TorchGenerator(image_shape, latent_dim, widths)
    self.critic = TorchCritic(image_shape, tuple(reversed(widths)))
    adam = lambda module: torch.optim.Adam(module.parameters(), lr=learning_rate,
                                           betas=(0.5, 0.9))
    self.generator_optimizer, self.critic_optimizer = adam(self.generator), adam(
        self.critic)
    self.penalty_weight = penalty_weight
    height, width, channels = image_shape
    self.real = torch.rand(batch, channels, height, width) * 2 - 1
    self.z = torch.randn(batch, latent_dim)
    with torch.no_grad():
      self.fake = self.generator(self.z)
    epsilon = torch.rand(batch, 1, 1, 1)
    self.interpolates = epsilon * self.real + (1 - epsilon) * self.fake

  def critic_update(self) -> float:
    """One critic update (real, fake and interpolates given); its wall seconds."""
    start = time.perf_counter()
    self.critic_optimizer.zero_grad(set_to_none=True)
    loss, penalty = gan_critic_loss(self.critic, self.real, self.fake,
                                    self.interpolates, self.penalty_weight)
    (loss + penalty).backward()
    self.critic_optimizer.step()
    return time.perf_counter() - start

  def generator_update(self) -> float:
    """One generator update through the critic (z given); its wall seconds."""
    start = time.perf_counter()
    self.critic.requires_grad_(False)
    self.generator_optimizer.zero_grad(set_to_none=True)
    loss = -self.critic(self.generator(self.z)).mean()
    loss.backward()
    self.generator_optimizer.step()
    self.critic.requires_grad_(True)
    return time.perf_counter() - start


def _conv_weight(kernel) -> torch.Tensor:
  """A flax conv kernel (kh, kw, in, out) as a Conv2d weight (out, in, kh, kw)."""
  return _tensor(np.transpose(kernel, (3, 2, 0, 1)))


def load_tripjax_gan_params(generator: TorchGenerator, critic: TorchCritic,
                            params: dict) -> None:
  """Copies tripjax GAN parameters {"generator": ..., "critic": ...} (layer-norm
  critic) into the PyTorch modules.

  The generator's first map is (s, s, C) in flax and (C, s, s) here; a
  `DoublingConvTranspose` kernel[u, v, ci, co] is ConvTranspose2d's weight[ci, co, u, v].
  """
  flax_generator, flax_critic = params["generator"], params["critic"]
  side, width = generator.start, generator.first_width
  with torch.no_grad():
    kernel = np.asarray(flax_generator["from_latent"]["kernel"])
    generator.from_latent.weight.copy_(_tensor(
        kernel.reshape(-1, side, side, width).transpose(3, 1, 2, 0).reshape(
            side * side * width, -1)))
    generator.from_latent.bias.copy_(_tensor(np.asarray(
        flax_generator["from_latent"]["bias"]).reshape(side, side, width).transpose(
            2, 0, 1).reshape(-1)))
    for layer, deconv in enumerate(generator.deconvs):
      deconv.weight.copy_(_tensor(np.transpose(
          flax_generator[f"deconv{layer}"]["kernel"], (2, 3, 0, 1))))
      deconv.bias.copy_(_tensor(flax_generator[f"deconv{layer}"]["bias"]))
    for layer, conv in enumerate(critic.convs):
      conv.weight.copy_(_conv_weight(flax_critic[f"conv{layer}"]["kernel"]))
      conv.bias.copy_(_tensor(flax_critic[f"conv{layer}"]["bias"]))
      if layer > 0:
        norm = flax_critic[f"norm{layer}"]["LayerNorm_0"]
        critic.norm_scales[layer - 1].copy_(_tensor(norm["scale"]))
        critic.norm_biases[layer - 1].copy_(_tensor(norm["bias"]))
    critic.to_score.weight.copy_(_conv_weight(flax_critic["to_score"]["kernel"]))
    critic.to_score.bias.copy_(_tensor(flax_critic["to_score"]["bias"]))
