"""The one training loop: sharded batches, asynchronous steps, metrics, checkpoints, resume.

Every trainer (VAE, GAN, conditional VAE, classifiers) hands the loop a `Task`:

* `init_state`: the state (a pytree of arrays) to start from;
* `train_step(state, batch, rng) -> (state, metrics)`: pure; compiled by the loop
  (`compile_step`) with the batch split over the devices, everything else replicated
  and the state donated (the state passed in is consumed);
* `after_step(state, progress) -> (state, outputs)`: optional host-side work after a
  step (evaluation, image grids, prior refits, optimizer resets), called after the
  steps for which `after_step_due(progress)` says so (default: every step, which
  makes the host wait for every step);
* `shown_metrics`: the train metrics shown in the progress bar;
* `batches_per_step`: k > 1 feeds k consecutive batches to one step (e.g. a critic's
  n_critic updates), stacked on a new leading axis;
* `prepare_batch`: optional `(indices, images, labels) -> batch` on the host (numpy),
  e.g. to hide attributes per example; the default batch is
  {"image": (B, H, W, C) float32 in [0, 1], "label": (B, ...)} ("label" only when the
  dataset has labels). It runs on a thread of this process (it need not pickle).

The loop does the rest, identically for every trainer:

* data parallel over all `jax.devices()`: the batch is split over a 1-D mesh, the
  state is replicated (`tripjax.training.sharding`); the next batches are read ahead
  while the step runs (`tripjax.input_pipeline`: grain worker processes for TFDS
  sets, `num_workers`), each process reading only its rows;
* the host does not wait for the device after a step: metrics stay on the device
  and are fetched (one transfer) every `log_every_steps` steps, before `after_step`
  work and before every checkpoint; nothing else reads device values;
* a non-finite metric is caught on the device: the compiled step records the number
  of the first step whose metrics are not all finite, and the next fetch (at the latest
  before `after_step` work or a checkpoint) raises `NonFiniteMetricError` naming that
  step and the metric. So a bad state is never checkpointed, handed to `after_step` or
  returned; the steps between the bad one and the fetch (fewer than `log_every_steps`)
  are wasted work. (Handing back the previous state on the device instead, a select
  over the whole state, cost 7-10% of the paper's VAE step on a CPU: README.)
* a tqdm progress bar, `workdir/metrics.jsonl` and TensorBoard events
  (`tripjax.training.metric_writer`); image outputs of `after_step` become PNG files
  in `workdir/images/` and TensorBoard images;
* a schedule in epochs (`num_epochs`) or in steps (`num_steps`), and `max_steps` to
  stop early (running again with a larger value continues);
* orbax checkpoints every `checkpoint_every_steps` steps, at each epoch end and when
  the run stops, holding the state, the train-step key and the `Position`, saved
  after `after_step` so its changes are part of the checkpoint;
* resume: running the same command again restores the newest checkpoint and continues
  with the next batch of the same epoch, so the run ends exactly where an uninterrupted
  run would (batches are a pure function of (seed, epoch), step keys of (key, step),
  and `after_step` must be a pure function of (state, progress)).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import math
import os
from typing import Any, Callable, Generator, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from tripjax import data as data_lib
from tripjax import input_pipeline
from tripjax.training import checkpoints
from tripjax.training import distributed
from tripjax.training import image_grid
from tripjax.training import metric_writer
from tripjax.training import preemption
from tripjax.training import rng as rng_lib
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
# The state may still be in flight on the device, and the next step consumes it.
StepHook = Callable[[int, State], None]


class Position(NamedTuple):
  """Where a run is: what a checkpoint records besides the state.

  Attributes:
    step: steps done.
    epoch: 0-based index of the epoch the next step belongs to.
    batches_done: batches of that epoch already used.
  """
  step: int
  epoch: int
  batches_done: int


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

  def is_due(self, *, every_steps: int = 0, every_epochs: int = 0,
             at_end: bool = True) -> bool:
    """Whether work scheduled this way is due after this step.

    Due every `every_steps` steps, at the end of every `every_epochs`-th epoch (0:
    never, for either) and, with `at_end`, after the schedule's last step.
    """
    return ((at_end and self.final)
            or (every_steps > 0 and self.step % every_steps == 0)
            or (self.end_of_epoch and every_epochs > 0
                and (self.epoch + 1) % every_epochs == 0))


class Image(NamedTuple):
  """An image output of `after_step`: a grid (H, W, C) uint8 from `image_grid.make_grid`.

  `scale` > 1 enlarges the PNG (small images such as 28 px).
  """
  grid: np.ndarray
  scale: int = 1


# (state, progress) -> (state, outputs): outputs are scalar metrics (logged with split
# "eval") and `Image`s (written to workdir/images/ and TensorBoard).
AfterStepFn = Callable[[State, Progress], tuple[State, Mapping[str, Any]]]
DueFn = Callable[[Progress], bool]


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
  after_step_due: DueFn | None = None  # None: after every step
  shown_metrics: Sequence[str] = ("loss",)
  batches_per_step: int = 1
  prepare_batch: PrepareBatchFn = default_prepare_batch

  def has_work_after(self, progress: Progress) -> bool:
    """Whether `after_step` runs after this step."""
    return self.after_step is not None and (
        self.after_step_due is None or self.after_step_due(progress))


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """What the loop needs from `config.train`.

  Attributes:
    num_epochs: passes over the training set (the schedule when `num_steps` is None).
    batch_size: global batch size (split over devices; must divide evenly).
    num_steps: train exactly this many steps, as many epochs as that takes (the
      last one possibly partial); None: `num_epochs` whole epochs.
    seed: seeds the batch order (with the epoch) and, unless `run` is given a key,
      the train steps' keys (`RandomStreams(seed).key("train_step")`).
    checkpoint_every_steps: save every this many steps (and at every epoch end).
    log_every_steps: fetch the train metrics from the device and write their mean
      every this many steps (the mean of the steps since the previous record; the
      first record after a resume averages only the steps run since the checkpoint).
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
  def from_config(cls, train_config: ml_collections.ConfigDict) -> LoopOptions:
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


