"""DCGAN-like generator and critic of the GAN-TRIP experiments (28, 32 and 64 px).

The paper's 64x64x3 CelebA model (the TRIP authors' public scripts; latent 128) is
`paper_generator_critic()`:

  Generator: Dense latent -> 4*4*512, ReLU; as a 4x4x512 map, 4 transposed convs
    (kernel 5, stride 2, padding 2, output padding 1: PyTorch semantics, doubling H and
    W) 512 -> 256 -> 128 -> 64 -> 3, ReLU between them, tanh at the end;
    4 -> 8 -> 16 -> 32 -> 64 pixels. 5,362,819 parameters.
  Critic: 4 convs (kernel 5, stride 2, padding 2) 3 -> 64 -> 128 -> 256 -> 512,
    64 -> 32 -> 16 -> 8 -> 4 pixels, LeakyReLU 0.2 after each and a norm after every
    conv but the first (layer norm for WGAN-GP, batch norm for WGAN); a final 4x4 VALID
    conv to one score. 4,314,753 parameters, plus 1,792 norm scales and biases with
    layer or batch norm (4,316,545).

Image range: the generator's tanh puts images in [-1, 1], and the critic expects the
same range; `tripjax.data` gives images in [0, 1], so a trainer feeds the critic
`to_model_range(images)` and shows `to_image_range(generator(z))`.

Smaller images use fewer layers with the same recipe: 32 px starts at 4x4x512 and has
three upsamplings (512 -> 256 -> 128 -> C, as the WGAN-GP CIFAR-10 model), 28 px starts
at 7x7x256 and has two (256 -> 128 -> C, 7 -> 14 -> 28). The critic mirrors the
generator, and its final conv spans the whole last map (4x4, or 7x7 at 28 px), so it is
a linear layer on the flattened features.

For the 2-D point sets of the GAN mode tests, `mlp_generator_critic` gives an MLP
generator (linear output) and critic, by default PacGAN's 4x400 and 3x200 ReLU layers.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tripjax.models import layers

CRITIC_NORMS = ("layer", "batch", "none", "layer_per_pixel")
LEAKY_RELU_SLOPE = 0.2
KERNEL_SIZE = 5
PADDING = 2          # of the convs and transposed convs
OUTPUT_PADDING = 1   # of the transposed convs: output side = 2 * input side

# Generator widths (channels of the maps before each upsampling) by image side; the
# critic uses them in reverse. The first map is image side / 2 ** len(widths).
DEFAULT_WIDTHS = {28: (256, 128), 32: (512, 256, 128), 64: (512, 256, 128, 64)}
PAPER_WIDTHS = (512, 256, 128, 64)
PAPER_LATENT_DIM = 128


def default_widths(image_size: int) -> tuple[int, ...]:
  """Generator widths for a square image side of 28, 32 or 64 pixels."""
  if image_size not in DEFAULT_WIDTHS:
    raise ValueError(f"No default GAN widths for {image_size} px images; "
                     f"known sizes: {sorted(DEFAULT_WIDTHS)}. Pass widths=...")
  return DEFAULT_WIDTHS[image_size]


def to_model_range(images: jax.Array) -> jax.Array:
  """Images in [0, 1] (tripjax.data) -> [-1, 1] (generator output, critic input)."""
  return 2.0 * images - 1.0


def to_image_range(images: jax.Array) -> jax.Array:
  """Generator output in [-1, 1] -> images in [0, 1]."""
  return 0.5 * (images + 1.0)


def _check_image_shape(image_shape: Sequence[int], widths: Sequence[int],
                       module: str) -> tuple[int, int, int]:
  if len(image_shape) != 3:
    raise ValueError(f"{module}: image_shape must be (H, W, C), "
                     f"got {tuple(image_shape)}.")
  height, width, channels = image_shape
  factor = 2 ** len(widths)
  if height % factor or width % factor:
    raise ValueError(f"{module}: image {tuple(image_shape)} is not divisible by "
                     f"2 ** len(widths) = {factor}; change widths.")
  return height // factor, width // factor, channels


def _check_norm(norm: str) -> None:
  if norm not in CRITIC_NORMS:
    raise ValueError(f"Unknown critic norm {norm!r}; valid: {', '.join(CRITIC_NORMS)}.")


class Generator(nn.Module):
  """x = G(z): latents (B, latent_dim) -> images (B, H, W, C) in [-1, 1].

  Attributes:
    image_shape: (H, W, C); H and W divisible by 2 ** len(widths).
    widths: channels of the maps before each upsampling, the first at
      (H, W) / 2 ** len(widths).
    parity_upsampling: compute the transposed convs as parity convolutions (fast on
      XLA:CPU) or as `lax.conv_transpose`; the same function and parameters.
  """
  image_shape: Sequence[int]
  widths: Sequence[int] = PAPER_WIDTHS
  parity_upsampling: bool = True

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    start_height, start_width, channels = _check_image_shape(
        self.image_shape, self.widths, "Generator")
    if z.ndim != 2:
      raise ValueError(f"Generator expects z of shape (B, latent_dim), got {z.shape}.")
    x = nn.Dense(start_height * start_width * self.widths[0], name="from_latent")(z)
    x = nn.relu(x)
    x = x.reshape(z.shape[0], start_height, start_width, self.widths[0])
    output_widths = tuple(self.widths[1:]) + (channels,)
    for layer, out_width in enumerate(output_widths):
      x = layers.DoublingConvTranspose(
          out_width, KERNEL_SIZE, PADDING, OUTPUT_PADDING,
          parity=self.parity_upsampling, name=f"deconv{layer}")(x)
      x = nn.relu(x) if layer < len(output_widths) - 1 else jnp.tanh(x)
    return x


class _Norm(nn.Module):
  """Identity, per-example LayerNorm over (H, W, C) ("layer"), LayerNorm over the
  channels of each pixel ("layer_per_pixel", the TRIP authors' critic), or BatchNorm
  over the channels."""
  norm: str = "layer"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.norm == "none":
      return x
    if self.norm == "layer":
      # WGAN-GP's layer norm: statistics per example over the whole map, so the
      # gradient penalty's per-example gradients stay per example; scale and bias per
      # channel.
      return nn.LayerNorm(reduction_axes=(-3, -2, -1), feature_axes=-1)(x)
    if self.norm == "layer_per_pixel":
      # Statistics of each pixel over its channels (still per example); the same
      # per-channel scale and bias.
      return nn.LayerNorm(reduction_axes=-1, feature_axes=-1)(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)


class Critic(nn.Module):
  """D(x): images (B, H, W, C) in [-1, 1] -> scores (B,).

  With norm="batch" the module keeps running statistics in the `batch_stats`
  collection: call with train=True and mutable=["batch_stats"] while training. With
  "layer" or "none" every score depends on its own example only (required by the
  gradient penalty).

  Attributes:
    widths: output channels of the stride-2 convs (the generator's, reversed).
    norm: "layer" (WGAN-GP), "layer_per_pixel" (the TRIP authors' WGAN-GP critic),
      "batch" (WGAN) or "none", after every conv but the first.
  """
  widths: Sequence[int] = tuple(reversed(PAPER_WIDTHS))
  norm: str = "layer"

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
    _check_norm(self.norm)
    if images.ndim != 4:
      raise ValueError(f"Critic expects (B, H, W, C) images, got {images.shape}.")
    _check_image_shape(images.shape[1:], self.widths, "Critic")
    x = images
    for layer, width in enumerate(self.widths):
      x = layers.HalvingConv(width, KERNEL_SIZE, PADDING, name=f"conv{layer}")(x)
      if layer > 0:
        x = _Norm(self.norm, name=f"norm{layer}")(x, train=train)
      x = nn.leaky_relu(x, negative_slope=LEAKY_RELU_SLOPE)
    # One conv over the whole last map (4x4 at 32 and 64 px): a linear score.
    x = nn.Conv(1, x.shape[1:3], padding="VALID", name="to_score")(x)
    return x.reshape(x.shape[0])


def generator_critic(image_shape: Sequence[int], *, widths: Sequence[int] | None = None,
                     critic_widths: Sequence[int] | None = None,
                     critic_norm: str = "layer",
                     parity_upsampling: bool = True) -> tuple[Generator, Critic]:
  """A (Generator, Critic) pair; widths default to `default_widths(H)`, the critic's
  to the generator's reversed."""
  _check_norm(critic_norm)
  if widths is None:
    widths = default_widths(image_shape[0])
  widths = tuple(int(w) for w in widths)
  generator = Generator(image_shape=tuple(image_shape), widths=widths,
                        parity_upsampling=parity_upsampling)
  critic = Critic(widths=tuple(reversed(widths)) if critic_widths is None
                  else tuple(int(w) for w in critic_widths), norm=critic_norm)
  return generator, critic


def paper_generator_critic(critic_norm: str = "layer") -> tuple[Generator, Critic]:
  """The paper's 64x64x3 CelebA GAN (latent `PAPER_LATENT_DIM` = 128).

  critic_norm: "layer" for WGAN-GP, "batch" for WGAN (weight clipping).
  """
  return generator_critic((64, 64, 3), widths=PAPER_WIDTHS, critic_norm=critic_norm)


# ------------------------------------------------------------------ MLPs for 2-D points

# PacGAN's (and VEEGAN's) networks for the 2-D mixtures: 4 hidden layers of 400 units in
# the generator, 3 of 200 in the critic, ReLU.
PACGAN_GENERATOR_WIDTHS = (400, 400, 400, 400)
PACGAN_CRITIC_WIDTHS = (200, 200, 200)


class MLPGenerator(nn.Module):
  """x = G(z) for point data: latents (B, latent_dim) -> points (B, output_dim).

  Dense layers of `widths` units with ReLU, then a linear layer to the output (points
  are unbounded, so no tanh).

  Attributes:
    output_dim: size of a point (2 for the mixtures).
    widths: hidden layer sizes.
  """
  output_dim: int = 2
  widths: Sequence[int] = PACGAN_GENERATOR_WIDTHS

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    if z.ndim != 2:
      raise ValueError(f"MLPGenerator expects z of shape (B, latent_dim), got {z.shape}.")
    x = z
    for layer, width in enumerate(self.widths):
      x = nn.relu(nn.Dense(width, name=f"hidden{layer}")(x))
    return nn.Dense(self.output_dim, name="to_point")(x)


class MLPCritic(nn.Module):
  """D(x) for point data: points (B, D) -> scores (B,).

  Dense layers of `widths` units with ReLU, each but the first followed by `norm`
  (as the conv critic), then a linear score.

  Attributes:
    widths: hidden layer sizes.
    norm: "none", "layer" or "layer_per_pixel" (the same here: per example over the
      features) or "batch" (running
      statistics in `batch_stats`, as `Critic`).
  """
  widths: Sequence[int] = PACGAN_CRITIC_WIDTHS
  norm: str = "none"

  @nn.compact
  def __call__(self, points: jax.Array, *, train: bool = False) -> jax.Array:
    _check_norm(self.norm)
    if points.ndim != 2:
      raise ValueError(f"MLPCritic expects (B, D) points, got {points.shape}.")
    x = points
    for layer, width in enumerate(self.widths):
      x = nn.Dense(width, name=f"hidden{layer}")(x)
      if layer > 0 and self.norm in ("layer", "layer_per_pixel"):  # one "pixel"
        x = nn.LayerNorm(name=f"norm{layer}")(x)
      elif layer > 0 and self.norm == "batch":
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         name=f"norm{layer}")(x)
      x = nn.relu(x)
    return nn.Dense(1, name="to_score")(x).reshape(points.shape[0])


def mlp_generator_critic(point_dim: int, *,
                         generator_widths: Sequence[int] = PACGAN_GENERATOR_WIDTHS,
                         critic_widths: Sequence[int] = PACGAN_CRITIC_WIDTHS,
                         critic_norm: str = "none") -> tuple[MLPGenerator, MLPCritic]:
  """An (MLPGenerator, MLPCritic) pair for points of size `point_dim`."""
  _check_norm(critic_norm)
  return (MLPGenerator(output_dim=point_dim,
                       widths=tuple(int(w) for w in generator_widths)),
          MLPCritic(widths=tuple(int(w) for w in critic_widths), norm=critic_norm))
