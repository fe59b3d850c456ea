"""Tests for tripjax/models/gan.py and tripjax/models/layers.py: the transposed conv
against PyTorch, shapes, ranges, the paper's parameter counts, critic norms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tripjax import losses
from tripjax.models import gan
from tripjax.models import layers
from tripjax.models import vae

SMALL_WIDTHS = {28: (16, 8), 32: (8, 8, 8)}


@pytest.mark.parametrize("parity", [True, False])
@pytest.mark.parametrize("kernel_size, padding, output_padding", [(5, 2, 1), (4, 1, 0)])
def test_doubling_conv_transpose_is_pytorchs(kernel_size, padding, output_padding,
                                             parity):
  """Same output as torch.nn.ConvTranspose2d(k, 2, padding, output_padding), shared
  weights, on a non-square input."""
  import torch  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 5, 4)).astype(np.float32)
  kernel = rng.normal(size=(kernel_size, kernel_size, 4, 6)).astype(np.float32)
  bias = rng.normal(size=(6,)).astype(np.float32)
  module = layers.DoublingConvTranspose(6, kernel_size, padding, output_padding,
                                        parity=parity)
  variables = {"params": {"kernel": kernel, "bias": bias}}
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(np.shape, variables)
  reference = torch.nn.ConvTranspose2d(4, 6, kernel_size, stride=2, padding=padding,
                                       output_padding=output_padding)
  with torch.no_grad():
    reference.weight.copy_(torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy()))
    reference.bias.copy_(torch.from_numpy(bias))
    expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  output = np.asarray(module.apply(variables, x))
  assert output.shape == (2, 6, 10, 6)
  np.testing.assert_allclose(output, expected.transpose(0, 2, 3, 1), atol=1e-4)


def test_doubling_conv_transpose_rejects_other_sizes():
  with pytest.raises(ValueError, match="does not double"):
    layers.DoublingConvTranspose(4, kernel_size=5, padding=2).init(
        jax.random.key(0), jnp.zeros((1, 2, 2, 1)))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size", [28, 32, 64])
def test_output_shapes(image_size, channels):
  image_shape = (image_size, image_size, channels)
  generator, critic = gan.generator_critic(image_shape, critic_norm="batch")
  z = jnp.zeros((3, 16))
  images = jnp.zeros((3, *image_shape))
  # Shapes only (eval_shape compiles nothing); other tests run the numerics.
  generator_vars = jax.eval_shape(generator.init, jax.random.key(0), z)
  critic_vars = jax.eval_shape(critic.init, jax.random.key(0), images)
  assert jax.eval_shape(generator.apply, generator_vars, z).shape == (3, *image_shape)
  assert jax.eval_shape(critic.apply, critic_vars, images).shape == (3,)
  widths = gan.default_widths(image_size)
  assert image_size // 2 ** len(widths) in (4, 7)
  assert critic_vars["params"]["conv0"]["kernel"].shape == (5, 5, channels, widths[-1])


def _paper_counts(latent_dim, widths, channels):
  """Parameters of the paper's generator and critic (no norm), layer by layer."""
  conv = lambda c_in, c_out, k=5: k * k * c_in * c_out + c_out
  generator = latent_dim * 16 * widths[0] + 16 * widths[0]
  outputs = widths[1:] + (channels,)
  generator += sum(conv(c_in, c_out) for c_in, c_out in zip(widths, outputs))
  critic_widths = tuple(reversed(widths))
  critic = sum(conv(c_in, c_out) for c_in, c_out in
               zip((channels,) + critic_widths[:-1], critic_widths))
  critic += conv(critic_widths[-1], 1, k=4)
  return generator, critic


@pytest.mark.parametrize("critic_norm", gan.CRITIC_NORMS)
def test_paper_parameter_counts(critic_norm):
  generator, critic = gan.paper_generator_critic(critic_norm)
  generator_vars = jax.eval_shape(generator.init, jax.random.key(0),
                                  jnp.zeros((1, gan.PAPER_LATENT_DIM)))
  critic_vars = jax.eval_shape(critic.init, jax.random.key(0),
                               jnp.zeros((1, 64, 64, 3)))
  expected_generator, expected_critic = _paper_counts(gan.PAPER_LATENT_DIM,
                                                      gan.PAPER_WIDTHS, 3)
  # A scale and a bias per channel of the three normalized convs.
  norm_params = 0 if critic_norm == "none" else 2 * sum(gan.PAPER_WIDTHS[:3])
  assert vae.count_params(generator_vars["params"]) == expected_generator == 5_362_819
  assert vae.count_params(critic_vars["params"]) == expected_critic + norm_params
  assert expected_critic == 4_314_753
  params = generator_vars["params"]
  assert params["from_latent"]["kernel"].shape == (128, 4 * 4 * 512)
  assert [params[f"deconv{i}"]["kernel"].shape for i in range(4)] == [
      (5, 5, 512, 256), (5, 5, 256, 128), (5, 5, 128, 64), (5, 5, 64, 3)]
  assert critic_vars["params"]["to_score"]["kernel"].shape == (4, 4, 512, 1)
  assert ("batch_stats" in critic_vars) == (critic_norm == "batch")


