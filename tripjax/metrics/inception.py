"""Flax port of the FID InceptionV3 feature extractor (2048-d pool3 features).

This reproduces `pytorch_fid.inception.InceptionV3(output_blocks=[3])` from
pytorch-fid (https://github.com/mseitzer/pytorch-fid), which in turn reproduces
the TensorFlow graph of the original FID code (Heusel et al. 2017): torchvision's
InceptionV3 layout with the FID patches (`FIDInceptionA/C/E_1` average-pool
without counting padding, `FIDInceptionE_2` max-pooling), bilinear resize to
299×299 with `align_corners=False`, inputs in [0, 1] scaled to [-1, 1].

Weights (download once, ~92 MB; the file pytorch-fid itself downloads):

  https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth

(a PyTorch port of http://download.tensorflow.org/models/image/imagenet/inception-2015-12-05.tgz).
Convert it once to tripjax's own format (needs torch only for this step):

  python -m tripjax.metrics.convert_inception \
      --torch-weights pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz

and then:

  variables = load_inception_variables("inception_fid.npz")
  features = inception_features(variables, images)   # images (N, H, W, 1|3) in [0, 1]

Weight file format (`.npz`): one array per Flax variable, keyed by its path
joined with "/" (e.g. "params/Mixed_5b/branch1x1/conv/kernel",
"batch_stats/Mixed_5b/branch1x1/bn/mean"), plus a "__format__" entry equal to
`WEIGHTS_FORMAT`. `.msgpack` holds the same dict via `flax.serialization`.
"""

import functools
import os
from typing import Any, Mapping, Tuple

from flax import serialization
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from tripjax.metrics import images as images_lib

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth")
WEIGHTS_FORMAT = "tripjax-inception-fid-v1"
INPUT_SIZE = 299
FEATURE_DIM = 2048
_FORMAT_KEY = "__format__"

Variables = Mapping[str, Any]

# ----------------------------------------------------------------------------
# Modules. Submodule names equal the torchvision / pytorch-fid attribute names,
# so the converter is a rename plus a kernel transpose.
# ----------------------------------------------------------------------------


def _pair(value) -> Tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


