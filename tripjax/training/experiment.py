"""One way to run any task: validate, lock the workdir, check it, build, train.

Each task module (`vae`, `gan`, `cvae`, `classifier`) describes itself as a `Trainer`:
its config check, `build` (what the loop needs for one run: an `Experiment`) and what
a trained run offers (evaluation of a checkpoint, samplers for FID, the prior and
decoder for latent-space pictures). `train_and_evaluate(trainer, config, workdir)`
runs any of them the same way:

  validate the config -> lock the workdir (`workdir_lock`: one run per workdir) ->
  refuse a workdir of another config (`workdirs.check_rerun`) -> the device mesh ->
  the random streams of `train.seed` -> `trainer.build` -> the training input
  (`data.cache_dir`'s preprocessed cache, `data.num_workers` grain workers: see
  `tripjax.input_pipeline`) -> a one-line header -> `loop.run`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Sequence

import jax
import ml_collections
import tqdm

from tripjax import data as data_lib
from tripjax import input_pipeline
from tripjax.training import config_checks
from tripjax.training import distributed
from tripjax.training import loop
from tripjax.training import rng as rng_lib
from tripjax.training import samplers
from tripjax.training import sharding
from tripjax.training import workdir_lock
from tripjax.training import workdirs


class RunContext(NamedTuple):
  """What `Trainer.build` gets besides the config.

  Attributes:
    workdir: the run's workdir (locked by this run).
    mesh: the 1-D data mesh the loop trains on.
    streams: the run's random streams (`RandomStreams(config.train.seed)`).
  """
  workdir: str
  mesh: jax.sharding.Mesh
  streams: rng_lib.RandomStreams


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What a task builds for one run.

  Attributes:
    task: what the loop trains (state, step, after_step, ...).
    train_dataset: the training split.
    header: one line that says what is trained, printed before training (the device
      count and the workdir are appended).
  """
  task: loop.Task
  train_dataset: data_lib.ImageDataset
  header: str


class ClassifierRun(NamedTuple):
  """A trained classifier a run scores with: the stock config it is trained with, and
  the workdir it is (or is to be) trained in."""
  config_name: str
  workdir: str


class RestoredModel(NamedTuple):
  """A model at a checkpoint, for inference.

  Attributes:
    model: the task's model (modules and prior).
    params: its parameters at the checkpoint, as host arrays.
    position: the checkpoint's `loop.Position`.
  """
  model: Any
  params: Any
  position: loop.Position


def _no_classifiers(config: ml_collections.ConfigDict) -> Sequence[ClassifierRun]:
  del config
  return ()


@dataclasses.dataclass(frozen=True)
class Trainer:
  """A task as the run function, the CLIs, samplers, FID and mode hopping see it.

  Attributes:
    name: `config.task`.
    validate_config: raises `ConfigError` for the first bad field.
    build: (config, `RunContext`) -> `Experiment`.
    evaluate_checkpoint: (config, workdir, step) -> the record of its evaluation
      (`evaluation.write_checkpoint_eval`); None: the task has none.
    checkpoint_sampler: (config, workdir, step) -> `samplers.CheckpointSampler`, what
      FID scores; None: the task generates no images.
    latent_model: (config, workdir, step) -> `samplers.LatentModel`, the prior and
      decoder of an unconditional model (mode hopping); None: it has none.
    classifiers: config -> the `ClassifierRun`s its metrics score with; the CLIs
      train the missing ones first (`tripjax.training.trainers`).
  """
  name: str
  validate_config: Callable[[ml_collections.ConfigDict], None]
  build: Callable[[ml_collections.ConfigDict, RunContext], Experiment]
  evaluate_checkpoint: Callable[[ml_collections.ConfigDict, str, int | None], dict] | None = None
  checkpoint_sampler: Callable[[ml_collections.ConfigDict, str, int | None],
                               samplers.CheckpointSampler] | None = None
  latent_model: Callable[[ml_collections.ConfigDict, str, int | None],
                         samplers.LatentModel] | None = None
  classifiers: Callable[[ml_collections.ConfigDict], Sequence[ClassifierRun]] = _no_classifiers

  def train_and_evaluate(self, config: ml_collections.ConfigDict, workdir: str, *,
                         mesh: jax.sharding.Mesh | None = None,
                         step_hooks: Sequence[loop.StepHook] = (),
                         allow_config_change: bool = False) -> Any:
    """Trains this task as `config` says in `workdir` (`train_and_evaluate`); returns
    the final state. The trainer's metrics' classifiers must exist (the CLIs train
    them first: `tripjax.training.trainers.train_and_evaluate`)."""
    return train_and_evaluate(self, config, workdir, mesh=mesh, step_hooks=step_hooks,
                              allow_config_change=allow_config_change)


