"""Tests for sample metrics of samplers (tripjax/metrics/sampling.py), checkpoint samplers
(tripjax/training/trainers.py) and the `train.fid` command."""

import jax
import numpy as np
import pytest

from tripjax import data
from tripjax.metrics import classifier_fd
from tripjax.metrics import inception
from tripjax.metrics import sampling
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import trainers
from tripjax.training import vae
from train import fid

from test_training import tiny_config


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

  mean, cov = sampling.sampler_stats(_cycling_sampler(images), feature_fn, num_samples=23,
                                batch_size=10, progress=False)
  assert seen == [10, 10, 10]  # always full batches, surplus dropped afterwards
  assert mean.shape == (3,) and cov.shape == (3, 3)
  again = sampling.sampler_stats(_cycling_sampler(images), feature_fn, num_samples=23,
                            batch_size=10, progress=False)
  np.testing.assert_array_equal(mean, again[0])
  with pytest.raises(ValueError, match="num_samples"):
    sampling.sampler_stats(_cycling_sampler(images), feature_fn, num_samples=1, batch_size=10)


def test_classifier_fd_from_sampler_separates_digits_from_noise():
  params = classifier_fd.init_params(jax.random.key(0), feature_dim=16)
  test = data.load_dataset("digits", "test").images
  noise = np.random.default_rng(0).uniform(size=test.shape).astype(np.float32)
  kwargs = dict(num_samples=200, batch_size=100, progress=False)
  real = sampling.classifier_fd_from_sampler(_cycling_sampler(test), test, params, **kwargs)
  fake = sampling.classifier_fd_from_sampler(_cycling_sampler(noise), test, params, **kwargs)
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
  same = sampling.fid_from_sampler(lambda key, n: reference[:n], reference, "weights",
                              num_samples=40, batch_size=40, progress=False)
  assert 0.0 <= same < 1e-9
  assert calls == [("weights", 40, 40)] * 2  # reference, then one batch of samples
  darker = sampling.fid_from_sampler(lambda key, n: 0.5 * reference[:n], reference, "weights",
                                num_samples=40, batch_size=40, progress=False)
  assert darker > 0.05


def test_cli_requires_weights_and_a_training_workdir(tmp_path, capsys):
  assert fid.main(["--workdir", str(tmp_path)]) == 2
  assert "config field weights" in capsys.readouterr().err
  weights = str(tmp_path / "inception_fid.npz")
  inception.save_inception_variables(weights, inception.random_inception_variables(0))
  assert fid.main(["--workdir", str(tmp_path), f"--config.weights={weights}"]) == 2
  error = capsys.readouterr().err
  assert "config.json not found" in error and len(error.splitlines()) == 1
  assert not (tmp_path / "metrics.jsonl").exists()


# ------------------------------------------------------- on a tiny trained VAE workdir


def tiny_vae_config():
  """tests/test_training.py's tiny quickstart, one epoch of 4 steps, checkpoints at
  steps 2 and 4, no prior refit."""
  config = tiny_config(num_epochs=1, checkpoint_every_steps=2, log_every_steps=4)
  config.data.num_eval_examples = 32
  config.prior.refit_every_epochs = 0
  config.eval.iwae_samples = 2
  config.eval.iwae_samples_per_chunk = 2
  return config


@pytest.fixture(scope="module")
def tiny_vae_workdir(tmp_path_factory):
  """A finished tiny train.vae run (TRIP prior): checkpoints at steps 2 and 4."""
  workdir = str(tmp_path_factory.mktemp("tiny_vae"))
  vae.train_and_evaluate(tiny_vae_config(), workdir)
  return workdir


def test_load_checkpoint_sampler_restores_the_run(tiny_vae_workdir):
  sample_fn, reference, position = trainers.load_checkpoint_sampler(tiny_vae_workdir)
  assert position == loop.Position(step=4, epoch=1, batches_done=0)
  samples = np.asarray(sample_fn(jax.random.key(0), 6))
  assert samples.shape == (6, 28, 28, 1) and samples.dtype == np.float32
  assert 0.0 <= samples.min() and samples.max() <= 1.0
  np.testing.assert_array_equal(samples, np.asarray(sample_fn(jax.random.key(0), 6)))
  # Reference: the whole digits test split at grey levels (decoder means are grey).
  assert reference.shape == (500, 28, 28, 1)
  assert 0.0 < np.mean((reference > 0) & (reference < 1))
  # An earlier checkpoint: other parameters, so other images from the same key.
  earlier_sample_fn, _, earlier = trainers.load_checkpoint_sampler(tiny_vae_workdir,
                                                                  step=2)
  assert earlier == loop.Position(step=2, epoch=0, batches_done=2)
  assert np.abs(np.asarray(earlier_sample_fn(jax.random.key(0), 6)) - samples).max() > 0


def test_cli_classifier_fd_of_a_checkpoint(tiny_vae_workdir, tmp_path):
  classifier_workdir = str(tmp_path / "classifier")
  params = classifier_fd.init_params(jax.random.key(0), feature_dim=16)
  classifier_fd.save_classifier(classifier_workdir, params, {"config": {}})
  assert fid.main(["--workdir", tiny_vae_workdir, "--config.metric=classifier_fd",
                   f"--config.classifier_workdir={classifier_workdir}",
                   "--config.num_samples=40", "--config.batch_size=20",
                   "--config.step=2"]) == 0
  record = metric_writer.MetricWriter(tiny_vae_workdir).read()[-1]
  assert record["split"] == "classifier_fd" and record["step"] == 2
  assert record["num_samples"] == 40 and np.isfinite(record["classifier_fd"])
  assert record["classifier_fd"] > 0.0


def test_cli_fid_of_a_checkpoint(tiny_vae_workdir, tmp_path, monkeypatch):
  """--weights path of the CLI with a cheap stand-in for the Inception features."""
  def fake_features(variables, images, batch_size=50, progress=False):
    assert variables == "inception variables"
    images = np.asarray(images, np.float64)
    assert images.shape[1:] == (28, 28, 1)
    return np.stack([images.mean((1, 2, 3)), images.std((1, 2, 3))], axis=1)

  monkeypatch.setattr(inception, "load_inception_variables",
                      lambda path: "inception variables")
  monkeypatch.setattr(inception, "inception_features", fake_features)
  assert fid.main(["--workdir", tiny_vae_workdir, "--config.weights=inception.npz",
                   "--config.num_samples=30", "--config.batch_size=10",
                   "--config.seed=3"]) == 0
  record = metric_writer.MetricWriter(tiny_vae_workdir).read()[-1]
  assert record["split"] == "fid" and record["step"] == 4 and record["seed"] == 3
  assert np.isfinite(record["fid"]) and record["fid"] > 0.0
