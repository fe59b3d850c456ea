"""Tests for tripjax/metrics/inception.py and convert_inception.py.

The port is proven against the reference: pytorch-fid's `InceptionV3` (its own
code, resize and normalisation included) and our Flax port get the SAME random
weights, passed through our converter, and must produce the same 2048-d
features. Those tests need torch, torchvision and pytorch-fid (test extra):

  pip install torch==2.13.0
  pip install --no-deps torchvision==0.28.0 pytorch-fid==0.3.0

and are skipped cleanly without them. The PyPI torchvision wheel matching the
CPU torch 2.13.0 is a CUDA build whose compiled ops cannot load beside CPU
torch, so `import torchvision` raises; `_import_pytorch_fid_inception` then
imports torchvision's pure-Python model code (models/inception.py, unmodified)
without running torchvision/__init__.py. No torchvision code is re-implemented.
"""

import importlib
import importlib.util
import sys
import types
from unittest import mock

from flax import traverse_util
import jax
import numpy as np
import pytest

from tripjax.metrics import convert_inception
from tripjax.metrics import images as images_lib
from tripjax.metrics import inception

# ----------------------------------------------------------------------------
# Without torch.
# ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_variables():
  return inception.random_inception_variables(seed=0)


def _to_torch_layout(variables, wrapper=False):
  """Inverse of the converter, for torch-free round-trip tests (numpy arrays)."""
  inverse_leaves = {v: k for k, v in convert_inception._LEAVES.items()}  # pylint: disable=protected-access
  inverse_blocks = {v: k for k, v in convert_inception._WRAPPER_NAMES.items()}  # pylint: disable=protected-access
  state = {}
  for key, value in traverse_util.flatten_dict(variables, sep="/").items():
    collection, *path, leaf = key.split("/")
    layer, leaf_name = inverse_leaves[(collection, leaf)]
    assert path[-1] == layer
    value = np.asarray(value)
    if leaf == "kernel":
      value = np.transpose(value, (3, 2, 0, 1))
    if wrapper:
      path = ["blocks", *inverse_blocks[path[0]], *path[1:]]
    state[".".join(path[:-1] + [layer, leaf_name])] = value
  state["fc.weight"] = np.zeros((1008, 2048), np.float32)
  state["Conv2d_1a_3x3.bn.num_batches_tracked"] = np.array(0)
  return state


def test_variable_layout_matches_the_fid_network():
  shapes = inception.expected_variable_shapes()
  assert shapes["params/Conv2d_1a_3x3/conv/kernel"] == (3, 3, 3, 32)
  assert shapes["params/Mixed_5b/branch_pool/conv/kernel"] == (1, 1, 192, 32)
  assert shapes["params/Mixed_6e/branch7x7dbl_5/conv/kernel"] == (1, 7, 192, 192)
  assert shapes["params/Mixed_7c/branch_pool/conv/kernel"] == (1, 1, 2048, 192)
  assert shapes["batch_stats/Mixed_7c/branch_pool/bn/var"] == (192,)
  num_params = sum(np.prod(s) for k, s in shapes.items() if k.startswith("params/"))
  # Conv kernels + BN scale/bias of pytorch-fid's trunk (torchvision Inception3
  # without fc and AuxLogits); test_trunk_parameter_count_matches_torch checks it.
  assert num_params == 21_785_568


@pytest.mark.parametrize("wrapper", [False, True])
def test_convert_state_dict_round_trip(random_variables, wrapper):
  state = _to_torch_layout(random_variables, wrapper=wrapper)
  converted = convert_inception.convert_state_dict(state)
  jax.tree_util.tree_map(np.testing.assert_array_equal, converted,
                         jax.tree_util.tree_map(np.asarray, random_variables))


def test_convert_state_dict_rejects_wrong_layers(random_variables):
  state = _to_torch_layout(random_variables)
  with pytest.raises(ValueError, match="unexpected state_dict entry"):
    convert_inception.convert_state_dict({**state, "Mixed_5b.branch1x1.extra.weight": 0})
  del state["Mixed_7c.branch_pool.conv.weight"]
  with pytest.raises(ValueError, match="1 missing"):
    convert_inception.convert_state_dict(state)


@pytest.mark.parametrize("suffix", [".npz", ".msgpack"])
def test_save_load_round_trip(tmp_path, random_variables, suffix):
  path = str(tmp_path / f"weights{suffix}")
  inception.save_inception_variables(path, random_variables)
  loaded = inception.load_inception_variables(path)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, random_variables)


