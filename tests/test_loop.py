"""The shared loop with a toy task: two optimizers, k batches per step, schedules, resume.

The toy "critic" takes k SGD steps (one per batch of the step) towards the batch's mean
pixel, then the "generator" takes one Adam step towards the critic: the shape of a
WGAN step, in a state small enough to check exactly.
"""
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.training_helpers import leaves
from tripjax import data as data_lib
from tripjax.training import distributed
from tripjax.training import image_grid
from tripjax.training import loop
from tripjax.training import metric_writer
from tripjax.training import rng as rng_lib

NUM_EXAMPLES, BATCH_SIZE = 40, 4  # 10 batches per epoch
CRITIC_OPTIMIZER = optax.sgd(0.5)
GENERATOR_OPTIMIZER = optax.adam(0.1)


@pytest.fixture(scope="module")
def dataset():
  return data_lib.load_dataset("digits", "train").take(NUM_EXAMPLES)


def _prepare_batch(indices, images, labels):
  return {"image": images, "label": labels, "index": indices.astype(np.float32)}


def _init_state():
  critic, generator = jnp.float32(0.0), jnp.float32(0.0)
  return {"critic": critic, "generator": generator,
          "critic_opt": CRITIC_OPTIMIZER.init(critic),
          "generator_opt": GENERATOR_OPTIMIZER.init(generator),
          "index_sum": jnp.float32(0.0), "label_sum": jnp.float32(0.0),
          "epochs_seen": jnp.int32(0)}


def _train_step(state, batch, rng):
  """batch fields are (k, B, ...): k critic steps, then one generator step."""
  def critic_step(carry, images):
    critic, opt_state = carry
    loss, grad = jax.value_and_grad(lambda c: jnp.square(c - jnp.mean(images)))(critic)
    updates, opt_state = CRITIC_OPTIMIZER.update(grad, opt_state)
    return (optax.apply_updates(critic, updates), opt_state), loss

  (critic, critic_opt), critic_losses = jax.lax.scan(
      critic_step, (state["critic"], state["critic_opt"]), batch["image"])
  noise = 0.01 * jax.random.normal(rng, ())
  generator_loss, grad = jax.value_and_grad(
      lambda g: jnp.square(g - critic + noise))(state["generator"])
  updates, generator_opt = GENERATOR_OPTIMIZER.update(grad, state["generator_opt"])
  new_state = dict(state, critic=critic, critic_opt=critic_opt,
                   generator=optax.apply_updates(state["generator"], updates),
                   generator_opt=generator_opt,
                   index_sum=state["index_sum"] + jnp.sum(batch["index"]),
                   label_sum=state["label_sum"] + jnp.sum(batch["label"]))
  return new_state, {"loss": generator_loss, "critic_loss": jnp.mean(critic_losses)}


def _after_step(state, progress):
  outputs = {}
  if progress.end_of_epoch:
    state = dict(state, epochs_seen=state["epochs_seen"] + 1)
    outputs["generator"] = float(state["generator"])
  if progress.final:
    outputs["samples"] = loop.Image(image_grid.make_grid(np.zeros((4, 2, 2, 1))))
  return state, outputs


def _unstacked_train_step(state, batch, rng):
  """With one batch per step the loop gives (B, ...) fields, not (1, B, ...)."""
  return _train_step(state, jax.tree.map(lambda field: field[None], batch), rng)


def _task(batches_per_step):
  train_step = _train_step if batches_per_step > 1 else _unstacked_train_step
  return loop.Task(init_state=_init_state(), train_step=train_step,
                   after_step=_after_step, shown_metrics=("loss", "critic_loss"),
                   batches_per_step=batches_per_step, prepare_batch=_prepare_batch)


def _options(**overrides):
  options = dict(num_epochs=2, batch_size=BATCH_SIZE, checkpoint_every_steps=2,
                 log_every_steps=1, progress_bar=False)
  options.update(overrides)
  return loop.LoopOptions(**options)


def _used_batches(num_steps, batches_per_step):
  """The example indices the loop should feed, step by step, for `num_steps` steps."""
  steps, epoch = [], 0
  while len(steps) < num_steps:
    batches = data_lib.batch_indices(NUM_EXAMPLES, BATCH_SIZE, seed=0, epoch=epoch)
    per_epoch = len(batches) // batches_per_step
    steps += [batches[i * batches_per_step:(i + 1) * batches_per_step]
              for i in range(per_epoch)]
    epoch += 1
  return steps[:num_steps]


