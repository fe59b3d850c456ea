"""The one training loop: epochs of sharded batches, metrics, checkpoints and resume.

A trainer (VAE, GAN, conditional VAE) supplies a pure
`train_step(state, batch, rng) -> (state, metrics)` and an optional
`end_of_epoch(state, epoch) -> (state, metrics)` (evaluation, image grids, prior
refits); the loop does the rest, identically for every trainer:

* data parallel over all `jax.devices()`: the batch is split over a 1-D mesh, the
  state is replicated (`tripjax.training.sharding`);
* a tqdm progress bar and `workdir/metrics.jsonl` (`tripjax.training.metric_writer`);
* orbax checkpoints every `checkpoint_every_steps` steps and at each epoch end, holding
  the state, the rng and the position (step, epoch, batches done in the epoch);
* resume: running the same command again restores the newest checkpoint and continues
  with the next batch of the same epoch, so the run ends exactly where an uninterrupted
  run would (batches are a pure function of (seed, epoch), step keys of (rng, step));
* a NaN/inf metric raises `NonFiniteMetricError` and leaves the last good checkpoint.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import numpy as np
import tqdm

from tripjax import data as data_lib
from tripjax.training import checkpoints
from tripjax.training import metric_writer
from tripjax.training import sharding

State = Any  # a pytree of arrays
Batch = dict  # {"image": (B, H, W, C) float32 in [0, 1]}
Metrics = Mapping[str, Any]  # scalar metrics of one step
TrainStepFn = Callable[[State, Batch, jax.Array], tuple[State, Metrics]]
# (state, epoch index counted from 0) -> (state, metrics logged with split "eval").
EndOfEpochFn = Callable[[State, int], tuple[State, Metrics]]
# Called after every step (and its checkpoint, if any) with (step, state).
StepHook = Callable[[int, State], None]


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """What the loop needs from `config.train`.

  Attributes:
    num_epochs: passes over the training set.
    batch_size: global batch size (split over devices; must divide evenly).
    seed: seeds the batch order (with the epoch) and the step keys.
    checkpoint_every_steps: save every this many steps (and at every epoch end).
    log_every_steps: write the mean train metrics every this many steps (the mean
      of the steps since the previous record; the first record after a resume
      averages only the steps run since the checkpoint).
    max_steps: stop (with a checkpoint) once this many steps are done; None: no limit.
      Running again with a larger value continues.
    max_checkpoints_to_keep: older checkpoints are deleted.
    progress_bar: show tqdm.
  """
  num_epochs: int
  batch_size: int
  seed: int = 0
  checkpoint_every_steps: int = 500
  log_every_steps: int = 50
  max_steps: int | None = None
  max_checkpoints_to_keep: int = 3
  progress_bar: bool = True

  @classmethod
  def from_config(cls, train_config) -> "LoopOptions":
    """Reads the fields of this class from a `config.train` ConfigDict."""
    names = [field.name for field in dataclasses.fields(cls)]
    return cls(**{name: train_config[name] for name in names if name in train_config})


class NonFiniteMetricError(FloatingPointError):
  """A training metric became NaN or infinite; the run stopped without saving it."""

  def __init__(self, step: int, metric: str, value: float,
               last_checkpoint_step: int | None, checkpoint_directory: str):
    self.step = step
    self.metric = metric
    self.value = value
    self.last_checkpoint_step = last_checkpoint_step
    if last_checkpoint_step is None:
      kept = "No checkpoint had been saved yet."
    else:
      kept = (f"The last good checkpoint (step {last_checkpoint_step}) is kept in "
              f"{checkpoint_directory}; running again resumes from it (lower the "
              f"learning rate or fix the cause first, or the same step fails again).")
    super().__init__(f"Training metric {metric!r} is {value} at step {step}; "
                     f"stopping. {kept}")


def _first_non_finite(metrics: Mapping[str, Any]) -> tuple[str, float] | None:
  for name, value in metrics.items():
    value = float(np.asarray(value))
    if not math.isfinite(value):
      return name, value
  return None


def _prefetched_batches(dataset: data_lib.ImageDataset,
                        batch_indices: Sequence[np.ndarray]) -> Iterator[Batch]:
  """Reads each batch on a worker thread while the previous one trains."""
  if not batch_indices:
    return
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
    pending = executor.submit(dataset.read, batch_indices[0])
    for next_indices in list(batch_indices[1:]) + [None]:
      images, _ = pending.result()
      if next_indices is not None:
        pending = executor.submit(dataset.read, next_indices)
      yield {"image": images}


def _checkpoint_tree(state: State, rng: jax.Array, step: int, epoch: int,
                     batches_done: int) -> dict:
  position = {name: np.asarray(value, np.int64) for name, value in
              (("step", step), ("epoch", epoch), ("batches_done", batches_done))}
  return {"state": state, "rng": rng, "position": position}


def restore_checkpoint(workdir: str, init_state: State, *,
                       mesh: jax.sharding.Mesh | None = None,
                       step: int | None = None) -> tuple[State, dict]:
  """Reads a checkpoint that `run` wrote (default: the newest).

  Args:
    workdir: the run's workdir.
    init_state: a state of the same structure (gives shapes and dtypes).
    mesh: restore replicated over this mesh (default: all devices).
    step: which checkpoint.

  Returns:
    (state, position {"step", "epoch", "batches_done"} as ints).
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  checkpointer = checkpoints.Checkpointer(workdir)
  try:
    target = _checkpoint_tree(sharding.replicate(init_state, mesh),
                              sharding.replicate(jax.random.PRNGKey(0), mesh), 0, 0, 0)
    restored = checkpointer.restore(target, step)
  finally:
    checkpointer.close()
  position = {name: int(value) for name, value in restored["position"].items()}
  return restored["state"], position


