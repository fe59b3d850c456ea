"""float64 for the tests' exact references: one switch for conftest's `x64` fixture and
the module-scoped fixtures that need it."""
import contextlib

import jax


@contextlib.contextmanager
def enabled():
  """jax_enable_x64 on inside the block, restored afterwards."""
  previous = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    yield
  finally:
    jax.config.update("jax_enable_x64", previous)