def _expected_state(dataset, num_steps, batches_per_step):
  """The toy task replayed step by step outside the loop, on the same batches."""
  state = _init_state()
  step_fn = jax.jit(_train_step)
  stream_key = rng_lib.RandomStreams(0).key("train_step")
  for step, indices_of_step in enumerate(_used_batches(num_steps, batches_per_step)):
    batch = {name: np.stack([_prepare_batch(indices, *dataset.read(indices))[name]
                             for indices in indices_of_step])
             for name in ("image", "label", "index")}
    state, _ = step_fn(state, batch, rng_lib.step_key(stream_key, step))
  return state


@pytest.mark.parametrize("batches_per_step", [1, 3])
def test_two_optimizer_task_matches_a_step_by_step_replay(dataset, batches_per_step,
                                                          tmp_path):
  state = loop.run(workdir=str(tmp_path), options=_options(), task=_task(batches_per_step),
                   train_dataset=dataset)
  steps_per_epoch = 10 // batches_per_step  # 10 or 3 (one batch left over)
  expected = _expected_state(dataset, 2 * steps_per_epoch, batches_per_step)
  expected["epochs_seen"] = jnp.int32(2)
  for leaf, expected_leaf in zip(leaves(state), leaves(expected), strict=True):
    np.testing.assert_allclose(leaf, expected_leaf, rtol=1e-6)
  used = np.concatenate([np.concatenate(step) for step in
                         _used_batches(2 * steps_per_epoch, batches_per_step)])
  assert float(state["index_sum"]) == used.sum()
  records = metric_writer.MetricWriter(str(tmp_path)).read()
  train = [record for record in records if record["split"] == "train"]
  assert [record["step"] for record in train] == list(range(1, 2 * steps_per_epoch + 1))
  assert all({"loss", "critic_loss"} <= set(record) for record in train)
  evals = [record for record in records if record["split"] == "eval"]
  assert [(record["step"], record["epoch"]) for record in evals] == [
      (steps_per_epoch, 1), (2 * steps_per_epoch, 2)]
  assert os.path.exists(tmp_path / "images" / "epoch_002_samples.png")


def test_a_stopped_and_killed_run_resumes_bit_identical(dataset, tmp_path):
  reference_dir, workdir = str(tmp_path / "reference"), str(tmp_path / "resumed")
  expected = loop.run(workdir=reference_dir, options=_options(), task=_task(3),
                      train_dataset=dataset)
  loop.run(workdir=workdir, options=_options(max_steps=2), task=_task(3),
           train_dataset=dataset)

  def kill_at_step_5(step, state):
    if step == 5:
      raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    loop.run(workdir=workdir, options=_options(), task=_task(3), train_dataset=dataset,
             step_hooks=[kill_at_step_5])
  _, position = loop.restore_checkpoint(workdir, _init_state())
  assert position == loop.Position(step=4, epoch=1, batches_done=3)
  state = loop.run(workdir=workdir, options=_options(), task=_task(3),
                   train_dataset=dataset)
  for leaf, expected_leaf in zip(leaves(state), leaves(expected), strict=True):
    np.testing.assert_array_equal(leaf, expected_leaf)
  assert (metric_writer.MetricWriter(workdir).read()
          == metric_writer.MetricWriter(reference_dir).read())


def test_step_schedule_crosses_epochs_and_resumes(dataset, tmp_path):
  """num_steps = 7 with 3 steps per epoch: two whole epochs and one step of a third;
  extending num_steps continues the same run."""
  workdir = str(tmp_path)
  progress_seen = []

  def record_progress(state, progress):
    progress_seen.append(progress)
    return _after_step(state, progress)

  task = loop.Task(**{**_task(3).__dict__, "after_step": record_progress})
  state = loop.run(workdir=workdir, options=_options(num_steps=7), task=task,
                   train_dataset=dataset)
  assert [p.step for p in progress_seen] == list(range(1, 8))
  assert [p.epoch for p in progress_seen] == [0, 0, 0, 1, 1, 1, 2]
  assert [p.end_of_epoch for p in progress_seen] == [False, False, True] * 2 + [False]
  assert [p.final for p in progress_seen] == [False] * 6 + [True]
  _, position = loop.restore_checkpoint(workdir, _init_state())
  assert position == loop.Position(step=7, epoch=2, batches_done=3)
  assert os.path.exists(tmp_path / "images" / "step_0000007_samples.png")
  expected = _expected_state(dataset, 7, 3)
  np.testing.assert_allclose(float(state["generator"]), float(expected["generator"]),
                             rtol=1e-6)
  state = loop.run(workdir=workdir, options=_options(num_steps=9), task=task,
                   train_dataset=dataset)
  expected = _expected_state(dataset, 9, 3)
  np.testing.assert_allclose(float(state["generator"]), float(expected["generator"]),
                             rtol=1e-6)
  assert int(state["epochs_seen"]) == 3  # The epoch ending at step 9 was seen.


