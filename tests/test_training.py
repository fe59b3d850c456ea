"""Tests for tripjax/training: the loop, checkpoint/resume, NaN stop, sharding, CLI."""
import dataclasses
import json
import os
import socket
import subprocess
import sys
import textwrap

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
from tests import test_distributed
from tripjax import data as data_lib
from tripjax import priors
from tripjax.configs import digits_vae_trip
from tripjax.training import autoencoders
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import optimizers
from tripjax.training import sharding
from tripjax.training import vae
from tripjax.training import workdirs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**train_overrides):
  """The quickstart config shrunk to seconds: 64 train digits, batch 16, latent 4."""
  config = digits_vae_trip.get_config()
  config.data.num_train_examples = 64
  config.data.num_eval_examples = 40
  config.model.latent_dim = 4
  config.model.widths = (4, 8)
  config.prior.num_components = 3
  config.prior.rank = 2
  config.prior.refit_every_epochs = 1
  config.prior.refit_num_examples = 48
  config.train.num_epochs = 2
  config.train.batch_size = 16
  config.train.checkpoint_every_steps = 3
  config.train.log_every_steps = 1
  config.train.progress_bar = False
  config.eval.batch_size = 16  # 40 test examples: two full batches and a padded one
  config.eval.iwae_samples = 8
  config.eval.iwae_samples_per_chunk = 4
  config.eval.num_reconstructions = 8
  config.eval.num_prior_samples = 4
  for name, value in train_overrides.items():
    config.train[name] = value
  return config


def _config_overrides(config, defaults):
  """`--config.<field>=<value>` flags that turn `defaults` into `config`."""
  flat, flat_defaults = (dict(_flatten(c.to_dict())) for c in (config, defaults))
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
  """A persistent XLA cache for this module: its runs of the tiny config (in-process
  and in subprocesses) compile the same programs, which dominate their run time."""
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


def _assert_same_state(state, expected_state):
  for leaf, expected in zip(leaves(state), leaves(expected_state), strict=True):
    np.testing.assert_array_equal(leaf, expected)


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
  """Two epochs (4 steps each) of the tiny config, start to end."""
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  state = vae.train_and_evaluate(tiny_config(), workdir)
  return workdir, state


def test_run_writes_metrics_images_and_checkpoints(uninterrupted_run):
  workdir, _ = uninterrupted_run
  records = metric_writer.MetricWriter(workdir).read()
  train_records = [r for r in records if r["split"] == "train"]
  eval_records = [r for r in records if r["split"] == "eval"]
  assert [r["step"] for r in train_records] == list(range(1, 9))
  assert [r["epoch"] for r in train_records] == [1] * 4 + [2] * 4
  for record in train_records:
    assert set(record) >= {"loss", "elbo", "log_likelihood", "kl", "grad_norm"}
    np.testing.assert_allclose(record["elbo"], record["log_likelihood"] - record["kl"],
                               rtol=1e-4)
    assert record["elbo"] < 0  # nats of binarized 28x28 digits
  assert [(r["step"], r["epoch"]) for r in eval_records] == [(4, 1), (8, 2)]
  assert all(r["prior_refit"] for r in eval_records)  # refit_every_epochs = 1
  assert "test_iwae_8" not in eval_records[0]  # IWAE after the last epoch only
  final = eval_records[-1]
  assert np.isfinite(final["test_elbo"]) and final["test_iwae_8"] >= final["test_elbo"]

  for epoch in (1, 2):
    for kind in ("reconstructions", "prior_samples"):
      path = os.path.join(workdir, "images", f"epoch_{epoch:03d}_{kind}.png")
      assert Image.open(path).size[0] > 28
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["4", "6", "8"]
  with open(os.path.join(workdir, "config.json")) as file:
    saved = json.load(file)
  assert saved["prior"]["kind"] == "trip" and saved["task"] == "vae"