def _numpy_init(module, *inputs):
  """Variables with `init`'s shapes, kernels ~ N(0, 1/fan_in), scales 1, the rest 0.

  `jax.eval_shape(init)` compiles nothing; numpy values avoid compiling the random
  initializers, which takes many seconds on CPU.
  """
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)
    return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, leaf.dtype)

  shapes = jax.eval_shape(module.init, jax.random.key(0), *inputs)
  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="module")
def small_gan():
  """A 32x32x3 generator and layer-norm critic with small widths."""
  generator, critic = gan.generator_critic((32, 32, 3), widths=SMALL_WIDTHS[32])
  z = 3.0 * np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
  generator_vars = _numpy_init(generator, z)
  critic_vars = _numpy_init(critic, np.zeros((4, 32, 32, 3), np.float32))
  return generator, critic, generator_vars, critic_vars, z


def test_generator_range_and_upsampling_variants(small_gan):
  generator, _, generator_vars, _, z = small_gan
  images = np.asarray(jax.jit(generator.apply)(generator_vars, z))
  assert images.shape == (4, 32, 32, 3)
  assert np.all(np.abs(images) <= 1) and images.std() > 0
  plain = generator.clone(parity_upsampling=False)
  np.testing.assert_allclose(jax.jit(plain.apply)(generator_vars, z), images, atol=1e-5)


def test_range_helpers_are_inverse():
  images = jnp.asarray([0.0, 0.25, 1.0])
  np.testing.assert_allclose(gan.to_model_range(images), [-1.0, -0.5, 1.0])
  np.testing.assert_allclose(gan.to_image_range(gan.to_model_range(images)), images)


def test_layer_norm_critic_is_per_example_and_penalizable(small_gan):
  """Each score depends on its own example only, so the gradient penalty's
  per-example gradients are exact; the penalty's critic gradient is finite."""
  _, critic, _, critic_vars, _ = small_gan
  images = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (4, 32, 32, 3)),
                       jnp.float32)
  scores = jax.jit(critic.apply)(critic_vars, images)
  np.testing.assert_allclose(jax.jit(critic.apply)(critic_vars, images[:2]),
                             scores[:2], rtol=1e-5, atol=1e-6)

  @jax.jit
  def penalty_and_grad(critic_vars):
    return jax.value_and_grad(lambda v: losses.gradient_penalty(
        lambda x: critic.apply(v, x), images, -images, jax.random.key(3)))(critic_vars)

  value, grads = penalty_and_grad(critic_vars)
  assert np.isfinite(value) and value > 0
  assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grads))


def test_batch_norm_critic_train_and_eval():
  critic = gan.Critic(widths=SMALL_WIDTHS[28][::-1], norm="batch")
  images = jnp.asarray(np.random.default_rng(4).uniform(-1, 1, (4, 28, 28, 1)),
                       jnp.float32)
  variables = _numpy_init(critic, images)
  assert set(variables) == {"params", "batch_stats"}
  train = jax.jit(lambda v, x: critic.apply(v, x, train=True, mutable=["batch_stats"]))
  scores, updates = train(variables, images)
  assert scores.shape == (4,)
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), updates["batch_stats"],
                         variables["batch_stats"])
  assert all(jax.tree.leaves(changed))
  # Training mode normalizes by batch statistics (examples interact); evaluation
  # uses the running averages (they do not).
  half, _ = train(variables, images[:2])
  assert not np.allclose(half, scores[:2], atol=1e-4)
  evaluate = jax.jit(critic.apply)
  np.testing.assert_allclose(evaluate(variables, images[:2]),
                             evaluate(variables, images)[:2], rtol=1e-5, atol=1e-6)


def test_clipping_leaves_batch_stats_alone():
  """WGAN clips the critic's params (norm scales included), not its running stats."""
  critic = gan.Critic(widths=SMALL_WIDTHS[28][::-1], norm="batch")
  variables = jax.eval_shape(critic.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  variables = jax.tree.map(lambda leaf: np.full(leaf.shape, 0.5, leaf.dtype), variables)
  clipped = losses.clip_weights(variables["params"], 0.01)
  assert all(bool(jnp.all(leaf == 0.01)) for leaf in jax.tree.leaves(clipped))
  assert clipped["norm1"]["BatchNorm_0"]["scale"].shape == (SMALL_WIDTHS[28][0],)


def test_errors():
  with pytest.raises(ValueError, match="layer, batch, none"):
    gan.generator_critic((32, 32, 3), critic_norm="group")
  with pytest.raises(ValueError, match="known sizes"):
    gan.default_widths(48)
  generator, critic = gan.generator_critic((28, 28, 1), widths=(8, 8, 8))
  with pytest.raises(ValueError, match="not divisible"):
    generator.init(jax.random.key(0), jnp.zeros((1, 4)))
  with pytest.raises(ValueError, match="not divisible"):
    critic.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  with pytest.raises(ValueError, match=r"\(B, latent_dim\)"):
    gan.Generator((32, 32, 3)).init(jax.random.key(0), jnp.zeros((4,)))