def test_load_rejects_wrong_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="pt_inception"):
    inception.load_inception_variables(str(tmp_path / "missing.npz"))
  untagged = str(tmp_path / "untagged.npz")
  np.savez(untagged, a=np.zeros(3))
  with pytest.raises(ValueError, match="no format tag"):
    inception.load_inception_variables(untagged)
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"\x80\x02not a zip file")
  with pytest.raises(ValueError, match="convert_inception"):
    inception.load_inception_variables(str(garbage))
  bad_msgpack = tmp_path / "bad.msgpack"
  bad_msgpack.write_bytes(b"\x00\x01\x02")
  with pytest.raises(ValueError, match="not a tripjax FID Inception weight file"):
    inception.load_inception_variables(str(bad_msgpack))
  wrong_shapes = str(tmp_path / "wrong.npz")
  np.savez(wrong_shapes, __format__=np.array(inception.WEIGHTS_FORMAT), a=np.zeros(3))
  with pytest.raises(ValueError, match="do not match"):
    inception.load_inception_variables(wrong_shapes)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 32, 32)), "shape"),
    (np.zeros((2, 3, 32, 32)), "channels-first"),
    (np.zeros((2, 32, 32, 2)), "C in"),
    (np.full((2, 8, 8, 3), 2.0), r"\[0, 1\]"),
    (np.full((2, 8, 8, 3), -0.5), r"\[0, 1\]"),
    (np.full((2, 8, 8, 3), np.nan), "NaN"),
    (np.zeros((0, 8, 8, 3)), "empty"),
])
def test_bad_images_raise(bad, match):
  with pytest.raises(ValueError, match=match):
    inception.inception_features(None, bad)  # checked before the network runs


def test_uint8_images_are_scaled():
  images = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1)
  np.testing.assert_allclose(images_lib.as_unit_images(images).ravel(), [0, 0.2, 1])


def test_quantize_is_uint8_round_trip():
  values = np.array([0.0, 0.5 / 255, 0.49 / 255, 0.3, 1.0], np.float32)
  np.testing.assert_allclose(images_lib.quantize_uint8(values),
                             np.array([0, 1, 0, 77, 255]) / 255.0, atol=1e-7)


def test_resize_matrix_rows_are_convex_and_identity_at_same_size():
  matrix = inception.bilinear_resize_matrix(28, 299)
  np.testing.assert_allclose(matrix.sum(1), 1.0, rtol=1e-6)
  assert (matrix >= 0).all()
  np.testing.assert_array_equal(inception.bilinear_resize_matrix(7, 7), np.eye(7))


def test_features_batching_is_consistent(random_variables):
  """Different batch groupings (and zero padding of the last batch) agree."""
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(4, 37, 45, 3)).astype(np.uint8)
  all_four = inception.inception_features(random_variables, images, batch_size=3)
  last_three = inception.inception_features(random_variables, images[1:], batch_size=3)
  assert all_four.shape == (4, inception.FEATURE_DIM) and all_four.dtype == np.float32
  np.testing.assert_allclose(all_four[1:], last_three, rtol=1e-5, atol=1e-6)
  assert np.abs(all_four[0] - all_four[1]).max() > 1e-3  # rows are distinct images


# ----------------------------------------------------------------------------
# Against pytorch-fid (needs torch).
# ----------------------------------------------------------------------------


def _import_pytorch_fid_inception():
  """pytorch_fid.inception, importing torchvision's model code if needed."""
  pytest.importorskip("torch")
  if importlib.util.find_spec("pytorch_fid") is None:
    pytest.skip("pytorch-fid not installed")
  spec = importlib.util.find_spec("torchvision")
  if spec is None:
    pytest.skip("torchvision not installed")
  try:
    importlib.import_module("torchvision")
  except (RuntimeError, OSError):
    # CUDA torchvision wheel beside CPU torch: its __init__ registers compiled
    # ops that cannot load. Import the pure-Python submodules without it.
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
      del sys.modules[name]
    root = spec.submodule_search_locations[0]
    package = types.ModuleType("torchvision")
    package.__path__ = [root]
    models = types.ModuleType("torchvision.models")
    models.__path__ = [root + "/models"]
    package.models = models
    sys.modules["torchvision"] = package
    sys.modules["torchvision.models"] = models
    inception_module = importlib.import_module("torchvision.models.inception")
    models.inception = inception_module
    models.inception_v3 = inception_module.inception_v3
    package.__version__ = importlib.import_module("torchvision.version").__version__
  return importlib.import_module("pytorch_fid.inception")


