"""The one training loop: sharded batches, metrics, image grids, checkpoints and resume.

Every trainer (VAE, GAN, conditional VAE, classifiers) hands the loop a `Task`:

* `init_state`: the state (a pytree of arrays) to start from;
* `train_step(state, batch, rng) -> (state, metrics)`: pure, jitted by the loop with
  the batch split over the devices and everything else replicated;
* `after_step(state, progress) -> (state, outputs)`: optional host-side work after a
  step (evaluation, image grids, prior refits, optimizer resets), scheduled by the task
  from `progress` (step counts, epoch ends, the run's last step);
* `shown_metrics`: the train metrics shown in the progress bar;
* `batches_per_step`: k > 1 feeds k consecutive batches to one step (e.g. a critic's
  n_critic updates), stacked on a new leading axis;
* `prepare_batch`: optional `(indices, images, labels) -> batch` on the host (numpy),
  e.g. to hide attributes per example; the default batch is
  {"image": (B, H, W, C) float32 in [0, 1], "label": (B, ...)} ("label" only when the
  dataset has labels).

The loop does the rest, identically for every trainer:

* data parallel over all `jax.devices()`: the batch is split over a 1-D mesh, the
  state is replicated (`tripjax.training.sharding`);
* a tqdm progress bar, `workdir/metrics.jsonl` and TensorBoard events
  (`tripjax.training.metric_writer`); image outputs of `after_step` become PNG files in
  `workdir/images/` and TensorBoard images;
* a schedule in epochs (`num_epochs`) or in steps (`num_steps`), and `max_steps` to
  stop early (running again with a larger value continues);
* orbax checkpoints every `checkpoint_every_steps` steps, at each epoch end and when the
  run stops, holding the state, the rng and the position (step, epoch, batches done in
  the epoch), saved after `after_step` so its changes are part of the checkpoint;
* resume: running the same command again restores the newest checkpoint and continues
  with the next batch of the same epoch, so the run ends exactly where an uninterrupted
  run would (batches are a pure function of (seed, epoch), step keys of (rng, step),
  and `after_step` must be a pure function of (state, progress));
* a NaN/inf train metric raises `NonFiniteMetricError` and leaves the last good
  checkpoint.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import os
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from tripjax import data as data_lib
from tripjax.training import checkpoints
from tripjax.training import distributed
from tripjax.training import image_grid
from tripjax.training import metric_writer
from tripjax.training import preemption
from tripjax.training import sharding
from tripjax.training import workdirs

IMAGES_DIRNAME = "images"

State = Any  # a pytree of arrays
Batch = dict  # {"image": (B, H, W, C), "label": (B, ...), ...}; (k, B, ...) for k > 1
Metrics = Mapping[str, Any]  # scalar metrics of one step
TrainStepFn = Callable[[State, Batch, jax.Array], tuple[State, Metrics]]
# (indices (B,), images (B, H, W, C), labels (B, ...) or None) -> batch of numpy arrays.
PrepareBatchFn = Callable[[np.ndarray, np.ndarray, Any], Batch]
# Called after every step (and its checkpoint, if any) with (step, state); for tests.
StepHook = Callable[[int, State], None]


class Progress(NamedTuple):
  """Where the run is after a step; what `Task.after_step` schedules its work by.

  Attributes:
    step: steps done (the step just taken is number `step`).
    epoch: 0-based index of the epoch this step belongs to.
    end_of_epoch: this step was the epoch's last.
    final: this step ends the run's schedule (`num_epochs` or `num_steps`);
      False when `max_steps` stops the run earlier.
  """
  step: int
  epoch: int
  end_of_epoch: bool
  final: bool


class Image(NamedTuple):
  """An image output of `after_step`: a grid (H, W, C) uint8 from `image_grid.make_grid`.

  `scale` > 1 enlarges the PNG (small images such as 28 px).
  """
  grid: np.ndarray
  scale: int = 1


# (state, progress) -> (state, outputs): outputs are scalar metrics (logged with split
# "eval") and `Image`s (written to workdir/images/ and TensorBoard).
AfterStepFn = Callable[[State, Progress], tuple[State, Mapping[str, Any]]]


def default_prepare_batch(indices: np.ndarray, images: np.ndarray,
                          labels: Any) -> Batch:
  """{"image": images} plus {"label": labels} when the dataset has labels."""
  del indices
  batch = {"image": images}
  if labels is not None:
    batch["label"] = labels
  return batch


@dataclasses.dataclass(frozen=True)
class Task:
  """What a trainer gives the loop (see the module docstring)."""
  init_state: State
  train_step: TrainStepFn
  after_step: AfterStepFn | None = None
  shown_metrics: Sequence[str] = ("loss",)
  batches_per_step: int = 1
  prepare_batch: PrepareBatchFn = default_prepare_batch


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """What the loop needs from `config.train`.

  Attributes:
    num_epochs: passes over the training set (the schedule when `num_steps` is None).
    batch_size: global batch size (split over devices; must divide evenly).
    num_steps: train exactly this many steps, as many epochs as that takes (the
      last one possibly partial); None: `num_epochs` whole epochs.
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
  num_steps: int | None = None
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