def test_too_few_examples_for_one_step_is_a_clear_error(dataset, tmp_path):
  with pytest.raises(ValueError, match="fewer than one step's 11 batch"):
    loop.run(workdir=str(tmp_path), options=_options(), task=_task(11),
             train_dataset=dataset)


def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_ends_the_same(
    dataset, tmp_path, capsys):
  reference = loop.run(workdir=str(tmp_path / "reference"), options=_options(),
                       task=_task(3), train_dataset=dataset)
  workdir = tmp_path / "run"
  loop.run(workdir=str(workdir), options=_options(max_steps=4), task=_task(3),
           train_dataset=dataset)
  (workdir / "checkpoints" / "4" / "default" / "_METADATA").write_text("")
  capsys.readouterr()
  state = loop.run(workdir=str(workdir), options=_options(), task=_task(3),
                   train_dataset=dataset)
  output = capsys.readouterr().out
  assert "Checkpoint step 4 is damaged and was skipped" in output
  assert "Resuming from" in output and "at step 3" in output
  assert (workdir / "checkpoints" / "4.corrupt-1").is_dir()  # kept, not deleted
  for leaf, expected_leaf in zip(leaves(state), leaves(reference), strict=True):
    np.testing.assert_array_equal(leaf, expected_leaf)


_SIGTERM_SCRIPT = """
import sys, time
from tests import test_loop
from tripjax import data as data_lib
from tripjax.training import cli, loop

def slow_step(step, state):
  print(f"STEP {step}", flush=True)
  time.sleep(0.3)

dataset = data_lib.load_dataset("digits", "train").take(test_loop.NUM_EXAMPLES)
options = test_loop._options(checkpoint_every_steps=1000)
sys.exit(cli.main(lambda: loop.run(workdir=sys.argv[1], options=options,
                                   task=test_loop._task(1), train_dataset=dataset,
                                   step_hooks=[slow_step])))
"""


