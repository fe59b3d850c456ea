"""Tests for tripjax/training/gan.py and train/gan.py: WGAN-GP / WGAN on the shared loop.

One tiny WGAN-GP-TRIP run (96 digits, batch 16, n_critic 2: 3 steps per epoch, 2
epochs) is shared by the tests that read a finished run; the WGAN (clipping, batch
norm) path runs through the command line. A persistent compilation cache serves the
subprocesses the programs this process compiled.
"""
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental.compilation_cache import compilation_cache
from PIL import Image

from tests.training_helpers import SimulatedKill
from tests.training_helpers import leaves
from tests.training_helpers import kill_after
from tripjax import data as data_lib
from tripjax.configs import base_gan
from tripjax.configs import celeba_wgan_trip
from tripjax.configs import celeba_wgangp_trip
from tripjax.configs import cifar10_wgangp_trip
from tripjax.configs import digits_wgangp_trip
from tripjax.metrics import classifier_fd
from tripjax.training import gan
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import trainers
from train import fid
from train import gan as train_gan

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PATH = os.path.join(REPO_ROOT, "configs", "digits_wgangp_trip.py")
NUM_STEPS = 6  # 96 examples / (16 per batch * 2 batches per step) * 2 epochs


def tiny_config(**train_overrides):
  """The quickstart shrunk to seconds: 96 digits, batch 16, n_critic 2, latent 4."""
  config = digits_wgangp_trip.get_config()
  config.data.num_train_examples = 96
  config.model.latent_dim = 4
  config.model.widths = (8, 4)
  config.prior.num_components = 3
  config.prior.rank = 2
  config.gan.n_critic = 2
  config.train.num_epochs = 2
  config.train.batch_size = 16
  config.train.checkpoint_every_steps = 4
  config.train.log_every_steps = 1
  config.train.progress_bar = False
  config.eval.every_epochs = 1
  config.eval.num_samples = 16  # the grid's program also draws the FD test's samples
  config.eval.batch_size = 16
  for name, value in train_overrides.items():
    config.train[name] = value
  return config


def _overrides(config, defaults):
  """`--config.<field>=<value>` flags that turn `defaults` into `config`."""
  flat = dict(_flatten(config.to_dict()))
  flat_defaults = dict(_flatten(defaults.to_dict()))
  return [f"--config.{name}={value!r}".replace(" ", "")
          for name, value in flat.items() if flat_defaults[name] != value]


def _flatten(tree, prefix=""):
  for name, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{name}.")
    else:
      yield f"{prefix}{name}", value