def check_split_fields(config: ml_collections.ConfigDict) -> None:
  """`data.split` and `data.split_seed`, and no validation split to evaluate on under
  random_90_10."""
  config_checks.check_choice(config, "data.split", data_lib.SPLIT_SCHEMES)
  config_checks.check_int(config, "data.split_seed", minimum=0)
  if config.data.split != "tfds" and config.eval.split == "validation":
    raise config_checks.ConfigError(
        "eval.split", "validation", f"data.split = {config.data.split!r} has only "
        f"train and test.")


def load_split(config: ml_collections.ConfigDict, split: str,
               num_examples: int | None = None) -> data_lib.ImageDataset:
  """Split `split` of `config.data.name` (from `data.data_dir`, binarized as
  `data.binarize` says, split as `data.split` with `data.split_seed` say, where the
  config has those fields), its first `num_examples` examples (None: all)."""
  dataset = data_lib.load_dataset(
      config.data.name, split, data_dir=config.data.get("data_dir"),
      binarize=config.data.get("binarize"),
      split_scheme=config.data.get("split", "tfds"),
      split_seed=config.data.get("split_seed", data_lib.PAPER_SPLIT_SEED))
  return dataset if num_examples is None else dataset.take(num_examples)


def _lock(workdir: str) -> workdir_lock.WorkdirLock:
  """The workdir's lock, taken by process 0 for all; every process learns whether it
  was taken (a collective with several processes)."""
  lock = workdir_lock.WorkdirLock(workdir, enabled=distributed.is_main_process())
  error = None
  try:
    lock.acquire()
  except workdir_lock.WorkdirLockedError as locked:
    error = locked
  if distributed.any_process(error is not None):
    if error is not None:
      raise error
    holder = workdir_lock.read_holder(workdir)  # What process 0 found.
    if holder is None:
      raise workdir_lock.WorkdirLockedError(workdir, None, None, None, None)
    raise workdir_lock.WorkdirLockedError(workdir, holder.host, holder.pid,
                                          holder.started, None)
  return lock


def train_and_evaluate(trainer: Trainer, config: ml_collections.ConfigDict, workdir: str, *,
                       mesh: jax.sharding.Mesh | None = None,
                       step_hooks: Sequence[loop.StepHook] = (),
                       allow_config_change: bool = False) -> Any:
  """Trains `trainer`'s task as `config` says, resuming from `workdir`'s checkpoints.

  Writes workdir/config.json, metrics.jsonl, checkpoints/ and images/. Returns the
  final state.

  Raises:
    ConfigError: a bad config value (before anything is written).
    WorkdirLockedError: another live run uses `workdir`.
    ConfigMismatchError: `workdir` holds a run of another config.
  """
  trainer.validate_config(config)
  num_workers = input_pipeline.check_num_workers(
      config.data.get("num_workers", input_pipeline.DEFAULT_NUM_WORKERS))
  with _lock(workdir):
    workdirs.check_rerun(config, workdir, allow_config_change=allow_config_change)
    mesh = sharding.make_data_mesh() if mesh is None else mesh
    streams = rng_lib.RandomStreams(config.train.seed)
    experiment = trainer.build(config, RunContext(workdir, mesh, streams))
    train_dataset = input_pipeline.cached(experiment.train_dataset,
                                          config.data.get("cache_dir"),
                                          num_workers=num_workers)
    if distributed.is_main_process():
      tqdm.tqdm.write(f"{experiment.header}; "
                      f"{input_pipeline.describe(train_dataset, num_workers)}; "
                      f"{mesh.devices.size} device(s); writing to {workdir}.")
    return loop.run(workdir=workdir, options=loop.LoopOptions.from_config(config.train),
                    task=experiment.task, train_dataset=train_dataset,
                    mesh=mesh, step_hooks=step_hooks, config=config,
                    rng=streams.key("train_step"), num_workers=num_workers)
