"""Configs by file path or by the name of a stock config in `tripjax.configs`.

`--config configs/digits_vae_trip.py` and `--config digits_vae_trip` (which also works
after a plain `pip install`) load the same ConfigDict; `--config paper.celeba_vae` is
configs/paper/celeba_vae.py.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil

import ml_collections

STOCK_CONFIG_PACKAGE = "tripjax.configs"


class ConfigNotFoundError(FileNotFoundError):
  """No config file of that path, and no stock config of that name."""


def stock_config_names() -> list[str]:
  """Names of the configs shipped in `tripjax.configs` (base configs excluded), those
  of its subpackages dotted: "paper.celeba_vae" is configs/paper/celeba_vae.py."""
  package = importlib.import_module(STOCK_CONFIG_PACKAGE)
  names = []
  for module in pkgutil.iter_modules(package.__path__):
    if module.name.startswith(("base", "_")):
      continue
    if not module.ispkg:
      names.append(module.name)
      continue
    subpackage = importlib.import_module(f"{STOCK_CONFIG_PACKAGE}.{module.name}")
    names += [f"{module.name}.{sub.name}"
              for sub in pkgutil.iter_modules(subpackage.__path__)
              if not sub.ispkg and not sub.name.startswith(("base", "_"))]
  return sorted(names)


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The ConfigDict of a config file path or a stock config name, locked.

  Raises:
    ConfigNotFoundError: no such file or stock config (the message lists them).
  """
  if os.path.isfile(spec):
    module_name = "tripjax_config_" + os.path.splitext(os.path.basename(spec))[0]
    module_spec = importlib.util.spec_from_file_location(module_name, spec)
    if module_spec is None or module_spec.loader is None:
      raise ConfigNotFoundError(f"--config {spec}: not a Python file.")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
  else:
    name = spec[:-3] if spec.endswith(".py") else spec
    names = stock_config_names()
    if os.sep in name or name not in names:
      raise ConfigNotFoundError(f"--config {spec}: no such config file, and no stock "
                                f"config of that name; stock configs: "
                                f"{', '.join(names)}.")
    module = importlib.import_module(f"{STOCK_CONFIG_PACKAGE}.{name}")
  config = module.get_config()
  config.lock()
  return config
