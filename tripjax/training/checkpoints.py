"""Atomic orbax checkpoints of the whole training state, keeping the newest few.

Damaged checkpoints do not stop a run: `Checkpointer.restore_newest_valid` restores the
newest checkpoint that reads back, moves the newer damaged ones aside (never deletes
them) and reports them, together with the leftovers of interrupted saves.

What orbax 0.12.8 writes (one directory per step, `checkpoints/<step>/`):

  _CHECKPOINT_METADATA         step metadata (JSON; orbax restores without it)
  commit_success.txt
  default/_METADATA            the tree structure, shapes and dtypes (JSON)
  default/manifest.ocdbt       the OCDBT database root
  default/ocdbt.process_<i>/   the array data written by process i (manifest.ocdbt, d/*)
  default/d/*, _sharding, array_metadatas/process_<i>

A save first writes `checkpoints/<step>.orbax-checkpoint-tmp/` and renames it to
`<step>` when complete, so an interrupted save leaves only that temporary directory.
Orbax lists only directories named exactly `<step>`: a damaged checkpoint renamed to
`<step>.corrupt-<n>` is invisible to it (not restored, not counted or deleted by
`max_to_keep`), and the step can be saved again.

Multi-process runs (`tripjax.training.distributed`) share one directory: every
process calls every method here (orbax's save is a collective: if only process 0
saves, all processes hang); orbax's primary process writes the metadata and the
replicated arrays, each process its own shards. The processes agree on whether
each checkpoint read back, and only process 0 renames or deletes directories.
"""
import contextlib
import gc
import logging
import os
import re
import shutil
import sys
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from tripjax.training import distributed

CHECKPOINT_DIRNAME = "checkpoints"
TEMPORARY_SUFFIX = ".orbax-checkpoint-tmp"
_TEMPORARY_NAME = re.compile(r"^(\d+)" + re.escape(TEMPORARY_SUFFIX))
_ITEM_DIRNAME = "default"  # Orbax's directory for the one saved item.
_MAX_LISTED_LEAVES = 8


class CheckpointCorruptError(RuntimeError):
  """No checkpoint (of the one asked for, or of all) could be read back."""


class _UnreadableStep(CheckpointCorruptError):

  def __init__(self, step: int, path: str, reason: str):
    self.reason = reason
    super().__init__(f"Checkpoint step {step} ({path}) cannot be read: {reason}")


class CheckpointMismatchError(ValueError):
  """A checkpoint holds a different tree (names or shapes) than the restore target."""


class SkippedCheckpoint(NamedTuple):
  """A checkpoint that failed to restore.

  Attributes:
    step: its step.
    reason: one line: what failed to read, the error type and its first line.
    moved_to: where its directory was moved (None: left in place).
  """
  step: int
  reason: str
  moved_to: str | None


class DiscardedTemporary(NamedTuple):
  """The temporary directory of an interrupted save (it holds no usable checkpoint).

  Attributes:
    step: the step that was being saved.
    path: the directory.
    deleted: whether it was deleted (False: left in place, orbax ignores it).
  """
  step: int
  path: str
  deleted: bool


class RestoreResult(NamedTuple):
  """What `Checkpointer.restore_newest_valid` found.

  Attributes:
    tree: the restored tree (None if there was no checkpoint).
    step: its step (None if there was no checkpoint: start from scratch).
    skipped: newer checkpoints that failed to restore, newest first.
    discarded_temporaries: leftovers of interrupted saves.
  """
  tree: Any
  step: int | None
  skipped: list[SkippedCheckpoint]
  discarded_temporaries: list[DiscardedTemporary]

  def report_lines(self) -> list[str]:
    """One line per skipped checkpoint and per interrupted save (empty if none)."""
    lines = []
    for temporary in self.discarded_temporaries:
      action = "deleted" if temporary.deleted else "ignored"
      lines.append(f"Checkpoint step {temporary.step} was never completed (an "
                   f"interrupted save); {action} {temporary.path}.")
    for skipped in self.skipped:
      where = (f"moved to {skipped.moved_to}" if skipped.moved_to else "left in place")
      lines.append(f"Checkpoint step {skipped.step} is damaged and was skipped "
                   f"({where}): {skipped.reason}")
    if self.skipped and self.step is not None:
      lines.append(f"Restored the newest readable checkpoint, step {self.step}.")
    return lines


