"""Atomic orbax checkpoints of the whole training state, keeping the newest few."""
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIRNAME = "checkpoints"


class Checkpointer:
  """Saves/restores one pytree per step under `workdir/checkpoints/<step>`.

  Orbax writes each checkpoint to a temporary directory and renames it when complete,
  so a run killed mid-save leaves the previous checkpoints intact. Saves are
  asynchronous (arrays are copied to host before `save` returns); `wait` blocks
  until the files are on disk.
  """

  def __init__(self, workdir: str, max_to_keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIRNAME)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """The newest completed checkpoint's step, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, tree: Any) -> None:
    """Starts saving `tree` as checkpoint `step` (no-op if that step exists)."""
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(tree))

  def restore(self, target: Any, step: int | None = None) -> Any:
    """Restores checkpoint `step` (default: latest) into the structure, dtypes and
    shardings of `target` (a pytree of arrays like the one saved)."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"No checkpoint in {self.directory}.")
    abstract_target = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_target))

  def wait(self) -> None:
    """Blocks until pending saves are complete."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