def test_stopped_and_killed_runs_resume_without_lost_steps(uninterrupted_run,
                                                          tmp_path):
  expected_workdir, expected_state = uninterrupted_run
  workdir = str(tmp_path)
  # 1. --config.train.max_steps=2: stops mid epoch 1 with a checkpoint.
  vae.train_and_evaluate(tiny_config(max_steps=2), workdir)
  assert loop.restore_checkpoint(workdir, expected_state)[1] == loop.Position(
      step=2, epoch=0, batches_done=2)
  # 2. Continues; checkpoints at 3, 4 (epoch end) and 6; "killed" at step 7.
  with pytest.raises(SimulatedKill):
    vae.train_and_evaluate(tiny_config(), workdir, step_hooks=[kill_after(7)])
  assert loop.restore_checkpoint(workdir, expected_state)[1] == loop.Position(
      step=6, epoch=1, batches_done=2)
  # 3. The same command again ends exactly where the uninterrupted run did.
  state = vae.train_and_evaluate(tiny_config(), workdir)
  _assert_same_state(state, expected_state)
  assert (metric_writer.MetricWriter(workdir).read()
          == metric_writer.MetricWriter(expected_workdir).read())


def test_evaluate_checkpoint_reports_elbo_and_iwae(uninterrupted_run):
  workdir, _ = uninterrupted_run
  config = workdirs.load_config(workdir)
  record = vae.evaluate_checkpoint(config, workdir)
  assert record["step"] == 8 and record["split"] == "checkpoint_eval"
  assert record["test_iwae_8"] >= record["test_elbo"]
  final_eval = [r for r in metric_writer.MetricWriter(workdir).read()
                if r["split"] == "eval"][-1]
  np.testing.assert_allclose(record["test_elbo"], final_eval["test_elbo"], rtol=1e-5)
  with open(os.path.join(workdir, "eval_metrics.json")) as file:
    assert json.load(file) == record


def _toy_step_that_fails_at(failing_step):
  """state {"w"} counts steps; the loss is NaN once w reaches `failing_step`."""
  def train_step(state, batch, rng):
    del rng
    w = state["w"] + 1.0
    loss = jnp.where(w >= failing_step, jnp.nan, jnp.mean(batch["image"]) + w)
    return {"w": w}, {"loss": loss, "grad_norm": jnp.float32(1.0)}
  return train_step


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    tmp_path):
  dataset = data_lib.load_dataset("digits", "train").take(64)
  options = loop.LoopOptions(num_epochs=3, batch_size=8, checkpoint_every_steps=2,
                             log_every_steps=1, progress_bar=False)
  task = loop.Task(init_state={"w": jnp.float32(0)},
                   train_step=_toy_step_that_fails_at(5))
  with pytest.raises(FloatingPointError, match=r"'loss' is nan at step 5.*step 4"):
    loop.run(workdir=str(tmp_path), options=options, task=task, train_dataset=dataset)
  state, position = loop.restore_checkpoint(str(tmp_path), {"w": jnp.float32(0)})
  assert position.step == 4 and float(state["w"]) == 4.0
  records = metric_writer.MetricWriter(str(tmp_path)).read()
  assert records[-1]["split"] == "train_non_finite" and records[-1]["step"] == 5


def test_refit_is_due_after_epoch_one_then_every_k():
  due = [epoch for epoch in range(1, 17) if autoencoders.refit_is_due(epoch, 5)]
  assert due == [1, 6, 11, 16]
  assert not any(autoencoders.refit_is_due(epoch, 0) for epoch in range(1, 10))