class BasicConv2d(nn.Module):
  """Conv (no bias) → BatchNorm(eps=1e-3, running stats) → ReLU; NHWC in and out."""
  features: int
  kernel_size: Any
  strides: Any = 1
  padding: Any = 0
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    pad_h, pad_w = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel_size), strides=_pair(self.strides),
                padding=((pad_h, pad_h), (pad_w, pad_w)), use_bias=False,
                precision=self.precision, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3_same(x):
  """3×3/1 average pool, padding 1, zeros not counted (TF 'SAME' semantics)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3_valid_stride2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class FIDInceptionA(nn.Module):
  """Mixed_5b/c/d: (N, H, W, C) → (N, H, W, 224 + pool_features)."""
  pool_features: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch1x1 = conv(64, 1, name="branch1x1")(x)
    branch5x5 = conv(48, 1, name="branch5x5_1")(x)
    branch5x5 = conv(64, 5, padding=2, name="branch5x5_2")(branch5x5)
    branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = conv(self.pool_features, 1, name="branch_pool")(_avg_pool_3x3_same(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a (grid reduction): (N, 35, 35, 288) → (N, 17, 17, 768)."""
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch3x3 = conv(384, 3, strides=2, name="branch3x3")(x)
    branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, 3, strides=2, name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = _max_pool_3x3_valid_stride2(x)
    return jnp.concatenate([branch3x3, branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionC(nn.Module):
  """Mixed_6b..e (factorised 7×7): (N, 17, 17, 768) → (N, 17, 17, 768)."""
  channels_7x7: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    branch1x1 = conv(192, 1, name="branch1x1")(x)
    branch7x7 = conv(c7, 1, name="branch7x7_1")(x)
    branch7x7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
    branch7x7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
    branch7x7dbl = conv(c7, 1, name="branch7x7dbl_1")(x)
    branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(branch7x7dbl)
    branch7x7dbl = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(branch7x7dbl)
    branch7x7dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(branch7x7dbl)
    branch7x7dbl = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(branch7x7dbl)
    branch_pool = conv(192, 1, name="branch_pool")(_avg_pool_3x3_same(x))
    return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a (grid reduction): (N, 17, 17, 768) → (N, 8, 8, 1280)."""
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch3x3 = conv(192, 1, name="branch3x3_1")(x)
    branch3x3 = conv(320, 3, strides=2, name="branch3x3_2")(branch3x3)
    branch7x7x3 = conv(192, 1, name="branch7x7x3_1")(x)
    branch7x7x3 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = conv(192, 3, strides=2, name="branch7x7x3_4")(branch7x7x3)
    branch_pool = _max_pool_3x3_valid_stride2(x)
    return jnp.concatenate([branch3x3, branch7x7x3, branch_pool], axis=-1)


class FIDInceptionE(nn.Module):
  """Mixed_7b / Mixed_7c: (N, 8, 8, C) → (N, 8, 8, 2048).

  `pool="avg"` is pytorch-fid's FIDInceptionE_1 (Mixed_7b), `pool="max"` its
  FIDInceptionE_2 (Mixed_7c; the TF graph max-pools here).
  """
  pool: str
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    branch1x1 = conv(320, 1, name="branch1x1")(x)
    branch3x3 = conv(384, 1, name="branch3x3_1")(x)
    branch3x3 = jnp.concatenate([
        conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(branch3x3),
        conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(branch3x3),
    ], axis=-1)
    branch3x3dbl = conv(448, 1, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(384, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = jnp.concatenate([
        conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(branch3x3dbl),
        conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(branch3x3dbl),
    ], axis=-1)
    if self.pool == "avg":
      pooled = _avg_pool_3x3_same(x)
    elif self.pool == "max":
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      raise ValueError(f"pool must be 'avg' or 'max', got {self.pool!r}")
    branch_pool = conv(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1)


class InceptionV3(nn.Module):
  """FID InceptionV3 trunk: (N, H, W, 3) in [-1, 1], H, W ≥ 75 → (N, 2048) pool3.

  Resizing and scaling happen in `preprocess`; this module is the network only.
  """
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    kw = dict(precision=self.precision)
    # Block 0: input → maxpool1 (64 channels).
    x = conv(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
    x = conv(32, 3, name="Conv2d_2a_3x3")(x)
    x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_valid_stride2(x)
    # Block 1: maxpool1 → maxpool2 (192 channels).
    x = conv(80, 1, name="Conv2d_3b_1x1")(x)
    x = conv(192, 3, name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_valid_stride2(x)
    # Block 2: → pre-aux-classifier features (768 channels).
    x = FIDInceptionA(32, name="Mixed_5b", **kw)(x)
    x = FIDInceptionA(64, name="Mixed_5c", **kw)(x)
    x = FIDInceptionA(64, name="Mixed_5d", **kw)(x)
    x = InceptionB(name="Mixed_6a", **kw)(x)
    x = FIDInceptionC(128, name="Mixed_6b", **kw)(x)
    x = FIDInceptionC(160, name="Mixed_6c", **kw)(x)
    x = FIDInceptionC(160, name="Mixed_6d", **kw)(x)
    x = FIDInceptionC(192, name="Mixed_6e", **kw)(x)
    # Block 3: → final average pool (2048 channels).
    x = InceptionD(name="Mixed_7a", **kw)(x)
    x = FIDInceptionE("avg", name="Mixed_7b", **kw)(x)
    x = FIDInceptionE("max", name="Mixed_7c", **kw)(x)
    return jnp.mean(x, axis=(1, 2))


# ----------------------------------------------------------------------------
# Preprocessing: exactly pytorch-fid's path for images read from PNG files.
# ----------------------------------------------------------------------------


def bilinear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) float32 matrix of torch's bilinear, align_corners=False.

  Row i holds the weights of output pixel i: source coordinate
  max((i + 0.5) · in/out − 0.5, 0), interpolated between its floor and the next
  pixel (clamped at the border), as `torch.nn.functional.interpolate(...,
  mode="bilinear", align_corners=False)` (no antialiasing, also when
  downsampling).
  """
  # float32 arithmetic on purpose: torch computes these coordinates in float32,
  # and float64 ones differ by up to ~2e-5 for large inputs.
  f32 = np.float32
  scale = f32(in_size) / f32(out_size)
  source = np.maximum(scale * (np.arange(out_size, dtype=f32) + f32(0.5)) - f32(0.5), f32(0))
  lower = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
  upper = np.minimum(lower + 1, in_size - 1)
  frac = source - lower.astype(f32)
  matrix = np.zeros((out_size, in_size), np.float32)
  rows = np.arange(out_size)
  np.add.at(matrix, (rows, lower), 1.0 - frac)
  np.add.at(matrix, (rows, upper), frac)
  return matrix


def resize_bilinear(images, size: Tuple[int, int]):
  """Resizes (N, H, W, C) → (N, size[0], size[1], C) like torch's bilinear resize."""
  height, width = images.shape[1:3]
  rows = jnp.asarray(bilinear_resize_matrix(height, size[0]))
  cols = jnp.asarray(bilinear_resize_matrix(width, size[1]))
  hp = jax.lax.Precision.HIGHEST
  images = jnp.einsum("oh,nhwc->nowc", rows, images, precision=hp)
  return jnp.einsum("pw,nowc->nopc", cols, images, precision=hp)


def preprocess(images, quantize: bool = True):
  """(N, H, W, 1|3) float in [0, 1] → (N, 299, 299, 3) float32 in [-1, 1].

  Steps, as FID on PNG files with pytorch-fid: uint8 round trip (`quantize`),
  grey → RGB by channel replication (PIL's convert("RGB")), bilinear resize to
  299×299, then 2x − 1. Pure jnp; call inside jit. Inputs are not checked here;
  `inception_features` checks them.
  """
  images = jnp.asarray(images, jnp.float32)
  if quantize:
    images = images_lib.quantize_uint8(images)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  if images.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    images = resize_bilinear(images, (INPUT_SIZE, INPUT_SIZE))
  return 2.0 * images - 1.0


# Two jitted stages, so images of a new size recompile only the cheap resize.
_preprocess_jit = jax.jit(preprocess, static_argnames=("quantize",))


@jax.jit
def _network_jit(variables, inputs):
  return InceptionV3().apply(variables, inputs)


def inception_features(variables: Variables,
                       images,
                       batch_size: int = 50,
                       quantize: bool = True,
                       progress: bool = False) -> np.ndarray:
  """Pool3 features of an image set, batched and jitted.

  Args:
    variables: from `load_inception_variables` ({"params", "batch_stats"}).
    images: (N, H, W, C), C in {1, 3}, uint8 or float in [0, 1].
    batch_size: images per jitted call; the last batch is zero-padded so only
      one shape is compiled (a set smaller than one batch is run as it is).
    quantize: round-trip through uint8 first (as saving samples to PNG does);
      a no-op for images that already are k / 255.
    progress: show a tqdm bar over batches.

  Returns:
    float32 NumPy array (N, 2048).

  Raises:
    ValueError: on wrong shape, dtype or value range (see `as_unit_images`).
  """
  images = images_lib.as_unit_images(images, channels=(1, 3))
  num_images = images.shape[0]
  batch_size = min(batch_size, num_images)
  outputs = []
  for start in tqdm.trange(0, num_images, batch_size, desc="Inception features",
                           disable=not progress):
    batch = images[start:start + batch_size]
    valid = batch.shape[0]
    if valid < batch_size:
      batch = np.concatenate(
          [batch, np.zeros((batch_size - valid,) + batch.shape[1:], batch.dtype)])
    features = _network_jit(variables, _preprocess_jit(batch, quantize=quantize))
    outputs.append(np.asarray(features)[:valid])
  return np.concatenate(outputs, axis=0)


# ----------------------------------------------------------------------------
# Variables: random init (tests), expected shapes, our weight-file format.
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _variable_shapes_tree():
  return jax.eval_shape(InceptionV3().init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, 75, 75, 3), jnp.float32))


