"""Layers shared by the VAE decoder and the GAN generator.

`DoublingConvTranspose` is a stride-2 transposed convolution that doubles H and W,
computed as four stride-1 convolutions, one per output parity. XLA:CPU takes seconds for
the kernel gradient of a strided transposed convolution at the paper's sizes (22 s per
VAE step at 64 px, batch 128); plain convolutions take milliseconds.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def _parity_taps(kernel_size: int, padding: int, parity: int
                 ) -> tuple[tuple[int, ...], tuple[int, int]]:
  """Kernel taps and input padding that produce the outputs 2i + parity along one axis.

  A stride-2 transposed convolution (PyTorch semantics) is
  y[o] = Σ_u x[(o + p - u) / 2] K[u] over the taps u with o + p - u even. At o = 2i + a
  these are the u ≡ a + p (mod 2), reading input i + (a + p - u) / 2: a stride-1
  correlation of x with those taps in reverse order, over the input window
  [i + d_min, i + d_max].

  Returns:
    The taps in window order, and the (low, high) padding = (-d_min, d_max).
  """
  taps = tuple(u for u in reversed(range(kernel_size)) if (u - parity - padding) % 2 == 0)
  offsets = [(parity + padding - u) // 2 for u in taps]
  return taps, (-offsets[0], offsets[-1])


def conv_transpose_doubling(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """PyTorch's ConvTranspose2d(k, stride=2, padding, output_padding) without bias.

  Only for the settings that double H and W exactly, k + output_padding - 2 * padding
  = 2, e.g. (k, padding, output_padding) = (4, 1, 0) or (5, 2, 1).

  Args:
    x: (B, H, W, C_in).
    kernel: (k, k, C_in, C_out); kernel[u, v, ci, co] is PyTorch's weight[ci, co, u, v].
    padding: PyTorch's `padding`.

  Returns:
    (B, 2H, 2W, C_out).
  """
  batch, height, width, _ = x.shape
  kernel_size, features = kernel.shape[0], kernel.shape[-1]
  rows = []
  for a in (0, 1):
    taps_a, pads_a = _parity_taps(kernel_size, padding, a)
    columns = []
    for b in (0, 1):
      taps_b, pads_b = _parity_taps(kernel_size, padding, b)
      sub_kernel = kernel[jnp.array(taps_a)][:, jnp.array(taps_b)]
      columns.append(jax.lax.conv_general_dilated(
          x, sub_kernel, (1, 1), (pads_a, pads_b),
          dimension_numbers=("NHWC", "HWIO", "NHWC")))
    rows.append(jnp.stack(columns, axis=3))                      # (B, H, W, 2, F)
  y = jnp.stack(rows, axis=2)                                     # (B, H, 2, W, 2, F)
  return y.reshape(batch, 2 * height, 2 * width, features)


def check_doubling(kernel_size: int, padding: int, output_padding: int) -> None:
  """Raises unless ConvTranspose2d(kernel_size, 2, padding, output_padding) doubles H."""
  if kernel_size + output_padding - 2 * padding != 2 or not 0 <= padding < kernel_size:
    raise ValueError(
        f"A stride-2 transposed conv with kernel_size={kernel_size}, padding={padding}, "
        f"output_padding={output_padding} does not double H and W; need kernel_size + "
        "output_padding - 2 * padding == 2, e.g. (4, 1, 0) or (5, 2, 1).")


class DoublingConvTranspose(nn.Module):
  """PyTorch's `ConvTranspose2d(kernel_size, stride=2, padding, output_padding)`.

  Maps (B, H, W, C_in) to (B, 2H, 2W, features). With `parity=True` (default) it runs
  as four stride-1 convolutions, one per output parity, then interleaved (see
  `conv_transpose_doubling`); with `parity=False` as one `jax.lax.conv_transpose` (the
  plain definition, the same function and parameters; faster where the backend has a
  good strided transposed convolution). Parameters: kernel (k, k, C_in, features), bias.

  Attributes:
    features: output channels.
    kernel_size: k.
    padding: PyTorch's `padding`; k + output_padding - 2 * padding must be 2.
    output_padding: PyTorch's `output_padding`.
    use_bias: add a bias per output channel.
    parity: compute by the parity decomposition (True) or by lax.conv_transpose.
  """
  features: int
  kernel_size: int = 4
  padding: int = 1
  output_padding: int = 0
  use_bias: bool = True
  parity: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    check_doubling(self.kernel_size, self.padding, self.output_padding)
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), x.dtype)
    if self.parity:
      y = conv_transpose_doubling(x, kernel, self.padding)
    else:
      # The input dilated by 2, padded by k - 1 - p (plus output_padding at the end),
      # correlated with the flipped kernel: PyTorch's definition.
      low = k - 1 - self.padding
      y = jax.lax.conv_transpose(
          x, kernel[::-1, ::-1], (2, 2),
          ((low, low + self.output_padding),) * 2,
          dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), x.dtype)
    return y