@pytest.fixture(scope="module", autouse=True)
def compilation_cache_dir(tmp_path_factory):
  """A persistent XLA cache for this module's processes (as in tests/test_training.py)."""
  cache_dir = str(tmp_path_factory.mktemp("jax_compilation_cache"))
  settings = {"jax_compilation_cache_dir": cache_dir,
              "jax_persistent_cache_min_compile_time_secs": 0.0,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  previous = {name: getattr(jax.config, name) for name in settings}
  for name, value in settings.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield cache_dir
  for name, value in previous.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()


def _subprocess_environment(cache_dir, devices=None):
  """The environment of a command-line run: the shared compilation cache and, as
  its programs are tiny, XLA's fastest compilation (-O0; it runs them slower)."""
  flags = ["--xla_backend_optimization_level=0"]
  if devices is not None:
    flags.append(f"--xla_force_host_platform_device_count={devices}")
  return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache_dir,
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", XLA_FLAGS=" ".join(flags))


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
  """Two epochs (3 steps each) of the tiny config, start to end."""
  workdir = str(tmp_path_factory.mktemp("gan_uninterrupted"))
  state = gan.train_and_evaluate(tiny_config(), workdir)
  return workdir, state


def test_run_writes_metrics_sample_grids_and_checkpoints(uninterrupted_run):
  workdir, state = uninterrupted_run
  records = metric_writer.MetricWriter(workdir).read()
  train_records = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train_records] == list(range(1, NUM_STEPS + 1))
  assert [r["epoch"] for r in train_records] == [1] * 3 + [2] * 3
  for record in train_records:
    assert set(record) >= {"critic_loss", "wasserstein", "gradient_penalty",
                           "critic_grad_norm", "generator_loss", "generator_grad_norm",
                           "prior_grad_norm", "prior_log_prob", "reward_std"}
    # critic loss = -(Wasserstein estimate) + penalty, both means over n_critic updates
    np.testing.assert_allclose(record["critic_loss"],
                               record["gradient_penalty"] - record["wasserstein"],
                               rtol=1e-4, atol=1e-5)
    assert record["gradient_penalty"] >= 0 and record["prior_grad_norm"] > 0
  for epoch in (1, 2):
    grid = Image.open(os.path.join(workdir, "images", f"epoch_{epoch:03d}_samples.png"))
    assert grid.mode == "L" and grid.size == (2 * (4 * 30 + 2),) * 2  # 4x4, scale 2
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "4", "6"]
  with open(os.path.join(workdir, "config.json")) as file:
    assert json.load(file)["task"] == "gan"
  # Adam counts: n_critic critic updates and one generator update per step.
  assert int(optax.tree.get(state.critic_opt_state, "count")) == 2 * NUM_STEPS
  for part in ("generator", "prior"):
    assert int(optax.tree.get(state.generator_opt_state.inner_states[part],
                              "count")) == NUM_STEPS
  assert state.batch_stats == {}  # layer-norm critic


def test_killed_run_resumes_bit_identically(uninterrupted_run, tmp_path):
  expected_workdir, expected_state = uninterrupted_run
  workdir = str(tmp_path)
  # Checkpoints at 3 (epoch end) and 4; killed after step 5, mid epoch 2.
  with pytest.raises(SimulatedKill):
    gan.train_and_evaluate(tiny_config(), workdir, step_hooks=[kill_after(5)])
  assert loop.restore_checkpoint(workdir, expected_state)[1] == loop.Position(
      step=4, epoch=1, batches_done=2)
  state = gan.train_and_evaluate(tiny_config(), workdir)
  for leaf, expected in zip(leaves(state), leaves(expected_state), strict=True):
    np.testing.assert_array_equal(leaf, expected)
  assert (metric_writer.MetricWriter(workdir).read()
          == metric_writer.MetricWriter(expected_workdir).read())


