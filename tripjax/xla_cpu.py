"""Which library runs XLA:CPU's convolutions, and tripjax's choice: Eigen's.

XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK by default. On the paper's
stride-2 convolutions (5x5 in the GAN, 4x4 in the VAE) Eigen's kernels are faster,
and XLA's kernel gradient of a strided convolution becomes faster than the matrix
products of `tripjax.models.layers.patch_gram` (with YNNPACK it is up to 5x slower).
Measured on 2 cores (`benchmarks/gan_step.py`, `benchmarks/vae_step.py`; README).

`prefer_eigen_convolutions` appends `EIGEN_CONVOLUTIONS` to `XLA_FLAGS` before JAX
starts its backends; the train CLIs and the benchmarks call it, and a script that
builds models itself can call it first, or set the flag in its environment.
`tripjax.models.layers` reads the flag (`ynnpack_runs_convolutions`) to pick its kernel
gradients, so the code is fast either way.
"""
from __future__ import annotations

import os
import re

import jaxlib

from tripjax import jax_internals

YNN_FUSION_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
# XLA's repeated-enum flag syntax: "-x" removes x from the default set, "+x" adds it,
# a plain list replaces the set, an empty value clears it.
EIGEN_CONVOLUTIONS = f"{YNN_FUSION_FLAG}=-individual_convolution"
_CONVOLUTION = "individual_convolution"
_FLAG_VALUES = re.compile(re.escape(YNN_FUSION_FLAG) + r"=(\S*)")
# YNNPACK runs convolutions by default from jaxlib 0.10.2; XLA aborts on flags it does
# not know, so older jaxlibs get no flag (and the layers keep `patch_gram`).
FIRST_JAXLIB = (0, 10, 2)


def _jaxlib_version() -> tuple[int, ...]:
  return tuple(int(part) for part in re.findall(r"\d+", jaxlib.__version__)[:3])


def ynnpack_runs_convolutions(xla_flags: str | None = None) -> bool:
  """Whether XLA:CPU runs convolutions with YNNPACK (its default) under `xla_flags`.

  Args:
    xla_flags: the flags string; default `os.environ["XLA_FLAGS"]`.
  """
  if xla_flags is None:
    xla_flags = os.environ.get("XLA_FLAGS", "")
  enabled = True
  for value in _FLAG_VALUES.findall(xla_flags):
    items = [item.strip().lower() for item in value.split(",") if item.strip()]
    names = [item.lstrip("+-").removeprefix("library_fusion_type_") for item in items]
    if not items:                                       # empty: clear the set
      enabled = False
    elif all(item[0] in "+-" for item in items):        # incremental
      for item, name in zip(items, names):
        if name == _CONVOLUTION:
          enabled = item[0] == "+"
    else:                                               # a list replaces the set
      enabled = _CONVOLUTION in names
  return enabled


def prefer_eigen_convolutions() -> bool:
  """Before JAX starts its backends: XLA:CPU convolutions by Eigen, not YNNPACK.

  Appends `EIGEN_CONVOLUTIONS` to `XLA_FLAGS` unless the user set that flag already,
  JAX has started its backends (the flags are read then) or jaxlib is older than
  `FIRST_JAXLIB`. Harmless on an accelerator.

  Returns:
    Whether the flag was added.
  """
  flags = os.environ.get("XLA_FLAGS", "")
  if (YNN_FUSION_FLAG in flags or _jaxlib_version() < FIRST_JAXLIB
      or jax_internals.backends_started()):
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_CONVOLUTIONS}".strip()
  return True
