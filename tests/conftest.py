"""Test setup: CPU only, no accelerator probing."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import float64
import pytest

from tripjax import xla_cpu

# As the train CLIs do: XLA:CPU convolutions by Eigen, so the tests run their code paths
# (tests/test_models.py covers the layers' other kernel gradients as well).
xla_cpu.prefer_eigen_convolutions()


@pytest.fixture
def x64():
  """Runs the test with float64 enabled (restored afterwards)."""
  with float64.enabled():
    yield