# ------------------------------------------------------------------ the compiled step


class StepGuard(NamedTuple):
  """What the compiled step carries besides the state, on the device.

  Attributes:
    steps_done: () int32, steps taken (the next step's key is `step_key(key, it)`).
    first_bad_step: () int32, the number of the first step with a non-finite metric;
      0 while there is none.
  """
  steps_done: jax.Array
  first_bad_step: jax.Array


# (state, guard, batch, stream key) -> (state, guard, metrics); state and guard donated.
LoopStepFn = Callable[[State, StepGuard, Batch, jax.Array],
                      tuple[State, StepGuard, Metrics]]


def _all_finite(metrics: Metrics) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(value)) for value in jax.tree.leaves(metrics)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def guard_step(train_step: TrainStepFn) -> LoopStepFn:
  """`train_step` with the step key and the non-finite check done on the device.

  The returned function takes the state, a `StepGuard`, the batch and the train-step
  stream key, and records in the guard the first step whose metrics are not all
  finite (the state it returns is the step's, finite or not).
  """

  def guarded_step(state, guard: StepGuard, batch, stream_key):
    state, metrics = train_step(state, batch,
                                rng_lib.step_key(stream_key, guard.steps_done))
    healthy = guard.first_bad_step == 0
    finite = _all_finite(metrics)
    steps_done = guard.steps_done + 1
    first_bad_step = jnp.where(jnp.logical_and(healthy, jnp.logical_not(finite)),
                               steps_done, guard.first_bad_step)
    return state, StepGuard(steps_done, first_bad_step), metrics

  return guarded_step


def compile_step(train_step: TrainStepFn, mesh: jax.sharding.Mesh,
                 batches_per_step: int = 1) -> LoopStepFn:
  """The loop's step as it runs it: `guard_step(train_step)` jitted with the batch
  split over `mesh` (after `batches_per_step > 1`'s leading axis), everything else
  replicated, and the state and guard donated."""
  replicated = sharding.replicated(mesh)
  batch_sharding = sharding.batch_sharded(mesh, leading_axes=int(batches_per_step > 1))
  return jax.jit(guard_step(train_step),
                 in_shardings=(replicated, replicated, batch_sharding, replicated),
                 out_shardings=replicated, donate_argnums=(0, 1))


