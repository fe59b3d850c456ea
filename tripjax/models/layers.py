"""Stride-2 convolutions that halve H and W, and transposed ones that double them.

Shared by the VAE encoder and decoder and the GAN critic and generator, and written for
XLA:CPU, whose plain formulation is slow in the backward pass (the paper's 64 px VAE
step took 22 s with `lax.conv_transpose`; XLA's input gradient of a stride-2
convolution is an input-dilated convolution, 3.8 s against 82 ms for the critic's
8x8x256 -> 4x4x512 layer at batch 64):

* `conv_transpose_doubling` (PyTorch's ConvTranspose2d with stride 2) runs as four
  stride-1 convolutions, one per output parity;
* `conv_halving` (Conv2d with stride 2) runs as one `lax.conv_general_dilated`;
* each is the other's input gradient (they are adjoint), and both kernel gradients are
  `kernel_gradient`. Its formulation follows the library that runs XLA:CPU's
  convolutions (`tripjax.xla_cpu`): with Eigen's (what the CLIs and benchmarks set),
  XLA's own kernel gradient of the strided convolution, 2-3x faster than the
  alternative on the GAN's layers at batch 64; with YNNPACK's (XLA's default),
  `patch_gram`, matrix products over 2x2 blocks of pixels (space to depth), up to 5x
  faster there than XLA's;
* second derivatives (the WGAN-GP penalty's gradient) use the same rules: the forward
  rules return the custom functions' own outputs, so XLA never transposes a strided
  convolution w.r.t. its input (without this the critic's penalty gradient at 64 px
  took 2.3x as long);
* `PointConvTranspose`, the VALID transposed conv that grows a 1x1 map to h x w (the
  decoder's first layer), is a batched matrix product per output pixel; as a
  convolution, XLA:CPU flipped and transposed its 4x4x512x512 kernel every step and
  took 6x the CPU time for its forward and backward (230 vs 38 ms at batch 64).

All are exactly the plain definitions (tests/test_models.py compares values and first
and second derivatives with `flax.linen.Conv` and `lax.conv_transpose`, with either
kernel gradient).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from tripjax import xla_cpu


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


def _parity_convolutions(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """`conv_transpose_doubling`'s value: four stride-1 convolutions, interleaved."""
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