@pytest.mark.parametrize("learnable", [False, True])
def test_prior_is_trained_only_when_learnable(learnable):
  config = tiny_config()
  config.prior.learnable = learnable
  optimizer = vae.make_optimizer(config)
  params = {"encoder": {"kernel": jnp.ones((2, 3))}, "decoder": {"bias": jnp.ones(3)},
            "prior": {"means": jnp.ones((4, 3)), "cores": jnp.ones((4, 3, 2, 2))}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  assert all(np.all(leaf != 0) for leaf in jax.tree.leaves(updates["encoder"]))
  assert all(np.all(leaf != 0) for leaf in jax.tree.leaves(updates["decoder"]))
  prior_updated = [np.any(leaf != 0) for leaf in jax.tree.leaves(updates["prior"])]
  assert prior_updated == [learnable] * 2


def test_prior_learning_rate_is_its_own():
  config = tiny_config()
  config.train.learning_rate = 1e-3
  config.prior.learning_rate = 1e-1
  optimizer = vae.make_optimizer(config)
  params = {"encoder": {"kernel": jnp.ones(3)}, "decoder": {"bias": jnp.ones(3)},
            "prior": {"means": jnp.ones(3)}}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  # Adam's first step is -learning_rate * sign(gradient), up to its epsilon.
  np.testing.assert_allclose(updates["encoder"]["kernel"], -1e-3, rtol=1e-5)
  np.testing.assert_allclose(updates["prior"]["means"], -1e-1, rtol=1e-5)


def test_reset_optimizer_state_restarts_only_the_chosen_group():
  config = tiny_config()
  optimizer = vae.make_optimizer(config)
  params = {"encoder": {"kernel": jnp.ones(3)}, "decoder": {"bias": jnp.ones(3)},
            "prior": {"means": jnp.ones(3)}}
  grads = jax.tree.map(lambda leaf: 2.0 * jnp.ones_like(leaf), params)
  opt_state = optimizer.init(params)
  for _ in range(3):
    _, opt_state = optimizer.update(grads, opt_state, params)
  reset = optimizers.reset_optimizer_state(optimizer, opt_state, params, groups=(optimizers.PRIOR,))
  fresh = optimizer.init(params)
  for group, expected in ((optimizers.PRIOR, fresh), (optimizers.NETWORK, opt_state)):
    for leaf, expected_leaf in zip(jax.tree.leaves(reset.inner_states[group]),
                                   jax.tree.leaves(expected.inner_states[group]),
                                   strict=True):
      np.testing.assert_array_equal(leaf, expected_leaf)
  # The moments were not zero before the reset (so the test can fail).
  assert any(np.any(np.asarray(leaf) != 0)
             for leaf in jax.tree.leaves(opt_state.inner_states[optimizers.PRIOR]))


def test_metric_writer_drops_records_after_a_step(tmp_path):
  writer = metric_writer.MetricWriter(str(tmp_path))
  for step in range(1, 6):
    writer.write(step, 1, "train", {"loss": np.float32(step), "bad": float("nan")})
  writer.drop_after(3)
  records = writer.read()
  assert [r["step"] for r in records] == [1, 2, 3]
  assert records[0]["loss"] == 1.0 and records[0]["bad"] == "nan"


def test_image_grid_layout(tmp_path):
  images = np.random.default_rng(0).uniform(size=(10, 5, 6, 3))
  grid = image_grid.make_grid(images, num_columns=4, padding=1)
  assert grid.shape == (3 * 6 + 1, 4 * 7 + 1, 3) and grid.dtype == np.uint8
  np.testing.assert_array_equal(grid[1:6, 1:7], np.round(images[0] * 255))
  path = image_grid.save_image_grid(images[..., :1], str(tmp_path / "g.png"),
                                    num_columns=4, scale=2)
  saved = Image.open(path)
  assert saved.mode == "L" and saved.size == (2 * (4 * 8 + 2), 2 * (3 * 7 + 2))


@pytest.mark.parametrize("name", ["digits_vae_trip", "cifar10_vae_trip",
                                  "celeba_vae_trip"])
def test_configs_load(name):
  module = __import__(f"tripjax.configs.{name}", fromlist=["get_config"])
  config = module.get_config()
  assert config.prior.kind == "trip" and config.eval.iwae_samples == 100
  if name == "celeba_vae_trip":  # The paper's setting.
    assert (config.train.batch_size, config.train.learning_rate,
            config.model.latent_dim, config.prior.num_components,
            config.prior.rank) == (128, 3e-4, 100, 10, 20)


_SHARDED_RUN_SCRIPT = textwrap.dedent("""
    import sys, tempfile
    import jax, numpy as np
    from tests import test_training
    from tripjax.training import sharding, vae
    assert jax.device_count() == 2, jax.devices()
    split_over = []  # devices each train batch was split over, per run
    shard_batch = sharding.shard_batch
    def recording_shard_batch(batch, mesh, batch_sharding=None):
      sharded = shard_batch(batch, mesh, batch_sharding)
      split_over[-1].update(len(leaf.sharding.device_set)
                            for leaf in jax.tree.leaves(sharded))
      return sharded
    sharding.shard_batch = recording_shard_batch
    states = []
    for devices in (jax.devices()[:1], jax.devices()):
      split_over.append(set())
      mesh = sharding.make_data_mesh(devices)
      with tempfile.TemporaryDirectory() as workdir:
        state = vae.train_and_evaluate(test_training.tiny_config(max_steps=3), workdir,
                                       mesh=mesh)
      assert state.params["decoder"]["from_latent"]["kernel"].sharding.is_fully_replicated
      states.append(jax.device_get(state))
    assert split_over == [{1}, {2}], split_over  # the mesh given is the mesh used
    single, sharded = states
    for leaf, expected in zip(jax.tree.leaves(sharded), jax.tree.leaves(single)):
      np.testing.assert_allclose(leaf, expected, rtol=1e-4, atol=1e-6)
    print("SHARDED_RUN_OK")
""")


def test_the_first_steps_on_two_devices_equal_the_one_device_run(compilation_cache_dir):
  """The quickstart's loop (tiny) for 3 steps with the batch split over 2 host devices."""
  environment = dict(os.environ, JAX_PLATFORMS="cpu",
                     XLA_FLAGS="--xla_force_host_platform_device_count=2",
                     JAX_COMPILATION_CACHE_DIR=compilation_cache_dir,
                     JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  result = subprocess.run([sys.executable, "-c", _SHARDED_RUN_SCRIPT], cwd=REPO_ROOT,
                          env=environment, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "SHARDED_RUN_OK" in result.stdout
  assert "; 1 device(s);" in result.stdout and "; 2 device(s);" in result.stdout


def test_cli_trains_resumes_and_evaluates(tmp_path, compilation_cache_dir):
  workdir = str(tmp_path / "run")
  environment = dict(os.environ, JAX_PLATFORMS="cpu",
                     JAX_COMPILATION_CACHE_DIR=compilation_cache_dir,
                     JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")

  def run_cli(*args):
    result = subprocess.run([sys.executable, "-m", "train.vae", f"--workdir={workdir}",
                             *args], cwd=REPO_ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout

  overrides = _config_overrides(tiny_config(), digits_vae_trip.get_config())
  command = ["--config=configs/digits_vae_trip.py", *overrides]
  run_cli(*command, "--config.train.max_steps=5")
  assert workdirs.load_config(workdir).train.max_steps == 5
  run_cli(*command)  # Resumes at step 5.
  records = metric_writer.MetricWriter(workdir).read()
  assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, 9))
  assert records[-1]["split"] == "eval" and "test_iwae_8" in records[-1]
  output = run_cli("--eval_only")  # Reuses workdir/config.json.
  assert "split=checkpoint_eval" in output and "test_iwae_8=" in output


def _adam_count(state, group):
  return int(optax.tree.get(state.opt_state.inner_states[group], "count"))


def test_step_schedule_refits_at_steps_and_restarts_the_prior_optimizer(
    uninterrupted_run, tmp_path):
  """num_steps = 5 (one epoch and a step), a refit after step 2 only: the prior's Adam
  restarts there, the network's does not; a run killed after the refit resumes to the
  same end."""
  _, init_like = uninterrupted_run
  config = tiny_config(num_steps=5, checkpoint_every_steps=3)
  config.prior.refit_every_epochs = 0
  config.prior.refit_at_steps = (2,)
  config.eval.every_epochs = 0
  reference_dir, workdir = str(tmp_path / "reference"), str(tmp_path / "resumed")
  expected = vae.train_and_evaluate(config, reference_dir)
  assert _adam_count(expected, optimizers.NETWORK) == 5
  assert _adam_count(expected, optimizers.PRIOR) == 3  # restarted after step 2
  records = metric_writer.MetricWriter(reference_dir).read()
  evals = [(r["step"], r["epoch"]) for r in records if r["split"] == "eval"]
  assert evals == [(2, 1), (5, 2)]  # the refit, then the final evaluation
  assert [r for r in records if r["split"] == "eval"][0] == {
      "step": 2, "epoch": 1, "split": "eval", "prior_refit": True}
  assert "test_iwae_8" in records[-1]
  with pytest.raises(SimulatedKill):
    vae.train_and_evaluate(config, workdir, step_hooks=[kill_after(4)])
  assert loop.restore_checkpoint(workdir, init_like)[1].step == 4  # epoch end
  state = vae.train_and_evaluate(config, workdir)
  _assert_same_state(state, expected)
  assert metric_writer.MetricWriter(workdir).read() == records


def test_optimizer_restarts_every_k_steps(tmp_path):
  config = tiny_config(num_steps=3, reset_optimizer_every_steps=2)
  config.prior.refit_every_epochs = 0
  config.eval.every_epochs = 0
  config.eval.iwae_samples = 2
  state = vae.train_and_evaluate(config, str(tmp_path))
  resets = [r["step"] for r in metric_writer.MetricWriter(str(tmp_path)).read()
            if r.get("optimizer_reset")]
  assert resets == [2]
  assert _adam_count(state, optimizers.NETWORK) == _adam_count(state, optimizers.PRIOR) == 1


def test_two_processes_train_the_quickstart_like_one(compilation_cache_dir, tmp_path):
  """`train.vae` in 2 local processes (jax.distributed over gloo, one CPU device each)
  for 3 steps: both exit 0, one metrics.jsonl, and the checkpoint equals a 1-process
  run with the same global batch."""
  port = test_distributed._free_port()
  workdir = str(tmp_path / "two_processes")
  overrides = _config_overrides(tiny_config(max_steps=3), digits_vae_trip.get_config())
  command = [sys.executable, "-m", "train.vae", f"--workdir={workdir}",
             "--config=configs/digits_vae_trip.py", *overrides,
             f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2"]
  environment = test_distributed._environment_without_cluster(
      XLA_FLAGS="--xla_force_host_platform_device_count=1",
      JAX_COMPILATION_CACHE_DIR=compilation_cache_dir,
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  results = test_distributed._run_processes(
      [(command + [f"--process_id={index}"], environment) for index in (0, 1)],
      timeout=300)
  for returncode, output in results:
    assert returncode == 0, output[-3000:]
  records = metric_writer.MetricWriter(workdir).read()
  assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
  expected = vae.train_and_evaluate(tiny_config(max_steps=3), str(tmp_path / "one"))
  restored, position = loop.restore_checkpoint(workdir, expected)
  assert position.step == 3
  for leaf, expected_leaf in zip(leaves(restored), leaves(expected), strict=True):
    np.testing.assert_allclose(leaf, expected_leaf, rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def one_gaussian_vae():
  """The tiny config's VAE at initialization with its prior swapped for one Gaussian
  per latent (a GMM with N = 1, whose EM refit is exactly the mean and variance of what
  it is fitted to), and 1,500 training digits."""
  config = tiny_config()
  dataset = data_lib.load_dataset("digits", "train").take(1500)
  model = vae.build_model(config, dataset.image_shape, dataset.likelihood)
  state = vae.init_state(model, vae.make_optimizer(config), jax.random.PRNGKey(0))
  model = dataclasses.replace(model, prior=priors.make_prior(
      "gmm", config.model.latent_dim, num_components=1))
  state = state.replace(params=dict(state.params,
                                    prior=model.prior.init(jax.random.PRNGKey(1))))
  mean, log_scale = jax.device_get(jax.jit(model.posterior)(state.params,
                                                            dataset.images))
  return model, state, dataset, mean, np.exp(log_scale)


def test_encoder_latents_are_means_or_one_posterior_draw_per_example(one_gaussian_vae):
  model, state, dataset, mean, scale = one_gaussian_vae
  means = autoencoders.encoder_latents(model, state.params, dataset, batch_size=300,
                              on="means", max_examples=1100)
  np.testing.assert_allclose(means, mean[:1100], rtol=1e-5, atol=1e-6)
  samples = autoencoders.encoder_latents(model, state.params, dataset, batch_size=300,
                                on="samples", key=jax.random.PRNGKey(1))
  standardized = (samples - mean) / scale  # N(0, 1) if z ~ q(z|x) independently
  assert standardized.shape == (1500, 4)
  standard_error = 1 / np.sqrt(standardized.size)
  assert abs(standardized.mean()) < 4 * standard_error
  assert abs(standardized.var() - 1) < 4 * np.sqrt(2) * standard_error
  assert abs(np.corrcoef(standardized[:, 0], standardized[:, 1])[0, 1]) < 4 / np.sqrt(1500)
  with pytest.raises(ValueError, match="on must be one of"):
    autoencoders.encoder_latents(model, state.params, dataset, batch_size=300, on="mode")
  with pytest.raises(ValueError, match="needs a key"):
    autoencoders.encoder_latents(model, state.params, dataset, batch_size=300, on="samples")


def test_refit_on_samples_fits_the_aggregate_posterior_not_the_cloud_of_means(
    one_gaussian_vae):
  """The variance of q(z) = mean over x of q(z|x) is Var(means) + E[scale^2]; a refit on
  the means misses the second term."""
  model, state, dataset, mean, scale = one_gaussian_vae
  mesh = sharding.make_data_mesh(jax.devices()[:1])
  fitted = {}
  for on in autoencoders.REFIT_ON:
    refit = autoencoders.refit_prior(model, state, dataset, jax.random.PRNGKey(2), batch_size=300,
                            max_examples=None, mesh=mesh, on=on)
    fitted[on] = np.exp(2 * np.asarray(refit.params["prior"].log_scales))[:, 0]
  np.testing.assert_allclose(fitted["means"], mean.var(0), rtol=1e-3)
  aggregate_variance = mean.var(0) + np.mean(scale ** 2, axis=0)
  relative_standard_error = np.sqrt(2 / len(mean))
  np.testing.assert_allclose(fitted["samples"], aggregate_variance,
                             rtol=4 * relative_standard_error)
  assert np.all(np.mean(scale ** 2, axis=0) > 0.5 * aggregate_variance)  # can fail


_HOLD_LOCK_SCRIPT = """
import sys, time
from tripjax.training import workdir_lock
workdir_lock.WorkdirLock(sys.argv[1]).acquire()
print("LOCKED", flush=True)
time.sleep(300)
"""


def test_a_second_run_on_a_live_runs_workdir_exits_2_naming_the_holder(tmp_path):
  """A live run holds the workdir: `train.vae` on it exits 2 with one line naming that
  run's host and pid, and writes nothing."""
  workdir = tmp_path / "run"
  environment = dict(os.environ, JAX_PLATFORMS="cpu")
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK_SCRIPT, str(workdir)],
                            cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline().strip() == "LOCKED"
    overrides = _config_overrides(tiny_config(), digits_vae_trip.get_config())
    result = subprocess.run(
        [sys.executable, "-m", "train.vae", f"--workdir={workdir}",
         "--config=configs/digits_vae_trip.py", *overrides], cwd=REPO_ROOT,
        env=environment, capture_output=True, text=True, timeout=300)
  finally:
    holder.kill()
    holder.wait(timeout=60)
  assert result.returncode == 2, result.stderr[-2000:]
  error = result.stderr.strip()
  assert len(error.splitlines()) == 1, error
  assert f"host {socket.gethostname()}, pid {holder.pid}" in error
  assert "in use by another run" in error
  assert os.listdir(workdir) == ["run.lock"]  # the holder's; nothing of the refused run