def new_guard(steps_done: int, mesh: jax.sharding.Mesh) -> StepGuard:
  """A `StepGuard` after `steps_done` healthy steps, replicated over `mesh`."""
  return sharding.replicate(StepGuard(np.int32(steps_done), np.int32(0)), mesh)


# ------------------------------------------------------------------ checkpoints


def _checkpoint_tree(state: State, rng: Any, position: Position) -> dict:
  return {"state": state, "rng": rng,
          "position": {name: np.asarray(value, np.int64)
                       for name, value in position._asdict().items()}}


def _position(tree: dict) -> Position:
  return Position(**{name: int(tree["position"][name]) for name in Position._fields})


def restore_checkpoint(workdir: str, init_state: State, *,
                       mesh: jax.sharding.Mesh | None = None,
                       step: int | None = None) -> tuple[State, Position]:
  """Reads a checkpoint that `run` wrote (default: the newest that reads back).

  Nothing in the workdir changes (a damaged newest checkpoint is skipped, not moved).

  Args:
    workdir: the run's workdir.
    init_state: a state of the same structure (gives shapes and dtypes).
    mesh: restore replicated over this mesh (default: all devices).
    step: which checkpoint.

  Returns:
    (state, its `Position`).

  Raises:
    FileNotFoundError: no (such) checkpoint.
    CheckpointMismatchError: the checkpoint holds another structure than `init_state`.
    CheckpointCorruptError: no checkpoint reads back.
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  checkpointer = checkpoints.Checkpointer(workdir)
  try:
    target = _checkpoint_tree(sharding.replicate(init_state, mesh),
                              sharding.replicate(np.zeros(2, np.uint32), mesh),
                              Position(0, 0, 0))
    if step is not None:
      restored = checkpointer.restore(target, step)
    else:
      result = checkpointer.restore_newest_valid(target, read_only=True)
      if result.step is None:
        raise FileNotFoundError(f"No checkpoint in {checkpointer.directory}.")
      restored = result.tree
  finally:
    checkpointer.close()
  return restored["state"], _position(restored)


def restore_for_inference(workdir: str, init_state_fn: Callable[[jax.Array], State], *,
                          step: int | None = None,
                          mesh: jax.sharding.Mesh | None = None
                          ) -> tuple[State, Position]:
  """`restore_checkpoint` into the structure of `init_state_fn(key)`, which is only
  traced for its shapes and dtypes (nothing is initialized or compiled)."""
  abstract_state = jax.eval_shape(init_state_fn, rng_lib.RandomStreams(0).init_key())
  zeros = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), abstract_state)
  return restore_checkpoint(workdir, zeros, mesh=mesh, step=step)


# ------------------------------------------------------------------ the schedule


class Schedule(NamedTuple):
  """How long a run trains.

  Attributes:
    steps_per_epoch: whole steps in an epoch (leftover batches are dropped).
    total_steps: the schedule's steps (`num_steps`, or `num_epochs` epochs).
    stop_step: where this run stops: `total_steps`, or `max_steps` if smaller.
    description: "20 epochs" or "500 steps".
    field: the config field that sets the schedule ("train.num_epochs"/"num_steps").
  """
  steps_per_epoch: int
  total_steps: int
  stop_step: int
  description: str
  field: str


def make_schedule(options: LoopOptions, num_examples: int,
                  batches_per_step: int) -> Schedule:
  """The `Schedule` of a run over `num_examples` training examples.

  Raises:
    ValueError: fewer examples than one step needs.
  """
  batches_per_epoch = data_lib.num_batches(num_examples, options.batch_size)
  steps_per_epoch = batches_per_epoch // batches_per_step
  if steps_per_epoch == 0:
    raise ValueError(
        f"The training set has {num_examples} examples, fewer than one step's "
        f"{batches_per_step} batch(es) of {options.batch_size}.")
  if options.num_steps is not None:
    total, description, field = (options.num_steps, f"{options.num_steps} steps",
                                 "train.num_steps")
  else:
    total, description, field = (options.num_epochs * steps_per_epoch,
                                 f"{options.num_epochs} epochs", "train.num_epochs")
  stop = total if options.max_steps is None else min(total, options.max_steps)
  return Schedule(steps_per_epoch, total, stop, description, field)


class RunStepIndices(Sequence):
  """The example indices of every step from a position to the stop step, across epochs.

  Entry i holds the `batches_per_step` batches (this process's `rows` of each) of the
  i-th step from `position`; batches are `data.batch_indices` of (seed, epoch), the
  ones left over at an epoch's end dropped. Computed on demand (one epoch's order at a
  time), and cheap to pickle: grain's workers compute their steps' indices themselves.
  """

  def __init__(self, num_examples: int, options: LoopOptions, schedule: Schedule,
               batches_per_step: int, position: Position, rows: slice):
    self.num_examples, self.batch_size, self.seed = (num_examples, options.batch_size,
                                                     options.seed)
    self.steps_per_epoch, self.batches_per_step = (schedule.steps_per_epoch,
                                                   batches_per_step)
    self.position, self.rows = position, rows
    self.length = max(schedule.stop_step - position.step, 0)
    self._epoch: tuple[int, list[np.ndarray]] | None = None  # the last epoch's batches

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return [self[i] for i in range(*index.indices(len(self)))]
    if not 0 <= index < len(self):
      raise IndexError(f"step {index} of {len(self)}")
    offset = self.position.batches_done // self.batches_per_step + index
    epoch = self.position.epoch + offset // self.steps_per_epoch
    first = (offset % self.steps_per_epoch) * self.batches_per_step
    batches = self._batches(epoch)
    return [indices[self.rows] for indices in
            batches[first:first + self.batches_per_step]]

  def _batches(self, epoch: int) -> list[np.ndarray]:
    if self._epoch is None or self._epoch[0] != epoch:
      self._epoch = (epoch, data_lib.batch_indices(self.num_examples, self.batch_size,
                                                   seed=self.seed, epoch=epoch))
    return self._epoch[1]

  def __getstate__(self):
    return {**self.__dict__, "_epoch": None}


def _stack(batches: Sequence[Batch]) -> Batch:
  """k batches -> one with a new leading axis of size k on every field."""
  return {name: np.stack([batch[name] for batch in batches]) for name in batches[0]}


def _prefetched_batches(dataset: data_lib.ImageDataset,
                        step_indices: Sequence[Sequence[np.ndarray]],
                        prepare_batch: PrepareBatchFn, stacked: bool,
                        num_workers: int = 0) -> Generator[Batch, None, None]:
  """The batch of each step, prepared on a worker thread while the previous step trains.

  `step_indices[i]` holds the example indices of the batches of step i (one or k);
  they are read by `input_pipeline.read_steps` (grain workers for TFDS sets).
  """
  if not step_indices:
    return
  reads = input_pipeline.read_steps(dataset, step_indices, num_workers=num_workers)

  def next_batch():
    batches = [prepare_batch(*read) for read in next(reads)]
    return _stack(batches) if stacked else batches[0]

  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
      pending = executor.submit(next_batch)
      for step in range(len(step_indices)):
        batch = pending.result()
        if step + 1 < len(step_indices):
          pending = executor.submit(next_batch)
        yield batch
  finally:
    reads.close()


# ------------------------------------------------------------------ metrics and outputs


def _first_non_finite(metrics: Mapping[str, Any]) -> tuple[str, float]:
  for name, value in metrics.items():
    value = float(np.asarray(value))
    if not math.isfinite(value):
      return name, value
  raise ValueError("no metric is non-finite")


class _TrainMetrics:
  """The train metrics since the last record: on the device until `fetch`, then summed
  on the host (in float64) until `record`."""

  def __init__(self):
    self._pending: list[tuple[int, Metrics]] = []  # (step, metrics on the device)
    self._sums: dict[str, float] = {}
    self._count = 0

  def add(self, step: int, metrics: Metrics) -> None:
    self._pending.append((step, metrics))

  def fetch(self, guard: StepGuard) -> tuple[int, Metrics] | None:
    """Brings the pending metrics and the guard's flag to the host (one transfer).

    Returns:
      None, or (step, metrics) of the first step whose metrics are not finite.
    """
    steps = [step for step, _ in self._pending]
    values, first_bad_step = distributed.to_host(
        ([metrics for _, metrics in self._pending], guard.first_bad_step))
    self._pending = []
    first_bad_step = int(first_bad_step)
    if first_bad_step:
      return first_bad_step, values[steps.index(first_bad_step)]
    for metrics in values:
      for name, value in metrics.items():
        self._sums[name] = self._sums.get(name, 0.0) + float(value)
      self._count += 1
    return None

  def record(self) -> dict[str, float]:
    """The means of the fetched metrics since the last record, and a new window."""
    means = {name: total / self._count for name, total in self._sums.items()}
    self._sums, self._count = {}, 0
    return means


def _format_outputs(outputs: Mapping[str, Any]) -> str:
  return ", ".join(f"{name}={value:.4g}" if isinstance(value, float) else
                   f"{name}={value}" for name, value in outputs.items())


class _Outputs:
  """Where a run writes: metrics.jsonl and TensorBoard, PNG grids, the progress bar.

  Only the main process writes; the others' methods do nothing.
  """

  def __init__(self, workdir: str, options: LoopOptions, schedule: Schedule,
               start_step: int, shown_metrics: Sequence[str]):
    self.workdir = workdir
    self.main = distributed.is_main_process()
    self.writer = metric_writer.MetricWriter(workdir) if self.main else None
    self.shown_metrics = shown_metrics
    self.progress_bar = tqdm.tqdm(
        total=schedule.stop_step, initial=min(start_step, schedule.stop_step),
        desc=os.path.basename(os.path.normpath(workdir)),
        disable=not (options.progress_bar and self.main), dynamic_ncols=True)

  def message(self, line: str) -> None:
    if self.main:
      self.progress_bar.write(line)

  def train_record(self, step: int, epoch: int, means: Mapping[str, float]) -> None:
    if self.writer is not None:
      self.writer.write(step, epoch + 1, "train", means)
    self.progress_bar.set_postfix({name: f"{value:.4g}" for name, value in means.items()
                                   if name in self.shown_metrics}, refresh=False)

  def non_finite_record(self, step: int, epoch: int, metrics: Metrics) -> None:
    if self.writer is not None:
      self.writer.write(step, epoch + 1, "train_non_finite", metrics)

  def after_step_outputs(self, outputs: Mapping[str, Any], progress: Progress) -> None:
    """Scalars as an "eval" record (and a line), images as PNG and TensorBoard."""
    if self.writer is None or not outputs:
      return
    images = {name: value for name, value in outputs.items() if isinstance(value, Image)}
    scalars = {name: value for name, value in outputs.items() if name not in images}
    stem = (f"epoch_{progress.epoch + 1:03d}" if progress.end_of_epoch
            else f"step_{progress.step:07d}")
    for name, image in images.items():
      image_grid.save_grid_png(image.grid, os.path.join(
          self.workdir, IMAGES_DIRNAME, f"{stem}_{name}.png"), scale=image.scale)
    if images:
      self.writer.write_images(progress.step,
                               {name: image.grid for name, image in images.items()})
    if scalars:
      record = self.writer.write(progress.step, progress.epoch + 1, "eval", scalars)
      self.message(f"step {progress.step} (epoch {progress.epoch + 1}): "
                   + _format_outputs({name: value for name, value in record.items()
                                      if name not in ("step", "epoch", "split")}))

  def close(self) -> None:
    self.progress_bar.close()
    if self.writer is not None:
      self.writer.close()


# ------------------------------------------------------------------ the run


def _restore(checkpointer: checkpoints.Checkpointer, state: State, rng: jax.Array,
             workdir: str, schedule: Schedule
             ) -> tuple[State, jax.Array, Position]:
  """The newest readable checkpoint's (state, rng, position), or the given start."""
  restored = checkpointer.restore_newest_valid(
      _checkpoint_tree(state, rng, Position(0, 0, 0)))
  main = distributed.is_main_process()
  if main:
    for line in restored.report_lines():
      tqdm.tqdm.write(line)
  if restored.step is None:
    return state, rng, Position(0, 0, 0)
  position = _position(restored.tree)
  if main and position.step >= schedule.total_steps:
    tqdm.tqdm.write(f"{workdir}: all {schedule.description} are done (step "
                    f"{position.step}); raise {schedule.field} to train on.")
  elif main:
    tqdm.tqdm.write(f"Resuming from {checkpointer.directory} at step {position.step} "
                    f"(epoch {position.epoch + 1}, {position.batches_done} batches "
                    "done).")
  return restored.tree["state"], restored.tree["rng"], position