def _strided_convolution(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """`conv_halving`'s value: one stride-2 `lax.conv_general_dilated`."""
  high = kernel.shape[0] - 2 - padding  # so that the output is exactly (H/2, W/2)
  return jax.lax.conv_general_dilated(x, kernel, (2, 2), ((padding, high),) * 2,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _space_to_depth(x: jax.Array) -> jax.Array:
  """(B, 2H, 2W, C) -> (B, H, W, 2, 2, C): each 2x2 block of pixels as one pixel."""
  batch, height, width, channels = x.shape
  blocks = x.reshape(batch, height // 2, 2, width // 2, 2, channels)
  return blocks.transpose(0, 1, 3, 2, 4, 5)


def patch_gram(big: jax.Array, small: jax.Array, kernel_size: int,
               padding: int) -> jax.Array:
  """G[u, v] = sum over b, i, j of big_pad[b, 2i + u, 2j + v]^T small[b, i, j].

  big_pad is `big` after `padding` zero rows and columns (and enough at the end). This
  is the kernel gradient of `conv_halving` (big = its input, small = its output's
  gradient) and, with the last two axes swapped, of `conv_transpose_doubling` (big =
  its output's gradient, small = its input). Computed without convolutions: big_pad is
  cut into 2x2 pixel blocks (space to depth) and taps u = 2U + p are grouped by their
  block offset U, one matrix product small^T (C_small, N) @ blocks (N, 4 C_big) per
  (U, V), N = B H W.

  Args:
    big: (B, 2H, 2W, C_big).
    small: (B, H, W, C_small).
    kernel_size: k, taps u, v in [0, k).
    padding: p, big_pad[m] = big[m - p].

  Returns:
    (k, k, C_big, C_small).
  """
  batch, height, width, small_channels = small.shape
  big_channels = big.shape[-1]
  offsets = -(-kernel_size // 2)                 # block offsets U: taps 2U, 2U + 1 < 2 * offsets
  padded_height, padded_width = 2 * (height + offsets - 1), 2 * (width + offsets - 1)
  big = jax.lax.pad(big, jnp.zeros((), big.dtype), (
      (0, 0, 0), (padding, padded_height - big.shape[1] - padding, 0),
      (padding, padded_width - big.shape[2] - padding, 0), (0, 0, 0)))
  blocks = _space_to_depth(big)                  # (B, H + U - 1, W + U - 1, 2, 2, C_big)
  small_t = small.reshape(batch * height * width, small_channels).T    # (C_small, N)
  grams = jnp.stack([
      jnp.stack([small_t @ blocks[:, u:u + height, v:v + width].reshape(
          -1, 4 * big_channels) for v in range(offsets)])
      for u in range(offsets)])                  # (U, V, C_small, 4 C_big)
  grams = grams.reshape(offsets, offsets, small_channels, 2, 2, big_channels)
  grams = grams.transpose(0, 3, 1, 4, 5, 2)     # (U, p, V, q, C_big, C_small)
  grams = grams.reshape(2 * offsets, 2 * offsets, big_channels, small_channels)
  return grams[:kernel_size, :kernel_size]


def _convolution_kernel_gradient(big: jax.Array, small: jax.Array, kernel_size: int,
                                 padding: int) -> jax.Array:
  """`patch_gram` as XLA's transpose of the linear map kernel -> `_strided_convolution(
  big, kernel)`, applied to `small`: one convolution of big with small."""
  kernel = jax.ShapeDtypeStruct(
      (kernel_size, kernel_size, big.shape[-1], small.shape[-1]), big.dtype)
  transpose = jax.linear_transpose(
      lambda kernel: _strided_convolution(big, kernel, padding), kernel)
  return transpose(small)[0]


def kernel_gradient_by_convolution() -> bool:
  """Whether `kernel_gradient` asks XLA for the kernel gradient (XLA:CPU with Eigen's
  convolutions, `tripjax.xla_cpu`) rather than `patch_gram` (elsewhere)."""
  return jax.default_backend() == "cpu" and not xla_cpu.ynnpack_runs_convolutions()


def kernel_gradient(big: jax.Array, small: jax.Array, kernel_size: int,
                    padding: int) -> jax.Array:
  """`patch_gram(big, small, kernel_size, padding)`, by whichever formulation is
  faster on this backend (`kernel_gradient_by_convolution`); the same shapes."""
  if kernel_gradient_by_convolution():
    return _convolution_kernel_gradient(big, small, kernel_size, padding)
  return patch_gram(big, small, kernel_size, padding)


def _swap_channels(kernel: jax.Array) -> jax.Array:
  return jnp.swapaxes(kernel, 2, 3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose_doubling(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """PyTorch's ConvTranspose2d(k, stride=2, padding, output_padding) without bias.

  Only for the settings that double H and W exactly, k + output_padding - 2 * padding
  = 2, e.g. (k, padding, output_padding) = (4, 1, 0) or (5, 2, 1):
  y[o] = sum over taps u with o + p - u even of x[(o + p - u) / 2] kernel[u], per axis.
  Its gradients: w.r.t. x, `conv_halving` of the output gradient (the adjoint); w.r.t.
  the kernel, `kernel_gradient`.

  Args:
    x: (B, H, W, C_in).
    kernel: (k, k, C_in, C_out); kernel[u, v, ci, co] is PyTorch's weight[ci, co, u, v].
    padding: PyTorch's `padding`.

  Returns:
    (B, 2H, 2W, C_out).
  """
  return _parity_convolutions(x, kernel, padding)


def _conv_transpose_doubling_fwd(x, kernel, padding):
  # The output through the custom_vjp function itself, not its body: under a second
  # differentiation (WGAN-GP's penalty) JAX differentiates this rule, and would
  # otherwise transpose the plain convolutions with XLA's slow rules.
  return conv_transpose_doubling(x, kernel, padding), (x, kernel)


def _conv_transpose_doubling_bwd(padding, residuals, output_grad):
  x, kernel = residuals
  x_grad = conv_halving(output_grad, _swap_channels(kernel), padding)
  kernel_grad = kernel_gradient(output_grad, x, kernel.shape[0], padding)
  return x_grad, _swap_channels(kernel_grad)


conv_transpose_doubling.defvjp(_conv_transpose_doubling_fwd, _conv_transpose_doubling_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_halving(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
  """A stride-2 convolution whose output is exactly (H/2, W/2), without bias.

  y[i] = sum over u < k of x[2i + u - padding] kernel[u] per axis, x zero outside: PyTorch's
  Conv2d(k, stride=2, padding) where (k - 2) / 2 <= padding <= (k - 1) / 2 (e.g. k = 4,
  padding 1; k = 5, padding 2), and flax's `Conv(strides=2, padding="SAME")` with
  padding = (k - 2) // 2. Its gradients: w.r.t. x, `conv_transpose_doubling` of the
  output gradient (the adjoint); w.r.t. the kernel, `kernel_gradient`.

  Args:
    x: (B, H, W, C_in), H and W even.
    kernel: (k, k, C_in, C_out), k >= 2.
    padding: zero rows (and columns) before the first; 0 <= padding <= k - 2.

  Returns:
    (B, H/2, W/2, C_out).
  """
  return _strided_convolution(x, kernel, padding)


def _conv_halving_fwd(x, kernel, padding):
  return conv_halving(x, kernel, padding), (x, kernel)  # as in the rule above


def _conv_halving_bwd(padding, residuals, output_grad):
  x, kernel = residuals
  x_grad = conv_transpose_doubling(output_grad, _swap_channels(kernel), padding)
  kernel_grad = kernel_gradient(x, output_grad, kernel.shape[0], padding)
  return x_grad, kernel_grad


conv_halving.defvjp(_conv_halving_fwd, _conv_halving_bwd)


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
  as `conv_transpose_doubling` (four stride-1 convolutions, one per output parity,
  interleaved; gradients by `conv_halving` and `kernel_gradient`); with
  `parity=False` as one `jax.lax.conv_transpose` (the plain definition, the same
  function and parameters; faster where the backend has a good strided transposed
  convolution and its gradients). Parameters: kernel (k, k, C_in, features), bias.

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


def _halving_padding(kernel_size: int, padding: int | str) -> int | None:
  """conv_halving's padding for flax's "SAME" or a symmetric padding p; None if that
  convolution does not map even sides H to H / 2 exactly."""
  if padding == "SAME":
    return max(kernel_size - 2, 0) // 2 if kernel_size >= 2 else None
  if isinstance(padding, str):  # another flax padding ("VALID", ...): the general conv
    return None
  if kernel_size >= 2 and kernel_size - 2 <= 2 * padding <= kernel_size - 1:
    return padding
  return None


class HalvingConv(nn.Module):
  """`flax.linen.Conv(features, (k, k), strides=2, padding)` with fast gradients.

  The same function and parameters as that `nn.Conv` (kernel (k, k, C_in, features),
  bias; the same initializers, so the same values from the same key). Even H and W
  with padding "SAME", or a symmetric padding p with (k - 2) / 2 <= p <= (k - 1) / 2
  (PyTorch's Conv2d(k, 2, p) halving H), run as `conv_halving`, whose gradients are
  fast on XLA:CPU; other inputs (odd sides) as `lax.conv_general_dilated`.

  Attributes:
    features: output channels.
    kernel_size: k.
    padding: "SAME" or an int p, zeros on each side.
    use_bias: add a bias per output channel.
  """
  features: int
  kernel_size: int = 4
  padding: int | str = "SAME"
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (k, k, x.shape[-1], self.features), jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel)
    halving_padding = _halving_padding(k, self.padding)
    if halving_padding is not None and x.shape[1] % 2 == 0 and x.shape[2] % 2 == 0:
      y = conv_halving(x, kernel, halving_padding)
    else:
      padding = (self.padding if isinstance(self.padding, str)
                 else ((self.padding, self.padding),) * 2)
      y = jax.lax.conv_general_dilated(x, kernel, (2, 2), padding,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y


def conv_transpose_from_point(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`lax.conv_transpose(x, kernel, (1, 1), "VALID")` for a 1x1 map x.

  Args:
    x: (B, 1, 1, C_in).
    kernel: (h, w, C_in, C_out), HWIO as `flax.linen.ConvTranspose`.

  Returns:
    (B, h, w, C_out): y[b, r, c] = x[b] @ kernel[h - 1 - r, w - 1 - c] (a VALID
    transposed convolution without kernel transposition correlates the zero-padded
    input with the kernel, so output pixel (r, c) meets tap (h - 1 - r, w - 1 - c)).
  """
  height, width, in_features, out_features = kernel.shape
  batch = x.shape[0]
  # One (B, C_in) @ (C_in, C_out) per tap, as a batched product whose batch axis is the
  # kernel's major (h, w) axis: no copy of the kernel, and its gradient comes out in
  # the kernel's own layout.
  taps = jnp.broadcast_to(x.reshape(1, batch, in_features),
                          (height * width, batch, in_features))
  taps_kernel = kernel.reshape(height * width, in_features, out_features)
  y = jax.lax.dot_general(taps, taps_kernel,
                          (((2,), (1,)), ((0,), (0,))))            # (h * w, B, C_out)
  y = jnp.transpose(y.reshape(height, width, batch, out_features), (2, 0, 1, 3))
  return y[:, ::-1, ::-1]


class PointConvTranspose(nn.Module):
  """`flax.linen.ConvTranspose(features, (h, w), padding="VALID")` on a 1x1 map.

  Maps (B, 1, 1, C_in) to (B, h, w, features) with the same parameters (kernel (h, w,
  C_in, features), bias; the same initializers, so the same values from the same key)
  as that `nn.ConvTranspose`, computed by `conv_transpose_from_point`.

  Attributes:
    features: output channels.
    kernel_size: (h, w), the output map's size.
    use_bias: add a bias per output channel.
  """
  features: int
  kernel_size: tuple[int, int]
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[1:3] != (1, 1):
      raise ValueError(f"PointConvTranspose expects a (B, 1, 1, C) map, got {x.shape}.")
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    x, kernel = nn.dtypes.promote_dtype(x, kernel)
    y = conv_transpose_from_point(x, kernel)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y
