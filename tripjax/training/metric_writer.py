"""Metrics as JSON lines in `workdir/metrics.jsonl`: one object per line."""
import json
import math
import os
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


class MetricWriter:
  """Appends records {"step": ..., "epoch": ..., "split": ..., <metric>: value}."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, METRICS_FILENAME)

  def write(self, step: int, epoch: int, split: str,
            metrics: Mapping[str, Any]) -> dict:
    record = {"step": int(step), "epoch": int(epoch), "split": split}
    record.update({name: _to_json_value(value) for name, value in metrics.items()})
    with open(self.path, "a") as file:
      file.write(json.dumps(record) + "\n")
    return record

  def write_image(self, step: int, name: str, grid) -> None:
    """Image outputs go to TensorBoard (their PNGs are written by the loop)."""
    del step, name, grid

  def close(self) -> None:
    """Flushes pending writes."""

  def read(self) -> list[dict]:
    """All records written so far (empty if none)."""
    if not os.path.exists(self.path):
      return []
    with open(self.path) as file:
      return [json.loads(line) for line in file if line.strip()]

  def drop_after(self, step: int) -> None:
    """Removes records newer than `step` (left by a run killed after its last checkpoint).

    A resumed run repeats those steps, so keeping them would duplicate them.
    """
    records = self.read()
    kept = [record for record in records if record["step"] <= step]
    if len(kept) == len(records):
      return
    temporary_path = self.path + ".tmp"
    with open(temporary_path, "w") as file:
      file.writelines(json.dumps(record) + "\n" for record in kept)
    os.replace(temporary_path, self.path)
