"""A run's workdir: its saved config, and the check that a rerun continues the same run.

Every trainer writes `workdir/config.json` when it starts. Running again in the same
workdir continues that run, so the new config must be the saved one except for the
fields that only move the schedule or the bookkeeping (`RESUMABLE_FIELDS`): anything
else is refused before a file is written, naming the fields that differ.
"""
from __future__ import annotations

import fnmatch
import json
import os

import ml_collections

from tripjax.training import config_checks

CONFIG_FILENAME = "config.json"

# Fields a rerun may change: how long to train, how often to log, save and evaluate,
# where the data lives, how many CPU devices share the batch. Shell-style patterns
# over dotted field names.
RESUMABLE_FIELDS = (
    "train.num_epochs", "train.num_steps", "train.max_steps", "train.progress_bar",
    "train.log_every_steps", "train.checkpoint_every_steps",
    "train.max_checkpoints_to_keep", "train.cpu_devices", "data.data_dir", "eval.*",
    # how the same batches are read (tripjax.input_pipeline: identical for any value)
    "data.num_workers", "data.cache_dir",
)


# Fields added to a task's configs after runs were saved without them, with the value
# that means what their absence meant: a saved config gets them on `load_config`, so an
# old workdir still restores, evaluates and continues with today's base configs.
# "*": every task's.
ADDED_FIELDS: dict[str, dict[str, object]] = {
    "*": {"data.split": "tfds", "data.split_seed": 777},
    "vae": {"model.likelihood": None, "prior.num_mixture_components": None,
            "prior.flows": 0, "prior.refit_kinds": ["gmm", "trip"],
            "prior.refit_redraws_cores": False},
    "gan": {"model.critic_widths": None, "gan.penalty_norm": "per_example",
            "prior.adam_b1": None, "prior.adam_b2": None,
            "train.reset_optimizer_every_steps": 0, "prior.gradient_estimator": "score",
            "prior.flows": 0},
    "cvae": {"train.attribute_weight": 1.0},
}

# Groups of fields a run saved before they existed never used (the model kind that
# reads them did not exist yet), so a rerun may bring any value: shell-style patterns.
UNUSED_WHEN_ABSENT: dict[str, tuple[str, ...]] = {
    "cvae": ("imputer.*",),  # read by model.kind=cvae_imputed only
}


def with_added_fields(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with the `ADDED_FIELDS` of its task that it lacks (a copy)."""
  config = ml_collections.ConfigDict(config.to_dict())
  added = dict(ADDED_FIELDS["*"], **ADDED_FIELDS.get(config.get("task", ""), {}))
  for field, value in added.items():
    *path, name = field.split(".")
    node = config
    for part in path:
      node = node[part] if part in node else None
      if node is None:
        break
    if node is not None and name not in node:
      node[name] = value
  return config


class ConfigMismatchError(ValueError):
  """A rerun's config differs from the one saved in its workdir."""


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_FILENAME)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in `workdir/config.json`.

  Raises:
    FileNotFoundError: `workdir` holds no run.
  """
  path = config_path(workdir)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir!r} a training workdir? "
                            "Pass --config to use an explicit config.")
  with open(path) as file:
    return with_added_fields(ml_collections.ConfigDict(json.load(file)))


def _as_json_values(config) -> dict:
  """Flat {field: value} as config.json stores it (tuples become lists)."""
  return dict(config_checks.flat_fields(json.loads(config.to_json())))


def config_differences(saved: ml_collections.ConfigDict,
                       new: ml_collections.ConfigDict) -> list[tuple[str, object, object]]:
  """[(field, saved value, new value)] of the fields that differ, not resumable ones."""
  saved_values, new_values = _as_json_values(saved), _as_json_values(new)
  unused_when_absent = UNUSED_WHEN_ABSENT.get(saved.get("task", ""), ())
  differences = []
  for field in sorted(set(saved_values) | set(new_values)):
    if any(fnmatch.fnmatchcase(field, pattern) for pattern in RESUMABLE_FIELDS):
      continue
    missing = "<absent>"
    old, value = saved_values.get(field, missing), new_values.get(field, missing)
    if old is missing and any(fnmatch.fnmatchcase(field, pattern)
                              for pattern in unused_when_absent):
      continue
    if old != value:
      differences.append((field, old, value))
  return differences


def check_rerun(config: ml_collections.ConfigDict, workdir: str, *,
                allow_config_change: bool = False) -> None:
  """Raises ConfigMismatchError if `workdir` holds a run of another config.

  A workdir without config.json (a new run) always passes. With
  `allow_config_change`, differences are accepted (the caller rewrites config.json).
  """
  if allow_config_change or not os.path.exists(config_path(workdir)):
    return
  differences = config_differences(load_config(workdir), config)
  if differences:
    listed = "; ".join(f"{field}: {old!r} in the run, {new!r} now"
                       for field, old, new in differences[:6])
    more = f" (and {len(differences) - 6} more)" if len(differences) > 6 else ""
    raise ConfigMismatchError(
        f"{workdir} holds a run with another config ({listed}{more}). Use a new "
        f"--workdir for a new run, or pass --allow_config_change to continue this run "
        f"with the new values on purpose.")


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes `workdir/config.json` atomically (creating `workdir`)."""
  os.makedirs(workdir, exist_ok=True)
  path = config_path(workdir)
  temporary_path = path + ".tmp"
  with open(temporary_path, "w") as file:
    file.write(config.to_json(indent=2))
  os.replace(temporary_path, path)