def run(*, workdir: str, options: LoopOptions, init_state: State,
        train_step: TrainStepFn, train_dataset: data_lib.ImageDataset,
        end_of_epoch: EndOfEpochFn | None = None,
        mesh: jax.sharding.Mesh | None = None,
        step_hooks: Sequence[StepHook] = ()) -> State:
  """Trains `init_state` (or the newest checkpoint in `workdir`) for the remaining steps.

  Args:
    workdir: directory for metrics.jsonl and checkpoints/ (created if missing).
    options: loop settings (`LoopOptions.from_config(config.train)`).
    init_state: the state to start from when `workdir` has no checkpoint; also gives
      the structure to restore into.
    train_step: pure `(state, batch, rng) -> (state, metrics)`; the loop jits it with
      the batch sharded and everything else replicated. Metrics are scalars; all are
      checked for NaN/inf after every step.
    train_dataset: the training split; batches come from `tripjax.data.batch_indices`
      (shuffled by (options.seed, epoch), last partial batch dropped).
    end_of_epoch: called after each epoch's last step, before the epoch-end checkpoint.
    mesh: 1-D data mesh (default: all devices).
    step_hooks: callables `(step, state)` run after every step.

  Returns:
    The final state (replicated over the mesh).

  Raises:
    NonFiniteMetricError: a metric became NaN or infinite.
  """
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  sharding.check_batch_size(options.batch_size, mesh)
  steps_per_epoch = data_lib.num_batches(len(train_dataset), options.batch_size)
  if steps_per_epoch == 0:
    raise ValueError(f"The training set has {len(train_dataset)} examples, fewer than "
                     f"one batch of {options.batch_size}.")

  checkpointer = checkpoints.Checkpointer(workdir, options.max_checkpoints_to_keep)
  writer = metric_writer.MetricWriter(workdir)
  state = sharding.replicate(init_state, mesh)
  rng = sharding.replicate(jax.random.PRNGKey(options.seed), mesh)
  step, epoch, batches_done = 0, 0, 0
  if checkpointer.latest_step() is not None:
    restored = checkpointer.restore(_checkpoint_tree(state, rng, 0, 0, 0))
    state, rng = restored["state"], restored["rng"]
    step, epoch, batches_done = (int(restored["position"][name])
                                 for name in ("step", "epoch", "batches_done"))
    if epoch >= options.num_epochs:
      tqdm.tqdm.write(f"{workdir}: all {options.num_epochs} epochs are done (step "
                      f"{step}); raise train.num_epochs to train on.")
    else:
      tqdm.tqdm.write(f"Resuming from {checkpointer.directory} at step {step} "
                      f"(epoch {epoch + 1}, {batches_done} batches done).")
  writer.drop_after(step)  # Records of steps that a killed run did not checkpoint.

  replicated = sharding.replicated(mesh)
  jitted_step = jax.jit(train_step,
                        in_shardings=(replicated, sharding.batch_sharded(mesh),
                                      replicated),
                        out_shardings=replicated)
  total_steps = options.num_epochs * steps_per_epoch
  if options.max_steps is not None:
    total_steps = min(total_steps, options.max_steps)
  progress = tqdm.tqdm(total=total_steps, initial=min(step, total_steps),
                       desc=os.path.basename(os.path.normpath(workdir)),
                       disable=not options.progress_bar, dynamic_ncols=True)

  def save(save_step, save_epoch, save_batches_done):
    checkpointer.save(save_step, _checkpoint_tree(state, rng, save_step, save_epoch,
                                                  save_batches_done))

  metric_sums, metric_count = {}, 0
  stopped_at_max_steps = False
  try:
    while epoch < options.num_epochs and not stopped_at_max_steps:
      epoch_indices = data_lib.batch_indices(len(train_dataset), options.batch_size,
                                             seed=options.seed, epoch=epoch)
      for batch in _prefetched_batches(train_dataset, epoch_indices[batches_done:]):
        if options.max_steps is not None and step >= options.max_steps:
          stopped_at_max_steps = True
          break
        new_state, metrics = jitted_step(state, sharding.shard_batch(batch, mesh),
                                         jax.random.fold_in(rng, step))
        metrics = jax.device_get(metrics)
        non_finite = _first_non_finite(metrics)
        if non_finite is not None:
          writer.write(step + 1, epoch + 1, "train_non_finite", metrics)
          checkpointer.wait()
          raise NonFiniteMetricError(step + 1, *non_finite,
                                     checkpointer.latest_step(), checkpointer.directory)
        state = new_state
        step += 1
        batches_done += 1
        progress.update(1)
        for name, value in metrics.items():
          metric_sums[name] = metric_sums.get(name, 0.0) + float(value)
        metric_count += 1
        if step % options.log_every_steps == 0:
          means = {name: total / metric_count for name, total in metric_sums.items()}
          writer.write(step, epoch + 1, "train", means)
          progress.set_postfix({name: f"{value:.4g}" for name, value in means.items()
                                if name in ("loss", "elbo")}, refresh=False)
          metric_sums, metric_count = {}, 0
        if (step % options.checkpoint_every_steps == 0
            and batches_done < steps_per_epoch):  # Epoch ends save below.
          save(step, epoch, batches_done)
        for hook in step_hooks:
          hook(step, state)
      if stopped_at_max_steps:
        break
      if end_of_epoch is not None:
        state, epoch_metrics = end_of_epoch(state, epoch)
        if epoch_metrics:
          record = writer.write(step, epoch + 1, "eval", epoch_metrics)
          progress.write(f"epoch {epoch + 1}: " + ", ".join(
              f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
              for name, value in record.items() if name not in ("step", "epoch",
                                                                "split")))
      epoch, batches_done = epoch + 1, 0
      save(step, epoch, batches_done)
    if stopped_at_max_steps:
      save(step, epoch, batches_done)
  finally:
    progress.close()
    checkpointer.wait()
    checkpointer.close()
  return state