class _StepLoop:
  """The steps of one run, from its position to the stop step."""

  def __init__(self, *, task: Task, options: LoopOptions, schedule: Schedule,
               train_dataset: data_lib.ImageDataset, mesh: jax.sharding.Mesh,
               checkpointer: checkpoints.Checkpointer, outputs: _Outputs,
               step_hooks: Sequence[StepHook], num_workers: int):
    self.task, self.options, self.schedule = task, options, schedule
    self.num_workers = num_workers
    self.train_dataset, self.mesh = train_dataset, mesh
    self.checkpointer, self.outputs, self.step_hooks = checkpointer, outputs, step_hooks
    self.step_fn = compile_step(task.train_step, mesh, task.batches_per_step)
    self.batch_sharding = sharding.batch_sharded(
        mesh, leading_axes=int(task.batches_per_step > 1))
    self.rows = distributed.process_slice(options.batch_size, mesh)
    self.metrics = _TrainMetrics()

  def run(self, state: State, rng: jax.Array, position: Position) -> State:
    """Trains from `position` to the stop step; returns the final state."""
    guard = new_guard(position.step, self.mesh)
    every = self.options.log_every_steps
    with preemption.StopRequest(announce=self.outputs.main,
                                sync_every_steps=every) as stop_request:
      step_indices = RunStepIndices(len(self.train_dataset), self.options, self.schedule,
                                    self.task.batches_per_step, position, self.rows)
      batches = contextlib.closing(_prefetched_batches(
          self.train_dataset, step_indices, self.task.prepare_batch,
          stacked=self.task.batches_per_step > 1, num_workers=self.num_workers))
      with batches as step_batches:  # Closed (workers stopped) however the loop ends.
        for batch in step_batches:
          state, guard = self._step(state, guard, rng, batch, position)
          position, progress = self._advance(position)
          stopping = stop_request.should_stop(progress.step)
          saving = (progress.end_of_epoch or stopping
                    or progress.step == self.schedule.stop_step
                    or progress.step % self.options.checkpoint_every_steps == 0)
          after_step = (self.task.after_step if self.task.has_work_after(progress)
                        else None)
          if progress.step % every == 0 or saving or after_step is not None:
            self._fetch(guard, progress)
          if after_step is not None:
            state, outputs = after_step(state, progress)
            self.outputs.after_step_outputs(outputs, progress)
          if saving:
            self.checkpointer.save(progress.step, _checkpoint_tree(state, rng, position))
          if stopping:
            self.checkpointer.wait()
            raise stop_request.stopped(progress.step, self.checkpointer.directory)
          for hook in self.step_hooks:
            hook(progress.step, state)
      # A no-op when this step is saved already; else a resumed, finished run.
      self.checkpointer.save(position.step, _checkpoint_tree(state, rng, position))
    return state

  def _step(self, state: State, guard: StepGuard, rng: jax.Array, batch: Batch,
            position: Position) -> tuple[State, StepGuard]:
    """Dispatches one step (nothing waits for it)."""
    state, guard, metrics = self.step_fn(
        state, guard, sharding.shard_batch(batch, self.mesh, self.batch_sharding), rng)
    self.metrics.add(position.step + 1, metrics)
    self.outputs.progress_bar.update(1)
    return state, guard

  def _advance(self, position: Position) -> tuple[Position, Progress]:
    """The position after one more step, and the step's `Progress`."""
    step = position.step + 1
    batches_done = position.batches_done + self.task.batches_per_step
    batches_per_epoch = self.schedule.steps_per_epoch * self.task.batches_per_step
    end_of_epoch = batches_done == batches_per_epoch
    progress = Progress(step=step, epoch=position.epoch, end_of_epoch=end_of_epoch,
                        final=step == self.schedule.total_steps)
    if end_of_epoch:
      return Position(step, position.epoch + 1, 0), progress
    return Position(step, position.epoch, batches_done), progress

  def _fetch(self, guard: StepGuard, progress: Progress) -> None:
    """Fetches the metrics (the host waits for the device here); writes the train
    record when one is due; raises `NonFiniteMetricError` for a flagged step."""
    bad = self.metrics.fetch(guard)
    if bad is not None:
      bad_step, bad_metrics = bad
      epoch = (bad_step - 1) // self.schedule.steps_per_epoch
      self.outputs.non_finite_record(bad_step, epoch, bad_metrics)
      self.checkpointer.wait()
      raise NonFiniteMetricError(bad_step, *_first_non_finite(bad_metrics),
                                 self.checkpointer.latest_step(),
                                 self.checkpointer.directory)
    if progress.step % self.options.log_every_steps == 0:
      self.outputs.train_record(progress.step, progress.epoch,
                                self.metrics.record())


