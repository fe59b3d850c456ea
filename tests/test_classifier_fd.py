"""Sanity tests for tripjax/metrics/classifier_fd.py (and tripjax/training/classifier.py).

Trains the FD classifier once per module with the stock config (as
`python -m train.train_classifier` does) into a temporary workdir. The checks
can fail: real held-out digits must score far lower than noise, blurred and
pixel-shuffled digits, and a VAE's prior samples must score lower after training
than at initialization.
"""

import jax
from jax.experimental.compilation_cache import compilation_cache
import numpy as np
import pytest
from scipy import ndimage

from tripjax.configs import digits_classifier
from tripjax.configs import digits_vae_trip
from tripjax import data
from tripjax.metrics import classifier_fd
from tripjax.metrics import sampling
from tripjax.training import classifier as classifier_trainer
from tripjax.training import trainers
from tripjax.training import vae

# Real-vs-real is ~2-4 with the default config; corruptions score 80-600.
MAX_REAL_FD = 10.0
MIN_CORRUPTION_RATIO = 10.0


def _classifier_config():
  config = digits_classifier.get_config()
  config.train.progress_bar = False
  return config


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("classifier"))
  params, metadata = classifier_trainer.get_or_train(_classifier_config(), workdir,
                                                     log=lambda _: None)
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
  cached, _ = classifier_trainer.get_or_train(_classifier_config(), workdir,
                                              log=lines.append)
  assert "Using the cached classifier" in lines[0]
  for key in ("conv1", "features", "logits"):
    np.testing.assert_array_equal(cached[key]["kernel"], params[key]["kernel"])


def test_features_shape_and_uint8_input(classifier):
  _, params, _ = classifier
  images = data.load_dataset("digits", "test", binarize=False).images[:7]
  features = classifier_fd.classifier_features(params, images, batch_size=3)
  assert features.shape == (7, digits_classifier.get_config().model.feature_dim)
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


def small_digits_vae_config():
  """The quickstart (TRIP prior, all 4,000 train digits) made small enough to train for
  248 steps (4 epochs of batch 64) in seconds: latent 8, widths (16, 32), N = 5, m = 4."""
  config = digits_vae_trip.get_config()
  config.data.num_eval_examples = 100
  config.model.latent_dim = 8
  config.model.widths = (16, 32)
  config.prior.num_components = 5
  config.prior.rank = 4
  config.prior.refit_num_examples = 1000
  config.train.num_epochs = 4
  config.train.checkpoint_every_steps = 1000  # epoch ends only: 62, 124, 186, 248
  config.train.max_checkpoints_to_keep = 5
  config.train.progress_bar = False
  config.eval.batch_size = 100
  config.eval.iwae_samples = 2
  config.eval.iwae_samples_per_chunk = 2
  config.eval.num_prior_samples = 16
  return config


@pytest.fixture
def persistent_compilation_cache(tmp_path_factory):
  """An XLA cache on disk for one test: programs that the trainer and train.fid rebuild
  per call (the initializer, the prior sampler) compile only once."""
  settings = {"jax_compilation_cache_dir": str(tmp_path_factory.mktemp("xla_cache")),
              "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  previous = {name: getattr(jax.config, name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield
  for name, value in previous.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


@pytest.mark.slow
@pytest.mark.usefixtures("persistent_compilation_cache")
def test_fd_of_prior_samples_decreases_as_a_vae_trains(classifier, tmp_path):
  """Classifier FD of 1,000 prior samples (decoder means) vs the grey-level test split:
  at initialization, after epoch 1 and after epoch 4 of a small digits VAE-TRIP."""
  _, params, _ = classifier
  config = small_digits_vae_config()
  workdir = str(tmp_path)
  score = lambda sample_fn, reference: sampling.classifier_fd_from_sampler(
      sample_fn, reference, params, num_samples=1000, batch_size=500, progress=False)

  config.train.max_steps = 0  # stops at once with a checkpoint of the initial state
  vae.train_and_evaluate(config, workdir)
  config.train.max_steps = None  # the same run, resumed to its end
  vae.train_and_evaluate(config, workdir)
  scores = {}
  for step in (0, 62, 248):
    sample_fn, reference, position = trainers.load_checkpoint_sampler(workdir, step=step)
    assert position.step == step
    scores[f"epoch {position.epoch}" if step else "init"] = score(sample_fn, reference)
  print("classifier FD of prior samples: "
        + ", ".join(f"{name} {value:.2f}" for name, value in scores.items()))
  # Measured (2 CPUs): init 957, epoch 1 639, epoch 4 263; real test vs train ~3.
  assert scores["epoch 1"] < 0.85 * scores["init"]
  assert scores["epoch 4"] < 0.7 * scores["epoch 1"]
  assert scores["epoch 4"] < 0.5 * scores["init"]