def _stack(batches: Sequence[Batch]) -> Batch:
  """k batches -> one with a new leading axis of size k on every field."""
  return {name: np.stack([batch[name] for batch in batches]) for name in batches[0]}


def _prefetched_batches(dataset: data_lib.ImageDataset,
                        step_indices: Sequence[Sequence[np.ndarray]],
                        prepare_batch: PrepareBatchFn,
                        stacked: bool) -> Iterator[Batch]:
  """The batch of each step, read on a worker thread while the previous step trains.

  `step_indices[i]` holds the example indices of the batches of step i (one or k).
  """
  def read(indices_of_step):
    batches = [prepare_batch(indices, *dataset.read(indices))
               for indices in indices_of_step]
    return _stack(batches) if stacked else batches[0]

  if not step_indices:
    return
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
    pending = executor.submit(read, step_indices[0])
    for next_indices in list(step_indices[1:]) + [None]:
      batch = pending.result()
      if next_indices is not None:
        pending = executor.submit(read, next_indices)
      yield batch


def _checkpoint_tree(state: State, rng: jax.Array, step: int, epoch: int,
                     batches_done: int) -> dict:
  position = {name: np.asarray(value, np.int64) for name, value in
              (("step", step), ("epoch", epoch), ("batches_done", batches_done))}
  return {"state": state, "rng": rng, "position": position}


