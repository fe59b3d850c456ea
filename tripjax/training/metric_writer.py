"""Metrics as JSON lines in `workdir/metrics.jsonl` (one object per line), mirrored
to TensorBoard event files in the workdir (scalars `<split>/<name>` and images).

`metrics.jsonl` is the source of truth; the event files (written with tensorboardX's
synchronous `EventsWriter`; no TensorFlow, TensorBoard or torch needed) let
`tensorboard --logdir runs/` show the runs under runs/ side by side.

Resumed runs repeat the steps after their checkpoint. `drop_after(step)` removes
those records from metrics.jsonl, and the next event file starts with a restart
marker at `step + 1` (a `SessionLog.START`, as tensorboardX's `purge_step` writes).
TensorBoard then shows the resumed run's values: a record at step s, or the marker
at s, replaces the earlier records at steps >= s (per tag for records, all tags for
the marker).
"""
import json
import math
import os
import sys
import time
from typing import Any, Mapping

import numpy as np

METRICS_FILENAME = "metrics.jsonl"


def _to_json_value(value: Any) -> Any:
  """Numbers (numpy/JAX scalars included) as Python floats/ints; NaN/inf as strings."""
  if isinstance(value, (str, bool)) or value is None:
    return value
  if isinstance(value, (int, np.integer)):
    return int(value)
  value = float(np.asarray(value))
  return value if math.isfinite(value) else str(value)


def _to_scalar(value: Any) -> float | None:
  """A float for TensorBoard (bools as 0/1, NaN/inf kept), None if not a number."""
  if value is None or isinstance(value, str):
    return None
  array = np.asarray(value)
  if array.size != 1 or not (np.issubdtype(array.dtype, np.number)
                             or array.dtype == np.bool_):
    return None
  return float(array.reshape(()))


def _import_tensorboardx():
  """tensorboardX, imported without torch.

  tensorboardX imports torch at import time when it is installed (seconds, for a
  type hint only); it falls back to numpy when that import fails.
  """
  blocked = "tensorboardX" not in sys.modules and "torch" not in sys.modules
  if blocked:
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises
  try:
    # pylint: disable=import-outside-toplevel
    import tensorboardX
    import tensorboardX.event_file_writer
    import tensorboardX.proto.event_pb2
    import tensorboardX.summary
  finally:
    if blocked:
      del sys.modules["torch"]
  return tensorboardX


class MetricWriter:
  """Appends records {"step": ..., "epoch": ..., "split": ..., <metric>: value} to
  metrics.jsonl and the numbers among them to TensorBoard.

  The TensorBoard event file is opened on the first write; writes are synchronous
  and flushed at the end of every `write`/`write_images` call, so a killed run
  loses nothing. Call `close()` at the end (or use `with`). Only one process of a
  multi-process run should write.
  """

  def __init__(self, workdir: str, tensorboard: bool = True):
    """
    Args:
      workdir: the run's directory (metrics.jsonl and events.out.tfevents.* go here).
      tensorboard: also write TensorBoard event files.
    """
    self.workdir = workdir
    self.path = os.path.join(workdir, METRICS_FILENAME)
    self._tensorboard = tensorboard
    self._events_writer: Any = None  # tensorboardX EventsWriter, opened lazily
    self._purge_step: int | None = None

  def write(self, step: int, epoch: int, split: str,
            metrics: Mapping[str, Any]) -> dict:
    """Appends one record; numeric metrics (bools as 0/1) also go to TensorBoard
    as `split/name`.

    Returns:
      The record as written to metrics.jsonl (NaN/inf as strings).
    """
    record = {"step": int(step), "epoch": int(epoch), "split": split}
    record.update({name: _to_json_value(value) for name, value in metrics.items()})
    with open(self.path, "a") as file:
      file.write(json.dumps(record) + "\n")
    if self._tensorboard:
      summary = _import_tensorboardx().summary
      scalars = {name: _to_scalar(value) for name, value in metrics.items()}
      self._write_summaries(step, [summary.scalar(f"{split}/{name}", value)
                                   for name, value in scalars.items()
                                   if value is not None])
    return record

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Writes images to TensorBoard (not to metrics.jsonl).

    Args:
      step: the training step.
      images: {tag: (H, W, C) uint8 with C = 1 or 3}, e.g. `image_grid.make_grid`.
    """
    for tag, image in images.items():
      image = np.asarray(image)
      if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"Image {tag!r} must be (H, W, C) uint8 with C = 1 or 3; got "
                         f"shape {image.shape} dtype {image.dtype}.")
    if self._tensorboard:
      summary = _import_tensorboardx().summary
      self._write_summaries(step, [summary.image(tag, np.asarray(image),
                                                 dataformats="HWC")
                                   for tag, image in images.items()])

  def read(self) -> list[dict]:
    """All records written so far (empty if none)."""
    if not os.path.exists(self.path):
      return []
    with open(self.path) as file:
      return [json.loads(line) for line in file if line.strip()]

  def drop_after(self, step: int) -> None:
    """Removes records newer than `step` (left by a run killed after its last checkpoint).

    A resumed run repeats those steps, so keeping them would duplicate them. The
    TensorBoard events of those steps cannot be edited; the next event file starts
    with a restart marker at `step + 1` instead, which hides them in TensorBoard.
    """
    self.close()  # The next write opens a new event file, with the marker.
    self._purge_step = int(step) + 1
    records = self.read()
    kept = [record for record in records if record["step"] <= step]
    if len(kept) == len(records):
      return
    temporary_path = self.path + ".tmp"
    with open(temporary_path, "w") as file:
      file.writelines(json.dumps(record) + "\n" for record in kept)
    os.replace(temporary_path, self.path)

  def _write_summaries(self, step: int, summaries: list) -> None:
    tensorboardx = _import_tensorboardx()
    event_pb2 = tensorboardx.proto.event_pb2
    if self._events_writer is None:
      # A unique, chronologically sorted file name: tensorboardX names files by the
      # second and truncates an existing one (a quick resume would overwrite it).
      self._events_writer = tensorboardx.event_file_writer.EventsWriter(
          os.path.join(self.workdir, "events"),
          filename_suffix=f".{time.time_ns()}.{os.getpid()}")
      if self._purge_step is not None:
        self._events_writer.write_event(event_pb2.Event(
            wall_time=time.time(), step=self._purge_step,
            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
        self._purge_step = None
    for summary in summaries:
      self._events_writer.write_event(event_pb2.Event(wall_time=time.time(),
                                                      step=int(step), summary=summary))
    self._events_writer.flush()

  def close(self) -> None:
    """Closes the event file (writing again opens a new one)."""
    if self._events_writer is not None:
      self._events_writer.close()
      self._events_writer = None

  def __enter__(self) -> "MetricWriter":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