def short_reason(error: BaseException, max_length: int = 300) -> str:
  """`Type: first line` of the innermost cause of `error` (no traceback, one line)."""
  while error.__cause__ is not None and str(error.__cause__).strip():
    error = error.__cause__
  message = str(error).strip()
  message = message.splitlines()[0] if message else ""
  message = message.split(" [tensorstore_spec=")[0].split(" See full TensorStore")[0]
  if len(message) > max_length:
    message = message[:max_length - 3] + "..."
  return f"{type(error).__name__}: {message}" if message else type(error).__name__


class _DropRecords(logging.Filter):

  def filter(self, record):
    return False


@contextlib.contextmanager
def _quiet_async_leftovers():
  """Silences asyncio's 'Task exception was never retrieved' and 'Exception ignored
  in coroutine' reports (tens of lines each) that a failed orbax read leaves."""
  asyncio_logger = logging.getLogger("asyncio")
  log_filter = _DropRecords()
  previous_hook = sys.unraisablehook
  asyncio_logger.addFilter(log_filter)
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    sys.unraisablehook = previous_hook
    asyncio_logger.removeFilter(log_filter)


def _read_or_reason(read: Callable[[], Any]) -> tuple[Any, str | None]:
  """(read(), None), or (None, one-line reason) if it raised an Exception."""
  reason = None
  with _quiet_async_leftovers():
    try:
      return read(), None
    except Exception as error:  # pylint: disable=broad-exception-caught
      reason = short_reason(error)
    gc.collect()  # The failed read's tasks, now unreferenced, are reported here.
  return None, reason


def _key_name(entry) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(entry, attribute):
      return str(getattr(entry, attribute))
  return str(entry)


def _shapes_by_path(tree) -> dict[str, tuple[int, ...]]:
  """{"a/b/0/c": shape} of every array leaf (dict keys, attributes and indices alike)."""
  shapes = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    shape = getattr(leaf, "shape", None)  # Arrays and orbax's ArrayMetadata.
    shapes["/".join(map(_key_name, path))] = tuple(
        np.shape(leaf) if shape is None else shape)
  return shapes