def random_inception_variables(seed: int = 0) -> Variables:
  """Random variables of the right layout, for tests (FID needs the real weights).

  He-normal kernels, BatchNorm at identity (scale 1, bias 0, mean 0, var 1).
  Drawn with NumPy from the shapes alone, so nothing is compiled.
  """
  rng = np.random.default_rng(seed)
  flat = {}
  for key, leaf in traverse_util.flatten_dict(_variable_shapes_tree(), sep="/").items():
    if key.endswith("/kernel"):
      fan_in = int(np.prod(leaf.shape[:-1]))
      value = rng.normal(size=leaf.shape) * np.sqrt(2.0 / fan_in)
    elif key.endswith(("/scale", "/var")):
      value = np.ones(leaf.shape)
    else:
      value = np.zeros(leaf.shape)
    flat[key] = jnp.asarray(value, jnp.float32)
  return traverse_util.unflatten_dict(flat, sep="/")


@functools.lru_cache(maxsize=1)
def expected_variable_shapes() -> Mapping[str, Tuple[int, ...]]:
  """{"params/Mixed_5b/branch1x1/conv/kernel": shape, ...} without computing anything."""
  return {key: tuple(leaf.shape)
          for key, leaf in traverse_util.flatten_dict(_variable_shapes_tree(), sep="/").items()}


