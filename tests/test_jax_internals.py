"""tripjax.jax_internals: the private JAX APIs tripjax relies on still answer."""
import os
import subprocess
import sys

from tripjax import jax_internals

_BACKENDS_SCRIPT = """
from tripjax import jax_internals
before = jax_internals.backends_started()
import jax.numpy as jnp
jnp.zeros(1).block_until_ready()
print(before, jax_internals.backends_started())
"""

_SLURM = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[001-004]",
          "SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "0"}


def _environment(**extra):
  environment = {name: value for name, value in os.environ.items()
                 if not name.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR",
                                         "TPU_", "KUBERNETES_", "MEGASCALE_"))}
  return dict(environment, JAX_PLATFORMS="cpu", **extra)


def test_backends_start_with_the_first_computation():
  output = subprocess.run([sys.executable, "-c", _BACKENDS_SCRIPT], env=_environment(),
                          capture_output=True, text=True, timeout=120, check=True)
  assert output.stdout.split() == ["False", "True"]


def test_a_slurm_job_is_detected_with_its_process_count(monkeypatch):
  for name in list(os.environ):
    if name.startswith(("SLURM_", "OMPI_", "PMI_")):
      monkeypatch.delenv(name)
  assert jax_internals.cluster_process_count() is None
  for name, value in _SLURM.items():
    monkeypatch.setenv(name, value)
  assert jax_internals.cluster_process_count() == 4


def test_without_the_private_modules_the_answers_are_the_safe_ones(monkeypatch):
  monkeypatch.setattr(jax_internals, "_cluster_types", lambda: [])
  assert jax_internals.cluster_process_count() is None
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
  monkeypatch.delattr(xla_bridge, "backends_are_initialized")
  assert jax_internals.backends_started() is True