def _random_fid_state_dict(pfid, seed):
  """A state_dict laid out like pt_inception-2015-12-05-6726825d.pth, random values.

  Built by pytorch-fid's own `fid_inception_v3` (its download/load step
  disabled), then every tensor is redrawn: He-scaled conv weights and
  non-trivial BatchNorm statistics so activations stay O(1) through the net.
  """
  import torch  # pylint: disable=import-outside-toplevel

  with mock.patch.object(pfid, "load_state_dict_from_url", return_value=None), \
       mock.patch.object(torch.nn.Module, "load_state_dict", return_value=None):
    trunk = pfid.fid_inception_v3()
  generator = torch.Generator().manual_seed(seed)
  state = {}
  for name, tensor in trunk.state_dict().items():
    if name.endswith("conv.weight"):
      fan_in = tensor[0].numel()
      value = torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5
    elif name.endswith("bn.weight"):
      value = 0.5 + torch.rand(tensor.shape, generator=generator)
    elif name.endswith("bn.bias") or name.endswith("running_mean"):
      value = 0.1 * torch.randn(tensor.shape, generator=generator)
    elif name.endswith("running_var"):
      value = 0.5 + 1.5 * torch.rand(tensor.shape, generator=generator)
    else:  # fc (unused by FID), num_batches_tracked
      value = tensor.clone()
    state[name] = value
  return state


@pytest.fixture(scope="module")
def reference_pair():
  """(pytorch-fid InceptionV3 with random weights, same weights as Flax variables)."""
  pfid = _import_pytorch_fid_inception()
  state = _random_fid_state_dict(pfid, seed=0)
  # The real strict load_state_dict: checks our state_dict has the released layout.
  with mock.patch.object(pfid, "load_state_dict_from_url", return_value=state):
    torch_model = pfid.InceptionV3([pfid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
  variables = jax.tree_util.tree_map(
      jax.numpy.asarray, convert_inception.convert_state_dict(state))
  return torch_model, variables, state


def _torch_features(torch_model, images):
  """pytorch-fid on (N, H, W, C) images in [0, 1] (grey replicated to RGB, as PIL does)."""
  import torch  # pylint: disable=import-outside-toplevel

  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  batch = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  with torch.no_grad():
    (features,) = torch_model(batch)
  return features[:, :, 0, 0].numpy()


# Same batch size everywhere: the network compiles once (resizing is separate).
@pytest.mark.parametrize("shape", [(3, 37, 45, 3), (3, 331, 310, 1)],
                         ids=["upsample_rgb", "downsample_grey"])
def test_features_match_pytorch_fid(reference_pair, shape):
  torch_model, variables, _ = reference_pair
  rng = np.random.default_rng(sum(shape))
  images = (rng.integers(0, 256, size=shape) / 255.0).astype(np.float32)
  expected = _torch_features(torch_model, images)
  actual = inception.inception_features(variables, images, batch_size=shape[0])
  scale = np.abs(expected).max()
  assert scale > 1e-2  # activations did not vanish: the comparison is meaningful
  max_relative = np.abs(actual - expected).max() / scale
  l2_relative = np.linalg.norm(actual - expected) / np.linalg.norm(expected)
  print(f"{shape}: max|Δ|/max|ref| = {max_relative:.2e}, "
        f"‖Δ‖/‖ref‖ = {l2_relative:.2e}, max|ref| = {scale:.3g}")
  # README: "same 2048-d features to ~3e-7 relative"; measured 2.5e-7 to 2.6e-7 on
  # the 2-core CPU machine (float32 on both sides), asserted with a 40x margin.
  assert max_relative <= 1e-5
  assert l2_relative <= 1e-5


def test_trunk_parameter_count_matches_torch(reference_pair):
  torch_model, _, _ = reference_pair
  torch_count = sum(p.numel() for p in torch_model.parameters())
  shapes = inception.expected_variable_shapes()
  assert torch_count == sum(np.prod(s) for k, s in shapes.items() if k.startswith("params/"))


@pytest.mark.parametrize("in_shape,out_shape", [((28, 28), (299, 299)), ((400, 350), (299, 299)),
                                                ((5, 9), (7, 4))])
def test_resize_matches_torch_interpolate(in_shape, out_shape):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  images = rng.uniform(size=(2, *in_shape, 3)).astype(np.float32)
  expected = torch.nn.functional.interpolate(
      torch.from_numpy(images.transpose(0, 3, 1, 2)), size=out_shape, mode="bilinear",
      align_corners=False).numpy().transpose(0, 2, 3, 1)
  actual = np.asarray(inception.resize_bilinear(images, out_shape))
  np.testing.assert_allclose(actual, expected, atol=2e-6)


def test_converter_cli_reads_pth_and_rejects_it_as_weights(tmp_path, reference_pair):
  import torch  # pylint: disable=import-outside-toplevel

  _, variables, state = reference_pair
  pth = str(tmp_path / "pt_inception-random.pth")
  torch.save(state, pth)
  with pytest.raises(ValueError, match="looks like a PyTorch checkpoint"):
    inception.load_inception_variables(pth)
  out = str(tmp_path / "inception_fid.npz")
  assert convert_inception.main(["--torch-weights", pth, "--out", out]) == 0
  loaded = inception.load_inception_variables(out)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, variables)
