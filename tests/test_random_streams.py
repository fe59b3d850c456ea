"""Named random streams (tripjax/training/rng.py): every key a training run passes from
the host into its compiled functions serves one purpose only.

Short VAE, GAN and CVAE runs record the keys at the functions that receive them (the
initial state, every train step inside the compiled step, evaluations, refits, image
grids, violation requests, classifier FD samples); no key may serve two purposes, and
no two train steps share a key.
"""
import ast
import collections
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import test_cvae_training
from tests import test_gan_training
from tests import test_training
from tripjax.configs import digits_classifier
from tripjax.metrics import classifier_fd
from tripjax.metrics import sampling
from tripjax.training import autoencoders
from tripjax.training import cvae
from tripjax.training import gan
from tripjax.training import loop
from tripjax.training import rng as rng_lib
from tripjax.training import vae

TRAINING = pathlib.Path(__file__).resolve().parents[1] / "tripjax" / "training"


def _key_bytes(key) -> bytes:
  key = jnp.asarray(key)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key).tobytes()


class KeyLog:
  """Keys by purpose, as bytes."""

  def __init__(self):
    self.by_purpose = collections.defaultdict(list)

  def add(self, purpose: str, key) -> None:
    self.by_purpose[purpose].append(_key_bytes(key))

  def owners(self) -> dict[bytes, set[str]]:
    owners = collections.defaultdict(set)
    for purpose, keys in self.by_purpose.items():
      for key in keys:
        owners[key].add(purpose)
    return owners

  def assert_one_purpose_per_key(self) -> None:
    shared = {purposes for purposes in map(frozenset, self.owners().values())
              if len(purposes) > 1}
    assert not shared, f"keys used for several purposes: {shared}"


def _record_argument(monkeypatch, module, name, purpose, log, position, keyword="key"):
  """Wraps module.name to log its key argument (positional index or keyword)."""
  original = getattr(module, name)

  def recording(*args, **kwargs):
    log.add(purpose, kwargs[keyword] if keyword in kwargs else args[position])
    return original(*args, **kwargs)

  monkeypatch.setattr(module, name, recording)


@pytest.fixture
def key_log(monkeypatch):
  """Records the keys of the purposes every trainer shares: init and train steps."""
  log = KeyLog()
  init_key = rng_lib.RandomStreams.init_key

  def recording_init_key(self):
    log.add("init", self.key("init"))  # the threefry key the RBG key is drawn from
    return init_key(self)

  monkeypatch.setattr(rng_lib.RandomStreams, "init_key", recording_init_key)
  compile_step = loop.compile_step

  def recording_compile_step(train_step, mesh, batches_per_step=1):
    def logged_step(state, batch, key):
      jax.debug.callback(lambda key: log.add("train_step", key), key)
      return train_step(state, batch, key)
    return compile_step(logged_step, mesh, batches_per_step)

  monkeypatch.setattr(loop, "compile_step", recording_compile_step)
  return log


def _check(log: KeyLog, purposes: set[str], num_steps: int) -> None:
  assert set(log.by_purpose) == purposes  # every purpose was seen (the test can fail)
  assert len(set(log.by_purpose["train_step"])) == num_steps  # a new key every step
  log.assert_one_purpose_per_key()


def test_a_vae_run_uses_each_key_for_one_purpose(key_log, monkeypatch, tmp_path):
  _record_argument(monkeypatch, vae, "evaluate", "evaluation", key_log, 4)
  _record_argument(monkeypatch, autoencoders, "refit_prior", "refit", key_log, 3)
  _record_argument(monkeypatch, vae, "image_outputs", "image_grid", key_log, 3)
  vae.train_and_evaluate(test_training.tiny_config(), str(tmp_path))  # 8 steps
  _check(key_log, {"init", "train_step", "evaluation", "refit", "image_grid"}, 8)
  assert len(set(key_log.by_purpose["refit"])) == 2  # after epochs 1 and 2


def test_a_gan_run_uses_each_key_for_one_purpose(key_log, monkeypatch, tmp_path):
  classifier_workdir = str(tmp_path / "classifier")
  classifier_fd.save_classifier(
      classifier_workdir, classifier_fd.init_params(jax.random.key(0), feature_dim=16),
      {"config": {}, "test_accuracy": 0.1})
  config = test_gan_training.tiny_config()
  config.eval.classifier_fd_every_epochs = 1
  config.eval.classifier_fd_num_samples = 16
  config.eval.classifier_workdir = classifier_workdir
  _record_argument(monkeypatch, gan, "sample_images", "samples", key_log, 2)
  _record_argument(monkeypatch, sampling, "classifier_fd_from_sampler", "sample_metric",
                   key_log, None)
  gan.train_and_evaluate(config, str(tmp_path / "run"))
  _check(key_log, {"init", "train_step", "samples", "sample_metric"},
         test_gan_training.NUM_STEPS)


def test_a_cvae_run_uses_each_key_for_one_purpose(key_log, monkeypatch, tmp_path):
  classifier_workdir = str(tmp_path / "classifier")
  classifier_fd.save_classifier(
      classifier_workdir,
      classifier_fd.init_params(jax.random.key(0),
                                digits_classifier.get_config().model.feature_dim),
      {"config": {}, "test_accuracy": 0.1})
  _record_argument(monkeypatch, cvae, "evaluate", "evaluation", key_log, 4)
  _record_argument(monkeypatch, autoencoders, "refit_prior", "refit", key_log, 3)
  _record_argument(monkeypatch, cvae, "image_outputs", "image_grid", key_log, 4)
  _record_argument(monkeypatch, cvae, "violation_metrics", "request", key_log, 4)
  cvae.train_and_evaluate(
      test_cvae_training.tiny_config(classifier_workdir=classifier_workdir),
      str(tmp_path / "run"))  # 8 steps
  _check(key_log, {"init", "train_step", "evaluation", "refit", "image_grid",
                   "request"}, 8)


def test_streams_are_distinct_and_stable():
  streams = rng_lib.RandomStreams(3)
  keys = [_key_bytes(streams.key(name)) for name in rng_lib.STREAMS]
  assert len(set(keys)) == len(rng_lib.STREAMS)
  assert _key_bytes(streams.key("refit", 4)) == _key_bytes(
      jax.random.fold_in(streams.key("refit"), 4))
  assert _key_bytes(rng_lib.RandomStreams(3).key("evaluation")) == keys[2]
  assert _key_bytes(rng_lib.RandomStreams(4).key("evaluation")) != keys[2]
  init_key = streams.init_key()
  assert str(jax.random.key_impl(init_key)) == "rbg"
  assert _key_bytes(init_key) == _key_bytes(rng_lib.RandomStreams(3).init_key())
  with pytest.raises(ValueError, match="no random stream 'eval'; streams: init"):
    streams.key("eval")


def test_only_the_streams_module_makes_keys_from_seeds():
  """No module of tripjax/training other than rng.py creates a key from a number."""
  makers = {"PRNGKey", "key"}
  found = []
  for path in sorted(TRAINING.glob("*.py")):
    if path.name == "rng.py":
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr in makers and isinstance(node.func.value, ast.Attribute)
          and node.func.value.attr == "random"):
        found.append(f"{path.name}:{node.lineno}")
  assert not found