def test_trained_prior_moved_and_a_frozen_one_would_not(uninterrupted_run):
  """The learnable prior of the run left its initial values; the optimizer of a
  frozen prior ("F") turns every prior gradient into a zero update."""
  _, state = uninterrupted_run
  config = tiny_config()
  model = gan.build_model(config, (28, 28, 1))
  initial = gan.init_state(model, gan.make_optimizers(config),
                           jax.random.fold_in(jax.random.PRNGKey(0), 1))
  trained = jax.tree_util.tree_leaves_with_path(jax.device_get(state.params))
  before = jax.tree_util.tree_leaves(jax.device_get(initial.params))
  unchanged = [jax.tree_util.keystr(path) for (path, leaf), initial_leaf
               in zip(trained, before, strict=True)
               if np.array_equal(leaf, initial_leaf)]
  # The critic's output bias cancels in E[D(G(z))] - E[D(x)] and in the penalty.
  assert unchanged == ["['critic']['to_score']['bias']"]
  assert sum(jax.tree_util.keystr(path).startswith("['prior']")
             for path, _ in trained) >= 2
  for learnable in (True, False):
    config.prior.learnable = learnable
    optimizer = gan.make_optimizers(config).generator
    params = {"generator": {"kernel": jnp.ones((2, 3))},
              "prior": {"means": jnp.ones((4, 3)), "cores": jnp.ones((4, 3, 2, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    assert np.all(np.asarray(updates["generator"]["kernel"]) != 0)
    assert [np.any(np.asarray(leaf) != 0) for leaf in
            jax.tree.leaves(updates["prior"])] == [learnable] * 2


def test_prior_and_critic_learning_rates_and_betas():
  config = tiny_config()
  config.train.learning_rate = 1e-3
  config.prior.learning_rate = 1e-1
  optimizers = gan.make_optimizers(config)
  params = {"generator": {"kernel": jnp.ones(3)}, "prior": {"means": jnp.ones(3)}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = optimizers.generator.update(grads, optimizers.generator.init(params))
  # Adam's first step is -learning_rate * sign(gradient), up to its epsilon.
  np.testing.assert_allclose(updates["generator"]["kernel"], -1e-3, rtol=1e-5)
  np.testing.assert_allclose(updates["prior"]["means"], -1e-1, rtol=1e-5)
  # b1 = 0.5: after gradients +1 then -1 the first moment is 0.5 * 0.5 - 0.5 = -0.25.
  critic_params = {"kernel": jnp.ones(2)}
  state = optimizers.critic.init(critic_params)
  for sign in (1.0, -1.0):
    _, state = optimizers.critic.update({"kernel": sign * jnp.ones(2)}, state)
  np.testing.assert_allclose(state[0].mu["kernel"], -0.25, rtol=1e-6)


def test_the_first_steps_on_two_devices_equal_the_one_device_run(uninterrupted_run,
                                                                  tmp_path,
                                                                  compilation_cache_dir):
  """4 steps (8 critic updates, 4 generator updates) of the tiny config through the
  command line, stopped after step 2 and resumed, with every batch split over 2 host
  devices: the checkpoint and the metrics of step 4 equal the one-device run's."""
  expected_workdir, expected_state = uninterrupted_run
  workdir = str(tmp_path / "two_devices")
  command = [sys.executable, "-m", "train.gan", f"--workdir={workdir}",
             f"--config={CONFIG_PATH}",
             *_overrides(tiny_config(), digits_wgangp_trip.get_config())]
  outputs = []
  for max_steps in (2, 4):  # Stops after step 2, then resumes.
    result = subprocess.run(
        command + [f"--config.train.max_steps={max_steps}"], cwd=REPO_ROOT,
        capture_output=True, text=True, timeout=900,
        env=_subprocess_environment(compilation_cache_dir, devices=2))
    assert result.returncode == 0, result.stderr[-3000:]
    outputs.append(result.stdout + result.stderr)
  assert "2 device(s)" in outputs[0]
  assert "Resuming from" in outputs[1] and "at step 2" in outputs[1]
  state, position = loop.restore_checkpoint(workdir, expected_state, step=4)
  expected, _ = loop.restore_checkpoint(expected_workdir, expected_state, step=4)
  assert position.step == 4
  for leaf, expected_leaf in zip(leaves(state), leaves(expected), strict=True):
    np.testing.assert_allclose(leaf, expected_leaf, rtol=1e-4, atol=1e-6)
  records = metric_writer.MetricWriter(workdir).read()
  expected_records = metric_writer.MetricWriter(expected_workdir).read()[:len(records)]
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  for record, expected_record in zip(records, expected_records, strict=True):
    assert record.keys() == expected_record.keys()
    for name in record.keys() - {"split"}:
      np.testing.assert_allclose(record[name], expected_record[name], rtol=1e-3,
                                 atol=1e-5, err_msg=name)


@pytest.mark.parametrize("override,message", [
    ("gan.n_critic=0", "config field gan.n_critic = 0: must be a positive integer."),
    ("gan.gradient_penalty=-1", "config field gan.gradient_penalty = -1.0: must be a "
     "number >= 0.0."),
    ("prior.kind=vamp", "config field prior.kind = 'vamp': must be one of 'normal', "
     "'gmm', 'trip', 'full_gmm', 'full_gaussian'."),
    ("model.critic_norm=batch", "config field model.critic_norm = 'batch': the "
     "gradient penalty needs per-example critic scores"),
    ("model.critic_norm=group", "config field model.critic_norm = 'group': must be "
     "one of None, 'layer', 'batch', 'none', 'layer_per_pixel'."),
    ("gan.clip_value=0", "config field gan.clip_value = 0.0: must be a number > 0.0."),
    ("eval.classifier_fd_every_epochs=-1", "eval.classifier_fd_every_epochs = -1: "
     "must be a non-negative integer."),
])
def test_bad_config_values_fail_in_one_line_and_write_nothing(tmp_path, capsys, override,
                                                              message):
  workdir = tmp_path / "run"
  assert train_gan.main([f"--workdir={workdir}", f"--config={CONFIG_PATH}",
                         f"--config.{override}"]) == 2
  error = capsys.readouterr().err
  assert message in error and len(error.strip().splitlines()) == 1, error
  assert not workdir.exists()


def test_training_without_a_config_is_a_usage_error(tmp_path, capsys):
  assert train_gan.main([f"--workdir={tmp_path / 'run'}"]) == 2
  assert "--config is required for training; stock configs:" in capsys.readouterr().err


def test_checkpoint_sampler_and_classifier_fd_of_a_gan_run(uninterrupted_run, tmp_path):
  workdir = str(tmp_path / "run")  # A copy: the FD is appended to its metrics.jsonl.
  shutil.copytree(uninterrupted_run[0], workdir)
  sample_fn, reference, position = trainers.load_checkpoint_sampler(workdir, step=4)
  assert position == loop.Position(step=4, epoch=1, batches_done=2)
  samples = np.asarray(sample_fn(jax.random.key(0), 5))
  assert samples.shape == (5, 28, 28, 1) and samples.dtype == np.float32
  assert 0.0 <= samples.min() and samples.max() <= 1.0 and samples.std() > 0
  np.testing.assert_array_equal(samples, np.asarray(sample_fn(jax.random.key(0), 5)))
  np.testing.assert_array_equal(
      reference, data_lib.load_dataset("digits", "test", binarize=False).images)
  classifier_workdir = str(tmp_path / "classifier")
  classifier_fd.save_classifier(
      classifier_workdir, classifier_fd.init_params(jax.random.key(0), feature_dim=16),
      {"config": {}})
  assert fid.main(["--workdir", workdir, "--config.metric=classifier_fd",
                   f"--config.classifier_workdir={classifier_workdir}",
                   "--config.num_samples=32", "--config.batch_size=16"]) == 0
  record = metric_writer.MetricWriter(workdir).read()[-1]
  assert record["split"] == "classifier_fd" and record["step"] == NUM_STEPS
  assert np.isfinite(record["classifier_fd"]) and record["classifier_fd"] > 0


def test_mode_hopping_writes_one_row_per_trajectory(uninterrupted_run, tmp_path,
                                                    capsys):
  workdir, _ = uninterrupted_run
  path = str(tmp_path / "hops.png")
  assert train_gan.main([f"--workdir={workdir}", "--mode_hopping",
                         "--num_trajectories=3", "--num_hops=4", "--num_resampled=2",
                         f"--out={path}"]) == 0
  assert capsys.readouterr().out.strip() == path
  image = Image.open(path)
  # 3 rows of 5 images of 28 px with 2 px padding, enlarged twice.
  assert image.size == (2 * (5 * 30 + 2), 2 * (3 * 30 + 2))
  assert train_gan.main([f"--workdir={workdir}", "--mode_hopping",
                         "--num_resampled=5"]) == 2
  assert "the run has only 4 latent dimensions" in capsys.readouterr().err


def _filled(tree, seed):
  """Arrays of `tree`'s shapes (from jax.eval_shape) filled with small random numbers,
  so the test compiles no random initializers."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: (0.1 * rng.standard_normal(leaf.shape)).astype(
      leaf.dtype), tree)


def test_wgan_updates_clip_the_critic_and_track_batch_statistics():
  """`gan.gradient_penalty = 0`: the critic gets batch norm, its parameters stay in
  [-c, c] after an update, its running statistics move, and the generator update
  runs against the batch-norm critic; no penalty is computed."""
  config = tiny_config()
  config.gan.gradient_penalty = 0.0
  config.gan.clip_value = 0.05
  gan.validate_config(config)
  model = gan.build_model(config, (28, 28, 1))
  assert model.critic.norm == "batch" and model.has_batch_stats
  optimizers = gan.make_optimizers(config)
  shapes = jax.eval_shape(
      lambda key: gan.init_state(model, optimizers, key).params, jax.random.key(0))
  params = _filled(shapes, seed=0)
  state = gan.GanState(
      params=params, batch_stats=_filled(jax.eval_shape(lambda: model.critic.init(
          jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["batch_stats"]), seed=1),
      critic_opt_state=optimizers.critic.init(params["critic"]),
      generator_opt_state=optimizers.generator.init(
          {"generator": params["generator"], "prior": params["prior"]}))
  updates = gan.make_updates(model, optimizers, **gan.step_settings(config))
  rng = np.random.default_rng(2)
  real = jnp.asarray(rng.uniform(-1, 1, (16, 28, 28, 1)), jnp.float32)
  fake = jnp.asarray(rng.uniform(-1, 1, (16, 28, 28, 1)), jnp.float32)
  z = jnp.asarray(rng.standard_normal((16, 4)), jnp.float32)

  @jax.jit
  def critic_then_generator(state):
    carry, critic_terms = updates.critic(
        gan.CriticCarry(state.params["critic"], state.batch_stats,
                        state.critic_opt_state), real, fake, None)
    trainable = {"generator": state.params["generator"],
                 "prior": state.params["prior"]}
    _, _, batch_stats, generator_terms = updates.generator(
        trainable, state.generator_opt_state, carry.params, carry.batch_stats, z)
    return carry, critic_terms, batch_stats, generator_terms

  carry, critic_terms, batch_stats, generator_terms = critic_then_generator(state)
  critic_leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(carry.params)]
  assert max(np.abs(leaf).max() for leaf in critic_leaves) <= np.float32(0.05)
  # Clipping is active: the 0.1-scale parameters hit the box.
  assert sum(np.sum(np.abs(leaf) == np.float32(0.05)) for leaf in critic_leaves) > 0
  assert float(critic_terms.penalty) == 0.0
  np.testing.assert_allclose(critic_terms.loss, -critic_terms.wasserstein, rtol=1e-6)
  for before, after, latest in zip(jax.tree.leaves(state.batch_stats),
                                   jax.tree.leaves(carry.batch_stats),
                                   jax.tree.leaves(batch_stats), strict=True):
    assert not np.allclose(before, after) and not np.allclose(after, latest)
  assert np.isfinite(float(generator_terms.loss))
  assert float(generator_terms.prior_grad_norm) > 0  # the learnable TRIP prior


@pytest.mark.parametrize("module", [digits_wgangp_trip, cifar10_wgangp_trip,
                                    celeba_wgangp_trip, celeba_wgan_trip])
def test_configs_load_and_validate(module):
  config = module.get_config()
  gan.validate_config(config)
  assert config.task == "gan" and config.prior.kind == "trip"
  assert set(base_gan.get_config().train.keys()) <= set(config.train.keys())
  if module in (celeba_wgangp_trip, celeba_wgan_trip, cifar10_wgangp_trip):
    # The authors' settings of the paper's runs.
    assert (config.model.latent_dim, config.prior.num_components, config.prior.rank,
            config.train.batch_size, config.train.learning_rate, config.gan.n_critic,
            config.gan.adam_b1, config.gan.adam_b2) == (128, 10, 40, 256, 1e-4, 5,
                                                        0.5, 0.9)
  if module is celeba_wgan_trip:
    assert config.gan.gradient_penalty == 0 and gan.critic_norm(config) == "batch"
  else:
    assert config.gan.gradient_penalty == 10 and gan.critic_norm(config) == "layer"
