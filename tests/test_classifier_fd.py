"""Sanity tests for tripjax/metrics/classifier_fd.py (and train/train_classifier.py).

Trains the FD classifier once per module with the default config (as
`python -m train.train_classifier` does) into a temporary workdir. The checks
can fail: real held-out digits must score far lower than noise, blurred and
pixel-shuffled digits.
"""

import numpy as np
import pytest
from scipy import ndimage

from tripjax import data
from tripjax.metrics import classifier_fd
from train import train_classifier

# Real-vs-real is ~2-4 with the default config; corruptions score 80-600.
MAX_REAL_FD = 10.0
MIN_CORRUPTION_RATIO = 10.0


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("classifier"))
  params, metadata = train_classifier.get_or_train_classifier(workdir, log=lambda _: None)
  return workdir, params, metadata


def _corruptions(images, seed=0):
  rng = np.random.default_rng(seed)
  permutation = rng.permutation(28 * 28)
  return {
      "uniform_noise": rng.uniform(size=images.shape).astype(np.float32),
      "blurred": ndimage.gaussian_filter(images, sigma=(0, 1.0, 1.0, 0)),
      "pixel_shuffled": images.reshape(len(images), -1)[:, permutation].reshape(images.shape),
  }


def test_classifier_is_accurate(classifier):
  _, _, metadata = classifier
  assert metadata["test_accuracy"] > 0.9
  assert metadata["test_accuracy_binarized"] > 0.9


@pytest.mark.parametrize("binarize", [True, False], ids=["binarized", "grey"])
def test_real_digits_score_far_lower_than_corrupted_ones(classifier, binarize):
  _, params, _ = classifier
  train = data.load_dataset("digits", "train", binarize=binarize).images
  test = data.load_dataset("digits", "test", binarize=binarize).images
  real = classifier_fd.classifier_frechet_distance(params, test, train)
  scores = {name: classifier_fd.classifier_frechet_distance(params, images, train)
            for name, images in _corruptions(test).items()}
  print(f"binarize={binarize}: real {real:.2f}, "
        + ", ".join(f"{name} {value:.2f}" for name, value in scores.items()))
  assert 0.0 <= real < MAX_REAL_FD
  for name, value in scores.items():
    assert value > MIN_CORRUPTION_RATIO * real, (name, value, real)


def test_identical_sets_score_zero_and_fd_is_symmetric(classifier):
  _, params, _ = classifier
  test = data.load_dataset("digits", "test").images
  train = data.load_dataset("digits", "train").images[:1000]
  assert classifier_fd.classifier_frechet_distance(params, test, test) == pytest.approx(
      0.0, abs=1e-6)
  np.testing.assert_allclose(classifier_fd.classifier_frechet_distance(params, test, train),
                             classifier_fd.classifier_frechet_distance(params, train, test),
                             rtol=1e-6)


def test_cache_is_reused(classifier):
  workdir, params, _ = classifier
  lines = []
  cached, _ = train_classifier.get_or_train_classifier(workdir, log=lines.append)
  assert "using cached classifier" in lines[0]
  for key in ("conv1", "features", "logits"):
    np.testing.assert_array_equal(cached[key]["kernel"], params[key]["kernel"])


def test_features_shape_and_uint8_input(classifier):
  _, params, _ = classifier
  images = data.load_dataset("digits", "test", binarize=False).images[:7]
  features = classifier_fd.classifier_features(params, images, batch_size=3)
  assert features.shape == (7, classifier_fd.TrainConfig.feature_dim)
  as_uint8 = np.rint(images * 255).astype(np.uint8)
  np.testing.assert_allclose(classifier_fd.classifier_features(params, as_uint8),
                             features, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((4, 28, 28, 3)), "C in"),
    (np.zeros((4, 32, 32, 1)), "28x28"),
    (np.zeros((4, 28, 28)), "shape"),
    (np.full((4, 28, 28, 1), 255.0), r"\[0, 1\]"),
    (np.full((4, 28, 28, 1), -1.0), r"\[0, 1\]"),
])
def test_bad_images_raise(classifier, bad, match):
  _, params, _ = classifier
  with pytest.raises(ValueError, match=match):
    classifier_fd.classifier_frechet_distance(params, bad, np.zeros((4, 28, 28, 1)))


def test_missing_or_wrong_cache_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match="train.train_classifier"):
    classifier_fd.load_classifier(str(tmp_path))
  (tmp_path / classifier_fd.WEIGHTS_FILENAME).write_bytes(b"\x00garbage")
  (tmp_path / classifier_fd.METADATA_FILENAME).write_text("{}")
  with pytest.raises(ValueError, match="classifier"):
    classifier_fd.load_classifier(str(tmp_path))
