"""What every tripjax command line shares: configs, overrides, short errors, devices.

Each CLI (`train/*.py`) builds an `argparse` parser with `make_parser`, adds its own
flags, and calls `main(parser, run_fn, argv)`. The `--config` flag takes a config file
(`configs/digits_vae_trip.py`) or the name of a stock config (`digits_vae_trip`, which
also works after a plain `pip install`), and `--config.<field>=<value>` overrides any
field, typed like the field it replaces:

  python -m train.vae --config digits_vae_trip --workdir runs/x --config.prior.kind=gmm

Mistakes end the command with one or two lines and exit code 2 before anything is
written: an unknown field (with close spellings), a value of the wrong type, a value
the trainer's `validate_config` rejects, a missing config file, a workdir whose saved
config differs (`tripjax.training.workdirs`).
"""
from __future__ import annotations

import argparse
import ast
import difflib
import sys
from typing import Any, Callable, Sequence

from absl import logging
import ml_collections

from tripjax import data as data_lib
from tripjax import xla_cpu
from tripjax.training import checkpoints
from tripjax.training import config_checks
from tripjax.training import config_files
from tripjax.training import distributed
from tripjax.training import experiment
from tripjax.training import loop
from tripjax.training import preemption
from tripjax.training import sharding
from tripjax.training import trainers
from tripjax.training import workdir_lock
from tripjax.training import workdirs

EXIT_USAGE = 2
# `--config` takes a file or a stock config name (`tripjax.training.config_files`).
load_config = config_files.load_config
stock_config_names = config_files.stock_config_names


class UsageError(Exception):
  """A command-line mistake; `main` prints its message on one line and exits 2."""


# Errors from the library that mean "the user asked for something impossible", not a
# bug: `main` prints their message alone.
_EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    UsageError, config_checks.ConfigError, workdirs.ConfigMismatchError,
    workdir_lock.WorkdirLockedError, checkpoints.CheckpointMismatchError,
    checkpoints.CheckpointCorruptError, data_lib.DataNotFoundError, FileNotFoundError)


def _parse_value(field: str, raw: str, field_type: type) -> Any:
  """`raw` (command-line text) as a value for a field of type `field_type`."""
  if raw in ("None", "none", "null") and field_type is not str:
    return None
  if field_type is bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise config_checks.ConfigError(field, raw, "must be True or False.")
  if field_type is str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
      return raw[1:-1]
    return raw
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw
  if field_type in (tuple, list) and isinstance(value, (tuple, list)):
    return tuple(value)
  if field_type is int and isinstance(value, bool):
    value = raw  # `True` is no integer here.
  if field_type is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if field_type in (int, float, tuple, list) and not isinstance(value, field_type):
    article = "an" if field_type is int else "a"
    raise config_checks.ConfigError(field, raw, f"must be {article} "
                                    f"{field_type.__name__}.")
  return value


def apply_override(config: ml_collections.ConfigDict, field: str, raw: str) -> None:
  """Sets `config.<field>` from command-line text, typed like the field it replaces.

  Raises:
    ConfigError: unknown field (with close spellings), or a value of the wrong type.
  """
  names = [name for name, _ in config_checks.flat_fields(config)]
  *parents, leaf = field.split(".")
  node = config
  for depth, part in enumerate(parents + [leaf]):
    if part not in node:
      close = difflib.get_close_matches(field, names, n=3, cutoff=0.6)
      hint = f" Did you mean {' or '.join(close)}?" if close else ""
      raise config_checks.ConfigError(field, raw, f"no such config field.{hint}")
    if depth < len(parents):
      node = node[part]
  field_type = node.get_type(leaf)
  if issubclass(field_type, ml_collections.ConfigDict):
    children = ", ".join(sorted(node[leaf].keys()))
    raise config_checks.ConfigError(
        field, raw, f"is a group of fields ({children}); set one of them, e.g. "
        f"--config.{field}.{sorted(node[leaf].keys())[0]}=...")
  value = _parse_value(field, raw, field_type)
  try:
    node[leaf] = value
  except TypeError:
    raise config_checks.ConfigError(
        field, raw, f"must be of type {field_type.__name__}.") from None


def make_parser(prog: str, description: str, *, config_help: str,
                workdir_help: str | None = "Directory of the run (checkpoints, "
                "metrics, images).") -> argparse.ArgumentParser:
  """An argparse parser with `--config` (and `--workdir`, unless `workdir_help` is None).

  `--config.<field>=<value>` overrides are taken out of argv before argparse sees it.
  """
  parser = argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   allow_abbrev=False)
  parser.add_argument("--config", help=config_help + " Override any field with "
                      "--config.<field>=<value>, e.g. --config.train.seed=1.")
  if workdir_help is not None:
    parser.add_argument("--workdir", required=True, help=workdir_help)
  return parser


