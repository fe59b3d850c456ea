"""Tests for train/fid.py: sampler statistics, FID/classifier-FD plumbing, metrics file."""

import json

import jax
import numpy as np
import pytest

from tripjax import data
from tripjax.metrics import classifier_fd
from tripjax.metrics import inception
from train import fid


def _cycling_sampler(images):
  """sample_fn returning images[i:i+n] (wrapping), i drawn from the key."""
  def sample_fn(key, num_samples):
    start = int(jax.random.randint(key, (), 0, len(images)))
    return np.take(images, np.arange(start, start + num_samples), axis=0, mode="wrap")
  return sample_fn


def test_sampler_stats_counts_and_determinism():
  images = np.random.default_rng(0).uniform(size=(50, 4, 4, 1)).astype(np.float32)
  seen = []

  def feature_fn(batch):
    seen.append(batch.shape[0])
    return batch.reshape(batch.shape[0], -1)[:, :3]

  mean, cov = fid.sampler_stats(_cycling_sampler(images), feature_fn, num_samples=23,
                                batch_size=10, progress=False)
  assert seen == [10, 10, 10]  # always full batches, surplus dropped afterwards
  assert mean.shape == (3,) and cov.shape == (3, 3)
  again = fid.sampler_stats(_cycling_sampler(images), feature_fn, num_samples=23,
                            batch_size=10, progress=False)
  np.testing.assert_array_equal(mean, again[0])
  with pytest.raises(ValueError, match="num_samples"):
    fid.sampler_stats(_cycling_sampler(images), feature_fn, num_samples=1, batch_size=10)


def test_classifier_fd_from_sampler_separates_digits_from_noise():
  params = classifier_fd.init_params(jax.random.key(0), feature_dim=16)
  test = data.load_dataset("digits", "test").images
  noise = np.random.default_rng(0).uniform(size=test.shape).astype(np.float32)
  kwargs = dict(num_samples=200, batch_size=100, progress=False)
  real = fid.classifier_fd_from_sampler(_cycling_sampler(test), test, params, **kwargs)
  fake = fid.classifier_fd_from_sampler(_cycling_sampler(noise), test, params, **kwargs)
  assert 0.0 <= real < 1e-3 * fake


def test_fid_from_sampler_plumbing(monkeypatch):
  """Reference and sample features both go through inception_features (cheap stand-in)."""
  calls = []

  def fake_features(variables, images, batch_size=50, progress=False):
    calls.append((variables, np.shape(images)[0], batch_size))
    images = np.asarray(images, np.float64)
    return np.stack([images.mean((1, 2, 3)), images.std((1, 2, 3)),
                     images[:, 0, 0, 0]], axis=1)

  monkeypatch.setattr(inception, "inception_features", fake_features)
  reference = np.random.default_rng(2).uniform(size=(40, 8, 8, 3))
  same = fid.fid_from_sampler(lambda key, n: reference[:n], reference, "weights",
                              num_samples=40, batch_size=40, progress=False)
  assert 0.0 <= same < 1e-9
  assert calls == [("weights", 40, 40)] * 2  # reference, then one batch of samples
  darker = fid.fid_from_sampler(lambda key, n: 0.5 * reference[:n], reference, "weights",
                                num_samples=40, batch_size=40, progress=False)
  assert darker > 0.05


def test_append_metrics_writes_json_lines(tmp_path):
  fid.append_metrics(str(tmp_path), {"split": "fid", "fid": 12.5, "step": 3})
  fid.append_metrics(str(tmp_path), {"split": "fid", "fid": 11.0, "step": 4})
  lines = (tmp_path / fid.METRICS_FILENAME).read_text().splitlines()
  assert [json.loads(line)["fid"] for line in lines] == [12.5, 11.0]


def test_cli_requires_weights_and_reports_unwired_checkpoints(tmp_path):
  with pytest.raises(SystemExit):
    fid.main(["--workdir", str(tmp_path)])
  weights = str(tmp_path / "inception_fid.npz")
  inception.save_inception_variables(weights, inception.random_inception_variables(0))
  with pytest.raises(NotImplementedError, match="load_checkpoint_sampler"):
    fid.main(["--workdir", str(tmp_path), "--weights", weights])
