"""What the trainer tests share: host copies of a state's leaves and a simulated kill."""
import jax
import numpy as np


def leaves(state) -> list[np.ndarray]:
  """Every leaf of a (possibly sharded) pytree as a host array, in tree order."""
  return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(state))]


class SimulatedKill(Exception):
  """Raised by `kill_after`'s hook: a run that dies between two steps."""


def kill_after(kill_step: int):
  """A loop step hook that raises `SimulatedKill` after step `kill_step`."""
  def hook(step, state):
    del state
    if step == kill_step:
      raise SimulatedKill(step)
  return hook