def _validate_flat(flat: Mapping[str, np.ndarray], source: str) -> None:
  expected = expected_variable_shapes()
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  if missing or unexpected:
    raise ValueError(
        f"{source}: variables do not match the FID InceptionV3 "
        f"({len(missing)} missing, e.g. {missing[:3]}; {len(unexpected)} unexpected, "
        f"e.g. {unexpected[:3]})")
  for key, shape in expected.items():
    if tuple(flat[key].shape) != tuple(shape):
      raise ValueError(
          f"{source}: {key} has shape {tuple(flat[key].shape)}, expected {tuple(shape)}")


def save_inception_variables(path: str, variables: Variables) -> None:
  """Writes variables to `path` (.npz or .msgpack) in tripjax's weight format."""
  flat = {key: np.asarray(value, np.float32) for key, value in
          traverse_util.flatten_dict(variables, sep="/").items()}
  _validate_flat(flat, "variables to save")
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  if path.endswith(".npz"):
    with open(path, "wb") as f:  # np.savez would append ".npz" to other names.
      # mypy lets the arrays' ** fill savez's `allow_pickle: bool`; no key is that name.
      np.savez(f, **{_FORMAT_KEY: np.array(WEIGHTS_FORMAT)}, **flat)  # type: ignore[arg-type]
  elif path.endswith(".msgpack"):
    payload = {"format": WEIGHTS_FORMAT,
               "variables": traverse_util.unflatten_dict(flat, sep="/")}
    with open(path, "wb") as f:
      f.write(serialization.msgpack_serialize(payload))
  else:
    raise ValueError(f"weight file must end in .npz or .msgpack, got {path!r}")


def _wrong_format(path: str, detail: str) -> ValueError:
  return ValueError(
      f"{path} is not a tripjax FID Inception weight file ({detail}). Download "
      f"{FID_WEIGHTS_URL} and convert it with `python -m "
      "tripjax.metrics.convert_inception --torch-weights FILE.pth --out inception_fid.npz`.")


def load_inception_variables(path: str) -> Variables:
  """Reads a weight file written by `save_inception_variables` / the converter.

  Returns:
    {"params": ..., "batch_stats": ...} of float32 jax arrays for `InceptionV3`.

  Raises:
    FileNotFoundError: no such file (the message says where to download from).
    ValueError: the file is not in tripjax's format (e.g. the raw .pth) or its
      variables do not match the network.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"no Inception weight file at {path!r}; download {FID_WEIGHTS_URL} and convert "
        "it with `python -m tripjax.metrics.convert_inception` (see its --help)")
  with open(path, "rb") as f:
    head = f.read(4)
  if path.endswith(".msgpack"):
    with open(path, "rb") as f:
      try:
        payload = serialization.msgpack_restore(f.read())
      except Exception as error:  # msgpack raises several unrelated types.
        raise _wrong_format(path, f"unreadable msgpack: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != WEIGHTS_FORMAT:
      raise _wrong_format(path, "missing format tag")
    flat = traverse_util.flatten_dict(payload["variables"], sep="/")
  elif head.startswith(b"PK"):  # .npz (and also PyTorch's zip checkpoints).
    with np.load(path, allow_pickle=False) as archive:
      if _FORMAT_KEY not in archive.files:
        detail = "no format tag"
        if any(name.endswith("data.pkl") for name in archive.files):
          detail = "this looks like a PyTorch checkpoint"
        raise _wrong_format(path, detail)
      tag = str(archive[_FORMAT_KEY])
      if tag != WEIGHTS_FORMAT:
        raise _wrong_format(path, f"format tag {tag!r}, expected {WEIGHTS_FORMAT!r}")
      flat = {key: archive[key] for key in archive.files if key != _FORMAT_KEY}
  else:
    raise _wrong_format(path, "neither .npz nor .msgpack")
  flat = {key: np.asarray(value) for key, value in flat.items()}
  _validate_flat(flat, path)
  return jax.tree_util.tree_map(
      lambda a: jnp.asarray(a, jnp.float32), traverse_util.unflatten_dict(flat, sep="/"))