def restore_checkpoint(workdir: str, init_state: State, *,
                       mesh: jax.sharding.Mesh | None = None,
                       step: int | None = None) -> tuple[State, dict]:
  """Reads a checkpoint that `run` wrote (default: the newest that reads back).

  Nothing in the workdir changes (a damaged newest checkpoint is skipped, not moved).

  Args:
    workdir: the run's workdir.
    init_state: a state of the same structure (gives shapes and dtypes).
    mesh: restore replicated over this mesh (default: all devices).
    step: which checkpoint.

  Returns:
    (state, position {"step", "epoch", "batches_done"} as ints).

  Raises:
    FileNotFoundError: no (such) checkpoint.
    CheckpointMismatchError: the checkpoint holds another structure than `init_state`.
    CheckpointCorruptError: no checkpoint reads back.
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  checkpointer = checkpoints.Checkpointer(workdir)
  try:
    target = _checkpoint_tree(sharding.replicate(init_state, mesh),
                              sharding.replicate(jax.random.PRNGKey(0), mesh), 0, 0, 0)
    if step is not None:
      restored = checkpointer.restore(target, step)
    else:
      result = checkpointer.restore_newest_valid(target, read_only=True)
      if result.step is None:
        raise FileNotFoundError(f"No checkpoint in {checkpointer.directory}.")
      restored = result.tree
  finally:
    checkpointer.close()
  position = {name: int(value) for name, value in restored["position"].items()}
  return restored["state"], position


def restore_for_inference(workdir: str, init_state_fn: Callable[[jax.Array], State], *,
                          step: int | None = None,
                          mesh: jax.sharding.Mesh | None = None) -> tuple[State, dict]:
  """`restore_checkpoint` into the structure of `init_state_fn(key)`, which is only
  traced for its shapes and dtypes (nothing is initialized or compiled)."""
  abstract_state = jax.eval_shape(init_state_fn, jax.random.PRNGKey(0))
  zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), abstract_state)
  return restore_checkpoint(workdir, zeros, mesh=mesh, step=step)


def _format_outputs(outputs: Mapping[str, Any]) -> str:
  return ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else
                   f"{name}={value}" for name, value in outputs.items())


def run(*, workdir: str, options: LoopOptions, task: Task,
        train_dataset: data_lib.ImageDataset,
        mesh: jax.sharding.Mesh | None = None,
        step_hooks: Sequence[StepHook] = (),
        config: ml_collections.ConfigDict | None = None) -> State:
  """Trains `task.init_state` (or the newest checkpoint in `workdir`) to the schedule.

  Args:
    workdir: directory for metrics.jsonl, images/ and checkpoints/ (created if missing).
    options: loop settings (`LoopOptions.from_config(config.train)`).
    task: the trainer's state, step and hooks.
    train_dataset: the training split; batches come from `tripjax.data.batch_indices`
      (shuffled by (options.seed, epoch), last partial batch dropped; with k batches
      per step, the batches left over at an epoch's end are dropped too).
    mesh: 1-D data mesh (default: all devices).
    step_hooks: callables `(step, state)` run after every step and its checkpoint.
    config: the run's config, written to workdir/config.json once the checkpoint (if
      any) is restored, so a run that cannot start leaves the workdir as it was.

  Returns:
    The final state (replicated over the mesh).

  Raises:
    NonFiniteMetricError: a train metric became NaN or infinite.
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  sharding.check_batch_size(options.batch_size, mesh)
  per_step = task.batches_per_step
  batches_per_epoch = data_lib.num_batches(len(train_dataset), options.batch_size)
  steps_per_epoch = batches_per_epoch // per_step
  if steps_per_epoch == 0:
    raise ValueError(
        f"The training set has {len(train_dataset)} examples, fewer than one step's "
        f"{per_step} batch(es) of {options.batch_size}.")
  if options.num_steps is not None:
    schedule_steps = options.num_steps
    schedule = f"{options.num_steps} steps"
  else:
    schedule_steps = options.num_epochs * steps_per_epoch
    schedule = f"{options.num_epochs} epochs"
  stop_step = schedule_steps
  if options.max_steps is not None:
    stop_step = min(stop_step, options.max_steps)

  main_process = distributed.is_main_process()
  rows = distributed.process_slice(options.batch_size, mesh)  # This process's rows.
  os.makedirs(workdir, exist_ok=True)
  checkpointer = checkpoints.Checkpointer(workdir, options.max_checkpoints_to_keep)
  writer = metric_writer.MetricWriter(workdir) if main_process else None
  state = sharding.replicate(task.init_state, mesh)
  rng = sharding.replicate(jax.random.PRNGKey(options.seed), mesh)
  step, epoch, batches_done = 0, 0, 0
  try:
    restored = checkpointer.restore_newest_valid(_checkpoint_tree(state, rng, 0, 0, 0))
  except BaseException:
    checkpointer.close()
    raise
  if main_process:
    for line in restored.report_lines():
      tqdm.tqdm.write(line)
  if restored.step is not None:
    state, rng = restored.tree["state"], restored.tree["rng"]
    step, epoch, batches_done = (int(restored.tree["position"][name])
                                 for name in ("step", "epoch", "batches_done"))
    if main_process and step >= schedule_steps:
      tqdm.tqdm.write(f"{workdir}: all {schedule} are done (step {step}); raise "
                      f"train.{'num_steps' if options.num_steps else 'num_epochs'} "
                      "to train on.")
    elif main_process:
      tqdm.tqdm.write(f"Resuming from {checkpointer.directory} at step {step} "
                      f"(epoch {epoch + 1}, {batches_done} batches done).")
  if main_process:
    writer.drop_after(step)  # Records of steps that a killed run did not checkpoint.
    if config is not None:
      workdirs.save_config(config, workdir)

  replicated = sharding.replicated(mesh)
  batch_sharding = sharding.batch_sharded(mesh, leading_axes=int(per_step > 1))
  jitted_step = jax.jit(task.train_step,
                        in_shardings=(replicated, batch_sharding, replicated),
                        out_shardings=replicated)
  progress_bar = tqdm.tqdm(total=stop_step, initial=min(step, stop_step),
                           desc=os.path.basename(os.path.normpath(workdir)),
                           disable=not (options.progress_bar and main_process),
                           dynamic_ncols=True)

  def save():
    checkpointer.save(step, _checkpoint_tree(state, rng, step, epoch, batches_done))

  def handle_outputs(outputs, progress):
    if not main_process:
      return
    scalars = {name: value for name, value in outputs.items()
               if not isinstance(value, Image)}
    images = {name: value for name, value in outputs.items() if isinstance(value, Image)}
    stem = (f"epoch_{progress.epoch + 1:03d}" if progress.end_of_epoch
            else f"step_{progress.step:07d}")
    for name, image in images.items():
      image_grid.save_grid_png(image.grid, os.path.join(
          workdir, IMAGES_DIRNAME, f"{stem}_{name}.png"), scale=image.scale)
    if images:
      writer.write_images(progress.step, {name: image.grid
                                          for name, image in images.items()})
    if scalars:
      record = writer.write(progress.step, progress.epoch + 1, "eval", scalars)
      progress_bar.write(f"step {progress.step} (epoch {progress.epoch + 1}): "
                         + _format_outputs({name: value for name, value in record.items()
                                            if name not in ("step", "epoch", "split")}))

  metric_sums, metric_count = {}, 0
  try:
    with preemption.StopRequest(announce=main_process) as stop_request:
      while step < stop_step:
        epoch_batches = data_lib.batch_indices(len(train_dataset), options.batch_size,
                                               seed=options.seed, epoch=epoch)
        epoch_batches = [indices[rows]
                         for indices in epoch_batches[:steps_per_epoch * per_step]]
        step_indices = [epoch_batches[start:start + per_step]
                        for start in range(batches_done, len(epoch_batches), per_step)]
        step_indices = step_indices[:stop_step - step]
        for batch in _prefetched_batches(train_dataset, step_indices,
                                         task.prepare_batch, stacked=per_step > 1):
          new_state, metrics = jitted_step(
              state, sharding.shard_batch(batch, mesh, batch_sharding),
              jax.random.fold_in(rng, step))
          metrics = distributed.to_host(metrics)
          non_finite = _first_non_finite(metrics)
          if non_finite is not None:
            if main_process:
              writer.write(step + 1, epoch + 1, "train_non_finite", metrics)
            checkpointer.wait()
            raise NonFiniteMetricError(step + 1, *non_finite,
                                       checkpointer.latest_step(),
                                       checkpointer.directory)
          state = new_state
          step += 1
          batches_done += per_step
          progress_bar.update(1)
          for name, value in metrics.items():
            metric_sums[name] = metric_sums.get(name, 0.0) + float(value)
          metric_count += 1
          if step % options.log_every_steps == 0:
            means = {name: total / metric_count for name, total in metric_sums.items()}
            if main_process:
              writer.write(step, epoch + 1, "train", means)
            progress_bar.set_postfix({name: f"{value:.4g}" for name, value in
                                      means.items() if name in task.shown_metrics},
                                     refresh=False)
            metric_sums, metric_count = {}, 0
          end_of_epoch = batches_done == len(epoch_batches)
          progress = Progress(step=step, epoch=epoch, end_of_epoch=end_of_epoch,
                              final=step == schedule_steps)
          if task.after_step is not None:
            state, outputs = task.after_step(state, progress)
            if outputs:
              handle_outputs(outputs, progress)
          if end_of_epoch:
            epoch, batches_done = epoch + 1, 0
          stopping = stop_request.should_stop(step)
          if (end_of_epoch or stopping or step == stop_step
              or step % options.checkpoint_every_steps == 0):
            save()
          if stopping:
            checkpointer.wait()
            raise stop_request.stopped(step, checkpointer.directory)
          for hook in step_hooks:
            hook(step, state)
      if step == stop_step:
        save()  # No-op when this step is saved already; else a resumed, finished run.
  finally:
    progress_bar.close()
    if writer is not None:
      writer.close()
    checkpointer.wait()
    checkpointer.close()
  return state
