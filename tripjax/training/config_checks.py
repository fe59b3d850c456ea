"""Up-front checks of config values, with errors that name the field and valid choices.

Every trainer's `validate_config(config)` calls these before anything is written, so a
bad value stops the CLI with one line (`tripjax.training.cli`), e.g.

  config field train.batch_size = 0: must be a positive integer.
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable, Sequence


class ConfigError(ValueError):
  """A config field has a bad value (or does not exist)."""

  def __init__(self, field: str, value: Any, requirement: str):
    self.field = field
    self.value = value
    self.requirement = requirement
    super().__init__(f"config field {field} = {value!r}: {requirement}")


def get_field(config, field: str) -> Any:
  """The value of a dotted field ("train.batch_size"); ConfigError if it is missing."""
  node = config
  for part in field.split("."):
    if part not in node:
      raise ConfigError(field, None, "this field is missing from the config.")
    node = node[part]
  return node


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(config, field: str, *, minimum: int | None = None,
              optional: bool = False) -> None:
  """An integer >= `minimum` (None allowed when `optional`)."""
  value = get_field(config, field)
  if value is None and optional:
    return
  bound = "" if minimum is None else f" >= {minimum}"
  if not _is_int(value) or (minimum is not None and value < minimum):
    names = {1: "a positive integer", 0: "a non-negative integer"}
    kind = names.get(minimum, f"an integer{bound}") if minimum is not None else (
        "an integer")
    raise ConfigError(field, value, f"must be {kind}"
                      + (" or None." if optional else "."))


def check_number(config, field: str, *, minimum: float | None = None,
                 maximum: float | None = None, exclusive_minimum: bool = False,
                 optional: bool = False) -> None:
  """A real number in [minimum, maximum] ((minimum, maximum] if exclusive_minimum)."""
  value = get_field(config, field)
  if value is None and optional:
    return
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if ok and minimum is not None:
    ok = value > minimum if exclusive_minimum else value >= minimum
  if ok and maximum is not None:
    ok = value <= maximum
  if not ok:
    low = "" if minimum is None else ("> " if exclusive_minimum else ">= ") + f"{minimum}"
    high = "" if maximum is None else f"<= {maximum}"
    bounds = " and ".join(part for part in (low, high) if part)
    raise ConfigError(field, value, f"must be a number{' ' + bounds if bounds else ''}"
                      + (" or None." if optional else "."))


def check_choice(config, field: str, choices: Sequence[Any]) -> None:
  """One of `choices`."""
  value = get_field(config, field)
  if value not in choices:
    raise ConfigError(field, value,
                      f"must be one of {', '.join(repr(choice) for choice in choices)}.")


def check_bool(config, field: str) -> None:
  value = get_field(config, field)
  if not isinstance(value, bool):
    raise ConfigError(field, value, "must be True or False.")


def check_int_sequence(config, field: str, *, minimum: int | None = None,
                       optional: bool = False) -> None:
  """A tuple/list of integers >= `minimum` (None allowed when `optional`)."""
  value = get_field(config, field)
  if value is None and optional:
    return
  if not isinstance(value, (tuple, list)) or not all(
      _is_int(item) and (minimum is None or item >= minimum) for item in value):
    bound = "" if minimum is None else f" >= {minimum}"
    raise ConfigError(field, value, f"must be a tuple of integers{bound}, e.g. (1, 2)"
                      + (" or None." if optional else "."))


def check_divides(config, field: str, divisor_field: str) -> None:
  """`field` is a multiple of `divisor_field` (both positive integers)."""
  value, divisor = get_field(config, field), get_field(config, divisor_field)
  if value % divisor:
    raise ConfigError(field, value, f"must be a multiple of {divisor_field} = {divisor}.")


def flat_fields(config, prefix: str = "") -> Iterable[tuple[str, Any]]:
  """(dotted name, value) of every leaf field of a ConfigDict (or dict)."""
  for name in config:
    value = config[name]
    if hasattr(value, "keys") and not isinstance(value, str):
      yield from flat_fields(value, f"{prefix}{name}.")
    else:
      yield f"{prefix}{name}", value


def check_common_train_fields(config) -> None:
  """The `config.train` fields that the shared loop reads (configs/base.py)."""
  check_int(config, "train.num_epochs", minimum=1)
  check_int(config, "train.num_steps", minimum=1, optional=True)
  check_int(config, "train.batch_size", minimum=1)
  check_int(config, "train.seed", minimum=0)
  check_int(config, "train.checkpoint_every_steps", minimum=1)
  check_int(config, "train.max_checkpoints_to_keep", minimum=1)
  check_int(config, "train.log_every_steps", minimum=1)
  check_int(config, "train.max_steps", minimum=0, optional=True)
  check_bool(config, "train.progress_bar")
  check_int(config, "train.cpu_devices", minimum=1, optional=True)
  check_number(config, "train.learning_rate", minimum=0.0, exclusive_minimum=True)


def check_prior_size_fields(config) -> None:
  """The prior's size and learning rate, as every trainer with a prior reads them."""
  check_int(config, "prior.num_components", minimum=1)
  check_int(config, "prior.rank", minimum=1)
  check_number(config, "prior.learning_rate", minimum=0.0, exclusive_minimum=True,
               optional=True)
