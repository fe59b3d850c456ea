"""tripjax.xla_cpu: reading XLA's YNNPACK flag, and setting it before JAX starts."""
import os
import subprocess
import sys

import pytest

from tripjax import xla_cpu

FLAG = xla_cpu.YNN_FUSION_FLAG


@pytest.mark.parametrize("flags, expected", [
    ("", True),                                           # XLA's default
    ("--xla_force_host_platform_device_count=2", True),
    (f"{FLAG}=-individual_convolution", False),           # what tripjax sets
    (f"{FLAG}=", False),                                  # all YNNPACK fusions off
    (f"{FLAG}=-individual_dot", True),
    (f"{FLAG}=+individual_convolution", True),
    (f"{FLAG}=individual_dot", False),                    # a list replaces the set
    (f"{FLAG}=individual_dot,individual_convolution", True),
    (f"{FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION", True),
    (f"{FLAG}=-individual_convolution --xla_cpu_use_xnnpack=false "
     f"{FLAG}=+individual_convolution", True),            # the last one wins
])
def test_ynnpack_runs_convolutions_reads_the_flag(flags, expected):
  assert xla_cpu.ynnpack_runs_convolutions(flags) is expected


_SCRIPT = """
import os, jax
from tripjax import xla_cpu
from tripjax.models import layers
added = xla_cpu.prefer_eigen_convolutions()
jax.devices()
again = xla_cpu.prefer_eigen_convolutions()
print(added, layers.kernel_gradient_by_convolution(), again,
      repr(os.environ.get("XLA_FLAGS")))
"""


def _run(xla_flags: str | None) -> list[str]:
  """In a fresh process: prefer_eigen_convolutions(), JAX's backend started, the
  layers' choice, a second call, and XLA_FLAGS."""
  environment = {name: value for name, value in os.environ.items()
                 if name != "XLA_FLAGS"}
  environment["JAX_PLATFORMS"] = "cpu"
  if xla_flags is not None:
    environment["XLA_FLAGS"] = xla_flags
  result = subprocess.run([sys.executable, "-c", _SCRIPT], env=environment,
                          capture_output=True, text=True, timeout=120, check=True)
  return result.stdout.strip().split(maxsplit=3)


def test_prefer_eigen_convolutions_sets_the_flag_once_before_jax_starts():
  """Added to the user's other flags; the layers then take XLA's kernel gradients; a
  call after JAX started its backend changes nothing."""
  added, by_convolution, again, flags = _run("--xla_cpu_use_xnnpack=true")
  assert (added, by_convolution, again) == ("True", "True", "False")
  assert flags == repr(f"--xla_cpu_use_xnnpack=true {xla_cpu.EIGEN_CONVOLUTIONS}")


def test_a_users_own_ynnpack_flag_wins():
  user = f"{FLAG}=+individual_convolution"
  added, by_convolution, _, flags = _run(user)
  assert (added, by_convolution, flags) == ("False", "False", repr(user))


@pytest.mark.parametrize("version, added", [("0.10.2", True), ("0.11.0.dev20260101", True),
                                            ("0.10.1", False), ("0.4.30", False)])
def test_no_flag_for_a_jaxlib_that_may_not_know_it(monkeypatch, version, added):
  """XLA aborts on an unknown flag: older jaxlibs (YNNPACK convolutions came with
  0.10.2) get none."""
  monkeypatch.setattr(xla_cpu.jaxlib, "__version__", version)
  monkeypatch.setattr(xla_cpu.jax_internals, "backends_started", lambda: False)
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_xnnpack=true")
  assert xla_cpu.prefer_eigen_convolutions() is added
  assert (xla_cpu.EIGEN_CONVOLUTIONS in os.environ["XLA_FLAGS"]) is added
