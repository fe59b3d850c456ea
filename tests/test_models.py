"""Tests for tripjax/models/vae.py: shapes, the paper's parameter count, jit, grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tripjax import likelihoods
from tripjax.models import vae

PAPER_PARAM_COUNT = 11.4e6


def _init(encoder, decoder, image_shape, latent_dim, batch_size=2):
  """Variables of both modules, shapes from `init` but values from numpy.

  `jax.eval_shape(init)` compiles nothing; filling with numpy (kernels ~ N(0, 1/fan_in),
  scales and variances 1, the rest 0) avoids compiling the random initializers,
  which takes many seconds on CPU. `test_real_init` covers `init` itself.
  """
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(fan_in), leaf.dtype)
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)

  images = jnp.zeros((batch_size, *image_shape))
  latents = jnp.zeros((batch_size, latent_dim))
  shapes = jax.eval_shape(lambda: (encoder.init(jax.random.key(0), images),
                                   decoder.init(jax.random.key(1), latents)))
  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_real_init_matches_shapes_and_is_random():
  encoder, decoder = vae.encoder_decoder((28, 28, 1), 4, widths=(8, 16))
  key = jax.random.key(0, impl="rbg")  # threefry init compiles slowly on CPU

  @jax.jit
  def init(key):
    encoder_key, decoder_key = jax.random.split(key)
    return (encoder.init(encoder_key, jnp.zeros((1, 28, 28, 1))),
            decoder.init(decoder_key, jnp.zeros((1, 4))))

  variables = init(key)
  expected = _init(encoder, decoder, (28, 28, 1), 4)
  assert (jax.tree_util.tree_structure(variables)
          == jax.tree_util.tree_structure(expected))
  kernel = variables[0]["params"]["conv0"]["kernel"]
  assert kernel.shape == (4, 4, 1, 8) and float(jnp.std(kernel)) > 0


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (64, 64, 3)])
@pytest.mark.parametrize("params_per_channel", [1, 2])
def test_output_shapes(image_shape, params_per_channel):
  latent_dim = 8
  encoder, decoder = vae.encoder_decoder(image_shape, latent_dim,
                                         widths=(8, 16, 16, 16)[:len(
                                             vae.default_widths(image_shape[0]))],
                                         params_per_channel=params_per_channel)
  encoder_vars, decoder_vars = _init(encoder, decoder, image_shape, latent_dim)
  images = jnp.zeros((3, *image_shape))
  # Shapes only (eval_shape compiles nothing); other tests run the numerics.
  mean, log_scale = jax.eval_shape(encoder.apply, encoder_vars, images)
  assert mean.shape == log_scale.shape == (3, latent_dim)
  output = jax.eval_shape(decoder.apply, decoder_vars, mean)
  height, width, channels = image_shape
  assert output.shape == (3, height, width, channels * params_per_channel)


@pytest.mark.parametrize("image_size", [28, 32, 64])
def test_default_widths_halve_to_the_decoder_start(image_size):
  widths = vae.default_widths(image_size)
  assert image_size % 2 ** len(widths) == 0
  assert image_size // 2 ** len(widths) in (4, 7)


@pytest.mark.parametrize("params_per_channel", [1, 2])
def test_paper_architecture_parameter_count(params_per_channel):
  encoder, decoder = vae.paper_encoder_decoder(params_per_channel=params_per_channel)
  shapes = jax.eval_shape(lambda: (
      encoder.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3))),
      decoder.init(jax.random.key(0), jnp.zeros((1, vae.PAPER_LATENT_DIM)))))
  total = vae.count_params(shapes[0]) + vae.count_params(shapes[1])
  assert abs(total - PAPER_PARAM_COUNT) / PAPER_PARAM_COUNT < 0.01, total
  encoder_params = shapes[0]["params"]
  assert [encoder_params[f"conv{i}"]["kernel"].shape[-1] for i in range(4)] == [
      64, 128, 256, 512]
  assert "bias" not in encoder_params["conv0"]
  assert encoder_params["to_posterior"]["kernel"].shape == (4 * 4 * 512, 200)


def test_paper_decoder_is_the_mirror():
  _, decoder = vae.paper_encoder_decoder()
  decoder_params = jax.eval_shape(
      lambda: decoder.init(jax.random.key(0), jnp.zeros((1, 100))))["params"]
  assert decoder_params["from_latent"]["kernel"].shape == (100, 512)
  assert decoder_params["project"]["kernel"].shape == (4, 4, 512, 512)
  assert [decoder_params[f"deconv{i}"]["kernel"].shape[-1] for i in range(4)] == [
      256, 128, 64, 3]


@pytest.mark.parametrize("likelihood", likelihoods.LIKELIHOODS)
def test_jit_loss_gradients_are_finite(likelihood):
  image_shape, latent_dim = (28, 28, 1), 4
  encoder, decoder = vae.encoder_decoder(
      image_shape, latent_dim, widths=(8, 16), norm="group",
      params_per_channel=likelihoods.num_params_per_channel(likelihood))
  encoder_vars, decoder_vars = _init(encoder, decoder, image_shape, latent_dim)
  rng = np.random.default_rng(3)
  images = np.round(rng.uniform(size=(2, *image_shape)) * 255) / 255
  if likelihood == "bernoulli":
    images = np.round(images)
  images = jnp.asarray(images, jnp.float32)
  noise = jnp.asarray(rng.normal(size=(2, latent_dim)), jnp.float32)

  @jax.jit
  def loss(params, images):
    mean, log_scale = encoder.apply(params[0], images)
    z = mean + jnp.exp(log_scale) * noise
    output = decoder.apply(params[1], z)
    return -jnp.mean(likelihoods.log_likelihood(likelihood, output, images))

  value, grads = jax.value_and_grad(loss)((encoder_vars, decoder_vars), images)
  assert np.isfinite(value)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
  assert any(np.any(leaf != 0) for leaf in leaves)


def test_decoder_output_is_unbounded_and_mean_image_in_range():
  encoder, decoder = vae.encoder_decoder((32, 32, 3), 4, widths=(8, 8, 8),
                                         params_per_channel=2)
  _, decoder_vars = _init(encoder, decoder, (32, 32, 3), 4)
  latents = 30 * np.random.default_rng(5).normal(size=(2, 4)).astype(np.float32)
  output = jax.jit(decoder.apply)(decoder_vars, latents)
  assert np.all(np.isfinite(output))
  assert float(jnp.abs(output).max()) > 1.0  # raw parameters, no squashing
  mean_image = likelihoods.likelihood_mean("discretized_logistic", output)
  assert mean_image.shape == (2, 32, 32, 3)
  assert 0.0 <= float(mean_image.min()) and float(mean_image.max()) <= 1.0


def test_batch_norm_train_updates_statistics():
  image_shape = (28, 28, 1)
  encoder, decoder = vae.encoder_decoder(image_shape, 4, widths=(8, 8), norm="batch")
  encoder_vars, _ = _init(encoder, decoder, image_shape, 4)
  assert "batch_stats" in encoder_vars
  images = jnp.asarray(np.random.default_rng(6).uniform(size=(4, *image_shape)),
                       jnp.float32)
  (mean, _), updates = encoder.apply(encoder_vars, images, train=True,
                                     mutable=["batch_stats"])
  assert mean.shape == (4, 4)
  changed = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)),
                                   updates["batch_stats"], encoder_vars["batch_stats"])
  assert any(jax.tree_util.tree_leaves(changed))
  eval_mean, _ = encoder.apply(encoder_vars, images)  # running averages, no mutation
  assert eval_mean.shape == (4, 4)


def test_errors():
  with pytest.raises(ValueError, match="none, group, batch"):
    vae.encoder_decoder((28, 28, 1), 4, norm="layer")
  with pytest.raises(ValueError, match="known sizes"):
    vae.default_widths(48)
  _, decoder = vae.encoder_decoder((28, 28, 1), 4, widths=(8, 8, 8))
  with pytest.raises(ValueError, match="not divisible"):
    decoder.init(jax.random.key(0), jnp.zeros((1, 4)))


def test_upconv_is_pytorch_transposed_conv_4_2_1():
  """UpConv == ConvTranspose2d(kernel 4, stride 2, padding 1), from its definition."""
  from tripjax.models.vae import UpConv
  x = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
  module = UpConv(6)
  variables = module.init(jax.random.PRNGKey(0), x)
  kernel = np.asarray(variables["params"]["kernel"], np.float64)
  bias = np.asarray(variables["params"]["bias"], np.float64)
  batch, height, width, _ = x.shape
  expected = np.zeros((batch, 2 * height, 2 * width, 6)) + bias
  for i in range(height):
    for j in range(width):
      for u in range(4):
        for v in range(4):
          row, col = 2 * i + u - 1, 2 * j + v - 1
          if 0 <= row < 2 * height and 0 <= col < 2 * width:
            expected[:, row, col] += x[:, i, j] @ kernel[u, v]
  np.testing.assert_allclose(module.apply(variables, x), expected, atol=1e-5)


# ---------------------------------------------------------------- conditional decoder


def test_attribute_one_hot_has_an_unknown_slot():
  attributes = jnp.array([[0, 1], [2, np.nan], [np.nan, 0], [5, 0.5]])
  expected = np.array([
      [1, 0, 0, 0, 0, 1, 0],
      [0, 0, 1, 0, 0, 0, 1],
      [0, 0, 0, 1, 1, 0, 0],
      [0, 0, 0, 0, 0, 0, 0],  # out of range / not an integer: no slot
  ], np.float32)
  np.testing.assert_array_equal(vae.attribute_one_hot(attributes, (3, 2)), expected)
  with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
    vae.attribute_one_hot(jnp.zeros((4, 3)), (3, 2))


def test_conditional_decoder_learns_an_unknown_value():
  _, decoder = vae.encoder_decoder((28, 28, 1), 3, widths=(8, 16))
  conditional = vae.ConditionalDecoder(decoder=decoder, num_values=(3, 2))
  z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
  attributes = jnp.array([[0, 1], [np.nan, 1], [np.nan, np.nan], [np.nan, 0]])
  shapes = jax.eval_shape(conditional.init, jax.random.key(0), z, attributes)
  rng = np.random.default_rng(1)
  params = jax.tree.map(lambda leaf: jnp.asarray(
      rng.normal(size=leaf.shape) * 0.3, leaf.dtype), shapes)
  kernel = params["params"]["decoder"]["from_latent"]["kernel"]
  assert kernel.shape == (3 + 4 + 3, 16)  # [z, 3 + 1 slots, 2 + 1 slots]

  @jax.jit
  def output_and_kernel_grad(params, attributes):
    output = conditional.apply(params, z, attributes)
    grad = jax.grad(lambda p: jnp.sum(conditional.apply(p, z, attributes)))(params)
    return output, grad["params"]["decoder"]["from_latent"]["kernel"]

  output, grad = output_and_kernel_grad(params, attributes)
  assert output.shape == (4, 28, 28, 1)
  # Rows 1-3 have attribute 0 unknown: their own output differs from value 0's.
  known, _ = output_and_kernel_grad(params, attributes.at[1, 0].set(0.0))
  assert not np.allclose(known[1], output[1])
  np.testing.assert_array_equal(known[2:], output[2:])
  # Only the slots in use get gradient: attribute 0 uses value 0 and "unknown".
  used = np.abs(np.asarray(grad)).sum(axis=1) > 0
  np.testing.assert_array_equal(used[3:], [True, False, False, True, True, True, True])
  # All unknown: only the unknown slots (and z) get gradient.
  _, grad_unknown = output_and_kernel_grad(params, jnp.full((4, 2), jnp.nan))
  used = np.abs(np.asarray(grad_unknown)).sum(axis=1) > 0
  np.testing.assert_array_equal(used[3:], [False, False, False, True, False, False, True])


# ---------------------------------------------------------------- layers: fast gradients


@pytest.fixture(params=["patch_gram", "convolution"])
def kernel_gradients(request, monkeypatch):
  """Runs the test with each formulation of `layers.kernel_gradient` (the matrix
  products, or XLA's kernel gradient, which the CLIs' Eigen convolutions select)."""
  from tripjax.models import layers
  by_convolution = request.param == "convolution"
  monkeypatch.setattr(layers, "kernel_gradient_by_convolution", lambda: by_convolution)
  return request.param


def test_kernel_gradient_is_the_sum_over_patches(kernel_gradients):
  """kernel_gradient (patch_gram, or XLA's kernel gradient of the strided convolution)
  against its definition, in float64 loops, for even and odd kernels."""
  from tripjax.models import layers
  rng = np.random.default_rng(0)
  big = rng.normal(size=(2, 6, 4, 3))
  small = rng.normal(size=(2, 3, 2, 5))
  for kernel_size, padding in [(4, 1), (5, 2), (3, 0)]:
    expected = np.zeros((kernel_size, kernel_size, 3, 5))
    for u in range(kernel_size):
      for v in range(kernel_size):
        for i in range(3):
          for j in range(2):
            row, col = 2 * i + u - padding, 2 * j + v - padding
            if 0 <= row < 6 and 0 <= col < 4:
              expected[u, v] += big[:, row, col].T @ small[:, i, j]
    gram = layers.kernel_gradient(jnp.asarray(big, jnp.float32),
                                  jnp.asarray(small, jnp.float32), kernel_size, padding)
    np.testing.assert_allclose(gram, expected, atol=1e-5)


def _values_and_derivatives(module, variables, x, cotangent):
  """Output, gradients of <output, cotangent> w.r.t. variables and x, and the gradient
  w.r.t. the variables of a penalty on the input gradient (second order, as WGAN-GP)."""

  def inner(variables, x):
    return jnp.vdot(module.apply(variables, x), cotangent)

  def penalty(variables):
    return jnp.sum(jnp.square(jax.grad(inner, argnums=1)(variables, x)))

  return (module.apply(variables, x), jax.grad(inner, argnums=(0, 1))(variables, x),
          jax.grad(penalty)(variables))


def _assert_same_function(module, reference, x, atol):
  """`module` and `reference` on shared (numpy) variables: the same values, first and
  second derivatives, to `atol`."""
  rng = np.random.default_rng(1)
  shapes = jax.eval_shape(reference.init, jax.random.key(0), x)
  variables = jax.tree.map(lambda leaf: jnp.asarray(rng.normal(size=leaf.shape) * 0.3,
                                                    leaf.dtype), shapes)
  assert (jax.tree.map(lambda leaf: leaf.shape, jax.eval_shape(
      module.init, jax.random.key(0), x)) == jax.tree.map(lambda leaf: leaf.shape, shapes))
  cotangent = jnp.asarray(rng.normal(size=jax.eval_shape(
      reference.apply, variables, x).shape), jnp.float32)
  ours = jax.jit(lambda v, x: _values_and_derivatives(module, v, x, cotangent))(
      variables, x)
  expected = jax.jit(lambda v, x: _values_and_derivatives(reference, v, x, cotangent))(
      variables, x)
  for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, atol=atol)


@pytest.mark.parametrize("kernel_size, padding, height", [
    (4, "SAME", 6), (5, "SAME", 6), (3, "SAME", 6), (5, 2, 6), (4, "SAME", 5)])
def test_halving_conv_is_flax_conv(kernel_size, padding, height, kernel_gradients):
  """HalvingConv == nn.Conv(strides=2) with the same variables: values, gradients w.r.t.
  the variables and the input, and second derivatives, to 1e-4 (float32 sums of ~100
  terms of size ~1). Height 5 takes the plain path (odd side)."""
  import flax.linen as nn
  from tripjax.models import layers
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, height, 4, 3)), jnp.float32)
  flax_padding = padding if isinstance(padding, str) else ((padding, padding),) * 2
  _assert_same_function(
      layers.HalvingConv(5, kernel_size, padding),
      nn.Conv(5, (kernel_size, kernel_size), strides=(2, 2), padding=flax_padding), x,
      atol=1e-4)


@pytest.mark.parametrize("kernel_size, padding, output_padding", [(4, 1, 0), (5, 2, 1)])
def test_doubling_conv_transpose_gradients_are_the_plain_ones(kernel_size, padding,
                                                              output_padding,
                                                              kernel_gradients):
  """The parity transposed conv (custom gradients) == lax.conv_transpose (plain autodiff)
  with the same variables: values, first and second derivatives, to 1e-4."""
  from tripjax.models import layers
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 2, 4)), jnp.float32)
  _assert_same_function(
      layers.DoublingConvTranspose(5, kernel_size, padding, output_padding),
      layers.DoublingConvTranspose(5, kernel_size, padding, output_padding,
                                   parity=False), x, atol=1e-4)


def test_halving_conv_initializes_as_flax_conv():
  """The same parameter names, shapes and values from the same key as nn.Conv, so
  checkpoints of the plain-conv encoder restore."""
  import flax.linen as nn
  from tripjax.models import layers
  x = jnp.zeros((1, 4, 4, 3))
  key = jax.random.key(0, impl="rbg")  # threefry init compiles slowly on CPU
  ours = jax.jit(layers.HalvingConv(6, 4, "SAME").init)(key, x)
  reference = jax.jit(nn.Conv(6, (4, 4), strides=(2, 2), padding="SAME").init)(key, x)
  assert jax.tree.structure(ours) == jax.tree.structure(reference)
  for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(got, want)


def test_point_conv_transpose_is_flax_conv_transpose():
  """PointConvTranspose == nn.ConvTranspose((h, w), "VALID") on a 1x1 map with the same
  variables (a non-square kernel, so a flip of the wrong axis shows): values, first and
  second derivatives; and the same initial values from the same key."""
  import flax.linen as nn
  from tripjax.models import layers
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 1, 1, 4)), jnp.float32)
  ours, reference = (layers.PointConvTranspose(5, (3, 2)),
                     nn.ConvTranspose(5, (3, 2), padding="VALID"))
  _assert_same_function(ours, reference, x, atol=1e-5)
  key = jax.random.key(0, impl="rbg")
  for got, want in zip(jax.tree.leaves(jax.jit(ours.init)(key, x)),
                       jax.tree.leaves(jax.jit(reference.init)(key, x))):
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match=r"\(B, 1, 1, C\) map, got \(3, 2, 1, 4\)"):
    ours.init(key, jnp.zeros((3, 2, 1, 4)))
