"""DCGAN-like convolutional encoder and decoder of the TRIP VAE experiments.

The paper's CelebA model (TRIP authors' `core/networks/vae_encdec.py`, 64x64x3,
latent 100, about 11.4 M parameters) is `paper_encoder_decoder()`:

  Encoder: 4 convs (kernel 4, stride 2, no bias) 3 -> 64 -> 128 -> 256 -> 512,
    LeakyReLU 0.2 after each, 64 -> 32 -> 16 -> 8 -> 4 pixels; flatten 4*4*512;
    Dense -> 2 * latent (mean, log-scale of q(z|x)).
  Decoder: Dense latent -> 512, LeakyReLU; as a 1x1x512 map, transposed conv
    (kernel 4, stride 1, VALID) 512 -> 512 to 4x4, LeakyReLU; 4 transposed convs
    (kernel 4, stride 2, no bias) 512 -> 256 -> 128 -> 64 -> output channels,
    LeakyReLU 0.2 between them, 4 -> 8 -> 16 -> 32 -> 64 pixels.

`ConditionalDecoder` wraps the decoder for the baselines of the conditional
experiments: its input is [z, one-hot attributes with an "unknown" slot].
`ConditionalEncoder` gives the textbook CVAE's encoder q(z | x, y) the same code.

The last decoder layer is linear: it outputs the parameters of p(x|z) (see
`tripjax.likelihoods`), where the authors' code applied tanh to a squared-error mean.
The same modules serve 28 px (e.g. widths (32, 64): 28 -> 14 -> 7) and 32 px
(widths (64, 128, 256): 32 -> 16 -> 8 -> 4) images. The decoder needs the image
side divisible by 2 ** len(widths).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tripjax.models import layers

NORMS = ("none", "group", "batch")
LEAKY_RELU_SLOPE = 0.2

# Encoder widths by image side; the decoder mirrors them.
DEFAULT_WIDTHS = {28: (32, 64), 32: (64, 128, 256), 64: (64, 128, 256, 512)}
PAPER_WIDTHS = (64, 128, 256, 512)
PAPER_LATENT_DIM = 100


def default_widths(image_size: int) -> tuple[int, ...]:
  """Encoder conv widths for a square image side of 28, 32 or 64 pixels."""
  if image_size not in DEFAULT_WIDTHS:
    raise ValueError(f"No default widths for {image_size} px images; "
                     f"known sizes: {sorted(DEFAULT_WIDTHS)}. Pass widths=...")
  return DEFAULT_WIDTHS[image_size]


def _check_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r}; valid: {', '.join(NORMS)}.")


def _leaky_relu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, negative_slope=LEAKY_RELU_SLOPE)


def _group_count(channels: int, max_groups: int = 32) -> int:
  """Largest divisor of `channels` not above `max_groups`."""
  return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


class _Norm(nn.Module):
  """Identity, GroupNorm or BatchNorm over the channels (last axis)."""
  norm: str = "none"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if self.norm == "none":
      return x
    if self.norm == "group":
      return nn.GroupNorm(num_groups=_group_count(x.shape[-1]))(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)


class Encoder(nn.Module):
  """q(z|x): images (B, H, W, C) -> (mean, log_scale), each (B, latent_dim).

  `log_scale` is the log standard deviation of the diagonal Gaussian q(z|x).

  Attributes:
    latent_dim: size of z.
    widths: output channels of the stride-2 convs, one per halving of H and W.
    kernel_size: conv kernel side.
    norm: "none", "group" or "batch", after every conv but the first (DCGAN).
    use_bias: conv biases (the paper's model has none).
  """
  latent_dim: int
  widths: Sequence[int] = PAPER_WIDTHS
  kernel_size: int = 4
  norm: str = "none"
  use_bias: bool = True

  @nn.compact
  def __call__(self, images: jax.Array, condition: jax.Array | None = None, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """images (B, H, W, C); condition: optional (B, k) features that the last layer
    also reads (the textbook CVAE's q(z|x, y), `ConditionalEncoder`)."""
    _check_norm(self.norm)
    if images.ndim != 4:
      raise ValueError(f"Encoder expects (B, H, W, C) images, got {images.shape}.")
    x = images
    for layer, width in enumerate(self.widths):
      x = layers.HalvingConv(width, self.kernel_size, "SAME", use_bias=self.use_bias,
                             name=f"conv{layer}")(x)
      if layer > 0:
        x = _Norm(self.norm, name=f"norm{layer}")(x, train=train)
      x = _leaky_relu(x)
    x = x.reshape(x.shape[0], -1)
    if condition is not None:
      x = jnp.concatenate([x, condition.astype(x.dtype)], axis=-1)
    x = nn.Dense(2 * self.latent_dim, name="to_posterior")(x)
    mean, log_scale = jnp.split(x, 2, axis=-1)
    return mean, log_scale


# PyTorch's ConvTranspose2d(kernel_size=4, stride=2, padding=1), the paper's decoder layer,
# computed as four 2×2 convolutions, one per output parity (see tripjax.models.layers).
# Parameters: kernel (4, 4, C_in, features), bias.
UpConv = layers.DoublingConvTranspose


class Decoder(nn.Module):
  """p(x|z) parameters: z (B, latent_dim) -> (B, H, W, C * params_per_channel).

  The output is raw (unbounded): Bernoulli logits (params_per_channel=1), or the
  discretized logistic's location in channels [0, C) and log-scale in [C, 2C)
  (params_per_channel=2); see `tripjax.likelihoods.log_likelihood`.

  Attributes:
    image_shape: (H, W, C) of the images; H and W divisible by 2 ** len(widths).
    widths: the encoder's widths; the decoder uses them in reverse.
    params_per_channel: likelihood parameters per image channel.
    kernel_size: transposed-conv kernel side.
    norm: "none", "group" or "batch", after every layer but the output one.
    use_bias: transposed-conv biases (the paper's model has none).
  """
  image_shape: Sequence[int]
  widths: Sequence[int] = PAPER_WIDTHS
  params_per_channel: int = 1
  kernel_size: int = 4
  norm: str = "none"
  use_bias: bool = True

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool = False) -> jax.Array:
    _check_norm(self.norm)
    height, width, channels = self.image_shape
    factor = 2 ** len(self.widths)
    if height % factor or width % factor:
      raise ValueError(f"Decoder: image {tuple(self.image_shape)} is not divisible by "
                       f"2 ** len(widths) = {factor}; change widths.")
    if z.ndim != 2:
      raise ValueError(f"Decoder expects z of shape (B, latent_dim), got {z.shape}.")
    reversed_widths = tuple(reversed(self.widths))
    x = nn.Dense(reversed_widths[0], name="from_latent")(z)
    x = _leaky_relu(x)
    # A 1x1 map, grown to the start size (H / factor, W / factor) by one VALID
    # transposed conv, as in the paper's code.
    x = x.reshape(x.shape[0], 1, 1, x.shape[-1])
    x = layers.PointConvTranspose(reversed_widths[0],
                                  (height // factor, width // factor),
                                  use_bias=self.use_bias, name="project")(x)
    x = _Norm(self.norm, name="norm_project")(x, train=train)
    x = _leaky_relu(x)
    output_widths = reversed_widths[1:] + (channels * self.params_per_channel,)
    for layer, out_width in enumerate(output_widths):
      if self.kernel_size == 4:
        x = UpConv(out_width, use_bias=self.use_bias, name=f"deconv{layer}")(x)
      else:
        x = nn.ConvTranspose(out_width, (self.kernel_size, self.kernel_size),
                             strides=(2, 2), padding="SAME", use_bias=self.use_bias,
                             name=f"deconv{layer}")(x)
      if layer < len(output_widths) - 1:
        x = _Norm(self.norm, name=f"norm{layer}")(x, train=train)
        x = _leaky_relu(x)
    return x


def encoder_decoder(image_shape: Sequence[int], latent_dim: int, *,
                    widths: Sequence[int] | None = None, params_per_channel: int = 1,
                    norm: str = "none", use_bias: bool = True,
                    kernel_size: int = 4) -> tuple[Encoder, Decoder]:
  """A mirrored (Encoder, Decoder) pair; widths default to `default_widths(H)`."""
  _check_norm(norm)
  if widths is None:
    widths = default_widths(image_shape[0])
  widths = tuple(int(w) for w in widths)
  encoder = Encoder(latent_dim=latent_dim, widths=widths, kernel_size=kernel_size,
                    norm=norm, use_bias=use_bias)
  decoder = Decoder(image_shape=tuple(image_shape), widths=widths,
                    params_per_channel=params_per_channel, kernel_size=kernel_size,
                    norm=norm, use_bias=use_bias)
  return encoder, decoder


def paper_encoder_decoder(latent_dim: int = PAPER_LATENT_DIM, *,
                          params_per_channel: int = 1) -> tuple[Encoder, Decoder]:
  """The paper's 64x64x3 CelebA architecture (~11.4 M parameters at latent 100)."""
  return encoder_decoder((64, 64, 3), latent_dim, widths=PAPER_WIDTHS,
                         params_per_channel=params_per_channel, norm="none",
                         use_bias=False, kernel_size=4)


def attribute_one_hot(attributes: jax.Array, num_values: Sequence[int]) -> jax.Array:
  """Each attribute as a one-hot of num_values + 1 slots, the last one "unknown".

  Args:
    attributes: (..., a) float value indices, NaN for missing (unknown) attributes.
    num_values: (a,) values of each attribute.

  Returns:
    (..., sum_j (num_values[j] + 1)) float32 codes. A NaN sets attribute j's last slot;
    a value that is not an integer in range sets none.
  """
  if attributes.shape[-1] != len(num_values):
    raise ValueError(f"attributes must have shape (..., {len(num_values)}), got "
                     f"{attributes.shape}.")
  codes = []
  for j, count in enumerate(num_values):
    value = attributes[..., j]
    valid = (value == jnp.floor(value)) & (value >= 0) & (value < count)
    index = jnp.where(jnp.isnan(value), count, jnp.where(valid, value, -1))
    codes.append(jax.nn.one_hot(index.astype(jnp.int32), count + 1))
  return jnp.concatenate(codes, axis=-1)


class ConditionalDecoder(nn.Module):
  """The baseline CVAEs' decoder: p(x | z, y) = decoder([z, one_hot(y)]).

  Each attribute enters as a one-hot with an extra "unknown" slot for a missing value
  (`attribute_one_hot`); the decoder's first dense layer maps that slot to a learned
  vector, the "unknown" value. Parameters: {"decoder": the wrapped Decoder's}.

  Attributes:
    decoder: the `Decoder` that maps the concatenated input to p(x|z, y) parameters.
    num_values: (a,) values of each attribute.
  """
  decoder: Decoder
  num_values: Sequence[int]

  @nn.compact
  def __call__(self, z: jax.Array, attributes: jax.Array, *,
               train: bool = False) -> jax.Array:
    """z (B, latent_dim), attributes (B, a) float, NaN = unknown -> (B, H, W, P*C)."""
    code = attribute_one_hot(attributes, tuple(self.num_values)).astype(z.dtype)
    return self.decoder(jnp.concatenate([z, code], axis=-1), train=train)


class ConditionalEncoder(nn.Module):
  """The textbook CVAE's encoder: q(z | x, y) = encoder(x) with one_hot(y) read by its
  last (dense) layer.

  Each attribute enters as a one-hot with an extra "unknown" slot for a missing value
  (`attribute_one_hot`), so a missing attribute is a learned vector of that layer, as
  in `ConditionalDecoder`. Parameters: {"encoder": the wrapped Encoder's}.

  Attributes:
    encoder: the `Encoder` of the images.
    num_values: (a,) values of each attribute.
  """
  encoder: Encoder
  num_values: Sequence[int]

  @nn.compact
  def __call__(self, images: jax.Array, attributes: jax.Array, *,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """images (B, H, W, C), attributes (B, a) float, NaN = unknown -> (mean,
    log_scale), each (B, latent_dim)."""
    code = attribute_one_hot(attributes, tuple(self.num_values))
    return self.encoder(images, code, train=train)


def count_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
