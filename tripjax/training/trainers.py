"""Every task by name, and what works for any of them: training with the classifiers
its metrics need, samplers for FID, the prior and decoder for mode hopping.

`TRAINERS` maps `config.task` to the task's `experiment.Trainer`. The commands go
through here: `train_and_evaluate(config, workdir)` first trains (or reuses) the
classifiers the run's metrics score with (`Trainer.classifiers`), then runs the task
with `experiment.train_and_evaluate`. `load_checkpoint_sampler(workdir)` and
`load_latent_model(workdir)` read a run's config.json and ask its trainer.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import ml_collections
import tqdm

from tripjax.training import classifier
from tripjax.training import config_files
from tripjax.training import cvae
from tripjax.training import experiment
from tripjax.training import gan
from tripjax.training import loop
from tripjax.training import samplers
from tripjax.training import vae
from tripjax.training import workdirs

TRAINERS: dict[str, experiment.Trainer] = {
    trainer.name: trainer
    for trainer in (vae.TRAINER, gan.TRAINER, cvae.TRAINER, classifier.TRAINER)}


def trainer(task: str) -> experiment.Trainer:
  """The trainer of `config.task`.

  Raises:
    ValueError: no such task (the message lists them).
  """
  if task not in TRAINERS:
    raise ValueError(f"Unknown task {task!r}; valid tasks: {', '.join(TRAINERS)}.")
  return TRAINERS[task]


def prepare_classifiers(config: ml_collections.ConfigDict, *,
                        log: Callable[[str], None] = tqdm.tqdm.write) -> None:
  """Trains the classifiers `config`'s metrics score with, where they are missing or
  were trained with another config (`classifier.get_or_train`)."""
  for run in trainer(config.task).classifiers(config):
    classifier.get_or_train(config_files.load_config(run.config_name), run.workdir,
                            log=log)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       mesh: jax.sharding.Mesh | None = None,
                       step_hooks: Sequence[loop.StepHook] = (),
                       allow_config_change: bool = False) -> Any:
  """Trains the task of `config.task` in `workdir` (after `prepare_classifiers`)."""
  task_trainer = trainer(config.task)
  task_trainer.validate_config(config)
  prepare_classifiers(config)
  return experiment.train_and_evaluate(task_trainer, config, workdir, mesh=mesh,
                                       step_hooks=step_hooks,
                                       allow_config_change=allow_config_change)


def load_checkpoint_sampler(workdir: str, step: int | None = None
                            ) -> samplers.CheckpointSampler:
  """The sampler of the newest (or the given) checkpoint of any training run.

  Raises:
    ValueError: the run's task generates no images.
  """
  config = workdirs.load_config(workdir)
  task_trainer = trainer(config.task)
  if task_trainer.checkpoint_sampler is None:
    raise ValueError(f"{workdir} is a {config.task!r} run, which generates no images.")
  return task_trainer.checkpoint_sampler(config, workdir, step)


def load_latent_model(workdir: str, step: int | None = None, *,
                      config: ml_collections.ConfigDict | None = None
                      ) -> samplers.LatentModel:
  """The prior and decoder of the newest (or the given) checkpoint of a training run.

  `config` defaults to the run's saved config.json.

  Raises:
    ValueError: the run's task has no unconditional prior and decoder.
  """
  config = workdirs.load_config(workdir) if config is None else config
  task_trainer = trainer(config.task)
  if task_trainer.latent_model is None:
    able = [name for name, other in TRAINERS.items() if other.latent_model is not None]
    raise ValueError(f"{workdir} is a {config.task!r} run, which has no unconditional "
                     f"prior and decoder; latent-space pictures need a "
                     f"{' or '.join(able)} run.")
  return task_trainer.latent_model(config, workdir, step)