def run(*, workdir: str, options: LoopOptions, task: Task,
        train_dataset: data_lib.ImageDataset,
        mesh: jax.sharding.Mesh | None = None,
        step_hooks: Sequence[StepHook] = (),
        config: ml_collections.ConfigDict | None = None,
        rng: jax.Array | None = None,
        num_workers: int = input_pipeline.DEFAULT_NUM_WORKERS) -> State:
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
    rng: the train-step stream key, (2,) uint32 (default:
      `RandomStreams(options.seed).key("train_step")`); step i gets
      `rng_lib.step_key(rng, i)`. A restored checkpoint's key wins.
    num_workers: grain worker processes that read a TFDS training set
      (`input_pipeline.read_steps`; 0: one background thread in this process).

  Returns:
    The final state (replicated over the mesh).

  Raises:
    NonFiniteMetricError: a train metric became NaN or infinite.
  """
  mesh = sharding.make_data_mesh() if mesh is None else mesh
  sharding.check_batch_size(options.batch_size, mesh)
  schedule = make_schedule(options, len(train_dataset), task.batches_per_step)
  if rng is None:
    rng = rng_lib.RandomStreams(options.seed).key("train_step")
  os.makedirs(workdir, exist_ok=True)
  checkpointer = checkpoints.Checkpointer(workdir, options.max_checkpoints_to_keep)
  try:
    # A copy: the steps consume (donate) their input state.
    state = sharding.replicate(jax.tree.map(jnp.copy, task.init_state), mesh)
    state, rng, position = _restore(checkpointer, state, sharding.replicate(rng, mesh),
                                    workdir, schedule)
    outputs = _Outputs(workdir, options, schedule, position.step, task.shown_metrics)
  except BaseException:
    checkpointer.close()
    raise
  try:
    if outputs.writer is not None:
      outputs.writer.drop_after(position.step)  # Records a killed run did not save.
      if config is not None:
        workdirs.save_config(config, workdir)
    return _StepLoop(task=task, options=options, schedule=schedule,
                     train_dataset=train_dataset, mesh=mesh, checkpointer=checkpointer,
                     outputs=outputs, step_hooks=step_hooks,
                     num_workers=num_workers).run(state, rng, position)
  finally:
    outputs.close()
    checkpointer.wait()
    checkpointer.close()
