"""Tests for tripjax/data.py: TFDS sets under `tfds.testing.mock_data`, offline digits."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tripjax import data

NUM_MOCK_EXAMPLES = 20


@pytest.fixture
def mock_tfds():
  with tfds.testing.mock_data(num_examples=NUM_MOCK_EXAMPLES,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield


# ---------------------------------------------------------------- TFDS (mocked)


@pytest.mark.parametrize("name, image_shape, label_shape", [
    ("celeb_a", (64, 64, 3), (40,)),
    ("cifar10", (32, 32, 3), ()),
    ("mnist", (28, 28, 1), ()),
])
def test_tfds_batches_shape_dtype_range(mock_tfds, name, image_shape, label_shape):
  dataset = data.load_dataset(name, "train")
  assert dataset.image_shape == image_shape
  batch_list = list(data.batches(dataset, 4, seed=0, epoch=0))
  assert len(batch_list) == data.num_batches(dataset, 4)
  for batch in batch_list:
    assert batch.shape == (4, *image_shape)
    assert batch.dtype == np.float32
    assert 0.0 <= batch.min() and batch.max() <= 1.0
  images, labels = next(data.batches(dataset, 4, seed=0, epoch=0, with_labels=True))
  np.testing.assert_array_equal(images, batch_list[0])
  assert labels.shape == (4, *label_shape)


def test_celeb_a_attributes_are_named_binary_floats(mock_tfds):
  dataset = data.load_dataset("celeb_a", "validation")
  assert len(dataset.attribute_names) == 40
  assert "Smiling" in dataset.attribute_names
  _, labels = dataset.read(np.arange(5))
  assert labels.dtype == np.float32
  assert set(np.unique(labels)) <= {0.0, 1.0}


def test_rgb_sets_keep_256_levels_and_mnist_is_binarized(mock_tfds):
  cifar = data.load_dataset("cifar10", "test")[:]
  np.testing.assert_allclose(cifar * 255, np.round(cifar * 255), atol=1e-4)
  assert len(np.unique(cifar)) > 2
  mnist = data.load_dataset("mnist", "test")
  assert mnist.binarized and mnist.likelihood == "bernoulli"
  assert set(np.unique(mnist[:])) <= {0.0, 1.0}


@pytest.mark.parametrize("name", ["celeb_a", "cifar10"])
def test_batches_deterministic_and_epochs_differ(mock_tfds, name):
  dataset = data.load_dataset(name, "train")
  first = np.stack(list(data.batches(dataset, 4, seed=3, epoch=1)))
  again = np.stack(list(data.batches(data.load_dataset(name, "train"), 4, seed=3,
                                     epoch=1)))
  np.testing.assert_array_equal(first, again)
  other_epoch = np.stack(list(data.batches(dataset, 4, seed=3, epoch=2)))
  assert not np.array_equal(first, other_epoch)
  other_seed = np.stack(list(data.batches(dataset, 4, seed=4, epoch=1)))
  assert not np.array_equal(first, other_seed)


def test_validation_is_carved_from_train_for_cifar10(mock_tfds):
  train = data.load_dataset("cifar10", "train")
  validation = data.load_dataset("cifar10", "validation")
  assert len(validation) == NUM_MOCK_EXAMPLES // 10
  assert len(train) + len(validation) == NUM_MOCK_EXAMPLES


def test_celeb_a_crop_keeps_only_the_centre():
  """A 218x178 image: grey 0.5 outside the 160x160 centre crop, a pattern inside."""
  height, width, crop = 218, 178, data.CELEB_A_CROP_SIZE
  top, left = round((height - crop) / 2), round((width - crop) / 2)
  rows = np.arange(crop)[:, None, None]
  pattern = np.where((rows // 40) % 2 == 0, 255, 0) * np.ones((1, crop, 3))
  image = np.full((height, width, 3), 128, np.uint8)
  image[top:top + crop, left:left + crop] = pattern.astype(np.uint8)

  def fake_source(self, split, **kwargs):
    del self, split, kwargs
    return [{"image": image, "attributes": {"Smiling": True, "Male": False}}] * 3

  with tfds.testing.mock_data(as_data_source_fn=fake_source,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    output = data.load_dataset("celeb_a", "test")[0]
  assert output.shape == (64, 64, 3)
  # The corner pixels see only the pattern (0 or 1), never the grey border (0.5).
  for corner in [output[0, 0], output[0, -1], output[-1, 0], output[-1, -1]]:
    assert np.all(np.abs(corner - 0.5) > 0.4), corner
  # 160 -> 64: each 40-row band is 16 output rows; band centres are pure.
  np.testing.assert_allclose(output[8], 1.0, atol=1e-6)
  np.testing.assert_allclose(output[24], 0.0, atol=1e-6)


def test_center_crop_and_resize_matches_direct_resize_of_the_crop():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
  from PIL import Image
  expected = np.asarray(Image.fromarray(image[29:189, 9:169]).resize(
      (64, 64), resample=Image.BILINEAR))
  np.testing.assert_array_equal(data.center_crop_and_resize(image), expected)


# ---------------------------------------------------------------- offline digits


def test_digits_split_sizes_and_disjointness():
  splits = {split: data.load_dataset("digits", split) for split in data.SPLITS}
  assert {s: len(d) for s, d in splits.items()} == data.DIGITS_SPLIT_SIZES
  index_sets = [set(data._digits_split_indices(split).tolist())
                for split in data.SPLITS]
  assert sum(len(s) for s in index_sets) == len(set().union(*index_sets)) == 5000
  # Disjoint as images too (real digits have no exact duplicates across splits).
  train = {image.tobytes() for image in splits["train"].images}
  assert not any(image.tobytes() in train for image in splits["test"].images)


def test_digits_is_real_mnist():
  raw = data.load_dataset("digits", "train", binarize=False)
  images = raw.images
  assert images.shape == (4000, 28, 28, 1) and images.dtype == np.float32
  assert images.min() == 0.0 and images.max() == 1.0
  # MNIST's mean pixel intensity is about 0.13; ink sits in the centre.
  assert 0.11 < images.mean() < 0.15
  assert images[:, :3].mean() < 0.01 < 0.2 < images[:, 10:18, 10:18].mean()
  # Every class is present in about the right proportion.
  assert np.bincount(raw.labels, minlength=10).min() > 300
  binarized = data.load_dataset("digits", "train")
  assert binarized.binarized and set(np.unique(binarized.images)) == {0.0, 1.0}
  np.testing.assert_array_equal(binarized.images, (images > 0.5).astype(np.float32))


def test_digits_batches_cover_epoch_once_and_remainder():
  dataset = data.load_dataset("digits", "validation")
  batch_list = list(data.batches(dataset, 64, seed=0, epoch=0, drop_remainder=False))
  assert len(batch_list) == data.num_batches(dataset, 64, drop_remainder=False) == 8
  assert batch_list[-1].shape[0] == 500 - 7 * 64
  seen = np.concatenate(batch_list)
  assert len({image.tobytes() for image in seen}) == len(
      {image.tobytes() for image in dataset.images})
  ordered = next(data.batches(dataset, 10, seed=0, epoch=0, shuffle=False))
  np.testing.assert_array_equal(ordered, dataset[:10])


def test_take_and_subset_read_the_same_examples():
  dataset = data.load_dataset("digits", "test")
  first = dataset.take(50)
  assert len(first) == 50 and first.likelihood == dataset.likelihood
  np.testing.assert_array_equal(first.images, dataset[:50])
  assert len(dataset.take(10_000)) == len(dataset)
  picked = dataset.subset([7, 3, 3])
  np.testing.assert_array_equal(picked[:], dataset[np.array([7, 3, 3])])
  np.testing.assert_array_equal(picked.read([1])[1], dataset.read([3])[1])


# ---------------------------------------------------------------- errors


def test_unknown_name_lists_valid_ones():
  with pytest.raises(ValueError, match="digits.*mnist.*cifar10.*celeb_a"):
    data.load_dataset("imagenet", "train")


def test_unknown_split():
  with pytest.raises(ValueError, match="train, validation, test"):
    data.load_dataset("digits", "dev")


@pytest.mark.parametrize("kwargs", [
    dict(name=3, split="train"),
    dict(name="digits", split=0),
    dict(name="digits", split="train", binarize="yes"),
    dict(name="digits", split="train", data_dir=1.5),
])
def test_wrong_argument_types(kwargs):
  name, split = kwargs.pop("name"), kwargs.pop("split")
  with pytest.raises(TypeError):
    data.load_dataset(name, split, **kwargs)


def test_batches_argument_errors():
  dataset = data.load_dataset("digits", "test")
  with pytest.raises(TypeError, match="ImageDataset"):
    next(data.batches(np.zeros((4, 28, 28, 1)), 2, seed=0, epoch=0))
  with pytest.raises(ValueError, match="batch_size"):
    next(data.batches(dataset, 0, seed=0, epoch=0))
  with pytest.raises(TypeError, match="seed"):
    next(data.batches(dataset, 2, seed=0.5, epoch=0))
  with pytest.raises(ValueError, match="epoch"):
    next(data.batches(dataset, 2, seed=0, epoch=-1))


def test_missing_data_dir_says_how_to_get_data(tmp_path):
  with pytest.raises(data.DataNotFoundError, match="(?s)does not exist.*tfds build cifar10"):
    data.load_dataset("cifar10", "train", data_dir=tmp_path / "absent")


def test_unprepared_data_dir_says_how_to_get_celeb_a(tmp_path):
  with pytest.raises(data.DataNotFoundError) as error:
    data.load_dataset("celeb_a", "train", data_dir=tmp_path)
  message = str(error.value)
  assert "tfds build celeb_a" in message and "download=True" in message
  assert "img_align_celeba.zip" in message  # the manual-download hint


# ---------------------------------------------------------------- attributes


def test_celeb_a_conditions_are_read_by_name(mock_tfds):
  dataset = data.load_dataset("celeb_a", "train")
  assert dataset.attribute_names == data.CELEB_A_LABEL_NAMES
  _, labels = dataset.read(np.arange(len(dataset)))
  attributes = data.attributes_from_labels("celeb_a", labels)
  specs = data.attribute_specs("celeb_a")
  assert len(specs) == 14 and attributes.shape == (len(dataset), 14)
  assert attributes.dtype == np.float32
  for column, spec in enumerate(specs):
    assert spec.value_names == ("0", "1")
    expected = labels[:, dataset.attribute_names.index(spec.name)]
    np.testing.assert_array_equal(attributes[:, column], expected)


def test_digit_attributes_follow_the_label():
  dataset = data.load_dataset("digits", "test")
  attributes = data.attributes_from_labels("digits", dataset.labels)
  assert [spec.name for spec in data.attribute_specs("digits")] == [
      "digit", "even", "at_least_5"]
  assert [spec.num_values for spec in data.attribute_specs("digits")] == [10, 2, 2]
  assert attributes.shape == (500, 3) and attributes.dtype == np.float32
  for label, (digit, even, at_least_5) in zip(dataset.labels, attributes):
    assert (digit, even, at_least_5) == (label, label % 2 == 0, label >= 5)


def test_attribute_errors_name_the_valid_choices():
  with pytest.raises(ValueError, match="digits, mnist, celeb_a"):
    data.attribute_specs("cifar10")
  with pytest.raises(ValueError, match=r"\(n, 40\)"):
    data.attributes_from_labels("celeb_a", np.zeros((3, 14)))
  with pytest.raises(ValueError, match="0..9"):
    data.attributes_from_labels("digits", np.array([3, 10]))
  with pytest.raises(ValueError, match="fraction"):
    data.hidden_attribute_mask(4, 3, 1.5, seed=0)


def test_hidden_attribute_mask_is_fixed_per_example_by_the_seed():
  mask = data.hidden_attribute_mask(20_000, 3, 0.5, seed=7)
  assert mask.shape == (20_000, 3) and mask.dtype == np.bool_
  # Bernoulli(0.5) per entry: the share is within 4 standard errors of 0.5.
  assert abs(mask.mean() - 0.5) < 4 * np.sqrt(0.25 / mask.size)
  # Row i does not depend on how many rows were asked for: resume and shard safe.
  np.testing.assert_array_equal(data.hidden_attribute_mask(100, 3, 0.5, seed=7),
                                mask[:100])
  assert not np.array_equal(data.hidden_attribute_mask(100, 3, 0.5, seed=8), mask[:100])
  assert not data.hidden_attribute_mask(50, 3, 0.0, seed=7).any()
  assert data.hidden_attribute_mask(50, 3, 1.0, seed=7).all()
  attributes = data.attributes_from_labels("digits", np.arange(10, dtype=np.int32))
  hidden = data.hidden_attribute_mask(10, 3, 0.5, seed=7)
  masked = data.hide_attributes(attributes, hidden)
  np.testing.assert_array_equal(np.isnan(masked), hidden)
  np.testing.assert_array_equal(masked[~hidden], attributes[~hidden])


# ---------------------------------------------------------------- Fashion-MNIST


def _write_idx(path, array: np.ndarray, gzipped: bool) -> None:
  """An IDX file written by hand from its spec (magic, big-endian sizes, data)."""
  import gzip
  codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
  header = bytes([0, 0, codes[array.dtype], array.ndim])
  header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
  content = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
  opener = gzip.open if gzipped else open
  with opener(path, "wb") as file:
    file.write(content)


@pytest.fixture(scope="module")
def fashion_idx_dir(tmp_path_factory):
  """A tiny Fashion-MNIST in IDX files: 20 train (gzipped) and 10 test (plain) images."""
  directory = tmp_path_factory.mktemp("fashion_idx")
  rng = np.random.default_rng(0)
  arrays = {}
  for split, count, gzipped in (("train", 20, True), ("test", 10, False)):
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images_file, labels_file = data.FASHION_MNIST_FILES[split]
    suffix = ".gz" if gzipped else ""
    _write_idx(directory / (images_file + suffix), images, gzipped)
    _write_idx(directory / (labels_file + suffix), labels, gzipped)
    arrays[split] = images, labels
  return directory, arrays


def test_read_idx_round_trips_and_rejects_bad_files(tmp_path):
  array = np.arange(-6, 18, dtype=np.int32).reshape(2, 3, 4)
  for gzipped in (False, True):
    path = tmp_path / ("a.idx.gz" if gzipped else "a.idx")
    _write_idx(path, array, gzipped)
    read = data.read_idx(path)
    assert read.dtype == np.int32 and read.shape == (2, 3, 4)
    np.testing.assert_array_equal(read, array)
  (tmp_path / "bad").write_bytes(b"PK\x03\x04rest")
  with pytest.raises(ValueError, match="not an IDX file"):
    data.read_idx(tmp_path / "bad")
  (tmp_path / "short").write_bytes((tmp_path / "a.idx").read_bytes()[:-4])
  with pytest.raises(ValueError, match="header says shape"):
    data.read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_files_validation_is_last_tenth(fashion_idx_dir):
  directory, arrays = fashion_idx_dir
  train_images, train_labels = arrays["train"]
  test_images, test_labels = arrays["test"]
  splits = {split: data.load_dataset("fashion_mnist", split, data_dir=directory,
                                     binarize=False) for split in data.SPLITS}
  assert [len(splits[split]) for split in data.SPLITS] == [18, 2, 10]
  expected = {"train": (train_images[:18], train_labels[:18]),
              "validation": (train_images[18:], train_labels[18:]),
              "test": (test_images, test_labels)}
  for split, (images, labels) in expected.items():
    dataset = splits[split]
    assert dataset.image_shape == (28, 28, 1) and not dataset.binarized
    np.testing.assert_array_equal(dataset.images[..., 0] * 255, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.labels.dtype == np.int32
  binary = data.load_dataset("fashion_mnist", "validation", data_dir=directory)
  assert binary.binarized and binary.likelihood == "bernoulli"
  np.testing.assert_array_equal(binary.images[..., 0], train_images[18:] > 127.5)


def test_fashion_mnist_idx_files_win_over_tfds(mock_tfds, fashion_idx_dir):
  directory, arrays = fashion_idx_dir
  dataset = data.load_dataset("fashion_mnist", "test", data_dir=directory,
                              binarize=False)
  np.testing.assert_array_equal(dataset.images[..., 0] * 255, arrays["test"][0])


def test_fashion_mnist_from_tfds(mock_tfds):
  train = data.load_dataset("fashion_mnist", "train")
  validation = data.load_dataset("fashion_mnist", "validation")
  assert len(validation) == NUM_MOCK_EXAMPLES // 10
  assert len(train) + len(validation) == NUM_MOCK_EXAMPLES
  images, labels = next(data.batches(train, 4, seed=0, epoch=0, with_labels=True))
  assert images.shape == (4, 28, 28, 1) and labels.shape == (4,)
  assert set(np.unique(images)) <= {0.0, 1.0}


def test_missing_fashion_mnist_is_a_one_line_error_saying_how(tmp_path):
  with pytest.raises(data.DataNotFoundError) as error:
    data.load_dataset("fashion_mnist", "train", data_dir=tmp_path)
  message = str(error.value)
  assert "\n" not in message
  assert "apt-get install dataset-fashion-mnist" in message
  assert "tfds build fashion_mnist" in message and str(tmp_path) in message