def add_trainer_flags(parser: argparse.ArgumentParser) -> None:
  """--allow_config_change and the multi-host flags of every trainer.

  Without the multi-host flags, JAX's cluster auto-detection (e.g. SLURM) applies.
  """
  parser.add_argument("--allow_config_change", action="store_true",
                      help="Continue the run in --workdir although the config differs "
                      "from its saved config.json (e.g. a new learning rate).")
  group = parser.add_argument_group("multi-host training (jax.distributed)")
  group.add_argument("--coordinator_address", help="HOST:PORT of process 0.")
  group.add_argument("--num_processes", type=int, help="Number of processes.")
  group.add_argument("--process_id", type=int, help="This process's index.")


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """(the other arguments, [(field, raw value)] of every --config.<field>=<value>)."""
  rest, overrides = [], []
  for argument in argv:
    if argument.startswith("--config."):
      field, equals, raw = argument[len("--config."):].partition("=")
      if not equals:
        raise UsageError(f"{argument}: write overrides as --config.<field>=<value>.")
      overrides.append((field, raw))
    else:
      rest.append(argument)
  return rest, overrides


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, *,
          default_config: str | None = None,
          config_required: bool = True
          ) -> tuple[argparse.Namespace, ml_collections.ConfigDict | None]:
  """(flags, config with its overrides applied); config None only if not required."""
  argv = sys.argv[1:] if argv is None else list(argv)
  rest, overrides = split_overrides(argv)
  args = parser.parse_args(rest)
  spec = args.config or default_config
  if spec is None:
    if overrides:
      raise UsageError("--config.<field> overrides need --config.")
    if config_required:
      raise UsageError(f"--config is required; stock configs: "
                       f"{', '.join(stock_config_names())}.")
    return args, None
  config = load_config(spec)
  for field, raw in overrides:
    apply_override(config, field, raw)
  return args, config


def quiet_logs() -> None:
  """Orbax logs every checkpoint at INFO through absl; keep warnings only."""
  logging.set_verbosity(logging.WARNING)


def _batch_sizes(config) -> list[int]:
  sizes = []
  for field in ("train.batch_size", "eval.batch_size"):
    try:
      sizes.append(int(config_checks.get_field(config, field)))
    except config_checks.ConfigError:
      pass
  return sizes


def start(args: argparse.Namespace, config: ml_collections.ConfigDict,
          validate_config: Callable[[ml_collections.ConfigDict], None]) -> None:
  """What every trainer does before touching JAX's devices: validates the config,
  joins the other processes of a multi-host run (`distributed.initialize`, from the
  flags of `add_trainer_flags` or a cluster JAX detects), exposes every CPU core as
  a device (`sharding.use_all_cpu_cores`, at most `train.cpu_devices`), has XLA:CPU
  run convolutions with Eigen (`xla_cpu.prefer_eigen_convolutions`) and quiets
  logs."""
  validate_config(config)
  xla_cpu.prefer_eigen_convolutions()
  distributed.initialize(getattr(args, "coordinator_address", None),
                         getattr(args, "num_processes", None),
                         getattr(args, "process_id", None))
  sharding.use_all_cpu_cores(_batch_sizes(config),
                             max_devices=config.train.get("cpu_devices"))
  quiet_logs()


def train(args: argparse.Namespace, config: ml_collections.ConfigDict | None,
          trainer: experiment.Trainer) -> None:
  """Trains as `config` says in `args.workdir` with `trainer` (a task module's
  `TRAINER`), after the classifiers its metrics need (`trainers.train_and_evaluate`)."""
  if config is None:
    raise UsageError("--config is required for training; stock configs: "
                     + ", ".join(stock_config_names()) + ".")
  start(args, config, trainer.validate_config)
  trainers.train_and_evaluate(config, args.workdir,
                              allow_config_change=args.allow_config_change)


def evaluate(args: argparse.Namespace, config: ml_collections.ConfigDict | None,
             trainer: experiment.Trainer) -> None:
  """Evaluates the checkpoint `args.step` (default: the newest) of the run in
  `args.workdir` with `trainer.evaluate_checkpoint` and prints its record; `config`
  defaults to the run's saved one."""
  if trainer.evaluate_checkpoint is None:
    raise UsageError(f"a {trainer.name!r} run has no checkpoint evaluation.")
  if config is None:
    config = workdirs.load_config(args.workdir)
  start(args, config, trainer.validate_config)
  record = trainer.evaluate_checkpoint(config, args.workdir, args.step)
  print(" ".join(f"{name}={value}" for name, value in record.items()))


def main(run_fn: Callable[[], int | None]) -> int:
  """Runs `run_fn`; expected errors become one line on stderr and exit code 2."""
  try:
    status = run_fn()
  except _EXPECTED_ERRORS as error:
    print(f"error: {error}", file=sys.stderr)
    return EXIT_USAGE
  except loop.NonFiniteMetricError as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  except preemption.Stopped as stopped:
    if distributed.is_main_process():
      print(stopped, file=sys.stderr)
    return stopped.exit_code
  return 0 if status is None else int(status)