def _structure_differences(saved: dict, expected: dict) -> list[str]:
  """Lines naming the leaves whose presence or shape differ (empty: same)."""
  lines = [f"{path}: saved {saved[path]}, expected {expected[path]}"
           for path in expected if path in saved and saved[path] != expected[path]]
  lines += [f"{path}: expected {expected[path]}, not in the checkpoint"
            for path in expected if path not in saved]
  lines += [f"{path}: saved {saved[path]}, not expected"
            for path in saved if path not in expected]
  return lines


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
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    """The newest completed checkpoint's step, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, tree: Any) -> None:
    """Starts saving `tree` as checkpoint `step` (no-op if that step exists)."""
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(tree))

  def restore(self, target: Any, step: int | None = None) -> Any:
    """Restores checkpoint `step` (default: latest) into the structure, dtypes and
    shardings of `target` (a pytree of arrays like the one saved).

    Raises:
      FileNotFoundError: there is no such checkpoint.
      CheckpointMismatchError: it holds other leaves or shapes than `target`.
      CheckpointCorruptError: it cannot be read.
    """
    step = self.latest_step() if step is None else step
    if step is None or step not in self._manager.all_steps():
      raise FileNotFoundError(f"No checkpoint {'' if step is None else step} in "
                              f"{self.directory} (steps there: {self.all_steps()}).")
    return self._restore_or_raise(target, step)

  def restore_newest_valid(self, target: Any, *, read_only: bool = False
                           ) -> RestoreResult:
    """Restores the newest checkpoint that reads back, skipping damaged ones.

    Checkpoints are tried newest first. One that fails to read (a truncated array
    file, an empty `_METADATA`, ...) is skipped with a one-line reason; once an
    older one restores, the skipped ones are moved to `<step>.corrupt-<n>` so
    that orbax ignores them and the run can save those steps again. Temporary
    directories of interrupted saves are deleted (orbax would never use them).
    Nothing on disk changes if checkpoints exist but none restores (or the newest
    readable one mismatches), or with `read_only`.

    Args:
      target: a pytree like the saved one (gives structure, dtypes, shardings).
      read_only: only read (for evaluation next to a running training job).

    Returns:
      A `RestoreResult`; its `step` and `tree` are None if there is no
      checkpoint at all. Print `result.report_lines()`.

    Raises:
      CheckpointMismatchError: the newest readable checkpoint holds other leaves
        or shapes than `target` (older ones are not tried: they would too).
      CheckpointCorruptError: checkpoints exist but none restores (lists each).
    """
    temporaries = self._find_temporaries()
    skipped = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        tree = self._restore_or_raise(target, step)
      except _UnreadableStep as error:
        skipped.append(SkippedCheckpoint(step, error.reason, None))
        continue
      if not read_only:
        skipped = [self._move_aside(checkpoint) for checkpoint in skipped]
        temporaries = self._delete(temporaries)
      return RestoreResult(tree, step, skipped, temporaries)
    if skipped:
      raise CheckpointCorruptError(
          f"No checkpoint in {self.directory} can be restored (all are left in "
          "place):\n" + "\n".join(f"  step {checkpoint.step}: {checkpoint.reason}"
                                  for checkpoint in skipped))
    if not read_only:
      temporaries = self._delete(temporaries)
    return RestoreResult(None, None, [], temporaries)

  def _restore_or_raise(self, target: Any, step: int) -> Any:
    """Restores `step`; every failure is a CheckpointMismatchError or a one-line
    CheckpointCorruptError naming the step (without orbax's traceback)."""
    path = os.path.join(self.directory, str(step))

    def attempt(what: str, read: Callable[[], Any]) -> Any:
      value, reason = _read_or_reason(read)
      if not distributed.all_processes(reason is None):
        raise _UnreadableStep(
            step, path, f"{what}: {reason or 'another process failed to read it'}")
      return value

    if not os.path.isdir(os.path.join(path, _ITEM_DIRNAME)):
      raise _UnreadableStep(step, path, f"no {_ITEM_DIRNAME!r} directory")
    metadata = attempt(f"reading {_ITEM_DIRNAME}/_METADATA",
                       lambda: self._manager.item_metadata(step))
    saved_tree = getattr(metadata, "tree", None)
    if saved_tree is None:
      raise _UnreadableStep(step, path, "no saved tree")
    differences = _structure_differences(_shapes_by_path(saved_tree),
                                         _shapes_by_path(target))
    if differences:
      listed = differences[:_MAX_LISTED_LEAVES]
      if len(differences) > len(listed):
        listed.append(f"... and {len(differences) - len(listed)} more")
      raise CheckpointMismatchError(
          f"Checkpoint step {step} ({path}) holds a different state than this run "
          f"builds (another model or config?); {len(differences)} leaves differ:\n  "
          + "\n  ".join(listed))
    abstract_target = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    return attempt("reading the arrays", lambda: self._manager.restore(
        step, args=ocp.args.StandardRestore(abstract_target)))

  def _move_aside(self, checkpoint: SkippedCheckpoint) -> SkippedCheckpoint:
    """Renames a damaged checkpoint to `<step>.corrupt-<n>` (process 0 only)."""
    source = os.path.join(self.directory, str(checkpoint.step))
    number = 1
    while os.path.exists(f"{source}.corrupt-{number}"):
      number += 1
    destination = f"{source}.corrupt-{number}"
    distributed.sync("tripjax_checkpoint_named")  # All named it before the rename.
    if jax.process_index() == 0 and os.path.exists(source):
      os.rename(source, destination)
    distributed.sync("tripjax_checkpoint_moved")
    self._manager.reload()
    return checkpoint._replace(moved_to=destination)

  def _find_temporaries(self) -> list[DiscardedTemporary]:
    """The `<step>.orbax-checkpoint-tmp*` directories (not deleted yet)."""
    distributed.sync("tripjax_checkpoint_list_temporaries")  # All list the same names.
    names = sorted(os.listdir(self.directory)) if os.path.isdir(self.directory) else []
    return [DiscardedTemporary(int(match.group(1)),
                               os.path.join(self.directory, name), False)
            for name in names if (match := _TEMPORARY_NAME.match(name))]

  def _delete(self, temporaries: list[DiscardedTemporary]
              ) -> list[DiscardedTemporary]:
    """Deletes the directories (on process 0)."""
    if jax.process_index() == 0:
      for temporary in temporaries:
        shutil.rmtree(temporary.path, ignore_errors=True)
    distributed.sync("tripjax_checkpoint_deleted_temporaries")
    return [temporary._replace(deleted=True) for temporary in temporaries]

  def wait(self) -> None:
    """Blocks until pending saves are complete."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