def test_sigterm_saves_the_current_step_and_the_rerun_continues(dataset, tmp_path):
  """A real SIGTERM mid-epoch: the run saves a checkpoint at the step it finished,
  says so, exits with 143, and running again ends where an uninterrupted run does."""
  workdir = str(tmp_path / "run")
  environment = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
  process = subprocess.Popen([sys.executable, "-c", _SIGTERM_SCRIPT, workdir],
                             cwd=os.path.dirname(os.path.dirname(__file__)),
                             env=environment, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  try:
    for line in process.stdout:
      if line.strip() == "STEP 3":
        process.send_signal(signal.SIGTERM)
        break
    stdout, stderr = process.communicate(timeout=120)
  finally:
    process.kill()
  assert process.returncode == 143, stderr[-2000:]
  stopped_at = int(stderr.split("Stopped by SIGTERM at step ")[1].split(";")[0])
  assert 3 <= stopped_at < 10  # before the epoch end, the first checkpoint otherwise
  _, position = loop.restore_checkpoint(workdir, _init_state())
  assert position.step == stopped_at
  state = loop.run(workdir=workdir, options=_options(checkpoint_every_steps=1000),
                   task=_task(1), train_dataset=dataset)
  expected = loop.run(workdir=str(tmp_path / "reference"), options=_options(),
                      task=_task(1), train_dataset=dataset)
  for leaf, expected_leaf in zip(leaves(state), leaves(expected), strict=True):
    np.testing.assert_array_equal(leaf, expected_leaf)


def _counting_step(state, batch, rng):
  """state {"w"} counts steps; the loss is w + the batch's mean pixel (finite)."""
  del rng
  w = state["w"] + 1.0
  return {"w": w}, {"loss": jnp.mean(batch["image"]) + w, "w": w}


def test_metrics_are_fetched_once_per_log_interval(dataset, tmp_path, monkeypatch):
  """20 steps, a record every 5, checkpoints every 10 (and at the epoch ends, 10 and
  20): the loop fetches from the device 4 times, and the records are the means of
  their 5 steps."""
  fetches = []
  to_host = distributed.to_host

  def counting_to_host(tree):
    fetches.append(len(jax.tree.leaves(tree)))
    return to_host(tree)

  monkeypatch.setattr(distributed, "to_host", counting_to_host)
  task = loop.Task(init_state={"w": jnp.float32(0)}, train_step=_counting_step)
  state = loop.run(workdir=str(tmp_path), task=task, train_dataset=dataset,
                   options=_options(log_every_steps=5, checkpoint_every_steps=10))
  assert float(state["w"]) == 20
  assert len(fetches) == 4
  assert fetches[0] == 5 * 2 + 1  # 5 steps' two metrics and the guard's flag
  records = [r for r in metric_writer.MetricWriter(str(tmp_path)).read()
             if r["split"] == "train"]
  assert [r["step"] for r in records] == [5, 10, 15, 20]
  np.testing.assert_allclose([r["w"] for r in records], [3, 8, 13, 18])


def test_a_nan_between_fetches_stops_at_its_step_with_the_last_good_state(
    dataset, tmp_path):
  """The loss turns NaN at step 7 of 20; metrics are fetched at steps 4 (checkpoint),
  5 (record) and 8 (checkpoint): the error names step 7 (not 8), the checkpoint of
  step 4 is the last (step 8's is not written), and the record of step 7 is written."""
  def step(state, batch, rng):
    new_state, metrics = _counting_step(state, batch, rng)
    return new_state, dict(metrics, loss=jnp.where(new_state["w"] >= 7, jnp.nan,
                                                   metrics["loss"]))

  task = loop.Task(init_state={"w": jnp.float32(0)}, train_step=step)
  with pytest.raises(loop.NonFiniteMetricError,
                     match=r"'loss' is nan at step 7.*checkpoint \(step 4\)") as error:
    loop.run(workdir=str(tmp_path), task=task, train_dataset=dataset,
             options=_options(log_every_steps=5, checkpoint_every_steps=4))
  assert (error.value.step, error.value.metric) == (7, "loss")
  checkpoints = sorted(os.listdir(tmp_path / "checkpoints"))
  assert checkpoints == ["4"]
  records = metric_writer.MetricWriter(str(tmp_path)).read()
  assert [(r["step"], r["split"]) for r in records] == [(5, "train"),
                                                       (7, "train_non_finite")]
  assert records[-1]["w"] == 7.0


def test_the_guarded_step_records_the_first_bad_step():
  step = jax.jit(loop.guard_step(lambda state, batch, rng: (
      state + 1.0, {"loss": jnp.where(state + 1.0 >= 3.0, jnp.nan, 0.0),
                    "grad_norm": jnp.where(state + 1.0 == 4.0, jnp.inf, 1.0)})))
  state, guard = jnp.float32(0.0), loop.StepGuard(jnp.int32(0), jnp.int32(0))
  key = rng_lib.RandomStreams(0).key("train_step")
  first_bad = []
  for _ in range(5):
    state, guard, _ = step(state, guard, {}, key)
    first_bad.append(int(guard.first_bad_step))
  assert first_bad == [0, 0, 3, 3, 3]
  assert int(guard.steps_done) == 5


def test_the_run_leaves_the_tasks_initial_state_usable(dataset, tmp_path):
  """The steps consume (donate) their state; the loop starts from a copy."""
  init_state = {"w": jnp.zeros((3,))}
  task = loop.Task(init_state=init_state,
                   train_step=lambda state, batch, rng: ({"w": state["w"] + 1.0},
                                                         {"loss": jnp.float32(0)}))
  loop.run(workdir=str(tmp_path), task=task, train_dataset=dataset,
           options=_options(num_steps=3))
  np.testing.assert_array_equal(init_state["w"], np.zeros(3))


def test_after_step_runs_only_when_due(dataset, tmp_path):
  calls = []

  def after_step(state, progress):
    calls.append(progress.step)
    return state, {}

  task = loop.Task(init_state={"w": jnp.float32(0)}, train_step=_counting_step,
                   after_step=after_step,
                   after_step_due=lambda progress: progress.is_due(every_steps=3))
  loop.run(workdir=str(tmp_path), task=task, train_dataset=dataset,
           options=_options(num_steps=8))
  assert calls == [3, 6, 8]  # every 3 steps, and the schedule's last


@pytest.mark.parametrize("progress, settings, due", [
    (loop.Progress(6, 0, False, False), dict(every_steps=3), True),
    (loop.Progress(7, 0, False, False), dict(every_steps=3), False),
    (loop.Progress(7, 1, True, False), dict(every_epochs=2), True),
    (loop.Progress(7, 0, True, False), dict(every_epochs=2), False),
    (loop.Progress(7, 2, False, True), dict(), True),
    (loop.Progress(7, 2, False, True), dict(at_end=False), False),
    (loop.Progress(9, 2, True, False), dict(every_steps=0, every_epochs=0), False),
])
def test_progress_is_due(progress, settings, due):
  assert progress.is_due(**settings) is due
